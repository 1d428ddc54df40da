#!/usr/bin/env bash
# The Rust crates as crates.io would get them (part of `make test-package`):
#   1. every workspace crate is public (listed below) or says `publish = false`;
#   2. `cargo publish --dry-run` of the public crates together: cargo packs each, then builds
#      it from its .crate, the others it needs taken from the packs through a temporary local
#      registry (so peakcache-http verifies against the peakcache about to be published);
#   3. each public crate has a README and examples, and its docs build with
#      RUSTDOCFLAGS="-D warnings";
#   4. each example runs (they assert what they show).
# --allow-dirty: this checks what the tree would publish, committed or not.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
CARGO="${CARGO:-cargo}"
public="peakcache peakcache-http peakcache-shm"

echo "== public crates: $public"
unpublished="$($CARGO metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    if p["publish"] != []:
        print(p["name"])
')"
for crate in $unpublished; do
    case " $public " in
        *" $crate "*) ;;
        *) echo "crate $crate is publishable but not listed as public in $0: add publish = false (and why) or list it"; exit 1 ;;
    esac
done
for crate in $public; do
    grep -qx "$crate" <<<"$unpublished" || { echo "crate $crate is listed as public but says publish = false"; exit 1; }
done

echo "== cargo publish --dry-run"
# Cargo takes a registry crate of a version it has seen as unchanged: a pack of an earlier run
# (same version, other contents), its unpacked source in cargo's home or its build would make
# the dependents verify against stale code. The check builds in a target directory of its own,
# whose peakcache builds are removed first.
target="${CARGO_TARGET_DIR:-$root/target}"
check_target="$target/publish-check"
rm -rf "$target/package" "$check_target"/package
rm -rf "$check_target"/debug/.fingerprint/peakcache* "$check_target"/debug/deps/*peakcache*
version="$($CARGO metadata --no-deps --format-version 1 | python3 -c '
import json, sys
print({p["name"]: p["version"] for p in json.load(sys.stdin)["packages"]}["peakcache"])')"
for crate in $public; do
    rm -rf "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$crate-$version" \
        "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$crate-$version.crate"
done
$CARGO publish --dry-run --allow-dirty --locked --target-dir "$check_target" $(printf -- '-p %s ' $public)

for crate in $public; do
    dir="crates/$crate"
    echo "== $crate: README, examples, docs"
    [ -s "$dir/README.md" ] || { echo "$dir/README.md missing"; exit 1; }
    grep -q '^readme = "README.md"' "$dir/Cargo.toml" || { echo "$dir/Cargo.toml: no readme"; exit 1; }
    ls "$dir"/examples/*.rs >/dev/null || { echo "$dir/examples: none"; exit 1; }
    RUSTDOCFLAGS="-D warnings" $CARGO doc --no-deps --locked -p "$crate"
    for example in "$dir"/examples/*.rs; do
        name="$(basename "$example" .rs)"
        echo "== $crate: example $name"
        $CARGO run --locked -q -p "$crate" --example "$name"
    done
done
echo "crates: ok"
