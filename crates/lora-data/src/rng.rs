//! A small seeded random number generator whose whole state is one `u64`, so a trainer can
//! save it in a checkpoint and resume the same sequence of shuffles.

/// SplitMix64 (Steele, Lea and Flood, 2014): fast, well distributed, and its state is a single
/// counter, which makes it trivial to checkpoint.
///
/// ```
/// use lora_data::SeededRng;
///
/// let mut a = SeededRng::new(7);
/// let mut items: Vec<u32> = (0..10).collect();
/// a.shuffle(&mut items);
/// let mut b = SeededRng::new(7);
/// let mut again: Vec<u32> = (0..10).collect();
/// b.shuffle(&mut again);
/// assert_eq!(items, again);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The current state (pass it to [`SeededRng::new`] to continue the same sequence).
    pub fn state(&self) -> u64 {
        self.state
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `0..n` (`n > 0`), by Lemire's multiply-shift (bias below 2⁻³²
    /// for the sizes used here).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }

    /// A seed derived from `seed` and `stream`, for independent sequences (per epoch, per step).
    pub fn derive(seed: u64, stream: u64) -> u64 {
        SeededRng::new(seed ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_splitmix64_reference() {
        // First outputs of SplitMix64 seeded with 0 (reference implementation by Vigna).
        let mut rng = SeededRng::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = SeededRng::new(3);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            seen[rng.below(5)] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
    }

    #[test]
    fn shuffle_is_a_permutation_and_resumable() {
        let mut rng = SeededRng::new(11);
        let mut v: Vec<usize> = (0..100).collect();
        rng.shuffle(&mut v);
        let state = rng.state();
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(v, sorted);
        let mut resumed = SeededRng::new(state);
        assert_eq!(resumed.next_u64(), rng.next_u64());
    }
}
