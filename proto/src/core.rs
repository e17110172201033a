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

/// The state both roles share.
pub(crate) struct Core<E> {
    pub(crate) config: Config,
    pub(crate) out: Outbound,
    handshake: Handshake,
    pub(crate) events: VecDeque<E>,
    pub(crate) stats: Stats,
    pub(crate) rng: Box<dyn RandomSource>,
}

impl<E: RoleEvent> Core<E> {
    pub(crate) fn new(config: Config, rng: Box<dyn RandomSource>) -> Self {
        let config = config.normalized();
        Self {
            out: Outbound::new(config.max_queued_frames, config.max_queued_bytes),
            handshake: Handshake::Open,
            events: VecDeque::new(),
            stats: Stats::default(),
            rng,
            config,
        }
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
        if len > self.config.max_frame_size {
            Err(Error::TooLarge)
        } else {
            Ok(())
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
        if let Err(error) = self
            .ensure_open()
            .and_then(|()| table.has_room())
            .and_then(|()| self.admit())
        {
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
        Ok(id)
    }
}
