//! The synchronisation primitives of the hand-rolled protocols (the tag purge protocol of
//! `tags.rs`), swappable for loom's so a model checker can explore every interleaving.
//!
//! Normally these are `std`'s atomics and `parking_lot`'s lock. Built with `--cfg loom` they are
//! loom's, and the loom tests of `tags.rs` run (`make test-loom` runs exactly this):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p peakcache --release --lib --target-dir target/loom loom
//! ```
//!
//! Only the loom tests may run in such a build: loom's types panic outside `loom::model`.

#[cfg(not(loom))]
pub(crate) use parking_lot::{RwLock, RwLockWriteGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, AtomicUsize};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, AtomicUsize};
#[cfg(loom)]
pub(crate) use loom::sync::RwLockWriteGuard;

/// loom's `RwLock` with `parking_lot`'s API: guards without poisoning.
#[cfg(loom)]
#[derive(Debug)]
pub(crate) struct RwLock<T>(loom::sync::RwLock<T>);

#[cfg(loom)]
impl<T> RwLock<T> {
    pub(crate) fn new(value: T) -> Self {
        RwLock(loom::sync::RwLock::new(value))
    }

    pub(crate) fn read(&self) -> loom::sync::RwLockReadGuard<'_, T> {
        self.0.read().expect("no thread panics holding the lock")
    }

    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().expect("no thread panics holding the lock")
    }
}
