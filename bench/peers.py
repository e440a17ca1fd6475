"""peers: the client of make bench's peers (workload 9): one timed run of a
workload on Celery or Dask distributed, or the reliability check on any of
them and batchd. bench/peers.sh starts the servers (Redis, a Celery worker,
a Dask scheduler and workers, 2 worker processes each) and calls this once
per round, interleaved with batchd's own client (bench/lib.sh: rounds).

  peers.py run SYSTEM WORKLOAD --items N [--weights F] [--scheduler ADDR]
      SYSTEM celery | dask; WORKLOAD one | triv | cpu | mlp. The clock runs
      from the first submit to the last result read and checked (what a
      client waits for); connecting and a warm-up task come before it.
      Prints the RESULT line of bench_common (key w9.WORKLOAD.SYSTEM).
  peers.py rel SYSTEM --items N --log FILE [--scheduler ADDR] [--url URL]
      SYSTEM celery | celery_late | dask | batchd: N record tasks (one item
      each), kill -9 of one worker process once a third of them have run,
      10 ms after the log line that makes a third (the workers are then
      mid-item: an item takes 20 ms), then every result waited for (bounded). Prints RESULT lines
      w9.rel.SYSTEM_lost (items without a result) and w9.rel.SYSTEM_twice
      (items whose log line appears more than once).

Celery gets BENCH_REDIS_URL (bench/peer_celery.py). Every wait is bounded
(BENCH_PEER_TIMEOUT_S, default 120 s); a wrong answer or a timeout exits 1
and prints no figure.
"""
import argparse
import json
import os
import signal
import sys
import time
import urllib.request

import numpy as np

import bench_common as bc
import mlp_data
import peer_tasks

TIMEOUT = float(os.environ.get("BENCH_PEER_TIMEOUT_S", "120"))
CHUNK_TRIV = 10000  # trivial items per task
CHUNK_CPU = 20      # exp_sinh items per task
BLOCK_MLP = 10000   # images per task
ES_BASE = 50000     # bench/bench_body.h's BENCH_ES_N
REL_WAIT_S = min(TIMEOUT, 30.0)  # the reliability check's wait for results


def celery_app():
    import peer_celery
    peer_celery.echo.delay(0).get(timeout=TIMEOUT)  # warm: a worker answers
    return peer_celery


def dask_client(addr):
    from distributed import Client
    c = Client(addr, timeout=30)
    c.wait_for_workers(2, timeout=30)
    c.submit(peer_tasks.echo, 0, pure=False).result(timeout=TIMEOUT)
    return c


def chunks(xs, k):
    return [xs[i:i + k] for i in range(0, len(xs), k)]


class Runner:
    """submit(fn_name, *args) -> handle; gather(handles) -> outputs in order."""

    def __init__(self, system, scheduler):
        self.system = system
        if system == "celery":
            self.c = celery_app()
        else:
            self.c = dask_client(scheduler)

    def submit(self, name, *args):
        if self.system == "celery":
            return getattr(self.c, name).delay(*args)
        return self.c.submit(getattr(peer_tasks, name), *args, pure=False)

    def gather(self, hs):
        if self.system == "celery":
            deadline = time.monotonic() + TIMEOUT
            return [h.get(timeout=max(1.0, deadline - time.monotonic())) for h in hs]
        return self.c.gather(hs)

    def put(self, a):
        """A large argument: Dask sends it to a worker first (scatter, as
        Dask's documentation advises for big data); Celery pickles it into
        the task message."""
        if self.system == "celery":
            return a
        return self.c.scatter(a)


def cmd_run(a):
    r = Runner(a.system, a.scheduler)
    key = "w9.%s.%s" % (a.workload, a.system)
    n = a.items
    if a.workload == "one":
        t0 = time.perf_counter()
        out = r.gather([r.submit("echo", i) for i in range(n)])
        ok = out == list(range(n))
    elif a.workload == "triv":
        xs = list(range(n))
        t0 = time.perf_counter()
        out = r.gather([r.submit("square_chunk", c) for c in chunks(xs, CHUNK_TRIV)])
        ok = [y for c in out for y in c] == [x * x for x in xs]
    elif a.workload == "cpu":
        ns = [ES_BASE + i % 7 for i in range(n)]
        want = {m: peer_tasks.exp_sinh(m) for m in set(ns)}
        t0 = time.perf_counter()
        out = r.gather([r.submit("exp_sinh_chunk", c) for c in chunks(ns, CHUNK_CPU)])
        flat = [y for c in out for y in c]
        ok = len(flat) == n and all(abs(v - want[m]) <= 1e-9 * abs(want[m]) for v, m in zip(flat, ns))
    elif a.workload == "mlp":
        if not a.weights:
            sys.exit("peers: mlp needs --weights")
        blocks = [mlp_data.batch(k, min(BLOCK_MLP, n - k * BLOCK_MLP))
                  for k in range((n + BLOCK_MLP - 1) // BLOCK_MLP)]
        layers = mlp_data.load_weights(a.weights)
        probs = [mlp_data.forward(layers, b) for b in blocks]  # the reference, before the clock
        t0 = time.perf_counter()
        out = r.gather([r.submit("mlp_classes", a.weights, r.put(b)) for b in blocks])
        ok = all(len(o) == len(b) and mlp_data.classes_agree(o, p)
                 for o, b, p in zip(out, blocks, probs))
    dt = time.perf_counter() - t0
    if not ok:
        sys.exit("peers: %s %s gave a wrong answer" % (a.system, a.workload))
    print("%s %s: %d items in %.3f s (%.0f items/s)" % (a.system, a.workload, n, dt, n / dt),
          file=sys.stderr)
    bc.result(key, n, [dt])
    if a.system == "dask":
        r.c.close()


# ---- reliability -------------------------------------------------------------

def log_lines(path):
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def wait_lines(path, k):
    deadline = time.monotonic() + TIMEOUT
    while len(log_lines(path)) < k:
        if time.monotonic() > deadline:
            sys.exit("peers: %d items never ran" % k)
        time.sleep(0.01)


def worker_pids(system, c, url):
    if system.startswith("celery"):
        stats = c.app.control.inspect(timeout=5).stats() or {}
        return [p for s in stats.values() for p in s["pool"]["processes"]]
    if system == "dask":
        return sorted(c.run(os.getpid).values())
    with urllib.request.urlopen(url + "/v1/workers", timeout=10) as f:
        ws = json.load(f)
    ws = ws.get("workers", ws) if isinstance(ws, dict) else ws
    return [w["coprocess"]["pid"] for w in ws if w.get("coprocess")]


def http(url, body=None):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as f:
        return json.load(f)


def cmd_rel(a):
    n, log = a.items, a.log
    if os.path.exists(log):
        os.unlink(log)
    ok_items = set()
    if a.system == "batchd":
        pids = worker_pids("batchd", None, a.url)
        job = http(a.url + "/v1/jobs", json.dumps(
            {"model": "record", "inputs": list(range(n)), "options": {"chunk_size": 1}}).encode())
        wait_lines(log, n // 3)
        time.sleep(0.01)
        os.kill(pids[0], signal.SIGKILL)
        at_kill = len(log_lines(log))
        deadline = time.monotonic() + TIMEOUT
        while http(a.url + "/v1/jobs/" + job["id"])["status"] in ("queued", "running"):
            if time.monotonic() > deadline:
                sys.exit("peers: the batchd job did not finish")
            time.sleep(0.1)
        off = 0
        while off is not None:
            page = http("%s/v1/jobs/%s/results?limit=10000&offset=%d" % (a.url, job["id"], off))
            for r in page["results"]:
                if "output" in r and r.get("error") is None:
                    ok_items.add(r["output"])
            off = page.get("next_offset")
    else:
        # the pids first: asking for them takes seconds (Celery's inspect
        # waits out its timeout), the kill must land mid-job
        if a.system.startswith("celery"):
            c = celery_app()
            pids = worker_pids(a.system, c, a.url)
            hs = [c.record.delay(i, log) for i in range(n)]
        else:
            c = dask_client(a.scheduler)
            pids = worker_pids(a.system, c, a.url)
            hs = [c.submit(peer_tasks.record, i, log, pure=False) for i in range(n)]
        wait_lines(log, n // 3)
        time.sleep(0.01)  # half an item later: the workers are mid-item
        os.kill(pids[0], signal.SIGKILL)
        at_kill = len(log_lines(log))
        # Every result waited for until one deadline (REL_WAIT_S), then only
        # looked at: an item still without a result is lost (Celery with
        # acks_late may leave a killed child's item unacknowledged in
        # Redis, to be redelivered after the transport's visibility
        # timeout, an hour by default).
        deadline = time.monotonic() + REL_WAIT_S
        for h in hs:
            left = deadline - time.monotonic()
            try:
                if left <= 0 and not (h.ready() if a.system.startswith("celery") else h.done()):
                    raise TimeoutError("no result by the deadline")
                left = max(left, 0.05)
                v = h.get(timeout=left) if a.system.startswith("celery") else h.result(timeout=left)
                ok_items.add(v)
            except Exception as e:  # a lost item: WorkerLostError, a timeout, KilledWorker
                print("peers: %s item lost: %s" % (a.system, type(e).__name__), file=sys.stderr)
        if a.system == "dask":
            c.close()
    seen = log_lines(log)
    counts = np.bincount(np.array(seen, dtype=np.int64), minlength=n) if seen else np.zeros(n)
    lost = n - len(ok_items & set(range(n)))
    twice = int((counts >= 2).sum())
    print("peers: %s: %d items, worker pid %d killed after %d had run: %d lost, %d ran twice, "
          "%d log lines" % (a.system, n, pids[0], at_kill, lost, twice, len(seen)), file=sys.stderr)
    for what, v in (("lost", lost), ("twice", twice)):
        print("RESULT w9.rel.%s_%s median=%d min=%d max=%d runs=1 unit=items n=%d"
              % (a.system, what, v, v, v, n), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cmd", choices=["run", "rel"])
    p.add_argument("system", choices=["celery", "celery_late", "dask", "batchd"])
    p.add_argument("workload", nargs="?", choices=["one", "triv", "cpu", "mlp"])
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--weights")
    p.add_argument("--scheduler", default="")
    p.add_argument("--url", default="")
    p.add_argument("--log", default="")
    a = p.parse_args()
    if a.items < 3:
        p.error("--items must be >= 3")
    if a.cmd == "run":
        if a.system not in ("celery", "dask") or not a.workload:
            p.error("run: SYSTEM celery|dask and a WORKLOAD")
        cmd_run(a)
    else:
        if not a.log:
            p.error("rel: --log FILE")
        cmd_rel(a)


if __name__ == "__main__":
    main()
