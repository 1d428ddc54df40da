#!/usr/bin/env bash
# `make test-nginx`: builds the module if needed, then runs the end-to-end tests (t/run.py).
#
#     bindings/nginx/run-tests.sh [--asan] [run.py args]
#
# --asan (`make test-nginx-asan-module`): the same tests with the module built under
# AddressSanitizer (build.sh --asan), loaded by the installed nginx with the ASan runtime
# preloaded. Reports go to target/nginx-asan-module/asan.<pid>; any report fails the run.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${1:-}" = "--asan" ]; then
    shift
    out=$root/target/nginx-asan-module
    "$root/bindings/nginx/build.sh" --asan
    rm -f "$out"/asan.*
    status=0
    # leaks: nginx does not free its cycle at exit; ODR: each dynamic module defines its own
    # ngx_module_names, as nginx does
    PEAKCACHE_MODULE=$out/ngx_http_peakcache_module.so \
        PEAKCACHE_NGINX_PRELOAD=$(${CC:-gcc} -print-file-name=libasan.so) \
        ASAN_OPTIONS=detect_leaks=0:detect_odr_violation=0:log_path=$out/asan \
        python3 "$root/bindings/nginx/t/run.py" "$@" || status=$?
    if compgen -G "$out/asan.*" >/dev/null; then
        cat "$out"/asan.* >&2
        echo "run-tests.sh: AddressSanitizer reports above" >&2
        exit 1
    fi
    exit $status
fi
[ -f "$root/target/nginx/ngx_http_peakcache_module.so" ] || "$root/bindings/nginx/build.sh"
exec python3 "$root/bindings/nginx/t/run.py" "$@"
