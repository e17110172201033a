//! `wirestream_tokio::axum` over loopback: the endpoint on its three
//! transports (WebSocket, SSE, unary JSON) inside an app with its own state,
//! routes and an auth layer, and the bridge (200, 400, 413, 503, 504).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wirestream_tokio::async_tungstenite::tokio::TokioAdapter;
use wirestream_tokio::axum::{bridge_with_limit, endpoint};
use wirestream_tokio::tungstenite::Message;
use wirestream_tokio::tungstenite::protocol::Role;
use wirestream_tokio::{
    Client, Config, HandlerResult, HttpResponse, ResponseError, Server, Session, Tokio,
    WebSocketStream,
};

/// The application's own state.
#[derive(Clone)]
struct AppState {
    name: &'static str,
}

/// What the auth layer attaches to a request it lets through.
#[derive(Clone, Debug)]
struct User(String);

#[derive(serde::Deserialize)]
struct TestBody {
    chunks: u32,
    #[serde(default)]
    fail: bool,
    #[serde(default)]
    hold: bool,
    #[serde(default)]
    session_id: Option<String>,
}

/// Sends `chunks` chunks, each telling who called; then fails with `418`,
/// waits for the client to leave, or finishes.
async fn handler(body: TestBody, mut session: Session) -> HandlerResult {
    if let Some(id) = &body.session_id {
        session
            .register_session(id)
            .map_err(|e| ResponseError::new(500, &e.to_string()))?;
    }
    let caller = session.caller();
    let seen = json!({
        "path": caller.path(),
        "query": caller.query(),
        "authorization": caller.header("authorization"),
        "peer": caller.peer.is_some(),
        "user": session.extension::<User>().map(|User(name)| name.clone()),
        "websocket": session.is_websocket(),
    });
    for n in 0..body.chunks {
        let chunk =
            json!({"id": "agc-1", "object": "agent.completion.chunk", "n": n, "caller": seen});
        if session.send(&chunk, ["agc-1"]).await.is_err() {
            return Ok(());
        }
    }
    if body.fail {
        return Err(ResponseError::new(418, "no coffee"));
    }
    if body.hold {
        std::future::pending::<()>().await;
    }
    Ok(())
}

/// Lets a request through only with `Authorization`, as a [`User`].
async fn auth(mut request: Request, next: Next) -> Result<Response, StatusCode> {
    let user = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| User(v.to_owned()))
        .ok_or(StatusCode::UNAUTHORIZED)?;
    request.extensions_mut().insert(user);
    Ok(next.run(request).await)
}

/// An app with its own state and route, the endpoint twice (in the open,
/// and behind the auth layer) and the bridge.
fn app(server: &Server<Tokio>) -> Router {
    let limit = server.config().max_frame_size;
    Router::new()
        .route(
            "/state",
            get(|State(s): State<AppState>| async move { s.name }),
        )
        .route("/agent/completions", endpoint(server.clone(), handler))
        .route(
            "/private/completions",
            endpoint(server.clone(), handler).layer(middleware::from_fn(auth)),
        )
        .route(
            "/objectiveai-mcp/{session_id}",
            bridge_with_limit(server.registry().clone(), limit),
        )
        .with_state(AppState { name: "my app" })
}

async fn start(config: Config) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::new(Tokio).with_config(config);
    let app = app(&server).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Writes `request` over a fresh connection and reads the response until the
/// server closes.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// One HTTP/1.1 request over a fresh connection, with `headers` lines
/// (`name: value\r\n` each); the head (lowercase) and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> (String, String) {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = raw(addr, &request).await;
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (head, body)
}

/// Sends a WebSocket upgrade request by hand with `upgrade` as its
/// `Upgrade` header; the open connection and the response head (lowercase).
async fn upgrade_by_hand(
    addr: SocketAddr,
    path: &str,
    upgrade: &str,
) -> (tokio::net::TcpStream, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: Upgrade\r\nupgrade: {upgrade}\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    (
        stream,
        String::from_utf8(head).unwrap().to_ascii_lowercase(),
    )
}

fn chunks_of(body: &str) -> Vec<Value> {
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn websocket_session_sees_the_caller_and_the_bridge_answers_200() {
    let addr = start(Config::default()).await;
    let url = format!("ws://{addr}/agent/completions?x=1");
    let (mut chunks, _) = Client::new(Tokio, url)
        .header("authorization", "Bearer open")
        .on_server_request(|request| async move {
            let status = if request.method() == Some("POST") {
                200
            } else {
                405
            };
            let custom = request
                .headers()
                .find(|(name, _)| name.eq_ignore_ascii_case("x-custom"))
                .map(|(_, value)| value.to_owned());
            HttpResponse::new(status)
                .header("x-answered", "yes")
                .json(&json!({"got": request.body(), "custom": custom}))
                .unwrap()
        })
        .connect::<_, Value>(&json!({"chunks": 1, "hold": true, "session_id": "axum-1"}))
        .await
        .unwrap();
    let chunk = chunks.next().await.unwrap().unwrap();
    assert_eq!(
        chunk["caller"],
        json!({
            "path": "/agent/completions",
            "query": "x=1",
            "authorization": "Bearer open",
            "peer": true,
            "user": null,
            "websocket": true,
        })
    );
    let (head, answer) = http(
        addr,
        "POST",
        "/objectiveai-mcp/axum-1",
        "x-custom: 42\r\n",
        r#"{"jsonrpc":"2.0","id":7}"#,
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("x-answered: yes"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap(),
        json!({"got": r#"{"jsonrpc":"2.0","id":7}"#, "custom": "42"})
    );
    drop(chunks);
}

#[tokio::test]
async fn an_upgrade_header_listing_websocket_among_tokens_upgrades() {
    let addr = start(Config::default()).await;
    let (stream, head) = upgrade_by_hand(addr, "/agent/completions", "websocket, h2c").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // RFC 6455 §1.3's example key and its accept value.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    let mut ws =
        WebSocketStream::from_raw_socket(TokioAdapter::new(stream), Role::Client, None).await;
    ws.send(Message::text(r#"{"chunks":1}"#)).await.unwrap();
    let Some(Ok(Message::Text(chunk))) = ws.next().await else {
        panic!("no chunk");
    };
    let chunk: Value = serde_json::from_str(&chunk).unwrap();
    assert_eq!(chunk["n"], 0);
    assert_eq!(chunk["caller"]["websocket"], true);

    // A handshake that is not right is refused before any frame.
    let (_, head) = upgrade_by_hand(addr, "/agent/completions", "WebSocket").await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let request = format!(
        "GET /agent/completions HTTP/1.1\r\nhost: {addr}\r\nconnection: Upgrade, close\r\nupgrade: websocket\r\nsec-websocket-version: 8\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let response = raw(addr, &request).await.to_ascii_lowercase();
    assert!(response.starts_with("http/1.1 426"), "{response}");
    assert!(response.contains("sec-websocket-version: 13"), "{response}");
}

#[tokio::test]
async fn sse_streams_each_chunk_and_the_error_frame_last() {
    let addr = start(Config::default()).await;
    let (head, events) = http(
        addr,
        "POST",
        "/agent/completions?via=sse",
        "",
        r#"{"chunks":2,"stream":true,"fail":true}"#,
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    let events: Vec<&str> = events.split_terminator("\n\n").collect();
    assert_eq!(events.len(), 3, "{events:?}");
    for (n, event) in events[..2].iter().enumerate() {
        let chunk: Value = serde_json::from_str(event.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(chunk["n"], n);
        assert_eq!(chunk["caller"]["path"], "/agent/completions");
        assert_eq!(chunk["caller"]["query"], "via=sse");
        assert_eq!(chunk["caller"]["peer"], true);
        assert_eq!(chunk["caller"]["websocket"], false);
    }
    assert_eq!(events[2], r#"data: {"code":418,"message":"no coffee"}"#);
}

#[tokio::test]
async fn unary_answers_the_chunks_as_an_array_or_the_error_with_its_code() {
    let addr = start(Config::default()).await;
    let (head, body) = http(addr, "POST", "/agent/completions", "", r#"{"chunks":3}"#).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let chunks = chunks_of(&body);
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[2]["n"], 2);
    assert_eq!(chunks[0]["caller"]["peer"], true);
    let (head, body) = http(
        addr,
        "POST",
        "/agent/completions",
        "",
        r#"{"chunks":1,"fail":true}"#,
    )
    .await;
    assert!(head.starts_with("http/1.1 418"), "{head}");
    assert_eq!(body, r#"{"code":418,"message":"no coffee"}"#);
}

#[tokio::test]
async fn bad_bodies_are_answered_400_and_large_ones_413() {
    let mut config = Config::default();
    config.max_frame_size = 4096;
    let addr = start(config).await;
    for body in [r#"{"chunkz":3}"#, "not json", r#"{"stream":true}"#] {
        let (head, answer) = http(addr, "POST", "/agent/completions", "", body).await;
        assert!(head.starts_with("http/1.1 400"), "{body}: {head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        let error: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(error["code"], 400);
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("failed to deserialize body"),
            "{answer}"
        );
    }
    let large = format!(r#"{{"chunks":1,"pad":"{}"}}"#, "x".repeat(5000));
    let (head, _) = http(addr, "POST", "/agent/completions", "", &large).await;
    assert!(head.starts_with("http/1.1 413"), "{head}");
    // Without a Content-Length, the limit holds as the body is read.
    let request = format!(
        "POST /agent/completions HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{:x}\r\n{large}\r\n0\r\n\r\n",
        large.len()
    );
    let response = raw(addr, &request).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    // Neither an upgrade nor a POST.
    let (head, _) = http(addr, "GET", "/agent/completions", "", "").await;
    assert!(head.starts_with("http/1.1 405"), "{head}");
    assert!(head.contains("allow: get, post"), "{head}");
}

#[tokio::test]
async fn bridge_maps_failures_to_statuses() {
    let mut config = Config::default();
    config.request_timeout = Duration::from_millis(200);
    config.max_frame_size = 4096;
    let addr = start(config).await;
    let (head, body) = http(addr, "POST", "/objectiveai-mcp/nobody", "", "{}").await;
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["code"], 503);
    let (head, _) = http(addr, "POST", "/objectiveai-mcp/nobody", "", "not json").await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    let large = format!(r#""{}""#, "x".repeat(5000));
    let (head, _) = http(addr, "POST", "/objectiveai-mcp/nobody", "", &large).await;
    assert!(head.starts_with("http/1.1 413"), "{head}");

    let url = format!("ws://{addr}/agent/completions");
    let (mut chunks, _) = Client::new(Tokio, url)
        .on_server_request(|_| futures_util::future::pending())
        .connect::<_, Value>(&json!({"chunks": 1, "hold": true, "session_id": "axum-2"}))
        .await
        .unwrap();
    chunks.next().await.unwrap().unwrap();
    let (head, _) = http(addr, "GET", "/objectiveai-mcp/axum-2", "", "").await;
    assert!(head.starts_with("http/1.1 504"), "{head}");
    drop(chunks);
}

#[tokio::test]
async fn an_auth_layer_refuses_before_the_upgrade() {
    let addr = start(Config::default()).await;
    let (_, head) = upgrade_by_hand(addr, "/private/completions", "websocket").await;
    assert!(head.starts_with("http/1.1 401"), "{head}");
    let (head, _) = http(addr, "POST", "/private/completions", "", r#"{"chunks":1}"#).await;
    assert!(head.starts_with("http/1.1 401"), "{head}");

    // Let through, the handler sees what the layer attached.
    let url = format!("ws://{addr}/private/completions");
    let (mut chunks, _) = Client::new(Tokio, url)
        .header("authorization", "Bearer alice")
        .connect::<_, Value>(&json!({"chunks": 1}))
        .await
        .unwrap();
    let chunk = chunks.next().await.unwrap().unwrap();
    assert_eq!(chunk["caller"]["user"], "Bearer alice");
    let (head, body) = http(
        addr,
        "POST",
        "/private/completions",
        "authorization: Bearer bob\r\n",
        r#"{"chunks":1}"#,
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(chunks_of(&body)[0]["caller"]["user"], "Bearer bob");

    // The app's own route and state are untouched.
    let (head, body) = http(addr, "GET", "/state", "", "").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, "my app");
}
