//! A request's own cache directives (RFC 9111 §5.2.1, and `Pragma` §5.4) and what they allow a
//! stored response to do.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap};

use crate::directives::{Delta, Directives, Syntax};
use crate::entry::EntryMeta;

/// The request directives a shared cache acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestDirectives {
    /// `no-cache` (§5.2.1.4), or `Pragma: no-cache` without `Cache-Control` (§5.4): a stored
    /// response is used only after it is validated with the origin (§4).
    pub no_cache: bool,
    /// `no-store` (§5.2.1.5): nothing of this exchange is stored.
    pub no_store: bool,
    /// `max-age` (§5.2.1.1): the client wants a response no older than this.
    pub max_age: Option<Duration>,
    /// `min-fresh` (§5.2.1.3): the client wants a response fresh for at least this long more.
    pub min_fresh: Option<Duration>,
    /// `max-stale` (§5.2.1.2): the client would accept a stale response, up to this much past
    /// its lifetime (`Some(None)`: any). Read but not acted on: this cache serves stale
    /// responses only within the origin's windows and the operator's grace.
    pub max_stale: Option<Option<Duration>>,
    /// `only-if-cached` (§5.2.1.7): answer from the cache or with 504, never from the origin.
    pub only_if_cached: bool,
}

/// What the request directives make of a stored response that is otherwise usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Serve it.
    Serve,
    /// Validate it with the origin first (or fetch anew when it has no validator).
    Revalidate,
}

fn delta(d: &Directives, name: &str) -> Option<Duration> {
    match d.seconds(name)? {
        Delta::Seconds(s) => Some(Duration::from_secs(u64::from(s))),
        // An unusable value is ignored: the directive cannot say what the client prefers.
        Delta::Invalid => None,
    }
}

impl RequestDirectives {
    /// Reads `Cache-Control` of a request; `Pragma: no-cache` counts as `no-cache` when the
    /// request has no `Cache-Control` (RFC 9111 §5.4).
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let d = Directives::from_headers(headers, &header::CACHE_CONTROL, Syntax::CacheControl);
        let pragma_no_cache = !headers.contains_key(header::CACHE_CONTROL)
            && headers
                .get_all(header::PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|p| p.trim().eq_ignore_ascii_case("no-cache"));
        // `max-stale` alone accepts any staleness; with an unusable value, none.
        let max_stale = d.has("max-stale").then(|| {
            d.value("max-stale")
                .map(|_| delta(&d, "max-stale").unwrap_or(Duration::ZERO))
        });
        RequestDirectives {
            no_cache: d.has("no-cache") || pragma_no_cache,
            no_store: d.no_store(),
            max_age: delta(&d, "max-age"),
            min_fresh: delta(&d, "min-fresh"),
            max_stale,
            only_if_cached: d.has("only-if-cached"),
        }
    }

    /// Whether a stored response described by `entry` may answer this request at `now` as it
    /// is, or must be validated first: `no-cache` always validates (RFC 9111 §4); `max-age`
    /// validates a response older than it (§5.2.1.1); `min-fresh` one that will not stay fresh
    /// that long (§5.2.1.3).
    pub fn reuse(&self, entry: &EntryMeta, now: SystemTime) -> Reuse {
        let age = entry.current_age(now);
        let too_old = self.max_age.is_some_and(|max| age > max);
        let not_fresh_enough = self
            .min_fresh
            .is_some_and(|min| entry.lifetime.saturating_sub(age) < min);
        if self.no_cache || too_old || not_fresh_enough {
            Reuse::Revalidate
        } else {
            Reuse::Serve
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StaleWindows;
    use http::HeaderValue;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn rd(pairs: &[(&'static str, &'static str)]) -> RequestDirectives {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        RequestDirectives::from_headers(&h)
    }

    /// Stored at t(0) already 100 s old, fresh for 1500 s.
    fn entry() -> EntryMeta {
        EntryMeta {
            response_time: t(0),
            initial_age: Duration::from_secs(100),
            lifetime: Duration::from_secs(1500),
            windows: StaleWindows::default(),
            origin_windows: StaleWindows::default(),
        }
    }

    #[test]
    fn rfc9111_5_2_1_directives_are_read() {
        let d = rd(&[(
            "cache-control",
            "max-age=5, min-fresh=7, max-stale, no-cache, no-store, only-if-cached",
        )]);
        assert_eq!(d.max_age, Some(Duration::from_secs(5)));
        assert_eq!(d.min_fresh, Some(Duration::from_secs(7)));
        assert_eq!(d.max_stale, Some(None));
        assert!(d.no_cache && d.no_store && d.only_if_cached);
        assert_eq!(
            rd(&[("cache-control", "max-stale=9")]).max_stale,
            Some(Some(Duration::from_secs(9)))
        );
        assert_eq!(rd(&[("cache-control", "max-age=abc")]).max_age, None);
        assert_eq!(rd(&[]), RequestDirectives::default());
    }

    #[test]
    fn rfc9111_5_4_pragma_no_cache_counts_only_without_cache_control() {
        assert!(rd(&[("pragma", "no-cache")]).no_cache);
        assert!(!rd(&[("pragma", "unrecognised-extension")]).no_cache);
        assert!(!rd(&[("pragma", "no-cache"), ("cache-control", "max-age=60")]).no_cache);
    }

    #[test]
    fn rfc9111_4_request_no_cache_max_age_and_min_fresh_decide_reuse() {
        let e = entry();
        assert_eq!(rd(&[]).reuse(&e, t(10)), Reuse::Serve);
        assert_eq!(
            rd(&[("cache-control", "no-cache")]).reuse(&e, t(10)),
            Reuse::Revalidate
        );
        // Age 110 s.
        assert_eq!(
            rd(&[("cache-control", "max-age=600")]).reuse(&e, t(10)),
            Reuse::Serve
        );
        assert_eq!(
            rd(&[("cache-control", "max-age=100")]).reuse(&e, t(10)),
            Reuse::Revalidate
        );
        assert_eq!(
            rd(&[("cache-control", "max-age=0")]).reuse(&e, t(0)),
            Reuse::Revalidate
        );
        // 1390 s of freshness left.
        assert_eq!(
            rd(&[("cache-control", "min-fresh=1000")]).reuse(&e, t(10)),
            Reuse::Serve
        );
        assert_eq!(
            rd(&[("cache-control", "min-fresh=2000")]).reuse(&e, t(10)),
            Reuse::Revalidate
        );
    }
}
