//! Keys as the store keeps them: up to 15 bytes inline in the node, longer ones on the heap.
//!
//! A lookup compares the probed node's key with the caller's. With the key on the heap that is
//! a second cache miss after the node's; short keys (ids, hashes, small paths) avoid it. The
//! type is 16 bytes, the size of a `Box<[u8]>`, so long keys cost nothing more.

use std::hash::{BuildHasher, Hasher};
use std::ptr::NonNull;

/// The cache's hash of keys, seeded. A key short enough to be stored inline is hashed from the
/// two words a [`Probe`] makes of it, with one folded multiply (128-bit product, halves xored:
/// the short-input hash of foldhash and wyhash); the words hold the key's length, so keys that
/// differ only by trailing zeros differ. A longer key goes through ahash, its bytes alone
/// (without the length prefix `Hash for [u8]` adds: a key is never hashed together with
/// anything else, so prefix-freedom buys nothing).
#[derive(Clone)]
pub(crate) struct KeyHasher {
    long: ahash::RandomState,
    seeds: [u64; 2],
}

impl KeyHasher {
    /// A hasher seeded from `seed`, or at random.
    pub(crate) fn new(seed: Option<u64>) -> Self {
        let long = match seed {
            Some(seed) => ahash::RandomState::with_seeds(
                seed,
                seed ^ 0x9e37_79b9_7f4a_7c15,
                0x243f_6a88,
                0x85a3_08d3,
            ),
            None => ahash::RandomState::new(),
        };
        // Two secret words for short keys, drawn from the long keys' hasher (random or seeded).
        let seeds = [long.hash_one(0x5eed_u64), long.hash_one(0xfeed_u64)];
        KeyHasher { long, seeds }
    }

    /// The hash of the key `probe` was made of.
    #[inline]
    pub(crate) fn hash(&self, probe: &Probe<'_>) -> u64 {
        match probe.image {
            Some([lo, hi]) => {
                let p = u128::from(lo ^ self.seeds[0]) * u128::from(hi ^ self.seeds[1]);
                (p as u64) ^ ((p >> 64) as u64)
            }
            None => {
                let mut h = self.long.build_hasher();
                h.write(probe.key);
                h.finish()
            }
        }
    }

    /// The hash of `key`.
    #[inline]
    pub(crate) fn hash_key(&self, key: &[u8]) -> u64 {
        self.hash(&Probe::new(key))
    }
}

/// Longest key kept inline.
const INLINE: usize = 15;

/// Where a key's bytes are: on the heap, or inline with this many bytes. Its unused values give
/// `Option<Node>` a niche, so a slab slot costs no discriminant.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[rustfmt::skip]
enum Tag {
    Heap = 0,
    I0 = 0x80, I1, I2, I3, I4, I5, I6, I7, I8, I9, I10, I11, I12, I13, I14, I15,
}

const INLINE_TAGS: [Tag; INLINE + 1] = [
    Tag::I0,
    Tag::I1,
    Tag::I2,
    Tag::I3,
    Tag::I4,
    Tag::I5,
    Tag::I6,
    Tag::I7,
    Tag::I8,
    Tag::I9,
    Tag::I10,
    Tag::I11,
    Tag::I12,
    Tag::I13,
    Tag::I14,
    Tag::I15,
];

/// A key's bytes, owned. Aligned so that it reads as two words: an inline key's are its
/// bytes, zero-padded, and its tag, the same for equal keys (see [`Probe`]).
#[repr(C, align(8))]
pub(crate) struct KeyBytes {
    /// Inline: the key's bytes. Heap: the pointer of a leaked `Box<[u8]>` (bytes 0..8) and its
    /// length (bytes 8..15, little-endian).
    raw: [u8; 15],
    tag: Tag,
}

// SAFETY: a KeyBytes owns its heap bytes exclusively (like Box<[u8]>), and never mutates them.
unsafe impl Send for KeyBytes {}
// SAFETY: shared access only reads.
unsafe impl Sync for KeyBytes {}

impl KeyBytes {
    pub(crate) fn new(key: &[u8]) -> Self {
        let mut raw = [0u8; 15];
        if key.len() <= INLINE {
            raw[..key.len()].copy_from_slice(key);
            return KeyBytes {
                raw,
                tag: INLINE_TAGS[key.len()],
            };
        }
        let boxed: Box<[u8]> = key.into();
        let len = boxed.len() as u64;
        assert!(len < 1 << 56, "key lengths stay below 2^56");
        let ptr = Box::into_raw(boxed) as *mut u8 as usize;
        raw[..8].copy_from_slice(&(ptr as u64).to_le_bytes());
        raw[8..].copy_from_slice(&len.to_le_bytes()[..7]);
        KeyBytes {
            raw,
            tag: Tag::Heap,
        }
    }

    #[inline]
    fn heap(&self) -> Option<(NonNull<u8>, usize)> {
        if self.tag != Tag::Heap {
            return None;
        }
        let ptr = u64::from_le_bytes(self.raw[..8].try_into().expect("8 bytes")) as usize;
        let mut len = [0u8; 8];
        len[..7].copy_from_slice(&self.raw[8..]);
        let len = u64::from_le_bytes(len) as usize;
        Some((
            NonNull::new(ptr as *mut u8).expect("heap keys have a pointer"),
            len,
        ))
    }

    /// The key as two words: bytes 0..8 and 8..16 of its representation.
    #[inline]
    fn words(&self) -> [u64; 2] {
        // SAFETY: the type is 16 bytes, aligned to 8, every byte initialised (`raw` and `tag`
        // cover it without padding): reading it as two `u64` reads initialised memory.
        unsafe { *(self as *const KeyBytes).cast::<[u64; 2]>() }
    }

    /// Whether this is the key `p` was made of.
    #[inline]
    pub(crate) fn matches(&self, p: &Probe<'_>) -> bool {
        match p.image {
            Some(image) => self.words() == image,
            None => self.tag == Tag::Heap && self.as_slice() == p.key,
        }
    }

    /// The key's bytes.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self.heap() {
            None => &self.raw[..(self.tag as u8 - Tag::I0 as u8) as usize],
            // SAFETY: ptr and len come from a Box<[u8]> this value owns and frees only on drop.
            Some((ptr, len)) => unsafe { std::slice::from_raw_parts(ptr.as_ptr(), len) },
        }
    }
}

/// A key looked up, prepared once for comparison with the stored keys a lookup probes: a key
/// short enough to be stored inline is compared as the two words it would be stored as.
pub(crate) struct Probe<'a> {
    key: &'a [u8],
    image: Option<[u64; 2]>,
}

impl<'a> Probe<'a> {
    #[inline]
    pub(crate) fn new(key: &'a [u8]) -> Self {
        Probe {
            key,
            image: inline_image(key),
        }
    }
}

/// The two words an inline `KeyBytes` of `key` reads as, or `None` if `key` is stored on the
/// heap. Built from whole-word reads of the key (overlapping when it is shorter than a word
/// pair), with no copy loop: it is on every lookup.
#[inline]
fn inline_image(key: &[u8]) -> Option<[u64; 2]> {
    let len = key.len();
    let tag = u64::from(*INLINE_TAGS.get(len)? as u8) << 56;
    let word = |at: usize| u64::from_le_bytes(key[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| {
        u64::from(u32::from_le_bytes(
            key[at..at + 4].try_into().expect("4 bytes"),
        ))
    };
    let (lo, hi) = match len {
        8..=INLINE => {
            // The last 8 bytes, shifted down so that byte 8 of the key is byte 0 of `hi`.
            let hi = (word(len - 8) >> 8) >> (8 * (15 - len));
            (word(0), hi)
        }
        4..=7 => (half(0) | half(len - 4) << (8 * (len - 4)), 0),
        _ => (
            key.iter().rev().fold(0, |acc, &b| acc << 8 | u64::from(b)),
            0,
        ),
    };
    Some([lo, hi | tag])
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        if let Some((ptr, len)) = self.heap() {
            let slice = std::ptr::slice_from_raw_parts_mut(ptr.as_ptr(), len);
            // SAFETY: reconstructs the Box<[u8]> leaked in `new`, exactly once.
            drop(unsafe { Box::from_raw(slice) });
        }
    }
}

impl std::ops::Deref for KeyBytes {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<&[u8]> for KeyBytes {
    fn from(key: &[u8]) -> Self {
        KeyBytes::new(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_length_round_trip() {
        for len in 0..64 {
            let key: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37) | 0x80).collect();
            let k = KeyBytes::new(&key);
            assert_eq!(k.as_slice(), &key[..], "length {len}");
        }
        assert_eq!(std::mem::size_of::<KeyBytes>(), 16);
        assert_eq!(std::mem::size_of::<Option<KeyBytes>>(), 16);
    }

    #[test]
    fn a_probe_matches_exactly_the_key_it_was_made_of() {
        let keys: Vec<Vec<u8>> = (0..40)
            .map(|len| (0..len as u8).map(|b| b.wrapping_mul(151) ^ 0x5a).collect())
            .collect();
        for (i, a) in keys.iter().enumerate() {
            let stored = KeyBytes::new(a);
            for (j, b) in keys.iter().enumerate() {
                assert_eq!(
                    stored.matches(&Probe::new(b)),
                    i == j,
                    "{a:?} against {b:?}"
                );
            }
            // Same length, one byte different, at each place.
            for at in 0..a.len() {
                let mut c = a.clone();
                c[at] ^= 1;
                assert!(!stored.matches(&Probe::new(&c)), "{a:?} against {c:?}");
            }
        }
    }

    /// Whether every bucket holds within 20 % of the mean count.
    fn even(counts: &[u32]) -> bool {
        let mean = counts.iter().sum::<u32>() as f64 / counts.len() as f64;
        counts.iter().all(|&c| (c as f64 - mean).abs() < mean * 0.2)
    }

    #[test]
    fn short_and_long_keys_hash_evenly_in_every_bit_range_a_table_uses() {
        let hasher = KeyHasher::new(Some(7));
        for key_of in [
            |i: u32| i.to_le_bytes().to_vec(),
            |i: u32| u64::from(i).to_be_bytes().to_vec(),
            |i: u32| format!("/path/{i}").into_bytes(),
            |i: u32| format!("https://example.com/a/long/path/{i}?q=1").into_bytes(),
        ] {
            // Low bits (the table's bucket), bits 32.. (the shard), top 7 (the table's tag).
            let (mut low, mut shard, mut top) = ([0u32; 256], [0u32; 64], [0u32; 128]);
            for i in 0..128_000 {
                let h = hasher.hash_key(&key_of(i));
                low[(h & 255) as usize] += 1;
                shard[((h >> 32) & 63) as usize] += 1;
                top[(h >> 57) as usize] += 1;
            }
            assert!(even(&low) && even(&shard) && even(&top));
        }
    }

    #[test]
    fn seeds_change_the_hash_and_a_seed_repeats_it() {
        let (a, b) = (KeyHasher::new(Some(1)), KeyHasher::new(Some(2)));
        assert_eq!(a.hash_key(b"key"), KeyHasher::new(Some(1)).hash_key(b"key"));
        assert_ne!(a.hash_key(b"key"), b.hash_key(b"key"));
        assert_ne!(
            KeyHasher::new(None).hash_key(b"k"),
            KeyHasher::new(None).hash_key(b"k")
        );
        // The length is part of the hash: trailing zero bytes make another key.
        assert_ne!(a.hash_key(b"ab"), a.hash_key(b"ab\0"));
    }

    #[test]
    fn an_inline_key_whose_bytes_look_like_a_tag_is_still_inline() {
        let key = [0xffu8; 15];
        assert_eq!(KeyBytes::new(&key).as_slice(), &key);
    }
}
