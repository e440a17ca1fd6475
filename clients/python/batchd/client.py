"""batchd.Client and batchd.Job: a batchd service used like multiprocessing.Pool.

    Pool                                   batchd
    pool.map(f, xs, chunksize)             client.map("model", xs, chunk_size)
    pool.imap(f, xs)                       client.imap("model", xs)
    pool.imap_unordered(f, xs)             client.imap_unordered("model", xs)
    pool.starmap(f, [(a, b), ...])         client.starmap("model", [(a, b), ...])
    pool.map_async(f, xs) -> AsyncResult   client.submit("model", xs) -> Job
    AsyncResult.wait(t) / get()            job.wait(t) / job.results()

A function is a model name (GET /v1/models lists them); items and outputs
are JSON values. A failed item raises ItemError (its index and message) where
Pool would re-raise the worker's exception.

What the service offers is found out once per Client and remembered:
- long-poll (GET /v1/jobs/{id}?wait=S): wait() asks batchd to answer when
  the job changes. A batchd without it refuses the unknown parameter (400
  naming it), or answers a long-poll at once with nothing new; either way
  wait() falls back to polling with If-None-Match and back-off (50 ms
  doubling to 1 s), which costs a 304 per poll.
- whole-result streams (GET .../results?stream=true&order=input, and
  filter=errors): without them, results in input order are read page by
  page (following the completed prefix of a running job), and the error
  filter is applied here.
"""

import itertools
import json
import time
import uuid

from . import _bodies
from ._http import Transport, read_lines
from .errors import APIError, ItemError, Timeout, TransportError

FINAL = ("succeeded", "failed", "cancelled")
PAGE_LIMIT = 10000          # the largest page batchd serves
LONG_POLL_MAX = 60          # the longest ?wait= batchd accepts
POLL_FIRST = 0.05           # polling fallback: first interval (s) ...
POLL_MAX = 1.0              # ... doubling up to this


def _unknown_parameter(err, name):
    """Whether an APIError is batchd refusing query parameter `name` as unknown."""
    return (isinstance(err, APIError) and err.status == 400
            and err.type == "urn:batchd:problem:invalid-parameter"
            and ("unknown query parameter " + name) in (err.detail or ""))


def _output(result, job_id):
    if "error" in result:
        raise ItemError(result["index"], (result["error"] or {}).get("message", ""), job_id)
    return result.get("output")


class Job:
    """A submitted job. id: its id; info: the job as batchd last described it
    (a dict: status, counts, timestamps, throughput, eta_seconds, ...)."""

    def __init__(self, client, info):
        self._client = client
        self.id = info["id"]
        self.info = info
        self._etag = None

    def __repr__(self):
        return "<batchd.Job %s %s>" % (self.id, self.info.get("status"))

    @property
    def done(self):
        """Whether the job was in a final state when batchd last described it."""
        return self.info.get("status") in FINAL

    def status(self):
        """Asks batchd now; returns the job (a dict) and keeps it in info."""
        r = self._client._t.request("GET", "/v1/jobs/" + self.id)
        self.info = r.json()
        self._etag = r.headers.get("ETag")
        return self.info

    def _get(self, wait):
        """One GET of the job with If-None-Match (and ?wait= when wait > 0).
        Returns True when the job changed (info updated), False on 304."""
        hdrs = {"If-None-Match": self._etag} if self._etag else {}
        query = {"wait": wait} if wait else None
        r = self._client._t.request("GET", "/v1/jobs/" + self.id, query=query, headers=hdrs,
                                    timeout=self._client._t.timeout + (wait or 0))
        if r.status == 304:
            return False
        self.info = r.json()
        self._etag = r.headers.get("ETag")
        return True

    def _changed(self, deadline=None):
        """Returns once the job may have changed (or the deadline passed):
        a long-poll when batchd has it, else one interval of polling."""
        c = self._client
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        if c._long_poll is not False:
            wait = LONG_POLL_MAX if remaining is None else max(1, min(LONG_POLL_MAX,
                                                                       int(remaining + 0.999)))
            had_etag = self._etag is not None
            t0 = time.monotonic()
            try:
                changed = self._get(wait)
            except APIError as e:
                if not _unknown_parameter(e, "wait"):
                    raise
                c._long_poll = False
            else:
                quick = time.monotonic() - t0 < min(0.5, wait / 2)
                # A long-poll returns at once only with news: a new ETag
                # for a request that had one, a final state otherwise.
                ignored = quick and (not changed or (not had_etag and not self.done))
                if not ignored:
                    c._long_poll = True
                    self._interval = POLL_FIRST
                    return
                if c._long_poll is None:
                    c._long_poll = False
                if changed:
                    return
        interval = getattr(self, "_interval", POLL_FIRST)
        if remaining is not None:
            interval = min(interval, remaining)
        time.sleep(max(0.0, interval))
        self._interval = min(POLL_MAX, interval * 2)
        if self._get(0):
            self._interval = POLL_FIRST

    def wait(self, timeout=None):
        """Waits until the job is succeeded, failed or cancelled; returns the
        job (a dict). With timeout (seconds), raises batchd.Timeout (a
        TimeoutError) if the job is still unfinished then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.done:
            self._get(0)
        while not self.done:
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(self.id, self.info)
            self._changed(deadline)
        return self.info

    def cancel(self):
        """Cancels the job. Returns True if it was cancelled now, False if it
        had already finished (batchd's 409)."""
        try:
            r = self._client._t.request("DELETE", "/v1/jobs/" + self.id)
        except APIError as e:
            if e.status == 409:
                return False
            raise
        self.info = r.json()
        return True

    def results(self, order="input", errors_only=False):
        """Yields every result of the job as a dict, {"index": i, "output": x}
        or {"index": i, "error": {"message": m}}, as they are ready, until
        the job ends. order: "input" (index order, like imap) or
        "completion" (as they finish, like imap_unordered). errors_only:
        only the failed items (the error file)."""
        if order not in ("input", "completion"):
            raise ValueError('order must be "input" or "completion"')
        return self._client._results(self, order, errors_only)

    def outputs(self):
        """The outputs in input order as a list (waits for the job); an item
        error raises ItemError."""
        return [_output(r, self.id) for r in self.results("input")]


class Client:
    """A batchd service at url (http://HOST:PORT), with an API token if it
    needs one. timeout: seconds per request (a long-poll adds its wait);
    retries: how often a failed connection or a 503/429 is tried again."""

    def __init__(self, url, token=None, timeout=60.0, retries=6):
        self._t = Transport(url, token, timeout=timeout, retries=retries)
        self._long_poll = None      # None: not known yet
        self._whole_streams = None  # results?order=... known? None: not yet

    def __repr__(self):
        return "<batchd.Client %s://%s:%s>" % (self._t.scheme, self._t.host, self._t.port)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def close(self):
        """Nothing to release (each request has its own connection); for Pool's shape."""

    # ------------------------------------------------------------ jobs

    def submit(self, model, items, idempotency_key=None, webhook=None, chunk_size=None,
               options=None):
        """Submits a job; returns its Job at once (batchd answered 202: the
        job is durable). items: any iterable of JSON values, sent as it is
        read. idempotency_key: names this submission (one is made up when
        not given); a retry with the same key returns the same job, never a
        second one. webhook: a URL (or {"url": ...}) batchd POSTs to when
        the job ends. chunk_size: items per task (default: batchd adapts).
        options: more job options (item_timeout_s, max_attempts)."""
        key = idempotency_key or uuid.uuid4().hex
        if isinstance(webhook, str):
            webhook = {"url": webhook}
        opts = dict(options or {})
        if chunk_size is not None:
            opts["chunk_size"] = chunk_size
        if webhook is None and set(opts) <= {"chunk_size"}:
            body = _bodies.ItemsBody(items)
            query = {"model": model, "chunk_size": opts.get("chunk_size")}
            ctype = "application/x-ndjson"
        else:
            # Options NDJSON cannot carry go in a JSON job object, whose
            # inputs array is still written item by item.
            head = {"model": model}
            if opts:
                head["options"] = opts
            if webhook is not None:
                head["webhook"] = webhook
            text = json.dumps(head, separators=(",", ":"))
            body = _bodies.ItemsBody(items, head=text[:-1] + ',"inputs":[', tail="]}")
            query = None
            ctype = "application/json"
        try:
            r = self._t.request("POST", "/v1/jobs", query=query, body=body,
                                headers={"Content-Type": ctype}, idempotency_key=key)
        finally:
            body.close()
        job = Job(self, r.json())
        job.idempotency_key = key
        return job

    def job(self, job_id):
        """The Job of an existing id (asks batchd for it: APIError 404 if unknown)."""
        j = Job(self, {"id": job_id})
        j.status()
        return j

    def jobs(self, status=None, limit=100):
        """The newest jobs (dicts), optionally only those with one status."""
        return self._t.request("GET", "/v1/jobs",
                               query={"status": status, "limit": limit}).json()["jobs"]

    def models(self):
        """The models batchd loaded (dicts: name, description, workers, ...)."""
        return self._t.request("GET", "/v1/models").json()["models"]

    # ------------------------------------------------------------ Pool's shape

    @staticmethod
    def _nonempty(items):
        """(items, False) ready to send, or (None, True) if there are none;
        one-shot iterables are peeked at, not read."""
        if _bodies.is_replayable(items) and hasattr(items, "__len__"):
            return items, len(items) == 0
        it = iter(items)
        for first in it:
            return itertools.chain((first,), it), False
        return None, True

    def map(self, model, iterable, chunk_size=None):
        """The outputs of model over the items, in input order (a list).

        The first failed item, in input order, raises ItemError naming its
        index and message; the rest of the job is cancelled then, since its
        outputs could not be returned."""
        return list(self.imap(model, iterable, chunk_size))

    def imap(self, model, iterable, chunk_size=None):
        """Like map, but returns an iterator that yields each output as soon
        as it and those before it are ready (the job is submitted now)."""
        items, empty = self._nonempty(iterable)
        if empty:
            return iter(())
        job = self.submit(model, items, chunk_size=chunk_size)
        return self._outputs(job, job.results("input"), cancel_on_error=True)

    def imap_unordered(self, model, iterable, chunk_size=None):
        """Like imap, but yields the outputs in the order they finish (a
        stream from batchd); a failed item raises ItemError when it comes."""
        items, empty = self._nonempty(iterable)
        if empty:
            return iter(())
        job = self.submit(model, items, chunk_size=chunk_size)
        return self._outputs(job, job.results("completion"), cancel_on_error=True)

    def starmap(self, model, iterable, chunk_size=None):
        """Like map, for a model that takes several arguments (sum_squares):
        each tuple of arguments is sent as one item, a JSON array."""
        return self.map(model, (list(args) for args in iterable), chunk_size)

    def _outputs(self, job, results, cancel_on_error):
        try:
            for r in results:
                yield _output(r, job.id)
        except ItemError:
            if cancel_on_error:
                job.cancel()
            raise
        finally:
            results.close()

    # ------------------------------------------------------------ objects

    def upload(self, data):
        """Uploads an object into batchd's shared memory; returns it as batchd
        describes it (a dict: id, dtype, shape, bytes, ...). An item names
        it as {"$object": obj["id"]} (batchd.ref(obj)).

        data: a NumPy array (sent as .npy: its dtype and shape are kept) or
        bytes-like (raw bytes: dtype uint8). Not retried once it may have
        reached batchd (an upload is not idempotent): a TransportError then
        means it may or may not exist."""
        if hasattr(data, "__array_interface__") and hasattr(data, "dtype"):
            body = _bodies.npy_body(data)
            ctype = "application/x-npy"
        elif isinstance(data, (bytes, bytearray, memoryview)):
            body = _bodies.BufferBody(data)
            ctype = "application/octet-stream"
        else:
            raise TypeError("upload takes a NumPy array or bytes, not %s" % type(data).__name__)
        return self._t.request("POST", "/v1/objects", body=body, repeatable=False,
                               headers={"Content-Type": ctype}).json()

    def delete_object(self, object_id):
        """Deletes an object (APIError 409 while a running job uses it)."""
        self._t.request("DELETE", "/v1/objects/" + object_id)

    # ------------------------------------------------------------ results

    def _results(self, job, order, errors_only):
        if self._whole_streams is not False:
            query = {"stream": "true", "order": order}
            if errors_only:
                query["filter"] = "errors"
            try:
                resp = self._t.request("GET", "/v1/jobs/%s/results" % job.id, query=query,
                                       stream=True, headers={"Accept": "application/x-ndjson"})
            except APIError as e:
                if not (_unknown_parameter(e, "order") or _unknown_parameter(e, "filter")):
                    raise
                self._whole_streams = False
            else:
                self._whole_streams = True
                yield from self._stream(job, resp, order, errors_only)
                return
        if order == "input":
            yield from self._pages(job, 0, errors_only)
            return
        # completion order: today's stream, filtered here
        resp = self._t.request("GET", "/v1/jobs/%s/results" % job.id, query={"stream": "true"},
                               stream=True, headers={"Accept": "application/x-ndjson"})
        yield from self._stream(job, resp, order, errors_only)

    def _stream(self, job, resp, order, errors_only):
        nxt = 0
        lines = read_lines(resp)
        try:
            for line in lines:
                r = json.loads(line)
                if errors_only and "error" not in r:
                    continue
                nxt = r["index"] + 1
                yield r
        except TransportError:
            if order != "input":
                raise
            # An input-order stream that broke resumes with pages after
            # the last result it gave.
            yield from self._pages(job, nxt, errors_only)
        finally:
            lines.close()

    def _pages(self, job, offset, errors_only):
        """Results in input order, page by page from offset; a page ends at
        the first item without a result, so a running job is followed."""
        stalled = False
        while True:
            page = self._t.request("GET", "/v1/jobs/%s/results" % job.id,
                                   query={"offset": offset, "limit": PAGE_LIMIT}).json()
            for r in page["results"]:
                if not errors_only or "error" in r:
                    yield r
            nxt = page["next_offset"]
            if nxt is None:
                return
            if nxt == offset:
                # Nothing new: the job is running, or ended since the last
                # look (then the next page is complete), or ended with
                # items that never ran (cancelled: they have no result).
                if job.done:
                    if stalled:
                        return
                    stalled = True
                    job.status()
                else:
                    job._changed()
            else:
                stalled = False
            offset = nxt


def ref(obj):
    """The item value that names an uploaded object: {"$object": id}."""
    return {"$object": obj["id"] if isinstance(obj, dict) else obj}
