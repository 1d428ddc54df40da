//! The eviction policy: S3-FIFO (Yang et al., SOSP 2023), with dead entries going first.
//!
//! New entries enter a small FIFO queue (a tenth of the capacity); those read again before they
//! reach its head move to the main queue, the others leave and are remembered in a ghost list of
//! key hashes, so a key that comes back soon after enters the main queue directly. The main
//! queue is a CLOCK: an entry read since its last pass goes round again. One-hit wonders and
//! scans therefore pass through the small queue without displacing the working set.
//!
//! A hit only raises a two-bit counter in the entry (a relaxed atomic, written only while it is
//! below its cap), so reads need no exclusive lock and hot entries cause no writes at all.
//! Entries past every stale window are removed whenever the policy meets them, before any live
//! entry is evicted in their place.

use crate::shard::{Departure, Standing, Weigher};
use crate::sketch::Sketch;
use crate::slab::Slab;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};

/// No node.
pub(crate) const NIL: u32 = u32::MAX;

const FREQ_MASK: u8 = 0b011;
const FREQ_MAX: u8 = 3;
const IN_MAIN: u8 = 0b100;
const CREDIT_SHIFT: u8 = 3;
const CREDIT_MASK: u8 = 0b11 << CREDIT_SHIFT;

/// A node's place in the policy: its queue neighbours and its access counter.
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

    fn freq(&self) -> u8 {
        self.meta.load(Ordering::Relaxed) & FREQ_MASK
    }

    fn set(&self, freq: u8, in_main: bool) {
        self.meta
            .store(freq | if in_main { IN_MAIN } else { 0 }, Ordering::Relaxed);
    }

    fn credit(&self) -> u8 {
        (self.meta.load(Ordering::Relaxed) & CREDIT_MASK) >> CREDIT_SHIFT
    }

    /// Clears the hits and sets the credit, keeping the queue bit.
    fn set_credit(&self, credit: u8) {
        let m = self.meta.load(Ordering::Relaxed) & IN_MAIN;
        self.meta
            .store(m | (credit.min(3) << CREDIT_SHIFT), Ordering::Relaxed);
    }

    fn in_main(&self) -> bool {
        self.meta.load(Ordering::Relaxed) & IN_MAIN != 0
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
        self.weight += weight;
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

/// Hashes of keys recently evicted from the small queue, oldest first.
#[derive(Default)]
struct Ghost {
    members: HashSet<u64, ahash::RandomState>,
    order: VecDeque<u64>,
}

impl Ghost {
    fn remember(&mut self, hash: u64, bound: usize) {
        if self.members.insert(hash) {
            self.order.push_back(hash);
        }
        while self.order.len() > bound {
            if let Some(old) = self.order.pop_front() {
                self.members.remove(&old);
            }
        }
    }

    fn forget(&mut self, hash: u64) -> bool {
        self.members.remove(&hash)
    }
}

#[derive(Clone, Copy, Debug)]
struct Knobs {
    small_pct: u64,
    ghost_pct: u64,
    fill: bool,
    gate: bool,
    ghost_to_small: bool,
    promote: u8,
    per_entry: u64,
    sample: u64,
    rej_ghost: bool,
}

fn knobs() -> Knobs {
    static K: std::sync::OnceLock<Knobs> = std::sync::OnceLock::new();
    *K.get_or_init(|| {
        let g = |n: &str, d: u64| {
            std::env::var(n)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        let k = Knobs {
            small_pct: g("PC_SMALL", 10),
            ghost_pct: g("PC_GHOST", 100),
            fill: g("PC_FILL", 0) != 0,
            gate: g("PC_GATE", 0) != 0,
            ghost_to_small: g("PC_G2S", 0) != 0,
            promote: g("PC_PROMOTE", 1) as u8,
            per_entry: g("PC_SKETCH", 8),
            sample: g("PC_SAMPLE", 10),
            rej_ghost: g("PC_REJGHOST", 1) != 0,
        };
        if std::env::var("PC_DEBUG").is_ok() {
            eprintln!("{k:?}");
        }
        k
    })
}

enum Victim {
    Dead(u32, u64),
    Live(u32, u64, u64),
    None,
}

/// The policy state of one shard.
pub(crate) struct S3Fifo {
    small: Queue,
    main: Queue,
    ghost: Ghost,
    small_target: u64,
    capacity: u64,
    sketch: Option<Sketch>,
    k: Knobs,
}

impl S3Fifo {
    pub(crate) fn new(capacity: u64) -> Self {
        let k = knobs();
        S3Fifo {
            small: Queue::default(),
            main: Queue::default(),
            ghost: Ghost::default(),
            small_target: (capacity * k.small_pct / 100).max(1),
            capacity,
            sketch: None,
            k,
        }
    }

    fn entries(&self) -> u64 {
        self.small.len + self.main.len
    }

    /// Places a newly stored node: in the main queue if its key was evicted recently, else in
    /// the small queue.
    pub(crate) fn admit<V>(&mut self, nodes: &mut Slab<V>, i: u32, weight: u64, hash: u64) {
        if let Some(s) = self.sketch.as_mut() {
            s.add(hash, 1);
        }
        if self.ghost.forget(hash) {
            if self.k.ghost_to_small {
                links(nodes, i).set(self.k.promote.min(3), false);
                self.small.push(nodes, i, weight);
            } else {
                links(nodes, i).set(0, true);
                self.main.push(nodes, i, weight);
            }
        } else {
            links(nodes, i).set(0, false);
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

    fn ensure_sketch(&mut self) {
        let entries = self.entries();
        let stale = match &self.sketch {
            None => true,
            Some(s) => entries > s.sized_for * 2,
        };
        if stale {
            self.sketch = Some(Sketch::new(entries, self.k.per_entry, self.k.sample));
        }
    }

    fn estimate(&self, hash: u64) -> u8 {
        self.sketch.as_ref().map_or(0, |s| s.estimate(hash))
    }

    fn harvest(&mut self, hash: u64, hits: u8) {
        if hits > 0 {
            if let Some(s) = self.sketch.as_mut() {
                s.add(hash, hits);
            }
        }
    }

    /// Runs the main CLOCK until it finds a node without credit (left at the head).
    fn main_victim<V>(
        &mut self,
        nodes: &mut Slab<V>,
        weigher: &Weigher<V>,
        hash: &dyn Fn(&[u8]) -> u64,
        now: u64,
    ) -> Victim {
        loop {
            let Some(i) = self.main.head else {
                return Victim::None;
            };
            let n = nodes.get(i);
            if n.standing(now) == Standing::Dead {
                return Victim::Dead(i, weigher(&n.key, &n.value));
            }
            let hits = n.links.freq();
            let mut credit = n.links.credit();
            let h = hash(&n.key);
            if hits > 0 {
                self.harvest(h, hits);
                credit = (credit + hits).min(3);
            }
            if credit == 0 {
                let n = nodes.get(i);
                n.links.set_credit(0);
                return Victim::Live(i, weigher(&n.key, &n.value), h);
            }
            links(nodes, i).set_credit(credit - 1);
            self.main.head = Some(links(nodes, i).next);
        }
    }

    /// Chooses the next node to leave and takes it out of its queue: returns its index, its
    /// weight and why it leaves; `None` when both queues are empty.
    pub(crate) fn evict<V>(
        &mut self,
        nodes: &mut Slab<V>,
        weigher: &Weigher<V>,
        hash: &dyn Fn(&[u8]) -> u64,
        now: u64,
    ) -> Option<(u32, u64, Departure)> {
        if self.k.gate {
            self.ensure_sketch();
        }
        let main_cap = self.capacity.saturating_sub(self.small_target);
        loop {
            let from_small = self.small.weight > self.small_target || self.main.head.is_none();
            if !from_small {
                return match self.main_victim(nodes, weigher, hash, now) {
                    Victim::Dead(v, w) => {
                        self.main.unlink(nodes, v, w);
                        Some((v, w, Departure::Expired))
                    }
                    Victim::Live(v, w, _) => {
                        self.main.unlink(nodes, v, w);
                        Some((v, w, Departure::Evicted))
                    }
                    Victim::None => None,
                };
            }
            let i = self.small.head?;
            let (weight, dead, freq) = {
                let n = nodes.get(i);
                (
                    weigher(&n.key, &n.value),
                    n.standing(now) == Standing::Dead,
                    n.links.freq(),
                )
            };
            if dead {
                self.small.unlink(nodes, i, weight);
                return Some((i, weight, Departure::Expired));
            }
            let key_hash = hash(&nodes.get(i).key);
            let room = self.main.weight + weight <= main_cap;
            if freq >= self.k.promote || (self.k.fill && room) {
                if !self.k.gate || room {
                    self.small.unlink(nodes, i, weight);
                    self.harvest(key_hash, freq);
                    links(nodes, i).set(0, true);
                    self.main.push(nodes, i, weight);
                    continue;
                }
                match self.main_victim(nodes, weigher, hash, now) {
                    Victim::Dead(v, w) => {
                        self.main.unlink(nodes, v, w);
                        return Some((v, w, Departure::Expired));
                    }
                    Victim::Live(v, w, vh) => {
                        self.small.unlink(nodes, i, weight);
                        self.harvest(key_hash, freq);
                        if self.estimate(key_hash) > self.estimate(vh) {
                            self.main.unlink(nodes, v, w);
                            links(nodes, i).set(0, true);
                            self.main.push(nodes, i, weight);
                            return Some((v, w, Departure::Evicted));
                        }
                        if self.k.rej_ghost {
                            let bound = self.entries() * self.k.ghost_pct / 100;
                            self.ghost.remember(key_hash, bound.max(1) as usize);
                        }
                        return Some((i, weight, Departure::Evicted));
                    }
                    Victim::None => {
                        self.small.unlink(nodes, i, weight);
                        links(nodes, i).set(0, true);
                        self.main.push(nodes, i, weight);
                        continue;
                    }
                }
            }
            self.small.unlink(nodes, i, weight);
            let bound = self.entries() * self.k.ghost_pct / 100;
            self.ghost.remember(key_hash, bound.max(1) as usize);
            return Some((i, weight, Departure::Evicted));
        }
    }
}
