//! The HTTP entry metadata blob: an `EntryMeta` as bytes, kept in the stored value's metadata
//! (`peakcache_response_set_meta`), so it travels with the entry wherever the value goes.
//!
//! Layout, version 1 (58 bytes): `b'H'`, the version byte `1`, then seven little-endian `u64`:
//! the response time in Unix milliseconds, the initial age, the lifetime, the granted
//! stale-while-revalidate and stale-if-error windows, and the origin's part of each, all in
//! milliseconds. A reader refuses any other length, tag or version, so a layout change bumps the
//! version and old entries read as "no HTTP metadata" (served as misses by a careful host).

use crate::cache::millis;
use crate::result::{fail, peakcache_result, PEAKCACHE_ERR_INVALID};
use peakcache_http::{EntryMeta, StaleWindows};
use std::time::{Duration, SystemTime};

const TAG: u8 = b'H';
const VERSION: u8 = 1;
const LEN: usize = 2 + 7 * 8;

/// The blob for `meta`.
pub(crate) fn encode(meta: &EntryMeta) -> Vec<u8> {
    let unix = meta
        .response_time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let mut out = Vec::with_capacity(LEN);
    out.extend_from_slice(&[TAG, VERSION]);
    for d in [
        unix,
        meta.initial_age,
        meta.lifetime,
        meta.windows.swr,
        meta.windows.sie,
        meta.origin_windows.swr,
        meta.origin_windows.sie,
    ] {
        out.extend_from_slice(&millis(d).to_le_bytes());
    }
    out
}

/// The metadata in `blob`, or `PEAKCACHE_ERR_INVALID` when it holds none of this version.
pub(crate) fn decode(blob: &[u8]) -> Result<EntryMeta, peakcache_result> {
    if blob.len() != LEN || blob[0] != TAG || blob[1] != VERSION {
        return Err(fail(
            PEAKCACHE_ERR_INVALID,
            "entry has no HTTP metadata (not stored through peakcache_http_store_response, or by another version)",
        ));
    }
    let mut fields = blob[2..].chunks_exact(8).map(|c| {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        Duration::from_millis(u64::from_le_bytes(b))
    });
    let mut next = || fields.next().unwrap_or(Duration::ZERO);
    Ok(EntryMeta {
        response_time: SystemTime::UNIX_EPOCH + next(),
        initial_age: next(),
        lifetime: next(),
        windows: StaleWindows {
            swr: next(),
            sie: next(),
        },
        origin_windows: StaleWindows {
            swr: next(),
            sie: next(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_the_millisecond_and_refuses_other_blobs() {
        let meta = EntryMeta {
            response_time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            initial_age: Duration::from_secs(17),
            lifetime: Duration::from_millis(59_960),
            windows: StaleWindows {
                swr: Duration::from_secs(30),
                sie: Duration::from_secs(3600),
            },
            origin_windows: StaleWindows {
                swr: Duration::from_secs(30),
                sie: Duration::ZERO,
            },
        };
        let blob = encode(&meta);
        assert_eq!(blob.len(), LEN);
        assert_eq!(decode(&blob), Ok(meta));
        assert!(decode(&[]).is_err());
        let mut other = blob.clone();
        other[1] = 2;
        assert!(decode(&other).is_err());
        assert!(decode(&blob[..LEN - 1]).is_err());
    }
}
