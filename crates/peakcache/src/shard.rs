//! One shard of the store: a hash table of nodes with their lifetimes and tags, bounded by
//! weight. Single-threaded: the cache puts each shard behind its own lock.
//!
//! Eviction is `policy.rs`'s, over the nodes' links and bits kept here ([`Links`], the
//! [`Store`] of the shard); the lifecycle's decisions are `lifecycle.rs`'s, whose per-key
//! [`Control`] records are kept here beside the nodes.

use crate::clock::millis_to_nanos;
use crate::flight::Flight;
use crate::key::{KeyBytes, KeyHasher, Probe};
use crate::lifecycle::{Control, Served};
use crate::policy::{Bits, Choice, Departure, Policy, Queue, Store, Table, HITS_MAX, NIL};
use crate::slab::Slab;
use crate::tags::TagSet;
use ahash::RandomState;
use hashbrown::HashTable;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
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

// The node's policy byte: hits since the policy last looked (bits 0-1, raised by `touch`), the
// queue (bits 2-3), the CLOCK credit (bits 4-5), and whether the key is being fetched (bit 6).
const HITS_MASK: u8 = 0b11;
const QUEUE_SHIFT: u8 = 2;
const CREDIT_SHIFT: u8 = 4;
const PINNED: u8 = 1 << 6;

/// A node's place in the eviction policy: its queue neighbours and its policy byte.
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

    /// Records an access. Safe under a shared lock; writes only while the counter is below its
    /// cap, so a hot entry causes no writes at all.
    #[inline]
    pub(crate) fn touch(&self) {
        let m = self.meta.load(Ordering::Relaxed);
        if m & HITS_MASK < HITS_MAX {
            // A lost update between two readers only loses one count: harmless for the policy.
            self.meta.store(m + 1, Ordering::Relaxed);
        }
    }

    fn bits(&self) -> Bits {
        let m = self.meta.load(Ordering::Relaxed);
        Bits {
            queue: match (m >> QUEUE_SHIFT) & 0b11 {
                1 => Queue::Small,
                2 => Queue::Main,
                3 => Queue::Other,
                _ => Queue::None,
            },
            hits: m & HITS_MASK,
            credit: (m >> CREDIT_SHIFT) & 0b11,
        }
    }

    /// Sets the policy's bits, keeping the pin. Only under the write lock.
    fn set_bits(&self, b: Bits) {
        let queue = match b.queue {
            Queue::None => 0,
            Queue::Small => 1,
            Queue::Main => 2,
            Queue::Other => 3,
        };
        let pinned = self.meta.load(Ordering::Relaxed) & PINNED;
        let m = pinned | (b.credit.min(3) << CREDIT_SHIFT) | (queue << QUEUE_SHIFT);
        self.meta.store(m | b.hits.min(HITS_MAX), Ordering::Relaxed);
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

    /// How the entry is served at `now`; `None` once past both windows (dead: never served,
    /// evicted first).
    pub(crate) fn standing(&self, now: u64) -> Option<Served> {
        if now < self.fresh_until() {
            Some(Served::Fresh)
        } else if now < self.revalidate_until() {
            Some(Served::Stale)
        } else if now < self.error_until() {
            Some(Served::StaleIfError)
        } else {
            None
        }
    }

    /// Makes the entry, stored at `now`, `age` nanoseconds old: stored `age` before `now`, or,
    /// when `now` is less than `age` (the clock started since), stored at zero with every window
    /// shortened by the difference, so that each of its instants is where it would have been.
    pub(crate) fn backdate(&mut self, now: u64, age: u64) {
        self.stored_at = now.saturating_sub(age);
        let early = age.saturating_sub(now);
        if early == 0 {
            return;
        }
        let ttl = millis_to_nanos(self.ttl_ms);
        let past_fresh = early.saturating_sub(ttl);
        let shorten = |ms: u32, by: u64| {
            u32::try_from(millis_to_nanos(ms).saturating_sub(by) / 1_000_000).unwrap_or(u32::MAX)
        };
        self.ttl_ms = shorten(self.ttl_ms, early);
        self.swr_ms = shorten(self.swr_ms, past_fresh);
        self.sie_ms = shorten(self.sie_ms, past_fresh);
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

/// The index of `key`'s node in `table`.
#[inline]
fn find_in<V>(
    table: &HashTable<u32>,
    nodes: &Slab<V>,
    hash: u64,
    probe: &Probe<'_>,
) -> Option<u32> {
    table
        .find(hash, |&i| nodes.get(i).key.matches(probe))
        .copied()
}

/// Whether `key` has an entry that can still be served at `now` (it is not past its windows).
fn servable<V>(
    table: &HashTable<u32>,
    nodes: &Slab<V>,
    hasher: &KeyHasher,
    key: &[u8],
    now: u64,
) -> bool {
    let probe = Probe::new(key);
    find_in(table, nodes, hasher.hash(&probe), &probe)
        .is_some_and(|i| nodes.get(i).standing(now).is_some())
}

/// The policy's tables, allocated as the policy asks.
#[derive(Default)]
struct Tables([Vec<u64>; 3]);

impl Tables {
    fn index(t: Table) -> usize {
        match t {
            Table::Ghost => 0,
            Table::MainGhost => 1,
            Table::Sketch => 2,
        }
    }
}

/// The shard's nodes as the eviction policy sees them, at an instant.
struct Nodes<'a, V> {
    slab: &'a mut Slab<V>,
    tables: &'a mut Tables,
    hasher: &'a KeyHasher,
    weigher: &'a Weigher<V>,
    now: u64,
    frozen: bool,
}

impl<V> Store for Nodes<'_, V> {
    fn links(&self, i: u32) -> (u32, u32) {
        let l = &self.slab.get(i).links;
        (l.prev, l.next)
    }

    fn set_prev(&mut self, i: u32, prev: u32) {
        self.slab.get_mut(i).links.prev = prev;
    }

    fn set_next(&mut self, i: u32, next: u32) {
        self.slab.get_mut(i).links.next = next;
    }

    fn bits(&self, i: u32) -> Bits {
        self.slab.get(i).links.bits()
    }

    fn set_bits(&mut self, i: u32, bits: Bits) {
        self.slab.get(i).links.set_bits(bits);
    }

    fn weight(&self, i: u32) -> u64 {
        let n = self.slab.get(i);
        (self.weigher)(&n.key, &n.value)
    }

    fn key_hash(&self, i: u32) -> u64 {
        self.hasher.hash_key(&self.slab.get(i).key)
    }

    fn dead(&self, i: u32) -> bool {
        !self.frozen && self.slab.get(i).standing(self.now).is_none()
    }

    fn pinned(&self, i: u32) -> bool {
        self.slab.get(i).links.pinned()
    }

    fn word(&self, t: Table, k: usize) -> u64 {
        self.tables.0[Tables::index(t)][k]
    }

    fn set_word(&mut self, t: Table, k: usize, v: u64) {
        self.tables.0[Tables::index(t)][k] = v;
    }

    fn table_capacity(&self, _: Table) -> usize {
        usize::MAX
    }

    fn reset_table(&mut self, t: Table, words: usize) -> usize {
        let table = &mut self.tables.0[Tables::index(t)];
        *table = vec![0; words];
        words
    }
}

/// The shard itself.
pub(crate) struct Shard<V> {
    table: HashTable<u32>,
    nodes: Slab<V>,
    policy: Policy,
    tables: Tables,
    controls: HashMap<Box<[u8]>, Control<V>, RandomState>,
    controls_prune_at: usize,
    hasher: KeyHasher,
    pub(crate) weight: u64,
    pub(crate) capacity: u64,
    /// Whether the cache is frozen: every stored entry is served, so none is dead to eviction.
    pub(crate) frozen: bool,
}

impl<V> Shard<V> {
    pub(crate) fn new(capacity: u64, hasher: KeyHasher) -> Self {
        Shard {
            table: HashTable::new(),
            nodes: Slab::new(),
            policy: Policy::new(capacity),
            tables: Tables::default(),
            controls: HashMap::default(),
            controls_prune_at: 64,
            hasher,
            weight: 0,
            capacity,
            frozen: false,
        }
    }

    /// The policy, and the nodes as it sees them at `now`.
    fn policy<'a>(
        &'a mut self,
        weigher: &'a Weigher<V>,
        now: u64,
    ) -> (&'a mut Policy, Nodes<'a, V>) {
        (
            &mut self.policy,
            Nodes {
                slab: &mut self.nodes,
                tables: &mut self.tables,
                hasher: &self.hasher,
                weigher,
                now,
                frozen: self.frozen,
            },
        )
    }

    /// Entries stored.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Every node stored.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = &Node<V>> {
        self.table.iter().map(|&i| self.nodes.get(i))
    }

    /// The index of `key`'s node.
    pub(crate) fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        self.find_probe(hash, &Probe::new(key))
    }

    /// The index of the node of the key `probe` was made of.
    #[inline]
    pub(crate) fn find_probe(&self, hash: u64, probe: &Probe<'_>) -> Option<u32> {
        find_in(&self.table, &self.nodes, hash, probe)
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

    /// Stores `node` (its key must not be present), evicting first until it fits; the policy
    /// may turn it away instead, when it would be evicted as soon as stored (counted as an
    /// eviction). Pushes the departures it caused. The caller has checked that `weight` fits
    /// the object limit.
    pub(crate) fn insert_new(
        &mut self,
        hash: u64,
        mut node: Node<V>,
        weight: u64,
        weigher: &Weigher<V>,
        now: u64,
        departed: &mut Vec<Departure>,
    ) {
        let mut plan = {
            let (policy, mut nodes) = self.policy(weigher, now);
            policy.plan(&mut nodes, hash, weight, true)
        };
        if !self.make_room(weight, Some(&mut plan), weigher, now, departed) {
            departed.push(Departure::Evicted);
            return;
        }
        node.links = Links::new();
        let in_flight = self
            .controls
            .get(&*node.key)
            .is_some_and(|c| c.flight.is_some());
        node.links.pin(in_flight);
        let idx = self.nodes.insert(node);
        let (nodes, hasher) = (&self.nodes, &self.hasher);
        self.table
            .insert_unique(hash, idx, |&i| hasher.hash_key(&nodes.get(i).key));
        self.weight += weight;
        let (policy, mut nodes) = self.policy(weigher, now);
        policy.admit(&mut nodes, idx, plan);
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
        let (policy, mut nodes) = self.policy(weigher, now);
        policy.reweigh(&mut nodes, idx, old_weight, weight);
        self.make_room(0, None, weigher, now, departed);
    }

    /// Removes the node at `idx` and returns it.
    pub(crate) fn remove(&mut self, idx: u32, hash: u64, weigher: &Weigher<V>) -> Node<V> {
        let weight = {
            let n = self.node(idx);
            weigher(&n.key, &n.value)
        };
        let (policy, mut nodes) = self.policy(weigher, 0);
        policy.remove(&mut nodes, idx, weight);
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

    /// Evicts until `extra` more weight fits the capacity. With the `plan` of an entry being
    /// stored, returns false if the policy turned that entry away.
    fn make_room(
        &mut self,
        extra: u64,
        mut plan: Option<&mut crate::policy::Plan>,
        weigher: &Weigher<V>,
        now: u64,
        departed: &mut Vec<Departure>,
    ) -> bool {
        while self.weight.saturating_add(extra) > self.capacity {
            let choice = {
                let (policy, mut nodes) = self.policy(weigher, now);
                policy.choose(&mut nodes, plan.as_deref_mut())
            };
            match choice {
                Choice::Leave(idx, departure) => {
                    let n = self.node(idx);
                    let (weight, hash) = (weigher(&n.key, &n.value), self.hasher.hash_key(&n.key));
                    drop(self.unindex(idx, hash, weight));
                    departed.push(departure);
                }
                Choice::Reject => return false,
                Choice::Nothing => break,
            }
        }
        true
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
        self.policy = Policy::new(self.capacity);
        self.tables = Tables::default();
        self.weight = 0;
        self.controls.retain(|_, c| c.flight.is_some());
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::millis_to_nanos;

    const SEC_MS: u32 = 1_000;

    fn hasher() -> KeyHasher {
        KeyHasher::new(Some(1))
    }

    fn node(key: &[u8], ttl_ms: u32, sie_ms: u32) -> Node<u64> {
        Node {
            key: KeyBytes::new(key),
            value: key.len() as u64,
            stored_at: 0,
            ttl_ms,
            swr_ms: 0,
            sie_ms,
            tags: None,
            links: Links::new(),
        }
    }

    /// Every entry weighs its value.
    fn weigher() -> Weigher<u64> {
        Arc::new(|_: &[u8], v: &u64| *v)
    }

    fn put(s: &mut Shard<u64>, key: &[u8], value: u64) -> Vec<Departure> {
        let mut departed = Vec::new();
        let mut n = node(key, SEC_MS, 0);
        n.value = value;
        let hash = hasher().hash_key(key);
        match s.find(hash, key) {
            Some(i) => s.replace(i, n, value, &weigher(), 0, &mut departed),
            None => s.insert_new(hash, n, value, &weigher(), 0, &mut departed),
        }
        departed
    }

    #[test]
    fn weights_add_up_through_insert_replace_and_remove() {
        let mut s = Shard::new(100, hasher());
        put(&mut s, b"a", 10);
        put(&mut s, b"b", 20);
        assert_eq!((s.len(), s.weight), (2, 30));
        put(&mut s, b"a", 15);
        assert_eq!((s.len(), s.weight), (2, 35));
        let hash = hasher().hash_key(b"b");
        let i = s.find(hash, b"b").unwrap();
        assert_eq!(s.remove(i, hash, &weigher()).value, 20);
        assert_eq!((s.len(), s.weight), (1, 15));
        assert!(s.find(hash, b"b").is_none());
    }

    #[test]
    fn the_shard_evicts_until_it_fits_its_capacity() {
        let mut s = Shard::new(100, hasher());
        let mut departed = 0;
        for k in 0..50u32 {
            departed += put(&mut s, &k.to_be_bytes(), 10).len();
            assert!(s.weight <= 100);
        }
        assert_eq!((s.len(), departed), (10, 40));
    }

    #[test]
    fn idle_control_records_are_pruned_and_busy_ones_kept() {
        let mut s = Shard::new(1_000, hasher());
        let now = millis_to_nanos(SEC_MS);
        // A failed key whose entry is still servable (stale-if-error), and one whose is not.
        for (key, sie) in [(&b"servable"[..], 60 * SEC_MS), (&b"dead"[..], 0)] {
            let mut departed = Vec::new();
            let hash = hasher().hash_key(key);
            s.insert_new(hash, node(key, 1, sie), 1, &weigher(), 0, &mut departed);
            s.control_mut(key, 0).record.failures = 1;
        }
        s.control_mut(b"flying", 0).flight = Some(Arc::new(Flight::new(0, u64::MAX, 0)));
        s.control_mut(b"passing", 0).record.pass_until = u64::MAX;
        for k in 0..100u32 {
            s.control_mut(&k.to_be_bytes(), now);
        }
        assert!(s.control(b"servable").is_some());
        assert!(s.control(b"flying").is_some());
        assert!(s.control(b"passing").is_some());
        assert!(s.control(b"dead").is_none());
        assert!(s.control(&0u32.to_be_bytes()).is_none(), "idle ones pruned");
        s.tidy_control(b"servable", now);
        assert!(s.control(b"servable").is_some());
    }

    #[test]
    fn a_flight_pins_its_key_entry_until_it_ends() {
        let mut s = Shard::new(100, hasher());
        put(&mut s, b"k", 1);
        let hash = hasher().hash_key(b"k");
        let i = s.find(hash, b"k").unwrap();
        s.begin_flight(b"k", hash, Arc::new(Flight::new(0, 10, 0)), 0);
        assert!(s.node(i).links.pinned());
        s.end_flight(b"k", hash);
        assert!(!s.node(i).links.pinned());
        // An entry stored while its key is fetched is pinned from the start.
        s.begin_flight(
            b"new",
            hasher().hash_key(b"new"),
            Arc::new(Flight::new(0, 10, 0)),
            0,
        );
        put(&mut s, b"new", 1);
        let j = s.find(hasher().hash_key(b"new"), b"new").unwrap();
        assert!(s.node(j).links.pinned());
    }

    #[test]
    fn clear_keeps_only_the_flights_in_progress() {
        let mut s = Shard::new(100, hasher());
        put(&mut s, b"a", 10);
        s.control_mut(b"a", 0).record.failures = 3;
        s.control_mut(b"b", 0).flight = Some(Arc::new(Flight::new(0, 10, 0)));
        assert_eq!(s.clear(), 1);
        assert_eq!((s.len(), s.weight), (0, 0));
        assert!(s.control(b"a").is_none() && s.control(b"b").is_some());
        let mut flights = 0;
        s.for_each_flight(|_| flights += 1);
        assert_eq!(flights, 1);
    }

    #[test]
    fn an_entry_stands_fresh_then_stale_then_stale_if_error_then_dead() {
        let n = Node {
            swr_ms: SEC_MS,
            ..node(b"k", SEC_MS, 2 * SEC_MS)
        };
        let at = |ms: u32| n.standing(millis_to_nanos(ms));
        assert_eq!(at(999), Some(Served::Fresh));
        assert_eq!(at(1_000), Some(Served::Stale));
        assert_eq!(at(2_000), Some(Served::StaleIfError));
        assert_eq!(at(3_000), None);
    }

    #[test]
    fn a_backdated_entry_keeps_its_instants_even_when_older_than_the_clock() {
        let at = |ms: u32| millis_to_nanos(ms);
        let mut n = Node {
            swr_ms: 5 * SEC_MS,
            ..node(b"k", 10 * SEC_MS, 20 * SEC_MS)
        };
        n.backdate(at(100 * SEC_MS), at(4 * SEC_MS));
        assert_eq!(n.stored_at, at(96 * SEC_MS));
        assert_eq!(
            (n.fresh_until(), n.revalidate_until(), n.error_until()),
            (at(106 * SEC_MS), at(111 * SEC_MS), at(126 * SEC_MS))
        );
        // 4 s old on a clock at 1 s: stored at 0, fresh until 7 s (= 1 - 4 + 10).
        let mut young = Node {
            swr_ms: 5 * SEC_MS,
            ..node(b"k", 10 * SEC_MS, 20 * SEC_MS)
        };
        young.backdate(at(SEC_MS), at(4 * SEC_MS));
        assert_eq!(young.stored_at, 0);
        assert_eq!(
            (
                young.fresh_until(),
                young.revalidate_until(),
                young.error_until()
            ),
            (at(7 * SEC_MS), at(12 * SEC_MS), at(27 * SEC_MS))
        );
        // 13 s old on a clock at 1 s: stale since -2 s, so swr until 3 s and sie until 18 s.
        let mut stale = Node {
            swr_ms: 5 * SEC_MS,
            ..node(b"k", 10 * SEC_MS, 20 * SEC_MS)
        };
        stale.backdate(at(SEC_MS), at(13 * SEC_MS));
        assert_eq!(
            (
                stale.fresh_until(),
                stale.revalidate_until(),
                stale.error_until()
            ),
            (0, at(3 * SEC_MS), at(18 * SEC_MS))
        );
        assert_eq!(stale.standing(at(SEC_MS)), Some(Served::Stale));
    }

    #[test]
    fn making_an_entry_stale_keeps_its_windows_counted_from_then() {
        let mut n = Node {
            swr_ms: SEC_MS,
            ..node(b"k", 10 * SEC_MS, 0)
        };
        n.make_stale_at(millis_to_nanos(2 * SEC_MS));
        assert_eq!(n.fresh_until(), millis_to_nanos(2 * SEC_MS));
        assert_eq!(n.revalidate_until(), millis_to_nanos(3 * SEC_MS));
        n.make_stale_at(millis_to_nanos(5 * SEC_MS));
        assert_eq!(
            n.fresh_until(),
            millis_to_nanos(2 * SEC_MS),
            "never fresher"
        );
    }
}
