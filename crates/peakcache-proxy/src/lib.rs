//! peakcache-proxy: a small caching reverse proxy on hyper, the reference integration of the
//! `peakcache` core and the `peakcache-http` semantics.
//!
//! It coalesces misses (one origin request per URL per expiry), serves stale entries at once
//! while one background request refreshes them, serves stale-if-error when the origin fails,
//! times out a hung origin, bounds the origin requests in flight (beyond the bound: stale if
//! any, else 503 with `Retry-After`), streams responses larger than the object limit without
//! buffering them, and offers purge by URL or tag, freeze and Prometheus metrics on a separate
//! admin listener.
//!
//! With `--cluster redis://HOST:PORT` it is one host of a cluster (`peakcache-cluster`): its
//! purges, freezes and thaws reach every host, a page missing here is read from the
//! second-level cache in Redis before the origin, one host at a time fetches a page for all,
//! and a host cut off from the purges longer than `--max-lag` serves nothing as fresh.
//! `Cache-Status` says `detail=l2` on an answer read from the second-level cache (another host
//! fetched it), and `detail=cluster-lag` on every answer while the host is cut off.
//!
//! With `--snapshot PATH` it keeps a [snapshot] of its cache: restored at start (a
//! warm restart), written every `--snapshot-interval` and when stopped, and restored on the
//! admin's `POST /restore?freeze=1` (a rollback in one request).
//!
//! With `--region PATH` it is the [host agent](agent) of an nginx or PHP-FPM shared region
//! instead: the region's purges reach every host, the cluster's reach every process of the
//! host; with `--origin` too, it is also the shield nginx proxies its misses to.

#![deny(missing_docs)]

pub mod admin;
pub mod agent;
pub mod body;
mod cluster;
pub mod config;
pub mod handler;
pub mod ops;
pub mod origin;
pub mod snapshot;
pub mod stored;

pub use config::Config;
pub use handler::Proxy;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Binds a listener with a backlog of 1,024 connections: a campaign burst opens hundreds of
/// connections at once, and tokio's default backlog of 128 would make the rest wait a second
/// for a SYN retransmit.
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Serves visitors on `listener` (and the admin API on `admin`, if given) until the task is
/// dropped.
pub async fn serve(proxy: Arc<Proxy>, listener: TcpListener, admin: Option<TcpListener>) {
    if let Some(admin) = admin {
        let proxy = proxy.clone();
        tokio::spawn(accept(admin, move |req| admin::handle(proxy.clone(), req)));
    }
    // Ends with the runtime: the history is sampled as long as the proxy serves.
    tokio::spawn(ops::sample_every_second(proxy.clone()));
    if let Some(every) = proxy.config.snapshot_interval {
        tokio::spawn(snapshot::write_every(proxy.clone(), every));
    }
    accept(listener, move |req| {
        let proxy = proxy.clone();
        async move {
            let response = proxy.clone().handle(req).await;
            proxy.ops.count_visitor(response.status());
            response
        }
    })
    .await
}

/// Accepts connections forever, answering each request with `answer` (HTTP/1.1, keep-alive).
pub async fn accept<F, Fut>(listener: TcpListener, answer: F)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = hyper::Response<body::Body>> + Send + 'static,
{
    loop {
        let (stream, _peer): (_, SocketAddr) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment instead of spinning.
                tracing::error!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let answer = answer.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let answer = answer.clone();
                async move { Ok::<_, Infallible>(answer(req).await) }
            });
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
