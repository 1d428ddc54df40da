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
    /// The fill outlived the lock timeout with no stale entry to serve: fetch for yourself,
    /// uncached. (With one, the waiters get it as `Failed(Some(_))`.)
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
    /// Set by a restore of the key while in flight: the value goes to the waiters, not the
    /// store.
    superseded: AtomicBool,
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
            superseded: AtomicBool::new(false),
        }
    }

    pub(crate) fn invalidate(&self) {
        self.invalidated.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_invalidated(&self) -> bool {
        self.invalidated.load(Ordering::SeqCst)
    }

    pub(crate) fn supersede(&self) {
        self.superseded.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_superseded(&self) -> bool {
        self.superseded.load(Ordering::SeqCst)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn flight() -> Flight<u32> {
        Flight::new(0, 10, 1)
    }

    #[test]
    fn a_flight_ends_once_with_its_first_outcome() {
        let f = flight();
        assert!(f.outcome().is_none());
        f.finish(Outcome::Pass).wake();
        f.finish(Outcome::TimedOut).wake();
        assert!(matches!(f.outcome(), Some(Outcome::Pass)));
    }

    #[test]
    fn a_registered_waker_is_woken_once_after_the_lock_is_released() {
        let f = flight();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        assert!(f.register(&waker).is_none());
        assert!(f.register(&waker).is_none(), "the same waker kept once");
        let wakeup = f.finish(Outcome::Abandoned);
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "not before wake()");
        wakeup.wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(matches!(f.register(&waker), Some(Outcome::Abandoned)));
    }

    #[test]
    fn a_blocked_wait_ends_at_its_deadline_or_with_the_outcome() {
        let f = Arc::new(flight());
        let soon = Instant::now() + Duration::from_millis(5);
        assert!(f.wait_until(soon).is_none());
        let g = f.clone();
        let ender = std::thread::spawn(move || g.finish(Outcome::Failed(None)).wake());
        let later = Instant::now() + Duration::from_secs(60);
        assert!(matches!(f.wait_until(later), Some(Outcome::Failed(None))));
        ender.join().unwrap();
    }

    #[test]
    fn a_purge_marks_the_flight_invalidated() {
        let f = flight();
        assert!(!f.is_invalidated());
        f.invalidate();
        assert!(f.is_invalidated());
    }
}
