#!/bin/sh
# shellcheck disable=SC2317,SC2015  # steps are called by rounds (bench/lib.sh); A && B || C is meant
# bench/run.sh: make bench. batchd end to end over HTTP beside serial C,
# Python (serial and multiprocessing.Pool(2)) and the hardware limit, for
# each workload, in one run; prints the table (bench/report.sh) and writes
# it with the machine's facts to build/bench/RESULTS.md.
#
#   make bench                        (builds build/batchd first)
#   BENCH_RUNS=3 BENCH_WORKLOADS="1 3" BENCH_DISPATCH_ITEMS=100000 sh bench/run.sh
#
# Workloads (BENCH_WORKLOADS, default "1 2 3 4 5 6 7 8 9"), the systems of
# each timed once per round, A B C A B C ..., for BENCH_RUNS rounds (default
# 5; bench/lib.sh: rounds); the table gives each figure's median and
# min-max, and each ratio as the median of the per-round ratios [min-max]:
#   1 dispatch: echo, chunk_size 1     bench_e2e, py_dispatch.py, ring_limit, phys_ring
#   2 trivial: square in one request   bench_e2e, serial_square, py_square.py
#   3 CPU-bound: exp_sinh ~1 ms items  bench_e2e, serial_exp_sinh, py_exp_sinh.py
#   4 mlp over .npy objects            e2e_objects mlp, serial_mlp, py_mlp.py
#   5 convolve2d of a shared image     e2e_objects convolve, serial_convolve, py_convolve.py
#   6 prefix_count (stateful)          e2e_objects prefix, serial_prefix, py_prefix.py
#   7 polling under load               bench/polling.sh (wrk)
#   8 memory of shared weights         bench/memory.sh
#   9 peers: Celery and Dask           bench/peers.sh, peers.py (one-item, trivial,
#                                      exp_sinh, mlp; kill -9 of a worker)
# batchd's clients (bench_e2e.c, e2e_objects.c) are C (libcurl, jansson), so
# that batchd's figures are batchd's and not a Python client's.
# Sizes come from the BENCH_* variables below (the defaults are the
# published workloads); build/bench/RESULTS.md records the ones used.
#
# batchd is started for each workload on 127.0.0.1 port 0 (--port-file)
# with a temporary --data-dir and only that workload's model, and stopped
# by its PID (SIGTERM, bounded wait, SIGKILL reported as a failure). Every
# wait is bounded. batchd stays up, idle, while the baselines of its
# rounds run.
#
# A workload that cannot run (a model or API not built in, a missing tool)
# prints "not run: <reason>" in the table: no figure is ever made up.
# Exit status: 0 when every workload that could run ran and checked its
# results (a missed target is a ✗ in the table, not a failure: the machine
# is shared and noisy); 1 otherwise.
set -eu

cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
OUT=$BUILD/bench
PY=${BENCH_PYTHON:-/usr/bin/python3}
RUNS=${BENCH_RUNS:-5}
WORKLOADS=${BENCH_WORKLOADS:-1 2 3 4 5 6 7 8 9}
DISPATCH_ITEMS=${BENCH_DISPATCH_ITEMS:-200000}
# The minimal ring moves tens of millions of items a second: 20M take ~1 s.
PHYS_ITEMS=${BENCH_PHYS_ITEMS:-20000000}
PY_DISPATCH_ITEMS=${BENCH_PY_DISPATCH_ITEMS:-20000}
SQUARE_ITEMS=${BENCH_SQUARE_ITEMS:-1000000}
ES_ITEMS=${BENCH_ES_ITEMS:-2000}
PY_ES_ITEMS=${BENCH_PY_ES_ITEMS:-200}
MLP_BATCHES=${BENCH_MLP_BATCHES:-10}
MLP_IMAGES=${BENCH_MLP_IMAGES:-10000}
MLP_SPLIT=${BENCH_MLP_SPLIT:-4}
PY_MLP_RELOAD_BATCHES=${BENCH_PY_MLP_RELOAD_BATCHES:-2}
CONV_ROUNDS=${BENCH_CONV_ROUNDS:-10}
PY_CONV_ROUNDS=${BENCH_PY_CONV_ROUNDS:-1}
CONV_SIZE=${BENCH_CONV_SIZE:-3000}
PREFIX_DOCS=${BENCH_PREFIX_DOCS:-20}
PY_PREFIX_DOCS=${BENCH_PY_PREFIX_DOCS:-4}
PREFIX_WORDS=${BENCH_PREFIX_WORDS:-10000}
# Every request and every wait for a job of batchd's clients gives up
# after this long (a failure, not a figure).
E2E_TIMEOUT_S=${BENCH_E2E_TIMEOUT_S:-120}
# Task slots big enough for an mlp item's output (about 230 bytes an
# image: 2500 images an item make 575 KB, over the 256K default). The
# objects of workloads 4 and 5 (at most 313 MB at once: every batch of
# workload 4 is uploaded before the first is awaited) fit the default
# --object-memory of 1 GiB.
MLP_OPTS="--max-item-bytes 4M"
BENCH_CC=${BENCH_CC:-gcc}
WARN="-Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes -Wmissing-prototypes \
-Wvla -Wformat=2 -Wundef -Wcast-align"
CFLAGS_BENCH="-std=gnu11 -O2 -g $WARN -D_GNU_SOURCE -I. -Iinclude"
# The Python baselines get one BLAS thread per process, as batchd's workers
# have: two processes on two cores, not four threads fighting for them.
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

if [ ! -x "$BUILD/batchd" ] || [ ! -f "$BUILD/libbatchd.a" ]; then
    echo "bench: $BUILD/batchd or $BUILD/libbatchd.a is missing (run: make bench)" >&2
    exit 1
fi
command -v wrk >/dev/null 2>&1 && command -v redis-server >/dev/null 2>&1 &&
    "$PY" -c 'import numpy, scipy, celery, redis, distributed' 2>/dev/null ||
    sh scripts/deps.sh bench

t_start=$(date +%s)
tmp=$(mktemp -d)
res=$tmp/results
: >"$res"
pid=""
fail=0

. bench/lib.sh
. bench/peers.sh

# ---- build ----------------------------------------------------------------

mkdir -p "$OUT"
LIBS="$BUILD/libbatchd.a $(pkg-config --libs jansson sqlite3 libmicrohttpd) -lm -lpthread"
# The mlp model needs cblas: Debian's serial OpenBLAS, as the Makefile links
# it (a threaded BLAS would give the serial baseline more than one core).
BLAS=""
arch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
if [ -d "/usr/lib/$arch/openblas-serial" ]; then
    BLAS="-I/usr/include/$arch/openblas-serial -L/usr/lib/$arch/openblas-serial \
-Wl,-rpath,/usr/lib/$arch/openblas-serial -lopenblas"
fi
build() { # name source extra-flags...
    n=$1 src=$2
    shift 2
    # shellcheck disable=SC2086
    $BENCH_CC $CFLAGS_BENCH -o "$OUT/$n" "$src" "$@" $LIBS $BLAS 2>"$tmp/cc.err" || {
        echo "bench: cannot build $src:" >&2
        head -n 20 "$tmp/cc.err" >&2
        return 1
    }
}
build serial_square bench/serial_square.c
build serial_exp_sinh bench/serial_exp_sinh.c
build ring_limit bench/ring_limit.c
build phys_ring bench/phys_ring.c
# shellcheck disable=SC2046
build bench_e2e bench/bench_e2e.c $(pkg-config --cflags --libs libcurl)
# The baselines of models that may not be on this branch yet, and the
# client of workloads 4-6 (it checks with the mlp and convolve2d kernels).
built_mlp=0 built_conv=0 built_prefix=0 built_e2e=0
[ -f workers/models/model_mlp.h ] && build serial_mlp bench/serial_mlp.c && built_mlp=1
[ -f workers/models/model_convolve2d.h ] && build serial_convolve bench/serial_convolve.c && built_conv=1
[ -f workers/models/model_prefix_count.h ] && build serial_prefix bench/serial_prefix.c && built_prefix=1
# shellcheck disable=SC2046
[ $built_mlp = 1 ] && [ $built_conv = 1 ] &&
    build e2e_objects bench/e2e_objects.c $(pkg-config --cflags --libs libcurl) && built_e2e=1

# ---- the workloads --------------------------------------------------------

# Each workload starts its batchd once, then runs its systems in
# interleaved rounds (bench/lib.sh: rounds): every program is run with
# --runs 1 per round, so every ratio is a median of per-round ratios.
# batchd stays up, idle, while the baselines of its round run.

w1() {
    start_batchd --workers 2 --model echo || { notrun w1.batchd "batchd did not start"; return; }
    w1_phys() { run w1.phys "$OUT/phys_ring" --items "$PHYS_ITEMS" --runs 1 --key w1.phys; }
    w1_ring() { run w1.ring "$OUT/ring_limit" --items "$DISPATCH_ITEMS" --runs 1 --key w1.ring; }
    w1_py() { run w1.py_imap "$PY" bench/py_dispatch.py --items "$PY_DISPATCH_ITEMS" --runs 1; }
    w1_batchd() {
        run w1.batchd "$OUT/bench_e2e" --url "$base" --workload echo --chunk-size 1 \
            --items "$DISPATCH_ITEMS" --runs 1 --key w1.batchd
    }
    rounds w1_phys w1_ring w1_py w1_batchd
    add_startup w1.batchd
    stop_batchd
}

w2() {
    start_batchd --workers 2 --model square || { notrun w2.batchd "batchd did not start"; return; }
    w2_serial() { run w2.serial "$OUT/serial_square" --items "$SQUARE_ITEMS" --runs 1 --key w2.serial; }
    w2_py() { run w2.py "$PY" bench/py_square.py --items "$SQUARE_ITEMS" --runs 1; }
    w2_batchd() {
        run w2.batchd "$OUT/bench_e2e" --url "$base" --workload square --items "$SQUARE_ITEMS" \
            --runs 1 --key w2.batchd
    }
    rounds w2_serial w2_py w2_batchd
    add_startup w2.batchd
    stop_batchd
}

w3() {
    start_batchd --workers 2 --model exp_sinh || { notrun w3.batchd "batchd did not start"; return; }
    w3_serial() { run w3.serial "$OUT/serial_exp_sinh" --items "$ES_ITEMS" --runs 1 --key w3.serial; }
    w3_py() { run w3.py_pool "$PY" bench/py_exp_sinh.py --items "$PY_ES_ITEMS" --runs 1; }
    w3_batchd() {
        run w3.batchd "$OUT/bench_e2e" --url "$base" --workload exp_sinh --items "$ES_ITEMS" \
            --runs 1 --key w3.batchd
    }
    rounds w3_serial w3_py w3_batchd
    add_startup w3.batchd
    stop_batchd
}

# Objects (POST /v1/objects) on this batchd, and the client built? Sets why.
objects_ready() {
    why=""
    if [ $built_e2e = 0 ]; then
        why="bench/e2e_objects.c was not built (see the log above)"
        return
    fi
    code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' -X POST "$base/v1/objects" \
        -H 'Content-Type: application/octet-stream' --data-binary x || true)
    case "$code" in
    404 | 405 | 000) why="the objects API (POST /v1/objects) is not on this branch (got $code)" ;;
    esac
}

w4() {
    if [ ! -f workers/models/model_mlp.h ] || [ ! -x "$BUILD/mkmlp" ]; then
        notrun w4 "the mlp model (workers/models/model_mlp.h, build/mkmlp) is not on this branch yet"
        return
    fi
    "$BUILD/mkmlp" --layers 784,512,10 --out "$tmp/mlp.safetensors" >/dev/null 2>"$tmp/err" || {
        notrun w4 "build/mkmlp failed: $(head -c 200 "$tmp/err")"
        return
    }
    # shellcheck disable=SC2086
    start_batchd --workers 2 $MLP_OPTS --model "mlp:weights=$tmp/mlp.safetensors,load_delay_ms=1000" ||
        { notrun w4.batchd "batchd did not start with the mlp model"; return; }
    objects_ready
    w4_serial() {
        [ "$built_mlp" = 1 ] && run w4.serial "$OUT/serial_mlp" --weights "$tmp/mlp.safetensors" \
            --batches "$MLP_BATCHES" --images "$MLP_IMAGES" --runs 1
        return 0
    }
    w4_py() {
        run w4.py "$PY" bench/py_mlp.py --weights "$tmp/mlp.safetensors" --batches "$MLP_BATCHES" \
            --images "$MLP_IMAGES" --runs 1 --reload-batches "$PY_MLP_RELOAD_BATCHES"
    }
    w4_batchd() {
        run w4.batchd "$OUT/e2e_objects" --url "$base" mlp --weights "$tmp/mlp.safetensors" \
            --batches "$MLP_BATCHES" --images "$MLP_IMAGES" --split "$MLP_SPLIT" --runs 1 \
            --timeout "$E2E_TIMEOUT_S"
    }
    if [ -n "$why" ]; then
        notrun w4.batchd "$why"
        rounds w4_serial w4_py
    else
        rounds w4_serial w4_py w4_batchd
        add_startup w4.batchd
    fi
    stop_batchd
}

w5() {
    if [ ! -f workers/models/model_convolve2d.h ]; then
        notrun w5 "the convolve2d model is not on this branch yet"
        return
    fi
    start_batchd --workers 2 --model convolve2d ||
        { notrun w5.batchd "batchd did not start with the convolve2d model"; return; }
    objects_ready
    w5_serial() {
        [ "$built_conv" = 1 ] && run w5.serial "$OUT/serial_convolve" --size "$CONV_SIZE" \
            --rounds "$CONV_ROUNDS" --runs 1
        return 0
    }
    w5_py() {
        run w5.py "$PY" bench/py_convolve.py --size "$CONV_SIZE" --rounds "$PY_CONV_ROUNDS" --runs 1
    }
    w5_batchd() {
        run w5.batchd "$OUT/e2e_objects" --url "$base" convolve --size "$CONV_SIZE" \
            --rounds "$CONV_ROUNDS" --runs 1 --timeout "$E2E_TIMEOUT_S"
    }
    if [ -n "$why" ]; then
        notrun w5.batchd "$why"
        rounds w5_serial w5_py
    else
        rounds w5_serial w5_py w5_batchd
        add_startup w5.batchd
    fi
    stop_batchd
}

w6() {
    if [ ! -f workers/models/model_prefix_count.h ]; then
        notrun w6 "the prefix_count model is not on this branch yet"
        return
    fi
    "$PY" bench/py_prefix.py --docs "$PREFIX_DOCS" --words "$PREFIX_WORDS" \
        --write "$tmp/docs.json" --expect "$tmp/expect.json" >/dev/null
    # The reduced result (20 documents: about 0.5 MB of prefixes) is bigger
    # than a task slot: batchd passes it through an object.
    start_batchd --workers 2 --model prefix_count ||
        { notrun w6.batchd "batchd did not start with the prefix_count model"; return; }
    w6_serial() {
        [ "$built_prefix" = 1 ] && run w6.serial "$OUT/serial_prefix" --docs "$tmp/docs.json" --runs 1
        return 0
    }
    w6_py() {
        run w6.py "$PY" bench/py_prefix.py --docs "$PY_PREFIX_DOCS" --words "$PREFIX_WORDS" --runs 1
    }
    w6_batchd() {
        run w6.batchd "$OUT/e2e_objects" --url "$base" prefix --docs "$tmp/docs.json" \
            --expect "$tmp/expect.json" --runs 1 --timeout "$E2E_TIMEOUT_S"
    }
    code=$(curl -s -m 10 -o /dev/null -w '%{http_code}' "$base/v1/jobs/none/result" || true)
    if [ "$code" = 405 ] || [ "$code" = 000 ]; then
        notrun w6.batchd "GET /v1/jobs/{id}/result is not on this branch (got $code)"
        rounds w6_serial w6_py
    elif [ $built_e2e = 0 ]; then
        notrun w6.batchd "bench/e2e_objects.c was not built (see the log above)"
        rounds w6_serial w6_py
    else
        rounds w6_serial w6_py w6_batchd
        add_startup w6.batchd
    fi
    stop_batchd
}

w7() {
    if BENCH_RESULTS="$res" BENCH_RUNS="$RUNS" sh bench/polling.sh >"$tmp/poll.out" 2>&1; then
        :
    else
        echo "bench: polling.sh FAILED:" >&2
        tail -n 20 "$tmp/poll.out" >&2
        notrun w7 "bench/polling.sh failed (see the log)"
        fail=1
    fi
}

w8() {
    if BENCH_RESULTS="$res" sh bench/memory.sh >"$tmp/mem.out" 2>&1; then
        :
    else
        echo "bench: memory.sh FAILED:" >&2
        tail -n 20 "$tmp/mem.out" >&2
        notrun w8 "bench/memory.sh failed (see the log)"
        fail=1
    fi
}

for w in $WORKLOADS; do
    case "$w" in
    1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9)
        tw=$(date +%s)
        echo "bench: workload $w ..." >&2
        "w$w"
        echo "bench: workload $w took $(($(date +%s) - tw)) s" >&2
        ;;
    *)
        echo "bench: unknown workload '$w' (1..9)" >&2
        exit 2
        ;;
    esac
done
for w in 1 2 3 4 5 6 7 8 9; do
    case " $WORKLOADS " in
    *" $w "*) ;;
    *) notrun "w$w" "not selected (BENCH_WORKLOADS=$WORKLOADS)" ;;
    esac
done

# ---- the table and bench/RESULTS.md -----------------------------------------

sizes="runs $RUNS per system; 1: $DISPATCH_ITEMS echo items (Python: $PY_DISPATCH_ITEMS); \
2: $SQUARE_ITEMS square items; 3: $ES_ITEMS exp_sinh items (Python: $PY_ES_ITEMS); \
4: $MLP_BATCHES batches of $MLP_IMAGES images, $MLP_SPLIT objects/items each, Python \
Pools 2 halves per batch (reload pool: $PY_MLP_RELOAD_BATCHES batches); \
5: $CONV_ROUNDS rounds of a ${CONV_SIZE}x$CONV_SIZE image (batchd: uploaded once per run; \
Python: $PY_CONV_ROUNDS rounds); \
6: $PREFIX_DOCS documents of $PREFIX_WORDS words (Python: $PY_PREFIX_DOCS); \
7: ${BENCH_POLL_SECONDS:-2} s of wrk per run; 8: ${BENCH_MEM_MB:-200} MB of weights; \
9: $PEER_ONE one-item tasks (batchd: $PEER_ONE_BATCHD), $PEER_TRIV trivial items, $PEER_ES exp_sinh \
items, $PEER_MLP mlp images, $PEER_REL items for the kill -9 check"
elapsed=$(($(date +%s) - t_start))
echo
echo "make bench: batchd against serial C, Python and the limit ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo "sizes: $sizes"
sh bench/report.sh "$res" "$tmp/table.md"
echo "(workloads took $elapsed s)"
cp "$res" "$OUT/results.txt"

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
pyv=$("$PY" -c 'import sys, numpy, scipy; print("Python %s, numpy %s, scipy %s" % (sys.version.split()[0], numpy.__version__, scipy.__version__))' 2>/dev/null || echo "Python baselines unavailable")
{
    echo "# make bench: results"
    echo
    echo "Written by bench/run.sh on $(date -u '+%Y-%m-%d %H:%M UTC'). Ratios within"
    echo "this one run are the point: absolute times on a shared machine are noise."
    echo "Rates are items/s (higher is better) unless the unit says otherwise;"
    echo "median and min-max of the runs; batchd's figures are end to end over HTTP"
    echo "(submit, wait, fetch and check every result)."
    echo
    echo "- CPU: $cpu, $(getconf _NPROCESSORS_ONLN) online cores"
    echo "- memory: $mem"
    echo "- kernel: $(uname -srm)"
    echo "- compiler: $($BENCH_CC --version | head -n 1)"
    echo "- $pyv (OPENBLAS_NUM_THREADS=1)"
    echo "- batchd: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) ($(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo '?'))"
    echo "- sizes: $sizes"
    echo "- the workloads took $elapsed s"
    echo
    cat "$tmp/table.md"
} >"$OUT/RESULTS.md"
echo "bench: wrote $OUT/RESULTS.md (bench/RESULTS.md is the reviewed record of one run)" >&2

if [ $fail -ne 0 ]; then
    echo "bench: FAILED (see above)" >&2
    exit 1
fi
