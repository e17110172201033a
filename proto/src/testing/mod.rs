//! Test support (feature `testing`).
//!
//! - [`Pair`]: a client session and a server session back to back in memory,
//!   on a fake clock.
//!
//! The reference model, the property tests and the fuzz target bodies live
//! in the unpublished `wirestream-model` crate (`model/`), which drives the
//! engine through its public API only.

mod pair;

pub use pair::{Crossed, Pair, Side, Stalled};
