#!/usr/bin/env bash
# Generates include/peakcache.h from this crate with a pinned cbindgen (installed if missing).
#   gen-header.sh          write include/peakcache.h
#   gen-header.sh --check  fail (exit 1, with the diff) if the checked-in header is not what
#                          this crate generates: run in CI so the header never drifts.
set -euo pipefail

CBINDGEN_VERSION=0.29.4
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
header="$root/include/peakcache.h"

cbindgen_bin="${CBINDGEN:-cbindgen}"
have="$("$cbindgen_bin" --version 2>/dev/null | awk '{print $2}' || true)"
if [ "$have" != "$CBINDGEN_VERSION" ]; then
    echo "gen-header: installing cbindgen $CBINDGEN_VERSION (found '${have:-none}')" >&2
    root_dir="${CARGO_HOME:-$HOME/.cargo}"
    cargo install cbindgen --version "$CBINDGEN_VERSION" --locked --quiet --root "$root_dir" >&2
    cbindgen_bin="$root_dir/bin/cbindgen"
fi

fresh="$(mktemp)"
trap 'rm -f "$fresh"' EXIT
"$cbindgen_bin" --quiet --config "$here/cbindgen.toml" --crate peakcache-ffi \
    --output "$fresh" "$here"

if [ "${1:-}" = "--check" ]; then
    if ! diff -u "$header" "$fresh"; then
        echo "gen-header: include/peakcache.h is out of date; run crates/peakcache-ffi/gen-header.sh" >&2
        exit 1
    fi
    echo "gen-header: include/peakcache.h is up to date"
else
    mkdir -p "$(dirname "$header")"
    cp "$fresh" "$header"
    echo "gen-header: wrote $header"
fi
