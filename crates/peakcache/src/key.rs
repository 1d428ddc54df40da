//! Keys as the store keeps them: up to 15 bytes inline in the node, longer ones on the heap.
//!
//! A lookup compares the probed node's key with the caller's. With the key on the heap that is
//! a second cache miss after the node's; short keys (ids, hashes, small paths) avoid it. The
//! type is 16 bytes, the size of a `Box<[u8]>`, so long keys cost nothing more.

use std::hash::{BuildHasher, Hasher};
use std::ptr::NonNull;

/// The hash of a key: its bytes alone, without the length prefix `Hash for [u8]` adds (a key is
/// never hashed together with anything else, so prefix-freedom buys nothing), which saves a
/// round of mixing on every lookup.
#[inline]
pub(crate) fn hash_key(hasher: &ahash::RandomState, key: &[u8]) -> u64 {
    let mut h = hasher.build_hasher();
    h.write(key);
    h.finish()
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

/// A key's bytes, owned.
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
    fn an_inline_key_whose_bytes_look_like_a_tag_is_still_inline() {
        let key = [0xffu8; 15];
        assert_eq!(KeyBytes::new(&key).as_slice(), &key);
    }
}
