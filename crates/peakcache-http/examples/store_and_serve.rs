//! The HTTP rules of peakcache-http around the core cache of peakcache, as a proxy applies
//! them: the key of a request (campaign parameters dropped), the upstream request of a miss,
//! whether and how long the origin's response may be stored, then a later hit served with
//! `Age` and `Cache-Status`.
//!
//! `cargo run -p peakcache-http --example store_and_serve`

use peakcache::{Cache, Lookup};
use peakcache_http::{Config, EntryMeta, Policy};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What the cache keeps per page: the response head, its body and the HTTP layer's timing facts.
struct Stored {
    head: http::response::Parts,
    body: &'static str,
    meta: EntryMeta,
}

fn visitor_request(uri: &str) -> http::request::Parts {
    let (parts, ()) = http::Request::get(uri)
        .header("host", "shop.example")
        .body(())
        .expect("a valid request")
        .into_parts();
    parts
}

fn origin_response() -> http::response::Parts {
    let (parts, ()) = http::Response::builder()
        .header("cache-control", "max-age=300, stale-while-revalidate=60")
        .header("surrogate-key", "shoes campaign:spring")
        .body(())
        .expect("a valid response")
        .into_parts();
    parts
}

fn main() {
    let policy = Policy::new(Config::default());
    let cache: Cache<Arc<Stored>> = Cache::new();
    let sent = SystemTime::now();

    // A visitor from the newsletter: the campaign parameter is not part of the key.
    let mut request = visitor_request("/shoes?utm_source=newsletter");
    let key = policy.key(&request).expect("a cacheable GET");
    println!("key: {key}");
    let Lookup::Miss(fill) = cache.lookup(key.as_bytes()) else {
        panic!("an empty cache misses");
    };

    // The miss fetches for everyone: what the key ignores is not sent to the origin.
    policy.prepare_upstream(&mut request);
    println!("upstream request: GET {}", request.uri);
    let mut response = origin_response();
    let received = sent + Duration::from_millis(30);
    let store = policy
        .on_response(&request, &response, sent, received)
        .expect("the response may be stored");
    store.prepare(&mut response);
    println!(
        "stored for {:?}, tags {:?}",
        store.freshness.ttl, store.tags
    );
    let stored = Stored {
        head: response,
        body: "<h1>Shoes</h1>",
        meta: store.meta,
    };
    fill.commit_tagged(Arc::new(stored), store.freshness, &store.tags)
        .expect("within the cache's limits");

    // Another visitor, ten seconds later, without the campaign parameter: a hit.
    let other = visitor_request("/shoes");
    let Lookup::Fresh(hit) = cache.lookup(policy.key(&other).expect("cacheable").as_bytes()) else {
        panic!("the page was just stored");
    };
    let now = received + Duration::from_secs(10);
    let stored = hit.value();
    let mut headers = stored.head.headers.clone();
    let status = policy.cache_status().hit().ttl(stored.meta.ttl_secs(now));
    policy.finish_response(&mut headers, Some(&stored.meta), now, &status);
    println!(
        "hit: age {:?}, cache-status {:?}, body {}",
        headers["age"], headers["cache-status"], stored.body
    );
    assert_eq!(headers["age"], "10");
}
