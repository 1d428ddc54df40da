//! One shard of the region: its lock, its index of fixed slots, its heap of records, and the
//! check that rebuilds it after a holder died inside it.
//!
//! ```text
//! shard = header (1 KiB: mutex, dirty flag, version, counters, allocator heads, policy state)
//!       | index: `slots` slots (open addressing, linear probing, backward-shift delete), each
//!         a 16-byte hot part (key hash, record, meta) in one array, then a 48-byte cold part
//!         (futex, flight, deadline, back-off, pass-through) in another
//!       | policy: queue links (8 bytes per slot), ghost tables, frequency sketch (`policy.rs`)
//!       | bitmaps: one bit per heap unit where a free span starts, one where it ends
//!       | heap: `heap_units` units of 64 bytes (records, and free spans on size-class lists)
//! ```
//!
//! Everything read from the region is checked before use: an offset or a length out of range
//! marks the shard dirty (it is rebuilt at its next lock) and the operation treats the entry as
//! absent. Nothing here is `unsafe`: it all goes through the bounds-checked `Mapping`.
//!
//! **Versions.** Readers may look an entry up without the lock (`read_servable`): every
//! change a reader could see (slots, records, the heap) happens inside a write section, which
//! makes the shard's version word odd until the lock is released; a reader trusts what it
//! copied only if the version was even and unchanged from before its first read to after its
//! last. Access bits (`touch`), counters and futex words are written outside write sections.

use crate::hash::Checksum;
use crate::mutex::{self, Acquired, LockError, RawMutex};
use crate::region::{Geometry, Mapping, Region, COLD_SLOT, HOT_SLOT, UNIT};
use peakcache::lifecycle::{decide, Asker, Decision, KeyRecord};
use peakcache::policy::{Choice, Departure};
use peakcache::stats::Counter;
use peakcache::Served;
use std::cell::Cell;
use std::collections::HashSet;
use std::sync::atomic::fence;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

// Shard header.
const S_ENTRIES: usize = 72;
const S_USED: usize = 80;
const S_OCCUPIED: usize = 88;
const S_FREE_HEADS: usize = 96;
/// Free lists: one per size class, `floor(log2(units))` of a free span.
pub(crate) const ORDERS: usize = 32;
const S_COUNTERS: usize = S_FREE_HEADS + ORDERS * 4;
/// Who is repairing the shard's mutex, and since when (see `mutex::lock_repairing`).
pub(crate) const S_REPAIR: usize = 432;
/// The version word of optimistic reads: odd while a writer changes the shard. On a line of
/// its own among the fields only writers write, so readers' counter updates do not evict it.
pub(crate) const S_VERSION: usize = 448;
/// Set when the shard must be checked and rebuilt at its next lock: on the version's line,
/// which an optimistic reader reads anyway.
const S_DIRTY: usize = S_VERSION + 8;

// Slot fields: the hot part (`Shard::hot`), read by every lookup...
const F_HASH: usize = 0;
const F_REC: usize = 8;
const F_META: usize = 12;
// ...and the cold part (`Shard::cold`), read and written under the lock.
const F_FUTEX: usize = 0;
const F_PID: usize = 4;
const F_START: usize = 8;
const F_FLIGHT: usize = 16;
const F_DEADLINE: usize = 24;
const F_RETRY: usize = 32;
const F_PASS: usize = 40;
const _: () = assert!(F_REC == 8 && F_META == 12 && HOT_SLOT == 16 && F_PASS + 8 <= COLD_SLOT);

// Slot meta bits.
pub(crate) const M_FREQ: u32 = 0b11;
pub(crate) const M_ACTIVE: u32 = 1 << 2;
pub(crate) const M_REFRESH: u32 = 1 << 3;
pub(crate) const M_INVALIDATED: u32 = 1 << 4;
pub(crate) const M_WAITERS: u32 = 1 << 5;
const M_OUTCOME_SHIFT: u32 = 6;
const M_OUTCOME: u32 = 0b111 << M_OUTCOME_SHIFT;
/// The policy's queue of the slot (`Q_*`) and the CLOCK credit it earned in the main queue.
pub(crate) const M_QUEUE_SHIFT: u32 = 9;
pub(crate) const M_QUEUE: u32 = 0b11 << M_QUEUE_SHIFT;
pub(crate) const M_CREDIT_SHIFT: u32 = 11;
pub(crate) const M_CREDIT: u32 = 0b11 << M_CREDIT_SHIFT;
const M_FAIL_SHIFT: u32 = 16;
const M_FAIL: u32 = 0xff << M_FAIL_SHIFT;
/// The record's size in units (saturated), a hint to prefetch it with the slot.
const M_UNITS_SHIFT: u32 = 24;
const M_UNITS: u32 = 0xff << M_UNITS_SHIFT;

// Records.
const R_MAGIC: usize = 0;
const R_UNITS: usize = 4;
const R_KEY_LEN: usize = 8;
const R_VALUE_LEN: usize = 12;
const R_HASH: usize = 16;
const R_STORED: usize = 24;
const R_TTL: usize = 32;
const R_SWR: usize = 36;
const R_SIE: usize = 40;
const R_FLAGS: usize = 44;
const R_SEQ: usize = 48;
const R_NTAGS: usize = 56;
const R_KIND: usize = 60;
const R_CHECKSUM: usize = 64;
const R_CHECKED: usize = 72;
/// Bytes of a record's header; tags (8 bytes each), key and value follow.
pub(crate) const RECORD_HEADER: usize = 80;
const RECORD_MAGIC: u32 = 0x3143_4552;
/// Most tags one entry keeps.
pub const MAX_TAGS: usize = 32;
/// Longest key accepted.
pub const MAX_KEY: usize = 64 << 10;

// Free blocks.
const FREE_MAGIC: u32 = 0x4545_5246;
const FREE_TAIL_MAGIC: u32 = 0x4c49_4154;
/// Where a free span's tail tag sits in its last unit (clear of the header, for 1-unit spans).
const FREE_TAIL: usize = 48;
/// Spans of a record's own size class tried before a larger class.
const FIRST_FIT_PROBES: usize = 16;
/// Most units of a record prefetched with its slot (the hardware follows the rest; 2 and 32
/// were measured slower on 1 KiB hits).
const PREFETCH_UNITS: u32 = 4;
/// Windows compared by `defragment`.
const DEFRAG_CANDIDATES: usize = 8;
const NONE: u32 = u32::MAX;

/// Record kinds.
pub(crate) const KIND_KEY: u32 = 0;
pub(crate) const KIND_VALUE: u32 = 1;

/// How a flight ended, kept in the slot for its waiters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    None = 0,
    Value = 1,
    Failed = 2,
    Pass = 3,
    Abandoned = 4,
    TimedOut = 5,
    TooLarge = 6,
}

impl Outcome {
    fn from_bits(b: u32) -> Outcome {
        match b {
            1 => Outcome::Value,
            2 => Outcome::Failed,
            3 => Outcome::Pass,
            4 => Outcome::Abandoned,
            5 => Outcome::TimedOut,
            6 => Outcome::TooLarge,
            _ => Outcome::None,
        }
    }
}

/// What the region counts beyond the lifecycle's counters (`peakcache::stats::Counter`, kept
/// first in each shard's counters, by the same numbers).
#[derive(Clone, Copy, Debug)]
#[repr(usize)]
pub(crate) enum RegionCounter {
    Recoveries,
    Takeovers,
    EntriesDropped,
    LockTimeouts,
}

/// A counter of a shard: the lifecycle's, or the region's own after them.
pub(crate) trait Counted: Copy {
    /// Its place among the shard's counters.
    fn index(self) -> usize;
}

impl Counted for Counter {
    fn index(self) -> usize {
        self as usize
    }
}

impl Counted for RegionCounter {
    fn index(self) -> usize {
        Counter::COUNT + self as usize
    }
}

const COUNTERS: usize = Counter::COUNT + RegionCounter::LockTimeouts as usize + 1;
const _: () = assert!(S_COUNTERS + COUNTERS * 8 <= S_REPAIR);
const _: () = assert!(S_DIRTY + 4 <= crate::policy::P_START);

/// Where an entry stands at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    Fresh,
    Stale,
    StaleIfError,
    Dead,
}

/// A record's header, decoded and checked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rec {
    pub(crate) at: u32,
    pub(crate) units: u32,
    pub(crate) key_len: u32,
    pub(crate) value_len: u32,
    pub(crate) hash: u64,
    pub(crate) stored_at: u64,
    pub(crate) ttl_ms: u32,
    pub(crate) swr_ms: u32,
    pub(crate) sie_ms: u32,
    pub(crate) flags: u32,
    pub(crate) seq: u64,
    pub(crate) ntags: u32,
    pub(crate) kind: u32,
}

const fn ms(x: u32) -> u64 {
    x as u64 * 1_000_000
}

impl Rec {
    pub(crate) fn fresh_until(&self) -> u64 {
        self.stored_at.saturating_add(ms(self.ttl_ms))
    }
    pub(crate) fn revalidate_until(&self) -> u64 {
        self.fresh_until().saturating_add(ms(self.swr_ms))
    }
    pub(crate) fn error_until(&self) -> u64 {
        self.fresh_until().saturating_add(ms(self.sie_ms))
    }
    /// How the entry is served at `now`, as the lifecycle's `decide` takes it (`None`: dead).
    pub(crate) fn served(&self, now: u64) -> Option<Served> {
        match self.standing(now) {
            Standing::Fresh => Some(Served::Fresh),
            Standing::Stale => Some(Served::Stale),
            Standing::StaleIfError => Some(Served::StaleIfError),
            Standing::Dead => None,
        }
    }
    pub(crate) fn standing(&self, now: u64) -> Standing {
        if now < self.fresh_until() {
            Standing::Fresh
        } else if now < self.revalidate_until() {
            Standing::Stale
        } else if now < self.error_until() {
            Standing::StaleIfError
        } else {
            Standing::Dead
        }
    }
    pub(crate) fn has_value(&self) -> bool {
        self.kind == KIND_VALUE
    }
    fn tags_off(&self) -> usize {
        RECORD_HEADER
    }
    fn key_off(&self) -> usize {
        RECORD_HEADER + self.ntags as usize * 8
    }
    fn value_off(&self) -> usize {
        self.key_off() + self.key_len as usize
    }
}

/// What a new record holds.
pub(crate) struct NewRecord<'a> {
    pub(crate) hash: u64,
    pub(crate) key: &'a [u8],
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) flags: u32,
    pub(crate) stored_at: u64,
    pub(crate) ttl_ms: u32,
    pub(crate) swr_ms: u32,
    pub(crate) sie_ms: u32,
    pub(crate) seq: u64,
    pub(crate) tags: &'a [u64],
}

impl NewRecord<'_> {
    /// Bytes the record takes (before rounding to units).
    pub(crate) fn size(key: usize, value: usize, tags: usize) -> u64 {
        (RECORD_HEADER + tags * 8 + key + value) as u64
    }
    pub(crate) fn units(&self) -> u32 {
        let size = Self::size(
            self.key.len(),
            self.value.map_or(0, <[u8]>::len),
            self.tags.len(),
        );
        size.div_ceil(UNIT as u64) as u32
    }
}

/// The fields of a slot, as copied during a rebuild.
#[derive(Clone, Copy)]
struct SlotCopy {
    hash: u64,
    rec: u32,
    meta: u32,
    pid: u32,
    start: u64,
    flight: u64,
    deadline: u64,
    retry: u64,
    pass: u64,
}

/// Initialises the heap of a new shard: one free span over all of it; and its policy state.
pub(crate) fn init_heap(region: &Region, shard: usize) {
    let s = Shard::new(region, shard);
    for o in 0..ORDERS {
        s.m.u32(s.base + S_FREE_HEADS + 4 * o).store(NONE, Relaxed);
    }
    s.free_span(0, region.geo.heap_units);
    s.reset_policy();
}

/// Marks a shard to be checked and rebuilt at its next lock.
pub(crate) fn mark_dirty(region: &Region, shard: usize) {
    let s = Shard::new(region, shard);
    s.m.u32(s.base + S_DIRTY).store(1, Relaxed);
}

/// A shard of a region, addressed by its base offset. Its methods require the shard lock
/// (held by `Locked`), except the counters' reads.
pub(crate) struct Shard<'a> {
    pub(crate) m: &'a Mapping,
    pub(crate) g: &'a Geometry,
    pub(crate) base: usize,
    pub(crate) mask: usize,
    /// Absolute offsets of the index (hot and cold parts), the policy's arrays, the bitmap and
    /// the heap.
    index: usize,
    cold: usize,
    pub(crate) links: usize,
    pub(crate) ghost: usize,
    pub(crate) main_ghost: usize,
    pub(crate) sketch: usize,
    bitmap: usize,
    heap: usize,
    /// The largest record, in bytes (a bound on lengths read without the lock).
    max_object: u64,
    /// Whether this holder of the lock opened a write section (the version word is odd).
    writing: Cell<bool>,
    /// The admission planned for the entry being stored (`policy.rs`).
    pub(crate) plan: Cell<Option<crate::policy::Plan>>,
}

/// A locked shard; unlocks on drop. If dropped while panicking, the shard is marked dirty: the
/// operation may have stopped half-way.
pub(crate) struct Locked<'a> {
    pub(crate) s: Shard<'a>,
    mutex: RawMutex,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.s.m.u32(self.s.base + S_DIRTY).store(1, Relaxed);
        }
        self.s.end_write();
        self.mutex.unlock();
    }
}

impl<'a> std::ops::Deref for Locked<'a> {
    type Target = Shard<'a>;
    fn deref(&self) -> &Shard<'a> {
        &self.s
    }
}

/// Locks shard `shard`, waiting at most the region's lock bound. A shard whose last holder
/// died inside it, or marked dirty, is checked and rebuilt first; a mutex left unrecoverable is
/// initialised again after marking the shard for that check.
pub(crate) fn lock(region: &Region, shard: usize) -> Result<Locked<'_>, LockError> {
    let s = Shard::new(region, shard);
    let mutex = region.map.mutex(s.base);
    let repair = region.map.u64(s.base + S_REPAIR);
    let acquired = mutex::lock_repairing(
        mutex,
        repair,
        region.lock_bound,
        || s.mark_corrupt(),
        || {
            (region.report)(&format!(
                "peakcache-shm: the lock of shard {shard} was left unrecoverable; \
                 initialised again, the shard to be checked and rebuilt before use"
            ))
        },
    )?;
    let locked = Locked { s, mutex };
    if acquired == Acquired::OwnerDied || locked.m.u32(locked.base + S_DIRTY).load(Relaxed) != 0 {
        locked.rebuild();
        locked.count(RegionCounter::Recoveries);
    }
    Ok(locked)
}

/// What `evict_one` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Evicted {
    /// An entry or a control record went.
    One,
    /// The policy turned the entry being stored away (its plan allowed it).
    TheNewEntry,
    /// Nothing could go.
    Nothing,
}

/// What an optimistic read found.
pub(crate) enum Optimistic<T> {
    /// The key has no entry (validated).
    Absent,
    /// The key has an entry, but none served without the lock (validated): not fresh, or a
    /// stale one with a ticket to hand out or passing through.
    NotFresh,
    /// Found fresh, read and validated.
    Read(T),
    /// A writer was active or came by, or the entry needs the lock (tags to check, a
    /// region-wide soft purge to apply): take the lock.
    Retry,
}

/// What decides, without the lock, whether a stored value is served.
pub(crate) struct ServeRule<E: Fn() -> u64> {
    /// Region time.
    pub(crate) now: u64,
    /// Whether the cache is frozen (everything stored is fresh).
    pub(crate) frozen: bool,
    /// Whether a stale entry the lifecycle serves without a ticket is served too (`lookup`), or
    /// only a fresh one (`get`).
    pub(crate) stale: bool,
    /// Entries fetched before this sequence number must be settled under the lock (the
    /// region-wide soft purge).
    pub(crate) stale_all_seq: u64,
    /// The tag table's epoch, asked only of an entry with tags: one checked at another epoch
    /// must be settled under the lock.
    pub(crate) tag_epoch: E,
}

impl<'a> Shard<'a> {
    #[inline]
    pub(crate) fn new(region: &'a Region, shard: usize) -> Self {
        let l = &region.layout;
        let base = l.shards_off + shard * l.stride;
        Shard {
            m: &region.map,
            g: &region.geo,
            base,
            mask: region.geo.slots as usize - 1,
            index: base + l.index_off,
            cold: base + l.cold_off,
            links: base + l.links_off,
            ghost: base + l.ghost_off,
            main_ghost: base + l.main_ghost_off,
            sketch: base + l.sketch_off,
            bitmap: base + l.bitmap_off,
            heap: base + l.heap_off,
            max_object: region.settings.max_object,
            writing: Cell::new(false),
            plan: Cell::new(None),
        }
    }

    // ---- write sections -------------------------------------------------------------------

    /// Opens a write section (once per lock holding): the version word goes odd, so that
    /// optimistic readers retry. Called before any change a reader could see.
    #[inline]
    pub(crate) fn begin_write(&self) {
        if !self.writing.get() {
            self.writing.set(true);
            let v = self.m.u64(self.base + S_VERSION);
            // Odd; already odd if a writer died inside its section (then the rebuild closes it).
            v.store(v.load(Relaxed) | 1, Relaxed);
            fence(Release);
        }
    }

    /// Closes the write section, if open: the version word goes to the next even value.
    fn end_write(&self) {
        if self.writing.replace(false) {
            let v = self.m.u64(self.base + S_VERSION);
            v.store((v.load(Relaxed) | 1).wrapping_add(1), Release);
        }
    }

    // ---- counters -------------------------------------------------------------------------

    /// Adds one to a counter (an atomic add: optimistic readers count without the lock).
    #[inline]
    pub(crate) fn count(&self, c: impl Counted) {
        self.m
            .u64(self.base + S_COUNTERS + 8 * c.index())
            .fetch_add(1, Relaxed);
    }

    /// Takes back a `count` (an optimistic read that counted a hit, then found it torn).
    pub(crate) fn uncount(&self, c: impl Counted) {
        self.m
            .u64(self.base + S_COUNTERS + 8 * c.index())
            .fetch_sub(1, Relaxed);
    }

    /// A counter's value (no lock needed: a torn count is impossible on a 64-bit word).
    pub(crate) fn counter(&self, c: impl Counted) -> u64 {
        self.m
            .u64(self.base + S_COUNTERS + 8 * c.index())
            .load(Relaxed)
    }

    pub(crate) fn entries(&self) -> u64 {
        self.m.u64(self.base + S_ENTRIES).load(Relaxed)
    }

    pub(crate) fn used_bytes(&self) -> u64 {
        self.m.u64(self.base + S_USED).load(Relaxed) * UNIT as u64
    }

    fn add(&self, off: usize, delta: i64) {
        let w = self.m.u64(self.base + off);
        w.store(w.load(Relaxed).wrapping_add(delta as u64), Relaxed);
    }

    pub(crate) fn mark_corrupt(&self) {
        self.m.u32(self.base + S_DIRTY).store(1, Relaxed);
    }

    // ---- slots ----------------------------------------------------------------------------

    /// The offset of slot `i`'s hot part: key hash, record, meta word.
    #[inline]
    pub(crate) fn hot(&self, i: usize) -> usize {
        self.index + (i & self.mask) * HOT_SLOT
    }

    /// The offset of slot `i`'s cold part: futex word, flight owner, id and deadline,
    /// back-off and pass-through.
    #[inline]
    fn cold(&self, i: usize) -> usize {
        self.cold + (i & self.mask) * COLD_SLOT
    }

    #[inline]
    pub(crate) fn slot_hash(&self, i: usize) -> u64 {
        self.m.u64(self.hot(i) + F_HASH).load(Relaxed)
    }
    #[inline]
    pub(crate) fn meta(&self, i: usize) -> u32 {
        self.m.u32(self.hot(i) + F_META).load(Relaxed)
    }
    #[inline]
    pub(crate) fn set_meta(&self, i: usize, v: u32) {
        self.begin_write();
        self.m.u32(self.hot(i) + F_META).store(v, Relaxed)
    }
    pub(crate) fn futex(&self, i: usize) -> &'a std::sync::atomic::AtomicU32 {
        self.m.u32(self.cold(i) + F_FUTEX)
    }
    /// A 64-bit field of slot `i`'s cold part.
    fn get64(&self, i: usize, f: usize) -> u64 {
        self.m.u64(self.cold(i) + f).load(Relaxed)
    }
    fn set64(&self, i: usize, f: usize, v: u64) {
        self.begin_write();
        self.m.u64(self.cold(i) + f).store(v, Relaxed)
    }
    pub(crate) fn flight_id(&self, i: usize) -> u64 {
        self.get64(i, F_FLIGHT)
    }
    pub(crate) fn deadline(&self, i: usize) -> u64 {
        self.get64(i, F_DEADLINE)
    }
    /// What slot `i` remembers of its key's failures and pass-through.
    pub(crate) fn key_record(&self, i: usize) -> KeyRecord {
        KeyRecord {
            retry_at: self.get64(i, F_RETRY),
            failures: (self.meta(i) & M_FAIL) >> M_FAIL_SHIFT,
            pass_until: self.get64(i, F_PASS),
        }
    }

    /// Applies `f` to slot `i`'s key record, writing back what changed (the count of failures
    /// saturates at 255, far past the longest back-off).
    pub(crate) fn update_key_record(&self, i: usize, f: impl FnOnce(&mut KeyRecord)) {
        let before = self.key_record(i);
        let mut k = before;
        f(&mut k);
        if k.retry_at != before.retry_at {
            self.set64(i, F_RETRY, k.retry_at);
        }
        if k.pass_until != before.pass_until {
            self.set64(i, F_PASS, k.pass_until);
        }
        let failures = k.failures.min(M_FAIL >> M_FAIL_SHIFT);
        if failures != before.failures {
            let m = self.meta(i) & !M_FAIL;
            self.set_meta(i, m | (failures << M_FAIL_SHIFT));
        }
    }
    pub(crate) fn owner(&self, i: usize) -> (u32, u64) {
        (
            self.m.u32(self.cold(i) + F_PID).load(Relaxed),
            self.get64(i, F_START),
        )
    }
    pub(crate) fn flight_active(&self, i: usize) -> bool {
        self.meta(i) & M_ACTIVE != 0
    }
    pub(crate) fn outcome(&self, i: usize) -> Outcome {
        Outcome::from_bits((self.meta(i) & M_OUTCOME) >> M_OUTCOME_SHIFT)
    }

    /// Records an access (the slot's two-bit hit counter, collected by the policy); writes
    /// only below its cap. Outside write sections and without the lock: a compare-and-swap of
    /// the exact word read, so it never disturbs the other bits a writer sets (a race loses one
    /// count at most). On a slot that changed hands meanwhile it credits another key: harmless.
    #[inline]
    pub(crate) fn touch(&self, i: usize) {
        let w = self.m.u32(self.hot(i) + F_META);
        let m = w.load(Relaxed);
        if m & M_FREQ < M_FREQ {
            let _ = w.compare_exchange(m, m + 1, Relaxed, Relaxed);
        }
    }

    /// Starts a flight on slot `i`.
    pub(crate) fn start_flight(
        &self,
        i: usize,
        id: u64,
        deadline: u64,
        owner: (u32, u64),
        refresh: bool,
    ) {
        let mut m = self.meta(i) & !(M_ACTIVE | M_REFRESH | M_INVALIDATED | M_OUTCOME);
        m |= M_ACTIVE;
        if refresh {
            m |= M_REFRESH;
        }
        self.set_meta(i, m);
        self.m.u32(self.cold(i) + F_PID).store(owner.0, Relaxed);
        self.set64(i, F_START, owner.1);
        self.set64(i, F_FLIGHT, id);
        self.set64(i, F_DEADLINE, deadline);
    }

    /// Ends slot `i`'s flight with `outcome` and wakes its waiters.
    pub(crate) fn end_flight(&self, i: usize, outcome: Outcome) {
        let m = self.meta(i) & !(M_ACTIVE | M_OUTCOME | M_WAITERS);
        self.set_meta(i, m | ((outcome as u32) << M_OUTCOME_SHIFT));
        self.signal(i, true);
    }

    /// Marks slot `i`'s flight invalidated (a purge during the fetch).
    pub(crate) fn invalidate_flight(&self, i: usize) {
        self.set_meta(i, self.meta(i) | M_INVALIDATED);
    }

    /// Registers a waiter on slot `i`: returns the futex word and its current value.
    pub(crate) fn register_waiter(&self, i: usize) -> (&'a std::sync::atomic::AtomicU32, u32) {
        self.set_meta(i, self.meta(i) | M_WAITERS);
        let f = self.futex(i);
        (f, f.load(Relaxed))
    }

    /// Bumps slot `i`'s futex word and wakes its sleepers if any registered (or `force`).
    fn signal(&self, i: usize, force: bool) {
        let had = self.meta(i) & M_WAITERS != 0;
        let f = self.futex(i);
        f.store(f.load(Relaxed).wrapping_add(1), Relaxed);
        if had || force {
            if had {
                self.set_meta(i, self.meta(i) & !M_WAITERS);
            }
            crate::futex::wake_all(f);
        }
    }

    /// The slot of `key` (hash `hash`), if present with a valid record.
    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<(usize, Rec)> {
        let mut i = hash as usize & self.mask;
        for _ in 0..=self.mask {
            let h = self.slot_hash(i);
            if h == 0 {
                return None;
            }
            if h == hash {
                if let Some(r) = self.slot_rec(i) {
                    if r.key_len as usize == key.len() && self.key_bytes(&r) == key {
                        return Some((i, r));
                    }
                }
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Looks `key` up without the lock and, if `rule` serves its entry without the lock, counts
    /// the hit, hands the record to `take` (which copies out what it needs: `None` for the
    /// lock) and records the access: what `take` gave, the record and how it is served. An
    /// entry is served when fresh (or the cache frozen) or, with `rule.stale`, when the
    /// lifecycle's `decide` serves it stale without a ticket (a refresh runs, or a failing
    /// origin backs off or is probed); anything else is `NotFresh` (a ticket to hand out, a
    /// pass-through: the locked lookup decides), or `Retry` where the lock must settle it first
    /// (a flight past its deadline, tags to check, a soft purge). A seqlock read: everything read
    /// is untrusted (atomic loads, bounds-checked, copies opaque) until the shard's version,
    /// even before the first read, is found unchanged after the last; a writer in the way (or a
    /// torn read) is `Retry`, and the count taken back.
    #[inline]
    pub(crate) fn read_servable<E: Fn() -> u64, T>(
        &self,
        hash: u64,
        key: &[u8],
        rule: &ServeRule<E>,
        take: impl FnOnce(&Shard<'_>, &Rec) -> Option<T>,
    ) -> Optimistic<(T, Rec, Served)> {
        let version = self.m.u64(self.base + S_VERSION);
        let v1 = version.load(Acquire);
        if v1 & 1 != 0 || self.m.u32(self.base + S_DIRTY).load(Relaxed) != 0 {
            return Optimistic::Retry;
        }
        let read = match self.find_racy(hash, key) {
            Err(()) => return Optimistic::Retry,
            Ok(None) => Optimistic::Absent,
            Ok(Some((slot, r))) => match self.servable_racy(slot, &r, rule) {
                Optimistic::Read(served) => {
                    // Counted before the copy (an atomic add after it would wait for its
                    // stores); taken back below if the read turns out torn.
                    self.count(Counter::served(served));
                    match take(self, &r) {
                        Some(t) => Optimistic::Read((slot, t, r, served)),
                        None => {
                            self.uncount(Counter::served(served));
                            return Optimistic::Retry;
                        }
                    }
                }
                Optimistic::Absent => Optimistic::Absent,
                Optimistic::NotFresh => Optimistic::NotFresh,
                Optimistic::Retry => return Optimistic::Retry,
            },
        };
        fence(Acquire);
        if version.load(Relaxed) != v1 {
            if let Optimistic::Read((_, _, _, served)) = read {
                self.uncount(Counter::served(served));
            }
            return Optimistic::Retry;
        }
        match read {
            Optimistic::Read((slot, t, r, served)) => {
                self.touch(slot);
                Optimistic::Read((t, r, served))
            }
            Optimistic::Absent => Optimistic::Absent,
            Optimistic::NotFresh => Optimistic::NotFresh,
            Optimistic::Retry => Optimistic::Retry,
        }
    }

    /// How `read_servable` serves record `r` of slot `i` by `rule` (read without the lock).
    #[inline]
    fn servable_racy<E: Fn() -> u64>(
        &self,
        i: usize,
        r: &Rec,
        rule: &ServeRule<E>,
    ) -> Optimistic<Served> {
        let standing = match r.has_value() {
            false => None,
            true if rule.frozen => Some(Served::Fresh),
            true => r.served(rule.now),
        };
        if standing.is_none() || (standing != Some(Served::Fresh) && !rule.stale) {
            return Optimistic::NotFresh;
        }
        if r.seq < rule.stale_all_seq
            || (r.ntags != 0 && self.checked_epoch(r) != (rule.tag_epoch)())
        {
            return Optimistic::Retry;
        }
        if standing == Some(Served::Fresh) {
            return Optimistic::Read(Served::Fresh);
        }
        let flight = self.flight_active(i);
        if flight && rule.now >= self.deadline(i) {
            // The locked lookup ends a flight past its lock timeout first.
            return Optimistic::Retry;
        }
        let state = || self.key_record(i).state(rule.now, flight);
        match decide(standing, state, Asker::Caller) {
            Decision::Serve(served) => Optimistic::Read(served),
            _ => Optimistic::NotFresh,
        }
    }

    /// Appends the value of `r` (found by `read_servable`) to `out`, without the lock: `None`
    /// if its length is beyond any record's (torn data). Validated by the version check.
    #[inline]
    pub(crate) fn copy_value_racy(&self, r: &Rec, out: &mut Vec<u8>) -> Option<()> {
        if r.value_len as u64 > self.max_object {
            return None;
        }
        self.m.extend_racy(
            self.unit_off(r.at) + r.value_off(),
            r.value_len as usize,
            out,
        )
    }

    /// `find` without the lock (see `read_servable`): nothing is marked corrupt, anything out of
    /// range is `Err` (torn data: retry under the lock), and the answer means nothing until the
    /// version is checked. Prefetches the start of the record as soon as the slot names it.
    #[inline]
    fn find_racy(&self, hash: u64, key: &[u8]) -> Result<Option<(usize, Rec)>, ()> {
        let hot = self.m.u64s(self.index, 2 * (self.mask + 1));
        let mut i = hash as usize & self.mask;
        for _ in 0..=self.mask {
            let h = hot[2 * i].load(Relaxed);
            if h == 0 {
                return Ok(None);
            }
            if h == hash {
                // The record's unit and the meta word, in one load.
                let w = hot[2 * i + 1].load(Relaxed);
                let (at, meta) = if cfg!(target_endian = "little") {
                    (w as u32, (w >> 32) as u32)
                } else {
                    ((w >> 32) as u32, w as u32)
                };
                if at < self.g.heap_units {
                    let hint =
                        ((meta & M_UNITS) >> M_UNITS_SHIFT).clamp(1, PREFETCH_UNITS) as usize;
                    self.m.prefetch(self.unit_off(at), hint * UNIT);
                }
                let r = self.rec(at).filter(|r| r.hash == h).ok_or(())?;
                if r.key_len as usize == key.len()
                    && self
                        .m
                        .eq_racy(self.unit_off(at) + r.key_off(), key)
                        .ok_or(())?
                {
                    return Ok(Some((i, r)));
                }
            }
            i = (i + 1) & self.mask;
        }
        Ok(None)
    }

    /// The record of slot `i`, checked; a bad one marks the shard for a rebuild.
    #[inline]
    pub(crate) fn slot_rec(&self, i: usize) -> Option<Rec> {
        let at = self.m.u32(self.hot(i) + F_REC).load(Relaxed);
        let r = self.rec(at);
        if r.is_none() || r.is_some_and(|r| r.hash != self.slot_hash(i)) {
            self.mark_corrupt();
            return None;
        }
        r
    }

    /// Decodes and checks the record header at heap unit `at`. Atomic loads, so that it also
    /// serves readers without the lock (then the result is only trusted after validation).
    #[inline]
    fn rec(&self, at: u32) -> Option<Rec> {
        if at >= self.g.heap_units {
            return None;
        }
        let mut h = [0u64; RECORD_HEADER / 8];
        self.m.read_words_racy(self.unit_off(at), &mut h)?;
        let r64 = |f: usize| h[f / 8];
        let r32 = |f: usize| (h[f / 8] >> (8 * (f % 8))) as u32;
        if r32(R_MAGIC) != RECORD_MAGIC {
            return None;
        }
        let r = Rec {
            at,
            units: r32(R_UNITS),
            key_len: r32(R_KEY_LEN),
            value_len: r32(R_VALUE_LEN),
            hash: r64(R_HASH),
            stored_at: r64(R_STORED),
            ttl_ms: r32(R_TTL),
            swr_ms: r32(R_SWR),
            sie_ms: r32(R_SIE),
            flags: r32(R_FLAGS),
            seq: r64(R_SEQ),
            ntags: r32(R_NTAGS),
            kind: r32(R_KIND),
        };
        let size = NewRecord::size(r.key_len as usize, r.value_len as usize, r.ntags as usize);
        let fits = r.units >= 1
            && (at as u64 + r.units as u64) <= self.g.heap_units as u64
            && size <= r.units as u64 * UNIT as u64
            && r.ntags as usize <= MAX_TAGS
            && r.key_len as usize <= MAX_KEY
            && r.kind <= KIND_VALUE;
        fits.then_some(r)
    }

    pub(crate) fn key_bytes(&self, r: &Rec) -> &'a [u8] {
        self.m
            .bytes(self.unit_off(r.at) + r.key_off(), r.key_len as usize)
    }

    pub(crate) fn value_bytes(&self, r: &Rec) -> &'a [u8] {
        self.m
            .bytes(self.unit_off(r.at) + r.value_off(), r.value_len as usize)
    }

    pub(crate) fn tag_hashes(&self, r: &Rec) -> impl Iterator<Item = u64> + '_ {
        let o = self.unit_off(r.at) + r.tags_off();
        (0..r.ntags as usize).map(move |t| self.m.u64(o + 8 * t).load(Relaxed))
    }

    pub(crate) fn checked_epoch(&self, r: &Rec) -> u64 {
        self.m.u64(self.unit_off(r.at) + R_CHECKED).load(Relaxed)
    }

    pub(crate) fn set_checked_epoch(&self, r: &Rec, e: u64) {
        self.begin_write();
        self.m
            .u64(self.unit_off(r.at) + R_CHECKED)
            .store(e, Relaxed)
    }

    /// Makes the entry stale from `at` on, if it was fresh later than that.
    pub(crate) fn make_stale_at(&self, r: &mut Rec, at: u64) {
        if r.fresh_until() > at {
            self.begin_write();
            let ttl = at.saturating_sub(r.stored_at) / 1_000_000;
            r.ttl_ms = u32::try_from(ttl).unwrap_or(u32::MAX);
            let o = self.unit_off(r.at);
            self.m.u32(o + R_TTL).store(r.ttl_ms, Relaxed);
            self.m.u64(o + R_CHECKSUM).store(self.checksum(r), Relaxed);
        }
    }

    /// Marks the record's tag purges up to `seq` applied.
    pub(crate) fn set_seq(&self, r: &mut Rec, seq: u64) {
        if seq > r.seq {
            self.begin_write();
            r.seq = seq;
            let o = self.unit_off(r.at);
            self.m.u64(o + R_SEQ).store(seq, Relaxed);
            self.m.u64(o + R_CHECKSUM).store(self.checksum(r), Relaxed);
        }
    }

    /// The record's checksum, over its header (but the last-checked tag epoch, a cache) and
    /// its tags, key and value. Computed when the record is written and checked only by the
    /// rebuild after a crash: never on the hit path.
    fn checksum(&self, r: &Rec) -> u64 {
        let o = self.unit_off(r.at);
        let len = r.value_off() + r.value_len as usize;
        let mut c = Checksum::new();
        c.add(self.m.bytes(o, R_CHECKSUM));
        c.add(self.m.bytes(o + RECORD_HEADER, len - RECORD_HEADER));
        c.finish()
    }

    /// Allocates and writes a record; `None` when the heap has no block that large.
    pub(crate) fn write_record(&self, n: &NewRecord<'_>) -> Option<Rec> {
        let units = n.units();
        self.begin_write();
        let at = self.alloc(units)?;
        let o = self.unit_off(at);
        let m = self.m;
        let w32 = |f, v| m.u32(o + f).store(v, Relaxed);
        let w64 = |f, v| m.u64(o + f).store(v, Relaxed);
        w32(R_MAGIC, RECORD_MAGIC);
        w32(R_UNITS, units);
        w32(R_KEY_LEN, n.key.len() as u32);
        w32(R_VALUE_LEN, n.value.map_or(0, <[u8]>::len) as u32);
        w64(R_HASH, n.hash);
        w64(R_STORED, n.stored_at);
        w32(R_TTL, n.ttl_ms);
        w32(R_SWR, n.swr_ms);
        w32(R_SIE, n.sie_ms);
        w32(R_FLAGS, n.flags);
        w64(R_SEQ, n.seq);
        w32(R_NTAGS, n.tags.len() as u32);
        w32(
            R_KIND,
            if n.value.is_some() {
                KIND_VALUE
            } else {
                KIND_KEY
            },
        );
        w64(R_CHECKED, u64::MAX);
        for (t, h) in n.tags.iter().enumerate() {
            w64(RECORD_HEADER + 8 * t, *h);
        }
        let key_off = o + RECORD_HEADER + n.tags.len() * 8;
        m.write(key_off, n.key);
        if let Some(v) = n.value {
            m.write(key_off + n.key.len(), v);
        }
        let r = self.rec(at)?;
        w64(R_CHECKSUM, self.checksum(&r));
        self.add(S_USED, units as i64);
        Some(r)
    }

    /// Points slot `i` at heap unit `at` (`NONE` for nothing), with its size hint.
    fn set_rec(&self, i: usize, at: u32, units: u32) {
        self.begin_write();
        self.m.u32(self.hot(i) + F_REC).store(at, Relaxed);
        let meta = self.meta(i) & !M_UNITS;
        self.set_meta(i, meta | (units.min(255) << M_UNITS_SHIFT));
    }

    /// Points slot `i` at record `r`, freeing the record it had. The policy sees a new value
    /// of a cached key as an access (it keeps its place), a value for a key that had none as
    /// an admission.
    pub(crate) fn replace_rec(&self, i: usize, r: &Rec) {
        let old = self.slot_rec(i);
        let had_value = old.is_some_and(|o| o.has_value());
        if let Some(old) = old {
            self.release(&old);
        }
        self.set_rec(i, r.at, r.units);
        if r.has_value() {
            self.add(S_ENTRIES, 1);
        }
        match (had_value, r.has_value()) {
            (true, true) => {
                self.reweigh(i, old.map_or(0, |o| o.units), r.units);
                self.touch(i);
            }
            (false, true) => {
                self.dequeue(i, 0);
                self.admit(i, r.units, self.slot_hash(i));
            }
            (true, false) => {
                self.dequeue(i, old.map_or(0, |o| o.units));
                self.enqueue_control(i);
            }
            (false, false) => {}
        }
    }

    /// Frees a record's units (it is no longer referenced).
    fn release(&self, r: &Rec) {
        self.begin_write();
        if r.has_value() {
            self.add(S_ENTRIES, -1);
        }
        self.add(S_USED, -(r.units as i64));
        self.free_span(r.at, r.units);
    }

    /// Whether a new slot may be taken (the index stays at most 7/8 full).
    pub(crate) fn has_free_slot(&self) -> bool {
        let occupied = self.m.u64(self.base + S_OCCUPIED).load(Relaxed);
        occupied < (self.mask as u64 + 1) * 7 / 8
    }

    /// Takes a new slot for a key of hash `hash`, pointing at record `r`, and places it in the
    /// policy (a value is admitted; a key-only record joins the control records). The caller
    /// checked `has_free_slot` and that the key has no slot.
    pub(crate) fn insert_slot(&self, hash: u64, r: &Rec) -> usize {
        let i = self.place_slot(hash, r);
        if r.has_value() {
            self.admit(i, r.units, hash);
        } else {
            self.enqueue_control(i);
        }
        i
    }

    /// `insert_slot` without the policy (the rebuild threads the queues itself).
    fn place_slot(&self, hash: u64, r: &Rec) -> usize {
        self.begin_write();
        let mut i = hash as usize & self.mask;
        while self.slot_hash(i) != 0 {
            i = (i + 1) & self.mask;
        }
        let (hot, cold) = (self.hot(i), self.cold(i));
        self.m.u32(hot + F_META).store(0, Relaxed);
        self.set_rec(i, r.at, r.units);
        self.m.u32(cold + F_PID).store(0, Relaxed);
        for f in [F_START, F_FLIGHT, F_DEADLINE, F_RETRY, F_PASS] {
            self.m.u64(cold + f).store(0, Relaxed);
        }
        self.m.u64(hot + F_HASH).store(hash, Relaxed);
        self.add(S_OCCUPIED, 1);
        if r.has_value() {
            self.add(S_ENTRIES, 1);
        }
        i
    }

    /// Removes slot `i` and its record (backward-shift deletion: later slots of the probe chain
    /// move up; their waiters are woken to find them again).
    pub(crate) fn remove_slot(&self, i: usize) {
        self.begin_write();
        let r = self.slot_rec(i);
        self.dequeue(i, r.map_or(0, |r| r.units));
        if let Some(r) = r {
            self.release(&r);
        }
        self.signal(i, false);
        let mut hole = i;
        let mut k = (i + 1) & self.mask;
        loop {
            let h = self.slot_hash(k);
            if h == 0 {
                break;
            }
            let ideal = h as usize & self.mask;
            // Move k into the hole unless its ideal position lies cyclically in (hole, k].
            let dist_k = k.wrapping_sub(ideal) & self.mask;
            let dist_hole = k.wrapping_sub(hole) & self.mask;
            if dist_k >= dist_hole {
                self.copy_slot(k, hole);
                self.signal(k, false);
                hole = k;
            }
            k = (k + 1) & self.mask;
            if k == i {
                break;
            }
        }
        self.m.u64(self.hot(hole) + F_HASH).store(0, Relaxed);
        self.m.u32(self.hot(hole) + F_META).store(0, Relaxed);
        self.add(S_OCCUPIED, -1);
    }

    fn copy_slot(&self, from: usize, to: usize) {
        self.begin_write();
        let copy64 = |a: usize, b: usize| self.m.u64(b).store(self.m.u64(a).load(Relaxed), Relaxed);
        let copy32 = |a: usize, b: usize| self.m.u32(b).store(self.m.u32(a).load(Relaxed), Relaxed);
        let (a, b) = (self.hot(from), self.hot(to));
        copy64(a + F_HASH, b + F_HASH);
        copy32(a + F_REC, b + F_REC);
        let meta = self.m.u32(a + F_META).load(Relaxed);
        self.m.u32(b + F_META).store(meta & !M_WAITERS, Relaxed);
        let (a, b) = (self.cold(from), self.cold(to));
        for f in [F_START, F_FLIGHT, F_DEADLINE, F_RETRY, F_PASS] {
            copy64(a + f, b + f);
        }
        copy32(a + F_PID, b + F_PID);
        self.moved(from, to);
        let f = self.futex(to);
        f.store(f.load(Relaxed).wrapping_add(1), Relaxed);
    }

    /// Whether slot `i` is idle (no value, no flight, no back-off, no pass-through) and can go.
    pub(crate) fn tidy(&self, i: usize, now: u64) {
        let Some(r) = self.slot_rec(i) else { return };
        if !r.has_value() && self.idle(i, now) {
            self.remove_slot(i);
        }
    }

    /// Whether slot `i` holds no flight, back-off or pass-through, nor the outcome of a flight
    /// that its waiters must still read: a flight that ended without a value for them (not
    /// stored: too large, no room) keeps its slot until its deadline, so that they fetch for
    /// themselves rather than find the key gone and fill it one after another.
    pub(crate) fn idle(&self, i: usize, now: u64) -> bool {
        let unread =
            matches!(self.outcome(i), Outcome::Pass | Outcome::TooLarge) && self.deadline(i) > now;
        // The key's value, if any, goes with the slot: nothing is left to serve stale.
        !self.flight_active(i) && self.key_record(i).is_idle(now, || false) && !unread
    }

    /// Replaces slot `i`'s value record by a key-only record (keeps the slot's control state),
    /// or removes the slot when it holds no control state.
    pub(crate) fn drop_value(&self, i: usize, now: u64) {
        let Some(r) = self.slot_rec(i) else { return };
        if !r.has_value() {
            return;
        }
        let key = self.key_bytes(&r).to_vec();
        if !self.idle(i, now) {
            let n = NewRecord {
                hash: r.hash,
                key: &key,
                value: None,
                flags: 0,
                stored_at: 0,
                ttl_ms: 0,
                swr_ms: 0,
                sie_ms: 0,
                seq: 0,
                tags: &[],
            };
            // The value's units are freed first, so a key-only record always fits.
            self.dequeue(i, r.units);
            self.release(&r);
            self.set_rec(i, NONE, 0);
            match self.write_record(&n) {
                Some(k) => {
                    self.set_rec(i, k.at, k.units);
                    self.enqueue_control(i);
                }
                None => self.remove_slot_without_record(i),
            }
        } else {
            self.remove_slot(i);
        }
    }

    fn remove_slot_without_record(&self, i: usize) {
        // The slot's record is already released: point it nowhere and remove the slot.
        self.set_rec(i, NONE, 0);
        let dirty = self.m.u32(self.base + S_DIRTY).load(Relaxed);
        self.remove_slot(i);
        // `remove_slot` saw an invalid record and marked the shard dirty: that was expected.
        self.m.u32(self.base + S_DIRTY).store(dirty, Relaxed);
    }

    // ---- eviction -------------------------------------------------------------------------

    /// Makes room for one more record: drops an idle control record if the first few hold
    /// one, else evicts the entry the policy chooses (`policy.rs`), which may be the one being
    /// stored. An entry with a flight in progress keeps its slot as a control record.
    pub(crate) fn evict_one(&self, now: u64, frozen: bool) -> Evicted {
        if self.drop_idle_control(now) {
            self.count(RegionCounter::EntriesDropped);
            return Evicted::One;
        }
        match self.choose_victim(now, frozen) {
            Choice::Leave(i, departure) => {
                self.count(match departure {
                    Departure::Expired => Counter::Expirations,
                    Departure::Evicted => Counter::Evictions,
                });
                self.drop_value(i as usize, now);
                Evicted::One
            }
            Choice::Reject => {
                self.count(Counter::Evictions);
                Evicted::TheNewEntry
            }
            Choice::Nothing => Evicted::Nothing,
        }
    }

    // ---- heap -----------------------------------------------------------------------------
    //
    // Free space is a set of maximal free spans of any length, each on the free list of its
    // size class (`floor(log2(len))`, `ORDERS` lists). A span's first unit holds its header
    // (magic, length, list links), its last unit a tail tag (magic, length); two bitmaps mark
    // where spans start and end and are the authority (a record's bytes may look like a tag).
    // Allocation takes the first span long enough among a few of the record's own class, else
    // the head of a larger class, and gives the rest back; freeing merges the span with free
    // neighbours on both sides. A record costs exactly its units: no power-of-two rounding, no
    // alignment, so the heap fills up to what the policy keeps.

    #[inline]
    fn unit_off(&self, u: u32) -> usize {
        self.heap + u as usize * UNIT
    }

    fn head(&self, class: usize) -> &'a std::sync::atomic::AtomicU32 {
        self.m.u32(self.base + S_FREE_HEADS + 4 * (class % ORDERS))
    }

    fn class(len: u32) -> usize {
        (31 - len.max(1).leading_zeros()) as usize
    }

    /// The bitmap word and bit of unit `u`: of span starts, or of span ends.
    fn bit_word(&self, u: u32, end: bool) -> (&'a std::sync::atomic::AtomicU64, u64) {
        let half = self.g.bitmap_bytes() / 2;
        let off = self.bitmap + if end { half } else { 0 } + (u as usize / 64) * 8;
        (self.m.u64(off), 1 << (u % 64))
    }

    fn bit(&self, u: u32, end: bool) -> bool {
        let (w, b) = self.bit_word(u, end);
        w.load(Relaxed) & b != 0
    }

    fn set_bit(&self, u: u32, end: bool, on: bool) {
        let (w, b) = self.bit_word(u, end);
        let v = w.load(Relaxed);
        w.store(if on { v | b } else { v & !b }, Relaxed);
    }

    /// The length of the free span starting at `u`, if one does (bitmap, header and bounds
    /// agree).
    fn free_len(&self, u: u32) -> Option<u32> {
        if u >= self.g.heap_units || !self.bit(u, false) {
            return None;
        }
        let o = self.unit_off(u);
        let len = self.m.u32(o + 4).load(Relaxed);
        let ok = self.m.u32(o).load(Relaxed) == FREE_MAGIC
            && len >= 1
            && u as u64 + len as u64 <= self.g.heap_units as u64;
        ok.then_some(len)
    }

    fn push_free(&self, u: u32, len: u32) {
        let o = self.unit_off(u);
        let head = self.head(Self::class(len));
        let next = head.load(Relaxed);
        self.m.u32(o).store(FREE_MAGIC, Relaxed);
        self.m.u32(o + 4).store(len, Relaxed);
        self.m.u32(o + 8).store(NONE, Relaxed);
        self.m.u32(o + 12).store(next, Relaxed);
        if next != NONE && next < self.g.heap_units {
            self.m.u32(self.unit_off(next) + 8).store(u, Relaxed);
        }
        head.store(u, Relaxed);
        let last = u + len - 1;
        let t = self.unit_off(last) + FREE_TAIL;
        self.m.u32(t).store(FREE_TAIL_MAGIC, Relaxed);
        self.m.u32(t + 4).store(len, Relaxed);
        self.set_bit(u, false, true);
        self.set_bit(last, true, true);
    }

    /// Takes the free span at `u` (of length `len`, checked by `free_len`) off its list.
    fn unlink_free(&self, u: u32, len: u32) {
        let o = self.unit_off(u);
        let prev = self.m.u32(o + 8).load(Relaxed);
        let next = self.m.u32(o + 12).load(Relaxed);
        let units = self.g.heap_units;
        if prev == NONE {
            self.head(Self::class(len)).store(next, Relaxed);
        } else if prev < units {
            self.m.u32(self.unit_off(prev) + 12).store(next, Relaxed);
        }
        if next != NONE && next < units {
            self.m.u32(self.unit_off(next) + 8).store(prev, Relaxed);
        }
        let last = u + len - 1;
        self.set_bit(u, false, false);
        self.set_bit(last, true, false);
        self.m.u32(o).store(0, Relaxed);
        self.m
            .u32(self.unit_off(last) + FREE_TAIL)
            .store(0, Relaxed);
    }

    /// Allocates `units` contiguous units, exactly.
    fn alloc(&self, units: u32) -> Option<u32> {
        let units = units.max(1);
        let k = Self::class(units);
        // First fit among the first few spans of the record's own class (lengths
        // `2^k..2^(k+1)`, some too short)...
        let mut u = self.head(k).load(Relaxed);
        for _ in 0..FIRST_FIT_PROBES {
            if u == NONE {
                break;
            }
            let Some(len) = self.free_len(u) else {
                self.mark_corrupt();
                return None;
            };
            if len >= units {
                return Some(self.take(u, len, units));
            }
            u = self.m.u32(self.unit_off(u) + 12).load(Relaxed);
        }
        // ...else any span of a larger class.
        for j in k + 1..ORDERS {
            let u = self.head(j).load(Relaxed);
            if u == NONE {
                continue;
            }
            let Some(len) = self.free_len(u).filter(|&l| l >= units) else {
                self.mark_corrupt();
                return None;
            };
            return Some(self.take(u, len, units));
        }
        None
    }

    /// Takes `units` from the start of the free span at `u` (of `len`), giving the rest back
    /// (its right neighbour is not free: spans are maximal).
    fn take(&self, u: u32, len: u32, units: u32) -> u32 {
        self.unlink_free(u, len);
        if len > units {
            self.push_free(u + units, len - units);
        }
        u
    }

    /// Frees the span `[u, u + units)`, merged with the free spans on either side.
    fn free_span(&self, mut u: u32, mut units: u32) {
        if units == 0 || u as u64 + units as u64 > self.g.heap_units as u64 {
            self.mark_corrupt();
            return;
        }
        if let Some(right) = self.free_len(u + units) {
            self.unlink_free(u + units, right);
            units += right;
        }
        if u > 0 && self.bit(u - 1, true) {
            let t = self.unit_off(u - 1) + FREE_TAIL;
            let len = self.m.u32(t + 4).load(Relaxed);
            let tagged = self.m.u32(t).load(Relaxed) == FREE_TAIL_MAGIC;
            if tagged && (1..=u).contains(&len) && self.free_len(u - len) == Some(len) {
                self.unlink_free(u - len, len);
                u -= len;
                units += len;
            } else {
                self.mark_corrupt();
            }
        }
        self.push_free(u, units);
    }

    /// Units of heap not used by records.
    pub(crate) fn free_units(&self) -> u64 {
        (self.g.heap_units as u64).saturating_sub(self.m.u64(self.base + S_USED).load(Relaxed))
    }

    /// The length of the block (free span or record) starting at unit `u`.
    fn block_len(&self, u: u32) -> Option<(u32, bool)> {
        if let Some(len) = self.free_len(u) {
            return Some((len, true));
        }
        self.rec(u).map(|r| (r.units, false))
    }

    /// The slot pointing at the record at unit `at` (of key hash `hash`).
    fn slot_of_record(&self, hash: u64, at: u32) -> Option<usize> {
        let mut i = hash as usize & self.mask;
        for _ in 0..=self.mask {
            let h = self.slot_hash(i);
            if h == 0 {
                return None;
            }
            if h == hash && self.m.u32(self.hot(i) + F_REC).load(Relaxed) == at {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Makes a free span of at least `units` when the heap has that much free but in pieces:
    /// picks, among windows starting at a few large free spans, the one holding the fewest
    /// record units, moves those records into other free spans (their slots follow them), and
    /// frees the window as one span. Copies at most the window's records (about `units`).
    /// False if some record finds no room elsewhere (the caller evicts by policy instead, and
    /// grows the policy's reserve of free units, which gives later moves their room).
    pub(crate) fn defragment(&self, units: u32) -> bool {
        self.begin_write();
        let heap = self.g.heap_units;
        // Candidate starts: spans of the largest classes first, far enough from the heap's end.
        let mut starts = Vec::with_capacity(DEFRAG_CANDIDATES);
        let mut visited = 0;
        'classes: for class in (0..ORDERS).rev() {
            let mut u = self.head(class).load(Relaxed);
            while u != NONE {
                if self.free_len(u).is_none() {
                    self.mark_corrupt();
                    return false;
                }
                if u as u64 + units as u64 <= heap as u64 {
                    starts.push(u);
                }
                visited += 1;
                if starts.len() == DEFRAG_CANDIDATES || visited == 8 * DEFRAG_CANDIDATES {
                    break 'classes;
                }
                u = self.m.u32(self.unit_off(u) + 12).load(Relaxed);
            }
        }
        // The window of least live units: (start, end, live).
        let mut best: Option<(u32, u32, u64)> = None;
        for s in starts {
            let (mut u, mut live) = (s, 0u64);
            let end = s as u64 + units as u64;
            while (u as u64) < end && u < heap {
                let Some((len, free)) = self.block_len(u) else {
                    self.mark_corrupt();
                    return false;
                };
                if !free {
                    live += len as u64;
                }
                u += len;
            }
            if (u as u64) >= end && best.is_none_or(|(_, _, l)| live < l) {
                best = Some((s, u, live));
            }
        }
        let Some((start, end, _)) = best else {
            return false;
        };
        // Take the window's free spans off their lists, so that no record moves into it.
        let mut blocks = Vec::new();
        let mut u = start;
        while u < end {
            let Some((len, free)) = self.block_len(u) else {
                self.mark_corrupt();
                return false;
            };
            if free {
                self.unlink_free(u, len);
            }
            blocks.push((u, len, free));
            u += len;
        }
        // Move each record out (or evict it); on one that can do neither, give back the rest.
        let mut buf = Vec::new();
        for (k, &(at, len, free)) in blocks.iter().enumerate() {
            if free {
                continue;
            }
            let Some(slot) = self.rec(at).and_then(|r| self.slot_of_record(r.hash, at)) else {
                self.mark_corrupt();
                return false;
            };
            if let Some(to) = self.alloc(len) {
                buf.clear();
                buf.extend_from_slice(self.m.bytes(self.unit_off(at), len as usize * UNIT));
                self.m.write(self.unit_off(to), &buf);
                self.set_rec(slot, to, len);
            } else {
                for &(a, l, _) in &blocks[..k] {
                    self.free_span(a, l);
                }
                for &(a, l, f) in &blocks[k..] {
                    if f {
                        self.free_span(a, l);
                    }
                }
                return false;
            }
        }
        self.free_span(start, end - start);
        true
    }

    // ---- check and rebuild ----------------------------------------------------------------

    /// Checks the whole shard and rebuilds what is derived: every slot whose record fails its
    /// checks (bounds, magic, hash, checksum) or overlaps another is dropped; the index is
    /// re-inserted from the slots kept, the allocator rebuilt from the gaps between records,
    /// the sizes recounted. Flights in progress are kept (their owners are checked as usual).
    pub(crate) fn rebuild(&self) {
        self.begin_write();
        let slots = self.mask + 1;
        let mut kept: Vec<SlotCopy> = Vec::new();
        let mut seen = HashSet::new();
        for i in 0..slots {
            let hash = self.slot_hash(i);
            if hash == 0 {
                continue;
            }
            let at = self.m.u32(self.hot(i) + F_REC).load(Relaxed);
            let ok = self.rec(at).filter(|r| {
                r.hash == hash
                    && self.m.u64(self.unit_off(at) + R_CHECKSUM).load(Relaxed) == self.checksum(r)
            });
            if let Some(r) = ok {
                if seen.insert(at) {
                    kept.push(SlotCopy {
                        hash,
                        rec: r.at,
                        meta: self.meta(i) & !M_WAITERS,
                        pid: self.m.u32(self.cold(i) + F_PID).load(Relaxed),
                        start: self.get64(i, F_START),
                        flight: self.get64(i, F_FLIGHT),
                        deadline: self.get64(i, F_DEADLINE),
                        retry: self.get64(i, F_RETRY),
                        pass: self.get64(i, F_PASS),
                    });
                    continue;
                }
            }
            self.count(RegionCounter::EntriesDropped);
        }
        // Overlapping records: keep the first.
        kept.sort_by_key(|c| c.rec);
        let mut spans: Vec<(u32, u32)> = Vec::with_capacity(kept.len());
        let mut end = 0u32;
        kept.retain(|c| {
            let units = self.rec(c.rec).map_or(0, |r| r.units);
            if c.rec < end || units == 0 {
                return false;
            }
            end = c.rec + units;
            spans.push((c.rec, units));
            true
        });
        // Index: clear (waking anyone asleep on a slot) and re-insert.
        for i in 0..slots {
            self.m.u64(self.hot(i) + F_HASH).store(0, Relaxed);
            self.m.u32(self.hot(i) + F_META).store(0, Relaxed);
            let f = self.futex(i);
            f.store(f.load(Relaxed).wrapping_add(1), Relaxed);
            crate::futex::wake_all(f);
        }
        self.m.u64(self.base + S_OCCUPIED).store(0, Relaxed);
        self.m.u64(self.base + S_ENTRIES).store(0, Relaxed);
        let mut used = 0u64;
        for c in &kept {
            if !self.has_free_slot() {
                break;
            }
            let r = self.rec(c.rec).expect("checked above");
            let i = self.place_slot(c.hash, &r);
            self.set_meta(i, c.meta);
            self.m.u32(self.cold(i) + F_PID).store(c.pid, Relaxed);
            self.set64(i, F_START, c.start);
            self.set64(i, F_FLIGHT, c.flight);
            self.set64(i, F_DEADLINE, c.deadline);
            self.set64(i, F_RETRY, c.retry);
            self.set64(i, F_PASS, c.pass);
            used += r.units as u64;
        }
        // Heap: every gap between kept records is free.
        self.m.zero(self.bitmap, self.g.bitmap_bytes());
        for o in 0..ORDERS {
            self.head(o).store(NONE, Relaxed);
        }
        let mut cursor = 0u32;
        for (at, units) in spans {
            if at > cursor {
                self.free_span(cursor, at - cursor);
            }
            cursor = at + units;
        }
        if cursor < self.g.heap_units {
            self.free_span(cursor, self.g.heap_units - cursor);
        }
        self.m.u64(self.base + S_USED).store(used, Relaxed);
        // Policy: queues threaded again from the slots kept (each back in the queue its bits
        // name), ghosts and sketch forgotten.
        self.reset_policy();
        for i in 0..slots {
            if self.slot_hash(i) != 0 {
                self.requeue(i);
            }
        }
        self.m.u32(self.base + S_DIRTY).store(0, Relaxed);
    }

    /// Every entry with a value: `(slot, record)`. For snapshots and `clear`.
    pub(crate) fn value_slots(&self) -> Vec<(usize, Rec)> {
        (0..=self.mask)
            .filter(|&i| self.slot_hash(i) != 0)
            .filter_map(|i| self.slot_rec(i).map(|r| (i, r)))
            .filter(|(_, r)| r.has_value())
            .collect()
    }

    /// Test hook: scribbles over the shard's allocator heads and the first slot's record
    /// pointer, as a process killed half-way through an update would leave them.
    pub(crate) fn scribble(&self) {
        self.begin_write();
        for o in 0..ORDERS {
            self.head(o).store(0x0bad_0bad, Relaxed);
        }
        for i in 0..=self.mask {
            if self.slot_hash(i) != 0 {
                self.m.u32(self.hot(i) + F_REC).store(0x7fff_fff0, Relaxed);
                break;
            }
        }
        self.add(S_USED, 12345);
    }
}
