/*
 * freeze PATH CAPACITY MAX_OBJECT LOCK_MS on|off: freezes or thaws the cache
 * of a running nginx from outside, as any process attached to its region may
 * (the settings must be the zone's, or the region would not be the same one).
 * Exit status 0 on success; the library's error on stderr otherwise.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <peakcache.h>


int
main(int argc, char **argv)
{
    char              why[256];
    peakcache_cache  *cache;
    peakcache_config  cfg;
    peakcache_result  rc;

    if (argc != 6) {
        fprintf(stderr,
                "usage: freeze PATH CAPACITY MAX_OBJECT LOCK_MS on|off\n");
        return 2;
    }

    (void) peakcache_config_default(&cfg);

    cfg.backend = PEAKCACHE_BACKEND_SHARED;
    cfg.shm_path = (const uint8_t *) argv[1];
    cfg.shm_path_len = strlen(argv[1]);
    cfg.capacity_bytes = strtoull(argv[2], NULL, 10);
    cfg.max_object_bytes = strtoull(argv[3], NULL, 10);
    cfg.lock_timeout_ms = strtoull(argv[4], NULL, 10);
    cfg.shm_recreate_on_mismatch = false;

    cache = NULL;
    rc = peakcache_cache_new(&cfg, &cache);

    if (rc == PEAKCACHE_OK) {
        rc = peakcache_freeze(cache, strcmp(argv[5], "on") == 0);
    }

    if (rc != PEAKCACHE_OK) {
        why[0] = '\0';
        (void) peakcache_last_error(why, sizeof(why));
        fprintf(stderr, "freeze: %s (%s)\n", peakcache_result_str(rc), why);
    }

    peakcache_cache_free(cache);

    return rc == PEAKCACHE_OK ? 0 : 1;
}
