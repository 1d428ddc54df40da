//! The per-second history in the region: every process attached adds to one ring.

use peakcache::HostCounts;
use peakcache_shm::{Freshness, Lookup, ShmCache};
use std::time::Duration;

fn region(name: &str) -> (std::path::PathBuf, ShmCache) {
    let path = std::env::temp_dir().join(format!(
        "peakcache-history-{}-{name}.shm",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let (cache, _) = ShmCache::builder().max_bytes(1 << 20).open(&path).unwrap();
    (path, cache)
}

#[test]
fn two_attachments_share_one_ring_and_one_sample_a_second() {
    let (path, a) = region("share");
    let b = ShmCache::attach(&path).unwrap();
    if let Lookup::Miss(fill) = a.lookup(b"/page") {
        fill.commit(b"body", Freshness::new(Duration::from_secs(60)))
            .unwrap();
    }
    assert!(matches!(b.lookup(b"/page"), Lookup::Fresh(_)));
    let visitors = HostCounts {
        visitor_requests: 5,
        visitor_errors: 1,
        ..HostCounts::default()
    };
    // A second boundary between the two ticks would give each its own sample: retry once.
    let mut wrote = 0;
    for _ in 0..2 {
        let second = peakcache::history::unix_second();
        wrote = usize::from(a.tick(&visitors)) + usize::from(b.tick(&visitors));
        if peakcache::history::unix_second() == second {
            break;
        }
    }
    assert_eq!(wrote, 1, "one process writes a second's sample");
    let totals = b.history().host_totals();
    assert!(totals.visitor_requests >= 10, "{totals:?}");
    let last = a.history().last_second();
    let sample = b
        .history()
        .sample(last)
        .expect("the sample is in the region");
    assert_eq!(sample.get("fresh"), Some(1));
    assert_eq!(sample.get("entries"), Some(1));
    assert_eq!(sample.get("frozen"), Some(0));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn history_survives_detaching_every_process() {
    let (path, a) = region("keep");
    a.tick(&HostCounts {
        origin_errors: 3,
        ..HostCounts::default()
    });
    drop(a);
    let b = ShmCache::attach(&path).unwrap();
    assert_eq!(b.history().host_totals().origin_errors, 3);
    assert!(b.history().last_second() > 0);
    std::fs::remove_file(&path).unwrap();
}
