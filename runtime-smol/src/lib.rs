//! Serve and consume the wirestream protocol on smol (and so for async-std
//! users: both run on async-io), over async-tungstenite.
//!
//! This crate is the [`Smol`] implementation of
//! [`wirestream_runtime::Runtime`] (clock, sleep, spawn, listen, accept,
//! connect) and re-exports the runtime-agnostic API with it filled in; the
//! driver loop itself lives in `wirestream-runtime`, shared with
//! `wirestream-tokio`. Everything below is also in the re-exported items'
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
//! one WebSocket you accepted yourself (from axum, say), and
//! [`Server::serve_detached`] runs the same handler for Server-Sent Events
//! or a unary JSON response ([`select_transport`] picks which).
//!
//! ```no_run
//! use wirestream_smol::{HandlerResult, Listener, Server, Session, Smol, only_path};
//!
//! #[derive(serde::Deserialize)]
//! struct Body {
//!     chunks: u32,
//! }
//!
//! async fn handler(body: Body, mut session: Session) -> HandlerResult {
//!     // Client requests (notifies) arrive as values to answer.
//!     let mut requests = session.requests();
//!     smol::spawn(async move {
//!         while let Some(request) = requests.recv().await {
//!             request.respond(Ok(()));
//!         }
//!     })
//!     .detach();
//!     for n in 0..body.chunks {
//!         let chunk = serde_json::json!({"id": "agc-1", "object": "agent.completion.chunk", "n": n});
//!         if session.send(&chunk, ["agc-1"]).await.is_err() {
//!             break; // the client left
//!         }
//!     }
//!     Ok(())
//! }
//!
//! fn main() -> std::io::Result<()> {
//!     smol::block_on(async {
//!         let listener = Listener::bind(Smol, "127.0.0.1:8080".parse().unwrap()).await?;
//!         Server::new(Smol).listen(&listener, only_path("/agent/completions"), handler).await
//!     })
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
//! use wirestream_smol::{Client, HttpResponse, Smol};
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     smol::block_on(async {
//!         let (mut chunks, notifier) = Client::new(Smol, "ws://127.0.0.1:8080/agent/completions")
//!             .header("authorization", "Bearer token")
//!             .on_server_request(|request| async move {
//!                 HttpResponse::new(200).json(&serde_json::json!({"method": request.method()})).unwrap()
//!             })
//!             .connect::<_, serde_json::Value>(&serde_json::json!({"chunks": 3}))
//!             .await?;
//!         notifier.notify("agc-1", "also check the tests", None).await?;
//!         while let Some(chunk) = chunks.next().await {
//!             println!("{}", chunk?); // Err(StreamError) if the stream failed
//!         }
//!         println!("ended: {:?}", chunks.end());
//!         Ok(())
//!     })
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
//! use wirestream_smol::proto::{Config, Engine, Inbound, SeededRandom, ServerEvent, ServerSession};
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
//! use wirestream_smol::{Config, Server, Smol};
//!
//! let mut config = Config::default();
//! config.max_frame_size = 1 << 20; // 1 MiB, both ways
//! config.request_timeout = Duration::from_secs(10);
//! config.ping_interval = Some(Duration::from_secs(15));
//! let server = Server::new(Smol).with_config(config);
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
//! use async_signal::{Signal, Signals};
//! use futures_util::StreamExt;
//! use wirestream_smol::{HandlerResult, Listener, Server, Session, Smol, only_path};
//!
//! # async fn handler(_: serde_json::Value, _: Session) -> HandlerResult { Ok(()) }
//! fn main() -> std::io::Result<()> {
//!     smol::block_on(async {
//!         let listener = Listener::bind(Smol, "127.0.0.1:8080".parse().unwrap()).await?;
//!         let server = Server::new(Smol);
//!         let shutdown = server.shutdown_handle();
//!         let mut ctrl_c = Signals::new([Signal::Int])?;
//!         smol::spawn(async move {
//!             ctrl_c.next().await;
//!             shutdown.begin(Duration::from_secs(5));
//!         })
//!         .detach();
//!         server.listen(&listener, only_path("/agent/completions"), handler).await
//!     })
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
//! use wirestream_smol::tungstenite::handshake::server::Request;
//! use wirestream_smol::tungstenite::http::StatusCode;
//! use wirestream_smol::{HandlerResult, Listener, Server, Session, Smol, refuse};
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
//! # async fn run(listener: Listener<Smol>) -> std::io::Result<()> {
//! let check = |request: &Request| match request.headers().get("authorization") {
//!     Some(token) if token == "Bearer t0k3n" => Ok(User("alice".into())),
//!     _ => Err(refuse(StatusCode::UNAUTHORIZED, "bad token")),
//! };
//! Server::new(Smol).listen(&listener, check, handler).await
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
//! over smol's TCP stream through `futures-rustls`; Mozilla's roots unless
//! `Client::tls_config` gives a configuration of your own: see the
//! `tls` module). A server does its own TLS handshake and hands the TLS
//! stream to [`Server::accept`], which takes any byte stream: with the
//! feature, `tls::futures_rustls::TlsAcceptor` over the accepted
//! `TcpStream` does it.
//!
//! # async-std
//!
//! async-std (discontinued upstream in favour of smol) runs on the same
//! async-io reactor, so an async-std application uses [`Smol`] as it is:
//! call the API from `async_std::task::block_on` / `async_std::task::spawn`
//! tasks, and hand async-std's `TcpStream` (a `futures-io` stream) to
//! [`Server::accept`]; timers and sockets of both are served by the one
//! reactor. See `examples/async-std.rs`, and the `async_std` scenarios of
//! the integration tests (a whole session, a notify, a server request).
//! What differs from a native async-std adapter:
//!
//! - the tasks this crate spawns run on smol's global executor
//!   (`smol::spawn`; its threads, `SMOL_THREADS`, default 1, run beside
//!   async-std's pool), not on async-std's: each [`Client`] connection
//!   (its driver and its server-request handlers), each connection
//!   [`Server::listen`] accepts (handshake, session and handler), and the
//!   handlers of [`Server::serve_detached`] (SSE, unary). A
//!   [`Server::serve`] the application awaits itself runs its handler
//!   inside that future, on the application's (async-std) task;
//! - so inside those tasks async-std's task-locals (`task_local!`) and
//!   `async_std::task::current()` are not the application's: pass what a
//!   handler needs in its closure (or the session's [`Caller`]) instead;
//! - `async_std::task::spawn_blocking` and async-std's own timers keep
//!   working anywhere (they need no async-std task).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use async_io::Timer;
use smol::net::{TcpListener, TcpStream};

pub use wirestream_runtime::*;

/// The smol runtime, for the driver: std's clock, `async_io::Timer`, `smol::spawn` (the
/// global executor) and smol's TCP sockets.
#[derive(Clone, Copy, Debug, Default)]
pub struct Smol;

/// A server of the wirestream protocol on smol.
pub type SmolServer = Server<Smol>;

/// A client of the wirestream protocol on smol.
pub type SmolClient = Client<Smol>;

impl Runtime for Smol {
    type Sleep = Timer;
    type Listener = TcpListener;
    type Stream = TcpStream;

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant) -> Timer {
        Timer::at(deadline)
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        smol::spawn(future).detach();
    }

    async fn bind(&self, addr: SocketAddr) -> io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn accept(&self, listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, peer) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, peer))
    }

    async fn connect(&self, host: &str, port: u16) -> io::Result<TcpStream> {
        let stream = TcpStream::connect((host, port)).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}
