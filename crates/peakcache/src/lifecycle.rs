//! What a lookup answers and the tickets it hands out: the entry lifecycle of peakcache.
//!
//! ```text
//! lookup(key) -> Fresh(hit)                 serve it
//!             -> Stale(hit, Some(refresh))  serve it; you alone refresh it in the background
//!             -> Stale(hit, None)           serve it; someone else refreshes (or the origin is backing off)
//!             -> Miss(fill)                 fetch, then fill.commit / fill.fail / fill.uncacheable
//!             -> Wait(waiter)               someone is filling: block, poll or await the waiter
//!             -> Pass                       fetch for yourself and do not store (uncacheable key)
//! ```
//!
//! Every decision of the lifecycle is made here, once, for both the lock-free fast path and
//! the locked slow path of `Cache::lookup`, and for the shared-memory tier (`peakcache-shm`),
//! which keeps its state in a region but decides with the same functions: which answer a
//! lookup gets ([`decide`]), when a key backs off and for how long ([`KeyRecord::fail`],
//! [`Timing::backoff`]), when a key passes through, and what a key must remember between
//! lookups ([`KeyRecord`]). `cache.rs` takes the locks, counts, and hands out what was decided.

use crate::cache::Cache;
use crate::clock::duration_to_nanos;
use crate::error::InsertError;
use crate::flight::{Flight, Outcome};
use crate::freshness::Freshness;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The answer of [`Cache::lookup`].
#[must_use = "a Miss or Stale answer carries a ticket that must be used or dropped"]
pub enum Lookup<V: Clone + Send + Sync + 'static> {
    /// A fresh entry: serve it.
    Fresh(Hit<V>),
    /// A stale entry, servable now. `Some(refresh)` for exactly one caller per entry, who
    /// should refresh it in the background; `None` for the others.
    Stale(Hit<V>, Option<Refresh<V>>),
    /// Nothing servable: this caller fetches and completes the [`Fill`]. Exactly one fill per key
    /// exists at a time.
    Miss(Fill<V>),
    /// Another caller is filling this key: wait for its outcome with the [`Waiter`].
    Wait(Waiter<V>),
    /// The key passes through: fetch for yourself, store nothing, wait for nobody. Answered for a
    /// key whose last fill found it uncacheable, for the hold that fill gave. (A key whose fill
    /// outlived the lock timeout has failed: it answers `Stale` while it backs off if a stale
    /// entry is left, else `Miss`, and a new fill starts.)
    Pass,
}

impl<V: Clone + Send + Sync + 'static> Lookup<V> {
    /// The answer serving `hit` as it stands, with no ticket.
    pub(crate) fn serving(hit: Hit<V>) -> Self {
        match hit.served {
            Served::Fresh => Lookup::Fresh(hit),
            Served::Stale | Served::StaleIfError => Lookup::Stale(hit, None),
        }
    }
}

/// How a hit is being served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Served {
    /// Inside its freshness lifetime (or the cache is frozen).
    Fresh,
    /// Stale, inside its stale-while-revalidate window.
    Stale,
    /// Stale past stale-while-revalidate, served because the origin failed (stale-if-error).
    StaleIfError,
}

/// Who is looking a key up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asker {
    /// A caller of `lookup`: counted, and may be handed a ticket.
    Caller,
    /// A waiter whose filler gave up, looking again: counted already, and never handed a
    /// refresh ticket (it only wants a value; the next caller refreshes).
    Waiter,
}

/// The lifecycle's timing, in nanoseconds of the cache's clock: how long a fetch may take, the
/// back-off after failures, and the delay after a dropped refresh ticket. Every backend's
/// builder fills one ([`crate::Builder`], and the shared-memory tier's), with these defaults,
/// and applies it with the same rules ([`Timing::backoff`], [`Timing::deadline`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a fill or refresh may take before it counts as failed.
    pub lock_timeout: u64,
    /// The back-off after the first failure in a row.
    pub retry_min: u64,
    /// The longest back-off.
    pub retry_max: u64,
    /// How long a refresh ticket dropped unused blocks the next one.
    pub refresh_retry: u64,
}

impl Default for Timing {
    /// A lock timeout of 5 s (nginx's `proxy_cache_lock_timeout`), a back-off from 1 s doubling
    /// to 60 s, a refresh retry of 1 s.
    fn default() -> Self {
        const SEC: u64 = 1_000_000_000;
        Timing {
            lock_timeout: 5 * SEC,
            retry_min: SEC,
            retry_max: 60 * SEC,
            refresh_retry: SEC,
        }
    }
}

impl Timing {
    /// Sets the lock timeout (saturating at `u64::MAX` nanoseconds).
    pub fn set_lock_timeout(&mut self, t: Duration) {
        self.lock_timeout = duration_to_nanos(t);
    }

    /// Sets the back-off: `min` after the first failure, doubling up to `max` (never below
    /// `min`).
    pub fn set_retry_backoff(&mut self, min: Duration, max: Duration) {
        self.retry_min = duration_to_nanos(min);
        self.retry_max = duration_to_nanos(max.max(min));
    }

    /// Sets the delay after a dropped refresh ticket.
    pub fn set_refresh_retry(&mut self, t: Duration) {
        self.refresh_retry = duration_to_nanos(t);
    }

    /// The back-off after `failures` failures in a row: `retry_min`, doubling with each
    /// failure, capped at `retry_max`; never overflows.
    pub fn backoff(&self, failures: u32) -> u64 {
        let shift = failures.saturating_sub(1).min(30);
        self.retry_min
            .saturating_mul(1 << shift)
            .min(self.retry_max)
    }

    /// When a fetch started at `now` outlives the lock timeout (saturating).
    pub fn deadline(&self, now: u64) -> u64 {
        now.saturating_add(self.lock_timeout)
    }
}

/// Writes the setters of a builder's [`Timing`] (a field named `timing`): `lock_timeout`,
/// `retry_backoff` and `refresh_retry`, with one text and one behaviour for every backend's
/// builder (the in-process [`crate::Builder`] and the shared-memory tier's).
#[macro_export]
macro_rules! timing_setters {
    () => {
        /// How long a fill or refresh may take before it counts as failed: its waiters are
        /// released (with the stale-if-error entry if there is one, else to fetch for
        /// themselves) and the key backs off as after any failure, so a hanging origin is probed
        /// once per lock timeout and back-off, not once per lock timeout. Default 5 s, like
        /// nginx's `proxy_cache_lock_timeout`.
        pub fn lock_timeout(mut self, t: ::std::time::Duration) -> Self {
            self.timing.set_lock_timeout(t);
            self
        }

        /// The back-off after a failed fill or refresh: `min` after the first failure, doubling
        /// with each failure in a row up to `max` (never below `min`). Default 1 s to 60 s.
        pub fn retry_backoff(
            mut self,
            min: ::std::time::Duration,
            max: ::std::time::Duration,
        ) -> Self {
            self.timing.set_retry_backoff(min, max);
            self
        }

        /// How long a refresh ticket dropped unused blocks the next one. Default 1 s.
        pub fn refresh_retry(mut self, t: ::std::time::Duration) -> Self {
            self.timing.set_refresh_retry(t);
            self
        }
    };
}

/// What a key must remember between lookups besides its fetch in flight: the back-off after
/// failures and the pass-through after an uncacheable answer. Most keys have none. Instants are
/// nanoseconds of the cache's clock. The in-process cache keeps one per key in a table beside
/// its entries; the shared-memory tier in the key's index slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyRecord {
    /// No new fetch of a key with a servable stale entry before this instant.
    pub retry_at: u64,
    /// Failures in a row, for the back-off's growth.
    pub failures: u32,
    /// Lookups pass through (fetch uncached, no waiting) until this instant.
    pub pass_until: u64,
}

impl KeyRecord {
    /// The key as a lookup at `now` sees it; `in_flight`: a fill or refresh is in flight and
    /// inside its lock timeout.
    pub fn state(&self, now: u64, in_flight: bool) -> KeyState {
        KeyState {
            in_flight,
            backing_off: now < self.retry_at,
            failed_before: self.failures > 0,
            passing: now < self.pass_until,
        }
    }

    /// A fetch failed at `at` (or outlived the lock timeout then): one more failure in a row,
    /// and the key backs off for `timing.backoff(failures)` from `at`.
    pub fn fail(&mut self, at: u64, timing: &Timing) {
        self.failures = self.failures.saturating_add(1);
        self.retry_at = self
            .retry_at
            .max(at.saturating_add(timing.backoff(self.failures)));
    }

    /// A value was stored: the back-off, the run of failures and the pass-through end.
    pub fn stored(&mut self) {
        *self = KeyRecord::default();
    }

    /// The answer was uncacheable at `now`: lookups pass through for `hold`.
    pub fn pass_for(&mut self, now: u64, hold: Duration) {
        self.pass_until = now.saturating_add(duration_to_nanos(hold));
    }

    /// A refresh ticket was dropped unused at `now`: the next is handed out `delay` later, so
    /// that a refresher that keeps dying does not hammer the origin.
    pub fn refresh_dropped(&mut self, now: u64, delay: u64) {
        self.retry_at = self.retry_at.max(now.saturating_add(delay));
    }

    /// Whether the record holds nothing a later lookup needs (its fetch in flight aside).
    /// Failures are remembered while the key's entry can still be served stale
    /// (`stale_servable`): forgotten, the next fetch would make every caller wait on an origin
    /// known to fail, and the back-off would start over.
    pub fn is_idle(&self, now: u64, stale_servable: impl FnOnce() -> bool) -> bool {
        self.retry_at <= now && self.pass_until <= now && (self.failures == 0 || !stale_servable())
    }
}

/// Lifecycle state of one key beyond its stored value, in the in-process cache: the fill or
/// refresh in flight and the [`KeyRecord`].
pub(crate) struct Control<V> {
    pub(crate) flight: Option<Arc<Flight<V>>>,
    pub(crate) record: KeyRecord,
}

impl<V> Default for Control<V> {
    fn default() -> Self {
        Control {
            flight: None,
            record: KeyRecord::default(),
        }
    }
}

impl<V> Control<V> {
    /// The key as a lookup at `now` sees it.
    pub(crate) fn state(&self, now: u64) -> KeyState {
        let in_flight = self.flight.as_ref().is_some_and(|f| now < f.deadline);
        self.record.state(now, in_flight)
    }

    /// Whether the record holds nothing a later lookup needs (see [`KeyRecord::is_idle`]).
    pub(crate) fn is_idle(&self, now: u64, stale_servable: impl FnOnce() -> bool) -> bool {
        self.flight.is_none() && self.record.is_idle(now, stale_servable)
    }
}

/// What a lookup at some instant needs to know of a key beyond its entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyState {
    /// A fill or refresh is in flight and inside its lock timeout.
    pub in_flight: bool,
    /// The key is backing off after a failure: no new fetch yet.
    pub backing_off: bool,
    /// The last fetch failed (or timed out).
    pub failed_before: bool,
    /// The key passes through after an uncacheable answer.
    pub passing: bool,
}

/// What a lookup does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Serve the entry as it stands; nothing else to do.
    Serve(Served),
    /// Serve the stale entry and hand this caller the one refresh ticket (after failures, the
    /// probe of the origin).
    ServeAndRefresh(Served),
    /// Nothing servable and nobody fetching: this caller fills.
    Fill,
    /// Nothing servable; someone else is fetching: wait for them.
    Wait,
    /// The key passes through: fetch, store nothing, wait for nobody.
    Pass,
}

/// The lifecycle's one decision (DESIGN.md, "Entry lifecycle"), for every backend: `standing`
/// is where the key's entry stands (`None`: no entry, or past both windows; `Fresh` for
/// anything stored while frozen), `key` what its record says (asked only for an entry not
/// fresh).
///
/// * A fresh entry is served. (A key passing through has no entry: an uncacheable answer
///   removes it, and storing a value ends the pass-through.)
/// * A passing key passes.
/// * Inside stale-while-revalidate the entry is served, and one caller refreshes it: not while
///   a fetch is in flight or the key backs off, never a waiter.
/// * Inside stale-if-error only, the entry is served without a fetch while the key backs off,
///   or while one caller probes an origin that failed; once the back-off is over, a caller
///   probes in the background. Before any failure, the entry is fetched again like a miss
///   (a fetch that fails hands it out).
/// * Otherwise one caller fills and the others wait.
pub fn decide(standing: Option<Served>, key: impl FnOnce() -> KeyState, asker: Asker) -> Decision {
    if standing == Some(Served::Fresh) {
        return Decision::Serve(Served::Fresh);
    }
    let key = key();
    let fetching = key.in_flight;
    match standing {
        _ if key.passing => return Decision::Pass,
        Some(Served::Stale) if fetching || key.backing_off || asker == Asker::Waiter => {
            return Decision::Serve(Served::Stale)
        }
        Some(Served::Stale) => return Decision::ServeAndRefresh(Served::Stale),
        Some(Served::StaleIfError) if key.backing_off || (fetching && key.failed_before) => {
            return Decision::Serve(Served::StaleIfError)
        }
        Some(Served::StaleIfError) if key.failed_before && asker == Asker::Caller => {
            return Decision::ServeAndRefresh(Served::StaleIfError)
        }
        _ => {}
    }
    if fetching {
        Decision::Wait
    } else {
        Decision::Fill
    }
}

/// A servable entry: a clone of its value and its lifetimes, in the cache clock's time.
#[derive(Clone, Debug)]
pub struct Hit<V> {
    pub(crate) value: V,
    pub(crate) served: Served,
    pub(crate) stored_at: Duration,
    pub(crate) fresh_until: Duration,
    pub(crate) revalidate_until: Duration,
    pub(crate) error_until: Duration,
}

impl<V> Hit<V> {
    /// The value.
    pub fn value(&self) -> &V {
        &self.value
    }

    /// The value, by move.
    pub fn into_value(self) -> V {
        self.value
    }

    /// Fresh, stale, or stale-if-error.
    pub fn served(&self) -> Served {
        self.served
    }

    /// When the value was stored.
    pub fn stored_at(&self) -> Duration {
        self.stored_at
    }

    /// When it stops (or stopped) being fresh.
    pub fn fresh_until(&self) -> Duration {
        self.fresh_until
    }

    /// When its stale-while-revalidate window ends.
    pub fn revalidate_until(&self) -> Duration {
        self.revalidate_until
    }

    /// When its stale-if-error window ends.
    pub fn error_until(&self) -> Duration {
        self.error_until
    }

    /// How long it has been stored at `now` (a time of the cache's clock).
    pub fn age(&self, now: Duration) -> Duration {
        now.saturating_sub(self.stored_at)
    }
}

/// What a [`Waiter`] resolves to.
#[must_use = "a Fill must be used or dropped"]
pub enum Resolved<V: Clone + Send + Sync + 'static> {
    /// The filler's value, or after a failed fill the stale-if-error entry.
    Hit(Hit<V>),
    /// The filler gave up: this caller fills now.
    Fill(Fill<V>),
    /// The answer is not cacheable: fetch for yourself.
    Pass,
    /// The fill failed and nothing stale is left to serve.
    Failed,
    /// The fill outlived the lock timeout (and no stale entry is left to serve), or the wait its
    /// own timeout: fetch for yourself, uncached.
    TimedOut,
}

/// Which ticket a flight was handed out as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Fill,
    Refresh,
}

/// The shared body of [`Fill`] and [`Refresh`]: one flight, completed exactly once.
pub(crate) struct Ticket<V: Clone + Send + Sync + 'static> {
    pub(crate) cache: Cache<V>,
    pub(crate) key: Box<[u8]>,
    pub(crate) hash: u64,
    pub(crate) flight: Arc<Flight<V>>,
    pub(crate) kind: Kind,
    pub(crate) done: bool,
    /// For a fill: the key's value still stored past its windows, if any.
    pub(crate) previous: Option<V>,
}

impl<V: Clone + Send + Sync + 'static> Ticket<V> {
    /// Completes the ticket with `how` (one of `Cache`'s `commit`, `fail`, `pass_through`).
    fn end<R>(mut self, how: impl FnOnce(&Cache<V>, &Ticket<V>) -> R) -> R {
        self.done = true;
        how(&self.cache, &self)
    }
}

impl<V: Clone + Send + Sync + 'static> Drop for Ticket<V> {
    fn drop(&mut self) {
        if !self.done {
            // Dropped unused, or unwinding from a panic in the filler: let a waiter take over.
            self.done = true;
            self.cache.abandon(self);
        }
    }
}

/// The right, and the duty, to fetch a missing key. Exactly one exists per key at a time.
///
/// Complete it with [`commit`](Fill::commit), [`fail`](Fill::fail) or
/// [`uncacheable`](Fill::uncacheable). Dropping it abandons the fill (a waiter, or the next
/// lookup, takes over), which also happens when the filling thread panics.
#[must_use = "a dropped Fill is abandoned: waiters must then fetch again"]
pub struct Fill<V: Clone + Send + Sync + 'static>(pub(crate) Ticket<V>);

/// The right to refresh a stale entry in the background, handed to one caller at a time.
///
/// Complete it like a [`Fill`]. Dropped unused, it lets a later caller take it after a short
/// back-off ([`crate::Builder::refresh_retry`]), so a failing refresher does not hammer the
/// origin.
#[must_use = "a dropped Refresh is abandoned"]
pub struct Refresh<V: Clone + Send + Sync + 'static>(pub(crate) Ticket<V>);

macro_rules! ticket_methods {
    ($t:ident) => {
        impl<V: Clone + Send + Sync + 'static> $t<V> {
            /// The key being fetched.
            pub fn key(&self) -> &[u8] {
                &self.0.key
            }

            /// Stores `value`, fresh for `freshness`, and hands it to every waiter. A value
            /// heavier than the object limit is not stored (the error says so) but still
            /// reaches the waiters.
            pub fn commit(self, value: V, freshness: Freshness) -> Result<(), InsertError> {
                self.commit_tagged(value, freshness, &[] as &[&[u8]])
            }

            /// Like [`commit`](Self::commit), with tags for [`Cache::purge_tag`].
            pub fn commit_tagged<T: AsRef<[u8]>>(
                self,
                value: V,
                freshness: Freshness,
                tags: &[T],
            ) -> Result<(), InsertError> {
                let tags: Vec<&[u8]> = tags.iter().map(AsRef::as_ref).collect();
                self.0.end(|c, t| c.commit(t, value, freshness, &tags))
            }

            /// Learns that the answer is not cacheable: waiters are released at once to fetch
            /// for themselves, the stored entry (if any) is removed, and lookups of the key
            /// answer [`Lookup::Pass`] for `hold` (Varnish's hit-for-miss), so requests for an
            /// uncacheable page are never serialized behind one another.
            pub fn uncacheable(self, hold: Duration) {
                self.0.end(|c, t| c.pass_through(t, hold))
            }

            /// Gives up without an answer: a waiter (or the next lookup) fetches instead.
            pub fn abandon(self) {
                drop(self)
            }
        }
    };
}

ticket_methods!(Fill);
ticket_methods!(Refresh);

impl<V: Clone + Send + Sync + 'static> Fill<V> {
    /// The value the key had, if it is still stored though past its stale windows (or inside
    /// stale-if-error only): never to be served as it is, but worth revalidating, e.g. with an
    /// HTTP conditional request from its `ETag`, instead of fetching it whole.
    pub fn previous(&self) -> Option<&V> {
        self.0.previous.as_ref()
    }

    /// The fetch failed. Returns the entry still inside its stale-if-error window, if any, and
    /// hands the same to every waiter. The key then backs off: until the back-off passes,
    /// lookups get the stale entry without a new fetch.
    pub fn fail(self) -> Option<Hit<V>> {
        self.0.end(Cache::fail)
    }
}

impl<V: Clone + Send + Sync + 'static> Refresh<V> {
    /// The refresh failed. The stale entry keeps being served; the key backs off before the next
    /// refresh is attempted.
    pub fn fail(self) {
        let _ = self.0.end(Cache::fail);
    }
}

/// A claim on another caller's fill: resolve it by blocking ([`wait`](Waiter::wait)), by
/// polling without blocking ([`try_wait`](Waiter::try_wait)), or by awaiting it (it is a
/// [`Future`] that works on any async runtime).
///
/// No waiter waits forever: a fill that outlives the cache's lock timeout releases its waiters
/// ([`Resolved::Hit`] with the stale-if-error entry if there is one, else
/// [`Resolved::TimedOut`]). Blocking and polling waiters check that deadline themselves; an
/// awaiting one is released when a later lookup or waiter notices it, so bound an `.await` with
/// your runtime's timeout if no other traffic may come.
#[must_use = "a waiter does nothing unless resolved"]
pub struct Waiter<V: Clone + Send + Sync + 'static> {
    pub(crate) cache: Cache<V>,
    pub(crate) key: Box<[u8]>,
    pub(crate) flight: Arc<Flight<V>>,
}

impl<V: Clone + Send + Sync + 'static> Waiter<V> {
    /// The key waited for.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Blocks until the fill ends, the lock timeout passes, or `timeout` passes.
    pub fn wait(mut self, timeout: Duration) -> Resolved<V> {
        let give_up = Instant::now().checked_add(timeout);
        loop {
            let lock_left =
                Duration::from_nanos(self.flight.deadline.saturating_sub(self.cache.now_nanos()));
            let lock_end = Instant::now().checked_add(lock_left);
            let until = match (give_up, lock_end) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                // Both beyond what Instant can hold: wait a long time, then look again.
                (None, None) => Instant::now() + Duration::from_secs(86_400),
            };
            let outcome = match self.flight.wait_until(until) {
                Some(outcome) => outcome,
                None if give_up.is_some_and(|g| Instant::now() >= g) => {
                    self.cache.count_wait_timeout();
                    return Resolved::TimedOut;
                }
                None => match self.check_deadline() {
                    Some(outcome) => outcome,
                    None => continue,
                },
            };
            if let Some(resolved) = self.resolve(outcome) {
                return resolved;
            }
        }
    }

    /// Resolves without blocking: `Ok` with the answer if the fill has ended (or its lock
    /// timeout passed), else `Err` with the waiter to poll again later. For event loops.
    pub fn try_wait(mut self) -> Result<Resolved<V>, Self> {
        loop {
            let outcome = match self.flight.outcome().or_else(|| self.check_deadline()) {
                Some(outcome) => outcome,
                None => return Err(self),
            };
            if let Some(resolved) = self.resolve(outcome) {
                return Ok(resolved);
            }
        }
    }

    /// Ends the flight if its lock timeout has passed, and returns how it ended: timed out, or
    /// whatever the filler managed just before.
    fn check_deadline(&self) -> Option<Outcome<V>> {
        if self.cache.now_nanos() < self.flight.deadline {
            return None;
        }
        self.cache.release_overdue(&self.key, &self.flight);
        self.flight.outcome()
    }

    /// What the flight's outcome means for this waiter; `None` when its filler gave up and
    /// another caller fills now: the waiter then waits on that flight.
    fn resolve(&mut self, outcome: Outcome<V>) -> Option<Resolved<V>> {
        Some(match outcome {
            Outcome::Value(hit) | Outcome::Failed(Some(hit)) => Resolved::Hit(hit),
            Outcome::Failed(None) => Resolved::Failed,
            Outcome::Pass => Resolved::Pass,
            Outcome::TimedOut => {
                self.cache.count_wait_timeout();
                Resolved::TimedOut
            }
            Outcome::Abandoned => match self.cache.lookup_as(&self.key, Asker::Waiter) {
                Lookup::Fresh(hit) | Lookup::Stale(hit, _) => Resolved::Hit(hit),
                Lookup::Miss(fill) => Resolved::Fill(fill),
                Lookup::Wait(w) => {
                    self.flight = w.flight.clone();
                    return None;
                }
                Lookup::Pass => Resolved::Pass,
            },
        })
    }
}

impl<V: Clone + Send + Sync + 'static> Future for Waiter<V> {
    type Output = Resolved<V>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Resolved<V>> {
        let this = self.get_mut();
        loop {
            let outcome = match this
                .flight
                .register(cx.waker())
                .or_else(|| this.check_deadline())
            {
                Some(outcome) => outcome,
                None => return Poll::Pending,
            };
            if let Some(resolved) = this.resolve(outcome) {
                return Poll::Ready(resolved);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Option<Served>; 4] = [
        Some(Served::Fresh),
        Some(Served::Stale),
        Some(Served::StaleIfError),
        None,
    ];

    fn state(in_flight: bool, backing_off: bool, failed_before: bool) -> KeyState {
        KeyState {
            in_flight,
            backing_off,
            failed_before,
            passing: false,
        }
    }

    #[test]
    fn a_fresh_entry_is_served_without_asking_the_control_record() {
        let d = decide(Some(Served::Fresh), || panic!("not asked"), Asker::Caller);
        assert_eq!(d, Decision::Serve(Served::Fresh));
    }

    #[test]
    fn a_key_passing_through_passes_whatever_else_holds() {
        let passing = KeyState {
            passing: true,
            ..state(true, true, true)
        };
        for standing in &ALL[1..] {
            assert_eq!(decide(*standing, || passing, Asker::Caller), Decision::Pass);
        }
    }

    #[test]
    fn one_caller_refreshes_a_stale_entry_the_others_and_waiters_are_served() {
        let stale = Some(Served::Stale);
        let idle = state(false, false, false);
        assert_eq!(
            decide(stale, || idle, Asker::Caller),
            Decision::ServeAndRefresh(Served::Stale)
        );
        assert_eq!(
            decide(stale, || idle, Asker::Waiter),
            Decision::Serve(Served::Stale)
        );
        for busy in [state(true, false, false), state(false, true, true)] {
            assert_eq!(
                decide(stale, || busy, Asker::Caller),
                Decision::Serve(Served::Stale)
            );
        }
    }

    #[test]
    fn stale_if_error_is_fetched_like_a_miss_until_the_origin_fails() {
        let sie = Some(Served::StaleIfError);
        assert_eq!(
            decide(sie, || state(false, false, false), Asker::Caller),
            Decision::Fill
        );
        assert_eq!(
            decide(sie, || state(true, false, false), Asker::Caller),
            Decision::Wait
        );
        // Backing off: served, no fetch.
        assert_eq!(
            decide(sie, || state(false, true, true), Asker::Caller),
            Decision::Serve(Served::StaleIfError)
        );
        // One caller probes; the others are served meanwhile.
        assert_eq!(
            decide(sie, || state(false, false, true), Asker::Caller),
            Decision::ServeAndRefresh(Served::StaleIfError)
        );
        assert_eq!(
            decide(sie, || state(true, false, true), Asker::Caller),
            Decision::Serve(Served::StaleIfError)
        );
        // A waiter is not handed the probe: it fills.
        assert_eq!(
            decide(sie, || state(false, false, true), Asker::Waiter),
            Decision::Fill
        );
    }

    #[test]
    fn nothing_servable_fills_once_and_waits_otherwise() {
        for asker in [Asker::Caller, Asker::Waiter] {
            assert_eq!(
                decide(None, || state(false, true, true), asker),
                Decision::Fill
            );
            assert_eq!(
                decide(None, || state(true, false, false), asker),
                Decision::Wait
            );
        }
    }

    fn timing(min: u64, max: u64) -> Timing {
        Timing {
            retry_min: min,
            retry_max: max,
            ..Timing::default()
        }
    }

    #[test]
    fn the_back_off_doubles_from_its_minimum_to_its_maximum_without_overflow() {
        let t = timing(2, 16);
        let b: Vec<u64> = (1..=6).map(|f| t.backoff(f)).collect();
        assert_eq!(b, [2, 4, 8, 16, 16, 16]);
        assert_eq!(timing(u64::MAX, u64::MAX).backoff(u32::MAX), u64::MAX);
        assert_eq!(t.backoff(0), 2);
    }

    #[test]
    fn the_longest_settings_saturate() {
        let mut t = Timing::default();
        t.set_lock_timeout(Duration::MAX);
        t.set_retry_backoff(Duration::from_secs(9), Duration::from_secs(3));
        assert_eq!(t.deadline(5), u64::MAX);
        assert_eq!((t.retry_min, t.retry_max), (9_000_000_000, 9_000_000_000));
    }

    #[test]
    fn a_failure_backs_off_from_when_it_happened_and_grows() {
        let mut c = KeyRecord::default();
        let t = timing(10, 1_000);
        c.fail(100, &t);
        assert_eq!((c.failures, c.retry_at), (1, 110));
        c.fail(200, &t);
        assert_eq!((c.failures, c.retry_at), (2, 220));
        assert!(c.state(219, false).backing_off && !c.state(220, false).backing_off);
        c.stored();
        assert_eq!((c.failures, c.retry_at), (0, 0));
    }

    #[test]
    fn failures_are_remembered_while_the_entry_can_be_served() {
        let mut c = Control::<u32>::default();
        c.record.fail(0, &timing(10, 10));
        assert!(!c.is_idle(5, || true), "backing off");
        assert!(
            !c.is_idle(50, || true),
            "failed, the stale entry still servable"
        );
        assert!(c.is_idle(50, || false), "nothing left to serve stale");
        c.record.refresh_dropped(50, 10);
        assert!(!c.is_idle(55, || false));
        c.record.pass_for(60, Duration::MAX);
        assert!(c.record.state(u64::MAX - 1, false).passing);
    }
}
