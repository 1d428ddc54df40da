#!/usr/bin/env bash
# The PHP extension's tests: builds it (build.sh), runs the .phpt suite with php-src's
# run-tests.php (phpize's `make test`, NO_INTERACTION=1), then the PHP-FPM + nginx end-to-end
# tests (e2e/fpm-nginx.sh; e2e/fpm-pools.sh, two pools under two users, needs root). Bounded:
# run-tests has a per-test timeout, every e2e wait has one.
# Usage: bindings/php/test.sh [--no-ffi] [--no-e2e] [--valgrind]
#   --valgrind: run the .phpt suite under valgrind memcheck (USE_ZEND_ALLOC=0), slow.
# Closes with "php-tests: N passed, M failed" (phpt and e2e checks together); exits 1 on a failure.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="$root/target/php-ext"
build_args=()
e2e=1
valgrind=""
for arg in "$@"; do
    case "$arg" in
        --no-ffi) build_args+=(--no-ffi) ;;
        --no-e2e) e2e=0 ;;
        --valgrind) valgrind="-m" ;;
        *) echo "test.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done

"$here/build.sh" "${build_args[@]}" || { echo "php-tests: 0 passed, 1 failed (build)"; exit 1; }
passed=0
failed=0
# The committed arginfo must be what php-src's gen_stub.php makes of the stub (needs Debian's
# php-parser, which gen_stub.php would otherwise download).
if [ -d /usr/share/php/PhpParser ]; then
    if "$here/gen-arginfo.sh" --check >"$build/arginfo.log" 2>&1; then
        passed=$((passed + 1)); echo "ok   peakcache_arginfo.h matches peakcache.stub.php"
    else
        failed=$((failed + 1)); echo "FAIL peakcache_arginfo.h is out of date (bindings/php/gen-arginfo.sh)"; cat "$build/arginfo.log"
    fi
else
    echo "skip arginfo check: Debian package php-parser not installed"
fi
cd "$build"
log="$build/phpt.log"
# TEST_PHP_ARGS: our -d settings win over run-tests' defaults; --show-diff prints failures.
make test NO_INTERACTION=1 TESTS="--no-color --show-diff $valgrind tests" >"$log" 2>&1
tr '\r' '\n' <"$log" | grep -a -E '^(PASS|FAIL|SKIP|BORK|LEAK)' || true
phpt_pass=$(sed -n 's/^Tests passed *: *\([0-9]*\).*/\1/p' "$log")
phpt_fail=$(sed -n 's/^Tests failed *: *\([0-9]*\).*/\1/p' "$log")
phpt_total=$(ls "$build"/tests/*.phpt | wc -l)
phpt_pass=${phpt_pass:-0}
phpt_fail=${phpt_fail:-0}
if [ $((phpt_pass + phpt_fail)) -lt "$phpt_total" ]; then
    # Skipped, borked or not run at all: every test must pass.
    echo "test.sh: run-tests passed $phpt_pass of $phpt_total tests:"; tail -40 "$log"
    phpt_fail=$((phpt_total - phpt_pass))
elif [ "$phpt_fail" -gt 0 ]; then
    sed -n '/^FAILED TEST SUMMARY/,$p' "$log"
    grep -a -A40 '^========DIFF========' "$log" | head -200
fi
echo "phpt: $phpt_pass passed, $phpt_fail failed"
passed=$((passed + phpt_pass))
failed=$((failed + phpt_fail))

# run_e2e SCRIPT NAME: runs an end-to-end script, counting its ok/FAIL lines; a script that
# dies before its "NAME: N passed, M failed" line counts as one more failure.
run_e2e() {
    local log="$build/$2.log" p f
    timeout 120 "$here/e2e/$1" "$build/modules/peakcache.so" | tee "$log"
    p=$(grep -c '^ok ' "$log")
    f=$(grep -c '^FAIL' "$log")
    grep -q "^$2: " "$log" || f=$((f + 1))
    passed=$((passed + p))
    failed=$((failed + f))
}

if [ "$e2e" = 1 ]; then
    run_e2e fpm-nginx.sh fpm-e2e
    run_e2e fpm-pools.sh fpm-pools
fi

echo "php-tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
