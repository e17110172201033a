//! The client's application half of the driver loop: hands chunks to
//! [`Chunks`](crate::Chunks), feeds notifies to the engine and answers server requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures_channel::{mpsc, oneshot};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use wirestream_proto::{ClientEvent, ClientSession, EndReason, Error, Headers, ServerRequest};

use crate::chunks::Delivery;
use crate::driver::Application;
use crate::notifier::{NotifyCommand, NotifyError, notify_result};
use crate::parked::{Parked, Room};
use crate::rt::Runtime;
use crate::server_request::HttpResponse;

/// What answers server requests on a client.
pub(crate) type Handler =
    Arc<dyn Fn(ServerRequest<'static>) -> BoxFuture<'static, HttpResponse> + Send + Sync>;

/// What the client's application asks of the engine, in the order
/// [`poll_command`](Application::poll_command) looks for it.
pub(crate) enum Command {
    /// The application dropped the stream of chunks.
    HangUp,
    /// A handler's response to the server request with this id.
    Respond(String, HttpResponse),
    /// A notify.
    Notify(NotifyCommand),
}

/// The client's application half of the driver loop.
pub(crate) struct ClientApp<R> {
    rt: R,
    chunks: Option<mpsc::Sender<Delivery>>,
    end: Option<oneshot::Sender<EndReason>>,
    notifies: Parked<NotifyCommand>,
    room: Room,
    responses: mpsc::UnboundedReceiver<(String, HttpResponse)>,
    responses_tx: mpsc::UnboundedSender<(String, HttpResponse)>,
    handler: Option<Handler>,
    waiting: HashMap<String, oneshot::Sender<Result<(), NotifyError>>>,
}

impl<R: Runtime> ClientApp<R> {
    /// The application half of a client that hands chunks to `chunks` and
    /// the end to `end`, takes notifies from `notifies` and answers server
    /// requests with `handler` (`501` without one).
    pub(crate) fn new(
        rt: R,
        chunks: mpsc::Sender<Delivery>,
        end: oneshot::Sender<EndReason>,
        notifies: mpsc::Receiver<NotifyCommand>,
        handler: Option<Handler>,
    ) -> Self {
        let (responses_tx, responses) = mpsc::unbounded();
        Self {
            rt,
            chunks: Some(chunks),
            end: Some(end),
            notifies: Parked::new(notifies),
            room: Room::default(),
            responses,
            responses_tx,
            handler,
            waiting: HashMap::new(),
        }
    }

    /// Hands a chunk or the failure to [`Chunks`]; gives it back when the
    /// application is behind. Hangs up when the application dropped it.
    fn hand_over(
        &mut self,
        engine: &mut ClientSession,
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
    fn hang_up(&mut self, engine: &mut ClientSession, now: Instant) {
        self.chunks = None;
        let _ = engine.close(now);
    }

    fn notify(&mut self, engine: &mut ClientSession, command: NotifyCommand, now: Instant) {
        let sent = engine.notify(now, &command.response_id, &command.content, command.timeout);
        match sent {
            Ok(id) => {
                self.waiting.insert(id, command.reply);
            }
            Err(Error::Full) => self.notifies.park(&mut self.room, command),
            Err(Error::TooManyRequests) => {
                let _ = command.reply.send(Err(NotifyError::TooManyRequests));
            }
            Err(_) => {
                let _ = command.reply.send(Err(NotifyError::SessionEnded));
            }
        }
    }

    fn server_request(
        &mut self,
        engine: &mut ClientSession,
        request: ServerRequest<'static>,
        now: Instant,
    ) {
        let Some(handler) = &self.handler else {
            let id = &request.id;
            let _ = engine.respond(now, id, 501, &Headers::new(), None);
            return;
        };
        let id = request.id.clone().into_owned();
        let mut response = handler(request);
        // A handler that answers at once is answered inline; one that waits
        // runs on its own task.
        if let Some(response) = (&mut response).now_or_never() {
            respond(engine, &id, &response, now);
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
fn respond(engine: &mut ClientSession, id: &str, response: &HttpResponse, now: Instant) {
    let body = response.body.as_deref();
    let _ = engine.respond(now, id, response.status, &response.headers, body);
}

impl<R: Runtime> Application for ClientApp<R> {
    type Engine = ClientSession;
    type Command = Command;

    fn deliver(
        &mut self,
        engine: &mut ClientSession,
        event: ClientEvent,
        now: Instant,
    ) -> Result<(), ClientEvent> {
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
            ClientEvent::NotifyEnded { id, outcome } => {
                if let Some(reply) = self.waiting.remove(&id) {
                    let _ = reply.send(notify_result(outcome));
                }
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
        if let Poll::Ready(Some((id, response))) = self.responses.poll_next_unpin(cx) {
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

    fn apply(&mut self, engine: &mut ClientSession, command: Command, now: Instant) {
        match command {
            Command::HangUp => {
                self.end = None;
                self.hang_up(engine, now);
            }
            Command::Respond(id, response) => respond(engine, &id, &response, now),
            Command::Notify(command) => self.notify(engine, command, now),
        }
    }
}
