//! Tags (surrogate keys) and purge by tag, taking effect at once without touching the entries.
//!
//! A purge records, per tag, the store sequence number at which it happened; an entry records
//! the sequence number of its fill's start and the hashes of its tags. Lookups compare the two
//! lazily, so purging a tag with a million entries is one map write, not a million. A global
//! epoch, bumped by every tag purge, lets a lookup skip the comparison (one atomic read) when no
//! tag has been purged since the entry was last checked.

use crate::sync::{AtomicU64, RwLock};
use ahash::RandomState;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

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
    /// (nanoseconds); `seq` is that purge's sequence number, for [`TagSet::mark_applied`].
    StaleSince { at: u64, seq: u64 },
    /// A tag was hard-purged after the entry was fetched.
    Purged,
}

/// The tags of one stored entry, with the sequence number its fill started at.
pub(crate) struct TagSet {
    seq: u64,
    /// The tag epoch at which this entry was last found live.
    checked: AtomicU64,
    hashes: Box<[u64]>,
}

impl TagSet {
    /// Records that soft purges up to `seq` have been applied to the entry's own times.
    pub(crate) fn mark_applied(&mut self, seq: u64) {
        self.seq = self.seq.max(seq);
    }
}

/// Soft purges remembered per tag. An entry is stale from the first soft purge after its fill
/// started; only when more purges of one tag than this happen before the entry is next looked
/// up does it count from the oldest one remembered (later than the true first).
const SOFT_HISTORY: usize = 4;

/// The purges of one tag.
#[derive(Clone, Copy, Default)]
struct TagMark {
    hard_seq: u64,
    /// `(sequence, clock time)` of the latest soft purges, oldest first; unused slots are zero.
    soft: [(u64, u64); SOFT_HISTORY],
}

impl TagMark {
    fn soft_purge(&mut self, seq: u64, at: u64) {
        self.soft.rotate_left(1);
        self.soft[SOFT_HISTORY - 1] = (seq, at);
    }

    /// The first soft purge after `seq`, as `(time, newest soft purge's sequence)`.
    fn soft_after(&self, seq: u64) -> Option<(u64, u64)> {
        let newest = self.soft[SOFT_HISTORY - 1].0;
        self.soft
            .iter()
            .find(|(s, _)| *s > seq)
            .map(|&(_, at)| (at, newest))
    }
}

/// The cache-wide tag table and store sequence.
pub(crate) struct Tags {
    /// Bumped after every tag purge.
    epoch: AtomicU64,
    /// Ordering of fills and purges: a purge matches entries whose fill started before it.
    seq: AtomicU64,
    marks: RwLock<HashMap<u64, TagMark, RandomState>>,
    hasher: RandomState,
}

impl Tags {
    pub(crate) fn new() -> Self {
        Tags {
            epoch: AtomicU64::new(0),
            seq: AtomicU64::new(1),
            marks: RwLock::new(HashMap::default()),
            hasher: RandomState::new(),
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

    /// Builds the tag set of an entry whose fill started at `seq`; `None` without tags.
    pub(crate) fn tag_set(&self, seq: u64, tags: &[&[u8]]) -> Option<Box<TagSet>> {
        if tags.is_empty() {
            return None;
        }
        let mut hashes: Vec<u64> = tags.iter().map(|t| self.hash(t)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        Some(Box::new(TagSet {
            seq,
            // Zero is never current once a purge happened, and a fresh table is at zero with
            // no marks, so a new entry is checked against the marks on its first lookup.
            checked: AtomicU64::new(u64::MAX),
            hashes: hashes.into_boxed_slice(),
        }))
    }

    /// Purges `tag`: every entry carrying it whose fill started before now is affected.
    pub(crate) fn purge(&self, tag: &[u8], mode: PurgeMode, now: u64) {
        let hash = self.hash(tag);
        {
            // The sequence number is taken under the lock, so marks become visible in their
            // order: whoever reads the marks sees every purge numbered below the ones it sees.
            let mut marks = self.marks.write();
            let seq = self.next_seq();
            let mark = marks.entry(hash).or_default();
            match mode {
                PurgeMode::Hard => mark.hard_seq = seq,
                PurgeMode::Soft => mark.soft_purge(seq, now),
            }
        }
        // After the mark is visible: a lookup that reads the new epoch then reads the marks
        // sees this purge.
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// What the table says of `set`; cheap (one atomic load) when no tag purge happened since
    /// the entry was last found live.
    #[inline]
    pub(crate) fn verdict(&self, set: &TagSet) -> TagVerdict {
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
        let marks = self.marks.read();
        let mut verdict = TagVerdict::Live;
        for h in set.hashes.iter() {
            if let Some(m) = marks.get(h) {
                if m.hard_seq > set.seq {
                    return TagVerdict::Purged;
                }
                if let Some((soft_at, soft_seq)) = m.soft_after(set.seq) {
                    verdict = match verdict {
                        TagVerdict::StaleSince { at, seq } => TagVerdict::StaleSince {
                            at: at.min(soft_at),
                            seq: seq.max(soft_seq),
                        },
                        _ => TagVerdict::StaleSince {
                            at: soft_at,
                            seq: soft_seq,
                        },
                    };
                }
            }
        }
        verdict
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_purge_matches_only_entries_fetched_before_it() {
        let tags = Tags::new();
        let old = tags
            .tag_set(tags.next_seq(), &[b"post:1", b"home"])
            .unwrap();
        assert_eq!(tags.verdict(&old), TagVerdict::Live);
        tags.purge(b"post:1", PurgeMode::Hard, 0);
        let new = tags.tag_set(tags.next_seq(), &[b"post:1"]).unwrap();
        assert_eq!(tags.verdict(&old), TagVerdict::Purged);
        assert_eq!(tags.verdict(&new), TagVerdict::Live);
    }

    #[test]
    fn a_soft_purge_reports_when_it_happened() {
        let tags = Tags::new();
        let mut set = tags.tag_set(tags.next_seq(), &[b"a", b"b"]).unwrap();
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
        let tags = Tags::new();
        let old = tags.tag_set(tags.next_seq(), &[b"t"]).unwrap();
        tags.purge(b"t", PurgeMode::Soft, 10);
        let middle = tags.tag_set(tags.next_seq(), &[b"t"]).unwrap();
        tags.purge(b"t", PurgeMode::Soft, 20);
        let at = |set: &TagSet| match tags.verdict(set) {
            TagVerdict::StaleSince { at, .. } => at,
            other => panic!("{other:?}"),
        };
        assert_eq!((at(&old), at(&middle)), (10, 20));
    }

    #[test]
    fn untouched_tags_stay_live_after_other_purges() {
        let tags = Tags::new();
        let set = tags.tag_set(tags.next_seq(), &[b"a"]).unwrap();
        tags.purge(b"z", PurgeMode::Hard, 0);
        assert_eq!(tags.verdict(&set), TagVerdict::Live);
        assert!(tags.tag_set(1, &[]).is_none());
    }
}

/// Model checks of the purge protocol: every interleaving of a purge with lookups, under loom.
/// Run with `RUSTFLAGS="--cfg loom" cargo test -p peakcache --release --lib loom` (see
/// `src/sync.rs`); without `--cfg loom` these tests do not exist.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::sync::Arc;
    use loom::thread;

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
            let tags = Arc::new(Tags::new());
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
            let tags = Arc::new(Tags::new());
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
            let tags = Arc::new(Tags::new());
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
    // hides a hard purge numbered below it that the reader had not seen yet: purges of two tags
    // race a lookup that applies what it sees, and the hard purge still removes the entry.
    #[test]
    fn loom_applying_a_soft_purge_never_hides_an_earlier_hard_purge() {
        loom::model(|| {
            let tags = Arc::new(Tags::new());
            let mut set = *tags.tag_set(tags.next_seq(), &[b"a", b"b"]).unwrap();
            let hard = {
                let tags = tags.clone();
                thread::spawn(move || tags.purge(b"a", PurgeMode::Hard, 0))
            };
            let soft = {
                let tags = tags.clone();
                thread::spawn(move || tags.purge(b"b", PurgeMode::Soft, 5))
            };
            if let TagVerdict::StaleSince { seq, .. } = tags.verdict(&set) {
                set.mark_applied(seq);
            }
            hard.join().unwrap();
            soft.join().unwrap();
            assert_eq!(tags.verdict(&set), TagVerdict::Purged);
        });
    }
}
