#!/usr/bin/env bash
# Floors: what the 1m replay costs next to the steps it cannot do without, each measured on its
# own in the same run. Answers "how much of re_dms's CPU is parsing, compressing and writing the
# WAL at all, and how much is everything else" with measurements rather than profile shares.
#
#   benches/floor.sh                    RUNS rounds (5), steps alternated within each round
#
# Steps, all on the 1m capture (target/bench/scale/1m.txt, shared with scale.sh):
#   replay    re_dms --stdin --config benches/local.toml (the default config), as in scale.sh
#   parse     examples/stage_floors parse: --stdin's own input stage as the replay runs it (its
#             thread reads and frames every message, walks the common row changes without a
#             parse tree and parses the rest), the chunks only counted and handed back
#   deflate   examples/stage_floors deflate: libdeflate gzip members of the replay's CSV text
#             (every output file decompressed and concatenated) in the CSV stage's piece size
#             and level (one thread); wall and CPU of the compression loop alone, without
#             reading the file (the CSV stage compresses text in memory)
#   wal       dd of the capture into one file with one fdatasync: about the kernel's side of the
#             WAL (the real WAL is larger by its record headers and field offsets and is
#             synced every 16 MiB; dd's CPU also holds reading the capture, ~0.03 s)
#   gzip -1   the reference of scale.sh
# Printed: median wall and CPU seconds (user + system) per step, then the floors' sum, what
# remains of the replay's CPU, and the CPU a replay at 1,000,000 changes/s would have on this
# machine's cores.
# env: RUNS (5), NO_BUILD=1 (use target/release as it is).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
export LC_ALL=C
. benches/lib.sh
ensure_gnu_time

RUNS=${RUNS:-5}
[ "$RUNS" -ge 1 ] 2>/dev/null || { echo "floor.sh: RUNS must be a number >= 1" >&2; exit 2; }
DIR=target/bench/scale
FLOOR=target/bench/floor
mkdir -p "$DIR" "$FLOOR"

if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release --bin re_dms --example gen_capture --example stage_floors
fi

file=$(capture "$DIR" 1m)
changes=$(changes_in "$file")
TIME=$FLOOR/time.txt

replay() {
    local_replay "$TIME" "$file" "$FLOOR/replay.log"
}

# The CSV text the replay compressed: what the deflate floor compresses.
replay >/dev/null
find "$LOCAL_OUT_DIR" -name '*.csv.gz' -print0 | sort -z | xargs -0 cat | gzip -dc >"$FLOOR/1m.csv"

declare -A WALL CPU
STEPS=(replay parse deflate wal "gzip -1")
for i in $(seq 1 "$RUNS"); do
    for step in "${STEPS[@]}"; do
        case $step in
            replay) out=$(replay) ;;
            parse) out=$(measure "$TIME" "$file" "$FLOOR/parse.log" target/release/examples/stage_floors parse) ;;
            deflate) measure "$TIME" /dev/null "$FLOOR/deflate.log" \
                target/release/examples/stage_floors deflate "$FLOOR/1m.csv" >/dev/null
                # The compression loop alone: "in N out N wall S cpu S".
                out=$(sed -n 's/^in .* wall \([0-9.]*\) cpu \([0-9.]*\)$/\1 - \2/p' "$FLOOR/deflate.log")
                [ -n "$out" ] || { echo "floor.sh: no timing in $FLOOR/deflate.log" >&2; exit 1; } ;;
            wal) out=$(measure "$TIME" "$file" "$FLOOR/wal.log" \
                dd of="$FLOOR/wal" bs=1M conv=fdatasync status=none)
                rm -f "$FLOOR/wal" ;;
            "gzip -1") out=$(measure "$TIME" "$file" /dev/null gzip -1 -c) ;;
        esac
        read -r wall _ cpu <<<"$out"
        WALL[$step]+="$wall "
        CPU[$step]+="$cpu "
    done
done
local_clean

printf '%s changes, %s rounds, %s cores\n' "$changes" "$RUNS" "$(nproc)"
printf '%-8s %8s %8s\n' step wall_s cpu_s
declare -A MED
for step in "${STEPS[@]}"; do
    wall=$(printf '%s\n' ${WALL[$step]} | median %.2f)
    MED[$step]=$(printf '%s\n' ${CPU[$step]} | median %.2f)
    printf '%-8s %8s %8s\n' "$step" "$wall" "${MED[$step]}"
done
awk -v r="${MED[replay]}" -v p="${MED[parse]}" -v d="${MED[deflate]}" -v w="${MED[wal]}" \
    -v c="$changes" -v n="$(nproc)" 'BEGIN {
    f = p + d + w
    printf "floors (parse + deflate + wal): %.2f CPU-s; the rest of the replay: %.2f CPU-s\n", f, r - f
    printf "1,000,000 changes/s: at most %.2f CPU-s for these %d changes on %d cores, all busy\n",
        n * c / 1e6, c, n
}'
