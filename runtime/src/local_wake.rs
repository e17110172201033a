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
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::task::{Context, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Polls of the driver in one turn of the task when its own parts keep
/// waking it (a handler that yields in a loop, tokio's cooperative budget):
/// past them it yields to the executor like any task.
const REPOLLS: u32 = 8;

/// See the [module](self).
#[derive(Default)]
pub(crate) struct LocalWake {
    woken: AtomicBool,
    polling: AtomicBool,
    task: AtomicWaker,
}

impl Wake for LocalWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Sequentially consistent with the end of a poll (see `poll`):
        // either the driver sees `woken` and polls again, or this sees
        // `polling` cleared and wakes the task.
        self.woken.store(true, SeqCst);
        if !self.polling.load(SeqCst) {
            self.task.wake();
        }
    }
}

impl LocalWake {
    /// A waker for `this`, made once per connection.
    pub(crate) fn waker(this: &Arc<Self>) -> Waker {
        Waker::from(Arc::clone(this))
    }

    /// Polls `f` with `local` (the waker of `self`) as the task `cx`'s
    /// turn: again while something woke it during the poll, up to
    /// [`REPOLLS`] times, then yields (the task is woken to come back).
    pub(crate) fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        local: &Waker,
        mut f: impl FnMut(&mut Context<'_>) -> std::task::Poll<T>,
    ) -> std::task::Poll<T> {
        self.task.register(cx.waker());
        let mut inner = Context::from_waker(local);
        for _ in 0..REPOLLS {
            self.polling.store(true, SeqCst);
            self.woken.store(false, SeqCst);
            let polled = f(&mut inner);
            self.polling.store(false, SeqCst);
            if polled.is_ready() || !self.woken.swap(false, SeqCst) {
                return polled;
            }
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    use super::{LocalWake, REPOLLS};

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

    /// One turn of a task whose driver poll is `f`: what it returned, and
    /// the count of the task's own wake-ups.
    fn turn(f: impl FnMut(&mut Context<'_>) -> Poll<()>) -> (Poll<()>, Arc<Count>) {
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let local = Arc::new(LocalWake::default());
        let inner = LocalWake::waker(&local);
        let polled = local.poll(&mut Context::from_waker(&waker), &inner, f);
        (polled, count)
    }

    #[test]
    fn a_wake_during_the_poll_polls_again_without_waking_the_task() {
        let mut polls = 0;
        let (polled, woken) = turn(|cx| {
            polls += 1;
            if polls == 1 {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        });
        assert!(polled.is_pending());
        assert_eq!((polls, woken.get()), (2, 0));
    }

    #[test]
    fn a_wake_between_polls_wakes_the_task() {
        let mut kept = None;
        let (_, woken) = turn(|cx| {
            kept = Some(cx.waker().clone());
            Poll::Pending
        });
        assert_eq!(woken.get(), 0);
        kept.expect("registered").wake();
        assert_eq!(woken.get(), 1);
    }

    #[test]
    fn a_part_that_always_wakes_yields_to_the_executor() {
        let mut polls = 0;
        let (polled, woken) = turn(|cx| {
            polls += 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        assert!(polled.is_pending());
        assert_eq!(polls, REPOLLS);
        assert_eq!(woken.get(), 1, "woken once, to come back");
    }
}
