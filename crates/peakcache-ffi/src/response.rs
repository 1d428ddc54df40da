//! Building a value to commit: `peakcache_response`, filled piece by piece (a body filter
//! appends chunks), then consumed by `peakcache_fill_commit` / `peakcache_refresh_commit`.

use crate::bytes::{arg, slice, writable};
use crate::panic::{boundary_or, boundary_unit, try_boundary};
use crate::result::{fail, peakcache_result, PEAKCACHE_ERR_INVALID};
use crate::value::{HeaderSpan, Stored};
use bytes::Bytes;

/// What each header costs against the capacity beyond its name and value bytes (its index slot).
pub const PEAKCACHE_HEADER_OVERHEAD: u64 = 16;

/// A response being built (owned by the caller). Created by `peakcache_response_new`; consumed
/// by a commit, or freed by `peakcache_response_free`. Not thread-safe: one thread at a time.
pub struct peakcache_response {
    pub(crate) status: u16,
    pub(crate) flags: u32,
    pub(crate) headers: Vec<HeaderSpan>,
    pub(crate) header_bytes: Vec<u8>,
    pub(crate) body: Body,
    pub(crate) meta: Vec<u8>,
}

/// A response's body: appended to (`Owned`), or shared with a stored entry (`Shared`, a
/// revalidated response), copied only if the host appends to it.
#[derive(Debug)]
pub(crate) enum Body {
    Owned(Vec<u8>),
    Shared(Bytes),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Owned(v) => v.len(),
            Body::Shared(b) => b.len(),
        }
    }

    fn owned(&mut self) -> &mut Vec<u8> {
        if let Body::Shared(b) = self {
            *self = Body::Owned(b.to_vec());
        }
        match self {
            Body::Owned(v) => v,
            Body::Shared(_) => unreachable!("made owned above"),
        }
    }
}

/// Releases spare capacity left by appending, when it is worth a copy, so the weight the cache
/// counts stays close to the memory held. Done once at commit, never on a hit.
fn trim<T>(v: &mut Vec<T>) {
    if v.capacity() - v.len() > v.len() / 8 + 64 {
        v.shrink_to_fit();
    }
}

impl peakcache_response {
    /// An empty response with `status`.
    pub(crate) fn new(status: u16) -> Self {
        peakcache_response {
            status,
            flags: 0,
            headers: Vec::new(),
            header_bytes: Vec::new(),
            body: Body::Owned(Vec::new()),
            meta: Vec::new(),
        }
    }

    /// Appends a header; the header bytes of one response are limited to 4 GiB.
    pub(crate) fn push_header(
        &mut self,
        name: &[u8],
        value: &[u8],
    ) -> Result<(), peakcache_result> {
        let start = self.header_bytes.len();
        let end = start
            .checked_add(name.len())
            .and_then(|e| e.checked_add(value.len()))
            .filter(|&e| e <= u32::MAX as usize)
            .ok_or_else(|| {
                fail(
                    PEAKCACHE_ERR_INVALID,
                    "header bytes exceed 4 GiB in one response",
                )
            })?;
        self.header_bytes.reserve(end - start);
        self.header_bytes.extend_from_slice(name);
        self.header_bytes.extend_from_slice(value);
        self.headers.push(HeaderSpan {
            start: start as u32,
            name_len: name.len() as u32,
            value_len: value.len() as u32,
        });
        Ok(())
    }

    /// Shares `body` (a stored entry's) as this response's body, replacing any.
    pub(crate) fn share_body(&mut self, body: Bytes) {
        self.body = Body::Shared(body);
    }

    /// The value to store, spare capacity released.
    pub(crate) fn into_stored(self) -> Stored {
        let mut headers = self.headers;
        trim(&mut headers);
        let body = match self.body {
            Body::Owned(mut v) => {
                trim(&mut v);
                Bytes::from(v)
            }
            Body::Shared(b) => b,
        };
        Stored {
            status: self.status,
            flags: self.flags,
            headers,
            header_bytes: self.header_bytes.into_boxed_slice(),
            body,
            meta: self.meta.into_boxed_slice(),
            id: 0,
            seq: 0,
        }
    }
}

/// Creates an empty response with `status` (any number; the cache does not interpret it),
/// no headers, an empty body and flags 0, in `*out`.
///
/// # Safety
/// `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_response_new(
    status: u16,
    out: *mut *mut peakcache_response,
) -> peakcache_result {
    try_boundary(|| {
        let out = writable(out, "out")?;
        let r = Box::new(peakcache_response::new(status));
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(Box::into_raw(r)) };
        Ok(())
    })
}

/// Appends a header (name and value copied; kept in the order added; names are not
/// interpreted or lower-cased). A header whose bytes would take the response's header total past
/// 4 GiB is `PEAKCACHE_ERR_INVALID`.
///
/// # Safety
/// `resp` must be NULL or a live response; each non-NULL pointer must point to its length in
/// readable bytes.
#[no_mangle]
pub unsafe extern "C" fn peakcache_response_add_header(
    resp: *mut peakcache_response,
    name: *const u8,
    name_len: usize,
    value: *const u8,
    value_len: usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live response, used by this thread only.
        let resp = unsafe { resp.as_mut() }.ok_or_else(|| crate::bytes::null("resp"))?;
        // SAFETY: the caller promises the lengths.
        let name = unsafe { slice(name, name_len, "name") }?;
        // SAFETY: as above.
        let value = unsafe { slice(value, value_len, "value") }?;
        resp.push_header(name, value)
    })
}

/// Appends `len` bytes to the body (copied). A body filter calls it once per chunk.
///
/// # Safety
/// `resp` must be NULL or a live response; `ptr` must be NULL or point to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn peakcache_response_append_body(
    resp: *mut peakcache_response,
    ptr: *const u8,
    len: usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live response, used by this thread only.
        let resp = unsafe { resp.as_mut() }.ok_or_else(|| crate::bytes::null("resp"))?;
        // SAFETY: the caller promises `len` readable bytes.
        let bytes = unsafe { slice(ptr, len, "ptr") }?;
        resp.body.owned().extend_from_slice(bytes);
        Ok(())
    })
}

/// Reserves room for `additional` more body bytes (for instance from Content-Length), so the
/// appends that follow do not reallocate. Only a hint.
///
/// # Safety
/// `resp` must be NULL or a live response.
#[no_mangle]
pub unsafe extern "C" fn peakcache_response_reserve_body(
    resp: *mut peakcache_response,
    additional: usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live response, used by this thread only.
        let resp = unsafe { resp.as_mut() }.ok_or_else(|| crate::bytes::null("resp"))?;
        resp.body.owned().try_reserve(additional).map_err(|_| {
            fail(
                PEAKCACHE_ERR_INVALID,
                format_args!("cannot reserve {additional} body bytes"),
            )
        })
    })
}

/// The number of body bytes appended so far (0 for NULL), so a body filter can give up on a body
/// larger than `peakcache_cache_max_object_bytes` before buffering all of it.
///
/// # Safety
/// `resp` must be NULL or a live response.
#[no_mangle]
pub unsafe extern "C" fn peakcache_response_body_len(resp: *const peakcache_response) -> usize {
    boundary_or(0, || {
        // SAFETY: the caller promises a live response.
        unsafe { arg(resp, "resp") }.map_or(0, |r| r.body.len())
    })
}

/// Sets the flags word stored with the value, for the host's own use (PHP: how the value is
/// serialized). Default 0.
///
/// # Safety
/// `resp` must be NULL or a live response.
#[no_mangle]
pub unsafe extern "C" fn peakcache_response_set_flags(
    resp: *mut peakcache_response,
    flags: u32,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live response, used by this thread only.
        let resp = unsafe { resp.as_mut() }.ok_or_else(|| crate::bytes::null("resp"))?;
        resp.flags = flags;
        Ok(())
    })
}

/// Sets the metadata stored with the value (copied, replacing any): bytes the cache does not
/// interpret, read back with `peakcache_entry_meta`, counted in the entry's weight. The HTTP
/// family (`peakcache_http_store_response`) writes its own entry metadata here, a versioned blob
/// that `peakcache_http_*` functions read from the entry; a host using the HTTP family should
/// not overwrite it. Default empty.
///
/// # Safety
/// `resp` must be NULL or a live response; `ptr` must be NULL or point to `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn peakcache_response_set_meta(
    resp: *mut peakcache_response,
    ptr: *const u8,
    len: usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live response, used by this thread only.
        let resp = unsafe { resp.as_mut() }.ok_or_else(|| crate::bytes::null("resp"))?;
        // SAFETY: the caller promises `len` readable bytes.
        let bytes = unsafe { slice(ptr, len, "ptr") }?;
        resp.meta.clear();
        resp.meta.extend_from_slice(bytes);
        Ok(())
    })
}

/// Frees a response that was not committed. NULL is a no-op.
///
/// # Safety
/// `resp` must be NULL or a live response, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn peakcache_response_free(resp: *mut peakcache_response) {
    boundary_unit(|| {
        if !resp.is_null() {
            // SAFETY: created by Box::into_raw in peakcache_response_new; the caller gives it up.
            drop(unsafe { Box::from_raw(resp) });
        }
    })
}
