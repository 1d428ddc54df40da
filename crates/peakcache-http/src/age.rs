//! Age calculation (RFC 9111 §4.2.3) and the HTTP-date fields it reads.

use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::directives::{parse_delta, Delta, DELTA_SECONDS_MAX};

/// Parses an HTTP-date (RFC 9110 §5.6.7: IMF-fixdate, RFC 850 or asctime format).
///
/// RFC 9110 §5.6.7 encourages recipients to be robust in parsing timestamps, so day and month
/// names and `GMT` are read in any letter case, and a day name that does not match the date is
/// ignored (it is redundant). The layout itself stays strict: a date in another layout, time
/// zone or field width is invalid.
pub fn parse_http_date(value: &HeaderValue) -> Option<SystemTime> {
    let text = value.to_str().ok()?.trim();
    if let Ok(t) = httpdate::parse_http_date(text) {
        return Some(t);
    }
    let canonical = canonical_case(text);
    if let Ok(t) = httpdate::parse_http_date(&canonical) {
        return Some(t);
    }
    // A wrong day name: try the date with each day name in the same form (short or long).
    let name_len = canonical
        .bytes()
        .take_while(u8::is_ascii_alphabetic)
        .count();
    let rest = &canonical[name_len..];
    let names: &[&str] = if name_len == 3 { &DAYS } else { &LONG_DAYS };
    if !LONG_DAYS
        .iter()
        .chain(DAYS.iter())
        .any(|d| *d == &canonical[..name_len])
    {
        return None;
    }
    names
        .iter()
        .find_map(|day| httpdate::parse_http_date(&format!("{day}{rest}")).ok())
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `text` with every run of letters that names a day, a month or `GMT` (in any case) written
/// the way RFC 9110 §5.6.7 spells it.
fn canonical_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        if letters == 0 {
            let other = rest
                .char_indices()
                .find(|(_, c)| c.is_ascii_alphabetic())
                .map_or(rest.len(), |(i, _)| i);
            out.push_str(&rest[..other]);
            rest = &rest[other..];
            continue;
        }
        let word = &rest[..letters];
        let known = DAYS
            .iter()
            .chain(LONG_DAYS.iter())
            .chain(MONTHS.iter())
            .chain(["GMT"].iter())
            .find(|k| k.eq_ignore_ascii_case(word));
        out.push_str(known.copied().unwrap_or(word));
        rest = &rest[letters..];
    }
    out
}

/// Formats `time` as an IMF-fixdate header value (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn format_http_date(time: SystemTime) -> HeaderValue {
    // An IMF-fixdate is plain ASCII, which HeaderValue always accepts.
    HeaderValue::from_str(&httpdate::fmt_http_date(time))
        .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

/// The first line of date field `name`, parsed; `None` when absent or invalid.
pub(crate) fn header_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    headers.get(name).and_then(parse_http_date)
}

/// `later - earlier`, or zero when `later` is not later (clocks disagree, dates in the future).
pub(crate) fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or(Duration::ZERO)
}

/// The `Age` field value received with a response, per RFC 9111 §5.1: the first member of the
/// first line; zero when absent or invalid (the field is then ignored).
pub fn age_value(headers: &HeaderMap) -> Duration {
    let Some(text) = headers.get(header::AGE).and_then(|v| v.to_str().ok()) else {
        return Duration::ZERO;
    };
    let first = text.split(',').next().unwrap_or("").trim();
    match parse_delta(first) {
        Delta::Seconds(s) => Duration::from_secs(u64::from(s)),
        Delta::Invalid => Duration::ZERO,
    }
}

/// The `date_value` of RFC 9111 §4.2.3: the response's `Date`, or the time it was received when
/// `Date` is absent or invalid (RFC 9110 §6.6.1).
pub fn date_value(headers: &HeaderMap, response_time: SystemTime) -> SystemTime {
    header_date(headers, &header::DATE).unwrap_or(response_time)
}

/// `corrected_initial_age` of RFC 9111 §4.2.3: how old the response already was when it was
/// received.
///
/// ```text
/// apparent_age          = max(0, response_time - date_value)
/// response_delay        = response_time - request_time
/// corrected_age_value   = age_value + response_delay
/// corrected_initial_age = max(apparent_age, corrected_age_value)
/// ```
///
/// A `Date` has whole seconds, so an apparent age under one second is the part of the second
/// the response was made in, not an age: it counts as zero. Otherwise every response (and every
/// page renewed by a 304) would lose up to a second of its lifetime, and a `max-age=1` page would
/// be stale on arrival; proxy_cache and Varnish count from the arrival too.
///
/// `request_time` is when the request that caused this response was sent, `response_time`
/// when the response was received.
pub fn corrected_initial_age(
    headers: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
) -> Duration {
    let apparent_age = match since(response_time, date_value(headers, response_time)) {
        within_the_dates_second if within_the_dates_second < Duration::from_secs(1) => {
            Duration::ZERO
        }
        age => age,
    };
    let response_delay = since(response_time, request_time);
    let corrected_age_value = age_value(headers).saturating_add(response_delay);
    apparent_age.max(corrected_age_value)
}

/// `current_age` of RFC 9111 §4.2.3: `corrected_initial_age + resident_time`, where
/// `resident_time = now - response_time`.
pub fn current_age(
    corrected_initial_age: Duration,
    response_time: SystemTime,
    now: SystemTime,
) -> Duration {
    corrected_initial_age.saturating_add(since(now, response_time))
}

/// The `Age` header value for an age: whole seconds, capped at 2^31 (RFC 9111 §5.1, §1.2.2).
pub fn age_header_value(age: Duration) -> HeaderValue {
    HeaderValue::from(age_secs(age))
}

/// The number an `Age` header says for an age: whole seconds, capped at 2^31.
pub fn age_secs(age: Duration) -> u64 {
    age.as_secs().min(u64::from(DELTA_SECONDS_MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn rfc9111_4_2_3_age_calculation_uses_the_larger_of_apparent_and_corrected_age() {
        // Date says 10 s before receipt; Age says 3, the round trip took 2: apparent age wins.
        let h = headers(&[("date", &httpdate::fmt_http_date(t(90))), ("age", "3")]);
        assert_eq!(
            corrected_initial_age(&h, t(98), t(100)),
            Duration::from_secs(10)
        );
        // Age 30 plus 2 s delay beats a Date only 10 s old.
        let h = headers(&[("date", &httpdate::fmt_http_date(t(90))), ("age", "30")]);
        assert_eq!(
            corrected_initial_age(&h, t(98), t(100)),
            Duration::from_secs(32)
        );
    }

    #[test]
    fn rfc9111_4_2_3_current_age_adds_resident_time() {
        assert_eq!(
            current_age(Duration::from_secs(5), t(100), t(160)),
            Duration::from_secs(65)
        );
        // A clock that went backwards adds nothing.
        assert_eq!(
            current_age(Duration::from_secs(5), t(100), t(50)),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn rfc9110_5_6_7_a_date_within_its_second_is_no_age() {
        // Made at 100.9 s, its Date says 100: not 0.9 s old.
        let h = headers(&[("date", &httpdate::fmt_http_date(t(100)))]);
        let received = t(100) + Duration::from_millis(900);
        assert_eq!(
            corrected_initial_age(&h, received, received),
            Duration::ZERO
        );
        assert_eq!(
            corrected_initial_age(&h, received, received + Duration::from_millis(200)),
            Duration::from_millis(1100),
            "a second or more is an age"
        );
    }

    #[test]
    fn rfc9111_4_2_3_date_in_the_future_gives_zero_apparent_age() {
        let h = headers(&[("date", &httpdate::fmt_http_date(t(500)))]);
        assert_eq!(corrected_initial_age(&h, t(100), t(100)), Duration::ZERO);
    }

    #[test]
    fn rfc9110_6_6_1_missing_date_uses_receipt_time() {
        let h = HeaderMap::new();
        assert_eq!(date_value(&h, t(7)), t(7));
        assert_eq!(
            corrected_initial_age(&h, t(1), t(4)),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn rfc9111_5_1_age_list_uses_first_member_and_invalid_is_ignored() {
        assert_eq!(
            age_value(&headers(&[("age", "7, 9")])),
            Duration::from_secs(7)
        );
        assert_eq!(age_value(&headers(&[("age", "-3")])), Duration::ZERO);
        assert_eq!(age_value(&headers(&[("age", "soon")])), Duration::ZERO);
        assert_eq!(
            age_value(&headers(&[("age", "99999999999999")])),
            Duration::from_secs(1 << 31)
        );
    }

    #[test]
    fn rfc9111_5_1_age_header_value_is_whole_seconds_capped() {
        assert_eq!(age_header_value(Duration::from_millis(42_900)), "42");
        assert_eq!(
            age_header_value(Duration::from_secs(u64::MAX)),
            "2147483648"
        );
    }

    #[test]
    fn rfc9110_5_6_7_all_three_date_formats_parse() {
        let expect = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_http_date(&HeaderValue::from_static(s)),
                Some(expect),
                "{s}"
            );
        }
        assert_eq!(parse_http_date(&HeaderValue::from_static("0")), None);
    }

    #[test]
    fn rfc9110_5_6_7_dates_are_read_robustly_in_case_and_day_name_but_not_layout() {
        let expect = httpdate::parse_http_date("Thu, 18 Aug 2050 02:01:18 GMT").unwrap();
        for s in [
            "THU, 18 Aug 2050 02:01:18 GMT",
            "Thu, 18 AUG 2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02:01:18 gMT",
            "Mon, 18 Aug 2050 02:01:18 GMT",
            "Thursday, 18-aug-50 02:01:18 GMT",
        ] {
            assert_eq!(
                parse_http_date(&HeaderValue::from_static(s)),
                Some(expect),
                "{s}"
            );
        }
        // asctime with a day name that does not match the date (8 Aug 2050 is a Monday).
        assert_eq!(
            parse_http_date(&HeaderValue::from_static("Thu Aug  8 02:01:18 2050")),
            httpdate::parse_http_date("Mon Aug  8 02:01:18 2050").ok()
        );
        assert!(parse_http_date(&HeaderValue::from_static("Thu Aug  8 02:01:18 2050")).is_some());
        for s in [
            "Thu, 18 Aug 2050 02:01:18 UTC",
            "Thu, 18 Aug 2050 02:01:18 AEST",
            "Thu, 18 Aug 50 02:01:18 GMT",
            "Thu 18 Aug 2050 02:01:18 GMT",
            "Thu, 18  Aug  2050 02:01:18 GMT",
            "Thu, 18-Aug-2050 02:01:18 GMT",
            "Thu, 18 Aug 2050 02.01.18 GMT",
            "Thu, 18 Aug 2050 2:01:18 GMT",
            "Xyz, 18 Aug 2050 02:01:18 GMT",
        ] {
            assert_eq!(parse_http_date(&HeaderValue::from_static(s)), None, "{s}");
        }
    }
}
