//! Borrowed byte strings, `(ptr, len)`, and the argument checks every export shares.

use crate::result::{fail, peakcache_result, PEAKCACHE_ERR_INVALID, PEAKCACHE_ERR_NULL};

/// A borrowed byte string: `len` bytes at `data`. A NULL `data` with `len == 0` is the empty
/// string. Nothing assumes a NUL terminator. Used for arrays of strings (tags); single strings
/// are passed as two arguments, `ptr` and `len`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct peakcache_bytes {
    /// The first byte, or NULL when `len` is 0.
    pub data: *const u8,
    /// The number of bytes.
    pub len: usize,
}

/// `len` bytes at `ptr` as a slice; NULL with 0 is empty, NULL with more is invalid.
///
/// # Safety
/// A non-NULL `ptr` must point to `len` readable bytes that outlive `'a` and are not written
/// meanwhile.
#[inline]
pub(crate) unsafe fn slice<'a>(
    ptr: *const u8,
    len: usize,
    what: &str,
) -> Result<&'a [u8], peakcache_result> {
    if ptr.is_null() {
        if len == 0 {
            return Ok(&[]);
        }
        return Err(fail(
            PEAKCACHE_ERR_INVALID,
            format_args!("{what}: NULL pointer with length {len}"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(fail(
            PEAKCACHE_ERR_INVALID,
            format_args!("{what}: length {len} too large"),
        ));
    }
    // SAFETY: non-NULL, and the caller promises `len` readable bytes for 'a.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A shared reference to `*ptr`, or `PEAKCACHE_ERR_NULL` naming the argument.
///
/// # Safety
/// A non-NULL `ptr` must point to a live `T` for `'a`.
#[inline]
pub(crate) unsafe fn arg<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, peakcache_result> {
    // SAFETY: the caller promises a live T when non-NULL.
    match unsafe { ptr.as_ref() } {
        Some(r) => Ok(r),
        None => Err(null(what)),
    }
}

/// A writable out-parameter, or `PEAKCACHE_ERR_NULL` naming it.
#[inline]
pub(crate) fn writable<T>(ptr: *mut T, what: &str) -> Result<*mut T, peakcache_result> {
    if ptr.is_null() {
        Err(null(what))
    } else {
        Ok(ptr)
    }
}

#[cold]
pub(crate) fn null(what: &str) -> peakcache_result {
    fail(PEAKCACHE_ERR_NULL, format_args!("{what} is NULL"))
}

/// Takes the handle out of a `T **` argument and sets `*slot` to NULL, so the caller cannot use
/// it again. NULL `slot` or `*slot` give `PEAKCACHE_ERR_NULL`.
///
/// # Safety
/// A non-NULL `slot` must point to a writable `*mut T` that is NULL or came from
/// `Box::into_raw` and has not been freed.
#[inline]
pub(crate) unsafe fn take<T>(slot: *mut *mut T, what: &str) -> Result<Box<T>, peakcache_result> {
    if slot.is_null() {
        return Err(null(what));
    }
    // SAFETY: `slot` is non-NULL and writable (caller's promise).
    let raw = unsafe { std::ptr::replace(slot, std::ptr::null_mut()) };
    if raw.is_null() {
        return Err(fail(
            PEAKCACHE_ERR_NULL,
            format_args!("*{what} is NULL (already consumed or never set)"),
        ));
    }
    // SAFETY: a non-NULL handle came from Box::into_raw and is owned by the caller.
    Ok(unsafe { Box::from_raw(raw) })
}
