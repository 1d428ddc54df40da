//! The mapping and its header: creating, attaching and validating a region.
//!
//! All `unsafe` code that touches the mapping is here: turning an offset into an atomic or a
//! byte slice, after a bounds and alignment check that panics (a bug, never undefined
//! behaviour) when it fails; and the reads of readers without the lock (`*_racy`), which
//! return `None` instead for a range out of bounds (it came from torn data). Everything above
//! works on offsets.

use crate::error::ShmError;
use crate::file::{self, NewFile, Owner};
use crate::hash;
use crate::mutex::{LockError, RawMutex, MUTEX_SPACE};
use peakcache::lifecycle::Timing;
use peakcache::SystemClock;
use std::fs::File;
use std::io;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `"PEAKSHM\0"` little-endian.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"PEAKSHM\0");
/// The layout version. Bumped by any change of the layout or of the hash function. 2: the
/// policy's state (queue links, ghosts, sketch), the version word of optimistic reads, a free
/// list per size class with two bitmaps instead of the buddy allocator, and record-size hints
/// and queue bits in the slots' meta word. 3: the lock stamp and the repair words (locks of
/// another boot or program re-initialised, unrecoverable locks repaired), a lock-timeout
/// counter per shard, and pages reserved at creation (a layout 2 file may be sparse). 4: the
/// purge journal (its size and offset in the checksummed header, the ring between the tag
/// table and the shards, its lock, head, oldest mark and counters, the follower's word and
/// state), and the region-wide soft purge mark. A region of another version is replaced (or
/// refused): nginx and PHP recreate it, empty, at their next start. 5: the per-second history
/// ring after the journal (`peakcache::history`). 6: a shard's counters are the lifecycle's
/// (`peakcache::stats::Counter`, one more: tag purges) followed by the region's own. 7: an index
/// slot split into a 16-byte hot part (hash, record, meta), four to a cache line, and a 48-byte
/// cold part in an array after them; the dirty flag beside the version word.
pub const LAYOUT_VERSION: u32 = 7;
/// Bytes of the header page.
pub(crate) const HEADER_SIZE: usize = 4096;
/// The unit of the heap: records and free blocks start on, and are sized in, 64-byte units.
pub(crate) const UNIT: usize = 64;
/// Bytes of the hot part of an index slot (key hash, record, meta word): what a lookup reads,
/// four slots to a cache line.
pub(crate) const HOT_SLOT: usize = 16;
/// Bytes of the cold part of an index slot (flight, futex word, back-off, pass-through): read
/// and written under the lock, beside the hot parts.
pub(crate) const COLD_SLOT: usize = 48;
/// Bytes of one entry of the tag table.
pub(crate) const TAG_SIZE: usize = 80;
/// Bytes of a shard's header (mutex, counters, allocator heads).
pub(crate) const SHARD_HEADER: usize = 1024;
/// Value of the `state` word once the creator has finished.
pub(crate) const READY: u32 = 0x5245_4459;

// Header fields, checksummed (bytes 0..H_CHECKSUM).
pub(crate) const H_MAGIC: usize = 0;
pub(crate) const H_VERSION: usize = 8;
pub(crate) const H_HEADER_SIZE: usize = 12;
pub(crate) const H_TOTAL: usize = 16;
pub(crate) const H_SHARDS: usize = 24;
pub(crate) const H_SLOTS: usize = 28;
pub(crate) const H_HEAP_UNITS: usize = 32;
pub(crate) const H_TAG_SLOTS: usize = 36;
pub(crate) const H_STRIDE: usize = 40;
pub(crate) const H_SHARDS_OFF: usize = 48;
pub(crate) const H_TAGS_OFF: usize = 56;
pub(crate) const H_LOCK_TIMEOUT: usize = 64;
pub(crate) const H_RETRY_MIN: usize = 72;
pub(crate) const H_RETRY_MAX: usize = 80;
pub(crate) const H_REFRESH_RETRY: usize = 88;
pub(crate) const H_MAX_OBJECT: usize = 96;
pub(crate) const H_SEED: usize = 104;
pub(crate) const H_FLAGS: usize = 112;
pub(crate) const H_CREATED_WALL: usize = 120;
/// Bytes of the purge journal's ring.
pub(crate) const H_JOURNAL_BYTES: usize = 128;
/// Offset of the purge journal's ring.
pub(crate) const H_JOURNAL_OFF: usize = 136;
pub(crate) const H_CHECKSUM: usize = 144;
// Mutable fields.
pub(crate) const H_STATE: usize = 192;
pub(crate) const H_FROZEN: usize = 196;
pub(crate) const H_SEQ: usize = 200;
pub(crate) const H_TAG_EPOCH: usize = 208;
pub(crate) const H_CLOCK: usize = 216;
pub(crate) const H_BOOT_ID: usize = 224;
pub(crate) const H_MONO_OFFSET: usize = 232;
/// The cache-wide tag mark that overflowing tag marks fold into (a tag entry, hash unused).
pub(crate) const H_FOLD_MARK: usize = 240;
pub(crate) const H_TAG_MUTEX: usize = 320;
pub(crate) const H_TAG_PURGES: usize = 384;
pub(crate) const H_TAG_COUNT: usize = 392;
/// Who is repairing the tag table's mutex, and since when (see `mutex::lock_repairing`).
pub(crate) const H_TAG_REPAIR: usize = 416;
/// `lock_stamp(boot id)` once this crate has initialised the locks in this boot: lock words
/// without it (another boot, another program) are never trusted.
pub(crate) const H_LOCK_STAMP: usize = 400;
/// Times the tag table's lock was not acquired within the bound.
pub(crate) const H_TAG_LOCK_TIMEOUTS: usize = 408;
// The purge journal (journal.rs).
pub(crate) const H_J_MUTEX: usize = 512;
/// Who is repairing the journal's mutex (see `mutex::lock_repairing`).
pub(crate) const H_J_REPAIR: usize = 576;
/// Where the next record goes: a byte position counted from the region's creation.
pub(crate) const H_J_HEAD: usize = 584;
/// The position of the oldest byte not overwritten yet.
pub(crate) const H_J_OLDEST: usize = 592;
/// The number of the next record.
pub(crate) const H_J_SEQ: usize = 600;
/// Purges that could not be recorded.
pub(crate) const H_J_UNRECORDED: usize = 608;
/// Bumped by every append: the futex word a follower sleeps on.
pub(crate) const H_J_WAKE: usize = 616;
/// Followers sleeping on `H_J_WAKE` (appenders wake only if there is one).
pub(crate) const H_J_SLEEPERS: usize = 620;
/// The region-wide soft purge: entries fetched before this sequence number are stale from
/// `H_STALE_ALL_AT` (region time).
pub(crate) const H_STALE_ALL_SEQ: usize = 624;
pub(crate) const H_STALE_ALL_AT: usize = 632;
/// The follower's pid and start time (journal.rs `follower_word`), 0 for none.
pub(crate) const H_F_OWNER: usize = 640;
/// Two copies of the follower's saved state (journal.rs `STATE_COPY` bytes each).
pub(crate) const H_F_STATE: usize = 648;
const _: () = assert!(H_F_STATE + 2 * crate::journal::STATE_COPY <= HEADER_SIZE);

/// Header flag: the region carries its own clock word (advanced by hand, for tests).
pub(crate) const FLAG_REGION_CLOCK: u32 = 1;

/// Region time at creation (2^53 ns, about 104 days): entries restored from a snapshot keep
/// their age, which can reach two windows of `Freshness::MAX`.
pub(crate) const TIME_START: u64 = 1 << 53;

/// Largest shard count accepted.
pub(crate) const MAX_SHARDS: u32 = 4096;

/// The longest a lock is waited for by default (or the lock timeout, if shorter): a holder
/// alive but not releasing (stopped, stuck) costs each caller at most this, then the caller
/// goes on without the cache.
pub(crate) const LOCK_BOUND_MAX: Duration = Duration::from_secs(1);
/// The shortest default bound: a holder preempted on a busy host is not taken for a stuck one.
pub(crate) const LOCK_BOUND_MIN: Duration = Duration::from_millis(10);
/// Lock timeouts are reported at most this often per attachment (with their count).
const REPORT_EVERY: u64 = 1_000_000_000;

/// The shape of a region: everything its offsets are computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) shards: u32,
    pub(crate) slots: u32,
    pub(crate) heap_units: u32,
    pub(crate) tag_slots: u32,
    /// Bytes of the purge journal's ring (a multiple of 4 KiB).
    pub(crate) journal_bytes: u32,
}

/// The smallest and largest purge journal.
pub(crate) const JOURNAL_MIN: u32 = 64 << 10;
pub(crate) const JOURNAL_MAX: u32 = 1 << 30;

const fn align(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

impl Geometry {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !self.shards.is_power_of_two() || self.shards > MAX_SHARDS {
            return Err(format!(
                "shard count {} (a power of two up to {MAX_SHARDS})",
                self.shards
            ));
        }
        if !self.slots.is_power_of_two() || !(8..=1 << 28).contains(&self.slots) {
            return Err(format!(
                "slots per shard {} (a power of two, 8 to 2^28)",
                self.slots
            ));
        }
        if !(16..=1 << 30).contains(&self.heap_units) {
            return Err(format!(
                "heap units per shard {} (16 to 2^30)",
                self.heap_units
            ));
        }
        if !self.tag_slots.is_power_of_two() || !(16..=1 << 24).contains(&self.tag_slots) {
            return Err(format!(
                "tag slots {} (a power of two, 16 to 2^24)",
                self.tag_slots
            ));
        }
        if self.journal_bytes % 4096 != 0
            || !(JOURNAL_MIN..=JOURNAL_MAX).contains(&self.journal_bytes)
        {
            return Err(format!(
                "purge journal of {} bytes (a multiple of 4 KiB, 64 KiB to 1 GiB)",
                self.journal_bytes
            ));
        }
        let total = self.shards_off() as u128 + self.shards as u128 * self.shard_stride() as u128;
        if total > (1u128 << 46) {
            return Err(format!("total size {total} too large"));
        }
        Ok(())
    }

    pub(crate) fn tags_off(&self) -> usize {
        HEADER_SIZE
    }

    /// Offset of the purge journal's ring, after the tag table.
    pub(crate) fn journal_off(&self) -> usize {
        align(HEADER_SIZE + self.tag_slots as usize * TAG_SIZE, 4096)
    }

    /// Offset of the per-second history ring, after the journal.
    pub(crate) fn history_off(&self) -> usize {
        self.journal_off() + self.journal_bytes as usize
    }

    pub(crate) fn shards_off(&self) -> usize {
        align(
            self.history_off() + peakcache::history::HISTORY_WORDS * 8,
            4096,
        )
    }

    /// Offset of the index's hot parts inside a shard.
    pub(crate) fn index_off(&self) -> usize {
        SHARD_HEADER
    }

    /// Offset of the index's cold parts inside a shard.
    pub(crate) fn cold_off(&self) -> usize {
        self.index_off() + align(self.slots as usize * HOT_SLOT, UNIT)
    }

    /// Offset of the policy's queue links inside a shard (8 bytes per slot).
    pub(crate) fn links_off(&self) -> usize {
        self.cold_off() + align(self.slots as usize * COLD_SLOT, UNIT)
    }

    /// Entries of the ghost table (keys the small queue dropped): one per slot.
    pub(crate) fn ghost_len(&self) -> usize {
        self.slots as usize
    }

    /// Offset of the ghost table inside a shard (8 bytes per entry).
    pub(crate) fn ghost_off(&self) -> usize {
        self.links_off() + align(self.slots as usize * 8, UNIT)
    }

    /// Entries of the main ghost table (keys the main queue evicted): a quarter per slot.
    pub(crate) fn main_ghost_len(&self) -> usize {
        (self.slots as usize / 4).max(8)
    }

    pub(crate) fn main_ghost_off(&self) -> usize {
        self.ghost_off() + align(self.ghost_len() * 8, UNIT)
    }

    /// 4-bit counters of the frequency sketch: eight per slot (a power of two).
    pub(crate) fn sketch_counters(&self) -> usize {
        (self.slots as usize * 8).max(64)
    }

    pub(crate) fn sketch_off(&self) -> usize {
        self.main_ghost_off() + align(self.main_ghost_len() * 8, UNIT)
    }

    /// Offset of the free-block bitmap inside a shard.
    pub(crate) fn bitmap_off(&self) -> usize {
        self.sketch_off() + align(self.sketch_counters() / 2, UNIT)
    }

    /// Two bitmaps of one bit per heap unit: where free spans start, where they end.
    pub(crate) fn bitmap_bytes(&self) -> usize {
        2 * align((self.heap_units as usize).div_ceil(64) * 8, UNIT)
    }

    /// Offset of the heap inside a shard.
    pub(crate) fn heap_off(&self) -> usize {
        self.bitmap_off() + self.bitmap_bytes()
    }

    pub(crate) fn shard_stride(&self) -> usize {
        align(self.heap_off() + self.heap_units as usize * UNIT, 4096)
    }

    pub(crate) fn total(&self) -> usize {
        self.shards_off() + self.shards as usize * self.shard_stride()
    }

    pub(crate) fn shard_base(&self, shard: usize) -> usize {
        self.shards_off() + shard * self.shard_stride()
    }
}

/// Lifecycle settings, fixed at creation and stored in the header so that every process
/// attached applies the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) timing: Timing,
    pub(crate) max_object: u64,
    pub(crate) seed: u64,
    pub(crate) flags: u32,
}

/// A shared mapping: its address and length. Unmapped on drop.
pub(crate) struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access through it is atomic, a read made
// under the shard lock that guards the range (the crate's locking discipline, see `bytes`), or
// an opaque copy with the effect of atomic byte loads (`extend_racy`).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` came from a successful mmap and are unmapped once, here; no
        // reference into the mapping outlives the `Region` that owns it.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

impl Mapping {
    fn map(fd: Option<&File>, len: usize) -> io::Result<Mapping> {
        let (flags, raw) = match fd {
            Some(f) => (libc::MAP_SHARED, f.as_raw_fd()),
            None => (libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping at an address the kernel chooses; nothing else is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            base: p.cast(),
            len,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    #[track_caller]
    fn check(&self, off: usize, size: usize, align: usize) {
        assert!(
            off % align == 0 && off.checked_add(size).is_some_and(|end| end <= self.len),
            "region access out of bounds: {off}+{size} of {}",
            self.len
        );
    }

    /// The 32-bit word at `off`.
    #[inline]
    #[track_caller]
    pub(crate) fn u32(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4, 4);
        // SAFETY: in bounds and aligned (checked); the mapping lives as long as `self`;
        // AtomicU32 has the size and alignment of u32 and every bit pattern is valid.
        unsafe { &*self.base.add(off).cast::<AtomicU32>() }
    }

    /// The 64-bit word at `off`.
    #[inline]
    #[track_caller]
    pub(crate) fn u64(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8, 8);
        // SAFETY: as for `u32`.
        unsafe { &*self.base.add(off).cast::<AtomicU64>() }
    }

    /// The `n` 64-bit words from `off`.
    #[track_caller]
    pub(crate) fn u64s(&self, off: usize, n: usize) -> &[AtomicU64] {
        self.check(off, n * 8, 8);
        // SAFETY: in bounds and aligned (checked); as for `u64`, every bit pattern is valid.
        unsafe { std::slice::from_raw_parts(self.base.add(off).cast::<AtomicU64>(), n) }
    }

    /// `len` bytes at `off`, for reading. The caller holds the lock that guards the range:
    /// other processes write it only under that lock, so it does not change while borrowed.
    #[inline]
    #[track_caller]
    pub(crate) fn bytes(&self, off: usize, len: usize) -> &[u8] {
        self.check(off, len, 1);
        // SAFETY: in bounds (checked); lives as long as the mapping; no one writes the range
        // while the caller holds its lock (the crate's locking discipline).
        unsafe { std::slice::from_raw_parts(self.base.add(off), len) }
    }

    /// Copies `src` to `off`. The caller holds the lock that guards the range. The bytes are
    /// stored with relaxed atomic stores (words where aligned), so that an optimistic reader
    /// copying the range at the same time (see `read_racy`) reads torn data, never races.
    #[inline]
    #[track_caller]
    pub(crate) fn write(&self, off: usize, src: &[u8]) {
        self.check(off, src.len(), 1);
        let mut at = off;
        let mut rest = src;
        while at % 8 != 0 && !rest.is_empty() {
            self.byte(at).store(rest[0], Ordering::Relaxed);
            at += 1;
            rest = &rest[1..];
        }
        let words = rest.len() / 8;
        if words > 0 {
            // SAFETY: `at..at + 8 * words` lies in the checked range and `at` is 8-aligned (the
            // loop above stops at alignment when bytes remain), so these are valid, aligned
            // AtomicU64s inside the live mapping (every bit pattern valid).
            let dst =
                unsafe { std::slice::from_raw_parts(self.base.add(at).cast::<AtomicU64>(), words) };
            for (d, s) in dst.iter().zip(rest.chunks_exact(8)) {
                d.store(
                    u64::from_ne_bytes(s.try_into().expect("8 bytes")),
                    Ordering::Relaxed,
                );
            }
            at += words * 8;
        }
        for &b in &rest[words * 8..] {
            self.byte(at).store(b, Ordering::Relaxed);
            at += 1;
        }
    }

    /// Zeroes `len` bytes at `off`, 8-aligned, a multiple of 8 (atomic stores, as `write`). The
    /// caller holds the lock that guards the range.
    #[track_caller]
    pub(crate) fn zero(&self, off: usize, len: usize) {
        self.check(off, len, 8);
        assert!(len % 8 == 0, "zeroing {len} bytes: not whole words");
        // SAFETY: in bounds and aligned (checked): `len / 8` valid AtomicU64 in the live mapping.
        let words =
            unsafe { std::slice::from_raw_parts(self.base.add(off).cast::<AtomicU64>(), len / 8) };
        for w in words {
            w.store(0, Ordering::Relaxed);
        }
    }

    /// The byte at `off`, as an atomic.
    #[inline]
    #[track_caller]
    fn byte(&self, off: usize) -> &AtomicU8 {
        self.check(off, 1, 1);
        // SAFETY: in bounds (checked); AtomicU8 has the size and alignment of u8.
        unsafe { &*self.base.add(off).cast::<AtomicU8>() }
    }

    /// `out.len()` 64-bit words from `off` (8-aligned), by relaxed atomic loads: what a reader
    /// without the lock may read while a writer changes them (torn, never a race). `None` if the
    /// range is outside the mapping (the offset came from torn data).
    #[inline]
    pub(crate) fn read_words_racy(&self, off: usize, out: &mut [u64]) -> Option<()> {
        let len = out.len().checked_mul(8)?;
        if off % 8 != 0 || off.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: in bounds and aligned (checked above): `out.len()` valid AtomicU64s.
        let src = unsafe {
            std::slice::from_raw_parts(self.base.add(off).cast::<AtomicU64>(), out.len())
        };
        for (o, s) in out.iter_mut().zip(src) {
            *o = s.load(Ordering::Relaxed);
        }
        Some(())
    }

    /// Calls `f` with the bytes of `off..off + len` in pieces of at most 8 (a word where
    /// aligned), read by relaxed atomic loads: the range may be written concurrently (torn
    /// data, never a race; the caller validates what it read afterwards). `None` if the range
    /// is outside the mapping. `f` returns false to stop early.
    #[inline]
    fn each_racy(&self, off: usize, len: usize, mut f: impl FnMut(&[u8]) -> bool) -> Option<bool> {
        if off.checked_add(len)? > self.len {
            return None;
        }
        let mut at = off;
        let end = off + len;
        let head = ((8 - off % 8) % 8).min(len);
        let mut piece = [0u8; 8];
        for (k, p) in piece[..head].iter_mut().enumerate() {
            // SAFETY: `off + k < end <= self.len` (checked above); AtomicU8 has u8's layout.
            *p = unsafe { &*self.base.add(off + k).cast::<AtomicU8>() }.load(Ordering::Relaxed);
        }
        if head > 0 && !f(&piece[..head]) {
            return Some(false);
        }
        at += head;
        let words = (end - at) / 8;
        if words > 0 {
            // SAFETY: `at` is 8-aligned (words remain, so the head reached alignment) and
            // `at + 8 * words <= end <= self.len` (checked above).
            let src =
                unsafe { std::slice::from_raw_parts(self.base.add(at).cast::<AtomicU64>(), words) };
            for w in src {
                if !f(&w.load(Ordering::Relaxed).to_ne_bytes()) {
                    return Some(false);
                }
            }
            at += words * 8;
        }
        let tail = end - at;
        for (k, p) in piece[..tail].iter_mut().enumerate() {
            // SAFETY: `at + k < end <= self.len` (checked above).
            *p = unsafe { &*self.base.add(at + k).cast::<AtomicU8>() }.load(Ordering::Relaxed);
        }
        Some(tail == 0 || f(&piece[..tail]))
    }

    /// Appends `len` bytes at `off` to `out`, read racily: the range may be written
    /// concurrently (torn data, never a race; the caller validates what it read afterwards).
    /// `None` if the range is outside the mapping.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub(crate) fn extend_racy(&self, off: usize, len: usize, out: &mut Vec<u8>) -> Option<()> {
        if off.checked_add(len)? > self.len {
            return None;
        }
        out.reserve(len);
        let start = out.len();
        // SAFETY: the source range `off..off + len` lies inside the live mapping (checked
        // above) and `out` has room for `len` more bytes (reserved above), a buffer distinct
        // from the mapping. `rep movsb` is an opaque copy whose effect is that of relaxed atomic
        // byte loads from the mapping (well defined while another thread or process writes it:
        // the bytes may be torn, which the caller's version check detects) and plain stores to
        // `out`'s spare capacity; it uses no stack and leaves the direction flag clear (the ABI
        // guarantees it clear on entry). All `len` bytes are then initialised, so `set_len` is
        // sound.
        unsafe {
            std::arch::asm!(
                "rep movsb",
                inout("rcx") len => _,
                inout("rsi") self.base.add(off) as *const u8 => _,
                inout("rdi") out.as_mut_ptr().add(start) => _,
                options(nostack, preserves_flags)
            );
            out.set_len(start + len);
        }
        Some(())
    }

    /// Appends `len` bytes at `off` to `out`, by relaxed atomic loads (see `each_racy`).
    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    pub(crate) fn extend_racy(&self, off: usize, len: usize, out: &mut Vec<u8>) -> Option<()> {
        out.reserve(len);
        self.each_racy(off, len, |p| {
            out.extend_from_slice(p);
            true
        })
        .map(|_| ())
    }

    /// Whether the `key.len()` bytes at `off` equal `key`, read racily (see `each_racy`).
    #[inline]
    pub(crate) fn eq_racy(&self, off: usize, key: &[u8]) -> Option<bool> {
        let mut rest = key;
        self.each_racy(off, key.len(), |p| {
            let (a, b) = rest.split_at(p.len());
            rest = b;
            a == p
        })
    }

    /// Asks the CPU to fetch `len` bytes at `off` into its caches (a hint: no effect on
    /// correctness; out-of-range parts are ignored).
    #[inline]
    pub(crate) fn prefetch(&self, off: usize, len: usize) {
        let end = off.saturating_add(len).min(self.len);
        let mut at = off & !63;
        while at < end {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch never faults nor changes memory; the address is inside the
            // mapping anyway (`at < end <= self.len`).
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    self.base.add(at).cast::<i8>(),
                );
            }
            at += 64;
        }
    }

    /// The mutex at `off`.
    #[track_caller]
    pub(crate) fn mutex(&self, off: usize) -> RawMutex {
        self.check(off, MUTEX_SPACE, 8);
        // SAFETY: in bounds and aligned (checked), so the pointer is valid for MUTEX_SPACE bytes.
        RawMutex::at(unsafe { self.base.add(off) })
    }
}

/// How a file region was opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// The file did not exist (or was empty): a new, empty region.
    Created,
    /// The file held a valid region matching the configuration: its entries are kept.
    Attached,
    /// The file held a region that could not be used; it was replaced by a new, empty one.
    /// The reason says why (version, size, corruption...).
    Recreated(String),
}

/// Offsets derived from the geometry, computed once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub(crate) shards_off: usize,
    pub(crate) stride: usize,
    pub(crate) index_off: usize,
    pub(crate) cold_off: usize,
    pub(crate) links_off: usize,
    pub(crate) ghost_off: usize,
    pub(crate) main_ghost_off: usize,
    pub(crate) sketch_off: usize,
    pub(crate) bitmap_off: usize,
    pub(crate) heap_off: usize,
}

impl Layout {
    fn of(g: &Geometry) -> Layout {
        Layout {
            shards_off: g.shards_off(),
            stride: g.shard_stride(),
            index_off: g.index_off(),
            cold_off: g.cold_off(),
            links_off: g.links_off(),
            ghost_off: g.ghost_off(),
            main_ghost_off: g.main_ghost_off(),
            sketch_off: g.sketch_off(),
            bitmap_off: g.bitmap_off(),
            heap_off: g.heap_off(),
        }
    }
}

/// Where an attachment reports what an operator should know: one line each.
pub(crate) type Report = Arc<dyn Fn(&str) + Send + Sync>;

/// The default report: standard error (an nginx worker's goes to its error log).
pub(crate) fn report_to_stderr() -> Report {
    Arc::new(|line: &str| eprintln!("{line}"))
}

/// What one attachment sets for itself (none of it is in the region).
#[derive(Clone)]
pub(crate) struct Attach {
    /// How long a shard or tag lock is waited for; `None`: the lock timeout, between
    /// `LOCK_BOUND_MIN` and `LOCK_BOUND_MAX`.
    pub(crate) lock_bound: Option<Duration>,
    pub(crate) report: Report,
    /// Who must own a region file (and may own snapshots).
    pub(crate) owner: Owner,
}

/// A mapped, validated region.
pub(crate) struct Region {
    pub(crate) map: Mapping,
    pub(crate) geo: Geometry,
    pub(crate) layout: Layout,
    pub(crate) settings: Settings,
    /// How long this attachment waits for a lock.
    pub(crate) lock_bound: Duration,
    pub(crate) report: Report,
    pub(crate) owner: Owner,
    /// Lock timeouts not reported yet, and when the last report was made (monotonic ns).
    unreported: AtomicU64,
    last_report: AtomicU64,
    /// The region file's device and inode (`None` for an anonymous region): a host that
    /// recreates the file makes another one, which a follower notices.
    pub(crate) file_id: Option<(u64, u64)>,
    /// A report made while a lock was held, for the next caller that holds none.
    deferred: std::sync::Mutex<Option<String>>,
    has_deferred: std::sync::atomic::AtomicBool,
}

/// The header checksum: bytes `0..H_CHECKSUM`.
fn header_checksum(map: &Mapping) -> u64 {
    hash::hash(0x7065_616b, map.bytes(0, H_CHECKSUM))
}

/// This boot's identity (a hash of the kernel's boot id; 0 if unknown).
pub(crate) fn boot_id() -> u64 {
    std::fs::read("/proc/sys/kernel/random/boot_id")
        .map(|b| hash::hash(0, &b) | 1)
        .unwrap_or(0)
}

/// The stamp this crate writes after initialising a region's locks in boot `boot`.
fn lock_stamp(boot: u64) -> u64 {
    hash::hash(0x6c6f_636b_7374_616d, &boot.to_le_bytes()) | 1
}

/// Wall-clock nanoseconds since the Unix epoch.
pub(crate) fn wall_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A random 64-bit seed (from the kernel).
pub(crate) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        return wall_nanos() ^ (std::process::id() as u64).rotate_left(32);
    }
    u64::from_le_bytes(b)
}

impl Region {
    fn new(map: Mapping, geo: Geometry, settings: Settings, attach: &Attach) -> Region {
        let lock_bound = attach.lock_bound.unwrap_or_else(|| {
            Duration::from_nanos(settings.timing.lock_timeout).clamp(LOCK_BOUND_MIN, LOCK_BOUND_MAX)
        });
        Region {
            map,
            layout: Layout::of(&geo),
            geo,
            settings,
            lock_bound,
            report: attach.report.clone(),
            owner: attach.owner,
            unreported: AtomicU64::new(0),
            last_report: AtomicU64::new(0),
            file_id: None,
            deferred: std::sync::Mutex::new(None),
            has_deferred: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The line reporting a lock of `what` that was not acquired (`e`): the first at once,
    /// then at most one a second with the count since the last; `None` in between.
    pub(crate) fn lock_failure(&self, what: &str, e: &LockError) -> Option<String> {
        self.unreported.fetch_add(1, Ordering::Relaxed);
        let now = SystemClock::host_nanos();
        let last = self.last_report.load(Ordering::Relaxed);
        if (last != 0 && now.wrapping_sub(last) < REPORT_EVERY)
            || self
                .last_report
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        let n = self.unreported.swap(0, Ordering::Relaxed);
        let why = match e {
            LockError::TimedOut => format!(
                "was not acquired within {} ms (a process holding it is stopped or stuck)",
                self.lock_bound.as_millis()
            ),
            LockError::NotRecoverable => "is being repaired".to_string(),
            LockError::Other(e) => format!("is unusable ({e})"),
        };
        Some(format!(
            "peakcache-shm: the lock of {what} {why}: answered without the cache ({n} such \
             answer{} since the last report)",
            if n == 1 { "" } else { "s" }
        ))
    }

    /// Keeps `line` to be reported by the next caller that holds no lock (the report may
    /// call back into the cache).
    pub(crate) fn defer_report(&self, line: String) {
        *self.deferred.lock().unwrap_or_else(|e| e.into_inner()) = Some(line);
        self.has_deferred.store(true, Ordering::Release);
    }

    /// Reports what `defer_report` kept. Called with no lock held.
    #[inline]
    pub(crate) fn flush_reports(&self) {
        // A load first: the common case writes nothing to the shared flag.
        if self.has_deferred.load(Ordering::Relaxed)
            && self.has_deferred.swap(false, Ordering::Acquire)
        {
            let line = self
                .deferred
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(line) = line {
                (self.report)(&line);
            }
        }
    }

    /// A new region in an anonymous shared mapping (inherited by children forked later): a
    /// memory file (`memfd_create`) with every page reserved, mapped and closed.
    pub(crate) fn anonymous(
        geo: Geometry,
        settings: Settings,
        attach: &Attach,
    ) -> Result<Region, ShmError> {
        // SAFETY: a valid NUL-terminated name; memfd_create makes a new descriptor.
        let fd = unsafe { libc::memfd_create(c"peakcache-shm".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(ShmError::io(
                "memfd_create",
                None,
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let file = unsafe { File::from_raw_fd(fd) };
        file::reserve(&file, geo.total() as u64, None)?;
        let map =
            Mapping::map(Some(&file), geo.total()).map_err(|e| ShmError::io("mmap", None, e))?;
        let region = Region::new(map, geo, settings, attach);
        region.init()?;
        Ok(region)
    }

    /// Writes a new region's header and initialises its locks and shards. The memory is zero.
    fn init(&self) -> Result<(), ShmError> {
        let m = &self.map;
        let g = &self.geo;
        let s = &self.settings;
        m.u64(H_MAGIC).store(MAGIC, Ordering::Relaxed);
        m.u32(H_VERSION).store(LAYOUT_VERSION, Ordering::Relaxed);
        m.u32(H_HEADER_SIZE)
            .store(HEADER_SIZE as u32, Ordering::Relaxed);
        m.u64(H_TOTAL).store(g.total() as u64, Ordering::Relaxed);
        m.u32(H_SHARDS).store(g.shards, Ordering::Relaxed);
        m.u32(H_SLOTS).store(g.slots, Ordering::Relaxed);
        m.u32(H_HEAP_UNITS).store(g.heap_units, Ordering::Relaxed);
        m.u32(H_TAG_SLOTS).store(g.tag_slots, Ordering::Relaxed);
        m.u64(H_STRIDE)
            .store(g.shard_stride() as u64, Ordering::Relaxed);
        m.u64(H_SHARDS_OFF)
            .store(g.shards_off() as u64, Ordering::Relaxed);
        m.u64(H_TAGS_OFF)
            .store(g.tags_off() as u64, Ordering::Relaxed);
        m.u64(H_LOCK_TIMEOUT)
            .store(s.timing.lock_timeout, Ordering::Relaxed);
        m.u64(H_RETRY_MIN)
            .store(s.timing.retry_min, Ordering::Relaxed);
        m.u64(H_RETRY_MAX)
            .store(s.timing.retry_max, Ordering::Relaxed);
        m.u64(H_REFRESH_RETRY)
            .store(s.timing.refresh_retry, Ordering::Relaxed);
        m.u64(H_MAX_OBJECT).store(s.max_object, Ordering::Relaxed);
        m.u64(H_SEED).store(s.seed, Ordering::Relaxed);
        m.u32(H_FLAGS).store(s.flags, Ordering::Relaxed);
        m.u64(H_CREATED_WALL).store(wall_nanos(), Ordering::Relaxed);
        m.u64(H_JOURNAL_BYTES)
            .store(u64::from(g.journal_bytes), Ordering::Relaxed);
        m.u64(H_JOURNAL_OFF)
            .store(g.journal_off() as u64, Ordering::Relaxed);
        m.u64(H_CHECKSUM)
            .store(header_checksum(m), Ordering::Relaxed);
        m.u64(H_SEQ).store(1, Ordering::Relaxed);
        m.u64(H_CLOCK).store(0, Ordering::Relaxed);
        m.u64(H_BOOT_ID).store(boot_id(), Ordering::Relaxed);
        m.u64(H_LOCK_STAMP)
            .store(lock_stamp(boot_id()), Ordering::Relaxed);
        // Region time starts at `TIME_START`, so that entries restored from a snapshot can be
        // dated in the past.
        m.u64(H_MONO_OFFSET).store(
            TIME_START.wrapping_sub(SystemClock::host_nanos()),
            Ordering::Relaxed,
        );
        self.init_locks()?;
        for shard in 0..g.shards as usize {
            crate::shard::init_heap(self, shard);
        }
        m.u32(H_STATE).store(READY, Ordering::Release);
        Ok(())
    }

    /// Initialises every mutex (creation, or the first attach after a reboot: the holders
    /// recorded in them are from another boot).
    fn init_locks(&self) -> Result<(), ShmError> {
        let io = |e| ShmError::io("pthread_mutex_init", None, e);
        self.map.mutex(H_TAG_MUTEX).init().map_err(io)?;
        self.map.u64(H_TAG_REPAIR).store(0, Ordering::Relaxed);
        self.map.mutex(H_J_MUTEX).init().map_err(io)?;
        self.map.u64(H_J_REPAIR).store(0, Ordering::Relaxed);
        for shard in 0..self.geo.shards as usize {
            let base = self.geo.shard_base(shard);
            self.map.mutex(base).init().map_err(io)?;
            self.map
                .u64(base + crate::shard::S_REPAIR)
                .store(0, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Validates the header of `map` and returns the region it describes.
    pub(crate) fn validate(
        map: Mapping,
        file_len: u64,
        attach: &Attach,
    ) -> Result<Region, ShmError> {
        if (map.len() as u64) < HEADER_SIZE as u64 || file_len < HEADER_SIZE as u64 {
            return Err(ShmError::Truncated {
                expected: HEADER_SIZE as u64,
                found: file_len,
            });
        }
        let r32 = |o| map.u32(o).load(Ordering::Acquire);
        let r64 = |o| map.u64(o).load(Ordering::Acquire);
        if r64(H_MAGIC) != MAGIC {
            return Err(ShmError::BadMagic);
        }
        if r32(H_VERSION) != LAYOUT_VERSION {
            return Err(ShmError::VersionMismatch {
                found: r32(H_VERSION),
                expected: LAYOUT_VERSION,
            });
        }
        if r64(H_CHECKSUM) != header_checksum(&map) {
            return Err(ShmError::HeaderChecksum);
        }
        let geo = Geometry {
            shards: r32(H_SHARDS),
            slots: r32(H_SLOTS),
            heap_units: r32(H_HEAP_UNITS),
            tag_slots: r32(H_TAG_SLOTS),
            journal_bytes: u32::try_from(r64(H_JOURNAL_BYTES)).unwrap_or(u32::MAX),
        };
        geo.validate().map_err(ShmError::BadLayout)?;
        let derived = [
            (r32(H_HEADER_SIZE) as u64, HEADER_SIZE as u64, "header size"),
            (r64(H_STRIDE), geo.shard_stride() as u64, "shard stride"),
            (r64(H_SHARDS_OFF), geo.shards_off() as u64, "shards offset"),
            (r64(H_TAGS_OFF), geo.tags_off() as u64, "tags offset"),
            (
                r64(H_JOURNAL_OFF),
                geo.journal_off() as u64,
                "journal offset",
            ),
            (r64(H_TOTAL), geo.total() as u64, "total size"),
        ];
        for (found, want, what) in derived {
            if found != want {
                return Err(ShmError::BadLayout(format!(
                    "{what} {found}, expected {want}"
                )));
            }
        }
        if file_len < geo.total() as u64 || (map.len() as u64) < geo.total() as u64 {
            return Err(ShmError::Truncated {
                expected: geo.total() as u64,
                found: file_len.min(map.len() as u64),
            });
        }
        if r32(H_STATE) != READY {
            return Err(ShmError::NotReady);
        }
        let settings = Settings {
            timing: Timing {
                lock_timeout: r64(H_LOCK_TIMEOUT),
                retry_min: r64(H_RETRY_MIN),
                retry_max: r64(H_RETRY_MAX),
                refresh_retry: r64(H_REFRESH_RETRY),
            },
            max_object: r64(H_MAX_OBJECT),
            seed: r64(H_SEED),
            flags: r32(H_FLAGS),
        };
        let max_heap = geo.heap_units as u64 * UNIT as u64;
        if settings.max_object == 0 || settings.max_object > max_heap {
            return Err(ShmError::BadLayout(format!(
                "object limit {} outside 1..={max_heap}",
                settings.max_object
            )));
        }
        Ok(Region::new(map, geo, settings, attach))
    }

    /// Opens (or creates) the region file at `path`. See `Builder::open`. A file that is not
    /// to be trusted (`Owner::check_region`) is refused, never replaced.
    pub(crate) fn open_file(
        path: &Path,
        geo: Geometry,
        settings: Settings,
        recreate: bool,
        attach: &Attach,
    ) -> Result<(Region, Opened), ShmError> {
        let io = |op, e| ShmError::io(op, Some(path), e);
        let owner = attach.owner;
        // Each turn either ends or found the path changed under it (another creator won the
        // race, a stale file was replaced): bounded, as something may keep removing the file.
        for _ in 0..16 {
            let found = file::open_checked(path, true, |md| owner.check_region(path, md))?;
            let Some(file) = found else {
                let (new, region) = Self::create(path, geo, settings, attach)?;
                if new.place(path)? {
                    return Ok((region, Opened::Created));
                }
                continue;
            };
            // The file lock serialises the checks of attaching (and a re-initialisation of
            // locks after a reboot); a file replaced while we waited for it is opened again.
            let lock = FileLock::exclusive(&file).map_err(|e| io("flock", e))?;
            if !same_file(&file, path) {
                continue;
            }
            let len = file.metadata().map_err(|e| io("fstat", e))?.len();
            if len == 0 {
                // Ours, and empty: made by something that stopped before writing a region.
                let (new, region) = Self::create(path, geo, settings, attach)?;
                new.replace(path)?;
                return Ok((region, Opened::Created));
            }
            let attached = Mapping::map(Some(&file), len as usize)
                .map_err(|e| io("mmap", e))
                .and_then(|map| Region::validate(map, len, attach))
                .map(|region| region.of_file(&file))
                .and_then(|region| {
                    region.matches(&geo, &settings)?;
                    let note = region.after_attach(path)?;
                    Ok((region, note))
                });
            return match attached {
                Ok((region, note)) => {
                    // Reported once the file lock is released (the report may open the cache).
                    drop(lock);
                    if let Some(note) = note {
                        (region.report)(&note);
                    }
                    Ok((region, Opened::Attached))
                }
                Err(e) if recreate => {
                    // Replace the file (ours, checked above): processes still attached to the
                    // old one keep their (now unlinked) region; new processes get the new one.
                    let reason = e.to_string();
                    let (new, region) = Self::create(path, geo, settings, attach)?;
                    new.replace(path)?;
                    Ok((region, Opened::Recreated(reason)))
                }
                Err(e) => Err(e),
            };
        }
        Err(io(
            "open",
            io::Error::new(
                io::ErrorKind::Interrupted,
                "the file kept changing while it was being opened",
            ),
        ))
    }

    /// Attaches to an existing region file, whatever its configuration (still refusing a file
    /// that is not to be trusted).
    pub(crate) fn attach_file(path: &Path, attach: &Attach) -> Result<Region, ShmError> {
        let io = |op, e| ShmError::io(op, Some(path), e);
        let owner = attach.owner;
        let file = file::open_checked(path, true, |md| owner.check_region(path, md))?
            .ok_or_else(|| io("open", io::Error::from(io::ErrorKind::NotFound)))?;
        let lock = FileLock::exclusive(&file).map_err(|e| io("flock", e))?;
        let len = file.metadata().map_err(|e| io("fstat", e))?.len();
        if len < HEADER_SIZE as u64 {
            return Err(ShmError::Truncated {
                expected: HEADER_SIZE as u64,
                found: len,
            });
        }
        let map = Mapping::map(Some(&file), len as usize).map_err(|e| io("mmap", e))?;
        let region = Region::validate(map, len, attach)?.of_file(&file);
        let note = region.after_attach(path)?;
        drop(lock);
        if let Some(note) = note {
            (region.report)(&note);
        }
        Ok(region)
    }

    /// A new region beside `path` under a temporary name: owned as configured, every page
    /// reserved, initialised; not yet at `path`.
    fn create(
        path: &Path,
        geo: Geometry,
        settings: Settings,
        attach: &Attach,
    ) -> Result<(NewFile, Region), ShmError> {
        let owner = attach.owner;
        let new = NewFile::create(path, owner.mode(), Some((owner.uid, owner.gid)))?;
        file::reserve(&new.file, geo.total() as u64, Some(path))?;
        let map = Mapping::map(Some(&new.file), geo.total())
            .map_err(|e| ShmError::io("mmap", Some(path), e))?;
        let region = Region::new(map, geo, settings, attach).of_file(&new.file);
        region.init()?;
        Ok((new, region))
    }

    /// The region, mapped from `file`.
    fn of_file(mut self, file: &File) -> Region {
        use std::os::unix::fs::MetadataExt;
        self.file_id = file.metadata().ok().map(|m| (m.dev(), m.ino()));
        self
    }

    /// Whether the region is what the configuration asks for.
    fn matches(&self, geo: &Geometry, settings: &Settings) -> Result<(), ShmError> {
        if self.geo != *geo {
            return Err(ShmError::ConfigMismatch(format!(
                "region has {} shards x {} slots x {} heap units, {} tag slots, a journal of {} bytes; configured {} x {} x {}, {}, {}",
                self.geo.shards, self.geo.slots, self.geo.heap_units, self.geo.tag_slots,
                self.geo.journal_bytes, geo.shards, geo.slots, geo.heap_units, geo.tag_slots,
                geo.journal_bytes
            )));
        }
        let mine = Settings {
            seed: self.settings.seed,
            ..*settings
        };
        if self.settings != mine {
            return Err(ShmError::ConfigMismatch(format!(
                "lifecycle settings differ: region {:?}, configured {:?}",
                self.settings, mine
            )));
        }
        Ok(())
    }

    /// After a reboot, a file region's locks name holders of another boot and its clock
    /// offset another boot's monotonic clock: reset both (under the file lock), and check
    /// every shard. Lock words this crate did not initialise in this boot (no stamp) are not
    /// trusted either: initialised again the same way. Returns what to report, if anything.
    fn after_attach(&self, path: &Path) -> Result<Option<String>, ShmError> {
        let m = &self.map;
        let boot = boot_id();
        let same_boot = m.u64(H_BOOT_ID).load(Ordering::Acquire) == boot;
        if same_boot && m.u64(H_LOCK_STAMP).load(Ordering::Acquire) == lock_stamp(boot) {
            return Ok(None);
        }
        self.init_locks()?;
        let note = format!(
            "peakcache-shm: region {}: its locks {}; initialised again and every shard checked",
            path.display(),
            if same_boot {
                "were not initialised by peakcache in this boot"
            } else {
                "come from another boot"
            }
        );
        if !same_boot {
            // Region time continues from the wall time elapsed since creation, so entries
            // keep their age across the reboot.
            let since = wall_nanos().saturating_sub(m.u64(H_CREATED_WALL).load(Ordering::Relaxed));
            m.u64(H_MONO_OFFSET).store(
                since
                    .saturating_add(TIME_START)
                    .wrapping_sub(SystemClock::host_nanos()),
                Ordering::Relaxed,
            );
        }
        for shard in 0..self.geo.shards as usize {
            crate::shard::mark_dirty(self, shard);
        }
        m.u64(H_LOCK_STAMP)
            .store(lock_stamp(boot), Ordering::Release);
        m.u64(H_BOOT_ID).store(boot, Ordering::Release);
        Ok(Some(note))
    }
}

/// Whether `path` still names the file open as `file`.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// `flock(LOCK_EX)` held until dropped.
struct FileLock(libc::c_int);

impl FileLock {
    fn exclusive(file: &File) -> io::Result<FileLock> {
        let fd = file.as_raw_fd();
        loop {
            // SAFETY: `fd` is an open descriptor owned by `file`, which outlives the lock.
            if unsafe { libc::flock(fd, libc::LOCK_EX) } == 0 {
                return Ok(FileLock(fd));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: the descriptor is still open (the lock is dropped before its file).
        unsafe { libc::flock(self.0, libc::LOCK_UN) };
    }
}
