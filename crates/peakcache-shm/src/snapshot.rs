//! Snapshots: every servable entry written to a file, and read back into any region.
//!
//! ```text
//! file    = header | entry* | trailer
//! header  = "PKSNAP\0\0" (8) | version u32 | 0 u32 | wall time of the snapshot, ns u64
//! entry   = length u32 (of what follows, checksum included) | key_len u32 | value_len u32
//!         | flags u32 | ttl_ms u32 | swr_ms u32 | sie_ms u32 | ntags u32 | age_ns u64
//!         | tag hashes (8 each) | key | value | checksum u64 (of the entry from key_len on)
//! trailer = "PKSNEND\0" (8) | entries u64
//! ```
//!
//! All integers little-endian. A reader checks every length against what is left of the file
//! and every entry's checksum, and skips a bad entry (its length is still trusted to find the
//! next; a bad length ends the read).

use crate::cache::{Restored, ShmCache};
use crate::error::ShmError;
use crate::file::{self, NewFile};
use crate::hash::Checksum;
use crate::region::wall_nanos;
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8; 8] = b"PKSNAP\0\0";
const END: &[u8; 8] = b"PKSNEND\0";
/// The snapshot format version.
pub const SNAPSHOT_VERSION: u32 = 1;
const FIXED: usize = 4 * 7 + 8;

/// Writes the snapshot into a new file beside `path` (exclusive, 0600, nothing followed),
/// synced, then renamed over `path`.
pub(crate) fn write(cache: &ShmCache, path: &Path) -> Result<u64, ShmError> {
    let new = NewFile::create(path, 0o600, None)?;
    let count = write_to(cache, &new.file).map_err(|e| match e {
        ShmError::Io { op, source, .. } => ShmError::io(op, Some(path), source),
        e => e,
    })?;
    new.file
        .sync_all()
        .map_err(|e| ShmError::io("fsync", Some(path), e))?;
    new.replace(path)?;
    Ok(count)
}

/// Writes the snapshot to `out`: each shard's entries copied into memory under its lock, then
/// written with the lock released.
pub(crate) fn write_to(cache: &ShmCache, mut out: impl Write) -> Result<u64, ShmError> {
    let io = |e| ShmError::io("write", None, e);
    let mut buf = Vec::with_capacity(1 << 16);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    buf.extend_from_slice(&0u32.to_le_bytes());
    buf.extend_from_slice(&wall_nanos().to_le_bytes());
    out.write_all(&buf).map_err(io)?;
    let mut count = 0u64;
    for shard in 0..cache.shards() {
        buf.clear();
        cache.for_each_entry_of(shard, |key, value, flags, age, w, tags| {
            encode_entry(&mut buf, key, value, flags, age, w, tags);
            count += 1;
        });
        // The shard's lock is released: the disk may take its time.
        out.write_all(&buf).map_err(io)?;
    }
    buf.clear();
    buf.extend_from_slice(END);
    buf.extend_from_slice(&count.to_le_bytes());
    out.write_all(&buf).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(count)
}

/// Appends one entry (length, fields, tags, key, value, checksum) to `buf`.
fn encode_entry(
    buf: &mut Vec<u8>,
    key: &[u8],
    value: &[u8],
    flags: u32,
    age: u64,
    w: [u32; 3],
    tags: &[u64],
) {
    let len_at = buf.len();
    buf.extend_from_slice(&0u32.to_le_bytes());
    let body = buf.len();
    // Lengths fit in u32: a record's are 32-bit, and the key's bounded by `MAX_KEY`.
    for x in [
        key.len() as u32,
        value.len() as u32,
        flags,
        w[0],
        w[1],
        w[2],
        tags.len() as u32,
    ] {
        buf.extend_from_slice(&x.to_le_bytes());
    }
    buf.extend_from_slice(&age.to_le_bytes());
    for t in tags {
        buf.extend_from_slice(&t.to_le_bytes());
    }
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    let mut c = Checksum::new();
    c.add(&buf[body..]);
    buf.extend_from_slice(&c.finish().to_le_bytes());
    let len = (buf.len() - body) as u32;
    buf[len_at..body].copy_from_slice(&len.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

pub(crate) fn read(cache: &ShmCache, path: &Path) -> Result<Restored, ShmError> {
    let io = |op, e| ShmError::io(op, Some(path), e);
    let owner = cache.owner();
    let mut file = file::open_checked(path, false, |md| owner.check_snapshot(path, md))?
        .ok_or_else(|| io("open", std::io::Error::from(std::io::ErrorKind::NotFound)))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).map_err(|e| io("read", e))?;
    if data.len() < 24 + 16 {
        return Err(ShmError::Truncated {
            expected: 40,
            found: data.len() as u64,
        });
    }
    if &data[..8] != MAGIC {
        return Err(ShmError::BadMagic);
    }
    let version = u32_at(&data, 8);
    if version != SNAPSHOT_VERSION {
        return Err(ShmError::VersionMismatch {
            found: version,
            expected: SNAPSHOT_VERSION,
        });
    }
    let end = data.len() - 16;
    if &data[end..end + 8] != END {
        return Err(ShmError::Truncated {
            expected: data.len() as u64 + 16,
            found: data.len() as u64,
        });
    }
    let elapsed = wall_nanos().saturating_sub(u64_at(&data, 16));
    let mut at = 24;
    let mut report = Restored::default();
    while at < end {
        if end - at < 4 {
            report.skipped += 1;
            break;
        }
        let len = u32_at(&data, at) as usize;
        at += 4;
        if len < FIXED + 8 || len > end - at {
            report.skipped += 1;
            break;
        }
        let e = &data[at..at + len];
        at += len;
        let body = &e[..len - 8];
        let mut c = Checksum::new();
        c.add(body);
        let (key_len, value_len, ntags) = (
            u32_at(e, 0) as usize,
            u32_at(e, 4) as usize,
            u32_at(e, 24) as usize,
        );
        let ok = c.finish() == u64_at(e, len - 8)
            && FIXED
                .checked_add(ntags.saturating_mul(8))
                .and_then(|n| n.checked_add(key_len))
                .and_then(|n| n.checked_add(value_len))
                == Some(body.len());
        if !ok {
            report.skipped += 1;
            continue;
        }
        let flags = u32_at(e, 8);
        let windows = [u32_at(e, 12), u32_at(e, 16), u32_at(e, 20)];
        let age = u64_at(e, 28).saturating_add(elapsed);
        let tags: Vec<u64> = (0..ntags).map(|t| u64_at(e, FIXED + 8 * t)).collect();
        let key = &body[FIXED + 8 * ntags..FIXED + 8 * ntags + key_len];
        let value = &body[FIXED + 8 * ntags + key_len..];
        if cache.restore_entry(key, value, flags, age, windows, &tags) {
            report.restored += 1;
        } else {
            report.skipped += 1;
        }
    }
    Ok(report)
}
