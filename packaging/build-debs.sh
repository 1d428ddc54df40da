#!/usr/bin/env bash
# `make package`: the Debian packages libpeakcache0, libpeakcache-dev,
# libnginx-mod-http-peakcache and php8.2-peakcache (+ their -dbgsym), built with debhelper
# (dpkg-buildpackage -b) from a copy of the source tree with packaging/debian as its debian/,
# then checked with lintian. Output: target/deb/*.deb, the .changes, build.log, lintian.log.
# The copy keeps its own target/ between runs, so a second build only relinks.
# Env: CARGO (default: the cargo on PATH), LINTIAN=0 to skip lintian.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/target/deb"

die() { echo "build-debs.sh: $*" >&2; exit 1; }

workspace_version() {
    sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$root/Cargo.toml"
}

changelog_version() {
    dpkg-parsechangelog -l "$root/packaging/debian/changelog" -S Version
}

# The source files as the user sees them: tracked and new files, without what .gitignore
# leaves out (target/); a tree that is not a git checkout is copied whole but for target/.
copy_sources() {
    local dest="$1"
    if git -C "$root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        (cd "$root" && git ls-files -z -co --exclude-standard |
            while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
            tar --null -T - -cf -) | tar -C "$dest" -xpf -
    else
        tar -C "$root" --exclude=./target --exclude=./.git -cf - . | tar -C "$dest" -xpf -
    fi
}

version="$(workspace_version)"
[ -n "$version" ] || die "no [workspace.package] version in Cargo.toml"
[ "$(changelog_version)" = "$version" ] || die "packaging/debian/changelog is at \
$(changelog_version), Cargo.toml at $version: add a changelog entry for $version \
(devscripts: dch -c packaging/debian/changelog -v $version)"
cargo_bin="${CARGO:-$(command -v cargo)}" || die "cargo not found on PATH"

stage="$out/build/peakcache-$version"
mkdir -p "$stage"
find "$stage" -mindepth 1 -maxdepth 1 ! -name target -exec rm -rf {} +
copy_sources "$stage"
rm -rf "$stage/packaging/debian"
cp -a "$root/packaging/debian" "$stage/debian"

rm -f "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo "$out/build"/*.deb \
    "$out/build"/*.changes "$out/build"/*.buildinfo
echo "build-debs.sh: dpkg-buildpackage in $stage (log: $out/build.log)"
# -nc: no pre-clean, so the copy's target/ (cargo, the configured nginx tree) is reused.
# rustup's cargo finds its toolchain through RUSTUP_HOME / CARGO_HOME, kept explicit here.
if ! (cd "$stage" && CARGO="$cargo_bin" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}" \
        RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" \
        dpkg-buildpackage -b -us -uc -nc) >"$out/build.log" 2>&1; then
    tail -40 "$out/build.log" >&2
    die "dpkg-buildpackage failed (log: $out/build.log)"
fi
mv "$out/build"/*.deb "$out/build"/*.changes "$out/build"/*.buildinfo "$out/"

if [ "${LINTIAN:-1}" != 0 ]; then
    command -v lintian >/dev/null || die "lintian not installed (make deps)"
    # Errors and warnings fail the build; what remains is overridden, each override with its
    # reason in packaging/debian/*.lintian-overrides.
    if ! lintian --allow-root --fail-on error,warning --display-info --show-overrides "$out"/*.changes \
            >"$out/lintian.log" 2>&1; then
        cat "$out/lintian.log" >&2
        die "lintian found errors or warnings (log: $out/lintian.log)"
    fi
    echo "build-debs.sh: lintian: $(grep -c '^E:' "$out/lintian.log") errors," \
        "$(grep -c '^W:' "$out/lintian.log") warnings, $(grep -c '^I:' "$out/lintian.log") info," \
        "$(grep -c '^O:' "$out/lintian.log") overridden (log: $out/lintian.log)"
fi
for deb in "$out"/*.deb; do
    printf '  %-60s %8s bytes\n' "${deb#"$root"/}" "$(stat -c %s "$deb")"
done
