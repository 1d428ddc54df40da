//! A privileged creator makes the region for another user: nginx's master, running as root,
//! creates it owned by its workers' user, who attach to it after dropping privileges. Alone in
//! its binary, as it forks (see `tests/fork.rs`); runs as root (as `make test` does here).

use peakcache::Freshness;
use peakcache_shm::{Opened, ShmCache, ShmError};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

const NOBODY: u32 = 65534;
const HOUR: Duration = Duration::from_secs(3600);

fn exit(code: i32) -> ! {
    // SAFETY: ends the child at once, without running the parent's exit handlers.
    unsafe { libc::_exit(code) }
}

/// In the child: becomes `nobody` (group first), then runs `f`; exits 0 if it returned true.
fn as_nobody(f: impl FnOnce() -> bool) -> i32 {
    // SAFETY: the child only drops privileges, uses the cache and leaves with `_exit`; no
    // other test thread runs in this binary.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // SAFETY: plain system calls changing this (child) process's ids.
        let dropped = unsafe { libc::setgid(NOBODY) == 0 && libc::setuid(NOBODY) == 0 };
        exit(if dropped && f() { 0 } else { 1 });
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child killed: {status}");
    libc::WEXITSTATUS(status)
}

#[test]
fn a_region_created_by_root_for_another_user_is_theirs_and_they_attach_it() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test runs as root");
    let dir = PathBuf::from("/dev/shm");
    let path = dir.join(format!("peakcache-owner-{}", std::process::id()));
    let own = dir.join(format!("peakcache-owner-root-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let builder = || ShmCache::builder().max_bytes(1 << 20).shards(1);
    let (cache, opened) = builder().owner(NOBODY).group(NOBODY).open(&path).unwrap();
    assert_eq!(opened, Opened::Created);
    let md = std::fs::metadata(&path).unwrap();
    assert_eq!(
        (md.uid(), md.gid(), md.mode() & 0o7777),
        (NOBODY, NOBODY, 0o600)
    );
    cache
        .insert(b"from-root", b"hello", Freshness::new(HOUR))
        .unwrap();
    // Root's own region, for the refusal below.
    drop(builder().open(&own).unwrap());

    let child_path = path.clone();
    let child_own = own.clone();
    let status = as_nobody(move || {
        // The worker's user attaches with the defaults (its effective ids): its file.
        let Ok((worker, Opened::Attached)) = builder().open(&child_path) else {
            return false;
        };
        let read = worker.get(b"from-root").as_deref() == Some(&b"hello"[..]);
        let wrote = worker
            .insert(b"from-worker", b"hi", Freshness::new(HOUR))
            .is_ok();
        // Root's region is not this user's: refused (before any permission error).
        let refused = matches!(
            builder().open(&child_own),
            Err(ShmError::Refused { uid: 0, .. })
        );
        read && wrote && refused
    });
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&own);
    assert_eq!(
        status, 0,
        "the child, as nobody, attached, read, wrote and refused"
    );
    assert_eq!(cache.get(b"from-worker").as_deref(), Some(&b"hi"[..]));
}
