//! Sleeping on a 32-bit word of the shared mapping: `FUTEX_WAIT` / `FUTEX_WAKE` without the
//! private flag, so the kernel keys the wait on the physical page and processes that map the
//! region at different addresses meet on the same word.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `*word == expected`, at most `timeout`. Returns on a wake, on a change of the
/// word (at once if it already differs), on a signal or when the timeout passes: the caller
/// re-checks its condition in every case.
#[cfg(target_os = "linux")]
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned 32-bit atomic that lives as long as the borrow (inside
    // the mapping, which outlives every `ShmCache`); FUTEX_WAIT only reads it, and `ts` is a
    // valid relative timeout. Errors (EAGAIN when the word changed, EINTR, ETIMEDOUT) all mean
    // "look again", which is what the caller does.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every process and thread sleeping on `word`.
#[cfg(target_os = "linux")]
pub(crate) fn wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned 32-bit atomic in the mapping; FUTEX_WAKE does not access
    // memory beyond looking the address up.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Elsewhere: a short sleep stands in for the futex (waiters re-check their condition anyway).
#[cfg(not(target_os = "linux"))]
pub(crate) fn wait(_word: &AtomicU32, _expected: u32, timeout: Duration) {
    std::thread::sleep(timeout.min(Duration::from_millis(1)));
}

/// Elsewhere: nothing to do, waiters poll.
#[cfg(not(target_os = "linux"))]
pub(crate) fn wake_all(_word: &AtomicU32) {}
