# Helpers shared by the benchmark scripts (sourced, not run).

# GNU time (/usr/bin/time) measures peak RSS and CPU seconds; installed when missing and root.
ensure_gnu_time() {
    [ -x /usr/bin/time ] && return 0
    if [ "$(id -u)" = 0 ]; then
        echo "benches: installing GNU time (/usr/bin/time)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null 2>&1 ||
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; }
    else
        echo "benches: /usr/bin/time is missing; install it: sudo apt-get install time" >&2
        exit 2
    fi
}

# median FORMAT: the median of the numbers on stdin, printf-formatted ("-" when none).
median() {
    sort -g | awk -v f="$1\n" '{ v[NR] = $1 } END {
        if (NR == 0) { print "-"; exit }
        printf f, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# warm_input FILE: reads FILE into the page cache, so that every run (re_dms's and gzip's alike)
# starts with its input cached. Some hosts page cold page cache out on their own (the dev VM
# runs DAMON with a pageout scheme): an input read back from disk made the reading thread wait
# tens of milliseconds in some runs and not in others.
warm_input() {
    cat "$1" >/dev/null
}

# flush_capture FILE: writes a just-generated capture to disk before anything is measured. Its
# pages are dirty until the kernel writes them back (the 10m capture is 3.2 GB): that writeback
# would otherwise run during the first measured runs, beside their WAL fsyncs.
flush_capture() {
    sync "$1"
}

# measure TIMEFILE INPUT LOG CMD...: runs CMD < INPUT > LOG 2>&1 under GNU time, INPUT warmed
# first; prints "wall_s peak_rss_mib cpu_s" (cpu = user + system). Fails when CMD fails, showing
# LOG's tail.
measure() {
    local timefile=$1 input=$2 log=$3
    shift 3
    local t0 t1 status=0
    warm_input "$input"
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%e %M %U %S' -o "$timefile" "$@" <"$input" >"$log" 2>&1 || status=$?
    t1=$EPOCHREALTIME
    if [ "$status" -ne 0 ]; then
        echo "benches: $* exited with status $status; last lines of $log:" >&2
        tail -n 20 "$log" >&2
        return 1
    fi
    awk -v a="$t0" -v b="$t1" '{ printf "%.3f %.1f %.2f\n", b - a, $2 / 1024, $3 + $4 }' "$timefile"
}

# changes_in CAPTURE: the row-change messages in a capture (a quoted value may continue on the
# next physical line, but such a line never looks like a change line in the generated data).
changes_in() {
    LC_ALL=C grep -c -E '^table .+: (INSERT|UPDATE|DELETE|TRUNCATE): ' "$1" || true
}

# capture DIR NAME: makes DIR/NAME.txt unless an identical one exists (same generator, arguments
# and generator source); prints its path. NAME: 1m, 10m (gen_capture), wide, toast (gen_shapes).
capture() {
    local dir=$1 name=$2 gen args src=()
    case $name in
        1m) gen=gen_capture args="--changes 1m --seed 1" ;;
        10m) gen=gen_capture args="--changes 10m --seed 1" ;;
        wide) gen=gen_shapes args="--shape wide --changes 100k --seed 1" ;;
        toast) gen=gen_shapes args="--shape toast --changes 200 --seed 1" ;;
        *) echo "benches: unknown workload $name (1m 10m wide toast)" >&2; exit 2 ;;
    esac
    # A generator is one file or a directory of them (gen_capture/).
    if [ -d "examples/$gen" ]; then src=(examples/"$gen"/*.rs); else src=("examples/$gen.rs"); fi
    local file=$dir/$name.txt params
    params="$gen $args $(cat "${src[@]}" examples/capture_text/mod.rs | sha256sum | cut -c1-16)"
    if ! [ -s "$file" ] || [ "$(cat "$file.params" 2>/dev/null)" != "$params" ]; then
        echo "capture: generating $file ($gen $args)" >&2
        rm -f "$file.params"
        # shellcheck disable=SC2086
        "target/release/examples/$gen" $args --quiet >"$file.tmp"
        mv "$file.tmp" "$file"
        flush_capture "$file"
        echo "$params" >"$file.params"
    fi
    echo "$file"
}

# The local target's directories: must match [target] directory and [wal] directory in
# benches/local.toml.
LOCAL_OUT_DIR=target/bench/out
LOCAL_WAL_DIR=target/bench/wal

# local_replay TIMEFILE INPUT LOG: `re_dms --stdin --config benches/local.toml` (the default
# config, local gzipped-CSV target) on INPUT from empty output and WAL directories, measured as
# by `measure`. The output stays until the next replay or `local_clean`.
local_replay() {
    local_clean
    mkdir -p "$LOCAL_OUT_DIR" "$LOCAL_WAL_DIR"
    measure "$1" "$2" "$3" target/release/re_dms --stdin --config benches/local.toml
}

local_clean() {
    rm -rf "$LOCAL_OUT_DIR" "$LOCAL_WAL_DIR"
}
