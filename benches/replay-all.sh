#!/usr/bin/env bash
# Replays every trace of shared/traces/ through lru, moka, quick_cache and peakcache at three
# capacities each, and prints one markdown document of hit-ratio tables on stdout (progress goes
# to stderr):
#
#     benches/replay-all.sh > hit-ratios.md
#     TRACES=/elsewhere benches/replay-all.sh --only lru,peakcache > quick.md
#
# Extra arguments (e.g. --only, --shards) are passed to every replay.
#
# Capacities, chosen around each trace's working set (unique keys / bytes from the replay header):
#   arc-OLTP       186,880 keys  1000,2000,5000   the ARC paper's range; reference LRU 32.83/42.47 %
#   lirs-loop        1,011 keys  500,1000,1024    below, just below and just above the loop
#   lirs-gli         2,529 keys  500,1000,2000
#   lirs-sprite      7,075 keys  100,250,500      LRU already passes 86 % at 700
#   lirs-multi2      5,684 keys  500,1000,2000
#   cache2k-web07   20,484 keys  1000,2000,5000
#   adapt_size      36,815 keys, 280,431,244 unique bytes (each key at its largest size):
#                   1%,5%,10% of them = 2,804,312 / 14,021,562 / 28,043,124 bytes
#                   (the replay resolves the percentages and prints the byte figures).
#
# Then, if present, the larger public traces of `$MORE_TRACES` (default target/traces, never in
# git: copy them there from their repositories), at 32,768 and 131,072 entries (the block and
# web traces) or around their working set (the smaller ones):
#   arc-P2/P3/P6/P12.lis.zst     moka-rs/cache-trace arc/P*.lis.zst (ARC paper, workstation disks)
#   cache2k-orm-busy/orm-night/web12.trace.xz, cloud_physics-w106.trace.xz, corda-trace_vaultservice.gz,
#   scarab-scarab-recs.trace.xz, lirs-multi1/multi3/2_pools.trace.gz, address-gcc.trace.gz
#                                ben-manes/caffeine simulator/src/main/resources/com/github/benmanes/
#                                caffeine/cache/simulator/parser/<dir>/<file> (file named <dir>-<file>)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
traces="${TRACES:-$here/../../shared/traces}"
[[ -d "$traces" ]] || traces=/work/shared/traces

cargo build --quiet --release -p peakcache-benches --bin replay --manifest-path "$here/Cargo.toml" >&2
target_dir="$(cargo metadata --format-version 1 --no-deps --manifest-path "$here/Cargo.toml" |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
replay="$target_dir/release/replay"

run() { # file format capacities
    echo "replaying $1 at $3" >&2
    "$replay" --trace "$traces/$1" --format "$2" --capacity "$3" "${@:4}"
}

echo "# Hit ratios on the shared traces"
echo
echo "Produced by \`benches/replay-all.sh\`: each request is a get, each miss an insert (read-through)."
echo "Hit ratios in percent of requests. The reference LRU admits every miss."
echo

run arc-OLTP.lis.zst            arc     1000,2000,5000 "$@"
run lirs-loop.trace.gz          lirs    500,1000,1024  "$@"
run lirs-gli.trace.gz           lirs    500,1000,2000  "$@"
run lirs-sprite.trace.gz        lirs    100,250,500    "$@"
run lirs-multi2.trace.gz        lirs    500,1000,2000  "$@"
run cache2k-web07.trace.xz      cache2k 1000,2000,5000 "$@"
run adapt_size-request.trace.xz adapt   1%,5%,10%      "$@"

more="${MORE_TRACES:-$here/../target/traces}"
[[ -d "$more" ]] || exit 0
echo
echo "# Hit ratios on more public traces"
echo
echo "From \`$more\` (see the sources listed in \`benches/replay-all.sh\`)."
echo
more_run() { # file format capacities
    [[ -f "$more/$1" ]] || { echo "skipping $1: not in $more" >&2; return 0; }
    echo "replaying $1 at $3" >&2
    "$replay" --trace "$more/$1" --format "$2" --capacity "$3" "${@:4}"
}
big=32768,131072
more_run arc-P2.lis.zst                arc     "$big" "$@"
more_run arc-P3.lis.zst                arc     "$big" "$@"
more_run arc-P6.lis.zst                arc     "$big" "$@"
more_run arc-P12.lis.zst               arc     "$big" "$@"
more_run cloud_physics-w106.trace.xz   cache2k "$big" "$@"
more_run scarab-scarab-recs.trace.xz   long    "$big" "$@"
more_run cache2k-orm-busy.trace.xz     cache2k 8192,32768 "$@"
more_run cache2k-orm-night.trace.xz    cache2k 8192,32768 "$@"
more_run corda-trace_vaultservice.gz   long    8192,32768 "$@"
more_run address-gcc.trace.gz          address 4096,16384 "$@"
more_run cache2k-web12.trace.xz        cache2k 1000,4000  "$@"
more_run lirs-multi1.trace.gz          lirs    500,1000   "$@"
more_run lirs-multi3.trace.gz          lirs    1000,2000  "$@"
more_run lirs-2_pools.trace.gz         lirs    1000,4000  "$@"
