/* The HTTP family (peakcache_http_*) as a C host uses it: keys, store decisions from real header
 * sets, the prepared response committed to a cache, serving with Age and Cache-Status,
 * revalidation with a 304 merge, client conditionals, invalidation, and misuse. */
#include "check.h"

#define SENTINEL ((void *)0x5A5A)
#define S(str) {(const uint8_t *)(str), sizeof(str) - 1}
#define NONE {NULL, 0}
#define HDR(n, v) {(const uint8_t *)(n), sizeof(n) - 1, (const uint8_t *)(v), sizeof(v) - 1}
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* 2023-11-14T22:13:20Z in Unix milliseconds, and the same instant as an HTTP date. */
#define T0 1700000000000ull
#define DATE0 "Tue, 14 Nov 2023 22:13:20 GMT"
#define DATE5 "Tue, 14 Nov 2023 22:13:25 GMT"

static peakcache_http_request request(const char *method, const char *path,
                                      const peakcache_http_header *h, size_t n) {
    peakcache_http_request r = {{(const uint8_t *)method, strlen(method)}, NONE, NONE,
                                {(const uint8_t *)path, strlen(path)}, h, n};
    return r;
}

static peakcache_http_response_head head(uint16_t status, const peakcache_http_header *h,
                                         size_t n) {
    peakcache_http_response_head r = {status, h, n};
    return r;
}

static peakcache_http_policy *new_policy(const peakcache_http_config *cfg) {
    peakcache_http_policy *p = NULL;
    CHECK_OK(peakcache_http_policy_new(cfg, &p));
    CHECK(p != NULL);
    return p;
}

/* Whether `buf` holds exactly `want`; frees it. */
static int buf_is(peakcache_buf *buf, const char *want) {
    const uint8_t *ptr = NULL;
    size_t len = 0;
    int ok = buf != NULL && peakcache_buf_data(buf, &ptr, &len) == PEAKCACHE_OK &&
             len == strlen(want) && memcmp(ptr, want, len) == 0;
    if (!ok && buf != NULL) fprintf(stderr, "    got: %.*s\n    want: %s\n", (int)len, (const char *)ptr, want);
    peakcache_buf_free(buf);
    return ok;
}

/* The value of header `name` in `h` as a NUL-terminated copy in `out` ("" if absent: then
 * returns 0). */
static int header_value(const peakcache_http_headers *h, const char *name, char *out, size_t cap) {
    const peakcache_http_header *items = NULL;
    size_t n = 0;
    out[0] = 0;
    if (peakcache_http_headers_items(h, &items, &n) != PEAKCACHE_OK) return 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].name_len == strlen(name) && strncasecmp((const char *)items[i].name, name, items[i].name_len) == 0) {
            size_t len = items[i].value_len < cap - 1 ? items[i].value_len : cap - 1;
            memcpy(out, items[i].value, len);
            out[len] = 0;
            return 1;
        }
    }
    return 0;
}

static int has_value(const peakcache_http_headers *h, const char *name, const char *want) {
    char v[256];
    int found = header_value(h, name, v, sizeof v);
    if (want == NULL) return found;
    if (!found || strcmp(v, want) != 0) fprintf(stderr, "    %s: got '%s', want '%s'\n", name, v, want);
    return found && strcmp(v, want) == 0;
}

/* The key of a request, as a NUL-terminated copy (empty when there is none). */
static void key_of(const peakcache_http_policy *p, const peakcache_http_request *r, char *out,
                   size_t cap) {
    peakcache_buf *buf = NULL;
    out[0] = 0;
    CHECK_OK(peakcache_http_key(p, r, &buf));
    const uint8_t *ptr;
    size_t len;
    CHECK_OK(peakcache_buf_data(buf, &ptr, &len));
    if (len < cap) {
        memcpy(out, ptr, len);
        out[len] = 0;
    }
    peakcache_buf_free(buf);
}

/* Commits a storable decision under `key` as a host does: the prepared response, `body`
 * appended, the decided windows and tags. Returns the entry a lookup then gives (FRESH). */
static peakcache_entry *commit(peakcache_cache *cache, const char *key,
                               const peakcache_http_decision *d, const char *body) {
    peakcache_lookup_result r = lookup(cache, key);
    CHECK(r.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_response *resp = NULL;
    CHECK_OK(peakcache_http_store_response(d->store, &resp));
    if (body) CHECK_OK(peakcache_response_append_body(resp, (const uint8_t *)body, strlen(body)));
    const peakcache_bytes *tags = NULL;
    size_t ntags = 0;
    CHECK_OK(peakcache_http_store_tags(d->store, &tags, &ntags));
    CHECK_OK(peakcache_fill_commit(&r.fill, &resp, d->ttl_ms, d->swr_ms, d->sie_ms, tags, ntags));
    peakcache_lookup_result h = lookup(cache, key);
    CHECK(h.kind == PEAKCACHE_LOOKUP_FRESH);
    return h.entry;
}

static void keys_drop_campaign_parameters(void) {
    peakcache_http_config cfg;
    CHECK_OK(peakcache_http_config_default(&cfg));
    peakcache_bytes params[] = {S("ref")};
    peakcache_bytes prefixes[] = {S("pk_")};
    cfg.ignored_query_params = params;
    cfg.n_ignored_query_params = COUNT(params);
    cfg.ignored_query_prefixes = prefixes;
    cfg.n_ignored_query_prefixes = COUNT(prefixes);
    peakcache_http_policy *p = new_policy(&cfg);

    peakcache_http_header h[] = {HDR("Host", "Shop.Example"), HDR("X-Forwarded-Host", "evil.example"),
                                 HDR("Accept-Encoding", "gzip, br"), HDR("If-None-Match", "\"x\"")};
    const char *path = "/shoes?utm_source=mail&page=2&gclid=x&ref=nl&pk_campaign=s&color=red";
    peakcache_http_request r = request("GET", path, h, COUNT(h));
    char key[256];
    key_of(p, &r, key, sizeof key);
    CHECK(strcmp(key, "GET https://shop.example/shoes?page=2&color=red") == 0);

    /* HEAD shares GET's key; the connection's scheme and an explicit authority are used. */
    peakcache_http_request head_req = request("HEAD", path, h, COUNT(h));
    key_of(p, &head_req, key, sizeof key);
    CHECK(strcmp(key, "GET https://shop.example/shoes?page=2&color=red") == 0);
    peakcache_http_request http_req = request("GET", "/a?utm_medium=x", NULL, 0);
    http_req.scheme = (peakcache_bytes)S("http");
    http_req.authority = (peakcache_bytes)S("Shop.Example:8080");
    key_of(p, &http_req, key, sizeof key);
    CHECK(strcmp(key, "GET http://shop.example:8080/a") == 0);

    /* What goes upstream: the same parameters and the unkeyed fields removed. */
    peakcache_buf *up_path = NULL;
    peakcache_http_headers *up = NULL;
    CHECK_OK(peakcache_http_upstream_request(p, &r, &up_path, &up));
    CHECK(buf_is(up_path, "/shoes?page=2&color=red"));
    CHECK(has_value(up, "host", "Shop.Example"));
    CHECK(!has_value(up, "x-forwarded-host", NULL));
    CHECK(!has_value(up, "if-none-match", NULL));
    CHECK(has_value(up, "accept-encoding", "br"));
    peakcache_http_headers_free(up);

    /* No key: forward untouched. */
    peakcache_buf *buf = SENTINEL;
    peakcache_http_request post = request("POST", "/shoes", h, COUNT(h));
    CHECK_RC(peakcache_http_key(p, &post, &buf), PEAKCACHE_ERR_NOT_CACHEABLE);
    CHECK(buf == SENTINEL);
    char why[128];
    peakcache_last_error(why, sizeof why);
    CHECK(strstr(why, "POST") != NULL);
    peakcache_http_request nohost = request("GET", "/shoes", NULL, 0);
    CHECK_RC(peakcache_http_key(p, &nohost, &buf), PEAKCACHE_ERR_NOT_CACHEABLE);
    peakcache_http_header two_hosts[] = {HDR("host", "a.example"), HDR("host", "b.example")};
    peakcache_http_request twice = request("GET", "/", two_hosts, 2);
    CHECK_RC(peakcache_http_key(p, &twice, &buf), PEAKCACHE_ERR_NOT_CACHEABLE);
    CHECK(buf == SENTINEL);
    peakcache_http_policy_free(p);
}

static void max_age_with_swr_is_stored_and_served(void) {
    peakcache_http_policy *p = new_policy(NULL);
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_http_header rh[] = {HDR("host", "shop.example")};
    peakcache_http_request req = request("GET", "/post/1", rh, COUNT(rh));
    peakcache_http_header h[] = {
        HDR("Content-Type", "text/html"),
        HDR("Cache-Control", "max-age=60, stale-while-revalidate=30"),
        HDR("Date", DATE0),
        HDR("Surrogate-Key", "post:1 home"),
        HDR("Connection", "close"),
    };
    peakcache_http_response_head resp = head(200, h, COUNT(h));
    peakcache_http_decision d;
    CHECK_OK(peakcache_http_on_response(p, &req, &resp, T0, T0 + 40, &d));
    CHECK(d.reason == PEAKCACHE_HTTP_STORE && d.store != NULL);
    /* Fresh for 60 s minus the 40 ms the response took (RFC 9111 §4.2.3). */
    CHECK(d.ttl_ms == 59960 && d.swr_ms == 30000 && d.sie_ms == 0);

    const peakcache_bytes *tags;
    size_t ntags;
    CHECK_OK(peakcache_http_store_tags(d.store, &tags, &ntags));
    CHECK(ntags == 3);
    CHECK(tags[0].len == 6 && memcmp(tags[0].data, "post:1", 6) == 0);
    CHECK(tags[1].len == 4 && memcmp(tags[1].data, "home", 4) == 0);
    const char *key = "GET https://shop.example/post/1";
    CHECK(tags[2].len == strlen(key) && memcmp(tags[2].data, key, tags[2].len) == 0);
    const uint8_t *vary = SENTINEL;
    size_t vary_len = 99;
    CHECK_OK(peakcache_http_store_vary(d.store, &vary, &vary_len));
    CHECK(vary_len == 0);

    peakcache_entry *e = commit(cache, key, &d, "<h1>post</h1>");
    peakcache_http_store_free(d.store);
    CHECK(peakcache_entry_status(e) == 200);
    CHECK(body_is(e, "<h1>post</h1>"));
    /* Prepared: the hop-by-hop field is not stored; the metadata blob is there. */
    const uint8_t *n, *v, *meta;
    size_t nl, vl, meta_len = 0;
    for (size_t i = 0; i < peakcache_entry_header_count(e); i++) {
        CHECK_OK(peakcache_entry_header(e, i, &n, &nl, &v, &vl));
        CHECK(!(nl == 10 && strncasecmp((const char *)n, "connection", 10) == 0));
    }
    CHECK_OK(peakcache_entry_meta(e, &meta, &meta_len));
    CHECK(meta_len > 0);

    /* Served 12 s later. */
    peakcache_http_answer a;
    CHECK_OK(peakcache_http_serve(p, &req, e, PEAKCACHE_HTTP_HIT, 0, T0 + 12040, &a));
    CHECK(a.kind == PEAKCACHE_HTTP_SEND_STORED && a.status == 200 && a.headers != NULL);
    CHECK(has_value(a.headers, "age", "12"));
    CHECK(has_value(a.headers, "cache-status", "peakcache; hit; ttl=48"));
    CHECK(has_value(a.headers, "content-type", "text/html"));
    CHECK(!has_value(a.headers, "surrogate-key", NULL));
    peakcache_http_headers_free(a.headers);
    uint64_t age = 0;
    CHECK_OK(peakcache_http_age(e, T0 + 12040, &age));
    CHECK(age == 12);

    /* Stale inside stale-while-revalidate (75 s old). */
    CHECK_OK(peakcache_http_serve(p, &req, e, PEAKCACHE_HTTP_STALE, 0, T0 + 75000, &a));
    CHECK(has_value(a.headers, "cache-status",
                    "peakcache; hit; ttl=-15; detail=stale-while-revalidate"));
    peakcache_http_headers_free(a.headers);
    peakcache_entry_free(e);

    /* A Surrogate-Key purge reaches it. */
    CHECK_OK(peakcache_purge_tag(cache, KEY("home"), false));
    peakcache_lookup_result m = lookup(cache, key);
    CHECK(m.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_fill_abandon(m.fill);
    peakcache_cache_free(cache);
    peakcache_http_policy_free(p);
}

static void default_ttl_applies_only_without_freshness_information(void) {
    peakcache_http_config cfg;
    CHECK_OK(peakcache_http_config_default(&cfg));
    cfg.default_ttl_ms = 30000;
    peakcache_http_policy *p = new_policy(&cfg);
    peakcache_http_header rh[] = {HDR("host", "shop.example")};
    peakcache_http_request req = request("GET", "/plain", rh, COUNT(rh));
    peakcache_http_header silent[] = {HDR("Content-Type", "text/html"), HDR("Date", DATE0)};
    peakcache_http_response_head resp = head(200, silent, COUNT(silent));
    peakcache_http_decision d;
    CHECK_OK(peakcache_http_on_response(p, &req, &resp, T0, T0, &d));
    CHECK(d.reason == PEAKCACHE_HTTP_STORE && d.ttl_ms == 30000);
    peakcache_http_store_free(d.store);

    /* An explicit lifetime wins over the default. */
    peakcache_http_header told[] = {HDR("Cache-Control", "max-age=5"), HDR("Date", DATE0)};
    resp = head(200, told, COUNT(told));
    CHECK_OK(peakcache_http_on_response(p, &req, &resp, T0, T0, &d));
    CHECK(d.reason == PEAKCACHE_HTTP_STORE && d.ttl_ms == 5000);
    peakcache_http_store_free(d.store);
    peakcache_http_policy_free(p);
}

static void cdn_cache_control_wins_and_goes_on_to_cdns_in_front(void) {
    peakcache_http_policy *p = new_policy(NULL);
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_http_header rh[] = {HDR("host", "shop.example")};
    peakcache_http_request req = request("GET", "/", rh, COUNT(rh));
    peakcache_http_header h[] = {HDR("Cache-Control", "private, max-age=10"),
                                 HDR("CDN-Cache-Control", "max-age=600")};
    peakcache_http_response_head resp = head(200, h, COUNT(h));
    peakcache_http_decision d;
    CHECK_OK(peakcache_http_on_response(p, &req, &resp, T0, T0, &d));
    CHECK(d.reason == PEAKCACHE_HTTP_STORE && d.ttl_ms == 600000);
    peakcache_entry *e = commit(cache, "/", &d, "x");
    peakcache_http_store_free(d.store);

    peakcache_http_answer a;
    CHECK_OK(peakcache_http_serve(p, &req, e, PEAKCACHE_HTTP_HIT, 0, T0 + 1000, &a));
    /* RFC 9213 §3: for CDNs in front of this cache (browsers ignore it). */
    CHECK(has_value(a.headers, "cdn-cache-control", "max-age=600"));
    CHECK(has_value(a.headers, "cache-control", "private, max-age=10"));
    CHECK(has_value(a.headers, "date", DATE0)); /* added at the response time */
    peakcache_http_headers_free(a.headers);
    peakcache_entry_free(e);

    /* Forwarding an upstream response: the surrogate fields are the cache's own. */
    CHECK(peakcache_http_forward_field(p, KEY("CDN-Cache-Control")));
    CHECK(!peakcache_http_forward_field(p, KEY("surrogate-key")));
    CHECK(!peakcache_http_forward_field(p, KEY("Surrogate-Control")));
    CHECK(peakcache_http_forward_field(p, KEY("Content-Type")));
    CHECK(peakcache_http_forward_field(p, KEY("bad name")));
    CHECK(peakcache_http_forward_field(NULL, KEY("surrogate-key")));
    peakcache_cache_free(cache);
    peakcache_http_policy_free(p);
}

static void cookies_private_and_no_store_are_not_stored(void) {
    peakcache_http_policy *p = new_policy(NULL);
    peakcache_http_header rh[] = {HDR("host", "shop.example")};
    peakcache_http_request req = request("GET", "/", rh, COUNT(rh));
    struct {
        peakcache_http_header h[2];
        peakcache_http_dont_store want;
    } cases[] = {
        {{HDR("cache-control", "max-age=60"), HDR("set-cookie", "sid=1")}, PEAKCACHE_HTTP_DONT_STORE_SET_COOKIE},
        {{HDR("cache-control", "private, max-age=60"), HDR("x", "y")}, PEAKCACHE_HTTP_DONT_STORE_PRIVATE},
        {{HDR("cache-control", "max-age=60, no-store"), HDR("x", "y")}, PEAKCACHE_HTTP_DONT_STORE_NO_STORE},
        {{HDR("cache-control", "max-age=60"), HDR("vary", "*")}, PEAKCACHE_HTTP_DONT_STORE_VARY_STAR},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        peakcache_http_response_head resp = head(200, cases[i].h, 2);
        peakcache_http_decision d;
        memset(&d, 0x5A, sizeof d);
        CHECK_OK(peakcache_http_on_response(p, &req, &resp, T0, T0, &d));
        CHECK(d.reason == cases[i].want);
        CHECK(d.store == NULL && d.ttl_ms == 0 && d.swr_ms == 0 && d.sie_ms == 0);
    }
    CHECK(strcmp(peakcache_http_dont_store_str(PEAKCACHE_HTTP_DONT_STORE_PRIVATE), "response is private") == 0);
    CHECK(strcmp(peakcache_http_dont_store_str(12345), "not storable") == 0);
    /* A 206 and a POST. */
    peakcache_http_header cc[] = {HDR("cache-control", "max-age=60")};
    peakcache_http_response_head partial = head(206, cc, 1);
    peakcache_http_decision d;
    CHECK_OK(peakcache_http_on_response(p, &req, &partial, T0, T0, &d));
    CHECK(d.reason == PEAKCACHE_HTTP_DONT_STORE_STATUS_NOT_UNDERSTOOD);
    peakcache_http_request post = request("POST", "/", rh, COUNT(rh));
    peakcache_http_response_head ok = head(200, cc, 1);
    CHECK_RC(peakcache_http_on_response(p, &post, &ok, T0, T0, &d), PEAKCACHE_ERR_NOT_CACHEABLE);
    peakcache_http_policy_free(p);

    /* Configured to strip cookies: stored without them. */
    peakcache_http_config cfg;
    CHECK_OK(peakcache_http_config_default(&cfg));
    cfg.set_cookie = PEAKCACHE_HTTP_SET_COOKIE_STRIP;
    p = new_policy(&cfg);
    peakcache_http_response_head cookie = head(200, cases[0].h, 2);
    CHECK_OK(peakcache_http_on_response(p, &req, &cookie, T0, T0, &d));
    CHECK(d.reason == PEAKCACHE_HTTP_STORE);
    peakcache_response *resp = NULL;
    CHECK_OK(peakcache_http_store_response(d.store, &resp));
    peakcache_http_store_free(d.store);
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result m = lookup(cache, "k");
    CHECK_OK(peakcache_fill_commit(&m.fill, &resp, 1000, 0, 0, NULL, 0));
    peakcache_lookup_result f = lookup(cache, "k");
    const uint8_t *n, *v;
    size_t nl, vl;
    for (size_t i = 0; i < peakcache_entry_header_count(f.entry); i++) {
        CHECK_OK(peakcache_entry_header(f.entry, i, &n, &nl, &v, &vl));
        CHECK(!(nl == 10 && memcmp(n, "set-cookie", 10) == 0));
    }
    peakcache_entry_free(f.entry);
    peakcache_cache_free(cache);
    peakcache_http_policy_free(p);
}

static void vary_accept_encoding_gives_one_variant_per_coding(void) {
    peakcache_http_policy *p = new_policy(NULL);
    peakcache_http_header both[] = {HDR("host", "shop.example"), HDR("accept-encoding", "gzip, br")};
    peakcache_http_header br[] = {HDR("host", "shop.example"), HDR("Accept-Encoding", "br")};
    peakcache_http_header none[] = {HDR("host", "shop.example")};
    peakcache_http_request r_both = request("GET", "/", both, 2);
    peakcache_http_request r_br = request("GET", "/", br, 2);
    peakcache_http_request r_none = request("GET", "/", none, 1);
    peakcache_http_header h[] = {HDR("cache-control", "max-age=60"), HDR("Vary", "Accept-Encoding")};
    peakcache_http_response_head resp = head(200, h, 2);
    peakcache_http_decision d;
    CHECK_OK(peakcache_http_on_response(p, &r_both, &resp, T0, T0, &d));
    CHECK(d.reason == PEAKCACHE_HTTP_STORE);
    const uint8_t *vary;
    size_t vary_len;
    CHECK_OK(peakcache_http_store_vary(d.store, &vary, &vary_len));
    CHECK(vary_len == 15 && memcmp(vary, "accept-encoding", 15) == 0);

    peakcache_buf *k_both = NULL, *k_br = NULL, *k_none = NULL;
    CHECK_OK(peakcache_http_variant_key(p, &r_both, vary, vary_len, &k_both));
    CHECK_OK(peakcache_http_variant_key(p, &r_br, vary, vary_len, &k_br));
    CHECK_OK(peakcache_http_variant_key(p, &r_none, vary, vary_len, &k_none));
    const uint8_t *a, *b, *c;
    size_t al, bl, cl;
    peakcache_buf_data(k_both, &a, &al);
    peakcache_buf_data(k_br, &b, &bl);
    peakcache_buf_data(k_none, &c, &cl);
    CHECK(al == bl && memcmp(a, b, al) == 0);
    CHECK(!(al == cl && memcmp(a, c, al) == 0));
    const char *primary = "GET https://shop.example/";
    CHECK(al > strlen(primary) && memcmp(a, primary, strlen(primary)) == 0 && a[strlen(primary)] == 0);
    peakcache_buf_free(k_both);
    peakcache_buf_free(k_br);
    peakcache_buf_free(k_none);
    peakcache_http_store_free(d.store);

    peakcache_buf *buf = SENTINEL;
    CHECK_RC(peakcache_http_variant_key(p, &r_br, KEY("*"), &buf), PEAKCACHE_ERR_INVALID);
    CHECK_RC(peakcache_http_variant_key(p, &r_br, KEY("a\nb"), &buf), PEAKCACHE_ERR_MALFORMED);
    CHECK(buf == SENTINEL);
    peakcache_http_policy_free(p);
}

/* An entry stored through the HTTP family with an ETag, fresh for 1 s. */
static peakcache_entry *etag_entry(peakcache_http_policy *p, peakcache_cache *cache,
                                   const peakcache_http_request *req, const char *key) {
    peakcache_http_header h[] = {HDR("ETag", "\"v1\""), HDR("Cache-Control", "max-age=1"),
                                 HDR("Date", DATE0), HDR("Content-Length", "5"),
                                 HDR("Content-Type", "text/plain")};
    peakcache_http_response_head resp = head(200, h, COUNT(h));
    peakcache_http_decision d;
    CHECK_OK(peakcache_http_on_response(p, req, &resp, T0, T0, &d));
    CHECK(d.reason == PEAKCACHE_HTTP_STORE && d.ttl_ms == 1000);
    peakcache_entry *e = commit(cache, key, &d, "hello");
    peakcache_http_store_free(d.store);
    return e;
}

static void etag_revalidation_merges_a_304_and_shares_the_body(void) {
    peakcache_http_policy *p = new_policy(NULL);
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_http_header rh[] = {HDR("host", "shop.example")};
    peakcache_http_request req = request("GET", "/doc", rh, COUNT(rh));
    peakcache_entry *e = etag_entry(p, cache, &req, "doc");

    peakcache_http_headers *cond = NULL;
    CHECK_OK(peakcache_http_revalidation_headers(p, e, &cond));
    CHECK(has_value(cond, "if-none-match", "\"v1\""));
    peakcache_http_headers_free(cond);

    peakcache_http_header nm[] = {HDR("ETag", "\"v1\""), HDR("Cache-Control", "max-age=100"),
                                  HDR("Date", DATE5), HDR("Content-Length", "0")};
    peakcache_http_response_head not_modified = head(304, nm, COUNT(nm));
    peakcache_http_decision d;
    CHECK_OK(peakcache_http_revalidate(p, &req, e, &not_modified, T0 + 5000, T0 + 5000, &d));
    CHECK(d.reason == PEAKCACHE_HTTP_STORE && d.ttl_ms == 100000);
    peakcache_entry *fresh = commit(cache, "doc-2", &d, NULL);
    peakcache_http_store_free(d.store);
    /* The merged response: the 304's freshness, the stored framing, the stored body (the same
     * bytes, not a copy). */
    const uint8_t *old_body, *new_body;
    size_t old_len, new_len;
    CHECK_OK(peakcache_entry_body(e, &old_body, &old_len));
    CHECK_OK(peakcache_entry_body(fresh, &new_body, &new_len));
    CHECK(new_body == old_body && new_len == 5);
    peakcache_http_answer a;
    CHECK_OK(peakcache_http_serve(p, &req, fresh, PEAKCACHE_HTTP_REVALIDATED, 304, T0 + 5000, &a));
    CHECK(a.kind == PEAKCACHE_HTTP_SEND_STORED && a.status == 200);
    CHECK(has_value(a.headers, "cache-control", "max-age=100"));
    CHECK(has_value(a.headers, "content-length", "5"));
    CHECK(has_value(a.headers, "cache-status", "peakcache; fwd=stale; fwd-status=304; ttl=100"));
    peakcache_http_headers_free(a.headers);
    peakcache_entry_free(fresh);

    /* A 304 for another version, or no 304 at all: nothing merged, `out` untouched. */
    peakcache_http_header other[] = {HDR("ETag", "\"v2\"")};
    peakcache_http_response_head mismatch = head(304, other, 1);
    memset(&d, 0x5A, sizeof d);
    CHECK_RC(peakcache_http_revalidate(p, &req, e, &mismatch, T0, T0, &d), PEAKCACHE_ERR_VALIDATOR_MISMATCH);
    peakcache_http_response_head full = head(200, nm, COUNT(nm));
    CHECK_RC(peakcache_http_revalidate(p, &req, e, &full, T0, T0, &d), PEAKCACHE_ERR_INVALID);
    CHECK(d.ttl_ms == 0x5A5A5A5A5A5A5A5Aull);
    peakcache_entry_free(e);
    peakcache_cache_free(cache);
    peakcache_http_policy_free(p);
}

/* A 5xx with a lifetime is a response like any other (RFC 9111 3), unless a stored copy may
 * still answer for the error (RFC 5861 4); a forwarded response being stored says its Age. */
static void errors_with_a_lifetime_and_the_age_of_a_stored_answer(void) {
    peakcache_http_policy *p = new_policy(NULL);
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_http_header rh[] = {HDR("host", "shop.example")};
    peakcache_http_request req = request("GET", "/page", rh, COUNT(rh));
    peakcache_http_header err[] = {HDR("Cache-Control", "max-age=60"), HDR("Date", DATE0)};
    peakcache_http_response_head resp = head(503, err, COUNT(err));
    peakcache_http_decision d;
    CHECK_OK(peakcache_http_on_response(p, &req, &resp, T0, T0, &d));
    CHECK(d.reason == PEAKCACHE_HTTP_STORE && d.ttl_ms == 60000);
    peakcache_http_store_free(d.store);

    /* Fresh for 10 s, then 60 s of stale-if-error, then nothing. */
    peakcache_http_header good[] = {HDR("Cache-Control", "max-age=10, stale-if-error=60"),
                                    HDR("Date", DATE0)};
    resp = head(200, good, COUNT(good));
    CHECK_OK(peakcache_http_on_response(p, &req, &resp, T0, T0, &d));
    peakcache_entry *e = commit(cache, "page", &d, "good");
    peakcache_http_store_free(d.store);
    CHECK(!peakcache_http_stale_if_error(e, T0 + 5000));
    CHECK(peakcache_http_stale_if_error(e, T0 + 30000));
    CHECK(!peakcache_http_stale_if_error(e, T0 + 71000));
    CHECK(!peakcache_http_stale_if_error(NULL, T0 + 30000));
    peakcache_entry_free(e);

    /* 30 s old at the origin, and 2 s on the way: 32 s when it arrives, as once stored. */
    peakcache_http_header aged[] = {HDR("Cache-Control", "max-age=600"), HDR("Age", "30")};
    resp = head(200, aged, COUNT(aged));
    CHECK_OK(peakcache_http_on_response(p, &req, &resp, T0, T0 + 2000, &d));
    uint64_t secs = 0, stored_secs = 0;
    CHECK_OK(peakcache_http_store_age(d.store, T0 + 2000, &secs));
    CHECK(secs == 32);
    CHECK_OK(peakcache_http_store_age(d.store, T0 + 12500, &secs));
    e = commit(cache, "aged", &d, "old");
    CHECK_OK(peakcache_http_age(e, T0 + 12500, &stored_secs));
    CHECK(secs == 42 && stored_secs == 42);
    CHECK_RC(peakcache_http_store_age(d.store, T0, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_store_age(NULL, T0, &secs), PEAKCACHE_ERR_NULL);
    CHECK(secs == 42);
    peakcache_http_store_free(d.store);
    peakcache_entry_free(e);
    peakcache_cache_free(cache);
    peakcache_http_policy_free(p);
}

static void client_conditionals_are_answered_from_the_entry(void) {
    peakcache_http_policy *p = new_policy(NULL);
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_http_header rh[] = {HDR("host", "shop.example")};
    peakcache_http_request plain = request("GET", "/doc", rh, COUNT(rh));
    peakcache_entry *e = etag_entry(p, cache, &plain, "doc");

    peakcache_http_header inm[] = {HDR("host", "shop.example"), HDR("If-None-Match", "\"x\", W/\"v1\"")};
    peakcache_http_request cond = request("GET", "/doc", inm, COUNT(inm));
    peakcache_http_answer a;
    CHECK_OK(peakcache_http_serve(p, &cond, e, PEAKCACHE_HTTP_HIT, 0, T0 + 500, &a));
    CHECK(a.kind == PEAKCACHE_HTTP_SEND_NOT_MODIFIED && a.status == 304);
    CHECK(has_value(a.headers, "etag", "\"v1\""));
    CHECK(has_value(a.headers, "age", "0"));
    CHECK(has_value(a.headers, "cache-status", "peakcache; hit; ttl=1"));
    CHECK(!has_value(a.headers, "content-type", NULL));
    peakcache_http_headers_free(a.headers);

    peakcache_http_header other[] = {HDR("host", "shop.example"), HDR("If-None-Match", "\"v2\"")};
    peakcache_http_request changed = request("GET", "/doc", other, COUNT(other));
    CHECK_OK(peakcache_http_serve(p, &changed, e, PEAKCACHE_HTTP_HIT, 0, T0 + 500, &a));
    CHECK(a.kind == PEAKCACHE_HTTP_SEND_STORED && a.status == 200);
    peakcache_http_headers_free(a.headers);

    peakcache_http_header im[] = {HDR("host", "shop.example"), HDR("If-Match", "\"v1\"")};
    peakcache_http_request match = request("GET", "/doc", im, COUNT(im));
    CHECK_OK(peakcache_http_serve(p, &match, e, PEAKCACHE_HTTP_HIT, 0, T0 + 500, &a));
    CHECK(a.kind == PEAKCACHE_HTTP_FORWARD && a.headers == NULL && a.status == 0);
    peakcache_entry_free(e);
    peakcache_cache_free(cache);
    peakcache_http_policy_free(p);
}

/* What one visitor sends never reaches a shared fill, and only the response may switch a key
 * off (DESIGN.md, "What a shared fill sends"). */
static void a_fill_carries_nothing_of_one_visitor(void) {
    peakcache_http_policy *p = new_policy(NULL);
    peakcache_http_header h[] = {
        HDR("Host", "shop.example"),        HDR("Connection", "keep-alive, X-Visitor"),
        HDR("X-Visitor", "alice"),          HDR("TE", "trailers"),
        HDR("Range", "bytes=0-3"),          HDR("If-Range", "\"v1\""),
        HDR("If-Match", "\"v1\""),          HDR("If-Unmodified-Since", DATE0),
        HDR("Cache-Control", "no-store"),   HDR("Pragma", "no-cache"),
        HDR("Expect", "100-continue"),      HDR("Content-Length", "5"),
        HDR("Transfer-Encoding", "chunked"), HDR("Cookie", "a=b")};
    peakcache_http_request r = request("HEAD", "/doc", h, COUNT(h));
    char key[128];
    key_of(p, &r, key, sizeof key); /* no-store is ignored by default: the visitor is keyed */
    CHECK(strcmp(key, "GET https://shop.example/doc") == 0);
    peakcache_buf *path = NULL;
    peakcache_http_headers *up = NULL;
    CHECK_OK(peakcache_http_upstream_request(p, &r, &path, &up));
    CHECK(buf_is(path, "/doc"));
    const char *gone[] = {"connection", "x-visitor", "te", "range", "if-range", "if-match",
                          "if-unmodified-since", "cache-control", "pragma", "expect",
                          "content-length", "transfer-encoding"};
    for (size_t i = 0; i < COUNT(gone); i++) {
        if (has_value(up, gone[i], NULL)) fprintf(stderr, "    %s reached the origin\n", gone[i]);
        CHECK(!has_value(up, gone[i], NULL));
    }
    CHECK(has_value(up, "host", "shop.example"));
    CHECK(has_value(up, "cookie", "a=b"));
    peakcache_http_headers_free(up);

    /* Authorization: that visitor alone goes to the origin, no ticket is taken. */
    peakcache_http_header auth[] = {HDR("Host", "shop.example"), HDR("Authorization", "Bearer x")};
    peakcache_http_request a = request("GET", "/doc", auth, COUNT(auth));
    peakcache_buf *buf = SENTINEL;
    CHECK_RC(peakcache_http_key(p, &a, &buf), PEAKCACHE_ERR_NOT_CACHEABLE);
    CHECK(buf == SENTINEL);

    /* Only a response-caused reason may set hit-for-pass. */
    CHECK(peakcache_http_dont_store_cause(PEAKCACHE_HTTP_DONT_STORE_REQUEST_NO_STORE) ==
          PEAKCACHE_HTTP_CAUSE_REQUEST);
    CHECK(peakcache_http_dont_store_cause(PEAKCACHE_HTTP_DONT_STORE_AUTHORIZATION) ==
          PEAKCACHE_HTTP_CAUSE_REQUEST);
    CHECK(peakcache_http_dont_store_cause(PEAKCACHE_HTTP_DONT_STORE_HEAD_REQUEST) ==
          PEAKCACHE_HTTP_CAUSE_REQUEST);
    CHECK(peakcache_http_dont_store_cause(PEAKCACHE_HTTP_DONT_STORE_NO_STORE) ==
          PEAKCACHE_HTTP_CAUSE_RESPONSE);
    CHECK(peakcache_http_dont_store_cause(PEAKCACHE_HTTP_DONT_STORE_PRIVATE) ==
          PEAKCACHE_HTTP_CAUSE_RESPONSE);
    CHECK(peakcache_http_dont_store_cause(9999) == PEAKCACHE_HTTP_CAUSE_RESPONSE);
    peakcache_http_policy_free(p);
}

/* Request directives are ignored for shared entries unless the operator honours them; then
 * they apply to the visitor who sent them alone. */
static void request_directives_apply_only_when_honoured(void) {
    peakcache_http_policy *ignoring = new_policy(NULL);
    peakcache_http_config cfg;
    CHECK_OK(peakcache_http_config_default(&cfg));
    CHECK(!cfg.honour_request_directives);
    cfg.honour_request_directives = true;
    peakcache_http_policy *honouring = new_policy(&cfg);
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_http_header rh[] = {HDR("host", "shop.example")};
    peakcache_http_request plain = request("GET", "/doc", rh, COUNT(rh));
    peakcache_entry *e = etag_entry(ignoring, cache, &plain, "doc");

    peakcache_http_header nc[] = {HDR("host", "shop.example"), HDR("Cache-Control", "no-cache")};
    peakcache_http_request no_cache = request("GET", "/doc", nc, COUNT(nc));
    peakcache_http_answer a;
    CHECK_OK(peakcache_http_serve(ignoring, &no_cache, e, PEAKCACHE_HTTP_HIT, 0, T0 + 500, &a));
    CHECK(a.kind == PEAKCACHE_HTTP_SEND_STORED);
    peakcache_http_headers_free(a.headers);
    CHECK_OK(peakcache_http_serve(honouring, &no_cache, e, PEAKCACHE_HTTP_HIT, 0, T0 + 500, &a));
    CHECK(a.kind == PEAKCACHE_HTTP_FORWARD && a.headers == NULL);
    CHECK_OK(peakcache_http_serve(honouring, &plain, e, PEAKCACHE_HTTP_HIT, 0, T0 + 500, &a));
    CHECK(a.kind == PEAKCACHE_HTTP_SEND_STORED);
    peakcache_http_headers_free(a.headers);

    peakcache_http_header ns[] = {HDR("host", "shop.example"), HDR("Cache-Control", "no-store")};
    peakcache_http_request no_store = request("GET", "/doc", ns, COUNT(ns));
    char key[128];
    key_of(ignoring, &no_store, key, sizeof key);
    CHECK(strcmp(key, "GET https://shop.example/doc") == 0);
    peakcache_buf *buf = SENTINEL;
    CHECK_RC(peakcache_http_key(honouring, &no_store, &buf), PEAKCACHE_ERR_NOT_CACHEABLE);
    CHECK(buf == SENTINEL);
    peakcache_entry_free(e);
    peakcache_cache_free(cache);
    peakcache_http_policy_free(ignoring);
    peakcache_http_policy_free(honouring);
}

static void a_post_invalidates_the_target_and_its_location(void) {
    peakcache_http_policy *p = new_policy(NULL);
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_http_header rh[] = {HDR("host", "shop.example"), HDR("accept-encoding", "gzip")};
    peakcache_http_request get = request("GET", "/cart", rh, COUNT(rh));
    /* A variant stored under its variant key, tagged with its primary key. */
    peakcache_http_header h[] = {HDR("cache-control", "max-age=60"), HDR("vary", "accept-encoding")};
    peakcache_http_response_head resp = head(200, h, 2);
    peakcache_http_decision d;
    CHECK_OK(peakcache_http_on_response(p, &get, &resp, T0, T0, &d));
    peakcache_buf *vkey = NULL;
    CHECK_OK(peakcache_http_variant_key(p, &get, KEY("accept-encoding"), &vkey));
    const uint8_t *vk;
    size_t vkl;
    peakcache_buf_data(vkey, &vk, &vkl);
    peakcache_lookup_result m;
    CHECK_OK(peakcache_lookup(cache, vk, vkl, &m));
    CHECK(m.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_response *r = NULL;
    CHECK_OK(peakcache_http_store_response(d.store, &r));
    const peakcache_bytes *tags;
    size_t ntags;
    CHECK_OK(peakcache_http_store_tags(d.store, &tags, &ntags));
    CHECK_OK(peakcache_fill_commit(&m.fill, &r, d.ttl_ms, d.swr_ms, d.sie_ms, tags, ntags));
    peakcache_http_store_free(d.store);

    peakcache_http_request post = request("POST", "/cart", rh, COUNT(rh));
    peakcache_http_header loc[] = {HDR("Location", "/cart/7"), HDR("Content-Location", "https://other.example/x")};
    peakcache_http_response_head created = head(201, loc, COUNT(loc));
    peakcache_http_keys *keys = NULL;
    CHECK_OK(peakcache_http_invalidations(p, &post, &created, &keys));
    const peakcache_bytes *items;
    size_t n;
    CHECK_OK(peakcache_http_keys_items(keys, &items, &n));
    CHECK(n == 2);
    CHECK(items[0].len == 29 && memcmp(items[0].data, "GET https://shop.example/cart", 29) == 0);
    CHECK(items[1].len == 31 && memcmp(items[1].data, "GET https://shop.example/cart/7", 31) == 0);
    for (size_t i = 0; i < n; i++) CHECK_OK(peakcache_purge_tag(cache, items[i].data, items[i].len, false));
    peakcache_http_keys_free(keys);
    CHECK_OK(peakcache_lookup(cache, vk, vkl, &m));
    CHECK(m.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_fill_abandon(m.fill);
    peakcache_buf_free(vkey);

    /* A safe method, or an error status, invalidates nothing. */
    CHECK_OK(peakcache_http_invalidations(p, &get, &created, &keys));
    CHECK_OK(peakcache_http_keys_items(keys, &items, &n));
    CHECK(n == 0);
    peakcache_http_keys_free(keys);
    peakcache_http_response_head failed = head(500, NULL, 0);
    CHECK_OK(peakcache_http_invalidations(p, &post, &failed, &keys));
    CHECK_OK(peakcache_http_keys_items(keys, &items, &n));
    CHECK(n == 0);
    peakcache_http_keys_free(keys);
    peakcache_cache_free(cache);
    peakcache_http_policy_free(p);
}

static void cache_status_names_every_outcome(void) {
    peakcache_http_config cfg;
    CHECK_OK(peakcache_http_config_default(&cfg));
    cfg.cache_name = (peakcache_bytes)S("edge");
    cfg.grace_sie_ms = 3600000;
    peakcache_http_policy *p = new_policy(&cfg);
    peakcache_buf *buf = NULL;
    CHECK_OK(peakcache_http_cache_status(p, PEAKCACHE_HTTP_MISS, 200, true, NULL, T0, &buf));
    CHECK(buf_is(buf, "edge; fwd=uri-miss; fwd-status=200; stored"));
    CHECK_OK(peakcache_http_cache_status(p, PEAKCACHE_HTTP_VARY_MISS, 200, false, NULL, T0, &buf));
    CHECK(buf_is(buf, "edge; fwd=vary-miss; fwd-status=200"));
    CHECK_OK(peakcache_http_cache_status(p, PEAKCACHE_HTTP_COLLAPSED, 200, false, NULL, T0, &buf));
    CHECK(buf_is(buf, "edge; fwd=miss; fwd-status=200; collapsed"));
    CHECK_OK(peakcache_http_cache_status(p, PEAKCACHE_HTTP_PASS, 200, false, NULL, T0, &buf));
    CHECK(buf_is(buf, "edge; fwd=bypass; fwd-status=200"));
    CHECK_OK(peakcache_http_cache_status(p, PEAKCACHE_HTTP_METHOD, 201, false, NULL, T0, &buf));
    CHECK(buf_is(buf, "edge; fwd=method; fwd-status=201"));

    /* Stale-if-error inside the operator's grace only (the origin granted none). */
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_http_header rh[] = {HDR("host", "shop.example")};
    peakcache_http_request req = request("GET", "/", rh, 1);
    peakcache_http_header h[] = {HDR("cache-control", "max-age=60")};
    peakcache_http_response_head resp = head(200, h, 1);
    peakcache_http_decision d;
    CHECK_OK(peakcache_http_on_response(p, &req, &resp, T0, T0, &d));
    CHECK(d.sie_ms == 3600000);
    peakcache_entry *e = commit(cache, "k", &d, "x");
    peakcache_http_store_free(d.store);
    CHECK_OK(peakcache_http_cache_status(p, PEAKCACHE_HTTP_STALE_IF_ERROR, 503, false, e, T0 + 460000, &buf));
    CHECK(buf_is(buf, "edge; fwd=stale; fwd-status=503; ttl=-400; detail=grace-if-error"));
    CHECK_OK(peakcache_http_cache_status(p, PEAKCACHE_HTTP_HIT, 0, false, e, T0 + 18000, &buf));
    CHECK(buf_is(buf, "edge; hit; ttl=42"));
    peakcache_entry_free(e);
    peakcache_cache_free(cache);
    peakcache_http_policy_free(p);
}

/* What a host that keeps answers (nginx's memos) renews, and until when it holds. */
static void the_clock_says_until_when_age_and_cache_status_hold(void) {
    peakcache_http_config cfg;
    CHECK_OK(peakcache_http_config_default(&cfg));
    cfg.cache_name = (peakcache_bytes)S("edge");
    cfg.grace_sie_ms = 3600000;
    peakcache_http_policy *p = new_policy(&cfg);
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_http_header rh[] = {HDR("host", "shop.example")};
    peakcache_http_request req = request("GET", "/", rh, 1);
    /* received 0.3 s old: its Age turns at T0 + 700, + 1700, ... */
    peakcache_http_header h[] = {HDR("cache-control", "max-age=60, stale-if-error=100"),
                                 HDR("age", "0")};
    peakcache_http_response_head resp = head(200, h, 2);
    peakcache_http_decision d;
    CHECK_OK(peakcache_http_on_response(p, &req, &resp, T0 - 300, T0, &d));
    peakcache_entry *e = commit(cache, "k", &d, "x");
    peakcache_http_store_free(d.store);

    uint64_t age = 0, until = 0, a2 = 0;
    uint8_t status[64];
    size_t len = 0;
    CHECK_OK(peakcache_http_clock(p, PEAKCACHE_HTTP_HIT, 0, e, T0 + 18000, &age, &until, status,
                                  sizeof(status), &len));
    CHECK(age == 18 && until == T0 + 18700);
    CHECK(len == strlen("edge; hit; ttl=42") && memcmp(status, "edge; hit; ttl=42", len) == 0);
    /* the same as the HTTP layer's own answer, up to the instant named and not after */
    CHECK_OK(peakcache_http_age(e, until - 1, &a2));
    CHECK(a2 == 18);
    CHECK_OK(peakcache_http_age(e, until, &a2));
    CHECK(a2 == 19);
    peakcache_buf *buf = NULL;
    CHECK_OK(peakcache_http_cache_status(p, PEAKCACHE_HTTP_HIT, 0, false, e, until - 1, &buf));
    CHECK(buf_is(buf, "edge; hit; ttl=42"));

    /* Stale, granted by the origin until 100 s past its freshness, then by the operator's
       grace: within the second where that changes, it holds for a millisecond only. */
    CHECK_OK(peakcache_http_clock(p, PEAKCACHE_HTTP_STALE_IF_ERROR, 503, e, T0 + 150000, &age,
                                  &until, status, sizeof(status), &len));
    CHECK(age == 150 && until == T0 + 150700);
    CHECK(len == strlen("edge; fwd=stale; fwd-status=503; ttl=-90; detail=stale-if-error"));
    CHECK_OK(peakcache_http_clock(p, PEAKCACHE_HTTP_STALE_IF_ERROR, 503, e, T0 + 159700, &age,
                                  &until, status, sizeof(status), &len));
    CHECK(age == 160 && until == T0 + 159701);
    CHECK(memcmp(status, "edge; fwd=stale; fwd-status=503; ttl=-100; detail=stale-if-error",
                 len) == 0);
    CHECK_OK(peakcache_http_clock(p, PEAKCACHE_HTTP_STALE_IF_ERROR, 503, e, T0 + 159900, &age,
                                  &until, status, sizeof(status), &len));
    CHECK(memcmp(status, "edge; fwd=stale; fwd-status=503; ttl=-100; detail=grace-if-error",
                 len) == 0);

    /* Too small a buffer: nothing written into it, the length it needs said. */
    memset(status, 'z', sizeof(status));
    CHECK_RC(peakcache_http_clock(p, PEAKCACHE_HTTP_HIT, 0, e, T0, &age, &until, status, 8, &len),
             PEAKCACHE_ERR_TOO_LARGE);
    CHECK(len == strlen("edge; hit; ttl=60") && status[0] == 'z');
    peakcache_entry_free(e);
    peakcache_cache_free(cache);
    peakcache_http_policy_free(p);
}

static void misuse_gives_codes_not_crashes(void) {
    peakcache_http_policy *p = new_policy(NULL);
    peakcache_http_header rh[] = {HDR("host", "shop.example")};
    peakcache_http_request ok = request("GET", "/", rh, 1);
    peakcache_buf *buf = SENTINEL;
    peakcache_http_decision d;
    peakcache_http_answer a;
    peakcache_http_headers *hl = SENTINEL;
    peakcache_http_keys *keys = SENTINEL;
    peakcache_http_response_head resp = head(200, NULL, 0);
    uint64_t secs = 77;

    /* NULL handles and out-parameters. */
    CHECK_RC(peakcache_http_config_default(NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_policy_new(NULL, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_key(NULL, &ok, &buf), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_key(p, NULL, &buf), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_key(p, &ok, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_variant_key(p, &ok, KEY("accept"), NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_upstream_request(p, &ok, &buf, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_on_response(p, &ok, NULL, T0, T0, &d), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_on_response(p, &ok, &resp, T0, T0, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_revalidate(p, &ok, NULL, &resp, T0, T0, &d), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_store_response(NULL, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_store_tags(NULL, NULL, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_store_vary(NULL, NULL, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_serve(p, &ok, NULL, PEAKCACHE_HTTP_HIT, 0, T0, &a), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_age(NULL, T0, &secs), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_clock(p, PEAKCACHE_HTTP_HIT, 0, NULL, T0, &secs, &secs, NULL, 0, NULL),
             PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_cache_status(NULL, PEAKCACHE_HTTP_HIT, 0, false, NULL, T0, &buf), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_revalidation_headers(p, NULL, &hl), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_invalidations(p, &ok, &resp, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_headers_items(NULL, NULL, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_http_keys_items(NULL, NULL, NULL), PEAKCACHE_ERR_NULL);
    CHECK(buf == SENTINEL && hl == SENTINEL && keys == SENTINEL && secs == 77);
    peakcache_http_policy_free(NULL);
    peakcache_http_store_free(NULL);
    peakcache_http_headers_free(NULL);
    peakcache_http_keys_free(NULL);

    /* Bad lengths: a NULL pointer with a length. */
    peakcache_http_request bad = ok;
    bad.path = (peakcache_bytes){NULL, 3};
    CHECK_RC(peakcache_http_key(p, &bad, &buf), PEAKCACHE_ERR_INVALID);
    bad = ok;
    bad.headers = NULL; /* nheaders stays 1 */
    CHECK_RC(peakcache_http_key(p, &bad, &buf), PEAKCACHE_ERR_INVALID);
    peakcache_http_header null_name[] = {{NULL, 4, (const uint8_t *)"x", 1}};
    bad = request("GET", "/", null_name, 1);
    CHECK_RC(peakcache_http_key(p, &bad, &buf), PEAKCACHE_ERR_INVALID);
    peakcache_http_response_head no_headers = head(200, NULL, 2);
    CHECK_RC(peakcache_http_on_response(p, &ok, &no_headers, T0, T0, &d), PEAKCACHE_ERR_INVALID);

    /* Malformed bytes. */
    peakcache_http_header bad_name[] = {HDR("bad name", "x")};
    peakcache_http_header bad_value[] = {HDR("x-a", "one\r\ntwo")};
    peakcache_http_header nul_value[] = {{(const uint8_t *)"x-a", 3, (const uint8_t *)"a\0b", 3}};
    bad = request("GET", "/", bad_name, 1);
    CHECK_RC(peakcache_http_key(p, &bad, &buf), PEAKCACHE_ERR_MALFORMED);
    bad = request("GET", "/", bad_value, 1);
    CHECK_RC(peakcache_http_key(p, &bad, &buf), PEAKCACHE_ERR_MALFORMED);
    bad = request("GET", "/", nul_value, 1);
    CHECK_RC(peakcache_http_key(p, &bad, &buf), PEAKCACHE_ERR_MALFORMED);
    bad = request("G ET", "/", rh, 1);
    CHECK_RC(peakcache_http_key(p, &bad, &buf), PEAKCACHE_ERR_MALFORMED);
    bad = request("", "/", rh, 1);
    CHECK_RC(peakcache_http_key(p, &bad, &buf), PEAKCACHE_ERR_MALFORMED);
    bad = request("GET", "/a b", rh, 1);
    CHECK_RC(peakcache_http_key(p, &bad, &buf), PEAKCACHE_ERR_MALFORMED);
    bad = ok;
    bad.authority = (peakcache_bytes)S("bad host/");
    CHECK_RC(peakcache_http_key(p, &bad, &buf), PEAKCACHE_ERR_MALFORMED);
    bad = ok;
    bad.scheme = (peakcache_bytes)S("ftp");
    bad.authority = (peakcache_bytes)S("shop.example");
    CHECK_RC(peakcache_http_key(p, &bad, &buf), PEAKCACHE_ERR_NOT_CACHEABLE);
    peakcache_http_response_head weird = head(42, NULL, 0);
    CHECK_RC(peakcache_http_on_response(p, &ok, &weird, T0, T0, &d), PEAKCACHE_ERR_MALFORMED);
    peakcache_http_response_head bad_resp = head(200, bad_value, 1);
    CHECK_RC(peakcache_http_on_response(p, &ok, &bad_resp, T0, T0, &d), PEAKCACHE_ERR_MALFORMED);
    char why[128];
    peakcache_last_error(why, sizeof why);
    CHECK(strstr(why, "x-a") != NULL);
    CHECK(buf == SENTINEL);
    CHECK(strcmp(peakcache_result_str(PEAKCACHE_ERR_MALFORMED), "PEAKCACHE_ERR_MALFORMED") == 0);
    CHECK(strcmp(peakcache_result_str(PEAKCACHE_ERR_NOT_CACHEABLE), "PEAKCACHE_ERR_NOT_CACHEABLE") == 0);
    CHECK(strcmp(peakcache_result_str(PEAKCACHE_ERR_VALIDATOR_MISMATCH), "PEAKCACHE_ERR_VALIDATOR_MISMATCH") == 0);

    /* Bad configurations. */
    peakcache_http_config cfg;
    peakcache_http_policy *p2 = SENTINEL;
    CHECK_OK(peakcache_http_config_default(&cfg));
    cfg.set_cookie = 9;
    CHECK_RC(peakcache_http_policy_new(&cfg, &p2), PEAKCACHE_ERR_INVALID);
    CHECK_OK(peakcache_http_config_default(&cfg));
    cfg.default_scheme = (peakcache_bytes)S("ftp");
    CHECK_RC(peakcache_http_policy_new(&cfg, &p2), PEAKCACHE_ERR_INVALID);
    CHECK_OK(peakcache_http_config_default(&cfg));
    cfg.n_ignored_query_params = 2; /* NULL list */
    CHECK_RC(peakcache_http_policy_new(&cfg, &p2), PEAKCACHE_ERR_INVALID);
    CHECK_OK(peakcache_http_config_default(&cfg));
    cfg.cache_name = (peakcache_bytes){(const uint8_t *)"\xff\xfe", 2};
    CHECK_RC(peakcache_http_policy_new(&cfg, &p2), PEAKCACHE_ERR_INVALID);
    CHECK(p2 == SENTINEL);

    /* An unknown outcome; an entry stored without the HTTP family (no metadata). */
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result m = lookup(cache, "plain");
    peakcache_response *r = make_response(200, "x", 0);
    CHECK_OK(peakcache_response_set_meta(r, KEY("host's own")));
    CHECK_OK(peakcache_fill_commit(&m.fill, &r, 1000, 0, 0, NULL, 0));
    peakcache_lookup_result f = lookup(cache, "plain");
    const uint8_t *meta;
    size_t meta_len;
    CHECK_OK(peakcache_entry_meta(f.entry, &meta, &meta_len));
    CHECK(meta_len == 10 && memcmp(meta, "host's own", 10) == 0);
    CHECK_RC(peakcache_http_serve(p, &ok, f.entry, PEAKCACHE_HTTP_HIT, 0, T0, &a), PEAKCACHE_ERR_INVALID);
    CHECK_RC(peakcache_http_age(f.entry, T0, &secs), PEAKCACHE_ERR_INVALID);
    size_t len = 5;
    CHECK_RC(peakcache_http_clock(p, PEAKCACHE_HTTP_HIT, 0, f.entry, T0, &secs, &secs, NULL, 0,
                                  &len), PEAKCACHE_ERR_INVALID);
    CHECK(len == 5);
    CHECK(!peakcache_http_stale_if_error(f.entry, T0));
    CHECK_RC(peakcache_http_cache_status(p, PEAKCACHE_HTTP_HIT, 0, false, f.entry, T0, &buf), PEAKCACHE_ERR_INVALID);
    CHECK_RC(peakcache_http_cache_status(p, 77, 0, false, NULL, T0, &buf), PEAKCACHE_ERR_INVALID);
    CHECK_RC(peakcache_http_cache_status(p, 0, 0, false, NULL, T0, &buf), PEAKCACHE_ERR_INVALID);
    CHECK(secs == 77 && buf == SENTINEL);
    peakcache_entry_free(f.entry);
    peakcache_cache_free(cache);
    peakcache_http_policy_free(p);
}

int main(void) {
    RUN(keys_drop_campaign_parameters);
    RUN(max_age_with_swr_is_stored_and_served);
    RUN(default_ttl_applies_only_without_freshness_information);
    RUN(cdn_cache_control_wins_and_goes_on_to_cdns_in_front);
    RUN(cookies_private_and_no_store_are_not_stored);
    RUN(vary_accept_encoding_gives_one_variant_per_coding);
    RUN(etag_revalidation_merges_a_304_and_shares_the_body);
    RUN(errors_with_a_lifetime_and_the_age_of_a_stored_answer);
    RUN(client_conditionals_are_answered_from_the_entry);
    RUN(a_fill_carries_nothing_of_one_visitor);
    RUN(request_directives_apply_only_when_honoured);
    RUN(a_post_invalidates_the_target_and_its_location);
    RUN(cache_status_names_every_outcome);
    RUN(the_clock_says_until_when_age_and_cache_status_hold);
    RUN(misuse_gives_codes_not_crashes);
    return summary("test_http");
}
