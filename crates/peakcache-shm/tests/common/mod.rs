//! One face for both backends, so that every lifecycle test runs against the in-process
//! `peakcache::Cache<Bytes>` and the shared `ShmCache` alike.
#![allow(dead_code)]

use bytes::Bytes;
use peakcache::{Cache, Clock, Freshness, PurgeMode, Served, Stats};
use peakcache_shm::ShmCache;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const SEC: Duration = Duration::from_secs(1);

/// A lookup answer, backend-neutral.
pub enum L {
    Fresh(Vec<u8>),
    Stale(Vec<u8>, Served, Option<Box<dyn Ticket>>),
    Miss(Box<dyn Ticket>),
    Wait(Box<dyn W>),
    Pass,
}

impl L {
    pub fn name(&self) -> &'static str {
        match self {
            L::Fresh(_) => "Fresh",
            L::Stale(_, _, Some(_)) => "Stale+ticket",
            L::Stale(_, _, None) => "Stale",
            L::Miss(_) => "Miss",
            L::Wait(_) => "Wait",
            L::Pass => "Pass",
        }
    }
}

/// A waiter's answer, backend-neutral.
pub enum R {
    Hit(Vec<u8>),
    Fill(Box<dyn Ticket>),
    Pass,
    Failed,
    TimedOut,
}

impl R {
    pub fn name(&self) -> &'static str {
        match self {
            R::Hit(_) => "Hit",
            R::Fill(_) => "Fill",
            R::Pass => "Pass",
            R::Failed => "Failed",
            R::TimedOut => "TimedOut",
        }
    }
}

/// A fill or refresh ticket. Dropping it abandons it.
pub trait Ticket: Send {
    /// For a fill: the value still stored past its windows, for revalidation; for a refresh:
    /// None.
    fn previous(&self) -> Option<Vec<u8>>;
    fn commit(self: Box<Self>, value: &[u8], f: Freshness, tags: &[&str]) -> bool;
    /// For a fill: the stale-if-error value handed back; for a refresh: None.
    fn fail(self: Box<Self>) -> Option<(Vec<u8>, Served)>;
    fn uncacheable(self: Box<Self>, hold: Duration);
}

pub trait W {
    fn try_wait(self: Box<Self>) -> Result<R, Box<dyn W>>;
    fn wait(self: Box<Self>, t: Duration) -> R;
}

pub struct Options {
    pub lock_timeout: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub refresh_retry: Duration,
    pub max_bytes: u64,
    /// The shard count; `None`: each backend's default.
    pub shards: Option<u32>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            lock_timeout: 10 * SEC,
            retry_min: 2 * SEC,
            retry_max: 16 * SEC,
            refresh_retry: SEC,
            max_bytes: 4 << 20,
            shards: None,
        }
    }
}

impl Options {
    /// A small cache in one shard: about 190 in-process entries of a 4-byte key and a 1-byte
    /// value, 128 shared ones (records of two 64-byte units).
    pub fn small() -> Self {
        Options {
            max_bytes: 16 << 10,
            shards: Some(1),
            ..Options::default()
        }
    }
}

/// A step to run later, once.
pub type Hook = Box<dyn FnOnce() + Send>;

/// A clock that runs a hook the next time it is read: to put another caller's step at an exact
/// point of a lookup or a wait, without threads or sleeps.
#[derive(Clone, Default)]
pub struct HookClock {
    pub time: peakcache::ManualClock,
    pub hook: Arc<Mutex<Option<Hook>>>,
}

impl HookClock {
    /// Runs `f` at the next reading of the clock.
    pub fn at_next_reading(&self, f: impl FnOnce() + Send + 'static) {
        *self.hook.lock().unwrap() = Some(Box::new(f));
    }
}

impl Clock for HookClock {
    fn now(&self) -> Duration {
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        self.time.now()
    }
}

pub trait Backend: Sized {
    fn build(clock: impl Clock, o: Options) -> Self;
    fn lookup(&self, key: &[u8]) -> L;
    fn insert(&self, key: &[u8], value: &[u8], f: Freshness, tags: &[&str]) -> bool;
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;
    fn purge(&self, key: &[u8], mode: PurgeMode) -> bool;
    fn purge_tag(&self, tag: &str, mode: PurgeMode);
    fn clear(&self);
    fn freeze(&self, on: bool);
    fn stats(&self) -> Stats;
    /// Entries stored.
    fn len(&self) -> usize;
}

// ---- in-process ------------------------------------------------------------------------------

pub struct InProc(pub Cache<Bytes>);

struct InFill(peakcache::Fill<Bytes>);
struct InRefresh(peakcache::Refresh<Bytes>);
struct InWait(peakcache::Waiter<Bytes>);

fn in_lookup(l: peakcache::Lookup<Bytes>) -> L {
    use peakcache::Lookup::*;
    match l {
        Fresh(h) => L::Fresh(h.value().to_vec()),
        Stale(h, t) => L::Stale(
            h.value().to_vec(),
            h.served(),
            t.map(|t| Box::new(InRefresh(t)) as Box<dyn Ticket>),
        ),
        Miss(f) => L::Miss(Box::new(InFill(f))),
        Wait(w) => L::Wait(Box::new(InWait(w))),
        Pass => L::Pass,
    }
}

fn in_resolved(r: peakcache::Resolved<Bytes>) -> R {
    use peakcache::Resolved::*;
    match r {
        Hit(h) => R::Hit(h.value().to_vec()),
        Fill(f) => R::Fill(Box::new(InFill(f))),
        Pass => R::Pass,
        Failed => R::Failed,
        TimedOut => R::TimedOut,
    }
}

impl Ticket for InFill {
    fn previous(&self) -> Option<Vec<u8>> {
        self.0.previous().map(|v| v.to_vec())
    }
    fn commit(self: Box<Self>, value: &[u8], f: Freshness, tags: &[&str]) -> bool {
        self.0
            .commit_tagged(Bytes::copy_from_slice(value), f, tags)
            .is_ok()
    }
    fn fail(self: Box<Self>) -> Option<(Vec<u8>, Served)> {
        self.0.fail().map(|h| (h.value().to_vec(), h.served()))
    }
    fn uncacheable(self: Box<Self>, hold: Duration) {
        self.0.uncacheable(hold)
    }
}

impl Ticket for InRefresh {
    fn previous(&self) -> Option<Vec<u8>> {
        None
    }
    fn commit(self: Box<Self>, value: &[u8], f: Freshness, tags: &[&str]) -> bool {
        self.0
            .commit_tagged(Bytes::copy_from_slice(value), f, tags)
            .is_ok()
    }
    fn fail(self: Box<Self>) -> Option<(Vec<u8>, Served)> {
        self.0.fail();
        None
    }
    fn uncacheable(self: Box<Self>, hold: Duration) {
        self.0.uncacheable(hold)
    }
}

impl W for InWait {
    fn try_wait(self: Box<Self>) -> Result<R, Box<dyn W>> {
        self.0
            .try_wait()
            .map(in_resolved)
            .map_err(|w| Box::new(InWait(w)) as Box<dyn W>)
    }
    fn wait(self: Box<Self>, t: Duration) -> R {
        in_resolved(self.0.wait(t))
    }
}

impl Backend for InProc {
    fn build(clock: impl Clock, o: Options) -> Self {
        let mut b = Cache::builder();
        if let Some(n) = o.shards {
            b = b.shards(n as usize);
        }
        InProc(
            b.clock(clock)
                .max_bytes(o.max_bytes)
                .weigher(|k, v: &Bytes| (k.len() + v.len()) as u64 + 80)
                .lock_timeout(o.lock_timeout)
                .retry_backoff(o.retry_min, o.retry_max)
                .refresh_retry(o.refresh_retry)
                .build(),
        )
    }
    fn lookup(&self, key: &[u8]) -> L {
        in_lookup(self.0.lookup(key))
    }
    fn insert(&self, key: &[u8], value: &[u8], f: Freshness, tags: &[&str]) -> bool {
        self.0
            .insert_tagged(key, Bytes::copy_from_slice(value), f, tags)
            .is_ok()
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key).map(|b| b.to_vec())
    }
    fn purge(&self, key: &[u8], mode: PurgeMode) -> bool {
        self.0.purge(key, mode)
    }
    fn purge_tag(&self, tag: &str, mode: PurgeMode) {
        self.0.purge_tag(tag, mode)
    }
    fn clear(&self) {
        self.0.clear()
    }
    fn freeze(&self, on: bool) {
        self.0.freeze(on)
    }
    fn stats(&self) -> Stats {
        self.0.stats()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

// ---- shared memory ---------------------------------------------------------------------------

pub struct Shm(pub ShmCache);

struct ShmFill(peakcache_shm::Fill);
struct ShmRefresh(peakcache_shm::Refresh);
struct ShmWait(peakcache_shm::Waiter);

fn shm_lookup(l: peakcache_shm::Lookup) -> L {
    use peakcache_shm::Lookup::*;
    match l {
        Fresh(h) => L::Fresh(h.value().to_vec()),
        Stale(h, t) => L::Stale(
            h.value().to_vec(),
            h.served(),
            t.map(|t| Box::new(ShmRefresh(t)) as Box<dyn Ticket>),
        ),
        Miss(f) => L::Miss(Box::new(ShmFill(f))),
        Wait(w) => L::Wait(Box::new(ShmWait(w))),
        Pass => L::Pass,
    }
}

fn shm_resolved(r: peakcache_shm::Resolved) -> R {
    use peakcache_shm::Resolved::*;
    match r {
        Hit(h) => R::Hit(h.value().to_vec()),
        Fill(f) => R::Fill(Box::new(ShmFill(f))),
        Pass => R::Pass,
        Failed => R::Failed,
        TimedOut => R::TimedOut,
    }
}

impl Ticket for ShmFill {
    fn previous(&self) -> Option<Vec<u8>> {
        self.0.previous().map(|p| p.value().to_vec())
    }
    fn commit(self: Box<Self>, value: &[u8], f: Freshness, tags: &[&str]) -> bool {
        self.0.commit_tagged(value, f, tags).is_ok()
    }
    fn fail(self: Box<Self>) -> Option<(Vec<u8>, Served)> {
        self.0.fail().map(|h| (h.value().to_vec(), h.served()))
    }
    fn uncacheable(self: Box<Self>, hold: Duration) {
        self.0.uncacheable(hold)
    }
}

impl Ticket for ShmRefresh {
    fn previous(&self) -> Option<Vec<u8>> {
        None
    }
    fn commit(self: Box<Self>, value: &[u8], f: Freshness, tags: &[&str]) -> bool {
        self.0.commit_tagged(value, f, tags).is_ok()
    }
    fn fail(self: Box<Self>) -> Option<(Vec<u8>, Served)> {
        self.0.fail();
        None
    }
    fn uncacheable(self: Box<Self>, hold: Duration) {
        self.0.uncacheable(hold)
    }
}

impl W for ShmWait {
    fn try_wait(self: Box<Self>) -> Result<R, Box<dyn W>> {
        self.0
            .try_wait()
            .map(shm_resolved)
            .map_err(|w| Box::new(ShmWait(w)) as Box<dyn W>)
    }
    fn wait(self: Box<Self>, t: Duration) -> R {
        shm_resolved(self.0.wait(t))
    }
}

impl Backend for Shm {
    fn build(clock: impl Clock, o: Options) -> Self {
        let mut b = ShmCache::builder();
        if let Some(n) = o.shards {
            b = b.shards(n);
        }
        Shm(b
            .clock(clock)
            .max_bytes(o.max_bytes)
            .lock_timeout(o.lock_timeout)
            .retry_backoff(o.retry_min, o.retry_max)
            .refresh_retry(o.refresh_retry)
            .anonymous()
            .expect("anonymous region"))
    }
    fn lookup(&self, key: &[u8]) -> L {
        shm_lookup(self.0.lookup(key))
    }
    fn insert(&self, key: &[u8], value: &[u8], f: Freshness, tags: &[&str]) -> bool {
        self.0.insert_tagged(key, value, f, tags).is_ok()
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key).map(|b| b.to_vec())
    }
    fn purge(&self, key: &[u8], mode: PurgeMode) -> bool {
        self.0.purge(key, mode)
    }
    fn purge_tag(&self, tag: &str, mode: PurgeMode) {
        self.0.purge_tag(tag, mode)
    }
    fn clear(&self) {
        self.0.clear()
    }
    fn freeze(&self, on: bool) {
        self.0.freeze(on)
    }
    fn stats(&self) -> Stats {
        self.0.stats()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}
