//! What the proxy keeps in the cache for one response.

use bytes::Bytes;
use http::response;
use peakcache_http::{EntryMeta, StaleWindows, Vary, VaryKey};
use std::time::{Duration, SystemTime};

/// A stored response: its head as the origin sent it (less the fields not to store), its body,
/// and what the HTTP layer needs to serve it later.
pub struct Cached {
    /// Status and header fields.
    pub parts: response::Parts,
    /// The whole body.
    pub body: Bytes,
    /// Timing facts for `Age`, `Cache-Status` and stale grants.
    pub meta: EntryMeta,
    /// The fields the response varies on (empty when it does not vary).
    pub vary: Vary,
    /// The secondary key of the request it answered.
    pub vary_key: VaryKey,
}

/// Per-entry bytes the proxy adds to the core's overhead: the `Cached` box and its header map.
const CACHED_OVERHEAD: u64 = 256;

impl Cached {
    /// What the entry costs against the cache's capacity, in bytes (approximately: header
    /// maps have their own bookkeeping).
    pub fn weight(&self, key: &[u8]) -> u64 {
        let headers: usize = self
            .parts
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 32)
            .sum();
        (key.len() + self.body.len() + headers + self.vary_key.as_bytes().len()) as u64
            + CACHED_OVERHEAD
            + peakcache::ENTRY_OVERHEAD
    }
}

/// The layout of [`Cached::encode_head`]; bumped when it changes, so a host never misreads
/// another version's copies (they count as unreadable, and are fetched again).
const HEAD_LAYOUT: u8 = 1;

impl Cached {
    /// Everything but the body, for the cluster's second-level cache: status, header fields,
    /// the timing facts (`Age` keeps counting from the first host's receipt) and the Vary
    /// names and key, in a compact layout that [`Cached::from_parts`] reads back.
    pub fn encode_head(&self) -> Bytes {
        let mut out = Vec::with_capacity(256);
        out.push(HEAD_LAYOUT);
        out.extend_from_slice(&self.parts.status.as_u16().to_be_bytes());
        let m = &self.meta;
        let since_epoch = m
            .response_time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        for d in [
            since_epoch,
            m.initial_age,
            m.lifetime,
            m.windows.swr,
            m.windows.sie,
            m.origin_windows.swr,
            m.origin_windows.sie,
        ] {
            out.extend_from_slice(&(d.as_millis() as u64).to_be_bytes());
        }
        put_field(&mut out, self.vary.to_header_value().as_bytes());
        put_field(&mut out, self.vary_key.as_bytes());
        out.extend_from_slice(&(self.parts.headers.len() as u32).to_be_bytes());
        for (name, value) in &self.parts.headers {
            put_field(&mut out, name.as_str().as_bytes());
            put_field(&mut out, value.as_bytes());
        }
        Bytes::from(out)
    }

    /// A stored response from a head written by [`Cached::encode_head`] and its body; `None`
    /// when the head is not one (another layout, cut short, invalid fields).
    pub fn from_parts(head: &[u8], body: Bytes) -> Option<Cached> {
        let mut r = Reader(head);
        if r.take(1)? != [HEAD_LAYOUT] {
            return None;
        }
        let status = http::StatusCode::from_u16(u16::from_be_bytes(r.array()?)).ok()?;
        let mut ms = [Duration::ZERO; 7];
        for d in &mut ms {
            *d = Duration::from_millis(u64::from_be_bytes(r.array()?));
        }
        let vary_names = r.field()?;
        let vary = Vary::from_names(
            vary_names
                .split(|&b| b == b',')
                .map(|n| n.trim_ascii())
                .filter(|n| !n.is_empty())
                .map(http::HeaderName::from_bytes)
                .collect::<Result<Vec<_>, _>>()
                .ok()?,
        );
        let vary_key = VaryKey::from_bytes(Bytes::copy_from_slice(r.field()?));
        let count = u32::from_be_bytes(r.array()?);
        let mut response = http::Response::new(());
        *response.status_mut() = status;
        for _ in 0..count {
            let name = http::HeaderName::from_bytes(r.field()?).ok()?;
            let value = http::HeaderValue::from_bytes(r.field()?).ok()?;
            response.headers_mut().append(name, value);
        }
        if !r.0.is_empty() {
            return None;
        }
        let (parts, ()) = response.into_parts();
        let windows = |swr, sie| StaleWindows { swr, sie };
        Some(Cached {
            parts,
            body,
            meta: EntryMeta {
                response_time: SystemTime::UNIX_EPOCH + ms[0],
                initial_age: ms[1],
                lifetime: ms[2],
                windows: windows(ms[3], ms[4]),
                origin_windows: windows(ms[5], ms[6]),
            },
            vary,
            vary_key,
        })
    }
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Reads a head with bounds checks: every read is `None` past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn field(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached() -> Cached {
        let response = http::Response::builder()
            .status(203)
            .header("cache-control", "max-age=60")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .header(
                "x-bin",
                http::HeaderValue::from_bytes(b"caf\xe9 \xff").unwrap(),
            )
            .body(())
            .unwrap();
        let vary = Vary::from_names([http::header::ACCEPT_ENCODING, http::header::COOKIE]);
        let (parts, ()) = response.into_parts();
        Cached {
            parts,
            body: Bytes::from_static(b"hello"),
            meta: EntryMeta {
                response_time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
                initial_age: Duration::from_secs(3),
                lifetime: Duration::from_secs(60),
                windows: StaleWindows {
                    swr: Duration::from_secs(30),
                    sie: Duration::from_secs(300),
                },
                origin_windows: StaleWindows {
                    swr: Duration::from_secs(30),
                    sie: Duration::ZERO,
                },
            },
            vary,
            vary_key: VaryKey::from_bytes(Bytes::from_static(b"gzip\0\x01")),
        }
    }

    #[test]
    fn a_response_survives_the_second_level_cache() {
        let c = cached();
        let back = Cached::from_parts(&c.encode_head(), c.body.clone()).unwrap();
        assert_eq!(back.parts.status, c.parts.status);
        assert_eq!(back.parts.headers, c.parts.headers);
        assert_eq!(back.meta, c.meta);
        assert_eq!(back.vary, c.vary);
        assert_eq!(back.vary_key, c.vary_key);
        assert_eq!(back.body, c.body);
    }

    #[test]
    fn a_damaged_head_is_refused_not_misread() {
        let head = cached().encode_head();
        for cut in 0..head.len() {
            assert!(
                Cached::from_parts(&head[..cut], Bytes::new()).is_none(),
                "cut at {cut}"
            );
        }
        let mut other = head.to_vec();
        other[0] = HEAD_LAYOUT + 1;
        assert!(Cached::from_parts(&other, Bytes::new()).is_none());
        let mut longer = head.to_vec();
        longer.push(0);
        assert!(Cached::from_parts(&longer, Bytes::new()).is_none());
    }
}
