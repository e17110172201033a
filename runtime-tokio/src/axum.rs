//! wirestream inside an [`axum::Router`] (feature `axum`): the streaming
//! endpoint and the session-id bridge as routes, next to the application's
//! own, under its state, layers and auth.
//!
//! - [`endpoint`] serves a handler (the same `FnOnce(B, Session) -> Fut` as
//!   [`Server::serve`]) on one route, over the transport the request asks
//!   for (PROTOCOL.md §1): a WebSocket when it asks for an upgrade (an
//!   `Upgrade` header listing `websocket`, `Upgrade: websocket, h2c`
//!   included), Server-Sent Events for a POST whose body says
//!   `"stream": true`, one JSON response (the array of the chunks) for any
//!   other POST. The handler sees who called in [`Session::caller`]: path,
//!   query, headers, the peer's address when the app is served with
//!   [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo), and the
//!   request's extensions (what an auth layer put there).
//! - [`bridge`] forwards any HTTP request to the client that owns the
//!   route's `{session_id}`, as a server request (PROTOCOL.md §3.2, §4),
//!   and answers with the client's response or the failure's status.
//!
//! The WebSocket upgrade is done by hand with hyper's `OnUpgrade`, into
//! async-tungstenite (axum's `ws` feature is not needed); the route's layers
//! run on the upgrade request, so an auth layer refuses it before any
//! WebSocket frame flows.
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::Router;
//! use wirestream_tokio::axum::{bridge, endpoint};
//! use wirestream_tokio::{HandlerResult, Server, Session, Tokio};
//!
//! #[derive(serde::Deserialize)]
//! struct Body { chunks: u32 }
//!
//! async fn completions(body: Body, mut session: Session) -> HandlerResult {
//!     for n in 0..body.chunks {
//!         let chunk = serde_json::json!({"id": "agc-1", "object": "agent.completion.chunk", "n": n});
//!         if session.send(&chunk, ["agc-1"]).await.is_err() {
//!             break; // the client left
//!         }
//!     }
//!     Ok(())
//! }
//!
//! # #[derive(Clone)] struct AppState;
//! # async fn run(app: Router<AppState>, state: AppState) -> std::io::Result<()> {
//! let server = Server::new(Tokio);
//! let app = app // the application's own Router<AppState>, with its layers and auth
//!     .route("/agent/completions", endpoint(server.clone(), completions))
//!     .route("/objectiveai-mcp/{session_id}", bridge(server.registry().clone()))
//!     .with_state(state)
//!     .into_make_service_with_connect_info::<SocketAddr>(); // the caller's address
//! axum::serve(tokio::net::TcpListener::bind("127.0.0.1:3000").await?, app).await
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;

use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::Role;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, RawPathParams, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any};
use futures_util::StreamExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use wirestream_runtime::{
    Caller, Config, HandlerResult, HttpRequest, Registry, ResponseError, Server, Session,
    Transport, WebSocketStream, select_transport, sse_event, websocket_config,
};

use crate::Tokio;

/// The route serving `handler` on `server` over WebSocket, Server-Sent
/// Events or one JSON response, whichever the request asks for
/// (PROTOCOL.md §1; see [`serve_request`]), for any state `S`.
///
/// ```no_run
/// use axum::Router;
/// use axum::middleware::{self, Next};
/// use axum::extract::Request;
/// use axum::http::StatusCode;
/// use axum::response::Response;
/// use wirestream_tokio::axum::endpoint;
/// use wirestream_tokio::{HandlerResult, Server, Session, Tokio};
///
/// async fn handler(body: serde_json::Value, mut session: Session) -> HandlerResult {
///     let path = session.caller().path().to_owned();
///     let _ = session.send(&serde_json::json!({"id": "agc-1", "path": path}), ["agc-1"]).await;
///     Ok(())
/// }
///
/// // Runs before the upgrade: a refused request never becomes a WebSocket.
/// async fn auth(request: Request, next: Next) -> Result<Response, StatusCode> {
///     match request.headers().get("authorization") {
///         Some(_) => Ok(next.run(request).await),
///         None => Err(StatusCode::UNAUTHORIZED),
///     }
/// }
///
/// let app: Router = Router::new().route(
///     "/agent/completions",
///     endpoint(Server::new(Tokio), handler).layer(middleware::from_fn(auth)),
/// );
/// ```
pub fn endpoint<S, B, H, Fut>(server: Server<Tokio>, handler: H) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
    B: DeserializeOwned + Send + 'static,
    H: FnOnce(B, Session) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    any(move |request: Request| {
        let (server, handler) = (server.clone(), handler.clone());
        async move { serve_request(&server, handler, request).await }
    })
}

/// Serves one request with `handler`, for an application that routes it
/// itself (what [`endpoint`] does on its route):
///
/// - an `Upgrade` header listing `websocket` (any case, among other
///   tokens): the WebSocket handshake is checked (GET, HTTP/1.1,
///   `Connection: upgrade`, `Sec-WebSocket-Version: 13`, a valid key;
///   otherwise `400`, or `426` for another version) and answered `101`,
///   then the session is served with [`Server::serve_with_caller`] on a
///   task of its own;
/// - a POST: its body (at most the config's `max_frame_size`, else `413`)
///   is handed to [`Server::serve_detached_with_caller`]; a body that does
///   not deserialize is answered `400`. With `"stream": true` the chunks go
///   out as Server-Sent Events (`data: <json>\n\n` each, the error frame
///   last if the stream fails), otherwise as one JSON array (a failure is
///   answered with the error frame and its code as the status);
/// - any other method: `405`.
///
/// Every error is answered with an error frame `{"code":…,"message":…}` as
/// the JSON body.
///
/// ```no_run
/// use axum::extract::{Request, State};
/// use axum::response::Response;
/// use wirestream_tokio::axum::serve_request;
/// use wirestream_tokio::{HandlerResult, Server, Session, Tokio};
///
/// async fn handler(_: serde_json::Value, _: Session) -> HandlerResult {
///     Ok(())
/// }
///
/// async fn route(State(server): State<Server<Tokio>>, request: Request) -> Response {
///     serve_request(&server, handler, request).await
/// }
/// ```
pub async fn serve_request<B, H, Fut>(
    server: &Server<Tokio>,
    handler: H,
    mut request: Request,
) -> Response
where
    B: DeserializeOwned + Send + 'static,
    H: FnOnce(B, Session) -> Fut + Send + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    let on_upgrade = request.extensions_mut().remove::<OnUpgrade>();
    let caller = caller_of(&request);
    if select_transport(request.headers(), b"") == Transport::WebSocket {
        return upgrade(server, handler, request, on_upgrade, caller);
    }
    if request.method() != Method::POST {
        let mut response = message(
            405,
            "POST serves the stream as SSE or JSON; GET with Upgrade: websocket as a WebSocket",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        return response;
    }
    let limit = server.config().max_frame_size;
    let (parts, body) = request.into_parts();
    let body = match read_body(&parts.headers, body, limit).await {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    let wants_sse = select_transport(&HeaderMap::new(), &body) == Transport::Sse;
    let chunks = match server.serve_detached_with_caller(&body, caller, handler) {
        Ok(chunks) => chunks,
        Err(e) => return error_response(e.code, &e),
    };
    if wants_sse {
        let events = chunks.map(|item| {
            let event = match item {
                Ok(chunk) => sse_event(&chunk),
                Err(e) => match serde_json::value::to_raw_value(&e) {
                    Ok(raw) => sse_event(&raw),
                    Err(_) => String::new(),
                },
            };
            Ok::<_, Infallible>(event)
        });
        return (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            Body::from_stream(events),
        )
            .into_response();
    }
    let mut all: Vec<Box<RawValue>> = Vec::new();
    let mut chunks = chunks;
    while let Some(item) = chunks.next().await {
        match item {
            Ok(chunk) => all.push(chunk),
            Err(e) => return error_response(e.code, &e),
        }
    }
    match serde_json::to_string(&all) {
        Ok(json) => json_response(StatusCode::OK, json),
        Err(e) => message(500, &format!("cannot serialize the chunks: {e}")),
    }
}

/// The caller of `request`: its URI, headers and extensions, and the peer's
/// address from axum's `ConnectInfo<SocketAddr>` when present.
fn caller_of(request: &Request) -> Caller {
    let mut caller = Caller::new();
    caller.uri = request.uri().clone();
    caller.headers = request.headers().clone();
    caller.extensions = request.extensions().clone();
    caller.peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    caller
}

/// Answers a WebSocket upgrade `101` (RFC 6455 §4.2) and serves the session
/// on the upgraded connection, on a task of its own.
fn upgrade<B, H, Fut>(
    server: &Server<Tokio>,
    handler: H,
    request: Request,
    on_upgrade: Option<OnUpgrade>,
    caller: Caller,
) -> Response
where
    B: DeserializeOwned + Send + 'static,
    H: FnOnce(B, Session) -> Fut + Send + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    let accept = match handshake(&request) {
        Ok(accept) => accept,
        Err(refused) => return refused.into_response(),
    };
    let Some(on_upgrade) = on_upgrade else {
        return message(426, "this connection cannot be upgraded");
    };
    let server = server.clone();
    tokio::spawn(async move {
        // Resolves once hyper has written the 101.
        // An error: the client left before the upgrade; nothing started.
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let io = TokioAdapter::new(TokioIo::new(upgraded));
        let config = websocket_config(server.config());
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        server.serve_with_caller(ws, caller, handler).await;
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    response
}

/// Checks a WebSocket opening handshake and returns the
/// `Sec-WebSocket-Accept` value. The `Upgrade` header was already found to
/// list `websocket` (tungstenite's own check wants it alone, so it is not
/// used).
fn handshake(request: &Request) -> Result<HeaderValue, Refused> {
    if request.method() != Method::GET {
        return Err(Refused::new(400, "a WebSocket upgrade must be a GET"));
    }
    if request.version() != Version::HTTP_11 {
        return Err(Refused::new(400, "a WebSocket upgrade must be HTTP/1.1"));
    }
    let headers = request.headers();
    if !has_token(headers, &header::CONNECTION, "upgrade") {
        return Err(Refused::new(
            400,
            "a WebSocket upgrade needs `Connection: upgrade`",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        // Answered with `Sec-WebSocket-Version: 13` (RFC 6455 §4.4).
        return Err(Refused::new(426, "only WebSocket version 13 is supported"));
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|key| valid_key(key))
        .ok_or_else(|| Refused::new(400, "a WebSocket upgrade needs a valid Sec-WebSocket-Key"))?;
    HeaderValue::try_from(derive_accept_key(key))
        .map_err(|_| Refused::new(500, "cannot encode Sec-WebSocket-Accept"))
}

/// Whether a header `name` lists `token` (any case) among comma-separated
/// tokens, in any of its lines.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// A `Sec-WebSocket-Key`: 16 bytes in base64, so 24 characters ending in
/// `==`.
fn valid_key(key: &[u8]) -> bool {
    let base64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    key.len() == 24 && key[..22].iter().all(base64) && key.ends_with(b"==")
}

/// The route forwarding requests to the client that owns the route's
/// `{session_id}` (see [`forward_request`]), with request bodies of at most
/// the default `max_frame_size` (see [`bridge_with_limit`]).
///
/// ```no_run
/// use axum::Router;
/// use wirestream_tokio::axum::bridge;
/// use wirestream_tokio::{Server, Tokio};
///
/// let server = Server::new(Tokio);
/// let app: Router = Router::new()
///     .route("/objectiveai-mcp/{session_id}", bridge(server.registry().clone()));
/// ```
pub fn bridge<S>(registry: Registry) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    bridge_with_limit(registry, Config::default().max_frame_size)
}

/// [`bridge`], with request bodies of at most `max_body` bytes (a larger one
/// is answered `413`); pass the server's `max_frame_size` when it is not the
/// default.
///
/// ```no_run
/// use axum::Router;
/// use wirestream_tokio::axum::bridge_with_limit;
/// use wirestream_tokio::{Config, Server, Tokio};
///
/// let mut config = Config::default();
/// config.max_frame_size = 64 * 1024;
/// let server = Server::new(Tokio).with_config(config);
/// let limit = server.config().max_frame_size;
/// let app: Router = Router::new().route(
///     "/objectiveai-mcp/{session_id}",
///     bridge_with_limit(server.registry().clone(), limit),
/// );
/// ```
pub fn bridge_with_limit<S>(registry: Registry, max_body: usize) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    any(move |params: RawPathParams, request: Request| {
        let registry = registry.clone();
        async move {
            // The route's `{session_id}`, or its last parameter.
            let named = params.iter().find(|(name, _)| *name == "session_id");
            let Some((_, session_id)) = named.or_else(|| params.iter().last()) else {
                return message(500, "the bridge's route has no {session_id}");
            };
            forward_request(&registry, session_id, request, max_body).await
        }
    })
}

/// Forwards `request` (its method, headers but the hop-by-hop ones, and JSON
/// body) to the client that owns `session_id`, as a server request
/// (PROTOCOL.md §3.2), and answers with the client's response: its status,
/// headers and body (`application/json` unless the client said otherwise).
///
/// A body over `max_body` bytes is answered `413`, one that is not JSON
/// `400`; a request that fails is answered with
/// [`RequestFailed::http_status`](crate::RequestFailed::http_status):
/// unknown id `503`, timed out `504`, session ended `502`, too many pending
/// `429`, too large `413`, shutting down `503`. Every error is answered with
/// an error frame `{"code":…,"message":…}` as the JSON body.
///
/// ```no_run
/// use axum::extract::{Path, Request, State};
/// use axum::response::Response;
/// use wirestream_tokio::axum::forward_request;
/// use wirestream_tokio::Registry;
///
/// async fn mcp(
///     State(registry): State<Registry>,
///     Path(session_id): Path<String>,
///     request: Request,
/// ) -> Response {
///     forward_request(&registry, &session_id, request, 1 << 20).await
/// }
/// ```
pub async fn forward_request(
    registry: &Registry,
    session_id: &str,
    request: Request,
    max_body: usize,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = match read_body(&parts.headers, body, max_body).await {
        Ok(body) => body,
        Err(refused) => return refused.into_response(),
    };
    let mut forwarded = HttpRequest::new(parts.method.as_str());
    if !body.is_empty() {
        match serde_json::from_slice::<Box<RawValue>>(&body) {
            Ok(json) => forwarded.body = Some(json),
            Err(e) => return message(400, &format!("the body is not JSON: {e}")),
        }
    }
    for (name, value) in &parts.headers {
        if let (false, Ok(value)) = (hop_by_hop(name), value.to_str()) {
            forwarded = forwarded.header(name.as_str(), value);
        }
    }
    let answer = match registry.request(session_id, forwarded).await {
        Ok(answer) => answer,
        Err(failed) => return message(failed.http_status(), &failed.to_string()),
    };
    let status = answer.status().and_then(|s| StatusCode::from_u16(s).ok());
    let mut response = Response::new(match answer.body() {
        Some(json) => Body::from(Bytes::copy_from_slice(json.as_bytes())),
        None => Body::empty(),
    });
    *response.status_mut() = status.unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    for (name, value) in answer.headers() {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            if !hop_by_hop(&name) {
                headers.append(name, value);
            }
        }
    }
    if answer.body().is_some() && !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    response
}

/// Headers that belong to one HTTP connection, not to the message.
fn hop_by_hop(name: &HeaderName) -> bool {
    [
        header::HOST,
        header::CONTENT_LENGTH,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// Reads a body of at most `limit` bytes: `413` beyond it (at once when
/// `Content-Length` says so), `400` when reading fails.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, Refused> {
    let too_large = || {
        let text = format!("the body is over the limit of {limit} bytes");
        Refused::new(413, text)
    };
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok());
    if length.and_then(|v| v.parse::<u64>().ok()) > Some(limit as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut all = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk: Bytes =
            chunk.map_err(|e| Refused::new(400, format!("failed to read the body: {e}")))?;
        if all.len() + chunk.len() > limit {
            return Err(too_large());
        }
        all.extend_from_slice(&chunk);
    }
    Ok(all)
}

/// A request refused before it was served: its status and why.
struct Refused {
    status: u16,
    message: String,
}

impl Refused {
    fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = message(self.status, &self.message);
        if self.status == 426 {
            let version = HeaderValue::from_static("13");
            response
                .headers_mut()
                .insert(header::SEC_WEBSOCKET_VERSION, version);
        }
        response
    }
}

fn json_response(status: StatusCode, json: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// The error frame `error` as a JSON response with `status`.
fn error_response(status: u16, error: &ResponseError<'_>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, serde_json::to_string(error).unwrap_or_default())
}

/// An error frame with `status` as its code and `text` as its message.
fn message(status: u16, text: &str) -> Response {
    error_response(status, &ResponseError::new(status, text))
}
