//! What the cluster link counts, and its Prometheus text.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why a host marked every entry stale on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SoftPurgeReason {
    /// Purges the host had not read yet were trimmed from the stream.
    Trimmed,
    /// The bus's history was lost (Redis restarted without its data, or the keys were deleted).
    Reset,
    /// The host could not read the bus for longer than `max_lag`.
    Lagging,
    /// A message on the bus could not be read (written by a newer version?).
    Unreadable,
    /// The host joined with entries whose purges it cannot know (a shared region that served
    /// without an agent, or whose agent's place on the bus is unknown).
    Joined,
}

impl SoftPurgeReason {
    const ALL: [SoftPurgeReason; 5] = [
        SoftPurgeReason::Trimmed,
        SoftPurgeReason::Reset,
        SoftPurgeReason::Lagging,
        SoftPurgeReason::Unreadable,
        SoftPurgeReason::Joined,
    ];

    /// The label value in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SoftPurgeReason::Trimmed => "trimmed",
            SoftPurgeReason::Reset => "reset",
            SoftPurgeReason::Lagging => "lagging",
            SoftPurgeReason::Unreadable => "unreadable",
            SoftPurgeReason::Joined => "joined",
        }
    }
}

/// The live counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) purges_published: AtomicU64,
    pub(crate) purges_applied: AtomicU64,
    soft_purges: [AtomicU64; 5],
    pub(crate) lag_events: AtomicU64,
    pub(crate) l2_hits: AtomicU64,
    pub(crate) l2_misses: AtomicU64,
    pub(crate) l2_errors: AtomicU64,
    pub(crate) l2_bypassed: AtomicU64,
    pub(crate) l2_writes: AtomicU64,
    pub(crate) l2_too_large: AtomicU64,
    pub(crate) leases_won: AtomicU64,
    pub(crate) leases_lost: AtomicU64,
    pub(crate) lease_waits_timed_out: AtomicU64,
    pub(crate) redis_errors: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

pub(crate) fn incr(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Counters {
    pub(crate) fn soft_purge(&self, reason: SoftPurgeReason) {
        incr(&self.soft_purges[reason as usize]);
    }
}

/// A snapshot of the cluster link: the bus, the second-level cache and the leases.
#[derive(Clone, Debug, Default)]
pub struct ClusterStats {
    /// How long since the host last knew it had read every purge.
    pub bus_lag: Duration,
    /// Whether the host is cut off longer than `max_lag` (nothing is served as fresh).
    pub lagging: bool,
    /// Whether the host has read every purge within `max_lag`: a health check for the load
    /// balancer, false until the first read of the bus.
    pub caught_up: bool,
    /// Whether Redis answered the last operation.
    pub connected: bool,
    /// Own purges applied locally but not yet on the stream (Redis unreachable).
    pub outbox: usize,
    /// Own purges appended to the stream.
    pub purges_published: u64,
    /// Other hosts' purges read from the stream and applied.
    pub purges_applied: u64,
    /// Soft purges of everything the host made on its own, by reason.
    pub soft_purges: Vec<(SoftPurgeReason, u64)>,
    /// Times the host went past `max_lag`.
    pub lag_events: u64,
    /// Local misses answered from the second-level cache.
    pub l2_hits: u64,
    /// Local misses the second-level cache could not answer.
    pub l2_misses: u64,
    /// Second-level reads or writes that failed (timeout, Redis error, unreadable entry).
    pub l2_errors: u64,
    /// Local misses that skipped the second-level cache because Redis was known to be down.
    pub l2_bypassed: u64,
    /// Responses written to the second-level cache.
    pub l2_writes: u64,
    /// Responses not written because their body was above the limit.
    pub l2_too_large: u64,
    /// Fill leases taken.
    pub leases_won: u64,
    /// Fills that found another host's lease and waited for it.
    pub leases_lost: u64,
    /// Waits for another host's fill that ended at the lock timeout (the host then fetched).
    pub lease_waits_timed_out: u64,
    /// Redis operations that failed or timed out.
    pub redis_errors: u64,
    /// Connections to Redis opened again after a failure.
    pub reconnects: u64,
}

impl ClusterStats {
    pub(crate) fn from_counters(c: &Counters) -> Self {
        ClusterStats {
            purges_published: get(&c.purges_published),
            purges_applied: get(&c.purges_applied),
            soft_purges: SoftPurgeReason::ALL
                .iter()
                .map(|r| (*r, get(&c.soft_purges[*r as usize])))
                .collect(),
            lag_events: get(&c.lag_events),
            l2_hits: get(&c.l2_hits),
            l2_misses: get(&c.l2_misses),
            l2_errors: get(&c.l2_errors),
            l2_bypassed: get(&c.l2_bypassed),
            l2_writes: get(&c.l2_writes),
            l2_too_large: get(&c.l2_too_large),
            leases_won: get(&c.leases_won),
            leases_lost: get(&c.leases_lost),
            lease_waits_timed_out: get(&c.lease_waits_timed_out),
            redis_errors: get(&c.redis_errors),
            reconnects: get(&c.reconnects),
            ..Default::default()
        }
    }

    /// Soft purges of everything made for `reason`.
    pub fn soft_purges_for(&self, reason: SoftPurgeReason) -> u64 {
        self.soft_purges
            .iter()
            .find(|(r, _)| *r == reason)
            .map_or(0, |(_, n)| *n)
    }

    /// The snapshot in the Prometheus text format, every metric named `{prefix}_...`
    /// (for instance `peakcache_cluster_bus_lag_seconds`).
    pub fn to_prometheus(&self, prefix: &str) -> String {
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: &[(&str, String)]| {
            let _ = writeln!(
                out,
                "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} {kind}"
            );
            for (labels, value) in rows {
                let _ = writeln!(out, "{prefix}_{name}{labels} {value}");
            }
        };
        let one = |v: u64| [("", v.to_string())];
        family(
            "bus_lag_seconds",
            "gauge",
            "Time since the host last knew it had read every purge.",
            &[("", format!("{:.3}", self.bus_lag.as_secs_f64()))],
        );
        family(
            "lagging",
            "gauge",
            "1 while the host is cut off from the bus longer than max_lag: nothing is served as fresh.",
            &one(u64::from(self.lagging)),
        );
        family(
            "caught_up",
            "gauge",
            "1 once the host has read the bus to its end, while it stays within max_lag (readiness).",
            &one(u64::from(self.caught_up)),
        );
        family(
            "connected",
            "gauge",
            "1 while Redis answers.",
            &one(u64::from(self.connected)),
        );
        family(
            "outbox",
            "gauge",
            "Own purges applied locally, waiting for Redis to be published.",
            &one(self.outbox as u64),
        );
        family(
            "purges_published_total",
            "counter",
            "Own purges appended to the stream.",
            &one(self.purges_published),
        );
        family(
            "purges_applied_total",
            "counter",
            "Other hosts' purges read from the stream and applied.",
            &one(self.purges_applied),
        );
        let reasons: Vec<(String, String)> = self
            .soft_purges
            .iter()
            .map(|(r, n)| (format!("{{reason=\"{}\"}}", r.as_str()), n.to_string()))
            .collect();
        let reasons: Vec<(&str, String)> = reasons
            .iter()
            .map(|(l, v)| (l.as_str(), v.clone()))
            .collect();
        family(
            "soft_purges_everything_total",
            "counter",
            "Times the host marked every entry stale because it may have missed purges.",
            &reasons,
        );
        family(
            "lag_events_total",
            "counter",
            "Times the host was cut off from the bus longer than max_lag.",
            &one(self.lag_events),
        );
        family(
            "l2_lookups_total",
            "counter",
            "Local misses by what the second-level cache answered.",
            &[
                ("{result=\"hit\"}", self.l2_hits.to_string()),
                ("{result=\"miss\"}", self.l2_misses.to_string()),
                ("{result=\"error\"}", self.l2_errors.to_string()),
                ("{result=\"bypassed\"}", self.l2_bypassed.to_string()),
            ],
        );
        family(
            "l2_writes_total",
            "counter",
            "Responses written to the second-level cache.",
            &one(self.l2_writes),
        );
        family(
            "l2_too_large_total",
            "counter",
            "Responses not written to the second-level cache: body above the limit.",
            &one(self.l2_too_large),
        );
        family(
            "leases_total",
            "counter",
            "Fill leases by outcome: won (this host fetched) or lost (waited for another host).",
            &[
                ("{result=\"won\"}", self.leases_won.to_string()),
                ("{result=\"lost\"}", self.leases_lost.to_string()),
            ],
        );
        family(
            "lease_waits_timed_out_total",
            "counter",
            "Waits for another host's fill that reached the lock timeout.",
            &one(self.lease_waits_timed_out),
        );
        family(
            "redis_errors_total",
            "counter",
            "Redis operations that failed or timed out.",
            &one(self.redis_errors),
        );
        family(
            "reconnects_total",
            "counter",
            "Connections to Redis opened again after a failure.",
            &one(self.reconnects),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_every_family_once() {
        let c = Counters::default();
        c.soft_purge(SoftPurgeReason::Trimmed);
        incr(&c.l2_hits);
        let mut s = ClusterStats::from_counters(&c);
        s.bus_lag = Duration::from_millis(1500);
        s.lagging = true;
        let text = s.to_prometheus("peakcache_cluster");
        assert!(text.contains("peakcache_cluster_bus_lag_seconds 1.500\n"));
        assert!(text.contains("peakcache_cluster_lagging 1\n"));
        assert!(
            text.contains("peakcache_cluster_soft_purges_everything_total{reason=\"trimmed\"} 1\n")
        );
        assert!(text.contains("peakcache_cluster_l2_lookups_total{result=\"hit\"} 1\n"));
        assert_eq!(s.soft_purges_for(SoftPurgeReason::Trimmed), 1);
        assert_eq!(
            text.matches("# TYPE peakcache_cluster_leases_total")
                .count(),
            1
        );
    }
}
