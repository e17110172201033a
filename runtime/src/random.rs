//! OS-seeded randomness for the ids the engine mints.

use std::hash::{BuildHasher, RandomState};

use wirestream_proto::RandomSource;

/// A [`RandomSource`] for production: SipHash keyed with the OS-random keys
/// of [`std::hash::RandomState`], over a counter. Without the keys, its
/// output cannot be predicted from earlier output, which is what the
/// unguessable ids of PROTOCOL.md §3.2 and §4 need; no `rand` crate involved.
#[derive(Clone, Debug, Default)]
pub struct OsRandom {
    keys: RandomState,
    counter: u64,
}

impl OsRandom {
    /// A generator with fresh keys.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RandomSource for OsRandom {
    fn next_u64(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(1);
        self.keys.hash_one(self.counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_and_sources_differ() {
        let mut a = OsRandom::new();
        let mut b = OsRandom::new();
        let xs: Vec<u64> = (0..64).map(|_| a.next_u64()).collect();
        let mut sorted = xs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), xs.len());
        assert_ne!(xs[0], b.next_u64());
    }
}
