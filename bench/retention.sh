#!/bin/sh
# bench/retention.sh: the api process's memory against the number of
# retained finished jobs (issue 13, item 5). Starts batchd (echo, one
# worker, the default --retention of 7 days: nothing expires) on a data dir
# under BENCH_TMP (default /dev/shm when it exists: the store's fsyncs are
# then free, so 200,000 jobs go in within minutes), fills it with tiny
# finished jobs through the real API (bench/retention.c) and prints the
# api process's RSS at BENCH_RETAIN_FROM (default 10000) and
# BENCH_RETAIN_TO (default 200000) retained jobs, and the growth between.
# Target: growth < 5 MB. Nothing is asserted; the figures are printed (and
# appended to BENCH_RESULTS as RESULT lines when it is set).
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
FROM=${BENCH_RETAIN_FROM:-10000}
TO=${BENCH_RETAIN_TO:-200000}
RESULTS=${BENCH_RESULTS:-/dev/null}
base=${BENCH_TMP:-}
if [ -z "$base" ]; then
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then base=/dev/shm; else base=${TMPDIR:-/tmp}; fi
fi
tmp=$(mktemp -d "$base/batchd-retention.XXXXXX")
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

[ -x "$BUILD/batchd" ] || make -s "$BUILD/batchd"
# shellcheck disable=SC2046
cc -std=gnu11 -O2 -Wall -Wextra -Werror -o "$tmp/retention" bench/retention.c \
    $(pkg-config --cflags --libs libcurl jansson) -lpthread

"$BUILD/batchd" --listen 127.0.0.1:0 --port-file "$tmp/port" --data-dir "$tmp/data" \
    --workers 1 --model echo --log-level warn >"$tmp/log" 2>&1 &
pid=$!
i=0
until [ -s "$tmp/port" ] && curl -sf -m 5 "http://127.0.0.1:$(cat "$tmp/port")/readyz" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || [ $i -ge 600 ]; then
        echo "retention: batchd did not get ready; its log:" >&2
        tail -n 20 "$tmp/log" >&2
        exit 1
    fi
    sleep 0.1
    i=$((i + 1))
done
echo "retention: batchd on $tmp (echo, 1 worker); filling it to $FROM, then $TO finished jobs" >&2
"$tmp/retention" --url "http://127.0.0.1:$(cat "$tmp/port")" --supervisor "$pid" \
    --at "$FROM" --at "$(( (FROM + TO) / 2 ))" --at "$TO" --threads 4 | tee "$tmp/out"
grep '^RESULT' "$tmp/out" >>"$RESULTS" || true
stop
