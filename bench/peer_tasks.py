"""peer_tasks: the work items of make bench's peers (workload 9), as plain
functions that Celery (bench/peer_celery.py) and Dask distributed
(bench/peers.py) run in their worker processes: the same code for both, so
the figures compare the systems and not two implementations.

- echo(x): a one-item task (dispatch overhead);
- square_chunk(xs): a chunk of trivial items (x -> x*x);
- exp_sinh_chunk(ns): the CPU-bound items of batchd's exp_sinh model
  (sum_{k=1..n} exp(k/n) sinh(k/n)), vectorized with numpy, as a numpy
  user would write them;
- mlp_classes(path, images): the argmax classes of the mlp 784-512-10 of
  batchd's mlp model; the weights are read once per worker process from
  the same .safetensors file with numpy (bench/mlp_data.py);
- record(i, log): sleeps 20 ms, then appends "i\\n" to log (O_APPEND, one
  write: lines never tear) and returns i: the reliability check counts
  the lines to find the items that ran twice.
"""
import os
import time

import numpy as np

import mlp_data

_layers = {}  # path -> layers: loaded once per worker process


def echo(x):
    return x


def square_chunk(xs):
    return [x * x for x in xs]


def exp_sinh(n):
    x = np.arange(1, n + 1, dtype=np.float64) / n
    return float((np.exp(x) * np.sinh(x)).sum())


def exp_sinh_chunk(ns):
    return [exp_sinh(n) for n in ns]


def mlp_classes(path, images):
    layers = _layers.get(path)
    if layers is None:
        layers = _layers[path] = mlp_data.load_weights(path)
    return mlp_data.forward(layers, images).argmax(axis=1).astype(np.int8)


def record(i, log):
    time.sleep(0.02)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"%d\n" % i)
    finally:
        os.close(fd)
    return i
