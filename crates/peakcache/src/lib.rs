//! # peakcache
//!
//! An embedded edge cache: it lives inside the process that answers requests and keeps a
//! traffic peak away from the origin. One request per key per expiry reaches the origin however
//! many callers arrive; nobody waits for a revalidation; when the origin fails, callers get the
//! last good value instead of an error; a bad change is purged in one call.
//!
//! - [Quick start](#quick-start)
//! - [The lifecycle](#the-lifecycle)
//! - [Stale-while-revalidate](#stale-while-revalidate)
//! - [Stale-if-error and back-off](#stale-if-error-and-back-off)
//! - [Waiting: blocking, polling, async](#waiting-blocking-polling-async)
//! - [Uncacheable answers](#uncacheable-answers)
//! - [Tags, purge, freeze](#tags-purge-freeze)
//! - [Snapshots](#snapshots)
//! - [Capacity, weight and memory](#capacity-weight-and-memory)
//! - [Stats](#stats)
//! - [Testing with a manual clock](#testing-with-a-manual-clock)
//!
//! ## Quick start
//!
//! ```
//! use peakcache::{Cache, Freshness};
//! use std::time::Duration;
//!
//! let cache: Cache<String> = Cache::builder().max_bytes(256 << 20).build();
//! cache.insert(b"/home", "<h1>Home</h1>".to_string(), Freshness::new(Duration::from_secs(60)))?;
//! assert_eq!(cache.get(b"/home").as_deref(), Some("<h1>Home</h1>"));
//! # Ok::<(), peakcache::InsertError>(())
//! ```
//!
//! `get` and `insert` are the plain cache. The point of peakcache is [`Cache::lookup`], which
//! tells each caller what to do so that the origin sees one fetch per key.
//!
//! ## The lifecycle
//!
//! Every entry is stored with a [`Freshness`]: fresh for `ttl`, then servable for `swr` while one
//! caller refreshes it (stale-while-revalidate), and for `sie` when fetches fail
//! (stale-if-error); both windows count from the moment it goes stale (RFC 5861).
//! [`Cache::lookup`] answers one of:
//!
//! | answer | meaning | the caller |
//! |---|---|---|
//! | [`Lookup::Fresh`] | fresh entry | serves it |
//! | [`Lookup::Stale`]`(hit, Some(refresh))` | stale, inside swr; this caller got the one [`Refresh`] ticket | serves it, refreshes in the background |
//! | [`Lookup::Stale`]`(hit, None)` | stale; someone else refreshes, or the key is backing off | serves it |
//! | [`Lookup::Miss`] | nothing servable; this caller got the one [`Fill`] | fetches, then commits |
//! | [`Lookup::Wait`] | someone else is filling | waits on the [`Waiter`] |
//! | [`Lookup::Pass`] | the key is uncacheable for now | fetches, stores nothing |
//!
//! ```
//! use peakcache::{Cache, Freshness, Lookup, Resolved};
//! use std::time::Duration;
//!
//! fn fetch(_key: &[u8]) -> Result<String, ()> { Ok("page".into()) }
//!
//! fn serve(cache: &Cache<String>, key: &[u8]) -> Option<String> {
//!     let ttl = Freshness::new(Duration::from_secs(60))
//!         .with_swr(Duration::from_secs(30))
//!         .with_sie(Duration::from_secs(3600));
//!     match cache.lookup(key) {
//!         Lookup::Fresh(hit) | Lookup::Stale(hit, None) => Some(hit.into_value()),
//!         Lookup::Stale(hit, Some(refresh)) => {
//!             match fetch(key) {
//!                 Ok(page) => { let _ = refresh.commit(page, ttl); }
//!                 Err(()) => refresh.fail(),
//!             }
//!             Some(hit.into_value())
//!         }
//!         Lookup::Miss(fill) => match fetch(key) {
//!             Ok(page) => { let _ = fill.commit(page.clone(), ttl); Some(page) }
//!             Err(()) => fill.fail().map(|stale| stale.into_value()),
//!         },
//!         Lookup::Wait(waiter) => match waiter.wait(Duration::from_secs(5)) {
//!             Resolved::Hit(hit) => Some(hit.into_value()),
//!             Resolved::Fill(fill) => { let page = fetch(key).ok()?; let _ = fill.commit(page.clone(), ttl); Some(page) }
//!             Resolved::Pass | Resolved::TimedOut => fetch(key).ok(),
//!             Resolved::Failed => None,
//!         },
//!         Lookup::Pass => fetch(key).ok(),
//!     }
//! }
//!
//! let cache = Cache::new();
//! assert_eq!(serve(&cache, b"/a").as_deref(), Some("page"));
//! assert_eq!(serve(&cache, b"/a").as_deref(), Some("page"));
//! assert_eq!(cache.stats().fills_committed, 1);
//! ```
//!
//! Invariants: at most one [`Fill`] or [`Refresh`] is in flight per key; no waiter waits
//! forever (a fill that outlives the lock timeout has failed: it releases its waiters, with the
//! stale-if-error entry if there is one, and the key backs off); a value handed out stays valid
//! (it is a clone) after eviction, purge or replacement; the entry of a key being fetched again
//! is not evicted (it is what a failed fetch serves), nor, while frozen, an expired one before
//! its turn; every lookup is counted exactly once.
//!
//! ## Stale-while-revalidate
//!
//! ```
//! use peakcache::{Cache, Freshness, Lookup, ManualClock};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let cache = Cache::builder().clock(clock.clone()).build();
//! cache.insert(b"k", 1u32, Freshness::new(Duration::from_secs(10)).with_swr(Duration::from_secs(60)))?;
//! clock.advance(Duration::from_secs(11));
//! let Lookup::Stale(hit, Some(refresh)) = cache.lookup(b"k") else { unreachable!() };
//! assert_eq!(*hit.value(), 1);                                  // served at once
//! assert!(matches!(cache.lookup(b"k"), Lookup::Stale(_, None))); // no second ticket
//! refresh.commit(2, Freshness::new(Duration::from_secs(10)))?;
//! assert!(matches!(cache.lookup(b"k"), Lookup::Fresh(h) if *h.value() == 2));
//! # Ok::<(), peakcache::InsertError>(())
//! ```
//!
//! ## Stale-if-error and back-off
//!
//! Past its swr window but inside sie, an entry is fetched again; if the fetch fails,
//! [`Fill::fail`] returns the stale entry and hands it to every waiter. The key then backs off
//! (1 s, doubling up to 60 s by default, see [`Builder::retry_backoff`]): lookups get the stale
//! entry without a fetch until the back-off passes; then one caller is handed a [`Refresh`]
//! ticket with the stale entry and probes the origin in the background, while everyone keeps
//! being served the stale entry. A dead origin sees one probe per key per back-off interval,
//! not a stream, and nobody waits for it.
//!
//! ```
//! use peakcache::{Cache, Freshness, Lookup, ManualClock, Served};
//! use std::time::Duration;
//!
//! let clock = ManualClock::new();
//! let cache = Cache::builder().clock(clock.clone()).build();
//! cache.insert(b"k", 1u32, Freshness::new(Duration::from_secs(10)).with_sie(Duration::from_secs(3600)))?;
//! clock.advance(Duration::from_secs(11));
//! let Lookup::Miss(fill) = cache.lookup(b"k") else { unreachable!() };
//! let stale = fill.fail().expect("inside stale-if-error");
//! assert_eq!(stale.served(), Served::StaleIfError);
//! // Backing off: served without a new fetch.
//! assert!(matches!(cache.lookup(b"k"), Lookup::Stale(_, None)));
//! # Ok::<(), peakcache::InsertError>(())
//! ```
//!
//! ## Waiting: blocking, polling, async
//!
//! A [`Waiter`] resolves three ways: [`Waiter::wait`] blocks with a timeout (threads, PHP),
//! [`Waiter::try_wait`] polls without blocking (event loops such as nginx's), and `.await`
//! works on any async runtime (it is a [`Future`](std::future::Future)). If the filler drops its
//! [`Fill`] (or panics), one waiter gets [`Resolved::Fill`] and fills instead.
//!
//! ```
//! use peakcache::{Cache, Freshness, Lookup, Resolved};
//! use std::time::Duration;
//!
//! let cache: Cache<u32> = Cache::new();
//! let Lookup::Miss(fill) = cache.lookup(b"k") else { unreachable!() };
//! let Lookup::Wait(waiter) = cache.lookup(b"k") else { unreachable!() };
//! let waiter = waiter.try_wait().err().expect("still filling");
//! std::thread::spawn(move || fill.commit(7, Freshness::new(Duration::from_secs(60))));
//! assert!(matches!(waiter.wait(Duration::from_secs(5)), Resolved::Hit(h) if *h.value() == 7));
//! ```
//!
//! ## Uncacheable answers
//!
//! A fill that learns the answer may not be stored (`Cache-Control: private`, a `Set-Cookie`)
//! calls [`Fill::uncacheable`]: its waiters are released at once and the key answers
//! [`Lookup::Pass`] for a while, so requests for an uncacheable page never queue behind each
//! other (Varnish's hit-for-miss).
//!
//! ```
//! use peakcache::{Cache, Lookup, Resolved};
//! use std::time::Duration;
//!
//! let cache: Cache<u32> = Cache::new();
//! let Lookup::Miss(fill) = cache.lookup(b"/account") else { unreachable!() };
//! let Lookup::Wait(waiter) = cache.lookup(b"/account") else { unreachable!() };
//! fill.uncacheable(Duration::from_secs(120));
//! assert!(matches!(waiter.try_wait(), Ok(Resolved::Pass)));
//! assert!(matches!(cache.lookup(b"/account"), Lookup::Pass));
//! ```
//!
//! ## Tags, purge, freeze
//!
//! Entries can carry tags (surrogate keys). [`Cache::purge`] and [`Cache::purge_tag`] are hard
//! (gone) or soft (stale now, still served inside the stale windows while one caller
//! refreshes). A tag purge costs the same whatever the number of entries tagged: entries are
//! checked lazily at their next lookup. A fill in flight during a purge stores its value already
//! purged, since it may have fetched the old content. [`Cache::freeze`] serves whatever is
//! stored as fresh, so only misses reach the origin.
//!
//! A tag purge keeps one record per tag, and the records are bounded
//! ([`Builder::max_tag_marks`], default 65,536, at most 10.5 MiB): when they are full, the oldest
//! half is folded into one cache-wide record, hard purges into a hard purge, soft into soft. A
//! purge never matches fewer entries than it names; once folded, it also matches every other
//! tagged entry fetched before it (soft: served stale and refreshed; hard: fetched again).
//! [`Stats::tag_marks`] and [`Stats::tag_folds`] show the table. A lookup of a tagged entry
//! after a purge reads only its own tags' records, under locks shared by a sixteenth of the tags.
//!
//! ```
//! use peakcache::{Cache, Freshness, Lookup, PurgeMode};
//! use std::time::Duration;
//!
//! let cache: Cache<u32> = Cache::new();
//! let ttl = Freshness::new(Duration::from_secs(600)).with_swr(Duration::from_secs(60));
//! cache.insert_tagged(b"/post/42", 1, ttl, &["post:42", "home"])?;
//! cache.insert_tagged(b"/", 2, ttl, &["home"])?;
//! cache.purge_tag("post:42", PurgeMode::Hard);
//! assert!(matches!(cache.lookup(b"/post/42"), Lookup::Miss(_)));
//! cache.purge_tag("home", PurgeMode::Soft);
//! assert!(matches!(cache.lookup(b"/"), Lookup::Stale(_, Some(_))));
//! # Ok::<(), peakcache::InsertError>(())
//! ```
//!
//! ## Snapshots
//!
//! [`Cache::list`] copies every servable entry, shard by shard, each under its shard's read
//! lock for no more than the copy (values are cloned, so `Arc` or `Bytes` values cost a
//! reference count); [`Cache::restore`] puts an entry back, in this cache or another, as old as
//! it was, with its windows and tags: what a host writes a snapshot from and restores it with
//! (peakcache-proxy's `--snapshot`).
//!
//! ## Capacity, weight and memory
//!
//! The capacity is a weight, bytes by default, enforced at every insert: the cache never holds
//! more than [`Builder::max_bytes`]. The weigher ([`Builder::weigher`]) says what an entry costs;
//! the default counts the key, `size_of::<V>()` and [`ENTRY_OVERHEAD`]. An entry heavier than the
//! object limit ([`Builder::max_object_weight`]) is refused with [`InsertError::TooLarge`], never
//! dropped silently.
//!
//! Memory beyond key and value: one node per entry (the key, inline up to 15 bytes, the store
//! time and three windows in milliseconds, a tags pointer, queue links and a byte of policy bits)
//! plus its hash table slot: 63 bytes per entry with 32-byte keys and `u64` values. Once the
//! cache evicts, the policy's ghosts (about 7 bytes per entry) and frequency sketch (4) come on
//! top: 75 bytes. The `memory` test measures both. Entries with tags add two allocations: one
//! holding a sequence number and 8 bytes per tag, one the tags' names (4 bytes and the name
//! each), which a [listing](Cache::list) hands out without copying. Durations are kept to the millisecond and
//! capped at [`Freshness::MAX`].
//!
//! Eviction is S3-FIFO, chosen by measurement on real traces (see the project README): new
//! entries pass through a small queue, entries read again move to a main queue, and entries past
//! every stale window go first. The policy is public in [`policy`], generic over where its state
//! lives, so that the shared-memory tier (`peakcache-shm`) runs the very same one. A hit writes nothing shared: only a two-bit counter in the entry,
//! and only until it saturates.
//!
//! ## Stats
//!
//! [`Cache::stats`] counts every lookup outcome, fills, refreshes, evictions, expirations and
//! purges; the lookup outcomes add up to [`Stats::lookups`]. Counters are striped per thread, so
//! they cost no shared write on the hit path and stay on in production.
//!
//! ## Testing with a manual clock
//!
//! Every decision reads the cache's [`Clock`]; [`ManualClock`] makes time pass by hand, so tests
//! never sleep. Blocking waits use real time only for their own timeout.

#![deny(missing_docs)]
#![warn(rust_2018_idioms)]

mod cache;
mod clock;
mod error;
mod flight;
mod freshness;
pub mod history;
mod key;
pub mod lifecycle;
mod listing;
pub mod policy;
mod shard;
mod slab;
pub mod stats;
mod sync;
mod tags;

pub use cache::{Builder, Cache, ENTRY_OVERHEAD};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::InsertError;
pub use freshness::Freshness;
pub use history::{History, HostCounts, LocalHistory};
pub use lifecycle::{Fill, Hit, Lookup, Refresh, Resolved, Served, Waiter};
pub use listing::{Listed, Listing};
pub use stats::Stats;
pub use tags::{PurgeMode, TagNames, TagNamesIter};
