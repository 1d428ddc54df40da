//! A minimal HTTP/1.1 keep-alive client on hyper's connection API, loopback only.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Any error of the client: connect, protocol, or a bad address.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Parses `http://HOST:PORT` (or `HOST:PORT`) into a socket address; the host must be a
/// loopback IP address, so the demo can never be pointed at someone else's server.
pub fn parse_loopback_url(url: &str) -> Result<SocketAddr, String> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let hostport = rest.split('/').next().unwrap_or("");
    let addr: SocketAddr = hostport
        .parse()
        .map_err(|_| format!("{url:?}: expected http://IP:PORT"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{url:?}: the demo only talks to loopback addresses"
        ));
    }
    Ok(addr)
}

/// An answer, body read in full.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// One keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    host: HeaderValue,
}

impl Conn {
    /// Opens a connection to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Conn, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let host = HeaderValue::from_str(&addr.to_string())?;
        Ok(Conn { sender, host })
    }

    /// Sends one request with an empty body and reads the whole answer.
    pub async fn request(&mut self, method: Method, path: &str) -> Result<Reply, BoxError> {
        self.sender.ready().await?;
        let mut req = Request::new(Empty::<Bytes>::new());
        *req.method_mut() = method;
        *req.uri_mut() = path.parse()?;
        req.headers_mut().insert(header::HOST, self.host.clone());
        let resp = self.sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// One request on a fresh connection.
pub async fn request_once(addr: SocketAddr, method: Method, path: &str) -> Result<Reply, BoxError> {
    Conn::connect(addr).await?.request(method, path).await
}

/// Retries `GET path` until it answers 200 or `timeout` passes.
pub async fn wait_until_answers(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match request_once(addr, Method::GET, path).await {
            Ok(r) if r.status == StatusCode::OK => return Ok(()),
            other => {
                if Instant::now() >= deadline {
                    return Err(match other {
                        Ok(r) => format!("{addr}{path} answered {}", r.status),
                        Err(e) => format!("{addr}{path}: {e}"),
                    });
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Retries a TCP connect to `addr` until it succeeds or `timeout` passes.
pub async fn wait_until_listening(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect(addr).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(format!("{addr}: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_accepted() {
        assert_eq!(
            parse_loopback_url("http://127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            parse_loopback_url("[::1]:9000/").unwrap(),
            "[::1]:9000".parse().unwrap()
        );
        assert!(parse_loopback_url("http://10.0.0.1:80").is_err());
        assert!(parse_loopback_url("http://localhost:80").is_err());
    }
}
