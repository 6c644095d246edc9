#!/usr/bin/env bash
# Cost as work grows: `re_dms --stdin` into the local target (benches/local.toml: the default
# config) on captures of several sizes and shapes, each next to `gzip -1` of the same bytes.
#
#   benches/scale.sh                    every workload below
#   benches/scale.sh 1m wide            some of them
#
# Workloads (captures made once in target/bench/scale/, regenerated when a generator changes):
#   1m     examples/gen_capture --changes 1m  (5 tables, ~320 MB)
#   10m    examples/gen_capture --changes 10m (~3.2 GB; throughput and peak RSS next to 1m's)
#   wide   examples/gen_shapes --shape wide  --changes 100k (100-column rows, ~320 MB)
#   toast  examples/gen_shapes --shape toast --changes 200  (1 MiB TOASTed text values)
# The 1,000-table segment goes through the Redshift stand-in: benches/redshift.sh.
#
# Per workload: wall seconds, changes/s, peak RSS, re_dms's CPU seconds per million changes
# (user + system), `gzip -1` wall seconds on the same file and re_dms's time / gzip's.
# env: RUNS (3; 1 for 10m), NO_BUILD=1 (use target/release as it is).
set -euo pipefail
# A failing command inside $(...) stops the script too (it hashed a missing file silently).
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
export LC_ALL=C
. benches/lib.sh
ensure_gnu_time

RUNS=${RUNS:-3}
WORKLOADS=("$@")
[ ${#WORKLOADS[@]} -gt 0 ] || WORKLOADS=(1m 10m wide toast)
DIR=target/bench/scale
mkdir -p "$DIR"

if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release --bin re_dms --example gen_capture --example gen_shapes
fi

printf '%-6s %9s %8s %4s %8s %10s %9s %9s %8s %8s\n' \
    workload changes MiB runs wall_s changes/s rss_MiB cpu_s/M gzip1_s vs_gzip
declare -A RATE RSS
for name in "${WORKLOADS[@]}"; do
    file=$(capture "$DIR" "$name")
    changes=$(changes_in "$file")
    mib=$(awk -v b="$(stat -c %s "$file")" 'BEGIN { printf "%.0f", b / 1048576 }')
    runs=$RUNS
    [ "$name" != 10m ] || runs=1
    walls=() rsss=() cpus=()
    for i in $(seq 1 "$runs"); do
        read -r wall rss cpu < <(local_replay "$DIR/time.txt" "$file" "$DIR/$name.log")
        walls+=("$wall") rsss+=("$rss") cpus+=("$cpu")
    done
    wall=$(printf '%s\n' "${walls[@]}" | median %.3f)
    rss=$(printf '%s\n' "${rsss[@]}" | median %.1f)
    cpu=$(printf '%s\n' "${cpus[@]}" | median %.2f)
    read -r gz _ < <(measure "$DIR/time.txt" "$file" /dev/null gzip -1 -c)
    rate=$(awk -v c="$changes" -v w="$wall" 'BEGIN { printf "%d", (w > 0) ? c / w : 0 }')
    cpu_m=$(awk -v c="$changes" -v s="$cpu" 'BEGIN { printf "%.2f", (c > 0) ? s * 1e6 / c : 0 }')
    ratio=$(awk -v a="$wall" -v b="$gz" 'BEGIN { printf "%.2fx", (b > 0) ? a / b : 0 }')
    RATE[$name]=$rate RSS[$name]=$rss
    printf '%-6s %9s %8s %4s %8s %10s %9s %9s %8s %8s\n' \
        "$name" "$changes" "$mib" "$runs" "$wall" "$rate" "$rss" "$cpu_m" "$gz" "$ratio"
done
local_clean
if [ -n "${RATE[1m]:-}" ] && [ -n "${RATE[10m]:-}" ]; then
    awk -v a="${RATE[1m]}" -v b="${RATE[10m]}" -v r1="${RSS[1m]}" -v r10="${RSS[10m]}" 'BEGIN {
        printf "1m -> 10m: throughput %+.1f%%, peak RSS %s -> %s MiB\n", (b - a) * 100 / a, r1, r10 }'
fi
