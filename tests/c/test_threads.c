/* Concurrency through the C ABI: single flight across 16 threads (blocking and polling), entries
 * read while another thread purges, clears and evicts them, and a mixed workload whose counters
 * must add up. */
#include "check.h"

#include <pthread.h>

#define THREADS 16

struct flight {
    peakcache_cache *cache;
    pthread_barrier_t start;
    atomic_int fills;
    atomic_int served;
    int poll; /* waiters poll instead of blocking */
};

static void *single_flight_worker(void *arg) {
    struct flight *f = arg;
    pthread_barrier_wait(&f->start);
    peakcache_lookup_result r = lookup(f->cache, "/campaign");
    peakcache_entry *entry = NULL;
    switch (r.kind) {
    case PEAKCACHE_LOOKUP_MISS: {
        atomic_fetch_add(&f->fills, 1);
        sleep_ms(100); /* the origin is slow */
        peakcache_response *resp = make_response(200, "the page", 0);
        CHECK_OK(peakcache_fill_commit(&r.fill, &resp, 60000, 0, 0, NULL, 0));
        atomic_fetch_add(&f->served, 1);
        return NULL;
    }
    case PEAKCACHE_LOOKUP_WAIT: {
        peakcache_wait_result w;
        if (f->poll) {
            peakcache_result rc;
            while ((rc = peakcache_waiter_poll(&r.waiter, &w)) == PEAKCACHE_PENDING) sleep_ms(2);
            CHECK_OK(rc);
        } else {
            CHECK_OK(peakcache_waiter_wait(&r.waiter, 5000, &w));
        }
        CHECK(r.waiter == NULL);
        CHECK(w.kind == PEAKCACHE_WAIT_HIT);
        entry = w.entry;
        break;
    }
    case PEAKCACHE_LOOKUP_FRESH:
        entry = r.entry;
        break;
    default:
        CHECK(!"unexpected lookup kind");
        return NULL;
    }
    CHECK(entry != NULL && body_is(entry, "the page"));
    peakcache_entry_free(entry);
    atomic_fetch_add(&f->served, 1);
    return NULL;
}

static void single_flight(int poll) {
    struct flight f = {.cache = new_cache(0, 0, 0), .poll = poll};
    atomic_init(&f.fills, 0);
    atomic_init(&f.served, 0);
    pthread_barrier_init(&f.start, NULL, THREADS);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, single_flight_worker, &f);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    pthread_barrier_destroy(&f.start);
    CHECK(atomic_load(&f.fills) == 1);
    CHECK(atomic_load(&f.served) == THREADS);
    peakcache_stats st;
    CHECK_OK(peakcache_cache_stats(f.cache, &st));
    CHECK(st.miss == 1 && st.fills_committed == 1);
    CHECK(st.lookups == THREADS && st.miss + st.wait + st.fresh == THREADS);
    peakcache_cache_free(f.cache);
}

static void single_flight_blocking(void) { single_flight(0); }
static void single_flight_polling(void) { single_flight(1); }

#define BIG (64 * 1024)

struct reader {
    peakcache_cache *cache;
    atomic_int stop;
};

static void fill_key(peakcache_cache *cache, const char *key, const char *body, size_t len) {
    peakcache_lookup_result r = lookup(cache, key);
    if (r.kind == PEAKCACHE_LOOKUP_MISS) {
        peakcache_response *resp = NULL;
        CHECK_OK(peakcache_response_new(200, &resp));
        CHECK_OK(peakcache_response_append_body(resp, (const uint8_t *)body, len));
        peakcache_result rc = peakcache_fill_commit(&r.fill, &resp, 60000, 0, 0, NULL, 0);
        CHECK(rc == PEAKCACHE_OK || rc == PEAKCACHE_ERR_TOO_LARGE);
    } else {
        peakcache_entry_free(r.entry);
        peakcache_refresh_abandon(r.refresh);
        peakcache_fill_abandon(r.fill);
        peakcache_waiter_free(r.waiter);
    }
}

static void *churn(void *arg) {
    struct reader *rd = arg;
    static char other[BIG];
    memset(other, 'z', sizeof other);
    char key[32];
    for (int i = 0; !atomic_load(&rd->stop); i++) {
        switch (i % 4) {
        case 0:
            CHECK_OK(peakcache_purge(rd->cache, KEY("/big"), false, NULL));
            break;
        case 1:
            CHECK_OK(peakcache_clear(rd->cache));
            break;
        case 2: /* evict: the cache holds only a few of these */
            for (int k = 0; k < 8; k++) {
                snprintf(key, sizeof key, "/other/%d/%d", i, k);
                fill_key(rd->cache, key, other, sizeof other);
            }
            break;
        case 3: /* replace the key's value */
            fill_key(rd->cache, "/big", other, sizeof other);
            break;
        }
    }
    return NULL;
}

static void entry_survives_purge_and_eviction(void) {
    /* 512 KiB over few shards, 128 KiB objects: eviction on nearly every fill. */
    peakcache_config cfg;
    CHECK_OK(peakcache_config_default(&cfg));
    cfg.capacity_bytes = 512 * 1024;
    cfg.shards = 2;
    cfg.max_object_bytes = 128 * 1024;
    struct reader rd;
    CHECK_OK(peakcache_cache_new(&cfg, &rd.cache));
    atomic_init(&rd.stop, 0);

    static char want[BIG];
    for (size_t i = 0; i < sizeof want; i++) want[i] = (char)('a' + i % 26);
    fill_key(rd.cache, "/big", want, sizeof want);
    peakcache_lookup_result r = lookup(rd.cache, "/big");
    CHECK(r.kind == PEAKCACHE_LOOKUP_FRESH);
    const uint8_t *ptr = NULL;
    size_t len = 0;
    CHECK_OK(peakcache_entry_body(r.entry, &ptr, &len));
    CHECK(len == sizeof want);

    pthread_t t;
    pthread_create(&t, NULL, churn, &rd);
    /* Read for at least 300 ms and until the churn has both evicted and purged (slow under
     * valgrind on a busy machine), giving up after 20 s. */
    long long until = now_ms() + 300, give_up = now_ms() + 20000;
    int rounds = 0;
    peakcache_stats st;
    for (;;) {
        for (int k = 0; k < 100; k++, rounds++) {
            CHECK(memcmp(ptr, want, len) == 0);
            CHECK(peakcache_entry_status(r.entry) == 200);
        }
        if (now_ms() < until) continue;
        CHECK_OK(peakcache_cache_stats(rd.cache, &st));
        if ((st.evictions > 0 && st.purges > 0) || now_ms() >= give_up) break;
    }
    atomic_store(&rd.stop, 1);
    pthread_join(t, NULL);
    CHECK(rounds > 0);
    CHECK(memcmp(ptr, want, len) == 0);
    CHECK_OK(peakcache_cache_stats(rd.cache, &st));
    CHECK(st.evictions > 0 && st.purges > 0);
    peakcache_cache_free(rd.cache);
    /* Still valid after the cache handle is gone. */
    CHECK(memcmp(ptr, want, len) == 0);
    peakcache_entry_free(r.entry);
}

struct mixed {
    peakcache_cache *cache;
    int seed;
};

static void *mixed_worker(void *arg) {
    struct mixed *m = arg;
    unsigned s = (unsigned)m->seed;
    char key[16], body[32];
    for (int i = 0; i < 3000; i++) {
        s = s * 1103515245u + 12345u;
        snprintf(key, sizeof key, "k%u", (s >> 16) % 40);
        peakcache_lookup_result r = lookup(m->cache, key);
        snprintf(body, sizeof body, "body of %s", key);
        peakcache_response *resp;
        switch (r.kind) {
        case PEAKCACHE_LOOKUP_MISS:
            switch ((s >> 8) % 8) {
            case 0:
                CHECK_OK(peakcache_fill_fail(&r.fill, NULL));
                break;
            case 1:
                peakcache_fill_abandon(r.fill);
                break;
            default:
                resp = make_response(200, body, 0);
                CHECK_OK(peakcache_fill_commit(&r.fill, &resp, 2 + (s >> 4) % 20, 20, 50, NULL, 0));
            }
            break;
        case PEAKCACHE_LOOKUP_STALE:
            CHECK(body_is(r.entry, body));
            peakcache_entry_free(r.entry);
            if (r.refresh) {
                resp = make_response(200, body, 0);
                CHECK_OK(peakcache_refresh_commit(&r.refresh, &resp, 5, 20, 50, NULL, 0));
            }
            break;
        case PEAKCACHE_LOOKUP_FRESH:
            CHECK(body_is(r.entry, body));
            peakcache_entry_free(r.entry);
            break;
        case PEAKCACHE_LOOKUP_WAIT: {
            peakcache_wait_result w;
            CHECK_OK(peakcache_waiter_wait(&r.waiter, 1000, &w));
            if (w.kind == PEAKCACHE_WAIT_HIT) {
                CHECK(body_is(w.entry, body));
                peakcache_entry_free(w.entry);
            } else if (w.kind == PEAKCACHE_WAIT_FILL) {
                resp = make_response(200, body, 0);
                CHECK_OK(peakcache_fill_commit(&w.fill, &resp, 10, 20, 50, NULL, 0));
            }
            break;
        }
        case PEAKCACHE_LOOKUP_PASS:
            break;
        }
        if (i % 500 == 0) CHECK_OK(peakcache_purge(m->cache, KEY(key), (s & 1) != 0, NULL));
    }
    return NULL;
}

static void mixed_workload_counts_add_up(void) {
    peakcache_cache *cache = new_cache(1000, 0, 0);
    pthread_t t[8];
    struct mixed m[8];
    for (int i = 0; i < 8; i++) {
        m[i].cache = cache;
        m[i].seed = i + 1;
        pthread_create(&t[i], NULL, mixed_worker, &m[i]);
    }
    for (int i = 0; i < 8; i++) pthread_join(t[i], NULL);
    peakcache_stats st;
    CHECK_OK(peakcache_cache_stats(cache, &st));
    CHECK(st.lookups == 8 * 3000);
    CHECK(st.fresh + st.stale + st.stale_if_error + st.miss + st.wait + st.pass == st.lookups);
    peakcache_cache_free(cache);
}

int main(void) {
    RUN(single_flight_blocking);
    RUN(single_flight_polling);
    RUN(entry_survives_purge_and_eviction);
    RUN(mixed_workload_counts_add_up);
    return summary("test_threads");
}
