//! Operator settings: everything the RFCs leave to the cache's configuration.

use std::time::Duration;

use http::header::{self, HeaderName};

/// What to do with a response that carries `Set-Cookie`.
///
/// RFC 9111 does not forbid storing such responses, but a cookie stored in a shared cache is
/// handed to every client, so the default is not to store them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SetCookie {
    /// Do not store the response (the default).
    #[default]
    DontStore,
    /// Store the response without its `Set-Cookie` fields.
    Strip,
    /// Store the response with its cookies, serving them to everyone.
    Store,
}

/// Freshness for responses without explicit freshness (RFC 9111 §4.2.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heuristic {
    /// Status codes that may be given a heuristic lifetime. The default is the list of RFC 9110
    /// §15.1: 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501.
    pub statuses: Vec<u16>,
    /// The lifetime, in percent of the time since `Last-Modified` (the Date minus the
    /// Last-Modified value). Default 10, as RFC 9111 §4.2.2 suggests. 0 turns this off.
    pub last_modified_percent: u32,
    /// The longest heuristic lifetime. Default one day.
    pub max: Duration,
    /// The lifetime given to a heuristically cacheable response without `Last-Modified`.
    /// Default zero: stored but stale at once, reusable only through its stale windows or after
    /// revalidation.
    pub default_ttl: Duration,
}

impl Default for Heuristic {
    fn default() -> Self {
        Heuristic {
            statuses: vec![200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501],
            last_modified_percent: 10,
            max: Duration::from_secs(24 * 60 * 60),
            default_ttl: Duration::ZERO,
        }
    }
}

/// A pair of stale windows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StaleWindows {
    /// Stale-while-revalidate.
    pub swr: Duration,
    /// Stale-if-error.
    pub sie: Duration,
}

/// The settings of a [`Policy`](crate::Policy). `Config::default()` is a standards-following
/// shared cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// The cache's name in `Cache-Status` (RFC 9211 §2). Default `peakcache`.
    pub cache_name: String,
    /// The target list of RFC 9213 §2.2, most specific first. The first of these fields that is
    /// present, non-empty and valid replaces `Cache-Control` and `Expires` for this cache.
    /// Default `[CDN-Cache-Control, Surrogate-Control]`.
    pub targeted_fields: Vec<HeaderName>,
    /// Keep the target-list fields in responses sent to clients. Default false: they are
    /// instructions for this cache (RFC 9213 §3 allows removing `CDN-Cache-Control`).
    pub forward_targeted_fields: bool,
    /// Target-list fields kept in responses to clients even when
    /// [`forward_targeted_fields`](Self::forward_targeted_fields) is false. Default
    /// `[CDN-Cache-Control]`: RFC 9213 §3 says CDN caches "will typically forward" it, so a CDN
    /// in front of this cache can use it (browsers ignore it). `Surrogate-Control` is consumed by
    /// the surrogate it targets. Empty: every target-list field stays with this cache.
    pub forwarded_targeted_fields: Vec<HeaderName>,
    /// Fields holding space-separated tags for purging. Default `[Surrogate-Key]`.
    pub tag_fields: Vec<HeaderName>,
    /// Keep the tag fields in responses sent to clients. Default false.
    pub forward_tag_fields: bool,
    /// What to do with `Set-Cookie` in a response. Default [`SetCookie::DontStore`].
    pub set_cookie: SetCookie,
    /// Heuristic freshness settings.
    pub heuristic: Heuristic,
    /// Stale windows used when the origin sends no `stale-while-revalidate` or
    /// `stale-if-error`. Default zero. Never applied where stale serving is forbidden.
    pub default_stale: StaleWindows,
    /// The operator's grace: each stale window is at least this long, whatever the origin
    /// said. Serving in time the origin did not grant is reported as grace in `Cache-Status`.
    /// Default zero. Never applied where stale serving is forbidden (`no-cache`,
    /// `must-revalidate`, `proxy-revalidate`, `s-maxage`).
    pub grace: StaleWindows,
    /// Let `stale-while-revalidate` and `stale-if-error` apply alongside `s-maxage`.
    /// Default false: RFC 9111 §5.2.2.10 gives `s-maxage` the semantics of `proxy-revalidate`
    /// for shared caches, which forbids serving stale. Turning this on deviates from the RFC to
    /// accept the common `s-maxage=N, stale-while-revalidate=M` idiom as its senders mean it.
    pub stale_with_s_maxage: bool,
    /// Query parameter names left out of keys (and of upstream requests). Default
    /// `gclid`, `fbclid`, `msclkid`, `dclid`, `gbraid`, `wbraid`, `mc_cid`, `mc_eid`, `_ga`.
    pub ignored_query_params: Vec<String>,
    /// Query parameter name prefixes left out of keys. Default `utm_`.
    pub ignored_query_prefixes: Vec<String>,
    /// Content codings this cache varies on, most preferred first. `Accept-Encoding` is reduced
    /// to the one coding picked from this list (or `identity`) in Vary keys and upstream
    /// requests. Default `["br", "gzip"]`. Empty: `Accept-Encoding` is treated like any other
    /// header.
    pub encodings: Vec<String>,
    /// Request fields removed from upstream requests because they are not part of the key and
    /// origins are known to build responses from them (cache poisoning). Default
    /// `X-Forwarded-Host`, `X-Forwarded-Scheme`, `X-Forwarded-Proto`, `X-Forwarded-Port`,
    /// `X-Forwarded-Server`, `X-Host`, `X-Original-URL`, `X-Rewrite-URL`, `X-HTTP-Method-Override`,
    /// `X-HTTP-Method`, `X-Method-Override`, `Forwarded`.
    pub unkeyed_request_fields: Vec<HeaderName>,
    /// The scheme of requests whose URI has none (origin-form). Default `https`.
    pub default_scheme: String,
    /// Act on a request's own cache directives (RFC 9111 §5.2.1: `no-store`, `no-cache`,
    /// `max-age`, `min-fresh`, `only-if-cached`, and `Pragma: no-cache`). Default false: they
    /// are ignored for shared entries, as Varnish, Fastly and Cloudflare do, so no visitor can
    /// make everyone's page bypass the cache or refetch it at will. When true, they apply to
    /// the visitor who sent them alone: `no-store` forwards that request without the cache
    /// ([`NotCacheable::RequestNoStore`](crate::NotCacheable::RequestNoStore)), and `no-cache`,
    /// `max-age` or `min-fresh` that rule out the stored response make [`crate::Policy::reuse`]
    /// answer [`Reuse::Revalidate`](crate::Reuse::Revalidate). A fill or refresh never carries
    /// them either way. Hosts ignore them while the cache is frozen.
    pub honour_request_directives: bool,
}

impl Default for Config {
    fn default() -> Self {
        let names =
            |list: &[&'static str]| list.iter().map(|n| HeaderName::from_static(n)).collect();
        Config {
            cache_name: "peakcache".to_owned(),
            targeted_fields: vec![
                header::CDN_CACHE_CONTROL,
                HeaderName::from_static("surrogate-control"),
            ],
            forward_targeted_fields: false,
            forwarded_targeted_fields: vec![header::CDN_CACHE_CONTROL],
            tag_fields: vec![HeaderName::from_static("surrogate-key")],
            forward_tag_fields: false,
            set_cookie: SetCookie::default(),
            heuristic: Heuristic::default(),
            default_stale: StaleWindows::default(),
            grace: StaleWindows::default(),
            stale_with_s_maxage: false,
            ignored_query_params: [
                "gclid", "fbclid", "msclkid", "dclid", "gbraid", "wbraid", "mc_cid", "mc_eid",
                "_ga",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect(),
            ignored_query_prefixes: vec!["utm_".to_owned()],
            encodings: vec!["br".to_owned(), "gzip".to_owned()],
            unkeyed_request_fields: names(&[
                "x-forwarded-host",
                "x-forwarded-scheme",
                "x-forwarded-proto",
                "x-forwarded-port",
                "x-forwarded-server",
                "x-host",
                "x-original-url",
                "x-rewrite-url",
                "x-http-method-override",
                "x-http-method",
                "x-method-override",
                "forwarded",
            ]),
            default_scheme: "https".to_owned(),
            honour_request_directives: false,
        }
    }
}
