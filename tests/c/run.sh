#!/usr/bin/env bash
# Builds libpeakcache (static and shared) and runs the C tests against include/peakcache.h:
#   1. each test statically linked, plain (test_lifecycle runs on both backends, test_shared
#      forks processes sharing one region file under /dev/shm or /tmp, removed at the end);
#   2. the same under AddressSanitizer + UndefinedBehaviorSanitizer (leak checking on);
#   3. the plain binaries under valgrind memcheck (skipped, with a message, if valgrind is absent:
#      Debian package `valgrind`);
#   4. example.c (the README's C quick start), linked statically and dynamically;
#   5. test_abi: a host compiled against a frozen older header (tests/c/abi/peakcache.h) runs
#      against today's library, plain, under the sanitizers and valgrind;
#   6. symbol checks: libpeakcache.so exports only peakcache_*; a host shared object linking
#      libpeakcache.a with -Wl,--exclude-libs,ALL exports none of peakcache's or Rust's symbols.
# Usage: tests/c/run.sh [--no-valgrind]. Env: CC (default gcc), CARGO (default cargo).
# Prints one line per step and closes with "c-tests: N passed, M failed"; exits 1 on a failure.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$here/build"
CC="${CC:-gcc}"
CARGO="${CARGO:-cargo}"
use_valgrind=1
[ "${1:-}" = "--no-valgrind" ] && use_valgrind=0

passed=0
failed=0
step() { # step NAME COMMAND...: runs a step, output to build/logs/NAME.log, tallies it
    local name="$1"
    shift
    if "$@" >"$build/logs/$name.log" 2>&1; then
        passed=$((passed + 1))
        printf 'ok   %s\n' "$name"
    else
        failed=$((failed + 1))
        printf 'FAIL %s (log: %s)\n' "$name" "$build/logs/$name.log"
        sed 's/^/    /' "$build/logs/$name.log" | tail -40
    fi
}

rm -rf "$build"
mkdir -p "$build/lib" "$build/logs"

# The library, with the test-only export peakcache_debug_panic (feature test-panic).
# The Cargo artifacts are named libpeakcache_ffi.*; hosts link libpeakcache.*.
(cd "$root" && $CARGO build --quiet -p peakcache-ffi --lib --features test-panic) || {
    echo "c-tests: 0 passed, 1 failed (cargo build)"
    exit 1
}
# Cargo's target directory as Cargo reports it (CARGO_TARGET_DIR, relative to the root or not).
target_dir=$(cd "$root" && $CARGO metadata --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
cp "$target_dir/debug/libpeakcache_ffi.a" "$build/lib/libpeakcache.a"
cp "$target_dir/debug/libpeakcache_ffi.so" "$build/lib/libpeakcache.so.0"
ln -s libpeakcache.so.0 "$build/lib/libpeakcache.so"

# What Rust's std needs from the system (cargo rustc -- --print native-static-libs).
LIBS="-lpthread -ldl -lm -lrt -lutil"
CFLAGS="-std=c11 -Wall -Wextra -Werror -pedantic -g -O1 -pthread -I$root/include"
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
tests="test_lifecycle test_misuse test_threads test_http test_shared test_abi"

# test_abi is a host built against an older header: the frozen copy in tests/c/abi.
cflags_for() {
    if [ "$1" = test_abi ]; then
        echo "${CFLAGS/-I$root\/include/-I$here/abi}"
    else
        echo "$CFLAGS"
    fi
}

for t in $tests example; do
    step "build-$t" $CC $(cflags_for $t) "$here/$t.c" "$build/lib/libpeakcache.a" $LIBS -o "$build/$t"
    step "build-$t-asan" $CC $(cflags_for $t) $SAN "$here/$t.c" "$build/lib/libpeakcache.a" $LIBS \
        -o "$build/$t-asan"
done

for t in $tests; do
    step "$t" "$build/$t"
done

# LeakSanitizer: suppressions (lsan.supp) only for what Rust's std keeps for the life of the
# process by design; see the comments in that file.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0"
for t in $tests example; do
    step "$t-asan" "$build/$t-asan"
done

if [ "$use_valgrind" = 1 ] && command -v valgrind >/dev/null 2>&1; then
    for t in $tests example; do
        step "$t-valgrind" valgrind --quiet --error-exitcode=1 --leak-check=full \
            --errors-for-leak-kinds=definite "$build/$t"
    done
elif [ "$use_valgrind" = 1 ]; then
    echo "skip valgrind: not installed (Debian package: valgrind; \`make deps\` installs it)"
fi

step example "$build/example"
step example-shared $CC $CFLAGS "$here/example.c" -L"$build/lib" -lpeakcache \
    -Wl,-rpath,"$build/lib" -o "$build/example-shared"
step example-shared-run "$build/example-shared"
step example-shared-soname sh -c "readelf -d '$build/example-shared' | grep -q 'NEEDED.*libpeakcache.so.0'"

# Exports of the shared library: peakcache_* only.
exports_only_peakcache() {
    local extra
    extra="$(nm -D --defined-only "$build/lib/libpeakcache.so" | awk '{print $3}' | grep -v '^peakcache_')"
    if [ -n "$extra" ]; then
        echo "libpeakcache.so exports symbols other than peakcache_*:"
        echo "$extra" | head -20
        return 1
    fi
    echo "libpeakcache.so exports $(nm -D --defined-only "$build/lib/libpeakcache.so" | wc -l) symbols, all peakcache_*"
}
step so-exports exports_only_peakcache

# A host shared object (an nginx module) linking the static library must not re-export it.
host_exports_nothing_of_ours() {
    $CC -std=c11 -Wall -Werror -fPIC -shared -fvisibility=hidden -I"$root/include" \
        "$here/host_module.c" "$build/lib/libpeakcache.a" $LIBS -Wl,--exclude-libs,ALL \
        -o "$build/host_module.so" || return 1
    local exported leaked
    exported="$(nm -D --defined-only "$build/host_module.so" | awk '{print $3}')"
    echo "host_module.so exports: $exported"
    leaked="$(echo "$exported" | grep -E '^(peakcache_|_ZN|_R|rust_)' || true)"
    if [ -n "$leaked" ]; then
        echo "leaked: $leaked"
        return 1
    fi
    echo "$exported" | grep -qx host_module_lookup_kind || return 1
    $CC -std=c11 "$here/host_main.c" "$build/host_module.so" -Wl,-rpath,"$build" \
        -o "$build/host_main" && "$build/host_main"
}
step host-module-exports host_exports_nothing_of_ours

echo "c-tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
