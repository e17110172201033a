//! Both engines through the pair harness: any interleaving of the two
//! applications' commands, the wire and the clock ends with both sides
//! closed and nothing pending.

use std::collections::HashSet;
use std::time::Duration;

use arbitrary::Arbitrary;
use serde_json::value::RawValue;
use wirestream_proto::testing::{Pair, Side};
use wirestream_proto::{
    ClientSession, EndReason, Engine, Headers, Phase, RequestError, ResponseError, ServerSession,
};

use crate::io::{ClientSeen, Observe, ServerSeen};
use crate::ops::{
    Advance, Ids, Junk, Limits, Pick, STRANGERS, Timeout, chunk_text, completion, padding,
};
use crate::oracle::{self, AtClient, AtServer};

/// A pair run: one config for both sides, and the steps.
#[derive(Clone, Debug, Arbitrary)]
pub struct PairScenario {
    /// Both sessions' limits.
    pub limits: Limits,
    /// The steps.
    pub ops: Vec<PairOp>,
}

/// One step of a pair run.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum PairOp {
    /// One round of the wire: queued frames cross, deliverable ones arrive.
    Step,
    /// Rounds until nothing moves.
    Drive,
    /// The clock moves; both sides handle the timeout.
    Advance(Advance),
    /// The transport dies under both sides.
    Cut,
    /// The server sends a chunk carrying the completions in the mask.
    ServerChunk {
        /// Bit `n`: `agc-n`.
        completions: u8,
        /// Padding (see [`padding`](crate::padding)).
        pad: u8,
    },
    /// The server finishes the stream.
    ServerFinish,
    /// The server fails the stream.
    ServerFail {
        /// The error frame's code.
        code: u16,
    },
    /// The server rejects the body.
    ServerReject,
    /// The server shuts down (`go_away`).
    ServerGoAway,
    /// The server application answers a client request.
    ServerRespond {
        /// Which one.
        request: Pick,
        /// `None` answers ok.
        error: Option<u16>,
    },
    /// The server sends a server request.
    ServerRequest {
        /// Its deadline.
        timeout: Timeout,
    },
    /// The client sends a notify.
    ClientNotify {
        /// `n % 8 < 6`: completion `agc-n`; otherwise a stranger.
        response_id: u8,
        /// Its deadline.
        timeout: Timeout,
    },
    /// The client application answers a server request.
    ClientRespond {
        /// Which one.
        request: Pick,
        /// The status.
        status: u16,
    },
    /// The client abandons the stream.
    ClientClose,
    /// A foreign client's junk reaches the server.
    InjectToServer(Junk),
    /// A foreign server's junk reaches the client.
    InjectToClient(Junk),
}

/// What a finished pair run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PairReport {
    /// Frames that crossed the wire.
    pub crossed: usize,
    /// How the client ended (always `Some` after a run).
    pub client_end: Option<EndReason>,
    /// How the server ended (always `Some` after a run).
    pub server_end: Option<EndReason>,
}

/// Runs a scenario through the pair harness, then lets the server finish
/// and time run out: both sides must end closed, each exactly once, with
/// every request ended exactly once and nothing pending.
///
/// # Panics
/// When a rule is broken, or the pair livelocks.
pub fn run_pair(scenario: &PairScenario) -> PairReport {
    let cfg = scenario.limits.config();
    let mut p = Pair::new(cfg.clone(), r#"{"messages":[],"stream":true}"#);
    let mut t = Tracker::default();
    for op in &scenario.ops {
        let now = p.now;
        match *op {
            PairOp::Step => {
                p.step();
            }
            PairOp::Drive => assert!(p.drive_bounded(10_000).is_ok(), "the pair livelocked"),
            PairOp::Advance(a) => {
                let to = a.apply(now, p.next_deadline());
                p.advance(to - now);
                for d in [p.client.poll_timeout(), p.server.poll_timeout()] {
                    assert!(
                        d.is_none_or(|d| d > p.now),
                        "after a timeout, a deadline is not later than now"
                    );
                }
            }
            PairOp::Cut => p.cut(),
            PairOp::ServerChunk { completions, pad } => {
                t.chunks += 1;
                let (text, ids) = chunk_text(completions, t.chunks, padding(pad));
                let chunk = RawValue::from_string(text).unwrap_or_default();
                let _ = p.server.send_chunk(now, chunk, &ids);
            }
            PairOp::ServerFinish => {
                let _ = p.server.finish(now);
            }
            PairOp::ServerFail { code } => {
                let _ = p
                    .server
                    .fail(now, &ResponseError::new(code, "upstream failed"));
            }
            PairOp::ServerReject => {
                let _ = p.server.reject_body(now, "bad body");
            }
            PairOp::ServerGoAway => {
                let _ = p.server.go_away(now);
            }
            PairOp::ServerRespond { request, error } => {
                let id = t.client_requests.pick(request, "never");
                let result = error.map_or(Ok(()), |c| Err(RequestError::new(c, "app error")));
                let _ = p.server.respond(now, &id, result);
            }
            PairOp::ServerRequest { timeout } => {
                if let Ok(id) = p.server.send_server_request(
                    now,
                    "GET",
                    &Headers::new(),
                    None,
                    timeout.duration(),
                    (),
                ) {
                    assert!(t.server_sent.insert(id), "server request id reused");
                }
            }
            PairOp::ClientNotify {
                response_id,
                timeout,
            } => {
                let rid = match response_id % 8 {
                    n @ 0..6 => completion(n),
                    n => STRANGERS[usize::from(n) % STRANGERS.len()].to_owned(),
                };
                let content = RawValue::from_string(r#""more""#.to_owned()).unwrap_or_default();
                if let Ok(id) = p.client.notify(now, &rid, &content, timeout.duration(), ()) {
                    assert!(t.notifies_sent.insert(id), "notify id reused");
                }
            }
            PairOp::ClientRespond { request, status } => {
                let id = t.server_requests.pick(request, "never");
                let _ = p.client.respond(now, &id, status, &Headers::new(), None);
            }
            PairOp::ClientClose => {
                let _ = p.client.close(now);
            }
            PairOp::InjectToServer(j) => {
                t.injected.insert(p.transcript.len());
                p.inject_to_server(&j.text());
            }
            PairOp::InjectToClient(j) => {
                t.injected.insert(p.transcript.len());
                p.inject_to_client(&j.text());
            }
        }
        t.collect(&mut p);
    }
    // The server application finishes; the wire runs; time runs out: one
    // deadline at a time, then (keepalive pings can come every nanosecond)
    // a minute at a time, past every timeout a run sets.
    for round in 0..96 {
        assert!(p.drive_bounded(10_000).is_ok(), "the pair livelocked");
        t.collect(&mut p);
        if p.server.phase() == Phase::Streaming {
            let _ = p.server.finish(p.now);
            continue;
        }
        if p.client.is_closed() && p.server.is_closed() {
            break;
        }
        if round >= 64 {
            p.advance(Duration::from_secs(70));
        } else if !p.advance_to_next_deadline() {
            break;
        }
        t.collect(&mut p);
    }
    assert!(p.drive_bounded(10_000).is_ok(), "the pair livelocked");
    t.collect(&mut p);
    assert!(
        p.client.is_closed() && p.server.is_closed(),
        "both sides end closed: {p:?}"
    );
    assert_eq!(
        (t.client_ends, t.server_ends),
        (1, 1),
        "one end event per side"
    );
    assert_eq!(p.client.notifies_in_flight(), 0);
    assert_eq!(p.client.server_requests_pending(), 0);
    assert_eq!(p.server.client_requests_in_flight(), 0);
    assert_eq!(p.server.server_requests_pending(), 0);
    assert_eq!((p.client.queued_frames(), p.server.queued_frames()), (0, 0));
    assert_eq!(
        (p.client.poll_timeout(), p.server.poll_timeout()),
        (None, None)
    );
    assert_eq!(t.notifies_sent, t.notifies_ended, "every notify ends once");
    assert_eq!(
        t.server_sent, t.server_ended,
        "every server request ends once"
    );
    PairReport {
        crossed: p.transcript.len(),
        client_end: t.client_end,
        server_end: t.server_end,
    }
}

#[derive(Default)]
struct Tracker {
    chunks: u64,
    client_requests: Ids,
    server_requests: Ids,
    notifies_sent: HashSet<String>,
    notifies_ended: HashSet<String>,
    server_sent: HashSet<String>,
    server_ended: HashSet<String>,
    client_ends: usize,
    server_ends: usize,
    client_end: Option<EndReason>,
    server_end: Option<EndReason>,
    injected: HashSet<usize>,
    checked: usize,
    closed: [bool; 2],
    client_texts: usize,
}

impl Tracker {
    fn collect(&mut self, p: &mut Pair) {
        for e in p.take_server_events().into_iter().map(ServerSession::seen) {
            assert_eq!(self.server_ends, 0, "server event {e:?} after its end");
            match e {
                ServerSeen::Request { id, .. } => self.client_requests.learn(&id),
                ServerSeen::Ended { id, .. } => {
                    assert!(self.server_sent.contains(&id), "{id} was never sent");
                    assert!(self.server_ended.insert(id), "a server request ended twice");
                }
                ServerSeen::End(r) => {
                    self.server_ends += 1;
                    self.server_end = Some(r);
                }
                ServerSeen::Body(_) | ServerSeen::Writable => {}
            }
        }
        for e in p.take_client_events().into_iter().map(ClientSession::seen) {
            assert_eq!(self.client_ends, 0, "client event {e:?} after its end");
            match e {
                ClientSeen::ServerRequest(id) => self.server_requests.learn(&id),
                ClientSeen::NotifyEnded { id, .. } => {
                    assert!(self.notifies_sent.contains(&id), "{id} was never sent");
                    assert!(self.notifies_ended.insert(id), "a notify ended twice");
                }
                ClientSeen::End(r) => {
                    self.client_ends += 1;
                    self.client_end = Some(r);
                }
                ClientSeen::Chunk(_) | ClientSeen::StreamFailed(_) | ClientSeen::Writable => {}
            }
        }
        // Every frame that crossed: nothing after a side's close, and each
        // of the engines' frames of a PROTOCOL.md shape.
        let from = self.checked;
        for (i, c) in p.transcript.iter().enumerate().skip(from) {
            self.checked = i + 1;
            if self.injected.contains(&i) {
                continue;
            }
            let side = usize::from(c.from == Side::Server);
            assert!(!self.closed[side], "{c:?} crossed after its side's close");
            if c.frame.starts_with("Close(") {
                self.closed[side] = true;
                continue;
            }
            if c.frame == "Ping" || c.frame == "Pong" {
                continue;
            }
            crate::assert_json(&c.frame);
            match c.from {
                Side::Server => assert!(
                    !matches!(oracle::at_client(&c.frame), AtClient::Junk),
                    "the server sent junk: {}",
                    c.frame
                ),
                Side::Client => {
                    self.client_texts += 1;
                    if self.client_texts > 1 {
                        assert!(
                            matches!(
                                oracle::at_server(&c.frame),
                                AtServer::Notify { .. } | AtServer::Response { .. }
                            ),
                            "the client sent {}",
                            c.frame
                        );
                    }
                }
            }
        }
    }
}
