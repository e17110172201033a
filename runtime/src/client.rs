//! The client role: connect to a `ws://` URL, send the body, read chunks,
//! notify running completions and answer the server's requests.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_channel::{mpsc, oneshot};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, SinkExt, Stream, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use wirestream_proto::{
    ClientEvent, ClientSession, CloseCode, Config, EndReason, Error, Headers, Outcome,
    RequestError, ResponseError, ServerRequest,
};

use crate::driver::{Application, Driver};
use crate::random::OsRandom;
use crate::rt::Runtime;
use crate::socket::{ConnectError, Direction, Tap, connect_websocket};

/// Chunks read ahead of the application; past it the driver stops reading
/// the socket, and the server's producer waits.
const CHUNK_CHANNEL: usize = 16;
/// Notifies waiting for the driver to take them.
const NOTIFY_CHANNEL: usize = 8;

/// An HTTP response to a server request (PROTOCOL.md §3.2).
#[derive(Clone, Debug, Default)]
pub struct HttpResponse {
    /// The HTTP status.
    pub status: u16,
    /// Headers in order (omitted on the wire when empty).
    pub headers: Headers<'static>,
    /// Any JSON (omitted on the wire when `None`).
    pub body: Option<Box<RawValue>>,
}

impl HttpResponse {
    /// A response with `status`, no headers and no body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }
}

crate::http::http_message_builders!(HttpResponse);

type Handler =
    Arc<dyn Fn(ServerRequest<'static>) -> BoxFuture<'static, HttpResponse> + Send + Sync>;

/// Connects to a wirestream server: the URL, extra handshake headers, the
/// limits, a handler for server requests and an optional wiretap.
///
/// ```no_run
/// # async fn f<R: wirestream_runtime::Runtime>(rt: R) -> Result<(), Box<dyn std::error::Error>> {
/// use futures_util::StreamExt;
/// use wirestream_runtime::{Client, HttpResponse};
///
/// let (mut chunks, notifier) = Client::new(rt, "ws://127.0.0.1:8080/agent/completions")
///     .header("authorization", "Bearer token")
///     .on_server_request(|_request| async { HttpResponse::new(200) })
///     .connect::<_, serde_json::Value>(&serde_json::json!({"chunks": 3}))
///     .await?;
/// while let Some(chunk) = chunks.next().await {
///     println!("{}", chunk?);
/// }
/// # drop(notifier); Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client<R: Runtime> {
    rt: R,
    url: String,
    headers: Vec<(String, String)>,
    config: Config,
    handler: Option<Handler>,
    tap: Option<Tap>,
}

impl<R: Runtime> fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("headers", &self.headers)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Client<R> {
    /// A client of the `ws://` endpoint `url`.
    pub fn new(rt: R, url: impl Into<String>) -> Self {
        Self {
            rt,
            url: url.into(),
            headers: Vec::new(),
            config: Config::default(),
            handler: None,
            tap: None,
        }
    }

    /// Adds a header to the upgrade request (e.g. `Authorization`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds headers to the upgrade request.
    pub fn headers<K, V>(mut self, headers: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.headers
            .extend(headers.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Uses these limits and timeouts (notifies default to
    /// [`Config::request_timeout`]).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Answers server requests with `handler`, each on its own task while
    /// the socket keeps being read. Without one, every server request is
    /// answered `501` (this client hosts nothing).
    pub fn on_server_request<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(ServerRequest<'static>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HttpResponse> + Send + 'static,
    {
        self.handler = Some(Arc::new(move |request| handler(request).boxed()));
        self
    }

    /// Calls `tap` with every message read or sent.
    pub fn tap(mut self, tap: impl Fn(Direction, &Message) + Send + Sync + 'static) -> Self {
        self.tap = Some(Arc::new(tap));
        self
    }

    /// Connects, sends `body` as the first frame and returns the stream of
    /// chunks (parsed as `C`) and a [`Notifier`]. The connection runs on its
    /// own task; dropping the [`Chunks`] hangs up (`Close(1000)`).
    pub async fn connect<B, C>(self, body: &B) -> Result<(Chunks<C>, Notifier), ConnectError>
    where
        B: Serialize + ?Sized,
        C: DeserializeOwned,
    {
        let body = serde_json::value::to_raw_value(body).map_err(ConnectError::Body)?;
        if body.get().len() > self.config.max_frame_size {
            return Err(ConnectError::BodyTooLarge);
        }
        let rt = self.rt.clone();
        let ws = connect_websocket(
            &self.url,
            &self.headers,
            &self.config,
            |host, port| async move { rt.connect(&host, port).await },
        )
        .await?;
        let max_frame = self.config.max_frame_size;
        let engine = ClientSession::new(self.config, body, OsRandom::new());
        let (chunks_tx, chunks_rx) = mpsc::channel(CHUNK_CHANNEL);
        let (end_tx, end_rx) = oneshot::channel();
        let (notify_tx, notify_rx) = mpsc::channel(NOTIFY_CHANNEL);
        let (responses_tx, responses) = mpsc::unbounded();
        let app = ClientApp {
            rt: self.rt.clone(),
            chunks: Some(chunks_tx),
            end: Some(end_tx),
            notifies: notify_rx,
            notifies_open: true,
            parked_notify: None,
            writable: false,
            responses,
            responses_tx,
            handler: self.handler,
            waiting: HashMap::new(),
        };
        let driver = Driver::new(self.rt.clone(), ws, engine, app, self.tap);
        self.rt.spawn(async move {
            driver.run().await;
        });
        let chunks = Chunks {
            rx: chunks_rx,
            end_rx,
            end: None,
            reported: false,
            _chunk: PhantomData,
        };
        Ok((
            chunks,
            Notifier {
                tx: notify_tx,
                max_frame,
            },
        ))
    }
}

/// What the driver hands the [`Chunks`] stream.
enum Delivery {
    Chunk(String),
    Failed(ResponseError<'static>),
}

impl Delivery {
    fn into_event(self) -> ClientEvent {
        match self {
            Self::Chunk(text) => ClientEvent::Chunk(text),
            Self::Failed(e) => ClientEvent::StreamFailed(e),
        }
    }
}

/// Why the stream of chunks did not end normally, or a chunk did not parse.
#[derive(Debug)]
#[non_exhaustive]
pub enum StreamError {
    /// The server sent the error frame: the stream could not be created or
    /// failed (its `Close(1011)` follows).
    Failed(ResponseError<'static>),
    /// A chunk did not parse as the chunk type (the stream goes on).
    Chunk(serde_json::Error),
    /// The connection ended without finishing the stream: a close code
    /// other than 1000, or the transport died (1006).
    Ended(EndReason),
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(e) => write!(f, "the stream failed: {} {}", e.code, e.message.get()),
            Self::Chunk(e) => write!(f, "a chunk did not parse: {e}"),
            Self::Ended(reason) => write!(f, "the connection ended ({})", reason.code()),
        }
    }
}

impl std::error::Error for StreamError {}

/// The chunks of a stream, in order: `Ok(chunk)`, then `None` after the
/// server's `Close(1000)`. A failed stream yields `Err(Failed)`, a
/// connection that ended otherwise `Err(Ended)`, once, before `None`.
/// [`end`](Self::end) then tells how the connection ended. Dropping it hangs
/// up.
pub struct Chunks<C> {
    rx: mpsc::Receiver<Delivery>,
    end_rx: oneshot::Receiver<EndReason>,
    end: Option<EndReason>,
    reported: bool,
    _chunk: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for Chunks<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunks")
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

impl<C> Chunks<C> {
    /// How the connection ended, once the stream has returned `None`.
    pub fn end(&self) -> Option<EndReason> {
        self.end
    }
}

impl<C: DeserializeOwned> Stream for Chunks<C> {
    type Item = Result<C, StreamError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.end.is_some() {
            return Poll::Ready(None);
        }
        match this.rx.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Delivery::Chunk(text))) => Poll::Ready(Some(
                serde_json::from_str(&text).map_err(StreamError::Chunk),
            )),
            Poll::Ready(Some(Delivery::Failed(e))) => {
                this.reported = true;
                Poll::Ready(Some(Err(StreamError::Failed(e))))
            }
            Poll::Ready(None) => {
                // The driver reports the end before it lets go of the channel.
                let reason = match this.end_rx.try_recv() {
                    Ok(Some(reason)) => reason,
                    _ => EndReason::TransportLost,
                };
                this.end = Some(reason);
                let normal = matches!(reason, EndReason::Peer(Some(CloseCode::NORMAL)));
                if normal || this.reported {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(StreamError::Ended(reason))))
                }
            }
        }
    }
}

/// Why a notify got no `ok`.
#[derive(Debug)]
#[non_exhaustive]
pub enum NotifyError {
    /// The server answered `error` with this code and message.
    Rejected(RequestError),
    /// No answer before the deadline.
    TimedOut,
    /// The connection ended first.
    SessionEnded,
    /// As many notifies are in flight as the config allows.
    TooManyRequests,
    /// The content could not be serialized.
    Serialize(serde_json::Error),
    /// The content is over the frame size limit.
    TooLarge,
}

impl fmt::Display for NotifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rejected(e) => write!(f, "rejected: {e}"),
            Self::TimedOut => f.write_str("no answer in time"),
            Self::SessionEnded => f.write_str("the connection ended first"),
            Self::TooManyRequests => f.write_str("too many notifies in flight"),
            Self::Serialize(e) => write!(f, "could not serialize the content: {e}"),
            Self::TooLarge => f.write_str("the content is over the frame size limit"),
        }
    }
}

impl std::error::Error for NotifyError {}

struct NotifyCommand {
    response_id: String,
    content: Box<RawValue>,
    timeout: Option<Duration>,
    reply: oneshot::Sender<Result<(), NotifyError>>,
}

/// Sends `agent_completion_notify` requests over the connection; cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Notifier {
    tx: mpsc::Sender<NotifyCommand>,
    max_frame: usize,
}

impl fmt::Debug for NotifyCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NotifyCommand")
            .field("response_id", &self.response_id)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Hands `content` (a string, or an array of parts) to the running agent
    /// completion `response_id` and awaits the outcome: `Ok(())` for the
    /// server's `ok`, else why not. `timeout` defaults to the config's
    /// request timeout.
    pub async fn notify<T: Serialize + ?Sized>(
        &self,
        response_id: &str,
        content: &T,
        timeout: Option<Duration>,
    ) -> Result<(), NotifyError> {
        let content = serde_json::value::to_raw_value(content).map_err(NotifyError::Serialize)?;
        if content.get().len() > self.max_frame {
            return Err(NotifyError::TooLarge);
        }
        let (reply, outcome) = oneshot::channel();
        let command = NotifyCommand {
            response_id: response_id.to_owned(),
            content,
            timeout,
            reply,
        };
        self.tx
            .clone()
            .send(command)
            .await
            .map_err(|_| NotifyError::SessionEnded)?;
        outcome.await.unwrap_or(Err(NotifyError::SessionEnded))
    }
}

/// The client's application half of the driver loop.
struct ClientApp<R> {
    rt: R,
    chunks: Option<mpsc::Sender<Delivery>>,
    end: Option<oneshot::Sender<EndReason>>,
    notifies: mpsc::Receiver<NotifyCommand>,
    notifies_open: bool,
    parked_notify: Option<NotifyCommand>,
    writable: bool,
    responses: mpsc::UnboundedReceiver<(String, HttpResponse)>,
    responses_tx: mpsc::UnboundedSender<(String, HttpResponse)>,
    handler: Option<Handler>,
    waiting: HashMap<String, oneshot::Sender<Result<(), NotifyError>>>,
}

impl<R: Runtime> ClientApp<R> {
    /// Hands a chunk or the failure to [`Chunks`]; gives it back when the
    /// application is behind. Hangs up when the application dropped it.
    fn hand_over(
        &mut self,
        engine: &mut ClientSession,
        delivery: Delivery,
    ) -> Result<(), Delivery> {
        let Some(tx) = &mut self.chunks else {
            return Ok(());
        };
        match tx.try_send(delivery) {
            Ok(()) => Ok(()),
            Err(e) if e.is_full() => Err(e.into_inner()),
            Err(_) => {
                self.chunks = None;
                let _ = engine.close(Instant::now());
                Ok(())
            }
        }
    }

    fn notify(&mut self, engine: &mut ClientSession, command: NotifyCommand) {
        let sent = engine.notify(
            Instant::now(),
            &command.response_id,
            &command.content,
            command.timeout,
        );
        match sent {
            Ok(id) => {
                self.waiting.insert(id, command.reply);
            }
            Err(Error::Full) => {
                self.parked_notify = Some(command);
                self.writable = false;
            }
            Err(Error::TooManyRequests) => {
                let _ = command.reply.send(Err(NotifyError::TooManyRequests));
            }
            Err(_) => {
                let _ = command.reply.send(Err(NotifyError::SessionEnded));
            }
        }
    }

    fn server_request(&mut self, engine: &mut ClientSession, request: ServerRequest<'static>) {
        let Some(handler) = &self.handler else {
            let id = &request.id;
            let _ = engine.respond(Instant::now(), id, 501, &Headers::new(), None);
            return;
        };
        let id = request.id.clone().into_owned();
        let mut response = handler(request);
        // A handler that answers at once is answered inline; one that waits
        // runs on its own task.
        if let Some(response) = (&mut response).now_or_never() {
            respond(engine, &id, &response);
            return;
        }
        let responses = self.responses_tx.clone();
        self.rt.spawn(async move {
            let response = response.await;
            let _ = responses.unbounded_send((id, response));
        });
    }
}

/// Answers the server request `id` (already ended, if the session is over).
fn respond(engine: &mut ClientSession, id: &str, response: &HttpResponse) {
    let body = response.body.as_deref();
    let _ = engine.respond(Instant::now(), id, response.status, &response.headers, body);
}

/// Maps a notify's end to what [`Notifier::notify`] returns.
fn notify_result(outcome: Outcome<Result<(), RequestError>>) -> Result<(), NotifyError> {
    match outcome {
        Outcome::Answered(Ok(())) => Ok(()),
        Outcome::Answered(Err(e)) => Err(NotifyError::Rejected(e)),
        Outcome::TimedOut => Err(NotifyError::TimedOut),
        Outcome::SessionEnded => Err(NotifyError::SessionEnded),
    }
}

impl<R: Runtime> Application for ClientApp<R> {
    type Engine = ClientSession;

    fn deliver(
        &mut self,
        engine: &mut ClientSession,
        event: ClientEvent,
    ) -> Result<(), ClientEvent> {
        match event {
            ClientEvent::Chunk(text) => self
                .hand_over(engine, Delivery::Chunk(text))
                .map_err(Delivery::into_event),
            ClientEvent::StreamFailed(e) => self
                .hand_over(engine, Delivery::Failed(e))
                .map_err(Delivery::into_event),
            ClientEvent::ServerRequest(request) => {
                self.server_request(engine, request);
                Ok(())
            }
            ClientEvent::NotifyEnded { id, outcome } => {
                if let Some(reply) = self.waiting.remove(&id) {
                    let _ = reply.send(notify_result(outcome));
                }
                Ok(())
            }
            ClientEvent::Writable => {
                self.writable = true;
                Ok(())
            }
            ClientEvent::End(reason) => {
                if let Some(end) = self.end.take() {
                    let _ = end.send(reason);
                }
                Ok(())
            }
        }
    }

    fn poll_deliver(&mut self, cx: &mut Context<'_>, engine: &mut ClientSession) -> Poll<()> {
        let Some(tx) = &mut self.chunks else {
            return Poll::Ready(());
        };
        match tx.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Ready(Err(_)) => {
                // The application dropped the stream: hang up.
                self.chunks = None;
                let _ = engine.close(Instant::now());
                Poll::Ready(())
            }
        }
    }

    fn poll_command(&mut self, cx: &mut Context<'_>, engine: &mut ClientSession) -> Poll<()> {
        if let Some(end) = &mut self.end {
            if end.poll_canceled(cx).is_ready() {
                // The application dropped the stream of chunks: hang up.
                self.end = None;
                self.chunks = None;
                let _ = engine.close(Instant::now());
                return Poll::Ready(());
            }
        }
        if let Poll::Ready(Some((id, response))) = self.responses.poll_next_unpin(cx) {
            respond(engine, &id, &response);
            return Poll::Ready(());
        }
        if self.writable {
            if let Some(command) = self.parked_notify.take() {
                self.notify(engine, command);
                return Poll::Ready(());
            }
        }
        if self.parked_notify.is_none() && self.notifies_open {
            match self.notifies.poll_next_unpin(cx) {
                Poll::Ready(Some(command)) => {
                    self.notify(engine, command);
                    return Poll::Ready(());
                }
                Poll::Ready(None) => self.notifies_open = false,
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}
