"""bench/datapath.py: batchd's data path against the machine, interleaved.

Three figures of issue 17, each against its baseline in the same run, in
rounds A B A B ... (this VM's speed moves up to 2x between minutes, so a
ratio of two separate windows is noise): every round times batchd and the
baseline back to back, and the ratio printed is the median of the
per-round ratios, with their min and max (the spread).

  upload    POST /v1/objects of a .npy (72 MB by default) with curl, vs the
            same curl command sending the same request to a plain Python
            socket sink (reads the head, recv_into a buffer kept for the
            whole run, answers 201). Target >= 0.6x.
  download  GET /v1/objects/{id}?download=true with curl, vs the same curl
            command reading the same bytes from a Python socket source
            (the bytes in memory, sendall). Target >= 0.6x.
  submit    POST /v1/jobs of N `square` items (1M by default, ~6.9 MB of
            JSON) with curl until the 202: MB/s of JSON accepted. Its
            baseline is the socket sink receiving the same body (what the
            bytes cost to move); the target is absolute: >= 50 MB/s.
  submit_ndjson  the same items as an NDJSON body (one item a line).

The client is curl for every system, so that the client's own cost is the
same on both sides; each timing is curl's time_total. The .npy and the
bodies are written to a temporary directory first (in the page cache).
batchd is started once (127.0.0.1, port 0, --port-file, a temporary data
dir) and stopped by its PID; uploaded objects are deleted after each round,
so that every upload after the first reuses freed object memory, as a
long-running service does. Each batchd answer is checked (201 with the
right byte count; downloaded bytes equal to the file's; 202 with the right
item count): a wrong answer ends the run with no figure.

  /usr/bin/python3 bench/datapath.py [--rounds 7] [--mb 72] [--items 1000000]
                                      [--batchd build/batchd] [--only upload,download,submit]

Prints one line per round and per figure, and RESULT lines in the format of
bench/bench_stats.h (rates: MB/s) plus RATIO lines:
  RATIO <key> median=<r> min=<r> max=<r> rounds=<n> target=<t>
Exit status 0 when every round ran and checked (a missed target is printed,
not a failure: the machine is shared), 1 otherwise.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- peers

class SocketPeer:
    """A minimal HTTP/1.1 server on 127.0.0.1: as a sink it reads a request's
    body into one buffer kept for the whole run (recv_into, no allocation per
    request) and answers 201; as a source it answers every request with
    `payload` (bytes kept in memory, sendall). One connection at a time,
    keep-alive not needed (curl makes one request per process)."""

    def __init__(self, payload=None, sink_size=0):
        self.payload = payload
        self.buf = bytearray(sink_size) if sink_size else None
        self.view = memoryview(self.buf) if self.buf is not None else None
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.received = 0
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            try:
                self.handle(c)
            except OSError:
                pass
            finally:
                c.close()

    def handle(self, c):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = c.recv(65536)
            if not chunk:
                return
            head += chunk
        h, _, rest = head.partition(b"\r\n\r\n")
        length = 0
        expect = False
        for line in h.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v.strip())
            if k.strip().lower() == b"expect":
                expect = True
        if expect and not rest:
            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if length:
            if self.view is None or length > len(self.buf):
                raise OSError("sink buffer too small")
            got = len(rest)
            self.view[:got] = rest
            while got < length:
                n = c.recv_into(self.view[got:length])
                if n == 0:
                    break
                got += n
            self.received = got
            body = b'{"bytes":%d}' % got
            c.sendall(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
            return
        p = self.payload or b""
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                  b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(p))
        c.sendall(p)

    def close(self):
        self.stop = True
        self.srv.close()


# ---------------------------------------------------------------- batchd

class Batchd:
    def __init__(self, binary, tmp, args):
        self.tmp = tmp
        portfile = os.path.join(tmp, "port")
        self.logf = open(os.path.join(tmp, "batchd.log"), "w")
        self.proc = subprocess.Popen(
            [binary, "--listen", "127.0.0.1:0", "--port-file", portfile, "--data-dir",
             os.path.join(tmp, "data")] + args,
            stdout=self.logf, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("batchd exited at start-up: see " + self.logf.name)
            if os.path.exists(portfile) and os.path.getsize(portfile) > 0:
                self.base = "http://127.0.0.1:%s" % open(portfile).read().strip()
                r = curl(["-o", "/dev/null", "-w", "%{http_code}", self.base + "/readyz"])
                if r.stdout.strip() == b"200":
                    return
            time.sleep(0.1)
        self.stop()
        raise SystemExit("batchd did not get ready in 60 s")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                log("batchd still running 30 s after SIGTERM: SIGKILL")
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def curl(args, timeout=120):
    return subprocess.run(["curl", "-sS", "-m", str(timeout)] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout + 10)


def timed_curl(args):
    """Runs curl with -w time_total appended after the body; returns
    (body, seconds, http code)."""
    r = curl(args + ["-w", "\n%{http_code} %{time_total}"])
    if r.returncode != 0:
        raise SystemExit("curl %s failed: %s" % (" ".join(args), r.stderr.decode()))
    body, _, tail = r.stdout.rpartition(b"\n")
    code, t = tail.split()
    return body, float(t), int(code)


# ---------------------------------------------------------------- figures

def upload_batchd(b, path, size):
    body, t, code = timed_curl(["-X", "POST", "-H", "Content-Type: application/x-npy",
                                "-H", "Expect:", "-T", path, b.base + "/v1/objects"])
    if code != 201:
        raise SystemExit("upload: HTTP %d: %s" % (code, body[:300]))
    obj = json.loads(body)
    return obj["id"], t


def upload_sink(sink, path, size):
    body, t, code = timed_curl(["-X", "POST", "-H", "Content-Type: application/x-npy",
                                "-H", "Expect:", "-T", path,
                                "http://127.0.0.1:%d/v1/objects" % sink.port])
    if code != 201 or sink.received != size:
        raise SystemExit("sink: HTTP %d, %d of %d bytes" % (code, sink.received, size))
    return t


def download(url, expect_size):
    """A timed download to /dev/null (the client writes nothing: the figure
    is the server's and the socket's); curl reports the bytes it got."""
    r = curl(["-o", "/dev/null", "-w", "%{http_code} %{time_total} %{size_download}", url])
    if r.returncode != 0:
        raise SystemExit("curl %s failed: %s" % (url, r.stderr.decode()))
    code, t, got = r.stdout.split()
    if int(code) != 200 or int(got) != expect_size:
        raise SystemExit("download %s: HTTP %s, %s bytes" % (url, code.decode(), got.decode()))
    return float(t)


def download_check(url, out, expect):
    """An untimed download into a file, compared byte for byte."""
    r = curl(["-o", out, url])
    with open(out, "rb") as f:
        if r.returncode != 0 or f.read() != expect:
            raise SystemExit("download %s: the bytes differ from the upload's" % url)


def submit_batchd(b, path, ctype, n, query=""):
    body, t, code = timed_curl(["-X", "POST", "-H", "Content-Type: " + ctype, "-H", "Expect:",
                                "--data-binary", "@" + path, b.base + "/v1/jobs" + query])
    if code != 202:
        raise SystemExit("submit: HTTP %d: %s" % (code, body[:300]))
    job = json.loads(body)
    total = job.get("counts", {}).get("total", job.get("total"))
    if total is not None and total != n:
        raise SystemExit("submit: job has %s items, sent %d" % (total, n))
    return job["id"], t


def submit_sink(sink, path, size):
    body, t, code = timed_curl(["-X", "POST", "-H", "Content-Type: application/json",
                                "-H", "Expect:", "--data-binary", "@" + path,
                                "http://127.0.0.1:%d/v1/jobs" % sink.port])
    if code != 201 or sink.received != size:
        raise SystemExit("sink: HTTP %d, %d of %d bytes" % (code, sink.received, size))
    return t


def wait_job(b, job_id, timeout=300):
    """Waits (bounded) for a job to finish, so that one round's work does not
    run under the next round's timing."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = curl([b.base + "/v1/jobs/%s?wait=10" % job_id], timeout=30)
        st = json.loads(r.stdout).get("status")
        if st in ("succeeded", "failed", "cancelled"):
            return st
    raise SystemExit("job %s not finished in %d s" % (job_id, timeout))


def ratio_line(key, ratios, target):
    print("RATIO %s median=%.3f min=%.3f max=%.3f rounds=%d target=%s"
          % (key, statistics.median(ratios), min(ratios), max(ratios), len(ratios), target),
          flush=True)


def rate_line(key, mb, secs):
    med = statistics.median(secs)
    print("RESULT %s median=%.6g min=%.6g max=%.6g runs=%d unit=MB/s n=%.3f seconds=%.6f"
          % (key, mb / med, mb / max(secs), mb / min(secs), len(secs), mb, med), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--mb", type=int, default=72, help="size of the .npy, in MB (10^6 bytes)")
    p.add_argument("--items", type=int, default=1000000)
    p.add_argument("--batchd", default="build/batchd")
    p.add_argument("--only", default="upload,download,submit,submit_ndjson")
    a = p.parse_args()
    if not 1 <= a.rounds <= 100 or a.mb < 1 or a.items < 1:
        p.error("--rounds 1..100, --mb >= 1, --items >= 1")
    only = set(a.only.split(","))
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed (apt-get install curl)")

    tmp = tempfile.mkdtemp(prefix="batchd-datapath-")
    b = None
    try:
        # The .npy: float64 [n, 1000], deterministic bytes.
        import numpy as np
        rows = a.mb * 1000 * 1000 // 8000
        arr = np.random.default_rng(17).random((rows, 1000))
        npy = os.path.join(tmp, "x.npy")
        np.save(npy, arr)
        npy_size = os.path.getsize(npy)
        raw = arr.tobytes()
        del arr
        # The submit bodies: square items 0..n-1.
        items = ",".join(str(i) for i in range(a.items))
        jbody = os.path.join(tmp, "job.json")
        with open(jbody, "w") as f:
            f.write('{"model":"square","inputs":[' + items + "]}")
        nbody = os.path.join(tmp, "job.ndjson")
        with open(nbody, "w") as f:
            f.write(items.replace(",", "\n") + "\n")
        del items
        jsize = os.path.getsize(jbody)
        nsize = os.path.getsize(nbody)

        b = Batchd(a.batchd, tmp, ["--workers", "1", "--model", "square",
                                    "--max-body-bytes", "1G",
                                    "--object-memory", "1G", "--max-object-bytes", "512M"])
        sink = SocketPeer(sink_size=max(npy_size, jsize, nsize) + 4096)
        source = SocketPeer(payload=raw)
        log("datapath: batchd at %s; .npy %d bytes, JSON body %d bytes (%d items), "
            "NDJSON body %d bytes" % (b.base, npy_size, jsize, a.items, nsize))

        up = {"b": [], "s": [], "r": []}
        down = {"b": [], "s": [], "r": []}
        sub = {"b": [], "s": [], "r": []}
        subn = {"b": [], "r": []}
        dl = os.path.join(tmp, "dl.bin")
        # One upload first, not timed: the object memory's first use
        # (a fresh service faults its pages in once).
        oid, _ = upload_batchd(b, npy, npy_size)
        curl(["-X", "DELETE", b.base + "/v1/objects/" + oid])
        for r in range(a.rounds):
            line = ["round %d:" % (r + 1)]
            if "upload" in only or "download" in only:
                # A B, then B A in odd rounds: neither side always goes first.
                if r % 2 == 0:
                    oid, tb = upload_batchd(b, npy, npy_size)
                    ts = upload_sink(sink, npy, npy_size)
                else:
                    ts = upload_sink(sink, npy, npy_size)
                    oid, tb = upload_batchd(b, npy, npy_size)
                if "upload" in only:
                    up["b"].append(tb)
                    up["s"].append(ts)
                    up["r"].append(ts / tb)
                    line.append("upload %.3f s vs sink %.3f s (%.2fx)" % (tb, ts, ts / tb))
            if "download" in only:
                url = b.base + "/v1/objects/%s?download=true" % oid
                src = "http://127.0.0.1:%d/x.bin" % source.port
                if r % 2 == 0:
                    tb = download(url, len(raw))
                    ts = download(src, len(raw))
                else:
                    ts = download(src, len(raw))
                    tb = download(url, len(raw))
                if r == 0:
                    download_check(url, dl, raw)
                down["b"].append(tb)
                down["s"].append(ts)
                down["r"].append(ts / tb)
                line.append("download %.3f s vs source %.3f s (%.2fx)" % (tb, ts, ts / tb))
            if "upload" in only or "download" in only:
                curl(["-X", "DELETE", b.base + "/v1/objects/" + oid])
            if "submit" in only:
                if r % 2 == 0:
                    jid, tb = submit_batchd(b, jbody, "application/json", a.items)
                    ts = submit_sink(sink, jbody, jsize)
                else:
                    ts = submit_sink(sink, jbody, jsize)
                    jid, tb = submit_batchd(b, jbody, "application/json", a.items)
                wait_job(b, jid)
                sub["b"].append(tb)
                sub["s"].append(ts)
                sub["r"].append(ts / tb)
                line.append("submit %.3f s (%.0f MB/s) vs sink %.3f s"
                            % (tb, jsize / 1e6 / tb, ts))
            if "submit_ndjson" in only:
                jid, tb = submit_batchd(b, nbody, "application/x-ndjson", a.items,
                                        "?model=square")
                wait_job(b, jid)
                subn["b"].append(tb)
                subn["r"].append(nsize / 1e6 / tb)
                line.append("ndjson %.3f s (%.0f MB/s)" % (tb, nsize / 1e6 / tb))
            log(" ".join(line))

        if up["b"]:
            rate_line("datapath.upload.batchd", npy_size / 1e6, up["b"])
            rate_line("datapath.upload.sink", npy_size / 1e6, up["s"])
            ratio_line("datapath.upload", up["r"], ">=0.6")
        if down["b"]:
            rate_line("datapath.download.batchd", len(raw) / 1e6, down["b"])
            rate_line("datapath.download.source", len(raw) / 1e6, down["s"])
            ratio_line("datapath.download", down["r"], ">=0.6")
        if sub["b"]:
            rate_line("datapath.submit.batchd", jsize / 1e6, sub["b"])
            rate_line("datapath.submit.sink", jsize / 1e6, sub["s"])
            ratio_line("datapath.submit_vs_sink", sub["r"], "none")
            print("TARGET datapath.submit median=%.1f MB/s target=>=50 MB/s %s"
                  % (jsize / 1e6 / statistics.median(sub["b"]),
                     "met" if jsize / 1e6 / statistics.median(sub["b"]) >= 50 else "missed"),
                  flush=True)
        if subn["b"]:
            rate_line("datapath.submit_ndjson.batchd", nsize / 1e6, subn["b"])
        return 0
    finally:
        if b is not None:
            b.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
