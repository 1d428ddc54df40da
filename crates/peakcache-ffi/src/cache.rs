//! The cache handle: configuration, creation, purge, freeze, clear.

use crate::bytes::{arg, slice, writable};
use crate::log::{self, PEAKCACHE_LOG_INFO};
use crate::panic::{boundary_or, boundary_unit, try_boundary};
use crate::result::{fail, peakcache_result, PEAKCACHE_ERR_INVALID};
use crate::Value;
use peakcache::{Cache, PurgeMode, SystemClock};
use std::time::Duration;

/// What each entry costs against the capacity beyond its key, status, flags, headers and body
/// (the cache's node and the value's allocation). An entry's weight is
/// `key_len + 2 + 4 + sum(name_len + value_len + PEAKCACHE_HEADER_OVERHEAD) + body_len + meta_len
/// + PEAKCACHE_ENTRY_OVERHEAD`.
pub const PEAKCACHE_ENTRY_OVERHEAD: u64 = 192;

/// A `swr_ms` or `sie_ms` argument of a commit meaning "the cache's default"
/// (`peakcache_config.default_swr_ms` / `default_sie_ms`).
pub const PEAKCACHE_WINDOW_DEFAULT: u64 = u64::MAX;

/// A cache's settings, a plain struct: fill it with `peakcache_config_default`, change what you
/// need, pass it to `peakcache_cache_new` (which copies it). Fields are only ever appended.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct peakcache_config {
    /// The capacity in bytes of entry weight (see `PEAKCACHE_ENTRY_OVERHEAD`). Default 64 MiB.
    /// Must not be 0.
    pub capacity_bytes: u64,
    /// The heaviest entry stored; a heavier commit is answered `PEAKCACHE_ERR_TOO_LARGE`.
    /// 0 (default): an eighth of a shard's share of the capacity. Never more than a shard's share.
    pub max_object_bytes: u64,
    /// How long a fill may take before its waiters are released to fetch for themselves
    /// (nginx's `proxy_cache_lock_timeout`). Default 5000.
    pub lock_timeout_ms: u64,
    /// The stale-while-revalidate window a commit gets when it passes
    /// `PEAKCACHE_WINDOW_DEFAULT`. Default 0.
    pub default_swr_ms: u64,
    /// The stale-if-error window a commit gets when it passes `PEAKCACHE_WINDOW_DEFAULT`.
    /// Default 0.
    pub default_sie_ms: u64,
    /// The back-off after the first failed fill or refresh of a key; it doubles while failures
    /// repeat. Default 1000.
    pub retry_backoff_min_ms: u64,
    /// The longest back-off. Default 60000. Raised to `retry_backoff_min_ms` if below it.
    pub retry_backoff_max_ms: u64,
    /// How long a refresh ticket abandoned unused blocks the next one. Default 1000.
    pub refresh_retry_ms: u64,
    /// The number of shards, rounded up to a power of two, at most 65536. 0 (default): four per
    /// core, fewer for a small capacity.
    pub shards: u32,
}

impl Default for peakcache_config {
    fn default() -> Self {
        peakcache_config {
            capacity_bytes: 64 << 20,
            max_object_bytes: 0,
            lock_timeout_ms: 5000,
            default_swr_ms: 0,
            default_sie_ms: 0,
            retry_backoff_min_ms: 1000,
            retry_backoff_max_ms: 60_000,
            refresh_retry_ms: 1000,
            shards: 0,
        }
    }
}

/// The windows a commit gets when it asks for the defaults.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Defaults {
    pub(crate) swr: Duration,
    pub(crate) sie: Duration,
}

/// What every handle carries from its cache: the clock (to tell an entry's age) and the
/// default windows. Small and `Copy`, so handles need no reference count of their own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Context {
    pub(crate) clock: SystemClock,
    pub(crate) defaults: Defaults,
}

impl Context {
    /// The cache clock's time.
    #[inline]
    pub(crate) fn now(&self) -> Duration {
        peakcache::Clock::now(&self.clock)
    }
}

/// A cache (shared). Thread-safe: one handle may be used by any number of threads at once.
/// Created by `peakcache_cache_new`, freed by `peakcache_cache_free`. Entries, tickets and
/// waiters stay valid after the cache handle is freed: they keep what they need alive.
pub struct peakcache_cache {
    pub(crate) cache: Cache<Value>,
    pub(crate) cx: Context,
}

/// Writes the default settings into `*cfg`.
///
/// # Safety
/// `cfg` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_config_default(cfg: *mut peakcache_config) -> peakcache_result {
    try_boundary(|| {
        let cfg = writable(cfg, "cfg")?;
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { cfg.write(peakcache_config::default()) };
        Ok(())
    })
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Creates a cache with the settings in `*cfg` (NULL: every default) in `*out`.
/// `PEAKCACHE_ERR_INVALID` for a capacity of 0 or more than 65536 shards.
///
/// # Safety
/// `cfg` must be NULL or point to a `peakcache_config`; `out` must be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_cache_new(
    cfg: *const peakcache_config,
    out: *mut *mut peakcache_cache,
) -> peakcache_result {
    try_boundary(|| {
        let out = writable(out, "out")?;
        // SAFETY: the caller promises NULL or a live config.
        let cfg = unsafe { cfg.as_ref() }.copied().unwrap_or_default();
        if cfg.capacity_bytes == 0 {
            return Err(fail(PEAKCACHE_ERR_INVALID, "cfg.capacity_bytes is 0"));
        }
        if cfg.shards > 1 << 16 {
            return Err(fail(
                PEAKCACHE_ERR_INVALID,
                format_args!("cfg.shards is {}, at most 65536", cfg.shards),
            ));
        }
        let clock = SystemClock::new();
        let mut b = Cache::<Value>::builder()
            .max_bytes(cfg.capacity_bytes)
            .clock(clock)
            .lock_timeout(ms(cfg.lock_timeout_ms))
            .retry_backoff(ms(cfg.retry_backoff_min_ms), ms(cfg.retry_backoff_max_ms))
            .refresh_retry(ms(cfg.refresh_retry_ms))
            .weigher(|key, v: &Value| key.len() as u64 + v.weight() + peakcache::ENTRY_OVERHEAD);
        if cfg.shards > 0 {
            b = b.shards(cfg.shards as usize);
        }
        if cfg.max_object_bytes > 0 {
            b = b.max_object_weight(cfg.max_object_bytes);
        }
        let cache = b.build();
        if log::enabled() {
            log::emit(
                PEAKCACHE_LOG_INFO,
                &format!(
                    "peakcache: cache created, capacity {} bytes, max object {} bytes",
                    cache.stats().capacity,
                    cache.max_object_weight()
                ),
            );
        }
        let handle = Box::new(peakcache_cache {
            cache,
            cx: Context {
                clock,
                defaults: Defaults {
                    swr: ms(cfg.default_swr_ms),
                    sie: ms(cfg.default_sie_ms),
                },
            },
        });
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Frees a cache handle. NULL is a no-op. Entries, tickets and waiters still held stay valid;
/// the memory is released when the last of them is freed. Must not race with other calls on the
/// same handle.
///
/// # Safety
/// `cache` must be NULL or a live cache handle, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn peakcache_cache_free(cache: *mut peakcache_cache) {
    boundary_unit(|| {
        if !cache.is_null() {
            // SAFETY: created by Box::into_raw in peakcache_cache_new; the caller gives it up.
            drop(unsafe { Box::from_raw(cache) });
        }
    })
}

/// Purges `key`. Hard (`soft == false`): removed at once. Soft: made stale now, so it is still
/// served inside its stale windows (counted from now) while one caller refreshes it. A fill of
/// the key in flight stores its value already stale. `*found` (if `found` is not NULL) tells
/// whether an entry or a fill of the key existed.
///
/// # Safety
/// `cache` must be NULL or live; `key` NULL or `key_len` readable bytes; `found` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_purge(
    cache: *const peakcache_cache,
    key: *const u8,
    key_len: usize,
    soft: bool,
    found: *mut bool,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        // SAFETY: the caller promises `key_len` readable bytes.
        let key = unsafe { slice(key, key_len, "key") }?;
        let hit = c.cache.purge(key, mode(soft));
        if !found.is_null() {
            // SAFETY: non-NULL; the caller promises it is writable.
            unsafe { found.write(hit) };
        }
        Ok(())
    })
}

fn mode(soft: bool) -> PurgeMode {
    if soft {
        PurgeMode::Soft
    } else {
        PurgeMode::Hard
    }
}

/// Purges every entry tagged `tag` (hard or soft, as `peakcache_purge`). Constant time however
/// many entries carry the tag: they are checked when next looked up.
///
/// # Safety
/// `cache` must be NULL or live; `tag` NULL or `tag_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn peakcache_purge_tag(
    cache: *const peakcache_cache,
    tag: *const u8,
    tag_len: usize,
    soft: bool,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        // SAFETY: the caller promises `tag_len` readable bytes.
        let tag = unsafe { slice(tag, tag_len, "tag") }?;
        c.cache.purge_tag(tag, mode(soft));
        Ok(())
    })
}

/// Freezes (`true`) or thaws the cache. While frozen, whatever is stored is served as fresh and
/// only misses reach the origin.
///
/// # Safety
/// `cache` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn peakcache_freeze(
    cache: *const peakcache_cache,
    frozen: bool,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        unsafe { arg(cache, "cache") }?.cache.freeze(frozen);
        Ok(())
    })
}

/// Whether the cache is frozen (false for NULL).
///
/// # Safety
/// `cache` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn peakcache_is_frozen(cache: *const peakcache_cache) -> bool {
    boundary_or(false, || {
        // SAFETY: the caller promises a live cache.
        unsafe { arg(cache, "cache") }.is_ok_and(|c| c.cache.is_frozen())
    })
}

/// Removes every entry. Fills in flight go on and store their values already stale. Entries
/// held by callers stay valid.
///
/// # Safety
/// `cache` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn peakcache_clear(cache: *const peakcache_cache) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        unsafe { arg(cache, "cache") }?.cache.clear();
        Ok(())
    })
}

/// The cache clock's time in milliseconds (monotonic, from the cache's creation): the time base
/// of the times a lookup or a waiter reports (`stored_at_ms`, `fresh_until_ms`, ...), so an
/// entry's age is `peakcache_cache_now_ms(cache) - stored_at_ms`. 0 for NULL.
///
/// # Safety
/// `cache` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn peakcache_cache_now_ms(cache: *const peakcache_cache) -> u64 {
    boundary_or(0, || {
        // SAFETY: the caller promises a live cache.
        unsafe { arg(cache, "cache") }.map_or(0, |c| millis(c.cx.now()))
    })
}

/// The heaviest entry the cache stores, in bytes of weight (see `PEAKCACHE_ENTRY_OVERHEAD`);
/// 0 for NULL. A body filter can stop buffering a body that cannot be stored.
///
/// # Safety
/// `cache` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn peakcache_cache_max_object_bytes(cache: *const peakcache_cache) -> u64 {
    boundary_or(0, || {
        // SAFETY: the caller promises a live cache.
        unsafe { arg(cache, "cache") }.map_or(0, |c| c.cache.max_object_weight())
    })
}

/// Whole milliseconds in `d`, saturating. In 64-bit arithmetic (not `as_millis`, which is
/// 128-bit): a lookup converts four times, on the hit path.
#[inline]
pub(crate) fn millis(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_millis()))
}
