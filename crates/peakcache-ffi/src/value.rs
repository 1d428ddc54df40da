//! The value the cache stores for C hosts: an HTTP-response-shaped blob behind an `Arc`, so a hit
//! clones a pointer and never the body.

use bytes::Bytes;

/// Where one header lies in `Stored::header_bytes`: the name at `start`, its value right after.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HeaderSpan {
    pub(crate) start: u32,
    pub(crate) name_len: u32,
    pub(crate) value_len: u32,
}

/// A stored response: status, ordered headers, body, the host's flags and the metadata blob
/// (`peakcache_response_set_meta`; the HTTP family keeps its entry metadata there). Immutable
/// once built. The body is a `Bytes` so a revalidated response can share the stored one.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) status: u16,
    pub(crate) flags: u32,
    pub(crate) headers: Vec<HeaderSpan>,
    pub(crate) header_bytes: Box<[u8]>,
    pub(crate) body: Bytes,
    pub(crate) meta: Box<[u8]>,
    /// `peakcache_entry_id` of a value decoded from the shared region (a fresh copy per read,
    /// so its address names nothing): derived from its record when it was read. 0 for a value
    /// of the local backend, whose `Arc` address is its identity.
    pub(crate) id: u64,
    /// The region's sequence number of the record a lookup or a waiter read this value from
    /// (`peakcache_shm::Hit::seq`), for `peakcache_lookup_known`; 0 otherwise.
    pub(crate) seq: u64,
}

/// What the value of an entry costs beyond its bytes: the `Arc` allocation of [`Stored`]
/// (rounded up). Checked against the real size by a test.
pub(crate) const VALUE_OVERHEAD: u64 = 128;

impl Stored {
    /// The header at `i` as (name, value).
    #[inline]
    pub(crate) fn header(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let h = self.headers.get(i)?;
        let start = h.start as usize;
        let mid = start + h.name_len as usize;
        let end = mid + h.value_len as usize;
        Some((&self.header_bytes[start..mid], &self.header_bytes[mid..end]))
    }

    /// Every header as (name, value), in the order added.
    pub(crate) fn header_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        (0..self.headers.len()).filter_map(|i| self.header(i))
    }

    /// What the value weighs against the capacity (the key and the core's per-entry overhead
    /// are added by the weigher): status and flags, every header's bytes and index slot, the
    /// body, the metadata, and [`VALUE_OVERHEAD`].
    pub(crate) fn weight(&self) -> u64 {
        (2 + 4
            + self.header_bytes.len()
            + self.headers.len() * crate::response::PEAKCACHE_HEADER_OVERHEAD as usize
            + self.body.len()
            + self.meta.len()) as u64
            + VALUE_OVERHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overhead_covers_the_arc_allocation() {
        // Two reference counts, then the value.
        let real = std::mem::size_of::<Stored>() as u64 + 16;
        assert!(real <= VALUE_OVERHEAD, "{real}");
        assert!(
            std::mem::size_of::<HeaderSpan>() as u64 <= crate::response::PEAKCACHE_HEADER_OVERHEAD
        );
        assert_eq!(
            crate::cache::PEAKCACHE_ENTRY_OVERHEAD,
            peakcache::ENTRY_OVERHEAD + VALUE_OVERHEAD
        );
    }
}
