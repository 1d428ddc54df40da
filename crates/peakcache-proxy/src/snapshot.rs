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
//! ```text
//! file    = header | record* | trailer
//! header  = "PKPXSNAP" | version u32 | written_at u64 (Unix time, ns)
//!         | cluster name: field | bus position: field | crc32 u32 (of the header after the magic)
//! field   = length u32 | bytes
//! record  = length u64 (of what follows, its crc included) | kind u8 | age_ns u64
//!         | ttl_ms u32 | swr_ms u32 | sie_ms u32 | key: field | ntags u32 | tag: field *
//!         | payload | crc32 u32 (of the record after its length)
//! payload = kind 1, a response: head: field (status, header fields, HTTP timing facts, Vary
//!           names and key, as `Cached::encode_head` writes them) | body (the rest)
//!         | kind 2, the Vary of a URL: field names, comma-separated: field
//! trailer = "PKPXEND\0" | records u64 | crc32 u32 (of the 16 bytes before)
//! ```
//!
//! Integers are little-endian. The age is the entry's at the time of writing; restored, it is
//! that plus the time since (`written_at`). The cluster name and bus position are empty outside
//! a cluster; in one they say which purges the entries have seen, so that a restarted host
//! applies the ones published since (see [`crate::Proxy::try_new`]).

use crate::handler::Proxy;
use crate::stored::Cached;
use bytes::Bytes;
use peakcache::{Freshness, Listed};
use peakcache_cluster::BusPosition;
use peakcache_http::Vary;
use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The first bytes of a proxy snapshot.
const MAGIC: &[u8; 8] = b"PKPXSNAP";
/// The first bytes of its trailer.
const END: &[u8; 8] = b"PKPXEND\0";
/// The snapshot format this build writes and reads; bumped when the format changes, or the
/// layout of the stored head (`Cached::encode_head`).
pub const SNAPSHOT_VERSION: u32 = 1;
/// The trailer's length: magic, count, checksum.
const TRAILER: u64 = 8 + 8 + 4;
/// A record's fixed part after its length: kind, age, three windows.
const FIXED: usize = 1 + 8 + 4 * 3;
/// Record kinds.
const RESPONSE: u8 = 1;
const VARY: u8 = 2;
/// Buffered I/O in pieces of this size.
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

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
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
pub struct SnapshotStats {
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
    pub fn to_prometheus(&self) -> String {
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

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
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
            eprintln!("peakcache-proxy: snapshot not written: {e}");
        }
    }
}

/// Writes the snapshot beside `path`, syncs it, and puts it at `path`.
fn write(proxy: &Proxy, path: &Path) -> Result<Written, SnapshotError> {
    let started = Instant::now();
    check_replaceable(path)?;
    let temp = TempFile::create(path)?;
    let mut out = BufWriter::with_capacity(BUFFER, &temp.file);
    // The position before the listing: the entries have seen at least the purges up to it.
    let position = proxy.bus_position();
    let (responses, varies) =
        write_to(&mut out, proxy, position.as_ref()).map_err(io_error("write", &temp.path))?;
    let file = out
        .into_inner()
        .map_err(|e| io_error("write", &temp.path)(e.into_error()))?;
    file.sync_all().map_err(io_error("fsync", &temp.path))?;
    let bytes = file
        .metadata()
        .map_err(io_error("fstat", &temp.path))?
        .len();
    temp.rename_to(path)?;
    Ok(Written {
        responses,
        varies,
        bytes,
        took: started.elapsed(),
    })
}

/// Refuses to replace what is at `path` unless it is a regular file holding a proxy snapshot
/// (of any version, whole or not) or nothing.
fn check_replaceable(path: &Path) -> Result<(), SnapshotError> {
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("stat", path)(e)),
    };
    if !md.file_type().is_file() {
        return Err(SnapshotError::Refused {
            path: path.to_path_buf(),
            reason: format!("a {} is there, not a snapshot: not replaced", kind(&md)),
        });
    }
    if md.len() == 0 {
        return Ok(());
    }
    let mut magic = [0u8; 8];
    let read = File::open(path).and_then(|mut f| f.read_exact(&mut magic));
    if read.is_err() || &magic != MAGIC {
        return Err(SnapshotError::Refused {
            path: path.to_path_buf(),
            reason: "the file there is not a peakcache-proxy snapshot: not replaced (remove it, \
                     or give another path)"
                .into(),
        });
    }
    Ok(())
}

/// Writes header, records and trailer; returns the responses and Vary records written.
fn write_to(
    out: &mut impl Write,
    proxy: &Proxy,
    position: Option<&(String, BusPosition)>,
) -> io::Result<(u64, u64)> {
    out.write_all(&header(SystemTime::now(), position))?;
    let mut record = Vec::with_capacity(64 << 10);
    let mut responses = 0u64;
    // Shard by shard: each shard's lock is held while its entries are copied, not while they
    // are written.
    for e in proxy.cache.list() {
        encode_response(&mut record, &e);
        out.write_all(&record)?;
        responses += 1;
    }
    let mut varies = 0u64;
    for e in proxy.vary.list() {
        encode_vary(&mut record, &e);
        out.write_all(&record)?;
        varies += 1;
    }
    out.write_all(&trailer(responses + varies))?;
    out.flush()?;
    Ok((responses, varies))
}

fn put_u32(out: &mut Vec<u8>, x: u32) {
    out.extend_from_slice(&x.to_le_bytes());
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys, tags and heads are far below 4 GiB: a request line or header field that long is
    // refused long before it reaches the cache.
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

fn header(written_at: SystemTime, position: Option<&(String, BusPosition)>) -> Vec<u8> {
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(MAGIC);
    put_u32(&mut h, SNAPSHOT_VERSION);
    h.extend_from_slice(&unix_nanos(written_at).to_le_bytes());
    let (name, pos) = position.map_or((Vec::new(), Vec::new()), |(n, p)| {
        (n.as_bytes().to_vec(), p.to_bytes())
    });
    put_field(&mut h, &name);
    put_field(&mut h, &pos);
    let crc = crc32fast::hash(&h[MAGIC.len()..]);
    put_u32(&mut h, crc);
    h
}

fn trailer(records: u64) -> Vec<u8> {
    let mut t = Vec::with_capacity(TRAILER as usize);
    t.extend_from_slice(END);
    t.extend_from_slice(&records.to_le_bytes());
    let crc = crc32fast::hash(&t);
    put_u32(&mut t, crc);
    t
}

/// Starts a record of `kind` in `out` (emptied): length (set by `end_record`), fixed part,
/// key and tags.
fn begin_record(out: &mut Vec<u8>, kind: u8, e: &Listed<impl Clone>) {
    out.clear();
    out.extend_from_slice(&0u64.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&(e.age().as_nanos() as u64).to_le_bytes());
    let f = e.freshness();
    for w in [f.ttl, f.swr, f.sie] {
        // The cache keeps windows to the millisecond, up to u32::MAX of them.
        put_u32(out, u32::try_from(w.as_millis()).unwrap_or(u32::MAX));
    }
    put_field(out, e.key());
    put_u32(out, e.tags().len() as u32);
    for t in e.tags() {
        put_field(out, t);
    }
}

/// Ends the record in `out`: its checksum and length.
fn end_record(out: &mut Vec<u8>) {
    let crc = crc32fast::hash(&out[8..]);
    put_u32(out, crc);
    let len = (out.len() - 8) as u64;
    out[..8].copy_from_slice(&len.to_le_bytes());
}

fn encode_response(out: &mut Vec<u8>, e: &Listed<Arc<Cached>>) {
    begin_record(out, RESPONSE, e);
    put_field(out, &e.value().encode_head());
    out.extend_from_slice(&e.value().body);
    end_record(out);
}

fn encode_vary(out: &mut Vec<u8>, e: &Listed<Arc<Vary>>) {
    begin_record(out, VARY, e);
    put_field(out, e.value().to_header_value().as_bytes());
    end_record(out);
}

/// A file being written under a temporary name beside its final path; removed unless renamed.
struct TempFile {
    file: File,
    path: PathBuf,
    placed: bool,
}

impl TempFile {
    /// A new file, made exclusively (nothing followed or reused) with mode 0600.
    fn create(path: &Path) -> Result<TempFile, SnapshotError> {
        static MADE: AtomicU64 = AtomicU64::new(0);
        let mut name = path.as_os_str().to_owned();
        name.push(format!(
            ".tmp.{}.{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        let temp = PathBuf::from(name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(&temp)
            .map_err(io_error("create", &temp))?;
        Ok(TempFile {
            file,
            path: temp,
            placed: false,
        })
    }

    /// Puts the file at `path` (replacing what is there) and syncs the directory, so that the
    /// new name survives a crash too.
    fn rename_to(mut self, path: &Path) -> Result<(), SnapshotError> {
        std::fs::rename(&self.path, path).map_err(io_error("rename", path))?;
        self.placed = true;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("fsync", dir))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What a file is, in words.
fn kind(md: &Metadata) -> &'static str {
    let t = md.file_type();
    if t.is_file() {
        "regular file"
    } else if t.is_symlink() {
        "symbolic link"
    } else if t.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// This process's effective user.
fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Whether a snapshot found at `path` may be restored: a regular file, owned by this process's
/// user or root, that no other user may write.
fn check_trust(path: &Path, md: &Metadata) -> Result<(), SnapshotError> {
    let refused = |reason: String| SnapshotError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    if !md.file_type().is_file() {
        return Err(refused(format!(
            "a snapshot must be a regular file, this is a {}",
            kind(md)
        )));
    }
    if md.uid() != euid() && md.uid() != 0 {
        return Err(refused(format!(
            "owned by uid {}: a snapshot must be owned by this process's user (uid {}) or \
             root, since its pages would be served to every visitor",
            md.uid(),
            euid()
        )));
    }
    if md.mode() & 0o022 != 0 {
        return Err(refused(format!(
            "mode {:o}: other users may write it, and its pages would be served to every \
             visitor",
            md.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Opens the snapshot at `path` for reading after checking what the path names and what was
/// opened; returns it and its length.
fn open_checked(path: &Path) -> Result<(File, u64), SnapshotError> {
    match std::fs::symlink_metadata(path) {
        Ok(md) => check_trust(path, &md)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(SnapshotError::Missing(path.to_path_buf()))
        }
        Err(e) => return Err(io_error("stat", path)(e)),
    }
    let file = OpenOptions::new()
        .read(true)
        // A symbolic link put there since is not followed, a FIFO does not block.
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_error("open", path))?;
    let md = file.metadata().map_err(io_error("fstat", path))?;
    check_trust(path, &md)?;
    Ok((file, md.len()))
}

/// A snapshot's header, read.
struct Header {
    written_at: SystemTime,
    position: Option<(String, BusPosition)>,
}

/// Reads a file in order, knowing how much is left; every read past the end is an error.
struct Cursor<'a> {
    inner: BufReader<&'a File>,
    left: u64,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    /// Reads `file` (`len` bytes long) from its start.
    fn new(mut file: &'a File, len: u64, path: &'a Path) -> Result<Self, SnapshotError> {
        file.seek(SeekFrom::Start(0))
            .map_err(io_error("seek", path))?;
        Ok(Cursor {
            inner: BufReader::with_capacity(BUFFER, file),
            left: len,
            path,
        })
    }

    fn damaged(&self, reason: String) -> SnapshotError {
        SnapshotError::Damaged {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    /// Fills `buf` from the file; a file shorter than that is truncated.
    fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        if (buf.len() as u64) > self.left {
            return Err(self.damaged(format!(
                "truncated: {} more bytes expected, {} left",
                buf.len(),
                self.left
            )));
        }
        self.inner
            .read_exact(buf)
            .map_err(io_error("read", self.path))?;
        self.left -= buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut a = [0u8; N];
        self.read_exact(&mut a)?;
        Ok(a)
    }
}

/// Reads the header: the magic, the version, and the header's checksum.
fn read_header(c: &mut Cursor<'_>) -> Result<Header, SnapshotError> {
    let magic: [u8; 8] = c
        .array()
        .map_err(|_| SnapshotError::NotASnapshot(c.path.to_path_buf()))?;
    if &magic != MAGIC {
        return Err(SnapshotError::NotASnapshot(c.path.to_path_buf()));
    }
    let mut h = Vec::with_capacity(64);
    let version: [u8; 4] = c.array()?;
    h.extend_from_slice(&version);
    let version = u32::from_le_bytes(version);
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotError::OtherVersion {
            path: c.path.to_path_buf(),
            found: version,
        });
    }
    let written_at: [u8; 8] = c.array()?;
    h.extend_from_slice(&written_at);
    let mut fields = [Vec::new(), Vec::new()];
    for field in &mut fields {
        let n: [u8; 4] = c.array()?;
        h.extend_from_slice(&n);
        let n = u32::from_le_bytes(n) as usize;
        // A bus position is at most 48 bytes and a cluster name short: anything long is damage.
        if n > 1024 {
            return Err(c.damaged(format!("a header field of {n} bytes")));
        }
        field.resize(n, 0);
        c.read_exact(field)?;
        h.extend_from_slice(field);
    }
    let crc = u32::from_le_bytes(c.array()?);
    if crc != crc32fast::hash(&h) {
        return Err(c.damaged("the header fails its checksum".into()));
    }
    let [name, pos] = fields;
    let position = match (String::from_utf8(name), BusPosition::from_bytes(&pos)) {
        (Ok(name), Some(pos)) if !name.is_empty() => Some((name, pos)),
        _ => None,
    };
    Ok(Header {
        written_at: SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::from_le_bytes(written_at)),
        position,
    })
}

/// Reads record number `n` into `buf` (everything after its length, less its checksum) and
/// checks its checksum; `None` at the trailer.
fn next_record(c: &mut Cursor<'_>, buf: &mut Vec<u8>, n: u64) -> Result<Option<()>, SnapshotError> {
    if c.left <= TRAILER {
        return Ok(None);
    }
    let len = u64::from_le_bytes(c.array()?);
    if len < (FIXED + 4) as u64 || len > c.left.saturating_sub(TRAILER) {
        return Err(c.damaged(format!(
            "truncated (or a length damaged): record {n} needs {len} bytes, {} are left \
             before the trailer",
            c.left.saturating_sub(TRAILER)
        )));
    }
    buf.clear();
    buf.resize(len as usize, 0);
    c.read_exact(buf)?;
    let (body, crc) = buf.split_at(buf.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(c.damaged(format!("record {n} fails its checksum")));
    }
    buf.truncate(buf.len() - 4);
    Ok(Some(()))
}

/// Reads and checks the trailer: the file ends there, with the count of records read.
fn read_trailer(c: &mut Cursor<'_>, records: u64) -> Result<(), SnapshotError> {
    if c.left != TRAILER {
        return Err(c.damaged(format!(
            "truncated: it ends {} bytes into a record, without its trailer",
            c.left
        )));
    }
    let t: [u8; TRAILER as usize] = c.array()?;
    let (body, crc) = t.split_at(16);
    if &body[..8] != END || crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4"))
    {
        return Err(c.damaged("truncated: it ends without its trailer".into()));
    }
    let count = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
    if count != records {
        return Err(c.damaged(format!(
            "the trailer counts {count} records, {records} were found"
        )));
    }
    Ok(())
}

/// Reads the whole file once, checking everything a restore relies on, and returns its header.
fn check(file: &File, len: u64, path: &Path) -> Result<Header, SnapshotError> {
    let mut c = Cursor::new(file, len, path)?;
    let header = read_header(&mut c)?;
    let mut buf = Vec::new();
    let mut records = 0;
    while next_record(&mut c, &mut buf, records)?.is_some() {
        records += 1;
    }
    read_trailer(&mut c, records)?;
    Ok(header)
}

/// One record decoded.
struct Record<'a> {
    kind: u8,
    age: Duration,
    freshness: Freshness,
    key: &'a [u8],
    tags: Vec<&'a [u8]>,
    payload: &'a [u8],
}

/// Splits a record (checksum already checked and removed); `None` if its fields do not add up.
fn decode(buf: &[u8]) -> Option<Record<'_>> {
    let mut r = Fields(buf);
    let kind = r.take(1)?[0];
    let age = Duration::from_nanos(u64::from_le_bytes(r.array()?));
    let [ttl, swr, sie] = [(); 3].map(|()| {
        r.array()
            .map(|a| Duration::from_millis(u32::from_le_bytes(a).into()))
    });
    let freshness = Freshness {
        ttl: ttl?,
        swr: swr?,
        sie: sie?,
    };
    let key = r.field()?;
    let ntags = u32::from_le_bytes(r.array()?) as usize;
    // Each tag takes 4 bytes at least: a count beyond that is damage, not an allocation.
    if ntags > r.0.len() / 4 {
        return None;
    }
    let tags = (0..ntags).map(|_| r.field()).collect::<Option<Vec<_>>>()?;
    Some(Record {
        kind,
        age,
        freshness,
        key,
        tags,
        payload: r.0,
    })
}

/// Reads fields from a record with bounds checks: `None` past its end.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn field(&mut self) -> Option<&'a [u8]> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        self.take(n)
    }
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
    let mut c = Cursor::new(file, len, path)?;
    read_header(&mut c)?;
    let mut restored = Restored {
        responses: 0,
        varies: 0,
        skipped: 0,
        snapshot_age: since,
        position: header.position.clone(),
        took: Duration::ZERO,
    };
    let mut buf = Vec::new();
    for n in 0.. {
        match next_record(&mut c, &mut buf, n) {
            Ok(Some(())) => {}
            Ok(None) => break,
            // Changed since it was checked (written over in place): what was restored stays.
            Err(_) => {
                restored.skipped += 1;
                break;
            }
        }
        let stored = decode(&buf).and_then(|r| restore_one(proxy, &r, since));
        match stored {
            Some(RESPONSE) => restored.responses += 1,
            Some(_) => restored.varies += 1,
            None => restored.skipped += 1,
        }
    }
    Ok(restored)
}

/// Stores one record; returns its kind, or `None` if it was not stored.
fn restore_one(proxy: &Proxy, r: &Record<'_>, since: Duration) -> Option<u8> {
    let age = r.age.saturating_add(since);
    match r.kind {
        RESPONSE => {
            let mut p = Fields(r.payload);
            let head = p.field()?;
            let cached = Cached::from_parts(head, Bytes::copy_from_slice(p.0))?;
            proxy
                .cache
                .restore(r.key, Arc::new(cached), r.freshness, age, &r.tags)
                .ok()?;
        }
        VARY => {
            let names = Fields(r.payload).field()?;
            let vary = Vary::from_names(
                names
                    .split(|&b| b == b',')
                    .map(<[u8]>::trim_ascii)
                    .filter(|n| !n.is_empty())
                    .map(http::HeaderName::from_bytes)
                    .collect::<Result<Vec<_>, _>>()
                    .ok()?,
            );
            proxy
                .vary
                .restore(r.key, Arc::new(vary), r.freshness, age, &r.tags)
                .ok()?;
        }
        _ => return None,
    }
    Some(r.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_reads_back_with_its_position_and_refuses_any_damage() {
        let pos = BusPosition::from_bytes(b"\x07\0\0\0\0\0\0\x001700000000000-3").unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = header(at, Some(&("shop".to_string(), pos.clone())));
        let dir = std::env::temp_dir().join(format!("pkpx-header-{}", std::process::id()));
        std::fs::write(&dir, &h).unwrap();
        let file = File::open(&dir).unwrap();
        let mut c = Cursor::new(&file, h.len() as u64, &dir).unwrap();
        let back = read_header(&mut c).unwrap();
        assert_eq!(back.written_at, at);
        assert_eq!(back.position, Some(("shop".to_string(), pos)));
        assert_eq!(c.left, 0, "the header read whole");
        for at in 8..h.len() {
            let mut bad = h.clone();
            bad[at] ^= 0x40;
            std::fs::write(&dir, &bad).unwrap();
            let file = File::open(&dir).unwrap();
            let mut c = Cursor::new(&file, bad.len() as u64, &dir).unwrap();
            assert!(read_header(&mut c).is_err(), "byte {at}");
        }
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn a_record_whose_counts_overrun_it_is_not_decoded() {
        let mut r = vec![RESPONSE];
        r.extend_from_slice(&[0; 8 + 12]);
        r.extend_from_slice(&3u32.to_le_bytes());
        r.extend_from_slice(b"key");
        r.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&r).is_none(), "four billion tags");
        r.truncate(r.len() - 4);
        r.extend_from_slice(&1u32.to_le_bytes());
        r.extend_from_slice(&9u32.to_le_bytes());
        r.extend_from_slice(b"tag");
        assert!(decode(&r).is_none(), "a tag longer than the record");
        let mut ok = r[..r.len() - 7].to_vec();
        ok.extend_from_slice(&3u32.to_le_bytes());
        ok.extend_from_slice(b"tag");
        ok.extend_from_slice(b"payload");
        let d = decode(&ok).unwrap();
        assert_eq!(
            (d.key, d.tags, d.payload),
            (&b"key"[..], vec![&b"tag"[..]], &b"payload"[..])
        );
    }
}
