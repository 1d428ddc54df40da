/* A stand-in for a host shared object (an nginx dynamic module) that links libpeakcache.a. Built
 * with -Wl,--exclude-libs,ALL, it must export only its own symbols: none of peakcache's, none of
 * Rust's. run.sh checks that with nm. */
#include <peakcache.h>
#include <string.h>

__attribute__((visibility("default"))) int host_module_lookup_kind(const char *key) {
    peakcache_cache *cache = NULL;
    if (peakcache_cache_new(NULL, &cache) != PEAKCACHE_OK) return -1;
    peakcache_lookup_result r;
    int kind = -1;
    if (peakcache_lookup(cache, (const uint8_t *)key, strlen(key), &r) == PEAKCACHE_OK) {
        kind = (int)r.kind;
        peakcache_fill_abandon(r.fill);
    }
    peakcache_cache_free(cache);
    return kind;
}
