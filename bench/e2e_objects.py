"""e2e_objects: batchd's client for workloads 4-6 of make bench, end to end
over HTTP: upload, submit, wait, fetch every result and check it. What a
Python user of batchd pays, client included (http.client on one
keep-alive connection, json; numpy to make and check the arrays).

  e2e_objects.py --url URL mlp --weights FILE --batches B --images N --split S
      Each batch (mlp_data.batch) is cut into S parts; each part is
      uploaded once as a float32 .npy object [n, 784] (POST /v1/objects,
      Content-Type application/x-npy) and is one item {"$object": ID}, so
      the S items of a batch spread over both workers. Every batch's job is
      submitted before the first is awaited; then each job's results
      (paged) are read, every class checked against numpy's forward pass
      of the same weights (computed before the clock), and the objects
      deleted. Items counted: images.
  e2e_objects.py --url URL convolve --size N --rounds R
      Per round, one N x N float64 image uploaded once, and a job of two
      items {"image": {"$object": ID}, "filter": F, "output": "object"}
      (4x4 filters); each result is an object, downloaded as .npy and
      checked against numpy's strided sum of the same products. Items
      counted: convolutions.
  e2e_objects.py --url URL prefix --docs FILE --expect FILE
      POSTs the job body FILE (py_prefix.py --write), waits, reads every
      item's result and the reduced result (GET /v1/jobs/{id}/result),
      which must equal FILE --expect. Items counted: documents.

With --budget-s S, no run starts once the runs so far took more than S
seconds (the RESULT line's runs= says how many ran; make bench uses this to
stay under 10 minutes when a system is far slower than expected). Prints
per run on stderr and the RESULT line (bench_common). Every
request has a timeout and every wait a deadline; a wrong result exits 1.
"""
import http.client
import io
import json
import sys
import time
import urllib.parse

import numpy as np

import bench_common as bc

TIMEOUT_S = 300


class Client:
    def __init__(self, url):
        u = urllib.parse.urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=TIMEOUT_S)

    def request(self, method, path, body=None, ctype=None, accept=None, want=(200,)):
        h = {}
        if ctype:
            h["Content-Type"] = ctype
        if accept:
            h["Accept"] = accept
        self.conn.request(method, path, body=body, headers=h)
        r = self.conn.getresponse()
        data = r.read()
        if r.status not in want:
            sys.exit("e2e_objects: %s %s: %d %s" % (method, path, r.status, data[:300]))
        return data

    def json(self, method, path, obj=None, want=(200,)):
        body = None if obj is None else json.dumps(obj, separators=(",", ":")).encode()
        data = self.request(method, path, body, "application/json" if body else None, want=want)
        return json.loads(data) if data else None

    def upload(self, arr):
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        o = json.loads(self.request("POST", "/v1/objects", buf.getvalue(), "application/x-npy",
                                    want=(201,)))
        return o["id"]

    def submit(self, body):
        data = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
        return json.loads(self.request("POST", "/v1/jobs", data, "application/json",
                                       want=(202,)))["id"]

    def wait(self, jid, n):
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            j = self.json("GET", "/v1/jobs/" + jid)
            if j["status"] == "succeeded":
                if j["counts"]["done"] != n or j["counts"]["failed"] != 0:
                    sys.exit("e2e_objects: job %s: counts %s, expected %d done" % (jid, j["counts"], n))
                return
            if j["status"] in ("failed", "cancelled"):
                sys.exit("e2e_objects: job %s ended %s: %s" % (jid, j["status"],
                                                              j.get("error", "")))
            if time.monotonic() > deadline:
                sys.exit("e2e_objects: job %s not done in %d s" % (jid, TIMEOUT_S))
            time.sleep(0.005)

    def results(self, jid, n):
        out, off = [], 0
        while off is not None:
            page = self.json("GET", "/v1/jobs/%s/results?offset=%d&limit=10000" % (jid, off))
            for r in page["results"]:
                if r["index"] != len(out) or "output" not in r:
                    sys.exit("e2e_objects: job %s: result %s" % (jid, json.dumps(r)[:300]))
                out.append(r["output"])
            off = page["next_offset"]
        if len(out) != n:
            sys.exit("e2e_objects: job %s: %d results for %d items" % (jid, len(out), n))
        return out


def mlp(c, a):
    import mlp_data
    layers = mlp_data.load_weights(a.weights)
    batches = [mlp_data.batch(k, a.images) for k in range(a.batches)]
    probs = [mlp_data.forward(layers, x) for x in batches]

    def once():
        jobs = []
        for x in batches:
            ids = [c.upload(part) for part in np.array_split(x, a.split)]
            jobs.append((c.submit({"model": "mlp", "inputs": [{"$object": i} for i in ids]}), ids))
        for (jid, ids), p in zip(jobs, probs):
            c.wait(jid, len(ids))
            classes = [img["class"] for out in c.results(jid, len(ids)) for img in out]
            if not mlp_data.classes_agree(classes, p):
                sys.exit("e2e_objects: mlp job %s: wrong classes" % jid)
            for i in ids:
                c.request("DELETE", "/v1/objects/" + i, want=(204,))
        return True
    return a.batches * a.images, once


def convolve(c, a):
    import py_convolve
    images = [py_convolve.image(k, a.size) for k in range(a.rounds)]
    fs = py_convolve.filters()

    def expect(img, f):
        # out[r][c] = sum f[i][j] * img[5r - i][5c - j], zero outside
        fh, fw = f.shape
        pad = np.zeros((img.shape[0] + 2 * fh, img.shape[1] + 2 * fw))
        pad[fh:fh + img.shape[0], fw:fw + img.shape[1]] = img
        rows = -(-(img.shape[0] + fh - 1) // 5)
        cols = -(-(img.shape[1] + fw - 1) // 5)
        out = np.zeros((rows, cols))
        for i in range(fh):
            for j in range(fw):
                out += f[i, j] * pad[fh - i:fh - i + 5 * rows:5, fw - j:fw - j + 5 * cols:5]
        return out
    want = [[expect(img, f) for f in fs] for img in images]

    def once():
        jobs = []
        for img in images:
            oid = c.upload(img)
            items = [{"image": {"$object": oid}, "filter": f.tolist(), "output": "object"}
                     for f in fs]
            jobs.append((c.submit({"model": "convolve2d", "inputs": items}), oid))
        for (jid, oid), w in zip(jobs, want):
            c.wait(jid, len(fs))
            for out, wf in zip(c.results(jid, len(fs)), w):
                got = np.load(io.BytesIO(c.request("GET", "/v1/objects/%s?download=true"
                                                   % out["$object"], accept="application/x-npy")))
                if got.shape != wf.shape or not np.allclose(got, wf, rtol=1e-9, atol=1e-9):
                    sys.exit("e2e_objects: convolve2d job %s: wrong result" % jid)
                c.request("DELETE", "/v1/objects/" + out["$object"], want=(204,))
            c.request("DELETE", "/v1/objects/" + oid, want=(204,))
        return True
    return 2 * a.rounds, once


def prefix(c, a):
    with open(a.docs, "rb") as f:
        body = f.read()
    with open(a.expect) as f:
        want = json.load(f)
    n = len(json.loads(body)["inputs"])

    def once():
        jid = c.submit(body)
        c.wait(jid, n)
        c.results(jid, n)
        got = c.json("GET", "/v1/jobs/%s/result" % jid)
        if got != want:
            sys.exit("e2e_objects: prefix_count job %s: the reduced result differs" % jid)
        return True
    return n, once


def main():
    def extra(p):
        p.add_argument("--url", required=True)
        p.add_argument("workload", choices=["mlp", "convolve", "prefix"])
        p.add_argument("--weights")
        p.add_argument("--batches", type=int, default=10)
        p.add_argument("--images", type=int, default=10000)
        p.add_argument("--split", type=int, default=4)
        p.add_argument("--size", type=int, default=3000)
        p.add_argument("--rounds", type=int, default=10)
        p.add_argument("--docs")
        p.add_argument("--expect")
        p.add_argument("--budget-s", type=float, default=0,
                       help="stop after the run that passes this many seconds in all")
    a = bc.args(__doc__, items=1, extra=extra)
    c = Client(a.url)
    n, once = {"mlp": mlp, "convolve": convolve, "prefix": prefix}[a.workload](c, a)
    key = {"mlp": "w4", "convolve": "w5", "prefix": "w6"}[a.workload] + ".batchd"
    secs = bc.timed("batchd " + a.workload, a.runs, n, once, lambda ok: ok, a.budget_s)
    bc.result(key, n, secs)


if __name__ == "__main__":
    main()
