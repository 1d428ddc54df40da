//! The shared cache against the in-process cache, in one run:
//!
//! * **hit**: a hit of a 1 KiB value, 10,000 keys (`PEAKCACHE_BENCH_KEYS`) all cached, cycled in a
//!   shuffled order.
//!   `inproc/get` is `peakcache::Cache<Bytes>::get` (a refcount increment); `shm/get` copies the
//!   value out of the region into a new `Bytes` under the shard lock; `shm/get_into` copies
//!   into a reused buffer; `shm/lookup` goes through the lifecycle decision.
//! * **replay**: the hit ratio of a read-through replay of every trace of `shared/traces`
//!   (readers of `peakcache-benches`), in-process vs shared, one shard each, at the capacities
//!   of `benches/replay-all.sh`. Printed as a markdown table after the timings (not timed).
//!
//! `cargo bench -p peakcache-shm --bench shm` (about a minute);
//! `cargo bench -p peakcache-shm --bench shm -- --test` runs each timing once.
//! `PEAKCACHE_TRACES` overrides the trace directory; `PEAKCACHE_SKIP_REPLAY=1` skips the replay.

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use peakcache::{Cache, Freshness};
use peakcache_benches::adapters::{CacheAdapter, Config, PeakcacheAdapter, Weighing};
use peakcache_benches::replay::{replay, Capacity};
use peakcache_benches::trace::{self, Footprint, Format};
use peakcache_shm::ShmCache;
use std::cell::RefCell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn keys_n() -> u32 {
    std::env::var("PEAKCACHE_BENCH_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}
const VALUE: usize = 1024;

fn order() -> Vec<u32> {
    // A fixed shuffle: a multiplicative step coprime with KEYS, in u64 so that it stays a
    // permutation at a million keys.
    let n = u64::from(keys_n());
    let step = (7919..).find(|s| gcd(*s, n) == 1).expect("a step");
    (0..n).map(|i| ((i * step) % n) as u32).collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn key(i: u32) -> [u8; 16] {
    let mut k = *b"/page/0000000000";
    k[6..10].copy_from_slice(&i.to_le_bytes());
    k
}

fn hit(c: &mut Criterion) {
    let ttl = Freshness::new(Duration::from_secs(3600));
    let value = vec![0xabu8; VALUE];
    // Both sized to hold every key with room to spare, weighing the value's bytes alike.
    let bytes = (u64::from(keys_n()) * 2 * (VALUE as u64 + 128)).max(64 << 20);
    let inproc: Cache<Bytes> = Cache::builder()
        .max_bytes(bytes)
        .weigher(|k, v: &Bytes| (k.len() + v.len()) as u64 + peakcache::ENTRY_OVERHEAD)
        .build();
    let shm = ShmCache::builder().max_bytes(bytes).anonymous().unwrap();
    for i in 0..keys_n() {
        inproc
            .insert(&key(i), Bytes::from(value.clone()), ttl)
            .unwrap();
        shm.insert(&key(i), &value, ttl).unwrap();
    }
    let keys: Vec<[u8; 16]> = order().into_iter().map(key).collect();
    assert!(keys
        .iter()
        .all(|k| inproc.get(k).is_some() && shm.get(k).is_some()));
    let mut g = c.benchmark_group("hit-1KiB");
    let mut n = 0usize;
    g.bench_function("inproc/get", |b| {
        b.iter(|| {
            n = (n + 1) % keys.len();
            black_box(inproc.get(&keys[n]))
        })
    });
    g.bench_function("shm/get", |b| {
        b.iter(|| {
            n = (n + 1) % keys.len();
            black_box(shm.get(&keys[n]))
        })
    });
    let mut buf = Vec::with_capacity(2 * VALUE);
    g.bench_function("shm/get_into", |b| {
        b.iter(|| {
            n = (n + 1) % keys.len();
            black_box(shm.get_into(&keys[n], &mut buf));
        })
    });
    g.bench_function("inproc/lookup", |b| {
        b.iter(|| {
            n = (n + 1) % keys.len();
            black_box(matches!(
                inproc.lookup(&keys[n]),
                peakcache::Lookup::Fresh(_)
            ))
        })
    });
    g.bench_function("shm/lookup", |b| {
        b.iter(|| {
            n = (n + 1) % keys.len();
            black_box(matches!(
                shm.lookup(&keys[n]),
                peakcache_shm::Lookup::Fresh(_)
            ))
        })
    });
    g.finish();
}

/// The shared cache as a replay adapter: keys are the 8 little-endian bytes, values empty for
/// entry-counted traces and `weight - 88` bytes for sized ones, so that a record (80-byte
/// header, key, value, rounded up to 64) weighs about what the in-process weigher charges.
struct ShmAdapter {
    cache: ShmCache,
    weighing: Weighing,
    zeros: Vec<u8>,
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Bytes of record beyond the value for an 8-byte key without tags.
const RECORD_OVERHEAD: u64 = 88;

impl ShmAdapter {
    fn new(capacity: u64, weighing: Weighing, unique_keys: usize) -> Self {
        let (max_bytes, entries) = match weighing {
            // One 128-byte record (88 rounded up) per entry.
            Weighing::Entries => (capacity * 128, capacity),
            Weighing::Bytes => (capacity, unique_keys as u64),
        };
        let cache = ShmCache::builder()
            .max_bytes(max_bytes.max(16 * 64))
            .shards(1)
            .max_entries(entries)
            .hash_seed(0x5eed)
            .anonymous()
            .unwrap();
        ShmAdapter {
            cache,
            weighing,
            zeros: Vec::new(),
        }
    }
}

impl CacheAdapter for ShmAdapter {
    fn name(&self) -> &'static str {
        "peakcache-shm"
    }
    fn get(&self, key: u64) -> bool {
        BUF.with(|b| {
            self.cache
                .get_into(&key.to_le_bytes(), &mut b.borrow_mut())
                .is_some()
        })
    }
    fn insert(&self, key: u64, weight: u64) {
        let len = match self.weighing {
            Weighing::Entries => 0,
            Weighing::Bytes => weight.saturating_sub(RECORD_OVERHEAD) as usize,
        };
        let _ = self.cache.insert(
            &key.to_le_bytes(),
            &self.zeros[..len.min(self.zeros.len())],
            Freshness::new(Duration::from_secs(3600)),
        );
    }
    fn describe(&self) -> String {
        "peakcache-shm, 1 shard".into()
    }
}

fn traces_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var("PEAKCACHE_TRACES").ok().map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/traces")),
        Some(PathBuf::from("/work/shared/traces")),
    ];
    candidates.into_iter().flatten().find(|p| p.is_dir())
}

fn replay_table(dir: &Path) {
    let runs: [(&str, Format, &str); 7] = [
        ("arc-OLTP.lis.zst", Format::Arc, "1000,2000,5000"),
        ("lirs-loop.trace.gz", Format::Lirs, "500,1000,1024"),
        ("lirs-gli.trace.gz", Format::Lirs, "500,1000,2000"),
        ("lirs-sprite.trace.gz", Format::Lirs, "100,250,500"),
        ("lirs-multi2.trace.gz", Format::Lirs, "500,1000,2000"),
        ("cache2k-web07.trace.xz", Format::Cache2k, "1000,2000,5000"),
        ("adapt_size-request.trace.xz", Format::Adapt, "1%,5%,10%"),
    ];
    println!("\n| trace | capacity | in-process hit % | shared hit % | gap (points) |");
    println!("|---|---:|---:|---:|---:|");
    let mut worst: f64 = 0.0;
    for (file, format, caps) in runs {
        let path = dir.join(file);
        let Ok(requests) = trace::read(&path, format) else {
            println!("| {file} | (unreadable) | | | |");
            continue;
        };
        let footprint = Footprint::of(&requests);
        let weighing = if format.is_sized() {
            Weighing::Bytes
        } else {
            Weighing::Entries
        };
        for cap in Capacity::parse_list(caps).unwrap() {
            let capacity = cap.resolve(&footprint);
            let config = Config {
                capacity,
                weighing,
                estimated_items: footprint.unique_keys,
                shards: Some(1),
                deterministic: true,
                moka_sync: false,
            };
            let inproc = replay(&PeakcacheAdapter::new(&config), &requests).hit_percent();
            let mut adapter = ShmAdapter::new(capacity, weighing, footprint.unique_keys);
            if weighing == Weighing::Bytes {
                let largest = requests.iter().map(|r| r.weight).max().unwrap_or(0);
                adapter.zeros = vec![0; largest as usize];
            }
            let shm = replay(&adapter, &requests).hit_percent();
            worst = worst.max(inproc - shm);
            println!(
                "| {file} | {capacity} | {inproc:.2} | {shm:.2} | {:+.2} |",
                shm - inproc
            );
        }
    }
    println!("\nLargest shortfall of the shared cache: {worst:.2} points.");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = hit
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    let test_mode = std::env::args().any(|a| a == "--test");
    if std::env::var_os("PEAKCACHE_SKIP_REPLAY").is_some() || test_mode {
        return;
    }
    match traces_dir() {
        Some(dir) => replay_table(&dir),
        None => println!("no trace directory found: replay skipped"),
    }
}
