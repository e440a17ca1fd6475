#!/usr/bin/python3
"""mlp over N single-image JSON items: per item (batch=0) against run_batch.

Usage: /usr/bin/python3 scripts/mlp_batch_timing.py [N [ROUNDS]]
(after `make`; defaults N=100000, ROUNDS=3). Starts two batchd (2 workers
each, 784-512-10 weights from build/mkmlp), one with mlp batch=0 and one
with batch=1, and runs the same job on each in interleaved rounds (A B A B:
this machine's speed moves between minutes). Prints each round's submit
and run times and the median of the per-round ratios; it asserts nothing
but that every item succeeded. Needs numpy for /usr/bin/python3.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "batchd")
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 3


def start(tmp, name, weights, batch):
    d = os.path.join(tmp, name)
    pf = d + ".port"
    p = subprocess.Popen(
        [BIN, "--listen", "127.0.0.1:0", "--port-file", pf, "--data-dir", d, "--workers", "2",
         "--max-body-bytes", "1G", "--max-items", str(max(N, 1)),
         "--model", "mlp:weights=%s,batch=%d" % (weights, batch)],
        stdout=open(d + ".log", "w"), stderr=subprocess.STDOUT)
    for _ in range(300):
        if os.path.exists(pf) and open(pf).read().strip():
            break
        time.sleep(0.1)
    return p, "http://127.0.0.1:" + open(pf).read().strip()


def req(base, method, path, body=None):
    r = urllib.request.Request(base + path, data=body, method=method,
                               headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(r, timeout=600) as f:
        return json.loads(f.read() or b"null")


def main():
    tmp = tempfile.mkdtemp(prefix="mlp-batch-")
    weights = os.path.join(tmp, "w.safetensors")
    subprocess.run([os.path.join(ROOT, "build", "mkmlp"), "--layers", "784,512,10", "--seed",
                    "1", "--out", weights], check=True, stdout=subprocess.DEVNULL)
    x = np.random.RandomState(1).randint(0, 256, size=(N, 784))
    body = json.dumps({"model": "mlp", "inputs": x.tolist()}).encode()
    print("%d single-image items, body %.1f MB" % (N, len(body) / 1e6), flush=True)
    srv = {b: start(tmp, "b%d" % b, weights, b) for b in (0, 1)}
    runs = {0: [], 1: []}
    try:
        for r in range(ROUNDS):
            for b in (0, 1):
                base = srv[b][1]
                t0 = time.time()
                job = req(base, "POST", "/v1/jobs", body)
                t1 = time.time()
                while True:
                    s = req(base, "GET", "/v1/jobs/" + job["id"])
                    if s["status"] not in ("queued", "running"):
                        break
                    time.sleep(0.02)
                t2 = time.time()
                if s["status"] != "succeeded" or s["counts"]["done"] != N:
                    sys.exit("job did not succeed: %r" % s)
                runs[b].append(t2 - t1)
                print("round %d %-9s submit %6.2f s  run %6.2f s  %8.0f images/s"
                      % (r, "run_batch" if b else "per-item", t1 - t0, t2 - t1, N / (t2 - t1)),
                      flush=True)
    finally:
        for p, _ in srv.values():
            p.terminate()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    ratios = [a / b for a, b in zip(runs[0], runs[1])]
    print("run time, per-item / run_batch: median %.2fx (rounds %s)"
          % (statistics.median(ratios), ", ".join("%.2f" % q for q in ratios)))


if __name__ == "__main__":
    main()
