//! What both roles share once the protocol's own phases are set aside: the
//! outbound queue and the close handshake (open → closing → closed).

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::frame::{CloseCode, Inbound, Transmit};
use crate::queue::Outbound;
use crate::server::Phase;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// This side sent its close frame; the peer has until `deadline` to
    /// answer it.
    Closing {
        deadline: Option<Instant>,
    },
    Closed,
}

/// The outbound queue and the close handshake of one session.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) out: Outbound,
    state: State,
    close_timeout: Duration,
}

impl Link {
    pub(crate) fn new(max_frames: usize, max_bytes: usize, close_timeout: Duration) -> Self {
        Self {
            out: Outbound::new(max_frames, max_bytes),
            state: State::Open,
            close_timeout,
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.state == State::Open
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// `Ok` while open; commands that send anything need it.
    pub(crate) fn ensure_open(&self) -> Result<(), Error> {
        if self.is_open() {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// The phase once the link is no longer open.
    pub(crate) fn end_phase(&self) -> Option<Phase> {
        match self.state {
            State::Open => None,
            State::Closing { .. } => Some(Phase::Closing),
            State::Closed => Some(Phase::Closed),
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

    /// Queues the close frame, the last frame ever.
    pub(crate) fn close(&mut self, now: Instant, code: CloseCode) {
        self.out.push(Transmit::Close(code));
        self.state = State::Closing {
            deadline: now.checked_add(self.close_timeout),
        };
    }

    /// Takes a frame that arrived after this side's close: only the peer's
    /// close matters then, completing the handshake. `false` while open (the
    /// session handles the frame).
    pub(crate) fn absorb(&mut self, frame: &Inbound<'_>) -> bool {
        match self.state {
            State::Open => false,
            State::Closing { .. } => {
                if let Inbound::Close(_) = frame {
                    self.terminate();
                }
                true
            }
            State::Closed => true,
        }
    }

    /// The close timeout: frames still queued now are ones the transport
    /// could not take for all that time, and are given up.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let State::Closing { deadline: Some(d) } = self.state
            && now >= d
        {
            self.terminate();
        }
    }

    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Closing { deadline } => deadline,
            State::Open | State::Closed => None,
        }
    }

    /// The peer's side is gone: nothing queued can be delivered any more.
    pub(crate) fn terminate(&mut self) {
        self.state = State::Closed;
        self.out.shut();
    }

    /// The next frame, and whether the open link just made room after a
    /// refused command.
    pub(crate) fn pop(&mut self) -> (Option<Transmit>, bool) {
        let (frame, unblocked) = self.out.pop();
        (frame, unblocked && self.is_open())
    }
}
