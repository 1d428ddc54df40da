//! What the proxy keeps in the cache for one response.

use bytes::Bytes;
use http::response;
use peakcache_http::{EntryMeta, Vary, VaryKey};

/// A stored response: its head as the origin sent it (less the fields not to store), its body,
/// and what the HTTP layer needs to serve it later.
pub struct Cached {
    /// Status and header fields.
    pub parts: response::Parts,
    /// The whole body.
    pub body: Bytes,
    /// Timing facts for `Age`, `Cache-Status` and stale grants.
    pub meta: EntryMeta,
    /// The fields the response varies on (empty when it does not vary).
    pub vary: Vary,
    /// The secondary key of the request it answered.
    pub vary_key: VaryKey,
}

/// Per-entry bytes the proxy adds to the core's overhead: the `Cached` box and its header map.
const CACHED_OVERHEAD: u64 = 256;

impl Cached {
    /// What the entry costs against the cache's capacity, in bytes (approximately: header
    /// maps have their own bookkeeping).
    pub fn weight(&self, key: &[u8]) -> u64 {
        let headers: usize = self
            .parts
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        (key.len() + self.body.len() + headers + self.vary_key.as_bytes().len()) as u64
            + CACHED_OVERHEAD
            + peakcache::ENTRY_OVERHEAD
    }
}
