//! Who owns a flight, and whether that process is still alive.
//!
//! An owner is recorded as its pid and its start time (field 22 of `/proc/PID/stat`, in clock
//! ticks since boot), so a pid reused by a later process is not mistaken for the owner.

use std::sync::atomic::{AtomicU64, Ordering};

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
    stat(pid).map(|(_, start)| start)
}

/// What `/proc/PID/stat` says of a process: its state letter and its start time.
fn stat(pid: u32) -> Option<(u8, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from its end.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = *rest.next()?.as_bytes().first()?;
    Some((state, rest.nth(18)?.parse().ok()?))
}

/// Whether a process `pid` exists (a zombie included; `kill(pid, 0)` does not fail with
/// `ESRCH`).
pub(crate) fn exists(pid: u32) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid_t <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 sends nothing; it only checks that the process exists.
    let r = unsafe { libc::kill(pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Whether the owner `(pid, start)` of a flight is still alive: it exists, has not exited (a
/// zombie, `Z`, waiting for its parent to reap it, is dead: it will never complete the
/// flight), and started when the owner did (a reused pid is another process). Errs on the
/// side of "alive" when `/proc` cannot tell (the lock timeout then releases the flight).
/// Only asked by callers about to wait (never on a hit): one read of `/proc/PID/stat`.
pub(crate) fn alive(pid: u32, start: u64) -> bool {
    if pid == 0 {
        return false;
    }
    let (my_pid, my_start) = me();
    if pid == my_pid {
        return start == my_start;
    }
    if !exists(pid) {
        return false;
    }
    match stat(pid) {
        Some((b'Z' | b'X' | b'x', _)) => false,
        Some((_, now_start)) => start == 0 || now_start == start,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::{Duration, Instant};

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let (pid, start) = me();
        assert!(start > 0);
        assert!(alive(pid, start));
        assert!(!alive(pid, start + 1));
        // A child that exited and was reaped no longer exists.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let cpid = child.id();
        child.wait().unwrap();
        assert!(!alive(cpid, 1));
    }

    #[test]
    fn a_zombie_is_dead_and_a_live_child_with_another_start_time_is_not_the_owner() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = child.id();
        let start = start_time(pid).expect("the child's start time");
        assert!(alive(pid, start), "running");
        assert!(!alive(pid, start + 1), "another process under a reused pid");
        // Exited, not reaped: a zombie, which `kill(pid, 0)` still finds.
        let until = Instant::now() + Duration::from_secs(5);
        while stat(pid).map(|(s, _)| s) != Some(b'Z') {
            assert!(Instant::now() < until, "the child did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(exists(pid), "a zombie exists");
        assert!(!alive(pid, start), "a zombie never completes a flight");
        child.wait().unwrap();
    }
}
