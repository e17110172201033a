//! The bounded memory of agent-completion ids a session has emitted
//! (PROTOCOL.md §3.1, §5: oldest forgotten first).

use std::collections::VecDeque;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use crate::fx::FxBuild;

/// A set of ids with FIFO eviction, storing each id once: the table holds
/// sequence numbers that index the ring.
#[derive(Debug)]
pub(crate) struct EmittedIds {
    /// Oldest first; `ring[i]` has sequence number `base + i`.
    ring: VecDeque<Box<str>>,
    index: HashTable<u64>,
    base: u64,
    cap: usize,
    /// The peer can look ids up but never insert one, so it cannot build
    /// collision chains: a fast unkeyed hash is enough (see [`FxBuild`]).
    hasher: FxBuild,
    forgotten: u64,
}

impl EmittedIds {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            ring: VecDeque::new(),
            index: HashTable::new(),
            base: 0,
            cap: cap.max(1),
            hasher: FxBuild,
            forgotten: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    /// How many ids were evicted to stay within the cap.
    pub(crate) fn forgotten(&self) -> u64 {
        self.forgotten
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        let hash = self.hasher.hash_one(id);
        self.index
            .find(hash, |&seq| self.at(seq).is_some_and(|s| s == id))
            .is_some()
    }

    fn at(&self, seq: u64) -> Option<&str> {
        let i = usize::try_from(seq.wrapping_sub(self.base)).ok()?;
        self.ring.get(i).map(|s| &**s)
    }

    /// Remembers `id` unless it is already known (chunks of one completion
    /// all carry its id); evicts the oldest at the cap.
    pub(crate) fn insert(&mut self, id: &str) {
        if self.contains(id) {
            return;
        }
        if self.ring.len() >= self.cap {
            self.evict_oldest();
        }
        let seq = self.base.wrapping_add(self.ring.len() as u64);
        self.ring.push_back(id.into());
        let Self {
            ring,
            index,
            base,
            hasher,
            ..
        } = self;
        let hash = hasher.hash_one(id);
        index.insert_unique(hash, seq, |&s| {
            let i = usize::try_from(s.wrapping_sub(*base)).unwrap_or(usize::MAX);
            hasher.hash_one(ring.get(i).map_or("", |s| &**s))
        });
    }

    fn evict_oldest(&mut self) {
        let Some(old) = self.ring.pop_front() else {
            return;
        };
        let hash = self.hasher.hash_one(&*old);
        let base = self.base;
        if let Ok(entry) = self.index.find_entry(hash, |&seq| seq == base) {
            entry.remove();
        }
        self.base = self.base.wrapping_add(1);
        self.forgotten += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::EmittedIds;

    #[test]
    fn emitted_ids_forget_oldest_first_at_the_cap() {
        let mut ids = EmittedIds::new(3);
        for id in ["a", "b", "c", "a", "d"] {
            ids.insert(id);
        }
        assert!(!ids.contains("a"));
        assert!(ids.contains("b") && ids.contains("c") && ids.contains("d"));
        assert_eq!((ids.len(), ids.forgotten()), (3, 1));
        for i in 0..10_000 {
            ids.insert(&i.to_string());
        }
        assert_eq!(ids.len(), 3);
        assert!(ids.contains("9999") && ids.contains("9997") && !ids.contains("9996"));
    }
}
