//! The eviction policy of a shard, in the region: the in-process cache's policy itself
//! (`peakcache::policy`, whose documentation explains each part and the measurements behind
//! it), over the region as its [`Store`]. What is here is only where its state lives:
//!
//! ```text
//! shard header, from P_START: queue heads, lengths and weights (heap units), the small queue's
//!   target, both ghosts' departure numbers, bounds and lengths, the sketch's length and additions
//! links: per index slot, the previous and next slot of its queue (u32 each)
//! ghost: one 8-byte word per slot (two entries: 12-bit fingerprint, 20-bit departure number)
//! main ghost: a quarter of that
//! sketch: eight 4-bit counters per slot (sixteen to a word)
//! ```
//!
//! * Every slot with a value is in the **small** or the **main** queue, every slot with a
//!   key-only record (a flight, a back-off, a pass-through) in the **control** queue (the
//!   policy's [`Queue::Other`], kept here); the queue is named by two bits of the slot's meta
//!   word, so a slot that moves (backward-shift deletion) fixes its neighbours' links. Weights
//!   are heap units (what a record occupies), the capacity is the heap less its reserve.
//! * A hit only raises the slot's two-bit counter (`Shard::touch`); the policy collects it into
//!   the CLOCK credit (two more meta bits) and the sketch when it passes the slot. A slot whose
//!   key has a flight in progress is pinned: its value is what a failed fetch serves.
//! * Everything read here comes from the region: each index is bounds-checked, each walk of the
//!   policy is bounded, and anything inconsistent marks the shard for a rebuild, which threads
//!   the queues again from the slots kept and forgets ghosts and sketch (`reset_policy`).
//! * The policy's state is loaded from the shard header before each operation and saved after;
//!   it is not read by optimistic readers, so changing it needs no write section, but for the
//!   slots' meta bits (which go through `set_meta`).

use crate::shard::{Shard, Standing, M_CREDIT, M_CREDIT_SHIFT, M_FREQ, M_QUEUE, M_QUEUE_SHIFT};
use peakcache::policy::{
    Bits, Choice, GhostState, List, Policy, Queue, SketchState, Store, Table, NIL,
};
use std::sync::atomic::Ordering::Relaxed;

pub(crate) use peakcache::policy::Plan;

// Policy fields of the shard header (offsets from the shard's base).
pub(crate) const P_START: usize = 512;
/// Per queue (small, main, control): head (u32), length (u32), weight (u64).
const P_QUEUES: usize = P_START;
const P_QUEUE_SIZE: usize = 16;
const P_SMALL_TARGET: usize = P_START + 64;
const P_GHOST: usize = P_START + 72;
const P_MAIN_GHOST: usize = P_START + 96;
/// Ghost fields: departures so far, bound, table words in use.
const G_SEQ: usize = 0;
const G_BOUND: usize = 8;
const G_LEN: usize = 16;
const P_SKETCH_WORDS: usize = P_START + 120;
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

/// The queues' numbers in a slot's meta bits, and in the header's order.
const Q_SMALL: u32 = 1;
const Q_MAIN: u32 = 2;
const Q_CONTROL: u32 = 3;

/// Control records looked at per eviction for an idle one.
const CONTROL_PROBES: usize = 8;

/// The region as the policy's store, at an instant.
struct Region<'s, 'a> {
    s: &'s Shard<'a>,
    now: u64,
    frozen: bool,
}

impl Region<'_, '_> {
    /// The table's offset and its capacity in words.
    fn table(&self, t: Table) -> (usize, usize) {
        let g = self.s.g;
        match t {
            Table::Ghost => (self.s.ghost, g.ghost_len()),
            Table::MainGhost => (self.s.main_ghost, g.main_ghost_len()),
            Table::Sketch => (self.s.sketch, g.sketch_counters() / 16),
        }
    }

    /// A slot index read from the region: `i` itself (ending any walk) if out of range, and
    /// the shard marked.
    fn checked(&self, i: u32, v: u32) -> u32 {
        if v != NIL && v as usize > self.s.mask {
            self.s.mark_corrupt();
            return i;
        }
        v
    }
}

impl Store for Region<'_, '_> {
    fn links(&self, i: u32) -> (u32, u32) {
        let o = self.s.links + (i as usize & self.s.mask) * 8;
        let (p, n) = (
            self.s.m.u32(o).load(Relaxed),
            self.s.m.u32(o + 4).load(Relaxed),
        );
        (self.checked(i, p), self.checked(i, n))
    }

    fn set_prev(&mut self, i: u32, prev: u32) {
        let o = self.s.links + (i as usize & self.s.mask) * 8;
        self.s.m.u32(o).store(prev, Relaxed);
    }

    fn set_next(&mut self, i: u32, next: u32) {
        let o = self.s.links + (i as usize & self.s.mask) * 8;
        self.s.m.u32(o + 4).store(next, Relaxed);
    }

    fn bits(&self, i: u32) -> Bits {
        let m = self.s.meta(i as usize);
        Bits {
            queue: match (m & M_QUEUE) >> M_QUEUE_SHIFT {
                Q_SMALL => Queue::Small,
                Q_MAIN => Queue::Main,
                Q_CONTROL => Queue::Other,
                _ => Queue::None,
            },
            hits: (m & M_FREQ) as u8,
            credit: ((m & M_CREDIT) >> M_CREDIT_SHIFT) as u8,
        }
    }

    fn set_bits(&mut self, i: u32, b: Bits) {
        let queue = match b.queue {
            Queue::None => 0,
            Queue::Small => Q_SMALL,
            Queue::Main => Q_MAIN,
            Queue::Other => Q_CONTROL,
        };
        let m = self.s.meta(i as usize) & !(M_QUEUE | M_CREDIT | M_FREQ);
        let credit = u32::from(b.credit.min(3)) << M_CREDIT_SHIFT;
        let hits = u32::from(b.hits) & M_FREQ;
        self.s
            .set_meta(i as usize, m | (queue << M_QUEUE_SHIFT) | credit | hits);
    }

    fn weight(&self, i: u32) -> u64 {
        match self.s.slot_rec(i as usize) {
            Some(r) => u64::from(r.units),
            None => {
                self.s.mark_corrupt();
                0
            }
        }
    }

    fn key_hash(&self, i: u32) -> u64 {
        self.s.slot_hash(i as usize)
    }

    fn dead(&self, i: u32) -> bool {
        !self.frozen
            && self
                .s
                .slot_rec(i as usize)
                .is_some_and(|r| r.has_value() && r.standing(self.now) == Standing::Dead)
    }

    fn pinned(&self, i: u32) -> bool {
        self.s.flight_active(i as usize)
    }

    fn word(&self, t: Table, k: usize) -> u64 {
        let (at, cap) = self.table(t);
        self.s.m.u64(at + 8 * (k % cap.max(1))).load(Relaxed)
    }

    fn set_word(&mut self, t: Table, k: usize, v: u64) {
        let (at, cap) = self.table(t);
        self.s.m.u64(at + 8 * (k % cap.max(1))).store(v, Relaxed);
    }

    fn table_capacity(&self, t: Table) -> usize {
        self.table(t).1
    }

    fn reset_table(&mut self, t: Table, words: usize) -> usize {
        let (at, cap) = self.table(t);
        let words = words.min(cap);
        self.s.m.zero(at, 8 * words);
        words
    }
}

impl Shard<'_> {
    // ---- the policy's state in the header ---------------------------------------------------

    fn p64(&self, off: usize) -> u64 {
        self.m.u64(self.base + off).load(Relaxed)
    }

    fn set_p64(&self, off: usize, v: u64) {
        self.m.u64(self.base + off).store(v, Relaxed)
    }

    fn load_list(&self, q: u32) -> List {
        let o = self.base + P_QUEUES + (q as usize - 1) * P_QUEUE_SIZE;
        let head = self.m.u32(o).load(Relaxed);
        let head = if head != NIL && head as usize > self.mask {
            self.mark_corrupt();
            NIL
        } else {
            head
        };
        let len = u64::from(self.m.u32(o + 4).load(Relaxed));
        let len = if len > self.mask as u64 + 1 {
            // The policy's walks are bounded by the lengths: keep them to the slots there are.
            self.mark_corrupt();
            self.mask as u64 + 1
        } else {
            len
        };
        List {
            head,
            len,
            weight: self.m.u64(o + 8).load(Relaxed),
        }
    }

    fn save_list(&self, q: u32, l: &List) {
        let o = self.base + P_QUEUES + (q as usize - 1) * P_QUEUE_SIZE;
        self.m.u32(o).store(l.head, Relaxed);
        let len = u32::try_from(l.len).unwrap_or(u32::MAX);
        self.m.u32(o + 4).store(len, Relaxed);
        self.m.u64(o + 8).store(l.weight, Relaxed);
    }

    /// A ghost's counters; a length beyond its table (`cap` entries, two a word) marks the
    /// shard (and reads as none).
    fn load_ghost(&self, at: usize, cap: usize) -> GhostState {
        let len = self.p64(at + G_LEN);
        let len = if len > cap as u64 {
            self.mark_corrupt();
            0
        } else {
            len
        };
        GhostState {
            seq: self.p64(at + G_SEQ),
            bound: self.p64(at + G_BOUND),
            len,
        }
    }

    fn save_ghost(&self, at: usize, g: &GhostState) {
        self.set_p64(at + G_SEQ, g.seq);
        self.set_p64(at + G_BOUND, g.bound);
        self.set_p64(at + G_LEN, g.len);
    }

    fn load_policy(&self) -> Policy {
        let mut p = Policy::new(self.capacity());
        p.small = self.load_list(Q_SMALL);
        p.main = self.load_list(Q_MAIN);
        if !self.has_free_slot() {
            // The index filled before the heap (small records): the entries queued are all the
            // shard can hold, so their weight is the capacity. With weight to spare the policy
            // would take the shard for one still filling: move the whole small queue to the
            // main one and evict from its head, whatever was read.
            p.capacity = p.capacity.min((p.small.weight + p.main.weight).max(1));
        }
        let (min, max) = p.small_bounds();
        p.small_target = self.p64(P_SMALL_TARGET).clamp(min, max);
        p.ghost = self.load_ghost(P_GHOST, 2 * self.g.ghost_len());
        p.main_ghost = self.load_ghost(P_MAIN_GHOST, 2 * self.g.main_ghost_len());
        let words = self.p64(P_SKETCH_WORDS);
        let words = if words > (self.g.sketch_counters() / 16) as u64 {
            self.mark_corrupt();
            0
        } else {
            words
        };
        p.sketch = SketchState {
            words,
            additions: self.p64(P_SKETCH_ADDS),
            sample: self.p64(P_SKETCH_SAMPLE),
            sized_for: self.p64(P_SKETCH_SIZED),
        };
        p
    }

    fn save_policy(&self, p: &Policy) {
        self.save_list(Q_SMALL, &p.small);
        self.save_list(Q_MAIN, &p.main);
        self.set_p64(P_SMALL_TARGET, p.small_target);
        self.save_ghost(P_GHOST, &p.ghost);
        self.save_ghost(P_MAIN_GHOST, &p.main_ghost);
        self.set_p64(P_SKETCH_WORDS, p.sketch.words);
        self.set_p64(P_SKETCH_ADDS, p.sketch.additions);
        self.set_p64(P_SKETCH_SAMPLE, p.sketch.sample);
        self.set_p64(P_SKETCH_SIZED, p.sketch.sized_for);
    }

    /// Runs `f` on the policy and the control queue, loaded from the header and saved after,
    /// with the region as their store at `now`.
    fn with_policy<R>(
        &self,
        now: u64,
        frozen: bool,
        f: impl FnOnce(&mut Policy, &mut List, &mut Region<'_, '_>) -> R,
    ) -> R {
        let mut policy = self.load_policy();
        let mut control = self.load_list(Q_CONTROL);
        let mut region = Region {
            s: self,
            now,
            frozen,
        };
        let r = f(&mut policy, &mut control, &mut region);
        self.save_policy(&policy);
        self.save_list(Q_CONTROL, &control);
        r
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

    fn queue_of(&self, i: usize) -> u32 {
        (self.meta(i) & M_QUEUE) >> M_QUEUE_SHIFT
    }

    // ---- queues -----------------------------------------------------------------------------

    /// Takes slot `i` out of whatever queue holds it; `weight` is its record's units.
    pub(crate) fn dequeue(&self, i: usize, weight: u32) {
        self.with_policy(0, false, |p, control, r| match r.bits(i as u32).queue {
            Queue::None => {}
            Queue::Other => control.unlink(r, i as u32, 0),
            Queue::Small | Queue::Main => p.remove(r, i as u32, u64::from(weight)),
        });
    }

    /// Puts slot `i`, which has a key-only record, in the control queue.
    pub(crate) fn enqueue_control(&self, i: usize) {
        if self.queue_of(i) == 0 {
            self.with_policy(0, false, |_, control, r| {
                control.push(r, Queue::Other, i as u32, 0)
            });
        }
    }

    /// Slot `i`'s record changed size in place.
    pub(crate) fn reweigh(&self, i: usize, old: u32, new: u32) {
        self.with_policy(0, false, |p, _, r| {
            p.reweigh(r, i as u32, u64::from(old), u64::from(new))
        });
    }

    /// Slot `from` moved to `to` (its meta already copied): its links, its neighbours and its
    /// queue's head follow it.
    pub(crate) fn moved(&self, from: usize, to: usize) {
        self.with_policy(0, false, |p, control, r| {
            let (from, to) = (from as u32, to as u32);
            match r.bits(to).queue {
                Queue::Other => control.moved(r, from, to),
                _ => p.moved(r, from, to),
            }
        });
    }

    /// Empties every queue and forgets the ghosts and the sketch (a new shard, or a rebuild,
    /// which then `requeue`s every slot kept).
    pub(crate) fn reset_policy(&self) {
        self.set_p64(P_RESERVE, 0);
        self.save_policy(&Policy::new(self.capacity()));
        self.save_list(Q_CONTROL, &List::default());
    }

    /// Threads slot `i` (in the rebuild, after `reset_policy`) into the queue its meta bits
    /// name: the main queue if they say so, else the small one; key-only records into control.
    pub(crate) fn requeue(&self, i: usize) {
        let Some(rec) = self.slot_rec(i) else { return };
        self.with_policy(0, false, |p, control, r| {
            let i = i as u32;
            if rec.has_value() {
                p.requeue(r, i, u64::from(rec.units));
            } else {
                let bits = Bits {
                    queue: Queue::None,
                    ..r.bits(i)
                };
                r.set_bits(i, bits);
                control.push(r, Queue::Other, i, 0);
            }
        });
    }

    // ---- control records --------------------------------------------------------------------

    /// Removes the first idle control record among the first few of the control queue (the
    /// others go to its tail). Returns whether one went.
    pub(crate) fn drop_idle_control(&self, now: u64) -> bool {
        let probes = CONTROL_PROBES.min(self.load_list(Q_CONTROL).len as usize);
        for _ in 0..probes {
            let mut control = self.load_list(Q_CONTROL);
            if control.head == NIL {
                return false;
            }
            let i = control.head as usize;
            if self.slot_hash(i) == 0 || self.queue_of(i) != Q_CONTROL {
                self.mark_corrupt();
                return false;
            }
            if self.idle(i, now) {
                self.remove_slot(i);
                return true;
            }
            let region = Region {
                s: self,
                now,
                frozen: false,
            };
            control.head = region.links(i as u32).1;
            self.save_list(Q_CONTROL, &control);
        }
        false
    }

    // ---- admission and eviction -------------------------------------------------------------

    /// Decides where a value (`units` of heap) for a key that has none will go, before room
    /// is made for it (see `Policy::plan`); until `admit` places it (or the lock is released),
    /// evictions count it in its queue. With `may_reject`, the policy may turn it away.
    pub(crate) fn plan_admission(&self, hash: u64, units: u32, may_reject: bool) {
        self.plan.set(None);
        let plan = self.with_policy(0, false, |p, _, r| {
            p.plan(r, hash, u64::from(units), may_reject)
        });
        self.plan.set(Some(plan));
    }

    /// Places slot `i`, which just got a value (`units` of heap) for a key that had none, as
    /// planned (planning now if it was not).
    pub(crate) fn admit(&self, i: usize, units: u32, hash: u64) {
        if self.plan.get().is_none_or(|p| p.hash() != hash) {
            self.plan_admission(hash, units, false);
        }
        let Some(plan) = self.plan.take() else { return };
        self.with_policy(0, false, |p, _, r| p.admit(r, i as u32, plan));
    }

    /// Chooses the next entry to leave and takes it out of its queue. The entry being stored
    /// (planned) counts as the small queue's tail.
    pub(crate) fn choose_victim(&self, now: u64, frozen: bool) -> Choice {
        let mut plan = self.plan.get();
        let (choice, queued) = self.with_policy(now, frozen, |p, _, r| {
            let choice = p.choose(r, plan.as_mut());
            (choice, p.small.len + p.main.len)
        });
        self.plan
            .set(if choice == Choice::Reject { None } else { plan });
        if choice == Choice::Nothing && queued > 0 {
            // Entries queued and none could go: the links must go round in circles.
            self.mark_corrupt();
        }
        choice
    }
}
