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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(n)) = (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: hitcount peakcache|quick_cache|moka KEYS");
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
