# shellcheck shell=sh disable=SC2154,SC2034,SC2317
# (sourced: tmp, res, fail, base are the caller's; steps are called by rounds)
# bench/lib.sh: what the scripts of make bench share (sourced by bench/run.sh
# after it sets BUILD, tmp, res, pid and fail).
#
# - start_batchd / stop_batchd: a batchd on 127.0.0.1 port 0 with a fresh
#   --data-dir, stopped by its PID (SIGTERM, bounded wait, SIGKILL
#   reported as a failure);
# - run KEY CMD...: one benchmark program, its RESULT lines kept;
# - rounds STEP...: the interleaving helper. Every ratio of make bench is
#   taken between figures measured in the same round: the steps (shell
#   functions, each timing one system once) run A B C A B C ... for
#   BENCH_RUNS rounds, and each RESULT line gets round=N. bench/report.sh
#   then gives each figure's median over the rounds and each target's
#   median of the per-round ratios with their min-max: this VM's speed
#   moves up to 2x between minutes, so a ratio of two medians taken minutes
#   apart compares windows, not systems.
# - stop_pid PID NAME: stops a server this script started (SIGTERM, up to
#   15 s, then SIGKILL, said);
# - stop_peers: a hook for bench/peers.sh (Celery, Dask, Redis); a no-op
#   until that file replaces it.

ROUND=""
stop_peers() { :; }

# stop_pid PID NAME [SECONDS]: SIGTERM, up to SECONDS (15), then SIGKILL
# (said). Sets stop_status to the process's exit status.
stop_pid() {
    stop_status=0
    kill -TERM "$1" 2>/dev/null || return 0
    i=0
    while kill -0 "$1" 2>/dev/null && [ $i -lt "${3:-15}0" ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$1" 2>/dev/null; then
        echo "bench: $2 (pid $1) still running ${3:-15} s after SIGTERM; sending SIGKILL" >&2
        kill -KILL "$1" 2>/dev/null || true
    fi
    wait "$1" 2>/dev/null || stop_status=$?
}

# rounds STEP...: runs the steps in turn, BENCH_RUNS (RUNS) times; ROUND is
# the round's number while they run (run() tags the RESULT lines with it).
rounds() {
    ROUND=1
    while [ "$ROUND" -le "$RUNS" ]; do
        for step in "$@"; do
            "$step"
        done
        ROUND=$((ROUND + 1))
    done
    ROUND=""
}

# ---- batchd: start, stop ------------------------------------------------

batchd_status=""
stop_batchd() {
    [ -n "$pid" ] || return 0
    stop_pid "$pid" batchd 30
    batchd_status=$stop_status
    pid=""
    if [ "$batchd_status" != 0 ]; then
        echo "bench: batchd exited with status $batchd_status after SIGTERM; its log:" >&2
        tail -n 20 "$tmp/batchd.log" >&2
        fail=1
    fi
}

cleanup() {
    stop_batchd
    stop_peers
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# start_batchd ARGS...: starts batchd with a fresh data dir and ARGS; sets
# pid, base (http://127.0.0.1:PORT) and startup_s (exec to /readyz 200).
# Returns 1 (with the log shown) when it does not get ready in 60 s.
start_batchd() {
    rm -rf "$tmp/port" "$tmp/data"
    t0=$(date +%s.%N)
    "$BUILD/batchd" --listen 127.0.0.1:0 --port-file "$tmp/port" --data-dir "$tmp/data" \
        "$@" >"$tmp/batchd.log" 2>&1 &
    pid=$!
    i=0
    while :; do
        if [ -s "$tmp/port" ]; then
            base="http://127.0.0.1:$(cat "$tmp/port")"
            curl -sf -m 5 "$base/readyz" >/dev/null 2>&1 && break
        fi
        if ! kill -0 "$pid" 2>/dev/null || [ $i -ge 600 ]; then
            echo "bench: batchd $* did not get ready in 60 s; its log:" >&2
            tail -n 20 "$tmp/batchd.log" >&2
            stop_batchd
            return 1
        fi
        sleep 0.1
        i=$((i + 1))
    done
    startup_s=$(echo "$(date +%s.%N) $t0" | awk '{ printf "%.3f", $1 - $2 }')
}

# notrun KEY REASON: the table shows "not run: REASON" for KEY (a system
# such as w4.serial, or a whole workload such as w4).
notrun() {
    k=$1
    shift
    echo "NOTRUN $k $*" >>"$res"
    echo "bench: $k not run: $*" >&2
}

# run KEY CMD...: runs a benchmark program; its RESULT lines go to the
# results (tagged round=N inside `rounds`); a failure is reported, and
# makes the run fail.
run() {
    k=$1
    shift
    if "$@" >"$tmp/out" 2>"$tmp/err"; then
        grep '^RESULT w' "$tmp/out" | sed "s/\$/${ROUND:+ round=$ROUND}/" >>"$res" || true
        grep '^NOTRUN ' "$tmp/out" >>"$res" || true
    else
        echo "bench: $k FAILED: $*" >&2
        tail -n 20 "$tmp/err" >&2
        grep '^NOTRUN ' "$tmp/out" >>"$res" || true
        notrun "$k" "FAILED: $(tail -n 1 "$tmp/err" | cut -c 1-200)"
        fail=1
    fi
}

# The batchd figure gets its start-up time as a column.
add_startup() { # key
    sed -i "/^RESULT $1 /s/\$/ startup_s=$startup_s/" "$res"
}

