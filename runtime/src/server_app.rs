//! The server's application half of the driver loop: starts the handler
//! when the body arrives, feeds its chunks, answers and server requests to
//! the engine, and hands it the engine's events.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use async_tungstenite::tungstenite::Utf8Bytes;
use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use wirestream_proto::{Error, Outcome, Refused, ServerEvent, ServerSession};

/// The engine of a served connection: tungstenite's frames in, and each
/// server request's token the requester's reply channel, so its answer goes
/// straight back to it.
pub(crate) type Engine = ServerSession<Utf8Bytes, oneshot::Sender<Reply>>;

use crate::driver::Application;
use crate::parked::{Parked, Room};
use crate::registry::Attached;
use crate::server_request::{Outgoing, Reply, RequestFailed, reply_of};
use crate::session::{
    Answer, ChunkIds, HandlerResult, HandlerTask, IncomingRequest, Produced, Session, handler_task,
    handler_vanished,
};
use crate::telemetry::{self, Role, Timeout};

/// What the handler's side asks of the engine, in the order
/// [`poll_command`](Application::poll_command) looks for it.
pub(crate) enum Command {
    /// An answer to a client request (or its drop).
    Answer(Answer),
    /// A server request.
    Request(Outgoing),
    /// The handler's next chunk or its end; `None`: its channel closed
    /// without an end.
    Produced(Option<Produced>),
    /// The server's shutdown grace is over: close with `Close(1001)`.
    GoAway,
}

/// Completes at the end of the server's shutdown grace.
pub(crate) type Grace = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The server's application half of the driver loop.
pub(crate) struct ServerApp<B, H> {
    /// The handler and its session, until the body arrives.
    start: Option<(H, Session)>,
    produced: Parked<Produced>,
    answers: mpsc::UnboundedReceiver<Answer>,
    answers_tx: mpsc::UnboundedSender<Answer>,
    outgoing: Parked<Outgoing>,
    room: Room,
    requests_tx: Option<mpsc::UnboundedSender<IncomingRequest>>,
    /// The handler's run, polled by the driver on the connection's own task
    /// (no hop between tasks per chunk); dropped with the connection.
    task: Option<HandlerTask>,
    /// The end of the server's shutdown grace, until it comes.
    grace: Option<Grace>,
    /// The session was closed for a shutdown: requests it ends fail as
    /// [`RequestFailed::ShuttingDown`].
    going_away: bool,
    /// Detaches the connection from the registry when the driver ends.
    _attached: Option<Attached>,
    _body: PhantomData<fn() -> B>,
}

impl<B, H, Fut> ServerApp<B, H>
where
    B: DeserializeOwned + Send + 'static,
    H: FnOnce(B, Session) -> Fut + Send + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    /// The application half of a session that starts `handler` with its
    /// session once the body arrives, takes its chunks from `produced`, its
    /// server requests from `outgoing`, and hands client requests to
    /// `requests`, and closes with `Close(1001)` once `grace` completes.
    /// `attached` is dropped (detaching the connection from the registry)
    /// with it.
    pub(crate) fn new(
        start: (H, Session),
        produced: mpsc::Receiver<Produced>,
        outgoing: mpsc::Receiver<Outgoing>,
        requests: mpsc::UnboundedSender<IncomingRequest>,
        attached: Option<Attached>,
        grace: Grace,
    ) -> Self {
        let (answers_tx, answers) = mpsc::unbounded();
        Self {
            start: Some(start),
            produced: Parked::new(produced),
            answers,
            answers_tx,
            outgoing: Parked::new(outgoing),
            room: Room::default(),
            requests_tx: Some(requests),
            task: None,
            grace: Some(grace),
            going_away: false,
            _attached: attached,
            _body: PhantomData,
        }
    }

    fn start(&mut self, engine: &mut Engine, text: &str, now: Instant) {
        let Some((handler, session)) = self.start.take() else {
            return;
        };
        match serde_json::from_str::<B>(text) {
            Ok(body) => self.task = Some(handler_task(handler, body, session)),
            Err(e) => {
                telemetry::refused(Role::Server, 400, "body");
                let _ = engine.reject_body(now, e);
            }
        }
    }

    fn chunk(&mut self, engine: &mut Engine, chunk: Box<RawValue>, ids: ChunkIds, now: Instant) {
        // Closed or finished: the handler learns it from its channel.
        if let Err(Refused {
            error: Error::Full,
            value,
        }) = engine.send_chunk(now, chunk, ids.iter())
        {
            self.produced
                .park(&mut self.room, Produced::Chunk(value, ids));
        }
    }

    fn produced(&mut self, engine: &mut Engine, produced: Option<Produced>, now: Instant) {
        match produced {
            Some(Produced::Chunk(chunk, ids)) => self.chunk(engine, chunk, ids, now),
            Some(Produced::End(result)) => {
                let ended = match result {
                    Ok(()) => engine.finish(now),
                    Err(e) => {
                        tracing::debug!(target: "wirestream::server", code = e.code, "the handler failed the stream");
                        engine.fail(now, &e)
                    }
                };
                if ended.is_ok() {
                    self.fail_parked_request();
                }
            }
            None => {
                // The handler's task died (a panic) without ending the stream.
                if engine.fail(now, &handler_vanished()).is_ok() {
                    telemetry::handler_panicked(Role::Server);
                    self.fail_parked_request();
                }
            }
        }
    }

    /// Takes the chunks the handler queued beside the one just taken, so a
    /// producer that is ahead costs one pass of the driver per batch, not
    /// per chunk. The channel's capacity bounds the batch (the handler is
    /// not polled meanwhile), and a chunk the engine refuses as full ends it.
    fn more_produced(&mut self, engine: &mut Engine, now: Instant) {
        while let Some(produced) = self.produced.try_next() {
            let end = matches!(produced, Produced::End(_));
            self.produced(engine, Some(produced), now);
            if end {
                return;
            }
        }
    }

    /// The stream has ended (finished, failed or closed): a server request
    /// parked on a full queue can no longer be sent, so it fails now rather
    /// than when the connection ends.
    fn fail_parked_request(&mut self) {
        if let Some(Outgoing { reply, .. }) = self.outgoing.take() {
            let _ = reply.send(Err(self.ended()));
        }
    }

    /// Why a server request the session ends fails.
    fn ended(&self) -> RequestFailed {
        if self.going_away {
            RequestFailed::ShuttingDown
        } else {
            RequestFailed::SessionEnded
        }
    }

    fn go_away(&mut self, engine: &mut Engine, now: Instant) {
        self.going_away = true;
        if engine.go_away(now).is_ok() {
            self.fail_parked_request();
        }
    }

    fn request(&mut self, engine: &mut Engine, outgoing: Outgoing, now: Instant) {
        let Outgoing { request, reply } = outgoing;
        let sent = engine.send_server_request(
            now,
            &request.method,
            &request.headers,
            request.body.as_deref(),
            request.timeout,
            reply,
        );
        let (error, reply) = match sent {
            Ok(id) => {
                tracing::debug!(target: "wirestream::server", id = %id, "server request sent");
                return;
            }
            Err(Refused { error, value }) => (error, value),
        };
        let failed = match error {
            Error::Full => {
                let outgoing = Outgoing { request, reply };
                return self.outgoing.park(&mut self.room, outgoing);
            }
            Error::TooManyRequests => RequestFailed::TooManyRequests,
            Error::TooLarge => RequestFailed::TooLarge,
            _ => self.ended(),
        };
        tracing::debug!(target: "wirestream::server", "server request not sent: {failed}");
        let _ = reply.send(Err(failed));
    }

    fn answer(engine: &mut Engine, answer: Answer, now: Instant) {
        let ok = matches!(answer.result, Some(Ok(())));
        tracing::debug!(target: "wirestream::server", id = %answer.id, ok, "client request answered");
        // Already answered by the engine (drain timeout, end): nothing to do.
        let _ = match answer.result {
            Some(result) => engine.respond(now, &answer.id, result),
            None => engine.respond_dropped(now, &answer.id),
        };
    }
}

impl<B, H, Fut> Application for ServerApp<B, H>
where
    B: DeserializeOwned + Send + 'static,
    H: FnOnce(B, Session) -> Fut + Send + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    type Engine = Engine;
    type Command = Command;
    const ROLE: Role = Role::Server;

    fn deliver(
        &mut self,
        engine: &mut Engine,
        event: ServerEvent<Utf8Bytes, oneshot::Sender<Reply>>,
        now: Instant,
    ) -> Result<(), ServerEvent<Utf8Bytes, oneshot::Sender<Reply>>> {
        match event {
            ServerEvent::Body(text) => self.start(engine, &text, now),
            ServerEvent::Request(request) => {
                tracing::debug!(
                    target: "wirestream::server",
                    id = %request.id(),
                    kind = "notify",
                    direction = "in",
                    "client request"
                );
                let request = IncomingRequest::new(request, self.answers_tx.clone());
                if let Some(tx) = &self.requests_tx {
                    // If the handler dropped its stream, the request is
                    // dropped and so answered.
                    let _ = tx.unbounded_send(request);
                }
            }
            ServerEvent::ServerRequestEnded { id, token, outcome } => {
                if let Outcome::TimedOut = outcome {
                    tracing::debug!(target: "wirestream::server", id = %id, "server request timed out");
                    telemetry::timed_out(Role::Server, Timeout::Request, 504);
                }
                let reply = match reply_of(outcome) {
                    Err(RequestFailed::SessionEnded) => Err(self.ended()),
                    reply => reply,
                };
                let _ = token.send(reply);
            }
            ServerEvent::Writable => self.room.writable(),
            ServerEvent::End(_) => self.requests_tx = None,
        }
        Ok(())
    }

    fn poll_deliver(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }

    fn poll_command(&mut self, cx: &mut Context<'_>) -> Poll<Command> {
        // The handler runs here, on the driver's task: what it produced is
        // in the channels below when this poll returns.
        if let Some(task) = &mut self.task
            && task.as_mut().poll(cx).is_ready()
        {
            self.task = None;
        }
        if let Some(grace) = &mut self.grace
            && grace.as_mut().poll(cx).is_ready()
        {
            self.grace = None;
            return Poll::Ready(Command::GoAway);
        }
        if let Poll::Ready(Some(answer)) = self.answers.poll_next_unpin(cx) {
            return Poll::Ready(Command::Answer(answer));
        }
        // Server requests before chunks: a producer that is always ready
        // would otherwise take every free slot of the queue first. They are
        // bounded (`max_server_requests`), so chunks are never starved.
        if let Some(outgoing) = self.outgoing.retry(&self.room) {
            return Poll::Ready(Command::Request(outgoing));
        }
        if let Some(produced) = self.produced.retry(&self.room) {
            return Poll::Ready(Command::Produced(Some(produced)));
        }
        if let Poll::Ready(Some(outgoing)) = self.outgoing.poll_next(cx) {
            return Poll::Ready(Command::Request(outgoing));
        }
        if let Poll::Ready(produced) = self.produced.poll_next(cx) {
            return Poll::Ready(Command::Produced(produced));
        }
        Poll::Pending
    }

    fn apply(&mut self, engine: &mut Engine, command: Command, now: Instant) {
        match command {
            Command::Answer(answer) => Self::answer(engine, answer, now),
            Command::Produced(produced) => {
                let chunk = matches!(produced, Some(Produced::Chunk(..)));
                self.produced(engine, produced, now);
                if chunk {
                    self.more_produced(engine, now);
                }
            }
            Command::Request(outgoing) => self.request(engine, outgoing, now),
            Command::GoAway => self.go_away(engine, now),
        }
    }
}
