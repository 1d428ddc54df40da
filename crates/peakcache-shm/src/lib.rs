//! # peakcache-shm
//!
//! The shared-memory tier of peakcache: one cache in a shared memory region, attached by every
//! process of the host at once (nginx workers, PHP-FPM workers), with the entry lifecycle of the
//! in-process [`peakcache::Cache`]: [`ShmCache::lookup`] answers
//! `Fresh | Stale(hit, Option<Refresh>) | Miss(Fill) | Wait(Waiter) | Pass`, with single flight,
//! stale-while-revalidate, stale-if-error with back-off, pass-through after an uncacheable
//! answer and a lock timeout, **across processes**. Values are bytes plus a `u32` flags word,
//! copied out under the shard lock: nothing a reader holds changes afterwards.
//!
//! - [Quick start](#quick-start)
//! - [Region layout](#region-layout)
//! - [Memory per entry](#memory-per-entry)
//! - [Locking, waiting, crash recovery](#locking-waiting-crash-recovery)
//! - [What survives a crash, a restart and a reboot](#what-survives-a-crash-a-restart-and-a-reboot)
//! - [Differences from the in-process cache](#differences-from-the-in-process-cache)
//!
//! ## Quick start
//!
//! ```
//! use peakcache_shm::{Freshness, Lookup, Resolved, ShmCache};
//! use std::time::Duration;
//!
//! # let dir = std::env::temp_dir().join(format!("pc-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let path = dir.join("cache.shm");
//! // In every process: the first creates the file, the others attach to it.
//! let (cache, _opened) = ShmCache::builder().max_bytes(16 << 20).open(&path)?;
//! let ttl = Freshness::new(Duration::from_secs(60)).with_swr(Duration::from_secs(30));
//! let page = match cache.lookup(b"/home") {
//!     Lookup::Fresh(hit) | Lookup::Stale(hit, None) => hit.into_value().to_vec(),
//!     Lookup::Stale(hit, Some(refresh)) => {
//!         let _ = refresh.commit(b"new home", ttl); // in the background, really
//!         hit.into_value().to_vec()
//!     }
//!     Lookup::Miss(fill) => {
//!         let page = b"home".to_vec(); // fetched from the origin
//!         let _ = fill.commit(&page, ttl);
//!         page
//!     }
//!     Lookup::Wait(waiter) => match waiter.wait(Duration::from_secs(5)) {
//!         Resolved::Hit(hit) => hit.into_value().to_vec(),
//!         _ => b"home".to_vec(), // fetch for yourself
//!     },
//!     Lookup::Pass => b"home".to_vec(),
//! };
//! assert_eq!(page, b"home");
//! assert_eq!(cache.get(b"/home").as_deref(), Some(&b"home"[..]));
//! # drop(cache); std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [`Builder::anonymous`] makes the region in an anonymous shared mapping instead, to create
//! before `fork()` (nginx's master, PHP-FPM's master at module start).
//!
//! ## Region layout
//!
//! Everything inside the region is addressed by offsets, never pointers, and every offset and
//! length read from it is bounds-checked before use: the region is treated as untrusted input
//! (another process may have died half-way through a write).
//!
//! ```text
//! 0        header (4 KiB)
//!            fixed, checksummed: magic "PEAKSHM\0", layout version, header size, total size,
//!              shard count, slots per shard, heap units per shard, tag slots, derived
//!              offsets, lock timeout, back-off, refresh retry, object limit, hash seed, flags,
//!              creation wall time, checksum of all of these
//!            mutable: ready word, frozen, global sequence, tag epoch, region clock word,
//!              boot id, monotonic offset, the cache-wide tag mark, the tag table's robust
//!              mutex, tag purge count
//! 4 KiB    tag table: tag slots x 80 bytes (tag hash, last hard purge, last 4 soft purges)
//! ...      shards, each aligned to 4 KiB:
//!            shard header (1 KiB): robust mutex, dirty flag, CLOCK hand, entry and byte
//!              counts, buddy allocator free-list heads, the shard's counters
//!            index: slots x 64 bytes, open addressing with linear probing, backward-shift
//!              deletion; a slot holds the key hash, the record's offset, CLOCK bits, the
//!              flight state (owner pid and start time, flight id, deadline, outcome), the
//!              futex word its waiters sleep on, back-off and pass-through instants
//!            bitmap: one bit per 64-byte heap unit, set where a free block starts
//!            heap: 64-byte units; a record is an 80-byte header (lengths, hash, store time,
//!              windows, flags, tag sequence, checksum), its tag hashes, key and value; free
//!              space is managed by a buddy allocator whose blocks are trimmed to the record's
//!              size rounded up to 64 bytes
//! ```
//!
//! Attaching checks the magic, the version, the header checksum, that every derived offset and
//! the total size follow from the geometry, and that the file is as long as the header says;
//! a failure is a [`ShmError`] naming the problem, never undefined behaviour.
//!
//! ## Memory per entry
//!
//! An entry costs its record, `80 + 8 x tags + key + value` bytes rounded up to 64, counted
//! against [`Builder::max_bytes`] (the heap), plus its index slot, 64 bytes, with the index at
//! most 7/8 full (sized by [`Builder::max_entries`], by default one slot per 256 bytes of heap):
//! about 73 to 146 bytes of index per entry at capacity. A 1 KiB value under a 40-byte key
//! takes 1,152 + 73..146 bytes. Fixed costs: a 4 KiB header, 80 bytes per tag slot (320 KiB for
//! the default 4,096), 1 KiB per shard and a bitmap of 1/512 of the heap.
//!
//! ## Locking, waiting, crash recovery
//!
//! - **Locks.** One `pthread_mutex_t` per shard (and one for the tag table), initialised
//!   `PTHREAD_PROCESS_SHARED` and `PTHREAD_MUTEX_ROBUST`. Every operation on a key takes its
//!   shard's lock once; a read copies the value out under it (a 1 KiB copy).
//! - **Crash inside a lock.** The kernel releases a dead holder's robust mutex; the next locker
//!   gets `EOWNERDEAD`, calls `pthread_mutex_consistent`, and checks the shard before using it:
//!   every slot whose record fails a check (bounds, magic, hash, checksum over header, tags, key
//!   and value) or overlaps another is dropped, the index is re-inserted, the allocator rebuilt
//!   from the gaps between the records kept, and the sizes recounted. A SIGKILL costs the
//!   entries it was writing, never the host. Anything found inconsistent later (an offset out of
//!   range) marks the shard for the same check at its next lock.
//! - **Single flight.** A slot being filled records its owner's pid and start time (from
//!   `/proc/PID/stat`, so a reused pid is not taken for the owner), a flight id and a deadline.
//!   Waiters sleep on the slot's 32-bit futex word (`FUTEX_WAIT` without the private flag, so it
//!   works across processes on the shared mapping) with a timeout, or poll it
//!   ([`Waiter::try_wait`]); every end of a flight bumps the word and wakes them. A waiter that
//!   finds the owner dead (`kill(pid, 0)` fails with `ESRCH`, or the start time differs) takes
//!   the fill over at once; past the lock timeout every waiter is released.
//! - **Eviction.** CLOCK over the index: the hand sweeps the slots; entries past every window
//!   and idle control records go first, others lose one of their two access bits per pass; a
//!   slot with a fill in flight is never evicted. Allocation evicts until the record fits.
//! - **Tags.** A table of tag hash -> purge marks in the region; an entry records its tags'
//!   hashes and the sequence number of its fetch, checked lazily against the marks at lookup
//!   (skipped when the cache-wide tag epoch has not moved since the entry was last checked). A
//!   purge is one mark, whatever the number of entries. When the table is 3/4 full its marks
//!   are folded into one cache-wide mark: over-purging tagged entries, never under-purging.
//! - **Stats** are counters per shard in the region, written under the shard lock: global
//!   across processes, summed by [`ShmCache::stats`].
//!
//! ## What survives a crash, a restart and a reboot
//!
//! | event | what happens |
//! |---|---|
//! | a worker is killed (SIGKILL, segfault) outside the cache | nothing is lost; its fills are taken over by their waiters as soon as one finds it dead, or by the next lookup; its refresh tickets are handed out again after the lock timeout |
//! | a worker is killed inside a shard lock | the next locker checks and rebuilds that shard; the entries being written are dropped, the rest are kept ([`RegionInfo::recoveries`]) |
//! | every process stops and starts again (nginx restart, PHP-FPM reload) | a file region is kept: [`Builder::open`] attaches to it when its header is valid and matches the configuration ([`Opened::Attached`]); otherwise it is replaced and [`Opened::Recreated`] says why. An anonymous region ends with its last process |
//! | reboot | a region under `/dev/shm` is gone (memory); a region file on disk is attached again: its locks are re-initialised, every shard checked, and region time continues from the wall time since creation, so entries keep their age. Or restore a snapshot: [`ShmCache::snapshot`] writes the servable entries shard by shard (each under its lock) to a temporary file renamed into place; [`ShmCache::restore`] validates and loads it into any region, entries keeping their age |
//! | a region file of another version, size or a corrupted one | refused with a [`ShmError`] (`VersionMismatch`, `ConfigMismatch`, `HeaderChecksum`, `Truncated`, `BadMagic`, `BadLayout`); `open` replaces it by default |
//!
//! ## Differences from the in-process cache
//!
//! - Values are bytes and a flags word, copied on every read (no shared references).
//! - A value too large to store is refused ([`StoreError::TooLarge`]) and its waiters get
//!   [`Resolved::Pass`] (the in-process cache hands them the value it could not store).
//! - Waiters block or poll; there is no `Future`.
//! - A refresh ticket whose owner died is handed out again after the lock timeout (the stale
//!   entry is served meanwhile); only fills are taken over at once.
//! - Lifecycle settings (lock timeout, back-off) belong to the region, fixed at creation.
//! - The clock: by default the host's monotonic clock plus an offset kept in the region, the
//!   same in every process; [`Builder::clock`] sets one per attachment (tests in one process),
//!   [`Builder::region_clock`] a clock word in the region that [`ShmCache::advance_clock`]
//!   moves for every process.
//! - Eviction is CLOCK over the index, not the in-process S3-FIFO with admission: the hit ratio
//!   is lower on loops and scans (see the benchmark figures in the README).

#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

mod cache;
mod error;
mod futex;
mod hash;
mod mutex;
mod process;
mod region;
mod shard;
mod snapshot;
mod tags;

pub use cache::{
    Builder, Fill, Hit, Lookup, Refresh, RegionInfo, Resolved, Restored, ShmCache, Waiter,
};
pub use error::{ShmError, StoreError};
pub use peakcache::{Clock, Freshness, ManualClock, PurgeMode, Served, Stats};
pub use region::{Opened, LAYOUT_VERSION};
pub use shard::{MAX_KEY, MAX_TAGS};
pub use snapshot::SNAPSHOT_VERSION;
