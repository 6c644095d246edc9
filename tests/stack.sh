#!/usr/bin/env bash
# Local test stack for re_dms: a source PostgreSQL 15 (wal_level=logical), a warehouse PostgreSQL
# behind redshift-sim (SQL_ASCII, so varchar(n) counts bytes like Redshift), and moto_server as S3.
#
#   tests/stack.sh up      start everything (idempotent: says so when already up)
#   tests/stack.sh env     print `export` lines for the running stack
#   tests/stack.sh target-config PREFIX
#                          print re_dms's [target], [s3] and [redshift] sections for the running
#                          stack (objects under PREFIX in its bucket; [redshift] comes last)
#   tests/stack.sh down    stop what `up` started (pid files) and remove the state directory
#
# Environment:
#   RE_DMS_STACK_DIR        state directory (default: tests/.stack)
#   RE_DMS_SIM_BIN          redshift-sim binary to run (default: build it with cargo, debug profile)
#   RE_DMS_STACK_WATCH_PID  with `up`: tear the stack down once this process has exited
#   RE_DMS_PG_BIN           PostgreSQL binaries (default: /usr/lib/postgresql/15/bin)
#   RE_DMS_VENV             virtualenv for moto (default: ${XDG_CACHE_HOME:-$HOME/.cache}/re_dms/venv)
#   RE_DMS_STACK_TIMEOUT    seconds to wait for each component (default: 60)
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCRIPT="$SCRIPT_DIR/$(basename "${BASH_SOURCE[0]}")"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
STATE="${RE_DMS_STACK_DIR:-$REPO_DIR/tests/.stack}"
PG_BIN="${RE_DMS_PG_BIN:-/usr/lib/postgresql/15/bin}"
VENV="${RE_DMS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/re_dms/venv}"
BUCKET="${RE_DMS_S3_BUCKET:-re-dms-test}"
TIMEOUT="${RE_DMS_STACK_TIMEOUT:-60}"
MOTO_SPEC='moto[server]>=5.2.5'
MARKER=".re_dms_stack"

log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a PostgreSQL server-side binary: as the postgres user when we are root (initdb refuses root).
as_pg() {
    if is_root; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

tail_log() {
    local file="$1"
    if [ -f "$file" ]; then
        printf -- '--- last lines of %s ---\n' "$file" >&2
        tail -n 30 "$file" >&2 || true
        printf -- '---\n' >&2
    fi
}

fail_component() {
    local component="$1" file="$2" why="$3"
    printf 'stack: error: %s failed to start: %s\n' "$component" "$why" >&2
    tail_log "$file"
    stop_all
    # shellcheck disable=SC2016 # backquotes are text here
    printf 'stack: stopped what had started; logs kept in %s (`%s down` removes it)\n' "$STATE" "$0" >&2
    exit 1
}

pid_alive() {
    local pidfile="$1"
    [ -f "$pidfile" ] || return 1
    local pid
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # A zombie (exited, not yet reaped) answers kill -0 too.
    if [ -r "/proc/$pid/stat" ]; then
        local state
        state="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null || true)"
        [ "$state" != "Z" ] || return 1
    fi
    return 0
}

# ---------------------------------------------------------------- prerequisites

moto_ok() {
    [ -x "$VENV/bin/moto_server" ] && "$VENV/bin/python" - <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
v = tuple(int(x) for x in version("moto").split(".")[:3])
sys.exit(0 if v >= (5, 2, 5) else 1)
EOF
}

ensure_prereqs() {
    local missing=0
    if [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/pg_ctl" ] || [ ! -x "$PG_BIN/psql" ]; then
        if is_root && command -v apt-get >/dev/null; then
            log "PostgreSQL 15 binaries missing in $PG_BIN: installing postgresql-15"
            # Do not let the Debian package create and start a `main` cluster on port 5432.
            mkdir -p /etc/postgresql-common
            if ! grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf; then
                echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
            fi
            apt-get update
            DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-15
        else
            log "missing: PostgreSQL 15 server binaries in $PG_BIN"
            log "  install with: sudo apt-get install -y postgresql-15   (or set RE_DMS_PG_BIN)"
            missing=1
        fi
    fi
    if ! command -v python3 >/dev/null; then
        if is_root && command -v apt-get >/dev/null; then
            apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3 python3-venv
        else
            log "missing: python3   install with: sudo apt-get install -y python3 python3-venv"
            missing=1
        fi
    fi
    [ "$missing" -eq 0 ] || die "prerequisites missing (see above)"

    if ! moto_ok; then
        log "installing $MOTO_SPEC into $VENV"
        mkdir -p "$(dirname "$VENV")"
        if [ ! -x "$VENV/bin/python" ]; then
            if ! python3 -m venv "$VENV" >&2; then
                if is_root && command -v apt-get >/dev/null; then
                    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
                    python3 -m venv "$VENV" >&2
                else
                    die "python3 -m venv failed: install python3-venv (sudo apt-get install -y python3-venv)"
                fi
            fi
        fi
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$MOTO_SPEC" >&2 \
            || die "pip install '$MOTO_SPEC' into $VENV failed"
        moto_ok || die "moto in $VENV is still older than 5.2.5"
    fi
}

sim_binary() {
    if [ -n "${RE_DMS_SIM_BIN:-}" ]; then
        [ -x "$RE_DMS_SIM_BIN" ] || die "RE_DMS_SIM_BIN=$RE_DMS_SIM_BIN is not executable"
        printf '%s\n' "$RE_DMS_SIM_BIN"
        return
    fi
    command -v cargo >/dev/null || die "cargo not found: needed to build redshift-sim (or set RE_DMS_SIM_BIN)"
    log "building redshift-sim (cargo build -p redshift-sim)"
    (cd "$REPO_DIR" && cargo build --quiet -p redshift-sim >&2) || die "cargo build -p redshift-sim failed"
    local target="${CARGO_TARGET_DIR:-$REPO_DIR/target}"
    [ -x "$target/debug/redshift-sim" ] || die "built, but $target/debug/redshift-sim is missing"
    printf '%s\n' "$target/debug/redshift-sim"
}

free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# ---------------------------------------------------------------- components

start_cluster() {
    local name="$1" port="$2" encoding="$3"
    local dir="$STATE/$name"
    local data="$dir/data" sock="$dir/sock" logf="$dir/postgres.log"
    # Unix socket paths are limited to 107 bytes: fall back to a short directory under /tmp.
    if [ "${#sock}" -gt 80 ]; then
        sock="$(mktemp -d /tmp/re_dms_sock.XXXXXX)"
        echo "$sock" >>"$STATE/sockdirs"
    fi
    mkdir -p "$data" "$sock"
    chmod 700 "$data"
    if is_root; then chown -R postgres:postgres "$dir" "$sock"; fi
    if ! as_pg "$PG_BIN/initdb" -D "$data" -U postgres -A trust -E "$encoding" --locale=C \
        --no-sync >"$STATE/$name-initdb.log" 2>&1; then
        fail_component "$name postgres (initdb)" "$STATE/$name-initdb.log" "initdb exited non-zero"
    fi
    cat >>"$data/postgresql.conf" <<EOF

# --- re_dms test stack ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
max_connections = 300
wal_level = logical
max_replication_slots = 64
max_wal_senders = 64
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    cat >"$data/pg_hba.conf" <<EOF
# re_dms test stack: trust, local use only; two roles of the replication tests must give a
# password (md5, SCRAM-SHA-256), so that the client's authentication is tested for real.
host    all             re_dms_md5      127.0.0.1/32    md5
host    replication     re_dms_md5      127.0.0.1/32    md5
host    all             re_dms_scram    127.0.0.1/32    scram-sha-256
host    replication     re_dms_scram    127.0.0.1/32    scram-sha-256
local   all             all                             trust
host    all             all             127.0.0.1/32    trust
local   replication     all                             trust
host    replication     all             127.0.0.1/32    trust
EOF
    if ! as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$logf" -w -t "$TIMEOUT" start >"$STATE/$name-pg_ctl.log" 2>&1; then
        cat "$STATE/$name-pg_ctl.log" >&2 || true
        fail_component "$name postgres" "$logf" "pg_ctl start did not report ready within ${TIMEOUT}s"
    fi
    local i=0
    until "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -lt $((TIMEOUT * 10)) ] || fail_component "$name postgres" "$logf" "not accepting TCP connections on 127.0.0.1:$port"
        sleep 0.1
    done
}

start_moto() {
    local port="$1"
    local logf="$STATE/moto.log"
    setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$logf" 2>&1 &
    echo $! >"$STATE/moto.pid"
    "$VENV/bin/python" - "$port" "$BUCKET" "$TIMEOUT" "$(cat "$STATE/moto.pid")" <<'EOF' 2>>"$logf" \
        || fail_component "moto_server (S3)" "$logf" "not ready on 127.0.0.1:$port or bucket creation failed"
import os, sys, time, urllib.request, urllib.error
port, bucket, timeout, pid = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
base = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + timeout
while True:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("moto_server exited")
    try:
        urllib.request.urlopen(base + "/", timeout=2).read()
        break
    except urllib.error.HTTPError:
        break  # the server answered
    except (urllib.error.URLError, ConnectionError, OSError):
        if time.monotonic() > deadline:
            sys.exit("timed out")
        time.sleep(0.1)
req = urllib.request.Request(f"{base}/{bucket}", method="PUT")
urllib.request.urlopen(req, timeout=5).read()
EOF
}

start_sim() {
    local bin="$1" port="$2" wport="$3" mport="$4"
    local logf="$STATE/sim.log"
    RUST_LOG="${RUST_LOG:-info}" setsid "$bin" --listen "127.0.0.1:$port" \
        --backend "host=127.0.0.1 port=$wport user=postgres dbname=warehouse" \
        --s3-endpoint "http://127.0.0.1:$mport" --region us-east-1 \
        --statement-log "$STATE/sim-statements.log" \
        --maintenance-file "$STATE/maintenance" </dev/null >"$logf" 2>&1 &
    echo $! >"$STATE/sim.pid"
    local i=0
    until "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d warehouse -c 'select 1' >/dev/null 2>&1; do
        pid_alive "$STATE/sim.pid" || fail_component "redshift-sim" "$logf" "process exited"
        i=$((i + 1))
        [ "$i" -lt $((TIMEOUT * 10)) ] || fail_component "redshift-sim" "$logf" "not answering on 127.0.0.1:$port"
        sleep 0.1
    done
}

start_watchdog() {
    local watch="$1"
    if ! kill -0 "$watch" 2>/dev/null; then
        log "RE_DMS_STACK_WATCH_PID=$watch is not running (any more): tearing the stack down"
        cmd_down
        exit 1
    fi
    # shellcheck disable=SC2016 # expanded by the inner bash
    RE_DMS_STACK_DIR="$STATE" setsid bash -c \
        'while kill -0 "$1" 2>/dev/null && ! grep -qE "\) Z " "/proc/$1/stat" 2>/dev/null; do
            sleep 1
         done
         exec "$2" down' \
        re_dms-stack-watchdog "$watch" "$SCRIPT" </dev/null >"$STATE/watchdog.log" 2>&1 &
    echo $! >"$STATE/watchdog.pid"
}

# ---------------------------------------------------------------- commands

is_up() {
    [ -f "$STATE/env" ] && pid_alive "$STATE/sim.pid" && pid_alive "$STATE/moto.pid" \
        && cluster_running source && cluster_running warehouse
}

cluster_running() {
    [ -f "$STATE/$1/data/postmaster.pid" ] \
        && as_pg "$PG_BIN/pg_ctl" -D "$STATE/$1/data" status >/dev/null 2>&1
}

# The daemons started here must not keep the caller's open files: a lock held around
# `make test` (with RE_DMS_STACK_DIR set, the stack outlives the tests) would stay held for as
# long as the stack runs. Close-on-exec descriptors (bash's own script file) are left alone.
close_inherited_fds() {
    local path fd flags
    for path in "/proc/$$/fd"/*; do
        fd="${path##*/}"
        [ "$fd" -gt 2 ] || continue
        flags="$(awk '/^flags:/ {print $2}' "/proc/$$/fdinfo/$fd" 2>/dev/null)" || continue
        [ -n "$flags" ] || continue
        (((8#$flags & 8#2000000) == 0)) || continue
        eval "exec $fd>&-"
    done
}

cmd_up() {
    close_inherited_fds
    if is_up; then
        log "already up (state in $STATE); run \`$0 env\` for the settings"
        return 0
    fi
    if [ -e "$STATE" ]; then
        log "cleaning a stale state directory $STATE"
        cmd_down
    fi
    ensure_prereqs
    local sim
    sim="$(sim_binary)"

    mkdir -p "$STATE"
    touch "$STATE/$MARKER"
    local ports sport wport mport pport
    ports="$(free_ports 4)"
    read -r sport wport mport pport <<<"$ports"

    log "source postgres on 127.0.0.1:$sport"
    start_cluster source "$sport" UTF8
    log "warehouse postgres on 127.0.0.1:$wport"
    start_cluster warehouse "$wport" SQL_ASCII
    "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$wport" -U postgres -d postgres \
        -c 'CREATE DATABASE warehouse' >/dev/null \
        || fail_component "warehouse postgres" "$STATE/warehouse/postgres.log" "CREATE DATABASE warehouse failed"
    log "moto_server (S3) on 127.0.0.1:$mport, bucket $BUCKET"
    start_moto "$mport"
    log "redshift-sim on 127.0.0.1:$pport"
    start_sim "$sim" "$pport" "$wport" "$mport"

    cat >"$STATE/env.tmp" <<EOF
export RE_DMS_STACK_DIR='$STATE'
export RE_DMS_SOURCE_URL='postgres://postgres@127.0.0.1:$sport/postgres'
export RE_DMS_SOURCE_HOST='127.0.0.1'
export RE_DMS_SOURCE_PORT='$sport'
export RE_DMS_WAREHOUSE_URL='postgres://postgres@127.0.0.1:$pport/warehouse'
export RE_DMS_WAREHOUSE_HOST='127.0.0.1'
export RE_DMS_WAREHOUSE_PORT='$pport'
export RE_DMS_WAREHOUSE_BACKEND_URL='postgres://postgres@127.0.0.1:$wport/warehouse'
export RE_DMS_S3_ENDPOINT='http://127.0.0.1:$mport'
export RE_DMS_S3_BUCKET='$BUCKET'
export AWS_ENDPOINT_URL='http://127.0.0.1:$mport'
export AWS_REGION='us-east-1'
export AWS_ACCESS_KEY_ID='test'
export AWS_SECRET_ACCESS_KEY='test'
export AWS_EC2_METADATA_DISABLED='true'
export RE_DMS_SIM_STATEMENT_LOG='$STATE/sim-statements.log'
export RE_DMS_SIM_MAINTENANCE_FILE='$STATE/maintenance'
EOF
    mv "$STATE/env.tmp" "$STATE/env"
    if [ -n "${RE_DMS_STACK_WATCH_PID:-}" ]; then
        start_watchdog "$RE_DMS_STACK_WATCH_PID"
    fi
    log "up (state in $STATE)"
}

cmd_env() {
    is_up || die "the stack is not up (state dir $STATE); run \`$0 up\`"
    cat "$STATE/env"
}

cmd_target_config() {
    local prefix="${1:?usage: $0 target-config PREFIX}"
    is_up || die "the stack is not up (state dir $STATE); run \`$0 up\`"
    # shellcheck disable=SC1091 # written by cmd_up
    (
        . "$STATE/env"
        cat <<TOML
[target]
kind = "redshift"

[s3]
bucket = "$RE_DMS_S3_BUCKET"
prefix = "$prefix"
region = "$AWS_REGION"
endpoint = "$RE_DMS_S3_ENDPOINT"
force_path_style = true

[redshift]
connection = "$RE_DMS_WAREHOUSE_URL"
TOML
    )
}

# Stop a process from a pid file, but only if its command line still names what we started.
stop_pidfile() {
    local pidfile="$1" expect="$2"
    [ -f "$pidfile" ] || return 0
    local pid
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    rm -f "$pidfile"
    [ -n "$pid" ] && [ "$pid" != "$$" ] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$expect"; then
        log "pid $pid from $pidfile is no longer $expect; leaving it alone"
        return 0
    fi
    kill "$pid" 2>/dev/null || true
    local i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -9 "$pid" 2>/dev/null || true
    fi
}

stop_cluster() {
    local data="$STATE/$1/data"
    [ -f "$data/postmaster.pid" ] || return 0
    as_pg "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 \
        || as_pg "$PG_BIN/pg_ctl" -D "$data" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
}

stop_all() {
    stop_pidfile "$STATE/watchdog.pid" re_dms-stack-watchdog
    stop_pidfile "$STATE/sim.pid" redshift-sim
    stop_pidfile "$STATE/moto.pid" moto_server
    stop_cluster source
    stop_cluster warehouse
}

cmd_down() {
    if [ ! -e "$STATE" ]; then
        log "nothing to stop ($STATE does not exist)"
        return 0
    fi
    if [ ! -f "$STATE/$MARKER" ] && [ -n "$(ls -A "$STATE" 2>/dev/null)" ]; then
        die "$STATE was not made by this script (no $MARKER); not touching it"
    fi
    stop_all
    if [ -f "$STATE/sockdirs" ]; then
        while read -r d; do
            case "$d" in /tmp/re_dms_sock.*) rm -rf "$d" ;; esac
        done <"$STATE/sockdirs"
    fi
    rm -rf "$STATE"
    log "down"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    env) cmd_env ;;
    target-config) cmd_target_config "${2:-}" ;;
    *)
        echo "usage: $0 up|down|env|target-config PREFIX" >&2
        exit 2
        ;;
esac
