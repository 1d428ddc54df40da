#!/usr/bin/env bash
# Builds ngx_http_peakcache_module.so against the installed nginx's sources (Debian nginx-dev),
# with the configure flags the installed nginx was built with, so `load_module` accepts it.
# Output: target/nginx/ngx_http_peakcache_module.so. Run from anywhere; `make nginx-module`.
#
#     bindings/nginx/build.sh [--asan]
#
# --asan: the module alone under AddressSanitizer, into target/nginx-asan-module; the installed
# nginx loads it when the ASan runtime is preloaded (LD_PRELOAD, see t/run.py), and ASan then
# watches every access of the module's code (the memos, the bells, the pollers).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
src=${NGINX_SRC:-/usr/share/nginx/src}
out=$root/target/nginx
sanitize=""
if [ "${1:-}" = "--asan" ]; then
    out=$root/target/nginx-asan-module
    sanitize=" -fsanitize=address -fno-omit-frame-pointer"
fi
work=$out/build/nginx-src

if [ ! -f "$src/configure" ] || [ ! -f "$src/conf_flags" ]; then
    echo "build.sh: $src/configure not found: install nginx-dev (apt-get install nginx-dev)" >&2
    exit 1
fi
# The library `make ffi` leaves in Cargo's target directory (CARGO_TARGET_DIR's, if set), unless
# PEAKCACHE_LIB names another; the module's config script reads PEAKCACHE_LIB.
if [ -z "${PEAKCACHE_LIB:-}" ]; then
    target_dir=$(cd "$root" && ${CARGO:-cargo} metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    export PEAKCACHE_LIB="$target_dir/release/libpeakcache.a"
fi
if [ ! -f "$PEAKCACHE_LIB" ]; then
    echo "build.sh: $PEAKCACHE_LIB missing: run \`make ffi\` first" >&2
    exit 1
fi

# conf_flags defines NGX_CONF_FLAGS, the installed nginx's configure arguments.
# shellcheck disable=SC1091
. "$src/conf_flags"

# NGINX_LD_OPT: extra linker flags for the module (the Debian package passes dpkg-buildflags').
ld_opt=${NGINX_LD_OPT:-}
# Fortified as Debian builds it (dpkg-buildflags), so what the package build refuses fails here.
cc_opt="-g -O2 -fPIC -Wall -Werror -D_FORTIFY_SOURCE=2$sanitize"
mkdir -p "$out/build"
stamp="$out/build/configured"
want="$(cat "$src/conf_flags" "$root/bindings/nginx/config") $cc_opt${ld_opt:+ $ld_opt} $PEAKCACHE_LIB"
if [ ! -f "$work/objs/Makefile" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    rm -rf "$work"
    cp -a "$src" "$work"
    (cd "$work" && ./configure "${NGX_CONF_FLAGS[@]}" \
        --with-cc-opt="$cc_opt" --with-ld-opt="$ld_opt" \
        --add-dynamic-module="$root/bindings/nginx" >"$out/build/configure.log" 2>&1) || {
        tail -30 "$out/build/configure.log" >&2
        exit 1
    }
    printf '%s' "$want" >"$stamp"
fi

# relinked every time: the static library may have changed
rm -f "$work/objs/ngx_http_peakcache_module.so"
make -C "$work" -f objs/Makefile -j"$(nproc)" modules >"$out/build/make.log" 2>&1 || {
    grep -E "error|warning" "$out/build/make.log" | head -40 >&2
    tail -20 "$out/build/make.log" >&2
    exit 1
}
# a new file renamed into place: a running nginx that loaded the old one keeps its pages
# (copying over it in place makes that nginx's workers crash)
cp "$work/objs/ngx_http_peakcache_module.so" "$out/.ngx_http_peakcache_module.so.new"
mv -f "$out/.ngx_http_peakcache_module.so.new" "$out/ngx_http_peakcache_module.so"
echo "built $out/ngx_http_peakcache_module.so"
