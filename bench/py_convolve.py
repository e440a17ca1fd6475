"""py_convolve: workload 5 of make bench (numerical), in Python.

ROUNDS rounds of a SIZE x SIZE float64 image, each convolved with two 4x4
filters as a scipy user writes it: scipy.signal.convolve2d(image, f)[::5, ::5]
(the full convolution, then every 5th row and column: what batchd's
convolve2d returns). Serial, and with multiprocessing.Pool(2).map of
(image, filter) pairs, which pickles the image to a worker for each item.
The pool is created and warmed before the clock. --rounds defaults to 2
(batchd runs 10): each scipy convolution takes a good part of a second, and
items/s (convolutions per second) is what the table compares. Each run's
results are checked against the first run's.
"""
import multiprocessing as mp

import numpy as np
from scipy import signal

import bench_common as bc

STEP = 5


def image(k, size):
    return np.random.default_rng(2000 + k).random((size, size))


def filters():
    rng = np.random.default_rng(7)
    return [rng.random((4, 4)) for _ in range(2)]


def conv(args):
    img, f = args
    return signal.convolve2d(img, f)[::STEP, ::STEP]


def main():
    def extra(p):
        p.add_argument("--size", type=int, default=3000)
        p.add_argument("--rounds", type=int, default=2)
    a = bc.args(__doc__, items=1, extra=extra)
    images = [image(k, a.size) for k in range(a.rounds)]
    fs = filters()
    tasks = [(img, f) for img in images for f in fs]
    want = None

    def check(out):
        nonlocal want
        if want is None:
            want = out
        return len(out) == len(want) and all(np.allclose(x, y, rtol=1e-12, atol=1e-12)
                                             for x, y in zip(out, want))

    n = len(tasks)
    secs = bc.timed("python serial", a.runs, n, lambda: [conv(t) for t in tasks], check)
    bc.result("w5.py_serial", n, secs)
    with mp.Pool(2) as pool:
        pool.map(conv, [(np.ones((8, 8)), fs[0])] * 2)
        secs = bc.timed("Pool(2).map", a.runs, n, lambda: pool.map(conv, tasks), check)
    bc.result("w5.py_pool", n, secs)


if __name__ == "__main__":
    main()
