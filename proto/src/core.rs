//! What both roles share, below both: the phases of a session, the bounded
//! outbound queue and the close handshake (open → closing → closed), the
//! event queue, the counters, and the one sequence that sends a request.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::error::{Error, Refused};
use crate::frame::{CloseCode, EndReason, Inbound, Transmit};
use crate::ids::RandomSource;
use crate::queue::{Outbound, shrink_drained};
use crate::requests::Outgoing;
use crate::stats::Stats;

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

/// The close handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Handshake {
    Open,
    /// This side sent its close frame; the peer has until `deadline` to
    /// answer it.
    Closing {
        deadline: Option<Instant>,
    },
    Closed,
}

/// The two events every role has, so that the shared code can raise them.
pub(crate) trait RoleEvent {
    /// The session ended.
    fn end(reason: EndReason) -> Self;
    /// The queue has room again after a refusal.
    fn writable() -> Self;
}

/// What each role tells the shared code: where its core is, and how its
/// requests end when nothing can be answered any more. The ends of a
/// session that do not depend on the role are written once, here.
pub(crate) trait Role {
    /// The role's event.
    type Event: RoleEvent;

    fn core(&mut self) -> &mut Core<Self::Event>;

    /// Nothing can be answered any more: the requests each role holds end
    /// (those it sent, with an event; those it received, forgotten).
    fn end_requests(&mut self);

    /// The peer closed or vanished: nothing more can be delivered.
    fn peer_gone(&mut self, reason: EndReason) {
        self.end_requests();
        self.core().peer_gone(reason);
    }

    /// The peer is given up on (silent, or not reading): as if the
    /// transport were lost.
    fn give_up(&mut self, reason: EndReason) {
        self.end_requests();
        self.core().give_up(reason);
    }

    /// The transport ended without a close frame: the session ends at once
    /// if it was open; after this side's close, the handshake is over.
    fn transport_lost(&mut self) {
        if self.core().is_open() {
            self.peer_gone(EndReason::TransportLost);
        } else {
            self.core().terminate();
        }
    }

    /// The role-independent part of `handle_timeout`: the liveness clock,
    /// then the close timeout.
    fn shared_timeouts(&mut self, now: Instant) {
        if let Some(Liveness::Lost(reason)) = self.core().handle_liveness(now) {
            self.give_up(reason);
        }
        self.core().handle_timeout(now);
    }
}

/// What the liveness clock asks of a role when its deadline comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// The keepalive ping went out; nothing else to do.
    Pinged,
    /// The peer fell silent, or stopped reading: end the session with this
    /// reason, as if the transport were lost.
    Lost(EndReason),
}

/// The state both roles share.
pub(crate) struct Core<E> {
    pub(crate) config: Config,
    pub(crate) out: Outbound,
    handshake: Handshake,
    pub(crate) events: VecDeque<E>,
    pub(crate) stats: Stats,
    pub(crate) rng: Box<dyn RandomSource>,
    /// When the last inbound frame (of any kind) arrived, or the session
    /// began.
    last_inbound: Instant,
    /// When the last keepalive ping went out.
    last_ping: Option<Instant>,
    /// Since when the outbound queue has been full, as last seen.
    full_since: Option<Instant>,
}

impl<E: RoleEvent> Core<E> {
    pub(crate) fn new(config: Config, now: Instant, rng: Box<dyn RandomSource>) -> Self {
        let config = config.normalized();
        Self {
            out: Outbound::new(config.max_queued_frames, config.max_queued_bytes),
            handshake: Handshake::Open,
            events: VecDeque::new(),
            stats: Stats::default(),
            rng,
            config,
            last_inbound: now,
            last_ping: None,
            full_since: None,
        }
    }

    /// A frame arrived at `now`: the peer is alive.
    pub(crate) fn inbound(&mut self, now: Instant) {
        self.last_inbound = self.last_inbound.max(now);
    }

    /// Notes at `now` whether the outbound queue is full, which starts (or
    /// stops) the write-stall clock. Every entry point that has `now` calls
    /// it once it has changed the queue.
    pub(crate) fn note(&mut self, now: Instant) {
        if self.out.is_full() {
            self.full_since.get_or_insert(now);
        } else {
            self.full_since = None;
        }
    }

    fn ping_deadline(&self) -> Option<Instant> {
        let interval = self.config.ping_interval?;
        let since = self
            .last_ping
            .map_or(self.last_inbound, |p| p.max(self.last_inbound));
        since.checked_add(interval)
    }

    fn silent_deadline(&self) -> Option<Instant> {
        self.last_inbound.checked_add(self.config.liveness_timeout?)
    }

    fn stall_deadline(&self) -> Option<Instant> {
        self.full_since?
            .checked_add(self.config.write_stall_timeout?)
    }

    /// The earliest deadline of the keepalive, the liveness and the write
    /// stall; only while open.
    pub(crate) fn liveness_deadline(&self) -> Option<Instant> {
        if !self.is_open() {
            return None;
        }
        [
            self.ping_deadline(),
            self.silent_deadline(),
            self.stall_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Runs the liveness clock at `now`: a peer silent too long or a queue
    /// full too long is lost (the role ends the session); otherwise a
    /// keepalive ping goes out when due.
    pub(crate) fn handle_liveness(&mut self, now: Instant) -> Option<Liveness> {
        if !self.is_open() {
            return None;
        }
        let due = |d: Option<Instant>| d.is_some_and(|d| now >= d);
        if due(self.silent_deadline()) {
            return Some(Liveness::Lost(EndReason::PeerSilent));
        }
        if due(self.stall_deadline()) && self.out.is_full() {
            return Some(Liveness::Lost(EndReason::WriteStalled));
        }
        if due(self.ping_deadline()) {
            self.last_ping = Some(now);
            // A ping the peer has not read yet does what a second one
            // would: at most one waits, however long the peer is slow.
            if !self.out.has_ping() {
                self.out.push(Transmit::Ping);
            }
            return Some(Liveness::Pinged);
        }
        None
    }

    /// Ends the session as if the transport were lost, at this side's
    /// initiative: everything queued is dropped, a silent peer gets a
    /// best-effort `Close(1008)` as the last frame, and the connection can
    /// be dropped at once (no close handshake is waited for).
    pub(crate) fn give_up(&mut self, reason: EndReason) {
        self.handshake = Handshake::Closed;
        match reason {
            EndReason::PeerSilent => self.out.shut_with(Transmit::Close(CloseCode::POLICY)),
            _ => self.out.shut(),
        }
        self.full_since = None;
        self.events.push_back(E::end(reason));
    }

    pub(crate) fn is_open(&self) -> bool {
        self.handshake == Handshake::Open
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.handshake == Handshake::Closed
    }

    /// `Ok` while open; commands that send anything need it.
    pub(crate) fn ensure_open(&self) -> Result<(), Error> {
        if self.is_open() {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// The phase once the handshake has begun; `None` while open (the role
    /// knows its own phase then).
    pub(crate) fn end_phase(&self) -> Option<Phase> {
        match self.handshake {
            Handshake::Open => None,
            Handshake::Closing { .. } => Some(Phase::Closing),
            Handshake::Closed => Some(Phase::Closed),
        }
    }

    pub(crate) fn wants_input(&self) -> bool {
        !self.is_closed() && !self.out.is_full()
    }

    /// Admission for application data (see [`Outbound::admit`]).
    pub(crate) fn admit(&mut self) -> Result<(), Error> {
        if self.out.admit() {
            Ok(())
        } else {
            Err(Error::Full)
        }
    }

    /// `Ok` if a frame of `len` bytes is within [`Config::max_frame_size`]:
    /// the peer would refuse a larger one.
    pub(crate) fn fits(&self, len: usize) -> Result<(), Error> {
        if self.config.admits_frame(len) {
            Ok(())
        } else {
            Err(Error::TooLarge)
        }
    }

    /// Queues a text frame.
    pub(crate) fn push(&mut self, text: String) {
        self.out.push(Transmit::Text(text));
    }

    /// Queues the close frame, the last frame ever, and reports the end.
    pub(crate) fn close(&mut self, now: Instant, code: CloseCode) {
        self.out.push(Transmit::Close(code));
        self.handshake = Handshake::Closing {
            deadline: now.checked_add(self.config.close_timeout),
        };
        self.events.push_back(E::end(EndReason::Local(code)));
    }

    /// The peer closed or vanished: nothing queued can be delivered any
    /// more; reports the end.
    pub(crate) fn peer_gone(&mut self, reason: EndReason) {
        self.terminate();
        self.events.push_back(E::end(reason));
    }

    /// Takes a frame that arrived after this side's close: only the peer's
    /// close matters then, completing the handshake. `false` while open (the
    /// role handles the frame).
    pub(crate) fn absorb<T>(&mut self, frame: &Inbound<T>) -> bool {
        match self.handshake {
            Handshake::Open => false,
            Handshake::Closing { .. } => {
                if let Inbound::Close(_) = frame {
                    self.terminate();
                }
                true
            }
            Handshake::Closed => true,
        }
    }

    /// The close timeout: frames still queued now are ones the transport
    /// could not take for all that time, and are given up.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Handshake::Closing { deadline: Some(d) } = self.handshake
            && now >= d
        {
            self.terminate();
        }
    }

    /// The close handshake's deadline.
    pub(crate) fn close_deadline(&self) -> Option<Instant> {
        match self.handshake {
            Handshake::Closing { deadline } => deadline,
            Handshake::Open | Handshake::Closed => None,
        }
    }

    /// The transport is gone after this side's close (or with it).
    pub(crate) fn terminate(&mut self) {
        self.handshake = Handshake::Closed;
        self.out.shut();
    }

    /// The next event for the application.
    pub(crate) fn pop_event(&mut self) -> Option<E> {
        let event = self.events.pop_front();
        shrink_drained(&mut self.events);
        event
    }

    /// The next frame; raises the writable event when the open session just
    /// made room after a refused command and `writable` allows it.
    pub(crate) fn pop(&mut self, writable: bool) -> Option<Transmit> {
        let (frame, unblocked) = self.out.pop();
        if !self.out.is_full() {
            self.full_since = None;
        }
        if unblocked && writable && self.is_open() {
            self.events.push_back(E::writable());
        }
        frame
    }

    /// Sends a request through `table`, the one sequence both roles use:
    /// the table's cap, room in the queue, a fresh id, the frame `build`
    /// makes for it (within the size limit), its deadline. Refused, with the
    /// token handed back, when any of them fails; nothing changes then.
    pub(crate) fn send_request<K>(
        &mut self,
        table: &mut Outgoing<K>,
        now: Instant,
        timeout: Option<Duration>,
        token: K,
        build: impl FnOnce(&str) -> String,
    ) -> Result<String, Refused<K>> {
        let refuse = |error, value| Err(Refused { error, value });
        let admitted = self
            .ensure_open()
            .and_then(|()| table.has_room())
            .and_then(|()| self.admit());
        if let Err(error) = admitted {
            self.note(now);
            return refuse(error, token);
        }
        let id = table.fresh_id(&mut *self.rng);
        let text = build(&id);
        if let Err(error) = self.fits(text.len()) {
            return refuse(error, token);
        }
        let deadline = now.checked_add(timeout.unwrap_or(self.config.request_timeout));
        table.insert(&id, deadline, token);
        self.push(text);
        self.note(now);
        Ok(id)
    }
}
