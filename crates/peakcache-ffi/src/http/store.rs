//! The store decision: whether and how long to keep an upstream response (or a revalidated
//! one), the tags and Vary that go with it, and the response to commit, its headers prepared
//! and the entry metadata inside.

use super::policy::peakcache_http_policy;
use super::request::{self, peakcache_http_request, peakcache_http_response_head};
use super::{meta, stored_parts, unix_ms};
use crate::abi;
use crate::bytes::{arg, peakcache_bytes, writable};
use crate::cache::millis;
use crate::entry::peakcache_entry;
use crate::panic::{boundary_or, boundary_unit, try_boundary};
use crate::response::peakcache_response;
use crate::result::{
    fail, peakcache_result, PEAKCACHE_ERR_INVALID, PEAKCACHE_ERR_VALIDATOR_MISMATCH,
};
use bytes::Bytes;
use http::response;
use peakcache_http::{DontStore, NotUpdated, Policy, Store};
use std::ffi::c_char;
use std::ptr::null_mut;

/// Why a response is not stored (`peakcache_http_decision.reason`); `PEAKCACHE_HTTP_STORE`
/// when it is. `peakcache_http_dont_store_str` describes each. Values are only ever appended.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum peakcache_http_dont_store {
    /// Storable: `store` holds the decision.
    PEAKCACHE_HTTP_STORE = 0,
    /// The request method is not GET (RFC 9111 §3).
    PEAKCACHE_HTTP_DONT_STORE_METHOD = 1,
    /// The request was a HEAD: its response has no content to serve a later GET.
    PEAKCACHE_HTTP_DONT_STORE_HEAD_REQUEST = 2,
    /// The status is not final (1xx).
    PEAKCACHE_HTTP_DONT_STORE_STATUS_NOT_FINAL = 3,
    /// A 304 updates a stored response (`peakcache_http_revalidate`); it is not stored itself.
    PEAKCACHE_HTTP_DONT_STORE_NOT_MODIFIED = 4,
    /// A status this cache does not understand (206, or unknown with `must-understand`).
    PEAKCACHE_HTTP_DONT_STORE_STATUS_NOT_UNDERSTOOD = 5,
    /// The request has `Cache-Control: no-store`.
    PEAKCACHE_HTTP_DONT_STORE_REQUEST_NO_STORE = 6,
    /// The response has `no-store`.
    PEAKCACHE_HTTP_DONT_STORE_NO_STORE = 7,
    /// The response is `private`.
    PEAKCACHE_HTTP_DONT_STORE_PRIVATE = 8,
    /// The request has `Authorization` and the response does not allow sharing (RFC 9111 §3.5).
    PEAKCACHE_HTTP_DONT_STORE_AUTHORIZATION = 9,
    /// The response sets a cookie (see `peakcache_http_config.set_cookie`).
    PEAKCACHE_HTTP_DONT_STORE_SET_COOKIE = 10,
    /// The response has `Vary: *` or an unreadable `Vary`.
    PEAKCACHE_HTTP_DONT_STORE_VARY_STAR = 11,
    /// No freshness information and a status that is not heuristically cacheable.
    PEAKCACHE_HTTP_DONT_STORE_NO_FRESHNESS = 12,
    /// Stale on arrival, without stale windows or a validator: it could never be used.
    PEAKCACHE_HTTP_DONT_STORE_NOT_REUSABLE = 13,
    /// A reason newer than this header.
    PEAKCACHE_HTTP_DONT_STORE_OTHER = 255,
}

impl peakcache_http_dont_store {
    fn of(reason: &DontStore) -> Self {
        use peakcache_http_dont_store::*;
        match reason {
            DontStore::Method(_) => PEAKCACHE_HTTP_DONT_STORE_METHOD,
            DontStore::HeadRequest => PEAKCACHE_HTTP_DONT_STORE_HEAD_REQUEST,
            DontStore::StatusNotFinal => PEAKCACHE_HTTP_DONT_STORE_STATUS_NOT_FINAL,
            DontStore::NotModified => PEAKCACHE_HTTP_DONT_STORE_NOT_MODIFIED,
            DontStore::StatusNotUnderstood => PEAKCACHE_HTTP_DONT_STORE_STATUS_NOT_UNDERSTOOD,
            DontStore::RequestNoStore => PEAKCACHE_HTTP_DONT_STORE_REQUEST_NO_STORE,
            DontStore::NoStore => PEAKCACHE_HTTP_DONT_STORE_NO_STORE,
            DontStore::Private => PEAKCACHE_HTTP_DONT_STORE_PRIVATE,
            DontStore::Authorization => PEAKCACHE_HTTP_DONT_STORE_AUTHORIZATION,
            DontStore::SetCookie => PEAKCACHE_HTTP_DONT_STORE_SET_COOKIE,
            DontStore::VaryStar => PEAKCACHE_HTTP_DONT_STORE_VARY_STAR,
            DontStore::NoFreshness => PEAKCACHE_HTTP_DONT_STORE_NO_FRESHNESS,
            DontStore::NotReusable => PEAKCACHE_HTTP_DONT_STORE_NOT_REUSABLE,
            _ => PEAKCACHE_HTTP_DONT_STORE_OTHER,
        }
    }

    fn text(code: u32) -> &'static str {
        match code {
            0 => "stored\0",
            1 => "request method is not cacheable\0",
            2 => "response to HEAD has no content\0",
            3 => "status is not final\0",
            4 => "304 updates a stored response\0",
            5 => "status code not understood\0",
            6 => "request has no-store\0",
            7 => "response has no-store\0",
            8 => "response is private\0",
            9 => "request has Authorization and response does not allow sharing\0",
            10 => "response sets a cookie\0",
            11 => "response varies on *\0",
            12 => "response has no freshness information\0",
            13 => "response would be stale at once with no validator\0",
            _ => "not storable\0",
        }
    }
}

/// A short description of a `peakcache_http_dont_store` reason (`"response has no-store"`) as a
/// static NUL-terminated string, for logs. Never NULL; never free it.
#[no_mangle]
pub extern "C" fn peakcache_http_dont_store_str(reason: u32) -> *const c_char {
    boundary_or(c"not storable".as_ptr(), || {
        peakcache_http_dont_store::text(reason).as_ptr().cast()
    })
}

/// Whose doing a `peakcache_http_dont_store` reason is (`peakcache_http_dont_store_cause`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum peakcache_http_cause {
    /// The response's own directives or status: the host may end the fill or refresh with
    /// `peakcache_fill_uncacheable` / `peakcache_refresh_uncacheable` (hit-for-pass).
    PEAKCACHE_HTTP_CAUSE_RESPONSE = 0,
    /// Something in one visitor's request: serve that request from the origin and give the
    /// ticket back untouched (`peakcache_fill_abandon`, `peakcache_refresh_abandon`), so no
    /// visitor can switch a key off for everyone.
    PEAKCACHE_HTTP_CAUSE_REQUEST = 1,
}

/// Whose doing a `peakcache_http_dont_store` reason is. `PEAKCACHE_HTTP_STORE` and unknown values
/// answer `PEAKCACHE_HTTP_CAUSE_RESPONSE`.
#[no_mangle]
pub extern "C" fn peakcache_http_dont_store_cause(reason: u32) -> peakcache_http_cause {
    use peakcache_http_dont_store::*;
    let request = [
        PEAKCACHE_HTTP_DONT_STORE_METHOD,
        PEAKCACHE_HTTP_DONT_STORE_HEAD_REQUEST,
        PEAKCACHE_HTTP_DONT_STORE_REQUEST_NO_STORE,
        PEAKCACHE_HTTP_DONT_STORE_AUTHORIZATION,
    ];
    if request.iter().any(|r| *r as u32 == reason) {
        peakcache_http_cause::PEAKCACHE_HTTP_CAUSE_REQUEST
    } else {
        peakcache_http_cause::PEAKCACHE_HTTP_CAUSE_RESPONSE
    }
}

/// What `peakcache_http_on_response` and `peakcache_http_revalidate` decided.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct peakcache_http_decision {
    /// `PEAKCACHE_HTTP_STORE`, or why not (then every other field is 0 / NULL: forward the
    /// response, and complete the fill with `peakcache_fill_uncacheable`).
    pub reason: peakcache_http_dont_store,
    /// Fresh for this long from now (the response time), for the commit's `ttl_ms`: the
    /// freshness lifetime minus the response's age.
    pub ttl_ms: u64,
    /// The stale-while-revalidate window, for the commit's `swr_ms` (never
    /// `PEAKCACHE_WINDOW_DEFAULT`: the policy's defaults are already in).
    pub swr_ms: u64,
    /// The stale-if-error window, for the commit's `sie_ms`.
    pub sie_ms: u64,
    /// STORE: the rest of the decision (tags, Vary, the response to commit); free it with
    /// `peakcache_http_store_free` once committed.
    pub store: *mut peakcache_http_store,
}

crate::abi::sized!(peakcache_http_decision, store);

/// A decision to store (owned by the caller): the response to commit
/// (`peakcache_http_store_response`), its tags (`peakcache_http_store_tags`) and its Vary
/// (`peakcache_http_store_vary`). Freed by `peakcache_http_store_free`. Read-only.
pub struct peakcache_http_store {
    status: u16,
    headers: http::HeaderMap,
    body: Option<Bytes>,
    meta: Vec<u8>,
    vary: Vec<u8>,
    // Only kept alive: `tag_items` point into these buffers, never touched after construction.
    _tags: Vec<Vec<u8>>,
    tag_items: Vec<peakcache_bytes>,
}

/// The decision for `resp` (prepared in place when storable), answering `req`.
fn decide(
    policy: &Policy,
    req: &request::Request,
    mut resp: response::Parts,
    body: Option<Bytes>,
    times: (u64, u64),
) -> Result<peakcache_http_decision, peakcache_result> {
    let mut d = peakcache_http_decision {
        reason: peakcache_http_dont_store::PEAKCACHE_HTTP_STORE,
        ttl_ms: 0,
        swr_ms: 0,
        sie_ms: 0,
        store: null_mut(),
    };
    let key = req.key(policy)?;
    let store: Store =
        match policy.on_response(&req.parts, &resp, unix_ms(times.0), unix_ms(times.1)) {
            Ok(s) => s,
            Err(why) => {
                d.reason = peakcache_http_dont_store::of(&why);
                return Ok(d);
            }
        };
    store.prepare(&mut resp);
    // The Surrogate-Key tags, then the primary key: purging the key as a tag removes every
    // variant (and whatever the host keeps under the primary key) at once.
    let mut tags: Vec<Vec<u8>> = store.tags.iter().map(|t| t.as_bytes().to_vec()).collect();
    tags.push(key.as_bytes().to_vec());
    let tag_items = tags
        .iter()
        .map(|t| peakcache_bytes {
            data: t.as_ptr(),
            len: t.len(),
        })
        .collect();
    d.ttl_ms = millis(store.freshness.ttl);
    d.swr_ms = millis(store.freshness.swr);
    d.sie_ms = millis(store.freshness.sie);
    let handle = peakcache_http_store {
        status: resp.status.as_u16(),
        headers: resp.headers,
        body,
        meta: meta::encode(&store.meta),
        vary: if store.vary.is_empty() {
            Vec::new()
        } else {
            store.vary.to_header_value().as_bytes().to_vec()
        },
        _tags: tags,
        tag_items,
    };
    d.store = Box::into_raw(Box::new(handle));
    Ok(d)
}

/// Decides whether to store an upstream response, and how, in `*out` (see
/// `peakcache_http_decision`). `request` is the request as sent upstream (or the client's);
/// `request_time_ms` when it was sent and `response_time_ms` when the response's head arrived,
/// both in Unix milliseconds (they give the response's age, RFC 9111 §4.2.3). A response not
/// to store is still `PEAKCACHE_OK`, with the reason in `out->reason`.
/// `PEAKCACHE_ERR_NOT_CACHEABLE` when the request has no key; `PEAKCACHE_ERR_MALFORMED` for
/// bytes that are not HTTP.
///
/// # Safety
/// `policy` must be NULL or live; `request` and `response` NULL or as their fields document;
/// `out` NULL or writable.
///
/// Exported as `peakcache_http_on_response_sized` with the size of `*out` last; the header's `peakcache_http_on_response` macro passes
/// `sizeof(peakcache_http_decision)` (see the header's "Sizes" convention).
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_on_response_sized(
    policy: *const peakcache_http_policy,
    request: *const peakcache_http_request,
    response: *const peakcache_http_response_head,
    request_time_ms: u64,
    response_time_ms: u64,
    out: *mut peakcache_http_decision,
    out_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live policy.
        let p = &unsafe { arg(policy, "policy") }?.policy;
        let out = writable(out, "out")?;
        abi::writable_sized::<peakcache_http_decision>(out_size)?;
        // SAFETY: the caller promises the request.
        let req = unsafe { request::read(p, request) }?;
        // SAFETY: the caller promises the response head.
        let resp = unsafe { request::read_response(response, "response") }?;
        let d = decide(p, &req, resp, None, (request_time_ms, response_time_ms))?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { abi::write(out, out_size, &d) };
        Ok(())
    })
}

/// Revalidation answered `304 Not Modified`: merges the 304 `not_modified` into the stored
/// response of `entry` (RFC 9111 §4.3.4: its fields replace the stored ones, except the body's
/// framing and coding) and decides again, as `peakcache_http_on_response`, for the merged
/// response, in `*out`. When storable, `peakcache_http_store_response` gives the merged response
/// with the stored body (shared, not copied): commit it with the refresh or fill, and serve it.
/// `PEAKCACHE_ERR_VALIDATOR_MISMATCH`: the 304 is for another version; fetch again without
/// conditions. `PEAKCACHE_ERR_INVALID` when `not_modified` is not a 304 or the entry has no
/// HTTP metadata.
///
/// # Safety
/// As `peakcache_http_on_response`; `entry` NULL or a live entry.
///
/// Exported as `peakcache_http_revalidate_sized` with the size of `*out` last; the header's `peakcache_http_revalidate` macro passes
/// `sizeof(peakcache_http_decision)` (see the header's "Sizes" convention).
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_revalidate_sized(
    policy: *const peakcache_http_policy,
    request: *const peakcache_http_request,
    entry: *const peakcache_entry,
    not_modified: *const peakcache_http_response_head,
    request_time_ms: u64,
    response_time_ms: u64,
    out: *mut peakcache_http_decision,
    out_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live policy.
        let p = &unsafe { arg(policy, "policy") }?.policy;
        // SAFETY: the caller promises a live entry.
        let stored = unsafe { peakcache_entry::stored(entry) }?;
        let out = writable(out, "out")?;
        abi::writable_sized::<peakcache_http_decision>(out_size)?;
        // SAFETY: the caller promises the request.
        let req = unsafe { request::read(p, request) }?;
        // SAFETY: the caller promises the response head.
        let nm = unsafe { request::read_response(not_modified, "not_modified") }?;
        meta::decode(&stored.meta)?;
        let merged = p
            .merge_304(&stored_parts(stored)?, &nm)
            .map_err(|e| match e {
                NotUpdated::ValidatorMismatch => fail(PEAKCACHE_ERR_VALIDATOR_MISMATCH, e),
                other => fail(PEAKCACHE_ERR_INVALID, other),
            })?;
        let body = Some(stored.body.clone());
        let d = decide(p, &req, merged, body, (request_time_ms, response_time_ms))?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { abi::write(out, out_size, &d) };
        Ok(())
    })
}

/// A new response to commit in `*out`: the decided status, the headers to store (the fields a
/// shared cache must not store removed, RFC 9111 §3.1, and `Date` added when missing), and the
/// entry metadata the serving calls read (`peakcache_response_set_meta`: do not overwrite it).
/// Its body is empty after `peakcache_http_on_response` (append the body as it arrives) and the
/// stored body after `peakcache_http_revalidate`. May be called more than once.
///
/// # Safety
/// `store` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_store_response(
    store: *const peakcache_http_store,
    out: *mut *mut peakcache_response,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live store.
        let s = unsafe { arg(store, "store") }?;
        let out = writable(out, "out")?;
        let mut r = peakcache_response::new(s.status);
        for (name, value) in &s.headers {
            r.push_header(name.as_str().as_bytes(), value.as_bytes())?;
        }
        r.meta.extend_from_slice(&s.meta);
        if let Some(body) = &s.body {
            r.share_body(body.clone());
        }
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(Box::into_raw(Box::new(r))) };
        Ok(())
    })
}

/// The `Age` of the response this decision stores, at `now_ms` (Unix milliseconds), in
/// `*secs`: how old it was when it arrived (RFC 9111 §4.2.3: its `Age` and the time the
/// request took) plus the time since; what `peakcache_http_age` says of the entry once
/// committed. A host forwarding the response it is storing sends it as the `Age` header, so
/// that visitor is told what the next ones are.
///
/// # Safety
/// `store` must be NULL or live; `secs` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_store_age(
    store: *const peakcache_http_store,
    now_ms: u64,
    secs: *mut u64,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live store.
        let s = unsafe { arg(store, "store") }?;
        let secs = writable(secs, "secs")?;
        let m = meta::decode(&s.meta)?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { secs.write(super::serve::age_secs(&m, now_ms)) };
        Ok(())
    })
}

/// The tags to commit with: the response's `Surrogate-Key` tags, then its primary key, as an
/// array `*tags` of `*ntags` byte strings valid until `peakcache_http_store_free(store)`; pass
/// them straight to `peakcache_fill_commit`.
///
/// # Safety
/// `store` must be NULL or live; `tags` and `ntags` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_store_tags(
    store: *const peakcache_http_store,
    tags: *mut *const peakcache_bytes,
    ntags: *mut usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live store.
        let s = unsafe { arg(store, "store") }?;
        let (tags, ntags) = (writable(tags, "tags")?, writable(ntags, "ntags")?);
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            tags.write(s.tag_items.as_ptr());
            ntags.write(s.tag_items.len());
        }
        Ok(())
    })
}

/// The response's `Vary` (field names, lowercase, sorted: `accept-encoding, cookie`) as a view
/// valid until `peakcache_http_store_free(store)`; `*len` 0 when it varies on nothing. When not
/// empty, store the response under `peakcache_http_variant_key(policy, request, vary, len)` and
/// keep this value under the primary key, so later lookups can compute the variant key.
///
/// # Safety
/// `store` must be NULL or live; `ptr` and `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_store_vary(
    store: *const peakcache_http_store,
    ptr: *mut *const u8,
    len: *mut usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live store.
        let s = unsafe { arg(store, "store") }?;
        let (ptr, len) = (writable(ptr, "ptr")?, writable(len, "len")?);
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            ptr.write(s.vary.as_ptr());
            len.write(s.vary.len());
        }
        Ok(())
    })
}

/// Frees a store decision. NULL is a no-op. Responses made from it stay valid.
///
/// # Safety
/// `store` must be NULL or live, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_store_free(store: *mut peakcache_http_store) {
    boundary_unit(|| {
        if !store.is_null() {
            // SAFETY: created by Box::into_raw; the caller gives it up.
            drop(unsafe { Box::from_raw(store) });
        }
    })
}
