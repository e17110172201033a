//! The client session (PROTOCOL.md §2 and §3, from the SDK's side).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::value::RawValue;

use crate::classify::{ClientFrame, classify_client};
use crate::config::Config;
use crate::error::{Error, Outcome, RequestError};
use crate::frame::{CloseCode, EndReason, Inbound, Transmit};
use crate::ids::RandomSource;
use crate::link::Link;
use crate::pending::Pending;
use crate::server::Phase;
use crate::stats::Stats;
use crate::wire::{
    ClientRequest, ClientRequestKind, ClientResponse, Headers, HttpFrame, Json, ResponseError,
    ServerRequest, frame,
};

/// Something the client application must act on or may observe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientEvent {
    /// A chunk of the stream, as the JSON text that arrived. Parse it as the
    /// endpoint's chunk type.
    Chunk(String),
    /// The `{code, message}` error frame: the stream could not be created or
    /// failed. The server's `Close(1011)` follows. Reported at most once.
    StreamFailed(ResponseError<'static>),
    /// A request from the server, to answer with
    /// [`ClientSession::respond`] (status `501` if this client hosts nothing).
    ServerRequest(ServerRequest<'static>),
    /// A notify ended: answered `ok` (`Ok(())`), answered `error`, timed
    /// out, or cut by the session's end. Each notify ends exactly once.
    NotifyEnded {
        /// The id [`ClientSession::notify`] returned.
        id: String,
        /// How it ended.
        outcome: Outcome<Result<(), RequestError>>,
    },
    /// The outbound queue has room again after a command was refused with
    /// [`Error::Full`].
    Writable,
    /// The session ended (reported exactly once), with the close code.
    End(EndReason),
}

/// The client side of one connection, as a plain value: the body goes out
/// first, chunks come back, notifies and server requests cross in both
/// directions.
///
/// The same four groups of methods as [`ServerSession`](crate::ServerSession),
/// and the same rule: **after every handle or command, drain the polls**.
pub struct ClientSession {
    config: Config,
    rng: Box<dyn RandomSource>,
    /// Open is the streaming phase: the client has no other.
    link: Link,
    events: VecDeque<ClientEvent>,
    notifies: Pending<()>,
    server_requests: Pending<()>,
    failed: bool,
    stats: Stats,
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("phase", &self.phase())
            .field("queued", &self.link.out.len())
            .field("notifies", &self.notifies.len())
            .field("server_requests", &self.server_requests.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ClientSession {
    /// A session whose WebSocket handshake completed: `body` (the endpoint's
    /// `*CreateParams`) is queued as the first frame. Notify ids are minted
    /// from `rng`.
    pub fn new(config: Config, body: Box<RawValue>, rng: impl RandomSource + 'static) -> Self {
        let config = config.normalized();
        let mut link = Link::new(
            config.max_queued_frames,
            config.max_queued_bytes,
            config.close_timeout,
        );
        link.out
            .push(Transmit::Text(Box::<str>::from(body).into_string()));
        Self {
            rng: Box::new(rng),
            link,
            events: VecDeque::new(),
            notifies: Pending::new(),
            server_requests: Pending::new(),
            failed: false,
            stats: Stats::default(),
            config,
        }
    }

    /// As [`new`](Self::new), serializing `body` once.
    pub fn with_body<T: Serialize + ?Sized>(
        config: Config,
        body: &T,
        rng: impl RandomSource + 'static,
    ) -> Result<Self, Error> {
        let body = serde_json::value::to_raw_value(body)?;
        Ok(Self::new(config, body, rng))
    }

    // ---- getters ----

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Where the session is: [`Phase::Streaming`], [`Phase::Closing`] or
    /// [`Phase::Closed`].
    pub fn phase(&self) -> Phase {
        self.link.end_phase().unwrap_or(Phase::Streaming)
    }

    /// Whether the session is over and the transport can be dropped.
    pub fn is_closed(&self) -> bool {
        self.link.is_closed()
    }

    /// Whether the driver should read the next inbound frame (false while
    /// the outbound queue is over its limits, and once closed).
    pub fn wants_input(&self) -> bool {
        self.link.wants_input()
    }

    /// Whether the server sent the error frame.
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// Counters of dropped, refused and received frames.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Notifies sent and not yet ended.
    pub fn notifies_in_flight(&self) -> usize {
        self.notifies.len()
    }

    /// Server requests received and not yet answered.
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

    // ---- handle ----

    /// Feeds one inbound WebSocket message.
    pub fn handle_frame(&mut self, now: Instant, frame: Inbound<'_>) {
        if self.link.absorb(&frame) {
            return;
        }
        match frame {
            Inbound::Ping | Inbound::Pong => {}
            Inbound::Binary => self.stats.binary_frames += 1,
            Inbound::Close(code) => self.peer_gone(EndReason::Peer(code)),
            Inbound::Oversize => self.close_with(now, CloseCode::TOO_BIG),
            Inbound::Text(t) if t.len() > self.config.max_frame_size => {
                self.close_with(now, CloseCode::TOO_BIG);
            }
            Inbound::Text(t) => self.on_text(t),
        }
    }

    /// Feeds the passing of time (see
    /// [`ServerSession::handle_timeout`](crate::ServerSession::handle_timeout)).
    pub fn handle_timeout(&mut self, now: Instant) {
        for (id, ()) in self.notifies.expire(now) {
            self.events.push_back(ClientEvent::NotifyEnded {
                id,
                outcome: Outcome::TimedOut,
            });
        }
        self.link.handle_timeout(now);
    }

    /// Feeds the end of the transport without a close frame.
    pub fn handle_transport_lost(&mut self, _now: Instant) {
        if self.link.is_open() {
            self.peer_gone(EndReason::TransportLost);
        } else {
            self.link.terminate();
        }
    }

    // ---- commands ----

    /// Sends an `agent_completion_notify` for the running completion
    /// `response_id` and returns the request's freshly minted id. `content`
    /// is a JSON string or an array of parts. It ends exactly once, reported
    /// by [`ClientEvent::NotifyEnded`]; `timeout` defaults to
    /// [`Config::request_timeout`].
    pub fn notify(
        &mut self,
        now: Instant,
        response_id: &str,
        content: &RawValue,
        timeout: Option<Duration>,
    ) -> Result<String, Error> {
        self.link.ensure_open()?;
        if self.notifies.len() >= self.config.max_client_requests {
            return Err(Error::TooManyRequests);
        }
        self.link.admit()?;
        let id = self.notifies.fresh_id(&mut *self.rng);
        let text = frame(&ClientRequest {
            id: id.as_str().into(),
            kind: ClientRequestKind::AgentCompletionNotify {
                response_id: response_id.into(),
                content: Json::borrowed(content),
            },
        });
        let deadline = now.checked_add(timeout.unwrap_or(self.config.request_timeout));
        self.notifies.insert(&id, deadline, ());
        self.link.out.push(Transmit::Text(text));
        Ok(id)
    }

    /// Answers the server request `id`. Always admitted (answers are bounded
    /// by [`Config::max_server_requests`]).
    pub fn respond(
        &mut self,
        _now: Instant,
        id: &str,
        status: u16,
        headers: &Headers<'_>,
        body: Option<&RawValue>,
    ) -> Result<(), Error> {
        self.link.ensure_open()?;
        if self.server_requests.remove(id).is_none() {
            return Err(Error::UnknownRequest);
        }
        self.push_response(id, status, headers, body);
        Ok(())
    }

    /// Abandons the stream: sends `Close(1000)`; notifies in flight end with
    /// the session.
    pub fn close(&mut self, now: Instant) -> Result<(), Error> {
        self.link.ensure_open()?;
        self.close_with(now, CloseCode::NORMAL);
        Ok(())
    }

    // ---- polls ----

    /// The next frame to send, in order; the body first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let (frame, unblocked) = self.link.pop();
        if unblocked {
            self.events.push_back(ClientEvent::Writable);
        }
        frame
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.link.is_open() {
            self.notifies.next_deadline()
        } else {
            self.link.deadline()
        }
    }

    // ---- internals ----

    fn on_text(&mut self, text: &str) {
        match classify_client(text) {
            ClientFrame::Chunk => {
                self.stats.chunks += 1;
                self.events.push_back(ClientEvent::Chunk(text.to_owned()));
            }
            ClientFrame::Response(response) => {
                let Some((id, ())) = self.notifies.remove_entry(response.id()) else {
                    self.stats.unknown_responses += 1;
                    return;
                };
                let result = match response {
                    ClientResponse::Ok { .. } => Ok(()),
                    ClientResponse::Error { code, message, .. } => {
                        Err(RequestError::new(code, message))
                    }
                };
                self.events.push_back(ClientEvent::NotifyEnded {
                    id,
                    outcome: Outcome::Answered(result),
                });
            }
            ClientFrame::Request(request) => {
                let max = self.config.max_server_requests;
                let admitted = self
                    .server_requests
                    .try_insert(&request.id, None, |pending| {
                        if pending < max { Ok(()) } else { Err(()) }
                    });
                match admitted {
                    Ok(true) => self
                        .events
                        .push_back(ClientEvent::ServerRequest(request.into_owned())),
                    // The server mints unique ids; a repeat is dropped and the
                    // first stays pending.
                    Ok(false) => self.stats.junk_frames += 1,
                    Err(()) => {
                        self.stats.refused_requests += 1;
                        self.push_response(&request.id, 429, &Headers::new(), None);
                    }
                }
            }
            ClientFrame::Error(error) if !self.failed => {
                self.failed = true;
                self.events
                    .push_back(ClientEvent::StreamFailed(error.into_owned()));
            }
            ClientFrame::Error(_) | ClientFrame::Junk => self.stats.junk_frames += 1,
        }
    }

    fn push_response(
        &mut self,
        id: &str,
        status: u16,
        headers: &Headers<'_>,
        body: Option<&RawValue>,
    ) {
        let text = frame(&HttpFrame {
            id,
            head: ("status", &status),
            headers,
            body,
        });
        self.link.out.push(Transmit::Text(text));
    }

    fn close_with(&mut self, now: Instant, code: CloseCode) {
        self.link.close(now, code);
        self.end(EndReason::Local(code));
    }

    fn peer_gone(&mut self, reason: EndReason) {
        self.link.terminate();
        self.end(reason);
    }

    /// Reports the end once; every notify in flight ends with it, and server
    /// requests can no longer be answered.
    fn end(&mut self, reason: EndReason) {
        for (id, ()) in self.notifies.drain() {
            self.events.push_back(ClientEvent::NotifyEnded {
                id,
                outcome: Outcome::SessionEnded,
            });
        }
        self.server_requests.drain();
        self.events.push_back(ClientEvent::End(reason));
    }
}
