//! Choosing which cache directives govern a response for this cache (RFC 9213 §2.2).

use http::header::{self, HeaderMap, HeaderName};

use crate::directives::{Directives, Syntax};

/// Where a response's directives for this cache came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectiveSource {
    /// A targeted field from the target list (`CDN-Cache-Control`, `Surrogate-Control`, ...).
    /// `Cache-Control` and `Expires` are ignored for this cache.
    Targeted(HeaderName),
    /// `Cache-Control` (possibly absent, giving no directives).
    CacheControl,
}

/// The directives that apply to this cache, and where they came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseDirectives {
    /// The directives.
    pub directives: Directives,
    /// Their source.
    pub source: DirectiveSource,
}

impl ResponseDirectives {
    /// Selects the directives of `headers`: the first field of `target_list` with a valid,
    /// non-empty value, else `Cache-Control` (RFC 9213 §2.2). A targeted field that is empty or
    /// does not parse is ignored as if absent (RFC 9213 §2.1). `Surrogate-Control` and other
    /// non-Structured-Field targeted fields are read with the same tolerant parser.
    pub fn select(headers: &HeaderMap, target_list: &[HeaderName]) -> Self {
        for name in target_list {
            if !headers.contains_key(name) {
                continue;
            }
            let directives = Directives::from_headers(headers, name, Syntax::Targeted);
            if !directives.is_empty() && !directives.is_malformed() {
                return ResponseDirectives {
                    directives,
                    source: DirectiveSource::Targeted(name.clone()),
                };
            }
        }
        ResponseDirectives {
            directives: Directives::from_headers(
                headers,
                &header::CACHE_CONTROL,
                Syntax::CacheControl,
            ),
            source: DirectiveSource::CacheControl,
        }
    }

    /// True when a targeted field was selected, so `Expires` is ignored too.
    pub fn is_targeted(&self) -> bool {
        matches!(self.source, DirectiveSource::Targeted(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directives::Delta;
    use http::HeaderValue;

    fn list() -> Vec<HeaderName> {
        vec![
            header::CDN_CACHE_CONTROL,
            HeaderName::from_static("surrogate-control"),
        ]
    }

    #[test]
    fn rfc9213_2_2_targeted_field_replaces_cache_control() {
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::CDN_CACHE_CONTROL,
            HeaderValue::from_static("max-age=600"),
        );
        let r = ResponseDirectives::select(&h, &list());
        assert_eq!(
            r.source,
            DirectiveSource::Targeted(header::CDN_CACHE_CONTROL)
        );
        assert!(!r.directives.no_store());
        assert_eq!(r.directives.max_age(), Some(Delta::Seconds(600)));
    }

    #[test]
    fn rfc9213_2_2_first_field_in_target_list_order_wins() {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static("surrogate-control"),
            HeaderValue::from_static("max-age=5"),
        );
        h.insert(
            header::CDN_CACHE_CONTROL,
            HeaderValue::from_static("max-age=600"),
        );
        let r = ResponseDirectives::select(&h, &list());
        assert_eq!(r.directives.max_age(), Some(Delta::Seconds(600)));
        let reversed: Vec<_> = list().into_iter().rev().collect();
        let r = ResponseDirectives::select(&h, &reversed);
        assert_eq!(r.directives.max_age(), Some(Delta::Seconds(5)));
    }

    #[test]
    fn rfc9213_2_1_empty_or_unparsable_targeted_field_is_ignored() {
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=1"));
        h.insert(header::CDN_CACHE_CONTROL, HeaderValue::from_static(" , "));
        assert_eq!(
            ResponseDirectives::select(&h, &list()).source,
            DirectiveSource::CacheControl
        );
        h.insert(
            header::CDN_CACHE_CONTROL,
            HeaderValue::from_static("max-age=\"60"),
        );
        assert_eq!(
            ResponseDirectives::select(&h, &list()).source,
            DirectiveSource::CacheControl
        );
        // An unregistered directive still makes the field non-empty (RFC 9213 §3.1's `none`).
        h.insert(header::CDN_CACHE_CONTROL, HeaderValue::from_static("none"));
        assert!(ResponseDirectives::select(&h, &list()).is_targeted());
    }

    #[test]
    fn rfc9213_2_2_fields_not_on_the_target_list_change_nothing() {
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=1"));
        h.insert(
            HeaderName::from_static("othercdn-cache-control"),
            HeaderValue::from_static("max-age=600"),
        );
        let r = ResponseDirectives::select(&h, &list());
        assert_eq!(r.directives.max_age(), Some(Delta::Seconds(1)));
    }
}
