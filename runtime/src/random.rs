//! Randomness from the operating system's CSPRNG for the ids the engine
//! mints.

use std::fmt;

use wirestream_proto::RandomSource;

/// Bytes drawn from the OS at once: 32 draws per system call.
const BLOCK: usize = 256;

/// A [`RandomSource`] for production: bytes from the operating system's
/// CSPRNG (through the `getrandom` crate: `getrandom(2)` on Linux,
/// `SecRandomCopyBytes`/`getentropy` on Apple platforms,
/// `ProcessPrng` on Windows…), drawn a block of 256 bytes at a time so that
/// a session does not make a system call per id. That is what the
/// unguessable ids of PROTOCOL.md §3.2 and §4 need.
///
/// A clone starts with an empty block of its own: two sources never hand
/// out the same bytes.
///
/// # Panics
///
/// A draw panics if the operating system cannot provide randomness (as
/// `std`'s own `RandomState` does): no id may be minted without it.
///
/// ```
/// use wirestream_runtime::OsRandom;
/// use wirestream_runtime::proto::RandomSource;
///
/// let mut rng = OsRandom::new();
/// assert_ne!(rng.next_u64(), rng.next_u64());
/// ```
pub struct OsRandom {
    block: [u8; BLOCK],
    /// Bytes of `block` already handed out.
    used: usize,
}

impl OsRandom {
    /// A generator; it draws its first block on its first use.
    pub fn new() -> Self {
        Self {
            block: [0; BLOCK],
            used: BLOCK,
        }
    }
}

impl Default for OsRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for OsRandom {
    /// A fresh generator: the clone shares none of the drawn bytes.
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl fmt::Debug for OsRandom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bytes not yet handed out are secret.
        f.debug_struct("OsRandom").finish_non_exhaustive()
    }
}

impl RandomSource for OsRandom {
    fn next_u64(&mut self) -> u64 {
        if self.used + 8 > BLOCK {
            if let Err(e) = getrandom::fill(&mut self.block) {
                panic!("the operating system's random number generator failed: {e}");
            }
            self.used = 0;
        }
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&self.block[self.used..self.used + 8]);
        // Handed out once: wipe it.
        self.block[self.used..self.used + 8].fill(0);
        self.used += 8;
        u64::from_ne_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ_and_sources_differ() {
        let mut a = OsRandom::new();
        let mut b = OsRandom::new();
        // Several blocks' worth, across refills.
        let xs: Vec<u64> = (0..(3 * BLOCK / 8 + 5)).map(|_| a.next_u64()).collect();
        let mut sorted = xs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), xs.len());
        assert_ne!(xs[0], b.next_u64());
        let mut c = a.clone();
        assert_ne!(a.next_u64(), c.next_u64());
    }
}
