//! The proxy in a cluster (`--cluster redis://HOST:PORT`): how bus purges reach its caches and
//! how its responses travel through the second-level cache.
//!
//! `Cache-Status` tells a visitor what the cluster did:
//! - `detail=l2`: the answer came from the cluster's second-level cache (another host fetched
//!   it), without a request from this host to the origin: `peakcache; hit; ttl=42; detail=l2`;
//! - `detail=cluster-lag`: this host is cut off from the purge bus longer than `--max-lag`, so
//!   nothing it serves is fresh (entries are served only inside their stale windows while one
//!   request refreshes each); it replaces any other detail while it lasts.

use crate::stored::Cached;
use bytes::Bytes;
use peakcache::{Cache, Freshness, PurgeMode};
use peakcache_cluster::{BusPosition, L2Entry, LocalCache, Purge, Reject};
use peakcache_http::{Key, Vary};
use std::sync::Arc;
use std::time::SystemTime;

/// The tag every response carries, so "everything stale" is one constant-time tag purge. A NUL
/// byte cannot appear in a `Surrogate-Key` field or a request line, so no tag or key collides.
pub(crate) const EVERY_ENTRY: &[u8] = b"\0every-entry";

/// The `Cache-Status` detail of an answer from the second-level cache.
pub(crate) const FROM_L2: &str = "l2";

/// The `Cache-Status` detail of every answer while the host is lagging.
pub(crate) const LAGGING: &str = "cluster-lag";

/// The proxy's two caches, as purges see them.
pub(crate) struct LocalPurges {
    pub(crate) cache: Cache<Arc<Cached>>,
    pub(crate) vary: Cache<Arc<Vary>>,
    /// The last bus position every purge up to which is applied: a snapshot records it.
    pub(crate) position: parking_lot::Mutex<Option<BusPosition>>,
}

impl LocalCache for LocalPurges {
    fn apply(&self, purge: &Purge) {
        match purge {
            // Every variant is tagged with its primary key (`Proxy::commit`).
            Purge::Key { key, mode } => {
                self.cache.purge(key, *mode);
                self.cache.purge_tag(key, *mode);
            }
            Purge::Tag { tag, mode } => self.cache.purge_tag(tag, *mode),
            Purge::Everything {
                mode: PurgeMode::Hard,
            } => {
                self.cache.clear();
                self.vary.clear();
            }
            Purge::Everything {
                mode: PurgeMode::Soft,
            } => self.cache.purge_tag(EVERY_ENTRY, PurgeMode::Soft),
            Purge::Freeze => self.cache.freeze(true),
            Purge::Thaw => self.cache.freeze(false),
        }
    }

    fn caught_up(&self, position: &BusPosition) {
        *self.position.lock() = Some(position.clone());
    }
}

/// A stored response as the second-level cache keeps it: under its primary key's purges and
/// its own tags (`Surrogate-Key`).
pub(crate) fn to_l2(key: &Key, cached: &Cached, freshness: Freshness, tags: &[Bytes]) -> L2Entry {
    L2Entry {
        head: cached.encode_head(),
        body: cached.body.clone(),
        stored_at: SystemTime::now(),
        freshness,
        primary: key.clone().into_bytes(),
        tags: tags.to_vec(),
    }
}

/// A copy from the second-level cache, ready to store here: the response, its tags and what
/// is left of its windows; refused when unreadable or when `fits` says it is another variant.
pub(crate) fn from_l2(
    copy: &L2Entry,
    fits: impl Fn(&Cached) -> bool,
) -> Result<(Arc<Cached>, Vec<Bytes>, Freshness), Reject> {
    let cached = Cached::from_parts(&copy.head, copy.body.clone()).ok_or(Reject::Unreadable)?;
    if !fits(&cached) {
        return Err(Reject::OtherVariant);
    }
    Ok((
        Arc::new(cached),
        copy.tags.clone(),
        copy.remaining(SystemTime::now()),
    ))
}
