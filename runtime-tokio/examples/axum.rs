//! wirestream inside an axum app: the streaming endpoint (WebSocket, SSE or
//! JSON, PROTOCOL.md §1) and the session-id bridge (§4) added to the app's
//! own routes, state and layers. Tests: `runtime-tokio/tests/axum.rs`.
//!
//! ```sh
//! cargo run -p wirestream-tokio --features axum --example axum -- 127.0.0.1:3000
//! ```

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use wirestream_demo::{self as demo, DemoBody};
use wirestream_tokio::axum::{bridge, endpoint};
use wirestream_tokio::{HandlerResult, Server, Session, Tokio};

/// The endpoint's handler, whatever the transport.
async fn completions(body: DemoBody, session: Session) -> HandlerResult {
    demo::stream(Tokio, body, session).await
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    demo::init_logs();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let server = Server::new(Tokio);
    let app = Router::new()
        .route("/health", get(|| async { "ok" })) // the app's own routes
        .route(demo::PATH, endpoint(server.clone(), completions))
        .route(
            "/objectiveai-mcp/{session_id}",
            bridge(server.registry().clone()),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("serving http://{}{}", listener.local_addr()?, demo::PATH);
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await
}
