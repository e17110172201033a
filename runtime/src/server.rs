//! The server role: serve one accepted WebSocket with a handler that gets
//! the body and a [`Session`], or serve the same handler without a
//! WebSocket ([`Server::serve_detached`], for SSE and unary JSON).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::marker::PhantomData;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Instant;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request as Handshake};
use async_tungstenite::tungstenite::{self, Message};
use futures_channel::{mpsc, oneshot};
use futures_util::future::{AbortHandle, Either, abortable, select};
use futures_util::io::{AsyncRead, AsyncWrite};
use futures_util::{SinkExt, Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use wirestream_proto::{
    ClientRequest, ClientRequestKind, Config, ConnectionId, EndReason, Error, Json, Refused,
    Registered, RegistryError, RequestError, ResponseError, ServerEvent, ServerResponse,
    ServerSession,
};

use crate::driver::{Application, Driver};
use crate::random::OsRandom;
use crate::registry::{
    Attached, HttpRequest, MAILBOX, Mailbox, Outgoing, Registry, Reply, RequestFailed, ask,
    reply_of,
};
use crate::rt::{Listener, Runtime};
use crate::socket::{Direction, Tap, accept_websocket};

/// Chunks a producer may have in flight towards the driver on top of the
/// engine's own bounded queue (plus one per [`ChunkSender`] clone).
const CHUNK_CHANNEL: usize = 8;

/// What a handler returns: `Ok(())` finishes the stream (`Close(1000)`
/// once every accepted client request is answered), an error fails it (the
/// error frame, then `Close(1011)`).
pub type HandlerResult = Result<(), ResponseError<'static>>;

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
        let handshake = pin!(accept_websocket(stream, &self.config, check));
        let deadline = Instant::now().checked_add(self.config.body_timeout);
        let Some(deadline) = deadline else {
            return handshake.await;
        };
        match select(handshake, pin!(self.rt.sleep_until(deadline))).await {
            Either::Left((accepted, _)) => accepted,
            Either::Right(_) => Err(tungstenite::Error::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                "the WebSocket handshake took longer than the body timeout",
            ))),
        }
    }

    /// Serves one session (PROTOCOL.md §2) over `ws` and returns how it
    /// ended.
    ///
    /// The body frame is deserialized as `B`; a body that does not fit is
    /// answered `400` and `Close(1003)` without calling `handler`. Otherwise
    /// `handler(body, session)` runs on its own task while this future keeps
    /// reading the socket; its result finishes or fails the stream. When the
    /// connection ends first (the client hangs up, a limit is breached), the
    /// handler is dropped at its next await, its [`Session::send`] fails,
    /// pending server requests fail, and the connection leaves the registry.
    pub async fn serve<S, B, H, Fut>(&self, ws: WebSocketStream<S>, handler: H) -> EndReason
    where
        S: AsyncRead + AsyncWrite + Unpin,
        B: DeserializeOwned + Send + 'static,
        H: FnOnce(B, Session) -> Fut + Send + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let now = Instant::now();
        let mut engine = ServerSession::new(self.config.clone(), now, OsRandom::new());
        let (mailbox, outgoing) = mpsc::channel(MAILBOX);
        let attached = match self.registry.attach(mailbox.clone()) {
            Ok(attached) => Some(attached),
            Err(e) => {
                let message = format!("cannot take the connection: {e}");
                let _ = engine.fail(now, &ResponseError::new(503, &message));
                None
            }
        };
        let max_frame = engine.config().max_frame_size;
        let (chunks, produced) = mpsc::channel(CHUNK_CHANNEL);
        let (answers_tx, answers) = mpsc::unbounded();
        let (requests_tx, requests) = mpsc::unbounded();
        let session = Session {
            chunks: ChunkSender {
                tx: chunks,
                max_frame,
            },
            requests: Requests { rx: Some(requests) },
            link: Link {
                mailbox: Some(mailbox),
                registry: self.registry.clone(),
                conn: attached.as_ref().map(Attached::id),
            },
        };
        let app = ServerApp {
            rt: self.rt.clone(),
            start: Some((handler, session)),
            produced,
            produced_open: true,
            parked_chunk: None,
            answers,
            answers_tx,
            outgoing,
            outgoing_open: true,
            parked_request: None,
            writable: false,
            requests_tx: Some(requests_tx),
            waiting: HashMap::new(),
            abort: None,
            _attached: attached,
            _body: PhantomData,
        };
        Driver::new(self.rt.clone(), ws, engine, app, self.tap.clone())
            .run()
            .await
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
            let (stream, _) = listener.accept().await?;
            let server = self.clone();
            let check = check.clone();
            let handler = handler.clone();
            self.rt.spawn(async move {
                if let Ok(ws) = server.accept(stream, check).await {
                    server.serve(ws, handler).await;
                }
            });
        }
    }

    /// Runs `handler` without a WebSocket, for the same route served as
    /// Server-Sent Events or as one JSON response (PROTOCOL.md §1): the
    /// chunks it sends come out of the returned stream, in order, with the
    /// same backpressure. Its session has no client requests, and its server
    /// requests fail with [`RequestFailed::NotConnected`]. A body that does
    /// not deserialize as `B` is refused with a `400` error.
    pub fn serve_detached<B, H, Fut>(
        &self,
        body: &[u8],
        handler: H,
    ) -> Result<Detached, ResponseError<'static>>
    where
        B: DeserializeOwned + Send + 'static,
        H: FnOnce(B, Session) -> Fut + Send + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let body: B = serde_json::from_slice(body)
            .map_err(|e| ResponseError::new(400, &format!("failed to deserialize body: {e}")))?;
        let (tx, rx) = mpsc::channel(CHUNK_CHANNEL);
        let session = Session {
            chunks: ChunkSender {
                tx,
                max_frame: self.config.max_frame_size,
            },
            requests: Requests { rx: None },
            link: Link {
                mailbox: None,
                registry: self.registry.clone(),
                conn: None,
            },
        };
        let abort = spawn_handler(&self.rt, handler, body, session);
        Ok(Detached {
            rx,
            abort,
            done: false,
        })
    }
}

/// Runs `handler(body, session)` on its own task; its result follows its
/// chunks down the session's channel. Returns how to drop it early.
fn spawn_handler<R, B, H, Fut>(rt: &R, handler: H, body: B, session: Session) -> AbortHandle
where
    R: Runtime,
    B: Send + 'static,
    H: FnOnce(B, Session) -> Fut + Send + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    let mut end = session.chunks.tx.clone();
    let task = async move {
        let result = handler(body, session).await;
        let _ = end.send(Produced::End(result)).await;
    };
    let (task, abort) = abortable(task);
    rt.spawn(async move {
        let _ = task.await;
    });
    abort
}

/// What a handler's task sends its driver, in order.
enum Produced {
    Chunk(Box<RawValue>, Vec<Box<str>>),
    End(HandlerResult),
}

fn handler_vanished() -> ResponseError<'static> {
    ResponseError::new(500, "the handler ended without finishing the stream")
}

/// Why a chunk was not sent.
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The session is over (the client left, or the stream already ended).
    Closed,
    /// The chunk could not be serialized.
    Serialize(serde_json::Error),
    /// The chunk is larger than [`Config::max_frame_size`]: the peer would
    /// refuse it.
    TooLarge,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the session is over"),
            Self::Serialize(e) => write!(f, "could not serialize the chunk: {e}"),
            Self::TooLarge => f.write_str("the chunk is over the frame size limit"),
        }
    }
}

impl std::error::Error for SendError {}

/// Sends chunks of one session's stream; clone it to produce from several
/// tasks. [`send`](Self::send) waits while the outbound queue is full, so a
/// slow client slows the producer down instead of growing memory.
#[derive(Clone, Debug)]
pub struct ChunkSender {
    tx: mpsc::Sender<Produced>,
    max_frame: usize,
}

impl fmt::Debug for Produced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Chunk(chunk, _) => write!(f, "Chunk({})", chunk.get().len()),
            Self::End(result) => write!(f, "End({result:?})"),
        }
    }
}

impl ChunkSender {
    /// Serializes `chunk` (here, on the producer's task) and queues it.
    /// `ids` are the agent-completion ids it carries: notifies naming them
    /// are routed to this session (PROTOCOL.md §3.1). Waits while the
    /// outbound queue is full.
    pub async fn send<T, I>(&mut self, chunk: &T, ids: I) -> Result<(), SendError>
    where
        T: Serialize + ?Sized,
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let chunk = serde_json::value::to_raw_value(chunk).map_err(SendError::Serialize)?;
        self.send_raw(chunk, ids).await
    }

    /// Queues a chunk that is already JSON, as [`send`](Self::send).
    pub async fn send_raw<I>(&mut self, chunk: Box<RawValue>, ids: I) -> Result<(), SendError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        if chunk.get().len() > self.max_frame {
            return Err(SendError::TooLarge);
        }
        let ids = ids.into_iter().map(|id| id.as_ref().into()).collect();
        self.tx
            .send(Produced::Chunk(chunk, ids))
            .await
            .map_err(|_| SendError::Closed)
    }

    /// Whether the session is over (sending would fail).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// How a session reaches its connection and the registry.
#[derive(Clone, Debug)]
struct Link {
    mailbox: Option<Mailbox>,
    registry: Registry,
    conn: Option<ConnectionId>,
}

/// The handler's side of one session: send chunks, take client requests,
/// ask the client things (server requests) and name the session in the
/// registry.
#[derive(Debug)]
pub struct Session {
    chunks: ChunkSender,
    requests: Requests,
    link: Link,
}

impl Session {
    /// Sends one chunk; see [`ChunkSender::send`].
    pub async fn send<T, I>(&mut self, chunk: &T, ids: I) -> Result<(), SendError>
    where
        T: Serialize + ?Sized,
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.chunks.send(chunk, ids).await
    }

    /// A sender of this session's chunks, for another task.
    pub fn chunks(&self) -> ChunkSender {
        self.chunks.clone()
    }

    /// Takes the stream of client requests (notifies): each arrives as an
    /// [`IncomingRequest`] to answer, while the socket keeps being read. The
    /// first call takes it; later calls get a stream that ends at once. A
    /// request dropped unanswered is answered `500` (or `404` once the
    /// stream has finished).
    pub fn requests(&mut self) -> Requests {
        std::mem::replace(&mut self.requests, Requests { rx: None })
    }

    /// Sends this session's client a server request (PROTOCOL.md §3.2) and
    /// awaits its response, its deadline or the connection's end. Allowed
    /// before the first chunk.
    pub async fn request(
        &self,
        request: HttpRequest,
    ) -> Result<ServerResponse<'static>, RequestFailed> {
        match &self.link.mailbox {
            Some(mailbox) => ask(mailbox.clone(), request).await,
            None => Err(RequestFailed::NotConnected),
        }
    }

    /// Mints a fresh, unguessable session id (128 random bits) owned by this
    /// connection.
    pub fn mint_session_id(&self) -> Result<String, RegistryError> {
        self.link.registry.mint(self.connection()?)
    }

    /// Registers `id` (e.g. one the client resumes) as owned by this
    /// connection; a newer connection takes an id over from an older one.
    pub fn register_session(&self, id: &str) -> Result<Registered, RegistryError> {
        self.link.registry.register(self.connection()?, id)
    }

    /// Removes `id` if this connection still owns it.
    pub fn unregister_session(&self, id: &str) -> bool {
        self.link
            .conn
            .is_some_and(|conn| self.link.registry.unregister(conn, id))
    }

    /// The registry this session is registered in.
    pub fn registry(&self) -> &Registry {
        &self.link.registry
    }

    /// Whether this session runs over a WebSocket (and so can take client
    /// requests and send server requests).
    pub fn is_websocket(&self) -> bool {
        self.link.mailbox.is_some()
    }

    fn connection(&self) -> Result<ConnectionId, RegistryError> {
        self.link.conn.ok_or(RegistryError::UnknownConnection)
    }
}

/// The client requests of one session, in arrival order; ends when the
/// session does.
#[derive(Debug)]
pub struct Requests {
    rx: Option<mpsc::UnboundedReceiver<IncomingRequest>>,
}

impl Requests {
    /// The next request, or `None` once the session is over.
    pub async fn recv(&mut self) -> Option<IncomingRequest> {
        StreamExt::next(self).await
    }
}

impl Stream for Requests {
    type Item = IncomingRequest;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &mut self.rx {
            Some(rx) => rx.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}

/// An answer (or its absence) on its way back to the driver.
struct Answer {
    id: String,
    /// `None`: dropped without an answer.
    result: Option<Result<(), RequestError>>,
}

/// A client request the engine accepted (its `response_id` is one this
/// session emitted): answer it with [`respond`](Self::respond). Dropping it
/// unanswered answers `500`.
pub struct IncomingRequest {
    request: ClientRequest<'static>,
    answers: Option<mpsc::UnboundedSender<Answer>>,
}

impl fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IncomingRequest")
            .field(&self.request)
            .finish()
    }
}

impl IncomingRequest {
    /// The request's id, minted by the client.
    pub fn id(&self) -> &str {
        &self.request.id
    }

    /// The request as it arrived.
    pub fn request(&self) -> &ClientRequest<'static> {
        &self.request
    }

    /// For an `agent_completion_notify`: the running completion it names.
    pub fn response_id(&self) -> Option<&str> {
        match &self.request.kind {
            ClientRequestKind::AgentCompletionNotify { response_id, .. } => Some(response_id),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// For an `agent_completion_notify`: what to hand the completion, raw
    /// (a JSON string or an array of parts).
    pub fn content(&self) -> Option<&Json<'static>> {
        match &self.request.kind {
            ClientRequestKind::AgentCompletionNotify { content, .. } => Some(content),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Answers: `Ok(())` sends `{"type":"ok"}`, an error sends
    /// `{"type":"error"}` with its code and message.
    pub fn respond(mut self, result: Result<(), RequestError>) {
        self.answer(Some(result));
    }

    fn answer(&mut self, result: Option<Result<(), RequestError>>) {
        if let Some(answers) = self.answers.take() {
            let _ = answers.unbounded_send(Answer {
                id: self.request.id.to_string(),
                result,
            });
        }
    }
}

impl Drop for IncomingRequest {
    fn drop(&mut self) {
        self.answer(None);
    }
}

/// The chunks of a handler served without a WebSocket
/// ([`Server::serve_detached`]): each item is a chunk, or the error that
/// failed the stream (the last item). Dropping it drops the handler.
pub struct Detached {
    rx: mpsc::Receiver<Produced>,
    abort: AbortHandle,
    done: bool,
}

impl fmt::Debug for Detached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detached")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Stream for Detached {
    type Item = Result<Box<RawValue>, ResponseError<'static>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let item = match self.rx.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Produced::Chunk(chunk, _))) => return Poll::Ready(Some(Ok(chunk))),
            Poll::Ready(Some(Produced::End(Ok(())))) => None,
            Poll::Ready(Some(Produced::End(Err(e)))) => Some(Err(e)),
            Poll::Ready(None) => Some(Err(handler_vanished())),
        };
        self.done = true;
        Poll::Ready(item)
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

/// The server's application half of the driver loop.
struct ServerApp<R, B, H> {
    rt: R,
    /// The handler and its session, until the body arrives.
    start: Option<(H, Session)>,
    produced: mpsc::Receiver<Produced>,
    produced_open: bool,
    parked_chunk: Option<(Box<RawValue>, Vec<Box<str>>)>,
    answers: mpsc::UnboundedReceiver<Answer>,
    answers_tx: mpsc::UnboundedSender<Answer>,
    outgoing: mpsc::Receiver<Outgoing>,
    outgoing_open: bool,
    parked_request: Option<Outgoing>,
    /// The engine said `Writable` since a command was refused as `Full`.
    writable: bool,
    requests_tx: Option<mpsc::UnboundedSender<IncomingRequest>>,
    waiting: HashMap<String, oneshot::Sender<Reply>>,
    abort: Option<AbortHandle>,
    /// Detaches the connection from the registry when the driver ends.
    _attached: Option<Attached>,
    _body: PhantomData<fn() -> B>,
}

impl<R, B, H> Drop for ServerApp<R, B, H> {
    fn drop(&mut self) {
        // The connection is over: a handler still running is dropped at its
        // next await (it has nobody left to stream to).
        if let Some(abort) = &self.abort {
            abort.abort();
        }
    }
}

impl<R, B, H, Fut> ServerApp<R, B, H>
where
    R: Runtime,
    B: DeserializeOwned + Send + 'static,
    H: FnOnce(B, Session) -> Fut + Send + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn start(&mut self, engine: &mut ServerSession, text: &str) {
        let Some((handler, session)) = self.start.take() else {
            return;
        };
        match serde_json::from_str::<B>(text) {
            Ok(body) => self.abort = Some(spawn_handler(&self.rt, handler, body, session)),
            Err(e) => {
                let _ = engine.reject_body(Instant::now(), e);
            }
        }
    }

    fn chunk(&mut self, engine: &mut ServerSession, chunk: Box<RawValue>, ids: Vec<Box<str>>) {
        // Closed or finished: the handler learns it from its channel.
        if let Err(Refused {
            error: Error::Full,
            value,
        }) = engine.send_chunk(chunk, &ids)
        {
            self.parked_chunk = Some((value, ids));
            self.writable = false;
        }
    }

    fn produced(&mut self, engine: &mut ServerSession, produced: Option<Produced>) {
        let now = Instant::now();
        match produced {
            Some(Produced::Chunk(chunk, ids)) => self.chunk(engine, chunk, ids),
            Some(Produced::End(Ok(()))) => {
                let _ = engine.finish(now);
            }
            Some(Produced::End(Err(e))) => {
                let _ = engine.fail(now, &e);
            }
            None => {
                // The handler's task died (a panic) without ending the stream.
                self.produced_open = false;
                let _ = engine.fail(now, &handler_vanished());
            }
        }
    }

    fn request(&mut self, engine: &mut ServerSession, outgoing: Outgoing) {
        let request = &outgoing.request;
        if request
            .body
            .as_ref()
            .is_some_and(|b| b.get().len() > engine.config().max_frame_size)
        {
            let _ = outgoing.reply.send(Err(RequestFailed::TooLarge));
            return;
        }
        let sent = engine.send_server_request(
            Instant::now(),
            &request.method,
            &request.headers,
            request.body.as_deref(),
            request.timeout,
        );
        match sent {
            Ok(id) => {
                self.waiting.insert(id, outgoing.reply);
            }
            Err(Error::Full) => {
                self.parked_request = Some(outgoing);
                self.writable = false;
            }
            Err(Error::TooManyRequests) => {
                let _ = outgoing.reply.send(Err(RequestFailed::TooManyRequests));
            }
            Err(_) => {
                let _ = outgoing.reply.send(Err(RequestFailed::SessionEnded));
            }
        }
    }

    fn answer(&mut self, engine: &mut ServerSession, answer: Answer) {
        // Already answered by the engine (drain timeout, end): nothing to do.
        let _ = match answer.result {
            Some(result) => engine.respond(Instant::now(), &answer.id, result),
            None => engine.respond_dropped(Instant::now(), &answer.id),
        };
    }
}

impl<R, B, H, Fut> Application for ServerApp<R, B, H>
where
    R: Runtime,
    B: DeserializeOwned + Send + 'static,
    H: FnOnce(B, Session) -> Fut + Send + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    type Engine = ServerSession;

    fn deliver(
        &mut self,
        engine: &mut ServerSession,
        event: ServerEvent,
    ) -> Result<(), ServerEvent> {
        match event {
            ServerEvent::Body(text) => self.start(engine, &text),
            ServerEvent::Request(request) => {
                let request = IncomingRequest {
                    request,
                    answers: Some(self.answers_tx.clone()),
                };
                if let Some(tx) = &self.requests_tx {
                    // If the handler dropped its stream, the request is
                    // dropped and so answered.
                    let _ = tx.unbounded_send(request);
                }
            }
            ServerEvent::ServerRequestEnded { id, outcome } => {
                if let Some(reply) = self.waiting.remove(&id) {
                    let _ = reply.send(reply_of(outcome));
                }
            }
            ServerEvent::Writable => self.writable = true,
            ServerEvent::End(_) => self.requests_tx = None,
        }
        Ok(())
    }

    fn poll_deliver(&mut self, _cx: &mut Context<'_>, _engine: &mut ServerSession) -> Poll<()> {
        Poll::Ready(())
    }

    fn poll_command(&mut self, cx: &mut Context<'_>, engine: &mut ServerSession) -> Poll<()> {
        if let Poll::Ready(Some(answer)) = self.answers.poll_next_unpin(cx) {
            self.answer(engine, answer);
            return Poll::Ready(());
        }
        if self.writable {
            if let Some((chunk, ids)) = self.parked_chunk.take() {
                self.chunk(engine, chunk, ids);
                return Poll::Ready(());
            }
            if let Some(outgoing) = self.parked_request.take() {
                self.request(engine, outgoing);
                return Poll::Ready(());
            }
        }
        if self.parked_chunk.is_none() && self.produced_open {
            if let Poll::Ready(produced) = self.produced.poll_next_unpin(cx) {
                self.produced(engine, produced);
                return Poll::Ready(());
            }
        }
        if self.parked_request.is_none() && self.outgoing_open {
            match self.outgoing.poll_next_unpin(cx) {
                Poll::Ready(Some(outgoing)) => {
                    self.request(engine, outgoing);
                    return Poll::Ready(());
                }
                Poll::Ready(None) => self.outgoing_open = false,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}
