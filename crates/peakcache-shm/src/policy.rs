//! The eviction policy of a shard, in the region: the in-process cache's S3-FIFO with a TinyLFU
//! admission gate and a small queue sized by ghost hits (`peakcache`'s `policy.rs`, whose
//! documentation explains each part and the measurements behind it), ported to offsets.
//!
//! ```text
//! shard header, from P_START: queue heads, lengths and weights (heap units), the small queue's
//!   target, both ghosts' departure numbers, bounds and sizes, the sketch's size and additions
//! links: per index slot, the previous and next slot of its queue (u32 each)
//! ghost: one 8-byte entry per slot (32-bit fingerprint, 32-bit departure number)
//! main ghost: a quarter of that
//! sketch: eight 4-bit counters per slot (sixteen to a word)
//! ```
//!
//! * Every slot with a value is in the **small** or the **main** queue, every slot with a
//!   key-only record (a flight, a back-off, a pass-through) in the **control** queue; the queue
//!   is named by two bits of the slot's meta word, so a slot that moves (backward-shift
//!   deletion) fixes its neighbours' links. Queues are circular doubly linked lists of slot
//!   indexes; weights are heap units (what a record occupies), the capacity is the heap.
//! * A hit only raises the slot's two-bit counter (`Shard::touch`); the policy collects it into
//!   the CLOCK credit (two more meta bits) and the sketch when it passes the slot.
//! * The ghosts remember fingerprints of keys that left the small queue (for `entries`
//!   departures) and the main queue (for a tenth of that): a key coming back to the first is
//!   admitted as read twice, and says the small queue is too small; to the second, too large.
//! * Everything read here comes from the region: each index is bounds-checked, each walk is
//!   bounded, and anything inconsistent marks the shard for a rebuild, which threads the
//!   queues again from the slots kept and forgets ghosts and sketch (`reset_policy`).
//! * Policy state is not read by optimistic readers: changing it needs no write section, but
//!   for the slots' meta bits (which go through `set_meta`).

use crate::shard::{Shard, Standing, M_CREDIT, M_CREDIT_SHIFT, M_FREQ, M_QUEUE, M_QUEUE_SHIFT};
use std::sync::atomic::Ordering::Relaxed;

/// Queues named by a slot's meta bits.
const Q_NONE: u32 = 0;
const Q_SMALL: u32 = 1;
const Q_MAIN: u32 = 2;
const Q_CONTROL: u32 = 3;

const NIL: u32 = u32::MAX;

// Policy fields of the shard header (offsets from the shard's base).
pub(crate) const P_START: usize = 512;
/// Per queue (small, main, control): head (u32), length (u32), weight (u64).
const P_QUEUES: usize = P_START;
const P_QUEUE_SIZE: usize = 16;
const P_SMALL_TARGET: usize = P_START + 64;
const P_GHOST: usize = P_START + 72;
const P_MAIN_GHOST: usize = P_START + 96;
/// Ghost fields: departures so far, bound, table entries in use.
const G_SEQ: usize = 0;
const G_BOUND: usize = 8;
const G_LEN: usize = 16;
const P_SKETCH_COUNTERS: usize = P_START + 120;
const P_SKETCH_ADDS: usize = P_START + 128;
const P_SKETCH_SAMPLE: usize = P_START + 136;
const P_SKETCH_SIZED: usize = P_START + 144;
/// Units of heap kept free for defragmentation (`Shard::defragment`).
const P_RESERVE: usize = P_START + 152;
const P_END: usize = P_START + 160;
/// The most of the heap kept in reserve: 1/32 (measured on the sized trace, adapt: gaps of
/// 1.3, 1.4, 0.5 points at 1/64; 1.1, 0.9, 0.3 at 1/32; 1.0, 0.6, 0.4 at 1/16).
const RESERVE_SHIFT: u32 = 5;
const _: () = assert!(P_END <= crate::region::SHARD_HEADER);

// The in-process policy's constants (see its documentation for the measurements).
const SMALL_MIN_PERCENT: u64 = 1;
const SMALL_MAX_PERCENT: u64 = 25;
const WINDOW_PERCENT: u64 = 10;
const PROMOTE_HITS: u32 = 2;
const CREDIT_MAX: u32 = 3;
const SKETCH_COUNTERS: u64 = 8;
const SKETCH_SAMPLE: u64 = 10;
const GHOST_PROBES: u64 = 4;
/// Control records looked at per eviction for an idle one.
const CONTROL_PROBES: usize = 8;

const SKETCH_SEEDS: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0xD6E8_FEB8_6659_FD93,
];

/// What the main queue's CLOCK found at its hand.
enum Victim {
    /// A dead entry: it leaves first.
    Dead(usize),
    /// A live entry without credit, and its key hash. It stays at the head.
    Live(usize, u64),
}

/// Where an entry being stored will be admitted, decided before room is made for it (as the
/// in-process cache admits a node before evicting): the eviction then counts it in its queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    hash: u64,
    units: u32,
    queue: u32,
    hits: u32,
    /// Whether the entry may itself be turned away (see `Choice::Reject`).
    may_reject: bool,
}

/// What the policy chose to make room.
pub(crate) enum Choice {
    /// This slot's entry leaves (out of its queue already); true if it was dead.
    Leave(usize, bool),
    /// The entry being stored leaves first: it reached the small queue's head unread, or lost
    /// at the gate. In-process, the same entry is admitted and evicted at once.
    Reject,
    /// Both queues are empty (or inconsistent).
    Nothing,
}

/// One of the two ghost tables.
#[derive(Clone, Copy)]
struct Ghost {
    /// Header fields and table, absolute offsets; table capacity in entries (a power of two).
    hdr: usize,
    table: usize,
    cap: u64,
}

/// The fingerprint of a key hash in a ghost (never zero, so a zero entry is free). Mixed first:
/// the key hash's high bits choose the shard, the same for every key here.
fn fingerprint(hash: u64) -> u64 {
    let g = (hash ^ (hash >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    ((g >> 32) | 1) << 32
}

impl Shard<'_> {
    // ---- fields -----------------------------------------------------------------------------

    fn p64(&self, off: usize) -> u64 {
        self.m.u64(self.base + off).load(Relaxed)
    }

    fn set_p64(&self, off: usize, v: u64) {
        self.m.u64(self.base + off).store(v, Relaxed)
    }

    fn q_off(q: u32) -> usize {
        P_QUEUES + (q as usize - 1) * P_QUEUE_SIZE
    }

    /// The head of queue `q`, checked (`None` when empty; an index out of range marks the shard).
    fn q_head(&self, q: u32) -> Option<usize> {
        let h = self.m.u32(self.base + Self::q_off(q)).load(Relaxed);
        self.index_of(h)
    }

    fn set_q_head(&self, q: u32, i: Option<usize>) {
        let v = i.map_or(NIL, |i| i as u32);
        self.m.u32(self.base + Self::q_off(q)).store(v, Relaxed);
    }

    fn q_len(&self, q: u32) -> u64 {
        u64::from(self.m.u32(self.base + Self::q_off(q) + 4).load(Relaxed))
    }

    fn set_q_len(&self, q: u32, n: u64) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.m.u32(self.base + Self::q_off(q) + 4).store(n, Relaxed);
    }

    fn q_weight(&self, q: u32) -> u64 {
        self.p64(Self::q_off(q) + 8)
    }

    /// The queue's weight for decisions: with the planned entry's, if it goes there.
    fn weight_with_plan(&self, q: u32) -> u64 {
        let planned = self
            .plan
            .get()
            .filter(|p| p.queue == q)
            .map_or(0, |p| u64::from(p.units));
        self.q_weight(q) + planned
    }

    fn set_q_weight(&self, q: u32, w: u64) {
        self.set_p64(Self::q_off(q) + 8, w)
    }

    /// A slot index read from the region: `None` for `NIL`; out of range marks the shard.
    fn index_of(&self, v: u32) -> Option<usize> {
        if v == NIL {
            return None;
        }
        if v as usize > self.mask {
            self.mark_corrupt();
            return None;
        }
        Some(v as usize)
    }

    fn link(&self, i: usize) -> (u32, u32) {
        let o = self.links + (i & self.mask) * 8;
        (self.m.u32(o).load(Relaxed), self.m.u32(o + 4).load(Relaxed))
    }

    fn set_prev(&self, i: usize, p: usize) {
        self.m
            .u32(self.links + (i & self.mask) * 8)
            .store(p as u32, Relaxed);
    }

    fn set_next(&self, i: usize, n: usize) {
        self.m
            .u32(self.links + (i & self.mask) * 8 + 4)
            .store(n as u32, Relaxed);
    }

    fn queue_of(&self, i: usize) -> u32 {
        (self.meta(i) & M_QUEUE) >> M_QUEUE_SHIFT
    }

    fn hits(&self, i: usize) -> u32 {
        self.meta(i) & M_FREQ
    }

    fn credit(&self, i: usize) -> u32 {
        (self.meta(i) & M_CREDIT) >> M_CREDIT_SHIFT
    }

    /// Names the slot's queue, clearing its hits and credit.
    fn set_queue(&self, i: usize, q: u32) {
        let m = self.meta(i) & !(M_QUEUE | M_CREDIT | M_FREQ);
        self.set_meta(i, m | (q << M_QUEUE_SHIFT));
    }

    /// Clears the hits and sets the credit, keeping the queue.
    fn set_credit(&self, i: usize, credit: u32) {
        let m = self.meta(i) & !(M_CREDIT | M_FREQ);
        self.set_meta(i, m | (credit.min(CREDIT_MAX) << M_CREDIT_SHIFT));
    }

    /// The policy's capacity: the heap, less the units kept free for defragmentation.
    fn capacity(&self) -> u64 {
        u64::from(self.g.heap_units) - self.reserve_units()
    }

    /// Units kept free so that `defragment` finds room to move records into: none while
    /// every record fits where the policy made room (entries of one size), growing by the
    /// record's size each time a defragmentation fails, up to 1/32 of the heap.
    pub(crate) fn reserve_units(&self) -> u64 {
        self.p64(P_RESERVE)
            .min(u64::from(self.g.heap_units) >> RESERVE_SHIFT)
    }

    pub(crate) fn grow_reserve(&self, units: u32) {
        let r = self.reserve_units() + u64::from(units);
        self.set_p64(
            P_RESERVE,
            r.min(u64::from(self.g.heap_units) >> RESERVE_SHIFT),
        );
    }

    // ---- queues -----------------------------------------------------------------------------

    /// Appends slot `i` (in no queue) at the tail of queue `q`.
    fn push(&self, q: u32, i: usize, weight: u64) {
        match self.q_head(q) {
            None => {
                self.set_prev(i, i);
                self.set_next(i, i);
                self.set_q_head(q, Some(i));
            }
            Some(h) => {
                let Some(tail) = self.index_of(self.link(h).0) else {
                    return;
                };
                self.set_next(tail, i);
                self.set_prev(h, i);
                self.set_prev(i, tail);
                self.set_next(i, h);
            }
        }
        self.set_q_len(q, self.q_len(q) + 1);
        self.set_q_weight(q, self.q_weight(q).saturating_add(weight));
        let m = self.meta(i) & !M_QUEUE;
        self.set_meta(i, m | (q << M_QUEUE_SHIFT));
    }

    /// Takes slot `i` out of queue `q`.
    fn unlink(&self, q: u32, i: usize, weight: u64) {
        let (p, n) = self.link(i);
        let (Some(p), Some(n)) = (self.index_of(p), self.index_of(n)) else {
            self.mark_corrupt();
            return;
        };
        if n == i {
            self.set_q_head(q, None);
        } else {
            self.set_next(p, n);
            self.set_prev(n, p);
            if self.q_head(q) == Some(i) {
                self.set_q_head(q, Some(n));
            }
        }
        self.set_prev(i, NIL as usize);
        self.set_next(i, NIL as usize);
        self.set_q_len(q, self.q_len(q).saturating_sub(1));
        self.set_q_weight(q, self.q_weight(q).saturating_sub(weight));
        let m = self.meta(i) & !(M_QUEUE | M_CREDIT);
        self.set_meta(i, m);
    }

    /// Takes slot `i` out of whatever queue holds it; `weight` is its record's units.
    pub(crate) fn dequeue(&self, i: usize, weight: u32) {
        match self.queue_of(i) {
            Q_NONE => {}
            Q_CONTROL => self.unlink(Q_CONTROL, i, 0),
            q => self.unlink(q, i, u64::from(weight)),
        }
    }

    /// Puts slot `i`, which has a key-only record, in the control queue.
    pub(crate) fn enqueue_control(&self, i: usize) {
        if self.queue_of(i) == Q_NONE {
            self.push(Q_CONTROL, i, 0);
        }
    }

    /// Slot `i`'s record changed size in place.
    pub(crate) fn reweigh(&self, i: usize, old: u32, new: u32) {
        let q = self.queue_of(i);
        if q == Q_SMALL || q == Q_MAIN {
            let w = self.q_weight(q).saturating_sub(u64::from(old));
            self.set_q_weight(q, w + u64::from(new));
        }
    }

    /// Slot `from` moved to `to` (its meta already copied): its neighbours and its queue's head
    /// follow it.
    pub(crate) fn moved(&self, from: usize, to: usize) {
        let q = self.queue_of(to);
        if q == Q_NONE {
            return;
        }
        let (p, n) = self.link(from);
        let (Some(p), Some(n)) = (self.index_of(p), self.index_of(n)) else {
            self.mark_corrupt();
            return;
        };
        if p == from {
            self.set_prev(to, to);
            self.set_next(to, to);
        } else {
            self.set_prev(to, p);
            self.set_next(to, n);
            self.set_next(p, to);
            self.set_prev(n, to);
        }
        if self.q_head(q) == Some(from) {
            self.set_q_head(q, Some(to));
        }
    }

    /// Empties every queue and forgets the ghosts and the sketch (a new shard, or a rebuild,
    /// which then `requeue`s every slot kept).
    pub(crate) fn reset_policy(&self) {
        for q in [Q_SMALL, Q_MAIN, Q_CONTROL] {
            self.set_q_head(q, None);
            self.set_q_len(q, 0);
            self.set_q_weight(q, 0);
        }
        self.set_p64(P_RESERVE, 0);
        self.set_p64(P_SMALL_TARGET, self.small_bounds().0);
        for g in [P_GHOST, P_MAIN_GHOST] {
            for f in [G_SEQ, G_BOUND, G_LEN] {
                self.set_p64(g + f, 0);
            }
        }
        for f in [
            P_SKETCH_COUNTERS,
            P_SKETCH_ADDS,
            P_SKETCH_SAMPLE,
            P_SKETCH_SIZED,
        ] {
            self.set_p64(f, 0);
        }
    }

    /// Threads slot `i` (in the rebuild, after `reset_policy`) into the queue its meta bits
    /// name: the main queue if they say so, else the small one; key-only records into control.
    pub(crate) fn requeue(&self, i: usize) {
        let Some(r) = self.slot_rec(i) else { return };
        let q = if !r.has_value() {
            Q_CONTROL
        } else if self.queue_of(i) == Q_MAIN {
            Q_MAIN
        } else {
            Q_SMALL
        };
        let m = self.meta(i) & !M_QUEUE;
        self.set_meta(i, m);
        self.push(
            q,
            i,
            if q == Q_CONTROL {
                0
            } else {
                u64::from(r.units)
            },
        );
    }

    // ---- control records --------------------------------------------------------------------

    /// Removes the first idle control record among the first few of the control queue (the
    /// others go to its tail). Returns whether one went.
    pub(crate) fn drop_idle_control(&self, now: u64) -> bool {
        for _ in 0..CONTROL_PROBES.min(self.q_len(Q_CONTROL) as usize) {
            let Some(i) = self.q_head(Q_CONTROL) else {
                return false;
            };
            if self.slot_hash(i) == 0 || self.queue_of(i) != Q_CONTROL {
                self.mark_corrupt();
                return false;
            }
            if self.idle(i, now) {
                self.remove_slot(i);
                return true;
            }
            let next = self.index_of(self.link(i).1);
            self.set_q_head(Q_CONTROL, next);
        }
        false
    }

    // ---- admission --------------------------------------------------------------------------

    fn small_bounds(&self) -> (u64, u64) {
        let min = (self.capacity() * SMALL_MIN_PERCENT / 100).max(1);
        let max = (self.capacity() * SMALL_MAX_PERCENT / 100).max(min);
        (min, max)
    }

    fn small_target(&self) -> u64 {
        let (min, max) = self.small_bounds();
        self.p64(P_SMALL_TARGET).clamp(min, max)
    }

    fn entries_queued(&self) -> u64 {
        self.q_len(Q_SMALL) + self.q_len(Q_MAIN) + u64::from(self.plan.get().is_some())
    }

    /// How soon (in departures) a key must return to count for the adaptation.
    fn window(&self) -> u64 {
        (self.entries_queued() * WINDOW_PERCENT / 100).max(1)
    }

    fn resize_small(&self, grow: bool, by: u64) {
        let (min, max) = self.small_bounds();
        let t = self.small_target();
        let t = if grow {
            t.saturating_add(by)
        } else {
            t.saturating_sub(by)
        };
        self.set_p64(P_SMALL_TARGET, t.clamp(min, max));
    }

    /// Decides where a value (`units` of heap) for a key that has none will go, before room
    /// is made for it: the main queue if the small queue dropped the key recently and the main
    /// queue has room, the small queue counted as read twice if it has not, else plainly the
    /// small queue. Counts the admission in the sketch and adapts the small queue's size. Until
    /// `admit` places it (or the lock is released), evictions count it in its queue.
    pub(crate) fn plan_admission(&self, hash: u64, units: u32, may_reject: bool) {
        self.plan.set(None);
        let weight = u64::from(units);
        self.sketch_add(hash, 1);
        if self.ghost_forget(self.main_ghost(), hash).is_some() {
            self.resize_small(false, weight);
        }
        let window = self.window();
        let (queue, hits) = match self.ghost_forget(self.small_ghost(), hash) {
            Some(ago) => {
                if ago <= window {
                    self.resize_small(true, weight);
                }
                let main_room = self.capacity().saturating_sub(self.small_target());
                if self.q_weight(Q_MAIN) + weight <= main_room {
                    (Q_MAIN, 0)
                } else {
                    (Q_SMALL, PROMOTE_HITS)
                }
            }
            None => (Q_SMALL, 0),
        };
        self.plan.set(Some(Plan {
            hash,
            units,
            queue,
            hits,
            may_reject,
        }));
    }

    /// Places slot `i`, which just got a value (`units` of heap) for a key that had none, as
    /// planned (planning now if it was not).
    pub(crate) fn admit(&self, i: usize, units: u32, hash: u64) {
        if self.plan.get().is_none_or(|p| p.hash != hash) {
            self.plan_admission(hash, units, false);
        }
        let Some(plan) = self.plan.take() else { return };
        self.set_queue(i, Q_NONE);
        self.push(plan.queue, i, u64::from(units));
        if plan.hits > 0 {
            let m = self.meta(i) & !M_FREQ;
            self.set_meta(i, m | plan.hits);
        }
    }

    // ---- eviction ---------------------------------------------------------------------------

    /// The weight, standing and key hash of a queued slot; `None` (shard marked) if its record
    /// is bad or it is not a value in queue `q`.
    fn queued(&self, q: u32, i: usize, now: u64, frozen: bool) -> Option<(u64, bool, u64)> {
        let hash = self.slot_hash(i);
        let r = self
            .slot_rec(i)
            .filter(|r| r.has_value() && hash != 0 && self.queue_of(i) == q);
        let Some(r) = r else {
            self.mark_corrupt();
            return None;
        };
        let dead = !frozen && r.standing(now) == Standing::Dead;
        Some((u64::from(r.units), dead, hash))
    }

    /// Chooses the next entry to leave and takes it out of its queue. The entry being stored
    /// (planned) counts as the small queue's tail.
    pub(crate) fn choose_victim(&self, now: u64, frozen: bool) -> Choice {
        match self.choose(now, frozen) {
            Some(Some((i, dead))) => Choice::Leave(i, dead),
            Some(None) => Choice::Reject,
            None => Choice::Nothing,
        }
    }

    /// `choose_victim`: `Some(None)` to reject the planned entry.
    fn choose(&self, now: u64, frozen: bool) -> Option<Option<(usize, bool)>> {
        self.ensure_sketch();
        // Each turn returns or moves one entry from the small queue to the main one.
        for _ in 0..=self.q_len(Q_SMALL).min(self.mask as u64 + 1) + 1 {
            let target = self.small_target();
            if self.weight_with_plan(Q_SMALL) <= target && self.q_head(Q_MAIN).is_some() {
                return self.evict_main(now, frozen).map(Some);
            }
            let Some(i) = self.q_head(Q_SMALL) else {
                match self.plan.get() {
                    Some(p) if p.queue == Q_SMALL && p.may_reject => {
                        match self.planned_at_head(p, target, now, frozen) {
                            Some(choice) => return Some(choice),
                            None => continue,
                        }
                    }
                    _ => return self.evict_main(now, frozen).map(Some),
                }
            };
            let (weight, dead, hash) = self.queued(Q_SMALL, i, now, frozen)?;
            if dead {
                self.unlink(Q_SMALL, i, weight);
                return Some(Some((i, true)));
            }
            let hits = self.hits(i);
            let main_room = self.capacity().saturating_sub(target);
            if self.weight_with_plan(Q_MAIN) + weight <= main_room {
                // Filling: the main queue takes whatever the small queue lets go.
                self.promote(i, weight, hash, hits);
                continue;
            }
            if hits < PROMOTE_HITS {
                self.unlink(Q_SMALL, i, weight);
                self.drop_small(hash);
                return Some(Some((i, false)));
            }
            return self.gate(now, frozen, (i, weight, hash, hits)).map(Some);
        }
        self.mark_corrupt();
        None
    }

    /// The planned entry reached the small queue's head: it fills the main queue if that has
    /// room (`None`: go on), leaves if unread, else meets the main queue's victim at the gate.
    /// `Some(None)` rejects it (remembered by the ghost, as a small-queue departure).
    fn planned_at_head(
        &self,
        mut p: Plan,
        target: u64,
        now: u64,
        frozen: bool,
    ) -> Option<Option<(usize, bool)>> {
        let main_room = self.capacity().saturating_sub(target);
        if self.q_weight(Q_MAIN) + u64::from(p.units) <= main_room {
            p.queue = Q_MAIN;
            self.plan.set(Some(p));
            return None;
        }
        let reject = || {
            self.plan.set(None);
            self.drop_small(p.hash);
            Some(None)
        };
        if p.hits < PROMOTE_HITS {
            return reject();
        }
        match self.main_victim(now, frozen) {
            Some(Victim::Dead(v)) => {
                self.unlink_main(v);
                Some(Some((v, true)))
            }
            Some(Victim::Live(v, v_hash)) => {
                self.sketch_add(p.hash, p.hits);
                if self.sketch_estimate(p.hash) > self.sketch_estimate(v_hash) {
                    self.unlink_main(v);
                    self.evicted_main(v_hash);
                    p.queue = Q_MAIN;
                    p.hits = 0;
                    self.plan.set(Some(p));
                    Some(Some((v, false)))
                } else {
                    reject()
                }
            }
            None => reject(),
        }
    }

    /// Lets the main queue's CLOCK choose a victim and takes it out.
    fn evict_main(&self, now: u64, frozen: bool) -> Option<(usize, bool)> {
        match self.main_victim(now, frozen)? {
            Victim::Dead(v) => {
                self.unlink_main(v);
                Some((v, true))
            }
            Victim::Live(v, v_hash) => {
                self.unlink_main(v);
                self.evicted_main(v_hash);
                Some((v, false))
            }
        }
    }

    fn unlink_main(&self, v: usize) {
        let units = self.slot_rec(v).map_or(0, |r| u64::from(r.units));
        self.unlink(Q_MAIN, v, units);
    }

    /// The small queue's head meets the main queue's victim: the one the sketch rates higher
    /// stays (the incumbent on a tie), the other leaves.
    fn gate(
        &self,
        now: u64,
        frozen: bool,
        (i, weight, hash, hits): (usize, u64, u64, u32),
    ) -> Option<(usize, bool)> {
        match self.main_victim(now, frozen) {
            Some(Victim::Dead(v)) => {
                self.unlink_main(v);
                Some((v, true))
            }
            Some(Victim::Live(v, v_hash)) => {
                self.sketch_add(hash, hits);
                if self.sketch_estimate(hash) > self.sketch_estimate(v_hash) {
                    self.unlink_main(v);
                    self.evicted_main(v_hash);
                    self.promote(i, weight, hash, 0);
                    Some((v, false))
                } else {
                    self.unlink(Q_SMALL, i, weight);
                    self.drop_small(hash);
                    Some((i, false))
                }
            }
            None => {
                self.unlink(Q_SMALL, i, weight);
                self.drop_small(hash);
                Some((i, false))
            }
        }
    }

    /// Runs the main queue's CLOCK from its head: collects each slot's hits into its credit and
    /// the sketch, spends one credit per pass, and stops at the first dead slot or the first
    /// without credit, left at the head. Within four turns (credits only fall here, and hits
    /// raised meanwhile by readers only add one turn each); bounded anyway.
    fn main_victim(&self, now: u64, frozen: bool) -> Option<Victim> {
        let turns = 4 * self.q_len(Q_MAIN).min(self.mask as u64 + 1) + 4;
        for _ in 0..turns {
            let i = self.q_head(Q_MAIN)?;
            let (_, dead, hash) = self.queued(Q_MAIN, i, now, frozen)?;
            if dead {
                return Some(Victim::Dead(i));
            }
            let hits = self.hits(i);
            let credit = (self.credit(i) + hits).min(CREDIT_MAX);
            self.sketch_add(hash, hits);
            if credit == 0 {
                self.set_credit(i, 0);
                return Some(Victim::Live(i, hash));
            }
            self.set_credit(i, credit - 1);
            let next = self.index_of(self.link(i).1)?;
            self.set_q_head(Q_MAIN, Some(next));
        }
        // Readers kept raising credits: take the head as it is.
        let i = self.q_head(Q_MAIN)?;
        Some(Victim::Live(i, self.slot_hash(i)))
    }

    /// Moves the small queue's slot `i` to the main queue's tail.
    fn promote(&self, i: usize, weight: u64, hash: u64, hits: u32) {
        self.unlink(Q_SMALL, i, weight);
        self.sketch_add(hash, hits);
        self.set_queue(i, Q_NONE);
        self.push(Q_MAIN, i, weight);
    }

    /// Remembers a key the small queue drops, for as many departures as entries are queued.
    fn drop_small(&self, hash: u64) {
        self.ghost_remember(self.small_ghost(), hash, self.entries_queued());
    }

    /// Remembers a key the main queue evicts, for a window's worth of departures.
    fn evicted_main(&self, hash: u64) {
        self.ghost_remember(self.main_ghost(), hash, self.window());
    }

    // ---- ghosts -----------------------------------------------------------------------------

    fn small_ghost(&self) -> Ghost {
        Ghost {
            hdr: self.base + P_GHOST,
            table: self.ghost,
            cap: self.g.ghost_len() as u64,
        }
    }

    fn main_ghost(&self) -> Ghost {
        Ghost {
            hdr: self.base + P_MAIN_GHOST,
            table: self.main_ghost,
            cap: self.g.main_ghost_len() as u64,
        }
    }

    fn gh(&self, g: Ghost, f: usize) -> u64 {
        self.m.u64(g.hdr + f).load(Relaxed)
    }

    fn set_gh(&self, g: Ghost, f: usize, v: u64) {
        self.m.u64(g.hdr + f).store(v, Relaxed)
    }

    /// Entries of the table in use: a power of two within its capacity, or 0 (empty).
    fn ghost_len(&self, g: Ghost) -> u64 {
        let len = self.gh(g, G_LEN);
        if len == 0 || (len.is_power_of_two() && (GHOST_PROBES..=g.cap).contains(&len)) {
            len
        } else {
            self.mark_corrupt();
            0
        }
    }

    fn ghost_entry(&self, g: Ghost, k: u64) -> &std::sync::atomic::AtomicU64 {
        self.m.u64(g.table + 8 * (k % g.cap) as usize)
    }

    /// How many departures ago an entry's key left (0 = the last), if still remembered.
    fn ghost_age(&self, g: Ghost, e: u64) -> Option<u64> {
        if e == 0 {
            return None;
        }
        let seq = self.gh(g, G_SEQ);
        let age = u64::from((seq as u32).wrapping_sub(e as u32));
        (age < self.gh(g, G_BOUND)).then_some(age)
    }

    /// Remembers a departing key for `bound` departures.
    fn ghost_remember(&self, g: Ghost, hash: u64, bound: u64) {
        let bound = bound.max(1);
        self.set_gh(g, G_BOUND, bound);
        let wanted = (bound * 5 / 4)
            .next_power_of_two()
            .max(GHOST_PROBES)
            .min(g.cap);
        let len = self.ghost_len(g);
        if len < wanted {
            self.ghost_grow(g, len, wanted);
        }
        let len = wanted.max(len);
        let seq = self.gh(g, G_SEQ).wrapping_add(1);
        self.set_gh(g, G_SEQ, seq);
        let fp = fingerprint(hash);
        let start = fp >> 32;
        let mut best: Option<(u64, Option<u64>)> = None;
        for k in 0..GHOST_PROBES {
            let at = start.wrapping_add(k) & (len - 1);
            let e = self.ghost_entry(g, at).load(Relaxed);
            let age = self.ghost_age(g, e);
            if age.is_none() || e & !0xffff_ffff == fp {
                best = Some((at, None));
                break;
            }
            if best.is_none_or(|(_, b)| age > b) {
                best = Some((at, age));
            }
        }
        if let Some((at, _)) = best {
            self.ghost_entry(g, at)
                .store(fp | u64::from(seq as u32), Relaxed);
        }
    }

    /// Forgets the key if remembered; returns how many departures ago it left (1 = the last).
    fn ghost_forget(&self, g: Ghost, hash: u64) -> Option<u64> {
        let len = self.ghost_len(g);
        if len == 0 {
            return None;
        }
        let fp = fingerprint(hash);
        let start = fp >> 32;
        for k in 0..GHOST_PROBES {
            let at = start.wrapping_add(k) & (len - 1);
            let e = self.ghost_entry(g, at).load(Relaxed);
            if e & !0xffff_ffff == fp {
                if let Some(age) = self.ghost_age(g, e) {
                    self.ghost_entry(g, at).store(0, Relaxed);
                    return Some(age + 1);
                }
            }
        }
        None
    }

    /// Re-homes the remembered keys in the first `len` entries of the table (a key that finds
    /// no free entry is forgotten early).
    fn ghost_grow(&self, g: Ghost, old: u64, len: u64) {
        let live: Vec<u64> = (0..old)
            .map(|k| self.ghost_entry(g, k).load(Relaxed))
            .filter(|&e| self.ghost_age(g, e).is_some())
            .collect();
        self.m.zero(g.table, 8 * len as usize);
        for e in live {
            let start = e >> 32;
            if let Some(at) = (0..GHOST_PROBES)
                .map(|k| start.wrapping_add(k) & (len - 1))
                .find(|&at| self.ghost_entry(g, at).load(Relaxed) == 0)
            {
                self.ghost_entry(g, at).store(e, Relaxed);
            }
        }
        self.set_gh(g, G_LEN, len);
    }

    // ---- sketch -----------------------------------------------------------------------------

    /// Counters in use: a power of two within the table, or 0 (none yet).
    fn sketch_counters(&self) -> u64 {
        let n = self.p64(P_SKETCH_COUNTERS);
        let cap = self.g.sketch_counters() as u64;
        if n == 0 || (n.is_power_of_two() && (64..=cap).contains(&n)) {
            n
        } else {
            self.mark_corrupt();
            0
        }
    }

    /// Creates the sketch on the first eviction, sized from the entries queued then, and again
    /// (empty) if the shard came to hold more than twice that.
    fn ensure_sketch(&self) {
        let entries = self.entries_queued();
        let sized = self.p64(P_SKETCH_SIZED);
        if self.sketch_counters() != 0 && sized != 0 && entries <= sized * 2 {
            return;
        }
        let entries = entries.max(16);
        let counters = (entries * SKETCH_COUNTERS)
            .next_power_of_two()
            .clamp(64, self.g.sketch_counters() as u64);
        self.m.zero(self.sketch, counters as usize / 2);
        self.set_p64(P_SKETCH_COUNTERS, counters);
        self.set_p64(P_SKETCH_ADDS, 0);
        self.set_p64(P_SKETCH_SAMPLE, entries * SKETCH_SAMPLE);
        self.set_p64(P_SKETCH_SIZED, entries);
    }

    /// The word and shift of each of the key's four counters.
    fn sketch_slots(&self, hash: u64, counters: u64) -> [(usize, u32); 4] {
        SKETCH_SEEDS.map(|seed| {
            let mut x = (hash ^ seed).wrapping_mul(seed | 1);
            x ^= x >> 31;
            let c = x & (counters - 1);
            (self.sketch + 8 * (c >> 4) as usize, ((c & 15) * 4) as u32)
        })
    }

    /// The key's estimated frequency, 0 to 15 (0 without a sketch).
    fn sketch_estimate(&self, hash: u64) -> u32 {
        let counters = self.sketch_counters();
        if counters == 0 {
            return 0;
        }
        self.sketch_slots(hash, counters)
            .iter()
            .map(|&(w, s)| ((self.m.u64(w).load(Relaxed) >> s) & 15) as u32)
            .min()
            .unwrap_or(0)
    }

    /// Counts `n` more occurrences of the key; halves every counter every `sample` additions.
    fn sketch_add(&self, hash: u64, n: u32) {
        let counters = self.sketch_counters();
        if counters == 0 || n == 0 {
            return;
        }
        let target = (self.sketch_estimate(hash) + n).min(15);
        for (w, s) in self.sketch_slots(hash, counters) {
            let word = self.m.u64(w);
            let v = word.load(Relaxed);
            if ((v >> s) & 15) < u64::from(target) {
                word.store((v & !(15 << s)) | (u64::from(target) << s), Relaxed);
            }
        }
        let adds = self.p64(P_SKETCH_ADDS) + u64::from(n);
        if adds >= self.p64(P_SKETCH_SAMPLE) {
            for k in 0..(counters / 16) as usize {
                let word = self.m.u64(self.sketch + 8 * k);
                word.store((word.load(Relaxed) >> 1) & 0x7777_7777_7777_7777, Relaxed);
            }
            self.set_p64(P_SKETCH_ADDS, adds / 2);
        } else {
            self.set_p64(P_SKETCH_ADDS, adds);
        }
    }
}
