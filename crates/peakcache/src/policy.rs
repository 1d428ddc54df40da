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
use crate::slab::Slab;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU8, Ordering};

/// No node.
pub(crate) const NIL: u32 = u32::MAX;

const FREQ_MASK: u8 = 0b011;
const FREQ_MAX: u8 = 3;
const IN_MAIN: u8 = 0b100;

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

/// The policy state of one shard.
pub(crate) struct S3Fifo {
    small: Queue,
    main: Queue,
    ghost: Ghost,
    small_target: u64,
}

impl S3Fifo {
    pub(crate) fn new(capacity: u64) -> Self {
        S3Fifo {
            small: Queue::default(),
            main: Queue::default(),
            ghost: Ghost::default(),
            small_target: (capacity / 10).max(1),
        }
    }

    /// Places a newly stored node: in the main queue if its key was evicted recently, else in
    /// the small queue.
    pub(crate) fn admit<V>(&mut self, nodes: &mut Slab<V>, i: u32, weight: u64, hash: u64) {
        if self.ghost.forget(hash) {
            links(nodes, i).set(0, true);
            self.main.push(nodes, i, weight);
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

    /// Chooses the next node to leave and takes it out of its queue: returns its index, its
    /// weight and why it leaves; `None` when both queues are empty.
    pub(crate) fn evict<V>(
        &mut self,
        nodes: &mut Slab<V>,
        weigher: &Weigher<V>,
        hash: &dyn Fn(&[u8]) -> u64,
        now: u64,
    ) -> Option<(u32, u64, Departure)> {
        loop {
            let from_small = self.small.weight > self.small_target || self.main.head.is_none();
            let queue = if from_small {
                &mut self.small
            } else {
                &mut self.main
            };
            let i = queue.head?;
            let (weight, dead, freq) = {
                let n = nodes.get(i);
                (
                    weigher(&n.key, &n.value),
                    n.standing(now) == Standing::Dead,
                    n.links.freq(),
                )
            };
            queue.unlink(nodes, i, weight);
            if dead {
                return Some((i, weight, Departure::Expired));
            }
            if from_small {
                if freq >= 1 {
                    links(nodes, i).set(0, true);
                    self.main.push(nodes, i, weight);
                    continue;
                }
                let bound = (self.small.len + self.main.len) as usize;
                let key_hash = hash(&nodes.get(i).key);
                self.ghost.remember(key_hash, bound.max(1));
                return Some((i, weight, Departure::Evicted));
            }
            if freq >= 1 {
                links(nodes, i).set(freq - 1, true);
                self.main.push(nodes, i, weight);
                continue;
            }
            return Some((i, weight, Departure::Evicted));
        }
    }
}
