//! The server session against its reference model.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use arbitrary::Arbitrary;
use serde_json::Value;
use serde_json::value::RawValue;
use wirestream_proto::{
    CloseCode, Config, EndReason, Headers, Json, Phase, RequestError, ResponseError, SeededRandom,
    ServerSession, Stats, Transmit,
};

use crate::io::{Frame, ServerSeen as Ev, feed_server, poll_server};
use crate::ops::{
    Advance, Control, Ids, Junk, Limits, Pick, STRANGERS, Timeout, chunk_text, completion, quote,
};
use crate::oracle::{self, AtClient, AtServer};
use crate::{ErrKind, OutcomeKind, assert_json, kind};

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
    },
    /// `respond` to a client request.
    Respond {
        /// Which request (seen, ended or never seen).
        request: Pick,
        /// `None` answers ok.
        error: Option<u16>,
    },
    /// `send_server_request`.
    SendServerRequest {
        /// With a header.
        headers: bool,
        /// With a body.
        body: bool,
        /// Its deadline.
        timeout: Timeout,
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
    },
    /// `reject_body`.
    RejectBody,
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
    h.report
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    Reply {
        id: String,
        code: Option<u16>,
        message: Option<String>,
    },
    ErrorFrame(u16),
    Chunk(String),
    ServerRequest {
        id: String,
        headers: Vec<(String, String)>,
        body: Option<Value>,
    },
    Close(CloseCode),
}

/// The reference model: what the session should hold and produce.
#[derive(Debug)]
struct Model {
    cfg: Config,
    phase: Phase,
    deadline: Option<Instant>,
    /// Accepted client requests in arrival order: (id, response_id).
    accepted: Vec<(String, String)>,
    emitted: VecDeque<String>,
    /// Pending server requests in send order: (id, deadline).
    server_reqs: Vec<(String, Option<Instant>)>,
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

impl Model {
    fn new(cfg: Config, now: Instant) -> Self {
        Self {
            deadline: now.checked_add(cfg.body_timeout),
            cfg,
            phase: Phase::AwaitingBody,
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

    fn next_deadline(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::AwaitingBody | Phase::Draining | Phase::Closing => self.deadline,
            Phase::Streaming | Phase::Closed => None,
        };
        self.server_reqs
            .iter()
            .filter_map(|(_, d)| *d)
            .chain(phase)
            .min()
    }

    fn push(&mut self, e: Expect) {
        if !self.queue_closed {
            self.queue_closed = matches!(e, Expect::Close(_));
            self.out.push_back(e);
        }
    }

    fn streaming(&self) -> Result<(), ErrKind> {
        match self.phase {
            Phase::Streaming => Ok(()),
            Phase::AwaitingBody => Err(ErrKind::AwaitingBody),
            Phase::Draining => Err(ErrKind::Finished),
            Phase::Closing | Phase::Closed => Err(ErrKind::Closed),
        }
    }

    /// Returns whether the frame is a client request owed a reply.
    fn on_frame(&mut self, now: Instant, frame: &Frame) -> bool {
        match self.phase {
            Phase::Closed => return false,
            Phase::Closing => {
                if let Frame::Close(_) = frame {
                    self.terminate();
                }
                return false;
            }
            _ => {}
        }
        let awaiting = self.phase == Phase::AwaitingBody;
        match frame {
            Frame::Ping | Frame::Pong => {}
            Frame::Close(code) => self.peer_gone(EndReason::Peer(code.map(CloseCode))),
            Frame::Oversize => self.end(now, Some(413), CloseCode::TOO_BIG),
            Frame::Text(t) if t.len() > self.cfg.max_frame_size => {
                self.end(now, Some(413), CloseCode::TOO_BIG);
            }
            Frame::Binary if awaiting => self.end(now, Some(400), CloseCode::UNSUPPORTED),
            Frame::Binary => self.stats.binary_frames += 1,
            Frame::Text(t) if awaiting => {
                self.phase = Phase::Streaming;
                self.deadline = None;
                self.events.push_back(Ev::Body(t.to_owned()));
            }
            Frame::Text(t) => return self.on_envelope(t),
        }
        false
    }

    fn on_envelope(&mut self, text: &str) -> bool {
        match oracle::expected_at_server(text) {
            AtServer::Junk => {
                self.stats.junk_frames += 1;
                false
            }
            AtServer::BadRequest { id } => {
                self.stats.refused_requests += 1;
                self.push(Expect::Reply {
                    id,
                    code: Some(400),
                    message: None,
                });
                true
            }
            AtServer::Notify {
                id,
                response_id: rid,
                ..
            } => {
                let refusal = if self.accepted.iter().any(|(a, _)| *a == id) {
                    Some((409, None))
                } else if self.phase == Phase::Draining {
                    Some((
                        404,
                        Some(format!("response_id {rid:?} is no longer running")),
                    ))
                } else if !self.emitted.contains(&rid) {
                    Some((
                        404,
                        Some(format!("response_id {rid:?} not from this stream")),
                    ))
                } else if self.accepted.len() >= self.cfg.max_client_requests {
                    Some((429, None))
                } else {
                    None
                };
                match refusal {
                    Some((code, message)) => {
                        self.stats.refused_requests += 1;
                        self.push(Expect::Reply {
                            id,
                            code: Some(code),
                            message,
                        });
                    }
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
                if let Some(i) = self.server_reqs.iter().position(|(s, _)| *s == id) {
                    let (id, _) = self.server_reqs.remove(i);
                    self.events.push_back(Ev::Ended {
                        id,
                        outcome: OutcomeKind::Answered(status),
                    });
                } else {
                    self.stats.unknown_responses += 1;
                }
                false
            }
        }
    }

    /// The timeout as PROTOCOL.md and DESIGN.md want it: everything due at
    /// `now` is handled, so that the next deadline is later than `now`.
    fn on_timeout(&mut self, now: Instant) {
        loop {
            let mut due: Vec<(Instant, usize)> = self
                .server_reqs
                .iter()
                .enumerate()
                .filter_map(|(i, (_, d))| d.filter(|d| *d <= now).map(|d| (d, i)))
                .collect();
            due.sort();
            let gone: Vec<String> = due
                .iter()
                .filter_map(|&(_, i)| self.server_reqs.get(i).map(|(id, _)| id.clone()))
                .collect();
            self.server_reqs.retain(|(id, _)| !gone.contains(id));
            for id in gone {
                self.events.push_back(Ev::Ended {
                    id,
                    outcome: OutcomeKind::TimedOut,
                });
            }
            let due = self.deadline.is_some_and(|d| d <= now);
            match self.phase {
                Phase::AwaitingBody if due => self.end(now, Some(408), CloseCode::POLICY),
                Phase::Draining if due => {
                    for (id, _) in std::mem::take(&mut self.accepted) {
                        self.stats.refused_requests += 1;
                        self.push(Expect::Reply {
                            id,
                            code: Some(504),
                            message: None,
                        });
                    }
                    self.end(now, None, CloseCode::NORMAL);
                }
                Phase::Closing if due => self.terminate(),
                _ => return,
            }
        }
    }

    fn on_transport_lost(&mut self) {
        match self.phase {
            Phase::Closed => {}
            Phase::Closing => self.terminate(),
            _ => self.peer_gone(EndReason::TransportLost),
        }
    }

    fn end(&mut self, now: Instant, error: Option<u16>, code: CloseCode) {
        for (id, rid) in std::mem::take(&mut self.accepted) {
            self.stats.refused_requests += 1;
            self.push(Expect::Reply {
                id,
                code: Some(404),
                message: Some(format!("response_id {rid:?} is no longer running")),
            });
        }
        if let Some(e) = error {
            self.push(Expect::ErrorFrame(e));
        }
        self.push(Expect::Close(code));
        self.phase = Phase::Closing;
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

    fn end_server_requests(&mut self) {
        for (id, _) in std::mem::take(&mut self.server_reqs) {
            self.events.push_back(Ev::Ended {
                id,
                outcome: OutcomeKind::SessionEnded,
            });
        }
    }

    fn terminate(&mut self) {
        self.phase = Phase::Closed;
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

struct Harness {
    s: ServerSession,
    m: Model,
    now: Instant,
    read_cap: usize,
    request_ids: Ids,
    server_ids: Ids,
    seen_requests: Ids,
    minted: HashSet<String>,
    ended: HashSet<String>,
    chunk_seq: u64,
    end_events: usize,
    close_sent: bool,
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
            minted: HashSet::new(),
            ended: HashSet::new(),
            chunk_seq: 0,
            end_events: 0,
            close_sent: false,
            requests_in: 0,
            replies_out: 0,
            report: ServerReport::default(),
        }
    }

    fn cfg(&self) -> &Config {
        &self.m.cfg
    }

    fn full(&self) -> bool {
        self.s.queued_frames() >= self.cfg().max_queued_frames
            || self.s.queued_bytes() >= self.cfg().max_queued_bytes
    }

    fn step(&mut self, op: &ServerOp) {
        self.report.steps += 1;
        let mut timed = false;
        match op {
            ServerOp::Frame(f) => self.frame(f),
            ServerOp::End(end) => self.end(*end),
            ServerOp::Advance(a) => {
                self.advance(*a);
                timed = true;
            }
            ServerOp::SendChunk { completions, raw } => self.chunk(*completions, *raw),
            ServerOp::Respond { request, error } => {
                let id = self.seen_requests.pick(*request, "never-seen");
                self.respond(&id, *error);
            }
            ServerOp::SendServerRequest {
                headers,
                body,
                timeout,
            } => self.server_request(*headers, *body, *timeout),
            ServerOp::Read(n) => self.read(usize::from(*n)),
        }
        self.read(self.read_cap);
        self.drain_events();
        self.check(timed);
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
                        self.m.phase = Phase::Draining;
                        self.m.deadline = self.now.checked_add(self.m.cfg.drain_timeout);
                    }
                });
                let got = self.s.finish(self.now).map_err(|e| kind(&e));
                assert_eq!(got, expected, "finish");
            }
            ServerEnd::Fail { code, json_message } => {
                let error = if json_message {
                    let raw = RawValue::from_string(r#"{"detail":["a",1]}"#.to_owned());
                    ResponseError {
                        code,
                        message: Json::owned(raw.unwrap_or_default()),
                    }
                } else {
                    ResponseError::new(code, "upstream failed")
                };
                let expected = match self.m.phase {
                    Phase::AwaitingBody | Phase::Streaming => {
                        self.m.end(self.now, Some(code), CloseCode::INTERNAL);
                        Ok(())
                    }
                    Phase::Draining => Err(ErrKind::Finished),
                    Phase::Closing | Phase::Closed => Err(ErrKind::Closed),
                };
                let got = self.s.fail(self.now, &error).map_err(|e| kind(&e));
                assert_eq!(got, expected, "fail");
            }
            ServerEnd::RejectBody => {
                let expected = self.m.streaming().and_then(|()| {
                    if self.m.chunks > 0 {
                        Err(ErrKind::AlreadyStreaming)
                    } else {
                        self.m.end(self.now, Some(400), CloseCode::UNSUPPORTED);
                        Ok(())
                    }
                });
                let got = self
                    .s
                    .reject_body(self.now, "missing field `messages`")
                    .map_err(|e| kind(&e));
                assert_eq!(got, expected, "reject_body");
            }
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
        if self.m.on_frame(self.now, &frame) {
            self.requests_in += 1;
        }
        feed_server(&mut self.s, self.now, frame);
    }

    fn advance(&mut self, a: Advance) {
        self.now = a.apply(self.now, self.s.poll_timeout());
        self.m.on_timeout(self.now);
        self.s.handle_timeout(self.now);
    }

    fn chunk(&mut self, completions: u8, raw: bool) {
        let (text, ids) = chunk_text(completions, self.chunk_seq);
        self.chunk_seq += 1;
        let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let sent = if raw {
            text.clone()
        } else {
            serde_json::to_string(&value).unwrap_or_default()
        };
        let full = self.full();
        let expected = self.m.streaming().and_then(|()| {
            if full {
                self.m.blocked = true;
                return Err(ErrKind::Full);
            }
            for id in &ids {
                self.m.remember(id);
            }
            self.m.push(Expect::Chunk(sent));
            self.m.chunks += 1;
            Ok(())
        });
        let got = if raw {
            let chunk = RawValue::from_string(text.clone()).unwrap_or_default();
            self.s.send_chunk(chunk, &ids).map_err(|r| {
                assert_eq!(r.value.get(), text, "a refused chunk is handed back");
                kind(&r.error)
            })
        } else {
            self.s.send_chunk_value(&value, &ids).map_err(|e| kind(&e))
        };
        assert_eq!(got, expected, "send_chunk");
    }

    fn respond(&mut self, id: &str, error: Option<u16>) {
        let expected = match self.m.phase {
            Phase::Closing | Phase::Closed => Err(ErrKind::Closed),
            _ => match self.m.accepted.iter().position(|(a, _)| a == id) {
                None => Err(ErrKind::UnknownRequest),
                Some(i) => {
                    self.m.accepted.remove(i);
                    self.m.push(Expect::Reply {
                        id: id.to_owned(),
                        code: error,
                        message: error.map(|_| "app error".to_owned()),
                    });
                    if self.m.phase == Phase::Draining && self.m.accepted.is_empty() {
                        self.m.end(self.now, None, CloseCode::NORMAL);
                    }
                    Ok(())
                }
            },
        };
        let result = error.map_or(Ok(()), |c| Err(RequestError::new(c, "app error")));
        let got = self.s.respond(self.now, id, result).map_err(|e| kind(&e));
        assert_eq!(got, expected, "respond {id:?}");
    }

    fn server_request(&mut self, with_headers: bool, with_body: bool, timeout: Timeout) {
        let headers: Headers<'_> = if with_headers {
            [("content-type", "application/json")].into_iter().collect()
        } else {
            Headers::new()
        };
        let body =
            RawValue::from_string(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#.into())
                .unwrap_or_default();
        let full = self.full();
        let expected = self.m.streaming().and_then(|()| {
            if self.m.server_reqs.len() >= self.m.cfg.max_server_requests {
                Err(ErrKind::TooManyRequests)
            } else if full {
                self.m.blocked = true;
                Err(ErrKind::Full)
            } else {
                Ok(())
            }
        });
        let got = self.s.send_server_request(
            self.now,
            "POST",
            &headers,
            with_body.then_some(&*body),
            timeout.duration(),
        );
        match (got, expected) {
            (Ok(id), Ok(())) => {
                assert!(
                    self.minted.insert(id.clone()),
                    "server request id {id} reused"
                );
                self.server_ids.learn(&id);
                let d = self
                    .now
                    .checked_add(timeout.duration().unwrap_or(self.m.cfg.request_timeout));
                self.m.server_reqs.push((id.clone(), d));
                self.m.push(Expect::ServerRequest {
                    id,
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                    body: with_body.then(|| serde_json::from_str(body.get()).unwrap()),
                });
                self.report.server_requests += 1;
            }
            (got, expected) => assert_eq!(got.map(|_| ()).map_err(|e| kind(&e)), expected),
        }
    }

    /// The peer reads up to `cap` frames; each is checked against the
    /// model's next expected frame.
    fn read(&mut self, cap: usize) {
        for _ in 0..cap {
            let bytes = self.s.queued_bytes();
            let frames = self.s.queued_frames();
            let t = self.s.poll_transmit();
            let expected = self.m.out.pop_front();
            match (&t, expected) {
                (None, None) => {}
                (Some(t), Some(e)) => self.check_frame(t, &e),
                (t, e) => panic!("server transmitted {t:?}, the model expected {e:?}"),
            }
            if let Some(t) = &t {
                assert_eq!(self.s.queued_bytes(), bytes - t.len(), "byte accounting");
                assert_eq!(self.s.queued_frames(), frames - 1, "frame accounting");
                self.report.frames_out += 1;
            }
            if self.m.blocked && !self.full() && !self.m.queue_closed {
                self.m.blocked = false;
                if self.m.phase == Phase::Streaming {
                    self.m.events.push_back(Ev::Writable);
                }
            }
            if t.is_none() {
                break;
            }
        }
    }

    /// Every frame is valid JSON of a PROTOCOL.md shape, as a client
    /// classifies it, and is the one the model expected; nothing follows
    /// the close frame.
    fn check_frame(&mut self, t: &Transmit, e: &Expect) {
        assert!(!self.close_sent, "{t:?} transmitted after the close frame");
        let text = match (t, e) {
            (Transmit::Close(c), Expect::Close(want)) => {
                assert_eq!(c, want, "close code");
                self.close_sent = true;
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
                assert_eq!(keys, ["type", "id"], "the keys of {text}");
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
                    assert_eq!(&message, want, "reply message");
                }
                assert_eq!(
                    keys,
                    ["type", "id", "code", "message"],
                    "the keys of {text}"
                );
                self.replies_out += 1;
            }
            (AtClient::ErrorFrame { code, .. }, Expect::ErrorFrame(want)) => {
                assert_eq!(code, *want, "error frame {text}");
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
                },
            ) => {
                assert_eq!((&id, method.as_str()), (want, "POST"), "{text}");
                assert_eq!(&headers, want_headers, "headers of {text}");
                assert_eq!(&body, want_body, "body of {text}");
                // §3.2: `headers` omitted when empty, `body` when absent.
                let mut want_keys = vec!["id", "method"];
                want_keys.extend(want_headers.first().map(|_| "headers"));
                want_keys.extend(want_body.as_ref().map(|_| "body"));
                assert_eq!(keys, want_keys, "the keys of {text}");
            }
            (got, e) => panic!("server transmitted {text} ({got:?}), the model expected {e:?}"),
        }
    }

    fn drain_events(&mut self) {
        let mut n = 0;
        while let Some(event) = poll_server(&mut self.s) {
            n += 1;
            assert!(n < 100_000, "events never stop");
            let expected = self.m.events.pop_front();
            assert_eq!(Some(&event), expected.as_ref(), "server event");
            match event {
                Ev::Request { id, .. } => {
                    self.seen_requests.learn(&id);
                    self.report.requests_seen += 1;
                }
                Ev::Ended { id, .. } => {
                    assert!(self.minted.contains(&id), "{id} was never sent");
                    assert!(self.ended.insert(id.clone()), "{id} ended twice");
                }
                Ev::End(r) => {
                    self.end_events += 1;
                    self.report.end = Some(r);
                }
                Ev::Body(_) | Ev::Writable => {}
            }
        }
        assert!(
            self.m.events.is_empty(),
            "the model expected events {:?}",
            self.m.events
        );
    }

    fn check(&self, timed: bool) {
        let s = &self.s;
        let m = &self.m;
        let cfg = &m.cfg;
        assert_eq!(s.phase(), m.phase, "phase");
        assert_eq!(s.is_closed(), m.phase == Phase::Closed);
        let closing = matches!(m.phase, Phase::Closing | Phase::Closed);
        assert_eq!(self.end_events, usize::from(closing), "session-end events");
        assert_eq!(s.poll_timeout(), m.next_deadline(), "poll_timeout");
        if timed {
            assert!(
                s.poll_timeout().is_none_or(|d| d > self.now),
                "after a timeout, the next deadline {:?} is not later than now {:?}",
                s.poll_timeout(),
                self.now
            );
        }
        assert_eq!(s.client_requests_in_flight(), m.accepted.len());
        assert!(m.accepted.len() <= cfg.max_client_requests);
        assert_eq!(s.server_requests_pending(), m.server_reqs.len());
        assert!(m.server_reqs.len() <= cfg.max_server_requests);
        assert_eq!(s.emitted_ids(), m.emitted.len());
        assert!(m.emitted.len() <= cfg.max_emitted_ids);
        assert!(m.emitted.iter().all(|id| s.has_emitted(id)));
        assert_eq!(s.queued_frames(), m.out.len(), "queued frames");
        assert!(
            s.queued_frames() <= cfg.max_queued_frames + cfg.max_client_requests + 2,
            "outbound queue over its bound: {} frames",
            s.queued_frames()
        );
        let biggest = 4 * cfg.max_frame_size + 256;
        assert!(
            s.queued_bytes() <= cfg.max_queued_bytes + (cfg.max_client_requests + 3) * biggest,
            "outbound queue over its bound: {} bytes",
            s.queued_bytes()
        );
        if m.out.is_empty() {
            assert_eq!(s.queued_bytes(), 0);
        }
        assert_eq!(s.wants_input(), m.phase != Phase::Closed && !self.full());
        let mut stats = m.stats;
        stats.chunks = m.chunks;
        assert_eq!(s.stats(), stats, "counters of dropped and refused frames");
    }

    /// The application finishes and answers; the peer reads everything and
    /// echoes the close; time runs out. Then everything has ended once.
    fn settle(&mut self) {
        for _ in 0..16 {
            self.read(usize::MAX);
            match self.m.phase {
                Phase::AwaitingBody => self.step(&ServerOp::Advance(Advance::ToDeadline)),
                Phase::Streaming | Phase::Draining => {
                    let ids: Vec<String> =
                        self.m.accepted.iter().map(|(id, _)| id.clone()).collect();
                    for id in ids {
                        self.report.steps += 1;
                        self.respond(&id, None);
                        self.read(usize::MAX);
                        self.drain_events();
                        self.check(false);
                    }
                    if self.m.phase == Phase::Streaming {
                        self.step(&ServerOp::End(ServerEnd::Finish));
                    }
                }
                Phase::Closing if self.close_sent => {
                    let code = self.report.end.map(EndReason::code).map(|c| c.0);
                    self.step(&ServerOp::Frame(ServerInbound::Control(Control::Close(
                        code,
                    ))));
                }
                Phase::Closing => self.step(&ServerOp::Advance(Advance::ToDeadline)),
                Phase::Closed => break,
            }
        }
        self.read(usize::MAX);
        self.drain_events();
        self.check(false);
        assert_eq!(self.s.phase(), Phase::Closed, "the session did not end");
        assert_eq!(self.end_events, 1);
        assert_eq!(self.s.poll_timeout(), None);
        assert_eq!(self.s.queued_frames(), 0);
        assert!(self.s.poll_transmit().is_none() && self.s.poll_event().is_none());
        assert_eq!(
            self.minted, self.ended,
            "every server request ends exactly once"
        );
        assert_eq!(
            self.requests_in,
            self.replies_out + self.m.replies_lost,
            "every client request is answered once (or lost with the peer)"
        );
    }
}
