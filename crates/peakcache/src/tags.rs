//! Tags (surrogate keys) and purge by tag, taking effect at once without touching the entries.
//!
//! A purge records, per tag, the store sequence number at which it happened (a *mark*); an
//! entry records the sequence number of its fill's start and the hashes of its tags. Lookups
//! compare the two lazily, so purging a tag with a million entries is one map write, not a
//! million. A global epoch, bumped by every tag purge, lets a lookup skip the comparison (one
//! atomic load) when no tag has been purged since the entry was last checked.
//!
//! # Bounded
//!
//! At most `max_marks` marks are kept ([`DEFAULT_MAX_MARKS`] unless the builder says
//! otherwise), however many distinct tags are purged: RFC 9111 invalidation purges a tag named
//! after the URL on every unsafe request, so a client can make as many distinct purges as it
//! sends requests. When a purge of a new tag finds the table full, the oldest half of the marks
//! (by their latest purge's sequence number) is *folded* into one cache-wide mark that applies
//! to every tagged entry: the newest hard purge folded into its hard purge, the newest soft
//! purges folded into its soft history. A purge may then match more tagged entries than it
//! named (every tagged entry fetched before the folded purges), never fewer; the recent half
//! stays exact. An entry a folded soft purge matches is stale from one of the newest folded soft
//! purges, no earlier than from its own. A mark costs an 80-byte record in hash tables that
//! double as they grow: 10.1 MiB at the default cap, 162 bytes a mark (the `memory` test holds
//! it under 10.5 MiB), allocated only as distinct tags are purged. A fold holds every lock of
//! the table while it walks it and happens at most once every `max_marks / 2` purges of new
//! tags.
//!
//! # No global lock on the hit path
//!
//! The marks live in [`MARK_SHARDS`] maps, each behind its own lock, chosen by the tag's hash.
//! A tagged entry re-checked after a purge reads only its own tags' shards, then the fold mark,
//! whose lock is taken only when the fold holds a purge newer than the entry (an atomic tells).
//!
//! # Why a reader sees a consistent prefix of the purges
//!
//! With one lock, marks became visible in their sequence order. With several, a reader may see a
//! purge of one shard and not an older one of another. That matters where the reader *applies*
//! what it saw: applying a soft purge raises the entry's sequence number to the purge's, which
//! would hide for ever a hard purge numbered below it that the reader did not see. The protocol:
//!
//! 1. A purge takes its sequence number while holding its shard's lock, and writes its mark
//!    before releasing it; it bumps the epoch afterwards.
//! 2. A reader loads the sequence counter (`limit`) *before* taking any shard lock. Every purge
//!    numbered below `limit` of one of the reader's tags is then visible to it: the purge took
//!    its number under the shard's lock, and had the reader held that lock first, its load of
//!    the counter would happen-before the purge's increment and read a value no greater than the
//!    purge's number (read-write coherence). So the reader locks the shard after the purge
//!    released it.
//! 3. Purges numbered `limit` or more may or may not be visible. A hard one seen is applied (the
//!    entry is removed: nothing is hidden by that); a soft one seen makes the entry stale, but
//!    the sequence number the reader applies is capped below `limit`, so no purge it could have
//!    missed is ever covered.
//! 4. A fold holds every shard lock (taken in index order) and the fold mark's lock while it
//!    moves marks, and publishes the fold mark's newest sequence number before releasing them.
//!    A reader reads its shards, then the fold mark: a mark moved before the reader locked its
//!    shard is in the fold mark, and the reader, having acquired that shard's lock after the
//!    fold released it, sees the published number and reads the fold mark.
//! 5. The fast path: a reader loads the epoch first, and records it as the entry's checked epoch
//!    only when the slow path found nothing. Every purge counted in that epoch bumped it after
//!    taking its number, so its number is below the `limit` loaded next, and it was seen.

use crate::sync::{AtomicU64, AtomicUsize, RwLock, RwLockWriteGuard};
use ahash::RandomState;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How a purge treats what it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PurgeMode {
    /// Gone at once: the next lookup misses.
    Hard,
    /// Marked stale now: still served inside its stale-while-revalidate and stale-if-error
    /// windows (counted from the purge) while one caller refreshes it.
    Soft,
}

/// What the tag table says of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TagVerdict {
    /// No tag of the entry was purged after it was fetched.
    Live,
    /// A tag was soft-purged after the entry was fetched: stale from clock time `at`
    /// (nanoseconds); `seq` is the sequence number to pass to [`TagSet::mark_applied`].
    StaleSince { at: u64, seq: u64 },
    /// A tag was hard-purged after the entry was fetched.
    Purged,
}

/// The tags of one stored entry, with the sequence number its fill started at.
pub(crate) struct TagSet {
    seq: u64,
    /// The tag epoch at which this entry was last found live.
    checked: AtomicU64,
    /// Sorted by mark shard, so that a lookup takes each shard's lock once.
    hashes: Box<[u64]>,
    /// The tags as they were given, for a listing of the entry (a snapshot): the hashes are
    /// seeded per cache, so only the names mean the same to another cache. Shared, so that a
    /// listing under the shard lock copies nothing.
    names: TagNames,
}

impl TagSet {
    /// Records that soft purges up to `seq` have been applied to the entry's own times.
    pub(crate) fn mark_applied(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
    }

    /// The entry's tags as they were given.
    pub(crate) fn names(&self) -> &TagNames {
        &self.names
    }
}

/// The tags of one listed entry (see [`crate::Cache::list`]), as they were given when it was
/// stored. Cheap to clone.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TagNames(Option<Arc<[u8]>>);

impl TagNames {
    /// Each tag, then its length as four little-endian bytes before it.
    fn new(tags: &[&[u8]]) -> Self {
        if tags.is_empty() {
            return TagNames(None);
        }
        let mut blob = Vec::with_capacity(tags.iter().map(|t| 4 + t.len()).sum());
        for t in tags {
            // A tag over 4 GiB would not fit a header or a request line either.
            let len = u32::try_from(t.len()).unwrap_or(u32::MAX);
            blob.extend_from_slice(&len.to_le_bytes());
            blob.extend_from_slice(&t[..len as usize]);
        }
        TagNames(Some(blob.into()))
    }

    /// The tags, in the order they were given.
    pub fn iter(&self) -> TagNamesIter<'_> {
        TagNamesIter(self.0.as_deref().unwrap_or_default())
    }

    /// The number of tags.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether the entry has no tag.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl std::fmt::Debug for TagNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

impl<'a> IntoIterator for &'a TagNames {
    type Item = &'a [u8];
    type IntoIter = TagNamesIter<'a>;

    fn into_iter(self) -> TagNamesIter<'a> {
        self.iter()
    }
}

/// The tags of a [`TagNames`], in order.
#[derive(Clone, Debug)]
pub struct TagNamesIter<'a>(&'a [u8]);

impl<'a> Iterator for TagNamesIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.0.split_first_chunk::<4>()?;
        let (tag, rest) = rest.split_at(u32::from_le_bytes(*len) as usize);
        self.0 = rest;
        Some(tag)
    }
}

/// The most marks kept unless the builder says otherwise.
pub(crate) const DEFAULT_MAX_MARKS: usize = 65_536;

/// The number of independently locked maps the marks are spread over. Two under loom, so that
/// a model explores a fold racing readers across shards without exploring sixteen locks.
const MARK_SHARDS: usize = if cfg!(loom) { 2 } else { 16 };

/// Soft purges remembered per tag. An entry is stale from the first soft purge after its fill
/// started; only when more purges of one tag than this happen before the entry is next looked
/// up does it count from the oldest one remembered (later than the true first).
const SOFT_HISTORY: usize = 4;

/// The purges of one tag, or the folded purges of many.
#[derive(Clone, Copy, Default)]
struct TagMark {
    hard_seq: u64,
    /// `(sequence, clock time)` of the latest soft purges, oldest first; unused slots are zero.
    soft: [(u64, u64); SOFT_HISTORY],
}

impl TagMark {
    fn purge(&mut self, mode: PurgeMode, seq: u64, at: u64) {
        match mode {
            PurgeMode::Hard => self.hard_seq = seq,
            PurgeMode::Soft => {
                self.soft.rotate_left(1);
                self.soft[SOFT_HISTORY - 1] = (seq, at);
            }
        }
    }

    /// The sequence number of the latest purge recorded: what a fold orders marks by.
    fn latest(&self) -> u64 {
        self.hard_seq.max(self.soft[SOFT_HISTORY - 1].0)
    }

    /// Adds `other`'s purges: its hard purge if newer, its soft purges if among the newest.
    fn fold_in(&mut self, other: &TagMark) {
        self.hard_seq = self.hard_seq.max(other.hard_seq);
        for &(seq, at) in other.soft.iter().filter(|(seq, _)| *seq != 0) {
            if seq > self.soft[0].0 {
                self.soft[0] = (seq, at);
                self.soft.sort_unstable_by_key(|&(seq, _)| seq);
            }
        }
    }

    /// What this mark says of an entry fetched at `seq`, given what its other marks said.
    fn judge(&self, seq: u64, so_far: TagVerdict) -> TagVerdict {
        if self.hard_seq > seq {
            return TagVerdict::Purged;
        }
        let newest = self.soft[SOFT_HISTORY - 1].0;
        let Some(&(_, at)) = self.soft.iter().find(|(s, _)| *s > seq) else {
            return so_far;
        };
        match so_far {
            TagVerdict::Live => TagVerdict::StaleSince { at, seq: newest },
            TagVerdict::StaleSince { at: a, seq: s } => TagVerdict::StaleSince {
                at: a.min(at),
                seq: s.max(newest),
            },
            TagVerdict::Purged => TagVerdict::Purged,
        }
    }
}

type Marks = HashMap<u64, TagMark, RandomState>;

/// A random seed per cache, so nobody can choose tags that share a shard.
#[cfg(not(loom))]
fn tag_hasher() -> RandomState {
    RandomState::new()
}

/// A fixed seed under loom, which replays a model's interleavings and needs every run of it to
/// take the same locks.
#[cfg(loom)]
fn tag_hasher() -> RandomState {
    RandomState::with_seeds(1, 2, 3, 4)
}

/// The cache-wide tag table and store sequence.
pub(crate) struct Tags {
    /// Bumped after every tag purge.
    epoch: AtomicU64,
    /// Ordering of fills and purges: a purge matches entries whose fill started before it.
    seq: AtomicU64,
    shards: Box<[RwLock<Marks>]>,
    /// The folded purges, applying to every tagged entry.
    fold: RwLock<TagMark>,
    /// The fold mark's latest sequence number, published before the fold releases its locks.
    fold_latest: AtomicU64,
    /// The marks in the shards; only raised under a shard's lock, so exact under all of them.
    marks: AtomicUsize,
    max_marks: usize,
    folds: AtomicU64,
    hasher: RandomState,
}

impl Tags {
    /// An empty table keeping at most `max_marks` marks (at least one).
    pub(crate) fn new(max_marks: usize) -> Self {
        Tags {
            epoch: AtomicU64::new(0),
            seq: AtomicU64::new(1),
            shards: (0..MARK_SHARDS)
                .map(|_| RwLock::new(Marks::default()))
                .collect(),
            fold: RwLock::new(TagMark::default()),
            fold_latest: AtomicU64::new(0),
            marks: AtomicUsize::new(0),
            max_marks: max_marks.max(1),
            folds: AtomicU64::new(0),
            hasher: tag_hasher(),
        }
    }

    /// The next sequence number, taken when a fill starts or a value is inserted.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::SeqCst)
    }

    /// The hash that identifies `tag`.
    pub(crate) fn hash(&self, tag: &[u8]) -> u64 {
        self.hasher.hash_one(tag)
    }

    /// The shard holding the mark of the tag hashed `hash`. Bits 32.. pick it: the maps use
    /// the low bits and the top seven.
    fn shard_of(hash: u64) -> usize {
        (hash >> 32) as usize & (MARK_SHARDS - 1)
    }

    /// The number of marks kept now (at most the cap).
    pub(crate) fn marks(&self) -> u64 {
        self.shards.iter().map(|s| s.read().len() as u64).sum()
    }

    /// How many times the oldest half of the marks was folded into the cache-wide mark.
    pub(crate) fn folds(&self) -> u64 {
        self.folds.load(Ordering::Relaxed)
    }

    /// Builds the tag set of an entry whose fill started at `seq`; `None` without tags.
    pub(crate) fn tag_set(&self, seq: u64, tags: &[&[u8]]) -> Option<Box<TagSet>> {
        if tags.is_empty() {
            return None;
        }
        let mut hashes: Vec<u64> = tags.iter().map(|t| self.hash(t)).collect();
        hashes.sort_unstable_by_key(|&h| (Self::shard_of(h), h));
        hashes.dedup();
        Some(Box::new(TagSet {
            seq,
            // Zero is never current once a purge happened, and a fresh table is at zero with
            // no marks, so a new entry is checked against the marks on its first lookup.
            checked: AtomicU64::new(u64::MAX),
            hashes: hashes.into_boxed_slice(),
            names: TagNames::new(tags),
        }))
    }

    /// Purges `tag`: every entry carrying it whose fill started before now is affected.
    pub(crate) fn purge(&self, tag: &[u8], mode: PurgeMode, now: u64) {
        let hash = self.hash(tag);
        let shard = &self.shards[Self::shard_of(hash)];
        loop {
            let mut marks = shard.write();
            if marks.contains_key(&hash) || self.reserve_mark() {
                // Numbered under the shard's lock, written before releasing it: see the module
                // docs, point 1.
                let seq = self.next_seq();
                marks.entry(hash).or_default().purge(mode, seq, now);
                break;
            }
            drop(marks);
            self.fold_oldest_half();
        }
        // After the mark is visible: a lookup that reads the new epoch then reads the marks
        // sees this purge.
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts one more mark if the cap allows it. Called under a shard's lock, and undone under
    /// it when refused, so a fold (holding every shard lock) never sees a reservation.
    fn reserve_mark(&self) -> bool {
        if self.marks.fetch_add(1, Ordering::Relaxed) < self.max_marks {
            return true;
        }
        self.marks.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// Folds the oldest half of the marks (by their latest purge) into the fold mark, unless
    /// another purge made room meanwhile.
    fn fold_oldest_half(&self) {
        // Shards in index order, then the fold mark: readers hold one lock at a time and
        // purges one shard's, so this order is the only one that nests.
        let mut shards: Vec<RwLockWriteGuard<'_, Marks>> =
            self.shards.iter().map(|s| s.write()).collect();
        let count: usize = shards.iter().map(|m| m.len()).sum();
        if count < self.max_marks {
            return;
        }
        let mut latest: Vec<u64> = shards
            .iter()
            .flat_map(|m| m.values().map(TagMark::latest))
            .collect();
        let folded = count.div_ceil(2);
        // Every mark's latest purge is a different purge, so exactly `folded` are at or below.
        let threshold = *latest.select_nth_unstable(folded - 1).1;
        let mut fold = self.fold.write();
        for marks in shards.iter_mut() {
            marks.retain(|_, mark| {
                let old = mark.latest() <= threshold;
                if old {
                    fold.fold_in(mark);
                }
                !old
            });
        }
        // Published before any shard lock is released: see the module docs, point 4.
        self.fold_latest.store(fold.latest(), Ordering::SeqCst);
        self.marks.store(count - folded, Ordering::Relaxed);
        self.folds.fetch_add(1, Ordering::Relaxed);
    }

    /// What the table says of `set`; cheap (one atomic load) when no tag purge happened since
    /// the entry was last found live.
    #[inline]
    pub(crate) fn verdict(&self, set: &TagSet) -> TagVerdict {
        // Loaded before the marks are read: see the module docs, point 5.
        let epoch = self.epoch.load(Ordering::SeqCst);
        if set.checked.load(Ordering::Relaxed) == epoch {
            return TagVerdict::Live;
        }
        let verdict = self.verdict_slow(set);
        if verdict == TagVerdict::Live {
            set.checked.store(epoch, Ordering::Relaxed);
        }
        verdict
    }

    fn verdict_slow(&self, set: &TagSet) -> TagVerdict {
        // Before any shard lock: every purge numbered below `limit` of these tags is visible
        // (module docs, point 2).
        let limit = self.seq.load(Ordering::SeqCst);
        let mut verdict = TagVerdict::Live;
        for group in set
            .hashes
            .chunk_by(|a, b| Self::shard_of(*a) == Self::shard_of(*b))
        {
            let marks = self.shards[Self::shard_of(group[0])].read();
            for mark in group.iter().filter_map(|h| marks.get(h)) {
                verdict = mark.judge(set.seq, verdict);
                if verdict == TagVerdict::Purged {
                    return verdict;
                }
            }
        }
        // After the shards, so that a mark folded away from under the reader is found here
        // (module docs, point 4).
        if self.fold_latest.load(Ordering::SeqCst) > set.seq {
            verdict = self.fold.read().judge(set.seq, verdict);
        }
        match verdict {
            // Never applied past what the reader is sure to have seen (module docs, point 3).
            TagVerdict::StaleSince { at, seq } => TagVerdict::StaleSince {
                at,
                seq: seq.min(limit - 1),
            },
            other => other,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn tags() -> Tags {
        Tags::new(DEFAULT_MAX_MARKS)
    }

    /// A set of `tags` for an entry whose fill starts now.
    fn entry(tags: &Tags, names: &[&[u8]]) -> TagSet {
        *tags.tag_set(tags.next_seq(), names).unwrap()
    }

    fn tag(i: usize) -> Vec<u8> {
        format!("tag:{i}").into_bytes()
    }

    #[test]
    fn a_purge_matches_only_entries_fetched_before_it() {
        let tags = tags();
        let old = entry(&tags, &[b"post:1", b"home"]);
        assert_eq!(tags.verdict(&old), TagVerdict::Live);
        tags.purge(b"post:1", PurgeMode::Hard, 0);
        let new = entry(&tags, &[b"post:1"]);
        assert_eq!(tags.verdict(&old), TagVerdict::Purged);
        assert_eq!(tags.verdict(&new), TagVerdict::Live);
    }

    #[test]
    fn a_soft_purge_reports_when_it_happened() {
        let tags = tags();
        let mut set = entry(&tags, &[b"a", b"b"]);
        tags.purge(b"b", PurgeMode::Soft, 70);
        tags.purge(b"a", PurgeMode::Soft, 90);
        let TagVerdict::StaleSince { at, seq } = tags.verdict(&set) else {
            panic!("a soft purge makes the entry stale")
        };
        assert_eq!(at, 70);
        set.mark_applied(seq);
        assert_eq!(tags.verdict(&set), TagVerdict::Live);
    }

    #[test]
    fn an_entry_is_stale_from_the_first_soft_purge_after_its_fill() {
        let tags = tags();
        let old = entry(&tags, &[b"t"]);
        tags.purge(b"t", PurgeMode::Soft, 10);
        let middle = entry(&tags, &[b"t"]);
        tags.purge(b"t", PurgeMode::Soft, 20);
        let at = |set: &TagSet| match tags.verdict(set) {
            TagVerdict::StaleSince { at, .. } => at,
            other => panic!("{other:?}"),
        };
        assert_eq!((at(&old), at(&middle)), (10, 20));
    }

    #[test]
    fn untouched_tags_stay_live_after_other_purges() {
        let tags = tags();
        let set = entry(&tags, &[b"a"]);
        tags.purge(b"z", PurgeMode::Hard, 0);
        assert_eq!(tags.verdict(&set), TagVerdict::Live);
        assert!(tags.tag_set(1, &[]).is_none());
    }

    #[test]
    fn purges_stay_exact_while_under_the_cap() {
        let tags = Tags::new(8);
        let sets: Vec<TagSet> = (0..16).map(|i| entry(&tags, &[&tag(i)])).collect();
        for i in 0..8 {
            tags.purge(&tag(i), PurgeMode::Hard, 0);
        }
        for (i, set) in sets.iter().enumerate() {
            let expected = if i < 8 {
                TagVerdict::Purged
            } else {
                TagVerdict::Live
            };
            assert_eq!(tags.verdict(set), expected, "entry tagged {i}");
        }
        assert_eq!((tags.marks(), tags.folds()), (8, 0));
    }

    #[test]
    fn past_the_cap_every_named_entry_is_still_purged_and_the_marks_stay_bounded() {
        let tags = Tags::new(16);
        let sets: Vec<TagSet> = (0..1000).map(|i| entry(&tags, &[&tag(i)])).collect();
        for i in 0..1000 {
            tags.purge(&tag(i), PurgeMode::Hard, 0);
            assert!(
                tags.marks() <= 16,
                "{} marks after {i} purges",
                tags.marks()
            );
        }
        for (i, set) in sets.iter().enumerate() {
            assert_eq!(tags.verdict(set), TagVerdict::Purged, "entry tagged {i}");
        }
        // 16 purges fill the table; the 17th folds 8 marks, and so does every 8th after it.
        assert_eq!((tags.marks(), tags.folds()), (16, 123));
    }

    #[test]
    fn the_recent_half_stays_exact_after_a_fold() {
        let tags = Tags::new(4);
        for i in 0..2 {
            tags.purge(&tag(i), PurgeMode::Hard, 0);
        }
        // Fetched after the two purges the fold will take, before the two it keeps.
        let between = entry(&tags, &[b"elsewhere"]);
        let named = entry(&tags, &[&tag(3)]);
        for i in 2..4 {
            tags.purge(&tag(i), PurgeMode::Hard, 0);
        }
        tags.purge(&tag(4), PurgeMode::Hard, 0);
        assert_eq!((tags.marks(), tags.folds()), (3, 1));
        assert_eq!(tags.verdict(&between), TagVerdict::Live);
        assert_eq!(tags.verdict(&named), TagVerdict::Purged);
    }

    #[test]
    fn a_folded_soft_purge_makes_every_older_tagged_entry_stale_never_purged() {
        let tags = Tags::new(1);
        let named = entry(&tags, &[b"a"]);
        let other = entry(&tags, &[b"z"]);
        tags.purge(b"a", PurgeMode::Soft, 10);
        let after = entry(&tags, &[b"z"]);
        // The table is full: the soft purge of `a` is folded into the cache-wide mark.
        tags.purge(b"b", PurgeMode::Soft, 20);
        assert_eq!(tags.folds(), 1);
        for set in [&named, &other] {
            assert!(matches!(
                tags.verdict(set),
                TagVerdict::StaleSince { at: 10, .. }
            ));
        }
        assert_eq!(tags.verdict(&after), TagVerdict::Live);
    }

    #[test]
    fn a_folded_hard_purge_removes_every_older_tagged_entry() {
        let tags = Tags::new(1);
        let other = entry(&tags, &[b"z"]);
        tags.purge(b"a", PurgeMode::Hard, 0);
        let after = entry(&tags, &[b"z"]);
        tags.purge(b"b", PurgeMode::Soft, 20);
        assert_eq!(tags.verdict(&other), TagVerdict::Purged);
        assert_eq!(tags.verdict(&after), TagVerdict::Live);
        // A soft purge folded later does not weaken the folded hard purge.
        tags.purge(b"c", PurgeMode::Soft, 30);
        let again = entry(&tags, &[b"y"]);
        assert_eq!(tags.verdict(&other), TagVerdict::Purged);
        assert_eq!(tags.verdict(&again), TagVerdict::Live);
    }

    #[test]
    fn a_fold_keeps_the_newest_soft_purges() {
        let mut fold = TagMark::default();
        let mut a = TagMark::default();
        let mut b = TagMark::default();
        for (seq, at) in [(1, 100), (4, 400), (6, 600)] {
            a.purge(PurgeMode::Soft, seq, at);
        }
        for (seq, at) in [(2, 200), (3, 300), (5, 500), (7, 700)] {
            b.purge(PurgeMode::Soft, seq, at);
        }
        b.purge(PurgeMode::Hard, 8, 0);
        fold.fold_in(&a);
        fold.fold_in(&b);
        assert_eq!(fold.soft, [(4, 400), (5, 500), (6, 600), (7, 700)]);
        assert_eq!((fold.hard_seq, fold.latest()), (8, 8));
    }

    #[test]
    fn a_hundred_thousand_purges_of_distinct_tags_keep_the_marks_within_the_cap() {
        let tags = tags();
        let set = entry(&tags, &[b"old"]);
        for i in 0..100_000 {
            tags.purge(&tag(i), PurgeMode::Hard, 0);
        }
        // Folds at the 65,537th and the 98,305th purge, each of 32,768 marks.
        assert_eq!((tags.marks(), tags.folds()), (100_000 - 2 * 32_768, 2));
        assert_eq!(tags.verdict(&set), TagVerdict::Purged);
    }

    #[test]
    fn a_cap_of_zero_keeps_one_mark() {
        let tags = Tags::new(0);
        let set = entry(&tags, &[b"a"]);
        tags.purge(b"a", PurgeMode::Hard, 0);
        tags.purge(b"b", PurgeMode::Hard, 0);
        assert_eq!((tags.marks(), tags.folds()), (1, 1));
        assert_eq!(tags.verdict(&set), TagVerdict::Purged);
    }
}

/// Model checks of the purge protocol: every interleaving of purges, folds and lookups, under
/// loom. Run with `make test-loom` (see `src/sync.rs`); without `--cfg loom` these tests do not
/// exist. Under loom the marks are spread over two shards.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use loom::thread;

    /// A tag name starting with `prefix` whose mark lives in shard `shard`.
    fn tag_in_shard(tags: &Tags, prefix: &str, shard: usize) -> Vec<u8> {
        (0..)
            .map(|i| format!("{prefix}{i}").into_bytes())
            .find(|t| Tags::shard_of(tags.hash(t)) == shard)
            .expect("some name hashes into every shard")
    }

    /// An entry tagged `t`, fetched before anything else happens, already checked once so that
    /// its `checked` epoch is current (the fast path is armed).
    fn checked_entry(tags: &Tags) -> TagSet {
        let set = *tags.tag_set(tags.next_seq(), &[b"t"]).unwrap();
        assert_eq!(tags.verdict(&set), TagVerdict::Live);
        set
    }

    // A purge that happens-before a lookup (through a release/acquire flag) is always seen,
    // even when the entry's fast path was armed before the purge.
    #[test]
    fn loom_a_purge_that_happens_before_a_lookup_is_seen() {
        loom::model(|| {
            let tags = Arc::new(Tags::new(DEFAULT_MAX_MARKS));
            let set = Arc::new(checked_entry(&tags));
            let purged = Arc::new(AtomicBool::new(false));
            let purger = {
                let (tags, purged) = (tags.clone(), purged.clone());
                thread::spawn(move || {
                    tags.purge(b"t", PurgeMode::Hard, 0);
                    purged.store(true, Ordering::Release);
                })
            };
            // A lookup racing the purge may see either answer...
            let _ = tags.verdict(&set);
            // ...but one that knows the purge is done must see it.
            if purged.load(Ordering::Acquire) {
                assert_eq!(tags.verdict(&set), TagVerdict::Purged);
            }
            purger.join().unwrap();
            assert_eq!(tags.verdict(&set), TagVerdict::Purged);
        });
    }

    // A reader racing a purge never records the entry as checked at an epoch that hides the
    // purge: two racing readers, then every later lookup sees the purge.
    #[test]
    fn loom_a_racing_reader_never_hides_a_purge_it_did_not_see() {
        loom::model(|| {
            let tags = Arc::new(Tags::new(DEFAULT_MAX_MARKS));
            // Never checked: both readers take the slow path and record what they checked.
            let set = Arc::new(*tags.tag_set(tags.next_seq(), &[b"t"]).unwrap());
            let purger = {
                let tags = tags.clone();
                thread::spawn(move || tags.purge(b"t", PurgeMode::Soft, 7))
            };
            let reader = {
                let (tags, set) = (tags.clone(), set.clone());
                thread::spawn(move || tags.verdict(&set))
            };
            let mine = tags.verdict(&set);
            let theirs = reader.join().unwrap();
            purger.join().unwrap();
            for seen in [mine, theirs] {
                assert!(matches!(
                    seen,
                    TagVerdict::Live | TagVerdict::StaleSince { at: 7, .. }
                ));
            }
            assert!(matches!(
                tags.verdict(&set),
                TagVerdict::StaleSince { at: 7, .. }
            ));
        });
    }

    // A fill that starts after a purge returned is not matched by it (its sequence number is
    // above the purge's), while one fetched before it is.
    #[test]
    fn loom_a_fill_started_after_a_purge_is_not_matched_by_it() {
        loom::model(|| {
            let tags = Arc::new(Tags::new(DEFAULT_MAX_MARKS));
            let old = checked_entry(&tags);
            let purged = Arc::new(AtomicBool::new(false));
            let purger = {
                let (tags, purged) = (tags.clone(), purged.clone());
                thread::spawn(move || {
                    tags.purge(b"t", PurgeMode::Hard, 0);
                    purged.store(true, Ordering::Release);
                })
            };
            let after_purge = purged.load(Ordering::Acquire);
            let new = tags.tag_set(tags.next_seq(), &[b"t"]).unwrap();
            let verdict = tags.verdict(&new);
            if after_purge {
                assert_eq!(verdict, TagVerdict::Live);
            }
            purger.join().unwrap();
            assert_eq!(tags.verdict(&old), TagVerdict::Purged);
            if after_purge {
                assert_eq!(tags.verdict(&new), TagVerdict::Live);
            }
        });
    }

    // Applying a soft purge (which raises the entry's sequence number to the purge's) never
    // hides a hard purge numbered below it that the reader had not seen yet, with the two tags'
    // marks in different shards (different locks): purges of the two tags race a lookup that
    // applies what it sees, and the hard purge still removes the entry.
    #[test]
    fn loom_applying_a_soft_purge_never_hides_an_earlier_hard_purge_across_shards() {
        loom::model(|| {
            let tags = Arc::new(Tags::new(DEFAULT_MAX_MARKS));
            let hard_tag = tag_in_shard(&tags, "hard", 0);
            let soft_tag = tag_in_shard(&tags, "soft", 1);
            let mut set = *tags
                .tag_set(tags.next_seq(), &[&hard_tag, &soft_tag])
                .unwrap();
            let hard = {
                let tags = tags.clone();
                thread::spawn(move || tags.purge(&hard_tag, PurgeMode::Hard, 0))
            };
            let soft = {
                let tags = tags.clone();
                thread::spawn(move || tags.purge(&soft_tag, PurgeMode::Soft, 5))
            };
            if let TagVerdict::StaleSince { seq, .. } = tags.verdict(&set) {
                set.mark_applied(seq);
            }
            hard.join().unwrap();
            soft.join().unwrap();
            assert_eq!(tags.verdict(&set), TagVerdict::Purged);
        });
    }

    // A fold racing a reader never hides a mark from it: the entry's purged tag lives in the
    // shard the reader reads second, and a purge of a new tag folds that mark into the
    // cache-wide mark at any point of the reader's walk. The purge of the entry's tag returned
    // before the lookup started, so every lookup must see it.
    #[test]
    fn loom_a_racing_fold_never_hides_a_mark() {
        for mode in [PurgeMode::Hard, PurgeMode::Soft] {
            loom::model(move || {
                let tags = Arc::new(Tags::new(1));
                let unpurged = tag_in_shard(&tags, "first", 0);
                let purged = tag_in_shard(&tags, "second", 1);
                let set = *tags
                    .tag_set(tags.next_seq(), &[&unpurged, &purged])
                    .unwrap();
                tags.purge(&purged, mode, 3);
                let folder = {
                    let tags = tags.clone();
                    thread::spawn(move || tags.purge(b"new", PurgeMode::Hard, 9))
                };
                let seen = tags.verdict(&set);
                folder.join().unwrap();
                assert_eq!(tags.folds(), 1);
                match mode {
                    PurgeMode::Hard => assert_eq!(seen, TagVerdict::Purged),
                    PurgeMode::Soft => {
                        assert!(matches!(seen, TagVerdict::StaleSince { at: 3, .. }))
                    }
                }
            });
        }
    }
}
