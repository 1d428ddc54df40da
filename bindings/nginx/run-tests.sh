#!/usr/bin/env bash
# `make test-nginx`: builds the module if needed, then runs the end-to-end tests (t/run.py).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
[ -f "$root/target/nginx/ngx_http_peakcache_module.so" ] || "$root/bindings/nginx/build.sh"
exec python3 "$root/bindings/nginx/t/run.py" "$@"
