"""HTTP transport of the batchd client: one request, its retries, its errors.

A request opens its own connection (http.client, standard library only) and
closes it when the answer has been read, or when the caller is done with a
streamed answer. Bodies are bytes, or a *body source*: an object whose
chunks() yields the body again from the start on every call, so that a
retried request sends the same bytes; http.client sends such a body with
chunked transfer encoding, one chunk per yielded block, as it is produced.

Retries: a connection that cannot be made or that breaks, and the answers
503 (shutting down, workers not ready) and 429 (queue full), are retried
with exponential back-off and full jitter, honouring Retry-After, up to
`retries` times. A request whose effect is not safe to repeat (an upload:
each one makes a new object) is retried only when it certainly never
reached batchd (the connection could not be made) or batchd answered it
with 503/429 (then nothing was made). A job submission is safe to repeat
because it carries an Idempotency-Key: batchd answers a repeat with the job
the first request made.

An answer of 400 or more becomes an APIError built from its problem+json
body (status, title, detail, and the rest of the problem).
"""

import http.client
import json
import random
import socket
import ssl
import time
import urllib.parse

from .errors import APIError, TransportError

RETRY_STATUSES = (429, 503)
_BLOCK = 64 * 1024


class Response:
    """An answer: status, headers (an http.client.HTTPMessage), and either
    body (bytes, read whole) or, for a streamed request, raw (the open
    HTTPResponse; call close() when done)."""

    def __init__(self, status, headers, body=None, raw=None, conn=None):
        self.status = status
        self.headers = headers
        self.body = body
        self.raw = raw
        self._conn = conn

    def json(self):
        return json.loads(self.body.decode("utf-8")) if self.body else None

    def close(self):
        if self.raw is not None:
            self.raw.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _retry_after(headers):
    v = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(v)) if v is not None else None
    except ValueError:
        return None


def raise_for_problem(status, headers, body, idempotency_key=None):
    """Raises APIError for an answer of 400 or more; returns otherwise."""
    if status < 400:
        return
    problem = None
    try:
        problem = json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError):
        problem = None
    if not isinstance(problem, dict):
        text = body.decode("utf-8", "replace").strip() if body else ""
        problem = {"title": http.client.responses.get(status, "HTTP error"),
                   "detail": text[:500] or "no detail"}
    raise APIError(status, problem.get("title", ""), problem.get("detail", ""),
                   problem.get("type"), problem, idempotency_key)


class Transport:
    """Where batchd is and how to talk to it: base URL, token, timeouts, retries."""

    def __init__(self, url, token=None, timeout=60.0, retries=6, backoff=0.1, backoff_max=10.0):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("batchd URL must be http://HOST[:PORT] or https://..., got %r" % url)
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port
        self.prefix = u.path.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.backoff_max = backoff_max

    def _connect(self, timeout):
        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                               context=ssl.create_default_context())
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def url(self, path, query=None):
        q = ""
        if query:
            q = "?" + urllib.parse.urlencode([(k, v) for k, v in query.items() if v is not None])
        return self.prefix + path + q

    def sleep_before_retry(self, attempt, retry_after=None):
        """Exponential back-off with full jitter; Retry-After is a floor."""
        delay = random.uniform(0, min(self.backoff_max, self.backoff * (2 ** attempt)))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max))
        time.sleep(delay)

    def request(self, method, path, query=None, body=None, headers=None, timeout=None,
                stream=False, repeatable=True, idempotency_key=None, raise_errors=True):
        """Sends one request, with retries; returns a Response.

        body: None, bytes, or a body source (chunks() yields it again each
        call). repeatable: whether the request may be sent again after it
        may have reached batchd. stream: keep the answer open (Response.raw)
        instead of reading it whole. raise_errors: raise APIError for an
        answer of 400 or more (else return it). After the last retry a
        connection failure raises TransportError, an answer of 503/429 its
        APIError."""
        hdrs = {"Accept": "application/json", "User-Agent": "batchd-python"}
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        if idempotency_key:
            hdrs["Idempotency-Key"] = idempotency_key
        hdrs.update(headers or {})
        target = self.url(path, query)
        last_error = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep_before_retry(attempt - 1, _retry_after(last_error[1]) if
                                        isinstance(last_error, tuple) else None)
            conn = self._connect(timeout if timeout is not None else self.timeout)
            sent = False
            try:
                try:
                    conn.connect()
                except OSError as e:
                    last_error = e
                    conn.close()
                    continue
                sent = True
                try:
                    self._send(conn, method, target, body, hdrs)
                except (BrokenPipeError, ConnectionResetError):
                    # batchd may have answered early (a body too large, a
                    # bad header) and closed: its answer is worth reading.
                    pass
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                last_error = e
                if not sent or repeatable:
                    continue
                raise TransportError("%s %s: %s (not retried: it may have reached batchd)"
                                     % (method, target, e), idempotency_key) from e
            if resp.status in RETRY_STATUSES and attempt < self.retries:
                last_error = (resp.status, resp.headers)
                resp.read()
                conn.close()
                continue
            if stream and resp.status < 400:
                # A stream may rightly be silent for as long as an item
                # takes: no read timeout once it has begun (a batchd that
                # dies closes the connection, which ends the wait).
                if conn.sock is not None:
                    conn.sock.settimeout(None)
                return Response(resp.status, resp.headers, raw=resp, conn=conn)
            try:
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                last_error = e
                if repeatable:
                    continue
                raise TransportError("%s %s: %s" % (method, target, e), idempotency_key) from e
            conn.close()
            if raise_errors:
                raise_for_problem(resp.status, resp.headers, data, idempotency_key)
            return Response(resp.status, resp.headers, body=data)
        raise TransportError("%s %s: batchd at %s:%s unreachable after %d tries: %s"
                             % (method, target, self.host, self.port or "", self.retries + 1,
                                last_error), idempotency_key)

    @staticmethod
    def _send(conn, method, target, body, hdrs):
        if body is None or isinstance(body, (bytes, bytearray, memoryview)):
            conn.request(method, target, body=body, headers=hdrs)
            return
        length = getattr(body, "length", None)
        if length is not None:
            h = dict(hdrs, **{"Content-Length": str(length)})
            conn.request(method, target, body=body.chunks(), headers=h)
        else:
            conn.request(method, target, body=body.chunks(), headers=hdrs, encode_chunked=True)


def read_lines(resp):
    """Yields the lines of a streamed answer (bytes, without the newline).

    A stream that ends without its final chunk (batchd stopped) raises
    TransportError, so that it is never taken for a finished job."""
    try:
        while True:
            line = resp.raw.readline()
            if not line:
                return
            line = line.strip()
            if line:
                yield line
    except (OSError, http.client.HTTPException, socket.timeout) as e:
        raise TransportError("the result stream broke: %s" % (e,)) from e
    finally:
        resp.close()
