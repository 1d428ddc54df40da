//! Result codes, their names, and the thread's last error message.

use crate::panic::{boundary_or, boundary_unit};
use std::cell::RefCell;
use std::ffi::c_char;

/// What a call did. `PEAKCACHE_OK` is 0; every other code is stable and new codes are only ever
/// appended. In C the type is a `uint32_t`; `peakcache_result_str` names any code.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum peakcache_result {
    /// Success. Out-parameters have been written.
    PEAKCACHE_OK = 0,
    /// Not resolved yet (only `peakcache_waiter_poll`): the waiter is still yours; poll again
    /// later. Not an error.
    PEAKCACHE_PENDING = 1,
    /// A required pointer argument was NULL, or a handle passed by address (`T **`) was NULL
    /// (for instance because an earlier call consumed it).
    PEAKCACHE_ERR_NULL = 2,
    /// An argument was out of its domain: a NULL byte pointer with a nonzero length, a
    /// capacity of 0, a header larger than 4 GiB.
    PEAKCACHE_ERR_INVALID = 3,
    /// The library panicked (a bug in peakcache). Nothing crossed the boundary; the message is
    /// kept for `peakcache_last_error`. Handles passed by address were consumed.
    PEAKCACHE_ERR_PANIC = 4,
    /// The value weighs more than the largest object the cache stores, so it was not stored.
    /// Waiters of the fill still received it; serve the response you have. (Shared backend:
    /// waiters are released with `PEAKCACHE_WAIT_PASS` instead, and this is also the answer when
    /// no room could be made in the region.)
    PEAKCACHE_ERR_TOO_LARGE = 5,
    /// An index was past the end (a header number not below `peakcache_entry_header_count`).
    PEAKCACHE_ERR_OUT_OF_RANGE = 6,
    /// The request has no cache key (a method other than GET and HEAD, no host, a scheme other
    /// than http and https): forward it untouched and store nothing. The reason is in
    /// `peakcache_last_error`.
    PEAKCACHE_ERR_NOT_CACHEABLE = 7,
    /// Bytes that are not valid HTTP: a method, target, header name or value, or status code
    /// the HTTP family cannot read (in the arguments, or in a stored entry). Treat the request
    /// as not cacheable; `peakcache_last_error` names the culprit.
    PEAKCACHE_ERR_MALFORMED = 8,
    /// A 304's validator does not match the stored response (RFC 9111 §4.3.4): the entry was not
    /// updated; fetch the resource again without conditions.
    PEAKCACHE_ERR_VALIDATOR_MISMATCH = 9,
    /// A system call failed on a file of the shared backend (creating or opening the region
    /// file, writing or reading a snapshot): `peakcache_last_error` names the file and the
    /// system's reason.
    PEAKCACHE_ERR_IO = 10,
    /// A region file or snapshot that cannot be used: another layout version, a region
    /// configured otherwise (with `shm_recreate_on_mismatch` false), a damaged or truncated
    /// header, not a peakcache file. `peakcache_last_error` says which.
    PEAKCACHE_ERR_REGION = 11,
    /// A value read from the shared region is not a valid encoded response (written by another
    /// version or another program): nothing was handed out, any ticket that came with it was
    /// abandoned, and the key was purged so the next lookup fetches it again.
    PEAKCACHE_ERR_CORRUPT = 12,
    /// The function needs the other backend (`peakcache_cache_snapshot` and
    /// `peakcache_cache_restore` need `PEAKCACHE_BACKEND_SHARED`).
    PEAKCACHE_ERR_UNSUPPORTED = 13,
}

pub use peakcache_result::*;

impl peakcache_result {
    /// The code's name, NUL-terminated.
    pub const fn name(self) -> &'static str {
        match self {
            PEAKCACHE_OK => "PEAKCACHE_OK\0",
            PEAKCACHE_PENDING => "PEAKCACHE_PENDING\0",
            PEAKCACHE_ERR_NULL => "PEAKCACHE_ERR_NULL\0",
            PEAKCACHE_ERR_INVALID => "PEAKCACHE_ERR_INVALID\0",
            PEAKCACHE_ERR_PANIC => "PEAKCACHE_ERR_PANIC\0",
            PEAKCACHE_ERR_TOO_LARGE => "PEAKCACHE_ERR_TOO_LARGE\0",
            PEAKCACHE_ERR_OUT_OF_RANGE => "PEAKCACHE_ERR_OUT_OF_RANGE\0",
            PEAKCACHE_ERR_NOT_CACHEABLE => "PEAKCACHE_ERR_NOT_CACHEABLE\0",
            PEAKCACHE_ERR_MALFORMED => "PEAKCACHE_ERR_MALFORMED\0",
            PEAKCACHE_ERR_VALIDATOR_MISMATCH => "PEAKCACHE_ERR_VALIDATOR_MISMATCH\0",
            PEAKCACHE_ERR_IO => "PEAKCACHE_ERR_IO\0",
            PEAKCACHE_ERR_REGION => "PEAKCACHE_ERR_REGION\0",
            PEAKCACHE_ERR_CORRUPT => "PEAKCACHE_ERR_CORRUPT\0",
            PEAKCACHE_ERR_UNSUPPORTED => "PEAKCACHE_ERR_UNSUPPORTED\0",
        }
    }

    /// The code for a number, if it is one.
    pub const fn from_u32(code: u32) -> Option<Self> {
        Some(match code {
            0 => PEAKCACHE_OK,
            1 => PEAKCACHE_PENDING,
            2 => PEAKCACHE_ERR_NULL,
            3 => PEAKCACHE_ERR_INVALID,
            4 => PEAKCACHE_ERR_PANIC,
            5 => PEAKCACHE_ERR_TOO_LARGE,
            6 => PEAKCACHE_ERR_OUT_OF_RANGE,
            7 => PEAKCACHE_ERR_NOT_CACHEABLE,
            8 => PEAKCACHE_ERR_MALFORMED,
            9 => PEAKCACHE_ERR_VALIDATOR_MISMATCH,
            10 => PEAKCACHE_ERR_IO,
            11 => PEAKCACHE_ERR_REGION,
            12 => PEAKCACHE_ERR_CORRUPT,
            13 => PEAKCACHE_ERR_UNSUPPORTED,
            _ => return None,
        })
    }
}

/// The name of a result code (`"PEAKCACHE_ERR_NULL"`) as a static NUL-terminated string, for
/// logs. `code` is a `peakcache_result`; an unknown number gives `"PEAKCACHE_UNKNOWN"`. Never
/// NULL; never free it.
#[no_mangle]
pub extern "C" fn peakcache_result_str(code: u32) -> *const c_char {
    boundary_or(
        c"PEAKCACHE_UNKNOWN".as_ptr(),
        || match peakcache_result::from_u32(code) {
            Some(r) => r.name().as_ptr().cast(),
            None => c"PEAKCACHE_UNKNOWN".as_ptr(),
        },
    )
}

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Records `msg` as this thread's last error and returns `code`: every error path goes through
/// here so `peakcache_last_error` can say which argument was wrong.
#[cold]
pub(crate) fn fail(code: peakcache_result, msg: impl std::fmt::Display) -> peakcache_result {
    set_last_error(&msg.to_string());
    code
}

pub(crate) fn set_last_error(msg: &str) {
    // `try_with`: during thread teardown the slot may be gone; the message is then dropped.
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            e.clear();
            e.push_str(msg);
        }
    });
}

/// Copies this thread's last error message (the reason of the last call that failed on this
/// thread, a panic message included) into `buf`, like `snprintf`: at most `cap - 1` bytes and a
/// terminating NUL when `cap > 0`. Returns the message's full length in bytes (without the NUL),
/// so a return value `>= cap` means it was cut. `buf` may be NULL when `cap` is 0 (to ask the
/// length). An empty message (length 0) when no call has failed on this thread.
///
/// # Safety
/// `buf` must be NULL or point to `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn peakcache_last_error(buf: *mut c_char, cap: usize) -> usize {
    boundary_or(0, || {
        LAST_ERROR
            .try_with(|e| {
                let e = e.borrow();
                if !buf.is_null() && cap > 0 {
                    let n = e.len().min(cap - 1);
                    // SAFETY: the caller promises `cap` writable bytes at `buf`; n < cap.
                    unsafe {
                        std::ptr::copy_nonoverlapping(e.as_ptr(), buf.cast::<u8>(), n);
                        *buf.add(n) = 0;
                    }
                }
                e.len()
            })
            .unwrap_or(0)
    })
}

/// Clears this thread's last error message.
#[no_mangle]
pub extern "C" fn peakcache_clear_last_error() {
    boundary_unit(|| set_last_error(""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn every_code_has_its_own_name() {
        let mut code = 0;
        while let Some(r) = peakcache_result::from_u32(code) {
            assert_eq!(r as u32, code);
            let s = unsafe { CStr::from_ptr(peakcache_result_str(code)) };
            assert_eq!(s.to_str().unwrap(), format!("{r:?}"));
            code += 1;
        }
        assert_eq!(code, PEAKCACHE_ERR_UNSUPPORTED as u32 + 1);
        let s = unsafe { CStr::from_ptr(peakcache_result_str(999)) };
        assert_eq!(s.to_bytes(), b"PEAKCACHE_UNKNOWN");
    }

    #[test]
    fn last_error_copies_like_snprintf() {
        fail(PEAKCACHE_ERR_NULL, "key is NULL");
        let mut buf = [0x55u8; 4];
        let n = unsafe { peakcache_last_error(buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(n, 11);
        assert_eq!(&buf, b"key\0");
        assert_eq!(unsafe { peakcache_last_error(std::ptr::null_mut(), 0) }, 11);
        peakcache_clear_last_error();
        assert_eq!(unsafe { peakcache_last_error(std::ptr::null_mut(), 0) }, 0);
    }
}
