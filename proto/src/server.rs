//! The server session (PROTOCOL.md §2, §3, §5, §6): the API side of one
//! WebSocket connection.

use std::collections::VecDeque;
use std::fmt::Display;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::classify::{ServerFrame, classify_server};
use crate::config::Config;
use crate::emitted::EmittedIds;
use crate::error::{Error, Outcome, Refused, RequestError};
use crate::frame::{CloseCode, EndReason, Inbound, Transmit};
use crate::ids::RandomSource;
use crate::link::Link;
use crate::pending::Pending;
use crate::stats::Stats;
use crate::wire::{
    ClientRequest, ClientRequestKind, ClientResponse, Headers, HttpFrame, ResponseError,
    ServerResponse, frame,
};

/// Where a session is in its life (PROTOCOL.md §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Server: waiting for the body frame.
    AwaitingBody,
    /// Chunks and envelopes flow.
    Streaming,
    /// Server: the stream is finished; waiting for the application's replies
    /// to accepted client requests before `Close(1000)`.
    Draining,
    /// This side sent its close frame; waiting for the peer's (or the close
    /// timeout). Nothing more is sent.
    Closing,
    /// Over: the transport can be dropped.
    Closed,
}

/// Something the server application must act on or may observe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerEvent {
    /// The body frame, as text. Parse it as the endpoint's body type; if that
    /// fails, call [`ServerSession::reject_body`].
    Body(String),
    /// A client request to handle and answer with
    /// [`ServerSession::respond`]. Its `response_id` is one this session has
    /// emitted.
    Request(ClientRequest<'static>),
    /// A server request ended: answered, timed out, or cut by the session's
    /// end. Each request sent ends exactly once.
    ServerRequestEnded {
        /// The id [`ServerSession::send_server_request`] returned.
        id: String,
        /// How it ended.
        outcome: Outcome<ServerResponse<'static>>,
    },
    /// The outbound queue has room again after a command was refused with
    /// [`Error::Full`].
    Writable,
    /// The session ended (reported exactly once).
    End(EndReason),
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
/// - getters (`&self`): [`phase`](Self::phase), [`stats`](Self::stats), …;
/// - `handle_*(now, …)`: what arrived: a [frame](Self::handle_frame), a
///   [timeout](Self::handle_timeout), the [transport's end](Self::handle_transport_lost);
/// - commands from the application: [`send_chunk`](Self::send_chunk),
///   [`finish`](Self::finish), [`fail`](Self::fail),
///   [`reject_body`](Self::reject_body), [`respond`](Self::respond),
///   [`send_server_request`](Self::send_server_request);
/// - `poll_*`: what the session produced: [frames to send](Self::poll_transmit),
///   [events](Self::poll_event), and [the next deadline](Self::poll_timeout).
///
/// **After every handle or command, drain the polls**: send every frame
/// `poll_transmit` yields, take every event, then arm one timer at
/// `poll_timeout` and call `handle_timeout` when it fires. Stop feeding
/// frames while [`wants_input`](Self::wants_input) is false.
///
/// The peer's mistakes never come back as errors: they are answered on the
/// wire as PROTOCOL.md says. Errors returned by commands are the
/// application's, and leave the session unchanged.
pub struct ServerSession {
    config: Config,
    state: State,
    rng: Box<dyn RandomSource>,
    link: Link,
    events: VecDeque<ServerEvent>,
    emitted: EmittedIds,
    /// Accepted client requests, by id; the value is their `response_id`.
    client_requests: Pending<Box<str>>,
    server_requests: Pending<()>,
    stats: Stats,
}

impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession")
            .field("phase", &self.phase())
            .field("queued", &self.link.out.len())
            .field("client_requests", &self.client_requests.len())
            .field("server_requests", &self.server_requests.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn no_longer_running(response_id: &str) -> String {
    format!("response_id {response_id:?} is no longer running")
}

impl ServerSession {
    /// A session whose WebSocket handshake completed at `now`; the body
    /// timeout starts counting. Server request ids are minted from `rng`.
    pub fn new(config: Config, now: Instant, rng: impl RandomSource + 'static) -> Self {
        let config = config.normalized();
        Self {
            state: State::AwaitingBody {
                deadline: now.checked_add(config.body_timeout),
            },
            rng: Box::new(rng),
            link: Link::new(
                config.max_queued_frames,
                config.max_queued_bytes,
                config.close_timeout,
            ),
            events: VecDeque::new(),
            emitted: EmittedIds::new(config.max_emitted_ids),
            client_requests: Pending::new(),
            server_requests: Pending::new(),
            stats: Stats::default(),
            config,
        }
    }

    // ---- getters ----

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the session is in its life.
    pub fn phase(&self) -> Phase {
        self.link.end_phase().unwrap_or(match self.state {
            State::AwaitingBody { .. } => Phase::AwaitingBody,
            State::Streaming => Phase::Streaming,
            State::Draining { .. } => Phase::Draining,
        })
    }

    /// Whether the session is over and the transport can be dropped (after
    /// sending what [`poll_transmit`](Self::poll_transmit) still yields).
    pub fn is_closed(&self) -> bool {
        self.link.is_closed()
    }

    /// Whether the driver should read the next inbound frame. False while
    /// the outbound queue is over its limits (so replies to a peer that does
    /// not read cannot pile up) and once the session is closed.
    pub fn wants_input(&self) -> bool {
        self.link.wants_input()
    }

    /// Counters of dropped, refused and sent frames.
    pub fn stats(&self) -> Stats {
        Stats {
            forgotten_ids: self.emitted.forgotten(),
            ..self.stats
        }
    }

    /// Client requests accepted and not yet answered.
    pub fn client_requests_in_flight(&self) -> usize {
        self.client_requests.len()
    }

    /// Server requests sent and not yet ended.
    pub fn server_requests_pending(&self) -> usize {
        self.server_requests.len()
    }

    /// Frames waiting in the outbound queue.
    pub fn queued_frames(&self) -> usize {
        self.link.out.len()
    }

    /// Bytes waiting in the outbound queue.
    pub fn queued_bytes(&self) -> usize {
        self.link.out.bytes()
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

    // ---- handle ----

    /// Feeds one inbound WebSocket message.
    pub fn handle_frame(&mut self, now: Instant, frame: Inbound<'_>) {
        if self.link.absorb(&frame) {
            return;
        }
        let awaiting_body = matches!(self.state, State::AwaitingBody { .. });
        match frame {
            Inbound::Ping | Inbound::Pong => {}
            Inbound::Close(code) => self.peer_gone(EndReason::Peer(code)),
            Inbound::Oversize => self.too_large(now, None),
            Inbound::Text(t) if t.len() > self.config.max_frame_size => {
                self.too_large(now, Some(t.len()));
            }
            Inbound::Binary if awaiting_body => self.end(
                now,
                Some(ResponseError::new(
                    400,
                    "expected text body frame, got binary",
                )),
                CloseCode::UNSUPPORTED,
            ),
            Inbound::Binary => self.stats.binary_frames += 1,
            Inbound::Text(t) if awaiting_body => {
                self.state = State::Streaming;
                self.events.push_back(ServerEvent::Body(t.to_owned()));
            }
            Inbound::Text(t) => self.on_envelope(t),
        }
    }

    /// Feeds the passing of time: call it when the instant
    /// [`poll_timeout`](Self::poll_timeout) returned has come. Early or
    /// repeated calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (id, ()) in self.server_requests.expire(now) {
            self.events.push_back(ServerEvent::ServerRequestEnded {
                id,
                outcome: Outcome::TimedOut,
            });
        }
        if self.link.is_open() {
            match self.state {
                State::AwaitingBody { deadline: Some(d) } if now >= d => {
                    let message = format!("no body frame within {:?}", self.config.body_timeout);
                    self.end(
                        now,
                        Some(ResponseError::new(408, &message)),
                        CloseCode::POLICY,
                    );
                }
                State::Draining { deadline: Some(d) } if now >= d => {
                    for (id, _) in self.client_requests.drain() {
                        self.refuse(&id, 504, "no reply within the drain timeout");
                    }
                    self.end(now, None, CloseCode::NORMAL);
                }
                _ => {}
            }
        }
        self.link.handle_timeout(now);
    }

    /// Feeds the end of the transport (EOF or an I/O error) without a close
    /// frame: the session ends at once, pending server requests with it.
    pub fn handle_transport_lost(&mut self, _now: Instant) {
        if self.link.is_open() {
            self.peer_gone(EndReason::TransportLost);
        } else {
            self.link.terminate();
        }
    }

    // ---- commands ----

    /// Refuses the body the application could not use: sends
    /// `{"code":400,"message":"failed to deserialize body frame: <reason>"}`
    /// and `Close(1003)`. Only before the first chunk.
    pub fn reject_body(&mut self, now: Instant, reason: impl Display) -> Result<(), Error> {
        self.streaming()?;
        if self.stats.chunks > 0 {
            return Err(Error::AlreadyStreaming);
        }
        let message = format!("failed to deserialize body frame: {reason}");
        self.end(
            now,
            Some(ResponseError::new(400, &message)),
            CloseCode::UNSUPPORTED,
        );
        Ok(())
    }

    /// Queues a chunk, already serialized, and remembers the agent-completion
    /// ids it carries so that notifies naming them are routed. Refused (the
    /// chunk handed back) when the queue is full or the stream is not open.
    pub fn send_chunk<I>(
        &mut self,
        chunk: Box<RawValue>,
        ids: I,
    ) -> Result<(), Refused<Box<RawValue>>>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        if let Err(error) = self.streaming().and_then(|()| self.link.admit()) {
            return Err(Refused {
                error,
                value: chunk,
            });
        }
        self.push_chunk(Box::<str>::from(chunk).into_string(), ids);
        Ok(())
    }

    /// Serializes `chunk` (once, into the frame) and queues it, as
    /// [`send_chunk`](Self::send_chunk).
    pub fn send_chunk_value<T, I>(&mut self, chunk: &T, ids: I) -> Result<(), Error>
    where
        T: Serialize + ?Sized,
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.streaming()?;
        self.link.admit()?;
        let text = serde_json::to_string(chunk)?;
        self.push_chunk(text, ids);
        Ok(())
    }

    /// Ends the stream successfully. Once every accepted client request is
    /// answered (or the drain timeout answers the rest `504`), sends
    /// `Close(1000)`.
    pub fn finish(&mut self, now: Instant) -> Result<(), Error> {
        self.streaming()?;
        if self.client_requests.is_empty() {
            self.end(now, None, CloseCode::NORMAL);
        } else {
            self.state = State::Draining {
                deadline: now.checked_add(self.config.drain_timeout),
            };
        }
        Ok(())
    }

    /// Ends the stream as failed (or never created): answers accepted client
    /// requests `404`, then sends the error frame and `Close(1011)`.
    pub fn fail(&mut self, now: Instant, error: &ResponseError<'_>) -> Result<(), Error> {
        self.link.ensure_open()?;
        if let State::Draining { .. } = self.state {
            return Err(Error::Finished);
        }
        self.end(now, Some(error.clone()), CloseCode::INTERNAL);
        Ok(())
    }

    /// Answers the client request `id`: `Ok(())` sends `{"type":"ok"}`, an
    /// error sends `{"type":"error"}` with its code and message. Always
    /// admitted (replies are bounded by the in-flight limit).
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
        self.link.ensure_open()?;
        let Some(response_id) = self.client_requests.remove(id) else {
            return Err(Error::UnknownRequest);
        };
        let reply = match result(&response_id) {
            Ok(()) => frame(&ClientResponse::Ok { id: id.into() }),
            Err(e) => frame(&ClientResponse::Error {
                id: id.into(),
                code: e.code,
                message: e.message.into(),
            }),
        };
        self.link.out.push(Transmit::Text(reply));
        if matches!(self.state, State::Draining { .. }) && self.client_requests.is_empty() {
            self.end(now, None, CloseCode::NORMAL);
        }
        Ok(())
    }

    /// Sends a server request (an HTTP request forwarded to the client) and
    /// returns its freshly minted id. It ends exactly once, reported by
    /// [`ServerEvent::ServerRequestEnded`]: answered, timed out after
    /// `timeout` (default [`Config::request_timeout`]), or cut by the end of
    /// the session. Allowed once the body has arrived, before the first chunk
    /// too (a stream's setup may depend on it).
    pub fn send_server_request(
        &mut self,
        now: Instant,
        method: &str,
        headers: &Headers<'_>,
        body: Option<&RawValue>,
        timeout: Option<Duration>,
    ) -> Result<String, Error> {
        self.streaming()?;
        if self.server_requests.len() >= self.config.max_server_requests {
            return Err(Error::TooManyRequests);
        }
        self.link.admit()?;
        let id = self.server_requests.fresh_id(&mut *self.rng);
        let text = frame(&HttpFrame {
            id: &id,
            head: ("method", method),
            headers,
            body,
        });
        let deadline = now.checked_add(timeout.unwrap_or(self.config.request_timeout));
        self.server_requests.insert(&id, deadline, ());
        self.link.out.push(Transmit::Text(text));
        Ok(id)
    }

    // ---- polls ----

    /// The next frame to send, in order. The close frame is the last ever.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let (frame, unblocked) = self.link.pop();
        if unblocked && self.state == State::Streaming {
            self.events.push_back(ServerEvent::Writable);
        }
        frame
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called;
    /// `None` when nothing is timed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.link.is_open() {
            return self.link.deadline();
        }
        let phase = match self.state {
            State::AwaitingBody { deadline } | State::Draining { deadline } => deadline,
            State::Streaming => None,
        };
        match (phase, self.server_requests.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- internals ----

    fn streaming(&self) -> Result<(), Error> {
        self.link.ensure_open()?;
        match self.state {
            State::Streaming => Ok(()),
            State::AwaitingBody { .. } => Err(Error::AwaitingBody),
            State::Draining { .. } => Err(Error::Finished),
        }
    }

    fn push_chunk<I>(&mut self, text: String, ids: I)
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        for id in ids {
            self.emitted.insert(id.as_ref());
        }
        self.link.out.push(Transmit::Text(text));
        self.stats.chunks += 1;
    }

    fn on_envelope(&mut self, text: &str) {
        match classify_server(text) {
            ServerFrame::Junk => self.stats.junk_frames += 1,
            ServerFrame::BadRequest { id, message } => self.refuse(&id, 400, &message),
            ServerFrame::Request(request) => self.on_client_request(request),
            ServerFrame::Response(response) => {
                if let Some((id, ())) = self.server_requests.remove_entry(&response.id) {
                    self.events.push_back(ServerEvent::ServerRequestEnded {
                        id,
                        outcome: Outcome::Answered(response.into_owned()),
                    });
                } else {
                    self.stats.unknown_responses += 1;
                }
            }
        }
    }

    fn on_client_request(&mut self, request: ClientRequest<'_>) {
        let ClientRequestKind::AgentCompletionNotify { response_id, .. } = &request.kind;
        let max = self.config.max_client_requests;
        let draining = matches!(self.state, State::Draining { .. });
        let emitted = &self.emitted;
        let admitted = self
            .client_requests
            .try_insert(&request.id, None, |in_flight| {
                if draining {
                    Err((404, no_longer_running(response_id)))
                } else if !emitted.contains(response_id) {
                    Err((
                        404,
                        format!("response_id {response_id:?} not from this stream"),
                    ))
                } else if in_flight >= max {
                    Err((
                        429,
                        format!("too many client requests in flight (limit {max})"),
                    ))
                } else {
                    Ok(Box::<str>::from(response_id.as_ref()))
                }
            });
        match admitted {
            Ok(true) => self
                .events
                .push_back(ServerEvent::Request(request.into_owned())),
            Ok(false) => {
                let message = format!("request id {:?} is already in flight", request.id);
                self.refuse(&request.id, 409, &message);
            }
            Err((code, message)) => self.refuse(&request.id, code, &message),
        }
    }

    /// Answers a client request the application never sees.
    fn refuse(&mut self, id: &str, code: u16, message: &str) {
        self.stats.refused_requests += 1;
        self.link
            .out
            .push(Transmit::Text(frame(&ClientResponse::Error {
                id: id.into(),
                code,
                message: message.into(),
            })));
    }

    fn too_large(&mut self, now: Instant, len: Option<usize>) {
        let max = self.config.max_frame_size;
        let message = match len {
            Some(n) => format!("frame of {n} bytes exceeds the limit of {max} bytes"),
            None => format!("frame exceeds the limit of {max} bytes"),
        };
        self.end(
            now,
            Some(ResponseError::new(413, &message)),
            CloseCode::TOO_BIG,
        );
    }

    /// This side closes: every accepted client request is answered first,
    /// then the error frame (if any), then the close frame, the last frame
    /// ever; pending server requests end with the session.
    fn end(&mut self, now: Instant, error: Option<ResponseError<'_>>, code: CloseCode) {
        for (id, response_id) in self.client_requests.drain() {
            self.refuse(&id, 404, &no_longer_running(&response_id));
        }
        if let Some(error) = error {
            self.link.out.push(Transmit::Text(frame(&error)));
        }
        self.link.close(now, code);
        self.end_server_requests();
        self.events
            .push_back(ServerEvent::End(EndReason::Local(code)));
    }

    /// The peer closed or vanished: nothing more can be delivered.
    fn peer_gone(&mut self, reason: EndReason) {
        self.client_requests.drain();
        self.link.terminate();
        self.end_server_requests();
        self.events.push_back(ServerEvent::End(reason));
    }

    fn end_server_requests(&mut self) {
        for (id, ()) in self.server_requests.drain() {
            self.events.push_back(ServerEvent::ServerRequestEnded {
                id,
                outcome: Outcome::SessionEnded,
            });
        }
    }
}
