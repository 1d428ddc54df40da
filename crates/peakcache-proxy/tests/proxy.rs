//! The proxy end to end, on loopback, against a scripted origin that counts its requests.

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use peakcache_proxy::{serve, Config, Proxy};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// What the test origin answers for a path prefix.
#[derive(Clone)]
struct Page {
    cache_control: &'static str,
    extra: Vec<(&'static str, &'static str)>,
    body_len: usize,
    delay: Duration,
    /// The status of a full answer.
    status: u16,
    /// A fixed ETag, answered with 304 when the request's If-None-Match matches it; `None`
    /// gives every answer a new ETag.
    etag: Option<&'static str>,
}

fn page(cache_control: &'static str) -> Page {
    Page {
        cache_control,
        extra: vec![],
        body_len: 100,
        delay: Duration::from_millis(50),
        status: 200,
        etag: None,
    }
}

#[derive(Default)]
struct Origin {
    hits: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    failing: AtomicBool,
    pages: Mutex<Vec<(&'static str, Page)>>,
    /// Requests that carried If-None-Match.
    conditional: AtomicU64,
    /// Every request received: path, headers, body length.
    seen: Mutex<Vec<(String, http::HeaderMap, usize)>>,
}

impl Origin {
    fn count(&self, path: &str) -> u64 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// The headers of every request the origin got for `path`.
    fn requests(&self, path: &str) -> Vec<(http::HeaderMap, usize)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, ..)| p == path)
            .map(|(_, h, n)| (h.clone(), *n))
            .collect()
    }

    async fn answer(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let (parts, incoming) = req.into_parts();
        let received = incoming.collect().await.map_or(0, |b| b.to_bytes().len());
        self.seen
            .lock()
            .unwrap()
            .push((path.clone(), parts.headers.clone(), received));
        let req = Request::from_parts(parts, ());
        *self.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        let n = self.total.fetch_add(1, Ordering::SeqCst) + 1;
        let page = self
            .pages
            .lock()
            .unwrap()
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix))
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| page("max-age=60"));
        tokio::time::sleep(page.delay).await;
        if self.failing.load(Ordering::SeqCst) {
            return Response::builder()
                .status(503)
                .body(Full::new(Bytes::from_static(b"down")))
                .unwrap();
        }
        let inm = req.headers().get("if-none-match").cloned();
        if inm.is_some() {
            self.conditional.fetch_add(1, Ordering::SeqCst);
        }
        if let (Some(etag), Some(inm)) = (page.etag, inm) {
            if inm == etag {
                return Response::builder()
                    .status(304)
                    .header("cache-control", page.cache_control)
                    .header("etag", etag)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
            }
        }
        let host = req
            .headers()
            .get("host")
            .map(|h| h.to_str().unwrap_or("?").to_owned())
            .unwrap_or_default();
        let mut body = format!("{path} #{n} host={host} ").into_bytes();
        body.resize(page.body_len.max(body.len()), b'.');
        let etag = page.etag.map_or_else(|| format!("\"v{n}\""), str::to_owned);
        let mut r = Response::builder()
            .status(page.status)
            .header("cache-control", page.cache_control)
            .header("etag", etag);
        for (k, v) in &page.extra {
            r = r.header(*k, *v);
        }
        r.body(Full::new(Bytes::from(body))).unwrap()
    }
}

struct Rig {
    origin: Arc<Origin>,
    url: String,
    admin: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

async fn rig(tune: impl FnOnce(&mut Config)) -> Rig {
    let origin = Arc::new(Origin::default());
    let o = origin.clone();
    let oaddr = common::serve_http(move |req| o.clone().answer(req)).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, admin_addr): (SocketAddr, SocketAddr) =
        (listener.local_addr().unwrap(), admin.local_addr().unwrap());
    let mut config = Config {
        origin: format!("http://{oaddr}").parse().unwrap(),
        listen: addr,
        ..Config::default()
    };
    tune(&mut config);
    tokio::spawn(serve(Arc::new(Proxy::new(config)), listener, Some(admin)));
    Rig {
        origin,
        url: format!("http://{addr}"),
        admin: format!("http://{admin_addr}"),
        client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
    }
}

struct Answer {
    status: StatusCode,
    cache_status: String,
    body: Bytes,
}

impl Rig {
    fn set(&self, prefix: &'static str, page: Page) {
        self.origin.pages.lock().unwrap().push((prefix, page));
    }

    async fn send(&self, method: &str, url: String) -> Answer {
        self.send_with(method, url, &[]).await
    }

    async fn send_with(&self, method: &str, url: String, headers: &[(&str, &str)]) -> Answer {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Empty::new()).unwrap();
        let res = self.client.request(req).await.unwrap();
        let status = res.status();
        let cache_status = res
            .headers()
            .get("cache-status")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            cache_status,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", format!("{}{path}", self.url)).await
    }

    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send_with("GET", format!("{}{path}", self.url), headers)
            .await
    }

    /// Sends `request` as raw bytes on a new connection and returns everything the proxy
    /// answers until it closes the connection (send `Connection: close`).
    async fn raw(&self, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.url.trim_start_matches("http://"))
            .await
            .unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        assert!(read.is_ok(), "the proxy answered within 5 s");
        String::from_utf8_lossy(&out).into_owned()
    }

    async fn admin(&self, path_and_query: &str) -> Answer {
        self.send("POST", format!("{}{path_and_query}", self.admin))
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_miss_is_stored_and_the_next_request_hits() {
    let rig = rig(|_| {}).await;
    let first = rig.get("/a").await;
    assert_eq!(first.status, 200);
    assert!(
        first.cache_status.contains("fwd=uri-miss"),
        "{}",
        first.cache_status
    );
    assert!(first.cache_status.contains("stored"));
    let second = rig.get("/a").await;
    assert!(
        second.cache_status.starts_with("peakcache; hit"),
        "{}",
        second.cache_status
    );
    assert_eq!(first.body, second.body);
    assert_eq!(rig.origin.count("/a"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_spike_sends_one_request_to_the_origin() {
    let rig = Arc::new(rig(|_| {}).await);
    rig.set(
        "/spike",
        Page {
            delay: Duration::from_millis(200),
            ..page("max-age=60")
        },
    );
    let visitors: Vec<_> = (0..100)
        .map(|_| {
            let rig = rig.clone();
            tokio::spawn(async move { rig.get("/spike").await })
        })
        .collect();
    let mut bodies = Vec::new();
    for v in visitors {
        let a = v.await.unwrap();
        assert_eq!(a.status, 200);
        bodies.push(a.body);
    }
    assert_eq!(
        rig.origin.count("/spike"),
        1,
        "one origin request for 100 visitors"
    );
    assert!(bodies.iter().all(|b| b == &bodies[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_outlives_visitors_who_leave() {
    use tokio::io::AsyncWriteExt;
    let rig = rig(|_| {}).await;
    rig.set(
        "/left",
        Page {
            delay: Duration::from_millis(300),
            ..page("max-age=60")
        },
    );
    // three visitors, one after another, each giving up after 100 ms: the first fills, the
    // others wait; all close their connections before the origin answers
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(rig.url.trim_start_matches("http://"))
            .await
            .unwrap();
        s.write_all(b"GET /left HTTP/1.1\r\nhost: example.test\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.origin.count("/left"), 1, "one origin request");
    let next = rig.get_with("/left", &[("host", "example.test")]).await;
    assert!(
        next.cache_status.starts_with("peakcache; hit"),
        "the page was stored: {}",
        next.cache_status
    );
    assert_eq!(rig.origin.count("/left"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_purged_page_is_served_stale_and_refreshed_once_in_the_background() {
    let rig = rig(|_| {}).await;
    rig.set("/news", page("max-age=600, stale-while-revalidate=60"));
    let v1 = rig.get("/news").await.body;
    let purged = rig
        .admin(&format!(
            "/purge?url={}/news&soft=1",
            rig.url.replace("http://", "http%3A%2F%2F")
        ))
        .await;
    assert_eq!(purged.status, 200);
    let started = Instant::now();
    let stale = rig.get("/news").await;
    assert!(
        started.elapsed() < Duration::from_millis(40),
        "stale answered without waiting for the origin"
    );
    assert_eq!(stale.body, v1);
    assert!(
        stale.cache_status.contains("detail=stale-while-revalidate"),
        "{}",
        stale.cache_status
    );
    for _ in 0..100 {
        if rig.origin.count("/news") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut fresh = rig.get("/news").await;
    for _ in 0..100 {
        if fresh.body != v1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        fresh = rig.get("/news").await;
    }
    assert_ne!(
        fresh.body, v1,
        "the background refresh replaced the stale copy"
    );
    assert_eq!(rig.origin.count("/news"), 2, "exactly one refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_origin_gets_the_stale_copy_served_and_is_probed_not_hammered() {
    let rig = rig(|_| {}).await;
    rig.set("/shop", page("max-age=600, stale-if-error=3600"));
    let good = rig.get("/shop").await.body;
    rig.origin.failing.store(true, Ordering::SeqCst);
    rig.admin("/purge?tag=http%3A%2F%2Fx&soft=1").await; // unrelated tag: nothing changes
    let key_url = format!("{}/shop", rig.url).replace("http://", "http%3A%2F%2F");
    rig.admin(&format!("/purge?url={key_url}&soft=1")).await;
    for _ in 0..20 {
        let a = rig.get("/shop").await;
        assert_eq!(a.status, 200, "visitors never see the origin's error");
        assert_eq!(a.body, good);
    }
    assert_eq!(rig.origin.count("/shop"), 2, "one probe, then back-off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_pages_are_not_serialized_behind_one_request() {
    let rig = Arc::new(rig(|_| {}).await);
    rig.set(
        "/account",
        Page {
            delay: Duration::from_millis(300),
            ..page("private")
        },
    );
    let _ = rig.get("/account").await; // learns it is uncacheable
    let started = Instant::now();
    let visitors: Vec<_> = (0..10)
        .map(|_| {
            let rig = rig.clone();
            tokio::spawn(async move { rig.get("/account").await })
        })
        .collect();
    for v in visitors {
        assert_eq!(v.await.unwrap().status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "ten uncacheable requests ran in parallel"
    );
    assert_eq!(rig.origin.count("/account"), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_the_object_limit_streams_through_uncached() {
    let rig = rig(|c| c.max_object = 10_000).await;
    rig.set(
        "/big",
        Page {
            body_len: 50_000,
            ..page("max-age=60")
        },
    );
    let a = rig.get("/big").await;
    assert_eq!(a.body.len(), 50_000);
    let b = rig.get("/big").await;
    assert_eq!(b.body.len(), 50_000);
    assert_eq!(rig.origin.count("/big"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_purge_and_an_unsafe_method_invalidate() {
    let rig = rig(|_| {}).await;
    rig.set(
        "/post",
        Page {
            extra: vec![("surrogate-key", "post-1 home")],
            ..page("max-age=600")
        },
    );
    rig.get("/post/1").await;
    rig.get("/post/1?utm_source=mail").await; // campaign parameters do not split the key
    assert_eq!(rig.origin.count("/post/1"), 1);
    rig.admin("/purge?tag=post-1").await;
    rig.get("/post/1").await;
    assert_eq!(rig.origin.count("/post/1"), 2);
    let put = rig.send("POST", format!("{}/post/1", rig.url)).await;
    assert_eq!(put.status, 200);
    rig.get("/post/1").await;
    assert_eq!(
        rig.origin.count("/post/1"),
        4,
        "the POST went through and invalidated the page"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_origin_bound_visitors_get_503_quickly() {
    let rig = Arc::new(rig(|c| c.origin_concurrency = 2).await);
    rig.set(
        "/slow",
        Page {
            delay: Duration::from_millis(500),
            ..page("no-store")
        },
    );
    let visitors: Vec<_> = (0..6)
        .map(|i| {
            let rig = rig.clone();
            tokio::spawn(async move { rig.get(&format!("/slow/{i}")).await })
        })
        .collect();
    let statuses: Vec<u16> = futures_join(visitors)
        .await
        .iter()
        .map(|a| a.status.as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        4,
        "{statuses:?}"
    );
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<Answer>>) -> Vec<Answer> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_the_admin_listener() {
    let rig = rig(|_| {}).await;
    rig.get("/m").await;
    rig.get("/m").await;
    let req = Request::get(format!("{}/metrics", rig.admin))
        .body(Empty::new())
        .unwrap();
    let text = rig
        .client
        .request(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(text.to_vec()).unwrap();
    assert!(
        text.contains("peakcache_lookups_total{outcome=\"fresh\"} 1"),
        "{text}"
    );
    assert!(text.contains("peakcache_origin_requests_total 1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9111_4_3_1_an_expired_response_is_revalidated_and_a_304_freshens_it() {
    let rig = rig(|_| {}).await;
    rig.set(
        "/doc",
        Page {
            etag: Some("\"x\""),
            ..page("max-age=1")
        },
    );
    let first = rig.get("/doc").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = rig.get("/doc").await;
    assert_eq!(second.status, 200);
    assert_eq!(
        second.body, first.body,
        "the stored body, freshened by the 304"
    );
    assert_eq!(rig.origin.conditional.load(Ordering::SeqCst), 1);
    assert!(
        second
            .cache_status
            .contains("fwd=stale; fwd-status=304; stored"),
        "{}",
        second.cache_status
    );
    let third = rig.get("/doc").await;
    assert!(
        third.cache_status.starts_with("peakcache; hit"),
        "{}",
        third.cache_status
    );
    assert_eq!(rig.origin.count("/doc"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9111_4_4_an_unsafe_method_also_forgets_the_copy_kept_for_revalidation() {
    let rig = rig(|_| {}).await;
    rig.set(
        "/item",
        Page {
            etag: Some("\"x\""),
            ..page("max-age=1")
        },
    );
    let _ = rig.get("/item").await;
    let _ = rig.send("POST", format!("{}/item", rig.url)).await;
    let again = rig.get("/item").await;
    assert!(
        again.cache_status.contains("fwd=uri-miss"),
        "{}",
        again.cache_status
    );
    assert_eq!(rig.origin.conditional.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9111_5_2_1_4_request_no_cache_validates_a_fresh_response_first() {
    let rig = rig(|c| c.honour_request_directives = true).await;
    rig.set(
        "/n",
        Page {
            etag: Some("\"x\""),
            ..page("max-age=600")
        },
    );
    let first = rig.get("/n").await;
    let validated = rig.get_with("/n", &[("cache-control", "no-cache")]).await;
    assert_eq!(validated.body, first.body);
    assert_eq!(rig.origin.conditional.load(Ordering::SeqCst), 1);
    assert!(
        validated
            .cache_status
            .contains("fwd=request; fwd-status=304"),
        "{}",
        validated.cache_status
    );
    // Pragma: no-cache means the same without Cache-Control (RFC 9111 §5.4).
    let _ = rig.get_with("/n", &[("pragma", "no-cache")]).await;
    assert_eq!(rig.origin.conditional.load(Ordering::SeqCst), 2);
    // max-age=0 asks for a response no older than 0 s.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let _ = rig.get_with("/n", &[("cache-control", "max-age=0")]).await;
    assert_eq!(rig.origin.conditional.load(Ordering::SeqCst), 3);
    let plain = rig.get("/n").await;
    assert!(
        plain.cache_status.starts_with("peakcache; hit"),
        "{}",
        plain.cache_status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9111_5_2_1_7_only_if_cached_answers_504_on_a_miss_and_serves_a_hit() {
    let rig = rig(|c| c.honour_request_directives = true).await;
    let miss = rig
        .get_with("/oic", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(miss.status, 504);
    assert_eq!(rig.origin.count("/oic"), 0);
    let _ = rig.get("/oic").await;
    let hit = rig
        .get_with("/oic", &[("cache-control", "only-if-cached")])
        .await;
    assert_eq!(hit.status, 200);
    assert_eq!(rig.origin.count("/oic"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9111_3_a_5xx_with_explicit_freshness_is_stored_like_any_response() {
    let rig = rig(|_| {}).await;
    rig.set(
        "/err",
        Page {
            status: 503,
            ..page("max-age=600")
        },
    );
    let first = rig.get("/err").await;
    assert_eq!(first.status, 503);
    let second = rig.get("/err").await;
    assert_eq!(second.status, 503);
    assert!(
        second.cache_status.starts_with("peakcache; hit"),
        "{}",
        second.cache_status
    );
    assert_eq!(rig.origin.count("/err"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9111_4_2_4_operator_grace_serves_stale_on_error_and_says_so() {
    let rig = rig(|c| c.stale_if_error_grace = Duration::from_secs(60)).await;
    rig.set("/g", page("max-age=1"));
    rig.set("/mr", page("max-age=1, must-revalidate"));
    let good = rig.get("/g").await.body;
    let _ = rig.get("/mr").await;
    rig.origin.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = rig.get("/g").await;
    assert_eq!(stale.status, 200);
    assert_eq!(stale.body, good);
    assert!(
        stale.cache_status.contains("detail=grace-if-error"),
        "{}",
        stale.cache_status
    );
    // must-revalidate forbids it, grace or not.
    assert_eq!(rig.get("/mr").await.status, 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9213_3_cdn_cache_control_is_forwarded_to_clients() {
    let rig = rig(|_| {}).await;
    rig.set(
        "/cdn",
        Page {
            extra: vec![("cdn-cache-control", "max-age=600")],
            ..page("no-store")
        },
    );
    let req = Request::get(format!("{}/cdn", rig.url))
        .body(Empty::new())
        .unwrap();
    let res = rig.client.request(req).await.unwrap();
    assert_eq!(res.headers()["cdn-cache-control"], "max-age=600");
    let _ = res.into_body().collect().await;
    assert!(rig
        .get("/cdn")
        .await
        .cache_status
        .starts_with("peakcache; hit"));
}

/// What one visitor sends never reaches a shared fill, and never switches a key off (issue 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_directives_are_ignored_by_default_at_miss_fresh_and_stale() {
    let rig = rig(|_| {}).await;
    rig.set("/rd", page("max-age=1, stale-while-revalidate=30"));
    let hostile: &[(&str, &str)] = &[
        ("cache-control", "no-store, no-cache, max-age=0"),
        ("pragma", "no-cache"),
    ];
    // Miss: filled for everyone, without the visitor's directives.
    let first = rig.get_with("/rd", hostile).await;
    assert_eq!(first.status, 200);
    // Fresh: served from the cache.
    let fresh = rig.get_with("/rd", hostile).await;
    assert!(
        fresh.cache_status.starts_with("peakcache; hit"),
        "{}",
        fresh.cache_status
    );
    assert_eq!(rig.origin.count("/rd"), 1);
    // Stale: served at once, refreshed once in the background, the key keeps caching.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = rig.get_with("/rd", hostile).await;
    assert!(
        stale.cache_status.contains("stale-while-revalidate"),
        "{}",
        stale.cache_status
    );
    for _ in 0..100 {
        if rig.origin.count("/rd") == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..20 {
        let a = rig.get("/rd").await;
        assert!(
            a.cache_status.starts_with("peakcache; hit"),
            "{}",
            a.cache_status
        );
    }
    assert_eq!(
        rig.origin.count("/rd"),
        2,
        "one fill and one refresh, no pass"
    );
    for (headers, _) in rig.origin.requests("/rd") {
        assert!(!headers.contains_key("cache-control"), "{headers:?}");
        assert!(!headers.contains_key("pragma"), "{headers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_passes_that_visitor_and_leaves_the_entry_alone() {
    let rig = rig(|_| {}).await;
    rig.set("/au", page("max-age=60"));
    let _ = rig.get("/au").await;
    let authed = rig.get_with("/au", &[("authorization", "Bearer x")]).await;
    assert!(
        authed.cache_status.contains("fwd=bypass"),
        "{}",
        authed.cache_status
    );
    let after = rig.get("/au").await;
    assert!(
        after.cache_status.starts_with("peakcache; hit"),
        "{}",
        after.cache_status
    );
    let seen = rig.origin.requests("/au");
    assert_eq!(seen.len(), 2);
    assert!(
        !seen[0].0.contains_key("authorization"),
        "the fill carried no credentials"
    );
    assert!(
        seen[1].0.contains_key("authorization"),
        "the pass carried them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_request_fills_the_whole_page_for_everyone() {
    let rig = rig(|_| {}).await;
    rig.set("/rg", page("max-age=60"));
    let ranged = rig
        .get_with("/rg", &[("range", "bytes=0-3"), ("if-range", "\"v1\"")])
        .await;
    assert_eq!(ranged.status, 200);
    let plain = rig.get("/rg").await;
    assert!(
        plain.cache_status.starts_with("peakcache; hit"),
        "{}",
        plain.cache_status
    );
    assert_eq!(plain.body.len(), 100);
    let seen = rig.origin.requests("/rg");
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].0.contains_key("range") && !seen[0].0.contains_key("if-range"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9110_7_6_1_connection_cannot_drop_host_or_reach_the_origin() {
    let rig = rig(|_| {}).await;
    rig.set("/ch", page("max-age=60"));
    let a = rig
        .raw("GET /ch HTTP/1.1\r\nHost: a.test\r\nConnection: host, x-secret, close\r\nX-Secret: 1\r\nTE: trailers\r\n\r\n")
        .await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert!(
        a.contains("host=a.test"),
        "the origin saw the visitor's host: {a}"
    );
    let b = rig
        .raw("GET /ch HTTP/1.1\r\nHost: b.test\r\nConnection: close\r\n\r\n")
        .await;
    assert!(b.contains("host=b.test"), "b.test is its own key: {b}");
    for (headers, _) in rig.origin.requests("/ch") {
        for gone in ["x-secret", "te", "connection"] {
            assert!(
                !headers.contains_key(gone),
                "{gone} reached the origin: {headers:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_with_a_body_is_filled_bodiless_and_the_origin_does_not_wait() {
    let rig = rig(|_| {}).await;
    rig.set("/body", page("max-age=60"));
    let started = Instant::now();
    let a = rig
        .raw("GET /body HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\nhello")
        .await;
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once"
    );
    let seen = rig.origin.requests("/body");
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    assert_eq!(*body, 0);
    for gone in ["content-length", "transfer-encoding", "expect"] {
        assert!(!headers.contains_key(gone), "{gone}: {headers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9110_4_2_4_userinfo_and_bad_ports_are_never_keyed_as_the_bare_host() {
    let rig = rig(|_| {}).await;
    rig.set("/hp", page("max-age=60"));
    for host in ["user@h.test", "h.test:abc"] {
        let a = rig
            .raw(&format!(
                "GET /hp HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert!(!a.contains("stored"), "{host} was stored: {a}");
    }
    let plain = rig
        .raw("GET /hp HTTP/1.1\r\nHost: h.test\r\nConnection: close\r\n\r\n")
        .await;
    assert!(
        plain.contains("fwd=uri-miss"),
        "the bare host was never filled: {plain}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honoured_request_directives_are_ignored_while_frozen() {
    let rig = rig(|c| c.honour_request_directives = true).await;
    rig.set("/fz", page("max-age=60"));
    let _ = rig.get("/fz").await;
    let frozen = rig.admin("/freeze").await;
    assert_eq!(frozen.status, 200);
    for cc in ["no-cache", "no-store", "max-age=0"] {
        let a = rig.get_with("/fz", &[("cache-control", cc)]).await;
        assert!(
            a.cache_status.starts_with("peakcache; hit"),
            "{cc}: {}",
            a.cache_status
        );
    }
    assert_eq!(rig.origin.count("/fz"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_never_serves_another_variant() {
    let rig = rig(|_| {}).await;
    rig.set(
        "/sv",
        Page {
            extra: vec![("vary", "accept-language")],
            ..page("max-age=1, stale-if-error=60")
        },
    );
    let en = rig.get_with("/sv", &[("accept-language", "en")]).await;
    assert_eq!(en.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    rig.origin.failing.store(true, Ordering::SeqCst);
    let de = rig.get_with("/sv", &[("accept-language", "de")]).await;
    assert_ne!(
        de.body, en.body,
        "the English page was served to a German visitor"
    );
    let en_again = rig.get_with("/sv", &[("accept-language", "en")]).await;
    assert_eq!(en_again.status, 200);
    assert_eq!(en_again.body, en.body, "its own variant is served stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_on_the_admin_purge_path_purges_nothing() {
    let rig = rig(|_| {}).await;
    let _ = rig.get("/gp").await;
    let url = format!("{}/gp", rig.url).replace("http://", "http%3A%2F%2F");
    let got = rig
        .send("GET", format!("{}/purge?url={url}", rig.admin))
        .await;
    assert_eq!(got.status, 405);
    let hit = rig.get("/gp").await;
    assert!(
        hit.cache_status.starts_with("peakcache; hit"),
        "{}",
        hit.cache_status
    );
    assert_eq!(rig.admin(&format!("/purge?url={url}")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unsafe_requests_keeps_the_purge_records_within_their_bound() {
    let rig = rig(|_| {}).await;
    for i in 0..300 {
        let a = rig.send("POST", format!("{}/flood?i={i}", rig.url)).await;
        assert_eq!(a.status, 200);
    }
    let metrics = rig.send("GET", format!("{}/metrics", rig.admin)).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
            .trim()
            .parse()
            .unwrap()
    };
    let (marks, bound) = (
        value("peakcache_tag_marks"),
        value("peakcache_max_tag_marks"),
    );
    assert!(marks >= 300, "each invalidation keeps a record: {marks}");
    assert!(marks <= bound, "{marks} records over the bound {bound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_serves_the_status_page_and_its_json() {
    let rig = rig(|_| {}).await;
    for _ in 0..3 {
        rig.get("/s").await;
    }
    let page = rig.send("GET", format!("{}/", rig.admin)).await;
    assert_eq!(page.status, 200);
    assert_eq!(&page.body[..], peakcache::history::STATUS_PAGE.as_bytes());
    // Samples a second apart: their increases add up to every visitor since the first (taken
    // when the proxy started).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    rig.get("/s").await;
    rig.get("/s").await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let status = rig
        .send("GET", format!("{}/status.json?history=10", rig.admin))
        .await;
    let text = String::from_utf8_lossy(&status.body).into_owned();
    assert!(
        text.contains(
            "\"host\":{\"visitor_requests\":5,\"visitor_errors\":0,\"origin_requests\":1,"
        ),
        "{text}"
    );
    let visitors = text
        .split("\"visitor_requests\":[")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .unwrap_or_else(|| panic!("no history in {text}"));
    let per_second: Vec<u64> = visitors.split(',').filter_map(|v| v.parse().ok()).collect();
    assert_eq!(per_second.iter().sum::<u64>(), 5, "{text}");
    assert!(per_second.len() >= 2, "{text}");
    let same = rig
        .send("GET", format!("{}/?format=json&history=10", rig.admin))
        .await;
    assert!(String::from_utf8_lossy(&same.body).contains("\"history\":{\"seconds\":10,"));
}

/// An origin that answers after `delay` and breaks off its `cut`-th answers: the head
/// announces 1000 bytes, half come, then the connection closes. Other answers are whole.
/// Counts the requests it read.
async fn cutting_origin(cut: &'static [u64], delay: Duration) -> (SocketAddr, Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicU64::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let count = counted.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(delay).await;
                let body = vec![b'0' + (n % 10) as u8; 1000];
                let sent = if cut.contains(&n) { 500 } else { 1000 };
                let answer = "HTTP/1.1 200 OK\r\ncache-control: max-age=60\r\n\
                              content-length: 1000\r\nconnection: close\r\n\r\n";
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.write_all(&body[..sent]).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_cut_short_is_never_stored_and_fails_its_waiters() {
    let (oaddr, count) = cutting_origin(&[1], Duration::ZERO).await;
    let cutting = rig(|c| c.origin = format!("http://{oaddr}").parse().unwrap()).await;
    let first = cutting.get("/cut").await;
    assert_eq!(first.status, 502, "the cut answer is an origin failure");
    let again = cutting.get("/cut").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, vec![b'2'; 1000], "the whole second answer");
    assert!(
        again.cache_status.contains("stored"),
        "{}",
        again.cache_status
    );
    let hit = cutting.get("/cut").await;
    assert!(
        hit.cache_status.starts_with("peakcache; hit"),
        "{}",
        hit.cache_status
    );
    assert_eq!(hit.body, vec![b'2'; 1000]);
    assert_eq!(count.load(Ordering::SeqCst), 2);

    // a spike on a key whose fill is cut (the origin takes 200 ms, so every visitor waits for
    // the first fill): the waiters are told the origin failed (502), as for any failed fill
    // with nothing stale to serve; nobody gets the cut half as a page
    let (oaddr, count) = cutting_origin(&[1], Duration::from_millis(200)).await;
    let spiked = Arc::new(rig(|c| c.origin = format!("http://{oaddr}").parse().unwrap()).await);
    let spike: Vec<_> = (0..20)
        .map(|_| {
            let rig = spiked.clone();
            tokio::spawn(async move { rig.get("/spike").await })
        })
        .collect();
    let statuses: Vec<u16> = futures_join(spike)
        .await
        .iter()
        .map(|a| a.status.as_u16())
        .collect();
    assert_eq!(statuses, vec![502; 20], "the filler and its 19 waiters");
    assert_eq!(count.load(Ordering::SeqCst), 1, "one origin request");
    let after = spiked.get("/spike").await;
    assert_eq!(after.status, 200);
    assert_eq!(
        after.body,
        vec![b'2'; 1000],
        "the whole second answer, stored"
    );
}
