//! The handler's side of one session: the [`Session`] it gets with the
//! body, the [`ChunkSender`] its chunks go through, the [`Requests`] it
//! answers, and the task it runs on.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_tungstenite::tungstenite::Utf8Bytes;
use futures_channel::mpsc;
use futures_util::future::{AbortHandle, Either, abortable};
use futures_util::{FutureExt, SinkExt, Stream, StreamExt};
use serde::Serialize;
use serde_json::value::RawValue;
use wirestream_proto::{
    Config, ConnectionId, ReceivedRequest, Registered, RegistryError, RequestError, RequestKind,
    ResponseError,
};

use crate::caller::Caller;
use crate::registry::Registry;
use crate::rt::Runtime;
use crate::server_request::{HttpRequest, Mailbox, RequestFailed, Response, ask};
use crate::shutdown::{Shutdown, ShutdownSignal};
use crate::telemetry::{self, Role};

/// Chunks a producer may have in flight towards the driver on top of the
/// engine's own bounded queue (plus one per [`ChunkSender`] clone).
pub(crate) const CHUNK_CHANNEL: usize = 8;

/// What a handler returns: `Ok(())` finishes the stream (`Close(1000)`
/// once every accepted client request is answered), an error fails it (the
/// error frame, then `Close(1011)`).
pub type HandlerResult = Result<(), ResponseError<'static>>;

/// The handler's run as one future: `handler(body, session)`, whose result
/// follows its chunks down the session's channel. A handler that panics
/// fails the stream with `500` (its panic is caught here, so that it takes
/// neither the connection's driver nor a runtime's worker with it).
pub(crate) fn handler_task<B, H, Fut>(handler: H, body: B, session: Session) -> HandlerTask
where
    B: Send + 'static,
    H: FnOnce(B, Session) -> Fut + Send + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    let mut end = session.chunks.tx.clone();
    // The handler's future is made here, not in an `async` block, which
    // would keep the body and the session (488 B) beside the future they
    // were moved into for as long as the handler runs.
    let run = match std::panic::catch_unwind(AssertUnwindSafe(move || handler(body, session))) {
        Ok(run) => Either::Left(AssertUnwindSafe(run).catch_unwind()),
        Err(panic) => Either::Right(std::future::ready(Err(panic))),
    };
    Box::pin(run.then(move |result| {
        let result = result.unwrap_or_else(|_| {
            telemetry::handler_panicked(Role::Server);
            Err(handler_panicked())
        });
        async move {
            let _ = end.send(Produced::End(result)).await;
        }
    }))
}

/// A handler's run, as [`handler_task`] makes it.
pub(crate) type HandlerTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `handler(body, session)` on its own task (for sessions without a
/// driver to poll it: SSE and unary). Returns how to drop it early.
pub(crate) fn spawn_handler<R, B, H, Fut>(
    rt: &R,
    handler: H,
    body: B,
    session: Session,
) -> AbortHandle
where
    R: Runtime,
    B: Send + 'static,
    H: FnOnce(B, Session) -> Fut + Send + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    let (task, abort) = abortable(handler_task(handler, body, session));
    rt.spawn(async move {
        let _ = task.await;
    });
    abort
}

/// The error a stream fails with when its handler panicked.
pub(crate) fn handler_panicked() -> ResponseError<'static> {
    ResponseError::new(500, "the handler panicked")
}

/// What a handler's task sends its driver, in order.
pub(crate) enum Produced {
    /// A chunk, serialized, and the agent-completion ids it carries.
    Chunk(Box<RawValue>, ChunkIds),
    /// The handler's result; nothing follows it.
    End(HandlerResult),
}

/// The agent-completion ids a chunk carries, on their way to the driver:
/// inline when they fit (a chunk usually carries one id of a few dozen
/// bytes), so queuing a chunk allocates nothing for them.
pub(crate) enum ChunkIds {
    /// Each id as its length (one byte) then its bytes, in `bytes[..len]`.
    Inline {
        len: usize,
        bytes: [u8; ChunkIds::INLINE],
    },
    Heap(Vec<Box<str>>),
}

impl ChunkIds {
    const INLINE: usize = 62;

    fn new<I>(ids: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut bytes = [0; Self::INLINE];
        let mut len = 0;
        let mut ids = ids.into_iter();
        while let Some(id) = ids.next() {
            let id = id.as_ref();
            let room = bytes
                .get_mut(len..len + 1 + id.len())
                .and_then(<[u8]>::split_first_mut);
            match (u8::try_from(id.len()), room) {
                (Ok(n), Some((head, tail))) => {
                    *head = n;
                    tail.copy_from_slice(id.as_bytes());
                    len += 1 + id.len();
                }
                _ => {
                    let mut all: Vec<Box<str>> =
                        Ids::Inline(&bytes[..len]).map(Into::into).collect();
                    all.push(id.into());
                    all.extend(ids.map(|id| id.as_ref().into()));
                    return Self::Heap(all);
                }
            }
        }
        Self::Inline { len, bytes }
    }

    /// The ids, in the order given.
    pub(crate) fn iter(&self) -> Ids<'_> {
        match self {
            Self::Inline { len, bytes } => Ids::Inline(&bytes[..*len]),
            Self::Heap(ids) => Ids::Heap(ids.iter()),
        }
    }
}

/// The iterator of [`ChunkIds::iter`].
pub(crate) enum Ids<'a> {
    Inline(&'a [u8]),
    Heap(std::slice::Iter<'a, Box<str>>),
}

impl<'a> Iterator for Ids<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            Self::Inline(bytes) => {
                let (&n, rest) = bytes.split_first()?;
                let (id, rest) = rest.split_at_checked(usize::from(n))?;
                *bytes = rest;
                // Copied whole from a `str`: always UTF-8.
                std::str::from_utf8(id).ok()
            }
            Self::Heap(ids) => ids.next().map(|id| &**id),
        }
    }
}

/// The error a stream fails with when its handler's task died (a panic)
/// without ending it.
pub(crate) fn handler_vanished() -> ResponseError<'static> {
    ResponseError::new(500, "the handler ended without finishing the stream")
}

/// Why a chunk was not sent.
///
/// ```no_run
/// # use wirestream_runtime::{HandlerResult, ResponseError, SendError, Session};
/// async fn handler(_: serde_json::Value, mut session: Session) -> HandlerResult {
///     let chunk = serde_json::json!({"id": "agc-1", "object": "agent.completion.chunk"});
///     match session.send(&chunk, ["agc-1"]).await {
///         Ok(()) => Ok(()),
///         Err(SendError::Closed) => Ok(()), // the client left: nothing to tell it
///         Err(e) => Err(ResponseError::new(500, &e.to_string())),
///     }
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum SendError {
    /// The session is over (the client left, or the stream already ended).
    Closed,
    /// The chunk could not be serialized.
    Serialize(serde_json::Error),
    /// The chunk is larger than [`Config::max_frame_size`](wirestream_proto::Config::max_frame_size): the peer would
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
///
/// ```no_run
/// # use wirestream_runtime::{HandlerResult, Runtime, Session};
/// # async fn handler<R: Runtime>(rt: R, session: Session) -> HandlerResult {
/// // Produce on another task (CPU-heavy work), send through a clone.
/// let mut chunks = session.chunks();
/// rt.spawn(async move {
///     for n in 0..3 {
///         let chunk = serde_json::json!({"id": "agc-1", "n": n});
///         if chunks.send(&chunk, ["agc-1"]).await.is_err() {
///             break; // the session is over
///         }
///     }
/// });
/// // The stream finishes when the handler returns: wait for the producer
/// // first (a channel, a join handle...).
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct ChunkSender {
    tx: mpsc::Sender<Produced>,
    /// The session's [`Config::max_frame_size`]: the engine's rule for a
    /// frame's size ([`Config::admits_frame`]: at most this many bytes) is
    /// applied here too, so that the producer learns of a chunk it would
    /// refuse. Only the limit is kept, not the whole `Config` (152 B more
    /// in every sender and every `Session`).
    max_frame_size: usize,
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
        if chunk.get().len() > self.max_frame_size {
            return Err(SendError::TooLarge);
        }
        let ids = ChunkIds::new(ids);
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
    shutdown: Shutdown,
}

/// The handler's side of one session: send chunks, take client requests,
/// ask the client things (server requests) and name the session in the
/// registry.
///
/// ```no_run
/// use wirestream_runtime::{HandlerResult, HttpRequest, ResponseError, Session};
///
/// async fn handler(body: serde_json::Value, mut session: Session) -> HandlerResult {
///     let fail = |e: &dyn std::fmt::Display| ResponseError::new(500, &e.to_string());
///     // Name the connection so an HTTP bridge can reach its client later.
///     let session_id = session.mint_session_id().map_err(|e| fail(&e))?;
///     // Ask the client something (a server request) before the first chunk.
///     let answer = session.request(HttpRequest::new("GET").header("x-session", &session_id)).await;
///     let status = answer.map(|response| response.status()).ok().flatten();
///     let chunk = serde_json::json!({"id": "agc-1", "body": body, "client_said": status});
///     session.send(&chunk, ["agc-1"]).await.map_err(|e| fail(&e))?;
///     Ok(()) // finishes the stream: Close(1000)
/// }
/// ```
#[derive(Debug)]
pub struct Session {
    chunks: ChunkSender,
    requests: Requests,
    link: Link,
    caller: Caller,
}

impl Session {
    /// A session whose chunks go to `chunks`, whose client requests (if it
    /// has a WebSocket) come from `requests`, and whose server requests go
    /// to `mailbox` (`None`: no WebSocket). `conn` is its connection in
    /// `registry`, if it is attached. `caller` is who opened it; `shutdown`
    /// is its server's.
    // Crate-private; every argument is a distinct part of the session.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        chunks: mpsc::Sender<Produced>,
        config: Config,
        requests: Option<mpsc::UnboundedReceiver<IncomingRequest>>,
        mailbox: Option<Mailbox>,
        registry: Registry,
        conn: Option<ConnectionId>,
        caller: Caller,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            chunks: ChunkSender {
                tx: chunks,
                max_frame_size: config.max_frame_size,
            },
            requests: Requests { rx: requests },
            link: Link {
                mailbox,
                registry,
                conn,
                shutdown,
            },
            caller,
        }
    }

    /// Who opened this session: the upgrade request's path, query and
    /// headers, the peer's address, and what the accept check attached
    /// (see [`Caller`]).
    ///
    /// ```no_run
    /// # use wirestream_runtime::{HandlerResult, ResponseError, Session};
    /// #[derive(Clone)]
    /// struct User(String);
    ///
    /// async fn handler(_: serde_json::Value, mut session: Session) -> HandlerResult {
    ///     let Some(User(name)) = session.extension::<User>().cloned() else {
    ///         return Err(ResponseError::new(401, "who are you?"));
    ///     };
    ///     let peer = session.caller().peer;
    ///     session.send(&serde_json::json!({"id": "agc-1", "user": name}), ["agc-1"]).await
    ///         .map_err(|e| ResponseError::new(500, &e.to_string()))?;
    ///     # let _ = peer;
    ///     Ok(())
    /// }
    /// ```
    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// The value of type `T` the accept check attached to this session's
    /// request (shorthand for `session.caller().extension::<T>()`).
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.caller.extension()
    }

    /// Completes once the server's graceful shutdown has begun
    /// ([`Shutdown::begin`]): finish soon (what the handler returns within
    /// the grace ends the stream as usual, `Close(1000)`), or the session is
    /// closed with `Close(1001)` at the grace's end. See [`ShutdownSignal`]
    /// for an example.
    pub fn shutdown_requested(&self) -> ShutdownSignal {
        self.link.shutdown.requested()
    }

    /// Whether the server's graceful shutdown has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.link.shutdown.is_begun()
    }

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
    pub async fn request(&self, request: HttpRequest) -> Result<Response, RequestFailed> {
        match &self.link.mailbox {
            Some(mailbox) => telemetry::server_request(false, ask(mailbox.clone(), request)).await,
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
///
/// ```no_run
/// # use wirestream_runtime::{HandlerResult, Runtime, Session};
/// use futures_util::StreamExt;
///
/// # async fn handler<R: Runtime>(rt: R, mut session: Session) -> HandlerResult {
/// let mut requests = session.requests(); // also a `Stream`
/// rt.spawn(async move {
///     while let Some(request) = requests.next().await {
///         request.respond(Ok(()));
///     }
/// });
/// # Ok(())
/// # }
/// ```
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
pub(crate) struct Answer {
    /// The request's id.
    pub(crate) id: String,
    /// `None`: dropped without an answer.
    pub(crate) result: Option<Result<(), RequestError>>,
}

/// A client request the engine accepted (its `response_id` is one this
/// session emitted): answer it with [`respond`](Self::respond). Dropping it
/// unanswered answers `500`.
///
/// ```no_run
/// use wirestream_runtime::{IncomingRequest, RequestError};
///
/// fn answer(request: IncomingRequest) {
///     match (request.response_id(), request.content()) {
///         (Some("agc-1"), Some(content)) => {
///             println!("notify {}: {content}", request.id());
///             request.respond(Ok(())); // {"type":"ok"}
///         }
///         _ => request.respond(Err(RequestError::new(404, "no such completion"))),
///     }
/// }
/// ```
pub struct IncomingRequest {
    request: ReceivedRequest<Utf8Bytes>,
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
    /// A request the engine accepted; its answer (or its drop) goes to
    /// `answers`.
    pub(crate) fn new(
        request: ReceivedRequest<Utf8Bytes>,
        answers: mpsc::UnboundedSender<Answer>,
    ) -> Self {
        Self {
            request,
            answers: Some(answers),
        }
    }

    /// The request's id, minted by the client.
    pub fn id(&self) -> &str {
        self.request.id()
    }

    /// The request as it arrived: its frame, read in place.
    pub fn request(&self) -> &ReceivedRequest<Utf8Bytes> {
        &self.request
    }

    /// For an `agent_completion_notify`: the running completion it names.
    pub fn response_id(&self) -> Option<&str> {
        match self.request.kind() {
            RequestKind::AgentCompletionNotify { response_id, .. } => Some(response_id),
            // Another kind: `RequestKind` is `#[non_exhaustive]`.
            _ => None,
        }
    }

    /// For an `agent_completion_notify`: what to hand the completion, as
    /// the JSON text that arrived (a string or an array of parts).
    pub fn content(&self) -> Option<&str> {
        match self.request.kind() {
            RequestKind::AgentCompletionNotify { content, .. } => Some(content),
            // Another kind: `RequestKind` is `#[non_exhaustive]`.
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
                id: self.request.id().to_owned(),
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

#[cfg(test)]
mod tests {
    use super::ChunkIds;

    #[test]
    fn chunk_ids_keep_their_order_inline_while_they_fit_and_on_the_heap_after() {
        let uuid = "agc-8c7a0f8e-0c4b-4a51-9a53-6d1b1bb0a3f2";
        let long = "x".repeat(300);
        let cases: [&[&str]; 6] = [
            &[],
            &[uuid],
            &["", "a", "é"],
            &[uuid, "agc-2", "agc-3"],
            &[uuid, uuid],
            &["a", &long, "b"],
        ];
        for ids in cases {
            let kept = ChunkIds::new(ids);
            let bytes: usize = ids.iter().map(|id| id.len() + 1).sum();
            assert_eq!(
                matches!(kept, ChunkIds::Inline { .. }),
                bytes <= ChunkIds::INLINE,
                "{ids:?}"
            );
            assert_eq!(kept.iter().collect::<Vec<_>>(), ids);
        }
    }
}
