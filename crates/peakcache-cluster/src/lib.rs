//! # peakcache-cluster
//!
//! Several peakcache hosts behind one load balancer, acting as one cache, on Redis (>= 7) or
//! Valkey through the `redis` crate:
//!
//! - [The purge bus](#the-purge-bus): a purge on any host reaches every host.
//! - [Bounded staleness](#bounded-staleness): a host cut off from the bus stops serving
//!   entries as fresh.
//! - [Cluster single flight](#cluster-single-flight): one origin fetch per page for the whole
//!   cluster.
//! - [The second-level cache](#the-second-level-cache): a page fetched by one host is served by
//!   the others from Redis.
//! - [Redis down](#redis-down): never a visitor's error.
//! - [Hosts whose cache outlives the process](#hosts-whose-cache-outlives-the-process): nginx
//!   and PHP-FPM through their shared region.
//! - [Metrics](#metrics).
//!
//! A host starts one [`Cluster`] with the [`LocalCache`] it owns (the crate depends on the core,
//! never on a particular host), sends its purges through [`Cluster::purge`], and asks
//! [`Cluster::lookup`] on a local miss before going to the origin.
//!
//! ```
//! use bytes::Bytes;
//! use peakcache::{Cache, Freshness, PurgeMode};
//! use peakcache_cluster::{Cluster, Config, L2Entry, L2Lookup, LocalCache, Purge};
//! use std::sync::Arc;
//! use std::time::{Duration, SystemTime};
//!
//! /// The host's cache: here a `peakcache::Cache` of page bodies.
//! struct Pages(Cache<Bytes>);
//!
//! impl LocalCache for Pages {
//!     fn apply(&self, purge: &Purge) {
//!         match purge {
//!             Purge::Key { key, mode } => { self.0.purge(key, *mode); }
//!             Purge::Tag { tag, mode } => self.0.purge_tag(tag, *mode),
//!             Purge::Everything { mode: PurgeMode::Hard } => self.0.clear(),
//!             // Every entry carries this tag, so "everything" is one constant-time tag purge.
//!             Purge::Everything { mode: PurgeMode::Soft } => self.0.purge_tag("*", PurgeMode::Soft),
//!             Purge::Freeze => self.0.freeze(true),
//!             Purge::Thaw => self.0.freeze(false),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Nothing listens on port 1: the host acts alone, and says so in its stats.
//! let mut config = Config::new("redis://127.0.0.1:1/");
//! config.name = "shop".into();
//! let pages = Arc::new(Pages(Cache::new()));
//! let cluster = Cluster::start(config, pages.clone()).expect("a valid configuration");
//!
//! // A local miss asks the second-level cache (and takes the cluster's fill lease) first.
//! let key: &[u8] = b"GET http://shop.example/";
//! let lease = match cluster.lookup(key, |copy: &L2Entry| Ok(copy.body.clone())).await {
//!     L2Lookup::Hit(body) => unreachable!("no Redis, no second-level copy: {body:?}"),
//!     L2Lookup::Fetch(lease) => lease,
//! };
//! // ... fetch from the origin, store locally, then hand the copy to the cluster:
//! let body = Bytes::from_static(b"<h1>Shop</h1>");
//! let ttl = Freshness::new(Duration::from_secs(60)).with_swr(Duration::from_secs(30));
//! pages.0.insert_tagged(key, body.clone(), ttl, &["*", "home"]).unwrap();
//! lease.put(L2Entry {
//!     head: Bytes::new(),
//!     body,
//!     stored_at: SystemTime::now(),
//!     freshness: ttl,
//!     primary: Bytes::copy_from_slice(key),
//!     tags: vec![Bytes::from_static(b"home")],
//! });
//!
//! // A purge is applied here at once and published to every host (queued while Redis is away).
//! cluster.purge(Purge::Tag { tag: Bytes::from_static(b"home"), mode: PurgeMode::Hard });
//! assert!(pages.0.get(key).is_none());
//! assert!(!cluster.stats().connected);
//! # }
//! ```
//!
//! ## The purge bus
//!
//! Every purge ([`Purge`]: a key with its Vary variants, a tag, everything; hard or soft;
//! freeze and thaw) is applied by its host at once and appended to one Redis Stream per
//! cluster (`XADD ... MAXLEN ~ stream_max_len`, in a script that also numbers it). Every host
//! reads the stream (`XREAD BLOCK`) from the last entry it read, applies other hosts' purges
//! through its [`LocalCache`], and skips its own (already applied). After a reconnect it goes
//! on from its last entry, so nothing published meanwhile is lost; purges made while Redis is
//! unreachable wait in the host's outbox and are published, in order, when it returns.
//!
//! Plain pub/sub would drop messages on a disconnect; a stream does not. What a stream can do
//! is forget: a host whose next entry was trimmed away (it missed more than the stream holds)
//! sees a gap in the purge numbers, and one whose server lost its data sees the purge counter
//! go back. Either way it cannot know what it missed, so it marks every entry stale
//! (`Purge::Everything { mode: Soft }`: entries are then served only inside their stale
//! windows, while one request refreshes each), logs why and counts it
//! (`soft_purges_everything_total{reason="trimmed"|"reset"}`).
//!
//! ## Bounded staleness
//!
//! A read of the bus that returns proves the host had every purge when it was sent; reads
//! block for a quarter of `max_lag` at most. A host that could not prove this for longer than
//! `max_lag` (default 1 s; checked every tenth of it) is *lagging*: it marks every entry stale,
//! again every `max_lag` while it stays cut off (so what it fetched meanwhile is not fresh
//! longer than that either), until a read returns; then it goes on from its last entry.
//! [`Cluster::is_lagging`] says so (a host adds it to `Cache-Status`; peakcache-proxy sends
//! `detail=cluster-lag`), and so do the metrics.
//!
//! ## Cluster single flight
//!
//! On a local miss, [`Cluster::lookup`] runs one script: a usable second-level copy, or else
//! the fill lease (`SET lease token NX PX lock_timeout`). The host holding the lease fetches;
//! [`Lease::put`] writes the copy and releases the lease with a compare-and-delete (only the
//! holder's token deletes it), then announces the key on the cluster's `filled` channel.
//! Hosts that found the lease taken wait for that announcement (not a poll), then read the
//! copy; after `lock_timeout` they fetch for themselves.
//!
//! The lease is an efficiency lock, not a correctness lock: if its holder is slower than
//! `lock_timeout` (or dies), the lease expires and another host fetches too. That costs one
//! more origin request, never a wrong answer, since every fetch is a full answer from the
//! origin and the last one written wins; and a visitor never waits longer than the lock timeout
//! for another host. Making it a correctness lock would need fencing tokens at the origin, for
//! nothing a cache needs.
//!
//! ## The second-level cache
//!
//! A committed response ([`L2Entry`]: the host's encoding of status and headers, the body,
//! when it was stored and its [`Freshness`](peakcache::Freshness), its primary key and tags)
//! is written to a Redis hash that expires at the end of its last stale window (at most
//! `l2_max_ttl`). A copy is handed out while it is fresh. Bodies above `l2_max_body` are not
//! written.
//!
//! Purges reach it through versions: each purge sets the version of its key, tag or "all" to
//! its purge number; a copy records the purge number read before its fetch began, and is
//! unusable if any of its versions is newer. A soft purge retires copies too (the hosts keep
//! serving their own stale copies while one refreshes). A host skips copies while it has
//! purges of its own not yet on the stream.
//!
//! ## Redis down
//!
//! Every operation has a timeout (`op_timeout`, default 100 ms); after a failure the host stops
//! asking Redis on the visitors' path until the bus reader reconnects (with back-off from
//! `backoff_min` to `backoff_max`), and meanwhile acts alone: its own cache, its own single
//! flight, its purges applied locally and queued. No visitor gets an error because of Redis.
//!
//! ## Hosts whose cache outlives the process
//!
//! An nginx or PHP-FPM host keeps its cache in a shared memory region that outlives any one
//! process, and its purges are made by its workers, not through this crate. Its agent
//! (`peakcache-proxy --region`) therefore:
//! - publishes the workers' purges with [`Cluster::publish`] (already applied: not applied
//!   again), and [`Cluster::unpublished`] tells it when they are all on the stream;
//! - saves the bus position its [`LocalCache::caught_up`] is told after every read, and starts
//!   again with [`Start::Resume`] from it, so purges published while it was stopped are
//!   applied (or, if the stream no longer holds them, everything is marked stale);
//! - starts with [`Start::Unknown`] when it has no position: the region's entries were stored
//!   without the cluster's purges, so they are marked stale at first contact
//!   (`soft_purges_everything_total{reason="joined"}`).
//!
//! ## Metrics
//!
//! [`Cluster::stats`] and [`ClusterStats::to_prometheus`]: bus lag, lagging, purges published
//! and applied, soft purges of everything by reason, second-level hits, misses and errors,
//! leases won and lost, Redis errors and reconnects.

#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

mod bus;
mod config;
mod l2;
mod purge;
mod stats;
#[cfg(feature = "test-support")]
pub mod testing;
mod wakeup;

pub use bus::BusPosition;
pub use config::Config;
pub use l2::{L2Entry, L2Lookup, Lease, Reject};
pub use purge::{LocalCache, Purge};
pub use stats::{ClusterStats, SoftPurgeReason};

use config::Keys;
use parking_lot::Mutex;
use peakcache::PurgeMode;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use stats::{incr, Counters};
use std::collections::VecDeque;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use wakeup::Wakeups;

/// Why a cluster link could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// One host's link to its cluster. Cheap to clone; the background tasks (bus reader, outbox
/// publisher, lag watch, fill announcements) stop when the last clone is dropped.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

/// The background tasks, aborted with the last `Cluster`.
struct Tasks(Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// What the tasks and the visitors' path share.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) keys: Keys,
    /// This host's id on the bus.
    pub(crate) host: String,
    pub(crate) local: Arc<dyn LocalCache>,
    pub(crate) client: redis::Client,
    /// Operations on the visitors' path and the outbox (the bus reader has its own
    /// connection: a blocking read would hold up everything behind it).
    pub(crate) ops: ConnectionManager,
    /// False after a failure, until Redis answers again: the visitors' path then skips Redis.
    available: AtomicBool,
    pub(crate) counters: Counters,
    pub(crate) lag: Lag,
    pub(crate) outbox: Outbox,
    pub(crate) wakeups: Wakeups,
    pub(crate) runtime: tokio::runtime::Handle,
    tokens: AtomicU64,
}

impl Shared {
    /// Whether Redis answered the last operation.
    pub(crate) fn available(&self) -> bool {
        self.available.load(Ordering::Relaxed)
    }

    /// Redis answered.
    pub(crate) fn answered(&self) {
        if !self.available.swap(true, Ordering::Relaxed) {
            tracing::info!(
                "peakcache-cluster {}: Redis answers again ({})",
                self.config.name,
                self.config.url
            );
        }
    }

    /// A Redis operation failed or timed out: count it, and skip Redis on the visitors' path
    /// until it answers again.
    pub(crate) fn failed(&self, what: &str, why: &dyn fmt::Display) {
        incr(&self.counters.redis_errors);
        if self.available.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "peakcache-cluster {}: {what} failed ({why}); acting alone until Redis answers",
                self.config.name
            );
        }
    }

    /// Marks every local entry stale because purges may have been missed, and says why.
    pub(crate) fn soft_purge_everything(&self, reason: SoftPurgeReason) {
        let why = match reason {
            SoftPurgeReason::Trimmed => "purges not read yet were trimmed from the stream",
            SoftPurgeReason::Reset => "the bus lost its history (Redis restarted without data?)",
            SoftPurgeReason::Lagging => "cut off from the bus longer than max_lag",
            SoftPurgeReason::Unreadable => "a message on the bus could not be read",
            SoftPurgeReason::Joined => "the host joined with entries of unknown history",
        };
        tracing::warn!(
            "peakcache-cluster {}: marking every entry stale: {why} [{}]",
            self.config.name,
            reason.as_str()
        );
        self.counters.soft_purge(reason);
        self.local.apply(&Purge::Everything {
            mode: PurgeMode::Soft,
        });
    }

    /// A token no other lease of any host carries.
    pub(crate) fn token(&self) -> String {
        format!(
            "{}.{}",
            self.host,
            self.tokens.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// How far behind the bus the host may be.
pub(crate) struct Lag {
    base: Instant,
    /// When (milliseconds after `base`) the host last knew it had every purge.
    synced_ms: AtomicU64,
    ever_synced: AtomicBool,
    lagging: AtomicBool,
}

impl Lag {
    fn new() -> Self {
        Lag {
            base: Instant::now(),
            synced_ms: AtomicU64::new(0),
            ever_synced: AtomicBool::new(false),
            lagging: AtomicBool::new(false),
        }
    }

    /// Time since the host last knew it had every purge.
    pub(crate) fn lag(&self) -> Duration {
        self.base.elapsed().saturating_sub(Duration::from_millis(
            self.synced_ms.load(Ordering::Relaxed),
        ))
    }

    /// The host had every purge at `at`; true if that ends a lagging spell.
    pub(crate) fn synced(&self, at: Instant) -> bool {
        let ms = at.saturating_duration_since(self.base).as_millis() as u64;
        self.synced_ms.fetch_max(ms, Ordering::Relaxed);
        self.ever_synced.store(true, Ordering::Relaxed);
        self.lagging.swap(false, Ordering::Relaxed)
    }

    /// The host is past `max_lag`; true if that starts a lagging spell.
    pub(crate) fn enter(&self) -> bool {
        !self.lagging.swap(true, Ordering::Relaxed)
    }

    pub(crate) fn is_lagging(&self) -> bool {
        self.lagging.load(Ordering::Relaxed)
    }

    /// Whether the host has read the bus to its end at least once.
    fn ever_synced(&self) -> bool {
        self.ever_synced.load(Ordering::Relaxed)
    }
}

/// The host's own purges, applied locally, waiting to be appended to the stream in order.
pub(crate) struct Outbox {
    queue: Mutex<VecDeque<(u64, Purge)>>,
    next: AtomicU64,
    pub(crate) ready: Notify,
    /// Notified when the last queued purge is published.
    drained: Notify,
    limit: usize,
}

impl Outbox {
    fn new(limit: usize) -> Self {
        Outbox {
            queue: Mutex::new(VecDeque::new()),
            next: AtomicU64::new(0),
            ready: Notify::new(),
            drained: Notify::new(),
            limit,
        }
    }

    /// Queues `purge`. Past the limit (Redis away for long), the queued purges are replaced by
    /// one soft purge of everything, keeping the last freeze or thaw: other hosts then refresh
    /// everything rather than miss a purge.
    pub(crate) fn push(&self, purge: Purge) {
        let mut q = self.queue.lock();
        if q.len() >= self.limit {
            let state = q
                .iter()
                .rev()
                .find(|(_, p)| matches!(p, Purge::Freeze | Purge::Thaw))
                .map(|(_, p)| p.clone());
            q.clear();
            q.push_back((
                self.id(),
                Purge::Everything {
                    mode: PurgeMode::Soft,
                },
            ));
            if let Some(state) = state {
                q.push_back((self.id(), state));
            }
        }
        q.push_back((self.id(), purge));
        drop(q);
        self.ready.notify_one();
    }

    fn id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// The oldest purge not yet published.
    pub(crate) fn front(&self) -> Option<(u64, Purge)> {
        self.queue.lock().front().cloned()
    }

    /// Removes purge `id` once published (unless the queue was collapsed meanwhile).
    pub(crate) fn published(&self, id: u64) {
        let mut q = self.queue.lock();
        if q.front().is_some_and(|(front, _)| *front == id) {
            q.pop_front();
        }
        if q.is_empty() {
            self.drained.notify_waiters();
        }
    }

    /// Waits until every queued purge is published, at most `within`; true if it was.
    pub(crate) async fn drain(&self, within: Duration) -> bool {
        let published = async {
            loop {
                let drained = self.drained.notified();
                tokio::pin!(drained);
                drained.as_mut().enable();
                if self.len() == 0 {
                    return;
                }
                drained.await;
            }
        };
        tokio::time::timeout(within, published).await.is_ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.lock().len()
    }
}

/// A random id for this host, different at every start.
fn host_id() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:016x}-{}", h.finish(), std::process::id())
}

/// Where a host starts reading the purge bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// At the bus's end, when Redis first answers: the host's cache is empty (a process that
    /// just started), so nothing published before concerns it.
    Fresh,
    /// Right after `position`, saved by the host's previous process
    /// ([`LocalCache::caught_up`]): its cache outlived it, and every purge published since is
    /// applied (or, if the bus no longer holds them all, everything is marked stale).
    Resume(BusPosition),
    /// At the bus's end, after marking every entry stale: the cache holds entries whose purges
    /// the host cannot know (counted as `soft_purges_everything_total{reason="joined"}`).
    Unknown,
}

impl Cluster {
    /// Starts the link for a host whose cache is empty ([`Start::Fresh`]): see
    /// [`start_from`](Self::start_from).
    pub fn start(config: Config, local: Arc<dyn LocalCache>) -> Result<Cluster, Error> {
        Self::start_from(config, local, Start::Fresh)
    }

    /// Starts the link: checks `config`, then spawns the bus reader (reading from `start`), the
    /// outbox publisher, the lag watch and the listener for other hosts' fills on the current
    /// Tokio runtime. Redis is not contacted here: a host starts (and serves) whether or not
    /// Redis is up.
    ///
    /// Errors: an invalid `config`, or no Tokio runtime.
    pub fn start_from(
        config: Config,
        local: Arc<dyn LocalCache>,
        start: Start,
    ) -> Result<Cluster, Error> {
        config.validate().map_err(Error)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error("the cluster link needs a Tokio runtime".into()))?;
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| Error(format!("cluster URL {:?}: {e}", config.url)))?;
        let ops = ConnectionManager::new_lazy_with_config(
            client.clone(),
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(connect_timeout(&config)))
                .set_response_timeout(Some(config.op_timeout))
                .set_min_delay(config.backoff_min)
                .set_max_delay(config.backoff_max)
                .set_number_of_retries(2),
        )
        .map_err(|e| Error(format!("cluster connection: {e}")))?;
        let shared = Arc::new(Shared {
            keys: Keys::new(&config.name),
            host: host_id(),
            local,
            client,
            ops,
            available: AtomicBool::new(true),
            counters: Counters::default(),
            lag: Lag::new(),
            outbox: Outbox::new(config.outbox_limit),
            wakeups: Wakeups::default(),
            runtime: runtime.clone(),
            tokens: AtomicU64::new(0),
            config,
        });
        let tasks = vec![
            runtime
                .spawn(bus::read(shared.clone(), start))
                .abort_handle(),
            runtime.spawn(bus::publish(shared.clone())).abort_handle(),
            runtime.spawn(bus::watch_lag(shared.clone())).abort_handle(),
            runtime.spawn(wakeup::listen(shared.clone())).abort_handle(),
        ];
        Ok(Cluster {
            shared,
            _tasks: Arc::new(Tasks(tasks)),
        })
    }

    /// Applies `purge` to the local cache at once, then publishes it to every other host (in
    /// order, after any purges still queued; queued while Redis is unreachable).
    pub fn purge(&self, purge: Purge) {
        self.shared.local.apply(&purge);
        self.shared.outbox.push(purge);
    }

    /// Publishes `purge`, already applied to the host's cache by someone else (the workers of a
    /// shared region, which the agent follows), to every other host: in order, after any
    /// purges still queued; queued while Redis is unreachable.
    pub fn publish(&self, purge: Purge) {
        self.shared.outbox.push(purge);
    }

    /// How many of this host's purges wait to be published (all of them were applied here).
    pub fn unpublished(&self) -> usize {
        self.shared.outbox.len()
    }

    /// Whether the host is cut off from the bus longer than `max_lag`: nothing it serves is
    /// fresh then, and hosts say so (`Cache-Status: ...; detail=cluster-lag` in the proxy).
    pub fn is_lagging(&self) -> bool {
        self.shared.lag.is_lagging()
    }

    /// This host's id on the bus.
    pub fn host_id(&self) -> &str {
        &self.shared.host
    }

    /// The cluster's settings.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// A snapshot of the link's state and counters.
    pub fn stats(&self) -> ClusterStats {
        let mut s = ClusterStats::from_counters(&self.shared.counters);
        s.bus_lag = self.shared.lag.lag();
        s.lagging = self.shared.lag.is_lagging();
        s.caught_up = self.shared.lag.ever_synced() && s.bus_lag <= self.shared.config.max_lag;
        s.connected = self.shared.available();
        s.outbox = self.shared.outbox.len();
        s
    }
}

/// How long opening a connection may take: longer than one operation, since it is several
/// round trips, and off the visitors' path.
pub(crate) fn connect_timeout(config: &Config) -> Duration {
    (config.op_timeout * 5).max(Duration::from_millis(500))
}

/// Pauses between reconnection attempts: doubling from the first to the longest, reset by a
/// success.
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(config: &Config) -> Self {
        Backoff {
            min: config.backoff_min,
            max: config.backoff_max,
            next: config.backoff_min,
        }
    }

    pub(crate) async fn pause(&mut self) {
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(self.max);
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflowing_outbox_becomes_one_soft_purge_and_keeps_the_freeze() {
        let o = Outbox::new(3);
        o.push(Purge::Freeze);
        for t in [&b"a"[..], b"b", b"c"] {
            o.push(Purge::Tag {
                tag: bytes::Bytes::copy_from_slice(t),
                mode: PurgeMode::Hard,
            });
        }
        let left: Vec<Purge> = std::iter::from_fn(|| {
            let (id, p) = o.front()?;
            o.published(id);
            Some(p)
        })
        .collect();
        assert_eq!(
            left,
            [
                Purge::Everything {
                    mode: PurgeMode::Soft
                },
                Purge::Freeze,
                Purge::Tag {
                    tag: bytes::Bytes::from_static(b"c"),
                    mode: PurgeMode::Hard
                }
            ]
        );
    }

    #[test]
    fn a_purge_collapsed_away_is_not_popped_twice() {
        let o = Outbox::new(1);
        o.push(Purge::Thaw);
        let (first, _) = o.front().unwrap();
        o.push(Purge::Freeze); // collapses: [soft all, thaw, freeze]
        o.published(first);
        assert_eq!(o.len(), 3);
    }

    #[test]
    fn lag_grows_until_synced() {
        let lag = Lag::new();
        assert!(lag.enter());
        assert!(!lag.enter());
        assert!(lag.is_lagging());
        assert!(lag.synced(Instant::now()));
        assert!(!lag.is_lagging());
        assert!(lag.lag() < Duration::from_millis(50));
    }
}
