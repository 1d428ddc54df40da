//! The demo origin, started in-process on 127.0.0.1:0: its delay, headers, worker pool,
//! fail/heal switch and counters; and one short scenario run straight against it.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use hyper::{Method, StatusCode};
use peakcache_demo::client::{request_once, Conn};
use peakcache_demo::load::LoadPlan;
use peakcache_demo::origin::{self, OriginConfig, OriginStats};
use peakcache_demo::report;
use peakcache_demo::scenario::{self, Scenario};

const DELAY: Duration = Duration::from_millis(100);

async fn start(workers: usize) -> origin::OriginHandle {
    let config = OriginConfig {
        delay: DELAY,
        workers,
        max_age: 5,
        swr: 10,
        sie: 300,
    };
    origin::spawn(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .unwrap()
}

async fn stats(addr: SocketAddr) -> OriginStats {
    scenario::origin_stats(addr).await.unwrap()
}

async fn post(addr: SocketAddr, path: &str) -> StatusCode {
    request_once(addr, Method::POST, path).await.unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_are_slow_cacheable_and_counted() {
    let o = start(8).await;
    let addr = o.addr();
    let mut conn = Conn::connect(addr).await.unwrap();

    let t = Instant::now();
    let r = conn.request(Method::GET, "/page/3").await.unwrap();
    let took = t.elapsed();
    assert!(took >= DELAY && took < DELAY * 5, "{took:?}");
    assert_eq!(r.status, StatusCode::OK);
    let h = |name: &str| r.headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(
        h("cache-control"),
        "public, max-age=5, stale-while-revalidate=10, stale-if-error=300"
    );
    assert_eq!(h("etag"), "\"p3-g1\"");
    assert_eq!(h("surrogate-key"), "page-3 campaign");
    assert!(h("content-type").starts_with("text/html"));
    for date in [h("date"), h("last-modified")] {
        assert!(date.ends_with(" GMT") && date.len() == 29, "{date}");
        // A cache computes the page's age from these: they must be now, to the second.
        let at = httpdate::parse_http_date(&date).unwrap();
        let off = at
            .duration_since(SystemTime::now())
            .unwrap_or_else(|e| e.duration());
        assert!(off <= Duration::from_secs(2), "{date} is {off:?} off");
    }
    let body = std::str::from_utf8(&r.body).unwrap();
    assert!(
        body.contains("Campaign page 3") && body.contains("generation 1"),
        "{body}"
    );

    // A second full answer is a new generation.
    let r = conn.request(Method::GET, "/page/3").await.unwrap();
    assert_eq!(r.headers["etag"], "\"p3-g2\"");

    // Control endpoints are immediate and not counted.
    let t = Instant::now();
    let s = stats(addr).await;
    assert!(t.elapsed() < DELAY);
    assert_eq!((s.total, s.ok, s.failed, s.while_failing), (2, 2, 0, 0));
    assert_eq!(s.paths["/page/3"].requests, 2);
    assert_eq!(s.paths["/page/3"].generation, 2);
    assert_eq!(s.per_second.iter().sum::<u64>(), 2);
    assert_eq!(s.paths["/page/3"].per_second.iter().sum::<u64>(), 2);

    // Unknown paths and methods.
    assert_eq!(
        conn.request(Method::GET, "/nope").await.unwrap().status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        conn.request(Method::POST, "/page/1").await.unwrap().status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        conn.request(Method::GET, "/__origin/fail")
            .await
            .unwrap()
            .status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        post(addr, "/__origin/fail?mode=bogus").await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(stats(addr).await.total, 2);

    // Reset zeroes everything.
    assert_eq!(post(addr, "/__origin/reset").await, StatusCode::OK);
    let s = stats(addr).await;
    assert_eq!((s.total, s.paths.len()), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_answers_304_with_the_same_generation() {
    let o = start(8).await;
    let mut conn = Conn::connect(o.addr()).await.unwrap();
    conn.request(Method::GET, "/page/1").await.unwrap();
    // hyper's Conn sends no If-None-Match, so drive one through the state directly: the
    // generation only moves on full answers.
    let stream = tokio::net::TcpStream::connect(o.addr()).await.unwrap();
    let (mut sender, c) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(c);
    let req = hyper::Request::get("/page/1")
        .header("host", o.addr().to_string())
        .header("if-none-match", "\"p1-g1\"")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let r = sender.send_request(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"], "\"p1-g1\"");
    assert!(r.headers().contains_key("cache-control"));
    let s = stats(o.addr()).await;
    assert_eq!((s.total, s.ok, s.not_modified), (2, 1, 1));
    assert_eq!(s.paths["/page/1"].generation, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_pool_queues_a_flood() {
    let o = start(2).await;
    let addr = o.addr();
    let t = Instant::now();
    let reqs: Vec<_> = (0..6)
        .map(|i| {
            tokio::spawn(async move {
                request_once(addr, Method::GET, &format!("/page/{}", i % 2 + 1)).await
            })
        })
        .collect();
    for r in reqs {
        assert_eq!(r.await.unwrap().unwrap().status, StatusCode::OK);
    }
    // 6 requests, 2 workers, 100 ms each: three rounds.
    let took = t.elapsed();
    assert!(took >= DELAY * 3 && took < DELAY * 8, "{took:?}");
    assert_eq!(stats(addr).await.total, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_hang_refuse_and_heal() {
    let o = start(8).await;
    let addr = o.addr();

    // 503, after the delay.
    assert_eq!(post(addr, "/__origin/fail").await, StatusCode::OK);
    let t = Instant::now();
    let r = request_once(addr, Method::GET, "/page/1").await.unwrap();
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(t.elapsed() >= DELAY);
    assert!(r.headers.get("etag").is_none());

    // Refuse: the connection is dropped without an answer.
    assert_eq!(
        post(addr, "/__origin/fail?mode=refuse").await,
        StatusCode::OK
    );
    assert!(request_once(addr, Method::GET, "/page/1").await.is_err());

    // Hang: no answer until healed, then a normal one.
    assert_eq!(post(addr, "/__origin/fail?mode=hang").await, StatusCode::OK);
    let pending = tokio::spawn(async move { request_once(addr, Method::GET, "/page/2").await });
    tokio::time::sleep(DELAY * 3).await;
    assert!(!pending.is_finished());
    assert_eq!(stats(addr).await.total, 3);
    assert_eq!(post(addr, "/__origin/heal").await, StatusCode::OK);
    let r = tokio::time::timeout(Duration::from_secs(2), pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);

    let r = request_once(addr, Method::GET, "/page/1").await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["etag"], "\"p1-g1\"");
    let s = stats(addr).await;
    assert_eq!((s.total, s.ok, s.failed, s.while_failing), (4, 2, 1, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_scenario_straight_to_the_origin() {
    let o = start(8).await;
    let addr = o.addr();
    let mut load = LoadPlan::campaign(addr, Duration::ZERO);
    load.visitors = 16;
    load.think = Duration::from_millis(1);
    load.request_timeout = Duration::from_secs(2);
    let sc = Scenario {
        live: Duration::from_millis(700),
        down: Duration::from_millis(500),
        healed: Duration::from_millis(400),
        load,
        ..Scenario::campaign()
    };
    let run = scenario::run(&sc, addr, addr).await.unwrap();
    assert!((0.69..1.0).contains(&run.marks.fail_at), "{:?}", run.marks);
    assert!((1.19..1.5).contains(&run.marks.heal_at), "{:?}", run.marks);
    let samples = &run.load.samples;
    // Every request the visitors made reached the origin, and nothing else did.
    assert_eq!(samples.len() as u64, run.origin.total);
    assert_eq!(
        run.origin.paths.values().map(|p| p.requests).sum::<u64>(),
        run.origin.total
    );
    // 8 workers at 100 ms: about 80 requests a second.
    assert!((80..=200).contains(&samples.len()), "{}", samples.len());
    // Errors only where the origin was failing (sent before the heal, answered after the fail).
    for s in samples.iter().filter(|s| !s.ok()) {
        assert_eq!(s.status, 503);
        // (`fail_at` is read after the switch's answer arrived: allow for that round trip.)
        assert!(s.end_us() as f64 / 1e6 >= run.marks.fail_at - 0.05, "{s:?}");
        assert!((s.start_us as f64 / 1e6) < run.marks.heal_at, "{s:?}");
    }
    let sum = report::summarize(&run, 5);
    assert!(sum.errors_while_down > 0 && sum.errors == run.origin.failed);
    assert!(sum.p50_us >= 100_000, "{sum:?}");
    assert_eq!(sum.origin_requests, samples.len() as u64);
    // The origin sends no Cache-Status.
    assert_eq!(
        run.load.cache_status.get("(none)").copied(),
        Some(samples.len() as u64)
    );
}
