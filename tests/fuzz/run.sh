#!/bin/sh
# Runs batchd's libFuzzer targets: tests/fuzz/run.sh BINDIR SECONDS [TARGET...]
#
# Each target (default: every BINDIR/fuzz_*) runs for SECONDS, FUZZ_JOBS
# (default 2) at a time, on a working corpus under BINDIR/../work/TARGET
# that starts from the seeds in tests/fuzz/corpus/TARGET: the seeds are
# read, never written, so a run does not litter the repository. Every
# seed is executed first (libFuzzer's start-up), so a crash kept in the
# corpus is a regression test. tests/fuzz/TARGET.dict is used when it
# exists, and tests/fuzz/TARGET.options adds flags (e.g. -max_len).
#
# A crash, a leak, a sanitizer report, a broken contract (FUZZ_ASSERT), a
# slow input (-timeout, 10 s) or an out-of-memory (-rss_limit_mb) makes
# the target fail: its log tail and the saved input (BINDIR/../crashes/)
# are printed. Prints one summary line per target (executions, executions
# per second, corpus size) and exits 1 if any target failed.
set -u
if [ $# -lt 2 ]; then
    echo "usage: $0 BINDIR SECONDS [TARGET...]" >&2
    exit 2
fi
bindir=$1
secs=$2
shift 2
top=$(cd "$(dirname "$0")/../.." && pwd)
root=$(cd "$bindir/.." && pwd)
work=$root/work
crashes=$root/crashes
logs=$root/logs
jobs=${FUZZ_JOBS:-2}
mkdir -p "$work" "$crashes" "$logs"

if [ $# -gt 0 ]; then
    targets=$*
else
    targets=$(cd "$bindir" && ls fuzz_* 2>/dev/null | sort)
fi
if [ -z "$targets" ]; then
    echo "fuzz: no targets in $bindir" >&2
    exit 2
fi

# halt_on_error: the first report ends the run; libFuzzer saves the input.
export ASAN_OPTIONS="${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=0:detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

run_one() {
    t=$1
    seeds=$top/tests/fuzz/corpus/$t
    mkdir -p "$work/$t" "$seeds"
    set -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$crashes/$t-"
    [ -f "$top/tests/fuzz/$t.dict" ] && set -- "$@" -dict="$top/tests/fuzz/$t.dict"
    if [ -f "$top/tests/fuzz/$t.options" ]; then
        # shellcheck disable=SC2046
        set -- "$@" $(cat "$top/tests/fuzz/$t.options")
    fi
    "$bindir/$t" "$@" "$work/$t" "$seeds" >"$logs/$t.log" 2>&1
    echo $? >"$logs/$t.rc"
}

echo "fuzz: $(echo $targets | wc -w) targets, ${secs}s each, $jobs at a time"
running=0
for t in $targets; do
    if [ ! -x "$bindir/$t" ]; then
        echo "fuzz: no binary $bindir/$t" >&2
        echo 2 >"$logs/$t.rc"
        continue
    fi
    rm -f "$logs/$t.rc"
    run_one "$t" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait
        running=0
    fi
done
wait

failed=0
printf '%-22s %8s %12s %10s %8s\n' target result executions exec/s corpus
for t in $targets; do
    rc=$(cat "$logs/$t.rc" 2>/dev/null || echo 2)
    log=$logs/$t.log
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" 2>/dev/null | tail -n 1)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" 2>/dev/null | tail -n 1)
    n=$(ls "$work/$t" 2>/dev/null | wc -l)
    if [ "$rc" = 0 ]; then res=ok; else res=FAILED; failed=1; fi
    printf '%-22s %8s %12s %10s %8s\n' "$t" "$res" "${runs:-?}" "${eps:-?}" "$n"
done
for t in $targets; do
    rc=$(cat "$logs/$t.rc" 2>/dev/null || echo 2)
    [ "$rc" = 0 ] && continue
    echo
    echo "==== $t failed (exit $rc); the end of $logs/$t.log:"
    tail -n 60 "$logs/$t.log"
    ls "$crashes/$t-"* 2>/dev/null | sed 's/^/  saved input: /'
done
if [ "$failed" != 0 ]; then
    echo "fuzz: FAILED (reproduce: BINARY INPUT; keep a fixed input in tests/fuzz/corpus/TARGET/)"
    exit 1
fi
echo "fuzz: ok"
