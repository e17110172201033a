//! The client session against its reference model.

use std::collections::{HashSet, VecDeque};
use std::time::Instant;

use arbitrary::Arbitrary;
use serde_json::Value;
use serde_json::value::RawValue;
use wirestream_proto::{
    ClientSession, CloseCode, Config, EndReason, Headers, Phase, SeededRandom, Stats, Transmit,
};

use crate::io::{ClientSeen as Ev, Frame, NotifyEnd, feed_client, poll_client};
use crate::ops::{
    Advance, Control, Ids, Junk, Limits, Pick, STRANGERS, Timeout, chunk_text, completion, quote,
};
use crate::oracle::{self, AtClient, AtServer};
use crate::{ErrKind, assert_json, kind};

const BODY: &str = r#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#;

/// A whole client run: its limits, how many frames the peer reads after
/// each step, and the steps.
#[derive(Clone, Debug, Arbitrary)]
pub struct ClientScenario {
    /// The session's limits.
    pub limits: Limits,
    /// Frames the peer reads after each step, as
    /// [`ServerScenario::read`](super::ServerScenario::read).
    pub read: u8,
    /// The steps.
    pub ops: Vec<ClientOp>,
}

/// One step of a client run.
#[derive(Clone, Debug, Arbitrary)]
pub enum ClientOp {
    /// The server sends a frame (skipped while the session does not want
    /// input).
    Frame(ClientInbound),
    /// Time passes, then the timeout is handled.
    Advance(Advance),
    /// `notify`.
    Notify {
        /// `n % 8 < 6`: completion `agc-n`; otherwise a stranger.
        response_id: u8,
        /// A string or parts.
        parts: bool,
        /// Its deadline.
        timeout: Timeout,
    },
    /// `respond` to a server request.
    Respond {
        /// Which request (seen, ended or never seen).
        request: Pick,
        /// The status.
        status: u16,
        /// With a header.
        headers: bool,
        /// With a body.
        body: bool,
    },
    /// The peer reads up to this many frames.
    Read(u8),
    /// A step that ends the session.
    End(ClientEnd),
}

/// The steps that end a client session.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum ClientEnd {
    /// The transport ends without a close frame.
    TransportLost,
    /// `close`.
    Close,
}

/// A frame the server sends to the client.
#[derive(Clone, Debug, Arbitrary)]
pub enum ClientInbound {
    /// A chunk carrying the completions set in the mask.
    Chunk {
        /// Bit `n`: completion `agc-n`.
        completions: u8,
    },
    /// `{"type":"ok"}` for a notify (live, ended or unknown).
    Ok {
        /// Which notify.
        id: Pick,
    },
    /// `{"type":"error"}` for a notify.
    Error {
        /// Which notify.
        id: Pick,
        /// Its code.
        code: u16,
    },
    /// A server request (fresh, repeated or a stranger's id).
    Request {
        /// Its id.
        id: Pick,
        /// With headers.
        headers: bool,
        /// With a body.
        body: bool,
    },
    /// The `{code, message}` error frame.
    ErrorFrame {
        /// Its code.
        code: u16,
        /// A JSON object message rather than a string.
        json_message: bool,
    },
    /// Junk of a known kind.
    Junk(Junk),
    /// Any text.
    Text(String),
    /// A control frame, a size edge, or the close.
    Control(Control),
}

/// What a finished run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientReport {
    /// Steps applied.
    pub steps: usize,
    /// Frames transmitted.
    pub frames_out: usize,
    /// How the session ended (always `Some` after a run).
    pub end: Option<EndReason>,
    /// Notifies sent.
    pub notifies: usize,
    /// Server requests the application saw.
    pub requests_seen: usize,
}

/// Runs a scenario against a client session, asserting the invariants after
/// every step, then settles it and asserts the end state.
///
/// # Panics
/// When the engine breaks an invariant or departs from the model.
pub fn run_client(scenario: &ClientScenario) -> ClientReport {
    let mut h = Harness::new(scenario);
    for op in &scenario.ops {
        h.step(op);
    }
    h.settle();
    h.report
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    Body,
    Request {
        id: String,
        response_id: String,
        content: Value,
    },
    Response {
        id: String,
        status: u16,
        headers: Vec<(String, String)>,
        body: Option<Value>,
    },
    Close(CloseCode),
}

#[derive(Debug)]
struct Model {
    cfg: Config,
    phase: Phase,
    deadline: Option<Instant>,
    /// Notifies in flight, in send order: (id, deadline).
    notifies: Vec<(String, Option<Instant>)>,
    /// Server requests the application holds, in arrival order.
    pending: Vec<String>,
    out: VecDeque<Expect>,
    events: VecDeque<Ev>,
    queue_closed: bool,
    blocked: bool,
    failed: bool,
    chunks: u64,
    /// The counters of [`Stats`] the model predicts.
    stats: Stats,
    /// Server requests that will never be answered on the wire.
    answers_lost: usize,
}

impl Model {
    fn new(cfg: Config) -> Self {
        Self {
            cfg,
            phase: Phase::Streaming,
            deadline: None,
            notifies: Vec::new(),
            pending: Vec::new(),
            out: VecDeque::from([Expect::Body]),
            events: VecDeque::new(),
            queue_closed: false,
            blocked: false,
            failed: false,
            chunks: 0,
            stats: Stats::default(),
            answers_lost: 0,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Streaming => self.notifies.iter().filter_map(|(_, d)| *d).min(),
            Phase::Closing => self.deadline,
            _ => None,
        }
    }

    fn open(&self) -> Result<(), ErrKind> {
        match self.phase {
            Phase::Streaming => Ok(()),
            _ => Err(ErrKind::Closed),
        }
    }

    fn push(&mut self, e: Expect) {
        if !self.queue_closed {
            self.queue_closed = matches!(e, Expect::Close(_));
            self.out.push_back(e);
        }
    }

    /// Returns whether the frame is a server request owed an answer.
    fn on_frame(&mut self, now: Instant, frame: &Frame) -> bool {
        match self.phase {
            Phase::Streaming => {}
            Phase::Closing => {
                if let Frame::Close(_) = frame {
                    self.terminate();
                }
                return false;
            }
            _ => return false,
        }
        match frame {
            Frame::Ping | Frame::Pong => {}
            Frame::Binary => self.stats.binary_frames += 1,
            Frame::Close(code) => self.peer_gone(EndReason::Peer(code.map(CloseCode))),
            Frame::Oversize => self.close_with(now, CloseCode::TOO_BIG),
            Frame::Text(t) if t.len() > self.cfg.max_frame_size => {
                self.close_with(now, CloseCode::TOO_BIG);
            }
            Frame::Text(t) => return self.on_text(t),
        }
        false
    }

    fn on_text(&mut self, text: &str) -> bool {
        match oracle::expected_at_client(text) {
            AtClient::Chunk => {
                self.chunks += 1;
                self.events.push_back(Ev::Chunk(text.to_owned()));
            }
            AtClient::Ok { id } => self.on_response(id, NotifyEnd::Ok),
            AtClient::Error { id, code, .. } => self.on_response(id, NotifyEnd::Err(code)),
            AtClient::Request { id, .. } => {
                if self.pending.contains(&id) {
                    self.stats.junk_frames += 1;
                    return false;
                }
                if self.pending.len() >= self.cfg.max_server_requests {
                    self.stats.refused_requests += 1;
                    self.push(Expect::Response {
                        id,
                        status: 429,
                        headers: Vec::new(),
                        body: None,
                    });
                } else {
                    self.pending.push(id.clone());
                    self.events.push_back(Ev::ServerRequest(id));
                }
                return true;
            }
            AtClient::ErrorFrame { code, .. } if !self.failed => {
                self.failed = true;
                self.events.push_back(Ev::StreamFailed(code));
            }
            AtClient::ErrorFrame { .. } | AtClient::Junk => self.stats.junk_frames += 1,
        }
        false
    }

    fn on_response(&mut self, id: String, outcome: NotifyEnd) {
        if let Some(i) = self.notifies.iter().position(|(n, _)| *n == id) {
            self.notifies.remove(i);
            self.events.push_back(Ev::NotifyEnded { id, outcome });
        } else {
            self.stats.unknown_responses += 1;
        }
    }

    fn on_timeout(&mut self, now: Instant) {
        let mut due: Vec<(Instant, usize)> = self
            .notifies
            .iter()
            .enumerate()
            .filter_map(|(i, (_, d))| d.filter(|d| *d <= now).map(|d| (d, i)))
            .collect();
        due.sort();
        let gone: Vec<String> = due
            .iter()
            .map(|&(_, i)| self.notifies[i].0.clone())
            .collect();
        self.notifies.retain(|(id, _)| !gone.contains(id));
        for id in gone {
            self.events.push_back(Ev::NotifyEnded {
                id,
                outcome: NotifyEnd::TimedOut,
            });
        }
        if self.phase == Phase::Closing && self.deadline.is_some_and(|d| d <= now) {
            self.terminate();
        }
    }

    fn on_transport_lost(&mut self) {
        match self.phase {
            Phase::Streaming => self.peer_gone(EndReason::TransportLost),
            Phase::Closing => self.terminate(),
            _ => {}
        }
    }

    fn close_with(&mut self, now: Instant, code: CloseCode) {
        self.push(Expect::Close(code));
        self.phase = Phase::Closing;
        self.deadline = now.checked_add(self.cfg.close_timeout);
        self.end(EndReason::Local(code));
    }

    fn peer_gone(&mut self, reason: EndReason) {
        self.terminate();
        self.end(reason);
    }

    fn end(&mut self, reason: EndReason) {
        for (id, _) in std::mem::take(&mut self.notifies) {
            self.events.push_back(Ev::NotifyEnded {
                id,
                outcome: NotifyEnd::SessionEnded,
            });
        }
        self.answers_lost += self.pending.len();
        self.pending.clear();
        self.events.push_back(Ev::End(reason));
    }

    fn terminate(&mut self) {
        self.phase = Phase::Closed;
        self.deadline = None;
        self.answers_lost += self
            .out
            .iter()
            .filter(|e| matches!(e, Expect::Response { .. }))
            .count();
        self.out.clear();
        self.queue_closed = true;
        self.blocked = false;
    }
}

struct Harness {
    s: ClientSession,
    m: Model,
    now: Instant,
    read_cap: usize,
    notify_ids: Ids,
    request_ids: Ids,
    seen_requests: Ids,
    minted: HashSet<String>,
    ended: HashSet<String>,
    chunk_seq: u64,
    end_events: usize,
    close_sent: bool,
    requests_in: usize,
    answers_out: usize,
    report: ClientReport,
}

impl Harness {
    fn new(scenario: &ClientScenario) -> Self {
        let cfg = scenario.limits.config();
        let body = RawValue::from_string(BODY.to_owned()).unwrap_or_default();
        Self {
            s: ClientSession::new(
                cfg.clone(),
                body,
                SeededRandom::new(u64::from(scenario.read)),
            ),
            m: Model::new(cfg),
            now: Instant::now(),
            read_cap: match scenario.read % 4 {
                0 => usize::MAX,
                1 => 1,
                2 => 3,
                _ => 0,
            },
            notify_ids: Ids::default(),
            request_ids: Ids::default(),
            seen_requests: Ids::default(),
            minted: HashSet::new(),
            ended: HashSet::new(),
            chunk_seq: 0,
            end_events: 0,
            close_sent: false,
            requests_in: 0,
            answers_out: 0,
            report: ClientReport::default(),
        }
    }

    fn full(&self) -> bool {
        self.s.queued_frames() >= self.m.cfg.max_queued_frames
            || self.s.queued_bytes() >= self.m.cfg.max_queued_bytes
    }

    fn step(&mut self, op: &ClientOp) {
        self.report.steps += 1;
        let mut timed = false;
        match op {
            ClientOp::Frame(f) => self.frame(f),
            ClientOp::End(ClientEnd::TransportLost) => {
                self.m.on_transport_lost();
                self.s.handle_transport_lost(self.now);
            }
            ClientOp::Advance(a) => {
                self.now = a.apply(self.now, self.s.poll_timeout());
                self.m.on_timeout(self.now);
                self.s.handle_timeout(self.now);
                timed = true;
            }
            ClientOp::Notify {
                response_id,
                parts,
                timeout,
            } => self.notify(*response_id, *parts, *timeout),
            ClientOp::Respond {
                request,
                status,
                headers,
                body,
            } => {
                let id = self.seen_requests.pick(*request, "never-seen");
                self.respond(&id, *status, *headers, *body);
            }
            ClientOp::End(ClientEnd::Close) => {
                let expected = self.m.open().map(|()| {
                    self.m.close_with(self.now, CloseCode::NORMAL);
                });
                assert_eq!(self.s.close(self.now).map_err(|e| kind(&e)), expected);
            }
            ClientOp::Read(n) => self.read(usize::from(*n)),
        }
        self.read(self.read_cap);
        self.drain_events();
        self.check(timed);
    }

    fn frame(&mut self, f: &ClientInbound) {
        if !self.s.wants_input() && !self.s.is_closed() {
            assert!(self.full(), "wants no input with room in the queue");
            return;
        }
        let max = self.m.cfg.max_frame_size;
        let text = match f {
            ClientInbound::Chunk { completions } => {
                self.chunk_seq += 1;
                Some(chunk_text(*completions, self.chunk_seq).0)
            }
            ClientInbound::Ok { id } => Some(format!(
                r#"{{"type":"ok","id":{}}}"#,
                quote(&self.notify_ids.pick(*id, "n"))
            )),
            ClientInbound::Error { id, code } => Some(format!(
                r#"{{"type":"error","id":{},"code":{code},"message":"response_id \"agc-9\" not from this stream"}}"#,
                quote(&self.notify_ids.pick(*id, "n"))
            )),
            ClientInbound::Request { id, headers, body } => {
                let mut t = format!(
                    r#"{{"id":{},"method":"POST""#,
                    quote(&self.request_ids.pick(*id, "s"))
                );
                if *headers {
                    t.push_str(
                        r#","headers":{"content-type":"application/json","mcp-session-id":"s-1"}"#,
                    );
                }
                if *body {
                    t.push_str(
                        r#","body":{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#,
                    );
                }
                t.push('}');
                Some(t)
            }
            ClientInbound::ErrorFrame { code, json_message } => Some(if *json_message {
                format!(r#"{{"message":{{"detail":[1,2]}},"code":{code}}}"#)
            } else {
                format!(r#"{{"code":{code},"message":"upstream failed"}}"#)
            }),
            ClientInbound::Junk(j) => Some(j.text()),
            ClientInbound::Text(t) => Some(t.clone()),
            ClientInbound::Control(c) => c.text(max),
        };
        let frame = match f {
            ClientInbound::Control(c) => c.frame(text),
            _ => Frame::Text(text.unwrap_or_default()),
        };
        if self.m.on_frame(self.now, &frame) {
            self.requests_in += 1;
        }
        feed_client(&mut self.s, self.now, frame);
    }

    fn notify(&mut self, response_id: u8, parts: bool, timeout: Timeout) {
        let rid = match response_id % 8 {
            n @ 0..6 => completion(n),
            n => STRANGERS[usize::from(n) % STRANGERS.len()].to_owned(),
        };
        let content = if parts {
            r#"[{"type":"text","text":"look"},{"type":"input_audio","input_audio":{"data":"","format":"wav"}}]"#
        } else {
            r#""also check the tests""#
        };
        let content = RawValue::from_string(content.to_owned()).unwrap_or_default();
        let full = self.full();
        let expected = self.m.open().and_then(|()| {
            if self.m.notifies.len() >= self.m.cfg.max_client_requests {
                Err(ErrKind::TooManyRequests)
            } else if full {
                self.m.blocked = true;
                Err(ErrKind::Full)
            } else {
                Ok(())
            }
        });
        let got = self.s.notify(self.now, &rid, &content, timeout.duration());
        match (got, expected) {
            (Ok(id), Ok(())) => {
                assert!(self.minted.insert(id.clone()), "notify id {id} reused");
                self.notify_ids.learn(&id);
                let d = self
                    .now
                    .checked_add(timeout.duration().unwrap_or(self.m.cfg.request_timeout));
                self.m.notifies.push((id.clone(), d));
                self.m.push(Expect::Request {
                    id,
                    response_id: rid,
                    content: serde_json::from_str(content.get()).unwrap(),
                });
                self.report.notifies += 1;
            }
            (got, expected) => assert_eq!(got.map(|_| ()).map_err(|e| kind(&e)), expected),
        }
    }

    fn respond(&mut self, id: &str, status: u16, with_headers: bool, with_body: bool) {
        let headers: Headers<'_> = if with_headers {
            [("mcp-session-id", "s-1")].into_iter().collect()
        } else {
            Headers::new()
        };
        let body = RawValue::from_string(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#.to_owned())
            .unwrap_or_default();
        let expected = self.m.open().and_then(|()| {
            let i = self
                .m
                .pending
                .iter()
                .position(|p| p == id)
                .ok_or(ErrKind::UnknownRequest)?;
            self.m.pending.remove(i);
            self.m.push(Expect::Response {
                id: id.to_owned(),
                status,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                body: with_body.then(|| serde_json::from_str(body.get()).unwrap()),
            });
            Ok(())
        });
        let got = self
            .s
            .respond(self.now, id, status, &headers, with_body.then_some(&*body))
            .map_err(|e| kind(&e));
        assert_eq!(got, expected, "respond {id:?}");
    }

    fn read(&mut self, cap: usize) {
        for _ in 0..cap {
            let bytes = self.s.queued_bytes();
            let frames = self.s.queued_frames();
            let t = self.s.poll_transmit();
            let expected = self.m.out.pop_front();
            match (&t, expected) {
                (None, None) => {}
                (Some(t), Some(e)) => self.check_frame(t, &e),
                (t, e) => panic!("client transmitted {t:?}, the model expected {e:?}"),
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

    /// The body first, then only client requests and server responses as a
    /// server classifies them; nothing after the close frame.
    fn check_frame(&mut self, t: &Transmit, e: &Expect) {
        assert!(!self.close_sent, "{t:?} transmitted after the close frame");
        let text = match (t, e) {
            (Transmit::Close(c), Expect::Close(want)) => {
                assert_eq!(c, want, "close code");
                self.close_sent = true;
                return;
            }
            (Transmit::Text(text), _) => text,
            (t, e) => panic!("client transmitted {t:?}, the model expected {e:?}"),
        };
        assert_json(text);
        let keys = oracle::keys(text).unwrap_or_default();
        match (oracle::at_server(text), e) {
            (_, Expect::Body) => assert_eq!(text, BODY, "the body goes first, verbatim"),
            (
                AtServer::Notify {
                    id,
                    response_id,
                    content,
                },
                Expect::Request {
                    id: want,
                    response_id: want_rid,
                    content: want_content,
                },
            ) => {
                assert_eq!((&id, &response_id), (want, want_rid), "{text}");
                assert_eq!(&content, want_content, "content of {text}");
                assert_eq!(
                    keys,
                    ["id", "type", "response_id", "content"],
                    "the keys of {text}"
                );
            }
            (
                AtServer::Response {
                    id,
                    status,
                    headers,
                    body,
                },
                Expect::Response {
                    id: want,
                    status: want_status,
                    headers: want_headers,
                    body: want_body,
                },
            ) => {
                assert_eq!((&id, status), (want, *want_status), "{text}");
                assert_eq!(&headers, want_headers, "headers of {text}");
                assert_eq!(&body, want_body, "body of {text}");
                // §3.2: `headers` omitted when empty, `body` when absent.
                let mut want_keys = vec!["id", "status"];
                want_keys.extend(want_headers.first().map(|_| "headers"));
                want_keys.extend(want_body.as_ref().map(|_| "body"));
                assert_eq!(keys, want_keys, "the keys of {text}");
                self.answers_out += 1;
            }
            (got, e) => panic!("client transmitted {text} ({got:?}), the model expected {e:?}"),
        }
    }

    fn drain_events(&mut self) {
        let mut n = 0;
        while let Some(event) = poll_client(&mut self.s) {
            n += 1;
            assert!(n < 100_000, "events never stop");
            let expected = self.m.events.pop_front();
            assert_eq!(Some(&event), expected.as_ref(), "client event");
            match event {
                Ev::ServerRequest(id) => {
                    self.seen_requests.learn(&id);
                    self.report.requests_seen += 1;
                }
                Ev::NotifyEnded { id, .. } => {
                    assert!(self.minted.contains(&id), "{id} was never sent");
                    assert!(self.ended.insert(id.clone()), "{id} ended twice");
                }
                Ev::End(r) => {
                    self.end_events += 1;
                    self.report.end = Some(r);
                }
                Ev::Chunk(_) | Ev::StreamFailed(_) | Ev::Writable => {}
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
        assert_eq!(s.notifies_in_flight(), m.notifies.len());
        assert!(m.notifies.len() <= cfg.max_client_requests);
        assert_eq!(s.server_requests_pending(), m.pending.len());
        assert!(m.pending.len() <= cfg.max_server_requests);
        assert_eq!(s.queued_frames(), m.out.len(), "queued frames");
        assert!(
            s.queued_frames() <= cfg.max_queued_frames + cfg.max_server_requests + 2,
            "outbound queue over its bound: {} frames",
            s.queued_frames()
        );
        let biggest = 4 * cfg.max_frame_size + 256;
        assert!(
            s.queued_bytes()
                <= cfg.max_queued_bytes + BODY.len() + (cfg.max_server_requests + 3) * biggest,
            "outbound queue over its bound: {} bytes",
            s.queued_bytes()
        );
        if m.out.is_empty() {
            assert_eq!(s.queued_bytes(), 0);
        }
        assert_eq!(s.wants_input(), m.phase != Phase::Closed && !self.full());
        assert_eq!(s.has_failed(), m.failed);
        let mut stats = m.stats;
        stats.chunks = m.chunks;
        assert_eq!(s.stats(), stats, "counters of dropped and refused frames");
    }

    /// The application answers what it holds and closes; the peer reads
    /// everything and echoes the close; time runs out.
    fn settle(&mut self) {
        for _ in 0..16 {
            self.read(usize::MAX);
            match self.m.phase {
                Phase::Streaming => {
                    for id in self.m.pending.clone() {
                        self.report.steps += 1;
                        self.respond(&id, 501, false, false);
                        self.read(usize::MAX);
                        self.drain_events();
                        self.check(false);
                    }
                    self.step(&ClientOp::End(ClientEnd::Close));
                }
                Phase::Closing if self.close_sent => {
                    self.step(&ClientOp::Frame(ClientInbound::Control(Control::Close(
                        Some(1000),
                    ))));
                }
                Phase::Closing => self.step(&ClientOp::Advance(Advance::ToDeadline)),
                _ => break,
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
        assert_eq!(self.minted, self.ended, "every notify ends exactly once");
        assert_eq!(
            self.requests_in,
            self.answers_out + self.m.answers_lost,
            "every server request is answered once (or lost with the session)"
        );
    }
}
