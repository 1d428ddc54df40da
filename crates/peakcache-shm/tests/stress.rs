//! Many threads on one shared cache: single flight holds, values are never torn or mixed up
//! under heavy eviction, and no check ever finds the region inconsistent.

use peakcache::{Freshness, PurgeMode};
use peakcache_shm::{Lookup, Resolved, ShmCache};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn threads_fill_each_key_exactly_once() {
    let cache = ShmCache::builder()
        .max_bytes(8 << 20)
        .shards(4)
        .anonymous()
        .unwrap();
    let threads = 8;
    let keys = 300u32;
    let fills = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (cache, fills, barrier) = (cache.clone(), fills.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for round in 0..2 {
                    for k in 0..keys {
                        let k = (k + t as u32 * 37 + round) % keys;
                        let key = k.to_le_bytes();
                        match cache.lookup(&key) {
                            Lookup::Fresh(h) => assert_eq!(&h.value()[..4], &key),
                            Lookup::Miss(f) => {
                                fills.fetch_add(1, Ordering::Relaxed);
                                std::thread::yield_now();
                                f.commit(&[key, key].concat(), Freshness::new(HOUR))
                                    .unwrap();
                            }
                            Lookup::Wait(w) => match w.wait(Duration::from_secs(10)) {
                                Resolved::Hit(h) => assert_eq!(&h.value()[..4], &key),
                                _ => panic!("waiter gets the value"),
                            },
                            _ => panic!("unexpected answer"),
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let s = cache.stats();
    assert_eq!(fills.load(Ordering::Relaxed), keys as u64);
    assert_eq!(s.fills_committed, keys as u64);
    assert_eq!(s.lookups(), threads as u64 * 2 * keys as u64);
    assert_eq!(cache.region_info().recoveries, 0);
}

/// The value stored for key `k`: `k`'s bytes repeated to a length that depends on `k`.
fn value_of(k: u32) -> Vec<u8> {
    k.to_le_bytes().repeat(8 + (k % 300) as usize)
}

#[test]
fn heavy_eviction_with_readers_purges_and_clears_never_tears_a_value() {
    // A small cache (256 KiB, 2 shards) and ~2 MiB of distinct values: constant eviction.
    let cache = ShmCache::builder()
        .max_bytes(256 << 10)
        .shards(2)
        .tag_slots(16)
        .anonymous()
        .unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..3u32 {
        let cache = cache.clone();
        handles.push(std::thread::spawn(move || {
            let mut x = t.wrapping_mul(2_654_435_761) | 1;
            for i in 0..30_000u32 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let k = x % 2000;
                let tag = format!("t{}", k % 40);
                let f = Freshness::new(Duration::from_millis((k % 5) as u64 * 10)).with_swr(HOUR);
                let _ = cache.insert_tagged(&k.to_le_bytes(), &value_of(k), f, &[tag.as_str()]);
                if i % 500 == 0 {
                    cache.purge_tag(
                        format!("t{}", i % 40),
                        if i % 1000 == 0 {
                            PurgeMode::Hard
                        } else {
                            PurgeMode::Soft
                        },
                    );
                }
                if t == 0 && i % 7000 == 0 {
                    cache.clear();
                }
            }
        }));
    }
    for _ in 0..3 {
        let (cache, stop, reads) = (cache.clone(), stop.clone(), reads.clone());
        handles.push(std::thread::spawn(move || {
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                k = (k + 7) % 2000;
                let want = value_of(k);
                match cache.lookup(&k.to_le_bytes()) {
                    Lookup::Fresh(h) | Lookup::Stale(h, None) => {
                        assert_eq!(h.value(), &want[..]);
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                    Lookup::Stale(h, Some(r)) => {
                        assert_eq!(h.value(), &want[..]);
                        let _ = r.commit(&want, Freshness::new(HOUR));
                    }
                    Lookup::Miss(f) => {
                        let _ = f.commit(&want, Freshness::new(HOUR));
                    }
                    Lookup::Wait(w) => {
                        if let Resolved::Hit(h) = w.wait(Duration::from_secs(5)) {
                            assert_eq!(h.value(), &want[..]);
                        }
                    }
                    Lookup::Pass => {}
                }
            }
        }));
    }
    for h in handles.drain(..3) {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let s = cache.stats();
    assert!(s.weight <= s.capacity);
    assert!(s.evictions > 1000, "evicted {}", s.evictions);
    assert!(reads.load(Ordering::Relaxed) > 100);
    let info = cache.region_info();
    assert_eq!(info.recoveries, 0, "no check found the region inconsistent");
    // Every entry left is intact.
    for k in 0..2000u32 {
        if let Some(v) = cache.get(&k.to_le_bytes()) {
            assert_eq!(v, value_of(k));
        }
    }
}

/// Version `v` of key `k`'s value: `k` and `v`, then a length and a fill byte that both depend
/// on `(k, v)`, so that any mix of two versions, of two keys or of a record and free space
/// shows.
fn versioned(k: u32, v: u32) -> Vec<u8> {
    let len = 16 + ((k.wrapping_mul(7) + v.wrapping_mul(13)) % 1500) as usize;
    let mut out = vec![(k.wrapping_mul(31) ^ v) as u8; len];
    out[..4].copy_from_slice(&k.to_le_bytes());
    out[4..8].copy_from_slice(&v.to_le_bytes());
    out
}

fn check_versioned(k: u32, value: &[u8]) {
    assert!(
        value.len() >= 16,
        "key {k}: a value of {} bytes",
        value.len()
    );
    let got_k = u32::from_le_bytes(value[..4].try_into().unwrap());
    let v = u32::from_le_bytes(value[4..8].try_into().unwrap());
    assert_eq!(got_k, k, "another key's value");
    assert_eq!(value, &versioned(k, v)[..], "key {k} version {v} torn");
}

#[test]
fn readers_without_the_lock_never_see_a_torn_or_foreign_value() {
    // Small (constant eviction and defragmentation), two shards, values of many sizes, writers
    // replacing, purging and clearing while readers copy values out without the lock.
    let cache = ShmCache::builder()
        .max_bytes(256 << 10)
        .shards(2)
        .anonymous()
        .unwrap();
    let keys = 400u32;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hits = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for t in 0..2u32 {
        let cache = cache.clone();
        writers.push(std::thread::spawn(move || {
            let mut x = t.wrapping_mul(2_654_435_761) | 1;
            for i in 0..25_000u32 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let k = x % keys;
                let _ = cache.insert(
                    &k.to_le_bytes(),
                    &versioned(k, x >> 8),
                    Freshness::new(HOUR),
                );
                if i % 997 == 0 {
                    cache.purge(&(x % keys).to_le_bytes(), PurgeMode::Hard);
                }
                if t == 0 && i == 12_000 {
                    cache.clear();
                }
            }
        }));
    }
    let mut readers = Vec::new();
    for t in 0..2u32 {
        let (cache, stop, hits) = (cache.clone(), stop.clone(), hits.clone());
        readers.push(std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut k = t;
            while !stop.load(Ordering::Relaxed) {
                k = (k + 13) % keys;
                let key = k.to_le_bytes();
                let n = match k % 3 {
                    0 => cache.get(&key).map(|v| check_versioned(k, &v)).is_some(),
                    1 => cache
                        .get_into(&key, &mut buf)
                        .map(|_| check_versioned(k, &buf))
                        .is_some(),
                    _ => match cache.lookup(&key) {
                        Lookup::Fresh(h) | Lookup::Stale(h, None) => {
                            check_versioned(k, h.value());
                            true
                        }
                        Lookup::Stale(h, Some(r)) => {
                            check_versioned(k, h.value());
                            let _ = r.commit(&versioned(k, 0), Freshness::new(HOUR));
                            true
                        }
                        Lookup::Miss(f) => {
                            let _ = f.commit(&versioned(k, 0), Freshness::new(HOUR));
                            false
                        }
                        Lookup::Wait(w) => {
                            if let Resolved::Hit(h) = w.wait(Duration::from_secs(5)) {
                                check_versioned(k, h.value());
                            }
                            false
                        }
                        Lookup::Pass => false,
                    },
                };
                if n {
                    hits.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert!(hits.load(Ordering::Relaxed) > 1000, "readers found values");
    let s = cache.stats();
    assert!(s.evictions > 1000, "evicted {}", s.evictions);
    assert!(s.weight <= s.capacity);
    assert_eq!(cache.region_info().recoveries, 0);
    for k in 0..keys {
        if let Some(v) = cache.get(&k.to_le_bytes()) {
            check_versioned(k, &v);
        }
    }
}
