//! The one random-number generator tegaki uses: ChaCha8, seeded explicitly.
//!
//! `StdRng` is documented as non-portable across rand versions and platforms;
//! ChaCha8 is a fixed algorithm, so a seed gives the same weights, shuffles,
//! dropout masks and augmentations everywhere. Each purpose (init, shuffle,
//! dropout, augmentation) draws from its own stream of the same seed, so adding
//! draws to one purpose never changes another.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The RNG type every seeded component takes.
pub type SeededRng = ChaCha8Rng;

/// A generator for `seed`, on the default stream.
pub fn seeded(seed: u64) -> SeededRng {
    SeededRng::seed_from_u64(seed)
}

/// A generator for `seed` on a stream named after `purpose` (FNV-1a of the
/// name), so that e.g. `"init"` and `"shuffle"` never share draws.
pub fn stream(seed: u64, purpose: &str) -> SeededRng {
    let mut rng = seeded(seed);
    rng.set_stream(fnv1a(purpose.as_bytes()));
    rng
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The complete state of a [`SeededRng`], for checkpoints: restoring it
/// continues the exact same sequence of draws.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RngState {
    /// The 32-byte key.
    pub seed: [u8; 32],
    /// The stream (nonce).
    pub stream: u64,
    /// Position in the stream, in 32-bit words.
    pub word_pos: u128,
}

impl RngState {
    /// Captures the state of `rng`.
    pub fn capture(rng: &SeededRng) -> Self {
        Self {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos(),
        }
    }

    /// A generator positioned exactly where the captured one was.
    pub fn restore(&self) -> SeededRng {
        let mut rng = SeededRng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos);
        rng
    }

    /// A compact text form (`seedhex:stream:word_pos`) for checkpoint metadata.
    pub fn encode(&self) -> String {
        let hex: String = self.seed.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}:{}:{}", self.stream, self.word_pos)
    }

    /// Parses [`RngState::encode`]'s output; `None` if it is malformed.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(':');
        let hex = parts.next()?;
        let stream = parts.next()?.parse().ok()?;
        let word_pos = parts.next()?.parse().ok()?;
        if parts.next().is_some() || hex.len() != 64 {
            return None;
        }
        let mut seed = [0u8; 32];
        for (i, byte) in seed.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(Self {
            seed,
            stream,
            word_pos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn streams_differ_and_are_reproducible() {
        let a: Vec<u32> = (0..4).map(|_| stream(7, "init").next_u32()).collect();
        let mut r1 = stream(7, "init");
        let mut r2 = stream(7, "shuffle");
        let x: Vec<u32> = (0..4).map(|_| r1.next_u32()).collect();
        let y: Vec<u32> = (0..4).map(|_| r2.next_u32()).collect();
        assert_ne!(x, y);
        assert_eq!(a[0], x[0]);
    }

    #[test]
    fn state_round_trip_continues_sequence() {
        let mut rng = stream(42, "dropout");
        for _ in 0..13 {
            rng.next_u32();
        }
        let state = RngState::decode(&RngState::capture(&rng).encode()).unwrap();
        let mut restored = state.restore();
        for _ in 0..100 {
            assert_eq!(rng.next_u64(), restored.next_u64());
        }
        assert!(RngState::decode("zz:1:2").is_none());
    }
}
