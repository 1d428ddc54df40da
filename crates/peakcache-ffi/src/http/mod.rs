//! The HTTP family (`peakcache_http_*`): the caching semantics of `peakcache-http` for a C host
//! that holds requests and responses as header arrays. Every decision is made here, in Rust; the
//! host only moves bytes between its own structures and these calls.
//!
//! A host's flow (see `include/peakcache.h` for each call):
//! 1. `peakcache_http_key`: the primary key, or `PEAKCACHE_ERR_NOT_CACHEABLE` (forward untouched).
//!    Look it up in the core cache. `peakcache_http_upstream_request` gives what to send upstream
//!    on a miss (campaign parameters and unkeyed fields removed).
//! 2. Hit: `peakcache_http_serve` answers the client: a 304 with its headers, the stored response
//!    with the headers to send (`Age`, `Cache-Status`, this cache's own fields removed), or
//!    "forward".
//! 3. Miss: `peakcache_http_on_response` decides from the upstream response's status and
//!    headers; a storable decision carries the windows for the commit, the tags (Surrogate-Key
//!    and the primary key) and `peakcache_http_store_response`, a `peakcache_response` holding the
//!    prepared headers (RFC 9111 §3.1) and the entry metadata, to which the host appends the body.
//! 4. Revalidation: `peakcache_http_revalidation_headers` for the upstream request; on a 304,
//!    `peakcache_http_revalidate` merges it into a new response sharing the stored body.
//! 5. After an unsafe request: `peakcache_http_invalidations`, keys to purge as tags.
//!
//! Entry metadata (`meta`): what `Age` and `Cache-Status` need later (the response time, its
//! initial age, lifetime and stale windows) travels inside the stored value as the entry's
//! metadata blob (`peakcache_response_set_meta` / `peakcache_entry_meta`), written by
//! `peakcache_http_store_response` and read by the serving calls; its layout is versioned.

pub mod headers;
mod meta;
pub mod policy;
pub mod request;
pub mod serve;
pub mod store;

use crate::bytes::slice;
use crate::result::{fail, peakcache_result, PEAKCACHE_ERR_INVALID, PEAKCACHE_ERR_MALFORMED};
use crate::value::Stored;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{response, StatusCode};
use std::time::{Duration, SystemTime};

pub use headers::{peakcache_http_header, peakcache_http_headers};

/// Unix milliseconds as a `SystemTime`.
pub(crate) fn unix_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// A status code the `http` crate accepts (100..=999).
pub(crate) fn status_code(status: u16) -> Result<StatusCode, peakcache_result> {
    StatusCode::from_u16(status).map_err(|_| {
        fail(
            PEAKCACHE_ERR_MALFORMED,
            format_args!("status {status} is not a valid status code"),
        )
    })
}

/// Appends one header to `map`, checking both parts.
pub(crate) fn append(
    map: &mut HeaderMap,
    name: &[u8],
    value: &[u8],
    what: impl std::fmt::Display,
) -> Result<(), peakcache_result> {
    let n = HeaderName::from_bytes(name).map_err(|_| {
        fail(
            PEAKCACHE_ERR_MALFORMED,
            format_args!(
                "{what}: invalid header name {:?}",
                String::from_utf8_lossy(name)
            ),
        )
    })?;
    let v = HeaderValue::from_bytes(value).map_err(|_| {
        fail(
            PEAKCACHE_ERR_MALFORMED,
            format_args!("{what}: invalid value of header {n}"),
        )
    })?;
    map.try_append(n, v).map_err(|_| {
        fail(
            PEAKCACHE_ERR_INVALID,
            format_args!("{what}: too many headers"),
        )
    })?;
    Ok(())
}

/// The headers of a C array as a `HeaderMap`.
///
/// # Safety
/// `headers` must be NULL or point to `n` headers, each naming readable bytes.
pub(crate) unsafe fn header_map(
    headers: *const peakcache_http_header,
    n: usize,
    what: &str,
) -> Result<HeaderMap, peakcache_result> {
    // SAFETY: forwarded promise.
    let list = unsafe { headers::array(headers, n, what) }?;
    let mut map = HeaderMap::with_capacity(n.min(64));
    for (i, h) in list.iter().enumerate() {
        // SAFETY: the caller promises each header's bytes.
        let name = unsafe { slice(h.name, h.name_len, "header name") }?;
        // SAFETY: as above.
        let value = unsafe { slice(h.value, h.value_len, "header value") }?;
        append(&mut map, name, value, format_args!("{what}[{i}]"))?;
    }
    Ok(map)
}

/// A stored value as the response it holds (status and headers; the body stays where it is).
pub(crate) fn stored_parts(s: &Stored) -> Result<response::Parts, peakcache_result> {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status_code(s.status)?;
    for (name, value) in s.header_pairs() {
        append(&mut parts.headers, name, value, "stored entry")?;
    }
    Ok(parts)
}
