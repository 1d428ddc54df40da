//! Requests: the host's view of one (`peakcache_http_request`), its keys, what to send upstream,
//! and the keys an unsafe request invalidates.

use super::headers::peakcache_http_header;
use super::policy::peakcache_http_policy;
use super::{header_map, peakcache_http_headers};
use crate::bytes::{arg, peakcache_bytes, slice, writable};
use crate::panic::{boundary_unit, try_boundary};
use crate::result::{fail, peakcache_result, PEAKCACHE_ERR_MALFORMED, PEAKCACHE_ERR_NOT_CACHEABLE};
use crate::stats::peakcache_buf;
use http::header::{self, HeaderMap};
use http::{request, response, Method, Uri};
use peakcache_http::{Key, Policy, Vary};

/// A request as the host holds it: every field borrowed for the duration of the call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct peakcache_http_request {
    /// The method (`GET`), case-sensitive.
    pub method: peakcache_bytes,
    /// The scheme of the connection (`http`, `https`); empty: the policy's default scheme.
    pub scheme: peakcache_bytes,
    /// The authority (`host[:port]`); empty: taken from the `Host` header (or from `path`
    /// when that is an absolute URI).
    pub authority: peakcache_bytes,
    /// The request target's path and query as received (`/shoes?utm_source=x&page=2`), raw
    /// bytes; empty is `/`.
    pub path: peakcache_bytes,
    /// The request's header fields, in the order received.
    pub headers: *const peakcache_http_header,
    /// The number of records at `headers`.
    pub nheaders: usize,
}

/// A response's status line and header fields as the host holds them, borrowed for the
/// duration of the call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct peakcache_http_response_head {
    /// The status code (100 to 999).
    pub status: u16,
    /// The response's header fields, in the order received.
    pub headers: *const peakcache_http_header,
    /// The number of records at `headers`.
    pub nheaders: usize,
}

/// A checked request: its parts and the scheme to key it with.
pub(crate) struct Request {
    pub(crate) parts: request::Parts,
    scheme: Option<String>,
}

impl Request {
    /// The primary key, or `PEAKCACHE_ERR_NOT_CACHEABLE` with the reason.
    pub(crate) fn key(&self, policy: &Policy) -> Result<Key, peakcache_result> {
        let key = match &self.scheme {
            Some(s) => policy.key_with_scheme(&self.parts, s),
            None => policy.key(&self.parts),
        };
        key.map_err(|e| fail(PEAKCACHE_ERR_NOT_CACHEABLE, e))
    }
}

fn malformed(what: impl std::fmt::Display) -> peakcache_result {
    fail(PEAKCACHE_ERR_MALFORMED, what)
}

/// Reads a host's request.
///
/// # Safety
/// `req` must be NULL or point to a request whose pointers are as its fields document.
pub(crate) unsafe fn read(
    policy: &Policy,
    req: *const peakcache_http_request,
) -> Result<Request, peakcache_result> {
    // SAFETY: the caller promises a live request.
    let r = unsafe { arg(req, "request") }?;
    // SAFETY: the caller promises each field's bytes.
    let method = unsafe { slice(r.method.data, r.method.len, "request.method") }?;
    // SAFETY: as above.
    let scheme = unsafe { slice(r.scheme.data, r.scheme.len, "request.scheme") }?;
    // SAFETY: as above.
    let authority = unsafe { slice(r.authority.data, r.authority.len, "request.authority") }?;
    // SAFETY: as above.
    let path = unsafe { slice(r.path.data, r.path.len, "request.path") }?;
    let method = Method::from_bytes(method)
        .map_err(|_| malformed(format_args!("request.method {:?}", lossy(method))))?;
    let scheme = if scheme.is_empty() {
        None
    } else {
        let s =
            std::str::from_utf8(scheme).map_err(|_| malformed("request.scheme is not UTF-8"))?;
        Some(s.to_owned())
    };
    let path = if path.is_empty() { &b"/"[..] } else { path };
    // SAFETY: the caller promises the header records.
    let mut headers = unsafe { header_map(r.headers, r.nheaders, "request.headers") }?;
    // Before anything reads them: what `Connection` names is for this hop alone, so it shapes
    // neither the key, nor the variant, nor what a fill sends.
    peakcache_http::strip_hop_by_hop(&mut headers);
    let uri = target(policy, scheme.as_deref(), authority, path, &headers)?;
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.headers = headers;
    Ok(Request { parts, scheme })
}

/// Reads a host's response head.
///
/// # Safety
/// `resp` must be NULL or point to a head whose pointers are as its fields document.
pub(crate) unsafe fn read_response(
    resp: *const peakcache_http_response_head,
    what: &str,
) -> Result<response::Parts, peakcache_result> {
    // SAFETY: the caller promises a live head.
    let r = unsafe { arg(resp, what) }?;
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = super::status_code(r.status)?;
    // SAFETY: the caller promises the header records.
    parts.headers = unsafe { header_map(r.headers, r.nheaders, what) }?;
    Ok(parts)
}

/// The target URI. An origin-form path with a known authority (given, or a single `Host`)
/// becomes an absolute URI carrying the scheme, so every policy call sees the same origin.
fn target(
    policy: &Policy,
    scheme: Option<&str>,
    authority: &[u8],
    path: &[u8],
    headers: &HeaderMap,
) -> Result<Uri, peakcache_result> {
    let absolute = |authority: &[u8]| {
        Uri::builder()
            .scheme(scheme.unwrap_or(&policy.config().default_scheme))
            .authority(authority)
            .path_and_query(path)
            .build()
    };
    let bad = || {
        malformed(format_args!(
            "request target {:?} with authority {:?}",
            lossy(path),
            lossy(authority)
        ))
    };
    if !authority.is_empty() {
        return absolute(authority).map_err(|_| bad());
    }
    let origin_form = Uri::try_from(path).map_err(|_| bad())?;
    if !path.starts_with(b"/") {
        return Ok(origin_form);
    }
    let mut hosts = headers.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        // A bad Host stays in the headers, for the key to report it as not cacheable.
        (Some(host), None) => Ok(absolute(host.as_bytes()).unwrap_or(origin_form)),
        _ => Ok(origin_form),
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The primary cache key of a request in `*out`: `GET <scheme>://<host><path>?<query>`, the
/// method class first (GET and HEAD share one), the host lowercased, campaign parameters
/// removed. `PEAKCACHE_ERR_NOT_CACHEABLE` (reason in `peakcache_last_error`) when the request
/// has no key: forward it untouched. `PEAKCACHE_ERR_MALFORMED` for bytes that are not HTTP.
///
/// # Safety
/// `policy` must be NULL or live; `request` NULL or a request as its fields document; `out`
/// NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_key(
    policy: *const peakcache_http_policy,
    request: *const peakcache_http_request,
    out: *mut *mut peakcache_buf,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live policy.
        let p = &unsafe { arg(policy, "policy") }?.policy;
        let out = writable(out, "out")?;
        // SAFETY: the caller promises the request.
        let key = unsafe { read(p, request) }?.key(p)?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(peakcache_buf::into_raw(key.as_bytes().to_vec())) };
        Ok(())
    })
}

/// The key of the variant of a request selected by a stored `Vary` value
/// (`vary[0..vary_len]`, as `peakcache_http_store_vary` gives it), in `*out`: the primary key,
/// a NUL byte, then the request's values of the listed fields, normalised (`Accept-Encoding`
/// reduced to the one coding this cache serves). Use it only with a non-empty `Vary`: a response
/// without one is stored under the primary key. `PEAKCACHE_ERR_INVALID` for `Vary: *` or a
/// value that is not a list of field names.
///
/// # Safety
/// As `peakcache_http_key`; `vary` NULL or `vary_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_variant_key(
    policy: *const peakcache_http_policy,
    request: *const peakcache_http_request,
    vary: *const u8,
    vary_len: usize,
    out: *mut *mut peakcache_buf,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live policy.
        let p = &unsafe { arg(policy, "policy") }?.policy;
        // SAFETY: the caller promises `vary_len` readable bytes.
        let vary = unsafe { slice(vary, vary_len, "vary") }?;
        let out = writable(out, "out")?;
        // SAFETY: the caller promises the request.
        let req = unsafe { read(p, request) }?;
        let key = req.key(p)?;
        let mut map = HeaderMap::new();
        super::append(&mut map, header::VARY.as_str().as_bytes(), vary, "vary")?;
        let vary = Vary::from_response(&map).ok_or_else(|| {
            fail(
                crate::result::PEAKCACHE_ERR_INVALID,
                "vary is * or not a list of field names",
            )
        })?;
        let variant = key.variant(&p.vary_key(&vary, &req.parts.headers));
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(peakcache_buf::into_raw(variant.to_vec())) };
        Ok(())
    })
}

/// What a fill or refresh sends upstream, defined once for every host, so the origin sees
/// nothing of one visitor that the key leaves out: `*path` receives the path and query without
/// the ignored (campaign) parameters; `*headers` the request's fields without the hop-by-hop
/// ones and those the visitor's `Connection` names (never `Host`), without the unkeyed ones
/// (`X-Forwarded-Host`, ...), and without `Range`, `If-Range`, `If-Match`,
/// `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since` (answer the client's with
/// `peakcache_http_serve`), `Cache-Control`, `Pragma`, `Authorization`, `Expect`,
/// `Content-Length`, `Transfer-Encoding` and `Content-Type`; `Accept-Encoding` is reduced to the
/// coding this cache would pick. Send these instead of the client's, with the method `GET` and
/// no body, then apply the operator's own rewrites. Both are written only on success.
///
/// # Safety
/// As `peakcache_http_key`; `path` and `headers` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_upstream_request(
    policy: *const peakcache_http_policy,
    request: *const peakcache_http_request,
    path: *mut *mut peakcache_buf,
    headers: *mut *mut peakcache_http_headers,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live policy.
        let p = &unsafe { arg(policy, "policy") }?.policy;
        let (path, headers) = (writable(path, "path")?, writable(headers, "headers")?);
        // SAFETY: the caller promises the request.
        let mut req = unsafe { read(p, request) }?;
        p.prepare_upstream(&mut req.parts);
        let pq = req
            .parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .as_bytes()
            .to_vec();
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            path.write(peakcache_buf::into_raw(pq));
            headers.write(peakcache_http_headers::into_raw(&req.parts.headers));
        }
        Ok(())
    })
}

/// A list of byte strings the library built (owned by the caller): read it as an array with
/// `peakcache_http_keys_items`, free it with `peakcache_http_keys_free`.
pub struct peakcache_http_keys {
    // Only kept alive: `items` point into these buffers, never touched after construction.
    _keys: Vec<Key>,
    items: Vec<peakcache_bytes>,
}

/// The keys to invalidate after an unsafe request (`POST`, `PUT`, `DELETE`, ...) got the
/// response `response` (RFC 9111 §4.4), in `*out`: the target URI and same-origin
/// `Location` / `Content-Location`, as primary keys. Empty for safe methods and error statuses.
/// Every entry the HTTP family stores is tagged with its primary key (see
/// `peakcache_http_store_tags`), so `peakcache_purge_tag(cache, key, len, ...)` for each removes
/// every variant too.
///
/// # Safety
/// As `peakcache_http_key`; `response` NULL or a head as its fields document.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_invalidations(
    policy: *const peakcache_http_policy,
    request: *const peakcache_http_request,
    response: *const peakcache_http_response_head,
    out: *mut *mut peakcache_http_keys,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live policy.
        let p = &unsafe { arg(policy, "policy") }?.policy;
        let out = writable(out, "out")?;
        // SAFETY: the caller promises the request.
        let req = unsafe { read(p, request) }?;
        // SAFETY: the caller promises the response head.
        let resp = unsafe { read_response(response, "response") }?;
        let keys = p.invalidations(&req.parts, &resp);
        let items = keys
            .iter()
            .map(|k| peakcache_bytes {
                data: k.as_bytes().as_ptr(),
                len: k.as_bytes().len(),
            })
            .collect();
        let list = Box::new(peakcache_http_keys { _keys: keys, items });
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(Box::into_raw(list)) };
        Ok(())
    })
}

/// The list as an array: `*items` (`*n` byte strings), valid until `peakcache_http_keys_free`.
///
/// # Safety
/// `keys` must be NULL or live; `items` and `n` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_keys_items(
    keys: *const peakcache_http_keys,
    items: *mut *const peakcache_bytes,
    n: *mut usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live list.
        let k = unsafe { arg(keys, "keys") }?;
        let (items, n) = (writable(items, "items")?, writable(n, "n")?);
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            items.write(k.items.as_ptr());
            n.write(k.items.len());
        }
        Ok(())
    })
}

/// Frees a key list. NULL is a no-op.
///
/// # Safety
/// `keys` must be NULL or live, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_keys_free(keys: *mut peakcache_http_keys) {
    boundary_unit(|| {
        if !keys.is_null() {
            // SAFETY: created by Box::into_raw; the caller gives it up.
            drop(unsafe { Box::from_raw(keys) });
        }
    })
}
