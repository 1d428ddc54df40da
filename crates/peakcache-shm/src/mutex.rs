//! The process-shared, robust `pthread_mutex_t` that guards each shard (and the tag table).
//!
//! `PTHREAD_PROCESS_SHARED` lets processes that map the region lock it; `PTHREAD_MUTEX_ROBUST`
//! makes the kernel release it when its holder dies, and the next locker gets `EOWNERDEAD`:
//! it marks the mutex consistent at once and tells the caller, who checks (rebuilds) what the
//! mutex guards before using it.

use std::io;

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

    /// Initialises the mutex as process-shared and robust. Only while no other process can use
    /// it (region creation, or a re-initialisation after a reboot under the file lock).
    pub(crate) fn init(&self) -> io::Result<()> {
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
                std::ptr::write_bytes(self.ptr.cast::<u8>(), 0, MUTEX_SPACE);
                check(libc::pthread_mutex_init(self.ptr, &attr))
            })();
            libc::pthread_mutexattr_destroy(&mut attr);
            r
        }
    }

    /// Locks the mutex. `OwnerDied` when its previous holder died holding it (the mutex is made
    /// consistent before returning). An error when the mutex is unusable (`ENOTRECOVERABLE`).
    pub(crate) fn lock(&self) -> io::Result<Acquired> {
        // SAFETY: `self.ptr` points at an initialised process-shared mutex in the live mapping.
        let r = unsafe { libc::pthread_mutex_lock(self.ptr) };
        match r {
            0 => Ok(Acquired::Clean),
            libc::EOWNERDEAD => {
                // SAFETY: we hold the mutex (EOWNERDEAD means the lock was acquired).
                check(unsafe { libc::pthread_mutex_consistent(self.ptr) })?;
                Ok(Acquired::OwnerDied)
            }
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Unlocks the mutex, which this thread holds.
    pub(crate) fn unlock(&self) {
        // SAFETY: called only by the holder (the guard that locked it).
        unsafe { libc::pthread_mutex_unlock(self.ptr) };
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}
