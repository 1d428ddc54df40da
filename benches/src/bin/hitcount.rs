//! Counts the instructions of one hit, for `valgrind --tool=callgrind`: fills a cache with every
//! key of `0..n`, then looks up a Zipf sequence of them (every lookup a hit) inside
//! `measured_gets`, the one function callgrind is told to count.
//!
//! ```text
//! cargo build --release -p peakcache-benches --bin hitcount
//! valgrind --tool=callgrind --toggle-collect=hitcount::measured_gets --callgrind-out-file=/dev/null \
//!     target/release/hitcount peakcache 100000 2>&1 | grep refs
//! ```
//!
//! Instructions per get = the "I refs" printed, divided by the gets (`GETS`). Callgrind counts
//! instructions, not time: repeatable on a loaded machine, blind to cache misses and to
//! contention. The same adapters as the criterion benchmark (`benches/hit.rs`) are used.
//!
//! `hitcount --time KEYS [THREADS]` times peakcache and quick_cache instead, in one process,
//! alternating rounds of `GETS` gets on every thread, and prints each one's median and spread
//! in nanoseconds per get: on a shared machine, load that comes and goes hits both alike.

use peakcache_benches::adapters::{
    CacheAdapter, Config, MokaAdapter, PeakcacheAdapter, QuickCacheAdapter,
};
use peakcache_benches::zipf;
use std::hint::black_box;
use std::process::ExitCode;

/// Gets counted.
const GETS: usize = 1 << 20;

#[inline(never)]
fn measured_gets(cache: &dyn CacheAdapter, keys: &[u64]) -> u64 {
    keys.iter()
        .map(|&k| u64::from(cache.get(black_box(k))))
        .sum()
}

/// Rounds timed per cache in `--time`.
const ROUNDS: usize = 15;

/// Wall time of every thread doing `GETS` gets from its own offset, in ns per get and thread.
fn timed_round(cache: &dyn CacheAdapter, keys: &[u64], threads: usize) -> f64 {
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                let offset = t * keys.len() / threads;
                let (a, b) = keys.split_at(offset);
                black_box(measured_gets(cache, b) + measured_gets(cache, a));
            });
        }
    });
    start.elapsed().as_nanos() as f64 / GETS as f64
}

/// Median, lowest and highest.
fn summary(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn time(n: usize, threads: usize) -> ExitCode {
    let config = Config::entries(2 * n as u64);
    let caches: [Box<dyn CacheAdapter>; 2] = [
        Box::new(PeakcacheAdapter::new(&config)),
        Box::new(QuickCacheAdapter::new(&config)),
    ];
    for c in &caches {
        for k in 0..n as u64 {
            c.insert(k, 1);
        }
    }
    let keys = zipf::keys(n, 1.0, GETS, 0x5EED ^ n as u64);
    let mut ns = [Vec::new(), Vec::new()];
    for _ in 0..ROUNDS {
        for (c, v) in caches.iter().zip(ns.iter_mut()) {
            v.push(timed_round(&**c, &keys, threads));
        }
    }
    let [(p, p_lo, p_hi), (q, q_lo, q_hi)] = ns.map(summary);
    println!(
        "{n} keys, {threads} thread(s), {ROUNDS} alternating rounds of {GETS} gets per thread: \
         peakcache {p:.1} ns/get ({p_lo:.1} to {p_hi:.1}), quick_cache {q:.1} ({q_lo:.1} to \
         {q_hi:.1}); peakcache at {:.2}x quick_cache's throughput",
        q / p
    );
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--time") {
        let n = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100_000);
        let threads = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(1);
        return time(n, threads);
    }
    let (Some(name), Some(n)) = (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!(
            "usage: hitcount peakcache|quick_cache|moka KEYS | hitcount --time KEYS [THREADS]"
        );
        return ExitCode::FAILURE;
    };
    let config = Config::entries(2 * n as u64);
    let cache: Box<dyn CacheAdapter> = match name.as_str() {
        "peakcache" => Box::new(PeakcacheAdapter::new(&config)),
        "quick_cache" => Box::new(QuickCacheAdapter::new(&config)),
        "moka" => Box::new(MokaAdapter::new(&config)),
        _ => {
            eprintln!("unknown cache {name}");
            return ExitCode::FAILURE;
        }
    };
    for k in 0..n as u64 {
        cache.insert(k, 1);
    }
    let keys = zipf::keys(n, 1.0, GETS, 0x5EED ^ n as u64);
    let hits = measured_gets(&*cache, &keys);
    println!("{name}: {hits} hits of {GETS} gets over {n} keys");
    if hits as usize == GETS {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
