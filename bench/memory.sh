#!/bin/sh
# bench/memory.sh: workload 8 of make bench, the memory that shared weights
# save. batchd with the mlp model on a large weights file (BENCH_MEM_MB,
# default 200 MB, made by build/mkmlp) and 1, 2, then 4 workers; for each,
# the total PSS (Pss of /proc/PID/smaps_rollup) of the supervisor (which
# mapped the file in load()) and the workers, beside N private copies
# (N x the file's size). Target: 4 workers' total <= 1.2 x one copy; the
# bound 1.2 x the file + 20 MB per worker is printed too.
#
# With BENCH_RESULTS=FILE the figures are appended to FILE as RESULT lines
# (bench/report.sh; keys w8.*, in MB); without the mlp model or mkmlp, a
# NOTRUN line says why.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MB=${BENCH_MEM_MB:-200}
RESULTS=${BENCH_RESULTS:-/dev/stdout}
tmp=$(mktemp -d)
pid=""
. bench/lib.sh
stop() {
    [ -n "$pid" ] || return 0
    stop_pid "$pid" batchd
    pid=""
}
cleanup() {
    stop
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if [ ! -x "$BUILD/mkmlp" ] || [ ! -f workers/models/model_mlp.h ]; then
    echo "NOTRUN w8 the mlp model and build/mkmlp are not on this branch yet" >>"$RESULTS"
    exit 0
fi
# 784 -> H -> 10 in float32 is about 4 x 795 x H bytes: H for MB megabytes.
hidden=$(awk -v mb="$MB" 'BEGIN { printf "%d", mb * 1048576 / (4 * 795) }')
"$BUILD/mkmlp" --layers "784,$hidden,10" --out "$tmp/big.safetensors" >/dev/null
size=$(stat -c %s "$tmp/big.safetensors")
size_mb=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }')
echo "memory: weights file of $size_mb MB (784-$hidden-10, float32)" >&2
echo "RESULT w8.copy1 median=$size_mb min=$size_mb max=$size_mb runs=1 unit=MB" >>"$RESULTS"

# pss PID: its Pss in kB (0 if it is gone)
pss() { awk '/^Pss:/ { print $2; f = 1 } END { if (!f) print 0 }' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }

for n in 1 2 4; do
    rm -rf "$tmp/data" "$tmp/port"
    "$BUILD/batchd" --listen 127.0.0.1:0 --port-file "$tmp/port" --data-dir "$tmp/data" \
        --workers "$n" --model "mlp:weights=$tmp/big.safetensors" >"$tmp/log" 2>&1 &
    pid=$!
    i=0
    until [ -s "$tmp/port" ] && curl -sf -m 5 "http://127.0.0.1:$(cat "$tmp/port")/readyz" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null || [ $i -ge 600 ]; then
            echo "memory: batchd with $n workers did not get ready; its log:" >&2
            tail -n 20 "$tmp/log" >&2
            exit 1
        fi
        sleep 0.1
        i=$((i + 1))
    done
    base="http://127.0.0.1:$(cat "$tmp/port")"
    # one image through every worker's pages: the weights are read, not just mapped
    awk 'BEGIN { printf "{\"model\":\"mlp\",\"inputs\":["; for (k = 0; k < 64; k++) { printf "%s[", k ? "," : ""; for (j = 0; j < 784; j++) printf "%s%d", j ? "," : "", (j * k) % 255; printf "]" } print "],\"options\":{\"chunk_size\":1}}" }' >"$tmp/job.json"
    curl -sf -m 60 -X POST "$base/v1/jobs" -H 'Content-Type: application/json' \
        --data-binary @"$tmp/job.json" >/dev/null
    sleep 2
    pids="$pid $(curl -sf -m 10 "$base/v1/workers" | tr ',{' '\n\n' | sed -n 's/^"pid":\([0-9]*\).*/\1/p')"
    total=0
    for p in $pids; do total=$((total + $(pss "$p"))); done
    mb=$(awk -v k="$total" 'BEGIN { printf "%.1f", k / 1024 }')
    echo "memory: $n worker(s): processes $pids, total PSS $mb MB" >&2
    echo "RESULT w8.pss$n median=$mb min=$mb max=$mb runs=1 unit=MB" >>"$RESULTS"
    copies=$(awk -v s="$size_mb" -v n="$n" 'BEGIN { printf "%.1f", s * n }')
    [ "$n" = 1 ] || echo "RESULT w8.copies$n median=$copies min=$copies max=$copies runs=1 unit=MB" >>"$RESULTS"
    stop
done
bound=$(awk -v s="$size_mb" 'BEGIN { printf "%.1f", 1.2 * s + 20 * 4 }')
echo "RESULT w8.bound4 median=$bound min=$bound max=$bound runs=1 unit=MB" >>"$RESULTS"
