//! A fast multiplicative hash (rustc's FxHash), for tables whose keys the
//! peer cannot choose.
//!
//! A table the peer can insert into keeps std's randomly keyed SipHash: with
//! a known unkeyed hash, the peer could send keys that all collide. A table
//! that holds only keys this side made (ids it minted, ids the application
//! emitted) can be probed by the peer but never filled by it, so its chains
//! stay as random as its keys whatever the peer looks up, and the keyed
//! defence buys nothing there.

use std::hash::{BuildHasher, Hasher};

/// Builds [`Fx`] hashers.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct FxBuild;

/// FxHash: a rotate, an xor and a multiply per eight bytes.
#[derive(Default)]
pub(crate) struct Fx(u64);

impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl BuildHasher for FxBuild {
    type Hasher = Fx;
    fn build_hasher(&self) -> Fx {
        Fx::default()
    }
}
