//! The cache against a reference model: random operation sequences (inserts, lookups whose
//! tickets are completed at once or held and completed later, waiters, gets, purges by key and
//! by tag, freeze, time passing) run on both, and every answer must match.
//!
//! The model is the lifecycle of DESIGN.md written as plainly as possible: a `HashMap` of
//! entries with their three windows, a record per key of the fill in flight, the back-off and
//! the pass-through. Purges by key and hard purges by tag apply at once to every entry they
//! match. Soft purges by tag follow the design's per-tag generations: a tag remembers its latest
//! four soft purges (order and time), and an entry becomes stale from the first of them made
//! after its fetch started, when it is next looked up. The cache is big enough that nothing is evicted, and the lock timeout longer
//! than any run, so neither needs modelling. Single-threaded and deterministic: proptest shrinks
//! a failure to a short sequence.

use peakcache::{
    Cache, Fill, Freshness, Lookup, ManualClock, PurgeMode, Refresh, Resolved, Served, Waiter,
};
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

const KEYS: u8 = 3;
const TAGS: u8 = 3;
const MS: u64 = 1_000_000;
const SEC: u64 = 1000 * MS;
const RETRY_MIN: u64 = 2 * SEC;
const RETRY_MAX: u64 = 16 * SEC;
const REFRESH_RETRY: u64 = SEC;

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

/// Windows in whole seconds.
#[derive(Clone, Copy, Debug)]
struct Windows {
    ttl: u64,
    swr: u64,
    sie: u64,
}

impl Windows {
    fn freshness(self) -> Freshness {
        Freshness::new(Duration::from_secs(self.ttl))
            .with_swr(Duration::from_secs(self.swr))
            .with_sie(Duration::from_secs(self.sie))
    }
}

/// How a ticket is completed.
#[derive(Clone, Debug)]
enum How {
    Commit {
        value: u32,
        windows: Windows,
        tags: Vec<u8>,
    },
    Fail,
    Uncacheable {
        hold_secs: u64,
    },
    Drop,
}

#[derive(Clone, Debug)]
enum Op {
    Insert {
        key: u8,
        value: u32,
        windows: Windows,
        tags: Vec<u8>,
    },
    /// A lookup; a ticket it hands out is completed at once (`Some`) or held (`None`).
    Lookup {
        key: u8,
        then: Option<How>,
    },
    /// Completes one of the held tickets (by index modulo how many are held).
    Complete {
        slot: usize,
        how: How,
    },
    Get {
        key: u8,
    },
    Purge {
        key: u8,
        hard: bool,
    },
    PurgeTag {
        tag: u8,
        hard: bool,
    },
    Freeze(bool),
    Advance {
        ms: u64,
    },
}

fn windows() -> impl Strategy<Value = Windows> {
    (
        prop::sample::select(vec![0u64, 1, 2, 5, 10]),
        prop::sample::select(vec![0u64, 1, 5, 20]),
        prop::sample::select(vec![0u64, 1, 5, 20, 60]),
    )
        .prop_map(|(ttl, swr, sie)| Windows { ttl, swr, sie })
}

fn tags() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0..TAGS, 0..3)
}

fn how() -> impl Strategy<Value = How> {
    prop_oneof![
        4 => (any::<u32>(), windows(), tags())
            .prop_map(|(value, windows, tags)| How::Commit { value, windows, tags }),
        2 => Just(How::Fail),
        1 => prop::sample::select(vec![1u64, 5]).prop_map(|hold_secs| How::Uncacheable { hold_secs }),
        1 => Just(How::Drop),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..KEYS, any::<u32>(), windows(), tags())
            .prop_map(|(key, value, windows, tags)| Op::Insert { key, value, windows, tags }),
        8 => (0..KEYS, prop::option::weighted(0.7, how()))
            .prop_map(|(key, then)| Op::Lookup { key, then }),
        3 => (any::<usize>(), how()).prop_map(|(slot, how)| Op::Complete { slot, how }),
        2 => (0..KEYS).prop_map(|key| Op::Get { key }),
        1 => (0..KEYS, any::<bool>()).prop_map(|(key, hard)| Op::Purge { key, hard }),
        2 => (0..TAGS, any::<bool>()).prop_map(|(tag, hard)| Op::PurgeTag { tag, hard }),
        1 => any::<bool>().prop_map(Op::Freeze),
        5 => prop::sample::select(vec![0u64, 1, 500, 999, 1000, 1001, 2000, 5000, 10_000, 30_000])
            .prop_map(|ms| Op::Advance { ms }),
    ]
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Fresh,
    Stale,
    StaleIfError,
    Dead,
}

#[derive(Clone, Debug)]
struct Entry {
    value: u32,
    stored_at: u64,
    ttl: u64,
    swr: u64,
    sie: u64,
    tags: BTreeSet<u8>,
    /// When its fetch started, in the order of fetches and tag purges; raised as soft tag purges
    /// are applied to it.
    seq: u64,
}

impl Entry {
    fn fresh_until(&self) -> u64 {
        self.stored_at + self.ttl
    }

    fn standing(&self, now: u64) -> Standing {
        if now < self.fresh_until() {
            Standing::Fresh
        } else if now < self.fresh_until() + self.swr {
            Standing::Stale
        } else if now < self.fresh_until() + self.sie {
            Standing::StaleIfError
        } else {
            Standing::Dead
        }
    }

    /// Stale from `at` on, if it was fresh later; its stale windows then count from `at`.
    fn make_stale_at(&mut self, at: u64) {
        if self.fresh_until() > at {
            self.ttl = at.saturating_sub(self.stored_at);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fill,
    Refresh,
}

/// A fill or refresh in flight.
#[derive(Clone, Debug)]
struct Flight {
    id: u64,
    kind: Kind,
    /// When it started, in the order of fetches and tag purges.
    seq: u64,
    /// The key was purged: the value is stored already stale.
    invalidated: bool,
}

/// The latest purges of a tag: entries whose fetch started before them are affected.
#[derive(Clone, Debug, Default)]
struct Mark {
    hard_seq: u64,
    /// `(seq, time)` of the latest four soft purges, oldest first.
    soft: Vec<(u64, u64)>,
}

/// Per-key lifecycle state beyond the entry. A key with none is as if it had the default.
#[derive(Clone, Debug, Default)]
struct Control {
    flight: Option<Flight>,
    retry_at: u64,
    failures: u32,
    pass_until: u64,
}

/// What the model expects of a lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    Fresh(u32),
    Stale(u32, Served, bool),
    Miss,
    Wait,
    Pass,
}

/// How a flight ended, as its waiters see it.
#[derive(Clone, Debug)]
enum Ended {
    Value(u32),
    Failed(Option<u32>),
    Pass,
    Abandoned,
}

#[derive(Default)]
struct Model {
    now: u64,
    frozen: bool,
    entries: HashMap<u8, Entry>,
    controls: HashMap<u8, Control>,
    marks: HashMap<u8, Mark>,
    seq: u64,
    next_flight: u64,
}

impl Model {
    fn control(&mut self, key: u8) -> &mut Control {
        self.controls.entry(key).or_default()
    }

    /// Forgets a key's control record once it holds nothing (as the cache does after a ticket
    /// ends or an insert). Failures are remembered while the key's entry can be served stale.
    fn tidy(&mut self, key: u8) {
        let now = self.now;
        let servable = Self::settled_entry(&self.marks, &self.entries, key)
            .is_some_and(|e| e.standing(now) != Standing::Dead);
        if self.controls.get(&key).is_some_and(|c| {
            c.flight.is_none()
                && c.retry_at <= now
                && c.pass_until <= now
                && (c.failures == 0 || !servable)
        }) {
            self.controls.remove(&key);
        }
    }

    fn settled_entry(
        marks: &HashMap<u8, Mark>,
        entries: &HashMap<u8, Entry>,
        key: u8,
    ) -> Option<Entry> {
        entries.get(&key).map(|e| Self::settled(marks, e))
    }

    fn backoff(failures: u32) -> u64 {
        (RETRY_MIN << (failures.saturating_sub(1).min(30))).min(RETRY_MAX)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn start(&mut self, key: u8, kind: Kind) -> u64 {
        self.next_flight += 1;
        let id = self.next_flight;
        let seq = self.next_seq();
        self.control(key).flight = Some(Flight {
            id,
            kind,
            seq,
            invalidated: false,
        });
        id
    }

    /// `e` with the soft tag purges made after its fetch applied: stale from the purge on.
    fn settled(marks: &HashMap<u8, Mark>, e: &Entry) -> Entry {
        let mut e = e.clone();
        // Per tag: the first soft purge after the fetch, and the tag's newest soft purge.
        let pending: Vec<(u64, u64)> = e
            .tags
            .iter()
            .filter_map(|t| marks.get(t))
            .filter_map(|m| {
                let first = m.soft.iter().find(|(seq, _)| *seq > e.seq)?;
                Some((first.1, m.soft.last()?.0))
            })
            .collect();
        if let Some(at) = pending.iter().map(|p| p.0).min() {
            e.make_stale_at(at);
            e.seq = pending.iter().map(|p| p.1).max().unwrap();
        }
        e
    }

    /// Applies the pending soft tag purges to `key`'s entry (as a lookup does).
    fn settle(&mut self, key: u8) {
        if let Some(e) = self.entries.get(&key) {
            let e = Self::settled(&self.marks, e);
            self.entries.insert(key, e);
        }
    }

    /// The lifecycle decision of DESIGN.md: serve fresh; serve stale (one caller refreshes);
    /// serve stale-if-error while backing off; else fill, or wait for the fill in flight.
    fn lookup(&mut self, key: u8) -> Expect {
        self.lookup_as(key, false)
    }

    /// A lookup; a waiter's (`for_waiter`) is never handed a refresh ticket.
    fn lookup_as(&mut self, key: u8, for_waiter: bool) -> Expect {
        self.settle(key);
        let now = self.now;
        let control = self.controls.get(&key).cloned().unwrap_or_default();
        let backing_off = now < control.retry_at;
        let standing = self.entries.get(&key).map(|e| {
            if self.frozen {
                Standing::Fresh
            } else {
                e.standing(now)
            }
        });
        let value = self.entries.get(&key).map(|e| e.value);
        match standing {
            Some(Standing::Fresh) => return Expect::Fresh(value.unwrap()),
            Some(Standing::Stale) if control.flight.is_some() || backing_off || for_waiter => {
                return Expect::Stale(value.unwrap(), Served::Stale, false)
            }
            // Backing off, or one caller is probing an origin that failed: serve stale at once.
            Some(Standing::StaleIfError)
                if backing_off || (control.flight.is_some() && control.failures > 0) =>
            {
                return Expect::Stale(value.unwrap(), Served::StaleIfError, false)
            }
            _ => {}
        }
        if control.pass_until > now {
            return Expect::Pass;
        }
        if standing == Some(Standing::Stale) {
            self.start(key, Kind::Refresh);
            return Expect::Stale(value.unwrap(), Served::Stale, true);
        }
        // The origin failed before and the back-off has passed: a background probe, served
        // stale (a waiter re-looking up is not handed it, and fills instead).
        if standing == Some(Standing::StaleIfError)
            && control.failures > 0
            && control.flight.is_none()
            && !for_waiter
        {
            self.start(key, Kind::Refresh);
            return Expect::Stale(value.unwrap(), Served::StaleIfError, true);
        }
        if control.flight.is_some() {
            Expect::Wait
        } else {
            self.start(key, Kind::Fill);
            Expect::Miss
        }
    }

    /// `get`: the value if a lookup would serve it fresh (anything stored, when frozen).
    fn get(&self, key: u8) -> Option<u32> {
        let e = Self::settled(&self.marks, self.entries.get(&key)?);
        (self.frozen || e.standing(self.now) == Standing::Fresh).then_some(e.value)
    }

    fn insert(&mut self, key: u8, value: u32, w: Windows, tags: &[u8]) {
        let now = self.now;
        let seq = self.next_seq();
        self.entries.insert(
            key,
            Entry {
                value,
                stored_at: now,
                ttl: w.ttl * SEC,
                swr: w.swr * SEC,
                sie: w.sie * SEC,
                tags: tags.iter().copied().collect(),
                seq,
            },
        );
        if let Some(c) = self.controls.get_mut(&key) {
            // A stored value ends the pass-through, the back-off and the run of failures.
            if c.pass_until > now || c.retry_at > now || c.failures > 0 {
                c.pass_until = 0;
                c.retry_at = 0;
                c.failures = 0;
            }
        }
        self.tidy(key);
    }

    /// Ends the flight of `key` (it must be `id`) as `how` says. Returns how its waiters see it
    /// and, for a failed fill, the stale-if-error value handed back.
    fn complete(&mut self, key: u8, id: u64, how: &How) -> (Ended, Option<u32>) {
        let now = self.now;
        let flight = self
            .control(key)
            .flight
            .take()
            .expect("the ticket's flight");
        assert_eq!(flight.id, id, "model: one flight per key");
        let ended = match how {
            How::Commit {
                value,
                windows,
                tags,
            } => {
                let tags: BTreeSet<u8> = tags.iter().copied().collect();
                let hard_purged = tags
                    .iter()
                    .any(|t| self.marks.get(t).is_some_and(|m| m.hard_seq > flight.seq));
                let e = Entry {
                    value: *value,
                    stored_at: now,
                    // A purge of the key while it was fetched: it may have fetched what was
                    // purged, so it is stored already stale. (Tag purges since its start apply
                    // through `seq`.)
                    ttl: if flight.invalidated {
                        0
                    } else {
                        windows.ttl * SEC
                    },
                    swr: windows.swr * SEC,
                    sie: windows.sie * SEC,
                    tags,
                    seq: flight.seq,
                };
                if hard_purged {
                    self.entries.remove(&key);
                } else {
                    self.entries.insert(key, e);
                }
                let c = self.control(key);
                c.failures = 0;
                c.retry_at = 0;
                c.pass_until = 0;
                Ended::Value(*value)
            }
            How::Fail => {
                self.settle(key);
                let c = self.control(key);
                c.failures += 1;
                c.retry_at = now + Self::backoff(c.failures);
                let stale = self
                    .entries
                    .get(&key)
                    .filter(|e| e.standing(now) != Standing::Dead)
                    .map(|e| e.value);
                Ended::Failed(stale)
            }
            How::Uncacheable { hold_secs } => {
                self.entries.remove(&key);
                self.control(key).pass_until = now + hold_secs * SEC;
                Ended::Pass
            }
            How::Drop => {
                if flight.kind == Kind::Refresh {
                    let c = self.control(key);
                    c.retry_at = c.retry_at.max(now + REFRESH_RETRY);
                }
                Ended::Abandoned
            }
        };
        self.tidy(key);
        let handed_back = match &ended {
            Ended::Failed(stale) => *stale,
            _ => None,
        };
        (ended, handed_back)
    }

    fn purge(&mut self, key: u8, hard: bool) -> bool {
        self.settle(key);
        let now = self.now;
        let mut found = false;
        if let Some(f) = self.controls.get_mut(&key).and_then(|c| c.flight.as_mut()) {
            f.invalidated = true;
            found = true;
        }
        if hard {
            found |= self.entries.remove(&key).is_some();
        } else if let Some(e) = self.entries.get_mut(&key) {
            e.make_stale_at(now);
            found = true;
        }
        found
    }

    /// Hard: every entry carrying `tag` is gone at once. Soft: recorded for the next lookups.
    /// Either way fetches in flight are affected too (through their `seq`).
    fn purge_tag(&mut self, tag: u8, hard: bool) {
        let now = self.now;
        let seq = self.next_seq();
        let mark = self.marks.entry(tag).or_default();
        if hard {
            mark.hard_seq = seq;
            self.entries.retain(|_, e| !e.tags.contains(&tag));
        } else {
            mark.soft.push((seq, now));
            if mark.soft.len() > 4 {
                mark.soft.remove(0);
            }
        }
    }

    fn flight_id(&self, key: u8) -> u64 {
        self.controls[&key].flight.as_ref().expect("a flight").id
    }
}

// ---------------------------------------------------------------------------------------------
// Running both
// ---------------------------------------------------------------------------------------------

enum Ticket {
    Fill(Fill<u32>),
    Refresh(Refresh<u32>),
}

struct Held {
    key: u8,
    flight: u64,
    ticket: Ticket,
}

struct Waiting {
    key: u8,
    flight: u64,
    waiter: Waiter<u32>,
}

struct Run {
    cache: Cache<u32>,
    clock: ManualClock,
    model: Model,
    held: Vec<Held>,
    waiting: Vec<Waiting>,
    lookups: u64,
    step: usize,
}

fn k(key: u8) -> [u8; 1] {
    [b'a' + key]
}

fn tag_names(tags: &[u8]) -> Vec<String> {
    tags.iter().map(|t| format!("tag{t}")).collect()
}

impl Run {
    fn new() -> Self {
        let clock = ManualClock::new();
        let cache = Cache::builder()
            .clock(clock.clone())
            .max_bytes(1 << 20)
            .lock_timeout(Duration::from_secs(10 * 365 * 86_400))
            .retry_backoff(
                Duration::from_nanos(RETRY_MIN),
                Duration::from_nanos(RETRY_MAX),
            )
            .refresh_retry(Duration::from_nanos(REFRESH_RETRY))
            .build();
        Run {
            cache,
            clock,
            model: Model::default(),
            held: Vec::new(),
            waiting: Vec::new(),
            lookups: 0,
            step: 0,
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.step += 1;
        match op {
            Op::Insert {
                key,
                value,
                windows,
                tags,
            } => {
                self.cache
                    .insert_tagged(&k(*key), *value, windows.freshness(), &tag_names(tags))
                    .unwrap();
                self.model.insert(*key, *value, *windows, tags);
            }
            Op::Lookup { key, then } => {
                self.lookups += 1;
                let got = self.cache.lookup(&k(*key));
                let want = self.model.lookup(*key);
                self.lookup_answer(*key, got, want, then.as_ref())?;
            }
            Op::Complete { slot, how } => {
                if !self.held.is_empty() {
                    let held = self.held.remove(slot % self.held.len());
                    self.complete(held, how)?;
                }
            }
            Op::Get { key } => {
                self.lookups += 1;
                let got = self.cache.get(&k(*key));
                prop_assert_eq!(got, self.model.get(*key), "get of key {}", key);
            }
            Op::Purge { key, hard } => {
                let mode = if *hard {
                    PurgeMode::Hard
                } else {
                    PurgeMode::Soft
                };
                let got = self.cache.purge(&k(*key), mode);
                prop_assert_eq!(got, self.model.purge(*key, *hard), "purge found");
            }
            Op::PurgeTag { tag, hard } => {
                let mode = if *hard {
                    PurgeMode::Hard
                } else {
                    PurgeMode::Soft
                };
                self.cache.purge_tag(format!("tag{tag}"), mode);
                self.model.purge_tag(*tag, *hard);
            }
            Op::Freeze(on) => {
                self.cache.freeze(*on);
                self.model.frozen = *on;
            }
            Op::Advance { ms } => {
                self.clock.advance(Duration::from_millis(*ms));
                self.model.now += ms * MS;
            }
        }
        Ok(())
    }

    /// Checks a lookup's answer against the model's, then uses its ticket or waiter.
    fn lookup_answer(
        &mut self,
        key: u8,
        got: Lookup<u32>,
        want: Expect,
        then: Option<&How>,
    ) -> Result<(), TestCaseError> {
        let ticket = match (got, &want) {
            (Lookup::Fresh(hit), Expect::Fresh(v)) => {
                prop_assert_eq!((*hit.value(), hit.served()), (*v, Served::Fresh));
                None
            }
            (Lookup::Stale(hit, refresh), Expect::Stale(v, served, ticket)) => {
                prop_assert_eq!(
                    (*hit.value(), hit.served(), refresh.is_some()),
                    (*v, *served, *ticket)
                );
                refresh.map(Ticket::Refresh)
            }
            (Lookup::Miss(fill), Expect::Miss) => Some(Ticket::Fill(fill)),
            (Lookup::Wait(waiter), Expect::Wait) => {
                let flight = self.model.flight_id(key);
                match waiter.try_wait() {
                    Ok(_) => prop_assert!(false, "a waiter resolved before its fill ended"),
                    Err(waiter) => {
                        if self.waiting.iter().filter(|w| w.key == key).count() < 2 {
                            self.waiting.push(Waiting {
                                key,
                                flight,
                                waiter,
                            });
                        }
                    }
                }
                None
            }
            (Lookup::Pass, Expect::Pass) => None,
            (got, want) => {
                let got = match got {
                    Lookup::Fresh(h) => format!("Fresh({})", h.value()),
                    Lookup::Stale(h, r) => {
                        format!("Stale({}, {:?}, {})", h.value(), h.served(), r.is_some())
                    }
                    Lookup::Miss(_) => "Miss".into(),
                    Lookup::Wait(_) => "Wait".into(),
                    Lookup::Pass => "Pass".into(),
                };
                prop_assert!(false, "lookup of key {key}: cache {got}, model {want:?}");
                None
            }
        };
        if let Some(ticket) = ticket {
            let held = Held {
                key,
                flight: self.model.flight_id(key),
                ticket,
            };
            match then {
                Some(how) => self.complete(held, how)?,
                None => self.held.push(held),
            }
        }
        Ok(())
    }

    /// Completes a ticket on both sides, then resolves the waiters of its flight.
    fn complete(&mut self, held: Held, how: &How) -> Result<(), TestCaseError> {
        let (ended, handed_back) = self.model.complete(held.key, held.flight, how);
        match (held.ticket, how) {
            (
                Ticket::Fill(f),
                How::Commit {
                    value,
                    windows,
                    tags,
                },
            ) => f
                .commit_tagged(*value, windows.freshness(), &tag_names(tags))
                .unwrap(),
            (
                Ticket::Refresh(r),
                How::Commit {
                    value,
                    windows,
                    tags,
                },
            ) => r
                .commit_tagged(*value, windows.freshness(), &tag_names(tags))
                .unwrap(),
            (Ticket::Fill(f), How::Fail) => {
                let got = f.fail().map(|h| (*h.value(), h.served()));
                let want = handed_back.map(|v| (v, Served::StaleIfError));
                prop_assert_eq!(got, want, "value handed back by a failed fill");
            }
            (Ticket::Refresh(r), How::Fail) => r.fail(),
            (Ticket::Fill(f), How::Uncacheable { hold_secs }) => {
                f.uncacheable(Duration::from_secs(*hold_secs))
            }
            (Ticket::Refresh(r), How::Uncacheable { hold_secs }) => {
                r.uncacheable(Duration::from_secs(*hold_secs))
            }
            (Ticket::Fill(f), How::Drop) => drop(f),
            (Ticket::Refresh(r), How::Drop) => drop(r),
        }
        self.resolve_waiters(held.flight, &ended)
    }

    /// Resolves, in order, every waiter of the flight `id` that just ended as `ended`.
    fn resolve_waiters(&mut self, id: u64, ended: &Ended) -> Result<(), TestCaseError> {
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|w| w.flight == id);
        self.waiting = others;
        for w in mine {
            let got = w.waiter.try_wait();
            let want = match ended {
                Ended::Value(v) | Ended::Failed(Some(v)) => Expect::Fresh(*v),
                Ended::Failed(None) => Expect::Miss, // stands for `Resolved::Failed` here
                Ended::Pass => Expect::Pass,
                // The waiter looks the key up again (uncounted) and acts on the answer.
                // It is never handed a refresh ticket: the next caller refreshes.
                Ended::Abandoned => match self.model.lookup_as(w.key, true) {
                    Expect::Fresh(v) | Expect::Stale(v, _, _) => Expect::Fresh(v),
                    other => other,
                },
            };
            match (got, want) {
                (Ok(Resolved::Hit(hit)), Expect::Fresh(v)) => {
                    prop_assert_eq!(*hit.value(), v, "value a waiter got")
                }
                (Ok(Resolved::Failed), Expect::Miss) if matches!(ended, Ended::Failed(None)) => {}
                (Ok(Resolved::Pass), Expect::Pass) => {}
                (Ok(Resolved::Fill(fill)), Expect::Miss) => self.held.push(Held {
                    key: w.key,
                    flight: self.model.flight_id(w.key),
                    ticket: Ticket::Fill(fill),
                }),
                (Err(waiter), Expect::Wait) => self.waiting.push(Waiting {
                    key: w.key,
                    flight: self.model.flight_id(w.key),
                    waiter,
                }),
                (got, want) => {
                    let got = match got {
                        Ok(Resolved::Hit(h)) => format!("Hit({})", h.value()),
                        Ok(Resolved::Fill(_)) => "Fill".into(),
                        Ok(Resolved::Pass) => "Pass".into(),
                        Ok(Resolved::Failed) => "Failed".into(),
                        Ok(Resolved::TimedOut) => "TimedOut".into(),
                        Err(_) => "still waiting".into(),
                    };
                    prop_assert!(
                        false,
                        "waiter of key {} after {ended:?}: cache {got}, model {want:?}",
                        w.key
                    );
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    // Every lookup, get, purge and waiter resolution answers what the lifecycle model says,
    // and every lookup and get is counted once.
    #[test]
    fn the_cache_follows_the_lifecycle_model(ops in prop::collection::vec(op(), 1..80)) {
        let mut run = Run::new();
        for op in &ops {
            run.apply(op)?;
        }
        prop_assert_eq!(run.cache.stats().lookups(), run.lookups);
    }
}
