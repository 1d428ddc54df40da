//! The bytes a [`Stored`] value becomes in the shared backend (a `peakcache-shm` region holds
//! bytes and a `u32` flags word per entry, copied out on every read).
//!
//! The host's flags word travels in the region's own flags word, whole; everything else is
//! encoded here, compactly, versioned, and read back with every length checked against what is
//! left, so bytes that are not a value of this encoding (another version, a foreign writer) give
//! an error, never a panic, an oversized allocation or undefined behaviour:
//!
//! ```text
//! u8       encoding version (VERSION, 1)
//! u16 LE   status
//! varint   header count H
//! varint   metadata length M
//! H x      varint name length, varint value length
//!          every header's name then value, in order
//! M bytes  metadata
//! ...      the body: every remaining byte
//! ```
//!
//! Varints are LEB128 (7 bits a byte, low first, at most 5 bytes for a `u32`). A typical entry
//! with a few short headers costs 5 bytes plus 2 per header beyond its bytes. Decoding copies
//! the headers and metadata (small) and shares the body with the bytes copied out of the region
//! (no second copy of the body).

use crate::value::{HeaderSpan, Stored};
use bytes::Bytes;
use std::fmt;

/// The encoding version written in the first byte.
pub(crate) const VERSION: u8 = 1;

/// Why bytes read from the region are not a value of this encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError(pub(crate) String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stored value is not a valid encoded response: {}",
            self.0
        )
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(mut v: u32) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// The encoded size of `s`.
pub(crate) fn encoded_len(s: &Stored) -> usize {
    let mut n = 3 + varint_len(s.headers.len() as u32) + varint_len(s.meta.len() as u32);
    for h in &s.headers {
        n += varint_len(h.name_len) + varint_len(h.value_len);
    }
    n + s.header_bytes.len() + s.meta.len() + s.body.len()
}

/// Encodes `s` (its flags excepted: they go in the region's flags word) into `out`, cleared
/// first. Header counts and lengths fit a `u32` by construction (`peakcache_response` limits
/// header bytes to 4 GiB); metadata longer than 4 GiB is refused.
pub(crate) fn encode(s: &Stored, out: &mut Vec<u8>) -> Result<(), String> {
    let count = u32::try_from(s.headers.len()).map_err(|_| "more than 2^32 headers")?;
    let meta = u32::try_from(s.meta.len()).map_err(|_| "metadata over 4 GiB")?;
    out.clear();
    out.reserve(encoded_len(s));
    out.push(VERSION);
    out.extend_from_slice(&s.status.to_le_bytes());
    put_varint(out, count);
    put_varint(out, meta);
    for h in &s.headers {
        put_varint(out, h.name_len);
        put_varint(out, h.value_len);
    }
    for (name, value) in s.header_pairs() {
        out.extend_from_slice(name);
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&s.meta);
    out.extend_from_slice(&s.body);
    Ok(())
}

/// A cursor over untrusted bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self, what: &str) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| DecodeError(format!("truncated in {what}")))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self, what: &str) -> Result<u32, DecodeError> {
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.byte(what)?;
            let bits = u32::from(b & 0x7f);
            if i == 4 && bits > 0x0f {
                return Err(DecodeError(format!("{what} overflows 32 bits")));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError(format!("{what} overflows 32 bits")))
    }
}

/// Where the parts of an encoded value lie, read and checked.
struct Parts {
    status: u16,
    headers: Vec<HeaderSpan>,
    /// Where the header bytes start; the metadata and then the body follow them.
    header_start: usize,
    meta_start: usize,
    body_start: usize,
}

/// Reads the prefix of an encoded value: every length checked against what is left.
fn parts(bytes: &[u8]) -> Result<Parts, DecodeError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let version = r.byte("version")?;
    if version != VERSION {
        return Err(DecodeError(format!(
            "encoding version {version}, this build reads version {VERSION}"
        )));
    }
    let status = u16::from_le_bytes([r.byte("status")?, r.byte("status")?]);
    let count = r.varint("header count")? as usize;
    let meta_len = r.varint("metadata length")? as usize;
    // Each header takes at least two bytes of lengths: a count beyond that is corrupt, and
    // checking it first bounds the allocation below by the input's size.
    if count > r.left() / 2 {
        return Err(DecodeError(format!(
            "{count} headers in {} bytes",
            r.left()
        )));
    }
    let mut headers = Vec::with_capacity(count);
    let mut total: u64 = 0;
    for _ in 0..count {
        let name_len = r.varint("header name length")?;
        let value_len = r.varint("header value length")?;
        let start =
            u32::try_from(total).map_err(|_| DecodeError("header bytes exceed 4 GiB".into()))?;
        headers.push(HeaderSpan {
            start,
            name_len,
            value_len,
        });
        total += u64::from(name_len) + u64::from(value_len);
    }
    if total > u32::MAX as u64 {
        return Err(DecodeError("header bytes exceed 4 GiB".into()));
    }
    let need = total + meta_len as u64;
    if need > r.left() as u64 {
        return Err(DecodeError(format!(
            "headers and metadata need {need} bytes, {} left",
            r.left()
        )));
    }
    let meta_start = r.pos + total as usize;
    Ok(Parts {
        status,
        headers,
        header_start: r.pos,
        meta_start,
        body_start: meta_start + meta_len,
    })
}

/// Decodes a value copied out of the region; `flags` is the region's flags word. The body shares
/// `bytes`' allocation.
pub(crate) fn decode(bytes: Bytes, flags: u32) -> Result<Stored, DecodeError> {
    let p = parts(&bytes)?;
    Ok(Stored {
        status: p.status,
        flags,
        headers: p.headers,
        header_bytes: bytes[p.header_start..p.meta_start].into(),
        meta: bytes[p.meta_start..p.body_start].into(),
        body: bytes.slice(p.body_start..),
        id: 0,
        seq: 0,
    })
}

/// Where the body of an encoded value starts, checked as `decode` checks it.
#[inline]
pub(crate) fn body_start(bytes: &[u8]) -> Result<usize, DecodeError> {
    match bytes {
        // No header and no metadata (a value of a host that stores bodies alone, as PHP does):
        // the body follows the version, the status and the two zero counts.
        [VERSION, _, _, 0, 0, ..] => Ok(5),
        _ => parts(bytes).map(|p| p.body_start),
    }
}

/// A value of `key` that failed to decode: purges the key (so the next lookup fetches it
/// again), logs, and gives `PEAKCACHE_ERR_CORRUPT` with the reason.
#[cold]
pub(crate) fn corrupt(
    shm: &peakcache_shm::ShmCache,
    key: &[u8],
    e: DecodeError,
) -> crate::result::peakcache_result {
    shm.purge(key, peakcache::PurgeMode::Hard);
    let msg = format!("peakcache: {e} (key of {} bytes purged)", key.len());
    crate::log::emit(crate::log::PEAKCACHE_LOG_WARN, &msg);
    crate::result::fail(crate::result::PEAKCACHE_ERR_CORRUPT, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Stored {
        let mut resp = crate::response::peakcache_response::new(203);
        resp.push_header(b"content-type", b"text/html").unwrap();
        resp.push_header(b"x-empty", b"").unwrap();
        resp.push_header(&[b'n'; 200], &[b'v'; 300]).unwrap();
        resp.flags = 0xDEAD_BEEF;
        resp.meta = b"meta\0data".to_vec();
        if let crate::response::Body::Owned(v) = &mut resp.body {
            v.extend_from_slice(b"hello, world");
        }
        resp.into_stored()
    }

    fn same(a: &Stored, b: &Stored) {
        assert_eq!(a.status, b.status);
        assert_eq!(a.flags, b.flags);
        assert_eq!(
            a.header_pairs().collect::<Vec<_>>(),
            b.header_pairs().collect::<Vec<_>>()
        );
        assert_eq!(a.body, b.body);
        assert_eq!(a.meta, b.meta);
    }

    #[test]
    fn round_trip() {
        let s = sample();
        let mut out = Vec::new();
        encode(&s, &mut out).unwrap();
        assert_eq!(out.len(), encoded_len(&s));
        let d = decode(Bytes::from(out), s.flags).unwrap();
        same(&s, &d);

        let empty = crate::response::peakcache_response::new(0).into_stored();
        encode(&empty, &mut Vec::new()).unwrap();
        let mut out = Vec::new();
        encode(&empty, &mut out).unwrap();
        assert_eq!(out.len(), 5);
        same(&empty, &decode(Bytes::from(out), 0).unwrap());
    }

    /// `body_start` finds the body `decode` finds, and fails where it fails.
    fn body_start_agrees(bytes: &[u8]) {
        match decode(Bytes::copy_from_slice(bytes), 0) {
            Ok(d) => assert_eq!(
                body_start(bytes),
                Ok(bytes.len() - d.body.len()),
                "{bytes:?}"
            ),
            Err(e) => assert_eq!(body_start(bytes), Err(e), "{bytes:?}"),
        }
    }

    #[test]
    fn body_start_finds_the_body_decode_finds() {
        let mut with_parts = Vec::new();
        encode(&sample(), &mut with_parts).unwrap();
        let mut bare = crate::response::peakcache_response::new(200);
        if let crate::response::Body::Owned(v) = &mut bare.body {
            v.extend_from_slice(b"just a body");
        }
        let mut body_only = Vec::new();
        encode(&bare.into_stored(), &mut body_only).unwrap();
        assert_eq!(body_start(&body_only), Ok(5));
        for out in [with_parts, body_only] {
            for cut in 0..=out.len() {
                body_start_agrees(&out[..cut]);
            }
            for i in 0..out.len().min(16) {
                for flip in [1u8, 0x80, 0xff] {
                    let mut bad = out.clone();
                    bad[i] ^= flip;
                    body_start_agrees(&bad);
                }
            }
        }
    }

    #[test]
    fn varints_at_the_edges() {
        for v in [0u32, 1, 127, 128, 16383, 16384, u32::MAX - 1, u32::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            let mut r = Reader { buf: &out, pos: 0 };
            assert_eq!(r.varint("v").unwrap(), v);
        }
        // Six bytes, or a fifth byte with bits beyond 32: refused.
        let mut r = Reader {
            buf: &[0xff, 0xff, 0xff, 0xff, 0x1f],
            pos: 0,
        };
        assert!(r.varint("v").is_err());
    }

    #[test]
    fn every_truncation_and_corruption_is_an_error_or_a_value() {
        let s = sample();
        let mut out = Vec::new();
        encode(&s, &mut out).unwrap();
        // Truncated inside the fixed part, the lengths, the headers or the metadata: an error.
        let fixed = out.len() - s.body.len();
        for cut in 0..fixed {
            assert!(
                decode(Bytes::copy_from_slice(&out[..cut]), 0).is_err(),
                "{cut}"
            );
        }
        // Every single-byte change: never a panic.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for i in 0..out.len() {
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let mut bad = out.clone();
                bad[i] ^= (seed as u8) | 1;
                let _ = decode(Bytes::from(bad), 0);
            }
        }
        // Random bytes: never a panic, and huge counts allocate nothing.
        for n in 0..2000usize {
            let mut junk = Vec::with_capacity(n % 64);
            for _ in 0..n % 64 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                junk.push(seed as u8);
            }
            if let Some(b) = junk.first_mut() {
                *b = VERSION;
            }
            let _ = decode(Bytes::from(junk), 0);
        }
        assert!(decode(
            Bytes::from_static(&[VERSION, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            0
        )
        .is_err());
        assert!(decode(Bytes::from_static(&[2, 200, 0, 0, 0]), 0)
            .unwrap_err()
            .0
            .contains("version 2"));
    }
}
