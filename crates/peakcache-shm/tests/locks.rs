//! No stuck shard: a lock holder that is alive but does not release (stopped with `SIGSTOP`),
//! lock words of another boot or never initialised by this crate, and a mutex left
//! `ENOTRECOVERABLE` never leave a shard blocked or answering `Pass` forever.
//!
//! Children are this binary run again (see `procs`); every wait is bounded.

mod procs;

use peakcache::{Freshness, PurgeMode};
use peakcache_shm::{Lookup, ShmCache, StoreError};
use procs::{finish, read_until, spawn, TempRegion, HOUR};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BOUND: Duration = Duration::from_millis(200);
/// What a call may take beyond the bound.
const SLACK: Duration = Duration::from_millis(100);

/// The value stored under `key` in these tests: the key, repeated.
fn value_of(key: &str) -> Vec<u8> {
    key.repeat(20).into_bytes()
}

/// A report that keeps its lines.
fn collect() -> (
    Arc<Mutex<Vec<String>>>,
    impl Fn(&str) + Send + Sync + 'static,
) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    (lines, move |line: &str| {
        l.lock().unwrap().push(line.to_string())
    })
}

/// Keys `<prefix>-<n>` until `per_shard` of each of the cache's `shards` shards are found.
fn keys_by_shard(
    cache: &ShmCache,
    prefix: &str,
    shards: usize,
    per_shard: usize,
) -> Vec<Vec<String>> {
    let mut by = vec![Vec::new(); shards];
    let mut n = 0;
    while by.iter().any(|v| v.len() < per_shard) {
        let k = format!("{prefix}-{n}");
        let s = cache.debug_shard_of(k.as_bytes());
        if by[s].len() < per_shard {
            by[s].push(k);
        }
        n += 1;
    }
    by
}

#[test]
fn child() {
    let Some((role, path, arg)) = procs::role() else {
        return;
    };
    let cache = ShmCache::builder()
        .lock_bound(BOUND)
        .attach(&path)
        .expect("attach");
    match role.as_str() {
        "hold-lock" => {
            // Holds the key's shard lock for `ms` of wall time (stopped or not), then releases.
            let (key, ms) = arg.split_once(',').unwrap();
            let until = Instant::now() + Duration::from_millis(ms.parse().unwrap());
            cache.debug_with_shard_locked(key.as_bytes(), false, || {
                println!("locked");
                while Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
        }
        "probe" => {
            // Looks every key up for `ms`; every value served must be the key's own.
            let (keys, ms) = arg.rsplit_once(';').unwrap();
            let keys: Vec<&str> = keys.split(',').collect();
            let until = Instant::now() + Duration::from_millis(ms.parse().unwrap());
            let (mut slowest, mut hits, mut passes, mut corrupt) = (Duration::ZERO, 0, 0, 0);
            while Instant::now() < until {
                for k in &keys {
                    let started = Instant::now();
                    match cache.lookup(k.as_bytes()) {
                        Lookup::Fresh(h) => {
                            hits += 1;
                            if h.value()[..] != value_of(k)[..] {
                                corrupt += 1;
                            }
                        }
                        Lookup::Pass => passes += 1,
                        _ => panic!("only fresh entries or passes expected"),
                    }
                    slowest = slowest.max(started.elapsed());
                }
            }
            println!(
                "probe slowest_ms={} hits={hits} passes={passes} corrupt={corrupt}",
                slowest.as_millis()
            );
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// Runs `f`, failing if it took longer than the bound and its slack.
#[track_caller]
fn bounded<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let r = f();
    let took = started.elapsed();
    assert!(took <= BOUND + SLACK, "{what} took {took:?}");
    r
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
}

#[test]
fn a_stopped_lock_holder_costs_callers_one_bound_and_nothing_once_it_continues() {
    let region = TempRegion::new("sigstop");
    let (lines, report) = collect();
    let (cache, _) = ShmCache::builder()
        .max_bytes(4 << 20)
        .shards(4)
        .lock_bound(BOUND)
        .report(report)
        .open(&region.0)
        .unwrap();
    let stored = keys_by_shard(&cache, "stored", 4, 8);
    let missing = keys_by_shard(&cache, "missing", 4, 4);
    for k in stored.iter().flatten() {
        cache
            .insert(k.as_bytes(), &value_of(k), Freshness::new(HOUR))
            .unwrap();
    }
    let (held, others) = (0, 1..4);
    let mut holder = spawn("hold-lock", &region.0, &format!("{},1200", stored[held][0]));
    read_until(&mut holder, "locked", Duration::from_secs(10));
    signal(holder.id(), libc::SIGSTOP);
    let stopped = Instant::now();
    // Another process reads every stored key meanwhile.
    let all: Vec<&str> = stored.iter().flatten().map(String::as_str).collect();
    let mut probe = spawn("probe", &region.0, &format!("{};700", all.join(",")));
    // The held shard: whatever needs its lock gives up after the bound.
    for k in &missing[held] {
        let l = bounded("a miss on the held shard", || cache.lookup(k.as_bytes()));
        assert!(matches!(l, Lookup::Pass), "a miss on a held shard passes");
    }
    let k = &missing[held][0];
    let e = bounded("an insert", || {
        cache.insert(k.as_bytes(), b"x", Freshness::new(HOUR))
    });
    assert!(
        matches!(e, Err(StoreError::LockTimeout { bound_ms: 200 })),
        "{e:?}"
    );
    let e = bounded("a purge", || {
        cache.try_purge(stored[held][1].as_bytes(), PurgeMode::Hard)
    });
    assert!(matches!(e, Err(StoreError::LockTimeout { .. })), "{e:?}");
    // Fresh entries of the held shard are still served, read without the lock, never torn.
    for k in &stored[held] {
        match bounded("a hit on the held shard", || cache.lookup(k.as_bytes())) {
            Lookup::Fresh(h) => assert_eq!(h.value()[..], value_of(k)[..]),
            Lookup::Pass => {}
            _ => panic!("a fresh hit or a pass"),
        }
    }
    // The other shards are unaffected: hits, and misses filled at once.
    for s in others.clone() {
        for k in &stored[s] {
            let started = Instant::now();
            let Lookup::Fresh(h) = cache.lookup(k.as_bytes()) else {
                panic!("{k}: another shard's entry is served")
            };
            assert_eq!(h.value()[..], value_of(k)[..]);
            assert!(started.elapsed() < Duration::from_millis(50));
        }
        let k = &missing[s][0];
        let Lookup::Miss(fill) = cache.lookup(k.as_bytes()) else {
            panic!("{k}: another shard fills")
        };
        fill.commit(&value_of(k), Freshness::new(HOUR)).unwrap();
    }
    let out = read_until(&mut probe, "probe", Duration::from_secs(10));
    finish(probe, Duration::from_secs(10));
    let field = |name: &str| -> u64 {
        out.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(field("corrupt"), 0, "{out}");
    assert!(field("hits") > 0, "{out}");
    assert!(
        field("slowest_ms") <= (BOUND + SLACK).as_millis() as u64,
        "no lookup of the other process waits past the bound: {out}"
    );
    // Continued: the holder releases, and everything works on every shard.
    std::thread::sleep(Duration::from_millis(600));
    let stopped_for = stopped.elapsed();
    signal(holder.id(), libc::SIGCONT);
    finish(holder, Duration::from_secs(10));
    for keys in &missing {
        let k = &keys[1];
        let Lookup::Miss(fill) = bounded("a miss", || cache.lookup(k.as_bytes())) else {
            panic!("{k}: fills after the holder continued")
        };
        fill.commit(&value_of(k), Freshness::new(HOUR)).unwrap();
        let Lookup::Fresh(h) = cache.lookup(k.as_bytes()) else {
            panic!("{k}")
        };
        assert_eq!(h.value()[..], value_of(k)[..]);
    }
    assert!(cache
        .try_purge(stored[held][1].as_bytes(), PurgeMode::Hard)
        .unwrap());
    let timeouts = cache.region_info().lock_timeouts;
    assert!(
        timeouts >= 6,
        "every lock not acquired is counted: {timeouts}"
    );
    let lines = lines.lock().unwrap();
    let most = stopped_for.as_secs() as usize + 1;
    assert!(
        !lines.is_empty() && lines.len() <= most,
        "reported, at most a line a second: {lines:?}"
    );
    assert!(
        lines[0].contains("shard 0") && lines[0].contains("200 ms"),
        "{}",
        lines[0]
    );
}

#[test]
fn a_held_tag_table_lock_neither_serves_nor_drops_tagged_entries_and_loses_no_purge() {
    let (lines, report) = collect();
    let cache = ShmCache::builder()
        .max_bytes(1 << 20)
        .lock_bound(BOUND)
        .report(report)
        .anonymous()
        .unwrap();
    cache
        .insert_tagged(b"tagged", b"t", Freshness::new(HOUR), &["post:1"])
        .unwrap();
    cache.insert(b"plain", b"p", Freshness::new(HOUR)).unwrap();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let cache = cache.clone();
        std::thread::spawn(move || {
            cache.debug_with_tags_locked(|| {
                locked_tx.send(()).unwrap();
                let _ = release_rx.recv_timeout(Duration::from_secs(10));
            })
        })
    };
    locked_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    // The tagged entry's purges cannot be checked: not served, not dropped; others served.
    assert!(matches!(
        bounded("a tagged lookup", || cache.lookup(b"tagged")),
        Lookup::Pass
    ));
    assert!(matches!(cache.lookup(b"plain"), Lookup::Fresh(_)));
    // A tag purge meanwhile is folded into the cache-wide mark, never lost.
    bounded("a tag purge", || cache.purge_tag("post:1", PurgeMode::Hard));
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(matches!(cache.lookup(b"tagged"), Lookup::Miss(_)), "purged");
    assert!(matches!(cache.lookup(b"plain"), Lookup::Fresh(_)));
    assert!(cache.region_info().lock_timeouts >= 2);
    let lines = lines.lock().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("the tag table")),
        "{lines:?}"
    );
}

/// Rewrites bytes of the file at `path`.
fn poke(path: &Path, at: u64, bytes: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(bytes).unwrap();
}

fn read_u64(path: &Path, at: usize) -> u64 {
    let b = std::fs::read(path).unwrap();
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Header offsets (see the crate docs' layout): the boot id, the lock stamp, the shards.
const H_BOOT_ID: u64 = 224;
const H_LOCK_STAMP: u64 = 400;
const H_SHARDS_OFF: usize = 48;

/// Makes a region with `k` stored, then garbles shard 0's mutex (a lock word no process of
/// this boot initialised) and applies `tamper`; attaches again and checks the region works.
fn locks_not_trusted(name: &str, tamper: impl FnOnce(&Path), reported: &str) {
    let region = TempRegion::new(name);
    let builder = || {
        ShmCache::builder()
            .max_bytes(1 << 20)
            .shards(2)
            .lock_bound(BOUND)
    };
    let (cache, _) = builder().open(&region.0).unwrap();
    let keys = keys_by_shard(&cache, "k", 2, 1);
    for k in keys.iter().flatten() {
        cache
            .insert(k.as_bytes(), &value_of(k), Freshness::new(HOUR))
            .unwrap();
    }
    drop(cache);
    let shards_off = read_u64(&region.0, H_SHARDS_OFF);
    poke(&region.0, shards_off, &[0xa5; 40]);
    tamper(&region.0);
    let (lines, report) = collect();
    let cache = builder().report(report).attach(&region.0).unwrap();
    // Every shard's lock works: misses fill, values are kept (each shard checked).
    for k in keys.iter().flatten() {
        match bounded("a lookup", || cache.lookup(k.as_bytes())) {
            Lookup::Fresh(h) => assert_eq!(h.value()[..], value_of(k)[..]),
            _ => panic!("{k} is served"),
        }
        let miss = format!("{k}-new");
        assert!(matches!(
            cache.lookup(miss.as_bytes()),
            Lookup::Miss(_) | Lookup::Wait(_)
        ));
    }
    assert_eq!(cache.region_info().lock_timeouts, 0);
    let lines = lines.lock().unwrap();
    assert!(lines.iter().any(|l| l.contains(reported)), "{lines:?}");
}

#[test]
fn lock_words_of_another_boot_are_initialised_again_before_use() {
    locks_not_trusted(
        "otherboot",
        |path| {
            let boot = read_u64(path, H_BOOT_ID as usize);
            poke(path, H_BOOT_ID, &(boot ^ 0xdead_beef).to_le_bytes());
        },
        "come from another boot",
    );
}

#[test]
fn lock_words_this_crate_did_not_initialise_are_initialised_again_before_use() {
    locks_not_trusted(
        "nostamp",
        |path| poke(path, H_LOCK_STAMP, &[0; 8]),
        "not initialised by peakcache",
    );
}

#[test]
fn an_unrecoverable_shard_lock_is_repaired_after_the_shard_is_checked() {
    let (lines, report) = collect();
    let cache = ShmCache::builder()
        .max_bytes(1 << 20)
        .shards(2)
        .lock_bound(BOUND)
        .report(report)
        .anonymous()
        .unwrap();
    let keys = keys_by_shard(&cache, "k", 2, 20);
    for k in keys.iter().flatten() {
        cache
            .insert(k.as_bytes(), &value_of(k), Freshness::new(HOUR))
            .unwrap();
    }
    let recoveries = cache.region_info().recoveries;
    cache.debug_make_shard_lock_unrecoverable(keys[0][0].as_bytes());
    // A miss needs the lock: the lock is repaired and the shard rebuilt, then it fills.
    let new = &keys_by_shard(&cache, "new", 2, 1)[0][0];
    let Lookup::Miss(fill) = bounded("a miss", || cache.lookup(new.as_bytes())) else {
        panic!("the shard fills again instead of passing forever")
    };
    drop(fill);
    assert_eq!(
        cache.region_info().recoveries,
        recoveries + 1,
        "the shard was checked"
    );
    for k in keys.iter().flatten() {
        assert_eq!(
            cache.get(k.as_bytes()).as_deref(),
            Some(&value_of(k)[..]),
            "{k} kept"
        );
        cache
            .insert(k.as_bytes(), b"again", Freshness::new(HOUR))
            .unwrap();
    }
    assert!(cache.purge(keys[0][0].as_bytes(), PurgeMode::Hard));
    let lines = lines.lock().unwrap();
    assert!(
        lines.iter().any(|l| l.contains("unrecoverable")),
        "{lines:?}"
    );
}

/// A snapshot's output that, on every write, checks that each shard's lock is free (an insert
/// into each shard, by this very thread, would wait out the bound if the snapshot held it).
struct CheckingSink {
    cache: ShmCache,
    probes: Vec<String>,
    held: usize,
    bytes: Vec<u8>,
}

impl std::io::Write for CheckingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for k in &self.probes {
            if self
                .cache
                .insert(k.as_bytes(), b"probe", Freshness::new(HOUR))
                .is_err()
            {
                self.held += 1;
            }
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_snapshot_writes_with_no_shard_lock_held() {
    let cache = ShmCache::builder()
        .max_bytes(8 << 20)
        .shards(2)
        .lock_bound(Duration::from_millis(50))
        .report(|_: &str| {})
        .anonymous()
        .unwrap();
    // Over a MiB of entries per shard, in case a writer flushed in the middle of a shard.
    for i in 0..2400u32 {
        let k = format!("key-{i}");
        cache
            .insert(
                k.as_bytes(),
                &value_of(&k).repeat(20)[..2000],
                Freshness::new(HOUR),
            )
            .unwrap();
    }
    let probes = keys_by_shard(&cache, "probe", 2, 1).concat();
    let mut sink = CheckingSink {
        cache: cache.clone(),
        probes,
        held: 0,
        bytes: Vec::new(),
    };
    let written = cache.snapshot_to(&mut sink).unwrap();
    assert!(written >= 2000, "{written}");
    assert_eq!(sink.held, 0, "a write found a shard lock held");
    assert_eq!(cache.region_info().lock_timeouts, 0);
    // What was written is a whole snapshot.
    let file = TempRegion::new("snapshot-to");
    std::fs::write(&file.0, &sink.bytes).unwrap();
    let other = ShmCache::builder().max_bytes(8 << 20).anonymous().unwrap();
    assert_eq!(other.restore(&file.0).unwrap().restored, written);
}
