//! [`Policy`]: the entry point a proxy calls at each step of a request.

use std::sync::Arc;
use std::time::SystemTime;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request, response};
use peakcache::Freshness;

use crate::age::{corrected_initial_age, format_http_date};
use crate::conditional::{self, has_validator, ConditionalAnswer, NotUpdated};
use crate::config::Config;
use crate::entry::EntryMeta;
use crate::freshness::{freshness_lifetime, windows, Lifetime};
use crate::invalidate;
use crate::key::{request_key, upstream_uri, Key, NotCacheable};
use crate::request::{RequestDirectives, Reuse};
use crate::status::CacheStatus;
use crate::storable::{self, DontStore};
use crate::tags;
use crate::targeted::{DirectiveSource, ResponseDirectives};
use crate::upstream::fill_request;
use crate::vary::{pick_encoding, vary_key, Vary, VaryKey};

/// The decision to store a response, with everything needed to store and later serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Store {
    /// The entry's windows for the core cache, counted from the store time (the response
    /// time): `ttl = lifetime - current_age` clamped at zero, `swr`/`sie` from RFC 5861 and
    /// operator settings.
    pub freshness: Freshness,
    /// Timing facts to keep with the entry, for `Age`, `Cache-Status` and grace reporting.
    pub meta: EntryMeta,
    /// Purge tags from `Surrogate-Key` (or the configured tag fields).
    pub tags: Vec<String>,
    /// The fields the response varies on; empty when it does not vary.
    pub vary: Vary,
    /// The secondary key of the request this response answers, for [`Key::variant`].
    pub vary_key: VaryKey,
    /// The freshness lifetime and where it came from.
    pub lifetime: Lifetime,
    /// Which field's directives were applied.
    pub source: DirectiveSource,
    /// Fields to leave out of the stored response; [`Store::prepare`] removes them.
    pub unstored_fields: Vec<HeaderName>,
}

impl Store {
    /// Makes a response ready to store: removes [`Store::unstored_fields`] and, when the
    /// response has no `Date`, adds one with the time it was received (RFC 9110 §6.6.1).
    pub fn prepare(&self, response: &mut response::Parts) {
        for name in &self.unstored_fields {
            response.headers.remove(name);
        }
        if !response.headers.contains_key(header::DATE) {
            response
                .headers
                .insert(header::DATE, format_http_date(self.meta.response_time));
        }
    }
}

/// HTTP caching rules for one shared cache, configured once. Cheap to share: all methods take
/// `&self` and never read a clock.
#[derive(Clone, Debug)]
pub struct Policy {
    config: Config,
    /// `config.cache_name`, shared by every `Cache-Status` member instead of copied into each.
    cache_name: Arc<str>,
}

impl Default for Policy {
    /// A policy with the default settings.
    fn default() -> Self {
        Policy::new(Config::default())
    }
}

impl Policy {
    /// A policy with these settings.
    pub fn new(config: Config) -> Self {
        let cache_name = Arc::from(config.cache_name.as_str());
        Policy { config, cache_name }
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The primary key of a request, or why it has none (see [`crate::key`] for the layout).
    /// An origin-form URI takes its scheme from [`Config::default_scheme`]; use
    /// [`Policy::key_with_scheme`] when the scheme depends on the connection.
    pub fn key(&self, request: &request::Parts) -> Result<Key, NotCacheable> {
        request_key(
            &self.config,
            &request.method,
            &request.uri,
            &request.headers,
            None,
        )
    }

    /// Like [`Policy::key`], with `scheme` (`http` or `https`) for URIs that carry none.
    pub fn key_with_scheme(
        &self,
        request: &request::Parts,
        scheme: &str,
    ) -> Result<Key, NotCacheable> {
        request_key(
            &self.config,
            &request.method,
            &request.uri,
            &request.headers,
            Some(scheme),
        )
    }

    /// Turns a client's request into the request a fill or refresh sends upstream, so that the
    /// origin sees nothing of one visitor that the key leaves out (DESIGN.md, "What a shared
    /// fill sends"):
    /// - the method is `GET` and the request has no body: `Content-Length`,
    ///   `Transfer-Encoding`, `Expect` and `Content-Type` go;
    /// - hop-by-hop fields and those the visitor's `Connection` names go (see
    ///   [`strip_hop_by_hop`](crate::strip_hop_by_hop), which hosts call before keying);
    /// - the visitor's preconditions and ranges (`If-None-Match`, `If-Modified-Since`,
    ///   `If-Match`, `If-Unmodified-Since`, `If-Range`, `Range`), request directives
    ///   (`Cache-Control`, `Pragma`) and `Authorization` go: the fill fetches the whole current
    ///   representation for everyone, and the visitor's own conditions are answered from it
    ///   ([`Policy::answer_conditional`]);
    /// - ignored query parameters are removed from the URI;
    /// - [`Config::unkeyed_request_fields`] (`X-Forwarded-Host`, ...) are removed; add your own
    ///   forwarding fields afterwards from values that are in the key;
    /// - `Host` is set from the URI's authority when the URI has one (RFC 9112 §3.2.2);
    /// - `Accept-Encoding` is replaced by the one coding this cache would pick (see
    ///   [`crate::vary`]), unless [`Config::encodings`] is empty.
    ///
    /// A host's own rewrites (nginx's `proxy_set_header`, `fastcgi_param`) apply afterwards,
    /// exactly as they would without the cache.
    pub fn prepare_upstream(&self, request: &mut request::Parts) {
        fill_request(request);
        request.uri = upstream_uri(&self.config, &request.uri);
        for name in &self.config.unkeyed_request_fields {
            request.headers.remove(name);
        }
        if let Some(authority) = request.uri.authority() {
            let host = match authority.port() {
                Some(p) => format!("{}:{}", authority.host(), p.as_str()),
                None => authority.host().to_owned(),
            };
            if let Ok(v) = HeaderValue::from_str(&host) {
                request.headers.insert(header::HOST, v);
            }
        }
        if !self.config.encodings.is_empty() {
            let coding = pick_encoding(
                request.headers.get_all(header::ACCEPT_ENCODING),
                &self.config.encodings,
            )
            .to_owned();
            if let Ok(v) = HeaderValue::from_str(&coding) {
                request.headers.insert(header::ACCEPT_ENCODING, v);
            }
        }
    }

    /// Decides whether to store `response`, received at `response_time` for `request` (the
    /// request as sent upstream) sent at `request_time`, and if so with which freshness.
    ///
    /// Applies, in order: the storability rules of RFC 9111 §3 (method, status, `no-store`,
    /// `private`, `Authorization`, `Set-Cookie` per config, `Vary: *`, freshness information);
    /// the directive selection of RFC 9213 (a targeted field replaces `Cache-Control` and
    /// `Expires`); the freshness lifetime of RFC 9111 §4.2.1–4.2.2; the age of §4.2.3; the stale
    /// windows of RFC 5861 and operator settings, removed where §4.2.4 forbids stale
    /// responses. Also the right call after [`Policy::merge_304`], with the revalidation's times.
    pub fn on_response(
        &self,
        request: &request::Parts,
        response: &response::Parts,
        request_time: SystemTime,
        response_time: SystemTime,
    ) -> Result<Store, DontStore> {
        let rd = ResponseDirectives::select(&response.headers, &self.config.targeted_fields);
        let unstored_fields = storable::check(&self.config, request, response, &rd)?;
        let mut vary = Vary::from_response(&response.headers).ok_or(DontStore::VaryStar)?;
        // A coded response without `Vary: Accept-Encoding` would reach clients that cannot
        // decode it; vary on it anyway.
        let coded = response
            .headers
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if coded && !self.config.encodings.is_empty() {
            vary.insert(header::ACCEPT_ENCODING);
        }
        let lifetime = freshness_lifetime(
            &self.config,
            response.status,
            &rd,
            &response.headers,
            response_time,
        );
        let initial_age = corrected_initial_age(&response.headers, request_time, response_time);
        let w = windows(&self.config, &rd, lifetime.duration, initial_age);
        if w.freshness.ttl.is_zero()
            && w.freshness.swr.is_zero()
            && w.freshness.sie.is_zero()
            && !has_validator(&response.headers)
        {
            return Err(DontStore::NotReusable);
        }
        let vary_key = vary_key(&vary, &request.headers, &self.config.encodings);
        Ok(Store {
            freshness: w.freshness,
            meta: EntryMeta {
                response_time,
                initial_age,
                lifetime: w.lifetime,
                windows: w.windows,
                origin_windows: w.origin,
            },
            tags: tags::tags(&response.headers, &self.config.tag_fields),
            vary,
            vary_key,
            lifetime,
            source: rd.source,
            unstored_fields,
        })
    }

    /// The secondary key of a request for a stored [`Vary`] (see [`crate::vary`]).
    pub fn vary_key(&self, vary: &Vary, request_headers: &HeaderMap) -> VaryKey {
        vary_key(vary, request_headers, &self.config.encodings)
    }

    /// The purge tags of a response (by default from `Surrogate-Key`).
    pub fn tags(&self, response_headers: &HeaderMap) -> Vec<String> {
        tags::tags(response_headers, &self.config.tag_fields)
    }

    /// The request's own cache directives (RFC 9111 §5.2.1, `Pragma` §5.4) this cache acts on:
    /// none unless [`Config::honour_request_directives`] is set. Before serving a stored
    /// response, ask [`RequestDirectives::reuse`] (or [`Policy::reuse`]) whether it must be
    /// validated first, and answer `only-if-cached` requests that find nothing usable with 504
    /// (§5.2.1.7).
    pub fn request_directives(&self, request: &request::Parts) -> RequestDirectives {
        if self.config.honour_request_directives {
            RequestDirectives::from_headers(&request.headers)
        } else {
            RequestDirectives::default()
        }
    }

    /// Whether the stored response described by `entry` may answer `request` at `now` as it is:
    /// always [`Reuse::Serve`] unless request directives are honoured (see
    /// [`Policy::request_directives`]).
    pub fn reuse(&self, request: &request::Parts, entry: &EntryMeta, now: SystemTime) -> Reuse {
        self.request_directives(request).reuse(entry, now)
    }

    /// The fields to add to the upstream request when revalidating a stored response
    /// (RFC 9111 §4.3.1): `If-None-Match` from its `ETag`, `If-Modified-Since` from its
    /// `Last-Modified`.
    pub fn conditional_request_headers(&self, stored: &response::Parts) -> HeaderMap {
        conditional::conditional_request_headers(&stored.headers)
    }

    /// The stored response updated with a 304 (RFC 9111 §4.3.4); see
    /// [`conditional::merge_304`]. Then call [`Policy::on_response`] on the result to get its new
    /// freshness.
    pub fn merge_304(
        &self,
        stored: &response::Parts,
        not_modified: &response::Parts,
    ) -> Result<response::Parts, NotUpdated> {
        conditional::merge_304(stored, not_modified)
    }

    /// Answers a client's `If-None-Match` / `If-Modified-Since` from a stored response; see
    /// [`conditional::answer_conditional`].
    pub fn answer_conditional(
        &self,
        request: &request::Parts,
        stored: &response::Parts,
    ) -> ConditionalAnswer {
        conditional::answer_conditional(request, stored)
    }

    /// The keys to invalidate after an unsafe request got `response` (RFC 9111 §4.4): the target
    /// URI and same-origin `Location` / `Content-Location`. Empty for safe methods and for
    /// error statuses. Remove the variants of these keys too (for instance by tagging each
    /// variant with its primary key).
    pub fn invalidations(&self, request: &request::Parts, response: &response::Parts) -> Vec<Key> {
        invalidate::invalidations(&self.config, request, response)
    }

    /// A `Cache-Status` member carrying this cache's configured name.
    pub fn cache_status(&self) -> CacheStatus {
        CacheStatus::new(self.cache_name.clone())
    }

    /// Finishes the header fields of a response about to be sent to a client: removes the
    /// targeted and tag fields meant for this cache (unless configured to forward them), sets
    /// `Age` when the response comes from the cache (`entry` given, RFC 9111 §5.1), and appends
    /// `status` to `Cache-Status` after any upstream caches' members (RFC 9211 §2).
    pub fn finish_response(
        &self,
        headers: &mut HeaderMap,
        entry: Option<&EntryMeta>,
        now: SystemTime,
        status: &CacheStatus,
    ) {
        if !self.config.forward_targeted_fields {
            for name in &self.config.targeted_fields {
                if !self.config.forwarded_targeted_fields.contains(name) {
                    headers.remove(name);
                }
            }
        }
        if !self.config.forward_tag_fields {
            for name in &self.config.tag_fields {
                headers.remove(name);
            }
        }
        if let Some(entry) = entry {
            headers.insert(header::AGE, entry.age_header(now));
        }
        headers.append(
            HeaderName::from_static("cache-status"),
            status.to_header_value(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SetCookie, StaleWindows};
    use crate::directives::FieldScope;
    use crate::freshness::LifetimeSource;
    use std::time::Duration;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(t(secs))
    }

    fn req(method: &str, uri: &str, pairs: &[(&str, &str)]) -> request::Parts {
        let mut b = http::Request::builder().method(method).uri(uri);
        for (k, v) in pairs {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn get(pairs: &[(&str, &str)]) -> request::Parts {
        let mut all = vec![("host", "example.com")];
        all.extend_from_slice(pairs);
        req("GET", "/p", &all)
    }

    fn resp(status: u16, pairs: &[(&str, &str)]) -> response::Parts {
        let mut b = http::Response::builder().status(status);
        for (k, v) in pairs {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn decide(
        policy: &Policy,
        request: &request::Parts,
        response: &response::Parts,
    ) -> Result<Store, DontStore> {
        policy.on_response(request, response, t(100), t(100))
    }

    fn store(pairs: &[(&str, &str)]) -> Result<Store, DontStore> {
        decide(&Policy::default(), &get(&[]), &resp(200, pairs))
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn rfc9111_3_only_get_responses_are_stored() {
        let p = Policy::default();
        let ok = resp(200, &[("cache-control", "max-age=60")]);
        assert!(decide(&p, &get(&[]), &ok).is_ok());
        assert_eq!(
            decide(&p, &req("HEAD", "/p", &[("host", "h")]), &ok).unwrap_err(),
            DontStore::HeadRequest
        );
        assert_eq!(
            decide(&p, &req("POST", "/p", &[("host", "h")]), &ok).unwrap_err(),
            DontStore::Method(http::Method::POST)
        );
    }

    #[test]
    fn rfc9111_3_status_must_be_final_and_understood() {
        let p = Policy::default();
        let cc = [("cache-control", "max-age=60")];
        assert_eq!(
            decide(&p, &get(&[]), &resp(103, &cc)).unwrap_err(),
            DontStore::StatusNotFinal
        );
        assert_eq!(
            decide(&p, &get(&[]), &resp(304, &cc)).unwrap_err(),
            DontStore::NotModified
        );
        assert_eq!(
            decide(&p, &get(&[]), &resp(206, &cc)).unwrap_err(),
            DontStore::StatusNotUnderstood
        );
        assert!(
            decide(&p, &get(&[]), &resp(302, &cc)).is_ok(),
            "explicit freshness makes any final status storable"
        );
    }

    #[test]
    fn rfc9111_5_2_2_5_no_store() {
        assert_eq!(
            store(&[("cache-control", "max-age=60, no-store")]).unwrap_err(),
            DontStore::NoStore
        );
        assert_eq!(
            store(&[
                ("cache-control", "max-age=60"),
                ("cache-control", "NO-STORE")
            ])
            .unwrap_err(),
            DontStore::NoStore
        );
    }

    #[test]
    fn rfc9111_5_2_1_5_request_no_store() {
        let r = decide(
            &Policy::default(),
            &get(&[("cache-control", "no-store")]),
            &resp(200, &[("cache-control", "max-age=60")]),
        );
        assert_eq!(r.unwrap_err(), DontStore::RequestNoStore);
    }

    #[test]
    fn rfc9111_5_2_2_3_must_understand_overrides_no_store_for_understood_status() {
        assert!(store(&[("cache-control", "max-age=60, no-store, must-understand")]).is_ok());
        let r = decide(
            &Policy::default(),
            &get(&[]),
            &resp(
                299,
                &[("cache-control", "max-age=60, no-store, must-understand")],
            ),
        );
        assert_eq!(r.unwrap_err(), DontStore::StatusNotUnderstood);
    }

    #[test]
    fn rfc9111_5_2_2_7_private_is_not_stored_qualified_private_strips_fields() {
        assert_eq!(
            store(&[("cache-control", "private, max-age=60")]).unwrap_err(),
            DontStore::Private
        );
        let s = store(&[
            ("cache-control", "private=\"x-user\", max-age=60"),
            ("x-user", "alice"),
        ])
        .unwrap();
        assert!(s
            .unstored_fields
            .contains(&HeaderName::from_static("x-user")));
        let mut r = resp(200, &[("x-user", "alice"), ("x-other", "1")]);
        s.prepare(&mut r);
        assert!(!r.headers.contains_key("x-user"));
        assert!(r.headers.contains_key("x-other"));
    }

    #[test]
    fn rfc9111_5_2_2_4_qualified_no_cache_strips_fields_and_keeps_freshness() {
        let s = store(&[
            ("cache-control", "no-cache=\"set-cookie\", max-age=60"),
            ("set-cookie", "a=b"),
        ])
        .unwrap();
        assert!(s.unstored_fields.contains(&header::SET_COOKIE));
        assert_eq!(s.freshness.ttl, secs(60));
    }

    #[test]
    fn rfc9111_3_5_authorization_needs_public_s_maxage_or_must_revalidate() {
        let p = Policy::default();
        let auth = get(&[("authorization", "Bearer x")]);
        assert_eq!(
            decide(&p, &auth, &resp(200, &[("cache-control", "max-age=60")])).unwrap_err(),
            DontStore::Authorization
        );
        for cc in [
            "max-age=60, public",
            "s-maxage=60",
            "max-age=60, must-revalidate",
        ] {
            assert!(
                decide(&p, &auth, &resp(200, &[("cache-control", cc)])).is_ok(),
                "{cc}"
            );
        }
    }

    #[test]
    fn set_cookie_is_not_stored_by_default_and_configurable() {
        let r = resp(
            200,
            &[("cache-control", "max-age=60"), ("set-cookie", "sid=1")],
        );
        assert_eq!(
            decide(&Policy::default(), &get(&[]), &r).unwrap_err(),
            DontStore::SetCookie
        );
        let mut cfg = Config {
            set_cookie: SetCookie::Strip,
            ..Config::default()
        };
        let s = decide(&Policy::new(cfg.clone()), &get(&[]), &r).unwrap();
        assert!(s.unstored_fields.contains(&header::SET_COOKIE));
        cfg.set_cookie = SetCookie::Store;
        let s = decide(&Policy::new(cfg), &get(&[]), &r).unwrap();
        assert!(!s.unstored_fields.contains(&header::SET_COOKIE));
    }

    #[test]
    fn rfc9111_4_1_vary_star_is_not_stored() {
        assert_eq!(
            store(&[("cache-control", "max-age=60"), ("vary", "*")]).unwrap_err(),
            DontStore::VaryStar
        );
    }

    #[test]
    fn rfc9111_3_needs_explicit_freshness_or_heuristic_status() {
        let p = Policy::default();
        let lm = date(0);
        // 302 is not heuristically cacheable.
        assert_eq!(
            decide(&p, &get(&[]), &resp(302, &[("last-modified", &lm)])).unwrap_err(),
            DontStore::NoFreshness
        );
        // 200 is: 10 % of 100 s since Last-Modified.
        let s = decide(
            &p,
            &get(&[]),
            &resp(200, &[("last-modified", &lm), ("date", &date(100))]),
        )
        .unwrap();
        assert_eq!(s.freshness.ttl, secs(10));
        assert_eq!(s.lifetime.source, LifetimeSource::LastModified);
        // 404 with the operator's default ttl.
        let mut cfg = Config::default();
        cfg.heuristic.default_ttl = secs(30);
        let s = decide(&Policy::new(cfg), &get(&[]), &resp(404, &[])).unwrap();
        assert_eq!(s.freshness.ttl, secs(30));
    }

    #[test]
    fn rfc9111_4_2_4_no_cache_without_validator_is_not_reusable_with_validator_is_stored() {
        assert_eq!(
            store(&[("cache-control", "no-cache")]).unwrap_err(),
            DontStore::NotReusable
        );
        let s = store(&[("cache-control", "no-cache"), ("etag", "\"1\"")]).unwrap();
        assert_eq!(s.freshness, Freshness::new(Duration::ZERO));
        // Invalid freshness: stale at once; with a validator it is still worth storing.
        let s = store(&[("cache-control", "max-age=abc"), ("etag", "\"1\"")]).unwrap();
        assert_eq!(s.freshness.ttl, Duration::ZERO);
    }

    #[test]
    fn rfc9111_4_2_3_initial_age_is_kept_and_served_age_grows() {
        let p = Policy::default();
        let r = resp(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("age", "15"),
                ("date", &date(95)),
            ],
        );
        let s = p.on_response(&get(&[]), &r, t(98), t(100)).unwrap();
        // corrected_age_value = 15 + 2 beats apparent age 5.
        assert_eq!(s.meta.initial_age, secs(17));
        assert_eq!(s.freshness.ttl, secs(43));
        assert_eq!(s.meta.age_header(t(110)), "27");
        assert_eq!(s.meta.ttl_secs(t(110)), 33);
    }

    #[test]
    fn rfc9213_2_2_cdn_cache_control_overrides_private_cache_control() {
        let s = store(&[
            ("cache-control", "private, no-store"),
            (
                "cdn-cache-control",
                "max-age=600, stale-while-revalidate=30",
            ),
        ])
        .unwrap();
        assert_eq!(s.freshness, Freshness::new(secs(600)).with_swr(secs(30)));
        assert_eq!(
            s.source,
            DirectiveSource::Targeted(header::CDN_CACHE_CONTROL)
        );
        // And the targeted field's own no-store is honoured.
        assert_eq!(
            store(&[
                ("cache-control", "max-age=60"),
                ("cdn-cache-control", "no-store")
            ])
            .unwrap_err(),
            DontStore::NoStore
        );
        // Surrogate-Control is on the default target list.
        let s = store(&[
            ("cache-control", "max-age=5"),
            ("surrogate-control", "max-age=300"),
        ])
        .unwrap();
        assert_eq!(s.freshness.ttl, secs(300));
    }

    #[test]
    fn rfc9213_2_1_invalid_targeted_field_falls_back_to_cache_control() {
        let s = store(&[
            ("cache-control", "max-age=5"),
            ("cdn-cache-control", "max-age=\"600"),
        ])
        .unwrap();
        assert_eq!(s.freshness.ttl, secs(5));
        assert_eq!(s.source, DirectiveSource::CacheControl);
    }

    #[test]
    fn rfc5861_windows_and_grace_are_reported_separately() {
        let cfg = Config {
            grace: StaleWindows {
                swr: Duration::ZERO,
                sie: secs(3600),
            },
            ..Config::default()
        };
        let s = decide(
            &Policy::new(cfg),
            &get(&[]),
            &resp(200, &[("cache-control", "max-age=60, stale-if-error=60")]),
        )
        .unwrap();
        assert_eq!(s.freshness.sie, secs(3600));
        assert_eq!(s.meta.origin_windows.sie, secs(60));
        use crate::entry::{StaleGrant, StaleUse};
        assert_eq!(
            s.meta.stale_grant(StaleUse::IfError, t(100 + 90)),
            Some(StaleGrant::Origin)
        );
        assert_eq!(
            s.meta.stale_grant(StaleUse::IfError, t(100 + 500)),
            Some(StaleGrant::Grace)
        );
    }

    #[test]
    fn surrogate_key_becomes_tags_and_vary_key_is_computed() {
        let p = Policy::default();
        let r = resp(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("surrogate-key", "a b"),
                ("vary", "Accept-Encoding"),
            ],
        );
        let s = decide(&p, &get(&[("accept-encoding", "gzip, br")]), &r).unwrap();
        assert_eq!(s.tags, vec!["a", "b"]);
        assert_eq!(s.vary_key.as_bytes(), b"accept-encoding=br\n");
        assert_eq!(
            p.vary_key(&s.vary, &get(&[("accept-encoding", "br")]).headers),
            s.vary_key
        );
    }

    #[test]
    fn coded_response_without_vary_still_varies_on_accept_encoding() {
        let s = store(&[
            ("cache-control", "max-age=60"),
            ("content-encoding", "gzip"),
        ])
        .unwrap();
        assert!(s.vary.contains(&header::ACCEPT_ENCODING));
    }

    #[test]
    fn rfc9110_6_6_1_prepare_adds_date_when_missing_and_rfc9111_3_1_drops_hop_by_hop() {
        let mut r = resp(
            200,
            &[
                ("cache-control", "max-age=60"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
                ("keep-alive", "5"),
                ("x-end", "1"),
            ],
        );
        let s = decide(&Policy::default(), &get(&[]), &r).unwrap();
        s.prepare(&mut r);
        assert_eq!(r.headers[header::DATE], date(100).as_str());
        assert!(!r.headers.contains_key("x-hop"));
        assert!(!r.headers.contains_key("keep-alive"));
        assert!(!r.headers.contains_key(header::CONNECTION));
        assert!(r.headers.contains_key("x-end"));
        // An existing Date is kept.
        let mut dated = resp(200, &[("date", &date(5))]);
        s.prepare(&mut dated);
        assert_eq!(dated.headers[header::DATE], date(5).as_str());
    }

    #[test]
    fn rfc9111_4_3_4_revalidation_recomputes_freshness_from_merged_headers() {
        let p = Policy::default();
        let stored = resp(
            200,
            &[
                ("cache-control", "max-age=10"),
                ("etag", "\"v\""),
                ("date", &date(0)),
                ("content-length", "3"),
            ],
        );
        let cond = p.conditional_request_headers(&stored);
        assert_eq!(cond[header::IF_NONE_MATCH], "\"v\"");
        let nm = resp(
            304,
            &[
                ("cache-control", "max-age=100"),
                ("etag", "\"v\""),
                ("date", &date(200)),
            ],
        );
        let merged = p.merge_304(&stored, &nm).unwrap();
        let s = p.on_response(&get(&[]), &merged, t(199), t(200)).unwrap();
        assert_eq!(s.freshness.ttl, secs(99));
        assert_eq!(merged.headers[header::CONTENT_LENGTH], "3");
    }

    #[test]
    fn rfc9111_4_3_2_client_conditionals_are_answered_from_the_cache() {
        let p = Policy::default();
        let stored = resp(200, &[("etag", "\"v\""), ("cache-control", "max-age=10")]);
        assert!(matches!(
            p.answer_conditional(&get(&[("if-none-match", "\"v\"")]), &stored),
            ConditionalAnswer::NotModified(_)
        ));
    }

    #[test]
    fn prepare_upstream_removes_what_the_key_ignores() {
        let p = Policy::default();
        let mut r = req(
            "GET",
            "http://Example.com:8080/p?utm_source=x&q=1",
            &[
                ("host", "evil.example"),
                ("x-forwarded-host", "evil.example"),
                ("accept-encoding", "gzip, br;q=0.9, deflate"),
                ("if-none-match", "\"x\""),
                ("if-modified-since", &date(0)),
            ],
        );
        let key_before = p.key(&r).unwrap();
        p.prepare_upstream(&mut r);
        assert_eq!(r.uri.to_string(), "http://Example.com:8080/p?q=1");
        assert_eq!(r.headers[header::HOST], "Example.com:8080");
        assert!(!r.headers.contains_key("x-forwarded-host"));
        assert_eq!(r.headers[header::ACCEPT_ENCODING], "gzip");
        assert!(!r.headers.contains_key(header::IF_NONE_MATCH));
        assert!(!r.headers.contains_key(header::IF_MODIFIED_SINCE));
        assert_eq!(
            p.key(&r).unwrap(),
            key_before,
            "the upstream request has the client's key"
        );
    }

    #[test]
    fn a_fill_of_a_hostile_request_is_a_plain_get_that_stores() {
        let p = Policy::default();
        let mut r = req(
            "HEAD",
            "/p",
            &[
                ("host", "example.com"),
                ("cache-control", "no-store, no-cache, max-age=0"),
                ("pragma", "no-cache"),
                ("range", "bytes=0-3"),
                ("if-match", "\"x\""),
                ("connection", "x-visitor"),
                ("x-visitor", "1"),
            ],
        );
        let key_before = p.key(&r).unwrap();
        p.prepare_upstream(&mut r);
        assert_eq!(r.method, http::Method::GET);
        for gone in [
            "cache-control",
            "pragma",
            "range",
            "if-match",
            "x-visitor",
            "connection",
        ] {
            assert!(!r.headers.contains_key(gone), "{gone} reached the origin");
        }
        assert_eq!(p.key(&r).unwrap(), key_before);
        let stored = decide(&p, &r, &resp(200, &[("cache-control", "max-age=60")]));
        assert!(
            stored.is_ok(),
            "a fill's own request never stops it storing"
        );
    }

    #[test]
    fn only_the_response_may_switch_a_key_off() {
        use crate::storable::Cause;
        let p = Policy::default();
        let ok = resp(200, &[("cache-control", "max-age=60")]);
        for (request, why) in [
            (
                get(&[("cache-control", "no-store")]),
                DontStore::RequestNoStore,
            ),
            (
                get(&[("authorization", "Bearer x")]),
                DontStore::Authorization,
            ),
            (req("HEAD", "/p", &[("host", "h")]), DontStore::HeadRequest),
        ] {
            let e = decide(&p, &request, &ok).unwrap_err();
            assert_eq!(e, why);
            assert_eq!(e.cause(), Cause::Request, "{e}");
        }
        for cc in ["no-store", "private, max-age=60"] {
            let e = decide(&p, &get(&[]), &resp(200, &[("cache-control", cc)])).unwrap_err();
            assert_eq!(e.cause(), Cause::Response, "{e}");
        }
        let e = decide(
            &p,
            &get(&[]),
            &resp(206, &[("cache-control", "max-age=60")]),
        );
        assert_eq!(e.unwrap_err().cause(), Cause::Response);
    }

    #[test]
    fn request_directives_are_ignored_unless_honoured() {
        let e = EntryMeta {
            response_time: t(0),
            initial_age: Duration::ZERO,
            lifetime: secs(60),
            windows: StaleWindows::default(),
            origin_windows: StaleWindows::default(),
        };
        let r = get(&[
            ("cache-control", "no-cache, max-age=0"),
            ("pragma", "no-cache"),
        ]);
        let ignoring = Policy::default();
        assert_eq!(
            ignoring.request_directives(&r),
            RequestDirectives::default()
        );
        assert_eq!(ignoring.reuse(&r, &e, t(1)), Reuse::Serve);
        let honouring = Policy::new(Config {
            honour_request_directives: true,
            ..Config::default()
        });
        assert!(honouring.request_directives(&r).no_cache);
        assert_eq!(honouring.reuse(&r, &e, t(1)), Reuse::Revalidate);
        assert_eq!(honouring.reuse(&get(&[]), &e, t(1)), Reuse::Serve);
    }

    #[test]
    fn finish_response_strips_targeted_and_tag_fields_sets_age_and_appends_cache_status() {
        let p = Policy::new(Config {
            forwarded_targeted_fields: vec![],
            ..Config::default()
        });
        let s = store(&[("cache-control", "max-age=60")]).unwrap();
        let mut h = resp(
            200,
            &[
                ("cdn-cache-control", "max-age=600"),
                ("surrogate-control", "max-age=1"),
                ("surrogate-key", "a"),
                ("cache-status", "origin-cache; hit"),
            ],
        )
        .headers;
        let status = p.cache_status().hit().ttl(s.meta.ttl_secs(t(112)));
        p.finish_response(&mut h, Some(&s.meta), t(112), &status);
        assert!(!h.contains_key(header::CDN_CACHE_CONTROL));
        assert!(!h.contains_key("surrogate-control"));
        assert!(!h.contains_key("surrogate-key"));
        assert_eq!(h[header::AGE], "12");
        let cs: Vec<_> = h.get_all("cache-status").iter().collect();
        assert_eq!(cs, vec!["origin-cache; hit", "peakcache; hit; ttl=48"]);
    }

    #[test]
    fn rfc9213_3_cdn_cache_control_is_forwarded_by_default_while_surrogate_control_is_consumed() {
        let p = Policy::default();
        let mut h = resp(
            200,
            &[
                ("cdn-cache-control", "max-age=600"),
                ("surrogate-control", "max-age=1"),
            ],
        )
        .headers;
        p.finish_response(&mut h, None, t(100), &p.cache_status());
        assert_eq!(h[header::CDN_CACHE_CONTROL], "max-age=600");
        assert!(!h.contains_key("surrogate-control"));
    }

    #[test]
    fn rfc9111_4_4_invalidations_through_policy() {
        let p = Policy::default();
        let keys = p.invalidations(
            &req("PUT", "/p", &[("host", "example.com")]),
            &resp(204, &[]),
        );
        assert_eq!(keys, vec![p.key(&get(&[])).unwrap()]);
    }

    proptest::proptest! {
        #[test]
        fn rfc9111_4_2_3_ttl_is_max_age_minus_age_value(max_age in 0u32..100_000, age in 0u32..200_000) {
            let r = resp(200, &[("cache-control", &format!("max-age={max_age}, stale-if-error=10")), ("age", &age.to_string()), ("etag", "\"v\"")]);
            let s = decide(&Policy::default(), &get(&[]), &r).unwrap();
            proptest::prop_assert_eq!(s.freshness.ttl, secs(u64::from(max_age.saturating_sub(age))));
            proptest::prop_assert_eq!(s.meta.initial_age, secs(u64::from(age)));
            let already_stale = u64::from(age.saturating_sub(max_age));
            proptest::prop_assert_eq!(s.freshness.sie, secs(10u64.saturating_sub(already_stale)));
        }

        #[test]
        fn on_response_never_panics_on_arbitrary_field_values(
            fields in proptest::collection::vec(
                (proptest::sample::select(vec![
                    "cache-control", "cdn-cache-control", "surrogate-control", "expires", "date", "age",
                    "last-modified", "vary", "etag", "set-cookie", "surrogate-key", "content-encoding",
                ]), proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
                0..8,
            ),
            status in 100u16..600,
        ) {
            let mut r = resp(status, &[]);
            for (name, value) in fields {
                if let Ok(v) = HeaderValue::from_bytes(&value) {
                    r.headers.append(name, v);
                }
            }
            let p = Policy::default();
            if let Ok(s) = p.on_response(&get(&[]), &r, t(100), t(101)) {
                // A stored entry never outlives what its lifetime and windows allow.
                proptest::prop_assert!(s.freshness.ttl <= s.meta.lifetime);
                proptest::prop_assert!(s.freshness.swr <= s.meta.windows.swr);
                let _ = p.answer_conditional(&get(&[("if-none-match", "*")]), &r);
                let _ = p.merge_304(&r, &r);
            }
        }
    }

    #[test]
    fn qualified_private_scope_is_visible_in_directives() {
        let rd = ResponseDirectives::select(
            &resp(200, &[("cache-control", "private=\"a\"")]).headers,
            &[],
        );
        assert_eq!(
            rd.directives.private(),
            Some(FieldScope::Fields(vec![HeaderName::from_static("a")]))
        );
    }
}
