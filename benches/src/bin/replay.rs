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

use clap::Parser;

use peakcache_benches::adapters::{CacheKind, Config, Weighing};
use peakcache_benches::replay::{replay, Capacity};
use peakcache_benches::report::{thousands, HitRow, HitTable};
use peakcache_benches::trace::{self, Footprint, Format};

/// A comma-separated list of capacities, taken as one value (`Vec` would make clap split it).
type Capacities = Vec<Capacity>;

/// A shard count, or `None` for each library's own.
type Shards = Option<usize>;

/// Replays a cache trace through lru, moka, quick_cache and peakcache at one or more
/// capacities and prints a markdown table of hit ratios (progress goes to stderr).
#[derive(Debug, Parser)]
#[command(name = "replay")]
struct Args {
    /// Trace file; .gz, .zst and .xz are decompressed in memory
    #[arg(long, value_name = "PATH")]
    trace: PathBuf,
    /// Trace format: arc, lirs, cache2k, adapt, long (big-endian u64 keys) or address
    #[arg(long, value_name = "FORMAT")]
    format: Format,
    /// Comma-separated capacities: entries (bytes for adapt), or N% of the trace's unique keys
    /// (unique bytes for adapt)
    #[arg(long = "capacity", value_name = "LIST", value_parser = capacities)]
    capacities: Capacities,
    /// Caches to run, comma-separated
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_values_t = CacheKind::ALL
    )]
    only: Vec<CacheKind>,
    /// Shard count for peakcache and quick_cache, or `default` for each library's own
    #[arg(long, value_name = "N", value_parser = shards, default_value = "default")]
    shards: Shards,
    /// Heading of the table [default: the trace's file name]
    #[arg(long, value_name = "TEXT")]
    title: Option<String>,
    /// Leave moka's maintenance to moka instead of running its pending tasks after every
    /// insert (the default, which holds moka to its capacity at every step like the other
    /// caches)
    #[arg(long)]
    moka_lazy: bool,
}

fn capacities(s: &str) -> Result<Capacities, String> {
    let list = Capacity::parse_list(s)?;
    if list.is_empty() {
        return Err("lists no capacity".into());
    }
    Ok(list)
}

fn shards(s: &str) -> Result<Shards, String> {
    match s {
        "default" => Ok(None),
        n => n
            .parse()
            .map(Some)
            .map_err(|e| format!("{e} (a shard count, or default)")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("replay").chain(line.split_whitespace()))
    }

    #[test]
    fn parses_lists_and_defaults() {
        let a = parse("--trace t.zst --format arc --capacity 1000,2_000,1%").unwrap();
        assert_eq!(a.format, Format::Arc);
        assert_eq!(
            a.capacities,
            [
                Capacity::Absolute(1000),
                Capacity::Absolute(2000),
                Capacity::Percent(1.0)
            ]
        );
        assert_eq!(a.only, CacheKind::ALL);
        assert_eq!((a.shards, a.moka_lazy, a.title), (None, false, None));
        let a = parse(
            "--trace t --format=lirs --capacity 5 --only lru,quick-cache --shards 4 --moka-lazy",
        )
        .unwrap();
        assert_eq!(a.only, [CacheKind::Lru, CacheKind::QuickCache]);
        assert_eq!((a.shards, a.moka_lazy), (Some(4), true));
        assert_eq!(
            parse("--trace t --format arc --capacity 5 --shards default")
                .unwrap()
                .shards,
            None
        );
    }

    #[test]
    fn bad_command_lines_are_usage_errors_naming_the_flag() {
        for (line, says) in [
            ("--format arc --capacity 5", "--trace <PATH>"),
            ("--trace t --capacity 5", "--format <FORMAT>"),
            ("--trace t --format arc", "--capacity <LIST>"),
            (
                "--trace t --format zip --capacity 5",
                "unknown trace format",
            ),
            ("--trace t --format arc --capacity ,", "lists no capacity"),
            (
                "--trace t --format arc --capacity 0",
                "capacity must be positive",
            ),
            (
                "--trace t --format arc --capacity 5 --only lru,memcached",
                "unknown cache",
            ),
            (
                "--trace t --format arc --capacity 5 --shards many",
                "a shard count, or default",
            ),
            (
                "--trace t --format arc --capacity 5 --bogus",
                "unexpected argument '--bogus'",
            ),
        ] {
            let e = parse(line).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{line}: {e}");
            assert!(e.to_string().contains(says), "{line}: {e}");
        }
        assert_eq!(parse("--help").unwrap_err().exit_code(), 0);
    }
}
