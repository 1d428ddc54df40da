//! The lifecycle under many threads: single flight, no waiter left hanging, values that outlive
//! the cache's changes, counters that add up, a capacity never exceeded.
//!
//! Time only moves by hand ([`ManualClock`]); real time appears only as the bounded timeout of a
//! blocking wait, and as a check that such waits return long before it.

use bytes::Bytes;
use peakcache::{
    Cache, Fill, Freshness, InsertError, Lookup, ManualClock, PurgeMode, Resolved, Served,
};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

const SEC: Duration = Duration::from_secs(1);
/// The real-time timeout of every blocking wait: generous, never expected to be reached.
const WAIT: Duration = Duration::from_secs(10);
/// A released waiter returns well within this (real time), far below `WAIT`.
const PROMPT: Duration = Duration::from_secs(5);

fn cache<V: Clone + Send + Sync + 'static>(
    clock: &ManualClock,
    lock_timeout: Duration,
) -> Cache<V> {
    Cache::builder()
        .clock(clock.clone())
        .max_bytes(64 << 20)
        .lock_timeout(lock_timeout)
        .retry_backoff(2 * SEC, 16 * SEC)
        .refresh_retry(SEC)
        .build()
}

fn ttl(secs: u64) -> Freshness {
    Freshness::new(Duration::from_secs(secs))
}

/// A small deterministic generator (SplitMix64), so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

// ---------------------------------------------------------------------------------------------
// Single flight
// ---------------------------------------------------------------------------------------------

// N threads missing the same key cause exactly one origin fetch per key and per expiry, and
// every thread ends with the fetched value.
#[test]
fn concurrent_misses_of_one_key_make_exactly_one_fill_per_expiry() {
    const THREADS: usize = 32;
    const KEYS: usize = 30;
    const EXPIRIES: usize = 3;
    let clock = ManualClock::new();
    let cache: Cache<u64> = cache(&clock, 3600 * SEC);
    let origin_runs: Arc<Vec<AtomicUsize>> =
        Arc::new((0..KEYS * EXPIRIES).map(|_| AtomicUsize::new(0)).collect());
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (cache, clock, runs, barrier) = (
                cache.clone(),
                clock.clone(),
                origin_runs.clone(),
                barrier.clone(),
            );
            thread::spawn(move || {
                // Never panic inside the loop: the others would wait at the barrier forever.
                let mut wrong = Vec::new();
                for e in 0..EXPIRIES {
                    for k in 0..KEYS {
                        let slot = e * KEYS + k;
                        let want = slot as u64 + 1;
                        let fetch = |fill: Fill<u64>| {
                            runs[slot].fetch_add(1, Ordering::SeqCst);
                            thread::yield_now(); // the origin takes a moment
                            fill.commit(want, ttl(10)).unwrap();
                            want
                        };
                        barrier.wait();
                        let got = match cache.lookup(&(k as u64).to_be_bytes()) {
                            Lookup::Miss(fill) => fetch(fill),
                            Lookup::Fresh(hit) => *hit.value(),
                            Lookup::Wait(w) => match w.wait(WAIT) {
                                Resolved::Hit(hit) => *hit.value(),
                                Resolved::Fill(fill) => fetch(fill),
                                _ => u64::MAX,
                            },
                            _ => u64::MAX - 1,
                        };
                        if got != want {
                            wrong.push((e, k, got));
                        }
                    }
                    // Every entry dies before the next round.
                    barrier.wait();
                    if t == 0 {
                        clock.advance(11 * SEC);
                    }
                    barrier.wait();
                }
                wrong
            })
        })
        .collect();
    for w in workers {
        assert_eq!(w.join().unwrap(), vec![], "(expiry, key, value got)");
    }
    for (slot, runs) in origin_runs.iter().enumerate() {
        assert_eq!(
            runs.load(Ordering::SeqCst),
            1,
            "origin runs for slot {slot}"
        );
    }
    let s = cache.stats();
    let rounds = (KEYS * EXPIRIES) as u64;
    assert_eq!(
        (s.miss, s.fills_committed, s.fills_abandoned),
        (rounds, rounds, 0)
    );
    assert_eq!(s.wait_timeouts, 0);
    assert_eq!(s.lookups(), rounds * THREADS as u64);
}

// With a stale entry inside its swr window, exactly one of N concurrent lookups gets the
// `Refresh` ticket per expiry; all N are served the stale value without waiting.
#[test]
fn concurrent_stale_lookups_hand_out_exactly_one_refresh_per_expiry() {
    const THREADS: usize = 32;
    const KEYS: usize = 20;
    const EXPIRIES: usize = 4;
    let clock = ManualClock::new();
    let cache: Cache<u64> = cache(&clock, 3600 * SEC);
    let swr = ttl(10).with_swr(60 * SEC);
    for k in 0..KEYS as u64 {
        cache.insert(&k.to_be_bytes(), 0, swr).unwrap();
    }
    let tickets: Arc<Vec<AtomicUsize>> =
        Arc::new((0..KEYS * EXPIRIES).map(|_| AtomicUsize::new(0)).collect());
    let barrier = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (cache, clock, tickets, barrier) = (
                cache.clone(),
                clock.clone(),
                tickets.clone(),
                barrier.clone(),
            );
            thread::spawn(move || {
                let mut wrong = Vec::new();
                for e in 0..EXPIRIES {
                    // Every refresh of the previous round has landed before time moves.
                    barrier.wait();
                    if t == 0 {
                        clock.advance(11 * SEC);
                    }
                    barrier.wait();
                    for k in 0..KEYS {
                        barrier.wait();
                        let key = (k as u64).to_be_bytes();
                        let mut refresh = None;
                        match cache.lookup(&key) {
                            Lookup::Stale(hit, ticket) => {
                                if (*hit.value(), hit.served()) != (e as u64, Served::Stale) {
                                    wrong.push((e, k, "stale value"));
                                }
                                if ticket.is_some() {
                                    tickets[e * KEYS + k].fetch_add(1, Ordering::SeqCst);
                                }
                                refresh = ticket;
                            }
                            _ => wrong.push((e, k, "not served stale")),
                        }
                        // The refresh lands only once every thread has looked the key up.
                        barrier.wait();
                        if let Some(r) = refresh {
                            r.commit(e as u64 + 1, swr).unwrap();
                        }
                    }
                }
                wrong
            })
        })
        .collect();
    for w in workers {
        assert_eq!(w.join().unwrap(), vec![]);
    }
    for (slot, n) in tickets.iter().enumerate() {
        assert_eq!(
            n.load(Ordering::SeqCst),
            1,
            "refresh tickets for slot {slot}"
        );
    }
    let s = cache.stats();
    let rounds = (KEYS * EXPIRIES) as u64;
    assert_eq!(
        (s.refreshes_started, s.refreshes_committed),
        (rounds, rounds)
    );
    assert_eq!((s.stale, s.miss, s.wait), (rounds * THREADS as u64, 0, 0));
}

// ---------------------------------------------------------------------------------------------
// No waiter waits forever
// ---------------------------------------------------------------------------------------------

/// What one blocked waiter ended with, and how long it blocked (real time).
enum Ended {
    Value(u32),
    TookOver,
    TimedOut,
    Other(&'static str),
}

/// Spawns `n` threads, each blocking on one of `n` waiters of `key` (taken now, so a fill must be
/// in flight); a waiter that takes the fill over commits `take_over_value`. The threads start
/// waiting after the returned barrier is passed by the caller too.
fn blocked_waiters(
    cache: &Cache<u32>,
    key: &'static [u8],
    n: usize,
    take_over_value: u32,
) -> (Arc<Barrier>, Vec<thread::JoinHandle<(Ended, Duration)>>) {
    let barrier = Arc::new(Barrier::new(n + 1));
    let handles = (0..n)
        .map(|_| {
            let Lookup::Wait(waiter) = cache.lookup(key) else {
                panic!("a fill is in flight: lookups wait")
            };
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let ended = match waiter.wait(WAIT) {
                    Resolved::Hit(hit) => Ended::Value(*hit.value()),
                    Resolved::Fill(fill) => {
                        fill.commit(take_over_value, ttl(60)).unwrap();
                        Ended::TookOver
                    }
                    Resolved::TimedOut => Ended::TimedOut,
                    Resolved::Pass => Ended::Other("pass"),
                    Resolved::Failed => Ended::Other("failed"),
                };
                (ended, start.elapsed())
            })
        })
        .collect();
    (barrier, handles)
}

/// Joins the waiters: asserts each returned promptly; returns (took over, values, timed out).
fn joined(handles: Vec<thread::JoinHandle<(Ended, Duration)>>) -> (usize, Vec<u32>, usize) {
    let (mut took_over, mut values, mut timed_out) = (0, Vec::new(), 0);
    for h in handles {
        let (ended, elapsed) = h.join().unwrap();
        assert!(elapsed < PROMPT, "a waiter blocked {elapsed:?}");
        match ended {
            Ended::Value(v) => values.push(v),
            Ended::TookOver => took_over += 1,
            Ended::TimedOut => timed_out += 1,
            Ended::Other(what) => panic!("unexpected outcome {what}"),
        }
    }
    (took_over, values, timed_out)
}

/// After the filler gave up: exactly one waiter took the fill over, the others got its value,
/// promptly, and the cache holds it.
fn assert_one_took_over(cache: &Cache<u32>, handles: Vec<thread::JoinHandle<(Ended, Duration)>>) {
    let n = handles.len();
    let (took_over, values, timed_out) = joined(handles);
    assert_eq!((took_over, timed_out), (1, 0));
    assert_eq!(values, vec![7; n - 1]);
    assert!(matches!(cache.lookup(b"k"), Lookup::Fresh(h) if *h.value() == 7));
    let s = cache.stats();
    assert_eq!((s.fills_abandoned, s.fills_committed), (1, 1));
}

// A filler that panics (caught by `catch_unwind`) abandons its fill: exactly one blocked waiter
// takes it over at once, the others get that waiter's value, nobody hangs.
#[test]
fn a_filler_panicking_under_catch_unwind_hands_the_fill_to_exactly_one_waiter() {
    let clock = ManualClock::new();
    let cache: Cache<u32> = cache(&clock, 3600 * SEC);
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!("first lookup misses")
    };
    let (start, waiters) = blocked_waiters(&cache, b"k", 16, 7);
    start.wait();
    let result = catch_unwind(AssertUnwindSafe(move || {
        let _fill = fill;
        panic!("the origin blew up (on purpose)");
    }));
    assert!(result.is_err());
    assert_one_took_over(&cache, waiters);
}

// A filler thread that dies of a panic while holding the fill releases it the same way.
#[test]
fn a_filler_thread_dying_of_a_panic_hands_the_fill_to_exactly_one_waiter() {
    let clock = ManualClock::new();
    let cache: Cache<u32> = cache(&clock, 3600 * SEC);
    let (has_fill, ready) = mpsc::channel();
    let (go, panic_now) = mpsc::channel::<()>();
    let filler = {
        let cache = cache.clone();
        thread::spawn(move || {
            let Lookup::Miss(_fill) = cache.lookup(b"k") else {
                panic!("first lookup misses")
            };
            has_fill.send(()).unwrap();
            panic_now.recv_timeout(WAIT).unwrap();
            panic!("the filler dies holding its fill (on purpose)");
        })
    };
    ready.recv_timeout(WAIT).unwrap();
    let (start, waiters) = blocked_waiters(&cache, b"k", 16, 7);
    start.wait();
    go.send(()).unwrap();
    assert!(filler.join().is_err());
    assert_one_took_over(&cache, waiters);
}

// A fill dropped unused hands the fill to exactly one blocked waiter.
#[test]
fn a_dropped_fill_hands_the_fill_to_exactly_one_waiter() {
    let clock = ManualClock::new();
    let cache: Cache<u32> = cache(&clock, 3600 * SEC);
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!("first lookup misses")
    };
    let (start, waiters) = blocked_waiters(&cache, b"k", 16, 7);
    start.wait();
    drop(fill);
    assert_one_took_over(&cache, waiters);
}

// A fill outliving the lock timeout (cache time) releases its blocked waiters as soon as the
// next lookup notices, long before their own timeout; that lookup starts a new fill.
#[test]
fn a_fill_outliving_the_lock_timeout_is_released_by_the_next_lookup() {
    let clock = ManualClock::new();
    // A lock timeout of 60 s of cache time: a waiter left to itself would block for its whole
    // real-time timeout (10 s), so returning within `PROMPT` shows the lookup released it.
    let cache: Cache<u32> = cache(&clock, 60 * SEC);
    let Lookup::Miss(slow) = cache.lookup(b"k") else {
        panic!("first lookup misses")
    };
    let (start, waiters) = blocked_waiters(&cache, b"k", 16, 7);
    start.wait();
    clock.advance(61 * SEC);
    let Lookup::Miss(fresh) = cache.lookup(b"k") else {
        panic!("the lookup after the lock timeout starts a new fill")
    };
    let (took_over, values, timed_out) = joined(waiters);
    assert_eq!((took_over, values.len(), timed_out), (0, 0, 16));
    fresh.commit(2, ttl(60)).unwrap();
    slow.commit(1, ttl(60)).unwrap();
    assert!(matches!(cache.lookup(b"k"), Lookup::Fresh(h) if *h.value() == 2));
    assert_eq!(cache.stats().wait_timeouts, 16);
}

// A fill outliving the lock timeout is released by any waiter polling it: the poller gets
// `TimedOut`, and so do the blocked waiters, at once.
#[test]
fn a_fill_outliving_the_lock_timeout_is_released_by_a_polling_waiter() {
    let clock = ManualClock::new();
    let cache: Cache<u32> = cache(&clock, 60 * SEC);
    let Lookup::Miss(_slow) = cache.lookup(b"k") else {
        panic!("first lookup misses")
    };
    let Lookup::Wait(poller) = cache.lookup(b"k") else {
        panic!("second lookup waits")
    };
    let (start, waiters) = blocked_waiters(&cache, b"k", 8, 7);
    start.wait();
    let poller = poller
        .try_wait()
        .err()
        .expect("still inside the lock timeout");
    clock.advance(60 * SEC);
    assert!(matches!(poller.try_wait(), Ok(Resolved::TimedOut)));
    let (took_over, values, timed_out) = joined(waiters);
    assert_eq!((took_over, values.len(), timed_out), (0, 0, 8));
    assert!(matches!(cache.lookup(b"k"), Lookup::Miss(_)));
    assert_eq!(cache.stats().wait_timeouts, 9);
}

// A waiter whose filler hangs returns `TimedOut` after its own (real-time) timeout.
#[test]
fn a_waiter_gives_up_after_its_own_timeout() {
    let clock = ManualClock::new();
    let cache: Cache<u32> = cache(&clock, 3600 * SEC);
    let Lookup::Miss(_hung) = cache.lookup(b"k") else {
        panic!("first lookup misses")
    };
    let Lookup::Wait(waiter) = cache.lookup(b"k") else {
        panic!("second lookup waits")
    };
    let start = Instant::now();
    assert!(matches!(
        waiter.wait(Duration::from_millis(50)),
        Resolved::TimedOut
    ));
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(50) && elapsed < PROMPT,
        "{elapsed:?}"
    );
    assert_eq!(cache.stats().wait_timeouts, 1);
}

// ---------------------------------------------------------------------------------------------
// Async waiting
// ---------------------------------------------------------------------------------------------

struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this thread, parking between polls; calls `on_pending` after every `Pending`.
/// Panics if the future is not woken within `WAIT` (real time).
fn block_on<F: Future>(fut: F, mut on_pending: impl FnMut()) -> F::Output {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let give_up = Instant::now() + WAIT;
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        on_pending();
        let now = Instant::now();
        assert!(now < give_up, "the future was never woken");
        thread::park_timeout(give_up - now);
    }
}

// A `Waiter` awaited as a future is woken, and resolves to the value, when the fill commits on
// another thread; several awaiting threads all are.
#[test]
fn awaited_waiters_resolve_when_the_fill_commits_on_another_thread() {
    const AWAITERS: usize = 8;
    let clock = ManualClock::new();
    let cache: Cache<u32> = cache(&clock, 3600 * SEC);
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!("first lookup misses")
    };
    let pending = Arc::new(AtomicUsize::new(0));
    let awaiters: Vec<_> = (0..AWAITERS)
        .map(|_| {
            let Lookup::Wait(waiter) = cache.lookup(b"k") else {
                panic!("a fill is in flight")
            };
            let pending = pending.clone();
            thread::spawn(move || {
                let start = Instant::now();
                let mut first = true;
                let out = block_on(waiter, || {
                    if std::mem::take(&mut first) {
                        pending.fetch_add(1, Ordering::SeqCst);
                    }
                });
                (out, start.elapsed())
            })
        })
        .collect();
    // Commit only once every awaiter has been polled and is pending (bounded real-time wait).
    let give_up = Instant::now() + WAIT;
    while pending.load(Ordering::SeqCst) < AWAITERS {
        assert!(Instant::now() < give_up, "awaiters never polled");
        thread::yield_now();
    }
    fill.commit(5, ttl(60)).unwrap();
    for a in awaiters {
        let (out, elapsed) = a.join().unwrap();
        assert!(matches!(out, Resolved::Hit(h) if *h.value() == 5));
        assert!(elapsed < PROMPT, "woken late: {elapsed:?}");
    }
}

// An awaited waiter whose filler drops the fill on another thread takes the fill over.
#[test]
fn an_awaited_waiter_takes_over_a_fill_dropped_on_another_thread() {
    let clock = ManualClock::new();
    let cache: Cache<u32> = cache(&clock, 3600 * SEC);
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!("first lookup misses")
    };
    let Lookup::Wait(waiter) = cache.lookup(b"k") else {
        panic!("second lookup waits")
    };
    let (pending, polled) = mpsc::channel();
    let dropper = thread::spawn(move || {
        polled.recv_timeout(WAIT).unwrap();
        drop(fill);
    });
    let mut pending = Some(pending);
    let out = block_on(waiter, || {
        if let Some(p) = pending.take() {
            p.send(()).unwrap();
        }
    });
    dropper.join().unwrap();
    let Resolved::Fill(fill) = out else {
        panic!("the awaiter takes the fill over")
    };
    fill.commit(3, ttl(60)).unwrap();
    assert!(matches!(cache.lookup(b"k"), Lookup::Fresh(h) if *h.value() == 3));
}

// An awaited waiter of a fill outliving the lock timeout is released when another thread's
// lookup notices it.
#[test]
fn an_awaited_waiter_is_released_by_a_lookup_after_the_lock_timeout() {
    let clock = ManualClock::new();
    let cache: Cache<u32> = cache(&clock, 60 * SEC);
    let Lookup::Miss(_slow) = cache.lookup(b"k") else {
        panic!("first lookup misses")
    };
    let Lookup::Wait(waiter) = cache.lookup(b"k") else {
        panic!("second lookup waits")
    };
    let (pending, polled) = mpsc::channel();
    let other = {
        let (cache, clock) = (cache.clone(), clock.clone());
        thread::spawn(move || {
            polled.recv_timeout(WAIT).unwrap();
            clock.advance(61 * SEC);
            matches!(cache.lookup(b"k"), Lookup::Miss(_))
        })
    };
    let mut pending = Some(pending);
    let out = block_on(waiter, || {
        if let Some(p) = pending.take() {
            p.send(()).unwrap();
        }
    });
    assert!(other.join().unwrap(), "the late lookup starts a new fill");
    assert!(matches!(out, Resolved::TimedOut));
}

// ---------------------------------------------------------------------------------------------
// Values handed out stay valid
// ---------------------------------------------------------------------------------------------

fn pattern(tag: u8, len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| tag ^ (i as u8)).collect::<Vec<u8>>())
}

fn is_pattern(b: &[u8], tag: u8, len: usize) -> bool {
    b.len() == len && b.iter().enumerate().all(|(i, &x)| x == tag ^ (i as u8))
}

// A value handed out keeps its bytes after the entry is purged, replaced, evicted or cleared.
#[test]
fn a_held_value_survives_purge_replacement_eviction_and_clear() {
    let clock = ManualClock::new();
    let cache: Cache<Bytes> = Cache::builder()
        .clock(clock.clone())
        .shards(1)
        .max_bytes(64 << 10)
        .weigher(|k, v: &Bytes| (k.len() + v.len()) as u64 + 64)
        .build();
    let held_hit = |tag: u8| {
        cache.insert(b"k", pattern(tag, 1000), ttl(60)).unwrap();
        match cache.lookup(b"k") {
            Lookup::Fresh(hit) => hit,
            _ => panic!("just stored"),
        }
    };

    let purged = held_hit(1);
    assert!(cache.purge(b"k", PurgeMode::Hard));
    assert!(cache.get(b"k").is_none());

    let replaced = held_hit(2);
    cache.insert(b"k", pattern(3, 500), ttl(60)).unwrap();
    assert!(is_pattern(&cache.get(b"k").unwrap(), 3, 500));

    let evicted = held_hit(4);
    // Entries read twice after their insert compete for the main queue, where `k` sits: it is
    // evicted only once the main queue is under pressure from entries read more than it.
    for i in 0u32..400 {
        cache
            .insert(&i.to_be_bytes(), pattern(9, 1000), ttl(60))
            .unwrap();
        assert!(cache.get(&i.to_be_bytes()).is_some());
        assert!(cache.get(&i.to_be_bytes()).is_some());
    }
    assert!(cache.get(b"k").is_none(), "evicted");
    assert!(cache.stats().evictions > 0);

    let cleared = held_hit(5);
    cache.clear();
    assert!(cache.is_empty());

    assert!(is_pattern(purged.value(), 1, 1000));
    assert!(is_pattern(replaced.value(), 2, 1000));
    assert!(is_pattern(evicted.value(), 4, 1000));
    assert!(is_pattern(cleared.value(), 5, 1000));
}

static LIVE_VALUES: AtomicU64 = AtomicU64::new(0);

/// A value that checks its own bytes and counts how many exist.
struct Checked(Vec<u8>);

impl Checked {
    fn new(version: u64) -> Arc<Checked> {
        LIVE_VALUES.fetch_add(1, Ordering::SeqCst);
        let mut v = version.to_le_bytes().repeat(64);
        v.extend_from_slice(&version.wrapping_mul(31).to_le_bytes());
        Arc::new(Checked(v))
    }

    fn intact(&self) -> bool {
        let version = u64::from_le_bytes(self.0[..8].try_into().unwrap());
        self.0.len() == 520
            && self.0[..512].chunks(8).all(|c| c == version.to_le_bytes())
            && self.0[512..] == version.wrapping_mul(31).to_le_bytes()
    }
}

impl Drop for Checked {
    fn drop(&mut self) {
        LIVE_VALUES.fetch_sub(1, Ordering::SeqCst);
    }
}

// Readers holding values while writers replace, purge (key and tag) and evict them always see
// intact values, and every value is freed once the cache and the readers let go of it.
#[test]
fn held_values_stay_intact_under_concurrent_replacement_purge_and_eviction() {
    const KEYS: u64 = 64;
    let clock = ManualClock::new();
    let cache: Cache<Arc<Checked>> = Cache::builder()
        .clock(clock.clone())
        .shards(4)
        .max_bytes(64 * 700) // room for about 64 values: writers cause evictions
        .weigher(|k, v: &Arc<Checked>| (k.len() + v.0.len()) as u64 + 64)
        .build();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (cache, stop) = (cache.clone(), stop.clone());
            thread::spawn(move || {
                let mut rng = Rng(w);
                let mut version = w << 32;
                for _ in 0..4000 {
                    version += 1;
                    let key = rng.below(KEYS * 2).to_be_bytes();
                    match rng.below(10) {
                        0 => drop(cache.purge(&key, PurgeMode::Hard)),
                        1 => cache.purge_tag(format!("t{}", rng.below(4)), PurgeMode::Hard),
                        _ => {
                            let tag = format!("t{}", rng.below(4));
                            let _ =
                                cache.insert_tagged(&key, Checked::new(version), ttl(60), &[tag]);
                        }
                    }
                }
                stop.store(true, Ordering::SeqCst);
            })
        })
        .collect();
    let readers: Vec<_> = (0..4u64)
        .map(|r| {
            let (cache, stop) = (cache.clone(), stop.clone());
            thread::spawn(move || {
                let mut rng = Rng(100 + r);
                let mut held: Vec<Arc<Checked>> = Vec::new();
                let mut broken = 0;
                while !stop.load(Ordering::SeqCst) {
                    let key = rng.below(KEYS * 2).to_be_bytes();
                    if let Some(v) = cache.get(&key) {
                        broken += usize::from(!v.intact());
                        if held.len() < 256 {
                            held.push(v);
                        } else {
                            held[rng.below(256) as usize] = v;
                        }
                    }
                    if let Some(old) = held.get(rng.below(256) as usize) {
                        broken += usize::from(!old.intact());
                    }
                }
                broken + held.iter().filter(|v| !v.intact()).count()
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    for r in readers {
        assert_eq!(r.join().unwrap(), 0, "a reader saw a value change under it");
    }
    let s = cache.stats();
    assert!(s.evictions > 0, "the workload must evict");
    drop(cache);
    assert_eq!(
        LIVE_VALUES.load(Ordering::SeqCst),
        0,
        "every value is freed"
    );
}

// ---------------------------------------------------------------------------------------------
// Counters add up
// ---------------------------------------------------------------------------------------------

/// What one worker did, counted on its side.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
struct Tally {
    lookups: u64,
    fresh: u64,
    stale: u64,
    miss: u64,
    wait: u64,
    pass: u64,
    fill_tickets: u64,
    refresh_tickets: u64,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.lookups += o.lookups;
        self.fresh += o.fresh;
        self.stale += o.stale;
        self.miss += o.miss;
        self.wait += o.wait;
        self.pass += o.pass;
        self.fill_tickets += o.fill_tickets;
        self.refresh_tickets += o.refresh_tickets;
    }
}

/// Completes a fill in a random way; returns immediately (no ticket is held across operations,
/// so no worker ever waits on a fill that its own thread holds).
fn finish_fill(rng: &mut Rng, fill: Fill<u64>, f: Freshness) {
    // The origin takes a moment, so other threads come to wait for it.
    for _ in 0..rng.below(4) {
        thread::yield_now();
    }
    match rng.below(8) {
        0 => drop(fill.fail()),
        1 => fill.uncacheable(SEC),
        2 => drop(fill),
        _ => drop(fill.commit(rng.next(), f)),
    }
}

// After a concurrent random workload, every lookup and get is counted exactly once under its
// outcome, and every fill or refresh ticket handed out is counted exactly once as committed,
// failed, abandoned or uncacheable.
#[test]
fn counters_add_up_after_a_concurrent_random_workload() {
    const THREADS: u64 = 8;
    const OPS: usize = 20_000;
    let clock = ManualClock::new();
    let cache: Cache<u64> = cache(&clock, 30 * SEC);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (cache, clock) = (cache.clone(), clock.clone());
            thread::spawn(move || {
                let mut rng = Rng(t);
                let mut n = Tally::default();
                for _ in 0..OPS {
                    let key = rng.below(16).to_be_bytes();
                    let f = Freshness::new(SEC * rng.below(5) as u32)
                        .with_swr(SEC * rng.below(5) as u32)
                        .with_sie(SEC * rng.below(10) as u32);
                    match rng.below(20) {
                        0 if t == 0 => clock.advance(Duration::from_millis(rng.below(3000))),
                        1 => drop(cache.purge(&key, PurgeMode::Soft)),
                        2 => cache.purge_tag(format!("t{}", rng.below(3)), PurgeMode::Hard),
                        3 => {
                            let tag = format!("t{}", rng.below(3));
                            cache.insert_tagged(&key, rng.next(), f, &[tag]).unwrap();
                        }
                        4..=6 => {
                            n.lookups += 1;
                            if cache.get(&key).is_some() {
                                n.fresh += 1;
                            } else {
                                n.miss += 1;
                            }
                        }
                        _ => {
                            n.lookups += 1;
                            match cache.lookup(&key) {
                                Lookup::Fresh(_) => n.fresh += 1,
                                Lookup::Stale(_, refresh) => {
                                    n.stale += 1;
                                    if let Some(r) = refresh {
                                        n.refresh_tickets += 1;
                                        // Not `uncacheable`: see
                                        // `a_refresh_found_uncacheable_is_counted_as_a_refresh`.
                                        match rng.below(3) {
                                            0 => r.fail(),
                                            1 => drop(r),
                                            _ => drop(r.commit(rng.next(), f)),
                                        }
                                    }
                                }
                                Lookup::Miss(fill) => {
                                    n.miss += 1;
                                    n.fill_tickets += 1;
                                    finish_fill(&mut rng, fill, f);
                                }
                                Lookup::Wait(w) => {
                                    n.wait += 1;
                                    let resolved = if rng.below(2) == 0 {
                                        w.wait(WAIT)
                                    } else {
                                        match w.try_wait() {
                                            Ok(r) => r,
                                            Err(_) => continue, // dropped while pending
                                        }
                                    };
                                    if let Resolved::Fill(fill) = resolved {
                                        n.fill_tickets += 1;
                                        finish_fill(&mut rng, fill, f);
                                    }
                                }
                                Lookup::Pass => n.pass += 1,
                            }
                        }
                    }
                }
                n
            })
        })
        .collect();
    let mut n = Tally::default();
    for w in workers {
        n += w.join().unwrap();
    }
    let s = cache.stats();
    println!(
        "workload: {n:?}; refreshes started: {}",
        s.refreshes_started
    );
    assert_eq!(s.lookups(), n.lookups, "every lookup and get counted once");
    assert_eq!(
        (s.fresh, s.stale + s.stale_if_error, s.miss, s.wait, s.pass),
        (n.fresh, n.stale, n.miss, n.wait, n.pass),
        "each outcome counted under its name"
    );
    assert_eq!(
        s.fills_committed + s.fills_failed + s.fills_abandoned + s.fills_uncacheable,
        n.fill_tickets,
        "every fill ticket ends exactly once"
    );
    assert_eq!(
        s.refreshes_committed + s.refreshes_failed + s.refreshes_abandoned,
        s.refreshes_started,
        "every refresh ticket ends exactly once"
    );
    // A waiter resolving an abandoned fill may take (and drop) a refresh ticket of its own.
    assert!(s.refreshes_started >= n.refresh_tickets);
    assert!(
        n.fill_tickets > 100 && n.refresh_tickets > 10 && n.wait > 0,
        "{n:?}"
    );
}

// A refresh that learns its answer is not cacheable is one refresh ticket ended, not a fill:
// `refreshes_started` equals the refreshes committed, failed, abandoned (or uncacheable), and
// the fill counters stay untouched.
#[test]
fn a_refresh_found_uncacheable_is_counted_as_a_refresh() {
    let clock = ManualClock::new();
    let cache: Cache<u64> = cache(&clock, 60 * SEC);
    cache.insert(b"k", 1, ttl(10).with_swr(60 * SEC)).unwrap();
    clock.advance(11 * SEC);
    let Lookup::Stale(_, Some(refresh)) = cache.lookup(b"k") else {
        panic!("a stale entry hands out a refresh")
    };
    refresh.uncacheable(SEC);
    let s = cache.stats();
    assert_eq!(s.refreshes_started, 1);
    assert_eq!(
        s.fills_committed + s.fills_failed + s.fills_abandoned + s.fills_uncacheable,
        0,
        "no fill ticket was handed out"
    );
    assert_eq!(
        s.refreshes_committed
            + s.refreshes_failed
            + s.refreshes_abandoned
            + s.refreshes_uncacheable,
        1,
        "the one refresh ticket ended"
    );
}

// A waiter that takes over an abandoned fill and finds a stale entry (stored meanwhile) is
// served it without silently taking, and dropping, its refresh ticket: the next caller gets it.
#[test]
fn a_waiter_resolving_an_abandoned_fill_does_not_swallow_the_refresh_ticket() {
    let clock = ManualClock::new();
    let cache: Cache<u64> = cache(&clock, 60 * SEC);
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!("first lookup misses")
    };
    let Lookup::Wait(waiter) = cache.lookup(b"k") else {
        panic!("second lookup waits")
    };
    cache.insert(b"k", 1, ttl(0).with_swr(60 * SEC)).unwrap();
    drop(fill);
    assert!(matches!(waiter.try_wait(), Ok(Resolved::Hit(h)) if *h.value() == 1));
    let Lookup::Stale(_, Some(_refresh)) = cache.lookup(b"k") else {
        panic!("the next caller is handed the refresh")
    };
    assert_eq!(cache.stats().refreshes_abandoned, 0);
}

// ---------------------------------------------------------------------------------------------
// Capacity
// ---------------------------------------------------------------------------------------------

// Under concurrent inserts and fills of random sizes the stored weight never exceeds the
// capacity, and an object above the object limit is refused with `TooLarge` and not stored.
#[test]
fn weight_never_exceeds_capacity_and_too_large_objects_are_refused() {
    let clock = ManualClock::new();
    let cache: Cache<Bytes> = Cache::builder()
        .clock(clock.clone())
        .shards(4)
        .max_bytes(256 << 10)
        .weigher(|k, v: &Bytes| (k.len() + v.len()) as u64 + 64)
        .build();
    let limit = cache.max_object_weight();
    assert!(limit <= (256 << 10) / 4);
    let workers: Vec<_> = (0..4u64)
        .map(|t| {
            let cache = cache.clone();
            thread::spawn(move || {
                let mut rng = Rng(t);
                let (mut refused, mut over) = (0, Vec::new());
                for i in 0..1500u64 {
                    let len = rng.below(limit + limit / 4) as usize;
                    let key = [t.to_be_bytes(), i.to_be_bytes()].concat();
                    let weight = (key.len() + len) as u64 + 64;
                    let value = Bytes::from(vec![t as u8; len]);
                    let result = if rng.below(2) == 0 {
                        cache.insert(&key, value, ttl(60))
                    } else {
                        match cache.lookup(&key) {
                            Lookup::Miss(fill) => fill.commit(value, ttl(60)),
                            _ => panic!("a new key misses"),
                        }
                    };
                    match result {
                        Ok(()) => assert!(weight <= limit),
                        Err(InsertError::TooLarge {
                            weight: w,
                            limit: l,
                        }) => {
                            assert_eq!((w, l), (weight, limit));
                            assert!(weight > limit);
                            assert!(cache.get(&key).is_none(), "a refused object is not stored");
                            refused += 1;
                        }
                    }
                    let s = cache.stats();
                    if s.weight > s.capacity {
                        over.push((s.weight, s.capacity));
                    }
                }
                (refused, over)
            })
        })
        .collect();
    let mut refused = 0;
    for w in workers {
        let (r, over) = w.join().unwrap();
        assert_eq!(over, vec![], "(weight, capacity) seen over the capacity");
        refused += r;
    }
    let s = cache.stats();
    assert!(refused > 0 && s.evictions > 0);
    assert_eq!(s.rejected_too_large, refused);
    assert!(s.weight <= s.capacity);
}

// A fill in flight is not a stored entry: eviction pressure and `clear` leave it in place, so
// later lookups still wait for it and it still completes for its waiters.
#[test]
fn a_fill_in_flight_survives_eviction_pressure_and_clear() {
    let clock = ManualClock::new();
    let cache: Cache<u32> = Cache::builder()
        .clock(clock.clone())
        .shards(1)
        .max_bytes(16 << 10)
        .lock_timeout(3600 * SEC)
        .build();
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!("first lookup misses")
    };
    for i in 0u32..2000 {
        cache.insert(&i.to_be_bytes(), i, ttl(60)).unwrap();
    }
    assert!(cache.stats().evictions > 0);
    let Lookup::Wait(w1) = cache.lookup(b"k") else {
        panic!("the fill is still in flight after evictions")
    };
    fill.commit(1, ttl(60)).unwrap();
    assert!(matches!(w1.try_wait(), Ok(Resolved::Hit(h)) if *h.value() == 1));
    assert!(matches!(cache.lookup(b"k"), Lookup::Fresh(h) if *h.value() == 1));

    clock.advance(61 * SEC);
    let Lookup::Miss(fill) = cache.lookup(b"k") else {
        panic!("dead: a new fill")
    };
    cache.clear();
    let Lookup::Wait(w2) = cache.lookup(b"k") else {
        panic!("the fill is still in flight after clear")
    };
    fill.commit(2, ttl(60)).unwrap();
    assert!(matches!(w2.try_wait(), Ok(Resolved::Hit(h)) if *h.value() == 2));
}

// A tag purge is seen by every lookup that happens after it returned, on any thread, while
// other threads keep reading the same entries.
#[test]
fn a_tag_purge_is_seen_by_every_lookup_that_follows_it() {
    let clock = ManualClock::new();
    let cache: Cache<u64> = cache(&clock, 60 * SEC);
    for round in 0..50u64 {
        for k in 0..32u64 {
            cache
                .insert_tagged(&k.to_be_bytes(), round, ttl(60), &["all"])
                .unwrap();
        }
        let purged = Arc::new(AtomicBool::new(false));
        let late_hits = Arc::new(Mutex::new(Vec::new()));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let (cache, purged, late_hits) = (cache.clone(), purged.clone(), late_hits.clone());
                thread::spawn(move || {
                    for _ in 0..4 {
                        for k in 0..32u64 {
                            let after = purged.load(Ordering::Acquire);
                            if cache.get(&k.to_be_bytes()).is_some() && after {
                                late_hits.lock().unwrap().push(k);
                            }
                        }
                    }
                })
            })
            .collect();
        cache.purge_tag("all", PurgeMode::Hard);
        purged.store(true, Ordering::Release);
        for r in readers {
            r.join().unwrap();
        }
        assert_eq!(*late_hits.lock().unwrap(), vec![], "round {round}");
        assert!(cache.get(&0u64.to_be_bytes()).is_none());
    }
}
