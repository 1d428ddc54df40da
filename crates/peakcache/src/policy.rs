//! The eviction policy: S3-FIFO (Yang et al., SOSP 2023) with a TinyLFU admission gate in front
//! of the main queue (Einziger et al., 2017) and a small queue sized by ghost hits (after ARC,
//! Megiddo and Modha, 2003); dead entries go first.
//!
//! New entries enter a small FIFO queue; those read twice before they reach its head are
//! candidates for the main queue, the others leave and are remembered in a ghost list of key
//! hashes, so a key that comes back soon after is a candidate too (counted as read twice). The
//! main queue is a CLOCK: an entry read since its last pass goes round again. One-hit wonders and scans pass
//! through the small queue without displacing the working set.
//!
//! Three additions, each for a measured weakness of plain S3-FIFO (`benches/replay-all.sh`):
//!
//! * **Fill.** While the main queue has room, entries leaving the small queue go into it even
//!   unread. Plain S3-FIFO never filled it on a loop larger than the cache (0 % hits on
//!   lirs-loop at 500 entries): every key cycled through the small queue and left the ghost
//!   list before it came back.
//! * **Admission gate.** Once the main queue is full, a candidate from the small queue enters it
//!   only if a frequency sketch ([`Sketch`]: 4-bit count-min, halved every ten entries' worth of
//!   additions) rates it above the CLOCK's victim; otherwise the candidate leaves. On a loop or
//!   a scan mixed with a working set all keys look alike and the incumbents stay, so the cache
//!   keeps a fixed subset instead of churning (lirs-gli, lirs-multi2). The sketch is fed on
//!   misses (each admission) and with the hits collected from the nodes' counters when the
//!   policy passes them, never on the hit path.
//! * **Adaptive small queue.** The small queue starts at 1 % of the capacity and moves between
//!   1 % and 25 %: a key returning within a tenth of the cache's worth of departures after the
//!   small queue dropped it says the small queue is too small (grow by its weight); a key
//!   returning after the main queue evicted it says the main queue is (shrink). Recency-heavy
//!   traces (arc-OLTP) want about 20 %, loops want the least: with the gate, a fixed 10 % lost 3
//!   to 14 points on lirs-loop and lirs-gli, a fixed 1 to 3 % lost 4 to 6 points on arc-OLTP.
//!
//! A hit only raises a two-bit counter in the entry (a relaxed atomic, written only while it is
//! below its cap), so reads need no exclusive lock and hot entries cause no writes at all. The
//! policy reads and clears those counters under the shard's write lock, moving them into the
//! node's CLOCK credit and into the sketch. Entries past every stale window are removed whenever
//! the policy meets them, before any live entry is evicted in their place.
//!
//! Memory: nothing per node beyond the one byte it always had. Per shard, once it first evicts:
//! the sketch (4 to 8 bytes per resident entry), the ghost list (up to one hash, departure number
//! and queue slot per resident entry: about 27 to 53 bytes each with the hash table's slack,
//! against 17 to 34 for the hashes alone before) and the main ghost (a tenth of that).
//!
//! Measured (hit %, `benches/replay-all.sh --shards 1`, before → after; moka / quick_cache):
//!
//! | trace | capacity | plain S3-FIFO | this policy | moka | quick_cache |
//! |---|---|---|---|---|---|
//! | arc-OLTP | 1,000 / 2,000 / 5,000 | 40.19 / 46.87 / 55.28 | 41.39 / 47.31 / 56.13 | 34.14 / 39.81 / 48.05 | 35.15 / 44.93 / 54.29 |
//! | lirs-loop | 500 / 1,000 / 1,024 | 0.00 / 79.80 / 99.80 | 48.86 / 96.21 / 99.80 | 49.33 / 94.75 / 99.80 | 47.88 / 97.73 / 99.80 |
//! | lirs-gli | 500 / 1,000 / 2,000 | 16.19 / 35.10 / 57.41 | 33.20 / 50.71 / 57.96 | 27.88 / 43.18 / 57.96 | 31.74 / 48.93 / 57.96 |
//! | lirs-sprite | 100 / 250 / 500 | 29.00 / 54.29 / 78.64 | 30.35 / 55.97 / 79.09 | 30.97 / 55.03 / 74.49 | 30.05 / 54.41 / 76.51 |
//! | lirs-multi2 | 500 / 1,000 / 2,000 | 49.50 / 50.77 / 65.88 | 49.47 / 57.70 / 71.02 | 49.99 / 58.22 / 69.27 | 46.26 / 56.81 / 70.35 |
//! | cache2k-web07 | 1,000 / 2,000 / 5,000 | 53.96 / 58.27 / 64.42 | 53.85 / 57.76 / 63.16 | 46.57 / 51.22 / 58.55 | 53.43 / 57.90 / 63.78 |
//! | adapt (bytes) | 1 % / 5 % / 10 % | 27.47 / 36.22 / 38.62 | 28.51 / 36.46 / 38.94 | 25.96 / 33.56 / 36.11 | 25.10 / 35.15 / 38.25 |

use crate::shard::{Departure, Node, Weigher};
use crate::sketch::Sketch;
use crate::slab::Slab;

use std::sync::atomic::{AtomicU8, Ordering};

/// No node.
pub(crate) const NIL: u32 = u32::MAX;

// The node's byte: hits since the policy last looked (bits 0-1, raised by `touch`), the queue
// (bit 2), and the CLOCK credit earned in the main queue (bits 3-4). Keeping the credit apart from
// the hits lets the policy move hits into the sketch exactly once without `touch` changing.
const FREQ_MASK: u8 = 0b011;
const FREQ_MAX: u8 = 3;
const IN_MAIN: u8 = 0b100;
const CREDIT_SHIFT: u8 = 3;
const CREDIT_MASK: u8 = 0b11 << CREDIT_SHIFT;
const CREDIT_MAX: u8 = 3;
/// Set while the node's key is being fetched again: the node is what a failed fetch serves.
const PINNED: u8 = 1 << 5;
/// The bits that survive a move between queues.
const KEPT: u8 = IN_MAIN | PINNED;

/// A node's place in the policy: its queue neighbours, its hit counter and CLOCK credit.
pub(crate) struct Links {
    prev: u32,
    next: u32,
    meta: AtomicU8,
}

impl Links {
    pub(crate) fn new() -> Self {
        Links {
            prev: NIL,
            next: NIL,
            meta: AtomicU8::new(0),
        }
    }

    /// Records an access. Safe under a shared lock; writes only while the counter is below its cap.
    #[inline]
    pub(crate) fn touch(&self) {
        let m = self.meta.load(Ordering::Relaxed);
        if m & FREQ_MASK < FREQ_MAX {
            // A lost update between two readers only loses one count: harmless for the policy.
            self.meta.store(m + 1, Ordering::Relaxed);
        }
    }

    /// Hits since the policy last collected them (0 to 3).
    fn hits(&self) -> u8 {
        self.meta.load(Ordering::Relaxed) & FREQ_MASK
    }

    fn credit(&self) -> u8 {
        (self.meta.load(Ordering::Relaxed) & CREDIT_MASK) >> CREDIT_SHIFT
    }

    /// Places the node in a queue with no hits and no credit (it stays pinned if it was).
    fn reset(&self, in_main: bool) {
        let pinned = self.meta.load(Ordering::Relaxed) & PINNED;
        let queue = if in_main { IN_MAIN } else { 0 };
        self.meta.store(pinned | queue, Ordering::Relaxed);
    }

    /// Clears the hits and sets the credit, keeping the queue and pin bits. Only under the
    /// write lock.
    fn set_credit(&self, credit: u8) {
        let m = self.meta.load(Ordering::Relaxed) & KEPT;
        self.meta.store(
            m | (credit.min(CREDIT_MAX) << CREDIT_SHIFT),
            Ordering::Relaxed,
        );
    }

    fn in_main(&self) -> bool {
        self.meta.load(Ordering::Relaxed) & IN_MAIN != 0
    }

    /// Keeps the node from eviction (while its key is fetched again), or lets it go. Only under
    /// the write lock.
    pub(crate) fn pin(&self, pinned: bool) {
        let m = self.meta.load(Ordering::Relaxed) & !PINNED;
        let pin = if pinned { PINNED } else { 0 };
        self.meta.store(m | pin, Ordering::Relaxed);
    }

    pub(crate) fn pinned(&self) -> bool {
        self.meta.load(Ordering::Relaxed) & PINNED != 0
    }
}

/// A circular doubly linked FIFO threaded through the nodes; `head` is the oldest.
#[derive(Default)]
struct Queue {
    head: Option<u32>,
    len: u64,
    weight: u64,
}

fn links<V>(nodes: &Slab<V>, i: u32) -> &Links {
    &nodes.get(i).links
}

fn links_mut<V>(nodes: &mut Slab<V>, i: u32) -> &mut Links {
    &mut nodes.get_mut(i).links
}

impl Queue {
    fn push<V>(&mut self, nodes: &mut Slab<V>, i: u32, weight: u64) {
        match self.head {
            None => {
                let l = links_mut(nodes, i);
                l.prev = i;
                l.next = i;
                self.head = Some(i);
            }
            Some(h) => {
                let tail = links(nodes, h).prev;
                links_mut(nodes, tail).next = i;
                links_mut(nodes, h).prev = i;
                let l = links_mut(nodes, i);
                l.prev = tail;
                l.next = h;
            }
        }
        self.len += 1;
        self.weight = self.weight.saturating_add(weight);
    }

    fn unlink<V>(&mut self, nodes: &mut Slab<V>, i: u32, weight: u64) {
        let (prev, next) = {
            let l = links(nodes, i);
            (l.prev, l.next)
        };
        if next == i {
            self.head = None;
        } else {
            links_mut(nodes, prev).next = next;
            links_mut(nodes, next).prev = prev;
            if self.head == Some(i) {
                self.head = Some(next);
            }
        }
        let l = links_mut(nodes, i);
        l.prev = NIL;
        l.next = NIL;
        self.len -= 1;
        self.weight = self.weight.saturating_sub(weight);
    }
}

/// Keys that recently left a queue, each with its departure number: a lossy hash table of
/// 8-byte slots (a 32-bit fingerprint of the key's hash and the low 32 bits of its departure
/// number), sized to its bound. A key is found among a few slots from its hash; remembering a
/// key overwrites the oldest of those slots when none is free, and a slot older than the bound
/// counts as free. About 10 to 20 bytes per remembered key, against 27 to 53 for a hash map
/// with a separate FIFO of hashes; a rare overwrite forgets a key early, which costs one
/// admission decision, never correctness.
#[derive(Default)]
struct Ghost {
    slots: Vec<u64>,
    /// Departures so far (the number the last one got).
    seq: u64,
    /// Departures a key is remembered for.
    bound: u64,
}

/// Slots probed for one key.
const GHOST_PROBES: usize = 4;

impl Ghost {
    fn fingerprint(hash: u64) -> u64 {
        // Never zero, so a zero slot is always free.
        ((hash >> 32) | 1) << 32
    }

    /// How many departures ago the slot's key left (0 = the last), if it is still remembered.
    fn age(&self, slot: u64) -> Option<u64> {
        if slot == 0 {
            return None;
        }
        let age = u64::from((self.seq as u32).wrapping_sub(slot as u32));
        (age < self.bound).then_some(age)
    }

    /// The slots a fingerprint may occupy. Indexed by the fingerprint's own bits, so that the
    /// table can be rebuilt from its slots alone.
    fn probe(&self, fp: u64) -> impl Iterator<Item = usize> {
        let (mask, start) = (self.slots.len() - 1, (fp >> 32) as usize);
        (0..GHOST_PROBES).map(move |k| start.wrapping_add(k) & mask)
    }

    /// Remembers a departing key for `bound` departures.
    fn remember(&mut self, hash: u64, bound: usize) {
        self.bound = bound.max(1) as u64;
        let wanted = (self.bound as usize * 5 / 4)
            .next_power_of_two()
            .max(GHOST_PROBES);
        if self.slots.len() < wanted {
            self.grow(wanted);
        }
        self.seq += 1;
        let fp = Self::fingerprint(hash);
        let mut best = None;
        for i in self.probe(fp) {
            let slot = self.slots[i];
            let age = self.age(slot);
            if age.is_none() || slot & !0xffff_ffff == fp {
                best = Some(i);
                break;
            }
            if best.is_none_or(|b: usize| age > self.age(self.slots[b])) {
                best = Some(i);
            }
        }
        let i = best.expect("at least one slot is probed");
        self.slots[i] = fp | u64::from(self.seq as u32);
    }

    /// Forgets the key if remembered; returns how many departures ago it left (1 = the last).
    fn forget(&mut self, hash: u64) -> Option<u64> {
        if self.slots.is_empty() {
            return None;
        }
        let fp = Self::fingerprint(hash);
        let i = self.probe(fp).find(|&i| {
            let slot = self.slots[i];
            slot & !0xffff_ffff == fp && self.age(slot).is_some()
        })?;
        let age = self.age(self.slots[i])?;
        self.slots[i] = 0;
        Some(age + 1)
    }

    /// Re-homes the remembered keys in a table of `len` slots (a key that finds no free slot
    /// is forgotten early).
    fn grow(&mut self, len: usize) {
        let old = std::mem::replace(&mut self.slots, vec![0; len]);
        let live: Vec<u64> = old.into_iter().filter(|&s| self.age(s).is_some()).collect();
        for slot in live {
            if let Some(i) = self.probe(slot).find(|&i| self.slots[i] == 0) {
                self.slots[i] = slot;
            }
        }
    }
}

/// The small queue's bounds and the adaptation window, in percent of the capacity (entries for
/// the window).
const SMALL_MIN_PERCENT: u64 = 1;
const SMALL_MAX_PERCENT: u64 = 25;
const WINDOW_PERCENT: u64 = 10;
/// Hits a small-queue entry needs to be a candidate for the main queue once that is full. One
/// hit was measured slightly worse on arc-OLTP (-0.5 point at 1,000 entries) and no better
/// elsewhere: a single re-read soon after the insert is common for one-off keys.
const PROMOTE_HITS: u8 = 2;
/// Sketch counters per resident entry, and additions (per entry) between two halvings.
const SKETCH_COUNTERS: u64 = 8;
const SKETCH_SAMPLE: u64 = 10;

/// `percent` % of `of`, without overflow.
fn percent(of: u64, percent: u64) -> u64 {
    (u128::from(of) * u128::from(percent) / 100) as u64
}

/// What the main queue's CLOCK found at its hand.
enum Victim {
    /// A dead entry: it leaves first, whatever else is going on.
    Dead(u32, u64),
    /// A live entry without credit: index, weight, key hash. It stays at the head.
    Live(u32, u64, u64),
}

/// The policy state of one shard.
pub(crate) struct S3Fifo {
    small: Queue,
    main: Queue,
    /// Keys the small queue dropped.
    ghost: Ghost,
    /// Keys the main queue evicted, for the adaptation only.
    main_ghost: Ghost,
    small_target: u64,
    capacity: u64,
    /// Allocated on the first eviction, sized from the entries resident then.
    sketch: Option<Sketch>,
}

impl S3Fifo {
    pub(crate) fn new(capacity: u64) -> Self {
        let mut policy = S3Fifo {
            small: Queue::default(),
            main: Queue::default(),
            ghost: Ghost::default(),
            main_ghost: Ghost::default(),
            small_target: 0,
            capacity,
            sketch: None,
        };
        policy.small_target = policy.small_bounds().0;
        policy
    }

    fn small_bounds(&self) -> (u64, u64) {
        let min = percent(self.capacity, SMALL_MIN_PERCENT).max(1);
        let max = percent(self.capacity, SMALL_MAX_PERCENT).max(min);
        (min, max)
    }

    fn entries(&self) -> u64 {
        self.small.len + self.main.len
    }

    /// How soon (in departures) a key must return to count for the adaptation.
    fn window(&self) -> u64 {
        (self.entries() * WINDOW_PERCENT / 100).max(1)
    }

    /// Places a newly stored node: in the main queue if its key was dropped by the small queue
    /// recently, else in the small queue. Counts the miss in the sketch and adapts the small
    /// queue's size to where the key was lost.
    pub(crate) fn admit<V>(&mut self, nodes: &mut Slab<V>, i: u32, weight: u64, hash: u64) {
        if let Some(s) = self.sketch.as_mut() {
            s.add(hash, 1);
        }
        if self.main_ghost.forget(hash).is_some() {
            self.resize_small(false, weight);
        }
        let window = self.window();
        match self.ghost.forget(hash) {
            Some(ago) => {
                if ago <= window {
                    self.resize_small(true, weight);
                }
                self.admit_returning(nodes, i, weight);
            }
            None => {
                links(nodes, i).reset(false);
                self.small.push(nodes, i, weight);
            }
        }
    }

    /// Places a node whose key the small queue dropped recently: in the main queue if it has
    /// room, else in the small queue counted as read twice, so that it meets the admission gate
    /// at the small queue's head with those reads in its favour. Bypassing the gate (plain
    /// S3-FIFO) churned the main queue on loops; the two reads are what a ghost hit is worth
    /// against an incumbent (measured: arc-OLTP +0.1 to +0.2 point, sprite at 100 entries +1).
    fn admit_returning<V>(&mut self, nodes: &mut Slab<V>, i: u32, weight: u64) {
        let main_room = self.capacity.saturating_sub(self.small_target);
        if self.main.weight + weight <= main_room {
            links(nodes, i).reset(true);
            self.main.push(nodes, i, weight);
        } else {
            let l = links(nodes, i);
            l.reset(false);
            for _ in 0..PROMOTE_HITS {
                l.touch();
            }
            self.small.push(nodes, i, weight);
        }
    }

    /// Accounts for a node whose weight changed in place.
    pub(crate) fn reweigh<V>(&mut self, nodes: &Slab<V>, i: u32, old: u64, new: u64) {
        let q = if links(nodes, i).in_main() {
            &mut self.main
        } else {
            &mut self.small
        };
        q.weight = q.weight.saturating_sub(old) + new;
    }

    /// Takes a node out of its queue (purge, replacement by removal).
    pub(crate) fn unlink<V>(&mut self, nodes: &mut Slab<V>, i: u32, weight: u64) {
        if links(nodes, i).in_main() {
            self.main.unlink(nodes, i, weight);
        } else {
            self.small.unlink(nodes, i, weight);
        }
    }

    /// Chooses the next node to leave and takes it out of its queue: returns its index, its
    /// weight and why it leaves; `None` when both queues are empty. While `frozen`, no node is
    /// dead. A pinned node is passed over, unless every node is.
    pub(crate) fn evict<V>(
        &mut self,
        nodes: &mut Slab<V>,
        weigher: &Weigher<V>,
        hash: &dyn Fn(&[u8]) -> u64,
        now: u64,
        frozen: bool,
    ) -> Option<(u32, u64, Departure)> {
        self.ensure_sketch();
        let dead = |n: &Node<V>| !frozen && n.standing(now).is_none();
        // Each turn returns, moves one node from the small queue to the main one, or passes
        // over one pinned node (at most once each).
        let mut passes = self.small.len;
        loop {
            if self.small.weight <= self.small_target && self.main.head.is_some() {
                return self.evict_main(nodes, weigher, hash, &dead);
            }
            let i = self.small.head?;
            let (weight, is_dead, hits, key_hash, pinned) = {
                let n = nodes.get(i);
                (
                    weigher(&n.key, &n.value),
                    dead(n),
                    n.links.hits(),
                    hash(&n.key),
                    n.links.pinned(),
                )
            };
            if is_dead {
                self.small.unlink(nodes, i, weight);
                return Some((i, weight, Departure::Expired));
            }
            let main_room = self.capacity.saturating_sub(self.small_target);
            if self.main.weight.saturating_add(weight) <= main_room {
                // Filling: the main queue takes whatever the small queue lets go.
                self.promote(nodes, i, weight, key_hash, hits);
                continue;
            }
            if pinned && passes > 0 {
                passes -= 1;
                self.small.head = Some(links(nodes, i).next);
                continue;
            }
            if hits < PROMOTE_HITS {
                self.small.unlink(nodes, i, weight);
                self.drop_small(key_hash);
                return Some((i, weight, Departure::Evicted));
            }
            return Some(self.gate(nodes, weigher, hash, &dead, (i, weight, key_hash, hits)));
        }
    }

    /// Lets the main queue's CLOCK choose a victim and takes it out.
    fn evict_main<V>(
        &mut self,
        nodes: &mut Slab<V>,
        weigher: &Weigher<V>,
        hash: &dyn Fn(&[u8]) -> u64,
        dead: &dyn Fn(&Node<V>) -> bool,
    ) -> Option<(u32, u64, Departure)> {
        match self.main_victim(nodes, weigher, hash, dead)? {
            Victim::Dead(v, w) => {
                self.main.unlink(nodes, v, w);
                Some((v, w, Departure::Expired))
            }
            Victim::Live(v, w, v_hash) => {
                self.main.unlink(nodes, v, w);
                self.evicted_main(v_hash);
                Some((v, w, Departure::Evicted))
            }
        }
    }

    /// A small-queue candidate meets the main queue's victim: the one the sketch rates higher
    /// stays (the incumbent on a tie), the other leaves. `candidate` is the small queue's head:
    /// index, weight, key hash and uncollected hits.
    fn gate<V>(
        &mut self,
        nodes: &mut Slab<V>,
        weigher: &Weigher<V>,
        hash: &dyn Fn(&[u8]) -> u64,
        dead: &dyn Fn(&Node<V>) -> bool,
        (i, weight, key_hash, hits): (u32, u64, u64, u8),
    ) -> (u32, u64, Departure) {
        match self.main_victim(nodes, weigher, hash, dead) {
            Some(Victim::Dead(v, w)) => {
                self.main.unlink(nodes, v, w);
                (v, w, Departure::Expired)
            }
            Some(Victim::Live(v, w, v_hash)) => {
                self.collect(key_hash, hits);
                if self.estimate(key_hash) > self.estimate(v_hash) {
                    self.main.unlink(nodes, v, w);
                    self.evicted_main(v_hash);
                    self.promote(nodes, i, weight, key_hash, 0);
                    (v, w, Departure::Evicted)
                } else {
                    self.small.unlink(nodes, i, weight);
                    self.drop_small(key_hash);
                    (i, weight, Departure::Evicted)
                }
            }
            // The caller saw the main queue full, so it has a head: unreachable, but harmless.
            None => {
                self.small.unlink(nodes, i, weight);
                self.drop_small(key_hash);
                (i, weight, Departure::Evicted)
            }
        }
    }

    /// Runs the main queue's CLOCK from its head: collects each node's hits into its credit and
    /// the sketch, spends one credit per pass, and stops at the first dead node or the first
    /// without credit and not pinned, left at the head. Credits only fall here (no reader runs
    /// under the write lock), so four turns of the queue find one; past that, when every node
    /// is pinned, the head goes. `None` if the main queue is empty.
    fn main_victim<V>(
        &mut self,
        nodes: &mut Slab<V>,
        weigher: &Weigher<V>,
        hash: &dyn Fn(&[u8]) -> u64,
        dead: &dyn Fn(&Node<V>) -> bool,
    ) -> Option<Victim> {
        let mut turns = 4 * self.main.len + 4;
        loop {
            let i = self.main.head?;
            let n = nodes.get(i);
            if dead(n) {
                return Some(Victim::Dead(i, weigher(&n.key, &n.value)));
            }
            let key_hash = hash(&n.key);
            let hits = n.links.hits();
            let credit = (n.links.credit() + hits).min(CREDIT_MAX);
            self.collect(key_hash, hits);
            turns = turns.saturating_sub(1);
            if credit == 0 && (!n.links.pinned() || turns == 0) {
                n.links.set_credit(0);
                return Some(Victim::Live(i, weigher(&n.key, &n.value), key_hash));
            }
            n.links.set_credit(credit.saturating_sub(1));
            self.main.head = Some(n.links.next);
        }
    }

    /// Moves the small queue's node `i` to the main queue's tail.
    fn promote<V>(&mut self, nodes: &mut Slab<V>, i: u32, weight: u64, key_hash: u64, hits: u8) {
        self.small.unlink(nodes, i, weight);
        self.collect(key_hash, hits);
        links(nodes, i).reset(true);
        self.main.push(nodes, i, weight);
    }

    /// Remembers a key the small queue drops.
    fn drop_small(&mut self, key_hash: u64) {
        let bound = self.entries() as usize;
        self.ghost.remember(key_hash, bound);
    }

    /// Remembers a key the main queue evicts, for a window's worth of departures.
    fn evicted_main(&mut self, key_hash: u64) {
        let bound = self.window() as usize;
        self.main_ghost.remember(key_hash, bound);
    }

    fn resize_small(&mut self, grow: bool, by: u64) {
        let (min, max) = self.small_bounds();
        let target = if grow {
            self.small_target.saturating_add(by)
        } else {
            self.small_target.saturating_sub(by)
        };
        self.small_target = target.clamp(min, max);
    }

    /// Creates the sketch on the first eviction, and again bigger if the shard came to hold more
    /// than twice the entries it was sized for (weighted entries vary in number).
    fn ensure_sketch(&mut self) {
        let entries = self.entries();
        if self
            .sketch
            .as_ref()
            .is_none_or(|s| entries > s.sized_for * 2)
        {
            self.sketch = Some(Sketch::new(entries, SKETCH_COUNTERS, SKETCH_SAMPLE));
        }
    }

    fn estimate(&self, key_hash: u64) -> u8 {
        self.sketch.as_ref().map_or(0, |s| s.estimate(key_hash))
    }

    /// Adds hits collected from a node to the sketch.
    fn collect(&mut self, key_hash: u64, hits: u8) {
        if let (Some(s), true) = (self.sketch.as_mut(), hits > 0) {
            s.add(key_hash, hits);
        }
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;
    pub(super) use crate::key::{hash_key, KeyBytes};
    pub(super) use crate::shard::{Node, Shard};
    pub(super) use ahash::RandomState;
    pub(super) use std::sync::Arc;

    pub(super) const HOUR_MS: u32 = 3_600_000;

    pub(super) fn shard(capacity: u64) -> Shard<u64> {
        Shard::new(capacity, RandomState::with_seeds(1, 2, 3, 4))
    }

    pub(super) fn weigher() -> Weigher<u64> {
        Arc::new(|_: &[u8], _: &u64| 1)
    }

    pub(super) fn hash(key: u64) -> u64 {
        hash_key(&RandomState::with_seeds(1, 2, 3, 4), &key.to_le_bytes())
    }

    /// Reads `key` as the cache does (a hit only touches the node); on a miss stores it, fresh
    /// for `ttl_ms` from `now`. Returns whether it hit and what the store made leave.
    pub(super) fn access(
        s: &mut Shard<u64>,
        key: u64,
        now: u64,
        ttl_ms: u32,
    ) -> (bool, Vec<Departure>) {
        let bytes = key.to_le_bytes();
        if let Some(i) = s.find(hash(key), &bytes) {
            s.node(i).links.touch();
            return (true, Vec::new());
        }
        let node = Node {
            key: KeyBytes::new(&bytes),
            value: key,
            stored_at: now,
            ttl_ms,
            swr_ms: 0,
            sie_ms: 0,
            tags: None,
            links: Links::new(),
        };
        let mut departed = Vec::new();
        s.insert_new(hash(key), node, 1, &weigher(), now, &mut departed);
        (false, departed)
    }

    pub(super) fn contains(s: &Shard<u64>, key: u64) -> bool {
        s.find(hash(key), &key.to_le_bytes()).is_some()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ghost_remembers_a_key_for_its_bound_and_says_how_long_ago_it_left() {
        let mut g = Ghost::default();
        let hash = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for i in 0..100 {
            g.remember(hash(i), 50);
        }
        assert_eq!(g.forget(hash(99)), Some(1), "the last to leave");
        assert_eq!(g.forget(hash(60)), Some(40));
        assert_eq!(g.forget(hash(60)), None, "forgotten once found");
        assert_eq!(g.forget(hash(10)), None, "left more than 50 departures ago");
        let remembered = (50..100).filter(|&i| g.forget(hash(i)).is_some()).count();
        assert!(
            remembered >= 45,
            "a few may be overwritten early, not many: {remembered}"
        );
    }

    use super::tests_support::*;
    use super::*;

    #[test]
    fn a_loop_larger_than_the_cache_keeps_a_stable_subset() {
        // Twice the cache, as lirs-loop at 500 entries: LRU and plain S3-FIFO get no hit at all.
        let mut s = shard(100);
        let mut last_round = 0;
        for _ in 0..30 {
            last_round = (0..210)
                .filter(|&k| access(&mut s, k, 0, HOUR_MS).0)
                .count();
        }
        assert!(
            last_round >= 90,
            "{last_round} hits of 210 in the last round"
        );
        assert!(s.len() <= 100);
    }

    #[test]
    fn a_scan_of_one_hit_wonders_does_not_evict_the_working_set() {
        let mut s = shard(100);
        for _ in 0..5 {
            for k in 0..50 {
                access(&mut s, k, 0, HOUR_MS);
            }
        }
        // 2,000 keys read once each, with the working set read on between them.
        for k in 1_000..3_000 {
            access(&mut s, k, 0, HOUR_MS);
            access(&mut s, k % 50, 0, HOUR_MS);
        }
        let kept = (0..50).filter(|&k| contains(&s, k)).count();
        assert_eq!(kept, 50);
    }

    #[test]
    fn dead_entries_go_first() {
        let mut s = shard(100);
        // Hot, long-lived entries in the main queue, then short-lived ones.
        for _ in 0..3 {
            for k in 0..60 {
                access(&mut s, k, 0, HOUR_MS);
            }
        }
        for k in 100..140 {
            access(&mut s, k, 0, 1);
        }
        // Two milliseconds on, the short-lived ones are dead: they are the first to leave.
        let later = 2_000_000;
        let mut departures = Vec::new();
        for k in 200..240 {
            departures.extend(access(&mut s, k, later, HOUR_MS).1);
        }
        assert_eq!(departures.len(), 40);
        assert!(departures.iter().all(|&d| d == Departure::Expired));
        assert!((0..60).all(|k| contains(&s, k)));
    }

    #[test]
    fn pinned_entries_are_passed_over_but_never_overfill_the_shard() {
        let mut s = shard(10);
        for k in 0..10 {
            access(&mut s, k, 0, HOUR_MS);
        }
        let pin = |s: &Shard<u64>, k: u64, on: bool| {
            if let Some(i) = s.find(hash(k), &k.to_le_bytes()) {
                s.node(i).links.pin(on);
            }
        };
        pin(&s, 3, true);
        for k in 100..200 {
            access(&mut s, k, 0, HOUR_MS);
            assert!(s.len() <= 10);
        }
        assert!(contains(&s, 3), "the pinned entry stays");
        // Every entry pinned: the shard still keeps to its capacity.
        for k in (100..200).filter(|&k| contains(&s, k)) {
            pin(&s, k, true);
        }
        for k in 1_000..1_100 {
            access(&mut s, k, 0, HOUR_MS);
            pin(&s, k, true);
            assert!(s.len() <= 10);
        }
    }

    #[test]
    fn eviction_ends_when_the_queues_are_empty() {
        let mut s = shard(1_000);
        // Some entries read (they reach the main queue), most not.
        for k in 0..1_000 {
            access(&mut s, k, 0, HOUR_MS);
            if k % 3 == 0 {
                access(&mut s, k, 0, HOUR_MS);
                access(&mut s, k, 0, HOUR_MS);
            }
        }
        let resident = s.len();
        let mut evicted = 0;
        let hasher = RandomState::with_seeds(1, 2, 3, 4);
        let hash_of = |k: &[u8]| hash_key(&hasher, k);
        while let Some((i, w, _)) = s.policy.evict(&mut s.nodes, &weigher(), &hash_of, 0, false) {
            drop(s.nodes.remove(i));
            assert_eq!(w, 1);
            evicted += 1;
            assert!(evicted <= resident, "evicts more entries than there are");
        }
        assert_eq!(evicted, resident, "every entry, then none");
        assert!(s.policy.small.head.is_none() && s.policy.main.head.is_none());
        assert_eq!(s.policy.small.weight + s.policy.main.weight, 0);
    }

    #[test]
    fn the_small_queue_stays_within_its_bounds() {
        let mut s = shard(1_000);
        let (min, max) = s.policy.small_bounds();
        assert_eq!((min, max), (10, 250));
        // The target within its bounds; the queue, once the shard is full, never above the
        // target but for the entry just stored, or shrinking towards a target that fell.
        let mut last: Option<u64> = None;
        let mut check = |s: &Shard<u64>| {
            let p = &s.policy;
            assert!((min..=max).contains(&p.small_target), "{}", p.small_target);
            if let Some(last) = last {
                let bound = last.max(p.small_target + 1);
                assert!(p.small.weight <= bound, "{} > {bound}", p.small.weight);
            }
            last = (s.len() == 1_000).then_some(p.small.weight);
        };
        // Keys read again soon after the small queue dropped them: it grows to its maximum.
        for k in 0..5_000 {
            access(&mut s, k, 0, HOUR_MS);
            let gap = 50 * (1 + k % 6);
            if k >= gap {
                access(&mut s, k - gap, 0, HOUR_MS);
            }
            check(&s);
        }
        assert_eq!(s.policy.small_target, max);
        // Keys read thrice (they reach the main queue), read again just after the main queue
        // evicted them: it shrinks to its minimum.
        for i in 0..5_000 {
            let k = 1_000_000 + i;
            for _ in 0..3 {
                access(&mut s, k, 0, HOUR_MS);
            }
            if i >= 1_000 {
                access(&mut s, k - 1_000, 0, HOUR_MS);
            }
            check(&s);
        }
        assert_eq!(s.policy.small_target, min);
    }
}
