//! The purge journal: what every process attached to a region purges, recorded in order for
//! one follower (the cluster agent), with what it cannot read reported as lost.
//!
//! Children are this test binary run again with `PEAKCACHE_SHM_ROLE` set (see `procs`).

use bytes::Bytes;
use peakcache_shm::{
    Freshness, JournalCursor, JournalEvent, JournalOp, JournalRecord, Lookup, LostReason,
    PurgeMode, PurgeOrigin, ShmCache,
};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

mod procs;

use procs::{finish, kill, read_until, spawn, TempRegion};

const MIN: Duration = Duration::from_secs(60);

fn builder() -> peakcache_shm::Builder {
    ShmCache::builder()
        .max_bytes(8 << 20)
        .shards(4)
        .lock_timeout(Duration::from_secs(20))
}

fn open(path: &Path, journal: u64) -> ShmCache {
    builder()
        .journal_bytes(journal)
        .open(path)
        .expect("open region")
        .0
}

fn records(events: &[JournalEvent]) -> Vec<&JournalRecord> {
    events
        .iter()
        .filter_map(|e| match e {
            JournalEvent::Record(r) => Some(r),
            JournalEvent::Lost { .. } => None,
        })
        .collect()
}

fn lost(events: &[JournalEvent]) -> Vec<(u64, LostReason)> {
    events
        .iter()
        .filter_map(|e| match e {
            JournalEvent::Lost { purges, why } => Some((*purges, *why)),
            JournalEvent::Record(_) => None,
        })
        .collect()
}

fn tag(t: &str) -> JournalOp {
    JournalOp::Tag(Bytes::copy_from_slice(t.as_bytes()))
}

/// Bytes of the region file at `at`, overwritten.
fn poke(path: &Path, at: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
}

/// Where `needle` first occurs in the region file.
fn find_in_file(path: &Path, needle: &[u8]) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the bytes are in the file") as u64
}

// ---- the children ---------------------------------------------------------------------------

#[test]
fn child() {
    let Some((role, path, arg)) = procs::role() else {
        return;
    };
    let cache = ShmCache::attach(&path).expect("attach");
    match role.as_str() {
        // Purges tags `ARG-0` .. `ARG-499`, one soft in two.
        "purge-tags" => {
            for i in 0..500 {
                let mode = if i % 2 == 0 {
                    PurgeMode::Hard
                } else {
                    PurgeMode::Soft
                };
                cache.purge_tag(format!("{arg}-{i}"), mode);
            }
        }
        "follow-and-hold" => {
            let _me = cache.follow().expect("the claim");
            println!("following");
            std::thread::sleep(MIN);
        }
        "journal-locked" => {
            cache.debug_with_journal_locked(arg == "scribble", || {
                println!("locked");
                std::thread::sleep(MIN);
            });
        }
        other => panic!("unknown role {other}"),
    }
}

// ---- the tests ------------------------------------------------------------------------------

#[test]
fn every_purge_is_recorded_in_order_with_what_it_purged_and_where_it_came_from() {
    let region = TempRegion::new("journal-kinds");
    let cache = open(&region.0, 64 << 10);
    let mut cursor = JournalCursor::default();
    cache.purge(b"GET https://shop/", PurgeMode::Hard);
    cache.purge_tag("post:1", PurgeMode::Soft);
    cache.clear();
    cache.purge_everything(PurgeMode::Soft);
    cache.freeze(true);
    cache.freeze(false);
    let from_bus = cache.with_origin(PurgeOrigin::Cluster);
    from_bus.purge_tag("post:2", PurgeMode::Hard);
    let events = cache.read_journal(&mut cursor, 100);
    assert!(lost(&events).is_empty(), "{events:?}");
    let got: Vec<(u64, JournalOp, PurgeMode, PurgeOrigin)> = records(&events)
        .into_iter()
        .map(|r| (r.seq, r.op.clone(), r.mode, r.origin))
        .collect();
    let local = PurgeOrigin::Local;
    assert_eq!(
        got,
        [
            (
                0,
                JournalOp::Key(Bytes::from_static(b"GET https://shop/")),
                PurgeMode::Hard,
                local
            ),
            (1, tag("post:1"), PurgeMode::Soft, local),
            (2, JournalOp::Everything, PurgeMode::Hard, local),
            (3, JournalOp::Everything, PurgeMode::Soft, local),
            (4, JournalOp::Freeze, PurgeMode::Hard, local),
            (5, JournalOp::Thaw, PurgeMode::Hard, local),
            (6, tag("post:2"), PurgeMode::Hard, PurgeOrigin::Cluster),
        ]
    );
    assert!(records(&events).iter().all(|r| r.pid == std::process::id()));
    assert!(cache.read_journal(&mut cursor, 100).is_empty(), "read once");
    assert_eq!(cursor.seq(), 7);
    assert_eq!(cache.region_info().journal_records, 7);
    // A reader that starts at the end sees only what comes after.
    let mut late = cache.journal_end();
    cache.purge_tag("post:3", PurgeMode::Hard);
    let events = cache.read_journal(&mut late, 100);
    assert_eq!(records(&events).len(), 1);
    assert_eq!(records(&events)[0].op, tag("post:3"));
}

#[test]
fn a_soft_purge_of_everything_makes_every_entry_stale_in_constant_time() {
    let region = TempRegion::new("journal-soft-all");
    let (cache, _) = builder().region_clock(true).open(&region.0).unwrap();
    let other = ShmCache::attach(&region.0).unwrap();
    let ttl = Freshness::new(MIN).with_swr(MIN);
    cache.insert(b"plain", b"1", ttl).unwrap();
    cache.insert_tagged(b"tagged", b"2", ttl, &["t"]).unwrap();
    let Lookup::Miss(fill) = cache.lookup(b"in-flight") else {
        panic!("a miss")
    };
    assert_eq!(other.get(b"plain").as_deref(), Some(&b"1"[..]), "fresh");
    cache.advance_clock(Duration::from_secs(1));
    other.purge_everything(PurgeMode::Soft);
    fill.commit(b"3", ttl).unwrap();
    // Fetched before the purge: stale in every process, served while one caller refreshes.
    let mut refreshes = Vec::new();
    for key in [&b"plain"[..], b"tagged", b"in-flight"] {
        assert_eq!(cache.get(key), None, "{key:?} is no longer fresh");
        match cache.lookup(key) {
            Lookup::Stale(hit, Some(refresh)) => {
                assert!(hit.fresh_until() <= cache.now());
                refreshes.push(refresh);
            }
            other => panic!(
                "{key:?}: expected stale with a refresh, got {}",
                name(&other)
            ),
        }
    }
    // Stored after it: fresh.
    cache.insert(b"later", b"4", ttl).unwrap();
    assert_eq!(other.get(b"later").as_deref(), Some(&b"4"[..]));
    // A refresh makes an entry fresh again.
    refreshes.remove(0).commit(b"1b", ttl).unwrap();
    assert_eq!(other.get(b"plain").as_deref(), Some(&b"1b"[..]));
    // Frozen, what is stored is served as fresh all the same.
    cache.freeze(true);
    assert_eq!(other.get(b"tagged").as_deref(), Some(&b"2"[..]));
}

fn name(l: &Lookup) -> &'static str {
    match l {
        Lookup::Fresh(_) => "Fresh",
        Lookup::Stale(_, Some(_)) => "Stale+refresh",
        Lookup::Stale(_, None) => "Stale",
        Lookup::Miss(_) => "Miss",
        Lookup::Wait(_) => "Wait",
        Lookup::Pass => "Pass",
    }
}

#[test]
fn a_reader_that_fell_behind_the_ring_learns_how_many_purges_it_lost() {
    let region = TempRegion::new("journal-behind");
    let cache = open(&region.0, 64 << 10);
    let mut cursor = JournalCursor::default();
    // 64-byte records (a 20-byte tag): 1,024 fit in 64 KiB; 3,000 go round almost three times.
    for i in 0..3000 {
        cache.purge_tag(format!("tag-{i:016}"), PurgeMode::Hard);
    }
    // It goes on from the end: what it lost is to be made up for by purging everything.
    let events = cache.read_journal(&mut cursor, 10_000);
    assert_eq!(lost(&events), [(3000, LostReason::Overwritten)]);
    assert!(records(&events).is_empty());
    assert_eq!(cursor.seq(), 3000);
    // Keeping up, nothing is lost however often the ring goes round.
    for round in 0..5 {
        for i in 0..600 {
            cache.purge_tag(format!("r{round}-{i:014}"), PurgeMode::Soft);
        }
        let events = cache.read_journal(&mut cursor, 10_000);
        assert!(lost(&events).is_empty());
        assert_eq!(records(&events).len(), 600);
    }
}

#[test]
fn a_purge_too_long_for_the_journal_is_made_and_reported_lost() {
    let region = TempRegion::new("journal-long");
    let cache = open(&region.0, 64 << 10);
    let mut cursor = cache.journal_end();
    let long = "x".repeat(20 << 10);
    cache
        .insert_tagged(b"k", b"v", Freshness::new(MIN), &[long.as_str()])
        .unwrap();
    cache.purge_tag(&long, PurgeMode::Hard);
    cache.purge_tag("short", PurgeMode::Hard);
    let events = cache.read_journal(&mut cursor, 100);
    assert_eq!(lost(&events), [(1, LostReason::Unrecorded)]);
    assert_eq!(records(&events).len(), 1);
    assert_eq!(cache.region_info().journal_unrecorded, 1);
    assert_eq!(cache.get(b"k"), None, "the purge itself was made");
}

#[test]
fn a_damaged_record_is_skipped_never_trusted() {
    let region = TempRegion::new("journal-torn");
    let cache = open(&region.0, 64 << 10);
    let mut cursor = JournalCursor::default();
    cache.purge_tag("first", PurgeMode::Hard);
    cache.purge_tag("second-tag", PurgeMode::Hard);
    cache.purge_tag("third", PurgeMode::Hard);
    // A flipped byte in the second record's argument: its checksum fails.
    let at = find_in_file(&region.0, b"second-tag");
    poke(&region.0, at, b"S");
    let events = cache.read_journal(&mut cursor, 100);
    let ops: Vec<JournalOp> = records(&events).iter().map(|r| r.op.clone()).collect();
    assert_eq!(ops, [tag("first"), tag("third")]);
    assert_eq!(lost(&events), [(1, LostReason::Torn)]);
    // A damaged header (its position): the rest cannot be delimited and is reported lost.
    cache.purge_tag("fourth", PurgeMode::Hard);
    cache.purge_tag("fifth", PurgeMode::Hard);
    let at = find_in_file(&region.0, b"fourth") - 40;
    poke(&region.0, at, &[0xff; 8]);
    let events = cache.read_journal(&mut cursor, 100);
    assert!(records(&events).is_empty(), "{events:?}");
    assert_eq!(lost(&events), [(2, LostReason::Torn)]);
    cache.purge_tag("sixth", PurgeMode::Hard);
    let events = cache.read_journal(&mut cursor, 100);
    assert_eq!(records(&events)[0].op, tag("sixth"), "and it goes on");
}

#[test]
fn several_processes_purging_one_following_sees_every_purge_once_in_order() {
    let region = TempRegion::new("journal-procs");
    let cache = open(&region.0, 1 << 20);
    let mut cursor = cache.journal_end();
    let children: Vec<_> = (0..4)
        .map(|c| spawn("purge-tags", &region.0, &format!("c{c}")))
        .collect();
    let mut seen: HashMap<String, Vec<(u64, PurgeMode)>> = HashMap::new();
    let deadline = Instant::now() + MIN;
    let mut total = 0;
    while total < 2000 {
        assert!(Instant::now() < deadline, "only {total} purges followed");
        cache.wait_journal(&cursor, Duration::from_millis(100));
        let events = cache.read_journal(&mut cursor, 64);
        assert!(lost(&events).is_empty(), "{events:?}");
        for r in records(&events) {
            let JournalOp::Tag(t) = &r.op else {
                panic!("{r:?}")
            };
            let t = String::from_utf8(t.to_vec()).unwrap();
            let (child, _) = t.split_once('-').unwrap();
            seen.entry(child.to_string())
                .or_default()
                .push((r.seq, r.mode));
            total += 1;
        }
    }
    for c in children {
        finish(c, MIN);
    }
    assert_eq!(seen.len(), 4);
    for (child, purges) in &seen {
        assert_eq!(purges.len(), 500, "{child}");
        assert!(purges.windows(2).all(|w| w[0].0 < w[1].0), "in order");
        let soft = purges.iter().filter(|(_, m)| *m == PurgeMode::Soft).count();
        assert_eq!(soft, 250, "{child}");
    }
    assert!(cache.read_journal(&mut cursor, 64).is_empty());
}

#[test]
fn the_follower_is_one_process_and_keeps_its_state_in_the_region() {
    let region = TempRegion::new("journal-follower");
    let cache = open(&region.0, 64 << 10);
    let mut holder = spawn("follow-and-hold", &region.0, "");
    read_until(&mut holder, "following", MIN);
    let pid = holder.id();
    let busy = cache.follow().err().expect("the child follows");
    assert_eq!(busy.pid, pid);
    assert!(busy.to_string().contains(&pid.to_string()));
    kill(holder);
    // Its process gone, the claim is taken over.
    let me = cache.follow().expect("claimed");
    assert_eq!(me.state(), None);
    assert!(me.save(b"cursor and bus position"));
    assert!(me.save(b"newer"));
    assert!(!me.save(&[0; 129]), "too long");
    drop(me);
    let again = ShmCache::attach(&region.0).unwrap().follow().unwrap();
    assert_eq!(again.state().as_deref(), Some(&b"newer"[..]));
    // A follower killed while saving leaves the copy before: damage the newer copy.
    let at = find_in_file(&region.0, b"newer");
    poke(&region.0, at, b"N");
    assert_eq!(
        again.state().as_deref(),
        Some(&b"cursor and bus position"[..])
    );
}

#[test]
fn a_process_killed_inside_the_journal_lock_costs_nothing_but_its_own_record() {
    let region = TempRegion::new("journal-killed");
    let cache = open(&region.0, 64 << 10);
    let mut cursor = JournalCursor::default();
    cache.purge_tag("before", PurgeMode::Hard);
    let mut child = spawn("journal-locked", &region.0, "scribble");
    read_until(&mut child, "locked", MIN);
    kill(child);
    cache.purge_tag("after", PurgeMode::Hard);
    let events = cache.read_journal(&mut cursor, 100);
    assert!(lost(&events).is_empty(), "{events:?}");
    let ops: Vec<JournalOp> = records(&events).iter().map(|r| r.op.clone()).collect();
    assert_eq!(ops, [tag("before"), tag("after")]);
}

#[test]
fn a_process_stopped_inside_the_journal_lock_costs_a_lost_report_not_a_hang() {
    let region = TempRegion::new("journal-stopped");
    let cache = builder()
        .journal_bytes(64 << 10)
        .lock_bound(Duration::from_millis(50))
        .report(|_| {})
        .open(&region.0)
        .unwrap()
        .0;
    let mut cursor = cache.journal_end();
    let mut child = spawn("journal-locked", &region.0, "");
    read_until(&mut child, "locked", MIN);
    // SAFETY: a plain signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
    let ttl = Freshness::new(MIN);
    cache.insert_tagged(b"k", b"v", ttl, &["t"]).unwrap();
    let started = Instant::now();
    cache.purge_tag("t", PurgeMode::Hard);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(cache.get(b"k"), None, "the purge is made");
    let events = cache.read_journal(&mut cursor, 100);
    assert_eq!(lost(&events), [(1, LostReason::Unrecorded)]);
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
    kill(child);
}

#[test]
fn a_recreated_region_file_is_another_file() {
    let region = TempRegion::new("journal-file-id");
    let first = open(&region.0, 64 << 10);
    let id = first.file_id().expect("a file region");
    assert_eq!(ShmCache::attach(&region.0).unwrap().file_id(), Some(id));
    // Another size: the file is replaced.
    let (second, _) = builder().journal_bytes(128 << 10).open(&region.0).unwrap();
    assert_ne!(second.file_id(), Some(id));
    assert_eq!(builder().anonymous().unwrap().file_id(), None);
}
