//! Serve and consume the wirestream protocol on smol (and so for async-std
//! users: both run on async-io), over async-tungstenite.
//!
//! This crate is the [`Smol`] implementation of
//! [`wirestream_runtime::Runtime`] (clock, sleep, spawn, listen, accept, connect)
//! and re-exports the runtime-agnostic API with it filled in; the driver
//! loop itself lives in `wirestream-runtime`, shared with `wirestream-tokio`.
//!
//! ```no_run
//! use wirestream_smol::{HandlerResult, Listener, Server, Session, Smol, only_path};
//!
//! #[derive(serde::Deserialize)]
//! struct Body { chunks: u32 }
//!
//! async fn handler(body: Body, mut session: Session) -> HandlerResult {
//!     for i in 0..body.chunks {
//!         let chunk = serde_json::json!({"id": "agc-1", "object": "agent.completion.chunk", "n": i});
//!         if session.send(&chunk, ["agc-1"]).await.is_err() {
//!             break; // the client left
//!         }
//!     }
//!     Ok(())
//! }
//!
//! smol::block_on(async {
//!     let listener = Listener::bind(Smol, "127.0.0.1:8080".parse().unwrap()).await?;
//!     Server::new(Smol).listen(&listener, only_path("/agent/completions"), handler).await
//! })
//! # .unwrap();
//! ```
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
