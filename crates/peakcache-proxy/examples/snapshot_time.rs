//! How long a snapshot of the proxy's cache takes to write and to restore, and how long the
//! listing holds any one shard:
//!
//! ```text
//! cargo run --release -p peakcache-proxy --example snapshot_time [ENTRIES [BODY_BYTES]]
//! ```
//!
//! Default: 10,000 responses of 1 KiB (a quick run). `100000 10240` is about 1 GiB. The cache
//! is filled directly (no origin), with responses as the proxy stores them (five header fields,
//! three tags each); the snapshot goes to the system's temporary directory and is removed.

use bytes::Bytes;
use peakcache::Freshness;
use peakcache_http::{EntryMeta, StaleWindows, Vary, VaryKey};
use peakcache_proxy::stored::Cached;
use peakcache_proxy::{Config, Proxy};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .map_or(default, |a| a.parse().expect("a number"))
}

/// A stored response of `len` body bytes, as the proxy keeps one.
fn response(i: u64, len: usize) -> Cached {
    let (parts, ()) = http::Response::builder()
        .status(200)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "max-age=600, stale-while-revalidate=60")
        .header("etag", format!("\"v{i}\""))
        .header("last-modified", "Tue, 15 Nov 1994 12:45:26 GMT")
        .header("surrogate-key", format!("product-{i} release-1"))
        .body(())
        .expect("a valid response")
        .into_parts();
    let mut body = vec![b'.'; len];
    body[..8].copy_from_slice(&i.to_le_bytes());
    Cached {
        parts,
        body: Bytes::from(body),
        meta: EntryMeta {
            response_time: SystemTime::now(),
            initial_age: Duration::ZERO,
            lifetime: Duration::from_secs(600),
            windows: StaleWindows {
                swr: Duration::from_secs(60),
                sie: Duration::ZERO,
            },
            origin_windows: StaleWindows {
                swr: Duration::from_secs(60),
                sie: Duration::ZERO,
            },
        },
        vary: Vary::from_names([]),
        vary_key: VaryKey::from_bytes(Bytes::new()),
    }
}

fn proxy(total: u64, body: u64) -> Proxy {
    Proxy::new(Config {
        // Room for every entry whatever shard it lands in.
        size: (total * 2).max(64 << 20),
        max_object: body.max(1 << 20),
        ..Config::default()
    })
}

fn main() {
    let entries = arg(1, 10_000);
    let body = arg(2, 1024);
    let total = entries * body;
    let path =
        std::env::temp_dir().join(format!("peakcache-proxy-{}.snapshot", std::process::id()));

    let source = proxy(total, body);
    let ttl = Freshness::new(Duration::from_secs(600)).with_swr(Duration::from_secs(60));
    for i in 0..entries {
        let key = format!("GET http://shop.example/product/{i}");
        let tags = [key.as_str(), "\0every-entry", "release-1"];
        source
            .cache()
            .insert_tagged(
                key.as_bytes(),
                Arc::new(response(i, body as usize)),
                ttl,
                &tags,
            )
            .expect("fits");
    }
    assert_eq!(source.cache().len() as u64, entries, "nothing evicted");

    // The longest one step of the listing takes: one shard copied under its lock. The first
    // listing also checks every entry's tags against the purges for the first time.
    let longest = || {
        let mut longest = Duration::ZERO;
        let mut listing = source.cache().list();
        loop {
            let t = Instant::now();
            let next = listing.next();
            longest = longest.max(t.elapsed());
            if next.is_none() {
                return longest;
            }
        }
    };
    let (first, then) = (longest(), longest());

    let written = source.snapshot(&path).expect("written");
    let target = proxy(total, body);
    let restored = target.restore(&path, false).expect("restored");
    assert_eq!(restored.responses, entries);
    let rollback = source.restore(&path, true).expect("rolled back");
    assert_eq!(rollback.responses, entries);
    let _ = std::fs::remove_file(&path);

    let mib = written.bytes as f64 / f64::from(1 << 20);
    println!(
        "{entries} responses of {body} B, {} shards: snapshot of {mib:.0} MiB written in \
         {:.2} s (fsync included); the longest a shard was held for the listing: {:.2} ms \
         (the first listing), {:.2} ms (the next)",
        source.cache().shard_count(),
        written.took.as_secs_f64(),
        first.as_secs_f64() * 1e3,
        then.as_secs_f64() * 1e3
    );
    println!(
        "restored into an empty proxy in {:.2} s; rollback (freeze, empty, restore) in {:.2} s \
         (the file in the page cache)",
        restored.took.as_secs_f64(),
        rollback.took.as_secs_f64()
    );
}
