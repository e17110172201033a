//! The server role: [`Server`] holds the limits, the registry and an
//! optional wiretap; it handshakes accepted connections and serves one
//! session over each with a handler that gets the body and a [`Session`].

use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request as Handshake};
use async_tungstenite::tungstenite::{self, Message};
use futures_channel::mpsc;
use futures_util::FutureExt;
use futures_util::future::{Either, select};
use futures_util::io::{AsyncRead, AsyncWrite};
use serde::de::DeserializeOwned;
use tracing::Instrument;
use wirestream_proto::{Config, EndReason, ResponseError, ServerSession, Stats};

use crate::caller::Caller;
use crate::driver::Driver;
use crate::random::OsRandom;
use crate::registry::{Attached, Registry};
use crate::rt::{Listener, Runtime};
use crate::server_app::{self, Grace, ServerApp};
use crate::server_request::MAILBOX;
use crate::session::{CHUNK_CHANNEL, HandlerResult, Session};
use crate::shutdown::{Live, Shutdown};
use crate::socket::{Direction, Tap, accept_websocket, websocket_config};
use crate::telemetry::{self, Role, Timeout};

/// How a session [`Server::serve`] ran ended, and what it counted.
///
/// ```no_run
/// # use wirestream_runtime::{HandlerResult, Runtime, Server, Session, WebSocketStream};
/// # async fn example<R: Runtime>(server: Server<R>, ws: WebSocketStream<R::Stream>) {
/// let handler = |_body: serde_json::Value, _session: Session| async { HandlerResult::Ok(()) };
/// let served = server.serve(ws, handler).await;
/// println!("ended {:?} (close code {}), {} chunks sent", served.end, served.end.code().0, served.stats.chunks);
/// # }
/// ```
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
///
/// Built once, then cloned into every task that serves; the adapters name
/// it `wirestream_tokio::TokioServer` and `wirestream_smol::SmolServer`.
///
/// ```
/// use std::time::Duration;
/// use wirestream_runtime::{Config, Registry, Runtime, Server};
///
/// fn server<R: Runtime>(rt: R, registry: Registry) -> Server<R> {
///     let mut config = Config::default();
///     config.body_timeout = Duration::from_secs(10);
///     Server::new(rt)
///         .with_config(config)
///         .with_registry(registry) // one per process, shared with the HTTP bridge
///         .with_tap(|direction, message| eprintln!("{direction} {message}"))
/// }
/// ```
#[derive(Clone)]
pub struct Server<R: Runtime> {
    rt: R,
    config: Config,
    registry: Registry,
    tap: Option<Tap>,
    shutdown: Shutdown,
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
        let clock = rt.clone();
        Self {
            rt,
            config: Config::default(),
            registry: Registry::default(),
            tap: None,
            shutdown: Shutdown::new(move || clock.now()),
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

    /// The handle on this server's graceful shutdown, shared by its clones
    /// (see [`Shutdown`]): [`Shutdown::begin`] stops [`listen`](Self::listen)
    /// accepting, tells every session's handler, closes the sessions still
    /// open at the grace's end with `Close(1001)`, and `listen` returns once
    /// every session has ended.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use wirestream_runtime::{Runtime, Server};
    /// # async fn example<R: Runtime>(server: Server<R>) {
    /// let shutdown = server.shutdown_handle();
    /// shutdown.begin(Duration::from_secs(5));
    /// shutdown.ended().await; // every session has ended
    /// # }
    /// ```
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
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
        self.handshake(accept_websocket(stream, &self.config, check))
            .await
    }

    /// [`accept`](Self::accept), keeping who called: the upgrade request,
    /// the `peer` address, and the value `check` returns (attached to the
    /// [`Caller`]'s extensions unless it is `()`), for
    /// [`serve_with_caller`](Self::serve_with_caller).
    ///
    /// ```no_run
    /// # use wirestream_runtime::{Caller, Listener, Runtime, Server, refuse};
    /// # use wirestream_runtime::tungstenite::http::StatusCode;
    /// # async fn example<R: Runtime>(server: Server<R>, listener: Listener<R>) -> std::io::Result<()> {
    /// #[derive(Clone)]
    /// struct User(String);
    /// let (stream, peer) = listener.accept().await?;
    /// let check = |request: &wirestream_runtime::tungstenite::handshake::server::Request| {
    ///     match request.headers().get("authorization").and_then(|v| v.to_str().ok()) {
    ///         Some("Bearer t0k3n") => Ok(User("alice".into())),
    ///         _ => Err(refuse(StatusCode::UNAUTHORIZED, "bad token")),
    ///     }
    /// };
    /// if let Ok((ws, caller)) = server.accept_with_caller(stream, Some(peer), check).await {
    ///     assert!(caller.extension::<User>().is_some());
    /// #   let _ = ws;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn accept_with_caller<S, C, A>(
        &self,
        stream: S,
        peer: Option<SocketAddr>,
        check: C,
    ) -> Result<(WebSocketStream<S>, Caller), tungstenite::Error>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        C: FnOnce(&Handshake) -> Result<A, ErrorResponse> + Unpin,
        A: Clone + Send + Sync + 'static,
    {
        let mut caller = None;
        let ws = {
            // The callback's error type is tungstenite's.
            #[allow(clippy::result_large_err)]
            let callback = |request: &Handshake| {
                let value = check(request).inspect_err(|response| {
                    telemetry::refused(Role::Server, response.status().as_u16(), "handshake");
                })?;
                caller = Some(Caller::accepted(request, peer, value));
                Ok(())
            };
            let config = websocket_config(&self.config);
            let handshake = crate::handshake::accept(stream, config, callback);
            self.handshake(handshake).await?
        };
        Ok((ws, caller.unwrap_or_default()))
    }

    /// Awaits a server handshake, failing it with `TimedOut` after the body
    /// timeout.
    async fn handshake<S>(
        &self,
        handshake: impl Future<Output = Result<WebSocketStream<S>, tungstenite::Error>>,
    ) -> Result<WebSocketStream<S>, tungstenite::Error> {
        let handshake = pin!(handshake);
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
    ///
    /// The session honours the server's [graceful
    /// shutdown](Self::shutdown_handle): the handler is told, and the
    /// session is closed with `Close(1001)` if still open at the grace's
    /// end. Its [`Session::caller`] is empty; see
    /// [`serve_with_caller`](Self::serve_with_caller).
    ///
    /// The session is set up (attached to the registry) when `serve` is
    /// called; the future it returns runs it.
    pub fn serve<S, B, H, Fut>(
        &self,
        ws: WebSocketStream<S>,
        handler: H,
    ) -> impl Future<Output = Served> + use<R, S, B, H, Fut>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        B: DeserializeOwned + Send + 'static,
        H: FnOnce(B, Session) -> Fut + Send + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.serve_with_caller(ws, Caller::default(), handler)
    }

    /// [`serve`](Self::serve), with `caller` (as
    /// [`accept_with_caller`](Self::accept_with_caller) returns it) for the
    /// handler to read in [`Session::caller`].
    pub fn serve_with_caller<S, B, H, Fut>(
        &self,
        ws: WebSocketStream<S>,
        caller: Caller,
        handler: H,
    ) -> impl Future<Output = Served> + use<R, S, B, H, Fut>
    where
        S: AsyncRead + AsyncWrite + Unpin,
        B: DeserializeOwned + Send + 'static,
        H: FnOnce(B, Session) -> Fut + Send + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.serve_live(ws, caller, handler, self.shutdown.live())
    }

    /// [`serve_with_caller`](Self::serve_with_caller), counted as live by
    /// `live` until it ends.
    ///
    /// Not an `async fn`, nor are its callers: the session is set up here,
    /// and the future returned is the driver's alone. An `async fn` keeps
    /// its arguments (the `WebSocketStream`, the caller) in its future for
    /// good, beside the driver they were moved into, and each `async fn`
    /// wrapping it kept them again: one connection's task held the socket
    /// state three times over (6400 B for a serving future, 10,000 sessions
    /// measured by `load`).
    fn serve_live<S, B, H, Fut>(
        &self,
        ws: WebSocketStream<S>,
        caller: Caller,
        handler: H,
        live: Live,
    ) -> impl Future<Output = Served> + use<R, S, B, H, Fut>
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
            caller,
            self.shutdown.clone(),
        );
        let start = (handler, session);
        let app = ServerApp::new(
            start,
            produced,
            outgoing,
            requests_tx,
            attached,
            self.grace(),
        );
        let driver = Driver::new(self.rt.clone(), ws, engine, app, self.tap.clone());
        driver.run().instrument(span).map(move |(end, stats)| {
            drop(live);
            Served { end, stats }
        })
    }

    /// Completes at the end of the shutdown grace.
    fn grace(&self) -> Grace {
        let (shutdown, rt) = (self.shutdown.clone(), self.rt.clone());
        Box::pin(async move {
            shutdown.requested().await;
            if let Some(deadline) = shutdown.deadline() {
                rt.sleep_until(deadline).await;
            }
        })
    }

    /// Accepts connections on `listener` until it fails or the server's
    /// [graceful shutdown](Self::shutdown_handle) begins: each is handshaken
    /// (refused unless `check` passes) and served with a clone of `handler`
    /// on its own task. The handler sees the upgrade request, the peer's
    /// address and the value `check` returned in [`Session::caller`] (a
    /// check that returns `()`, like [`only_path`](crate::only_path),
    /// attaches nothing).
    ///
    /// Once the shutdown has begun, it accepts nothing more (connections
    /// already accepted finish their handshake and are served) and returns
    /// `Ok(())` when every session has ended.
    ///
    /// ```no_run
    /// # use wirestream_runtime::{HandlerResult, Listener, Runtime, Server, Session, refuse};
    /// # use wirestream_runtime::tungstenite::http::StatusCode;
    /// # use wirestream_runtime::tungstenite::handshake::server::Request;
    /// # async fn example<R: Runtime>(server: Server<R>, listener: Listener<R>) -> std::io::Result<()> {
    /// #[derive(Clone)]
    /// struct User(String);
    /// let check = |request: &Request| match request.headers().get("authorization") {
    ///     Some(token) if token == "Bearer t0k3n" => Ok(User("alice".into())),
    ///     _ => Err(refuse(StatusCode::UNAUTHORIZED, "bad token")),
    /// };
    /// let handler = |_: serde_json::Value, session: Session| async move {
    ///     let User(_name) = session.extension::<User>().cloned().expect("checked");
    ///     HandlerResult::Ok(())
    /// };
    /// server.listen(&listener, check, handler).await
    /// # }
    /// ```
    pub async fn listen<B, H, Fut, C, A>(
        &self,
        listener: &Listener<R>,
        check: C,
        handler: H,
    ) -> io::Result<()>
    where
        B: DeserializeOwned + Send + 'static,
        H: FnOnce(B, Session) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
        C: FnOnce(&Handshake) -> Result<A, ErrorResponse> + Clone + Send + Unpin + 'static,
        A: Clone + Send + Sync + 'static,
    {
        let mut stop = self.shutdown.requested();
        loop {
            let accepted = match select(pin!(listener.accept()), &mut stop).await {
                Either::Left((accepted, _)) => accepted?,
                Either::Right(_) => break,
            };
            let (stream, peer) = accepted;
            let server = self.clone();
            let check = check.clone();
            let handler = handler.clone();
            // Counted from the handshake on, so that a shutdown waits for it.
            let live = self.shutdown.live();
            self.rt.spawn(telemetry::accepted(peer, async move {
                // The session's future is made outside the `match`, so that
                // the socket and the caller it took are not kept beside it.
                let session = match server.accept_with_caller(stream, Some(peer), check).await {
                    Ok((ws, caller)) => server.serve_live(ws, caller, handler, live),
                    Err(e) => {
                        tracing::debug!(target: "wirestream::server", "handshake failed: {e}");
                        return;
                    }
                };
                session.await;
            }));
        }
        self.shutdown.ended().await;
        Ok(())
    }
}
