"""py_square: workload 2 of make bench (trivial items), in Python.

square over range(N) in one process (a list comprehension) and with
multiprocessing.Pool(2).map (its default chunksize), the pool started and
warmed before the clock. Each answer is checked.
"""
import multiprocessing as mp

import bench_common as bc


def square(x):
    return x * x


def main():
    a = bc.args(__doc__, items=1000000)
    n = a.items
    want = [x * x for x in range(n)]
    secs = bc.timed("python serial", a.runs, n, lambda: [square(x) for x in range(n)],
                    lambda out: out == want)
    bc.result("w2.py_serial", n, secs)
    with mp.Pool(2) as pool:
        pool.map(square, range(100))
        secs = bc.timed("Pool(2).map", a.runs, n, lambda: pool.map(square, range(n)),
                        lambda out: out == want)
    bc.result("w2.py_pool", n, secs)


if __name__ == "__main__":
    main()
