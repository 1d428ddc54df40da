//! Structs that grow without breaking hosts built against an older header.
//!
//! Every struct the host allocates and the library reads or writes, and that may gain fields
//! (`peakcache_config`, `peakcache_http_config`, `peakcache_lookup_result`,
//! `peakcache_wait_result`, `peakcache_stats`, `peakcache_region_info`,
//! `peakcache_http_decision`, `peakcache_http_answer`), travels with its size: each function
//! taking one is exported as `<name>_sized(..., size_t size)`, the size last, and the header
//! defines `<name>(...)` as a variadic macro adding `sizeof` of the struct the host was compiled
//! with (zlib's `deflateInit` pattern). So a call site reads as before, and:
//!
//! - the library never reads or writes past the host's struct: it reads the fields the host's
//!   struct has (the rest take their defaults) and writes as many bytes as the host's struct has;
//! - a struct smaller than the first published layout (ABI version 1) is refused with
//!   `PEAKCACHE_ERR_INVALID`; a larger one (a host built against a newer header) is accepted
//!   when the fields this library does not know are zero, i.e. at their defaults;
//! - fields are only ever appended, so the prefix a host knows keeps its layout;
//! - a host built before sizes were passed (peakcache 0.1) does not link: the exported names
//!   changed, so the mismatch is a loader error, never memory written past a struct.
//!
//! Structs the host fills and the library only borrows for the length of a call
//! (`peakcache_bytes`, `peakcache_http_header`, `peakcache_http_request`,
//! `peakcache_http_response_head`) are frozen: should one ever need a field, a new struct and
//! new functions come instead. `PEAKCACHE_ABI_VERSION` changes when anything but appending
//! happens.

use crate::result::{fail, peakcache_result, PEAKCACHE_ERR_INVALID};
use std::mem::size_of;

/// The version of the C ABI (`PEAKCACHE_ABI_VERSION`): changes whenever a change is more than
/// appending fields to the sized structs or adding functions. Compare it with
/// `peakcache_abi_version()` at start-up.
pub const PEAKCACHE_ABI_VERSION: u32 = 1;

/// The ABI version of the loaded library (`PEAKCACHE_ABI_VERSION` of the header it was built
/// with). A host that finds another value than its own header's must not use the library.
#[no_mangle]
pub extern "C" fn peakcache_abi_version() -> u32 {
    PEAKCACHE_ABI_VERSION
}

/// A struct whose size travels with it across the boundary.
pub(crate) trait Growable: Copy {
    /// The struct's name, for error messages.
    const NAME: &'static str;
    /// The size of its first published layout (ABI version 1): the smallest a host may pass.
    const FIRST_SIZE: usize;
}

/// Implements [`Growable`] with the first layout ending at `$last` (the last field of ABI 1).
macro_rules! sized {
    ($t:ty, $last:ident) => {
        impl crate::abi::Growable for $t {
            const NAME: &'static str = stringify!($t);
            const FIRST_SIZE: usize =
                std::mem::offset_of!($t, $last) + crate::abi::field_size(|s: &$t| &s.$last);
        }
    };
}
pub(crate) use sized;

/// The size of the field `f` selects (for [`sized!`]).
pub(crate) const fn field_size<T, F>(_f: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

fn check<T: Growable>(size: usize) -> Result<(), peakcache_result> {
    if size < T::FIRST_SIZE {
        return Err(fail(
            PEAKCACHE_ERR_INVALID,
            format_args!(
                "{} of {size} bytes: smaller than any published layout ({} bytes at least); \
                 rebuild the host against this library's peakcache.h",
                T::NAME,
                T::FIRST_SIZE
            ),
        ));
    }
    Ok(())
}

/// Reads the host's struct of `size` bytes at `ptr`: the fields it has, the library's defaults
/// for the ones it lacks. `None` for NULL.
///
/// # Safety
/// `ptr` must be NULL or point to `size` readable bytes.
pub(crate) unsafe fn read<T: Growable + Default>(
    ptr: *const T,
    size: usize,
) -> Result<Option<T>, peakcache_result> {
    if ptr.is_null() {
        return Ok(None);
    }
    check::<T>(size)?;
    let mut value = T::default();
    let known = size.min(size_of::<T>());
    // SAFETY: the caller promises `size` readable bytes; `value` has `size_of::<T>()`; `T` is a
    // plain C struct (Copy, no invariants beyond its fields' own, which are integers, bools and
    // pointers checked where used).
    unsafe {
        std::ptr::copy_nonoverlapping(ptr.cast::<u8>(), (&mut value as *mut T).cast::<u8>(), known)
    };
    if size > known {
        // SAFETY: within the caller's `size` bytes.
        let newer =
            unsafe { std::slice::from_raw_parts(ptr.cast::<u8>().add(known), size - known) };
        if newer.iter().any(|b| *b != 0) {
            return Err(fail(
                PEAKCACHE_ERR_INVALID,
                format_args!(
                    "{} of {size} bytes sets fields this library ({} bytes) does not know: \
                     the host was built against a newer peakcache.h",
                    T::NAME,
                    size_of::<T>()
                ),
            ));
        }
    }
    Ok(Some(value))
}

/// Checks that the host's struct at `out` can take an answer (non-NULL is checked by the
/// caller; the size here), before anything is done that would need to be undone.
pub(crate) fn writable_sized<T: Growable>(size: usize) -> Result<(), peakcache_result> {
    check::<T>(size)
}

/// Writes `value` into the host's struct of `size` bytes at `out`: as many bytes as both
/// layouts share, and zeros (every field's default) in the part only a newer header knows.
///
/// # Safety
/// `out` must be non-NULL and point to `size` writable bytes, with `size` checked by
/// [`writable_sized`].
pub(crate) unsafe fn write<T: Growable>(out: *mut T, size: usize, value: &T) {
    let known = size.min(size_of::<T>());
    // SAFETY: the caller promises `size` writable bytes; `value` has `size_of::<T>()`.
    unsafe {
        std::ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), out.cast::<u8>(), known);
        std::ptr::write_bytes(out.cast::<u8>().add(known), 0, size - known);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq)]
    struct Grown {
        a: u64,
        b: u32,
        // appended after ABI 1
        c: u64,
    }
    sized!(Grown, b);

    #[test]
    fn the_first_layout_ends_at_its_last_field() {
        assert_eq!(Grown::FIRST_SIZE, 12);
        assert_eq!(size_of::<Grown>(), 24);
    }

    #[test]
    fn an_older_host_is_read_with_defaults_and_written_without_overflow() {
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Old {
            a: u64,
            b: u32,
        }
        // The old struct and a canary right after it, as a host's stack would hold them.
        #[repr(C)]
        struct Frame {
            old: Old,
            canary: [u8; 16],
        }
        let mut f = Frame {
            old: Old { a: 7, b: 9 },
            canary: [0xA5; 16],
        };
        let size = size_of::<Old>();
        let got = unsafe { read(&f.old as *const Old as *const Grown, size) }.unwrap();
        assert_eq!(got, Some(Grown { a: 7, b: 9, c: 0 }));
        writable_sized::<Grown>(size).unwrap();
        let answer = Grown { a: 1, b: 2, c: 3 };
        unsafe { write(&mut f.old as *mut Old as *mut Grown, size, &answer) };
        assert_eq!((f.old.a, f.old.b), (1, 2));
        assert_eq!(
            f.canary, [0xA5; 16],
            "nothing written past the host's struct"
        );
    }

    #[test]
    fn a_newer_host_is_read_when_unknown_fields_are_zero_and_its_tail_is_zeroed() {
        let mut bytes = [0u8; 40];
        bytes[..8].copy_from_slice(&5u64.to_ne_bytes());
        let got = unsafe { read(bytes.as_ptr() as *const Grown, bytes.len()) }.unwrap();
        assert_eq!(got.unwrap().a, 5);
        bytes[30] = 1;
        assert!(unsafe { read(bytes.as_ptr() as *const Grown, bytes.len()) }.is_err());
        let mut out = [0xFFu8; 40];
        unsafe { write(out.as_mut_ptr() as *mut Grown, out.len(), &Grown::default()) };
        assert!(out.iter().all(|b| *b == 0));
    }

    #[test]
    fn a_struct_smaller_than_the_first_layout_is_refused() {
        assert!(writable_sized::<Grown>(11).is_err());
        assert!(unsafe { read(&Grown::default(), 4) }.is_err());
        assert_eq!(unsafe { read::<Grown>(std::ptr::null(), 0) }.unwrap(), None);
    }
}
