//! Graceful shutdown (PROTOCOL.md §5, "shutdown grace"): a cloneable
//! [`Shutdown`] handle that tells [`Server::listen`](crate::Server::listen)
//! to stop accepting, tells running handlers to stop, closes the sessions
//! still open at the grace's end with `Close(1001)`, and says when every
//! session has ended.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use futures_util::FutureExt;
use futures_util::future::Shared;

/// A handle on a [`Server`](crate::Server)'s graceful shutdown; cheap to
/// clone, shared by every clone of the server
/// ([`Server::shutdown_handle`](crate::Server::shutdown_handle)).
///
/// [`begin(grace)`](Self::begin):
///
/// - [`Server::listen`](crate::Server::listen) stops accepting (a
///   connection already accepted finishes its handshake and is served);
/// - every [`Session`](crate::Session) sees
///   [`shutdown_requested`](crate::Session::shutdown_requested) complete:
///   its handler should finish soon (a handler that finishes in time ends
///   its stream normally, `Close(1000)` after its drain);
/// - at the grace's end each session still open is closed with
///   `Close(1001)`: client requests still unanswered are answered `504`,
///   pending server requests fail at once with
///   [`RequestFailed::ShuttingDown`](crate::RequestFailed::ShuttingDown);
/// - `listen` returns `Ok(())` once every session has ended
///   ([`ended`](Self::ended)).
///
/// ```no_run
/// # use std::time::Duration;
/// # use wirestream_runtime::{Listener, Runtime, Server, Session, HandlerResult, only_path};
/// # async fn example<R: Runtime>(server: Server<R>, listener: Listener<R>,
/// #     ctrl_c: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
/// # let handler = |_: serde_json::Value, _: Session| async { HandlerResult::Ok(()) };
/// let shutdown = server.shutdown_handle();
/// server.runtime().spawn(async move {
///     ctrl_c.await;
///     shutdown.begin(Duration::from_secs(5));
/// });
/// // Returns once the shutdown has begun and every session has ended.
/// server.listen(&listener, only_path("/agent/completions"), handler).await
/// # }
/// ```
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

struct Inner {
    /// The server's runtime clock.
    clock: Box<dyn Fn() -> Instant + Send + Sync>,
    /// Fired (or dropped) once, by the first `begin`.
    fire: Mutex<Option<oneshot::Sender<()>>>,
    signal: Shared<oneshot::Receiver<()>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When the grace ends; `Some` once begun.
    deadline: Option<Instant>,
    /// Sessions (and handshakes `listen` started) not yet ended.
    live: usize,
    /// Waiting for `live` to reach zero.
    idle: Vec<Waker>,
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("Shutdown")
            .field("deadline", &state.deadline)
            .field("live", &state.live)
            .finish()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Shutdown {
    /// A handle whose grace is measured on `clock` (the server's runtime's).
    pub(crate) fn new(clock: impl Fn() -> Instant + Send + Sync + 'static) -> Self {
        let (fire, signal) = oneshot::channel();
        Self {
            inner: Arc::new(Inner {
                clock: Box::new(clock),
                fire: Mutex::new(Some(fire)),
                signal: signal.shared(),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Begins the shutdown: stop accepting, tell handlers, and close the
    /// sessions still open `grace` from now with `Close(1001)`. Only the
    /// first call counts; later ones change nothing.
    pub fn begin(&self, grace: Duration) {
        {
            let mut state = self.inner.lock();
            if state.deadline.is_some() {
                return;
            }
            let now = (self.inner.clock)();
            // A grace too long to represent is as good as no deadline soon.
            let far = now + Duration::from_secs(100 * 365 * 24 * 3600);
            state.deadline = Some(now.checked_add(grace).unwrap_or(far));
        }
        let fire = self
            .inner
            .fire
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(fire) = fire {
            let _ = fire.send(());
        }
    }

    /// Whether the shutdown has begun.
    pub fn is_begun(&self) -> bool {
        self.inner.lock().deadline.is_some()
    }

    /// When the grace ends, once the shutdown has begun.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner.lock().deadline
    }

    /// A future that completes once the shutdown has begun.
    pub fn requested(&self) -> ShutdownSignal {
        ShutdownSignal {
            signal: self.inner.signal.clone(),
        }
    }

    /// Sessions not yet ended (those [`Server::serve`](crate::Server::serve)
    /// runs, and connections [`Server::listen`](crate::Server::listen) is
    /// still handshaking).
    pub fn live_sessions(&self) -> usize {
        self.inner.lock().live
    }

    /// Completes once the shutdown has begun and every session has ended.
    pub async fn ended(&self) {
        self.requested().await;
        std::future::poll_fn(|cx| self.poll_idle(cx)).await;
    }

    fn poll_idle(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.inner.lock();
        if state.live == 0 {
            return Poll::Ready(());
        }
        if !state.idle.iter().any(|w| w.will_wake(cx.waker())) {
            state.idle.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Counts one more live session until the guard is dropped.
    pub(crate) fn live(&self) -> Live {
        self.inner.lock().live += 1;
        Live {
            shutdown: self.clone(),
        }
    }
}

/// One live session, counted until dropped.
#[derive(Debug)]
pub(crate) struct Live {
    shutdown: Shutdown,
}

impl Drop for Live {
    fn drop(&mut self) {
        let wake = {
            let mut state = self.shutdown.inner.lock();
            state.live -= 1;
            if state.live == 0 {
                std::mem::take(&mut state.idle)
            } else {
                Vec::new()
            }
        };
        wake.into_iter().for_each(Waker::wake);
    }
}

/// Completes once a [`Shutdown`] has begun; cheap to clone
/// ([`Shutdown::requested`], [`Session::shutdown_requested`](crate::Session::shutdown_requested)).
///
/// A handler that streams until told to stop:
///
/// ```no_run
/// # use wirestream_runtime::{HandlerResult, Session};
/// # use futures_util::future::{Either, select};
/// # async fn handler(_: serde_json::Value, mut session: Session) -> HandlerResult {
/// let mut stop = session.shutdown_requested();
/// for i in 0.. {
///     let chunk = serde_json::json!({"id": "agc-1", "n": i});
///     let mut send = std::pin::pin!(session.send(&chunk, ["agc-1"]));
///     match select(&mut stop, send.as_mut()).await {
///         Either::Left(_) => break,  // finish now: Close(1000)
///         Either::Right((sent, _)) if sent.is_err() => break,
///         Either::Right(_) => {}
///     }
/// }
/// Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use = "futures do nothing unless polled"]
pub struct ShutdownSignal {
    signal: Shared<oneshot::Receiver<()>>,
}

impl fmt::Debug for ShutdownSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownSignal")
            .field("fired", &self.signal.peek().is_some())
            .finish()
    }
}

impl Future for ShutdownSignal {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.signal.poll_unpin(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(()),
            // Every handle is gone without beginning: no shutdown, ever.
            Poll::Ready(Err(_)) | Poll::Pending => Poll::Pending,
        }
    }
}
