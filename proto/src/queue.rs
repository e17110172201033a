//! The bounded outbound queue (PROTOCOL.md §5: bounded in bytes and frames).

use std::collections::VecDeque;

use crate::frame::Transmit;

/// What a drained queue keeps of its buffer: enough for the usual handful
/// of items, so that a session does not reallocate in steady state.
const KEEP: usize = 4;

/// Gives a burst's buffer back once `queue` is drained: an idle session
/// holds only [`KEEP`] slots, whatever it once queued. A shrink follows a
/// growth past `KEEP`, so its cost is spread over the items that grew it.
pub(crate) fn shrink_drained<T>(queue: &mut VecDeque<T>) {
    if queue.is_empty() && queue.capacity() > KEEP {
        queue.shrink_to(KEEP);
    }
}

/// Frames waiting for the transport.
///
/// Data the application sends is admitted only while the queue is under both
/// limits; a refusal marks the queue blocked, and draining it back under the
/// limits reports room once. Protocol replies and the close frame are always
/// admitted: each is caused by one inbound frame or one bounded set of
/// requests, and [`Outbound::is_full`] tells the driver to stop reading while
/// the queue is over its limits, so their number stays bounded too.
#[derive(Debug)]
pub(crate) struct Outbound {
    frames: VecDeque<Transmit>,
    bytes: usize,
    max_frames: usize,
    max_bytes: usize,
    blocked: bool,
    closed: bool,
}

impl Outbound {
    pub(crate) fn new(max_frames: usize, max_bytes: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            bytes: 0,
            max_frames,
            max_bytes,
            blocked: false,
            closed: false,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        self.frames.len() >= self.max_frames || self.bytes >= self.max_bytes
    }

    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Admission for application data: `false`, and blocked, when full.
    pub(crate) fn admit(&mut self) -> bool {
        let room = !self.is_full();
        self.blocked |= !room;
        room
    }

    /// Whether a keepalive ping is still waiting to be sent.
    pub(crate) fn has_ping(&self) -> bool {
        self.frames.iter().any(|f| matches!(f, Transmit::Ping))
    }

    /// Queues a frame. Nothing is ever queued after the close frame.
    pub(crate) fn push(&mut self, frame: Transmit) {
        if self.closed {
            return;
        }
        self.closed = matches!(frame, Transmit::Close(_));
        self.bytes += frame.len();
        self.frames.push_back(frame);
    }

    /// The next frame, and whether the queue just made room after a refusal.
    pub(crate) fn pop(&mut self) -> (Option<Transmit>, bool) {
        let frame = self.frames.pop_front();
        shrink_drained(&mut self.frames);
        if let Some(f) = &frame {
            self.bytes -= f.len();
        }
        let unblocked = self.blocked && !self.is_full() && !self.closed;
        self.blocked &= !unblocked;
        (frame, unblocked)
    }

    /// Drops everything queued but `last`, which becomes the last frame
    /// ever (a best-effort close to a peer that is given up on).
    pub(crate) fn shut_with(&mut self, last: Transmit) {
        self.shut();
        self.bytes = last.len();
        self.frames.push_back(last);
    }

    /// Drops everything queued and refuses anything further (the transport
    /// is gone, or the peer closed).
    pub(crate) fn shut(&mut self) {
        self.frames.clear();
        shrink_drained(&mut self.frames);
        self.bytes = 0;
        self.blocked = false;
        self.closed = true;
    }
}
