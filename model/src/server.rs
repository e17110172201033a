//! The server session against its reference model.

use std::collections::VecDeque;
use std::time::Instant;

use arbitrary::Arbitrary;
use serde_json::Value;
use serde_json::value::RawValue;
use wirestream_proto::{
    CloseCode, Config, EndReason, Engine, Headers, Json, Phase, RequestError, ResponseError,
    SeededRandom, ServerSession, Stats, Transmit,
};

use crate::io::{Frame, ServerSeen as Ev, feed};
use crate::live::{Fired, Ledger, Live, check_common, events, expire, full, transmit};
use crate::ops::{
    Advance, Control, Ids, Junk, Limits, Pick, STRANGERS, Timeout, chunk_text, completion,
    pad_text, padding, quote,
};
use crate::oracle::{self, AtClient, AtServer, echoed};
use crate::{ErrKind, OutcomeKind, assert_json, kind};

/// The session type the executor drives: its tokens are `u64`s, one per
/// server request, so that each end can be matched to its request.
type Server = ServerSession<String, u64>;

/// A whole server run: its limits, whether the body arrives first, how many
/// frames the peer reads after each step, and the steps.
#[derive(Clone, Debug, Arbitrary)]
pub struct ServerScenario {
    /// The session's limits.
    pub limits: Limits,
    /// Deliver `{"messages":[]}` before the first step.
    pub body_first: bool,
    /// Frames the peer reads after each step: `read % 4` is 0 → all,
    /// 1 → one, 2 → three, 3 → none (only [`ServerOp::Read`] reads).
    pub read: u8,
    /// The steps.
    pub ops: Vec<ServerOp>,
}

/// One step of a server run. Steps that end the session are grouped in
/// [`ServerEnd`], so that a fuzzer picking variants evenly keeps sessions
/// alive long enough to matter.
#[derive(Clone, Debug, Arbitrary)]
pub enum ServerOp {
    /// The client sends a frame (skipped while the session does not want
    /// input, as a driver would).
    Frame(ServerInbound),
    /// Time passes, then the timeout is handled.
    Advance(Advance),
    /// `send_chunk` (raw) or `send_chunk_value` of a chunk carrying the
    /// completions set in the mask.
    SendChunk {
        /// Bit `n` set: the chunk carries `agc-n` (n < 6).
        completions: u8,
        /// Raw JSON rather than a serialized value.
        raw: bool,
        /// Padding (see [`padding`](crate::padding)): some chunks are over
        /// `max_frame_size`.
        pad: u8,
    },
    /// `respond` to a client request.
    Respond {
        /// Which request (seen, ended or never seen).
        request: Pick,
        /// `None` answers ok.
        error: Option<u16>,
        /// Padding of the error message.
        pad: u8,
    },
    /// `respond_dropped`: the application dropped a client request.
    RespondDropped {
        /// Which request.
        request: Pick,
    },
    /// `send_server_request`.
    SendServerRequest {
        /// With a header.
        headers: bool,
        /// With a body.
        body: bool,
        /// Its deadline.
        timeout: Timeout,
        /// Padding of the body (when there is one).
        pad: u8,
    },
    /// The peer reads up to this many frames.
    Read(u8),
    /// A step that ends (or begins to end) the session.
    End(ServerEnd),
}

/// The steps that end a server session.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum ServerEnd {
    /// The transport ends without a close frame.
    TransportLost,
    /// `finish`.
    Finish,
    /// `fail` with this code.
    Fail {
        /// The error frame's code.
        code: u16,
        /// A JSON object message rather than a string.
        json_message: bool,
        /// Padding of a string message.
        pad: u8,
    },
    /// `reject_body`.
    RejectBody,
    /// `go_away`: the server shuts down.
    GoAway,
}

/// A frame the client sends to the server.
#[derive(Clone, Debug, Arbitrary)]
pub enum ServerInbound {
    /// A well-formed body.
    Body,
    /// A well-formed `agent_completion_notify`.
    Notify {
        /// Its id (fresh, repeated, or a stranger).
        id: Pick,
        /// `n % 8 < 6`: completion `agc-n`; otherwise a stranger.
        response_id: u8,
        /// Which content: a string, parts, escapes, an empty array.
        content: u8,
    },
    /// A request with a string `id` and `type` that is malformed.
    BadRequest {
        /// Its id.
        id: Pick,
        /// Which malformation.
        shape: u8,
    },
    /// A `server_response` (for a live, ended or unknown server request).
    Response {
        /// Which server request.
        id: Pick,
        /// Its status.
        status: u16,
        /// With headers.
        headers: bool,
        /// With a body.
        body: bool,
    },
    /// Junk of a known kind.
    Junk(Junk),
    /// Any text.
    Text(String),
    /// A control frame, a size edge, or the close.
    Control(Control),
}

/// What a finished run did, for the caller's own checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerReport {
    /// Steps applied (the scenario's and the settling ones).
    pub steps: usize,
    /// Frames transmitted.
    pub frames_out: usize,
    /// How the session ended (always `Some` after a run).
    pub end: Option<EndReason>,
    /// Client requests the application saw.
    pub requests_seen: usize,
    /// Server requests sent.
    pub server_requests: usize,
    /// Commands refused with `TooLarge`.
    pub too_large: usize,
    /// Keepalive pings sent.
    pub pings: usize,
}

/// Runs a scenario against a server session, asserting the invariants after
/// every step, then settles it (the application finishes, the peer reads
/// and closes, time runs out) and asserts the end state.
///
/// # Panics
/// When the engine breaks an invariant or departs from the model.
pub fn run_server(scenario: &ServerScenario) -> ServerReport {
    let mut h = Harness::new(scenario);
    if scenario.body_first {
        h.step(&ServerOp::Frame(ServerInbound::Body));
    }
    for op in &scenario.ops {
        h.step(op);
    }
    h.settle();
    h.report.frames_out = h.ledger.frames_out;
    h.report.end = h.ledger.end;
    h.report
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    /// A reply to a client request; `message` is `None` where PROTOCOL.md
    /// leaves the words to the engine (the `400` of a malformed request).
    Reply {
        id: String,
        code: Option<u16>,
        message: Option<String>,
    },
    /// The `{code, message}` error frame, exactly.
    ErrorFrame {
        code: u16,
        text: String,
    },
    Chunk(String),
    ServerRequest {
        id: String,
        headers: Vec<(String, String)>,
        body: Option<Value>,
        text: String,
    },
    Ping,
    Close(CloseCode),
}

/// The phases of an open session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitingBody,
    Streaming,
    Draining,
}

/// The close handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Open,
    Closing,
    Closed,
}

/// The reference model: what the session should hold and produce.
#[derive(Debug)]
struct Model {
    cfg: Config,
    state: State,
    link: Link,
    /// The deadline of the body wait, the drain, or the close handshake.
    deadline: Option<Instant>,
    live: Live,
    /// Accepted client requests in arrival order: (id, response_id).
    accepted: Vec<(String, String)>,
    emitted: VecDeque<String>,
    /// Pending server requests in send order: (id, token, deadline).
    server_reqs: Vec<(String, u64, Option<Instant>)>,
    out: VecDeque<Expect>,
    events: VecDeque<Ev>,
    queue_closed: bool,
    blocked: bool,
    chunks: u64,
    /// The counters of [`Stats`] the model predicts.
    stats: Stats,
    /// Replies that will never reach the wire (peer gone, queue shut).
    replies_lost: usize,
}

fn no_longer_running(rid: &str) -> String {
    format!("response_id {:?} is no longer running", echoed(rid))
}

/// The reply frame PROTOCOL.md §3.1 gives, as the model writes it.
fn reply_text(id: &str, error: Option<(u16, &str)>) -> String {
    match error {
        None => format!(r#"{{"type":"ok","id":{}}}"#, quote(id)),
        Some((code, message)) => format!(
            r#"{{"type":"error","id":{},"code":{code},"message":{}}}"#,
            quote(id),
            quote(message)
        ),
    }
}

impl Model {
    fn new(cfg: Config, now: Instant) -> Self {
        Self {
            deadline: now.checked_add(cfg.body_timeout),
            live: Live::new(&cfg, now),
            cfg,
            state: State::AwaitingBody,
            link: Link::Open,
            accepted: Vec::new(),
            emitted: VecDeque::new(),
            server_reqs: Vec::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            queue_closed: false,
            blocked: false,
            chunks: 0,
            stats: Stats::default(),
            replies_lost: 0,
        }
    }

    fn phase(&self) -> Phase {
        match (self.link, self.state) {
            (Link::Closed, _) => Phase::Closed,
            (Link::Closing, _) => Phase::Closing,
            (Link::Open, State::AwaitingBody) => Phase::AwaitingBody,
            (Link::Open, State::Streaming) => Phase::Streaming,
            (Link::Open, State::Draining) => Phase::Draining,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match self.link {
            Link::Closing => self.deadline,
            Link::Closed => None,
            Link::Open => {
                let phase = match self.state {
                    State::AwaitingBody | State::Draining => self.deadline,
                    State::Streaming => None,
                };
                self.server_reqs
                    .iter()
                    .filter_map(|(_, _, d)| *d)
                    .chain(phase)
                    .chain(self.live.deadline())
                    .min()
            }
        }
    }

    fn push(&mut self, e: Expect) {
        if !self.queue_closed {
            self.queue_closed = matches!(e, Expect::Close(_));
            self.out.push_back(e);
        }
    }

    fn open(&self) -> Result<(), ErrKind> {
        match self.link {
            Link::Open => Ok(()),
            _ => Err(ErrKind::Closed),
        }
    }

    fn streaming(&self) -> Result<(), ErrKind> {
        self.open()?;
        match self.state {
            State::Streaming => Ok(()),
            State::AwaitingBody => Err(ErrKind::AwaitingBody),
            State::Draining => Err(ErrKind::Finished),
        }
    }

    fn fits(&self, len: usize) -> Result<(), ErrKind> {
        if len > self.cfg.max_frame_size {
            Err(ErrKind::TooLarge)
        } else {
            Ok(())
        }
    }

    /// Admission of application data into a queue that is `full` or not.
    fn admit(&mut self, full: bool) -> Result<(), ErrKind> {
        if full {
            self.blocked = true;
            Err(ErrKind::Full)
        } else {
            Ok(())
        }
    }

    /// A frame arrives at `now`; `full` is whether the queue is full once
    /// it is handled. Returns whether it is a client request owed a reply.
    fn on_frame(&mut self, now: Instant, frame: &Frame, full: bool) -> bool {
        self.live.inbound(now);
        match self.link {
            Link::Closed => return false,
            Link::Closing => {
                if let Frame::Close(_) = frame {
                    self.terminate();
                }
                return false;
            }
            Link::Open => {}
        }
        let awaiting = self.state == State::AwaitingBody;
        let max = self.cfg.max_frame_size;
        let mut owed = false;
        match frame {
            Frame::Ping | Frame::Pong => {}
            Frame::Close(code) => self.peer_gone(EndReason::Peer(code.map(CloseCode))),
            Frame::Oversize => {
                let message = format!("frame exceeds the limit of {max} bytes");
                self.end(
                    now,
                    Some(error_frame(413, &quote(&message))),
                    CloseCode::TOO_BIG,
                );
            }
            Frame::Text(t) if t.len() > max => {
                let n = t.len();
                let message = format!("frame of {n} bytes exceeds the limit of {max} bytes");
                self.end(
                    now,
                    Some(error_frame(413, &quote(&message))),
                    CloseCode::TOO_BIG,
                );
            }
            Frame::Binary if awaiting => {
                let message = quote("expected text body frame, got binary");
                self.end(
                    now,
                    Some(error_frame(400, &message)),
                    CloseCode::UNSUPPORTED,
                );
            }
            Frame::Binary => self.stats.binary_frames += 1,
            Frame::Text(t) if awaiting => {
                self.state = State::Streaming;
                self.deadline = None;
                self.events.push_back(Ev::Body(t.to_owned()));
            }
            Frame::Text(t) => owed = self.on_envelope(t),
        }
        self.live.note(now, full);
        owed
    }

    fn on_envelope(&mut self, text: &str) -> bool {
        match oracle::at_server(text) {
            AtServer::Junk => {
                self.stats.junk_frames += 1;
                false
            }
            AtServer::BadRequest { id } => {
                self.refuse(id, 400, None);
                true
            }
            AtServer::Notify {
                id,
                response_id: rid,
                ..
            } => {
                let refusal = if self.accepted.iter().any(|(a, _)| *a == id) {
                    Some((409, None))
                } else if self.state == State::Draining {
                    Some((404, Some(no_longer_running(&rid))))
                } else if !self.emitted.contains(&rid) {
                    Some((
                        404,
                        Some(format!(
                            "response_id {:?} not from this stream",
                            echoed(&rid)
                        )),
                    ))
                } else if self.accepted.len() >= self.cfg.max_client_requests {
                    Some((429, None))
                } else {
                    None
                };
                match refusal {
                    Some((code, message)) => self.refuse(id, code, message),
                    None => {
                        self.accepted.push((id.clone(), rid.clone()));
                        self.events.push_back(Ev::Request {
                            id,
                            response_id: rid,
                        });
                    }
                }
                true
            }
            AtServer::Response { id, status, .. } => {
                if let Some(i) = self.server_reqs.iter().position(|(s, _, _)| *s == id) {
                    let (id, token, _) = self.server_reqs.remove(i);
                    self.events.push_back(Ev::Ended {
                        id,
                        token,
                        outcome: OutcomeKind::Answered(status),
                    });
                } else {
                    self.stats.unknown_responses += 1;
                }
                false
            }
        }
    }

    /// A reply the engine sends on its own.
    fn refuse(&mut self, id: String, code: u16, message: Option<String>) {
        self.stats.refused_requests += 1;
        self.push(Expect::Reply {
            id,
            code: Some(code),
            message,
        });
    }

    /// The timeout at `now` (the queue `full` or not before it): requests
    /// past their deadline end; the body wait or the drain runs out; the
    /// liveness clocks; the close handshake runs out.
    fn on_timeout(&mut self, now: Instant, full: bool) {
        for (id, token) in expire(&mut self.server_reqs, now) {
            self.events.push_back(Ev::Ended {
                id,
                token,
                outcome: OutcomeKind::TimedOut,
            });
        }
        let due = self.deadline.is_some_and(|d| d <= now);
        if self.link == Link::Open && due {
            match self.state {
                State::AwaitingBody => {
                    let ms = self.cfg.body_timeout.as_millis();
                    let message = quote(&format!("no body frame within {ms} ms"));
                    self.end(now, Some(error_frame(408, &message)), CloseCode::POLICY);
                }
                State::Draining => {
                    for (id, _) in std::mem::take(&mut self.accepted) {
                        self.refuse(id, 504, Some("no reply within the drain timeout".into()));
                    }
                    self.end(now, None, CloseCode::NORMAL);
                }
                State::Streaming => {}
            }
        }
        if self.link == Link::Open {
            match self.live.fire(now, full) {
                // At most one keepalive ping waits in the queue.
                Some(Fired::Ping) if !self.out.contains(&Expect::Ping) => {
                    self.push(Expect::Ping);
                }
                Some(Fired::Ping) | None => {}
                Some(Fired::Lost(reason)) => self.give_up(reason),
            }
        }
        if self.link == Link::Closing && self.deadline.is_some_and(|d| d <= now) {
            self.terminate();
        }
    }

    fn on_transport_lost(&mut self) {
        match self.link {
            // Nothing can go out any more, not even a best-effort close.
            Link::Closed | Link::Closing => self.terminate(),
            Link::Open => self.peer_gone(EndReason::TransportLost),
        }
    }

    /// This side closes: replies to what was accepted, the error frame,
    /// the close; server requests end with the session.
    fn end(&mut self, now: Instant, error: Option<Expect>, code: CloseCode) {
        for (id, rid) in std::mem::take(&mut self.accepted) {
            self.refuse(id, 404, Some(no_longer_running(&rid)));
        }
        if let Some(e) = error {
            self.push(e);
        }
        self.push(Expect::Close(code));
        self.link = Link::Closing;
        self.deadline = now.checked_add(self.cfg.close_timeout);
        self.end_server_requests();
        self.events.push_back(Ev::End(EndReason::Local(code)));
    }

    fn peer_gone(&mut self, reason: EndReason) {
        self.replies_lost += self.accepted.len();
        self.accepted.clear();
        self.terminate();
        self.end_server_requests();
        self.events.push_back(Ev::End(reason));
    }

    /// PROTOCOL.md §5: a silent peer or a stalled queue ends the session
    /// as if the transport died; a silent peer gets a best-effort
    /// `Close(1008)` as the last frame, a stalled one nothing more.
    fn give_up(&mut self, reason: EndReason) {
        self.replies_lost += self.accepted.len();
        self.accepted.clear();
        self.end_server_requests();
        self.terminate();
        self.live.stop();
        if reason == EndReason::PeerSilent {
            self.out.push_back(Expect::Close(CloseCode::POLICY));
        }
        self.events.push_back(Ev::End(reason));
    }

    fn end_server_requests(&mut self) {
        for (id, token, _) in std::mem::take(&mut self.server_reqs) {
            self.events.push_back(Ev::Ended {
                id,
                token,
                outcome: OutcomeKind::SessionEnded,
            });
        }
    }

    fn terminate(&mut self) {
        self.link = Link::Closed;
        self.deadline = None;
        self.replies_lost += self
            .out
            .iter()
            .filter(|e| matches!(e, Expect::Reply { .. }))
            .count();
        self.out.clear();
        self.queue_closed = true;
        self.blocked = false;
    }

    fn remember(&mut self, id: &str) {
        if self.emitted.iter().any(|e| e == id) {
            return;
        }
        if self.emitted.len() >= self.cfg.max_emitted_ids {
            self.emitted.pop_front();
            self.stats.forgotten_ids += 1;
        }
        self.emitted.push_back(id.to_owned());
    }
}

/// The error frame of PROTOCOL.md §2.2 with this code and message (JSON).
fn error_frame(code: u16, message: &str) -> Expect {
    Expect::ErrorFrame {
        code,
        text: format!(r#"{{"code":{code},"message":{message}}}"#),
    }
}

struct Harness {
    s: Server,
    m: Model,
    now: Instant,
    read_cap: usize,
    request_ids: Ids,
    server_ids: Ids,
    seen_requests: Ids,
    ledger: Ledger,
    chunk_seq: u64,
    requests_in: usize,
    replies_out: usize,
    report: ServerReport,
}

impl Harness {
    fn new(scenario: &ServerScenario) -> Self {
        let cfg = scenario.limits.config();
        let now = Instant::now();
        Self {
            s: ServerSession::new(
                cfg.clone(),
                now,
                SeededRandom::new(u64::from(scenario.read)),
            ),
            m: Model::new(cfg, now),
            now,
            read_cap: match scenario.read % 4 {
                0 => usize::MAX,
                1 => 1,
                2 => 3,
                _ => 0,
            },
            request_ids: Ids::default(),
            server_ids: Ids::default(),
            seen_requests: Ids::default(),
            ledger: Ledger::default(),
            chunk_seq: 0,
            requests_in: 0,
            replies_out: 0,
            report: ServerReport::default(),
        }
    }

    fn cfg(&self) -> &Config {
        &self.m.cfg
    }

    fn full(&self) -> bool {
        full(&self.s, &self.m.cfg)
    }

    fn step(&mut self, op: &ServerOp) {
        self.report.steps += 1;
        let mut timed = false;
        match op {
            ServerOp::Frame(f) => self.frame(f),
            ServerOp::End(end) => self.end(*end),
            ServerOp::Advance(a) => {
                let to = a.apply(self.now, self.s.poll_timeout());
                self.advance_to(to);
                timed = true;
            }
            ServerOp::SendChunk {
                completions,
                raw,
                pad,
            } => self.chunk(*completions, *raw, padding(*pad)),
            ServerOp::Respond {
                request,
                error,
                pad,
            } => {
                let id = self.seen_requests.pick(*request, "never-seen");
                self.respond(&id, *error, padding(*pad));
            }
            ServerOp::RespondDropped { request } => {
                let id = self.seen_requests.pick(*request, "never-seen");
                self.respond_dropped(&id);
            }
            ServerOp::SendServerRequest {
                headers,
                body,
                timeout,
                pad,
            } => self.server_request(*headers, *body, *timeout, padding(*pad)),
            ServerOp::Read(n) => self.read(usize::from(*n)),
        }
        self.read(self.read_cap);
        self.drain_events();
        self.check(timed);
    }

    fn advance_to(&mut self, to: Instant) {
        self.now = to;
        let full = self.full();
        self.m.on_timeout(self.now, full);
        self.s.handle_timeout(self.now);
    }

    fn end(&mut self, end: ServerEnd) {
        match end {
            ServerEnd::TransportLost => {
                self.m.on_transport_lost();
                self.s.handle_transport_lost(self.now);
            }
            ServerEnd::Finish => {
                let expected = self.m.streaming().map(|()| {
                    if self.m.accepted.is_empty() {
                        self.m.end(self.now, None, CloseCode::NORMAL);
                    } else {
                        self.m.state = State::Draining;
                        self.m.deadline = self.now.checked_add(self.m.cfg.drain_timeout);
                    }
                });
                let got = self.s.finish(self.now).map_err(|e| kind(&e));
                assert_eq!(got, expected, "finish");
            }
            ServerEnd::Fail {
                code,
                json_message,
                pad,
            } => {
                let message = if json_message {
                    r#"{"detail":["a",1]}"#.to_owned()
                } else {
                    quote(&format!("upstream failed{}", pad_text(padding(pad))))
                };
                let error = ResponseError {
                    code,
                    message: Json::owned(RawValue::from_string(message.clone()).unwrap()),
                };
                let frame = error_frame(code, &message);
                let Expect::ErrorFrame { text, .. } = &frame else {
                    unreachable!()
                };
                let len = text.len();
                let expected = self.m.open().and_then(|()| {
                    if self.m.state == State::Draining {
                        return Err(ErrKind::Finished);
                    }
                    self.m.fits(len)?;
                    self.m.end(self.now, Some(frame), CloseCode::INTERNAL);
                    Ok(())
                });
                let got = self.s.fail(self.now, &error).map_err(|e| kind(&e));
                self.count(&got);
                assert_eq!(got, expected, "fail");
            }
            ServerEnd::RejectBody => {
                let reason = "missing field `messages`";
                let expected = self.m.streaming().and_then(|()| {
                    if self.m.chunks > 0 {
                        Err(ErrKind::AlreadyStreaming)
                    } else {
                        let message = quote(&format!("failed to deserialize body frame: {reason}"));
                        let frame = error_frame(400, &message);
                        self.m.end(self.now, Some(frame), CloseCode::UNSUPPORTED);
                        Ok(())
                    }
                });
                let got = self.s.reject_body(self.now, reason).map_err(|e| kind(&e));
                assert_eq!(got, expected, "reject_body");
            }
            ServerEnd::GoAway => {
                let expected = self.m.open().map(|()| {
                    for (id, _) in std::mem::take(&mut self.m.accepted) {
                        let message = "the server is shutting down".to_owned();
                        self.m.refuse(id, 504, Some(message));
                    }
                    self.m.end(self.now, None, CloseCode::GOING_AWAY);
                });
                let got = self.s.go_away(self.now).map_err(|e| kind(&e));
                assert_eq!(got, expected, "go_away");
            }
        }
    }

    fn count<T>(&mut self, got: &Result<T, ErrKind>) {
        if let Err(ErrKind::TooLarge) = got {
            self.report.too_large += 1;
        }
    }

    fn frame(&mut self, f: &ServerInbound) {
        if !self.s.wants_input() && !self.s.is_closed() {
            // A driver stops reading while the outbound queue is over its
            // limits: the frame waits in the socket.
            assert!(self.full(), "wants no input with room in the queue");
            return;
        }
        let max = self.cfg().max_frame_size;
        let text = match f {
            ServerInbound::Body => Some(r#"{"messages":[],"stream":true}"#.to_owned()),
            ServerInbound::Notify {
                id,
                response_id,
                content,
            } => {
                let id = self.request_ids.pick(*id, "c");
                let rid = match response_id % 8 {
                    n @ 0..6 => completion(n),
                    n => STRANGERS
                        .get(usize::from(n) % STRANGERS.len())
                        .map_or_else(String::new, |s| (*s).to_owned()),
                };
                let content = match content % 4 {
                    0 => r#""also check the tests""#,
                    1 => {
                        r#"[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]"#
                    }
                    2 => r#""esc\"aped\n\u00e9""#,
                    _ => "[]",
                };
                Some(format!(
                    r#"{{"id":{},"type":"agent_completion_notify","response_id":{},"content":{content}}}"#,
                    quote(&id),
                    quote(&rid)
                ))
            }
            ServerInbound::BadRequest { id, shape } => {
                let id = quote(&self.request_ids.pick(*id, "c"));
                Some(match shape % 6 {
                    0 => format!(r#"{{"id":{id},"type":"agent_completion_pause"}}"#),
                    1 => format!(r#"{{"id":{id},"type":"agent_completion_notify","content":"x"}}"#),
                    2 => format!(
                        r#"{{"id":{id},"type":"agent_completion_notify","response_id":5,"content":"x"}}"#
                    ),
                    3 => format!(
                        r#"{{"id":{id},"type":"agent_completion_notify","response_id":"agc-0","content":5}}"#
                    ),
                    4 => format!(
                        r#"{{"id":{id},"type":"agent_completion_notify","response_id":"agc-0"}}"#
                    ),
                    _ => format!(r#"{{"type":"","id":{id},"status":200}}"#),
                })
            }
            ServerInbound::Response {
                id,
                status,
                headers,
                body,
            } => {
                let id = quote(&self.server_ids.pick(*id, "s"));
                let mut t = format!(r#"{{"id":{id},"status":{status}"#);
                if *headers {
                    t.push_str(r#","headers":{"mcp-session-id":"s-1","x":"y"}"#);
                }
                if *body {
                    t.push_str(r#","body":{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#);
                }
                t.push('}');
                Some(t)
            }
            ServerInbound::Junk(j) => Some(j.text()),
            ServerInbound::Text(t) => Some(t.clone()),
            ServerInbound::Control(c) => c.text(max),
        };
        let frame = match f {
            ServerInbound::Control(c) => c.frame(text),
            _ => Frame::Text(text.unwrap_or_default()),
        };
        feed(&mut self.s, self.now, frame.clone());
        let full = self.full();
        if self.m.on_frame(self.now, &frame, full) {
            self.requests_in += 1;
        }
    }

    fn chunk(&mut self, completions: u8, raw: bool, pad: usize) {
        let (text, ids) = chunk_text(completions, self.chunk_seq, pad);
        self.chunk_seq += 1;
        let value: Value = serde_json::from_str(&text).unwrap_or_default();
        let sent = if raw {
            text.clone()
        } else {
            serde_json::to_string(&value).unwrap_or_default()
        };
        let full = self.full();
        let m = &mut self.m;
        // `send_chunk` checks the size before the room, `send_chunk_value`
        // the room before serializing (and then the size).
        let expected = if raw {
            m.streaming()
                .and_then(|()| m.fits(sent.len()))
                .and_then(|()| m.admit(full))
        } else {
            m.streaming()
                .and_then(|()| m.admit(full))
                .and_then(|()| m.fits(sent.len()))
        };
        let noted = raw || matches!(expected, Ok(()) | Err(ErrKind::Full));
        if expected.is_ok() {
            for id in &ids {
                m.remember(id);
            }
            m.push(Expect::Chunk(sent));
            m.chunks += 1;
        }
        let got = if raw {
            let chunk = RawValue::from_string(text.clone()).unwrap_or_default();
            self.s.send_chunk(self.now, chunk, &ids).map_err(|r| {
                assert_eq!(r.value.get(), text, "a refused chunk is handed back");
                kind(&r.error)
            })
        } else {
            self.s
                .send_chunk_value(self.now, &value, &ids)
                .map_err(|e| kind(&e))
        };
        self.count(&got);
        assert_eq!(got, expected, "send_chunk");
        if noted {
            let full = self.full();
            self.m.live.note(self.now, full);
        }
    }

    /// Predicts `respond` (or `respond_dropped`): the reply goes out unless
    /// it is too large; the session ends once a drain has nothing left.
    fn answer(
        &mut self,
        id: &str,
        reply: impl FnOnce(&str, bool) -> Option<(u16, String)>,
        got: impl FnOnce(&mut Server, Instant) -> Result<(), ErrKind>,
    ) {
        let draining = self.m.state == State::Draining;
        let expected = self.m.open().and_then(|()| {
            let i = self
                .m
                .accepted
                .iter()
                .position(|(a, _)| a == id)
                .ok_or(ErrKind::UnknownRequest)?;
            let error = reply(&self.m.accepted[i].1, draining);
            let text = reply_text(id, error.as_ref().map(|(c, m)| (*c, m.as_str())));
            self.m.fits(text.len())?;
            self.m.accepted.remove(i);
            self.m.push(Expect::Reply {
                id: id.to_owned(),
                code: error.as_ref().map(|(c, _)| *c),
                message: error.map(|(_, m)| m),
            });
            Ok(draining && self.m.accepted.is_empty())
        });
        let got = got(&mut self.s, self.now);
        self.count(&got);
        assert_eq!(got, expected.map(|_| ()), "respond {id:?}");
        if let Ok(drained) = expected {
            let full = self.full();
            self.m.live.note(self.now, full);
            if drained {
                self.m.end(self.now, None, CloseCode::NORMAL);
            }
        }
    }

    fn respond(&mut self, id: &str, error: Option<u16>, pad: usize) {
        let message = format!("app error{}", pad_text(pad));
        let result = error.map_or(Ok(()), |c| Err(RequestError::new(c, message.clone())));
        self.answer(
            id,
            |_, _| error.map(|c| (c, message)),
            |s, now| s.respond(now, id, result).map_err(|e| kind(&e)),
        );
    }

    fn respond_dropped(&mut self, id: &str) {
        self.answer(
            id,
            |rid, draining| {
                Some(if draining {
                    (404, no_longer_running(rid))
                } else {
                    (500, "the request was dropped without an answer".to_owned())
                })
            },
            |s, now| s.respond_dropped(now, id).map_err(|e| kind(&e)),
        );
    }

    fn server_request(
        &mut self,
        with_headers: bool,
        with_body: bool,
        timeout: Timeout,
        pad: usize,
    ) {
        let headers: Headers<'_> = if with_headers {
            [("content-type", "application/json")].into_iter().collect()
        } else {
            Headers::new()
        };
        let body = RawValue::from_string(format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","pad":"{}"}}"#,
            pad_text(pad)
        ))
        .unwrap_or_default();
        // PROTOCOL.md §3.2: `headers` omitted when empty, `body` when absent.
        let text = |id: &str| {
            let mut t = format!(r#"{{"id":{},"method":"POST""#, quote(id));
            if with_headers {
                t.push_str(r#","headers":{"content-type":"application/json"}"#);
            }
            if with_body {
                t.push_str(r#","body":"#);
                t.push_str(body.get());
            }
            t.push('}');
            t
        };
        let full = self.full();
        let token = self.ledger.token();
        let streaming = self.m.streaming();
        let m = &mut self.m;
        let expected = streaming
            .and_then(|()| {
                if m.server_reqs.len() >= m.cfg.max_server_requests {
                    Err(ErrKind::TooManyRequests)
                } else {
                    m.admit(full)
                }
            })
            .and_then(|()| m.fits(text(&"0".repeat(32)).len()));
        let noted = streaming.is_ok() && expected != Err(ErrKind::TooLarge);
        let got = self.s.send_server_request(
            self.now,
            "POST",
            &headers,
            with_body.then_some(&*body),
            timeout.duration(),
            token,
        );
        match (got, expected) {
            (Ok(id), Ok(())) => {
                self.ledger.sent(&id, token);
                self.server_ids.learn(&id);
                let d = self
                    .now
                    .checked_add(timeout.duration().unwrap_or(self.m.cfg.request_timeout));
                self.m.server_reqs.push((id.clone(), token, d));
                self.m.push(Expect::ServerRequest {
                    text: text(&id),
                    id,
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                    body: with_body.then(|| serde_json::from_str(body.get()).unwrap()),
                });
                self.report.server_requests += 1;
            }
            (Err(refused), Err(e)) => {
                assert_eq!(
                    refused.value, token,
                    "a refused request hands its token back"
                );
                assert_eq!(kind(&refused.error), e, "send_server_request");
                self.count(&Err::<(), _>(e));
            }
            (got, expected) => panic!(
                "send_server_request: got {:?}, the model expected {expected:?}",
                got.map_err(|r| r.error)
            ),
        }
        if noted {
            let full = self.full();
            self.m.live.note(self.now, full);
        }
    }

    /// The peer reads up to `cap` frames; each is checked against the
    /// model's next expected frame.
    fn read(&mut self, cap: usize) {
        for _ in 0..cap {
            let t = transmit(&mut self.s, &mut self.ledger);
            let expected = self.m.out.pop_front();
            match (&t, expected) {
                (None, None) => {}
                (Some(t), Some(e)) => self.check_frame(t, &e),
                (t, e) => panic!("server transmitted {t:?}, the model expected {e:?}"),
            }
            let full = self.full();
            if t.is_some() {
                self.m.live.popped(full);
            }
            if self.m.blocked && !full && !self.m.queue_closed {
                self.m.blocked = false;
                if self.m.link == Link::Open && self.m.state == State::Streaming {
                    self.m.events.push_back(Ev::Writable);
                }
            }
            if t.is_none() {
                break;
            }
        }
    }

    /// Every frame is valid JSON of a PROTOCOL.md shape, as a client
    /// classifies it, and is the one the model expected.
    fn check_frame(&mut self, t: &Transmit, e: &Expect) {
        let text = match (t, e) {
            (Transmit::Close(c), Expect::Close(want)) => {
                assert_eq!(c, want, "close code");
                return;
            }
            (Transmit::Ping, Expect::Ping) => {
                self.report.pings += 1;
                return;
            }
            (Transmit::Text(text), _) => text,
            (t, e) => panic!("server transmitted {t:?}, the model expected {e:?}"),
        };
        assert_json(text);
        let keys = oracle::keys(text).unwrap_or_default();
        match (oracle::at_client(text), e) {
            (AtClient::Ok { id }, Expect::Reply { id: want, code, .. }) => {
                assert_eq!((&id, None), (want, *code), "reply {text}");
                assert_eq!(text, &reply_text(want, None), "reply");
                self.replies_out += 1;
            }
            (
                AtClient::Error { id, code, message },
                Expect::Reply {
                    id: want,
                    code: Some(want_code),
                    message: want_message,
                },
            ) => {
                assert_eq!((&id, code), (want, *want_code), "reply {text}");
                if let Some(want) = want_message {
                    assert_eq!(&message, &Value::String(want.clone()), "reply message");
                    assert_eq!(text, &reply_text(&id, Some((code, want))), "reply");
                }
                assert_eq!(
                    keys,
                    ["type", "id", "code", "message"],
                    "the keys of {text}"
                );
                self.replies_out += 1;
            }
            (
                AtClient::ErrorFrame { code, .. },
                Expect::ErrorFrame {
                    code: want,
                    text: t,
                },
            ) => {
                assert_eq!(code, *want, "error frame {text}");
                assert_eq!(text, t, "error frame");
            }
            (AtClient::Chunk, Expect::Chunk(c)) => assert_eq!(text, c, "chunk text"),
            (
                AtClient::Request {
                    id,
                    method,
                    headers,
                    body,
                },
                Expect::ServerRequest {
                    id: want,
                    headers: want_headers,
                    body: want_body,
                    text: want_text,
                },
            ) => {
                assert_eq!((&id, method.as_str()), (want, "POST"), "{text}");
                assert_eq!(&headers, want_headers, "headers of {text}");
                assert_eq!(&body, want_body, "body of {text}");
                assert_eq!(text, want_text, "server request");
            }
            (got, e) => panic!("server transmitted {text} ({got:?}), the model expected {e:?}"),
        }
    }

    fn drain_events(&mut self) {
        for e in events(&mut self.s, &mut self.m.events, &mut self.ledger) {
            if let Ev::Request { id, .. } = e {
                self.seen_requests.learn(&id);
                self.report.requests_seen += 1;
            }
        }
    }

    fn check(&self, timed: bool) {
        let s = &self.s;
        let m = &self.m;
        let cfg = &m.cfg;
        assert_eq!(s.phase(), m.phase(), "phase");
        assert_eq!(s.is_closed(), m.link == Link::Closed);
        let ends = usize::from(m.link != Link::Open);
        assert_eq!(self.ledger.end_events, ends, "session-end events");
        check_common(s, &self.ledger, self.now, m.next_deadline(), timed);
        assert_eq!(s.client_requests_in_flight(), m.accepted.len());
        assert!(m.accepted.len() <= cfg.max_client_requests);
        assert_eq!(s.server_requests_pending(), m.server_reqs.len());
        assert!(m.server_reqs.len() <= cfg.max_server_requests);
        assert_eq!(s.emitted_ids(), m.emitted.len());
        assert!(m.emitted.len() <= cfg.max_emitted_ids);
        assert!(m.emitted.iter().all(|id| s.has_emitted(id)));
        assert_eq!(s.queued_frames(), m.out.len(), "queued frames");
        // Replies, a ping, an error frame and the close may go past the
        // limit: each is bounded by the requests in flight or by one.
        assert!(
            s.queued_frames() <= cfg.max_queued_frames + cfg.max_client_requests + 3,
            "outbound queue over its bound: {} frames",
            s.queued_frames()
        );
        let biggest = 4 * cfg.max_frame_size + 256;
        assert!(
            s.queued_bytes() <= cfg.max_queued_bytes + (cfg.max_client_requests + 4) * biggest,
            "outbound queue over its bound: {} bytes",
            s.queued_bytes()
        );
        assert_eq!(s.wants_input(), m.link != Link::Closed && !self.full());
        let mut stats = m.stats;
        stats.chunks = m.chunks;
        assert_eq!(s.stats(), stats, "counters of dropped and refused frames");
    }

    /// After a settling step: everything read, events taken, checked.
    fn settled(&mut self, timed: bool) {
        self.report.steps += 1;
        self.read(usize::MAX);
        self.drain_events();
        self.check(timed);
    }

    /// The application finishes and answers; the peer reads everything and
    /// echoes the close; time runs out. Then everything has ended once.
    fn settle(&mut self) {
        for _ in 0..16 {
            self.read(usize::MAX);
            self.drain_events();
            match self.m.phase() {
                Phase::AwaitingBody => {
                    // Straight to the body timeout (pings in between would
                    // take many steps).
                    let d = self.m.deadline.unwrap_or(self.now).max(self.now);
                    self.advance_to(d);
                    self.settled(true);
                }
                Phase::Streaming | Phase::Draining => {
                    let ids: Vec<String> =
                        self.m.accepted.iter().map(|(id, _)| id.clone()).collect();
                    for id in ids {
                        self.respond(&id, None, 0);
                        self.settled(false);
                    }
                    if self.m.phase() == Phase::Streaming {
                        self.step(&ServerOp::End(ServerEnd::Finish));
                    }
                }
                Phase::Closing if self.ledger.close_sent => {
                    let code = self.ledger.end.map(EndReason::code).map(|c| c.0);
                    self.step(&ServerOp::Frame(ServerInbound::Control(Control::Close(
                        code,
                    ))));
                }
                Phase::Closing => self.step(&ServerOp::Advance(Advance::ToDeadline)),
                Phase::Closed => break,
            }
        }
        self.settled(false);
        assert_eq!(self.s.phase(), Phase::Closed, "the session did not end");
        assert_eq!(self.ledger.end_events, 1);
        assert_eq!(self.s.poll_timeout(), None);
        assert_eq!(self.s.queued_frames(), 0);
        assert!(self.s.poll_transmit().is_none() && self.s.poll_event().is_none());
        self.ledger.all_ended();
        assert_eq!(
            self.requests_in,
            self.replies_out + self.m.replies_lost,
            "every client request is answered once (or lost with the peer)"
        );
    }
}
