//! A served entry: a counted reference to a stored value, nothing else. The handle C holds is
//! the value's own `Arc` pointer (`Arc::into_raw`), so handing one out on a hit costs a
//! reference count and no allocation, as in the core; how the entry is served and its times come
//! with the answer that handed it out (`peakcache_lookup_result`, `peakcache_wait_result`).
//! Every view it hands out (body, headers, metadata) stays valid until `peakcache_entry_free`,
//! whatever happens to the cache meanwhile (eviction, purge, replacement, `peakcache_cache_free`).

use crate::bytes::{arg, writable};
use crate::panic::{boundary_or, boundary_unit, try_boundary};
use crate::result::{fail, peakcache_result, PEAKCACHE_ERR_OUT_OF_RANGE};
use crate::value::Stored;
use crate::Value;
use peakcache::{Hit, Served};
use std::sync::Arc;
use std::time::Duration;

/// How an entry is being served.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum peakcache_served {
    /// No entry (an answer that hands out none).
    PEAKCACHE_SERVED_NONE = 0,
    /// Inside its freshness lifetime (or the cache is frozen).
    PEAKCACHE_SERVED_FRESH = 1,
    /// Stale, inside its stale-while-revalidate window.
    PEAKCACHE_SERVED_STALE = 2,
    /// Stale past stale-while-revalidate, served because the origin failed (stale-if-error).
    PEAKCACHE_SERVED_STALE_IF_ERROR = 3,
}

/// A counted reference to a stored value (owned by the caller). Handed out by lookups, waiters
/// and `peakcache_fill_fail`; freed by `peakcache_entry_free`. Read-only: its accessors may be
/// called from several threads at once.
pub struct peakcache_entry {
    // Never constructed: a `*mut peakcache_entry` is an `Arc<Stored>` turned into a pointer.
    _opaque: [u8; 0],
}

/// How a hit is served, its times in the cache clock's milliseconds, its status and a view of
/// its body: what an answer that hands out an entry reports next to it, so that serving a hit
/// takes no further call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HitInfo {
    pub(crate) served: peakcache_served,
    pub(crate) status: u16,
    pub(crate) body: *const u8,
    pub(crate) body_len: usize,
    pub(crate) stored_at_ms: u64,
    pub(crate) fresh_until_ms: u64,
    pub(crate) revalidate_until_ms: u64,
    pub(crate) error_until_ms: u64,
}

impl HitInfo {
    /// No entry.
    pub(crate) const NONE: HitInfo = HitInfo {
        served: peakcache_served::PEAKCACHE_SERVED_NONE,
        status: 0,
        body: std::ptr::null(),
        body_len: 0,
        stored_at_ms: 0,
        fresh_until_ms: 0,
        revalidate_until_ms: 0,
        error_until_ms: 0,
    };
}

fn served(s: Served) -> peakcache_served {
    match s {
        Served::Fresh => peakcache_served::PEAKCACHE_SERVED_FRESH,
        Served::Stale => peakcache_served::PEAKCACHE_SERVED_STALE,
        Served::StaleIfError => peakcache_served::PEAKCACHE_SERVED_STALE_IF_ERROR,
    }
}

/// A hit's time in the cache clock's whole milliseconds. Plain 64-bit arithmetic, cheaper than
/// `millis` on the hit path: the clock counts from the cache's creation and each window is
/// capped at 2^32-1 ms, so nothing here comes near overflowing.
#[inline]
pub(crate) fn clock_ms(d: Duration) -> u64 {
    d.as_secs()
        .wrapping_mul(1000)
        .wrapping_add(u64::from(d.subsec_millis()))
}

impl peakcache_entry {
    /// A new entry handle for `value`, owned by the caller: the `Arc`'s own pointer.
    #[inline]
    pub(crate) fn into_raw(value: Value) -> *mut peakcache_entry {
        Arc::into_raw(value).cast_mut().cast()
    }

    /// The handle of a hit and what the answer reports about it.
    #[inline]
    pub(crate) fn from_hit(hit: Hit<Value>) -> (*mut peakcache_entry, HitInfo) {
        let value = hit.value();
        let info = HitInfo {
            status: value.status,
            // Into the `Arc`'s allocation (or the body's own), alive as long as the entry.
            body: value.body.as_ptr(),
            body_len: value.body.len(),
            served: match hit.served() {
                Served::Fresh => peakcache_served::PEAKCACHE_SERVED_FRESH,
                Served::Stale => peakcache_served::PEAKCACHE_SERVED_STALE,
                Served::StaleIfError => peakcache_served::PEAKCACHE_SERVED_STALE_IF_ERROR,
            },
            stored_at_ms: clock_ms(hit.stored_at()),
            fresh_until_ms: clock_ms(hit.fresh_until()),
            revalidate_until_ms: clock_ms(hit.revalidate_until()),
            error_until_ms: clock_ms(hit.error_until()),
        };
        (Self::into_raw(hit.into_value()), info)
    }

    /// The handle of a hit from the shared backend: its value decoded (the body shares the
    /// bytes copied out of the region), or why it could not be.
    pub(crate) fn from_shm_hit(
        hit: peakcache_shm::Hit,
        key: &[u8],
    ) -> Result<(*mut peakcache_entry, HitInfo), crate::codec::DecodeError> {
        let flags = hit.flags();
        let served = served(hit.served());
        let times = (
            clock_ms(hit.stored_at()),
            clock_ms(hit.fresh_until()),
            clock_ms(hit.revalidate_until()),
            clock_ms(hit.error_until()),
        );
        let stored_at = u64::try_from(hit.stored_at().as_nanos()).unwrap_or(u64::MAX);
        let seq = hit.seq();
        let mut value = crate::codec::decode(hit.into_value(), flags)?;
        value.id = shm_value_id(key, stored_at, &value);
        value.seq = seq;
        let value = Arc::new(value);
        let info = HitInfo {
            status: value.status,
            body: value.body.as_ptr(),
            body_len: value.body.len(),
            served,
            stored_at_ms: times.0,
            fresh_until_ms: times.1,
            revalidate_until_ms: times.2,
            error_until_ms: times.3,
        };
        Ok((Self::into_raw(value), info))
    }

    /// The stored value behind a handle.
    ///
    /// # Safety
    /// A non-NULL `entry` must be a live handle from `into_raw`.
    #[inline]
    pub(crate) unsafe fn stored<'a>(
        entry: *const peakcache_entry,
    ) -> Result<&'a Stored, peakcache_result> {
        // SAFETY: a live handle is an `Arc<Stored>` pointer, alive while the caller holds it.
        unsafe { arg(entry.cast::<Stored>(), "entry") }
    }
}

/// Folds `bytes` into `h`, eight bytes at a time (a multiply-mix, not a checksum: ids are
/// compared for equality only).
#[inline]
fn fold(mut h: u64, bytes: &[u8]) -> u64 {
    let mut chunks = bytes.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(29);
    }
    let mut tail = [0u8; 8];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    mix(h ^ bytes.len() as u64)
}

/// A 64-bit finalizer (splitmix64's), so nearby inputs give unrelated ids.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Body bytes taken into an id at each end of the body.
const ID_BODY_ENDS: usize = 64;

/// The `peakcache_entry_id` of a value decoded from the shared region. The region keeps no
/// number per stored record that a read exposes, and its store times come from a coarse clock
/// (a few milliseconds), so an id is derived from what a read gives: the key, the record's
/// store time (`stored_at_nanos`; 0 for `peakcache_get`, which does not learn it), the flags,
/// the status, every header and the metadata, and the body's length and its first and last
/// [`ID_BODY_ENDS`] bytes. Bounded work whatever the body's size; the same for every read of
/// one stored value in any process; another for a replaced value unless the replacement was
/// stored in the same clock tick with the same status, headers, metadata and body length and
/// ends (a value of the HTTP family carries its response time in its metadata, so never).
/// Never 0.
pub(crate) fn shm_value_id(key: &[u8], stored_at_nanos: u64, value: &Stored) -> u64 {
    let body = &value.body[..];
    let head = &body[..body.len().min(ID_BODY_ENDS)];
    let tail = &body[body.len().saturating_sub(ID_BODY_ENDS)..];
    let mut h = fold(0x243f_6a88_85a3_08d3, key);
    h = mix(h ^ stored_at_nanos);
    h = mix(h ^ (u64::from(value.flags) << 16 | u64::from(value.status)));
    h = fold(h, &value.header_bytes);
    h = mix(h ^ value.headers.len() as u64);
    h = fold(h, &value.meta);
    h = fold(h, head);
    h = fold(h, tail);
    mix(h ^ body.len() as u64).max(1)
}

/// A number naming the stored value `entry` is a reference to, for a host that memoizes what
/// it derives from an entry (an nginx worker's prepared response headers): nonzero, the same
/// for every handle of one stored value, and another for another value; 0 for NULL. Compare
/// ids for equality only (not a key, not a counter).
///
/// Local backend: the value's address. Handles of one value share it; an address is reused
/// only after every handle of the value was freed, so a memo that keeps a handle keeps its id
/// unique.
///
/// Shared backend: each read copies the value out of the region, so handles of one value are
/// different pointers; the id is derived from the read: the key, the record's store time, the
/// flags, status, headers and metadata, the body's length and its first and last 64 bytes
/// (bounded work whatever the size). The same in every process attached to the region; another
/// once the value is replaced, except for a replacement stored within the same tick of the
/// region's clock (a few milliseconds) that matches in all of those (a value of the HTTP family
/// carries its response time in its metadata, so it always differs). Handles from
/// `peakcache_get` (which does not read the store time) leave the store time out: consistent
/// among themselves, not equal to a lookup's id of the same value.
///
/// # Safety
/// `entry` must be NULL or a live entry.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_id(entry: *const peakcache_entry) -> u64 {
    boundary_or(0, || {
        // SAFETY: the caller promises a live entry.
        unsafe { peakcache_entry::stored(entry) }.map_or(0, |s| {
            if s.id != 0 {
                s.id
            } else {
                entry as usize as u64
            }
        })
    })
}

/// The stored status code (0 for NULL).
///
/// # Safety
/// `entry` must be NULL or a live entry.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_status(entry: *const peakcache_entry) -> u16 {
    boundary_or(0, || {
        // SAFETY: the caller promises a live entry.
        unsafe { peakcache_entry::stored(entry) }.map_or(0, |s| s.status)
    })
}

/// The stored flags word (0 for NULL).
///
/// # Safety
/// `entry` must be NULL or a live entry.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_flags(entry: *const peakcache_entry) -> u32 {
    boundary_or(0, || {
        // SAFETY: the caller promises a live entry.
        unsafe { peakcache_entry::stored(entry) }.map_or(0, |s| s.flags)
    })
}

/// The body as a view: `*ptr` and `*len`, valid until `peakcache_entry_free(entry)`. For an
/// empty body `*len` is 0 and `*ptr` is a non-NULL pointer not to be read.
///
/// # Safety
/// `entry` must be NULL or a live entry; `ptr` and `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_body(
    entry: *const peakcache_entry,
    ptr: *mut *const u8,
    len: *mut usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live entry.
        let stored = unsafe { peakcache_entry::stored(entry) }?;
        let (ptr, len) = (writable(ptr, "ptr")?, writable(len, "len")?);
        let body = &stored.body;
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            ptr.write(body.as_ptr());
            len.write(body.len());
        }
        Ok(())
    })
}

/// The number of stored headers (0 for NULL).
///
/// # Safety
/// `entry` must be NULL or a live entry.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_header_count(entry: *const peakcache_entry) -> usize {
    boundary_or(0, || {
        // SAFETY: the caller promises a live entry.
        unsafe { peakcache_entry::stored(entry) }.map_or(0, |s| s.headers.len())
    })
}

/// Header number `i` (in the order added) as two views, name and value, valid until
/// `peakcache_entry_free(entry)`. `PEAKCACHE_ERR_OUT_OF_RANGE` when `i` is not below
/// `peakcache_entry_header_count`.
///
/// # Safety
/// `entry` must be NULL or a live entry; the four out-pointers NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_header(
    entry: *const peakcache_entry,
    i: usize,
    name: *mut *const u8,
    name_len: *mut usize,
    value: *mut *const u8,
    value_len: *mut usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live entry.
        let stored = unsafe { peakcache_entry::stored(entry) }?;
        let (name, name_len) = (writable(name, "name")?, writable(name_len, "name_len")?);
        let (value, value_len) = (writable(value, "value")?, writable(value_len, "value_len")?);
        let (n, v) = stored.header(i).ok_or_else(|| {
            fail(
                PEAKCACHE_ERR_OUT_OF_RANGE,
                format_args!("header {i} of {}", stored.headers.len()),
            )
        })?;
        // SAFETY: all checked non-NULL; the caller promises they are writable.
        unsafe {
            name.write(n.as_ptr());
            name_len.write(n.len());
            value.write(v.as_ptr());
            value_len.write(v.len());
        }
        Ok(())
    })
}

/// The metadata stored with the value (`peakcache_response_set_meta`) as a view: `*ptr` and
/// `*len`, valid until `peakcache_entry_free(entry)`. Empty (`*len` 0, `*ptr` not to be read) when
/// none was set.
///
/// # Safety
/// `entry` must be NULL or a live entry; `ptr` and `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_meta(
    entry: *const peakcache_entry,
    ptr: *mut *const u8,
    len: *mut usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live entry.
        let stored = unsafe { peakcache_entry::stored(entry) }?;
        let (ptr, len) = (writable(ptr, "ptr")?, writable(len, "len")?);
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            ptr.write(stored.meta.as_ptr());
            len.write(stored.meta.len());
        }
        Ok(())
    })
}

/// A second reference to the same value in `*out` (no copy of the bytes), freed on its own by
/// `peakcache_entry_free`. (It may be the same pointer: each reference is freed once.)
///
/// # Safety
/// `entry` must be NULL or a live entry; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_clone(
    entry: *const peakcache_entry,
    out: *mut *mut peakcache_entry,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live entry.
        let _ = unsafe { peakcache_entry::stored(entry) }?;
        let out = writable(out, "out")?;
        // SAFETY: a live handle is an `Arc<Stored>` pointer; one more reference for the copy.
        unsafe { Arc::increment_strong_count(entry.cast::<Stored>()) };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(entry.cast_mut()) };
        Ok(())
    })
}

/// Releases an entry reference; its views become invalid. NULL is a no-op.
///
/// # Safety
/// `entry` must be NULL or a live entry, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_free(entry: *mut peakcache_entry) {
    boundary_unit(|| {
        if !entry.is_null() {
            // SAFETY: created by `into_raw` (an `Arc<Stored>` pointer); the caller gives up this
            // reference.
            drop(unsafe { Arc::from_raw(entry.cast_const().cast::<Stored>()) });
        }
    })
}
