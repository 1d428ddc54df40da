//! Every transition of the entry lifecycle, under a hand-driven clock.

use peakcache::{Cache, Freshness, Lookup, ManualClock, PurgeMode, Resolved, Served};
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn cache() -> (Cache<u32>, ManualClock) {
    let clock = ManualClock::new();
    let cache = Cache::builder()
        .clock(clock.clone())
        .lock_timeout(10 * SEC)
        .retry_backoff(2 * SEC, 16 * SEC)
        .refresh_retry(SEC)
        .build();
    (cache, clock)
}

fn windows(ttl: u64, swr: u64, sie: u64) -> Freshness {
    Freshness::new(SEC * ttl as u32)
        .with_swr(SEC * swr as u32)
        .with_sie(SEC * sie as u32)
}

#[track_caller]
fn expect_fresh(cache: &Cache<u32>, key: &[u8], want: u32) {
    match cache.lookup(key) {
        Lookup::Fresh(hit) => assert_eq!(*hit.value(), want),
        _ => panic!("expected a fresh hit"),
    }
}

#[test]
fn miss_then_commit_then_fresh() {
    let (cache, _) = cache();
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!("first lookup misses")
    };
    fill.commit(7, windows(10, 0, 0)).unwrap();
    expect_fresh(&cache, b"k", 7);
}

#[test]
fn a_second_caller_waits_for_the_fill_and_gets_its_value() {
    let (cache, _) = cache();
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!()
    };
    let Lookup::Wait(waiter) = cache.lookup(b"k") else {
        panic!("second lookup waits")
    };
    let waiter = waiter.try_wait().err().expect("nothing yet");
    fill.commit(1, windows(10, 0, 0)).unwrap();
    match waiter.try_wait() {
        Ok(Resolved::Hit(hit)) => assert_eq!(*hit.value(), 1),
        _ => panic!("waiter gets the committed value"),
    }
}

#[test]
fn stale_entry_hands_one_refresh_ticket() {
    let (cache, clock) = cache();
    cache.insert(b"k", 1, windows(10, 30, 0)).unwrap();
    clock.advance(11 * SEC);
    let Lookup::Stale(hit, Some(refresh)) = cache.lookup(b"k") else {
        panic!("first stale lookup refreshes")
    };
    assert_eq!(hit.served(), Served::Stale);
    let Lookup::Stale(_, None) = cache.lookup(b"k") else {
        panic!("others are served without a ticket")
    };
    refresh.commit(2, windows(10, 30, 0)).unwrap();
    expect_fresh(&cache, b"k", 2);
}

#[test]
fn a_dropped_refresh_is_handed_out_again_after_the_retry_delay() {
    let (cache, clock) = cache();
    cache.insert(b"k", 1, windows(10, 60, 0)).unwrap();
    clock.advance(11 * SEC);
    let Lookup::Stale(_, Some(refresh)) = cache.lookup(b"k") else {
        panic!()
    };
    drop(refresh);
    let Lookup::Stale(_, None) = cache.lookup(b"k") else {
        panic!("no ticket inside the retry delay")
    };
    clock.advance(SEC);
    let Lookup::Stale(_, Some(_)) = cache.lookup(b"k") else {
        panic!("a ticket after it")
    };
}

#[test]
fn failed_fill_hands_back_the_stale_if_error_entry_and_backs_off() {
    let (cache, clock) = cache();
    cache.insert(b"k", 1, windows(10, 0, 100)).unwrap();
    clock.advance(11 * SEC);
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!("past swr a fetch is needed")
    };
    let Lookup::Wait(waiter) = cache.lookup(b"k") else {
        panic!()
    };
    let stale = fill.fail().expect("stale-if-error entry");
    assert_eq!((*stale.value(), stale.served()), (1, Served::StaleIfError));
    match waiter.try_wait() {
        Ok(Resolved::Hit(hit)) => assert_eq!(*hit.value(), 1),
        _ => panic!("waiters get the stale entry too"),
    }
    // Backing off: served stale without a fetch.
    let Lookup::Stale(hit, None) = cache.lookup(b"k") else {
        panic!("no probe during back-off")
    };
    assert_eq!(hit.served(), Served::StaleIfError);
    clock.advance(2 * SEC);
    // After the back-off one caller probes, in the background: it is served stale too.
    let Lookup::Stale(hit, Some(probe)) = cache.lookup(b"k") else {
        panic!("one probe after the back-off")
    };
    assert_eq!(hit.served(), Served::StaleIfError);
    probe.fail();
    clock.advance(2 * SEC);
    let Lookup::Stale(_, None) = cache.lookup(b"k") else {
        panic!("the back-off doubled")
    };
    clock.advance(2 * SEC);
    let Lookup::Stale(_, Some(_)) = cache.lookup(b"k") else {
        panic!("the next probe")
    };
}

#[test]
fn uncacheable_releases_waiters_and_passes_through() {
    let (cache, clock) = cache();
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!()
    };
    let Lookup::Wait(waiter) = cache.lookup(b"k") else {
        panic!()
    };
    fill.uncacheable(30 * SEC);
    assert!(matches!(waiter.try_wait(), Ok(Resolved::Pass)));
    assert!(matches!(cache.lookup(b"k"), Lookup::Pass));
    clock.advance(30 * SEC);
    assert!(matches!(cache.lookup(b"k"), Lookup::Miss(_)));
}

#[test]
fn an_abandoned_fill_passes_to_a_waiter() {
    let (cache, _) = cache();
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!()
    };
    let Lookup::Wait(w1) = cache.lookup(b"k") else {
        panic!()
    };
    let Lookup::Wait(w2) = cache.lookup(b"k") else {
        panic!()
    };
    drop(fill);
    let Ok(Resolved::Fill(fill)) = w1.try_wait() else {
        panic!("first waiter takes over")
    };
    let w2 = w2
        .try_wait()
        .err()
        .expect("second keeps waiting on the new fill");
    fill.commit(5, windows(10, 0, 0)).unwrap();
    assert!(matches!(w2.try_wait(), Ok(Resolved::Hit(h)) if *h.value() == 5));
}

#[test]
fn an_overdue_fill_releases_its_waiters() {
    let (cache, clock) = cache();
    let Lookup::Miss(slow) = cache.lookup(b"k") else {
        panic!()
    };
    let Lookup::Wait(waiter) = cache.lookup(b"k") else {
        panic!()
    };
    clock.advance(10 * SEC);
    assert!(matches!(waiter.try_wait(), Ok(Resolved::TimedOut)));
    let Lookup::Miss(fresh) = cache.lookup(b"k") else {
        panic!("a new fill after the lock timeout")
    };
    fresh.commit(2, windows(10, 0, 0)).unwrap();
    slow.commit(1, windows(10, 0, 0)).unwrap();
    expect_fresh(&cache, b"k", 2);
    assert_eq!(cache.stats().wait_timeouts, 1);
}

#[test]
fn soft_purge_serves_stale_while_one_refreshes() {
    let (cache, _) = cache();
    cache
        .insert_tagged(b"a", 1, windows(100, 30, 0), &["post:1"])
        .unwrap();
    cache
        .insert_tagged(b"b", 2, windows(100, 30, 0), &["post:2"])
        .unwrap();
    cache.purge_tag("post:1", PurgeMode::Soft);
    let Lookup::Stale(_, Some(_)) = cache.lookup(b"a") else {
        panic!("soft-purged entry is stale")
    };
    expect_fresh(&cache, b"b", 2);
    cache.purge_tag("post:2", PurgeMode::Hard);
    assert!(matches!(cache.lookup(b"b"), Lookup::Miss(_)));
}

#[test]
fn freeze_serves_dead_entries_as_fresh() {
    let (cache, clock) = cache();
    cache.insert(b"k", 1, windows(1, 0, 0)).unwrap();
    clock.advance(100 * SEC);
    cache.freeze(true);
    expect_fresh(&cache, b"k", 1);
    cache.freeze(false);
    assert!(matches!(cache.lookup(b"k"), Lookup::Miss(_)));
}

#[test]
fn counters_add_up() {
    let (cache, _) = cache();
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!()
    };
    let Lookup::Wait(_w) = cache.lookup(b"k") else {
        panic!()
    };
    fill.commit(1, windows(10, 0, 0)).unwrap();
    let _ = cache.lookup(b"k");
    let _ = cache.get(b"k");
    let _ = cache.get(b"x");
    let s = cache.stats();
    assert_eq!((s.miss, s.wait, s.fresh, s.lookups()), (2, 1, 2, 5));
}

#[test]
fn a_refused_oversized_value_removes_the_outdated_one() {
    let clock = ManualClock::new();
    let cache: Cache<Vec<u8>> = Cache::builder()
        .clock(clock)
        .shards(1)
        .max_bytes(10_000)
        .max_object_weight(1_000)
        .weigher(|k, v: &Vec<u8>| (k.len() + v.len()) as u64)
        .build();
    cache.insert(b"k", vec![1; 10], windows(60, 0, 0)).unwrap();
    let err = cache
        .insert(b"k", vec![2; 5_000], windows(60, 0, 0))
        .unwrap_err();
    assert_eq!(
        err,
        peakcache::InsertError::TooLarge {
            weight: 5_001,
            limit: 1_000
        }
    );
    assert!(
        cache.get(b"k").is_none(),
        "the old value is not served as current"
    );
    cache.insert(b"k", vec![1; 10], windows(60, 0, 0)).unwrap();
    assert!(matches!(cache.lookup(b"k"), Lookup::Fresh(_)));
    cache.purge(b"k", PurgeMode::Soft);
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!("soft-purged without windows: a miss")
    };
    assert!(fill.commit(vec![3; 5_000], windows(60, 0, 0)).is_err());
    assert!(
        matches!(cache.lookup(b"k"), Lookup::Miss(_)),
        "the stale copy is gone too"
    );
}

#[test]
fn a_failing_origin_is_probed_in_the_background_and_nobody_waits_for_it() {
    let (cache, clock) = cache();
    cache.insert(b"k", 1, windows(10, 0, 1000)).unwrap();
    clock.advance(11 * SEC);
    let Lookup::Miss(first) = cache.lookup(b"k") else {
        panic!()
    };
    let Lookup::Wait(_) = cache.lookup(b"k") else {
        panic!("no failure known yet: wait for the fetch")
    };
    assert!(first.fail().is_some());
    clock.advance(2 * SEC);
    let Lookup::Stale(_, Some(probe)) = cache.lookup(b"k") else {
        panic!("after the back-off one caller probes, in the background")
    };
    let Lookup::Stale(hit, None) = cache.lookup(b"k") else {
        panic!("the others are not held behind the probe")
    };
    assert_eq!(hit.served(), Served::StaleIfError);
    probe.commit(2, windows(10, 0, 1000)).unwrap();
    expect_fresh(&cache, b"k", 2);
}

#[test]
fn a_fill_carries_the_expired_value_for_revalidation() {
    let (cache, clock) = cache();
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!()
    };
    assert!(fill.previous().is_none(), "nothing stored yet");
    fill.commit(1, windows(10, 5, 0)).unwrap();
    clock.advance(100 * SEC);
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!("past every window: a miss")
    };
    assert_eq!(
        fill.previous(),
        Some(&1),
        "but the old value can be revalidated"
    );
}

/// What `lookup` answered at each second of `run_lookups`, as one letter: F(resh), S(tale,
/// no ticket), R(efresh ticket), M(iss), W(ait), P(ass). Tickets are kept, never completed: the
/// origin hangs.
fn hanging_origin_answers(cache: &Cache<u32>, clock: &ManualClock, seconds: u32) -> String {
    let mut hanging = Vec::new();
    let mut answers = String::new();
    for _ in 0..seconds {
        answers.push(match cache.lookup(b"k") {
            Lookup::Fresh(_) => 'F',
            Lookup::Stale(_, None) => 'S',
            Lookup::Stale(_, Some(refresh)) => {
                hanging.push(Some(refresh));
                'R'
            }
            Lookup::Miss(fill) => {
                hanging.push(None);
                std::mem::forget(fill);
                'M'
            }
            Lookup::Wait(_) => 'W',
            Lookup::Pass => 'P',
        });
        clock.advance(SEC);
    }
    answers
}

/// The seconds at which a fetch (fill or refresh) was handed out.
fn fetch_times(answers: &str) -> Vec<usize> {
    answers
        .char_indices()
        .filter(|&(_, a)| a == 'R' || a == 'M')
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn a_hanging_origin_is_probed_once_per_back_off_not_once_per_lock_timeout() {
    // Lock timeout 10 s, back-off 2 s doubling to 16 s. A fetch that outlives the lock timeout
    // has failed: the key backs off, and the stale-if-error entry is served meanwhile.
    let (cache, clock) = cache();
    cache.insert(b"k", 1, windows(10, 0, 3600)).unwrap();
    clock.advance(11 * SEC);
    let answers = hanging_origin_answers(&cache, &clock, 120);
    assert_eq!(
        fetch_times(&answers),
        [0, 12, 26, 44, 70, 96],
        "each probe lock timeout + back-off after the last: {answers}"
    );
    assert!(
        !answers[10..].contains('W'),
        "nobody waits once the fill timed out: {answers}"
    );
}

#[test]
fn a_hanging_refresh_backs_off_like_a_failed_one() {
    let (cache, clock) = cache();
    cache.insert(b"k", 1, windows(10, 3600, 0)).unwrap();
    clock.advance(11 * SEC);
    let answers = hanging_origin_answers(&cache, &clock, 120);
    assert_eq!(fetch_times(&answers), [0, 12, 26, 44, 70, 96], "{answers}");
    assert!(
        !answers.contains('W') && !answers.contains('M'),
        "{answers}"
    );
}

#[test]
fn waiters_of_a_fill_past_the_lock_timeout_get_the_stale_if_error_entry() {
    let (cache, clock) = cache();
    cache.insert(b"k", 1, windows(10, 0, 3600)).unwrap();
    clock.advance(11 * SEC);
    let Lookup::Miss(_hanging) = cache.lookup(b"k") else {
        panic!()
    };
    let Lookup::Wait(waiter) = cache.lookup(b"k") else {
        panic!()
    };
    clock.advance(10 * SEC);
    match waiter.try_wait() {
        Ok(Resolved::Hit(hit)) => {
            assert_eq!((*hit.value(), hit.served()), (1, Served::StaleIfError))
        }
        _ => panic!("the stale-if-error entry, not a fetch of their own from a hanging origin"),
    }
}

#[test]
fn a_key_backing_off_keeps_its_failures_when_control_records_are_pruned() {
    let clock = ManualClock::new();
    let cache: Cache<u32> = Cache::builder()
        .clock(clock.clone())
        .shards(1)
        .retry_backoff(2 * SEC, 16 * SEC)
        .build();
    cache.insert(b"k", 1, windows(10, 0, 3600)).unwrap();
    clock.advance(11 * SEC);
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!()
    };
    assert!(fill.fail().is_some());
    clock.advance(2 * SEC);
    // Fills of many other keys: their records outgrow the table, which is pruned.
    let others: Vec<_> = (0..200u32)
        .map(|i| match cache.lookup(&i.to_be_bytes()) {
            Lookup::Miss(fill) => fill,
            _ => panic!("a new key misses"),
        })
        .collect();
    let Lookup::Stale(_, Some(probe)) = cache.lookup(b"k") else {
        panic!("the origin is known to fail: one background probe, not a fill everyone waits on")
    };
    let Lookup::Stale(_, None) = cache.lookup(b"k") else {
        panic!("the others are served stale")
    };
    probe.fail();
    clock.advance(2 * SEC);
    assert!(
        matches!(cache.lookup(b"k"), Lookup::Stale(_, None)),
        "the second failure in a row doubles the back-off to 4 s"
    );
    clock.advance(2 * SEC);
    assert!(matches!(cache.lookup(b"k"), Lookup::Stale(_, Some(_))));
    drop(others);
}

/// A cache of `entries` entries (every entry weighs 1) in one shard.
fn counted(entries: u64) -> (Cache<u32>, ManualClock) {
    let clock = ManualClock::new();
    let cache = Cache::builder()
        .clock(clock.clone())
        .shards(1)
        .max_bytes(entries)
        .max_object_weight(1)
        .weigher(|_, _| 1)
        .lock_timeout(10 * SEC)
        .build();
    (cache, clock)
}

/// A hundred new keys, each read twice after its insert: enough to evict every entry not read.
fn busy_traffic(cache: &Cache<u32>) {
    for i in 0..100u32 {
        let key = i.to_be_bytes();
        cache.insert(&key, i, windows(3600, 0, 0)).unwrap();
        assert!(cache.get(&key).is_some() && cache.get(&key).is_some());
    }
}

#[test]
fn the_stale_copy_is_not_evicted_while_its_key_is_fetched_again() {
    let (cache, clock) = counted(10);
    cache.insert(b"k", 1, windows(10, 0, 3600)).unwrap();
    clock.advance(11 * SEC);
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!()
    };
    let Lookup::Wait(waiter) = cache.lookup(b"k") else {
        panic!()
    };
    busy_traffic(&cache);
    let stale = fill
        .fail()
        .expect("the stale-if-error entry is still there");
    assert_eq!(*stale.value(), 1);
    assert!(matches!(waiter.try_wait(), Ok(Resolved::Hit(h)) if *h.value() == 1));
    assert!(cache.len() <= 10);
}

#[test]
fn the_stale_copy_is_not_evicted_while_it_is_refreshed() {
    let (cache, clock) = counted(10);
    cache.insert(b"k", 1, windows(10, 3600, 0)).unwrap();
    clock.advance(11 * SEC);
    let Lookup::Stale(_, Some(refresh)) = cache.lookup(b"k") else {
        panic!()
    };
    busy_traffic(&cache);
    assert!(matches!(cache.lookup(b"k"), Lookup::Stale(h, None) if *h.value() == 1));
    refresh.fail();
    assert!(matches!(cache.lookup(b"k"), Lookup::Stale(h, None) if *h.value() == 1));
}

#[test]
fn while_frozen_an_expired_entry_is_not_evicted_first() {
    let (cache, clock) = counted(10);
    cache.insert(b"k", 0, windows(1, 0, 0)).unwrap();
    for i in 1..10u32 {
        cache
            .insert(&i.to_be_bytes(), i, windows(3600, 0, 0))
            .unwrap();
    }
    clock.advance(100 * SEC);
    cache.freeze(true);
    // Served as fresh while frozen, read as often as any entry worth keeping.
    expect_fresh(&cache, b"k", 0);
    expect_fresh(&cache, b"k", 0);
    cache.insert(b"new", 10, windows(3600, 0, 0)).unwrap();
    expect_fresh(&cache, b"k", 0);
    assert_eq!(cache.stats().expirations, 0);
}

/// A step to run later, once.
type Hook = Box<dyn FnOnce() + Send>;

/// A clock that runs a hook the next time it is read: to put another caller's step at an exact
/// point of a lookup, without threads or sleeps.
#[derive(Clone, Default)]
struct HookClock {
    time: ManualClock,
    hook: std::sync::Arc<std::sync::Mutex<Option<Hook>>>,
}

impl peakcache::Clock for HookClock {
    fn now(&self) -> Duration {
        let hook = self.hook.lock().unwrap().take();
        if let Some(hook) = hook {
            hook();
        }
        self.time.now()
    }
}

#[test]
fn a_waiter_past_the_lock_timeout_gets_a_value_committed_as_it_looked() {
    let clock = HookClock::default();
    let cache: Cache<u32> = Cache::builder()
        .clock(clock.clone())
        .lock_timeout(10 * SEC)
        .build();
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!()
    };
    let Lookup::Wait(waiter) = cache.lookup(b"k") else {
        panic!()
    };
    clock.time.advance(10 * SEC);
    // The fill commits after the waiter found it pending, as it reads the clock.
    *clock.hook.lock().unwrap() = Some(Box::new(move || {
        fill.commit(7, windows(60, 0, 0)).unwrap();
    }));
    match waiter.try_wait() {
        Ok(Resolved::Hit(hit)) => assert_eq!(*hit.value(), 7),
        Ok(Resolved::TimedOut) => panic!("timed out although the value was there"),
        _ => panic!("the committed value"),
    }
    assert_eq!(cache.stats().wait_timeouts, 0);
}
