#!/bin/sh
# bench/polling.sh: status polling under load (issue: faults lose nothing).
#
# While a CPU-bound exp_sinh job keeps every worker busy, wrk polls
# GET /v1/jobs/{id} (plain, then with If-None-Match) and GET /healthz, and
# the table gives requests/s and p50/p99 latency of each, in the same run:
# BENCH_RUNS rounds (default 5) of the three, interleaved, each wrk run
# BENCH_POLL_SECONDS long (default 2); medians, and min-max.
# Targets: status p99 under 5 ms, and at least half the requests/s of
# /healthz.
#
#   BENCH_POLL_SECONDS=2 BENCH_RUNS=5 sh bench/polling.sh  (make bench runs it)
#
# With BENCH_RESULTS=FILE, the figures are also appended to FILE as the
# RESULT lines of bench/report.sh (workload 7 of bench/run.sh): keys
# w7.status, w7.cond, w7.healthz (requests/s) and the same with _p99 (ms).
#
# Exit status: 0 when every measurement ran (a missed target is reported
# with a cross, not as a failure: the machine is shared and noisy).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
SECS=${BENCH_POLL_SECONDS:-2}
RUNS=${BENCH_RUNS:-5}
command -v wrk >/dev/null 2>&1 || sh scripts/deps.sh bench

tmp=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

"$BUILD/batchd" --listen 127.0.0.1:0 --port-file "$tmp/port" --data-dir "$tmp/data" \
    --workers 2 --model exp_sinh >"$tmp/batchd.log" 2>&1 &
pid=$!
i=0
while [ ! -s "$tmp/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -s "$tmp/port" ] || { echo "polling: batchd did not start" >&2; cat "$tmp/batchd.log" >&2; exit 1; }
base="http://127.0.0.1:$(cat "$tmp/port")"
i=0
until curl -sf "$base/readyz" >/dev/null || [ $i -ge 100 ]; do sleep 0.1; i=$((i + 1)); done

# About 4 ms per item: enough work to keep both workers busy through every
# wrk run below (cancelled once they are done).
n_items=$(( (SECS * 3 * RUNS + 10) * 600 ))
awk -v n="$n_items" 'BEGIN { printf "{\"model\":\"exp_sinh\",\"inputs\":["; for (i = 0; i < n; i++) printf "%s{\"n\":200000}", (i ? "," : ""); print "]}" }' >"$tmp/job.json"
id=$(curl -sf -X POST "$base/v1/jobs" -H 'Content-Type: application/json' --data-binary @"$tmp/job.json" |
    sed 's/.*"id":"\([a-z2-7]*\)".*/\1/')
[ -n "$id" ] || { echo "polling: the job was not accepted" >&2; exit 1; }
sleep 1
etag=$(curl -sf -D - -o /dev/null "$base/v1/jobs/$id" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')

# wrk --latency prints "50% 1.23ms" and "99% 4.56ms"; normalised to ms.
run_wrk() { # name url [header]
    if [ $# -ge 3 ]; then
        wrk -t2 -c16 -d"${SECS}s" --latency -H "$3" "$2" >"$tmp/wrk.out" 2>&1
    else
        wrk -t2 -c16 -d"${SECS}s" --latency "$2" >"$tmp/wrk.out" 2>&1
    fi
    awk -v name="$1" '
        function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        $1 == "Requests/sec:" { rps = $2 }
        END { printf "%s %.0f %.3f %.3f\n", name, rps, p50, p99 }' "$tmp/wrk.out"
}

r=0
: >"$tmp/all"
while [ $r -lt "$RUNS" ]; do
    run_wrk status "$base/v1/jobs/$id" >>"$tmp/all"
    run_wrk status-304 "$base/v1/jobs/$id" "If-None-Match: $etag" >>"$tmp/all"
    run_wrk healthz "$base/healthz" >>"$tmp/all"
    r=$((r + 1))
done
running=$(curl -sf "$base/v1/jobs/$id" | sed 's/.*"status":"\([a-z]*\)".*/\1/')
curl -sf -m 10 -X DELETE "$base/v1/jobs/$id" >/dev/null || true

# median NAME COLUMN: "median min max" of a column over the runs of NAME
stats() {
    awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$tmp/all" | sort -g |
        awk '{ a[NR] = $1 } END { m = NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
              printf "%s %s %s %d\n", m, a[1], a[NR], NR }'
}
status="status $(stats status 2 | cut -d' ' -f1) $(stats status 3 | cut -d' ' -f1) $(stats status 4 | cut -d' ' -f1)"
cond="status-304 $(stats status-304 2 | cut -d' ' -f1) $(stats status-304 3 | cut -d' ' -f1) $(stats status-304 4 | cut -d' ' -f1)"
health="healthz $(stats healthz 2 | cut -d' ' -f1) $(stats healthz 3 | cut -d' ' -f1) $(stats healthz 4 | cut -d' ' -f1)"
# One RESULT line per round and endpoint (round=N): bench/report.sh takes
# each ratio per round (bench/lib.sh explains why).
if [ -n "${BENCH_RESULTS:-}" ]; then
    awk '{
        if ($1 == "status") r++
        k = $1 == "status" ? "w7.status" : $1 == "status-304" ? "w7.cond" : "w7.healthz"
        printf "RESULT %s median=%s min=%s max=%s runs=1 unit=req/s round=%d\n", k, $2, $2, $2, r
        printf "RESULT %s_p99 median=%s min=%s max=%s runs=1 unit=ms round=%d\n", k, $4, $4, $4, r
    }' "$tmp/all" >>"$BENCH_RESULTS"
fi

echo
echo "Polling under load: 2 workers busy with exp_sinh (job $running at the end), wrk -t2 -c16 -d${SECS}s, median of $RUNS runs"
printf '%-28s %12s %10s %10s  %s\n' "endpoint" "requests/s" "p50 ms" "p99 ms" "targets"
h_rps=$(echo "$health" | awk '{print $2}')
for line in "$status" "$cond" "$health"; do
    echo "$line" | awk -v h="$h_rps" '{
        name = $1 == "status" ? "GET /v1/jobs/{id}" : $1 == "status-304" ? "  with If-None-Match" : "GET /healthz"
        t = ""
        if ($1 != "healthz") {
            t = sprintf("p99 < 5 ms %s, >= 0.5x healthz %s (%.2fx)", ($4 < 5 ? "✓" : "✗"), ($2 >= 0.5 * h ? "✓" : "✗"), (h > 0 ? $2 / h : 0))
        }
        printf "%-28s %12.0f %10.3f %10.3f  %s\n", name, $2, $3, $4, t }'
done
[ "$running" = running ] || echo "note: the job was $running, not running, at the end: the load may have ended early"
