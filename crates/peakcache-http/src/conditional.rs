//! Validators: conditional requests to the origin (RFC 9111 §4.3.1), updating a stored response
//! from a 304 (RFC 9111 §4.3.4, §3.2), and answering clients' own conditional requests from the
//! cache (RFC 9110 §13.1.1, §13.1.3, §13.2.2; RFC 9111 §4.3.2).

use std::fmt;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request, response, Method, StatusCode};

use crate::age::{header_date, parse_http_date};
use crate::upstream::connection_listed;

/// An entity tag (RFC 9110 §8.8.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityTag {
    /// True for a weak tag (`W/"..."`).
    pub weak: bool,
    /// The opaque tag without its quotes.
    pub tag: String,
}

impl EntityTag {
    /// Parses one entity tag; `None` when malformed.
    pub fn parse(text: &str) -> Option<EntityTag> {
        let text = text.trim();
        let (weak, rest) = match text.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let inner = rest.strip_prefix('"')?.strip_suffix('"')?;
        // etagc excludes DQUOTE, controls and space.
        if inner.bytes().any(|b| b == b'"' || b <= b' ' || b == 0x7f) {
            return None;
        }
        Some(EntityTag {
            weak,
            tag: inner.to_owned(),
        })
    }

    /// Strong comparison (RFC 9110 §8.8.3.2): both strong and the same.
    pub fn strong_eq(&self, other: &EntityTag) -> bool {
        !self.weak && !other.weak && self.tag == other.tag
    }

    /// Weak comparison (RFC 9110 §8.8.3.2): the same opaque tag, weak or not.
    pub fn weak_eq(&self, other: &EntityTag) -> bool {
        self.tag == other.tag
    }
}

impl fmt::Display for EntityTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.weak {
            f.write_str("W/")?;
        }
        write!(f, "\"{}\"", self.tag)
    }
}

/// The `ETag` of a response, if it has a valid one.
pub fn etag(headers: &HeaderMap) -> Option<EntityTag> {
    headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .and_then(EntityTag::parse)
}

/// An `If-None-Match` value: `*` or a list of tags (commas inside quotes allowed).
#[derive(Clone, Debug, PartialEq, Eq)]
enum TagList {
    Any,
    Tags(Vec<EntityTag>),
}

fn parse_tag_list<'a>(lines: impl Iterator<Item = &'a HeaderValue>) -> TagList {
    let mut tags = Vec::new();
    for line in lines {
        let bytes = line.as_bytes();
        if bytes
            .iter()
            .all(|b| *b == b' ' || *b == b'\t' || *b == b'*')
            && bytes.contains(&b'*')
        {
            return TagList::Any;
        }
        // Split on commas outside quotes; malformed members are skipped.
        let mut start = 0;
        let mut quoted = false;
        for i in 0..=bytes.len() {
            let end = i == bytes.len();
            if !end && bytes[i] == b'"' {
                quoted = !quoted;
            }
            if end || (bytes[i] == b',' && !quoted) {
                if let Some(t) = std::str::from_utf8(&bytes[start..i])
                    .ok()
                    .and_then(EntityTag::parse)
                {
                    tags.push(t);
                }
                start = i + 1;
            }
        }
    }
    TagList::Tags(tags)
}

/// The header fields to add to a request that revalidates a stored response (RFC 9111
/// §4.3.1): `If-None-Match` with its entity tag and `If-Modified-Since` with its
/// `Last-Modified`, when it has them. Empty when the response has no validator, in which case
/// revalidating is an ordinary fetch.
pub fn conditional_request_headers(stored: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    if let Some(tag) = stored.get(header::ETAG) {
        if tag.to_str().ok().and_then(EntityTag::parse).is_some() {
            out.insert(header::IF_NONE_MATCH, tag.clone());
        }
    }
    if let Some(lm) = stored.get(header::LAST_MODIFIED) {
        if parse_http_date(lm).is_some() {
            out.insert(header::IF_MODIFIED_SINCE, lm.clone());
        }
    }
    out
}

/// True when a stored response has a validator (`ETag` or `Last-Modified`).
pub fn has_validator(headers: &HeaderMap) -> bool {
    etag(headers).is_some() || header_date(headers, &header::LAST_MODIFIED).is_some()
}

/// Why a 304 did not update a stored response.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotUpdated {
    /// The response given was not a 304.
    NotA304,
    /// The 304's validator does not identify the stored response (RFC 9111 §4.3.4): fetch it
    /// again unconditionally.
    ValidatorMismatch,
}

impl fmt::Display for NotUpdated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotUpdated::NotA304 => f.write_str("response is not 304 Not Modified"),
            NotUpdated::ValidatorMismatch => {
                f.write_str("304 validator does not match the stored response")
            }
        }
    }
}

impl std::error::Error for NotUpdated {}

/// Fields a 304 never changes in the stored response: the stored body's framing and coding
/// (RFC 9111 §3.2 names Content-Length and allows excluding fields that describe the stored
/// content), and fields that are not stored at all (hop-by-hop and proxy fields, §3.1).
const NOT_UPDATED: &[&str] = &[
    "content-length",
    "content-encoding",
    "content-range",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-authentication-info",
    "proxy-authorization",
];

/// Does the 304 identify the stored response? RFC 9111 §4.3.4: a strong tag must match
/// strongly, a weak tag weakly, a `Last-Modified` alone must be equal. A 304 without any
/// validator answers the conditional request this cache made for this one stored response,
/// so it is accepted.
fn selects(stored: &HeaderMap, not_modified: &HeaderMap) -> bool {
    if let Some(new) = etag(not_modified) {
        return match etag(stored) {
            Some(old) if new.weak => old.weak_eq(&new),
            Some(old) => old.strong_eq(&new),
            None => false,
        };
    }
    if let Some(new) = header_date(not_modified, &header::LAST_MODIFIED) {
        return header_date(stored, &header::LAST_MODIFIED) == Some(new);
    }
    true
}

/// Updates a stored response with a 304 (RFC 9111 §4.3.4, §3.2): every field of the 304
/// replaces the stored field of the same name, except `Content-Length`, the content's coding
/// and range, hop-by-hop and proxy fields, and those the 304's `Connection` lists. The status,
/// version and the rest stay. A 304 without `Date` (PHP behind FastCGI sends none) also takes
/// the stored `Date` away: that one dates the old response, and kept it would make the renewed
/// response as old as the one it renews (stale at once, refreshed on every request). Without a
/// `Date`, [`Policy::on_response`](crate::Policy::on_response) counts from the 304's arrival and
/// [`Store::prepare`](crate::Store::prepare) dates it then (RFC 9110 §6.6.1). Pass the result to
/// `on_response` with the revalidation's request and response times to recompute freshness and
/// age.
pub fn merge_304(
    stored: &response::Parts,
    not_modified: &response::Parts,
) -> Result<response::Parts, NotUpdated> {
    if not_modified.status != StatusCode::NOT_MODIFIED {
        return Err(NotUpdated::NotA304);
    }
    if !selects(&stored.headers, &not_modified.headers) {
        return Err(NotUpdated::ValidatorMismatch);
    }
    let mut merged = stored.clone();
    if !not_modified.headers.contains_key(header::DATE) {
        merged.headers.remove(header::DATE);
    }
    let listed = connection_listed(&not_modified.headers);
    for name in not_modified.headers.keys() {
        if NOT_UPDATED.contains(&name.as_str()) || listed.contains(name) {
            continue;
        }
        merged.headers.remove(name);
        for value in not_modified.headers.get_all(name) {
            merged.headers.append(name.clone(), value.clone());
        }
    }
    Ok(merged)
}

/// What to do with a client's request that a stored response could answer.
#[derive(Debug)]
pub enum ConditionalAnswer {
    /// The client's copy is current: send this 304 (then add `Age` and `Cache-Status`).
    NotModified(response::Parts),
    /// Send the stored response: there were no preconditions, or they evaluate to true.
    ServeStored,
    /// The request has preconditions this cache does not evaluate (`If-Match`,
    /// `If-Unmodified-Since`, RFC 9111 §4.3.2): forward it.
    Forward,
}

/// The fields a 304 carries from the stored response (RFC 9110 §15.4.5): those a 200 would
/// have had among Cache-Control, Content-Location, Date, ETag, Expires and Vary, and
/// Last-Modified when there is no ETag.
const NOT_MODIFIED_FIELDS: &[HeaderName] = &[
    header::CACHE_CONTROL,
    header::CONTENT_LOCATION,
    header::DATE,
    header::ETAG,
    header::EXPIRES,
    header::VARY,
];

/// Builds the 304 a cache sends for a stored response.
pub fn not_modified_from(stored: &response::Parts) -> response::Parts {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = StatusCode::NOT_MODIFIED;
    parts.version = stored.version;
    for name in NOT_MODIFIED_FIELDS {
        for v in stored.headers.get_all(name) {
            parts.headers.append(name.clone(), v.clone());
        }
    }
    if !stored.headers.contains_key(header::ETAG) {
        if let Some(lm) = stored.headers.get(header::LAST_MODIFIED) {
            parts.headers.insert(header::LAST_MODIFIED, lm.clone());
        }
    }
    parts
}

/// Evaluates a client's `If-None-Match` / `If-Modified-Since` against a stored response that
/// would otherwise be sent (RFC 9110 §13.2.2, RFC 9111 §4.3.2):
/// - only for GET and HEAD, and only when the stored status is 2xx (§13.2.1);
/// - `If-Match` or `If-Unmodified-Since` present: [`ConditionalAnswer::Forward`];
/// - `If-None-Match` present: weak comparison against the stored `ETag` (`*` matches any
///   stored response); a match gives a 304, and `If-Modified-Since` is then ignored (§13.2.2);
/// - otherwise `If-Modified-Since` (one valid HTTP-date) against the stored `Last-Modified`,
///   or the stored `Date` when there is none: not modified since gives a 304 (§13.1.3).
pub fn answer_conditional(request: &request::Parts, stored: &response::Parts) -> ConditionalAnswer {
    if request.method != Method::GET && request.method != Method::HEAD {
        return ConditionalAnswer::Forward;
    }
    if !stored.status.is_success() {
        return ConditionalAnswer::ServeStored;
    }
    let h = &request.headers;
    if h.contains_key(header::IF_MATCH) || h.contains_key(header::IF_UNMODIFIED_SINCE) {
        return ConditionalAnswer::Forward;
    }
    if h.contains_key(header::IF_NONE_MATCH) {
        let matched = match parse_tag_list(h.get_all(header::IF_NONE_MATCH).iter()) {
            TagList::Any => true,
            TagList::Tags(tags) => {
                etag(&stored.headers).is_some_and(|e| tags.iter().any(|t| t.weak_eq(&e)))
            }
        };
        return if matched {
            ConditionalAnswer::NotModified(not_modified_from(stored))
        } else {
            ConditionalAnswer::ServeStored
        };
    }
    let mut ims = h.get_all(header::IF_MODIFIED_SINCE).iter();
    let (Some(first), None) = (ims.next(), ims.next()) else {
        return ConditionalAnswer::ServeStored;
    };
    let Some(since) = parse_http_date(first) else {
        return ConditionalAnswer::ServeStored;
    };
    let modified = header_date(&stored.headers, &header::LAST_MODIFIED)
        .or_else(|| header_date(&stored.headers, &header::DATE));
    match modified {
        Some(m) if m <= since => ConditionalAnswer::NotModified(not_modified_from(stored)),
        _ => ConditionalAnswer::ServeStored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, SystemTime};

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs))
    }

    fn resp(status: u16, pairs: &[(&str, &str)]) -> response::Parts {
        let mut b = http::Response::builder().status(status);
        for (k, v) in pairs {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn req(method: &str, pairs: &[(&str, &str)]) -> request::Parts {
        let mut b = http::Request::builder().method(method).uri("/x");
        for (k, v) in pairs {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn is_304(a: &ConditionalAnswer) -> bool {
        matches!(a, ConditionalAnswer::NotModified(_))
    }

    #[test]
    fn rfc9110_8_8_3_2_strong_and_weak_comparison() {
        let s1 = EntityTag::parse("\"1\"").unwrap();
        let w1 = EntityTag::parse("W/\"1\"").unwrap();
        let w2 = EntityTag::parse("W/\"2\"").unwrap();
        assert!(!w1.strong_eq(&w1));
        assert!(s1.strong_eq(&s1));
        assert!(w1.weak_eq(&s1));
        assert!(!w1.weak_eq(&w2));
        assert_eq!(EntityTag::parse("1"), None);
        assert_eq!(EntityTag::parse("\"a\"b\""), None);
        assert_eq!(w1.to_string(), "W/\"1\"");
    }

    #[test]
    fn rfc9111_4_3_1_conditional_request_uses_etag_and_last_modified() {
        let lm = date(0);
        let stored = resp(200, &[("etag", "W/\"v1\""), ("last-modified", &lm)]);
        let h = conditional_request_headers(&stored.headers);
        assert_eq!(h[header::IF_NONE_MATCH], "W/\"v1\"");
        assert_eq!(h[header::IF_MODIFIED_SINCE], lm.as_str());
        assert!(conditional_request_headers(&resp(200, &[("etag", "junk")]).headers).is_empty());
    }

    #[test]
    fn rfc9111_4_3_4_304_updates_headers_except_content_length() {
        let stored = resp(
            200,
            &[
                ("etag", "\"v1\""),
                ("content-length", "10"),
                ("cache-control", "max-age=1"),
                ("x-keep", "1"),
            ],
        );
        let nm = resp(
            304,
            &[
                ("etag", "\"v1\""),
                ("content-length", "0"),
                ("cache-control", "max-age=60"),
                ("x-new", "2"),
                ("content-encoding", "gzip"),
            ],
        );
        let merged = merge_304(&stored, &nm).unwrap();
        assert_eq!(merged.status, StatusCode::OK);
        assert_eq!(merged.headers[header::CONTENT_LENGTH], "10");
        assert_eq!(merged.headers[header::CACHE_CONTROL], "max-age=60");
        assert_eq!(merged.headers["x-new"], "2");
        assert_eq!(merged.headers["x-keep"], "1");
        assert!(!merged.headers.contains_key(header::CONTENT_ENCODING));
    }

    #[test]
    fn rfc9110_6_6_1_a_304_without_date_does_not_keep_the_old_date() {
        let stored = resp(200, &[("etag", "\"v1\""), ("date", &date(0))]);
        let merged = merge_304(&stored, &resp(304, &[("etag", "\"v1\"")])).unwrap();
        assert!(
            !merged.headers.contains_key(header::DATE),
            "dated at arrival instead"
        );
        let merged = merge_304(&stored, &resp(304, &[("date", &date(50))])).unwrap();
        assert_eq!(merged.headers[header::DATE], date(50).as_str());
    }

    #[test]
    fn rfc9111_3_2_304_replaces_all_lines_of_a_field_and_skips_connection_listed() {
        let stored = resp(200, &[("link", "<a>"), ("link", "<b>")]);
        let nm = resp(
            304,
            &[("link", "<c>"), ("connection", "x-hop"), ("x-hop", "1")],
        );
        let merged = merge_304(&stored, &nm).unwrap();
        assert_eq!(
            merged.headers.get_all("link").iter().collect::<Vec<_>>(),
            vec!["<c>"]
        );
        assert!(!merged.headers.contains_key("x-hop"));
        assert!(!merged.headers.contains_key(header::CONNECTION));
    }

    #[test]
    fn rfc9111_4_3_4_304_with_another_validator_does_not_update() {
        let stored = resp(200, &[("etag", "\"v1\"")]);
        assert_eq!(
            merge_304(&stored, &resp(304, &[("etag", "\"v2\"")])).unwrap_err(),
            NotUpdated::ValidatorMismatch
        );
        // A strong 304 tag does not select a weak stored one.
        let weak = resp(200, &[("etag", "W/\"v1\"")]);
        assert!(merge_304(&weak, &resp(304, &[("etag", "\"v1\"")])).is_err());
        assert!(merge_304(&weak, &resp(304, &[("etag", "W/\"v1\"")])).is_ok());
        assert_eq!(
            merge_304(&stored, &resp(200, &[])).unwrap_err(),
            NotUpdated::NotA304
        );
        let lm = resp(200, &[("last-modified", &date(0))]);
        assert!(merge_304(&lm, &resp(304, &[("last-modified", &date(5))])).is_err());
        assert!(merge_304(&lm, &resp(304, &[("last-modified", &date(0))])).is_ok());
    }

    #[test]
    fn rfc9110_13_1_1_if_none_match_uses_weak_comparison() {
        let stored = resp(
            200,
            &[
                ("etag", "\"v1\""),
                ("content-type", "text/plain"),
                ("cache-control", "max-age=9"),
            ],
        );
        let a = answer_conditional(
            &req("GET", &[("if-none-match", "W/\"x\", W/\"v1\"")]),
            &stored,
        );
        let ConditionalAnswer::NotModified(nm) = a else {
            panic!("expected 304")
        };
        assert_eq!(nm.status, StatusCode::NOT_MODIFIED);
        assert_eq!(nm.headers[header::ETAG], "\"v1\"");
        assert_eq!(nm.headers[header::CACHE_CONTROL], "max-age=9");
        assert!(
            !nm.headers.contains_key(header::CONTENT_TYPE),
            "rfc9110_15_4_5 no representation metadata"
        );
        assert!(matches!(
            answer_conditional(&req("GET", &[("if-none-match", "\"v2\"")]), &stored),
            ConditionalAnswer::ServeStored
        ));
        assert!(is_304(&answer_conditional(
            &req("HEAD", &[("if-none-match", "*")]),
            &stored
        )));
        // Commas inside an opaque tag are part of it.
        let odd = resp(200, &[("etag", "\"a,b\"")]);
        assert!(is_304(&answer_conditional(
            &req("GET", &[("if-none-match", "\"a,b\"")]),
            &odd
        )));
    }

    #[test]
    fn rfc9110_13_2_2_if_none_match_takes_precedence_over_if_modified_since() {
        let stored = resp(200, &[("etag", "\"v1\""), ("last-modified", &date(0))]);
        let r = req(
            "GET",
            &[
                ("if-none-match", "\"v2\""),
                ("if-modified-since", &date(100)),
            ],
        );
        assert!(matches!(
            answer_conditional(&r, &stored),
            ConditionalAnswer::ServeStored
        ));
    }

    #[test]
    fn rfc9110_13_1_3_if_modified_since() {
        let stored = resp(200, &[("last-modified", &date(50))]);
        assert!(is_304(&answer_conditional(
            &req("GET", &[("if-modified-since", &date(50))]),
            &stored
        )));
        assert!(!is_304(&answer_conditional(
            &req("GET", &[("if-modified-since", &date(49))]),
            &stored
        )));
        assert!(!is_304(&answer_conditional(
            &req("GET", &[("if-modified-since", "yesterday")]),
            &stored
        )));
        // Last-Modified goes into a 304 only when there is no ETag.
        let ConditionalAnswer::NotModified(nm) =
            answer_conditional(&req("GET", &[("if-modified-since", &date(60))]), &stored)
        else {
            panic!("expected 304")
        };
        assert!(nm.headers.contains_key(header::LAST_MODIFIED));
        // RFC 9111 §4.3.2: without Last-Modified the stored Date is used.
        let dated = resp(200, &[("date", &date(10))]);
        assert!(is_304(&answer_conditional(
            &req("GET", &[("if-modified-since", &date(20))]),
            &dated
        )));
    }

    #[test]
    fn rfc9110_13_2_1_preconditions_only_for_get_head_and_2xx() {
        let stored = resp(404, &[("etag", "\"v1\"")]);
        assert!(matches!(
            answer_conditional(&req("GET", &[("if-none-match", "\"v1\"")]), &stored),
            ConditionalAnswer::ServeStored
        ));
        let ok = resp(200, &[("etag", "\"v1\"")]);
        assert!(matches!(
            answer_conditional(&req("POST", &[("if-none-match", "\"v1\"")]), &ok),
            ConditionalAnswer::Forward
        ));
        assert!(matches!(
            answer_conditional(&req("GET", &[("if-match", "\"v1\"")]), &ok),
            ConditionalAnswer::Forward
        ));
        assert!(matches!(
            answer_conditional(&req("GET", &[]), &ok),
            ConditionalAnswer::ServeStored
        ));
    }

    proptest! {
        #[test]
        fn if_none_match_parser_never_panics(s in "[ -~]{0,60}") {
            if let Ok(v) = HeaderValue::from_str(&s) {
                let _ = parse_tag_list(std::iter::once(&v));
            }
        }

        #[test]
        fn entity_tag_round_trips(weak in any::<bool>(), tag in "[!#-~]{0,20}") {
            let t = EntityTag { weak, tag };
            prop_assert_eq!(EntityTag::parse(&t.to_string()), Some(t));
        }
    }
}
