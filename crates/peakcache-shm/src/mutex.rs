//! The process-shared, robust `pthread_mutex_t` that guards each shard (and the tag table).
//!
//! `PTHREAD_PROCESS_SHARED` lets processes that map the region lock it; `PTHREAD_MUTEX_ROBUST`
//! makes the kernel release it when its holder dies, and the next locker gets `EOWNERDEAD`:
//! it marks the mutex consistent at once and tells the caller, who checks (rebuilds) what the
//! mutex guards before using it.
//!
//! Locking is bounded: a holder that is alive but does not release (stopped by `SIGSTOP` or a
//! debugger, stuck on I/O) makes the locker give up after the bound (`ETIMEDOUT`), never wait
//! forever. An uncontended lock is a `trylock` (no clock read); only a contended one waits with
//! `pthread_mutex_timedlock`, whose deadline is on `CLOCK_REALTIME` (a step of the wall clock
//! while waiting lengthens or shortens that one wait).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bytes reserved for one mutex in the region layout.
pub(crate) const MUTEX_SPACE: usize = 64;

const _: () = assert!(std::mem::size_of::<libc::pthread_mutex_t>() <= MUTEX_SPACE);
const _: () = assert!(std::mem::align_of::<libc::pthread_mutex_t>() <= 8);

/// How a lock was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The previous holder unlocked it.
    Clean,
    /// The previous holder died holding it: what it guards may be half-written.
    OwnerDied,
}

/// Why a lock was not obtained.
#[derive(Debug)]
pub(crate) enum LockError {
    /// The holder did not release it within the bound.
    TimedOut,
    /// A previous holder died and the next released it without making it consistent: every
    /// lock fails until it is initialised again (see `reinit`).
    NotRecoverable,
    /// Any other error (a lock word that is not a mutex: `EINVAL`).
    Other(io::Error),
}

/// A mutex living in the shared mapping, addressed by a raw pointer into it.
#[derive(Clone, Copy)]
pub(crate) struct RawMutex {
    ptr: *mut libc::pthread_mutex_t,
}

// SAFETY: the pointer addresses a process-shared mutex inside a mapping that outlives every
// user of this handle (the `Region` holding the mapping is kept alive by whoever holds it);
// pthread mutexes are meant to be used from any thread.
unsafe impl Send for RawMutex {}
// SAFETY: as above; all access goes through the pthread functions, which synchronise.
unsafe impl Sync for RawMutex {}

impl RawMutex {
    /// A handle on the mutex at `ptr`, which must point at `MUTEX_SPACE` bytes of the mapping,
    /// aligned to 8, that stay mapped while the handle is used (checked by the caller, `Region`).
    pub(crate) fn at(ptr: *mut u8) -> Self {
        debug_assert_eq!(ptr as usize % 8, 0);
        RawMutex { ptr: ptr.cast() }
    }

    /// Initialises the mutex as process-shared and robust, from zeroed memory. Only while no
    /// other process can use it (region creation, or a re-initialisation after a reboot under
    /// the file lock).
    pub(crate) fn init(&self) -> io::Result<()> {
        // SAFETY: `self.ptr` points at MUTEX_SPACE writable bytes (see `at`), unused meanwhile.
        unsafe { std::ptr::write_bytes(self.ptr.cast::<u8>(), 0, MUTEX_SPACE) };
        self.reinit()
    }

    /// Initialises the mutex again in place, as process-shared and robust: for a mutex left
    /// `ENOTRECOVERABLE`, on which every lock fails at once (nobody sleeps on it).
    pub(crate) fn reinit(&self) -> io::Result<()> {
        // SAFETY: `attr` is initialised by pthread_mutexattr_init before use and destroyed after;
        // `self.ptr` points at writable, aligned space for a pthread_mutex_t (see `at`), which no
        // one else uses during initialisation.
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            check(libc::pthread_mutexattr_init(&mut attr))?;
            let r = (|| {
                check(libc::pthread_mutexattr_setpshared(
                    &mut attr,
                    libc::PTHREAD_PROCESS_SHARED,
                ))?;
                check(libc::pthread_mutexattr_setrobust(
                    &mut attr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))?;
                check(libc::pthread_mutex_init(self.ptr, &attr))
            })();
            libc::pthread_mutexattr_destroy(&mut attr);
            r
        }
    }

    /// Locks the mutex, waiting at most `bound`. `OwnerDied` when its previous holder died
    /// holding it (the mutex is made consistent before returning).
    pub(crate) fn lock(&self, bound: Duration) -> Result<Acquired, LockError> {
        // SAFETY: `self.ptr` points at an initialised process-shared mutex in the live mapping.
        let mut r = unsafe { libc::pthread_mutex_trylock(self.ptr) };
        if r == libc::EBUSY {
            let deadline = deadline_after(bound);
            // SAFETY: as above; `deadline` is a valid timespec.
            r = unsafe { libc::pthread_mutex_timedlock(self.ptr, &deadline) };
        }
        match r {
            0 => Ok(Acquired::Clean),
            libc::EOWNERDEAD => {
                // SAFETY: we hold the mutex (EOWNERDEAD means the lock was acquired).
                check(unsafe { libc::pthread_mutex_consistent(self.ptr) })
                    .map_err(LockError::Other)?;
                Ok(Acquired::OwnerDied)
            }
            libc::ETIMEDOUT | libc::EBUSY => Err(LockError::TimedOut),
            libc::ENOTRECOVERABLE => Err(LockError::NotRecoverable),
            e => Err(LockError::Other(io::Error::from_raw_os_error(e))),
        }
    }

    /// Test support: leaves the mutex `ENOTRECOVERABLE`, as a holder that inherited it from a
    /// dead one and released it without making it consistent would (a thread locks it and
    /// exits holding it; this thread then locks it, gets `EOWNERDEAD`, and unlocks).
    pub(crate) fn make_unrecoverable(&self) {
        let this = *self;
        let holder = std::thread::spawn(move || {
            // Ends the thread holding the mutex: the kernel marks the robust mutex's owner
            // dead.
            let _ = this.lock(Duration::from_secs(1));
        });
        let _ = holder.join();
        // SAFETY: as above; unlocking what EOWNERDEAD gave us without consistent() is exactly
        // what makes it unrecoverable.
        unsafe {
            if libc::pthread_mutex_lock(self.ptr) == libc::EOWNERDEAD {
                libc::pthread_mutex_unlock(self.ptr);
            }
        }
    }

    /// Unlocks the mutex, which this thread holds.
    pub(crate) fn unlock(&self) {
        // SAFETY: called only by the holder (the guard that locked it).
        unsafe { libc::pthread_mutex_unlock(self.ptr) };
    }
}

/// A repair claimed this long ago (seconds) by a process that still exists is taken for an
/// abandoned one (its repairer died and the pid was reused): a repair takes microseconds.
const REPAIR_STALE_SECS: u32 = 2;

/// Locks `mutex` (see `RawMutex::lock`), repairing it first if it was left unrecoverable,
/// rather than failing forever: the one process that wins `repair` (the pid of whoever is
/// repairing in its high half and when it began, in seconds of the monotonic clock, in its
/// low half; 0: nobody) calls `mark` (the caller marks what the mutex guards to be checked and
/// rebuilt by the next holder, before anyone uses it), initialises the mutex again, calls
/// `report` (no lock held) and locks it. Everyone else, meanwhile, gets `TimedOut` without
/// touching the mutex. A claim whose repairer no longer exists, or that is older than
/// `REPAIR_STALE_SECS`, is taken over.
///
/// An unrecoverable mutex fails every lock at once, so nobody sleeps on it while it is
/// initialised again; a locker that read `repair` as 0 just before the repair began and
/// locks during it could still race with it (a window of a few instructions, after an event
/// that only a holder releasing an `EOWNERDEAD` lock without making it consistent causes,
/// which this crate never does).
pub(crate) fn lock_repairing(
    mutex: RawMutex,
    repair: &AtomicU64,
    bound: Duration,
    mark: impl FnOnce(),
    report: impl FnOnce(),
) -> Result<Acquired, LockError> {
    let now = (peakcache::SystemClock::host_nanos() / 1_000_000_000) as u32;
    let claim = repair.load(Ordering::Acquire);
    let (repairer, since) = ((claim >> 32) as u32, claim as u32);
    if claim != 0 && now.wrapping_sub(since) < REPAIR_STALE_SECS && crate::process::exists(repairer)
    {
        return Err(LockError::TimedOut);
    }
    match mutex.lock(bound) {
        Err(LockError::NotRecoverable) => {
            let me = (u64::from(std::process::id()) << 32) | u64::from(now);
            if repair
                .compare_exchange(claim, me, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
            {
                return Err(LockError::TimedOut);
            }
            mark();
            let reinit = mutex.reinit();
            repair.store(0, Ordering::Release);
            reinit.map_err(LockError::Other)?;
            report();
            mutex.lock(bound)
        }
        other => other,
    }
}

/// `CLOCK_REALTIME` now plus `bound` (what `pthread_mutex_timedlock` measures against).
fn deadline_after(bound: Duration) -> libc::timespec {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    let nanos = ts.tv_nsec as u64 + u64::from(bound.subsec_nanos());
    let secs = (ts.tv_sec as u64)
        .saturating_add(bound.as_secs())
        .saturating_add(nanos / 1_000_000_000)
        .min(i64::MAX as u64 / 2);
    libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}
