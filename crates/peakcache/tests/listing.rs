//! Listing the servable entries and restoring them as old as they were: what a snapshot of the
//! cache and a rollback to it rely on.
//!
//! Time only moves by hand ([`ManualClock`]).

use peakcache::{Cache, Freshness, Listed, Lookup, ManualClock, PurgeMode, Resolved, Served};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

const SEC: Duration = Duration::from_secs(1);

fn cache_at(clock: &ManualClock) -> Cache<u64> {
    Cache::builder().clock(clock.clone()).shards(8).build()
}

/// Restores every entry of `from` into `to`, with `extra` added to its age (the time between
/// the snapshot and the restore).
fn copy(from: &Cache<u64>, to: &Cache<u64>, extra: Duration) -> usize {
    let listed: Vec<Listed<u64>> = from.list().collect();
    for e in &listed {
        let tags: Vec<&[u8]> = e.tags().iter().collect();
        to.restore(e.key(), *e.value(), e.freshness(), e.age() + extra, &tags)
            .unwrap();
    }
    listed.len()
}

fn windows() -> Freshness {
    Freshness::new(60 * SEC)
        .with_swr(30 * SEC)
        .with_sie(300 * SEC)
}

#[test]
fn a_restored_entry_is_as_old_as_it_was_and_keeps_its_windows() {
    let clock = ManualClock::new();
    let old = cache_at(&clock);
    old.insert(b"/a", 1, windows()).unwrap();
    clock.advance(20 * SEC);
    let listed: Vec<_> = old.list().collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].age(), 20 * SEC);
    assert_eq!(listed[0].freshness(), windows());

    // Restored 5 s after the snapshot into a cache whose clock reads 1,000 s.
    let later = ManualClock::new();
    later.advance(1000 * SEC);
    let new = cache_at(&later);
    assert_eq!(copy(&old, &new, 5 * SEC), 1);
    let Lookup::Fresh(hit) = new.lookup(b"/a") else {
        panic!("fresh: 25 s of 60")
    };
    assert_eq!(hit.stored_at(), 975 * SEC);
    assert_eq!(hit.age(new.now()), 25 * SEC);
    later.advance(35 * SEC);
    assert!(
        matches!(new.lookup(b"/a"), Lookup::Stale(h, Some(_)) if h.served() == Served::Stale),
        "60 s old: stale-while-revalidate"
    );
    later.advance(30 * SEC);
    let Lookup::Miss(fill) = new.lookup(b"/a") else {
        panic!("past swr: fetched again")
    };
    assert_eq!(
        fill.fail().map(|h| h.served()),
        Some(Served::StaleIfError),
        "inside stale-if-error"
    );
}

#[test]
fn a_restore_into_a_cache_younger_than_the_entry_keeps_its_instants() {
    let clock = ManualClock::new();
    let old = cache_at(&clock);
    old.insert(b"/fresh", 1, windows()).unwrap();
    clock.advance(40 * SEC);
    old.insert(b"/young", 2, windows()).unwrap();
    clock.advance(30 * SEC);
    // A cache just started (its clock at zero): /fresh is 70 s old, stale for 10 s already.
    let now = ManualClock::new();
    let new = cache_at(&now);
    copy(&old, &new, Duration::ZERO);
    assert!(matches!(new.lookup(b"/young"), Lookup::Fresh(_)));
    let Lookup::Stale(hit, Some(_)) = new.lookup(b"/fresh") else {
        panic!("stale since 10 s")
    };
    assert_eq!(hit.served(), Served::Stale);
    now.advance(19 * SEC);
    assert!(matches!(new.lookup(b"/fresh"), Lookup::Stale(..)));
    now.advance(2 * SEC);
    assert!(
        matches!(new.lookup(b"/fresh"), Lookup::Miss(_)),
        "swr ended 30 s after it went stale"
    );
    now.advance(9 * SEC);
    assert!(
        matches!(new.lookup(b"/young"), Lookup::Stale(..)),
        "60 s old"
    );
}

#[test]
fn restored_entries_keep_their_tags_and_a_soft_purge_they_underwent() {
    let clock = ManualClock::new();
    let old = cache_at(&clock);
    let ttl = Freshness::new(600 * SEC).with_swr(60 * SEC);
    old.insert_tagged(b"/post/1", 1, ttl, &["post:1", "home"])
        .unwrap();
    old.insert_tagged(b"/post/2", 2, ttl, &["post:2"]).unwrap();
    old.insert(b"/untagged", 3, ttl).unwrap();
    clock.advance(10 * SEC);
    old.purge_tag("post:2", PurgeMode::Soft);
    clock.advance(10 * SEC);
    let listed: Vec<_> = old.list().collect();
    let soft = listed.iter().find(|e| e.key() == b"/post/2").unwrap();
    assert_eq!(soft.freshness().ttl, 10 * SEC, "stale since the purge");
    let tagged = listed.iter().find(|e| e.key() == b"/post/1").unwrap();
    let names: Vec<&[u8]> = tagged.tags().iter().collect();
    assert_eq!(names, [&b"post:1"[..], b"home"]);
    assert!(listed
        .iter()
        .find(|e| e.key() == b"/untagged")
        .unwrap()
        .tags()
        .is_empty());

    let new = cache_at(&ManualClock::new());
    assert_eq!(copy(&old, &new, Duration::ZERO), 3);
    assert!(matches!(new.lookup(b"/post/2"), Lookup::Stale(..)));
    assert!(matches!(new.lookup(b"/post/1"), Lookup::Fresh(_)));
    new.purge_tag("home", PurgeMode::Hard);
    assert!(
        matches!(new.lookup(b"/post/1"), Lookup::Miss(_)),
        "the restored entry answers to its tag's name"
    );
    assert!(matches!(new.lookup(b"/untagged"), Lookup::Fresh(_)));
}

#[test]
fn every_age_of_a_listing_counts_from_when_it_began_however_long_it_takes() {
    let clock = ManualClock::new();
    let cache = cache_at(&clock);
    for k in 0..64u32 {
        cache.insert(&k.to_be_bytes(), 0, windows()).unwrap();
    }
    clock.advance(5 * SEC);
    let mut listing = cache.list();
    let first = listing.next().unwrap();
    // The other shards are copied after the clock moved on (a slow disk, say).
    clock.advance(20 * SEC);
    let rest: Vec<_> = listing.collect();
    assert_eq!(rest.len(), 63, "every shard listed");
    for e in std::iter::once(&first).chain(&rest) {
        assert_eq!(e.age(), 5 * SEC);
    }
}

#[test]
fn only_what_a_lookup_would_serve_is_listed_and_while_frozen_everything_stored() {
    let clock = ManualClock::new();
    let cache = cache_at(&clock);
    cache
        .insert(b"/short", 1, Freshness::new(10 * SEC))
        .unwrap();
    cache.insert(b"/long", 2, windows()).unwrap();
    cache
        .insert_tagged(b"/gone", 3, windows(), &["gone"])
        .unwrap();
    cache.insert(b"/purged", 4, windows()).unwrap();
    cache.purge_tag("gone", PurgeMode::Hard);
    cache.purge(b"/purged", PurgeMode::Hard);
    clock.advance(11 * SEC);
    let keys =
        |c: &Cache<u64>| -> HashSet<Vec<u8>> { c.list().map(|e| e.key().to_vec()).collect() };
    assert_eq!(keys(&cache), HashSet::from([b"/long".to_vec()]));
    cache.freeze(true);
    assert_eq!(
        keys(&cache),
        HashSet::from([b"/long".to_vec(), b"/short".to_vec()]),
        "frozen, an expired entry is served: listed"
    );
}

#[test]
fn a_fetch_racing_a_restore_hands_its_value_to_its_waiters_but_does_not_replace_it() {
    let clock = ManualClock::new();
    let cache = cache_at(&clock);
    let Lookup::Miss(fill) = cache.lookup(b"/a") else {
        panic!("empty")
    };
    let Lookup::Wait(waiter) = cache.lookup(b"/a") else {
        panic!("one fill")
    };
    cache
        .restore(b"/a", 1, windows(), 5 * SEC, &[] as &[&str])
        .unwrap();
    fill.commit(2, windows()).unwrap();
    assert!(matches!(waiter.wait(SEC), Resolved::Hit(h) if *h.value() == 2));
    assert!(
        matches!(cache.lookup(b"/a"), Lookup::Fresh(h) if *h.value() == 1),
        "the restored entry stays"
    );

    // A refresh that finds the answer uncacheable does not remove it either.
    clock.advance(60 * SEC);
    let Lookup::Stale(_, Some(refresh)) = cache.lookup(b"/a") else {
        panic!("stale")
    };
    cache
        .restore(b"/a", 3, windows(), Duration::ZERO, &[] as &[&str])
        .unwrap();
    refresh.uncacheable(SEC);
    assert!(matches!(cache.lookup(b"/a"), Lookup::Fresh(h) if *h.value() == 3));

    // A plain insert is overwritten by the fetch in flight, as before.
    clock.advance(120 * SEC);
    let Lookup::Miss(fill) = cache.lookup(b"/a") else {
        panic!("past its windows")
    };
    cache.insert(b"/a", 4, windows()).unwrap();
    fill.commit(5, windows()).unwrap();
    assert!(matches!(cache.lookup(b"/a"), Lookup::Fresh(h) if *h.value() == 5));
}

/// A key's number and the version stored under it, as one value, so that a listed entry shows
/// whether its value is one that was stored under its key.
fn value_of(key: u64, version: u64) -> u64 {
    key << 32 | version
}

#[test]
fn listing_while_writers_store_replace_and_purge_neither_deadlocks_nor_lists_anything_never_stored()
{
    const KEYS: u64 = 2_000;
    const WRITERS: u64 = 3;
    let cache: Cache<u64> = Cache::builder().max_bytes(64 << 20).shards(4).build();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (cache, stop) = (cache.clone(), stop.clone());
            thread::spawn(move || {
                let mut version = 0;
                while !stop.load(Ordering::Relaxed) {
                    version += 1;
                    for k in (w..KEYS).step_by(WRITERS as usize) {
                        let key = format!("/k/{k}");
                        let tag = format!("t{}", k % 10);
                        match (k + version) % 7 {
                            0 => {
                                cache.purge(key.as_bytes(), PurgeMode::Hard);
                            }
                            1 => cache.purge_tag(&tag, PurgeMode::Soft),
                            _ => cache
                                .insert_tagged(
                                    key.as_bytes(),
                                    value_of(k, version),
                                    windows(),
                                    &[tag],
                                )
                                .unwrap(),
                        }
                    }
                }
                version
            })
        })
        .collect();
    let lister = {
        let cache = cache.clone();
        thread::spawn(move || {
            let mut listed = 0;
            for _ in 0..50 {
                let mut seen = HashSet::new();
                for e in cache.list() {
                    let key = std::str::from_utf8(e.key()).unwrap();
                    let k: u64 = key.strip_prefix("/k/").unwrap().parse().unwrap();
                    assert_eq!(*e.value() >> 32, k, "{key}'s value was stored under {key}");
                    let tags: Vec<&[u8]> = e.tags().iter().collect();
                    assert_eq!(tags, [format!("t{}", k % 10).as_bytes()]);
                    assert!(seen.insert(k), "{key} listed once");
                    listed += 1;
                }
            }
            listed
        })
    };
    let (done, finished) = mpsc::channel();
    thread::spawn(move || done.send(lister.join()));
    let listed = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("the listing finished: no deadlock")
        .expect("no assertion failed");
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        assert!(w.join().unwrap() > 0);
    }
    assert!(listed > 0, "entries were listed while written");
}
