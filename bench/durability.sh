#!/bin/sh
# bench/durability.sh: what the durable store costs a CPU-bound model.
#
# The same exp_sinh job (BENCH_ES_ITEMS items of about 1 ms) end to end
# (bench_e2e: submit, wait, fetch and check every result) on two batchds
# up at once, one with its store on disk (fsync on every commit), one with
# its store on tmpfs (fsync costs nothing), in interleaved rounds (disk,
# tmpfs, disk, tmpfs, ...: BENCH_RUNS rounds, default 5); the ratio is the
# median of the per-round ratios with their min-max. Target: no measurable
# difference (the commit is per 20 ms flush, not per item).
#
#   sh bench/durability.sh     (make bench runs it after bench/run.sh, which
#                               builds build/bench/bench_e2e)
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
ITEMS=${BENCH_ES_ITEMS:-2000}
RUNS=${BENCH_RUNS:-5}
E2E=$BUILD/bench/bench_e2e
[ -x "$E2E" ] || { echo "durability: $E2E is missing (sh bench/run.sh builds it)" >&2; exit 1; }
. bench/lib.sh
tmp=$(mktemp -d)
shm=""
pids=""
cleanup() {
    for p in $pids; do stop_pid "$p" batchd; done
    rm -rf "$tmp"
    [ -z "$shm" ] || rm -rf "$shm"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# up DIR NAME: a batchd (exp_sinh, 2 workers) with its store in DIR; sets
# url_up to its URL. Exits 1 when it does not get ready in 30 s.
up() {
    "$BUILD/batchd" --listen 127.0.0.1:0 --port-file "$tmp/$2.port" --data-dir "$1" --workers 2 \
        --model exp_sinh >"$tmp/$2.log" 2>&1 &
    pids="$! $pids"
    i=0
    until [ -s "$tmp/$2.port" ] && curl -sf "http://127.0.0.1:$(cat "$tmp/$2.port")/readyz" >/dev/null; do
        i=$((i + 1))
        [ $i -lt 300 ] || { echo "durability: batchd ($2) did not start" >&2; cat "$tmp/$2.log" >&2; exit 1; }
        sleep 0.1
    done
    url_up="http://127.0.0.1:$(cat "$tmp/$2.port")"
}

if [ ! -d /dev/shm ] || [ ! -w /dev/shm ]; then
    echo "durability: no writable /dev/shm: nothing to compare with" >&2
    exit 0
fi
shm=$(mktemp -d /dev/shm/batchd-bench.XXXXXX)
up "$tmp/data" disk
url_disk=$url_up
up "$shm" tmpfs
url_tmpfs=$url_up
: >"$tmp/all"
r=1
while [ $r -le "$RUNS" ]; do
    for s in disk tmpfs; do
        if [ "$s" = disk ]; then url=$url_disk; else url=$url_tmpfs; fi
        "$E2E" --url "$url" --workload exp_sinh --items "$ITEMS" --runs 1 --key "$s" \
            2>"$tmp/err" | sed -n "s/^RESULT \([a-z]*\) median=\([^ ]*\) .*/\1 $r \2/p" >>"$tmp/all" ||
            { echo "durability: the $s run failed:" >&2; cat "$tmp/err" >&2; exit 1; }
    done
    r=$((r + 1))
done
echo
echo "exp_sinh: $ITEMS items of about 1 ms, 2 workers, $RUNS interleaved rounds (submit, run, fetch and check all)"
awk '
function sortn(a, n,    i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
function medof(a, n) { return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
{ v[$1, $2] = $3; if ($2 > nr) nr = $2 }
END {
    for (r = 1; r <= nr; r++) { d[r] = v["disk", r]; m[r] = v["tmpfs", r]; q[r] = d[r] / m[r] }
    sortn(d, nr); sortn(m, nr); sortn(q, nr)
    printf "%-40s %12.0f items/s  [%.0f-%.0f]\n", "batchd, store on disk (fsync)", medof(d, nr), d[1], d[nr]
    printf "%-40s %12.0f items/s  [%.0f-%.0f]\n", "batchd, store on tmpfs (no fsync cost)", medof(m, nr), m[1], m[nr]
    r = medof(q, nr)
    printf "durable / tmpfs: %.0f, %.0f items/s, %.2fx [%.2f-%.2f] (target: no measurable difference; %s)\n",
        medof(d, nr), medof(m, nr), r, q[1], q[nr], (q[1] <= 1 && q[nr] >= 1) || (r >= 0.95 && r <= 1.05) ? "within the spread" : "differs"
}' "$tmp/all"
