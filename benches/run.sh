#!/usr/bin/env bash
# Replay benchmark: feed a synthetic test_decoding capture to `re_dms --stdin` (local target, no
# network) and report wall time, changes/s and peak RSS per run, plus the medians.
#
#   benches/run.sh [--changes N] [--runs N] [--seed S]
#   env: CHANGES (1000000), RUNS (3), SEED (1),
#        BENCH_CMD  replay command instead of re_dms (reads the capture on stdin; e.g. "cat"),
#                   to exercise this script without the re_dms binary,
#        NO_BUILD=1 skip `cargo build` (use the binaries already in target/release).
set -euo pipefail

cd "$(dirname "$0")/.."
export LC_ALL=C

CHANGES=${CHANGES:-1000000}
RUNS=${RUNS:-3}
SEED=${SEED:-1}
while [ $# -gt 0 ]; do
    case $1 in
        --changes) CHANGES=$2; shift 2 ;;
        --changes=*) CHANGES=${1#*=}; shift ;;
        --runs) RUNS=$2; shift 2 ;;
        --runs=*) RUNS=${1#*=}; shift ;;
        --seed) SEED=$2; shift 2 ;;
        --seed=*) SEED=${1#*=}; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $CHANGES$RUNS$SEED in *[!0-9]*) echo "run.sh: CHANGES, RUNS, SEED must be integers" >&2; exit 2 ;; esac
[ "$RUNS" -ge 1 ] || { echo "run.sh: RUNS must be >= 1" >&2; exit 2; }

BENCH_DIR=target/bench
CAPTURE=$BENCH_DIR/capture_1m.txt
CONFIG=benches/local.toml
# Must match [target] directory and [wal] directory in benches/local.toml.
OUT_DIR=$BENCH_DIR/out
WAL_DIR=$BENCH_DIR/wal
GEN=target/release/examples/gen_capture
RE_DMS=target/release/re_dms

. benches/lib.sh
ensure_gnu_time

# Build. Shares target/ with everyone else: cargo's lock serializes concurrent builds.
if [ -n "${NO_BUILD:-}" ]; then
    :
elif [ -n "${BENCH_CMD:-}" ]; then
    cargo build --release --example gen_capture
else
    cargo build --release --bin re_dms --example gen_capture
fi

# Generate the capture unless an identical one (same changes, seed and generator source) exists.
mkdir -p "$BENCH_DIR"
params="changes=$CHANGES seed=$SEED generator=$(cat examples/gen_capture/*.rs examples/capture_text/mod.rs | sha256sum | cut -c1-16)"
if [ -s "$CAPTURE" ] && [ "$(cat "$CAPTURE.params" 2>/dev/null)" = "$params" ]; then
    echo "capture: reusing $CAPTURE ($params)"
else
    echo "capture: generating $CAPTURE ($params)"
    rm -f "$CAPTURE.params"
    "$GEN" --changes "$CHANGES" --seed "$SEED" >"$CAPTURE.tmp"
    mv "$CAPTURE.tmp" "$CAPTURE"
    flush_capture "$CAPTURE"
    echo "$params" >"$CAPTURE.params"
fi
bytes=$(stat -c %s "$CAPTURE")
changes=$(changes_in "$CAPTURE")
[ "$changes" = "$CHANGES" ] ||
    echo "run.sh: warning: counted $changes change lines, expected $CHANGES" >&2
echo "capture: $changes changes, $bytes bytes ($(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1048576 }') MiB)"

if [ -n "${BENCH_CMD:-}" ]; then
    read -r -a cmd <<<"$BENCH_CMD"
else
    cmd=("$RE_DMS" --stdin --config "$CONFIG")
fi
echo "command: ${cmd[*]} < $CAPTURE   ($RUNS runs)"

# "Elapsed (wall clock) time (h:mm:ss or m:ss): 1:02.34" -> seconds
wall_seconds() {
    sed -n 's/^[[:space:]]*Elapsed (wall clock) time[^:]*: *//p' "$1" |
        awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.3f\n", s }'
}
# "Maximum resident set size (kbytes): 12345" -> MiB
peak_rss_mib() {
    sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): *//p' "$1" |
        awk '{ printf "%.1f\n", $1 / 1024 }'
}
field() { sed -n "s/^[[:space:]]*$2: *//p" "$1"; }
walls=() rates=() rsss=()
printf '\n%-6s %10s %14s %14s %8s\n' run wall_s changes/s peak_rss_MiB cpu
for run in $(seq 1 "$RUNS"); do
    rm -rf "$OUT_DIR" "$WAL_DIR"
    mkdir -p "$OUT_DIR" "$WAL_DIR"
    timefile=$BENCH_DIR/time_$run.txt
    log=$BENCH_DIR/run_$run.log
    status=0
    warm_input "$CAPTURE"
    t0=${EPOCHREALTIME:-}
    /usr/bin/time -v -o "$timefile" "${cmd[@]}" <"$CAPTURE" >"$log" 2>&1 || status=$?
    t1=${EPOCHREALTIME:-}
    if [ "$status" -ne 0 ]; then
        echo "run $run: ${cmd[*]} exited with status $status; last lines of $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    if [ -n "$t0" ]; then # bash 5: microseconds; /usr/bin/time -v only has 10 ms
        wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }')
    else
        wall=$(wall_seconds "$timefile")
    fi
    rss=$(peak_rss_mib "$timefile")
    cpu=$(field "$timefile" 'Percent of CPU this job got')
    rate=$(awk -v c="$changes" -v w="$wall" 'BEGIN { printf "%d\n", (w > 0) ? c / w : 0 }')
    walls+=("$wall") rates+=("$rate") rsss+=("$rss")
    printf '%-6s %10s %14s %14s %8s\n' "$run" "$wall" "$rate" "$rss" "$cpu"
done
printf '%-6s %10s %14s %14s\n' median \
    "$(printf '%s\n' "${walls[@]}" | median %.3f)" \
    "$(printf '%s\n' "${rates[@]}" | median %d)" \
    "$(printf '%s\n' "${rsss[@]}" | median %.1f)"
out_bytes=$(du -sb "$OUT_DIR" | cut -f1)
echo
echo "last run: output in $OUT_DIR ($out_bytes bytes), log $BENCH_DIR/run_$RUNS.log, /usr/bin/time -v in $BENCH_DIR/time_$RUNS.txt"
