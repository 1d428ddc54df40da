//! Operations: the per-second history of this proxy's cache and the counts it adds (visitor
//! requests and errors, origin requests and errors), sampled once a second by a task of its own;
//! the hit path only adds one to a visitor counter.

use crate::handler::Proxy;
use peakcache::history::{self, sample_values, unix_second};
use peakcache::{HostCounts, LocalHistory};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The history and the counts not yet added to it.
#[derive(Debug, Default)]
pub struct Ops {
    history: LocalHistory,
    visitors: AtomicU64,
    visitor_errors: AtomicU64,
    /// The origin's counters at the last tick: the history takes their increase.
    origin_seen: [AtomicU64; 2],
}

impl Ops {
    /// Counts one visitor's answer (`status` is what was sent).
    pub fn count_visitor(&self, status: http::StatusCode) {
        self.visitors.fetch_add(1, Ordering::Relaxed);
        if status.is_server_error() {
            self.visitor_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The history ring.
    pub fn history(&self) -> peakcache::History<'_> {
        self.history.ring()
    }
}

impl Proxy {
    /// Adds what was counted since the last tick to the history's totals and samples this
    /// second, unless sampled already. True if this call wrote the sample.
    pub fn tick(&self) -> bool {
        let ops = &self.ops;
        let origin = [self.origin().requests(), self.origin().errors()];
        let [requests, errors] = [0, 1].map(|i| {
            origin[i].saturating_sub(ops.origin_seen[i].swap(origin[i], Ordering::Relaxed))
        });
        let ring = ops.history();
        ring.add_host(&HostCounts {
            visitor_requests: ops.visitors.swap(0, Ordering::Relaxed),
            visitor_errors: ops.visitor_errors.swap(0, Ordering::Relaxed),
            origin_requests: requests,
            origin_errors: errors,
        });
        let cache = self.cache();
        ring.record(unix_second(), || {
            sample_values(&cache.stats(), cache.is_frozen(), &ring.host_totals())
        })
    }

    /// The status document (`peakcache::history::status_json`) with `seconds` of history.
    pub fn status_json(&self, seconds: u64) -> String {
        history::status_json(
            &self.cache().stats(),
            self.cache().is_frozen(),
            self.ops.history(),
            seconds,
        )
    }

    /// The Prometheus text of the history: the hosts' totals and gauges.
    pub fn history_prometheus(&self) -> String {
        history::history_prometheus(
            &self.cache().stats(),
            self.cache().is_frozen(),
            self.ops.history(),
        )
    }
}

/// Ticks `proxy` once a second, forever (until the task is dropped).
pub async fn sample_every_second(proxy: std::sync::Arc<Proxy>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        proxy.tick();
    }
}
