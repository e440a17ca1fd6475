#!/bin/sh
# bench/durability.sh: what the durable store costs a CPU-bound model.
#
# The same exp_sinh job (BENCH_ES_ITEMS items of about 1 ms) end to end
# (submit, wait, fetch every result) on batchd with its store on disk
# (fsync on every commit) and with its store on tmpfs (fsync costs
# nothing), median of BENCH_RUNS runs each, in the same run. Target: no
# measurable difference (the commit is per 20 ms flush, not per item).
# The two runs' results must be identical.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ITEMS=${BENCH_ES_ITEMS:-2000}
RUNS=${BENCH_RUNS:-3}
tmp=$(mktemp -d)
shm=""
pid=""
stop() {
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    pid=""
}
cleanup() {
    stop
    rm -rf "$tmp"
    [ -z "$shm" ] || rm -rf "$shm"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

awk -v n="$ITEMS" 'BEGIN { printf "{\"model\":\"exp_sinh\",\"inputs\":["; for (i = 0; i < n; i++) printf "%s{\"n\":%d}", (i ? "," : ""), 50000 + i % 7; print "]}" }' >"$tmp/job.json"

# run_on DIR NAME: RUNS jobs on a batchd whose store is in DIR; prints the
# median seconds and leaves the last run's results in $tmp/NAME.results
run_on() {
    rm -f "$tmp/port"
    "$BUILD/batchd" --listen 127.0.0.1:0 --port-file "$tmp/port" --data-dir "$1" --workers 2 \
        --model exp_sinh >"$tmp/$2.log" 2>&1 &
    pid=$!
    i=0
    while [ ! -s "$tmp/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    base="http://127.0.0.1:$(cat "$tmp/port")"
    i=0
    until curl -sf "$base/readyz" >/dev/null || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done
    : >"$tmp/$2.times"
    r=0
    while [ $r -lt "$RUNS" ]; do
        t0=$(date +%s.%N)
        id=$(curl -sf -X POST "$base/v1/jobs" -H 'Content-Type: application/json' \
            --data-binary @"$tmp/job.json" | sed 's/.*"id":"\([a-z2-7]*\)".*/\1/')
        i=0
        until curl -sf "$base/v1/jobs/$id" | grep -q '"status":"succeeded"' || [ $i -ge 6000 ]; do
            sleep 0.01
            i=$((i + 1))
        done
        : >"$tmp/$2.results"
        off=0
        while [ "$off" != null ]; do
            curl -sf "$base/v1/jobs/$id/results?offset=$off&limit=10000" >"$tmp/page"
            { tr '{' '\n' <"$tmp/page"; echo; } | sed -n 's/.*"output":\([^}]*\)}.*/\1/p' >>"$tmp/$2.results"
            off=$(sed 's/.*"next_offset":\([0-9a-z]*\)}.*/\1/' "$tmp/page")
        done
        t1=$(date +%s.%N)
        echo "$t1 $t0" | awk '{ printf "%.3f\n", $1 - $2 }' >>"$tmp/$2.times"
        r=$((r + 1))
    done
    stop
    sort -n "$tmp/$2.times" | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}

disk=$(run_on "$tmp/data" disk)
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    shm=$(mktemp -d /dev/shm/batchd-bench.XXXXXX)
    mem=$(run_on "$shm" tmpfs)
else
    echo "durability: no writable /dev/shm: the tmpfs run is skipped" >&2
    mem=""
fi
n=$(wc -l <"$tmp/disk.results")
[ "$n" -eq "$ITEMS" ] || { echo "durability: $n results, expected $ITEMS" >&2; exit 1; }
if [ -n "$mem" ] && ! cmp -s "$tmp/disk.results" "$tmp/tmpfs.results"; then
    echo "durability: the two stores gave different results" >&2
    exit 1
fi
echo
echo "exp_sinh: $ITEMS items of about 1 ms, 2 workers, median of $RUNS runs (submit, run, fetch all)"
printf '%-40s %10s %12s\n' "" "seconds" "items/s"
printf '%-40s %10.3f %12.0f\n' "batchd, store on disk (fsync)" "$disk" "$(echo "$ITEMS $disk" | awk '{ print $1 / $2 }')"
if [ -n "$mem" ]; then
    printf '%-40s %10.3f %12.0f\n' "batchd, store on tmpfs (no fsync cost)" "$mem" "$(echo "$ITEMS $mem" | awk '{ print $1 / $2 }')"
    echo "$mem $disk" | awk '{ r = $1 / $2; printf "%-40s %22.2fx  (target: no measurable difference; %s)\n", "durable / tmpfs (items/s)", r, (r >= 0.95 ? "within 5%" : "differs") }'
fi
