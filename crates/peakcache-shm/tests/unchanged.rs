//! `ShmCache::lookup_unchanged`: a host that keeps what it derived from a hit asks whether the
//! key's fresh value is still that one, without copying it out. It says yes exactly when the
//! locked lookup would answer a fresh hit of the same stored value, and counts like it.

use peakcache::{Freshness, ManualClock, PurgeMode, Served};
use peakcache_shm::{Lookup, ShmCache};
use std::time::Duration;

fn cache() -> (ShmCache, ManualClock) {
    let clock = ManualClock::new();
    let c = ShmCache::builder()
        .max_bytes(1 << 20)
        .shards(2)
        .clock(clock.clone())
        .anonymous()
        .unwrap();
    (c, clock)
}

fn fresh(c: &ShmCache, key: &[u8]) -> peakcache_shm::Hit {
    match c.lookup(key) {
        Lookup::Fresh(hit) => hit,
        _ => panic!("expected a fresh hit"),
    }
}

const TTL: Duration = Duration::from_secs(10);

#[test]
fn the_same_fresh_value_is_unchanged_with_its_lifetimes_and_counted_as_a_fresh_hit() {
    let (c, _) = cache();
    c.insert(b"k", b"value", Freshness::new(TTL)).unwrap();
    let hit = fresh(&c, b"k");
    assert_eq!(fresh(&c, b"k").seq(), hit.seq(), "every read of one value");
    let before = c.stats();
    let u = c
        .lookup_unchanged(b"k", hit.seq())
        .expect("still that value");
    assert_eq!(u.stored_at(), hit.stored_at());
    assert_eq!(u.fresh_until(), hit.fresh_until());
    assert_eq!(u.revalidate_until(), hit.revalidate_until());
    assert_eq!(u.error_until(), hit.error_until());
    let after = c.stats();
    assert_eq!(after.fresh, before.fresh + 1);
    assert_eq!(after.miss, before.miss);
}

#[test]
fn a_replaced_value_is_changed_even_with_the_same_bytes() {
    let (c, _) = cache();
    c.insert(b"k", b"value", Freshness::new(TTL)).unwrap();
    let old = fresh(&c, b"k");
    c.insert(b"k", b"value", Freshness::new(TTL)).unwrap();
    let before = c.stats();
    assert_eq!(c.lookup_unchanged(b"k", old.seq()), None);
    assert_eq!(
        c.stats().fresh,
        before.fresh,
        "not counted: the lookup that follows is"
    );
    assert_ne!(fresh(&c, b"k").seq(), old.seq());
}

#[test]
fn a_stale_value_is_unchanged_only_once_its_refresh_ticket_is_out() {
    let (c, clock) = cache();
    let w = Freshness::new(TTL).with_swr(Duration::from_secs(30));
    c.insert(b"stale", b"v", w).unwrap();
    let hit = fresh(&c, b"stale");
    clock.advance(TTL);
    assert_eq!(
        c.lookup_unchanged(b"stale", hit.seq()),
        None,
        "the next lookup hands out the refresh ticket"
    );
    let Lookup::Stale(_, Some(refresh)) = c.lookup(b"stale") else {
        panic!("a stale hit with the refresh ticket")
    };
    let before = c.stats();
    let u = c
        .lookup_unchanged(b"stale", hit.seq())
        .expect("served stale meanwhile");
    assert_eq!(u.served(), Served::Stale);
    assert_eq!(c.stats().stale, before.stale + 1);
    drop(refresh);
}

#[test]
fn a_value_past_its_windows_purged_or_absent_is_changed() {
    let (c, clock) = cache();
    let w = Freshness::new(TTL).with_swr(Duration::from_secs(30));
    c.insert(b"dead", b"v", w).unwrap();
    let dead = fresh(&c, b"dead");
    clock.advance(TTL + Duration::from_secs(30));
    assert_eq!(c.lookup_unchanged(b"dead", dead.seq()), None);

    c.insert(b"soft", b"v", w).unwrap();
    let soft = fresh(&c, b"soft");
    assert!(c.purge(b"soft", PurgeMode::Soft));
    assert_eq!(
        c.lookup_unchanged(b"soft", soft.seq()),
        None,
        "stale: the next lookup refreshes"
    );

    c.insert_tagged(b"tagged", b"v", w, &[b"t"]).unwrap();
    let tagged = fresh(&c, b"tagged");
    c.purge_tag(b"t", PurgeMode::Soft);
    assert_eq!(c.lookup_unchanged(b"tagged", tagged.seq()), None);

    c.insert(b"hard", b"v", w).unwrap();
    let hard = fresh(&c, b"hard");
    assert!(c.purge(b"hard", PurgeMode::Hard));
    assert_eq!(c.lookup_unchanged(b"hard", hard.seq()), None);
    assert_eq!(c.lookup_unchanged(b"never", hard.seq()), None);
}

#[test]
fn a_stale_value_is_unchanged_while_frozen_as_lookup_serves_it_fresh() {
    let (c, clock) = cache();
    c.insert(b"k", b"v", Freshness::new(TTL)).unwrap();
    let hit = fresh(&c, b"k");
    clock.advance(TTL * 2);
    c.freeze(true);
    assert!(c.lookup_unchanged(b"k", hit.seq()).is_some());
    assert_eq!(fresh(&c, b"k").seq(), hit.seq());
}

#[test]
fn a_record_of_another_region_is_changed_though_numbered_and_timed_alike() {
    let (a, _) = cache();
    let (b, _) = cache();
    a.insert(b"k", b"v", Freshness::new(TTL)).unwrap();
    b.insert(b"k", b"v", Freshness::new(TTL)).unwrap();
    let hit = fresh(&a, b"k");
    assert_eq!(fresh(&b, b"k").stored_at(), hit.stored_at());
    assert_eq!(b.lookup_unchanged(b"k", hit.seq()), None);
    assert!(a.lookup_unchanged(b"k", hit.seq()).is_some());
}
