//! # peakcache-shm
//!
//! The shared-memory tier of peakcache: one cache in a shared memory region, attached by every
//! process of the host at once (nginx workers, PHP-FPM workers), with the entry lifecycle of the
//! in-process [`peakcache::Cache`]: [`ShmCache::lookup`] answers
//! `Fresh | Stale(hit, Option<Refresh>) | Miss(Fill) | Wait(Waiter) | Pass`, with single flight,
//! stale-while-revalidate, stale-if-error with back-off, pass-through after an uncacheable
//! answer and a lock timeout, **across processes**. Values are bytes plus a `u32` flags word,
//! copied out of the region (without the lock, validated by the shard's version word; see
//! [Locking](#locking-waiting-crash-recovery)): nothing a reader holds changes afterwards.
//! Eviction is the in-process cache's policy (S3-FIFO with a TinyLFU admission gate), kept in
//! the region.
//!
//! - [Quick start](#quick-start)
//! - [Region layout](#region-layout)
//! - [Memory per entry](#memory-per-entry)
//! - [Eviction](#eviction)
//! - [Locking, waiting, crash recovery](#locking-waiting-crash-recovery)
//! - [The purge journal](#the-purge-journal)
//! - [Measured](#measured)
//! - [What survives a crash, a restart and a reboot](#what-survives-a-crash-a-restart-and-a-reboot)
//! - [What is refused, and why](#what-is-refused-and-why)
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
//!              creation wall time, the journal's size and offset, checksum of all of these
//!            mutable: ready word, frozen, global sequence, tag epoch, region clock word,
//!              boot id, monotonic offset, the cache-wide tag mark, the tag table's robust
//!              mutex, tag purge count, the tag table's repair word, the lock stamp (the
//!              boot the locks were initialised in, by this crate), tag lock timeouts; the
//!              journal's robust mutex, repair word, head, oldest mark, next record number,
//!              unrecorded count, futex word and sleepers; the region-wide soft purge mark
//!              (sequence, time); the follower's word (pid, start time) and two copies of
//!              its saved state
//! 4 KiB    tag table: tag slots x 80 bytes (tag hash, last hard purge, last 4 soft purges)
//! ...      purge journal, aligned to 4 KiB: a ring of records (see The purge journal)
//! ...      history ring (about 200 KiB, see `peakcache::history`): the ring's second, the
//!            periodic claim's second, the hosts' totals, then 1,024 one-second samples
//!            written by whichever process first moves the ring's second forward
//! ...      shards, each aligned to 4 KiB:
//!            shard header (1 KiB): robust mutex, dirty flag, repair word, entry and byte
//!              counts, the
//!              free-list heads of 32 size classes, the shard's counters, the version word of
//!              optimistic reads (a cache line of its own), the policy's state (queue heads,
//!              lengths and weights, small-queue target, ghost and sketch bookkeeping, the
//!              compaction reserve)
//!            index, open addressing with linear probing, backward-shift deletion, in two
//!              arrays: the hot parts, slots x 16 bytes (four to a cache line: what every
//!              lookup reads), hold the key hash, the record's offset and a meta word (hit
//!              counter, queue, CLOCK credit, flight flags and outcome, failures, the record's
//!              size as a prefetch hint); the cold parts, slots x 48 bytes (read and written
//!              under the lock), hold the futex word its waiters sleep on, the flight state
//!              (owner pid and start time, flight id, deadline), back-off and pass-through
//!              instants (layout 7)
//!            policy: queue links, slots x 8 bytes (previous and next slot, u32 each); the
//!              ghost table, slots x 8 bytes (32-bit fingerprint, 32-bit departure number);
//!              the main ghost, slots / 4 x 8 bytes; the frequency sketch, slots x 8 4-bit
//!              counters
//!            bitmaps: one bit per 64-byte heap unit where a free span starts, one where one
//!              ends
//!            heap: 64-byte units; a record is an 80-byte header (lengths, hash, store time,
//!              windows, flags, tag sequence, checksum), its tag hashes, key and value, and
//!              takes exactly its size rounded up to 64 bytes; free space is maximal free
//!              spans (a header in the first unit, a tail tag in the last) on segregated free
//!              lists, merged with their free neighbours when freed
//! ```
//!
//! Attaching checks the file first (see [What is refused, and why](#what-is-refused-and-why)),
//! then the magic, the version, the header checksum, that every derived offset and the total
//! size follow from the geometry, and that the file is as long as the header says (a shorter
//! file is [`ShmError::Truncated`], never mapped past its end); a failure is a [`ShmError`]
//! naming the problem, never undefined behaviour. Every page of a new region is reserved when it
//! is made (`posix_fallocate`, on a region file or on the memory file behind an anonymous
//! region), so no access can meet a page with no room behind it.
//!
//! ## Memory per entry
//!
//! An entry costs its record, `80 + 8 x tags + key + value` bytes rounded up to 64, counted
//! against [`Builder::max_bytes`] (the heap), plus per index slot 64 bytes of slot and 22 of
//! policy state (8 of queue links, 8 of ghost, 2 of main ghost, 4 of sketch), with the index at
//! most 7/8 full (sized by [`Builder::max_entries`], by default one slot per 256 bytes of heap):
//! about 98 to 197 bytes of index per entry at capacity. A 1 KiB value under a 40-byte key
//! takes 1,152 + 98..197 bytes. When records of different sizes fragment the heap, up to 1/32
//! of it is kept free as room to move records into (see [Eviction](#eviction)). Fixed costs: a
//! 4 KiB header, 80 bytes per tag slot (320 KiB for the default 4,096), the purge journal (by
//! default a 64th of `max_bytes`, 64 KiB to 1 MiB), 1 KiB per shard and two bitmaps of 1/512
//! of the heap each.
//!
//! ## Eviction
//!
//! The in-process cache's policy (`peakcache`'s `policy.rs` documents each part and why), per
//! shard, in the region: new entries enter a small FIFO queue; those read twice before they
//! reach its head move to the main queue, a CLOCK (an entry read since its last pass goes round
//! again), the others leave and are remembered by a ghost table of fingerprints, so that a key
//! coming back soon is admitted as read twice. Once the main queue is full, a candidate from the
//! small queue enters it only if a count-min sketch of 4-bit counters (fed on admissions and
//! with the hits collected when the policy passes an entry, never on the hit path) rates it
//! above the CLOCK's victim. The small queue's target moves between 1 % and 25 % of the heap
//! with ghost hits (small-queue ghost: grow; main-queue ghost: shrink). Dead entries go first.
//!
//! - A hit only raises the slot's two-bit counter (a compare-and-swap, skipped at its cap).
//! - Weights are heap units; the queues are doubly linked lists of slot indexes (a slot that
//!   moves in the index takes its links along); control records (flights, back-off,
//!   pass-through without a value) sit in a third queue, idle ones dropped before any entry.
//! - As in-process, an entry is admitted before room is made for it: a plain
//!   [`insert`](ShmCache::insert) (or a restored entry) may be the one that leaves, when it
//!   reaches the small queue's head unread or loses at the gate, and is then not stored
//!   (`Ok` all the same, as in-process); a fill's value always is (its waiters read it from
//!   the region). An entry with a fill or refresh in flight keeps its slot as a control record.
//! - When a record does not fit although the heap has enough free units (records of different
//!   sizes), the shard moves the records of a small window into other free spans instead of
//!   evicting more (copying about the new record's size); if some record finds no room, the
//!   policy evicts and the shard's reserve of free units grows by the record's size, up to
//!   1/32 of the heap. With records of one size the reserve stays 0.
//! - Everything read from the policy's state is bounds-checked and every walk bounded; a shard
//!   found inconsistent is rebuilt, which threads the queues again from the slots kept (each
//!   into the queue its meta bits name) and forgets ghosts, sketch and reserve.
//!
//! ## Locking, waiting, crash recovery
//!
//! - **Locks.** One `pthread_mutex_t` per shard (and one for the tag table), initialised
//!   `PTHREAD_PROCESS_SHARED` and `PTHREAD_MUTEX_ROBUST`. Every write takes its shard's lock.
//! - **Bounded waits.** A lock is waited for at most the lock bound ([`Builder::lock_bound`];
//!   default the lock timeout, at least 10 ms and at most 1 s: a lock is held for
//!   microseconds, a holder that keeps it longer is stopped or stuck, and a caller then loses
//!   at most a second before it goes to the origin). A holder that is alive but does not
//!   release (stopped by `SIGSTOP` or a debugger, stuck on I/O) makes each caller needing that
//!   lock give up after the bound: [`lookup`](ShmCache::lookup) answers [`Lookup::Pass`]
//!   (serve from the origin), `get` a miss, `insert` and commits
//!   [`StoreError::LockTimeout`], [`try_purge`](ShmCache::try_purge) the same. Each is
//!   counted ([`RegionInfo::lock_timeouts`], in every process) and reported through
//!   [`Builder::report`] (at most a line a second per attachment, with the count; never while
//!   a lock is held). Fresh hits of that shard are still served by optimistic reads. An
//!   uncontended lock is a `trylock`; only a contended one waits in
//!   `pthread_mutex_timedlock`, whose deadline is on the wall clock (a step of the wall clock
//!   while waiting lengthens or shortens that one wait). If the tag table's lock is held, an
//!   entry with tags whose purges cannot be checked is neither served nor dropped (the lookup
//!   passes), and a tag purge is folded into the cache-wide mark without the lock (it
//!   over-purges tagged entries, it is never lost).
//! - **Locks not to be trusted.** Lock words from another boot (the boot id in the header is
//!   not `/proc/sys/kernel/random/boot_id`'s) or not initialised by this crate in this boot (no
//!   lock stamp) are initialised again at the first attach, under the file lock, and every
//!   shard is checked before use (reported). A mutex left `ENOTRECOVERABLE` (a holder released
//!   an inherited `EOWNERDEAD` lock without making it consistent; this crate never does) is
//!   initialised again by the first locker to claim its repair word, after marking the shard to
//!   be checked and rebuilt by its next holder, instead of answering `Pass` forever; the others
//!   pass meanwhile.
//! - **Reads without the lock.** [`get`](ShmCache::get), [`get_into`](ShmCache::get_into) and
//!   the fresh case of [`lookup`](ShmCache::lookup) first read optimistically (a seqlock): a
//!   writer makes its shard's version word odd before its first change a reader could see
//!   (slots, records, the heap) and even again, one higher, before unlocking; a reader notes an
//!   even version, finds the slot, decodes the record header, compares the key and copies the
//!   value into its own buffer, every offset and length bounds-checked as untrusted (atomic
//!   loads, the copy an opaque `rep movsb`: torn data, never undefined behaviour), and trusts
//!   the copy only if the version is unchanged afterwards. On a change, an odd version, a dirty
//!   shard or anything beyond a fresh hit (stale windows, tags to check, flights past their
//!   deadline) it tries once more, then takes the lock. Hit counters and access bits are atomic
//!   updates, outside write sections, so readers never disturb each other. A writer killed
//!   inside its section leaves the version odd: readers take the lock, get `EOWNERDEAD`, and
//!   the rebuild closes the section.
//! - **Crash inside a lock.** The kernel releases a dead holder's robust mutex; the next locker
//!   gets `EOWNERDEAD`, calls `pthread_mutex_consistent`, and checks the shard before using it:
//!   every slot whose record fails a check (bounds, magic, hash, checksum over header, tags, key
//!   and value) or overlaps another is dropped, the index is re-inserted, the allocator rebuilt
//!   from the gaps between the records kept, the policy's queues threaded again, and the sizes
//!   recounted. A SIGKILL costs the entries it was writing, never the host. (The checksum is
//!   written with the record and checked only here, never on the hit path.) Anything found
//!   inconsistent later (an offset out of range) marks the shard for the same check at its
//!   next lock.
//! - **Single flight.** A slot being filled records its owner's pid and start time (from
//!   `/proc/PID/stat`, so a reused pid is not taken for the owner), a flight id and a deadline.
//!   Waiters sleep on the slot's 32-bit futex word (`FUTEX_WAIT` without the private flag, so it
//!   works across processes on the shared mapping) with a timeout, or poll it
//!   ([`Waiter::try_wait`]); every end of a flight bumps the word and wakes them. A waiter that
//!   finds the owner dead (`kill(pid, 0)` fails with `ESRCH`, `/proc/PID/stat` says it exited
//!   and awaits its parent's `wait` (a zombie, `Z`), or its start time differs: the pid was
//!   reused) takes the fill over at once. A flight that outlives the lock timeout has failed,
//!   as in-process: its waiters get the stale-if-error entry if one is left, else are released
//!   to fetch for themselves, and the key backs off, so a hanging origin is probed once per
//!   lock timeout and back-off (a flight whose owner is dead by then is abandoned instead: the
//!   next caller fetches at once). The lifecycle's decisions are the in-process cache's own
//!   functions (`peakcache::lifecycle`: `decide`, `KeyRecord`, `Timing`) over what the slot
//!   holds. A flight that ends with nothing stored for its waiters (too large, no room) keeps
//!   its slot until its deadline so that every waiter reads why and fetches for itself at
//!   once.
//! - **Eviction.** See [Eviction](#eviction): allocation evicts (or moves records) until the
//!   record fits.
//! - **Tags.** A table of tag hash -> purge marks in the region; an entry records its tags'
//!   hashes and the sequence number of its fetch, checked lazily against the marks at lookup
//!   (skipped when the cache-wide tag epoch has not moved since the entry was last checked). A
//!   purge is one mark, whatever the number of entries. When the table is 3/4 full its marks
//!   are folded into one cache-wide mark: over-purging tagged entries, never under-purging.
//! - **Stats** are counters per shard in the region, written under the shard lock: global
//!   across processes, summed by [`ShmCache::stats`].
//!
//! ## The purge journal
//!
//! Every purge made through any attachment of the region ([`purge`](ShmCache::purge),
//! [`purge_tag`](ShmCache::purge_tag), [`clear`](ShmCache::clear),
//! [`purge_everything`](ShmCache::purge_everything), [`freeze`](ShmCache::freeze) and thaw)
//! is first appended to a ring in the region (its size: [`Builder::journal_bytes`]), with its
//! number, what it purged, hard or soft, the purging pid and its [`PurgeOrigin`]: `Local`, or
//! `Cluster` for a handle made by [`ShmCache::with_origin`] (the cluster agent applies the
//! purge bus's purges through one, so it never publishes them back). This is how the purges of
//! nginx workers and PHP-FPM workers reach the other hosts of a cluster: one process per host
//! (`peakcache-proxy --region`) follows the journal and publishes them.
//!
//! - **Following.** [`read_journal`](ShmCache::read_journal) reads from a [`JournalCursor`]
//!   without a lock and without writing to the region; [`wait_journal`](ShmCache::wait_journal)
//!   sleeps on a futex word every append bumps. A reader that fell behind (the ring went round
//!   over records it had not read), a purge that could not be recorded (the journal's lock held
//!   past the lock bound by a stopped process, or an argument longer than a quarter of the
//!   ring) and a record that fails its checks all come out as [`JournalEvent::Lost`] with a
//!   [`LostReason`]: the follower then does what the cluster does when it misses purges, a
//!   soft purge of everything.
//! - **Crash safety.** A record is written under the journal's robust mutex and published by
//!   moving the head after it: a writer killed inside never publishes half a record, and the
//!   next writer writes over it. A writer moves the ring's oldest mark past what it is about
//!   to overwrite before its first byte (behind a release fence), so a reader copying a record
//!   that is being overwritten sees it moved and never trusts the copy; every record also
//!   carries its position and a checksum (a torn one is skipped, reported lost).
//! - **One follower.** [`ShmCache::follow`] claims the region for one process (a second one
//!   gets [`FollowerBusy`] naming the first; a dead follower's claim is taken over), and keeps
//!   a small state in the region ([`Follower::save`], two checksummed copies so a follower
//!   killed while saving leaves the previous one): its cursor and its place on the cluster's
//!   bus, so that a follower started again goes on where the last one stopped.
//! - **Soft purge of everything.** [`purge_everything`](ShmCache::purge_everything)`(Soft)`
//!   is one mark in the header (a sequence number and a time): an entry whose fetch started
//!   before it is stale from then on, settled at lookup like a tag purge (the hit path reads
//!   one more word). It is what the agent applies while the host is cut off from the bus.
//!
//! ## What survives a crash, a restart and a reboot
//!
//! | event | what happens |
//! |---|---|
//! | a worker is killed (SIGKILL, segfault) outside the cache | nothing is lost; its fills are taken over by their waiters as soon as one finds it dead, or by the next lookup; its refresh tickets are handed out again after the lock timeout |
//! | a worker is killed inside a shard lock | the next locker checks and rebuilds that shard; the entries being written are dropped, the rest are kept ([`RegionInfo::recoveries`]) |
//! | every process stops and starts again (nginx restart, PHP-FPM reload) | a file region is kept: [`Builder::open`] attaches to it when its header is valid and matches the configuration ([`Opened::Attached`]); otherwise it is replaced and [`Opened::Recreated`] says why. An anonymous region ends with its last process |
//! | a process stopped (`SIGSTOP`, a debugger) or stuck while holding a shard lock | callers needing that lock wait at most the lock bound, then go on without the cache (`Pass`, a miss, `LockTimeout`), counted and reported; fresh hits are still served; when the holder continues, everything works as before |
//! | reboot | a region under `/dev/shm` is gone (memory); a region file on disk is attached again: its locks (of another boot) are initialised again, every shard checked, and region time continues from the wall time since creation, so entries keep their age. Or restore a snapshot: [`ShmCache::snapshot`] copies each shard's servable entries out under its lock and writes them after releasing it, into a new temporary file (exclusive, 0600) renamed into place; [`ShmCache::restore`] validates and loads it into any region, entries keeping their age |
//! | a region file of another version, size or a corrupted one | refused with a [`ShmError`] (`VersionMismatch`, `ConfigMismatch`, `HeaderChecksum`, `Truncated`, `BadMagic`, `BadLayout`); `open` replaces it by default (a file of ours: see the next section for the files never replaced) |
//! | a mutex left `ENOTRECOVERABLE` | initialised again after the shard is marked to be checked and rebuilt; the entries that pass the check are kept |
//!
//! ## What is refused, and why
//!
//! A region file is memory that every attached process serves pages from and writes lock words
//! into, so whoever can write it decides what every visitor gets and can wedge every worker.
//! Under `/dev/shm` (world-writable) any local user can put a file at the path before the
//! cache starts. What [`Builder::open`] and [`Builder::attach`] find at the path is therefore
//! looked at (`lstat`) before it is opened, opened with `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC`,
//! and checked again on the descriptor:
//!
//! | found at the path | what happens | why |
//! |---|---|---|
//! | nothing | a new region is made under a temporary name beside the path (`O_CREAT \| O_EXCL \| O_NOFOLLOW`, mode 0600, given to the [owner](Builder::owner)), its pages reserved, its header initialised, then moved in with `renameat2(RENAME_NOREPLACE)` (or `link`); if another process put a file there meanwhile, that one is attached instead | no process ever sees a half-made region, and none replaces another's |
//! | a symbolic link (even dangling), a directory, a FIFO, a socket, a device | refused: [`ShmError::Refused`] naming the path, the kind of file, its owner, its mode and the reason; not followed, not opened (a FIFO cannot block the start), left alone | a link leads anywhere the planter chose |
//! | a regular file not owned by the owner (default: the effective user) | refused, left alone | another user made it: they could read every cached page, plant pages served to every visitor, scribble on the locks |
//! | a regular file with permissions for other users, or for its group (unless [`group_shared`](Builder::group_shared) is set and its group is the [group](Builder::group)) | refused, left alone | other users could read or write it |
//! | an empty file of ours | replaced by a new region | made by something that stopped before writing a region |
//! | a file of ours holding a region of another version or configuration, damaged, or shorter than its header says | replaced by a new region (or refused with [`recreate_on_mismatch(false)`](Builder::recreate_on_mismatch)) | stale, and ours |
//! | a file system without room for the region | [`ShmError::NoSpace`] at creation, naming the bytes needed and available (`statvfs`); the temporary file removed | a sparse region would crash workers with `SIGBUS` later, when they first write a page with no room behind it |
//!
//! `recreate_on_mismatch` never replaces a refused file: what an attacker's file holds must not
//! decide what happens to it. To remove a refused file is the operator's decision.
//!
//! A snapshot's temporary file is created the same way (`O_EXCL | O_NOFOLLOW`, 0600; a name
//! planted in advance, a link or not, is skipped for another), synced, then renamed over the
//! snapshot path (a link there is replaced, its target untouched). A snapshot to restore is
//! opened without following links and refused unless it is a regular file owned by this
//! process's user, the owner or root, that no other user may write: its entries would be
//! served to every visitor.
//!
//! **Truncation while attached.** Anyone who can write the region file can still truncate it
//! while processes have it mapped; their next access to a page past the new end is a `SIGBUS`.
//! By the rules above only the owner (and root) can write it, and the owner is the user the
//! cache's processes run as: the same trust domain, which can already stop or kill those
//! processes, or write any byte of the region. Nothing a process of another user can do to the
//! file reaches an attached process.
//!
//! **Several users.** By default a region belongs to one user. A privileged creator (nginx's
//! master as root) sets [`owner`](Builder::owner) to the workers' user, so that the file is
//! theirs from the start; [`group_shared`](Builder::group_shared) lets one group share a
//! region, deliberately.
//!
//! ## Measured
//!
//! `cargo bench -p peakcache-shm --bench shm` (a 2-core KVM guest; layout 1 → 2).
//!
//! **Hit ratio** of a read-through replay, one shard each, gap to the in-process cache in
//! points (layout 1 evicted by plain CLOCK over the index with a buddy allocator):
//!
//! | trace | capacity | in-process % | layout 1 gap | layout 2 % | layout 2 gap |
//! |---|---:|---:|---:|---:|---:|
//! | arc-OLTP | 1,000 / 2,000 / 5,000 | 41.40 / 47.35 / 56.10 | −4.27 / −2.39 / −1.66 | 41.41 / 47.33 / 56.13 | +0.01 / −0.01 / +0.04 |
//! | lirs-loop | 500 / 1,000 / 1,024 | 48.86 / 96.21 / 99.80 | −48.84 / −0.46 / 0.00 | 48.86 / 96.21 / 99.80 | 0.00 / 0.00 / 0.00 |
//! | lirs-gli | 500 / 1,000 / 2,000 | 33.20 / 50.71 / 57.96 | −30.52 / −12.83 / −1.65 | 33.20 / 50.71 / 57.96 | 0.00 / 0.00 / 0.00 |
//! | lirs-sprite | 100 / 250 / 500 | 30.36 / 56.05 / 79.05 | −6.83 / −2.09 / −0.26 | 30.69 / 56.06 / 79.03 | +0.32 / +0.01 / −0.02 |
//! | lirs-multi2 | 500 / 1,000 / 2,000 | 49.44 / 57.70 / 70.99 | −10.60 / −7.75 / −10.11 | 49.49 / 57.71 / 71.00 | +0.05 / +0.02 / +0.01 |
//! | cache2k-web07 | 1,000 / 2,000 / 5,000 | 53.88 / 57.73 / 63.15 | −1.21 / −0.25 / +0.89 | 53.88 / 57.74 / 63.15 | 0.00 / +0.01 / +0.01 |
//! | adapt (bytes) | 1 % / 5 % / 10 % | 28.28 / 36.47 / 38.90 | −5.79 / −7.90 / −7.94 | 27.11 / 35.52 / 38.61 | −1.17 / −0.95 / −0.28 |
//!
//! On the sized trace, the buddy allocator left the heap 62 % full on average (a record needs
//! an aligned power-of-two block); free spans of any length bring that to 75-87 %, moving
//! records to 98-99 %; the rest of the gap is the 1/32 reserve and the 64-byte rounding.
//!
//! **Hit time** of a 1 KiB value, best of 3 runs (range), keys cycled in a shuffled order:
//!
//! | keys | layout | in-process `get` / `lookup`, ns | shared `get` / `get_into` / `lookup`, ns | ratio |
//! |---:|---:|---|---|---|
//! | 500 | 1 | 37 (37-39) / 36 (36-43) | 93 (93-102) / 73 (73-82) / 93 (93-126) | 2.5 / 2.0 / 2.6 |
//! | 500 | 2 | 35 (35-46) / 36 (36-38) | 69 (69-71) / 57 (57-58) / 70 (70-75) | 2.0 / 1.7 / 1.9 |
//! | 10,000 | 1 | 57 (57-69) / 64 (64-66) | 280 (280-294) / 264 (264-278) / 290 (290-298) | 4.9 / 4.6 / 4.5 |
//! | 10,000 | 2 | 65 (65-87) / 63 (63-85) | 231 (231-243) / 183 (183-193) / 237 (237-247) | 3.5 / 2.8 / 3.8 |
//!
//! (Ratios: best against best, in-process runs interleaved with each layout's. Layout 7, today's
//! `make bench-shm` in one run: 1.5-1.9x `get_into` against the in-process `get` with 1,000,000
//! keys, 3.3-6.7x with 10,000.) The lock and
//! its unlock, the copy loop and the per-hit counter no longer show; with 10,000 keys
//! the time goes to cache and TLB misses on the slot and the record: the default index (one
//! 64-byte slot per 256 bytes of heap, 32 MiB for 64 MiB of heap) spreads 10,000 keys over
//! as many pages. A compact index (`max_entries(20_000)`) takes 25 to 40 ns off.
//!
//! ## Differences from the in-process cache
//!
//! - Values are bytes and a flags word, copied on every read (no shared references).
//! - A value too large to store is refused ([`StoreError::TooLarge`]) and its waiters get
//!   [`Resolved::Pass`] (the in-process cache hands them the value it could not store); so do
//!   the waiters of a commit that finds no room ([`StoreError::NoRoom`]). A value of 4 GiB or
//!   more is always too large (a record's lengths are 32-bit).
//! - A fill's [`previous`](Fill::previous) value (for revalidation) is a copy of the bytes and
//!   flags taken out of the region when the fill began ([`Previous`]); a fill taken over from
//!   a dead owner has one too.
//! - Waiters block or poll; there is no `Future`.
//! - A refresh ticket whose owner died is handed out again after the lock timeout (the stale
//!   entry is served meanwhile); only fills are taken over at once.
//! - Lifecycle settings (lock timeout, back-off) belong to the region, fixed at creation.
//! - The clock: by default the host's monotonic clock plus an offset kept in the region, the
//!   same in every process; [`Builder::clock`] sets one per attachment (tests in one process),
//!   [`Builder::region_clock`] a clock word in the region that [`ShmCache::advance_clock`]
//!   moves for every process.
//! - A value is copied out on every hit (about 1.6 to 3 times the in-process hit for 1 KiB:
//!   see [Measured](#measured)).
//! - Records take their size rounded up to 64 bytes plus an 80-byte header; with records of
//!   different sizes, up to 1/32 of the heap is kept free for compaction.

#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

mod cache;
mod error;
pub mod file;
mod futex;
mod hash;
mod journal;
mod mutex;
mod policy;
mod process;
mod region;
mod shard;
mod snapshot;
mod tags;

pub use cache::{
    Builder, Fill, Hit, Lookup, Previous, Refresh, RegionInfo, Resolved, Restored, ShmCache,
    Unchanged, Waiter,
};
pub use error::{ShmError, StoreError};
pub use journal::{
    Follower, FollowerBusy, JournalCursor, JournalEvent, JournalOp, JournalRecord, LostReason,
    PurgeOrigin, FOLLOWER_STATE_MAX,
};
pub use peakcache::{Clock, Freshness, ManualClock, PurgeMode, Served, Stats};
pub use region::{Opened, LAYOUT_VERSION};
pub use shard::{MAX_KEY, MAX_TAGS};
pub use snapshot::SNAPSHOT_VERSION;
