#!/usr/bin/env bash
# Runs the public HTTP caching test suite (https://github.com/http-tests/cache-tests, results at
# https://cache-tests.fyi) through peakcache-proxy and through nginx with the peakcache module,
# and prints a summary for each.
#
#   tests/cache-tests.sh                  both hosts; JSON to target/cache-tests/<host>/
#   tests/cache-tests.sh --host proxy     one host (proxy or nginx)
#   tests/cache-tests.sh -i ID            one test, with the requests and responses it saw
#   tests/cache-tests.sh -l               also list every test that did not pass
#
# Both hosts run with their defaults, as the READMEs configure them (nginx: the default zone,
# `peakcache` in the location, `proxy_pass` to the suite's server). PROXY_ARGS adds options to
# the proxy, e.g. PROXY_ARGS="--stale-if-error-grace 60s"; NGINX_LOCATION adds directives to
# nginx's location, e.g. NGINX_LOCATION="peakcache_honour_request_directives on;".
#
# The suite is not part of this repository. Get it once with
#   git clone https://github.com/http-tests/cache-tests /tmp/cache-tests && (cd /tmp/cache-tests && npm i)
# or point CACHE_TESTS_DIR at a copy. Needs Node (>= 18) and python3.
#
# The suite's server is the origin; the proxy sits in front of it; the suite's CLI sends every
# test's requests (and the PUTs that configure the origin) through the proxy. Everything listens
# on free loopback ports and is stopped on exit.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
suite="${CACHE_TESTS_DIR:-/tmp/cache-tests}"
cargo="${CARGO:-cargo}"
out="$root/target/cache-tests"

one_id=""
list_failures=""
hosts="proxy nginx"
while [ $# -gt 0 ]; do
  case "$1" in
    -i) one_id="${2:?-i needs a test id}"; shift 2 ;;
    -l) list_failures="--list-failures"; shift ;;
    --host) hosts="${2:?--host needs proxy or nginx}"; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "cache-tests.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ ! -f "$suite/tests/index.mjs" ] || [ ! -f "$suite/test-engine/cli.mjs" ]; then
  echo "cache-tests: skipped: cache-tests not found in $suite (set CACHE_TESTS_DIR); see the header of tests/cache-tests.sh"
  exit 0
fi
for cmd in node npm python3 curl; do
  command -v "$cmd" >/dev/null || { echo "cache-tests: needs $cmd" >&2; exit 1; }
done
if [ ! -d "$suite/node_modules" ]; then
  echo "cache-tests: installing the suite's dependencies (npm i)" >&2
  (cd "$suite" && npm i --no-audit --no-fund >/dev/null)
fi

mkdir -p "$out"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for() { # name url log
  for _ in $(seq 1 100); do
    if curl -s -o /dev/null --max-time 1 "$2"; then return 0; fi
    sleep 0.1
  done
  echo "cache-tests: $1 did not answer at $2; its log:" >&2
  cat "$3" >&2
  exit 1
}

# The suite's server listens on every interface; this preload makes a bare `listen(port)` bind
# to loopback only.
cat >"$work/loopback.mjs" <<'EOF'
import net from 'node:net'
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    if (typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1')
  }
  return listen.apply(this, args)
}
EOF

origin_port="$(free_port)"
(cd "$suite" && exec env npm_config_port="$origin_port" npm_config_protocol=http \
  npm_config_pidfile="$work/server.pid" \
  node --import "file://$work/loopback.mjs" test-engine/server/server.mjs) >"$work/server.log" 2>&1 &
pids+=($!)
wait_for "the suite's server" "http://127.0.0.1:$origin_port/" "$work/server.log"

case " $hosts " in *" nginx "*)
  module="$root/target/nginx/ngx_http_peakcache_module.so"
  [ -f "$module" ] || { echo "cache-tests: $module missing: run make nginx-module" >&2; exit 1; } ;;
esac
case " $hosts " in *" proxy "*)
  echo "cache-tests: building peakcache-proxy" >&2
  (cd "$root" && "$cargo" build --release -q -p peakcache-proxy) ;;
esac

# Starts one host in front of the suite's server and sets `base` to its URL (not run in a
# subshell: `pids` must keep the host's pid for the cleanup).
start_proxy() {
  local port
  port="$(free_port)"
  "${PEAKCACHE_PROXY:-$root/target/release/peakcache-proxy}" --listen "127.0.0.1:$port" \
    --origin "http://127.0.0.1:$origin_port" --size 64MiB ${PROXY_ARGS:-} >"$work/proxy.log" 2>&1 &
  pids+=($!)
  wait_for "peakcache-proxy" "http://127.0.0.1:$port/" "$work/proxy.log"
  base="http://127.0.0.1:$port"
}

start_nginx() {
  local port prefix="$work/nginx"
  port="$(free_port)"
  mkdir -p "$prefix"
  local user=""
  [ "$(id -u)" = 0 ] && user="user root root;"
  cat >"$prefix/nginx.conf" <<CONF
load_module $module;
$user
worker_processes auto;
daemon off;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $prefix/body;
    proxy_temp_path $prefix/proxy;
    fastcgi_temp_path $prefix/fastcgi;
    uwsgi_temp_path $prefix/uwsgi;
    scgi_temp_path $prefix/scgi;
    peakcache_zone conformance size=64m path=$prefix/conformance.shm;
    server {
        listen 127.0.0.1:$port;
        location / {
            peakcache conformance;
            ${NGINX_LOCATION:-}
            proxy_pass http://127.0.0.1:$origin_port;
        }
    }
}
CONF
  # nginx reads $NGINX itself (inherited listening sockets): never pass one on
  env -u NGINX "${NGINX_BIN:-nginx}" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
    >"$prefix/stdout.log" 2>&1 &
  pids+=($!)
  wait_for "nginx" "http://127.0.0.1:$port/" "$prefix/error.log"
  base="http://127.0.0.1:$port"
}

for host in $hosts; do
  case "$host" in
    proxy) start_proxy ;;
    nginx) start_nginx ;;
    *) echo "cache-tests: unknown host $host (proxy or nginx)" >&2; exit 2 ;;
  esac
  if [ -n "$one_id" ]; then
    echo "== $host" >&2
    (cd "$suite" && npm run --silent cli --base="$base" --id="$one_id")
    continue
  fi
  echo "cache-tests: running the suite through $host at $base (origin on port $origin_port); a few minutes" >&2
  (cd "$suite" && npm run --silent cli --base="$base") >"$work/results.json"
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$work/results.json" || {
    echo "cache-tests: the CLI did not print JSON:" >&2
    head -c 2000 "$work/results.json" >&2
    exit 1
  }
  mkdir -p "$out/$host"
  mv "$work/results.json" "$out/$host/results.json"
  if [ ! -f "$out/definitions.json" ]; then
    # The test definitions (group, id, kind, dependencies) the summary needs.
    (cd "$suite" && node --input-type=module -e '
      const { default: suites } = await import(process.argv[1])
      const pick = ({ id, kind, depends_on, browser_only, cdn_only, browser_skip }) =>
        ({ id, kind, depends_on, browser_only, cdn_only, browser_skip })
      console.log(JSON.stringify(suites.map(s => ({ id: s.id, name: s.name, tests: s.tests.map(pick) }))))
    ' "file://$suite/tests/index.mjs") >"$out/definitions.json"
  fi
  echo "== $host"
  python3 "$here/cache-tests-summary.py" "$out/definitions.json" "$out/$host/results.json" $list_failures
done
