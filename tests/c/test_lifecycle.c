/* Every outcome of the entry lifecycle, driven through the C ABI. C has no manual clock, so
 * time passes with small real sleeps (50-200 ms). */
#include "check.h"

#include <unistd.h>

/* Only in builds with the `test-panic` feature (tests/c/run.sh builds that way). */
peakcache_result peakcache_debug_panic(void);

static void commit_fill(peakcache_fill **fill, const char *body, uint64_t ttl, uint64_t swr,
                        uint64_t sie) {
    peakcache_response *resp = make_response(200, body, 0);
    CHECK_OK(peakcache_fill_commit(fill, &resp, ttl, swr, sie, NULL, 0));
    CHECK(*fill == NULL);
    CHECK(resp == NULL);
}

static void miss_commit_then_fresh(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result r = lookup(cache, "/home");
    CHECK(r.kind == PEAKCACHE_LOOKUP_MISS);
    CHECK(r.fill != NULL && r.entry == NULL && r.refresh == NULL && r.waiter == NULL);

    peakcache_response *resp = NULL;
    CHECK_OK(peakcache_response_new(203, &resp));
    CHECK_OK(peakcache_response_add_header(resp, KEY("Content-Type"), KEY("text/html")));
    CHECK_OK(peakcache_response_add_header(resp, KEY("X-Empty"), NULL, 0));
    CHECK_OK(peakcache_response_reserve_body(resp, 16));
    CHECK_OK(peakcache_response_append_body(resp, KEY("hello, ")));
    CHECK_OK(peakcache_response_append_body(resp, NULL, 0));
    CHECK_OK(peakcache_response_append_body(resp, KEY("world")));
    CHECK(peakcache_response_body_len(resp) == 12);
    CHECK_OK(peakcache_response_set_flags(resp, 0xABCDu));
    peakcache_bytes tags[2] = {{(const uint8_t *)"post:1", 6}, {(const uint8_t *)"home", 4}};
    CHECK_OK(peakcache_fill_commit(&r.fill, &resp, 10000, 0, 0, tags, 2));
    CHECK(r.fill == NULL && resp == NULL);

    peakcache_lookup_result h = lookup(cache, "/home");
    CHECK(h.kind == PEAKCACHE_LOOKUP_FRESH);
    CHECK(h.entry != NULL);
    CHECK(peakcache_entry_status(h.entry) == 203);
    CHECK(peakcache_entry_flags(h.entry) == 0xABCDu);
    CHECK(body_is(h.entry, "hello, world"));
    CHECK(peakcache_entry_header_count(h.entry) == 2);
    const uint8_t *n, *v;
    size_t nl, vl;
    CHECK_OK(peakcache_entry_header(h.entry, 0, &n, &nl, &v, &vl));
    CHECK(nl == 12 && memcmp(n, "Content-Type", 12) == 0 && vl == 9 && memcmp(v, "text/html", 9) == 0);
    CHECK_OK(peakcache_entry_header(h.entry, 1, &n, &nl, &v, &vl));
    CHECK(nl == 7 && memcmp(n, "X-Empty", 7) == 0 && vl == 0);
    CHECK_RC(peakcache_entry_header(h.entry, 2, &n, &nl, &v, &vl), PEAKCACHE_ERR_OUT_OF_RANGE);
    /* How it is served, its status, body and times come with the lookup's answer. */
    CHECK(h.served == PEAKCACHE_SERVED_FRESH);
    CHECK(h.status == 203 && h.body_len == 12 && memcmp(h.body, "hello, world", 12) == 0);
    uint64_t stored = h.stored_at_ms;
    CHECK(stored <= peakcache_cache_now_ms(cache));
    CHECK(h.fresh_until_ms == stored + 10000);
    CHECK(h.revalidate_until_ms == stored + 10000);
    CHECK(h.error_until_ms == stored + 10000);
    CHECK(peakcache_cache_now_ms(cache) - stored < 1000);
    const uint8_t *meta = NULL;
    size_t meta_len = 99;
    CHECK_OK(peakcache_entry_meta(h.entry, &meta, &meta_len));
    CHECK(meta_len == 0);

    peakcache_entry *copy = NULL;
    CHECK_OK(peakcache_entry_clone(h.entry, &copy));
    peakcache_entry_free(h.entry);
    CHECK(body_is(copy, "hello, world"));
    peakcache_entry_free(copy);

    peakcache_stats st;
    CHECK_OK(peakcache_cache_stats(cache, &st));
    CHECK(st.lookups == 2 && st.miss == 1 && st.fresh == 1 && st.fills_committed == 1);
    CHECK(st.entries == 1);
    if (shared_backend()) {
        /* Bytes of the region's heap: one record (80-byte header, two tag hashes, key, encoded
         * value) rounded up to 64 bytes. */
        CHECK(st.weight == 192);
    } else {
        /* key + status + flags + headers (name + value + slot each) + body + overhead */
        CHECK(st.weight == 5 + 2 + 4 + (12 + 9 + PEAKCACHE_HEADER_OVERHEAD) +
                               (7 + 0 + PEAKCACHE_HEADER_OVERHEAD) + 12 + PEAKCACHE_ENTRY_OVERHEAD);
    }
    peakcache_cache_free(cache);
}

static void stale_hands_one_refresh(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result r = lookup(cache, "k");
    CHECK(r.kind == PEAKCACHE_LOOKUP_MISS);
    commit_fill(&r.fill, "v1", 50, 10000, 0);
    sleep_ms(80);

    peakcache_lookup_result s1 = lookup(cache, "k");
    CHECK(s1.kind == PEAKCACHE_LOOKUP_STALE);
    CHECK(s1.entry != NULL && s1.refresh != NULL);
    CHECK(body_is(s1.entry, "v1"));
    CHECK(s1.served == PEAKCACHE_SERVED_STALE);
    CHECK(peakcache_cache_now_ms(cache) - s1.stored_at_ms >= 50);

    peakcache_lookup_result s2 = lookup(cache, "k");
    CHECK(s2.kind == PEAKCACHE_LOOKUP_STALE);
    CHECK(s2.refresh == NULL);
    peakcache_entry_free(s2.entry);

    peakcache_response *resp = make_response(200, "v2", 0);
    CHECK_OK(peakcache_refresh_commit(&s1.refresh, &resp, 10000, 0, 0, NULL, 0));
    CHECK(s1.refresh == NULL && resp == NULL);
    /* The entry handed out before the refresh still reads the old value. */
    CHECK(body_is(s1.entry, "v1"));
    peakcache_entry_free(s1.entry);

    peakcache_lookup_result f = lookup(cache, "k");
    CHECK(f.kind == PEAKCACHE_LOOKUP_FRESH);
    CHECK(body_is(f.entry, "v2"));
    peakcache_entry_free(f.entry);

    peakcache_stats st;
    CHECK_OK(peakcache_cache_stats(cache, &st));
    CHECK(st.refreshes_started == 1 && st.refreshes_committed == 1 && st.stale == 2);
    peakcache_cache_free(cache);
}

static void abandoned_refresh_and_failed_refresh(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result r = lookup(cache, "k");
    commit_fill(&r.fill, "v1", 30, 10000, 0);
    sleep_ms(50);
    peakcache_lookup_result s = lookup(cache, "k");
    CHECK(s.kind == PEAKCACHE_LOOKUP_STALE && s.refresh != NULL);
    peakcache_entry_free(s.entry);
    CHECK_OK(peakcache_refresh_fail(&s.refresh));
    CHECK(s.refresh == NULL);
    CHECK_RC(peakcache_refresh_fail(&s.refresh), PEAKCACHE_ERR_NULL);
    /* Backing off: served stale without a ticket. */
    peakcache_lookup_result b = lookup(cache, "k");
    CHECK(b.kind == PEAKCACHE_LOOKUP_STALE && b.refresh == NULL);
    peakcache_entry_free(b.entry);
    peakcache_refresh_abandon(NULL);
    peakcache_cache_free(cache);
}

static void fail_serves_stale_if_error(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result r = lookup(cache, "k");
    commit_fill(&r.fill, "good", 50, 0, 10000);
    sleep_ms(80);

    /* Past ttl, no swr: the origin is asked again (a fill), stale-if-error kept in reserve. */
    peakcache_lookup_result m = lookup(cache, "k");
    CHECK(m.kind == PEAKCACHE_LOOKUP_MISS && m.fill != NULL);
    peakcache_lookup_result w = lookup(cache, "k");
    CHECK(w.kind == PEAKCACHE_LOOKUP_WAIT && w.waiter != NULL);

    peakcache_entry *stale = (peakcache_entry *)0x1;
    CHECK_OK(peakcache_fill_fail(&m.fill, &stale));
    CHECK(m.fill == NULL);
    CHECK(stale != NULL && stale != (peakcache_entry *)0x1);
    CHECK(body_is(stale, "good"));
    peakcache_entry_free(stale);

    /* The waiter gets the same stale entry. */
    peakcache_wait_result res;
    CHECK_OK(peakcache_waiter_wait(&w.waiter, 1000, &res));
    CHECK(w.waiter == NULL);
    CHECK(res.kind == PEAKCACHE_WAIT_HIT && res.entry != NULL && res.fill == NULL);
    CHECK(res.served == PEAKCACHE_SERVED_STALE_IF_ERROR);
    CHECK(res.status == 200 && res.body_len == 4 && memcmp(res.body, "good", 4) == 0);
    CHECK(res.fresh_until_ms == res.stored_at_ms + 50 && res.error_until_ms == res.fresh_until_ms + 10000);
    CHECK(body_is(res.entry, "good"));
    peakcache_entry_free(res.entry);

    /* Backing off: lookups get the stale entry without a new fetch. */
    peakcache_lookup_result b = lookup(cache, "k");
    CHECK(b.kind == PEAKCACHE_LOOKUP_STALE && b.refresh == NULL);
    CHECK(b.served == PEAKCACHE_SERVED_STALE_IF_ERROR);
    peakcache_entry_free(b.entry);

    /* After the back-off (200 ms here), one caller probes again, in the background: it is
     * served the stale entry with a refresh ticket, and nobody waits for the origin. */
    sleep_ms(250);
    peakcache_lookup_result p = lookup(cache, "k");
    CHECK(p.kind == PEAKCACHE_LOOKUP_STALE && p.refresh != NULL);
    CHECK(p.served == PEAKCACHE_SERVED_STALE_IF_ERROR);
    peakcache_entry_free(p.entry);
    peakcache_response *resp = make_response(200, "back", 0);
    CHECK_OK(peakcache_refresh_commit(&p.refresh, &resp, 10000, 0, 0, NULL, 0));
    peakcache_lookup_result f = lookup(cache, "k");
    CHECK(f.kind == PEAKCACHE_LOOKUP_FRESH && body_is(f.entry, "back"));
    peakcache_entry_free(f.entry);

    peakcache_stats st;
    CHECK_OK(peakcache_cache_stats(cache, &st));
    CHECK(st.fills_failed == 1 && st.stale_if_error == 2 && st.refreshes_committed == 1);
    peakcache_cache_free(cache);
}

static void fail_without_stale_fails_waiters(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result m = lookup(cache, "k");
    peakcache_lookup_result w = lookup(cache, "k");
    CHECK(w.kind == PEAKCACHE_LOOKUP_WAIT);
    peakcache_entry *stale = (peakcache_entry *)0x1;
    CHECK_OK(peakcache_fill_fail(&m.fill, &stale));
    CHECK(stale == NULL);
    peakcache_wait_result res;
    CHECK_OK(peakcache_waiter_poll(&w.waiter, &res));
    CHECK(res.kind == PEAKCACHE_WAIT_FAILED && res.entry == NULL && res.fill == NULL);
    CHECK(w.waiter == NULL);
    peakcache_cache_free(cache);
}

static void uncacheable_passes(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result m = lookup(cache, "/cart");
    peakcache_lookup_result w = lookup(cache, "/cart");
    CHECK(w.kind == PEAKCACHE_LOOKUP_WAIT);
    CHECK_OK(peakcache_fill_uncacheable(&m.fill, 10000));
    CHECK(m.fill == NULL);
    peakcache_wait_result res;
    CHECK_OK(peakcache_waiter_poll(&w.waiter, &res));
    CHECK(res.kind == PEAKCACHE_WAIT_PASS);
    peakcache_lookup_result p = lookup(cache, "/cart");
    CHECK(p.kind == PEAKCACHE_LOOKUP_PASS);
    CHECK(p.entry == NULL && p.fill == NULL && p.waiter == NULL && p.refresh == NULL);
    peakcache_stats st;
    CHECK_OK(peakcache_cache_stats(cache, &st));
    CHECK(st.fills_uncacheable == 1 && st.pass == 1);
    peakcache_cache_free(cache);
}

static void abandon_lets_a_waiter_fill(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result m = lookup(cache, "k");
    peakcache_lookup_result w = lookup(cache, "k");
    CHECK(w.kind == PEAKCACHE_LOOKUP_WAIT);
    peakcache_fill_abandon(m.fill);
    peakcache_wait_result res;
    CHECK_OK(peakcache_waiter_wait(&w.waiter, 1000, &res));
    CHECK(res.kind == PEAKCACHE_WAIT_FILL && res.fill != NULL && res.entry == NULL);
    commit_fill(&res.fill, "by the waiter", 10000, 0, 0);
    peakcache_lookup_result f = lookup(cache, "k");
    CHECK(f.kind == PEAKCACHE_LOOKUP_FRESH && body_is(f.entry, "by the waiter"));
    peakcache_entry_free(f.entry);
    peakcache_stats st;
    CHECK_OK(peakcache_cache_stats(cache, &st));
    CHECK(st.fills_abandoned == 1 && st.fills_committed == 1);
    peakcache_cache_free(cache);
}

static void poll_pending_then_ready(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result m = lookup(cache, "k");
    peakcache_lookup_result w = lookup(cache, "k");
    CHECK(w.kind == PEAKCACHE_LOOKUP_WAIT);
    peakcache_waiter *before = w.waiter;
    peakcache_wait_result res;
    memset(&res, 0x5A, sizeof res);
    peakcache_wait_result untouched = res;
    for (int i = 0; i < 3; i++) {
        CHECK_RC(peakcache_waiter_poll(&w.waiter, &res), PEAKCACHE_PENDING);
        /* PENDING leaves the handle as it was: a host holding a copy of the pointer (nginx
         * keeps one in its request context) still holds the live waiter. */
        CHECK(w.waiter == before);
        CHECK(memcmp(&res, &untouched, sizeof res) == 0);
    }
    commit_fill(&m.fill, "ready", 10000, 0, 0);
    CHECK_OK(peakcache_waiter_poll(&w.waiter, &res));
    CHECK(w.waiter == NULL);
    CHECK(res.kind == PEAKCACHE_WAIT_HIT && body_is(res.entry, "ready"));
    peakcache_entry_free(res.entry);
    /* Consumed: a second use is an error, not a crash. */
    CHECK_RC(peakcache_waiter_poll(&w.waiter, &res), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_waiter_wait(&w.waiter, 10, &res), PEAKCACHE_ERR_NULL);
    peakcache_cache_free(cache);
}

static void lock_timeout_releases_waiters(void) {
    peakcache_cache *cache = new_cache(100, 0, 0);
    peakcache_lookup_result m = lookup(cache, "slow");
    peakcache_lookup_result w1 = lookup(cache, "slow");
    peakcache_lookup_result w2 = lookup(cache, "slow");
    CHECK(w1.kind == PEAKCACHE_LOOKUP_WAIT && w2.kind == PEAKCACHE_LOOKUP_WAIT);

    /* Blocking: released by the lock timeout (100 ms), not its own (5 s). */
    long long t0 = now_ms();
    peakcache_wait_result res;
    CHECK_OK(peakcache_waiter_wait(&w1.waiter, 5000, &res));
    long long took = now_ms() - t0;
    CHECK(res.kind == PEAKCACHE_WAIT_TIMED_OUT);
    CHECK(took >= 50 && took < 2000);

    /* Polling after the deadline: released too. */
    CHECK_OK(peakcache_waiter_poll(&w2.waiter, &res));
    CHECK(res.kind == PEAKCACHE_WAIT_TIMED_OUT);

    /* The next lookup starts a new fill; the overdue one may still commit. */
    peakcache_lookup_result again = lookup(cache, "slow");
    CHECK(again.kind == PEAKCACHE_LOOKUP_MISS);
    commit_fill(&again.fill, "new", 10000, 0, 0);
    commit_fill(&m.fill, "late", 10000, 0, 0);
    peakcache_lookup_result f = lookup(cache, "slow");
    CHECK(f.kind == PEAKCACHE_LOOKUP_FRESH && body_is(f.entry, "new"));
    peakcache_entry_free(f.entry);

    peakcache_stats st;
    CHECK_OK(peakcache_cache_stats(cache, &st));
    CHECK(st.wait_timeouts >= 2);
    peakcache_cache_free(cache);
}

static void wait_own_timeout(void) {
    peakcache_cache *cache = new_cache(5000, 0, 0);
    peakcache_lookup_result m = lookup(cache, "k");
    peakcache_lookup_result w = lookup(cache, "k");
    long long t0 = now_ms();
    peakcache_wait_result res;
    CHECK_OK(peakcache_waiter_wait(&w.waiter, 60, &res));
    long long took = now_ms() - t0;
    CHECK(res.kind == PEAKCACHE_WAIT_TIMED_OUT);
    CHECK(took >= 50 && took < 2000);
    peakcache_fill_abandon(m.fill);
    peakcache_cache_free(cache);
}

static void purge_key_tag_soft_and_hard(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_bytes tags[] = {{(const uint8_t *)"post:42", 7}};
    const char *keys[] = {"a", "b"};
    for (int i = 0; i < 2; i++) {
        peakcache_lookup_result m = lookup(cache, keys[i]);
        peakcache_response *resp = make_response(200, keys[i], 0);
        CHECK_OK(peakcache_fill_commit(&m.fill, &resp, 10000, 10000, 0, tags, 1));
    }
    bool found = false;
    CHECK_OK(peakcache_purge(cache, KEY("a"), false, &found));
    CHECK(found);
    CHECK_OK(peakcache_purge(cache, KEY("nope"), false, &found));
    CHECK(!found);
    CHECK_OK(peakcache_purge(cache, KEY("nope"), true, NULL));
    peakcache_lookup_result a = lookup(cache, "a");
    CHECK(a.kind == PEAKCACHE_LOOKUP_MISS);
    commit_fill(&a.fill, "a2", 10000, 10000, 0);

    /* Soft tag purge: b stays servable (stale) while one caller refreshes it. */
    CHECK_OK(peakcache_purge_tag(cache, KEY("post:42"), true));
    peakcache_lookup_result b = lookup(cache, "b");
    CHECK(b.kind == PEAKCACHE_LOOKUP_STALE && b.refresh != NULL && body_is(b.entry, "b"));
    peakcache_entry_free(b.entry);
    peakcache_refresh_abandon(b.refresh);

    /* Hard tag purge: gone. a2 was stored without tags. */
    CHECK_OK(peakcache_purge_tag(cache, KEY("post:42"), false));
    peakcache_lookup_result b2 = lookup(cache, "b");
    CHECK(b2.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_fill_abandon(b2.fill);
    peakcache_lookup_result a2 = lookup(cache, "a");
    CHECK(a2.kind == PEAKCACHE_LOOKUP_FRESH);
    peakcache_entry_free(a2.entry);

    /* Soft key purge. */
    CHECK_OK(peakcache_purge(cache, KEY("a"), true, &found));
    CHECK(found);
    peakcache_lookup_result a3 = lookup(cache, "a");
    CHECK(a3.kind == PEAKCACHE_LOOKUP_STALE && a3.refresh != NULL);
    peakcache_entry_free(a3.entry);
    CHECK_OK(peakcache_refresh_uncacheable(&a3.refresh, 10000));
    peakcache_lookup_result a4 = lookup(cache, "a");
    CHECK(a4.kind == PEAKCACHE_LOOKUP_PASS);
    peakcache_stats st;
    CHECK_OK(peakcache_cache_stats(cache, &st));
    CHECK(st.purges == 2 && st.tag_purges == 2);
    peakcache_cache_free(cache);
}

static void freeze_and_clear(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result m = lookup(cache, "k");
    commit_fill(&m.fill, "v", 40, 0, 0);
    CHECK_OK(peakcache_freeze(cache, true));
    CHECK(peakcache_is_frozen(cache));
    sleep_ms(60);
    peakcache_lookup_result f = lookup(cache, "k");
    CHECK(f.kind == PEAKCACHE_LOOKUP_FRESH);
    CHECK_OK(peakcache_freeze(cache, false));
    CHECK(!peakcache_is_frozen(cache));
    peakcache_lookup_result d = lookup(cache, "k");
    CHECK(d.kind == PEAKCACHE_LOOKUP_MISS);
    commit_fill(&d.fill, "v2", 10000, 0, 0);
    CHECK_OK(peakcache_clear(cache));
    /* Views outlive clear and the cache handle itself. */
    peakcache_cache_free(cache);
    CHECK(body_is(f.entry, "v"));
    peakcache_entry_free(f.entry);
}

static void too_large_reaches_waiters_but_is_not_stored(void) {
    peakcache_cache *cache = new_cache(0, 1 << 20, 1000);
    CHECK(peakcache_cache_max_object_bytes(cache) == 1000);
    peakcache_lookup_result m = lookup(cache, "big");
    peakcache_lookup_result w = lookup(cache, "big");
    char body[2001];
    memset(body, 'x', 2000);
    body[2000] = 0;
    peakcache_response *resp = make_response(200, body, 0);
    CHECK_RC(peakcache_fill_commit(&m.fill, &resp, 10000, 0, 0, NULL, 0), PEAKCACHE_ERR_TOO_LARGE);
    CHECK(m.fill == NULL && resp == NULL);
    char err[256];
    CHECK(peakcache_last_error(err, sizeof err) > 0 && strstr(err, "object limit") != NULL);
    peakcache_wait_result res;
    CHECK_OK(peakcache_waiter_poll(&w.waiter, &res));
    if (shared_backend()) {
        /* The region cannot hand over what it did not store: the waiter fetches for itself. */
        CHECK(res.kind == PEAKCACHE_WAIT_PASS && res.entry == NULL && res.fill == NULL);
    } else {
        CHECK(res.kind == PEAKCACHE_WAIT_HIT && body_is(res.entry, body));
        peakcache_entry_free(res.entry);
    }
    peakcache_lookup_result again = lookup(cache, "big");
    CHECK(again.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_fill_abandon(again.fill);
    peakcache_stats st;
    CHECK_OK(peakcache_cache_stats(cache, &st));
    CHECK(st.rejected_too_large == 1);
    peakcache_cache_free(cache);
}

static void default_windows(void) {
    peakcache_config cfg;
    CHECK_OK(peakcache_config_default(&cfg));
    CHECK(cfg.capacity_bytes == 64u << 20 && cfg.lock_timeout_ms == 5000 && cfg.shards == 0);
    cfg.backend = test_backend;
    cfg.default_swr_ms = 7000;
    cfg.default_sie_ms = 9000;
    peakcache_cache *cache = NULL;
    CHECK_OK(peakcache_cache_new(&cfg, &cache));
    peakcache_lookup_result m = lookup(cache, "k");
    commit_fill(&m.fill, "v", 1000, PEAKCACHE_WINDOW_DEFAULT, PEAKCACHE_WINDOW_DEFAULT);
    peakcache_lookup_result f = lookup(cache, "k");
    CHECK(f.fresh_until_ms == f.stored_at_ms + 1000);
    CHECK(f.revalidate_until_ms == f.fresh_until_ms + 7000);
    CHECK(f.error_until_ms == f.fresh_until_ms + 9000);
    peakcache_entry_free(f.entry);
    peakcache_cache_free(cache);
}

static void stats_text_formats(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result m = lookup(cache, "k");
    commit_fill(&m.fill, "v", 10000, 0, 0);
    peakcache_lookup_result f = lookup(cache, "k");
    peakcache_entry_free(f.entry);

    peakcache_buf *buf = NULL;
    const uint8_t *ptr;
    size_t len;
    CHECK_OK(peakcache_stats_prometheus(cache, &buf));
    CHECK_OK(peakcache_buf_data(buf, &ptr, &len));
    char *text = malloc(len + 1);
    memcpy(text, ptr, len);
    text[len] = 0;
    CHECK(strstr(text, "# TYPE peakcache_lookups_total counter\n") != NULL);
    CHECK(strstr(text, "peakcache_lookups_total{outcome=\"fresh\"} 1\n") != NULL);
    CHECK(strstr(text, "peakcache_fills_total{result=\"committed\"} 1\n") != NULL);
    CHECK(strstr(text, "peakcache_entries 1\n") != NULL);
    free(text);
    peakcache_buf_free(buf);

    CHECK_OK(peakcache_stats_json(cache, &buf));
    CHECK_OK(peakcache_buf_data(buf, &ptr, &len));
    CHECK(len > 2 && ptr[0] == '{' && ptr[len - 1] == '}');
    CHECK(memmem(ptr, len, "\"lookups\":2,\"fresh\":1", 21) != NULL);
    peakcache_buf_free(buf);
    peakcache_cache_free(cache);
}

struct log_sink {
    int calls;
    int last_level;
    char last[256];
};

static void on_log(void *userdata, int level, const uint8_t *msg, size_t len) {
    struct log_sink *sink = userdata;
    sink->calls++;
    sink->last_level = level;
    size_t n = len < sizeof sink->last - 1 ? len : sizeof sink->last - 1;
    memcpy(sink->last, msg, n);
    sink->last[n] = 0;
    /* Called with no lock held: calling back in is fine. */
    peakcache_stats st;
    (void)st;
    CHECK(peakcache_version() != NULL);
}

static void log_callback(void) {
    struct log_sink sink = {0};
    peakcache_set_log_callback(&sink, on_log);
    peakcache_cache *cache = new_cache(0, 1 << 20, 100);
    CHECK(sink.calls == 1 && sink.last_level == PEAKCACHE_LOG_INFO);
    peakcache_lookup_result m = lookup(cache, "k");
    peakcache_response *resp = make_response(200, "this body is heavier than the limit of 100 bytes "
                                                   "once the overhead is counted", 0);
    CHECK_RC(peakcache_fill_commit(&m.fill, &resp, 1000, 0, 0, NULL, 0), PEAKCACHE_ERR_TOO_LARGE);
    CHECK(sink.calls == 2 && sink.last_level == PEAKCACHE_LOG_WARN);
    CHECK(strstr(sink.last, "object limit") != NULL);
    peakcache_set_log_callback(NULL, NULL);
    CHECK_RC(peakcache_debug_panic(), PEAKCACHE_ERR_PANIC);
    CHECK(sink.calls == 2);
    peakcache_cache_free(cache);
}

static void panic_is_a_code_and_prints_nothing(void) {
    struct log_sink sink = {0};
    peakcache_set_log_callback(&sink, on_log);
    fflush(stderr);
    int saved = dup(2);
    FILE *capture = tmpfile();
    CHECK(capture != NULL && saved >= 0);
    dup2(fileno(capture), 2);
    peakcache_result rc = peakcache_debug_panic();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    long printed = (fseek(capture, 0, SEEK_END), ftell(capture));
    fclose(capture);
    peakcache_set_log_callback(NULL, NULL);

    CHECK(rc == PEAKCACHE_ERR_PANIC);
    CHECK(printed == 0);
    char err[256];
    size_t n = peakcache_last_error(err, sizeof err);
    CHECK(n > 0 && strstr(err, "debug panic") != NULL);
    CHECK(sink.calls == 1 && sink.last_level == PEAKCACHE_LOG_ERROR);
    CHECK(strstr(sink.last, "debug panic") != NULL);
    /* The library still works afterwards. */
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_lookup_result m = lookup(cache, "k");
    CHECK(m.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_fill_abandon(m.fill);
    peakcache_cache_free(cache);
}

static void version_matches_header(void) {
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", PEAKCACHE_VERSION_MAJOR, PEAKCACHE_VERSION_MINOR,
             PEAKCACHE_VERSION_PATCH);
    CHECK(strcmp(peakcache_version(), want) == 0);
}

/* get and insert: the plain cache beside the lifecycle; fill_previous: an expired entry handed to
 * the next fill for revalidation. */
static void get_insert_and_previous(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    peakcache_entry *e = (peakcache_entry *)1;
    CHECK_OK(peakcache_get(cache, KEY("/k"), &e));
    CHECK(e == NULL);

    peakcache_response *resp = make_response(200, "v1", 0);
    peakcache_bytes tag = {(const uint8_t *)"t", 1};
    CHECK_OK(peakcache_insert(cache, KEY("/k"), &resp, 50, 0, 0, &tag, 1));
    CHECK(resp == NULL);
    CHECK_OK(peakcache_get(cache, KEY("/k"), &e));
    CHECK(e != NULL && body_is(e, "v1"));
    peakcache_entry_free(e);

    usleep(120 * 1000); /* past its 50 ms of freshness, and it has no stale windows */
    CHECK_OK(peakcache_get(cache, KEY("/k"), &e));
    CHECK(e == NULL);
    peakcache_lookup_result r = lookup(cache, "/k");
    CHECK(r.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_entry *prev = NULL;
    CHECK_OK(peakcache_fill_previous(r.fill, &prev));
    CHECK(prev != NULL && body_is(prev, "v1"));
    peakcache_entry_free(prev);
    commit_fill(&r.fill, "v2", 10000, 0, 0);

    peakcache_lookup_result m = lookup(cache, "/new");
    CHECK_OK(peakcache_fill_previous(m.fill, &prev));
    CHECK(prev == NULL);
    peakcache_fill_abandon(m.fill);

    /* Misuse: NULLs are codes, and insert consumes the response even then. */
    CHECK_RC(peakcache_get(NULL, KEY("/k"), &e), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_get(cache, NULL, 3, &e), PEAKCACHE_ERR_INVALID);
    CHECK_RC(peakcache_get(cache, KEY("/k"), NULL), PEAKCACHE_ERR_NULL);
    resp = make_response(200, "x", 0);
    CHECK_RC(peakcache_insert(NULL, KEY("/k"), &resp, 1, 0, 0, NULL, 0), PEAKCACHE_ERR_NULL);
    CHECK(resp == NULL);
    CHECK_RC(peakcache_insert(cache, KEY("/k"), &resp, 1, 0, 0, NULL, 0), PEAKCACHE_ERR_NULL);
    CHECK_RC(peakcache_fill_previous(NULL, &prev), PEAKCACHE_ERR_NULL);
    peakcache_cache_free(cache);
}

/* peakcache_entry_id: the same for every handle of one stored value (lookups, a waiter's hit, a
 * clone), another for the value that replaces it (same length included); 0 for NULL. */
static void entry_id_names_a_stored_value(void) {
    peakcache_cache *cache = new_cache(0, 0, 0);
    CHECK(peakcache_entry_id(NULL) == 0);

    peakcache_lookup_result r = lookup(cache, "/id");
    CHECK(r.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_lookup_result w = lookup(cache, "/id");
    CHECK(w.kind == PEAKCACHE_LOOKUP_WAIT);
    commit_fill(&r.fill, "same", 10000, 0, 0);
    peakcache_wait_result wr;
    CHECK_OK(peakcache_waiter_wait(&w.waiter, 1000, &wr));
    CHECK(wr.kind == PEAKCACHE_WAIT_HIT && wr.entry != NULL);

    peakcache_lookup_result a = lookup(cache, "/id");
    peakcache_lookup_result b = lookup(cache, "/id");
    CHECK(a.kind == PEAKCACHE_LOOKUP_FRESH && b.kind == PEAKCACHE_LOOKUP_FRESH);
    uint64_t id = peakcache_entry_id(a.entry);
    CHECK(id != 0);
    CHECK(peakcache_entry_id(b.entry) == id);
    CHECK(peakcache_entry_id(wr.entry) == id);
    peakcache_entry *copy = NULL;
    CHECK_OK(peakcache_entry_clone(a.entry, &copy));
    CHECK(peakcache_entry_id(copy) == id);
    peakcache_entry_free(copy);
    peakcache_entry_free(wr.entry);

    /* Another key's value: another id. */
    peakcache_lookup_result o = lookup(cache, "/other");
    commit_fill(&o.fill, "same", 10000, 0, 0);
    peakcache_lookup_result oh = lookup(cache, "/other");
    CHECK(oh.kind == PEAKCACHE_LOOKUP_FRESH && peakcache_entry_id(oh.entry) != id);
    peakcache_entry_free(oh.entry);

    /* Replaced at once (the old handles still held, as a memo holds them) by a value of the
     * same length. */
    peakcache_response *resp = make_response(200, "SAME", 0);
    CHECK_OK(peakcache_insert(cache, KEY("/id"), &resp, 10000, 0, 0, NULL, 0));
    peakcache_lookup_result c = lookup(cache, "/id");
    CHECK(c.kind == PEAKCACHE_LOOKUP_FRESH);
    uint64_t id2 = peakcache_entry_id(c.entry);
    CHECK(id2 != 0 && id2 != id);
    peakcache_lookup_result d = lookup(cache, "/id");
    CHECK(peakcache_entry_id(d.entry) == id2);
    CHECK(peakcache_entry_id(a.entry) == id); /* a held handle keeps its id */

    /* peakcache_get's handles agree among themselves. */
    peakcache_entry *g1 = NULL, *g2 = NULL;
    CHECK_OK(peakcache_get(cache, KEY("/id"), &g1));
    CHECK_OK(peakcache_get(cache, KEY("/id"), &g2));
    CHECK(g1 != NULL && g2 != NULL);
    CHECK(peakcache_entry_id(g1) != 0 && peakcache_entry_id(g1) == peakcache_entry_id(g2));
    CHECK(peakcache_entry_id(g1) != id);
    if (!shared_backend()) {
        CHECK(peakcache_entry_id(g1) == id2); /* the value's own address */
    }
    peakcache_entry_free(g1);
    peakcache_entry_free(g2);

    peakcache_entry_free(a.entry);
    peakcache_entry_free(b.entry);
    peakcache_entry_free(c.entry);
    peakcache_entry_free(d.entry);
    peakcache_cache_free(cache);
}

static void run_all(void) {
    RUN(miss_commit_then_fresh);
    RUN(stale_hands_one_refresh);
    RUN(abandoned_refresh_and_failed_refresh);
    RUN(fail_serves_stale_if_error);
    RUN(fail_without_stale_fails_waiters);
    RUN(uncacheable_passes);
    RUN(abandon_lets_a_waiter_fill);
    RUN(poll_pending_then_ready);
    RUN(lock_timeout_releases_waiters);
    RUN(wait_own_timeout);
    RUN(purge_key_tag_soft_and_hard);
    RUN(freeze_and_clear);
    RUN(too_large_reaches_waiters_but_is_not_stored);
    RUN(default_windows);
    RUN(stats_text_formats);
    RUN(log_callback);
    RUN(panic_is_a_code_and_prints_nothing);
    RUN(version_matches_header);
    RUN(get_insert_and_previous);
    RUN(entry_id_names_a_stored_value);
}

/* Every test on both backends: the C ABI promises one lifecycle whatever holds the entries. */
int main(void) {
    printf("# local backend\n");
    run_all();
    test_backend = PEAKCACHE_BACKEND_SHARED;
    printf("# shared backend (anonymous regions)\n");
    run_all();
    return summary("test_lifecycle");
}
