//! The server role: [`Server`] holds the limits, the registry and an
//! optional wiretap; it handshakes accepted connections and serves one
//! session over each with a handler that gets the body and a [`Session`].

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::pin;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request as Handshake};
use async_tungstenite::tungstenite::{self, Message};
use futures_channel::mpsc;
use futures_util::future::{Either, select};
use futures_util::io::{AsyncRead, AsyncWrite};
use serde::de::DeserializeOwned;
use tracing::Instrument;
use wirestream_proto::{Config, EndReason, ResponseError, ServerSession, Stats};

use crate::driver::Driver;
use crate::random::OsRandom;
use crate::registry::{Attached, Registry};
use crate::rt::{Listener, Runtime};
use crate::server_app::{self, ServerApp};
use crate::server_request::MAILBOX;
use crate::session::{CHUNK_CHANNEL, HandlerResult, Session};
use crate::socket::{Direction, Tap, accept_websocket};
use crate::telemetry::{self, Role, Timeout};

/// How a session [`Server::serve`] ran ended, and what it counted.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Served {
    /// How the session ended (reported once by the engine).
    pub end: EndReason,
    /// The engine's counters at the end: frames dropped, requests refused,
    /// chunks sent.
    pub stats: Stats,
}

/// Serves the wirestream protocol on a [`Runtime`]: the limits, the
/// registry and an optional wiretap, shared by every connection it serves.
/// Cheap to clone.
#[derive(Clone)]
pub struct Server<R: Runtime> {
    rt: R,
    config: Config,
    registry: Registry,
    tap: Option<Tap>,
}

impl<R: Runtime> fmt::Debug for Server<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime + Default> Default for Server<R> {
    fn default() -> Self {
        Self::new(R::default())
    }
}

impl<R: Runtime> Server<R> {
    /// A server with the default [`Config`] and a registry of its own.
    pub fn new(rt: R) -> Self {
        Self {
            rt,
            config: Config::default(),
            registry: Registry::default(),
            tap: None,
        }
    }

    /// Uses these limits and timeouts for every session.
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Registers sessions in `registry` (share one per process, so an HTTP
    /// bridge can reach every connection).
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Calls `tap` with every message each connection reads or sends.
    pub fn with_tap(mut self, tap: impl Fn(Direction, &Message) + Send + Sync + 'static) -> Self {
        self.tap = Some(std::sync::Arc::new(tap));
        self
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The registry sessions are registered in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The runtime.
    pub fn runtime(&self) -> &R {
        &self.rt
    }

    /// The WebSocket handshake over an accepted connection, with this
    /// server's limits (see [`accept_websocket`]). A handshake that takes
    /// longer than the body timeout fails with `TimedOut`, so a peer that
    /// opens connections and never upgrades them holds nothing for long.
    pub async fn accept<S, C>(
        &self,
        stream: S,
        check: C,
    ) -> Result<WebSocketStream<S>, tungstenite::Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        C: FnOnce(&Handshake) -> Result<(), ErrorResponse> + Unpin,
    {
        // The callback's error type is tungstenite's.
        #[allow(clippy::result_large_err)]
        let check = |request: &Handshake| {
            check(request).inspect_err(|response| {
                telemetry::refused(Role::Server, response.status().as_u16(), "handshake");
            })
        };
        let handshake = pin!(accept_websocket(stream, &self.config, check));
        let deadline = self.rt.now().checked_add(self.config.body_timeout);
        let Some(deadline) = deadline else {
            return handshake.await;
        };
        match select(handshake, pin!(self.rt.sleep_until(deadline))).await {
            Either::Left((accepted, _)) => accepted,
            Either::Right(_) => {
                // Dropped without a close frame: 1006.
                telemetry::timed_out(Role::Server, Timeout::Handshake, 1006);
                Err(tungstenite::Error::Io(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the WebSocket handshake took longer than the body timeout",
                )))
            }
        }
    }

    /// Serves one session (PROTOCOL.md §2) over `ws` and returns how it
    /// ended, with its counters.
    ///
    /// The body frame is deserialized as `B`; a body that does not fit is
    /// answered `400` and `Close(1003)` without calling `handler`. Otherwise
    /// `handler(body, session)` runs on this connection's own task, polled
    /// by this future between reads of the socket, so a chunk costs no hop
    /// between tasks; CPU-heavy work belongs on a task of its own, sending
    /// through [`Session::chunks`]. The handler's result finishes or fails
    /// the stream; a handler that panics fails it with `500` and
    /// `Close(1011)`. When the connection ends first (the client hangs up, a
    /// limit is breached), the handler is dropped, pending server requests
    /// fail, and the connection leaves the registry.
    pub async fn serve<S, B, H, Fut>(&self, ws: WebSocketStream<S>, handler: H) -> Served
    where
        S: AsyncRead + AsyncWrite + Unpin,
        B: DeserializeOwned + Send + 'static,
        H: FnOnce(B, Session) -> Fut + Send + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let span = telemetry::connection_span(Role::Server, None);
        let now = self.rt.now();
        let mut engine: server_app::Engine =
            ServerSession::new(self.config.clone(), now, OsRandom::new());
        let (mailbox, outgoing) = mpsc::channel(MAILBOX);
        let attached = match self.registry.attach(mailbox.clone()) {
            Ok(attached) => Some(attached),
            Err(e) => {
                span.in_scope(|| telemetry::refused(Role::Server, 503, "registry full"));
                let message = format!("cannot take the connection: {e}");
                let _ = engine.fail(now, &ResponseError::new(503, &message));
                None
            }
        };
        let config = engine.config().clone();
        let (chunks, produced) = mpsc::channel(CHUNK_CHANNEL);
        let (requests_tx, requests) = mpsc::unbounded();
        let conn = attached.as_ref().map(Attached::id);
        let registry = self.registry.clone();
        let session = Session::new(
            chunks,
            config,
            Some(requests),
            Some(mailbox),
            registry,
            conn,
        );
        let start = (handler, session);
        let app = ServerApp::new(start, produced, outgoing, requests_tx, attached);
        let driver = Driver::new(self.rt.clone(), ws, engine, app, self.tap.clone());
        let (end, stats) = driver.run().instrument(span).await;
        Served { end, stats }
    }

    /// Accepts connections on `listener` until it fails: each is handshaken
    /// (refused unless `check` passes) and served with a clone of `handler`
    /// on its own task.
    pub async fn listen<B, H, Fut, C>(
        &self,
        listener: &Listener<R>,
        check: C,
        handler: H,
    ) -> io::Result<()>
    where
        B: DeserializeOwned + Send + 'static,
        H: FnOnce(B, Session) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
        C: FnOnce(&Handshake) -> Result<(), ErrorResponse> + Clone + Send + Unpin + 'static,
    {
        loop {
            let (stream, peer) = listener.accept().await?;
            let server = self.clone();
            let check = check.clone();
            let handler = handler.clone();
            self.rt.spawn(telemetry::accepted(peer, async move {
                match server.accept(stream, check).await {
                    Ok(ws) => {
                        server.serve(ws, handler).await;
                    }
                    Err(e) => {
                        tracing::debug!(target: "wirestream::server", "handshake failed: {e}")
                    }
                }
            }));
        }
    }
}
