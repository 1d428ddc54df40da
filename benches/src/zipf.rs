//! Zipf-distributed keys for the throughput benchmarks, from a small seeded generator so that
//! every run draws the same sequence.

/// SplitMix64: a tiny, fast, seedable pseudo-random generator (good enough for workloads).
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator started from `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in `[0, 1)`, from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The Zipf distribution over ranks `0..n`: rank `r` is drawn with probability proportional to
/// `1 / (r + 1)^s`. Sampling inverts the cumulative distribution by binary search, so building
/// costs `O(n)` memory and sampling `O(log n)`, which is fine for pre-generated sequences.
#[derive(Clone, Debug)]
pub struct Zipf {
    /// `cdf[r]` = probability of drawing a rank `<= r`; the last element is 1.
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks with exponent `s`.
    ///
    /// # Panics
    /// If `n` is 0 or `s` is negative or not finite.
    pub fn new(n: usize, s: f64) -> Self {
        assert!(n > 0, "Zipf over no ranks");
        assert!(
            s.is_finite() && s >= 0.0,
            "Zipf exponent must be finite and non-negative"
        );
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 1..=n {
            total += (rank as f64).powf(-s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        cdf[n - 1] = 1.0;
        Zipf { cdf }
    }

    /// Number of ranks.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Always false: a distribution has at least one rank.
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// Probability of drawing `rank`.
    pub fn probability(&self, rank: usize) -> f64 {
        self.cdf[rank] - if rank == 0 { 0.0 } else { self.cdf[rank - 1] }
    }

    /// Draws one rank in `0..n`; rank 0 is the most popular.
    pub fn sample(&self, rng: &mut SplitMix64) -> u64 {
        let u = rng.next_f64();
        let rank = self.cdf.partition_point(|&c| c <= u);
        rank.min(self.cdf.len() - 1) as u64
    }
}

/// `count` keys in `0..n` drawn from Zipf(`n`, `s`) with the generator seeded by `seed`.
///
/// The key is the rank itself: key 0 is the hottest. The caches hash keys, so hot keys being
/// numerically adjacent does not cluster them.
pub fn keys(n: usize, s: f64, count: usize, seed: u64) -> Vec<u64> {
    let zipf = Zipf::new(n, s);
    let mut rng = SplitMix64::new(seed);
    (0..count).map(|_| zipf.sample(&mut rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_floats_stay_in_range() {
        let mut rng = SplitMix64::new(7);
        let mut sum = 0.0;
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
            sum += x;
        }
        assert!((sum / 10_000.0 - 0.5).abs() < 0.02);
    }

    #[test]
    fn probabilities_follow_the_harmonic_law() {
        let z = Zipf::new(1000, 1.0);
        let harmonic: f64 = (1..=1000).map(|k| 1.0 / k as f64).sum();
        assert!((z.probability(0) - 1.0 / harmonic).abs() < 1e-12);
        assert!((z.probability(9) - 0.1 / harmonic).abs() < 1e-12);
        assert!((z.probability(0) / z.probability(1) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn sampled_frequencies_match_probabilities() {
        let n = 100;
        let z = Zipf::new(n, 1.0);
        let draws = 200_000;
        let mut counts = vec![0u32; n];
        for k in keys(n, 1.0, draws, 42) {
            counts[k as usize] += 1;
        }
        for rank in [0, 1, 4, 49, 99] {
            let expected = z.probability(rank) * draws as f64;
            let got = f64::from(counts[rank]);
            // within 5 standard deviations of the binomial count
            assert!(
                (got - expected).abs() < 5.0 * expected.sqrt() + 1.0,
                "rank {rank}: {got} vs {expected}"
            );
        }
    }

    #[test]
    fn same_seed_same_keys_all_in_range() {
        let a = keys(1000, 1.0, 5000, 1);
        assert_eq!(a, keys(1000, 1.0, 5000, 1));
        assert_ne!(a, keys(1000, 1.0, 5000, 2));
        assert!(a.iter().all(|&k| k < 1000));
    }

    #[test]
    fn exponent_zero_is_uniform() {
        let z = Zipf::new(4, 0.0);
        for r in 0..4 {
            assert!((z.probability(r) - 0.25).abs() < 1e-12);
        }
    }
}
