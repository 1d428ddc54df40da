//! Snapshots of the proxy's cache: every servable response written to a file, and put back
//! as old as it was, at start (a warm restart: the first visitors get HITs, the origin sees no
//! stampede) or on demand (a rollback after a bad change, with freeze).
//!
//! # Writing
//!
//! The cache is listed shard by shard ([`peakcache::Cache::list`]): under each shard's read
//! lock the entries are only copied (keys) and cloned (the stored responses are `Arc`s); they
//! are encoded and written with the lock released, so visitors are never blocked by the disk.
//! The file is made under a name of its own beside the path (`O_CREAT | O_EXCL | O_NOFOLLOW`,
//! mode 0600), synced, renamed over the path, and the directory synced: the path always holds
//! a whole snapshot, the old one or the new. A file at the path that is not a proxy snapshot is
//! never replaced (a mistyped path does not destroy someone's file).
//!
//! # Reading
//!
//! The file is looked at before it is opened and opened without following a symbolic link,
//! then checked on the descriptor: a regular file, owned by this process's user or root, that
//! no other user may write (what it holds is served to every visitor). It is read twice: first
//! checked whole (magic, version, every record's length and checksum, the trailer's count), and
//! only then, if nothing is wrong, restored; a refused file changes nothing, so a rollback to a
//! bad file does not empty the cache first.
//!
//! # Format
//!
//! A header (magic, version, when it was written, the cluster's bus position), one record per
//! stored response or URL's Vary (key, age, windows, tags, the response's head and body), a
//! trailer (the count): see [`format`](mod@format)'s documentation. Ages count from when the snapshot was
//! written; restored, an entry is that much older plus the time since.

mod file;
pub mod format;

use crate::handler::Proxy;
use crate::stored::Cached;
use file::{check_replaceable, create_temp, io_error, open_checked, place};
use format::{Header, Reader, Record, RecordWriter, RESPONSE, VARY};
use peakcache_cluster::BusPosition;
use peakcache_http::Vary;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

pub use format::SNAPSHOT_VERSION;

/// Written in pieces of this size.
const BUFFER: usize = 1 << 20;

/// Why a snapshot could not be written or read. Reading, nothing was changed.
#[derive(Debug)]
pub enum SnapshotError {
    /// The proxy was started without `--snapshot`.
    NotConfigured,
    /// There is no file at the path.
    Missing(PathBuf),
    /// A system call failed.
    Io {
        /// What was done.
        op: &'static str,
        /// To which file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The file at the path may not be used: its kind, owner or mode.
    Refused {
        /// The file.
        path: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// The file is not a proxy snapshot.
    NotASnapshot(PathBuf),
    /// The file is a proxy snapshot of another format version.
    OtherVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
    /// The file is a proxy snapshot, truncated or damaged.
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::NotConfigured => {
                write!(f, "no snapshot file: start the proxy with --snapshot PATH")
            }
            SnapshotError::Missing(p) => write!(f, "{}: no snapshot there", p.display()),
            SnapshotError::Io { op, path, source } => {
                write!(f, "{}: {op} failed: {source}", path.display())
            }
            SnapshotError::Refused { path, reason } => {
                write!(f, "{}: refused: {reason}", path.display())
            }
            SnapshotError::NotASnapshot(p) => {
                write!(f, "{}: not a peakcache-proxy snapshot", p.display())
            }
            SnapshotError::OtherVersion { path, found } => write!(
                f,
                "{}: a snapshot of format version {found}; this proxy reads version \
                 {SNAPSHOT_VERSION}",
                path.display()
            ),
            SnapshotError::Damaged { path, reason } => {
                write!(f, "{}: damaged snapshot: {reason}", path.display())
            }
        }
    }
}

impl std::error::Error for SnapshotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SnapshotError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// What a snapshot written holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Stored responses written.
    pub responses: u64,
    /// URLs' Vary records written.
    pub varies: u64,
    /// The file's size.
    pub bytes: u64,
    /// How long writing took, fsync included.
    pub took: Duration,
}

/// What a restore put back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// Stored responses restored.
    pub responses: u64,
    /// URLs' Vary records restored.
    pub varies: u64,
    /// Records not restored: refused by the cache (larger than its object limit) or unreadable
    /// (a head of another layout; a record changed since it was checked).
    pub skipped: u64,
    /// How old the snapshot was.
    pub snapshot_age: Duration,
    /// The cluster and bus position it was written at, if in a cluster.
    pub position: Option<(String, BusPosition)>,
    /// How long reading and restoring took.
    pub took: Duration,
}

/// The proxy's snapshot counters, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct SnapshotStats {
    /// When the last snapshot was written, Unix seconds (0: never).
    pub(crate) last_written: AtomicU64,
    /// Its records.
    pub(crate) last_records: AtomicU64,
    /// Its size.
    pub(crate) last_bytes: AtomicU64,
    /// How long it took, in microseconds.
    pub(crate) last_micros: AtomicU64,
    /// Snapshots that could not be written.
    pub(crate) failures: AtomicU64,
    /// Snapshots restored (at start or on demand).
    pub(crate) restores: AtomicU64,
}

impl SnapshotStats {
    fn wrote(&self, w: &Written) {
        self.last_written.store(unix_seconds(), Ordering::Relaxed);
        self.last_records
            .store(w.responses + w.varies, Ordering::Relaxed);
        self.last_bytes.store(w.bytes, Ordering::Relaxed);
        self.last_micros
            .store(w.took.as_micros() as u64, Ordering::Relaxed);
    }

    /// The counters in the Prometheus text format.
    pub(crate) fn to_prometheus(&self) -> String {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "# HELP peakcache_snapshot_last_success_timestamp_seconds When the last snapshot \
             was written (0: never).\n\
             # TYPE peakcache_snapshot_last_success_timestamp_seconds gauge\n\
             peakcache_snapshot_last_success_timestamp_seconds {}\n\
             # HELP peakcache_snapshot_last_records Records in the last snapshot written.\n\
             # TYPE peakcache_snapshot_last_records gauge\n\
             peakcache_snapshot_last_records {}\n\
             # HELP peakcache_snapshot_last_bytes Size of the last snapshot written.\n\
             # TYPE peakcache_snapshot_last_bytes gauge\n\
             peakcache_snapshot_last_bytes {}\n\
             # HELP peakcache_snapshot_last_duration_seconds How long writing the last \
             snapshot took.\n\
             # TYPE peakcache_snapshot_last_duration_seconds gauge\n\
             peakcache_snapshot_last_duration_seconds {}\n\
             # HELP peakcache_snapshot_failures_total Snapshots that could not be written.\n\
             # TYPE peakcache_snapshot_failures_total counter\n\
             peakcache_snapshot_failures_total {}\n\
             # HELP peakcache_snapshot_restores_total Snapshots restored.\n\
             # TYPE peakcache_snapshot_restores_total counter\n\
             peakcache_snapshot_restores_total {}\n",
            get(&self.last_written),
            get(&self.last_records),
            get(&self.last_bytes),
            get(&self.last_micros) as f64 / 1e6,
            get(&self.failures),
            get(&self.restores),
        )
    }
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Proxy {
    /// Writes a snapshot of the cache to `path` (see the [module](self) documentation). Blocks
    /// for as long as it takes (call it off the async workers); one snapshot or restore runs at
    /// a time.
    pub fn snapshot(&self, path: &Path) -> Result<Written, SnapshotError> {
        let _one = self.snapshot_lock.lock();
        let result = write(self, path);
        match &result {
            Ok(w) => self.snapshot_stats.wrote(w),
            Err(_) => {
                self.snapshot_stats.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }

    /// Restores the snapshot at `path` into the cache; with `rollback`, first freezes this
    /// host's cache (only this host's, even in a cluster) and empties it, so that it serves
    /// exactly the snapshot's pages, with their ages, until thawed. The file is checked whole
    /// before anything changes: refused, the cache is as it was. Blocks for as long as it
    /// takes; one snapshot or restore runs at a time.
    pub fn restore(&self, path: &Path, rollback: bool) -> Result<Restored, SnapshotError> {
        let _one = self.snapshot_lock.lock();
        let started = Instant::now();
        let (file, len) = open_checked(path)?;
        let header = check(&file, len, path)?;
        if rollback {
            self.cache.freeze(true);
            self.cache.clear();
            self.vary.clear();
        }
        let mut restored = restore_records(self, &file, &header, len, path)?;
        restored.took = started.elapsed();
        self.snapshot_stats.restores.fetch_add(1, Ordering::Relaxed);
        Ok(restored)
    }
}

/// Writes the snapshot (`--snapshot`) every `every`, in the background, forever (until the
/// task is dropped): off the async workers, so visitors are never blocked by it. A failure is
/// reported and counted (`peakcache_snapshot_failures_total`); the file at the path stays the
/// last good snapshot.
pub async fn write_every(proxy: Arc<Proxy>, every: Duration) {
    let Some(path) = proxy.config.snapshot.clone() else {
        return;
    };
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let (proxy, path) = (proxy.clone(), path.clone());
        let written = tokio::task::spawn_blocking(move || proxy.snapshot(&path)).await;
        if let Ok(Err(e)) = written {
            tracing::error!("snapshot not written: {e}");
        }
    }
}

/// Writes the snapshot beside `path`, syncs it, and puts it at `path`.
fn write(proxy: &Proxy, path: &Path) -> Result<Written, SnapshotError> {
    let started = Instant::now();
    check_replaceable(path)?;
    let temp = create_temp(path)?;
    let at = temp.temp_path().to_path_buf();
    let mut out = BufWriter::with_capacity(BUFFER, &temp.file);
    let (responses, varies) = write_to(&mut out, proxy).map_err(io_error("write", &at))?;
    let file = out
        .into_inner()
        .map_err(|e| io_error("write", &at)(e.into_error()))?;
    file.sync_all().map_err(io_error("fsync", &at))?;
    let bytes = file.metadata().map_err(io_error("fstat", &at))?.len();
    place(temp, path)?;
    Ok(Written {
        responses,
        varies,
        bytes,
        took: started.elapsed(),
    })
}

/// Writes header, records and trailer; returns the responses and Vary records written.
fn write_to(out: &mut impl Write, proxy: &Proxy) -> io::Result<(u64, u64)> {
    // The position first: the entries listed after it have seen at least its purges.
    let position = proxy.bus_position();
    // Both listings begin now, the instant their ages count from.
    let (responses, varies) = (proxy.cache.list(), proxy.vary.list());
    out.write_all(&format::header(SystemTime::now(), position.as_ref()))?;
    let mut records = RecordWriter::default();
    let mut counts = (0u64, 0u64);
    // Shard by shard: each shard's lock is held while its entries are copied, not while they
    // are written.
    for e in responses {
        records.response(out, &e)?;
        counts.0 += 1;
    }
    for e in varies {
        records.vary(out, &e)?;
        counts.1 += 1;
    }
    out.write_all(&format::trailer(counts.0 + counts.1))?;
    out.flush()?;
    Ok(counts)
}

/// Reads the whole file once, checking everything a restore relies on, and returns its header.
fn check(file: &File, len: u64, path: &Path) -> Result<Header, SnapshotError> {
    let mut r = Reader::new(file, len, path)?;
    let header = r.header()?;
    let mut records = 0;
    while r.check_record(records)? {
        records += 1;
    }
    r.trailer(records)?;
    Ok(header)
}

/// Reads the records again and stores each, as old as it was then plus the time since.
fn restore_records(
    proxy: &Proxy,
    file: &File,
    header: &Header,
    len: u64,
    path: &Path,
) -> Result<Restored, SnapshotError> {
    let since = SystemTime::now()
        .duration_since(header.written_at)
        .unwrap_or_default();
    let mut r = Reader::new(file, len, path)?;
    r.header()?;
    let mut restored = Restored {
        responses: 0,
        varies: 0,
        skipped: 0,
        snapshot_age: since,
        position: header.position.clone(),
        took: Duration::ZERO,
    };
    let mut scratch = Vec::new();
    for n in 0.. {
        let record = match r.record(n, &mut scratch) {
            Ok(Some(record)) => record,
            Ok(None) => break,
            // Changed since it was checked (written over in place): what was restored stays.
            Err(_) => {
                restored.skipped += 1;
                break;
            }
        };
        match restore_one(proxy, record, &scratch, since) {
            Some(RESPONSE) => restored.responses += 1,
            Some(_) => restored.varies += 1,
            None => restored.skipped += 1,
        }
    }
    Ok(restored)
}

/// Stores one record (its fields in `scratch`); returns its kind, or `None` if it was not
/// stored.
fn restore_one(proxy: &Proxy, r: Record, scratch: &[u8], since: Duration) -> Option<u8> {
    let age = r.age.saturating_add(since);
    let key = &scratch[r.key];
    let tags: Vec<&[u8]> = r.tags.into_iter().map(|t| &scratch[t]).collect();
    let payload = &scratch[r.payload];
    match r.kind {
        RESPONSE => {
            let cached = Cached::from_parts(payload, r.body)?;
            proxy
                .cache
                .restore(key, Arc::new(cached), r.freshness, age, &tags)
                .ok()?;
        }
        VARY => {
            let vary = Vary::from_names(
                payload
                    .split(|&b| b == b',')
                    .map(<[u8]>::trim_ascii)
                    .filter(|n| !n.is_empty())
                    .map(http::HeaderName::from_bytes)
                    .collect::<Result<Vec<_>, _>>()
                    .ok()?,
            );
            proxy
                .vary
                .restore(key, Arc::new(vary), r.freshness, age, &tags)
                .ok()?;
        }
        _ => return None,
    }
    Some(r.kind)
}
