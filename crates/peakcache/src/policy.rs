//! The eviction policy: S3-FIFO (Yang et al., SOSP 2023) with a TinyLFU admission gate in front
//! of the main queue (Einziger et al., 2017) and a small queue sized by ghost hits (after ARC,
//! Megiddo and Modha, 2003); dead entries go first. One implementation for both storages: the
//! in-process cache's shards and the shared-memory region of `peakcache-shm`, each behind the
//! [`Store`] trait.
//!
//! New entries enter a small FIFO queue; those read twice before they reach its head are
//! candidates for the main queue, the others leave and are remembered in a ghost list of key
//! hashes, so a key that comes back soon after is a candidate too (counted as read twice). The
//! main queue is a CLOCK: an entry read since its last pass goes round again. One-hit wonders
//! and scans pass through the small queue without displacing the working set.
//!
//! Three additions, each for a measured weakness of plain S3-FIFO (`benches/replay-all.sh`):
//!
//! * **Fill.** While the main queue has room, entries leaving the small queue go into it even
//!   unread. Plain S3-FIFO never filled it on a loop larger than the cache (0 % hits on
//!   lirs-loop at 500 entries): every key cycled through the small queue and left the ghost
//!   list before it came back.
//! * **Admission gate.** Once the main queue is full, a candidate from the small queue enters it
//!   only if a frequency sketch (4-bit count-min, halved every ten entries' worth of
//!   additions) rates it above the CLOCK's victim; otherwise the candidate leaves. On a loop or
//!   a scan mixed with a working set all keys look alike and the incumbents stay, so the cache
//!   keeps a fixed subset instead of churning (lirs-gli, lirs-multi2). The sketch is fed on
//!   misses (each admission) and with the hits collected from the entries' counters when the
//!   policy passes them, never on the hit path.
//! * **Adaptive small queue.** The small queue starts at 1 % of the capacity and moves between
//!   1 % and 25 %: a key returning within a tenth of the cache's worth of departures after the
//!   small queue dropped it says the small queue is too small (grow by its weight); a key
//!   returning after the main queue evicted it says the main queue is (shrink). Recency-heavy
//!   traces (arc-OLTP) want about 20 %, loops want the least: with the gate, a fixed 10 % lost 3
//!   to 14 points on lirs-loop and lirs-gli, a fixed 1 to 3 % lost 4 to 6 points on arc-OLTP.
//!
//! A hit only raises a two-bit counter kept with the entry ([`Bits::hits`]), so reads need no
//! exclusive lock and hot entries cause no writes at all. The policy reads and clears those
//! counters when it passes the entry, moving them into its CLOCK credit and into the sketch.
//! Entries past every stale window ([`Store::dead`]) are removed whenever the policy meets them,
//! before any live entry is evicted in their place. An entry whose key is being fetched again
//! ([`Store::pinned`]) is passed over, unless every entry is.
//!
//! # Storage
//!
//! The policy keeps three things, and the store decides where:
//!
//! * per entry (a *slot*, addressed by a `u32` index): its queue links and its [`Bits`];
//! * per policy: the [`Policy`] itself, a plain value (the queues' heads, lengths and weights,
//!   the small queue's target, the ghosts' and the sketch's counters), which a store in shared
//!   memory loads before each operation and saves after;
//! * three tables of words ([`Table`]): the two ghosts and the sketch.
//!
//! A store whose contents may be damaged (shared memory) is safe here: every walk is bounded,
//! every index goes back through the store, which may check it.
//!
//! # Admission is planned before room is made
//!
//! An entry being stored is placed by [`Policy::plan`] before anything is evicted for it, then
//! counted in its queue while [`Policy::choose`] makes room (a store that must find room before
//! it can hold the entry, like the region's heap, needs this), and finally linked by
//! [`Policy::admit`]. A plan that allows it may be turned away ([`Choice::Reject`]): an entry
//! that would be evicted as soon as it was stored is not stored at all.
//!
//! Measured (hit %, `benches/replay-all.sh --shards 1`; moka / quick_cache alongside):
//!
//! | trace | capacity | plain S3-FIFO | this policy | moka | quick_cache |
//! |---|---|---|---|---|---|
//! | arc-OLTP | 1,000 / 2,000 / 5,000 | 40.19 / 46.87 / 55.28 | 41.35 / 47.28 / 56.04 | 34.14 / 39.81 / 48.05 | 35.15 / 44.93 / 54.29 |
//! | lirs-loop | 500 / 1,000 / 1,024 | 0.00 / 79.80 / 99.80 | 48.86 / 96.22 / 99.80 | 49.33 / 94.75 / 99.80 | 47.88 / 97.73 / 99.80 |
//! | lirs-gli | 500 / 1,000 / 2,000 | 16.19 / 35.10 / 57.41 | 33.20 / 50.59 / 57.96 | 27.88 / 43.18 / 57.96 | 31.74 / 48.93 / 57.96 |
//! | lirs-sprite | 100 / 250 / 500 | 29.00 / 54.29 / 78.64 | 30.19 / 55.98 / 79.02 | 30.97 / 55.03 / 74.49 | 30.05 / 54.41 / 76.51 |
//! | lirs-multi2 | 500 / 1,000 / 2,000 | 49.50 / 50.77 / 65.88 | 49.41 / 57.73 / 71.03 | 49.99 / 58.22 / 69.27 | 46.26 / 56.81 / 70.35 |
//! | cache2k-web07 | 1,000 / 2,000 / 5,000 | 53.96 / 58.27 / 64.42 | 53.87 / 57.74 / 63.14 | 46.57 / 51.22 / 58.55 | 53.43 / 57.90 / 63.78 |
//! | adapt (bytes) | 1 % / 5 % / 10 % | 27.47 / 36.22 / 38.62 | 28.40 / 36.30 / 38.90 | 25.96 / 33.56 / 36.11 | 25.10 / 35.15 / 38.25 |
//! | arc-P3 | 32,768 / 131,072 | | 18.09 / 47.47 | 18.60 / 45.63 | 12.94 / 48.61 |
//! | arc-P6 | 32,768 / 131,072 | | 28.40 / 80.33 | 30.15 / 76.39 | 18.55 / 80.66 |
//! | arc-P12 | 32,768 / 131,072 | | 18.49 / 42.82 | 15.14 / 40.14 | 16.31 / 40.76 |
//! | cloud_physics-w106 | 32,768 / 131,072 | | 92.69 / 93.58 | 86.96 / 77.68 | 92.56 / 94.40 |
//! | lirs-multi1 | 500 / 1,000 | | 56.31 / 65.81 | 54.42 / 67.08 | 55.66 / 67.92 |
//!
//! Its weak spots, all where a pure recency policy does better: a key coming back after the
//! small queue dropped it but before the main queue would have evicted it, at large capacities
//! (arc-P3 and w106 at 131,072, lirs-multi1 at 1,000), and frequency-heavy block traces at
//! 32,768 (arc-P6, where moka's W-TinyLFU is 1.8 points ahead). Measured and dropped: letting
//! every ghost hit past the gate (arc-P3 +1.7 at 131,072, lirs-multi1 -2.5 at 1,000), no gate
//! (arc-P3 +2.2, lirs-multi1 -2.5, lirs-sprite -1), the gate for every small-queue head, read
//! or not (lirs-loop at 500: -21, lirs-gli at 500: -17), one hit to promote (arc-OLTP -0.5), a
//! small queue up to 50 % (no gain), a CLOCK credit of 1 (lirs-multi1 +2.3, arc-P6 -0.6,
//! arc-OLTP -0.4), a ghost twice as long (lirs-loop at 500: -34).

/// No slot: the end of a list, or an empty one.
pub const NIL: u32 = u32::MAX;

/// Which list a slot is in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Queue {
    /// None: a slot being stored, or removed.
    #[default]
    None,
    /// The small FIFO queue new entries enter.
    Small,
    /// The main CLOCK queue.
    Main,
    /// A list the store keeps for itself with [`List`] (the shared-memory tier's key-only
    /// records); the policy never looks at it.
    Other,
}

/// What the policy keeps of one slot beside its links: two bits each for its list and for two
/// counters, so a store can keep them in one byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bits {
    /// The list the slot is in.
    pub queue: Queue,
    /// Hits since the policy last passed it, 0 to 3: raised by the store on each hit (up to 3,
    /// never more), cleared by the policy.
    pub hits: u8,
    /// CLOCK credit earned in the main queue, 0 to 3.
    pub credit: u8,
}

/// The most `hits` a slot counts; a store raises [`Bits::hits`] no further.
pub const HITS_MAX: u8 = 3;
const CREDIT_MAX: u8 = 3;

/// One of the policy's tables of words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// Keys the small queue dropped: two entries a word (each a 12-bit fingerprint and a
    /// 20-bit departure number).
    Ghost,
    /// Keys the main queue evicted, for the small queue's adaptation only: likewise.
    MainGhost,
    /// The frequency sketch: sixteen 4-bit counters a word.
    Sketch,
}

/// Where the policy's per-slot state and tables live, and what it needs to know of an entry.
/// Every index the policy passes is one the store gave it (a slot it admitted, or a link);
/// a store whose contents may be damaged checks them and answers something harmless.
pub trait Store {
    /// Slot `i`'s neighbours in its list: `(previous, next)`.
    fn links(&self, i: u32) -> (u32, u32);
    /// Sets slot `i`'s previous neighbour.
    fn set_prev(&mut self, i: u32, prev: u32);
    /// Sets slot `i`'s next neighbour.
    fn set_next(&mut self, i: u32, next: u32);
    /// Slot `i`'s bits.
    fn bits(&self, i: u32) -> Bits;
    /// Sets slot `i`'s bits.
    fn set_bits(&mut self, i: u32, bits: Bits);
    /// What slot `i`'s entry weighs against the capacity.
    fn weight(&self, i: u32) -> u64;
    /// The hash of slot `i`'s key.
    fn key_hash(&self, i: u32) -> u64;
    /// Whether slot `i`'s entry is past every window (never served again): it goes first.
    fn dead(&self, i: u32) -> bool;
    /// Whether slot `i`'s key is being fetched again: its entry is what a failed fetch serves.
    fn pinned(&self, i: u32) -> bool;
    /// Word `k` of table `t` (below what [`reset_table`](Store::reset_table) last gave).
    fn word(&self, t: Table, k: usize) -> u64;
    /// Sets word `k` of table `t`.
    fn set_word(&mut self, t: Table, k: usize, v: u64);
    /// The most words table `t` can have (`usize::MAX` when it grows as asked).
    fn table_capacity(&self, t: Table) -> usize;
    /// Makes table `t` `words` long (at most its capacity), every word zero; returns its new
    /// length.
    fn reset_table(&mut self, t: Table, words: usize) -> usize;
}

/// A circular doubly linked list threaded through slots; `head` is the oldest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct List {
    /// The oldest slot, [`NIL`] when empty.
    pub head: u32,
    /// Slots in the list.
    pub len: u64,
    /// Their weight.
    pub weight: u64,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NIL,
            len: 0,
            weight: 0,
        }
    }
}

impl List {
    /// Appends slot `i` (in no list) at the tail, named `queue` in its bits.
    pub fn push<S: Store>(&mut self, s: &mut S, queue: Queue, i: u32, weight: u64) {
        if self.head == NIL {
            s.set_prev(i, i);
            s.set_next(i, i);
            self.head = i;
        } else {
            let tail = s.links(self.head).0;
            s.set_next(tail, i);
            s.set_prev(self.head, i);
            s.set_prev(i, tail);
            s.set_next(i, self.head);
        }
        self.len += 1;
        self.weight = self.weight.saturating_add(weight);
        let bits = s.bits(i);
        s.set_bits(i, Bits { queue, ..bits });
    }

    /// Takes slot `i` out of the list; its bits name no list and keep no credit.
    pub fn unlink<S: Store>(&mut self, s: &mut S, i: u32, weight: u64) {
        let (prev, next) = s.links(i);
        if next == i {
            self.head = NIL;
        } else {
            s.set_next(prev, next);
            s.set_prev(next, prev);
            if self.head == i {
                self.head = next;
            }
        }
        s.set_prev(i, NIL);
        s.set_next(i, NIL);
        self.len = self.len.saturating_sub(1);
        self.weight = self.weight.saturating_sub(weight);
        let bits = s.bits(i);
        s.set_bits(
            i,
            Bits {
                queue: Queue::None,
                credit: 0,
                ..bits
            },
        );
    }

    /// Slot `from` of this list now lives at `to`: its links move there, and its neighbours
    /// and the head follow it.
    pub fn moved<S: Store>(&mut self, s: &mut S, from: u32, to: u32) {
        let (prev, next) = s.links(from);
        if prev == from {
            s.set_prev(to, to);
            s.set_next(to, to);
        } else {
            s.set_prev(to, prev);
            s.set_next(to, next);
            s.set_next(prev, to);
            s.set_prev(next, to);
        }
        if self.head == from {
            self.head = to;
        }
    }
}

/// A ghost's counters; its entries are in a [`Table`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GhostState {
    /// Departures so far (the number the last one got).
    pub seq: u64,
    /// Departures a key is remembered for.
    pub bound: u64,
    /// Entries of its table in use, two a word (0: none yet).
    pub len: u64,
}

/// The sketch's counters; its words are [`Table::Sketch`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SketchState {
    /// Words of the table in use (0: no sketch yet).
    pub words: u64,
    /// Additions since the last halving.
    pub additions: u64,
    /// Additions between two halvings.
    pub sample: u64,
    /// The entry count the table was sized for.
    pub sized_for: u64,
}

/// The policy of one shard, everything but its slots and tables: a plain value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The small queue.
    pub small: List,
    /// The main queue.
    pub main: List,
    /// The weight the small queue is kept to, between 1 % and 25 % of the capacity.
    pub small_target: u64,
    /// The capacity, in weight.
    pub capacity: u64,
    /// Keys the small queue dropped.
    pub ghost: GhostState,
    /// Keys the main queue evicted.
    pub main_ghost: GhostState,
    /// The frequency sketch.
    pub sketch: SketchState,
}

/// Where an entry being stored goes, decided by [`Policy::plan`] before room is made for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    hash: u64,
    weight: u64,
    queue: Queue,
    hits: u8,
    may_reject: bool,
}

impl Plan {
    /// The key hash planned for.
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// Why an entry left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Departure {
    /// A live entry, evicted for room.
    Evicted,
    /// A dead entry, past every window.
    Expired,
}

/// What [`Policy::choose`] chose to make room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// This slot's entry leaves; it is out of its queue already.
    Leave(u32, Departure),
    /// The entry being stored leaves first (its plan allowed it): it would have reached the
    /// small queue's head unread, or lost at the gate. The ghost remembers it.
    Reject,
    /// Nothing can leave: both queues are empty (or, in a damaged store, seem endless).
    Nothing,
}

/// What the main queue's CLOCK found at its hand.
enum Hand {
    /// A dead entry: it leaves first, whatever else is going on.
    Dead(u32),
    /// A live entry without credit, and its key hash. It stays at the head.
    Live(u32, u64),
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
/// Ghost slots per remembered key, in quarters, and slots probed for one key.
const GHOST_QUARTERS: u64 = 5;
const GHOST_PROBES: u64 = 4;

/// `percent` % of `of`, without overflow.
fn percent(of: u64, percent: u64) -> u64 {
    (u128::from(of) * u128::from(percent) / 100) as u64
}

/// `x` scaled to `0..len` (Lemire's multiply-shift), for tables of any length.
fn scaled(x: u32, len: u64) -> u64 {
    (u64::from(x) * len) >> 32
}

/// A key hash with every bit mixed into every other: the shard is chosen by some of its bits,
/// which are then alike for every key of a shard and must not decide where it goes here.
fn mixed(hash: u64) -> u64 {
    let h = (hash ^ (hash >> 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    h ^ (h >> 29)
}

impl Policy {
    /// An empty policy for `capacity` (in weight).
    pub fn new(capacity: u64) -> Self {
        let mut p = Policy {
            small: List::default(),
            main: List::default(),
            small_target: 0,
            capacity,
            ghost: GhostState::default(),
            main_ghost: GhostState::default(),
            sketch: SketchState::default(),
        };
        p.small_target = p.small_bounds().0;
        p
    }

    /// The small queue's least and greatest target.
    pub fn small_bounds(&self) -> (u64, u64) {
        let min = percent(self.capacity, SMALL_MIN_PERCENT).max(1);
        let max = percent(self.capacity, SMALL_MAX_PERCENT).max(min);
        (min, max)
    }

    /// Entries in both queues, and the one planned if any.
    fn entries(&self, plan: Option<&Plan>) -> u64 {
        self.small.len + self.main.len + u64::from(plan.is_some())
    }

    /// How soon (in departures) a key must return to count for the adaptation.
    fn window(&self, plan: Option<&Plan>) -> u64 {
        percent(self.entries(plan), WINDOW_PERCENT).max(1)
    }

    /// The weight of `queue` with the planned entry's, if it goes there.
    fn weight_with(&self, queue: Queue, plan: Option<&Plan>) -> u64 {
        let list = if queue == Queue::Main {
            &self.main
        } else {
            &self.small
        };
        let planned = plan.filter(|p| p.queue == queue).map_or(0, |p| p.weight);
        list.weight.saturating_add(planned)
    }

    fn main_room(&self) -> u64 {
        self.capacity.saturating_sub(self.small_target)
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

    // ---- admission ------------------------------------------------------------------------

    /// Decides where an entry of `weight` for a key of `hash` (not stored yet) goes: the main
    /// queue if the small queue dropped the key within the adaptation window, or earlier and
    /// the main queue has room; the small queue, counted as read twice, if it came back later
    /// and the main queue is full (the two reads are what a ghost hit is worth against an
    /// incumbent at the gate: bypassing the gate for every ghost hit, as plain S3-FIFO does,
    /// churned the main queue on loops, while a key back within the window is recency the
    /// gate would miss: +0.3 point on arc-P3 at 131,072 entries, +0.5 on lirs-multi1 at 1,000
    /// for it); else plainly the small queue. Counts the admission in the
    /// sketch and adapts the small queue's size. With `may_reject`, [`choose`](Self::choose)
    /// may turn the entry away.
    pub fn plan<S: Store>(&mut self, s: &mut S, hash: u64, weight: u64, may_reject: bool) -> Plan {
        self.sketch_add(s, hash, 1);
        if self.ghost_forget(s, Table::MainGhost, hash).is_some() {
            self.resize_small(false, weight);
        }
        let window = self.window(None);
        let (queue, hits) = match self.ghost_forget(s, Table::Ghost, hash) {
            Some(ago) => {
                if ago <= window {
                    self.resize_small(true, weight);
                }
                if ago <= window || self.main.weight.saturating_add(weight) <= self.main_room() {
                    (Queue::Main, 0)
                } else {
                    (Queue::Small, PROMOTE_HITS)
                }
            }
            None => (Queue::Small, 0),
        };
        Plan {
            hash,
            weight,
            queue,
            hits,
            may_reject,
        }
    }

    /// Links slot `i`, now holding the planned entry, into its queue.
    pub fn admit<S: Store>(&mut self, s: &mut S, i: u32, plan: Plan) {
        s.set_bits(
            i,
            Bits {
                queue: Queue::None,
                hits: plan.hits,
                credit: 0,
            },
        );
        match plan.queue {
            Queue::Main => self.main.push(s, Queue::Main, i, plan.weight),
            _ => self.small.push(s, Queue::Small, i, plan.weight),
        }
    }

    /// Takes slot `i` (of `weight`) out of its queue: it is removed, not evicted.
    pub fn remove<S: Store>(&mut self, s: &mut S, i: u32, weight: u64) {
        match s.bits(i).queue {
            Queue::Main => self.main.unlink(s, i, weight),
            Queue::Small => self.small.unlink(s, i, weight),
            Queue::None | Queue::Other => {}
        }
    }

    /// Slot `i`'s entry changed weight in place (a new value for its key: an access too).
    pub fn reweigh<S: Store>(&mut self, s: &mut S, i: u32, old: u64, new: u64) {
        let list = match s.bits(i).queue {
            Queue::Main => &mut self.main,
            Queue::Small => &mut self.small,
            Queue::None | Queue::Other => return,
        };
        list.weight = list.weight.saturating_sub(old).saturating_add(new);
    }

    /// Slot `from` now lives at `to`, its bits copied there: its links move too, and its
    /// neighbours follow.
    pub fn moved<S: Store>(&mut self, s: &mut S, from: u32, to: u32) {
        match s.bits(to).queue {
            Queue::Main => self.main.moved(s, from, to),
            Queue::Small => self.small.moved(s, from, to),
            Queue::None | Queue::Other => {}
        }
    }

    /// Links slot `i` into the queue its bits name (the main one, else the small one), for a
    /// store rebuilding its queues into an empty policy.
    pub fn requeue<S: Store>(&mut self, s: &mut S, i: u32, weight: u64) {
        let queue = s.bits(i).queue;
        let bits = Bits {
            queue: Queue::None,
            ..s.bits(i)
        };
        s.set_bits(i, bits);
        if queue == Queue::Main {
            self.main.push(s, Queue::Main, i, weight);
        } else {
            self.small.push(s, Queue::Small, i, weight);
        }
    }

    // ---- eviction ---------------------------------------------------------------------------

    /// Chooses the next entry to leave and takes it out of its queue. The entry being stored
    /// (`plan`) counts as the small queue's tail: it may move to the main queue, or, if its plan
    /// allows, be turned away.
    pub fn choose<S: Store>(&mut self, s: &mut S, mut plan: Option<&mut Plan>) -> Choice {
        self.ensure_sketch(s, plan.as_deref());
        // Each turn returns, promotes one entry of the small queue (or the planned one), or
        // passes over one pinned entry once.
        let mut pinned_passes = self.small.len;
        let turns = 2 * self.small.len + 3;
        for _ in 0..turns {
            let planned = plan.as_deref();
            if self.weight_with(Queue::Small, planned) <= self.small_target && self.main.head != NIL
            {
                return self.evict_main(s, plan.as_deref());
            }
            if self.small.head == NIL {
                let at_head = plan.as_deref_mut().filter(|p| p.queue == Queue::Small);
                match at_head.filter(|p| p.may_reject) {
                    Some(p) => match self.planned_at_head(s, p) {
                        Some(choice) => return choice,
                        None => continue,
                    },
                    None => return self.evict_main(s, plan.as_deref()),
                }
            }
            let i = self.small.head;
            let weight = s.weight(i);
            if s.dead(i) {
                self.small.unlink(s, i, weight);
                return Choice::Leave(i, Departure::Expired);
            }
            let (hits, hash) = (s.bits(i).hits, s.key_hash(i));
            if self
                .weight_with(Queue::Main, plan.as_deref())
                .saturating_add(weight)
                <= self.main_room()
            {
                // Filling: the main queue takes whatever the small queue lets go.
                self.promote(s, i, weight, hash, hits);
                continue;
            }
            if s.pinned(i) && pinned_passes > 0 {
                pinned_passes -= 1;
                self.small.head = s.links(i).1;
                continue;
            }
            if hits < PROMOTE_HITS {
                self.small.unlink(s, i, weight);
                self.drop_small(s, hash, plan.as_deref());
                return Choice::Leave(i, Departure::Evicted);
            }
            return self.gate(s, (i, weight, hash, hits), plan.as_deref());
        }
        Choice::Nothing
    }

    /// The planned entry reached the small queue's head: it fills the main queue if that has
    /// room (`None`: go on), leaves if unread, else meets the main queue's victim at the gate.
    fn planned_at_head<S: Store>(&mut self, s: &mut S, p: &mut Plan) -> Option<Choice> {
        if self.main.weight.saturating_add(p.weight) <= self.main_room() {
            p.queue = Queue::Main;
            return None;
        }
        let hand = if p.hits < PROMOTE_HITS {
            None
        } else {
            self.clock_hand(s)
        };
        if let Some(Hand::Live(..)) = hand {
            self.sketch_add(s, p.hash, p.hits);
        }
        match hand {
            Some(Hand::Live(_, v_hash)) if !self.outranks(s, p.hash, v_hash) => {}
            Some(hand) => {
                if let Hand::Live(..) = hand {
                    p.queue = Queue::Main;
                    p.hits = 0;
                }
                return Some(self.take(s, hand, Some(p)));
            }
            None => {}
        }
        self.drop_small(s, p.hash, None);
        Some(Choice::Reject)
    }

    /// Lets the main queue's CLOCK choose a victim and takes it out.
    fn evict_main<S: Store>(&mut self, s: &mut S, plan: Option<&Plan>) -> Choice {
        match self.clock_hand(s) {
            Some(hand) => self.take(s, hand, plan),
            None => Choice::Nothing,
        }
    }

    /// Takes the main queue's entry at the CLOCK's hand out: a dead one expires, a live one is
    /// evicted (and remembered, for the adaptation).
    fn take<S: Store>(&mut self, s: &mut S, hand: Hand, plan: Option<&Plan>) -> Choice {
        let (Hand::Dead(v) | Hand::Live(v, _)) = hand;
        let w = s.weight(v);
        self.main.unlink(s, v, w);
        match hand {
            Hand::Dead(_) => Choice::Leave(v, Departure::Expired),
            Hand::Live(_, v_hash) => {
                self.evicted_main(s, v_hash, plan);
                Choice::Leave(v, Departure::Evicted)
            }
        }
    }

    /// Whether the sketch rates a candidate above the main queue's victim (the incumbent stays
    /// on a tie).
    fn outranks<S: Store>(&self, s: &S, candidate: u64, victim: u64) -> bool {
        self.sketch_estimate(s, candidate) > self.sketch_estimate(s, victim)
    }

    /// A small-queue candidate meets the main queue's victim: the one the sketch rates higher
    /// stays, the other leaves. `candidate` is the small queue's head: slot, weight, key hash
    /// and uncollected hits.
    fn gate<S: Store>(
        &mut self,
        s: &mut S,
        (i, weight, hash, hits): (u32, u64, u64, u8),
        plan: Option<&Plan>,
    ) -> Choice {
        let hand = self.clock_hand(s);
        if let Some(Hand::Live(_, v_hash)) = hand {
            self.sketch_add(s, hash, hits);
            if !self.outranks(s, hash, v_hash) {
                self.small.unlink(s, i, weight);
                self.drop_small(s, hash, plan);
                return Choice::Leave(i, Departure::Evicted);
            }
        }
        match hand {
            Some(hand) => {
                let promoted = matches!(hand, Hand::Live(..));
                let choice = self.take(s, hand, plan);
                if promoted {
                    self.promote(s, i, weight, hash, 0);
                }
                choice
            }
            // The main queue was full, so it has a head: only a damaged store gets here.
            None => {
                self.small.unlink(s, i, weight);
                self.drop_small(s, hash, plan);
                Choice::Leave(i, Departure::Evicted)
            }
        }
    }

    /// Runs the main queue's CLOCK from its head: collects each entry's hits into its credit
    /// and the sketch, spends one credit per pass, and stops at the first dead entry or the
    /// first without credit and not pinned, left at the head. Credits only fall here, so four
    /// turns of the queue find one (hits raised meanwhile by readers of a shared store add a
    /// turn each); past that the head goes as it is. `None` if the main queue is empty.
    fn clock_hand<S: Store>(&mut self, s: &mut S) -> Option<Hand> {
        let mut turns = self.main.len.saturating_mul(4).saturating_add(4);
        loop {
            let i = self.main.head;
            if i == NIL {
                return None;
            }
            if s.dead(i) {
                return Some(Hand::Dead(i));
            }
            let hash = s.key_hash(i);
            let bits = s.bits(i);
            let credit = (bits.credit + bits.hits).min(CREDIT_MAX);
            self.sketch_add(s, hash, bits.hits);
            turns = turns.saturating_sub(1);
            let spent = Bits {
                hits: 0,
                credit: credit.saturating_sub(1),
                ..bits
            };
            s.set_bits(i, spent);
            if turns == 0 || (credit == 0 && !s.pinned(i)) {
                return Some(Hand::Live(i, hash));
            }
            self.main.head = s.links(i).1;
        }
    }

    /// Moves the small queue's slot `i` to the main queue's tail.
    fn promote<S: Store>(&mut self, s: &mut S, i: u32, weight: u64, hash: u64, hits: u8) {
        self.small.unlink(s, i, weight);
        self.sketch_add(s, hash, hits);
        let bits = Bits {
            queue: Queue::None,
            hits: 0,
            credit: 0,
        };
        s.set_bits(i, bits);
        self.main.push(s, Queue::Main, i, weight);
    }

    /// Remembers a key the small queue drops, for as many departures as entries are queued.
    fn drop_small<S: Store>(&mut self, s: &mut S, hash: u64, plan: Option<&Plan>) {
        let bound = self.entries(plan);
        let mut g = self.ghost;
        ghost_remember(s, Table::Ghost, &mut g, hash, bound);
        self.ghost = g;
    }

    /// Remembers a key the main queue evicts, for a window's worth of departures.
    fn evicted_main<S: Store>(&mut self, s: &mut S, hash: u64, plan: Option<&Plan>) {
        let bound = self.window(plan);
        let mut g = self.main_ghost;
        ghost_remember(s, Table::MainGhost, &mut g, hash, bound);
        self.main_ghost = g;
    }

    fn ghost_forget<S: Store>(&mut self, s: &mut S, t: Table, hash: u64) -> Option<u64> {
        let g = if t == Table::Ghost {
            &mut self.ghost
        } else {
            &mut self.main_ghost
        };
        ghost_forget(s, t, g, hash)
    }

    // ---- sketch -----------------------------------------------------------------------------

    /// Creates the sketch on the first eviction, sized from the entries queued then, and again
    /// (empty) if the shard came to hold more than twice that.
    fn ensure_sketch<S: Store>(&mut self, s: &mut S, plan: Option<&Plan>) {
        let entries = self.entries(plan).max(16);
        let k = &self.sketch;
        if k.words != 0 && entries <= k.sized_for.saturating_mul(2) {
            return;
        }
        let wanted = entries.saturating_mul(SKETCH_COUNTERS).div_ceil(16).max(4);
        let words = s.reset_table(Table::Sketch, usize::try_from(wanted).unwrap_or(usize::MAX));
        self.sketch = SketchState {
            words: words as u64,
            additions: 0,
            sample: entries.saturating_mul(SKETCH_SAMPLE),
            sized_for: entries,
        };
    }

    /// The word and shift of each of the key's four counters.
    fn sketch_slots(&self, hash: u64) -> [(usize, u32); 4] {
        const SEEDS: [u64; 4] = [
            0x9E37_79B9_7F4A_7C15,
            0xC2B2_AE3D_27D4_EB4F,
            0x1656_67B1_9E37_79F9,
            0xD6E8_FEB8_6659_FD93,
        ];
        let words = self.sketch.words;
        SEEDS.map(|seed| {
            let x = (hash ^ seed).wrapping_mul(seed | 1);
            let x = x ^ (x >> 31);
            let word = scaled((x >> 32) as u32, words) as usize;
            (word, ((x & 15) * 4) as u32)
        })
    }

    /// The key's estimated frequency, 0 to 15 (0 without a sketch).
    pub fn sketch_estimate<S: Store>(&self, s: &S, hash: u64) -> u8 {
        if self.sketch.words == 0 {
            return 0;
        }
        self.sketch_slots(hash)
            .iter()
            .map(|&(w, shift)| ((s.word(Table::Sketch, w) >> shift) & 15) as u8)
            .min()
            .unwrap_or(0)
    }

    /// Counts `n` more occurrences of the key; halves every counter every `sample` additions.
    fn sketch_add<S: Store>(&mut self, s: &mut S, hash: u64, n: u8) {
        if self.sketch.words == 0 || n == 0 {
            return;
        }
        let target = (self.sketch_estimate(s, hash) + n).min(15);
        for (w, shift) in self.sketch_slots(hash) {
            let word = s.word(Table::Sketch, w);
            if ((word >> shift) & 15) < u64::from(target) {
                let word = (word & !(15 << shift)) | (u64::from(target) << shift);
                s.set_word(Table::Sketch, w, word);
            }
        }
        self.sketch.additions += u64::from(n);
        if self.sketch.additions >= self.sketch.sample {
            for w in 0..self.sketch.words as usize {
                let word = s.word(Table::Sketch, w);
                s.set_word(Table::Sketch, w, (word >> 1) & 0x7777_7777_7777_7777);
            }
            self.sketch.additions /= 2;
        }
    }
}

// ---- ghosts ---------------------------------------------------------------------------------
//
// A ghost is a lossy hash table of 32-bit entries, two to a word: a 12-bit fingerprint of a key
// hash and the low 20 bits of its departure number, sized to a quarter more entries than keys
// remembered (5 bytes per key). A key is found among four entries from its fingerprint;
// remembering a key overwrites the oldest of those when none is free, and an entry older than
// the bound counts as free. A rare overwrite forgets a key early, and a fingerprint shared by
// chance (one lookup in a thousand) finds a key that never left: each costs one admission
// decision, never correctness. The bound is kept to 2^19 departures, half of what the stamps
// count, so that an entry older than its bound is seldom taken for a young one (it would have
// to outlive two rounds of the table unprobed).

/// Bits of an entry's departure stamp, and the most departures a key is remembered for.
const STAMP_BITS: u32 = 20;
const STAMP_MASK: u32 = (1 << STAMP_BITS) - 1;
const GHOST_MAX_BOUND: u64 = 1 << (STAMP_BITS - 1);

/// The fingerprint of a key hash in a ghost entry's high 12 bits (never zero, so a zero entry
/// is free), from the mixed hash.
fn fingerprint(hash: u64) -> u32 {
    let fp = (mixed(hash) >> 52) as u32;
    fp.max(1) << STAMP_BITS
}

/// The entries a key whose mixed hash gave `start_bits` may occupy in a table of `len`.
fn probes(start_bits: u32, len: u64) -> impl Iterator<Item = usize> {
    let start = scaled(start_bits, len);
    (0..GHOST_PROBES).map(move |k| ((start + k) % len) as usize)
}

/// Where a key's probes start: 32 bits of its mixed hash below the fingerprint's.
fn start_bits(hash: u64) -> u32 {
    (mixed(hash) >> 16) as u32
}

fn entry<S: Store>(s: &S, t: Table, k: usize) -> u32 {
    (s.word(t, k / 2) >> (32 * (k % 2))) as u32
}

fn set_entry<S: Store>(s: &mut S, t: Table, k: usize, e: u32) {
    let shift = 32 * (k % 2);
    let word = s.word(t, k / 2) & !(0xffff_ffff << shift);
    s.set_word(t, k / 2, word | u64::from(e) << shift);
}

/// How many departures ago entry `e`'s key left (0 = the last), if still remembered.
fn ghost_age(g: &GhostState, e: u32) -> Option<u64> {
    if e == 0 {
        return None;
    }
    let age = u64::from((g.seq as u32).wrapping_sub(e) & STAMP_MASK);
    (age < g.bound).then_some(age)
}

/// Remembers a departing key for `bound` departures (at most 2^19).
fn ghost_remember<S: Store>(s: &mut S, t: Table, g: &mut GhostState, hash: u64, bound: u64) {
    g.bound = bound.clamp(1, GHOST_MAX_BOUND);
    let most = (s.table_capacity(t) as u64).saturating_mul(2);
    let wanted = g
        .bound
        .saturating_mul(GHOST_QUARTERS)
        .div_ceil(4)
        .max(GHOST_PROBES)
        .min(most);
    if g.len < wanted {
        ghost_grow(s, t, g, wanted);
    }
    if g.len == 0 {
        return;
    }
    g.seq = g.seq.wrapping_add(1);
    let fp = fingerprint(hash);
    let mut best: Option<(usize, Option<u64>)> = None;
    for k in probes(start_bits(hash), g.len) {
        let e = entry(s, t, k);
        let age = ghost_age(g, e);
        if age.is_none() || e & !STAMP_MASK == fp {
            best = Some((k, None));
            break;
        }
        if best.is_none_or(|(_, b)| age > b) {
            best = Some((k, age));
        }
    }
    if let Some((k, _)) = best {
        set_entry(s, t, k, fp | (g.seq as u32 & STAMP_MASK));
    }
}

/// Forgets the key if remembered; returns how many departures ago it left (1 = the last).
fn ghost_forget<S: Store>(s: &mut S, t: Table, g: &GhostState, hash: u64) -> Option<u64> {
    if g.len == 0 {
        return None;
    }
    let fp = fingerprint(hash);
    for k in probes(start_bits(hash), g.len) {
        let e = entry(s, t, k);
        if e & !STAMP_MASK == fp {
            if let Some(age) = ghost_age(g, e) {
                set_entry(s, t, k, 0);
                return Some(age + 1);
            }
        }
    }
    None
}

/// Makes the table `len` entries long, and an eighth more so that a bound that creeps up does
/// not make it again at every departure. What it remembered is forgotten: the bound grows with
/// the entries a shard holds, which happens as it first fills and rarely again.
fn ghost_grow<S: Store>(s: &mut S, t: Table, g: &mut GhostState, len: u64) {
    let len = len.saturating_add(len / 8);
    let words = s.reset_table(t, usize::try_from(len.div_ceil(2)).unwrap_or(usize::MAX));
    g.len = words as u64 * 2;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A store of plain vectors, weight 1 per slot, as a unit test sees the policy.
    #[derive(Default)]
    struct Vecs {
        links: Vec<(u32, u32)>,
        bits: Vec<Bits>,
        hashes: Vec<u64>,
        dead: Vec<bool>,
        pinned: Vec<bool>,
        tables: HashMap<Table, Vec<u64>>,
        /// The most words a table may have (a fixed-size store, like a region's).
        table_cap: Option<usize>,
    }

    impl Store for Vecs {
        fn links(&self, i: u32) -> (u32, u32) {
            self.links[i as usize]
        }
        fn set_prev(&mut self, i: u32, prev: u32) {
            self.links[i as usize].0 = prev;
        }
        fn set_next(&mut self, i: u32, next: u32) {
            self.links[i as usize].1 = next;
        }
        fn bits(&self, i: u32) -> Bits {
            self.bits[i as usize]
        }
        fn set_bits(&mut self, i: u32, bits: Bits) {
            self.bits[i as usize] = bits;
        }
        fn weight(&self, _: u32) -> u64 {
            1
        }
        fn key_hash(&self, i: u32) -> u64 {
            self.hashes[i as usize]
        }
        fn dead(&self, i: u32) -> bool {
            self.dead[i as usize]
        }
        fn pinned(&self, i: u32) -> bool {
            self.pinned[i as usize]
        }
        fn word(&self, t: Table, k: usize) -> u64 {
            self.tables[&t][k]
        }
        fn set_word(&mut self, t: Table, k: usize, v: u64) {
            self.tables.get_mut(&t).unwrap()[k] = v;
        }
        fn table_capacity(&self, _: Table) -> usize {
            self.table_cap.unwrap_or(usize::MAX)
        }
        fn reset_table(&mut self, t: Table, words: usize) -> usize {
            let words = self.table_cap.map_or(words, |cap| words.min(cap));
            self.tables.insert(t, vec![0; words]);
            words
        }
    }

    /// A shard of the policy over [`Vecs`]: keys to slots, as a cache keeps them.
    struct Shard {
        policy: Policy,
        store: Vecs,
        slots: HashMap<u64, u32>,
        free: Vec<u32>,
        /// Key hashes are `hash(key)`: with `shards`, only keys of one shard (the top bits of
        /// hash alike) come here, as in a sharded cache.
        shard_bits: u64,
    }

    fn hash(key: u64, shard_bits: u64) -> u64 {
        let h = mixed(key.wrapping_add(0x1234_5678));
        // The bits a cache picks the shard with (32..) are those of this shard.
        (h & !(0xff << 32)) | (shard_bits << 32)
    }

    impl Shard {
        fn new(capacity: u64) -> Self {
            Shard {
                policy: Policy::new(capacity),
                store: Vecs::default(),
                slots: HashMap::new(),
                free: Vec::new(),
                shard_bits: 0,
            }
        }

        fn len(&self) -> usize {
            self.slots.len()
        }

        fn contains(&self, key: u64) -> bool {
            self.slots.contains_key(&key)
        }

        fn slot(&self, key: u64) -> Option<u32> {
            self.slots.get(&key).copied()
        }

        /// Reads `key` as a cache does: a hit raises its counter; a miss stores it (weight 1),
        /// evicting first. Returns whether it hit and what left.
        fn access(&mut self, key: u64) -> (bool, Vec<Departure>) {
            if let Some(i) = self.slot(key) {
                let b = &mut self.store.bits[i as usize];
                b.hits = (b.hits + 1).min(HITS_MAX);
                return (true, Vec::new());
            }
            let h = hash(key, self.shard_bits);
            let mut plan = self.policy.plan(&mut self.store, h, 1, true);
            let mut departed = Vec::new();
            while self.len() as u64 + 1 > self.policy.capacity {
                match self.policy.choose(&mut self.store, Some(&mut plan)) {
                    Choice::Leave(i, why) => {
                        self.release(i);
                        departed.push(why);
                    }
                    Choice::Reject => {
                        departed.push(Departure::Evicted);
                        return (false, departed);
                    }
                    Choice::Nothing => panic!("nothing to evict in a full shard"),
                }
            }
            let i = match self.free.pop() {
                Some(i) => i,
                None => {
                    self.store.links.push((NIL, NIL));
                    self.store.bits.push(Bits::default());
                    self.store.hashes.push(0);
                    self.store.dead.push(false);
                    self.store.pinned.push(false);
                    self.store.links.len() as u32 - 1
                }
            };
            self.store.hashes[i as usize] = h;
            self.store.dead[i as usize] = false;
            self.store.pinned[i as usize] = false;
            self.slots.insert(key, i);
            self.policy.admit(&mut self.store, i, plan);
            (false, departed)
        }

        fn release(&mut self, i: u32) {
            let key = *self.slots.iter().find(|(_, &s)| s == i).unwrap().0;
            self.slots.remove(&key);
            self.free.push(i);
        }

        /// Evicts until empty; returns how many left.
        fn drain(&mut self) -> usize {
            let mut n = 0;
            while let Choice::Leave(i, _) = self.policy.choose(&mut self.store, None) {
                self.release(i);
                n += 1;
                assert!(n <= 1_000_000, "evicts forever");
            }
            n
        }
    }

    #[test]
    fn the_ghost_remembers_a_key_for_its_bound_and_says_how_long_ago_it_left() {
        let mut s = Vecs::default();
        let mut g = GhostState::default();
        let h = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for i in 0..100 {
            ghost_remember(&mut s, Table::Ghost, &mut g, h(i), 50);
        }
        assert_eq!(ghost_forget(&mut s, Table::Ghost, &g, h(99)), Some(1));
        assert_eq!(ghost_forget(&mut s, Table::Ghost, &g, h(60)), Some(40));
        assert_eq!(
            ghost_forget(&mut s, Table::Ghost, &g, h(60)),
            None,
            "forgotten once found"
        );
        assert_eq!(
            ghost_forget(&mut s, Table::Ghost, &g, h(10)),
            None,
            "left too long ago"
        );
        let kept = (50..100)
            .filter(|&i| ghost_forget(&mut s, Table::Ghost, &g, h(i)).is_some())
            .count();
        assert!(
            kept >= 40,
            "a few may be overwritten early, not many: {kept}"
        );
    }

    #[test]
    fn the_ghost_uses_its_whole_table_whatever_the_shard() {
        // The keys of one shard of 256 share 8 bits of their hash: all the table's words must
        // still be reachable, so that the ghost remembers as many keys as it is sized for.
        for shard_bits in [0u64, 0x5a, 0xff] {
            let mut s = Vecs::default();
            let mut g = GhostState::default();
            for k in 0..10_000 {
                ghost_remember(&mut s, Table::Ghost, &mut g, hash(k, shard_bits), 10_000);
            }
            let kept = (0..10_000)
                .filter(|&k| ghost_forget(&mut s, Table::Ghost, &g, hash(k, shard_bits)).is_some())
                .count();
            assert!(
                kept >= 8_000,
                "shard {shard_bits:#x}: {kept} of 10,000 remembered"
            );
        }
    }

    #[test]
    fn a_ghost_in_a_table_it_cannot_grow_remembers_what_fits() {
        let mut s = Vecs {
            table_cap: Some(64),
            ..Vecs::default()
        };
        let mut g = GhostState::default();
        for k in 0..1_000 {
            ghost_remember(&mut s, Table::Ghost, &mut g, hash(k, 0), 1_000);
        }
        assert_eq!(g.len, 128, "64 words, two entries each");
        let kept = (0..1_000)
            .filter(|&k| ghost_forget(&mut s, Table::Ghost, &g, hash(k, 0)).is_some())
            .count();
        assert!((64..=128).contains(&kept), "{kept}");
    }

    #[test]
    fn a_ghost_never_remembers_for_more_departures_than_its_stamps_count() {
        let mut s = Vecs::default();
        let mut g = GhostState::default();
        ghost_remember(&mut s, Table::Ghost, &mut g, hash(1, 0), u64::MAX);
        assert_eq!(g.bound, 1 << 19);
        g.seq += (1 << 19) - 1;
        assert_eq!(
            ghost_forget(&mut s, Table::Ghost, &g, hash(1, 0)),
            Some(1 << 19)
        );
        ghost_remember(&mut s, Table::Ghost, &mut g, hash(2, 0), u64::MAX);
        g.seq += 1 << 19;
        assert_eq!(ghost_forget(&mut s, Table::Ghost, &g, hash(2, 0)), None);
    }

    #[test]
    fn the_sketch_counts_and_forgets() {
        let mut p = Policy::new(100);
        let mut s = Vecs::default();
        p.ensure_sketch(&mut s, None);
        for _ in 0..5 {
            p.sketch_add(&mut s, 42, 1);
        }
        p.sketch_add(&mut s, 7, 3);
        assert_eq!(p.sketch_estimate(&s, 42), 5);
        assert_eq!(p.sketch_estimate(&s, 7), 3);
        assert_eq!(p.sketch_estimate(&s, 1_000), 0);
        for k in 0..1_000u64 {
            p.sketch_add(&mut s, mixed(k) | 1 << 63, 1);
        }
        assert!(p.sketch_estimate(&s, 42) < 5, "halved at least once");
    }

    #[test]
    fn a_loop_larger_than_the_cache_keeps_a_stable_subset() {
        // Twice the cache, as lirs-loop at 500 entries: LRU and plain S3-FIFO get no hit at all.
        let mut s = Shard::new(100);
        let mut last_round = 0;
        for _ in 0..30 {
            last_round = (0..210).filter(|&k| s.access(k).0).count();
        }
        assert!(
            last_round >= 90,
            "{last_round} hits of 210 in the last round"
        );
        assert!(s.len() <= 100);
    }

    #[test]
    fn a_scan_of_one_hit_wonders_does_not_evict_the_working_set() {
        for shard_bits in [0, 0xa5] {
            let mut s = Shard::new(100);
            s.shard_bits = shard_bits;
            for _ in 0..5 {
                for k in 0..50 {
                    s.access(k);
                }
            }
            // 2,000 keys read once each, with the working set read on between them.
            for k in 1_000..3_000 {
                s.access(k);
                s.access(k % 50);
            }
            assert_eq!((0..50).filter(|&k| s.contains(k)).count(), 50);
        }
    }

    #[test]
    fn with_many_shards_each_shard_keeps_its_hit_ratio() {
        // A shard's keys share the hash bits that chose it; the policy must not care.
        let trace: Vec<u64> = (0..200_000u64)
            .map(|i| {
                let r = mixed(i) % 1_000;
                if r < 700 {
                    mixed(i ^ 0xdead) % 300
                } else {
                    300 + mixed(i) % 5_000
                }
            })
            .collect();
        let hit_ratio = |shard_bits: u64| {
            let mut s = Shard::new(500);
            s.shard_bits = shard_bits;
            trace.iter().filter(|&&k| s.access(k).0).count() as f64 / trace.len() as f64
        };
        let one = hit_ratio(0);
        for bits in [0x01, 0x3c, 0xff] {
            let other = hit_ratio(bits);
            assert!(
                (one - other).abs() < 0.01,
                "{one:.3} vs {other:.3} in shard {bits:#x}"
            );
        }
    }

    #[test]
    fn dead_entries_go_first() {
        let mut s = Shard::new(100);
        // Hot, long-lived entries in the main queue, then short-lived ones.
        for _ in 0..3 {
            for k in 0..60 {
                s.access(k);
            }
        }
        for k in 100..140 {
            s.access(k);
        }
        for k in 100..140 {
            let i = s.slot(k).unwrap();
            s.store.dead[i as usize] = true;
        }
        let mut departures = Vec::new();
        for k in 200..240 {
            departures.extend(s.access(k).1);
        }
        assert_eq!(departures.len(), 40);
        assert!(departures.iter().all(|&d| d == Departure::Expired));
        assert!((0..60).all(|k| s.contains(k)));
    }

    #[test]
    fn pinned_entries_are_passed_over_but_never_overfill_the_shard() {
        let mut s = Shard::new(10);
        for k in 0..10 {
            s.access(k);
        }
        let pin = |s: &mut Shard, k: u64| {
            if let Some(i) = s.slot(k) {
                s.store.pinned[i as usize] = true;
            }
        };
        pin(&mut s, 3);
        for k in 100..200 {
            s.access(k);
            assert!(s.len() <= 10);
        }
        assert!(s.contains(3), "the pinned entry stays");
        // Every entry pinned: the shard still keeps to its capacity.
        for k in 1_000..1_100 {
            for held in s.slots.keys().copied().collect::<Vec<_>>() {
                pin(&mut s, held);
            }
            s.access(k);
            assert!(s.len() <= 10);
        }
    }

    #[test]
    fn eviction_ends_when_the_queues_are_empty() {
        let mut s = Shard::new(1_000);
        // Some entries read (they reach the main queue), most not.
        for k in 0..1_000 {
            s.access(k);
            if k % 3 == 0 {
                s.access(k);
                s.access(k);
            }
        }
        let resident = s.len();
        assert_eq!(s.drain(), resident, "every entry, then none");
        assert_eq!((s.policy.small.head, s.policy.main.head), (NIL, NIL));
        assert_eq!(s.policy.small.weight + s.policy.main.weight, 0);
        assert_eq!(s.policy.choose(&mut s.store, None), Choice::Nothing);
    }

    #[test]
    fn the_small_queue_stays_within_its_bounds() {
        let mut s = Shard::new(1_000);
        let (min, max) = s.policy.small_bounds();
        assert_eq!((min, max), (10, 250));
        // The target within its bounds; the queue, once the shard is full, never above the
        // target but for the entry just stored, or shrinking towards a target that fell.
        let mut last: Option<u64> = None;
        let mut check = |s: &Shard| {
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
            s.access(k);
            let gap = 50 * (1 + k % 6);
            if k >= gap {
                s.access(k - gap);
            }
            check(&s);
        }
        assert_eq!(s.policy.small_target, max);
        // Keys read thrice (they reach the main queue), read again just after the main queue
        // evicted them: it shrinks to its minimum.
        for i in 0..5_000 {
            let k = 1_000_000 + i;
            for _ in 0..3 {
                s.access(k);
            }
            if i >= 1_000 {
                s.access(k - 1_000);
            }
            check(&s);
        }
        assert_eq!(s.policy.small_target, min);
    }

    #[test]
    fn a_damaged_store_ends_every_walk() {
        let mut s = Shard::new(100);
        for k in 0..100 {
            s.access(k);
            s.access(k);
        }
        // Every link points back at the head: the walks would never end.
        for l in s.store.links.iter_mut() {
            *l = (0, 0);
        }
        for _ in 0..10 {
            let _ = s.policy.choose(&mut s.store, None);
        }
    }

    #[test]
    fn the_largest_capacity_does_not_overflow() {
        let p = Policy::new(u64::MAX);
        assert_eq!(p.small_bounds(), (u64::MAX / 100, u64::MAX / 4));
    }
}
