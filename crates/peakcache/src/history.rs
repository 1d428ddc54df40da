//! The per-second history of a cache, the JSON every host serves, and the live status page.
//!
//! A host samples the cumulative [`Stats`] (and its own counts: visitor requests and errors,
//! origin requests and errors, see [`HostCounts`]) once a second into a ring of
//! [`HISTORY_SECONDS`] samples. The hit path never touches it: sampling reads the counters the
//! cache keeps anyway. The ring is a plain slice of atomic words, so it can live in the cache
//! handle ([`LocalHistory`]) or in a shared memory region (peakcache-shm), where every process
//! attached samples into the same ring: whichever process first moves the ring's second
//! forward (a compare-and-swap, no lock) writes that second's sample, the others skip it.
//!
//! Each slot is written like a sequence lock: its second is cleared, the values stored, then
//! the second stored again; a reader keeps a slot only if its second is the one it expects
//! before and after copying it. A process that dies half-way leaves a slot with no second:
//! skipped, never torn.
//!
//! # The JSON (one shape for every host)
//!
//! [`status_json`] writes the counters of [`Stats`] (each under its field name), then
//! `"frozen"`, `"host"` (the host's totals, [`HOST_FIELDS`]), `"now"` (Unix seconds) and
//! `"history"`: an object of arrays, one value per sample, oldest first: `"t"` (the Unix
//! second of the sample), `"dt"` (the seconds since the sample before it), then every name of
//! [`SERIES`]: for counters the increase over `dt` seconds, for gauges (`entries`, `weight`,
//! `capacity`, `fills_in_flight`, `frozen`) the value at `t`.

use crate::Stats;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Seconds of history kept: a little over 17 minutes.
pub const HISTORY_SECONDS: u64 = 1024;

/// What a host counts itself and adds with [`History::add_host`]: the cache cannot tell a
/// visitor from a lookup (a request may look up several keys, or none), nor which answers the
/// host turned into errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostCounts {
    /// Requests from visitors that this cache's host answered.
    pub visitor_requests: u64,
    /// Answers with a 5xx status the host sent to visitors.
    pub visitor_errors: u64,
    /// Requests the host sent to the origin (fills, refreshes, probes, pass-through).
    pub origin_requests: u64,
    /// Origin requests that failed: no answer, a timeout, or a 5xx.
    pub origin_errors: u64,
}

/// The names of [`HostCounts`]' fields, in order.
pub const HOST_FIELDS: [&str; 4] = [
    "visitor_requests",
    "visitor_errors",
    "origin_requests",
    "origin_errors",
];

/// The series of a sample, in order. The first [`COUNTERS`] are cumulative counters (the JSON
/// gives their increase per sample), the rest gauges.
pub const SERIES: [&str; 23] = [
    "visitor_requests",
    "visitor_errors",
    "origin_requests",
    "origin_errors",
    "lookups",
    "fresh",
    "stale",
    "stale_if_error",
    "miss",
    "wait",
    "pass",
    "wait_timeouts",
    "fills_committed",
    "fills_failed",
    "refreshes_started",
    "refreshes_failed",
    "evictions",
    "purges",
    "tag_purges",
    "entries",
    "weight",
    "capacity",
    "fills_in_flight",
];

/// How many of [`SERIES`] are counters; the others are gauges.
pub const COUNTERS: usize = 19;

/// Values of a sample: the [`SERIES`], then the frozen flag (0 or 1).
pub const VALUES: usize = SERIES.len() + 1;

/// Words before the ring: the ring's second, the periodic claim's second, the host totals.
const HEAD_WORDS: usize = 8;
const W_SECOND: usize = 0;
const W_CLAIM: usize = 1;
const W_HOST: usize = 2;
/// Words per slot: its second, then the values.
const SLOT_WORDS: usize = 1 + VALUES;

/// Atomic words a ring needs ([`History::new`]): about 200 KiB.
pub const HISTORY_WORDS: usize = HEAD_WORDS + HISTORY_SECONDS as usize * SLOT_WORDS;

/// One second's sample: its Unix second and its values ([`SERIES`], then frozen).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// The Unix second it was taken in.
    pub second: u64,
    /// The values: cumulative counters, then gauges, then frozen (0 or 1).
    pub values: [u64; VALUES],
}

impl Sample {
    /// The value of the series named `name` (a name of [`SERIES`], or `"frozen"`).
    pub fn get(&self, name: &str) -> Option<u64> {
        if name == "frozen" {
            return Some(self.values[VALUES - 1]);
        }
        SERIES
            .iter()
            .position(|s| *s == name)
            .map(|i| self.values[i])
    }
}

/// The values of a sample taken now: the cache's counters, the host's totals, and gauges.
/// Fills in flight are told from the counters (fills and refreshes started, less those that
/// ended), so the hit path keeps no gauge of its own.
pub fn sample_values(stats: &Stats, frozen: bool, host: &HostCounts) -> [u64; VALUES] {
    let ended = stats.fills_committed
        + stats.fills_failed
        + stats.fills_abandoned
        + stats.fills_uncacheable
        + stats.refreshes_committed
        + stats.refreshes_failed
        + stats.refreshes_abandoned
        + stats.refreshes_uncacheable;
    let in_flight = (stats.miss + stats.refreshes_started).saturating_sub(ended);
    [
        host.visitor_requests,
        host.visitor_errors,
        host.origin_requests,
        host.origin_errors,
        stats.lookups(),
        stats.fresh,
        stats.stale,
        stats.stale_if_error,
        stats.miss,
        stats.wait,
        stats.pass,
        stats.wait_timeouts,
        stats.fills_committed,
        stats.fills_failed,
        stats.refreshes_started,
        stats.refreshes_failed,
        stats.evictions,
        stats.purges,
        stats.tag_purges,
        stats.entries,
        stats.weight,
        stats.capacity,
        in_flight,
        u64::from(frozen),
    ]
}

/// The current Unix second (0 if the clock is before 1970).
pub fn unix_second() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A ring of per-second samples over [`HISTORY_WORDS`] atomic words that may be shared
/// between processes. Every method is lock-free.
#[derive(Clone, Copy)]
pub struct History<'a> {
    words: &'a [AtomicU64],
}

impl<'a> History<'a> {
    /// A ring over `words` (zeroed when new: an empty ring), or `None` if there are fewer than
    /// [`HISTORY_WORDS`].
    pub fn new(words: &'a [AtomicU64]) -> Option<History<'a>> {
        (words.len() >= HISTORY_WORDS).then_some(History {
            words: &words[..HISTORY_WORDS],
        })
    }

    /// Adds a host's counts to its totals (a few atomic adds: call it once a second with what
    /// was counted since, not once a request).
    pub fn add_host(&self, counts: &HostCounts) {
        let add = [
            counts.visitor_requests,
            counts.visitor_errors,
            counts.origin_requests,
            counts.origin_errors,
        ];
        for (i, n) in add.into_iter().enumerate() {
            if n > 0 {
                self.words[W_HOST + i].fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// The host's totals so far.
    pub fn host_totals(&self) -> HostCounts {
        let w = |i: usize| self.words[W_HOST + i].load(Ordering::Relaxed);
        HostCounts {
            visitor_requests: w(0),
            visitor_errors: w(1),
            origin_requests: w(2),
            origin_errors: w(3),
        }
    }

    /// Records the sample of `second` unless one was recorded for it (or a later second)
    /// already: true if this caller won the second and wrote `values()`, which is only called
    /// then.
    pub fn record(&self, second: u64, values: impl FnOnce() -> [u64; VALUES]) -> bool {
        let last = self.words[W_SECOND].load(Ordering::Acquire);
        if second == 0 || second <= last && last <= second + HISTORY_SECONDS {
            // Already sampled; a clock set back by more than the ring starts it over.
            return false;
        }
        if self.words[W_SECOND]
            .compare_exchange(last, second, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        let slot = self.slot(second);
        slot[0].store(0, Ordering::Release);
        for (w, v) in slot[1..].iter().zip(values()) {
            w.store(v, Ordering::Relaxed);
        }
        slot[0].store(second, Ordering::Release);
        true
    }

    /// True for exactly one caller per `every` seconds (the first to ask once `every` seconds
    /// have passed since the last claim): who writes a periodic snapshot, for instance.
    pub fn claim_every(&self, second: u64, every: u64) -> bool {
        let last = self.words[W_CLAIM].load(Ordering::Acquire);
        if every == 0 || (second < last.saturating_add(every) && last <= second) {
            return false;
        }
        self.words[W_CLAIM]
            .compare_exchange(last, second, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// Starts the periodic claim's interval over from `second` (a snapshot just written on
    /// demand need not be written again at once).
    pub fn reset_claim(&self, second: u64) {
        self.words[W_CLAIM].store(second, Ordering::Release);
    }

    fn slot(&self, second: u64) -> &[AtomicU64] {
        let at = HEAD_WORDS + (second % HISTORY_SECONDS) as usize * SLOT_WORDS;
        &self.words[at..at + SLOT_WORDS]
    }

    /// The sample of `second`, if one was recorded and is still in the ring.
    pub fn sample(&self, second: u64) -> Option<Sample> {
        let slot = self.slot(second);
        if second == 0 || slot[0].load(Ordering::Acquire) != second {
            return None;
        }
        let mut values = [0u64; VALUES];
        for (v, w) in values.iter_mut().zip(&slot[1..]) {
            *v = w.load(Ordering::Relaxed);
        }
        std::sync::atomic::fence(Ordering::Acquire);
        (slot[0].load(Ordering::Relaxed) == second).then_some(Sample { second, values })
    }

    /// The samples recorded for the seconds `from..=to`, oldest first.
    pub fn samples(&self, from: u64, to: u64) -> Vec<Sample> {
        let from = from.max(to.saturating_sub(HISTORY_SECONDS - 1));
        (from..=to).filter_map(|s| self.sample(s)).collect()
    }

    /// The newest second sampled (0 if none).
    pub fn last_second(&self) -> u64 {
        self.words[W_SECOND].load(Ordering::Acquire)
    }

    /// The `"history"` object of [`status_json`] for the `seconds` up to `now` (at most
    /// [`HISTORY_SECONDS`] - 1).
    pub fn to_json(&self, now: u64, seconds: u64) -> String {
        let seconds = seconds.min(HISTORY_SECONDS - 1);
        // One sample before the window gives its first increase; a gap before it is looked
        // past for up to a minute.
        let lookback = (seconds + 60).min(HISTORY_SECONDS - 1);
        let all = self.samples(now.saturating_sub(lookback), now);
        let first = now.saturating_sub(seconds.saturating_sub(1));
        let mut cols: Vec<String> = vec![String::new(); SERIES.len() + 3];
        let mut n = 0;
        for pair in all.windows(2) {
            let (prev, cur) = (&pair[0], &pair[1]);
            if cur.second < first || seconds == 0 {
                continue;
            }
            let sep = if n == 0 { "" } else { "," };
            n += 1;
            let _ = write!(cols[0], "{sep}{}", cur.second);
            let _ = write!(cols[1], "{sep}{}", cur.second - prev.second);
            for (i, col) in cols[2..2 + SERIES.len()].iter_mut().enumerate() {
                let v = if i < COUNTERS {
                    // A region made anew restarts its counters: no negative rates.
                    cur.values[i].saturating_sub(prev.values[i])
                } else {
                    cur.values[i]
                };
                let _ = write!(col, "{sep}{v}");
            }
            let _ = write!(cols[2 + SERIES.len()], "{sep}{}", cur.values[VALUES - 1]);
        }
        let mut out = format!("{{\"seconds\":{seconds}");
        let names = ["t", "dt"]
            .into_iter()
            .chain(SERIES)
            .chain(std::iter::once("frozen"));
        for (name, col) in names.zip(&cols) {
            let _ = write!(out, ",\"{name}\":[{col}]");
        }
        out.push('}');
        out
    }
}

/// A ring in this process's memory, for a cache in the process (the proxy, a local cache
/// behind the C ABI).
pub struct LocalHistory {
    words: Box<[AtomicU64]>,
}

impl Default for LocalHistory {
    fn default() -> Self {
        LocalHistory {
            words: (0..HISTORY_WORDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl std::fmt::Debug for LocalHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalHistory")
            .field("last_second", &self.ring().last_second())
            .finish()
    }
}

impl LocalHistory {
    /// The ring.
    pub fn ring(&self) -> History<'_> {
        History { words: &self.words }
    }
}

/// The counters of [`Stats`] by name, in the order of the JSON and of the C ABI's
/// `peakcache_stats`.
pub fn stats_fields(s: &Stats) -> [(&'static str, u64); 28] {
    [
        ("lookups", s.lookups()),
        ("fresh", s.fresh),
        ("stale", s.stale),
        ("stale_if_error", s.stale_if_error),
        ("miss", s.miss),
        ("wait", s.wait),
        ("pass", s.pass),
        ("wait_timeouts", s.wait_timeouts),
        ("fills_committed", s.fills_committed),
        ("fills_failed", s.fills_failed),
        ("fills_abandoned", s.fills_abandoned),
        ("fills_uncacheable", s.fills_uncacheable),
        ("refreshes_started", s.refreshes_started),
        ("refreshes_committed", s.refreshes_committed),
        ("refreshes_failed", s.refreshes_failed),
        ("refreshes_abandoned", s.refreshes_abandoned),
        ("refreshes_uncacheable", s.refreshes_uncacheable),
        ("inserts", s.inserts),
        ("rejected_too_large", s.rejected_too_large),
        ("evictions", s.evictions),
        ("expirations", s.expirations),
        ("purges", s.purges),
        ("tag_purges", s.tag_purges),
        ("entries", s.entries),
        ("weight", s.weight),
        ("capacity", s.capacity),
        ("tag_marks", s.tag_marks),
        ("tag_folds", s.tag_folds),
    ]
}

/// The counters as one JSON object, `{"lookups":N,"fresh":N,...}` ([`stats_fields`]).
pub fn stats_json(s: &Stats) -> String {
    let mut out = String::from("{");
    for (i, (name, v)) in stats_fields(s).iter().enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(out, "{sep}\"{name}\":{v}");
    }
    out.push('}');
    out
}

/// The status document every host serves (see the [module docs](self)): the counters, the
/// frozen flag, the host's totals, the current Unix second and the last `seconds` of history
/// (none for 0).
pub fn status_json(stats: &Stats, frozen: bool, history: History<'_>, seconds: u64) -> String {
    let now = unix_second().max(history.last_second());
    let mut out = stats_json(stats);
    out.pop();
    let host = history.host_totals();
    let _ = write!(out, ",\"frozen\":{frozen},\"host\":{{");
    let totals = [
        host.visitor_requests,
        host.visitor_errors,
        host.origin_requests,
        host.origin_errors,
    ];
    for (i, (name, v)) in HOST_FIELDS.iter().zip(totals).enumerate() {
        let sep = if i == 0 { "" } else { "," };
        let _ = write!(out, "{sep}\"{name}\":{v}");
    }
    let _ = write!(
        out,
        "}},\"now\":{now},\"history\":{}}}",
        history.to_json(now, seconds)
    );
    out
}

/// The Prometheus text (0.0.4) of what the history adds to [`Stats::to_prometheus`]: the hosts'
/// totals (`peakcache_visitor_requests_total`, `peakcache_visitor_errors_total`,
/// `peakcache_origin_requests_total`, `peakcache_origin_errors_total`), `peakcache_frozen`,
/// `peakcache_fills_in_flight` and `peakcache_history_last_sample_seconds` (the Unix second
/// of the newest sample: a host whose timer stopped shows here).
pub fn history_prometheus(stats: &Stats, frozen: bool, history: History<'_>) -> String {
    let host = history.host_totals();
    let in_flight = sample_values(stats, frozen, &host)[SERIES.len() - 1];
    let mut out = String::new();
    for (name, kind, help, v) in [
        (
            "visitor_requests_total",
            "counter",
            "Requests from visitors the host answered.",
            host.visitor_requests,
        ),
        (
            "visitor_errors_total",
            "counter",
            "Answers with a 5xx status the host sent to visitors.",
            host.visitor_errors,
        ),
        (
            "origin_requests_total",
            "counter",
            "Requests the host sent to the origin.",
            host.origin_requests,
        ),
        (
            "origin_errors_total",
            "counter",
            "Origin requests that failed (no answer, a timeout or a 5xx).",
            host.origin_errors,
        ),
        (
            "frozen",
            "gauge",
            "1 while the cache is frozen (stored copies served as fresh).",
            u64::from(frozen),
        ),
        (
            "fills_in_flight",
            "gauge",
            "Fills and refreshes started and not ended.",
            in_flight,
        ),
        (
            "history_last_sample_seconds",
            "gauge",
            "Unix second of the newest history sample.",
            history.last_second(),
        ),
    ] {
        let _ = write!(out, "# HELP peakcache_{name} {help}\n# TYPE peakcache_{name} {kind}\npeakcache_{name} {v}\n");
    }
    out
}

/// The live status page: one self-contained HTML file (inline CSS, JavaScript and SVG, no
/// external asset) that polls `?history=…` JSON from its own URL every second. Served by
/// every host.
pub const STATUS_PAGE: &str = include_str!("status.html");

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> LocalHistory {
        LocalHistory::default()
    }

    fn values(v: u64) -> [u64; VALUES] {
        [v; VALUES]
    }

    #[test]
    fn one_sample_per_second_whoever_asks() {
        let h = ring();
        let r = h.ring();
        assert!(r.record(1000, || values(1)));
        assert!(!r.record(1000, || panic!("second already sampled")));
        assert!(!r.record(999, || panic!("an earlier second")));
        assert!(r.record(1001, || values(2)));
        assert_eq!(r.sample(1000).unwrap().values, values(1));
        assert_eq!(r.sample(1001).unwrap().values, values(2));
        assert_eq!(r.sample(1002), None);
    }

    #[test]
    fn the_ring_keeps_fifteen_minutes_and_forgets_older() {
        let h = ring();
        let r = h.ring();
        for s in 1..=2000 {
            r.record(s, || values(s));
        }
        assert_eq!(r.samples(2000 - 900, 2000).len(), 901);
        assert_eq!(r.sample(2000 - HISTORY_SECONDS), None);
        assert_eq!(r.samples(1, 2000).len(), HISTORY_SECONDS as usize);
    }

    #[test]
    fn a_clock_set_far_back_starts_the_ring_over() {
        let h = ring();
        let r = h.ring();
        assert!(r.record(1_000_000, || values(1)));
        assert!(!r.record(1_000_000 - 10, || values(2)));
        assert!(r.record(1_000_000 - 10 - HISTORY_SECONDS * 2, || values(3)));
    }

    #[test]
    fn concurrent_samplers_write_each_second_once() {
        let h = ring();
        let wins = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for sec in 1..=500 {
                        if h.ring().record(sec, || values(sec)) {
                            wins.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let got = h.ring().samples(1, 500);
        assert!(wins.load(Ordering::Relaxed) as usize == got.len());
        assert!(got.iter().all(|s| s.values == values(s.second)));
    }

    #[test]
    fn host_counts_add_up() {
        let h = ring();
        let c = HostCounts {
            visitor_requests: 10,
            visitor_errors: 1,
            origin_requests: 2,
            origin_errors: 1,
        };
        h.ring().add_host(&c);
        h.ring().add_host(&c);
        assert_eq!(h.ring().host_totals().visitor_requests, 20);
        assert_eq!(h.ring().host_totals().origin_errors, 2);
    }

    #[test]
    fn json_gives_increases_of_counters_and_values_of_gauges() {
        let h = ring();
        let r = h.ring();
        let mut stats = Stats::default();
        let mut host = HostCounts::default();
        for s in 100..=103 {
            stats.fresh += 10;
            stats.miss += 1;
            stats.entries = s;
            host.visitor_requests += 11;
            if s != 102 {
                r.record(s, || sample_values(&stats, s == 103, &host));
            }
        }
        let j = r.to_json(103, 3);
        assert!(j.contains("\"t\":[101,103]"), "{j}");
        assert!(j.contains("\"dt\":[1,2]"), "{j}");
        assert!(j.contains("\"visitor_requests\":[11,22]"), "{j}");
        assert!(j.contains("\"fresh\":[10,20]"), "{j}");
        assert!(j.contains("\"entries\":[101,103]"), "{j}");
        assert!(j.contains("\"frozen\":[0,1]"), "{j}");
        assert!(j.contains("\"fills_in_flight\":[2,4]"), "{j}");
    }

    #[test]
    fn status_json_has_counters_host_totals_and_history() {
        let h = ring();
        h.ring().add_host(&HostCounts {
            visitor_errors: 3,
            ..HostCounts::default()
        });
        let s = Stats {
            fresh: 7,
            ..Stats::default()
        };
        let j = status_json(&s, true, h.ring(), 10);
        assert!(j.starts_with("{\"lookups\":7,\"fresh\":7,"), "{j}");
        assert!(
            j.contains("\"frozen\":true,\"host\":{\"visitor_requests\":0,\"visitor_errors\":3,")
        );
        assert!(j.contains(",\"history\":{\"seconds\":10,\"t\":[]"), "{j}");
        assert!(j.ends_with("]}}"), "{j}");
    }

    #[test]
    fn periodic_claims_go_to_one_caller_per_interval() {
        let h = ring();
        let r = h.ring();
        assert!(r.claim_every(1000, 60));
        assert!(!r.claim_every(1000, 60));
        assert!(!r.claim_every(1059, 60));
        assert!(r.claim_every(1060, 60));
        r.reset_claim(1100);
        assert!(!r.claim_every(1130, 60));
        assert!(!r.claim_every(1130, 0));
    }

    #[test]
    fn prometheus_carries_host_totals_and_gauges() {
        let h = ring();
        h.ring().add_host(&HostCounts {
            origin_errors: 4,
            ..HostCounts::default()
        });
        let stats = Stats {
            miss: 3,
            fills_committed: 1,
            ..Stats::default()
        };
        let text = history_prometheus(&stats, true, h.ring());
        assert!(
            text.contains("\npeakcache_origin_errors_total 4\n"),
            "{text}"
        );
        assert!(text.contains("\npeakcache_frozen 1\n"));
        assert!(text.contains("\npeakcache_fills_in_flight 2\n"));
        assert!(text.contains("# TYPE peakcache_visitor_requests_total counter\n"));
    }

    #[test]
    fn the_page_is_self_contained() {
        let page = STATUS_PAGE.to_ascii_lowercase();
        assert!(page.starts_with("<!doctype html>"));
        for external in ["src=\"http", "href=\"http", "@import", "url(http", "<link "] {
            assert!(!page.contains(external), "{external}");
        }
        assert!(page.contains("name=\"viewport\""));
    }
}
