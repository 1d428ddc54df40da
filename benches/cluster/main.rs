//! `make bench-cluster`: three peakcache-proxy hosts in one cluster on a redis-server of
//! their own, in front of one origin that counts its requests, all on loopback:
//!
//! 1. purge visibility: after a purge on one host (rotating), how long until all three hosts
//!    serve the page anew, p50 and p99 over 1,000 purges (goal: p99 <= 150 ms);
//! 2. latency of a second-level hit for 1 KiB and 64 KiB bodies, against a local hit and an
//!    origin fetch through the same proxy (goal: L2 hit p99 <= 2 ms);
//! 3. origin requests for a cold page requested at once on all three hosts, with the cluster
//!    and without it (goal: 1 vs 3).
//!
//! Writes the table to `target/cluster-bench/summary.md` as well as to stdout.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use peakcache_cluster::testing::RedisServer;
use peakcache_proxy::{serve, Config, Proxy};
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

const PURGES: usize = 1000;
const SAMPLES: usize = 1000;
const COLD_PAGES: usize = 5;
const COLD_CLIENTS_PER_HOST: usize = 30;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// The origin: `/kb64/...` answers 64 KiB, `/kb1/...` 1 KiB, anything else a short page;
/// `/cold/...` takes 100 ms. Every answer is numbered, so a refetch shows.
#[derive(Default)]
struct Origin {
    hits: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
}

impl Origin {
    fn count(&self, path: &str) -> u64 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    async fn answer(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        *self.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        let n = self.total.fetch_add(1, Ordering::Relaxed);
        if path.starts_with("/cold") {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut body = format!("{path} #{n} ").into_bytes();
        let size = if path.starts_with("/kb64") {
            64 << 10
        } else if path.starts_with("/kb1") {
            1 << 10
        } else {
            body.len()
        };
        body.resize(size, b'.');
        Response::builder()
            .header("cache-control", "max-age=600")
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    }
}

async fn start_origin() -> (Arc<Origin>, String) {
    let origin = Arc::new(Origin::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let o = origin.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let o = o.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let o = o.clone();
                    async move { Ok::<_, Infallible>(o.answer(req).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (origin, format!("http://{addr}"))
}

struct Host {
    url: String,
    admin: String,
    proxy: Arc<Proxy>,
}

async fn start_host(origin: &str, redis: Option<&str>) -> Host {
    let listener = peakcache_proxy::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
    let config = Config {
        origin: origin.parse().unwrap(),
        listen: addr,
        cluster: redis.map(|url| {
            let mut c = peakcache_cluster::Config::new(url);
            c.name = "bench".into();
            c
        }),
        ..Config::default()
    };
    let proxy = Arc::new(Proxy::try_new(config).expect("a proxy"));
    tokio::spawn(serve(proxy.clone(), listener, Some(admin)));
    if let Some(cluster) = proxy.cluster() {
        while !cluster.stats().caught_up {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Host {
        url: format!("http://{addr}"),
        admin: format!("http://{admin_addr}"),
        proxy,
    }
}

/// Sends one request (every host serves the same site) and returns the body.
async fn send(client: &HttpClient, method: &str, url: String) -> Bytes {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("host", "shop.test")
        .body(Empty::new())
        .unwrap();
    let res = client.request(req).await.expect("an answer");
    assert!(res.status().is_success(), "{}", res.status());
    res.into_body().collect().await.unwrap().to_bytes()
}

async fn get(client: &HttpClient, host: &Host, path: &str) -> Bytes {
    send(client, "GET", format!("{}{path}", host.url)).await
}

async fn timed_get(client: &HttpClient, host: &Host, path: &str) -> Duration {
    let started = Instant::now();
    get(client, host, path).await;
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// p50 and p99 of `samples`, in milliseconds.
fn summary(mut samples: Vec<Duration>) -> (String, String) {
    samples.sort();
    (
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
    )
}

/// After a purge on one host (rotating), the time until every host serves the page anew.
async fn purge_visibility(client: &HttpClient, hosts: &[Host]) -> Vec<Duration> {
    let path = "/news";
    let mut current = Vec::new();
    for h in hosts {
        current.push(get(client, h, path).await);
    }
    let mut samples = Vec::with_capacity(PURGES);
    for round in 0..PURGES {
        let purger = &hosts[round % hosts.len()];
        let started = Instant::now();
        send(
            client,
            "POST",
            format!("{}/purge?url=http://shop.test{path}", purger.admin),
        )
        .await;
        let mut pending: Vec<usize> = (0..hosts.len()).collect();
        while !pending.is_empty() {
            let mut still = Vec::new();
            for i in pending {
                let body = get(client, &hosts[i], path).await;
                if body == current[i] {
                    still.push(i);
                } else {
                    current[i] = body;
                }
            }
            pending = still;
        }
        samples.push(started.elapsed());
    }
    samples
}

/// For `prefix` pages: an origin fetch on host 0, a second-level hit on host 1 (once host 0
/// has written the copy) and a local hit on host 1.
async fn l2_latency(client: &HttpClient, hosts: &[Host], prefix: &str) -> [Vec<Duration>; 3] {
    let (mut origin, mut l2, mut local) = (Vec::new(), Vec::new(), Vec::new());
    let writes = |h: &Host| h.proxy.cluster().map_or(0, |c| c.stats().l2_writes);
    for i in 0..SAMPLES {
        let path = format!("{prefix}/{i}");
        let before = writes(&hosts[0]);
        origin.push(timed_get(client, &hosts[0], &path).await);
        while writes(&hosts[0]) == before {
            tokio::task::yield_now().await;
        }
        l2.push(timed_get(client, &hosts[1], &path).await);
        local.push(timed_get(client, &hosts[1], &path).await);
    }
    [origin, l2, local]
}

/// Origin requests for cold pages requested at once by 30 clients on each host.
async fn cold_page(client: &HttpClient, hosts: &[Host], origin: &Origin, tag: &str) -> Vec<u64> {
    let hosts: Vec<Arc<String>> = hosts.iter().map(|h| Arc::new(h.url.clone())).collect();
    let mut counts = Vec::new();
    for page in 0..COLD_PAGES {
        let path = format!("/cold/{tag}/{page}");
        let mut visitors = Vec::new();
        for i in 0..hosts.len() * COLD_CLIENTS_PER_HOST {
            let (client, url, path) =
                (client.clone(), hosts[i % hosts.len()].clone(), path.clone());
            visitors.push(tokio::spawn(async move {
                send(&client, "GET", format!("{url}{path}")).await
            }));
        }
        for v in visitors {
            v.await.unwrap();
        }
        counts.push(origin.count(&path));
    }
    counts
}

fn main() {
    // Declared first, dropped last: the hosts stop before their Redis does.
    let redis = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(run(&redis));
    print!("{report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/cluster-bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("summary.md"), &report).unwrap();
    eprintln!("written to {}", dir.join("summary.md").display());
}

async fn run(redis: &RedisServer) -> String {
    let (origin, origin_url) = start_origin().await;
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(HttpConnector::new());
    let mut hosts = Vec::new();
    for _ in 0..3 {
        hosts.push(start_host(&origin_url, Some(&redis.url())).await);
    }
    let alone = vec![
        start_host(&origin_url, None).await,
        start_host(&origin_url, None).await,
        start_host(&origin_url, None).await,
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## peakcache cluster: 3 proxies, 1 redis-server {}, 1 origin, loopback, {} cores\n",
        redis_version(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let _ = writeln!(
        out,
        "| measure | p50 ms | p99 ms | samples |\n|---|---|---|---|"
    );
    let (p50, p99) = summary(purge_visibility(&client, &hosts).await);
    let _ = writeln!(
        out,
        "| purge visible on all 3 hosts (goal p99 <= 150 ms) | {p50} | {p99} | {PURGES} |"
    );
    for (prefix, size) in [("/kb1", "1 KiB"), ("/kb64", "64 KiB")] {
        let [from_origin, l2, local] = l2_latency(&client, &hosts, prefix).await;
        for (what, samples) in [
            ("origin fetch", from_origin),
            ("L2 hit (goal p99 <= 2 ms)", l2),
            ("local hit", local),
        ] {
            let n = samples.len();
            let (p50, p99) = summary(samples);
            let _ = writeln!(out, "| {size}: {what} | {p50} | {p99} | {n} |");
        }
    }
    let with = cold_page(&client, &hosts, &origin, "cluster").await;
    let without = cold_page(&client, &alone, &origin, "alone").await;
    let _ = writeln!(
        out,
        "\n| cold page, {} clients on each of 3 hosts at once | origin requests per page |\n|---|---|\n\
         | with the cluster (goal 1) | {with:?} |\n| without (goal 3) | {without:?} |",
        COLD_CLIENTS_PER_HOST
    );
    let stats: Vec<_> = hosts
        .iter()
        .filter_map(|h| h.proxy.cluster().map(|c| c.stats()))
        .collect();
    let _ = writeln!(
        out,
        "\nleases won {} / lost {}, L2 hits {} / misses {} / errors {}, Redis errors {}",
        stats.iter().map(|s| s.leases_won).sum::<u64>(),
        stats.iter().map(|s| s.leases_lost).sum::<u64>(),
        stats.iter().map(|s| s.l2_hits).sum::<u64>(),
        stats.iter().map(|s| s.l2_misses).sum::<u64>(),
        stats.iter().map(|s| s.l2_errors).sum::<u64>(),
        stats.iter().map(|s| s.redis_errors).sum::<u64>(),
    );
    out
}

/// `7.0.15` from `redis-server --version`.
fn redis_version() -> String {
    let out = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or("?")
        .to_string()
}
