#!/bin/sh
# bench/run.sh: the square benchmark. batchd end to end over HTTP beside the
# same work done serially in one C process, measured in the same run.
#
#   make bench                                  (builds build/batchd first)
#   BENCH_ITEMS=1000000 BENCH_RUNS=3 sh bench/run.sh
#
# 1. Builds bench/serial_square.c (linked with build/libbatchd.a for the
#    built-in square model) and bench/bench_e2e.c (libcurl) into build/bench/.
# 2. Starts build/batchd on 127.0.0.1, port 0, with a temporary data dir and
#    only the square model, and waits (bounded) for its port file.
# 3. Runs the serial baseline while batchd is idle, then the HTTP driver;
#    each reports the median of BENCH_RUNS runs.
# 4. Stops batchd by its PID with SIGTERM (SIGKILL only if it has not exited
#    after 30 s, which is reported as a failure) and prints a table.
#
# Exit status: 0 when both benchmarks ran, every result checked out, and
# batchd exited 0 on SIGTERM; 1 otherwise.
set -eu

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=$BUILD/bench
ITEMS=${BENCH_ITEMS:-1000000}
RUNS=${BENCH_RUNS:-3}
BENCH_CC=${BENCH_CC:-gcc}
WARN="-Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes \
-Wvla -Wformat=2 -Wundef -Wcast-align"
CFLAGS_BENCH="-std=gnu11 -O2 -g $WARN -D_GNU_SOURCE"

if [ ! -x "$BUILD/batchd" ] || [ ! -f "$BUILD/libbatchd.a" ]; then
    echo "bench: $BUILD/batchd or $BUILD/libbatchd.a is missing (run: make bench)" >&2
    exit 1
fi

mkdir -p "$OUT"
# shellcheck disable=SC2046,SC2086
$BENCH_CC $CFLAGS_BENCH -Iworkers -Ibench -o "$OUT/serial_square" bench/serial_square.c \
    "$BUILD/libbatchd.a" $(pkg-config --cflags --libs jansson) -lm
# shellcheck disable=SC2046,SC2086
$BENCH_CC $CFLAGS_BENCH -Ibench -o "$OUT/bench_e2e" bench/bench_e2e.c \
    $(pkg-config --cflags --libs jansson libcurl)

tmp=$(mktemp -d)
data=$(mktemp -d)
shm=""
pid=""

# Stops batchd (if still running) by its PID: SIGTERM, a bounded wait, and
# SIGKILL only as a last resort. Sets batchd_status to its exit status.
batchd_status=""
stop_batchd() {
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 300 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "bench: batchd (pid $pid) still running 30 s after SIGTERM; sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    batchd_status=0
    wait "$pid" || batchd_status=$?
    pid=""
}

cleanup() {
    stop_batchd
    rm -rf "$tmp" "$data"
    [ -z "$shm" ] || rm -rf "$shm"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# Starts batchd with its store in $1; sets pid and port.
start_batchd() {
    rm -f "$tmp/port"
    "$BUILD/batchd" --listen 127.0.0.1:0 --port-file "$tmp/port" --data-dir "$1" \
        --model square >"$tmp/batchd.log" 2>&1 &
    pid=$!
    i=0
    while [ ! -s "$tmp/port" ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "bench: batchd exited before writing its port file; its log:" >&2
            tail -n 20 "$tmp/batchd.log" >&2
            pid=""
            exit 1
        fi
        if [ $i -ge 300 ]; then
            echo "bench: no port file after 30 s; batchd's log:" >&2
            tail -n 20 "$tmp/batchd.log" >&2
            exit 1
        fi
        sleep 0.1
        i=$((i + 1))
    done
    port=$(cat "$tmp/port")
    case "$port" in
    '' | *[!0-9]*)
        echo "bench: bad port file content '$port'" >&2
        exit 1
        ;;
    esac
}

start_batchd "$data"
echo "bench: batchd pid $pid on 127.0.0.1:$port; $ITEMS square items, $RUNS runs each" >&2
fail=0
"$OUT/serial_square" --items "$ITEMS" --runs "$RUNS" >"$tmp/serial.out" || fail=1
if [ $fail -eq 0 ]; then
    "$OUT/bench_e2e" --url "http://127.0.0.1:$port" --items "$ITEMS" --runs "$RUNS" \
        >"$tmp/e2e.out" || fail=1
fi

stop_batchd
# The cost of durability: the same run with the store on tmpfs, where an
# fsync costs nothing (the store's CPU work stays: this isolates the disk).
if [ $fail -eq 0 ] && [ "$batchd_status" = 0 ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
    shm=$(mktemp -d /dev/shm/batchd-bench.XXXXXX)
    start_batchd "$shm"
    "$OUT/bench_e2e" --url "http://127.0.0.1:$port" --items "$ITEMS" --runs "$RUNS" |
        sed 's/^RESULT batchd /RESULT tmpfs /' >"$tmp/e2e-tmpfs.out" || fail=1
    stop_batchd
    rm -rf "$shm"
fi
if [ "$batchd_status" != 0 ]; then
    echo "bench: batchd exited with status $batchd_status after SIGTERM (expected 0); its log:" >&2
    tail -n 20 "$tmp/batchd.log" >&2
    fail=1
fi
if [ $fail -ne 0 ]; then
    echo "bench: FAILED" >&2
    exit 1
fi

cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo "?")
touch "$tmp/e2e-tmpfs.out"
cat "$tmp/serial.out" "$tmp/e2e.out" "$tmp/e2e-tmpfs.out" | awk -v items="$ITEMS" -v runs="$RUNS" -v cpus="$cpus" '
function field(line, name,    n, i, kv) {
    n = split(line, kv, " ")
    for (i = 1; i <= n; i++)
        if (index(kv[i], name "=") == 1)
            return substr(kv[i], length(name) + 2)
    return ""
}
$1 == "RESULT" && $2 == "serial" { ss = field($0, "seconds"); sr = field($0, "items_per_s") }
$1 == "RESULT" && $2 == "batchd" {
    bs = field($0, "seconds"); br = field($0, "items_per_s")
    sub_s = field($0, "submit_s"); run_s = field($0, "run_s"); fetch_s = field($0, "fetch_s")
}
$1 == "RESULT" && $2 == "tmpfs" { ts = field($0, "seconds"); tr = field($0, "items_per_s") }
END {
    printf "square: %d items, median of %d runs, %s CPUs\n", items, runs, cpus
    printf "%-44s %10s %14s\n", "", "seconds", "items/s"
    printf "%-44s %10.3f %14.0f\n", "serial, one C process (jansson)", ss, sr
    printf "%-44s %10.3f %14.0f\n", "batchd over HTTP (submit, run, fetch all)", bs, br
    printf "%-44s %10s\n", "  submit / run / fetch+check (s)", \
        sprintf("%.3f / %.3f / %.3f", sub_s, run_s, fetch_s)
    printf "%-44s %25.2fx\n", "batchd / serial (items/s)", br / sr
    if (tr > 0) {
        printf "%-44s %10.3f %14.0f\n", "batchd, store on tmpfs (no fsync cost)", ts, tr
        printf "%-44s %25.2fx  (target >= 0.80: %s)\n", "durable store / tmpfs store (items/s)", \
            br / tr, (br / tr >= 0.8 ? "met" : "missed")
    }
}'
