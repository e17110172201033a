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
    let mut id = String::with_capacity(32);
    for word in [rng.next_u64(), rng.next_u64()] {
        // Most significant nibble first, as `{:016x}` writes it.
        for nibble in word
            .to_be_bytes()
            .into_iter()
            .flat_map(|b| [b >> 4, b & 0xf])
        {
            let digit = if nibble < 10 { b'0' } else { b'a' - 10 };
            id.push(char::from(digit + nibble));
        }
    }
    id
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

#[cfg(test)]
mod tests {
    use super::{RandomSource, SeededRandom, mint_id};

    #[test]
    fn minted_ids_are_the_two_words_in_zero_padded_lowercase_hex() {
        let mut rng = SeededRandom::new(7);
        let mut words = SeededRandom::new(7);
        let mut edges = [0, u64::MAX, 0x0123_4567_89ab_cdef, 1].into_iter();
        let mut fixed = move || edges.next().unwrap_or(0);
        let mut fixed_words = [0, u64::MAX, 0x0123_4567_89ab_cdef, 1].into_iter();
        assert_eq!(
            mint_id(&mut fixed),
            format!(
                "{:016x}{:016x}",
                fixed_words.next().unwrap(),
                fixed_words.next().unwrap()
            )
        );
        assert_eq!(mint_id(&mut fixed), "0123456789abcdef0000000000000001");
        for _ in 0..100 {
            let (a, b) = (words.next_u64(), words.next_u64());
            assert_eq!(mint_id(&mut rng), format!("{a:016x}{b:016x}"));
        }
    }
}
