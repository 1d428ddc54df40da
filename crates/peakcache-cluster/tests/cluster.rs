//! The cluster link against a real redis-server per test (started on a free loopback port,
//! without persistence), with hosts that record what they are told to purge.

use bytes::Bytes;
use parking_lot::Mutex;
use peakcache::{Freshness, PurgeMode};
use peakcache_cluster::testing::{RedisServer, Relay};
use peakcache_cluster::{
    BusPosition, Cluster, Config, L2Entry, L2Lookup, Lease, LocalCache, Purge, Reject,
    SoftPurgeReason, Start,
};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A host's cache that remembers every purge it was told to apply, and the last bus position
/// it was told it had caught up to.
#[derive(Default)]
struct Recorder(Mutex<Vec<Purge>>, Mutex<Option<BusPosition>>);

impl LocalCache for Recorder {
    fn apply(&self, purge: &Purge) {
        self.0.lock().push(purge.clone());
    }

    fn caught_up(&self, position: &BusPosition) {
        *self.1.lock() = Some(position.clone());
    }
}

impl Recorder {
    fn has(&self, purge: &Purge) -> bool {
        self.0.lock().contains(purge)
    }

    fn count(&self, purge: &Purge) -> usize {
        self.0.lock().iter().filter(|p| *p == purge).count()
    }
}

struct Host {
    cluster: Cluster,
    seen: Arc<Recorder>,
}

fn config(url: &str, tune: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::new(url);
    c.name = "test".into();
    // Generous, so a loaded machine does not send a host alone; the tests of the fallback
    // set their own.
    c.op_timeout = Duration::from_millis(500);
    c.lock_timeout = Duration::from_secs(2);
    c.backoff_min = Duration::from_millis(20);
    c.backoff_max = Duration::from_millis(200);
    tune(&mut c);
    c
}

/// A host, once it has read the bus to its end (so it misses nothing published after).
async fn host(url: &str, tune: impl FnOnce(&mut Config)) -> Host {
    host_from(url, tune, Start::Fresh).await
}

/// A host starting to read the bus from `start`, once it has read it to its end.
async fn host_from(url: &str, tune: impl FnOnce(&mut Config), start: Start) -> Host {
    let seen = Arc::new(Recorder::default());
    let cluster = Cluster::start_from(config(url, tune), seen.clone(), start).unwrap();
    eventually("the host reads the bus", Duration::from_secs(5), || {
        cluster.stats().caught_up
    })
    .await;
    Host { cluster, seen }
}

async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn tag(t: &'static str, mode: PurgeMode) -> Purge {
    Purge::Tag {
        tag: Bytes::from_static(t.as_bytes()),
        mode,
    }
}

const SOFT_ALL: Purge = Purge::Everything {
    mode: PurgeMode::Soft,
};

fn page(primary: &'static str, tags: &[&'static str], body: &'static [u8]) -> L2Entry {
    L2Entry {
        head: Bytes::from_static(b"200"),
        body: Bytes::from_static(body),
        stored_at: SystemTime::now(),
        freshness: Freshness::new(Duration::from_secs(60)).with_swr(Duration::from_secs(30)),
        primary: Bytes::from_static(primary.as_bytes()),
        tags: tags
            .iter()
            .map(|t| Bytes::from_static(t.as_bytes()))
            .collect(),
    }
}

fn body(copy: &L2Entry) -> Result<Bytes, Reject> {
    Ok(copy.body.clone())
}

async fn lease(host: &Host, key: &[u8]) -> Lease {
    match host.cluster.lookup(key, body).await {
        L2Lookup::Fetch(lease) => lease,
        L2Lookup::Hit(b) => panic!("expected a miss, got a copy: {b:?}"),
    }
}

async fn copy(host: &Host, key: &[u8]) -> Option<Bytes> {
    match host.cluster.lookup(key, body).await {
        L2Lookup::Hit(b) => Some(b),
        L2Lookup::Fetch(_) => None,
    }
}

/// Waits until `host`'s own purges are all on the stream.
async fn published(host: &Host) {
    eventually("the outbox is published", Duration::from_secs(5), || {
        host.cluster.stats().outbox == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_on_one_host_is_applied_on_every_other_host_and_once_on_its_own() {
    let redis = RedisServer::start();
    let (a, b, c) = (
        host(&redis.url(), |_| {}).await,
        host(&redis.url(), |_| {}).await,
        host(&redis.url(), |_| {}).await,
    );
    let started = Instant::now();
    let purges = [
        tag("post:1", PurgeMode::Hard),
        Purge::Key {
            key: Bytes::from_static(b"GET http://shop/\0"),
            mode: PurgeMode::Soft,
        },
        Purge::Everything {
            mode: PurgeMode::Hard,
        },
        Purge::Freeze,
        Purge::Thaw,
    ];
    for p in &purges {
        a.cluster.purge(p.clone());
        assert!(a.seen.has(p), "applied on its own host at once");
    }
    eventually(
        "every purge reaches b and c",
        Duration::from_secs(2),
        || purges.iter().all(|p| b.seen.has(p) && c.seen.has(p)),
    )
    .await;
    println!("five purges on three hosts in {:?}", started.elapsed());
    published(&a).await;
    // The reader of `a` has read them back by now (b read later entries than these).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for p in &purges {
        assert_eq!(a.seen.count(p), 1, "{p:?} applied twice on its own host");
    }
    assert_eq!(b.cluster.stats().purges_applied, 5);
    assert_eq!(a.cluster.stats().purges_applied, 0);
    assert_eq!(a.cluster.stats().purges_published, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_made_while_redis_is_down_are_applied_everywhere_when_it_returns() {
    let mut redis = RedisServer::start();
    let (a, b) = (
        host(&redis.url(), |_| {}).await,
        host(&redis.url(), |_| {}).await,
    );
    a.cluster.purge(tag("before", PurgeMode::Hard));
    eventually("b reads the first purge", Duration::from_secs(2), || {
        b.seen.has(&tag("before", PurgeMode::Hard))
    })
    .await;
    redis.kill();
    let during = tag("during", PurgeMode::Soft);
    a.cluster.purge(during.clone());
    assert!(a.seen.has(&during), "applied locally while Redis is down");
    eventually("a notices Redis is gone", Duration::from_secs(2), || {
        !a.cluster.stats().connected
    })
    .await;
    assert_eq!(a.cluster.stats().outbox, 1, "queued for later");
    redis.restart();
    eventually(
        "b gets the purge made while Redis was down",
        Duration::from_secs(5),
        || b.seen.has(&during),
    )
    .await;
    // The restarted server lost the stream: b cannot know what else it missed.
    assert!(b.seen.has(&SOFT_ALL));
    assert!(b.cluster.stats().soft_purges_for(SoftPurgeReason::Reset) >= 1);
    assert!(b.cluster.stats().reconnects >= 1);
    assert_eq!(a.seen.count(&during), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_unread_purges_were_trimmed_soft_purges_everything_and_says_so() {
    // Small stream nodes, so MAXLEN ~ trims close to the limit.
    let redis = RedisServer::start_with(&["--stream-node-max-entries", "4"]);
    let relay = Relay::start(redis.addr()).await;
    let small = |c: &mut Config| {
        c.stream_max_len = 4;
        c.max_lag = Duration::from_secs(30); // this test is about trimming, not lag
    };
    let a = host(&redis.url(), small).await;
    let b = host(&relay.url(), small).await;
    relay.stall();
    for i in 0..40 {
        a.cluster.purge(Purge::Key {
            key: Bytes::from(format!("k{i}")),
            mode: PurgeMode::Hard,
        });
    }
    published(&a).await;
    assert!(!b.seen.has(&SOFT_ALL));
    relay.resume();
    let last = Purge::Key {
        key: Bytes::from_static(b"k39"),
        mode: PurgeMode::Hard,
    };
    eventually("b reads what is left", Duration::from_secs(5), || {
        b.seen.has(&last)
    })
    .await;
    assert!(b.seen.has(&SOFT_ALL), "everything marked stale");
    assert_eq!(
        b.cluster.stats().soft_purges_for(SoftPurgeReason::Trimmed),
        1
    );
    let keys_read = b
        .seen
        .0
        .lock()
        .iter()
        .filter(|p| matches!(p, Purge::Key { .. }))
        .count();
    assert!(
        keys_read < 20,
        "most were trimmed away, replaced by the soft purge: {keys_read}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cut_off_longer_than_max_lag_is_lagging_until_it_has_replayed_the_bus() {
    let redis = RedisServer::start();
    let relay = Relay::start(redis.addr()).await;
    let max_lag = |c: &mut Config| c.max_lag = Duration::from_millis(300);
    let a = host(&redis.url(), max_lag).await;
    let b = host(&relay.url(), max_lag).await;
    assert!(!b.cluster.is_lagging());
    relay.stall();
    let cut = Instant::now();
    eventually("b is lagging", Duration::from_secs(2), || {
        b.cluster.is_lagging()
    })
    .await;
    // The lag counts from the last read that proved b had everything, sent before the cut.
    let (noticed, lag) = (cut.elapsed(), b.cluster.stats().bus_lag);
    assert!(lag >= Duration::from_millis(300), "past max_lag: {lag:?}");
    assert!(
        noticed < Duration::from_millis(700),
        "promptly: {noticed:?}"
    );
    assert!(b.seen.has(&SOFT_ALL), "nothing is fresh any more");
    let missed = tag("while-cut-off", PurgeMode::Hard);
    a.cluster.purge(missed.clone());
    published(&a).await;
    // Still cut off: the soft purge is repeated, so what b fetches meanwhile is not fresh
    // longer than max_lag either.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = b.cluster.stats();
    assert!(stats.lagging && stats.bus_lag > Duration::from_millis(300));
    assert!(
        stats.soft_purges_for(SoftPurgeReason::Lagging) >= 2,
        "{stats:?}"
    );
    assert_eq!(stats.lag_events, 1);
    relay.resume();
    eventually("b catches up", Duration::from_secs(3), || {
        !b.cluster.is_lagging()
    })
    .await;
    eventually("and replays what it missed", Duration::from_secs(1), || {
        b.seen.has(&missed)
    })
    .await;
    assert!(b
        .cluster
        .stats()
        .to_prometheus("peakcache_cluster")
        .contains("peakcache_cluster_lag_events_total 1\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_host_fetches_and_the_others_are_woken_by_its_copy() {
    let redis = RedisServer::start();
    let (a, b, c) = (
        host(&redis.url(), |_| {}).await,
        host(&redis.url(), |_| {}).await,
        host(&redis.url(), |_| {}).await,
    );
    let key: &[u8] = b"GET http://shop/cold";
    let held = lease(&a, key).await;
    assert!(held.is_held());
    let waiting: Vec<_> = [b, c]
        .into_iter()
        .map(|h| {
            tokio::spawn(async move {
                let started = Instant::now();
                let got = copy(&h, key).await;
                (got, started.elapsed(), h)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let put_at = Instant::now();
    held.put(page("GET http://shop/cold", &["home"], b"cold page"));
    for w in waiting {
        let (got, waited, h) = w.await.unwrap();
        assert_eq!(got.as_deref(), Some(&b"cold page"[..]));
        assert!(
            waited >= Duration::from_millis(200),
            "it waited for the fill"
        );
        assert!(
            put_at.elapsed() < Duration::from_millis(500),
            "woken by the announcement, not at the lock timeout"
        );
        let s = h.cluster.stats();
        assert_eq!((s.leases_lost, s.l2_hits, s.leases_won), (1, 1, 0));
    }
    let s = a.cluster.stats();
    assert_eq!((s.leases_won, s.l2_writes), (1, 1));
    assert_eq!(copy(&a, key).await.as_deref(), Some(&b"cold page"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_released_without_a_copy_sends_the_waiter_to_the_origin_at_once() {
    let redis = RedisServer::start();
    let (a, b) = (
        host(&redis.url(), |_| {}).await,
        host(&redis.url(), |_| {}).await,
    );
    let held = lease(&a, b"k").await;
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let l = lease(&b, b"k").await;
        (l.is_held(), started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(held); // uncacheable, or the origin failed
    let (held_by_b, waited) = waiter.await.unwrap();
    assert!(held_by_b, "b takes the lease and fetches");
    assert!(
        waited < Duration::from_millis(1000),
        "not at the lock timeout: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_fetches_alone_after_the_lock_timeout() {
    let redis = RedisServer::start();
    // a's lease outlives b's lock timeout: a host stuck on a slow origin.
    let a = host(&redis.url(), |c| c.lock_timeout = Duration::from_secs(5)).await;
    let b = host(&redis.url(), |c| {
        c.lock_timeout = Duration::from_millis(300)
    })
    .await;
    let _held_and_stuck = lease(&a, b"k").await;
    let started = Instant::now();
    let l = lease(&b, b"k").await;
    let waited = started.elapsed();
    assert!(!l.is_held(), "b fetches alone");
    assert!(
        waited >= Duration::from_millis(290) && waited < Duration::from_millis(1000),
        "{waited:?}"
    );
    assert_eq!(b.cluster.stats().lease_waits_timed_out, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_expires_goes_to_the_next_host() {
    let redis = RedisServer::start();
    // a's lease lasts 300 ms; b would wait up to 2 s: b takes the lease when a's expires (with
    // equal timeouts, b's own wait could end first by the few ms between the two lookups).
    let a = host(&redis.url(), |c| {
        c.lock_timeout = Duration::from_millis(300)
    })
    .await;
    let b = host(&redis.url(), |c| c.lock_timeout = Duration::from_secs(2)).await;
    let _held_and_stuck = lease(&a, b"k").await;
    let started = Instant::now();
    let l = lease(&b, b"k").await;
    let waited = started.elapsed();
    // A duplicate fetch after the lease expired: acceptable; a stuck visitor is not.
    assert!(l.is_held(), "b holds the lease a let expire");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1000),
        "{waited:?}"
    );
    assert_eq!(b.cluster.stats().lease_waits_timed_out, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_reach_the_second_level_cache() {
    let redis = RedisServer::start();
    let (a, b) = (
        host(&redis.url(), |_| {}).await,
        host(&redis.url(), |_| {}).await,
    );
    let redis = &redis;
    let store = |key: &'static str, tags: &'static [&'static str]| {
        let a = &a;
        async move {
            lease(a, key.as_bytes()).await.put(page(key, tags, b"v1"));
            eventually("written", Duration::from_secs(2), || {
                redis.query(&["EXISTS", &format!("peakcache:{{test}}:l2:{key}")])
                    == Ok(redis::Value::Int(1))
            })
            .await;
        }
    };
    // By tag, soft or hard.
    store("/post", &["post:1"]).await;
    assert!(copy(&b, b"/post").await.is_some());
    b.cluster.purge(tag("post:1", PurgeMode::Soft));
    published(&b).await;
    assert_eq!(
        copy(&a, b"/post").await,
        None,
        "a soft purge retires the copy too"
    );
    // By primary key (every variant of it).
    store("/shop\0gzip", &[]).await;
    // (`page` names the variant key as primary; purge that)
    b.cluster.purge(Purge::Key {
        key: Bytes::from_static(b"/shop\0gzip"),
        mode: PurgeMode::Hard,
    });
    published(&b).await;
    assert_eq!(copy(&a, b"/shop\0gzip").await, None);
    // Everything.
    store("/any", &["x"]).await;
    b.cluster.purge(Purge::Everything {
        mode: PurgeMode::Hard,
    });
    published(&b).await;
    assert_eq!(copy(&a, b"/any").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_fetched_before_a_purge_of_its_tag_is_never_handed_out() {
    let redis = RedisServer::start();
    let (a, b) = (
        host(&redis.url(), |_| {}).await,
        host(&redis.url(), |_| {}).await,
    );
    // a takes the lease (reading the purge number), then fetches the old page...
    let held = lease(&a, b"/post").await;
    // ...while b purges its tag...
    b.cluster.purge(tag("post:1", PurgeMode::Hard));
    published(&b).await;
    // ...and only then a writes what it fetched.
    held.put(page("/post", &["post:1"], b"old"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(a.cluster.stats().l2_writes, 0, "not written");
    assert_eq!(copy(&b, b"/post").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_above_the_limit_skip_the_second_level_cache() {
    let redis = RedisServer::start();
    let small = |c: &mut Config| c.l2_max_body = 4;
    let (a, b) = (
        host(&redis.url(), small).await,
        host(&redis.url(), small).await,
    );
    let held = lease(&a, b"/big").await;
    let waiter = tokio::spawn(async move { (lease(&b, b"/big").await.is_held(), b) });
    tokio::time::sleep(Duration::from_millis(100)).await;
    held.put(page("/big", &[], b"too large"));
    let (held_by_b, b) = waiter.await.unwrap();
    assert!(held_by_b, "released at once, so b fetches without waiting");
    assert_eq!(a.cluster.stats().l2_too_large, 1);
    assert_eq!(b.cluster.stats().l2_hits, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_a_miss_waits_one_timeout_at_most_then_none() {
    let mut redis = RedisServer::start();
    let a = host(&redis.url(), |c| c.op_timeout = Duration::from_millis(100)).await;
    redis.kill();
    let started = Instant::now();
    let l = lease(&a, b"/x").await;
    assert!(!l.is_held());
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    for _ in 0..100 {
        assert!(!lease(&a, b"/x").await.is_held());
    }
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "skipped while down"
    );
    assert!(a.cluster.stats().l2_bypassed >= 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_costs_a_miss_one_timeout_at_most() {
    let redis = RedisServer::start();
    let a = host(&redis.url(), |c| c.op_timeout = Duration::from_millis(100)).await;
    redis.pause();
    let started = Instant::now();
    assert!(!lease(&a, b"/x").await.is_held());
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    redis.resume();
    eventually("Redis answers again", Duration::from_secs(3), || {
        a.cluster.stats().connected
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_joins_a_frozen_cluster_freezes() {
    let redis = RedisServer::start();
    let a = host(&redis.url(), |_| {}).await;
    a.cluster.purge(Purge::Freeze);
    published(&a).await;
    let late = host(&redis.url(), |_| {}).await;
    assert!(late.seen.has(&Purge::Freeze));
    a.cluster.purge(Purge::Thaw);
    published(&a).await;
    let later = host(&redis.url(), |_| {}).await;
    assert!(!later.seen.has(&Purge::Freeze));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_resuming_from_its_saved_position_applies_what_it_missed_and_nothing_more() {
    let redis = RedisServer::start();
    let a = host(&redis.url(), |_| {}).await;
    let b = host(&redis.url(), |_| {}).await;
    let before = tag("before", PurgeMode::Hard);
    a.cluster.purge(before.clone());
    eventually("b reads it", Duration::from_secs(2), || b.seen.has(&before)).await;
    let saved = b.seen.1.lock().clone().expect("a position saved");
    let saved = BusPosition::from_bytes(&saved.to_bytes()).expect("its bytes read back");
    drop(b);
    let missed = [
        tag("missed-1", PurgeMode::Soft),
        tag("missed-2", PurgeMode::Hard),
    ];
    for p in &missed {
        a.cluster.purge(p.clone());
    }
    published(&a).await;
    let b = host_from(&redis.url(), |_| {}, Start::Resume(saved)).await;
    eventually("b replays what it missed", Duration::from_secs(2), || {
        missed.iter().all(|p| b.seen.has(p))
    })
    .await;
    assert!(!b.seen.has(&before), "read before it stopped: not again");
    assert!(!b.seen.has(&SOFT_ALL), "nothing missed, nothing guessed");
    let at = b.seen.1.lock().clone().unwrap();
    assert_eq!(at.seq(), 3, "and saves where it is");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_resuming_from_a_position_the_bus_no_longer_holds_marks_everything_stale() {
    let mut redis = RedisServer::start();
    let a = host(&redis.url(), |_| {}).await;
    a.cluster.purge(tag("one", PurgeMode::Hard));
    a.cluster.purge(tag("two", PurgeMode::Hard));
    published(&a).await;
    eventually("a saves its place", Duration::from_secs(2), || {
        a.seen.1.lock().as_ref().is_some_and(|p| p.seq() == 2)
    })
    .await;
    let saved = a.seen.1.lock().clone().unwrap();
    drop(a);
    // The server lost everything: its purge counter is behind the saved position.
    redis.restart();
    let b = host_from(&redis.url(), |_| {}, Start::Resume(saved)).await;
    assert!(b.seen.has(&SOFT_ALL));
    assert_eq!(b.cluster.stats().soft_purges_for(SoftPurgeReason::Reset), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_joining_with_entries_of_unknown_history_marks_them_stale_once() {
    let redis = RedisServer::start();
    let a = host_from(&redis.url(), |_| {}, Start::Unknown).await;
    assert_eq!(a.seen.count(&SOFT_ALL), 1);
    assert_eq!(
        a.cluster.stats().soft_purges_for(SoftPurgeReason::Joined),
        1
    );
    assert!(a
        .cluster
        .stats()
        .to_prometheus("peakcache_cluster")
        .contains("peakcache_cluster_soft_purges_everything_total{reason=\"joined\"} 1\n"));
    let fresh = host(&redis.url(), |_| {}).await;
    assert!(
        !fresh.seen.has(&SOFT_ALL),
        "an empty cache has nothing to mark"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_published_for_others_is_not_applied_here_and_reaches_every_other_host() {
    let redis = RedisServer::start();
    let a = host(&redis.url(), |_| {}).await;
    let b = host(&redis.url(), |_| {}).await;
    let p = tag("made-by-a-worker", PurgeMode::Soft);
    a.cluster.publish(p.clone());
    eventually("b applies it", Duration::from_secs(2), || b.seen.has(&p)).await;
    published(&a).await;
    assert_eq!(a.cluster.unpublished(), 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!a.seen.has(&p), "already applied by whoever made it");
}
