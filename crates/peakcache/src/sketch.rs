//! A count-min sketch of 4-bit counters that forgets: the frequency history of the admission
//! filter (TinyLFU, Einziger et al., 2017).

/// Four 4-bit counters per key, spread over one table of words holding sixteen counters each;
/// a key's estimate is the least of its four. Every `sample` additions all counters are halved,
/// so the estimate follows recent popularity.
pub(crate) struct Sketch {
    table: Box<[u64]>,
    /// Counters in the table, minus one (a power of two, minus one).
    mask: u64,
    additions: u64,
    sample: u64,
    /// The entry count the table was sized for.
    pub(crate) sized_for: u64,
}

const SEEDS: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0xD6E8_FEB8_6659_FD93,
];

impl Sketch {
    /// A sketch for about `entries` resident entries: `per_entry` counters each, halved every
    /// `sample_per_entry * entries` additions.
    pub(crate) fn new(entries: u64, per_entry: u64, sample_per_entry: u64) -> Self {
        let entries = entries.max(16);
        let counters = (entries * per_entry).next_power_of_two().max(64);
        Sketch {
            table: vec![0; (counters / 16) as usize].into_boxed_slice(),
            mask: counters - 1,
            additions: 0,
            sample: entries * sample_per_entry,
            sized_for: entries,
        }
    }

    fn slots(&self, hash: u64) -> [(usize, u32); 4] {
        SEEDS.map(|seed| {
            let mut x = (hash ^ seed).wrapping_mul(seed | 1);
            x ^= x >> 31;
            let c = x & self.mask;
            ((c >> 4) as usize, ((c & 15) * 4) as u32)
        })
    }

    /// The key's estimated frequency, 0 to 15.
    pub(crate) fn estimate(&self, hash: u64) -> u8 {
        self.slots(hash)
            .iter()
            .map(|&(w, s)| ((self.table[w] >> s) & 15) as u8)
            .min()
            .unwrap_or(0)
    }

    /// Counts `n` more occurrences of the key.
    pub(crate) fn add(&mut self, hash: u64, n: u8) {
        let slots = self.slots(hash);
        let min = self.estimate(hash);
        let target = (min + n).min(15);
        for (w, s) in slots {
            let c = ((self.table[w] >> s) & 15) as u8;
            if c < target {
                self.table[w] = (self.table[w] & !(15 << s)) | (u64::from(target) << s);
            }
        }
        self.additions += u64::from(n);
        if self.additions >= self.sample {
            self.halve();
        }
    }

    fn halve(&mut self) {
        for w in self.table.iter_mut() {
            *w = (*w >> 1) & 0x7777_7777_7777_7777;
        }
        self.additions /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(k: u64) -> u64 {
        k.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn the_sketch_counts_up_to_its_cap_and_never_undercounts() {
        let mut sk = Sketch::new(1_000, 8, 1_000);
        for k in 0..100u64 {
            sk.add(spread(k), (k % 10) as u8);
        }
        for k in 0..100u64 {
            assert!(sk.estimate(spread(k)) >= (k % 10) as u8, "key {k}");
        }
        sk.add(spread(5), 15);
        sk.add(spread(5), 15);
        assert_eq!(sk.estimate(spread(5)), 15);
    }

    #[test]
    fn unseen_keys_mostly_estimate_zero() {
        let mut sk = Sketch::new(1_000, 8, 1_000);
        for k in 0..1_000u64 {
            sk.add(spread(k), 1);
        }
        let zero = (10_000..11_000u64)
            .filter(|&k| sk.estimate(spread(k)) == 0)
            .count();
        assert!(zero > 900, "{zero} of 1,000 unseen keys estimated 0");
    }

    #[test]
    fn every_sample_of_additions_halves_the_counts() {
        let mut sk = Sketch::new(100, 8, 10);
        for _ in 0..8 {
            sk.add(42, 1);
        }
        assert_eq!(sk.estimate(42), 8);
        // 1,000 additions: the sample; then all counts halve.
        for k in 0..992u64 {
            sk.add(spread(k) | 1 << 63, 1);
        }
        assert_eq!(sk.estimate(42), 4);
    }
}
