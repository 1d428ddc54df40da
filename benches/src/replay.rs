//! Replaying a trace through a cache as a read-through cache: `get` each key, and on a miss
//! `insert` it. Plus the capacity specifications the `replay` binary accepts.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::adapters::CacheAdapter;
use crate::trace::{Footprint, Request};

/// What one replay measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// Requests that found their key.
    pub hits: u64,
    /// Requests replayed.
    pub requests: u64,
    /// Wall time of the replay.
    pub elapsed: Duration,
}

impl Outcome {
    /// Hits as a percentage of requests (0 for an empty trace).
    pub fn hit_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.hits as f64 * 100.0 / self.requests as f64
        }
    }
}

/// Replays `trace` through `cache`: for each request `get`; on a miss `insert` with the request's weight.
pub fn replay(cache: &dyn CacheAdapter, trace: &[Request]) -> Outcome {
    let start = Instant::now();
    let mut hits = 0;
    for r in trace {
        if cache.get(r.key) {
            hits += 1;
        } else {
            cache.insert(r.key, r.weight);
        }
    }
    Outcome {
        hits,
        requests: trace.len() as u64,
        elapsed: start.elapsed(),
    }
}

/// A capacity as given on the command line: absolute, or a percentage of the trace's footprint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Capacity {
    /// So many entries (or bytes, for sized traces).
    Absolute(u64),
    /// This percentage of the trace's unique keys (or unique bytes, for sized traces).
    Percent(f64),
}

impl Capacity {
    /// The capacity in entries or bytes for a trace of this footprint.
    pub fn resolve(self, footprint: &Footprint) -> u64 {
        match self {
            Capacity::Absolute(n) => n,
            Capacity::Percent(p) => ((footprint.unique_weight as f64) * p / 100.0)
                .round()
                .max(1.0) as u64,
        }
    }

    /// Parses a comma-separated list such as `1000,2000,5000` or `1%,5%,10%`.
    pub fn parse_list(s: &str) -> Result<Vec<Capacity>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::parse)
            .collect()
    }
}

impl FromStr for Capacity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |e: &dyn fmt::Display| format!("bad capacity {s:?}: {e}");
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p.trim().parse().map_err(|e| bad(&e))?;
            if !(p > 0.0 && p.is_finite()) {
                return Err(bad(&"percentage must be positive"));
            }
            Ok(Capacity::Percent(p))
        } else {
            let n: u64 = s.replace('_', "").parse().map_err(|e| bad(&e))?;
            if n == 0 {
                return Err(bad(&"capacity must be positive"));
            }
            Ok(Capacity::Absolute(n))
        }
    }
}

impl fmt::Display for Capacity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Capacity::Absolute(n) => write!(f, "{n}"),
            Capacity::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::{Config, LruAdapter};

    #[test]
    fn read_through_counts_hits_and_inserts_misses() {
        let cache = LruAdapter::new(&Config::entries(2));
        let trace: Vec<Request> = [1, 2, 1, 3, 2, 1, 1]
            .into_iter()
            .map(Request::unit)
            .collect();
        // 1 m, 2 m, 1 h, 3 m (evicts 2), 2 m (evicts 1), 1 m (evicts 3), 1 h
        let outcome = replay(&cache, &trace);
        assert_eq!((outcome.hits, outcome.requests), (2, 7));
        assert!((outcome.hit_percent() - 200.0 / 7.0).abs() < 1e-9);
    }

    #[test]
    fn capacities_parse_and_resolve() {
        let list = Capacity::parse_list("1000, 2_000,1%,0.5%").unwrap();
        assert_eq!(
            list,
            [
                Capacity::Absolute(1000),
                Capacity::Absolute(2000),
                Capacity::Percent(1.0),
                Capacity::Percent(0.5)
            ]
        );
        let footprint = Footprint {
            requests: 10,
            unique_keys: 3,
            unique_weight: 1_000_000,
        };
        assert_eq!(list[0].resolve(&footprint), 1000);
        assert_eq!(list[2].resolve(&footprint), 10_000);
        assert_eq!(list[3].resolve(&footprint), 5_000);
        assert!(Capacity::parse_list("0").is_err());
        assert!(Capacity::parse_list("-1%").is_err());
        assert!(Capacity::parse_list("ten").is_err());
    }

    #[test]
    fn empty_trace_has_zero_ratio() {
        let cache = LruAdapter::new(&Config::entries(2));
        assert_eq!(replay(&cache, &[]).hit_percent(), 0.0);
    }
}
