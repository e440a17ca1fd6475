"""py_dispatch: workload 1 of make bench (dispatch overhead), in Python.

multiprocessing.Pool(2).imap_unordered(f, range(N), chunksize=1) with f the
identity (batchd's echo): one pickled task and one pickled answer per item,
what batchd's chunk_size 1 job measures over HTTP. The pool is started and
warmed before the clock (batchd's workers are also up before its run).
N defaults to 50,000, not batchd's 1,000,000: at the Pool's rate the full
count would take minutes; items/s is what the table compares.
"""
import multiprocessing as mp

import bench_common as bc


def echo(x):
    return x


def main():
    a = bc.args(__doc__, items=50000)
    n = a.items
    with mp.Pool(2) as pool:
        pool.map(echo, range(100))  # warm: both workers forked and running
        secs = bc.timed("imap_unordered(chunksize=1)", a.runs, n,
                        lambda: sorted(pool.imap_unordered(echo, range(n), chunksize=1)),
                        lambda out: out == list(range(n)))
    bc.result("w1.py_imap", n, secs)


if __name__ == "__main__":
    main()
