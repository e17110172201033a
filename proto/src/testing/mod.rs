//! Test support (feature `testing`).
//!
//! - [`Pair`]: a client session and a server session back to back in memory,
//!   on a fake clock.
//! - [`model`]: operations on a session (inbound frames of every kind, time,
//!   every application command, the transport's end), executors that apply
//!   them on a monotonic fake clock against a small reference model, and the
//!   invariants checked after every step. The property tests (proptest) and
//!   the fuzz targets (cargo-fuzz) both drive the engine through it.
//! - [`fuzz`] (feature `arbitrary`): the bodies of the fuzz targets, so that
//!   an ordinary `cargo test` can replay the committed corpus on stable.

#[cfg(feature = "arbitrary")]
pub mod fuzz;
pub mod model;
mod pair;

pub use pair::{Crossed, Pair, Side, Stalled};
