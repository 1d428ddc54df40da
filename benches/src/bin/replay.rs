//! Replays a cache trace through peakcache, moka, quick_cache and a plain LRU at one or more
//! capacities and prints a markdown table of hit ratios.
//!
//! ```text
//! cargo run --release -p peakcache-benches --bin replay -- \
//!     --trace /work/shared/traces/arc-OLTP.lis.zst --format arc --capacity 1000,2000
//! ```
//!
//! Each request is a `get`; a miss is followed by an `insert` (a read-through cache). For
//! `arc`, `lirs` and `cache2k` traces capacity counts entries; for `adapt` it counts bytes and
//! each object weighs its size. A capacity ending in `%` is that share of the trace's unique keys
//! (or unique bytes for `adapt`). Progress and per-run times go to stderr, the table to stdout.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use peakcache_benches::adapters::{CacheKind, Config, Weighing};
use peakcache_benches::replay::{replay, Capacity};
use peakcache_benches::report::{thousands, HitRow, HitTable};
use peakcache_benches::trace::{self, Footprint, Format};

const USAGE: &str = "\
usage: replay --trace PATH --format FORMAT --capacity N[,N...] [options]

  --trace PATH        trace file; .gz, .zst and .xz are decompressed in memory
  --format FORMAT     arc, lirs, cache2k, adapt, long (big-endian u64 keys) or address
  --capacity LIST     comma-separated capacities: entries (bytes for adapt), or N% of the
                      trace's unique keys (unique bytes for adapt)
  --only LIST         caches to run, comma-separated (default: lru,moka,quick_cache,peakcache)
  --shards N          shard count for peakcache and quick_cache (default: each library's own)
  --title TEXT        heading of the table (default: the trace's file name)
  --moka-lazy         leave moka's maintenance to moka instead of running its pending
                      tasks after every insert (the default, which holds moka to its capacity
                      at every step like the other caches)
";

struct Args {
    trace: PathBuf,
    format: Format,
    capacities: Vec<Capacity>,
    only: Vec<CacheKind>,
    shards: Option<usize>,
    title: Option<String>,
    moka_lazy: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut trace = None;
    let mut format = None;
    let mut capacities = None;
    let mut only = CacheKind::ALL.to_vec();
    let mut shards = None;
    let mut title = None;
    let mut moka_lazy = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or(format!("{name} needs a value"))
        };
        match name.as_str() {
            "--trace" => trace = Some(PathBuf::from(value()?)),
            "--format" => format = Some(value()?.parse()?),
            "--capacity" => capacities = Some(Capacity::parse_list(&value()?)?),
            "--only" => {
                only = value()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--shards" => {
                let v = value()?;
                shards = match v.as_str() {
                    "default" => None,
                    n => Some(n.parse().map_err(|e| format!("bad --shards {n:?}: {e}"))?),
                }
            }
            "--title" => title = Some(value()?),
            "--moka-lazy" => moka_lazy = true,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    let capacities: Vec<Capacity> = capacities.ok_or("--capacity is required")?;
    if capacities.is_empty() {
        return Err("--capacity lists no capacity".into());
    }
    if only.is_empty() {
        return Err("--only lists no cache".into());
    }
    Ok(Args {
        trace: trace.ok_or("--trace is required")?,
        format: format.ok_or("--format is required")?,
        capacities,
        only,
        shards,
        title,
        moka_lazy,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("replay: {e}\n");
            }
            eprint!("{USAGE}");
            return if e.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            };
        }
    };
    let requests = match trace::read(&args.trace, args.format) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("replay: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", run(&args, &requests));
    ExitCode::SUCCESS
}

/// Replays `requests` through every chosen cache at every capacity; returns the markdown section.
fn run(args: &Args, requests: &[trace::Request]) -> String {
    let footprint = Footprint::of(requests);
    let sized = args.format.is_sized();
    let unit = if sized { "bytes" } else { "entries" };
    let mean_size = (footprint.unique_weight / footprint.unique_keys.max(1) as u64).max(1);

    let resolved: Vec<u64> = args
        .capacities
        .iter()
        .map(|c| c.resolve(&footprint))
        .collect();
    let headers = args
        .capacities
        .iter()
        .zip(&resolved)
        .map(|(spec, n)| match spec {
            Capacity::Percent(p) => format!("{} ({p}%)", thousands(*n)),
            Capacity::Absolute(_) => thousands(*n),
        })
        .collect();
    let mut table = HitTable {
        capacities: headers,
        rows: Vec::new(),
    };
    let mut configs: Vec<String> = Vec::new();

    for &kind in &args.only {
        let mut row = HitRow {
            cache: kind.name().to_string(),
            hit_percent: Vec::new(),
            elapsed: Duration::ZERO,
        };
        for &capacity in &resolved {
            let config = Config {
                capacity,
                weighing: if sized {
                    Weighing::Bytes
                } else {
                    Weighing::Entries
                },
                estimated_items: usize::try_from(if sized {
                    capacity / mean_size
                } else {
                    capacity
                })
                .unwrap_or(usize::MAX)
                .max(1),
                shards: args.shards,
                deterministic: true,
                moka_sync: !args.moka_lazy,
            };
            let cache = kind.build(&config);
            let described = cache.describe();
            let outcome = replay(cache.as_ref(), requests);
            drop(cache);
            eprintln!(
                "{:>11} @ {:>12} {unit}: {:6.2} % hits in {:.2} s",
                kind.name(),
                thousands(capacity),
                outcome.hit_percent(),
                outcome.elapsed.as_secs_f64()
            );
            row.hit_percent.push(outcome.hit_percent());
            row.elapsed += outcome.elapsed;
            if !configs.contains(&described) {
                configs.push(described);
            }
        }
        table.rows.push(row);
    }

    let title = args.title.clone().unwrap_or_else(|| {
        args.trace.file_name().map_or_else(
            || args.trace.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    });
    let mut out = format!("### {title}\n\n");
    out.push_str(&format!(
        "Format `{}`: {} requests, {} unique keys",
        args.format,
        thousands(footprint.requests as u64),
        thousands(footprint.unique_keys as u64)
    ));
    if sized {
        out.push_str(&format!(
            ", {} unique bytes (each key at its largest size)",
            thousands(footprint.unique_weight)
        ));
    }
    out.push_str(&format!(
        ". Hit ratio in % of requests (get; insert on miss); capacity in {unit}; time = total replay time over all capacities.\n\n"
    ));
    out.push_str(&table.to_markdown());
    out.push_str("\nConfiguration:\n");
    for c in configs {
        out.push_str(&format!("- {c}\n"));
    }
    out.push('\n');
    out
}
