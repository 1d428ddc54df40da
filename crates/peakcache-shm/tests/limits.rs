//! Every builder setting of the shared cache at its largest: each gives a working region or a
//! clear `InvalidConfig` error, never an overflow panic. (The lifecycle's longest windows,
//! holds, timeouts and back-offs are in the shared suite, `lifecycle.rs`.)

use peakcache_shm::{Freshness, ShmCache, ShmError};
use std::time::Duration;

/// Builds an anonymous region with `tune` applied to a small builder.
fn build(
    tune: impl FnOnce(peakcache_shm::Builder) -> peakcache_shm::Builder,
) -> Result<ShmCache, ShmError> {
    tune(ShmCache::builder().max_bytes(1 << 20)).anonymous()
}

#[track_caller]
fn refused(r: Result<ShmCache, ShmError>, says: &str) {
    match r {
        Err(ShmError::InvalidConfig(why)) => assert!(why.contains(says), "{why}"),
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("accepted"),
    }
}

#[track_caller]
fn works(r: Result<ShmCache, ShmError>) {
    let c = r.expect("a region");
    c.insert(b"k", b"v", Freshness::new(Duration::from_secs(60)))
        .unwrap();
    assert_eq!(c.get(b"k").as_deref(), Some(&b"v"[..]));
}

#[test]
fn the_largest_capacity_is_refused_clearly() {
    refused(build(|b| b.max_bytes(u64::MAX)), "max_bytes");
}

#[test]
fn the_most_entries_are_refused_clearly() {
    refused(build(|b| b.max_entries(u64::MAX)), "slots per shard");
}

#[test]
fn the_most_shards_asked_for_are_capped() {
    let c = build(|b| b.max_bytes(64 << 20).shards(u32::MAX)).expect("a region");
    assert_eq!(c.region_info().shards, 4096);
    works(Ok(c));
}

#[test]
fn the_largest_object_limit_is_the_heap_of_a_shard() {
    let c = build(|b| b.shards(1).max_object_bytes(u64::MAX)).expect("a region");
    assert_eq!(c.max_object_bytes(), c.region_info().heap_bytes);
    works(Ok(c));
}

#[test]
fn the_largest_tag_table_and_journal_are_bounded() {
    refused(build(|b| b.journal_bytes(u64::MAX)), "purge journal");
    works(build(|b| b.tag_slots(u32::MAX).max_bytes(64 << 20)));
}

#[test]
fn the_longest_timings_and_lock_bound_work() {
    works(build(|b| {
        b.lock_timeout(Duration::MAX)
            .retry_backoff(Duration::MAX, Duration::MAX)
            .refresh_retry(Duration::MAX)
            .lock_bound(Duration::MAX)
    }));
}
