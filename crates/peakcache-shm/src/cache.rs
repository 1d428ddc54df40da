//! The shared cache: the lookup decision and the completion of tickets, over the shards of a
//! region.

use crate::error::{ShmError, StoreError};
use crate::file::Owner;
use crate::journal::{
    self, FollowerBusy, Journal, JournalCursor, JournalEvent, JournalOp, PurgeOrigin,
};
use crate::mutex::LockError;
use crate::process;
use crate::region::{
    self, Attach, Geometry, Opened, Region, Settings, FLAG_REGION_CLOCK, H_CLOCK, H_FROZEN,
    H_J_SEQ, H_J_UNRECORDED, H_MONO_OFFSET, H_SEQ, H_STALE_ALL_AT, H_STALE_ALL_SEQ,
    H_TAG_LOCK_TIMEOUTS, JOURNAL_MIN, UNIT,
};
use crate::shard::{
    self, Evicted, Locked, NewRecord, Optimistic, Outcome, Rec, RegionCounter, Standing, MAX_KEY,
    MAX_TAGS,
};
use crate::tags::{tag_hash, Tags, Verdict};
use bytes::Bytes;
use peakcache::lifecycle::{decide, Asker, Decision, KeyRecord, KeyState, Timing};
use peakcache::stats::Counter;
use peakcache::{Clock, Freshness, PurgeMode, Served, Stats};
use std::path::Path;
use std::sync::atomic::Ordering::{Acquire, Relaxed, SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A cache in a shared memory region, attached by any number of processes at once.
///
/// Cloning is cheap (a handle on the same mapping). The lifecycle is the in-process cache's
/// ([`peakcache::Cache`]): see the [crate documentation](crate).
#[derive(Clone)]
pub struct ShmCache {
    inner: Arc<Inner>,
    /// What this handle's purges say of themselves in the journal.
    origin: PurgeOrigin,
}

struct Inner {
    region: Region,
    time: TimeSource,
    shard_mask: u64,
}

enum TimeSource {
    /// `CLOCK_MONOTONIC_COARSE` plus the region's offset: the same time in every process.
    System,
    /// The region's clock word, advanced by hand ([`ShmCache::advance_clock`]).
    Region,
    /// A clock of this attachment (every process must use an equivalent one).
    Custom(Arc<dyn Clock>),
}

/// Builds or attaches a [`ShmCache`]. Geometry and lifecycle settings apply when a region is
/// created; attaching to an existing region takes them from its header (and
/// [`open`](Builder::open) checks that they match).
pub struct Builder {
    max_bytes: u64,
    shards: Option<u32>,
    max_entries: Option<u64>,
    max_object: Option<u64>,
    tag_slots: u32,
    journal_bytes: Option<u64>,
    timing: Timing,
    clock: Option<Arc<dyn Clock>>,
    region_clock: bool,
    recreate: bool,
    seed: Option<u64>,
    owner_uid: Option<u32>,
    owner_gid: Option<u32>,
    group_shared: bool,
    lock_bound: Option<Duration>,
    report: Option<region::Report>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            max_bytes: 64 << 20,
            shards: None,
            max_entries: None,
            max_object: None,
            tag_slots: 4096,
            journal_bytes: None,
            timing: Timing::default(),
            clock: None,
            region_clock: false,
            recreate: true,
            seed: None,
            owner_uid: None,
            owner_gid: None,
            group_shared: false,
            lock_bound: None,
            report: None,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Builder {
    /// The bytes of the heap that stores entries (records: header, tags, key, value, rounded
    /// up to 64 bytes), split evenly between shards. The region adds the index (64 bytes per
    /// slot), a bitmap and headers. Default 64 MiB.
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = n;
        self
    }

    /// The number of shards (rounded up to a power of two, at most 4,096). Default: one per
    /// MiB of heap, at most 16.
    pub fn shards(mut self, n: u32) -> Self {
        self.shards = Some(n.clamp(1, region::MAX_SHARDS).next_power_of_two());
        self
    }

    /// The most entries the index must hold (sizes the index: 8/7 of it in slots, rounded up
    /// to a power of two per shard). Default: one per 256 bytes of heap.
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = Some(n);
        self
    }

    /// The largest entry stored, in bytes of record. Default: an eighth of a shard's heap.
    pub fn max_object_bytes(mut self, n: u64) -> Self {
        self.max_object = Some(n);
        self
    }

    /// Bytes of the purge journal's ring (see [The purge journal](crate#the-purge-journal)),
    /// rounded up to 4 KiB, 64 KiB to 1 GiB. Default: a 64th of `max_bytes`, between 64 KiB and
    /// 1 MiB (1 MiB holds about 13,000 tag purges of 20-byte tags).
    pub fn journal_bytes(mut self, n: u64) -> Self {
        self.journal_bytes = Some(n);
        self
    }

    /// Slots of the tag table (rounded up to a power of two, at least 16). Default 4096; when
    /// three quarters are used, marks are folded into one cache-wide mark (see the crate docs).
    pub fn tag_slots(mut self, n: u32) -> Self {
        self.tag_slots = n.clamp(16, 1 << 24).next_power_of_two();
        self
    }

    peakcache::timing_setters!();

    /// A clock for this attachment. Every process attached must then use an equivalent clock
    /// (a `ManualClock` cannot be shared between processes: for hand-driven time across
    /// processes use [`region_clock`](Builder::region_clock)). Default: the host's monotonic
    /// clock, offset so that every process reads the same region time.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Gives the region its own clock word, which only moves when a process calls
    /// [`ShmCache::advance_clock`]: hand-driven time shared by every process (tests). Recorded
    /// in the header at creation.
    pub fn region_clock(mut self, on: bool) -> Self {
        self.region_clock = on;
        self
    }

    /// Whether [`open`](Builder::open) replaces a file of ours holding an unusable or
    /// differently configured region (default) or fails with the reason. Never a file refused
    /// for its type, owner or permissions ([`ShmError::Refused`]): whoever planted it must
    /// not decide what happens.
    pub fn recreate_on_mismatch(mut self, on: bool) -> Self {
        self.recreate = on;
        self
    }

    /// Fixes the key hash seed (default: random per region), for reproducible benchmarks.
    pub fn hash_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The user who must own the region file (default: this process's effective user). A
    /// region file owned by anyone else is refused ([`ShmError::Refused`]); a new one is
    /// created for this user (`fchown`, which needs privilege to give a file away: e.g.
    /// nginx's master, running as root, creating the region for its workers' user). A
    /// snapshot this cache restores may be owned by this user too.
    pub fn owner(mut self, uid: u32) -> Self {
        self.owner_uid = Some(uid);
        self
    }

    /// The group of a new region file, and the group allowed to share one with
    /// [`group_shared`](Builder::group_shared) (default: this process's effective group).
    pub fn group(mut self, gid: u32) -> Self {
        self.owner_gid = Some(gid);
        self
    }

    /// Lets a group share the region, deliberately: a new file gets mode 0660 and the
    /// [`group`](Builder::group); an existing one may have group permissions if its group is
    /// that group. Default off: mode 0600, and a file with any group or other permission is
    /// refused. Permissions for other users are always refused.
    pub fn group_shared(mut self, on: bool) -> Self {
        self.group_shared = on;
        self
    }

    /// How long this attachment waits for a shard's (or the tag table's) lock before going on
    /// without the cache: a lookup answers [`Lookup::Pass`], `get` a miss, `insert` and
    /// commits [`StoreError::LockTimeout`], [`try_purge`](ShmCache::try_purge) the same;
    /// each such time is counted ([`RegionInfo::lock_timeouts`]) and reported (at most a
    /// line a second). A lock is held for microseconds; only a holder that is stopped
    /// (`SIGSTOP`, a debugger) or stuck exceeds this. Default: the lock timeout, at least
    /// 10 ms and at most 1 s.
    pub fn lock_bound(mut self, bound: Duration) -> Self {
        self.lock_bound = Some(bound);
        self
    }

    /// Where this attachment reports what an operator should know (a lock not acquired in
    /// time, locks initialised again after a reboot, a repaired lock): one line each.
    /// Default: standard error.
    pub fn report(mut self, report: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.report = Some(Arc::new(report));
        self
    }

    fn attach_settings(&self) -> Attach {
        let effective = Owner::effective();
        Attach {
            lock_bound: self.lock_bound,
            report: self.report.clone().unwrap_or_else(region::report_to_stderr),
            owner: Owner {
                uid: self.owner_uid.unwrap_or(effective.uid),
                gid: self.owner_gid.unwrap_or(effective.gid),
                group_shared: self.group_shared,
            },
        }
    }

    fn geometry(&self) -> Result<Geometry, ShmError> {
        let bad = |s: String| Err(ShmError::InvalidConfig(s));
        let shards = self
            .shards
            .unwrap_or_else(|| ((self.max_bytes >> 20).clamp(1, 16) as u32).next_power_of_two());
        let units = self.max_bytes / shards as u64 / UNIT as u64;
        if !(16..=1 << 30).contains(&units) {
            return bad(format!(
                "max_bytes {} gives {units} heap units of 64 bytes per shard (16 to 2^30)",
                self.max_bytes
            ));
        }
        let per_shard_entries = match self.max_entries {
            Some(n) => n.div_ceil(shards as u64),
            None => (units / 4).max(1),
        };
        let slots = per_shard_entries
            .saturating_mul(8)
            .div_ceil(7)
            .max(8)
            .checked_next_power_of_two()
            .unwrap_or(u64::MAX);
        let geo = Geometry {
            shards,
            slots: u32::try_from(slots).unwrap_or(u32::MAX),
            heap_units: units as u32,
            tag_slots: self.tag_slots,
            journal_bytes: u32::try_from(self.ring_bytes()).unwrap_or(u32::MAX),
        };
        geo.validate().map_err(ShmError::InvalidConfig)?;
        Ok(geo)
    }

    /// The journal's bytes: as set, or the default for `max_bytes`.
    fn ring_bytes(&self) -> u64 {
        self.journal_bytes
            .unwrap_or_else(|| (self.max_bytes / 64).clamp(u64::from(JOURNAL_MIN), 1 << 20))
            .div_ceil(4096)
            .saturating_mul(4096)
    }

    fn settings(&self, geo: &Geometry, seed: u64) -> Settings {
        let heap = geo.heap_units as u64 * UNIT as u64;
        Settings {
            timing: self.timing,
            // A record's lengths are 32-bit: nothing of 4 GiB or more is ever stored.
            max_object: self
                .max_object
                .unwrap_or(heap / 8)
                .clamp(UNIT as u64, heap)
                .min(u64::from(u32::MAX)),
            seed,
            flags: if self.region_clock {
                FLAG_REGION_CLOCK
            } else {
                0
            },
        }
    }

    /// Creates a region in an anonymous shared mapping: shared with the children this process
    /// forks afterwards (nginx's master, PHP-FPM's master at module start), gone with the last
    /// of them.
    pub fn anonymous(self) -> Result<ShmCache, ShmError> {
        let geo = self.geometry()?;
        let settings = self.settings(&geo, self.seed.unwrap_or_else(region::random_u64));
        let region = Region::anonymous(geo, settings, &self.attach_settings())?;
        Ok(ShmCache::from_region(region, self.clock))
    }

    /// Opens the region file at `path` (under `/dev/shm` for memory, or any file system for a
    /// region that outlives a reboot): attaches to it if its header is valid and matches this
    /// configuration, creates it if missing or empty, and otherwise replaces it by a new, empty
    /// region (saying why in [`Opened::Recreated`]) or, with
    /// [`recreate_on_mismatch(false)`](Builder::recreate_on_mismatch), fails.
    ///
    /// A file that is not to be trusted is refused ([`ShmError::Refused`], never replaced):
    /// not a regular file (a symbolic link is not followed), not owned by the
    /// [`owner`](Builder::owner), or with permissions for other users (or for its group,
    /// unless [`group_shared`](Builder::group_shared)). A new region is made under a temporary
    /// name beside `path` (mode 0600, or 0660 group-shared, given to the owner), with every
    /// page reserved ([`ShmError::NoSpace`] if the file system cannot hold it), and only then
    /// moved to `path`, never over a file another process created meanwhile (that one is
    /// attached instead).
    pub fn open(self, path: impl AsRef<Path>) -> Result<(ShmCache, Opened), ShmError> {
        let geo = self.geometry()?;
        let settings = self.settings(&geo, self.seed.unwrap_or_else(region::random_u64));
        let (region, opened) = Region::open_file(
            path.as_ref(),
            geo,
            settings,
            self.recreate,
            &self.attach_settings(),
        )?;
        Ok((ShmCache::from_region(region, self.clock), opened))
    }

    /// Attaches to the existing region file at `path`, whatever its configuration; the clock,
    /// owner, lock bound and report of this builder apply. Fails on a missing, truncated,
    /// corrupted, foreign or untrusted file (see [`open`](Builder::open)).
    pub fn attach(self, path: impl AsRef<Path>) -> Result<ShmCache, ShmError> {
        let region = Region::attach_file(path.as_ref(), &self.attach_settings())?;
        Ok(ShmCache::from_region(region, self.clock))
    }
}

/// A servable entry: a copy of its value, its flags word and its lifetimes in region time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    value: Bytes,
    flags: u32,
    served: Served,
    seq: u64,
    stored_at: u64,
    fresh_until: u64,
    revalidate_until: u64,
    error_until: u64,
}

impl Hit {
    /// The value (a copy: eviction or replacement in the region never changes it).
    pub fn value(&self) -> &Bytes {
        &self.value
    }

    /// The value, by move.
    pub fn into_value(self) -> Bytes {
        self.value
    }

    /// The flags word stored with the value.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Fresh, stale, or stale-if-error.
    pub fn served(&self) -> Served {
        self.served
    }

    /// A number naming the stored record: the same for every read of one stored value, in
    /// every process attached to the region; another once the value is replaced (or a tag
    /// purge made it stale), and another in another region (the record's sequence number
    /// mixed with the region's random seed). See [`ShmCache::lookup_unchanged`].
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// When the value was stored (region time).
    pub fn stored_at(&self) -> Duration {
        Duration::from_nanos(self.stored_at)
    }

    /// When it stops being fresh.
    pub fn fresh_until(&self) -> Duration {
        Duration::from_nanos(self.fresh_until)
    }

    /// When its stale-while-revalidate window ends.
    pub fn revalidate_until(&self) -> Duration {
        Duration::from_nanos(self.revalidate_until)
    }

    /// When its stale-if-error window ends.
    pub fn error_until(&self) -> Duration {
        Duration::from_nanos(self.error_until)
    }

    /// How long it has been stored at `now` (region time, [`ShmCache::now`]).
    pub fn age(&self, now: Duration) -> Duration {
        now.saturating_sub(self.stored_at())
    }
}

/// What [`ShmCache::lookup_unchanged`] answers: the key's entry is servable without a ticket and
/// still the value the caller holds a copy of; how it is served and its lifetimes, in region
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unchanged {
    served: Served,
    stored_at: u64,
    fresh_until: u64,
    revalidate_until: u64,
    error_until: u64,
}

impl Unchanged {
    /// Fresh, or stale (while its refresh runs or a failing origin backs off) as
    /// [`lookup`](ShmCache::lookup) would answer `Stale(hit, None)`.
    pub fn served(&self) -> Served {
        self.served
    }

    /// When the value was stored (region time).
    pub fn stored_at(&self) -> Duration {
        Duration::from_nanos(self.stored_at)
    }

    /// When it stops being fresh.
    pub fn fresh_until(&self) -> Duration {
        Duration::from_nanos(self.fresh_until)
    }

    /// When its stale-while-revalidate window ends.
    pub fn revalidate_until(&self) -> Duration {
        Duration::from_nanos(self.revalidate_until)
    }

    /// When its stale-if-error window ends.
    pub fn error_until(&self) -> Duration {
        Duration::from_nanos(self.error_until)
    }
}

/// The value a key still had stored when its fill began, past its stale windows (or inside
/// stale-if-error only, with nothing failed yet): a copy of its bytes and flags, for
/// revalidation (an HTTP conditional request from its `ETag` or `Last-Modified`, whose 304
/// commits these bytes again with new freshness). Never to be served as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Previous {
    value: Bytes,
    flags: u32,
    stored_at: u64,
}

impl Previous {
    /// The value (a copy).
    pub fn value(&self) -> &Bytes {
        &self.value
    }

    /// The flags word stored with it.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// When it was stored (region time).
    pub fn stored_at(&self) -> Duration {
        Duration::from_nanos(self.stored_at)
    }
}

/// The answer of [`ShmCache::lookup`] (see [`peakcache::Lookup`]: the same lifecycle).
#[must_use = "a Miss or Stale answer carries a ticket that must be used or dropped"]
pub enum Lookup {
    /// A fresh entry: serve it.
    Fresh(Hit),
    /// A stale entry; `Some(refresh)` for the one caller (in any process) who refreshes it.
    Stale(Hit, Option<Refresh>),
    /// Nothing servable: this caller fetches and completes the [`Fill`].
    Miss(Fill),
    /// Another caller (perhaps in another process) is filling: wait with the [`Waiter`].
    Wait(Waiter),
    /// The key passes through (uncacheable): fetch, store nothing, wait for nobody. Also the
    /// answer when the shard's lock is unusable.
    Pass,
}

/// What a [`Waiter`] resolves to.
#[must_use = "a Fill must be used or dropped"]
pub enum Resolved {
    /// The filler's value, or after a failed fill the stale-if-error entry.
    Hit(Hit),
    /// The filler gave up, or died: this caller fills now.
    Fill(Fill),
    /// The answer is not cacheable (or too large to store): fetch for yourself.
    Pass,
    /// The fill failed and nothing stale is left to serve.
    Failed,
    /// The fill outlived the lock timeout (and no stale entry is left to serve), or the wait
    /// its own timeout: fetch for yourself, uncached.
    TimedOut,
}

/// An entry after its tag purges were applied.
enum Settled {
    /// Still there (perhaps made stale by a soft purge).
    Kept(Rec),
    /// Hard-purged: its value was dropped.
    Dropped,
    /// The tag table's lock was not acquired: whether a purge applies is unknown.
    Unknown(Rec),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Fill,
    Refresh,
}

struct Ticket {
    cache: ShmCache,
    key: Box<[u8]>,
    hash: u64,
    id: u64,
    started_at: u64,
    kind: Kind,
    pid: u32,
    done: bool,
    previous: Option<Previous>,
}

enum Finish<'a> {
    Commit(&'a [u8], u32, Freshness, &'a [&'a [u8]]),
    Fail,
    Uncacheable(Duration),
    Abandon,
}

impl Ticket {
    fn finish(mut self, how: Finish<'_>) -> (Result<(), StoreError>, Option<Hit>) {
        self.done = true;
        self.cache.finish(&self, how)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A copy inherited by a forked child is not the owner's: only the owner abandons.
        if !self.done && self.pid == std::process::id() {
            self.done = true;
            let _ = self.cache.finish(self, Finish::Abandon);
        }
    }
}

/// The right, and the duty, to fetch a missing key: exactly one exists per key across every
/// process. Complete it with `commit*`, [`fail`](Fill::fail) or
/// [`uncacheable`](Fill::uncacheable); dropping it abandons it (a waiter takes over). If the
/// owning process dies, a waiter takes it over as soon as it finds the owner dead.
#[must_use = "a dropped Fill is abandoned: waiters must then fetch again"]
pub struct Fill(Ticket);

/// The right to refresh a stale entry in the background, handed to one caller at a time.
#[must_use = "a dropped Refresh is abandoned"]
pub struct Refresh(Ticket);

macro_rules! ticket_methods {
    ($t:ident) => {
        impl $t {
            /// The key being fetched.
            pub fn key(&self) -> &[u8] {
                &self.0.key
            }

            /// Stores `value` (flags 0), fresh for `freshness`, and wakes every waiter.
            pub fn commit(self, value: &[u8], freshness: Freshness) -> Result<(), StoreError> {
                self.commit_full(value, 0, freshness, &[] as &[&[u8]])
            }

            /// Like [`commit`](Self::commit), with tags for [`ShmCache::purge_tag`].
            pub fn commit_tagged<T: AsRef<[u8]>>(
                self,
                value: &[u8],
                freshness: Freshness,
                tags: &[T],
            ) -> Result<(), StoreError> {
                self.commit_full(value, 0, freshness, tags)
            }

            /// Stores `value` with a `flags` word and tags. A value too large to store is
            /// refused (the error says so) and its waiters get [`Resolved::Pass`].
            pub fn commit_full<T: AsRef<[u8]>>(
                self,
                value: &[u8],
                flags: u32,
                freshness: Freshness,
                tags: &[T],
            ) -> Result<(), StoreError> {
                let tags: Vec<&[u8]> = tags.iter().map(AsRef::as_ref).collect();
                self.0
                    .finish(Finish::Commit(value, flags, freshness, &tags))
                    .0
            }

            /// The answer is not cacheable: waiters are released at once, the stored entry
            /// removed, and lookups answer [`Lookup::Pass`] for `hold`.
            pub fn uncacheable(self, hold: Duration) {
                let _ = self.0.finish(Finish::Uncacheable(hold));
            }

            /// Gives up without an answer: a waiter (or the next lookup) fetches instead.
            pub fn abandon(self) {
                drop(self)
            }
        }
    };
}

ticket_methods!(Fill);
ticket_methods!(Refresh);

impl Fill {
    /// The value the key still had stored past its stale windows when this fill began, if any
    /// (see [`Previous`]), as in-process [`peakcache::Fill::previous`]: revalidate it instead
    /// of fetching it whole, never serve it as it is.
    pub fn previous(&self) -> Option<&Previous> {
        self.0.previous.as_ref()
    }

    /// The fetch failed: returns the entry still inside its stale-if-error window, if any, and
    /// hands the same to every waiter. The key then backs off.
    pub fn fail(self) -> Option<Hit> {
        self.0.finish(Finish::Fail).1
    }
}

impl Refresh {
    /// The refresh failed: the stale entry keeps being served; the key backs off.
    pub fn fail(self) {
        let _ = self.0.finish(Finish::Fail);
    }
}

/// A claim on another caller's fill, in this process or another. Resolve it by blocking
/// ([`wait`](Waiter::wait), a futex sleep on the slot's sequence word) or by polling
/// ([`try_wait`](Waiter::try_wait), for event loops). No waiter waits forever: the lock
/// timeout releases it, and a filler found dead hands its fill to a waiter.
#[must_use = "a waiter does nothing unless resolved"]
pub struct Waiter {
    cache: ShmCache,
    key: Box<[u8]>,
    hash: u64,
    flight: u64,
    deadline: u64,
}

enum Step {
    Done(Resolved),
    /// Still in flight: sleep on slot `.0`'s futex word while it holds `.1`.
    Pending(usize, u32),
}

/// Optimistic reads tried before taking the shard lock (each fails only if a writer came by).
const OPTIMISTIC_TRIES: usize = 2;

/// Longest single sleep of a blocked waiter: it then checks the owner's liveness again.
const LIVENESS_TICK: Duration = Duration::from_millis(50);

impl Waiter {
    /// The key waited for.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Blocks until the fill ends, its owner is found dead, the lock timeout passes, or
    /// `timeout` passes.
    pub fn wait(mut self, timeout: Duration) -> Resolved {
        let give_up = Instant::now().checked_add(timeout);
        loop {
            match self.step(true) {
                Step::Done(r) => return r,
                Step::Pending(slot, seen) => {
                    let now = Instant::now();
                    let left = give_up.map_or(Duration::MAX, |g| g.saturating_duration_since(now));
                    if left.is_zero() {
                        self.cache.count(self.hash, Counter::WaitTimeout);
                        return Resolved::TimedOut;
                    }
                    let lock_left =
                        Duration::from_nanos(self.deadline.saturating_sub(self.cache.now_nanos()));
                    let sleep = left
                        .min(lock_left)
                        .min(LIVENESS_TICK)
                        .max(Duration::from_micros(100));
                    let shard = self.cache.shard_index(self.hash);
                    let s = shard::Shard::new(&self.cache.inner.region, shard);
                    crate::futex::wait(s.futex(slot), seen, sleep);
                }
            }
        }
    }

    /// Resolves without blocking: `Ok` with the answer if the fill has ended (or its lock
    /// timeout passed, or its owner died), else `Err` with the waiter to poll again.
    pub fn try_wait(mut self) -> Result<Resolved, Self> {
        match self.step(false) {
            Step::Done(r) => Ok(r),
            Step::Pending(..) => Err(self),
        }
    }

    fn step(&mut self, register: bool) -> Step {
        loop {
            let c = self.cache.clone();
            // Read before the lock: a fill that ends meanwhile is seen under it, never taken
            // for one past its deadline.
            let now = c.now_nanos();
            let Some(s) = c.lock(self.hash) else {
                return Step::Done(Resolved::TimedOut);
            };
            let mine = |s: &Locked<'_>| {
                s.find(self.hash, &self.key)
                    .map(|(i, _)| i)
                    .filter(|&i| s.flight_id(i) == self.flight)
            };
            if let Some(i) = mine(&s) {
                if s.flight_active(i) && now < s.deadline(i) {
                    if c.owner_alive(&s, i) {
                        let (_, seen) = if register {
                            s.register_waiter(i)
                        } else {
                            let f = s.futex(i);
                            (f, f.load(Relaxed))
                        };
                        return Step::Pending(i, seen);
                    }
                    let refresh = s.meta(i) & shard::M_REFRESH != 0;
                    c.take_over(&s, i, refresh);
                    let Some((i, r)) = s.find(self.hash, &self.key) else {
                        return Step::Done(Resolved::TimedOut);
                    };
                    let mut t = c.start_flight(&s, i, &self.key, self.hash, now, Kind::Fill);
                    t.previous = r.has_value().then(|| c.previous(&s, &r));
                    return Step::Done(Resolved::Fill(Fill(t)));
                }
                if s.flight_active(i) {
                    c.time_out(&s, self.hash, &self.key, now);
                }
                if let Some(resolved) = mine(&s).and_then(|i| self.outcome(&s, i, now)) {
                    return Step::Done(resolved);
                }
            } else if now >= self.deadline {
                s.count(Counter::WaitTimeout);
                return Step::Done(Resolved::TimedOut);
            }
            drop(s);
            // The fill was abandoned (or its slot went): look again, as a waiter.
            match c.lookup_as(&self.key, Asker::Waiter) {
                Lookup::Fresh(h) | Lookup::Stale(h, _) => return Step::Done(Resolved::Hit(h)),
                Lookup::Miss(f) => return Step::Done(Resolved::Fill(f)),
                Lookup::Pass => return Step::Done(Resolved::Pass),
                Lookup::Wait(w) => {
                    self.flight = w.flight;
                    self.deadline = w.deadline;
                    // `w` is a plain handle: nothing to release.
                }
            }
        }
    }

    /// What the ended flight of slot `i` means for this waiter; `None` when its filler gave
    /// up (the waiter looks again).
    fn outcome(&self, s: &Locked<'_>, i: usize, now: u64) -> Option<Resolved> {
        let c = &self.cache;
        Some(match s.outcome(i) {
            Outcome::Value => {
                let r = s.slot_rec(i).filter(Rec::has_value)?;
                Resolved::Hit(c.hit(s, &r, Served::Fresh))
            }
            Outcome::Failed => match c.stale_if_error(s, self.hash, &self.key, now) {
                Some(r) => Resolved::Hit(c.hit(s, &r, Served::StaleIfError)),
                None => Resolved::Failed,
            },
            Outcome::Pass | Outcome::TooLarge => Resolved::Pass,
            Outcome::TimedOut => {
                s.count(Counter::WaitTimeout);
                Resolved::TimedOut
            }
            Outcome::None | Outcome::Abandoned => return None,
        })
    }
}

/// Figures of the region beyond [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionInfo {
    /// Bytes of the whole mapping.
    pub region_bytes: u64,
    /// Shards.
    pub shards: u32,
    /// Index slots per shard.
    pub slots_per_shard: u32,
    /// Bytes of heap (for records) over all shards.
    pub heap_bytes: u64,
    /// The largest record stored, in bytes.
    pub max_object_bytes: u64,
    /// Shards checked and rebuilt after a holder died inside them (or found them damaged).
    pub recoveries: u64,
    /// Fills taken over from an owner found dead.
    pub takeovers: u64,
    /// Slots dropped by checks (bad record) or evicted control records.
    pub entries_dropped: u64,
    /// Times a shard's or the tag table's lock was not acquired within the lock bound (the
    /// caller went on without the cache), in every process.
    pub lock_timeouts: u64,
    /// Tag table slots in use, and their number.
    pub tags_used: u32,
    /// Slots of the tag table.
    pub tag_slots: u32,
    /// Bytes of the purge journal's ring.
    pub journal_bytes: u64,
    /// Purges recorded in the journal since the region was made.
    pub journal_records: u64,
    /// Purges that could not be recorded (see [`LostReason::Unrecorded`](crate::LostReason)).
    pub journal_unrecorded: u64,
}

/// How a snapshot restore went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Entries stored.
    pub restored: u64,
    /// Entries skipped: failed their checksum, dead by now, or no room.
    pub skipped: u64,
}

impl ShmCache {
    /// A builder.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Attaches to the existing region file at `path` with the system clock (see
    /// [`Builder::attach`]).
    pub fn attach(path: impl AsRef<Path>) -> Result<ShmCache, ShmError> {
        Builder::default().attach(path)
    }

    fn from_region(region: Region, clock: Option<Arc<dyn Clock>>) -> ShmCache {
        let time = match clock {
            Some(c) => TimeSource::Custom(c),
            None if region.settings.flags & FLAG_REGION_CLOCK != 0 => TimeSource::Region,
            None => TimeSource::System,
        };
        let shard_mask = region.geo.shards as u64 - 1;
        ShmCache {
            inner: Arc::new(Inner {
                region,
                time,
                shard_mask,
            }),
            origin: PurgeOrigin::Local,
        }
    }

    /// A handle on the same region whose purges, freezes and thaws the journal records as
    /// coming from `origin`: the cluster agent applies the bus's purges through a
    /// `PurgeOrigin::Cluster` handle, so that it does not publish them back.
    pub fn with_origin(&self, origin: PurgeOrigin) -> ShmCache {
        ShmCache {
            inner: self.inner.clone(),
            origin,
        }
    }

    /// Records a purge in the journal, before it is made: a process that dies in between
    /// leaves the other hosts purging what this one did not, never the other way round.
    fn record(&self, op: JournalOp, mode: PurgeMode) {
        Journal::new(self.region()).append(&op, mode, self.origin);
    }

    /// The region-wide soft purge: entries fetched before sequence number `.0` are stale from
    /// region time `.1`.
    #[inline]
    fn stale_all(&self) -> (u64, u64) {
        let m = &self.region().map;
        let seq = m.u64(H_STALE_ALL_SEQ).load(SeqCst);
        (seq, m.u64(H_STALE_ALL_AT).load(SeqCst))
    }

    /// The sequence number of the region-wide soft purge: entries fetched before it must be
    /// settled under the lock (the hit path's one load for it).
    #[inline]
    fn stale_all_seq(&self) -> u64 {
        self.region().map.u64(H_STALE_ALL_SEQ).load(Acquire)
    }

    /// Applies the region-wide soft purge to a record fetched before it (under its shard's
    /// lock).
    fn settle_everything(&self, s: &Locked<'_>, r: &mut Rec) {
        let (seq, at) = self.stale_all();
        if r.has_value() && r.seq < seq {
            s.make_stale_at(r, at);
        }
    }

    #[inline]
    fn region(&self) -> &Region {
        &self.inner.region
    }

    /// Region time, in nanoseconds.
    #[inline]
    fn now_nanos(&self) -> u64 {
        match &self.inner.time {
            TimeSource::System => peakcache::SystemClock::host_nanos()
                .wrapping_add(self.region().map.u64(H_MONO_OFFSET).load(Relaxed)),
            TimeSource::Region => self.region().map.u64(H_CLOCK).load(SeqCst),
            TimeSource::Custom(c) => nanos(c.now()),
        }
    }

    /// The cache's current time, the time base of every [`Hit`].
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.now_nanos())
    }

    /// Moves the region's clock forward by `by`, for every process attached. Returns false
    /// (and does nothing) unless the region was created with
    /// [`Builder::region_clock`].
    pub fn advance_clock(&self, by: Duration) -> bool {
        if self.region().settings.flags & FLAG_REGION_CLOCK == 0 {
            return false;
        }
        self.region().map.u64(H_CLOCK).fetch_add(nanos(by), SeqCst);
        true
    }

    #[inline]
    fn key_hash(&self, key: &[u8]) -> u64 {
        crate::hash::hash(self.region().settings.seed, key).max(1)
    }

    #[inline]
    fn shard_index(&self, hash: u64) -> usize {
        ((hash >> 40) & self.inner.shard_mask) as usize
    }

    /// Locks `hash`'s shard (see `lock_shard`).
    #[inline]
    fn lock(&self, hash: u64) -> Option<Locked<'_>> {
        self.lock_shard(self.shard_index(hash))
    }

    /// Locks shard `shard`, waiting at most the lock bound; `None` (counted and reported) if
    /// its lock was not acquired: the caller goes on without the cache.
    fn lock_shard(&self, shard: usize) -> Option<Locked<'_>> {
        self.region().flush_reports();
        match shard::lock(self.region(), shard) {
            Ok(s) => Some(s),
            Err(e) => {
                if matches!(e, LockError::TimedOut) {
                    shard::Shard::new(self.region(), shard).count(RegionCounter::LockTimeouts);
                }
                if let Some(line) = self.region().lock_failure(&format!("shard {shard}"), &e) {
                    (self.region().report)(&line);
                }
                None
            }
        }
    }

    /// The error of an operation whose shard lock was not acquired.
    fn lock_timeout(&self) -> StoreError {
        StoreError::LockTimeout {
            bound_ms: u64::try_from(self.region().lock_bound.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Counts `c` on `hash`'s shard (counters are atomic: no lock needed).
    fn count(&self, hash: u64, c: Counter) {
        shard::Shard::new(self.region(), self.shard_index(hash)).count(c);
    }

    fn frozen(&self) -> bool {
        self.region().map.u32(H_FROZEN).load(Relaxed) != 0
    }

    fn next_seq(&self) -> u64 {
        self.region().map.u64(H_SEQ).fetch_add(1, SeqCst)
    }

    fn hit(&self, s: &Locked<'_>, r: &Rec, served: Served) -> Hit {
        Hit {
            value: Bytes::copy_from_slice(s.value_bytes(r)),
            flags: r.flags,
            served,
            seq: self.record_seq(r),
            stored_at: r.stored_at,
            fresh_until: r.fresh_until(),
            revalidate_until: r.revalidate_until(),
            error_until: r.error_until(),
        }
    }

    /// Whether slot `i`'s flight owner lives.
    fn owner_alive(&self, s: &Locked<'_>, i: usize) -> bool {
        let (pid, start) = s.owner(i);
        process::alive(pid, start)
    }

    /// Ends slot `i`'s flight, whose owner died, as abandoned.
    fn take_over(&self, s: &Locked<'_>, i: usize, refresh: bool) {
        s.end_flight(i, Outcome::Abandoned);
        s.count(if refresh {
            Counter::RefreshesAbandoned
        } else {
            Counter::FillsAbandoned
        });
        s.count(RegionCounter::Takeovers);
    }

    fn start_flight(
        &self,
        s: &Locked<'_>,
        i: usize,
        key: &[u8],
        hash: u64,
        now: u64,
        kind: Kind,
    ) -> Ticket {
        let id = self.next_seq();
        let deadline = self.region().settings.timing.deadline(now);
        let me = process::me();
        s.start_flight(i, id, deadline, me, kind == Kind::Refresh);
        Ticket {
            cache: self.clone(),
            key: key.into(),
            hash,
            id,
            started_at: now,
            kind,
            pid: me.0,
            done: false,
            previous: None,
        }
    }

    /// Applies tag purges to slot `i`'s entry: a hard-purged value is dropped, a soft-purged
    /// one made stale from the purge on.
    fn settle_tags(&self, s: &Locked<'_>, i: usize, mut r: Rec, now: u64) -> Settled {
        self.settle_everything(s, &mut r);
        if !r.has_value() || r.ntags == 0 {
            return Settled::Kept(r);
        }
        let tags = Tags::new(self.region());
        let epoch = tags.epoch();
        if s.checked_epoch(&r) == epoch {
            return Settled::Kept(r);
        }
        match tags.verdict(r.seq, s.tag_hashes(&r)) {
            Verdict::Live => {
                s.set_checked_epoch(&r, epoch);
                Settled::Kept(r)
            }
            Verdict::Purged => {
                s.drop_value(i, now);
                Settled::Dropped
            }
            Verdict::StaleSince { at, seq } => {
                s.make_stale_at(&mut r, at);
                s.set_seq(&mut r, seq);
                Settled::Kept(r)
            }
            Verdict::Unknown => Settled::Unknown(r),
        }
    }

    /// Finds `key` with its tag purges applied: `(slot, value record if servable-looking)`.
    /// A value whose tags could not be checked is not servable (`None`).
    fn find_settled(
        &self,
        s: &Locked<'_>,
        hash: u64,
        key: &[u8],
        now: u64,
    ) -> Option<(usize, Option<Rec>)> {
        let (i, r) = s.find(hash, key)?;
        match self.settle_tags(s, i, r, now) {
            Settled::Kept(r) => Some((i, r.has_value().then_some(r))),
            Settled::Unknown(_) => Some((i, None)),
            // The value went (and perhaps the slot, moving others): find it again.
            Settled::Dropped => s.find(hash, key).map(|(i, _)| (i, None)),
        }
    }

    /// Looks `key` up and answers what the caller should do: serve, serve and refresh, fill,
    /// wait, or pass through. See [`Lookup`].
    pub fn lookup(&self, key: &[u8]) -> Lookup {
        if key.len() <= MAX_KEY {
            if let Some(hit) = self.lookup_optimistic(key) {
                return match hit.served {
                    Served::Fresh => Lookup::Fresh(hit),
                    _ => Lookup::Stale(hit, None),
                };
            }
        }
        self.lookup_as(key, Asker::Caller)
    }

    /// The hits of `lookup` that hand out no ticket, without the shard lock (see
    /// `Shard::read_servable`): a fresh entry, or a stale one while its refresh runs or its
    /// failing origin backs off. Those are most lookups of a busy key, so a process stopped
    /// while it holds the shard's lock stops no other's hits.
    fn lookup_optimistic(&self, key: &[u8]) -> Option<Hit> {
        let (value, r, served) = self.servable_optimistic(key, |s, r| {
            let mut value = Vec::new();
            s.copy_value_racy(r, &mut value)?;
            Some(value)
        })?;
        Some(Hit {
            value: Bytes::from(value),
            flags: r.flags,
            served,
            seq: self.record_seq(&r),
            stored_at: r.stored_at,
            fresh_until: r.fresh_until(),
            revalidate_until: r.revalidate_until(),
            error_until: r.error_until(),
        })
    }

    /// Whether `key` has an entry that [`lookup`](Self::lookup) would serve without handing out
    /// a ticket (fresh, or the cache frozen; stale while its refresh runs or a failing origin
    /// backs off) and whose value is still the one a [`Hit`] with this [`Hit::seq`] was a copy
    /// of: read without the shard lock and without copying the value, counted and touched as
    /// that hit. A host that keeps what it derived from a hit (the nginx module's prepared
    /// answers) serves that again. `None` when the value was replaced, or the answer is
    /// another (a miss, a ticket to hand out) or needs the lock (tags to check, a flight past
    /// its deadline, a pass-through, a writer in the way): then `lookup` answers.
    pub fn lookup_unchanged(&self, key: &[u8], seq: u64) -> Option<Unchanged> {
        if key.len() > MAX_KEY {
            return None;
        }
        let ((), r, served) =
            self.servable_optimistic(key, |_, r| (self.record_seq(r) == seq).then_some(()))?;
        Some(Unchanged {
            served,
            stored_at: r.stored_at,
            fresh_until: r.fresh_until(),
            revalidate_until: r.revalidate_until(),
            error_until: r.error_until(),
        })
    }

    /// [`Hit::seq`] of record `r`.
    fn record_seq(&self, r: &Rec) -> u64 {
        r.seq ^ self.region().settings.seed
    }

    /// A servable entry of `key` read without the shard lock, counted and touched as the locked
    /// lookup would (`Shard::read_servable`, stale entries included): what `read` takes of it
    /// (`None`: nothing, the caller's lookup goes on), its record and how it is served. `None`
    /// for anything the locked lookup decides (a miss, a ticket to hand out, a flight past its
    /// deadline, a pass-through, tags to check, a writer in the way).
    fn servable_optimistic<T>(
        &self,
        key: &[u8],
        read: impl Fn(&shard::Shard<'_>, &Rec) -> Option<T>,
    ) -> Option<(T, Rec, Served)> {
        let hash = self.key_hash(key);
        let s = shard::Shard::new(self.region(), self.shard_index(hash));
        let rule = self.serve_rule(true);
        for _ in 0..OPTIMISTIC_TRIES {
            match s.read_servable(hash, key, &rule, &read) {
                Optimistic::Read(got) => return Some(got),
                Optimistic::Absent | Optimistic::NotFresh => return None,
                Optimistic::Retry => {}
            }
        }
        None
    }

    /// What an optimistic read serves now: fresh entries, and with `stale` the stale ones the
    /// lifecycle serves without a ticket.
    #[inline]
    fn serve_rule(&self, stale: bool) -> shard::ServeRule<impl Fn() -> u64 + '_> {
        shard::ServeRule {
            now: self.now_nanos(),
            frozen: self.frozen(),
            stale,
            stale_all_seq: self.stale_all_seq(),
            tag_epoch: || Tags::new(self.region()).epoch(),
        }
    }

    /// A lookup by `asker` under the shard lock: ends a flight past its lock timeout, applies
    /// pending tag purges, then does what the lifecycle's `decide` says.
    fn lookup_as(&self, key: &[u8], asker: Asker) -> Lookup {
        if key.len() > MAX_KEY {
            return Lookup::Pass;
        }
        let hash = self.key_hash(key);
        let Some(s) = self.lock(hash) else {
            if asker == Asker::Caller {
                self.count(hash, Counter::Pass);
            }
            return Lookup::Pass;
        };
        let count = |c| {
            if asker == Asker::Caller {
                s.count(c)
            }
        };
        let now = self.now_nanos();
        let frozen = self.frozen();
        if let Some((i, _)) = s.find(hash, key) {
            if s.flight_active(i) && now >= s.deadline(i) {
                self.time_out(&s, hash, key, now);
            }
        }
        let found = match s
            .find(hash, key)
            .map(|(i, r)| (i, self.settle_tags(&s, i, r, now)))
        {
            None => None,
            Some((i, Settled::Kept(r))) => Some((i, r.has_value().then_some(r))),
            Some((_, Settled::Dropped)) => s.find(hash, key).map(|(i, _)| (i, None)),
            Some((_, Settled::Unknown(_))) => {
                // Whether a purge applies is unknown: neither serve it nor fill over it.
                count(Counter::Pass);
                return Lookup::Pass;
            }
        };
        let slot = found.map(|(i, _)| i);
        let rec = found.and_then(|(_, r)| r);
        let standing = match rec {
            None => None,
            Some(_) if frozen => Some(Served::Fresh),
            Some(r) => r.served(now),
        };
        let state = || {
            slot.map_or_else(KeyState::default, |i| {
                s.key_record(i).state(now, s.flight_active(i))
            })
        };
        match decide(standing, state, asker) {
            Decision::Serve(served) => {
                let (i, r) = (slot.expect("served"), rec.expect("served"));
                s.touch(i);
                count(Counter::served(served));
                let hit = self.hit(&s, &r, served);
                match served {
                    Served::Fresh => Lookup::Fresh(hit),
                    Served::Stale | Served::StaleIfError => Lookup::Stale(hit, None),
                }
            }
            Decision::ServeAndRefresh(served) => {
                let (i, r) = (slot.expect("served"), rec.expect("served"));
                s.touch(i);
                count(Counter::served(served));
                let hit = self.hit(&s, &r, served);
                let t = self.start_flight(&s, i, key, hash, now, Kind::Refresh);
                s.count(Counter::RefreshesStarted);
                Lookup::Stale(hit, Some(Refresh(t)))
            }
            Decision::Pass => {
                count(Counter::Pass);
                Lookup::Pass
            }
            Decision::Wait => {
                let i = slot.expect("a fetch in flight has a slot");
                if self.owner_alive(&s, i) {
                    count(Counter::Wait);
                    return Lookup::Wait(Waiter {
                        cache: self.clone(),
                        key: key.into(),
                        hash,
                        flight: s.flight_id(i),
                        deadline: s.deadline(i),
                    });
                }
                let refresh = s.meta(i) & shard::M_REFRESH != 0;
                self.take_over(&s, i, refresh);
                self.fill(&s, slot, rec, key, hash, now, asker)
            }
            Decision::Fill => self.fill(&s, slot, rec, key, hash, now, asker),
        }
    }

    /// Hands `key` (slot `slot`, value `rec` past its windows if any) to this caller to fill;
    /// `Pass` if no slot can be made for it.
    #[allow(clippy::too_many_arguments)]
    fn fill(
        &self,
        s: &Locked<'_>,
        slot: Option<usize>,
        rec: Option<Rec>,
        key: &[u8],
        hash: u64,
        now: u64,
        asker: Asker,
    ) -> Lookup {
        let counted = asker == Asker::Caller;
        let Some(i) = slot.or_else(|| self.new_control_slot(s, hash, key, now, self.frozen()))
        else {
            if counted {
                s.count(Counter::Pass);
            }
            return Lookup::Pass;
        };
        if counted {
            s.count(Counter::Miss);
        }
        let mut ticket = self.start_flight(s, i, key, hash, now, Kind::Fill);
        // Past its windows but still stored: the filler may revalidate it.
        ticket.previous = rec.map(|r| self.previous(s, &r));
        Lookup::Miss(Fill(ticket))
    }

    /// Ends `key`'s flight, past its lock timeout, as a failed fetch: the key backs off
    /// (counted from the deadline, as in-process), and the waiters get the stale-if-error entry
    /// if one is left (`Outcome::Failed`), else are released to fetch for themselves
    /// (`Outcome::TimedOut`). A flight whose owner died is not the origin's failure: it is
    /// abandoned, and the next caller fetches at once.
    fn time_out(&self, s: &Locked<'_>, hash: u64, key: &[u8], now: u64) {
        let stale = self.stale_if_error(s, hash, key, now).is_some();
        let Some((i, _)) = s.find(hash, key) else {
            return;
        };
        if !self.owner_alive(s, i) {
            let refresh = s.meta(i) & shard::M_REFRESH != 0;
            return self.take_over(s, i, refresh);
        }
        let deadline = s.deadline(i);
        s.update_key_record(i, |k| k.fail(deadline, &self.region().settings.timing));
        s.end_flight(
            i,
            if stale {
                Outcome::Failed
            } else {
                Outcome::TimedOut
            },
        );
    }

    /// `key`'s entry to serve when a fetch failed: tag purges applied, and still inside a
    /// stale window (or stored at all, while frozen).
    fn stale_if_error(&self, s: &Locked<'_>, hash: u64, key: &[u8], now: u64) -> Option<Rec> {
        let frozen = self.frozen();
        self.find_settled(s, hash, key, now)
            .and_then(|(_, r)| r)
            .filter(|r| frozen || r.standing(now) != Standing::Dead)
    }

    fn previous(&self, s: &Locked<'_>, r: &Rec) -> Previous {
        Previous {
            value: Bytes::copy_from_slice(s.value_bytes(r)),
            flags: r.flags,
            stored_at: r.stored_at,
        }
    }

    /// A slot with a key-only record for `key` (which has none), making room if needed.
    fn new_control_slot(
        &self,
        s: &Locked<'_>,
        hash: u64,
        key: &[u8],
        now: u64,
        frozen: bool,
    ) -> Option<usize> {
        let n = NewRecord {
            hash,
            key,
            value: None,
            flags: 0,
            stored_at: 0,
            ttl_ms: 0,
            swr_ms: 0,
            sie_ms: 0,
            seq: 0,
            tags: &[],
        };
        let r = self.write_with_room(s, &n, now, frozen).ok()?;
        Some(s.insert_slot(hash, &r))
    }

    /// Writes a record, evicting until it fits and a free slot exists. `Err(true)` if the
    /// policy turned the new entry away (only when its admission plan allowed it), `Err(false)`
    /// if nothing more could be evicted.
    fn write_with_room(
        &self,
        s: &Locked<'_>,
        n: &NewRecord<'_>,
        now: u64,
        frozen: bool,
    ) -> Result<Rec, bool> {
        loop {
            let room = if !s.has_free_slot()
                || s.free_units() < u64::from(n.units()) + s.reserve_units()
            {
                s.evict_one(now, frozen)
            } else if let Some(r) = s.write_record(n) {
                return Ok(r);
            } else if s.defragment(n.units()) {
                // Enough free units, in pieces: a few records moved rather than evicted.
                continue;
            } else {
                s.grow_reserve(n.units());
                s.evict_one(now, frozen)
            };
            match room {
                Evicted::One => {}
                Evicted::TheNewEntry => return Err(true),
                Evicted::Nothing => return Err(false),
            }
        }
    }

    /// Stores a value record for `key`, replacing what was there. A key without a value is
    /// admitted by the policy, which may turn it away if `may_reject` (`Ok(None)`; in-process,
    /// the entry is admitted and evicted at once). Fills never are: their waiters read the
    /// value from the region.
    #[allow(clippy::too_many_arguments)]
    fn store(
        &self,
        s: &Locked<'_>,
        hash: u64,
        key: &[u8],
        value: &[u8],
        flags: u32,
        freshness: Freshness,
        tags: &[&[u8]],
        seq: u64,
        now: u64,
        stale: bool,
        may_reject: bool,
    ) -> Result<Option<usize>, StoreError> {
        let mut hashes: Vec<u64> = tags.iter().map(|t| tag_hash(t)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        hashes.truncate(MAX_TAGS);
        let [ttl_ms, swr_ms, sie_ms] = freshness.millis();
        let n = NewRecord {
            hash,
            key,
            value: Some(value),
            flags,
            stored_at: now,
            ttl_ms: if stale { 0 } else { ttl_ms },
            swr_ms,
            sie_ms,
            seq,
            tags: &hashes,
        };
        // A key without a value is admitted: decided before making room, as in-process.
        if s.find(hash, key).is_none_or(|(_, r)| !r.has_value()) {
            s.plan_admission(hash, n.units(), may_reject);
        }
        let written = self.write_with_room(s, &n, now, self.frozen());
        let r = match written {
            Ok(r) => r,
            Err(rejected) => {
                s.plan.set(None);
                return if rejected {
                    Ok(None)
                } else {
                    Err(StoreError::NoRoom)
                };
            }
        };
        let i = match s.find(hash, key) {
            Some((i, _)) => {
                s.replace_rec(i, &r);
                i
            }
            None => s.insert_slot(hash, &r),
        };
        s.plan.set(None);
        Ok(Some(i))
    }

    /// Whether a record of this size may be stored: within the object limit, and (whatever
    /// the limit of a region made by another build) its lengths within 32 bits.
    fn check_size(&self, key: &[u8], value: &[u8], ntags: usize) -> Result<(), StoreError> {
        let size = NewRecord::size(key.len(), value.len(), ntags.min(MAX_TAGS));
        let limit = self.region().settings.max_object.min(u64::from(u32::MAX));
        if size.div_ceil(UNIT as u64) * UNIT as u64 > limit || key.len() > MAX_KEY {
            return Err(StoreError::TooLarge { size, limit });
        }
        Ok(())
    }

    /// A slot for `key`, made if missing (for back-off and pass-through state).
    fn control_slot(&self, s: &Locked<'_>, hash: u64, key: &[u8], now: u64) -> Option<usize> {
        match s.find(hash, key) {
            Some((i, _)) => Some(i),
            None => self.new_control_slot(s, hash, key, now, self.frozen()),
        }
    }

    fn finish(&self, t: &Ticket, how: Finish<'_>) -> (Result<(), StoreError>, Option<Hit>) {
        let refresh = t.kind == Kind::Refresh;
        let Some(s) = self.lock(t.hash) else {
            // The flight stays until its lock timeout releases its waiters.
            return (Err(self.lock_timeout()), None);
        };
        let now = self.now_nanos();
        let key = &t.key[..];
        let found = s.find(t.hash, key);
        let current = found.is_some_and(|(i, _)| s.flight_active(i) && s.flight_id(i) == t.id);
        let invalidated =
            current && found.is_some_and(|(i, _)| s.meta(i) & shard::M_INVALIDATED != 0);
        let mut result = Ok(());
        let mut handed = None;
        let outcome = match how {
            Finish::Commit(value, flags, freshness, tags) => {
                s.count(if refresh {
                    Counter::RefreshesCommitted
                } else {
                    Counter::FillsCommitted
                });
                match self.check_size(key, value, tags.len()) {
                    Err(e) => {
                        s.count(Counter::RejectedTooLarge);
                        if let Some((i, _)) = s.find(t.hash, key) {
                            s.drop_value(i, now);
                        }
                        result = Err(e);
                        Outcome::TooLarge
                    }
                    Ok(()) => {
                        // A fill overtaken after its lock timeout does not replace what a
                        // later fill stored.
                        let newer =
                            found.is_some_and(|(_, r)| r.has_value() && r.stored_at > t.started_at);
                        if current || !newer {
                            match self.store(
                                &s,
                                t.hash,
                                key,
                                value,
                                flags,
                                freshness,
                                tags,
                                t.id,
                                now,
                                invalidated,
                                false,
                            ) {
                                Ok(Some(i)) => {
                                    s.update_key_record(i, KeyRecord::stored);
                                    Outcome::Value
                                }
                                Ok(None) => Outcome::Pass,
                                Err(e) => {
                                    // No room: the waiters fetch for themselves, at once,
                                    // rather than one after another as successive fillers.
                                    result = Err(e);
                                    Outcome::Pass
                                }
                            }
                        } else {
                            Outcome::Value
                        }
                    }
                }
            }
            Finish::Fail => {
                s.count(if refresh {
                    Counter::RefreshesFailed
                } else {
                    Counter::FillsFailed
                });
                // A fetch overtaken after its lock timeout was counted as failed then.
                if current {
                    if let Some(i) = self.control_slot(&s, t.hash, key, now) {
                        s.update_key_record(i, |k| k.fail(now, &self.region().settings.timing));
                    }
                }
                let stale = self.stale_if_error(&s, t.hash, key, now);
                handed = stale.map(|r| self.hit(&s, &r, Served::StaleIfError));
                Outcome::Failed
            }
            Finish::Uncacheable(hold) => {
                s.count(if refresh {
                    Counter::RefreshesUncacheable
                } else {
                    Counter::FillsUncacheable
                });
                if let Some(i) = self.control_slot(&s, t.hash, key, now) {
                    s.update_key_record(i, |k| k.pass_for(now, hold));
                    s.drop_value(i, now);
                }
                Outcome::Pass
            }
            Finish::Abandon => {
                if refresh {
                    s.count(Counter::RefreshesAbandoned);
                    if current {
                        if let Some((i, _)) = s.find(t.hash, key) {
                            let delay = self.region().settings.timing.refresh_retry;
                            s.update_key_record(i, |k| k.refresh_dropped(now, delay));
                        }
                    }
                } else {
                    s.count(Counter::FillsAbandoned);
                }
                Outcome::Abandoned
            }
        };
        if let Some((i, _)) = s.find(t.hash, key) {
            if current && s.flight_id(i) == t.id && s.flight_active(i) {
                s.end_flight(i, outcome);
            }
            s.tidy(i, now);
        }
        (result, handed)
    }

    /// The value of `key` if stored and fresh (or the cache is frozen). Counted as a lookup
    /// (fresh or miss); takes no part in the lifecycle.
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        let mut value = Vec::new();
        self.get_into(key, &mut value)?;
        Some(Bytes::from(value))
    }

    /// Like [`get`](Self::get), copying the value into `buf` (cleared first) and returning its
    /// flags word: no allocation once `buf` is large enough.
    pub fn get_into(&self, key: &[u8], buf: &mut Vec<u8>) -> Option<u32> {
        if key.len() > MAX_KEY {
            return None;
        }
        let hash = self.key_hash(key);
        let s = shard::Shard::new(self.region(), self.shard_index(hash));
        let rule = self.serve_rule(false);
        // Without the lock first: the value is copied into `buf`, trusted once validated.
        for _ in 0..OPTIMISTIC_TRIES {
            let copy = |s: &shard::Shard<'_>, r: &Rec| {
                buf.clear();
                s.copy_value_racy(r, buf)
            };
            match s.read_servable(hash, key, &rule, copy) {
                Optimistic::Read(((), r, _)) => return Some(r.flags),
                Optimistic::Absent | Optimistic::NotFresh => {
                    buf.clear();
                    s.count(Counter::Miss);
                    return None;
                }
                Optimistic::Retry => {}
            }
        }
        buf.clear();
        let mut flags = None;
        self.get_with(key, |s, r| {
            buf.clear();
            buf.extend_from_slice(s.value_bytes(r));
            flags = Some(r.flags);
        });
        flags
    }

    fn get_with(&self, key: &[u8], mut f: impl FnMut(&Locked<'_>, &Rec)) {
        if key.len() > MAX_KEY {
            return;
        }
        let hash = self.key_hash(key);
        let Some(s) = self.lock(hash) else { return };
        let now = self.now_nanos();
        let frozen = self.frozen();
        let mut hit = false;
        if let Some((i, mut r)) = s.find(hash, key) {
            self.settle_everything(&s, &mut r);
            if r.has_value() && (frozen || now < r.fresh_until()) {
                let live = r.ntags == 0 || {
                    let tags = Tags::new(self.region());
                    let epoch = tags.epoch();
                    s.checked_epoch(&r) == epoch
                        || match tags.verdict(r.seq, s.tag_hashes(&r)) {
                            Verdict::Live => {
                                s.set_checked_epoch(&r, epoch);
                                true
                            }
                            Verdict::StaleSince { .. } => frozen,
                            Verdict::Purged | Verdict::Unknown => false,
                        }
                };
                if live {
                    s.touch(i);
                    f(&s, &r);
                    hit = true;
                }
            }
        }
        s.count(if hit { Counter::Fresh } else { Counter::Miss });
    }

    /// Stores `value` under `key` outside the fill lifecycle, replacing what was there.
    pub fn insert(&self, key: &[u8], value: &[u8], freshness: Freshness) -> Result<(), StoreError> {
        self.insert_full(key, value, 0, freshness, &[] as &[&[u8]])
    }

    /// Like [`insert`](Self::insert), with tags.
    pub fn insert_tagged<T: AsRef<[u8]>>(
        &self,
        key: &[u8],
        value: &[u8],
        freshness: Freshness,
        tags: &[T],
    ) -> Result<(), StoreError> {
        self.insert_full(key, value, 0, freshness, tags)
    }

    /// Like [`insert`](Self::insert), with a flags word and tags.
    pub fn insert_full<T: AsRef<[u8]>>(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        freshness: Freshness,
        tags: &[T],
    ) -> Result<(), StoreError> {
        let tags: Vec<&[u8]> = tags.iter().map(AsRef::as_ref).collect();
        let hash = self.key_hash(key);
        let seq = self.next_seq();
        let Some(s) = self.lock(hash) else {
            return Err(self.lock_timeout());
        };
        let now = self.now_nanos();
        if let Err(e) = self.check_size(key, value, tags.len()) {
            s.count(Counter::RejectedTooLarge);
            // The stored value is outdated by the refused one: never serve it as current.
            if let Some((i, _)) = s.find(hash, key) {
                s.drop_value(i, now);
            }
            return Err(e);
        }
        let stored = self.store(
            &s, hash, key, value, flags, freshness, &tags, seq, now, false, true,
        )?;
        // Stored, or turned away by the admission policy: either way the key's back-off, its
        // run of failures and its pass-through end.
        if let Some(i) = stored.or_else(|| s.find(hash, key).map(|(i, _)| i)) {
            s.update_key_record(i, KeyRecord::stored);
        }
        s.count(Counter::Inserts);
        Ok(())
    }

    /// Purges `key`: hard removes it, soft makes it stale now (served in its stale windows
    /// while one caller refreshes). A fill in flight stores its value already stale. Returns
    /// whether an entry or a fill was found; false too if the purge could not be done (its
    /// shard's lock was not acquired within the bound): [`try_purge`](Self::try_purge) tells
    /// the two apart.
    pub fn purge(&self, key: &[u8], mode: PurgeMode) -> bool {
        self.try_purge(key, mode).unwrap_or(false)
    }

    /// [`purge`](Self::purge), or [`StoreError::LockTimeout`] if it was not done.
    pub fn try_purge(&self, key: &[u8], mode: PurgeMode) -> Result<bool, StoreError> {
        self.record(JournalOp::Key(Bytes::copy_from_slice(key)), mode);
        let hash = self.key_hash(key);
        let Some(s) = self.lock(hash) else {
            return Err(self.lock_timeout());
        };
        let now = self.now_nanos();
        let mut found = false;
        if let Some((i, r)) = s.find(hash, key) {
            if s.flight_active(i) {
                s.invalidate_flight(i);
                found = true;
            }
            // A value whose tags cannot be checked now is purged all the same.
            let value = match self.settle_tags(&s, i, r, now) {
                Settled::Kept(r) | Settled::Unknown(r) => Some(r).filter(Rec::has_value),
                Settled::Dropped => None,
            };
            if let Some(mut r) = value {
                found = true;
                match mode {
                    PurgeMode::Hard => s.drop_value(i, now),
                    PurgeMode::Soft => s.make_stale_at(&mut r, now),
                }
            }
        }
        if found {
            s.count(Counter::Purges);
        }
        Ok(found)
    }

    /// Purges every entry tagged `tag` whose fetch started before now, in every process, in
    /// constant time (entries are checked lazily at their next lookup).
    pub fn purge_tag(&self, tag: impl AsRef<[u8]>, mode: PurgeMode) {
        self.record(JournalOp::Tag(Bytes::copy_from_slice(tag.as_ref())), mode);
        Tags::new(self.region()).purge(tag.as_ref(), mode, self.now_nanos());
    }

    /// Purges every entry, in every process: hard is [`clear`](Self::clear); soft marks every
    /// entry whose fetch started before now stale from now (served inside its stale windows
    /// while one caller refreshes it), in constant time: one mark in the region, applied
    /// lazily at lookup, as a tag purge is. This is what the cluster agent applies when the
    /// host may have missed purges (a trimmed bus, cut off longer than `max_lag`).
    pub fn purge_everything(&self, mode: PurgeMode) {
        if mode == PurgeMode::Hard {
            return self.clear();
        }
        self.record(JournalOp::Everything, mode);
        let seq = self.next_seq();
        let at = self.now_nanos();
        let m = &self.region().map;
        // The time first: a reader that sees the new sequence number sees this time or a
        // later one. Both only grow, whatever the order in which processes store theirs.
        m.u64(H_STALE_ALL_AT).fetch_max(at, SeqCst);
        m.u64(H_STALE_ALL_SEQ).fetch_max(seq, SeqCst);
    }

    /// Removes every entry. Fills in flight go on and store their values already stale.
    /// A shard whose lock is not acquired within the bound is left as it is (reported).
    pub fn clear(&self) {
        self.record(JournalOp::Everything, PurgeMode::Hard);
        let now = self.now_nanos();
        for shard in 0..self.region().geo.shards as usize {
            let Some(s) = self.lock_shard(shard) else {
                continue;
            };
            for (i, _) in s.value_slots().into_iter().rev() {
                // Slots only move up the probe chain on removal: going backwards from the end
                // of the list keeps the indices still to visit valid, except across the wrap;
                // re-check the slot holds a value first.
                if s.slot_hash(i) != 0 && s.slot_rec(i).is_some_and(|r| r.has_value()) {
                    if s.flight_active(i) {
                        s.invalidate_flight(i);
                    }
                    s.drop_value(i, now);
                }
            }
            // Anything missed because it moved: sweep again until no value is left.
            while let Some((i, _)) = s.value_slots().into_iter().next() {
                if s.flight_active(i) {
                    s.invalidate_flight(i);
                }
                s.drop_value(i, now);
            }
            for i in 0..self.region().geo.slots as usize {
                if s.slot_hash(i) != 0 && s.flight_active(i) {
                    s.invalidate_flight(i);
                }
            }
        }
    }

    /// Freezes or thaws the cache, for every process: while frozen, whatever is stored is
    /// served as fresh and only misses reach the origin.
    pub fn freeze(&self, frozen: bool) {
        let op = if frozen {
            JournalOp::Freeze
        } else {
            JournalOp::Thaw
        };
        self.record(op, PurgeMode::Hard);
        self.region().map.u32(H_FROZEN).store(frozen as u32, SeqCst);
    }

    /// Whether the cache is frozen.
    pub fn is_frozen(&self) -> bool {
        self.frozen()
    }

    /// The counters of every process, the entries and their bytes. `weight` and `capacity` are
    /// bytes of heap (records rounded up to 64 bytes).
    pub fn stats(&self) -> Stats {
        let shards: Vec<shard::Shard<'_>> = (0..self.region().geo.shards as usize)
            .map(|i| shard::Shard::new(self.region(), i))
            .collect();
        let tags = Tags::new(self.region());
        Stats {
            // Tag purges are counted by the tag table, not per shard.
            tag_purges: tags.purges(),
            tag_marks: u64::from(tags.used()),
            // The region does not count its folds (it folds every mark when its table is full).
            tag_folds: 0,
            entries: shards.iter().map(shard::Shard::entries).sum(),
            weight: shards.iter().map(shard::Shard::used_bytes).sum(),
            capacity: self.region().geo.shards as u64
                * self.region().geo.heap_units as u64
                * UNIT as u64,
            ..Stats::from_counts(|c| shards.iter().map(|s| s.counter(c)).sum())
        }
    }

    /// The region's per-second history ring, shared by every process attached: each process
    /// samples into it once a second ([`tick`](Self::tick)), the first in a second writes it.
    pub fn history(&self) -> peakcache::History<'_> {
        let r = self.region();
        peakcache::History::new(
            r.map
                .u64s(r.geo.history_off(), peakcache::history::HISTORY_WORDS),
        )
        .expect("the region holds a whole ring")
    }

    /// Adds this process's counts since its last call to the region's totals and, if no process
    /// has yet this second, samples the counters into the history ring. Call it once a second
    /// from each process (a timer, or each request where there is none): true if this call
    /// wrote the second's sample.
    pub fn tick(&self, counts: &peakcache::HostCounts) -> bool {
        let history = self.history();
        history.add_host(counts);
        history.record(peakcache::history::unix_second(), || {
            peakcache::history::sample_values(&self.stats(), self.frozen(), &history.host_totals())
        })
    }

    /// Figures of the region: geometry, recoveries, takeovers, tag table use.
    pub fn region_info(&self) -> RegionInfo {
        let r = self.region();
        let mut info = RegionInfo {
            region_bytes: r.map.len() as u64,
            shards: r.geo.shards,
            slots_per_shard: r.geo.slots,
            heap_bytes: r.geo.shards as u64 * r.geo.heap_units as u64 * UNIT as u64,
            max_object_bytes: r.settings.max_object,
            tags_used: Tags::new(r).used(),
            tag_slots: r.geo.tag_slots,
            journal_bytes: u64::from(r.geo.journal_bytes),
            journal_records: r.map.u64(H_J_SEQ).load(Relaxed),
            journal_unrecorded: r.map.u64(H_J_UNRECORDED).load(Relaxed),
            ..RegionInfo::default()
        };
        for shard in 0..r.geo.shards as usize {
            let s = shard::Shard::new(r, shard);
            info.recoveries += s.counter(RegionCounter::Recoveries);
            info.takeovers += s.counter(RegionCounter::Takeovers);
            info.entries_dropped += s.counter(RegionCounter::EntriesDropped);
            info.lock_timeouts += s.counter(RegionCounter::LockTimeouts);
        }
        info.lock_timeouts += r.map.u64(H_TAG_LOCK_TIMEOUTS).load(Relaxed);
        info
    }

    /// A cursor at the end of the purge journal: a reader starting there reads the purges
    /// made from now on. ([`JournalCursor::default`] is the journal's very beginning, for a
    /// reader of a region it has never read.)
    pub fn journal_end(&self) -> JournalCursor {
        Journal::new(self.region()).end()
    }

    /// The purges recorded after `cursor`, at most `max` records (and what was lost on the
    /// way), in order; moves `cursor` past them. Takes no lock and writes nothing to the
    /// region: any number of readers may follow the journal.
    pub fn read_journal(&self, cursor: &mut JournalCursor, max: usize) -> Vec<JournalEvent> {
        let mut out = Vec::new();
        Journal::new(self.region()).read(cursor, max, &mut out);
        out
    }

    /// Sleeps until a purge is recorded (or one could not be) after `cursor`, at most
    /// `timeout`; at once if one already was. A futex wait on a word of the region, which
    /// every append bumps.
    pub fn wait_journal(&self, cursor: &JournalCursor, timeout: Duration) {
        Journal::new(self.region()).wait(cursor, timeout);
    }

    /// Makes this process the region's follower (the one process that tells the cluster about
    /// the region's purges), or says which live process is. The claim ends when the
    /// [`Follower`](crate::Follower) is dropped, or with its process.
    pub fn follow(&self) -> Result<crate::Follower, FollowerBusy> {
        let me = journal::claim(self.region())?;
        Ok(crate::Follower::new(self.clone(), me))
    }

    pub(crate) fn release_follower(&self, me: u64) {
        journal::release(self.region(), me);
    }

    pub(crate) fn follower_state(&self) -> Option<Vec<u8>> {
        journal::load_state(self.region())
    }

    pub(crate) fn save_follower_state(&self, state: &[u8]) {
        journal::save_state(self.region(), state);
    }

    /// The region file's device and inode numbers (`None` for an anonymous region). A host
    /// that replaces the file (nginx after a change of the zone's size) makes a new region: a
    /// process that must follow the host's current region compares this with the path's.
    pub fn file_id(&self) -> Option<(u64, u64)> {
        self.region().file_id
    }

    /// Entries stored (dead and lazily purged ones included until removed).
    pub fn len(&self) -> usize {
        (0..self.region().geo.shards as usize)
            .map(|i| shard::Shard::new(self.region(), i).entries() as usize)
            .sum()
    }

    /// Whether no entry is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest entry stored, in bytes of record (80 bytes of header, 8 per tag, key and
    /// value).
    pub fn max_object_bytes(&self) -> u64 {
        self.region().settings.max_object
    }

    /// Test hook: locks `key`'s shard, optionally scribbles over its allocator and index as a
    /// process killed half-way through an update would leave them, then calls `f` while still
    /// holding the lock. A test kills (or stops) the process inside `f`; the next locker
    /// recovers (or gives up after the lock bound).
    #[doc(hidden)]
    pub fn debug_with_shard_locked(&self, key: &[u8], scribble: bool, f: impl FnOnce()) {
        let hash = self.key_hash(key);
        if let Some(s) = self.lock(hash) {
            if scribble {
                s.scribble();
            }
            f();
        }
    }

    /// Test hook: calls `f` while holding the tag table's lock (bounded: nothing if it is not
    /// acquired).
    #[doc(hidden)]
    pub fn debug_with_tags_locked(&self, f: impl FnOnce()) {
        Tags::new(self.region()).with_lock(f);
    }

    /// Test hook: holds the purge journal's lock while `f` runs, after writing half a record
    /// at its head if `scribble` (as a process killed while appending leaves it). A test kills
    /// or stops the process inside `f`.
    #[doc(hidden)]
    pub fn debug_with_journal_locked(&self, scribble: bool, f: impl FnOnce()) {
        Journal::new(self.region()).with_lock(scribble, f);
    }

    /// Test hook: the shard `key` belongs to.
    #[doc(hidden)]
    pub fn debug_shard_of(&self, key: &[u8]) -> usize {
        self.shard_index(self.key_hash(key))
    }

    /// Test hook: leaves `key`'s shard lock `ENOTRECOVERABLE`, as a holder that inherited it
    /// from a dead one and released it without making it consistent would.
    #[doc(hidden)]
    pub fn debug_make_shard_lock_unrecoverable(&self, key: &[u8]) {
        let s = shard::Shard::new(self.region(), self.shard_index(self.key_hash(key)));
        self.region().map.mutex(s.base).make_unrecoverable();
    }

    // ---- snapshots --------------------------------------------------------------------------

    /// Writes every servable entry to `path` (see [`snapshot_to`](Self::snapshot_to)) into a
    /// new temporary file beside it (created exclusively, mode 0600, nothing followed),
    /// renamed over `path` once complete and synced. Returns the number of entries written.
    pub fn snapshot(&self, path: impl AsRef<Path>) -> Result<u64, ShmError> {
        crate::snapshot::write(self, path.as_ref())
    }

    /// Writes every servable entry to `out`, shard by shard: each shard's entries are copied
    /// into memory under its lock (a consistent cut of that shard while the cache keeps
    /// serving), and written to `out` after the lock is released, so a slow `out` (a disk, a
    /// socket) never holds up a shard. A shard whose lock is not acquired within the bound is
    /// left out (reported). Returns the number of entries written. Memory: one shard's entries
    /// at a time.
    pub fn snapshot_to(&self, out: impl std::io::Write) -> Result<u64, ShmError> {
        crate::snapshot::write_to(self, out)
    }

    /// Loads a snapshot written by [`snapshot`](Self::snapshot) (by this region or another of
    /// any geometry): the file is validated like a region (magic, version, lengths, a checksum
    /// per entry), entries keep their age (wall time since the snapshot included), and those
    /// that fail a check, are dead by now or find no room are skipped. The file is not
    /// followed if it is a symbolic link, and refused ([`ShmError::Refused`]) unless it is a
    /// regular file owned by this process's user, the region's owner or root, that no other
    /// user may write (its entries are served to every visitor).
    pub fn restore(&self, path: impl AsRef<Path>) -> Result<Restored, ShmError> {
        crate::snapshot::read(self, path.as_ref())
    }

    /// Calls `f` with every servable entry of shard `shard`, under its lock:
    /// `(key, value, flags, age_ns, [ttl_ms, swr_ms, sie_ms], tag hashes)`. False (reported)
    /// if the shard's lock was not acquired within the bound.
    pub(crate) fn for_each_entry_of(
        &self,
        shard: usize,
        mut f: impl FnMut(&[u8], &[u8], u32, u64, [u32; 3], &[u64]),
    ) -> bool {
        let Some(s) = self.lock_shard(shard) else {
            return false;
        };
        let now = self.now_nanos();
        let mut i = 0;
        let slots = self.region().geo.slots as usize;
        while i < slots {
            if s.slot_hash(i) == 0 {
                i += 1;
                continue;
            }
            let Some(r) = s.slot_rec(i) else {
                i += 1;
                continue;
            };
            let before = s.slot_hash(i);
            let settled = self.settle_tags(&s, i, r, now);
            if s.slot_hash(i) != before {
                // The slot was removed (hard-purged) and another moved in: look again.
                continue;
            }
            if let Settled::Kept(r) = settled {
                if r.has_value() && r.standing(now) != Standing::Dead {
                    let tags: Vec<u64> = s.tag_hashes(&r).collect();
                    f(
                        s.key_bytes(&r),
                        s.value_bytes(&r),
                        r.flags,
                        now.saturating_sub(r.stored_at),
                        [r.ttl_ms, r.swr_ms, r.sie_ms],
                        &tags,
                    );
                }
            }
            i += 1;
        }
        true
    }

    /// The number of shards.
    pub(crate) fn shards(&self) -> usize {
        self.region().geo.shards as usize
    }

    /// Who must own the region file, and may own a snapshot it restores.
    pub(crate) fn owner(&self) -> Owner {
        self.region().owner
    }

    /// Stores a restored entry aged `age` with raw tag hashes; false if not stored.
    pub(crate) fn restore_entry(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u32,
        age: u64,
        windows: [u32; 3],
        tag_hashes: &[u64],
    ) -> bool {
        let hash = self.key_hash(key);
        let seq = self.next_seq();
        let Some(s) = self.lock(hash) else {
            return false;
        };
        let now = self.now_nanos();
        let stored_at = now.saturating_sub(age);
        let ms = |x: u32| x as u64 * 1_000_000;
        let dead_at = stored_at
            .saturating_add(ms(windows[0]))
            .saturating_add(ms(windows[1]).max(ms(windows[2])));
        if dead_at <= now
            || tag_hashes.len() > MAX_TAGS
            || self.check_size(key, value, tag_hashes.len()).is_err()
            || s.find(hash, key).is_some()
        {
            return false;
        }
        let n = NewRecord {
            hash,
            key,
            value: Some(value),
            flags,
            stored_at,
            ttl_ms: windows[0],
            swr_ms: windows[1],
            sie_ms: windows[2],
            seq,
            tags: tag_hashes,
        };
        s.plan_admission(hash, n.units(), true);
        let stored = match self.write_with_room(&s, &n, now, self.frozen()) {
            Ok(r) => {
                s.insert_slot(hash, &r);
                true
            }
            Err(_) => false,
        };
        s.plan.set(None);
        stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` bytes of zero pages, mapped but never touched (no memory used).
    struct Untouched(*mut libc::c_void, usize);

    impl Untouched {
        fn new(len: usize) -> Untouched {
            // SAFETY: a fresh private mapping the kernel places; read-only, never written.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            assert_ne!(p, libc::MAP_FAILED);
            Untouched(p, len)
        }

        fn bytes(&self) -> &[u8] {
            // SAFETY: `len` readable bytes (zero pages) live as long as `self`.
            unsafe { std::slice::from_raw_parts(self.0.cast(), self.1) }
        }
    }

    impl Drop for Untouched {
        fn drop(&mut self) {
            // SAFETY: unmaps what `new` mapped, once.
            unsafe { libc::munmap(self.0, self.1) };
        }
    }

    #[test]
    fn a_value_of_4_gib_or_more_is_refused_whatever_the_regions_object_limit() {
        // A region whose object limit is beyond 32 bits (as another build could have made).
        let b = Builder::default().max_bytes(1 << 20).shards(1);
        let geo = b.geometry().unwrap();
        let mut settings = b.settings(&geo, 1);
        settings.max_object = 1 << 40;
        let region = Region::anonymous(geo, settings, &b.attach_settings()).unwrap();
        let cache = ShmCache::from_region(region, None);
        let big = Untouched::new((4 << 30) + 1);
        let ttl = Freshness::new(Duration::from_secs(60));
        let too_large = |r: Result<(), StoreError>| {
            matches!(r, Err(StoreError::TooLarge { size, limit })
                if size > 4 << 30 && limit == u64::from(u32::MAX))
        };
        cache.insert(b"k", b"small", ttl).unwrap();
        assert!(too_large(cache.insert(b"k", big.bytes(), ttl)));
        assert_eq!(
            cache.get(b"k"),
            None,
            "the outdated value is not served either"
        );
        let Lookup::Miss(fill) = cache.lookup(b"f") else {
            panic!("a miss")
        };
        let Lookup::Wait(waiter) = cache.lookup(b"f") else {
            panic!("a wait")
        };
        assert!(too_large(fill.commit(big.bytes(), ttl)));
        assert!(matches!(waiter.try_wait(), Ok(Resolved::Pass)));
        assert_eq!(cache.stats().rejected_too_large, 2);
    }
}
