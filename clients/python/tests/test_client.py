"""The batchd Python client against a real batchd (tests/service.py starts it).

Run by tests/run.py (make python, part of make test) with /usr/bin/python3.
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import subprocess
import threading
import sys
import tempfile
import time
import tracemalloc
import unittest
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import batchd  # noqa: E402
from batchd import _bodies  # noqa: E402
from service import Proxy, Service  # noqa: E402

try:
    import numpy
except ImportError:  # run.py installs python3-numpy; without it the test fails loudly
    numpy = None

SVC = None


def setUpModule():
    global SVC
    SVC = Service(workers=2)


def tearDownModule():
    SVC.stop()


def server_has(query):
    """Whether this batchd accepts a query parameter on a job (400 if unknown)."""
    job = batchd.Client(SVC.url).submit("square", [1])
    job.wait(30)
    try:
        urllib.request.urlopen("%s/v1/jobs/%s%s" % (SVC.url, job.id, query), timeout=70).read()
        return True
    except urllib.error.HTTPError as e:
        if e.code == 400:
            return False
        raise


class LazySquares:
    """A sequence computed on demand: len() and indexing, no list behind it."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return "x" * 72 + str(i)


class PoolShape(unittest.TestCase):
    def setUp(self):
        self.c = batchd.Client(SVC.url)

    def test_map_keeps_input_order(self):
        n = 3000
        got = self.c.map("square", range(n), chunk_size=7)
        self.assertEqual(got, [i * i for i in range(n)])

    def test_map_of_a_generator_and_of_nothing(self):
        self.assertEqual(self.c.map("square", (i for i in range(50))), [i * i for i in range(50)])
        self.assertEqual(self.c.map("square", []), [])
        self.assertEqual(self.c.map("square", iter(())), [])

    def test_starmap_sends_each_tuple_as_an_array(self):
        got = self.c.starmap("sum_squares", [(1, 2), (3, 4, 5), (), (0.5,)])
        self.assertEqual(got, [5, 50, 0, 0.25])

    def test_imap_yields_in_order_and_imap_unordered_all(self):
        it = self.c.imap("square", iter(range(200)))
        self.assertEqual(next(it), 0)
        self.assertEqual(list(it), [i * i for i in range(1, 200)])
        got = list(self.c.imap_unordered("square", range(200)))
        self.assertEqual(sorted(got), sorted(i * i for i in range(200)))

    def test_item_error_names_index_and_message(self):
        with self.assertRaises(batchd.ItemError) as cm:
            self.c.map("square", [1, 2, "three", 4, "five"])
        e = cm.exception
        self.assertEqual(e.index, 2)
        self.assertIn("expects a number", e.message)
        self.assertIn("item 2", str(e))
        job = self.c.job(e.job_id)
        self.assertIn(job.info["status"], ("succeeded", "cancelled"))
        with self.assertRaises(batchd.ItemError) as cm:
            list(self.c.imap_unordered("square", ["a"]))
        self.assertEqual(cm.exception.index, 0)

    def test_problem_becomes_api_error(self):
        with self.assertRaises(batchd.APIError) as cm:
            self.c.map("no_such_model", [1])
        e = cm.exception
        self.assertEqual(e.status, 422)
        self.assertEqual(e.type, "urn:batchd:problem:unknown-model")
        self.assertEqual(e.title, "Unknown model")
        self.assertIn("no_such_model", e.detail)
        self.assertIsNotNone(e.idempotency_key)
        with self.assertRaises(batchd.APIError) as cm:
            self.c.job("a" * 26)
        self.assertEqual(cm.exception.status, 404)

    def test_unencodable_item_is_named_before_sending(self):
        with self.assertRaises(ValueError) as cm:
            self.c.submit("square", [1, 2, float("nan")])
        self.assertIn("item 2", str(cm.exception))


class Jobs(unittest.TestCase):
    def setUp(self):
        self.c = batchd.Client(SVC.url)

    def test_submit_status_wait_results(self):
        job = self.c.submit("square", range(100))
        self.assertEqual(job.info["counts"]["total"], 100)
        self.assertIn(job.status()["status"], ("queued", "running", "succeeded"))
        final = job.wait(timeout=60)
        self.assertEqual(final["status"], "succeeded")
        res = list(job.results())
        self.assertEqual([r["index"] for r in res], list(range(100)))
        self.assertEqual([r["output"] for r in res], [i * i for i in range(100)])
        done = sorted(r["index"] for r in job.results(order="completion"))
        self.assertEqual(done, list(range(100)))
        self.assertEqual(job.outputs(), [i * i for i in range(100)])

    def test_errors_only_is_the_error_file(self):
        items = [1, "a", 2, "b", 3]
        job = self.c.submit("square", items)
        job.wait(60)
        for order in ("input", "completion"):
            errs = list(job.results(order=order, errors_only=True))
            self.assertEqual(sorted(r["index"] for r in errs), [1, 3], order)
            self.assertTrue(all("expects a number" in r["error"]["message"] for r in errs))

    def test_wait_timeout_and_cancel(self):
        job = self.c.submit("exp_sinh", [{"n": 20000000}] * 40, chunk_size=1)
        with self.assertRaises(batchd.Timeout) as cm:
            job.wait(timeout=0.3)
        self.assertIsInstance(cm.exception, TimeoutError)
        self.assertEqual(cm.exception.job_id, job.id)
        self.assertTrue(job.cancel())
        self.assertEqual(job.wait(60)["status"], "cancelled")
        self.assertFalse(job.cancel())
        got = list(job.results())
        self.assertLess(len(got), 40)

    def test_wait_uses_long_poll_when_batchd_has_it(self):
        job = self.c.submit("exp_sinh", [{"n": 300000}] * 20)
        self.assertEqual(job.wait(60)["status"], "succeeded")
        if server_has("?wait=1"):
            self.assertIs(self.c._long_poll, True)
        else:
            self.assertIs(self.c._long_poll, False)   # fell back: 400 named the parameter

    def test_results_use_whole_streams_when_batchd_has_them(self):
        job = self.c.submit("square", [1, "x", 3])
        job.wait(60)
        self.assertEqual([r["index"] for r in job.results()], [0, 1, 2])
        self.assertEqual([r["index"] for r in job.results(errors_only=True)], [1])
        if server_has("/results?stream=true&order=input&filter=errors"):
            self.assertIs(self.c._whole_streams, True)
        else:
            self.assertIs(self.c._whole_streams, False)   # 400 named the parameter: pages

    def test_wait_falls_back_when_wait_is_ignored(self):
        # A batchd that ignores ?wait answers at once: the client must see it
        # and poll, not spin on immediate answers.
        def strip_wait(line):
            return line.split(b"?")[0] + b" HTTP/1.1" if b"wait=" in line else line
        p = Proxy(SVC.port, rewrite=strip_wait)
        try:
            c = batchd.Client(p.url)
            job = c.submit("exp_sinh", [{"n": 2000000}] * 6, chunk_size=1)
            self.assertEqual(job.wait(120)["status"], "succeeded")
            self.assertIs(c._long_poll, False)
            print("  wait() through a wait-ignoring proxy: %d connections" % p.connections)
        finally:
            p.close()

    def test_same_idempotency_key_same_job(self):
        key = "pytest-" + os.urandom(8).hex()
        a = self.c.submit("square", [1, 2, 3], idempotency_key=key)
        b = self.c.submit("square", [1, 2, 3], idempotency_key=key)
        self.assertEqual(a.id, b.id)
        with self.assertRaises(batchd.APIError) as cm:
            self.c.submit("square", [1, 2, 4], idempotency_key=key)
        self.assertEqual(cm.exception.status, 409)


def batchd_has_flag(flag):
    """Whether the batchd under test knows a command-line flag (its --help lists it)."""
    r = subprocess.run([Service.bin(), "--help"], capture_output=True, text=True, timeout=30)
    return flag in r.stdout + r.stderr


class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST (headers, body)."""

    def __init__(self):
        self.events = []
        self.got = threading.Event()
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                rec.events.append((dict(self.headers.items()), body))
                rec.got.set()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Webhooks(unittest.TestCase):
    def test_submit_with_webhook_gets_a_signed_event(self):
        if not batchd_has_flag("--webhook-hosts"):
            self.skipTest("this batchd has no completion webhooks (--webhook-hosts)")
        key = os.urandom(24)
        secret = "whsec_" + base64.b64encode(key).decode()
        rec = Receiver()
        svc = Service("--webhook-hosts", "127.0.0.1:%d" % rec.port, "--webhook-secret", secret,
                      workers=1)
        try:
            c = batchd.Client(svc.url)
            url = "http://127.0.0.1:%d/hook" % rec.port
            job = c.submit("square", (i for i in range(5)), webhook=url)
            self.assertEqual(job.wait(60)["status"], "succeeded")
            self.assertTrue(rec.got.wait(60), "no webhook within 60 s")
            headers, body = rec.events[0]
            h = {k.lower(): v for k, v in headers.items()}
            event = json.loads(body)
            self.assertEqual(event["type"], "job.succeeded")
            self.assertEqual(event["data"]["id"], job.id)
            signed = ("%s.%s." % (h["webhook-id"], h["webhook-timestamp"])).encode() + body
            want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
            self.assertIn("v1," + want, h["webhook-signature"].split())
            # a URL outside --webhook-hosts is refused at submission
            with self.assertRaises(batchd.APIError) as cm:
                c.submit("square", [1], webhook="http://127.0.0.1:1/elsewhere")
            self.assertEqual(cm.exception.status, 422)
        finally:
            svc.stop()
            rec.close()


class Network(unittest.TestCase):
    """Retries through a proxy that loses answers or says 503."""

    def count_jobs(self):
        return len(SVC.get_json("/v1/jobs?limit=1000")["jobs"])

    def submit_through(self, spoil, items):
        p = Proxy(SVC.port, spoil=spoil, spoil_count=2)
        try:
            before = self.count_jobs()
            c = batchd.Client(p.url)
            out = c.map("square", items)
            self.assertEqual(out, [i * i for i in range(300)])
            self.assertEqual(self.count_jobs(), before + 1, "the job ran exactly once")
            self.assertGreaterEqual(p.connections, 3)
        finally:
            p.close()

    def test_lost_answer_retried_with_same_key_list(self):
        self.submit_through("drop", list(range(300)))

    def test_lost_answer_retried_with_same_key_generator(self):
        # a generator cannot be read twice: the retry replays the spool
        self.submit_through("drop", (i for i in range(300)))

    def test_503_retried(self):
        self.submit_through("503", (i for i in range(300)))

    def test_unreachable_is_transport_error(self):
        # a port bound but not listening refuses connections, and stays
        # ours (a closed one could be taken by another test's server)
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            c = batchd.Client("http://127.0.0.1:%d" % s.getsockname()[1], retries=2)
            with self.assertRaises(batchd.TransportError) as cm:
                c.submit("square", [1])
        self.assertIsNotNone(cm.exception.idempotency_key)
        self.assertIsInstance(cm.exception, OSError)


class Streaming(unittest.TestCase):
    """Large iterables are sent as they are read, never held whole."""

    def measure(self, items):
        c = batchd.Client(SVC.url)
        tracemalloc.start()
        try:
            job = c.submit("echo", items, chunk_size=10000)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        job.cancel()
        return job, peak

    def test_sequence_sent_in_blocks(self):
        items = LazySquares(150000)     # ~12 MB of NDJSON
        job, peak = self.measure(items)
        self.assertEqual(job.info["counts"]["total"], 150000)
        print("  150,000 items (~12 MB) from a sequence: peak %.1f MiB traced" % (peak / 2**20))
        self.assertLess(peak, 4 * 2**20)

    def test_generator_sent_in_blocks(self):
        job, peak = self.measure("y" * 72 + str(i) for i in range(150000))
        self.assertEqual(job.info["counts"]["total"], 150000)
        print("  150,000 items (~12 MB) from a generator: peak %.1f MiB traced" % (peak / 2**20))
        self.assertLess(peak, _bodies.SPOOL_MEMORY + 4 * 2**20)

    def test_json_body_when_options_need_it(self):
        c = batchd.Client(SVC.url)
        job = c.submit("square", (i for i in range(10)), options={"max_attempts": 2})
        self.assertEqual(job.outputs(), [i * i for i in range(10)])


class Objects(unittest.TestCase):
    def setUp(self):
        self.c = batchd.Client(SVC.url)

    def test_upload_bytes(self):
        obj = self.c.upload(b"\x00\x01\x02hello")
        self.assertEqual((obj["dtype"], obj["shape"], obj["bytes"]), ("uint8", [8], 8))
        self.assertEqual(batchd.ref(obj), {"$object": obj["id"]})
        with urllib.request.urlopen(SVC.url + "/v1/objects/%s?download=true" % obj["id"]) as r:
            self.assertEqual(r.read(), b"\x00\x01\x02hello")
        # the download's pin is released when batchd has closed its side:
        # wait for it (bounded) before the delete, which a pin refuses (409)
        for _ in range(100):
            if SVC.get_json("/v1/objects/" + obj["id"])["pins"] == 0:
                break
            time.sleep(0.05)
        self.c.delete_object(obj["id"])

    def test_upload_numpy_array(self):
        self.assertIsNotNone(numpy, "python3-numpy is needed (scripts/deps.sh python)")
        a = numpy.arange(24, dtype="float32").reshape(4, 6)[:, ::2]   # not contiguous
        obj = self.c.upload(a)
        self.assertEqual((obj["dtype"], obj["shape"]), ("float32", [4, 3]))
        req = urllib.request.Request(SVC.url + "/v1/objects/%s?download=true" % obj["id"],
                                     headers={"Accept": "application/x-npy"})
        import io
        with urllib.request.urlopen(req) as r:
            back = numpy.load(io.BytesIO(r.read()))
        self.assertTrue(numpy.array_equal(back, a))
        # an item naming it: convolve2d with a 1x1 identity filter
        img = numpy.arange(100, dtype="float64").reshape(10, 10)
        o2 = self.c.upload(img)
        out = self.c.map("convolve2d", [{"image": batchd.ref(o2), "filter": [[1.0]]}])[0]
        self.assertTrue(out is not None)
        with self.assertRaises(TypeError):
            self.c.upload("a string")


class Auth(unittest.TestCase):
    def test_token_sent_and_401_explained(self):
        svc = Service("--api-tokens", "s3cret-token", workers=1)
        try:
            with self.assertRaises(batchd.APIError) as cm:
                batchd.Client(svc.url).map("square", [1])
            self.assertEqual(cm.exception.status, 401)
            self.assertEqual(batchd.Client(svc.url, token="s3cret-token").map("square", [3]), [9])
        finally:
            svc.stop()

    def test_limits_are_api_errors_with_where(self):
        svc = Service("--max-items", "5", workers=1)
        try:
            with self.assertRaises(batchd.APIError) as cm:
                batchd.Client(svc.url).map("square", range(6))
            self.assertEqual(cm.exception.status, 413)
            self.assertIn("limit", cm.exception.problem)
        finally:
            svc.stop()


class Install(unittest.TestCase):
    def test_pip_install_offline_and_use(self):
        src = os.path.dirname(HERE)
        with tempfile.TemporaryDirectory() as d:
            target = os.path.join(d, "site")
            r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-index", "-q",
                                "--target", target, src],
                               capture_output=True, text=True, timeout=300)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            code = ("import batchd, sys; assert batchd.__file__.startswith(sys.argv[1]), "
                    "batchd.__file__; print(batchd.Client(sys.argv[2]).map('square', [7]))")
            r = subprocess.run([sys.executable, "-c", code, target, SVC.url], cwd=d,
                               env=dict(os.environ, PYTHONPATH=target),
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.strip(), "[49]")


class Bodies(unittest.TestCase):
    def test_ndjson_and_json_encoding(self):
        b = _bodies.ItemsBody([1, "a", {"k": [1.5]}])
        self.assertEqual(b"".join(b.chunks()), b'1\n"a"\n{"k":[1.5]}\n')
        self.assertEqual(b"".join(b.chunks()), b'1\n"a"\n{"k":[1.5]}\n')
        j = _bodies.ItemsBody(iter([1, 2]), head='{"model":"m","inputs":[', tail="]}")
        text = b"".join(j.chunks())
        self.assertEqual(json.loads(text), {"model": "m", "inputs": [1, 2]})
        self.assertEqual(b"".join(j.chunks()), text, "replayed from the spool")

    def test_spool_replay_resumes_the_iterator(self):
        b = _bodies.ItemsBody(str(i) for i in range(100000))
        g = b.chunks()
        first = next(g)           # an attempt that broke after one block
        g.close()
        whole = b"".join(b.chunks())
        self.assertTrue(whole.startswith(first))
        self.assertEqual([json.loads(x) for x in whole.split()], [str(i) for i in range(100000)])
        self.assertEqual(b.count, 100000)
