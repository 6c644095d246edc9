#!/usr/bin/env bash
# Live-replication benchmark: re_dms streaming from a test_decoding slot of a busy PostgreSQL into
# Redshift (the local stack: redshift-sim + warehouse PostgreSQL + moto), measured against
# pg_recvlogical reading its own test_decoding slot of the same database into /dev/null (the
# fastest a test_decoding consumer can go on this machine).
#
#   benches/live.sh                          (the stack is started and stopped here)
#   DURATION=15 OUTAGE_SECS=30 NO_BUILD=1 benches/live.sh
#
# Phase 1 (DURATION s): pgbench drives three tables as fast as it goes (5 row changes per
#   transaction: 2 inserts, 2 updates, 1 delete; rows of 300-450 bytes), a heartbeat row is
#   committed every second, the slots' lag (pg_current_wal_lsn() - confirmed_flush_lsn) is sampled
#   every second and the warehouse is polled every 250 ms for new heartbeats (commit-to-visible
#   latency). After pgbench: when each consumer confirmed the source's end position, when the
#   target held exactly what the source holds; changes/s for each, re_dms's peak RSS.
# Phase 2 (OUTAGE_SECS s): redshift-sim in maintenance (connections dropped and refused) while
#   pgbench keeps going; re_dms's RSS every second against [batch] max_memory_bytes, its WAL on
#   disk at the end of the outage; then maintenance off and the catch-up timed until the target
#   equals the source.
# Phase 3 (BACKLOG_SECS s): the ceiling. Phases 1 and 2 show both consumers keeping up with the
#   source, so their rates are the source's. Here both consumers are stopped, pgbench runs alone,
#   then each consumer drains the same backlog from its own slot with the machine to itself, one
#   after the other (pg_recvlogical first): changes/s until its slot confirmed the end position
#   (for re_dms: in its WAL, and visible in the target).
# A summary block for BENCHMARKS.md is printed and saved to target/bench/live/summary.txt; samples
# and logs stay in target/bench/live/.
#
# Environment:
#   DURATION          phase 1 seconds of pgbench (default 60)
#   OUTAGE_SECS       phase 2 seconds of Redshift outage under load (default 300; 0 skips phase 2)
#   CLIENTS           pgbench clients (default 4; threads = min(CLIENTS, nproc))
#   NO_BUILD=1        do not run cargo (use target/release/re_dms and target/release/redshift-sim)
#   BACKLOG_SECS      phase 3 seconds of pgbench with both consumers stopped (default 30; 0 skips)
#   CATCHUP_TIMEOUT   seconds to wait for each catch-up before giving up (default 900)
#   SEGMENT_MAX_AGE_SECS  re_dms's [wal] segment_max_age_secs (default: config.example.toml's, 60);
#                     it bounds commit-to-visible latency and the "visible" rates from below
#   RE_DMS_LOG        re_dms's log level (default info); its log is target/bench/live/re_dms.log
#   RE_DMS_PG_BIN     PostgreSQL 15 binaries (default /usr/lib/postgresql/15/bin)
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-60}
OUTAGE_SECS=${OUTAGE_SECS:-300}
CLIENTS=${CLIENTS:-4}
CATCHUP_TIMEOUT=${CATCHUP_TIMEOUT:-900}
BACKLOG_SECS=${BACKLOG_SECS:-30}
PG_BIN=${RE_DMS_PG_BIN:-/usr/lib/postgresql/15/bin}
export RE_DMS_LOG=${RE_DMS_LOG:-info}

DIR=$ROOT/target/bench/live
WAL_DIR=$DIR/wal
SLOT=re_dms_bench
RECV_SLOT=bench_recv
ACCOUNTS=100000           # rows of accounts, and of orders, loaded before phase 1
ORDERS0=100000
KEEP=100                  # events rows each client keeps (it deletes the one inserted KEEP tx ago)
CHANGES_PER_TX=5          # every statement of workload.sql changes exactly one row
NPROC=$(nproc)
THREADS=$((CLIENTS < NPROC ? CLIENTS : NPROC))

for v in DURATION OUTAGE_SECS BACKLOG_SECS CLIENTS CATCHUP_TIMEOUT ${SEGMENT_MAX_AGE_SECS:+SEGMENT_MAX_AGE_SECS}; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "live.sh: $v must be a whole number, not '${!v}'" >&2; exit 2; }
done
if [ "$DURATION" -eq 0 ] || [ "$CLIENTS" -eq 0 ]; then echo "live.sh: DURATION and CLIENTS must be > 0" >&2; exit 2; fi

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[%s] live.sh: error: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }
# calc FORMAT EXPR: printf-formatted arithmetic (awk).
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
now() { printf '%s\n' "$EPOCHREALTIME"; }
# sleep_until EPOCH_US: sleep until that moment (microseconds since the epoch), if still ahead.
sleep_until() {
    local d=$(($1 - ${EPOCHREALTIME/./}))
    if [ "$d" -gt 0 ]; then sleep "$(printf '%d.%06d' $((d / 1000000)) $((d % 1000000)))"; fi
}
# tick STEP_US: sleep until STEP_US after this loop's previous tick ($NEXT, one per subshell);
# ticks missed while a step overran are dropped, not caught up.
tick() {
    local now_us=${EPOCHREALTIME/./}
    NEXT=$((${NEXT:-$now_us} + $1))
    [ "$NEXT" -ge "$now_us" ] || NEXT=$now_us
    sleep_until "$NEXT"
}
# pctl: numbers on stdin -> "n p50 p99 max" (nearest rank); "0 - - -" when there are none.
pctl() {
    sort -g | awk '{ v[NR] = $1 }
        function at(p,   r, i) { r = p * NR; i = int(r); if (i < r) i++; if (i < 1) i = 1; return v[i] }
        END { if (NR == 0) { print "0 - - -"; exit } print NR, at(0.5), at(0.99), v[NR] }'
}
mib() { if [ "$1" = - ]; then echo -; else calc '%.1f' "$1 / 1048576"; fi; }
secs() { if [ "$1" = - ]; then echo -; else calc '%.1f' "$1"; fi; }

# ------------------------------------------------------------------------------ build, stack

if [ "${NO_BUILD:-0}" != 1 ]; then
    cargo build --release --bin re_dms
    # The sim stands in for Redshift: optimized, so that its own CSV conversion does not hide
    # what re_dms does (see benches/redshift.sh).
    cargo build --release -p redshift-sim
fi
RE_DMS=$ROOT/target/release/re_dms
for b in "$RE_DMS" "$ROOT/target/release/redshift-sim" "$PG_BIN/pgbench" "$PG_BIN/pg_recvlogical" "$PG_BIN/psql"; do
    [ -x "$b" ] || die "$b is missing (build it, or install PostgreSQL 15 / set RE_DMS_PG_BIN)"
done
PSQL=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1)

export RE_DMS_STACK_DIR=$ROOT/target/bench/live-stack
export RE_DMS_SIM_BIN=$ROOT/target/release/redshift-sim

RE_DMS_PID='' RECV_PID='' PGBENCH_PID='' HB_PID='' LAG_PID='' VIS_PID='' MAINT_FILE=''
stop_pid() { # stop_pid PID [SECONDS]: SIGTERM, wait up to SECONDS (default 5), then SIGKILL
    local pid=$1 limit=$((${2:-5} * 10)) i=0
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt "$limit" ]; do sleep 0.1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    [ -n "$MAINT_FILE" ] && rm -f "$MAINT_FILE"
    stop_pid "$PGBENCH_PID"
    stop_pid "$HB_PID"
    stop_pid "$LAG_PID"
    stop_pid "$VIS_PID"
    if [ -n "$RE_DMS_PID" ] && kill -0 "$RE_DMS_PID" 2>/dev/null; then
        log "stopping re_dms (SIGTERM; it drains for up to 20 s)"
        stop_pid "$RE_DMS_PID" 40
    fi
    stop_pid "$RECV_PID"
    tests/stack.sh down >/dev/null 2>&1
    [ "$rc" -eq 0 ] || echo "live.sh: exit $rc; logs and samples in $DIR" >&2
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rm -rf "$DIR"
mkdir -p "$DIR"
# A stack left over by an interrupted run would keep the old database and slots: start afresh.
tests/stack.sh down >/dev/null 2>&1 || true
tests/stack.sh up
eval "$(tests/stack.sh env)"
MAINT_FILE=$RE_DMS_SIM_MAINTENANCE_FILE
rm -f "$MAINT_FILE"
SRC_HOST=$RE_DMS_SOURCE_HOST SRC_PORT=$RE_DMS_SOURCE_PORT
BENCH_URL="postgres://postgres@$SRC_HOST:$SRC_PORT/bench"
WH_URL=$RE_DMS_WAREHOUSE_BACKEND_URL   # the warehouse PostgreSQL itself: polling it costs the sim nothing

src() { "${PSQL[@]}" -At "$BENCH_URL" -c "$1"; }
wh() { "${PSQL[@]}" -At "$WH_URL" -c "$1" 2>/dev/null; }

# ------------------------------------------------------------------------------ source schema

"${PSQL[@]}" "$RE_DMS_SOURCE_URL" -c 'CREATE DATABASE bench'
src "
CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, email varchar(120) NOT NULL,
    balance numeric(14,2) NOT NULL, status varchar(16) NOT NULL, version integer NOT NULL,
    note text, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE orders (id bigserial PRIMARY KEY, account_id bigint NOT NULL, sku varchar(32) NOT NULL,
    qty integer NOT NULL, price numeric(12,2) NOT NULL, status varchar(16) NOT NULL,
    version integer NOT NULL, created_at timestamptz NOT NULL, shipped_at timestamptz,
    payload text NOT NULL);
CREATE TABLE events (id bigint PRIMARY KEY, account_id bigint NOT NULL, kind varchar(32) NOT NULL,
    version integer NOT NULL, body text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE heartbeat (id bigint PRIMARY KEY, committed_at timestamptz);"

# One transaction = exactly 5 row changes: an account updated, an order inserted, an older order
# updated, an event inserted and the event this client inserted KEEP transactions ago deleted
# (ids per phase and client, so that every statement finds its row).
cat >"$DIR/workload.sql" <<'SQL'
\set aid random(1, :accounts)
\set oid random(1, :orders0)
\set n :n + 1
\set eid :phase * 1000000000000 + (:client_id + 1) * 1000000000 + :n
BEGIN;
UPDATE accounts SET balance = balance + 1.25, version = version + 1, status = 'active', note = 'updated by client ' || :client_id || ' in transaction ' || :n, updated_at = now() WHERE id = :aid;
INSERT INTO orders (account_id, sku, qty, price, status, version, created_at, payload) VALUES (:aid, 'SKU-' || (:n % 5000), 1 + :n % 7, 19.99 + :n % 100, 'new', 1, now(), repeat(md5(:eid::text), 6));
UPDATE orders SET status = 'shipped', version = version + 1, shipped_at = now() WHERE id = :oid;
INSERT INTO events (id, account_id, kind, version, body, created_at) VALUES (:eid, :aid, 'order_placed', 1, repeat(md5(:n::text), 8), now());
DELETE FROM events WHERE id = :eid - :keep;
END;
SQL

# ------------------------------------------------------------------------------ consumers

defaults() { sed -n "s/^$1 *= *\([0-9]*\).*/\1/p" config.example.toml; }
SEG_AGE=${SEGMENT_MAX_AGE_SECS:-$(defaults segment_max_age_secs)}
SEG_AGE_NOTE=default
[ -z "${SEGMENT_MAX_AGE_SECS:-}" ] || SEG_AGE_NOTE="SEGMENT_MAX_AGE_SECS; default $(defaults segment_max_age_secs)"
SEG_BYTES=$(defaults segment_max_bytes)
MEM_BUDGET=$(defaults max_memory_bytes)
if [ -z "$SEG_AGE" ] || [ -z "$SEG_BYTES" ] || [ -z "$MEM_BUDGET" ]; then die "cannot read the defaults from config.example.toml"; fi
cat >"$DIR/re_dms.toml" <<TOML
# Written by benches/live.sh. Defaults of config.example.toml except status_interval_secs (and
# segment_max_age_secs when SEGMENT_MAX_AGE_SECS is set).
[source]
connection = "host=$SRC_HOST port=$SRC_PORT user=postgres dbname=bench"
slot = "$SLOT"
create_slot = true
# The benchmark measures when the slot's confirmed_flush_lsn passes a position: with the default
# 10 s it would be quantised to 10 s (pg_recvlogical gets -s 1 -F 1 for the same reason).
status_interval_secs = 1
[wal]
directory = "$WAL_DIR"
segment_max_bytes = $SEG_BYTES
segment_max_age_secs = $SEG_AGE
[batch]
max_memory_bytes = $MEM_BUDGET
TOML
tests/stack.sh target-config bench/ >>"$DIR/re_dms.toml"
log "re_dms config $DIR/re_dms.toml: segment_max_age_secs = $SEG_AGE ($SEG_AGE_NOTE), segment_max_bytes = $SEG_BYTES, [batch] max_memory_bytes = $MEM_BUDGET ($(mib "$MEM_BUDGET") MiB), status_interval_secs = 1"

start_re_dms() {
    "$RE_DMS" --config "$DIR/re_dms.toml" >>"$DIR/re_dms.log" 2>&1 &
    RE_DMS_PID=$!
    log "re_dms running (pid $RE_DMS_PID), log $DIR/re_dms.log"
}
start_re_dms

"$PG_BIN/pg_recvlogical" -d "$BENCH_URL" -S "$RECV_SLOT" --create-slot -P test_decoding
RECV_CMD=("$PG_BIN/pg_recvlogical" -d "$BENCH_URL" -S "$RECV_SLOT" --start -f /dev/null
    -o include-xids=1 -o include-timestamp=1 -s 1 -F 1)
start_recv() {
    "${RECV_CMD[@]}" >>"$DIR/pg_recvlogical.log" 2>&1 &
    RECV_PID=$!
    log "pg_recvlogical running (pid $RECV_PID): $(printf '%q ' "${RECV_CMD[@]}")"
}
start_recv

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && ! grep -qE '^State:\s+Z' "/proc/$1/status" 2>/dev/null; }
check_consumers() {
    alive "$RE_DMS_PID" || { tail -n 30 "$DIR/re_dms.log" >&2; die "re_dms exited (log above)"; }
    alive "$RECV_PID" || { tail -n 30 "$DIR/pg_recvlogical.log" >&2; die "pg_recvlogical exited (log above)"; }
}

# Both slots exist, are being read and are past their creation (confirmed_flush_lsn is set once
# the transactions running at creation have ended: what commits before is not in the stream).
deadline=$((SECONDS + 60))
until [ "$(src "SELECT count(*) FROM pg_replication_slots WHERE slot_name IN ('$SLOT', '$RECV_SLOT') AND active AND confirmed_flush_lsn IS NOT NULL")" = 2 ]; do
    check_consumers
    [ "$SECONDS" -lt "$deadline" ] || die "the slots $SLOT and $RECV_SLOT are not both active after 60 s"
    sleep 0.2
done
log "slots $SLOT and $RECV_SLOT exist and are active"

# ------------------------------------------------------------------------------ samplers

# Every second: each slot's lag in bytes, and re_dms's RSS / peak RSS (kB).
lag_sampler() {
    local t rss
    while :; do
        t=$(now)
        src "SELECT slot_name, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name IN ('$SLOT', '$RECV_SLOT')" 2>/dev/null \
            | awk -F'|' -v t="$t" 'NF == 2 { print t, $1, $2 }' >>"$DIR/lag.txt" || true
        rss=$(awk '/^VmRSS/ { r = $2 } /^VmHWM/ { h = $2 } END { if (r != "") print r, h }' "/proc/$RE_DMS_PID/status" 2>/dev/null) || true
        [ -z "$rss" ] || echo "$t $rss" >>"$DIR/rss.txt"
        tick 1000000
    done
}
# Every 250 ms: heartbeats newly visible in the warehouse: id, committed_at, now (epoch seconds).
visible_sampler() {
    local last=0 out
    while :; do
        out=$(wh "SELECT id, extract(epoch FROM committed_at), extract(epoch FROM clock_timestamp()) FROM public.heartbeat WHERE id > $last ORDER BY id") || out=
        if [ -n "$out" ]; then
            printf '%s\n' "$out" | tr '|' ' ' >>"$DIR/visible.txt"
            last=$(printf '%s\n' "$out" | tail -n 1 | cut -d'|' -f1)
        fi
        tick 250000
    done
}
# One heartbeat row a second, each its own transaction.
heartbeat_loop() {
    local i=0
    while :; do
        i=$((i + 1))
        src "INSERT INTO heartbeat VALUES ($i, clock_timestamp())" >/dev/null 2>>"$DIR/heartbeat.err" || true
        tick 1000000
    done
}
: >"$DIR/lag.txt"; : >"$DIR/rss.txt"; : >"$DIR/visible.txt"
lag_sampler & LAG_PID=$!
visible_sampler & VIS_PID=$!
heartbeat_loop & HB_PID=$!

# ------------------------------------------------------------------------------ helpers

# lag_stats SLOT FROM TO -> "p50 p99" in MiB over the samples between FROM and TO
lag_stats() {
    awk -v s="$1" -v a="$2" -v b="$3" '$2 == s && $1 >= a && $1 <= b { print $3 }' "$DIR/lag.txt" | pctl \
        | { read -r n p50 p99 max; echo "$(mib "$p50") / $(mib "$p99") MiB (max $(mib "$max"), $n samples)"; }
}
# latency FROM TO -> "n p50 p99 max" of visible - committed for heartbeats committed between
latency() { awk -v a="$1" -v b="$2" '$2 >= a && $2 <= b { print $3 - $2 }' "$DIR/visible.txt" | pctl; }
committed_between() { src "SELECT count(*) FROM heartbeat WHERE committed_at BETWEEN to_timestamp($1) AND to_timestamp($2)"; }
rate() { if [ "$2" = - ]; then echo -; else calc '%.0f' "$1 / ($2 - $3)"; fi; }
since() { if [ "$1" = - ]; then echo "not reached"; else calc '%.1f s' "$1 - $2"; fi; }
pct() { if [ "$1" = - ] || [ "$2" = - ]; then echo -; else calc '%.0f%%' "100 * $1 / $2"; fi; }
kib_mib() { if [ "$1" = - ] || [ -z "$1" ]; then echo -; else calc '%.0f MiB' "$1 / 1024"; fi; }

WORKLOAD_TABLES="'accounts', 'orders', 'events'"
# What both sides must agree on: rows, and sums that every update and delete moves.
FINGERPRINT_SQL="SELECT (SELECT count(*) || '/' || coalesce(sum(version), 0) FROM public.accounts)
    || ' ' || (SELECT count(*) || '/' || coalesce(sum(version), 0) FROM public.orders)
    || ' ' || (SELECT count(*) || '/' || coalesce(sum(id), 0) FROM public.events)"
src_fp() { src "$FINGERPRINT_SQL"; }
wh_fp() { wh "$FINGERPRINT_SQL" || true; }
rows_of() { echo "$1" | awk '{ split($1, a, "/"); split($2, b, "/"); split($3, c, "/"); print a[1] + b[1] + c[1] }'; }
insert_lsn() { src "SELECT pg_current_wal_insert_lsn()"; }
tup_changes() { src "SELECT sum(n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables WHERE relname IN ($WORKLOAD_TABLES)"; }
# (du exits 1 when a segment is deleted while it counts: the total is still what it saw)
wal_bytes() { { du -sb "$WAL_DIR" 2>/dev/null || true; } | cut -f1; }
slot_lag() { src "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = '$1'"; }

# wait_confirmed LSN TIMEOUT: sets T_RECV and T_REDMS to the moment each slot's
# confirmed_flush_lsn reached LSN ("-" when it did not within TIMEOUT seconds).
wait_confirmed() {
    local lsn=$1 deadline=$((SECONDS + $2)) row
    T_RECV=- T_REDMS=-
    while :; do
        row=$(src "SELECT string_agg(slot_name || '=' || (confirmed_flush_lsn >= '$lsn'::pg_lsn), ' ') FROM pg_replication_slots WHERE slot_name IN ('$SLOT', '$RECV_SLOT')")
        [ "$T_RECV" != - ] || [[ $row != *"$RECV_SLOT=true"* ]] || T_RECV=$(now)
        [ "$T_REDMS" != - ] || [[ $row != *"$SLOT=true"* ]] || T_REDMS=$(now)
        [ "$T_RECV" = - ] || [ "$T_REDMS" = - ] || return 0
        alive "$RE_DMS_PID" || [ "$T_REDMS" != - ] || { log "re_dms exited while waiting for its slot to confirm $lsn"; return 1; }
        alive "$RECV_PID" || [ "$T_RECV" != - ] || { log "pg_recvlogical exited while waiting for its slot to confirm $lsn"; return 1; }
        [ "$SECONDS" -lt "$deadline" ] || { log "not confirmed past $lsn within $2 s (pg_recvlogical: $T_RECV, re_dms: $T_REDMS)"; return 1; }
        sleep 0.1
    done
}

# wait_equal WANT TIMEOUT PROGRESS_EVERY: polls the warehouse until its fingerprint is WANT; sets
# T_EQUAL (or "-") and LAST_WH_FP; prints progress every PROGRESS_EVERY seconds.
wait_equal() {
    local want=$1 start=$SECONDS deadline=$((SECONDS + $2)) every=$3 next_report=$((SECONDS + $3)) got
    T_EQUAL=-
    while :; do
        got=$(wh_fp)
        LAST_WH_FP=$got
        if [ "$got" = "$want" ]; then T_EQUAL=$(now); return 0; fi
        alive "$RE_DMS_PID" || { log "re_dms exited while the target was catching up"; return 1; }
        if [ "$SECONDS" -ge "$deadline" ]; then
            log "the target does not equal the source after $2 s: target ${got:-<no tables>}, source $want"
            return 1
        fi
        if [ "$SECONDS" -ge "$next_report" ]; then
            log "  +$((SECONDS - start)) s: target rows $(rows_of "${got:-0/0 0/0 0/0}") of $(rows_of "$want"), re_dms slot lag $(mib "$(slot_lag "$SLOT")") MiB, WAL on disk $(mib "$(wal_bytes)") MiB, RSS $(rss_now) MiB"
            next_report=$((SECONDS + every))
        fi
        sleep 0.5
    done
}
rss_now() { awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$RE_DMS_PID/status" 2>/dev/null || echo -; }
hwm_kb() { awk '/^VmHWM/ { print $2 }' "/proc/$RE_DMS_PID/status" 2>/dev/null || echo -; }

# run_pgbench PHASE SECONDS [pgbench options...]: runs the workload in the background and
# monitors it (re_dms alive, disk); sets PB_START, PB_END, PB_TX, PB_FAILED, PB_RC.
run_pgbench() {
    local phase=$1 secs=$2
    shift 2
    local cmd=("$PG_BIN/pgbench" -h "$SRC_HOST" -p "$SRC_PORT" -U postgres --no-vacuum
        -c "$CLIENTS" -j "$THREADS" -T "$secs" -P 10 -f "$DIR/workload.sql"
        -D "accounts=$ACCOUNTS" -D "orders0=$ORDERS0" -D "keep=$KEEP" -D "n=$KEEP" -D "phase=$phase"
        "$@" bench)
    local out=$DIR/pgbench_$phase.log
    log "pgbench: $(printf '%q ' "${cmd[@]}")"
    local orders_before
    orders_before=$(src "SELECT count(*) FROM orders")
    PB_START=$(now)
    "${cmd[@]}" >"$out" 2>&1 &
    PGBENCH_PID=$!
    local next_report=$((SECONDS + 10)) avail prog
    REDMS_DIED_DURING=
    STOPPED_FOR_DISK=
    while alive "$PGBENCH_PID"; do
        if [ -n "$RE_DMS_PID" ] && ! alive "$RE_DMS_PID" && [ -z "$REDMS_DIED_DURING" ]; then
            REDMS_DIED_DURING=$(now)
            log "re_dms EXITED during phase $phase; last lines of its log:"
            tail -n 20 "$DIR/re_dms.log" >&2
        fi
        avail=$(df -B1 --output=avail "$DIR" | tail -n 1 | tr -d ' ')
        if [ "$avail" -lt "$DISK_RESERVE" ] && [ -z "$STOPPED_FOR_DISK" ]; then
            STOPPED_FOR_DISK=$(now)
            log "only $(mib "$avail") MiB left on the WAL's disk (reserve $(mib "$DISK_RESERVE") MiB): stopping pgbench early"
            kill -TERM "$PGBENCH_PID" 2>/dev/null || true
        fi
        if [ "$SECONDS" -ge "$next_report" ]; then
            prog=$(grep '^progress:' "$out" | tail -n 1 | cut -d, -f1-2) || true
            log "  ${prog:-pgbench running}; re_dms RSS $(rss_now) MiB, slot lag re_dms $(mib "$(slot_lag "$SLOT")") MiB / pg_recvlogical $(mib "$(slot_lag "$RECV_SLOT")") MiB, WAL on disk $(mib "$(wal_bytes)") MiB"
            next_report=$((SECONDS + 10))
        fi
        sleep 0.1
    done
    PB_RC=0
    wait "$PGBENCH_PID" || PB_RC=$?
    PB_END=$(now)
    PGBENCH_PID=
    PB_TX=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
    PB_FAILED=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out")
    PB_FAILED=${PB_FAILED:-0}
    if [ -z "$PB_TX" ] && [ -n "$STOPPED_FOR_DISK" ]; then
        # Stopped early: no report from pgbench; every transaction inserts exactly one order.
        PB_TX=$(($(src "SELECT count(*) FROM orders") - orders_before))
    fi
    [ -n "$PB_TX" ] || { cat "$out" >&2; die "pgbench printed no transaction count (output above)"; }
    if [ "$PB_RC" -ne 0 ] || grep -q 'aborted' "$out"; then
        log "WARNING: pgbench exited $PB_RC; see $out"
        grep -m 5 -i 'error\|abort' "$out" >&2 || true
    fi
    log "pgbench done: $PB_TX transactions ($PB_FAILED failed) in $(calc '%.1f' "$PB_END - $PB_START") s"
}

# ------------------------------------------------------------------------------ initial rows

log "loading $ACCOUNTS accounts, $ORDERS0 orders and the events each client deletes first (through both slots)"
src "
INSERT INTO accounts SELECT g, 'owner ' || g, 'user' || g || '@example.com', 100.00, 'new', 1,
    'created by benches/live.sh', now(), now() FROM generate_series(1, $ACCOUNTS) g;
INSERT INTO orders (account_id, sku, qty, price, status, version, created_at, payload)
    SELECT g, 'SKU-' || (g % 5000), 1, 9.99, 'new', 1, now(), repeat(md5(g::text), 6)
    FROM generate_series(1, $ORDERS0) g;
INSERT INTO events SELECT p * 1000000000000 + (c + 1) * 1000000000 + k, 1, 'seed', 1,
    repeat(md5(k::text), 8), now()
    FROM generate_series(1::bigint, 3) p, generate_series(0::bigint, $CLIENTS - 1) c, generate_series(1::bigint, $KEEP) k;" >/dev/null
check_consumers
lsn=$(insert_lsn)
wait_confirmed "$lsn" 300 || die "the initial rows were not confirmed by both slots"
want=$(src_fp)
log "waiting until the target holds the initial rows (segments close after segment_max_age_secs = $SEG_AGE s)"
wait_equal "$want" "$CATCHUP_TIMEOUT" 15 || die "the initial rows did not reach the target"
log "target equals source ($want); starting phase 1"

# ------------------------------------------------------------------------------ phase 1

DISK_RESERVE=0
tup0=$(tup_changes)
lsn0=$(insert_lsn)
run_pgbench 1 "$DURATION"
P1_START=$PB_START P1_END=$PB_END P1_TX=$PB_TX P1_FAILED=$PB_FAILED
P1_END_LSN=$(insert_lsn)
P1_WAL=$(src "SELECT pg_wal_lsn_diff('$P1_END_LSN', '$lsn0')::bigint")
P1_CHANGES=$((P1_TX * CHANGES_PER_TX))
P1_SRC_RATE=$(calc '%.0f' "$P1_CHANGES / ($P1_END - $P1_START)")
log "phase 1: $P1_CHANGES changes, source rate $P1_SRC_RATE changes/s, end position $P1_END_LSN; waiting for both consumers to confirm it"
wait_confirmed "$P1_END_LSN" "$CATCHUP_TIMEOUT" || true
P1_T_RECV=$T_RECV P1_T_REDMS=$T_REDMS
P1_WANT=$(src_fp)
P1_T_EQUAL=- P1_EQUAL=no
if [ "$P1_T_REDMS" != - ]; then
    log "pg_recvlogical confirmed it after $(since "$P1_T_RECV" "$P1_START"), re_dms after $(since "$P1_T_REDMS" "$P1_START"); waiting for the target to equal the source"
    if wait_equal "$P1_WANT" "$CATCHUP_TIMEOUT" 15; then P1_T_EQUAL=$T_EQUAL P1_EQUAL=yes; fi
fi
P1_WH=${LAST_WH_FP:-}
P1_HWM=$(hwm_kb)
P1_ALIVE=yes
alive "$RE_DMS_PID" || P1_ALIVE="NO (exited; see re_dms.log)"
P1_TUP=$(($(tup_changes) - tup0))
[ "$P1_TUP" -eq "$P1_CHANGES" ] \
    || log "WARNING: pg_stat_user_tables counts $P1_TUP changes, pgbench $P1_TX x $CHANGES_PER_TX = $P1_CHANGES (statistics are flushed lazily; a failed transaction changes nothing)"

# ------------------------------------------------------------------------------ phase 2

P2_RAN=0
if [ "$OUTAGE_SECS" -gt 0 ] && [ "$P1_EQUAL" != yes ]; then
    log "phase 2 skipped: phase 1 did not end with the target equal to the source"
elif [ "$OUTAGE_SECS" -gt 0 ]; then
    P2_RAN=1
    # Room for the WAL: re_dms keeps the test_decoding text of every change while the target is
    # away. Estimate it as 3x the source's WAL per transaction of phase 1 (the text repeats column
    # names and types), and keep max(2 GiB, 5% of the disk) free.
    read -r disk_size disk_avail < <(df -B1 --output=size,avail "$DIR" | tail -n 1)
    DISK_RESERVE=$(calc '%.0f' "($disk_size / 20 > 2147483648) ? $disk_size / 20 : 2147483648")
    wal_per_tx=$(calc '%.0f' "$P1_WAL / ($P1_TX > 0 ? $P1_TX : 1)")
    tps1=$(calc '%f' "$P1_TX / ($P1_END - $P1_START)")
    need=$(calc '%.0f' "3 * $wal_per_tx * $tps1 * $OUTAGE_SECS")
    room=$((disk_avail - DISK_RESERVE))
    RATE_ARGS=()
    log "WAL directory $WAL_DIR on $(df --output=source,target "$DIR" | tail -n 1 | tr -s ' '): $(mib "$disk_avail") MiB free; estimated need for $OUTAGE_SECS s at phase 1's rate: $(mib "$need") MiB (3 x $wal_per_tx source WAL bytes/tx x $(calc '%.0f' "$tps1") tx/s), reserve $(mib "$DISK_RESERVE") MiB"
    if [ "$room" -le 0 ]; then
        die "not enough disk for phase 2: $(mib "$disk_avail") MiB free, reserve $(mib "$DISK_RESERVE") MiB"
    elif [ "$need" -gt "$room" ]; then
        cap=$(calc '%.0f' "$room / (3 * $wal_per_tx * $OUTAGE_SECS)")
        [ "$cap" -ge 1 ] || cap=1
        RATE_ARGS=(-R "$cap")
        P2_RATE_NOTE="capped with pgbench -R $cap tx/s (the disk holds $(mib "$room") MiB above the reserve)"
    else
        P2_RATE_NOTE="no rate cap (estimated $(mib "$need") MiB of WAL, $(mib "$room") MiB free above the reserve)"
    fi
    log "phase 2 rate: $P2_RATE_NOTE"

    want=$(src_fp)
    [ "$want" = "$(wh_fp)" ] || die "the target does not equal the source before phase 2"
    # Peak RSS of phase 2 alone: reset re_dms's VmHWM (echo 5 > clear_refs, Linux >= 4.0).
    if echo 5 >"/proc/$RE_DMS_PID/clear_refs" 2>/dev/null; then HWM_RESET=1; else HWM_RESET=0; fi
    tup0=$(tup_changes)
    touch "$MAINT_FILE"
    P2_ON=$(now)
    log "redshift-sim maintenance ON ($MAINT_FILE) for $OUTAGE_SECS s, pgbench at full speed"
    run_pgbench 2 "$OUTAGE_SECS" "${RATE_ARGS[@]}"
    P2_TX=$PB_TX P2_FAILED=$PB_FAILED P2_START=$PB_START P2_END=$PB_END
    [ -z "$STOPPED_FOR_DISK" ] || P2_RATE_NOTE="$P2_RATE_NOTE; STOPPED EARLY after $(calc '%.0f' "$STOPPED_FOR_DISK - $P2_START") s: the disk reached its reserve"
    P2_CHANGES=$((P2_TX * CHANGES_PER_TX))
    P2_SRC_RATE=$(calc '%.0f' "$P2_CHANGES / ($P2_END - $P2_START)")
    P2_END_LSN=$(insert_lsn)
    P2_WANT=$(src_fp)
    P2_ALIVE_OUTAGE=yes
    alive "$RE_DMS_PID" || P2_ALIVE_OUTAGE="NO (exited; see re_dms.log)"
    P2_WAL_BYTES=$(wal_bytes)
    P2_HWM_OUTAGE=$(hwm_kb)
    P2_RSS_MAX_OUTAGE=$(awk -v a="$P2_ON" '$1 >= a { if ($2 > m) m = $2 } END { print m + 0 }' "$DIR/rss.txt")
    [ "$HWM_RESET" = 1 ] || P2_HWM_OUTAGE=-
    # While the target is away re_dms still confirms what its WAL holds (ack = "wal").
    P2_T_CONF=-
    if [ "$P2_ALIVE_OUTAGE" = yes ] && wait_confirmed "$P2_END_LSN" 120; then P2_T_CONF=$T_REDMS; fi
    P2_SPILLED=$(grep -c -i 'spill' "$DIR/re_dms.log" || true)
    rm -f "$MAINT_FILE"
    P2_OFF=$(now)
    log "redshift-sim maintenance OFF after $(calc '%.0f' "$P2_OFF - $P2_ON") s; WAL on disk $(mib "$P2_WAL_BYTES") MiB; waiting (up to $CATCHUP_TIMEOUT s) for the target to equal the source"
    P2_T_EQUAL=- P2_EQUAL=no
    if [ "$P2_ALIVE_OUTAGE" = yes ] && wait_equal "$P2_WANT" "$CATCHUP_TIMEOUT" 15; then P2_T_EQUAL=$T_EQUAL P2_EQUAL=yes; fi
    P2_WH=${LAST_WH_FP:-}
    P2_ALIVE_END=yes
    alive "$RE_DMS_PID" || P2_ALIVE_END="NO (exited; see re_dms.log)"
    P2_HWM_ALL=$(hwm_kb)
    P2_TUP=$(($(tup_changes) - tup0))
    [ "$P2_TUP" -eq "$P2_CHANGES" ] \
        || log "WARNING: pg_stat_user_tables counts $P2_TUP changes, pgbench $P2_TX x $CHANGES_PER_TX = $P2_CHANGES"
fi

# ------------------------------------------------------------------------------ phase 3

# wait_slot SLOT LSN PID TIMEOUT: sets T_SLOT to when SLOT's confirmed_flush_lsn reached LSN.
wait_slot() {
    local deadline=$((SECONDS + $4))
    T_SLOT=-
    while :; do
        if [ "$(src "SELECT confirmed_flush_lsn >= '$2'::pg_lsn FROM pg_replication_slots WHERE slot_name = '$1'")" = t ]; then
            T_SLOT=$(now)
            return 0
        fi
        alive "$3" || { log "the consumer of $1 exited"; return 1; }
        [ "$SECONDS" -lt "$deadline" ] || { log "$1 not confirmed past $2 within $4 s"; return 1; }
        sleep 0.1
    done
}

P3_RAN=0
if [ "$BACKLOG_SECS" -gt 0 ] && [ "${P2_EQUAL:-$P1_EQUAL}" = yes ]; then
    P3_RAN=1
    log "phase 3: both consumers stopped, pgbench alone for $BACKLOG_SECS s, then each drains the backlog alone"
    stop_pid "$RECV_PID"
    RECV_PID=
    stop_pid "$RE_DMS_PID" 40
    RE_DMS_PID=
    DISK_RESERVE=0
    run_pgbench 3 "$BACKLOG_SECS"
    P3_TX=$PB_TX
    P3_CHANGES=$((P3_TX * CHANGES_PER_TX))
    P3_END_LSN=$(insert_lsn)
    P3_WANT=$(src_fp)
    P3_BACKLOG=$(slot_lag "$SLOT")
    start_recv
    P3_RECV_START=$(now)
    P3_T_RECV=-
    if wait_slot "$RECV_SLOT" "$P3_END_LSN" "$RECV_PID" "$CATCHUP_TIMEOUT"; then P3_T_RECV=$T_SLOT; fi
    stop_pid "$RECV_PID"
    RECV_PID=
    start_re_dms
    P3_REDMS_START=$(now)
    P3_T_REDMS=- P3_T_EQUAL=- P3_EQUAL=no
    if wait_slot "$SLOT" "$P3_END_LSN" "$RE_DMS_PID" "$CATCHUP_TIMEOUT"; then P3_T_REDMS=$T_SLOT; fi
    if wait_equal "$P3_WANT" "$CATCHUP_TIMEOUT" 15; then P3_T_EQUAL=$T_EQUAL P3_EQUAL=yes; fi
    P3_HWM=$(hwm_kb)
fi

# ------------------------------------------------------------------------------ summary

R_RECV=$(rate "$P1_CHANGES" "$P1_T_RECV" "$P1_START")
R_REDMS=$(rate "$P1_CHANGES" "$P1_T_REDMS" "$P1_START")
R_VIS=$(rate "$P1_CHANGES" "$P1_T_EQUAL" "$P1_START")
read -r LAT_N LAT_P50 LAT_P99 LAT_MAX < <(latency "$P1_START" "$P1_END")
HB1=$(committed_between "$P1_START" "$P1_END")
REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || REV="$REV + uncommitted changes"
WARNS=$(grep -c ' WARN ' "$DIR/re_dms.log" || true)
ERRORS=$(grep -c ' ERROR ' "$DIR/re_dms.log" || true)

{
    echo "## Live replication (\`benches/live.sh\`)"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $NPROC CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)), load average at the end $(cut -d' ' -f1-3 /proc/loadavg); re_dms $REV."
    echo "DURATION=$DURATION OUTAGE_SECS=$OUTAGE_SECS CLIENTS=$CLIENTS. Source: PostgreSQL 15 of the local stack; pgbench --no-vacuum,"
    echo "$CLIENTS clients, 5 row changes per transaction (2 inserts, 2 updates, 1 delete over accounts /"
    echo "orders / events, rows of 300-450 bytes), plus one heartbeat transaction a second. re_dms: slot $SLOT,"
    echo "target redshift (redshift-sim + PostgreSQL + moto, same host), segment_max_age_secs = $SEG_AGE ($SEG_AGE_NOTE),"
    echo "segment_max_bytes = $SEG_BYTES, [batch] max_memory_bytes = $MEM_BUDGET ($(mib "$MEM_BUDGET") MiB), status_interval_secs = 1."
    echo "Reference: pg_recvlogical -s 1 -F 1 into /dev/null on slot $RECV_SLOT of the same database."
    echo
    echo "### Phase 1: full speed, $DURATION s"
    echo
    echo "Changes made: **$P1_CHANGES** ($P1_TX transactions, $P1_FAILED failed; pg_stat_user_tables: $P1_TUP) in $(calc '%.1f' "$P1_END - $P1_START") s:"
    echo "source rate **$P1_SRC_RATE changes/s**; $(mib "$P1_WAL") MiB of source WAL."
    echo
    echo "| consumer | end position reached after | sustained changes/s | slot lag p50 / p99 during pgbench |"
    echo "|---|---|---|---|"
    echo "| pg_recvlogical (confirmed) | $(since "$P1_T_RECV" "$P1_START") | **$R_RECV** | $(lag_stats "$RECV_SLOT" "$P1_START" "$P1_END") |"
    echo "| re_dms (confirmed: in its WAL) | $(since "$P1_T_REDMS" "$P1_START") | **$R_REDMS** | $(lag_stats "$SLOT" "$P1_START" "$P1_END") |"
    echo "| re_dms (visible in the target) | $(since "$P1_T_EQUAL" "$P1_START") | **$R_VIS** | |"
    echo
    echo "re_dms / pg_recvlogical: **$(pct "$R_REDMS" "$R_RECV")** confirmed, $(pct "$R_VIS" "$R_RECV") visible in the target."
    echo "Target equals source (row counts and version/id sums of the three tables): **$P1_EQUAL**${P1_WH:+ (target $P1_WH, source $P1_WANT)}."
    echo "Commit-to-visible (heartbeats committed during pgbench, $LAT_N of $HB1 seen): p50 **$(secs "$LAT_P50") s**, p99 $(secs "$LAT_P99") s, max $(secs "$LAT_MAX") s."
    echo "re_dms peak RSS (VmHWM, start to end of phase 1): **$(kib_mib "$P1_HWM")**; still running: $P1_ALIVE."
    if [ "$P2_RAN" = 1 ]; then
        read -r L2_N _ _ L2_MAX < <(latency "$P2_ON" "$P2_OFF")
        # The first load after the outage: each table's lane retries on its own backoff (up to 60 s).
        FIRST_HB=$(awk -v a="$P2_OFF" '$3 >= a { print $3; exit }' "$DIR/visible.txt")
        echo
        echo "### Phase 2: Redshift in maintenance for $OUTAGE_SECS s under load"
        echo
        echo "Changes during the outage: **$P2_CHANGES** ($P2_TX transactions, $P2_FAILED failed) at $P2_SRC_RATE changes/s; $P2_RATE_NOTE."
        echo "re_dms stayed up: **$P2_ALIVE_OUTAGE** through the outage, **$P2_ALIVE_END** at the end. Log: $WARNS warnings, $ERRORS errors ($P2_SPILLED lines mention spilling)."
        echo "Peak RSS during the outage: **$(kib_mib "$P2_HWM_OUTAGE")** (VmHWM reset at its start; sampled VmRSS max $(kib_mib "$P2_RSS_MAX_OUTAGE")) against the budget [batch] max_memory_bytes = $(mib "$MEM_BUDGET") MiB;"
        echo "peak RSS through the catch-up: $(kib_mib "$P2_HWM_ALL")."
        echo "re_dms WAL on disk at the end of the outage: **$(mib "$P2_WAL_BYTES") MiB**. Its slot still confirmed the source's end $(since "$P2_T_CONF" "$P2_END") after pgbench stopped (slot lag p50 / p99 during the outage: $(lag_stats "$SLOT" "$P2_ON" "$P2_END"))."
        echo "Catch-up after maintenance off, until the target equals the source: **$(since "$P2_T_EQUAL" "$P2_OFF")** (target equals source: **$P2_EQUAL**${P2_WH:+; target $P2_WH, source $P2_WANT}),"
        echo "i.e. $(rate "$P2_CHANGES" "$P2_T_EQUAL" "$P2_OFF") backlog changes/s; the first heartbeat became visible $(since "${FIRST_HB:--}" "$P2_OFF") after maintenance off"
        echo "(a segment still open then waits for its age; a table's lane that failed waits out its own retry backoff, capped at 60 s)."
        echo "Heartbeats of the outage ($L2_N): commit-to-visible max $(secs "$L2_MAX") s."
    fi
    if [ "$P3_RAN" = 1 ]; then
        P3_R_RECV=$(rate "$P3_CHANGES" "$P3_T_RECV" "$P3_RECV_START")
        P3_R_REDMS=$(rate "$P3_CHANGES" "$P3_T_REDMS" "$P3_REDMS_START")
        echo
        echo "### Phase 3: the ceiling, a $BACKLOG_SECS s backlog drained by each consumer alone"
        echo
        echo "Backlog: **$P3_CHANGES** changes ($P3_TX transactions, plus the heartbeats), $(mib "$P3_BACKLOG") MiB of source WAL behind re_dms's slot."
        echo
        echo "| consumer | drained after | changes/s |"
        echo "|---|---|---|"
        echo "| pg_recvlogical (confirmed) | $(since "$P3_T_RECV" "$P3_RECV_START") | **$P3_R_RECV** |"
        echo "| re_dms (confirmed: in its WAL; includes its start and recovery) | $(since "$P3_T_REDMS" "$P3_REDMS_START") | **$P3_R_REDMS** |"
        echo "| re_dms (visible in the target) | $(since "$P3_T_EQUAL" "$P3_REDMS_START") | $(rate "$P3_CHANGES" "$P3_T_EQUAL" "$P3_REDMS_START") |"
        echo
        echo "re_dms / pg_recvlogical: **$(pct "$P3_R_REDMS" "$P3_R_RECV")**. Target equals source: **$P3_EQUAL**. re_dms peak RSS while draining: $(kib_mib "$P3_HWM")."
    fi
} >"$DIR/summary.txt"

echo
echo "==================================================================== summary"
cat "$DIR/summary.txt"
echo "===================================================================="
echo "(saved to $DIR/summary.txt; samples: lag.txt, rss.txt, visible.txt; logs: re_dms.log, pgbench_*.log)"
[ "$P1_EQUAL" = yes ] && { [ "$P2_RAN" = 0 ] || [ "$P2_EQUAL" = yes ]; } \
    && { [ "$P3_RAN" = 0 ] || [ "$P3_EQUAL" = yes ]; } || exit 1
