//! The purge journal: every purge made by any process attached to a region (a key, a tag,
//! everything, hard or soft; freeze and thaw) appended to a bounded ring in the region, so that
//! one process of the host (the cluster agent) can follow it and tell other hosts.
//!
//! # Writing
//!
//! An append takes the journal's robust mutex (bounded like every lock of the region), writes
//! the record at the head, and only then moves the head on (a release store): a writer that
//! dies inside never publishes what it half wrote, and the next writer writes over it. Before
//! writing over the oldest records, the writer moves the *oldest* mark past them (before its
//! first byte, behind a release fence), so a reader copying those bytes at the same time learns
//! they were overwritten (the seqlock pattern of the shards' optimistic reads). A purge that
//! cannot be recorded (the lock held by a stopped process past the bound, an argument longer
//! than a quarter of the ring) is counted instead, without the lock: a reader learns it lost
//! one. The purge itself is made whether or not it was recorded.
//!
//! # Reading
//!
//! Readers take no lock and write nothing to the ring: they follow it from a
//! [`JournalCursor`] and copy each record out, trusting it only if the oldest mark is still
//! behind it afterwards, its position matches and its checksum holds. What they cannot read
//! comes out as [`JournalEvent::Lost`] (overwritten before it was read, not recorded, or torn),
//! so the follower can do what the cluster does when it misses purges: mark everything stale.
//!
//! # Record
//!
//! ```text
//! 0   position   u64   where the record starts (its lap of the ring included)
//! 8   sequence   u64   records before it in this region
//! 16  info       u32   op (4 bits: key, tag, everything, freeze, thaw, padding), soft, cluster
//! 20  length     u32   argument bytes
//! 24  size       u32   bytes the record takes (header, argument, padding to 8)
//! 28  pid        u32   the process that purged
//! 32  checksum   u64   over bytes 0..32 and the argument
//! 40  argument   the key or the tag
//! ```
//!
//! A record never wraps: one that does not fit before the ring's end is preceded by a padding
//! record to the end (or nothing, when fewer than 40 bytes are left) and starts the next lap.

use crate::futex;
use crate::hash;
use crate::mutex;
use crate::process;
use crate::region::{
    Region, H_F_OWNER, H_F_STATE, H_J_HEAD, H_J_MUTEX, H_J_OLDEST, H_J_REPAIR, H_J_SEQ,
    H_J_SLEEPERS, H_J_UNRECORDED, H_J_WAKE,
};
use bytes::Bytes;
use peakcache::PurgeMode;
use std::fmt;
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

/// Bytes of a record's header.
const RECORD_HEADER: usize = 40;
/// Bytes of the header that the checksum covers (all but the checksum).
const CHECKED_HEADER: usize = 32;

const OP_KEY: u32 = 1;
const OP_TAG: u32 = 2;
const OP_EVERYTHING: u32 = 3;
const OP_FREEZE: u32 = 4;
const OP_THAW: u32 = 5;
const OP_PADDING: u32 = 15;
const OP_MASK: u32 = 0xf;
const INFO_SOFT: u32 = 1 << 4;
const INFO_CLUSTER: u32 = 1 << 5;

/// The largest state a follower keeps in the region ([`Follower::save`]).
pub const FOLLOWER_STATE_MAX: usize = 128;
/// The seed of the follower state's checksum.
const STATE_SEED: u64 = 0x0073_7461_7465;
/// Bytes of one of the two copies of the follower's state: generation, length, state,
/// checksum.
pub(crate) const STATE_COPY: usize = 16 + FOLLOWER_STATE_MAX + 8;

/// Where a purge came from: the host itself, or the cluster (applied by the agent from the
/// bus). The agent publishes only local purges, so the cluster's never travel back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PurgeOrigin {
    /// Made on this host (a worker's purge, a PHP `purgeTag`, an invalidation).
    #[default]
    Local,
    /// Applied from the cluster's purge bus: already known to every host.
    Cluster,
}

/// What a journal record purged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalOp {
    /// One key (`ShmCache::purge`).
    Key(Bytes),
    /// Every entry carrying a tag (`ShmCache::purge_tag`).
    Tag(Bytes),
    /// Every entry: hard is `ShmCache::clear`, soft `ShmCache::purge_everything(Soft)`.
    Everything,
    /// `ShmCache::freeze(true)`.
    Freeze,
    /// `ShmCache::freeze(false)`.
    Thaw,
}

/// One purge as the journal recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalRecord {
    /// Its number: records before it in this region's journal.
    pub seq: u64,
    /// What it purged.
    pub op: JournalOp,
    /// Hard or soft (`Hard` for freeze and thaw).
    pub mode: PurgeMode,
    /// Who made it.
    pub origin: PurgeOrigin,
    /// The process that made it.
    pub pid: u32,
}

/// Why a reader lost purges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LostReason {
    /// Overwritten by newer records before the reader read them (it fell behind the ring).
    Overwritten,
    /// Not recorded at all: the journal's lock was held past the bound by a stopped process,
    /// or the argument was longer than a quarter of the ring.
    Unrecorded,
    /// A record failed its checks (damaged memory, a page lost with a disk region's file):
    /// skipped, never trusted.
    Torn,
}

impl LostReason {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            LostReason::Overwritten => "overwritten",
            LostReason::Unrecorded => "unrecorded",
            LostReason::Torn => "torn",
        }
    }
}

/// What a reader gets from the journal, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalEvent {
    /// A purge.
    Record(JournalRecord),
    /// Purges the reader cannot know: it should act as if anything was purged (the cluster
    /// agent publishes a soft purge of everything).
    Lost {
        /// How many, at least one (a count the reader could not know exactly is a guess).
        purges: u64,
        /// Why.
        why: LostReason,
    },
}

/// A reader's place in the journal: the next record's position and number, and the count of
/// unrecorded purges already reported. Plain data, saved with [`to_bytes`](Self::to_bytes)
/// (for instance in the follower's state) to go on after a restart.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalCursor {
    pos: u64,
    seq: u64,
    unrecorded: u64,
}

impl JournalCursor {
    /// Bytes of [`to_bytes`](Self::to_bytes).
    pub const BYTES: usize = 24;

    /// The number of the next record to read.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The cursor as bytes, for [`from_bytes`](Self::from_bytes).
    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut out = [0; Self::BYTES];
        for (chunk, v) in out
            .chunks_exact_mut(8)
            .zip([self.pos, self.seq, self.unrecorded])
        {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// A cursor saved by [`to_bytes`](Self::to_bytes); `None` if `bytes` is not one. A cursor
    /// that does not belong to the region it is used on is harmless: the reader reports what
    /// it cannot account for as lost.
    pub fn from_bytes(bytes: &[u8]) -> Option<JournalCursor> {
        if bytes.len() != Self::BYTES {
            return None;
        }
        let w = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        Some(JournalCursor {
            pos: w(0),
            seq: w(1),
            unrecorded: w(2),
        })
    }
}

/// Another process follows the region already (see [`ShmCache::follow`](crate::ShmCache::follow)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerBusy {
    /// Its pid.
    pub pid: u32,
}

impl fmt::Display for FollowerBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "another process (pid {}) follows this region's purge journal already",
            self.pid
        )
    }
}

impl std::error::Error for FollowerBusy {}

const fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// The journal of one region.
pub(crate) struct Journal<'a> {
    r: &'a Region,
}

impl<'a> Journal<'a> {
    pub(crate) fn new(r: &'a Region) -> Self {
        Journal { r }
    }

    fn cap(&self) -> u64 {
        self.r.geo.journal_bytes as u64
    }

    fn ring(&self) -> usize {
        self.r.geo.journal_off()
    }

    fn word(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        self.r.map.u64(off)
    }

    /// Records a purge. Never fails: a purge that cannot be recorded is counted as unrecorded,
    /// which the reader reports as lost.
    pub(crate) fn append(&self, op: &JournalOp, mode: PurgeMode, origin: PurgeOrigin) {
        let arg: &[u8] = match op {
            JournalOp::Key(b) | JournalOp::Tag(b) => b,
            _ => &[],
        };
        let size = align8(RECORD_HEADER + arg.len());
        if size as u64 > self.cap() / 4 || !self.lock() {
            self.word(H_J_UNRECORDED).fetch_add(1, Ordering::SeqCst);
            self.wake();
            return;
        }
        let mut info = match op {
            JournalOp::Key(_) => OP_KEY,
            JournalOp::Tag(_) => OP_TAG,
            JournalOp::Everything => OP_EVERYTHING,
            JournalOp::Freeze => OP_FREEZE,
            JournalOp::Thaw => OP_THAW,
        };
        if mode == PurgeMode::Soft {
            info |= INFO_SOFT;
        }
        if origin == PurgeOrigin::Cluster {
            info |= INFO_CLUSTER;
        }
        let mut head = self.word(H_J_HEAD).load(Ordering::Relaxed);
        let room = self.cap() - head % self.cap();
        if room < size as u64 {
            // Not before the ring's end: pad to it, start the next lap.
            if room >= RECORD_HEADER as u64 {
                self.make_room(head + room);
                self.write(head, 0, OP_PADDING, &[], room as u32);
            }
            head += room;
        }
        self.make_room(head + size as u64);
        let seq = self.word(H_J_SEQ).load(Ordering::Relaxed);
        self.write(head, seq, info, arg, size as u32);
        self.word(H_J_SEQ).store(seq + 1, Ordering::SeqCst);
        self.word(H_J_HEAD)
            .store(head + size as u64, Ordering::Release);
        self.r.map.mutex(H_J_MUTEX).unlock();
        self.wake();
    }

    /// Takes the journal's lock, bounded (a holder that died leaves nothing to repair: it never
    /// moved the head past what it was writing).
    fn lock(&self) -> bool {
        let repaired = || {
            self.r.defer_report(
                "peakcache-shm: the purge journal's lock was left unrecoverable; initialised again"
                    .to_string(),
            )
        };
        match mutex::lock_repairing(
            self.r.map.mutex(H_J_MUTEX),
            self.r.map.u64(H_J_REPAIR),
            self.r.lock_bound,
            || {},
            repaired,
        ) {
            Ok(_) => true,
            Err(e) => {
                // Perhaps asked with a shard lock held: reported by the next caller.
                if let Some(line) = self.r.lock_failure("the purge journal", &e) {
                    self.r.defer_report(line);
                }
                false
            }
        }
    }

    /// Calls `f` holding the journal's lock, after half a record of garbage at the head if
    /// `scribble` (test support).
    pub(crate) fn with_lock(&self, scribble: bool, f: impl FnOnce()) {
        if !self.lock() {
            return;
        }
        if scribble {
            let head = self.word(H_J_HEAD).load(Ordering::Relaxed);
            let room = self.cap() - head % self.cap();
            let len = room.min(64) as usize & !7;
            let off = self.ring() + (head % self.cap()) as usize;
            self.r.map.write(off, &vec![0x5a; len]);
        }
        f();
        self.r.map.mutex(H_J_MUTEX).unlock();
    }

    /// Moves the oldest mark so that `[end - cap, end)` may be written, then fences: a reader
    /// that copies bytes written after this sees the new mark when it checks.
    fn make_room(&self, end: u64) {
        let oldest = self.word(H_J_OLDEST);
        let need = end.saturating_sub(self.cap());
        if oldest.load(Ordering::Relaxed) < need {
            oldest.store(need, Ordering::Relaxed);
        }
        fence(Ordering::Release);
    }

    fn write(&self, pos: u64, seq: u64, info: u32, arg: &[u8], size: u32) {
        let off = self.ring() + (pos % self.cap()) as usize;
        let mut header = [0u8; RECORD_HEADER];
        header[0..8].copy_from_slice(&pos.to_le_bytes());
        header[8..16].copy_from_slice(&seq.to_le_bytes());
        header[16..20].copy_from_slice(&info.to_le_bytes());
        header[20..24].copy_from_slice(&(arg.len() as u32).to_le_bytes());
        header[24..28].copy_from_slice(&size.to_le_bytes());
        header[28..32].copy_from_slice(&std::process::id().to_le_bytes());
        let sum = checksum(&header[..CHECKED_HEADER], arg);
        header[32..40].copy_from_slice(&sum.to_le_bytes());
        self.r.map.write(off, &header);
        self.r.map.write(off + RECORD_HEADER, arg);
    }

    /// Wakes a follower sleeping in `wait`.
    fn wake(&self) {
        let wake = self.r.map.u32(H_J_WAKE);
        wake.fetch_add(1, Ordering::SeqCst);
        if self.r.map.u32(H_J_SLEEPERS).load(Ordering::SeqCst) != 0 {
            futex::wake_all(wake);
        }
    }

    /// A cursor at the end of the journal: what a reader that starts now has not seen.
    pub(crate) fn end(&self) -> JournalCursor {
        let unrecorded = self.word(H_J_UNRECORDED).load(Ordering::SeqCst);
        let head = self.word(H_J_HEAD).load(Ordering::Acquire);
        JournalCursor {
            pos: head,
            seq: self.word(H_J_SEQ).load(Ordering::SeqCst),
            unrecorded,
        }
    }

    /// Whether anything happened after `cursor`.
    fn has_news(&self, cursor: &JournalCursor) -> bool {
        self.word(H_J_HEAD).load(Ordering::Acquire) != cursor.pos
            || self.word(H_J_UNRECORDED).load(Ordering::SeqCst) != cursor.unrecorded
    }

    /// Sleeps until something is appended after `cursor`, at most `timeout`.
    pub(crate) fn wait(&self, cursor: &JournalCursor, timeout: Duration) {
        let wake = self.r.map.u32(H_J_WAKE);
        let seen = wake.load(Ordering::SeqCst);
        if self.has_news(cursor) {
            return;
        }
        let sleepers = self.r.map.u32(H_J_SLEEPERS);
        sleepers.fetch_add(1, Ordering::SeqCst);
        // A writer that appended after `seen` was loaded changed the word: no sleep then.
        futex::wait(wake, seen, timeout);
        sleepers.fetch_sub(1, Ordering::SeqCst);
    }

    /// Appends to `out` what follows `cursor` (at most `max` records, and what was lost), and
    /// moves the cursor past it.
    pub(crate) fn read(&self, cursor: &mut JournalCursor, max: usize, out: &mut Vec<JournalEvent>) {
        let unrecorded = self.word(H_J_UNRECORDED).load(Ordering::SeqCst);
        if unrecorded != cursor.unrecorded {
            out.push(JournalEvent::Lost {
                purges: unrecorded
                    .wrapping_sub(cursor.unrecorded)
                    .clamp(1, u64::MAX / 2),
                why: LostReason::Unrecorded,
            });
            cursor.unrecorded = unrecorded;
        }
        let mut records = 0;
        let mut arg = Vec::new();
        while records < max {
            let head = self.word(H_J_HEAD).load(Ordering::Acquire);
            if cursor.pos == head {
                break;
            }
            if cursor.pos > head {
                // Not this journal's cursor (saved from another region): nothing it names can
                // be trusted.
                self.lose(cursor, head, LostReason::Torn, out);
                continue;
            }
            let room = self.cap() - cursor.pos % self.cap();
            if room < RECORD_HEADER as u64 {
                cursor.pos += room;
                continue;
            }
            match self.copy(cursor.pos, head, room, &mut arg) {
                Copied::Overwritten => self.lose(cursor, head, LostReason::Overwritten, out),
                Copied::Damaged(None) => self.lose(cursor, head, LostReason::Torn, out),
                Copied::Damaged(Some(size)) => {
                    // Its bounds look right: skip it alone (if they were wrong after all, the
                    // next record's position does not match and the rest is skipped).
                    out.push(JournalEvent::Lost {
                        purges: 1,
                        why: LostReason::Torn,
                    });
                    cursor.pos += u64::from(size);
                    cursor.seq += 1;
                }
                Copied::Padding(size) => cursor.pos += u64::from(size),
                Copied::Record(h) => {
                    cursor.pos += u64::from(h.size);
                    let Some(op) = decode(h.info, &arg) else {
                        out.push(JournalEvent::Lost {
                            purges: 1,
                            why: LostReason::Torn,
                        });
                        cursor.seq = h.seq + 1;
                        continue;
                    };
                    if h.seq > cursor.seq {
                        out.push(JournalEvent::Lost {
                            purges: h.seq - cursor.seq,
                            why: LostReason::Overwritten,
                        });
                    }
                    cursor.seq = h.seq + 1;
                    out.push(JournalEvent::Record(JournalRecord {
                        seq: h.seq,
                        op,
                        mode: if h.info & INFO_SOFT != 0 {
                            PurgeMode::Soft
                        } else {
                            PurgeMode::Hard
                        },
                        origin: if h.info & INFO_CLUSTER != 0 {
                            PurgeOrigin::Cluster
                        } else {
                            PurgeOrigin::Local
                        },
                        pid: h.pid,
                    }));
                    records += 1;
                }
            }
        }
    }

    /// The records from `cursor` to `head` cannot be read: report them lost, go on at `head`.
    fn lose(
        &self,
        cursor: &mut JournalCursor,
        head: u64,
        why: LostReason,
        out: &mut Vec<JournalEvent>,
    ) {
        let seq = self.word(H_J_SEQ).load(Ordering::SeqCst);
        out.push(JournalEvent::Lost {
            purges: seq.saturating_sub(cursor.seq).max(1),
            why,
        });
        cursor.pos = head;
        cursor.seq = seq;
    }

    /// Copies the record at `pos` (before `head`, with `room` bytes to the ring's end) out of
    /// the ring: its argument into `arg`, its header returned once checked.
    fn copy(&self, pos: u64, head: u64, room: u64, arg: &mut Vec<u8>) -> Copied {
        let off = self.ring() + (pos % self.cap()) as usize;
        let mut words = [0u64; RECORD_HEADER / 8];
        let read = self.r.map.read_words_racy(off, &mut words);
        let h = Header::of(&words);
        let size = u64::from(h.size);
        let plausible = read.is_some()
            && h.pos == pos
            && size % 8 == 0
            && size >= RECORD_HEADER as u64
            && size <= room
            && pos + size <= head
            && (h.info & OP_MASK == OP_PADDING
                || size == align8(RECORD_HEADER + h.len as usize) as u64);
        arg.clear();
        let copied = plausible
            && self
                .r
                .map
                .extend_racy(off + RECORD_HEADER, h.len as usize, arg)
                .is_some();
        // Everything above may be torn; the oldest mark says whether it was being overwritten.
        fence(Ordering::Acquire);
        if self.word(H_J_OLDEST).load(Ordering::Relaxed) > pos {
            return Copied::Overwritten;
        }
        if !copied {
            return Copied::Damaged(None);
        }
        let mut bytes = [0u8; CHECKED_HEADER];
        for (chunk, w) in bytes.chunks_exact_mut(8).zip(&words[..4]) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        if checksum(&bytes, arg) != words[4] {
            return Copied::Damaged(Some(h.size));
        }
        if h.info & OP_MASK == OP_PADDING {
            return Copied::Padding(h.size);
        }
        Copied::Record(h)
    }
}

/// A record's header, as read.
#[derive(Clone, Copy)]
struct Header {
    pos: u64,
    seq: u64,
    info: u32,
    len: u32,
    size: u32,
    pid: u32,
}

impl Header {
    fn of(w: &[u64; RECORD_HEADER / 8]) -> Header {
        Header {
            pos: w[0],
            seq: w[1],
            info: w[2] as u32,
            len: (w[2] >> 32) as u32,
            size: w[3] as u32,
            pid: (w[3] >> 32) as u32,
        }
    }
}

enum Copied {
    Record(Header),
    Padding(u32),
    Overwritten,
    /// Failed its checks; with its size if its bounds were plausible.
    Damaged(Option<u32>),
}

fn checksum(header: &[u8], arg: &[u8]) -> u64 {
    let mut c = hash::Checksum::new();
    c.add(header);
    c.add(arg);
    c.finish()
}

fn decode(info: u32, arg: &[u8]) -> Option<JournalOp> {
    let arg = || Bytes::copy_from_slice(arg);
    Some(match info & OP_MASK {
        OP_KEY => JournalOp::Key(arg()),
        OP_TAG => JournalOp::Tag(arg()),
        OP_EVERYTHING => JournalOp::Everything,
        OP_FREEZE => JournalOp::Freeze,
        OP_THAW => JournalOp::Thaw,
        _ => return None,
    })
}

/// The claim of one process to follow a region's journal, with the state it keeps in the
/// region (typically its [`JournalCursor`] and its place on the cluster's bus), so that a
/// follower started again goes on where the last one stopped. Released when dropped.
pub struct Follower {
    cache: crate::ShmCache,
    me: u64,
}

impl Follower {
    pub(crate) fn new(cache: crate::ShmCache, me: u64) -> Self {
        Follower { cache, me }
    }

    /// The region followed.
    pub fn cache(&self) -> &crate::ShmCache {
        &self.cache
    }

    /// The state the last follower of this region saved, if any (a copy whose checksum fails,
    /// written by a follower killed while saving, is skipped for the one before it).
    pub fn state(&self) -> Option<Vec<u8>> {
        self.cache.follower_state()
    }

    /// Saves `state` (at most [`FOLLOWER_STATE_MAX`] bytes) in the region. False, and nothing
    /// saved, if it is longer.
    pub fn save(&self, state: &[u8]) -> bool {
        if state.len() > FOLLOWER_STATE_MAX {
            return false;
        }
        self.cache.save_follower_state(state);
        true
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.cache.release_follower(self.me);
    }
}

/// This process as a follower: pid in the low 22 bits (Linux pids stay below 2^22), start time
/// above, so that one compare-and-swap claims the region and a reused pid is not taken for
/// the follower.
fn follower_word((pid, start): (u32, u64)) -> u64 {
    (start << 22) | u64::from(pid & ((1 << 22) - 1))
}

/// Claims the region's follower word for this process.
pub(crate) fn claim(r: &Region) -> Result<u64, FollowerBusy> {
    let me = follower_word(process::me());
    let word = r.map.u64(H_F_OWNER);
    loop {
        let current = word.load(Ordering::SeqCst);
        if current != 0 && current != me {
            let pid = (current & ((1 << 22) - 1)) as u32;
            if process::alive(pid, current >> 22) {
                return Err(FollowerBusy { pid });
            }
        }
        if word
            .compare_exchange(current, me, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return Ok(me);
        }
    }
}

/// Gives the follower word up, if this process still holds it.
pub(crate) fn release(r: &Region, me: u64) {
    let _ = r
        .map
        .u64(H_F_OWNER)
        .compare_exchange(me, 0, Ordering::SeqCst, Ordering::SeqCst);
}

/// The follower's saved state: the valid copy with the higher generation.
pub(crate) fn load_state(r: &Region) -> Option<Vec<u8>> {
    (0..2)
        .filter_map(|k| read_copy(r, H_F_STATE + k * STATE_COPY))
        .max_by_key(|(generation, _)| *generation)
        .map(|(_, state)| state)
}

/// Saves the follower's state into the older copy, so that a follower killed while saving
/// leaves the previous state readable.
pub(crate) fn save_state(r: &Region, state: &[u8]) {
    let copies = [H_F_STATE, H_F_STATE + STATE_COPY];
    let generations = copies.map(|off| read_copy(r, off).map_or(0, |(g, _)| g));
    let (target, newest) = if generations[0] <= generations[1] {
        (copies[0], generations[1])
    } else {
        (copies[1], generations[0])
    };
    let mut bytes = [0u8; STATE_COPY];
    bytes[0..8].copy_from_slice(&(newest + 1).to_le_bytes());
    bytes[8..16].copy_from_slice(&(state.len() as u64).to_le_bytes());
    bytes[16..16 + state.len()].copy_from_slice(state);
    let sum = hash::hash(STATE_SEED, &bytes[..16 + FOLLOWER_STATE_MAX]);
    bytes[16 + FOLLOWER_STATE_MAX..].copy_from_slice(&sum.to_le_bytes());
    r.map.write(target, &bytes);
}

fn read_copy(r: &Region, off: usize) -> Option<(u64, Vec<u8>)> {
    let mut words = [0u64; STATE_COPY / 8];
    r.map.read_words_racy(off, &mut words)?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
    let (generation, len) = (word(0), word(8) as usize);
    let sum = hash::hash(STATE_SEED, &bytes[..16 + FOLLOWER_STATE_MAX]);
    (generation != 0 && len <= FOLLOWER_STATE_MAX && word(16 + FOLLOWER_STATE_MAX) == sum)
        .then(|| (generation, bytes[16..16 + len].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_its_bytes() {
        let c = JournalCursor {
            pos: 1 << 40,
            seq: 7,
            unrecorded: 3,
        };
        assert_eq!(JournalCursor::from_bytes(&c.to_bytes()), Some(c));
        assert_eq!(JournalCursor::from_bytes(&[1, 2, 3]), None);
    }

    #[test]
    fn the_follower_word_keeps_pid_and_start_apart() {
        let w = follower_word((4_000_000, 123_456_789));
        assert_eq!(w & ((1 << 22) - 1), 4_000_000);
        assert_eq!(w >> 22, 123_456_789);
    }

    #[test]
    fn every_op_decodes_to_itself() {
        assert_eq!(
            decode(OP_KEY, b"k"),
            Some(JournalOp::Key(Bytes::from_static(b"k")))
        );
        assert_eq!(decode(OP_THAW | INFO_SOFT, b""), Some(JournalOp::Thaw));
        assert_eq!(decode(OP_PADDING, b""), None);
        assert_eq!(decode(9, b""), None);
    }
}
