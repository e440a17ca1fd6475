# shellcheck shell=sh disable=SC2154,SC2034,SC2317
# (sourced: tmp, res, fail, base are the caller's; steps are called by rounds)
# bench/peers.sh: workload 9 of make bench (sourced by bench/run.sh, after
# bench/lib.sh): batchd against Celery (prefork, Redis broker and backend)
# and Dask distributed, each with 2 worker processes, on the same
# workloads, interleaved in rounds (bench/lib.sh: rounds):
#   one-item tasks; 1M trivial items (submit, run, read every result);
#   CPU-bound exp_sinh; mlp 784-512-10 over 100,000 images (argmax classes)
# and the reliability check: kill -9 of one worker process mid-job, items
# lost and items run twice, for batchd, Celery (defaults and acks_late)
# and Dask.
#
# Every server listens on 127.0.0.1 on a free port, is started here and
# stopped by its PID (SIGTERM, a bounded wait, then SIGKILL). The peers'
# client is bench/peers.py (Debian's /usr/bin/python3 with python3-celery,
# python3-redis, python3-distributed: scripts/deps.sh bench); batchd's
# clients are the C ones of workloads 1-4. Dask's workers run under their
# nanny with its defaults (it sets MALLOC_TRIM_THRESHOLD_=65536).
#
# Sizes (rates are compared, so the slow systems get fewer items where the
# time would otherwise pass ~30 s a round): BENCH_PEER_ONE_ITEMS one-item
# tasks for Celery and Dask (default 1000: they run ~200/s) and
# BENCH_PEER_ONE_BATCHD for batchd (200000); BENCH_PEER_TRIV trivial items
# (1000000, all systems); BENCH_PEER_ES exp_sinh items (1000, all);
# BENCH_PEER_MLP images (100000; Celery: BENCH_PEER_MLP_CELERY, 10000, as
# it moves ~700-1,200 images/s: 100,000 would take 80-140 s a round);
# BENCH_PEER_REL items of the reliability check (600, 20 ms each). Rounds:
# BENCH_PEER_RUNS (default 3: Dask takes 30-100 s a round on 1M trivial
# items). BENCH_PEER_STEPS picks steps (default "one triv cpu mlp rel").

PEER_ONE=${BENCH_PEER_ONE_ITEMS:-1000}
PEER_ONE_BATCHD=${BENCH_PEER_ONE_BATCHD:-200000}
PEER_TRIV=${BENCH_PEER_TRIV:-1000000}
PEER_ES=${BENCH_PEER_ES:-1000}
PEER_MLP=${BENCH_PEER_MLP:-100000}
PEER_MLP_CELERY=${BENCH_PEER_MLP_CELERY:-10000}
PEER_REL=${BENCH_PEER_REL:-600}
PEER_RUNS=${BENCH_PEER_RUNS:-3}
PEER_STEPS=${BENCH_PEER_STEPS:-one triv cpu mlp rel}
peer_pids=""

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_peers() {
    for p in $peer_pids; do
        stop_pid "${p%%:*}" "${p#*:}"
    done
    peer_pids=""
}

start_celery() { # extra environment (e.g. BENCH_CELERY_ACKS_LATE=1)
    env "$@" C_FORCE_ROOT=1 PYTHONPATH=bench BENCH_REDIS_URL="$redis_url" "$PY" -m celery \
        -A peer_celery worker --concurrency 2 --pool prefork --loglevel WARNING \
        --without-gossip --without-mingle --without-heartbeat >"$tmp/celery.log" 2>&1 &
    celery_pid=$!
    peer_pids="$celery_pid:celery $peer_pids"
}

# start_peers: Redis, a Celery worker (2 processes), a Dask scheduler and
# 2 Dask worker processes (1 thread each). Returns 1 when one does not
# come up in 60 s.
start_peers() {
    rport=$(free_port)
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        >"$tmp/redis.log" 2>&1 &
    peer_pids="$!:redis-server $peer_pids"
    redis_url="redis://127.0.0.1:$rport/0"
    i=0
    until redis-cli -p "$rport" ping >/dev/null 2>&1; do
        i=$((i + 1))
        [ $i -lt 300 ] || { echo "bench: redis-server did not start" >&2; return 1; }
        sleep 0.1
    done
    start_celery
    sport=$(free_port)
    scheduler="tcp://127.0.0.1:$sport"
    PYTHONPATH=bench "$PY" -m distributed.cli.dask_scheduler --host 127.0.0.1 --port "$sport" \
        --no-dashboard >"$tmp/dask-scheduler.log" 2>&1 &
    peer_pids="$!:dask-scheduler $peer_pids"
    PYTHONPATH=bench "$PY" -m distributed.cli.dask_worker "$scheduler" --nworkers 2 --nthreads 1 \
        --host 127.0.0.1 --no-dashboard >"$tmp/dask-worker.log" 2>&1 &
    peer_pids="$!:dask-worker $peer_pids"
}

w9() {
    if ! "$PY" -c 'import celery, redis, distributed' 2>/dev/null || ! command -v redis-server >/dev/null; then
        notrun w9 "python3-celery, python3-redis, python3-distributed or redis-server missing (sh scripts/deps.sh bench)"
        return
    fi
    if [ ! -f "$tmp/mlp.safetensors" ]; then
        "$BUILD/mkmlp" --layers 784,512,10 --out "$tmp/mlp.safetensors" >/dev/null 2>&1 ||
            { notrun w9 "build/mkmlp failed"; return; }
    fi
    start_peers || { notrun w9 "the peers did not start (see the log)"; stop_peers; return; }
    # shellcheck disable=SC2086
    peer() { run "w9.$2.$1" env PYTHONPATH=bench BENCH_REDIS_URL="$redis_url" "$PY" bench/peers.py \
        run "$1" "$2" --scheduler "$scheduler" --weights "$tmp/mlp.safetensors" --items "$3"; }

    RUNS_SAVED=$RUNS
    RUNS=$PEER_RUNS
    peer_steps
    RUNS=$RUNS_SAVED
    stop_peers
}

peer_step() { case " $PEER_STEPS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

peer_steps() {
    # each batchd step: its batchd up for the workload, its C client
    peer_step one && {
    start_batchd --workers 2 --model echo || { notrun w9.one.batchd "batchd did not start"; return; }
    w9_one_b() { run w9.one.batchd "$OUT/bench_e2e" --url "$base" --workload echo --chunk-size 1 \
        --items "$PEER_ONE_BATCHD" --runs 1 --key w9.one.batchd; }
    w9_one_c() { peer celery one "$PEER_ONE"; }
    w9_one_d() { peer dask one "$PEER_ONE"; }
    rounds w9_one_b w9_one_c w9_one_d
    stop_batchd
    }
    peer_step triv && {

    start_batchd --workers 2 --model square || { notrun w9.triv.batchd "batchd did not start"; return; }
    w9_triv_b() { run w9.triv.batchd "$OUT/bench_e2e" --url "$base" --workload square \
        --items "$PEER_TRIV" --runs 1 --key w9.triv.batchd; }
    w9_triv_c() { peer celery triv "$PEER_TRIV"; }
    w9_triv_d() { peer dask triv "$PEER_TRIV"; }
    rounds w9_triv_b w9_triv_c w9_triv_d
    stop_batchd
    }
    peer_step cpu && {

    start_batchd --workers 2 --model exp_sinh || { notrun w9.cpu.batchd "batchd did not start"; return; }
    w9_cpu_b() { run w9.cpu.batchd "$OUT/bench_e2e" --url "$base" --workload exp_sinh \
        --items "$PEER_ES" --runs 1 --key w9.cpu.batchd; }
    w9_cpu_c() { peer celery cpu "$PEER_ES"; }
    w9_cpu_d() { peer dask cpu "$PEER_ES"; }
    rounds w9_cpu_b w9_cpu_c w9_cpu_d
    stop_batchd
    }
    peer_step mlp && {

    # shellcheck disable=SC2086
    start_batchd --workers 2 $MLP_OPTS --model "mlp:weights=$tmp/mlp.safetensors" ||
        { notrun w9.mlp.batchd "batchd did not start"; return; }
    objects_ready
    w9_mlp_b() {
        [ -z "$why" ] || { notrun w9.mlp.batchd "$why"; return 0; }
        run w9.mlp.batchd "$OUT/e2e_objects" --url "$base" mlp --weights "$tmp/mlp.safetensors" \
            --batches "$((PEER_MLP / 10000))" --images 10000 --split "$MLP_SPLIT" --runs 1 \
            --timeout "$E2E_TIMEOUT_S" --key w9.mlp.batchd
    }
    w9_mlp_c() { peer celery mlp "$PEER_MLP_CELERY"; }
    w9_mlp_d() { peer dask mlp "$PEER_MLP"; }
    rounds w9_mlp_b w9_mlp_c w9_mlp_d
    stop_batchd
    }
    peer_step rel && {

    # Reliability: one run each (counts, not rates).
    rel() { run "w9.rel.$1" env PYTHONPATH=bench BENCH_REDIS_URL="$redis_url" "$PY" bench/peers.py \
        rel "$@" --items "$PEER_REL" --log "$tmp/rel.log" --scheduler "$scheduler"
        grep '^peers' "$tmp/err" >&2 || true; }
    rel celery
    rel dask
    stop_pid "$celery_pid" celery
    start_celery BENCH_CELERY_ACKS_LATE=1
    rel celery_late
    start_batchd --workers 2 --model \
        "record:python=bench/peer_model.py,interpreter=$PY,log=$tmp/rel.log" ||
        { notrun w9.rel.batchd "batchd did not start with bench/peer_model.py"; return; }
    rel batchd --url "$base"
    stop_batchd
    }
    return 0
}
