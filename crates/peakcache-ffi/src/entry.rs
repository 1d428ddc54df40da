//! A served entry: a counted reference to a stored value plus how it was served. Every view it
//! hands out (body, headers) stays valid until `peakcache_entry_free`, whatever happens to the
//! cache meanwhile (eviction, purge, replacement, `peakcache_cache_free`).

use crate::bytes::{arg, writable};
use crate::cache::millis;
use crate::panic::{boundary_or, boundary_unit, try_boundary};
use crate::result::{fail, peakcache_result, PEAKCACHE_ERR_OUT_OF_RANGE};
use crate::Value;
use peakcache::{Clock, Hit, Served, SystemClock};
use std::cell::Cell;
use std::mem::MaybeUninit;

/// How an entry is being served.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum peakcache_served {
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
    hit: Hit<Value>,
    clock: SystemClock,
}

thread_local! {
    /// One entry allocation kept per thread after `peakcache_entry_free`, empty (its value
    /// dropped), for the next hit on the thread to reuse: a hit then costs no allocation, as in
    /// the core. Freed with the thread.
    static SPARE: Cell<Option<Box<MaybeUninit<peakcache_entry>>>> = const { Cell::new(None) };
}

impl peakcache_entry {
    /// A new entry handle for `hit`, owned by the caller.
    #[inline]
    pub(crate) fn into_raw(hit: Hit<Value>, clock: SystemClock) -> *mut peakcache_entry {
        let entry = peakcache_entry { hit, clock };
        match SPARE.try_with(Cell::take).ok().flatten() {
            Some(spare) => {
                let raw = Box::into_raw(spare).cast::<peakcache_entry>();
                // SAFETY: an allocation for one peakcache_entry, holding none (dropped in
                // `free_raw`); written before it is handed out.
                unsafe { raw.write(entry) };
                raw
            }
            None => Box::into_raw(Box::new(entry)),
        }
    }

    /// Drops the entry and keeps its allocation for the thread's next hit.
    ///
    /// # Safety
    /// `raw` came from `into_raw` and is given up.
    #[inline]
    unsafe fn free_raw(raw: *mut peakcache_entry) {
        // SAFETY: a live entry from `into_raw`; dropped once, then only its memory is kept.
        unsafe { std::ptr::drop_in_place(raw) };
        // SAFETY: the allocation came from a Box of this layout; MaybeUninit needs no value.
        let spare = unsafe { Box::from_raw(raw.cast::<MaybeUninit<peakcache_entry>>()) };
        // A full slot (or a thread being torn down) frees this allocation instead.
        let _ = SPARE.try_with(|s| match s.take() {
            None => s.set(Some(spare)),
            full => s.set(full),
        });
    }
}

/// The stored status code (0 for NULL).
///
/// # Safety
/// `entry` must be NULL or a live entry.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_status(entry: *const peakcache_entry) -> u16 {
    boundary_or(0, || {
        // SAFETY: the caller promises a live entry.
        unsafe { arg(entry, "entry") }.map_or(0, |e| e.hit.value().status)
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
        unsafe { arg(entry, "entry") }.map_or(0, |e| e.hit.value().flags)
    })
}

/// How the entry is served, in `*out`.
///
/// # Safety
/// `entry` must be NULL or a live entry; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_served(
    entry: *const peakcache_entry,
    out: *mut peakcache_served,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live entry.
        let e = unsafe { arg(entry, "entry") }?;
        let out = writable(out, "out")?;
        let s = match e.hit.served() {
            Served::Fresh => peakcache_served::PEAKCACHE_SERVED_FRESH,
            Served::Stale => peakcache_served::PEAKCACHE_SERVED_STALE,
            Served::StaleIfError => peakcache_served::PEAKCACHE_SERVED_STALE_IF_ERROR,
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(s) };
        Ok(())
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
        let e = unsafe { arg(entry, "entry") }?;
        let (ptr, len) = (writable(ptr, "ptr")?, writable(len, "len")?);
        let body = &e.hit.value().body;
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
        unsafe { arg(entry, "entry") }.map_or(0, |e| e.hit.value().headers.len())
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
        let e = unsafe { arg(entry, "entry") }?;
        let (name, name_len) = (writable(name, "name")?, writable(name_len, "name_len")?);
        let (value, value_len) = (writable(value, "value")?, writable(value_len, "value_len")?);
        let stored = e.hit.value();
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

/// When the value was stored, in the cache clock's milliseconds (`peakcache_cache_now_ms`).
/// 0 for NULL.
///
/// # Safety
/// `entry` must be NULL or a live entry.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_stored_at_ms(entry: *const peakcache_entry) -> u64 {
    boundary_or(0, || {
        // SAFETY: the caller promises a live entry.
        unsafe { arg(entry, "entry") }.map_or(0, |e| millis(e.hit.stored_at()))
    })
}

/// When the value stops (or stopped) being fresh, in the cache clock's milliseconds.
/// 0 for NULL.
///
/// # Safety
/// `entry` must be NULL or a live entry.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_fresh_until_ms(entry: *const peakcache_entry) -> u64 {
    boundary_or(0, || {
        // SAFETY: the caller promises a live entry.
        unsafe { arg(entry, "entry") }.map_or(0, |e| millis(e.hit.fresh_until()))
    })
}

/// When its stale-while-revalidate window ends, in the cache clock's milliseconds.
/// 0 for NULL.
///
/// # Safety
/// `entry` must be NULL or a live entry.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_revalidate_until_ms(entry: *const peakcache_entry) -> u64 {
    boundary_or(0, || {
        // SAFETY: the caller promises a live entry.
        unsafe { arg(entry, "entry") }.map_or(0, |e| millis(e.hit.revalidate_until()))
    })
}

/// When its stale-if-error window ends, in the cache clock's milliseconds. 0 for NULL.
///
/// # Safety
/// `entry` must be NULL or a live entry.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_error_until_ms(entry: *const peakcache_entry) -> u64 {
    boundary_or(0, || {
        // SAFETY: the caller promises a live entry.
        unsafe { arg(entry, "entry") }.map_or(0, |e| millis(e.hit.error_until()))
    })
}

/// How long the value has been stored, in milliseconds, read from the clock at this call: what
/// an `Age` header says. 0 for NULL.
///
/// # Safety
/// `entry` must be NULL or a live entry.
#[no_mangle]
pub unsafe extern "C" fn peakcache_entry_age_ms(entry: *const peakcache_entry) -> u64 {
    boundary_or(0, || {
        // SAFETY: the caller promises a live entry.
        unsafe { arg(entry, "entry") }.map_or(0, |e| millis(e.hit.age(e.clock.now())))
    })
}

/// A second reference to the same value in `*out` (no copy of the bytes), freed on its own by
/// `peakcache_entry_free`.
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
        let e = unsafe { arg(entry, "entry") }?;
        let out = writable(out, "out")?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(peakcache_entry::into_raw(e.hit.clone(), e.clock)) };
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
            // SAFETY: created by `into_raw`; the caller gives it up.
            unsafe { peakcache_entry::free_raw(entry) };
        }
    })
}
