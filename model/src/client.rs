//! The client session against its reference model.

use std::collections::VecDeque;
use std::time::Instant;

use arbitrary::Arbitrary;
use serde_json::Value;
use serde_json::value::RawValue;
use wirestream_proto::{
    ClientSession, CloseCode, Config, EndReason, Engine, Headers, Phase, SeededRandom, Stats,
    Transmit,
};

use crate::ErrKind;
use crate::io::{ClientSeen as Ev, Frame, NotifyEnd, feed};
use crate::live::{Fired, Ledger, Live, check_common, events, expire, full, transmit};
use crate::ops::{
    Advance, Control, Ids, Junk, Limits, Pick, STRANGERS, Timeout, chunk_text, completion,
    pad_text, padding, quote,
};
use crate::oracle::{self, AtClient, AtServer};
use crate::{assert_json, kind};

const BODY: &str = r#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#;

/// The session type the executor drives: its tokens are `u64`s, one per
/// notify.
type Client = ClientSession<String, u64>;

/// A whole client run: its limits, how many frames the peer reads after
/// each step, and the steps.
#[derive(Clone, Debug, Arbitrary)]
pub struct ClientScenario {
    /// The session's limits.
    pub limits: Limits,
    /// Frames the peer reads after each step, as
    /// [`ServerScenario::read`](super::ServerScenario::read).
    pub read: u8,
    /// First try a body padded this much (see
    /// [`padding`](crate::padding)): one over `max_frame_size` must be
    /// refused and handed back, and the run goes on with the usual body.
    pub body_pad: u8,
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
        /// Padding of a string content.
        pad: u8,
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
        /// Padding of the body (when there is one).
        pad: u8,
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
    /// Commands refused with `TooLarge` (the body's included).
    pub too_large: usize,
    /// Keepalive pings sent.
    pub pings: usize,
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
    h.report.frames_out = h.ledger.frames_out;
    h.report.end = h.ledger.end;
    h.report
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    Body,
    Request {
        id: String,
        response_id: String,
        content: Value,
        text: String,
    },
    Response {
        id: String,
        status: u16,
        headers: Vec<(String, String)>,
        body: Option<Value>,
        text: String,
    },
    Ping,
    Close(CloseCode),
}

#[derive(Debug)]
struct Model {
    cfg: Config,
    phase: Phase,
    /// The close handshake's deadline.
    deadline: Option<Instant>,
    live: Live,
    /// Notifies in flight, in send order: (id, token, deadline).
    notifies: Vec<(String, u64, Option<Instant>)>,
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
    fn new(cfg: Config, now: Instant) -> Self {
        Self {
            live: Live::new(&cfg, now),
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
            Phase::Streaming => self
                .notifies
                .iter()
                .filter_map(|(_, _, d)| *d)
                .chain(self.live.deadline())
                .min(),
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

    fn fits(&self, len: usize) -> Result<(), ErrKind> {
        if len > self.cfg.max_frame_size {
            Err(ErrKind::TooLarge)
        } else {
            Ok(())
        }
    }

    fn push(&mut self, e: Expect) {
        if !self.queue_closed {
            self.queue_closed = matches!(e, Expect::Close(_));
            self.out.push_back(e);
        }
    }

    /// A frame arrives at `now`; `full`: the queue once it is handled.
    /// Returns whether the frame is a server request owed an answer.
    fn on_frame(&mut self, now: Instant, frame: &Frame, full: bool) -> bool {
        self.live.inbound(now);
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
        let mut owed = false;
        match frame {
            Frame::Ping | Frame::Pong => {}
            Frame::Binary => self.stats.binary_frames += 1,
            Frame::Close(code) => self.peer_gone(EndReason::Peer(code.map(CloseCode))),
            Frame::Oversize => self.close_with(now, CloseCode::TOO_BIG),
            Frame::Text(t) if t.len() > self.cfg.max_frame_size => {
                self.close_with(now, CloseCode::TOO_BIG);
            }
            Frame::Text(t) => owed = self.on_text(t),
        }
        self.live.note(now, full);
        owed
    }

    fn on_text(&mut self, text: &str) -> bool {
        match oracle::at_client(text) {
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
                        text: answer_text(&id, 429, false, None),
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
        if let Some(i) = self.notifies.iter().position(|(n, _, _)| *n == id) {
            let (id, token, _) = self.notifies.remove(i);
            self.events
                .push_back(Ev::NotifyEnded { id, token, outcome });
        } else {
            self.stats.unknown_responses += 1;
        }
    }

    /// The timeout at `now`, the queue `full` or not before it.
    fn on_timeout(&mut self, now: Instant, full: bool) {
        for (id, token) in expire(&mut self.notifies, now) {
            self.events.push_back(Ev::NotifyEnded {
                id,
                token,
                outcome: NotifyEnd::TimedOut,
            });
        }
        if self.phase == Phase::Streaming {
            match self.live.fire(now, full) {
                // At most one keepalive ping waits in the queue.
                Some(Fired::Ping) if !self.out.contains(&Expect::Ping) => {
                    self.push(Expect::Ping);
                }
                Some(Fired::Ping) | None => {}
                Some(Fired::Lost(reason)) => self.give_up(reason),
            }
        }
        if self.phase == Phase::Closing && self.deadline.is_some_and(|d| d <= now) {
            self.terminate();
        }
    }

    fn on_transport_lost(&mut self) {
        match self.phase {
            Phase::Streaming => self.peer_gone(EndReason::TransportLost),
            // Nothing can go out any more, not even a best-effort close.
            _ => self.terminate(),
        }
    }

    fn close_with(&mut self, now: Instant, code: CloseCode) {
        self.end_requests();
        self.push(Expect::Close(code));
        self.phase = Phase::Closing;
        self.deadline = now.checked_add(self.cfg.close_timeout);
        self.events.push_back(Ev::End(EndReason::Local(code)));
    }

    fn peer_gone(&mut self, reason: EndReason) {
        self.end_requests();
        self.terminate();
        self.events.push_back(Ev::End(reason));
    }

    /// PROTOCOL.md §5: as if the transport died; a silent peer gets a
    /// best-effort `Close(1008)` as the last frame, a stalled one nothing.
    fn give_up(&mut self, reason: EndReason) {
        self.end_requests();
        self.terminate();
        self.live.stop();
        if reason == EndReason::PeerSilent {
            self.out.push_back(Expect::Close(CloseCode::POLICY));
        }
        self.events.push_back(Ev::End(reason));
    }

    fn end_requests(&mut self) {
        for (id, token, _) in std::mem::take(&mut self.notifies) {
            self.events.push_back(Ev::NotifyEnded {
                id,
                token,
                outcome: NotifyEnd::SessionEnded,
            });
        }
        self.answers_lost += self.pending.len();
        self.pending.clear();
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

/// A `server_response` as PROTOCOL.md §3.2 gives it: `headers` omitted
/// when empty, `body` when absent.
fn answer_text(id: &str, status: u16, headers: bool, body: Option<&str>) -> String {
    let mut t = format!(r#"{{"id":{},"status":{status}"#, quote(id));
    if headers {
        t.push_str(r#","headers":{"mcp-session-id":"s-1"}"#);
    }
    if let Some(b) = body {
        t.push_str(r#","body":"#);
        t.push_str(b);
    }
    t.push('}');
    t
}

struct Harness {
    s: Client,
    m: Model,
    now: Instant,
    read_cap: usize,
    notify_ids: Ids,
    request_ids: Ids,
    seen_requests: Ids,
    ledger: Ledger,
    chunk_seq: u64,
    requests_in: usize,
    answers_out: usize,
    report: ClientReport,
}

impl Harness {
    fn new(scenario: &ClientScenario) -> Self {
        let cfg = scenario.limits.config();
        let now = Instant::now();
        let rng = || SeededRandom::new(u64::from(scenario.read));
        let mut report = ClientReport::default();
        let pad = padding(scenario.body_pad);
        if pad > 0 {
            let big = format!(r#"{{"messages":[],"pad":"{}"}}"#, pad_text(pad));
            let body = RawValue::from_string(big.clone()).unwrap();
            match Client::new(cfg.clone(), now, body, rng()) {
                Ok(_) => assert!(big.len() <= cfg.max_frame_size, "an oversize body taken"),
                Err(refused) => {
                    assert!(big.len() > cfg.max_frame_size, "a body that fits refused");
                    assert_eq!(kind(&refused.error), ErrKind::TooLarge);
                    assert_eq!(refused.value.get(), big, "the body is handed back");
                    report.too_large += 1;
                }
            }
        }
        let body = RawValue::from_string(BODY.to_owned()).unwrap();
        let s = Client::new(cfg.clone(), now, body, rng()).expect("the usual body fits");
        Self {
            s,
            m: Model::new(cfg, now),
            now,
            read_cap: match scenario.read % 4 {
                0 => usize::MAX,
                1 => 1,
                2 => 3,
                _ => 0,
            },
            notify_ids: Ids::default(),
            request_ids: Ids::default(),
            seen_requests: Ids::default(),
            ledger: Ledger::default(),
            chunk_seq: 0,
            requests_in: 0,
            answers_out: 0,
            report,
        }
    }

    fn full(&self) -> bool {
        full(&self.s, &self.m.cfg)
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
                let full = self.full();
                self.m.on_timeout(self.now, full);
                self.s.handle_timeout(self.now);
                timed = true;
            }
            ClientOp::Notify {
                response_id,
                parts,
                timeout,
                pad,
            } => self.notify(*response_id, *parts, *timeout, padding(*pad)),
            ClientOp::Respond {
                request,
                status,
                headers,
                body,
                pad,
            } => {
                let id = self.seen_requests.pick(*request, "never-seen");
                self.respond(&id, *status, *headers, *body, padding(*pad));
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
                Some(chunk_text(*completions, self.chunk_seq, 0).0)
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
        feed(&mut self.s, self.now, frame.clone());
        let full = self.full();
        if self.m.on_frame(self.now, &frame, full) {
            self.requests_in += 1;
        }
    }

    fn notify(&mut self, response_id: u8, parts: bool, timeout: Timeout, pad: usize) {
        let rid = match response_id % 8 {
            n @ 0..6 => completion(n),
            n => STRANGERS[usize::from(n) % STRANGERS.len()].to_owned(),
        };
        let content = if parts {
            r#"[{"type":"text","text":"look"},{"type":"input_audio","input_audio":{"data":"","format":"wav"}}]"#.to_owned()
        } else {
            format!(r#""also check the tests{}""#, pad_text(pad))
        };
        let content = RawValue::from_string(content).unwrap_or_default();
        let text = |id: &str| {
            format!(
                r#"{{"id":{},"type":"agent_completion_notify","response_id":{},"content":{}}}"#,
                quote(id),
                quote(&rid),
                content.get()
            )
        };
        let full = self.full();
        let token = self.ledger.token();
        let expected = self
            .m
            .open()
            .and_then(|()| {
                if self.m.notifies.len() >= self.m.cfg.max_client_requests {
                    Err(ErrKind::TooManyRequests)
                } else if full {
                    self.m.blocked = true;
                    Err(ErrKind::Full)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| self.m.fits(text(&"0".repeat(32)).len()));
        let noted = expected != Err(ErrKind::TooLarge);
        let got = self
            .s
            .notify(self.now, &rid, &content, timeout.duration(), token);
        match (got, expected) {
            (Ok(id), Ok(())) => {
                self.ledger.sent(&id, token);
                self.notify_ids.learn(&id);
                let d = self
                    .now
                    .checked_add(timeout.duration().unwrap_or(self.m.cfg.request_timeout));
                self.m.notifies.push((id.clone(), token, d));
                self.m.push(Expect::Request {
                    text: text(&id),
                    id,
                    response_id: rid,
                    content: serde_json::from_str(content.get()).unwrap(),
                });
                self.report.notifies += 1;
            }
            (Err(refused), Err(e)) => {
                assert_eq!(
                    refused.value, token,
                    "a refused notify hands its token back"
                );
                assert_eq!(kind(&refused.error), e, "notify");
                if e == ErrKind::TooLarge {
                    self.report.too_large += 1;
                }
            }
            (got, expected) => panic!(
                "notify: got {:?}, the model expected {expected:?}",
                got.map_err(|r| r.error)
            ),
        }
        if noted {
            let full = self.full();
            self.m.live.note(self.now, full);
        }
    }

    fn respond(&mut self, id: &str, status: u16, headers: bool, body: bool, pad: usize) {
        let header_map: Headers<'_> = if headers {
            [("mcp-session-id", "s-1")].into_iter().collect()
        } else {
            Headers::new()
        };
        let raw = RawValue::from_string(format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{}},"pad":"{}"}}"#,
            pad_text(pad)
        ))
        .unwrap_or_default();
        let text = answer_text(id, status, headers, body.then(|| raw.get()));
        let expected = self.m.open().and_then(|()| {
            let i = self
                .m
                .pending
                .iter()
                .position(|p| p == id)
                .ok_or(ErrKind::UnknownRequest)?;
            self.m.fits(text.len())?;
            self.m.pending.remove(i);
            self.m.push(Expect::Response {
                id: id.to_owned(),
                status,
                headers: header_map
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                body: body.then(|| serde_json::from_str(raw.get()).unwrap()),
                text,
            });
            Ok(())
        });
        let got = self
            .s
            .respond(self.now, id, status, &header_map, body.then_some(&*raw))
            .map_err(|e| kind(&e));
        if got == Err(ErrKind::TooLarge) {
            self.report.too_large += 1;
        }
        assert_eq!(got, expected, "respond {id:?}");
        if expected.is_ok() {
            let full = self.full();
            self.m.live.note(self.now, full);
        }
    }

    fn read(&mut self, cap: usize) {
        for _ in 0..cap {
            let t = transmit(&mut self.s, &mut self.ledger);
            let expected = self.m.out.pop_front();
            match (&t, expected) {
                (None, None) => {}
                (Some(t), Some(e)) => self.check_frame(t, &e),
                (t, e) => panic!("client transmitted {t:?}, the model expected {e:?}"),
            }
            let full = self.full();
            if t.is_some() {
                self.m.live.popped(full);
            }
            if self.m.blocked && !full && !self.m.queue_closed {
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
    /// server classifies them, each exactly the frame the model expected.
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
            (t, e) => panic!("client transmitted {t:?}, the model expected {e:?}"),
        };
        assert_json(text);
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
                    text: want_text,
                },
            ) => {
                assert_eq!((&id, &response_id), (want, want_rid), "{text}");
                assert_eq!(&content, want_content, "content of {text}");
                assert_eq!(text, want_text, "notify");
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
                    text: want_text,
                },
            ) => {
                assert_eq!((&id, status), (want, *want_status), "{text}");
                assert_eq!(&headers, want_headers, "headers of {text}");
                assert_eq!(&body, want_body, "body of {text}");
                assert_eq!(text, want_text, "server response");
                self.answers_out += 1;
            }
            (got, e) => panic!("client transmitted {text} ({got:?}), the model expected {e:?}"),
        }
    }

    fn drain_events(&mut self) {
        for e in events(&mut self.s, &mut self.m.events, &mut self.ledger) {
            if let Ev::ServerRequest(id) = e {
                self.seen_requests.learn(&id);
                self.report.requests_seen += 1;
            }
        }
    }

    fn check(&self, timed: bool) {
        let s = &self.s;
        let m = &self.m;
        let cfg = &m.cfg;
        assert_eq!(s.phase(), m.phase, "phase");
        assert_eq!(s.is_closed(), m.phase == Phase::Closed);
        let closing = matches!(m.phase, Phase::Closing | Phase::Closed);
        assert_eq!(
            self.ledger.end_events,
            usize::from(closing),
            "session-end events"
        );
        check_common(s, &self.ledger, self.now, m.next_deadline(), timed);
        assert_eq!(s.notifies_in_flight(), m.notifies.len());
        assert!(m.notifies.len() <= cfg.max_client_requests);
        assert_eq!(s.server_requests_pending(), m.pending.len());
        assert!(m.pending.len() <= cfg.max_server_requests);
        assert_eq!(s.queued_frames(), m.out.len(), "queued frames");
        assert!(
            s.queued_frames() <= cfg.max_queued_frames + cfg.max_server_requests + 3,
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
            self.drain_events();
            match self.m.phase {
                Phase::Streaming => {
                    for id in self.m.pending.clone() {
                        self.report.steps += 1;
                        self.respond(&id, 501, false, false, 0);
                        self.read(usize::MAX);
                        self.drain_events();
                        self.check(false);
                    }
                    self.step(&ClientOp::End(ClientEnd::Close));
                }
                Phase::Closing if self.ledger.close_sent => {
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
        assert_eq!(self.ledger.end_events, 1);
        assert_eq!(self.s.poll_timeout(), None);
        assert_eq!(self.s.queued_frames(), 0);
        assert!(self.s.poll_transmit().is_none() && self.s.poll_event().is_none());
        self.ledger.all_ended();
        assert_eq!(
            self.requests_in,
            self.answers_out + self.m.answers_lost,
            "every server request is answered once (or lost with the session)"
        );
    }
}
