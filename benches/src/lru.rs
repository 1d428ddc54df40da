//! A plain least-recently-used cache, written for obviousness rather than speed: the reference
//! the hit ratios of the real caches are read against.
//!
//! Every access stamps the entry with the next value of a counter; the recency order is a
//! `BTreeMap` from stamp to key, so the least recently used entry is always its first element.

use std::collections::{BTreeMap, HashMap};

/// An LRU cache of `u64` keys bounded by the total weight of its entries.
///
/// With every weight 1 it is an LRU bounded by entry count. Each insert is admitted (unless the
/// single entry outweighs the whole capacity), evicting least recently used entries until the
/// total weight fits again.
#[derive(Debug, Clone)]
pub struct Lru {
    capacity: u64,
    used: u64,
    clock: u64,
    /// key → (stamp of its last access, weight)
    entries: HashMap<u64, (u64, u64)>,
    /// stamp of last access → key; the first element is the least recently used.
    order: BTreeMap<u64, u64>,
}

impl Lru {
    /// An empty cache holding at most `capacity` units of weight.
    pub fn new(capacity: u64) -> Self {
        Lru {
            capacity,
            used: 0,
            clock: 0,
            entries: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    /// Looks `key` up; on a hit marks it most recently used and returns true.
    pub fn get(&mut self, key: u64) -> bool {
        let stamp = self.next_stamp();
        match self.entries.get_mut(&key) {
            Some((last, _)) => {
                self.order.remove(last);
                self.order.insert(stamp, key);
                *last = stamp;
                true
            }
            None => false,
        }
    }

    /// Stores `key` with `weight` as the most recently used entry (replacing any entry for the
    /// same key) and evicts least recently used entries until the total weight is within capacity.
    /// Returns false, storing nothing, when `weight` alone exceeds the capacity.
    pub fn insert(&mut self, key: u64, weight: u64) -> bool {
        self.remove(key);
        if weight > self.capacity {
            return false;
        }
        let stamp = self.next_stamp();
        self.entries.insert(key, (stamp, weight));
        self.order.insert(stamp, key);
        self.used += weight;
        while self.used > self.capacity {
            let (_, victim) = self.order.pop_first().expect("over capacity yet empty");
            let (_, w) = self.entries.remove(&victim).expect("ordered key missing");
            self.used -= w;
        }
        true
    }

    /// Removes `key`; returns true if it was present.
    pub fn remove(&mut self, key: u64) -> bool {
        match self.entries.remove(&key) {
            Some((stamp, weight)) => {
                self.order.remove(&stamp);
                self.used -= weight;
                true
            }
            None => false,
        }
    }

    /// Number of entries stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total weight of the entries stored.
    pub fn weight(&self) -> u64 {
        self.used
    }

    /// The capacity this cache was built with.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The keys from least to most recently used.
    pub fn keys_by_recency(&self) -> Vec<u64> {
        self.order.values().copied().collect()
    }

    fn next_stamp(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut lru = Lru::new(3);
        for k in [1, 2, 3] {
            assert!(lru.insert(k, 1));
        }
        assert!(lru.get(1)); // order now 2, 3, 1
        lru.insert(4, 1); // evicts 2
        assert_eq!(lru.keys_by_recency(), [3, 1, 4]);
        assert!(!lru.get(2));
        assert!(lru.get(3) && lru.get(1) && lru.get(4));
        assert_eq!(lru.len(), 3);
    }

    #[test]
    fn a_miss_does_not_change_the_order() {
        let mut lru = Lru::new(2);
        lru.insert(1, 1);
        lru.insert(2, 1);
        assert!(!lru.get(9));
        assert_eq!(lru.keys_by_recency(), [1, 2]);
    }

    #[test]
    fn weight_bounded_eviction_frees_enough_bytes() {
        let mut lru = Lru::new(100);
        lru.insert(1, 40);
        lru.insert(2, 30);
        lru.insert(3, 30);
        assert_eq!(lru.weight(), 100);
        lru.insert(4, 50); // must evict 1 (40) and 2 (30)
        assert_eq!(lru.keys_by_recency(), [3, 4]);
        assert_eq!(lru.weight(), 80);
    }

    #[test]
    fn oversized_entries_are_refused() {
        let mut lru = Lru::new(10);
        lru.insert(1, 5);
        assert!(!lru.insert(2, 11));
        assert_eq!(lru.keys_by_recency(), [1]);
        assert!(lru.insert(3, 10)); // exactly the capacity: fits alone
        assert_eq!(lru.keys_by_recency(), [3]);
    }

    #[test]
    fn reinsert_replaces_weight_and_refreshes() {
        let mut lru = Lru::new(10);
        lru.insert(1, 3);
        lru.insert(2, 3);
        lru.insert(1, 6);
        assert_eq!(lru.weight(), 9);
        assert_eq!(lru.keys_by_recency(), [2, 1]);
        assert!(lru.remove(2));
        assert!(!lru.remove(2));
        assert_eq!(lru.weight(), 6);
    }

    /// Cross-check against a second, even more naive LRU: a vector ordered by recency.
    #[test]
    fn matches_a_vector_model_on_a_pseudo_random_trace() {
        let capacity = 16;
        let mut lru = Lru::new(capacity);
        let mut model: Vec<u64> = Vec::new();
        let mut x: u64 = 12345;
        let (mut hits, mut model_hits) = (0, 0);
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let key = (x >> 33) % 40;
            if lru.get(key) {
                hits += 1;
            } else {
                lru.insert(key, 1);
            }
            if let Some(i) = model.iter().position(|&k| k == key) {
                model_hits += 1;
                model.remove(i);
            } else if model.len() as u64 == capacity {
                model.remove(0);
            }
            model.push(key);
            assert_eq!(lru.keys_by_recency(), model);
        }
        assert_eq!(hits, model_hits);
        assert!(hits > 0);
    }
}
