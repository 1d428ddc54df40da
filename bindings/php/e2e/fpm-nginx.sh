#!/usr/bin/env bash
# End-to-end test of the extension in a real PHP-FPM pool behind nginx, on loopback only.
# Configs are generated into a temp dir; nginx and php-fpm run as the current user on a free port
# and a unix socket (no system service is touched), and are stopped on exit, whatever happens.
#
# By default each FPM worker has its own pool, so single flight is per process: with N workers,
# concurrent requests for one key run $compute at most N times (at most once per worker, and each
# response carries the value its own worker computed). With one worker, FPM queues the
# concurrent requests and $compute runs exactly once. With peakcache.shared=1 the pool is one
# shared memory region (opened by each worker at its first request, the first one creating it):
# with N workers $compute runs exactly once for a concurrent burst, and no request waits longer
# than the computation plus a small margin. (Two pools under two users: fpm-pools.sh.)
# A stale value is served at once and refreshed after the response (fastcgi_finish_request):
# the stale response comes back well before the slow refresh finishes.
#
# Usage: fpm-nginx.sh EXTENSION_SO. Prints one line per check and "fpm-e2e: N passed, M failed".
# Env: PHP_FPM (default php-fpm8.2), NGINX (default nginx).
set -uo pipefail

so="${1:?usage: fpm-nginx.sh path/to/peakcache.so}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PHP_FPM="${PHP_FPM:-php-fpm8.2}"
NGINX="${NGINX:-nginx}"
for cmd in "$PHP_FPM" "$NGINX" curl php; do
    command -v "$cmd" >/dev/null || { echo "fpm-e2e: $cmd not found (make deps)"; echo "fpm-e2e: 0 passed, 1 failed"; exit 1; }
done

# shellcheck source=lib.sh
. "$here/lib.sh"

tmp="$(mktemp -d /tmp/peakcache-fpm-e2e.XXXXXX)"
export PEAKCACHE_E2E_DIR="$tmp"
fpm_pid=""
nginx_pid=""
passed=0
failed=0

cleanup() {
    stop "$nginx_pid"
    stop "$fpm_pid"
    if [ "$failed" -gt 0 ]; then
        echo "fpm-e2e: logs kept in $tmp"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT

port="$(free_port)"
run_as_root=""
fpm_user=""
if [ "$(id -u)" = 0 ]; then
    run_as_root="-R"
    fpm_user="user = root
group = root"
fi

cp "$here/app.php" "$tmp/app.php"
nginx_conf "$tmp" "$port" "        location / {
            fastcgi_pass unix:$tmp/fpm.sock;
            fastcgi_param SCRIPT_FILENAME $tmp/app.php;
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param REQUEST_URI \$request_uri;
            fastcgi_read_timeout 20s;
        }"

start_fpm() { # start_fpm WORKERS [-d SETTING...]
    local n="$1"
    shift
    stop "$fpm_pid"
    rm -f "$tmp/computes.log" "$tmp/fpm.sock"
    cat >"$tmp/fpm.conf" <<CONF
[global]
pid = $tmp/fpm.pid
error_log = $tmp/fpm.log
daemonize = no
[app]
$fpm_user
listen = $tmp/fpm.sock
listen.backlog = 256
pm = static
pm.max_children = $n
request_terminate_timeout = 20s
clear_env = no
catch_workers_output = yes
CONF
    "$PHP_FPM" -n -F $run_as_root -y "$tmp/fpm.conf" -d "extension=$so" -d peakcache.size=16M "$@" \
        >>"$tmp/fpm.out" 2>&1 &
    fpm_pid=$!
    local i
    for i in $(seq 100); do [ -S "$tmp/fpm.sock" ] && return 0; sleep 0.1; done
    echo "fpm-e2e: php-fpm did not start:"; cat "$tmp/fpm.log" "$tmp/fpm.out" 2>/dev/null
    return 1
}

url() { echo "http://127.0.0.1:$port/?$1"; }

wait_ready() {
    local i
    for i in $(seq 100); do
        curl -fsS --max-time 2 "$(url op=stats)" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "fpm-e2e: nginx/php-fpm not answering:"; cat "$tmp/nginx/error.log" "$tmp/fpm.log" 2>/dev/null
    return 1
}

# burst N QUERY: N concurrent requests; each response body and X-Worker in $tmp/burst/N.{body,hdr}
burst() {
    local n="$1" q="$2" i
    rm -rf "$tmp/burst"; mkdir -p "$tmp/burst"
    for i in $(seq "$n"); do
        curl -sS --max-time 20 -D "$tmp/burst/$i.hdr" -o "$tmp/burst/$i.body" \
            -w '%{time_total}' "$(url "$q")" >"$tmp/burst/$i.time" &
    done
    wait_curls
}

"$NGINX" -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx.conf" >>"$tmp/nginx.out" 2>&1 &
nginx_pid=$!

# 1. Four workers, 40 concurrent requests for one key, a 300 ms computation.
workers=4
start_fpm $workers && wait_ready || exit 1
burst 40 "op=remember&key=spring&sleep_ms=300"
computes=$(grep -c '^spring ' "$tmp/computes.log" 2>/dev/null || echo 0)
distinct=$(awk '/^spring /{print $2}' "$tmp/computes.log" | sort -u | wc -l)
ok_bodies=$(grep -l '^value of spring computed by ' "$tmp"/burst/*.body 2>/dev/null | wc -l)
mismatch=0
for i in $(seq 40); do
    w=$(sed -n 's/^X-Worker: *\([0-9]*\).*/\1/Ip' "$tmp/burst/$i.hdr" | tr -d '\r')
    grep -q "computed by $w at " "$tmp/burst/$i.body" || mismatch=$((mismatch + 1))
done
[ "$computes" -ge 1 ] && [ "$computes" -le "$workers" ] && [ "$computes" = "$distinct" ]
check "N=$workers workers: \$compute ran at most once per worker" $? "40 requests, $computes runs in $distinct workers, at most $workers"
[ "$ok_bodies" = 40 ] && [ "$mismatch" = 0 ]
check "N=$workers workers: every response is its own worker's value" $? "$ok_bodies/40 answered, $mismatch from another worker"

# 2. One worker: FPM queues the concurrent requests; $compute runs exactly once.
start_fpm 1 && wait_ready || exit 1
burst 20 "op=remember&key=summer&sleep_ms=300"
computes=$(grep -c '^summer ' "$tmp/computes.log" 2>/dev/null || echo 0)
values=$(cat "$tmp"/burst/*.body | sort -u | wc -l)
answered=$(grep -l '^value of summer computed by ' "$tmp"/burst/*.body 2>/dev/null | wc -l)
[ "$computes" = 1 ] && [ "$values" = 1 ] && [ "$answered" = 20 ]
check "N=1 worker: \$compute ran exactly once" $? "20 concurrent requests, $computes runs, $answered answered with $values distinct value(s)"

# 3. Stale-while-revalidate under FPM: the stale value comes back at once, the refresh (2 s)
#    runs after the response was finished (fastcgi_finish_request), then the new value is served.
curl -fsS --max-time 5 -o /dev/null "$(url 'op=purge-soft&key=summer')"
t=$(curl -sS --max-time 10 -o "$tmp/stale.body" -w '%{time_total}' "$(url 'op=remember&key=summer&sleep_ms=2000')")
stale_ok=$(grep -c '^value of summer' "$tmp/stale.body")
fast=$(php -r "echo $t < 1.0 ? 1 : 0;")
[ "$stale_ok" = 1 ] && [ "$fast" = 1 ]
check "stale value served before the refresh ran" $? "answered in ${t}s while the refresh takes 2 s"
for i in $(seq 60); do
    [ "$(grep -c '^summer ' "$tmp/computes.log")" -ge 2 ] && break
    sleep 0.1
done
after=$(curl -sS --max-time 10 "$(url 'op=get&key=summer')")
refreshes=$(grep -c '^summer ' "$tmp/computes.log")
stale_value="'$(cat "$tmp/stale.body")'"
[ "$refreshes" = 2 ] && [ "$after" != "NULL" ] && [ "$after" != "$stale_value" ]
check "the refresh ran once, after the response, and stored the new value" $? "computes=$refreshes; served stale $stale_value, then get() = $after"

# 4. The shared tier: four workers, one region; 40 concurrent requests for one key, a 300 ms
#    computation: $compute runs once across all workers, every response carries that value, and
#    no request takes longer than the computation plus a margin (waiters wake on the commit).
start_fpm $workers -d peakcache.shared=1 -d "peakcache.shm_path=$tmp/region.shm" && wait_ready || exit 1
burst 40 "op=remember&key=autumn&sleep_ms=300"
computes=$(grep -c '^autumn ' "$tmp/computes.log" 2>/dev/null || echo 0)
values=$(cat "$tmp"/burst/*.body | sort -u | wc -l)
answered=$(grep -l '^value of autumn computed by ' "$tmp"/burst/*.body 2>/dev/null | wc -l)
workers_seen=$(sed -n 's/^X-Worker: *\([0-9]*\).*/\1/Ip' "$tmp"/burst/*.hdr | tr -d '\r' | sort -u | wc -l)
slowest=$(for f in "$tmp"/burst/*.time; do cat "$f"; echo; done | sort -n | tail -1)
margin_ok=$(php -r "echo $slowest < 0.3 + 0.7 ? 1 : 0;")
[ "$computes" = 1 ] && [ "$values" = 1 ] && [ "$answered" = 40 ]
check "shared tier, N=$workers workers: \$compute ran exactly once across all workers" $? "40 requests served by $workers_seen workers, $computes runs, $answered answered with $values distinct value(s)"
[ "$margin_ok" = 1 ]
check "shared tier: no request waited past the computation + 0.7 s" $? "slowest ${slowest}s for a 0.3 s computation"
# A value stored by one worker is seen by every other.
stats=$(curl -sS --max-time 5 "$(url op=stats)")
fills=$(php -r '$s = json_decode($argv[1], true); echo $s["fills_committed"] ?? -1;' "$stats")
[ "$fills" = 1 ]
check "shared tier: stats are the region's (one fill committed across workers)" $? "fills_committed=$fills"

grep -q -i 'segfault\|SIGSEGV\|exited on signal' "$tmp/fpm.log" && { check "no worker crashed" 1 "see $tmp/fpm.log"; }

echo "fpm-e2e: $passed passed, $failed failed"
[ "$failed" = 0 ]
