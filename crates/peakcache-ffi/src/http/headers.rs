//! Header arrays: the borrowed `{name, value}` records a host passes in, and the owned list
//! (`peakcache_http_headers`) the library hands out in the same shape.

use crate::bytes::{arg, writable};
use crate::panic::{boundary_unit, try_boundary};
use crate::result::{fail, peakcache_result, PEAKCACHE_ERR_INVALID};
use http::HeaderMap;

/// One header field as two borrowed byte strings (neither NUL-terminated): `name[0..name_len]`
/// and `value[0..value_len]`. A NULL pointer is allowed with a length of 0. Header names are
/// compared case-insensitively; values must not contain CR, LF or NUL.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct peakcache_http_header {
    /// The name's first byte.
    pub name: *const u8,
    /// The name's length.
    pub name_len: usize,
    /// The value's first byte.
    pub value: *const u8,
    /// The value's length.
    pub value_len: usize,
}

/// A list of header fields the library built (owned by the caller): read it as an array with
/// `peakcache_http_headers_items`, free it with `peakcache_http_headers_free`. Names are
/// lowercase; fields of one name keep their order.
pub struct peakcache_http_headers {
    // Only kept alive: `items` point into it, and it is never touched after construction.
    _bytes: Vec<u8>,
    items: Vec<peakcache_http_header>,
}

impl peakcache_http_headers {
    /// The fields of `map`, in its order, as a new handle owned by the caller.
    pub(crate) fn into_raw(map: &HeaderMap) -> *mut peakcache_http_headers {
        let total = map.iter().map(|(n, v)| n.as_str().len() + v.len()).sum();
        let mut bytes = Vec::with_capacity(total);
        let mut spans = Vec::with_capacity(map.len());
        for (n, v) in map {
            let start = bytes.len();
            bytes.extend_from_slice(n.as_str().as_bytes());
            bytes.extend_from_slice(v.as_bytes());
            spans.push((start, n.as_str().len(), v.len()));
        }
        let base = bytes.as_ptr();
        let items = spans
            .into_iter()
            .map(|(start, name_len, value_len)| peakcache_http_header {
                // In bounds: every span lies inside `bytes`, whose buffer never moves again.
                name: base.wrapping_add(start),
                name_len,
                value: base.wrapping_add(start + name_len),
                value_len,
            })
            .collect();
        Box::into_raw(Box::new(peakcache_http_headers {
            _bytes: bytes,
            items,
        }))
    }
}

/// `n` headers at `ptr` as a slice; NULL with 0 is empty, NULL with more is invalid.
///
/// # Safety
/// A non-NULL `ptr` must point to `n` headers.
pub(crate) unsafe fn array<'a>(
    ptr: *const peakcache_http_header,
    n: usize,
    what: &str,
) -> Result<&'a [peakcache_http_header], peakcache_result> {
    if n == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(fail(
            PEAKCACHE_ERR_INVALID,
            format_args!("{what}: NULL pointer with {n} headers"),
        ));
    }
    if n > isize::MAX as usize / std::mem::size_of::<peakcache_http_header>() {
        return Err(fail(
            PEAKCACHE_ERR_INVALID,
            format_args!("{what}: {n} headers is too many"),
        ));
    }
    // SAFETY: non-NULL, and the caller promises `n` headers.
    Ok(unsafe { std::slice::from_raw_parts(ptr, n) })
}

/// The list as an array: `*items` (`*n` records), valid until `peakcache_http_headers_free`.
/// For an empty list `*n` is 0 and `*items` is not to be read.
///
/// # Safety
/// `headers` must be NULL or live; `items` and `n` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_headers_items(
    headers: *const peakcache_http_headers,
    items: *mut *const peakcache_http_header,
    n: *mut usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live list.
        let h = unsafe { arg(headers, "headers") }?;
        let (items, n) = (writable(items, "items")?, writable(n, "n")?);
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            items.write(h.items.as_ptr());
            n.write(h.items.len());
        }
        Ok(())
    })
}

/// Frees a header list. NULL is a no-op.
///
/// # Safety
/// `headers` must be NULL or live, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_headers_free(headers: *mut peakcache_http_headers) {
    boundary_unit(|| {
        if !headers.is_null() {
            // SAFETY: created by Box::into_raw; the caller gives it up.
            drop(unsafe { Box::from_raw(headers) });
        }
    })
}
