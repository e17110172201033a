//! What the driver needs from an async runtime: a clock, a timer, a way to
//! spawn and TCP sockets. The tokio and smol adapters implement it; nothing else in
//! this crate knows which runtime it runs on.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use futures_util::io::{AsyncRead, AsyncWrite};

/// An async runtime, as the driver sees it.
///
/// Implemented by `wirestream_tokio::Tokio` and `wirestream_smol::Smol`; the
/// two differ only here: how they read the clock, sleep, spawn, listen,
/// accept and connect.
///
/// Application code names a runtime once (`Tokio`, `Smol`) and can stay
/// generic over it otherwise:
///
/// ```no_run
/// use std::net::SocketAddr;
/// use wirestream_runtime::{HandlerResult, Listener, Runtime, Server, Session, only_path};
///
/// async fn handler(_: serde_json::Value, _: Session) -> HandlerResult {
///     Ok(())
/// }
///
/// async fn serve_on<R: Runtime>(rt: R, addr: SocketAddr) -> std::io::Result<()> {
///     let listener = Listener::bind(rt.clone(), addr).await?;
///     println!("listening on {}", listener.local_addr()?);
///     rt.spawn(async { /* any Send future, detached */ });
///     Server::new(rt).listen(&listener, only_path("/agent/completions"), handler).await
/// }
/// ```
pub trait Runtime: Clone + Send + Sync + 'static {
    /// The future [`sleep_until`](Self::sleep_until) returns.
    type Sleep: Future + Send + 'static;
    /// A bound TCP listener.
    type Listener: Send + Sync + 'static;
    /// A connected TCP socket, as a `futures-io` byte stream (what
    /// async-tungstenite runs over).
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The current time, on the clock [`sleep_until`](Self::sleep_until)
    /// waits on. The driver reads it once per input it feeds the engine.
    fn now(&self) -> Instant;

    /// A future that completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> Self::Sleep;

    /// Runs `future` to completion on its own task, detached.
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// Binds a TCP listener.
    fn bind(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Listener>> + Send;

    /// The address a listener is bound to.
    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Accepts the next TCP connection (with `TCP_NODELAY` set).
    fn accept(
        &self,
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send;

    /// Connects to `host:port` (with `TCP_NODELAY` set).
    fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// A TCP listener on a [`Runtime`]: accept connections, then hand them to
/// [`Server::accept`](crate::Server::accept) (the WebSocket handshake) and
/// [`Server::serve`](crate::Server::serve), or let
/// [`Server::listen`](crate::Server::listen) do both for every connection.
///
/// ```no_run
/// # use wirestream_runtime::{HandlerResult, Listener, Runtime, Server, Session, only_path};
/// # async fn handler(_: serde_json::Value, _: Session) -> HandlerResult { Ok(()) }
/// async fn one_connection<R: Runtime>(rt: R) -> std::io::Result<()> {
///     let listener = Listener::bind(rt.clone(), "127.0.0.1:0".parse().unwrap()).await?;
///     let addr = listener.local_addr()?; // the port chosen
///     # let _ = addr;
///     let server = Server::new(rt);
///     let (stream, _peer) = listener.accept().await?;
///     if let Ok(ws) = server.accept(stream, only_path("/agent/completions")).await {
///         server.serve(ws, handler).await;
///     }
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Listener<R: Runtime> {
    rt: R,
    inner: R::Listener,
}

impl<R: Runtime> Listener<R> {
    /// Binds to `addr` (use port 0 for any free port).
    pub async fn bind(rt: R, addr: SocketAddr) -> io::Result<Self> {
        let inner = rt.bind(addr).await?;
        Ok(Self { rt, inner })
    }

    /// The address bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        R::local_addr(&self.inner)
    }

    /// The next TCP connection, not yet upgraded to a WebSocket.
    pub async fn accept(&self) -> io::Result<(R::Stream, SocketAddr)> {
        self.rt.accept(&self.inner).await
    }

    /// The runtime this listener runs on.
    pub fn runtime(&self) -> &R {
        &self.rt
    }
}
