//! The driver loop, written once for both roles and every runtime.
//!
//! One task owns the socket, the engine, one timer and the application's
//! command channels. Each turn it transmits what the engine queued, hands
//! the engine's events to the application, re-arms the timer from
//! `poll_timeout` when it changed (checking the clock first), then feeds
//! exactly one input: an inbound message, the timer, or a command. It keeps
//! reading while the application is idle, so tungstenite answers pings and
//! close frames, and stops reading while the engine says it
//! [wants no input](wirestream_proto::Engine::wants_input).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::error::ProtocolError;
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use futures_util::io::{AsyncRead, AsyncWrite};
use futures_util::{Sink, Stream};
use wirestream_proto::{CloseCode, EndReason, Engine, Inbound, Stats};

use crate::local_wake::LocalWake;
use crate::rt::Runtime;
use crate::socket::{Direction, Tap, close_code, to_message};
use crate::telemetry::{self, Open, Role, Traffic};

/// Inputs fed in one poll before the driver yields to its executor, so a
/// peer that never pauses cannot starve the other tasks of its thread.
const BUDGET: u32 = 128;

/// The application's half of a connection: where events go and where
/// commands come from. The server and client roles implement it (not to be
/// confused with `wirestream_proto::testing::Side`, which names a role).
///
/// The driver reads the clock; `now` is the time of the input at hand.
pub(crate) trait Application {
    /// The session: it takes tungstenite's text frames as they are.
    type Engine: Engine<Text = Utf8Bytes>;
    /// What the application asks of the engine.
    type Command;

    /// Which side of the connection this is (for logs and metrics).
    const ROLE: Role;

    /// Hands one event to the application. An event it cannot take now is
    /// handed back; the driver then reads nothing more and delivers nothing
    /// else until [`poll_deliver`](Self::poll_deliver) is ready.
    fn deliver(
        &mut self,
        engine: &mut Self::Engine,
        event: <Self::Engine as Engine>::Event,
        now: Instant,
    ) -> Result<(), <Self::Engine as Engine>::Event>;

    /// Ready when a handed-back event can be delivered again (or the
    /// application has gone, which [`deliver`](Self::deliver) then finds).
    fn poll_deliver(&mut self, cx: &mut Context<'_>) -> Poll<()>;

    /// The application's next command: `Pending` (wakers registered) when
    /// none is waiting.
    fn poll_command(&mut self, cx: &mut Context<'_>) -> Poll<Self::Command>;

    /// Applies a command to the engine.
    fn apply(&mut self, engine: &mut Self::Engine, command: Self::Command, now: Instant);
}

/// The close code a read error of tungstenite calls for (RFC 6455 §7.4.1),
/// if the peer broke the WebSocket protocol: `1002` for a malformed frame
/// (an unmasked client frame, a reserved opcode or RSV bit, a control frame
/// over 125 bytes or fragmented, a stray continuation, a close frame of one
/// byte), `1007` for text or a close reason that is not UTF-8. `None` for
/// the transport's own end (a reset, an I/O error), where nothing can be
/// sent.
fn violation(error: &WsError) -> Option<CloseCode> {
    match error {
        WsError::Utf8(_) => Some(CloseCode::INVALID_PAYLOAD),
        WsError::Protocol(
            ProtocolError::ResetWithoutClosingHandshake
            | ProtocolError::ReceivedAfterClosing
            | ProtocolError::SendAfterClosing,
        ) => None,
        WsError::Protocol(_) => Some(CloseCode::PROTOCOL),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reading {
    Open,
    /// tungstenite refused an oversize message or a frame that breaks the
    /// protocol, and fused its stream; the socket still writes, so the
    /// engine's answer and close go out first.
    Fused,
    Done,
}

/// One connection: socket, engine, timer and the application half.
pub(crate) struct Driver<R: Runtime, S, A: Application> {
    // Dropped in this order: the application half (which leaves the
    // registry) before the socket, so that once the peer sees the
    // connection close, the registry no longer lists it.
    app: A,
    engine: A::Engine,
    ws: WebSocketStream<S>,
    rt: R,
    tap: Option<Tap>,
    /// A frame taken from the engine that the socket has not accepted yet.
    out: Option<Message>,
    unflushed: bool,
    reading: Reading,
    parked: Option<<A::Engine as Engine>::Event>,
    armed: Option<Instant>,
    sleep: Option<Pin<Box<R::Sleep>>>,
    /// When the input at hand came (the clock is read once per input).
    now: Instant,
    /// The armed sleep was polled (and is pending) in this poll of the task.
    sleep_polled: bool,
    /// This turn of the task fed [`BUDGET`] inputs: it yields to the
    /// executor.
    exhausted: bool,
    /// Alternates which input is tried first, for fairness.
    socket_first: bool,
    /// The socket had nothing to read earlier in this poll; its waker is
    /// registered, so it is not asked again until the task is woken.
    read_idle: bool,
    end: Option<EndReason>,
    /// The input at hand is the engine's deadline; `ended_by_timer`: the end
    /// came from one (to tell which timeout ended the session).
    by_timer: bool,
    ended_by_timer: bool,
    traffic: Traffic,
}

impl<R, S, A> Driver<R, S, A>
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin,
    A: Application,
{
    pub(crate) fn new(
        rt: R,
        ws: WebSocketStream<S>,
        engine: A::Engine,
        app: A,
        tap: Option<Tap>,
    ) -> Self {
        Self {
            now: rt.now(),
            rt,
            ws,
            engine,
            app,
            tap,
            out: None,
            unflushed: false,
            reading: Reading::Open,
            parked: None,
            armed: None,
            sleep: None,
            socket_first: true,
            exhausted: false,
            sleep_polled: false,
            read_idle: false,
            end: None,
            by_timer: false,
            ended_by_timer: false,
            traffic: Traffic::default(),
        }
    }

    /// Runs the connection to its end and returns how it ended, with the
    /// engine's counters.
    ///
    /// Not an `async fn`: one keeps its argument in its future beside the
    /// binding the body moves it into, so the driver (2 KiB) was held twice
    /// by every connection's task. The future returned holds it once.
    // `Open` is `Drop` only with the feature `metrics`.
    #[allow(clippy::drop_non_drop)]
    pub(crate) fn run(mut self) -> impl Future<Output = (EndReason, Stats)> {
        let mut open = Some(Open::new(A::ROLE));
        let local = std::sync::Arc::new(LocalWake::default());
        let waker = LocalWake::waker(&local);
        poll_fn(move |cx| {
            self.exhausted = false;
            let polled = local.poll(cx, &waker, |cx| {
                if self.exhausted {
                    return Poll::Pending;
                }
                self.poll_drive(cx)
            });
            if self.exhausted {
                // Out of budget: back in the executor's queue, behind the
                // tasks that were waiting.
                cx.waker().wake_by_ref();
            }
            self.traffic.flush(A::ROLE);
            if polled.is_pending() {
                return Poll::Pending;
            }
            drop(open.take());
            // A session always reports its end; this is only a fallback.
            let end = self.end.unwrap_or(EndReason::TransportLost);
            let stats = self.engine.stats();
            let timeout = telemetry::timeout_of(A::ROLE, end, self.ended_by_timer);
            telemetry::ended(A::ROLE, end, &stats, timeout);
            Poll::Ready((end, stats))
        })
    }

    fn poll_drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut budget = BUDGET;
        self.read_idle = false;
        self.sleep_polled = false;
        // A deadline that has come is fed before anything is written: the
        // write stall is judged on what the transport took before it, not
        // on what it takes now that the timer has woken the task (a reactor
        // may not report a socket that became writable without the peer
        // reading, as smol's did on loopback).
        self.by_timer = false;
        self.timer(cx);
        loop {
            // Drain the engine: events may queue frames, sending frames may
            // raise events (`Writable`); stop when neither moves.
            while self.deliver(cx) | self.transmit(cx) {}
            if self.reading == Reading::Fused && self.out.is_none() && {
                self.flush(cx);
                !self.unflushed
            } {
                // Everything the engine wanted to say is written; the peer's
                // reply can no longer be read.
                self.reading = Reading::Done;
                let now = self.clock();
                self.engine.handle_transport_lost(now);
                continue;
            }
            if self.engine.is_closed() && self.parked.is_none() {
                // Flush a close echo tungstenite may have queued; a peer
                // that does not read gets no more of our time.
                let _ = Pin::new(&mut self.ws).poll_flush(cx);
                return Poll::Ready(());
            }
            let inputs: [fn(&mut Self, &mut Context<'_>) -> bool; 2] = if self.socket_first {
                [Self::read, Self::command]
            } else {
                [Self::command, Self::read]
            };
            self.by_timer = false;
            let fed = self.timer(cx) || inputs.iter().any(|input| input(self, cx));
            if !fed {
                // Idle: write out what this poll produced, in one go, before
                // waiting.
                if self.flush(cx) {
                    continue;
                }
                return Poll::Pending;
            }
            self.socket_first = !self.socket_first;
            budget -= 1;
            if budget == 0 {
                self.flush(cx);
                self.exhausted = true;
                return Poll::Pending;
            }
        }
    }

    /// Hands the engine's events to the application; true if any moved.
    fn deliver(&mut self, cx: &mut Context<'_>) -> bool {
        let mut moved = false;
        if self.parked.is_some() {
            if self.app.poll_deliver(cx).is_pending() {
                return false;
            }
            if let Some(event) = self.parked.take() {
                moved = true;
                let now = self.clock();
                if let Err(event) = self.app.deliver(&mut self.engine, event, now) {
                    self.parked = Some(event);
                    return moved;
                }
            }
        }
        while let Some(event) = self.engine.poll_event() {
            moved = true;
            if let Some(reason) = A::Engine::end_of(&event) {
                self.ended_by_timer |= self.by_timer && self.end.is_none();
                self.end.get_or_insert(reason);
            }
            if let Err(event) = self.app.deliver(&mut self.engine, event, self.now) {
                // The next round polls `poll_deliver`, which registers the
                // wake-up for when it can go.
                self.parked = Some(event);
                break;
            }
        }
        moved
    }

    /// Moves queued frames into the socket (tungstenite writes once its
    /// buffer passes `write_buffer_size`; the rest is flushed when the
    /// driver goes idle); true if the engine gave up any frame.
    fn transmit(&mut self, cx: &mut Context<'_>) -> bool {
        let mut popped = false;
        loop {
            if self.out.is_none() {
                let Some(frame) = self.engine.poll_transmit() else {
                    break;
                };
                popped = true;
                let message = to_message(frame);
                self.traffic.outbound(A::ROLE, &message);
                if let Some(tap) = &self.tap {
                    tap(Direction::Out, &message);
                }
                self.out = Some(message);
            }
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Pending => break,
                Poll::Ready(Err(e)) => {
                    self.write_failed(&e);
                    break;
                }
                Poll::Ready(Ok(())) => {
                    if let Some(message) = self.out.take() {
                        if let Err(e) = Pin::new(&mut self.ws).start_send(message) {
                            self.write_failed(&e);
                            break;
                        }
                        self.unflushed = true;
                    }
                }
            }
        }
        popped
    }

    /// Flushes what the socket accepted; true if that changed the session
    /// (a write failed), so the caller goes round again.
    fn flush(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.unflushed {
            return false;
        }
        match Pin::new(&mut self.ws).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                self.unflushed = false;
                false
            }
            Poll::Ready(Err(e)) => {
                self.write_failed(&e);
                true
            }
            Poll::Pending => false,
        }
    }

    fn write_failed(&mut self, _error: &WsError) {
        self.out = None;
        self.unflushed = false;
        self.reading = Reading::Done;
        let now = self.clock();
        self.engine.handle_transport_lost(now);
    }

    /// Feeds the engine's deadline if it has come; true if the engine was
    /// fed.
    ///
    /// The one timer is re-armed only when the deadline moves earlier than
    /// the instant it is armed for, and the clock is checked right before
    /// (re-)arming and when the timer fires. A later deadline (the next
    /// request's, say) keeps the armed timer, which then fires early and is
    /// re-armed; so a stream of requests costs neither timers nor clock
    /// reads, and `handle_timeout` is only called once the deadline has come.
    fn timer(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let Some(deadline) = self.engine.poll_timeout() else {
                return false;
            };
            let covered = self.armed.is_some_and(|armed| armed <= deadline);
            if !covered {
                let now = self.clock();
                if now >= deadline {
                    self.by_timer = true;
                    self.engine.handle_timeout(now);
                    return true;
                }
                self.armed = Some(deadline);
                self.sleep = Some(Box::pin(self.rt.sleep_until(deadline)));
                self.sleep_polled = false;
            }
            let Some(sleep) = &mut self.sleep else {
                return false;
            };
            // Polled once per poll of the task: it holds the task's one
            // waker from then on, and wakes it when it fires.
            if self.sleep_polled {
                return false;
            }
            if sleep.as_mut().poll(cx).is_pending() {
                self.sleep_polled = true;
                return false;
            }
            // Fired: for this deadline (fed on the next round), or early
            // for a later one (re-armed).
            self.armed = None;
            self.sleep = None;
        }
    }

    /// Feeds one inbound message, if the engine wants one and one is there.
    fn read(&mut self, cx: &mut Context<'_>) -> bool {
        if self.reading != Reading::Open
            || self.read_idle
            || self.parked.is_some()
            || !self.engine.wants_input()
        {
            return false;
        }
        let polled = Pin::new(&mut self.ws).poll_next(cx);
        let Poll::Ready(item) = polled else {
            self.read_idle = true;
            return false;
        };
        let now = self.clock();
        match item {
            Some(Ok(message)) => {
                self.traffic.inbound(A::ROLE, &message);
                if let Some(tap) = &self.tap {
                    tap(Direction::In, &message);
                }
                let frame = match message {
                    // The engine takes the frame's buffer as it is.
                    Message::Text(text) => Inbound::Text(text),
                    Message::Binary(_) => Inbound::Binary,
                    Message::Ping(_) => Inbound::Ping,
                    Message::Pong(_) => Inbound::Pong,
                    Message::Close(frame) => Inbound::Close(close_code(frame.as_ref())),
                    // tungstenite never reads raw frames.
                    Message::Frame(_) => return true,
                };
                self.engine.handle_frame(now, frame);
                if A::ROLE == Role::Client {
                    let refused = self.engine.stats().refused_requests;
                    self.traffic.engine_refusals(A::ROLE, refused);
                }
            }
            Some(Err(WsError::Capacity(_))) => {
                self.reading = Reading::Fused;
                telemetry::refused(A::ROLE, 413, "oversize frame");
                self.engine.handle_frame(now, Inbound::Oversize);
            }
            Some(Err(e)) => match violation(&e) {
                Some(code) => {
                    // tungstenite has fused its stream, but still writes:
                    // the engine's close goes out, then the session ends.
                    self.reading = Reading::Fused;
                    tracing::debug!(role = A::ROLE.as_str(), code = code.0, error = %e, "protocol violation");
                    self.engine.handle_frame(now, Inbound::ProtocolError(code));
                }
                None => {
                    self.reading = Reading::Done;
                    self.engine.handle_transport_lost(now);
                }
            },
            None => {
                self.reading = Reading::Done;
                self.engine.handle_transport_lost(now);
            }
        }
        if self.engine.is_closed() {
            // Nothing more may be sent; tungstenite's own close echo is
            // flushed on the way out.
            self.out = None;
        }
        true
    }

    /// Feeds one command of the application, if one is waiting.
    fn command(&mut self, cx: &mut Context<'_>) -> bool {
        let Poll::Ready(command) = self.app.poll_command(cx) else {
            return false;
        };
        let now = self.clock();
        self.app.apply(&mut self.engine, command, now);
        true
    }

    /// Reads the clock for the input at hand; events that input raises are
    /// delivered with the same time.
    fn clock(&mut self) -> Instant {
        self.now = self.rt.now();
        self.now
    }
}
