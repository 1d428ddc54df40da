#!/usr/bin/env bash
# Builds the PHP extension (bindings/php) against the installed PHP (phpize, php-config:
# Debian php8.2-dev) and libpeakcache.a, out of tree in target/php-ext/, so phpize's many
# generated files stay out of the repository. Result: target/php-ext/modules/peakcache.so.
# Usage: bindings/php/build.sh [--no-ffi]   (--no-ffi: do not run `make ffi` first)
# Env: PHPIZE (default phpize), PHP_CONFIG (default php-config), CFLAGS (added), MAKE,
#      PEAKCACHE_DIR (a peakcache tree with include/peakcache.h and target/release/libpeakcache.a
#      to build against instead of this repository's; implies --no-ffi).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PHPIZE="${PHPIZE:-phpize}"
PHP_CONFIG="${PHP_CONFIG:-php-config}"
MAKE="${MAKE:-make}"
build="$root/target/php-ext"

if [ -n "${PEAKCACHE_DIR:-}" ]; then
    include_dir="$PEAKCACHE_DIR/include"
    lib_dir="$PEAKCACHE_DIR/target/release"
else
    if [ "${1:-}" != "--no-ffi" ]; then
        (cd "$root" && $MAKE --no-print-directory ffi >"${TMPDIR:-/tmp}/peakcache-ffi-build.log" 2>&1) || {
            cat "${TMPDIR:-/tmp}/peakcache-ffi-build.log" >&2
            exit 1
        }
    fi
    include_dir="$root/include"
    # Where `make ffi` left it: Cargo's target directory (CARGO_TARGET_DIR's, if set).
    lib_dir="$(cd "$root" && ${CARGO:-cargo} metadata --format-version 1 --no-deps |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"
fi
[ -r "$lib_dir/libpeakcache.a" ] || { echo "build.sh: $lib_dir/libpeakcache.a missing (make ffi)" >&2; exit 1; }

mkdir -p "$build"
# Sources by copy (mtimes kept, so the generated arginfo stays newer than its stub and phpize's
# Makefile does not try to regenerate it).
cp -p "$here/config.m4" "$here/peakcache.c" "$here/php_peakcache.h" "$here/peakcache.stub.php" \
    "$here/peakcache_arginfo.h" "$build/"
rm -rf "$build/tests"
cp -rp "$here/tests" "$build/tests"

cd "$build"
# The library directory the configure script looks in: the repository's, or CARGO_TARGET_DIR's.
peak_dir="$build/peakcache-root"
mkdir -p "$peak_dir/target"
ln -sfn "$include_dir" "$peak_dir/include"
ln -sfn "$lib_dir" "$peak_dir/target/release"
if [ ! -f Makefile ] || [ config.m4 -nt Makefile ] || [ ! -x configure ]; then
    "$PHPIZE" --clean >/dev/null 2>&1 || true
    "$PHPIZE" >/dev/null 2>&1
    ./configure --with-php-config="$PHP_CONFIG" --enable-peakcache --with-peakcache-dir="$peak_dir" \
        CFLAGS="-O2 -g -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers ${CFLAGS:-}" >configure.out
fi
# Relink when the library changed.
# Rebuild when the library or its header changed (make only tracks our own sources).
stamp="$(stat -c '%Y %s' "$lib_dir/libpeakcache.a" "$include_dir/peakcache.h" | tr '\n' ' ')$include_dir"
if [ "$(cat .peakcache-stamp 2>/dev/null)" != "$stamp" ]; then
    rm -f peakcache.lo peakcache.la modules/peakcache.so .libs/peakcache.*
    echo "$stamp" >.peakcache-stamp
fi
$MAKE -j"$(nproc)" >make.out 2>&1 || { cat make.out; exit 1; }
grep -E 'warning|error' make.out | grep -v 'libtool: warning\|Linking the shared library\|static library' || true
echo "build.sh: $build/modules/peakcache.so"
