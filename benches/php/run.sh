#!/usr/bin/env bash
# Runs benches/php/bench.php: peakcache's PHP extension against APCu (Debian php8.2-apcu) in
# the same PHP CLI process, both enabled for the CLI. Builds the extension first
# (bindings/php/build.sh, which runs `make ffi`).
# Usage: benches/php/run.sh [SECONDS_PER_CASE] [--no-build]   (default 0.5 s per case)
# Env: PEAKCACHE_SHARED=1 runs peakcache on its shared backend (peakcache.shared=1, a region file
# under /dev/shm removed afterwards) instead of the per-process pool.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
PHP="${PHP:-php}"
budget="${1:-0.5}"
if [ "${2:-}" != "--no-build" ]; then
    "$root/bindings/php/build.sh" >/dev/null
fi
so="$root/target/php-ext/modules/peakcache.so"
apcu="$("$PHP" -r 'echo ini_get("extension_dir");')/apcu.so"
[ -f "$apcu" ] || { echo "run.sh: $apcu not found (Debian package php8.2-apcu)" >&2; exit 1; }
shared=()
if [ "${PEAKCACHE_SHARED:-0}" = 1 ]; then
    region="/dev/shm/peakcache-bench-$$"
    trap 'rm -f "$region"' EXIT
    shared=(-d peakcache.shared=1 -d "peakcache.shm_path=$region")
fi
# -n: no system php.ini, so only these two extensions (and nothing like xdebug) are loaded.
"$PHP" -n -d "extension=$apcu" -d apc.enable_cli=1 -d apc.shm_size=128M \
    -d "extension=$so" -d peakcache.enable_cli=1 -d peakcache.size=128M \
    "${shared[@]}" "$here/bench.php" "$budget"
