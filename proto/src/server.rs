//! The server session (PROTOCOL.md §2, §3, §5, §6): the API side of one
//! WebSocket connection.

use std::borrow::Cow;
use std::fmt::Display;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::classify::{self, Http, Server};
use crate::config::Config;
use crate::core::{Core, Phase, Role, RoleEvent};
use crate::emitted::EmittedIds;
use crate::engine::Engine;
use crate::error::{Error, Outcome, Refused, RequestError};
use crate::frame::{CloseCode, EndReason, Inbound, Transmit};
use crate::ids::RandomSource;
use crate::received::{
    Head as ViewHead, Kind, ReceivedRequest, ReceivedResponse, Span, header_spans,
};
use crate::requests::{Admission, Id, Incoming, Outgoing, SmallStr};
use crate::stats::Stats;
use crate::wire::{Frame, Head, Headers, ResponseError};

/// Something the server application must act on or may observe.
///
/// `T` is the inbound frames' text type ([`Engine::Text`]) and `K` the
/// application's token for a server request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent<T: AsRef<str> = String, K = ()> {
    /// The body frame, as the text that arrived. Parse it as the endpoint's
    /// body type; if that fails, call [`ServerSession::reject_body`].
    Body(T),
    /// A client request to handle and answer with
    /// [`ServerSession::respond`]. Its `response_id` is one this session has
    /// emitted.
    Request(ReceivedRequest<T>),
    /// A server request ended: answered, timed out, or cut by the session's
    /// end. Each request sent ends exactly once.
    ServerRequestEnded {
        /// The id [`ServerSession::send_server_request`] returned.
        id: String,
        /// The token it was sent with.
        token: K,
        /// How it ended.
        outcome: Outcome<ReceivedResponse<T>>,
    },
    /// The outbound queue has room again after a command was refused with
    /// [`Error::Full`].
    Writable,
    /// The session ended (reported exactly once).
    End(EndReason),
}

impl<T: AsRef<str>, K> RoleEvent for ServerEvent<T, K> {
    fn end(reason: EndReason) -> Self {
        Self::End(reason)
    }
    fn writable() -> Self {
        Self::Writable
    }
}

/// The protocol's phases; they matter only while the link is open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitingBody { deadline: Option<Instant> },
    Streaming,
    Draining { deadline: Option<Instant> },
}

/// The server side of one connection, as a plain value.
///
/// It never touches a socket, a clock or a task. Methods come in four groups:
///
/// - getters (`&self`): [`phase`](Self::phase), [`stats`](Engine::stats), …;
/// - `handle_*(now, …)` (the [`Engine`] trait): what arrived: a
///   [frame](Engine::handle_frame), a [timeout](Engine::handle_timeout), the
///   [transport's end](Engine::handle_transport_lost);
/// - commands from the application: [`send_chunk`](Self::send_chunk),
///   [`finish`](Self::finish), [`fail`](Self::fail),
///   [`reject_body`](Self::reject_body), [`respond`](Self::respond),
///   [`send_server_request`](Self::send_server_request);
/// - `poll_*` (the [`Engine`] trait): what the session produced:
///   [frames to send](Engine::poll_transmit), [events](Engine::poll_event),
///   and [the next deadline](Engine::poll_timeout).
///
/// **After every handle or command, drain the polls** (see [`Engine`]).
///
/// `T` is the text type of inbound frames, taken by value (a `String`, or a
/// shared buffer such as tungstenite's `Utf8Bytes`); events hand out views
/// into it. `K` is the application's token for a server request, handed
/// back when the request ends, so that the answer can be routed without a
/// map of the application's own.
///
/// The peer's mistakes never come back as errors: they are answered on the
/// wire as PROTOCOL.md says. Errors returned by commands are the
/// application's, and leave the session unchanged.
pub struct ServerSession<T: AsRef<str> = String, K = ()> {
    core: Core<ServerEvent<T, K>>,
    state: State,
    emitted: EmittedIds,
    /// Accepted client requests; the value is their `response_id`.
    received: Incoming<SmallStr>,
    /// Server requests sent, with their tokens.
    sent: Outgoing<K>,
}

impl<T: AsRef<str>, K> std::fmt::Debug for ServerSession<T, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession")
            .field("phase", &self.phase())
            .field("queued", &self.core.out.len())
            .field("client_requests", &self.received.len())
            .field("server_requests", &self.sent.len())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn no_longer_running(response_id: &str) -> String {
    format!(
        "response_id {:?} is no longer running",
        shortened(response_id)
    )
}

/// Longest peer-chosen text echoed in a message the engine writes.
const ECHO_MAX: usize = 256;

/// `text` cut to at most [`ECHO_MAX`] bytes (at a char boundary), so that a
/// message that quotes what the peer sent (escaped twice: `{:?}`, then
/// JSON) stays far below the frame size limit however long that was.
fn shortened(text: &str) -> &str {
    if text.len() <= ECHO_MAX {
        return text;
    }
    let mut end = ECHO_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

fn ended<T: AsRef<str>, K>(
    id: String,
    token: K,
    outcome: Outcome<ReceivedResponse<T>>,
) -> ServerEvent<T, K> {
    ServerEvent::ServerRequestEnded { id, token, outcome }
}

impl<T: AsRef<str>, K> ServerSession<T, K> {
    /// A session whose WebSocket handshake completed at `now`; the body
    /// timeout starts counting. Server request ids are minted from `rng`.
    pub fn new(config: Config, now: Instant, rng: impl RandomSource + 'static) -> Self {
        let core = Core::new(config, now, Box::new(rng));
        let config = &core.config;
        Self {
            state: State::AwaitingBody {
                deadline: now.checked_add(config.body_timeout),
            },
            emitted: EmittedIds::new(config.max_emitted_ids),
            received: Incoming::new(config.max_client_requests),
            sent: Outgoing::new(config.max_server_requests),
            core,
        }
    }

    // ---- getters ----

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.core.config
    }

    /// Where the session is in its life.
    pub fn phase(&self) -> Phase {
        self.core.end_phase().unwrap_or(match self.state {
            State::AwaitingBody { .. } => Phase::AwaitingBody,
            State::Streaming => Phase::Streaming,
            State::Draining { .. } => Phase::Draining,
        })
    }

    /// Client requests accepted and not yet answered.
    pub fn client_requests_in_flight(&self) -> usize {
        self.received.len()
    }

    /// Server requests sent and not yet ended.
    pub fn server_requests_pending(&self) -> usize {
        self.sent.len()
    }

    /// Frames waiting in the outbound queue.
    pub fn queued_frames(&self) -> usize {
        self.core.out.len()
    }

    /// Bytes waiting in the outbound queue.
    pub fn queued_bytes(&self) -> usize {
        self.core.out.bytes()
    }

    /// Whether `id` is an agent-completion id this session emitted and still
    /// remembers.
    pub fn has_emitted(&self, id: &str) -> bool {
        self.emitted.contains(id)
    }

    /// Agent-completion ids remembered (at most
    /// [`Config::max_emitted_ids`]).
    pub fn emitted_ids(&self) -> usize {
        self.emitted.len()
    }

    // ---- commands ----

    /// Refuses the body the application could not use: sends
    /// `{"code":400,"message":"failed to deserialize body frame: <reason>"}`
    /// and `Close(1003)`; a reason that would make the frame larger than
    /// [`Config::max_frame_size`] is cut to fit. Only before the first
    /// chunk.
    pub fn reject_body(&mut self, now: Instant, reason: impl Display) -> Result<(), Error> {
        self.streaming()?;
        if self.core.stats.chunks > 0 {
            return Err(Error::AlreadyStreaming);
        }
        let mut message = format!("failed to deserialize body frame: {reason}");
        let mut frame = Frame::error(&ResponseError::new(400, &message));
        // The reason is the application's; the answer goes out whatever its
        // length, cut to fit the frame size limit.
        while self.core.fits(frame.len()).is_err() && !message.is_empty() {
            let over = frame.len().saturating_sub(self.core.config.max_frame_size);
            let mut end = message.len().saturating_sub(over.max(1));
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            frame = Frame::error(&ResponseError::new(400, &message));
        }
        self.end(now, Some(frame), CloseCode::UNSUPPORTED);
        Ok(())
    }

    /// Queues a chunk, already serialized, and remembers the agent-completion
    /// ids it carries so that notifies naming them are routed. Refused (the
    /// chunk handed back) when the stream is not open, when the chunk is
    /// over [`Config::max_frame_size`] ([`Error::TooLarge`]) or when the
    /// queue is full ([`Error::Full`]: wait for [`ServerEvent::Writable`]).
    pub fn send_chunk<I>(
        &mut self,
        now: Instant,
        chunk: Box<RawValue>,
        ids: I,
    ) -> Result<(), Refused<Box<RawValue>>>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let checked = self
            .streaming()
            .and_then(|()| self.core.fits(chunk.get().len()))
            .and_then(|()| self.core.admit());
        if let Err(error) = checked {
            self.core.note(now);
            return Err(Refused {
                error,
                value: chunk,
            });
        }
        self.push_chunk(now, Box::<str>::from(chunk).into_string(), ids);
        Ok(())
    }

    /// Serializes `chunk` (once, into the frame) and queues it, as
    /// [`send_chunk`](Self::send_chunk).
    pub fn send_chunk_value<C, I>(&mut self, now: Instant, chunk: &C, ids: I) -> Result<(), Error>
    where
        C: Serialize + ?Sized,
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.streaming()?;
        if let Err(full) = self.core.admit() {
            self.core.note(now);
            return Err(full);
        }
        let text = serde_json::to_string(chunk)?;
        self.core.fits(text.len())?;
        self.push_chunk(now, text, ids);
        Ok(())
    }

    /// Ends the stream successfully. Once every accepted client request is
    /// answered (or the drain timeout answers the rest `504`), sends
    /// `Close(1000)`.
    pub fn finish(&mut self, now: Instant) -> Result<(), Error> {
        self.streaming()?;
        if self.received.is_empty() {
            self.end(now, None, CloseCode::NORMAL);
        } else {
            self.state = State::Draining {
                deadline: now.checked_add(self.core.config.drain_timeout),
            };
        }
        Ok(())
    }

    /// Ends the stream as failed (or never created): answers accepted client
    /// requests `404`, then sends the error frame and `Close(1011)`. An
    /// error frame over [`Config::max_frame_size`] is refused
    /// ([`Error::TooLarge`]).
    pub fn fail(&mut self, now: Instant, error: &ResponseError<'_>) -> Result<(), Error> {
        self.core.ensure_open()?;
        if let State::Draining { .. } = self.state {
            return Err(Error::Finished);
        }
        let frame = Frame::error(error);
        self.core.fits(frame.len())?;
        self.end(now, Some(frame), CloseCode::INTERNAL);
        Ok(())
    }

    /// Closes for a server shutdown, in any phase (PROTOCOL.md §5: at the
    /// end of the shutdown grace): client requests still unanswered are
    /// answered `504`, pending server requests end at once, then
    /// `Close(1001)` goes out. Replies already queued go first.
    pub fn go_away(&mut self, now: Instant) -> Result<(), Error> {
        self.core.ensure_open()?;
        for (id, _) in self.received.drain() {
            self.refuse(&id, 504, "the server is shutting down");
        }
        self.end(now, None, CloseCode::GOING_AWAY);
        Ok(())
    }

    /// Answers the client request `id`: `Ok(())` sends `{"type":"ok"}`, an
    /// error sends `{"type":"error"}` with its code and message. Always
    /// admitted (replies are bounded by the in-flight limit), unless the
    /// reply would be over [`Config::max_frame_size`] ([`Error::TooLarge`];
    /// the request stays pending).
    pub fn respond(
        &mut self,
        now: Instant,
        id: &str,
        result: Result<(), RequestError>,
    ) -> Result<(), Error> {
        self.answer(now, id, |_| result)
    }

    /// Answers the client request `id` that the application dropped without
    /// an answer: `404` "response_id … is no longer running" once the stream
    /// has finished, `500` while it runs.
    pub fn respond_dropped(&mut self, now: Instant, id: &str) -> Result<(), Error> {
        let draining = matches!(self.state, State::Draining { .. });
        self.answer(now, id, |response_id| {
            Err(if draining {
                RequestError::new(404, no_longer_running(response_id))
            } else {
                RequestError::new(500, "the request was dropped without an answer")
            })
        })
    }

    fn answer(
        &mut self,
        now: Instant,
        id: &str,
        result: impl FnOnce(&str) -> Result<(), RequestError>,
    ) -> Result<(), Error> {
        self.core.ensure_open()?;
        let core = &self.core;
        let reply = self
            .received
            .answer_with(id, |response_id| {
                let reply = match result(response_id.as_str()) {
                    Ok(()) => Frame::ok(id),
                    Err(e) => Frame::error_reply(id, e.code, &e.message),
                };
                core.fits(reply.len()).map(|()| reply)
            })
            .ok_or(Error::UnknownRequest)??;
        self.core.push(reply);
        self.core.note(now);
        if matches!(self.state, State::Draining { .. }) && self.received.is_empty() {
            self.end(now, None, CloseCode::NORMAL);
        }
        Ok(())
    }

    /// Sends a server request (an HTTP request forwarded to the client) and
    /// returns its freshly minted id. It ends exactly once, reported by
    /// [`ServerEvent::ServerRequestEnded`] with `token`: answered, timed out
    /// after `timeout` (default [`Config::request_timeout`]), or cut by the
    /// end of the session. Allowed once the body has arrived, before the
    /// first chunk too (a stream's setup may depend on it). Refused, the
    /// token handed back, when the stream is not open, too many are pending,
    /// the queue is full or the frame would be over
    /// [`Config::max_frame_size`].
    pub fn send_server_request(
        &mut self,
        now: Instant,
        method: &str,
        headers: &Headers<'_>,
        body: Option<&RawValue>,
        timeout: Option<Duration>,
        token: K,
    ) -> Result<String, Refused<K>> {
        if let Err(error) = self.streaming() {
            return Err(Refused {
                error,
                value: token,
            });
        }
        self.core
            .send_request(&mut self.sent, now, timeout, token, |id| {
                Frame::http(id, Head::Method(method), headers, body)
            })
    }

    // ---- internals ----

    fn streaming(&self) -> Result<(), Error> {
        self.core.ensure_open()?;
        match self.state {
            State::Streaming => Ok(()),
            State::AwaitingBody { .. } => Err(Error::AwaitingBody),
            State::Draining { .. } => Err(Error::Finished),
        }
    }

    fn push_chunk<I>(&mut self, now: Instant, text: String, ids: I)
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        for id in ids {
            self.emitted.insert(id.as_ref());
        }
        self.core.push(text);
        self.core.stats.chunks += 1;
        self.core.note(now);
    }

    fn on_envelope(&mut self, frame: T) {
        let text = frame.as_ref();
        match classify::server(text) {
            Server::Junk => self.core.stats.junk_frames += 1,
            Server::BadRequest { id, message } => self.refuse(&id, 400, &message),
            Server::Notify {
                id,
                response_id,
                content,
            } => {
                if let Some((id, kind)) = self.admit(text, id, response_id, content) {
                    let request = ReceivedRequest {
                        text: frame,
                        id,
                        kind,
                    };
                    self.core.events.push_back(ServerEvent::Request(request));
                }
            }
            Server::Response(response) => {
                let Some((id, token)) = self.sent.take(&response.id) else {
                    self.core.stats.unknown_responses += 1;
                    return;
                };
                let view = response_view(text, response);
                let response = view(frame);
                self.core
                    .events
                    .push_back(ended(id, token, Outcome::Answered(response)));
            }
        }
    }

    fn on_frame(&mut self, now: Instant, frame: Inbound<T>) {
        let awaiting_body = matches!(self.state, State::AwaitingBody { .. });
        match frame {
            Inbound::Ping | Inbound::Pong => {}
            Inbound::Close(code) => self.peer_gone(EndReason::Peer(code)),
            Inbound::Oversize => self.too_large(now, None),
            Inbound::ProtocolError(code) => self.end(now, None, code),
            Inbound::Text(t) if t.as_ref().len() > self.core.config.max_frame_size => {
                self.too_large(now, Some(t.as_ref().len()));
            }
            Inbound::Binary if awaiting_body => self.end(
                now,
                Some(Frame::error(&ResponseError::new(
                    400,
                    "expected text body frame, got binary",
                ))),
                CloseCode::UNSUPPORTED,
            ),
            Inbound::Binary => self.core.stats.binary_frames += 1,
            Inbound::Text(t) if awaiting_body => {
                self.state = State::Streaming;
                self.core.events.push_back(ServerEvent::Body(t));
            }
            Inbound::Text(t) => self.on_envelope(t),
        }
    }

    /// Takes a client request in, or answers it at once (409, 404, 429).
    fn admit(
        &mut self,
        text: &str,
        id: Cow<'_, str>,
        response_id: Cow<'_, str>,
        content: &str,
    ) -> Option<(Span, Kind)> {
        let max = self.core.config.max_client_requests;
        let draining = matches!(self.state, State::Draining { .. });
        let emitted = &self.emitted;
        let admitted = self.received.admit(&id, || {
            if draining {
                Err(no_longer_running(&response_id))
            } else if !emitted.contains(&response_id) {
                Err(format!(
                    "response_id {:?} not from this stream",
                    shortened(&response_id)
                ))
            } else {
                Ok(SmallStr::new(&response_id))
            }
        });
        let (code, message) = match admitted {
            Ok(()) => {
                let kind = Kind::Notify {
                    content: Span::of(text, content),
                    response_id: Span::of_cow(text, response_id),
                };
                return Some((Span::of_cow(text, id), kind));
            }
            Err(Admission::Duplicate) => (
                409,
                format!("request id {:?} is already in flight", shortened(&id)),
            ),
            Err(Admission::Refused(message)) => (404, message),
            Err(Admission::Full) => (
                429,
                format!("too many client requests in flight (limit {max})"),
            ),
        };
        self.refuse(&id, code, &message);
        None
    }

    /// Answers a client request the application never sees.
    fn refuse(&mut self, id: &str, code: u16, message: &str) {
        self.core.stats.refused_requests += 1;
        self.core.push(Frame::error_reply(id, code, message));
    }

    fn too_large(&mut self, now: Instant, len: Option<usize>) {
        let max = self.core.config.max_frame_size;
        let message = match len {
            Some(n) => format!("frame of {n} bytes exceeds the limit of {max} bytes"),
            None => format!("frame exceeds the limit of {max} bytes"),
        };
        self.end(
            now,
            Some(Frame::error(&ResponseError::new(413, &message))),
            CloseCode::TOO_BIG,
        );
    }

    /// This side closes: every accepted client request is answered first,
    /// then the error frame (if any), then the close frame, the last frame
    /// ever; pending server requests end with the session.
    fn end(&mut self, now: Instant, error_frame: Option<String>, code: CloseCode) {
        for (id, response_id) in self.received.drain() {
            self.refuse(&id, 404, &no_longer_running(response_id.as_str()));
        }
        if let Some(frame) = error_frame {
            self.core.push(frame);
        }
        self.sent.end_all(&mut self.core.events, ended);
        self.core.close(now, code);
    }
}

impl<T: AsRef<str>> ReceivedResponse<T> {
    /// Reads `text` as a client's response frame to a server request
    /// (PROTOCOL.md §3.2), as a server session would, keeping the text:
    /// `None` if it is not one. For a response that crossed another hop
    /// (e.g. between the nodes of a cluster) as its frame's text.
    ///
    /// ```
    /// use wirestream_proto::ReceivedResponse;
    ///
    /// let frame = r#"{"id":"sr-1","status":200,"body":{"ok":true}}"#;
    /// let response = ReceivedResponse::parse(frame).unwrap();
    /// assert_eq!(response.status(), Some(200));
    /// assert_eq!(response.body(), Some(r#"{"ok":true}"#));
    /// assert!(ReceivedResponse::parse(r#"{"id":"agc-1"}"#).is_none());
    /// ```
    pub fn parse(text: T) -> Option<Self> {
        let view = match classify::server(text.as_ref()) {
            Server::Response(response) => response_view(text.as_ref(), response),
            _ => return None,
        };
        Some(view(text))
    }
}

/// The view of a server response, once its frame's text is handed over.
fn response_view<T: AsRef<str>>(
    text: &str,
    response: Http<'_, u16>,
) -> impl FnOnce(T) -> ReceivedResponse<T> + use<T> {
    let id = Span::of_cow(text, response.id);
    let headers = header_spans(text, response.headers);
    let body = response.body.map(|b| Span::of(text, b));
    let status = response.head;
    move |frame| ReceivedResponse::new(frame, id, ViewHead::Status(status), headers, body)
}

impl<T: AsRef<str>, K> Role for ServerSession<T, K> {
    type Event = ServerEvent<T, K>;

    fn core(&mut self) -> &mut Core<ServerEvent<T, K>> {
        &mut self.core
    }

    fn end_requests(&mut self) {
        self.received.drain();
        self.sent.end_all(&mut self.core.events, ended);
    }
}

impl<T: AsRef<str>, K> Engine for ServerSession<T, K> {
    type Text = T;
    type Event = ServerEvent<T, K>;

    fn handle_frame(&mut self, now: Instant, frame: Inbound<T>) {
        self.core.inbound(now);
        if self.core.absorb(&frame) {
            return;
        }
        self.on_frame(now, frame);
        self.core.note(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.sent.expire(now, &mut self.core.events, ended);
        if self.core.is_open() {
            match self.state {
                State::AwaitingBody { deadline: Some(d) } if now >= d => {
                    let message = format!(
                        "no body frame within {} ms",
                        self.core.config.body_timeout.as_millis()
                    );
                    let frame = Frame::error(&ResponseError::new(408, &message));
                    self.end(now, Some(frame), CloseCode::POLICY);
                }
                State::Draining { deadline: Some(d) } if now >= d => {
                    for (id, _) in self.received.drain() {
                        self.refuse(&id, 504, "no reply within the drain timeout");
                    }
                    self.end(now, None, CloseCode::NORMAL);
                }
                _ => {}
            }
        }
        self.shared_timeouts(now);
    }

    fn handle_transport_lost(&mut self, _now: Instant) {
        self.transport_lost();
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.core.pop(self.state == State::Streaming)
    }

    fn poll_event(&mut self) -> Option<ServerEvent<T, K>> {
        self.core.pop_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        if !self.core.is_open() {
            return self.core.close_deadline();
        }
        let phase = match self.state {
            State::AwaitingBody { deadline } | State::Draining { deadline } => deadline,
            State::Streaming => None,
        };
        [
            phase,
            self.sent.next_deadline(),
            self.core.liveness_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn wants_input(&self) -> bool {
        self.core.wants_input()
    }

    fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    fn stats(&self) -> Stats {
        Stats {
            forgotten_ids: self.emitted.forgotten(),
            ..self.core.stats
        }
    }

    fn end_of(event: &ServerEvent<T, K>) -> Option<EndReason> {
        match event {
            ServerEvent::End(reason) => Some(*reason),
            _ => None,
        }
    }
}
