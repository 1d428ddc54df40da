/* The shared backend across processes: one region file (under /dev/shm, else /tmp, removed at
 * the end) opened by a parent and by the children it forks; single flight across processes, a
 * waiter in one process resolved by a commit in another, purges seen everywhere, a fill held by
 * a process killed with SIGKILL taken over by another, an expired value handed to the next
 * filler in another process for revalidation. Also an anonymous region inherited across fork(),
 * snapshots, the region's configuration checks, and files that are not to be trusted (planted
 * by another user, symbolic links, too open), owners set for another user, and a file system too
 * small for the region (a tmpfs mounted for the test). Every wait is bounded: children arm
 * alarm(), the parent kills what outlives its deadline. The trust tests give files to `nobody`
 * and mount a tmpfs: they run as root (as `make test` does here). */
#define _GNU_SOURCE
#include "check.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { NOBODY = 65534 };

static char region_path[256];
static char snapshot_path[256];

static void pick_paths(void) {
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(region_path, sizeof region_path, "%s/peakcache-ctest-%ld", dir, (long)getpid());
    snprintf(snapshot_path, sizeof snapshot_path, "/tmp/peakcache-ctest-%ld.snap", (long)getpid());
    unlink(region_path);
    unlink(snapshot_path);
}

/* Opens (creates or attaches to) the test region file. */
static peakcache_cache *open_region(void) {
    peakcache_config cfg;
    peakcache_cache *cache = NULL;
    CHECK_OK(peakcache_config_default(&cfg));
    cfg.backend = PEAKCACHE_BACKEND_SHARED;
    cfg.shm_path = (const uint8_t *)region_path;
    cfg.shm_path_len = strlen(region_path);
    cfg.capacity_bytes = 4u << 20;
    cfg.lock_timeout_ms = 20000; /* only finding an owner dead releases waiters in time */
    CHECK_OK(peakcache_cache_new(&cfg, &cache));
    CHECK(cache != NULL);
    return cache;
}

static void commit_body(peakcache_fill **fill, const char *body) {
    peakcache_response *resp = make_response(200, body, 7);
    CHECK_OK(peakcache_fill_commit(fill, &resp, 60000, 0, 0, NULL, 0));
}

/* Forks a child running fn(arg) with an alarm of `secs`; the child's exit status is its number
 * of failed checks (capped), so the parent sees them. */
static pid_t spawn(void (*fn)(void *), void *arg, unsigned secs) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(secs);
        int before = atomic_load(&check_failures);
        fn(arg);
        int failed = atomic_load(&check_failures) - before;
        _exit(failed > 100 ? 100 : failed);
    }
    CHECK(pid > 0);
    return pid;
}

/* Waits for `pid` up to `ms`, killing it past that; true if it exited with status 0. */
static int reap(pid_t pid, long ms) {
    long long deadline = now_ms() + ms;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) return 0;
        if (now_ms() > deadline) {
            fprintf(stderr, "child %ld outlived %ld ms: killed\n", (long)pid, ms);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return 0;
        }
        sleep_ms(5);
    }
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "child %ld died of signal %d\n", (long)pid, WTERMSIG(status));
        return 0;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Reads one byte from `fd` within `ms`; true if one came. */
static int await_byte(int fd, long ms) {
    struct pollfd p = {fd, POLLIN, 0};
    char c;
    return poll(&p, 1, (int)ms) == 1 && read(fd, &c, 1) == 1;
}

static void signal_byte(int fd) {
    char c = 1;
    CHECK(write(fd, &c, 1) == 1);
}

/* ---- exactly one fill per key across processes ------------------------------------------ */

enum { CHILDREN = 4, KEYS = 16 };

struct hammer {
    atomic_int *fills; /* per key, in a MAP_SHARED page: fills done by any process */
    int child;
};

static void hammer_keys(void *arg) {
    struct hammer *h = arg;
    peakcache_cache *cache = open_region();
    for (int round = 0; round < 3; round++) {
        for (int j = 0; j < KEYS; j++) {
            int k = (j + h->child * 5) % KEYS;
            char key[32], want[32];
            snprintf(key, sizeof key, "/hammer/%d", k);
            snprintf(want, sizeof want, "value of %d", k);
            peakcache_lookup_result r = lookup(cache, key);
            if (r.kind == PEAKCACHE_LOOKUP_MISS) {
                atomic_fetch_add(&h->fills[k], 1);
                sleep_ms(20); /* the origin takes a while: others pile up as waiters */
                commit_body(&r.fill, want);
            } else if (r.kind == PEAKCACHE_LOOKUP_WAIT) {
                peakcache_wait_result res;
                CHECK_OK(peakcache_waiter_wait(&r.waiter, 5000, &res));
                CHECK(res.kind == PEAKCACHE_WAIT_HIT);
                if (res.kind == PEAKCACHE_WAIT_HIT) {
                    CHECK(body_is(res.entry, want) && peakcache_entry_flags(res.entry) == 7);
                }
                peakcache_entry_free(res.entry);
                if (res.kind == PEAKCACHE_WAIT_FILL) {
                    atomic_fetch_add(&h->fills[k], 1);
                    commit_body(&res.fill, want);
                }
            } else {
                CHECK(r.kind == PEAKCACHE_LOOKUP_FRESH);
                CHECK(body_is(r.entry, want));
                CHECK(r.status == 200 && r.body_len == strlen(want));
                peakcache_entry_free(r.entry);
            }
        }
    }
    peakcache_cache_free(cache);
}

static void one_fill_per_key_across_processes(void) {
    peakcache_cache *cache = open_region();
    peakcache_region_info info;
    CHECK_OK(peakcache_cache_region_info(cache, &info));
    CHECK(info.backend == PEAKCACHE_BACKEND_SHARED && info.opened == PEAKCACHE_REGION_CREATED);
    atomic_int *fills = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(fills != MAP_FAILED);
    memset(fills, 0, KEYS * sizeof *fills);
    struct hammer h[CHILDREN];
    pid_t pids[CHILDREN];
    for (int i = 0; i < CHILDREN; i++) {
        h[i].fills = fills;
        h[i].child = i;
        pids[i] = spawn(hammer_keys, &h[i], 30);
    }
    for (int i = 0; i < CHILDREN; i++) CHECK(reap(pids[i], 40000));
    for (int k = 0; k < KEYS; k++) {
        if (atomic_load(&fills[k]) != 1) fprintf(stderr, "key %d: %d fills\n", k, fills[k]);
        CHECK(atomic_load(&fills[k]) == 1);
    }
    /* The counters are the region's: every process's lookups. */
    peakcache_stats st;
    CHECK_OK(peakcache_cache_stats(cache, &st));
    CHECK(st.fills_committed == KEYS && st.miss == KEYS);
    CHECK(st.lookups == (uint64_t)CHILDREN * KEYS * 3);
    CHECK(st.entries == KEYS);
    munmap(fills, 4096);
    peakcache_cache_free(cache);
}

/* ---- a waiter in one process, the commit in another -------------------------------------- */

struct pipes {
    int to_parent[2];
    int to_child[2];
    int poll; /* resolve by polling instead of blocking */
};

static void wait_for_parent_commit(void *arg) {
    struct pipes *p = arg;
    peakcache_cache *cache = open_region();
    peakcache_lookup_result r = lookup(cache, "/cross");
    CHECK(r.kind == PEAKCACHE_LOOKUP_WAIT);
    signal_byte(p->to_parent[1]);
    peakcache_wait_result res;
    long long t0 = now_ms();
    if (p->poll) {
        peakcache_result rc;
        while ((rc = peakcache_waiter_poll(&r.waiter, &res)) == PEAKCACHE_PENDING &&
               now_ms() - t0 < 5000)
            sleep_ms(5);
        CHECK_OK(rc);
    } else {
        CHECK_OK(peakcache_waiter_wait(&r.waiter, 5000, &res));
    }
    CHECK(res.kind == PEAKCACHE_WAIT_HIT);
    CHECK(res.kind == PEAKCACHE_WAIT_HIT && body_is(res.entry, "from the parent"));
    CHECK(res.served == PEAKCACHE_SERVED_FRESH && res.status == 200);
    CHECK(now_ms() - t0 < 3000);
    peakcache_entry_free(res.entry);
    peakcache_waiter_free(r.waiter);
    peakcache_cache_free(cache);
}

static void waiter_gets_value_committed_in_another_process(void) {
    for (int mode = 0; mode < 2; mode++) {
        peakcache_cache *cache = open_region();
        CHECK_OK(peakcache_clear(cache));
        peakcache_lookup_result m = lookup(cache, "/cross");
        CHECK(m.kind == PEAKCACHE_LOOKUP_MISS);
        struct pipes p;
        p.poll = mode;
        CHECK(pipe(p.to_parent) == 0);
        pid_t pid = spawn(wait_for_parent_commit, &p, 20);
        CHECK(await_byte(p.to_parent[0], 10000)); /* the child is waiting */
        sleep_ms(50);
        commit_body(&m.fill, "from the parent");
        CHECK(reap(pid, 20000));
        close(p.to_parent[0]);
        close(p.to_parent[1]);
        peakcache_cache_free(cache);
    }
}

/* ---- purges seen by every process -------------------------------------------------------- */

static void expect_miss(void *arg) {
    const char *key = arg;
    peakcache_cache *cache = open_region();
    peakcache_entry *e = (peakcache_entry *)1;
    CHECK_OK(peakcache_get(cache, KEY(key), &e));
    CHECK(e == NULL);
    peakcache_lookup_result r = lookup(cache, key);
    CHECK(r.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_fill_abandon(r.fill);
    peakcache_cache_free(cache);
}

static void expect_hit(void *arg) {
    const char *key = arg;
    peakcache_cache *cache = open_region();
    peakcache_entry *e = NULL;
    CHECK_OK(peakcache_get(cache, KEY(key), &e));
    CHECK(e != NULL && body_is(e, "stored by the parent"));
    CHECK(peakcache_entry_header_count(e) == 1);
    peakcache_entry_free(e);
    peakcache_cache_free(cache);
}

static void purge_in_one_miss_in_the_other(void) {
    peakcache_cache *cache = open_region();
    peakcache_bytes tag = {(const uint8_t *)"campaign", 8};
    const char *keys[] = {"/p/key", "/p/tagged"};
    for (int i = 0; i < 2; i++) {
        peakcache_response *resp = make_response(200, "stored by the parent", 0);
        CHECK_OK(peakcache_insert(cache, KEY(keys[i]), &resp, 60000, 0, 0, &tag, 1));
        CHECK(reap(spawn(expect_hit, (void *)keys[i], 20), 20000));
    }
    bool found = false;
    CHECK_OK(peakcache_purge(cache, KEY("/p/key"), false, &found));
    CHECK(found);
    CHECK(reap(spawn(expect_miss, (void *)"/p/key", 20), 20000));
    CHECK_OK(peakcache_purge_tag(cache, KEY("campaign"), false));
    CHECK(reap(spawn(expect_miss, (void *)"/p/tagged", 20), 20000));
    peakcache_cache_free(cache);
}

/* ---- a fill held by a process killed with SIGKILL ---------------------------------------- */

static void take_fill_and_hang(void *arg) {
    struct pipes *p = arg;
    peakcache_cache *cache = open_region();
    peakcache_lookup_result r = lookup(cache, "/killed");
    CHECK(r.kind == PEAKCACHE_LOOKUP_MISS);
    signal_byte(p->to_parent[1]);
    for (;;) pause(); /* killed here, the fill held */
}

static void killed_filler_is_taken_over(void) {
    /* A lock timeout of 20 s: only finding the owner dead can release the waiter in time. */
    for (int mode = 0; mode < 2; mode++) {
        peakcache_cache *cache = open_region();
        CHECK_OK(peakcache_clear(cache));
        peakcache_region_info before;
        CHECK_OK(peakcache_cache_region_info(cache, &before));
        struct pipes p;
        CHECK(pipe(p.to_parent) == 0);
        pid_t pid = spawn(take_fill_and_hang, &p, 30);
        CHECK(await_byte(p.to_parent[0], 10000));
        peakcache_lookup_result w = lookup(cache, "/killed");
        CHECK(w.kind == PEAKCACHE_LOOKUP_WAIT);
        kill(pid, SIGKILL);
        int status;
        CHECK(waitpid(pid, &status, 0) == pid && WIFSIGNALED(status));
        long long t0 = now_ms();
        peakcache_fill *fill = NULL;
        if (mode == 0) {
            /* The waiter finds the owner dead and takes the fill over. */
            peakcache_wait_result res;
            CHECK_OK(peakcache_waiter_wait(&w.waiter, 10000, &res));
            CHECK(res.kind == PEAKCACHE_WAIT_FILL);
            fill = res.fill;
        } else {
            /* Or the next lookup does, the waiter given up. */
            peakcache_waiter_free(w.waiter);
            peakcache_lookup_result m = lookup(cache, "/killed");
            CHECK(m.kind == PEAKCACHE_LOOKUP_MISS);
            fill = m.fill;
        }
        CHECK(now_ms() - t0 < 3000);
        commit_body(&fill, "after the takeover");
        peakcache_lookup_result f = lookup(cache, "/killed");
        CHECK(f.kind == PEAKCACHE_LOOKUP_FRESH && body_is(f.entry, "after the takeover"));
        peakcache_entry_free(f.entry);
        peakcache_region_info after;
        CHECK_OK(peakcache_cache_region_info(cache, &after));
        CHECK(after.takeovers == before.takeovers + 1);
        close(p.to_parent[0]);
        close(p.to_parent[1]);
        peakcache_cache_free(cache);
    }
}

/* ---- an anonymous region, inherited across fork() ---------------------------------------- */

static peakcache_cache *anon_cache;

static void wait_in_inherited(void *arg) {
    struct pipes *p = arg;
    peakcache_lookup_result r = lookup(anon_cache, "/anon");
    CHECK(r.kind == PEAKCACHE_LOOKUP_WAIT);
    signal_byte(p->to_parent[1]);
    peakcache_wait_result res;
    CHECK_OK(peakcache_waiter_wait(&r.waiter, 5000, &res));
    CHECK(res.kind == PEAKCACHE_WAIT_HIT && body_is(res.entry, "anonymous"));
    peakcache_entry_free(res.entry);
    /* A key the child fills, seen by the parent. */
    peakcache_lookup_result m = lookup(anon_cache, "/anon/child");
    CHECK(m.kind == PEAKCACHE_LOOKUP_MISS);
    commit_body(&m.fill, "from the child");
}

static void anonymous_region_is_shared_with_children(void) {
    peakcache_config cfg;
    CHECK_OK(peakcache_config_default(&cfg));
    cfg.backend = PEAKCACHE_BACKEND_SHARED;
    cfg.capacity_bytes = 2u << 20;
    CHECK_OK(peakcache_cache_new(&cfg, &anon_cache));
    peakcache_region_info info;
    CHECK_OK(peakcache_cache_region_info(anon_cache, &info));
    CHECK(info.opened == PEAKCACHE_REGION_ANONYMOUS);
    peakcache_lookup_result m = lookup(anon_cache, "/anon");
    CHECK(m.kind == PEAKCACHE_LOOKUP_MISS);
    struct pipes p;
    CHECK(pipe(p.to_parent) == 0);
    pid_t pid = spawn(wait_in_inherited, &p, 20);
    CHECK(await_byte(p.to_parent[0], 10000));
    commit_body(&m.fill, "anonymous");
    CHECK(reap(pid, 20000));
    peakcache_entry *e = NULL;
    CHECK_OK(peakcache_get(anon_cache, KEY("/anon/child"), &e));
    CHECK(e != NULL && body_is(e, "from the child"));
    peakcache_entry_free(e);
    close(p.to_parent[0]);
    close(p.to_parent[1]);
    peakcache_cache_free(anon_cache);
}

/* ---- the region file: attach, mismatch, snapshot ----------------------------------------- */

static void region_file_attach_mismatch_and_snapshot(void) {
    peakcache_cache *a = open_region();
    CHECK_OK(peakcache_clear(a));
    peakcache_response *resp = make_response(200, "kept", 0);
    CHECK_OK(peakcache_insert(a, KEY("/kept"), &resp, 60000, 0, 0, NULL, 0));
    peakcache_cache_free(a);

    /* Reopened with the same settings: attached, entries kept. */
    peakcache_cache *b = open_region();
    peakcache_region_info info;
    CHECK_OK(peakcache_cache_region_info(b, &info));
    CHECK(info.opened == PEAKCACHE_REGION_ATTACHED);
    peakcache_entry *e = NULL;
    CHECK_OK(peakcache_get(b, KEY("/kept"), &e));
    CHECK(e != NULL && body_is(e, "kept"));
    peakcache_entry_free(e);

    uint64_t written = 0, restored = 0, skipped = 9;
    CHECK_OK(peakcache_cache_snapshot(b, KEY(snapshot_path), &written));
    CHECK(written == 1);
    if (written != 1) fprintf(stderr, "snapshot wrote %llu entries\n", (unsigned long long)written);

    /* Another size, not to be recreated: refused, the file left alone. */
    peakcache_config cfg;
    CHECK_OK(peakcache_config_default(&cfg));
    cfg.backend = PEAKCACHE_BACKEND_SHARED;
    cfg.shm_path = (const uint8_t *)region_path;
    cfg.shm_path_len = strlen(region_path);
    cfg.capacity_bytes = 8u << 20;
    cfg.shm_recreate_on_mismatch = false;
    peakcache_cache *c = NULL;
    CHECK_RC(peakcache_cache_new(&cfg, &c), PEAKCACHE_ERR_REGION);
    CHECK(c == NULL);
    /* Recreated by default. */
    cfg.shm_recreate_on_mismatch = true;
    CHECK_OK(peakcache_cache_new(&cfg, &c));
    CHECK_OK(peakcache_cache_region_info(c, &info));
    CHECK(info.opened == PEAKCACHE_REGION_RECREATED);
    CHECK_OK(peakcache_get(c, KEY("/kept"), &e));
    CHECK(e == NULL);
    /* The snapshot brings the entry back into the new region. */
    CHECK_OK(peakcache_cache_restore(c, KEY(snapshot_path), &restored, &skipped));
    CHECK(restored == 1 && skipped == 0);
    CHECK_OK(peakcache_get(c, KEY("/kept"), &e));
    CHECK(e != NULL && body_is(e, "kept") && peakcache_entry_header_count(e) == 1);
    peakcache_entry_free(e);
    peakcache_cache_free(c);
    peakcache_cache_free(b);

    /* Errors are codes. */
    cfg.shm_path = (const uint8_t *)"/nonexistent-dir/peakcache";
    cfg.shm_path_len = strlen((const char *)cfg.shm_path);
    CHECK_RC(peakcache_cache_new(&cfg, &c), PEAKCACHE_ERR_IO);
    cfg.shm_path = NULL;
    cfg.shm_path_len = 3;
    CHECK_RC(peakcache_cache_new(&cfg, &c), PEAKCACHE_ERR_INVALID);
    cfg.shm_path_len = 0;
    cfg.backend = 2;
    CHECK_RC(peakcache_cache_new(&cfg, &c), PEAKCACHE_ERR_INVALID);
    peakcache_cache *local = new_cache(0, 0, 0);
    CHECK_RC(peakcache_cache_snapshot(local, KEY(snapshot_path), NULL), PEAKCACHE_ERR_UNSUPPORTED);
    CHECK_OK(peakcache_cache_region_info(local, &info));
    CHECK(info.backend == PEAKCACHE_BACKEND_LOCAL && info.opened == PEAKCACHE_REGION_NONE);
    peakcache_cache_free(local);
}

/* ---- revalidation: the previous value across processes ----------------------------------- */

static void expect_previous(void *arg) {
    (void)arg;
    peakcache_cache *cache = open_region();
    peakcache_lookup_result r = lookup(cache, "/expired");
    CHECK(r.kind == PEAKCACHE_LOOKUP_MISS);
    peakcache_entry *prev = NULL;
    CHECK_OK(peakcache_fill_previous(r.fill, &prev));
    CHECK(prev != NULL && body_is(prev, "v1") && peakcache_entry_flags(prev) == 7);
    peakcache_entry_free(prev);
    /* A 304: the old body again, with new freshness. */
    peakcache_response *resp = make_response(200, "v1", 7);
    CHECK_OK(peakcache_fill_commit(&r.fill, &resp, 60000, 0, 0, NULL, 0));
    peakcache_cache_free(cache);
}

static void previous_value_reaches_a_filler_in_another_process(void) {
    peakcache_cache *cache = open_region();
    peakcache_response *resp = make_response(200, "v1", 7);
    CHECK_OK(peakcache_insert(cache, KEY("/expired"), &resp, 50, 0, 0, NULL, 0));
    sleep_ms(120); /* past its freshness, no stale window: dead but still stored */
    CHECK(reap(spawn(expect_previous, NULL, 10), 10000));
    peakcache_lookup_result r = lookup(cache, "/expired");
    CHECK(r.kind == PEAKCACHE_LOOKUP_FRESH && body_is(r.entry, "v1"));
    peakcache_entry_free(r.entry);
    peakcache_cache_free(cache);
}

/* ---- files that are not to be trusted --------------------------------------------------- */

/* A config for the region file at `path`. */
static void config_at(peakcache_config *cfg, const char *path) {
    CHECK_OK(peakcache_config_default(cfg));
    cfg->backend = PEAKCACHE_BACKEND_SHARED;
    cfg->shm_path = (const uint8_t *)path;
    cfg->shm_path_len = strlen(path);
    cfg->capacity_bytes = 1u << 20;
}

/* Whether the last error names all of `a`, `b` and `c`. */
static int last_error_names(const char *a, const char *b, const char *c) {
    char err[1024];
    peakcache_last_error(err, sizeof err);
    int ok = strstr(err, a) && strstr(err, b) && strstr(err, c);
    if (!ok) fprintf(stderr, "last error: %s\n", err);
    return ok;
}

static void untrusted_region_files_are_refused_with_path_owner_and_reason(void) {
    CHECK(geteuid() == 0); /* gives files to nobody */
    char path[300], target[300];
    snprintf(path, sizeof path, "%s.planted", region_path);
    snprintf(target, sizeof target, "%s.target", region_path);
    peakcache_config cfg;
    peakcache_cache *c = NULL;

    /* Planted by another user, world-writable: refused, left alone, even with recreate on. */
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) fclose(f);
    CHECK(chown(path, NOBODY, NOBODY) == 0 && chmod(path, 0666) == 0);
    config_at(&cfg, path);
    CHECK(cfg.shm_recreate_on_mismatch && cfg.shm_owner_uid == PEAKCACHE_SHM_EFFECTIVE_ID);
    CHECK_RC(peakcache_cache_new(&cfg, &c), PEAKCACHE_ERR_REGION);
    CHECK(c == NULL && last_error_names(path, "uid 65534", "mode 0666"));
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_uid == NOBODY && st.st_size == 0);
    unlink(path);

    /* A symbolic link: not followed, its target untouched. */
    f = fopen(target, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("precious", f);
        fclose(f);
    }
    CHECK(symlink(target, path) == 0);
    CHECK_RC(peakcache_cache_new(&cfg, &c), PEAKCACHE_ERR_REGION);
    CHECK(last_error_names(path, "symbolic link", "refusing"));
    CHECK(stat(target, &st) == 0 && st.st_size == 8);
    unlink(path);
    unlink(target);
}

static void owner_settings_make_the_region_theirs(void) {
    CHECK(geteuid() == 0); /* gives the file away */
    char path[300];
    snprintf(path, sizeof path, "%s.owned", region_path);
    unlink(path);
    peakcache_config cfg;
    peakcache_cache *c = NULL;
    config_at(&cfg, path);
    cfg.shm_owner_uid = NOBODY;
    cfg.shm_owner_gid = NOBODY;
    CHECK_OK(peakcache_cache_new(&cfg, &c));
    struct stat st;
    CHECK(stat(path, &st) == 0 && st.st_uid == NOBODY && st.st_gid == NOBODY &&
          (st.st_mode & 07777) == 0600);
    peakcache_cache_free(c);
    /* Root's default (its own uid) refuses nobody's file; the same settings attach it. */
    config_at(&cfg, path);
    CHECK_RC(peakcache_cache_new(&cfg, &c), PEAKCACHE_ERR_REGION);
    cfg.shm_owner_uid = NOBODY;
    cfg.shm_owner_gid = NOBODY;
    CHECK_OK(peakcache_cache_new(&cfg, &c));
    peakcache_region_info info;
    CHECK_OK(peakcache_cache_region_info(c, &info));
    CHECK(info.opened == PEAKCACHE_REGION_ATTACHED);
    peakcache_cache_free(c);
    unlink(path);

    /* Group sharing, deliberately: 0660 with the group. */
    config_at(&cfg, path);
    cfg.shm_owner_gid = NOBODY;
    cfg.shm_group_shared = true;
    CHECK_OK(peakcache_cache_new(&cfg, &c));
    CHECK(stat(path, &st) == 0 && st.st_uid == 0 && st.st_gid == NOBODY &&
          (st.st_mode & 07777) == 0660);
    peakcache_cache_free(c);
    /* Without it, the same file is too open. */
    cfg.shm_group_shared = false;
    CHECK_RC(peakcache_cache_new(&cfg, &c), PEAKCACHE_ERR_REGION);
    CHECK(last_error_names(path, "mode 0660", "group"));
    unlink(path);
}

static void a_region_too_large_for_its_file_system_fails_at_creation(void) {
    CHECK(geteuid() == 0); /* mounts a tmpfs */
    char dir[300], path[340];
    snprintf(dir, sizeof dir, "/tmp/peakcache-ctest-tmpfs-%ld", (long)getpid());
    snprintf(path, sizeof path, "%s/region", dir);
    CHECK(mkdir(dir, 0700) == 0 || errno == EEXIST);
    if (mount("tmpfs", dir, "tmpfs", 0, "size=8m") != 0) {
        fprintf(stderr, "mount tmpfs on %s: %s\n", dir, strerror(errno));
        CHECK(!"mount failed");
        rmdir(dir);
        return;
    }
    peakcache_config cfg;
    peakcache_cache *c = NULL;
    config_at(&cfg, path);
    cfg.capacity_bytes = 64u << 20;
    CHECK_RC(peakcache_cache_new(&cfg, &c), PEAKCACHE_ERR_IO);
    CHECK(c == NULL && last_error_names(path, "no room", "available"));
    CHECK(access(path, F_OK) != 0); /* nothing left behind */
    umount2(dir, MNT_DETACH);
    rmdir(dir);
}

int main(void) {
    pick_paths();
    RUN(one_fill_per_key_across_processes);
    RUN(waiter_gets_value_committed_in_another_process);
    RUN(purge_in_one_miss_in_the_other);
    RUN(killed_filler_is_taken_over);
    RUN(anonymous_region_is_shared_with_children);
    RUN(region_file_attach_mismatch_and_snapshot);
    RUN(previous_value_reaches_a_filler_in_another_process);
    RUN(untrusted_region_files_are_refused_with_path_owner_and_reason);
    RUN(owner_settings_make_the_region_theirs);
    RUN(a_region_too_large_for_its_file_system_fails_at_creation);
    unlink(region_path);
    unlink(snapshot_path);
    return summary("test_shared");
}
