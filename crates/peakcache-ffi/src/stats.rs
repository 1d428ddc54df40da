//! Counters: as a struct, as Prometheus text (the core's) and as JSON.

use crate::abi;
use crate::bytes::{arg, writable};
use crate::cache::peakcache_cache;
use crate::panic::{boundary_unit, try_boundary};
use crate::result::peakcache_result;
use peakcache::Stats;

/// A snapshot of a cache's counters (every counter of the core's `Stats`) and size. Lookup
/// outcomes (`fresh + stale + stale_if_error + miss + wait + pass`) add up to `lookups`. Fields
/// are only ever appended.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct peakcache_stats {
    /// Every lookup, counted once: the sum of the six outcomes below.
    pub lookups: u64,
    /// Lookups answered with a fresh entry.
    pub fresh: u64,
    /// Lookups answered with a stale entry inside its stale-while-revalidate window.
    pub stale: u64,
    /// Lookups answered with a stale entry inside its stale-if-error window only.
    pub stale_if_error: u64,
    /// Lookups that found nothing servable and got the fill.
    pub miss: u64,
    /// Lookups that found another caller filling and got a waiter.
    pub wait: u64,
    /// Lookups of a key passing through (uncacheable, or its fill overdue).
    pub pass: u64,
    /// Waiters released without a result: lock timeout or their own timeout.
    pub wait_timeouts: u64,
    /// Fills that stored a value.
    pub fills_committed: u64,
    /// Fills that failed.
    pub fills_failed: u64,
    /// Fills abandoned (a waiter took over).
    pub fills_abandoned: u64,
    /// Fills that found the answer not cacheable.
    pub fills_uncacheable: u64,
    /// Refresh tickets handed out.
    pub refreshes_started: u64,
    /// Refreshes that stored a new value.
    pub refreshes_committed: u64,
    /// Refreshes that failed.
    pub refreshes_failed: u64,
    /// Refresh tickets abandoned.
    pub refreshes_abandoned: u64,
    /// Refreshes that found the answer not cacheable (the key passes through for a while).
    pub refreshes_uncacheable: u64,
    /// Values stored outside the lookup lifecycle.
    pub inserts: u64,
    /// Values refused as heavier than the object limit.
    pub rejected_too_large: u64,
    /// Live entries evicted to make room.
    pub evictions: u64,
    /// Dead entries (past every window) removed.
    pub expirations: u64,
    /// Keys purged (hard or soft).
    pub purges: u64,
    /// Tags purged (hard or soft).
    pub tag_purges: u64,
    /// Entries stored now.
    pub entries: u64,
    /// Weight of the entries stored now, in bytes (see `PEAKCACHE_ENTRY_OVERHEAD`).
    pub weight: u64,
    /// The capacity, in bytes of weight.
    pub capacity: u64,
    /// Purge records kept (one per recently purged tag; bounded: see the core's
    /// `Builder::max_tag_marks`; for the shared backend, the region's tag slots in use). Added
    /// after the first layout.
    pub tag_marks: u64,
    /// Times the oldest half of the purge records was folded into one cache-wide record.
    pub tag_folds: u64,
}

crate::abi::sized!(peakcache_stats, capacity);

impl From<Stats> for peakcache_stats {
    fn from(s: Stats) -> Self {
        let lookups = s.lookups();
        // Destructured without `..`: a counter added to the core fails this build until it is
        // carried here too.
        let Stats {
            fresh,
            stale,
            stale_if_error,
            miss,
            wait,
            pass,
            wait_timeouts,
            fills_committed,
            fills_failed,
            fills_abandoned,
            fills_uncacheable,
            refreshes_started,
            refreshes_committed,
            refreshes_failed,
            refreshes_abandoned,
            refreshes_uncacheable,
            inserts,
            rejected_too_large,
            evictions,
            expirations,
            purges,
            tag_purges,
            tag_marks,
            tag_folds,
            entries,
            weight,
            capacity,
        } = s;
        peakcache_stats {
            lookups,
            fresh,
            stale,
            stale_if_error,
            miss,
            wait,
            pass,
            wait_timeouts,
            fills_committed,
            fills_failed,
            fills_abandoned,
            fills_uncacheable,
            refreshes_started,
            refreshes_committed,
            refreshes_failed,
            refreshes_abandoned,
            refreshes_uncacheable,
            inserts,
            rejected_too_large,
            evictions,
            expirations,
            purges,
            tag_purges,
            entries,
            weight,
            capacity,
            tag_marks,
            tag_folds,
        }
    }
}

/// Writes a snapshot of the cache's counters into `*out`. (Named `peakcache_cache_stats`, not
/// `peakcache_stats`: C gives a function and a type one namespace.)
///
/// # Safety
/// `cache` must be NULL or live; `out` NULL or writable.
///
/// Exported as `peakcache_cache_stats_sized` with the size of `*out` last; the header's `peakcache_cache_stats` macro passes
/// `sizeof(peakcache_stats)` (see the header's "Sizes" convention).
#[no_mangle]
pub unsafe extern "C" fn peakcache_cache_stats_sized(
    cache: *const peakcache_cache,
    out: *mut peakcache_stats,
    out_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        let out = writable(out, "out")?;
        abi::writable_sized::<peakcache_stats>(out_size)?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { abi::write(out, out_size, &c.stats().into()) };
        Ok(())
    })
}

impl peakcache_cache {
    /// The counters of either backend (the shared one's are global across processes).
    pub(crate) fn stats(&self) -> Stats {
        match &self.backend {
            crate::cache::Backend::Local(cache) => cache.stats(),
            crate::cache::Backend::Shared(s) => s.shm.stats(),
        }
    }
}

/// Bytes the library allocated for the caller (owned by the caller): read them with
/// `peakcache_buf_data`, free them with `peakcache_buf_free`.
pub struct peakcache_buf {
    bytes: Vec<u8>,
}

impl peakcache_buf {
    /// A new buffer handle holding `bytes`, owned by the caller.
    pub(crate) fn into_raw(bytes: Vec<u8>) -> *mut peakcache_buf {
        Box::into_raw(Box::new(peakcache_buf { bytes }))
    }
}

/// The counters in the Prometheus text exposition format (0.0.4), in `*out`: every metric named
/// `peakcache_...`, for instance `peakcache_lookups_total{outcome="fresh"}` and
/// `peakcache_fills_total{result="committed"}` (the core's `Stats::to_prometheus`), the hosts'
/// totals and gauges of the history (`peakcache_visitor_requests_total`,
/// `peakcache_origin_errors_total`, `peakcache_frozen`, ...: the core's
/// `history::history_prometheus`) and, for a shared cache, the region's
/// `peakcache_region_{recoveries,takeovers,entries_dropped,lock_timeouts}_total`.
///
/// # Safety
/// `cache` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_stats_prometheus(
    cache: *const peakcache_cache,
    out: *mut *mut peakcache_buf,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        let out = writable(out, "out")?;
        let text = c.prometheus();
        let buf = Box::new(peakcache_buf {
            bytes: text.into_bytes(),
        });
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(Box::into_raw(buf)) };
        Ok(())
    })
}

/// The counters as one JSON object (`{"lookups":N,"fresh":N,...}`, the field names of
/// `peakcache_stats`), in `*out`.
///
/// # Safety
/// `cache` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_stats_json(
    cache: *const peakcache_cache,
    out: *mut *mut peakcache_buf,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        let out = writable(out, "out")?;
        let text = peakcache::history::stats_json(&c.stats());
        let buf = Box::new(peakcache_buf {
            bytes: text.into_bytes(),
        });
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(Box::into_raw(buf)) };
        Ok(())
    })
}

/// The buffer's bytes as a view, valid until `peakcache_buf_free(buf)`. Not NUL-terminated.
///
/// # Safety
/// `buf` must be NULL or live; `ptr` and `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_buf_data(
    buf: *const peakcache_buf,
    ptr: *mut *const u8,
    len: *mut usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live buffer.
        let b = unsafe { arg(buf, "buf") }?;
        let (ptr, len) = (writable(ptr, "ptr")?, writable(len, "len")?);
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            ptr.write(b.bytes.as_ptr());
            len.write(b.bytes.len());
        }
        Ok(())
    })
}

/// Frees a buffer. NULL is a no-op.
///
/// # Safety
/// `buf` must be NULL or live, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn peakcache_buf_free(buf: *mut peakcache_buf) {
    boundary_unit(|| {
        if !buf.is_null() {
            // SAFETY: created by Box::into_raw; the caller gives it up.
            drop(unsafe { Box::from_raw(buf) });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_appears_in_json() {
        let s = Stats {
            fresh: 1,
            stale: 2,
            stale_if_error: 3,
            miss: 4,
            wait: 5,
            pass: 6,
            tag_folds: 7,
            ..Default::default()
        };
        let j = peakcache::history::stats_json(&s);
        let c = peakcache_stats::from(s);
        for (name, v) in [
            ("lookups", c.lookups),
            ("pass", c.pass),
            ("tag_folds", c.tag_folds),
        ] {
            assert!(j.contains(&format!("\"{name}\":{v}")), "{name}");
        }
        assert_eq!(j.matches(':').count(), 28);
    }
}
