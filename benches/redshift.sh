#!/usr/bin/env bash
# Redshift-path benchmark: captures replayed with target.kind = "redshift" through the local
# stack (redshift-sim + PostgreSQL + moto on loopback), all on this machine.
#   1. the 1,000,000-change capture (made by benches/run.sh), RUNS times (3 by default);
#   2. one segment touching 1,000 tables with 10 changes each (examples/gen_shapes --shape
#      tables), once.
# Per run: wall time, changes/s, peak RSS, re_dms's own CPU seconds per million changes and in
# all (user + system), the CPU seconds the rest of the machine spent meanwhile (the sim, the
# warehouse's PostgreSQL, moto) and the statements the sim received. The stack is started and
# stopped here. env: RUNS, NO_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
ensure_gnu_time
RUNS=${RUNS:-3}
CAPTURE=target/bench/capture_1m.txt
[ -f "$CAPTURE" ] || { echo "redshift.sh: run benches/run.sh first (it makes $CAPTURE)" >&2; exit 2; }
if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release --bin re_dms --example gen_shapes
    # The sim stands in for Redshift: built optimized, so that its own CSV conversion (a debug
    # build spends seconds per million rows there) does not hide what re_dms does.
    cargo build --release -p redshift-sim
fi
export RE_DMS_STACK_DIR=${RE_DMS_STACK_DIR:-$PWD/target/bench/stack}
RE_DMS_SIM_BIN=$PWD/target/release/redshift-sim tests/stack.sh up
trap 'tests/stack.sh down >/dev/null 2>&1 || true' EXIT
eval "$(tests/stack.sh env)"
DIR=target/bench/redshift
mkdir -p "$DIR"
{ printf '[wal]\ndirectory = "%s"\n' "$DIR/wal"; tests/stack.sh target-config bench/; } > "$DIR/re_dms.toml"
TABLES=$DIR/tables_1000x10.txt
target/release/examples/gen_shapes --shape tables --tables 1000 --changes 10000 --quiet > "$TABLES"

# CPU seconds the whole machine has spent (user, nice, system, irq, softirq) since boot.
machine_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8) / hz }' /proc/stat
}

# run LABEL CAPTURE: one replay into an empty warehouse; prints its figures. `others_cpu_s` is
# what the rest of the machine (the sim, the warehouse's PostgreSQL, moto) spent meanwhile.
run() {
    local label=$1 capture=$2 changes wall rss cpu before after
    psql -q "$RE_DMS_WAREHOUSE_BACKEND_URL" 2>/dev/null <<'SQL'
DROP SCHEMA IF EXISTS re_dms, inventory, sales CASCADE;
DROP TABLE IF EXISTS public.users, public.orders, public.articles;
DO $$ DECLARE t text; BEGIN
    FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename ~ '^t[0-9]+$' LOOP
        EXECUTE format('DROP TABLE public.%I', t);
    END LOOP;
END $$;
SQL
    : > "$RE_DMS_SIM_STATEMENT_LOG"
    rm -rf "$DIR/wal"
    changes=$(changes_in "$capture")
    before=$(machine_cpu)
    read -r wall rss cpu < <(measure "$DIR/time.txt" "$capture" "$DIR/run_$label.log" \
        target/release/re_dms --stdin --config "$DIR/re_dms.toml")
    after=$(machine_cpu)
    awk -v l="$label" -v c="$changes" -v w="$wall" -v r="$rss" -v u="$cpu" -v b="$before" \
        -v a="$after" -v s="$(wc -l < "$RE_DMS_SIM_STATEMENT_LOG")" 'BEGIN {
        printf "%-12s %9d %8.3f %11d %13.1f %9.2f %8.2f %13.2f %11d\n",
            l, c, w, c / w, r, u * 1e6 / c, u, a - b - u, s }'
}

printf '%-12s %9s %8s %11s %13s %9s %8s %13s %11s\n' run changes wall_s changes/s peak_rss_MiB \
    cpu_s/M cpu_s others_cpu_s statements
for i in $(seq 1 "$RUNS"); do
    run "1m-$i" "$CAPTURE"
done
run "1000tables" "$TABLES"
