"""py_mlp: workload 4 of make bench (expensive initialization), in Python.

The mlp model's forward pass (mlp_data.py: weights read from the same
.safetensors file with numpy, the same 1 s load delay) over BATCHES batches
of IMAGES images, each batch cut in two halves for Pool(2).map:

  w4.py_reload  a Pool whose task loads the model (file + 1 s) on every
                call, the pattern batchd exists to avoid. It runs
                --reload-batches batches (default 2), not all: each call
                pays the 1 s, and items/s is what the table compares.
  w4.py_init    a Pool(2, initializer=...) that loads the model once per
                worker; the images are pickled to the workers per call.

Both pools are created and warmed before the clock; start-up (Pool creation
until both workers are ready; for the initializer pool, that includes each
worker's load) is reported in its own column. All batches are submitted
with map_async before the first is awaited (as batchd's client submits
every job before it waits). Every class is checked against the parent's
own forward pass. BLAS threads: one per process (bench/run.sh sets
OPENBLAS_NUM_THREADS=1), as batchd's workers have.
"""
import multiprocessing as mp
import os
import time

import numpy as np

import bench_common as bc
import mlp_data

_model = None


def _load(path, delay_s):
    layers = mlp_data.load_weights(path)
    time.sleep(delay_s)
    return layers


def init(path, delay_s):
    global _model
    _model = _load(path, delay_s)


def classify_init(x):
    return mlp_data.forward(_model, x).argmax(axis=1)


def classify_reload(args):
    path, delay_s, x = args
    return mlp_data.forward(_load(path, delay_s), x).argmax(axis=1)


def ready(_):
    time.sleep(0.05)
    return os.getpid()


def warm(pool):
    """Returns once both workers answered (the initializer ran in each)."""
    deadline = time.monotonic() + 120
    while len(set(pool.map(ready, range(4), chunksize=1))) < 2:
        if time.monotonic() > deadline:
            raise SystemExit("py_mlp: the pool's workers did not start in 120 s")


def main():
    def extra(p):
        p.add_argument("--weights", required=True)
        p.add_argument("--batches", type=int, default=10)
        p.add_argument("--images", type=int, default=10000)
        p.add_argument("--reload-batches", type=int, default=2)
        p.add_argument("--delay-ms", type=int, default=1000)
    a = bc.args(__doc__, items=1, extra=extra)
    delay = a.delay_ms / 1000.0
    layers = mlp_data.load_weights(a.weights)
    batches = [mlp_data.batch(k, a.images) for k in range(a.batches)]
    probs = [mlp_data.forward(layers, x) for x in batches]

    def check(outs):
        return all(mlp_data.classes_agree(np.concatenate(o), p) for o, p in zip(outs, probs))
    nr = min(a.reload_batches, a.batches)
    t0 = time.perf_counter()
    with mp.Pool(2) as pool:
        warm(pool)
        up = time.perf_counter() - t0

        def run_reload():
            rs = [pool.map_async(classify_reload,
                                 [(a.weights, delay, h) for h in np.array_split(x, 2)])
                  for x in batches[:nr]]
            return [r.get(600) for r in rs]
        secs = bc.timed("Pool, reload per call", a.runs, nr * a.images, run_reload,
                        lambda outs: all(mlp_data.classes_agree(np.concatenate(o), p)
                                         for o, p in zip(outs, probs[:nr])))
    bc.result("w4.py_reload", nr * a.images, secs, startup=up)

    t0 = time.perf_counter()
    with mp.Pool(2, initializer=init, initargs=(a.weights, delay)) as pool:
        warm(pool)
        up = time.perf_counter() - t0

        def run_init():
            rs = [pool.map_async(classify_init, np.array_split(x, 2)) for x in batches]
            return [r.get(600) for r in rs]
        secs = bc.timed("Pool with initializer", a.runs, a.batches * a.images, run_init, check)
    bc.result("w4.py_init", a.batches * a.images, secs, startup=up)


if __name__ == "__main__":
    main()
