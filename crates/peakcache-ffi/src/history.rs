//! The per-second history, the status JSON every host serves, and the live status page.

use crate::abi;
use crate::bytes::{arg, writable};
use crate::cache::{peakcache_cache, Backend};
use crate::panic::try_boundary;
use crate::result::peakcache_result;
use crate::stats::peakcache_buf;
use peakcache::history::{self, sample_values, unix_second, History, HostCounts};
use std::fmt::Write;

/// What a host counts itself and adds to the history with `peakcache_cache_tick`: the library
/// cannot tell a visitor from a lookup, nor which answers the host turned into errors. Fields
/// are only ever appended.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct peakcache_host_counts {
    /// Requests from visitors answered since the last tick.
    pub visitor_requests: u64,
    /// Answers with a 5xx status sent to visitors since the last tick.
    pub visitor_errors: u64,
    /// Requests sent to the origin since the last tick (fills, refreshes, probes, passes).
    pub origin_requests: u64,
    /// Origin requests that failed since the last tick (no answer, a timeout or a 5xx).
    pub origin_errors: u64,
}

crate::abi::sized!(peakcache_host_counts, origin_errors);

impl From<peakcache_host_counts> for HostCounts {
    fn from(c: peakcache_host_counts) -> Self {
        HostCounts {
            visitor_requests: c.visitor_requests,
            visitor_errors: c.visitor_errors,
            origin_requests: c.origin_requests,
            origin_errors: c.origin_errors,
        }
    }
}

impl peakcache_cache {
    /// The history ring: in the region for the shared backend, in the handle for the local one.
    pub(crate) fn history(&self) -> History<'_> {
        match (&self.backend, &self.history) {
            (Backend::Shared(s), _) => s.shm.history(),
            (Backend::Local(_), Some(h)) => h.ring(),
            (Backend::Local(_), None) => unreachable!("a local cache is made with its history"),
        }
    }

    /// The Prometheus text of `peakcache_stats_prometheus`.
    pub(crate) fn prometheus(&self) -> String {
        let stats = self.stats();
        let mut text = stats.to_prometheus("peakcache");
        text.push_str(&history::history_prometheus(
            &stats,
            self.frozen(),
            self.history(),
        ));
        if let Backend::Shared(s) = &self.backend {
            let r = s.shm.region_info();
            for (name, help, v) in [
                ("recoveries", "Shards checked and rebuilt after a process died holding their lock.", r.recoveries),
                ("takeovers", "Fills taken over from a process found dead.", r.takeovers),
                ("entries_dropped", "Entries dropped by recovery checks.", r.entries_dropped),
                ("lock_timeouts", "Callers that gave up on a region lock held too long (a stopped or stuck process).", r.lock_timeouts),
            ] {
                let _ = write!(
                    text,
                    "# HELP peakcache_region_{name}_total {help}\n# TYPE peakcache_region_{name}_total counter\npeakcache_region_{name}_total {v}\n"
                );
            }
        }
        text
    }

    fn frozen(&self) -> bool {
        match &self.backend {
            Backend::Local(cache) => cache.is_frozen(),
            Backend::Shared(s) => s.shm.is_frozen(),
        }
    }
}

/// Adds the host's counts since its last call (`counts`, or nothing for NULL) to the cache's
/// totals and, unless some process sampled this second already, samples the counters into the
/// history (1,024 seconds). Call it once a second from each process (nginx: a timer in every
/// worker; PHP: each request; a thread elsewhere); the hit path is not involved. `*sampled`
/// (if not NULL) tells whether this call wrote the second's sample. Shared backend: the
/// history and the totals are the region's, shared by every process attached.
///
/// Exported as `peakcache_cache_tick_sized` with the size of `*counts` last; the header's
/// `peakcache_cache_tick` macro passes `sizeof(peakcache_host_counts)` (see "Sizes").
///
/// # Safety
/// `cache` must be NULL or live; `counts` NULL or `counts_size` readable bytes; `sampled` NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_cache_tick_sized(
    cache: *const peakcache_cache,
    counts: *const peakcache_host_counts,
    sampled: *mut bool,
    counts_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        // SAFETY: the caller promises NULL or `counts_size` readable bytes.
        let counts: HostCounts = unsafe { abi::read(counts, counts_size) }?
            .unwrap_or_default()
            .into();
        let ring = c.history();
        ring.add_host(&counts);
        let wrote = ring.record(unix_second(), || {
            sample_values(&c.stats(), c.frozen(), &ring.host_totals())
        });
        if !sampled.is_null() {
            // SAFETY: non-NULL; the caller promises it is writable.
            unsafe { sampled.write(wrote) };
        }
        Ok(())
    })
}

/// The status document, in `*out`: the counters of `peakcache_stats_json`, then `"frozen"`,
/// `"host"` (the hosts' totals), `"now"` (Unix seconds) and `"history"`, the last
/// `history_seconds` (at most 1,023; 0: none) as arrays oldest first: `"t"`, `"dt"`, then per
/// second the increase of each counter and the value of each gauge (see the README's "Status
/// JSON"). One shape for every host.
///
/// # Safety
/// `cache` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_status_json(
    cache: *const peakcache_cache,
    history_seconds: u64,
    out: *mut *mut peakcache_buf,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        let out = writable(out, "out")?;
        let text = history::status_json(&c.stats(), c.frozen(), c.history(), history_seconds);
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(peakcache_buf::into_raw(text.into_bytes())) };
        Ok(())
    })
}

/// The live status page (one self-contained HTML document, UTF-8) as a static view: `*ptr`
/// and `*len` stay valid for the life of the process. Serve it as `text/html; charset=utf-8`
/// at a URL whose `?history=N` answers `peakcache_status_json`: the page polls its own URL
/// with `?format=json&history=…` every second.
///
/// # Safety
/// `ptr` and `len` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_status_page(
    ptr: *mut *const u8,
    len: *mut usize,
) -> peakcache_result {
    try_boundary(|| {
        let (ptr, len) = (writable(ptr, "ptr")?, writable(len, "len")?);
        // SAFETY: both checked non-NULL; the caller promises they are writable.
        unsafe {
            ptr.write(history::STATUS_PAGE.as_ptr());
            len.write(history::STATUS_PAGE.len());
        }
        Ok(())
    })
}

/// Whether a periodic task (a snapshot every `interval_ms`) is due, in `*due`: true for one
/// caller per interval across every process attached to a shared cache (a compare-and-swap in
/// the region, no lock), for the first to ask once the interval has passed since the last
/// claim. Counted in whole seconds; 0 is never due.
///
/// # Safety
/// `cache` must be NULL or live; `due` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_cache_claim_every(
    cache: *const peakcache_cache,
    interval_ms: u64,
    due: *mut bool,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        let due = writable(due, "due")?;
        let every = interval_ms.div_ceil(1000);
        let claimed = c.history().claim_every(unix_second(), every);
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { due.write(claimed) };
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::peakcache_cache_new_sized;
    use crate::stats::{peakcache_buf_data, peakcache_buf_free};

    fn text(buf: *mut peakcache_buf) -> String {
        let (mut p, mut n) = (std::ptr::null(), 0);
        // SAFETY: a live buffer and writable outputs; the view is copied before the free.
        unsafe {
            assert_eq!(
                peakcache_buf_data(buf, &mut p, &mut n),
                crate::result::PEAKCACHE_OK
            );
            let s = String::from_utf8(std::slice::from_raw_parts(p, n).to_vec()).unwrap();
            peakcache_buf_free(buf);
            s
        }
    }

    #[test]
    fn a_tick_samples_and_the_json_carries_host_totals() {
        let mut cache = std::ptr::null_mut();
        // SAFETY: default settings; every pointer is valid for its call.
        unsafe {
            assert_eq!(
                peakcache_cache_new_sized(std::ptr::null(), &mut cache, 0),
                crate::result::PEAKCACHE_OK
            );
            let counts = peakcache_host_counts {
                visitor_requests: 9,
                visitor_errors: 2,
                ..Default::default()
            };
            let mut sampled = false;
            let size = size_of::<peakcache_host_counts>();
            assert_eq!(
                peakcache_cache_tick_sized(cache, &counts, &mut sampled, size),
                crate::result::PEAKCACHE_OK
            );
            assert!(sampled || (*cache).history().last_second() >= unix_second() - 1);
            let mut buf = std::ptr::null_mut();
            assert_eq!(
                peakcache_status_json(cache, 60, &mut buf),
                crate::result::PEAKCACHE_OK
            );
            let j = text(buf);
            assert!(
                j.contains("\"host\":{\"visitor_requests\":9,\"visitor_errors\":2"),
                "{j}"
            );
            assert!(j.contains("\"history\":{\"seconds\":60,"), "{j}");
            let mut due = false;
            assert_eq!(
                peakcache_cache_claim_every(cache, 1500, &mut due),
                crate::result::PEAKCACHE_OK
            );
            assert!(due);
            assert_eq!(
                peakcache_cache_claim_every(cache, 1500, &mut due),
                crate::result::PEAKCACHE_OK
            );
            assert!(!due);
            crate::cache::peakcache_cache_free(cache);
        }
    }

    #[test]
    fn the_page_is_the_library_s() {
        let (mut p, mut n) = (std::ptr::null(), 0);
        // SAFETY: writable outputs.
        unsafe {
            assert_eq!(
                peakcache_status_page(&mut p, &mut n),
                crate::result::PEAKCACHE_OK
            );
            assert_eq!(
                std::slice::from_raw_parts(p, n),
                history::STATUS_PAGE.as_bytes()
            );
        }
    }
}
