//! Whether a shared cache may store a response (RFC 9111 §3), and which of its fields it must
//! leave out (§3.1).

use std::fmt;

use http::header::{self, HeaderName};
use http::{request, response, Method, StatusCode};

use crate::config::{Config, SetCookie};
use crate::directives::{Directives, FieldScope, Syntax};
use crate::freshness::{has_explicit_freshness, heuristic_allowed};
use crate::targeted::ResponseDirectives;
use crate::upstream::connection_listed;

/// Why a response is not stored.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DontStore {
    /// The request method is not GET (RFC 9111 §3: the method must be understood, and only a
    /// GET response can serve both GET and HEAD under the shared key).
    Method(Method),
    /// The request was a HEAD: its response has no content to serve a later GET. A proxy that
    /// wants HEAD misses to fill the cache sends GET upstream.
    HeadRequest,
    /// The status is not final (1xx, RFC 9111 §3).
    StatusNotFinal,
    /// A 304 updates a stored response ([`Policy::merge_304`](crate::Policy::merge_304)); it is
    /// not stored itself.
    NotModified,
    /// The status code is not one this cache understands (206 partial content, which it does
    /// not combine, or an unknown code with `must-understand`, RFC 9111 §3, §5.2.2.3).
    StatusNotUnderstood,
    /// The request has `Cache-Control: no-store` (RFC 9111 §5.2.1.5).
    RequestNoStore,
    /// The response has `no-store` (RFC 9111 §5.2.2.5).
    NoStore,
    /// The response has unqualified `private` (RFC 9111 §5.2.2.7).
    Private,
    /// The request has `Authorization` and the response neither `public`, `s-maxage` nor
    /// `must-revalidate` (RFC 9111 §3.5).
    Authorization,
    /// The response sets a cookie and [`Config::set_cookie`] is [`SetCookie::DontStore`].
    SetCookie,
    /// The response has `Vary: *` or an unreadable `Vary` (RFC 9111 §4.1).
    VaryStar,
    /// No explicit freshness, no `public`, and a status that is not heuristically cacheable
    /// (RFC 9111 §3, §4.2.2).
    NoFreshness,
    /// Stored, it could never be used: stale on arrival, no stale windows, and no validator to
    /// revalidate it with.
    NotReusable,
}

/// Whose doing a [`DontStore`] is: it decides what a host may do to the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The response's own directives or status: the origin says this URL is not to be shared,
    /// so the host may let the key pass through for a while (hit-for-pass).
    Response,
    /// Something in one visitor's request (its method, `no-store`, `Authorization`): serve that
    /// request from the origin and leave the entry, its refresh ticket and its waiters as they
    /// are. A visitor must never be able to switch a key off for everyone.
    Request,
}

impl DontStore {
    /// Whose doing this is: see [`Cause`].
    pub fn cause(&self) -> Cause {
        match self {
            DontStore::Method(_)
            | DontStore::HeadRequest
            | DontStore::RequestNoStore
            | DontStore::Authorization => Cause::Request,
            DontStore::StatusNotFinal
            | DontStore::NotModified
            | DontStore::StatusNotUnderstood
            | DontStore::NoStore
            | DontStore::Private
            | DontStore::SetCookie
            | DontStore::VaryStar
            | DontStore::NoFreshness
            | DontStore::NotReusable => Cause::Response,
        }
    }
}

impl fmt::Display for DontStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DontStore::Method(m) => write!(f, "method {m} is not cacheable"),
            DontStore::HeadRequest => f.write_str("response to HEAD has no content"),
            DontStore::StatusNotFinal => f.write_str("status is not final"),
            DontStore::NotModified => f.write_str("304 updates a stored response"),
            DontStore::StatusNotUnderstood => f.write_str("status code not understood"),
            DontStore::RequestNoStore => f.write_str("request has no-store"),
            DontStore::NoStore => f.write_str("response has no-store"),
            DontStore::Private => f.write_str("response is private"),
            DontStore::Authorization => {
                f.write_str("request has Authorization and response does not allow sharing")
            }
            DontStore::SetCookie => f.write_str("response sets a cookie"),
            DontStore::VaryStar => f.write_str("response varies on *"),
            DontStore::NoFreshness => f.write_str("response has no freshness information"),
            DontStore::NotReusable => {
                f.write_str("response would be stale at once with no validator")
            }
        }
    }
}

impl std::error::Error for DontStore {}

/// Status codes whose caching requirements this cache implements: those defined by RFC 9110
/// except 206 (ranges are not combined) and 304 (merged, not stored).
pub(crate) fn understands(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=205 | 300..=305 | 307 | 308 | 400..=417 | 421 | 422 | 426 | 500..=505
    )
}

/// Fields never stored (RFC 9111 §3.1): hop-by-hop fields and those `Connection` lists, the
/// proxy authentication fields, and the fields named by a qualified `private` or `no-cache`.
pub(crate) fn unstored_fields(headers: &http::HeaderMap, d: &Directives) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authentication-info",
    ]
    .iter()
    .map(|n| HeaderName::from_static(n))
    .collect();
    out.extend(connection_listed(headers));
    for scope in [d.private(), d.no_cache()].into_iter().flatten() {
        if let FieldScope::Fields(names) = scope {
            out.extend(names);
        }
    }
    out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    out.dedup();
    out
}

/// The RFC 9111 §3 checks that do not depend on freshness. On success returns the fields to
/// leave out when storing.
pub(crate) fn check(
    config: &Config,
    request: &request::Parts,
    response: &response::Parts,
    rd: &ResponseDirectives,
) -> Result<Vec<HeaderName>, DontStore> {
    if request.method == Method::HEAD {
        return Err(DontStore::HeadRequest);
    }
    if request.method != Method::GET {
        return Err(DontStore::Method(request.method.clone()));
    }
    let status = response.status;
    if status.is_informational() {
        return Err(DontStore::StatusNotFinal);
    }
    if status == StatusCode::NOT_MODIFIED {
        return Err(DontStore::NotModified);
    }
    if status == StatusCode::PARTIAL_CONTENT {
        return Err(DontStore::StatusNotUnderstood);
    }
    let req_dirs = Directives::from_headers(
        &request.headers,
        &header::CACHE_CONTROL,
        Syntax::CacheControl,
    );
    if req_dirs.no_store() {
        return Err(DontStore::RequestNoStore);
    }
    let d = &rd.directives;
    if d.must_understand() {
        // §5.2.2.3: no-store is ignored when the status is understood; otherwise not stored.
        if !understands(status) {
            return Err(DontStore::StatusNotUnderstood);
        }
    } else if d.no_store() {
        return Err(DontStore::NoStore);
    }
    if d.private() == Some(FieldScope::All) {
        return Err(DontStore::Private);
    }
    if request.headers.contains_key(header::AUTHORIZATION)
        && !(d.public() || d.s_maxage().is_some() || d.must_revalidate())
    {
        return Err(DontStore::Authorization);
    }
    if !(has_explicit_freshness(rd, &response.headers) || heuristic_allowed(config, status, rd)) {
        return Err(DontStore::NoFreshness);
    }
    let mut strip = unstored_fields(&response.headers, d);
    if response.headers.contains_key(header::SET_COOKIE) && !strip.contains(&header::SET_COOKIE) {
        match config.set_cookie {
            SetCookie::DontStore => return Err(DontStore::SetCookie),
            SetCookie::Strip => strip.push(header::SET_COOKIE),
            SetCookie::Store => {}
        }
    }
    Ok(strip)
}
