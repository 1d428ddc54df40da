//! One shard of the store: a hash table of nodes with their lifetimes and tags, bounded by
//! weight. Single-threaded: the cache puts each shard behind its own lock.
//!
//! Eviction lives in `policy.rs`; the lifecycle (flights, back-off, pass-through) in `cache.rs`
//! through the per-key [`Control`] records kept here beside the nodes.

use crate::clock::millis_to_nanos;
use crate::flight::Flight;
use crate::key::{hash_key, KeyBytes};
use crate::policy::{Links, S3Fifo};
use crate::slab::Slab;
use crate::tags::TagSet;
use ahash::RandomState;
use hashbrown::HashTable;
use std::collections::HashMap;
use std::sync::Arc;

/// Computes what an entry costs against the capacity. Must answer the same for the same key and
/// value: the cache asks again when the entry leaves.
pub(crate) type Weigher<V> = Arc<dyn Fn(&[u8], &V) -> u64 + Send + Sync>;

/// A stored entry. Times are kept compactly: the store instant in nanoseconds of the cache's
/// clock, the three windows in milliseconds.
pub(crate) struct Node<V> {
    pub(crate) key: KeyBytes,
    pub(crate) value: V,
    pub(crate) stored_at: u64,
    pub(crate) ttl_ms: u32,
    pub(crate) swr_ms: u32,
    pub(crate) sie_ms: u32,
    pub(crate) tags: Option<Box<TagSet>>,
    pub(crate) links: Links,
}

/// Where an entry stands at a given instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Standing {
    Fresh,
    /// Inside the stale-while-revalidate window.
    Stale,
    /// Past stale-while-revalidate but inside stale-if-error.
    StaleIfError,
    /// Past both windows: never served, evicted first.
    Dead,
}

impl<V> Node<V> {
    pub(crate) fn fresh_until(&self) -> u64 {
        self.stored_at.saturating_add(millis_to_nanos(self.ttl_ms))
    }

    pub(crate) fn revalidate_until(&self) -> u64 {
        self.fresh_until()
            .saturating_add(millis_to_nanos(self.swr_ms))
    }

    pub(crate) fn error_until(&self) -> u64 {
        self.fresh_until()
            .saturating_add(millis_to_nanos(self.sie_ms))
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

    /// Makes the entry stale from `at` on (if it was fresh later than that), keeping its stale
    /// windows, which then count from `at`.
    pub(crate) fn make_stale_at(&mut self, at: u64) {
        if self.fresh_until() > at {
            let ttl_ns = at.saturating_sub(self.stored_at);
            self.ttl_ms = u32::try_from(ttl_ns / 1_000_000).unwrap_or(u32::MAX);
        }
    }
}

/// Lifecycle state of one key beyond its stored value: the fill or refresh in flight, the
/// back-off after failures, and pass-through after an uncacheable answer. Most keys have none.
pub(crate) struct Control<V> {
    pub(crate) flight: Option<Arc<Flight<V>>>,
    /// No new fetch of a key with a servable stale entry before this instant.
    pub(crate) retry_at: u64,
    /// Failures in a row, for the back-off's growth.
    pub(crate) failures: u32,
    /// Lookups pass through (fetch uncached, no waiting) until this instant.
    pub(crate) pass_until: u64,
}

impl<V> Default for Control<V> {
    fn default() -> Self {
        Control {
            flight: None,
            retry_at: 0,
            failures: 0,
            pass_until: 0,
        }
    }
}

impl<V> Control<V> {
    /// Whether the record holds nothing a later lookup needs. Failures are remembered while the
    /// key's entry can still be served stale (`stale_servable`): forgotten, the next fetch would
    /// make every caller wait on an origin known to fail, and the back-off would start over.
    fn is_idle(&self, now: u64, stale_servable: impl FnOnce() -> bool) -> bool {
        self.flight.is_none()
            && self.retry_at <= now
            && self.pass_until <= now
            && (self.failures == 0 || !stale_servable())
    }
}

/// What made an entry leave the shard, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Departure {
    /// A live entry evicted for room.
    Evicted,
    /// A dead entry removed.
    Expired,
}

/// The index of `key`'s node in `table`.
#[inline]
fn find_in<V>(table: &HashTable<u32>, nodes: &Slab<V>, hash: u64, key: &[u8]) -> Option<u32> {
    table.find(hash, |&i| &*nodes.get(i).key == key).copied()
}

/// Whether `key` has an entry that can still be served at `now` (it is not past its windows).
fn servable<V>(
    table: &HashTable<u32>,
    nodes: &Slab<V>,
    hasher: &RandomState,
    key: &[u8],
    now: u64,
) -> bool {
    find_in(table, nodes, hash_key(hasher, key), key)
        .is_some_and(|i| nodes.get(i).standing(now) != Standing::Dead)
}

/// The shard itself.
pub(crate) struct Shard<V> {
    table: HashTable<u32>,
    nodes: Slab<V>,
    pub(crate) policy: S3Fifo,
    controls: HashMap<Box<[u8]>, Control<V>, RandomState>,
    controls_prune_at: usize,
    hasher: RandomState,
    pub(crate) weight: u64,
    pub(crate) capacity: u64,
    /// Whether the cache is frozen: every stored entry is served, so none is dead to eviction.
    pub(crate) frozen: bool,
}

impl<V> Shard<V> {
    pub(crate) fn new(capacity: u64, hasher: RandomState) -> Self {
        Shard {
            table: HashTable::new(),
            nodes: Slab::new(),
            policy: S3Fifo::new(capacity),
            controls: HashMap::default(),
            controls_prune_at: 64,
            hasher,
            weight: 0,
            capacity,
            frozen: false,
        }
    }

    /// Entries stored.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The index of `key`'s node.
    #[inline]
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        find_in(&self.table, &self.nodes, hash, key)
    }

    #[inline]
    pub(crate) fn node(&self, idx: u32) -> &Node<V> {
        self.nodes.get(idx)
    }

    pub(crate) fn node_mut(&mut self, idx: u32) -> &mut Node<V> {
        self.nodes.get_mut(idx)
    }

    pub(crate) fn control(&self, key: &[u8]) -> Option<&Control<V>> {
        self.controls.get(key)
    }

    /// The control record of `key`, created if missing.
    pub(crate) fn control_mut(&mut self, key: &[u8], now: u64) -> &mut Control<V> {
        if !self.controls.contains_key(key) {
            if self.controls.len() >= self.controls_prune_at {
                let (table, nodes, hasher) = (&self.table, &self.nodes, &self.hasher);
                self.controls
                    .retain(|k, c| !c.is_idle(now, || servable(table, nodes, hasher, k, now)));
                self.controls_prune_at = (self.controls.len() * 2).max(64);
            }
            self.controls.insert(key.into(), Control::default());
        }
        self.controls.get_mut(key).expect("inserted above")
    }

    /// Drops `key`'s control record if it holds nothing any more.
    pub(crate) fn tidy_control(&mut self, key: &[u8], now: u64) {
        let (table, nodes, hasher) = (&self.table, &self.nodes, &self.hasher);
        if self
            .controls
            .get(key)
            .is_some_and(|c| c.is_idle(now, || servable(table, nodes, hasher, key, now)))
        {
            self.controls.remove(key);
        }
    }

    /// Records `flight` as `key`'s fetch in progress. The key's entry, if stored, is kept from
    /// eviction until the flight ends: it is what a failed fetch serves (stale-if-error).
    pub(crate) fn begin_flight(&mut self, key: &[u8], hash: u64, flight: Arc<Flight<V>>, now: u64) {
        self.control_mut(key, now).flight = Some(flight);
        if let Some(i) = self.find(hash, key) {
            self.node(i).links.pin(true);
        }
    }

    /// Ends `key`'s fetch in progress, if any; its entry may be evicted again.
    pub(crate) fn end_flight(&mut self, key: &[u8], hash: u64) {
        if let Some(c) = self.controls.get_mut(key) {
            c.flight = None;
        }
        if let Some(i) = self.find(hash, key) {
            self.node(i).links.pin(false);
        }
    }

    /// Stores `node` (its key must not be present), then evicts until the shard fits. Returns the
    /// departures it caused. The caller has checked that `weight` fits the object limit.
    pub(crate) fn insert_new(
        &mut self,
        hash: u64,
        mut node: Node<V>,
        weight: u64,
        weigher: &Weigher<V>,
        now: u64,
        departed: &mut Vec<Departure>,
    ) {
        node.links = Links::new();
        let in_flight = self
            .controls
            .get(&*node.key)
            .is_some_and(|c| c.flight.is_some());
        node.links.pin(in_flight);
        let idx = self.nodes.insert(node);
        let (nodes, hasher) = (&self.nodes, &self.hasher);
        self.table
            .insert_unique(hash, idx, |&i| hash_key(hasher, &nodes.get(i).key));
        self.weight += weight;
        self.policy.admit(&mut self.nodes, idx, weight, hash);
        self.make_room(weigher, now, departed);
    }

    /// Replaces the value and lifetimes of the node at `idx`, keeping its place in the policy
    /// (a replacement counts as an access), then evicts until the shard fits.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn replace(
        &mut self,
        idx: u32,
        fresh: Node<V>,
        weight: u64,
        weigher: &Weigher<V>,
        now: u64,
        departed: &mut Vec<Departure>,
    ) {
        let node = self.node_mut(idx);
        let old_weight = weigher(&node.key, &node.value);
        node.value = fresh.value;
        node.stored_at = fresh.stored_at;
        node.ttl_ms = fresh.ttl_ms;
        node.swr_ms = fresh.swr_ms;
        node.sie_ms = fresh.sie_ms;
        node.tags = fresh.tags;
        node.links.touch();
        self.weight = self.weight.saturating_sub(old_weight) + weight;
        self.policy.reweigh(&self.nodes, idx, old_weight, weight);
        self.make_room(weigher, now, departed);
    }

    /// Removes the node at `idx` and returns it.
    pub(crate) fn remove(&mut self, idx: u32, hash: u64, weigher: &Weigher<V>) -> Node<V> {
        let weight = {
            let n = self.node(idx);
            weigher(&n.key, &n.value)
        };
        self.policy.unlink(&mut self.nodes, idx, weight);
        self.unindex(idx, hash, weight)
    }

    /// Takes the node out of the table and the slab (it is already out of the policy).
    fn unindex(&mut self, idx: u32, hash: u64, weight: u64) -> Node<V> {
        if let Ok(entry) = self.table.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.weight = self.weight.saturating_sub(weight);
        self.nodes.remove(idx)
    }

    /// Evicts until the weight fits the capacity. While `frozen`, no entry counts as dead.
    fn make_room(&mut self, weigher: &Weigher<V>, now: u64, departed: &mut Vec<Departure>) {
        while self.weight > self.capacity {
            let hasher = &self.hasher;
            let hash_of = |k: &[u8]| hash_key(hasher, k);
            let Some((idx, weight, departure)) =
                self.policy
                    .evict(&mut self.nodes, weigher, &hash_of, now, self.frozen)
            else {
                break;
            };
            let hash = hash_key(&self.hasher, &self.node(idx).key);
            drop(self.unindex(idx, hash, weight));
            departed.push(departure);
        }
    }

    /// Calls `f` with every flight in progress.
    pub(crate) fn for_each_flight(&self, f: impl FnMut(&Flight<V>)) {
        self.controls
            .values()
            .filter_map(|c| c.flight.as_deref())
            .for_each(f);
    }

    /// Removes every node and every control record without a flight; returns how many nodes.
    pub(crate) fn clear(&mut self) -> usize {
        let n = self.table.len();
        self.table.clear();
        self.nodes = Slab::new();
        self.policy = S3Fifo::new(self.capacity);
        self.weight = 0;
        self.controls.retain(|_, c| c.flight.is_some());
        n
    }
}
