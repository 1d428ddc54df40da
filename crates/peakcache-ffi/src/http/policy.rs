//! The policy handle: `peakcache-http`'s `Policy`, configured once from a C struct.

use crate::abi;
use crate::bytes::{arg, peakcache_bytes, slice, writable};
use crate::panic::{boundary_or, boundary_unit, try_boundary};
use crate::result::{fail, peakcache_result, PEAKCACHE_ERR_INVALID};
use peakcache_http::{Config, Policy, SetCookie, StaleWindows};
use std::time::Duration;

/// What to do with a response that sets a cookie (`peakcache_http_config.set_cookie`).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum peakcache_http_set_cookie {
    /// Do not store it (the default): a stored cookie would be handed to every client.
    PEAKCACHE_HTTP_SET_COOKIE_DONT_STORE = 0,
    /// Store it without its `Set-Cookie` fields.
    PEAKCACHE_HTTP_SET_COOKIE_STRIP = 1,
    /// Store it with its cookies, served to everyone.
    PEAKCACHE_HTTP_SET_COOKIE_STORE = 2,
}

/// The settings of an HTTP policy, a plain struct: fill it with `peakcache_http_config_default`,
/// change what you need, pass it to `peakcache_http_policy_new` (which copies everything it
/// points to). Fields are only ever appended.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct peakcache_http_config {
    /// The cache's name in `Cache-Status` (UTF-8). Default `peakcache`.
    pub cache_name: peakcache_bytes,
    /// The scheme of requests that give none, `http` or `https`. Default `https`.
    pub default_scheme: peakcache_bytes,
    /// More query parameter names to leave out of keys and upstream requests (campaign
    /// tracking), in addition to the built-in `gclid`, `fbclid`, `msclkid`, `dclid`, `gbraid`,
    /// `wbraid`, `mc_cid`, `mc_eid`, `_ga`. Default none (NULL, 0).
    pub ignored_query_params: *const peakcache_bytes,
    /// The number of entries at `ignored_query_params`.
    pub n_ignored_query_params: usize,
    /// More query parameter name prefixes to leave out, in addition to the built-in `utm_`.
    /// Default none (NULL, 0).
    pub ignored_query_prefixes: *const peakcache_bytes,
    /// The number of entries at `ignored_query_prefixes`.
    pub n_ignored_query_prefixes: usize,
    /// A `peakcache_http_set_cookie`. Default `PEAKCACHE_HTTP_SET_COOKIE_DONT_STORE`.
    pub set_cookie: u32,
    /// The stale-while-revalidate window given when the origin sends none. Default 0. Never
    /// applied where serving stale is forbidden (`no-cache`, `must-revalidate`, `s-maxage`).
    pub default_swr_ms: u64,
    /// The stale-if-error window given when the origin sends none. Default 0.
    pub default_sie_ms: u64,
    /// The operator's grace: each stale window is at least this long, whatever the origin
    /// said (reported as grace in `Cache-Status`). Default 0.
    pub grace_swr_ms: u64,
    /// The stale-if-error grace. Default 0.
    pub grace_sie_ms: u64,
    /// Let `stale-while-revalidate` / `stale-if-error` apply alongside `s-maxage` (RFC 9111
    /// §5.2.2.10 forbids it; many origins mean it). Default false.
    pub stale_with_s_maxage: bool,
    /// The lifetime given to a storable response that says nothing about its freshness (no
    /// `max-age`, `Expires` or `Last-Modified`), like nginx's `proxy_cache_valid`; only for the
    /// statuses RFC 9110 §15.1 lets a cache give a heuristic lifetime. Default 0: such a response
    /// is stored stale, reusable only by revalidation or inside stale windows.
    pub default_ttl_ms: u64,
    /// Act on a request's own `Cache-Control` / `Pragma` (RFC 9111 §5.2.1) for the visitor who
    /// sent them: `no-store` makes `peakcache_http_key` answer `PEAKCACHE_ERR_NOT_CACHEABLE`
    /// (forward that request untouched), and `no-cache`, `max-age`, `min-fresh` that rule out
    /// the stored response make `peakcache_http_serve` answer `PEAKCACHE_HTTP_FORWARD`. Default
    /// false: ignored for shared entries, as Varnish, Fastly and Cloudflare do. Fills and
    /// refreshes never carry them either way. Hosts should leave it off while frozen.
    pub honour_request_directives: bool,
}

crate::abi::sized!(peakcache_http_config, honour_request_directives);

impl Default for peakcache_http_config {
    fn default() -> Self {
        let text = |s: &'static str| peakcache_bytes {
            data: s.as_ptr(),
            len: s.len(),
        };
        peakcache_http_config {
            cache_name: text("peakcache"),
            default_scheme: text("https"),
            ignored_query_params: std::ptr::null(),
            n_ignored_query_params: 0,
            ignored_query_prefixes: std::ptr::null(),
            n_ignored_query_prefixes: 0,
            set_cookie: peakcache_http_set_cookie::PEAKCACHE_HTTP_SET_COOKIE_DONT_STORE as u32,
            default_swr_ms: 0,
            default_sie_ms: 0,
            grace_swr_ms: 0,
            grace_sie_ms: 0,
            stale_with_s_maxage: false,
            default_ttl_ms: 0,
            honour_request_directives: false,
        }
    }
}

/// HTTP caching rules for one cache (shared): created by `peakcache_http_policy_new`, freed by
/// `peakcache_http_policy_free`. Immutable and thread-safe: any number of threads may use one
/// policy at once.
pub struct peakcache_http_policy {
    pub(crate) policy: Policy,
}

/// `bytes` as UTF-8 text.
fn text(bytes: &[u8], what: &str) -> Result<String, peakcache_result> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| fail(PEAKCACHE_ERR_INVALID, format_args!("{what} is not UTF-8")))
}

/// The strings of a `(list, n)` pair.
///
/// # Safety
/// `list` must be NULL or point to `n` entries, each naming readable bytes.
unsafe fn texts(
    list: *const peakcache_bytes,
    n: usize,
    what: &str,
) -> Result<Vec<String>, peakcache_result> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if list.is_null() {
        return Err(fail(
            PEAKCACHE_ERR_INVALID,
            format_args!("{what}: NULL pointer with {n} entries"),
        ));
    }
    // SAFETY: non-NULL, and the caller promises `n` entries.
    let list = unsafe { std::slice::from_raw_parts(list, n) };
    list.iter()
        .map(|b| {
            // SAFETY: the caller promises each entry's bytes.
            let bytes = unsafe { slice(b.data, b.len, what) }?;
            if bytes.is_empty() {
                return Err(fail(
                    PEAKCACHE_ERR_INVALID,
                    format_args!("{what}: empty entry"),
                ));
            }
            text(bytes, what)
        })
        .collect()
}

/// The `Config` a C config describes.
///
/// # Safety
/// Every pointer in `cfg` as `peakcache_http_policy_new` documents.
unsafe fn config(cfg: &peakcache_http_config) -> Result<Config, peakcache_result> {
    let mut c = Config::default();
    // SAFETY: the caller promises the bytes.
    let name = unsafe { slice(cfg.cache_name.data, cfg.cache_name.len, "cfg.cache_name") }?;
    if !name.is_empty() {
        c.cache_name = text(name, "cfg.cache_name")?;
    }
    // SAFETY: as above.
    let scheme = unsafe {
        slice(
            cfg.default_scheme.data,
            cfg.default_scheme.len,
            "cfg.default_scheme",
        )
    }?;
    if !scheme.is_empty() {
        let scheme = text(scheme, "cfg.default_scheme")?.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(fail(
                PEAKCACHE_ERR_INVALID,
                format_args!("cfg.default_scheme is {scheme:?}, not http or https"),
            ));
        }
        c.default_scheme = scheme;
    }
    // SAFETY: the caller promises the lists.
    let params = unsafe {
        texts(
            cfg.ignored_query_params,
            cfg.n_ignored_query_params,
            "cfg.ignored_query_params",
        )
    }?;
    c.ignored_query_params.extend(params);
    // SAFETY: as above.
    let prefixes = unsafe {
        texts(
            cfg.ignored_query_prefixes,
            cfg.n_ignored_query_prefixes,
            "cfg.ignored_query_prefixes",
        )
    }?;
    c.ignored_query_prefixes.extend(prefixes);
    c.set_cookie = match cfg.set_cookie {
        0 => SetCookie::DontStore,
        1 => SetCookie::Strip,
        2 => SetCookie::Store,
        other => {
            return Err(fail(
                PEAKCACHE_ERR_INVALID,
                format_args!("cfg.set_cookie is {other}, not a peakcache_http_set_cookie"),
            ))
        }
    };
    let ms = Duration::from_millis;
    c.default_stale = StaleWindows {
        swr: ms(cfg.default_swr_ms),
        sie: ms(cfg.default_sie_ms),
    };
    c.grace = StaleWindows {
        swr: ms(cfg.grace_swr_ms),
        sie: ms(cfg.grace_sie_ms),
    };
    c.stale_with_s_maxage = cfg.stale_with_s_maxage;
    c.heuristic.default_ttl = Duration::from_millis(cfg.default_ttl_ms);
    c.honour_request_directives = cfg.honour_request_directives;
    Ok(c)
}

/// Writes the default HTTP settings into `*cfg` (its strings point to static text).
///
/// Exported as `peakcache_http_config_default_sized` with the size of `*cfg` last; the
/// header's `peakcache_http_config_default` macro passes `sizeof(peakcache_http_config)`.
///
/// # Safety
/// `cfg` must be NULL or point to `cfg_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_config_default_sized(
    cfg: *mut peakcache_http_config,
    cfg_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        let cfg = writable(cfg, "cfg")?;
        abi::writable_sized::<peakcache_http_config>(cfg_size)?;
        // SAFETY: checked non-NULL and sized; the caller promises `cfg_size` writable bytes.
        unsafe { abi::write(cfg, cfg_size, &peakcache_http_config::default()) };
        Ok(())
    })
}

/// Creates an HTTP policy with the settings in `*cfg` (NULL: every default) in `*out`. Copies
/// what `cfg` points to. `PEAKCACHE_ERR_INVALID` for text that is not UTF-8, a scheme other than
/// http or https, an empty query parameter or prefix, or an unknown `set_cookie`.
///
/// Exported as `peakcache_http_policy_new_sized` with the size of `*cfg` last; the header's
/// `peakcache_http_policy_new` macro passes `sizeof(peakcache_http_config)`.
///
/// # Safety
/// `cfg` must be NULL or point to `cfg_size` readable bytes of a `peakcache_http_config` whose
/// pointers are NULL (with a length or count of 0) or point to what their lengths and counts
/// say; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_policy_new_sized(
    cfg: *const peakcache_http_config,
    out: *mut *mut peakcache_http_policy,
    cfg_size: usize,
) -> peakcache_result {
    try_boundary(|| {
        let out = writable(out, "out")?;
        // SAFETY: the caller promises NULL or `cfg_size` readable bytes.
        let cfg = unsafe { crate::abi::read(cfg, cfg_size) }?.unwrap_or_default();
        // SAFETY: the caller promises the config's pointers.
        let config = unsafe { config(&cfg) }?;
        let handle = Box::new(peakcache_http_policy {
            policy: Policy::new(config),
        });
        // SAFETY: checked non-NULL; the caller promises it is writable.
        unsafe { out.write(Box::into_raw(handle)) };
        Ok(())
    })
}

/// Frees a policy. NULL is a no-op. Must not race with other calls using it.
///
/// # Safety
/// `policy` must be NULL or live, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_policy_free(policy: *mut peakcache_http_policy) {
    boundary_unit(|| {
        if !policy.is_null() {
            // SAFETY: created by Box::into_raw in peakcache_http_policy_new; the caller gives
            // it up.
            drop(unsafe { Box::from_raw(policy) });
        }
    })
}

/// Whether a response header named `name[0..len]` may be sent to clients: false for the
/// fields meant for this cache alone (`Surrogate-Control`, `Surrogate-Key`), which a host
/// forwarding an upstream response must remove; `CDN-Cache-Control` goes on to clients, for
/// CDNs in front (RFC 9213 §3). (Serving from an
/// entry, `peakcache_http_serve` removes them itself.) Names compare case-insensitively; true
/// for a NULL policy or an invalid name.
///
/// # Safety
/// `policy` must be NULL or live; `name` NULL or `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn peakcache_http_forward_field(
    policy: *const peakcache_http_policy,
    name: *const u8,
    len: usize,
) -> bool {
    boundary_or(true, || {
        // SAFETY: the caller promises a live policy.
        let Ok(p) = (unsafe { arg(policy, "policy") }) else {
            return true;
        };
        // SAFETY: the caller promises `len` readable bytes.
        let Ok(name) = (unsafe { slice(name, len, "name") }) else {
            return true;
        };
        let Ok(name) = http::HeaderName::from_bytes(name) else {
            return true;
        };
        let c = p.policy.config();
        let own = (!c.forward_targeted_fields
            && c.targeted_fields.contains(&name)
            && !c.forwarded_targeted_fields.contains(&name))
            || (!c.forward_tag_fields && c.tag_fields.contains(&name));
        !own
    })
}
