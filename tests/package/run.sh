#!/usr/bin/env bash
# `make test-package`: the packages as a user gets them, on this machine (needs root).
#   1. builds them (packaging/build-debs.sh: dpkg-buildpackage, lintian) unless --no-build;
#   2. the Rust crates: publish dry runs, docs without warnings, examples (crates.sh);
#   3. apt-get install ./target/deb/*.deb (the four packages, not the -dbgsym ones): the
#      module's load_module line linked in /etc/nginx/modules-enabled, the ini linked by phpenmod;
#   4. the system nginx, configured as the README says (tests/package/nginx.conf, including
#      /etc/nginx/modules-enabled/*.conf) in a temporary prefix on a free loopback port, in front
#      of a counting origin (origin.py): a MISS, then a HIT the origin never sees, a purge;
#   5. the system php with the installed ini (remember.php): the packaged version, computes once;
#   6. tests/c/example.c as libpeakcache-dev installs it, built with pkg-config: against
#      libpeakcache.so.0, fully static (--static), and with libpeakcache.a linked in
#      (peakcache-static);
#   7. php8.2-peakcache removed (php -v clean, no peakcache), then bindings/php/package.xml:
#      `pecl package`, `pecl install` of that tarball (the library found by pkg-config, from
#      libpeakcache-dev), remember.php with it, `pecl uninstall`;
#   8. apt-get remove, then purge: nginx -t and php -v still work, no file of the packages is
#      left, /etc/nginx and /etc/php are as they were before the install.
# Packages of an earlier run left installed are purged first; a failing run purges what it
# installed too. Prints one line per check, closes with "package-tests: N passed, M failed".
# Usage: tests/package/run.sh [--no-build] [--no-crates]
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$root/target/deb"
packages="libpeakcache0 libpeakcache-dev libnginx-mod-http-peakcache php8.2-peakcache"
php=php8.2
build=1
crates=1
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        --no-crates) crates=0 ;;
        *) echo "run.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

[ "$(id -u)" = 0 ] || { echo "run.sh: installs packages: run as root"; \
    echo "package-tests: 0 passed, 1 failed"; exit 1; }

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml")"
ma="$(dpkg-architecture -qDEB_HOST_MULTIARCH)"
tmp="$(mktemp -d /tmp/peakcache-package.XXXXXX)"
mkdir -p "$tmp/logs"
passed=0
failed=0
started=$(date +%s)

check() { # check NAME COMMAND...: runs a check, output to logs/NAME.log, tallies it
    local name="$1" t0=$SECONDS
    shift
    if "$@" >"$tmp/logs/$name.log" 2>&1; then
        passed=$((passed + 1))
        printf 'ok   %-44s %3ss\n' "$name" $((SECONDS - t0))
    else
        failed=$((failed + 1))
        printf 'FAIL %s (log: %s)\n' "$name" "$tmp/logs/$name.log"
        sed 's/^/    /' "$tmp/logs/$name.log" | tail -40
    fi
}

installed() { # the packages of ours dpkg knows about (installed or with conffiles left)
    local p
    for p in $packages; do
        dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^[ir]' && echo "$p"
    done
}

purge_ours() {
    local left
    left="$(installed)"
    [ -z "$left" ] || DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $left
}

origin_pid=""
stop_servers() {
    [ -f "$tmp/nginx/nginx.pid" ] && kill -QUIT "$(cat "$tmp/nginx/nginx.pid")" 2>/dev/null
    [ -n "$origin_pid" ] && kill "$origin_pid" 2>/dev/null
    local i
    for i in $(seq 50); do
        [ -f "$tmp/nginx/nginx.pid" ] || break
        sleep 0.1
    done
}

finish() {
    stop_servers
    pecl list 2>/dev/null | grep -qi '^peakcache ' && pecl uninstall peakcache >/dev/null 2>&1
    purge_ours >/dev/null 2>&1
    if [ "$failed" = 0 ]; then rm -rf "$tmp"; fi
}
trap finish EXIT

# What the packages may touch outside their own files: /etc/nginx and /etc/php whole (links,
# conffiles), and anything named after peakcache where the packages install.
snapshot() {
    find /etc/nginx /etc/php -printf '%p %y %l\n' | sort
    find /usr/lib/nginx /usr/share/nginx /usr/lib/php /usr/include /usr/lib/"$ma" /usr/share/doc \
        /usr/share/lintian/overrides /var/lib/dpkg/info /usr/share/php/.registry \
        -name '*peakcache*' -printf '%p\n' 2>/dev/null | sort
}

nginx_ok() { nginx -t; }
php_ok() { # php -v works and says nothing but its version (no warning of a missing module)
    local said
    said="$($php -v 2>&1)" || return 1
    echo "$said"
    ! grep -qi -E 'warning|error' <<<"$said"
}

# --- 1, 2: build -----------------------------------------------------------------------------
if [ "$build" = 1 ]; then
    check build-debs "$root/packaging/build-debs.sh"
fi
if [ "$crates" = 1 ]; then
    check crates "$here/crates.sh"
fi

debs=()
for p in $packages; do
    deb="$(ls "$out/${p}_${version}_"*.deb 2>/dev/null | head -1)"
    [ -n "$deb" ] && debs+=("$deb")
done
if [ "${#debs[@]}" != 4 ]; then
    echo "FAIL packages: ${#debs[@]} of 4 .deb files of version $version in $out (make package)"
    failed=$((failed + 1))
    echo "package-tests: $passed passed, $failed failed"
    exit 1
fi

# --- 3: install --------------------------------------------------------------------------------
check clean-start purge_ours
check nginx-t-before nginx_ok
check php-v-before php_ok
snapshot >"$tmp/before.txt"

apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${debs[@]}"; }
check apt-get-install apt_install

module_enabled() {
    local link=/etc/nginx/modules-enabled/50-mod-http-peakcache.conf
    [ "$(readlink "$link")" = /usr/share/nginx/modules-available/mod-http-peakcache.conf ] &&
        grep -qx 'load_module modules/ngx_http_peakcache_module.so;' "$link"
}
# Every file the packages installed, for the check that the purge leaves none.
dpkg -L $packages 2>/dev/null | sort -u >"$tmp/files.txt"
check nginx-module-enabled module_enabled

ini_enabled() {
    local sapi
    for sapi in cli fpm; do
        [ -d "/etc/php/8.2/$sapi" ] || continue
        [ "$(readlink "/etc/php/8.2/$sapi/conf.d/20-peakcache.ini")" = \
            /etc/php/8.2/mods-available/peakcache.ini ] || return 1
    done
}
check php-ini-enabled ini_enabled
check nginx-t-with-module nginx_ok

soname() { readelf -d "/usr/lib/$ma/libpeakcache.so.$version" | grep -F 'SONAME' | grep -qF '[libpeakcache.so.0]'; }
check libpeakcache-soname soname

# --- 4: nginx ------------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start_origin_and_nginx() {
    mkdir -p "$tmp/nginx"
    python3 "$here/origin.py" "$tmp/origin.port" &
    origin_pid=$!
    local i
    for i in $(seq 50); do
        [ -f "$tmp/origin.port" ] && break
        sleep 0.1
    done
    [ -f "$tmp/origin.port" ] || { echo "origin did not start"; return 1; }
    port="$(free_port)"
    sed -e "s|@TMP@|$tmp/nginx|g" -e "s|@PORT@|$port|" -e "s|@ORIGIN_PORT@|$(cat "$tmp/origin.port")|" \
        "$here/nginx.conf" >"$tmp/nginx/nginx.conf"
    # nginx's own prefix (/usr/share/nginx), where modules/ leads to the installed module
    /usr/sbin/nginx -c "$tmp/nginx/nginx.conf" -e "$tmp/nginx/error.log" || {
        cat "$tmp/nginx/error.log"
        return 1
    }
    for i in $(seq 50); do
        curl -s -o /dev/null "http://127.0.0.1:$port/_peakcache" && return 0
        sleep 0.1
    done
    echo "nginx does not answer on port $port"
    cat "$tmp/nginx/error.log"
    return 1
}

get() { # get PATH: prints "X-Cache BODY" of a GET through nginx
    local headers body
    headers="$(mktemp -p "$tmp")"
    body="$(curl -s -D "$headers" "http://127.0.0.1:$port$1")" || return 1
    printf '%s %s\n' "$(sed -n 's/^X-Cache: *\([A-Z]*\).*/\1/Ip' "$headers" | tr -d '\r')" "$body"
}

origin_count() { curl -s "http://127.0.0.1:$(cat "$tmp/origin.port")/_count?path=$1"; }

expect() { # expect WHAT GOT WANT
    echo "$1: got '$2', want '$3'"
    [ "$2" = "$3" ]
}

serves_a_hit() {
    expect "first request" "$(get /spring)" "MISS page /spring #1" &&
        expect "second request" "$(get /spring)" "HIT page /spring #1" &&
        expect "origin requests" "$(origin_count /spring)" 1
}

purge_refetches() {
    expect "purge" "$(curl -s -o /dev/null -w '%{http_code}' -X PURGE "http://127.0.0.1:$port/_purge?url=/spring")" 200 &&
        expect "after the purge" "$(get /spring)" "MISS page /spring #2" &&
        expect "then" "$(get /spring)" "HIT page /spring #2" &&
        expect "origin requests" "$(origin_count /spring)" 2
}

port=""
check nginx-start start_origin_and_nginx
check nginx-serves-a-hit serves_a_hit
check nginx-purge-refetches purge_refetches
stop_servers
nginx_stopped() { [ ! -f "$tmp/nginx/nginx.pid" ]; }
check nginx-stops nginx_stopped

# --- 5: php ----------------------------------------------------------------------------------
check php-remember $php -d peakcache.enable_cli=1 "$here/remember.php" "$version" 20-peakcache.ini

# --- 6: C --------------------------------------------------------------------------------------
example=/usr/share/doc/libpeakcache-dev/examples/example.c

example_runs() { # example_runs BINARY: the README's C quick start output
    local said
    said="$("$1")" || return 1
    echo "$said"
    grep -qx "peakcache $version" <<<"$said" &&
        grep -q '^/spring: hit, status 200' <<<"$said" &&
        grep -qx 'lookups 3, fresh 1, miss 2' <<<"$said"
}

c_shared() {
    cmp "$example" "$root/tests/c/example.c" &&
        cc -std=c11 -Wall -Werror "$example" $(pkg-config --cflags --libs peakcache) -o "$tmp/ex-shared" &&
        readelf -d "$tmp/ex-shared" | grep -q 'NEEDED.*\[libpeakcache.so.0\]' &&
        example_runs "$tmp/ex-shared"
}

c_static() {
    cc -std=c11 -Wall -Werror -static "$example" $(pkg-config --static --cflags --libs peakcache) \
        -o "$tmp/ex-static" &&
        ! readelf -d "$tmp/ex-static" | grep -q NEEDED &&
        example_runs "$tmp/ex-static"
}

c_embedded() {
    cc -std=c11 -Wall -Werror "$example" $(pkg-config --cflags --libs peakcache-static) \
        -o "$tmp/ex-embedded" &&
        ! readelf -d "$tmp/ex-embedded" | grep -q 'NEEDED.*libpeakcache' &&
        example_runs "$tmp/ex-embedded"
}

check c-example-shared c_shared
check c-example-static c_static
check c-example-peakcache-static c_embedded

# --- 7: PECL -------------------------------------------------------------------------------------
# Every file of bindings/php the build or the .phpt suite needs is in package.xml.
package_xml_complete() {
    local f missing=0
    for f in $(cd "$root/bindings/php" && ls config.m4 ./*.c ./*.h ./*.stub.php tests/*.phpt); do
        f="${f#./}"
        grep -q "name=\"${f#tests/}\"" "$root/bindings/php/package.xml" ||
            { echo "package.xml lacks $f"; missing=1; }
    done
    grep -q "<release>$version</release>" "$root/bindings/php/package.xml" ||
        { echo "package.xml's release is not $version"; missing=1; }
    return $missing
}
check pecl-package-xml-complete package_xml_complete

# The packaged extension makes way for the PECL one (same file); libpeakcache-dev stays, for
# pkg-config.
apt_remove_php() { DEBIAN_FRONTEND=noninteractive apt-get remove -y -q php8.2-peakcache; }
check apt-get-remove-php8.2-peakcache apt_remove_php
php_without_peakcache() { php_ok && ! $php -m | grep -qx peakcache; }
check php-after-remove php_without_peakcache

pecl_() { # pecl, its temporary files (TMPDIR: the build directory) in ours
    mkdir -p "$tmp/pear/tmp"
    TMPDIR="$tmp/pear/tmp" pecl -d temp_dir="$tmp/pear/temp" -d cache_dir="$tmp/pear/cache" \
        -d download_dir="$tmp/pear/download" "$@" </dev/null
}
ext_dir="$(php-config8.2 --extension-dir)"

pecl_install() {
    mkdir -p "$tmp/pear/src"
    cp -a "$root/bindings/php/." "$tmp/pear/src/"
    (cd "$tmp/pear/src" && pecl_ package package.xml) &&
        pecl_ install "$tmp/pear/src/peakcache-$version.tgz" &&
        ! ldd "$ext_dir/peakcache.so" | grep libpeakcache &&
        $php -n -d extension=peakcache.so -d peakcache.enable_cli=1 "$here/remember.php" "$version"
}
check pecl-install-with-pkg-config pecl_install
pecl_uninstall() { pecl_ uninstall peakcache && [ ! -e "$ext_dir/peakcache.so" ]; }
check pecl-uninstall pecl_uninstall

# --- 8: remove, purge --------------------------------------------------------------------------
apt_remove() { DEBIAN_FRONTEND=noninteractive apt-get remove -y -q $packages; }
check apt-get-remove apt_remove
check nginx-t-after-remove nginx_ok

# What remove keeps (conffiles, the .removed link) goes now; the rest dpkg already forgot.
apt_purge() { DEBIAN_FRONTEND=noninteractive apt-get purge -y -q $(installed); }
check apt-get-purge apt_purge
none_installed() { [ -z "$(installed)" ]; }
check dpkg-knows-none none_installed
check nginx-t-after-purge nginx_ok
check php-after-purge php_without_peakcache

nothing_left() {
    snapshot >"$tmp/after.txt"
    diff "$tmp/before.txt" "$tmp/after.txt" || return 1
    local f left=0
    while IFS= read -r f; do
        [ -d "$f" ] && continue # directories shared with other packages (/usr/lib/php/...)
        [ -e "$f" ] || [ -L "$f" ] || continue
        echo "left behind: $f"
        left=1
    done <"$tmp/files.txt"
    return $left
}
check nothing-left-behind nothing_left

echo "package-tests: took $(($(date +%s) - started)) s"
echo "package-tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
