//! What a shared fill or refresh sends upstream, defined once for every host.
//!
//! A fill fetches a page *for everyone*, so it must not carry one visitor's quirks (see
//! DESIGN.md, "What a shared fill sends"). Two steps, in this order:
//!
//! 1. [`strip_hop_by_hop`] when the request is received, **before** its key and Vary key are
//!    computed: the hop-by-hop fields and those the visitor's `Connection` names are meant for
//!    this cache alone. Removing them first keeps the key, the variant and the upstream request
//!    consistent: a field named in `Connection` can neither change what is fetched without
//!    changing the key, nor the other way round. `Host` cannot be named away (RFC 9110 §7.6.1:
//!    a connection option never names a field meant for every recipient).
//! 2. [`fill_request`] turns the visitor's request into the fill's: a bodiless `GET` of what the
//!    key covers, without the visitor's preconditions, ranges, credentials, request directives
//!    or framing.

use http::header::{self, HeaderMap, HeaderName};
use http::{request, Method};

/// Hop-by-hop request fields (RFC 9110 §7.6.1), plus `Proxy-Authorization` (credentials for this
/// cache, RFC 9110 §11.7.2) and the obsolete `Proxy-Connection`.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Request fields a shared fill never sends, because they are one visitor's: preconditions and
/// ranges (the fill wants the whole current representation; the visitor's are answered from
/// it), request directives (ignored for shared entries unless the operator says otherwise, and
/// then applied to that visitor alone), credentials (a request carrying them is never filled),
/// and the framing of a body a `GET` fill does not have.
const NEVER_ON_A_FILL: [HeaderName; 12] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::CACHE_CONTROL,
    header::PRAGMA,
    header::EXPECT,
    header::CONTENT_LENGTH,
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
];

/// Fields `Connection` may not name away: removing them would change what the request means for
/// everyone, not just for this hop.
fn protected(name: &HeaderName) -> bool {
    *name == header::HOST
}

/// The field names listed in `Connection` (case-insensitive, trimmed; invalid names ignored).
pub(crate) fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect()
}

/// Removes the hop-by-hop fields of a received request and those its `Connection` lists, except
/// `Host`. Call it before computing the key: see the [module documentation](self).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in connection_listed(headers) {
        if !protected(&name) {
            headers.remove(&name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Makes `request` the request a shared fill or refresh sends: the method becomes `GET`, the
/// hop-by-hop fields go (see [`strip_hop_by_hop`]) and so does everything in the list below.
/// The URI, unkeyed fields and `Accept-Encoding` are left to
/// [`Policy::prepare_upstream`](crate::Policy::prepare_upstream), which calls this.
///
/// Removed: `Range`, `If-Range`, `If-Match`, `If-Unmodified-Since`, `If-None-Match`,
/// `If-Modified-Since`, `Cache-Control`, `Pragma`, `Expect`, `Content-Length`, `Content-Type`,
/// `Authorization`.
pub fn fill_request(request: &mut request::Parts) {
    request.method = Method::GET;
    strip_hop_by_hop(&mut request.headers);
    for name in &NEVER_ON_A_FILL {
        request.headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(method: &str, pairs: &[(&str, &str)]) -> request::Parts {
        let mut b = http::Request::builder().method(method).uri("/p");
        for (k, v) in pairs {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn rfc9110_7_6_1_hop_by_hop_and_connection_listed_fields_are_removed() {
        let mut r = req(
            "GET",
            &[
                ("host", "h"),
                ("connection", "keep-alive, X-Secret, accept-encoding"),
                ("connection", "close"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("upgrade", "websocket"),
                ("proxy-authorization", "Basic eA=="),
                ("x-secret", "1"),
                ("accept-encoding", "gzip"),
                ("accept", "text/html"),
            ],
        );
        strip_hop_by_hop(&mut r.headers);
        let left: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["host", "accept"]);
    }

    #[test]
    fn rfc9110_7_6_1_connection_cannot_name_host_away() {
        let mut r = req("GET", &[("host", "h"), ("connection", "host, close")]);
        strip_hop_by_hop(&mut r.headers);
        assert_eq!(r.headers[header::HOST], "h");
        assert!(!r.headers.contains_key(header::CONNECTION));
    }

    #[test]
    fn a_fill_is_a_bodiless_get_without_the_visitors_quirks() {
        let mut r = req(
            "HEAD",
            &[
                ("host", "h"),
                ("range", "bytes=0-3"),
                ("if-range", "\"a\""),
                ("if-match", "\"a\""),
                ("if-unmodified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("if-none-match", "\"a\""),
                ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT"),
                ("cache-control", "no-store"),
                ("pragma", "no-cache"),
                ("expect", "100-continue"),
                ("content-length", "5"),
                ("content-type", "text/plain"),
                ("transfer-encoding", "chunked"),
                ("authorization", "Bearer x"),
                ("cookie", "a=b"),
                ("user-agent", "ua"),
            ],
        );
        fill_request(&mut r);
        assert_eq!(r.method, Method::GET);
        let left: Vec<&str> = r.headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["host", "cookie", "user-agent"]);
    }

    proptest! {
        /// Whatever the visitor lists in `Connection`, the fill keeps Host and carries none of
        /// the listed fields, and stripping twice changes nothing more.
        #[test]
        fn stripping_is_idempotent_and_keeps_host(
            listed in proptest::collection::vec("[a-z-]{1,12}", 0..6),
            extra in proptest::collection::vec("[a-z-]{1,12}", 0..6),
        ) {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "h".parse().unwrap());
            for n in listed.iter().chain(&extra) {
                h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), "v".parse().unwrap());
            }
            h.insert(header::CONNECTION, listed.join(", ").parse().unwrap());
            strip_hop_by_hop(&mut h);
            prop_assert_eq!(&h[header::HOST], "h");
            for n in &listed {
                if n != "host" {
                    prop_assert!(!h.contains_key(n.as_str()), "{} kept", n);
                }
            }
            let once = h.clone();
            strip_hop_by_hop(&mut h);
            prop_assert_eq!(h, once);
        }
    }
}
