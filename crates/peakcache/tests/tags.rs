//! Purge by tag with a bounded table of purge records: what a user of `purge_tag` relies on once
//! more distinct tags were purged than the table keeps, alone and under many threads.
//!
//! Time only moves by hand ([`ManualClock`]).

use peakcache::{Cache, Freshness, Lookup, ManualClock, PurgeMode};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

const HOUR: Duration = Duration::from_secs(3600);

fn cache(clock: &ManualClock, max_tag_marks: usize) -> Cache<u64> {
    Cache::builder()
        .clock(clock.clone())
        .max_tag_marks(max_tag_marks)
        .build()
}

/// Fresh for an hour, then served stale for another (so a soft purge serves it stale).
fn windows() -> Freshness {
    Freshness::new(HOUR).with_swr(HOUR)
}

fn key(k: usize) -> Vec<u8> {
    format!("/page/{k}").into_bytes()
}

fn tag(k: usize) -> String {
    format!("page:{k}")
}

#[test]
fn past_the_cap_every_purged_tag_still_purges_its_entries_and_the_stats_show_the_bound() {
    let clock = ManualClock::new();
    let cache = cache(&clock, 64);
    for k in 0..1000 {
        cache
            .insert_tagged(&key(k), k as u64, windows(), &[tag(k).as_str(), "site"])
            .unwrap();
    }
    for k in 0..1000 {
        cache.purge_tag(tag(k), PurgeMode::Hard);
    }
    for k in 0..1000 {
        assert!(
            matches!(cache.lookup(&key(k)), Lookup::Miss(_)),
            "entry {k} was purged"
        );
    }
    let stats = cache.stats();
    // 64 purges fill the table; the 65th folds 32 records, and so does every 32nd after it.
    assert_eq!(
        (stats.tag_purges, stats.tag_marks, stats.tag_folds),
        (1000, 40, 30)
    );
    let text = stats.to_prometheus("peakcache");
    assert!(text.contains("# TYPE peakcache_tag_marks gauge\npeakcache_tag_marks 40\n"));
    assert!(
        text.contains("# TYPE peakcache_tag_folds_total counter\npeakcache_tag_folds_total 30\n")
    );
}

#[test]
fn an_entry_fetched_after_the_folded_purges_is_untouched_by_the_fold() {
    let clock = ManualClock::new();
    let cache = cache(&clock, 4);
    for k in 0..4 {
        cache.purge_tag(tag(k), PurgeMode::Hard);
    }
    cache
        .insert_tagged(b"/new", 1, windows(), &["fresh"])
        .unwrap();
    // Full: this purge folds the four before it into the cache-wide record.
    cache.purge_tag(tag(4), PurgeMode::Hard);
    assert_eq!(cache.stats().tag_folds, 1);
    assert!(matches!(cache.lookup(b"/new"), Lookup::Fresh(_)));
}

#[test]
fn a_folded_soft_purge_serves_older_tagged_entries_stale_with_one_refresh() {
    let clock = ManualClock::new();
    let cache = cache(&clock, 1);
    cache
        .insert_tagged(b"/named", 1, windows(), &["a"])
        .unwrap();
    cache
        .insert_tagged(b"/other", 2, windows(), &["b"])
        .unwrap();
    cache.insert(b"/untagged", 3, windows()).unwrap();
    cache.purge_tag("a", PurgeMode::Soft);
    // Full: the soft purge of `a` is folded, and now matches every older tagged entry.
    cache.purge_tag("c", PurgeMode::Soft);
    for key in [&b"/named"[..], b"/other"] {
        assert!(matches!(cache.lookup(key), Lookup::Stale(_, Some(_))));
        assert!(matches!(cache.lookup(key), Lookup::Stale(_, None)));
    }
    assert!(matches!(cache.lookup(b"/untagged"), Lookup::Fresh(_)));
}

/// What the purger has published for one key: the newest generation whose purge (any mode, or
/// hard) has returned. Generation `g` of a key is the value `g`.
#[derive(Default)]
struct Published {
    purged: AtomicU64,
    hard_purged: AtomicU64,
}

const KEYS: usize = 32;
const READERS: usize = 3;
const ROUNDS: usize = 20_000;
/// Purges of distinct never-seen tags per round, so that the table folds again and again.
const DISTINCT_PER_ROUND: usize = 8;
const MAX_MARKS: usize = 64;
/// The upper half of the keys is looked up only once in this many sweeps, so that their purge
/// records are usually folded before a reader checks them.
const COLD_EVERY: u64 = 64;

/// Looks the keys up in sweeps until `stop`, checking that no generation is served after a
/// purge of it returned: not fresh after any purge, not at all after a hard one. Returns the
/// fresh hits seen.
fn check_reads(cache: &Cache<u64>, published: &[Published], stop: &AtomicBool) -> u64 {
    let mut fresh = 0;
    for sweep in 0u64.. {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let keys = if sweep % COLD_EVERY == 0 {
            KEYS
        } else {
            KEYS / 2
        };
        for (k, p) in published.iter().enumerate().take(keys) {
            // Read before the lookup: these purges returned before it started.
            let purged = p.purged.load(Ordering::Acquire);
            let hard_purged = p.hard_purged.load(Ordering::Acquire);
            match cache.lookup(&key(k)) {
                Lookup::Fresh(hit) => {
                    let v = *hit.value();
                    assert!(
                        v > purged,
                        "key {k}: generation {v} served fresh after its purge"
                    );
                    fresh += 1;
                }
                Lookup::Stale(hit, _) => {
                    let v = *hit.value();
                    assert!(
                        v > hard_purged,
                        "key {k}: generation {v} served after a hard purge"
                    );
                }
                Lookup::Miss(_) | Lookup::Wait(_) | Lookup::Pass => {}
            }
            if let Some(v) = cache.get(&key(k)) {
                assert!(
                    v > purged,
                    "key {k}: generation {v} got fresh after its purge"
                );
            }
        }
    }
    fresh
}

// Each key is stored, purged half a cycle later (hard or soft) and stored again half a cycle
// after that, while distinct tags are purged between (so its purge record is usually folded
// before the key is stored again) and readers look the keys up.
#[test]
fn no_purged_entry_is_served_after_its_purge_returned_while_the_table_folds() {
    let clock = ManualClock::new();
    let cache = cache(&clock, MAX_MARKS);
    let published: Arc<Vec<Published>> =
        Arc::new((0..KEYS).map(|_| Published::default()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let mut generation = [1u64; KEYS];
    let store = |k: usize, generation: u64| {
        cache
            .insert_tagged(&key(k), generation, windows(), &[tag(k).as_str(), "site"])
            .unwrap()
    };
    for k in 0..KEYS {
        store(k, 1);
    }
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (cache, published, stop) = (cache.clone(), published.clone(), stop.clone());
            thread::spawn(move || check_reads(&cache, &published, &stop))
        })
        .collect();
    for round in 0..ROUNDS {
        let k = round % KEYS;
        generation[k] += 1;
        store(k, generation[k]);
        let old = (k + KEYS / 2) % KEYS;
        let mode = if round % 3 == 0 {
            PurgeMode::Soft
        } else {
            PurgeMode::Hard
        };
        cache.purge_tag(tag(old), mode);
        let p = &published[old];
        p.purged.store(generation[old], Ordering::Release);
        if mode == PurgeMode::Hard {
            p.hard_purged.store(generation[old], Ordering::Release);
        }
        for j in 0..DISTINCT_PER_ROUND {
            let mode = if j % 2 == 0 {
                PurgeMode::Hard
            } else {
                PurgeMode::Soft
            };
            cache.purge_tag(format!("distinct:{round}:{j}"), mode);
        }
    }
    stop.store(true, Ordering::Release);
    let fresh: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(fresh > 0, "the readers saw fresh hits between purges");

    let stats = cache.stats();
    let purges = (ROUNDS * (1 + DISTINCT_PER_ROUND)) as u64;
    assert_eq!(stats.tag_purges, purges);
    assert!(
        stats.tag_marks <= MAX_MARKS as u64,
        "{} marks",
        stats.tag_marks
    );
    assert!(
        stats.tag_folds >= purges / MAX_MARKS as u64,
        "{} folds",
        stats.tag_folds
    );
    // Entries stored after every purge are untouched by all of them, folded or not.
    for k in 0..KEYS {
        store(k, u64::MAX);
        assert!(matches!(cache.lookup(&key(k)), Lookup::Fresh(hit) if *hit.value() == u64::MAX));
    }
}
