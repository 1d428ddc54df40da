//! How long an entry is fresh, and how long it may be served stale afterwards.

use crate::clock::duration_to_millis_u32;
use std::time::Duration;

/// The three windows of an entry's life, set when it is stored.
///
/// As in RFC 5861 both stale windows are counted from the moment the entry goes stale:
///
/// ```text
/// fresh_until      = stored_at + ttl
/// revalidate_until = fresh_until + swr   serve stale now, refresh once in the background
/// error_until      = fresh_until + sie   fetch; serve stale only if the fetch fails
/// ```
///
/// Durations are kept to the millisecond and capped at [`Freshness::MAX`] (about 49 days);
/// a longer lifetime is stored as the cap, which only means an earlier refresh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Freshness {
    /// How long the entry is fresh after it is stored.
    pub ttl: Duration,
    /// Stale-while-revalidate: how long after going stale it is served while one caller refreshes it.
    pub swr: Duration,
    /// Stale-if-error: how long after going stale it is served when a fetch fails.
    pub sie: Duration,
}

impl Freshness {
    /// The longest window an entry keeps: `u32::MAX` milliseconds (49 days, 17 hours).
    pub const MAX: Duration = Duration::from_millis(u32::MAX as u64);

    /// Fresh for `ttl`, with no stale windows.
    pub const fn new(ttl: Duration) -> Self {
        Freshness {
            ttl,
            swr: Duration::ZERO,
            sie: Duration::ZERO,
        }
    }

    /// The same freshness with a stale-while-revalidate window of `swr`.
    pub const fn with_swr(mut self, swr: Duration) -> Self {
        self.swr = swr;
        self
    }

    /// The same freshness with a stale-if-error window of `sie`.
    pub const fn with_sie(mut self, sie: Duration) -> Self {
        self.sie = sie;
        self
    }

    /// The windows as every backend stores them: `[ttl, swr, sie]` in whole milliseconds,
    /// each capped at [`Freshness::MAX`].
    pub fn millis(&self) -> [u32; 3] {
        [self.ttl, self.swr, self.sie].map(duration_to_millis_u32)
    }
}
