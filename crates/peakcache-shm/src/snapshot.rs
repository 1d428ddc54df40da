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
use crate::hash::Checksum;
use crate::region::wall_nanos;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const MAGIC: &[u8; 8] = b"PKSNAP\0\0";
const END: &[u8; 8] = b"PKSNEND\0";
/// The snapshot format version.
pub const SNAPSHOT_VERSION: u32 = 1;
const FIXED: usize = 4 * 7 + 8;

pub(crate) fn write(cache: &ShmCache, path: &Path) -> Result<u64, ShmError> {
    let io = |op, e| ShmError::io(op, Some(path), e);
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("create", e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut head = Vec::with_capacity(24);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    head.extend_from_slice(&0u32.to_le_bytes());
    head.extend_from_slice(&wall_nanos().to_le_bytes());
    out.write_all(&head).map_err(|e| io("write", e))?;
    let mut count = 0u64;
    let mut err = None;
    let mut buf = Vec::new();
    // Each shard is copied into `buf` under its lock, then written after it is released.
    cache.for_each_entry(|key, value, flags, age, w, tags| {
        let mut e = Vec::with_capacity(FIXED + tags.len() * 8 + key.len() + value.len() + 12);
        for x in [
            key.len() as u32,
            value.len() as u32,
            flags,
            w[0],
            w[1],
            w[2],
            tags.len() as u32,
        ] {
            e.extend_from_slice(&x.to_le_bytes());
        }
        e.extend_from_slice(&age.to_le_bytes());
        for t in tags {
            e.extend_from_slice(&t.to_le_bytes());
        }
        e.extend_from_slice(key);
        e.extend_from_slice(value);
        let mut c = Checksum::new();
        c.add(&e);
        e.extend_from_slice(&c.finish().to_le_bytes());
        buf.extend_from_slice(&(e.len() as u32).to_le_bytes());
        buf.extend_from_slice(&e);
        count += 1;
        if buf.len() >= 1 << 20 && err.is_none() {
            if let Err(e) = out.write_all(&buf) {
                err = Some(e);
            }
            buf.clear();
        }
    });
    if let Some(e) = err {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", e));
    }
    buf.extend_from_slice(END);
    buf.extend_from_slice(&count.to_le_bytes());
    let done = out
        .write_all(&buf)
        .and_then(|_| out.into_inner().map_err(|e| e.into_error()))
        .and_then(|f: File| f.sync_all());
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", e));
    }
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))?;
    Ok(count)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

pub(crate) fn read(cache: &ShmCache, path: &Path) -> Result<Restored, ShmError> {
    let io = |op, e| ShmError::io(op, Some(path), e);
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|e| io("read", e))?;
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
