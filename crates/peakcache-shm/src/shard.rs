//! One shard of the region: its lock, its index of fixed slots, its heap of records, and the
//! check that rebuilds it after a holder died inside it.
//!
//! ```text
//! shard = header (1 KiB: mutex, dirty flag, counters, allocator heads)
//!       | index: `slots` slots of 64 bytes (open addressing, linear probing, backward-shift delete)
//!       | bitmap: one bit per heap unit, set where a free block starts
//!       | heap: `heap_units` units of 64 bytes (records, and free blocks of a buddy allocator)
//! ```
//!
//! Everything read from the region is checked before use: an offset or a length out of range
//! marks the shard dirty (it is rebuilt at its next lock) and the operation treats the entry as
//! absent. Nothing here is `unsafe`: it all goes through the bounds-checked `Mapping`.

use crate::hash::Checksum;
use crate::mutex::{Acquired, RawMutex};
use crate::region::{Geometry, Mapping, Region, SLOT_SIZE, UNIT};
use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;

// Shard header.
const S_DIRTY: usize = 64;
const S_HAND: usize = 68;
const S_ENTRIES: usize = 72;
const S_USED: usize = 80;
const S_OCCUPIED: usize = 88;
const S_FREE_HEADS: usize = 96;
pub(crate) const ORDERS: usize = 32;
const S_COUNTERS: usize = S_FREE_HEADS + ORDERS * 4;

// Slot fields.
const F_HASH: usize = 0;
const F_REC: usize = 8;
const F_META: usize = 12;
const F_FUTEX: usize = 16;
const F_PID: usize = 20;
const F_START: usize = 24;
const F_FLIGHT: usize = 32;
const F_DEADLINE: usize = 40;
const F_RETRY: usize = 48;
const F_PASS: usize = 56;

// Slot meta bits.
const M_FREQ: u32 = 0b11;
pub(crate) const M_ACTIVE: u32 = 1 << 2;
pub(crate) const M_REFRESH: u32 = 1 << 3;
pub(crate) const M_INVALIDATED: u32 = 1 << 4;
pub(crate) const M_WAITERS: u32 = 1 << 5;
const M_OUTCOME_SHIFT: u32 = 6;
const M_OUTCOME: u32 = 0b111 << M_OUTCOME_SHIFT;
const M_FAIL_SHIFT: u32 = 16;
const M_FAIL: u32 = 0xff << M_FAIL_SHIFT;

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

/// Counters kept per shard, in the region, written under the shard lock.
#[derive(Clone, Copy, Debug)]
#[repr(usize)]
pub(crate) enum Counter {
    Fresh,
    Stale,
    StaleIfError,
    Miss,
    Wait,
    Pass,
    WaitTimeout,
    FillsCommitted,
    FillsFailed,
    FillsAbandoned,
    FillsUncacheable,
    RefreshesStarted,
    RefreshesCommitted,
    RefreshesFailed,
    RefreshesAbandoned,
    RefreshesUncacheable,
    Inserts,
    RejectedTooLarge,
    Evictions,
    Expirations,
    Purges,
    Recoveries,
    Takeovers,
    EntriesDropped,
}
pub(crate) const COUNTERS: usize = Counter::EntriesDropped as usize + 1;
const _: () = assert!(S_COUNTERS + COUNTERS * 8 <= crate::region::SHARD_HEADER);

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
    fn units(&self) -> u32 {
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

/// Initialises the heap of a new shard: one free span over all of it.
pub(crate) fn init_heap(region: &Region, shard: usize) {
    let s = Shard::new(region, shard);
    for o in 0..ORDERS {
        s.m.u32(s.base + S_FREE_HEADS + 4 * o).store(NONE, Relaxed);
    }
    s.free_span(0, region.geo.heap_units);
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
    g: &'a Geometry,
    base: usize,
    mask: usize,
    /// Absolute offsets of the index, the bitmap and the heap.
    index: usize,
    bitmap: usize,
    heap: usize,
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
        self.mutex.unlock();
    }
}

impl<'a> std::ops::Deref for Locked<'a> {
    type Target = Shard<'a>;
    fn deref(&self) -> &Shard<'a> {
        &self.s
    }
}

/// Locks shard `shard`. A shard whose last holder died inside it, or marked dirty, is checked
/// and rebuilt first. `None` if the lock is unusable.
pub(crate) fn lock(region: &Region, shard: usize) -> Option<Locked<'_>> {
    let s = Shard::new(region, shard);
    let mutex = region.map.mutex(s.base);
    let acquired = mutex.lock().ok()?;
    let locked = Locked { s, mutex };
    if acquired == Acquired::OwnerDied || locked.m.u32(locked.base + S_DIRTY).load(Relaxed) != 0 {
        locked.rebuild();
        locked.count(Counter::Recoveries);
    }
    Some(locked)
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
            bitmap: base + l.bitmap_off,
            heap: base + l.heap_off,
        }
    }

    // ---- counters -------------------------------------------------------------------------

    /// Adds one to a counter (under the lock: a plain load and store).
    pub(crate) fn count(&self, c: Counter) {
        let w = self.m.u64(self.base + S_COUNTERS + 8 * c as usize);
        w.store(w.load(Relaxed).wrapping_add(1), Relaxed);
    }

    /// A counter's value (no lock needed: a torn count is impossible on a 64-bit word).
    pub(crate) fn counter(&self, c: usize) -> u64 {
        self.m.u64(self.base + S_COUNTERS + 8 * c).load(Relaxed)
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

    fn mark_corrupt(&self) {
        self.m.u32(self.base + S_DIRTY).store(1, Relaxed);
    }

    // ---- slots ----------------------------------------------------------------------------

    #[inline]
    fn slot(&self, i: usize) -> usize {
        self.index + i * SLOT_SIZE
    }

    #[inline]
    pub(crate) fn slot_hash(&self, i: usize) -> u64 {
        self.m.u64(self.slot(i) + F_HASH).load(Relaxed)
    }
    #[inline]
    pub(crate) fn meta(&self, i: usize) -> u32 {
        self.m.u32(self.slot(i) + F_META).load(Relaxed)
    }
    #[inline]
    pub(crate) fn set_meta(&self, i: usize, v: u32) {
        self.m.u32(self.slot(i) + F_META).store(v, Relaxed)
    }
    pub(crate) fn futex(&self, i: usize) -> &'a std::sync::atomic::AtomicU32 {
        self.m.u32(self.slot(i) + F_FUTEX)
    }
    fn get64(&self, i: usize, f: usize) -> u64 {
        self.m.u64(self.slot(i) + f).load(Relaxed)
    }
    fn set64(&self, i: usize, f: usize, v: u64) {
        self.m.u64(self.slot(i) + f).store(v, Relaxed)
    }
    pub(crate) fn flight_id(&self, i: usize) -> u64 {
        self.get64(i, F_FLIGHT)
    }
    pub(crate) fn deadline(&self, i: usize) -> u64 {
        self.get64(i, F_DEADLINE)
    }
    pub(crate) fn retry_at(&self, i: usize) -> u64 {
        self.get64(i, F_RETRY)
    }
    pub(crate) fn set_retry_at(&self, i: usize, v: u64) {
        self.set64(i, F_RETRY, v)
    }
    pub(crate) fn pass_until(&self, i: usize) -> u64 {
        self.get64(i, F_PASS)
    }
    pub(crate) fn set_pass_until(&self, i: usize, v: u64) {
        self.set64(i, F_PASS, v)
    }
    pub(crate) fn owner(&self, i: usize) -> (u32, u64) {
        (
            self.m.u32(self.slot(i) + F_PID).load(Relaxed),
            self.get64(i, F_START),
        )
    }
    pub(crate) fn flight_active(&self, i: usize) -> bool {
        self.meta(i) & M_ACTIVE != 0
    }
    pub(crate) fn failures(&self, i: usize) -> u32 {
        (self.meta(i) & M_FAIL) >> M_FAIL_SHIFT
    }
    pub(crate) fn set_failures(&self, i: usize, n: u32) {
        let m = self.meta(i) & !M_FAIL;
        self.set_meta(i, m | (n.min(255) << M_FAIL_SHIFT));
    }
    pub(crate) fn outcome(&self, i: usize) -> Outcome {
        Outcome::from_bits((self.meta(i) & M_OUTCOME) >> M_OUTCOME_SHIFT)
    }

    /// Records an access (the CLOCK's two-bit counter); writes only below its cap.
    #[inline]
    pub(crate) fn touch(&self, i: usize) {
        let m = self.meta(i);
        if m & M_FREQ < M_FREQ {
            self.set_meta(i, m + 1);
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
        self.m.u32(self.slot(i) + F_PID).store(owner.0, Relaxed);
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

    /// The record of slot `i`, checked; a bad one marks the shard for a rebuild.
    #[inline]
    pub(crate) fn slot_rec(&self, i: usize) -> Option<Rec> {
        let at = self.m.u32(self.slot(i) + F_REC).load(Relaxed);
        let r = self.rec(at);
        if r.is_none() || r.is_some_and(|r| r.hash != self.slot_hash(i)) {
            self.mark_corrupt();
            return None;
        }
        r
    }

    /// Decodes and checks the record header at heap unit `at`.
    #[inline]
    fn rec(&self, at: u32) -> Option<Rec> {
        if at >= self.g.heap_units {
            return None;
        }
        // One bounds check for the whole header, then plain little-endian reads (the header is
        // written only under the shard lock, which the caller holds).
        let h = self.m.bytes(self.unit_off(at), RECORD_HEADER);
        let r32 = |f: usize| u32::from_le_bytes([h[f], h[f + 1], h[f + 2], h[f + 3]]);
        let r64 = |f: usize| u64::from(r32(f)) | u64::from(r32(f + 4)) << 32;
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
        self.m
            .u64(self.unit_off(r.at) + R_CHECKED)
            .store(e, Relaxed)
    }

    /// Makes the entry stale from `at` on, if it was fresh later than that.
    pub(crate) fn make_stale_at(&self, r: &mut Rec, at: u64) {
        if r.fresh_until() > at {
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
            r.seq = seq;
            let o = self.unit_off(r.at);
            self.m.u64(o + R_SEQ).store(seq, Relaxed);
            self.m.u64(o + R_CHECKSUM).store(self.checksum(r), Relaxed);
        }
    }

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

    /// Points slot `i` at record `r`, freeing the record it had.
    pub(crate) fn replace_rec(&self, i: usize, r: &Rec) {
        if let Some(old) = self.slot_rec(i) {
            self.release(&old);
        }
        self.m.u32(self.slot(i) + F_REC).store(r.at, Relaxed);
        if r.has_value() {
            self.add(S_ENTRIES, 1);
        }
    }

    /// Frees a record's units (it is no longer referenced).
    fn release(&self, r: &Rec) {
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

    /// Takes a new slot for a key of hash `hash`, pointing at record `r`. The caller checked
    /// `has_free_slot` and that the key has no slot.
    pub(crate) fn insert_slot(&self, hash: u64, r: &Rec) -> usize {
        let mut i = hash as usize & self.mask;
        while self.slot_hash(i) != 0 {
            i = (i + 1) & self.mask;
        }
        let s = self.slot(i);
        self.m.u32(s + F_META).store(0, Relaxed);
        self.m.u32(s + F_REC).store(r.at, Relaxed);
        self.m.u32(s + F_PID).store(0, Relaxed);
        for f in [F_START, F_FLIGHT, F_DEADLINE, F_RETRY, F_PASS] {
            self.m.u64(s + f).store(0, Relaxed);
        }
        self.m.u64(s + F_HASH).store(hash, Relaxed);
        self.add(S_OCCUPIED, 1);
        if r.has_value() {
            self.add(S_ENTRIES, 1);
        }
        i
    }

    /// Removes slot `i` and its record (backward-shift deletion: later slots of the probe chain
    /// move up; their waiters are woken to find them again).
    pub(crate) fn remove_slot(&self, i: usize) {
        if let Some(r) = self.slot_rec(i) {
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
        self.m.u64(self.slot(hole) + F_HASH).store(0, Relaxed);
        self.m.u32(self.slot(hole) + F_META).store(0, Relaxed);
        self.add(S_OCCUPIED, -1);
    }

    fn copy_slot(&self, from: usize, to: usize) {
        let (a, b) = (self.slot(from), self.slot(to));
        for f in [F_HASH, F_START, F_FLIGHT, F_DEADLINE, F_RETRY, F_PASS] {
            self.m
                .u64(b + f)
                .store(self.m.u64(a + f).load(Relaxed), Relaxed);
        }
        for f in [F_REC, F_PID] {
            self.m
                .u32(b + f)
                .store(self.m.u32(a + f).load(Relaxed), Relaxed);
        }
        let meta = self.m.u32(a + F_META).load(Relaxed);
        self.m.u32(b + F_META).store(meta & !M_WAITERS, Relaxed);
        let f = self.futex(to);
        f.store(f.load(Relaxed).wrapping_add(1), Relaxed);
    }

    /// Whether slot `i` is idle (no value, no flight, no back-off, no pass-through) and can go.
    pub(crate) fn tidy(&self, i: usize, now: u64) {
        let Some(r) = self.slot_rec(i) else { return };
        if !r.has_value()
            && !self.flight_active(i)
            && self.retry_at(i) <= now
            && self.pass_until(i) <= now
        {
            self.remove_slot(i);
        }
    }

    /// Replaces slot `i`'s value record by a key-only record (keeps the slot's control state).
    /// Returns false if no room for the key-only record (the slot is then removed).
    pub(crate) fn drop_value(&self, i: usize, now: u64) {
        let Some(r) = self.slot_rec(i) else { return };
        if !r.has_value() {
            return;
        }
        let key = self.key_bytes(&r).to_vec();
        let keep = self.flight_active(i) || self.retry_at(i) > now || self.pass_until(i) > now;
        if keep {
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
            self.release(&r);
            self.m.u32(self.slot(i) + F_REC).store(NONE, Relaxed);
            match self.write_record(&n) {
                Some(k) => self.m.u32(self.slot(i) + F_REC).store(k.at, Relaxed),
                None => self.remove_slot_without_record(i),
            }
        } else {
            self.remove_slot(i);
        }
    }

    fn remove_slot_without_record(&self, i: usize) {
        // The slot's record is already released: point it nowhere and remove the slot.
        self.m.u32(self.slot(i) + F_REC).store(NONE, Relaxed);
        let dirty = self.m.u32(self.base + S_DIRTY).load(Relaxed);
        self.remove_slot(i);
        // `remove_slot` saw an invalid record and marked the shard dirty: that was expected.
        self.m.u32(self.base + S_DIRTY).store(dirty, Relaxed);
    }

    // ---- eviction -------------------------------------------------------------------------

    /// Evicts one entry by CLOCK: the hand sweeps the index; dead entries and idle control
    /// records go at once, others lose a credit per pass and go at zero. Entries with a flight
    /// in flight are never evicted. Returns false if nothing could be evicted.
    pub(crate) fn evict_one(&self, now: u64, frozen: bool) -> bool {
        let slots = self.mask + 1;
        let hand = self.m.u32(self.base + S_HAND);
        for _ in 0..slots * 4 {
            let i = hand.load(Relaxed) as usize & self.mask;
            hand.store(((i + 1) & self.mask) as u32, Relaxed);
            if self.slot_hash(i) == 0 || self.flight_active(i) {
                continue;
            }
            let Some(r) = self.slot_rec(i) else {
                // A bad slot: drop it.
                self.remove_slot(i);
                hand.store(i as u32, Relaxed);
                return true;
            };
            let dead = !frozen && r.has_value() && r.standing(now) == Standing::Dead;
            let m = self.meta(i);
            if !dead && r.has_value() && m & M_FREQ > 0 {
                self.set_meta(i, m - 1);
                continue;
            }
            self.count(if !r.has_value() {
                Counter::EntriesDropped
            } else if dead {
                Counter::Expirations
            } else {
                Counter::Evictions
            });
            self.remove_slot(i);
            // A later slot may have moved into `i`: look at it again.
            hand.store(i as u32, Relaxed);
            return true;
        }
        false
    }

    // ---- heap -----------------------------------------------------------------------------

    #[inline]
    fn unit_off(&self, u: u32) -> usize {
        self.heap + u as usize * UNIT
    }

    fn head(&self, order: usize) -> &'a std::sync::atomic::AtomicU32 {
        self.m.u32(self.base + S_FREE_HEADS + 4 * order)
    }

    fn bit(&self, u: u32) -> bool {
        let w = self.m.u64(self.bitmap + (u as usize / 64) * 8);
        w.load(Relaxed) & (1 << (u % 64)) != 0
    }

    fn set_bit(&self, u: u32, on: bool) {
        let w = self.m.u64(self.bitmap + (u as usize / 64) * 8);
        let v = w.load(Relaxed);
        w.store(
            if on {
                v | 1 << (u % 64)
            } else {
                v & !(1 << (u % 64))
            },
            Relaxed,
        );
    }

    /// Whether a free block of `order` starts at `u` (bitmap, header and bounds agree).
    fn is_free_block(&self, u: u32, order: usize) -> bool {
        (u as u64 + (1u64 << order)) <= self.g.heap_units as u64
            && self.bit(u)
            && self.m.u32(self.unit_off(u)).load(Relaxed) == FREE_MAGIC
            && self.m.u32(self.unit_off(u) + 4).load(Relaxed) as usize == order
    }

    fn push_free(&self, u: u32, order: usize) {
        let o = self.unit_off(u);
        let head = self.head(order);
        let next = head.load(Relaxed);
        self.m.u32(o).store(FREE_MAGIC, Relaxed);
        self.m.u32(o + 4).store(order as u32, Relaxed);
        self.m.u32(o + 8).store(NONE, Relaxed);
        self.m.u32(o + 12).store(next, Relaxed);
        if next != NONE && next < self.g.heap_units {
            self.m.u32(self.unit_off(next) + 8).store(u, Relaxed);
        }
        head.store(u, Relaxed);
        self.set_bit(u, true);
    }

    fn unlink_free(&self, u: u32, order: usize) {
        let o = self.unit_off(u);
        let prev = self.m.u32(o + 8).load(Relaxed);
        let next = self.m.u32(o + 12).load(Relaxed);
        let units = self.g.heap_units;
        if prev == NONE {
            self.head(order).store(next, Relaxed);
        } else if prev < units {
            self.m.u32(self.unit_off(prev) + 12).store(next, Relaxed);
        }
        if next != NONE && next < units {
            self.m.u32(self.unit_off(next) + 8).store(prev, Relaxed);
        }
        self.set_bit(u, false);
        self.m.u32(o).store(0, Relaxed);
    }

    /// Allocates `units` contiguous units; the tail of the power-of-two block beyond them is
    /// given back at once, so a record costs its size rounded up to 64 bytes.
    fn alloc(&self, units: u32) -> Option<u32> {
        let k = units.max(1).next_power_of_two().trailing_zeros() as usize;
        for j in k..ORDERS {
            let u = self.head(j).load(Relaxed);
            if u == NONE {
                continue;
            }
            if !self.is_free_block(u, j) {
                self.mark_corrupt();
                return None;
            }
            self.unlink_free(u, j);
            let mut order = j;
            while order > k {
                order -= 1;
                self.push_free(u + (1 << order), order);
            }
            let block = 1u32 << k;
            if units < block {
                self.free_span(u + units, block - units);
            }
            return Some(u);
        }
        None
    }

    /// Frees the span `[u, u + units)`: split into aligned power-of-two blocks, each merged
    /// with its free buddies.
    fn free_span(&self, mut u: u32, mut units: u32) {
        while units > 0 {
            let align = if u == 0 { 31 } else { u.trailing_zeros() };
            let fit = 31 - units.leading_zeros();
            let order = align.min(fit) as usize;
            self.free_block(u, order);
            u += 1 << order;
            units -= 1 << order;
        }
    }

    fn free_block(&self, mut u: u32, mut order: usize) {
        while order + 1 < ORDERS {
            let buddy = u ^ (1 << order);
            if !self.is_free_block(buddy, order) {
                break;
            }
            self.unlink_free(buddy, order);
            u = u.min(buddy);
            order += 1;
        }
        self.push_free(u, order);
    }

    // ---- check and rebuild ----------------------------------------------------------------

    /// Checks the whole shard and rebuilds what is derived: every slot whose record fails its
    /// checks (bounds, magic, hash, checksum) or overlaps another is dropped; the index is
    /// re-inserted from the slots kept, the allocator rebuilt from the gaps between records,
    /// the sizes recounted. Flights in progress are kept (their owners are checked as usual).
    pub(crate) fn rebuild(&self) {
        let slots = self.mask + 1;
        let mut kept: Vec<SlotCopy> = Vec::new();
        let mut seen = HashSet::new();
        for i in 0..slots {
            let hash = self.slot_hash(i);
            if hash == 0 {
                continue;
            }
            let s = self.slot(i);
            let at = self.m.u32(s + F_REC).load(Relaxed);
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
                        pid: self.m.u32(s + F_PID).load(Relaxed),
                        start: self.get64(i, F_START),
                        flight: self.get64(i, F_FLIGHT),
                        deadline: self.get64(i, F_DEADLINE),
                        retry: self.get64(i, F_RETRY),
                        pass: self.get64(i, F_PASS),
                    });
                    continue;
                }
            }
            self.count(Counter::EntriesDropped);
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
            self.m.u64(self.slot(i) + F_HASH).store(0, Relaxed);
            self.m.u32(self.slot(i) + F_META).store(0, Relaxed);
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
            let i = self.insert_slot(c.hash, &r);
            let s = self.slot(i);
            self.set_meta(i, c.meta);
            self.m.u32(s + F_PID).store(c.pid, Relaxed);
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
        self.m.u32(self.base + S_HAND).store(0, Relaxed);
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
        for o in 0..ORDERS {
            self.head(o).store(0x0bad_0bad, Relaxed);
        }
        for i in 0..=self.mask {
            if self.slot_hash(i) != 0 {
                self.m.u32(self.slot(i) + F_REC).store(0x7fff_fff0, Relaxed);
                break;
            }
        }
        self.add(S_USED, 12345);
    }
}
