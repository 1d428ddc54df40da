//! One small trait, [`CacheAdapter`], implemented for every cache under test, so that the replay
//! and the throughput benchmarks drive them all through the same two calls.
//!
//! How each cache is configured (the fairness rules):
//!
//! * **Keys.** moka and quick_cache are keyed by the `u64` itself; peakcache, whose keys are
//!   bytes, gets the key's 8 little-endian bytes. The value is a `u64` (the entry's weight), so
//!   no cache pays for cloning a large value.
//! * **Capacity.** In [`Weighing::Entries`] every entry weighs 1 and the capacity is a count:
//!   peakcache `max_bytes(capacity)` with a weigher returning 1, moka `max_capacity(capacity)`
//!   (no weigher: moka then counts entries), quick_cache `weight_capacity = capacity` with a
//!   weighter returning 1. In [`Weighing::Bytes`] each entry weighs its object size and the
//!   capacity is bytes: peakcache weigher returns the size, moka `weigher` returns the size
//!   (clamped to `u32`, moka's weight type) with `max_capacity(bytes)`, quick_cache `Weighter`
//!   returns the size, with `estimated_items_capacity` from [`Config::estimated_items`].
//! * **Hashing.** moka and quick_cache both hash with `ahash` (quick_cache's default; moka's
//!   default is SipHash, so moka is given ahash too and the hasher is not what is compared).
//!   With [`Config::deterministic`] the seeds are fixed, so that replays give the same figures
//!   every run; otherwise they are random, as in production.
//! * **Shards.** [`Config::shards`] is passed to the sharded caches (peakcache, quick_cache);
//!   `None` keeps each library's default. moka keeps one global policy whatever the setting.
//! * **moka's maintenance.** moka applies its admission and eviction policy asynchronously,
//!   from buffers drained now and then. With [`Config::moka_sync`] (the replay's default), the
//!   adapter calls `run_pending_tasks()` after every insert, so moka is held to its capacity at every
//!   step like the other caches and is not penalised by decisions still pending. Otherwise (the
//!   throughput benchmarks) moka runs its maintenance as it does by itself.
//! * **peakcache freshness.** Entries are inserted fresh for an hour, far beyond any run.
//! * **Object size limits** are each library's default: peakcache refuses an entry heavier
//!   than an eighth of a shard's share of the capacity, quick_cache one heavier than the hot
//!   part of a shard's share (most of it), moka and the LRU one heavier than the whole
//!   capacity. They only matter for `adapt`.
//! * **Determinism.** peakcache's hasher gets a fixed seed (`Builder::hash_seed`), as the other
//!   caches' hashers do here, so which keys share a shard repeats from run to run.

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use crate::lru::Lru;

/// A cache under test, reduced to the two operations the benchmarks need.
pub trait CacheAdapter: Send + Sync {
    /// Short name of the cache, as used by `--only` and in tables.
    fn name(&self) -> &'static str;
    /// Looks `key` up; true on a hit.
    fn get(&self, key: u64) -> bool;
    /// Stores `key`, charging `weight` against the capacity.
    fn insert(&self, key: u64, weight: u64);
    /// One line saying how this instance is configured.
    fn describe(&self) -> String;
}

/// How entries are charged against the capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Weighing {
    /// Every entry weighs 1: the capacity is a number of entries.
    Entries,
    /// Every entry weighs the `weight` it was inserted with (its size): the capacity is bytes.
    Bytes,
}

impl Weighing {
    /// The charge of an entry inserted with `weight`: 1 for entries, `weight` for bytes.
    #[inline]
    pub const fn charge(self, weight: u64) -> u64 {
        match self {
            Weighing::Entries => 1,
            Weighing::Bytes => weight,
        }
    }
}

/// The configuration shared by every cache of one run.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Capacity in entries or bytes, depending on `weighing`.
    pub capacity: u64,
    /// How entries are charged.
    pub weighing: Weighing,
    /// Expected number of entries at capacity (quick_cache sizes its tables and shards from it).
    pub estimated_items: usize,
    /// Shard count for the sharded caches; `None` keeps each library's default.
    pub shards: Option<usize>,
    /// Fixed hash seeds, for reproducible hit ratios.
    pub deterministic: bool,
    /// Run moka's pending maintenance after every insert.
    pub moka_sync: bool,
}

impl Config {
    /// An entry-counted configuration with library defaults (random seeds, default shards).
    pub fn entries(capacity: u64) -> Self {
        Config {
            capacity,
            weighing: Weighing::Entries,
            estimated_items: usize::try_from(capacity).unwrap_or(usize::MAX),
            shards: None,
            deterministic: false,
            moka_sync: false,
        }
    }

    fn hasher(&self) -> ahash::RandomState {
        if self.deterministic {
            ahash::RandomState::with_seeds(
                0x243F_6A88_85A3_08D3,
                0x1319_8A2E_0370_7344,
                0xA409_3822_299F_31D0,
                0x082E_FA98_EC4E_6C89,
            )
        } else {
            ahash::RandomState::new()
        }
    }
}

/// The caches this crate can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKind {
    /// `peakcache::Cache`.
    Peakcache,
    /// `moka::sync::Cache`.
    Moka,
    /// `quick_cache::sync::Cache`.
    QuickCache,
    /// The reference [`Lru`].
    Lru,
}

impl CacheKind {
    /// Every kind, in table order.
    pub const ALL: [CacheKind; 4] = [
        CacheKind::Lru,
        CacheKind::Moka,
        CacheKind::QuickCache,
        CacheKind::Peakcache,
    ];

    /// The name used by `--only` and in tables.
    pub const fn name(self) -> &'static str {
        match self {
            CacheKind::Peakcache => "peakcache",
            CacheKind::Moka => "moka",
            CacheKind::QuickCache => "quick_cache",
            CacheKind::Lru => "lru",
        }
    }

    /// Builds an empty cache of this kind.
    pub fn build(self, config: &Config) -> Box<dyn CacheAdapter> {
        match self {
            CacheKind::Peakcache => Box::new(PeakcacheAdapter::new(config)),
            CacheKind::Moka => Box::new(MokaAdapter::new(config)),
            CacheKind::QuickCache => Box::new(QuickCacheAdapter::new(config)),
            CacheKind::Lru => Box::new(LruAdapter::new(config)),
        }
    }
}

impl fmt::Display for CacheKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CacheKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = if s == "quick-cache" || s == "quickcache" {
            "quick_cache"
        } else {
            s
        };
        CacheKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                format!("unknown cache {s:?} (expected peakcache, moka, quick_cache or lru)")
            })
    }
}

/// `peakcache::Cache<u64>` keyed by the key's 8 little-endian bytes.
pub struct PeakcacheAdapter {
    cache: peakcache::Cache<u64>,
    shards: Option<usize>,
    weighing: Weighing,
}

impl PeakcacheAdapter {
    /// How long inserted entries stay fresh: far longer than any benchmark.
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(3600);

    /// An empty cache configured from `config` (see the module documentation).
    pub fn new(config: &Config) -> Self {
        let weighing = config.weighing;
        let mut builder = peakcache::Cache::builder()
            .max_bytes(config.capacity)
            .weigher(move |_key: &[u8], size: &u64| weighing.charge(*size))
            .hash_seed(0x5eed);
        if let Some(n) = config.shards {
            builder = builder.shards(n);
        }
        PeakcacheAdapter {
            cache: builder.build(),
            shards: config.shards,
            weighing,
        }
    }
}

impl CacheAdapter for PeakcacheAdapter {
    fn name(&self) -> &'static str {
        "peakcache"
    }

    #[inline]
    fn get(&self, key: u64) -> bool {
        self.cache.get(&key.to_le_bytes()).is_some()
    }

    #[inline]
    fn insert(&self, key: u64, weight: u64) {
        // Err means the one value outweighs the cache: it is simply not cached, as with the others.
        let _ = self.cache.insert(
            &key.to_le_bytes(),
            weight,
            peakcache::Freshness::new(Self::TTL),
        );
    }

    fn describe(&self) -> String {
        let shards = self.shards.map_or("default".to_string(), |n| n.to_string());
        let weigh = match self.weighing {
            Weighing::Entries => "weigher = 1",
            Weighing::Bytes => "weigher = size",
        };
        format!(
            "peakcache: max_bytes + {weigh}, shards: {shards}, default max_object_weight \
             (1/8 of a shard's share), key = 8 LE bytes, ttl 1 h"
        )
    }
}

/// `moka::sync::Cache<u64, u64>` hashed with ahash.
pub struct MokaAdapter {
    cache: moka::sync::Cache<u64, u64, ahash::RandomState>,
    sync_each_insert: bool,
    weighing: Weighing,
}

impl MokaAdapter {
    /// An empty cache configured from `config` (see the module documentation).
    pub fn new(config: &Config) -> Self {
        let builder = moka::sync::Cache::builder().max_capacity(config.capacity);
        let cache = match config.weighing {
            Weighing::Entries => builder.build_with_hasher(config.hasher()),
            Weighing::Bytes => builder
                .weigher(|_key: &u64, size: &u64| u32::try_from(*size).unwrap_or(u32::MAX))
                .build_with_hasher(config.hasher()),
        };
        MokaAdapter {
            cache,
            sync_each_insert: config.moka_sync,
            weighing: config.weighing,
        }
    }

    /// Runs moka's pending maintenance (admission, eviction) now.
    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }
}

impl CacheAdapter for MokaAdapter {
    fn name(&self) -> &'static str {
        "moka"
    }

    #[inline]
    fn get(&self, key: u64) -> bool {
        self.cache.get(&key).is_some()
    }

    #[inline]
    fn insert(&self, key: u64, weight: u64) {
        self.cache.insert(key, weight);
        if self.sync_each_insert {
            self.cache.run_pending_tasks();
        }
    }

    fn describe(&self) -> String {
        let weigh = match self.weighing {
            Weighing::Entries => "max_capacity (entries)",
            Weighing::Bytes => "max_capacity + weigher (bytes)",
        };
        let sync = if self.sync_each_insert {
            "run_pending_tasks after every insert"
        } else {
            "maintenance left to moka"
        };
        format!("moka: {weigh}, TinyLFU (default), ahash, {sync}")
    }
}

/// quick_cache's weighter for [`QuickCacheAdapter`]: 1 per entry, or the stored size.
#[derive(Clone, Copy, Debug)]
pub struct SizeWeighter {
    weighing: Weighing,
}

impl quick_cache::Weighter<u64, u64> for SizeWeighter {
    #[inline]
    fn weight(&self, _key: &u64, size: &u64) -> u64 {
        self.weighing.charge(*size)
    }
}

/// `quick_cache::sync::Cache<u64, u64>` hashed with ahash (its default).
pub struct QuickCacheAdapter {
    cache: quick_cache::sync::Cache<u64, u64, SizeWeighter, ahash::RandomState>,
    weighing: Weighing,
}

impl QuickCacheAdapter {
    /// An empty cache configured from `config` (see the module documentation).
    pub fn new(config: &Config) -> Self {
        let mut options = quick_cache::OptionsBuilder::new();
        options
            .estimated_items_capacity(config.estimated_items.max(1))
            .weight_capacity(config.capacity);
        if let Some(n) = config.shards {
            options.shards(n);
        }
        let options = options
            .build()
            .expect("estimated items and weight capacity are set");
        let cache = quick_cache::sync::Cache::with_options(
            options,
            SizeWeighter {
                weighing: config.weighing,
            },
            config.hasher(),
            quick_cache::sync::DefaultLifecycle::default(),
        );
        QuickCacheAdapter {
            cache,
            weighing: config.weighing,
        }
    }
}

impl CacheAdapter for QuickCacheAdapter {
    fn name(&self) -> &'static str {
        "quick_cache"
    }

    #[inline]
    fn get(&self, key: u64) -> bool {
        self.cache.get(&key).is_some()
    }

    #[inline]
    fn insert(&self, key: u64, weight: u64) {
        self.cache.insert(key, weight);
    }

    fn describe(&self) -> String {
        let weigh = match self.weighing {
            Weighing::Entries => "weighter = 1",
            Weighing::Bytes => "weighter = size",
        };
        format!(
            "quick_cache: weight_capacity + {weigh}, shards: {}, ahash, default hot/ghost allocation",
            self.cache.num_shards()
        )
    }
}

/// The reference [`Lru`] behind a mutex (uncontended in the single-threaded replay).
pub struct LruAdapter {
    lru: Mutex<Lru>,
    weighing: Weighing,
}

impl LruAdapter {
    /// An empty LRU of `config.capacity` entries or bytes.
    pub fn new(config: &Config) -> Self {
        LruAdapter {
            lru: Mutex::new(Lru::new(config.capacity)),
            weighing: config.weighing,
        }
    }
}

impl CacheAdapter for LruAdapter {
    fn name(&self) -> &'static str {
        "lru"
    }

    fn get(&self, key: u64) -> bool {
        self.lru.lock().expect("lru poisoned").get(key)
    }

    fn insert(&self, key: u64, weight: u64) {
        self.lru
            .lock()
            .expect("lru poisoned")
            .insert(key, self.weighing.charge(weight));
    }

    fn describe(&self) -> String {
        "lru: plain LRU admitting every miss (BTreeMap recency order)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(capacity: u64, weighing: Weighing) -> Config {
        Config {
            capacity,
            weighing,
            estimated_items: capacity as usize,
            shards: Some(1),
            deterministic: true,
            moka_sync: true,
        }
    }

    #[test]
    fn every_cache_hits_after_insert() {
        for kind in CacheKind::ALL {
            let cache = kind.build(&config(1000, Weighing::Entries));
            assert_eq!(cache.name(), kind.name());
            assert!(!cache.get(7), "{kind}");
            cache.insert(7, 1);
            assert!(cache.get(7), "{kind}");
            assert!(!cache.get(8), "{kind}");
        }
    }

    #[test]
    fn every_cache_stays_near_its_entry_capacity() {
        for kind in CacheKind::ALL {
            let cache = kind.build(&config(100, Weighing::Entries));
            for key in 0..10_000 {
                cache.insert(key, 1);
            }
            let held = (0..10_000).filter(|&k| cache.get(k)).count();
            assert!(held <= 110, "{kind} holds {held} entries of capacity 100");
        }
    }

    #[test]
    fn byte_weighing_bounds_by_size() {
        for kind in CacheKind::ALL {
            let cache = kind.build(&Config {
                estimated_items: 10,
                ..config(10_000, Weighing::Bytes)
            });
            for key in 0..1000 {
                cache.insert(key, 1000);
            }
            let held = (0..1000).filter(|&k| cache.get(k)).count();
            assert!(
                held <= 11,
                "{kind} holds {held} entries of 1000 bytes in 10,000"
            );
        }
    }

    #[test]
    fn charge_follows_weighing() {
        assert_eq!(Weighing::Entries.charge(500), 1);
        assert_eq!(Weighing::Bytes.charge(500), 500);
    }

    #[test]
    fn kind_names_parse() {
        for kind in CacheKind::ALL {
            assert_eq!(kind.name().parse::<CacheKind>().unwrap(), kind);
        }
        assert_eq!(
            "quick-cache".parse::<CacheKind>().unwrap(),
            CacheKind::QuickCache
        );
        assert!("redis".parse::<CacheKind>().is_err());
    }
}
