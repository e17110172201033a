//! wirestream behind axum: one route that picks the transport per
//! PROTOCOL.md §1, and the HTTP bridge that forwards requests to a client
//! by session id (§3.2, §4).
//!
//! ```sh
//! cargo run -p wirestream-tokio --example axum -- 127.0.0.1:3000
//! ```
//!
//! - `/agent/completions`: `Upgrade: websocket` → a WebSocket session (the
//!   upgrade is done by hand and handed to async-tungstenite, so axum's own
//!   `ws` feature and its second tungstenite are not needed); a POST whose
//!   body says `"stream": true` → the same handler as Server-Sent Events;
//!   any other POST → the chunks as one JSON array.
//! - `/objectiveai-mcp/{session_id}`: any method; the request is forwarded
//!   to the client that owns the session id, and its response returned.
//!   Unknown id → 503, timeout → 504, a body that is not JSON → 400.

use std::convert::Infallible;
use std::net::SocketAddr;

use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::handshake::server::create_response_with_body;
use async_tungstenite::tungstenite::protocol::Role;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::StreamExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::value::RawValue;
use wirestream_demo::{self as demo, DemoBody};
use wirestream_tokio::{
    HttpRequest, ResponseError, Server, Session, Tokio, Transport, WebSocketStream,
    select_transport, sse_event, websocket_config,
};

/// The endpoint's handler, whatever the transport.
async fn agent_completion(body: DemoBody, session: Session) -> Result<(), ResponseError<'static>> {
    demo::stream(Tokio, body, session).await
}

/// The application: both routes, sharing one server (and so one registry).
fn app(server: Server<Tokio>) -> Router {
    Router::new()
        .route(demo::PATH, any(completions))
        .route("/objectiveai-mcp/{session_id}", any(bridge))
        .with_state(server)
}

fn error_response(status: u16, error: &ResponseError<'_>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_string(error).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn message(status: u16, text: &str) -> Response {
    error_response(status, &ResponseError::new(status, text))
}

/// PROTOCOL.md §1: WebSocket, SSE or one JSON response, from the request.
async fn completions(State(server): State<Server<Tokio>>, request: Request) -> Response {
    if select_transport(request.headers(), b"") == Transport::WebSocket {
        return upgrade(server, request);
    }
    let limit = server.config().max_frame_size;
    let body = match axum::body::to_bytes(request.into_body(), limit).await {
        Ok(body) => body,
        Err(e) => return message(413, &format!("body over the limit: {e}")),
    };
    let transport = select_transport(&HeaderMap::new(), &body);
    let chunks = match server.serve_detached(&body, agent_completion) {
        Ok(chunks) => chunks,
        Err(e) => return error_response(e.code, &e),
    };
    if transport == Transport::Sse {
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
    // Unary: how to fold chunks into one object is the endpoint's business;
    // this example returns them as an array.
    let mut all: Vec<Box<RawValue>> = Vec::new();
    let mut chunks = chunks;
    while let Some(item) = chunks.next().await {
        match item {
            Ok(chunk) => all.push(chunk),
            Err(e) => return error_response(e.code, &e),
        }
    }
    let body = serde_json::to_string(&all).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The WebSocket upgrade, by hand: answer 101, then run the session over
/// the upgraded connection with the server's limits.
fn upgrade(server: Server<Tokio>, mut request: Request) -> Response {
    let response = match create_response_with_body(&request, Body::empty) {
        Ok(response) => response,
        Err(e) => return message(400, &e.to_string()),
    };
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return message(426, "this connection cannot be upgraded");
    };
    tokio::spawn(async move {
        // Resolves once hyper has written the 101.
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let io = TokioAdapter::new(TokioIo::new(upgraded));
        let config = websocket_config(server.config());
        let ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        server.serve(ws, agent_completion).await;
    });
    response
}

/// PROTOCOL.md §4: forward any HTTP request to the client that owns
/// `session_id`, as a server request.
async fn bridge(
    State(server): State<Server<Tokio>>,
    Path(session_id): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let limit = server.config().max_frame_size;
    let Ok(body) = axum::body::to_bytes(body, limit).await else {
        return message(413, "body over the limit");
    };
    let body: Option<Box<RawValue>> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body) {
            Ok(json) => Some(json),
            Err(e) => return message(400, &format!("the body is not JSON: {e}")),
        }
    };
    let mut forwarded = HttpRequest::new(parts.method.as_str());
    for (name, value) in &parts.headers {
        let hop = [
            header::HOST,
            header::CONTENT_LENGTH,
            header::CONNECTION,
            header::TRANSFER_ENCODING,
        ];
        if let (false, Ok(value)) = (hop.contains(name), value.to_str()) {
            forwarded = forwarded.header(name.as_str(), value);
        }
    }
    forwarded.body = body;
    match server.registry().request(&session_id, forwarded).await {
        Ok(answer) => {
            let status = answer.status().and_then(|s| StatusCode::from_u16(s).ok());
            let status = status.unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = Response::new(match answer.body() {
                Some(json) => Body::from(Bytes::copy_from_slice(json.as_bytes())),
                None => Body::empty(),
            });
            *response.status_mut() = status;
            let headers = response.headers_mut();
            for (name, value) in answer.headers() {
                if let (Ok(name), Ok(value)) =
                    (HeaderName::try_from(name), HeaderValue::try_from(value))
                {
                    headers.append(name, value);
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
        Err(failed) => message(failed.http_status(), &failed.to_string()),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    demo::init_logs();
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned())
        .parse()
        .map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!(
        "serving http://{}{} and /objectiveai-mcp/{{session_id}}",
        listener.local_addr()?,
        demo::PATH
    );
    axum::serve(listener, app(Server::new(Tokio))).await
}

#[cfg(test)]
mod tests {
    //! The example, exercised over loopback: WebSocket, SSE, unary and the
    //! bridge (200 round trip, 400, 503, 504).

    use std::time::Duration;

    use futures_util::StreamExt;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use wirestream_tokio::{Client, Config, HttpResponse, Tokio};

    use super::*;

    async fn start(config: Config) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::new(Tokio).with_config(config);
        tokio::spawn(async move { axum::serve(listener, app(server)).await });
        addr
    }

    /// One HTTP/1.1 request over a fresh connection; the status line and
    /// headers, and the body.
    async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (String, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.to_owned(), body.to_owned())
    }

    fn body(chunks: u32, interval_ms: u64, session_id: Option<&str>) -> DemoBody {
        DemoBody {
            chunks,
            interval_ms,
            session_id: session_id.map(str::to_owned),
        }
    }

    #[tokio::test]
    async fn websocket_session_and_bridge_round_trip() {
        let addr = start(Config::default()).await;
        let url = format!("ws://{addr}{}", demo::PATH);
        let (mut chunks, _) = Client::new(Tokio, url)
            .on_server_request(|request| async move {
                let status = if request.method() == Some("POST") {
                    200
                } else {
                    405
                };
                HttpResponse::new(status)
                    .header("x-answered", "yes")
                    .json(&json!({"got": request.body()}))
                    .unwrap()
            })
            .connect::<_, demo::AgentCompletionChunk>(&body(1000, 20, Some("axum-1")))
            .await
            .unwrap();
        chunks.next().await.unwrap().unwrap();
        let (head, answer) = http(
            addr,
            "POST",
            "/objectiveai-mcp/axum-1",
            r#"{"jsonrpc":"2.0","id":7}"#,
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("x-answered: yes"), "{head}");
        assert_eq!(answer, r#"{"got":"{\"jsonrpc\":\"2.0\",\"id\":7}"}"#);
        drop(chunks);
    }

    #[tokio::test]
    async fn sse_post_streams_the_same_handler() {
        let addr = start(Config::default()).await;
        let (head, events) = http(
            addr,
            "POST",
            demo::PATH,
            r#"{"chunks":2,"interval_ms":0,"stream":true}"#,
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert_eq!(
            events.matches("data: {\"id\":\"agc-").count(),
            2,
            "{events}"
        );
    }

    #[tokio::test]
    async fn unary_post_and_bad_body() {
        let addr = start(Config::default()).await;
        let (head, body) = http(addr, "POST", demo::PATH, r#"{"chunks":3,"interval_ms":0}"#).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(
            serde_json::from_str::<Vec<serde_json::Value>>(&body)
                .unwrap()
                .len(),
            3
        );
        let (head, body) = http(addr, "POST", demo::PATH, r#"{"chunkz":3}"#).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        assert!(body.contains("failed to deserialize body"), "{body}");
    }

    #[tokio::test]
    async fn bridge_maps_failures() {
        let mut config = Config::default();
        config.request_timeout = Duration::from_millis(200);
        let addr = start(config).await;
        let (head, _) = http(addr, "POST", "/objectiveai-mcp/nobody", "{}").await;
        assert!(head.starts_with("HTTP/1.1 503"), "{head}");
        let (head, _) = http(addr, "POST", "/objectiveai-mcp/nobody", "not json").await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        let url = format!("ws://{addr}{}", demo::PATH);
        let (mut chunks, _) = Client::new(Tokio, url)
            .on_server_request(|_| futures_util::future::pending())
            .connect::<_, demo::AgentCompletionChunk>(&body(1000, 20, Some("axum-2")))
            .await
            .unwrap();
        chunks.next().await.unwrap().unwrap();
        let (head, _) = http(addr, "GET", "/objectiveai-mcp/axum-2", "").await;
        assert!(head.starts_with("HTTP/1.1 504"), "{head}");
    }
}
