//! Serve and consume the wirestream protocol on tokio, over async-tungstenite.
//!
//! This crate is the [`Tokio`] implementation of
//! [`wirestream_runtime::Runtime`] (clock, sleep, spawn, listen, accept,
//! connect) and re-exports the runtime-agnostic API with it filled in; the
//! driver loop itself lives in `wirestream-runtime`, shared with
//! `wirestream-smol`. Everything below is also in the re-exported items'
//! own docs, each with an example.
//!
//! There are three ways to use it: **serve** the protocol (a handler per
//! session), **consume** it (a client), or **embed the engine** (the
//! sans-IO sessions of [`proto`], driven by your own I/O or your own tests).
//!
//! # Serve
//!
//! A handler gets the deserialized body (the first frame) and a
//! [`Session`]: it sends chunks (waiting while the client is slow), answers
//! the client's requests and may ask the client things. Its result ends the
//! stream: `Ok(())` finishes it (`Close(1000)`), `Err(ResponseError)` sends
//! the error frame and `Close(1011)`. [`Server::listen`] accepts, checks
//! and serves every connection on its own task; [`Server::serve`] serves
//! one WebSocket you accepted yourself (from another HTTP server, say), and
//! [`Server::serve_detached`] runs the same handler for Server-Sent Events
//! or a unary JSON response ([`select_transport`] picks which). In an axum
//! app, the feature `axum` does all three on one route: see the module
//! `wirestream_tokio::axum` (its `endpoint` and `bridge`).
//!
//! ```no_run
//! use wirestream_tokio::{HandlerResult, Listener, Server, Session, Tokio, only_path};
//!
//! #[derive(serde::Deserialize)]
//! struct Body {
//!     chunks: u32,
//! }
//!
//! async fn handler(body: Body, mut session: Session) -> HandlerResult {
//!     // Client requests (notifies) arrive as values to answer.
//!     let mut requests = session.requests();
//!     tokio::spawn(async move {
//!         while let Some(request) = requests.recv().await {
//!             request.respond(Ok(()));
//!         }
//!     });
//!     for n in 0..body.chunks {
//!         let chunk = serde_json::json!({"id": "agc-1", "object": "agent.completion.chunk", "n": n});
//!         if session.send(&chunk, ["agc-1"]).await.is_err() {
//!             break; // the client left
//!         }
//!     }
//!     Ok(())
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let listener = Listener::bind(Tokio, "127.0.0.1:8080".parse().unwrap()).await?;
//!     Server::new(Tokio).listen(&listener, only_path("/agent/completions"), handler).await
//! }
//! ```
//!
//! # Consume
//!
//! [`Client`] connects, sends the body and returns the [`Chunks`] stream
//! (each chunk parsed as the type you name) and a [`Notifier`] for
//! `agent_completion_notify` requests; a handler answers the server's
//! requests ([`Client::on_server_request`]).
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use wirestream_tokio::{Client, HttpResponse, Tokio};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let (mut chunks, notifier) = Client::new(Tokio, "ws://127.0.0.1:8080/agent/completions")
//!         .header("authorization", "Bearer token")
//!         .on_server_request(|request| async move {
//!             HttpResponse::new(200).json(&serde_json::json!({"method": request.method()})).unwrap()
//!         })
//!         .connect::<_, serde_json::Value>(&serde_json::json!({"chunks": 3}))
//!         .await?;
//!     notifier.notify("agc-1", "also check the tests", None).await?;
//!     while let Some(chunk) = chunks.next().await {
//!         println!("{}", chunk?); // Err(StreamError) if the stream failed
//!     }
//!     println!("ended: {:?}", chunks.end());
//!     Ok(())
//! }
//! ```
//!
//! # Embed the engine
//!
//! [`proto::ServerSession`] and [`proto::ClientSession`] are the protocol
//! as plain values, with no socket, clock or task: feed them what arrived
//! and what the application decides, then drain what they produced, through
//! the [`proto::Engine`] trait. Use them to run the protocol over your own
//! I/O, or to test a handler's logic without a network:
//!
//! ```
//! use std::time::Instant;
//! use wirestream_tokio::proto::{Config, Engine, Inbound, SeededRandom, ServerEvent, ServerSession};
//!
//! let now = Instant::now();
//! let mut server: ServerSession = ServerSession::new(Config::default(), now, SeededRandom::new(7));
//! server.handle_frame(now, Inbound::Text(r#"{"chunks":1}"#.to_owned()));
//! while let Some(event) = server.poll_event() {
//!     if let ServerEvent::Body(_body) = event {
//!         server.send_chunk_value(now, &serde_json::json!({"id": "agc-1"}), ["agc-1"]).unwrap();
//!         server.finish(now).unwrap();
//!     }
//! }
//! let frames: Vec<_> = std::iter::from_fn(|| server.poll_transmit()).collect();
//! assert_eq!(frames.len(), 2); // the chunk, then Close(1000): write them to your socket
//! let _deadline = server.poll_timeout(); // arm one timer; call handle_timeout then
//! ```
//!
//! The rule: after any `handle_*` or command, drain `poll_transmit`,
//! `poll_event` and `poll_timeout`. The crate page of [`proto`] explains
//! the four method groups.
//!
//! # Limits and timeouts
//!
//! Every queue, map and wait is bounded by a field of [`Config`] (the
//! defaults are PROTOCOL.md §5's); the same config sets async-tungstenite's
//! limits ([`websocket_config`]). Give one to [`Server::with_config`] or
//! [`Client::config`]:
//!
//! ```
//! use std::time::Duration;
//! use wirestream_tokio::{Config, Server, Tokio};
//!
//! let mut config = Config::default();
//! config.max_frame_size = 1 << 20; // 1 MiB, both ways
//! config.request_timeout = Duration::from_secs(10);
//! config.ping_interval = Some(Duration::from_secs(15));
//! let server = Server::new(Tokio).with_config(config);
//! assert_eq!(server.config().max_frame_size, 1 << 20);
//! ```
//!
//! # Shutdown
//!
//! [`Server::shutdown_handle`] gives a cloneable [`Shutdown`]:
//! [`Shutdown::begin`] stops `listen` accepting, tells every handler
//! ([`Session::shutdown_requested`]), closes the sessions still open at the
//! grace's end with `Close(1001)`, and `listen` returns once every session
//! has ended.
//!
//! ```no_run
//! use std::time::Duration;
//! use wirestream_tokio::{HandlerResult, Listener, Server, Session, Tokio, only_path};
//!
//! # async fn handler(_: serde_json::Value, _: Session) -> HandlerResult { Ok(()) }
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let listener = Listener::bind(Tokio, "127.0.0.1:8080".parse().unwrap()).await?;
//!     let server = Server::new(Tokio);
//!     let shutdown = server.shutdown_handle();
//!     tokio::spawn(async move {
//!         tokio::signal::ctrl_c().await.ok();
//!         shutdown.begin(Duration::from_secs(5));
//!     });
//!     server.listen(&listener, only_path("/agent/completions"), handler).await
//! }
//! ```
//!
//! # Who is calling
//!
//! The check [`Server::listen`] runs on the upgrade request may refuse it
//! ([`refuse`]) or return a value, an authenticated identity say, which the
//! handler reads with [`Session::extension`]; [`Session::caller`] gives the
//! request's path, query, headers and the peer's address ([`Caller`]).
//!
//! ```no_run
//! use wirestream_tokio::tungstenite::handshake::server::Request;
//! use wirestream_tokio::tungstenite::http::StatusCode;
//! use wirestream_tokio::{HandlerResult, Listener, Server, Session, Tokio, refuse};
//!
//! #[derive(Clone)]
//! struct User(String);
//!
//! async fn handler(_: serde_json::Value, session: Session) -> HandlerResult {
//!     let user = session.extension::<User>().map(|User(name)| name.as_str());
//!     println!("{user:?} from {:?} on {}", session.caller().peer, session.caller().path());
//!     Ok(())
//! }
//!
//! # async fn run(listener: Listener<Tokio>) -> std::io::Result<()> {
//! let check = |request: &Request| match request.headers().get("authorization") {
//!     Some(token) if token == "Bearer t0k3n" => Ok(User("alice".into())),
//!     _ => Err(refuse(StatusCode::UNAUTHORIZED, "bad token")),
//! };
//! Server::new(Tokio).listen(&listener, check, handler).await
//! # }
//! ```
//!
//! # Logs and metrics
//!
//! Logs go through the `tracing` facade under the targets
//! `wirestream::server` and `wirestream::client`: install a subscriber, and
//! `RUST_LOG=wirestream=debug` (with `tracing-subscriber`'s `EnvFilter`)
//! shows each session's life, its close code, refusals and timeouts. With
//! this crate's feature `metrics`, counters, gauges and a histogram go
//! through the `metrics` facade to the recorder the application installs.
//! The names, labels and levels are listed in [`telemetry`].
//!
//! # TLS
//!
//! The client connects to `wss://` URLs with the `rustls` feature (rustls
//! over tokio's TCP stream through `futures-rustls`, the same code as on
//! smol; Mozilla's roots unless `Client::tls_config` gives a
//! configuration of your own: see the `tls` module). A server does its
//! own TLS handshake, e.g. with `tokio-rustls` over the accepted
//! `TcpStream`, and hands the TLS stream to [`Server::accept`] (any byte
//! stream) through async-tungstenite's `TokioAdapter`: see
//! `examples/tls.rs`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use async_tungstenite::tokio::TokioAdapter;
use tokio::net::{TcpListener, TcpStream};

pub use wirestream_runtime::*;

#[cfg(feature = "axum")]
pub mod axum;

/// The tokio runtime, for the driver: `tokio::time::Instant`,
/// `tokio::time::sleep_until`, `tokio::spawn` and tokio's TCP sockets. Its methods must be called from
/// within a tokio runtime.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tokio;

/// An accepted or connected socket on tokio.
pub type TokioStream = TokioAdapter<TcpStream>;

/// A server of the wirestream protocol on tokio.
pub type TokioServer = Server<Tokio>;

/// A client of the wirestream protocol on tokio.
pub type TokioClient = Client<Tokio>;

impl Runtime for Tokio {
    type Sleep = tokio::time::Sleep;
    type Listener = TcpListener;
    type Stream = TokioStream;

    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep_until(&self, deadline: Instant) -> Self::Sleep {
        tokio::time::sleep_until(deadline.into())
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(tokio::spawn(future));
    }

    async fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn accept(&self, listener: &TcpListener) -> io::Result<(TokioStream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((TokioAdapter::new(stream), peer))
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<TokioStream> {
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(TokioAdapter::new(stream))
    }
}
