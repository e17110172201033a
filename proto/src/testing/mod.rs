//! Test support (feature `testing`): [`Pair`], a client session and a
//! server session back to back in memory, on a fake clock.

mod pair;

pub use pair::{Crossed, Pair, Side, Stalled};
