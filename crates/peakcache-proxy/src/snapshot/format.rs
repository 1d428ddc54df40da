//! The snapshot file's format: written record by record, read back with every length checked
//! against what is left of the file and every record against its checksum.
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
//! Integers are little-endian; checksums are CRC-32 (ISO-HDLC, as zlib's). A record's age
//! counts from `written_at`. The cluster name and bus position are empty outside a cluster.

use super::file::io_error;
use super::SnapshotError;
use crate::stored::Cached;
use bytes::Bytes;
use crc32fast::Hasher;
use peakcache::{Freshness, Listed};
use peakcache_cluster::BusPosition;
use peakcache_http::Vary;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The first bytes of a proxy snapshot.
pub(super) const MAGIC: &[u8; 8] = b"PKPXSNAP";
/// The first bytes of its trailer.
const END: &[u8; 8] = b"PKPXEND\0";
/// The format this build writes and reads; bumped when the format changes, or the layout of
/// the stored head (`Cached::encode_head`).
pub const SNAPSHOT_VERSION: u32 = 1;
/// The trailer's length: magic, count, checksum.
const TRAILER: u64 = 8 + 8 + 4;
/// A record's fixed part after its length: kind, age, three windows.
const FIXED: usize = 1 + 8 + 4 * 3;
/// A response record.
pub(super) const RESPONSE: u8 = 1;
/// A URL's Vary record.
pub(super) const VARY: u8 = 2;
/// Buffered I/O in pieces of this size.
const BUFFER: usize = 1 << 20;
/// The longest header field: a bus position is at most 48 bytes, a cluster name short.
const MAX_HEADER_FIELD: usize = 1024;

fn put_u32(out: &mut Vec<u8>, x: u32) {
    out.extend_from_slice(&x.to_le_bytes());
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Keys, tags and heads are far below 4 GiB: a request line or header field that long is
    // refused long before it reaches the cache.
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The header of a snapshot written at `written_at`, at `position` on a cluster's bus.
pub(super) fn header(written_at: SystemTime, position: Option<&(String, BusPosition)>) -> Vec<u8> {
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

/// The trailer of a snapshot of `records` records.
pub(super) fn trailer(records: u64) -> Vec<u8> {
    let mut t = Vec::with_capacity(TRAILER as usize);
    t.extend_from_slice(END);
    t.extend_from_slice(&records.to_le_bytes());
    let crc = crc32fast::hash(&t);
    put_u32(&mut t, crc);
    t
}

/// Writes records. The part before a response's body is encoded in a buffer kept from one
/// record to the next; the body is written from where it is stored, never copied.
#[derive(Default)]
pub(super) struct RecordWriter {
    prefix: Vec<u8>,
}

impl RecordWriter {
    /// Writes a stored response.
    pub(super) fn response(
        &mut self,
        out: &mut impl Write,
        e: &Listed<Arc<Cached>>,
    ) -> io::Result<()> {
        self.begin(RESPONSE, e);
        put_field(&mut self.prefix, &e.value().encode_head());
        self.finish(out, &e.value().body)
    }

    /// Writes the Vary of a URL.
    pub(super) fn vary(&mut self, out: &mut impl Write, e: &Listed<Arc<Vary>>) -> io::Result<()> {
        self.begin(VARY, e);
        put_field(&mut self.prefix, e.value().to_header_value().as_bytes());
        self.finish(out, &[])
    }

    /// Starts a record of `kind`: its length to come, fixed part, key and tags.
    fn begin(&mut self, kind: u8, e: &Listed<impl Clone>) {
        let p = &mut self.prefix;
        p.clear();
        p.extend_from_slice(&0u64.to_le_bytes());
        p.push(kind);
        p.extend_from_slice(
            &u64::try_from(e.age().as_nanos())
                .unwrap_or(u64::MAX)
                .to_le_bytes(),
        );
        let f = e.freshness();
        for w in [f.ttl, f.swr, f.sie] {
            // The cache keeps windows to the millisecond, up to u32::MAX of them.
            put_u32(p, u32::try_from(w.as_millis()).unwrap_or(u32::MAX));
        }
        put_field(p, e.key());
        put_u32(p, e.tags().len() as u32);
        for t in e.tags() {
            put_field(p, t);
        }
    }

    /// Writes the record begun, with `body` after it, then its checksum.
    fn finish(&mut self, out: &mut impl Write, body: &[u8]) -> io::Result<()> {
        let len = (self.prefix.len() - 8 + body.len() + 4) as u64;
        self.prefix[..8].copy_from_slice(&len.to_le_bytes());
        let mut crc = Hasher::new();
        crc.update(&self.prefix[8..]);
        crc.update(body);
        out.write_all(&self.prefix)?;
        out.write_all(body)?;
        out.write_all(&crc.finalize().to_le_bytes())
    }
}

/// A snapshot's header, read.
pub(super) struct Header {
    /// When it was written.
    pub(super) written_at: SystemTime,
    /// The cluster and bus position it was written at.
    pub(super) position: Option<(String, BusPosition)>,
}

/// One record, read: its fields in a scratch buffer (`key`, `tags` and `payload` are ranges of
/// it), a response's body in an allocation of its own.
pub(super) struct Record {
    pub(super) kind: u8,
    pub(super) age: Duration,
    pub(super) freshness: Freshness,
    pub(super) key: Range<usize>,
    pub(super) tags: Vec<Range<usize>>,
    /// A response's head, or a Vary's field names.
    pub(super) payload: Range<usize>,
    /// A response's body.
    pub(super) body: Bytes,
}

/// Reads a snapshot in order, knowing how much of it is left: a length that goes past the end
/// is damage, never an allocation or a read past it.
pub(super) struct Reader<'a> {
    inner: BufReader<&'a File>,
    left: u64,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    /// Reads `file` (`len` bytes long) from its start.
    pub(super) fn new(mut file: &'a File, len: u64, path: &'a Path) -> Result<Self, SnapshotError> {
        file.seek(SeekFrom::Start(0))
            .map_err(io_error("seek", path))?;
        Ok(Reader {
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

    /// Takes `n` bytes off what is left, or says the file is truncated.
    fn claim(&mut self, n: u64) -> Result<(), SnapshotError> {
        if n > self.left {
            return Err(self.damaged(format!(
                "truncated: {n} more bytes expected, {} left",
                self.left
            )));
        }
        self.left -= n;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        self.claim(N as u64)?;
        let mut a = [0u8; N];
        self.inner
            .read_exact(&mut a)
            .map_err(io_error("read", self.path))?;
        Ok(a)
    }

    /// Appends `n` bytes to `out` (no zero-filling first).
    fn append(&mut self, n: u64, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        self.claim(n)?;
        out.reserve_exact(n as usize);
        let read = (&mut self.inner)
            .take(n)
            .read_to_end(out)
            .map_err(io_error("read", self.path))?;
        if read as u64 != n {
            return Err(self.damaged("truncated while it was read".into()));
        }
        Ok(())
    }

    /// Reads the header: the magic, the version, the fields and the header's checksum.
    pub(super) fn header(&mut self) -> Result<Header, SnapshotError> {
        let not_a_snapshot = || SnapshotError::NotASnapshot(self.path.to_path_buf());
        let magic: [u8; 8] = self.array().map_err(|_| not_a_snapshot())?;
        if &magic != MAGIC {
            return Err(not_a_snapshot());
        }
        let mut h = Vec::with_capacity(64);
        let version: [u8; 4] = self.array()?;
        h.extend_from_slice(&version);
        let version = u32::from_le_bytes(version);
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::OtherVersion {
                path: self.path.to_path_buf(),
                found: version,
            });
        }
        let written_at: [u8; 8] = self.array()?;
        h.extend_from_slice(&written_at);
        let mut fields = [0..0, 0..0];
        for field in &mut fields {
            let n: [u8; 4] = self.array()?;
            h.extend_from_slice(&n);
            let n = u32::from_le_bytes(n) as usize;
            if n > MAX_HEADER_FIELD {
                return Err(self.damaged(format!("a header field of {n} bytes")));
            }
            let at = h.len();
            self.append(n as u64, &mut h)?;
            *field = at..h.len();
        }
        let crc = u32::from_le_bytes(self.array()?);
        if crc != crc32fast::hash(&h) {
            return Err(self.damaged("the header fails its checksum".into()));
        }
        let [name, pos] = fields;
        let position = match (
            std::str::from_utf8(&h[name]),
            BusPosition::from_bytes(&h[pos]),
        ) {
            (Ok(name), Some(pos)) if !name.is_empty() => Some((name.to_string(), pos)),
            _ => None,
        };
        Ok(Header {
            written_at: SystemTime::UNIX_EPOCH
                + Duration::from_nanos(u64::from_le_bytes(written_at)),
            position,
        })
    }

    /// Reads the length of record `n`, checked against what is left before the trailer;
    /// `None` at the trailer.
    fn record_len(&mut self, n: u64) -> Result<Option<u64>, SnapshotError> {
        if self.left <= TRAILER {
            return Ok(None);
        }
        let len = u64::from_le_bytes(self.array()?);
        let room = self.left.saturating_sub(TRAILER);
        if len < (FIXED + 4) as u64 || len > room {
            return Err(self.damaged(format!(
                "truncated (or a length damaged): record {n} needs {len} bytes, {room} are \
                 left before the trailer"
            )));
        }
        Ok(Some(len))
    }

    /// Checks record `n` against its checksum without keeping it; `false` at the trailer.
    pub(super) fn check_record(&mut self, n: u64) -> Result<bool, SnapshotError> {
        let Some(len) = self.record_len(n)? else {
            return Ok(false);
        };
        self.claim(len - 4)?;
        let mut crc = Hasher::new();
        let mut rest = (len - 4) as usize;
        while rest > 0 {
            let buf = self.inner.fill_buf().map_err(io_error("read", self.path))?;
            if buf.is_empty() {
                return Err(self.damaged("truncated while it was read".into()));
            }
            let take = buf.len().min(rest);
            crc.update(&buf[..take]);
            self.inner.consume(take);
            rest -= take;
        }
        if crc.finalize() != u32::from_le_bytes(self.array()?) {
            return Err(self.damaged(format!("record {n} fails its checksum")));
        }
        Ok(true)
    }

    /// Reads record `n`, its fields into `scratch` (emptied first); `None` at the trailer.
    pub(super) fn record(
        &mut self,
        n: u64,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<Record>, SnapshotError> {
        let Some(len) = self.record_len(n)? else {
            return Ok(None);
        };
        scratch.clear();
        let mut r = RecordReader {
            reader: self,
            left: len - 4,
            crc: Hasher::new(),
            scratch,
        };
        let fixed = r.bytes(FIXED as u64)?;
        let fixed = &r.scratch[fixed];
        let u32_at = |at: usize| u32::from_le_bytes(fixed[at..at + 4].try_into().expect("4"));
        let kind = fixed[0];
        let age = Duration::from_nanos(u64::from_le_bytes(fixed[1..9].try_into().expect("8")));
        let ms = |at| Duration::from_millis(u32_at(at).into());
        let freshness = Freshness {
            ttl: ms(9),
            swr: ms(13),
            sie: ms(17),
        };
        let key = r.field()?;
        let ntags = r.u32()?;
        let mut tags = Vec::new();
        for _ in 0..ntags {
            tags.push(r.field()?);
        }
        let payload = r.field()?;
        let body = if kind == RESPONSE {
            let mut body = Vec::new();
            r.append(r.left, &mut body)?;
            Bytes::from(body)
        } else {
            Bytes::new()
        };
        let (left, crc) = (r.left, r.crc.finalize());
        if left != 0 || crc != u32::from_le_bytes(self.array()?) {
            return Err(self.damaged(format!("record {n} fails its checksum")));
        }
        Ok(Some(Record {
            kind,
            age,
            freshness,
            key,
            tags,
            payload,
            body,
        }))
    }

    /// Reads and checks the trailer: the file ends there, with the count of records read.
    pub(super) fn trailer(&mut self, records: u64) -> Result<(), SnapshotError> {
        if self.left != TRAILER {
            return Err(self.damaged(format!(
                "truncated: it ends {} bytes into a record, without its trailer",
                self.left
            )));
        }
        let t: [u8; TRAILER as usize] = self.array()?;
        let (body, crc) = t.split_at(16);
        if &body[..8] != END
            || crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes"))
        {
            return Err(self.damaged("truncated: it ends without its trailer".into()));
        }
        let count = u64::from_le_bytes(body[8..16].try_into().expect("8 bytes"));
        if count != records {
            return Err(self.damaged(format!(
                "the trailer counts {count} records, {records} were found"
            )));
        }
        Ok(())
    }
}

/// Reads the fields of one record, within its length, adding them to its checksum.
struct RecordReader<'r, 'a> {
    reader: &'r mut Reader<'a>,
    /// Bytes of the record left before its checksum.
    left: u64,
    crc: Hasher,
    scratch: &'r mut Vec<u8>,
}

impl RecordReader<'_, '_> {
    fn damaged(&self) -> SnapshotError {
        self.reader
            .damaged("a record whose fields overrun it".into())
    }

    /// Appends `n` bytes of the record to `out`.
    fn append(&mut self, n: u64, out: &mut Vec<u8>) -> Result<(), SnapshotError> {
        if n > self.left {
            return Err(self.damaged());
        }
        let at = out.len();
        self.reader.append(n, out)?;
        self.crc.update(&out[at..]);
        self.left -= n;
        Ok(())
    }

    /// Reads `n` bytes into the scratch buffer.
    fn bytes(&mut self, n: u64) -> Result<Range<usize>, SnapshotError> {
        let at = self.scratch.len();
        let mut scratch = std::mem::take(self.scratch);
        let read = self.append(n, &mut scratch);
        *self.scratch = scratch;
        read.map(|()| at..self.scratch.len())
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let r = self.bytes(4)?;
        Ok(u32::from_le_bytes(
            self.scratch[r].try_into().expect("4 bytes"),
        ))
    }

    fn field(&mut self) -> Result<Range<usize>, SnapshotError> {
        let n = self.u32()?;
        self.bytes(n.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_of(bytes: &[u8], name: &str) -> (File, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("pkpx-{name}-{}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        (File::open(&path).unwrap(), path)
    }

    #[test]
    fn a_header_reads_back_with_its_position_and_any_damage_to_it_is_refused() {
        let pos = BusPosition::from_bytes(b"\x07\0\0\0\0\0\0\x001700000000000-3").unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let h = header(at, Some(&("shop".to_string(), pos.clone())));
        let (file, path) = reader_of(&h, "header");
        let mut r = Reader::new(&file, h.len() as u64, &path).unwrap();
        let back = r.header().unwrap();
        assert_eq!(back.written_at, at);
        assert_eq!(back.position, Some(("shop".to_string(), pos)));
        assert_eq!(r.left, 0, "the header read whole");
        for at in 0..h.len() {
            let mut bad = h.clone();
            bad[at] ^= 0x40;
            let (file, path) = reader_of(&bad, "header");
            let mut r = Reader::new(&file, bad.len() as u64, &path).unwrap();
            assert!(r.header().is_err(), "byte {at}");
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_record_whose_fields_overrun_it_is_refused_without_allocating_their_lengths() {
        // A record of 21 + 4 + 3 + 4 bytes (fixed part, key, tag count) claiming 4 billion
        // tags, with a valid checksum: the tags' lengths run past the record.
        let mut body = vec![VARY];
        body.extend_from_slice(&[0; 8 + 12]);
        body.extend_from_slice(&3u32.to_le_bytes());
        body.extend_from_slice(b"key");
        body.extend_from_slice(&u32::MAX.to_le_bytes());
        let mut file = header(SystemTime::now(), None);
        file.extend_from_slice(&(body.len() as u64 + 4).to_le_bytes());
        file.extend_from_slice(&body);
        file.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        file.extend_from_slice(&trailer(1));
        let (f, path) = reader_of(&file, "overrun");
        let mut r = Reader::new(&f, file.len() as u64, &path).unwrap();
        r.header().unwrap();
        assert!(r.check_record(0).unwrap(), "its checksum is right");
        r.trailer(1).unwrap();
        let mut r = Reader::new(&f, file.len() as u64, &path).unwrap();
        r.header().unwrap();
        let err = r.record(0, &mut Vec::new()).err().unwrap();
        assert!(err.to_string().contains("overrun"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
}
