/* A tiny test harness for the C tests of peakcache: CHECK, CHECK_RC, RUN, and a summary line
 * "N passed, M failed". Checks may fail on any thread; a failure is counted against the test
 * running. */
#ifndef PEAKCACHE_CHECK_H
#define PEAKCACHE_CHECK_H

#define _GNU_SOURCE /* memmem, dup2 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "peakcache.h"

static atomic_int check_failures;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
            atomic_fetch_add(&check_failures, 1);                                      \
        }                                                                              \
    } while (0)

#define CHECK_RC(expr, want)                                                           \
    do {                                                                               \
        peakcache_result rc_ = (expr);                                                 \
        peakcache_result want_ = (want);                                               \
        if (rc_ != want_) {                                                            \
            char err_[256];                                                            \
            peakcache_last_error(err_, sizeof err_);                                   \
            fprintf(stderr, "%s:%d: %s = %s, want %s (last error: %s)\n", __FILE__,    \
                    __LINE__, #expr, peakcache_result_str(rc_),                        \
                    peakcache_result_str(want_), err_);                                \
            atomic_fetch_add(&check_failures, 1);                                      \
        }                                                                              \
    } while (0)

#define CHECK_OK(expr) CHECK_RC(expr, PEAKCACHE_OK)

static int tests_passed, tests_failed;

#define RUN(test)                                                                      \
    do {                                                                               \
        int before_ = atomic_load(&check_failures);                                    \
        test();                                                                        \
        if (atomic_load(&check_failures) == before_) {                                 \
            tests_passed++;                                                            \
            printf("ok   %s\n", #test);                                                \
        } else {                                                                       \
            tests_failed++;                                                            \
            printf("FAIL %s\n", #test);                                                \
        }                                                                              \
        fflush(stdout);                                                                \
    } while (0)

/* The closing line test runners read; the exit status says the same. */
static inline int summary(const char *suite) {
    printf("%s: %d passed, %d failed\n", suite, tests_passed, tests_failed);
    return tests_failed == 0 ? 0 : 1;
}

static inline void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static inline long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The backend new_cache() makes caches on: tests that run on both set it between rounds. The
 * shared backend's caches are anonymous regions (each new_cache() its own). */
static uint32_t test_backend = PEAKCACHE_BACKEND_LOCAL;

static inline int shared_backend(void) { return test_backend == PEAKCACHE_BACKEND_SHARED; }

/* A cache with every default but the ones given (0 keeps the default), on test_backend. */
static inline peakcache_cache *new_cache(uint64_t lock_timeout_ms, uint64_t capacity, uint64_t max_object) {
    peakcache_config cfg;
    peakcache_cache *cache = NULL;
    CHECK_OK(peakcache_config_default(&cfg));
    cfg.backend = test_backend;
    /* A small region keeps the shared round quick under valgrind. */
    if (shared_backend()) cfg.capacity_bytes = 4u << 20;
    if (lock_timeout_ms) cfg.lock_timeout_ms = lock_timeout_ms;
    if (capacity) cfg.capacity_bytes = capacity;
    if (max_object) cfg.max_object_bytes = max_object;
    /* Retry quickly so tests of back-off do not wait long. */
    cfg.retry_backoff_min_ms = 200;
    cfg.retry_backoff_max_ms = 400;
    CHECK_OK(peakcache_cache_new(&cfg, &cache));
    CHECK(cache != NULL);
    return cache;
}

/* A response with status, one header and `body`, flags as given. */
static inline peakcache_response *make_response(uint16_t status, const char *body, uint32_t flags) {
    peakcache_response *resp = NULL;
    CHECK_OK(peakcache_response_new(status, &resp));
    CHECK_OK(peakcache_response_add_header(resp, (const uint8_t *)"content-type", 12,
                                           (const uint8_t *)"text/plain", 10));
    CHECK_OK(peakcache_response_append_body(resp, (const uint8_t *)body, strlen(body)));
    CHECK_OK(peakcache_response_set_flags(resp, flags));
    return resp;
}

/* Whether the entry's body is exactly `want`. */
static inline int body_is(const peakcache_entry *entry, const char *want) {
    const uint8_t *ptr = NULL;
    size_t len = 0;
    if (peakcache_entry_body(entry, &ptr, &len) != PEAKCACHE_OK) return 0;
    return len == strlen(want) && memcmp(ptr, want, len) == 0;
}

static inline peakcache_lookup_result lookup(peakcache_cache *cache, const char *key) {
    peakcache_lookup_result r;
    memset(&r, 0, sizeof r);
    CHECK_OK(peakcache_lookup(cache, (const uint8_t *)key, strlen(key), &r));
    return r;
}

#define KEY(s) (const uint8_t *)(s), strlen(s)

#endif
