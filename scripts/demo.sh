#!/usr/bin/env bash
# `make demo`: a campaign peak played against a slow demo origin, straight to it and through
# peakcache-proxy, side by side. Builds in release mode, runs the `demo` orchestrator (which
# starts and stops the origin and the proxy on loopback), and prints the table; the chart and
# a Markdown summary land in target/demo/. Extra arguments go to `demo` (try `--help`).
#
# Whatever happens (an error, Ctrl-C, a kill of this script), every process started for the
# demo is stopped: the orchestrator kills its children itself, and this script's trap kills
# the orchestrator and any child it left behind (their pids are kept in target/demo/pids).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARGO="${CARGO:-cargo}"

packages=(-p peakcache-demo)
demo_args=()
if [[ -f crates/peakcache-proxy/Cargo.toml ]]; then
  packages+=(-p peakcache-proxy)
else
  echo "demo: crates/peakcache-proxy does not exist yet: only the direct half will run"
  demo_args+=(--no-proxy)
fi

echo "demo: building (release) ${packages[*]}"
"$CARGO" build --release --quiet "${packages[@]}"

target_dir="${CARGO_TARGET_DIR:-}"
if [[ -z "$target_dir" ]]; then
  target_dir="$("$CARGO" metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
fi
target_dir="${target_dir:-$ROOT/target}"
bin="$target_dir/release"
out="$target_dir/demo"
mkdir -p "$out"
pidfile="$out/pids"

demo_pid=""
cleanup() {
  trap - EXIT INT TERM
  if [[ -n "$demo_pid" ]] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM "$demo_pid" 2>/dev/null || true
    # Give it a moment to stop its children itself, then make sure.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      kill -0 "$demo_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$demo_pid" 2>/dev/null || true
  fi
  if [[ -f "$pidfile" ]]; then
    while read -r pid; do
      [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null || true
    done <"$pidfile"
    rm -f "$pidfile"
  fi
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, stopping everything it started"; cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

rm -f "$pidfile"
# In the background, so the traps run at once when a signal arrives.
"$bin/demo" --out "$out" --pidfile "$pidfile" "${demo_args[@]}" "$@" &
demo_pid=$!
rc=0
wait "$demo_pid" || rc=$?
demo_pid=""
exit "$rc"
