#!/usr/bin/env bash
# `make demo`: re_dms streaming a live PostgreSQL database into a local "Redshift", end to end.
#
#   1. builds re_dms (and redshift-sim), starts the local stack (tests/stack.sh) in its own state
#      directory, target/demo/stack: a source PostgreSQL 15, moto as S3, redshift-sim in front of
#      a warehouse PostgreSQL;
#   2. creates the database `demo` (examples/demo/schema.sql: plain tables, a partitioned table,
#      a table with TOASTed values), starts re_dms live on the slot `re_dms_demo` and waits until
#      the slot is streaming;
#   3. runs pgbench (examples/demo/workload.sql) with a schema change halfway through;
#   4. waits until every table in the target matches the source (row count and a content
#      checksum), prints a report and the replication lag, stops re_dms with SIGTERM;
#   5. cleans up what it started (re_dms, the stack, the WAL), also on failure or Ctrl-C.
#
# Exit 0 when every table matches, 1 otherwise (with the end of target/demo/re_dms.log).
# Settings (environment): DEMO_SECONDS (20), DEMO_CLIENTS (2), DEMO_RATE (transactions/s over
# all clients, 150), DEMO_TIMEOUT (seconds to wait for the target, 120), CARGO (cargo),
# RE_DMS_PG_BIN (/usr/lib/postgresql/15/bin), RE_DMS_SIM_BIN (redshift-sim to run; default:
# built here), DEMO_PROFILE (release; CI uses debug, which its tests have built already).
set -euo pipefail

DEMO_SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$DEMO_SRC/../.." && pwd)"
cd "$REPO"

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
DEMO_DIR="$REPO/target/demo"
STACK_DIR="$DEMO_DIR/stack"
WAL_DIR="$DEMO_DIR/wal"
CONFIG="$DEMO_DIR/re_dms.toml"
LOG="$DEMO_DIR/re_dms.log"
PID_FILE="$DEMO_DIR/re_dms.pid"
PROFILE="${DEMO_PROFILE:-release}"
case "$PROFILE" in
    release) PROFILE_FLAG=(--release) ;;
    debug) PROFILE_FLAG=() ;;
    *) printf 'demo: DEMO_PROFILE must be release or debug, not %s\n' "$PROFILE" >&2; exit 2 ;;
esac
RE_DMS="$TARGET_DIR/$PROFILE/re_dms"
PG_BIN="${RE_DMS_PG_BIN:-/usr/lib/postgresql/15/bin}"
SLOT=re_dms_demo
SECONDS_TO_RUN="${DEMO_SECONDS:-20}"
CLIENTS="${DEMO_CLIENTS:-2}"
RATE="${DEMO_RATE:-150}"
TIMEOUT="${DEMO_TIMEOUT:-120}"
read -r -a CARGO_CMD <<<"${CARGO:-cargo}"
TABLES=(customers orders events documents)

export RE_DMS_STACK_DIR="$STACK_DIR"

say() { printf 'demo: %s\n' "$*"; }
warn() { printf 'demo: %s\n' "$*" >&2; }

re_dms_pid=""
pgbench_pid=""
stack_started=0
started_at=$(date +%s)

# ------------------------------------------------------------------------------------ cleanup

# Waits up to $2 seconds for our child $1 to exit; returns its exit code, or 124 on timeout.
wait_for_exit() {
    local pid="$1" limit="$2" waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$waited" -ge $((limit * 10)) ]; then
            return 124
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    local rc=0
    wait "$pid" 2>/dev/null || rc=$?
    return "$rc"
}

show_log_tail() {
    if [ -s "$LOG" ]; then
        warn "last 30 lines of $LOG:"
        tail -n 30 "$LOG" >&2 || true
    fi
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    [ "$rc" -eq 0 ] || warn "FAILED (exit $rc)"
    say "cleaning up"
    if [ -n "$pgbench_pid" ] && kill -0 "$pgbench_pid" 2>/dev/null; then
        kill "$pgbench_pid" 2>/dev/null
        wait_for_exit "$pgbench_pid" 10 >/dev/null || kill -9 "$pgbench_pid" 2>/dev/null
    fi
    if [ -n "$re_dms_pid" ] && kill -0 "$re_dms_pid" 2>/dev/null; then
        say "stopping re_dms (pid $re_dms_pid)"
        kill -TERM "$re_dms_pid" 2>/dev/null
        if ! wait_for_exit "$re_dms_pid" 30; then
            kill -9 "$re_dms_pid" 2>/dev/null
            wait "$re_dms_pid" 2>/dev/null
        fi
    fi
    rm -f "$PID_FILE"
    # After re_dms has stopped, so that the log's end says how it stopped.
    [ "$rc" -eq 0 ] || show_log_tail
    if [ "$stack_started" -eq 1 ] || [ -e "$STACK_DIR" ]; then
        say "stopping the local stack"
        tests/stack.sh down >"$DEMO_DIR/stack-down.log" 2>&1 || {
            warn "tests/stack.sh down failed:"
            cat "$DEMO_DIR/stack-down.log" >&2
        }
    fi
    rm -rf "$WAL_DIR"
    if [ "$rc" -eq 0 ]; then
        say "done in $(($(date +%s) - started_at)) s ($((${built_at:-$started_at} - started_at)) s of it building); everything stopped (config and log kept in target/demo/)"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'warn "interrupted"; exit 130' INT
trap 'warn "terminated"; exit 143' TERM

fail() {
    warn "error: $*"
    exit 1
}

# ------------------------------------------------------------------------------------ helpers

# psql against the source's database $1 (tuples only, unaligned, `|` between columns).
src_psql() {
    local db="$1"
    shift
    "$PG_BIN/psql" -X -q -At -F '|' -v ON_ERROR_STOP=1 \
        -h "$RE_DMS_SOURCE_HOST" -p "$RE_DMS_SOURCE_PORT" -U postgres -d "$db" "$@"
}

# psql against the warehouse, through redshift-sim (as a Redshift client would).
wh_psql() {
    "$PG_BIN/psql" -X -q -At -F '|' -v ON_ERROR_STOP=1 "$RE_DMS_WAREHOUSE_URL" "$@"
}

re_dms_alive() {
    [ -n "$re_dms_pid" ] && kill -0 "$re_dms_pid" 2>/dev/null
}

# A cheap content check, the same SQL on both sides: row count, sum of ids, and per table a
# checksum of the columns the workload changes.
check_sql() {
    case "$1" in
        customers) echo "SELECT count(*), coalesce(sum(id), 0), count(tier), coalesce(sum(length(name)), 0) FROM public.customers" ;;
        orders) echo "SELECT count(*), coalesce(sum(id), 0), coalesce(CAST(sum(amount) AS NUMERIC(20,2)), 0), coalesce(sum(CASE WHEN status = 'shipped' THEN 1 ELSE 0 END), 0) FROM public.orders" ;;
        events) echo "SELECT count(*), coalesce(sum(id), 0), coalesce(sum(CASE WHEN occurred_at >= '2024-02-01 00:00:00+00' THEN 1 ELSE 0 END), 0), coalesce(sum(length(kind)), 0) FROM public.events" ;;
        documents) echo "SELECT count(*), coalesce(sum(id), 0), coalesce(sum(revision), 0), coalesce(sum(length(body)), 0) FROM public.documents" ;;
    esac
}

declare -A SRC_SIG TGT_SIG

# Fills SRC_SIG / TGT_SIG; a target table that does not exist yet (or lacks a column yet) gets "-".
read_signatures() {
    local t
    for t in "${TABLES[@]}"; do
        SRC_SIG[$t]="$(src_psql demo -c "$(check_sql "$t")")"
        TGT_SIG[$t]="$(wh_psql -c "$(check_sql "$t")" 2>/dev/null || echo -)"
    done
}

all_equal() {
    local t
    for t in "${TABLES[@]}"; do
        [ "${SRC_SIG[$t]}" = "${TGT_SIG[$t]}" ] || return 1
    done
}

slot_lag_bytes() {
    src_psql demo -c "SELECT coalesce((pg_current_wal_lsn() - confirmed_flush_lsn)::bigint::text, 'unknown')
                      FROM pg_replication_slots WHERE slot_name = '$SLOT'"
}

# ------------------------------------------------------------------------------------ 1. setup

for bin in psql pgbench; do
    [ -x "$PG_BIN/$bin" ] || fail "$PG_BIN/$bin not found: install postgresql-15 (or set RE_DMS_PG_BIN)"
done
mkdir -p "$DEMO_DIR"

# Leftovers of an interrupted earlier run (e.g. kill -9 of this script).
if [ -f "$PID_FILE" ]; then
    old="$(cat "$PID_FILE")"
    if [ -n "$old" ] && tr '\0' ' ' <"/proc/$old/cmdline" 2>/dev/null | grep -q -- "re_dms --config $CONFIG"; then
        say "stopping re_dms left running by an earlier demo (pid $old)"
        kill -TERM "$old" 2>/dev/null || true
        for _ in $(seq 1 300); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$old" 2>/dev/null || true
    fi
    rm -f "$PID_FILE"
fi
if [ -e "$STACK_DIR" ]; then
    say "removing the stack an earlier demo left behind"
    tests/stack.sh down >/dev/null 2>&1 || true
fi
rm -rf "$WAL_DIR"

say "building re_dms and redshift-sim (cargo build ${PROFILE_FLAG[*]:-(debug)}; the first build takes a few minutes)"
"${CARGO_CMD[@]}" build "${PROFILE_FLAG[@]}" --bin re_dms
if [ -z "${RE_DMS_SIM_BIN:-}" ]; then
    "${CARGO_CMD[@]}" build "${PROFILE_FLAG[@]}" -p redshift-sim
    export RE_DMS_SIM_BIN="$TARGET_DIR/$PROFILE/redshift-sim"
fi
built_at=$(date +%s)
say "built in $((built_at - started_at)) s"

say "starting the local stack in target/demo/stack: source PostgreSQL, S3 (moto), redshift-sim + warehouse PostgreSQL"
stack_started=1
tests/stack.sh up
eval "$(tests/stack.sh env)"
say "  source:    $RE_DMS_SOURCE_URL"
say "  S3:        $RE_DMS_S3_ENDPOINT (bucket $RE_DMS_S3_BUCKET)"
say "  Redshift:  $RE_DMS_WAREHOUSE_URL (redshift-sim)"

say "creating the database demo with tables customers, orders, events (2 monthly partitions), documents (TOASTed bodies)"
src_psql postgres -c "CREATE DATABASE demo"
src_psql demo -f "$DEMO_SRC/schema.sql"

cat >"$CONFIG" <<TOML
# Written by examples/demo/demo.sh.
[source]
connection = "host=$RE_DMS_SOURCE_HOST port=$RE_DMS_SOURCE_PORT user=postgres dbname=demo"
slot = "$SLOT"
create_slot = true
status_interval_secs = 2

[wal]
directory = "$WAL_DIR"
segment_max_age_secs = 2

TOML
# [redshift] comes last: max_connections goes into it.
tests/stack.sh target-config demo/ >>"$CONFIG"
echo "max_connections = 4" >>"$CONFIG"

# ------------------------------------------------------------------------------------ 2. re_dms

say "starting re_dms live (config target/demo/re_dms.toml, log target/demo/re_dms.log)"
"$RE_DMS" --config "$CONFIG" >"$LOG" 2>&1 &
re_dms_pid=$!
echo "$re_dms_pid" >"$PID_FILE"

say "waiting for re_dms to create the slot $SLOT and stream from it"
deadline=$(($(date +%s) + 60))
until [ "$(src_psql demo -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$SLOT'
                              AND active AND confirmed_flush_lsn IS NOT NULL")" = 1 ]; do
    re_dms_alive || fail "re_dms exited before streaming"
    [ "$(date +%s)" -lt "$deadline" ] || fail "the slot $SLOT was not streaming after 60 s"
    sleep 0.2
done
say "re_dms is streaming (slot $SLOT, confirmed_flush_lsn $(src_psql demo -c "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '$SLOT'"))"

# ------------------------------------------------------------------------------------ 3. workload

say "writing the first rows (200 customers, 400 orders, 500 events, 30 documents)"
src_psql demo -f "$DEMO_SRC/seed.sql"

say "running pgbench for ${SECONDS_TO_RUN} s: $CLIENTS clients, ~$RATE transactions/s, inserts/updates/deletes on all four tables"
"$PG_BIN/pgbench" --no-vacuum --client="$CLIENTS" --jobs="$CLIENTS" --time="$SECONDS_TO_RUN" \
    --rate="$RATE" --max-tries=10 --file="$DEMO_SRC/workload.sql" \
    -h "$RE_DMS_SOURCE_HOST" -p "$RE_DMS_SOURCE_PORT" -U postgres demo \
    >"$DEMO_DIR/pgbench.log" 2>&1 &
pgbench_pid=$!

# Halfway through the run (a pause on purpose: the change lands while pgbench writes).
sleep $((SECONDS_TO_RUN / 2))
say "schema change while pgbench runs: ALTER TABLE customers ADD COLUMN tier, then rows using it"
src_psql demo -f "$DEMO_SRC/schema_change.sql"

pgbench_rc=0
wait "$pgbench_pid" || pgbench_rc=$?
pgbench_pid=""
if [ "$pgbench_rc" -ne 0 ]; then
    cat "$DEMO_DIR/pgbench.log" >&2
    fail "pgbench exited $pgbench_rc"
fi
tx="$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$DEMO_DIR/pgbench.log")"
tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$DEMO_DIR/pgbench.log" | head -n 1)"
say "pgbench done: ${tx:-?} transactions, ${tps%.*} per second"
re_dms_alive || fail "re_dms exited during the workload"

# ------------------------------------------------------------------------------------ 4. compare

say "waiting until the target matches the source (up to $TIMEOUT s)"
wait_start=$(date +%s)
deadline=$((wait_start + TIMEOUT))
while :; do
    read_signatures
    all_equal && break
    re_dms_alive || fail "re_dms exited while loading"
    if [ "$(date +%s)" -ge "$deadline" ]; then
        break
    fi
    sleep 1
done
caught_up=$(($(date +%s) - wait_start))

# Once idle, re_dms confirms the server's WAL end to the slot (every status_interval_secs).
for _ in $(seq 1 50); do
    [ "$(slot_lag_bytes)" = 0 ] && break
    sleep 0.2
done

echo
printf '  %-18s %12s %12s  %-5s  %s\n' table "source rows" "target rows" equal "content (count, sum of ids, column checksums)"
ok=1
for t in "${TABLES[@]}"; do
    src_rows="${SRC_SIG[$t]%%|*}"
    tgt_rows="${TGT_SIG[$t]%%|*}"
    if [ "${SRC_SIG[$t]}" = "${TGT_SIG[$t]}" ]; then
        equal=yes
        content="same: ${SRC_SIG[$t]}"
    else
        equal=NO
        ok=0
        content="source ${SRC_SIG[$t]} / target ${TGT_SIG[$t]}"
        [ "$src_rows" = "$tgt_rows" ] && equal="NO (same rows, other content)"
    fi
    printf '  %-18s %12s %12s  %-5s  %s\n' "public.$t" "$src_rows" "$tgt_rows" "$equal" "$content"
done
echo
say "tables in the warehouse (through redshift-sim): $(wh_psql -c "SELECT string_agg(table_schema || '.' || table_name, ', ' ORDER BY table_schema, table_name)
    FROM information_schema.tables WHERE table_schema IN ('public', 're_dms')" 2>/dev/null || echo '?')"
# One ledger row per table and WAL segment; rows_updated counts the partial updates (an UPDATE
# whose TOASTed column test_decoding printed as unchanged-toast-datum).
say "ledger re_dms.applied: $(wh_psql -c "SELECT count(*) || ' table-segments from ' || count(DISTINCT segment) || ' WAL segments: '
    || sum(rows_upserted) || ' rows upserted, ' || sum(rows_deleted) || ' deleted, '
    || sum(rows_updated) || ' partial updates (TOAST)' FROM re_dms.applied" 2>/dev/null || echo '?')"
say "replication lag: $(slot_lag_bytes) bytes (pg_current_wal_lsn() - confirmed_flush_lsn of slot $SLOT)"
say "re_dms status --config target/demo/re_dms.toml:"
"$RE_DMS" status --config "$CONFIG" 2>&1 | sed 's/^/    /' || true
echo

if [ "$ok" -ne 1 ]; then
    fail "the target does not match the source after $TIMEOUT s"
fi
say "all ${#TABLES[@]} tables equal; the target caught up ${caught_up} s after the workload ended"

# ------------------------------------------------------------------------------------ 5. stop

say "stopping re_dms with SIGTERM"
kill -TERM "$re_dms_pid"
stop_rc=0
wait_for_exit "$re_dms_pid" 30 || stop_rc=$?
if [ "$stop_rc" -eq 124 ]; then
    fail "re_dms did not exit within 30 s of SIGTERM"
fi
re_dms_pid=""
rm -f "$PID_FILE"
[ "$stop_rc" -eq 0 ] || fail "re_dms exited $stop_rc after SIGTERM (expected 0)"
say "re_dms exited 0"
