//! The runtime-agnostic driver of wirestream: one loop that runs the
//! sans-IO engine (`wirestream-proto`) over an async-tungstenite
//! `WebSocketStream`, for the server and the client role, on any
//! [`Runtime`].
//!
//! Application code normally uses it through `wirestream-tokio` or
//! `wirestream-smol`, which implement [`Runtime`] and re-export this API.
//! The loop lives here, once, so that the two adapters differ only in how
//! they sleep, spawn, accept and connect.
//!
//! - Server: [`Server::serve`] runs one session over an accepted socket; the
//!   handler gets the deserialized body and a [`Session`] to send chunks
//!   through (waiting while the client is slow), receive client requests
//!   ([`Session::requests`]) and send server requests. A [`Registry`]
//!   routes server requests by session id.
//! - Client: [`Client`] connects, sends the body and returns the
//!   [`Chunks`] stream and a [`Notifier`]; to `wss://` URLs with the
//!   `rustls` feature (see the `tls` module).
//! - HTTP: [`select_transport`] picks WebSocket, SSE or unary JSON for a
//!   request (PROTOCOL.md §1); [`Server::serve_detached`] runs the same
//!   handler without a WebSocket.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod caller;
mod chunks;
mod client;
mod client_app;
mod detached;
mod driver;
mod http;
mod notifier;
mod parked;
mod random;
mod registry;
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
pub use registry::Registry;
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
