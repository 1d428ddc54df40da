//! The panic boundary: every export runs its body through [`boundary`] (or a sibling), so a
//! panic never unwinds into C (which would abort the host since Rust 1.81) and is reported as
//! `PEAKCACHE_ERR_PANIC` with its message kept for `peakcache_last_error`.
//!
//! Printing: Rust's default panic hook writes to stderr. On first use this library installs a
//! hook that stays silent for panics raised inside a boundary on this thread (it records the
//! message and location instead) and passes every other panic to the hook that was there before,
//! so a Rust host linking the rlib keeps its own panic output. A cdylib or staticlib carries its
//! own copy of std, so the hook only sees this library's panics. If a Rust host replaces the hook
//! afterwards, its hook decides what is printed.
//!
//! Aborts that no boundary can catch: allocation failure (Rust aborts on OOM) and a panic while
//! already unwinding. The crate must be built with `panic = "unwind"` (the default; a test checks).

use crate::result::{peakcache_result, set_last_error, PEAKCACHE_ERR_PANIC};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe, PanicHookInfo};
use std::sync::Once;

#[cfg(not(panic = "unwind"))]
compile_error!(
    "peakcache-ffi needs panic = \"unwind\": with abort, no panic can be caught at the C boundary"
);

thread_local! {
    /// How many boundaries this thread is inside (a log callback may call back in).
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The message the hook recorded for the panic being caught.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if DEPTH.try_with(Cell::get).unwrap_or(0) > 0 {
                let msg = describe(info);
                let _ = CAUGHT.try_with(|c| {
                    if let Ok(mut c) = c.try_borrow_mut() {
                        *c = Some(msg);
                    }
                });
            } else {
                previous(info);
            }
        }));
    });
}

fn describe(info: &PanicHookInfo<'_>) -> String {
    let what = payload_str(info.payload()).unwrap_or("Box<dyn Any>");
    match info.location() {
        Some(l) => format!("peakcache panicked at {}:{}: {what}", l.file(), l.line()),
        None => format!("peakcache panicked: {what}"),
    }
}

fn payload_str(p: &(dyn Any + Send)) -> Option<&str> {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
}

/// Runs `f`, catching any panic: `Err(())` after recording and logging it.
#[inline(always)]
fn run<T>(f: impl FnOnce() -> T) -> Result<T, ()> {
    install_hook();
    let depth = DEPTH.with(|d| {
        let v = d.get();
        d.set(v + 1);
        v
    });
    let r = catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(depth));
    r.map_err(caught)
}

#[cold]
#[inline(never)]
fn caught(payload: Box<dyn Any + Send>) {
    let msg = CAUGHT
        .try_with(|c| c.try_borrow_mut().ok().and_then(|mut c| c.take()))
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            format!(
                "peakcache panicked: {}",
                payload_str(&*payload).unwrap_or("Box<dyn Any>")
            )
        });
    // A payload's destructor could panic too; that one must not escape either.
    if let Err(again) = catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        std::mem::forget(again);
    }
    set_last_error(&msg);
    crate::log::emit(crate::log::PEAKCACHE_LOG_ERROR, &msg);
}

/// Runs the body of an export returning a result code; a panic becomes `PEAKCACHE_ERR_PANIC`.
#[inline(always)]
pub(crate) fn boundary(f: impl FnOnce() -> peakcache_result) -> peakcache_result {
    run(f).unwrap_or(PEAKCACHE_ERR_PANIC)
}

/// Runs an export body written with `?`: `Ok(())` is `PEAKCACHE_OK`, `Err(code)` that code, a
/// panic `PEAKCACHE_ERR_PANIC`.
#[inline(always)]
pub(crate) fn try_boundary(f: impl FnOnce() -> Result<(), peakcache_result>) -> peakcache_result {
    boundary(|| match f() {
        Ok(()) => crate::result::PEAKCACHE_OK,
        Err(e) => e,
    })
}

/// Runs the body of an export returning a plain value; a panic returns `default`.
#[inline(always)]
pub(crate) fn boundary_or<T>(default: T, f: impl FnOnce() -> T) -> T {
    run(f).unwrap_or(default)
}

/// Runs the body of an export returning nothing (the free functions); a panic is recorded only.
#[inline(always)]
pub(crate) fn boundary_unit(f: impl FnOnce()) {
    let _ = run(f);
}

/// Panics inside the boundary, to let the C tests prove that nothing crosses it: returns
/// `PEAKCACHE_ERR_PANIC` and leaves "debug panic" in `peakcache_last_error`. Only in builds with
/// the `test-panic` feature; not declared in the header.
#[cfg(feature = "test-panic")]
#[no_mangle]
pub extern "C" fn peakcache_debug_panic() -> peakcache_result {
    boundary(|| panic!("debug panic"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result::PEAKCACHE_OK;

    fn last_error() -> String {
        let mut buf = vec![0u8; 512];
        let n = unsafe { crate::result::peakcache_last_error(buf.as_mut_ptr().cast(), buf.len()) };
        buf.truncate(n.min(511));
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn a_panic_becomes_a_code_and_a_message() {
        assert_eq!(boundary(|| PEAKCACHE_OK), PEAKCACHE_OK);
        assert_eq!(boundary(|| panic!("boom {}", 42)), PEAKCACHE_ERR_PANIC);
        let e = last_error();
        assert!(e.contains("boom 42") && e.contains("panic.rs"), "{e}");
        assert_eq!(boundary_or(7u8, || panic!("again")), 7);
        assert!(last_error().contains("again"));
    }

    #[test]
    fn nested_boundaries_restore_depth() {
        let r = boundary(|| {
            assert_eq!(boundary(|| panic!("inner")), PEAKCACHE_ERR_PANIC);
            PEAKCACHE_OK
        });
        assert_eq!(r, PEAKCACHE_OK);
        assert_eq!(DEPTH.with(Cell::get), 0);
    }
}
