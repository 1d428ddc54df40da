//! Primary cache keys (RFC 9111 §2: method and target URI).
//!
//! A key is `GET <scheme>://<host>[:<port>]<path>[?<query>]` as bytes:
//! - GET and HEAD share the `GET` class; no other method is cacheable.
//! - The scheme and host are lowercased; a trailing dot of the host is dropped (`a.test.` is
//!   `a.test`, as nginx routes it); the default port of the scheme (80, 443) is dropped. An
//!   authority with userinfo (RFC 9110 §4.2.4: treat it as an error) or a port that is not a
//!   number has no key, so it is never cached under the bare host.
//! - The path is kept byte for byte.
//! - Query parameters named in [`Config::ignored_query_params`] or starting with one of
//!   [`Config::ignored_query_prefixes`] (campaign tracking: `utm_*`, `gclid`, `fbclid`, ...)
//!   are removed; the others keep their order and encoding, since order can be meaningful.
//!
//! The key is built only from the request line and `Host`: nothing else in the request
//! (`X-Forwarded-Host` and the like) changes it. A request the cache must not answer for
//! everyone has no key either: one with `Authorization` (RFC 9111 §3.5; as Varnish, it is
//! passed to the origin, and nothing of it is stored), and, only when
//! [`Config::honour_request_directives`] is set, one with `Cache-Control: no-store`. A key never contains a NUL byte, so
//! [`Key::variant`] can use NUL as a separator.

use std::fmt;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap};
use http::uri::{Authority, PathAndQuery, Uri};
use http::Method;

use crate::config::Config;
use crate::request::RequestDirectives;
use crate::vary::VaryKey;

/// Why a request has no cache key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NotCacheable {
    /// The method is not GET or HEAD (RFC 9111 §2: only those are understood by this cache).
    Method(Method),
    /// Neither the URI nor a `Host` field names a host.
    NoHost,
    /// The host is empty, malformed, or given by several `Host` lines.
    InvalidHost,
    /// The scheme is neither `http` nor `https`.
    Scheme(String),
    /// The request carries `Authorization`: the answer is that visitor's (RFC 9111 §3.5).
    Authorization,
    /// The request has `Cache-Control: no-store` and the operator honours request directives
    /// ([`Config::honour_request_directives`]).
    RequestNoStore,
}

impl fmt::Display for NotCacheable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotCacheable::Method(m) => write!(f, "method {m} is not cacheable"),
            NotCacheable::NoHost => f.write_str("request names no host"),
            NotCacheable::InvalidHost => f.write_str("request host is invalid"),
            NotCacheable::Scheme(s) => write!(f, "scheme {s} is not cacheable"),
            NotCacheable::Authorization => f.write_str("request has Authorization"),
            NotCacheable::RequestNoStore => f.write_str("request has no-store"),
        }
    }
}

impl std::error::Error for NotCacheable {}

/// A primary cache key: bytes, equal for requests a stored response may answer (before Vary).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(Bytes);

impl Key {
    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key's bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The key of one variant of this resource: the primary key, a NUL byte, then the
    /// [`VaryKey`]. Store a response that has a `Vary` field under this key, and under the
    /// primary key keep the response's [`Vary`](crate::Vary) so a lookup knows which request
    /// fields to read (see the crate documentation).
    pub fn variant(&self, vary: &VaryKey) -> Bytes {
        let mut out = BytesMut::with_capacity(self.0.len() + 1 + vary.as_bytes().len());
        out.extend_from_slice(&self.0);
        out.extend_from_slice(b"\0");
        out.extend_from_slice(vary.as_bytes());
        out.freeze()
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Key> for Bytes {
    fn from(k: Key) -> Bytes {
        k.0
    }
}

impl From<Key> for Vec<u8> {
    fn from(k: Key) -> Vec<u8> {
        k.0.to_vec()
    }
}

impl fmt::Display for Key {
    /// The key as text; bytes that are not UTF-8 are shown as U+FFFD.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({self})")
    }
}

/// A normalised origin: lowercase scheme, lowercase host, and the port only when not the
/// scheme's default. Two URIs are same-origin (RFC 9110 §4.3.1) when these are equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub scheme: String,
    /// `host` or `host:port`.
    pub authority: String,
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "http" {
        80
    } else {
        443
    }
}

fn normalise_authority(scheme: &str, authority: &Authority) -> Result<String, NotCacheable> {
    let text = authority.as_str();
    if text.contains('@') {
        // Userinfo: RFC 9110 §4.2.4 says to treat it as an error; never key it as the host.
        return Err(NotCacheable::InvalidHost);
    }
    let host = authority.host();
    let port = match &text[host.len()..] {
        "" | ":" => None,
        rest => match rest.strip_prefix(':').map(str::parse::<u16>) {
            Some(Ok(port)) => Some(port),
            _ => return Err(NotCacheable::InvalidHost),
        },
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err(NotCacheable::InvalidHost);
    }
    let mut out = host.to_ascii_lowercase();
    if let Some(port) = port.filter(|p| *p != default_port(scheme)) {
        out.push(':');
        out.push_str(&port.to_string());
    }
    Ok(out)
}

/// The origin of a request: the URI's scheme (else `scheme`, else the configured default) and
/// the URI's authority (else the single `Host` field), as RFC 9112 §3.2.2 and §3.3 say a
/// server reconstructs the target URI.
pub(crate) fn request_origin(
    config: &Config,
    uri: &Uri,
    headers: &HeaderMap,
    scheme: Option<&str>,
) -> Result<Origin, NotCacheable> {
    let scheme = uri
        .scheme_str()
        .or(scheme)
        .unwrap_or(&config.default_scheme)
        .to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(NotCacheable::Scheme(scheme));
    }
    let authority = match uri.authority() {
        Some(a) => normalise_authority(&scheme, a)?,
        None => {
            let mut hosts = headers.get_all(header::HOST).iter();
            let host = hosts.next().ok_or(NotCacheable::NoHost)?;
            if hosts.next().is_some() {
                return Err(NotCacheable::InvalidHost);
            }
            let parsed =
                Authority::try_from(host.as_bytes()).map_err(|_| NotCacheable::InvalidHost)?;
            normalise_authority(&scheme, &parsed)?
        }
    };
    Ok(Origin { scheme, authority })
}

fn ignored(config: &Config, name: &str) -> bool {
    config.ignored_query_params.iter().any(|p| p == name)
        || config
            .ignored_query_prefixes
            .iter()
            .any(|p| !p.is_empty() && name.starts_with(p.as_str()))
}

/// The query without ignored parameters, others in their order and encoding. `None` when
/// nothing is left.
pub(crate) fn filter_query(config: &Config, query: &str) -> Option<String> {
    let mut out = String::with_capacity(query.len());
    for param in query.split('&') {
        let name = param.split('=').next().unwrap_or(param);
        if !name.is_empty() && ignored(config, name) {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(param);
    }
    if out.is_empty() || out.bytes().all(|b| b == b'&') {
        None
    } else {
        Some(out)
    }
}

/// The path and filtered query of `uri`, as they appear in keys and upstream requests.
pub(crate) fn path_and_query(config: &Config, uri: &Uri) -> String {
    let path = if uri.path().is_empty() {
        "/"
    } else {
        uri.path()
    };
    match uri.query().and_then(|q| filter_query(config, q)) {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    }
}

/// The key of a GET request for `uri`.
pub(crate) fn key_for(config: &Config, origin: &Origin, uri: &Uri) -> Key {
    let pq = path_and_query(config, uri);
    let mut out =
        BytesMut::with_capacity(4 + origin.scheme.len() + 3 + origin.authority.len() + pq.len());
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(origin.scheme.as_bytes());
    out.extend_from_slice(b"://");
    out.extend_from_slice(origin.authority.as_bytes());
    out.extend_from_slice(pq.as_bytes());
    Key(out.freeze())
}

/// The key of a request, or why it has none.
pub(crate) fn request_key(
    config: &Config,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    scheme: Option<&str>,
) -> Result<Key, NotCacheable> {
    if method != Method::GET && method != Method::HEAD {
        return Err(NotCacheable::Method(method.clone()));
    }
    let origin = request_origin(config, uri, headers, scheme)?;
    if headers.contains_key(header::AUTHORIZATION) {
        return Err(NotCacheable::Authorization);
    }
    if config.honour_request_directives && RequestDirectives::from_headers(headers).no_store {
        return Err(NotCacheable::RequestNoStore);
    }
    Ok(key_for(config, &origin, uri))
}

/// `uri` with ignored query parameters removed; unchanged if nothing was removed.
pub(crate) fn upstream_uri(config: &Config, uri: &Uri) -> Uri {
    let Some(query) = uri.query() else {
        return uri.clone();
    };
    if filter_query(config, query).as_deref() == Some(query) {
        return uri.clone();
    }
    let mut parts = uri.clone().into_parts();
    match PathAndQuery::try_from(path_and_query(config, uri)) {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return uri.clone(),
    }
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    fn key(uri: &str, host: Option<&str>) -> Result<Key, NotCacheable> {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        request_key(
            &Config::default(),
            &Method::GET,
            &uri.parse().unwrap(),
            &h,
            None,
        )
    }

    fn text(k: Result<Key, NotCacheable>) -> String {
        k.unwrap().to_string()
    }

    #[test]
    fn rfc9111_2_key_is_method_class_and_target_uri() {
        assert_eq!(
            text(key("/a/b?x=1", Some("Example.COM"))),
            "GET https://example.com/a/b?x=1"
        );
        assert_eq!(
            text(key("http://Example.com:80/a", None)),
            "GET http://example.com/a"
        );
        assert_eq!(
            text(key("https://example.com:443", None)),
            "GET https://example.com/"
        );
        assert_eq!(
            text(key("https://example.com:8443/", None)),
            "GET https://example.com:8443/"
        );
        assert_eq!(
            text(key("http://example.com:443/", None)),
            "GET http://example.com:443/"
        );
        assert_eq!(
            text(key("http://[::1]:8080/", None)),
            "GET http://[::1]:8080/"
        );
    }

    #[test]
    fn rfc9110_4_2_4_userinfo_and_bad_ports_have_no_key() {
        assert_eq!(
            key("http://user:pw@example.com/", None),
            Err(NotCacheable::InvalidHost)
        );
        assert_eq!(
            key("/", Some("user@example.com")),
            Err(NotCacheable::InvalidHost)
        );
        assert_eq!(
            key("/", Some("example.com:abc")),
            Err(NotCacheable::InvalidHost)
        );
        assert_eq!(
            key("/", Some("example.com:99999")),
            Err(NotCacheable::InvalidHost)
        );
        assert_eq!(
            key("/", Some("example.com:80x")),
            Err(NotCacheable::InvalidHost)
        );
        assert_eq!(
            text(key("/", Some("example.com:"))),
            "GET https://example.com/"
        );
    }

    #[test]
    fn a_trailing_dot_and_case_do_not_split_a_host() {
        let plain = text(key("/x", Some("a.test")));
        assert_eq!(text(key("/x", Some("A.Test."))), plain);
        assert_eq!(text(key("/x", Some("a.test.:443"))), plain);
        assert_eq!(text(key("https://A.TEST./x", None)), plain);
        assert_eq!(key("/x", Some(".")), Err(NotCacheable::InvalidHost));
        assert_ne!(text(key("/x", Some("a.test:8443"))), plain);
    }

    #[test]
    fn rfc9111_3_5_requests_with_authorization_are_passed() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("h"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        let r = request_key(
            &Config::default(),
            &Method::GET,
            &"/".parse().unwrap(),
            &h,
            None,
        );
        assert_eq!(r, Err(NotCacheable::Authorization));
    }

    #[test]
    fn request_no_store_passes_only_when_request_directives_are_honoured() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("h"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let uri: Uri = "/".parse().unwrap();
        let mut cfg = Config::default();
        assert!(request_key(&cfg, &Method::GET, &uri, &h, None).is_ok());
        cfg.honour_request_directives = true;
        assert_eq!(
            request_key(&cfg, &Method::GET, &uri, &h, None),
            Err(NotCacheable::RequestNoStore)
        );
    }

    #[test]
    fn rfc9111_4_get_and_head_share_a_key_other_methods_have_none() {
        let uri: Uri = "https://example.com/x".parse().unwrap();
        let h = HeaderMap::new();
        let cfg = Config::default();
        assert_eq!(
            request_key(&cfg, &Method::GET, &uri, &h, None),
            request_key(&cfg, &Method::HEAD, &uri, &h, None)
        );
        assert_eq!(
            request_key(&cfg, &Method::POST, &uri, &h, None),
            Err(NotCacheable::Method(Method::POST))
        );
    }

    #[test]
    fn rfc9112_3_2_2_absolute_uri_authority_wins_over_host() {
        assert_eq!(
            text(key("http://a.example/x", Some("b.example"))),
            "GET http://a.example/x"
        );
        assert_eq!(key("/x", None), Err(NotCacheable::NoHost));
        assert_eq!(key("/x", Some("bad host")), Err(NotCacheable::InvalidHost));
    }

    #[test]
    fn rfc9112_3_2_several_host_lines_are_invalid() {
        let mut h = HeaderMap::new();
        h.append(header::HOST, HeaderValue::from_static("a.example"));
        h.append(header::HOST, HeaderValue::from_static("b.example"));
        let r = request_key(
            &Config::default(),
            &Method::GET,
            &"/".parse().unwrap(),
            &h,
            None,
        );
        assert_eq!(r, Err(NotCacheable::InvalidHost));
    }

    #[test]
    fn campaign_parameters_are_dropped_others_keep_order_and_encoding() {
        assert_eq!(
            text(key(
                "/p?b=2&utm_source=x&a=%41&gclid=1&fbclid=2&msclkid=3&utm_medium=y",
                Some("h")
            )),
            "GET https://h/p?b=2&a=%41"
        );
        assert_eq!(text(key("/p?utm_source=x", Some("h"))), "GET https://h/p");
        assert_eq!(text(key("/p?", Some("h"))), "GET https://h/p");
        // Only whole names and configured prefixes match.
        assert_eq!(
            text(key("/p?xgclid=1&gclidx=2", Some("h"))),
            "GET https://h/p?xgclid=1&gclidx=2"
        );
    }

    #[test]
    fn configured_names_and_prefixes_are_dropped() {
        let mut cfg = Config::default();
        cfg.ignored_query_params.push("session".into());
        cfg.ignored_query_prefixes.push("ref_".into());
        let k = request_key(
            &cfg,
            &Method::GET,
            &"https://h/p?session=1&ref_a=2&q=3".parse().unwrap(),
            &HeaderMap::new(),
            None,
        );
        assert_eq!(text(k), "GET https://h/p?q=3");
    }

    #[test]
    fn unkeyed_headers_do_not_change_the_key() {
        let uri: Uri = "/p".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("h"));
        let cfg = Config::default();
        let plain = request_key(&cfg, &Method::GET, &uri, &h, None);
        h.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        h.insert("x-forwarded-proto", HeaderValue::from_static("http"));
        assert_eq!(request_key(&cfg, &Method::GET, &uri, &h, None), plain);
    }

    #[test]
    fn upstream_uri_drops_what_the_key_ignores() {
        let cfg = Config::default();
        let u = upstream_uri(&cfg, &"https://h/p?utm_source=x&q=1".parse().unwrap());
        assert_eq!(u.to_string(), "https://h/p?q=1");
        let u = upstream_uri(&cfg, &"/p?utm_source=x".parse().unwrap());
        assert_eq!(u.to_string(), "/p");
        let u = upstream_uri(&cfg, &"/p?q=1".parse().unwrap());
        assert_eq!(u.to_string(), "/p?q=1");
    }

    #[test]
    fn variant_key_appends_nul_and_vary_key() {
        let k = key("/p", Some("h")).unwrap();
        let v = k.variant(&VaryKey::from_bytes(Bytes::from_static(
            b"accept-encoding=br\n",
        )));
        assert_eq!(&v[..], b"GET https://h/p\0accept-encoding=br\n");
    }

    proptest! {
        #[test]
        fn filter_query_never_keeps_ignored_and_keeps_others_in_order(
            params in proptest::collection::vec(("(utm_[a-z]{1,4}|gclid|fbclid|[a-z]{1,4})", "[a-z0-9%]{0,4}"), 0..8)
        ) {
            let cfg = Config::default();
            let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let kept: Vec<&String> = params.iter().zip(&q).filter(|((k, _), _)| !ignored(&cfg, k)).map(|(_, s)| s).collect();
            let got = filter_query(&cfg, &q.join("&"));
            let want = if kept.is_empty() { None } else { Some(kept.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("&")) };
            prop_assert_eq!(got, want);
        }

        #[test]
        fn key_never_panics_and_has_no_nul(path in "/[!-~]{0,30}", host in "[a-zA-Z0-9.:-]{0,20}") {
            if let Ok(uri) = path.parse::<Uri>() {
                let mut h = HeaderMap::new();
                if let Ok(v) = HeaderValue::from_str(&host) { h.insert(header::HOST, v); }
                if let Ok(k) = request_key(&Config::default(), &Method::GET, &uri, &h, None) {
                    prop_assert!(!k.as_bytes().contains(&0));
                }
            }
        }
    }
}
