//! A fill or refresh in flight: the one place its waiters block, poll or await its outcome.

use crate::lifecycle::Hit;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;
use std::time::Instant;

/// How a flight ended, as its waiters see it.
pub(crate) enum Outcome<V> {
    /// The filler committed (or fetched a value too large to store): here it is.
    Value(Hit<V>),
    /// The fetch failed; the stale-if-error entry, if there is one.
    Failed(Option<Hit<V>>),
    /// The answer is not cacheable: fetch for yourself.
    Pass,
    /// The filler gave up without an answer: one waiter takes over.
    Abandoned,
    /// The fill outlived the lock timeout: fetch for yourself, uncached.
    TimedOut,
}

impl<V: Clone> Clone for Outcome<V> {
    fn clone(&self) -> Self {
        match self {
            Outcome::Value(h) => Outcome::Value(h.clone()),
            Outcome::Failed(h) => Outcome::Failed(h.clone()),
            Outcome::Pass => Outcome::Pass,
            Outcome::Abandoned => Outcome::Abandoned,
            Outcome::TimedOut => Outcome::TimedOut,
        }
    }
}

enum State<V> {
    Pending(Vec<Waker>),
    Done(Outcome<V>),
}

/// Wakers to call once every lock is released.
#[must_use = "call wake() after releasing the shard lock"]
pub(crate) struct Wakeup(Vec<Waker>);

impl Wakeup {
    pub(crate) fn wake(self) {
        self.0.into_iter().for_each(Waker::wake);
    }
}

/// One fill or refresh in flight.
pub(crate) struct Flight<V> {
    state: Mutex<State<V>>,
    done: Condvar,
    /// When it started, in clock nanoseconds.
    pub(crate) started_at: u64,
    /// When its waiters are released, in clock nanoseconds.
    pub(crate) deadline: u64,
    /// The tag sequence number at its start: tag purges after it apply to its value.
    pub(crate) seq: u64,
    /// Set by a purge of the key while in flight: the value is stored already stale.
    invalidated: AtomicBool,
}

impl<V: Clone> Flight<V> {
    pub(crate) fn new(started_at: u64, deadline: u64, seq: u64) -> Self {
        Flight {
            state: Mutex::new(State::Pending(Vec::new())),
            done: Condvar::new(),
            started_at,
            deadline,
            seq,
            invalidated: AtomicBool::new(false),
        }
    }

    pub(crate) fn invalidate(&self) {
        self.invalidated.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_invalidated(&self) -> bool {
        self.invalidated.load(Ordering::SeqCst)
    }

    /// Ends the flight with `outcome` unless it has ended already; wakes blocked waiters now and
    /// returns the async wakers to wake once the caller holds no lock.
    pub(crate) fn finish(&self, outcome: Outcome<V>) -> Wakeup {
        let mut state = self.state.lock();
        if let State::Pending(wakers) = &mut *state {
            let wakers = std::mem::take(wakers);
            *state = State::Done(outcome);
            self.done.notify_all();
            return Wakeup(wakers);
        }
        Wakeup(Vec::new())
    }

    /// The outcome, if the flight has ended.
    pub(crate) fn outcome(&self) -> Option<Outcome<V>> {
        match &*self.state.lock() {
            State::Pending(_) => None,
            State::Done(o) => Some(o.clone()),
        }
    }

    /// Blocks until the flight ends or `until` passes (then `None`).
    pub(crate) fn wait_until(&self, until: Instant) -> Option<Outcome<V>> {
        let mut state = self.state.lock();
        loop {
            if let State::Done(o) = &*state {
                return Some(o.clone());
            }
            if self.done.wait_until(&mut state, until).timed_out() {
                return match &*state {
                    State::Done(o) => Some(o.clone()),
                    State::Pending(_) => None,
                };
            }
        }
    }

    /// The outcome if the flight has ended, else registers `waker` to be woken when it does.
    pub(crate) fn register(&self, waker: &Waker) -> Option<Outcome<V>> {
        let mut state = self.state.lock();
        match &mut *state {
            State::Done(o) => Some(o.clone()),
            State::Pending(wakers) => {
                if !wakers.iter().any(|w| w.will_wake(waker)) {
                    wakers.push(waker.clone());
                }
                None
            }
        }
    }
}
