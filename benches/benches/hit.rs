//! Hit throughput of peakcache, moka and quick_cache, side by side in the same criterion groups.
//!
//! * Keys: Zipf (s = 1.0) over `n` = 100k or 1M keys, drawn once per size into a sequence of
//!   2^20 keys so that no random numbers are drawn while measuring.
//! * Every key `0..n` is inserted before measuring, into caches of capacity `2n` entries, so
//!   every lookup is a hit (checked before measuring).
//! * Workloads: `hit` (lookups only) and `mix` (9 lookups then 1 insert, repeated: a 90/10
//!   get/insert mix; the inserts overwrite existing keys, so nothing is evicted).
//! * Threads: 1 and 2. One criterion iteration is every thread doing [`OPS_PER_THREAD`]
//!   operations from its own offset in the key sequence; `iter_custom` returns the wall time
//!   from spawning the threads (`std::thread::scope`) to joining the last, so the time covers
//!   all threads' work. Throughput is reported in operations (elements) per second.
//! * Configuration: library defaults (random hash seeds, default shard counts), moka and
//!   quick_cache hashing with ahash, moka's maintenance left to moka; see
//!   `peakcache_benches::adapters` for the details. Values are `u64`.
//!
//! `cargo bench -p peakcache-benches --bench hit` takes a few minutes on 2 cores;
//! `cargo bench -p peakcache-benches --bench hit -- --test` runs each benchmark once.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{
    criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput,
};
use peakcache_benches::adapters::{
    CacheAdapter, Config, MokaAdapter, PeakcacheAdapter, QuickCacheAdapter,
};
use peakcache_benches::zipf;

/// Key populations measured, with their labels.
const SIZES: [(usize, &str); 2] = [(100_000, "100k"), (1_000_000, "1M")];
/// Thread counts measured.
const THREADS: [usize; 2] = [1, 2];
/// Operations each thread performs per criterion iteration.
const OPS_PER_THREAD: u64 = 100_000;
/// Length of the pre-generated key sequence (a power of two, indexed with a mask).
const SEQUENCE_LEN: usize = 1 << 20;
/// Zipf exponent.
const ZIPF_S: f64 = 1.0;
/// In `mix`, one operation in this many is an insert.
const INSERT_EVERY: u32 = 10;

/// What each thread does.
#[derive(Clone, Copy)]
enum Workload {
    /// Lookups only.
    Hit,
    /// Nine lookups, then one insert.
    Mix,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Hit => "hit",
            Workload::Mix => "mix90-10",
        }
    }
}

/// Runs `threads` threads, each doing `ops` operations of `workload`; returns the wall time.
fn run<C: CacheAdapter>(
    cache: &C,
    keys: &[u64],
    threads: usize,
    ops: u64,
    workload: Workload,
) -> Duration {
    let start = Instant::now();
    thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let mask = keys.len() - 1;
                let offset = t * keys.len() / threads;
                let mut hits = 0u64;
                let mut until_insert = INSERT_EVERY;
                for i in 0..ops as usize {
                    let key = keys[(offset + i) & mask];
                    if let Workload::Mix = workload {
                        until_insert -= 1;
                        if until_insert == 0 {
                            until_insert = INSERT_EVERY;
                            cache.insert(key, 1);
                            continue;
                        }
                    }
                    hits += u64::from(cache.get(key));
                }
                black_box(hits);
            });
        }
    });
    start.elapsed()
}

/// Inserts every key of `0..n` and checks that each is then found.
fn fill<C: CacheAdapter>(cache: &C, n: usize, after_fill: impl FnOnce(&C)) {
    for key in 0..n as u64 {
        cache.insert(key, 1);
    }
    after_fill(cache);
    let found = (0..n as u64).filter(|&k| cache.get(k)).count();
    assert_eq!(
        found,
        n,
        "{} lost keys during the fill; raise its capacity",
        cache.name()
    );
}

fn bench_cache<C: CacheAdapter>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    cache: &C,
    keys: &[u64],
    threads: usize,
    workload: Workload,
) {
    group.bench_function(BenchmarkId::new(cache.name(), format!("{threads}t")), |b| {
        b.iter_custom(|iters| run(cache, keys, threads, iters * OPS_PER_THREAD, workload))
    });
}

fn hit_throughput(c: &mut Criterion) {
    for (n, label) in SIZES {
        let keys = zipf::keys(n, ZIPF_S, SEQUENCE_LEN, 0x5EED ^ n as u64);
        let config = Config::entries(2 * n as u64);

        let peakcache = PeakcacheAdapter::new(&config);
        fill(&peakcache, n, |_| ());
        let moka = MokaAdapter::new(&config);
        fill(&moka, n, MokaAdapter::run_pending_tasks);
        let quick_cache = QuickCacheAdapter::new(&config);
        fill(&quick_cache, n, |_| ());

        for workload in [Workload::Hit, Workload::Mix] {
            let mut group = c.benchmark_group(format!("{}/{label}", workload.name()));
            for threads in THREADS {
                group.throughput(Throughput::Elements(OPS_PER_THREAD * threads as u64));
                bench_cache(&mut group, &peakcache, &keys, threads, workload);
                bench_cache(&mut group, &moka, &keys, threads, workload);
                bench_cache(&mut group, &quick_cache, &keys, threads, workload);
            }
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = hit_throughput
}
criterion_main!(benches);
