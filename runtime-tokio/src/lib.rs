//! Serve and consume the wirestream protocol on tokio, over async-tungstenite.
//!
//! This crate is the [`Tokio`] implementation of
//! [`wirestream_runtime::Runtime`] (clock, sleep, spawn, listen, accept, connect)
//! and re-exports the runtime-agnostic API with it filled in; the driver
//! loop itself lives in `wirestream-runtime`, shared with `wirestream-smol`.
//!
//! ```no_run
//! use wirestream_tokio::{HandlerResult, Listener, Server, Session, Tokio, only_path};
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
//! # async fn run() -> std::io::Result<()> {
//! let listener = Listener::bind(Tokio, "127.0.0.1:8080".parse().unwrap()).await?;
//! Server::new(Tokio).listen(&listener, only_path("/agent/completions"), handler).await
//! # }
//! ```
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
