//! The region's tag table: per tag hash, the sequence number of its last hard purge and its
//! last four soft purges (sequence, time). An entry records the sequence number at which its
//! fetch started and its tags' hashes; a lookup compares them lazily, so purging a tag is one
//! write whatever the number of entries it matches. A cache-wide epoch, bumped by every tag
//! purge, lets a lookup skip the table when nothing was purged since the entry was last found
//! live.
//!
//! The table has a fixed number of slots and no deletion. When it is full, every mark is folded
//! into one cache-wide mark (applying to every tagged entry) and the table is emptied: a purge
//! may then match more tagged entries than it named, never fewer.

use crate::hash;
use crate::mutex::{self, LockError};
use crate::region::{
    Region, H_FOLD_MARK, H_SEQ, H_TAG_COUNT, H_TAG_EPOCH, H_TAG_LOCK_TIMEOUTS, H_TAG_MUTEX,
    H_TAG_PURGES, H_TAG_REPAIR, TAG_SIZE,
};
use peakcache::PurgeMode;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};

/// Tags hash under a fixed seed, so that snapshots carry them from one region to another.
const TAG_SEED: u64 = 0x7461_6773_7365_6564;
const SOFT: usize = 4;

/// The hash that identifies `tag` (never 0, the empty-slot marker).
pub(crate) fn tag_hash(tag: &[u8]) -> u64 {
    hash::hash(TAG_SEED, tag) | 1
}

/// What the table says of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Live,
    /// Stale from region time `at`; `seq` is the purge's sequence number.
    StaleSince {
        at: u64,
        seq: u64,
    },
    Purged,
    /// The table's lock was not acquired within the bound: neither serve the entry nor drop
    /// it (the caller answers without the cache).
    Unknown,
}

#[derive(Clone, Copy, Default)]
struct Mark {
    hard: u64,
    soft: [(u64, u64); SOFT],
}

impl Mark {
    fn soft_purge(&mut self, seq: u64, at: u64) {
        self.soft.rotate_left(1);
        self.soft[SOFT - 1] = (seq, at);
    }

    fn verdict(&self, seq: u64, v: Verdict) -> Verdict {
        if self.hard > seq {
            return Verdict::Purged;
        }
        let newest = self.soft[SOFT - 1].0;
        match self.soft.iter().find(|(s, _)| *s > seq) {
            None => v,
            Some(&(_, at)) => match v {
                Verdict::StaleSince { at: a, seq: s } => Verdict::StaleSince {
                    at: a.min(at),
                    seq: s.max(newest),
                },
                Verdict::Purged | Verdict::Unknown => v,
                Verdict::Live => Verdict::StaleSince { at, seq: newest },
            },
        }
    }

    fn fold(&mut self, other: &Mark) {
        self.hard = self.hard.max(other.hard);
        for &(seq, at) in other.soft.iter().filter(|(s, _)| *s != 0) {
            // Keep the latest four by sequence.
            if seq > self.soft[0].0 {
                self.soft[0] = (seq, at);
                self.soft.sort_by_key(|(s, _)| *s);
            }
        }
    }
}

/// The tag table of a region.
pub(crate) struct Tags<'a> {
    r: &'a Region,
}

impl<'a> Tags<'a> {
    pub(crate) fn new(r: &'a Region) -> Self {
        Tags { r }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.r.map.u64(H_TAG_EPOCH).load(SeqCst)
    }

    pub(crate) fn purges(&self) -> u64 {
        self.r.map.u64(H_TAG_PURGES).load(Relaxed)
    }

    pub(crate) fn used(&self) -> u32 {
        self.r.map.u32(H_TAG_COUNT).load(Relaxed)
    }

    fn read(&self, off: usize) -> Mark {
        let m = &self.r.map;
        let mut mark = Mark {
            hard: m.u64(off + 8).load(Relaxed),
            ..Mark::default()
        };
        for (k, s) in mark.soft.iter_mut().enumerate() {
            *s = (
                m.u64(off + 16 + 16 * k).load(Relaxed),
                m.u64(off + 24 + 16 * k).load(Relaxed),
            );
        }
        mark
    }

    fn write(&self, off: usize, mark: &Mark) {
        let m = &self.r.map;
        m.u64(off + 8).store(mark.hard, Relaxed);
        for (k, (seq, at)) in mark.soft.iter().enumerate() {
            m.u64(off + 16 + 16 * k).store(*seq, Relaxed);
            m.u64(off + 24 + 16 * k).store(*at, Relaxed);
        }
    }

    /// Locks the table (bounded; repaired if unrecoverable). False, reported and counted, if
    /// it could not be locked.
    fn lock(&self) -> bool {
        let repair = self.r.map.u64(H_TAG_REPAIR);
        let repaired = || {
            self.r.defer_report(
                "peakcache-shm: the tag table's lock was left unrecoverable; initialised again"
                    .to_string(),
            )
        };
        let bound = self.r.lock_bound;
        match mutex::lock_repairing(
            self.r.map.mutex(H_TAG_MUTEX),
            repair,
            bound,
            || {},
            repaired,
        ) {
            Ok(_) => true,
            Err(e) => {
                if matches!(e, LockError::TimedOut) {
                    self.r.map.u64(H_TAG_LOCK_TIMEOUTS).fetch_add(1, Relaxed);
                }
                // Perhaps asked with a shard lock held: reported by the next caller.
                if let Some(line) = self.r.lock_failure("the tag table", &e) {
                    self.r.defer_report(line);
                }
                false
            }
        }
    }

    /// Calls `f` holding the table's lock (test support).
    pub(crate) fn with_lock(&self, f: impl FnOnce()) {
        if self.lock() {
            f();
            self.r.map.mutex(H_TAG_MUTEX).unlock();
        }
    }

    fn slot_off(&self, i: usize) -> usize {
        self.r.geo.tags_off() + i * TAG_SIZE
    }

    /// The table slot of `hash`, or the empty slot where it would go.
    /// `None` if the table has no empty slot (only a damaged table can be full).
    fn probe(&self, hash: u64) -> Option<(usize, bool)> {
        let mask = self.r.geo.tag_slots as usize - 1;
        let mut i = hash as usize & mask;
        for _ in 0..=mask {
            let h = self.r.map.u64(self.slot_off(i)).load(Relaxed);
            if h == hash {
                return Some((i, true));
            }
            if h == 0 {
                return Some((i, false));
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Purges `tag` at region time `now`.
    pub(crate) fn purge(&self, tag: &[u8], mode: PurgeMode, now: u64) {
        let hash = tag_hash(tag);
        let mutex = self.r.map.mutex(H_TAG_MUTEX);
        if !self.lock() {
            // The lock is held by a stopped process, or unusable: fold the purge into the
            // cache-wide mark without it (a purge must never be lost; the mark's words are
            // written whole), over-purging every tagged entry.
            self.purge_into(H_FOLD_MARK, mode, now);
            self.r.map.u64(H_TAG_EPOCH).fetch_add(1, SeqCst);
            return;
        }
        let limit = self.r.geo.tag_slots as usize * 3 / 4;
        let probe = self.probe(hash);
        if let Some((i, true)) = probe {
            self.purge_into(self.slot_off(i), mode, now);
        } else if let Some((i, false)) = probe.filter(|_| (self.used() as usize) < limit) {
            self.r.map.u64(self.slot_off(i)).store(hash, Relaxed);
            self.write(self.slot_off(i), &Mark::default());
            self.r.map.u32(H_TAG_COUNT).store(self.used() + 1, Relaxed);
            self.purge_into(self.slot_off(i), mode, now);
        } else {
            // Full: fold everything into the cache-wide mark, empty the table.
            let mut fold = self.read(H_FOLD_MARK);
            for i in 0..self.r.geo.tag_slots as usize {
                let off = self.slot_off(i);
                if self.r.map.u64(off).load(Relaxed) != 0 {
                    fold.fold(&self.read(off));
                    self.r.map.zero(off, TAG_SIZE);
                }
            }
            self.write(H_FOLD_MARK, &fold);
            self.r.map.u32(H_TAG_COUNT).store(0, Relaxed);
            self.purge_into(H_FOLD_MARK, mode, now);
        }
        let c = self.r.map.u64(H_TAG_PURGES);
        c.store(c.load(Relaxed) + 1, Relaxed);
        mutex.unlock();
        // After the mark is visible: whoever reads the new epoch then reads the marks sees it.
        self.r.map.u64(H_TAG_EPOCH).fetch_add(1, SeqCst);
    }

    fn purge_into(&self, off: usize, mode: PurgeMode, now: u64) {
        let seq = self.r.map.u64(H_SEQ).fetch_add(1, SeqCst);
        let mut mark = self.read(off);
        match mode {
            PurgeMode::Hard => mark.hard = seq,
            PurgeMode::Soft => mark.soft_purge(seq, now),
        }
        self.write(off, &mark);
    }

    /// The verdict on an entry fetched at `seq` with tags `hashes`.
    pub(crate) fn verdict(&self, seq: u64, hashes: impl Iterator<Item = u64>) -> Verdict {
        let mutex = self.r.map.mutex(H_TAG_MUTEX);
        if !self.lock() {
            return Verdict::Unknown;
        }
        let mut v = self.read(H_FOLD_MARK).verdict(seq, Verdict::Live);
        for h in hashes {
            if matches!(v, Verdict::Purged | Verdict::Unknown) {
                break;
            }
            if let Some((i, true)) = self.probe(h) {
                v = self.read(self.slot_off(i)).verdict(seq, v);
            }
        }
        mutex.unlock();
        v
    }
}
