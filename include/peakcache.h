/*
 * peakcache.h: the C ABI of peakcache, an embedded edge cache.
 *
 * API conventions (every function follows them):
 *
 * - Results. Every fallible function returns a peakcache_result (a uint32_t): PEAKCACHE_OK is 0;
 *   codes are stable and only ever appended. peakcache_result_str(code) names one;
 *   peakcache_last_error(buf, cap) tells, for this thread, why the last call that failed did.
 *   PEAKCACHE_PENDING (poll: not yet) is the one non-zero code that is not an error.
 * - Out-parameters are written only on PEAKCACHE_OK (peakcache_waiter_poll documents PENDING).
 * - Pointers. Every pointer is checked: NULL gives PEAKCACHE_ERR_NULL, never a crash.
 *   Infallible getters (peakcache_entry_status, ...) return 0 for a NULL handle.
 * - Byte strings are (const uint8_t *ptr, size_t len), never NUL-terminated. A NULL ptr with
 *   len 0 is the empty string; a NULL ptr with len > 0 is PEAKCACHE_ERR_INVALID.
 * - Ownership. Every handle is an opaque pointer, created by the library and freed by exactly
 *   one library function that accepts NULL:
 *     peakcache_cache     peakcache_cache_free       shared: thread-safe, one per host
 *     peakcache_entry     peakcache_entry_free       counted reference; its views live until freed
 *     peakcache_response  peakcache_response_free    (or consumed by a commit)
 *     peakcache_fill      peakcache_fill_abandon     (or consumed by commit/fail/uncacheable)
 *     peakcache_refresh   peakcache_refresh_abandon  (or consumed by commit/fail/uncacheable)
 *     peakcache_waiter    peakcache_waiter_free      (or consumed by a final wait/poll answer)
 *     peakcache_buf       peakcache_buf_free
 *     peakcache_http_policy   peakcache_http_policy_free   shared: thread-safe, immutable
 *     peakcache_http_store    peakcache_http_store_free    a decision to store
 *     peakcache_http_headers  peakcache_http_headers_free  a header list
 *     peakcache_http_keys     peakcache_http_keys_free     a key list
 *   Nothing allocated by the library is freed by the host with free(), nor the other way round.
 * - Consuming calls take the handle's address (peakcache_fill **) and set it to NULL, whatever
 *   the result: using the same pointer again is PEAKCACHE_ERR_NULL, not a use after free.
 * - Views (body, header, buffer bytes) stay valid until their handle is freed, even if the
 *   entry is evicted, purged or replaced meanwhile, or the cache handle is freed.
 * - Threads. A peakcache_cache may be used by any number of threads at once (functions taking
 *   `const peakcache_cache *` are thread-safe). Other handles may move between threads but must
 *   not be used by two at once; entries are read-only and may be read from several.
 * - Panics. No Rust panic crosses this boundary: a bug inside the library returns
 *   PEAKCACHE_ERR_PANIC (message in peakcache_last_error, and logged at PEAKCACHE_LOG_ERROR).
 *   Nothing is printed to stdout or stderr; the library installs a panic hook that is silent for
 *   its own panics and defers to any previous hook for others. Out of memory aborts, as in Rust.
 * - Logging goes only to the callback set with peakcache_set_log_callback (userdata first),
 *   never called with a cache lock held.
 * - Times are milliseconds. Windows (ttl, swr, sie) are kept to the millisecond and capped at
 *   2^32-1 ms (49 days). The core's times are its own monotonic clock (peakcache_cache_now_ms);
 *   the HTTP family's are wall-clock Unix milliseconds (they meet Date headers).
 * - Enum arguments are passed as uint32_t and checked (PEAKCACHE_ERR_INVALID when unknown).
 * - Sizes. The structs the host allocates and the library fills or reads (peakcache_config,
 *   peakcache_http_config, peakcache_lookup_result, peakcache_wait_result, peakcache_stats,
 *   peakcache_region_info, peakcache_http_decision, peakcache_http_answer) only ever gain fields
 *   at their end, and travel with their size: each function taking one is exported as
 *   <name>_sized(..., size_t size), the size last, and this header defines <name>(...) as a
 *   macro adding the sizeof the host was compiled with. The library reads only the fields the host's struct has (the
 *   others take their defaults) and writes only as many bytes as it has, so a host built against
 *   an older header keeps working with a newer library. A struct smaller than the first layout,
 *   or a newer host's struct with fields this library does not know set, is
 *   PEAKCACHE_ERR_INVALID. The borrowed views (peakcache_bytes, peakcache_http_header,
 *   peakcache_http_request, peakcache_http_response_head) are frozen. PEAKCACHE_ABI_VERSION
 *   changes when anything else changes: check it against peakcache_abi_version() at start-up.
 *
 * Lifecycle: peakcache_lookup answers FRESH (serve entry), STALE (serve entry; if refresh is
 * non-NULL refresh it in the background), MISS (fetch, then complete fill), WAIT (resolve waiter:
 * HIT, FILL, PASS, FAILED or TIMED_OUT) or PASS (fetch, do not store).
 *
 * Backends: peakcache_config.backend puts the entries in this process (PEAKCACHE_BACKEND_LOCAL)
 * or in a shared memory region (PEAKCACHE_BACKEND_SHARED: a file such as /dev/shm/peakcache-NAME
 * opened by every process, or an anonymous mapping made before fork), with the same lifecycle and
 * single flight across processes. Every function works on both.
 *
 * HTTP (peakcache_http_*): the caching rules of RFC 9111, 5861, 9213 and 9211 for hosts holding
 * requests and responses as header arrays; the host makes no caching decision of its own.
 * peakcache_http_key gives the key (or NOT_CACHEABLE: forward untouched); on a hit
 * peakcache_http_serve gives the status and headers to send (a 304, or the stored response with
 * Age and Cache-Status); on a miss peakcache_http_on_response decides, and a storable decision
 * gives the windows, the tags and the response to commit (prepared headers and the entry
 * metadata, which travels in the entry's metadata blob); peakcache_http_revalidate merges a 304.
 *
 * Link the static library (libpeakcache.a) with -lpthread -ldl -lm, and in a shared object
 * (an nginx module) with -Wl,--exclude-libs,ALL so Rust's symbols are not re-exported.
 */

#ifndef PEAKCACHE_H
#define PEAKCACHE_H

/* Generated by cbindgen from crates/peakcache-ffi; do not edit. Regenerate: crates/peakcache-ffi/gen-header.sh */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * The version of the C ABI (`PEAKCACHE_ABI_VERSION`): changes whenever a change is more than
 * appending fields to the sized structs or adding functions. Compare it with
 * `peakcache_abi_version()` at start-up.
 */
#define PEAKCACHE_ABI_VERSION 1

/**
 * What each entry costs against the capacity beyond its key, status, flags, headers and body
 * (the cache's node and the value's allocation). An entry's weight is
 * `key_len + 2 + 4 + sum(name_len + value_len + PEAKCACHE_HEADER_OVERHEAD) + body_len + meta_len
 * + PEAKCACHE_ENTRY_OVERHEAD`.
 */
#define PEAKCACHE_ENTRY_OVERHEAD 192

/**
 * A `swr_ms` or `sie_ms` argument of a commit meaning "the cache's default"
 * (`peakcache_config.default_swr_ms` / `default_sie_ms`).
 */
#define PEAKCACHE_WINDOW_DEFAULT UINT64_MAX

/**
 * `peakcache_config.shm_owner_uid` / `shm_owner_gid`: the effective id of the process calling
 * `peakcache_cache_new`.
 */
#define PEAKCACHE_SHM_EFFECTIVE_ID UINT32_MAX

/**
 * `peakcache_config.backend`: the entries live in this process's memory (the default).
 */
#define PEAKCACHE_BACKEND_LOCAL 0

/**
 * `peakcache_config.backend`: the entries live in a shared memory region, one cache for every
 * process attached to it.
 */
#define PEAKCACHE_BACKEND_SHARED 1

/**
 * `peakcache_region_info.opened`: not a shared cache.
 */
#define PEAKCACHE_REGION_NONE 0

/**
 * `peakcache_region_info.opened`: an anonymous shared mapping, made by this process.
 */
#define PEAKCACHE_REGION_ANONYMOUS 1

/**
 * `peakcache_region_info.opened`: the region file did not exist (or was empty) and was created.
 */
#define PEAKCACHE_REGION_CREATED 2

/**
 * `peakcache_region_info.opened`: the region file held a matching region; its entries are kept.
 */
#define PEAKCACHE_REGION_ATTACHED 3

/**
 * `peakcache_region_info.opened`: the region file held an unusable or differently configured
 * region, replaced by a new, empty one (see `shm_recreate_on_mismatch`).
 */
#define PEAKCACHE_REGION_RECREATED 4

/**
 * Log level: something failed inside the library (a caught panic).
 */
#define PEAKCACHE_LOG_ERROR 1

/**
 * Log level: something the operator should know (a value too large to store).
 */
#define PEAKCACHE_LOG_WARN 2

/**
 * Log level: a notable event (a cache created).
 */
#define PEAKCACHE_LOG_INFO 3

/**
 * Log level: detail for debugging.
 */
#define PEAKCACHE_LOG_DEBUG 4

/**
 * What each header costs against the capacity beyond its name and value bytes (its index slot).
 */
#define PEAKCACHE_HEADER_OVERHEAD 16

/**
 * The major version of the header (`PEAKCACHE_VERSION_MAJOR`). Compare with `peakcache_version()`
 * at start-up to catch a host built against another header than the library it loaded.
 */
#define PEAKCACHE_VERSION_MAJOR 0

/**
 * The minor version of the header.
 */
#define PEAKCACHE_VERSION_MINOR 2

/**
 * The patch version of the header.
 */
#define PEAKCACHE_VERSION_PATCH 0

/**
 * What a call did. `PEAKCACHE_OK` is 0; every other code is stable and new codes are only ever
 * appended. In C the type is a `uint32_t`; `peakcache_result_str` names any code.
 */
enum peakcache_result
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
    /**
     * Success. Out-parameters have been written.
     */
    PEAKCACHE_OK = 0,
    /**
     * Not resolved yet (only `peakcache_waiter_poll`): the waiter is still yours; poll again
     * later. Not an error.
     */
    PEAKCACHE_PENDING = 1,
    /**
     * A required pointer argument was NULL, or a handle passed by address (`T **`) was NULL
     * (for instance because an earlier call consumed it).
     */
    PEAKCACHE_ERR_NULL = 2,
    /**
     * An argument was out of its domain: a NULL byte pointer with a nonzero length, a
     * capacity of 0, a header larger than 4 GiB.
     */
    PEAKCACHE_ERR_INVALID = 3,
    /**
     * The library panicked (a bug in peakcache). Nothing crossed the boundary; the message is
     * kept for `peakcache_last_error`. Handles passed by address were consumed.
     */
    PEAKCACHE_ERR_PANIC = 4,
    /**
     * The value weighs more than the largest object the cache stores, so it was not stored.
     * Waiters of the fill still received it; serve the response you have. (Shared backend:
     * waiters are released with `PEAKCACHE_WAIT_PASS` instead, and this is also the answer when
     * no room could be made in the region.)
     */
    PEAKCACHE_ERR_TOO_LARGE = 5,
    /**
     * An index was past the end (a header number not below `peakcache_entry_header_count`).
     */
    PEAKCACHE_ERR_OUT_OF_RANGE = 6,
    /**
     * The request has no cache key (a method other than GET and HEAD, no host, a scheme other
     * than http and https): forward it untouched and store nothing. The reason is in
     * `peakcache_last_error`.
     */
    PEAKCACHE_ERR_NOT_CACHEABLE = 7,
    /**
     * Bytes that are not valid HTTP: a method, target, header name or value, or status code
     * the HTTP family cannot read (in the arguments, or in a stored entry). Treat the request
     * as not cacheable; `peakcache_last_error` names the culprit.
     */
    PEAKCACHE_ERR_MALFORMED = 8,
    /**
     * A 304's validator does not match the stored response (RFC 9111 §4.3.4): the entry was not
     * updated; fetch the resource again without conditions.
     */
    PEAKCACHE_ERR_VALIDATOR_MISMATCH = 9,
    /**
     * A system call failed on a file of the shared backend (creating or opening the region
     * file, writing or reading a snapshot): `peakcache_last_error` names the file and the
     * system's reason.
     */
    PEAKCACHE_ERR_IO = 10,
    /**
     * A region file or snapshot that cannot be used: another layout version, a region
     * configured otherwise (with `shm_recreate_on_mismatch` false), a damaged or truncated
     * header, not a peakcache file. `peakcache_last_error` says which.
     */
    PEAKCACHE_ERR_REGION = 11,
    /**
     * A value read from the shared region is not a valid encoded response (written by another
     * version or another program): nothing was handed out, any ticket that came with it was
     * abandoned, and the key was purged so the next lookup fetches it again.
     */
    PEAKCACHE_ERR_CORRUPT = 12,
    /**
     * The function needs the other backend (`peakcache_cache_snapshot` and
     * `peakcache_cache_restore` need `PEAKCACHE_BACKEND_SHARED`).
     */
    PEAKCACHE_ERR_UNSUPPORTED = 13,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum peakcache_result peakcache_result;
#else
typedef uint32_t peakcache_result;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/**
 * What `peakcache_http_serve` answered.
 */
enum peakcache_http_answer_kind
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
    /**
     * Send the stored response: `status`, `headers`, and the entry's body (none for HEAD).
     */
    PEAKCACHE_HTTP_SEND_STORED = 1,
    /**
     * The client's copy is current: send `304` with `headers`, no body.
     */
    PEAKCACHE_HTTP_SEND_NOT_MODIFIED = 2,
    /**
     * The request has preconditions the cache does not evaluate (`If-Match`,
     * `If-Unmodified-Since`), or request directives the policy honours
     * (`peakcache_http_config.honour_request_directives`) rule the stored response out: forward
     * this request alone (store nothing, leave the entry as it is). `headers` is NULL.
     */
    PEAKCACHE_HTTP_FORWARD = 3,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum peakcache_http_answer_kind peakcache_http_answer_kind;
#else
typedef uint32_t peakcache_http_answer_kind;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/**
 * Whose doing a `peakcache_http_dont_store` reason is (`peakcache_http_dont_store_cause`).
 */
enum peakcache_http_cause
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
    /**
     * The response's own directives or status: the host may end the fill or refresh with
     * `peakcache_fill_uncacheable` / `peakcache_refresh_uncacheable` (hit-for-pass).
     */
    PEAKCACHE_HTTP_CAUSE_RESPONSE = 0,
    /**
     * Something in one visitor's request: serve that request from the origin and give the
     * ticket back untouched (`peakcache_fill_abandon`, `peakcache_refresh_abandon`), so no
     * visitor can switch a key off for everyone.
     */
    PEAKCACHE_HTTP_CAUSE_REQUEST = 1,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum peakcache_http_cause peakcache_http_cause;
#else
typedef uint32_t peakcache_http_cause;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/**
 * Why a response is not stored (`peakcache_http_decision.reason`); `PEAKCACHE_HTTP_STORE`
 * when it is. `peakcache_http_dont_store_str` describes each. Values are only ever appended.
 */
enum peakcache_http_dont_store
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
    /**
     * Storable: `store` holds the decision.
     */
    PEAKCACHE_HTTP_STORE = 0,
    /**
     * The request method is not GET (RFC 9111 §3).
     */
    PEAKCACHE_HTTP_DONT_STORE_METHOD = 1,
    /**
     * The request was a HEAD: its response has no content to serve a later GET.
     */
    PEAKCACHE_HTTP_DONT_STORE_HEAD_REQUEST = 2,
    /**
     * The status is not final (1xx).
     */
    PEAKCACHE_HTTP_DONT_STORE_STATUS_NOT_FINAL = 3,
    /**
     * A 304 updates a stored response (`peakcache_http_revalidate`); it is not stored itself.
     */
    PEAKCACHE_HTTP_DONT_STORE_NOT_MODIFIED = 4,
    /**
     * A status this cache does not understand (206, or unknown with `must-understand`).
     */
    PEAKCACHE_HTTP_DONT_STORE_STATUS_NOT_UNDERSTOOD = 5,
    /**
     * The request has `Cache-Control: no-store`.
     */
    PEAKCACHE_HTTP_DONT_STORE_REQUEST_NO_STORE = 6,
    /**
     * The response has `no-store`.
     */
    PEAKCACHE_HTTP_DONT_STORE_NO_STORE = 7,
    /**
     * The response is `private`.
     */
    PEAKCACHE_HTTP_DONT_STORE_PRIVATE = 8,
    /**
     * The request has `Authorization` and the response does not allow sharing (RFC 9111 §3.5).
     */
    PEAKCACHE_HTTP_DONT_STORE_AUTHORIZATION = 9,
    /**
     * The response sets a cookie (see `peakcache_http_config.set_cookie`).
     */
    PEAKCACHE_HTTP_DONT_STORE_SET_COOKIE = 10,
    /**
     * The response has `Vary: *` or an unreadable `Vary`.
     */
    PEAKCACHE_HTTP_DONT_STORE_VARY_STAR = 11,
    /**
     * No freshness information and a status that is not heuristically cacheable.
     */
    PEAKCACHE_HTTP_DONT_STORE_NO_FRESHNESS = 12,
    /**
     * Stale on arrival, without stale windows or a validator: it could never be used.
     */
    PEAKCACHE_HTTP_DONT_STORE_NOT_REUSABLE = 13,
    /**
     * A reason newer than this header.
     */
    PEAKCACHE_HTTP_DONT_STORE_OTHER = 255,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum peakcache_http_dont_store peakcache_http_dont_store;
#else
typedef uint32_t peakcache_http_dont_store;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/**
 * What a lookup answered.
 */
enum peakcache_lookup_kind
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
    /**
     * A fresh entry (`entry`): serve it.
     */
    PEAKCACHE_LOOKUP_FRESH = 1,
    /**
     * A stale entry (`entry`), servable now. `refresh` is non-NULL for exactly one caller per
     * entry, who should refresh it in the background; NULL for the others.
     */
    PEAKCACHE_LOOKUP_STALE = 2,
    /**
     * Nothing servable: fetch, then complete `fill`. Exactly one fill per key exists at a time.
     */
    PEAKCACHE_LOOKUP_MISS = 3,
    /**
     * Another caller is filling the key: resolve `waiter` (block or poll).
     */
    PEAKCACHE_LOOKUP_WAIT = 4,
    /**
     * The key passes through (uncacheable, or its fill outlived the lock timeout): fetch for
     * yourself, store nothing, wait for nobody.
     */
    PEAKCACHE_LOOKUP_PASS = 5,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum peakcache_lookup_kind peakcache_lookup_kind;
#else
typedef uint32_t peakcache_lookup_kind;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/**
 * How an entry is being served.
 */
enum peakcache_served
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
    /**
     * No entry (an answer that hands out none).
     */
    PEAKCACHE_SERVED_NONE = 0,
    /**
     * Inside its freshness lifetime (or the cache is frozen).
     */
    PEAKCACHE_SERVED_FRESH = 1,
    /**
     * Stale, inside its stale-while-revalidate window.
     */
    PEAKCACHE_SERVED_STALE = 2,
    /**
     * Stale past stale-while-revalidate, served because the origin failed (stale-if-error).
     */
    PEAKCACHE_SERVED_STALE_IF_ERROR = 3,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum peakcache_served peakcache_served;
#else
typedef uint32_t peakcache_served;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/**
 * What a waiter resolved to.
 */
enum peakcache_wait_kind
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
    /**
     * The filler's value, or after a failed fill the stale-if-error entry (`entry`).
     */
    PEAKCACHE_WAIT_HIT = 1,
    /**
     * The filler gave up: this caller fills now (`fill`).
     */
    PEAKCACHE_WAIT_FILL = 2,
    /**
     * The answer is not cacheable: fetch for yourself.
     */
    PEAKCACHE_WAIT_PASS = 3,
    /**
     * The fill failed and nothing stale is left to serve: answer with an error, or fetch.
     */
    PEAKCACHE_WAIT_FAILED = 4,
    /**
     * The fill outlived the lock timeout, or the wait its own timeout: fetch for yourself,
     * uncached.
     */
    PEAKCACHE_WAIT_TIMED_OUT = 5,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum peakcache_wait_kind peakcache_wait_kind;
#else
typedef uint32_t peakcache_wait_kind;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/**
 * How a response reached the client, for `Cache-Status` (RFC 9211). Passed as a `uint32_t`.
 */
enum peakcache_http_outcome
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
    /**
     * A fresh entry: `hit; ttl=N`.
     */
    PEAKCACHE_HTTP_HIT = 1,
    /**
     * A stale entry served while it is refreshed: `hit; ttl=-N; detail=stale-while-revalidate`
     * (`grace-while-revalidate` when only the operator's grace allowed it).
     */
    PEAKCACHE_HTTP_STALE = 2,
    /**
     * A stale entry served because the origin failed: `fwd=stale; fwd-status=S; ttl=-N;
     * detail=stale-if-error` (or `grace-if-error`).
     */
    PEAKCACHE_HTTP_STALE_IF_ERROR = 3,
    /**
     * Nothing stored for the URI; fetched: `fwd=uri-miss; fwd-status=S` (`; stored`).
     */
    PEAKCACHE_HTTP_MISS = 4,
    /**
     * Stored for the URI but not for this variant: `fwd=vary-miss; fwd-status=S` (`; stored`).
     */
    PEAKCACHE_HTTP_VARY_MISS = 5,
    /**
     * The answer of another request's fetch (a waiter's hit): `fwd=miss; fwd-status=S;
     * collapsed`.
     */
    PEAKCACHE_HTTP_COLLAPSED = 6,
    /**
     * A stale entry revalidated (or refetched) before answering: `fwd=stale; fwd-status=S`
     * (`; stored`).
     */
    PEAKCACHE_HTTP_REVALIDATED = 7,
    /**
     * Forwarded without the cache: the key passes through (not cacheable): `fwd=bypass;
     * fwd-status=S`.
     */
    PEAKCACHE_HTTP_PASS = 8,
    /**
     * Forwarded because of the request method: `fwd=method; fwd-status=S`.
     */
    PEAKCACHE_HTTP_METHOD = 9,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum peakcache_http_outcome peakcache_http_outcome;
#else
typedef uint32_t peakcache_http_outcome;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/**
 * What to do with a response that sets a cookie (`peakcache_http_config.set_cookie`).
 */
enum peakcache_http_set_cookie
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
    /**
     * Do not store it (the default): a stored cookie would be handed to every client.
     */
    PEAKCACHE_HTTP_SET_COOKIE_DONT_STORE = 0,
    /**
     * Store it without its `Set-Cookie` fields.
     */
    PEAKCACHE_HTTP_SET_COOKIE_STRIP = 1,
    /**
     * Store it with its cookies, served to everyone.
     */
    PEAKCACHE_HTTP_SET_COOKIE_STORE = 2,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum peakcache_http_set_cookie peakcache_http_set_cookie;
#else
typedef uint32_t peakcache_http_set_cookie;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

/**
 * Bytes the library allocated for the caller (owned by the caller): read them with
 * `peakcache_buf_data`, free them with `peakcache_buf_free`.
 */
typedef struct peakcache_buf peakcache_buf;

/**
 * A cache (shared). Thread-safe: one handle may be used by any number of threads at once.
 * Created by `peakcache_cache_new`, freed by `peakcache_cache_free`. Entries, tickets and
 * waiters stay valid after the cache handle is freed: they keep what they need alive.
 */
typedef struct peakcache_cache peakcache_cache;

/**
 * A counted reference to a stored value (owned by the caller). Handed out by lookups, waiters
 * and `peakcache_fill_fail`; freed by `peakcache_entry_free`. Read-only: its accessors may be
 * called from several threads at once.
 */
typedef struct peakcache_entry peakcache_entry;

/**
 * The right and duty to fetch a missing key (owned by the caller): exactly one exists per key
 * at a time. Complete it with `peakcache_fill_commit`, `_fail` or `_uncacheable`, or give it up
 * with `peakcache_fill_abandon` (also its free function). It may be moved to another thread,
 * and must not be used by two at once.
 */
typedef struct peakcache_fill peakcache_fill;

/**
 * A list of header fields the library built (owned by the caller): read it as an array with
 * `peakcache_http_headers_items`, free it with `peakcache_http_headers_free`. Names are
 * lowercase; fields of one name keep their order.
 */
typedef struct peakcache_http_headers peakcache_http_headers;

/**
 * A list of byte strings the library built (owned by the caller): read it as an array with
 * `peakcache_http_keys_items`, free it with `peakcache_http_keys_free`.
 */
typedef struct peakcache_http_keys peakcache_http_keys;

/**
 * HTTP caching rules for one cache (shared): created by `peakcache_http_policy_new`, freed by
 * `peakcache_http_policy_free`. Immutable and thread-safe: any number of threads may use one
 * policy at once.
 */
typedef struct peakcache_http_policy peakcache_http_policy;

/**
 * A decision to store (owned by the caller): the response to commit
 * (`peakcache_http_store_response`), its tags (`peakcache_http_store_tags`) and its Vary
 * (`peakcache_http_store_vary`). Freed by `peakcache_http_store_free`. Read-only.
 */
typedef struct peakcache_http_store peakcache_http_store;

/**
 * The right to refresh a stale entry in the background (owned by the caller), handed to one
 * caller at a time. Complete it like a fill; `peakcache_refresh_abandon` gives it up (a later
 * lookup gets a new ticket after the cache's refresh retry delay) and is its free function.
 */
typedef struct peakcache_refresh peakcache_refresh;

/**
 * A response being built (owned by the caller). Created by `peakcache_response_new`; consumed
 * by a commit, or freed by `peakcache_response_free`. Not thread-safe: one thread at a time.
 */
typedef struct peakcache_response peakcache_response;

/**
 * A claim on another caller's fill (owned by the caller). Resolve it with
 * `peakcache_waiter_wait` or `peakcache_waiter_poll`, or free it with `peakcache_waiter_free`.
 * It may be moved to another thread, and must not be used by two at once. No waiter waits
 * forever: a fill that outlives the cache's lock timeout releases it (`PEAKCACHE_WAIT_TIMED_OUT`).
 */
typedef struct peakcache_waiter peakcache_waiter;

/**
 * A cache's settings, a plain struct: fill it with `peakcache_config_default`, change what you
 * need, pass it to `peakcache_cache_new` (which copies it). Fields are only ever appended.
 */
typedef struct peakcache_config {
    /**
     * The capacity in bytes of entry weight (see `PEAKCACHE_ENTRY_OVERHEAD`). Default 64 MiB.
     * Must not be 0.
     */
    uint64_t capacity_bytes;
    /**
     * The heaviest entry stored; a heavier commit is answered `PEAKCACHE_ERR_TOO_LARGE`.
     * 0 (default): an eighth of a shard's share of the capacity. Never more than a shard's share.
     */
    uint64_t max_object_bytes;
    /**
     * How long a fill may take before its waiters are released to fetch for themselves
     * (nginx's `proxy_cache_lock_timeout`). Default 5000.
     */
    uint64_t lock_timeout_ms;
    /**
     * The stale-while-revalidate window a commit gets when it passes
     * `PEAKCACHE_WINDOW_DEFAULT`. Default 0.
     */
    uint64_t default_swr_ms;
    /**
     * The stale-if-error window a commit gets when it passes `PEAKCACHE_WINDOW_DEFAULT`.
     * Default 0.
     */
    uint64_t default_sie_ms;
    /**
     * The back-off after the first failed fill or refresh of a key; it doubles while failures
     * repeat. Default 1000.
     */
    uint64_t retry_backoff_min_ms;
    /**
     * The longest back-off. Default 60000. Raised to `retry_backoff_min_ms` if below it.
     */
    uint64_t retry_backoff_max_ms;
    /**
     * How long a refresh ticket abandoned unused blocks the next one. Default 1000.
     */
    uint64_t refresh_retry_ms;
    /**
     * The number of shards, rounded up to a power of two, at most 65536. 0 (default): four per
     * core, fewer for a small capacity. Shared backend: 0 is one shard per MiB of capacity, at
     * most 16.
     */
    uint32_t shards;
    /**
     * Where entries live: `PEAKCACHE_BACKEND_LOCAL` (0, default), this process's memory; or
     * `PEAKCACHE_BACKEND_SHARED`, a shared memory region used by every process attached to it
     * (nginx workers, PHP-FPM workers), with the same lifecycle and single flight across
     * processes. Every function works on both; the differences are documented where they apply
     * (values are copied out of the region on every read; `capacity_bytes` is bytes of the
     * region's heap, records rounded up to 64 bytes, every page reserved when the region is
     * made). Another value: `PEAKCACHE_ERR_INVALID`.
     */
    uint32_t backend;
    /**
     * Shared backend: the region file, `shm_path[0..shm_path_len]` (bytes, no NUL; read only
     * during `peakcache_cache_new`). Under `/dev/shm` (e.g. `/dev/shm/peakcache-NAME`) the
     * region is memory that outlives the processes until reboot; on a disk file system it also
     * outlives a reboot. Every process that opens the same path with the same settings shares
     * one cache: the first creates the file (mode 0600, see `shm_owner_uid`), the others attach,
     * keeping its entries. A file system too small for the region is `PEAKCACHE_ERR_IO` here,
     * naming the bytes needed and available, never a SIGBUS later.
     * NULL (default) with length 0: an anonymous shared mapping instead, shared only with the
     * children this process forks after `peakcache_cache_new` (create it in nginx's master or
     * PHP-FPM's master before the workers are forked; the handle is inherited by them).
     */
    const uint8_t *shm_path;
    /**
     * The length of `shm_path` in bytes. Default 0.
     */
    size_t shm_path_len;
    /**
     * Shared backend: the most entries the region's index must hold (it gets 8/7 of that in
     * slots, 64 bytes each). 0 (default): one per 256 bytes of capacity.
     */
    uint64_t shm_max_entries;
    /**
     * Shared backend with a path: when the file holds a region that cannot be used as
     * configured (another layout version, size, shard count, settings, or a damaged header),
     * `true` (default) replaces it by a new, empty region (logged at `PEAKCACHE_LOG_WARN` with
     * the reason; `peakcache_cache_region_info` says `PEAKCACHE_REGION_RECREATED`), `false` fails
     * with `PEAKCACHE_ERR_REGION` and leaves the file alone. A file refused for its type, owner
     * or permissions (see `shm_owner_uid`) is never replaced, whatever this says.
     */
    bool shm_recreate_on_mismatch;
    /**
     * Shared backend with a path: the user who must own the region file.
     * `PEAKCACHE_SHM_EFFECTIVE_ID` (default): the effective user of the process calling
     * `peakcache_cache_new`. An existing file is refused (`PEAKCACHE_ERR_REGION`, the path, its
     * owner, its mode and the reason in `peakcache_last_error`, the file left alone) when it is
     * not a regular file (a symbolic link is not followed), not owned by this user, or has any
     * permission for other users (or for its group, unless `shm_group_shared`). A new file is
     * made under a temporary name beside the path, mode 0600, given to this user and group
     * (which needs privilege: nginx's master, as root, creating the region for its workers'
     * user), and moved to the path without replacing a file made meanwhile.
     */
    uint32_t shm_owner_uid;
    /**
     * Shared backend with a path: the group of a new region file, and the group allowed to
     * share it with `shm_group_shared`. `PEAKCACHE_SHM_EFFECTIVE_ID` (default): the effective
     * group.
     */
    uint32_t shm_owner_gid;
    /**
     * Shared backend with a path: `true` lets `shm_owner_gid` share the region deliberately (a
     * new file gets mode 0660; an existing one may have group permissions if its group is that
     * group). Default `false`: mode 0600, any group or other permission refused. Permissions
     * for other users are always refused.
     */
    bool shm_group_shared;
    /**
     * Shared backend: the longest a call waits for a lock of the region that another process
     * holds (a holder stopped by SIGSTOP or a debugger, or stuck) before going on without the
     * cache: a lookup answers `PEAKCACHE_LOOKUP_PASS`, a get finds nothing, an insert or commit
     * answers `PEAKCACHE_ERR_REGION` (nothing stored; a fill's waiters are released at its lock
     * timeout), a purge `PEAKCACHE_ERR_REGION` (not done); each time is counted and logged at
     * `PEAKCACHE_LOG_WARN` (at most a line a second). 0 (default): `lock_timeout_ms`, at least
     * 10 and at most 1000.
     */
    uint64_t shm_lock_bound_ms;
} peakcache_config;

/**
 * What `peakcache_region_info` reports: the backend, and for a shared cache its region.
 */
typedef struct peakcache_region_info {
    /**
     * `PEAKCACHE_BACKEND_LOCAL` or `PEAKCACHE_BACKEND_SHARED`. Every other field is 0 for a
     * local cache.
     */
    uint32_t backend;
    /**
     * How this handle's region was opened: a `PEAKCACHE_REGION_*` constant.
     */
    uint32_t opened;
    /**
     * Bytes of the whole mapping.
     */
    uint64_t region_bytes;
    /**
     * Bytes of heap (records) over all shards: the capacity.
     */
    uint64_t heap_bytes;
    /**
     * The largest record stored (`peakcache_cache_max_object_bytes`).
     */
    uint64_t max_object_bytes;
    /**
     * Shards checked and rebuilt after a process died holding their lock (or found them damaged).
     */
    uint64_t recoveries;
    /**
     * Fills taken over from a process found dead.
     */
    uint64_t takeovers;
    /**
     * Entries dropped by those checks, or evicted control records.
     */
    uint64_t entries_dropped;
    /**
     * Shards.
     */
    uint32_t shards;
    /**
     * Index slots per shard.
     */
    uint32_t slots_per_shard;
    /**
     * Tag table slots in use.
     */
    uint32_t tags_used;
    /**
     * Tag table slots.
     */
    uint32_t tag_slots;
    /**
     * Times a caller gave up waiting for a shard lock held past `shm_lock_bound_ms` (a stopped
     * or stuck process) and served from the origin instead (added after the first layout).
     */
    uint64_t lock_timeouts;
} peakcache_region_info;

/**
 * What a host counts itself and adds to the history with `peakcache_cache_tick`: the library
 * cannot tell a visitor from a lookup, nor which answers the host turned into errors. Fields
 * are only ever appended.
 */
typedef struct peakcache_host_counts {
    /**
     * Requests from visitors answered since the last tick.
     */
    uint64_t visitor_requests;
    /**
     * Answers with a 5xx status sent to visitors since the last tick.
     */
    uint64_t visitor_errors;
    /**
     * Requests sent to the origin since the last tick (fills, refreshes, probes, passes).
     */
    uint64_t origin_requests;
    /**
     * Origin requests that failed since the last tick (no answer, a timeout or a 5xx).
     */
    uint64_t origin_errors;
} peakcache_host_counts;

/**
 * One header field as two borrowed byte strings (neither NUL-terminated): `name[0..name_len]`
 * and `value[0..value_len]`. A NULL pointer is allowed with a length of 0. Header names are
 * compared case-insensitively; values must not contain CR, LF or NUL.
 */
typedef struct peakcache_http_header {
    /**
     * The name's first byte.
     */
    const uint8_t *name;
    /**
     * The name's length.
     */
    size_t name_len;
    /**
     * The value's first byte.
     */
    const uint8_t *value;
    /**
     * The value's length.
     */
    size_t value_len;
} peakcache_http_header;

/**
 * A borrowed byte string: `len` bytes at `data`. A NULL `data` with `len == 0` is the empty
 * string. Nothing assumes a NUL terminator. Used for arrays of strings (tags); single strings
 * are passed as two arguments, `ptr` and `len`.
 */
typedef struct peakcache_bytes {
    /**
     * The first byte, or NULL when `len` is 0.
     */
    const uint8_t *data;
    /**
     * The number of bytes.
     */
    size_t len;
} peakcache_bytes;

/**
 * The settings of an HTTP policy, a plain struct: fill it with `peakcache_http_config_default`,
 * change what you need, pass it to `peakcache_http_policy_new` (which copies everything it
 * points to). Fields are only ever appended.
 */
typedef struct peakcache_http_config {
    /**
     * The cache's name in `Cache-Status` (UTF-8). Default `peakcache`.
     */
    struct peakcache_bytes cache_name;
    /**
     * The scheme of requests that give none, `http` or `https`. Default `https`.
     */
    struct peakcache_bytes default_scheme;
    /**
     * More query parameter names to leave out of keys and upstream requests (campaign
     * tracking), in addition to the built-in `gclid`, `fbclid`, `msclkid`, `dclid`, `gbraid`,
     * `wbraid`, `mc_cid`, `mc_eid`, `_ga`. Default none (NULL, 0).
     */
    const struct peakcache_bytes *ignored_query_params;
    /**
     * The number of entries at `ignored_query_params`.
     */
    size_t n_ignored_query_params;
    /**
     * More query parameter name prefixes to leave out, in addition to the built-in `utm_`.
     * Default none (NULL, 0).
     */
    const struct peakcache_bytes *ignored_query_prefixes;
    /**
     * The number of entries at `ignored_query_prefixes`.
     */
    size_t n_ignored_query_prefixes;
    /**
     * A `peakcache_http_set_cookie`. Default `PEAKCACHE_HTTP_SET_COOKIE_DONT_STORE`.
     */
    uint32_t set_cookie;
    /**
     * The stale-while-revalidate window given when the origin sends none. Default 0. Never
     * applied where serving stale is forbidden (`no-cache`, `must-revalidate`, `s-maxage`).
     */
    uint64_t default_swr_ms;
    /**
     * The stale-if-error window given when the origin sends none. Default 0.
     */
    uint64_t default_sie_ms;
    /**
     * The operator's grace: each stale window is at least this long, whatever the origin
     * said (reported as grace in `Cache-Status`). Default 0.
     */
    uint64_t grace_swr_ms;
    /**
     * The stale-if-error grace. Default 0.
     */
    uint64_t grace_sie_ms;
    /**
     * Let `stale-while-revalidate` / `stale-if-error` apply alongside `s-maxage` (RFC 9111
     * §5.2.2.10 forbids it; many origins mean it). Default false.
     */
    bool stale_with_s_maxage;
    /**
     * The lifetime given to a storable response that says nothing about its freshness (no
     * `max-age`, `Expires` or `Last-Modified`), like nginx's `proxy_cache_valid`; only for the
     * statuses RFC 9110 §15.1 lets a cache give a heuristic lifetime. Default 0: such a response
     * is stored stale, reusable only by revalidation or inside stale windows.
     */
    uint64_t default_ttl_ms;
    /**
     * Act on a request's own `Cache-Control` / `Pragma` (RFC 9111 §5.2.1) for the visitor who
     * sent them: `no-store` makes `peakcache_http_key` answer `PEAKCACHE_ERR_NOT_CACHEABLE`
     * (forward that request untouched), and `no-cache`, `max-age`, `min-fresh` that rule out
     * the stored response make `peakcache_http_serve` answer `PEAKCACHE_HTTP_FORWARD`. Default
     * false: ignored for shared entries, as Varnish, Fastly and Cloudflare do. Fills and
     * refreshes never carry them either way. Hosts should leave it off while frozen.
     */
    bool honour_request_directives;
} peakcache_http_config;

/**
 * A request as the host holds it: every field borrowed for the duration of the call.
 */
typedef struct peakcache_http_request {
    /**
     * The method (`GET`), case-sensitive.
     */
    struct peakcache_bytes method;
    /**
     * The scheme of the connection (`http`, `https`); empty: the policy's default scheme.
     */
    struct peakcache_bytes scheme;
    /**
     * The authority (`host[:port]`); empty: taken from the `Host` header (or from `path`
     * when that is an absolute URI).
     */
    struct peakcache_bytes authority;
    /**
     * The request target's path and query as received (`/shoes?utm_source=x&page=2`), raw
     * bytes; empty is `/`.
     */
    struct peakcache_bytes path;
    /**
     * The request's header fields, in the order received.
     */
    const struct peakcache_http_header *headers;
    /**
     * The number of records at `headers`.
     */
    size_t nheaders;
} peakcache_http_request;

/**
 * A response's status line and header fields as the host holds them, borrowed for the
 * duration of the call.
 */
typedef struct peakcache_http_response_head {
    /**
     * The status code (100 to 999).
     */
    uint16_t status;
    /**
     * The response's header fields, in the order received.
     */
    const struct peakcache_http_header *headers;
    /**
     * The number of records at `headers`.
     */
    size_t nheaders;
} peakcache_http_response_head;

/**
 * The answer of `peakcache_http_serve`. Its handle is owned by the caller.
 */
typedef struct peakcache_http_answer {
    /**
     * What to send.
     */
    peakcache_http_answer_kind kind;
    /**
     * The status to send (the stored status, or 304); 0 for FORWARD.
     */
    uint16_t status;
    /**
     * The header fields to send, complete: the stored ones without this cache's own
     * (`CDN-Cache-Control`, `Surrogate-Control`, `Surrogate-Key`), with `Age` and
     * `Cache-Status` (free with `peakcache_http_headers_free`). NULL for FORWARD.
     */
    struct peakcache_http_headers *headers;
} peakcache_http_answer;

/**
 * What `peakcache_http_on_response` and `peakcache_http_revalidate` decided.
 */
typedef struct peakcache_http_decision {
    /**
     * `PEAKCACHE_HTTP_STORE`, or why not (then every other field is 0 / NULL: forward the
     * response, and complete the fill with `peakcache_fill_uncacheable`).
     */
    peakcache_http_dont_store reason;
    /**
     * Fresh for this long from now (the response time), for the commit's `ttl_ms`: the
     * freshness lifetime minus the response's age.
     */
    uint64_t ttl_ms;
    /**
     * The stale-while-revalidate window, for the commit's `swr_ms` (never
     * `PEAKCACHE_WINDOW_DEFAULT`: the policy's defaults are already in).
     */
    uint64_t swr_ms;
    /**
     * The stale-if-error window, for the commit's `sie_ms`.
     */
    uint64_t sie_ms;
    /**
     * STORE: the rest of the decision (tags, Vary, the response to commit); free it with
     * `peakcache_http_store_free` once committed.
     */
    struct peakcache_http_store *store;
} peakcache_http_decision;

/**
 * A log callback: `userdata` as given to `peakcache_set_log_callback`, a `PEAKCACHE_LOG_*`
 * level, and the message as bytes (`msg[0..len]`, UTF-8, not NUL-terminated, valid only during
 * the call). Called from whichever thread made the call that logs, never with a lock of the
 * cache held, so it may call back into peakcache.
 */
typedef void (*peakcache_log_callback)(void *userdata,
                                       int level,
                                       const uint8_t *msg,
                                       size_t len);

/**
 * The answer of `peakcache_lookup`. Every handle in it is owned by the caller; those the kind
 * does not use are NULL.
 */
typedef struct peakcache_lookup_result {
    /**
     * What to do.
     */
    peakcache_lookup_kind kind;
    /**
     * FRESH, STALE: the entry to serve (free with `peakcache_entry_free`).
     */
    struct peakcache_entry *entry;
    /**
     * STALE: the refresh ticket, or NULL if someone else refreshes (complete it or
     * `peakcache_refresh_abandon` it).
     */
    struct peakcache_refresh *refresh;
    /**
     * MISS: the fill ticket (complete it or `peakcache_fill_abandon` it).
     */
    struct peakcache_fill *fill;
    /**
     * WAIT: the waiter (resolve it or `peakcache_waiter_free` it).
     */
    struct peakcache_waiter *waiter;
    /**
     * FRESH, STALE: how the entry is served (a STALE answer may be
     * `PEAKCACHE_SERVED_STALE_IF_ERROR` while a failing origin backs off); NONE otherwise.
     */
    peakcache_served served;
    /**
     * FRESH, STALE: the stored status code (as `peakcache_entry_status`); 0 otherwise.
     */
    uint16_t status;
    /**
     * FRESH, STALE: the body as a view (as `peakcache_entry_body`), valid until the entry is freed; NULL
     * otherwise.
     */
    const uint8_t *body;
    /**
     * FRESH, STALE: the body's length in bytes; 0 otherwise.
     */
    size_t body_len;
    /**
     * FRESH, STALE: when the value was stored, in the cache clock's milliseconds
     * (`peakcache_cache_now_ms`; its age is `now - stored_at_ms`). 0 otherwise.
     */
    uint64_t stored_at_ms;
    /**
     * FRESH, STALE: when it stops (or stopped) being fresh, in the cache clock's milliseconds.
     */
    uint64_t fresh_until_ms;
    /**
     * FRESH, STALE: when its stale-while-revalidate window ends, same clock.
     */
    uint64_t revalidate_until_ms;
    /**
     * FRESH, STALE: when its stale-if-error window ends, same clock.
     */
    uint64_t error_until_ms;
} peakcache_lookup_result;

/**
 * A snapshot of a cache's counters (every counter of the core's `Stats`) and size. Lookup
 * outcomes (`fresh + stale + stale_if_error + miss + wait + pass`) add up to `lookups`. Fields
 * are only ever appended.
 */
typedef struct peakcache_stats {
    /**
     * Every lookup, counted once: the sum of the six outcomes below.
     */
    uint64_t lookups;
    /**
     * Lookups answered with a fresh entry.
     */
    uint64_t fresh;
    /**
     * Lookups answered with a stale entry inside its stale-while-revalidate window.
     */
    uint64_t stale;
    /**
     * Lookups answered with a stale entry inside its stale-if-error window only.
     */
    uint64_t stale_if_error;
    /**
     * Lookups that found nothing servable and got the fill.
     */
    uint64_t miss;
    /**
     * Lookups that found another caller filling and got a waiter.
     */
    uint64_t wait;
    /**
     * Lookups of a key passing through (uncacheable, or its fill overdue).
     */
    uint64_t pass;
    /**
     * Waiters released without a result: lock timeout or their own timeout.
     */
    uint64_t wait_timeouts;
    /**
     * Fills that stored a value.
     */
    uint64_t fills_committed;
    /**
     * Fills that failed.
     */
    uint64_t fills_failed;
    /**
     * Fills abandoned (a waiter took over).
     */
    uint64_t fills_abandoned;
    /**
     * Fills that found the answer not cacheable.
     */
    uint64_t fills_uncacheable;
    /**
     * Refresh tickets handed out.
     */
    uint64_t refreshes_started;
    /**
     * Refreshes that stored a new value.
     */
    uint64_t refreshes_committed;
    /**
     * Refreshes that failed.
     */
    uint64_t refreshes_failed;
    /**
     * Refresh tickets abandoned.
     */
    uint64_t refreshes_abandoned;
    /**
     * Refreshes that found the answer not cacheable (the key passes through for a while).
     */
    uint64_t refreshes_uncacheable;
    /**
     * Values stored outside the lookup lifecycle.
     */
    uint64_t inserts;
    /**
     * Values refused as heavier than the object limit.
     */
    uint64_t rejected_too_large;
    /**
     * Live entries evicted to make room.
     */
    uint64_t evictions;
    /**
     * Dead entries (past every window) removed.
     */
    uint64_t expirations;
    /**
     * Keys purged (hard or soft).
     */
    uint64_t purges;
    /**
     * Tags purged (hard or soft).
     */
    uint64_t tag_purges;
    /**
     * Entries stored now.
     */
    uint64_t entries;
    /**
     * Weight of the entries stored now, in bytes (see `PEAKCACHE_ENTRY_OVERHEAD`).
     */
    uint64_t weight;
    /**
     * The capacity, in bytes of weight.
     */
    uint64_t capacity;
    /**
     * Purge records kept (one per recently purged tag; bounded: see the core's
     * `Builder::max_tag_marks`; for the shared backend, the region's tag slots in use). Added
     * after the first layout.
     */
    uint64_t tag_marks;
    /**
     * Times the oldest half of the purge records was folded into one cache-wide record.
     */
    uint64_t tag_folds;
} peakcache_stats;

/**
 * The final answer of a waiter. Its handles are owned by the caller; those the kind does not
 * use are NULL.
 */
typedef struct peakcache_wait_result {
    /**
     * What it resolved to.
     */
    peakcache_wait_kind kind;
    /**
     * HIT: the entry to serve (free with `peakcache_entry_free`).
     */
    struct peakcache_entry *entry;
    /**
     * FILL: the fill ticket (complete it or `peakcache_fill_abandon` it).
     */
    struct peakcache_fill *fill;
    /**
     * HIT: how the entry is served (`PEAKCACHE_SERVED_STALE_IF_ERROR` after a failed
     * fill); NONE otherwise.
     */
    peakcache_served served;
    /**
     * HIT: the stored status code (as `peakcache_entry_status`); 0 otherwise.
     */
    uint16_t status;
    /**
     * HIT: the body as a view (as `peakcache_entry_body`), valid until the entry is freed; NULL
     * otherwise.
     */
    const uint8_t *body;
    /**
     * HIT: the body's length in bytes; 0 otherwise.
     */
    size_t body_len;
    /**
     * HIT: when the value was stored, in the cache clock's milliseconds
     * (`peakcache_cache_now_ms`; its age is `now - stored_at_ms`). 0 otherwise.
     */
    uint64_t stored_at_ms;
    /**
     * HIT: when it stops (or stopped) being fresh, in the cache clock's milliseconds.
     */
    uint64_t fresh_until_ms;
    /**
     * HIT: when its stale-while-revalidate window ends, same clock.
     */
    uint64_t revalidate_until_ms;
    /**
     * HIT: when its stale-if-error window ends, same clock.
     */
    uint64_t error_until_ms;
} peakcache_wait_result;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * The ABI version of the loaded library (`PEAKCACHE_ABI_VERSION` of the header it was built
 * with). A host that finds another value than its own header's must not use the library.
 */
uint32_t peakcache_abi_version(void);

/**
 * Writes the default settings into `*cfg`.
 *
 * Exported as `peakcache_config_default_sized` with the size of `*cfg` last; the header's
 * `peakcache_config_default` macro passes `sizeof(peakcache_config)` (see the header's "Sizes"
 * convention).
 *
 * # Safety
 * `cfg` must be NULL or point to `cfg_size` writable bytes.
 */
peakcache_result peakcache_config_default_sized(struct peakcache_config *cfg,
                                                size_t cfg_size);

/**
 * Creates a cache with the settings in `*cfg` (NULL: every default) in `*out`.
 * `PEAKCACHE_ERR_INVALID` for a capacity of 0 or more than 65536 shards.
 *
 * Exported as `peakcache_cache_new_sized` with the size of `*cfg` last; the header's
 * `peakcache_cache_new` macro passes `sizeof(peakcache_config)`: fields a host built against an
 * older header does not have take their defaults.
 *
 * # Safety
 * `cfg` must be NULL or point to `cfg_size` readable bytes of a `peakcache_config`; `out` must
 * be NULL or writable.
 */
peakcache_result peakcache_cache_new_sized(const struct peakcache_config *cfg,
                                           struct peakcache_cache **out,
                                           size_t cfg_size);

/**
 * Frees a cache handle. NULL is a no-op. Entries, tickets and waiters still held stay valid;
 * the memory is released when the last of them is freed. Must not race with other calls on the
 * same handle.
 *
 * # Safety
 * `cache` must be NULL or a live cache handle, not used afterwards.
 */
void peakcache_cache_free(struct peakcache_cache *cache);

/**
 * Purges `key`. Hard (`soft == false`): removed at once. Soft: made stale now, so it is still
 * served inside its stale windows (counted from now) while one caller refreshes it. A fill of
 * the key in flight stores its value already stale. `*found` (if `found` is not NULL) tells
 * whether an entry or a fill of the key existed. Shared backend: `PEAKCACHE_ERR_REGION` (the
 * reason in `peakcache_last_error`) if the purge could not be done, its shard's lock held by a
 * stopped or stuck process past `shm_lock_bound_ms`.
 *
 * # Safety
 * `cache` must be NULL or live; `key` NULL or `key_len` readable bytes; `found` NULL or
 * writable.
 */
peakcache_result peakcache_purge(const struct peakcache_cache *cache,
                                 const uint8_t *key,
                                 size_t key_len,
                                 bool soft,
                                 bool *found);

/**
 * Purges every entry tagged `tag` (hard or soft, as `peakcache_purge`). Constant time however
 * many entries carry the tag: they are checked when next looked up.
 *
 * # Safety
 * `cache` must be NULL or live; `tag` NULL or `tag_len` readable bytes.
 */
peakcache_result peakcache_purge_tag(const struct peakcache_cache *cache,
                                     const uint8_t *tag,
                                     size_t tag_len,
                                     bool soft);

/**
 * Freezes (`true`) or thaws the cache. While frozen, whatever is stored is served as fresh and
 * only misses reach the origin.
 *
 * # Safety
 * `cache` must be NULL or live.
 */
peakcache_result peakcache_freeze(const struct peakcache_cache *cache,
                                  bool frozen);

/**
 * Whether the cache is frozen (false for NULL).
 *
 * # Safety
 * `cache` must be NULL or live.
 */
bool peakcache_is_frozen(const struct peakcache_cache *cache);

/**
 * Removes every entry. Fills in flight go on and store their values already stale. Entries
 * held by callers stay valid.
 *
 * # Safety
 * `cache` must be NULL or live.
 */
peakcache_result peakcache_clear(const struct peakcache_cache *cache);

/**
 * The cache clock's time in milliseconds (monotonic, from the cache's creation; shared backend:
 * the region's time, the same in every process attached to it): the time base
 * of the times a lookup or a waiter reports (`stored_at_ms`, `fresh_until_ms`, ...), so an
 * entry's age is `peakcache_cache_now_ms(cache) - stored_at_ms`. 0 for NULL.
 *
 * # Safety
 * `cache` must be NULL or live.
 */
uint64_t peakcache_cache_now_ms(const struct peakcache_cache *cache);

/**
 * The heaviest entry the cache stores, in bytes of weight (see `PEAKCACHE_ENTRY_OVERHEAD`);
 * 0 for NULL. Shared backend: in bytes of record, `80 + 8 x tags + key + encoded value`, the
 * encoded value being the body, headers and metadata plus 5 bytes and 2 per header (about). A body filter can stop buffering a body that cannot be stored.
 *
 * # Safety
 * `cache` must be NULL or live.
 */
uint64_t peakcache_cache_max_object_bytes(const struct peakcache_cache *cache);

/**
 * Writes every servable entry of a shared cache to the file `path[0..path_len]`, shard by
 * shard under each shard's lock (each shard a consistent cut while the cache keeps serving),
 * into a temporary file renamed over `path` once complete and synced. `*entries` (if not NULL)
 * receives the number of entries written. `PEAKCACHE_ERR_UNSUPPORTED` on the local backend;
 * `PEAKCACHE_ERR_IO` if the file cannot be written (the reason in `peakcache_last_error`).
 *
 * # Safety
 * `cache` must be NULL or live; `path` NULL or `path_len` readable bytes; `entries` NULL or
 * writable.
 */
peakcache_result peakcache_cache_snapshot(const struct peakcache_cache *cache,
                                          const uint8_t *path,
                                          size_t path_len,
                                          uint64_t *entries);

/**
 * Loads a snapshot written by `peakcache_cache_snapshot` (by this region or another, of any
 * geometry) into a shared cache: the file is checked (magic, version, lengths, a checksum per
 * entry); entries keep their age (the time since the snapshot included); those that fail a
 * check, are dead by now or find no room are skipped. `*restored` and `*skipped` (each if not
 * NULL) receive the counts. `PEAKCACHE_ERR_UNSUPPORTED` on the local backend; `PEAKCACHE_ERR_IO`
 * if the file cannot be read; `PEAKCACHE_ERR_REGION` if it is not a snapshot this build reads.
 *
 * # Safety
 * `cache` must be NULL or live; `path` NULL or `path_len` readable bytes; `restored` and
 * `skipped` NULL or writable.
 */
peakcache_result peakcache_cache_restore(const struct peakcache_cache *cache,
                                         const uint8_t *path,
                                         size_t path_len,
                                         uint64_t *restored,
                                         uint64_t *skipped);

/**
 * Writes the cache's backend and, for a shared cache, its region's geometry and recovery
 * counters (global across processes) into `*out`.
 *
 * # Safety
 * `cache` must be NULL or live; `out` NULL or writable.
 *
 * Exported as `peakcache_cache_region_info_sized` with the size of `*out` last; the header's `peakcache_cache_region_info` macro passes
 * `sizeof(peakcache_region_info)` (see the header's "Sizes" convention).
 */
peakcache_result peakcache_cache_region_info_sized(const struct peakcache_cache *cache,
                                                   struct peakcache_region_info *out,
                                                   size_t out_size);

/**
 * A number naming the stored value `entry` is a reference to, for a host that memoizes what
 * it derives from an entry (an nginx worker's prepared response headers): nonzero, the same
 * for every handle of one stored value, and another for another value; 0 for NULL. Compare
 * ids for equality only (not a key, not a counter).
 *
 * Local backend: the value's address. Handles of one value share it; an address is reused
 * only after every handle of the value was freed, so a memo that keeps a handle keeps its id
 * unique.
 *
 * Shared backend: each read copies the value out of the region, so handles of one value are
 * different pointers; the id is derived from the read: the key, the record's store time, the
 * flags, status, headers and metadata, the body's length and its first and last 64 bytes
 * (bounded work whatever the size). The same in every process attached to the region; another
 * once the value is replaced, except for a replacement stored within the same tick of the
 * region's clock (a few milliseconds) that matches in all of those (a value of the HTTP family
 * carries its response time in its metadata, so it always differs). Handles from
 * `peakcache_get` (which does not read the store time) leave the store time out: consistent
 * among themselves, not equal to a lookup's id of the same value.
 *
 * # Safety
 * `entry` must be NULL or a live entry.
 */
uint64_t peakcache_entry_id(const struct peakcache_entry *entry);

/**
 * The stored status code (0 for NULL).
 *
 * # Safety
 * `entry` must be NULL or a live entry.
 */
uint16_t peakcache_entry_status(const struct peakcache_entry *entry);

/**
 * The stored flags word (0 for NULL).
 *
 * # Safety
 * `entry` must be NULL or a live entry.
 */
uint32_t peakcache_entry_flags(const struct peakcache_entry *entry);

/**
 * The body as a view: `*ptr` and `*len`, valid until `peakcache_entry_free(entry)`. For an
 * empty body `*len` is 0 and `*ptr` is a non-NULL pointer not to be read.
 *
 * # Safety
 * `entry` must be NULL or a live entry; `ptr` and `len` NULL or writable.
 */
peakcache_result peakcache_entry_body(const struct peakcache_entry *entry,
                                      const uint8_t **ptr,
                                      size_t *len);

/**
 * The number of stored headers (0 for NULL).
 *
 * # Safety
 * `entry` must be NULL or a live entry.
 */
size_t peakcache_entry_header_count(const struct peakcache_entry *entry);

/**
 * Header number `i` (in the order added) as two views, name and value, valid until
 * `peakcache_entry_free(entry)`. `PEAKCACHE_ERR_OUT_OF_RANGE` when `i` is not below
 * `peakcache_entry_header_count`.
 *
 * # Safety
 * `entry` must be NULL or a live entry; the four out-pointers NULL or writable.
 */
peakcache_result peakcache_entry_header(const struct peakcache_entry *entry,
                                        size_t i,
                                        const uint8_t **name,
                                        size_t *name_len,
                                        const uint8_t **value,
                                        size_t *value_len);

/**
 * The metadata stored with the value (`peakcache_response_set_meta`) as a view: `*ptr` and
 * `*len`, valid until `peakcache_entry_free(entry)`. Empty (`*len` 0, `*ptr` not to be read) when
 * none was set.
 *
 * # Safety
 * `entry` must be NULL or a live entry; `ptr` and `len` NULL or writable.
 */
peakcache_result peakcache_entry_meta(const struct peakcache_entry *entry,
                                      const uint8_t **ptr,
                                      size_t *len);

/**
 * A second reference to the same value in `*out` (no copy of the bytes), freed on its own by
 * `peakcache_entry_free`. (It may be the same pointer: each reference is freed once.)
 *
 * # Safety
 * `entry` must be NULL or a live entry; `out` NULL or writable.
 */
peakcache_result peakcache_entry_clone(const struct peakcache_entry *entry,
                                       struct peakcache_entry **out);

/**
 * Releases an entry reference; its views become invalid. NULL is a no-op.
 *
 * # Safety
 * `entry` must be NULL or a live entry, not used afterwards.
 */
void peakcache_entry_free(struct peakcache_entry *entry);

/**
 * Adds the host's counts since its last call (`counts`, or nothing for NULL) to the cache's
 * totals and, unless some process sampled this second already, samples the counters into the
 * history (1,024 seconds). Call it once a second from each process (nginx: a timer in every
 * worker; PHP: each request; a thread elsewhere); the hit path is not involved. `*sampled`
 * (if not NULL) tells whether this call wrote the second's sample. Shared backend: the
 * history and the totals are the region's, shared by every process attached.
 *
 * Exported as `peakcache_cache_tick_sized` with the size of `*counts` last; the header's
 * `peakcache_cache_tick` macro passes `sizeof(peakcache_host_counts)` (see "Sizes").
 *
 * # Safety
 * `cache` must be NULL or live; `counts` NULL or `counts_size` readable bytes; `sampled` NULL
 * or writable.
 */
peakcache_result peakcache_cache_tick_sized(const struct peakcache_cache *cache,
                                            const struct peakcache_host_counts *counts,
                                            bool *sampled,
                                            size_t counts_size);

/**
 * The status document, in `*out`: the counters of `peakcache_stats_json`, then `"frozen"`,
 * `"host"` (the hosts' totals), `"now"` (Unix seconds) and `"history"`, the last
 * `history_seconds` (at most 1,023; 0: none) as arrays oldest first: `"t"`, `"dt"`, then per
 * second the increase of each counter and the value of each gauge (see the README's "Status
 * JSON"). One shape for every host.
 *
 * # Safety
 * `cache` must be NULL or live; `out` NULL or writable.
 */
peakcache_result peakcache_status_json(const struct peakcache_cache *cache,
                                       uint64_t history_seconds,
                                       struct peakcache_buf **out);

/**
 * The live status page (one self-contained HTML document, UTF-8) as a static view: `*ptr`
 * and `*len` stay valid for the life of the process. Serve it as `text/html; charset=utf-8`
 * at a URL whose `?history=N` answers `peakcache_status_json`: the page polls its own URL
 * with `?format=json&history=…` every second.
 *
 * # Safety
 * `ptr` and `len` NULL or writable.
 */
peakcache_result peakcache_status_page(const uint8_t **ptr,
                                       size_t *len);

/**
 * Whether a periodic task (a snapshot every `interval_ms`) is due, in `*due`: true for one
 * caller per interval across every process attached to a shared cache (a compare-and-swap in
 * the region, no lock), for the first to ask once the interval has passed since the last
 * claim. Counted in whole seconds; 0 is never due.
 *
 * # Safety
 * `cache` must be NULL or live; `due` NULL or writable.
 */
peakcache_result peakcache_cache_claim_every(const struct peakcache_cache *cache,
                                             uint64_t interval_ms,
                                             bool *due);

/**
 * The list as an array: `*items` (`*n` records), valid until `peakcache_http_headers_free`.
 * For an empty list `*n` is 0 and `*items` is not to be read.
 *
 * # Safety
 * `headers` must be NULL or live; `items` and `n` NULL or writable.
 */
peakcache_result peakcache_http_headers_items(const struct peakcache_http_headers *headers,
                                              const struct peakcache_http_header **items,
                                              size_t *n);

/**
 * Frees a header list. NULL is a no-op.
 *
 * # Safety
 * `headers` must be NULL or live, not used afterwards.
 */
void peakcache_http_headers_free(struct peakcache_http_headers *headers);

/**
 * Writes the default HTTP settings into `*cfg` (its strings point to static text).
 *
 * Exported as `peakcache_http_config_default_sized` with the size of `*cfg` last; the
 * header's `peakcache_http_config_default` macro passes `sizeof(peakcache_http_config)`.
 *
 * # Safety
 * `cfg` must be NULL or point to `cfg_size` writable bytes.
 */
peakcache_result peakcache_http_config_default_sized(struct peakcache_http_config *cfg,
                                                     size_t cfg_size);

/**
 * Creates an HTTP policy with the settings in `*cfg` (NULL: every default) in `*out`. Copies
 * what `cfg` points to. `PEAKCACHE_ERR_INVALID` for text that is not UTF-8, a scheme other than
 * http or https, an empty query parameter or prefix, or an unknown `set_cookie`.
 *
 * Exported as `peakcache_http_policy_new_sized` with the size of `*cfg` last; the header's
 * `peakcache_http_policy_new` macro passes `sizeof(peakcache_http_config)`.
 *
 * # Safety
 * `cfg` must be NULL or point to `cfg_size` readable bytes of a `peakcache_http_config` whose
 * pointers are NULL (with a length or count of 0) or point to what their lengths and counts
 * say; `out` NULL or writable.
 */
peakcache_result peakcache_http_policy_new_sized(const struct peakcache_http_config *cfg,
                                                 struct peakcache_http_policy **out,
                                                 size_t cfg_size);

/**
 * Frees a policy. NULL is a no-op. Must not race with other calls using it.
 *
 * # Safety
 * `policy` must be NULL or live, not used afterwards.
 */
void peakcache_http_policy_free(struct peakcache_http_policy *policy);

/**
 * Whether a response header named `name[0..len]` may be sent to clients: false for the
 * fields meant for this cache alone (`Surrogate-Control`, `Surrogate-Key`), which a host
 * forwarding an upstream response must remove; `CDN-Cache-Control` goes on to clients, for
 * CDNs in front (RFC 9213 §3). (Serving from an
 * entry, `peakcache_http_serve` removes them itself.) Names compare case-insensitively; true
 * for a NULL policy or an invalid name.
 *
 * # Safety
 * `policy` must be NULL or live; `name` NULL or `len` readable bytes.
 */
bool peakcache_http_forward_field(const struct peakcache_http_policy *policy,
                                  const uint8_t *name,
                                  size_t len);

/**
 * The primary cache key of a request in `*out`: `GET <scheme>://<host><path>?<query>`, the
 * method class first (GET and HEAD share one), the host lowercased, campaign parameters
 * removed. `PEAKCACHE_ERR_NOT_CACHEABLE` (reason in `peakcache_last_error`) when the request
 * has no key: forward it untouched. `PEAKCACHE_ERR_MALFORMED` for bytes that are not HTTP.
 *
 * # Safety
 * `policy` must be NULL or live; `request` NULL or a request as its fields document; `out`
 * NULL or writable.
 */
peakcache_result peakcache_http_key(const struct peakcache_http_policy *policy,
                                    const struct peakcache_http_request *request,
                                    struct peakcache_buf **out);

/**
 * The key of the variant of a request selected by a stored `Vary` value
 * (`vary[0..vary_len]`, as `peakcache_http_store_vary` gives it), in `*out`: the primary key,
 * a NUL byte, then the request's values of the listed fields, normalised (`Accept-Encoding`
 * reduced to the one coding this cache serves). Use it only with a non-empty `Vary`: a response
 * without one is stored under the primary key. `PEAKCACHE_ERR_INVALID` for `Vary: *` or a
 * value that is not a list of field names.
 *
 * # Safety
 * As `peakcache_http_key`; `vary` NULL or `vary_len` readable bytes.
 */
peakcache_result peakcache_http_variant_key(const struct peakcache_http_policy *policy,
                                            const struct peakcache_http_request *request,
                                            const uint8_t *vary,
                                            size_t vary_len,
                                            struct peakcache_buf **out);

/**
 * What a fill or refresh sends upstream, defined once for every host, so the origin sees
 * nothing of one visitor that the key leaves out: `*path` receives the path and query without
 * the ignored (campaign) parameters; `*headers` the request's fields without the hop-by-hop
 * ones and those the visitor's `Connection` names (never `Host`), without the unkeyed ones
 * (`X-Forwarded-Host`, ...), and without `Range`, `If-Range`, `If-Match`,
 * `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since` (answer the client's with
 * `peakcache_http_serve`), `Cache-Control`, `Pragma`, `Authorization`, `Expect`,
 * `Content-Length`, `Transfer-Encoding` and `Content-Type`; `Accept-Encoding` is reduced to the
 * coding this cache would pick. Send these instead of the client's, with the method `GET` and
 * no body, then apply the operator's own rewrites. Both are written only on success.
 *
 * # Safety
 * As `peakcache_http_key`; `path` and `headers` NULL or writable.
 */
peakcache_result peakcache_http_upstream_request(const struct peakcache_http_policy *policy,
                                                 const struct peakcache_http_request *request,
                                                 struct peakcache_buf **path,
                                                 struct peakcache_http_headers **headers);

/**
 * The keys to invalidate after an unsafe request (`POST`, `PUT`, `DELETE`, ...) got the
 * response `response` (RFC 9111 §4.4), in `*out`: the target URI and same-origin
 * `Location` / `Content-Location`, as primary keys. Empty for safe methods and error statuses.
 * Every entry the HTTP family stores is tagged with its primary key (see
 * `peakcache_http_store_tags`), so `peakcache_purge_tag(cache, key, len, ...)` for each removes
 * every variant too.
 *
 * # Safety
 * As `peakcache_http_key`; `response` NULL or a head as its fields document.
 */
peakcache_result peakcache_http_invalidations(const struct peakcache_http_policy *policy,
                                              const struct peakcache_http_request *request,
                                              const struct peakcache_http_response_head *response,
                                              struct peakcache_http_keys **out);

/**
 * The list as an array: `*items` (`*n` byte strings), valid until `peakcache_http_keys_free`.
 *
 * # Safety
 * `keys` must be NULL or live; `items` and `n` NULL or writable.
 */
peakcache_result peakcache_http_keys_items(const struct peakcache_http_keys *keys,
                                           const struct peakcache_bytes **items,
                                           size_t *n);

/**
 * Frees a key list. NULL is a no-op.
 *
 * # Safety
 * `keys` must be NULL or live, not used afterwards.
 */
void peakcache_http_keys_free(struct peakcache_http_keys *keys);

/**
 * The `Cache-Status` field value to append for this cache (`peakcache; hit; ttl=42`), in
 * `*out`. `fwd_status` is the upstream status for forwarded outcomes (0: none); `stored` adds
 * `stored` (a forwarded response that was stored). `entry` may be NULL; if not, it gives `ttl`
 * (and the stale detail) at `now_ms` (Unix milliseconds) and must carry HTTP metadata
 * (`PEAKCACHE_ERR_INVALID` otherwise). Serving from an entry, `peakcache_http_serve` includes
 * this already.
 *
 * # Safety
 * `policy` must be NULL or live; `entry` NULL or live; `out` NULL or writable.
 */
peakcache_result peakcache_http_cache_status(const struct peakcache_http_policy *policy,
                                             uint32_t outcome,
                                             uint16_t fwd_status,
                                             bool stored,
                                             const struct peakcache_entry *entry,
                                             uint64_t now_ms,
                                             struct peakcache_buf **out);

/**
 * What moves with time in an answer from `entry` for `outcome` at `now_ms` (Unix milliseconds),
 * in one call: the `Age` value in `*age_secs` (as `peakcache_http_age`), this cache's
 * `Cache-Status` member in `status` (as `peakcache_http_cache_status` with `stored` false; `cap`
 * bytes, no NUL; its length in `*status_len`), and in `*until_ms` the first instant after
 * `now_ms` at which either may say something else: both hold from `now_ms` until then. For a
 * host that keeps an answer between requests (nginx's memos) and renews these two fields
 * when the clock passes `*until_ms`; nothing is allocated. `PEAKCACHE_ERR_TOO_LARGE` when the
 * member needs more than `cap` bytes (`*status_len` then says how many);
 * `PEAKCACHE_ERR_INVALID` for an entry without HTTP metadata or an unknown outcome.
 *
 * # Safety
 * `policy` and `entry` must be NULL or live; `age_secs`, `until_ms` and `status_len` NULL or
 * writable; `status` NULL or `cap` writable bytes.
 */
peakcache_result peakcache_http_clock(const struct peakcache_http_policy *policy,
                                      uint32_t outcome,
                                      uint16_t fwd_status,
                                      const struct peakcache_entry *entry,
                                      uint64_t now_ms,
                                      uint64_t *age_secs,
                                      uint64_t *until_ms,
                                      uint8_t *status,
                                      size_t cap,
                                      size_t *status_len);

/**
 * The `Age` of an entry at `now_ms` (Unix milliseconds) in `*secs`: its age when received plus
 * the time since (RFC 9111 §4.2.3), the value of the `Age` header to send.
 * `PEAKCACHE_ERR_INVALID` when the entry has no HTTP metadata.
 *
 * # Safety
 * `entry` must be NULL or live; `secs` NULL or writable.
 */
peakcache_result peakcache_http_age(const struct peakcache_entry *entry,
                                    uint64_t now_ms,
                                    uint64_t *secs);

/**
 * Whether `entry` may be served, stale, in place of an origin error at `now_ms` (Unix
 * milliseconds): true inside its stale-if-error window (RFC 5861 §4, or the operator's grace);
 * false while its metadata says fresh, past the window, and for NULL or an entry without HTTP
 * metadata. A host whose fill gets a 5xx asks this of the fill's previous entry: when false,
 * the 5xx is a response like any other (stored if it says it may be, RFC 9111 §3).
 *
 * # Safety
 * `entry` must be NULL or live.
 */
bool peakcache_http_stale_if_error(const struct peakcache_entry *entry,
                                   uint64_t now_ms);

/**
 * Answers `request` from `entry` at `now_ms` (Unix milliseconds), in `*out`: evaluates the
 * client's `If-None-Match` / `If-Modified-Since` (RFC 9111 §4.3.2) and gives the status and the
 * complete header list to send (a 304's, or the stored response's), with `Age` and the
 * `Cache-Status` of `outcome` (a `peakcache_http_outcome`: `PEAKCACHE_HTTP_HIT` for a fresh
 * lookup, `_STALE`, `_STALE_IF_ERROR` with the failed `fwd_status`, `_COLLAPSED` for a
 * waiter's hit, `_REVALIDATED` or `_MISS` after storing). `PEAKCACHE_ERR_INVALID` when the
 * entry has no HTTP metadata (it was not stored through the HTTP family).
 *
 * # Safety
 * `policy` must be NULL or live; `request` NULL or as its fields document; `entry` NULL or
 * live; `out` NULL or writable.
 *
 * Exported as `peakcache_http_serve_sized` with the size of `*out` last; the header's `peakcache_http_serve` macro passes
 * `sizeof(peakcache_http_answer)` (see the header's "Sizes" convention).
 */
peakcache_result peakcache_http_serve_sized(const struct peakcache_http_policy *policy,
                                            const struct peakcache_http_request *request,
                                            const struct peakcache_entry *entry,
                                            uint32_t outcome,
                                            uint16_t fwd_status,
                                            uint64_t now_ms,
                                            struct peakcache_http_answer *out,
                                            size_t out_size);

/**
 * The fields to add to the upstream request revalidating `entry` (RFC 9111 §4.3.1), in
 * `*out`: `If-None-Match` from its `ETag`, `If-Modified-Since` from its `Last-Modified`; an
 * empty list when it has neither (then fetch unconditionally).
 *
 * # Safety
 * `policy` must be NULL or live; `entry` NULL or live; `out` NULL or writable.
 */
peakcache_result peakcache_http_revalidation_headers(const struct peakcache_http_policy *policy,
                                                     const struct peakcache_entry *entry,
                                                     struct peakcache_http_headers **out);

/**
 * A short description of a `peakcache_http_dont_store` reason (`"response has no-store"`) as a
 * static NUL-terminated string, for logs. Never NULL; never free it.
 */
const char *peakcache_http_dont_store_str(uint32_t reason);

/**
 * Whose doing a `peakcache_http_dont_store` reason is. `PEAKCACHE_HTTP_STORE` and unknown values
 * answer `PEAKCACHE_HTTP_CAUSE_RESPONSE`.
 */
peakcache_http_cause peakcache_http_dont_store_cause(uint32_t reason);

/**
 * Decides whether to store an upstream response, and how, in `*out` (see
 * `peakcache_http_decision`). `request` is the request as sent upstream (or the client's);
 * `request_time_ms` when it was sent and `response_time_ms` when the response's head arrived,
 * both in Unix milliseconds (they give the response's age, RFC 9111 §4.2.3). A response not
 * to store is still `PEAKCACHE_OK`, with the reason in `out->reason`.
 * `PEAKCACHE_ERR_NOT_CACHEABLE` when the request has no key; `PEAKCACHE_ERR_MALFORMED` for
 * bytes that are not HTTP.
 *
 * # Safety
 * `policy` must be NULL or live; `request` and `response` NULL or as their fields document;
 * `out` NULL or writable.
 *
 * Exported as `peakcache_http_on_response_sized` with the size of `*out` last; the header's `peakcache_http_on_response` macro passes
 * `sizeof(peakcache_http_decision)` (see the header's "Sizes" convention).
 */
peakcache_result peakcache_http_on_response_sized(const struct peakcache_http_policy *policy,
                                                  const struct peakcache_http_request *request,
                                                  const struct peakcache_http_response_head *response,
                                                  uint64_t request_time_ms,
                                                  uint64_t response_time_ms,
                                                  struct peakcache_http_decision *out,
                                                  size_t out_size);

/**
 * Revalidation answered `304 Not Modified`: merges the 304 `not_modified` into the stored
 * response of `entry` (RFC 9111 §4.3.4: its fields replace the stored ones, except the body's
 * framing and coding) and decides again, as `peakcache_http_on_response`, for the merged
 * response, in `*out`. When storable, `peakcache_http_store_response` gives the merged response
 * with the stored body (shared, not copied): commit it with the refresh or fill, and serve it.
 * `PEAKCACHE_ERR_VALIDATOR_MISMATCH`: the 304 is for another version; fetch again without
 * conditions. `PEAKCACHE_ERR_INVALID` when `not_modified` is not a 304 or the entry has no
 * HTTP metadata.
 *
 * # Safety
 * As `peakcache_http_on_response`; `entry` NULL or a live entry.
 *
 * Exported as `peakcache_http_revalidate_sized` with the size of `*out` last; the header's `peakcache_http_revalidate` macro passes
 * `sizeof(peakcache_http_decision)` (see the header's "Sizes" convention).
 */
peakcache_result peakcache_http_revalidate_sized(const struct peakcache_http_policy *policy,
                                                 const struct peakcache_http_request *request,
                                                 const struct peakcache_entry *entry,
                                                 const struct peakcache_http_response_head *not_modified,
                                                 uint64_t request_time_ms,
                                                 uint64_t response_time_ms,
                                                 struct peakcache_http_decision *out,
                                                 size_t out_size);

/**
 * A new response to commit in `*out`: the decided status, the headers to store (the fields a
 * shared cache must not store removed, RFC 9111 §3.1, and `Date` added when missing), and the
 * entry metadata the serving calls read (`peakcache_response_set_meta`: do not overwrite it).
 * Its body is empty after `peakcache_http_on_response` (append the body as it arrives) and the
 * stored body after `peakcache_http_revalidate`. May be called more than once.
 *
 * # Safety
 * `store` must be NULL or live; `out` NULL or writable.
 */
peakcache_result peakcache_http_store_response(const struct peakcache_http_store *store,
                                               struct peakcache_response **out);

/**
 * The `Age` of the response this decision stores, at `now_ms` (Unix milliseconds), in
 * `*secs`: how old it was when it arrived (RFC 9111 §4.2.3: its `Age` and the time the
 * request took) plus the time since; what `peakcache_http_age` says of the entry once
 * committed. A host forwarding the response it is storing sends it as the `Age` header, so
 * that visitor is told what the next ones are.
 *
 * # Safety
 * `store` must be NULL or live; `secs` NULL or writable.
 */
peakcache_result peakcache_http_store_age(const struct peakcache_http_store *store,
                                          uint64_t now_ms,
                                          uint64_t *secs);

/**
 * The tags to commit with: the response's `Surrogate-Key` tags, then its primary key, as an
 * array `*tags` of `*ntags` byte strings valid until `peakcache_http_store_free(store)`; pass
 * them straight to `peakcache_fill_commit`.
 *
 * # Safety
 * `store` must be NULL or live; `tags` and `ntags` NULL or writable.
 */
peakcache_result peakcache_http_store_tags(const struct peakcache_http_store *store,
                                           const struct peakcache_bytes **tags,
                                           size_t *ntags);

/**
 * The response's `Vary` (field names, lowercase, sorted: `accept-encoding, cookie`) as a view
 * valid until `peakcache_http_store_free(store)`; `*len` 0 when it varies on nothing. When not
 * empty, store the response under `peakcache_http_variant_key(policy, request, vary, len)` and
 * keep this value under the primary key, so later lookups can compute the variant key.
 *
 * # Safety
 * `store` must be NULL or live; `ptr` and `len` NULL or writable.
 */
peakcache_result peakcache_http_store_vary(const struct peakcache_http_store *store,
                                           const uint8_t **ptr,
                                           size_t *len);

/**
 * Frees a store decision. NULL is a no-op. Responses made from it stay valid.
 *
 * # Safety
 * `store` must be NULL or live, not used afterwards.
 */
void peakcache_http_store_free(struct peakcache_http_store *store);

/**
 * Sets the process-wide log callback (NULL `cb` turns logging off; the default is off).
 * `userdata` is passed back on each call, first. The callback may be called from any thread
 * that calls into peakcache, concurrently, so it and `userdata` must be thread-safe; a call
 * already in progress on another thread may still use the previous pair after this returns.
 *
 * # Safety
 * `cb`, if not NULL, must be a function safe to call with `userdata` until it is replaced.
 */
void peakcache_set_log_callback(void *userdata,
                                peakcache_log_callback cb);

/**
 * Looks `key[0..key_len]` up and writes what to do into `*out` (see `peakcache_lookup_kind`).
 * Every call is counted once in the stats. Thread-safe.
 *
 * # Safety
 * `cache` must be NULL or live; `key` NULL or `key_len` readable bytes; `out` NULL or writable.
 *
 * Exported as `peakcache_lookup_sized` with the size of `*out` last; the header's `peakcache_lookup` macro passes
 * `sizeof(peakcache_lookup_result)` (see the header's "Sizes" convention).
 */
peakcache_result peakcache_lookup_sized(const struct peakcache_cache *cache,
                                        const uint8_t *key,
                                        size_t key_len,
                                        struct peakcache_lookup_result *out,
                                        size_t out_size);

/**
 * `peakcache_lookup` for a caller that holds `known`, an entry this cache handed out for this
 * same key (by a lookup or a waiter): while the key's value is still that one and the answer
 * hands out no ticket (FRESH, or the cache frozen; STALE with `refresh` NULL: its refresh
 * runs, or a failing origin backs off), `entry` is a new reference to `known` itself (the
 * same pointer), so that what the caller prepared from it still holds, and the shared backend
 * copies nothing out of its region. Otherwise (another value, a ticket to hand out, `known`
 * NULL or of the local backend, whose hits copy nothing anyway) exactly `peakcache_lookup`'s
 * answer, also when `known` is an entry another cache, or this one for another key, handed
 * out. Counted once in the stats, as `peakcache_lookup`.
 *
 * # Safety
 * `cache` must be NULL or live; `key` NULL or `key_len` readable bytes; `known` NULL or a live
 * entry; `out` NULL or writable.
 *
 * Exported as `peakcache_lookup_known_sized` with the size of `*out` last; the header's
 * `peakcache_lookup_known` macro passes `sizeof(peakcache_lookup_result)` (see the header's
 * "Sizes" convention).
 */
peakcache_result peakcache_lookup_known_sized(const struct peakcache_cache *cache,
                                              const uint8_t *key,
                                              size_t key_len,
                                              const struct peakcache_entry *known,
                                              struct peakcache_lookup_result *out,
                                              size_t out_size);

/**
 * The entry of `key[0..key_len]` if it is stored and fresh (or the cache is frozen): `*out` is
 * a new entry reference (free it with `peakcache_entry_free`), or NULL when there is none. No
 * lifecycle: no fill, no refresh ticket, no waiting (`peakcache_lookup` is for that). Counted
 * once in the stats (fresh or miss). Thread-safe.
 *
 * # Safety
 * `cache` must be NULL or live; `key` NULL or `key_len` readable bytes; `out` NULL or writable.
 */
peakcache_result peakcache_get(const struct peakcache_cache *cache,
                               const uint8_t *key,
                               size_t key_len,
                               struct peakcache_entry **out);

/**
 * The body and flags of the entry of `key[0..key_len]` if it is stored and fresh (or the cache
 * is frozen), as `peakcache_get` finds it (no lifecycle; counted once, fresh or miss), without
 * a handle: `*found` says whether there is one; if so, `*ptr` and `*len` are a view of its body
 * and `*flags` its flags word. The view lives in a buffer of the calling thread: valid until
 * that thread's next `peakcache_get_body` (on any cache), so a host copies or consumes it
 * before anything that may call again (an unserializer's callbacks). For an empty body `*len`
 * is 0 and `*ptr` a non-NULL pointer not to be read. The shared backend copies the value out
 * of the region once into that buffer, reused from call to call (no allocation once it is
 * large enough); the local one keeps a reference to the value until the next call.
 *
 * # Safety
 * `cache` must be NULL or live; `key` NULL or `key_len` readable bytes; `found`, `ptr`, `len`
 * and `flags` NULL or writable.
 */
peakcache_result peakcache_get_body(const struct peakcache_cache *cache,
                                    const uint8_t *key,
                                    size_t key_len,
                                    bool *found,
                                    const uint8_t **ptr,
                                    size_t *len,
                                    uint32_t *flags);

/**
 * Creates an empty response with `status` (any number; the cache does not interpret it),
 * no headers, an empty body and flags 0, in `*out`.
 *
 * # Safety
 * `out` must be NULL or writable.
 */
peakcache_result peakcache_response_new(uint16_t status,
                                        struct peakcache_response **out);

/**
 * Appends a header (name and value copied; kept in the order added; names are not
 * interpreted or lower-cased). A header whose bytes would take the response's header total past
 * 4 GiB is `PEAKCACHE_ERR_INVALID`.
 *
 * # Safety
 * `resp` must be NULL or a live response; each non-NULL pointer must point to its length in
 * readable bytes.
 */
peakcache_result peakcache_response_add_header(struct peakcache_response *resp,
                                               const uint8_t *name,
                                               size_t name_len,
                                               const uint8_t *value,
                                               size_t value_len);

/**
 * Appends `len` bytes to the body (copied). A body filter calls it once per chunk.
 *
 * # Safety
 * `resp` must be NULL or a live response; `ptr` must be NULL or point to `len` readable bytes.
 */
peakcache_result peakcache_response_append_body(struct peakcache_response *resp,
                                                const uint8_t *ptr,
                                                size_t len);

/**
 * Reserves room for `additional` more body bytes (for instance from Content-Length), so the
 * appends that follow do not reallocate. Only a hint.
 *
 * # Safety
 * `resp` must be NULL or a live response.
 */
peakcache_result peakcache_response_reserve_body(struct peakcache_response *resp,
                                                 size_t additional);

/**
 * The number of body bytes appended so far (0 for NULL), so a body filter can give up on a body
 * larger than `peakcache_cache_max_object_bytes` before buffering all of it.
 *
 * # Safety
 * `resp` must be NULL or a live response.
 */
size_t peakcache_response_body_len(const struct peakcache_response *resp);

/**
 * Sets the flags word stored with the value, for the host's own use (PHP: how the value is
 * serialized). Default 0.
 *
 * # Safety
 * `resp` must be NULL or a live response.
 */
peakcache_result peakcache_response_set_flags(struct peakcache_response *resp,
                                              uint32_t flags);

/**
 * Sets the metadata stored with the value (copied, replacing any): bytes the cache does not
 * interpret, read back with `peakcache_entry_meta`, counted in the entry's weight. The HTTP
 * family (`peakcache_http_store_response`) writes its own entry metadata here, a versioned blob
 * that `peakcache_http_*` functions read from the entry; a host using the HTTP family should
 * not overwrite it. Default empty.
 *
 * # Safety
 * `resp` must be NULL or a live response; `ptr` must be NULL or point to `len` readable bytes.
 */
peakcache_result peakcache_response_set_meta(struct peakcache_response *resp,
                                             const uint8_t *ptr,
                                             size_t len);

/**
 * Frees a response that was not committed. NULL is a no-op.
 *
 * # Safety
 * `resp` must be NULL or a live response, not used afterwards.
 */
void peakcache_response_free(struct peakcache_response *resp);

/**
 * The name of a result code (`"PEAKCACHE_ERR_NULL"`) as a static NUL-terminated string, for
 * logs. `code` is a `peakcache_result`; an unknown number gives `"PEAKCACHE_UNKNOWN"`. Never
 * NULL; never free it.
 */
const char *peakcache_result_str(uint32_t code);

/**
 * Copies this thread's last error message (the reason of the last call that failed on this
 * thread, a panic message included) into `buf`, like `snprintf`: at most `cap - 1` bytes and a
 * terminating NUL when `cap > 0`. Returns the message's full length in bytes (without the NUL),
 * so a return value `>= cap` means it was cut. `buf` may be NULL when `cap` is 0 (to ask the
 * length). An empty message (length 0) when no call has failed on this thread.
 *
 * # Safety
 * `buf` must be NULL or point to `cap` writable bytes.
 */
size_t peakcache_last_error(char *buf,
                            size_t cap);

/**
 * Clears this thread's last error message.
 */
void peakcache_clear_last_error(void);

/**
 * Writes a snapshot of the cache's counters into `*out`. (Named `peakcache_cache_stats`, not
 * `peakcache_stats`: C gives a function and a type one namespace.)
 *
 * # Safety
 * `cache` must be NULL or live; `out` NULL or writable.
 *
 * Exported as `peakcache_cache_stats_sized` with the size of `*out` last; the header's `peakcache_cache_stats` macro passes
 * `sizeof(peakcache_stats)` (see the header's "Sizes" convention).
 */
peakcache_result peakcache_cache_stats_sized(const struct peakcache_cache *cache,
                                             struct peakcache_stats *out,
                                             size_t out_size);

/**
 * The counters in the Prometheus text exposition format (0.0.4), in `*out`: every metric named
 * `peakcache_...`, for instance `peakcache_lookups_total{outcome="fresh"}` and
 * `peakcache_fills_total{result="committed"}` (the core's `Stats::to_prometheus`), the hosts'
 * totals and gauges of the history (`peakcache_visitor_requests_total`,
 * `peakcache_origin_errors_total`, `peakcache_frozen`, ...: the core's
 * `history::history_prometheus`) and, for a shared cache, the region's
 * `peakcache_region_{recoveries,takeovers,entries_dropped,lock_timeouts}_total`.
 *
 * # Safety
 * `cache` must be NULL or live; `out` NULL or writable.
 */
peakcache_result peakcache_stats_prometheus(const struct peakcache_cache *cache,
                                            struct peakcache_buf **out);

/**
 * The counters as one JSON object (`{"lookups":N,"fresh":N,...}`, the field names of
 * `peakcache_stats`), in `*out`.
 *
 * # Safety
 * `cache` must be NULL or live; `out` NULL or writable.
 */
peakcache_result peakcache_stats_json(const struct peakcache_cache *cache,
                                      struct peakcache_buf **out);

/**
 * The buffer's bytes as a view, valid until `peakcache_buf_free(buf)`. Not NUL-terminated.
 *
 * # Safety
 * `buf` must be NULL or live; `ptr` and `len` NULL or writable.
 */
peakcache_result peakcache_buf_data(const struct peakcache_buf *buf,
                                    const uint8_t **ptr,
                                    size_t *len);

/**
 * Frees a buffer. NULL is a no-op.
 *
 * # Safety
 * `buf` must be NULL or live, not used afterwards.
 */
void peakcache_buf_free(struct peakcache_buf *buf);

/**
 * Stores the response `*resp` as the fill's value, fresh for `ttl_ms`, with
 * stale-while-revalidate `swr_ms` and stale-if-error `sie_ms` windows
 * (`PEAKCACHE_WINDOW_DEFAULT`: the cache's default), tagged with `tags[0..ntags]` (NULL with 0:
 * none), and hands it to every waiter.
 *
 * Consumes `*fill` and `*resp` whatever the result, setting both to NULL; if the commit cannot
 * happen (an invalid argument) the fill is abandoned. `PEAKCACHE_ERR_TOO_LARGE`: the value was
 * not stored (heavier than the object limit), but waiters still got it. Shared backend:
 * `PEAKCACHE_ERR_REGION` when the key's shard lock was held by a stopped or stuck process past
 * `shm_lock_bound_ms` (nothing stored; serve the response you have).
 *
 * # Safety
 * `fill` and `resp` must be NULL or point to handles that are NULL or live; `tags` NULL or
 * `ntags` entries, each naming readable bytes.
 */
peakcache_result peakcache_fill_commit(struct peakcache_fill **fill,
                                       struct peakcache_response **resp,
                                       uint64_t ttl_ms,
                                       uint64_t swr_ms,
                                       uint64_t sie_ms,
                                       const struct peakcache_bytes *tags,
                                       size_t ntags);

/**
 * Stores the response `*resp` as the entry's new value, exactly as `peakcache_fill_commit`.
 * Consumes `*refresh` and `*resp` whatever the result, setting both to NULL.
 *
 * # Safety
 * As `peakcache_fill_commit`.
 */
peakcache_result peakcache_refresh_commit(struct peakcache_refresh **refresh,
                                          struct peakcache_response **resp,
                                          uint64_t ttl_ms,
                                          uint64_t swr_ms,
                                          uint64_t sie_ms,
                                          const struct peakcache_bytes *tags,
                                          size_t ntags);

/**
 * The answer is not cacheable: waiters are released at once to fetch for themselves, the
 * stored entry (if any) is removed, and lookups of the key answer `PEAKCACHE_LOOKUP_PASS` for
 * `hold_ms`, so requests for an uncacheable page are never serialized behind one another.
 * Consumes `*fill` (set to NULL).
 *
 * # Safety
 * `fill` must be NULL or point to a handle that is NULL or live.
 */
peakcache_result peakcache_fill_uncacheable(struct peakcache_fill **fill,
                                            uint64_t hold_ms);

/**
 * The refreshed answer is not cacheable: as `peakcache_fill_uncacheable` (the stale entry is
 * removed). Consumes `*refresh` (set to NULL).
 *
 * # Safety
 * `refresh` must be NULL or point to a handle that is NULL or live.
 */
peakcache_result peakcache_refresh_uncacheable(struct peakcache_refresh **refresh,
                                               uint64_t hold_ms);

/**
 * Gives up a fill without an answer, and frees it: a waiter, or the next lookup, fills
 * instead. NULL is a no-op. A fill never completed must end here.
 *
 * # Safety
 * `fill` must be NULL or a live fill, not used afterwards.
 */
void peakcache_fill_abandon(struct peakcache_fill *fill);

/**
 * Gives up a refresh ticket without an answer, and frees it: a later lookup gets a new one
 * after the cache's refresh retry delay. NULL is a no-op.
 *
 * # Safety
 * `refresh` must be NULL or a live refresh ticket, not used afterwards.
 */
void peakcache_refresh_abandon(struct peakcache_refresh *refresh);

/**
 * The fetch failed. `*stale_out` (if `stale_out` is not NULL) receives the entry still inside
 * its stale-if-error window, to be served as `PEAKCACHE_SERVED_STALE_IF_ERROR`, or NULL if there
 * is none; the same goes to every waiter. The key then backs off: until the back-off passes,
 * lookups get the stale entry without a new fetch. Consumes `*fill` (set to NULL).
 *
 * # Safety
 * `fill` must be NULL or point to a handle that is NULL or live; `stale_out` NULL or writable.
 */
peakcache_result peakcache_fill_fail(struct peakcache_fill **fill,
                                     struct peakcache_entry **stale_out);

/**
 * The refresh failed. The stale entry (which the caller already holds) keeps being served; the
 * key backs off before the next refresh. Consumes `*refresh` (set to NULL).
 *
 * # Safety
 * `refresh` must be NULL or point to a handle that is NULL or live.
 */
peakcache_result peakcache_refresh_fail(struct peakcache_refresh **refresh);

/**
 * Stores `*resp` under `key[0..key_len]` outside the lookup lifecycle (replacing what was
 * there; waiters of a fill in flight keep waiting for it), with the windows and tags of
 * `peakcache_fill_commit`. Consumes `*resp` whatever the result and sets it to NULL.
 * `PEAKCACHE_ERR_TOO_LARGE`: heavier than the object limit; nothing stored, and an older value of
 * the key is removed. Thread-safe.
 *
 * # Safety
 * `cache` must be NULL or live; `key` NULL or `key_len` readable bytes; `resp` NULL or pointing
 * to a handle that is NULL or live; `tags` NULL or `ntags` entries, each naming readable bytes.
 */
peakcache_result peakcache_insert(const struct peakcache_cache *cache,
                                  const uint8_t *key,
                                  size_t key_len,
                                  struct peakcache_response **resp,
                                  uint64_t ttl_ms,
                                  uint64_t swr_ms,
                                  uint64_t sie_ms,
                                  const struct peakcache_bytes *tags,
                                  size_t ntags);

/**
 * The value the fill's key still has stored past its stale windows, if any, for revalidation
 * (e.g. a conditional request from its `ETag`; `peakcache_http_revalidation_headers` builds it):
 * `*out` is a new entry reference (free it with `peakcache_entry_free`), or NULL. Never serve it
 * as it is. The fill stays usable. On both backends (shared: a copy taken out of the region when
 * the fill began; NULL, logged, if that copy does not decode).
 *
 * # Safety
 * `fill` must be NULL or live; `out` NULL or writable.
 */
peakcache_result peakcache_fill_previous(const struct peakcache_fill *fill,
                                         struct peakcache_entry **out);

/**
 * The library's version, `"MAJOR.MINOR.PATCH"`, as a static NUL-terminated string. Never free it.
 */
const char *peakcache_version(void);

/**
 * Blocks until the fill ends, the cache's lock timeout passes, or `timeout_ms` passes
 * (`UINT64_MAX`: no timeout of its own), and writes the answer into `*out`. Always final:
 * consumes `*waiter` (set to NULL). Do not call it on an event loop's thread.
 *
 * # Safety
 * `waiter` must be NULL or point to a handle that is NULL or live; `out` NULL or writable.
 *
 * Exported as `peakcache_waiter_wait_sized` with the size of `*out` last; the header's `peakcache_waiter_wait` macro passes
 * `sizeof(peakcache_wait_result)` (see the header's "Sizes" convention).
 */
peakcache_result peakcache_waiter_wait_sized(struct peakcache_waiter **waiter,
                                             uint64_t timeout_ms,
                                             struct peakcache_wait_result *out,
                                             size_t out_size);

/**
 * Resolves without blocking. `PEAKCACHE_OK`: the answer is in `*out` and `*waiter` was consumed
 * (set to NULL). `PEAKCACHE_PENDING`: the fill is still running; `*waiter` is unchanged and
 * still yours, `*out` untouched; poll again later (from a timer: nothing wakes you). The
 * waiter's lock timeout is checked at each poll.
 *
 * # Safety
 * `waiter` must be NULL or point to a handle that is NULL or live; `out` NULL or writable.
 *
 * Exported as `peakcache_waiter_poll_sized` with the size of `*out` last; the header's `peakcache_waiter_poll` macro passes
 * `sizeof(peakcache_wait_result)` (see the header's "Sizes" convention).
 */
peakcache_result peakcache_waiter_poll_sized(struct peakcache_waiter **waiter,
                                             struct peakcache_wait_result *out,
                                             size_t out_size);

/**
 * Frees a waiter not resolved (the fill goes on without it). NULL is a no-op.
 *
 * # Safety
 * `waiter` must be NULL or a live waiter, not used afterwards.
 */
void peakcache_waiter_free(struct peakcache_waiter *waiter);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* PEAKCACHE_H */

/* The sized entry points under their plain names (see "Sizes" at the top). */
#ifndef PEAKCACHE_SIZED_NAMES
#define PEAKCACHE_SIZED_NAMES
/* Variadic, so an argument that is itself a macro expanding to several (a ptr, len pair) works. */
#define peakcache_config_default(...) peakcache_config_default_sized(__VA_ARGS__, sizeof(peakcache_config))
#define peakcache_cache_new(...) peakcache_cache_new_sized(__VA_ARGS__, sizeof(peakcache_config))
#define peakcache_cache_region_info(...) peakcache_cache_region_info_sized(__VA_ARGS__, sizeof(peakcache_region_info))
#define peakcache_cache_stats(...) peakcache_cache_stats_sized(__VA_ARGS__, sizeof(peakcache_stats))
#define peakcache_cache_tick(...) peakcache_cache_tick_sized(__VA_ARGS__, sizeof(peakcache_host_counts))
#define peakcache_lookup(...) peakcache_lookup_sized(__VA_ARGS__, sizeof(peakcache_lookup_result))
#define peakcache_lookup_known(...) peakcache_lookup_known_sized(__VA_ARGS__, sizeof(peakcache_lookup_result))
#define peakcache_waiter_wait(...) peakcache_waiter_wait_sized(__VA_ARGS__, sizeof(peakcache_wait_result))
#define peakcache_waiter_poll(...) peakcache_waiter_poll_sized(__VA_ARGS__, sizeof(peakcache_wait_result))
#define peakcache_http_config_default(...) peakcache_http_config_default_sized(__VA_ARGS__, sizeof(peakcache_http_config))
#define peakcache_http_policy_new(...) peakcache_http_policy_new_sized(__VA_ARGS__, sizeof(peakcache_http_config))
#define peakcache_http_serve(...) peakcache_http_serve_sized(__VA_ARGS__, sizeof(peakcache_http_answer))
#define peakcache_http_on_response(...) peakcache_http_on_response_sized(__VA_ARGS__, sizeof(peakcache_http_decision))
#define peakcache_http_revalidate(...) peakcache_http_revalidate_sized(__VA_ARGS__, sizeof(peakcache_http_decision))
#endif /* PEAKCACHE_SIZED_NAMES */
