/* C quick start: look a key up, fill it on a miss, serve it on a hit. */
#include <peakcache.h>
#include <stdio.h>
#include <string.h>

/* Stands in for the origin (a proxied request, a PHP computation). */
static const char *fetch_from_origin(const char *key) {
    (void)key;
    return "<h1>Spring campaign</h1>";
}

/* Serves `key`: from the cache if it can, from the origin (once per key) otherwise. */
static int serve(peakcache_cache *cache, const char *key) {
    peakcache_lookup_result r;
    peakcache_result rc = peakcache_lookup(cache, (const uint8_t *)key, strlen(key), &r);
    if (rc != PEAKCACHE_OK) {
        char why[256];
        peakcache_last_error(why, sizeof why);
        fprintf(stderr, "lookup: %s (%s)\n", peakcache_result_str(rc), why);
        return -1;
    }

    /* A hit's answer carries the entry, its status, a view of its body and its times. */
    peakcache_entry *entry = NULL;
    uint16_t status = 0;
    const uint8_t *body = NULL;
    size_t len = 0;
    uint64_t stored_at_ms = 0;
    switch (r.kind) {
    case PEAKCACHE_LOOKUP_FRESH:
    case PEAKCACHE_LOOKUP_STALE:
        entry = r.entry;
        status = r.status;
        body = r.body;
        len = r.body_len;
        stored_at_ms = r.stored_at_ms;
        /* A real host refreshes in the background; this one just gives the ticket back. */
        peakcache_refresh_abandon(r.refresh);
        break;
    case PEAKCACHE_LOOKUP_WAIT: {
        peakcache_wait_result w;
        peakcache_waiter_wait(&r.waiter, 5000, &w); /* consumes r.waiter */
        if (w.kind == PEAKCACHE_WAIT_HIT) {
            entry = w.entry;
            status = w.status;
            body = w.body;
            len = w.body_len;
            stored_at_ms = w.stored_at_ms;
            break;
        }
        peakcache_fill_abandon(w.fill); /* FILL: a real host fetches and commits here */
        printf("%s: fetched for myself: %s\n", key, fetch_from_origin(key));
        return 0;
    }
    case PEAKCACHE_LOOKUP_MISS: {
        const char *body = fetch_from_origin(key);
        peakcache_response *resp = NULL;
        peakcache_response_new(200, &resp);
        peakcache_response_add_header(resp, (const uint8_t *)"content-type", 12,
                                      (const uint8_t *)"text/html", 9);
        peakcache_response_append_body(resp, (const uint8_t *)body, strlen(body));
        /* Fresh for 60 s, then served stale for 5 min while one caller refreshes, and for a
         * day if the origin fails. Consumes r.fill and resp, whatever the result. */
        peakcache_bytes tags[] = {{(const uint8_t *)"campaign:spring", 15}};
        rc = peakcache_fill_commit(&r.fill, &resp, 60000, 300000, 86400000, tags, 1);
        printf("%s: miss, stored (%s): %s\n", key, peakcache_result_str(rc), body);
        return 0;
    }
    case PEAKCACHE_LOOKUP_PASS:
        printf("%s: pass: %s\n", key, fetch_from_origin(key));
        return 0;
    }

    /* The body stays valid until the entry is freed, whatever happens to the cache meanwhile. */
    printf("%s: hit, status %u, age %llu ms: %.*s\n", key, (unsigned)status,
           (unsigned long long)(peakcache_cache_now_ms(cache) - stored_at_ms), (int)len,
           (const char *)body);
    peakcache_entry_free(entry);
    return 0;
}

int main(void) {
    printf("peakcache %s\n", peakcache_version());
    if (peakcache_abi_version() != PEAKCACHE_ABI_VERSION) {
        fprintf(stderr, "libpeakcache has ABI %u, this program was built for %u\n",
                peakcache_abi_version(), PEAKCACHE_ABI_VERSION);
        return 1;
    }
    peakcache_config cfg;
    peakcache_config_default(&cfg);
    cfg.capacity_bytes = 16u << 20; /* 16 MiB */

    peakcache_cache *cache = NULL;
    if (peakcache_cache_new(&cfg, &cache) != PEAKCACHE_OK) return 1;
    serve(cache, "/spring"); /* miss: fetched and stored */
    serve(cache, "/spring"); /* hit */
    peakcache_purge_tag(cache, (const uint8_t *)"campaign:spring", 15, false);
    serve(cache, "/spring"); /* miss again after the purge */

    peakcache_stats st;
    peakcache_cache_stats(cache, &st);
    printf("lookups %llu, fresh %llu, miss %llu\n", (unsigned long long)st.lookups,
           (unsigned long long)st.fresh, (unsigned long long)st.miss);
    peakcache_cache_free(cache);
    return 0;
}
