//! Fill and refresh tickets: the right, and the duty, to fetch a key and complete its flight.
//!
//! Each completing function (`_commit`, `_fail`, `_uncacheable`) takes the ticket by address,
//! consumes it whatever the result and sets the caller's pointer to NULL; a second use of the
//! same pointer is `PEAKCACHE_ERR_NULL`. `_abandon` frees a ticket not completed (NULL is a
//! no-op): waiters, or the next lookup, take over.

use crate::bytes::{arg, peakcache_bytes, slice, take, writable};
use crate::cache::peakcache_cache;
use crate::cache::Backend;
use crate::cache::{Context, PEAKCACHE_WINDOW_DEFAULT};
use crate::codec::{self, corrupt};
use crate::entry::peakcache_entry;
use crate::log::{self, PEAKCACHE_LOG_WARN};
use crate::panic::{boundary_unit, try_boundary};
use crate::response::peakcache_response;
use crate::result::{
    fail, peakcache_result, PEAKCACHE_ERR_INVALID, PEAKCACHE_ERR_REGION, PEAKCACHE_ERR_TOO_LARGE,
};
use crate::value::Stored;
use crate::Value;
use peakcache::{Fill, Freshness, InsertError, Refresh};
use peakcache_shm::{ShmCache, StoreError};
use std::sync::Arc;
use std::time::Duration;

/// The right and duty to fetch a missing key (owned by the caller): exactly one exists per key
/// at a time. Complete it with `peakcache_fill_commit`, `_fail` or `_uncacheable`, or give it up
/// with `peakcache_fill_abandon` (also its free function). It may be moved to another thread,
/// and must not be used by two at once.
pub struct peakcache_fill {
    pub(crate) fill: FillKind,
    pub(crate) cx: Context,
}

/// A fill of either backend. The shared one keeps a handle on its cache, to purge a value that
/// does not decode.
pub(crate) enum FillKind {
    Local(Fill<Value>),
    Shared(peakcache_shm::Fill, ShmCache),
}

/// The right to refresh a stale entry in the background (owned by the caller), handed to one
/// caller at a time. Complete it like a fill; `peakcache_refresh_abandon` gives it up (a later
/// lookup gets a new ticket after the cache's refresh retry delay) and is its free function.
pub struct peakcache_refresh {
    pub(crate) refresh: RefreshKind,
    pub(crate) cx: Context,
}

/// A refresh ticket of either backend.
pub(crate) enum RefreshKind {
    Local(Refresh<Value>),
    Shared(peakcache_shm::Refresh),
}

fn window(ms: u64, default: Duration) -> Duration {
    if ms == PEAKCACHE_WINDOW_DEFAULT {
        default
    } else {
        Duration::from_millis(ms)
    }
}

/// The checked arguments of a commit.
struct Commit<'a> {
    value: Stored,
    freshness: Freshness,
    tags: Vec<&'a [u8]>,
}

/// Checks a commit's arguments once both handles have been taken.
///
/// # Safety
/// `tags` must be NULL or point to `ntags` entries, each naming readable bytes.
unsafe fn commit_args<'a>(
    resp: peakcache_response,
    cx: &Context,
    (ttl_ms, swr_ms, sie_ms): (u64, u64, u64),
    tags: *const peakcache_bytes,
    ntags: usize,
) -> Result<Commit<'a>, peakcache_result> {
    if tags.is_null() && ntags > 0 {
        return Err(fail(
            PEAKCACHE_ERR_INVALID,
            format_args!("tags: NULL pointer with {ntags} tags"),
        ));
    }
    let list: &[peakcache_bytes] = if ntags == 0 {
        &[]
    } else {
        // SAFETY: non-NULL, and the caller promises `ntags` entries.
        unsafe { std::slice::from_raw_parts(tags, ntags) }
    };
    let tags = list
        .iter()
        // SAFETY: the caller promises each tag's bytes.
        .map(|t| unsafe { slice(t.data, t.len, "tag") })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Commit {
        value: resp.into_stored(),
        freshness: Freshness::new(Duration::from_millis(ttl_ms))
            .with_swr(window(swr_ms, cx.defaults.swr))
            .with_sie(window(sie_ms, cx.defaults.sie)),
        tags,
    })
}

fn committed(r: Result<(), InsertError>) -> Result<(), peakcache_result> {
    r.map_err(|e| not_stored(&e))
}

#[cold]
fn not_stored(e: &dyn std::fmt::Display) -> peakcache_result {
    let msg = format!("peakcache: {e}");
    log::emit(PEAKCACHE_LOG_WARN, &msg);
    fail(PEAKCACHE_ERR_TOO_LARGE, msg)
}

fn shm_committed(r: Result<(), StoreError>) -> Result<(), peakcache_result> {
    r.map_err(|e| match e {
        StoreError::LockTimeout { .. } => {
            let msg = format!("peakcache: {e}");
            log::emit(PEAKCACHE_LOG_WARN, &msg);
            fail(PEAKCACHE_ERR_REGION, msg)
        }
        e => not_stored(&e),
    })
}

/// The bytes a value becomes in the shared region (its flags go in the region's flags word).
fn encoded(value: &Stored) -> Result<Vec<u8>, peakcache_result> {
    let mut buf = Vec::new();
    codec::encode(value, &mut buf).map_err(|e| fail(PEAKCACHE_ERR_INVALID, e))?;
    Ok(buf)
}

/// What fill and refresh handles share, so each export below is a thin wrapper.
trait TicketHandle {
    fn cx(&self) -> &Context;
    fn commit(self, value: Stored, f: Freshness, tags: &[&[u8]]) -> Result<(), peakcache_result>;
    fn uncacheable(self, hold: Duration);
}

impl TicketHandle for peakcache_fill {
    fn cx(&self) -> &Context {
        &self.cx
    }
    fn commit(self, value: Stored, f: Freshness, tags: &[&[u8]]) -> Result<(), peakcache_result> {
        match self.fill {
            FillKind::Local(fill) => committed(fill.commit_tagged(Arc::new(value), f, tags)),
            FillKind::Shared(fill, _) => {
                // An argument error here drops (abandons) the fill, as documented.
                let buf = encoded(&value)?;
                shm_committed(fill.commit_full(&buf, value.flags, f, tags))
            }
        }
    }
    fn uncacheable(self, hold: Duration) {
        match self.fill {
            FillKind::Local(fill) => fill.uncacheable(hold),
            FillKind::Shared(fill, _) => fill.uncacheable(hold),
        }
    }
}

impl TicketHandle for peakcache_refresh {
    fn cx(&self) -> &Context {
        &self.cx
    }
    fn commit(self, value: Stored, f: Freshness, tags: &[&[u8]]) -> Result<(), peakcache_result> {
        match self.refresh {
            RefreshKind::Local(r) => committed(r.commit_tagged(Arc::new(value), f, tags)),
            RefreshKind::Shared(r) => {
                let buf = encoded(&value)?;
                shm_committed(r.commit_full(&buf, value.flags, f, tags))
            }
        }
    }
    fn uncacheable(self, hold: Duration) {
        match self.refresh {
            RefreshKind::Local(r) => r.uncacheable(hold),
            RefreshKind::Shared(r) => r.uncacheable(hold),
        }
    }
}

/// The body of `peakcache_fill_commit` and `peakcache_refresh_commit`.
///
/// # Safety
/// As the exports: valid slots, tags as promised.
#[allow(clippy::too_many_arguments)]
unsafe fn commit<T: TicketHandle>(
    slot: *mut *mut T,
    what: &str,
    resp: *mut *mut peakcache_response,
    windows: (u64, u64, u64),
    tags: *const peakcache_bytes,
    ntags: usize,
) -> peakcache_result {
    try_boundary(|| {
        // Take both first: they are consumed whatever happens next.
        // SAFETY: the caller promises valid slots.
        let ticket = unsafe { take(slot, what) };
        // SAFETY: as above.
        let resp = unsafe { take(resp, "resp") };
        let (ticket, resp) = (ticket?, resp?);
        // SAFETY: the caller promises the tags.
        let c = unsafe { commit_args(*resp, ticket.cx(), windows, tags, ntags) }?;
        (*ticket).commit(c.value, c.freshness, &c.tags)
    })
}

/// The body of `peakcache_fill_uncacheable` and `peakcache_refresh_uncacheable`.
///
/// # Safety
/// A valid slot.
unsafe fn uncacheable<T: TicketHandle>(
    slot: *mut *mut T,
    what: &str,
    hold_ms: u64,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a valid slot.
        let ticket = unsafe { take(slot, what) }?;
        (*ticket).uncacheable(Duration::from_millis(hold_ms));
        Ok(())
    })
}

/// The body of the `_abandon` functions.
///
/// # Safety
/// NULL or a live handle, given up.
unsafe fn abandon<T>(handle: *mut T) {
    boundary_unit(|| {
        if !handle.is_null() {
            // SAFETY: created by Box::into_raw; the caller gives it up.
            drop(unsafe { Box::from_raw(handle) });
        }
    })
}

/// Stores the response `*resp` as the fill's value, fresh for `ttl_ms`, with
/// stale-while-revalidate `swr_ms` and stale-if-error `sie_ms` windows
/// (`PEAKCACHE_WINDOW_DEFAULT`: the cache's default), tagged with `tags[0..ntags]` (NULL with 0:
/// none), and hands it to every waiter.
///
/// Consumes `*fill` and `*resp` whatever the result, setting both to NULL; if the commit cannot
/// happen (an invalid argument) the fill is abandoned. `PEAKCACHE_ERR_TOO_LARGE`: the value was
/// not stored (heavier than the object limit), but waiters still got it. Shared backend:
/// `PEAKCACHE_ERR_REGION` when the key's shard lock was held by a stopped or stuck process past
/// `shm_lock_bound_ms` (nothing stored; serve the response you have).
///
/// # Safety
/// `fill` and `resp` must be NULL or point to handles that are NULL or live; `tags` NULL or
/// `ntags` entries, each naming readable bytes.
#[no_mangle]
pub unsafe extern "C" fn peakcache_fill_commit(
    fill: *mut *mut peakcache_fill,
    resp: *mut *mut peakcache_response,
    ttl_ms: u64,
    swr_ms: u64,
    sie_ms: u64,
    tags: *const peakcache_bytes,
    ntags: usize,
) -> peakcache_result {
    // SAFETY: forwarded promises.
    unsafe { commit(fill, "fill", resp, (ttl_ms, swr_ms, sie_ms), tags, ntags) }
}

/// Stores the response `*resp` as the entry's new value, exactly as `peakcache_fill_commit`.
/// Consumes `*refresh` and `*resp` whatever the result, setting both to NULL.
///
/// # Safety
/// As `peakcache_fill_commit`.
#[no_mangle]
pub unsafe extern "C" fn peakcache_refresh_commit(
    refresh: *mut *mut peakcache_refresh,
    resp: *mut *mut peakcache_response,
    ttl_ms: u64,
    swr_ms: u64,
    sie_ms: u64,
    tags: *const peakcache_bytes,
    ntags: usize,
) -> peakcache_result {
    // SAFETY: forwarded promises.
    unsafe {
        commit(
            refresh,
            "refresh",
            resp,
            (ttl_ms, swr_ms, sie_ms),
            tags,
            ntags,
        )
    }
}

/// The answer is not cacheable: waiters are released at once to fetch for themselves, the
/// stored entry (if any) is removed, and lookups of the key answer `PEAKCACHE_LOOKUP_PASS` for
/// `hold_ms`, so requests for an uncacheable page are never serialized behind one another.
/// Consumes `*fill` (set to NULL).
///
/// # Safety
/// `fill` must be NULL or point to a handle that is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn peakcache_fill_uncacheable(
    fill: *mut *mut peakcache_fill,
    hold_ms: u64,
) -> peakcache_result {
    // SAFETY: forwarded promise.
    unsafe { uncacheable(fill, "fill", hold_ms) }
}

/// The refreshed answer is not cacheable: as `peakcache_fill_uncacheable` (the stale entry is
/// removed). Consumes `*refresh` (set to NULL).
///
/// # Safety
/// `refresh` must be NULL or point to a handle that is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn peakcache_refresh_uncacheable(
    refresh: *mut *mut peakcache_refresh,
    hold_ms: u64,
) -> peakcache_result {
    // SAFETY: forwarded promise.
    unsafe { uncacheable(refresh, "refresh", hold_ms) }
}

/// Gives up a fill without an answer, and frees it: a waiter, or the next lookup, fills
/// instead. NULL is a no-op. A fill never completed must end here.
///
/// # Safety
/// `fill` must be NULL or a live fill, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn peakcache_fill_abandon(fill: *mut peakcache_fill) {
    // SAFETY: forwarded promise.
    unsafe { abandon(fill) }
}

/// Gives up a refresh ticket without an answer, and frees it: a later lookup gets a new one
/// after the cache's refresh retry delay. NULL is a no-op.
///
/// # Safety
/// `refresh` must be NULL or a live refresh ticket, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn peakcache_refresh_abandon(refresh: *mut peakcache_refresh) {
    // SAFETY: forwarded promise.
    unsafe { abandon(refresh) }
}

/// The fetch failed. `*stale_out` (if `stale_out` is not NULL) receives the entry still inside
/// its stale-if-error window, to be served as `PEAKCACHE_SERVED_STALE_IF_ERROR`, or NULL if there
/// is none; the same goes to every waiter. The key then backs off: until the back-off passes,
/// lookups get the stale entry without a new fetch. Consumes `*fill` (set to NULL).
///
/// # Safety
/// `fill` must be NULL or point to a handle that is NULL or live; `stale_out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_fill_fail(
    fill: *mut *mut peakcache_fill,
    stale_out: *mut *mut peakcache_entry,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a valid slot.
        let ticket = unsafe { take(fill, "fill") }?;
        let e = match ticket.fill {
            FillKind::Local(fill) => fill.fail().map_or(std::ptr::null_mut(), |h| {
                peakcache_entry::into_raw(h.into_value())
            }),
            FillKind::Shared(fill, shm) => {
                let key = fill.key().to_vec();
                match fill.fail() {
                    None => std::ptr::null_mut(),
                    Some(h) => match peakcache_entry::from_shm_hit(h, &key) {
                        Ok((e, _)) => e,
                        Err(err) => return Err(corrupt(&shm, &key, err)),
                    },
                }
            }
        };
        if stale_out.is_null() {
            // SAFETY: NULL or a reference just made, not handed out.
            unsafe { crate::entry::peakcache_entry_free(e) };
        } else {
            // SAFETY: non-NULL; the caller promises it is writable.
            unsafe { stale_out.write(e) };
        }
        Ok(())
    })
}

/// The refresh failed. The stale entry (which the caller already holds) keeps being served; the
/// key backs off before the next refresh. Consumes `*refresh` (set to NULL).
///
/// # Safety
/// `refresh` must be NULL or point to a handle that is NULL or live.
#[no_mangle]
pub unsafe extern "C" fn peakcache_refresh_fail(
    refresh: *mut *mut peakcache_refresh,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a valid slot.
        match unsafe { take(refresh, "refresh") }?.refresh {
            RefreshKind::Local(r) => r.fail(),
            RefreshKind::Shared(r) => r.fail(),
        }
        Ok(())
    })
}

/// Stores `*resp` under `key[0..key_len]` outside the lookup lifecycle (replacing what was
/// there; waiters of a fill in flight keep waiting for it), with the windows and tags of
/// `peakcache_fill_commit`. Consumes `*resp` whatever the result and sets it to NULL.
/// `PEAKCACHE_ERR_TOO_LARGE`: heavier than the object limit; nothing stored, and an older value of
/// the key is removed. Thread-safe.
///
/// # Safety
/// `cache` must be NULL or live; `key` NULL or `key_len` readable bytes; `resp` NULL or pointing
/// to a handle that is NULL or live; `tags` NULL or `ntags` entries, each naming readable bytes.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn peakcache_insert(
    cache: *const peakcache_cache,
    key: *const u8,
    key_len: usize,
    resp: *mut *mut peakcache_response,
    ttl_ms: u64,
    swr_ms: u64,
    sie_ms: u64,
    tags: *const peakcache_bytes,
    ntags: usize,
) -> peakcache_result {
    try_boundary(|| {
        // Take the response first: it is consumed whatever happens next.
        // SAFETY: the caller promises a valid slot.
        let resp = unsafe { take(resp, "resp") };
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        // SAFETY: the caller promises `key_len` readable bytes.
        let key = unsafe { slice(key, key_len, "key") }?;
        let resp = resp?;
        // SAFETY: the caller promises the tags.
        let a = unsafe { commit_args(*resp, &c.cx, (ttl_ms, swr_ms, sie_ms), tags, ntags) }?;
        match &c.backend {
            Backend::Local(cache) => {
                committed(cache.insert_tagged(key, Arc::new(a.value), a.freshness, &a.tags))
            }
            Backend::Shared(s) => {
                let buf = encoded(&a.value)?;
                shm_committed(
                    s.shm
                        .insert_full(key, &buf, a.value.flags, a.freshness, &a.tags),
                )
            }
        }
    })
}

/// The entry handle of a shared fill's previous value: decoded, with the id a hit on that stored
/// value had (see `shm_value_id`).
fn previous_entry(
    p: &peakcache_shm::Previous,
    key: &[u8],
) -> Result<*mut peakcache_entry, codec::DecodeError> {
    let mut value = codec::decode(p.value().clone(), p.flags())?;
    let stored_at = u64::try_from(p.stored_at().as_nanos()).unwrap_or(u64::MAX);
    value.id = crate::entry::shm_value_id(key, stored_at, &value);
    Ok(peakcache_entry::into_raw(Arc::new(value)))
}

/// The value the fill's key still has stored past its stale windows, if any, for revalidation
/// (e.g. a conditional request from its `ETag`; `peakcache_http_revalidation_headers` builds it):
/// `*out` is a new entry reference (free it with `peakcache_entry_free`), or NULL. Never serve it
/// as it is. The fill stays usable. On both backends (shared: a copy taken out of the region when
/// the fill began; NULL, logged, if that copy does not decode).
///
/// # Safety
/// `fill` must be NULL or live; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_fill_previous(
    fill: *const peakcache_fill,
    out: *mut *mut peakcache_entry,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live fill.
        let f = unsafe { arg(fill, "fill") }?;
        let out = writable(out, "out")?;
        let entry = match &f.fill {
            FillKind::Local(fill) => fill.previous().map_or(std::ptr::null_mut(), |v| {
                peakcache_entry::into_raw(v.clone())
            }),
            FillKind::Shared(fill, _) => {
                match fill.previous().map(|p| previous_entry(p, fill.key())) {
                    None => std::ptr::null_mut(),
                    Some(Ok(e)) => e,
                    Some(Err(err)) => {
                        // Nothing to revalidate: the fill fetches unconditionally and replaces it.
                        log::emit(
                            PEAKCACHE_LOG_WARN,
                            &format!("peakcache: previous value not revalidated: {err}"),
                        );
                        std::ptr::null_mut()
                    }
                }
            }
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(entry) };
        Ok(())
    })
}
