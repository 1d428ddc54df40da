//! Snapshots end to end: a restart serves what was cached as HITs without asking the origin,
//! a rollback is one admin request, a file that cannot be trusted or read is refused and
//! changes nothing. Proxies on loopback, in front of an origin that counts its requests and
//! whose answers change when told ("a bad deploy").

mod common;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use peakcache_cluster::testing::RedisServer;
use peakcache_proxy::{serve, Config, Proxy};
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// An origin that answers `/path release=N #n` (the release it runs, the answer's number), so
/// a refetch and a new release both show.
#[derive(Default)]
struct Origin {
    hits: Mutex<HashMap<String, u64>>,
    total: AtomicU64,
    release: AtomicU64,
}

impl Origin {
    fn count(&self, path: &str) -> u64 {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }

    async fn answer(self: Arc<Self>, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        *self.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
        let n = self.total.fetch_add(1, Ordering::SeqCst) + 1;
        let release = self.release.load(Ordering::SeqCst);
        let mut r = Response::builder()
            .header("cache-control", "max-age=600")
            .header("surrogate-key", format!("release-{release}"));
        if path.starts_with("/vary") {
            r = r.header("vary", "accept-language");
        }
        r.body(Full::new(Bytes::from(format!(
            "{path} release={release} #{n}"
        ))))
        .unwrap()
    }
}

async fn start_origin() -> (Arc<Origin>, String) {
    let origin = Arc::new(Origin::default());
    let o = origin.clone();
    let addr = common::serve_http(move |req| o.clone().answer(req)).await;
    (origin, format!("http://{addr}"))
}

/// A directory of the test's own, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "peakcache-proxy-{name}-{}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("proxy.snapshot")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One proxy: stopped when dropped, as a process would be.
struct Host {
    url: String,
    admin: String,
    proxy: Arc<Proxy>,
    task: tokio::task::JoinHandle<()>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Answer {
    status: u16,
    cache_status: String,
    age: Option<u64>,
    body: String,
}

impl Host {
    async fn start(origin: &str, snapshot: &Path, tune: impl FnOnce(&mut Config)) -> Host {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (addr, admin_addr) = (listener.local_addr().unwrap(), admin.local_addr().unwrap());
        let mut config = Config {
            origin: origin.parse().unwrap(),
            listen: addr,
            snapshot: Some(snapshot.to_path_buf()),
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
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    async fn send(&self, method: &str, url: String, headers: &[(&str, &str)]) -> Answer {
        // The same site whatever port the proxy listens on, as after a restart.
        let mut req = Request::builder()
            .method(method)
            .uri(url)
            .header("host", "shop.test");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .client
            .request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let header = |name| {
            res.headers()
                .get(name)
                .map(|v: &http::HeaderValue| v.to_str().unwrap().to_string())
        };
        let cache_status = header("cache-status").unwrap_or_default();
        let age = header("age").map(|a| a.parse().unwrap());
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            cache_status,
            age,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", format!("{}{path}", self.url), &[]).await
    }

    async fn admin(&self, path_and_query: &str) -> Answer {
        self.send("POST", format!("{}{path_and_query}", self.admin), &[])
            .await
    }

    async fn metrics(&self) -> String {
        self.send("GET", format!("{}/metrics", self.admin), &[])
            .await
            .body
    }
}

fn is_hit(a: &Answer) -> bool {
    a.cache_status.starts_with("peakcache; hit")
}

async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const PAGES: [&str; 4] = ["/", "/product/1", "/product/2", "/cart-help"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_its_first_requests_from_the_snapshot_with_no_origin_request() {
    let dir = TempDir::new("restart");
    let (origin, origin_url) = start_origin().await;
    let first = Host::start(&origin_url, &dir.file(), |_| {}).await;
    let mut bodies = Vec::new();
    for p in PAGES {
        bodies.push(first.get(p).await.body);
    }
    let de = [("accept-language", "de")];
    let german = first
        .send("GET", format!("{}/vary", first.url), &de)
        .await
        .body;
    assert_eq!(origin.total(), 5);
    let written = first.admin("/snapshot").await;
    assert_eq!(written.status, 200, "{}", written.body);
    assert!(
        // The varying page is stored twice: under its URL and under its variant's key.
        written
            .body
            .starts_with("wrote 6 responses and 1 Vary records"),
        "{}",
        written.body
    );
    let mode = std::fs::metadata(dir.file()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only the proxy's user may read it");
    drop(first);

    let second = Host::start(&origin_url, &dir.file(), |_| {}).await;
    for (p, body) in PAGES.iter().zip(&bodies) {
        let a = second.get(p).await;
        assert!(is_hit(&a), "{p}: {}", a.cache_status);
        assert_eq!(&a.body, body);
    }
    let again = second
        .send("GET", format!("{}/vary", second.url), &de)
        .await;
    assert!(is_hit(&again), "a varying page: {}", again.cache_status);
    assert_eq!(again.body, german);
    assert_eq!(origin.total(), 5, "no origin request after the restart");
    assert!(second
        .metrics()
        .await
        .contains("peakcache_snapshot_restores_total 1\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_is_written_in_the_background_at_its_interval() {
    let dir = TempDir::new("interval");
    let (origin, origin_url) = start_origin().await;
    let first = Host::start(&origin_url, &dir.file(), |c| {
        c.snapshot_interval = Some(Duration::from_secs(1));
    })
    .await;
    for p in PAGES {
        first.get(p).await;
    }
    let mut last = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !last.contains("peakcache_snapshot_last_records 4\n") {
        assert!(
            Instant::now() < deadline,
            "no snapshot of 4 records: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = first.metrics().await;
    }
    drop(first);
    let second = Host::start(&origin_url, &dir.file(), |_| {}).await;
    for p in PAGES {
        assert!(is_hit(&second.get(p).await), "{p}");
    }
    assert_eq!(origin.total(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_is_one_request_and_brings_back_the_old_pages_as_old_as_they_are() {
    let dir = TempDir::new("rollback");
    let (origin, origin_url) = start_origin().await;
    let host = Host::start(&origin_url, &dir.file(), |_| {}).await;
    let good: Vec<String> = {
        let mut v = Vec::new();
        for p in PAGES {
            v.push(host.get(p).await.body);
        }
        v
    };
    // Old enough to tell an age kept from an age restarted.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(host.admin("/snapshot").await.status, 200);

    // A bad release, purged into the cache; and a page that did not exist before it.
    origin.release.store(1, Ordering::SeqCst);
    assert_eq!(host.admin("/clear").await.status, 200);
    for p in PAGES {
        assert!(host.get(p).await.body.contains("release=1"));
    }
    host.get("/new-in-release-1").await;
    let before = origin.total();

    let rollback = host.admin("/restore?freeze=1").await;
    assert_eq!(rollback.status, 200, "{}", rollback.body);
    assert!(
        rollback.body.contains("restored 4 responses") && rollback.body.contains("POST /thaw"),
        "{}",
        rollback.body
    );
    for (p, body) in PAGES.iter().zip(&good) {
        let a = host.get(p).await;
        assert!(is_hit(&a), "{p}: {}", a.cache_status);
        assert_eq!(&a.body, body, "the page from before the release");
        assert!(a.age.unwrap() >= 1, "{p} keeps its age: {:?}", a.age);
    }
    for e in host.proxy.cache().list() {
        assert!(e.age() >= Duration::from_secs(1), "{:?}", e.age());
    }
    assert_eq!(origin.total(), before, "served without the origin");
    assert!(host.proxy.cache().is_frozen());
    let gone = host.get("/new-in-release-1").await;
    assert!(
        !is_hit(&gone) && gone.body.contains("release=1"),
        "not in the snapshot: fetched (the only requests reaching the origin while frozen)"
    );
    assert_eq!(host.admin("/thaw").await.status, 200);
    assert!(!host.proxy.cache().is_frozen());
}

/// Puts `bytes` at `path` with `mode`.
fn plant(path: &Path, bytes: &[u8], mode: u32) {
    let _ = std::fs::remove_file(path);
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_a_whole_trusted_snapshot_is_refused_and_nothing_changes() {
    let dir = TempDir::new("refused");
    let (origin, origin_url) = start_origin().await;
    let host = Host::start(&origin_url, &dir.file(), |_| {}).await;
    let missing = host.admin("/restore?freeze=1").await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    let page = host.get("/product/1").await;
    assert_eq!(host.admin("/snapshot").await.status, 200);
    let good = std::fs::read(dir.file()).unwrap();

    let mut other_version = good.clone();
    other_version[8] = 99;
    let mut flipped = good.clone();
    let middle = good.len() / 2;
    flipped[middle] ^= 1;
    let cases: [(&str, Vec<u8>, u32, &str); 6] = [
        (
            "foreign",
            b"<html>not a snapshot</html>".to_vec(),
            0o600,
            "not a peakcache-proxy snapshot",
        ),
        (
            "truncated",
            good[..good.len() - 30].to_vec(),
            0o600,
            "truncated",
        ),
        ("flipped", flipped, 0o600, "checksum"),
        ("other version", other_version, 0o600, "format version 99"),
        ("empty", Vec::new(), 0o600, "not a peakcache-proxy snapshot"),
        (
            "writable by others",
            good.clone(),
            0o666,
            "other users may write it",
        ),
    ];
    for (what, bytes, mode, reason) in cases {
        plant(&dir.file(), &bytes, mode);
        let a = host.admin("/restore?freeze=1").await;
        assert_eq!(a.status, 422, "{what}: {}", a.body);
        assert!(
            a.body.starts_with("not restored, nothing changed:") && a.body.contains(reason),
            "{what}: {}",
            a.body
        );
        assert!(!host.proxy.cache().is_frozen(), "{what}: not frozen");
        let still = host.get("/product/1").await;
        assert!(is_hit(&still), "{what}: not emptied");
        assert_eq!(still.body, page.body);
    }
    // A symbolic link to a good snapshot is not followed.
    let elsewhere = dir.0.join("elsewhere");
    plant(&elsewhere, &good, 0o600);
    let _ = std::fs::remove_file(dir.file());
    std::os::unix::fs::symlink(&elsewhere, dir.file()).unwrap();
    let a = host.admin("/restore").await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body.contains("symbolic link"), "{}", a.body);
    // Nor is a file that is not a snapshot replaced by one.
    plant(&dir.file(), b"someone's notes", 0o600);
    let a = host.admin("/snapshot").await;
    assert_eq!(a.status, 422, "{}", a.body);
    assert!(a.body.contains("not replaced"), "{}", a.body);
    assert_eq!(std::fs::read(dir.file()).unwrap(), b"someone's notes");
    assert_eq!(origin.count("/product/1"), 1);

    // The good one is restored (over what is stored, not frozen, without `freeze`).
    plant(&dir.file(), &good, 0o600);
    let a = host.admin("/restore").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(!host.proxy.cache().is_frozen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_whose_snapshot_is_damaged_starts_empty_and_serves() {
    let dir = TempDir::new("damaged-start");
    let (origin, origin_url) = start_origin().await;
    let first = Host::start(&origin_url, &dir.file(), |_| {}).await;
    first.get("/").await;
    assert_eq!(first.admin("/snapshot").await.status, 200);
    drop(first);
    let good = std::fs::read(dir.file()).unwrap();
    plant(&dir.file(), &good[..good.len() / 2], 0o600);
    let second = Host::start(&origin_url, &dir.file(), |_| {}).await;
    let a = second.get("/").await;
    assert_eq!(a.status, 200);
    assert!(!is_hit(&a), "{}", a.cache_status);
    assert_eq!(origin.count("/"), 2);
    // Its next snapshot replaces the damaged one.
    assert_eq!(second.admin("/snapshot").await.status, 200);
    drop(second);
    let third = Host::start(&origin_url, &dir.file(), |_| {}).await;
    assert!(is_hit(&third.get("/").await));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_snapshot_path_the_admin_says_so() {
    let (_origin, origin_url) = start_origin().await;
    let dir = TempDir::new("unconfigured");
    let host = Host::start(&origin_url, &dir.file(), |c| c.snapshot = None).await;
    for path in ["/snapshot", "/restore?freeze=1"] {
        let a = host.admin(path).await;
        assert_eq!(a.status, 409, "{path}");
        assert!(a.body.contains("--snapshot PATH"), "{}", a.body);
    }
    let get = host
        .send("GET", format!("{}/restore?freeze=1", host.admin), &[])
        .await;
    assert_eq!(get.status, 405, "a GET never rolls back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_host_restarted_from_its_snapshot_applies_the_purges_it_missed() {
    let redis = RedisServer::start();
    let dir = TempDir::new("cluster");
    let (origin, origin_url) = start_origin().await;
    let cluster = |c: &mut Config| {
        let mut cluster = peakcache_cluster::Config::new(redis.url());
        cluster.name = "snap".into();
        cluster.op_timeout = Duration::from_millis(500);
        cluster.backoff_min = Duration::from_millis(20);
        cluster.backoff_max = Duration::from_millis(200);
        c.cluster = Some(cluster);
    };
    let other_dir = TempDir::new("cluster-other");
    let other = Host::start(&origin_url, &other_dir.file(), cluster).await;
    let host = Host::start(&origin_url, &dir.file(), cluster).await;
    let caught_up = |h: &Host| h.proxy.cluster().unwrap().stats().caught_up;
    eventually("caught up", Duration::from_secs(5), || {
        caught_up(&host) && caught_up(&other)
    })
    .await;
    for p in PAGES {
        host.get(p).await;
    }
    assert_eq!(host.admin("/snapshot").await.status, 200);
    drop(host);

    // While it is down, another host purges a page.
    let purged = other
        .admin("/purge?url=http%3A%2F%2Fshop.test%2Fproduct%2F1")
        .await;
    assert_eq!(purged.status, 200, "{}", purged.body);
    eventually("published", Duration::from_secs(5), || {
        other.proxy.cluster().unwrap().stats().outbox == 0
    })
    .await;

    let host = Host::start(&origin_url, &dir.file(), cluster).await;
    eventually("caught up", Duration::from_secs(5), || caught_up(&host)).await;
    let before = origin.total();
    let a = host.get("/product/1").await;
    assert!(!is_hit(&a), "purged while it was down: {}", a.cache_status);
    for p in ["/", "/product/2", "/cart-help"] {
        let a = host.get(p).await;
        assert!(is_hit(&a), "{p}: {}", a.cache_status);
    }
    assert_eq!(origin.total(), before + 1, "only the purged page fetched");
}

/// A `peakcache-proxy` process with `--snapshot`, its standard error captured.
struct Process {
    child: std::process::Child,
    url: String,
    admin: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Process {
    async fn start(origin: &str, snapshot: &Path) -> Process {
        let (listen, admin) = (
            format!("127.0.0.1:{}", free_port()),
            format!("127.0.0.1:{}", free_port()),
        );
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_peakcache-proxy"))
            .args(["--origin", origin, "--listen", &listen, "--admin", &admin])
            .arg("--snapshot")
            .arg(snapshot)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("peakcache-proxy");
        let p = Process {
            child,
            url: format!("http://{listen}"),
            admin: format!("http://{admin}"),
        };
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let up = client
                .get(format!("{}/metrics", p.admin).parse().unwrap())
                .await
                .is_ok();
            if up {
                return p;
            }
            assert!(Instant::now() < deadline, "the proxy did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn get(&self, path: &str) -> Answer {
        let req = Request::get(format!("{}{path}", self.url))
            .header("host", "shop.test")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let client: Client<HttpConnector, Empty<Bytes>> =
            Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let res = client.request(req).await.unwrap();
        let cache_status = res
            .headers()
            .get("cache-status")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            cache_status,
            age: None,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// Stops it as systemd does (SIGTERM) and returns what it said on standard error.
    fn stop(mut self) -> String {
        let pid = self.child.id() as i32;
        // SAFETY: kill only sends a signal to our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(self.child.wait().unwrap().success(), "{err}");
        err
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_process_stopped_writes_its_snapshot_and_restarted_serves_hits_with_no_origin_request(
) {
    let dir = TempDir::new("process");
    let (origin, origin_url) = start_origin().await;
    let first = Process::start(&origin_url, &dir.file()).await;
    let mut bodies = Vec::new();
    for p in PAGES {
        let a = first.get(p).await;
        assert_eq!(a.status, 200);
        bodies.push(a.body);
    }
    let said = first.stop();
    assert!(said.contains("wrote 4 responses to"), "{said}");
    assert_eq!(origin.total(), 4);

    let second = Process::start(&origin_url, &dir.file()).await;
    for (p, body) in PAGES.iter().zip(&bodies) {
        let a = second.get(p).await;
        assert!(is_hit(&a), "{p}: {}", a.cache_status);
        assert_eq!(&a.body, body);
    }
    assert_eq!(
        origin.total(),
        4,
        "the restarted proxy asked the origin nothing"
    );
    let said = second.stop();
    assert!(
        said.contains("restored 4 responses from"),
        "it says what it restored: {said}"
    );
}
