//! The cache: shards behind locks, the lookup decision, and the completion of fills.

use crate::clock::{duration_to_nanos, millis_to_nanos, Clock, SystemClock};
use crate::error::InsertError;
use crate::flight::{Flight, Outcome, Wakeup};
use crate::freshness::Freshness;
use crate::key::{KeyHasher, Probe};
use crate::lifecycle::{
    decide, Asker, Decision, Fill, Hit, Kind, Lookup, Refresh, Served, Ticket, Timing, Waiter,
};
use crate::listing::{Listed, Listing};
use crate::policy::Departure;
use crate::shard::{Links, Node, Shard, Weigher};
use crate::stats::{Counter, Counters, Stats};
use crate::tags::{PurgeMode, TagVerdict, Tags, DEFAULT_MAX_MARKS};
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A concurrent, byte-bounded cache of values `V` under byte-string keys, with the entry
/// lifecycle of stale-while-revalidate, stale-if-error and single-flight fills.
///
/// Cloning a `Cache` is cheap and yields a handle to the same cache. Values are cloned out on
/// every hit, so `V` should be cheap to clone (`bytes::Bytes`, `Arc<T>`, small `Copy` types): a
/// value handed out stays valid however the cache changes afterwards.
///
/// See the [crate documentation](crate) for a guide.
pub struct Cache<V: Clone + Send + Sync + 'static> {
    inner: Arc<Inner<V>>,
}

impl<V: Clone + Send + Sync + 'static> Clone for Cache<V> {
    fn clone(&self) -> Self {
        Cache {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<V> {
    shards: Box<[RwLock<Shard<V>>]>,
    shard_mask: u64,
    hasher: KeyHasher,
    weigher: Weigher<V>,
    clock: ClockSource,
    counters: Counters,
    tags: Tags,
    frozen: AtomicBool,
    capacity: u64,
    max_object: u64,
    timing: Timing,
}

/// The most shards a cache has.
const MAX_SHARDS: usize = 1 << 16;

/// The most one shard holds, in the weigher's unit: half of `u64`, so that a shard's weight
/// plus one more object never overflows.
const MAX_SHARD_CAPACITY: u64 = u64::MAX / 2;

/// The estimated cost of one entry beyond its key and value, in bytes: what the default weigher
/// adds to each entry. Measured by the `memory` test of this crate (node, table slot and policy
/// state, allocator rounding of the key excluded).
pub const ENTRY_OVERHEAD: u64 = 64;

/// Builds a [`Cache`]. Every setting has a default; see each method.
pub struct Builder<V> {
    max_bytes: u64,
    shards: Option<usize>,
    weigher: Option<Weigher<V>>,
    clock: Option<Arc<dyn Clock>>,
    max_object: Option<u64>,
    timing: Timing,
    hash_seed: Option<u64>,
    max_tag_marks: usize,
}

impl<V: Clone + Send + Sync + 'static> Default for Builder<V> {
    fn default() -> Self {
        Builder {
            max_bytes: 64 << 20,
            shards: None,
            weigher: None,
            clock: None,
            max_object: None,
            timing: Timing::default(),
            hash_seed: None,
            max_tag_marks: DEFAULT_MAX_MARKS,
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Builder<V> {
    /// The capacity, in the weigher's unit (bytes with the default weigher). Default 64 MiB.
    /// Enforced at every insert: the cache never holds more. A shard holds at most 2^63 - 1.
    pub fn max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = max;
        self
    }

    /// The number of shards, rounded up to a power of two, at most 65,536. Default: four per
    /// core, fewer for a small capacity. Each shard holds an equal share of the capacity.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = Some(n.clamp(1, MAX_SHARDS).next_power_of_two());
        self
    }

    /// What an entry costs against the capacity. It must answer the same for the same key and
    /// value. Default: `key.len() + size_of::<V>() + ENTRY_OVERHEAD`, which does not see memory
    /// a value owns on the heap: for `Bytes`, `Vec<u8>` or `String` values count their length.
    ///
    /// ```
    /// use bytes::Bytes;
    /// let cache = peakcache::Cache::<Bytes>::builder()
    ///     .weigher(|key, value: &Bytes| (key.len() + value.len()) as u64 + peakcache::ENTRY_OVERHEAD)
    ///     .build();
    /// # drop(cache);
    /// ```
    pub fn weigher(mut self, f: impl Fn(&[u8], &V) -> u64 + Send + Sync + 'static) -> Self {
        self.weigher = Some(Arc::new(f));
        self
    }

    /// The largest weight one entry may have; a heavier one is refused with
    /// [`InsertError::TooLarge`]. Default: an eighth of a shard's share of the capacity. Never more
    /// than a shard's share.
    pub fn max_object_weight(mut self, max: u64) -> Self {
        self.max_object = Some(max);
        self
    }

    /// The clock. Default: [`SystemClock`]. Tests use [`crate::ManualClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    crate::timing_setters!();

    /// Seeds the key hash, so which keys share a shard, and therefore eviction, repeats from run
    /// to run: for benchmarks and trace replays. Default: a random seed per cache, so nobody can
    /// choose keys that collide.
    pub fn hash_seed(mut self, seed: u64) -> Self {
        self.hash_seed = Some(seed);
        self
    }

    /// The most tag purge records (one per tag purged) the cache keeps. Default 65,536, which
    /// costs at most about 10.5 MiB, allocated only as that many distinct tags are purged; at
    /// least 1. When full, the oldest half is folded into one cache-wide record: from then on a
    /// purge of those tags also matches every other tagged entry fetched before it (see
    /// [`Cache::purge_tag`]). [`Stats::tag_marks`] and [`Stats::tag_folds`] show both.
    pub fn max_tag_marks(mut self, max: usize) -> Self {
        self.max_tag_marks = max;
        self
    }

    /// Builds the cache.
    pub fn build(self) -> Cache<V> {
        let shards = self
            .shards
            .unwrap_or_else(|| default_shards(self.max_bytes));
        let per_shard = (self.max_bytes / shards as u64).clamp(1, MAX_SHARD_CAPACITY);
        let max_object = self.max_object.unwrap_or(per_shard / 8).clamp(1, per_shard);
        let hasher = KeyHasher::new(self.hash_seed);
        let size_of_v = std::mem::size_of::<V>() as u64;
        let weigher = self.weigher.unwrap_or_else(|| {
            Arc::new(move |k: &[u8], _: &V| k.len() as u64 + size_of_v + ENTRY_OVERHEAD)
        });
        Cache {
            inner: Arc::new(Inner {
                shards: (0..shards)
                    .map(|_| RwLock::new(Shard::new(per_shard, hasher.clone())))
                    .collect(),
                shard_mask: shards as u64 - 1,
                hasher,
                weigher,
                clock: match self.clock {
                    Some(c) => ClockSource::Custom(c),
                    None => ClockSource::System(SystemClock::new()),
                },
                counters: Counters::new(),
                tags: Tags::new(self.max_tag_marks),
                frozen: AtomicBool::new(false),
                capacity: per_shard * shards as u64,
                max_object,
                timing: self.timing,
            }),
        }
    }
}

/// Four shards per core, but no shard smaller than 256 KiB (or 256 units), so a small cache
/// keeps whole-cache eviction quality.
fn default_shards(max_bytes: u64) -> usize {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
    let by_cores = (cores * 4).next_power_of_two();
    let by_size = if max_bytes >= 1 << 20 {
        max_bytes / (256 << 10)
    } else {
        max_bytes / 256
    };
    let by_size = (by_size.max(1) as usize + 1).next_power_of_two() / 2;
    by_cores.min(by_size.max(1))
}

/// The system clock is read inline on the hit path; any other clock through its trait object.
enum ClockSource {
    System(SystemClock),
    Custom(Arc<dyn Clock>),
}

impl ClockSource {
    #[inline]
    fn now(&self) -> Duration {
        match self {
            ClockSource::System(c) => c.now(),
            ClockSource::Custom(c) => c.now(),
        }
    }

    #[inline]
    fn now_nanos(&self) -> u64 {
        match self {
            ClockSource::System(c) => c.now_nanos(),
            ClockSource::Custom(c) => duration_to_nanos(c.now()),
        }
    }
}

/// Ends a flight with its outcome if the thread unwinds from a panic before it did (a value's
/// `clone` panicking under the shard lock), so that its waiters are not left to the lock
/// timeout. A flight that ended already keeps its outcome.
struct EndOnUnwind<'a, V: Clone>(&'a Flight<V>, Outcome<V>);

impl<V: Clone> Drop for EndOnUnwind<'_, V> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let outcome = std::mem::replace(&mut self.1, Outcome::Abandoned);
            self.0.finish(outcome).wake();
        }
    }
}

fn nanos(d: u64) -> Duration {
    Duration::from_nanos(d)
}

impl<V: Clone + Send + Sync + 'static> Cache<V> {
    /// A cache with every default (64 MiB, system clock).
    pub fn new() -> Self {
        Builder::default().build()
    }

    /// A builder to configure a cache.
    pub fn builder() -> Builder<V> {
        Builder::default()
    }

    #[inline]
    pub(crate) fn now_nanos(&self) -> u64 {
        self.inner.clock.now_nanos()
    }

    /// The cache clock's current time, the time base of every [`Hit`].
    pub fn now(&self) -> Duration {
        self.inner.clock.now()
    }

    #[inline]
    fn shard(&self, hash: u64) -> &RwLock<Shard<V>> {
        // Bits 32.. pick the shard: hashbrown uses the low bits and the top seven within a shard.
        &self.inner.shards[((hash >> 32) & self.inner.shard_mask) as usize]
    }

    /// Looks `key` up and answers what the caller should do: serve, serve and refresh, fill,
    /// wait, or pass through. See [`Lookup`].
    ///
    /// ```
    /// use peakcache::{Cache, Freshness, Lookup};
    /// use std::time::Duration;
    ///
    /// let cache: Cache<String> = Cache::new();
    /// let page = match cache.lookup(b"/home") {
    ///     Lookup::Fresh(hit) | Lookup::Stale(hit, None) => hit.into_value(),
    ///     Lookup::Stale(hit, Some(refresh)) => {
    ///         // Usually done in the background after answering.
    ///         let _ = refresh.commit("new home".into(), Freshness::new(Duration::from_secs(60)));
    ///         hit.into_value()
    ///     }
    ///     Lookup::Miss(fill) => {
    ///         let page = String::from("home"); // fetched from the origin
    ///         let _ = fill.commit(page.clone(), Freshness::new(Duration::from_secs(60)));
    ///         page
    ///     }
    ///     Lookup::Wait(waiter) => match waiter.wait(Duration::from_secs(5)) {
    ///         peakcache::Resolved::Hit(hit) => hit.into_value(),
    ///         _ => String::from("home"), // fetch for yourself
    ///     },
    ///     Lookup::Pass => String::from("home"), // fetch, do not store
    /// };
    /// assert_eq!(page, "home");
    /// ```
    pub fn lookup(&self, key: &[u8]) -> Lookup<V> {
        self.lookup_as(key, Asker::Caller)
    }

    fn count(&self, asker: Asker, c: Counter) {
        if asker == Asker::Caller {
            self.inner.counters.incr(c);
        }
    }

    fn hit(&self, n: &Node<V>, served: Served) -> Hit<V> {
        Hit {
            value: n.value.clone(),
            served,
            stored_at: nanos(n.stored_at),
            fresh_until: nanos(n.fresh_until()),
            revalidate_until: nanos(n.revalidate_until()),
            error_until: nanos(n.error_until()),
        }
    }

    /// Where `n` stands at `now`, as lookups see it: anything stored is fresh while frozen.
    fn standing(&self, n: &Node<V>, now: u64, frozen: bool) -> Option<Served> {
        if frozen {
            Some(Served::Fresh)
        } else {
            n.standing(now)
        }
    }

    /// A lookup by `asker`. First under the shard's read lock, for the answers that change
    /// nothing (a hit served as it stands); then, for anything else, under its write lock.
    /// Both ask the same [`decide`].
    pub(crate) fn lookup_as(&self, key: &[u8], asker: Asker) -> Lookup<V> {
        let probe = Probe::new(key);
        let hash = self.inner.hasher.hash(&probe);
        let now = self.now_nanos();
        let frozen = self.inner.frozen.load(Ordering::Relaxed);
        {
            let s = self.shard(hash).read();
            if let Some(n) = s.find_probe(hash, &probe).map(|i| s.node(i)) {
                let live = n
                    .tags
                    .as_ref()
                    .is_none_or(|t| self.inner.tags.verdict(t) == TagVerdict::Live);
                let standing = self.standing(n, now, frozen);
                if live && standing.is_some() {
                    let state = || s.control(key).map(|c| c.state(now)).unwrap_or_default();
                    if let Decision::Serve(served) = decide(standing, state, asker) {
                        n.links.touch();
                        self.count(asker, Counter::served(served));
                        return Lookup::serving(self.hit(n, served));
                    }
                }
            }
        }
        self.lookup_locked(key, hash, now, frozen, asker)
    }

    /// The lookup under the shard's write lock: ends an overdue flight, applies pending tag
    /// purges, then does what [`decide`] says.
    fn lookup_locked(
        &self,
        key: &[u8],
        hash: u64,
        now: u64,
        frozen: bool,
        asker: Asker,
    ) -> Lookup<V> {
        let mut wakeup = None;
        let answer = {
            let mut s = self.shard(hash).write();
            let overdue = s
                .control(key)
                .and_then(|c| c.flight.as_ref())
                .filter(|f| now >= f.deadline)
                .cloned();
            if let Some(f) = overdue {
                wakeup = Some(self.time_out(&mut s, key, hash, &f, now));
            }
            let idx = self.settle_tags(&mut s, key, hash);
            let standing = idx.and_then(|i| self.standing(s.node(i), now, frozen));
            let control = s.control(key);
            let state = || control.map(|c| c.state(now)).unwrap_or_default();
            match decide(standing, state, asker) {
                Decision::Serve(served) => {
                    let n = s.node(idx.expect("served entries exist"));
                    n.links.touch();
                    self.count(asker, Counter::served(served));
                    Lookup::serving(self.hit(n, served))
                }
                Decision::ServeAndRefresh(served) => {
                    let i = idx.expect("served entries exist");
                    s.node(i).links.touch();
                    // Cloned before the ticket exists: a panicking clone leaves no flight.
                    let hit = self.hit(s.node(i), served);
                    let ticket = self.start_flight(&mut s, key, hash, now, Kind::Refresh);
                    self.count(asker, Counter::served(served));
                    self.inner.counters.incr(Counter::RefreshesStarted);
                    Lookup::Stale(hit, Some(Refresh(ticket)))
                }
                Decision::Wait => {
                    self.count(asker, Counter::Wait);
                    let flight = control.and_then(|c| c.flight.clone());
                    Lookup::Wait(Waiter {
                        cache: self.clone(),
                        key: key.into(),
                        flight: flight.expect("a fetch in flight"),
                    })
                }
                Decision::Fill => {
                    // Past its windows but still stored: the filler may revalidate it.
                    let previous = idx.map(|i| s.node(i).value.clone());
                    self.count(asker, Counter::Miss);
                    let mut ticket = self.start_flight(&mut s, key, hash, now, Kind::Fill);
                    ticket.previous = previous;
                    Lookup::Miss(Fill(ticket))
                }
                Decision::Pass => {
                    self.count(asker, Counter::Pass);
                    Lookup::Pass
                }
            }
        };
        if let Some(w) = wakeup {
            w.wake();
        }
        answer
    }

    /// Finds `key`'s node with every tag purge applied to it: a hard-purged node is removed, a
    /// soft-purged one made stale from the purge on.
    fn settle_tags(&self, s: &mut Shard<V>, key: &[u8], hash: u64) -> Option<u32> {
        let i = s.find(hash, key)?;
        let verdict = match &s.node(i).tags {
            Some(t) => self.inner.tags.verdict(t),
            None => TagVerdict::Live,
        };
        match verdict {
            TagVerdict::Live => Some(i),
            TagVerdict::Purged => {
                drop(s.remove(i, hash, &self.inner.weigher));
                None
            }
            TagVerdict::StaleSince { at, seq } => {
                let n = s.node_mut(i);
                n.make_stale_at(at);
                if let Some(t) = n.tags.as_mut() {
                    t.mark_applied(seq);
                }
                Some(i)
            }
        }
    }

    fn start_flight(
        &self,
        s: &mut Shard<V>,
        key: &[u8],
        hash: u64,
        now: u64,
        kind: Kind,
    ) -> Ticket<V> {
        let deadline = self.inner.timing.deadline(now);
        let flight = Arc::new(Flight::new(now, deadline, self.inner.tags.next_seq()));
        s.begin_flight(key, hash, flight.clone(), now);
        Ticket {
            cache: self.clone(),
            key: key.into(),
            hash,
            flight,
            kind,
            done: false,
            previous: None,
        }
    }

    /// Removes `key`'s entry, if any.
    fn remove_key(&self, s: &mut Shard<V>, key: &[u8], hash: u64) {
        if let Some(i) = s.find(hash, key) {
            drop(s.remove(i, hash, &self.inner.weigher));
        }
    }

    /// Ends a flight past its lock timeout (see `time_out`).
    pub(crate) fn release_overdue(&self, key: &[u8], flight: &Arc<Flight<V>>) {
        let hash = self.inner.hasher.hash_key(key);
        let wakeup = {
            let mut s = self.shard(hash).write();
            let now = self.now_nanos();
            self.time_out(&mut s, key, hash, flight, now)
        };
        wakeup.wake();
    }

    /// Ends `flight`, past its lock timeout, as a failed fetch if it is still the key's flight:
    /// the key backs off (counted from the deadline), and the waiters get the stale-if-error
    /// entry if there is one, else are released to fetch for themselves.
    fn time_out(
        &self,
        s: &mut Shard<V>,
        key: &[u8],
        hash: u64,
        flight: &Arc<Flight<V>>,
        now: u64,
    ) -> Wakeup {
        let _ends = EndOnUnwind(flight, Outcome::TimedOut);
        let current = s
            .control(key)
            .and_then(|c| c.flight.as_ref())
            .is_some_and(|f| Arc::ptr_eq(f, flight));
        if !current {
            return flight.finish(Outcome::TimedOut);
        }
        s.end_flight(key, hash);
        s.control_mut(key, now)
            .record
            .fail(flight.deadline, &self.inner.timing);
        let stale = self.stale_if_error(s, key, hash, now);
        s.tidy_control(key, now);
        flight.finish(match stale {
            Some(hit) => Outcome::Failed(Some(hit)),
            None => Outcome::TimedOut,
        })
    }

    /// The entry of `key` to serve when a fetch failed: still inside a stale window.
    fn stale_if_error(&self, s: &mut Shard<V>, key: &[u8], hash: u64, now: u64) -> Option<Hit<V>> {
        self.settle_tags(s, key, hash).and_then(|i| {
            let n = s.node(i);
            n.standing(now).map(|_| self.hit(n, Served::StaleIfError))
        })
    }

    pub(crate) fn count_wait_timeout(&self) {
        self.inner.counters.incr(Counter::WaitTimeout);
    }

    /// Builds the node for `value` and its weight, or refuses it.
    fn make_node(
        &self,
        key: &[u8],
        value: V,
        freshness: Freshness,
        tags: &[&[u8]],
        seq: u64,
        now: u64,
    ) -> Result<(Node<V>, u64), (V, InsertError)> {
        let weight = (self.inner.weigher)(key, &value);
        if weight > self.inner.max_object {
            self.inner.counters.incr(Counter::RejectedTooLarge);
            return Err((
                value,
                InsertError::TooLarge {
                    weight,
                    limit: self.inner.max_object,
                },
            ));
        }
        let [ttl_ms, swr_ms, sie_ms] = freshness.millis();
        let node = Node {
            key: key.into(),
            value,
            stored_at: now,
            ttl_ms,
            swr_ms,
            sie_ms,
            tags: self.inner.tags.tag_set(seq, tags),
            links: Links::new(),
        };
        Ok((node, weight))
    }

    /// Puts `node` in the shard, replacing any node of the same key; counts what it displaced.
    fn store(&self, s: &mut Shard<V>, hash: u64, node: Node<V>, weight: u64, now: u64) {
        let mut departed = Vec::new();
        match s.find(hash, &node.key) {
            Some(i) => s.replace(i, node, weight, &self.inner.weigher, now, &mut departed),
            None => s.insert_new(hash, node, weight, &self.inner.weigher, now, &mut departed),
        }
        for d in departed {
            self.inner.counters.incr(match d {
                Departure::Evicted => Counter::Evictions,
                Departure::Expired => Counter::Expirations,
            });
        }
    }

    /// Ends ticket `t`'s flight under the shard lock: `end` decides the outcome its waiters
    /// get, knowing whether the flight is still the key's (`current`: not overtaken after its
    /// lock timeout). The waiters are woken once the lock is released; a panic in `end` (a
    /// value's clone) still ends the flight, as abandoned.
    fn end_flight(&self, t: &Ticket<V>, end: impl FnOnce(&mut Shard<V>, bool, u64) -> Outcome<V>) {
        let _ends = EndOnUnwind(&t.flight, Outcome::Abandoned);
        let wakeup = {
            let mut s = self.shard(t.hash).write();
            let now = self.now_nanos();
            let current = s
                .control(&t.key)
                .and_then(|c| c.flight.as_ref())
                .is_some_and(|f| Arc::ptr_eq(f, &t.flight));
            if current {
                s.end_flight(&t.key, t.hash);
            }
            let outcome = end(&mut s, current, now);
            s.tidy_control(&t.key, now);
            t.flight.finish(outcome)
        };
        wakeup.wake();
    }

    /// Counts a ticket's ending: `fill` for a fill, `refresh` for a refresh.
    fn count_ending(&self, t: &Ticket<V>, fill: Counter, refresh: Counter) {
        self.inner.counters.incr(match t.kind {
            Kind::Fill => fill,
            Kind::Refresh => refresh,
        });
    }

    /// Completes `t` with `value`: stored (unless too heavy, or a later fill stored already)
    /// and handed to its waiters.
    pub(crate) fn commit(
        &self,
        t: &Ticket<V>,
        value: V,
        freshness: Freshness,
        tags: &[&[u8]],
    ) -> Result<(), InsertError> {
        self.count_ending(t, Counter::FillsCommitted, Counter::RefreshesCommitted);
        let mut result = Ok(());
        self.end_flight(t, |s, current, now| {
            match self.make_node(&t.key, value, freshness, tags, t.flight.seq, now) {
                Ok((mut node, weight)) => {
                    if t.flight.is_invalidated() {
                        node.ttl_ms = 0;
                    }
                    let hit = self.hit(&node, Served::Fresh);
                    // A fill overtaken after its lock timeout does not replace what a later
                    // fill stored.
                    let newer = s
                        .find(t.hash, &t.key)
                        .is_some_and(|i| s.node(i).stored_at > t.flight.started_at);
                    if (current || !newer) && !t.flight.is_superseded() {
                        self.store(s, t.hash, node, weight, now);
                        s.control_mut(&t.key, now).record.stored();
                    }
                    Outcome::Value(hit)
                }
                Err((value, e)) => {
                    // The waiters get the new value; the old one is outdated by it (unless
                    // restored since the fetch began).
                    if !t.flight.is_superseded() {
                        self.remove_key(s, &t.key, t.hash);
                    }
                    result = Err(e);
                    let at = nanos(now);
                    Outcome::Value(Hit {
                        value,
                        served: Served::Fresh,
                        stored_at: at,
                        fresh_until: at.saturating_add(freshness.ttl),
                        revalidate_until: at,
                        error_until: at,
                    })
                }
            }
        });
        result
    }

    /// Completes `t` as failed: the key backs off, and the waiters get the stale-if-error
    /// entry, if any, which is returned too.
    pub(crate) fn fail(&self, t: &Ticket<V>) -> Option<Hit<V>> {
        self.count_ending(t, Counter::FillsFailed, Counter::RefreshesFailed);
        let mut handed = None;
        self.end_flight(t, |s, current, now| {
            // A fetch overtaken after its lock timeout was counted as failed then.
            if current {
                s.control_mut(&t.key, now)
                    .record
                    .fail(now, &self.inner.timing);
            }
            let stale = self.stale_if_error(s, &t.key, t.hash, now);
            handed = stale.clone();
            Outcome::Failed(stale)
        });
        handed
    }

    /// Completes `t` as uncacheable: the entry goes, and the key passes through for `hold`.
    pub(crate) fn pass_through(&self, t: &Ticket<V>, hold: Duration) {
        self.count_ending(t, Counter::FillsUncacheable, Counter::RefreshesUncacheable);
        self.end_flight(t, |s, _, now| {
            if !t.flight.is_superseded() {
                self.remove_key(s, &t.key, t.hash);
            }
            s.control_mut(&t.key, now).record.pass_for(now, hold);
            Outcome::Pass
        });
    }

    /// Completes `t`, dropped unused: a waiter takes the fill over; a refresh is handed out
    /// again after the refresh retry delay.
    pub(crate) fn abandon(&self, t: &Ticket<V>) {
        self.count_ending(t, Counter::FillsAbandoned, Counter::RefreshesAbandoned);
        self.end_flight(t, |s, current, now| {
            if current && t.kind == Kind::Refresh {
                s.control_mut(&t.key, now)
                    .record
                    .refresh_dropped(now, self.inner.timing.refresh_retry);
            }
            Outcome::Abandoned
        });
    }

    /// The value of `key` if it is stored and fresh (or the cache is frozen); `None` otherwise.
    /// Counted as a lookup (fresh or miss). Takes no part in the lifecycle: use
    /// [`lookup`](Self::lookup) to get stale values, fills and waiting.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<V> {
        let probe = Probe::new(key);
        let hash = self.inner.hasher.hash(&probe);
        let now = self.now_nanos();
        let found = {
            let s = self.shard(hash).read();
            s.find_probe(hash, &probe).and_then(|i| {
                let n = s.node(i);
                self.servable_by_get(n, now).then(|| {
                    n.links.touch();
                    n.value.clone()
                })
            })
        };
        self.inner.counters.incr(if found.is_some() {
            Counter::Fresh
        } else {
            Counter::Miss
        });
        found
    }

    /// Whether `get` serves `n` at `now`: fresh (or frozen) and not purged by tag. A soft tag
    /// purge made it stale since the purge (not after now), so it is served only frozen, as
    /// `lookup` does.
    #[inline]
    fn servable_by_get(&self, n: &Node<V>, now: u64) -> bool {
        let frozen = || self.inner.frozen.load(Ordering::Relaxed);
        if now >= n.fresh_until() && !frozen() {
            return false;
        }
        match n.tags.as_ref().map(|t| self.inner.tags.verdict(t)) {
            None | Some(TagVerdict::Live) => true,
            Some(TagVerdict::StaleSince { .. }) => frozen(),
            Some(TagVerdict::Purged) => false,
        }
    }

    /// Stores `value` under `key`, replacing what was there, outside the fill lifecycle (waiters
    /// of a fill in flight keep waiting for it). Refused, and counted, when heavier than the
    /// object limit.
    pub fn insert(&self, key: &[u8], value: V, freshness: Freshness) -> Result<(), InsertError> {
        self.insert_tagged(key, value, freshness, &[] as &[&[u8]])
    }

    /// Like [`insert`](Self::insert), with tags for [`purge_tag`](Self::purge_tag).
    pub fn insert_tagged<T: AsRef<[u8]>>(
        &self,
        key: &[u8],
        value: V,
        freshness: Freshness,
        tags: &[T],
    ) -> Result<(), InsertError> {
        self.put(key, value, freshness, tags, None)
    }

    /// Stores an entry listed earlier by [`list`](Self::list), of this cache or another, as
    /// old as it is: stored `age` ago (by this cache's clock), with `freshness`'s windows counted
    /// from then, so it is fresh, stale or past its windows exactly as it would have been had it
    /// stayed. A snapshot restored after a while passes its age plus the time since it was
    /// written. A cache younger than `age` (its clock starts at zero) records it as stored at
    /// its start, with each window shortened by the difference: every instant falls where it
    /// would have ([`Hit::stored_at`] then says the start).
    ///
    /// Otherwise like [`insert_tagged`](Self::insert_tagged), with one difference: a fill or
    /// refresh of the key in flight when it is restored still hands its value to its waiters,
    /// but does not store it (nor, if it finds the answer uncacheable, remove the restored
    /// entry): a rollback to a snapshot is not undone by the fetches it raced with.
    pub fn restore<T: AsRef<[u8]>>(
        &self,
        key: &[u8],
        value: V,
        freshness: Freshness,
        age: Duration,
        tags: &[T],
    ) -> Result<(), InsertError> {
        self.put(key, value, freshness, tags, Some(duration_to_nanos(age)))
    }

    /// Stores `value` under `key` outside the lifecycle: as new, or `age` nanoseconds old
    /// (restored, see [`restore`](Self::restore)).
    fn put<T: AsRef<[u8]>>(
        &self,
        key: &[u8],
        value: V,
        freshness: Freshness,
        tags: &[T],
        age: Option<u64>,
    ) -> Result<(), InsertError> {
        let tags: Vec<&[u8]> = tags.iter().map(AsRef::as_ref).collect();
        let hash = self.inner.hasher.hash_key(key);
        let seq = self.inner.tags.next_seq();
        let mut s = self.shard(hash).write();
        let now = self.now_nanos();
        let (mut node, weight) = match self.make_node(key, value, freshness, &tags, seq, now) {
            Ok(made) => made,
            Err((_, e)) => {
                // The stored value is outdated by the refused one: never serve it as current.
                self.remove_key(&mut s, key, hash);
                return Err(e);
            }
        };
        if let Some(age) = age {
            node.backdate(now, age);
            if let Some(f) = s.control(key).and_then(|c| c.flight.as_ref()) {
                f.supersede();
            }
        }
        self.store(&mut s, hash, node, weight, now);
        if s.control(key).is_some() {
            s.control_mut(key, now).record.stored();
            s.tidy_control(key, now);
        }
        self.inner.counters.incr(Counter::Inserts);
        Ok(())
    }

    /// Purges `key`. Hard: removed at once. Soft: made stale now, so it is still served inside
    /// its stale windows (counted from now) while one caller refreshes it. A fill of the key in
    /// flight stores its value already stale, since it may have fetched what was purged.
    /// Returns whether an entry or a fill of the key was found.
    pub fn purge(&self, key: &[u8], mode: PurgeMode) -> bool {
        let hash = self.inner.hasher.hash_key(key);
        let mut s = self.shard(hash).write();
        let now = self.now_nanos();
        let mut found = false;
        if let Some(f) = s.control(key).and_then(|c| c.flight.as_ref()) {
            f.invalidate();
            found = true;
        }
        // An entry a tag purge already removed is not found (tag purges apply lazily).
        if let Some(i) = self.settle_tags(&mut s, key, hash) {
            found = true;
            match mode {
                PurgeMode::Hard => drop(s.remove(i, hash, &self.inner.weigher)),
                PurgeMode::Soft => s.node_mut(i).make_stale_at(now),
            }
        }
        if found {
            self.inner.counters.incr(Counter::Purges);
        }
        found
    }

    /// Purges every entry tagged `tag` whose fill started before now, hard or soft (see
    /// [`purge`](Self::purge)). Takes effect at once for every later lookup, in constant time
    /// whatever the number of entries tagged: entries are checked lazily when next looked up.
    ///
    /// Each purge of a new tag keeps one record, up to [`Builder::max_tag_marks`]; past that
    /// the oldest half of the records is folded into one that matches every tagged entry fetched
    /// before them. A purge therefore never matches fewer entries than it names, and may match
    /// more once the table has been folded. The purge that folds walks the records once (so the
    /// cost stays constant amortized over the `max / 2` purges of new tags between folds).
    pub fn purge_tag(&self, tag: impl AsRef<[u8]>, mode: PurgeMode) {
        self.inner.tags.purge(tag.as_ref(), mode, self.now_nanos());
        self.inner.counters.incr(Counter::TagPurges);
    }

    /// Removes every entry. Fills in flight go on and store their values already stale.
    pub fn clear(&self) {
        for lock in self.inner.shards.iter() {
            let mut s = lock.write();
            s.for_each_flight(|f| f.invalidate());
            s.clear();
        }
    }

    /// Freezes or thaws the cache. While frozen, whatever is stored is served as fresh (even past
    /// its windows) and only misses reach the origin: the "let's not touch anything" switch.
    pub fn freeze(&self, frozen: bool) {
        self.inner.frozen.store(frozen, Ordering::SeqCst);
        for lock in self.inner.shards.iter() {
            lock.write().frozen = frozen;
        }
    }

    /// Whether the cache is frozen.
    pub fn is_frozen(&self) -> bool {
        self.inner.frozen.load(Ordering::SeqCst)
    }

    /// A snapshot of the counters, the number of entries and their weight.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::from_counters(&self.inner.counters);
        for lock in self.inner.shards.iter() {
            let s = lock.read();
            stats.entries += s.len() as u64;
            stats.weight += s.weight;
        }
        stats.capacity = self.inner.capacity;
        stats.tag_marks = self.inner.tags.marks();
        stats.tag_folds = self.inner.tags.folds();
        stats
    }

    /// The number of entries stored (dead and lazily purged ones included until removed).
    pub fn len(&self) -> usize {
        self.inner.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest weight one entry may have.
    pub fn max_object_weight(&self) -> u64 {
        self.inner.max_object
    }

    /// The number of shards (a power of two).
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// Every entry a lookup would serve now (fresh, or stale inside a window; while frozen,
    /// everything stored), with what [`restore`](Self::restore) needs to put it back: for a
    /// snapshot. The entries are copied shard by shard, as the iterator reaches each: under the
    /// shard's read lock the keys are copied and the values and tag names cloned, and nothing
    /// else is done there, so lookups go on and a writer of that shard waits for one shard's
    /// copy at most. Consistent per shard, not across shards: an entry stored or removed
    /// meanwhile may or may not be listed, and every entry listed is one that was stored.
    /// Hard-purged entries (by key or tag) are not listed; soft-purged ones are, as stale as
    /// they are.
    ///
    /// ```
    /// use peakcache::{Cache, Freshness, Lookup, ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new();
    /// let cache: Cache<u32> = Cache::builder().clock(clock.clone()).build();
    /// cache.insert_tagged(b"/a", 1, Freshness::new(Duration::from_secs(60)), &["home"])?;
    /// clock.advance(Duration::from_secs(20));
    ///
    /// // Another cache, just started: the entry is as old there, fresh for its last 40 s.
    /// let copy: Cache<u32> = Cache::builder().clock(ManualClock::new()).build();
    /// for e in cache.list() {
    ///     let tags: Vec<&[u8]> = e.tags().iter().collect();
    ///     copy.restore(e.key(), *e.value(), e.freshness(), e.age(), &tags)?;
    /// }
    /// let Lookup::Fresh(hit) = copy.lookup(b"/a") else { unreachable!() };
    /// assert_eq!(hit.fresh_until(), Duration::from_secs(40));
    /// # Ok::<(), peakcache::InsertError>(())
    /// ```
    pub fn list(&self) -> Listing<V> {
        Listing::new(self.clone(), self.now_nanos())
    }

    /// Appends the servable entries of shard `shard` to `out`, their ages counted from `began`
    /// (see [`list`](Self::list)).
    pub(crate) fn list_shard(&self, shard: usize, began: u64, out: &mut Vec<Listed<V>>) {
        let frozen = self.inner.frozen.load(Ordering::SeqCst);
        let s = self.inner.shards[shard].read();
        let now = self.now_nanos();
        out.reserve(s.len());
        for n in s.nodes() {
            let fresh_until = match n.tags.as_ref().map(|t| self.inner.tags.verdict(t)) {
                None | Some(TagVerdict::Live) => n.fresh_until(),
                Some(TagVerdict::StaleSince { at, .. }) => n.fresh_until().min(at),
                Some(TagVerdict::Purged) => continue,
            };
            let windows = [n.swr_ms, n.sie_ms].map(millis_to_nanos);
            let last = fresh_until.saturating_add(windows[0].max(windows[1]));
            if now >= last && !frozen {
                continue;
            }
            out.push(Listed {
                key: (*n.key).into(),
                value: n.value.clone(),
                age: nanos(began.saturating_sub(n.stored_at)),
                freshness: Freshness {
                    ttl: nanos(fresh_until.saturating_sub(n.stored_at)),
                    swr: nanos(windows[0]),
                    sie: nanos(windows[1]),
                },
                tags: n
                    .tags
                    .as_ref()
                    .map(|t| t.names().clone())
                    .unwrap_or_default(),
            });
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Default for Cache<V> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    #[test]
    fn default_shards_are_a_power_of_two_none_smaller_than_256_kib() {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        let most = (cores * 4).next_power_of_two();
        assert_eq!(default_shards(0), 1);
        assert_eq!(default_shards(1_000), 2, "256 units each below 1 MiB");
        assert_eq!(default_shards(1 << 20), 4.min(most));
        assert_eq!(default_shards(1 << 40), most);
        for bytes in [1u64, 300, 5 << 20, 77 << 30] {
            assert!(default_shards(bytes).is_power_of_two());
        }
    }

    #[test]
    fn keys_spread_evenly_over_the_shards() {
        let cache: Cache<u32> = Cache::builder().shards(16).hash_seed(7).build();
        let mut per_shard = [0u32; 16];
        for k in 0..16_000u32 {
            let hash = cache.inner.hasher.hash_key(&k.to_be_bytes());
            let shard = cache.shard(hash) as *const _;
            let i = cache
                .inner
                .shards
                .iter()
                .position(|s| std::ptr::eq(s, shard));
            per_shard[i.unwrap()] += 1;
        }
        assert!(
            per_shard.iter().all(|&n| (800..1_200).contains(&n)),
            "{per_shard:?}"
        );
    }

    #[test]
    fn a_flight_is_ended_by_a_panic_and_only_by_a_panic() {
        let flight: Flight<u32> = Flight::new(0, 10, 0);
        drop(EndOnUnwind(&flight, Outcome::Abandoned));
        assert!(flight.outcome().is_none(), "no panic: left to its owner");
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let _ends = EndOnUnwind(&flight, Outcome::TimedOut);
            panic!("a clone failed");
        }));
        assert!(matches!(flight.outcome(), Some(Outcome::TimedOut)));
    }

    #[test]
    fn the_served_answers_are_counted_as_what_they_served() {
        let cache: Cache<u32> = Cache::new();
        assert!(matches!(
            Lookup::serving(Hit {
                value: 1,
                served: Served::Stale,
                stored_at: Duration::ZERO,
                fresh_until: Duration::ZERO,
                revalidate_until: Duration::ZERO,
                error_until: Duration::ZERO,
            }),
            Lookup::Stale(_, None)
        ));
        for served in [Served::Fresh, Served::Stale, Served::StaleIfError] {
            cache.count(Asker::Caller, Counter::served(served));
            cache.count(Asker::Waiter, Counter::served(served));
        }
        let s = cache.stats();
        assert_eq!(
            (s.fresh, s.stale, s.stale_if_error),
            (1, 1, 1),
            "waiters not counted"
        );
    }
}
