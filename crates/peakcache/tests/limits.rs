//! The edges of every setting and of the caller's types: durations and capacities at their
//! largest, and a value whose `clone` panics. Each ends in a clear answer, never in an overflow
//! panic, a hang or a deadlock.

use peakcache::{Cache, Clock, Freshness, Lookup, ManualClock, Resolved, Served};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);
const FOREVER: Freshness = Freshness {
    ttl: Duration::MAX,
    swr: Duration::MAX,
    sie: Duration::MAX,
};

#[test]
fn the_largest_windows_are_kept_as_the_cap() {
    let clock = ManualClock::new();
    let cache: Cache<u32> = Cache::builder().clock(clock.clone()).build();
    cache.insert(b"k", 1, FOREVER).unwrap();
    let Lookup::Fresh(hit) = cache.lookup(b"k") else {
        panic!()
    };
    assert_eq!(hit.fresh_until(), Freshness::MAX);
    clock.advance(Freshness::MAX);
    let Lookup::Stale(hit, Some(refresh)) = cache.lookup(b"k") else {
        panic!("stale at the cap, with both windows still ahead")
    };
    assert_eq!(hit.revalidate_until(), Freshness::MAX * 2);
    refresh.commit(2, FOREVER).unwrap();
    assert!(matches!(cache.lookup(b"k"), Lookup::Fresh(h) if *h.value() == 2));
}

#[test]
fn the_manual_clock_stops_at_the_end_of_time() {
    let clock = ManualClock::new();
    clock.advance(SEC);
    clock.advance(Duration::MAX);
    let end = clock.now();
    clock.advance(SEC);
    assert_eq!(clock.now(), end, "it never wraps round to the past");
    let cache: Cache<u32> = Cache::builder().clock(clock).build();
    cache.insert(b"k", 1, FOREVER).unwrap();
    let _ = cache.lookup(b"k");
    let Lookup::Miss(fill) = cache.lookup(b"new") else {
        panic!()
    };
    fill.commit(1, FOREVER).unwrap();
}

#[test]
fn the_longest_lock_timeout_back_off_and_holds() {
    let clock = ManualClock::new();
    let cache: Cache<u32> = Cache::builder()
        .clock(clock.clone())
        .lock_timeout(Duration::MAX)
        .retry_backoff(Duration::MAX, Duration::MAX)
        .refresh_retry(Duration::MAX)
        .build();
    // A fill that never ends holds its waiters until their own timeout.
    let Lookup::Miss(fill) = cache.lookup(b"a") else {
        panic!()
    };
    let Lookup::Wait(waiter) = cache.lookup(b"a") else {
        panic!()
    };
    clock.advance(Freshness::MAX);
    let waiter = waiter.try_wait().err().expect("still waiting");
    assert!(matches!(
        waiter.wait(Duration::from_millis(1)),
        Resolved::TimedOut
    ));
    // A pass-through hold of Duration::MAX lasts.
    fill.uncacheable(Duration::MAX);
    clock.advance(Freshness::MAX);
    assert!(matches!(cache.lookup(b"a"), Lookup::Pass));
    // A failure backs off for good: the stale entry is served, no probe.
    cache
        .insert(b"b", 1, Freshness::new(SEC).with_sie(Duration::MAX))
        .unwrap();
    clock.advance(2 * SEC);
    let Lookup::Miss(fill) = cache.lookup(b"b") else {
        panic!()
    };
    assert!(fill.fail().is_some());
    clock.advance(Freshness::MAX / 2);
    assert!(matches!(cache.lookup(b"b"), Lookup::Stale(_, None)));
    // A dropped refresh blocks the next one for good.
    cache
        .insert(b"c", 1, Freshness::new(SEC).with_swr(Duration::MAX))
        .unwrap();
    clock.advance(2 * SEC);
    let Lookup::Stale(_, Some(refresh)) = cache.lookup(b"c") else {
        panic!()
    };
    drop(refresh);
    clock.advance(Freshness::MAX / 2);
    assert!(matches!(cache.lookup(b"c"), Lookup::Stale(_, None)));
}

#[test]
fn the_largest_capacity_and_weights_stay_bounded() {
    let cache: Cache<u64> = Cache::builder()
        .shards(1)
        .max_bytes(u64::MAX)
        .max_object_weight(u64::MAX)
        .weigher(|_, w: &u64| *w)
        .build();
    assert_eq!(
        cache.max_object_weight(),
        u64::MAX / 2,
        "a shard's capacity"
    );
    for i in 0..5u64 {
        cache
            .insert(&i.to_be_bytes(), u64::MAX / 4, Freshness::new(SEC))
            .unwrap();
    }
    let stats = cache.stats();
    assert!(stats.weight <= stats.capacity, "{stats:?}");
    assert_eq!(
        cache.len(),
        2,
        "a shard holds up to 2^63 - 1: two quarters of u64 fit, no third"
    );
    assert_eq!(stats.evictions, 3);
}

#[test]
fn the_most_shards_asked_for_are_capped() {
    let cache: Cache<u32> = Cache::builder()
        .shards(usize::MAX)
        .max_bytes(1 << 40)
        .build();
    cache.insert(b"k", 1, Freshness::new(SEC)).unwrap();
    assert_eq!(cache.get(b"k"), Some(1));
}

thread_local! {
    /// Whether `Fragile::clone` panics, in this thread.
    static CLONE_PANICS: Cell<bool> = const { Cell::new(false) };
}

/// A value whose `clone` panics while armed.
#[derive(Debug, PartialEq)]
struct Fragile(u32);

impl Clone for Fragile {
    fn clone(&self) -> Self {
        if CLONE_PANICS.get() {
            panic!("clone failed");
        }
        Fragile(self.0)
    }
}

/// Runs `f` with clones panicking; true if it panicked.
fn panics_while_cloning<T>(f: impl FnOnce() -> T) -> bool {
    CLONE_PANICS.set(true);
    let result = catch_unwind(AssertUnwindSafe(f));
    CLONE_PANICS.set(false);
    result.is_err()
}

/// Runs `scenario` on another thread and fails if it does not end within 20 seconds: a
/// deadlocked shard never returns.
fn within_20_seconds(scenario: impl FnOnce() + Send + 'static) {
    let (done, ended) = mpsc::channel();
    let runner = std::thread::spawn(move || {
        scenario();
        let _ = done.send(());
    });
    match ended.recv_timeout(Duration::from_secs(20)) {
        Ok(()) => runner.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(runner.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("deadlocked"),
    }
}

fn fragile_cache() -> (Cache<Fragile>, ManualClock) {
    let clock = ManualClock::new();
    let cache = Cache::builder().clock(clock.clone()).build();
    (cache, clock)
}

fn windows(ttl: u32, swr: u32, sie: u32) -> Freshness {
    Freshness::new(SEC * ttl)
        .with_swr(SEC * swr)
        .with_sie(SEC * sie)
}

#[test]
fn a_clone_panicking_in_a_fresh_hit_leaves_the_cache_working() {
    within_20_seconds(|| {
        let (cache, _) = fragile_cache();
        cache.insert(b"k", Fragile(1), windows(60, 0, 0)).unwrap();
        assert!(panics_while_cloning(|| cache.lookup(b"k")));
        assert!(panics_while_cloning(|| cache.get(b"k")));
        assert_eq!(cache.get(b"k"), Some(Fragile(1)));
    });
}

#[test]
fn a_clone_panicking_as_a_refresh_is_handed_out_loses_no_ticket() {
    within_20_seconds(|| {
        let (cache, clock) = fragile_cache();
        cache.insert(b"k", Fragile(1), windows(10, 60, 0)).unwrap();
        clock.advance(11 * SEC);
        assert!(panics_while_cloning(|| cache.lookup(b"k")));
        let Lookup::Stale(hit, Some(refresh)) = cache.lookup(b"k") else {
            panic!("the ticket is still to be had")
        };
        assert_eq!(hit.served(), Served::Stale);
        refresh.commit(Fragile(2), windows(10, 60, 0)).unwrap();
    });
}

#[test]
fn a_clone_panicking_as_a_fill_is_handed_out_loses_no_fill() {
    within_20_seconds(|| {
        let (cache, clock) = fragile_cache();
        cache.insert(b"k", Fragile(1), windows(10, 0, 0)).unwrap();
        clock.advance(11 * SEC);
        // The miss hands out the expired value with the fill, a clone.
        assert!(panics_while_cloning(|| cache.lookup(b"k")));
        let Lookup::Miss(fill) = cache.lookup(b"k") else {
            panic!("no fill left behind: this caller fills")
        };
        assert_eq!(fill.previous(), Some(&Fragile(1)));
    });
}

#[test]
fn a_clone_panicking_as_a_fill_fails_releases_its_waiters() {
    within_20_seconds(|| {
        let (cache, clock) = fragile_cache();
        cache.insert(b"k", Fragile(1), windows(10, 0, 600)).unwrap();
        clock.advance(11 * SEC);
        let Lookup::Miss(fill) = cache.lookup(b"k") else {
            panic!()
        };
        let Lookup::Wait(waiter) = cache.lookup(b"k") else {
            panic!()
        };
        assert!(panics_while_cloning(move || fill.fail()));
        match waiter.try_wait() {
            Ok(Resolved::Fill(fill)) => drop(fill),
            Ok(Resolved::Hit(_)) => {}
            _ => panic!("the waiter is released, not left to the lock timeout"),
        }
        assert!(!matches!(cache.lookup(b"k"), Lookup::Wait(_)));
    });
}

#[test]
fn a_clone_panicking_as_a_fill_commits_releases_its_waiters() {
    within_20_seconds(|| {
        let (cache, _) = fragile_cache();
        let Lookup::Miss(fill) = cache.lookup(b"k") else {
            panic!()
        };
        let Lookup::Wait(waiter) = cache.lookup(b"k") else {
            panic!()
        };
        assert!(panics_while_cloning(
            move || fill.commit(Fragile(1), windows(60, 0, 0))
        ));
        assert!(matches!(
            waiter.try_wait(),
            Ok(Resolved::Fill(_) | Resolved::Hit(_))
        ));
        let _ = cache.lookup(b"k");
    });
}
