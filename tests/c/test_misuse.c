/* Misuse of the C ABI: NULL everywhere, wrong lengths, double use of consumed handles. Every
 * case must answer an error code (or do nothing), never crash, and write no out-parameter. */
#include "check.h"

#define SENTINEL ((void *)0x5A5A)

static void null_handles_and_outs(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result r;
    peakcache_wait_result w;
    peakcache_stats st;
    peakcache_config cfg;
    peakcache_buf *buf = SENTINEL;
    peakcache_cache *c2 = SENTINEL;
    peakcache_response *resp = SENTINEL;
    peakcache_entry *entry = SENTINEL;
    const uint8_t *ptr = SENTINEL;
    size_t len = 77;
    bool found = true;

    CHECK_RC(peakcache_config_default(NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_cache_new(NULL, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_lookup(NULL, KEY("k"), &r), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_lookup(cache, KEY("k"), NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_purge(NULL, KEY("k"), false, &found), PEAKCACHE_ERR_NULL);
    CHECK(found == true);
    CHECK_RC(peakcache_purge_tag(NULL, KEY("t"), false), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_freeze(NULL, true), PEAKCACHE_ERR_NULL);
    CHECK(!peakcache_is_frozen(NULL));
    CHECK_RC(peakcache_clear(NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_cache_stats(NULL, &st), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_cache_stats(cache, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_stats_prometheus(NULL, &buf), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_stats_prometheus(cache, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_stats_json(NULL, &buf), PEAKCACHE_ERR_NULL);
    CHECK(buf == SENTINEL);
    CHECK_RC(peakcache_buf_data(NULL, &ptr, &len), PEAKCACHE_ERR_NULL);
    CHECK(peakcache_cache_now_ms(NULL) == 0);
    CHECK(peakcache_cache_max_object_bytes(NULL) == 0);
    {
        /* the history and the status page */
        bool due = true;
        peakcache_host_counts hc = { 1, 0, 0, 0 };

        CHECK_RC(peakcache_cache_tick(NULL, &hc, NULL), PEAKCACHE_ERR_NULL);
        CHECK_RC(peakcache_cache_tick_sized(cache, &hc, NULL, 4), PEAKCACHE_ERR_INVALID);
        CHECK_OK(peakcache_cache_tick(cache, NULL, NULL));
        CHECK_RC(peakcache_status_json(NULL, 10, &buf), PEAKCACHE_ERR_NULL);
        CHECK_RC(peakcache_status_json(cache, 10, NULL), PEAKCACHE_ERR_NULL);
        CHECK_RC(peakcache_status_page(NULL, &len), PEAKCACHE_ERR_NULL);
        CHECK_RC(peakcache_status_page(&ptr, NULL), PEAKCACHE_ERR_NULL);
        CHECK_RC(peakcache_cache_claim_every(NULL, 1000, &due), PEAKCACHE_ERR_NULL);
        CHECK_RC(peakcache_cache_claim_every(cache, 1000, NULL), PEAKCACHE_ERR_NULL);
        CHECK_OK(peakcache_cache_claim_every(cache, 0, &due));
        CHECK(!due);
    }

    CHECK_RC(peakcache_response_new(200, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_response_add_header(NULL, KEY("a"), KEY("b")), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_response_append_body(NULL, KEY("a")), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_response_reserve_body(NULL, 10), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_response_set_flags(NULL, 1), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_response_set_meta(NULL, KEY("m")), PEAKCACHE_ERR_NULL);
    CHECK(peakcache_response_body_len(NULL) == 0);

    CHECK(peakcache_entry_status(NULL) == 0);
    CHECK(peakcache_entry_flags(NULL) == 0);
    CHECK(peakcache_entry_header_count(NULL) == 0);
    CHECK_RC(peakcache_entry_body(NULL, &ptr, &len), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_entry_meta(NULL, &ptr, &len), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_entry_header(NULL, 0, &ptr, &len, &ptr, &len), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_entry_clone(NULL, &entry), PEAKCACHE_ERR_NULL);
    CHECK(ptr == SENTINEL && len == 77 && entry == SENTINEL);

    CHECK_RC(peakcache_fill_commit(NULL, NULL, 1, 0, 0, NULL, 0), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_fill_fail(NULL, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_fill_uncacheable(NULL, 1), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_refresh_commit(NULL, NULL, 1, 0, 0, NULL, 0), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_refresh_fail(NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_refresh_uncacheable(NULL, 1), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_waiter_wait(NULL, 1, &w), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_waiter_poll(NULL, &w), PEAKCACHE_ERR_NULL);
    peakcache_waiter *no_waiter = NULL;
    CHECK_RC(peakcache_waiter_poll(&no_waiter, &w), PEAKCACHE_ERR_NULL);

    /* Every free function accepts NULL. */
    peakcache_cache_free(NULL);
    peakcache_entry_free(NULL);
    peakcache_response_free(NULL);
    peakcache_fill_abandon(NULL);
    peakcache_refresh_abandon(NULL);
    peakcache_waiter_free(NULL);
    peakcache_buf_free(NULL);
    peakcache_set_log_callback(NULL, NULL);

    (void)cfg;
    (void)c2;
    (void)resp;
    peakcache_cache_free(cache);
}

static void wrong_lengths(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result r;
    memset(&r, 0x33, sizeof r);
    peakcache_lookup_result untouched = r;
    CHECK_RC(peakcache_lookup(cache, NULL, 5, &r), PEAKCACHE_ERR_INVALID);
    CHECK(memcmp(&r, &untouched, sizeof r) == 0);
    char err[128];
    peakcache_last_error(err, sizeof err);
    CHECK(strstr(err, "key") != NULL);
    CHECK_RC(peakcache_lookup(cache, (const uint8_t *)"k", SIZE_MAX, &r), PEAKCACHE_ERR_INVALID);
    CHECK_RC(peakcache_purge(cache, NULL, 1, false, NULL), PEAKCACHE_ERR_INVALID);
    CHECK_RC(peakcache_purge_tag(cache, NULL, 1, false), PEAKCACHE_ERR_INVALID);

    /* NULL with 0 is the empty string: a valid key. */
    CHECK_OK(peakcache_lookup(cache, NULL, 0, &r));
    CHECK(r.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_response *resp = NULL;
    CHECK_OK(peakcache_response_new(200, &resp));
    CHECK_RC(peakcache_response_add_header(resp, NULL, 3, KEY("v")), PEAKCACHE_ERR_INVALID);
    CHECK_RC(peakcache_response_add_header(resp, KEY("n"), NULL, 3), PEAKCACHE_ERR_INVALID);
    CHECK_RC(peakcache_response_append_body(resp, NULL, 3), PEAKCACHE_ERR_INVALID);
    CHECK_RC(peakcache_response_reserve_body(resp, SIZE_MAX), PEAKCACHE_ERR_INVALID);
    CHECK(peakcache_response_body_len(resp) == 0);
    CHECK_OK(peakcache_fill_commit(&r.fill, &resp, 10000, 0, 0, NULL, 0));
    peakcache_lookup_result e;
    CHECK_OK(peakcache_lookup(cache, NULL, 0, &e));
    CHECK(e.kind == PEAKCACHE_LOOKUP_FRESH);
    CHECK(peakcache_entry_header_count(e.entry) == 0);
    const uint8_t *ptr = NULL;
    size_t len = 9;
    CHECK_OK(peakcache_entry_body(e.entry, &ptr, &len));
    CHECK(len == 0 && ptr != NULL);
    CHECK_RC(peakcache_entry_body(e.entry, NULL, &len), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_entry_body(e.entry, &ptr, NULL), PEAKCACHE_ERR_NULL);
    peakcache_entry_free(e.entry);

    /* Invalid tags: both handles are consumed anyway, and the fill abandoned. */
    peakcache_lookup_result m = lookup(cache, "t");
    CHECK(m.kind == PEAKCACHE_LOOKUP_MISS);
    resp = make_response(200, "x", 0);
    CHECK_RC(peakcache_fill_commit(&m.fill, &resp, 1000, 0, 0, NULL, 2), PEAKCACHE_ERR_INVALID);
    CHECK(m.fill == NULL && resp == NULL);
    m = lookup(cache, "t");
    CHECK(m.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_bytes bad[2] = {{(const uint8_t *)"ok", 2}, {NULL, 4}};
    resp = make_response(200, "x", 0);
    CHECK_RC(peakcache_fill_commit(&m.fill, &resp, 1000, 0, 0, bad, 2), PEAKCACHE_ERR_INVALID);
    CHECK(m.fill == NULL && resp == NULL);
    peakcache_response_free(resp);

    /* Bad configs. */
    peakcache_config cfg;
    peakcache_cache *c2 = SENTINEL;
    CHECK_OK(peakcache_config_default(&cfg));
    cfg.capacity_bytes = 0;
    CHECK_RC(peakcache_cache_new(&cfg, &c2), PEAKCACHE_ERR_INVALID);
    CHECK_OK(peakcache_config_default(&cfg));
    cfg.shards = 1u << 20;
    CHECK_RC(peakcache_cache_new(&cfg, &c2), PEAKCACHE_ERR_INVALID);
    CHECK(c2 == SENTINEL);
    CHECK_OK(peakcache_cache_new(NULL, &c2));
    peakcache_cache_free(c2);
    peakcache_cache_free(cache);
}

static void double_use_of_consumed_handles(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result m = lookup(cache, "k");
    peakcache_lookup_result w = lookup(cache, "k");
    CHECK(m.kind == PEAKCACHE_LOOKUP_MISS && w.kind == PEAKCACHE_LOOKUP_WAIT);

    /* A wait with a NULL out does not cost the waiter. */
    CHECK_RC(peakcache_waiter_wait(&w.waiter, 10, NULL), PEAKCACHE_ERR_NULL);
    CHECK(w.waiter != NULL);
    CHECK_RC(peakcache_waiter_poll(&w.waiter, NULL), PEAKCACHE_ERR_NULL);
    CHECK(w.waiter != NULL);

    peakcache_response *resp = make_response(200, "v", 0);
    CHECK_OK(peakcache_fill_commit(&m.fill, &resp, 10000, 0, 0, NULL, 0));
    /* Twice: the fill is gone (and a second response handed in is consumed too). */
    peakcache_response *resp2 = make_response(200, "w", 0);
    CHECK_RC(peakcache_fill_commit(&m.fill, &resp2, 10000, 0, 0, NULL, 0), PEAKCACHE_ERR_NULL);
    CHECK(resp2 == NULL);
    char err[128];
    peakcache_last_error(err, sizeof err);
    CHECK(strstr(err, "already consumed") != NULL);
    CHECK_RC(peakcache_fill_commit(&m.fill, &resp, 10000, 0, 0, NULL, 0), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_fill_fail(&m.fill, NULL), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_fill_uncacheable(&m.fill, 10), PEAKCACHE_ERR_NULL);
    peakcache_fill_abandon(m.fill); /* NULL now: a no-op */

    peakcache_wait_result res;
    CHECK_OK(peakcache_waiter_wait(&w.waiter, 1000, &res));
    CHECK(res.kind == PEAKCACHE_WAIT_HIT);
    peakcache_entry_free(res.entry);
    CHECK_RC(peakcache_waiter_wait(&w.waiter, 1000, &res), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_waiter_poll(&w.waiter, &res), PEAKCACHE_ERR_NULL);
    peakcache_waiter_free(w.waiter);

    /* Same for fail and uncacheable. */
    peakcache_lookup_result a = lookup(cache, "a");
    CHECK_OK(peakcache_fill_fail(&a.fill, NULL));
    CHECK_RC(peakcache_fill_fail(&a.fill, NULL), PEAKCACHE_ERR_NULL);
    peakcache_lookup_result b = lookup(cache, "b");
    CHECK_OK(peakcache_fill_uncacheable(&b.fill, 10));
    CHECK_RC(peakcache_fill_uncacheable(&b.fill, 10), PEAKCACHE_ERR_NULL);

    /* A waiter given up unresolved. */
    peakcache_lookup_result c = lookup(cache, "c");
    peakcache_lookup_result cw = lookup(cache, "c");
    peakcache_waiter_free(cw.waiter);
    peakcache_fill_abandon(c.fill);
    peakcache_cache_free(cache);
}

static void result_names(void) {
    const char *want[] = {"PEAKCACHE_OK", "PEAKCACHE_PENDING", "PEAKCACHE_ERR_NULL",
                          "PEAKCACHE_ERR_INVALID", "PEAKCACHE_ERR_PANIC", "PEAKCACHE_ERR_TOO_LARGE",
                          "PEAKCACHE_ERR_OUT_OF_RANGE"};
    for (uint32_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        CHECK(strcmp(peakcache_result_str(i), want[i]) == 0);
    }
    CHECK(strcmp(peakcache_result_str(PEAKCACHE_ERR_OUT_OF_RANGE), "PEAKCACHE_ERR_OUT_OF_RANGE") == 0);
    CHECK(strcmp(peakcache_result_str(12345), "PEAKCACHE_UNKNOWN") == 0);

    peakcache_lookup_result r;
    CHECK_RC(peakcache_lookup(NULL, NULL, 0, &r), PEAKCACHE_ERR_NULL);
    char small[4];
    size_t n = peakcache_last_error(small, sizeof small);
    CHECK(n == strlen("cache is NULL") && strcmp(small, "cac") == 0);
    CHECK(peakcache_last_error(NULL, 0) == n);
    CHECK(peakcache_last_error(NULL, 10) == n);
    peakcache_clear_last_error();
    CHECK(peakcache_last_error(small, sizeof small) == 0 && small[0] == 0);
}

int main(void) {
    RUN(null_handles_and_outs);
    RUN(wrong_lengths);
    RUN(double_use_of_consumed_handles);
    RUN(result_names);
    return summary("test_misuse");
}
