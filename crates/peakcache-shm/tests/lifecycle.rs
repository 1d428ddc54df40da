//! Every transition of the entry lifecycle under a hand-driven clock, written once and run
//! against both backends: `inproc::*` on `peakcache::Cache<Bytes>`, `shm::*` on `ShmCache`.

mod common;

use common::{Backend, HookClock, InProc, Options, Shm, L, R, SEC};
use peakcache::{Freshness, ManualClock, PurgeMode, Served};
use std::time::Duration;

fn cache<B: Backend>() -> (B, ManualClock) {
    let clock = ManualClock::new();
    (B::build(clock.clone(), Options::default()), clock)
}

fn windows(ttl: u32, swr: u32, sie: u32) -> Freshness {
    Freshness::new(SEC * ttl)
        .with_swr(SEC * swr)
        .with_sie(SEC * sie)
}

#[track_caller]
fn expect_fresh<B: Backend>(c: &B, key: &[u8], want: &[u8]) {
    match c.lookup(key) {
        L::Fresh(v) => assert_eq!(v, want),
        other => panic!("expected a fresh hit, got {}", other.name()),
    }
}

#[track_caller]
fn miss<B: Backend>(c: &B, key: &[u8]) -> Box<dyn common::Ticket> {
    match c.lookup(key) {
        L::Miss(f) => f,
        other => panic!("expected a miss, got {}", other.name()),
    }
}

#[track_caller]
fn wait<B: Backend>(c: &B, key: &[u8]) -> Box<dyn common::W> {
    match c.lookup(key) {
        L::Wait(w) => w,
        other => panic!("expected a wait, got {}", other.name()),
    }
}

fn miss_then_commit_then_fresh<B: Backend>() {
    let (c, _) = cache::<B>();
    miss(&c, b"k").commit(b"7", windows(10, 0, 0), &[]);
    expect_fresh(&c, b"k", b"7");
}

fn a_second_caller_waits_and_gets_the_value_by_polling<B: Backend>() {
    let (c, _) = cache::<B>();
    let fill = miss(&c, b"k");
    let w = wait(&c, b"k");
    let w = w.try_wait().err().expect("nothing yet");
    assert!(fill.commit(b"1", windows(10, 0, 0), &[]));
    match w.try_wait() {
        Ok(R::Hit(v)) => assert_eq!(v, b"1"),
        Ok(r) => panic!("got {}", r.name()),
        Err(_) => panic!("still pending"),
    }
}

fn a_blocked_waiter_is_woken_by_the_commit<B: Backend + Send + Sync + 'static>() {
    let (c, _) = cache::<B>();
    let c = std::sync::Arc::new(c);
    let fill = miss(&*c, b"k");
    let c2 = c.clone();
    let t = std::thread::spawn(
        move || match wait(&*c2, b"k").wait(Duration::from_secs(5)) {
            R::Hit(v) => v,
            r => panic!("got {}", r.name()),
        },
    );
    std::thread::sleep(Duration::from_millis(30));
    let started = std::time::Instant::now();
    assert!(fill.commit(b"v", windows(10, 0, 0), &[]));
    assert_eq!(t.join().unwrap(), b"v");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "woken, not timed out"
    );
}

fn a_blocked_wait_ends_at_its_own_timeout<B: Backend>() {
    let (c, _) = cache::<B>();
    let _fill = miss(&c, b"k");
    let started = std::time::Instant::now();
    assert!(matches!(
        wait(&c, b"k").wait(Duration::from_millis(60)),
        R::TimedOut
    ));
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!(c.stats().wait_timeouts, 1);
}

fn stale_entry_hands_one_refresh_ticket<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"1", windows(10, 30, 0), &[]);
    clock.advance(11 * SEC);
    let L::Stale(v, served, Some(refresh)) = c.lookup(b"k") else {
        panic!("first stale lookup refreshes")
    };
    assert_eq!((v.as_slice(), served), (&b"1"[..], Served::Stale));
    assert!(matches!(c.lookup(b"k"), L::Stale(_, Served::Stale, None)));
    assert!(refresh.commit(b"2", windows(10, 30, 0), &[]));
    expect_fresh(&c, b"k", b"2");
}

fn a_dropped_refresh_is_handed_out_again_after_the_retry_delay<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"1", windows(10, 60, 0), &[]);
    clock.advance(11 * SEC);
    let L::Stale(_, _, Some(refresh)) = c.lookup(b"k") else {
        panic!()
    };
    drop(refresh);
    assert!(
        matches!(c.lookup(b"k"), L::Stale(_, _, None)),
        "no ticket inside the retry delay"
    );
    clock.advance(SEC);
    assert!(
        matches!(c.lookup(b"k"), L::Stale(_, _, Some(_))),
        "a ticket after it"
    );
}

fn a_failed_refresh_backs_off<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"1", windows(10, 60, 0), &[]);
    clock.advance(11 * SEC);
    let L::Stale(_, _, Some(refresh)) = c.lookup(b"k") else {
        panic!()
    };
    refresh.fail();
    assert!(matches!(c.lookup(b"k"), L::Stale(_, _, None)));
    clock.advance(2 * SEC);
    assert!(matches!(c.lookup(b"k"), L::Stale(_, _, Some(_))));
    assert_eq!(c.stats().refreshes_failed, 1);
}

fn failed_fill_hands_back_the_stale_if_error_entry_and_backs_off<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"1", windows(10, 0, 100), &[]);
    clock.advance(11 * SEC);
    let fill = miss(&c, b"k");
    let w = wait(&c, b"k");
    let (v, served) = fill.fail().expect("stale-if-error entry");
    assert_eq!((v.as_slice(), served), (&b"1"[..], Served::StaleIfError));
    assert!(
        matches!(w.try_wait(), Ok(R::Hit(v)) if v == b"1"),
        "waiters get it too"
    );
    assert!(
        matches!(c.lookup(b"k"), L::Stale(_, Served::StaleIfError, None)),
        "no probe in back-off"
    );
    clock.advance(2 * SEC);
    // One probe after the back-off, in the background: its caller is served stale too.
    let L::Stale(_, Served::StaleIfError, Some(probe)) = c.lookup(b"k") else {
        panic!("one background probe after the back-off")
    };
    let _ = probe.fail();
    clock.advance(2 * SEC);
    assert!(
        matches!(c.lookup(b"k"), L::Stale(_, _, None)),
        "the back-off doubled"
    );
    clock.advance(2 * SEC);
    assert!(
        matches!(c.lookup(b"k"), L::Stale(_, _, Some(_))),
        "the next probe"
    );
}

fn a_failed_fill_without_stale_entry_fails_its_waiters<B: Backend>() {
    let (c, _) = cache::<B>();
    let fill = miss(&c, b"k");
    let w = wait(&c, b"k");
    assert!(fill.fail().is_none());
    assert!(matches!(w.try_wait(), Ok(R::Failed)));
}

fn uncacheable_releases_waiters_and_passes_through<B: Backend>() {
    let (c, clock) = cache::<B>();
    let fill = miss(&c, b"k");
    let w = wait(&c, b"k");
    fill.uncacheable(30 * SEC);
    assert!(matches!(w.try_wait(), Ok(R::Pass)));
    assert!(matches!(c.lookup(b"k"), L::Pass));
    clock.advance(30 * SEC);
    let _ = miss(&c, b"k");
}

fn an_uncacheable_refresh_removes_the_entry<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"1", windows(10, 60, 0), &[]);
    clock.advance(11 * SEC);
    let L::Stale(_, _, Some(refresh)) = c.lookup(b"k") else {
        panic!()
    };
    refresh.uncacheable(5 * SEC);
    assert!(matches!(c.lookup(b"k"), L::Pass));
    assert!(c.get(b"k").is_none());
}

fn an_abandoned_fill_passes_to_a_waiter<B: Backend>() {
    let (c, _) = cache::<B>();
    let fill = miss(&c, b"k");
    let w1 = wait(&c, b"k");
    let w2 = wait(&c, b"k");
    drop(fill);
    let Ok(R::Fill(fill)) = w1.try_wait() else {
        panic!("first waiter takes over")
    };
    let w2 = w2
        .try_wait()
        .err()
        .expect("the second waits on the new fill");
    assert!(fill.commit(b"5", windows(10, 0, 0), &[]));
    assert!(matches!(w2.try_wait(), Ok(R::Hit(v)) if v == b"5"));
    assert_eq!(c.stats().fills_abandoned, 1);
}

fn an_overdue_fill_releases_its_waiters<B: Backend>() {
    let (c, clock) = cache::<B>();
    let slow = miss(&c, b"k");
    let w = wait(&c, b"k");
    clock.advance(10 * SEC);
    assert!(matches!(w.try_wait(), Ok(R::TimedOut)));
    let fresh = miss(&c, b"k");
    assert!(fresh.commit(b"2", windows(10, 0, 0), &[]));
    assert!(slow.commit(b"1", windows(10, 0, 0), &[]));
    expect_fresh(&c, b"k", b"2");
    assert_eq!(c.stats().wait_timeouts, 1);
}

fn an_overdue_fill_is_replaced_at_the_next_lookup<B: Backend>() {
    let (c, clock) = cache::<B>();
    let _slow = miss(&c, b"k");
    clock.advance(10 * SEC);
    let _ = miss(&c, b"k");
}

fn soft_purge_by_tag_serves_stale_while_one_refreshes<B: Backend>() {
    let (c, _) = cache::<B>();
    c.insert(b"a", b"1", windows(100, 30, 0), &["post:1"]);
    c.insert(b"b", b"2", windows(100, 30, 0), &["post:2"]);
    c.purge_tag("post:1", PurgeMode::Soft);
    assert!(
        matches!(c.lookup(b"a"), L::Stale(_, _, Some(_))),
        "soft-purged entry is stale"
    );
    expect_fresh(&c, b"b", b"2");
    c.purge_tag("post:2", PurgeMode::Hard);
    let _ = miss(&c, b"b");
    assert_eq!(c.stats().tag_purges, 2);
}

fn a_tag_purge_spares_entries_fetched_after_it<B: Backend>() {
    let (c, _) = cache::<B>();
    c.insert(b"a", b"1", windows(100, 0, 0), &["t"]);
    c.purge_tag("t", PurgeMode::Hard);
    c.insert(b"a", b"2", windows(100, 0, 0), &["t"]);
    expect_fresh(&c, b"a", b"2");
}

fn a_fill_in_flight_during_a_tag_purge_stores_its_value_purged<B: Backend>() {
    let (c, _) = cache::<B>();
    let fill = miss(&c, b"a");
    c.purge_tag("t", PurgeMode::Hard);
    assert!(fill.commit(b"old", windows(100, 0, 0), &["t"]));
    let _ = miss(&c, b"a");
}

fn hard_and_soft_purge_by_key<B: Backend>() {
    let (c, _) = cache::<B>();
    c.insert(b"a", b"1", windows(100, 30, 0), &[]);
    c.insert(b"b", b"2", windows(100, 30, 0), &[]);
    assert!(c.purge(b"a", PurgeMode::Hard));
    assert!(!c.purge(b"a", PurgeMode::Hard), "nothing left to purge");
    let _ = miss(&c, b"a");
    assert!(c.purge(b"b", PurgeMode::Soft));
    assert!(matches!(c.lookup(b"b"), L::Stale(v, Served::Stale, Some(_)) if v == b"2"));
    assert_eq!(c.stats().purges, 2);
}

fn a_purge_during_a_fill_stores_the_value_stale<B: Backend>() {
    let (c, _) = cache::<B>();
    let fill = miss(&c, b"k");
    assert!(c.purge(b"k", PurgeMode::Soft));
    assert!(fill.commit(b"v", windows(100, 30, 0), &[]));
    assert!(matches!(c.lookup(b"k"), L::Stale(v, _, Some(_)) if v == b"v"));
}

fn freeze_serves_dead_entries_as_fresh<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"1", windows(1, 0, 0), &[]);
    clock.advance(100 * SEC);
    c.freeze(true);
    expect_fresh(&c, b"k", b"1");
    assert_eq!(c.get(b"k").as_deref(), Some(&b"1"[..]));
    c.freeze(false);
    let _ = miss(&c, b"k");
}

fn clear_removes_everything<B: Backend>() {
    let (c, _) = cache::<B>();
    for i in 0..50u32 {
        c.insert(&i.to_le_bytes(), b"v", windows(100, 0, 0), &[]);
    }
    assert_eq!(c.stats().entries, 50);
    c.clear();
    assert_eq!(c.stats().entries, 0);
    for i in 0..50u32 {
        assert!(c.get(&i.to_le_bytes()).is_none());
    }
}

fn get_serves_only_fresh_values<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"1", windows(10, 60, 0), &[]);
    assert_eq!(c.get(b"k").as_deref(), Some(&b"1"[..]));
    clock.advance(11 * SEC);
    assert!(c.get(b"k").is_none(), "stale is not served by get");
}

fn counters_add_up<B: Backend>() {
    let (c, _) = cache::<B>();
    let fill = miss(&c, b"k");
    let _w = wait(&c, b"k");
    assert!(fill.commit(b"1", windows(10, 0, 0), &[]));
    let _ = c.lookup(b"k");
    let _ = c.get(b"k");
    let _ = c.get(b"x");
    let s = c.stats();
    assert_eq!((s.miss, s.wait, s.fresh, s.lookups()), (2, 1, 2, 5));
    assert_eq!((s.fills_committed, s.entries), (1, 1));
}

fn while_one_caller_probes_a_failing_origin_the_others_get_the_stale_entry<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"1", windows(10, 0, 1000), &[]);
    clock.advance(11 * SEC);
    let first = miss(&c, b"k");
    let _ = wait(&c, b"k");
    assert!(first.fail().is_some());
    clock.advance(2 * SEC);
    let L::Stale(_, Served::StaleIfError, Some(probe)) = c.lookup(b"k") else {
        panic!("after the back-off one caller probes, in the background")
    };
    assert!(matches!(
        c.lookup(b"k"),
        L::Stale(_, Served::StaleIfError, None)
    ));
    assert!(probe.commit(b"2", windows(10, 0, 1000), &[]));
    expect_fresh(&c, b"k", b"2");
}

fn a_value_handed_out_survives_replacement_and_eviction<B: Backend>() {
    let (c, _) = cache::<B>();
    c.insert(b"k", &[1u8; 1000], windows(100, 0, 0), &[]);
    let L::Fresh(held) = c.lookup(b"k") else {
        panic!()
    };
    c.insert(b"k", &[2u8; 1000], windows(100, 0, 0), &[]);
    // Enough inserts to cycle the whole capacity.
    for i in 0..10_000u32 {
        c.insert(&i.to_le_bytes(), &[3u8; 1000], windows(100, 0, 0), &[]);
    }
    assert_eq!(held, vec![1u8; 1000]);
}

fn the_capacity_holds_under_many_inserts<B: Backend>() {
    let (c, _) = cache::<B>();
    for i in 0..20_000u32 {
        c.insert(&i.to_le_bytes(), &[7u8; 500], windows(100, 0, 0), &[]);
    }
    let s = c.stats();
    assert!(s.weight <= s.capacity, "{} > {}", s.weight, s.capacity);
    assert!(s.evictions > 0);
    assert!(
        s.entries > 1000,
        "most of the capacity is used: {} entries",
        s.entries
    );
    // The most recent inserts are there.
    assert!(c.get(&19_999u32.to_le_bytes()).is_some());
}

fn a_dead_entry_is_a_miss<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"1", windows(1, 1, 1), &[]);
    clock.advance(3 * SEC);
    let _ = miss(&c, b"k");
}

fn a_miss_of_an_expired_but_stored_entry_hands_its_value_to_the_filler<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"v1", windows(1, 0, 0), &[]);
    clock.advance(2 * SEC);
    let fill = miss(&c, b"k");
    assert_eq!(fill.previous().as_deref(), Some(&b"v1"[..]));
    // A 304: the old body committed again with new freshness.
    assert!(fill.commit(b"v1", windows(1, 0, 0), &[]));
    expect_fresh(&c, b"k", b"v1");
    clock.advance(2 * SEC);
    c.insert(b"other", b"x", windows(1, 0, 0), &[]);
    assert_eq!(miss(&c, b"k").previous().as_deref(), Some(&b"v1"[..]));
}

fn a_miss_inside_stale_if_error_before_any_failure_hands_the_previous_value<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"v1", windows(1, 0, 100), &[]);
    clock.advance(2 * SEC);
    assert_eq!(miss(&c, b"k").previous().as_deref(), Some(&b"v1"[..]));
}

fn no_previous_value_for_a_new_key_after_a_hard_purge_or_an_uncacheable_answer<B: Backend>() {
    let (c, clock) = cache::<B>();
    assert_eq!(miss(&c, b"new").previous(), None);
    c.insert(b"k", b"v1", windows(1, 0, 0), &[]);
    c.purge(b"k", PurgeMode::Hard);
    assert_eq!(miss(&c, b"k").previous(), None);
    c.insert(b"k", b"v1", windows(1, 0, 0), &[]);
    clock.advance(2 * SEC);
    miss(&c, b"k").uncacheable(SEC);
    clock.advance(2 * SEC);
    assert_eq!(miss(&c, b"k").previous(), None);
}

fn a_soft_purged_entry_without_stale_windows_is_revalidated<B: Backend>() {
    let (c, _) = cache::<B>();
    c.insert(b"k", b"v1", windows(100, 0, 0), &[]);
    assert!(c.purge(b"k", PurgeMode::Soft));
    assert_eq!(miss(&c, b"k").previous().as_deref(), Some(&b"v1"[..]));
}

fn a_waiter_taking_over_an_abandoned_fill_gets_the_previous_value<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"v1", windows(1, 0, 0), &[]);
    clock.advance(2 * SEC);
    let fill = miss(&c, b"k");
    let w = wait(&c, b"k");
    drop(fill);
    let Ok(R::Fill(fill)) = w.try_wait() else {
        panic!("the waiter takes over")
    };
    assert_eq!(fill.previous().as_deref(), Some(&b"v1"[..]));
}

/// The answers (`L::name`) to a lookup of `k` once a second for `seconds` seconds. Tickets are
/// held, never completed, until the end: the origin hangs.
fn answers_from_a_hanging_origin<B: Backend>(
    c: &B,
    clock: &ManualClock,
    seconds: u32,
) -> Vec<&'static str> {
    let mut held = Vec::new();
    (0..seconds)
        .map(|_| {
            let answer = c.lookup(b"k");
            let name = answer.name();
            if let L::Miss(t) | L::Stale(_, _, Some(t)) = answer {
                held.push(t);
            }
            clock.advance(SEC);
            name
        })
        .collect()
}

/// The seconds at which a fetch (a fill or a refresh) was handed out.
fn fetches(answers: &[&str]) -> Vec<usize> {
    (0..answers.len())
        .filter(|&second| matches!(answers[second], "Miss" | "Stale+ticket"))
        .collect()
}

fn a_hanging_origin_is_probed_once_per_back_off_not_once_per_lock_timeout<B: Backend>() {
    // Lock timeout 10 s, back-off 2 s doubling to 16 s. A fetch that outlives the lock timeout
    // has failed: the key backs off, and the stale-if-error entry is served meanwhile.
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"1", windows(10, 0, 3600), &[]);
    clock.advance(11 * SEC);
    let answers = answers_from_a_hanging_origin(&c, &clock, 120);
    assert_eq!(
        fetches(&answers),
        [0, 12, 26, 44, 70, 96],
        "each probe a lock timeout and a back-off after the last: {answers:?}"
    );
    assert!(
        !answers[10..].contains(&"Wait"),
        "nobody waits once the fill timed out: {answers:?}"
    );
}

fn a_hanging_refresh_backs_off_like_a_failed_one<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"1", windows(10, 3600, 0), &[]);
    clock.advance(11 * SEC);
    let answers = answers_from_a_hanging_origin(&c, &clock, 120);
    assert_eq!(fetches(&answers), [0, 12, 26, 44, 70, 96], "{answers:?}");
    assert!(
        answers.iter().all(|a| a.starts_with("Stale")),
        "served stale throughout, never a wait or a fill: {answers:?}"
    );
}

fn waiters_of_a_fill_past_the_lock_timeout_get_the_stale_if_error_entry<B: Backend>() {
    let (c, clock) = cache::<B>();
    c.insert(b"k", b"1", windows(10, 0, 3600), &[]);
    clock.advance(11 * SEC);
    let _hanging = miss(&c, b"k");
    let w = wait(&c, b"k");
    clock.advance(10 * SEC);
    match w.try_wait() {
        Ok(R::Hit(v)) => assert_eq!(v, b"1"),
        Ok(r) => panic!(
            "the stale-if-error entry, not a fetch of their own from a hanging origin: {}",
            r.name()
        ),
        Err(_) => panic!("still waiting past the lock timeout"),
    }
    assert!(
        matches!(c.lookup(b"k"), L::Stale(_, Served::StaleIfError, None)),
        "the key backs off: served stale, no new fetch"
    );
    assert_eq!(
        c.stats().wait_timeouts,
        0,
        "nobody was left without a value"
    );
}

fn a_key_backing_off_keeps_its_failures_when_control_records_are_pruned<B: Backend>() {
    let clock = ManualClock::new();
    let o = Options {
        shards: Some(1),
        ..Options::default()
    };
    let c = B::build(clock.clone(), o);
    c.insert(b"k", b"1", windows(10, 0, 3600), &[]);
    clock.advance(11 * SEC);
    assert!(miss(&c, b"k").fail().is_some());
    clock.advance(2 * SEC);
    // Fills of many other keys: their records outgrow the table, which is pruned.
    let others: Vec<_> = (0..200u32).map(|i| miss(&c, &i.to_be_bytes())).collect();
    let L::Stale(_, _, Some(probe)) = c.lookup(b"k") else {
        panic!("the origin is known to fail: one background probe, not a fill everyone waits on")
    };
    assert!(
        matches!(c.lookup(b"k"), L::Stale(_, _, None)),
        "the others are served stale"
    );
    assert!(probe.fail().is_none());
    clock.advance(2 * SEC);
    assert!(
        matches!(c.lookup(b"k"), L::Stale(_, _, None)),
        "the second failure in a row doubles the back-off to 4 s"
    );
    clock.advance(2 * SEC);
    assert!(matches!(c.lookup(b"k"), L::Stale(_, _, Some(_))));
    drop(others);
}

/// A small cache (`Options::small`) and its clock.
fn small<B: Backend>() -> (B, ManualClock) {
    let clock = ManualClock::new();
    (B::build(clock.clone(), Options::small()), clock)
}

/// A thousand new keys, each read twice after its insert: enough to evict every entry of a
/// small cache that is not read.
fn busy_traffic<B: Backend>(c: &B) {
    for i in 0..1_000u32 {
        let key = i.to_be_bytes();
        c.insert(&key, b"v", windows(3600, 0, 0), &[]);
        let _ = (c.get(&key), c.get(&key));
    }
    assert!(c.stats().evictions > 500, "the cache went round");
}

fn the_stale_copy_is_not_evicted_while_its_key_is_fetched_again<B: Backend>() {
    let (c, clock) = small::<B>();
    c.insert(b"k", b"1", windows(10, 0, 3600), &[]);
    clock.advance(11 * SEC);
    let fill = miss(&c, b"k");
    let w = wait(&c, b"k");
    busy_traffic(&c);
    let (v, _) = fill
        .fail()
        .expect("the stale-if-error entry is still there");
    assert_eq!(v, b"1");
    assert!(matches!(w.try_wait(), Ok(R::Hit(v)) if v == b"1"));
}

fn the_stale_copy_is_not_evicted_while_it_is_refreshed<B: Backend>() {
    let (c, clock) = small::<B>();
    c.insert(b"k", b"1", windows(10, 3600, 0), &[]);
    clock.advance(11 * SEC);
    let L::Stale(_, _, Some(refresh)) = c.lookup(b"k") else {
        panic!("a refresh ticket")
    };
    busy_traffic(&c);
    assert!(matches!(c.lookup(b"k"), L::Stale(v, _, None) if v == b"1"));
    refresh.fail();
    assert!(matches!(c.lookup(b"k"), L::Stale(v, _, None) if v == b"1"));
}

/// Inserts new keys with `value`, never read, until the cache evicts one.
fn fill_until_an_eviction<B: Backend>(c: &B, value: &[u8]) {
    for i in 0..100_000u32 {
        c.insert(&i.to_be_bytes(), value, windows(3600, 0, 0), &[]);
        if c.stats().evictions > 0 {
            return;
        }
    }
    panic!("no eviction");
}

fn while_frozen_an_expired_entry_is_not_evicted_first<B: Backend>() {
    let (c, clock) = small::<B>();
    c.insert(b"k", b"0", windows(1, 0, 0), &[]);
    clock.advance(100 * SEC);
    c.freeze(true);
    // Served as fresh while frozen, read as often as any entry worth keeping.
    expect_fresh(&c, b"k", b"0");
    expect_fresh(&c, b"k", b"0");
    // New entries of 300 bytes (the capacity in bytes binds, in both backends), never read:
    // the first to go is one of them, not the entry read twice.
    fill_until_an_eviction(&c, &[7; 300]);
    expect_fresh(&c, b"k", b"0");
    assert_eq!(c.stats().expirations, 0);
}

fn an_entry_read_twice_is_not_the_first_to_go_when_small_entries_fill_the_cache<B: Backend>() {
    // Values of a byte: the shared cache's index fills before its heap does.
    let (c, _) = small::<B>();
    c.insert(b"k", b"0", windows(3600, 0, 0), &[]);
    expect_fresh(&c, b"k", b"0");
    expect_fresh(&c, b"k", b"0");
    fill_until_an_eviction(&c, b"v");
    expect_fresh(&c, b"k", b"0");
}

fn a_waiter_past_the_lock_timeout_gets_a_value_committed_as_it_looked<B: Backend>() {
    let clock = HookClock::default();
    let c = B::build(clock.clone(), Options::default());
    let fill = miss(&c, b"k");
    let w = wait(&c, b"k");
    clock.time.advance(10 * SEC);
    // The fill commits after the waiter found it pending, as it reads the clock.
    clock.at_next_reading(move || assert!(fill.commit(b"7", windows(60, 0, 0), &[])));
    match w.try_wait() {
        Ok(R::Hit(v)) => assert_eq!(v, b"7"),
        Ok(R::TimedOut) => panic!("timed out although the value was there"),
        Ok(r) => panic!("the committed value, not {}", r.name()),
        Err(_) => panic!("still waiting past the lock timeout"),
    }
    assert_eq!(c.stats().wait_timeouts, 0);
}

/// Windows of `Duration::MAX`: kept as the cap, `Freshness::MAX`.
const FOREVER: Freshness = Freshness {
    ttl: Duration::MAX,
    swr: Duration::MAX,
    sie: Duration::MAX,
};

fn the_largest_windows_are_kept_as_the_cap<B: Backend>() {
    let (c, clock) = cache::<B>();
    assert!(c.insert(b"k", b"1", FOREVER, &[]));
    expect_fresh(&c, b"k", b"1");
    clock.advance(Freshness::MAX - SEC);
    expect_fresh(&c, b"k", b"1");
    clock.advance(SEC);
    let L::Stale(_, Served::Stale, Some(refresh)) = c.lookup(b"k") else {
        panic!("stale at the cap, with both windows still ahead")
    };
    assert!(refresh.commit(b"2", FOREVER, &[]));
    expect_fresh(&c, b"k", b"2");
}

fn the_manual_clock_stops_at_the_end_of_time<B: Backend>() {
    let (c, clock) = cache::<B>();
    clock.advance(SEC);
    clock.advance(Duration::MAX);
    assert!(c.insert(b"k", b"1", FOREVER, &[]));
    let _ = c.lookup(b"k");
    assert!(miss(&c, b"new").commit(b"1", FOREVER, &[]));
    let _ = c.lookup(b"new");
}

fn the_longest_lock_timeout_back_off_and_holds<B: Backend>() {
    let clock = ManualClock::new();
    let c = B::build(
        clock.clone(),
        Options {
            lock_timeout: Duration::MAX,
            retry_min: Duration::MAX,
            retry_max: Duration::MAX,
            refresh_retry: Duration::MAX,
            ..Options::default()
        },
    );
    // A fill that never ends holds its waiters until their own timeout.
    let fill = miss(&c, b"a");
    let w = wait(&c, b"a");
    clock.advance(Freshness::MAX);
    let w = w.try_wait().err().expect("still waiting");
    assert!(matches!(w.wait(Duration::from_millis(1)), R::TimedOut));
    // A pass-through hold of Duration::MAX lasts.
    fill.uncacheable(Duration::MAX);
    clock.advance(Freshness::MAX);
    assert!(matches!(c.lookup(b"a"), L::Pass));
    // A failure backs off for good: the stale entry is served, no probe.
    c.insert(b"b", b"1", Freshness::new(SEC).with_sie(Duration::MAX), &[]);
    clock.advance(2 * SEC);
    assert!(miss(&c, b"b").fail().is_some());
    clock.advance(Freshness::MAX / 2);
    assert!(matches!(c.lookup(b"b"), L::Stale(_, _, None)));
    // A dropped refresh blocks the next one for good.
    c.insert(b"c", b"1", Freshness::new(SEC).with_swr(Duration::MAX), &[]);
    clock.advance(2 * SEC);
    let L::Stale(_, _, Some(refresh)) = c.lookup(b"c") else {
        panic!("a refresh ticket")
    };
    drop(refresh);
    clock.advance(Freshness::MAX / 2);
    assert!(matches!(c.lookup(b"c"), L::Stale(_, _, None)));
}

macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod inproc {
            $( #[test] fn $name() { super::$name::<super::InProc>() } )*
        }
        mod shm {
            $( #[test] fn $name() { super::$name::<super::Shm>() } )*
        }
    };
}

both!(
    miss_then_commit_then_fresh,
    a_second_caller_waits_and_gets_the_value_by_polling,
    a_blocked_waiter_is_woken_by_the_commit,
    a_blocked_wait_ends_at_its_own_timeout,
    stale_entry_hands_one_refresh_ticket,
    a_dropped_refresh_is_handed_out_again_after_the_retry_delay,
    a_failed_refresh_backs_off,
    failed_fill_hands_back_the_stale_if_error_entry_and_backs_off,
    a_failed_fill_without_stale_entry_fails_its_waiters,
    uncacheable_releases_waiters_and_passes_through,
    an_uncacheable_refresh_removes_the_entry,
    an_abandoned_fill_passes_to_a_waiter,
    an_overdue_fill_releases_its_waiters,
    an_overdue_fill_is_replaced_at_the_next_lookup,
    soft_purge_by_tag_serves_stale_while_one_refreshes,
    a_tag_purge_spares_entries_fetched_after_it,
    a_fill_in_flight_during_a_tag_purge_stores_its_value_purged,
    hard_and_soft_purge_by_key,
    a_purge_during_a_fill_stores_the_value_stale,
    freeze_serves_dead_entries_as_fresh,
    clear_removes_everything,
    get_serves_only_fresh_values,
    counters_add_up,
    while_one_caller_probes_a_failing_origin_the_others_get_the_stale_entry,
    a_value_handed_out_survives_replacement_and_eviction,
    the_capacity_holds_under_many_inserts,
    a_dead_entry_is_a_miss,
    a_miss_of_an_expired_but_stored_entry_hands_its_value_to_the_filler,
    a_miss_inside_stale_if_error_before_any_failure_hands_the_previous_value,
    no_previous_value_for_a_new_key_after_a_hard_purge_or_an_uncacheable_answer,
    a_soft_purged_entry_without_stale_windows_is_revalidated,
    a_waiter_taking_over_an_abandoned_fill_gets_the_previous_value,
    a_hanging_origin_is_probed_once_per_back_off_not_once_per_lock_timeout,
    a_hanging_refresh_backs_off_like_a_failed_one,
    waiters_of_a_fill_past_the_lock_timeout_get_the_stale_if_error_entry,
    a_key_backing_off_keeps_its_failures_when_control_records_are_pruned,
    the_stale_copy_is_not_evicted_while_its_key_is_fetched_again,
    the_stale_copy_is_not_evicted_while_it_is_refreshed,
    while_frozen_an_expired_entry_is_not_evicted_first,
    an_entry_read_twice_is_not_the_first_to_go_when_small_entries_fill_the_cache,
    a_waiter_past_the_lock_timeout_gets_a_value_committed_as_it_looked,
    the_largest_windows_are_kept_as_the_cap,
    the_manual_clock_stops_at_the_end_of_time,
    the_longest_lock_timeout_back_off_and_holds,
);

// ---- the shared backend only -------------------------------------------------------------

fn shm_cache(clock: &ManualClock) -> peakcache_shm::ShmCache {
    peakcache_shm::ShmCache::builder()
        .clock(clock.clone())
        .max_bytes(1 << 20)
        .anonymous()
        .unwrap()
}

#[test]
fn shm_the_previous_value_is_a_copy_with_its_flags_and_store_time() {
    let clock = ManualClock::new();
    let c = shm_cache(&clock);
    c.insert_full(b"k", b"v1", 7, windows(1, 0, 0), &[] as &[&[u8]])
        .unwrap();
    let stored_at = c.now();
    clock.advance(2 * SEC);
    let peakcache_shm::Lookup::Miss(fill) = c.lookup(b"k") else {
        panic!("a miss")
    };
    let prev = fill.previous().expect("the expired value").clone();
    // Replaced meanwhile (by an insert): the copy the filler holds does not change.
    c.insert(b"k", b"v2", windows(10, 0, 0)).unwrap();
    assert_eq!((&prev.value()[..], prev.flags()), (&b"v1"[..], 7));
    assert_eq!(prev.stored_at(), stored_at);
    drop(fill);
}

#[test]
fn shm_a_commit_without_room_releases_its_waiters_at_once() {
    let clock = ManualClock::new();
    // One shard of 8 slots, 7 usable: seven fills in flight take them all, so a value can
    // find no room (control records in flight are never evicted).
    let c = peakcache_shm::ShmCache::builder()
        .clock(clock.clone())
        .max_bytes(64 << 10)
        .shards(1)
        .max_entries(7)
        .anonymous()
        .unwrap();
    let fills: Vec<_> = (0..7u8)
        .map(|i| match c.lookup(&[i]) {
            peakcache_shm::Lookup::Miss(f) => f,
            _ => panic!("a miss"),
        })
        .collect();
    let waiters: Vec<_> = (0..3)
        .map(|_| match c.lookup(&[0]) {
            peakcache_shm::Lookup::Wait(w) => w,
            _ => panic!("a wait"),
        })
        .collect();
    let mut fills = fills.into_iter();
    let first = fills.next().unwrap();
    assert_eq!(
        first.commit(b"v", windows(10, 0, 0)),
        Err(peakcache_shm::StoreError::NoRoom)
    );
    // Every waiter fetches for itself now, none becomes the next filler (one after another).
    for w in waiters {
        assert!(matches!(w.try_wait(), Ok(peakcache_shm::Resolved::Pass)));
    }
}

#[test]
fn shm_a_too_large_commit_releases_its_waiters_with_pass() {
    let clock = ManualClock::new();
    let c = peakcache_shm::ShmCache::builder()
        .clock(clock.clone())
        .max_bytes(1 << 20)
        .max_object_bytes(1024)
        .anonymous()
        .unwrap();
    let peakcache_shm::Lookup::Miss(fill) = c.lookup(b"big") else {
        panic!("a miss")
    };
    let peakcache_shm::Lookup::Wait(w) = c.lookup(b"big") else {
        panic!("a wait")
    };
    let e = fill.commit(&[0u8; 4096], windows(10, 0, 0));
    assert!(
        matches!(e, Err(peakcache_shm::StoreError::TooLarge { .. })),
        "{e:?}"
    );
    // The region tidies the key's slot only after the waiters could read why.
    assert!(matches!(w.try_wait(), Ok(peakcache_shm::Resolved::Pass)));
    assert!(matches!(c.lookup(b"big"), peakcache_shm::Lookup::Miss(_)));
}
