#!/usr/bin/env bash
# Regenerates peakcache_arginfo.h from peakcache.stub.php with php-src's own gen_stub.php, as
# php-src does. php8.2-dev ships gen_stub.php under /usr/lib/php/<api>/build/; it wants
# nikic/PHP-Parser beside it and downloads it when missing, so this runs it from a temp copy
# that points at Debian's php-parser package (/usr/share/php/PhpParser) instead: no network.
# Usage: gen-arginfo.sh [--check]   (--check: fail if the committed header is out of date)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PHP="${PHP:-php}"
gen_stub="$(ls /usr/lib/php/*/build/gen_stub.php 2>/dev/null | head -1)"
[ -n "$gen_stub" ] || { echo "gen-arginfo: gen_stub.php not found (Debian package php8.2-dev)" >&2; exit 1; }
[ -d /usr/share/php/PhpParser ] || { echo "gen-arginfo: PHP-Parser not found (Debian package php-parser)" >&2; exit 1; }
version="$(sed -n 's/.*\$version = "\([0-9.]*\)";.*/\1/p' "$gen_stub" | head -1)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$gen_stub" "$tmp/gen_stub.php"
mkdir -p "$tmp/PHP-Parser-$version/lib"
ln -s /usr/share/php/PhpParser "$tmp/PHP-Parser-$version/lib/PhpParser"
cp "$here/peakcache.stub.php" "$tmp/"
"$PHP" "$tmp/gen_stub.php" --force-regeneration "$tmp/peakcache.stub.php"
if [ "${1:-}" = "--check" ]; then
    # The hash line names the stub's hash; the rest must match byte for byte.
    if ! diff -u "$here/peakcache_arginfo.h" "$tmp/peakcache_arginfo.h"; then
        echo "gen-arginfo: peakcache_arginfo.h is out of date; run bindings/php/gen-arginfo.sh" >&2
        exit 1
    fi
    echo "gen-arginfo: peakcache_arginfo.h is up to date"
else
    cp "$tmp/peakcache_arginfo.h" "$here/peakcache_arginfo.h"
    echo "gen-arginfo: wrote $here/peakcache_arginfo.h"
fi
