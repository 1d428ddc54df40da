
/*
 * ngx_http_peakcache_module: an in-memory edge cache in front of proxy_pass and
 * fastcgi_pass, backed by the peakcache library (include/peakcache.h).
 *
 * The module is glue: lookups, single flight, stale windows, tags and eviction live in
 * the library's core; keys, storability, freshness, conditional requests, Age and
 * Cache-Status in its HTTP layer (peakcache_http_*).  What is here is nginx's side:
 *
 *   precontent phase   lookup; a hit is answered from the entry's memory, a stale entry
 *                      is answered at once and refreshed by one background subrequest,
 *                      a miss lets the content handler (proxy_pass, ...) run, a waiter is
 *                      parked on the connection's write event without blocking;
 *   header filter      the store decision for the fill or refresh, or, when the origin
 *                      failed and the fill hands back a stale-if-error entry, the swap
 *                      of the error for that entry;
 *   body filter        captures the body into a peakcache_response and commits it at
 *                      the last buffer (a background refresh's body goes nowhere else);
 *   pool cleanups      release every library handle a request still holds.
 *
 * A zone is one cache for every worker, in a shared memory region (the
 * library's shared backend): created in the master at configuration time,
 * inherited by the workers it forks, reopened (entries kept) by the next cycle
 * on reload.  Single flight, purges and stats are global.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_channel.h>

#include <peakcache.h>


/* how often a worker polls a fill that runs in another worker */
#define NGX_HTTP_PEAKCACHE_POLL_MS       1

#define NGX_HTTP_PEAKCACHE_PURGE_KEY     1
#define NGX_HTTP_PEAKCACHE_PURGE_TAG     2
#define NGX_HTTP_PEAKCACHE_PURGE_URL     3

/* entry flags: the entry is a Vary marker, its body the Vary value */
#define NGX_HTTP_PEAKCACHE_VARY_MARKER   0x1

/*
 * How long a marker lives at least: past its variants' stale windows, while
 * an expired variant is still stored for its fill to revalidate it (the
 * proxy remembers a Vary as long).
 */
#define NGX_HTTP_PEAKCACHE_VARY_MS       ((uint64_t) 86400 * 1000)

/*
 * Per-worker memos of the hit path, two-way tables (powers of two): the key
 * of a request target, and the answer to a plain hit of an entry (see
 * memo_get).  An entry whose body is larger than MEMO_BODY is not memoized,
 * nor one that would take the bodies the memos hold past MEMO_BYTES: a memo
 * holds a reference (with the shared backend, a copy), and an evicted entry's
 * memory is kept until its slot is reused.
 */
#define NGX_HTTP_PEAKCACHE_KEY_SLOTS     65536
#define NGX_HTTP_PEAKCACHE_KEY_MAX       4096
#define NGX_HTTP_PEAKCACHE_MEMO_SLOTS    65536
#define NGX_HTTP_PEAKCACHE_MEMO_BODY     (64 * 1024)
#define NGX_HTTP_PEAKCACHE_MEMO_BYTES    (64 * 1024 * 1024)

/*
 * The longest Cache-Status member a memo keeps (a longer one, from a long
 * peakcache_cache_name, is answered without the memo).
 */
#define NGX_HTTP_PEAKCACHE_STATUS_MAX    112


/* $peakcache_status values */
#define NGX_HTTP_PEAKCACHE_MISS          1
#define NGX_HTTP_PEAKCACHE_BYPASS        2
#define NGX_HTTP_PEAKCACHE_EXPIRED       3
#define NGX_HTTP_PEAKCACHE_STALE         4
#define NGX_HTTP_PEAKCACHE_UPDATING      5
#define NGX_HTTP_PEAKCACHE_REVALIDATED   6
#define NGX_HTTP_PEAKCACHE_HIT           7


/* where a request is in the module's own state machine */
#define NGX_HTTP_PEAKCACHE_PHASE_NEW       0
#define NGX_HTTP_PEAKCACHE_PHASE_WAITING   1
#define NGX_HTTP_PEAKCACHE_PHASE_RESOLVED  2
#define NGX_HTTP_PEAKCACHE_PHASE_DONE      3


typedef struct {
    ngx_str_t                      name;
    size_t                         size;
    ngx_str_t                      shm_path;  /* empty: an anonymous mapping */
    ngx_msec_t                     lock_timeout;
    size_t                         max_object_size;

    u_char                        *file;
    ngx_uint_t                     line;

    peakcache_cache               *cache;     /* the master's, inherited */

    ngx_str_t                      snapshot;  /* empty: none */
    ngx_msec_t                     snapshot_interval;

    /* this worker's */
    ngx_uint_t                     origin_active;
    peakcache_host_counts          counts;    /* since the last tick */
    ngx_event_t                    tick;
    ngx_rbtree_t                   fills;
    ngx_rbtree_node_t              sentinel;
    ngx_rbtree_t                   polls;     /* fills running elsewhere */
    ngx_rbtree_node_t              polls_sentinel;
} ngx_http_peakcache_zone_t;


typedef struct {
    ngx_array_t                    zones;    /* ngx_http_peakcache_zone_t * */
    ngx_fd_t                      *bells;    /* a pipe per worker, or NULL */
    ngx_uint_t                     nbells;
} ngx_http_peakcache_main_conf_t;


typedef struct {
    ngx_http_peakcache_zone_t     *zone;
    ngx_http_complex_value_t      *key;
    ngx_array_t                   *bypass;
    ngx_array_t                   *no_store;
    ngx_msec_t                     lock_timeout;
    ngx_msec_t                     default_ttl;
    ngx_msec_t                     default_swr;
    ngx_msec_t                     default_sie;
    ngx_msec_t                     pass_hold;
    size_t                         max_object_size;
    ngx_uint_t                     origin_concurrency;
    ngx_flag_t                     honour_request_directives;

    ngx_http_peakcache_zone_t     *purge;
    ngx_http_peakcache_zone_t     *status_page;

    peakcache_http_policy         *policy;
    peakcache_http_policy         *frozen_policy; /* request directives off */
} ngx_http_peakcache_loc_conf_t;


/*
 * What moves with time in a memoized answer: its Age and this cache's
 * Cache-Status member (for one outcome and upstream status), the same from
 * valid_from until valid_until, as the HTTP layer says (peakcache_http_clock).
 */
typedef struct {
    ngx_uint_t                     fwd_status;
    uint64_t                       valid_from;    /* Unix ms; 0: never set */
    uint64_t                       valid_until;
    size_t                         age_len;
    size_t                         status_len;
    u_char                         age[NGX_INT64_LEN];
    u_char                         status[NGX_HTTP_PEAKCACHE_STATUS_MAX];
} ngx_http_peakcache_clock_t;


typedef struct ngx_http_peakcache_key_memo_s  ngx_http_peakcache_key_memo_t;


/*
 * The headers of an answer from an entry, ready for r->headers_out: the
 * strings point into the HTTP layer's list (held by the request's pool) or,
 * memoized, into the memo's own allocation.  Memoized ones are counted (the
 * memo table's reference, and one per request using it), keep the clocks of
 * a hit's and a waiter's answer, and are found by the key their entry was
 * stored under.
 */
typedef struct {
    ngx_uint_t                     refs;
    ngx_http_peakcache_zone_t     *zone;
    ngx_str_t                      key;           /* the entry's */
    uint64_t                       id;            /* peakcache_entry_id */
    peakcache_entry               *entry;
    peakcache_http_policy         *policy;
    size_t                         body_len;
    size_t                         bytes;         /* its allocation's */
    ngx_uint_t                     status;
    ngx_uint_t                     nelts;
    ngx_table_elt_t               *elts;
    ngx_str_t                      content_type;
    size_t                         content_type_len;
    time_t                         last_modified_time;
    ngx_int_t                      date;
    ngx_int_t                      etag;
    ngx_int_t                      server;
    ngx_int_t                      location;
    ngx_int_t                      last_modified;
    ngx_int_t                      content_encoding;
    ngx_int_t                      age;
    ngx_int_t                      cache_status;  /* this cache's, the last */
    ngx_http_peakcache_key_memo_t *target;        /* see memo_link */
    ngx_http_peakcache_clock_t     clock[4];      /* see clock_slot */
} ngx_http_peakcache_memo_t;


/* a request target's key, as the HTTP layer computed it */
struct ngx_http_peakcache_key_memo_s {
    peakcache_http_policy         *policy;
    uint32_t                       hash;
    ngx_uint_t                     https;
    uint64_t                       serial;        /* unique in the worker */
    ngx_http_peakcache_memo_t     *memo;          /* see memo_link */
    ngx_str_t                      host;          /* the authority */
    ngx_str_t                      uri;
    ngx_str_t                      key;
};


/* a fill in flight in this worker, with the requests of this worker waiting for it */
typedef struct {
    ngx_str_node_t                 sn;
    ngx_queue_t                    waiters;
} ngx_http_peakcache_fill_node_t;


/*
 * A fill in flight in another worker, with the requests of this worker
 * waiting for it: one timer polls it (with the first waiter's handle) for
 * all of them, and wakes them all when it ends.  The worker whose fill ends
 * rings the others' bells (see ngx_http_peakcache_ring), which poll at once;
 * the timer is for fills whose end rings no bell here (a process of another
 * cycle or host).
 */
typedef struct {
    ngx_str_node_t                 sn;       /* the key follows the node */
    ngx_queue_t                    waiters;
    ngx_event_t                    event;
    ngx_http_peakcache_zone_t     *zone;
} ngx_http_peakcache_poll_t;


typedef struct {
    ngx_http_request_t            *request;
    ngx_http_peakcache_zone_t     *zone;
    ngx_http_peakcache_loc_conf_t *conf;
    ngx_str_t                      key;
    ngx_str_t                      authority;

    peakcache_fill                *fill;
    peakcache_refresh             *refresh;
    peakcache_waiter              *waiter;
    peakcache_response            *resp;
    peakcache_entry               *stale;

    peakcache_wait_result          wait;
    ngx_event_t                    keep;     /* see keep_fetching */

    ngx_http_peakcache_fill_node_t *node;
    ngx_http_peakcache_poll_t     *poll;     /* the poller it is queued on */
    ngx_queue_t                    queue;
    ngx_msec_t                     deadline;

    peakcache_http_policy         *policy;   /* the location's, or frozen */
    peakcache_http_request         req;      /* the visitor's */
    peakcache_http_request         sent;     /* the fill's or refresh's */
    ngx_chain_t                   *held;     /* a deferred page, as sent */
    ngx_chain_t                  **held_last;
    size_t                         held_size;
    peakcache_entry               *entry;    /* the entry served */
    ngx_http_peakcache_memo_t     *memo;     /* its memoized answer */
    ngx_http_peakcache_memo_t    **memo_ways; /* the slots of memo_key's */
    ngx_str_t                      memo_key;
    ngx_http_peakcache_key_memo_t  *target;  /* the key's key memo, when */
    ngx_http_peakcache_key_memo_t **target_ways; /* still in these slots */
    uint64_t                       target_serial; /* with this serial, */
    u_char                        *target_key;    /* for this key */
    ngx_str_t                      method_name;
    peakcache_http_store          *store;
    peakcache_entry               *revalidate;
    peakcache_fill                *marker;   /* the primary key's fill */
    ngx_str_t                      vary;     /* the marker's Vary */
    ngx_str_t                      primary;
    uint64_t                       request_time;

    uint64_t                       ttl;
    uint64_t                       swr;
    uint64_t                       sie;
    uint64_t                       age;      /* of the response stored */

    ngx_uint_t                     status;
    ngx_uint_t                     outcome;
    ngx_uint_t                     fwd_status;

    unsigned                       phase:2;
    unsigned                       queued:1;
    unsigned                       answered:1; /* ctx->wait, by a poller */
    unsigned                       header_seen:1;
    unsigned                       capture:1;
    unsigned                       swap:1;
    unsigned                       swap_sent:1;
    unsigned                       background:1;
    unsigned                       origin:1;
    unsigned                       variant:1;
    unsigned                       stored:1;
    unsigned                       aged:1;   /* ctx->age is known */
    unsigned                       served:1;
    unsigned                       viewed:1;
    unsigned                       head:1;   /* a HEAD miss filled by GET */
    unsigned                       unsent:1; /* no upstream request made */
    unsigned                       conditional:1; /* If-None-Match, -Since */
    unsigned                       defer:1;  /* the head waits for the commit */
    unsigned                       redirected:1;  /* internally, once */
    unsigned                       gone:1;   /* the fill's client left */
} ngx_http_peakcache_ctx_t;


typedef struct {
    peakcache_entry               *entry;
    peakcache_http_headers        *headers;
} ngx_http_peakcache_entry_cleanup_t;


static ngx_int_t ngx_http_peakcache_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_peakcache_lookup(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_int_t ngx_http_peakcache_resolved(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_int_t ngx_http_peakcache_begin_fill(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_fill *fill);
static ngx_int_t ngx_http_peakcache_begin_wait(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_waiter *waiter);
static void ngx_http_peakcache_park(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_http_peakcache_poll_t *ngx_http_peakcache_poller(
    ngx_http_peakcache_ctx_t *ctx, uint32_t hash);
static void ngx_http_peakcache_poll_handler(ngx_event_t *ev);
static void ngx_http_peakcache_keep_fetching(ngx_event_t *ev);
static ngx_int_t ngx_http_peakcache_poll_waiter(ngx_http_peakcache_ctx_t *ctx);
static void ngx_http_peakcache_wait_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_peakcache_to_origin(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_int_t ngx_http_peakcache_serve(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_entry *entry);
static ngx_int_t ngx_http_peakcache_busy(ngx_http_request_t *r);
static ngx_int_t ngx_http_peakcache_retry_after(ngx_http_request_t *r);
static ngx_int_t ngx_http_peakcache_add_header(ngx_http_request_t *r,
    ngx_str_t *name, u_char *lowcase, ngx_str_t *value);
static void ngx_http_peakcache_start_refresh(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_refresh *refresh,
    peakcache_entry *entry);
static ngx_int_t ngx_http_peakcache_found(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_entry *entry,
    peakcache_refresh *refresh, ngx_uint_t outcome);
static uint64_t ngx_http_peakcache_now(void);
static ngx_int_t ngx_http_peakcache_request_view(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_uint_t ngx_http_peakcache_memoizable(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_http_peakcache_memo_t *ngx_http_peakcache_memo_get(
    ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx,
    peakcache_entry *entry, size_t body_len, uint64_t now);
static ngx_int_t ngx_http_peakcache_memo_find(ngx_http_peakcache_ctx_t *ctx,
    ngx_http_peakcache_memo_t ***ways);
static ngx_http_peakcache_memo_t *ngx_http_peakcache_memo_new(
    ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx,
    peakcache_entry *entry, uint64_t id, uint64_t now);
static void ngx_http_peakcache_memo_put(ngx_http_peakcache_memo_t **ways,
    ngx_int_t found, ngx_http_peakcache_memo_t *m);
static ngx_http_peakcache_clock_t *ngx_http_peakcache_memo_clock(
    ngx_http_peakcache_memo_t *m, ngx_uint_t outcome, ngx_uint_t fwd_status,
    uint64_t now);
static ngx_uint_t ngx_http_peakcache_clock_slot(ngx_uint_t outcome);
static void ngx_http_peakcache_memo_fill(ngx_http_peakcache_memo_t *m,
    const peakcache_http_header *items, size_t n);
static ngx_int_t ngx_http_peakcache_memo_apply(ngx_http_request_t *r,
    ngx_http_peakcache_memo_t *m, ngx_http_peakcache_clock_t *c);
static void ngx_http_peakcache_memo_release(ngx_http_peakcache_memo_t *m);
static void ngx_http_peakcache_target_set(ngx_http_peakcache_ctx_t *ctx,
    ngx_http_peakcache_key_memo_t **ways, ngx_http_peakcache_key_memo_t *k);
static ngx_http_peakcache_key_memo_t *ngx_http_peakcache_target(
    ngx_http_peakcache_ctx_t *ctx);
static ngx_http_peakcache_memo_t *ngx_http_peakcache_memo_linked(
    ngx_http_peakcache_ctx_t *ctx);
static void ngx_http_peakcache_memo_link(ngx_http_peakcache_ctx_t *ctx,
    ngx_http_peakcache_memo_t *m);
static void ngx_http_peakcache_memo_unlink(ngx_http_peakcache_memo_t *m);
static void ngx_http_peakcache_memo_prefetch(ngx_http_peakcache_memo_t *m);
static void ngx_http_peakcache_key_memo_free(ngx_http_peakcache_key_memo_t *k);
static void ngx_http_peakcache_memo_clear(void);
static ngx_int_t ngx_http_peakcache_headers_view(ngx_http_request_t *r,
    peakcache_http_request *req);
static ngx_int_t ngx_http_peakcache_copy_buf(ngx_http_request_t *r,
    peakcache_buf *buf, ngx_str_t *out);
static ngx_int_t ngx_http_peakcache_variant_key(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_entry *marker);
static ngx_int_t ngx_http_peakcache_upstream_request(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_int_t ngx_http_peakcache_bodiless(ngx_http_request_t *r);
static ngx_table_elt_t *ngx_http_peakcache_push_header(ngx_http_request_t *r,
    const peakcache_http_header *item);
static void ngx_http_peakcache_clear_header_shortcuts(ngx_http_request_t *r);
static ngx_int_t ngx_http_peakcache_header_shortcut(ngx_http_request_t *r,
    ngx_table_elt_t *h);
static ngx_int_t ngx_http_peakcache_answer(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_entry *entry, size_t body_len);
static ngx_int_t ngx_http_peakcache_hold(ngx_http_request_t *r,
    peakcache_entry *entry, peakcache_http_headers *headers);
static ngx_int_t ngx_http_peakcache_response_view(ngx_http_request_t *r,
    peakcache_http_response_head *head);
static ngx_uint_t ngx_http_peakcache_is_connection(ngx_table_elt_t *h);
static ngx_uint_t ngx_http_peakcache_hop_field(ngx_http_request_t *r,
    ngx_str_t *name);
static ngx_uint_t ngx_http_peakcache_stale_on_error(
    ngx_http_peakcache_ctx_t *ctx);
static ngx_int_t ngx_http_peakcache_origin_error(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_int_t ngx_http_peakcache_store_header(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_int_t ngx_http_peakcache_variant_fill(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, const uint8_t *vary, size_t vlen);
static ngx_int_t ngx_http_peakcache_renew(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_http_request *sent,
    peakcache_http_response_head *head);
static ngx_int_t ngx_http_peakcache_swap(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static void ngx_http_peakcache_previous(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_http_peakcache_ctx_t * ngx_http_peakcache_get_ctx(
    ngx_http_request_t *r);
static ngx_http_peakcache_ctx_t * ngx_http_peakcache_create_ctx(
    ngx_http_request_t *r, ngx_http_peakcache_zone_t *zone,
    ngx_http_peakcache_loc_conf_t *plcf);
static void ngx_http_peakcache_cleanup(void *data);
static void ngx_http_peakcache_entry_cleanup(void *data);
static ngx_int_t ngx_http_peakcache_admit(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static void ngx_http_peakcache_origin_done(ngx_http_peakcache_ctx_t *ctx);
static void ngx_http_peakcache_fill_done(ngx_http_peakcache_ctx_t *ctx);
static void ngx_http_peakcache_ring(void);
static void ngx_http_peakcache_bell_handler(ngx_event_t *rev);
static void ngx_http_peakcache_poll_now(ngx_http_peakcache_zone_t *zone);
static ngx_int_t ngx_http_peakcache_bells_make(ngx_cycle_t *cycle);
static void ngx_http_peakcache_bells_close(void *data);
static ngx_int_t ngx_http_peakcache_bell_listen(ngx_cycle_t *cycle);
static void ngx_http_peakcache_unqueue(ngx_http_peakcache_ctx_t *ctx);
static void ngx_http_peakcache_wake(ngx_queue_t *waiters);
static void ngx_http_peakcache_poller_free(ngx_http_peakcache_poll_t *p);
static ngx_chain_t * ngx_http_peakcache_entry_body(ngx_http_request_t *r,
    peakcache_entry *entry);
static ngx_chain_t * ngx_http_peakcache_body_chain(ngx_http_request_t *r,
    const uint8_t *body, size_t len);
static ngx_int_t ngx_http_peakcache_send_entry(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_entry *entry);
static ngx_int_t ngx_http_peakcache_authority(ngx_http_request_t *r,
    ngx_str_t *authority);
static ngx_uint_t ngx_http_peakcache_keyed_by_target(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_int_t ngx_http_peakcache_key(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_int_t ngx_http_peakcache_origin_failed(ngx_http_request_t *r);
static void ngx_http_peakcache_not_stored(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, uint32_t reason);
static void ngx_http_peakcache_give_back(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, const char *reason);
static void ngx_http_peakcache_give_up(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, const char *reason);
static void ngx_http_peakcache_fail(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static void ngx_http_peakcache_commit(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static void ngx_http_peakcache_invalidate(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_int_t ngx_http_peakcache_header_filter(ngx_http_request_t *r);
static ngx_uint_t ngx_http_peakcache_broken_off(ngx_http_request_t *r);
static void ngx_http_peakcache_consume(ngx_chain_t *in);
static ngx_int_t ngx_http_peakcache_header(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_int_t ngx_http_peakcache_push_age(ngx_http_request_t *r,
    uint64_t age);
static ngx_int_t ngx_http_peakcache_forwarded(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_uint_t ngx_http_peakcache_defer(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_int_t ngx_http_peakcache_send_deferred(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, ngx_uint_t last);
static ngx_int_t ngx_http_peakcache_hold_body(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, ngx_buf_t *b);
static ngx_int_t ngx_http_peakcache_send_swapped(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx);
static ngx_int_t ngx_http_peakcache_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_peakcache_purge_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_peakcache_status_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_peakcache_send_text(ngx_http_request_t *r,
    ngx_uint_t status, ngx_str_t *type, u_char *data, size_t len);
static ngx_int_t ngx_http_peakcache_purge_one(ngx_http_peakcache_zone_t *zone,
    ngx_uint_t type, ngx_uint_t soft, u_char *data, size_t len,
    ngx_uint_t *found, ngx_log_t *log);
static void ngx_http_peakcache_log_error(ngx_uint_t level, ngx_log_t *log,
    peakcache_result rc, const char *what);
static void ngx_http_peakcache_log_callback(void *userdata, int level,
    const uint8_t *msg, size_t len);
static ngx_int_t ngx_http_peakcache_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_peakcache_key_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_peakcache_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_peakcache_request_method_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);
static void ngx_http_peakcache_wrap_request_method(ngx_conf_t *cf);
static void * ngx_http_peakcache_create_main_conf(ngx_conf_t *cf);
static char * ngx_http_peakcache_init_main_conf(ngx_conf_t *cf, void *conf);
static void * ngx_http_peakcache_create_loc_conf(ngx_conf_t *cf);
static char * ngx_http_peakcache_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_http_peakcache_zone_t * ngx_http_peakcache_zone_get(ngx_conf_t *cf,
    ngx_str_t *name, ngx_uint_t define);
static char * ngx_http_peakcache_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char * ngx_http_peakcache_purge(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char * ngx_http_peakcache_status_page(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_peakcache_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_peakcache_init_module(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_peakcache_status_region(ngx_http_request_t *r,
    ngx_http_peakcache_zone_t *zone, const uint8_t *data, size_t len);
static void ngx_http_peakcache_zone_config(ngx_http_peakcache_zone_t *zone,
    peakcache_config *cfg);
static ngx_int_t ngx_http_peakcache_open_shared(ngx_conf_t *cf);
static ngx_int_t ngx_http_peakcache_region_owner(ngx_conf_t *cf,
    peakcache_config *cfg);
static void ngx_http_peakcache_shared_cleanup(void *data);
static ngx_int_t ngx_http_peakcache_init_process(ngx_cycle_t *cycle);
static void ngx_http_peakcache_tick(ngx_event_t *ev);
static void ngx_http_peakcache_snapshot_due(ngx_http_peakcache_zone_t *zone,
    ngx_log_t *log);
static ngx_int_t ngx_http_peakcache_snapshot_write(
    ngx_http_peakcache_zone_t *zone, uint64_t *entries, ngx_log_t *log);
static ngx_int_t ngx_http_peakcache_snapshot_restore(
    ngx_http_peakcache_zone_t *zone, uint64_t *restored, uint64_t *skipped,
    ngx_log_t *log);
static ngx_int_t ngx_http_peakcache_log_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_peakcache_admin_action(ngx_http_request_t *r,
    ngx_http_peakcache_zone_t *zone, ngx_str_t *action);
static ngx_int_t ngx_http_peakcache_wants_page(ngx_http_request_t *r);
static void ngx_http_peakcache_exit_process(ngx_cycle_t *cycle);
static char *ngx_http_peakcache(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_peakcache_url_key(ngx_http_request_t *r,
    ngx_http_peakcache_loc_conf_t *plcf, ngx_str_t *url, ngx_str_t *key);
static void ngx_http_peakcache_policy_cleanup(void *data);
static ngx_int_t ngx_http_peakcache_create_policies(ngx_conf_t *cf,
    ngx_http_peakcache_loc_conf_t *prev, ngx_http_peakcache_loc_conf_t *conf);
static peakcache_http_policy *ngx_http_peakcache_policy(ngx_conf_t *cf,
    peakcache_http_config *hcf);


static ngx_str_t  ngx_http_peakcache_status_names[] = {
    ngx_null_string,
    ngx_string("MISS"),
    ngx_string("BYPASS"),
    ngx_string("EXPIRED"),
    ngx_string("STALE"),
    ngx_string("UPDATING"),
    ngx_string("REVALIDATED"),
    ngx_string("HIT")
};


static ngx_command_t  ngx_http_peakcache_commands[] = {

    { ngx_string("peakcache_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_peakcache_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("peakcache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_peakcache,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("peakcache_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_peakcache_loc_conf_t, key),
      NULL },

    { ngx_string("peakcache_bypass"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_set_predicate_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_peakcache_loc_conf_t, bypass),
      NULL },

    { ngx_string("peakcache_no_store"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_set_predicate_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_peakcache_loc_conf_t, no_store),
      NULL },

    { ngx_string("peakcache_lock_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_peakcache_loc_conf_t, lock_timeout),
      NULL },

    { ngx_string("peakcache_default_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_peakcache_loc_conf_t, default_ttl),
      NULL },

    { ngx_string("peakcache_default_swr"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_peakcache_loc_conf_t, default_swr),
      NULL },

    { ngx_string("peakcache_default_sie"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_peakcache_loc_conf_t, default_sie),
      NULL },

    { ngx_string("peakcache_pass_hold"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_peakcache_loc_conf_t, pass_hold),
      NULL },

    { ngx_string("peakcache_max_object_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_peakcache_loc_conf_t, max_object_size),
      NULL },

    { ngx_string("peakcache_origin_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_peakcache_loc_conf_t, origin_concurrency),
      NULL },

    { ngx_string("peakcache_honour_request_directives"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_peakcache_loc_conf_t, honour_request_directives),
      NULL },

    { ngx_string("peakcache_purge"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_peakcache_purge,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("peakcache_status_page"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_peakcache_status_page,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_peakcache_module_ctx = {
    ngx_http_peakcache_add_variables,      /* preconfiguration */
    ngx_http_peakcache_init,               /* postconfiguration */

    ngx_http_peakcache_create_main_conf,   /* create main configuration */
    ngx_http_peakcache_init_main_conf,     /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_peakcache_create_loc_conf,    /* create location configuration */
    ngx_http_peakcache_merge_loc_conf      /* merge location configuration */
};


ngx_module_t  ngx_http_peakcache_module = {
    NGX_MODULE_V1,
    &ngx_http_peakcache_module_ctx,        /* module context */
    ngx_http_peakcache_commands,           /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    ngx_http_peakcache_init_module,        /* init module */
    ngx_http_peakcache_init_process,       /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_peakcache_exit_process,       /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_variable_t  ngx_http_peakcache_vars[] = {

    { ngx_string("peakcache_status"), NULL,
      ngx_http_peakcache_status_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("peakcache_key"), NULL,
      ngx_http_peakcache_key_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

      ngx_http_null_variable
};


static ngx_http_get_variable_pt          ngx_http_peakcache_request_method;
static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;

static ngx_http_peakcache_main_conf_t   *ngx_http_peakcache_mcf;

/* this worker's memos of the hit path */
static ngx_http_peakcache_key_memo_t
                      *ngx_http_peakcache_keys[NGX_HTTP_PEAKCACHE_KEY_SLOTS];
static ngx_http_peakcache_memo_t
                      *ngx_http_peakcache_memos[NGX_HTTP_PEAKCACHE_MEMO_SLOTS];
static size_t          ngx_http_peakcache_memo_bytes;  /* their bodies' */
static uint64_t        ngx_http_peakcache_key_serial;

static ngx_str_t  ngx_http_peakcache_get_method = ngx_string("GET");


/* the precontent phase */

static ngx_int_t
ngx_http_peakcache_handler(ngx_http_request_t *r)
{
    ngx_http_peakcache_ctx_t       *ctx;
    ngx_http_peakcache_loc_conf_t  *plcf;

    ctx = ngx_http_peakcache_get_ctx(r);

    if (ctx) {
        switch (ctx->phase) {

        case NGX_HTTP_PEAKCACHE_PHASE_WAITING:
            return NGX_DONE;

        case NGX_HTTP_PEAKCACHE_PHASE_RESOLVED:
            ctx->phase = NGX_HTTP_PEAKCACHE_PHASE_DONE;
            return ngx_http_peakcache_resolved(r, ctx);

        default:
            if (ctx->unsent) {
                /* a refresh whose upstream request could not be made */
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            /* a background refresh, or a request internally redirected */
            return NGX_DECLINED;
        }
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_peakcache_module);

    if (plcf->zone == NULL || r != r->main) {
        return NGX_DECLINED;
    }

    if (plcf->zone->cache == NULL) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_peakcache_create_ctx(r, plcf->zone, plcf);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->policy != plcf->frozen_policy
        && peakcache_is_frozen(plcf->zone->cache))
    {
        /* what is stored is served as it is: no visitor's directive counts */
        ctx->policy = plcf->frozen_policy;
    }

    ctx->outcome = PEAKCACHE_HTTP_PASS;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        ctx->outcome = PEAKCACHE_HTTP_METHOD;
        return NGX_DECLINED;
    }

    switch (ngx_http_test_predicates(r, plcf->bypass)) {

    case NGX_ERROR:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    case NGX_DECLINED:
        ctx->status = NGX_HTTP_PEAKCACHE_BYPASS;
        return ngx_http_peakcache_to_origin(r, ctx);

    default: /* NGX_OK */
        break;
    }

    switch (ngx_http_peakcache_key(r, ctx)) {

    case NGX_ERROR:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    case NGX_DECLINED:
        /* the HTTP layer found the request not cacheable: forward it */
        ctx->status = NGX_HTTP_PEAKCACHE_BYPASS;
        return ngx_http_peakcache_to_origin(r, ctx);

    default:
        break;
    }

    return ngx_http_peakcache_lookup(r, ctx);
}


static ngx_int_t
ngx_http_peakcache_lookup(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx)
{
    ngx_int_t                    found;
    ngx_uint_t                   outcome;
    peakcache_entry             *known;
    peakcache_result             rc;
    peakcache_lookup_result      lr;
    ngx_http_peakcache_memo_t   *m, **ways;

    /* the memoized entry, handed out again while it is the key's: no copy */

    m = ngx_http_peakcache_memo_linked(ctx);

    if (m == NULL) {
        found = ngx_http_peakcache_memo_find(ctx, &ways);
        m = found >= 0 ? ways[found] : NULL;
    }

    known = NULL;

    if (m) {
        known = m->entry;
        ngx_http_peakcache_memo_prefetch(m);
    }

    rc = peakcache_lookup_known(ctx->zone->cache, ctx->key.data, ctx->key.len,
                                known, &lr);

    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                     "lookup failed, passing to the origin");
        ctx->status = NGX_HTTP_PEAKCACHE_BYPASS;
        return ngx_http_peakcache_to_origin(r, ctx);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "peakcache lookup \"%V\": %ui", &ctx->key,
                   (ngx_uint_t) lr.kind);

    switch (lr.kind) {

    case PEAKCACHE_LOOKUP_FRESH:
    case PEAKCACHE_LOOKUP_STALE:

        if (lr.served == PEAKCACHE_SERVED_FRESH) {
            outcome = PEAKCACHE_HTTP_HIT;

        } else if (lr.served == PEAKCACHE_SERVED_STALE_IF_ERROR) {
            outcome = PEAKCACHE_HTTP_STALE_IF_ERROR;

        } else {
            outcome = PEAKCACHE_HTTP_STALE;
        }

        return ngx_http_peakcache_found(r, ctx, lr.entry, lr.refresh, outcome);

    case PEAKCACHE_LOOKUP_MISS:
        return ngx_http_peakcache_begin_fill(r, ctx, lr.fill);

    case PEAKCACHE_LOOKUP_WAIT:
        return ngx_http_peakcache_begin_wait(r, ctx, lr.waiter);

    default: /* PEAKCACHE_LOOKUP_PASS */
        ctx->status = NGX_HTTP_PEAKCACHE_MISS;
        ctx->outcome = PEAKCACHE_HTTP_PASS;
        return ngx_http_peakcache_to_origin(r, ctx);
    }
}


static ngx_int_t
ngx_http_peakcache_resolved(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx)
{
    peakcache_wait_result  *w;

    w = &ctx->wait;

    switch (w->kind) {

    case PEAKCACHE_WAIT_HIT:
        return ngx_http_peakcache_found(r, ctx, w->entry, NULL,
                                        w->served
                                        == PEAKCACHE_SERVED_STALE_IF_ERROR
                                        ? PEAKCACHE_HTTP_STALE_IF_ERROR
                                        : PEAKCACHE_HTTP_COLLAPSED);

    case PEAKCACHE_WAIT_FILL:
        return ngx_http_peakcache_begin_fill(r, ctx, w->fill);

    case PEAKCACHE_WAIT_FAILED:

        /*
         * The fill failed and nothing stale is left: its failure answers
         * the waiters too (502, error_page applies), so a failing origin
         * gets one request per fill, not one per waiting visitor
         * (Cache-Status: the fetch it collapsed on, and that fetch's status).
         */

        ctx->status = NGX_HTTP_PEAKCACHE_MISS;
        ctx->outcome = PEAKCACHE_HTTP_COLLAPSED;

        if (ngx_http_peakcache_retry_after(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_HTTP_BAD_GATEWAY;

    default:
        /* PASS, TIMED_OUT: fetch for ourselves, store nothing */
        ctx->status = NGX_HTTP_PEAKCACHE_MISS;
        ctx->outcome = PEAKCACHE_HTTP_PASS;
        return ngx_http_peakcache_to_origin(r, ctx);
    }
}


static ngx_int_t
ngx_http_peakcache_begin_fill(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_fill *fill)
{
    uint32_t                         hash;
    peakcache_entry                 *stale;
    ngx_http_peakcache_fill_node_t  *node;

    ctx->status = NGX_HTTP_PEAKCACHE_MISS;
    ctx->outcome = ctx->variant ? PEAKCACHE_HTTP_VARY_MISS
                                : PEAKCACHE_HTTP_MISS;

    /*
     * A request that must not be stored gives the fill back: the next
     * lookup, or a waiter, fills.
     */

    switch (ngx_http_test_predicates(r, ctx->conf->no_store)) {

    case NGX_ERROR:
        peakcache_fill_abandon(fill);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;

    case NGX_DECLINED:
        peakcache_fill_abandon(fill);
        return ngx_http_peakcache_to_origin(r, ctx);

    default:
        break;
    }

    if (ngx_http_peakcache_admit(r, ctx) != NGX_OK) {
        stale = NULL;
        (void) peakcache_fill_fail(&fill, &stale);

        if (stale) {
            ctx->status = NGX_HTTP_PEAKCACHE_STALE;
            ctx->outcome = PEAKCACHE_HTTP_STALE_IF_ERROR;
            ctx->fwd_status = NGX_HTTP_SERVICE_UNAVAILABLE;
            return ngx_http_peakcache_serve(r, ctx, stale);
        }

        return ngx_http_peakcache_busy(r);
    }

    ctx->fill = fill;
    ctx->request_time = ngx_http_peakcache_now();

    ngx_http_peakcache_previous(r, ctx);

    if (r->method == NGX_HTTP_HEAD) {
        /*
         * A HEAD answer has no body to store: the fill fetches GET (as
         * proxy_cache_convert_head), the header filter makes the request a
         * HEAD again and the body filter keeps the body from the client.
         */
        ctx->head = 1;
        ctx->method_name = r->method_name;
        r->method = NGX_HTTP_GET;
        r->method_name = ngx_http_peakcache_get_method;

        if (ctx->viewed) {
            ctx->req.method.data = (const uint8_t *) "GET";
            ctx->req.method.len = 3;
        }
    }

    node = ngx_pcalloc(r->pool, sizeof(ngx_http_peakcache_fill_node_t));
    if (node == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    hash = ngx_crc32_long(ctx->key.data, ctx->key.len);

    if (ngx_str_rbtree_lookup(&ctx->zone->fills, &ctx->key, hash) == NULL) {
        node->sn.node.key = hash;
        node->sn.str = ctx->key;
        ngx_queue_init(&node->waiters);
        ngx_rbtree_insert(&ctx->zone->fills, &node->sn.node);
        ctx->node = node;
    }

    if (ngx_http_peakcache_upstream_request(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r == r->main) {
        /* runs once the content handler has started the upstream request */
        ctx->keep.handler = ngx_http_peakcache_keep_fetching;
        ctx->keep.data = r;
        ctx->keep.log = r->connection->log;
        ngx_post_event(&ctx->keep, &ngx_posted_events);
    }

    return NGX_DECLINED;
}


/*
 * The page is fetched for everyone: a fill whose client leaves (closes its
 * connection, or cancels its HTTP/2 stream) goes on, as proxy_cache's
 * upstream request does for a cacheable response, instead of the upstream
 * ending it when it sees the client gone.  Only the upstream's own check of
 * a broken client connection is replaced (a request still discarding its
 * body, or an upstream not started yet, keeps it); writing to a client that
 * is gone is the body filter's to ignore.
 */

static void
ngx_http_peakcache_keep_fetching(ngx_event_t *ev)
{
    ngx_http_request_t        *r;
    ngx_http_peakcache_ctx_t  *ctx;

    r = ev->data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_peakcache_module);

    if (ctx == NULL || ctx->fill == NULL || r->upstream == NULL
        || r->discard_body || r->connection->error)
    {
        return;
    }

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_request_empty_handler;
}


/*
 * A key past its stale windows may still hold its last response: the fill
 * asks the origin whether it changed (a conditional request from its
 * validators), and a 304 renews it.  Not for a client with preconditions the
 * cache does not evaluate (If-Match, If-Unmodified-Since): the renewed page
 * could not answer them.
 */

static void
ngx_http_peakcache_previous(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx)
{
    peakcache_entry  *prev;

    if (r->headers_in.if_match || r->headers_in.if_unmodified_since) {
        return;
    }

    prev = NULL;

    if (peakcache_fill_previous(ctx->fill, &prev) != PEAKCACHE_OK
        || prev == NULL)
    {
        return;
    }

    if (peakcache_entry_flags(prev) & NGX_HTTP_PEAKCACHE_VARY_MARKER) {
        peakcache_entry_free(prev);
        return;
    }

    ctx->revalidate = prev;
}


static ngx_int_t
ngx_http_peakcache_begin_wait(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_waiter *waiter)
{
    ctx->waiter = waiter;
    ctx->phase = NGX_HTTP_PEAKCACHE_PHASE_WAITING;
    ctx->deadline = ngx_current_msec + ctx->conf->lock_timeout;

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_peakcache_wait_handler;

    ngx_http_peakcache_park(r, ctx);

    return NGX_DONE;
}


/*
 * A waiter waits behind the fill when it runs in this worker (its end wakes
 * the waiter at once), else behind this worker's poller of the key (see
 * ngx_http_peakcache_poll_t); its own timer is its lock timeout.  Without a
 * poller (out of memory), it polls the fill itself.
 */

static void
ngx_http_peakcache_park(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx)
{
    uint32_t                         hash;
    ngx_msec_t                       left;
    ngx_event_t                     *wev;
    ngx_str_node_t                  *sn;
    ngx_http_peakcache_poll_t       *p;
    ngx_http_peakcache_fill_node_t  *node;

    if (!ctx->queued) {
        hash = ngx_crc32_long(ctx->key.data, ctx->key.len);
        sn = ngx_str_rbtree_lookup(&ctx->zone->fills, &ctx->key, hash);

        if (sn) {
            node = (ngx_http_peakcache_fill_node_t *) sn;
            ngx_queue_insert_tail(&node->waiters, &ctx->queue);
            ctx->queued = 1;

        } else {
            p = ngx_http_peakcache_poller(ctx, hash);

            if (p) {
                ngx_queue_insert_tail(&p->waiters, &ctx->queue);
                ctx->queued = 1;
                ctx->poll = p;

                if (!p->event.timer_set) {
                    ngx_add_timer(&p->event, NGX_HTTP_PEAKCACHE_POLL_MS);
                }
            }
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "peakcache wait \"%V\" polled:%d", &ctx->key,
                   ctx->poll != NULL);

    left = (ngx_msec_int_t) (ctx->deadline - ngx_current_msec) > 0
           ? ctx->deadline - ngx_current_msec : 1;

    if (!ctx->queued && left > NGX_HTTP_PEAKCACHE_POLL_MS) {
        left = NGX_HTTP_PEAKCACHE_POLL_MS;
    }

    wev = r->connection->write;

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    ngx_add_timer(wev, left);
}


/* this worker's poller of the fill of ctx->key, made on first use */

static ngx_http_peakcache_poll_t *
ngx_http_peakcache_poller(ngx_http_peakcache_ctx_t *ctx, uint32_t hash)
{
    ngx_str_node_t             *sn;
    ngx_http_peakcache_poll_t  *p;

    sn = ngx_str_rbtree_lookup(&ctx->zone->polls, &ctx->key, hash);

    if (sn) {
        return (ngx_http_peakcache_poll_t *) sn;
    }

    p = ngx_calloc(sizeof(ngx_http_peakcache_poll_t) + ctx->key.len,
                   ngx_cycle->log);
    if (p == NULL) {
        return NULL;
    }

    p->sn.str.data = (u_char *) (p + 1);
    p->sn.str.len = ctx->key.len;
    ngx_memcpy(p->sn.str.data, ctx->key.data, ctx->key.len);
    p->sn.node.key = hash;

    ngx_queue_init(&p->waiters);

    p->zone = ctx->zone;
    p->event.handler = ngx_http_peakcache_poll_handler;
    p->event.data = p;
    p->event.log = ngx_cycle->log;

    ngx_rbtree_insert(&ctx->zone->polls, &p->sn.node);

    return p;
}


/*
 * The poller's timer: the first waiter's handle tells whether the fill is
 * over; then every waiter is woken (each resolves with its own handle; the
 * first has its answer already).
 */

static void
ngx_http_peakcache_poll_handler(ngx_event_t *ev)
{
    ngx_queue_t                *q;
    ngx_http_peakcache_ctx_t   *ctx;
    ngx_http_peakcache_poll_t  *p;

    p = ev->data;

    q = ngx_queue_head(&p->waiters);
    ctx = ngx_queue_data(q, ngx_http_peakcache_ctx_t, queue);

    if (ngx_http_peakcache_poll_waiter(ctx) == NGX_AGAIN) {
        ngx_add_timer(ev, NGX_HTTP_PEAKCACHE_POLL_MS);
        return;
    }

    ctx->answered = 1;

    ngx_http_peakcache_wake(&p->waiters);
    ngx_http_peakcache_poller_free(p);
}


/*
 * Polls the waiter of ctx: NGX_AGAIN while the fill runs, else NGX_OK with
 * the answer in ctx->wait (a poll that failed answers FAILED: the request
 * fetches uncached).
 */

static ngx_int_t
ngx_http_peakcache_poll_waiter(ngx_http_peakcache_ctx_t *ctx)
{
    peakcache_result  rc;

    rc = peakcache_waiter_poll(&ctx->waiter, &ctx->wait);

    if (rc == PEAKCACHE_PENDING) {
        return NGX_AGAIN;
    }

    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR,
                                     ctx->request->connection->log, rc,
                                     "waiter poll failed, fetching uncached");
        peakcache_waiter_free(ctx->waiter);
        ctx->waiter = NULL;
        ngx_memzero(&ctx->wait, sizeof(peakcache_wait_result));
        ctx->wait.kind = PEAKCACHE_WAIT_FAILED;
    }

    return NGX_OK;
}


static void
ngx_http_peakcache_wait_handler(ngx_http_request_t *r)
{
    ngx_event_t               *wev;
    ngx_http_peakcache_ctx_t  *ctx;

    wev = r->connection->write;
    wev->timedout = 0;

    ctx = ngx_http_get_module_ctx(r, ngx_http_peakcache_module);

    if (ctx == NULL || ctx->phase != NGX_HTTP_PEAKCACHE_PHASE_WAITING) {
        return;
    }

    if (!ctx->answered && ngx_http_peakcache_poll_waiter(ctx) == NGX_AGAIN) {

        if ((ngx_msec_int_t) (ngx_current_msec - ctx->deadline) < 0) {
            /* woken by a fill that ended, while a newer one runs */
            ngx_http_peakcache_park(r, ctx);
            return;
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "peakcache: waited %M ms for the fill of \"%V\" "
                      "(peakcache_lock_timeout), fetching uncached",
                      ctx->conf->lock_timeout, &ctx->key);

        peakcache_waiter_free(ctx->waiter);
        ctx->waiter = NULL;
        ngx_memzero(&ctx->wait, sizeof(peakcache_wait_result));
        ctx->wait.kind = PEAKCACHE_WAIT_TIMED_OUT;
    }

    ngx_http_peakcache_unqueue(ctx);

    if (wev->timer_set) {
        ngx_del_timer(wev);
    }

    ctx->answered = 0;
    ctx->phase = NGX_HTTP_PEAKCACHE_PHASE_RESOLVED;

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
}


static ngx_int_t
ngx_http_peakcache_to_origin(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx)
{
    if (ngx_http_peakcache_admit(r, ctx) != NGX_OK) {
        return ngx_http_peakcache_busy(r);
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_peakcache_serve(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx,
    peakcache_entry *entry)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        peakcache_entry_free(entry);
        return rc;
    }

    rc = ngx_http_peakcache_send_entry(r, ctx, entry);

    if (rc == NGX_DECLINED) {
        /* preconditions the cache does not evaluate: the origin answers */
        ctx->served = 0;
        ctx->status = NGX_HTTP_PEAKCACHE_MISS;
        ctx->outcome = PEAKCACHE_HTTP_PASS;
        return ngx_http_peakcache_to_origin(r, ctx);
    }

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/* beyond peakcache_origin_concurrency with nothing to serve */

static ngx_int_t
ngx_http_peakcache_busy(ngx_http_request_t *r)
{
    static ngx_str_t  type = ngx_string("text/plain");
    static u_char     body[] = "origin busy, retry shortly" CRLF;

    if (ngx_http_peakcache_retry_after(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    ngx_http_finalize_request(r,
        ngx_http_peakcache_send_text(r, NGX_HTTP_SERVICE_UNAVAILABLE, &type,
                                     body, sizeof(body) - 1));
    return NGX_DONE;
}


/* "Retry-After: 1" on an answer that says the origin cannot be had now */

static ngx_int_t
ngx_http_peakcache_retry_after(ngx_http_request_t *r)
{
    static ngx_str_t  name = ngx_string("Retry-After");
    static ngx_str_t  one = ngx_string("1");

    return ngx_http_peakcache_add_header(r, &name, (u_char *) "retry-after",
                                         &one);
}


/*
 * Adds "name: value" to the answer's fields; name, lowcase and value must
 * live as long as the request.
 */

static ngx_int_t
ngx_http_peakcache_add_header(ngx_http_request_t *r, ngx_str_t *name,
    u_char *lowcase, ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
#if (nginx_version >= 1023000)
    h->next = NULL;
#endif
    h->key = *name;
    h->value = *value;
    h->lowcase_key = lowcase;

    return NGX_OK;
}


static void
ngx_http_peakcache_start_refresh(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_refresh *refresh,
    peakcache_entry *entry)
{
    ngx_http_request_t        *sr;
    ngx_http_peakcache_ctx_t  *sctx;

    if (ctx->conf->origin_concurrency
        && ctx->zone->origin_active >= ctx->conf->origin_concurrency)
    {
        /* the origin is busy: keep serving stale, a later lookup retries */
        peakcache_refresh_abandon(refresh);
        return;
    }

    if (ngx_http_peakcache_request_view(r, ctx) != NGX_OK) {
        peakcache_refresh_abandon(refresh);
        return;
    }

    if (ngx_http_subrequest(r, &r->uri, &r->args, &sr, NULL,
                            NGX_HTTP_SUBREQUEST_CLONE
                            |NGX_HTTP_SUBREQUEST_BACKGROUND)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "peakcache: could not start the background refresh "
                      "of \"%V\"", &ctx->key);
        peakcache_refresh_abandon(refresh);
        return;
    }

    /*
     * nginx reads a connection's next request only once the background
     * subrequests of this one are over: the client is told to reconnect
     * (Connection: close) rather than wait behind the origin for it.
     */
    r->keepalive = 0;

    /* a HEAD request is refreshed with a GET: the body is what is stored */
    sr->method = NGX_HTTP_GET;
    sr->method_name = ngx_http_core_get_method;
    sr->header_only = 0;

    sctx = ngx_http_peakcache_create_ctx(sr, ctx->zone, ctx->conf);
    if (sctx == NULL) {
        peakcache_refresh_abandon(refresh);
        return;
    }

    sctx->key = ctx->key;
    sctx->authority = ctx->authority;
    sctx->policy = ctx->policy;
    sctx->req = ctx->req;
    sctx->viewed = 1;
    ngx_str_set(&sctx->req.method, "GET");
    sctx->refresh = refresh;
    sctx->variant = ctx->variant;
    sctx->vary = ctx->vary;
    sctx->primary = ctx->primary;
    sctx->background = 1;
    sctx->status = NGX_HTTP_PEAKCACHE_EXPIRED;
    sctx->outcome = PEAKCACHE_HTTP_REVALIDATED;
    sctx->phase = NGX_HTTP_PEAKCACHE_PHASE_DONE;
    sctx->origin = 1;
    sctx->request_time = ngx_http_peakcache_now();
    ctx->zone->origin_active++;
    ctx->zone->counts.origin_requests++;

    /* kept for a 304: the stored response is what it revalidates */
    if (peakcache_entry_clone(entry, &sctx->revalidate) != PEAKCACHE_OK) {
        sctx->revalidate = NULL;
    }

    if (ngx_http_peakcache_upstream_request(sr, sctx) != NGX_OK) {
        /* never the client's request instead: a later lookup retries */
        peakcache_refresh_abandon(sctx->refresh);
        sctx->refresh = NULL;
        sctx->unsent = 1;
    }
}


/*
 * An entry was found.  A response with Vary is stored under its variant's
 * key, and under the primary key a marker holding the Vary value: the
 * marker leads to a second lookup, of the variant.
 */

static ngx_int_t
ngx_http_peakcache_found(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx,
    peakcache_entry *entry, peakcache_refresh *refresh, ngx_uint_t outcome)
{
    if (peakcache_entry_flags(entry) & NGX_HTTP_PEAKCACHE_VARY_MARKER) {

        /* the marker outlives its variants: it needs no refresh of its own */
        peakcache_refresh_abandon(refresh);

        if (ctx->variant
            || ngx_http_peakcache_variant_key(r, ctx, entry) != NGX_OK)
        {
            peakcache_entry_free(entry);
            ctx->status = NGX_HTTP_PEAKCACHE_MISS;
            ctx->outcome = PEAKCACHE_HTTP_PASS;
            return ngx_http_peakcache_to_origin(r, ctx);
        }

        peakcache_entry_free(entry);

        return ngx_http_peakcache_lookup(r, ctx);
    }

    ctx->outcome = outcome;

    switch (outcome) {

    case PEAKCACHE_HTTP_STALE:
        ctx->status = NGX_HTTP_PEAKCACHE_UPDATING;
        break;

    case PEAKCACHE_HTTP_STALE_IF_ERROR:
        ctx->status = NGX_HTTP_PEAKCACHE_STALE;
        break;

    default:
        ctx->status = NGX_HTTP_PEAKCACHE_HIT;
        break;
    }

    if (refresh) {
        ngx_http_peakcache_start_refresh(r, ctx, refresh, entry);
    }

    return ngx_http_peakcache_serve(r, ctx, entry);
}


static uint64_t
ngx_http_peakcache_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


/* the request as the HTTP layer reads it; views into the request's memory */


static ngx_int_t
ngx_http_peakcache_request_view(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx)
{
    peakcache_http_request *req;

    if (ctx->viewed) {
        return NGX_OK;
    }

    req = &ctx->req;

    if (ngx_http_peakcache_headers_view(r, req) != NGX_OK) {
        return NGX_ERROR;
    }

    req->method.data = r->method_name.data;
    req->method.len = r->method_name.len;

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        req->scheme.data = (const uint8_t *) "https";
        req->scheme.len = sizeof("https") - 1;
    } else
#endif
    {
        req->scheme.data = (const uint8_t *) "http";
        req->scheme.len = sizeof("http") - 1;
    }

    if (ctx->authority.data == NULL
        && ngx_http_peakcache_authority(r, &ctx->authority) != NGX_OK)
    {
        return NGX_ERROR;
    }

    req->authority.data = ctx->authority.data;
    req->authority.len = ctx->authority.len;

    req->path.data = r->unparsed_uri.data;
    req->path.len = r->unparsed_uri.len;

    if (ctx->head) {
        /* a HEAD miss is filled by GET */
        req->method.data = (const uint8_t *) "GET";
        req->method.len = 3;
    }

    ctx->viewed = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_peakcache_headers_view(ngx_http_request_t *r,
    peakcache_http_request *req)
{
    ngx_uint_t              i, n;
    ngx_list_part_t        *part;
    ngx_table_elt_t        *h;
    peakcache_http_header  *hh;

    n = 0;
    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    hh = ngx_palloc(r->pool, (n ? n : 1) * sizeof(peakcache_http_header));
    if (hh == NULL) {
        return NGX_ERROR;
    }

    n = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        hh[n].name = h[i].key.data;
        hh[n].name_len = h[i].key.len;
        hh[n].value = h[i].value.data;
        hh[n].value_len = h[i].value.len;
        n++;
    }

    req->headers = hh;
    req->nheaders = n;

    return NGX_OK;
}


static ngx_int_t
ngx_http_peakcache_copy_buf(ngx_http_request_t *r, peakcache_buf *buf,
    ngx_str_t *out)
{
    size_t          len;
    const uint8_t  *data;

    if (peakcache_buf_data(buf, &data, &len) != PEAKCACHE_OK) {
        peakcache_buf_free(buf);
        return NGX_ERROR;
    }

    out->data = ngx_pnalloc(r->pool, len ? len : 1);
    if (out->data == NULL) {
        peakcache_buf_free(buf);
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, data, len);
    out->len = len;

    peakcache_buf_free(buf);

    return NGX_OK;
}


static ngx_int_t
ngx_http_peakcache_variant_key(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_entry *marker)
{
    u_char            *p;
    size_t             len;
    ngx_str_t          vkey, key;
    const uint8_t     *vary;
    peakcache_buf     *buf;
    peakcache_result   rc;

    if (peakcache_entry_body(marker, &vary, &len) != PEAKCACHE_OK
        || ngx_http_peakcache_request_view(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    buf = NULL;
    rc = peakcache_http_variant_key(ctx->policy, &ctx->req, vary, len,
                                    &buf);
    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_INFO, r->connection->log, rc,
                                     "computing the variant key failed");
        return NGX_ERROR;
    }

    if (ngx_http_peakcache_copy_buf(r, buf, &vkey) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->conf->key) {
        /* the operator's key, then the variant part after the NUL */
        p = ngx_strlchr(vkey.data, vkey.data + vkey.len, '\0');
        if (p == NULL) {
            return NGX_ERROR;
        }

        key.len = ctx->key.len + (vkey.data + vkey.len - p);
        key.data = ngx_pnalloc(r->pool, key.len);
        if (key.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ngx_cpymem(key.data, ctx->key.data, ctx->key.len), p,
                   vkey.data + vkey.len - p);
        vkey = key;
    }

    /* the marker's Vary: an answer with another one is not stored under vkey */

    ctx->vary.data = ngx_pnalloc(r->pool, len);
    if (ctx->vary.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->vary.data, vary, len);
    ctx->vary.len = len;

    ctx->primary = ctx->key;
    ctx->key = vkey;
    ctx->variant = 1;

    return NGX_OK;
}


/*
 * What a fill or refresh sends upstream is the HTTP layer's definition (the
 * path without campaign parameters; the fields without hop-by-hop, unkeyed,
 * conditional and framing ones), a bodiless GET; a refresh adds its own
 * validators.  The request's header list is rebuilt as nginx itself builds
 * one, so proxy_set_header, fastcgi_param and proxy's own removals (Connection,
 * TE, Keep-Alive, Expect, Upgrade, Content-Length) apply to it exactly as they
 * would without the cache.
 */


static ngx_int_t
ngx_http_peakcache_upstream_request(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx)
{
    u_char                       *q;
    size_t                        i, n, nreval;
    ngx_str_t                     path;
    ngx_int_t                     rc;
    ngx_table_elt_t              *h;
    peakcache_buf                *pbuf;
    peakcache_result              prc;
    peakcache_http_headers       *list, *reval;
    const peakcache_http_header  *items, *ritems;

    pbuf = NULL;
    list = NULL;
    reval = NULL;
    ritems = NULL;
    nreval = 0;

    if (ngx_http_peakcache_request_view(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    prc = peakcache_http_upstream_request(ctx->policy, &ctx->req, &pbuf,
                                          &list);
    if (prc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, prc,
                                     "preparing the upstream request failed");
        return NGX_ERROR;
    }

    if (ngx_http_peakcache_copy_buf(r, pbuf, &path) != NGX_OK) {
        peakcache_http_headers_free(list);
        return NGX_ERROR;
    }

    if (path.len
        && (path.len != r->unparsed_uri.len
            || ngx_strncmp(path.data, r->unparsed_uri.data, path.len) != 0))
    {
        r->unparsed_uri = path;

        q = ngx_strlchr(path.data, path.data + path.len, '?');

        if (q) {
            r->args.data = q + 1;
            r->args.len = path.data + path.len - q - 1;

        } else {
            r->args.len = 0;
        }
    }

    if (ctx->revalidate
        && peakcache_http_revalidation_headers(ctx->policy,
                                               ctx->revalidate, &reval)
           == PEAKCACHE_OK
        && peakcache_http_headers_items(reval, &ritems, &nreval)
           != PEAKCACHE_OK)
    {
        nreval = 0;
    }

    rc = NGX_ERROR;

    if (peakcache_http_headers_items(list, &items, &n) != PEAKCACHE_OK
        || ngx_http_peakcache_bodiless(r) != NGX_OK
        || ngx_list_init(&r->headers_in.headers, r->pool,
                         ngx_max(n + nreval, 1), sizeof(ngx_table_elt_t))
           != NGX_OK)
    {
        goto done;
    }

    /* the visitor's own conditions are answered from the stored page */
    ctx->conditional = (r == r->main
                        && (r->headers_in.if_none_match
                            || r->headers_in.if_modified_since));

    ngx_http_peakcache_clear_header_shortcuts(r);

    for (i = 0; i < n; i++) {
        h = ngx_http_peakcache_push_header(r, &items[i]);

        if (h == NULL || ngx_http_peakcache_header_shortcut(r, h) != NGX_OK) {
            goto done;
        }
    }

    /*
     * The cache's own validators reach the upstream only: no shortcut, so
     * the filters answering the client never read them as the client's.
     */

    for (i = 0; i < nreval; i++) {
        if (ngx_http_peakcache_push_header(r, &ritems[i]) == NULL) {
            goto done;
        }
    }

    /* what was sent: the store decision is about it, not the visitor's */

    ctx->sent = ctx->req;
    ctx->sent.method.data = (const uint8_t *) "GET";
    ctx->sent.method.len = 3;
    ctx->sent.path.data = r->unparsed_uri.data;
    ctx->sent.path.len = r->unparsed_uri.len;

    if (ngx_http_peakcache_headers_view(r, &ctx->sent) != NGX_OK) {
        goto done;
    }

    rc = NGX_OK;

done:

    peakcache_http_headers_free(list);
    peakcache_http_headers_free(reval);

    return rc;
}


/*
 * A fill or refresh sends no body, and no field saying it has one.  A refresh
 * is a subrequest with its own copy of headers_in: its framing is cleared.  A
 * fill is the client's request itself, whose body must still leave the
 * connection: nginx discards a body by counting it down in
 * headers_in.content_length_n, so the framing can be cleared only once it is
 * gone.  A body that arrived with the header is discarded now; any other one is
 * never read, and the connection is closed after the answer (a lingering close
 * drops the rest), so no byte of it is ever taken for a request.
 */

static ngx_int_t
ngx_http_peakcache_bodiless(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    if (r != r->main) {
        r->request_body = NULL;

    } else {
        /* nothing invites the client to send a body (100 Continue) */
        r->expect_tested = 1;

        if (r->headers_in.content_length_n > 0 || r->headers_in.chunked) {

            if (
#if (NGX_HTTP_V2)
                r->stream ||
#endif
                (!r->headers_in.chunked
                 && r->header_in->last - r->header_in->pos
                    >= r->headers_in.content_length_n))
            {
                rc = ngx_http_discard_request_body(r);
                if (rc != NGX_OK) {
                    return NGX_ERROR;
                }

            } else {
                r->keepalive = 0;
                r->lingering_close = 1;
            }
        }
    }

    r->headers_in.content_length_n = -1;
    r->headers_in.chunked = 0;

    return NGX_OK;
}


/* a header field as nginx's parser makes one: hashed, its name lowercased */

static ngx_table_elt_t *
ngx_http_peakcache_push_header(ngx_http_request_t *r,
    const peakcache_http_header *item)
{
    u_char           *p;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_in.headers);
    if (h == NULL) {
        return NULL;
    }

    p = ngx_pnalloc(r->pool, 2 * (item->name_len + 1) + item->value_len + 1);
    if (p == NULL) {
        return NULL;
    }

    h->key.len = item->name_len;
    h->key.data = p;
    p = ngx_cpymem(p, item->name, item->name_len);
    *p++ = '\0';

    h->lowcase_key = p;
    h->hash = ngx_hash_strlow(h->lowcase_key, h->key.data, h->key.len);
    p += item->name_len;
    *p++ = '\0';

    h->value.len = item->value_len;
    h->value.data = p;
    p = ngx_cpymem(p, item->value, item->value_len);
    *p = '\0';

#if (nginx_version >= 1023000)
    h->next = NULL;
#endif

    return h;
}


/*
 * The shortcuts of headers_in (host, cookies, user_agent, range, ...) point
 * into the header list: they are cleared, then set again from the new list,
 * as nginx's parser sets them, for every field nginx knows.
 */

#if (nginx_version < 1023000)

static ngx_array_t *
ngx_http_peakcache_multi_shortcut(ngx_http_request_t *r, ngx_http_header_t *hh)
{
    /* before 1.23, the fields that may repeat are arrays */

#if (NGX_HTTP_X_FORWARDED_FOR)
    if (hh->offset == offsetof(ngx_http_headers_in_t, x_forwarded_for)) {
        return &r->headers_in.x_forwarded_for;
    }
#endif

    if (hh->offset == offsetof(ngx_http_headers_in_t, cookies)) {
        return &r->headers_in.cookies;
    }

    return NULL;
}

#endif


static void
ngx_http_peakcache_clear_header_shortcuts(ngx_http_request_t *r)
{
#if (nginx_version < 1023000)
    ngx_array_t        *a;
#endif
    ngx_http_header_t  *hh;

    for (hh = ngx_http_headers_in; hh->name.len; hh++) {

#if (nginx_version < 1023000)
        a = ngx_http_peakcache_multi_shortcut(r, hh);

        if (a) {
            /* a subrequest's copy shares its parent's elements: never reused */
            ngx_memzero(a, sizeof(ngx_array_t));
            continue;
        }
#endif

        *(ngx_table_elt_t **) ((char *) &r->headers_in + hh->offset) = NULL;
    }
}


static ngx_int_t
ngx_http_peakcache_header_shortcut(ngx_http_request_t *r, ngx_table_elt_t *h)
{
#if (nginx_version < 1023000)
    ngx_array_t                 *a;
#endif
    ngx_table_elt_t            **ph;
    ngx_http_header_t           *hh;
    ngx_http_core_main_conf_t   *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_core_module);

    hh = ngx_hash_find(&cmcf->headers_in_hash, h->hash, h->lowcase_key,
                       h->key.len);
    if (hh == NULL) {
        return NGX_OK;
    }

    ph = (ngx_table_elt_t **) ((char *) &r->headers_in + hh->offset);

#if (nginx_version < 1023000)

    a = ngx_http_peakcache_multi_shortcut(r, hh);

    if (a) {
        if (a->nalloc == 0
            && ngx_array_init(a, r->pool, 2, sizeof(ngx_table_elt_t *))
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        ph = ngx_array_push(a);
        if (ph == NULL) {
            return NGX_ERROR;
        }

        *ph = h;

        return NGX_OK;
    }

    /* the first of the field's lines, as nginx's parser keeps */

    if (*ph == NULL) {
        *ph = h;
    }

#else

    /* every line of the field, chained */

    while (*ph) {
        ph = &(*ph)->next;
    }

    *ph = h;

#endif

    return NGX_OK;
}


/* the headers to send from an entry, and which of them nginx must know */


/*
 * The answer to a request that has none of the conditional fields the HTTP
 * layer evaluates (If-None-Match, If-Modified-Since, If-Match,
 * If-Unmodified-Since): for a GET or HEAD, under a policy that ignores request
 * directives, it is the stored response with Age and Cache-Status, whatever
 * else the request holds.
 */

static ngx_uint_t
ngx_http_peakcache_plain(ngx_http_request_t *r)
{
    return r->headers_in.if_none_match == NULL
           && r->headers_in.if_modified_since == NULL
           && r->headers_in.if_match == NULL
           && r->headers_in.if_unmodified_since == NULL;
}


static ngx_int_t
ngx_http_peakcache_answer(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx,
    peakcache_entry *entry, size_t body_len)
{
    size_t                        n;
    uint64_t                      now;
    peakcache_result              rc;
    peakcache_http_answer         a;
    ngx_http_peakcache_memo_t    *m;
    ngx_http_peakcache_clock_t   *c;
    const peakcache_http_header  *items;

    now = ngx_http_peakcache_now();

    if (ngx_http_peakcache_memoizable(r, ctx)) {

        m = ngx_http_peakcache_memo_get(r, ctx, entry, body_len, now);
        c = m ? ngx_http_peakcache_memo_clock(m, ctx->outcome, ctx->fwd_status,
                                              now)
              : NULL;

        if (c) {
            if (ngx_http_peakcache_memo_apply(r, m, c) != NGX_OK) {
                return NGX_ERROR;
            }

            m->refs++;
            ctx->memo = m;
            r->disable_not_modified = 1;
            ctx->served = 1;
            return NGX_OK;
        }
    }

    if (ngx_http_peakcache_request_view(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = peakcache_http_serve(ctx->policy, &ctx->req, entry,
                              (uint32_t) ctx->outcome,
                              (uint16_t) ctx->fwd_status, now, &a);
    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                     "answering from the entry failed");
        return NGX_DECLINED;
    }

    if (a.kind == PEAKCACHE_HTTP_FORWARD) {
        peakcache_http_headers_free(a.headers);
        return NGX_DECLINED;
    }

    if (ngx_http_peakcache_hold(r, NULL, a.headers) != NGX_OK) {
        return NGX_ERROR;
    }

    if (peakcache_http_headers_items(a.headers, &items, &n) != PEAKCACHE_OK) {
        return NGX_ERROR;
    }

    m = ngx_pcalloc(r->pool, sizeof(ngx_http_peakcache_memo_t));
    if (m == NULL) {
        return NGX_ERROR;
    }

    m->elts = ngx_palloc(r->pool, (n ? n : 1) * sizeof(ngx_table_elt_t));
    if (m->elts == NULL) {
        return NGX_ERROR;
    }

    m->status = a.status;
    ngx_http_peakcache_memo_fill(m, items, n);

    if (ngx_http_peakcache_memo_apply(r, m, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    /* the HTTP layer has answered the client's conditions */
    r->disable_not_modified = 1;

    ctx->served = 1;

    return NGX_OK;
}


/*
 * Whether the answer may come from the memo: a plain request (see
 * ngx_http_peakcache_plain) answered with an entry, as a hit (fresh or
 * stale) or as the answer of another request's fill, under a policy that
 * ignores request directives.  Then the HTTP layer's answer depends on the
 * entry, and on the outcome and the time through its Age and Cache-Status
 * alone.
 */

static ngx_uint_t
ngx_http_peakcache_memoizable(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx)
{
    return (ctx->outcome == PEAKCACHE_HTTP_HIT
            || ctx->outcome == PEAKCACHE_HTTP_COLLAPSED
            || ctx->outcome == PEAKCACHE_HTTP_STALE
            || ctx->outcome == PEAKCACHE_HTTP_STALE_IF_ERROR)
           && ctx->policy == ctx->conf->frozen_policy
           && ngx_http_peakcache_plain(r);
}


/*
 * The memoized answer to a plain hit of `entry`: the HTTP layer's own answer
 * (peakcache_http_serve), kept as long as the entry is the key's, with its
 * clocks (see memo_clock).  A memo is found by its key and zone, and holds
 * when its peakcache_entry_id is the entry's: the same for every handle of
 * one stored value (the shared backend hands out a new handle, a fresh copy,
 * on a hit that is not peakcache_lookup_known's) and another once the value
 * is replaced; the memo holds a reference to the entry, so the id stays
 * unique while it lives.
 */

static ngx_http_peakcache_memo_t *
ngx_http_peakcache_memo_get(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_entry *entry, size_t body_len,
    uint64_t now)
{
    uint64_t                     id;
    ngx_int_t                    found;
    ngx_http_peakcache_memo_t   *m, **ways;

    if (body_len > NGX_HTTP_PEAKCACHE_MEMO_BODY) {
        return NULL;
    }

    id = peakcache_entry_id(entry);
    if (id == 0) {
        return NULL;
    }

    m = ngx_http_peakcache_memo_linked(ctx);

    if (m && m->id == id && m->policy == ctx->policy) {
        return m;
    }

    found = ngx_http_peakcache_memo_find(ctx, &ways);

    if (found >= 0) {
        m = ways[found];

        if (m->id == id && m->policy == ctx->policy) {
            ngx_http_peakcache_memo_link(ctx, m);
            return m;
        }
    }

    if (ngx_http_peakcache_memo_bytes + body_len + ctx->key.len
        > NGX_HTTP_PEAKCACHE_MEMO_BYTES)
    {
        return NULL;
    }

    m = ngx_http_peakcache_memo_new(r, ctx, entry, id, now);
    if (m == NULL) {
        return NULL;
    }

    m->body_len = body_len;

    ngx_http_peakcache_memo_put(ways, found, m);
    ngx_http_peakcache_memo_link(ctx, m);

    return m;
}


/* the slots ctx->key's memo goes in; the way it is in, or -1 */

static ngx_int_t
ngx_http_peakcache_memo_find(ngx_http_peakcache_ctx_t *ctx,
    ngx_http_peakcache_memo_t ***ways)
{
    ngx_uint_t                  i;
    ngx_http_peakcache_memo_t  *m;

    /*
     * A hit looks here twice (its lookup, its answer): the key is hashed
     * once.  A new key (a variant's) is a new string.
     */

    if (ctx->memo_ways == NULL
        || ctx->memo_key.data != ctx->key.data
        || ctx->memo_key.len != ctx->key.len)
    {
        ctx->memo_ways = &ngx_http_peakcache_memos[
                             ngx_murmur_hash2(ctx->key.data, ctx->key.len)
                             & (NGX_HTTP_PEAKCACHE_MEMO_SLOTS - 2)];
        ctx->memo_key = ctx->key;
    }

    *ways = ctx->memo_ways;

    for (i = 0; i < 2; i++) {
        m = (*ways)[i];

        if (m
            && m->zone == ctx->zone
            && m->key.len == ctx->key.len
            && ngx_memcmp(m->key.data, ctx->key.data, m->key.len) == 0)
        {
            return i;
        }
    }

    return -1;
}


/*
 * Puts `m` first in its pair of slots: in place of the memo of its key's
 * former entry (way `found`), if any, else of the older of the pair.
 */

static void
ngx_http_peakcache_memo_put(ngx_http_peakcache_memo_t **ways, ngx_int_t found,
    ngx_http_peakcache_memo_t *m)
{
    ngx_http_peakcache_memo_t  *old;

    old = ways[found >= 0 ? found : 1];

    if (old) {
        ngx_http_peakcache_memo_bytes -= old->body_len + old->key.len;
        ngx_http_peakcache_memo_unlink(old);
        ngx_http_peakcache_memo_release(old);
    }

    if (found != 0) {
        ways[1] = ways[0];
    }

    ways[0] = m;
    ngx_http_peakcache_memo_bytes += m->body_len + m->key.len;
}


/*
 * A request target's key memo links to the memo of its key, and that memo
 * back (at most one each way): a hit of a target already seen finds its
 * answer without the memo table.  A link lives while both are in their
 * tables: a memo put out of its table, or a key memo freed, unlinks.  A
 * request remembers its target's key memo with the slots it was in and its
 * serial: found there again, it is the same one, alive.
 */

static void
ngx_http_peakcache_target_set(ngx_http_peakcache_ctx_t *ctx,
    ngx_http_peakcache_key_memo_t **ways, ngx_http_peakcache_key_memo_t *k)
{
    ctx->target = k;
    ctx->target_ways = ways;
    ctx->target_serial = k->serial;
    ctx->target_key = ctx->key.data;
}


/* the request's target's key memo, if it is still alive and ctx->key is its */

static ngx_http_peakcache_key_memo_t *
ngx_http_peakcache_target(ngx_http_peakcache_ctx_t *ctx)
{
    ngx_http_peakcache_key_memo_t  *k;

    k = ctx->target;

    if (k == NULL
        || ctx->key.data != ctx->target_key
        || (ctx->target_ways[0] != k && ctx->target_ways[1] != k)
        || k->serial != ctx->target_serial)
    {
        return NULL;
    }

    return k;
}


static ngx_http_peakcache_memo_t *
ngx_http_peakcache_memo_linked(ngx_http_peakcache_ctx_t *ctx)
{
    ngx_http_peakcache_memo_t      *m;
    ngx_http_peakcache_key_memo_t  *k;

    k = ngx_http_peakcache_target(ctx);
    m = k ? k->memo : NULL;

    return m && m->zone == ctx->zone ? m : NULL;
}


static void
ngx_http_peakcache_memo_link(ngx_http_peakcache_ctx_t *ctx,
    ngx_http_peakcache_memo_t *m)
{
    ngx_http_peakcache_key_memo_t  *k;

    k = ngx_http_peakcache_target(ctx);

    if (k == NULL || k->memo == m) {
        return;
    }

    if (k->memo) {
        k->memo->target = NULL;
    }

    ngx_http_peakcache_memo_unlink(m);

    k->memo = m;
    m->target = k;
}


/*
 * What answering from `m` reads (its fields, their names and values, the
 * hit's clock), on its way into the cache while the region is asked whether
 * the memo's entry is still the key's.
 */

static void
ngx_http_peakcache_memo_prefetch(ngx_http_peakcache_memo_t *m)
{
    u_char  *p, *last;

    last = (u_char *) m + m->bytes;

    for (p = (u_char *) m->elts; p < last; p += 64) {
        __builtin_prefetch(p);
    }

    __builtin_prefetch(&m->clock[0]);
}


static void
ngx_http_peakcache_memo_unlink(ngx_http_peakcache_memo_t *m)
{
    if (m->target) {
        m->target->memo = NULL;
        m->target = NULL;
    }
}


static void
ngx_http_peakcache_key_memo_free(ngx_http_peakcache_key_memo_t *k)
{
    if (k->memo) {
        k->memo->target = NULL;
    }

    ngx_free(k);
}


/*
 * A memo of the HTTP layer's answer to a plain GET hit of `entry` at `now`;
 * NULL when the answer is not a stored response whose Age and Cache-Status
 * fields are the clock's (checked: the memo then never differs from the
 * HTTP layer's answer).
 */

static ngx_http_peakcache_memo_t *
ngx_http_peakcache_memo_new(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_entry *entry, uint64_t id,
    uint64_t now)
{
    u_char                       *p;
    size_t                        i, n, size, strings;
    peakcache_result              rc;
    peakcache_http_answer         a;
    peakcache_http_header        *own;
    peakcache_http_request        req;
    ngx_table_elt_t              *h;
    ngx_http_peakcache_memo_t    *m;
    ngx_http_peakcache_clock_t   *c;
    const peakcache_http_header  *items;

    ngx_memzero(&req, sizeof(peakcache_http_request));
    req.method.data = (const uint8_t *) "GET";
    req.method.len = 3;

    rc = peakcache_http_serve(ctx->policy, &req, entry, PEAKCACHE_HTTP_HIT, 0,
                              now, &a);
    if (rc != PEAKCACHE_OK) {
        return NULL;
    }

    if (a.kind != PEAKCACHE_HTTP_SEND_STORED
        || peakcache_http_headers_items(a.headers, &items, &n) != PEAKCACHE_OK)
    {
        peakcache_http_headers_free(a.headers);
        return NULL;
    }

    /*
     * One allocation: the memo, its fields, its key, then the fields'
     * names and values side by side, so that a hit reads a few neighbouring
     * lines, not one allocation per value.
     */

    strings = 0;

    for (i = 0; i < n; i++) {
        strings += items[i].name_len + items[i].value_len;
    }

    size = sizeof(ngx_http_peakcache_memo_t)
           + (n ? n : 1) * sizeof(ngx_table_elt_t) + ctx->key.len + strings;

    own = ngx_palloc(r->pool, (n ? n : 1) * sizeof(peakcache_http_header));
    m = ngx_alloc(size, r->connection->log);

    if (own == NULL || m == NULL) {
        peakcache_http_headers_free(a.headers);
        if (m) {
            ngx_free(m);
        }
        return NULL;
    }

    ngx_memzero(m, sizeof(ngx_http_peakcache_memo_t));

    m->refs = 1;
    m->bytes = size;
    m->elts = (ngx_table_elt_t *) (m + 1);
    m->key.data = (u_char *) (m->elts + (n ? n : 1));
    m->key.len = ctx->key.len;
    p = ngx_cpymem(m->key.data, ctx->key.data, ctx->key.len);

    for (i = 0; i < n; i++) {
        own[i] = items[i];
        own[i].name = p;
        p = ngx_cpymem(p, items[i].name, items[i].name_len);
        own[i].value = p;
        p = ngx_cpymem(p, items[i].value, items[i].value_len);
    }

    peakcache_http_headers_free(a.headers);

    if (peakcache_entry_clone(entry, &m->entry) != PEAKCACHE_OK) {
        ngx_http_peakcache_memo_release(m);
        return NULL;
    }

    m->id = id;
    m->zone = ctx->zone;
    m->policy = ctx->policy;
    m->status = a.status;

    ngx_http_peakcache_memo_fill(m, own, n);

    c = NULL;

    if (m->age >= 0 && m->cache_status >= 0) {
        c = ngx_http_peakcache_memo_clock(m, PEAKCACHE_HTTP_HIT, 0, now);
    }

    if (c == NULL) {
        ngx_http_peakcache_memo_release(m);
        return NULL;
    }

    h = &m->elts[m->age];

    if (h->value.len != c->age_len
        || ngx_strncmp(h->value.data, c->age, c->age_len) != 0)
    {
        ngx_http_peakcache_memo_release(m);
        return NULL;
    }

    h = &m->elts[m->cache_status];

    if (h->value.len != c->status_len
        || ngx_strncmp(h->value.data, c->status, c->status_len) != 0)
    {
        ngx_http_peakcache_memo_release(m);
        return NULL;
    }

    return m;
}


/*
 * The Age and Cache-Status of a memoized answer for `outcome` (a hit, a
 * waiter's hit, a stale hit) and `fwd_status` at `now`, from the HTTP layer,
 * kept as long as it says they hold; NULL if it could not say (or the member
 * is longer than a clock keeps).
 */

static ngx_http_peakcache_clock_t *
ngx_http_peakcache_memo_clock(ngx_http_peakcache_memo_t *m,
    ngx_uint_t outcome, ngx_uint_t fwd_status, uint64_t now)
{
    size_t                       len;
    uint64_t                     age, until;
    ngx_http_peakcache_clock_t  *c;

    c = &m->clock[ngx_http_peakcache_clock_slot(outcome)];

    if (c->valid_from
        && c->fwd_status == fwd_status
        && now >= c->valid_from
        && now < c->valid_until)
    {
        return c;
    }

    c->valid_from = 0;

    if (peakcache_http_clock(m->policy, (uint32_t) outcome,
                             (uint16_t) fwd_status, m->entry, now, &age,
                             &until, c->status, sizeof(c->status), &len)
        != PEAKCACHE_OK)
    {
        return NULL;
    }

    c->status_len = len;
    c->age_len = ngx_sprintf(c->age, "%uL", age) - c->age;
    c->fwd_status = fwd_status;
    c->valid_from = now;
    c->valid_until = until;

    return c;
}


/* each outcome the memo answers keeps its own clock */

static ngx_uint_t
ngx_http_peakcache_clock_slot(ngx_uint_t outcome)
{
    switch (outcome) {

    case PEAKCACHE_HTTP_COLLAPSED:
        return 1;

    case PEAKCACHE_HTTP_STALE:
        return 2;

    case PEAKCACHE_HTTP_STALE_IF_ERROR:
        return 3;

    default: /* PEAKCACHE_HTTP_HIT */
        return 0;
    }
}


static void
ngx_http_peakcache_memo_release(ngx_http_peakcache_memo_t *m)
{
    if (--m->refs) {
        return;
    }

    peakcache_entry_free(m->entry);
    ngx_free(m);
}


static void
ngx_http_peakcache_memo_clear(void)
{
    ngx_uint_t  i;

    for (i = 0; i < NGX_HTTP_PEAKCACHE_MEMO_SLOTS; i++) {
        if (ngx_http_peakcache_memos[i]) {
            ngx_http_peakcache_memo_unlink(ngx_http_peakcache_memos[i]);
            ngx_http_peakcache_memo_release(ngx_http_peakcache_memos[i]);
            ngx_http_peakcache_memos[i] = NULL;
        }
    }

    ngx_http_peakcache_memo_bytes = 0;

    for (i = 0; i < NGX_HTTP_PEAKCACHE_KEY_SLOTS; i++) {
        if (ngx_http_peakcache_keys[i]) {
            ngx_http_peakcache_key_memo_free(ngx_http_peakcache_keys[i]);
            ngx_http_peakcache_keys[i] = NULL;
        }
    }
}


static ngx_int_t
ngx_http_peakcache_hold(ngx_http_request_t *r, peakcache_entry *entry,
    peakcache_http_headers *headers)
{
    ngx_pool_cleanup_t                  *cln;
    ngx_http_peakcache_entry_cleanup_t  *ec;

    cln = ngx_pool_cleanup_add(r->pool,
                               sizeof(ngx_http_peakcache_entry_cleanup_t));
    if (cln == NULL) {
        peakcache_entry_free(entry);
        peakcache_http_headers_free(headers);
        return NGX_ERROR;
    }

    ec = cln->data;
    ec->entry = entry;
    ec->headers = headers;
    cln->handler = ngx_http_peakcache_entry_cleanup;

    return NGX_OK;
}


static ngx_int_t
ngx_http_peakcache_response_view(ngx_http_request_t *r,
    peakcache_http_response_head *head)
{
    u_char                 *p;
    size_t                  len;
    ngx_uint_t              i, n;
    ngx_list_part_t        *part;
    ngx_table_elt_t        *h;
    peakcache_http_header  *hh;

    n = 2;
    for (part = &r->headers_out.headers.part; part; part = part->next) {
        n += part->nelts;
    }

    if (r->upstream) {
        for (part = &r->upstream->headers_in.headers.part;
             part;
             part = part->next)
        {
            n += part->nelts;
        }
    }

    hh = ngx_palloc(r->pool, n * sizeof(peakcache_http_header));
    if (hh == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    if (r->headers_out.date == NULL) {

        /*
         * The upstream hides the origin's Date from the client
         * (proxy_hide_header), but the response's age is counted from it.
         * Without one, the HTTP layer counts from when the response came,
         * to the millisecond; but a 304 merged without one would keep the
         * stored Date, and the renewed entry would be as old as the one it
         * renews: it gets the second after it came (an HTTP date has
         * seconds; rounded down, it would age the page by up to a second).
         */

        if (r->upstream && r->upstream->headers_in.date) {
            hh[n].name = (const uint8_t *) "Date";
            hh[n].name_len = sizeof("Date") - 1;
            hh[n].value = r->upstream->headers_in.date->value.data;
            hh[n].value_len = r->upstream->headers_in.date->value.len;
            n++;

        } else if (r->headers_out.status == NGX_HTTP_NOT_MODIFIED) {
            p = ngx_pnalloc(r->pool, sizeof("Mon, 28 Sep 1970 06:00:00 GMT"));
            if (p == NULL) {
                return NGX_ERROR;
            }

            hh[n].name = (const uint8_t *) "Date";
            hh[n].name_len = sizeof("Date") - 1;
            hh[n].value = p;
            hh[n].value_len = ngx_http_time(p, ngx_time() + 1) - p;
            n++;
        }
    }

    if (r->headers_out.content_type.len) {
        p = r->headers_out.content_type.data;
        len = r->headers_out.content_type.len;

        /* as nginx's header filter: a charset not in the value already */

        if (r->headers_out.content_type_len == r->headers_out.content_type.len
            && r->headers_out.charset.len)
        {
            len += sizeof("; charset=") - 1 + r->headers_out.charset.len;

            p = ngx_pnalloc(r->pool, len);
            if (p == NULL) {
                return NGX_ERROR;
            }

            ngx_sprintf(p, "%V; charset=%V", &r->headers_out.content_type,
                        &r->headers_out.charset);
        }

        hh[n].name = (const uint8_t *) "Content-Type";
        hh[n].name_len = sizeof("Content-Type") - 1;
        hh[n].value = p;
        hh[n].value_len = len;
        n++;
    }

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash == 0) {
            continue;
        }

        hh[n].name = h[i].key.data;
        hh[n].name_len = h[i].key.len;
        hh[n].value = h[i].value.data;
        hh[n].value_len = h[i].value.len;
        n++;
    }

    /*
     * The upstream keeps the origin's Connection from headers_out, but the
     * HTTP layer must see it: the fields it names are not stored.
     */

    for (part = r->upstream ? &r->upstream->headers_in.headers.part : NULL;
         part;
         part = part->next)
    {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {

            if (!ngx_http_peakcache_is_connection(&h[i])) {
                continue;
            }

            hh[n].name = h[i].key.data;
            hh[n].name_len = h[i].key.len;
            hh[n].value = h[i].value.data;
            hh[n].value_len = h[i].value.len;
            n++;
        }
    }

    head->status = (uint16_t) r->headers_out.status;
    head->headers = hh;
    head->nheaders = n;

    return NGX_OK;
}


static ngx_uint_t
ngx_http_peakcache_is_connection(ngx_table_elt_t *h)
{
    return h->hash
           && h->key.len == sizeof("Connection") - 1
           && ngx_strncasecmp(h->key.data, (u_char *) "Connection",
                              h->key.len)
              == 0;
}


/*
 * Whether the origin's Connection names the field `name`: a field meant for
 * the hop between the origin and nginx alone (RFC 9110 section 7.6.1), which
 * the upstream module would forward to the client.
 */

static ngx_uint_t
ngx_http_peakcache_hop_field(ngx_http_request_t *r, ngx_str_t *name)
{
    u_char           *p, *last, *start;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    for (part = r->upstream ? &r->upstream->headers_in.headers.part : NULL;
         part;
         part = part->next)
    {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {

            if (!ngx_http_peakcache_is_connection(&h[i])) {
                continue;
            }

            p = h[i].value.data;
            last = p + h[i].value.len;

            while (p < last) {

                while (p < last && (*p == ',' || *p == ' ' || *p == '\t')) {
                    p++;
                }

                start = p;

                while (p < last && *p != ',' && *p != ' ' && *p != '\t') {
                    p++;
                }

                if ((size_t) (p - start) == name->len
                    && ngx_strncasecmp(start, name->data, name->len) == 0)
                {
                    return 1;
                }
            }
        }
    }

    return 0;
}


/*
 * Whether an origin error must give way to the stored page (RFC 5861 section
 * 4): a refresh keeps serving it, a fill serves the previous page while it is
 * inside its stale-if-error window.  Otherwise a 5xx the origin gives a
 * lifetime is a response like any other (RFC 9111 section 3).
 */

static ngx_uint_t
ngx_http_peakcache_stale_on_error(ngx_http_peakcache_ctx_t *ctx)
{
    ngx_uint_t        stale;
    peakcache_entry  *prev;

    if (ctx->fill == NULL) {
        return 1;
    }

    prev = NULL;

    if (peakcache_fill_previous(ctx->fill, &prev) != PEAKCACHE_OK
        || prev == NULL)
    {
        return 0;
    }

    stale = peakcache_http_stale_if_error(prev, ngx_http_peakcache_now());

    peakcache_entry_free(prev);

    return stale;
}


/*
 * The origin failed: the fill or refresh fails, and a main request is sent
 * the stale-if-error entry the fill hands back, if any, instead of the error.
 */

static ngx_int_t
ngx_http_peakcache_origin_error(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx)
{
    ngx_uint_t  status;

    status = r->headers_out.status;

    ngx_http_peakcache_fail(r, ctx);

    if (ctx->stale && r == r->main) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "peakcache: origin failed (%ui), serving a stale "
                      "\"%V\"", status, &ctx->key);

        ctx->status = NGX_HTTP_PEAKCACHE_STALE;
        ctx->outcome = PEAKCACHE_HTTP_STALE_IF_ERROR;
        ctx->fwd_status = status;

        return ngx_http_peakcache_swap(r, ctx);
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "peakcache: origin failed (%ui) for \"%V\", "
                  "nothing stale to serve", status, &ctx->key);

    return NGX_OK;
}


/*
 * The store decision for a fill or a refresh, at the response's head.
 * Sets ctx->capture when the body is to be kept.
 */


static ngx_int_t
ngx_http_peakcache_store_header(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx)
{
    size_t                         vlen;
    ngx_uint_t                     status, found, failed;
    const uint8_t                 *vary;
    peakcache_result               rc;
    peakcache_http_request        *sent;
    peakcache_http_decision        d;
    peakcache_http_response_head   head;

    status = r->headers_out.status;
    failed = ngx_http_peakcache_origin_failed(r);

    if (ctx->redirected
        || r->upstream == NULL
        || r->upstream->headers_in.status_n != status)
    {
        if (failed) {
            /* nginx's own 502 or 504: the origin never answered */
            return ngx_http_peakcache_origin_error(r, ctx);
        }

        /*
         * Not the origin's answer to the requested URL: an error_page, an
         * X-Accel-Redirect or another internal redirect answered instead.
         */
        ngx_http_peakcache_give_back(r, ctx, "not the upstream's response");
        return NGX_OK;
    }

    if (failed && ngx_http_peakcache_stale_on_error(ctx)) {
        return ngx_http_peakcache_origin_error(r, ctx);
    }

    switch (ngx_http_test_predicates(r, ctx->conf->no_store)) {

    case NGX_ERROR:
        return NGX_ERROR;

    case NGX_DECLINED:
        if (failed) {
            return ngx_http_peakcache_origin_error(r, ctx);
        }

        /* no_store on the response (e.g. $upstream_http_x_private) */
        ngx_http_peakcache_give_up(r, ctx, "peakcache_no_store");
        return NGX_OK;

    default:
        break;
    }

    if (ngx_http_peakcache_response_view(r, &head) != NGX_OK
        || ngx_http_peakcache_request_view(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    sent = ctx->sent.method.len ? &ctx->sent : &ctx->req;

    ngx_memzero(&d, sizeof(peakcache_http_decision));

    if (status == NGX_HTTP_NOT_MODIFIED && ctx->revalidate) {
        return ngx_http_peakcache_renew(r, ctx, sent, &head);
    }

    rc = peakcache_http_on_response(ctx->policy, sent, &head,
                                    ctx->request_time,
                                    ngx_http_peakcache_now(), &d);

    if (failed && (rc != PEAKCACHE_OK || d.reason != PEAKCACHE_HTTP_STORE)) {
        /* an error the origin gave no lifetime: a failure (stale-if-error) */
        return ngx_http_peakcache_origin_error(r, ctx);
    }

    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_INFO, r->connection->log, rc,
                                     "response not cacheable");
        ngx_http_peakcache_give_up(r, ctx, "malformed response");
        return NGX_OK;
    }

    if (d.reason != PEAKCACHE_HTTP_STORE) {
        ngx_http_peakcache_not_stored(r, ctx, d.reason);
        return NGX_OK;
    }

    ctx->store = d.store;
    ctx->ttl = d.ttl_ms;
    ctx->swr = d.swr_ms;
    ctx->sie = d.sie_ms;

    if (r->headers_out.content_length_n > (off_t) ctx->conf->max_object_size) {
        ngx_http_peakcache_give_up(r, ctx,
                                   "larger than peakcache_max_object_size");
        return NGX_OK;
    }

    rc = peakcache_http_store_response(ctx->store, &ctx->resp);
    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                     "building the response failed");
        ngx_http_peakcache_give_up(r, ctx, "could not build the response");
        return NGX_OK;
    }

    if (r->headers_out.content_length_n > 0) {
        (void) peakcache_response_reserve_body(ctx->resp,
                                    (size_t) r->headers_out.content_length_n);
    }

    if (peakcache_http_store_vary(ctx->store, &vary, &vlen) != PEAKCACHE_OK) {
        vlen = 0;
    }

    if (ctx->variant
        && (vlen != ctx->vary.len
            || ngx_memcmp(vary, ctx->vary.data, vlen) != 0))
    {
        /*
         * The page varies on other fields now: the key of this variant is
         * not its key.  The marker goes, so the next lookup fills the page
         * anew, with its new Vary; this client gets the origin's answer.
         */
        (void) ngx_http_peakcache_purge_one(ctx->zone,
                                            NGX_HTTP_PEAKCACHE_PURGE_KEY, 0,
                                            ctx->primary.data,
                                            ctx->primary.len, &found,
                                            r->connection->log);
        ngx_http_peakcache_give_back(r, ctx, "varies on other fields now");
        return NGX_OK;
    }

    if (vlen && !ctx->variant) {

        if (ctx->refresh) {
            /* the response began to vary: it is filled anew, with a marker */
            ngx_http_peakcache_give_up(r, ctx, "began to vary");
            return NGX_OK;
        }

        if (ngx_http_peakcache_variant_fill(r, ctx, vary, vlen) != NGX_OK) {
            ngx_http_peakcache_give_up(r, ctx, "no variant key");
            return NGX_OK;
        }

        if (ctx->fill == NULL) {
            /* someone else has the variant: store the marker alone */
            ngx_http_peakcache_commit(r, ctx);
            return NGX_OK;
        }
    }

    ctx->stored = 1;
    ctx->capture = 1;
    r->filter_need_in_memory = 1;

    ctx->aged = (peakcache_http_store_age(ctx->store, ngx_http_peakcache_now(),
                                          &ctx->age)
                 == PEAKCACHE_OK);

    if (r == r->main) {
        /*
         * The page is fetched for everyone: a client that leaves once it has
         * the head (a HEAD) does not end the fill, as the upstream's check of
         * a broken client connection would.
         */
        r->read_event_handler = ngx_http_block_reading;
    }

    return NGX_OK;
}


/*
 * A response with Vary goes under its variant's key: the fill of the
 * primary key becomes the marker's, and the variant's fill is taken.
 */


static ngx_int_t
ngx_http_peakcache_variant_fill(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, const uint8_t *vary, size_t vlen)
{
    ngx_str_t                primary;
    peakcache_result         rc;
    peakcache_lookup_result  lr;

    ctx->vary.data = ngx_pnalloc(r->pool, vlen);
    if (ctx->vary.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctx->vary.data, vary, vlen);
    ctx->vary.len = vlen;

    primary = ctx->key;

    if (ngx_http_peakcache_request_view(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    {
    ngx_str_t       vkey;
    peakcache_buf  *buf;

    buf = NULL;
    rc = peakcache_http_variant_key(ctx->policy, &ctx->req, vary, vlen,
                                    &buf);
    if (rc != PEAKCACHE_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_peakcache_copy_buf(r, buf, &vkey) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ctx->conf->key) {
        u_char  *p;

        p = ngx_strlchr(vkey.data, vkey.data + vkey.len, '\0');
        if (p == NULL) {
            return NGX_ERROR;
        }

        ctx->key.len = primary.len + (vkey.data + vkey.len - p);
        ctx->key.data = ngx_pnalloc(r->pool, ctx->key.len);
        if (ctx->key.data == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(ngx_cpymem(ctx->key.data, primary.data, primary.len), p,
                   vkey.data + vkey.len - p);

    } else {
        ctx->key = vkey;
    }
    }

    ctx->primary = primary;
    ctx->marker = ctx->fill;
    ctx->fill = NULL;

    rc = peakcache_lookup(ctx->zone->cache, ctx->key.data, ctx->key.len, &lr);
    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                     "variant lookup failed");
        return NGX_OK;
    }

    switch (lr.kind) {

    case PEAKCACHE_LOOKUP_MISS:
        ctx->fill = lr.fill;
        break;

    case PEAKCACHE_LOOKUP_FRESH:
    case PEAKCACHE_LOOKUP_STALE:
        peakcache_entry_free(lr.entry);
        peakcache_refresh_abandon(lr.refresh);
        break;

    case PEAKCACHE_LOOKUP_WAIT:
        peakcache_waiter_free(lr.waiter);
        break;

    default:
        break;
    }

    return NGX_OK;
}


/*
 * A 304 to the validators of a stored response (a refresh, or the fill of a
 * key past its stale windows): the stored response is renewed with the 304's
 * fields.  A fill's client asked for the page, not for a 304: it is sent the
 * renewed entry, or the one the origin confirmed when it cannot be renewed.
 */

static ngx_int_t
ngx_http_peakcache_renew(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx,
    peakcache_http_request *sent, peakcache_http_response_head *head)
{
    ngx_uint_t               fill;
    peakcache_entry         *entry;
    peakcache_result         rc;
    peakcache_http_decision  d;

    fill = (ctx->fill != NULL && r == r->main);

    ngx_memzero(&d, sizeof(peakcache_http_decision));

    rc = peakcache_http_revalidate(ctx->policy, sent, ctx->revalidate, head,
                                   ctx->request_time, ngx_http_peakcache_now(),
                                   &d);

    if (rc == PEAKCACHE_ERR_VALIDATOR_MISMATCH) {
        /* another version: a later lookup fetches it unconditionally */
        ngx_http_peakcache_give_back(r, ctx, "304 for another version");

    } else if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                     "merging the 304 failed");
        ngx_http_peakcache_give_back(r, ctx, "could not merge the 304");

    } else if (d.reason != PEAKCACHE_HTTP_STORE) {
        ngx_http_peakcache_not_stored(r, ctx, d.reason);

    } else {
        ctx->store = d.store;
        ctx->ttl = d.ttl_ms;
        ctx->swr = d.swr_ms;
        ctx->sie = d.sie_ms;

        if (peakcache_http_store_response(ctx->store, &ctx->resp)
            != PEAKCACHE_OK)
        {
            ngx_http_peakcache_give_back(r, ctx,
                                         "could not build the response");

        } else {
            ctx->status = NGX_HTTP_PEAKCACHE_REVALIDATED;
            ngx_http_peakcache_commit(r, ctx);
        }
    }

    if (!fill) {
        return NGX_OK;
    }

    entry = NULL;

    if (ctx->status != NGX_HTTP_PEAKCACHE_REVALIDATED
        || peakcache_get(ctx->zone->cache, ctx->key.data, ctx->key.len, &entry)
           != PEAKCACHE_OK)
    {
        entry = NULL;
    }

    if (entry == NULL
        && peakcache_entry_clone(ctx->revalidate, &entry) != PEAKCACHE_OK)
    {
        return NGX_ERROR;
    }

    ctx->stale = entry;
    ctx->status = NGX_HTTP_PEAKCACHE_REVALIDATED;
    ctx->outcome = PEAKCACHE_HTTP_REVALIDATED;
    ctx->fwd_status = NGX_HTTP_NOT_MODIFIED;

    /* just confirmed by the origin: no request directive asks for more */
    ctx->policy = ctx->conf->frozen_policy;

    return ngx_http_peakcache_swap(r, ctx);
}


/*
 * The client is sent ctx->stale instead of the upstream's answer (a
 * stale-if-error entry, or a renewed one): its headers now, its body by the
 * body filter, which drops the upstream's.
 */

static ngx_int_t
ngx_http_peakcache_swap(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx)
{
    size_t           len;
    ngx_int_t        rc;
    ngx_uint_t       status;
    ngx_list_t       trailers;
    const uint8_t   *body;

    status = r->headers_out.status;

    trailers = r->headers_out.trailers;
    ngx_memzero(&r->headers_out, sizeof(ngx_http_headers_out_t));

    if (ngx_list_init(&r->headers_out.headers, r->pool, 20,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    r->headers_out.trailers = trailers;
    r->headers_out.content_length_n = -1;
    r->headers_out.last_modified_time = -1;
    r->err_status = 0;

    rc = ngx_http_peakcache_answer(r, ctx, ctx->stale, NGX_MAX_SIZE_T_VALUE);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        /* nothing else to send: the client gets the bare upstream status */
        r->headers_out.status = status;
        r->headers_out.content_length_n = 0;
        r->header_only = 1;
        return NGX_OK;
    }

    if (r->headers_out.status == NGX_HTTP_NOT_MODIFIED) {
        r->header_only = 1;

    } else {
        if (peakcache_entry_body(ctx->stale, &body, &len) != PEAKCACHE_OK) {
            return NGX_ERROR;
        }

        r->headers_out.content_length_n = len;
    }

    ctx->swap = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_peakcache_url_key(ngx_http_request_t *r,
    ngx_http_peakcache_loc_conf_t *plcf, ngx_str_t *url, ngx_str_t *key)
{
    u_char                  *p, *last;
    ngx_str_t                authority;
    peakcache_buf           *buf;
    peakcache_result         rc;
    peakcache_http_request   req;

    ngx_memzero(&req, sizeof(peakcache_http_request));

    ngx_str_set(&req.method, "GET");
    ngx_str_set(&req.scheme, "http");

    p = url->data;
    last = url->data + url->len;

    if (url->len > 8 && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0) {
        ngx_str_set(&req.scheme, "https");
        p += 8;

    } else if (url->len > 7
               && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0)
    {
        p += 7;

    } else {
        p = NULL;
    }

    if (p) {
        /* an absolute URL names its host */
        req.authority.data = p;

        while (p < last && *p != '/' && *p != '?') {
            p++;
        }

        req.authority.len = p - req.authority.data;
        req.path.data = p;
        req.path.len = last - p;

    } else {
        /* a path: on the purge request's own scheme and authority */
        req.path.data = url->data;
        req.path.len = url->len;

#if (NGX_HTTP_SSL)
        if (r->connection->ssl) {
            ngx_str_set(&req.scheme, "https");
        }
#endif

        if (ngx_http_peakcache_authority(r, &authority) != NGX_OK) {
            return NGX_ERROR;
        }

        req.authority.data = authority.data;
        req.authority.len = authority.len;
    }

    buf = NULL;
    rc = peakcache_http_key(plcf->policy, &req, &buf);
    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_INFO, r->connection->log, rc,
                                     "no key for the url to purge");
        return NGX_ERROR;
    }

    return ngx_http_peakcache_copy_buf(r, buf, key);
}


static void
ngx_http_peakcache_policy_cleanup(void *data)
{
    peakcache_http_policy_free(data);
}


/*
 * The location's HTTP policy and, when it honours request directives, its
 * twin that ignores them, used while the zone is frozen.  A location whose
 * settings are its parent's shares the parent's.
 */

static ngx_int_t
ngx_http_peakcache_create_policies(ngx_conf_t *cf,
    ngx_http_peakcache_loc_conf_t *prev, ngx_http_peakcache_loc_conf_t *conf)
{
    peakcache_http_config  hcf;

    if (prev->policy
        && prev->default_ttl == conf->default_ttl
        && prev->default_swr == conf->default_swr
        && prev->default_sie == conf->default_sie
        && prev->honour_request_directives == conf->honour_request_directives)
    {
        conf->policy = prev->policy;
        conf->frozen_policy = prev->frozen_policy;
        return NGX_OK;
    }

    (void) peakcache_http_config_default(&hcf);

    hcf.default_ttl_ms = conf->default_ttl;
    hcf.default_swr_ms = conf->default_swr;
    hcf.default_sie_ms = conf->default_sie;

    conf->frozen_policy = ngx_http_peakcache_policy(cf, &hcf);
    if (conf->frozen_policy == NULL) {
        return NGX_ERROR;
    }

    if (!conf->honour_request_directives) {
        conf->policy = conf->frozen_policy;
        return NGX_OK;
    }

    hcf.honour_request_directives = true;

    conf->policy = ngx_http_peakcache_policy(cf, &hcf);
    if (conf->policy == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static peakcache_http_policy *
ngx_http_peakcache_policy(ngx_conf_t *cf, peakcache_http_config *hcf)
{
    peakcache_result        rc;
    ngx_pool_cleanup_t     *cln;
    peakcache_http_policy  *policy;

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    rc = peakcache_http_policy_new(hcf, &policy);
    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_EMERG, cf->log, rc,
                                     "creating the HTTP policy failed");
        return NULL;
    }

    cln->handler = ngx_http_peakcache_policy_cleanup;
    cln->data = policy;

    return policy;
}


/* contexts and cleanups */

static ngx_http_peakcache_ctx_t *
ngx_http_peakcache_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t        *cln;
    ngx_http_peakcache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_peakcache_module);

    if (ctx || !r->internal) {
        return ctx;
    }

    /*
     * An internal redirect (error_page, X-Accel-Redirect) clears the
     * module contexts; the pool cleanup still knows the request's.
     */

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_peakcache_cleanup) {
            ctx = cln->data;

            if (ctx->request == r) {
                ngx_http_set_ctx(r, ctx, ngx_http_peakcache_module);
                ctx->redirected = 1;
                return ctx;
            }
        }
    }

    return NULL;
}


static ngx_http_peakcache_ctx_t *
ngx_http_peakcache_create_ctx(ngx_http_request_t *r,
    ngx_http_peakcache_zone_t *zone, ngx_http_peakcache_loc_conf_t *plcf)
{
    ngx_pool_cleanup_t        *cln;
    ngx_http_peakcache_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_peakcache_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    ctx->request = r;
    ctx->zone = zone;
    ctx->conf = plcf;
    ctx->policy = plcf->policy;

    cln->handler = ngx_http_peakcache_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_peakcache_module);

    return ctx;
}


static void
ngx_http_peakcache_cleanup(void *data)
{
    ngx_http_peakcache_ctx_t *ctx = data;

    ngx_event_t  *wev;

    if (ctx->keep.posted) {
        ngx_delete_posted_event(&ctx->keep);
    }

    if (ctx->waiter) {
        peakcache_waiter_free(ctx->waiter);
        ctx->waiter = NULL;
    }

    if (ctx->phase == NGX_HTTP_PEAKCACHE_PHASE_WAITING) {
        ngx_http_peakcache_unqueue(ctx);

        wev = ctx->request->connection->write;

        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        if (wev->posted) {
            ngx_delete_posted_event(wev);
        }
    }

    if (ctx->phase == NGX_HTTP_PEAKCACHE_PHASE_RESOLVED || ctx->answered) {
        /* resolved but never acted on */
        peakcache_entry_free(ctx->wait.entry);
        peakcache_fill_abandon(ctx->wait.fill);
    }

    if (ctx->fill && ngx_http_peakcache_broken_off(ctx->request)) {
        /*
         * The origin broke off its answer (closed early, timed out): a
         * failed fill, as for any origin failure; its waiters get the
         * stale-if-error copy, or a 502, and the key backs off.
         */
        ngx_http_peakcache_fail(ctx->request, ctx);
    }

    if (ctx->fill) {
        /* the response never ended: a waiter, or the next lookup, fills */
        peakcache_fill_abandon(ctx->fill);
        ctx->fill = NULL;
    }

    ngx_http_peakcache_fill_done(ctx);

    if (ctx->refresh) {
        peakcache_refresh_abandon(ctx->refresh);
        ctx->refresh = NULL;
    }

    peakcache_response_free(ctx->resp);
    ctx->resp = NULL;

    peakcache_entry_free(ctx->stale);
    ctx->stale = NULL;

    if (ctx->marker) {
        peakcache_fill_abandon(ctx->marker);
        ctx->marker = NULL;
    }

    peakcache_http_store_free(ctx->store);
    ctx->store = NULL;

    peakcache_entry_free(ctx->revalidate);
    ctx->revalidate = NULL;

    peakcache_entry_free(ctx->entry);
    ctx->entry = NULL;

    if (ctx->memo) {
        ngx_http_peakcache_memo_release(ctx->memo);
        ctx->memo = NULL;
    }

    ngx_http_peakcache_origin_done(ctx);
}


static void
ngx_http_peakcache_entry_cleanup(void *data)
{
    ngx_http_peakcache_entry_cleanup_t *ec = data;

    peakcache_http_headers_free(ec->headers);
    peakcache_entry_free(ec->entry);
}


/* the response head as the HTTP layer reads it */


/* the entry's memory is sent as it is: it lives until the request's pool goes */


/* origin accounting and local waiters */

static ngx_int_t
ngx_http_peakcache_admit(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx)
{
    if (ctx->origin) {
        return NGX_OK;
    }

    if (ctx->conf->origin_concurrency
        && ctx->zone->origin_active >= ctx->conf->origin_concurrency)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "peakcache: %ui requests at the origin "
                      "(peakcache_origin_concurrency), refusing \"%V\"",
                      ctx->zone->origin_active, &r->uri);
        return NGX_DECLINED;
    }

    ctx->origin = 1;
    ctx->zone->origin_active++;
    ctx->zone->counts.origin_requests++;

    return NGX_OK;
}


static void
ngx_http_peakcache_origin_done(ngx_http_peakcache_ctx_t *ctx)
{
    if (ctx->origin) {
        ctx->origin = 0;
        ctx->zone->origin_active--;
    }
}


/* the fill ended (or was given back): wake this worker's waiters at once */

static void
ngx_http_peakcache_fill_done(ngx_http_peakcache_ctx_t *ctx)
{
    ngx_http_peakcache_fill_node_t  *node;

    node = ctx->node;

    if (node == NULL) {
        return;
    }

    ctx->node = NULL;

    ngx_rbtree_delete(&ctx->zone->fills, &node->sn.node);

    ngx_http_peakcache_wake(&node->waiters);
    ngx_http_peakcache_ring();
}


/*
 * Bells: one pipe per worker, made by the master for its cycle's workers.  A
 * worker whose fill ends writes a byte to every other worker's pipe; a worker
 * whose pipe is readable polls every fill its requests wait for, so that they
 * are answered when the fill commits rather than at their poller's next tick.
 * A full pipe is a bell already rung.
 */

static void
ngx_http_peakcache_ring(void)
{
    ssize_t                          n;
    ngx_uint_t                       i;
    ngx_http_peakcache_main_conf_t  *pmcf;

    pmcf = ngx_http_peakcache_mcf;

    if (pmcf == NULL || pmcf->bells == NULL
        || ngx_process != NGX_PROCESS_WORKER)
    {
        return;
    }

    for (i = 0; i < pmcf->nbells; i++) {
        if (i == ngx_worker) {
            continue;
        }

        n = write(pmcf->bells[2 * i + 1], "", 1);

        if (n == -1 && ngx_errno != NGX_EAGAIN && ngx_errno != NGX_EINTR) {
            /* that worker's waiters are found by their poller's next tick */
            ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, ngx_errno,
                          "peakcache: write() to worker %ui's bell failed", i);
        }
    }
}


static void
ngx_http_peakcache_bell_handler(ngx_event_t *rev)
{
    u_char                           buf[64];
    ssize_t                          n;
    ngx_uint_t                       i;
    ngx_connection_t                *c;
    ngx_http_peakcache_zone_t      **zones;

    c = rev->data;

    do {
        n = read(c->fd, buf, sizeof(buf));
    } while (n == sizeof(buf));

    if (ngx_http_peakcache_mcf == NULL) {
        return;
    }

    zones = ngx_http_peakcache_mcf->zones.elts;

    for (i = 0; i < ngx_http_peakcache_mcf->zones.nelts; i++) {
        ngx_http_peakcache_poll_now(zones[i]);
    }
}


/* every poller of the zone polls now (one whose fill runs keeps its timer) */

static void
ngx_http_peakcache_poll_now(ngx_http_peakcache_zone_t *zone)
{
    ngx_rbtree_node_t          *node, *next, *sentinel;
    ngx_http_peakcache_ctx_t   *first;
    ngx_http_peakcache_poll_t  *p;

    sentinel = zone->polls.sentinel;

    if (zone->polls.root == sentinel) {
        return;
    }

    node = ngx_rbtree_min(zone->polls.root, sentinel);

    while (node) {
        /* the poller may go: its successor stays */
        next = ngx_rbtree_next(&zone->polls, node);
        p = (ngx_http_peakcache_poll_t *) node;
        first = ngx_queue_data(ngx_queue_head(&p->waiters),
                               ngx_http_peakcache_ctx_t, queue);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, first->request->connection->log, 0,
                       "peakcache bell: polling \"%V\"", &p->sn.str);

        ngx_http_peakcache_poll_handler(&p->event);

        node = next;
    }
}


/* the master's, for the workers of its cycle (none without a master) */

static ngx_int_t
ngx_http_peakcache_bells_make(ngx_cycle_t *cycle)
{
    ngx_uint_t                       i, n;
    ngx_fd_t                        *fds;
    ngx_core_conf_t                 *ccf;
    ngx_pool_cleanup_t              *cln;
    ngx_http_peakcache_main_conf_t  *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_peakcache_module);
    ccf = (ngx_core_conf_t *) ngx_get_conf(cycle->conf_ctx, ngx_core_module);

    if (pmcf == NULL || pmcf->zones.nelts == 0 || ngx_test_config
        || !ccf->master || ccf->worker_processes < 2)
    {
        return NGX_OK;
    }

    n = ccf->worker_processes;

    fds = ngx_palloc(cycle->pool, 2 * n * sizeof(ngx_fd_t));
    if (fds == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (pipe2(&fds[2 * i], O_NONBLOCK|O_CLOEXEC) == -1) {
            ngx_log_error(NGX_LOG_WARN, cycle->log, ngx_errno,
                          "peakcache: pipe2() failed: waiters of another "
                          "worker's fill poll it every %d ms",
                          NGX_HTTP_PEAKCACHE_POLL_MS);
            pmcf->bells = fds;
            pmcf->nbells = i;
            ngx_http_peakcache_bells_close(pmcf);
            return NGX_OK;
        }
    }

    pmcf->bells = fds;
    pmcf->nbells = n;

    cln->handler = ngx_http_peakcache_bells_close;
    cln->data = pmcf;

    return NGX_OK;
}


static void
ngx_http_peakcache_bells_close(void *data)
{
    ngx_http_peakcache_main_conf_t *pmcf = data;

    ngx_uint_t  i;

    for (i = 0; i < 2 * pmcf->nbells; i++) {
        (void) close(pmcf->bells[i]);
    }

    pmcf->bells = NULL;
    pmcf->nbells = 0;
}


/* a worker listens to its own bell */

static ngx_int_t
ngx_http_peakcache_bell_listen(ngx_cycle_t *cycle)
{
    ngx_http_peakcache_main_conf_t  *pmcf;

    pmcf = ngx_http_peakcache_mcf;

    if (pmcf->bells == NULL || ngx_process != NGX_PROCESS_WORKER
        || ngx_worker >= pmcf->nbells)
    {
        return NGX_OK;
    }

    if (ngx_add_channel_event(cycle, pmcf->bells[2 * ngx_worker],
                              NGX_READ_EVENT,
                              ngx_http_peakcache_bell_handler)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "peakcache: no bell: waiters of another worker's fill "
                      "poll it every %d ms", NGX_HTTP_PEAKCACHE_POLL_MS);
    }

    return NGX_OK;
}


/* every waiter of a queue resolves in this cycle of the event loop */

static void
ngx_http_peakcache_wake(ngx_queue_t *waiters)
{
    ngx_queue_t               *q;
    ngx_event_t               *wev;
    ngx_http_peakcache_ctx_t  *w;

    while (!ngx_queue_empty(waiters)) {
        q = ngx_queue_head(waiters);
        ngx_queue_remove(q);

        w = ngx_queue_data(q, ngx_http_peakcache_ctx_t, queue);
        w->queued = 0;
        w->poll = NULL;

        wev = w->request->connection->write;

        if (wev->timer_set) {
            ngx_del_timer(wev);
        }

        ngx_post_event(wev, &ngx_posted_events);
    }
}


/* a poller without waiters goes */

static void
ngx_http_peakcache_poller_free(ngx_http_peakcache_poll_t *p)
{
    if (p->event.timer_set) {
        ngx_del_timer(&p->event);
    }

    ngx_rbtree_delete(&p->zone->polls, &p->sn.node);
    ngx_free(p);
}


static void
ngx_http_peakcache_unqueue(ngx_http_peakcache_ctx_t *ctx)
{
    if (!ctx->queued) {
        return;
    }

    ngx_queue_remove(&ctx->queue);
    ctx->queued = 0;

    if (ctx->poll) {
        if (ngx_queue_empty(&ctx->poll->waiters)) {
            ngx_http_peakcache_poller_free(ctx->poll);
        }

        ctx->poll = NULL;
    }
}



/* serving an entry */

/*
 * The header list of an answer as nginx's table elements (into m->elts,
 * room for n): the fields nginx writes itself (Content-Type apart, the body's
 * framing) are left out, and those its filters look for are noted.
 */

static void
ngx_http_peakcache_memo_fill(ngx_http_peakcache_memo_t *m,
    const peakcache_http_header *items, size_t n)
{
    size_t            i, nlen, vlen;
    u_char           *p, *name, *value;
    ngx_table_elt_t  *h;

    m->nelts = 0;
    m->content_type.len = 0;
    m->content_type.data = NULL;
    m->content_type_len = 0;
    m->last_modified_time = -1;
    m->date = -1;
    m->etag = -1;
    m->server = -1;
    m->location = -1;
    m->last_modified = -1;
    m->content_encoding = -1;
    m->age = -1;
    m->cache_status = -1;

    for (i = 0; i < n; i++) {

        name = (u_char *) items[i].name;
        nlen = items[i].name_len;
        value = (u_char *) items[i].value;
        vlen = items[i].value_len;

        if (nlen == sizeof("Content-Type") - 1
            && ngx_strncasecmp(name, (u_char *) "Content-Type", nlen) == 0)
        {
            m->content_type.data = value;
            m->content_type.len = vlen;

            p = ngx_strlchr(value, value + vlen, ';');
            m->content_type_len = p ? (size_t) (p - value) : vlen;
            continue;
        }

        if ((nlen == sizeof("Content-Length") - 1
             && ngx_strncasecmp(name, (u_char *) "Content-Length", nlen) == 0)
            || (nlen == sizeof("Transfer-Encoding") - 1
                && ngx_strncasecmp(name, (u_char *) "Transfer-Encoding", nlen)
                   == 0)
            || (nlen == sizeof("Connection") - 1
                && ngx_strncasecmp(name, (u_char *) "Connection", nlen) == 0))
        {
            continue;
        }

        h = &m->elts[m->nelts];

        ngx_memzero(h, sizeof(ngx_table_elt_t));
        h->hash = 1;
        h->key.data = name;
        h->key.len = nlen;
        h->value.data = value;
        h->value.len = vlen;
        h->lowcase_key = name;

        switch (nlen) {

        case sizeof("Age") - 1:
            if (ngx_strncasecmp(name, (u_char *) "Age", nlen) == 0) {
                m->age = m->nelts;
            }
            break;

        case sizeof("Cache-Status") - 1:
            /* this cache's member comes last (RFC 9211 section 2) */
            if (ngx_strncasecmp(name, (u_char *) "Cache-Status", nlen) == 0) {
                m->cache_status = m->nelts;
            }
            break;

        case sizeof("Date") - 1:
            if (ngx_strncasecmp(name, (u_char *) "Date", nlen) == 0) {
                m->date = m->nelts;

            } else if (ngx_strncasecmp(name, (u_char *) "ETag", nlen) == 0) {
                m->etag = m->nelts;
            }
            break;

        case sizeof("Server") - 1:
            if (ngx_strncasecmp(name, (u_char *) "Server", nlen) == 0) {
                m->server = m->nelts;
            }
            break;

        case sizeof("Location") - 1:
            if (ngx_strncasecmp(name, (u_char *) "Location", nlen) == 0) {
                m->location = m->nelts;
            }
            break;

        case sizeof("Last-Modified") - 1:
            if (ngx_strncasecmp(name, (u_char *) "Last-Modified", nlen) == 0) {
                m->last_modified = m->nelts;
                m->last_modified_time = ngx_parse_http_time(value, vlen);
            }
            break;

        case sizeof("Content-Encoding") - 1:
            if (ngx_strncasecmp(name, (u_char *) "Content-Encoding", nlen)
                == 0)
            {
                m->content_encoding = m->nelts;
            }
            break;
        }

        m->nelts++;
    }
}


/*
 * Copies the answer's headers into the request (its own table elements:
 * filters change them in place; the strings stay the memo's).  With a clock,
 * its Age and Cache-Status values instead of the memo's, copied into the
 * request's pool: a later request may renew the clock while this one still
 * logs them.
 */

static ngx_int_t
ngx_http_peakcache_memo_apply(ngx_http_request_t *r,
    ngx_http_peakcache_memo_t *m, ngx_http_peakcache_clock_t *c)
{
    u_char           *p;
    ngx_str_t         age, status;
    ngx_uint_t        i;
    ngx_list_t       *list;
    ngx_table_elt_t  *h, *elts;

    ngx_str_null(&age);
    ngx_str_null(&status);

    if (c) {
        p = ngx_pnalloc(r->pool, c->age_len + c->status_len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        age.data = p;
        age.len = c->age_len;
        p = ngx_cpymem(p, c->age, c->age_len);

        status.data = p;
        status.len = c->status_len;
        ngx_memcpy(p, c->status, status.len);
    }

    list = &r->headers_out.headers;
    elts = NULL;

    if (list->last == &list->part && list->part.nelts == 0
        && m->nelts <= list->nalloc)
    {
        /* the usual case: nothing pushed yet, one copy */
        elts = list->part.elts;
        ngx_memcpy(elts, m->elts, m->nelts * sizeof(ngx_table_elt_t));
        list->part.nelts = m->nelts;
    }

    for (i = 0; i < m->nelts; i++) {

        if (elts) {
            h = &elts[i];

        } else {
            h = ngx_list_push(list);
            if (h == NULL) {
                /* headers_out is out of memory: the fields are dropped */
                break;
            }

            *h = m->elts[i];
        }

        if ((ngx_int_t) i == m->date) {
            r->headers_out.date = h;

        } else if ((ngx_int_t) i == m->etag) {
            r->headers_out.etag = h;

        } else if ((ngx_int_t) i == m->server) {
            r->headers_out.server = h;

        } else if ((ngx_int_t) i == m->location) {
            r->headers_out.location = h;

        } else if ((ngx_int_t) i == m->last_modified) {
            r->headers_out.last_modified = h;

        } else if ((ngx_int_t) i == m->content_encoding) {
            r->headers_out.content_encoding = h;

        } else if (c && (ngx_int_t) i == m->age) {
            h->value = age;

        } else if (c && (ngx_int_t) i == m->cache_status) {
            h->value = status;
        }
    }

    r->headers_out.status = m->status;
    r->headers_out.last_modified_time = m->last_modified_time;

    if (m->content_type.len) {
        r->headers_out.content_type = m->content_type;
        r->headers_out.content_type_len = m->content_type_len;
    }

    return NGX_OK;
}


/*
 * The HTTP layer answers from the entry: a 304 to a client's conditional
 * request, or the stored response, with Age and Cache-Status.  NGX_DECLINED:
 * preconditions the cache does not evaluate, forward the request.
 */


static ngx_chain_t *
ngx_http_peakcache_entry_body(ngx_http_request_t *r, peakcache_entry *entry)
{
    size_t            len;
    const uint8_t    *body;
    peakcache_result  rc;

    rc = peakcache_entry_body(entry, &body, &len);
    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                     "reading a stored body failed");
        return NULL;
    }

    return ngx_http_peakcache_body_chain(r, body, len);
}


static ngx_chain_t *
ngx_http_peakcache_body_chain(ngx_http_request_t *r, const uint8_t *body,
    size_t len)
{
    ngx_buf_t        *b;
    ngx_chain_t      *out;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NULL;
    }

    out = ngx_alloc_chain_link(r->pool);
    if (out == NULL) {
        return NULL;
    }

    if (len) {
        b->pos = (u_char *) body;
        b->last = (u_char *) body + len;
        b->start = b->pos;
        b->end = b->last;
        b->memory = 1;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out->buf = b;
    out->next = NULL;

    return out;
}


static ngx_int_t
ngx_http_peakcache_send_entry(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, peakcache_entry *entry)
{
    size_t            len;
    ngx_int_t         rc;
    ngx_chain_t      *out;
    const uint8_t    *body;

    /* the request's reference: released with the context */

    if (ctx->entry == NULL) {
        ctx->entry = entry;

    } else if (ngx_http_peakcache_hold(r, entry, NULL) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (peakcache_entry_body(entry, &body, &len) != PEAKCACHE_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_peakcache_answer(r, ctx, entry, len);

    if (rc != NGX_OK) {
        return rc == NGX_ERROR ? NGX_HTTP_INTERNAL_SERVER_ERROR : rc;
    }

    if (r->headers_out.status == NGX_HTTP_NOT_MODIFIED) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }

    r->headers_out.content_length_n = len;
    r->allow_ranges = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    /* one buffer pointing into the entry */

    out = ngx_http_peakcache_body_chain(r, body, len);
    if (out == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_output_filter(r, out);
}


/* the entry's memory is sent as it is: it lives until the request's pool goes */


/* the HTTP layer: key and store decision */

/*
 * The authority a request is keyed by: the host nginx routed it by
 * (headers_in.server: the request line's host for an absolute target, else
 * the Host field's, lowercased, without a trailing dot) with the port that
 * came with it.  A Host field that disagrees with an absolute target names
 * what was not served, so it is not what is keyed.
 */

static ngx_int_t
ngx_http_peakcache_authority(ngx_http_request_t *r, ngx_str_t *authority)
{
    u_char     *p, *last;
    ngx_str_t   port, *host, *server;

    server = &r->headers_in.server;
    host = r->headers_in.host ? &r->headers_in.host->value : NULL;
    ngx_str_null(&port);

    if (r->host_end) {
        host = NULL;

        if (r->port_end) {
            port.data = r->host_end + 1;
            port.len = r->port_end - port.data;
        }

    } else if (host) {
        p = host->data;
        last = host->data + host->len;

        if (p < last && *p == '[') {
            p = ngx_strlchr(p, last, ']');
        }

        p = p ? ngx_strlchr(p, last, ':') : NULL;

        if (p) {
            port.data = p + 1;
            port.len = last - port.data;
        }
    }

    if (port.len == 0) {
        *authority = *server;
        return NGX_OK;
    }

    if (host
        && host->len == server->len + 1 + port.len
        && ngx_strncmp(host->data, server->data, server->len) == 0)
    {
        /* the usual case: the Host field is already "host:port" */
        *authority = *host;
        return NGX_OK;
    }

    authority->len = server->len + 1 + port.len;
    authority->data = ngx_pnalloc(r->pool, authority->len);
    if (authority->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(authority->data, "%V:%V", server, &port);

    return NGX_OK;
}


/*
 * A request the HTTP layer keys by its target alone (the scheme, the
 * authority, the method class and the target as received): one without
 * Authorization (such a request has no key), under a policy that ignores
 * request directives (else Cache-Control: no-store has none either), without
 * the operator's peakcache_key.  Each worker keeps the keys it computed for
 * those, so a hit asks the HTTP layer for nothing.
 */

static ngx_uint_t
ngx_http_peakcache_keyed_by_target(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx)
{
    return ctx->conf->key == NULL
           && r->headers_in.authorization == NULL
           && ctx->policy == ctx->conf->frozen_policy;
}


static ngx_int_t
ngx_http_peakcache_key(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx)
{
    u_char                          *p;
    size_t                           size;
    uint32_t                         hash;
    ngx_str_t                       *host;
    ngx_uint_t                       i, https, memo;
    peakcache_buf                   *buf;
    peakcache_result                 rc;
    ngx_http_peakcache_key_memo_t   *k, **ways;

    if (ngx_http_peakcache_authority(r, &ctx->authority) != NGX_OK) {
        return NGX_ERROR;
    }

    host = &ctx->authority;
    https = 0;

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        https = 1;
    }
#endif

    hash = ngx_murmur_hash2(r->unparsed_uri.data, r->unparsed_uri.len)
           ^ (ngx_murmur_hash2(host->data, host->len) * 0x9e3779b1)
           ^ (uint32_t) https;

    ways = &ngx_http_peakcache_keys[hash & (NGX_HTTP_PEAKCACHE_KEY_SLOTS - 2)];
    memo = ngx_http_peakcache_keyed_by_target(r, ctx);

    for (i = 0; memo && i < 2; i++) {
        k = ways[i];

        if (k
            && k->hash == hash
            && k->https == https
            && k->policy == ctx->policy
            && k->uri.len == r->unparsed_uri.len
            && k->host.len == host->len
            && ngx_memcmp(k->uri.data, r->unparsed_uri.data, k->uri.len) == 0
            && ngx_memcmp(k->host.data, host->data, k->host.len) == 0)
        {
            ctx->key.data = ngx_pnalloc(r->pool, k->key.len);
            if (ctx->key.data == NULL) {
                return NGX_ERROR;
            }

            ngx_memcpy(ctx->key.data, k->key.data, k->key.len);
            ctx->key.len = k->key.len;

            ngx_http_peakcache_target_set(ctx, ways, k);

            return NGX_OK;
        }
    }

    if (ngx_http_peakcache_request_view(r, ctx) != NGX_OK) {
        return NGX_ERROR;
    }

    buf = NULL;
    rc = peakcache_http_key(ctx->policy, &ctx->req, &buf);

    if (rc == PEAKCACHE_ERR_NOT_CACHEABLE || rc == PEAKCACHE_ERR_MALFORMED) {
        ngx_http_peakcache_log_error(NGX_LOG_INFO, r->connection->log, rc,
                                     "request not cacheable");
        return NGX_DECLINED;
    }

    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                     "computing the key failed");
        return NGX_DECLINED;
    }

    if (ctx->conf->key) {
        /* the operator's key replaces the HTTP layer's */
        peakcache_buf_free(buf);

        if (ngx_http_complex_value(r, ctx->conf->key, &ctx->key) != NGX_OK) {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_http_peakcache_copy_buf(r, buf, &ctx->key) != NGX_OK) {
        return NGX_ERROR;
    }

    size = host->len + r->unparsed_uri.len + ctx->key.len;

    if (!memo || size > NGX_HTTP_PEAKCACHE_KEY_MAX) {
        return NGX_OK;
    }

    k = ngx_alloc(sizeof(ngx_http_peakcache_key_memo_t) + size,
                  r->connection->log);
    if (k == NULL) {
        return NGX_OK;
    }

    p = (u_char *) (k + 1);

    k->policy = ctx->policy;
    k->hash = hash;
    k->https = https;
    k->serial = ++ngx_http_peakcache_key_serial;
    k->memo = NULL;
    k->host.data = p;
    k->host.len = host->len;
    p = ngx_cpymem(p, host->data, host->len);
    k->uri.data = p;
    k->uri.len = r->unparsed_uri.len;
    p = ngx_cpymem(p, r->unparsed_uri.data, r->unparsed_uri.len);
    k->key.data = p;
    k->key.len = ctx->key.len;
    ngx_memcpy(p, ctx->key.data, ctx->key.len);

    /* the newest first: the older of the pair makes room */

    if (ways[1]) {
        ngx_http_peakcache_key_memo_free(ways[1]);
    }

    ways[1] = ways[0];
    ways[0] = k;

    ngx_http_peakcache_target_set(ctx, ways, k);

    return NGX_OK;
}


/* ctx->key becomes the key of the request's variant, by the marker's Vary */



/*
 * Whether the answer is an error stale-if-error answers for (RFC 5861
 * section 4): an upstream error nginx reports itself (502, 504), or a 500,
 * 502, 503 or 504 of the origin's.
 */

static ngx_int_t
ngx_http_peakcache_origin_failed(ngx_http_request_t *r)
{
    switch (r->headers_out.status) {

    case NGX_HTTP_INTERNAL_SERVER_ERROR:
    case NGX_HTTP_BAD_GATEWAY:
    case NGX_HTTP_SERVICE_UNAVAILABLE:
    case NGX_HTTP_GATEWAY_TIME_OUT:
        return 1;

    default:
        return 0;
    }
}


/* the response as it leaves the upstream, before gzip, SSI and add_header */


/*
 * A response the HTTP layer does not store.  Only the response's own reasons
 * may make the key pass through for a while (hit-for-pass); a reason found in
 * this one visitor's request leaves the entry, its refresh ticket and its
 * waiters as they were.
 */

static void
ngx_http_peakcache_not_stored(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, uint32_t reason)
{
    if (peakcache_http_dont_store_cause(reason) == PEAKCACHE_HTTP_CAUSE_REQUEST)
    {
        ngx_http_peakcache_give_back(r, ctx,
                                     peakcache_http_dont_store_str(reason));
        return;
    }

    ngx_http_peakcache_give_up(r, ctx, peakcache_http_dont_store_str(reason));
}


/* the tickets given back untouched: a waiter, or the next lookup, fills */

static void
ngx_http_peakcache_give_back(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, const char *reason)
{
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "peakcache: \"%V\" not stored: %s", &ctx->key, reason);

    if (ctx->fill) {
        peakcache_fill_abandon(ctx->fill);
        ctx->fill = NULL;
    }

    if (ctx->marker) {
        peakcache_fill_abandon(ctx->marker);
        ctx->marker = NULL;
    }

    if (ctx->refresh) {
        peakcache_refresh_abandon(ctx->refresh);
        ctx->refresh = NULL;
    }

    peakcache_http_store_free(ctx->store);
    ctx->store = NULL;

    ngx_http_peakcache_fill_done(ctx);
}


/* the key passes through for peakcache_pass_hold (hit-for-pass) */

static void
ngx_http_peakcache_give_up(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, const char *reason)
{
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "peakcache: \"%V\" not stored: %s", &ctx->key, reason);

    peakcache_response_free(ctx->resp);
    ctx->resp = NULL;
    ctx->capture = 0;
    ctx->stored = 0;
    ctx->aged = 0;

    if (ctx->fill) {
        (void) peakcache_fill_uncacheable(&ctx->fill, ctx->conf->pass_hold);
    }

    if (ctx->marker) {
        (void) peakcache_fill_uncacheable(&ctx->marker, ctx->conf->pass_hold);
    }

    if (ctx->refresh) {
        (void) peakcache_refresh_uncacheable(&ctx->refresh,
                                             ctx->conf->pass_hold);
    }

    peakcache_http_store_free(ctx->store);
    ctx->store = NULL;

    ngx_http_peakcache_fill_done(ctx);
}


/* stale-if-error: the client gets the stale entry instead of the error */


static void
ngx_http_peakcache_fail(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx)
{
    peakcache_result  rc;

    /* the status page's origin errors: what this worker saw fail */
    ctx->zone->counts.origin_errors++;

    if (ctx->fill) {
        rc = peakcache_fill_fail(&ctx->fill, &ctx->stale);
        if (rc != PEAKCACHE_OK) {
            ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                         "failing the fill failed");
        }
    }

    if (ctx->refresh) {
        rc = peakcache_refresh_fail(&ctx->refresh);
        if (rc != PEAKCACHE_OK) {
            ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                         "failing the refresh failed");
        }
    }

    ngx_http_peakcache_fill_done(ctx);
    ngx_http_peakcache_origin_done(ctx);
}


static void
ngx_http_peakcache_commit(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx)
{
    size_t                  ntags;
    peakcache_result        rc;
    peakcache_response     *marker;
    const peakcache_bytes  *tags;

    if (peakcache_http_store_tags(ctx->store, &tags, &ntags) != PEAKCACHE_OK) {
        tags = NULL;
        ntags = 0;
    }

    rc = PEAKCACHE_OK;

    if (ctx->fill) {
        rc = peakcache_fill_commit(&ctx->fill, &ctx->resp, ctx->ttl, ctx->swr,
                                   ctx->sie, tags, ntags);

    } else if (ctx->refresh) {
        rc = peakcache_refresh_commit(&ctx->refresh, &ctx->resp, ctx->ttl,
                                      ctx->swr, ctx->sie, tags, ntags);
    }

    if (rc == PEAKCACHE_ERR_TOO_LARGE) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "peakcache: \"%V\" not stored: heavier than the "
                      "zone's largest object", &ctx->key);

    } else if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                     "storing the response failed");
    }

    peakcache_response_free(ctx->resp);
    ctx->resp = NULL;

    if (ctx->marker) {
        /* after the variant, so the marker's waiters find it */
        marker = NULL;

        rc = peakcache_response_new(NGX_HTTP_OK, &marker);

        if (rc == PEAKCACHE_OK) {
            (void) peakcache_response_set_flags(marker,
                                               NGX_HTTP_PEAKCACHE_VARY_MARKER);
            rc = peakcache_response_append_body(marker, ctx->vary.data,
                                                ctx->vary.len);
        }

        if (rc == PEAKCACHE_OK) {
            rc = peakcache_fill_commit(&ctx->marker, &marker,
                                       ngx_max(ctx->ttl
                                               + ngx_max(ctx->swr, ctx->sie),
                                               NGX_HTTP_PEAKCACHE_VARY_MS),
                                       0, 0, tags, ntags);
        }

        if (rc != PEAKCACHE_OK) {
            ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                         "storing the Vary marker failed");
        }

        peakcache_response_free(marker);
        peakcache_fill_abandon(ctx->marker);
        ctx->marker = NULL;
    }

    peakcache_http_store_free(ctx->store);
    ctx->store = NULL;

    ctx->capture = 0;

    ngx_http_peakcache_fill_done(ctx);
    ngx_http_peakcache_origin_done(ctx);
}


/*
 * An unsafe request answered without an error (RFC 9111 section 4.4): its
 * target, and the same-origin Location and Content-Location of the answer,
 * are removed with every variant (each is tagged with its primary key).
 */

static void
ngx_http_peakcache_invalidate(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx)
{
    size_t                         i, n;
    ngx_uint_t                     found;
    peakcache_result               rc;
    peakcache_http_keys           *keys;
    const peakcache_bytes         *items;
    peakcache_http_response_head   head;

    if (ngx_http_peakcache_request_view(r, ctx) != NGX_OK
        || ngx_http_peakcache_response_view(r, &head) != NGX_OK)
    {
        return;
    }

    keys = NULL;

    rc = peakcache_http_invalidations(ctx->policy, &ctx->req, &head, &keys);
    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_INFO, r->connection->log, rc,
                                     "no keys to invalidate");
        return;
    }

    if (peakcache_http_keys_items(keys, &items, &n) == PEAKCACHE_OK) {

        for (i = 0; i < n; i++) {
            ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "peakcache invalidates \"%*s\"", items[i].len,
                           items[i].data);

            (void) ngx_http_peakcache_purge_one(ctx->zone,
                                                NGX_HTTP_PEAKCACHE_PURGE_URL, 0,
                                                (u_char *) items[i].data,
                                                items[i].len, &found,
                                                r->connection->log);
        }
    }

    peakcache_http_keys_free(keys);
}


/* filters */

/*
 * Whether the upstream's answer to `r` ended before its end: the origin
 * closed the connection early or timed out while its body was being read.
 */

static ngx_uint_t
ngx_http_peakcache_broken_off(ngx_http_request_t *r)
{
    ngx_event_pipe_t     *p;
    ngx_http_upstream_t  *u;

    u = r->upstream;

    if (u == NULL || r->connection->error) {
        return 0;
    }

    if (!u->buffering) {
        /* bytes (or chunks) the answer still owed when it ended */
        return u->length > 0;
    }

    p = u->pipe;

    return p != NULL && (p->upstream_error || p->upstream_eof)
           && !p->upstream_done;
}


static ngx_int_t
ngx_http_peakcache_header_filter(ngx_http_request_t *r)
{
    ngx_int_t                  rc;
    ngx_http_peakcache_ctx_t  *ctx;

    ctx = ngx_http_peakcache_get_ctx(r);

    if (ctx == NULL || !ctx->head) {
        rc = ngx_http_peakcache_header(r, ctx);

    } else {
        /*
         * A HEAD miss filled by GET: the client's method again for the
         * filters that follow (nginx's header filter sends the head alone),
         * then the upstream is let read the body on, for the fill (the body
         * filter keeps it from the client).
         */

        r->method = NGX_HTTP_HEAD;
        r->method_name = ctx->method_name;

        rc = ngx_http_peakcache_header(r, ctx);

        r->header_only = 0;
    }

    if (rc == NGX_ERROR && ctx && ctx->capture && r == r->main
        && r->connection->error)
    {
        /*
         * The client is gone (an HTTP/2 stream cancelled, a connection
         * closed) before its page's head: the page is still stored for
         * everyone (see keep_fetching), its body sent nowhere.
         */
        ctx->gone = 1;
        return NGX_OK;
    }

    return rc;
}


static ngx_int_t
ngx_http_peakcache_header(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx)
{
    if (ctx == NULL || ctx->served || ctx->header_seen) {
        return ngx_http_next_header_filter(r);
    }

    ctx->header_seen = 1;

    if (ctx->fill || ctx->refresh) {

        if (ngx_http_peakcache_store_header(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        if (ctx->swap) {
            return ngx_http_next_header_filter(r);
        }

        if (ngx_http_peakcache_defer(r, ctx)) {
            return NGX_OK;
        }
    }

    if (r != r->main || ctx->outcome == 0) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx->outcome == PEAKCACHE_HTTP_METHOD) {
        ngx_http_peakcache_invalidate(r, ctx);
    }

    return ngx_http_peakcache_forwarded(r, ctx);
}


/*
 * The Age of a response this cache stores as it forwards it: the visitor is
 * told what the next ones are (the origin's own Age gave way to it).
 */

static ngx_int_t
ngx_http_peakcache_push_age(ngx_http_request_t *r, uint64_t age)
{
    u_char     *p;
    ngx_str_t   value;

    static ngx_str_t  name = ngx_string("Age");

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    value.data = p;
    value.len = ngx_sprintf(p, "%uL", age) - p;

    return ngx_http_peakcache_add_header(r, &name, (u_char *) "age", &value);
}


/*
 * A forwarded response: without this cache's own fields and those the
 * origin's Connection names, with its status, and its Age when stored.
 */

static ngx_int_t
ngx_http_peakcache_forwarded(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx)
{
    ngx_uint_t                 i, upstream;
    ngx_str_t                  value;
    ngx_list_part_t           *part;
    ngx_table_elt_t           *h;
    peakcache_buf             *buf;
    peakcache_result           rc;

    static ngx_str_t  name = ngx_string("Cache-Status");

    upstream = (r->upstream != NULL && !ctx->redirected
                && r->upstream->headers_in.status_n == r->headers_out.status);

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash
            && (!peakcache_http_forward_field(ctx->policy, h[i].key.data,
                                              h[i].key.len)
                || (upstream && ngx_http_peakcache_hop_field(r, &h[i].key))
                || (ctx->aged && h[i].key.len == sizeof("Age") - 1
                    && ngx_strncasecmp(h[i].key.data, (u_char *) "Age",
                                       h[i].key.len)
                       == 0)))
        {
            h[i].hash = 0;
        }
    }

    if (ctx->aged && ngx_http_peakcache_push_age(r, ctx->age) != NGX_OK) {
        return NGX_ERROR;
    }

    buf = NULL;
    rc = peakcache_http_cache_status(ctx->policy, (uint32_t) ctx->outcome,
                                     (uint16_t) r->headers_out.status,
                                     ctx->stored ? true : false, NULL,
                                     ngx_http_peakcache_now(), &buf);

    if (rc == PEAKCACHE_OK
        && ngx_http_peakcache_copy_buf(r, buf, &value) == NGX_OK)
    {
        if (ngx_http_peakcache_add_header(r, &name, (u_char *) "cache-status",
                                          &value)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                     "Cache-Status failed");
    }

    return ngx_http_next_header_filter(r);
}


/*
 * A client whose own If-None-Match / If-Modified-Since were left out of the
 * fill is answered from the stored page by the HTTP layer (a 304 when they
 * hold): its head waits until the page is stored, and the page is kept for it
 * meanwhile (up to peakcache_max_object_size, beyond which it would not be
 * stored anyway), should it not be stored after all.
 */

static ngx_uint_t
ngx_http_peakcache_defer(ngx_http_request_t *r, ngx_http_peakcache_ctx_t *ctx)
{
    if (!ctx->capture || !ctx->conditional || r != r->main
        || r->headers_out.content_length_n > (off_t) ctx->conf->max_object_size)
    {
        return 0;
    }

    ctx->defer = 1;
    ctx->held = NULL;
    ctx->held_last = &ctx->held;
    ctx->held_size = 0;

    return 1;
}


/* a copy of what the upstream sent, for a deferred client */

static ngx_int_t
ngx_http_peakcache_hold_body(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, ngx_buf_t *b)
{
    size_t        size;
    ngx_buf_t    *copy;
    ngx_chain_t  *cl;

    size = b->last - b->pos;

    if (size == 0 || ctx->head) {
        return NGX_OK;
    }

    copy = ngx_create_temp_buf(r->pool, size);
    if (copy == NULL) {
        return NGX_ERROR;
    }

    copy->last = ngx_cpymem(copy->pos, b->pos, size);

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    cl->buf = copy;
    cl->next = NULL;

    *ctx->held_last = cl;
    ctx->held_last = &cl->next;
    ctx->held_size += size;

    return NGX_OK;
}


/*
 * The deferred head, and the page: at the end, the stored one, else the page as
 * the origin sent it; before the end (it grew past what could be stored), the
 * origin's head and what came of the page so far, and the rest as it comes.
 */

static ngx_int_t
ngx_http_peakcache_send_deferred(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx, ngx_uint_t last)
{
    ngx_int_t         rc;
    ngx_buf_t        *b;
    ngx_chain_t       out;
    peakcache_entry  *entry;

    ctx->defer = 0;
    entry = NULL;

    if (last
        && peakcache_get(ctx->zone->cache, ctx->key.data, ctx->key.len, &entry)
           == PEAKCACHE_OK
        && entry)
    {
        ctx->stale = entry;
        ctx->fwd_status = r->headers_out.status;

        if (ngx_http_peakcache_swap(r, ctx) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_next_header_filter(r);

        if (rc == NGX_ERROR || rc > NGX_OK) {
            return rc;
        }

        return ngx_http_peakcache_send_swapped(r, ctx);
    }

    rc = ngx_http_peakcache_forwarded(r, ctx);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only || ctx->head) {
        return rc;
    }

    if (last) {
        /* what follows from the upstream is consumed, as after a swap */
        ctx->swap = 1;
        ctx->swap_sent = 1;

        b = ngx_calloc_buf(r->pool);
        if (b == NULL) {
            return NGX_ERROR;
        }

        b->last_buf = 1;
        b->last_in_chain = 1;

        out.buf = b;
        out.next = NULL;
        *ctx->held_last = &out;
    }

    return ngx_http_next_body_filter(r, ctx->held);
}


/* the body of the entry swapped in (ctx->stale), once */

static ngx_int_t
ngx_http_peakcache_send_swapped(ngx_http_request_t *r,
    ngx_http_peakcache_ctx_t *ctx)
{
    ngx_chain_t  *out;

    ctx->swap_sent = 1;

    out = ngx_http_peakcache_entry_body(r, ctx->stale);
    if (out == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_peakcache_hold(r, ctx->stale, NULL) != NGX_OK) {
        ctx->stale = NULL;
        return NGX_ERROR;
    }

    ctx->stale = NULL;

    if (r->header_only || ctx->head) {
        return NGX_OK;
    }

    return ngx_http_next_body_filter(r, out);
}


static ngx_int_t
ngx_http_peakcache_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    size_t                     size;
    ngx_int_t                  sent;
    ngx_buf_t                 *b;
    ngx_uint_t                 last;
    ngx_chain_t               *cl;
    peakcache_result           rc;
    ngx_http_peakcache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_peakcache_module);

    if (ctx && ctx->gone && in == NULL) {
        /* nothing to flush to a client that is gone */
        return ctx->capture ? NGX_OK : NGX_ERROR;
    }

    if (ctx == NULL || in == NULL
        || (!ctx->capture && !ctx->swap && !ctx->background && !ctx->head
            && !ctx->defer))
    {
        return ngx_http_next_body_filter(r, in);
    }

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (b->last_buf || (r != r->main && b->last_in_chain)) {
            last = 1;
        }

        if (ctx->defer
            && ngx_buf_in_memory(b)
            && ngx_http_peakcache_hold_body(r, ctx, b) != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (!ctx->capture || ngx_buf_special(b)) {
            continue;
        }

        if (!ngx_buf_in_memory(b)) {
            ngx_http_peakcache_give_up(r, ctx, "body buffer not in memory");
            continue;
        }

        size = b->last - b->pos;

        if (peakcache_response_body_len(ctx->resp) + size
            > ctx->conf->max_object_size)
        {
            ngx_http_peakcache_give_up(r, ctx,
                                       "larger than peakcache_max_object_size");
            continue;
        }

        rc = peakcache_response_append_body(ctx->resp, b->pos, size);
        if (rc != PEAKCACHE_OK) {
            ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                         "copying the body failed");
            ngx_http_peakcache_give_up(r, ctx, "could not copy the body");
        }
    }

    if (last && ctx->capture) {
        ngx_http_peakcache_commit(r, ctx);
    }

    if (ctx->defer) {

        ngx_http_peakcache_consume(in);

        if (last || !ctx->capture) {
            /* the end, or more than will be stored: the client waits no more */
            return ngx_http_peakcache_send_deferred(r, ctx, last);
        }

        return NGX_OK;
    }

    if (ctx->gone) {
        /* nobody reads; once nothing more is to be stored, the fetch ends */
        ngx_http_peakcache_consume(in);
        return (ctx->capture || last) ? NGX_OK : NGX_ERROR;
    }

    if (ctx->swap || ctx->background || ctx->head) {

        /* what goes nowhere is consumed, so the upstream reuses its buffers */

        ngx_http_peakcache_consume(in);

        if (ctx->swap && !ctx->swap_sent) {
            return ngx_http_peakcache_send_swapped(r, ctx);
        }

        return NGX_OK;
    }

    sent = ngx_http_next_body_filter(r, in);

    if (sent == NGX_ERROR && ctx->capture && r == r->main) {
        /*
         * The client is gone while its page is being stored: the fetch goes
         * on for everyone (see keep_fetching); what is left of the body is
         * stored and sent nowhere.
         */
        ctx->gone = 1;
        ngx_http_peakcache_consume(in);
        return NGX_OK;
    }

    return sent;
}


/* marks the buffers of `in` as sent, so that their producer reuses them */

static void
ngx_http_peakcache_consume(ngx_chain_t *in)
{
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }
}


/* purge and status */

static ngx_int_t
ngx_http_peakcache_purge_handler(ngx_http_request_t *r)
{
    u_char                         *p, *last, *start;
    size_t                          len;
    ngx_int_t                       rc;
    ngx_str_t                       arg, what, key;
    ngx_uint_t                      soft, type, found, any, i;
    ngx_list_part_t                *part;
    ngx_table_elt_t                *h;
    ngx_http_peakcache_zone_t      *zone;
    ngx_http_peakcache_loc_conf_t  *plcf;

    static ngx_str_t  json = ngx_string("application/json");
    static ngx_str_t  text = ngx_string("text/plain");
    static u_char     usage[] =
        "usage: ?url=<url or /path> | ?tag=<tag> | ?key=<key> | "
        "Surrogate-Key: <tags>; add &soft=1 for a soft purge; "
        "?action=snapshot|restore|freeze|thaw (restore&freeze=1: rollback)"
        CRLF;
    static u_char     methods[] = "purge with PURGE or POST" CRLF;
    static ngx_str_t  allow = ngx_string("Allow");
    static ngx_str_t  purge_methods = ngx_string("PURGE, POST");

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_peakcache_module);
    zone = plcf->purge;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (r->method != NGX_HTTP_POST
        && (r->method_name.len != sizeof("PURGE") - 1
            || ngx_strncmp(r->method_name.data, "PURGE", 5) != 0))
    {
        /* never a GET: a page's image or link in a browser must not purge */

        if (ngx_http_peakcache_add_header(r, &allow, (u_char *) "allow",
                                          &purge_methods)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_peakcache_send_text(r, NGX_HTTP_NOT_ALLOWED, &text,
                                            methods, sizeof(methods) - 1);
    }

    if (ngx_http_arg(r, (u_char *) "action", 6, &arg) == NGX_OK) {
        return ngx_http_peakcache_admin_action(r, zone, &arg);
    }

    soft = (ngx_http_arg(r, (u_char *) "soft", 4, &arg) == NGX_OK
            && arg.len && arg.data[0] != '0');

    type = 0;
    ngx_str_null(&what);

    if (ngx_http_arg(r, (u_char *) "url", 3, &arg) == NGX_OK && arg.len) {
        type = NGX_HTTP_PEAKCACHE_PURGE_KEY;

    } else if (ngx_http_arg(r, (u_char *) "key", 3, &arg) == NGX_OK
               && arg.len)
    {
        type = NGX_HTTP_PEAKCACHE_PURGE_KEY;

    } else if (ngx_http_arg(r, (u_char *) "tag", 3, &arg) == NGX_OK
               && arg.len)
    {
        type = NGX_HTTP_PEAKCACHE_PURGE_TAG;
    }

    if (type) {
        p = ngx_pnalloc(r->pool, arg.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        /*
         * Decoded once: "%2B" is "+", and "+" stays "+" (a URL's "+" is no
         * space, and a key keeps its target's bytes as received).
         */

        what.data = p;
        start = arg.data;
        ngx_unescape_uri(&p, &start, arg.len, 0);
        what.len = p - what.data;
    }

    if (type == NGX_HTTP_PEAKCACHE_PURGE_KEY
        && ngx_http_arg(r, (u_char *) "url", 3, &arg) == NGX_OK && arg.len)
    {
        if (ngx_http_peakcache_url_key(r, plcf, &what, &key) != NGX_OK) {
            return ngx_http_peakcache_send_text(r, NGX_HTTP_BAD_REQUEST,
                                                &text, (u_char *) "no key "
                                                "for this url" CRLF,
                                                sizeof("no key for this url")
                                                + 1);
        }

        /* the key, and every variant: they are tagged with it */
        type = NGX_HTTP_PEAKCACHE_PURGE_URL;
        what = key;
    }

    if (type == 0) {
        /* Surrogate-Key: tag1 tag2 */
        part = &r->headers_in.headers.part;
        h = part->elts;

        for (i = 0; /* void */; i++) {
            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (h[i].key.len == sizeof("Surrogate-Key") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Surrogate-Key",
                                   h[i].key.len) == 0)
            {
                type = NGX_HTTP_PEAKCACHE_PURGE_TAG;
                what = h[i].value;
                break;
            }
        }
    }

    if (type == 0 || what.len == 0) {
        return ngx_http_peakcache_send_text(r, NGX_HTTP_BAD_REQUEST, &text,
                                            usage, sizeof(usage) - 1);
    }

    if (zone->cache == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    found = 0;
    any = 0;
    p = what.data;
    last = what.data + what.len;

    while (p < last) {

        if (type == NGX_HTTP_PEAKCACHE_PURGE_TAG) {
            while (p < last && *p == ' ') {
                p++;
            }

            start = p;

            while (p < last && *p != ' ') {
                p++;
            }

        } else {
            start = p;
            p = last;
        }

        len = p - start;

        if (len == 0) {
            continue;
        }

        if (ngx_http_peakcache_purge_one(zone, type, soft, start, len, &found,
                                         r->connection->log)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        any = 1;
    }

    if (!any) {
        return ngx_http_peakcache_send_text(r, NGX_HTTP_BAD_REQUEST, &text,
                                            usage, sizeof(usage) - 1);
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "peakcache: %s purge of %s \"%V\" in \"%V\"",
                  soft ? "soft" : "hard",
                  type == NGX_HTTP_PEAKCACHE_PURGE_TAG ? "tags" : "key",
                  &what, &zone->name);

    len = sizeof("{\"zone\":\"\",\"purged\":\"tag\",\"soft\":false,"
                 "\"found\":false,\"target\":\"\"}" CRLF) - 1
          + zone->name.len + what.len
          + ngx_escape_json(NULL, what.data, what.len);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = ngx_sprintf(p, "{\"zone\":\"%V\",\"purged\":\"%s\",\"soft\":%s,"
                       "\"found\":%s,\"target\":\"",
                       &zone->name,
                       type == NGX_HTTP_PEAKCACHE_PURGE_TAG ? "tag" : "key",
                       soft ? "true" : "false",
                       type == NGX_HTTP_PEAKCACHE_PURGE_TAG
                       ? "null" : (found ? "true" : "false"));
    last = (u_char *) ngx_escape_json(last, what.data, what.len);
    last = ngx_cpymem(last, "\"}" CRLF, 4);

    return ngx_http_peakcache_send_text(r, NGX_HTTP_OK, &json, p, last - p);
}


static ngx_int_t
ngx_http_peakcache_status_handler(ngx_http_request_t *r)
{
    size_t                          len;
    ngx_int_t                       rc, seconds;
    ngx_str_t                       arg, *type;
    const uint8_t                  *data;
    peakcache_buf                  *buf;
    peakcache_result                prc;
    ngx_http_peakcache_zone_t      *zone;
    ngx_http_peakcache_loc_conf_t  *plcf;

    static ngx_str_t  json = ngx_string("application/json");
    static ngx_str_t  prom = ngx_string("text/plain; version=0.0.4");
    static ngx_str_t  html = ngx_string("text/html; charset=utf-8");

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    plcf = ngx_http_get_module_loc_conf(r, ngx_http_peakcache_module);
    zone = plcf->status_page;

    if (zone->cache == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    buf = NULL;

    if (ngx_http_peakcache_wants_page(r)) {
        if (peakcache_status_page(&data, &len) != PEAKCACHE_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_peakcache_send_text(r, NGX_HTTP_OK, &html,
                                            (u_char *) data, len);
    }

    if (ngx_http_arg(r, (u_char *) "format", 6, &arg) == NGX_OK
        && arg.len == sizeof("prometheus") - 1
        && ngx_strncmp(arg.data, "prometheus", arg.len) == 0)
    {
        type = &prom;
        prc = peakcache_stats_prometheus(zone->cache, &buf);

    } else if (ngx_http_arg(r, (u_char *) "history", 7, &arg) == NGX_OK) {
        type = &json;
        seconds = ngx_atoi(arg.data, arg.len);
        prc = peakcache_status_json(zone->cache,
                                    seconds == NGX_ERROR ? 0 : seconds, &buf);

    } else {
        type = &json;
        prc = peakcache_stats_json(zone->cache, &buf);
    }

    if (prc != PEAKCACHE_OK
        || peakcache_buf_data(buf, &data, &len) != PEAKCACHE_OK)
    {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, prc,
                                     "reading the stats failed");
        peakcache_buf_free(buf);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the bytes are copied: the buffer is the library's */

    if (type == &json) {
        rc = ngx_http_peakcache_status_region(r, zone, data, len);

    } else {
        rc = ngx_http_peakcache_send_text(r, NGX_HTTP_OK, type,
                                          (u_char *) data, len);
    }

    peakcache_buf_free(buf);

    return rc;
}


/*
 * A shared zone's JSON: the library's counters (region-wide: every worker's
 * lookups) and the region's geometry and recovery counters after them.
 */

static ngx_int_t
ngx_http_peakcache_status_region(ngx_http_request_t *r,
    ngx_http_peakcache_zone_t *zone, const uint8_t *data, size_t len)
{
    u_char                 *p, *last;
    peakcache_region_info   ri;

    static ngx_str_t  json = ngx_string("application/json");

    while (len && (data[len - 1] == '\n' || data[len - 1] == '\r'
                   || data[len - 1] == ' '))
    {
        len--;
    }

    if (len < 2 || data[len - 1] != '}'
        || peakcache_cache_region_info(zone->cache, &ri) != PEAKCACHE_OK)
    {
        return ngx_http_peakcache_send_text(r, NGX_HTTP_OK, &json,
                                            (u_char *) data, len);
    }

    p = ngx_pnalloc(r->pool, len + 512 + zone->shm_path.len * 6);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = ngx_cpymem(p, data, len - 1);
    last = ngx_sprintf(last, ",\"backend\":\"shared\",\"region_path\":\"");
    last = (u_char *) ngx_escape_json(last, zone->shm_path.data,
                                      zone->shm_path.len);
    last = ngx_sprintf(last, "\",\"region_opened\":%uD,"
                       "\"region_bytes\":%uL,\"heap_bytes\":%uL,"
                       "\"region_max_object_bytes\":%uL,\"recoveries\":%uL,"
                       "\"takeovers\":%uL,\"entries_dropped\":%uL,"
                       "\"shards\":%uD,\"slots_per_shard\":%uD,"
                       "\"tags_used\":%uD,\"tag_slots\":%uD}" CRLF,
                       ri.opened, ri.region_bytes, ri.heap_bytes,
                       ri.max_object_bytes, ri.recoveries, ri.takeovers,
                       ri.entries_dropped, ri.shards, ri.slots_per_shard,
                       ri.tags_used, ri.tag_slots);

    return ngx_http_peakcache_send_text(r, NGX_HTTP_OK, &json, p, last - p);
}


static ngx_int_t
ngx_http_peakcache_send_text(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_length_n = len;

    /* the answer describes this moment: never cached downstream */
    r->headers_out.last_modified_time = -1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_create_temp_buf(r->pool, len ? len : 1);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->pos, data, len);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * The live page for ?format=html, or for a browser (Accept: text/html)
 * without a format; tools get JSON.
 */

static ngx_int_t
ngx_http_peakcache_wants_page(ngx_http_request_t *r)
{
    ngx_str_t         arg;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;
    ngx_uint_t        i;

    if (ngx_http_arg(r, (u_char *) "format", 6, &arg) == NGX_OK) {
        return arg.len == 4 && ngx_strncmp(arg.data, "html", 4) == 0;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {
        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("Accept") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Accept", 6) == 0
            && ngx_strlcasestrn(h[i].value.data,
                                h[i].value.data + h[i].value.len,
                                (u_char *) "text/html", 9 - 1)
               != NULL)
        {
            return 1;
        }
    }
}


/*
 * POST ?action=snapshot|restore|freeze|thaw on the purge location.  A
 * restore replaces the zone's entries by the snapshot's (they keep their
 * ages); with &freeze=1 the zone is frozen first: a rollback in one request.
 */

static ngx_int_t
ngx_http_peakcache_admin_action(ngx_http_request_t *r,
    ngx_http_peakcache_zone_t *zone, ngx_str_t *action)
{
    u_char            *p, *last;
    uint64_t           entries, skipped;
    ngx_str_t          arg;
    ngx_uint_t         freeze;
    peakcache_result   rc;

    static ngx_str_t  json = ngx_string("application/json");
    static ngx_str_t  text = ngx_string("text/plain");
    static u_char     usage[] =
        "?action=snapshot | restore[&freeze=1] | freeze | thaw" CRLF;
    static u_char     nosnap[] =
        "this zone has no snapshot=FILE (peakcache_zone)" CRLF;

    if (zone->cache == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    entries = 0;
    skipped = 0;

    freeze = (ngx_http_arg(r, (u_char *) "freeze", 6, &arg) == NGX_OK
              && arg.len && arg.data[0] != '0');

    if (action->len == 6 && ngx_strncmp(action->data, "freeze", 6) == 0) {
        rc = peakcache_freeze(zone->cache, true);

    } else if (action->len == 4 && ngx_strncmp(action->data, "thaw", 4) == 0) {
        rc = peakcache_freeze(zone->cache, false);

    } else if (action->len == 8
               && ngx_strncmp(action->data, "snapshot", 8) == 0)
    {
        if (zone->snapshot.len == 0) {
            return ngx_http_peakcache_send_text(r, NGX_HTTP_CONFLICT, &text,
                                                nosnap, sizeof(nosnap) - 1);
        }

        if (ngx_http_peakcache_snapshot_write(zone, &entries,
                                              r->connection->log)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = PEAKCACHE_OK;

    } else if (action->len == 7
               && ngx_strncmp(action->data, "restore", 7) == 0)
    {
        if (zone->snapshot.len == 0) {
            return ngx_http_peakcache_send_text(r, NGX_HTTP_CONFLICT, &text,
                                                nosnap, sizeof(nosnap) - 1);
        }

        if (freeze) {
            (void) peakcache_freeze(zone->cache, true);
        }

        /* the snapshot's copies replace what the bad change stored */

        rc = peakcache_clear(zone->cache);

        if (rc == PEAKCACHE_OK
            && ngx_http_peakcache_snapshot_restore(zone, &entries, &skipped,
                                                   r->connection->log)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else {
        return ngx_http_peakcache_send_text(r, NGX_HTTP_BAD_REQUEST, &text,
                                            usage, sizeof(usage) - 1);
    }

    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, r->connection->log, rc,
                                     "the admin action failed");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_log_error(NGX_LOG_NOTICE, r->connection->log, 0,
                  "peakcache: %V of \"%V\"", action, &zone->name);

    p = ngx_pnalloc(r->pool, 256 + zone->name.len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = ngx_sprintf(p, "{\"zone\":\"%V\",\"action\":\"%V\","
                       "\"entries\":%uL,\"skipped\":%uL,\"frozen\":%s}"
                       CRLF, &zone->name, action, entries, skipped,
                       peakcache_is_frozen(zone->cache) ? "true" : "false");

    return ngx_http_peakcache_send_text(r, NGX_HTTP_OK, &json, p, last - p);
}


static ngx_int_t
ngx_http_peakcache_purge_one(ngx_http_peakcache_zone_t *zone, ngx_uint_t type,
    ngx_uint_t soft, u_char *data, size_t len, ngx_uint_t *found,
    ngx_log_t *log)
{
    bool              f;
    peakcache_result  rc;

    f = false;

    switch (type) {

    case NGX_HTTP_PEAKCACHE_PURGE_KEY:
        rc = peakcache_purge(zone->cache, data, len, soft ? true : false, &f);
        break;

    case NGX_HTTP_PEAKCACHE_PURGE_TAG:
        rc = peakcache_purge_tag(zone->cache, data, len, soft ? true : false);
        break;

    default: /* NGX_HTTP_PEAKCACHE_PURGE_URL: the key and its variants */
        rc = peakcache_purge(zone->cache, data, len, soft ? true : false, &f);

        if (rc == PEAKCACHE_OK) {
            rc = peakcache_purge_tag(zone->cache, data, len,
                                     soft ? true : false);
        }

        break;
    }

    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, log, rc, "purge failed");
        return NGX_ERROR;
    }

    if (f) {
        *found = 1;
    }

    return NGX_OK;
}


/* logging */

static void
ngx_http_peakcache_log_error(ngx_uint_t level, ngx_log_t *log,
    peakcache_result rc, const char *what)
{
    char  why[256];

    why[0] = '\0';
    (void) peakcache_last_error(why, sizeof(why));

    ngx_log_error(level, log, 0, "peakcache: %s: %s (%s)",
                  what, peakcache_result_str(rc), why);
}


static void
ngx_http_peakcache_log_callback(void *userdata, int level, const uint8_t *msg,
    size_t len)
{
    ngx_uint_t  nlevel;

    switch (level) {

    case PEAKCACHE_LOG_ERROR:
        nlevel = NGX_LOG_ERR;
        break;

    case PEAKCACHE_LOG_WARN:
        nlevel = NGX_LOG_WARN;
        break;

    case PEAKCACHE_LOG_INFO:
        nlevel = NGX_LOG_INFO;
        break;

    default:
        nlevel = NGX_LOG_DEBUG;
        break;
    }

    /* the library's messages name it already */
    ngx_log_error(nlevel, ngx_cycle->log, 0, "%*s", len, msg);
}


/* variables */

static ngx_int_t
ngx_http_peakcache_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_peakcache_ctx_t  *ctx;

    ctx = ngx_http_peakcache_get_ctx(r);

    if (ctx == NULL || ctx->status == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->len = ngx_http_peakcache_status_names[ctx->status].len;
    v->data = ngx_http_peakcache_status_names[ctx->status].data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_peakcache_key_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                    *p;
    size_t                     i;
    ngx_http_peakcache_ctx_t  *ctx;

    ctx = ngx_http_peakcache_get_ctx(r);

    if (ctx == NULL || ctx->key.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    /*
     * A variant's key holds control bytes (a NUL before its Vary part, a
     * newline between fields): shown as spaces, so the value is safe in a
     * header or a log.
     */

    v->data = ngx_pnalloc(r->pool, ctx->key.len);
    if (v->data == NULL) {
        return NGX_ERROR;
    }

    v->len = ctx->key.len;

    for (p = v->data, i = 0; i < ctx->key.len; i++) {
        *p++ = ctx->key.data[i] < 0x20 ? ' ' : ctx->key.data[i];
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * $request_method is the main request's method: fastcgi_params sends it as
 * REQUEST_METHOD, so a refresh started by a HEAD would ask PHP for a HEAD,
 * and PHP's empty answer would be stored.  In a refresh it is the method the
 * refresh is sent with (GET); everywhere else nginx's own.  It is a
 * non-cacheable variable: every consumer (fastcgi_param, the access log)
 * evaluates it for the request at hand.
 */

static ngx_int_t
ngx_http_peakcache_request_method_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_peakcache_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_peakcache_module);

    if (ctx == NULL || !ctx->background) {
        return ngx_http_peakcache_request_method(r, v, data);
    }

    v->len = r->method_name.len;
    v->data = r->method_name.data;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static void
ngx_http_peakcache_wrap_request_method(ngx_conf_t *cf)
{
    ngx_uint_t                  i;
    ngx_hash_key_t             *key;
    ngx_http_variable_t        *v;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    key = cmcf->variables_keys->keys.elts;

    for (i = 0; i < cmcf->variables_keys->keys.nelts; i++) {

        if (key[i].key.len != sizeof("request_method") - 1
            || ngx_strncmp(key[i].key.data, "request_method",
                           key[i].key.len) != 0)
        {
            continue;
        }

        v = key[i].value;

        if (v->get_handler != ngx_http_peakcache_request_method_variable) {
            ngx_http_peakcache_request_method = v->get_handler;
            v->get_handler = ngx_http_peakcache_request_method_variable;
        }

        return;
    }
}


/* configuration */

static ngx_int_t
ngx_http_peakcache_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_peakcache_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_peakcache_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_peakcache_main_conf_t  *pmcf;

    pmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_peakcache_main_conf_t));
    if (pmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&pmcf->zones, cf->pool, 4,
                       sizeof(ngx_http_peakcache_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return pmcf;
}


static char *
ngx_http_peakcache_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_peakcache_main_conf_t *pmcf = conf;

    ngx_uint_t                  i;
    ngx_http_peakcache_zone_t **zones;

    zones = pmcf->zones.elts;

    for (i = 0; i < pmcf->zones.nelts; i++) {
        if (zones[i]->size == 0) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "unknown peakcache_zone \"%V\" used in %s:%ui",
                          &zones[i]->name, zones[i]->file, zones[i]->line);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_peakcache_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_peakcache_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_peakcache_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->purge = NULL;
     *     conf->status_page = NULL;
     */

    conf->zone = NGX_CONF_UNSET_PTR;
    conf->key = NGX_CONF_UNSET_PTR;
    conf->bypass = NGX_CONF_UNSET_PTR;
    conf->no_store = NGX_CONF_UNSET_PTR;
    conf->lock_timeout = NGX_CONF_UNSET_MSEC;
    conf->default_ttl = NGX_CONF_UNSET_MSEC;
    conf->default_swr = NGX_CONF_UNSET_MSEC;
    conf->default_sie = NGX_CONF_UNSET_MSEC;
    conf->pass_hold = NGX_CONF_UNSET_MSEC;
    conf->max_object_size = NGX_CONF_UNSET_SIZE;
    conf->origin_concurrency = NGX_CONF_UNSET_UINT;
    conf->honour_request_directives = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_peakcache_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_peakcache_loc_conf_t *prev = parent;
    ngx_http_peakcache_loc_conf_t *conf = child;

    ngx_conf_merge_ptr_value(conf->zone, prev->zone, NULL);
    ngx_conf_merge_ptr_value(conf->key, prev->key, NULL);
    ngx_conf_merge_ptr_value(conf->bypass, prev->bypass, NULL);
    ngx_conf_merge_ptr_value(conf->no_store, prev->no_store, NULL);
    ngx_conf_merge_msec_value(conf->lock_timeout, prev->lock_timeout, 5000);
    ngx_conf_merge_msec_value(conf->default_ttl, prev->default_ttl, 0);
    ngx_conf_merge_msec_value(conf->default_swr, prev->default_swr, 0);
    ngx_conf_merge_msec_value(conf->default_sie, prev->default_sie, 0);
    ngx_conf_merge_msec_value(conf->pass_hold, prev->pass_hold, 5000);
    ngx_conf_merge_size_value(conf->max_object_size, prev->max_object_size,
                              1024 * 1024);
    ngx_conf_merge_uint_value(conf->origin_concurrency,
                              prev->origin_concurrency, 0);
    ngx_conf_merge_value(conf->honour_request_directives,
                         prev->honour_request_directives, 0);

    if ((conf->zone || conf->purge)
        && ngx_http_peakcache_create_policies(cf, prev, conf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->zone) {
        /* the zone's cache is made for the most demanding location */

        if (conf->zone->lock_timeout < conf->lock_timeout) {
            conf->zone->lock_timeout = conf->lock_timeout;
        }

        if (conf->zone->max_object_size < conf->max_object_size) {
            conf->zone->max_object_size = conf->max_object_size;
        }
    }

    return NGX_CONF_OK;
}


static ngx_http_peakcache_zone_t *
ngx_http_peakcache_zone_get(ngx_conf_t *cf, ngx_str_t *name, ngx_uint_t define)
{
    ngx_uint_t                        i;
    ngx_http_peakcache_zone_t        *zone, **zones, **zp;
    ngx_http_peakcache_main_conf_t   *pmcf;

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_peakcache_module);

    zones = pmcf->zones.elts;

    for (i = 0; i < pmcf->zones.nelts; i++) {
        if (zones[i]->name.len == name->len
            && ngx_strncmp(zones[i]->name.data, name->data, name->len) == 0)
        {
            zone = zones[i];

            if (define && zone->size) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "duplicate peakcache_zone \"%V\"", name);
                return NULL;
            }

            return zone;
        }
    }

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_peakcache_zone_t));
    if (zone == NULL) {
        return NULL;
    }

    zone->name = *name;
    zone->file = cf->conf_file->file.name.data;
    zone->line = cf->conf_file->line;

    zp = ngx_array_push(&pmcf->zones);
    if (zp == NULL) {
        return NULL;
    }

    *zp = zone;

    return zone;
}


/*
 * peakcache_zone NAME size=N [path=FILE|off]: one cache for every worker, in
 * a shared memory region made in postconfiguration.  The default file,
 * /dev/shm/peakcache-NAME, is kept across reloads and restarts (until
 * reboot); "path=off" is an anonymous mapping, empty again on every reload.
 * "shared", the keyword of the time zones were per worker by default, is
 * still accepted and changes nothing.  "snapshot=FILE" is where the zone's
 * snapshots go: restored when the region is new (a warm start after a
 * reboot), written every "snapshot_interval=T" by one worker, and on demand
 * by the purge location's ?action=snapshot.
 */

static char *
ngx_http_peakcache_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ssize_t                     size;
    ngx_str_t                  *value, s, path;
    ngx_uint_t                  i;
    ngx_http_peakcache_zone_t  *zone;

    value = cf->args->elts;

    zone = ngx_http_peakcache_zone_get(cf, &value[1], 1);
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    size = 0;
    ngx_str_null(&path);

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "size=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR || size < 64 * 1024) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid size \"%V\" (at least 64k)",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "shared") == 0) {
            continue;
        }

        if (ngx_strncmp(value[i].data, "snapshot=", 9) == 0) {
            zone->snapshot.data = value[i].data + 9;
            zone->snapshot.len = value[i].len - 9;

            if (zone->snapshot.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "snapshot_interval=", 18) == 0) {
            s.data = value[i].data + 18;
            s.len = value[i].len - 18;

            zone->snapshot_interval = ngx_parse_time(&s, 0);

            if (zone->snapshot_interval == (ngx_msec_t) NGX_ERROR
                || zone->snapshot_interval < 1000)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid snapshot_interval \"%V\" "
                                   "(at least 1s)", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "path=", 5) == 0) {
            path.data = value[i].data + 5;
            path.len = value[i].len - 5;

            if (path.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (size == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"size\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    if (zone->snapshot_interval && zone->snapshot.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"snapshot_interval\" needs \"snapshot\"");
        return NGX_CONF_ERROR;
    }

    if (zone->snapshot.len) {
        if (ngx_conf_full_name(cf->cycle, &zone->snapshot, 0) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    zone->size = size;
    zone->file = cf->conf_file->file.name.data;
    zone->line = cf->conf_file->line;

    if (path.len == 3 && ngx_strncmp(path.data, "off", 3) == 0) {
        ngx_str_null(&zone->shm_path);

    } else if (path.len) {
        zone->shm_path = path;

    } else {
        zone->shm_path.len = sizeof("/dev/shm/peakcache-") - 1 + zone->name.len;
        zone->shm_path.data = ngx_pnalloc(cf->pool, zone->shm_path.len);
        if (zone->shm_path.data == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_sprintf(zone->shm_path.data, "/dev/shm/peakcache-%V", &zone->name);
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_peakcache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_peakcache_loc_conf_t *plcf = conf;

    ngx_str_t  *value;

    if (plcf->zone != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        plcf->zone = NULL;
        return NGX_CONF_OK;
    }

    plcf->zone = ngx_http_peakcache_zone_get(cf, &value[1], 0);
    if (plcf->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_peakcache_purge(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_peakcache_loc_conf_t *plcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (plcf->purge) {
        return "is duplicate";
    }

    value = cf->args->elts;

    plcf->purge = ngx_http_peakcache_zone_get(cf, &value[1], 0);
    if (plcf->purge == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_peakcache_purge_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_peakcache_status_page(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_peakcache_loc_conf_t *plcf = conf;

    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    if (plcf->status_page) {
        return "is duplicate";
    }

    value = cf->args->elts;

    plcf->status_page = ngx_http_peakcache_zone_get(cf, &value[1], 0);
    if (plcf->status_page == NULL) {
        return NGX_CONF_ERROR;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_peakcache_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_peakcache_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_peakcache_handler;

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_peakcache_log_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_peakcache_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_peakcache_body_filter;

    ngx_http_peakcache_wrap_request_method(cf);

    return ngx_http_peakcache_open_shared(cf);
}


/* a zone's cache settings */

static void
ngx_http_peakcache_zone_config(ngx_http_peakcache_zone_t *zone,
    peakcache_config *cfg)
{
    (void) peakcache_config_default(cfg);

    cfg->capacity_bytes = zone->size;
    cfg->lock_timeout_ms = zone->lock_timeout ? zone->lock_timeout : 5000;

    if (zone->max_object_size) {
        /* room for the headers and the entry's own weight */
        cfg->max_object_bytes = zone->max_object_size + 64 * 1024;
    }

    cfg->backend = PEAKCACHE_BACKEND_SHARED;
    cfg->shm_path = zone->shm_path.data;
    cfg->shm_path_len = zone->shm_path.len;
    cfg->shm_recreate_on_mismatch = true;
}


/*
 * The caches of shared zones, made here in the master (or the single process)
 * at configuration time, so that every worker forked afterwards inherits the
 * handle and its mapping; workers never reopen it.  The handle is freed with
 * the cycle's pool.  On reload the new cycle opens the same path while the old
 * one still has it: it attaches, entries kept (a changed size, shard count or
 * lock timeout cannot attach: the region is replaced by an empty one, the old
 * workers finishing on the old, unlinked one).  Nothing is opened by "nginx -t"
 * or "nginx -s ...": a test must never replace the live region.
 */

static ngx_int_t
ngx_http_peakcache_open_shared(ngx_conf_t *cf)
{
    ngx_uint_t                        i;
    peakcache_config                  cfg;
    peakcache_result                  rc;
    ngx_pool_cleanup_t               *cln;
    peakcache_region_info             ri;
    ngx_http_peakcache_zone_t       **zones, *zone;
    ngx_http_peakcache_main_conf_t   *pmcf;

    static const char  *opened[] = {
        "not shared", "an anonymous region made", "created", "attached",
        "recreated (the old one did not match)"
    };

    if (ngx_test_config || ngx_process == NGX_PROCESS_SIGNALLER) {
        return NGX_OK;
    }

    pmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_peakcache_module);
    zones = pmcf->zones.elts;

    for (i = 0; i < pmcf->zones.nelts; i++) {
        zone = zones[i];

        if (zone->cache) {
            continue;
        }

        /* the library's warnings (a region recreated) reach the error log */
        peakcache_set_log_callback(NULL, ngx_http_peakcache_log_callback);

        cln = ngx_pool_cleanup_add(cf->cycle->pool, 0);
        if (cln == NULL) {
            return NGX_ERROR;
        }

        ngx_http_peakcache_zone_config(zone, &cfg);

        if (ngx_http_peakcache_region_owner(cf, &cfg) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = peakcache_cache_new(&cfg, &zone->cache);
        if (rc != PEAKCACHE_OK) {
            ngx_http_peakcache_log_error(NGX_LOG_EMERG, cf->log, rc,
                                         "opening the shared region failed");
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "peakcache_zone \"%V\" (%s:%ui): region \"%V\"",
                          &zone->name, zone->file, zone->line,
                          &zone->shm_path);
            return NGX_ERROR;
        }

        cln->handler = ngx_http_peakcache_shared_cleanup;
        cln->data = zone;

        if (peakcache_cache_region_info(zone->cache, &ri) == PEAKCACHE_OK) {
            ngx_log_error(NGX_LOG_NOTICE, cf->log, 0,
                          "peakcache_zone \"%V\": shared region \"%V\" %s, "
                          "%uL bytes, %uD shards",
                          &zone->name, &zone->shm_path,
                          opened[ri.opened < 5 ? ri.opened : 0],
                          ri.region_bytes, ri.shards);

            /*
             * A new region (after a reboot, or path=off) is warmed from the
             * last snapshot before any worker exists: its first visitors
             * get hits, the origin no stampede.  An attached one keeps its
             * own entries, newer than any snapshot.
             */

            if (zone->snapshot.len && ri.opened != PEAKCACHE_REGION_ATTACHED) {
                (void) ngx_http_peakcache_snapshot_restore(zone, NULL, NULL,
                                                           cf->log);
            }
        }
    }

    return NGX_OK;
}


/*
 * The region file belongs to the workers' user, not to root: a master started
 * as root creates it for them (and the library refuses a file owned by anyone
 * else).  That user is the "user" directive's, or, without one, the default
 * nginx's core module will pick (NGX_USER, NGX_GROUP).  A master that is not
 * root makes the file its own.
 */

static ngx_int_t
ngx_http_peakcache_region_owner(ngx_conf_t *cf, peakcache_config *cfg)
{
    struct group     *grp;
    struct passwd    *pwd;
    ngx_core_conf_t  *ccf;

    if (geteuid() != 0) {
        return NGX_OK;
    }

    ccf = (ngx_core_conf_t *) ngx_get_conf(cf->cycle->conf_ctx,
                                           ngx_core_module);

    if (ccf->user != (ngx_uid_t) NGX_CONF_UNSET_UINT) {
        cfg->shm_owner_uid = ccf->user;
        cfg->shm_owner_gid = ccf->group;
        return NGX_OK;
    }

    pwd = getpwnam(NGX_USER);
    grp = getgrnam(NGX_GROUP);

    if (pwd == NULL || grp == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "peakcache: no user \"" NGX_USER "\" or group \""
                      NGX_GROUP "\" to own the shared regions "
                      "(set the \"user\" directive before \"http\")");
        return NGX_ERROR;
    }

    cfg->shm_owner_uid = pwd->pw_uid;
    cfg->shm_owner_gid = grp->gr_gid;

    return NGX_OK;
}


static void
ngx_http_peakcache_shared_cleanup(void *data)
{
    ngx_http_peakcache_zone_t *zone = data;

    /* this process's handle: the region stays for every other one */
    peakcache_cache_free(zone->cache);
    zone->cache = NULL;
}


static ngx_int_t
ngx_http_peakcache_init_module(ngx_cycle_t *cycle)
{
    u_char       want[NGX_INT_T_LEN * 2 + 3], *last;
    const char  *version;

    /* the header and the library agree on MAJOR.MINOR (0.x: minor breaks) */

    version = peakcache_version();
    last = ngx_sprintf(want, "%d.%d.", PEAKCACHE_VERSION_MAJOR,
                       PEAKCACHE_VERSION_MINOR);

    if (ngx_strncmp(version, want, last - want) != 0) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "peakcache: library %s does not match the header "
                      "%d.%d.%d", version, PEAKCACHE_VERSION_MAJOR,
                      PEAKCACHE_VERSION_MINOR, PEAKCACHE_VERSION_PATCH);
        return NGX_ERROR;
    }

    return ngx_http_peakcache_bells_make(cycle);
}


static ngx_int_t
ngx_http_peakcache_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_http_peakcache_zone_t       **zones, *zone;
    ngx_http_peakcache_main_conf_t   *pmcf;

    pmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_peakcache_module);
    if (pmcf == NULL) {
        return NGX_OK;
    }

    ngx_http_peakcache_mcf = pmcf;

    ngx_http_peakcache_memo_clear();

    peakcache_set_log_callback(NULL, ngx_http_peakcache_log_callback);

    zones = pmcf->zones.elts;

    for (i = 0; i < pmcf->zones.nelts; i++) {
        zone = zones[i];

        ngx_rbtree_init(&zone->fills, &zone->sentinel,
                        ngx_str_rbtree_insert_value);
        ngx_rbtree_init(&zone->polls, &zone->polls_sentinel,
                        ngx_str_rbtree_insert_value);

        /* the master's handle, inherited: never reopened here */
        if (zone->cache == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "peakcache_zone \"%V\": no shared region",
                          &zone->name);
            return NGX_ERROR;
        }

        ngx_memzero(&zone->counts, sizeof(peakcache_host_counts));
        ngx_memzero(&zone->tick, sizeof(ngx_event_t));
        zone->tick.handler = ngx_http_peakcache_tick;
        zone->tick.data = zone;
        zone->tick.log = cycle->log;
        zone->tick.cancelable = 1;

        ngx_add_timer(&zone->tick, 1000);
    }

    return ngx_http_peakcache_bell_listen(cycle);
}


/*
 * Once a second in every worker: this worker's counts go to the region and
 * the first worker in a second samples the history (the hit path never
 * touches it); the first worker past a snapshot interval writes the snapshot.
 */

static void
ngx_http_peakcache_tick(ngx_event_t *ev)
{
    ngx_http_peakcache_zone_t *zone = ev->data;

    peakcache_result  rc;

    if (zone->cache == NULL) {
        return;
    }

    rc = peakcache_cache_tick(zone->cache, &zone->counts, NULL);
    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_WARN, ev->log, rc,
                                     "sampling the history failed");
    }

    ngx_memzero(&zone->counts, sizeof(peakcache_host_counts));

    if (zone->snapshot_interval) {
        ngx_http_peakcache_snapshot_due(zone, ev->log);
    }

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(ev, 1000);
    }
}


static void
ngx_http_peakcache_snapshot_due(ngx_http_peakcache_zone_t *zone,
    ngx_log_t *log)
{
    bool  due;

    /* a frozen zone keeps the last snapshot written before the freeze */

    if (peakcache_is_frozen(zone->cache)) {
        return;
    }

    if (peakcache_cache_claim_every(zone->cache, zone->snapshot_interval,
                                    &due)
        != PEAKCACHE_OK || !due)
    {
        return;
    }

    (void) ngx_http_peakcache_snapshot_write(zone, NULL, log);
}


/*
 * Shard by shard, each shard copied under its lock and written after it is
 * released, into a temporary file renamed over the snapshot once synced.
 */

static ngx_int_t
ngx_http_peakcache_snapshot_write(ngx_http_peakcache_zone_t *zone,
    uint64_t *entries, ngx_log_t *log)
{
    uint64_t          n;
    ngx_msec_t        start;
    peakcache_result  rc;

    ngx_time_update();
    start = ngx_current_msec;

    rc = peakcache_cache_snapshot(zone->cache, zone->snapshot.data,
                                  zone->snapshot.len, &n);
    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_ERR, log, rc,
                                     "writing the snapshot failed");
        return NGX_ERROR;
    }

    ngx_time_update();

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "peakcache_zone \"%V\": snapshot \"%V\" written, "
                  "%uL entries in %M ms",
                  &zone->name, &zone->snapshot, n,
                  ngx_current_msec - start);

    if (entries) {
        *entries = n;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_peakcache_snapshot_restore(ngx_http_peakcache_zone_t *zone,
    uint64_t *restored, uint64_t *skipped, ngx_log_t *log)
{
    uint64_t          r, k;
    ngx_msec_t        start;
    peakcache_result  rc;

    ngx_time_update();
    start = ngx_current_msec;

    rc = peakcache_cache_restore(zone->cache, zone->snapshot.data,
                                 zone->snapshot.len, &r, &k);
    if (rc != PEAKCACHE_OK) {
        ngx_http_peakcache_log_error(NGX_LOG_WARN, log, rc,
                                     "restoring the snapshot failed");
        return NGX_ERROR;
    }

    ngx_time_update();

    ngx_log_error(NGX_LOG_NOTICE, log, 0,
                  "peakcache_zone \"%V\": snapshot \"%V\" restored, "
                  "%uL entries (%uL skipped) in %M ms",
                  &zone->name, &zone->snapshot, r, k,
                  ngx_current_msec - start);

    if (restored) {
        *restored = r;
    }

    if (skipped) {
        *skipped = k;
    }

    return NGX_OK;
}


/* the status page's visitor counts: every request a cached location answered */

static ngx_int_t
ngx_http_peakcache_log_handler(ngx_http_request_t *r)
{
    ngx_http_peakcache_ctx_t  *ctx;

    if (r != r->main) {
        return NGX_OK;
    }

    ctx = ngx_http_peakcache_get_ctx(r);

    if (ctx == NULL || ctx->zone == NULL) {
        return NGX_OK;
    }

    ctx->zone->counts.visitor_requests++;

    if (r->headers_out.status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        ctx->zone->counts.visitor_errors++;
    }

    return NGX_OK;
}


static void
ngx_http_peakcache_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                   i;
    ngx_http_peakcache_zone_t  **zones;

    if (ngx_http_peakcache_mcf == NULL) {
        return;
    }

    ngx_http_peakcache_memo_clear();

    zones = ngx_http_peakcache_mcf->zones.elts;

    for (i = 0; i < ngx_http_peakcache_mcf->zones.nelts; i++) {
        /* handles requests still hold stay valid: the library counts them */
        peakcache_cache_free(zones[i]->cache);
        zones[i]->cache = NULL;
    }

    peakcache_set_log_callback(NULL, NULL);
}
