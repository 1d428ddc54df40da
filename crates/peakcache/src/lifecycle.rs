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

use crate::cache::{Cache, Finish};
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
    /// outlived the lock timeout answers `Miss`: its waiters are released and a new fill starts.)
    Pass,
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
    /// The fill outlived the lock timeout, or the wait its own timeout: fetch for yourself,
    /// uncached.
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
    fn finish(mut self, how: Finish<'_, V>) -> (Result<(), InsertError>, Option<Hit<V>>) {
        self.done = true;
        self.cache.finish(&self, how)
    }
}

impl<V: Clone + Send + Sync + 'static> Drop for Ticket<V> {
    fn drop(&mut self) {
        if !self.done {
            // Dropped unused, or unwinding from a panic in the filler: let a waiter take over.
            self.done = true;
            let _ = self.cache.finish(self, Finish::Abandon);
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
                self.0.finish(Finish::Commit(value, freshness, &tags)).0
            }

            /// Learns that the answer is not cacheable: waiters are released at once to fetch
            /// for themselves, the stored entry (if any) is removed, and lookups of the key
            /// answer [`Lookup::Pass`] for `hold` (Varnish's hit-for-miss), so requests for an
            /// uncacheable page are never serialized behind one another.
            pub fn uncacheable(self, hold: Duration) {
                let _ = self.0.finish(Finish::Uncacheable(hold));
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
        self.0.finish(Finish::Fail).1
    }
}

impl<V: Clone + Send + Sync + 'static> Refresh<V> {
    /// The refresh failed. The stale entry keeps being served; the key backs off before the next
    /// refresh is attempted.
    pub fn fail(self) {
        let _ = self.0.finish(Finish::Fail);
    }
}

/// A claim on another caller's fill: resolve it by blocking ([`wait`](Waiter::wait)), by
/// polling without blocking ([`try_wait`](Waiter::try_wait)), or by awaiting it (it is a
/// [`Future`] that works on any async runtime).
///
/// No waiter waits forever: a fill that outlives the cache's lock timeout releases its waiters
/// ([`Resolved::TimedOut`]). Blocking and polling waiters check that deadline themselves; an
/// awaiting one is released when a later lookup or waiter notices it, so bound an `.await` with
/// your runtime's timeout if no other traffic may come.
#[must_use = "a waiter does nothing unless resolved"]
pub struct Waiter<V: Clone + Send + Sync + 'static> {
    pub(crate) cache: Cache<V>,
    pub(crate) key: Box<[u8]>,
    pub(crate) flight: Arc<Flight<V>>,
}

/// One step of resolving a waiter: an answer, or another flight to wait on.
enum Step<V: Clone + Send + Sync + 'static> {
    Done(Resolved<V>),
    Next(Arc<Flight<V>>),
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
            let step = match self.flight.wait_until(until) {
                Some(outcome) => self.step(outcome),
                None if give_up.is_some_and(|g| Instant::now() >= g) => {
                    self.cache.count_wait_timeout();
                    Step::Done(Resolved::TimedOut)
                }
                None => match self.check_deadline() {
                    Some(outcome) => self.step(outcome),
                    None => continue,
                },
            };
            match step {
                Step::Done(r) => return r,
                Step::Next(flight) => self.flight = flight,
            }
        }
    }

    /// Resolves without blocking: `Ok` with the answer if the fill has ended (or its lock
    /// timeout passed), else `Err` with the waiter to poll again later. For event loops.
    pub fn try_wait(mut self) -> Result<Resolved<V>, Self> {
        loop {
            let step = match self.flight.outcome() {
                Some(outcome) => self.step(outcome),
                None => match self.check_deadline() {
                    Some(outcome) => self.step(outcome),
                    None => return Err(self),
                },
            };
            match step {
                Step::Done(r) => return Ok(r),
                Step::Next(flight) => self.flight = flight,
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

    fn step(&self, outcome: Outcome<V>) -> Step<V> {
        Step::Done(match outcome {
            Outcome::Value(hit) | Outcome::Failed(Some(hit)) => Resolved::Hit(hit),
            Outcome::Failed(None) => Resolved::Failed,
            Outcome::Pass => Resolved::Pass,
            Outcome::TimedOut => {
                self.cache.count_wait_timeout();
                Resolved::TimedOut
            }
            Outcome::Abandoned => match self.cache.lookup_for_waiter(&self.key) {
                Lookup::Fresh(hit) | Lookup::Stale(hit, _) => Resolved::Hit(hit),
                Lookup::Miss(fill) => Resolved::Fill(fill),
                Lookup::Wait(w) => return Step::Next(w.flight.clone()),
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
            let step = match this.flight.register(cx.waker()) {
                Some(outcome) => this.step(outcome),
                None => match this.check_deadline() {
                    Some(outcome) => this.step(outcome),
                    None => return Poll::Pending,
                },
            };
            match step {
                Step::Done(r) => return Poll::Ready(r),
                Step::Next(flight) => this.flight = flight,
            }
        }
    }
}
