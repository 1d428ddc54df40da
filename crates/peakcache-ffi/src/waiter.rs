//! Waiting for another caller's fill: blocking (`peakcache_waiter_wait`) or polling from an event
//! loop (`peakcache_waiter_poll`).
//!
//! Both take the waiter by address. A final answer consumes it and sets the caller's pointer to
//! NULL, so a second use is `PEAKCACHE_ERR_NULL`; `PEAKCACHE_PENDING` (poll only) leaves it in
//! place for the next poll. `peakcache_waiter_free` gives up a waiter not resolved.

use crate::abi;
use crate::bytes::{take, writable};
use crate::cache::Context;
use crate::codec::corrupt;
use crate::entry::{peakcache_entry, peakcache_served, HitInfo};
use crate::panic::{boundary_unit, try_boundary};
use crate::result::{peakcache_result, PEAKCACHE_PENDING};
use crate::ticket::{peakcache_fill, FillKind};
use crate::Value;
use peakcache::{Resolved, Waiter};
use peakcache_shm::{Resolved as ShmResolved, ShmCache};
use std::ptr::null_mut;
use std::time::Duration;

/// A claim on another caller's fill (owned by the caller). Resolve it with
/// `peakcache_waiter_wait` or `peakcache_waiter_poll`, or free it with `peakcache_waiter_free`.
/// It may be moved to another thread, and must not be used by two at once. No waiter waits
/// forever: a fill that outlives the cache's lock timeout releases it (`PEAKCACHE_WAIT_TIMED_OUT`).
pub struct peakcache_waiter {
    pub(crate) waiter: WaiterKind,
    pub(crate) cx: Context,
}

/// A waiter of either backend. The shared one keeps its key (copied once, so a poll allocates
/// nothing) and a handle on its cache, for the fill it may resolve to and to purge a value that
/// does not decode.
pub(crate) enum WaiterKind {
    Local(Waiter<Value>),
    Shared(Box<[u8]>, peakcache_shm::Waiter, ShmCache),
}

/// What a waiter resolved to.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum peakcache_wait_kind {
    /// The filler's value, or after a failed fill the stale-if-error entry (`entry`).
    PEAKCACHE_WAIT_HIT = 1,
    /// The filler gave up: this caller fills now (`fill`).
    PEAKCACHE_WAIT_FILL = 2,
    /// The answer is not cacheable: fetch for yourself.
    PEAKCACHE_WAIT_PASS = 3,
    /// The fill failed and nothing stale is left to serve: answer with an error, or fetch.
    PEAKCACHE_WAIT_FAILED = 4,
    /// The fill outlived the lock timeout, or the wait its own timeout: fetch for yourself,
    /// uncached.
    PEAKCACHE_WAIT_TIMED_OUT = 5,
}

/// The final answer of a waiter. Its handles are owned by the caller; those the kind does not
/// use are NULL.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct peakcache_wait_result {
    /// What it resolved to.
    pub kind: peakcache_wait_kind,
    /// HIT: the entry to serve (free with `peakcache_entry_free`).
    pub entry: *mut peakcache_entry,
    /// FILL: the fill ticket (complete it or `peakcache_fill_abandon` it).
    pub fill: *mut peakcache_fill,
    /// HIT: how the entry is served (`PEAKCACHE_SERVED_STALE_IF_ERROR` after a failed
    /// fill); NONE otherwise.
    pub served: peakcache_served,
    /// HIT: the stored status code (as `peakcache_entry_status`); 0 otherwise.
    pub status: u16,
    /// HIT: the body as a view (as `peakcache_entry_body`), valid until the entry is freed; NULL
    /// otherwise.
    pub body: *const u8,
    /// HIT: the body's length in bytes; 0 otherwise.
    pub body_len: usize,
    /// HIT: when the value was stored, in the cache clock's milliseconds
    /// (`peakcache_cache_now_ms`; its age is `now - stored_at_ms`). 0 otherwise.
    pub stored_at_ms: u64,
    /// HIT: when it stops (or stopped) being fresh, in the cache clock's milliseconds.
    pub fresh_until_ms: u64,
    /// HIT: when its stale-while-revalidate window ends, same clock.
    pub revalidate_until_ms: u64,
    /// HIT: when its stale-if-error window ends, same clock.
    pub error_until_ms: u64,
}

crate::abi::sized!(peakcache_wait_result, error_until_ms);

fn empty_result() -> peakcache_wait_result {
    peakcache_wait_result {
        kind: peakcache_wait_kind::PEAKCACHE_WAIT_PASS,
        entry: null_mut(),
        fill: null_mut(),
        served: HitInfo::NONE.served,
        status: 0,
        body: std::ptr::null(),
        body_len: 0,
        stored_at_ms: 0,
        fresh_until_ms: 0,
        revalidate_until_ms: 0,
        error_until_ms: 0,
    }
}

fn with_hit(w: &mut peakcache_wait_result, entry: *mut peakcache_entry, info: HitInfo) {
    w.kind = peakcache_wait_kind::PEAKCACHE_WAIT_HIT;
    w.entry = entry;
    w.served = info.served;
    w.status = info.status;
    w.body = info.body;
    w.body_len = info.body_len;
    w.stored_at_ms = info.stored_at_ms;
    w.fresh_until_ms = info.fresh_until_ms;
    w.revalidate_until_ms = info.revalidate_until_ms;
    w.error_until_ms = info.error_until_ms;
}

/// The answer of a shared waiter for `key`.
fn resolved_shared(
    r: ShmResolved,
    shm: ShmCache,
    key: &[u8],
    cx: Context,
) -> Result<peakcache_wait_result, peakcache_result> {
    use peakcache_wait_kind::*;
    let mut w = empty_result();
    match r {
        ShmResolved::Hit(hit) => {
            let (entry, info) =
                peakcache_entry::from_shm_hit(hit, key).map_err(|e| corrupt(&shm, key, e))?;
            with_hit(&mut w, entry, info);
        }
        ShmResolved::Fill(fill) => {
            w.kind = PEAKCACHE_WAIT_FILL;
            w.fill = Box::into_raw(Box::new(peakcache_fill {
                fill: FillKind::Shared(fill, shm),
                cx,
            }));
        }
        ShmResolved::Pass => w.kind = PEAKCACHE_WAIT_PASS,
        ShmResolved::Failed => w.kind = PEAKCACHE_WAIT_FAILED,
        ShmResolved::TimedOut => w.kind = PEAKCACHE_WAIT_TIMED_OUT,
    }
    Ok(w)
}

fn resolved(r: Resolved<Value>, cx: Context) -> peakcache_wait_result {
    use peakcache_wait_kind::*;
    let mut w = peakcache_wait_result {
        kind: PEAKCACHE_WAIT_PASS,
        entry: null_mut(),
        fill: null_mut(),
        served: HitInfo::NONE.served,
        status: 0,
        body: std::ptr::null(),
        body_len: 0,
        stored_at_ms: 0,
        fresh_until_ms: 0,
        revalidate_until_ms: 0,
        error_until_ms: 0,
    };
    match r {
        Resolved::Hit(hit) => {
            let (entry, info) = peakcache_entry::from_hit(hit);
            w.kind = PEAKCACHE_WAIT_HIT;
            w.entry = entry;
            w.served = info.served;
            w.status = info.status;
            w.body = info.body;
            w.body_len = info.body_len;
            w.stored_at_ms = info.stored_at_ms;
            w.fresh_until_ms = info.fresh_until_ms;
            w.revalidate_until_ms = info.revalidate_until_ms;
            w.error_until_ms = info.error_until_ms;
        }
        Resolved::Fill(fill) => {
            w.kind = PEAKCACHE_WAIT_FILL;
            w.fill = Box::into_raw(Box::new(peakcache_fill {
                fill: FillKind::Local(fill),
                cx,
            }));
        }
        Resolved::Pass => w.kind = PEAKCACHE_WAIT_PASS,
        Resolved::Failed => w.kind = PEAKCACHE_WAIT_FAILED,
        Resolved::TimedOut => w.kind = PEAKCACHE_WAIT_TIMED_OUT,
    }
    w
}

/// Blocks until the fill ends, the cache's lock timeout passes, or `timeout_ms` passes
/// (`UINT64_MAX`: no timeout of its own), and writes the answer into `*out`. Always final:
/// consumes `*waiter` (set to NULL). Do not call it on an event loop's thread.
///
/// # Safety
/// `waiter` must be NULL or point to a handle that is NULL or live; `out` NULL or writable.
///
/// Exported as `peakcache_waiter_wait_sized` with the size of `*out` last; the header's `peakcache_waiter_wait` macro passes
/// `sizeof(peakcache_wait_result)` (see the header's "Sizes" convention).
#[no_mangle]
pub unsafe extern "C" fn peakcache_waiter_wait_sized(
    waiter: *mut *mut peakcache_waiter,
    timeout_ms: u64,
    out: *mut peakcache_wait_result,
    out_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        // Checked before taking the waiter, so a NULL `out` does not cost the caller its waiter.
        let out = writable(out, "out")?;
        abi::writable_sized::<peakcache_wait_result>(out_size)?;
        // SAFETY: the caller promises a valid slot.
        let w = unsafe { take(waiter, "waiter") }?;
        let cx = w.cx;
        let timeout = Duration::from_millis(timeout_ms);
        let r = match w.waiter {
            WaiterKind::Local(waiter) => resolved(waiter.wait(timeout), cx),
            WaiterKind::Shared(key, waiter, shm) => {
                resolved_shared(waiter.wait(timeout), shm, &key, cx)?
            }
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { abi::write(out, out_size, &r) };
        Ok(())
    })
}

/// Resolves without blocking. `PEAKCACHE_OK`: the answer is in `*out` and `*waiter` was consumed
/// (set to NULL). `PEAKCACHE_PENDING`: the fill is still running; `*waiter` is unchanged and
/// still yours, `*out` untouched; poll again later (from a timer: nothing wakes you). The
/// waiter's lock timeout is checked at each poll.
///
/// # Safety
/// `waiter` must be NULL or point to a handle that is NULL or live; `out` NULL or writable.
///
/// Exported as `peakcache_waiter_poll_sized` with the size of `*out` last; the header's `peakcache_waiter_poll` macro passes
/// `sizeof(peakcache_wait_result)` (see the header's "Sizes" convention).
#[no_mangle]
pub unsafe extern "C" fn peakcache_waiter_poll_sized(
    waiter: *mut *mut peakcache_waiter,
    out: *mut peakcache_wait_result,
    out_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        let out = writable(out, "out")?;
        abi::writable_sized::<peakcache_wait_result>(out_size)?;
        // Taken out (slot NULL) while polling: should anything panic, the slot is left NULL
        // rather than pointing at a half-used waiter. A pending waiter goes back into the same
        // allocation, so the caller's pointer keeps its value and a poll allocates nothing.
        // SAFETY: the caller promises a valid slot.
        let mut w = unsafe { take(waiter, "waiter") }?;
        let cx = w.cx;
        w.waiter = match w.waiter {
            WaiterKind::Local(waiter) => match waiter.try_wait() {
                Ok(r) => {
                    // SAFETY: checked non-NULL; the caller promises it is writable.
                    unsafe { abi::write(out, out_size, &resolved(r, cx)) };
                    return Ok(());
                }
                Err(again) => WaiterKind::Local(again),
            },
            WaiterKind::Shared(key, waiter, shm) => match waiter.try_wait() {
                Ok(r) => {
                    let r = resolved_shared(r, shm, &key, cx)?;
                    // SAFETY: checked non-NULL; the caller promises it is writable.
                    unsafe { abi::write(out, out_size, &r) };
                    return Ok(());
                }
                Err(again) => WaiterKind::Shared(key, again, shm),
            },
        };
        // SAFETY: `take` checked the slot non-NULL and writable.
        unsafe { waiter.write(Box::into_raw(w)) };
        Err(PEAKCACHE_PENDING)
    })
}

/// Frees a waiter not resolved (the fill goes on without it). NULL is a no-op.
///
/// # Safety
/// `waiter` must be NULL or a live waiter, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn peakcache_waiter_free(waiter: *mut peakcache_waiter) {
    boundary_unit(|| {
        if !waiter.is_null() {
            // SAFETY: created by Box::into_raw; the caller gives it up.
            drop(unsafe { Box::from_raw(waiter) });
        }
    })
}
