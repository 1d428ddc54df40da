//! The eviction policy (S3-FIFO with admission, ported from the in-process cache) through the
//! public API: loops keep a stable subset, scans spare the working set, dead entries go first,
//! and nothing it does ever needs a recovery.

use peakcache_shm::{Freshness, ShmCache};
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

/// A cache of `n` 8-byte-key entries without value (one 128-byte record each), one shard.
fn cache(n: u64) -> ShmCache {
    ShmCache::builder()
        .max_bytes(n * 128)
        .max_entries(n)
        .shards(1)
        .hash_seed(7)
        .anonymous()
        .unwrap()
}

/// Read-through access: a hit, or a miss that stores the key.
fn access(c: &ShmCache, key: u64, ttl: Duration, buf: &mut Vec<u8>) -> bool {
    if c.get_into(&key.to_le_bytes(), buf).is_some() {
        return true;
    }
    c.insert(&key.to_le_bytes(), &[], Freshness::new(ttl))
        .unwrap();
    false
}

#[test]
fn a_loop_larger_than_the_cache_keeps_a_stable_subset() {
    let c = cache(100);
    let mut buf = Vec::new();
    let mut last_round = 0;
    for _ in 0..30 {
        last_round = (0..210).filter(|&k| access(&c, k, HOUR, &mut buf)).count();
    }
    assert!(
        last_round >= 90,
        "{last_round} hits of 210 in the last round"
    );
    assert!(c.len() <= 100);
    assert_eq!(c.region_info().recoveries, 0);
}

#[test]
fn a_scan_of_one_hit_wonders_does_not_evict_the_working_set() {
    let c = cache(100);
    let mut buf = Vec::new();
    for _ in 0..5 {
        for k in 0..50 {
            access(&c, k, HOUR, &mut buf);
        }
    }
    for k in 1_000..3_000 {
        access(&c, k, HOUR, &mut buf);
        access(&c, k % 50, HOUR, &mut buf);
    }
    let kept = (0..50u64)
        .filter(|k| c.get(&k.to_le_bytes()).is_some())
        .count();
    assert_eq!(kept, 50);
    assert_eq!(c.region_info().recoveries, 0);
}

#[test]
fn dead_entries_go_first() {
    let mut buf = Vec::new();
    // Short-lived entries (1 ms), then time passes: they are the first to leave.
    let clock = peakcache::ManualClock::new();
    let c2 = ShmCache::builder()
        .max_bytes(100 * 128)
        .max_entries(100)
        .shards(1)
        .clock(clock.clone())
        .anonymous()
        .unwrap();
    for _ in 0..3 {
        for k in 0..60 {
            access(&c2, k, HOUR, &mut buf);
        }
    }
    for k in 100..140 {
        access(&c2, k, Duration::from_millis(1), &mut buf);
    }
    clock.advance(Duration::from_millis(2));
    for k in 200..240 {
        access(&c2, k, HOUR, &mut buf);
    }
    let s = c2.stats();
    assert_eq!(s.expirations, 40, "{s:?}");
    assert_eq!(s.evictions, 0, "{s:?}");
    assert!((0..60u64).all(|k| c2.get(&k.to_le_bytes()).is_some()));
    assert_eq!(c2.region_info().recoveries, 0);
}

/// A value for `k` of a length depending on `k` and `round` (most small, one in twenty of
/// tens of KiB: the heavy tail that fragments a heap), its bytes naming both.
fn sized_value(k: u64, round: u64) -> Vec<u8> {
    let h = k * 2_654_435_761 + round * 97;
    let len = if k % 20 == 0 {
        20_000 + (h % 80_000) as usize
    } else {
        8 + (h % 1_000) as usize
    };
    let mut v = vec![(k ^ round) as u8; len];
    v[..4].copy_from_slice(&(k as u32).to_le_bytes());
    v[4..8].copy_from_slice(&(round as u32).to_le_bytes());
    v
}

#[test]
fn records_of_many_sizes_stay_intact_under_churn() {
    let c = ShmCache::builder()
        .max_bytes(1 << 20)
        .max_entries(4_000)
        .shards(1)
        .anonymous()
        .unwrap();
    let mut occupancy = 0.0;
    let mut samples = 0;
    for round in 0..4u64 {
        for k in 0..1_500u64 {
            let k = (k * 7_919 + round) % 1_500;
            let key = k.to_le_bytes();
            match c.get(&key) {
                Some(v) => {
                    let r = u32::from_le_bytes(v[4..8].try_into().unwrap()) as u64;
                    assert_eq!(&v[..], &sized_value(k, r)[..], "key {k} intact");
                }
                None => c
                    .insert(&key, &sized_value(k, round), Freshness::new(HOUR))
                    .unwrap(),
            }
            if round > 0 && k % 50 == 0 {
                let s = c.stats();
                occupancy += s.weight as f64 / s.capacity as f64;
                samples += 1;
            }
        }
    }
    let occupancy = occupancy / samples as f64;
    assert!(occupancy > 0.9, "mean heap occupancy {occupancy:.3}");
    assert_eq!(c.region_info().recoveries, 0);
}

#[test]
fn a_record_larger_than_any_hole_moves_others_instead_of_evicting() {
    // 256 records of 4 units (80-byte header, 8-byte key, 168-byte value) fill a 1,024-unit
    // heap exactly; every other one is purged: 512 units free, in holes of 4.
    let c = ShmCache::builder()
        .max_bytes(64 << 10)
        .max_entries(300)
        .shards(1)
        .anonymous()
        .unwrap();
    let value = |k: u64| vec![k as u8; 168];
    for k in 0..256u64 {
        c.insert(&k.to_le_bytes(), &value(k), Freshness::new(HOUR))
            .unwrap();
    }
    assert_eq!(c.stats().weight, c.stats().capacity, "full");
    for k in (0..256u64).step_by(2) {
        assert!(c.purge(&k.to_le_bytes(), peakcache::PurgeMode::Hard));
    }
    // 100 units: only room if records move together.
    let big = vec![0xee; 100 * 64 - 88];
    c.insert(b"big-0001", &big, Freshness::new(HOUR)).unwrap();
    assert_eq!(c.get(b"big-0001").as_deref(), Some(&big[..]));
    assert_eq!(c.stats().evictions, 0, "nothing evicted");
    for k in (1..256u64).step_by(2) {
        assert_eq!(
            c.get(&k.to_le_bytes()).as_deref(),
            Some(&value(k)[..]),
            "key {k}"
        );
    }
    assert_eq!(c.region_info().recoveries, 0);
}
