//! The load generator: closed-loop visitors on keep-alive HTTP/1.1 connections that record
//! every request they make (start, latency, status), nothing sampled and nothing dropped: a
//! request still unanswered at its timeout is recorded as a timeout with that latency.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hyper::Method;
use tokio::task::JoinSet;

use crate::client::Conn;

/// `Sample::status` of a request that failed at the connection level (refused, reset, closed).
pub const STATUS_IO_ERROR: u16 = 0;
/// `Sample::status` of a request that got no answer within the request timeout.
pub const STATUS_TIMEOUT: u16 = 1;

/// One request as a visitor saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When it was sent, in microseconds since the run started.
    pub start_us: u32,
    /// How long until its whole answer was read (or it failed), in microseconds.
    pub latency_us: u32,
    /// The HTTP status, or [`STATUS_IO_ERROR`] / [`STATUS_TIMEOUT`].
    pub status: u16,
    /// The page requested (`/page/N`).
    pub page: u8,
}

impl Sample {
    /// Served: a 2xx or 3xx answer. Everything else is an error the visitor saw.
    pub fn ok(&self) -> bool {
        (200..400).contains(&self.status)
    }

    /// When the answer (or the failure) arrived, in microseconds since the run started.
    pub fn end_us(&self) -> u64 {
        self.start_us as u64 + self.latency_us as u64
    }
}

/// What the visitors do.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Where they send their requests (the origin or the proxy).
    pub target: SocketAddr,
    /// How many visitors, each with its own connection, all starting at once.
    pub visitors: usize,
    /// How long they keep going; no request is sent after this.
    pub duration: Duration,
    /// Pause between a visitor's answer and its next request.
    pub think: Duration,
    /// Popularity of `/page/1`, `/page/2`, ...: relative weights.
    pub page_weights: Vec<u32>,
    /// A request unanswered after this is recorded as a timeout and its connection dropped.
    pub request_timeout: Duration,
    /// A visitor stops after this many requests (bounds memory whatever the speed).
    pub max_requests_per_visitor: usize,
}

impl LoadPlan {
    /// 300 visitors for `duration` on five pages, page 1 the most popular.
    pub fn campaign(target: SocketAddr, duration: Duration) -> Self {
        LoadPlan {
            target,
            visitors: 300,
            duration,
            think: Duration::from_millis(5),
            page_weights: vec![50, 20, 15, 10, 5],
            request_timeout: Duration::from_secs(5),
            max_requests_per_visitor: 20_000,
        }
    }
}

/// Everything the visitors recorded.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Every request, ordered by start time.
    pub samples: Vec<Sample>,
    /// `Cache-Status` values seen (cache name and `ttl`/`key`/`detail` parameters left out),
    /// with counts; `(none)` counts answers without the header.
    pub cache_status: BTreeMap<String, u64>,
    /// Visitors that stopped early at `max_requests_per_visitor`.
    pub capped_visitors: usize,
}

/// A small, fast, seedable generator (splitmix64), so runs are reproducible without `rand`.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An index drawn with probability proportional to `weights[i]` (all zero: index 0).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|&w| w as u64).sum();
        if total == 0 {
            return 0;
        }
        let mut r = self.next_u64() % total;
        for (i, &w) in weights.iter().enumerate() {
            if r < w as u64 {
                return i;
            }
            r -= w as u64;
        }
        weights.len() - 1
    }
}

/// Reduces a `Cache-Status` field value to what tells the outcomes apart: the parameters
/// `hit`, `fwd`, `stored` and `collapsed` of its last member, e.g. `hit` or `fwd=miss; stored`.
pub fn normalize_cache_status(value: &str) -> String {
    let member = value.rsplit(',').next().unwrap_or("");
    let kept: Vec<&str> = member
        .split(';')
        .skip(1)
        .map(str::trim)
        .filter(|p| {
            let key = p.split('=').next().unwrap_or("");
            matches!(key, "hit" | "fwd" | "stored" | "collapsed")
        })
        .collect();
    if kept.is_empty() {
        "(other)".to_owned()
    } else {
        kept.join("; ")
    }
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

async fn visitor(
    id: usize,
    plan: LoadPlan,
    t0: Instant,
) -> (Vec<Sample>, BTreeMap<String, u64>, bool) {
    let deadline = t0 + plan.duration;
    let mut rng = SplitMix::new(0x5EED_0000 + id as u64);
    let paths: Vec<String> = (1..=plan.page_weights.len())
        .map(|n| format!("/page/{n}"))
        .collect();
    let mut samples = Vec::with_capacity(1024);
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut conn: Option<Conn> = None;
    while Instant::now() < deadline {
        if samples.len() >= plan.max_requests_per_visitor {
            return (samples, statuses, true);
        }
        let page = rng.weighted(&plan.page_weights);
        let start = Instant::now();
        let fut = async {
            if conn.is_none() {
                conn = Some(Conn::connect(plan.target).await?);
            }
            conn.as_mut()
                .expect("just set")
                .request(Method::GET, &paths[page])
                .await
        };
        let (status, pause) = match tokio::time::timeout(plan.request_timeout, fut).await {
            Ok(Ok(reply)) => {
                let key = match reply
                    .headers
                    .get("cache-status")
                    .and_then(|v| v.to_str().ok())
                {
                    Some(v) => normalize_cache_status(v),
                    None => "(none)".to_owned(),
                };
                *statuses.entry(key).or_default() += 1;
                (reply.status.as_u16(), Duration::ZERO)
            }
            Ok(Err(_)) => {
                conn = None;
                // Do not spin on a refusing server: a real browser would not either.
                (STATUS_IO_ERROR, Duration::from_millis(10))
            }
            Err(_) => {
                conn = None;
                (STATUS_TIMEOUT, Duration::ZERO)
            }
        };
        samples.push(Sample {
            start_us: micros(start - t0),
            latency_us: micros(start.elapsed()),
            status,
            page: (page + 1) as u8,
        });
        let pause = pause + plan.think;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    (samples, statuses, false)
}

/// Runs the visitors from `t0` (usually now) until `plan.duration` has passed and every
/// request they sent has been answered or timed out.
pub async fn run(plan: &LoadPlan, t0: Instant) -> LoadResult {
    let mut set = JoinSet::new();
    for id in 0..plan.visitors {
        set.spawn(visitor(id, plan.clone(), t0));
    }
    let mut result = LoadResult::default();
    while let Some(joined) = set.join_next().await {
        let (samples, statuses, capped) = joined.expect("visitor task panicked");
        result.samples.extend(samples);
        for (k, v) in statuses {
            *result.cache_status.entry(k).or_default() += v;
        }
        result.capped_visitors += capped as usize;
    }
    result.samples.sort_unstable_by_key(|s| s.start_us);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_choice_follows_the_weights() {
        let mut rng = SplitMix::new(1);
        let mut counts = [0u32; 3];
        for _ in 0..30_000 {
            counts[rng.weighted(&[6, 3, 1])] += 1;
        }
        assert!((17_000..19_000).contains(&counts[0]), "{counts:?}");
        assert!((8_000..10_000).contains(&counts[1]), "{counts:?}");
        assert!((2_500..3_500).contains(&counts[2]), "{counts:?}");
        assert_eq!(rng.weighted(&[0, 0]), 0);
    }

    #[test]
    fn cache_status_is_reduced_to_its_outcome() {
        assert_eq!(normalize_cache_status("peakcache; hit; ttl=3"), "hit");
        assert_eq!(
            normalize_cache_status("peakcache; fwd=miss; stored; key=\"GET /\""),
            "fwd=miss; stored"
        );
        assert_eq!(
            normalize_cache_status("cdn; hit, peakcache; fwd=stale"),
            "fwd=stale"
        );
        assert_eq!(normalize_cache_status("peakcache"), "(other)");
    }

    #[test]
    fn sample_classification() {
        let s = |status| Sample {
            start_us: 10,
            latency_us: 5,
            status,
            page: 1,
        };
        assert!(s(200).ok() && s(304).ok());
        assert!(!s(503).ok() && !s(STATUS_IO_ERROR).ok() && !s(STATUS_TIMEOUT).ok());
        assert_eq!(s(200).end_us(), 15);
    }
}
