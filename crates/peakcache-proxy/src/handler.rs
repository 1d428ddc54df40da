//! One visitor request: key, lookup, and what each lifecycle answer means over HTTP.

use crate::body::{self, read_limited, Body, Limited};
use crate::cluster::{self, LocalPurges};
use crate::config::Config;
use crate::origin::{strip_hop_by_hop, Origin, OriginError};
use crate::snapshot::{SnapshotError, SnapshotStats};
use crate::stored::Cached;
use bytes::Bytes;
use http::{header, request, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use peakcache::{
    Cache, Fill, Freshness, Hit, InsertError, Lookup, PurgeMode, Refresh, Resolved, Served,
};
use peakcache_cluster::{BusPosition, Cluster, L2Lookup, Lease, LocalCache, Purge, Start};
use peakcache_http::{
    CacheStatus, Cause, ConditionalAnswer, DontStore, Fwd, Key, Policy, RequestDirectives, Reuse,
    StaleGrant, StaleUse, StaleWindows, Store, Vary,
};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The shield's requests come from the host's nginx, whose keys carry the visitor's scheme:
/// with `X-Forwarded-Proto: https` (or `http`) and a `Host`, the target becomes absolute in
/// that scheme, so that this proxy's key is the one nginx computes (and purges).
fn take_forwarded_scheme(parts: &mut request::Parts) {
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let scheme = match header("x-forwarded-proto").map(|p| p.trim().to_ascii_lowercase()) {
        Some(p) if p == "http" || p == "https" => p,
        _ => return,
    };
    let Some(host) = header(header::HOST.as_str()) else {
        return;
    };
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    if let Ok(uri) = http::Uri::builder()
        .scheme(scheme.as_str())
        .authority(host)
        .path_and_query(target)
        .build()
    {
        parts.uri = uri;
    }
}

/// The proxy's shared state.
pub struct Proxy {
    /// Responses by key. One past its windows stays until evicted (dead entries go first) and
    /// reaches the next miss's fill as `Fill::previous`, which revalidates it with a conditional
    /// request (RFC 9111 §4.3.1); a 304 brings it back (§4.3.4).
    pub(crate) cache: Cache<Arc<Cached>>,
    /// Primary key -> the fields its responses vary on.
    pub(crate) vary: Cache<Arc<Vary>>,
    pub(crate) policy: Policy,
    /// `policy` with request directives ignored: what applies while the cache is frozen.
    frozen_policy: Policy,
    pub(crate) origin: Origin,
    pub(crate) config: Config,
    /// Where purges are applied on this host.
    local: Arc<LocalPurges>,
    /// The cluster link, with `--cluster`.
    cluster: Option<Cluster>,
    /// The per-second history and the counts the status page needs (`ops.rs`).
    pub(crate) ops: crate::ops::Ops,
    /// One snapshot or restore at a time (`snapshot`).
    pub(crate) snapshot_lock: parking_lot::Mutex<()>,
    /// The snapshots written and restored, for `/metrics`.
    pub(crate) snapshot_stats: SnapshotStats,
}

/// The bound of the cache's tag purge records: every invalidation by an unsafe request adds
/// one, so a client POSTing to ever-new URLs cannot grow memory past it (about 10.5 MiB).
pub(crate) const MAX_TAG_MARKS: usize = 65_536;

/// How long a learned `Vary` is remembered for a URL.
const VARY_MEMORY: Duration = Duration::from_secs(86_400);

/// A fill or a refresh: the two tickets a fetch completes; or a revalidation the request's
/// directives asked for, which stores its answer outside the lifecycle.
enum Ticket {
    Fill(Fill<Arc<Cached>>),
    Refresh(Refresh<Arc<Cached>>),
    Direct(Cache<Arc<Cached>>, Bytes),
}

/// What a fetch completes: its ticket, and in a cluster the lease under which this host
/// fetches for every host (released, and the other hosts woken, when the job ends).
struct Job {
    ticket: Ticket,
    lease: Option<Lease>,
}

impl Job {
    fn new(ticket: Ticket) -> Self {
        Job {
            ticket,
            lease: None,
        }
    }

    /// Stores `value` for the ticket; returns the lease, to hand the value to the cluster.
    fn commit(self, value: Arc<Cached>, freshness: Freshness, tags: &[Bytes]) -> Option<Lease> {
        let _: Result<(), InsertError> = match self.ticket {
            Ticket::Fill(f) => f.commit_tagged(value, freshness, tags),
            Ticket::Refresh(r) => r.commit_tagged(value, freshness, tags),
            Ticket::Direct(cache, key) => cache.insert_tagged(&key, value, freshness, tags),
        };
        self.lease
    }

    fn fail(self) -> Option<Hit<Arc<Cached>>> {
        match self.ticket {
            Ticket::Fill(f) => f.fail(),
            Ticket::Refresh(r) => {
                r.fail();
                None
            }
            Ticket::Direct(..) => None,
        }
    }

    fn uncacheable(self, hold: Duration) {
        match self.ticket {
            Ticket::Fill(f) => f.uncacheable(hold),
            Ticket::Refresh(r) => r.uncacheable(hold),
            // The stored response is no longer the origin's answer: drop it.
            Ticket::Direct(cache, key) => {
                cache.purge(&key, PurgeMode::Hard);
            }
        }
    }

    fn is_refresh(&self) -> bool {
        matches!(self.ticket, Ticket::Refresh(_))
    }
}

/// What a fetch from the origin came to.
enum Fetched {
    /// Stored (and handed to the waiters), with the status the origin answered (200, 304, ...).
    Stored(Arc<Cached>, u16),
    /// Not cacheable, or too large: the origin's response, streaming.
    Passed(Response<Body>),
    /// The origin failed: the stale-if-error entry if any, else the origin's error response if
    /// it sent one, else nothing.
    Failed(
        Option<Hit<Arc<Cached>>>,
        Option<Response<Body>>,
        Option<OriginError>,
    ),
}

/// 500, 502, 503 and 504 are the errors stale-if-error answers for (RFC 5861 §4).
fn is_origin_error(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// The answer to an `only-if-cached` request the cache cannot satisfy (RFC 9111 §5.2.1.7).
fn not_cached() -> Response<Body> {
    plain(
        StatusCode::GATEWAY_TIMEOUT,
        "not in the cache (only-if-cached)\n",
    )
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

impl Proxy {
    /// The proxy for `config`.
    ///
    /// # Panics
    ///
    /// When `config.cluster` is set and the cluster link cannot start (outside a Tokio runtime,
    /// or an invalid cluster configuration); [`Proxy::try_new`] returns the reason instead.
    pub fn new(config: Config) -> Self {
        Self::try_new(config).unwrap_or_else(|e| panic!("peakcache-proxy: {e}"))
    }

    /// The proxy for `config`, or why it cannot start. With `config.cluster`, call it inside a
    /// Tokio runtime; Redis is not contacted here (the proxy serves whether or not Redis is up).
    ///
    /// With `config.snapshot`, the snapshot there (if any) is restored first, so the first
    /// visitors get HITs (a warm restart); a snapshot that cannot be used is reported and the
    /// proxy starts empty. In a cluster the link then reads the purge bus from the position the
    /// snapshot was written at, so every purge published since is applied to the restored
    /// entries (or, if the bus no longer holds them all, every entry is marked stale); a
    /// snapshot written outside this cluster has its entries marked stale at first contact.
    pub fn try_new(config: Config) -> Result<Self, String> {
        let mut proxy = Self::unjoined(config)?;
        let start = proxy.warm_start();
        if let Some(c) = proxy.config.cluster.clone() {
            let local: Arc<dyn LocalCache> = proxy.local.clone();
            proxy.cluster = Some(Cluster::start_from(c, local, start).map_err(|e| e.to_string())?);
        }
        Ok(proxy)
    }

    /// Restores `--snapshot`, if there is one; says where the cluster link starts reading.
    fn warm_start(&self) -> Start {
        let Some(path) = self.config.snapshot.as_deref() else {
            return Start::Fresh;
        };
        let restored = match self.restore(path, false) {
            Ok(r) => r,
            Err(SnapshotError::Missing(_)) => return Start::Fresh,
            Err(e) => {
                tracing::error!("{e}; starting with an empty cache");
                return Start::Fresh;
            }
        };
        tracing::info!(
            "restored {} responses from {} (written {} s ago) in {:.2} s{}",
            restored.responses,
            path.display(),
            restored.snapshot_age.as_secs(),
            restored.took.as_secs_f64(),
            if restored.skipped > 0 {
                format!(", {} skipped", restored.skipped)
            } else {
                String::new()
            }
        );
        let cluster = self.config.cluster.as_ref().map(|c| c.name.as_str());
        match restored.position {
            Some((name, position)) if Some(name.as_str()) == cluster => Start::Resume(position),
            _ if restored.responses > 0 => Start::Unknown,
            _ => Start::Fresh,
        }
    }

    /// Where this host is on the cluster's purge bus, with the cluster's name: every purge up
    /// to there has been applied. `None` outside a cluster, or before the first read.
    pub(crate) fn bus_position(&self) -> Option<(String, BusPosition)> {
        let name = self.config.cluster.as_ref()?.name.clone();
        Some((name, self.local.position.lock().clone()?))
    }

    /// The proxy for `config`, whose cluster link (if any) `join` starts: `join` is handed the
    /// proxy's own caches as purges see them, and the link it returns must apply every purge
    /// to them. The host agent (`--region`) starts one that applies purges to the host's
    /// region too. Call it inside a Tokio runtime.
    pub fn try_new_joined(
        config: Config,
        join: impl FnOnce(Arc<dyn LocalCache>) -> Result<Option<Cluster>, String>,
    ) -> Result<Self, String> {
        let mut proxy = Self::unjoined(config)?;
        proxy.cluster = join(proxy.local.clone())?;
        Ok(proxy)
    }

    /// The proxy for `config` outside any cluster, its cache empty.
    fn unjoined(config: Config) -> Result<Self, String> {
        let max_object = config.max_object + (64 << 10) + peakcache::ENTRY_OVERHEAD + 512;
        let cache = Cache::builder()
            .max_bytes(config.size)
            .max_object_weight(max_object)
            .lock_timeout(config.lock_timeout)
            .max_tag_marks(MAX_TAG_MARKS)
            .weigher(|key, c: &Arc<Cached>| c.weight(key))
            .build();
        let vary = Cache::builder()
            .max_bytes((config.size / 64).max(1 << 20))
            .build();
        let origin = Origin::new(
            config.origin.clone(),
            config.origin_concurrency,
            config.origin_timeout,
        );
        // Visitors reach this proxy over plain HTTP: keys (and purge URLs) say `http://`.
        let http = peakcache_http::Config {
            default_scheme: "http".into(),
            grace: StaleWindows {
                swr: Duration::ZERO,
                sie: config.stale_if_error_grace,
            },
            honour_request_directives: config.honour_request_directives,
            forward_tag_fields: config.shield,
            forward_targeted_fields: config.shield,
            ..Default::default()
        };
        let frozen = peakcache_http::Config {
            honour_request_directives: false,
            ..http.clone()
        };
        let local = Arc::new(LocalPurges {
            cache: cache.clone(),
            vary: vary.clone(),
            position: parking_lot::Mutex::new(None),
        });
        Ok(Proxy {
            cache,
            vary,
            policy: Policy::new(http),
            frozen_policy: Policy::new(frozen),
            origin,
            config,
            local,
            cluster: None,
            ops: crate::ops::Ops::default(),
            snapshot_lock: parking_lot::Mutex::new(()),
            snapshot_stats: SnapshotStats::default(),
        })
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The response cache.
    pub fn cache(&self) -> &Cache<Arc<Cached>> {
        &self.cache
    }

    /// The origin client and its counters.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// The cluster link, with `--cluster`.
    pub fn cluster(&self) -> Option<&Cluster> {
        self.cluster.as_ref()
    }

    /// Applies `purge` here at once (a key purge reaches every variant of it) and, in a
    /// cluster, on every other host.
    pub fn purge(&self, purge: Purge) {
        match &self.cluster {
            Some(cluster) => cluster.purge(purge),
            None => self.local.apply(&purge),
        }
    }

    /// Adds this proxy's `Cache-Status` member to a response: while the host is cut off from
    /// the cluster's purges, with `detail=cluster-lag`.
    fn finish(
        &self,
        headers: &mut http::HeaderMap,
        meta: Option<&peakcache_http::EntryMeta>,
        status: CacheStatus,
    ) {
        let status = match &self.cluster {
            Some(c) if c.is_lagging() => status.detail(cluster::LAGGING),
            _ => status,
        };
        self.policy
            .finish_response(headers, meta, SystemTime::now(), &status);
    }

    /// Before the origin, in a cluster: a fresh copy from the second-level cache, stored here
    /// for `job` (`Ok`); else the job, now holding the cluster's lease if this host won it
    /// (when another host held it, this waited for its copy first).
    async fn ask_cluster(
        &self,
        parts: &request::Parts,
        key: &Key,
        lookup_key: &Bytes,
        job: Job,
    ) -> Result<Arc<Cached>, Job> {
        let Some(cluster) = &self.cluster else {
            return Err(job);
        };
        let accept = |copy: &_| cluster::from_l2(copy, |c| self.fits(parts, c));
        match cluster.lookup(lookup_key, accept).await {
            L2Lookup::Hit((cached, tags, freshness)) => {
                self.commit(key, lookup_key, job, cached.clone(), freshness, &tags);
                Ok(cached)
            }
            L2Lookup::Fetch(lease) => Err(Job {
                lease: Some(lease),
                ..job
            }),
        }
    }

    /// The rules that apply to a visitor's request now: request directives are never honoured
    /// while the cache is frozen.
    fn visitor_policy(&self) -> &Policy {
        if self.cache.is_frozen() {
            &self.frozen_policy
        } else {
            &self.policy
        }
    }

    /// Answers one visitor request.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let (mut parts, incoming) = request.into_parts();
        // Before the key: what `Connection` names is for this hop alone (peakcache_http::upstream).
        peakcache_http::strip_hop_by_hop(&mut parts.headers);
        if self.config.shield {
            take_forwarded_scheme(&mut parts);
        }
        if parts.method != Method::GET && parts.method != Method::HEAD {
            return self.forward_unsafe(parts, incoming).await;
        }
        // A GET or HEAD goes upstream bodiless (a fill always; a pass too, so the origin is never
        // told to wait for bytes that are not sent).
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::EXPECT);
        // Unkeyed (Authorization, an invalid host, no-store when honoured): this visitor alone
        // goes to the origin; no entry or ticket is touched.
        let Ok(key) = self.visitor_policy().key(&parts) else {
            return self.forward(parts, body::empty(), Fwd::Bypass).await;
        };
        let (lookup_key, fwd) = match self.vary.get(key.as_bytes()) {
            Some(vary) => (
                key.variant(&self.policy.vary_key(&vary, &parts.headers)),
                Fwd::VaryMiss,
            ),
            None => (key.clone().into_bytes(), Fwd::UriMiss),
        };
        let rq = self.visitor_policy().request_directives(&parts);
        match self.cache.lookup(&lookup_key) {
            Lookup::Fresh(hit) => {
                if rq.reuse(&hit.value().meta, SystemTime::now()) == Reuse::Revalidate {
                    let stored = hit.value().clone();
                    let job = Job::new(Ticket::Direct(self.cache.clone(), lookup_key.clone()));
                    return self
                        .revalidate(parts, &rq, key, lookup_key, job, stored, Fwd::Request)
                        .await;
                }
                self.serve_hit(&parts, hit, None).await
            }
            Lookup::Stale(hit, refresh) => {
                if rq.reuse(&hit.value().meta, SystemTime::now()) == Reuse::Revalidate {
                    let stored = hit.value().clone();
                    let job = match refresh {
                        Some(refresh) => Job::new(Ticket::Refresh(refresh)),
                        None => Job::new(Ticket::Direct(self.cache.clone(), lookup_key.clone())),
                    };
                    return self
                        .revalidate(parts, &rq, key, lookup_key, job, stored, Fwd::Stale)
                        .await;
                }
                if let Some(refresh) = refresh {
                    let this = self.clone();
                    // Revalidated only as this request's variant (see `fill`).
                    let stored = Some(hit.value().clone()).filter(|c| self.fits(&parts, c));
                    let (req, key, lookup_key) = (parts.clone(), key.clone(), lookup_key.clone());
                    tokio::spawn(async move {
                        let job = Job::new(Ticket::Refresh(refresh));
                        // Another host may have refreshed it already.
                        if let Err(job) = this.ask_cluster(&req, &key, &lookup_key, job).await {
                            let _ = this.fetch(&req, &key, &lookup_key, job, stored).await;
                        }
                    });
                }
                self.serve_hit(&parts, hit, None).await
            }
            Lookup::Miss(fill) => {
                if rq.only_if_cached {
                    return not_cached();
                }
                self.clone()
                    .fill_detached(parts, key, lookup_key, fill, fwd)
                    .await
            }
            Lookup::Wait(_) | Lookup::Pass if rq.only_if_cached => not_cached(),
            Lookup::Wait(waiter) => {
                match tokio::time::timeout(self.config.lock_timeout, waiter).await {
                    Ok(Resolved::Hit(hit)) => {
                        let status = self.policy.cache_status().fwd(fwd).collapsed();
                        self.serve_hit(&parts, hit, Some(status)).await
                    }
                    Ok(Resolved::Fill(fill)) => {
                        self.clone()
                            .fill_detached(parts, key, lookup_key, fill, fwd)
                            .await
                    }
                    Ok(Resolved::Failed) => {
                        let mut r = plain(StatusCode::BAD_GATEWAY, "origin failed\n");
                        r.headers_mut()
                            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                        r
                    }
                    Ok(Resolved::Pass) | Ok(Resolved::TimedOut) | Err(_) => {
                        self.forward(parts, body::empty(), Fwd::Request).await
                    }
                }
            }
            Lookup::Pass => self.forward(parts, body::empty(), Fwd::Request).await,
        }
    }

    /// A stored response the request's directives do not let the cache use as it is
    /// (RFC 9111 §5.2.1): validated with the origin, then answered from what that gives.
    #[allow(clippy::too_many_arguments)]
    async fn revalidate(
        &self,
        parts: request::Parts,
        rq: &RequestDirectives,
        key: Key,
        lookup_key: Bytes,
        job: Job,
        stored: Arc<Cached>,
        fwd: Fwd,
    ) -> Response<Body> {
        if rq.only_if_cached {
            return not_cached();
        }
        self.complete(parts, key, lookup_key, job, Some(stored), fwd)
            .await
    }

    /// `fill` in a task of its own: the page is fetched for everyone, so a visitor who leaves
    /// (closes the connection, which drops this request's future) does not end the fetch its
    /// waiters and the next visitors are served from; it is stored all the same.
    async fn fill_detached(
        self: Arc<Self>,
        parts: request::Parts,
        key: Key,
        lookup_key: Bytes,
        fill: Fill<Arc<Cached>>,
        fwd: Fwd,
    ) -> Response<Body> {
        let task = tokio::spawn(async move { self.fill(parts, key, lookup_key, fill, fwd).await });
        match task.await {
            Ok(response) => response,
            // A panic in the fetch: its fill was abandoned as the task unwound.
            Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
        }
    }

    /// A miss: fetch (conditionally, when the fill carries an expired copy with validators),
    /// store, answer.
    async fn fill(
        &self,
        parts: request::Parts,
        key: Key,
        lookup_key: Bytes,
        fill: Fill<Arc<Cached>>,
        fwd: Fwd,
    ) -> Response<Body> {
        // Revalidate the expired copy only if it is this request's variant: a 304 merged into
        // another variant's response would store it under this one's key.
        let stored = fill.previous().filter(|c| self.fits(&parts, c)).cloned();
        let job = match self
            .ask_cluster(&parts, &key, &lookup_key, Job::new(Ticket::Fill(fill)))
            .await
        {
            Ok(cached) => {
                let status = self
                    .policy
                    .cache_status()
                    .hit()
                    .ttl(cached.meta.ttl_secs(SystemTime::now()))
                    .detail(cluster::FROM_L2);
                return self.serve_cached(&parts, &cached, status).await;
            }
            Err(job) => job,
        };
        let fwd = if stored.is_some() { Fwd::Stale } else { fwd };
        self.complete(parts, key, lookup_key, job, stored, fwd)
            .await
    }

    /// Fetches for `job` and answers the request from the outcome.
    async fn complete(
        &self,
        parts: request::Parts,
        key: Key,
        lookup_key: Bytes,
        job: Job,
        stored: Option<Arc<Cached>>,
        fwd: Fwd,
    ) -> Response<Body> {
        match self.fetch(&parts, &key, &lookup_key, job, stored).await {
            Fetched::Stored(cached, origin_status) => {
                let status = self
                    .policy
                    .cache_status()
                    .fwd(fwd)
                    .fwd_status(origin_status)
                    .stored();
                self.serve_cached(&parts, &cached, status).await
            }
            Fetched::Passed(mut response) => {
                let status = self
                    .policy
                    .cache_status()
                    .fwd(fwd)
                    .fwd_status(response.status().as_u16());
                self.finish(response.headers_mut(), None, status);
                response
            }
            Fetched::Failed(stale, response, error) => {
                self.failed(&parts, stale, response, error).await
            }
        }
    }

    /// Whether `cached` answers this request's variant (always, when it does not vary).
    fn fits(&self, parts: &request::Parts, cached: &Cached) -> bool {
        cached.vary.is_empty()
            || self.policy.vary_key(&cached.vary, &parts.headers) == cached.vary_key
    }

    /// The origin failed: the stale copy if the origin's windows allow it and it is this
    /// request's variant, else the origin's error.
    async fn failed(
        &self,
        parts: &request::Parts,
        stale: Option<Hit<Arc<Cached>>>,
        response: Option<Response<Body>>,
        error: Option<OriginError>,
    ) -> Response<Body> {
        if let Some(hit) = stale.filter(|h| self.fits(parts, h.value())) {
            let now = SystemTime::now();
            let cached = hit.value().clone();
            let grant = cached
                .meta
                .stale_grant(StaleUse::IfError, now)
                .unwrap_or(StaleGrant::Origin);
            let mut status = self.policy.cache_status().fwd(Fwd::Stale);
            if let Some(r) = &response {
                status = status.fwd_status(r.status().as_u16());
            }
            let status = status.stale(StaleUse::IfError, grant);
            return self.serve_cached(parts, &cached, status).await;
        }
        if let Some(mut response) = response {
            let status = self
                .policy
                .cache_status()
                .fwd(Fwd::Miss)
                .fwd_status(response.status().as_u16());
            self.finish(response.headers_mut(), None, status);
            return response;
        }
        match error {
            Some(OriginError::Timeout) => plain(StatusCode::GATEWAY_TIMEOUT, "origin timed out\n"),
            Some(OriginError::Unreachable(_)) => {
                plain(StatusCode::BAD_GATEWAY, "origin unreachable\n")
            }
            None => {
                let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "origin busy\n");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                r
            }
        }
    }

    /// Fetches `key` from the origin for a fill or a refresh (revalidating `stored` when
    /// given), completes the ticket, and says what happened.
    async fn fetch(
        &self,
        req: &request::Parts,
        key: &Key,
        lookup_key: &Bytes,
        job: Job,
        stored: Option<Arc<Cached>>,
    ) -> Fetched {
        let Some(_permit) = self.origin.try_permit() else {
            // Too many origin requests in flight: serve stale if there is any, else 503 quickly.
            return Fetched::Failed(job.fail(), None, None);
        };
        let mut up = req.clone();
        self.policy.prepare_upstream(&mut up);
        up.method = Method::GET;
        if let Some(stored) = &stored {
            for (name, value) in self
                .policy
                .conditional_request_headers(&stored.parts)
                .iter()
            {
                up.headers.insert(name.clone(), value.clone());
            }
        }
        let sent = SystemTime::now();
        let response = match self.origin.send(up.clone(), body::empty()).await {
            Ok(r) => r,
            Err(e) => return Fetched::Failed(job.fail(), None, Some(e)),
        };
        let received = SystemTime::now();
        let (mut head, incoming) = response.into_parts();
        strip_hop_by_hop(&mut head.headers);
        if is_origin_error(head.status) {
            self.origin.count_error();
            // Serve stale where the windows allow it (RFC 5861 §4); otherwise a 5xx with
            // freshness information is a response like any other (RFC 9111 §3).
            let stale_allowed = job.is_refresh()
                || stored.as_ref().is_some_and(|s| {
                    s.meta
                        .stale_grant(StaleUse::IfError, SystemTime::now())
                        .is_some()
                });
            if stale_allowed || self.policy.on_response(&up, &head, sent, received).is_err() {
                let error = Response::from_parts(head, body::stream(incoming));
                return Fetched::Failed(job.fail(), Some(error), None);
            }
        }
        if head.status == StatusCode::NOT_MODIFIED {
            if let Some(stored) = stored {
                return self.revalidated(&up, key, lookup_key, job, &stored, head, sent, received);
            }
        }
        let store = match self.policy.on_response(&up, &head, sent, received) {
            Ok(store) => store,
            Err(why) => {
                self.give_up(job, &why);
                return Fetched::Passed(Response::from_parts(head, body::stream(incoming)));
            }
        };
        let body = match tokio::time::timeout(
            self.config.origin_timeout,
            read_limited(incoming, self.config.max_object),
        )
        .await
        {
            Ok(Ok(Limited::Whole(bytes))) => bytes,
            Ok(Ok(Limited::TooLarge(body))) => {
                job.uncacheable(self.config.pass_hold);
                return Fetched::Passed(Response::from_parts(head, body));
            }
            Ok(Err(_)) => {
                return Fetched::Failed(
                    job.fail(),
                    None,
                    Some(OriginError::Unreachable("body broke off".into())),
                )
            }
            Err(_) => return Fetched::Failed(job.fail(), None, Some(OriginError::Timeout)),
        };
        let status = head.status.as_u16();
        Fetched::Stored(self.store(key, lookup_key, job, &store, head, body), status)
    }

    /// Completes a ticket whose response is not stored: only the response's own directives may
    /// make the key pass through for a while; a reason in the request (which a fill's request,
    /// stripped by `prepare_upstream`, should never have) leaves the entry and its tickets alone.
    fn give_up(&self, job: Job, why: &DontStore) {
        match why.cause() {
            Cause::Response => job.uncacheable(self.config.pass_hold),
            Cause::Request => drop(job),
        }
    }

    /// Readies a response to store (RFC 9111 §3.1), stores it for `job` and returns it.
    fn store(
        &self,
        key: &Key,
        lookup_key: &Bytes,
        job: Job,
        store: &Store,
        mut head: http::response::Parts,
        body: Bytes,
    ) -> Arc<Cached> {
        store.prepare(&mut head);
        let cached = Arc::new(Cached {
            parts: head,
            body,
            meta: store.meta,
            vary: store.vary.clone(),
            vary_key: store.vary_key.clone(),
        });
        let tags: Vec<Bytes> = store
            .tags
            .iter()
            .map(|t| Bytes::copy_from_slice(t.as_bytes()))
            .collect();
        self.commit(key, lookup_key, job, cached.clone(), store.freshness, &tags);
        cached
    }

    /// Stores a response under the ticket's key and, when it varies, under its variant key
    /// too; every variant is tagged with its primary key so a URL purge reaches them all, and
    /// with the tag of every entry so "everything stale" is one tag purge. Under the cluster's
    /// lease, hands it to the second-level cache for the other hosts.
    fn commit(
        &self,
        key: &Key,
        lookup_key: &Bytes,
        job: Job,
        cached: Arc<Cached>,
        freshness: Freshness,
        tags: &[Bytes],
    ) {
        let mut all_tags = tags.to_vec();
        all_tags.push(key.clone().into_bytes());
        all_tags.push(Bytes::from_static(cluster::EVERY_ENTRY));
        let vary = &cached.vary;
        if !vary.is_empty() {
            let _ = self.vary.insert(
                key.as_bytes(),
                Arc::new(vary.clone()),
                Freshness::new(VARY_MEMORY),
            );
            let variant = key.variant(&cached.vary_key);
            if variant != lookup_key {
                let _ = self
                    .cache
                    .insert_tagged(&variant, cached.clone(), freshness, &all_tags);
            }
        }
        // Too large cannot happen: the body was read up to the object limit, below the cache's.
        if let Some(lease) = job.commit(cached.clone(), freshness, &all_tags) {
            lease.put(cluster::to_l2(key, &cached, freshness, tags));
        }
    }

    /// A 304 to a revalidation: the stored response updated and stored again.
    #[allow(clippy::too_many_arguments)]
    fn revalidated(
        &self,
        up: &request::Parts,
        key: &Key,
        lookup_key: &Bytes,
        job: Job,
        stored: &Cached,
        not_modified: http::response::Parts,
        sent: SystemTime,
        received: SystemTime,
    ) -> Fetched {
        let Ok(merged) = self.policy.merge_304(&stored.parts, &not_modified) else {
            return Fetched::Failed(job.fail(), None, None);
        };
        let store = match self.policy.on_response(up, &merged, sent, received) {
            Ok(store) => store,
            Err(why) => {
                self.give_up(job, &why);
                return Fetched::Passed(Response::from_parts(
                    merged,
                    body::full(stored.body.clone()),
                ));
            }
        };
        let cached = self.store(key, lookup_key, job, &store, merged, stored.body.clone());
        Fetched::Stored(cached, StatusCode::NOT_MODIFIED.as_u16())
    }

    /// Serves a hit (fresh or stale), unless its variant does not match this request.
    async fn serve_hit(
        &self,
        parts: &request::Parts,
        hit: Hit<Arc<Cached>>,
        status: Option<CacheStatus>,
    ) -> Response<Body> {
        let cached = hit.value().clone();
        if !self.fits(parts, &cached) {
            // A waiter of a fill for another variant (only before the URL's Vary is known).
            return self
                .forward(parts.clone(), body::empty(), Fwd::VaryMiss)
                .await;
        }
        let now = SystemTime::now();
        let status = status.unwrap_or_else(|| {
            let s = self
                .policy
                .cache_status()
                .hit()
                .ttl(cached.meta.ttl_secs(now));
            match hit.served() {
                Served::Fresh => s,
                Served::Stale => {
                    let grant = cached
                        .meta
                        .stale_grant(StaleUse::WhileRevalidate, now)
                        .unwrap_or(StaleGrant::Origin);
                    s.stale(StaleUse::WhileRevalidate, grant)
                }
                Served::StaleIfError => {
                    let grant = cached
                        .meta
                        .stale_grant(StaleUse::IfError, now)
                        .unwrap_or(StaleGrant::Origin);
                    s.stale(StaleUse::IfError, grant)
                }
            }
        });
        self.serve_cached(parts, &cached, status).await
    }

    /// Answers from a stored response: a 304 to a matching conditional request, the response
    /// itself otherwise (without body for HEAD).
    async fn serve_cached(
        &self,
        parts: &request::Parts,
        cached: &Cached,
        status: CacheStatus,
    ) -> Response<Body> {
        let (head, body) = match self.policy.answer_conditional(parts, &cached.parts) {
            ConditionalAnswer::NotModified(head) => (head, body::empty()),
            ConditionalAnswer::ServeStored => {
                let body = if parts.method == Method::HEAD {
                    body::empty()
                } else {
                    body::full(cached.body.clone())
                };
                (cached.parts.clone(), body)
            }
            ConditionalAnswer::Forward => {
                return self
                    .forward(parts.clone(), body::empty(), Fwd::Request)
                    .await
            }
        };
        let mut response = Response::from_parts(head, body);
        self.finish(response.headers_mut(), Some(&cached.meta), status);
        response
    }

    /// Sends the request to the origin as it is, stores nothing.
    async fn forward(&self, parts: request::Parts, body: Body, fwd: Fwd) -> Response<Body> {
        let Some(_permit) = self.origin.try_permit() else {
            let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "origin busy\n");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        };
        let mut response = match self.origin.send(parts, body).await {
            Ok(r) => {
                let (mut head, incoming) = r.into_parts();
                strip_hop_by_hop(&mut head.headers);
                Response::from_parts(head, body::stream(incoming))
            }
            Err(OriginError::Timeout) => {
                return plain(StatusCode::GATEWAY_TIMEOUT, "origin timed out\n")
            }
            Err(OriginError::Unreachable(_)) => {
                return plain(StatusCode::BAD_GATEWAY, "origin unreachable\n")
            }
        };
        let status = self
            .policy
            .cache_status()
            .fwd(fwd)
            .fwd_status(response.status().as_u16());
        self.finish(response.headers_mut(), None, status);
        response
    }

    /// An unsafe (or unknown) method: forwarded with its body; after a success, the URLs it
    /// changed are invalidated (RFC 9111 §4.4).
    async fn forward_unsafe(&self, parts: request::Parts, incoming: Incoming) -> Response<Body> {
        let request = parts.clone();
        let response = self
            .forward(parts, body::stream(incoming), Fwd::Method)
            .await;
        let (head, body) = response.into_parts();
        for key in self.policy.invalidations(&request, &head) {
            self.purge(Purge::Key {
                key: key.into_bytes(),
                mode: PurgeMode::Hard,
            });
        }
        Response::from_parts(head, body)
    }
}
