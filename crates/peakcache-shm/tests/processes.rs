//! The shared cache across real processes.
//!
//! Children are this test binary run again with `PEAKCACHE_SHM_ROLE` naming what to do (the
//! `child` test below is the entry point; without the variable it does nothing). Spawning a
//! fresh process is safer than `fork()` here: the test harness runs tests on several threads,
//! and a forked child of a multi-threaded process may only call async-signal-safe functions
//! (a lock held by another thread at the fork stays locked forever in the child). The one
//! thing that needs `fork` — sharing an anonymous mapping — is tested in `tests/fork.rs`, a
//! binary with a single test.
//!
//! Every child and every wait is bounded in time; a child that outlives its bound is killed
//! and the test fails.

use peakcache::{Freshness, PurgeMode};
use peakcache_shm::{Lookup, Opened, Resolved, ShmCache, ShmError};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

mod procs;

use procs::{finish, kill, read_until, spawn, TempRegion, HOUR};

fn builder() -> peakcache_shm::Builder {
    ShmCache::builder()
        .max_bytes(8 << 20)
        .shards(4)
        .lock_timeout(Duration::from_secs(20))
}

fn create(path: &Path) -> ShmCache {
    let (c, opened) = builder().open(path).expect("open region");
    assert_eq!(opened, Opened::Created);
    c
}

// ---- the children ---------------------------------------------------------------------------

#[test]
fn child() {
    let Some((role, path, arg)) = procs::role() else {
        return;
    };
    let cache = ShmCache::attach(&path).expect("attach");
    match role.as_str() {
        "hammer" => hammer(&cache, &arg),
        "fill-and-hang" => {
            let Lookup::Miss(fill) = cache.lookup(arg.as_bytes()) else {
                panic!("the child fills")
            };
            println!("filling");
            std::thread::sleep(Duration::from_secs(30));
            drop(fill);
        }
        "fill-and-exit" => {
            let Lookup::Miss(fill) = cache.lookup(arg.as_bytes()) else {
                panic!("the child fills")
            };
            println!("filling");
            // Leaves without completing (or dropping) the fill; the parent does not reap it
            // yet: a zombie owner.
            std::mem::forget(fill);
        }
        "refresh-and-hang" => {
            let Lookup::Stale(_, Some(refresh)) = cache.lookup(arg.as_bytes()) else {
                panic!("the child refreshes")
            };
            println!("refreshing");
            std::thread::sleep(Duration::from_secs(30));
            drop(refresh);
        }
        "park-in-lock" => cache.debug_with_shard_locked(arg.as_bytes(), true, || {
            println!("locked");
            std::thread::sleep(Duration::from_secs(30));
        }),
        "purge-tags" => {
            let n: u32 = arg.parse().unwrap();
            for i in (0..n).step_by(2) {
                cache.purge_tag(format!("tag-{i}"), PurgeMode::Hard);
            }
            cache.purge_tag("soft", PurgeMode::Soft);
            cache.freeze(true);
        }
        "read-loop" => {
            // Reads every key until told to stop; every value read must be the key's own.
            let n: u32 = arg.parse().unwrap();
            let until = Instant::now() + Duration::from_millis(300);
            let mut reads = 0u64;
            while Instant::now() < until {
                for i in 0..n {
                    let key = format!("key-{i}");
                    if let Some(v) = cache.get(key.as_bytes()) {
                        assert!(v.starts_with(key.as_bytes()), "a value of another key");
                        reads += 1;
                    }
                }
            }
            println!("reads {reads}");
        }
        "write-loop" => {
            let n: u32 = arg.parse().unwrap();
            let until = Instant::now() + Duration::from_millis(400);
            let mut round = 0u64;
            while Instant::now() < until {
                for i in 0..n {
                    let key = format!("key-{i}");
                    let value = format!("key-{i}:{}:{round}:", std::process::id()).repeat(8);
                    let _ = cache.insert(key.as_bytes(), value.as_bytes(), Freshness::new(HOUR));
                }
                round += 1;
            }
            println!("rounds {round}");
        }
        other => panic!("unknown role {other}"),
    }
    // Leave without running the other tests of this binary.
    std::process::exit(0);
}

/// Looks up keys `0..n` `rounds` times; a miss fetches (sleeps 20 ms) and commits; a wait
/// blocks (even children) or polls (odd children). Prints its counts.
fn hammer(cache: &ShmCache, arg: &str) {
    let mut it = arg.split(',');
    let n: u32 = it.next().unwrap().parse().unwrap();
    let poll = it.next() == Some("poll");
    let (mut fills, mut hits, mut waited) = (0, 0, 0);
    for _round in 0..3 {
        for i in 0..n {
            let key = format!("key-{i}");
            match cache.lookup(key.as_bytes()) {
                Lookup::Fresh(h) => {
                    assert!(h.value().starts_with(key.as_bytes()));
                    hits += 1;
                }
                Lookup::Miss(fill) => {
                    std::thread::sleep(Duration::from_millis(20));
                    fill.commit(
                        format!("{key}:{}", std::process::id()).as_bytes(),
                        Freshness::new(HOUR),
                    )
                    .unwrap();
                    fills += 1;
                }
                Lookup::Wait(w) => {
                    waited += 1;
                    let r = if poll {
                        let mut w = w;
                        let until = Instant::now() + Duration::from_secs(10);
                        loop {
                            match w.try_wait() {
                                Ok(r) => break r,
                                Err(again) => w = again,
                            }
                            assert!(Instant::now() < until, "polled too long");
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    } else {
                        w.wait(Duration::from_secs(10))
                    };
                    match r {
                        Resolved::Hit(h) => assert!(h.value().starts_with(key.as_bytes())),
                        _ => panic!("a waiter gets the filler's value"),
                    }
                }
                _ => panic!("no stale or pass expected"),
            }
        }
    }
    println!("counts {fills} {hits} {waited}");
}

// ---- the tests ------------------------------------------------------------------------------

#[test]
fn many_processes_fill_each_key_exactly_once() {
    let region = TempRegion::new("hammer");
    let cache = create(&region.0);
    let keys = 40;
    let mut children: Vec<Child> = (0..6)
        .map(|c| {
            let mode = if c % 2 == 0 { "block" } else { "poll" };
            spawn("hammer", &region.0, &format!("{keys},{mode}"))
        })
        .collect();
    let mut fills = 0;
    let mut waits = 0;
    for child in children.iter_mut() {
        let line = read_until(child, "counts", Duration::from_secs(20));
        let counts: Vec<u64> = line
            .split(' ')
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect();
        fills += counts[0];
        waits += counts[2];
    }
    for child in children {
        finish(child, Duration::from_secs(10));
    }
    let s = cache.stats();
    assert_eq!(
        fills, keys as u64,
        "exactly one fill per key, counted by the children"
    );
    assert_eq!(s.fills_committed, keys as u64, "and by the region");
    assert_eq!(s.miss, keys as u64);
    assert_eq!(s.wait, waits);
    assert_eq!(
        s.lookups(),
        6 * 3 * keys as u64,
        "every lookup counted once"
    );
    assert!(waits > 0, "the processes met on some keys");
}

#[test]
fn a_filler_killed_with_sigkill_is_taken_over_by_a_waiter_at_once() {
    let region = TempRegion::new("orphan");
    let cache = create(&region.0);
    let mut child = spawn("fill-and-hang", &region.0, "orphan");
    read_until(&mut child, "filling", Duration::from_secs(10));
    let Lookup::Wait(waiter) = cache.lookup(b"orphan") else {
        panic!("the child's fill makes us wait")
    };
    let waiter = waiter.try_wait().err().expect("the owner is alive");
    let started = Instant::now();
    kill(child);
    // The lock timeout is 20 s: the takeover comes from finding the owner dead.
    let Resolved::Fill(fill) = waiter.wait(Duration::from_secs(5)) else {
        panic!("the waiter takes the orphaned fill over")
    };
    assert!(started.elapsed() < Duration::from_secs(2));
    fill.commit(b"mine", Freshness::new(HOUR)).unwrap();
    assert!(matches!(cache.lookup(b"orphan"), Lookup::Fresh(h) if h.value() == &b"mine"[..]));
    assert_eq!(cache.region_info().takeovers, 1);
    assert_eq!(cache.stats().fills_abandoned, 1);
}

#[test]
fn a_lookup_after_the_filler_died_fills_instead_of_waiting() {
    let region = TempRegion::new("orphan2");
    let cache = create(&region.0);
    let mut child = spawn("fill-and-hang", &region.0, "k");
    read_until(&mut child, "filling", Duration::from_secs(10));
    kill(child);
    assert!(matches!(cache.lookup(b"k"), Lookup::Miss(_)));
}

#[test]
fn a_filler_that_exited_is_taken_over_before_its_parent_reaps_it() {
    let region = TempRegion::new("zombie");
    let cache = create(&region.0);
    let mut child = spawn("fill-and-exit", &region.0, "k");
    read_until(&mut child, "filling", Duration::from_secs(10));
    // Exited, not reaped: `kill(pid, 0)` still finds it, /proc says `Z`.
    let stat = format!("/proc/{}/stat", child.id());
    let until = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&stat)
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
    {
        assert!(Instant::now() < until, "the child did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!("a zombie's fill is taken over, not waited for")
    };
    fill.commit(b"v", Freshness::new(HOUR)).unwrap();
    assert_eq!(cache.region_info().takeovers, 1);
    child.wait().unwrap();
}

#[test]
fn a_refresher_killed_with_sigkill_frees_the_ticket_after_the_lock_timeout() {
    let region = TempRegion::new("refresh");
    let (cache, _) = ShmCache::builder()
        .max_bytes(1 << 20)
        .shards(1)
        .lock_timeout(Duration::from_millis(300))
        .open(&region.0)
        .unwrap();
    cache
        .insert(b"k", b"old", Freshness::new(Duration::ZERO).with_swr(HOUR))
        .unwrap();
    let mut child = spawn("refresh-and-hang", &region.0, "k");
    read_until(&mut child, "refreshing", Duration::from_secs(10));
    kill(child);
    assert!(
        matches!(cache.lookup(b"k"), Lookup::Stale(_, None)),
        "stale served meanwhile"
    );
    std::thread::sleep(Duration::from_millis(350));
    let Lookup::Stale(hit, Some(refresh)) = cache.lookup(b"k") else {
        panic!("a new ticket after the lock timeout")
    };
    assert_eq!(hit.value(), &b"old"[..]);
    refresh.commit(b"new", Freshness::new(HOUR)).unwrap();
    assert!(matches!(cache.lookup(b"k"), Lookup::Fresh(h) if h.value() == &b"new"[..]));
}

#[test]
fn a_process_killed_inside_a_shard_lock_is_recovered_from() {
    let region = TempRegion::new("parked");
    let (cache, _) = ShmCache::builder()
        .max_bytes(1 << 20)
        .shards(1)
        .open(&region.0)
        .unwrap();
    for i in 0..100u32 {
        cache
            .insert(
                format!("key-{i}").as_bytes(),
                &[i as u8; 100],
                Freshness::new(HOUR),
            )
            .unwrap();
    }
    let mut child = spawn("park-in-lock", &region.0, "key-0");
    read_until(&mut child, "locked", Duration::from_secs(10));
    kill(child);
    // The next locker gets EOWNERDEAD, checks the shard and rebuilds it: one entry, whose
    // slot the child scribbled over, is lost; the others are served.
    let mut found = 0;
    for i in 0..100u32 {
        if let Some(v) = cache.get(format!("key-{i}").as_bytes()) {
            assert_eq!(v, vec![i as u8; 100]);
            found += 1;
        }
    }
    assert!(
        found >= 99,
        "only the scribbled entry may be lost: {found} left"
    );
    let info = cache.region_info();
    assert_eq!(info.recoveries, 1);
    // The rebuilt shard works: fills, inserts and evictions all go on.
    for i in 0..2000u32 {
        cache
            .insert(
                format!("more-{i}").as_bytes(),
                &[1; 300],
                Freshness::new(HOUR),
            )
            .unwrap();
    }
    let s = cache.stats();
    assert!(s.weight <= s.capacity);
    assert!(cache.get(b"more-1999").is_some());
}

#[test]
fn purges_freeze_and_stats_are_global_across_processes() {
    let region = TempRegion::new("purge");
    let cache = create(&region.0);
    let n = 40u32;
    let ttl = Freshness::new(HOUR).with_swr(HOUR);
    for i in 0..n {
        cache
            .insert_tagged(
                format!("key-{i}").as_bytes(),
                format!("key-{i}").as_bytes(),
                ttl,
                &[format!("tag-{i}")],
            )
            .unwrap();
    }
    cache.insert_tagged(b"s", b"s", ttl, &["soft"]).unwrap();
    // A reader in another process reads all along while a third purges.
    let reader = spawn("read-loop", &region.0, &n.to_string());
    let purger = spawn("purge-tags", &region.0, &n.to_string());
    finish(purger, Duration::from_secs(10));
    finish(reader, Duration::from_secs(10));
    assert!(cache.is_frozen(), "frozen by the other process");
    cache.freeze(false);
    for i in 0..n {
        let l = cache.lookup(format!("key-{i}").as_bytes());
        if i % 2 == 0 {
            assert!(
                matches!(l, Lookup::Miss(_)),
                "key-{i} purged by the other process"
            );
        } else {
            assert!(matches!(l, Lookup::Fresh(_)), "key-{i} untouched");
        }
    }
    assert!(
        matches!(cache.lookup(b"s"), Lookup::Stale(_, Some(_))),
        "soft-purged elsewhere"
    );
    let s = cache.stats();
    assert_eq!(s.tag_purges, n as u64 / 2 + 1);
    assert!(
        s.fresh > n as u64,
        "the reader's hits are counted in the region"
    );
}

#[test]
fn a_snapshot_taken_under_load_restores_values_some_writer_wrote() {
    let region = TempRegion::new("snap");
    let snap = TempRegion::new("snapfile");
    let cache = create(&region.0);
    let writers: Vec<Child> = (0..2)
        .map(|_| spawn("write-loop", &region.0, "200"))
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    let written = cache.snapshot(&snap.0).unwrap();
    for w in writers {
        finish(w, Duration::from_secs(10));
    }
    assert!(written > 0);
    let fresh = ShmCache::builder().max_bytes(8 << 20).anonymous().unwrap();
    let report = fresh.restore(&snap.0).unwrap();
    assert_eq!(report.restored, written);
    assert_eq!(report.skipped, 0);
    let mut checked = 0;
    for i in 0..200 {
        let key = format!("key-{i}");
        if let Some(v) = fresh.get(key.as_bytes()) {
            // "key-i:pid:round:" repeated: one writer's whole value, never a mix.
            let v = String::from_utf8(v.to_vec()).unwrap();
            let unit = &v[..v.len() / 8];
            assert!(unit.starts_with(&format!("{key}:")), "{v}");
            assert_eq!(v, unit.repeat(8), "a torn value");
            checked += 1;
        }
    }
    assert_eq!(checked as u64, written);
}

#[test]
fn a_region_file_outlives_its_processes_and_is_attached_again() {
    let region = TempRegion::new("warm");
    {
        let cache = create(&region.0);
        cache.insert(b"k", b"warm", Freshness::new(HOUR)).unwrap();
    }
    // A restart: same configuration, the entries are kept.
    let (cache, opened) = builder().open(&region.0).unwrap();
    assert_eq!(opened, Opened::Attached);
    assert_eq!(cache.get(b"k").as_deref(), Some(&b"warm"[..]));
    drop(cache);
    // Another size: recreated, and the reason says why.
    let (cache, opened) = builder().max_bytes(4 << 20).open(&region.0).unwrap();
    let Opened::Recreated(why) = opened else {
        panic!("recreated")
    };
    assert!(why.contains("heap units"), "{why}");
    assert!(cache.get(b"k").is_none());
    // Refused instead when asked.
    let err = builder()
        .recreate_on_mismatch(false)
        .open(&region.0)
        .err()
        .unwrap();
    assert!(matches!(err, ShmError::ConfigMismatch(_)), "{err}");
}

/// Rewrites bytes of the file at `path`.
fn poke(path: &Path, at: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn corrupted_truncated_or_foreign_regions_are_refused() {
    let region = TempRegion::new("corrupt");
    drop(create(&region.0));
    let header = std::fs::read(&region.0).unwrap()[..4096].to_vec();
    let restore = || poke(&region.0, 0, &header);
    // A flipped byte of the geometry: the header checksum catches it.
    poke(&region.0, 25, &[0x7f]);
    let e = ShmCache::attach(&region.0).err().unwrap();
    assert!(matches!(e, ShmError::HeaderChecksum), "{e}");
    restore();
    // Another layout version.
    poke(&region.0, 8, &99u32.to_le_bytes());
    let e = ShmCache::attach(&region.0).err().unwrap();
    assert!(
        matches!(e, ShmError::VersionMismatch { found: 99, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("version 99"));
    restore();
    // Not a region at all.
    poke(&region.0, 0, b"GARBAGE!");
    assert!(matches!(
        ShmCache::attach(&region.0),
        Err(ShmError::BadMagic)
    ));
    restore();
    assert!(
        ShmCache::attach(&region.0).is_ok(),
        "the original header attaches again"
    );
    // Truncated: shorter than its header says, then shorter than a header.
    let len = std::fs::metadata(&region.0).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&region.0)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let e = ShmCache::attach(&region.0).err().unwrap();
    assert!(matches!(e, ShmError::Truncated { .. }), "{e}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&region.0)
        .unwrap()
        .set_len(100)
        .unwrap();
    assert!(matches!(
        ShmCache::attach(&region.0),
        Err(ShmError::Truncated { .. })
    ));
    // `open` replaces such a file and says why.
    let (_, opened) = builder().open(&region.0).unwrap();
    assert!(
        matches!(opened, Opened::Recreated(ref why) if why.contains("truncated")),
        "{opened:?}"
    );
}

#[test]
fn a_corrupted_snapshot_is_refused_or_its_bad_entries_skipped() {
    let snap = TempRegion::new("badsnap");
    let cache = ShmCache::builder().max_bytes(1 << 20).anonymous().unwrap();
    for i in 0..10u32 {
        cache
            .insert(&i.to_le_bytes(), &[i as u8; 50], Freshness::new(HOUR))
            .unwrap();
    }
    assert_eq!(cache.snapshot(&snap.0).unwrap(), 10);
    let good = std::fs::read(&snap.0).unwrap();
    // One flipped byte inside an entry: that entry is skipped, the rest restored.
    let mut bad = good.clone();
    bad[24 + 4 + 36 + 4 + 10] ^= 0xff;
    std::fs::write(&snap.0, &bad).unwrap();
    let target = ShmCache::builder().max_bytes(1 << 20).anonymous().unwrap();
    let r = target.restore(&snap.0).unwrap();
    assert_eq!((r.restored, r.skipped), (9, 1));
    // Truncated: no trailer, refused.
    std::fs::write(&snap.0, &good[..good.len() - 5]).unwrap();
    assert!(matches!(
        target.restore(&snap.0),
        Err(ShmError::Truncated { .. })
    ));
    std::fs::write(&snap.0, b"not a snapshot at all, not at all, no").unwrap();
    assert!(target.restore(&snap.0).is_err());
}
