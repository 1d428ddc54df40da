//! Three proxies in one cluster on a redis-server of their own (a free loopback port, no
//! persistence), in front of one origin that counts its requests.

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use peakcache_cluster::testing::{RedisServer, Relay};
use peakcache_proxy::{serve, Config, Proxy};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// An origin that numbers its answers (`/path #n`), so a refetch shows.
#[derive(Default)]
struct Origin {
    hits: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
}

/// What the origin answers for a path: `/slow...` takes 200 ms; `/swr...` may be served stale
/// for a minute; `Surrogate-Key` is the path's first segment.
fn cache_control(path: &str) -> &'static str {
    if path.starts_with("/swr") {
        "max-age=60, stale-while-revalidate=60"
    } else {
        "max-age=60"
    }
}

impl Origin {
    fn count(&self, path: &str) -> u64 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    async fn answer(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        *self.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        let n = self.total.fetch_add(1, Ordering::SeqCst) + 1;
        if path.starts_with("/slow") {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let tag = path.trim_start_matches('/').split('/').next().unwrap_or("");
        Response::builder()
            .header("cache-control", cache_control(&path))
            .header("surrogate-key", format!("t-{tag}"))
            .body(Full::new(Bytes::from(format!("{path} #{n}"))))
            .unwrap()
    }
}

async fn start_origin() -> (Arc<Origin>, String) {
    let origin = Arc::new(Origin::default());
    let o = origin.clone();
    let addr = common::serve_http(move |req| o.clone().answer(req)).await;
    (origin, format!("http://{addr}"))
}

/// One proxy of the cluster.
struct Host {
    url: String,
    admin: String,
    proxy: Arc<Proxy>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Answer {
    status: u16,
    cache_status: String,
    body: String,
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

async fn send(client: &Client<HttpConnector, Empty<Bytes>>, method: &str, url: String) -> Answer {
    // Every host serves the same site, as behind a load balancer.
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("host", "shop.test")
        .body(Empty::new())
        .unwrap();
    let res = client.request(req).await.unwrap();
    let status = res.status().as_u16();
    let cache_status = res
        .headers()
        .get("cache-status")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        cache_status,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

impl Host {
    async fn start(origin: &str, redis_url: &str, tune: impl FnOnce(&mut Config)) -> Host {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
        let mut cluster = peakcache_cluster::Config::new(redis_url);
        cluster.name = "test".into();
        // Generous: on a loaded two-core machine with hundreds of connections opening at
        // once, a Redis round trip can take more than the production default of 100 ms, and
        // a host that gives up on Redis rightly fetches alone, which these tests would count.
        cluster.op_timeout = Duration::from_millis(500);
        cluster.lock_timeout = Duration::from_secs(2);
        cluster.backoff_min = Duration::from_millis(20);
        cluster.backoff_max = Duration::from_millis(200);
        let mut config = Config {
            origin: origin.parse().unwrap(),
            listen: addr,
            lock_timeout: Duration::from_secs(2),
            cluster: Some(cluster),
            ..Config::default()
        };
        tune(&mut config);
        let proxy = Arc::new(Proxy::try_new(config).unwrap());
        let task = tokio::spawn(serve(proxy.clone(), listener, Some(admin)));
        Host {
            url: format!("http://{addr}"),
            admin: format!("http://{admin_addr}"),
            proxy,
            task,
        }
    }

    fn stats(&self) -> peakcache_cluster::ClusterStats {
        self.proxy.cluster().unwrap().stats()
    }

    async fn caught_up(&self) {
        eventually("the host reads the bus", Duration::from_secs(5), || {
            self.stats().caught_up
        })
        .await;
    }

    async fn get(&self, client: &Client<HttpConnector, Empty<Bytes>>, path: &str) -> Answer {
        send(client, "GET", format!("{}{path}", self.url)).await
    }

    async fn admin(
        &self,
        client: &Client<HttpConnector, Empty<Bytes>>,
        path_and_query: &str,
    ) -> String {
        let a = send(client, "POST", format!("{}{path_and_query}", self.admin)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body
    }

    async fn metrics(&self, client: &Client<HttpConnector, Empty<Bytes>>) -> String {
        send(client, "GET", format!("{}/metrics", self.admin))
            .await
            .body
    }
}

async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Three hosts on `redis`, caught up with the bus.
async fn three_hosts(origin: &str, redis: &str, tune: fn(&mut Config)) -> Vec<Host> {
    let mut hosts = Vec::new();
    for _ in 0..3 {
        let h = Host::start(origin, redis, tune).await;
        h.caught_up().await;
        hosts.push(h);
    }
    hosts
}

/// Waits until the host's own purges are on the stream.
async fn published(host: &Host) {
    eventually("purges published", Duration::from_secs(5), || {
        host.stats().outbox == 0
    })
    .await;
}

/// Waits until `host` has written `n` responses to the second-level cache.
async fn written(host: &Host, n: u64) {
    eventually(
        "written to the second-level cache",
        Duration::from_secs(5),
        || host.stats().l2_writes >= n,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_fetched_by_one_host_is_served_by_the_others_from_the_second_level_cache() {
    let redis = RedisServer::start();
    let (origin, origin_url) = start_origin().await;
    let hosts = three_hosts(&origin_url, &redis.url(), |_| {}).await;
    let c = client();
    let first = hosts[0].get(&c, "/page").await;
    assert!(
        first.cache_status.contains("fwd=uri-miss"),
        "{}",
        first.cache_status
    );
    written(&hosts[0], 1).await;
    for h in &hosts[1..] {
        let a = h.get(&c, "/page").await;
        assert_eq!(a.body, first.body);
        assert!(
            a.cache_status.starts_with("peakcache; hit; ttl=")
                && a.cache_status.ends_with("detail=l2"),
            "{}",
            a.cache_status
        );
        let again = h.get(&c, "/page").await;
        assert!(
            !again.cache_status.contains("l2"),
            "then a local hit: {}",
            again.cache_status
        );
    }
    assert_eq!(origin.count("/page"), 1);
    let m = hosts[1].metrics(&c).await;
    assert!(
        m.contains("peakcache_cluster_l2_lookups_total{result=\"hit\"} 1\n"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_on_any_host_is_seen_on_every_host() {
    let redis = RedisServer::start();
    let (origin, origin_url) = start_origin().await;
    let hosts = three_hosts(&origin_url, &redis.url(), |_| {}).await;
    let c = client();
    let purges = [
        "/purge?url=http://shop.test/news".to_string(),
        "/purge?tag=t-news".to_string(),
        "/purge?url=http://shop.test/news&soft=1".to_string(),
        "/clear".to_string(),
    ];
    for (round, purge) in purges.iter().enumerate() {
        // Every host holds the page...
        let mut old = Vec::new();
        for h in &hosts {
            old.push(h.get(&c, "/news").await.body);
        }
        // ...then one host purges it (a different one each round)...
        let purger = &hosts[round % 3];
        let started = Instant::now();
        purger.admin(&c, purge).await;
        // ...and every host serves the page anew.
        for (h, old) in hosts.iter().zip(&old) {
            let deadline = Instant::now() + Duration::from_secs(2);
            while h.get(&c, "/news").await.body == *old {
                assert!(
                    Instant::now() < deadline,
                    "{purge}: still {old} on {}",
                    h.url
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        println!("{purge}: seen on every host in {:?}", started.elapsed());
        published(purger).await;
    }
    assert!(origin.count("/news") >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_spike_of_200_clients_over_three_hosts_costs_one_origin_request() {
    let redis = RedisServer::start();
    let (origin, origin_url) = start_origin().await;
    let hosts = Arc::new(three_hosts(&origin_url, &redis.url(), |_| {}).await);
    let c = client();
    let visitors: Vec<_> = (0..200)
        .map(|i| {
            let (hosts, c) = (hosts.clone(), c.clone());
            tokio::spawn(async move { hosts[i % 3].get(&c, "/slow/spike").await })
        })
        .collect();
    let mut answers = Vec::new();
    for v in visitors {
        answers.push(v.await.unwrap());
    }
    assert!(answers.iter().all(|a| a.status == 200));
    assert!(
        answers.iter().all(|a| a.body == answers[0].body),
        "one page for everyone"
    );
    assert_eq!(
        origin.count("/slow/spike"),
        1,
        "one origin request for the cluster"
    );
    assert!(
        answers.iter().any(|a| a.cache_status.contains("detail=l2")),
        "the other hosts took the first host's copy"
    );
    let won: u64 = hosts.iter().map(|h| h.stats().leases_won).sum();
    let lost: u64 = hosts.iter().map(|h| h.stats().leases_lost).sum();
    assert_eq!(
        (won, lost),
        (1, 2),
        "one filler per host, one for the cluster"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_killed_no_visitor_gets_an_error_and_purges_made_meanwhile_apply_on_return() {
    let mut redis = RedisServer::start();
    let (_origin, origin_url) = start_origin().await;
    let hosts = Arc::new(three_hosts(&origin_url, &redis.url(), |_| {}).await);
    let c = client();
    for h in hosts.iter() {
        h.get(&c, "/kept/page").await;
    }
    // Visitors on every host, old pages and new ones, all along.
    let running = Arc::new(AtomicBool::new(true));
    let errors = Arc::new(AtomicU64::new(0));
    let served = Arc::new(AtomicU64::new(0));
    let traffic: Vec<_> = (0..6)
        .map(|i| {
            let (hosts, c) = (hosts.clone(), c.clone());
            let (running, errors, served) = (running.clone(), errors.clone(), served.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while running.load(Ordering::Relaxed) {
                    let path = if n % 2 == 0 {
                        "/kept/page".to_string()
                    } else {
                        format!("/new/{i}/{n}")
                    };
                    let a = hosts[i % 3].get(&c, &path).await;
                    if a.status != 200 {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    hosts[2].admin(&c, "/purge?tag=t-unrelated").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A purge while Redis is down: applied at once on its host, queued for the others.
    hosts[0].admin(&c, "/purge?tag=t-kept").await;
    let before: Vec<u64> = hosts.iter().map(|h| h.stats().purges_applied).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.restart();
    eventually(
        "the purge made while Redis was down reaches the other hosts",
        Duration::from_secs(5),
        || (1..3).all(|i| hosts[i].stats().purges_applied > before[i]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    running.store(false, Ordering::Relaxed);
    for t in traffic {
        t.await.unwrap();
    }
    let served = served.load(Ordering::Relaxed);
    assert!(served > 100, "traffic went on: {served} answers");
    assert_eq!(errors.load(Ordering::Relaxed), 0, "of {served} answers");
    let m = hosts[1].metrics(&c).await;
    assert!(
        m.contains("peakcache_cluster_soft_purges_everything_total{reason=\"reset\"} 1"),
        "the restarted server lost the stream: said and counted\n{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_cut_off_from_redis_serves_nothing_as_fresh_past_max_lag() {
    let redis = RedisServer::start();
    let (origin, origin_url) = start_origin().await;
    let hosts = three_hosts(&origin_url, &redis.url(), |c| {
        c.cluster.as_mut().unwrap().max_lag = Duration::from_millis(300);
    })
    .await;
    let c = client();
    for h in &hosts {
        h.get(&c, "/swr/page").await;
        h.get(&c, "/fresh/page").await;
    }
    assert_eq!(
        (origin.count("/swr/page"), origin.count("/fresh/page")),
        (1, 1)
    );
    let fresh = hosts[0].get(&c, "/swr/page").await;
    assert!(
        fresh.cache_status.starts_with("peakcache; hit; ttl="),
        "{}",
        fresh.cache_status
    );
    redis.pause();
    tokio::time::sleep(Duration::from_millis(450)).await;
    for (i, h) in hosts.iter().enumerate() {
        // Stale now: served at once (inside stale-while-revalidate) while one refresh runs...
        let a = h.get(&c, "/swr/page").await;
        assert_eq!(a.body, fresh.body);
        assert!(
            a.cache_status.ends_with("detail=cluster-lag"),
            "{}",
            a.cache_status
        );
        eventually("a refresh from the origin", Duration::from_secs(2), || {
            origin.count("/swr/page") >= 2 + i as u64
        })
        .await;
        // ...and without a stale window, fetched again.
        let a = h.get(&c, "/fresh/page").await;
        assert!(a.cache_status.contains("fwd="), "{}", a.cache_status);
        assert!(
            a.cache_status.ends_with("detail=cluster-lag"),
            "{}",
            a.cache_status
        );
    }
    assert!(origin.count("/fresh/page") >= 4);
    let m = hosts[0].metrics(&c).await;
    assert!(m.contains("peakcache_cluster_lagging 1\n"), "{m}");
    redis.resume();
    for h in &hosts {
        eventually("caught up", Duration::from_secs(3), || !h.stats().lagging).await;
        let a = h.get(&c, "/swr/page").await;
        assert!(
            !a.cache_status.contains("cluster-lag"),
            "{}",
            a.cache_status
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_unread_purges_were_trimmed_marks_every_entry_stale() {
    let redis = RedisServer::start_with(&["--stream-node-max-entries", "4"]);
    let relay = Relay::start(redis.addr()).await;
    let (origin, origin_url) = start_origin().await;
    let tune = |c: &mut Config| {
        let cluster = c.cluster.as_mut().unwrap();
        cluster.stream_max_len = 4;
        cluster.max_lag = Duration::from_secs(30); // about trimming, not lag
    };
    let a = Host::start(&origin_url, &redis.url(), tune).await;
    let behind = Host::start(&origin_url, &relay.url(), tune).await;
    a.caught_up().await;
    behind.caught_up().await;
    let c = client();
    let old = behind.get(&c, "/swr/kept").await.body;
    written(&behind, 1).await;
    relay.stall();
    for i in 0..40 {
        a.admin(&c, &format!("/purge?url=http://shop.test/other/{i}"))
            .await;
    }
    published(&a).await;
    relay.resume();
    eventually("the gap is noticed", Duration::from_secs(5), || {
        behind
            .stats()
            .soft_purges_for(peakcache_cluster::SoftPurgeReason::Trimmed)
            == 1
    })
    .await;
    // Nothing it holds is fresh: served stale while one request refreshes it.
    let a = behind.get(&c, "/swr/kept").await;
    assert_eq!(a.body, old);
    assert!(
        a.cache_status.ends_with("detail=stale-while-revalidate"),
        "{}",
        a.cache_status
    );
    // The refresh found the second-level copy, which every published purge reaches (none
    // reached this page), so the origin was not asked again.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let a = behind.get(&c, "/swr/kept").await;
        if a.cache_status.starts_with("peakcache; hit; ttl=") && !a.cache_status.contains("stale") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not refreshed: {}",
            a.cache_status
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(origin.count("/swr/kept"), 1);
    let m = behind.metrics(&c).await;
    assert!(
        m.contains("peakcache_cluster_soft_purges_everything_total{reason=\"trimmed\"} 1\n"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_started_without_redis_serves_alone() {
    let (origin, origin_url) = start_origin().await;
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let h = Host::start(&origin_url, &format!("redis://127.0.0.1:{port}/"), |_| {}).await;
    let c = client();
    let started = Instant::now();
    for _ in 0..3 {
        let a = h.get(&c, "/alone").await;
        assert_eq!(a.status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(origin.count("/alone"), 1);
    let said = h.admin(&c, "/purge?tag=t-alone").await;
    assert!(
        said.contains("the others when Redis answers again"),
        "{said}"
    );
    assert!(
        h.get(&c, "/alone").await.cache_status.contains("fwd="),
        "purged here at once"
    );
    assert_eq!(h.stats().outbox, 1, "and queued for the cluster");
}
