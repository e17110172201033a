//! The reference model of wirestream: operations on the engine, executors
//! that apply them against a small reference model, an independent reading
//! of PROTOCOL.md that judges every frame (the [`oracle`]), the invariants
//! checked after every step, and the bodies of the cargo-fuzz targets
//! ([`fuzz`]). Test code only: never published, and it sees the engine
//! (`wirestream-proto`) through its public API alone.
//!
//! Each executor ([`run_server`], [`run_client`], [`run_registry`],
//! [`run_pair`]) takes a scenario (limits and a list of operations), applies
//! it on a monotonic fake clock, and panics at the first broken rule. The
//! property tests (`tests/properties.rs`) generate scenarios with proptest;
//! the fuzz targets decode them from bytes with `arbitrary`. Either way the
//! same code runs.
//!
//! Invariants checked after every step of a session run:
//!
//! - every frame transmitted is valid JSON of a PROTOCOL.md shape, as the
//!   [`oracle`] (not the engine's own classifier) reads it from the peer's
//!   side, with exactly the keys that shape has, and is the frame the model
//!   expected, in order;
//! - every inbound frame is classified by the [`oracle`] too, and the model
//!   predicts the engine's reply, events and counters from that;
//! - nothing is transmitted after the close frame;
//! - exactly one session-end event, from the moment the session closes;
//! - every client request and every server request ends exactly once
//!   (its end event, or its one reply on the wire, or its loss with the
//!   peer), and nothing ends that was never sent; a request this side sent
//!   ends with the token it was sent with, a refused one hands its token
//!   back, and its id is 32 fresh lowercase hex digits;
//! - the liveness clocks of PROTOCOL.md §5 as the model keeps them: a
//!   keepalive `Ping` when due (at most one waiting), a silent peer ends the
//!   session at once (`PeerSilent`, closed with no handshake wait, a
//!   best-effort `Close(1008)` the last frame), a queue full too long ends
//!   it (`WriteStalled`, queue freed, nothing transmitted after);
//! - every command whose frame would be over `max_frame_size` is refused
//!   with `TooLarge`, its value handed back and nothing changed;
//! - every queue and map within its limit: requests in flight, emitted ids,
//!   the outbound queue (frames and bytes, with the bounded overshoot of
//!   replies that PROTOCOL.md allows);
//! - `poll_timeout()` is exactly the model's next deadline, and after a
//!   timeout is handled it is `None` or later than `now`;
//! - `wants_input()` is false exactly when the queue is over its limits or
//!   the session is closed; command results match the model's; every frame
//!   dropped or refused is counted in `stats()`.
//!
//! At the end of a run the application finishes, the peer reads and closes
//! and time runs out: the session must be closed with nothing pending, no
//! deadline and nothing queued. The registry executor checks the registry
//! against a map-based model and that it is empty once every connection
//! has ended; the pair executor checks that any interleaving of both sides'
//! operations ends with both closed and nothing pending, and that every
//! frame either engine put on the wire is one the [`oracle`] recognises.
//!
//! The engine's inbound and event API is touched in one module only
//! (`io`): one function feeds a frame to a session of either role, one
//! trait turns each role's events into the model's own values. What both
//! roles share (the liveness clocks, the queue's accounting, the ledger of
//! requests and ends) is written once in `live`, generic over the engine's
//! `Engine` trait.

// The model exists to panic at the first broken invariant.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

mod client;
pub mod fuzz;
mod io;
mod live;
mod ops;
pub mod oracle;
mod pair;
mod registry;
mod server;

pub use client::{ClientEnd, ClientInbound, ClientOp, ClientReport, ClientScenario, run_client};
pub use ops::{Advance, Control, Junk, Limits, Pick, Timeout, padding};
pub use pair::{PairOp, PairReport, PairScenario, run_pair};
pub use registry::{RegistryOp, RegistryScenario, run_registry};
pub use server::{ServerEnd, ServerInbound, ServerOp, ServerReport, ServerScenario, run_server};

use wirestream_proto::Error;

/// A command's error, without its payload, for comparing with the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ErrKind {
    AwaitingBody,
    Finished,
    AlreadyStreaming,
    Closed,
    Full,
    TooManyRequests,
    UnknownRequest,
    TooLarge,
    Serialize,
    /// An error variant this model does not know yet (`Error` is
    /// `#[non_exhaustive]`): never what the model expects.
    Other,
}

fn kind(e: &Error) -> ErrKind {
    match e {
        Error::AwaitingBody => ErrKind::AwaitingBody,
        Error::Finished => ErrKind::Finished,
        Error::AlreadyStreaming => ErrKind::AlreadyStreaming,
        Error::Closed => ErrKind::Closed,
        Error::Full => ErrKind::Full,
        Error::TooManyRequests => ErrKind::TooManyRequests,
        Error::UnknownRequest => ErrKind::UnknownRequest,
        Error::TooLarge => ErrKind::TooLarge,
        Error::Serialize(_) => ErrKind::Serialize,
        _ => ErrKind::Other,
    }
}

/// How a request ended, without its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutcomeKind {
    /// Answered, with this status or code (0 for `ok`).
    Answered(u16),
    TimedOut,
    SessionEnded,
}

/// Panics unless `text` is one valid JSON value.
fn assert_json(text: &str) {
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        panic!("transmitted a frame that is not JSON ({e}): {text}");
    }
}
