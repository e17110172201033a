//! What both roles share in the model, as the engine's two roles share one
//! core: the liveness clocks of PROTOCOL.md §5 (keepalive, silent peer,
//! write stall), and the driver's side of every run (the outbound queue's
//! accounting, the requests sent and their ends, the session's one end
//! event, what may still go out after the end), generic over the engine's
//! [`Engine`] trait so that the server and the client executors share it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use wirestream_proto::{ClientSession, Config, EndReason, ServerSession, Transmit};

use crate::io::{Observe, Seen, Token, poll};

/// What the liveness clock did at a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fired {
    /// A keepalive ping went out.
    Ping,
    /// The peer is given up on, as if the transport were lost.
    Lost(EndReason),
}

/// The liveness clocks, as PROTOCOL.md §5 states them: a ping after
/// `ping_interval` without any inbound frame and again every interval while
/// still silent; a peer silent for `liveness_timeout` is dead; a queue full
/// for `write_stall_timeout` means a peer that reads nothing. Only while the
/// session is open (the roles ask only then).
#[derive(Debug)]
pub(crate) struct Live {
    ping: Option<Duration>,
    silent: Option<Duration>,
    stall: Option<Duration>,
    last_inbound: Instant,
    last_ping: Option<Instant>,
    /// Since when the queue has been full, as the session last noted it:
    /// it notes after every frame it handles and every command that
    /// queues (or is refused), and forgets when a frame leaves a queue
    /// that is then no longer full.
    full_since: Option<Instant>,
}

impl Live {
    pub(crate) fn new(cfg: &Config, now: Instant) -> Self {
        Self {
            ping: cfg.ping_interval,
            silent: cfg.liveness_timeout,
            stall: cfg.write_stall_timeout,
            last_inbound: now,
            last_ping: None,
            full_since: None,
        }
    }

    /// Any inbound frame, of any kind, in any phase.
    pub(crate) fn inbound(&mut self, now: Instant) {
        self.last_inbound = self.last_inbound.max(now);
    }

    /// The session looked at its queue at `now`.
    pub(crate) fn note(&mut self, now: Instant, full: bool) {
        if full {
            self.full_since.get_or_insert(now);
        } else {
            self.full_since = None;
        }
    }

    /// A frame left the queue.
    pub(crate) fn popped(&mut self, full: bool) {
        if !full {
            self.full_since = None;
        }
    }

    /// The session ended: the stall clock stops.
    pub(crate) fn stop(&mut self) {
        self.full_since = None;
    }

    fn ping_at(&self) -> Option<Instant> {
        let since = self
            .last_ping
            .map_or(self.last_inbound, |p| p.max(self.last_inbound));
        since.checked_add(self.ping?)
    }

    fn silent_at(&self) -> Option<Instant> {
        self.last_inbound.checked_add(self.silent?)
    }

    fn stall_at(&self) -> Option<Instant> {
        self.full_since?.checked_add(self.stall?)
    }

    /// The earliest of the three deadlines.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        [self.ping_at(), self.silent_at(), self.stall_at()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The timeout at `now`, the queue `full` or not: a silent peer first,
    /// then a stalled queue, else a ping when due (one per timeout).
    pub(crate) fn fire(&mut self, now: Instant, full: bool) -> Option<Fired> {
        let due = |d: Option<Instant>| d.is_some_and(|d| now >= d);
        if due(self.silent_at()) {
            return Some(Fired::Lost(EndReason::PeerSilent));
        }
        if due(self.stall_at()) && full {
            return Some(Fired::Lost(EndReason::WriteStalled));
        }
        if due(self.ping_at()) {
            self.last_ping = Some(now);
            return Some(Fired::Ping);
        }
        None
    }
}

/// Takes out of `sent` (id, token, deadline), in send order, every request
/// whose deadline is at or before `now`: earliest deadline first, then in
/// the order they were sent.
pub(crate) fn expire(
    sent: &mut Vec<(String, u64, Option<Instant>)>,
    now: Instant,
) -> Vec<(String, u64)> {
    let mut due: Vec<(Instant, usize)> = sent
        .iter()
        .enumerate()
        .filter_map(|(i, (_, _, d))| d.filter(|d| *d <= now).map(|d| (d, i)))
        .collect();
    due.sort();
    let gone: Vec<(String, u64)> = due
        .iter()
        .map(|&(_, i)| (sent[i].0.clone(), sent[i].1))
        .collect();
    sent.retain(|(id, _, _)| !gone.iter().any(|(g, _)| g == id));
    gone
}

/// A session as the driver sees it: its events in the model's terms and
/// its queue's size (inherent getters of both roles).
pub(crate) trait Session: Observe {
    fn queued_frames(&self) -> usize;
    fn queued_bytes(&self) -> usize;
}

impl<K: Token> Session for ServerSession<String, K> {
    fn queued_frames(&self) -> usize {
        ServerSession::queued_frames(self)
    }
    fn queued_bytes(&self) -> usize {
        ServerSession::queued_bytes(self)
    }
}

impl<K: Token> Session for ClientSession<String, K> {
    fn queued_frames(&self) -> usize {
        ClientSession::queued_frames(self)
    }
    fn queued_bytes(&self) -> usize {
        ClientSession::queued_bytes(self)
    }
}

/// Whether the session's queue is at one of its limits.
pub(crate) fn full<E: Session>(s: &E, cfg: &Config) -> bool {
    s.queued_frames() >= cfg.max_queued_frames || s.queued_bytes() >= cfg.max_queued_bytes
}

/// The driver's record of one run, the same for both roles: the requests
/// this side sent (with their tokens) and how they ended, the end event,
/// and what went out after the close.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    next_token: u64,
    /// Requests sent: id → token.
    pub(crate) minted: HashMap<String, u64>,
    pub(crate) ended: HashSet<String>,
    pub(crate) end_events: usize,
    pub(crate) end: Option<EndReason>,
    /// The close frame went out.
    pub(crate) close_sent: bool,
    pub(crate) frames_out: usize,
}

impl Ledger {
    /// A token no request of this run was sent with.
    pub(crate) fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// A request went out with `token` under the fresh id `id`: 32 lowercase
    /// hex digits, never seen before in this run.
    pub(crate) fn sent(&mut self, id: &str, token: u64) {
        assert!(
            id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "request id {id:?} is not 32 lowercase hex digits"
        );
        assert!(
            self.minted.insert(id.to_owned(), token).is_none(),
            "request id {id} reused"
        );
    }

    /// Takes one event: a request ends once, with the token it was sent
    /// with; the session ends once, and nothing follows its end.
    pub(crate) fn saw<S: Seen>(&mut self, e: &S) {
        assert_eq!(self.end_events, 0, "event {e:?} after the session's end");
        if let Some((id, token)) = e.request_ended() {
            assert_eq!(
                self.minted.get(id),
                Some(&token),
                "{id} ended with token {token}: never sent with it"
            );
            assert!(self.ended.insert(id.to_owned()), "{id} ended twice");
        }
        if let Some(r) = e.end() {
            self.end_events += 1;
            self.end = Some(r);
        }
    }

    /// Every request sent ended exactly once.
    pub(crate) fn all_ended(&self) {
        let minted: HashSet<&String> = self.minted.keys().collect();
        let ended: HashSet<&String> = self.ended.iter().collect();
        assert_eq!(minted, ended, "every request sent ends exactly once");
    }
}

/// Takes the next frame off the session's queue, checking its accounting
/// and what may go out after the end: nothing after the close frame,
/// nothing at all after a write stall.
pub(crate) fn transmit<E: Session>(s: &mut E, ledger: &mut Ledger) -> Option<Transmit> {
    let (bytes, frames) = (s.queued_bytes(), s.queued_frames());
    let t = s.poll_transmit();
    match &t {
        Some(t) => {
            assert!(
                !ledger.close_sent,
                "{t:?} transmitted after the close frame"
            );
            assert_ne!(
                ledger.end,
                Some(EndReason::WriteStalled),
                "{t:?} transmitted after a write stall"
            );
            assert_eq!(s.queued_bytes(), bytes - t.len(), "byte accounting");
            assert_eq!(s.queued_frames(), frames - 1, "frame accounting");
            ledger.close_sent = matches!(t, Transmit::Close(_));
            ledger.frames_out += 1;
        }
        None => assert_eq!((frames, bytes), (0, 0), "an empty queue holds nothing"),
    }
    t
}

/// Takes every event, each the one the model expected, in order, and checks
/// it through the ledger; returns them for the role's own bookkeeping.
pub(crate) fn events<E: Observe>(
    s: &mut E,
    expected: &mut VecDeque<E::Seen>,
    ledger: &mut Ledger,
) -> Vec<E::Seen> {
    let mut seen = Vec::new();
    while let Some(event) = poll(s) {
        assert!(seen.len() < 100_000, "events never stop");
        assert_eq!(Some(&event), expected.front(), "event");
        expected.pop_front();
        ledger.saw(&event);
        seen.push(event);
    }
    assert!(
        expected.is_empty(),
        "the model expected events {expected:?}"
    );
    seen
}

/// The checks after every step that both roles share.
pub(crate) fn check_common<E: Session>(
    s: &E,
    ledger: &Ledger,
    now: Instant,
    deadline: Option<Instant>,
    timed: bool,
) {
    assert_eq!(s.poll_timeout(), deadline, "poll_timeout");
    if timed {
        assert!(
            s.poll_timeout().is_none_or(|d| d > now),
            "after a timeout, the next deadline {:?} is not later than now {now:?}",
            s.poll_timeout(),
        );
    }
    match ledger.end {
        // Dropped at once, without waiting for a handshake: closed, no
        // deadline, at most the best-effort close left to send.
        Some(EndReason::PeerSilent) => {
            assert!(s.is_closed() && s.poll_timeout().is_none());
            assert!(s.queued_frames() <= 1);
        }
        Some(EndReason::WriteStalled) => {
            assert!(s.is_closed() && s.poll_timeout().is_none());
            assert_eq!(s.queued_frames(), 0, "a stalled queue is freed");
        }
        _ => {}
    }
}
