//! The client's application half of the driver loop: hands chunks to
//! [`Chunks`](crate::Chunks), feeds notifies to the engine and answers server requests.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use async_tungstenite::tungstenite::Utf8Bytes;
use futures_channel::{mpsc, oneshot};
use std::panic::AssertUnwindSafe;

use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tracing::Instrument;
use wirestream_proto::{ClientEvent, ClientSession, EndReason, Error, Headers, Outcome, Refused};

use crate::chunks::Delivery;
use crate::driver::Application;
use crate::notifier::{NotifyCommand, NotifyError, notify_result};
use crate::parked::{Parked, Room};
use crate::server_request::{HttpResponse, IncomingServerRequest};
use crate::telemetry::{self, Role, Timeout};

/// What answers server requests on a client.
pub(crate) type Handler =
    Arc<dyn Fn(IncomingServerRequest) -> BoxFuture<'static, HttpResponse> + Send + Sync>;

/// Where a notify's outcome goes: the notifier awaiting it.
type NotifyReply = oneshot::Sender<Result<(), NotifyError>>;

/// The engine of a client connection: tungstenite's frames in, and each
/// notify's token the reply channel of the [`Notifier`](crate::Notifier)
/// call awaiting it.
pub(crate) type Engine = ClientSession<Utf8Bytes, NotifyReply>;

/// What the client's application asks of the engine, in the order
/// [`poll_command`](Application::poll_command) looks for it.
pub(crate) enum Command {
    /// The application dropped the stream of chunks.
    HangUp,
    /// A handler's response to the server request with this id (`None`:
    /// the handler panicked).
    Respond(String, Option<HttpResponse>),
    /// A notify.
    Notify(NotifyCommand),
}

/// The client's application half of the driver loop.
pub(crate) struct ClientApp {
    chunks: Option<mpsc::Sender<Delivery>>,
    end: Option<oneshot::Sender<EndReason>>,
    notifies: Parked<NotifyCommand>,
    room: Room,
    /// The handlers of server requests still running, polled on the
    /// driver's task (at most the engine's limit of pending server
    /// requests: it answers one more `429` itself).
    running: FuturesUnordered<BoxFuture<'static, (String, Option<HttpResponse>)>>,
    handler: Option<Handler>,
}

impl ClientApp {
    /// The application half of a client that hands chunks to `chunks` and
    /// the end to `end`, takes notifies from `notifies` and answers server
    /// requests with `handler` (`501` without one).
    pub(crate) fn new(
        chunks: mpsc::Sender<Delivery>,
        end: oneshot::Sender<EndReason>,
        notifies: mpsc::Receiver<NotifyCommand>,
        handler: Option<Handler>,
    ) -> Self {
        Self {
            chunks: Some(chunks),
            end: Some(end),
            notifies: Parked::new(notifies),
            room: Room::default(),
            running: FuturesUnordered::new(),
            handler,
        }
    }

    /// Hands a chunk or the failure to [`Chunks`]; gives it back when the
    /// application is behind. Hangs up when the application dropped it.
    fn hand_over(
        &mut self,
        engine: &mut Engine,
        delivery: Delivery,
        now: Instant,
    ) -> Result<(), Delivery> {
        let Some(tx) = &mut self.chunks else {
            return Ok(());
        };
        match tx.try_send(delivery) {
            Ok(()) => Ok(()),
            Err(e) if e.is_full() => Err(e.into_inner()),
            Err(_) => {
                self.hang_up(engine, now);
                Ok(())
            }
        }
    }

    /// The application dropped the stream of chunks: hang up.
    fn hang_up(&mut self, engine: &mut Engine, now: Instant) {
        self.chunks = None;
        let _ = engine.close(now);
    }

    fn notify(&mut self, engine: &mut Engine, command: NotifyCommand, now: Instant) {
        let NotifyCommand {
            response_id,
            content,
            timeout,
            reply,
        } = command;
        let sent = engine.notify(now, &response_id, &content, timeout, reply);
        let (error, reply) = match sent {
            Ok(id) => {
                tracing::debug!(target: "wirestream::client", id = %id, response_id = %response_id, "notify sent");
                return;
            }
            Err(Refused { error, value }) => (error, value),
        };
        let failed = match error {
            Error::Full => {
                let command = NotifyCommand {
                    response_id,
                    content,
                    timeout,
                    reply,
                };
                return self.notifies.park(&mut self.room, command);
            }
            Error::TooManyRequests => NotifyError::TooManyRequests,
            Error::TooLarge => NotifyError::TooLarge,
            _ => NotifyError::SessionEnded,
        };
        tracing::debug!(target: "wirestream::client", response_id = %response_id, "notify not sent: {failed}");
        let _ = reply.send(Err(failed));
    }

    fn server_request(
        &mut self,
        engine: &mut Engine,
        request: IncomingServerRequest,
        now: Instant,
    ) {
        let Some(handler) = &self.handler else {
            telemetry::refused(Role::Client, 501, "server request");
            let _ = engine.respond(now, request.id(), 501, &Headers::new(), None);
            return;
        };
        let id = request.id().to_owned();
        let span = telemetry::request_span(Role::Client, "server_request", "in", &id);
        let mut response = AssertUnwindSafe(handler(request).instrument(span)).catch_unwind();
        // A handler that answers at once is answered now, in the same turn
        // of the driver: no extra round through the running set, and no
        // second box for its future.
        if let Some(response) = (&mut response).now_or_never() {
            respond(engine, &id, response.ok().as_ref(), now);
            return;
        }
        self.running
            .push(response.map(move |response| (id, response.ok())).boxed());
    }
}

/// Answers the server request `id` (already ended, if the session is over).
/// A handler that panicked (`None`), or an answer the engine refuses as over
/// the frame limit, becomes a bare `500`, so the server's requester is not
/// left waiting for its deadline.
fn respond(engine: &mut Engine, id: &str, response: Option<&HttpResponse>, now: Instant) {
    let answered = response.map(|r| {
        let body = r.body.as_deref();
        engine.respond(now, id, r.status, &r.headers, body)
    });
    if response.is_none() {
        telemetry::handler_panicked(Role::Client);
    }
    if let Some(response) = response {
        tracing::debug!(target: "wirestream::client", id, status = response.status, "server request answered");
    }
    if let None | Some(Err(Error::TooLarge)) = answered {
        let _ = engine.respond(now, id, 500, &Headers::new(), None);
    }
}

impl Application for ClientApp {
    type Engine = Engine;
    type Command = Command;
    const ROLE: Role = Role::Client;

    fn deliver(
        &mut self,
        engine: &mut Engine,
        event: ClientEvent<Utf8Bytes, NotifyReply>,
        now: Instant,
    ) -> Result<(), ClientEvent<Utf8Bytes, NotifyReply>> {
        match event {
            ClientEvent::Chunk(text) => self
                .hand_over(engine, Delivery::Chunk(text), now)
                .map_err(Delivery::into_event),
            ClientEvent::StreamFailed(e) => self
                .hand_over(engine, Delivery::Failed(e), now)
                .map_err(Delivery::into_event),
            ClientEvent::ServerRequest(request) => {
                self.server_request(engine, request, now);
                Ok(())
            }
            ClientEvent::NotifyEnded { id, token, outcome } => {
                if let Outcome::TimedOut = outcome {
                    tracing::debug!(target: "wirestream::client", id = %id, "notify timed out");
                    telemetry::timed_out(Role::Client, Timeout::Request, 504);
                }
                let _ = token.send(notify_result(outcome));
                Ok(())
            }
            ClientEvent::Writable => {
                self.room.writable();
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

    fn poll_deliver(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.chunks {
            // Ready, or the application dropped the stream, which the
            // delivery finds.
            Some(tx) => tx.poll_ready(cx).map(|_| ()),
            None => Poll::Ready(()),
        }
    }

    fn poll_command(&mut self, cx: &mut Context<'_>) -> Poll<Command> {
        if let Some(end) = &mut self.end {
            if end.poll_canceled(cx).is_ready() {
                return Poll::Ready(Command::HangUp);
            }
        }
        if let Poll::Ready(Some((id, response))) = self.running.poll_next_unpin(cx) {
            return Poll::Ready(Command::Respond(id, response));
        }
        if let Some(command) = self.notifies.retry(&self.room) {
            return Poll::Ready(Command::Notify(command));
        }
        if let Poll::Ready(Some(command)) = self.notifies.poll_next(cx) {
            return Poll::Ready(Command::Notify(command));
        }
        Poll::Pending
    }

    fn apply(&mut self, engine: &mut Engine, command: Command, now: Instant) {
        match command {
            Command::HangUp => {
                self.end = None;
                self.hang_up(engine, now);
            }
            Command::Respond(id, response) => respond(engine, &id, response.as_ref(), now),
            Command::Notify(command) => self.notify(engine, command, now),
        }
    }
}
