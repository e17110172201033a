//! The pump both application halves feed the engine through: commands come
//! from the application's channels; one the engine refuses as
//! [`Full`](wirestream_proto::Error::Full) is parked (and nothing more is
//! taken from its channel) until the engine says `Writable`, then retried.

use std::task::{Context, Poll};

use futures_channel::mpsc;
use futures_util::StreamExt;

/// Whether the engine has said `Writable` since it last refused a command
/// as full. One per application half, shared by its [`Parked`] channels.
#[derive(Debug, Default)]
pub(crate) struct Room {
    writable: bool,
}

impl Room {
    /// The engine said `Writable`: parked commands may be retried.
    pub(crate) fn writable(&mut self) {
        self.writable = true;
    }
}

/// One channel of commands, with room for the one command the engine
/// refused as full.
#[derive(Debug)]
pub(crate) struct Parked<T> {
    rx: mpsc::Receiver<T>,
    open: bool,
    parked: Option<T>,
}

impl<T> Parked<T> {
    /// Commands from `rx`.
    pub(crate) fn new(rx: mpsc::Receiver<T>) -> Self {
        Self {
            rx,
            open: true,
            parked: None,
        }
    }

    /// Keeps `command`, which the engine refused as full, until it says
    /// `Writable`; the channel is not read meanwhile.
    pub(crate) fn park(&mut self, room: &mut Room, command: T) {
        self.parked = Some(command);
        room.writable = false;
    }

    /// The parked command, once the engine has room again.
    pub(crate) fn retry(&mut self, room: &Room) -> Option<T> {
        if room.writable {
            self.parked.take()
        } else {
            None
        }
    }

    /// Takes the parked command, room or not.
    pub(crate) fn take(&mut self) -> Option<T> {
        self.parked.take()
    }

    /// The application's next command unless one is parked: `Ready(Some)`,
    /// `Ready(None)` once when the channel closes (`Pending` ever after), or
    /// `Pending` with the waker registered.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if self.parked.is_some() || !self.open {
            return Poll::Pending;
        }
        let next = self.rx.poll_next_unpin(cx);
        if let Poll::Ready(None) = next {
            self.open = false;
        }
        next
    }

    /// The next command if one is waiting now (no waker registered), unless
    /// one is parked: for taking what the application queued in one batch.
    /// A closed channel is left for [`poll_next`](Self::poll_next) to report.
    pub(crate) fn try_next(&mut self) -> Option<T> {
        if self.parked.is_some() || !self.open {
            return None;
        }
        self.rx.try_recv().ok()
    }
}
