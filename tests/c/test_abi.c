/* A host built against an older header runs against today's library (the "Sizes" convention
 * of peakcache.h). This file is compiled with -Itests/c/abi, a frozen copy of the first header
 * whose structs travel with their size (0.2.0, ABI version 1); since then the library's
 * peakcache_region_info has grown. Every struct sits between canaries: nothing may be written
 * past the host's struct (ASan and valgrind watch too), and the fields the old host does not
 * know must take their defaults. A newer host's larger struct is accepted when its unknown
 * tail is zero, refused otherwise, and a struct smaller than any layout is refused. */
#include "check.h"

#include <stdint.h>
#include <unistd.h>

#define CANARY 0xA5u

/* A struct of the old header with canaries on both sides, as a host's stack holds it. */
#define GUARDED(type, name)                                                                \
    struct {                                                                               \
        unsigned char before[32];                                                          \
        type value;                                                                        \
        unsigned char after[64];                                                           \
    } name;                                                                                \
    memset(&name, CANARY, sizeof name)

static int intact(const unsigned char *bytes, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (bytes[i] != CANARY) return 0;
    return 1;
}

#define INTACT(g) (intact((g).before, sizeof (g).before) && intact((g).after, sizeof (g).after))

static void the_old_header_is_the_same_abi(void) {
    CHECK(peakcache_abi_version() == PEAKCACHE_ABI_VERSION);
    CHECK(PEAKCACHE_ABI_VERSION == 1);
}

static void old_structs_are_read_and_written_within_their_size(void) {
    GUARDED(peakcache_config, cfg);
    CHECK_OK(peakcache_config_default(&cfg.value));
    CHECK(INTACT(cfg));
    CHECK(cfg.value.capacity_bytes > 0);
    char path[64];
    snprintf(path, sizeof path, "%s/peakcache-abi-%d", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp",
             (int)getpid());
    cfg.value.backend = PEAKCACHE_BACKEND_SHARED;
    cfg.value.shm_path = (const uint8_t *)path;
    cfg.value.shm_path_len = strlen(path);
    cfg.value.capacity_bytes = 4u << 20;
    peakcache_cache *cache = NULL;
    CHECK_OK(peakcache_cache_new(&cfg.value, &cache));
    CHECK(INTACT(cfg));

    /* The library's region info has a field this host does not know: it is not written. */
    GUARDED(peakcache_region_info, info);
    CHECK_OK(peakcache_cache_region_info(cache, &info.value));
    CHECK(INTACT(info));
    CHECK(info.value.backend == PEAKCACHE_BACKEND_SHARED && info.value.shards > 0);

    GUARDED(peakcache_lookup_result, miss);
    CHECK_OK(peakcache_lookup(cache, KEY("k"), &miss.value));
    CHECK(INTACT(miss));
    CHECK(miss.value.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_response *resp = make_response(200, "old host", 0);
    CHECK_OK(peakcache_fill_commit(&miss.value.fill, &resp, 60000, 0, 0, NULL, 0));
    GUARDED(peakcache_lookup_result, hit);
    CHECK_OK(peakcache_lookup(cache, KEY("k"), &hit.value));
    CHECK(INTACT(hit));
    CHECK(hit.value.kind == PEAKCACHE_LOOKUP_FRESH && hit.value.body_len == 8);
    peakcache_entry_free(hit.value.entry);

    GUARDED(peakcache_stats, st);
    CHECK_OK(peakcache_cache_stats(cache, &st.value));
    CHECK(INTACT(st));
    CHECK(st.value.lookups == 2);
    peakcache_cache_free(cache);
    unlink(path);

    GUARDED(peakcache_http_config, hcfg);
    CHECK_OK(peakcache_http_config_default(&hcfg.value));
    CHECK(INTACT(hcfg));
    peakcache_http_policy *p = NULL;
    CHECK_OK(peakcache_http_policy_new(&hcfg.value, &p));
    peakcache_http_policy_free(p);
}

/* A host built against a newer header than the library passes a larger struct. */
static void a_newer_hosts_struct_is_accepted_when_its_unknown_fields_are_zero(void) {
    struct {
        peakcache_config known;
        uint64_t future[4];
    } newer;
    memset(&newer, 0, sizeof newer);
    CHECK_OK(peakcache_config_default_sized((peakcache_config *)&newer, sizeof newer));
    CHECK(newer.future[0] == 0 && newer.future[3] == 0); /* zeroed: every default */
    peakcache_cache *cache = NULL;
    CHECK_OK(peakcache_cache_new_sized((peakcache_config *)&newer, &cache, sizeof newer));
    peakcache_cache_free(cache);
    newer.future[2] = 1; /* a setting this library does not know: refused, not ignored */
    cache = NULL;
    CHECK_RC(peakcache_cache_new_sized((peakcache_config *)&newer, &cache, sizeof newer),
             PEAKCACHE_ERR_INVALID);
    CHECK(cache == NULL);
    char why[256];
    peakcache_last_error(why, sizeof why);
    CHECK(strstr(why, "newer") != NULL);
}

static void a_struct_smaller_than_any_layout_is_refused(void) {
    unsigned char small[16];
    memset(small, CANARY, sizeof small);
    CHECK_RC(peakcache_config_default_sized((peakcache_config *)small, sizeof small),
             PEAKCACHE_ERR_INVALID);
    CHECK(intact(small, sizeof small));
    peakcache_cache *cache = new_cache(0, 0, 0);
    CHECK_RC(peakcache_lookup_sized(cache, KEY("k"), (peakcache_lookup_result *)small, sizeof small),
             PEAKCACHE_ERR_INVALID);
    CHECK(intact(small, sizeof small));
    /* Nothing was done: the key is still a plain miss. */
    peakcache_lookup_result r = lookup(cache, "k");
    CHECK(r.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_fill_abandon(r.fill);
    peakcache_cache_free(cache);
}

int main(void) {
    RUN(the_old_header_is_the_same_abi);
    RUN(old_structs_are_read_and_written_within_their_size);
    RUN(a_newer_hosts_struct_is_accepted_when_its_unknown_fields_are_zero);
    RUN(a_struct_smaller_than_any_layout_is_refused);
    return summary("test_abi");
}
