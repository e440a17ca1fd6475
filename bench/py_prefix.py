"""py_prefix: workload 6 of make bench (stateful), in Python; also writes
the documents the other systems count.

DOCS documents of WORDS random 20-byte words (lowercase ASCII letters,
seeded); each word adds one to the count of each of its prefixes of 1..19
bytes; the result lists the prefixes counted more than 3 times, by count
descending, then by bytes (batchd's prefix_count result). Serial (one
Counter), and with multiprocessing.Pool(2).map: each task counts one
document into its own Counter and returns it (pickled), and the parent
merges them: the state passed around that batchd's per-worker accumulators
avoid. Both are checked against each other on every run.

  py_prefix.py --docs 20 --words 10000 --runs 5
  py_prefix.py --docs 20 --words 10000 --write FILE   (the job body, JSON)
  py_prefix.py ... --expect FILE    (the expected result, JSON, for e2e_objects)
"""
import collections
import json
import multiprocessing as mp

import numpy as np

import bench_common as bc

THRESHOLD = 3
WORD = 20


def documents(n_docs, n_words):
    rng = np.random.default_rng(3000)
    letters = rng.integers(97, 123, size=(n_docs, n_words, WORD), dtype=np.uint8)
    return [[bytes(w).decode("ascii") for w in doc] for doc in letters]


def count(doc):
    c = collections.Counter()
    for w in doc:
        for k in range(1, len(w)):
            c[w[:k]] += 1
    return c


def result(c):
    kept = sorted(((n, p) for p, n in c.items() if n > THRESHOLD), key=lambda t: (-t[0], t[1]))
    return {"threshold": THRESHOLD, "count": len(kept),
            "prefixes": [{"prefix": p, "count": n} for n, p in kept]}


def serial(docs):
    c = collections.Counter()
    for d in docs:
        for w in d:
            for k in range(1, len(w)):
                c[w[:k]] += 1
    return result(c)


def pooled(pool, docs):
    total = collections.Counter()
    for c in pool.map(count, docs):
        total.update(c)
    return result(total)


def main():
    def extra(p):
        p.add_argument("--docs", type=int, default=20)
        p.add_argument("--words", type=int, default=10000)
        p.add_argument("--write")
        p.add_argument("--expect")
    a = bc.args(__doc__, items=1, extra=extra)
    docs = documents(a.docs, a.words)
    if a.write or a.expect:
        if a.write:
            with open(a.write, "w") as f:
                json.dump({"model": "prefix_count", "inputs": docs}, f, separators=(",", ":"))
        if a.expect:
            with open(a.expect, "w") as f:
                json.dump(serial(docs), f, separators=(",", ":"))
        return
    want = serial(docs)
    secs = bc.timed("python serial", a.runs, len(docs), lambda: serial(docs),
                    lambda out: out == want)
    bc.result("w6.py_serial", len(docs), secs)
    with mp.Pool(2) as pool:
        pool.map(count, [["ab"]] * 2)
        secs = bc.timed("Pool(2).map", a.runs, len(docs), lambda: pooled(pool, docs),
                        lambda out: out == want)
    bc.result("w6.py_pool", len(docs), secs)


if __name__ == "__main__":
    main()
