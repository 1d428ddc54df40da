//! Listing the servable entries, shard by shard, and putting them back as old as they were: what
//! a snapshot of the cache is written from and restored with.
//!
//! A shard's entries are copied under its read lock (keys copied, values and tag names cloned,
//! which for `Arc` or `Bytes` values is a reference count), and nothing else happens there:
//! whoever encodes or writes them does it with the lock released. Lookups of the shard go on
//! meanwhile (they take the same read lock); a write to it waits for one shard's copy. The copy
//! is consistent per shard, not across shards: an entry stored in a shard already listed is not
//! in the listing, one stored in a shard not yet listed is.

use crate::cache::Cache;
use crate::freshness::Freshness;
use crate::tags::TagNames;
use std::time::Duration;

/// One entry as [`Cache::list`] copied it: its key, value, age, windows and tags, everything
/// [`Cache::restore`] needs to put it back, in this cache or another, as it was.
#[derive(Clone, Debug)]
pub struct Listed<V> {
    pub(crate) key: Box<[u8]>,
    pub(crate) value: V,
    pub(crate) age: Duration,
    pub(crate) freshness: Freshness,
    pub(crate) tags: TagNames,
}

impl<V> Listed<V> {
    /// The entry's key.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The entry's value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// The value, taken out of the listing.
    pub fn into_value(self) -> V {
        self.value
    }

    /// How long before the listing began (the call to [`Cache::list`]) the entry was stored,
    /// by the cache's clock: zero for one stored since. So every age of a listing counts from
    /// one instant, however long the listing takes.
    pub fn age(&self) -> Duration {
        self.age
    }

    /// Its windows, counted from when it was stored: `ttl` already cut short by any soft purge
    /// (by key or tag) it underwent, so that restored it is exactly as stale as it was.
    pub fn freshness(&self) -> Freshness {
        self.freshness
    }

    /// Its tags, as they were given when it was stored.
    pub fn tags(&self) -> &TagNames {
        &self.tags
    }
}

/// Every servable entry of a cache, shard by shard: see [`Cache::list`].
pub struct Listing<V: Clone + Send + Sync + 'static> {
    cache: Cache<V>,
    /// When the listing began, in the cache clock's nanoseconds: ages count from then.
    began: u64,
    next_shard: usize,
    copied: std::vec::IntoIter<Listed<V>>,
}

impl<V: Clone + Send + Sync + 'static> Listing<V> {
    pub(crate) fn new(cache: Cache<V>, began: u64) -> Self {
        Listing {
            cache,
            began,
            next_shard: 0,
            copied: Vec::new().into_iter(),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Iterator for Listing<V> {
    type Item = Listed<V>;

    fn next(&mut self) -> Option<Listed<V>> {
        loop {
            if let Some(entry) = self.copied.next() {
                return Some(entry);
            }
            if self.next_shard == self.cache.shard_count() {
                return None;
            }
            let mut buffer = Vec::new();
            self.cache
                .list_shard(self.next_shard, self.began, &mut buffer);
            self.next_shard += 1;
            self.copied = buffer.into_iter();
        }
    }
}
