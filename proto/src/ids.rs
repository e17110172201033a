//! Randomness supplied by the caller, and the ids minted from it.

/// A source of random bits, supplied by the caller: the engine never draws
/// randomness of its own.
///
/// Ids minted from it are meant to be unguessable (PROTOCOL.md §3.2, §4), so
/// production code should back it with a cryptographically strong generator
/// (the runtime adapters use an OS-seeded one). Tests use [`SeededRandom`].
pub trait RandomSource: Send {
    /// 64 fresh random bits.
    fn next_u64(&mut self) -> u64;
}

impl<F: FnMut() -> u64 + Send> RandomSource for F {
    fn next_u64(&mut self) -> u64 {
        self()
    }
}

/// A deterministic generator (SplitMix64) for tests, fuzzing and replays.
///
/// Not unguessable: never use it where ids must be secret.
#[derive(Clone, Debug)]
pub struct SeededRandom(u64);

impl SeededRandom {
    /// A generator whose sequence is fixed by `seed`.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }
}

impl RandomSource for SeededRandom {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A fresh id: 128 random bits from `rng` as 32 lowercase hex digits. The
/// sessions mint request ids and the registry session ids with it.
pub fn mint_id(rng: &mut dyn RandomSource) -> String {
    format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())
}

/// An id from `mint` that is not `taken`. Only a degenerate source repeats
/// 128 random bits; then a counter suffix makes the candidates distinct, so
/// this ends within one more draw than there are ids taken.
pub(crate) fn fresh(
    rng: &mut dyn RandomSource,
    mint: fn(&mut dyn RandomSource) -> String,
    taken: impl Fn(&str) -> bool,
) -> String {
    let mut id = mint(rng);
    let mut n = 0u64;
    while taken(&id) {
        id = format!("{}-{n}", mint(rng));
        n += 1;
    }
    id
}
