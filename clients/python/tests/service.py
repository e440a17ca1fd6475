"""Test helpers: a real batchd on a free port, and a TCP proxy that misbehaves.

Service starts $BATCHD_BIN (default: build/batchd of this checkout) with
--listen 127.0.0.1:0, a --port-file and a temporary data dir, waits for
/readyz, and stops it with SIGTERM (SIGKILL after 10 s) by its pid.

Proxy forwards 127.0.0.1:<its port> to batchd, one thread pair per
connection, and can spoil the first connections in two ways a network and a
service really do: "drop" forwards the request, lets batchd answer it, and
closes the client's connection before the answer reaches it (the client
cannot know whether its job was made); "503" answers a problem+json 503 with
Retry-After: 0 without forwarding anything (batchd shutting down). It can
also rewrite request lines (strip a query parameter), to show a client
what a batchd without a feature does.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))


def batchd_bin():
    return os.environ.get("BATCHD_BIN") or os.path.join(REPO, "build", "batchd")


class Service:
    @staticmethod
    def bin():
        return batchd_bin()

    def __init__(self, *args, workers=None):
        self.dir = tempfile.mkdtemp(prefix="batchd-pytest-")
        self.port_file = os.path.join(self.dir, "port")
        self.log_path = os.path.join(self.dir, "batchd.log")
        argv = [batchd_bin(), "--listen", "127.0.0.1:0", "--port-file", self.port_file,
                "--data-dir", os.path.join(self.dir, "data")]
        if workers:
            argv += ["--workers", str(workers)]
        argv += list(args)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.port = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("batchd exited (%s); log:\n%s" % (self.proc.returncode,
                                                                      self.tail()))
            try:
                with open(self.port_file) as f:
                    txt = f.read().strip()
                if txt:
                    self.port = int(txt)
                    if self._ready():
                        break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError("batchd not ready in 20 s; log:\n" + self.tail())
        self.url = "http://127.0.0.1:%d" % self.port

    def _ready(self):
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % self.port, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def get_json(self, path, token=None):
        req = urllib.request.Request(self.url + path)
        if token:
            req.add_header("Authorization", "Bearer " + token)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Proxy:
    """A TCP proxy to 127.0.0.1:target_port; see the module comment."""

    def __init__(self, target_port, spoil=None, spoil_count=0, rewrite=None):
        self.target_port = target_port
        self.spoil = spoil
        self.spoil_left = spoil_count
        self.rewrite = rewrite          # bytes -> bytes, applied to the request line
        self.connections = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                mode = None
                if self.spoil_left > 0:
                    self.spoil_left -= 1
                    mode = self.spoil
            threading.Thread(target=self._serve, args=(c, mode), daemon=True).start()

    def _serve(self, c, mode):
        if mode == "503":
            body = json.dumps({"type": "urn:batchd:problem:shutting-down", "title": "Shutting down",
                               "status": 503, "detail": "proxy says no", "instance": "/"}).encode()
            c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\n"
                      b"Content-Type: application/problem+json\r\nConnection: close\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            c.close()
            return
        s = socket.create_connection(("127.0.0.1", self.target_port))
        up = threading.Thread(target=self._pump_up, args=(c, s), daemon=True)
        up.start()
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                if mode == "drop":
                    # batchd answered: the answer is lost on the way back
                    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    break
                c.sendall(data)
        except OSError:
            pass
        finally:
            for x in (c, s):
                try:
                    # shutdown wakes the other thread's recv and sends the FIN
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    x.close()
                except OSError:
                    pass

    def _pump_up(self, c, s):
        first = True
        buf = b""
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    s.shutdown(socket.SHUT_WR)
                    return
                if first and self.rewrite is not None:
                    buf += data
                    if b"\r\n" not in buf:
                        continue
                    line, rest = buf.split(b"\r\n", 1)
                    data = self.rewrite(line) + b"\r\n" + rest
                    first = False
                s.sendall(data)
        except OSError:
            pass

    def close(self):
        self.closed = True
        self.sock.close()
