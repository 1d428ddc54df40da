//! The hash of keys, tags and checksums: a small multiply-mix hash (after wyhash) written here so
//! that every process attaching a region, whatever its build flags, computes the same values.

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x5899_65cc_7537_4cc3;

#[inline]
fn mum(a: u64, b: u64) -> u64 {
    let r = (a as u128).wrapping_mul(b as u128);
    (r as u64) ^ ((r >> 64) as u64)
}

#[inline]
fn read8(b: &[u8]) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[..8]);
    u64::from_le_bytes(x)
}

/// Up to 8 bytes, zero-padded.
#[inline]
fn read_tail(b: &[u8]) -> u64 {
    let mut x = [0u8; 8];
    x[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(x)
}

/// Hashes `bytes` under `seed`.
#[inline]
pub(crate) fn hash(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = seed ^ P0 ^ (bytes.len() as u64).wrapping_mul(P1);
    let mut rest = bytes;
    while rest.len() >= 16 {
        h = mum(read8(rest) ^ P1 ^ h, read8(&rest[8..]) ^ P2);
        rest = &rest[16..];
    }
    let (a, b) = if rest.len() > 8 {
        (read8(rest), read_tail(&rest[8..]))
    } else {
        (read_tail(rest), 0)
    };
    h = mum(a ^ P2 ^ h, b ^ P3);
    mum(h ^ P0, (bytes.len() as u64) ^ P3)
}

/// A streaming variant for checksums over several pieces (not equal to `hash` of the
/// concatenation; only ever compared with itself).
#[derive(Clone, Copy)]
pub(crate) struct Checksum(u64);

impl Checksum {
    pub(crate) fn new() -> Self {
        Checksum(P3)
    }

    pub(crate) fn add(&mut self, bytes: &[u8]) {
        self.0 = hash(self.0, bytes);
    }

    pub(crate) fn finish(self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_seeded() {
        assert_eq!(hash(1, b"abc"), hash(1, b"abc"));
        assert_ne!(hash(1, b"abc"), hash(2, b"abc"));
        assert_ne!(hash(1, b"abc"), hash(1, b"abd"));
        // Every length class differs from its neighbours.
        let data = [7u8; 40];
        let hs: Vec<u64> = (0..40).map(|n| hash(0, &data[..n])).collect();
        for w in hs.windows(2) {
            assert_ne!(w[0], w[1]);
        }
    }
}
