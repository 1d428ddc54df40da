//! The hits of a busy key need no shard lock: a fresh entry, and a stale one while its refresh
//! runs or its failing origin backs off (what most lookups of a key past its lifetime are).
//! A process stopped (preempted, or worse) while it holds the shard's lock then delays no
//! other process's hits of that key: the lookup answers at once, as the locked one would.

use peakcache::{Freshness, ManualClock, Served};
use peakcache_shm::{Lookup, ShmCache};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_millis(500);

fn cache() -> (ShmCache, ManualClock) {
    let clock = ManualClock::new();
    let c = ShmCache::builder()
        .max_bytes(1 << 20)
        .shards(1)
        .lock_bound(BOUND)
        .retry_backoff(Duration::from_secs(1), Duration::from_secs(8))
        .clock(clock.clone())
        .anonymous()
        .unwrap();
    (c, clock)
}

/// Looks `key` up while another thread holds its shard's lock: the answer and how long it took.
fn lookup_while_locked(c: &ShmCache, key: &'static [u8]) -> (Lookup, Duration) {
    let (locked_tx, locked_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let holder = c.clone();
    let t = std::thread::spawn(move || {
        holder.debug_with_shard_locked(key, false, || {
            locked_tx.send(()).unwrap();
            let _ = done_rx.recv_timeout(Duration::from_secs(5));
        });
    });
    locked_rx.recv().unwrap();
    let started = Instant::now();
    let answer = c.lookup(key);
    let took = started.elapsed();
    done_tx.send(()).unwrap();
    t.join().unwrap();
    (answer, took)
}

fn served(l: &Lookup) -> Option<(Served, bool)> {
    match l {
        Lookup::Fresh(h) => Some((h.served(), false)),
        Lookup::Stale(h, r) => Some((h.served(), r.is_some())),
        _ => None,
    }
}

#[test]
fn a_stale_entry_whose_refresh_runs_is_served_while_its_shard_is_locked() {
    let (c, clock) = cache();
    let w = Freshness::new(Duration::from_secs(10)).with_swr(Duration::from_secs(30));
    c.insert(b"k", b"v", w).unwrap();
    clock.advance(Duration::from_secs(11));
    let Lookup::Stale(_, Some(refresh)) = c.lookup(b"k") else {
        panic!("the first stale lookup refreshes")
    };
    let before = c.stats();
    let (answer, took) = lookup_while_locked(&c, b"k");
    assert_eq!(served(&answer), Some((Served::Stale, false)));
    assert!(took < BOUND / 2, "{took:?}: it waited for the lock");
    assert_eq!(c.stats().stale, before.stale + 1);
    drop(refresh);
}

#[test]
fn a_stale_if_error_entry_backing_off_is_served_while_its_shard_is_locked() {
    let (c, clock) = cache();
    let w = Freshness::new(Duration::from_secs(10)).with_sie(Duration::from_secs(60));
    c.insert(b"k", b"v", w).unwrap();
    clock.advance(Duration::from_secs(11));
    let Lookup::Miss(fill) = c.lookup(b"k") else {
        panic!("past its lifetime, inside stale-if-error only: a fill")
    };
    assert!(
        fill.fail().is_some(),
        "the failed fill hands the entry back"
    );
    let before = c.stats();
    let (answer, took) = lookup_while_locked(&c, b"k");
    assert_eq!(served(&answer), Some((Served::StaleIfError, false)));
    assert!(took < BOUND / 2, "{took:?}: it waited for the lock");
    assert_eq!(c.stats().stale_if_error, before.stale_if_error + 1);
}

#[test]
fn a_stale_entry_that_needs_a_refresh_still_gets_its_ticket() {
    let (c, clock) = cache();
    let w = Freshness::new(Duration::from_secs(10)).with_swr(Duration::from_secs(30));
    c.insert(b"k", b"v", w).unwrap();
    clock.advance(Duration::from_secs(11));
    assert_eq!(served(&c.lookup(b"k")), Some((Served::Stale, true)));
    assert_eq!(served(&c.lookup(b"k")), Some((Served::Stale, false)));
}
