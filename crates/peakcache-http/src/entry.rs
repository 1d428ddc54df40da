//! What a cache keeps next to a stored response so it can serve it correctly later.

use std::time::{Duration, SystemTime};

use http::HeaderValue;

use crate::age::{age_header_value, age_secs, current_age};
use crate::config::StaleWindows;

/// The kind of stale serving being considered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleUse {
    /// Serving stale while one request refreshes the entry (RFC 5861 §3).
    WhileRevalidate,
    /// Serving stale because the origin failed (RFC 5861 §4).
    IfError,
}

/// Who allowed a stale response to be served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaleGrant {
    /// The origin, through `stale-while-revalidate` / `stale-if-error`.
    Origin,
    /// The operator, through [`Config::default_stale`](crate::Config::default_stale) or
    /// [`Config::grace`](crate::Config::grace); `Cache-Status` reports it as grace.
    Grace,
}

/// Timing facts about a stored response: enough to compute its `Age`, whether it is fresh,
/// and who allows serving it stale. Produced by [`Policy::on_response`](crate::Policy::on_response);
/// keep it with the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    /// When the response was received (the store time).
    pub response_time: SystemTime,
    /// Its `corrected_initial_age` (RFC 9111 §4.2.3): how old it was when received.
    pub initial_age: Duration,
    /// Its freshness lifetime (zero for `no-cache`).
    pub lifetime: Duration,
    /// The stale windows granted in all, counted from the moment it goes stale.
    pub windows: StaleWindows,
    /// The part of `windows` the origin granted; the rest is operator grace.
    pub origin_windows: StaleWindows,
}

impl EntryMeta {
    /// `current_age` at `now` (RFC 9111 §4.2.3): initial age plus time resident in the cache.
    pub fn current_age(&self, now: SystemTime) -> Duration {
        current_age(self.initial_age, self.response_time, now)
    }

    /// The `Age` header value to send with the response at `now` (RFC 9111 §5.1).
    pub fn age_header(&self, now: SystemTime) -> HeaderValue {
        age_header_value(self.current_age(now))
    }

    /// [`age_header`](Self::age_header) as a number: whole seconds, capped at 2^31.
    pub fn age_secs(&self, now: SystemTime) -> u64 {
        age_secs(self.current_age(now))
    }

    /// True while `current_age < lifetime` (RFC 9111 §4.2).
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.current_age(now) < self.lifetime
    }

    /// How long the response has been stale at `now`; zero while fresh.
    pub fn staleness(&self, now: SystemTime) -> Duration {
        self.current_age(now).saturating_sub(self.lifetime)
    }

    /// Remaining freshness in whole seconds, negative once stale: the `ttl` parameter of
    /// `Cache-Status` (RFC 9211 §2.5).
    pub fn ttl_secs(&self, now: SystemTime) -> i64 {
        let age = self.current_age(now).as_secs();
        let life = self.lifetime.as_secs();
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        if life >= age {
            clamp(life - age)
        } else {
            -clamp(age - life)
        }
    }

    /// The first instant after `now` at which [`age_header`](Self::age_header) or
    /// [`ttl_secs`](Self::ttl_secs) says something else: the next whole second of
    /// `current_age` (which grows with the time resident in the cache, and stands still at the
    /// initial age before `response_time`). Both say the same from `now` until then. `None`
    /// past the representable time.
    pub fn age_changes_at(&self, now: SystemTime) -> Option<SystemTime> {
        let next = Duration::from_secs(self.current_age(now).as_secs().checked_add(1)?);
        // current_age(t) = initial_age + (t - response_time) reaches `next` here; `next` is
        // above the initial age, so the instant is past `now` and past `response_time`.
        self.response_time
            .checked_add(next.checked_sub(self.initial_age)?)
    }

    /// Whether, and by whom, serving this response stale in the `kind` way is allowed at
    /// `now`. `None` while fresh or once the window has passed.
    pub fn stale_grant(&self, kind: StaleUse, now: SystemTime) -> Option<StaleGrant> {
        if self.is_fresh(now) {
            return None;
        }
        let stale = self.staleness(now);
        let (all, origin) = match kind {
            StaleUse::WhileRevalidate => (self.windows.swr, self.origin_windows.swr),
            StaleUse::IfError => (self.windows.sie, self.origin_windows.sie),
        };
        if !origin.is_zero() && stale <= origin {
            Some(StaleGrant::Origin)
        } else if !all.is_zero() && stale <= all {
            Some(StaleGrant::Grace)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn meta() -> EntryMeta {
        EntryMeta {
            response_time: t(0),
            initial_age: Duration::from_secs(10),
            lifetime: Duration::from_secs(60),
            windows: StaleWindows {
                swr: Duration::from_secs(30),
                sie: Duration::from_secs(300),
            },
            origin_windows: StaleWindows {
                swr: Duration::from_secs(30),
                sie: Duration::from_secs(100),
            },
        }
    }

    #[test]
    fn rfc9111_4_2_3_age_header_grows_with_resident_time() {
        assert_eq!(meta().age_header(t(0)), "10");
        assert_eq!(meta().age_header(t(32)), "42");
    }

    #[test]
    fn rfc9111_4_2_freshness_and_cache_status_ttl() {
        let m = meta();
        assert!(m.is_fresh(t(49)));
        assert_eq!(m.ttl_secs(t(8)), 42);
        assert!(!m.is_fresh(t(50)));
        assert_eq!(m.ttl_secs(t(55)), -5);
        assert_eq!(m.staleness(t(55)), Duration::from_secs(5));
    }

    #[test]
    fn age_changes_at_the_next_whole_second_of_current_age() {
        let ms = Duration::from_millis;
        // stored at t(0) with an initial age of 10.3 s: Age 10 until t(0) + 0.7 s
        let m = EntryMeta {
            initial_age: ms(10_300),
            ..meta()
        };
        assert_eq!(m.age_changes_at(t(0)), Some(t(0) + ms(700)));
        assert_eq!(m.age_changes_at(t(0) + ms(699)), Some(t(0) + ms(700)));
        assert_eq!(m.age_changes_at(t(0) + ms(700)), Some(t(0) + ms(1700)));
        assert_eq!(m.age_changes_at(t(31) + ms(800)), Some(t(32) + ms(700)));
        // before the response time (a clock stepped back) the age stands still until then
        assert_eq!(m.age_changes_at(t(0) - ms(5000)), Some(t(0) + ms(700)));
    }

    proptest::proptest! {
        #[test]
        fn age_and_ttl_stay_until_age_changes_at_and_change_there(
            initial_ms in 0u64..10_000_000,
            lifetime_s in 0u64..100_000,
            stored_ms in 0u64..10_000_000,
            now_ms in 0u64..20_000_000,
        ) {
            let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            let m = EntryMeta {
                response_time: base + Duration::from_millis(stored_ms),
                initial_age: Duration::from_millis(initial_ms),
                lifetime: Duration::from_secs(lifetime_s),
                ..meta()
            };
            let now = base + Duration::from_millis(now_ms);
            let at = m.age_changes_at(now).unwrap();
            proptest::prop_assert!(at > now);
            let just_before = at - Duration::from_nanos(1);
            proptest::prop_assert_eq!(m.age_header(just_before), m.age_header(now));
            proptest::prop_assert_eq!(m.ttl_secs(just_before), m.ttl_secs(now));
            proptest::prop_assert_ne!(m.age_header(at), m.age_header(now));
            proptest::prop_assert_ne!(m.ttl_secs(at), m.ttl_secs(now));
        }
    }

    #[test]
    fn rfc5861_stale_grant_tells_origin_from_operator_grace() {
        let m = meta();
        assert_eq!(m.stale_grant(StaleUse::IfError, t(40)), None, "still fresh");
        assert_eq!(
            m.stale_grant(StaleUse::WhileRevalidate, t(60)),
            Some(StaleGrant::Origin)
        );
        assert_eq!(m.stale_grant(StaleUse::WhileRevalidate, t(90)), None);
        assert_eq!(
            m.stale_grant(StaleUse::IfError, t(140)),
            Some(StaleGrant::Origin)
        );
        assert_eq!(
            m.stale_grant(StaleUse::IfError, t(200)),
            Some(StaleGrant::Grace)
        );
        assert_eq!(m.stale_grant(StaleUse::IfError, t(400)), None);
    }
}
