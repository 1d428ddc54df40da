//! Errors of the shared-memory tier.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a region could not be created, attached, snapshotted or restored.
///
/// Attaching never trusts the region: every field of the header is checked before anything is
/// read through it, and a mismatch is reported here, never acted upon.
#[derive(Debug)]
pub enum ShmError {
    /// A system call failed.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file involved, if any.
        path: Option<PathBuf>,
        /// The error.
        source: io::Error,
    },
    /// The file is shorter than a header, or than the size its header states (truncated).
    Truncated {
        /// Bytes the header (or the format) requires.
        expected: u64,
        /// Bytes found.
        found: u64,
    },
    /// The file does not start with the peakcache region (or snapshot) magic.
    BadMagic,
    /// The region was made by another layout version of this crate.
    VersionMismatch {
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        expected: u32,
    },
    /// The header's checksum does not match its contents (corrupted or half-written).
    HeaderChecksum,
    /// The header is consistent but its geometry is impossible (a field out of range).
    BadLayout(String),
    /// The region is valid but not what the builder asked for (size, shards, slots, clock).
    ConfigMismatch(String),
    /// The region is still being initialised by another process (or its creator died doing so).
    NotReady,
    /// A configuration value is out of range.
    InvalidConfig(String),
    /// The file at the path is not one this process may trust: not a regular file (a symbolic
    /// link, a directory, a FIFO, a device), not owned by the expected owner, or readable or
    /// writable by other users. It is left as it is (never replaced, never followed).
    Refused {
        /// The path.
        path: PathBuf,
        /// What is there, if it is not a regular file ("symbolic link", "directory", ...).
        kind: &'static str,
        /// Its owner's user id.
        uid: u32,
        /// Its group id.
        gid: u32,
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
        /// Why it is refused, and what to do about it.
        reason: String,
    },
    /// The file system (or the memory) cannot hold the region: refused at creation, rather
    /// than crashing attached processes with `SIGBUS` when they first touch a page that has no
    /// room behind it.
    NoSpace {
        /// The region file, or `None` for an anonymous region.
        path: Option<PathBuf>,
        /// Bytes the region needs.
        needed: u64,
        /// Bytes the file system has available (`statvfs`), when known.
        available: Option<u64>,
    },
}

impl ShmError {
    pub(crate) fn io(op: &'static str, path: Option<&std::path::Path>, source: io::Error) -> Self {
        ShmError::Io {
            op,
            path: path.map(|p| p.to_path_buf()),
            source,
        }
    }
}

impl fmt::Display for ShmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShmError::Io { op, path, source } => match path {
                Some(p) => write!(f, "{op} {}: {source}", p.display()),
                None => write!(f, "{op}: {source}"),
            },
            ShmError::Truncated { expected, found } => write!(
                f,
                "region file truncated: {found} bytes, {expected} expected"
            ),
            ShmError::BadMagic => f.write_str("not a peakcache region (bad magic)"),
            ShmError::VersionMismatch { found, expected } => write!(
                f,
                "region layout version {found}, this build reads version {expected}"
            ),
            ShmError::HeaderChecksum => f.write_str("region header checksum mismatch (corrupted)"),
            ShmError::BadLayout(why) => {
                write!(f, "region header describes an invalid layout: {why}")
            }
            ShmError::ConfigMismatch(why) => {
                write!(f, "region differs from the configuration: {why}")
            }
            ShmError::NotReady => {
                f.write_str("region not initialised (its creator is still at work or died)")
            }
            ShmError::InvalidConfig(why) => write!(f, "invalid configuration: {why}"),
            ShmError::Refused {
                path,
                kind,
                uid,
                gid,
                mode,
                reason,
            } => write!(
                f,
                "refusing {}, a {kind} owned by uid {uid} (gid {gid}) with mode {mode:04o}: {reason}",
                path.display()
            ),
            ShmError::NoSpace {
                path,
                needed,
                available,
            } => {
                match path {
                    Some(p) => write!(f, "no room for the region {}: ", p.display())?,
                    None => f.write_str("no room for the anonymous region: ")?,
                }
                write!(f, "it needs {needed} bytes")?;
                match available {
                    Some(a) => write!(f, ", the file system has {a} available"),
                    None => f.write_str(", and the system could not reserve them"),
                }?;
                f.write_str(" (make the region smaller or the file system larger)")
            }
        }
    }
}

impl std::error::Error for ShmError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ShmError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Why a value was not stored (or, for [`ShmCache::try_purge`](crate::ShmCache::try_purge), a
/// purge not done).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The entry (record header, tags, key and value) is larger than the largest object the
    /// region stores. Waiters of a fill were released to fetch for themselves.
    TooLarge {
        /// Bytes the entry needs.
        size: u64,
        /// The largest entry stored.
        limit: u64,
    },
    /// No room could be made (every entry of the shard is being filled), or the shard lock is
    /// unusable. Nothing was stored. Waiters of a fill were released to fetch for themselves.
    NoRoom,
    /// The shard's lock was not acquired within the lock bound (see
    /// [`Builder::lock_bound`](crate::Builder::lock_bound)): a process holding it is stopped or
    /// stuck. Nothing was done; a fill stays in flight until its lock timeout releases its
    /// waiters.
    LockTimeout {
        /// The bound waited, in milliseconds.
        bound_ms: u64,
    },
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::TooLarge { size, limit } => write!(
                f,
                "entry of {size} bytes is larger than the object limit {limit}; not cached"
            ),
            StoreError::NoRoom => f.write_str("no room could be made in the shard; not cached"),
            StoreError::LockTimeout { bound_ms } => write!(
                f,
                "the shard's lock was not acquired within {bound_ms} ms (a process holding it \
                 is stopped or stuck); nothing was done"
            ),
        }
    }
}

impl std::error::Error for StoreError {}
