#!/usr/bin/env bash
# Builds nginx itself and the module under AddressSanitizer into target/nginx-asan (a separate
# tree: the installed nginx cannot load an ASan module), then, unless --build-only, runs the
# end-to-end tests with them:
#
#     NGINX_FULL_SRC=/path/to/nginx-1.22.1 bindings/nginx/build-asan.sh [--build-only] [run.py args]
#
# Debian's nginx-dev ships nginx's headers only, so this needs full sources of the same version
# as the installed nginx: an upstream tarball, `apt-get source nginx`, or the nginx repository's
# release tag (whose configure is auto/configure). Default: target/nginx-asan/nginx-<version>.
#
# nginx is configured with NGX_DEBUG_PALLOC, so every pool allocation is its own malloc and ASan
# sees overruns of pool memory too. Reports go to target/nginx-asan/asan.<pid> (one per process);
# the script prints them and fails when there is any. Leak checking is off (nginx does not free
# its cycle at exit, so LeakSanitizer reports nginx's own allocations), and so is the ODR check
# (every dynamic module defines its own ngx_module_names, as nginx does).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=$root/target/nginx-asan
version=$(/usr/sbin/nginx -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
src=${NGINX_FULL_SRC:-$out/nginx-$version}
work=$out/nginx-src

if [ ! -f "$src/src/core/nginx.c" ]; then
    echo "build-asan.sh: no nginx $version sources in $src (set NGINX_FULL_SRC)" >&2
    exit 1
fi

build_only=0
if [ "${1:-}" = "--build-only" ]; then
    build_only=1
    shift
fi

if [ ! -f "$root/target/release/libpeakcache.a" ] && [ -z "${PEAKCACHE_LIB:-}" ]; then
    echo "build-asan.sh: target/release/libpeakcache.a missing: run \`make ffi\` first" >&2
    exit 1
fi

mkdir -p "$out"
flags="-g -O1 -fno-omit-frame-pointer -fsanitize=address -DNGX_DEBUG_PALLOC=1"
stamp="$out/configured"
want="$src $flags $(cat "$root/bindings/nginx/config")"
if [ ! -f "$work/objs/Makefile" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    rm -rf "$work"
    cp -a "$src" "$work"
    # only what the tests use: proxy, access, the module (dynamic, as it ships)
    [ -f "$work/configure" ] || cp "$work/auto/configure" "$work/configure"
    (cd "$work" && ./configure --prefix="$out" --with-compat --with-debug --with-threads \
        --without-http_rewrite_module --without-http_gzip_module \
        --with-cc-opt="$flags" --with-ld-opt="-fsanitize=address" \
        --add-dynamic-module="$root/bindings/nginx" >"$out/configure.log" 2>&1) || {
        tail -30 "$out/configure.log" >&2
        exit 1
    }
    printf '%s' "$want" >"$stamp"
fi

rm -f "$work/objs/ngx_http_peakcache_module.so"
make -C "$work" -f objs/Makefile -j"$(nproc)" build >"$out/make.log" 2>&1 || {
    grep -E "error" "$out/make.log" | head -40 >&2
    tail -20 "$out/make.log" >&2
    exit 1
}
echo "built $work/objs/nginx and ngx_http_peakcache_module.so (ASan)"
[ "$build_only" = 1 ] && exit 0

rm -f "$out"/asan.*
rc=0
ASAN_OPTIONS="detect_leaks=0:detect_odr_violation=0:abort_on_error=0:log_path=$out/asan" \
    NGINX="$work/objs/nginx" PEAKCACHE_MODULE="$work/objs/ngx_http_peakcache_module.so" \
    python3 "$root/bindings/nginx/t/run.py" "$@" || rc=$?
if ls "$out"/asan.* >/dev/null 2>&1; then
    echo "AddressSanitizer reports:" >&2
    cat "$out"/asan.* >&2
    exit 1
fi
echo "no AddressSanitizer report"
exit $rc
