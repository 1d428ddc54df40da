//! `peakcache_lookup`: what the caller should do with a key.

use crate::abi;
use crate::bytes::{arg, slice, writable};
use crate::cache::{peakcache_cache, Backend, Context, Shared};
use crate::codec::corrupt;
use crate::entry::{peakcache_entry, peakcache_served, HitInfo};
use crate::panic::try_boundary;
use crate::result::peakcache_result;
use crate::ticket::{peakcache_fill, peakcache_refresh, FillKind, RefreshKind};
use crate::waiter::{peakcache_waiter, WaiterKind};
use peakcache::Lookup;
use peakcache_shm::Lookup as ShmLookup;
use std::cell::RefCell;
use std::ptr::null_mut;

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
        let cx = c.cx;
        use peakcache_lookup_kind::*;
        let none = |kind| peakcache_lookup_result::with(kind, null_mut(), HitInfo::NONE);
        let cache = match &c.backend {
            Backend::Local(cache) => cache,
            Backend::Shared(s) => {
                let r = lookup_shared(s, key, cx)?;
                // SAFETY: checked non-NULL; the caller promises it is writable.
                unsafe { abi::write(out, out_size, &r) };
                return Ok(());
            }
        };
        let r = match cache.lookup(key) {
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
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { abi::write(out, out_size, &r) };
        Ok(())
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
