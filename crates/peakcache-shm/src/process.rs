//! Who owns a flight, and whether that process is still alive.
//!
//! An owner is recorded as its pid and its start time (field 22 of `/proc/PID/stat`, in clock
//! ticks since boot), so a pid reused by a later process is not mistaken for the owner.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The `(pid, start time)` of this process, read once per pid (a forked child reads its own).
pub(crate) fn me() -> (u32, u64) {
    static CACHED: AtomicU64 = AtomicU64::new(0);
    static CACHED_START: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    let c = CACHED.load(Ordering::Acquire);
    if c == pid as u64 + 1 {
        return (pid, CACHED_START.load(Ordering::Relaxed));
    }
    let start = start_time(pid).unwrap_or(0);
    CACHED_START.store(start, Ordering::Relaxed);
    CACHED.store(pid as u64 + 1, Ordering::Release);
    (pid, start)
}

/// The start time of process `pid`, if it exists and /proc is readable.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the owner `(pid, start)` of a flight running for `age` is still alive. Errs on the
/// side of "alive" (the lock timeout then releases the flight): a pid that exists is checked
/// against the recorded start time only once the flight is older than a second, since a pid
/// is not reused that fast.
pub(crate) fn alive(pid: u32, start: u64, age: Duration) -> bool {
    if pid == 0 {
        return false;
    }
    let (my_pid, my_start) = me();
    if pid == my_pid {
        return start == my_start;
    }
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 sends nothing; it only checks that the process exists.
    let r = unsafe { libc::kill(pid_t, 0) };
    if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    if age >= Duration::from_secs(1) && start != 0 {
        if let Some(now_start) = start_time(pid) {
            return now_start == start;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let (pid, start) = me();
        assert!(start > 0);
        assert!(alive(pid, start, Duration::ZERO));
        assert!(!alive(pid, start + 1, Duration::ZERO));
        // A child that exited and was reaped no longer exists.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let cpid = child.id();
        child.wait().unwrap();
        assert!(!alive(cpid, 1, Duration::ZERO));
    }
}
