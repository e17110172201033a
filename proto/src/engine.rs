//! The drive contract: what a driver (the runtime's loop, the pair harness,
//! a fuzz target) calls on a session of either role.

use std::time::Instant;

use crate::frame::{EndReason, Inbound, Transmit};
use crate::stats::Stats;

/// A session as its driver sees it, whichever its role: feed it what
/// arrives, then drain what it produced.
///
/// The rule of every method group: **after any `handle_*` or command,
/// drain the polls**: send every frame [`poll_transmit`](Self::poll_transmit)
/// yields, in order; take every event; then arm one timer at
/// [`poll_timeout`](Self::poll_timeout) and call
/// [`handle_timeout`](Self::handle_timeout) when it fires. Stop feeding
/// frames while [`wants_input`](Self::wants_input) is false; drop the
/// transport once [`is_closed`](Self::is_closed) and nothing is left to send.
///
/// [`ServerSession`](crate::ServerSession) and
/// [`ClientSession`](crate::ClientSession) implement it; the commands of
/// each role are inherent methods.
pub trait Engine {
    /// The owned text of an inbound text frame (`String`, tungstenite's
    /// `Utf8Bytes`, …): taken by value, never copied.
    type Text: AsRef<str>;
    /// What the session tells its application.
    type Event;

    /// Feeds one inbound WebSocket message.
    fn handle_frame(&mut self, now: Instant, frame: Inbound<Self::Text>);

    /// Feeds the passing of time: call it when the instant
    /// [`poll_timeout`](Self::poll_timeout) returned has come. Early or
    /// repeated calls do nothing.
    fn handle_timeout(&mut self, now: Instant);

    /// Feeds the end of the transport (EOF or an I/O error) without a close
    /// frame: the session ends at once, its pending requests with it.
    fn handle_transport_lost(&mut self, now: Instant);

    /// The next frame to send, in order. The close frame is the last ever.
    #[must_use]
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// The next event for the application.
    #[must_use]
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// When [`handle_timeout`](Self::handle_timeout) should next be called;
    /// `None` when nothing is timed. After a timeout is handled and the
    /// polls drained, it is `None` or later than that timeout's `now`.
    #[must_use]
    fn poll_timeout(&self) -> Option<Instant>;

    /// Whether the driver should read the next inbound frame: false while
    /// the outbound queue is over its limits (so replies to a peer that
    /// does not read cannot pile up) and once the session is closed.
    fn wants_input(&self) -> bool;

    /// Whether the session is over and the transport can be dropped (after
    /// sending what [`poll_transmit`](Self::poll_transmit) still yields).
    fn is_closed(&self) -> bool;

    /// Counters of dropped, refused and sent or received frames.
    fn stats(&self) -> Stats;

    /// The end of the session, if `event` is the one event that reports it.
    fn end_of(event: &Self::Event) -> Option<EndReason>;
}
