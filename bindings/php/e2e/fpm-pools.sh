#!/usr/bin/env bash
# End-to-end test of PHP-FPM pools kept apart by default (issue 11): one FPM master (root) whose
# pools run under two system users made for the test, every pool with peakcache.shared=1 and
# the default region path, behind nginx on loopback.
#
#   pool a: user A, 4 workers       pool b: user B, 4 workers (a long name that needs escaping)
#   pool c: user B, 1 worker, php_admin_value[peakcache.shm_path] = pool a's region
#   pool d: user A, 1 worker, its default region file planted beforehand by user B (mode 0666)
#   pool e: user A, 1 worker, a name longer than the room FPM has for its process title
#   pool f: user A, 30 workers, added at the end for 10 reloads of 60 concurrent first requests
#
# Checks: each pool gets its own region file (/dev/shm/peakcache-php-<uid>-<pool>, 0600, owned
# by the pool's user); what a sets, b does not see, and what b sets under the same key a never
# reads; remember() computes once per pool across that pool's workers (single flight per pool);
# c is refused a's region (another user's file) and d the planted file, each with the reason in
# the log, and each still answers from a cache of its own; e, whose name FPM cut short in the
# worker's process title, shares no region rather than guess; a reload (SIGUSR2) keeps a's
# entries; a pool whose user changes gets a new region and does not see the old one; 30 fresh
# workers learning their pool at once crash nothing.
# Needs root (useradd, pools under other users). Users, region files and servers are removed
# on exit, whatever happens.
#
# Usage: fpm-pools.sh EXTENSION_SO. Prints one line per check and "fpm-pools: N passed, M failed".
# Env: PHP_FPM (default php-fpm8.2), NGINX (default nginx).
set -uo pipefail

so="$(realpath "${1:?usage: fpm-pools.sh path/to/peakcache.so}")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PHP_FPM="${PHP_FPM:-php-fpm8.2}"
NGINX="${NGINX:-nginx}"
for cmd in "$PHP_FPM" "$NGINX" curl php useradd userdel; do
    command -v "$cmd" >/dev/null || { echo "FAIL fpm-pools: $cmd not found (make deps)"; echo "fpm-pools: 0 passed, 1 failed"; exit 1; }
done
if [ "$(id -u)" != 0 ]; then
    echo "FAIL fpm-pools: needs root (it creates two system users and runs FPM pools under them)"
    echo "fpm-pools: 0 passed, 1 failed"
    exit 1
fi

# shellcheck source=lib.sh
. "$here/lib.sh"

tmp="$(mktemp -d /tmp/peakcache-fpm-pools.XXXXXX)"
fpm_pid=""
nginx_pid=""
passed=0
failed=0
# Per run, so that two runs at once (two worktrees) never share a user.
user_a="pc-e2e-a-$$"
user_b="pc-e2e-b-$$"
uid_a=""
uid_b=""

cleanup() {
    stop "$nginx_pid"
    stop "$fpm_pid"
    # Only the region files of this run's users: their uids may be given to someone else later.
    [ -n "$uid_a" ] && rm -f /dev/shm/peakcache-php-"$uid_a"-*
    [ -n "$uid_b" ] && rm -f /dev/shm/peakcache-php-"$uid_b"-*
    id "$user_a" >/dev/null 2>&1 && userdel "$user_a"
    id "$user_b" >/dev/null 2>&1 && userdel "$user_b"
    if [ "$failed" -gt 0 ]; then
        echo "fpm-pools: logs kept in $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP # through cleanup: no user or region file is left behind

useradd --system --no-create-home --user-group --shell /usr/sbin/nologin "$user_a" || exit 1
useradd --system --no-create-home --user-group --shell /usr/sbin/nologin "$user_b" || exit 1
uid_a="$(id -u "$user_a")"
uid_b="$(id -u "$user_b")"
# Bytes other than [A-Za-z0-9._-] become '_'; a name is kept to 64 bytes; either way a hash of
# the whole name follows.
pool_b="e2e b/site-$(printf 'y%.0s' $(seq 70))"
pool_b_file="$(printf '%s' "$pool_b" | tr ' /' '__' | cut -c1-64)"
# FPM writes "php-fpm: pool NAME" over the master's argv and environ strings (the master runs
# with an empty environment below): this name does not fit.
pool_e="e2e-e-$(printf 'x%.0s' $(seq 400))"
region_a="/dev/shm/peakcache-php-$uid_a-e2e-a"
region_d="/dev/shm/peakcache-php-$uid_a-e2e-d"

# The workers read the script and write their compute logs as their pool's user.
chmod 755 "$tmp"
cp "$here/app.php" "$tmp/app.php"
chmod 644 "$tmp/app.php"
for p in a b c d e f; do mkdir -p "$tmp/$p"; done
chown "$user_a" "$tmp/a" "$tmp/d" "$tmp/e" "$tmp/f"
chown "$user_b" "$tmp/b" "$tmp/c"

# User B plants pool d's default region file before FPM starts: a file anyone may write.
rm -f "$region_d"
: >"$region_d"
chown "$user_b:$user_b" "$region_d"
chmod 666 "$region_d"

port="$(free_port)"
locations=""
for p in a b c d e f; do
    locations="$locations
        location /$p/ {
            fastcgi_pass unix:$tmp/$p.sock;
            fastcgi_param SCRIPT_FILENAME $tmp/app.php;
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param REQUEST_URI \$request_uri;
            fastcgi_read_timeout 20s;
        }"
done
nginx_conf "$tmp" "$port" "$locations"

write_fpm_conf() { # write_fpm_conf USER_OF_POOL_A [WORKERS_OF_POOL_F]
    pool() { # pool NAME DIR USER WORKERS [EXTRA]
        cat <<CONF
[$1]
user = $3
group = $3
listen = $tmp/$2.sock
listen.backlog = 256
pm = static
pm.max_children = $4
request_terminate_timeout = 20s
catch_workers_output = yes
env[PEAKCACHE_E2E_DIR] = $tmp/$2
${5:-}
CONF
    }
    {
        printf '[global]\npid = %s\nerror_log = %s\ndaemonize = no\n' "$tmp/fpm.pid" "$tmp/fpm.log"
        pool e2e-a a "$1" 4
        pool "$pool_b" b "$user_b" 4
        pool e2e-c c "$user_b" 1 "php_admin_value[peakcache.shm_path] = $region_a"
        pool e2e-d d "$user_a" 1
        pool "$pool_e" e "$user_a" 1
        [ -n "${2:-}" ] && pool e2e-f f "$user_a" "$2"
    } >"$tmp/fpm.conf"
}

url() { echo "http://127.0.0.1:$port/$1/?$2"; }
get() { curl -sS --max-time 10 "$(url "$1" "$2")"; }

wait_ready() { # wait_ready POOL
    local i
    for i in $(seq 100); do
        curl -fsS --max-time 2 -o /dev/null "$(url "$1" op=stats)" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "fpm-pools: pool $1 not answering:"; cat "$tmp/nginx/error.log" "$tmp/fpm.log" 2>/dev/null
    return 1
}

# Pool a answers first, so its workers create its region before pool c asks for that file.
pools="a b c d e"
wait_pools() {
    local p
    for p in $pools; do wait_ready "$p" || exit 1; done
}

reload_fpm() { # SIGUSR2, then wait for the master to say it is ready again
    local before i
    before=$(grep -c 'ready to handle connections' "$tmp/fpm.log")
    kill -USR2 "$fpm_pid"
    for i in $(seq 100); do
        [ "$(grep -c 'ready to handle connections' "$tmp/fpm.log")" -gt "$before" ] && break
        sleep 0.1
    done
    wait_pools
}

owner_mode() { stat -c '%U %a' "$1" 2>/dev/null || echo missing; }

write_fpm_conf "$user_a"
fpm_bin="$(command -v "$PHP_FPM")"
"$NGINX" -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx.conf" >>"$tmp/nginx.out" 2>&1 &
nginx_pid=$!
env -i "$fpm_bin" -n -F -R -y "$tmp/fpm.conf" -d "extension=$so" -d peakcache.shared=1 -d peakcache.size=16M \
    >>"$tmp/fpm.out" 2>&1 &
fpm_pid=$!
wait_pools

# 1. One region per pool, named after the pool and its user, created 0600 by that user.
ra=$(get a op=region)
rb=$(get b op=region)
[ "$ra" = "'$region_a'" ] && [ "$(owner_mode "$region_a")" = "$user_a 600" ]
check "pool a: its own region, named after the pool and its user, 0600" $? "region() = $ra, $(owner_mode "$region_a")"
rb_path=${rb//\'/}
case "$rb_path" in
    /dev/shm/peakcache-php-"$uid_b"-"$pool_b_file"-????????????????) named=0 ;;
    *) named=1 ;;
esac
[ "$named" = 0 ] && [ "$(owner_mode "$rb_path")" = "$user_b 600" ]
check "pool b (\"e2e b/site-yyy...\", 81 bytes): its own region, the name escaped and cut for a file name, 0600" $? "region() = $rb, $(owner_mode "$rb_path")"

# 2. What a sets, b does not see; what b sets under the same key, a never reads.
get a 'op=set&key=k&value=from-a' >/dev/null
b_sees=$(get b 'op=get&key=k')
get b 'op=set&key=k&value=planted-by-b' >/dev/null
a_reads=""
for i in $(seq 8); do a_reads="$a_reads $(get a 'op=get&key=k')"; done
[ "$b_sees" = "NULL" ]
check "pool a's set('k') is not visible to pool b" $? "b: get('k') = $b_sees"
[ "$(echo "$a_reads" | tr ' ' '\n' | grep -c "^'from-a'$")" = 8 ]
check "pool b cannot plant a value pool a reads (8 reads across a's workers)" $? "a:$a_reads"

# 3. Single flight per pool: 20 concurrent requests to each pool at once, a 300 ms computation.
rm -rf "$tmp/burst"; mkdir -p "$tmp/burst"
for i in $(seq 20); do
    for p in a b; do
        curl -sS --max-time 20 -o "$tmp/burst/$p.$i" "$(url "$p" 'op=remember&key=spring&sleep_ms=300')" &
    done
done
wait_curls
for p in a b; do
    runs=$(grep -c '^spring ' "$tmp/$p/computes.log" 2>/dev/null)
    values=$(cat "$tmp"/burst/"$p".* | sort -u | wc -l)
    answered=$(grep -l '^value of spring computed by ' "$tmp"/burst/"$p".* 2>/dev/null | wc -l)
    [ "$runs" = 1 ] && [ "$values" = 1 ] && [ "$answered" = 20 ]
    check "pool $p: remember() computed once across its 4 workers" $? "20 requests, ${runs:-0} runs, $answered answered with $values distinct value(s)"
done
[ "$(cat "$tmp"/burst/a.1)" != "$(cat "$tmp"/burst/b.1)" ]
check "pools a and b each computed their own value" $? "a: $(cat "$tmp/burst/a.1"); b: $(cat "$tmp/burst/b.1")"

# 4. Pool c (user b) pointed at a's region: refused, logged, still answering from its own cache.
rc=$(get c op=region)
c_sees=$(get c 'op=get&key=k')
get c 'op=set&key=mine&value=kept' >/dev/null
c_own=$(get c 'op=get&key=mine')
[ "$rc" = "NULL" ] && [ "$c_sees" = "NULL" ] && [ "$c_own" = "'kept'" ]
check "pool c refused pool a's region (another user's), serves from a cache of its own" $? "region() = $rc, get('k') = $c_sees, own set/get = $c_own"
grep -q "peakcache: the shared memory region $region_a cannot be used" "$tmp/fpm.log"
check "pool c: the refusal is in the log, naming the region" $? "$(grep -m1 -o "peakcache: the shared memory region $region_a[^\"]*" "$tmp/fpm.log" || echo 'no such line in fpm.log')"

# 5. Pool d: its default region file was planted by user b, world-writable: refused.
rd=$(get d op=region)
[ "$rd" = "NULL" ] && grep -q "peakcache: the shared memory region $region_d cannot be used" "$tmp/fpm.log"
check "pool d refused the region file user b planted at its default path (0666)" $? "region() = $rd; $(grep -m1 -o "peakcache: the shared memory region $region_d[^\"]*" "$tmp/fpm.log" || echo 'no refusal in fpm.log')"

# 6. Pool e's name was cut in its title: no default region (a cut name may be another pool's).
re=$(get e op=region)
e_own=$(get e 'op=set&key=k&value=e'; get e 'op=get&key=k')
[ "$re" = "NULL" ] && [ "$e_own" = "true'e'" ] && grep -q "peakcache: this PHP-FPM worker cannot learn its pool's name (its process title .* is cut short" "$tmp/fpm.log"
check "pool e, its name cut in the process title: no default region, logged, a cache of its own" $? "region() = $re, set/get = $e_own"

# 7. A reload (SIGUSR2) keeps pool a's region and entries: new workers attach to the same file.
reload_fpm
after_reload=$(get a 'op=get&key=k')
[ "$after_reload" = "'from-a'" ] && [ "$(get a op=region)" = "'$region_a'" ]
check "after a reload pool a attaches to its region again, entries kept" $? "get('k') = $after_reload"

# 8. Pool a's user changes (to b): a new region under the new user, the old one out of reach.
write_fpm_conf "$user_b"
reload_fpm
ra2=$(get a op=region)
a_after=$(get a 'op=get&key=k')
[ "$ra2" = "'/dev/shm/peakcache-php-$uid_b-e2e-a'" ] && [ "$a_after" = "NULL" ]
check "pool a under a new user: a new region, the old user's entries not seen" $? "region() = $ra2, get('k') = $a_after"

# 9. Many workers learning their pool at once: pool f, 30 workers fresh from a reload, 60
#    concurrent first requests, 10 times. (Asking FPM's scoreboard, fpm_get_status(), crashed
#    about one round in ten here: php-src GH-16432, GH-19974.)
write_fpm_conf "$user_b" 30
pools="a b c d e f"
for round in $(seq 10); do
    reload_fpm
    for i in $(seq 60); do
        curl -sS --max-time 20 -o /dev/null "$(url f "op=remember&key=round$round&sleep_ms=50")" &
    done
    wait_curls
done
once=$(sort "$tmp/f/computes.log" | awk '{print $1}' | uniq -c | awk '$1 == 1' | wc -l)
crashed=$(grep -c -i 'segfault\|SIGSEGV\|SIGBUS\|exited on signal' "$tmp/fpm.log")
[ "$crashed" = 0 ] && [ "$once" = 10 ]
check "pool f: 10 reloads, 60 concurrent first requests to 30 fresh workers each: computed once a round; no worker of any pool crashed in the whole run" $? "$once of 10 rounds computed once, $crashed crash lines in fpm.log"

echo "fpm-pools: $passed passed, $failed failed"
[ "$failed" = 0 ]
