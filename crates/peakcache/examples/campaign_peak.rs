//! A campaign peak: 8 threads ask for 5 pages 200 times each, against an origin that takes
//! 50 ms a page. peakcache lets one request per page through; every other caller waits for
//! that answer or is served from memory.
//!
//! `cargo run -p peakcache --example campaign_peak`

use peakcache::{Cache, Freshness, Lookup, Resolved};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The slow origin: renders a page, counting how often it is asked.
fn render(origin_requests: &AtomicUsize, key: &[u8]) -> String {
    origin_requests.fetch_add(1, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(50));
    format!("<h1>{}</h1>", String::from_utf8_lossy(key))
}

/// Serves one request: from the cache when it can, from the origin once per page otherwise.
fn serve(cache: &Cache<String>, origin_requests: &AtomicUsize, key: &[u8]) -> String {
    let ttl = Freshness::new(Duration::from_secs(60)).with_swr(Duration::from_secs(30));
    match cache.lookup(key) {
        Lookup::Fresh(hit) | Lookup::Stale(hit, None) => hit.into_value(),
        Lookup::Stale(hit, Some(refresh)) => {
            // A real host refreshes after answering; nothing goes stale in this run.
            let _ = refresh.commit(render(origin_requests, key), ttl);
            hit.into_value()
        }
        Lookup::Miss(fill) => {
            let page = render(origin_requests, key);
            let _ = fill.commit(page.clone(), ttl);
            page
        }
        Lookup::Wait(waiter) => match waiter.wait(Duration::from_secs(5)) {
            Resolved::Hit(hit) => hit.into_value(),
            Resolved::Fill(fill) => {
                let page = render(origin_requests, key);
                let _ = fill.commit(page.clone(), ttl);
                page
            }
            Resolved::Pass | Resolved::TimedOut | Resolved::Failed => render(origin_requests, key),
        },
        Lookup::Pass => render(origin_requests, key),
    }
}

fn main() {
    let cache: Arc<Cache<String>> = Arc::new(Cache::builder().max_bytes(64 << 20).build());
    let origin_requests = Arc::new(AtomicUsize::new(0));
    let pages: [&[u8]; 5] = [b"/spring", b"/summer", b"/autumn", b"/winter", b"/"];
    let started = Instant::now();

    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (cache, origin_requests) = (Arc::clone(&cache), Arc::clone(&origin_requests));
            std::thread::spawn(move || {
                for i in 0..200 {
                    let key = pages[(t + i) % pages.len()];
                    let page = serve(&cache, &origin_requests, key);
                    assert_eq!(page, format!("<h1>{}</h1>", String::from_utf8_lossy(key)));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a serving thread panicked");
    }

    let stats = cache.stats();
    let fetched = origin_requests.load(Ordering::Relaxed);
    println!(
        "1600 requests in {:?}: {} reached the origin, {} fresh hits, {} waited for a fill",
        started.elapsed(),
        fetched,
        stats.fresh,
        stats.wait
    );
    assert_eq!(fetched, pages.len(), "one origin request per page");
}
