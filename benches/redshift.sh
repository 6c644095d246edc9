#!/usr/bin/env bash
# Redshift-path benchmark: the 1,000,000-change capture (made by benches/run.sh) replayed with
# target.kind = "redshift" through the local stack (redshift-sim + PostgreSQL + moto on loopback).
# Prints wall time, changes/s, peak RSS and the statements the sim received, per run.
#   benches/redshift.sh            (RUNS=3 by default; the stack is started and stopped here)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
CAPTURE=target/bench/capture_1m.txt
[ -f "$CAPTURE" ] || { echo "redshift.sh: run benches/run.sh first (it makes $CAPTURE)" >&2; exit 2; }
cargo build --release --bin re_dms
# The sim stands in for Redshift: built optimized, so that its own CSV conversion (a debug build
# spends seconds per million rows there) does not hide what re_dms does.
cargo build --release -p redshift-sim
export RE_DMS_STACK_DIR=${RE_DMS_STACK_DIR:-$PWD/target/bench/stack}
RE_DMS_SIM_BIN=$PWD/target/release/redshift-sim tests/stack.sh up
trap 'tests/stack.sh down >/dev/null 2>&1 || true' EXIT
eval "$(tests/stack.sh env)"
DIR=target/bench/redshift
mkdir -p "$DIR"
{ printf '[wal]\ndirectory = "%s"\n' "$DIR/wal"; tests/stack.sh target-config bench/; } > "$DIR/re_dms.toml"
changes=$(grep -c '^table ' "$CAPTURE")
printf '%-6s %8s %11s %13s %11s\n' run wall_s changes/s peak_rss_MiB statements
for i in $(seq 1 "$RUNS"); do
    psql -q "$RE_DMS_WAREHOUSE_BACKEND_URL" -c "DROP SCHEMA IF EXISTS re_dms, inventory, sales CASCADE; DROP TABLE IF EXISTS public.users, public.orders, public.articles;" 2>/dev/null
    : > "$RE_DMS_SIM_STATEMENT_LOG"
    rm -rf "$DIR/wal"
    /usr/bin/time -f '%e %M' -o "$DIR/time_$i.txt" target/release/re_dms --stdin --config "$DIR/re_dms.toml" < "$CAPTURE" 2> "$DIR/run_$i.log"
    read -r wall rss < "$DIR/time_$i.txt"
    printf '%-6s %8s %11.0f %13.1f %11s\n' "$i" "$wall" "$(echo "$changes / $wall" | bc -l)" "$(echo "$rss / 1024" | bc -l)" "$(wc -l < "$RE_DMS_SIM_STATEMENT_LOG")"
done
