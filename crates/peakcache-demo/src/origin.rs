//! The demo origin: a deliberately slow HTTP/1.1 server standing in for a PHP application.
//!
//! Every `GET /page/N` takes one of a bounded number of "workers" (a semaphore, like a PHP-FPM
//! pool), sleeps for the configured delay (the database), and answers a small HTML page with
//! `Cache-Control: max-age=M, stale-while-revalidate=S, stale-if-error=E`, `ETag`,
//! `Last-Modified`, `Date` and `Surrogate-Key: page-N campaign`. A flood therefore queues up
//! and its latency grows with the queue, as a real origin's does.
//!
//! Control endpoints on the same port, never delayed and never counted:
//! - `GET /__origin/stats`: JSON counts, total and per path, each also per second since reset;
//! - `POST /__origin/fail[?mode=503|hang|refuse]`: from now on answer 503 after the delay
//!   (default), hang until healed, or close the connection without an answer;
//! - `POST /__origin/heal`: answer normally again (and release hung requests);
//! - `POST /__origin/reset`: heal, zero every counter and generation, restart the clock.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use httpdate::fmt_http_date;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

/// Per-second counters stop growing after this many seconds (totals keep counting).
pub const MAX_SECONDS: usize = 3600;

/// How the origin behaves; every field has a command-line flag in `demo-origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginConfig {
    /// Time each page request spends in a worker before it is answered.
    pub delay: Duration,
    /// Concurrent workers; requests beyond this queue.
    pub workers: usize,
    /// `max-age` of the pages, in seconds.
    pub max_age: u32,
    /// `stale-while-revalidate` of the pages, in seconds.
    pub swr: u32,
    /// `stale-if-error` of the pages, in seconds.
    pub sie: u32,
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            delay: Duration::from_millis(100),
            workers: 32,
            max_age: 4,
            swr: 2,
            sie: 300,
        }
    }
}

impl OriginConfig {
    /// The `Cache-Control` value the pages carry.
    pub fn cache_control(&self) -> String {
        format!(
            "public, max-age={}, stale-while-revalidate={}, stale-if-error={}",
            self.max_age, self.swr, self.sie
        )
    }
}

/// How a failing origin fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Answer `503 Service Unavailable` after the usual delay.
    Unavailable,
    /// Never answer until healed (a worker stuck on a dead database).
    Hang,
    /// Close the connection of every page request at once, without an answer (the
    /// application is gone; the control endpoints on the same port stay reachable).
    Refuse,
}

impl FailMode {
    /// The name used on the command line and in `?mode=`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::Unavailable => "503",
            FailMode::Hang => "hang",
            FailMode::Refuse => "refuse",
        }
    }
}

impl FromStr for FailMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "503" | "unavailable" | "error" => Ok(FailMode::Unavailable),
            "hang" => Ok(FailMode::Hang),
            "refuse" | "close" => Ok(FailMode::Refuse),
            _ => Err(format!("unknown fail mode {s:?} (503, hang, refuse)")),
        }
    }
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The origin's current behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answering pages normally.
    Healthy,
    /// Failing in the given way.
    Failing(FailMode),
}

impl Mode {
    /// `healthy`, or the fail mode's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Healthy => "healthy",
            Mode::Failing(m) => m.as_str(),
        }
    }
}

#[derive(Debug)]
struct PathCounters {
    requests: u64,
    generation: u64,
    last_modified: SystemTime,
    per_second: Vec<u64>,
}

#[derive(Debug)]
struct Counters {
    started: Instant,
    total: u64,
    ok: u64,
    not_modified: u64,
    failed: u64,
    while_failing: u64,
    per_second: Vec<u64>,
    paths: BTreeMap<String, PathCounters>,
}

impl Counters {
    fn new() -> Self {
        Counters {
            started: Instant::now(),
            total: 0,
            ok: 0,
            not_modified: 0,
            failed: 0,
            while_failing: 0,
            per_second: Vec::new(),
            paths: BTreeMap::new(),
        }
    }

    fn second(&self) -> usize {
        self.started.elapsed().as_secs() as usize
    }

    /// The counters as the stats document has them, each series `seconds` long.
    fn snapshot(&self, seconds: usize) -> OriginStats {
        let paths = self.paths.iter().map(|(path, p)| {
            let stats = PathStats {
                requests: p.requests,
                generation: p.generation,
                per_second: padded(&p.per_second, seconds),
            };
            (path.clone(), stats)
        });
        OriginStats {
            total: self.total,
            ok: self.ok,
            not_modified: self.not_modified,
            failed: self.failed,
            while_failing: self.while_failing,
            per_second: padded(&self.per_second, seconds),
            paths: paths.collect(),
        }
    }
}

/// `buckets`, cut or filled with zeroes to `seconds` entries: every series of one document
/// spans the same seconds, however late its path was first asked for.
fn padded(buckets: &[u64], seconds: usize) -> Vec<u64> {
    (0..seconds)
        .map(|i| buckets.get(i).copied().unwrap_or(0))
        .collect()
}

fn bump(buckets: &mut Vec<u64>, second: usize) {
    if second < MAX_SECONDS {
        if buckets.len() <= second {
            buckets.resize(second + 1, 0);
        }
        buckets[second] += 1;
    }
}

/// The origin's shared state: configuration, worker pool, mode and counters.
#[derive(Debug)]
pub struct OriginState {
    config: OriginConfig,
    workers: Semaphore,
    mode: watch::Sender<Mode>,
    counters: Mutex<Counters>,
}

impl OriginState {
    /// A healthy origin with zeroed counters.
    pub fn new(config: OriginConfig) -> Arc<Self> {
        Arc::new(OriginState {
            workers: Semaphore::new(config.workers.max(1)),
            config,
            mode: watch::Sender::new(Mode::Healthy),
            counters: Mutex::new(Counters::new()),
        })
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &OriginConfig {
        &self.config
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Switches the mode (what `/__origin/fail` and `/__origin/heal` do).
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// Heals, and zeroes every counter and generation (what `/__origin/reset` does).
    pub fn reset(&self) {
        *self.counters.lock().unwrap() = Counters::new();
        self.set_mode(Mode::Healthy);
    }

    /// Page requests received since the last reset.
    pub fn total(&self) -> u64 {
        self.counters.lock().unwrap().total
    }

    /// The stats document served at `/__origin/stats`.
    pub fn stats_json(&self) -> String {
        let c = self.counters.lock().unwrap();
        let elapsed = c.started.elapsed();
        let seconds = ((elapsed.as_secs() as usize) + 1).min(MAX_SECONDS);
        let doc = StatsDoc {
            mode: self.mode().as_str(),
            elapsed_ms: elapsed.as_millis().try_into().unwrap_or(u64::MAX),
            counters: c.snapshot(seconds),
        };
        serde_json::to_string(&doc).expect("the stats document has only strings and numbers")
    }

    fn count_arrival(&self, path: &str) {
        let failing = self.mode() != Mode::Healthy;
        let mut c = self.counters.lock().unwrap();
        let s = c.second();
        c.total += 1;
        c.while_failing += failing as u64;
        bump(&mut c.per_second, s);
        let p = c
            .paths
            .entry(path.to_owned())
            .or_insert_with(|| PathCounters {
                requests: 0,
                generation: 0,
                last_modified: SystemTime::now(),
                per_second: Vec::new(),
            });
        p.requests += 1;
        bump(&mut p.per_second, s);
    }
}

/// The `/__origin/stats` document's counters: what the origin serves and the harness reads back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginStats {
    /// Page requests received since the reset.
    pub total: u64,
    /// Answered 200.
    pub ok: u64,
    /// Answered 304 (the client's `If-None-Match` matched).
    pub not_modified: u64,
    /// Answered 503.
    pub failed: u64,
    /// Received while the origin was failing (any fail mode).
    pub while_failing: u64,
    /// Page requests received in each second since the reset.
    pub per_second: Vec<u64>,
    /// Per path (`/page/N`): requests, and requests in each second since the reset.
    pub paths: BTreeMap<String, PathStats>,
}

/// One path's counters in [`OriginStats`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathStats {
    /// Requests received.
    pub requests: u64,
    /// Full (200) answers given, so the generation the latest one carried.
    pub generation: u64,
    /// Requests received in each second since the reset.
    pub per_second: Vec<u64>,
}

impl OriginStats {
    /// Reads the document served at `/__origin/stats`; a missing or mistyped counter is an
    /// error naming it.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| format!("stats: {e}"))
    }
}

/// The whole `/__origin/stats` document: the mode and the time since the reset, then the
/// counters.
#[derive(Serialize)]
struct StatsDoc<'a> {
    mode: &'a str,
    elapsed_ms: u64,
    #[serde(flatten)]
    counters: OriginStats,
}

/// Returned by the service to make hyper drop the connection without an answer.
#[derive(Debug)]
pub struct Refused;

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("origin refuses connections")
    }
}

impl std::error::Error for Refused {}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json_resp(body: String) -> Resp {
    let mut r = text(StatusCode::OK, body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn control(st: &OriginState, what: &str, method: &Method, query: Option<&str>) -> Resp {
    match (method, what) {
        (&Method::GET, "stats") => json_resp(st.stats_json()),
        (&Method::POST, "fail") => {
            let mode = query
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("mode="))
                .unwrap_or("503");
            match mode.parse::<FailMode>() {
                Ok(m) => {
                    st.set_mode(Mode::Failing(m));
                    json_resp(json!({ "mode": m.as_str() }).to_string())
                }
                Err(e) => text(StatusCode::BAD_REQUEST, e),
            }
        }
        (&Method::POST, "heal") => {
            st.set_mode(Mode::Healthy);
            json_resp(json!({ "mode": "healthy" }).to_string())
        }
        (&Method::POST, "reset") => {
            st.reset();
            json_resp(json!({ "mode": "healthy", "reset": true }).to_string())
        }
        (_, "stats" | "fail" | "heal" | "reset") => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "unknown control endpoint\n"),
    }
}

fn page_response(st: &OriginState, page: u32, path: &str, if_none_match: Option<&[u8]>) -> Resp {
    let now = SystemTime::now();
    let (generation, last_modified, not_modified) = {
        let mut c = st.counters.lock().unwrap();
        let p = c.paths.get_mut(path).expect("counted on arrival");
        let current = format!("\"p{page}-g{}\"", p.generation);
        let not_modified = p.generation > 0
            && if_none_match.is_some_and(|v| {
                v.split(|&b| b == b',')
                    .any(|t| t.trim_ascii() == current.as_bytes() || t.trim_ascii() == b"*")
            });
        if !not_modified {
            p.generation += 1;
            p.last_modified = now;
        }
        let r = (p.generation, p.last_modified, not_modified);
        if not_modified {
            c.not_modified += 1;
        } else {
            c.ok += 1;
        }
        r
    };
    let mut r = if not_modified {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let body = format!(
            "<!doctype html>\n<html><head><title>Campaign page {page}</title></head>\
             <body><h1>Campaign page {page}</h1><p>generation {generation}, rendered by demo-origin</p></body></html>\n"
        );
        let mut r = Response::new(Full::new(Bytes::from(body)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r
    };
    let h = r.headers_mut();
    let hv = |s: String| HeaderValue::from_str(&s).expect("ASCII header");
    h.insert(header::CACHE_CONTROL, hv(st.config.cache_control()));
    h.insert(header::ETAG, hv(format!("\"p{page}-g{generation}\"")));
    h.insert(header::LAST_MODIFIED, hv(fmt_http_date(last_modified)));
    h.insert(header::DATE, hv(fmt_http_date(now)));
    h.insert("surrogate-key", hv(format!("page-{page} campaign")));
    r
}

/// Answers one request (page or control).
pub async fn handle(st: Arc<OriginState>, req: Request<Incoming>) -> Result<Resp, Refused> {
    let path = req.uri().path();
    if let Some(what) = path.strip_prefix("/__origin/") {
        return Ok(control(&st, what, req.method(), req.uri().query()));
    }
    let Some(page) = path
        .strip_prefix("/page/")
        .and_then(|n| n.parse::<u32>().ok())
    else {
        return Ok(text(StatusCode::NOT_FOUND, "no such page\n"));
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"));
    }
    let path = format!("/page/{page}");
    st.count_arrival(&path);
    if st.mode() == Mode::Failing(FailMode::Refuse) {
        return Err(Refused);
    }
    let _worker = st
        .workers
        .acquire()
        .await
        .expect("the worker pool is never closed");
    tokio::time::sleep(st.config.delay).await;
    let mut rx = st.mode.subscribe();
    let mode = *rx
        .wait_for(|m| *m != Mode::Failing(FailMode::Hang))
        .await
        .expect("the sender lives in the state");
    match mode {
        Mode::Healthy => {
            let inm = req
                .headers()
                .get(header::IF_NONE_MATCH)
                .map(|v| v.as_bytes());
            Ok(page_response(&st, page, &path, inm))
        }
        Mode::Failing(FailMode::Refuse) => Err(Refused),
        Mode::Failing(_) => {
            st.counters.lock().unwrap().failed += 1;
            Ok(text(StatusCode::SERVICE_UNAVAILABLE, "origin down\n"))
        }
    }
}

/// Accepts connections on `listener` and serves them until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, st: Arc<OriginState>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Out of descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let st = st.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// A running origin; dropping it stops the server and closes its connections.
#[derive(Debug)]
pub struct OriginHandle {
    addr: SocketAddr,
    state: Arc<OriginState>,
    task: JoinHandle<()>,
}

impl OriginHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its state (counters, mode), for in-process use.
    pub fn state(&self) -> &Arc<OriginState> {
        &self.state
    }
}

impl Drop for OriginHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listen backlog of the origin: like nginx's 511 and PHP-FPM's, large enough for a burst of
/// hundreds of connections (tokio's default of 128 would drop SYNs and cost those visitors a
/// one-second retransmit).
pub const BACKLOG: u32 = 1024;

/// Binds `addr` with a [`BACKLOG`]-deep accept queue.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Binds `addr` (use port 0 for any free port) and serves the origin on the current runtime.
pub async fn spawn(addr: SocketAddr, config: OriginConfig) -> std::io::Result<OriginHandle> {
    let listener = bind(addr)?;
    let addr = listener.local_addr()?;
    let state = OriginState::new(config);
    let task = tokio::spawn(serve(listener, state.clone()));
    Ok(OriginHandle { addr, state, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stats_document_reads_back_as_counted() {
        let st = OriginState::new(OriginConfig::default());
        for path in ["/page/1", "/page/1", "/page/\"2\"\\\n"] {
            st.count_arrival(path);
        }
        st.set_mode(Mode::Failing(FailMode::Hang));
        st.count_arrival("/page/1");
        let text = st.stats_json();
        assert!(
            text.starts_with(r#"{"mode":"hang","elapsed_ms":"#),
            "{text}"
        );
        let back = OriginStats::parse(&text).unwrap();
        assert_eq!((back.total, back.while_failing), (4, 1));
        assert_eq!(back.per_second, vec![4]);
        assert_eq!(back.paths["/page/1"].requests, 3);
        assert_eq!(back.paths["/page/\"2\"\\\n"].per_second, vec![1]);
    }

    #[test]
    fn a_stats_document_missing_a_counter_names_it() {
        let e = OriginStats::parse(r#"{"total":1,"ok":1,"failed":0}"#).unwrap_err();
        assert!(e.contains("not_modified"), "{e}");
        let e = OriginStats::parse(r#"{"total":-1}"#).unwrap_err();
        assert!(e.starts_with("stats: "), "{e}");
        assert!(OriginStats::parse(r#"{"total":1} x"#).is_err());
    }
}
