//! Readers for the cache traces in `shared/traces/`: decompression by file extension, then one
//! parser per trace format, each turning the raw bytes into a list of [`Request`]s.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;
use std::str::FromStr;

/// One request of a trace: the key asked for, and the object's size where the trace has sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The key requested.
    pub key: u64,
    /// The object's weight against the cache's capacity: its size in bytes for `adapt`, 1 otherwise.
    pub weight: u64,
}

impl Request {
    /// A request for `key` weighing one unit (an entry-counted trace).
    pub const fn unit(key: u64) -> Self {
        Request { key, weight: 1 }
    }
}

/// The trace formats understood by [`parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// ARC traces: text lines `start n ignored reqno`, each meaning keys `start..start + n`.
    Arc,
    /// LIRS traces: text, one integer key a line; lines holding `*` (and blank lines) are skipped.
    Lirs,
    /// cache2k traces: binary, big-endian 32-bit keys back to back.
    Cache2k,
    /// AdaptSize traces: text lines `time key size`; the only format with object sizes.
    Adapt,
    /// Binary, big-endian 64-bit keys back to back (Caffeine simulator's scarab and corda).
    Long,
    /// Text lines `type 0xADDRESS size` (Caffeine simulator's address traces): the hex address
    /// is the key.
    Address,
}

impl Format {
    /// All formats, in the order they are documented.
    pub const ALL: [Format; 6] = [
        Format::Arc,
        Format::Lirs,
        Format::Cache2k,
        Format::Adapt,
        Format::Long,
        Format::Address,
    ];

    /// The name used on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Format::Arc => "arc",
            Format::Lirs => "lirs",
            Format::Cache2k => "cache2k",
            Format::Adapt => "adapt",
            Format::Long => "long",
            Format::Address => "address",
        }
    }

    /// Whether requests carry object sizes, so that capacity is in bytes rather than entries.
    pub const fn is_sized(self) -> bool {
        matches!(self, Format::Adapt)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown trace format {s:?} (expected arc, lirs, cache2k, adapt, long or \
                     address)"
                )
            })
    }
}

/// Reads the trace at `path`, decompressed according to its extension, and parses it as `format`.
pub fn read(path: &Path, format: Format) -> io::Result<Vec<Request>> {
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let bytes = read_decompressed(path).map_err(with_path)?;
    parse(&bytes, format).map_err(with_path)
}

/// Reads a whole file, decompressing it when its name ends in `.gz`, `.zst` or `.xz`.
pub fn read_decompressed(path: &Path) -> io::Result<Vec<u8>> {
    let mut compressed = Vec::new();
    File::open(path)?.read_to_end(&mut compressed)?;
    match path.extension().and_then(|e| e.to_str()) {
        Some("gz") => gunzip(&compressed),
        Some("zst") => unzstd(&compressed),
        Some("xz") => unxz(&compressed),
        _ => Ok(compressed),
    }
}

/// Decompresses gzip data (all members, as `gzip -d` does).
pub fn gunzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}

/// Decompresses zstd data, frame after frame until the input is used up.
pub fn unzstd(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut input = data;
    let mut out = Vec::new();
    while !input.is_empty() {
        let mut decoder = ruzstd::decoding::StreamingDecoder::new(&mut input)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}")))?;
        decoder.read_to_end(&mut out)?;
    }
    Ok(out)
}

/// Decompresses xz data.
pub fn unxz(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    lzma_rs::xz_decompress(&mut BufReader::new(Cursor::new(data)), &mut out)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("xz: {e}")))?;
    Ok(out)
}

/// Parses decompressed trace bytes as `format`.
pub fn parse(bytes: &[u8], format: Format) -> io::Result<Vec<Request>> {
    match format {
        Format::Arc => parse_arc(bytes),
        Format::Lirs => parse_lirs(bytes),
        Format::Cache2k => parse_cache2k(bytes),
        Format::Adapt => parse_adapt(bytes),
        Format::Long => parse_long(bytes),
        Format::Address => parse_address(bytes),
    }
}

/// Parses an ARC trace: each line `start n ignored reqno` expands to `n` requests for the
/// consecutive keys `start, start + 1, ..., start + n - 1`. Blank lines are skipped.
pub fn parse_arc(bytes: &[u8]) -> io::Result<Vec<Request>> {
    let mut requests = Vec::new();
    for (number, line) in text_lines(bytes)? {
        let mut fields = line.split_ascii_whitespace();
        let start: u64 = field(&mut fields, number, "start")?;
        let n: u64 = field(&mut fields, number, "n")?;
        let end = start
            .checked_add(n)
            .ok_or_else(|| invalid(number, "start + n overflows u64"))?;
        requests.extend((start..end).map(Request::unit));
    }
    Ok(requests)
}

/// Parses a LIRS trace: one integer key a line; lines holding `*` and blank lines are skipped.
pub fn parse_lirs(bytes: &[u8]) -> io::Result<Vec<Request>> {
    let mut requests = Vec::new();
    for (number, line) in text_lines(bytes)? {
        if line == "*" {
            continue;
        }
        let key = line
            .parse()
            .map_err(|e| invalid(number, &format!("key {line:?}: {e}")))?;
        requests.push(Request::unit(key));
    }
    Ok(requests)
}

/// Parses a cache2k trace: big-endian unsigned 32-bit keys, back to back, no header.
pub fn parse_cache2k(bytes: &[u8]) -> io::Result<Vec<Request>> {
    parse_keys(bytes, |k: [u8; 4]| u64::from(u32::from_be_bytes(k)))
}

/// Parses a trace of big-endian 64-bit keys, back to back, no header.
pub fn parse_long(bytes: &[u8]) -> io::Result<Vec<Request>> {
    parse_keys(bytes, u64::from_be_bytes)
}

/// Parses a binary trace of `N`-byte keys back to back, each decoded by `key`.
fn parse_keys<const N: usize>(bytes: &[u8], key: fn([u8; N]) -> u64) -> io::Result<Vec<Request>> {
    if !bytes.len().is_multiple_of(N) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "trace of {} bytes is not a whole number of {N}-byte keys",
                bytes.len()
            ),
        ));
    }
    Ok(bytes
        .chunks_exact(N)
        .map(|c| Request::unit(key(c.try_into().expect("N bytes"))))
        .collect())
}

/// Parses an address trace: lines `type 0xADDRESS size`; the address is the key.
pub fn parse_address(bytes: &[u8]) -> io::Result<Vec<Request>> {
    let mut requests = Vec::new();
    for (number, line) in text_lines(bytes)? {
        let address = line
            .split_ascii_whitespace()
            .nth(1)
            .ok_or_else(|| invalid(number, "missing address"))?;
        let hex = address
            .strip_prefix("0x")
            .ok_or_else(|| invalid(number, &format!("address {address:?} without 0x")))?;
        let key = u64::from_str_radix(hex, 16)
            .map_err(|e| invalid(number, &format!("address {address:?}: {e}")))?;
        requests.push(Request::unit(key));
    }
    Ok(requests)
}

/// Parses an AdaptSize trace: lines `time key size`; the request weighs `size` bytes.
/// The time field is ignored (requests are replayed in file order). Blank lines are skipped.
pub fn parse_adapt(bytes: &[u8]) -> io::Result<Vec<Request>> {
    let mut requests = Vec::new();
    for (number, line) in text_lines(bytes)? {
        let mut fields = line.split_ascii_whitespace();
        let _time: &str = fields
            .next()
            .ok_or_else(|| invalid(number, "missing time"))?;
        let key = field(&mut fields, number, "key")?;
        let weight = field(&mut fields, number, "size")?;
        requests.push(Request { key, weight });
    }
    Ok(requests)
}

/// The non-blank lines of a text trace, trimmed, with their 1-based line numbers.
fn text_lines(bytes: &[u8]) -> io::Result<impl Iterator<Item = (usize, &str)>> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("trace is not text: {e}"),
        )
    })?;
    Ok(text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty()))
}

/// Parses the next whitespace-separated field of line `number` as an integer.
fn field<'a, T>(
    fields: &mut impl Iterator<Item = &'a str>,
    number: usize,
    name: &str,
) -> io::Result<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    let text = fields
        .next()
        .ok_or_else(|| invalid(number, &format!("missing {name}")))?;
    text.parse()
        .map_err(|e| invalid(number, &format!("{name} {text:?}: {e}")))
}

fn invalid(number: usize, message: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("line {number}: {message}"),
    )
}

/// Counts of a trace that set sensible capacities: how many requests, distinct keys, and the
/// bytes those keys would take if all were cached at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// Number of requests.
    pub requests: usize,
    /// Number of distinct keys.
    pub unique_keys: usize,
    /// Sum over distinct keys of the largest weight requested for that key (equal to
    /// `unique_keys` for entry-counted traces). A key whose size changes during the trace is
    /// counted at its largest size.
    pub unique_weight: u64,
}

impl Footprint {
    /// Measures `requests`.
    pub fn of(requests: &[Request]) -> Self {
        let mut largest: HashMap<u64, u64> = HashMap::new();
        for r in requests {
            let w = largest.entry(r.key).or_insert(0);
            *w = (*w).max(r.weight);
        }
        Footprint {
            requests: requests.len(),
            unique_keys: largest.len(),
            unique_weight: largest.values().sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(requests: &[Request]) -> Vec<u64> {
        requests.iter().map(|r| r.key).collect()
    }

    #[test]
    fn arc_lines_expand_to_consecutive_keys() {
        let text = b"10 3 0 0\n\n7 1 0 1\r\n100 0 0 2\n  5 2 9 3  \n";
        let requests = parse_arc(text).unwrap();
        assert_eq!(keys(&requests), [10, 11, 12, 7, 5, 6]);
        assert!(requests.iter().all(|r| r.weight == 1));
    }

    #[test]
    fn arc_rejects_malformed_lines_with_their_number() {
        let err = parse_arc(b"1 1 0 0\n2 x 0 1\n").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(parse_arc(b"5\n").is_err());
        assert!(parse_arc(&format!("{} 2 0 0\n", u64::MAX).into_bytes()).is_err());
    }

    #[test]
    fn lirs_skips_stars_and_blank_lines() {
        let requests = parse_lirs(b"3\n*\n1\n\n 4 \n*\n3\n").unwrap();
        assert_eq!(keys(&requests), [3, 1, 4, 3]);
        assert!(parse_lirs(b"1\n-2\n").is_err());
    }

    #[test]
    fn cache2k_decodes_big_endian_u32() {
        let bytes = [
            0, 0, 0, 1, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, 0x12, 0x34, 0x56, 0x78,
        ];
        let requests = parse_cache2k(&bytes).unwrap();
        assert_eq!(keys(&requests), [1, 256, u64::from(u32::MAX), 0x1234_5678]);
        assert!(parse_cache2k(&bytes[..6]).is_err());
        assert!(parse_cache2k(&[]).unwrap().is_empty());
    }

    #[test]
    fn long_decodes_big_endian_u64() {
        let mut bytes = 7u64.to_be_bytes().to_vec();
        bytes.extend(u64::MAX.to_be_bytes());
        assert_eq!(keys(&parse_long(&bytes).unwrap()), [7, u64::MAX]);
        assert!(parse_long(&bytes[..12]).is_err());
    }

    #[test]
    fn address_reads_the_hex_address() {
        let requests = parse_address(
            b"r 0x1f 4
w 0xFFFFffff 8
",
        )
        .unwrap();
        assert_eq!(keys(&requests), [0x1f, 0xffff_ffff]);
        assert!(parse_address(
            b"r 1f 4
"
        )
        .is_err());
        assert!(parse_address(
            b"r
"
        )
        .is_err());
    }

    #[test]
    fn adapt_reads_key_and_size() {
        let requests = parse_adapt(b"1 0 68\n2 1 7454\n3 0 70\n").unwrap();
        assert_eq!(
            requests,
            [
                Request { key: 0, weight: 68 },
                Request {
                    key: 1,
                    weight: 7454
                },
                Request { key: 0, weight: 70 }
            ]
        );
        assert!(parse_adapt(b"1 2\n").is_err());
    }

    #[test]
    fn footprint_counts_largest_size_per_key() {
        let requests = parse_adapt(b"1 0 68\n2 1 7454\n3 0 70\n4 0 10\n").unwrap();
        let f = Footprint::of(&requests);
        assert_eq!(
            f,
            Footprint {
                requests: 4,
                unique_keys: 2,
                unique_weight: 70 + 7454
            }
        );
    }

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.name().parse::<Format>().unwrap(), f);
        }
        assert!("lru".parse::<Format>().is_err());
    }

    #[test]
    fn zstd_frames_are_all_decoded() {
        use ruzstd::encoding::{compress_to_vec, CompressionLevel};
        let mut two_frames = compress_to_vec(&b"1 2 0 0\n"[..], CompressionLevel::Fastest);
        two_frames.extend(compress_to_vec(
            &b"9 1 0 1\n"[..],
            CompressionLevel::Fastest,
        ));
        let requests = parse_arc(&unzstd(&two_frames).unwrap()).unwrap();
        assert_eq!(keys(&requests), [1, 2, 9]);
        assert!(unzstd(b"not zstd").is_err());
    }

    #[test]
    fn xz_round_trip_through_the_decompressor() {
        let raw = [0u8, 0, 0, 7, 0, 1, 0, 0];
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &raw[..], &mut xz).unwrap();
        let requests = parse_cache2k(&unxz(&xz).unwrap()).unwrap();
        assert_eq!(keys(&requests), [7, 65536]);
        assert!(unxz(b"not xz").is_err());
    }

    #[test]
    fn gzip_round_trip_through_the_decompressor() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"1\n2\n*\n3\n").unwrap();
        let gz = enc.finish().unwrap();
        let requests = parse_lirs(&gunzip(&gz).unwrap()).unwrap();
        assert_eq!(keys(&requests), [1, 2, 3]);
    }
}
