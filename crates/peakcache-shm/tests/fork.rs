//! An anonymous shared region made before `fork()` (as nginx's master or PHP-FPM's master
//! make it) is shared with the children. Alone in its binary: `fork` in a process running other
//! test threads could leave the child a lock held by a thread that no longer exists.

use peakcache::Freshness;
use peakcache_shm::{Lookup, Resolved, ShmCache};
use std::time::Duration;

fn fork() -> libc::pid_t {
    // SAFETY: the child only uses the cache (its locks live in the shared region, not in this
    // process) and leaves with `_exit`; no other test thread runs in this binary.
    unsafe { libc::fork() }
}

fn exit(code: i32) -> ! {
    // SAFETY: ends the child at once, without running the parent's exit handlers.
    unsafe { libc::_exit(code) }
}

fn wait_child(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waits for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    assert!(libc::WIFEXITED(status), "child killed: {status}");
    libc::WEXITSTATUS(status)
}

#[test]
fn children_forked_after_creation_share_the_anonymous_region() {
    let cache = ShmCache::builder().max_bytes(1 << 20).anonymous().unwrap();
    cache
        .insert(
            b"before",
            b"from the master",
            Freshness::new(Duration::from_secs(60)),
        )
        .unwrap();
    // The parent fills `k`; a child waits for it (blocking) and checks the value.
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!()
    };
    let waiter = fork();
    if waiter == 0 {
        let ok = cache.get(b"before").as_deref() == Some(&b"from the master"[..])
            && match cache.lookup(b"k") {
                Lookup::Wait(w) => {
                    matches!(w.wait(Duration::from_secs(10)), Resolved::Hit(h) if h.value() == &b"v"[..])
                }
                _ => false,
            };
        // The inherited copy of the parent's fill must not abandon it.
        std::mem::forget(cache);
        exit(if ok { 0 } else { 1 });
    }
    std::thread::sleep(Duration::from_millis(50));
    fill.commit(b"v", Freshness::new(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(wait_child(waiter), 0, "the child got the parent's value");
    // A child stores; the parent sees it.
    let writer = fork();
    if writer == 0 {
        let ok = cache
            .insert(b"child", b"hello", Freshness::new(Duration::from_secs(60)))
            .is_ok();
        exit(if ok { 0 } else { 1 });
    }
    assert_eq!(wait_child(writer), 0);
    assert_eq!(cache.get(b"child").as_deref(), Some(&b"hello"[..]));
    let s = cache.stats();
    assert_eq!((s.wait, s.fills_committed, s.inserts), (1, 1, 2));
}
