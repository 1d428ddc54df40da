//! Serving: answering a client from an entry (a 304, or the stored response with `Age` and
//! `Cache-Status`), the `Cache-Status` and `Age` values alone, and the conditional headers of a
//! revalidation.

use super::policy::peakcache_http_policy;
use super::request::{self, peakcache_http_request};
use super::{meta, peakcache_http_headers, stored_parts, unix_ms};
use crate::abi;
use crate::bytes::{arg, writable};
use crate::entry::peakcache_entry;
use crate::panic::{boundary_or, try_boundary};
use crate::result::{fail, peakcache_result, PEAKCACHE_ERR_INVALID, PEAKCACHE_ERR_TOO_LARGE};
use crate::stats::peakcache_buf;
use peakcache_http::{CacheStatus, ConditionalAnswer, EntryMeta, Fwd, Policy, Reuse, StaleUse};
use std::ptr::null_mut;
use std::time::SystemTime;

/// How a response reached the client, for `Cache-Status` (RFC 9211). Passed as a `uint32_t`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum peakcache_http_outcome {
    /// A fresh entry: `hit; ttl=N`.
    PEAKCACHE_HTTP_HIT = 1,
    /// A stale entry served while it is refreshed: `hit; ttl=-N; detail=stale-while-revalidate`
    /// (`grace-while-revalidate` when only the operator's grace allowed it).
    PEAKCACHE_HTTP_STALE = 2,
    /// A stale entry served because the origin failed: `fwd=stale; fwd-status=S; ttl=-N;
    /// detail=stale-if-error` (or `grace-if-error`).
    PEAKCACHE_HTTP_STALE_IF_ERROR = 3,
    /// Nothing stored for the URI; fetched: `fwd=uri-miss; fwd-status=S` (`; stored`).
    PEAKCACHE_HTTP_MISS = 4,
    /// Stored for the URI but not for this variant: `fwd=vary-miss; fwd-status=S` (`; stored`).
    PEAKCACHE_HTTP_VARY_MISS = 5,
    /// The answer of another request's fetch (a waiter's hit): `fwd=miss; fwd-status=S;
    /// collapsed`.
    PEAKCACHE_HTTP_COLLAPSED = 6,
    /// A stale entry revalidated (or refetched) before answering: `fwd=stale; fwd-status=S`
    /// (`; stored`).
    PEAKCACHE_HTTP_REVALIDATED = 7,
    /// Forwarded without the cache: the key passes through (not cacheable): `fwd=bypass;
    /// fwd-status=S`.
    PEAKCACHE_HTTP_PASS = 8,
    /// Forwarded because of the request method: `fwd=method; fwd-status=S`.
    PEAKCACHE_HTTP_METHOD = 9,
}

impl peakcache_http_outcome {
    fn from_u32(v: u32) -> Result<Self, peakcache_result> {
        use peakcache_http_outcome::*;
        Ok(match v {
            1 => PEAKCACHE_HTTP_HIT,
            2 => PEAKCACHE_HTTP_STALE,
            3 => PEAKCACHE_HTTP_STALE_IF_ERROR,
            4 => PEAKCACHE_HTTP_MISS,
            5 => PEAKCACHE_HTTP_VARY_MISS,
            6 => PEAKCACHE_HTTP_COLLAPSED,
            7 => PEAKCACHE_HTTP_REVALIDATED,
            8 => PEAKCACHE_HTTP_PASS,
            9 => PEAKCACHE_HTTP_METHOD,
            _ => {
                return Err(fail(
                    PEAKCACHE_ERR_INVALID,
                    format_args!("outcome {v} is not a peakcache_http_outcome"),
                ))
            }
        })
    }
}

/// The `Cache-Status` member for an outcome; `ttl` (and the stale detail) from `meta` when an
/// entry is involved.
fn cache_status(
    policy: &Policy,
    outcome: peakcache_http_outcome,
    fwd_status: u16,
    stored: bool,
    meta: Option<&EntryMeta>,
    now: SystemTime,
) -> CacheStatus {
    use peakcache_http_outcome::*;
    let mut s = policy.cache_status();
    let mut stale = None;
    s = match outcome {
        PEAKCACHE_HTTP_HIT => s.hit(),
        PEAKCACHE_HTTP_STALE => {
            stale = Some(StaleUse::WhileRevalidate);
            s.hit()
        }
        PEAKCACHE_HTTP_STALE_IF_ERROR => {
            stale = Some(StaleUse::IfError);
            s.fwd(Fwd::Stale)
        }
        PEAKCACHE_HTTP_MISS => s.fwd(Fwd::UriMiss),
        PEAKCACHE_HTTP_VARY_MISS => s.fwd(Fwd::VaryMiss),
        PEAKCACHE_HTTP_COLLAPSED => s.fwd(Fwd::Miss).collapsed(),
        PEAKCACHE_HTTP_REVALIDATED => s.fwd(Fwd::Stale),
        PEAKCACHE_HTTP_PASS => s.fwd(Fwd::Bypass),
        PEAKCACHE_HTTP_METHOD => s.fwd(Fwd::Method),
    };
    let forwarded = !matches!(outcome, PEAKCACHE_HTTP_HIT | PEAKCACHE_HTTP_STALE);
    if forwarded && fwd_status != 0 {
        s = s.fwd_status(fwd_status);
    }
    if stored {
        s = s.stored();
    }
    if let Some(m) = meta {
        s = s.ttl(m.ttl_secs(now));
        if let Some(kind) = stale {
            // No grant while the metadata says fresh: the cache made it stale (a soft purge).
            if let Some(grant) = m.stale_grant(kind, now) {
                s = s.stale(kind, grant);
            }
        }
    }
    s
}

/// The HTTP metadata of an entry, or `PEAKCACHE_ERR_INVALID`.
///
/// # Safety
/// A non-NULL `entry` must be live.
unsafe fn entry_meta<'a>(
    entry: *const peakcache_entry,
) -> Result<(&'a crate::value::Stored, EntryMeta), peakcache_result> {
    // SAFETY: forwarded promise.
    let stored = unsafe { peakcache_entry::stored(entry) }?;
    Ok((stored, meta::decode(&stored.meta)?))
}

/// The `Cache-Status` field value to append for this cache (`peakcache; hit; ttl=42`), in
/// `*out`. `fwd_status` is the upstream status for forwarded outcomes (0: none); `stored` adds
/// `stored` (a forwarded response that was stored). `entry` may be NULL; if not, it gives `ttl`
/// (and the stale detail) at `now_ms` (Unix milliseconds) and must carry HTTP metadata
/// (`PEAKCACHE_ERR_INVALID` otherwise). Serving from an entry, `peakcache_http_serve` includes
/// this already.
///
/// # Safety
/// `policy` must be NULL or live; `entry` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_cache_status(
    policy: *const peakcache_http_policy,
    outcome: u32,
    fwd_status: u16,
    stored: bool,
    entry: *const peakcache_entry,
    now_ms: u64,
    out: *mut *mut peakcache_buf,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live policy.
        let p = &unsafe { arg(policy, "policy") }?.policy;
        let outcome = peakcache_http_outcome::from_u32(outcome)?;
        let out = writable(out, "out")?;
        let meta = if entry.is_null() {
            None
        } else {
            // SAFETY: the caller promises a live entry.
            Some(unsafe { entry_meta(entry) }?.1)
        };
        let s = cache_status(
            p,
            outcome,
            fwd_status,
            stored,
            meta.as_ref(),
            unix_ms(now_ms),
        );
        let text = s.to_header_value().as_bytes().to_vec();
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(peakcache_buf::into_raw(text)) };
        Ok(())
    })
}

/// What moves with time in an answer from `entry` for `outcome` at `now_ms` (Unix milliseconds),
/// in one call: the `Age` value in `*age_secs` (as `peakcache_http_age`), this cache's
/// `Cache-Status` member in `status` (as `peakcache_http_cache_status` with `stored` false; `cap`
/// bytes, no NUL; its length in `*status_len`), and in `*until_ms` the first instant after
/// `now_ms` at which either may say something else: both hold from `now_ms` until then. For a
/// host that keeps an answer between requests (nginx's memos) and renews these two fields
/// when the clock passes `*until_ms`; nothing is allocated. `PEAKCACHE_ERR_TOO_LARGE` when the
/// member needs more than `cap` bytes (`*status_len` then says how many);
/// `PEAKCACHE_ERR_INVALID` for an entry without HTTP metadata or an unknown outcome.
///
/// # Safety
/// `policy` and `entry` must be NULL or live; `age_secs`, `until_ms` and `status_len` NULL or
/// writable; `status` NULL or `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_clock(
    policy: *const peakcache_http_policy,
    outcome: u32,
    fwd_status: u16,
    entry: *const peakcache_entry,
    now_ms: u64,
    age_secs: *mut u64,
    until_ms: *mut u64,
    status: *mut u8,
    cap: usize,
    status_len: *mut usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live policy and entry.
        let p = &unsafe { arg(policy, "policy") }?.policy;
        let (_, meta) = unsafe { entry_meta(entry) }?;
        let outcome = peakcache_http_outcome::from_u32(outcome)?;
        let (age_out, until_out) = (
            writable(age_secs, "age_secs")?,
            writable(until_ms, "until_ms")?,
        );
        let len_out = writable(status_len, "status_len")?;
        let now = unix_ms(now_ms);
        let member = |at| cache_status(p, outcome, fwd_status, false, Some(&meta), at);
        let text = MemberText::of(&member(now));
        let len = text.bytes().len();
        // The first whole millisecond at or after the Age's next change.
        let mut until = meta
            .age_changes_at(now)
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(u64::MAX, |d| {
                let ms = d.as_millis().min(u128::from(u64::MAX)) as u64;
                if d.subsec_nanos() % 1_000_000 == 0 {
                    ms
                } else {
                    ms.saturating_add(1)
                }
            });
        if matches!(
            outcome,
            peakcache_http_outcome::PEAKCACHE_HTTP_STALE
                | peakcache_http_outcome::PEAKCACHE_HTTP_STALE_IF_ERROR
        ) {
            // Who granted a stale answer may change within the second (the origin's window,
            // then the operator's grace): held for the second only if it says the same at
            // its last millisecond.
            if MemberText::of(&member(unix_ms(until.saturating_sub(1)))).bytes() != text.bytes() {
                until = now_ms.saturating_add(1);
            }
        }
        // SAFETY: all three checked non-NULL; the caller promises them writable.
        unsafe {
            len_out.write(len);
            age_out.write(meta.age_secs(now));
            until_out.write(until);
        }
        if len > cap {
            return Err(fail(
                PEAKCACHE_ERR_TOO_LARGE,
                format_args!("the Cache-Status member needs {len} bytes, {cap} given"),
            ));
        }
        let status = writable(status, "status")?;
        // SAFETY: the caller promises `cap` writable bytes at `status`; len <= cap.
        unsafe { std::ptr::copy_nonoverlapping(text.bytes().as_ptr(), status, len) };
        Ok(())
    })
}

/// A `Cache-Status` member as text: on the stack (no allocation) when it fits in
/// `MEMBER_STACK` bytes, else on the heap.
struct MemberText {
    stack: [u8; MEMBER_STACK],
    len: usize,
    heap: Option<String>,
}

const MEMBER_STACK: usize = 256;

impl std::fmt::Write for MemberText {
    /// Appends to the stack buffer; an error once it is full.
    fn write_str(&mut self, t: &str) -> std::fmt::Result {
        let end = self.len + t.len();
        let room = self.stack.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        room.copy_from_slice(t.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl MemberText {
    fn of(s: &CacheStatus) -> Self {
        let mut m = MemberText {
            stack: [0; MEMBER_STACK],
            len: 0,
            heap: None,
        };
        if std::fmt::write(&mut m, format_args!("{s}")).is_err() {
            m.heap = Some(s.to_string());
        }
        m
    }

    fn bytes(&self) -> &[u8] {
        match &self.heap {
            Some(h) => h.as_bytes(),
            None => &self.stack[..self.len],
        }
    }
}

/// The `Age` of an entry at `now_ms` (Unix milliseconds) in `*secs`: its age when received plus
/// the time since (RFC 9111 §4.2.3), the value of the `Age` header to send.
/// `PEAKCACHE_ERR_INVALID` when the entry has no HTTP metadata.
///
/// # Safety
/// `entry` must be NULL or live; `secs` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_age(
    entry: *const peakcache_entry,
    now_ms: u64,
    secs: *mut u64,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live entry.
        let (_, meta) = unsafe { entry_meta(entry) }?;
        let secs = writable(secs, "secs")?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { secs.write(age_secs(&meta, now_ms)) };
        Ok(())
    })
}

/// The `Age` header value the HTTP layer sends for `meta` at `now_ms`, as a number.
pub(super) fn age_secs(meta: &EntryMeta, now_ms: u64) -> u64 {
    meta.age_secs(unix_ms(now_ms))
}

/// Whether `entry` may be served, stale, in place of an origin error at `now_ms` (Unix
/// milliseconds): true inside its stale-if-error window (RFC 5861 §4, or the operator's grace);
/// false while its metadata says fresh, past the window, and for NULL or an entry without HTTP
/// metadata. A host whose fill gets a 5xx asks this of the fill's previous entry: when false,
/// the 5xx is a response like any other (stored if it says it may be, RFC 9111 §3).
///
/// # Safety
/// `entry` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_stale_if_error(
    entry: *const peakcache_entry,
    now_ms: u64,
) -> bool {
    boundary_or(false, || {
        // SAFETY: the caller promises a live entry (or NULL, refused by entry_meta).
        match unsafe { entry_meta(entry) } {
            Ok((_, meta)) => meta
                .stale_grant(StaleUse::IfError, unix_ms(now_ms))
                .is_some(),
            Err(_) => false,
        }
    })
}

/// What `peakcache_http_serve` answered.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum peakcache_http_answer_kind {
    /// Send the stored response: `status`, `headers`, and the entry's body (none for HEAD).
    PEAKCACHE_HTTP_SEND_STORED = 1,
    /// The client's copy is current: send `304` with `headers`, no body.
    PEAKCACHE_HTTP_SEND_NOT_MODIFIED = 2,
    /// The request has preconditions the cache does not evaluate (`If-Match`,
    /// `If-Unmodified-Since`), or request directives the policy honours
    /// (`peakcache_http_config.honour_request_directives`) rule the stored response out: forward
    /// this request alone (store nothing, leave the entry as it is). `headers` is NULL.
    PEAKCACHE_HTTP_FORWARD = 3,
}

/// The answer of `peakcache_http_serve`. Its handle is owned by the caller.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct peakcache_http_answer {
    /// What to send.
    pub kind: peakcache_http_answer_kind,
    /// The status to send (the stored status, or 304); 0 for FORWARD.
    pub status: u16,
    /// The header fields to send, complete: the stored ones without this cache's own
    /// (`CDN-Cache-Control`, `Surrogate-Control`, `Surrogate-Key`), with `Age` and
    /// `Cache-Status` (free with `peakcache_http_headers_free`). NULL for FORWARD.
    pub headers: *mut peakcache_http_headers,
}

crate::abi::sized!(peakcache_http_answer, headers);

/// Answers `request` from `entry` at `now_ms` (Unix milliseconds), in `*out`: evaluates the
/// client's `If-None-Match` / `If-Modified-Since` (RFC 9111 §4.3.2) and gives the status and the
/// complete header list to send (a 304's, or the stored response's), with `Age` and the
/// `Cache-Status` of `outcome` (a `peakcache_http_outcome`: `PEAKCACHE_HTTP_HIT` for a fresh
/// lookup, `_STALE`, `_STALE_IF_ERROR` with the failed `fwd_status`, `_COLLAPSED` for a
/// waiter's hit, `_REVALIDATED` or `_MISS` after storing). `PEAKCACHE_ERR_INVALID` when the
/// entry has no HTTP metadata (it was not stored through the HTTP family).
///
/// # Safety
/// `policy` must be NULL or live; `request` NULL or as its fields document; `entry` NULL or
/// live; `out` NULL or writable.
///
/// Exported as `peakcache_http_serve_sized` with the size of `*out` last; the header's `peakcache_http_serve` macro passes
/// `sizeof(peakcache_http_answer)` (see the header's "Sizes" convention).
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_serve_sized(
    policy: *const peakcache_http_policy,
    request: *const peakcache_http_request,
    entry: *const peakcache_entry,
    outcome: u32,
    fwd_status: u16,
    now_ms: u64,
    out: *mut peakcache_http_answer,
    out_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live policy.
        let p = &unsafe { arg(policy, "policy") }?.policy;
        // SAFETY: the caller promises a live entry.
        let (stored, meta) = unsafe { entry_meta(entry) }?;
        let outcome = peakcache_http_outcome::from_u32(outcome)?;
        let out = writable(out, "out")?;
        abi::writable_sized::<peakcache_http_answer>(out_size)?;
        // SAFETY: the caller promises the request.
        let req = unsafe { request::read(p, request) }?;
        let parts = stored_parts(stored)?;
        let now = unix_ms(now_ms);
        let answer = if p.reuse(&req.parts, &meta, now) == Reuse::Revalidate {
            ConditionalAnswer::Forward
        } else {
            p.answer_conditional(&req.parts, &parts)
        };
        let (kind, mut sent) = match answer {
            ConditionalAnswer::NotModified(nm) => (
                peakcache_http_answer_kind::PEAKCACHE_HTTP_SEND_NOT_MODIFIED,
                nm,
            ),
            ConditionalAnswer::ServeStored => (
                peakcache_http_answer_kind::PEAKCACHE_HTTP_SEND_STORED,
                parts,
            ),
            _ => {
                let a = peakcache_http_answer {
                    kind: peakcache_http_answer_kind::PEAKCACHE_HTTP_FORWARD,
                    status: 0,
                    headers: null_mut(),
                };
                // SAFETY: checked non-NULL; the caller promises it is writable.
                unsafe { abi::write(out, out_size, &a) };
                return Ok(());
            }
        };
        let status = cache_status(p, outcome, fwd_status, false, Some(&meta), now);
        p.finish_response(&mut sent.headers, Some(&meta), now, &status);
        let a = peakcache_http_answer {
            kind,
            status: sent.status.as_u16(),
            headers: peakcache_http_headers::into_raw(&sent.headers),
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { abi::write(out, out_size, &a) };
        Ok(())
    })
}

/// The fields to add to the upstream request revalidating `entry` (RFC 9111 §4.3.1), in
/// `*out`: `If-None-Match` from its `ETag`, `If-Modified-Since` from its `Last-Modified`; an
/// empty list when it has neither (then fetch unconditionally).
///
/// # Safety
/// `policy` must be NULL or live; `entry` NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_revalidation_headers(
    policy: *const peakcache_http_policy,
    entry: *const peakcache_entry,
    out: *mut *mut peakcache_http_headers,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live policy.
        let p = &unsafe { arg(policy, "policy") }?.policy;
        // SAFETY: the caller promises a live entry.
        let stored = unsafe { peakcache_entry::stored(entry) }?;
        let out = writable(out, "out")?;
        let headers = p.conditional_request_headers(&stored_parts(stored)?);
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(peakcache_http_headers::into_raw(&headers)) };
        Ok(())
    })
}
