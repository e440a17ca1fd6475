"""py_exp_sinh: workload 3 of make bench (CPU-bound), in Python.

The exp_sinh model's computation, item for item the same: item i is
n = 50000 + i % 7 and its answer sum_{k=1..n} exp(k/n) * sinh(k/n), added
left to right (math.exp, math.sinh: the plain loop the peers run), with
multiprocessing.Pool(2).map, the pool started and warmed before the clock.
N defaults to 200 (batchd runs 2,000): a Python item takes ~10 ms, and
items/s is what the table compares. Every answer is checked against the
same function run once in the parent before the clock.
"""
import math
import multiprocessing as mp

import bench_common as bc

BASE_N = 50000  # bench/bench_body.h's BENCH_ES_N


def exp_sinh(n):
    s = 0.0
    for k in range(1, n + 1):
        x = k / n
        s += math.exp(x) * math.sinh(x)
    return s


def main():
    a = bc.args(__doc__, items=200)
    items = [BASE_N + i % 7 for i in range(a.items)]
    want = {n: exp_sinh(n) for n in set(items)}

    def check(out):
        return all(abs(v - want[n]) <= 1e-9 * abs(want[n]) for v, n in zip(out, items)) \
            and len(out) == len(items)

    with mp.Pool(2) as pool:
        pool.map(exp_sinh, [10] * 10)
        secs = bc.timed("Pool(2).map", a.runs, len(items), lambda: pool.map(exp_sinh, items),
                        check)
    bc.result("w3.py_pool", len(items), secs)


if __name__ == "__main__":
    main()
