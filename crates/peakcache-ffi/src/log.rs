//! Logging through a callback the host sets. The library never writes to stdout or stderr.

use crate::panic::boundary_unit;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Log level: something failed inside the library (a caught panic).
pub const PEAKCACHE_LOG_ERROR: c_int = 1;
/// Log level: something the operator should know (a value too large to store).
pub const PEAKCACHE_LOG_WARN: c_int = 2;
/// Log level: a notable event (a cache created).
pub const PEAKCACHE_LOG_INFO: c_int = 3;
/// Log level: detail for debugging.
pub const PEAKCACHE_LOG_DEBUG: c_int = 4;

/// A log callback: `userdata` as given to `peakcache_set_log_callback`, a `PEAKCACHE_LOG_*`
/// level, and the message as bytes (`msg[0..len]`, UTF-8, not NUL-terminated, valid only during
/// the call). Called from whichever thread made the call that logs, never with a lock of the
/// cache held, so it may call back into peakcache.
pub type peakcache_log_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, level: c_int, msg: *const u8, len: usize)>;

#[derive(Clone, Copy)]
struct Sink {
    userdata: *mut c_void,
    cb: unsafe extern "C" fn(*mut c_void, c_int, *const u8, usize),
}

// SAFETY: the host promises (see `peakcache_set_log_callback`) that its callback and userdata may
// be used from any thread.
unsafe impl Send for Sink {}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Sets the process-wide log callback (NULL `cb` turns logging off; the default is off).
/// `userdata` is passed back on each call, first. The callback may be called from any thread
/// that calls into peakcache, concurrently, so it and `userdata` must be thread-safe; a call
/// already in progress on another thread may still use the previous pair after this returns.
///
/// # Safety
/// `cb`, if not NULL, must be a function safe to call with `userdata` until it is replaced.
#[no_mangle]
pub unsafe extern "C" fn peakcache_set_log_callback(
    userdata: *mut c_void,
    cb: peakcache_log_callback,
) {
    boundary_unit(|| {
        let sink = cb.map(|cb| Sink { userdata, cb });
        let mut s = SINK.lock().unwrap_or_else(|e| e.into_inner());
        *s = sink;
        ENABLED.store(sink.is_some(), Ordering::Release);
    })
}

/// Whether a callback is set: lets callers skip formatting a message nobody reads.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Acquire)
}

/// Sends `msg` to the host's callback, if any. The sink is copied out first so the callback runs
/// with no lock held (it may set a new callback or call the cache).
pub(crate) fn emit(level: c_int, msg: &str) {
    if !enabled() {
        return;
    }
    let sink = *SINK.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = sink {
        // SAFETY: the host registered `cb` for `userdata`; `msg` lives across the call.
        unsafe { (s.cb)(s.userdata, level, msg.as_ptr(), msg.len()) };
    }
}
