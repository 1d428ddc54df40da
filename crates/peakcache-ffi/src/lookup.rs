//! `peakcache_lookup`: what the caller should do with a key.

use crate::abi;
use crate::bytes::{arg, slice, writable};
use crate::cache::{peakcache_cache, Backend, Context, Shared};
use crate::codec::corrupt;
use crate::entry::{clock_ms, peakcache_entry, peakcache_served, HitInfo};
use crate::panic::try_boundary;
use crate::result::peakcache_result;
use crate::ticket::{peakcache_fill, peakcache_refresh, FillKind, RefreshKind};
use crate::waiter::{peakcache_waiter, WaiterKind};
use peakcache::{Lookup, Served};
use peakcache_shm::Lookup as ShmLookup;
use std::cell::RefCell;
use std::ptr::null_mut;
use std::sync::Arc;

/// What a lookup answered.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum peakcache_lookup_kind {
    /// A fresh entry (`entry`): serve it.
    PEAKCACHE_LOOKUP_FRESH = 1,
    /// A stale entry (`entry`), servable now. `refresh` is non-NULL for exactly one caller per
    /// entry, who should refresh it in the background; NULL for the others.
    PEAKCACHE_LOOKUP_STALE = 2,
    /// Nothing servable: fetch, then complete `fill`. Exactly one fill per key exists at a time.
    PEAKCACHE_LOOKUP_MISS = 3,
    /// Another caller is filling the key: resolve `waiter` (block or poll).
    PEAKCACHE_LOOKUP_WAIT = 4,
    /// The key passes through (uncacheable, or its fill outlived the lock timeout): fetch for
    /// yourself, store nothing, wait for nobody.
    PEAKCACHE_LOOKUP_PASS = 5,
}

/// The answer of `peakcache_lookup`. Every handle in it is owned by the caller; those the kind
/// does not use are NULL.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct peakcache_lookup_result {
    /// What to do.
    pub kind: peakcache_lookup_kind,
    /// FRESH, STALE: the entry to serve (free with `peakcache_entry_free`).
    pub entry: *mut peakcache_entry,
    /// STALE: the refresh ticket, or NULL if someone else refreshes (complete it or
    /// `peakcache_refresh_abandon` it).
    pub refresh: *mut peakcache_refresh,
    /// MISS: the fill ticket (complete it or `peakcache_fill_abandon` it).
    pub fill: *mut peakcache_fill,
    /// WAIT: the waiter (resolve it or `peakcache_waiter_free` it).
    pub waiter: *mut peakcache_waiter,
    /// FRESH, STALE: how the entry is served (a STALE answer may be
    /// `PEAKCACHE_SERVED_STALE_IF_ERROR` while a failing origin backs off); NONE otherwise.
    pub served: peakcache_served,
    /// FRESH, STALE: the stored status code (as `peakcache_entry_status`); 0 otherwise.
    pub status: u16,
    /// FRESH, STALE: the body as a view (as `peakcache_entry_body`), valid until the entry is freed; NULL
    /// otherwise.
    pub body: *const u8,
    /// FRESH, STALE: the body's length in bytes; 0 otherwise.
    pub body_len: usize,
    /// FRESH, STALE: when the value was stored, in the cache clock's milliseconds
    /// (`peakcache_cache_now_ms`; its age is `now - stored_at_ms`). 0 otherwise.
    pub stored_at_ms: u64,
    /// FRESH, STALE: when it stops (or stopped) being fresh, in the cache clock's milliseconds.
    pub fresh_until_ms: u64,
    /// FRESH, STALE: when its stale-while-revalidate window ends, same clock.
    pub revalidate_until_ms: u64,
    /// FRESH, STALE: when its stale-if-error window ends, same clock.
    pub error_until_ms: u64,
}

crate::abi::sized!(peakcache_lookup_result, error_until_ms);

impl peakcache_lookup_result {
    fn with(kind: peakcache_lookup_kind, entry: *mut peakcache_entry, info: HitInfo) -> Self {
        peakcache_lookup_result {
            kind,
            entry,
            refresh: null_mut(),
            fill: null_mut(),
            waiter: null_mut(),
            served: info.served,
            status: info.status,
            body: info.body,
            body_len: info.body_len,
            stored_at_ms: info.stored_at_ms,
            fresh_until_ms: info.fresh_until_ms,
            revalidate_until_ms: info.revalidate_until_ms,
            error_until_ms: info.error_until_ms,
        }
    }
}

/// Looks `key[0..key_len]` up and writes what to do into `*out` (see `peakcache_lookup_kind`).
/// Every call is counted once in the stats. Thread-safe.
///
/// # Safety
/// `cache` must be NULL or live; `key` NULL or `key_len` readable bytes; `out` NULL or writable.
///
/// Exported as `peakcache_lookup_sized` with the size of `*out` last; the header's `peakcache_lookup` macro passes
/// `sizeof(peakcache_lookup_result)` (see the header's "Sizes" convention).
#[no_mangle]
pub unsafe extern "C" fn peakcache_lookup_sized(
    cache: *const peakcache_cache,
    key: *const u8,
    key_len: usize,
    out: *mut peakcache_lookup_result,
    out_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        // SAFETY: the caller promises `key_len` readable bytes.
        let key = unsafe { slice(key, key_len, "key") }?;
        let out = writable(out, "out")?;
        abi::writable_sized::<peakcache_lookup_result>(out_size)?;
        let r = lookup(c, key)?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { abi::write(out, out_size, &r) };
        Ok(())
    })
}

/// `peakcache_lookup` for a caller that holds `known`, an entry this cache handed out for this
/// same key (by a lookup or a waiter): while the key's value is still that one and the answer
/// hands out no ticket (FRESH, or the cache frozen; STALE with `refresh` NULL: its refresh
/// runs, or a failing origin backs off), `entry` is a new reference to `known` itself (the
/// same pointer), so that what the caller prepared from it still holds, and the shared backend
/// copies nothing out of its region. Otherwise (another value, a ticket to hand out, `known`
/// NULL or of the local backend, whose hits copy nothing anyway) exactly `peakcache_lookup`'s
/// answer, also when `known` is an entry another cache, or this one for another key, handed
/// out. Counted once in the stats, as `peakcache_lookup`.
///
/// # Safety
/// `cache` must be NULL or live; `key` NULL or `key_len` readable bytes; `known` NULL or a live
/// entry; `out` NULL or writable.
///
/// Exported as `peakcache_lookup_known_sized` with the size of `*out` last; the header's
/// `peakcache_lookup_known` macro passes `sizeof(peakcache_lookup_result)` (see the header's
/// "Sizes" convention).
#[no_mangle]
pub unsafe extern "C" fn peakcache_lookup_known_sized(
    cache: *const peakcache_cache,
    key: *const u8,
    key_len: usize,
    known: *const peakcache_entry,
    out: *mut peakcache_lookup_result,
    out_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        // SAFETY: the caller promises `key_len` readable bytes.
        let key = unsafe { slice(key, key_len, "key") }?;
        let out = writable(out, "out")?;
        abi::writable_sized::<peakcache_lookup_result>(out_size)?;
        let again = match &c.backend {
            Backend::Shared(s) if !known.is_null() => {
                // SAFETY: the caller promises a live entry.
                let stored = unsafe { peakcache_entry::stored(known) }?;
                unchanged(s, key, known, stored)?
            }
            _ => None,
        };
        let r = match again {
            Some(r) => r,
            None => lookup(c, key)?,
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { abi::write(out, out_size, &r) };
        Ok(())
    })
}

/// The answer handing out `known` again when the key's stored value is still the one it was
/// read from and served without a ticket (see `peakcache_shm::ShmCache::lookup_unchanged`);
/// `None` when it is not.
fn unchanged(
    s: &Shared,
    key: &[u8],
    known: *const peakcache_entry,
    stored: &crate::value::Stored,
) -> Result<Option<peakcache_lookup_result>, peakcache_result> {
    if stored.seq == 0 {
        return Ok(None);
    }
    // The number names one record of one region (see `Hit::seq`): another key's, or another
    // cache's, is not this key's record.
    let Some(u) = s.shm.lookup_unchanged(key, stored.seq) else {
        return Ok(None);
    };
    // SAFETY: a live handle is an `Arc<Stored>` pointer; one more reference for the answer.
    unsafe { Arc::increment_strong_count(known.cast::<crate::value::Stored>()) };
    let (kind, served) = match u.served() {
        Served::Fresh => (
            peakcache_lookup_kind::PEAKCACHE_LOOKUP_FRESH,
            peakcache_served::PEAKCACHE_SERVED_FRESH,
        ),
        Served::Stale => (
            peakcache_lookup_kind::PEAKCACHE_LOOKUP_STALE,
            peakcache_served::PEAKCACHE_SERVED_STALE,
        ),
        Served::StaleIfError => (
            peakcache_lookup_kind::PEAKCACHE_LOOKUP_STALE,
            peakcache_served::PEAKCACHE_SERVED_STALE_IF_ERROR,
        ),
    };
    let info = HitInfo {
        served,
        status: stored.status,
        body: stored.body.as_ptr(),
        body_len: stored.body.len(),
        stored_at_ms: clock_ms(u.stored_at()),
        fresh_until_ms: clock_ms(u.fresh_until()),
        revalidate_until_ms: clock_ms(u.revalidate_until()),
        error_until_ms: clock_ms(u.error_until()),
    };
    Ok(Some(peakcache_lookup_result::with(
        kind,
        known.cast_mut(),
        info,
    )))
}

/// The answer of a lookup of `key` in `c`.
fn lookup(c: &peakcache_cache, key: &[u8]) -> Result<peakcache_lookup_result, peakcache_result> {
    let cx = c.cx;
    use peakcache_lookup_kind::*;
    let none = |kind| peakcache_lookup_result::with(kind, null_mut(), HitInfo::NONE);
    let cache = match &c.backend {
        Backend::Local(cache) => cache,
        Backend::Shared(s) => return lookup_shared(s, key, cx),
    };
    Ok(match cache.lookup(key) {
        Lookup::Fresh(hit) => {
            let (entry, info) = peakcache_entry::from_hit(hit);
            peakcache_lookup_result::with(PEAKCACHE_LOOKUP_FRESH, entry, info)
        }
        Lookup::Stale(hit, refresh) => {
            let (entry, info) = peakcache_entry::from_hit(hit);
            let mut r = peakcache_lookup_result::with(PEAKCACHE_LOOKUP_STALE, entry, info);
            if let Some(refresh) = refresh {
                r.refresh = Box::into_raw(Box::new(peakcache_refresh {
                    refresh: RefreshKind::Local(refresh),
                    cx,
                }));
            }
            r
        }
        Lookup::Miss(fill) => {
            let mut r = none(PEAKCACHE_LOOKUP_MISS);
            r.fill = Box::into_raw(Box::new(peakcache_fill {
                fill: FillKind::Local(fill),
                cx,
            }));
            r
        }
        Lookup::Wait(waiter) => {
            let mut r = none(PEAKCACHE_LOOKUP_WAIT);
            r.waiter = Box::into_raw(Box::new(peakcache_waiter {
                waiter: WaiterKind::Local(waiter),
                cx,
            }));
            r
        }
        Lookup::Pass => none(PEAKCACHE_LOOKUP_PASS),
    })
}

/// `peakcache_lookup` on the shared backend. Out of line, so the local hit path stays as it was.
#[inline(never)]
fn lookup_shared(
    s: &Shared,
    key: &[u8],
    cx: Context,
) -> Result<peakcache_lookup_result, peakcache_result> {
    use peakcache_lookup_kind::*;
    let none = |kind| peakcache_lookup_result::with(kind, null_mut(), HitInfo::NONE);
    Ok(match s.shm.lookup(key) {
        ShmLookup::Fresh(hit) => {
            let (entry, info) =
                peakcache_entry::from_shm_hit(hit, key).map_err(|e| corrupt(&s.shm, key, e))?;
            peakcache_lookup_result::with(PEAKCACHE_LOOKUP_FRESH, entry, info)
        }
        ShmLookup::Stale(hit, refresh) => {
            // A value that does not decode abandons the ticket (dropped here) with the key.
            let (entry, info) =
                peakcache_entry::from_shm_hit(hit, key).map_err(|e| corrupt(&s.shm, key, e))?;
            let mut r = peakcache_lookup_result::with(PEAKCACHE_LOOKUP_STALE, entry, info);
            if let Some(refresh) = refresh {
                r.refresh = Box::into_raw(Box::new(peakcache_refresh {
                    refresh: RefreshKind::Shared(refresh),
                    cx,
                }));
            }
            r
        }
        ShmLookup::Miss(fill) => {
            let mut r = none(PEAKCACHE_LOOKUP_MISS);
            r.fill = Box::into_raw(Box::new(peakcache_fill {
                fill: FillKind::Shared(fill, s.shm.clone()),
                cx,
            }));
            r
        }
        ShmLookup::Wait(waiter) => {
            let mut r = none(PEAKCACHE_LOOKUP_WAIT);
            r.waiter = Box::into_raw(Box::new(peakcache_waiter {
                waiter: WaiterKind::Shared(waiter.key().into(), waiter, s.shm.clone()),
                cx,
            }));
            r
        }
        ShmLookup::Pass => none(PEAKCACHE_LOOKUP_PASS),
    })
}

/// The entry of `key[0..key_len]` if it is stored and fresh (or the cache is frozen): `*out` is
/// a new entry reference (free it with `peakcache_entry_free`), or NULL when there is none. No
/// lifecycle: no fill, no refresh ticket, no waiting (`peakcache_lookup` is for that). Counted
/// once in the stats (fresh or miss). Thread-safe.
///
/// # Safety
/// `cache` must be NULL or live; `key` NULL or `key_len` readable bytes; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_get(
    cache: *const peakcache_cache,
    key: *const u8,
    key_len: usize,
    out: *mut *mut peakcache_entry,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        // SAFETY: the caller promises `key_len` readable bytes.
        let key = unsafe { slice(key, key_len, "key") }?;
        let out = writable(out, "out")?;
        let entry = match &c.backend {
            Backend::Local(cache) => cache.get(key).map_or(null_mut(), peakcache_entry::into_raw),
            Backend::Shared(s) => {
                let mut buf = Vec::new();
                match s.shm.get_into(key, &mut buf) {
                    None => null_mut(),
                    Some(flags) => match crate::codec::decode(buf.into(), flags) {
                        Ok(mut v) => {
                            v.id = crate::entry::shm_value_id(key, 0, &v);
                            peakcache_entry::into_raw(std::sync::Arc::new(v))
                        }
                        Err(e) => return Err(corrupt(&s.shm, key, e)),
                    },
                }
            }
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(entry) };
        Ok(())
    })
}

/// What the last `peakcache_get_body` of a thread handed out a view of: the bytes copied out of
/// the region, or a reference to the local backend's value.
struct LastBody {
    copy: Vec<u8>,
    local: Option<crate::Value>,
}

thread_local! {
    // A `const` initialiser: no lazy-initialisation check on each call.
    static LAST_BODY: RefCell<LastBody> = const {
        RefCell::new(LastBody {
            copy: Vec::new(),
            local: None,
        })
    };
}

/// The body and flags of the entry of `key[0..key_len]` if it is stored and fresh (or the cache
/// is frozen), as `peakcache_get` finds it (no lifecycle; counted once, fresh or miss), without
/// a handle: `*found` says whether there is one; if so, `*ptr` and `*len` are a view of its body
/// and `*flags` its flags word. The view lives in a buffer of the calling thread: valid until
/// that thread's next `peakcache_get_body` (on any cache), so a host copies or consumes it
/// before anything that may call again (an unserializer's callbacks). For an empty body `*len`
/// is 0 and `*ptr` a non-NULL pointer not to be read. The shared backend copies the value out
/// of the region once into that buffer, reused from call to call (no allocation once it is
/// large enough); the local one keeps a reference to the value until the next call.
///
/// # Safety
/// `cache` must be NULL or live; `key` NULL or `key_len` readable bytes; `found`, `ptr`, `len`
/// and `flags` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_get_body(
    cache: *const peakcache_cache,
    key: *const u8,
    key_len: usize,
    found: *mut bool,
    ptr: *mut *const u8,
    len: *mut usize,
    flags: *mut u32,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        // SAFETY: the caller promises `key_len` readable bytes.
        let key = unsafe { slice(key, key_len, "key") }?;
        let found = writable(found, "found")?;
        let (ptr, len, flags) = (
            writable(ptr, "ptr")?,
            writable(len, "len")?,
            writable(flags, "flags")?,
        );
        LAST_BODY.with_borrow_mut(|last| {
            last.local = None;
            let view = match &c.backend {
                Backend::Local(cache) => cache.get(key).map(|v| {
                    let view = (v.body.as_ptr(), v.body.len(), v.flags);
                    last.local = Some(v);
                    view
                }),
                Backend::Shared(s) => match s.shm.get_into(key, &mut last.copy) {
                    None => None,
                    Some(f) => match crate::codec::body_start(&last.copy) {
                        Ok(at) => Some((last.copy[at..].as_ptr(), last.copy.len() - at, f)),
                        Err(e) => return Err(corrupt(&s.shm, key, e)),
                    },
                },
            };
            // SAFETY: all checked non-NULL; the caller promises they are writable.
            unsafe {
                found.write(view.is_some());
                if let Some((p, n, f)) = view {
                    ptr.write(p);
                    len.write(n);
                    flags.write(f);
                }
            }
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{
        peakcache_cache_free, peakcache_cache_new_sized, peakcache_config, PEAKCACHE_BACKEND_LOCAL,
        PEAKCACHE_BACKEND_SHARED,
    };
    use crate::entry::peakcache_entry_free;
    use crate::response::{peakcache_response_append_body, peakcache_response_new};
    use crate::result::PEAKCACHE_OK;
    use crate::stats::{peakcache_cache_stats_sized, peakcache_stats};
    use crate::ticket::peakcache_insert;
    use std::mem::{size_of, MaybeUninit};
    use std::ptr::null;

    fn cache(backend: u32) -> *mut peakcache_cache {
        let cfg = peakcache_config {
            backend,
            capacity_bytes: 1 << 20,
            ..Default::default()
        };
        let mut c = null_mut();
        // SAFETY: a valid config and out pointer.
        let rc = unsafe { peakcache_cache_new_sized(&cfg, &mut c, size_of::<peakcache_config>()) };
        assert_eq!(rc, PEAKCACHE_OK);
        c
    }

    fn insert(c: *mut peakcache_cache, key: &[u8], body: &[u8]) {
        insert_for(c, key, body, 60_000, 0);
    }

    fn insert_for(c: *mut peakcache_cache, key: &[u8], body: &[u8], ttl_ms: u64, swr_ms: u64) {
        let mut resp = null_mut();
        // SAFETY: valid pointers; the response is consumed by the insert.
        unsafe {
            assert_eq!(peakcache_response_new(200, &mut resp), PEAKCACHE_OK);
            assert_eq!(
                peakcache_response_append_body(resp, body.as_ptr(), body.len()),
                PEAKCACHE_OK
            );
            let rc = peakcache_insert(
                c,
                key.as_ptr(),
                key.len(),
                &mut resp,
                ttl_ms,
                swr_ms,
                0,
                null(),
                0,
            );
            assert_eq!(rc, PEAKCACHE_OK);
        }
    }

    fn known(
        c: *mut peakcache_cache,
        key: &[u8],
        known: *const peakcache_entry,
    ) -> (peakcache_result, peakcache_lookup_result) {
        let mut r = MaybeUninit::<peakcache_lookup_result>::zeroed();
        // SAFETY: valid pointers and size.
        let rc = unsafe {
            peakcache_lookup_known_sized(
                c,
                key.as_ptr(),
                key.len(),
                known,
                r.as_mut_ptr(),
                size_of::<peakcache_lookup_result>(),
            )
        };
        // SAFETY: zeroed is a valid result (kind 0 is never read unless written).
        (rc, unsafe { r.assume_init() })
    }

    fn body(r: &peakcache_lookup_result) -> &[u8] {
        // SAFETY: the entry of a FRESH answer is live; its body view with it.
        unsafe { std::slice::from_raw_parts(r.body, r.body_len) }
    }

    fn fresh_lookups(c: *mut peakcache_cache) -> u64 {
        let mut s = MaybeUninit::<peakcache_stats>::zeroed();
        // SAFETY: valid pointers and size.
        let rc =
            unsafe { peakcache_cache_stats_sized(c, s.as_mut_ptr(), size_of::<peakcache_stats>()) };
        assert_eq!(rc, PEAKCACHE_OK);
        // SAFETY: written above.
        unsafe { s.assume_init() }.fresh
    }

    #[test]
    fn a_known_shared_entry_is_handed_out_again_while_its_value_is_stored_and_fresh() {
        let c = cache(PEAKCACHE_BACKEND_SHARED);
        insert(c, b"k", b"one");
        let (rc, first) = known(c, b"k", null());
        assert_eq!(rc, PEAKCACHE_OK);
        assert_eq!(first.kind, peakcache_lookup_kind::PEAKCACHE_LOOKUP_FRESH);
        let before = fresh_lookups(c);
        let (rc, again) = known(c, b"k", first.entry);
        assert_eq!(rc, PEAKCACHE_OK);
        assert_eq!(again.kind, peakcache_lookup_kind::PEAKCACHE_LOOKUP_FRESH);
        assert_eq!(again.entry, first.entry, "the same value, not a copy");
        assert_eq!(body(&again), b"one");
        assert_eq!(again.served, peakcache_served::PEAKCACHE_SERVED_FRESH);
        assert_eq!(
            (again.stored_at_ms, again.fresh_until_ms),
            (first.stored_at_ms, first.fresh_until_ms)
        );
        assert_eq!(fresh_lookups(c), before + 1, "counted once");
        // SAFETY: two references, each freed once.
        unsafe { peakcache_entry_free(again.entry) };

        insert(c, b"k", b"two");
        let (rc, replaced) = known(c, b"k", first.entry);
        assert_eq!(rc, PEAKCACHE_OK);
        assert_eq!(replaced.kind, peakcache_lookup_kind::PEAKCACHE_LOOKUP_FRESH);
        assert_ne!(replaced.entry, first.entry);
        assert_eq!(body(&replaced), b"two");
        assert_eq!(body(&first), b"one", "the old reference is still valid");
        // SAFETY: each reference freed once.
        unsafe {
            peakcache_entry_free(replaced.entry);
            peakcache_entry_free(first.entry);
            peakcache_cache_free(c);
        }
    }

    #[test]
    fn a_known_stale_entry_is_handed_out_again_while_another_caller_refreshes_it() {
        let c = cache(PEAKCACHE_BACKEND_SHARED);
        insert_for(c, b"k", b"old", 0, 60_000);
        let (rc, first) = known(c, b"k", null());
        assert_eq!(rc, PEAKCACHE_OK);
        assert_eq!(first.kind, peakcache_lookup_kind::PEAKCACHE_LOOKUP_STALE);
        assert!(!first.refresh.is_null(), "the first stale lookup refreshes");
        let (rc, again) = known(c, b"k", first.entry);
        assert_eq!(rc, PEAKCACHE_OK);
        assert_eq!(again.kind, peakcache_lookup_kind::PEAKCACHE_LOOKUP_STALE);
        assert_eq!(again.served, peakcache_served::PEAKCACHE_SERVED_STALE);
        assert!(again.refresh.is_null());
        assert_eq!(again.entry, first.entry);
        // SAFETY: each handle released once.
        unsafe {
            crate::ticket::peakcache_refresh_abandon(first.refresh);
            peakcache_entry_free(again.entry);
            peakcache_entry_free(first.entry);
            peakcache_cache_free(c);
        }
    }

    #[test]
    fn an_entry_of_another_key_or_cache_is_never_handed_out_for_this_one() {
        let c = cache(PEAKCACHE_BACKEND_SHARED);
        insert(c, b"a", b"one");
        insert(c, b"b", b"one");
        let (_, a) = known(c, b"a", null());
        let (rc, b) = known(c, b"b", a.entry);
        assert_eq!(rc, PEAKCACHE_OK, "another record: b is looked up");
        assert_ne!(b.entry, a.entry);
        // Another region numbers its records alike: its value is never taken for `a`'s.
        let other = cache(PEAKCACHE_BACKEND_SHARED);
        insert(other, b"a", b"two");
        let (rc, o) = known(other, b"a", a.entry);
        assert_eq!(rc, PEAKCACHE_OK);
        assert_eq!(body(&o), b"two");

        let local = cache(PEAKCACHE_BACKEND_LOCAL);
        insert(local, b"a", b"one");
        let (rc, r) = known(local, b"a", a.entry);
        assert_eq!(rc, PEAKCACHE_OK);
        assert_eq!(r.kind, peakcache_lookup_kind::PEAKCACHE_LOOKUP_FRESH);
        assert_ne!(r.entry, a.entry, "the local backend's own entry");
        // SAFETY: each reference freed once.
        unsafe {
            peakcache_entry_free(r.entry);
            peakcache_entry_free(a.entry);
            peakcache_entry_free(b.entry);
            peakcache_entry_free(o.entry);
            peakcache_cache_free(local);
            peakcache_cache_free(other);
            peakcache_cache_free(c);
        }
    }
}
