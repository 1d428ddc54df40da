//! Time as the cache sees it: a monotonic clock that tests can drive by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A monotonic clock. `now` returns the time elapsed since an arbitrary, fixed epoch and never
/// goes backwards.
///
/// The cache reads the clock for every lifecycle decision (fresh or stale, back-off, lock
/// timeout), so tests can make time pass with [`ManualClock`] instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    /// The time elapsed since this clock's epoch.
    fn now(&self) -> Duration;
}

/// The real monotonic clock ([`Instant`]), with its epoch at creation.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    epoch: Instant,
}

impl SystemClock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        SystemClock {
            epoch: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use peakcache::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now(), Duration::from_secs(5));
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.nanos
            .fetch_add(duration_to_nanos(by), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
}

/// Nanoseconds in `d`, saturating at `u64::MAX` (584 years).
pub(crate) fn duration_to_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Milliseconds in `d`, saturating at `u32::MAX` (the cap of [`crate::Freshness::MAX`]).
pub(crate) fn duration_to_millis_u32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Nanoseconds in `ms` milliseconds.
pub(crate) const fn millis_to_nanos(ms: u32) -> u64 {
    ms as u64 * 1_000_000
}
