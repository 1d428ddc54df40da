//! The cache handle: configuration, creation, purge, freeze, clear.

use crate::abi;
use crate::bytes::{arg, slice, writable};
use crate::log::{self, PEAKCACHE_LOG_INFO, PEAKCACHE_LOG_WARN};
use crate::panic::{boundary_or, boundary_unit, try_boundary};
use crate::result::{fail, peakcache_result, PEAKCACHE_ERR_INVALID};
use crate::result::{PEAKCACHE_ERR_IO, PEAKCACHE_ERR_REGION, PEAKCACHE_ERR_UNSUPPORTED};
use crate::Value;
use peakcache::{Cache, LocalHistory, PurgeMode, SystemClock};
use peakcache_shm::{Opened, ShmCache, ShmError};
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
    /// core, fewer for a small capacity. Shared backend: 0 is one shard per MiB of capacity, at
    /// most 16.
    pub shards: u32,
    /// Where entries live: `PEAKCACHE_BACKEND_LOCAL` (0, default), this process's memory; or
    /// `PEAKCACHE_BACKEND_SHARED`, a shared memory region used by every process attached to it
    /// (nginx workers, PHP-FPM workers), with the same lifecycle and single flight across
    /// processes. Every function works on both; the differences are documented where they apply
    /// (values are copied out of the region on every read; `capacity_bytes` is bytes of the
    /// region's heap, records rounded up to 64 bytes, every page reserved when the region is
    /// made). Another value: `PEAKCACHE_ERR_INVALID`.
    pub backend: u32,
    /// Shared backend: the region file, `shm_path[0..shm_path_len]` (bytes, no NUL; read only
    /// during `peakcache_cache_new`). Under `/dev/shm` (e.g. `/dev/shm/peakcache-NAME`) the
    /// region is memory that outlives the processes until reboot; on a disk file system it also
    /// outlives a reboot. Every process that opens the same path with the same settings shares
    /// one cache: the first creates the file (mode 0600, see `shm_owner_uid`), the others attach,
    /// keeping its entries. A file system too small for the region is `PEAKCACHE_ERR_IO` here,
    /// naming the bytes needed and available, never a SIGBUS later.
    /// NULL (default) with length 0: an anonymous shared mapping instead, shared only with the
    /// children this process forks after `peakcache_cache_new` (create it in nginx's master or
    /// PHP-FPM's master before the workers are forked; the handle is inherited by them).
    pub shm_path: *const u8,
    /// The length of `shm_path` in bytes. Default 0.
    pub shm_path_len: usize,
    /// Shared backend: the most entries the region's index must hold (it gets 8/7 of that in
    /// slots, 64 bytes each). 0 (default): one per 256 bytes of capacity.
    pub shm_max_entries: u64,
    /// Shared backend with a path: when the file holds a region that cannot be used as
    /// configured (another layout version, size, shard count, settings, or a damaged header),
    /// `true` (default) replaces it by a new, empty region (logged at `PEAKCACHE_LOG_WARN` with
    /// the reason; `peakcache_cache_region_info` says `PEAKCACHE_REGION_RECREATED`), `false` fails
    /// with `PEAKCACHE_ERR_REGION` and leaves the file alone. A file refused for its type, owner
    /// or permissions (see `shm_owner_uid`) is never replaced, whatever this says.
    pub shm_recreate_on_mismatch: bool,
    /// Shared backend with a path: the user who must own the region file.
    /// `PEAKCACHE_SHM_EFFECTIVE_ID` (default): the effective user of the process calling
    /// `peakcache_cache_new`. An existing file is refused (`PEAKCACHE_ERR_REGION`, the path, its
    /// owner, its mode and the reason in `peakcache_last_error`, the file left alone) when it is
    /// not a regular file (a symbolic link is not followed), not owned by this user, or has any
    /// permission for other users (or for its group, unless `shm_group_shared`). A new file is
    /// made under a temporary name beside the path, mode 0600, given to this user and group
    /// (which needs privilege: nginx's master, as root, creating the region for its workers'
    /// user), and moved to the path without replacing a file made meanwhile.
    pub shm_owner_uid: u32,
    /// Shared backend with a path: the group of a new region file, and the group allowed to
    /// share it with `shm_group_shared`. `PEAKCACHE_SHM_EFFECTIVE_ID` (default): the effective
    /// group.
    pub shm_owner_gid: u32,
    /// Shared backend with a path: `true` lets `shm_owner_gid` share the region deliberately (a
    /// new file gets mode 0660; an existing one may have group permissions if its group is that
    /// group). Default `false`: mode 0600, any group or other permission refused. Permissions
    /// for other users are always refused.
    pub shm_group_shared: bool,
    /// Shared backend: the longest a call waits for a lock of the region that another process
    /// holds (a holder stopped by SIGSTOP or a debugger, or stuck) before going on without the
    /// cache: a lookup answers `PEAKCACHE_LOOKUP_PASS`, a get finds nothing, an insert or commit
    /// answers `PEAKCACHE_ERR_REGION` (nothing stored; a fill's waiters are released at its lock
    /// timeout), a purge `PEAKCACHE_ERR_REGION` (not done); each time is counted and logged at
    /// `PEAKCACHE_LOG_WARN` (at most a line a second). 0 (default): `lock_timeout_ms`, at least
    /// 10 and at most 1000.
    pub shm_lock_bound_ms: u64,
}

crate::abi::sized!(peakcache_config, shm_lock_bound_ms);

/// `peakcache_config.shm_owner_uid` / `shm_owner_gid`: the effective id of the process calling
/// `peakcache_cache_new`.
pub const PEAKCACHE_SHM_EFFECTIVE_ID: u32 = u32::MAX;

/// `peakcache_config.backend`: the entries live in this process's memory (the default).
pub const PEAKCACHE_BACKEND_LOCAL: u32 = 0;
/// `peakcache_config.backend`: the entries live in a shared memory region, one cache for every
/// process attached to it.
pub const PEAKCACHE_BACKEND_SHARED: u32 = 1;

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
            backend: PEAKCACHE_BACKEND_LOCAL,
            shm_path: std::ptr::null(),
            shm_path_len: 0,
            shm_max_entries: 0,
            shm_recreate_on_mismatch: true,
            shm_owner_uid: PEAKCACHE_SHM_EFFECTIVE_ID,
            shm_owner_gid: PEAKCACHE_SHM_EFFECTIVE_ID,
            shm_group_shared: false,
            shm_lock_bound_ms: 0,
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
    pub(crate) backend: Backend,
    pub(crate) cx: Context,
    /// The local backend's per-second history (the shared backend's is in its region).
    pub(crate) history: Option<LocalHistory>,
}

/// Where a cache's entries live. Every export matches on it; the local arm is the original
/// code path, unchanged.
pub(crate) enum Backend {
    /// In this process: values are `Arc<Stored>`, a hit clones a pointer.
    Local(Cache<Value>),
    /// In a shared memory region: values are encoded (`codec`), copied out on a read.
    Shared(Shared),
}

/// The shared backend's cache and how its region was opened.
pub(crate) struct Shared {
    pub(crate) shm: ShmCache,
    pub(crate) opened: u32,
}

/// Writes the default settings into `*cfg`.
///
/// Exported as `peakcache_config_default_sized` with the size of `*cfg` last; the header's
/// `peakcache_config_default` macro passes `sizeof(peakcache_config)` (see the header's "Sizes"
/// convention).
///
/// # Safety
/// `cfg` must be NULL or point to `cfg_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn peakcache_config_default_sized(
    cfg: *mut peakcache_config,
    cfg_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        let cfg = writable(cfg, "cfg")?;
        abi::writable_sized::<peakcache_config>(cfg_size)?;
        // SAFETY: checked non-NULL and sized; the caller promises `cfg_size` writable bytes.
        unsafe { abi::write(cfg, cfg_size, &peakcache_config::default()) };
        Ok(())
    })
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// Creates a cache with the settings in `*cfg` (NULL: every default) in `*out`.
/// `PEAKCACHE_ERR_INVALID` for a capacity of 0 or more than 65536 shards.
///
/// Exported as `peakcache_cache_new_sized` with the size of `*cfg` last; the header's
/// `peakcache_cache_new` macro passes `sizeof(peakcache_config)`: fields a host built against an
/// older header does not have take their defaults.
///
/// # Safety
/// `cfg` must be NULL or point to `cfg_size` readable bytes of a `peakcache_config`; `out` must
/// be NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_cache_new_sized(
    cfg: *const peakcache_config,
    out: *mut *mut peakcache_cache,
    cfg_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        let out = writable(out, "out")?;
        // SAFETY: the caller promises NULL or `cfg_size` readable bytes.
        let cfg = unsafe { abi::read(cfg, cfg_size) }?.unwrap_or_default();
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
        let backend = match cfg.backend {
            PEAKCACHE_BACKEND_LOCAL => Backend::Local(local_cache(&cfg, clock)),
            PEAKCACHE_BACKEND_SHARED => Backend::Shared(shared_cache(&cfg)?),
            other => {
                return Err(fail(
                    PEAKCACHE_ERR_INVALID,
                    format_args!("cfg.backend is {other}: not a PEAKCACHE_BACKEND_*"),
                ))
            }
        };
        let history = matches!(backend, Backend::Local(_)).then(LocalHistory::default);
        let handle = Box::new(peakcache_cache {
            history,
            backend,
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

fn local_cache(cfg: &peakcache_config, clock: SystemClock) -> Cache<Value> {
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
    cache
}

/// `peakcache_region_info.opened`: not a shared cache.
pub const PEAKCACHE_REGION_NONE: u32 = 0;
/// `peakcache_region_info.opened`: an anonymous shared mapping, made by this process.
pub const PEAKCACHE_REGION_ANONYMOUS: u32 = 1;
/// `peakcache_region_info.opened`: the region file did not exist (or was empty) and was created.
pub const PEAKCACHE_REGION_CREATED: u32 = 2;
/// `peakcache_region_info.opened`: the region file held a matching region; its entries are kept.
pub const PEAKCACHE_REGION_ATTACHED: u32 = 3;
/// `peakcache_region_info.opened`: the region file held an unusable or differently configured
/// region, replaced by a new, empty one (see `shm_recreate_on_mismatch`).
pub const PEAKCACHE_REGION_RECREATED: u32 = 4;

/// The result code of an error of the shared tier, with its message kept for
/// `peakcache_last_error`.
pub(crate) fn shm_error(what: &str, e: ShmError) -> peakcache_result {
    let code = match e {
        ShmError::Io { .. } | ShmError::NoSpace { .. } => PEAKCACHE_ERR_IO,
        ShmError::InvalidConfig(_) => PEAKCACHE_ERR_INVALID,
        _ => PEAKCACHE_ERR_REGION,
    };
    fail(code, format_args!("{what}: {e}"))
}

/// A path argument as a file system path: bytes, no NUL inside.
pub(crate) fn path_arg(bytes: &[u8], what: &str) -> Result<std::path::PathBuf, peakcache_result> {
    use std::os::unix::ffi::OsStrExt;
    if bytes.contains(&0) {
        return Err(fail(
            PEAKCACHE_ERR_INVALID,
            format_args!("{what} contains a NUL byte"),
        ));
    }
    Ok(std::path::Path::new(std::ffi::OsStr::from_bytes(bytes)).to_path_buf())
}

fn shared_cache(cfg: &peakcache_config) -> Result<Shared, peakcache_result> {
    // SAFETY: the caller of peakcache_cache_new promises `shm_path_len` readable bytes.
    let path = unsafe { slice(cfg.shm_path, cfg.shm_path_len, "cfg.shm_path") }?;
    let mut b = ShmCache::builder()
        .max_bytes(cfg.capacity_bytes)
        .lock_timeout(ms(cfg.lock_timeout_ms))
        .retry_backoff(ms(cfg.retry_backoff_min_ms), ms(cfg.retry_backoff_max_ms))
        .refresh_retry(ms(cfg.refresh_retry_ms))
        .recreate_on_mismatch(cfg.shm_recreate_on_mismatch)
        .group_shared(cfg.shm_group_shared)
        .report(|line: &str| log::emit(PEAKCACHE_LOG_WARN, line));
    if cfg.shm_owner_uid != PEAKCACHE_SHM_EFFECTIVE_ID {
        b = b.owner(cfg.shm_owner_uid);
    }
    if cfg.shm_owner_gid != PEAKCACHE_SHM_EFFECTIVE_ID {
        b = b.group(cfg.shm_owner_gid);
    }
    if cfg.shm_lock_bound_ms > 0 {
        b = b.lock_bound(ms(cfg.shm_lock_bound_ms));
    }
    if cfg.shards > 0 {
        b = b.shards(cfg.shards);
    }
    if cfg.max_object_bytes > 0 {
        b = b.max_object_bytes(cfg.max_object_bytes);
    }
    if cfg.shm_max_entries > 0 {
        b = b.max_entries(cfg.shm_max_entries);
    }
    let (shm, opened, name) = if path.is_empty() {
        let shm = b
            .anonymous()
            .map_err(|e| shm_error("anonymous shared region", e))?;
        (
            shm,
            PEAKCACHE_REGION_ANONYMOUS,
            "an anonymous mapping".to_string(),
        )
    } else {
        let p = path_arg(path, "cfg.shm_path")?;
        let (shm, opened) = b
            .open(&p)
            .map_err(|e| shm_error(&format!("shared region {}", p.display()), e))?;
        let opened = match opened {
            Opened::Created => PEAKCACHE_REGION_CREATED,
            Opened::Attached => PEAKCACHE_REGION_ATTACHED,
            Opened::Recreated(why) => {
                log::emit(
                    PEAKCACHE_LOG_WARN,
                    &format!(
                        "peakcache: shared region {} recreated (its entries are lost): {why}",
                        p.display()
                    ),
                );
                PEAKCACHE_REGION_RECREATED
            }
        };
        (shm, opened, p.display().to_string())
    };
    if log::enabled() {
        let info = shm.region_info();
        log::emit(
            PEAKCACHE_LOG_INFO,
            &format!(
                "peakcache: shared cache {} in {name}, {} bytes of heap, {} shards, max object {} bytes",
                match opened {
                    PEAKCACHE_REGION_ATTACHED => "attached",
                    PEAKCACHE_REGION_RECREATED => "recreated",
                    _ => "created",
                },
                info.heap_bytes,
                info.shards,
                info.max_object_bytes
            ),
        );
    }
    Ok(Shared { shm, opened })
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
/// whether an entry or a fill of the key existed. Shared backend: `PEAKCACHE_ERR_REGION` (the
/// reason in `peakcache_last_error`) if the purge could not be done, its shard's lock held by a
/// stopped or stuck process past `shm_lock_bound_ms`.
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
        let hit = match &c.backend {
            Backend::Local(cache) => cache.purge(key, mode(soft)),
            Backend::Shared(s) => s
                .shm
                .try_purge(key, mode(soft))
                .map_err(|e| fail(PEAKCACHE_ERR_REGION, format_args!("purge not done: {e}")))?,
        };
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
        match &c.backend {
            Backend::Local(cache) => cache.purge_tag(tag, mode(soft)),
            Backend::Shared(s) => s.shm.purge_tag(tag, mode(soft)),
        }
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
        match &unsafe { arg(cache, "cache") }?.backend {
            Backend::Local(cache) => cache.freeze(frozen),
            Backend::Shared(s) => s.shm.freeze(frozen),
        }
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
        unsafe { arg(cache, "cache") }.is_ok_and(|c| match &c.backend {
            Backend::Local(cache) => cache.is_frozen(),
            Backend::Shared(s) => s.shm.is_frozen(),
        })
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
        match &unsafe { arg(cache, "cache") }?.backend {
            Backend::Local(cache) => cache.clear(),
            Backend::Shared(s) => s.shm.clear(),
        }
        Ok(())
    })
}

/// The cache clock's time in milliseconds (monotonic, from the cache's creation; shared backend:
/// the region's time, the same in every process attached to it): the time base
/// of the times a lookup or a waiter reports (`stored_at_ms`, `fresh_until_ms`, ...), so an
/// entry's age is `peakcache_cache_now_ms(cache) - stored_at_ms`. 0 for NULL.
///
/// # Safety
/// `cache` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn peakcache_cache_now_ms(cache: *const peakcache_cache) -> u64 {
    boundary_or(0, || {
        // SAFETY: the caller promises a live cache.
        unsafe { arg(cache, "cache") }.map_or(0, |c| match &c.backend {
            Backend::Local(_) => millis(c.cx.now()),
            Backend::Shared(s) => millis(s.shm.now()),
        })
    })
}

/// The heaviest entry the cache stores, in bytes of weight (see `PEAKCACHE_ENTRY_OVERHEAD`);
/// 0 for NULL. Shared backend: in bytes of record, `80 + 8 x tags + key + encoded value`, the
/// encoded value being the body, headers and metadata plus 5 bytes and 2 per header (about). A body filter can stop buffering a body that cannot be stored.
///
/// # Safety
/// `cache` must be NULL or live.
#[no_mangle]
pub unsafe extern "C" fn peakcache_cache_max_object_bytes(cache: *const peakcache_cache) -> u64 {
    boundary_or(0, || {
        // SAFETY: the caller promises a live cache.
        unsafe { arg(cache, "cache") }.map_or(0, |c| match &c.backend {
            Backend::Local(cache) => cache.max_object_weight(),
            Backend::Shared(s) => s.shm.max_object_bytes(),
        })
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

impl peakcache_cache {
    /// The shared backend, or `PEAKCACHE_ERR_UNSUPPORTED` naming what needed it.
    fn shared(&self, what: &str) -> Result<&Shared, peakcache_result> {
        match &self.backend {
            Backend::Shared(s) => Ok(s),
            Backend::Local(_) => Err(fail(
                PEAKCACHE_ERR_UNSUPPORTED,
                format_args!("{what} needs the shared backend (PEAKCACHE_BACKEND_SHARED)"),
            )),
        }
    }
}

/// Writes every servable entry of a shared cache to the file `path[0..path_len]`, shard by
/// shard under each shard's lock (each shard a consistent cut while the cache keeps serving),
/// into a temporary file renamed over `path` once complete and synced. `*entries` (if not NULL)
/// receives the number of entries written. `PEAKCACHE_ERR_UNSUPPORTED` on the local backend;
/// `PEAKCACHE_ERR_IO` if the file cannot be written (the reason in `peakcache_last_error`).
///
/// # Safety
/// `cache` must be NULL or live; `path` NULL or `path_len` readable bytes; `entries` NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_cache_snapshot(
    cache: *const peakcache_cache,
    path: *const u8,
    path_len: usize,
    entries: *mut u64,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        // SAFETY: the caller promises `path_len` readable bytes.
        let path = path_arg(unsafe { slice(path, path_len, "path") }?, "path")?;
        let s = c.shared("peakcache_cache_snapshot")?;
        let n = s
            .shm
            .snapshot(&path)
            .map_err(|e| shm_error(&format!("snapshot {}", path.display()), e))?;
        if !entries.is_null() {
            // SAFETY: non-NULL; the caller promises it is writable.
            unsafe { entries.write(n) };
        }
        Ok(())
    })
}

/// Loads a snapshot written by `peakcache_cache_snapshot` (by this region or another, of any
/// geometry) into a shared cache: the file is checked (magic, version, lengths, a checksum per
/// entry); entries keep their age (the time since the snapshot included); those that fail a
/// check, are dead by now or find no room are skipped. `*restored` and `*skipped` (each if not
/// NULL) receive the counts. `PEAKCACHE_ERR_UNSUPPORTED` on the local backend; `PEAKCACHE_ERR_IO`
/// if the file cannot be read; `PEAKCACHE_ERR_REGION` if it is not a snapshot this build reads.
///
/// # Safety
/// `cache` must be NULL or live; `path` NULL or `path_len` readable bytes; `restored` and
/// `skipped` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_cache_restore(
    cache: *const peakcache_cache,
    path: *const u8,
    path_len: usize,
    restored: *mut u64,
    skipped: *mut u64,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        // SAFETY: the caller promises `path_len` readable bytes.
        let path = path_arg(unsafe { slice(path, path_len, "path") }?, "path")?;
        let s = c.shared("peakcache_cache_restore")?;
        let r = s
            .shm
            .restore(&path)
            .map_err(|e| shm_error(&format!("restore {}", path.display()), e))?;
        if !restored.is_null() {
            // SAFETY: non-NULL; the caller promises it is writable.
            unsafe { restored.write(r.restored) };
        }
        if !skipped.is_null() {
            // SAFETY: non-NULL; the caller promises it is writable.
            unsafe { skipped.write(r.skipped) };
        }
        Ok(())
    })
}

/// What `peakcache_region_info` reports: the backend, and for a shared cache its region.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct peakcache_region_info {
    /// `PEAKCACHE_BACKEND_LOCAL` or `PEAKCACHE_BACKEND_SHARED`. Every other field is 0 for a
    /// local cache.
    pub backend: u32,
    /// How this handle's region was opened: a `PEAKCACHE_REGION_*` constant.
    pub opened: u32,
    /// Bytes of the whole mapping.
    pub region_bytes: u64,
    /// Bytes of heap (records) over all shards: the capacity.
    pub heap_bytes: u64,
    /// The largest record stored (`peakcache_cache_max_object_bytes`).
    pub max_object_bytes: u64,
    /// Shards checked and rebuilt after a process died holding their lock (or found them damaged).
    pub recoveries: u64,
    /// Fills taken over from a process found dead.
    pub takeovers: u64,
    /// Entries dropped by those checks, or evicted control records.
    pub entries_dropped: u64,
    /// Shards.
    pub shards: u32,
    /// Index slots per shard.
    pub slots_per_shard: u32,
    /// Tag table slots in use.
    pub tags_used: u32,
    /// Tag table slots.
    pub tag_slots: u32,
    /// Times a caller gave up waiting for a shard lock held past `shm_lock_bound_ms` (a stopped
    /// or stuck process) and served from the origin instead (added after the first layout).
    pub lock_timeouts: u64,
}

crate::abi::sized!(peakcache_region_info, tag_slots);

/// Writes the cache's backend and, for a shared cache, its region's geometry and recovery
/// counters (global across processes) into `*out`.
///
/// # Safety
/// `cache` must be NULL or live; `out` NULL or writable.
///
/// Exported as `peakcache_cache_region_info_sized` with the size of `*out` last; the header's `peakcache_cache_region_info` macro passes
/// `sizeof(peakcache_region_info)` (see the header's "Sizes" convention).
#[no_mangle]
pub unsafe extern "C" fn peakcache_cache_region_info_sized(
    cache: *const peakcache_cache,
    out: *mut peakcache_region_info,
    out_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        // SAFETY: the caller promises a live cache.
        let c = unsafe { arg(cache, "cache") }?;
        let out = writable(out, "out")?;
        abi::writable_sized::<peakcache_region_info>(out_size)?;
        let info = match &c.backend {
            Backend::Local(_) => peakcache_region_info::default(),
            Backend::Shared(s) => {
                let r = s.shm.region_info();
                peakcache_region_info {
                    backend: PEAKCACHE_BACKEND_SHARED,
                    opened: s.opened,
                    region_bytes: r.region_bytes,
                    heap_bytes: r.heap_bytes,
                    max_object_bytes: r.max_object_bytes,
                    recoveries: r.recoveries,
                    takeovers: r.takeovers,
                    entries_dropped: r.entries_dropped,
                    shards: r.shards,
                    slots_per_shard: r.slots_per_shard,
                    tags_used: r.tags_used,
                    tag_slots: r.tag_slots,
                    lock_timeouts: r.lock_timeouts,
                }
            }
        };
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { abi::write(out, out_size, &info) };
        Ok(())
    })
}
