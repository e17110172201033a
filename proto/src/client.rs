//! The client session (PROTOCOL.md §2 and §3, from the SDK's side).

use std::borrow::Cow;
use std::convert::Infallible;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::classify::{self, Client, Http};
use crate::config::Config;
use crate::core::{Core, Phase, Role, RoleEvent};
use crate::engine::Engine;
use crate::error::{Error, Outcome, Refused, RequestError};
use crate::frame::{CloseCode, EndReason, Inbound, Transmit};
use crate::ids::RandomSource;
use crate::received::{Head as ViewHead, ReceivedServerRequest, Span, header_spans};
use crate::requests::{Admission, Incoming, Outgoing};
use crate::stats::Stats;
use crate::wire::{ClientResponse, Frame, Head, Headers, Json, ResponseError};

/// Something the client application must act on or may observe.
///
/// `T` is the inbound frames' text type ([`Engine::Text`]) and `K` the
/// application's token for a notify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent<T: AsRef<str> = String, K = ()> {
    /// A chunk of the stream, as the JSON text that arrived. Parse it as the
    /// endpoint's chunk type.
    Chunk(T),
    /// The `{code, message}` error frame: the stream could not be created or
    /// failed. The server's `Close(1011)` follows. Reported at most once.
    StreamFailed(ResponseError<'static>),
    /// A request from the server, to answer with
    /// [`ClientSession::respond`] (status `501` if this client hosts nothing).
    ServerRequest(ReceivedServerRequest<T>),
    /// A notify ended: answered `ok` (`Ok(())`), answered `error`, timed
    /// out, or cut by the session's end. Each notify ends exactly once.
    NotifyEnded {
        /// The id [`ClientSession::notify`] returned.
        id: String,
        /// The token it was sent with.
        token: K,
        /// How it ended.
        outcome: Outcome<Result<(), RequestError>>,
    },
    /// The outbound queue has room again after a command was refused with
    /// [`Error::Full`].
    Writable,
    /// The session ended (reported exactly once), with the close code.
    End(EndReason),
}

impl<T: AsRef<str>, K> RoleEvent for ClientEvent<T, K> {
    fn end(reason: EndReason) -> Self {
        Self::End(reason)
    }
    fn writable() -> Self {
        Self::Writable
    }
}

fn ended<T: AsRef<str>, K>(
    id: String,
    token: K,
    outcome: Outcome<Result<(), RequestError>>,
) -> ClientEvent<T, K> {
    ClientEvent::NotifyEnded { id, token, outcome }
}

/// The client side of one connection, as a plain value: the body goes out
/// first, chunks come back, notifies and server requests cross in both
/// directions.
///
/// The same four groups of methods as [`ServerSession`](crate::ServerSession)
/// (the handles and polls are the [`Engine`] trait's), and the same rule:
/// **after every handle or command, drain the polls**. `T` is the text type
/// of inbound frames and `K` the application's token for a notify.
pub struct ClientSession<T: AsRef<str> = String, K = ()> {
    /// Open is the streaming phase: the client has no other.
    core: Core<ClientEvent<T, K>>,
    /// Notifies sent, with their tokens.
    sent: Outgoing<K>,
    /// Server requests received and not yet answered.
    received: Incoming<()>,
    failed: bool,
}

impl<T: AsRef<str>, K> std::fmt::Debug for ClientSession<T, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("phase", &self.phase())
            .field("queued", &self.core.out.len())
            .field("notifies", &self.sent.len())
            .field("server_requests", &self.received.len())
            .field("stats", &self.core.stats)
            .finish_non_exhaustive()
    }
}

impl<T: AsRef<str>, K> ClientSession<T, K> {
    /// A session whose WebSocket handshake completed at `now`: `body` (the
    /// endpoint's `*CreateParams`) is queued as the first frame. Notify ids
    /// are minted from `rng`. A body over [`Config::max_frame_size`] is
    /// refused ([`Error::TooLarge`]) and handed back.
    pub fn new(
        config: Config,
        now: Instant,
        body: Box<RawValue>,
        rng: impl RandomSource + 'static,
    ) -> Result<Self, Refused<Box<RawValue>>> {
        let mut core = Core::new(config, now, Box::new(rng));
        if let Err(error) = core.fits(body.get().len()) {
            return Err(Refused { error, value: body });
        }
        core.push(Box::<str>::from(body).into_string());
        Ok(Self {
            sent: Outgoing::new(core.config.max_client_requests),
            received: Incoming::new(core.config.max_server_requests),
            failed: false,
            core,
        })
    }

    /// As [`new`](Self::new), serializing `body` once.
    pub fn with_body<B: Serialize + ?Sized>(
        config: Config,
        now: Instant,
        body: &B,
        rng: impl RandomSource + 'static,
    ) -> Result<Self, Error> {
        let body = serde_json::value::to_raw_value(body)?;
        Self::new(config, now, body, rng).map_err(|refused| refused.error)
    }

    // ---- getters ----

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.core.config
    }

    /// Where the session is: [`Phase::Streaming`], [`Phase::Closing`] or
    /// [`Phase::Closed`].
    pub fn phase(&self) -> Phase {
        self.core.end_phase().unwrap_or(Phase::Streaming)
    }

    /// Whether the server sent the error frame.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// Notifies sent and not yet ended.
    pub fn notifies_in_flight(&self) -> usize {
        self.sent.len()
    }

    /// Server requests received and not yet answered.
    pub fn server_requests_pending(&self) -> usize {
        self.received.len()
    }

    /// Frames waiting in the outbound queue.
    pub fn queued_frames(&self) -> usize {
        self.core.out.len()
    }

    /// Bytes waiting in the outbound queue.
    pub fn queued_bytes(&self) -> usize {
        self.core.out.bytes()
    }

    // ---- commands ----

    /// Sends an `agent_completion_notify` for the running completion
    /// `response_id` and returns the request's freshly minted id. `content`
    /// is a JSON string or an array of parts. It ends exactly once, reported
    /// by [`ClientEvent::NotifyEnded`] with `token`; `timeout` defaults to
    /// [`Config::request_timeout`]. Refused, the token handed back, when the
    /// session is closed, too many notifies are in flight, the queue is full
    /// or the frame would be over [`Config::max_frame_size`].
    pub fn notify(
        &mut self,
        now: Instant,
        response_id: &str,
        content: &RawValue,
        timeout: Option<Duration>,
        token: K,
    ) -> Result<String, Refused<K>> {
        self.core
            .send_request(&mut self.sent, now, timeout, token, |id| {
                Frame::notify(id, response_id, content)
            })
    }

    /// Answers the server request `id`. Always admitted (answers are bounded
    /// by [`Config::max_server_requests`]), unless the answer would be over
    /// [`Config::max_frame_size`] ([`Error::TooLarge`]; the request stays
    /// pending).
    pub fn respond(
        &mut self,
        now: Instant,
        id: &str,
        status: u16,
        headers: &Headers<'_>,
        body: Option<&RawValue>,
    ) -> Result<(), Error> {
        self.core.ensure_open()?;
        let core = &self.core;
        let frame = self
            .received
            .answer_with(id, |()| {
                let frame = Frame::http(id, Head::Status(status), headers, body);
                core.fits(frame.len()).map(|()| frame)
            })
            .ok_or(Error::UnknownRequest)??;
        self.core.push(frame);
        self.core.note(now);
        Ok(())
    }

    /// Abandons the stream: sends `Close(1000)`; notifies in flight end with
    /// the session.
    pub fn close(&mut self, now: Instant) -> Result<(), Error> {
        self.core.ensure_open()?;
        self.close_with(now, CloseCode::NORMAL);
        Ok(())
    }

    // ---- internals ----

    fn on_text(&mut self, frame: T) {
        let text = frame.as_ref();
        match classify::client(text) {
            Client::Chunk => {
                self.core.stats.chunks += 1;
                self.core.events.push_back(ClientEvent::Chunk(frame));
            }
            Client::Response(response) => {
                let Some((id, token)) = self.sent.take(response.id()) else {
                    self.core.stats.unknown_responses += 1;
                    return;
                };
                let result = match response {
                    ClientResponse::Ok { .. } => Ok(()),
                    ClientResponse::Error { code, message, .. } => {
                        Err(RequestError::new(code, message))
                    }
                };
                self.core
                    .events
                    .push_back(ended(id, token, Outcome::Answered(result)));
            }
            Client::Request(request) => {
                match self
                    .received
                    .admit(&request.id, || Ok::<(), Infallible>(()))
                {
                    Ok(()) => {
                        let view = request_view(text, request);
                        let event = ClientEvent::ServerRequest(view(frame));
                        self.core.events.push_back(event);
                    }
                    // The server mints unique ids; a repeat is dropped and the
                    // first stays pending.
                    Err(Admission::Duplicate) => self.core.stats.junk_frames += 1,
                    Err(Admission::Full | Admission::Refused(_)) => {
                        self.core.stats.refused_requests += 1;
                        let frame =
                            Frame::http(&request.id, Head::Status(429), &Headers::new(), None);
                        self.core.push(frame);
                    }
                }
            }
            Client::StreamError { code, message } if !self.failed => {
                self.failed = true;
                // The scanner validated the message: it parses again.
                let message = RawValue::from_string(message.to_owned()).unwrap_or_default();
                let error = ResponseError {
                    code,
                    message: Json::owned(message),
                };
                self.core.events.push_back(ClientEvent::StreamFailed(error));
            }
            Client::StreamError { .. } | Client::Junk => self.core.stats.junk_frames += 1,
        }
    }

    fn close_with(&mut self, now: Instant, code: CloseCode) {
        self.end_requests();
        self.core.close(now, code);
    }
}

/// The view of a server request, once its frame's text is handed over.
fn request_view<T: AsRef<str>>(
    text: &str,
    request: Http<'_, Cow<'_, str>>,
) -> impl FnOnce(T) -> ReceivedServerRequest<T> + use<T> {
    let id = Span::of_cow(text, request.id);
    let method = Span::of_cow(text, request.head);
    let headers = header_spans(text, request.headers);
    let body = request.body.map(|b| Span::of(text, b));
    move |frame| ReceivedServerRequest::new(frame, id, ViewHead::Method(method), headers, body)
}

impl<T: AsRef<str>, K> Role for ClientSession<T, K> {
    type Event = ClientEvent<T, K>;

    fn core(&mut self) -> &mut Core<ClientEvent<T, K>> {
        &mut self.core
    }

    fn end_requests(&mut self) {
        self.sent.end_all(&mut self.core.events, ended);
        self.received.drain();
    }
}

impl<T: AsRef<str>, K> Engine for ClientSession<T, K> {
    type Text = T;
    type Event = ClientEvent<T, K>;

    fn handle_frame(&mut self, now: Instant, frame: Inbound<T>) {
        self.core.inbound(now);
        if self.core.absorb(&frame) {
            return;
        }
        match frame {
            Inbound::Ping | Inbound::Pong => {}
            Inbound::Binary => self.core.stats.binary_frames += 1,
            Inbound::Close(code) => self.peer_gone(EndReason::Peer(code)),
            Inbound::Oversize => self.close_with(now, CloseCode::TOO_BIG),
            Inbound::ProtocolError(code) => self.close_with(now, code),
            Inbound::Text(t) if t.as_ref().len() > self.core.config.max_frame_size => {
                self.close_with(now, CloseCode::TOO_BIG);
            }
            Inbound::Text(t) => self.on_text(t),
        }
        self.core.note(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.sent.expire(now, &mut self.core.events, ended);
        self.shared_timeouts(now);
    }

    fn handle_transport_lost(&mut self, _now: Instant) {
        self.transport_lost();
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.core.pop(true)
    }

    fn poll_event(&mut self) -> Option<ClientEvent<T, K>> {
        self.core.pop_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if self.core.is_open() {
            [self.sent.next_deadline(), self.core.liveness_deadline()]
                .into_iter()
                .flatten()
                .min()
        } else {
            self.core.close_deadline()
        }
    }

    fn wants_input(&self) -> bool {
        self.core.wants_input()
    }

    fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    fn stats(&self) -> Stats {
        self.core.stats
    }

    fn end_of(event: &ClientEvent<T, K>) -> Option<EndReason> {
        match event {
            ClientEvent::End(reason) => Some(*reason),
            _ => None,
        }
    }
}
