//! Freshness lifetime (RFC 9111 §4.2.1, §4.2.2) and the stale windows of RFC 5861, turned into
//! a [`peakcache::Freshness`].

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap};
use http::StatusCode;
use peakcache::Freshness;

use crate::age::{date_value, header_date, parse_http_date, since};
use crate::config::{Config, StaleWindows};
use crate::directives::{Delta, FieldScope};
use crate::targeted::ResponseDirectives;

/// Where a freshness lifetime came from, in precedence order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifetimeSource {
    /// `s-maxage` (RFC 9111 §5.2.2.10), from the selected directives.
    SMaxAge,
    /// `max-age` (RFC 9111 §5.2.2.1), from the selected directives.
    MaxAge,
    /// `Expires` minus `Date` (RFC 9111 §5.3); never used when a targeted field was selected.
    Expires,
    /// A fraction of the time since `Last-Modified` (RFC 9111 §4.2.2).
    LastModified,
    /// The operator's [`Heuristic::default_ttl`](crate::Heuristic::default_ttl) (RFC 9111 §4.2.2).
    DefaultTtl,
    /// No explicit freshness and no heuristic allowed: zero.
    None,
}

/// A freshness lifetime and its source. An invalid explicit value (`max-age=abc`, `Expires: 0`,
/// repeated values that disagree) gives a zero lifetime from that source: stale, as RFC 9111
/// §4.2.1 and §5.3 ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// The lifetime.
    pub duration: Duration,
    /// Where it came from.
    pub source: LifetimeSource,
}

impl Lifetime {
    /// True when it came from the origin (s-maxage, max-age or Expires), not a heuristic.
    pub fn is_explicit(&self) -> bool {
        matches!(
            self.source,
            LifetimeSource::SMaxAge | LifetimeSource::MaxAge | LifetimeSource::Expires
        )
    }
}

fn explicit(d: Delta, source: LifetimeSource) -> Lifetime {
    Lifetime {
        duration: d.duration_or_zero(),
        source,
    }
}

/// The `Expires` lifetime: `Expires - date_value`; an invalid value or disagreeing repeated
/// lines mean already expired (RFC 9111 §5.3, §4.2.1). `None` when there is no `Expires`.
fn expires_lifetime(headers: &HeaderMap, response_time: SystemTime) -> Option<Duration> {
    let mut lines = headers.get_all(header::EXPIRES).iter();
    let first = lines.next()?;
    if lines.any(|other| other != first) {
        return Some(Duration::ZERO);
    }
    Some(match parse_http_date(first) {
        Some(expires) => since(expires, date_value(headers, response_time)),
        None => Duration::ZERO,
    })
}

/// True when the response carries explicit freshness for this cache.
pub(crate) fn has_explicit_freshness(rd: &ResponseDirectives, headers: &HeaderMap) -> bool {
    rd.directives.s_maxage().is_some()
        || rd.directives.max_age().is_some()
        || (!rd.is_targeted() && headers.contains_key(header::EXPIRES))
}

/// True when a heuristic lifetime may be used: no explicit freshness, and a heuristically
/// cacheable status or `public` (RFC 9111 §4.2.2).
pub(crate) fn heuristic_allowed(
    config: &Config,
    status: StatusCode,
    rd: &ResponseDirectives,
) -> bool {
    config.heuristic.statuses.contains(&status.as_u16()) || rd.directives.public()
}

/// The freshness lifetime of a response for a shared cache, RFC 9111 §4.2.1:
/// `s-maxage` > `max-age` > `Expires - Date` > heuristic, where the directives are the selected
/// targeted field's if there is one (RFC 9213 §2.2, which also drops `Expires`).
pub fn freshness_lifetime(
    config: &Config,
    status: StatusCode,
    rd: &ResponseDirectives,
    headers: &HeaderMap,
    response_time: SystemTime,
) -> Lifetime {
    if let Some(d) = rd.directives.s_maxage() {
        return explicit(d, LifetimeSource::SMaxAge);
    }
    if let Some(d) = rd.directives.max_age() {
        return explicit(d, LifetimeSource::MaxAge);
    }
    if !rd.is_targeted() {
        if let Some(d) = expires_lifetime(headers, response_time) {
            return Lifetime {
                duration: d,
                source: LifetimeSource::Expires,
            };
        }
    }
    if !heuristic_allowed(config, status, rd) {
        return Lifetime {
            duration: Duration::ZERO,
            source: LifetimeSource::None,
        };
    }
    let h = &config.heuristic;
    if h.last_modified_percent > 0 {
        if let Some(lm) = header_date(headers, &header::LAST_MODIFIED) {
            let interval = since(date_value(headers, response_time), lm);
            let fraction = interval.saturating_mul(h.last_modified_percent) / 100;
            return Lifetime {
                duration: fraction.min(h.max),
                source: LifetimeSource::LastModified,
            };
        }
    }
    Lifetime {
        duration: h.default_ttl,
        source: LifetimeSource::DefaultTtl,
    }
}

/// True when the selected directives forbid serving the response stale: unqualified
/// `no-cache` (§5.2.2.4), `must-revalidate` (§5.2.2.2), `proxy-revalidate` (§5.2.2.8), and
/// `s-maxage`, which carries proxy-revalidate for shared caches (§5.2.2.10) unless
/// [`Config::stale_with_s_maxage`] is set. RFC 9111 §4.2.4 forbids stale responses in all these
/// cases, so neither the origin's stale windows nor operator grace apply.
pub(crate) fn stale_forbidden(config: &Config, rd: &ResponseDirectives) -> bool {
    let d = &rd.directives;
    d.no_cache() == Some(FieldScope::All)
        || d.must_revalidate()
        || d.proxy_revalidate()
        || (d.s_maxage().is_some() && !config.stale_with_s_maxage)
}

/// The result of applying lifetime, age and stale windows to a response about to be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Windows {
    /// For the core cache, counted from the store time (= response time).
    pub freshness: Freshness,
    /// The lifetime the entry is fresh for (zero for `no-cache`).
    pub lifetime: Duration,
    /// The full windows granted, counted from the moment the entry goes stale.
    pub windows: StaleWindows,
    /// The part of those windows the origin granted.
    pub origin: StaleWindows,
}

fn window(d: Option<Delta>) -> Option<Duration> {
    d.map(Delta::duration_or_zero)
}

/// Turns a lifetime and the age at store time into the entry's windows:
/// `ttl = lifetime - current_age` (clamped at zero), `swr`/`sie` from RFC 5861 or the operator's
/// defaults, widened to the operator's grace, all zero when stale serving is forbidden, and
/// shortened by however long the response was already stale when it arrived.
pub(crate) fn windows(
    config: &Config,
    rd: &ResponseDirectives,
    lifetime: Duration,
    initial_age: Duration,
) -> Windows {
    let d = &rd.directives;
    let lifetime = if d.no_cache() == Some(FieldScope::All) {
        Duration::ZERO
    } else {
        lifetime
    };
    let (windows, origin) = if stale_forbidden(config, rd) {
        (StaleWindows::default(), StaleWindows::default())
    } else {
        let origin_swr = window(d.stale_while_revalidate());
        let origin_sie = window(d.stale_if_error());
        let origin = StaleWindows {
            swr: origin_swr.unwrap_or_default(),
            sie: origin_sie.unwrap_or_default(),
        };
        let swr = origin_swr
            .unwrap_or(config.default_stale.swr)
            .max(config.grace.swr);
        let sie = origin_sie
            .unwrap_or(config.default_stale.sie)
            .max(config.grace.sie);
        (StaleWindows { swr, sie }, origin)
    };
    let stale_already = initial_age.saturating_sub(lifetime);
    let freshness = Freshness::new(lifetime.saturating_sub(initial_age))
        .with_swr(windows.swr.saturating_sub(stale_already))
        .with_sie(windows.sie.saturating_sub(stale_already));
    Windows {
        freshness,
        lifetime,
        windows,
        origin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(t(secs))
    }

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    fn lifetime(cfg: &Config, status: u16, headers: &HeaderMap) -> Lifetime {
        let rd = ResponseDirectives::select(headers, &cfg.targeted_fields);
        freshness_lifetime(
            cfg,
            StatusCode::from_u16(status).unwrap(),
            &rd,
            headers,
            t(100),
        )
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn rfc9111_4_2_1_s_maxage_beats_max_age_beats_expires() {
        let cfg = Config::default();
        let base = [("date", date(100)), ("expires", date(400))];
        let mut m = h(&[("date", &base[0].1), ("expires", &base[1].1)]);
        assert_eq!(
            lifetime(&cfg, 200, &m),
            Lifetime {
                duration: secs(300),
                source: LifetimeSource::Expires
            }
        );
        m.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
        assert_eq!(
            lifetime(&cfg, 200, &m),
            Lifetime {
                duration: secs(60),
                source: LifetimeSource::MaxAge
            }
        );
        m.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60, s-maxage=90"),
        );
        assert_eq!(
            lifetime(&cfg, 200, &m),
            Lifetime {
                duration: secs(90),
                source: LifetimeSource::SMaxAge
            }
        );
    }

    #[test]
    fn rfc9213_2_2_targeted_field_beats_s_maxage_and_ignores_expires() {
        let cfg = Config::default();
        let m = h(&[
            ("cache-control", "s-maxage=90"),
            ("cdn-cache-control", "max-age=600"),
        ]);
        assert_eq!(lifetime(&cfg, 200, &m).duration, secs(600));
        // Expires is ignored with a targeted field; no max-age there means a heuristic.
        let m = h(&[
            ("expires", &date(1000)),
            ("date", &date(100)),
            ("cdn-cache-control", "public"),
        ]);
        assert_eq!(lifetime(&cfg, 200, &m).source, LifetimeSource::DefaultTtl);
    }

    #[test]
    fn rfc9111_4_2_1_invalid_max_age_means_stale() {
        let cfg = Config::default();
        let m = h(&[("cache-control", "max-age=abc"), ("expires", &date(1000))]);
        assert_eq!(
            lifetime(&cfg, 200, &m),
            Lifetime {
                duration: Duration::ZERO,
                source: LifetimeSource::MaxAge
            }
        );
    }

    #[test]
    fn rfc9111_5_3_invalid_expires_such_as_zero_means_already_expired() {
        let cfg = Config::default();
        let m = h(&[("expires", "0"), ("last-modified", &date(0))]);
        assert_eq!(
            lifetime(&cfg, 200, &m),
            Lifetime {
                duration: Duration::ZERO,
                source: LifetimeSource::Expires
            }
        );
        let m = h(&[
            ("date", &date(100)),
            ("expires", &date(200)),
            ("expires", &date(300)),
        ]);
        assert_eq!(lifetime(&cfg, 200, &m).duration, Duration::ZERO);
    }

    #[test]
    fn rfc9111_5_3_expires_without_date_counts_from_receipt() {
        let cfg = Config::default();
        let m = h(&[("expires", &date(160))]);
        assert_eq!(lifetime(&cfg, 200, &m).duration, secs(60));
    }

    #[test]
    fn rfc9111_4_2_2_heuristic_is_ten_percent_of_last_modified_age_capped() {
        let mut cfg = Config::default();
        let m = h(&[("date", &date(1100)), ("last-modified", &date(100))]);
        assert_eq!(
            lifetime(&cfg, 200, &m),
            Lifetime {
                duration: secs(100),
                source: LifetimeSource::LastModified
            }
        );
        cfg.heuristic.max = secs(30);
        assert_eq!(lifetime(&cfg, 200, &m).duration, secs(30));
        // Last-Modified after Date gives nothing.
        let m = h(&[("date", &date(100)), ("last-modified", &date(1100))]);
        assert_eq!(lifetime(&cfg, 200, &m).duration, Duration::ZERO);
    }

    #[test]
    fn rfc9111_4_2_2_heuristic_only_for_heuristically_cacheable_status_or_public() {
        let cfg = Config::default();
        let m = h(&[("date", &date(1100)), ("last-modified", &date(100))]);
        assert_eq!(
            lifetime(&cfg, 302, &m),
            Lifetime {
                duration: Duration::ZERO,
                source: LifetimeSource::None
            }
        );
        let m = h(&[
            ("date", &date(1100)),
            ("last-modified", &date(100)),
            ("cache-control", "public"),
        ]);
        assert_eq!(lifetime(&cfg, 302, &m).duration, secs(100));
        for s in [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501] {
            assert!(cfg.heuristic.statuses.contains(&s), "rfc9110_15_1 {s}");
        }
    }

    fn win(cfg: &Config, cc: &str, lifetime: u64, age: u64) -> Windows {
        let m = h(&[("cache-control", cc)]);
        let rd = ResponseDirectives::select(&m, &cfg.targeted_fields);
        windows(cfg, &rd, secs(lifetime), secs(age))
    }

    #[test]
    fn rfc5861_3_4_stale_windows_come_from_the_directives() {
        let w = win(
            &Config::default(),
            "max-age=60, stale-while-revalidate=30, stale-if-error=600",
            60,
            10,
        );
        assert_eq!(
            w.freshness,
            Freshness::new(secs(50))
                .with_swr(secs(30))
                .with_sie(secs(600))
        );
    }

    #[test]
    fn rfc9111_4_2_3_ttl_subtracts_current_age_and_clamps_at_zero() {
        let w = win(
            &Config::default(),
            "max-age=60, stale-while-revalidate=30",
            60,
            70,
        );
        // Arrived 10 s stale: 20 s of the 30 s window remain.
        assert_eq!(
            w.freshness,
            Freshness::new(Duration::ZERO).with_swr(secs(20))
        );
    }

    #[test]
    fn rfc9111_5_2_2_2_must_revalidate_forbids_stale_windows_and_grace() {
        let cfg = Config {
            grace: StaleWindows {
                swr: secs(100),
                sie: secs(100),
            },
            ..Config::default()
        };
        for cc in [
            "max-age=60, must-revalidate, stale-if-error=600, stale-while-revalidate=5",
            "max-age=60, proxy-revalidate, stale-if-error=600",
            "s-maxage=60, stale-if-error=600, stale-while-revalidate=5",
        ] {
            let w = win(&cfg, cc, 60, 0);
            assert_eq!(w.freshness, Freshness::new(secs(60)), "{cc}");
        }
    }

    #[test]
    fn rfc9111_5_2_2_10_s_maxage_stale_can_be_allowed_by_config() {
        let cfg = Config {
            stale_with_s_maxage: true,
            ..Config::default()
        };
        let w = win(&cfg, "s-maxage=60, stale-while-revalidate=5", 60, 0);
        assert_eq!(w.freshness.swr, secs(5));
    }

    #[test]
    fn rfc9111_5_2_2_4_no_cache_stores_with_zero_ttl_and_no_stale() {
        let w = win(
            &Config::default(),
            "no-cache, max-age=60, stale-while-revalidate=30",
            60,
            0,
        );
        assert_eq!(w.freshness, Freshness::new(Duration::ZERO));
        assert_eq!(w.lifetime, Duration::ZERO);
    }

    #[test]
    fn operator_defaults_fill_in_and_grace_widens_but_origin_part_is_kept() {
        let cfg = Config {
            default_stale: StaleWindows {
                swr: secs(7),
                sie: secs(8),
            },
            grace: StaleWindows {
                swr: Duration::ZERO,
                sie: secs(300),
            },
            ..Config::default()
        };
        let w = win(&cfg, "max-age=60, stale-if-error=100", 60, 0);
        assert_eq!(
            w.freshness,
            Freshness::new(secs(60))
                .with_swr(secs(7))
                .with_sie(secs(300))
        );
        assert_eq!(
            w.origin,
            StaleWindows {
                swr: Duration::ZERO,
                sie: secs(100)
            }
        );
    }
}
