//! Counters for every lookup outcome and every fill, cheap enough to stay on in production.
//!
//! Each counter is striped: a thread adds to the stripe it claimed on first use, so two cores
//! counting hits never write the same cache line. While fewer than `STRIPES` threads are alive,
//! each owns its stripe alone and adds with a plain load and store (no locked instruction on
//! the hit path); threads beyond that share stripe 0, never owned, and add atomically. A
//! snapshot sums the stripes.

use crate::lifecycle::Served;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Everything a cache counts, named once for every backend: the in-process cache keeps them
/// in striped counters, the shared-memory tier (`peakcache-shm`) in its region's shards. The
/// lookup outcomes (`Fresh` to `Pass`) add up to the number of lookups. Each is the
/// [`Stats`] field of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    /// [`Stats::fresh`].
    Fresh,
    /// [`Stats::stale`].
    Stale,
    /// [`Stats::stale_if_error`].
    StaleIfError,
    /// [`Stats::miss`].
    Miss,
    /// [`Stats::wait`].
    Wait,
    /// [`Stats::pass`].
    Pass,
    /// [`Stats::wait_timeouts`].
    WaitTimeout,
    /// [`Stats::fills_committed`].
    FillsCommitted,
    /// [`Stats::fills_failed`].
    FillsFailed,
    /// [`Stats::fills_abandoned`].
    FillsAbandoned,
    /// [`Stats::fills_uncacheable`].
    FillsUncacheable,
    /// [`Stats::refreshes_started`].
    RefreshesStarted,
    /// [`Stats::refreshes_committed`].
    RefreshesCommitted,
    /// [`Stats::refreshes_failed`].
    RefreshesFailed,
    /// [`Stats::refreshes_abandoned`].
    RefreshesAbandoned,
    /// [`Stats::refreshes_uncacheable`].
    RefreshesUncacheable,
    /// [`Stats::inserts`].
    Inserts,
    /// [`Stats::rejected_too_large`].
    RejectedTooLarge,
    /// [`Stats::evictions`].
    Evictions,
    /// [`Stats::expirations`].
    Expirations,
    /// [`Stats::purges`].
    Purges,
    /// [`Stats::tag_purges`].
    TagPurges,
}

impl Counter {
    /// How many counters there are: `c as usize` is below it for every counter `c`.
    pub const COUNT: usize = Counter::TagPurges as usize + 1;

    /// The counter of a lookup served `served`.
    pub fn served(served: Served) -> Counter {
        match served {
            Served::Fresh => Counter::Fresh,
            Served::Stale => Counter::Stale,
            Served::StaleIfError => Counter::StaleIfError,
        }
    }
}

const COUNTERS: usize = Counter::COUNT;
const STRIPES: usize = 64;

#[repr(align(128))]
struct Stripe([AtomicU64; COUNTERS]);

/// The striped counters of one cache.
pub(crate) struct Counters {
    stripes: Box<[Stripe; STRIPES]>,
}

/// Which stripe indexes a live thread owns (the same index in every cache).
static CLAIMED: [AtomicBool; STRIPES] = [const { AtomicBool::new(false) }; STRIPES];

/// This thread's stripe: `UNCLAIMED` before its first count, `SHARED` when it owns none (it
/// adds atomically to stripe 0), else the stripe it owns alone. A constant without destructor,
/// so reading it on the hit path is one load.
const UNCLAIMED: usize = 0;
const SHARED: usize = usize::MAX;

thread_local! {
    static STRIPE: Cell<usize> = const { Cell::new(UNCLAIMED) };
    /// Releases the owned stripe when the thread ends.
    static CLAIM: Claim = Claim::new();
}

/// The ownership of a stripe, released when its thread ends.
struct Claim(usize);

impl Claim {
    fn new() -> Self {
        // Stripe 0 is never owned: it is where threads without a stripe of their own add.
        for (index, flag) in CLAIMED.iter().enumerate().skip(1) {
            // Acquire: see the counts the stripe's previous owner wrote before releasing it.
            if flag
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Claim(index);
            }
        }
        Claim(SHARED)
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Counts from later destructors of this thread go to the shared stripe.
        let _ = STRIPE.try_with(|s| s.set(SHARED));
        if self.0 != SHARED {
            CLAIMED[self.0].store(false, Ordering::Release);
        }
    }
}

/// This thread's stripe, claiming one on its first count.
#[inline]
fn stripe() -> usize {
    let s = STRIPE.with(Cell::get);
    if s != UNCLAIMED {
        return s;
    }
    let claimed = CLAIM.try_with(|c| c.0).unwrap_or(SHARED);
    STRIPE.with(|s| s.set(claimed));
    claimed
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            stripes: Box::new(std::array::from_fn(|_| {
                Stripe(std::array::from_fn(|_| AtomicU64::new(0)))
            })),
        }
    }

    /// Adds one to `c`.
    #[inline]
    pub(crate) fn incr(&self, c: Counter) {
        self.add(c, 1);
    }

    /// Adds `n` to `c`.
    #[inline]
    pub(crate) fn add(&self, c: Counter, n: u64) {
        match stripe() {
            SHARED => {
                self.stripes[0].0[c as usize].fetch_add(n, Ordering::Relaxed);
            }
            owned => {
                // Only this thread writes this stripe: no read-modify-write needed.
                let cell = &self.stripes[owned % STRIPES].0[c as usize];
                cell.store(
                    cell.load(Ordering::Relaxed).wrapping_add(n),
                    Ordering::Relaxed,
                );
            }
        }
    }

    /// The sum of `c` over every stripe.
    pub(crate) fn get(&self, c: Counter) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[c as usize].load(Ordering::Relaxed))
            .sum()
    }
}

/// A snapshot of a cache's counters and size.
///
/// Lookup outcomes (`fresh + stale + stale_if_error + miss + wait + pass`) add up to
/// [`Stats::lookups`]: every call of `lookup` or `get` is counted exactly once. `wait_timeouts`
/// counts waiters released because a fill outlived the lock timeout or their own timeout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lookups answered with a fresh entry.
    pub fresh: u64,
    /// Lookups answered with a stale entry inside its stale-while-revalidate window.
    pub stale: u64,
    /// Lookups answered with a stale entry inside its stale-if-error window only (the origin is
    /// failing and the key is backing off).
    pub stale_if_error: u64,
    /// Lookups that found nothing servable and got the fill (or, for `get`, nothing).
    pub miss: u64,
    /// Lookups that found another caller filling and got a waiter.
    pub wait: u64,
    /// Lookups of a key marked pass-through (uncacheable) or whose fill was overdue.
    pub pass: u64,
    /// Waiters released without a result: lock timeout or their own timeout.
    pub wait_timeouts: u64,
    /// Fills that stored a value.
    pub fills_committed: u64,
    /// Fills that failed (the origin answered with an error).
    pub fills_failed: u64,
    /// Fills dropped without an answer (one waiter took over).
    pub fills_abandoned: u64,
    /// Fills that learned the answer was not cacheable (the key passes through for a while).
    pub fills_uncacheable: u64,
    /// Refresh tickets handed out.
    pub refreshes_started: u64,
    /// Refreshes that stored a new value.
    pub refreshes_committed: u64,
    /// Refreshes that failed.
    pub refreshes_failed: u64,
    /// Refresh tickets dropped unused.
    pub refreshes_abandoned: u64,
    /// Refreshes that learned the answer is no longer cacheable (the entry is removed).
    pub refreshes_uncacheable: u64,
    /// Values stored with `insert` (outside the lookup lifecycle).
    pub inserts: u64,
    /// Values refused because they weigh more than the object limit.
    pub rejected_too_large: u64,
    /// Live entries evicted to make room.
    pub evictions: u64,
    /// Dead entries (past every window) removed.
    pub expirations: u64,
    /// Keys purged (hard or soft).
    pub purges: u64,
    /// Tags purged (hard or soft).
    pub tag_purges: u64,
    /// Tag purge records kept now: one per tag purged, never more than
    /// [`Builder::max_tag_marks`](crate::Builder::max_tag_marks).
    pub tag_marks: u64,
    /// How many times the tag purge records reached their cap and the oldest half was folded
    /// into one cache-wide record (each fold may purge tagged entries no purge named). Always 0
    /// from the shared-memory tier, whose region does not count its folds.
    pub tag_folds: u64,
    /// Entries stored now.
    pub entries: u64,
    /// Weight of the entries stored now, in the weigher's unit (bytes by default).
    pub weight: u64,
    /// The capacity, in the weigher's unit.
    pub capacity: u64,
}

impl Stats {
    /// Every lookup, counted once: the sum of the lookup outcomes.
    pub fn lookups(&self) -> u64 {
        self.fresh + self.stale + self.stale_if_error + self.miss + self.wait + self.pass
    }

    /// The share of lookups answered from the cache without waiting (fresh, stale and
    /// stale-if-error), between 0 and 1; 0 when there were no lookups.
    pub fn hit_ratio(&self) -> f64 {
        let lookups = self.lookups();
        if lookups == 0 {
            return 0.0;
        }
        (self.fresh + self.stale + self.stale_if_error) as f64 / lookups as f64
    }

    /// The snapshot in the Prometheus text exposition format, every metric named
    /// `{prefix}_...` (for instance `peakcache_lookups_total{outcome="fresh"}`).
    pub fn to_prometheus(&self, prefix: &str) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(
                out,
                "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} {kind}"
            );
            for (labels, value) in rows {
                let _ = writeln!(out, "{prefix}_{name}{labels} {value}");
            }
        };
        family(
            "lookups_total",
            "counter",
            "Lookups by outcome.",
            &[
                ("{outcome=\"fresh\"}", self.fresh),
                ("{outcome=\"stale\"}", self.stale),
                ("{outcome=\"stale_if_error\"}", self.stale_if_error),
                ("{outcome=\"miss\"}", self.miss),
                ("{outcome=\"wait\"}", self.wait),
                ("{outcome=\"pass\"}", self.pass),
            ],
        );
        family(
            "wait_timeouts_total",
            "counter",
            "Waiters released without a result.",
            &[("", self.wait_timeouts)],
        );
        family(
            "fills_total",
            "counter",
            "Fills by how they ended.",
            &[
                ("{result=\"committed\"}", self.fills_committed),
                ("{result=\"failed\"}", self.fills_failed),
                ("{result=\"abandoned\"}", self.fills_abandoned),
                ("{result=\"uncacheable\"}", self.fills_uncacheable),
            ],
        );
        family(
            "refreshes_total",
            "counter",
            "Background refreshes by how they ended (started counts every ticket).",
            &[
                ("{result=\"started\"}", self.refreshes_started),
                ("{result=\"committed\"}", self.refreshes_committed),
                ("{result=\"failed\"}", self.refreshes_failed),
                ("{result=\"abandoned\"}", self.refreshes_abandoned),
                ("{result=\"uncacheable\"}", self.refreshes_uncacheable),
            ],
        );
        family(
            "inserts_total",
            "counter",
            "Values stored outside the lookup lifecycle.",
            &[("", self.inserts)],
        );
        family(
            "rejected_too_large_total",
            "counter",
            "Values refused for their weight.",
            &[("", self.rejected_too_large)],
        );
        family(
            "evictions_total",
            "counter",
            "Live entries evicted for room.",
            &[("", self.evictions)],
        );
        family(
            "expirations_total",
            "counter",
            "Dead entries removed.",
            &[("", self.expirations)],
        );
        family(
            "purges_total",
            "counter",
            "Keys purged.",
            &[("", self.purges)],
        );
        family(
            "tag_purges_total",
            "counter",
            "Tags purged.",
            &[("", self.tag_purges)],
        );
        family(
            "tag_marks",
            "gauge",
            "Tag purge records kept (bounded by max_tag_marks).",
            &[("", self.tag_marks)],
        );
        family(
            "tag_folds_total",
            "counter",
            "Times the oldest half of the tag purge records was folded into a cache-wide one.",
            &[("", self.tag_folds)],
        );
        family("entries", "gauge", "Entries stored.", &[("", self.entries)]);
        family(
            "weight",
            "gauge",
            "Weight stored (bytes with the default weigher).",
            &[("", self.weight)],
        );
        family(
            "capacity",
            "gauge",
            "Capacity, in the weigher's unit.",
            &[("", self.capacity)],
        );
        out
    }

    pub(crate) fn from_counters(c: &Counters) -> Self {
        Stats::from_counts(|k| c.get(k))
    }

    /// Stats whose counters are `count` of each [`Counter`]; the entries, weight, capacity and
    /// tag table figures are 0, for the backend to fill in.
    pub fn from_counts(count: impl Fn(Counter) -> u64) -> Self {
        use Counter::*;
        Stats {
            fresh: count(Fresh),
            stale: count(Stale),
            stale_if_error: count(StaleIfError),
            miss: count(Miss),
            wait: count(Wait),
            pass: count(Pass),
            wait_timeouts: count(WaitTimeout),
            fills_committed: count(FillsCommitted),
            fills_failed: count(FillsFailed),
            fills_abandoned: count(FillsAbandoned),
            fills_uncacheable: count(FillsUncacheable),
            refreshes_started: count(RefreshesStarted),
            refreshes_committed: count(RefreshesCommitted),
            refreshes_failed: count(RefreshesFailed),
            refreshes_abandoned: count(RefreshesAbandoned),
            refreshes_uncacheable: count(RefreshesUncacheable),
            inserts: count(Inserts),
            rejected_too_large: count(RejectedTooLarge),
            evictions: count(Evictions),
            expirations: count(Expirations),
            purges: count(Purges),
            tag_purges: count(TagPurges),
            tag_marks: 0,
            tag_folds: 0,
            entries: 0,
            weight: 0,
            capacity: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};

    #[test]
    fn counts_add_up_with_more_threads_alive_than_stripes() {
        // 80 threads alive at once: 63 own a stripe, the rest share stripe 0 atomically.
        let counters = Arc::new(Counters::new());
        let threads = 80;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (counters, barrier) = (counters.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    for _ in 0..10_000 {
                        counters.incr(Counter::Fresh);
                    }
                    barrier.wait();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(counters.get(Counter::Fresh), 800_000);
    }

    #[test]
    fn prometheus_text_has_a_help_and_type_line_per_family_and_every_value() {
        let stats = Stats {
            fresh: 7,
            fills_committed: 2,
            entries: 3,
            ..Stats::default()
        };
        let text = stats.to_prometheus("peakcache");
        assert!(text.contains("# TYPE peakcache_lookups_total counter\n"));
        assert!(text.contains("peakcache_lookups_total{outcome=\"fresh\"} 7\n"));
        assert!(text.contains("peakcache_fills_total{result=\"committed\"} 2\n"));
        assert!(text.contains("# TYPE peakcache_entries gauge\npeakcache_entries 3\n"));
        let families = text.lines().filter(|l| l.starts_with("# TYPE")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP")).count();
        assert_eq!((families, helps), (15, 15));
    }

    #[test]
    fn every_counter_reaches_its_own_field() {
        let stats = Stats::from_counts(|c| c as u64 + 1);
        let fields = [
            stats.fresh,
            stats.stale,
            stats.stale_if_error,
            stats.miss,
            stats.wait,
            stats.pass,
            stats.wait_timeouts,
            stats.fills_committed,
            stats.fills_failed,
            stats.fills_abandoned,
            stats.fills_uncacheable,
            stats.refreshes_started,
            stats.refreshes_committed,
            stats.refreshes_failed,
            stats.refreshes_abandoned,
            stats.refreshes_uncacheable,
            stats.inserts,
            stats.rejected_too_large,
            stats.evictions,
            stats.expirations,
            stats.purges,
            stats.tag_purges,
        ];
        let want: Vec<u64> = (1..=Counter::COUNT as u64).collect();
        assert_eq!(fields.to_vec(), want);
        assert_eq!(Counter::served(Served::StaleIfError), Counter::StaleIfError);
    }
}
