//! The origin: one HTTP/1.1 client with a bound on requests in flight and a timeout.

use crate::body::Body;
use http::{header, request, HeaderMap, Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why the origin gave no response.
#[derive(Debug)]
pub enum OriginError {
    /// No response head within the origin timeout.
    Timeout,
    /// Connecting or sending failed.
    Unreachable(String),
}

/// The origin server.
pub struct Origin {
    client: Client<HttpConnector, Body>,
    base: Uri,
    permits: Arc<Semaphore>,
    timeout: Duration,
    requests: AtomicU64,
    errors: AtomicU64,
}

/// Header fields that describe one connection, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Removes hop-by-hop fields, including those `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

impl Origin {
    /// A client for `base` (`http://host:port`).
    pub fn new(base: Uri, concurrency: usize, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Origin {
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
            base,
            permits: Arc::new(Semaphore::new(concurrency)),
            timeout,
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }
    }

    /// A place among the origin requests in flight, if one is free now.
    pub fn try_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permits.clone().try_acquire_owned().ok()
    }

    /// Requests sent to the origin so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Origin requests that got no response or a 5xx.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Counts a 5xx answer as an origin error.
    pub fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends `parts` with `body` to the origin (the caller holds a permit) and returns the
    /// response head with its body still streaming.
    pub async fn send(
        &self,
        mut parts: request::Parts,
        body: Body,
    ) -> Result<Response<Incoming>, OriginError> {
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut uri = Uri::builder();
        if let Some(scheme) = self.base.scheme() {
            uri = uri.scheme(scheme.clone());
        }
        if let Some(authority) = self.base.authority() {
            uri = uri.authority(authority.clone());
        }
        parts.uri = uri
            .path_and_query(path)
            .build()
            .map_err(|e| OriginError::Unreachable(e.to_string()))?;
        parts.version = http::Version::HTTP_11;
        strip_hop_by_hop(&mut parts.headers);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let request = Request::from_parts(parts, body);
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                self.count_error();
                Err(OriginError::Unreachable(e.to_string()))
            }
            Err(_) => {
                self.count_error();
                Err(OriginError::Timeout)
            }
        }
    }
}
