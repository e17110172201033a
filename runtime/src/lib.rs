//! The runtime-agnostic driver of wirestream: one loop that runs the
//! sans-IO engine (`wirestream-proto`) over an async-tungstenite
//! `WebSocketStream`, for the server and the client role, on any
//! [`Runtime`].
//!
//! Application code normally uses it through `wirestream-tokio` or
//! `wirestream-smol`, which implement [`Runtime`] (`Tokio`, `Smol`),
//! re-export this API and show it with concrete `main` functions on their
//! crate pages. The loop lives here, once, so that the two adapters differ
//! only in how they sleep, spawn, accept and connect. The examples here are
//! generic over `R: Runtime`.
//!
//! # Serve
//!
//! [`Server::listen`] accepts, checks and serves every connection;
//! [`Server::serve`] serves one accepted `WebSocketStream`. The handler gets
//! the deserialized body and a [`Session`] to send chunks through (waiting
//! while the client is slow), receive client requests
//! ([`Session::requests`]) and send server requests; its result finishes
//! (`Ok`) or fails (`Err(ResponseError)`) the stream. A [`Registry`] routes
//! server requests by session id. Over HTTP, [`select_transport`] picks
//! WebSocket, SSE or unary JSON for a request (PROTOCOL.md §1) and
//! [`Server::serve_detached`] runs the same handler without a WebSocket.
//!
//! ```no_run
//! use wirestream_runtime::{HandlerResult, Listener, Runtime, Server, Session, only_path};
//!
//! async fn handler(body: serde_json::Value, mut session: Session) -> HandlerResult {
//!     let chunk = serde_json::json!({"id": "agc-1", "object": "agent.completion.chunk", "body": body});
//!     let _ = session.send(&chunk, ["agc-1"]).await; // Err once the client left
//!     Ok(()) // Close(1000)
//! }
//!
//! async fn serve<R: Runtime>(rt: R) -> std::io::Result<()> {
//!     let listener = Listener::bind(rt.clone(), "127.0.0.1:8080".parse().unwrap()).await?;
//!     Server::new(rt).listen(&listener, only_path("/agent/completions"), handler).await
//! }
//! ```
//!
//! # Consume
//!
//! [`Client`] connects, sends the body and returns the [`Chunks`] stream
//! and a [`Notifier`]; see its example. `wss://` URLs need the `rustls`
//! feature (see the `tls` module).
//!
//! # Embed the engine
//!
//! The sessions themselves are in [`proto`] (`ServerSession`,
//! `ClientSession`, driven through [`proto::Engine`]): plain values with no
//! I/O, for your own driver or your own tests. Its crate page shows how to
//! feed a frame and drain the polls.
//!
//! # Limits, shutdown, callers, logs and metrics
//!
//! - Every limit and timeout is a field of [`Config`]
//!   ([`Server::with_config`], [`Client::config`]), which also sets
//!   async-tungstenite's limits ([`websocket_config`]).
//! - [`Server::shutdown_handle`] returns the [`Shutdown`] handle of a
//!   graceful shutdown; handlers see it in [`Session::shutdown_requested`].
//! - The accept check may attach an identity that the handler reads with
//!   [`Session::extension`]; [`Session::caller`] is the upgrade request
//!   and the peer ([`Caller`]).
//! - Logs go through `tracing` and, with the feature `metrics`, metrics
//!   through the `metrics` facade: [`telemetry`] lists them.
//!
//! ```
//! use std::time::Duration;
//! use wirestream_runtime::{Config, Runtime, Server, Shutdown};
//!
//! fn server<R: Runtime>(rt: R) -> (Server<R>, Shutdown) {
//!     let mut config = Config::default();
//!     config.max_frame_size = 1 << 20;
//!     config.request_timeout = Duration::from_secs(10);
//!     let server = Server::new(rt).with_config(config);
//!     let shutdown = server.shutdown_handle(); // shutdown.begin(grace) when it is time
//!     (server, shutdown)
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod caller;
mod chunks;
mod client;
mod client_app;
mod detached;
mod driver;
mod handshake;
mod http;
mod local_wake;
mod notifier;
mod parked;
mod random;
mod registry;
mod router;
mod rt;
mod server;
mod server_app;
mod server_request;
mod session;
mod shutdown;
mod socket;
pub mod telemetry;
#[cfg(feature = "rustls")]
pub mod tls;

pub use async_tungstenite::{self, WebSocketStream, tungstenite};
pub use caller::Caller;
pub use chunks::{Chunks, StreamError};
pub use client::Client;
pub use detached::Detached;
pub use http::{select_transport, sse_event};
pub use notifier::{Notifier, NotifyError};
pub use random::OsRandom;
pub use registry::{Registry, WeakRegistry};
pub use router::{Delivery, SessionRouter};
pub use rt::{Listener, Runtime};
pub use server::{Served, Server};
pub use server_request::{
    HttpRequest, HttpResponse, IncomingServerRequest, RequestFailed, Response,
};
pub use session::{ChunkSender, HandlerResult, IncomingRequest, Requests, SendError, Session};
pub use shutdown::{Shutdown, ShutdownSignal};
pub use socket::{
    ConnectError, Direction, Tap, accept_websocket, only_path, refuse, websocket_config,
};
pub use wirestream_proto::{
    self as proto, ClientRequest, ClientRequestKind, CloseCode, Config, EndReason, Headers, Json,
    Registered, RegistryError, RegistryLimits, RequestError, ResponseError, ServerRequest,
    ServerResponse, Stats, Transport,
};
