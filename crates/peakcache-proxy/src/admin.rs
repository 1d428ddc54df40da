//! The admin listener: purge by URL or tag (hard or soft), freeze, and metrics. It listens on
//! its own address, off by default, so no visitor can purge.

use crate::agent::Agent;
use crate::body::{self, Body};
use crate::handler::Proxy;
use crate::snapshot::SnapshotError;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use peakcache::PurgeMode;
use peakcache_cluster::Purge;
use std::sync::Arc;

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(body::full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Decodes `%XX` escapes and `+` of a query component; `None` if an escape is broken or the
/// result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The value of `name` in a query string.
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v)).flatten()
    })
}

/// Answers one admin request:
/// - `POST /purge?url=http://host/path[&soft=1]`: the URL and all its variants;
/// - `POST /purge?tag=TAG[&soft=1]`: every entry tagged `TAG` (`Surrogate-Key`);
/// - `POST /clear[?soft=1]`: every entry (soft: marked stale, still served inside its stale
///   windows while one request refreshes it);
/// - `POST /freeze`, `POST /thaw`;
/// - `GET /metrics`: Prometheus text.
/// - `POST /snapshot`: writes the snapshot (`--snapshot PATH`) now;
/// - `POST /restore`: puts the snapshot's entries back, as old as they are, over what is
///   stored; `POST /restore?freeze=1`, the rollback: freezes this host, empties it and restores
///   the snapshot, so it serves exactly the snapshot's pages until `POST /thaw`. A file that
///   cannot be used (missing, not a snapshot, damaged, another version, not trusted) is refused
///   with the reason, and nothing changes;
/// - `GET /`: the live status page (HTML, polling `/?format=json&history=300` every second);
///   `GET /?format=json[&history=N]` or `GET /status.json[?history=N]`: the status JSON
///   (`peakcache::history::status_json`, the same document as every other host's).
///
/// Any other method on the paths that change the cache is answered 405 (`Allow: POST`): a GET,
/// which a browser sends for a link or an image, never purges.
///
/// In a cluster (`--cluster`) every purge, freeze and thaw is applied here at once and on every
/// other host through the purge bus. Snapshots and restores are this host's alone: a rollback
/// freezes, empties and restores this host only (send it to every host to roll the cluster
/// back); the second-level cache in Redis is not rolled back, and `POST /thaw` thaws every host.
pub async fn handle(proxy: Arc<Proxy>, request: Request<hyper::body::Incoming>) -> Response<Body> {
    let query = request.uri().query().unwrap_or("").to_string();
    let mode = match param(&query, "soft").as_deref() {
        Some("1") | Some("true") => PurgeMode::Soft,
        _ => PurgeMode::Hard,
    };
    let scope = match proxy.cluster().map(|c| c.stats().connected) {
        Some(true) => "every host",
        // Queued: published, in order, when Redis answers again.
        Some(false) => "this host (the others when Redis answers again)",
        None => "this host",
    };
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/") if param(&query, "format").as_deref() != Some("json") => {
            let mut r = text(StatusCode::OK, peakcache::history::STATUS_PAGE.into());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        (&Method::GET, "/" | "/status.json") => {
            let seconds = param(&query, "history").and_then(|s| s.parse().ok());
            proxy.tick();
            let mut r = text(StatusCode::OK, proxy.status_json(seconds.unwrap_or(0)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        (&Method::GET, "/metrics") => {
            let mut r = text(StatusCode::OK, metrics(&proxy));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::POST, "/purge") | (&Method::DELETE, "/purge") => {
            if let Some(tag) = param(&query, "tag") {
                proxy.purge(Purge::Tag {
                    tag: Bytes::from(tag.clone()),
                    mode,
                });
                return text(
                    StatusCode::OK,
                    format!("purged tag {tag} ({mode:?}) on {scope}\n"),
                );
            }
            let Some(url) = param(&query, "url") else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "give ?url=http://host/path or ?tag=TAG\n".into(),
                );
            };
            let Ok(req) = Request::get(url.as_str()).body(()) else {
                return text(StatusCode::BAD_REQUEST, format!("not a URL: {url}\n"));
            };
            let (parts, ()) = req.into_parts();
            let Ok(key) = proxy.policy.key(&parts) else {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("not a cacheable URL: {url}\n"),
                );
            };
            proxy.purge(Purge::Key {
                key: key.into_bytes(),
                mode,
            });
            text(
                StatusCode::OK,
                format!("purged {url} and its variants ({mode:?}) on {scope}\n"),
            )
        }
        (&Method::POST, "/clear") => {
            proxy.purge(Purge::Everything { mode });
            text(
                StatusCode::OK,
                format!("purged everything ({mode:?}) on {scope}\n"),
            )
        }
        (&Method::POST, "/freeze") => {
            proxy.purge(Purge::Freeze);
            text(StatusCode::OK, format!("frozen on {scope}\n"))
        }
        (&Method::POST, "/thaw") => {
            proxy.purge(Purge::Thaw);
            text(StatusCode::OK, format!("thawed on {scope}\n"))
        }
        (&Method::POST, "/snapshot") => snapshot(proxy).await,
        (&Method::POST, "/restore") => {
            let rollback = matches!(param(&query, "freeze").as_deref(), Some("1" | "true"));
            restore(proxy, rollback).await
        }
        (_, "/purge" | "/clear" | "/freeze" | "/thaw" | "/snapshot" | "/restore") => {
            // A GET (a link followed, a page's image) never changes the cache.
            let mut r = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "admin: this changes the cache: use POST\n".into(),
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "admin: GET / (status page), GET /status.json?history=N, GET /metrics, \
             POST /purge?url=|tag=[&soft=1], POST /clear[?soft=1], POST /freeze, POST /thaw, \
             POST /snapshot, POST /restore[?freeze=1]\n"
                .into(),
        ),
    }
}

/// The status of a snapshot or restore that failed: the file's fault (422), or the system's.
fn failure_status(e: &SnapshotError) -> StatusCode {
    match e {
        SnapshotError::NotConfigured => StatusCode::CONFLICT,
        SnapshotError::Missing(_) => StatusCode::NOT_FOUND,
        SnapshotError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        SnapshotError::Refused { .. }
        | SnapshotError::NotASnapshot(_)
        | SnapshotError::OtherVersion { .. }
        | SnapshotError::Damaged { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// Runs `job` with the snapshot path, off the async workers (it reads or writes the disk).
async fn with_snapshot_path<T: Send + 'static>(
    proxy: &Arc<Proxy>,
    job: impl FnOnce(&Proxy, &std::path::Path) -> Result<T, SnapshotError> + Send + 'static,
) -> Result<T, SnapshotError> {
    let Some(path) = proxy.config.snapshot.clone() else {
        return Err(SnapshotError::NotConfigured);
    };
    let proxy = proxy.clone();
    tokio::task::spawn_blocking(move || job(&proxy, &path))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// `POST /snapshot`.
async fn snapshot(proxy: Arc<Proxy>) -> Response<Body> {
    match with_snapshot_path(&proxy, |p, path| p.snapshot(path)).await {
        Ok(w) => text(
            StatusCode::OK,
            format!(
                "wrote {} responses and {} Vary records ({} bytes) in {:.3} s\n",
                w.responses,
                w.varies,
                w.bytes,
                w.took.as_secs_f64()
            ),
        ),
        Err(e) => text(failure_status(&e), format!("snapshot not written: {e}\n")),
    }
}

/// `POST /restore[?freeze=1]`.
async fn restore(proxy: Arc<Proxy>, rollback: bool) -> Response<Body> {
    match with_snapshot_path(&proxy, move |p, path| p.restore(path, rollback)).await {
        Ok(r) => text(
            StatusCode::OK,
            format!(
                "restored {} responses and {} Vary records ({} skipped) from a snapshot \
                 written {} s ago, in {:.3} s{}\n",
                r.responses,
                r.varies,
                r.skipped,
                r.snapshot_age.as_secs(),
                r.took.as_secs_f64(),
                if rollback {
                    "; this host is frozen and serves only the snapshot's pages (and what \
                     misses fetch): POST /thaw when done"
                } else {
                    ""
                }
            ),
        ),
        Err(e) => text(
            failure_status(&e),
            format!("not restored, nothing changed: {e}\n"),
        ),
    }
}

/// The cache's, the history's (visitors, origin requests and errors, gauges) and (in a cluster)
/// the cluster link's counters.
fn metrics(proxy: &Proxy) -> String {
    let mut out = proxy_metrics(proxy);
    if let Some(cluster) = proxy.cluster() {
        out.push_str(&cluster.stats().to_prometheus("peakcache_cluster"));
    }
    out
}

/// The cache's and the history's counters (visitors, origin requests and errors, gauges).
fn proxy_metrics(proxy: &Proxy) -> String {
    let mut out = proxy.cache().stats().to_prometheus("peakcache");
    out.push_str(&format!(
        "# HELP peakcache_max_tag_marks The bound of tag purge records (peakcache_tag_marks).\n\
         # TYPE peakcache_max_tag_marks gauge\npeakcache_max_tag_marks {}\n",
        crate::handler::MAX_TAG_MARKS
    ));
    // The counts of this second reach the totals now, not at the next tick.
    proxy.tick();
    out.push_str(&proxy.history_prometheus());
    if proxy.config.snapshot.is_some() {
        out.push_str(&proxy.snapshot_stats.to_prometheus());
    }
    out
}

/// Answers one request to the host agent's admin listener (`--region` with `--admin`):
/// - `POST /purge?tag=TAG[&soft=1]`, `POST /purge?key=KEY[&soft=1]` (a raw cache key, e.g.
///   `GET https://shop.example/`, and its variants);
/// - `POST /clear[?soft=1]`, `POST /freeze`, `POST /thaw`;
/// - `GET /metrics`: the region's, the agent's and the cluster link's counters (and, for the
///   shield, its cache's and the origin's).
///
/// A purge is made in the region, as a worker's would be: the journal carries it to the
/// shield and to every other host.
pub async fn handle_agent(
    agent: Arc<Agent>,
    shield: Option<Arc<Proxy>>,
    request: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let query = request.uri().query().unwrap_or("").to_string();
    let mode = match param(&query, "soft").as_deref() {
        Some("1") | Some("true") => PurgeMode::Soft,
        _ => PurgeMode::Hard,
    };
    let purge =
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/metrics") => {
                let mut out = agent.metrics();
                if let Some(proxy) = &shield {
                    out.push_str(&proxy_metrics(proxy));
                }
                let mut r = text(StatusCode::OK, out);
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                return r;
            }
            (&Method::POST, "/purge") | (&Method::DELETE, "/purge") => {
                match (param(&query, "tag"), param(&query, "key")) {
                    (Some(tag), _) if !tag.is_empty() => Purge::Tag {
                        tag: Bytes::from(tag),
                        mode,
                    },
                    (_, Some(key)) if !key.is_empty() => Purge::Key {
                        key: Bytes::from(key),
                        mode,
                    },
                    _ => {
                        return text(
                            StatusCode::BAD_REQUEST,
                            "give ?tag=TAG or ?key=KEY\n".into(),
                        )
                    }
                }
            }
            (&Method::POST, "/clear") => Purge::Everything { mode },
            (&Method::POST, "/freeze") => Purge::Freeze,
            (&Method::POST, "/thaw") => Purge::Thaw,
            _ => return text(
                StatusCode::NOT_FOUND,
                "agent admin: GET /metrics, POST /purge?tag=|key=[&soft=1], POST /clear[?soft=1], \
                 POST /freeze, POST /thaw\n"
                    .into(),
            ),
        };
    agent.purge(&purge);
    text(
        StatusCode::OK,
        format!(
            "{} made in the region; the agent publishes it to every host\n",
            describe(&purge)
        ),
    )
}

/// A purge in words, for an admin answer.
fn describe(purge: &Purge) -> String {
    let mode = |m: &PurgeMode| match m {
        PurgeMode::Hard => "hard",
        PurgeMode::Soft => "soft",
    };
    match purge {
        Purge::Key { key, mode: m } => {
            format!("{} purge of key {}", mode(m), String::from_utf8_lossy(key))
        }
        Purge::Tag { tag, mode: m } => {
            format!("{} purge of tag {}", mode(m), String::from_utf8_lossy(tag))
        }
        Purge::Everything { mode: m } => format!("{} purge of everything", mode(m)),
        Purge::Freeze => "freeze".into(),
        Purge::Thaw => "thaw".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(
            param("url=http%3A%2F%2Fa%2Fb%3Fx%3D1&soft=1", "url").as_deref(),
            Some("http://a/b?x=1")
        );
        assert_eq!(param("tag=a+b", "tag").as_deref(), Some("a b"));
        assert_eq!(param("tag=%zz", "tag"), None);
        assert_eq!(param("soft", "soft").as_deref(), Some(""));
    }
}
