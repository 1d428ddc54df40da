//! The `Cache-Status` response field (RFC 9211).
//!
//! One member per answer: the cache's name, then parameters. Examples:
//!
//! ```text
//! peakcache; hit; ttl=42
//! peakcache; fwd=uri-miss; fwd-status=200; stored
//! peakcache; hit; ttl=-5; detail=stale-while-revalidate
//! peakcache; fwd=stale; fwd-status=503; ttl=-400; detail=grace-if-error
//! peakcache; fwd=miss; fwd-status=200; collapsed
//! ```

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::HeaderValue;

use crate::entry::{StaleGrant, StaleUse};

/// Why a request was forwarded (RFC 9211 §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fwd {
    /// The cache was configured not to handle this request.
    Bypass,
    /// The request method's semantics require forwarding.
    Method,
    /// The cache had no response for the URI.
    UriMiss,
    /// The cache had responses for the URI, but none matched the request's Vary fields.
    VaryMiss,
    /// The cache did not find a usable response (when it cannot tell which kind of miss).
    Miss,
    /// The request's own directives (`no-cache`, ...) required forwarding.
    Request,
    /// The stored response was stale and had to be revalidated or refetched.
    Stale,
    /// Only part of the response was stored.
    Partial,
}

impl Fwd {
    /// The token RFC 9211 §2.2 defines for this reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Miss => "miss",
            Fwd::Request => "request",
            Fwd::Stale => "stale",
            Fwd::Partial => "partial",
        }
    }
}

/// Largest magnitude of a Structured Fields integer (RFC 8941 §3.3.1).
const SF_INTEGER_MAX: i64 = 999_999_999_999_999;

/// One `Cache-Status` member, built step by step and formatted with
/// [`CacheStatus::to_header_value`]. Append it to any `Cache-Status` already in the response
/// (upstream caches come first, RFC 9211 §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheStatus {
    name: Arc<str>,
    hit: bool,
    fwd: Option<Fwd>,
    fwd_status: Option<u16>,
    ttl: Option<i64>,
    stored: bool,
    collapsed: bool,
    key: Option<String>,
    detail: Option<Cow<'static, str>>,
}

impl CacheStatus {
    /// A member for the cache called `name`, with no parameters yet.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        CacheStatus {
            name: name.into(),
            hit: false,
            fwd: None,
            fwd_status: None,
            ttl: None,
            stored: false,
            collapsed: false,
            key: None,
            detail: None,
        }
    }

    /// The request was answered from the cache without contacting the origin (RFC 9211 §2.1);
    /// clears any `fwd`.
    pub fn hit(mut self) -> Self {
        self.hit = true;
        self.fwd = None;
        self
    }

    /// The request was forwarded, and why (§2.2); clears `hit`.
    pub fn fwd(mut self, why: Fwd) -> Self {
        self.fwd = Some(why);
        self.hit = false;
        self
    }

    /// The status code the forwarded request got (§2.3).
    pub fn fwd_status(mut self, status: u16) -> Self {
        self.fwd_status = Some(status);
        self
    }

    /// Remaining freshness in seconds, negative when stale (§2.4), e.g. from
    /// [`EntryMeta::ttl_secs`](crate::EntryMeta::ttl_secs).
    pub fn ttl(mut self, secs: i64) -> Self {
        self.ttl = Some(secs.clamp(-SF_INTEGER_MAX, SF_INTEGER_MAX));
        self
    }

    /// The forwarded response was stored (§2.5).
    pub fn stored(mut self) -> Self {
        self.stored = true;
        self
    }

    /// The request was collapsed into another one for the same response (§2.6).
    pub fn collapsed(mut self) -> Self {
        self.collapsed = true;
        self
    }

    /// The cache key, for debugging (§2.7). Bytes outside printable ASCII are percent-encoded.
    pub fn key(mut self, key: impl AsRef<[u8]>) -> Self {
        let mut s = String::new();
        for &b in key.as_ref() {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                s.push(char::from(b));
            } else {
                s.push_str(&format!("%{b:02X}"));
            }
        }
        self.key = Some(s);
        self
    }

    /// Free-form detail (§2.8), sent as a token when it is one, else as a string.
    pub fn detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Marks a stale answer: `detail=stale-while-revalidate` or `detail=stale-if-error` when
    /// the origin allowed it, `detail=grace-while-revalidate` or `detail=grace-if-error` when only
    /// the operator's grace did.
    pub fn stale(self, kind: StaleUse, grant: StaleGrant) -> Self {
        let detail = match (grant, kind) {
            (StaleGrant::Origin, StaleUse::WhileRevalidate) => "stale-while-revalidate",
            (StaleGrant::Origin, StaleUse::IfError) => "stale-if-error",
            (StaleGrant::Grace, StaleUse::WhileRevalidate) => "grace-while-revalidate",
            (StaleGrant::Grace, StaleUse::IfError) => "grace-if-error",
        };
        self.detail(detail)
    }

    /// The member as a header value.
    pub fn to_header_value(&self) -> HeaderValue {
        // Only printable ASCII is written, which HeaderValue always accepts.
        HeaderValue::from_str(&self.to_string()).unwrap_or(HeaderValue::from_static("peakcache"))
    }
}

/// An sf-token: `(ALPHA / "*") *(tchar / ":" / "/")` (RFC 8941 §3.3.4).
fn is_sf_token(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'*' => {}
        _ => return false,
    }
    bytes.all(|b| crate::directives::is_tchar(b) || b == b':' || b == b'/')
}

/// Writes an sf-string (RFC 8941 §3.3.3); characters outside printable ASCII become `?`.
fn write_sf_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '"' | '\\' => write!(f, "\\{c}")?,
            ' '..='~' => write!(f, "{c}")?,
            _ => f.write_str("?")?,
        }
    }
    f.write_str("\"")
}

fn write_token_or_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    if is_sf_token(s) {
        f.write_str(s)
    } else {
        write_sf_string(f, s)
    }
}

impl fmt::Display for CacheStatus {
    /// The member in Structured Fields syntax, e.g. `peakcache; hit; ttl=42`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_token_or_string(f, &self.name)?;
        if self.hit {
            f.write_str("; hit")?;
        }
        if let Some(fwd) = self.fwd {
            write!(f, "; fwd={}", fwd.as_str())?;
        }
        if let Some(s) = self.fwd_status {
            write!(f, "; fwd-status={s}")?;
        }
        if let Some(t) = self.ttl {
            write!(f, "; ttl={t}")?;
        }
        if self.stored {
            f.write_str("; stored")?;
        }
        if self.collapsed {
            f.write_str("; collapsed")?;
        }
        if let Some(k) = &self.key {
            f.write_str("; key=")?;
            write_sf_string(f, k)?;
        }
        if let Some(d) = &self.detail {
            f.write_str("; detail=")?;
            write_token_or_string(f, d)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc9211_2_1_hit_with_ttl() {
        assert_eq!(
            CacheStatus::new("peakcache").hit().ttl(42).to_string(),
            "peakcache; hit; ttl=42"
        );
    }

    #[test]
    fn rfc9211_2_2_forward_reasons_and_stored() {
        let s = CacheStatus::new("peakcache")
            .fwd(Fwd::UriMiss)
            .fwd_status(200)
            .stored();
        assert_eq!(
            s.to_header_value(),
            "peakcache; fwd=uri-miss; fwd-status=200; stored"
        );
        let all = [
            Fwd::Bypass,
            Fwd::Method,
            Fwd::UriMiss,
            Fwd::VaryMiss,
            Fwd::Miss,
            Fwd::Request,
            Fwd::Stale,
            Fwd::Partial,
        ];
        let names: Vec<_> = all.iter().map(|f| f.as_str()).collect();
        assert_eq!(
            names,
            [
                "bypass",
                "method",
                "uri-miss",
                "vary-miss",
                "miss",
                "request",
                "stale",
                "partial"
            ]
        );
    }

    #[test]
    fn rfc9211_2_1_hit_and_fwd_are_exclusive() {
        assert_eq!(
            CacheStatus::new("c").hit().fwd(Fwd::Stale).to_string(),
            "c; fwd=stale"
        );
        assert_eq!(
            CacheStatus::new("c").fwd(Fwd::Stale).hit().to_string(),
            "c; hit"
        );
    }

    #[test]
    fn rfc9211_2_8_stale_detail_tells_grace_from_origin() {
        let s = CacheStatus::new("peakcache")
            .hit()
            .ttl(-5)
            .stale(StaleUse::WhileRevalidate, StaleGrant::Origin);
        assert_eq!(
            s.to_string(),
            "peakcache; hit; ttl=-5; detail=stale-while-revalidate"
        );
        let s = CacheStatus::new("peakcache")
            .fwd(Fwd::Stale)
            .fwd_status(503)
            .stale(StaleUse::IfError, StaleGrant::Grace);
        assert_eq!(
            s.to_string(),
            "peakcache; fwd=stale; fwd-status=503; detail=grace-if-error"
        );
    }

    #[test]
    fn rfc9211_2_6_collapsed_and_2_7_key_as_string() {
        let s = CacheStatus::new("edge 1")
            .fwd(Fwd::Miss)
            .collapsed()
            .key(b"GET https://h/\"x\"\0");
        assert_eq!(
            s.to_string(),
            "\"edge 1\"; fwd=miss; collapsed; key=\"GET https://h/\\\"x\\\"%00\""
        );
    }

    #[test]
    fn rfc8941_3_3_1_ttl_is_clamped_to_sf_integer_range() {
        assert_eq!(
            CacheStatus::new("c").ttl(i64::MIN).to_string(),
            "c; ttl=-999999999999999"
        );
    }

    proptest! {
        #[test]
        fn header_value_is_always_valid(name in any::<String>(), detail in any::<String>(), key in any::<Vec<u8>>()) {
            let s = CacheStatus::new(name).hit().key(key).detail(detail);
            let v = s.to_header_value();
            prop_assert_eq!(v.to_str().unwrap(), s.to_string());
        }
    }
}
