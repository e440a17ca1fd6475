"""bench/python_host.py: Python models through batchd's coprocess host
(docs/coprocess.md) beside multiprocessing.Pool, interleaved (A B A B ...),
median of the per-round ratios (house style rule 19).

    /usr/bin/python3 bench/python_host.py [a] [b] [c]     (after make)

  a  N trivial items (BENCH_PY_ITEMS, default 1,000,000) through a Python
     run_batch model over HTTP (one JSON request, results read back as
     NDJSON) vs Pool(2).map of the same function; target >= 0.2x Pool's
     throughput; prints the per-item overhead.
  c  total PSS of 4 Python workers sharing a model of BENCH_PY_MODEL_MB
     (default 200) MB loaded once (host + 4 children) vs Pool(4) with an
     initializer that loads it in each process; target <= 1.3 copies.

  b  the numpy mlp of examples/python/mlp.py through batchd, BENCH_PY_IMAGES
     (default 20,000) 28x28 float32 images uploaded as .npy objects of 100
     images each, vs Pool(2) with an initializer that loads the same weights
     and the same Python, the images pickled to it; target >= 1.5x, with
     output=class (an int per image) on both sides; the full output (class
     and 10 probabilities per image) is measured too, for information. The
     upload is timed apart and printed (the target counts the job and
     reading its results back).

Figures are printed, never asserted: the machine is shared and noisy.
"""
import json
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCHD = os.path.join(ROOT, os.environ.get("BUILD", "build"), "batchd")
PY = "/usr/bin/python3"
ROUNDS = int(os.environ.get("BENCH_PY_ROUNDS", "3"))


def http(port, method, path, body=None, ctype="application/json", timeout=600):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body,
                                 method=method, headers={"Content-Type": ctype})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


class Batchd:
    def __init__(self, models, tmp):
        self.tmp = tmp
        portfile = os.path.join(tmp, "port")
        args = [BATCHD, "--listen", "127.0.0.1:0", "--port-file", portfile,
                "--data-dir", os.path.join(tmp, "data")]
        for m in models:
            args += ["--model", m]
        self.log = open(os.path.join(tmp, "batchd.log"), "w")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=self.log)
        t0 = time.time()
        while time.time() - t0 < 120:
            try:
                self.port = int(open(portfile).read())
                http(self.port, "GET", "/readyz", timeout=5)
                return
            except (OSError, ValueError):
                time.sleep(0.2)
        raise RuntimeError("batchd did not become ready (see %s)" % self.log.name)

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            print("  batchd did not stop in 30 s: killed")
        self.log.close()


# ------------------------------------------------------------------ a

def square(x):
    return x * x


def bench_a(tmp):
    n = int(os.environ.get("BENCH_PY_ITEMS", "1000000"))
    mod = os.path.join(tmp, "sq.py")
    with open(mod, "w") as f:
        f.write("def run_batch(state, items):\n    return [x * x for x in items]\n")
    body = json.dumps({"model": "sq", "inputs": list(range(n))}).encode()
    want = sum(x * x for x in range(n))
    b = Batchd(["sq:python=%s,interpreter=%s,workers=2" % (mod, PY)], tmp)
    ratios, bd_t, pool_t = [], [], []
    try:
        for r in range(ROUNDS):
            t0 = time.perf_counter()
            job = json.loads(http(b.port, "POST", "/v1/jobs", body))
            while True:
                st = json.loads(http(b.port, "GET", "/v1/jobs/" + job["id"]))
                if st["status"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.02)
            t_run = time.perf_counter() - t0
            # all results, as one NDJSON stream
            got = sum(json.loads(line)["output"] for line in
                      http(b.port, "GET", "/v1/jobs/%s/results?stream=true" % job["id"]).splitlines())
            t_b = time.perf_counter() - t0
            if got != want:
                print("  a: batchd's results are wrong (%d != %d)" % (got, want))
            t0 = time.perf_counter()
            with mp.Pool(2) as pool:
                got = sum(pool.map(square, range(n)))
            t_p = time.perf_counter() - t0
            bd_t.append(t_b)
            pool_t.append(t_p)
            ratios.append(t_p / t_b)
            print("  a round %d: batchd %.2f s (%.0f items/s; the job %.2f s, reading the "
                  "results %.2f s), Pool(2).map %.2f s (%.0f items/s), ratio %.2f"
                  % (r + 1, t_b, n / t_b, t_run, t_b - t_run, t_p, n / t_p, t_p / t_b))
    finally:
        b.stop()
    tb, tp, ratio = statistics.median(bd_t), statistics.median(pool_t), statistics.median(ratios)
    print("a) %d trivial items, Python run_batch through batchd over HTTP: %.0f items/s; "
          "baseline Pool(2).map: %.0f items/s; ratio %.2fx (target >= 0.2x) %s; batchd's "
          "per-item cost %.2f us (Pool's %.2f us)"
          % (n, n / tb, n / tp, ratio, "met" if ratio >= 0.2 else "NOT met",
             tb / n * 1e6, tp / n * 1e6))


# ------------------------------------------------------------------ b

_mlp = None
_mlp_layers = None


def _mlp_init(weights, form="full"):
    global _mlp, _mlp_layers
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "mlp_example", os.path.join(ROOT, "examples", "python", "mlp.py"))
    _mlp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(_mlp)
    _mlp_layers = _mlp.load({"weights": weights, "output": form})


def _mlp_classify(images):
    return _mlp.run_batch(_mlp_layers, [images])[0]


def npy_bytes(a):
    import io
    import numpy as np
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def _classes(outs):
    """The classes of a list of item outputs, in either output form."""
    return [o if isinstance(o, int) else o["class"] for x in outs for o in x]


def _batchd_round(b, body):
    """(seconds from submit to the last result read, seconds of the job
    alone, the classes)."""
    t0 = time.perf_counter()
    job = json.loads(http(b.port, "POST", "/v1/jobs", body))
    while json.loads(http(b.port, "GET", "/v1/jobs/" + job["id"]))["status"] not in (
            "succeeded", "failed"):
        time.sleep(0.005)
    t_run = time.perf_counter() - t0
    outs, off = [], 0
    while off is not None:
        page = json.loads(http(b.port, "GET", "/v1/jobs/%s/results?offset=%d&limit=1000"
                               % (job["id"], off)))
        outs += [x["output"] for x in page["results"]]
        off = page["next_offset"]
    return time.perf_counter() - t0, t_run, _classes(outs)


def bench_b(tmp):
    import numpy as np
    n = int(os.environ.get("BENCH_PY_IMAGES", "20000"))
    per = 100
    weights = os.path.join(tmp, "mlp.safetensors")
    subprocess.run([os.path.join(os.path.dirname(BATCHD), "mkmlp"), "--layers", "784,512,10",
                    "--seed", "1", "--dtype", "f32", "--out", weights], check=True)
    rng = np.random.default_rng(1)
    batches = [rng.random((per, 784), dtype=np.float32) for _ in range(n // per)]
    mlp = os.path.join(ROOT, "examples", "python", "mlp.py")
    # the same Python on both sides: the class form (an int per image) and
    # the full form (class and 10 probabilities per image, as JSON)
    forms = {"class": "pymlpc", "full": "pymlp"}
    b = Batchd(["%s:python=%s,interpreter=%s,weights=%s,workers=2,output=%s"
                % (model, mlp, PY, weights, form) for form, model in forms.items()], tmp)
    res = {form: {"b": [], "p": [], "r": [], "run": []} for form in forms}
    try:
        t0 = time.perf_counter()
        ids = [json.loads(http(b.port, "POST", "/v1/objects", npy_bytes(a),
                               ctype="application/x-npy"))["id"] for a in batches]
        t_up = time.perf_counter() - t0
        _mlp_init(weights)
        want = [int(c) for a in batches[:2] for c in _mlp.forward(_mlp_layers, a).argmax(axis=1)]
        for r in range(ROUNDS):
            for form, model in forms.items():
                body = json.dumps({"model": model,
                                   "inputs": [{"$object": i} for i in ids]}).encode()
                t_b, t_run, classes = _batchd_round(b, body)
                if classes[:len(want)] != want or len(classes) != n:
                    print("  b: batchd's classes are wrong (%s)" % form)
                t0 = time.perf_counter()
                with mp.Pool(2, initializer=_mlp_init, initargs=(weights, form)) as pool:
                    outs = pool.map(_mlp_classify, batches)
                t_p = time.perf_counter() - t0
                if _classes(outs)[:len(want)] != want:
                    print("  b: Pool's classes are wrong (%s)" % form)
                x = res[form]
                x["b"].append(t_b)
                x["run"].append(t_run)
                x["p"].append(t_p)
                x["r"].append(t_p / t_b)
                print("  b round %d, output %s: batchd %.2f s (%.0f images/s; the job %.2f s, "
                      "reading the results %.2f s), Pool(2) %.2f s (%.0f images/s), ratio %.2f"
                      % (r + 1, form, t_b, n / t_b, t_run, t_b - t_run, t_p, n / t_p, t_p / t_b))
    finally:
        b.stop()
    for form in forms:
        x = res[form]
        ratio = statistics.median(x["r"])
        print("b) %d images through the numpy mlp, output %s: batchd (objects, uploaded once "
              "in %.2f s) %.0f images/s; baseline Pool(2)+initializer, the same Python (images "
              "pickled) %.0f images/s; ratio %.2fx%s"
              % (n, form, t_up, n / statistics.median(x["b"]), n / statistics.median(x["p"]), ratio,
                 (" (target >= 1.5x) " + ("met" if ratio >= 1.5 else "NOT met"))
                 if form == "class" else " (for information: 10 probabilities per image as JSON)"))


# ------------------------------------------------------------------ c

MODEL_C = """
import numpy as np
def load(params):
    return np.ones(int(params['mb']) * 1024 * 1024 // 8)  # touched: resident
def run(state, item):
    return float(state[int(item)])
"""


def pss(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


_pool_state = None


def _pool_init(mb):
    global _pool_state
    import numpy as np
    _pool_state = np.ones(mb * 1024 * 1024 // 8)


def _pool_pid(_):
    time.sleep(0.2)
    return os.getpid()


def bench_c(tmp):
    mb = int(os.environ.get("BENCH_PY_MODEL_MB", "200"))
    mod = os.path.join(tmp, "big.py")
    with open(mod, "w") as f:
        f.write(MODEL_C)
    copies_b, copies_p, ratios = [], [], []
    for r in range(max(2, ROUNDS - 1)):
        b = Batchd(["big:python=%s,interpreter=%s,workers=4,mb=%d" % (mod, PY, mb)], tmp)
        try:
            # a job so that every child has run
            job = json.loads(http(b.port, "POST", "/v1/jobs",
                                  json.dumps({"model": "big", "inputs": list(range(64)),
                                              "options": {"chunk_size": 1}}).encode()))
            while json.loads(http(b.port, "GET", "/v1/jobs/" + job["id"]))["status"] != "succeeded":
                time.sleep(0.05)
            models = json.loads(http(b.port, "GET", "/v1/models"))["models"]
            workers = json.loads(http(b.port, "GET", "/v1/workers"))["workers"]
            total = models[0]["host"]["pss_bytes"] + sum(w["coprocess"]["pss_bytes"]
                                                          for w in workers)
        finally:
            b.stop()
        cb = total / (mb * 1024 * 1024)
        with mp.Pool(4, initializer=_pool_init, initargs=(mb,)) as pool:
            pids = set(pool.map(_pool_pid, range(16), chunksize=1))
            cp = sum(pss(p) for p in pids) / (mb * 1024 * 1024)
        copies_b.append(cb)
        copies_p.append(cp)
        ratios.append(cb / cp)
        print("  c round %d: batchd host + 4 children %.2f copies; Pool(4) with an initializer "
              "%.2f copies" % (r + 1, cb, cp))
    cb = statistics.median(copies_b)
    print("c) total PSS of 4 Python workers sharing a %d MB model: batchd %.2f copies "
          "(target <= 1.3) %s; baseline Pool(4)+initializer %.2f copies; ratio %.2f"
          % (mb, cb, "met" if cb <= 1.3 else "NOT met", statistics.median(copies_p),
             statistics.median(ratios)))


def main():
    which = sys.argv[1:] or ["a", "b", "c"]
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    for w in which:
        with tempfile.TemporaryDirectory(prefix="batchd-bench-py-") as tmp:
            {"a": bench_a, "b": bench_b, "c": bench_c}[w](tmp)


if __name__ == "__main__":
    main()
