//! A 1 KiB hit, in-process and shared, at KEYS keys (default 10,000), in one process: the same
//! keys cycled in a shuffled order, every lookup a hit, in alternating rounds so that load that
//! comes and goes on a shared machine hits every case alike. Prints each case's median and
//! spread in ns per hit, and the shared cases' ratios to the in-process `get` of the same run.
//!
//! ```text
//! cargo run --release -p peakcache-shm --example hit_time -- 1000000
//! ```
//!
//! `hit_time KEYS --only CASE` runs one case (`inproc/get`, `shm/get_into`, `shm/get`,
//! `inproc/lookup`, `shm/lookup`) once over `HITS` hits inside `measured`, for
//! `valgrind --tool=callgrind --toggle-collect=hit_time::measured` (instructions) or
//! `--tool=cachegrind` (cache misses).

use bytes::Bytes;
use peakcache::{Cache, Freshness};
use peakcache_shm::ShmCache;
use std::hint::black_box;
use std::time::{Duration, Instant};

const VALUE: usize = 1024;
/// Hits per round.
const HITS: usize = 1 << 20;
/// Rounds per case.
const ROUNDS: usize = 15;

/// The key of page `i`: 16 bytes, as in the criterion bench.
fn key(i: u32) -> [u8; 16] {
    let mut k = *b"/page/0000000000";
    k[6..10].copy_from_slice(&i.to_le_bytes());
    k
}

/// Every key once, in a fixed shuffle (a multiplicative step coprime with the count), then
/// repeated up to `HITS`.
fn order(n: u32) -> Vec<[u8; 16]> {
    let step = (7919..).find(|s| gcd(*s, n) == 1).expect("a step");
    (0..HITS as u64)
        .map(|i| key(((i * u64::from(step)) % u64::from(n)) as u32))
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

struct Caches {
    inproc: Cache<Bytes>,
    shm: ShmCache,
}

impl Caches {
    /// Both caches, sized to hold every key with room to spare, filled.
    fn filled(n: u32) -> Caches {
        let ttl = Freshness::new(Duration::from_secs(3600));
        let value = vec![0xab_u8; VALUE];
        let bytes = u64::from(n) * 2 * (VALUE as u64 + 128);
        let inproc: Cache<Bytes> = Cache::builder()
            .max_bytes(bytes.max(64 << 20))
            .weigher(|k, v: &Bytes| (k.len() + v.len()) as u64 + peakcache::ENTRY_OVERHEAD)
            .build();
        let shm = ShmCache::builder()
            .max_bytes(bytes.max(64 << 20))
            .anonymous()
            .expect("a region");
        for i in 0..n {
            inproc
                .insert(&key(i), Bytes::from(value.clone()), ttl)
                .unwrap();
            shm.insert(&key(i), &value, ttl).unwrap();
        }
        assert_eq!((inproc.len(), shm.len()), (n as usize, n as usize));
        Caches { inproc, shm }
    }
}

const CASES: [&str; 5] = [
    "inproc/get",
    "shm/get_into",
    "shm/get",
    "inproc/lookup",
    "shm/lookup",
];

/// Looks every key of `keys` up with `case`; the number of hits.
#[inline(never)]
fn measured(c: &Caches, case: &str, keys: &[[u8; 16]], buf: &mut Vec<u8>) -> usize {
    match case {
        "inproc/get" => keys
            .iter()
            .filter(|k| c.inproc.get(&k[..]).is_some())
            .count(),
        "shm/get_into" => keys
            .iter()
            .filter(|k| c.shm.get_into(&k[..], buf).is_some())
            .count(),
        "shm/get" => keys.iter().filter(|k| c.shm.get(&k[..]).is_some()).count(),
        "inproc/lookup" => keys
            .iter()
            .filter(|k| matches!(c.inproc.lookup(&k[..]), peakcache::Lookup::Fresh(_)))
            .count(),
        "shm/lookup" => keys
            .iter()
            .filter(|k| matches!(c.shm.lookup(&k[..]), peakcache_shm::Lookup::Fresh(_)))
            .count(),
        _ => panic!("unknown case {case}; one of {CASES:?}"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: u32 = args.first().map_or(10_000, |a| a.parse().expect("KEYS"));
    let c = Caches::filled(n);
    let keys = order(n);
    let mut buf = Vec::with_capacity(2 * VALUE);
    if let Some(case) = args
        .iter()
        .position(|a| a == "--only")
        .map(|i| &args[i + 1])
    {
        let hits = measured(&c, case, black_box(&keys), &mut buf);
        assert_eq!(hits, HITS);
        println!("{case}: {HITS} hits over {n} keys");
        return;
    }
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); CASES.len()];
    for _ in 0..ROUNDS {
        for (case, v) in CASES.iter().zip(ns.iter_mut()) {
            let start = Instant::now();
            let hits = measured(&c, case, black_box(&keys), &mut buf);
            v.push(start.elapsed().as_nanos() as f64 / HITS as f64);
            assert_eq!(hits, HITS);
        }
    }
    let medians: Vec<f64> = ns
        .iter_mut()
        .map(|v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect();
    println!("{n} keys, 1 KiB values, {ROUNDS} alternating rounds of {HITS} hits:");
    for (k, case) in CASES.iter().enumerate() {
        let v = &ns[k];
        println!(
            "  {case:14} {:6.1} ns/hit ({:.1} to {:.1}), {:.2}x inproc/get",
            medians[k],
            v[0],
            v[v.len() - 1],
            medians[k] / medians[0]
        );
    }
}
