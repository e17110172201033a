//! The waker a connection's task polls its parts with.
//!
//! The driver polls the socket, the timer, the application's channels and
//! (on a server) the handler itself, all on one task. Much of what wakes it
//! happens inside its own poll: the handler queues a chunk or a server
//! request on a channel the driver reads, the driver answers the handler's
//! request through a oneshot the handler awaits. Handed the task's own
//! waker, each of those reschedules the task it is already running in, and
//! a multi-threaded executor (tokio's, smol's) also unparks an idle worker
//! to come and steal it: a futex call and a thread wake-up per chunk and
//! per request, for nothing.
//!
//! [`LocalWake`] notes a wake-up that comes while the driver is polling,
//! and the driver polls again before it returns; only a wake-up from
//! outside a poll (the peer's bytes, another task's request, a timer)
//! reaches the executor.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Polls of the driver in one turn of the task when its own parts keep
/// waking it (a handler that yields in a loop, tokio's cooperative budget):
/// past them it yields to the executor like any task.
const REPOLLS: u32 = 8;

/// The part of the driver that woke it: the socket.
pub(crate) const SOCKET: u8 = 1;
/// The part of the driver that woke it: anything else (the timer, the
/// application's channels, the handler).
pub(crate) const OTHER: u8 = 2;

/// See the [module](self).
#[derive(Default)]
pub(crate) struct LocalWake {
    /// Which parts woke the driver since its last poll began.
    woken: AtomicU8,
    polling: AtomicBool,
    task: AtomicWaker,
}

/// The waker of one part of the driver.
struct Part {
    local: Arc<LocalWake>,
    bit: u8,
}

impl Wake for Part {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Sequentially consistent with the end of a poll (see `poll`):
        // either the driver sees `woken` and polls again, or this sees
        // `polling` cleared and wakes the task.
        self.local.woken.fetch_or(self.bit, SeqCst);
        if !self.local.polling.load(SeqCst) {
            self.local.task.wake();
        }
    }
}

/// The wakers of the driver's parts, made once per connection.
pub(crate) struct Wakers {
    /// For every use of the socket: reads, writes, flushes.
    pub(crate) socket: Waker,
    /// For everything else.
    pub(crate) other: Waker,
}

impl LocalWake {
    /// The wakers of `this`'s parts.
    pub(crate) fn wakers(this: &Arc<Self>) -> Wakers {
        let part = |bit| {
            Waker::from(Arc::new(Part {
                local: Arc::clone(this),
                bit,
            }))
        };
        Wakers {
            socket: part(SOCKET),
            other: part(OTHER),
        }
    }

    /// Polls `f` as the task `cx`'s turn, handing it which parts woke the
    /// driver since its last poll (`f` must act on them: they are not
    /// handed over again): again while a part woke it during the poll, up
    /// to [`REPOLLS`] times, then yields (the task is woken to come back).
    pub(crate) fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(u8) -> Poll<T>,
    ) -> Poll<T> {
        self.task.register(cx.waker());
        for _ in 0..REPOLLS {
            self.polling.store(true, SeqCst);
            let woken = self.woken.swap(0, SeqCst);
            let polled = f(woken);
            self.polling.store(false, SeqCst);
            if polled.is_ready() || self.woken.load(SeqCst) == 0 {
                return polled;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    use super::{LocalWake, REPOLLS, SOCKET, Wakers};

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Count {
        fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// One turn of a task whose driver poll is `f` (handed the parts'
    /// wakers and which parts woke it): what it returned, and the count of
    /// the task's own wake-ups.
    fn turn(mut f: impl FnMut(&Wakers, u8) -> Poll<()>) -> (Poll<()>, Arc<Count>) {
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let local = Arc::new(LocalWake::default());
        let wakers = LocalWake::wakers(&local);
        let polled = local.poll(&mut Context::from_waker(&waker), |woken| f(&wakers, woken));
        (polled, count)
    }

    #[test]
    fn a_wake_during_the_poll_polls_again_without_waking_the_task() {
        let mut polls = 0;
        let mut parts = Vec::new();
        let (polled, woken) = turn(|wakers, by| {
            polls += 1;
            parts.push(by);
            if polls == 1 {
                wakers.socket.wake_by_ref();
            }
            Poll::Pending
        });
        assert!(polled.is_pending());
        assert_eq!((polls, woken.get()), (2, 0));
        assert_eq!(
            parts,
            [0, SOCKET],
            "the second poll knows the socket woke it"
        );
    }

    #[test]
    fn a_wake_between_polls_wakes_the_task() {
        let mut kept = None;
        let (_, woken) = turn(|wakers, _| {
            kept = Some(wakers.other.clone());
            Poll::Pending
        });
        assert_eq!(woken.get(), 0);
        kept.expect("registered").wake();
        assert_eq!(woken.get(), 1);
    }

    #[test]
    fn a_part_that_always_wakes_yields_to_the_executor() {
        let mut polls = 0;
        let (polled, woken) = turn(|wakers, _| {
            polls += 1;
            wakers.other.wake_by_ref();
            Poll::Pending
        });
        assert!(polled.is_pending());
        assert_eq!(polls, REPOLLS);
        assert_eq!(woken.get(), 1, "woken once, to come back");
    }
}
