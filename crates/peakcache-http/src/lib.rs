//! HTTP caching semantics for a shared cache, as a pure synchronous layer over the
//! [`http`] crate's types.
//!
//! Written from the RFCs: RFC 9111 (HTTP caching, shared cache), RFC 5861
//! (`stale-while-revalidate`, `stale-if-error`), RFC 9213 (targeted fields,
//! `CDN-Cache-Control`) and RFC 9211 (`Cache-Status`). Nothing here reads a clock or does I/O:
//! times are passed in as [`SystemTime`](std::time::SystemTime), and the storage itself is the
//! core `peakcache` cache, which receives a [`peakcache::Freshness`] per entry.
//!
//! # Contents
//! - [`Policy`]: the entry point, one method per step of a proxy's work.
//! - [`Config`]: operator settings (target list, heuristics, stale defaults and grace, ignored
//!   query parameters, `Set-Cookie` handling, content codings, cache name).
//! - Modules named after concepts, usable on their own: [`directives`] (the one
//!   `Cache-Control` / `CDN-Cache-Control` / `Surrogate-Control` parser), [`targeted`],
//!   [`storable`], [`freshness`], [`age`], [`entry`], [`key`], [`vary`], [`conditional`],
//!   [`tags`], [`status`], [`request`].
//!
//! # A proxy's flow
//!
//! 1. **Key.** Remove the hop-by-hop fields first ([`strip_hop_by_hop`]: those the visitor's
//!    `Connection` names too), then [`Policy::key`] gives the primary key
//!    (`GET https://host/path?query`, campaign parameters removed) or [`NotCacheable`]: forward
//!    such requests untouched (unsafe methods, `Authorization`, invalid hosts).
//! 2. **Lookup.** Under the primary key keep either the response (when it has no `Vary`) or the
//!    response's [`Vary`] (when it has one). In the second case compute the request's
//!    [`VaryKey`] with [`Policy::vary_key`] and look up [`Key::variant`]`(&vary_key)`, which is
//!    the primary key, a NUL byte and the vary key. An absent variant is a `vary-miss`.
//! 3. **Hit.** If the client sent `If-None-Match` / `If-Modified-Since`,
//!    [`Policy::answer_conditional`] may give a 304. Otherwise serve the stored response. Either
//!    way, [`Policy::finish_response`] sets `Age` from the stored [`EntryMeta`], removes fields
//!    meant only for this cache and appends `Cache-Status`.
//! 4. **Miss.** [`Policy::prepare_upstream`] makes the fill's request: a bodiless `GET` without
//!    what the key ignores (campaign parameters, `X-Forwarded-Host`, ...) and without one
//!    visitor's quirks (preconditions, `Range`, request directives, credentials), so nothing
//!    outside the key shapes what is stored under it ([`upstream`]). Send it, noting
//!    `request_time` and `response_time`.
//! 5. **Store.** [`Policy::on_response`] gives a [`Store`] (freshness, entry metadata, tags,
//!    Vary, fields to drop) or the [`DontStore`] reason. [`Store::prepare`] readies the response.
//!    Only a reason whose [`DontStore::cause`] is [`Cause::Response`] may make the key pass
//!    through for a while; a [`Cause::Request`] one leaves the entry and its tickets alone.
//! 6. **Revalidate.** For a stale entry, add [`Policy::conditional_request_headers`] to the
//!    upstream request; on a 304, [`Policy::merge_304`] updates the stored headers and
//!    [`Policy::on_response`] on the merged response gives the new freshness.
//! 7. **Invalidate.** After an unsafe request, remove the keys from [`Policy::invalidations`].
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use peakcache_http::{CacheStatus, Config, Fwd, Policy};
//!
//! let policy = Policy::new(Config::default());
//! let sent = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
//! let received = sent + Duration::from_millis(40);
//!
//! let (mut request, ()) = http::Request::get("/shoes?utm_source=mail&page=2")
//!     .header("host", "Shop.Example")
//!     .header("accept-encoding", "gzip, br")
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! let key = policy.key(&request).unwrap();
//! assert_eq!(key.to_string(), "GET https://shop.example/shoes?page=2");
//!
//! // Miss: forward what the key covers, nothing more.
//! policy.prepare_upstream(&mut request);
//! assert_eq!(request.uri, "/shoes?page=2");
//!
//! let (mut response, ()) = http::Response::builder()
//!     .header("cache-control", "max-age=10")
//!     .header("cdn-cache-control", "max-age=60, stale-while-revalidate=30")
//!     .header("vary", "Accept-Encoding")
//!     .header("surrogate-key", "shoes page-2")
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! let store = policy.on_response(&request, &response, sent, received).unwrap();
//! // Fresh for 60 s minus the 40 ms the response took to arrive (RFC 9111 §4.2.3).
//! assert_eq!(store.freshness.ttl, Duration::from_millis(59_960));
//! assert_eq!(store.freshness.swr, Duration::from_secs(30));
//! assert_eq!(store.tags, ["shoes", "page-2"]);
//! store.prepare(&mut response);
//! let variant_key = key.variant(&store.vary_key); // store the response here,
//! let _marker = store.vary.to_header_value(); // and this under `key`.
//! assert!(variant_key.ends_with(b"accept-encoding=br\n"));
//!
//! // Serving it 12 s later from the cache.
//! let now = received + Duration::from_secs(12);
//! let status = policy.cache_status().hit().ttl(store.meta.ttl_secs(now));
//! let mut headers = response.headers.clone();
//! policy.finish_response(&mut headers, Some(&store.meta), now, &status);
//! assert_eq!(headers["age"], "12");
//! assert_eq!(headers["cache-status"], "peakcache; hit; ttl=48");
//! assert!(!headers.contains_key("surrogate-key")); // for this cache only
//! assert!(headers.contains_key("cdn-cache-control")); // for CDNs in front (RFC 9213 §3)
//!
//! // What the miss itself reported.
//! let miss = CacheStatus::new("peakcache").fwd(Fwd::UriMiss).fwd_status(200).stored();
//! assert_eq!(miss.to_string(), "peakcache; fwd=uri-miss; fwd-status=200; stored");
//! ```
//!
//! # Deliberate choices
//! - Request directives (`Cache-Control: no-cache`, `max-age=0`, `no-store`, `Pragma`) are
//!   ignored for shared entries by default, as Varnish, Fastly and Cloudflare do: one visitor
//!   cannot make the page bypass the cache or be refetched for everyone.
//!   [`Config::honour_request_directives`] applies them to the visitor who sent them.
//! - Repeated freshness directives with different values (`max-age=1, max-age=2`) make the
//!   response stale: RFC 9111 §4.2.1 allows that or the first value, and staleness agrees with
//!   both `Cache-Control` (first wins) and Structured Fields (last wins) readings.
//! - `s-maxage` forbids stale serving (RFC 9111 §5.2.2.10) unless
//!   [`Config::stale_with_s_maxage`] is set. Prefer `CDN-Cache-Control: max-age=N,
//!   stale-while-revalidate=M` to target this cache.
//! - A 304 without any validator is accepted as an answer to this cache's own conditional
//!   request; a 304 with a validator must match the stored one (RFC 9111 §4.3.4).
//! - Responses to HEAD are not stored (GET and HEAD share a key; a HEAD response cannot serve a
//!   GET). 206 responses are not stored (ranges are not combined).
//! - A request without `Accept-Encoding` gets the `identity` variant.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod age;
pub mod conditional;
pub mod config;
pub mod directives;
pub mod entry;
pub mod freshness;
mod invalidate;
pub mod key;
mod policy;
pub mod request;
pub mod status;
pub mod storable;
pub mod tags;
pub mod targeted;
pub mod upstream;
pub mod vary;

pub use conditional::{ConditionalAnswer, EntityTag, NotUpdated};
pub use config::{Config, Heuristic, SetCookie, StaleWindows};
pub use directives::{Delta, Directive, Directives, FieldScope, Syntax};
pub use entry::{EntryMeta, StaleGrant, StaleUse};
pub use freshness::{Lifetime, LifetimeSource};
pub use key::{Key, NotCacheable};
pub use policy::{Policy, Store};
pub use request::{RequestDirectives, Reuse};
pub use status::{CacheStatus, Fwd};
pub use storable::{Cause, DontStore};
pub use targeted::{DirectiveSource, ResponseDirectives};
pub use upstream::{fill_request, strip_hop_by_hop};
pub use vary::{Vary, VaryKey};
