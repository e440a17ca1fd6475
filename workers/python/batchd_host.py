"""batchd's Python host: serves a model written in Python (docs/coprocess.md).

batchd's supervisor runs this file as
    INTERPRETER batchd_host.py CONFIG_JSON
with its control socket on fd 3 and the object store's memfd on fd 4. It
imports the model's module, calls load(params) once, freezes the heap
(gc.freeze: the loaded objects are never touched by the collector again, so
their pages stay shared), and then forks one child per batchd worker (it is
a zygote): the weights are loaded once and shared copy-on-write.

It forks only while it has a single thread: a load() that left a thread
running is refused (exit 2, naming the thread count), never a silent fork
with threads.

Each child serves one batchd worker over its own socket: init(shared) once,
then a BATCH frame per task, answered with one RESULT frame per item (in
order) and a DONE frame. run_batch(state, items) is used when the module
has it, else run(state, item) per item, each result sent as soon as it is
ready (so a crash later in the chunk loses nothing already done).

A stateful module (acc_run, acc_export, reduce, like the built-in
prefix_count) gets ACC_BATCH frames instead: acc_run(state, acc, item)
returns (acc, output), the child keeps one accumulator per job, and
EXPORT / REDUCE are answered with a VALUE frame.

Only the standard library is needed; numpy is used when it is installed
(objects become read-only numpy arrays, numpy outputs become JSON).
"""

import gc
import importlib.util
import json
import mmap
import os
import signal
import socket
import struct
import sys
import threading
import traceback

# Frame types (docs/coprocess.md).
LOADED, ERROR, FORKED, FORK = b"L", b"E", b"K", b"F"
READY, RESULT, RESULTS, DONE, BATCH, STOP = b"Y", b"R", b"A", b"D", b"B", b"S"
# Stateful models only (acc_run, acc_export, reduce).
ACC_BATCH, EXPORT, DROP, REDUCE, VALUE = b"C", b"X", b"Z", b"U", b"V"

EXIT_FATAL = 2  # load failed: batchd reports it and does not retry at start-up
EXIT_INIT = 3   # init failed in a child

try:
    import numpy as np
except ImportError:  # objects then arrive as memoryviews
    np = None


def log(msg):
    sys.stderr.write("batchd python host [%d]: %s\n" % (os.getpid(), msg))
    sys.stderr.flush()


def frame(kind, payload=b""):
    return struct.pack("<I", len(payload) + 1) + kind + payload


class Conn:
    """A frame reader and writer over a stream socket."""

    def __init__(self, sock):
        self.sock = sock
        self.rfile = sock.makefile("rb", buffering=1 << 16)

    def read(self):
        """The next (type, payload), or (None, None) at end of stream."""
        hdr = self.rfile.read(4)
        if len(hdr) < 4:
            return None, None
        (n,) = struct.unpack("<I", hdr)
        if n == 0:
            raise ValueError("a frame of length 0")
        body = self.rfile.read(n)
        if len(body) < n:
            return None, None
        return body[:1], body[1:]

    def send(self, data):
        self.sock.sendall(data)


def error_text(exc):
    """'Type: message', the item's error as batchd shows it."""
    t = type(exc)
    name = t.__qualname__ if t.__module__ in ("builtins", "__main__") else \
        "%s.%s" % (t.__module__, t.__qualname__)
    msg = str(exc)
    return "%s: %s" % (name, msg) if msg else name


def where(exc):
    """'file:line' of the innermost frame of a traceback, or ''."""
    tb = traceback.extract_tb(exc.__traceback__)
    return "%s:%d" % (tb[-1].filename, tb[-1].lineno) if tb else ""


def to_json_default(v):
    if np is not None:
        if isinstance(v, np.ndarray):
            return v.tolist()
        if isinstance(v, np.generic):
            return v.item()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return list(bytes(v))
    raise TypeError("%s is not JSON serializable" % type(v).__name__)


_encoder = json.JSONEncoder(default=to_json_default, allow_nan=False,
                            separators=(",", ":"))


class Objects:
    """The object store's memory, mapped read-only once in the zygote."""

    DTYPES = {"uint8": "B", "int32": "i", "int64": "q", "float32": "f",
              "float64": "d"}

    def __init__(self, fd, size):
        self.map = None
        if fd >= 0 and size > 0:
            self.map = mmap.mmap(fd, size, flags=mmap.MAP_SHARED,
                                 prot=mmap.PROT_READ)
            os.close(fd)

    def hook(self, d):
        """json object_hook: an object reference becomes a read-only view."""
        if "$object" not in d or "$offset" not in d:
            return d
        off, n, shape = d["$offset"], d["$bytes"], tuple(d["$shape"])
        if np is not None:
            dt = np.dtype(d["$dtype"])
            a = np.frombuffer(self.map, dtype=dt, count=n // dt.itemsize,
                              offset=off)
            return a.reshape(shape)
        mv = memoryview(self.map)[off:off + n]
        return mv.cast(self.DTYPES[d["$dtype"]], shape)


def load_module(path, name):
    spec = importlib.util.spec_from_file_location("batchd_model_" + name, path)
    if spec is None:
        raise ImportError("cannot import %s (not a Python file?)" % path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def thread_count():
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def die_with_parent():
    """PR_SET_PDEATHSIG: a child dies with the zygote (batchd restarts both)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except Exception as e:  # noqa: BLE001 - best effort; the socket's EOF remains
        log("cannot set PR_SET_PDEATHSIG: %s" % e)


def encode_result(index, out):
    try:
        text = _encoder.encode(out).encode()
        return frame(RESULT, struct.pack("<IB", index, 1) + text)
    except Exception as e:  # noqa: BLE001 - any encoding failure is the item's
        return frame(RESULT, struct.pack("<IB", index, 0) +
                     ("output is not JSON: " + error_text(e)).encode())


def encode_error(index, exc):
    return frame(RESULT, struct.pack("<IB", index, 0) + error_text(exc).encode())


def parse_batch(payload, decoder):
    """The items of a BATCH payload, decoded as one JSON array (one call)."""
    (count,) = struct.unpack_from("<I", payload, 0)
    pos, parts = 4, []
    for _ in range(count):
        (n,) = struct.unpack_from("<I", payload, pos)
        parts.append(payload[pos + 4:pos + 4 + n])
        pos += 4 + n
    items = decoder.decode((b"[" + b",".join(parts) + b"]").decode("utf-8"))
    if len(items) != count:
        raise ValueError("%d items decoded, %d announced" % (len(items), count))
    return items


def encode_outputs(outs):
    """Frames for run_batch's outputs: a RESULTS frame per run of outputs
    (one encoder call for the run), a RESULT frame per exception or per
    output that cannot be encoded."""
    parts, start = [], 0
    n = len(outs)
    while start < n:
        if isinstance(outs[start], BaseException):
            parts.append(encode_error(start, outs[start]))
            start += 1
            continue
        end = start
        while end < n and not isinstance(outs[end], BaseException):
            end += 1
        try:
            text = _encoder.encode(outs[start:end]).encode()
            parts.append(frame(RESULTS, struct.pack("<I", start) + text))
        except Exception:  # noqa: BLE001 - find the culprit item by item
            parts.extend(encode_result(i, outs[i]) for i in range(start, end))
        start = end
    return parts


def encode_value(fn, *args):
    """A VALUE frame: fn(*args) as JSON, or its exception as the error."""
    try:
        text = _encoder.encode(fn(*args)).encode()
        return frame(VALUE, b"\x01" + text)
    except Exception as e:  # noqa: BLE001 - the export's or reduce's error
        return frame(VALUE, b"\x00" + error_text(e).encode())


def acc_step(acc_run, state, accs, key, item):
    """One item of a stateful model: acc_run(state, acc, item) returns
    (acc, output); acc is None on the job's first item in this process.
    An exception leaves the job's accumulator as it was."""
    res = acc_run(state, accs.get(key), item)
    if not isinstance(res, tuple) or len(res) != 2:
        raise TypeError("acc_run must return (acc, output), not %s"
                        % type(res).__name__)
    accs[key] = res[0]
    return res[1]


def serve(conn, mod, shared, state, objects):
    run = getattr(mod, "run", None)
    run_batch = getattr(mod, "run_batch", None)
    acc_run = getattr(mod, "acc_run", None)
    accs = {}  # job key -> the job's accumulator in this process
    decoder = json.JSONDecoder(object_hook=objects.hook) if objects.map is not None \
        else json.JSONDecoder()
    while True:
        kind, payload = conn.read()
        if kind is None or kind == STOP:
            return
        if kind == EXPORT:
            (key,) = struct.unpack("<Q", payload)
            if key in accs:
                conn.send(encode_value(mod.acc_export, state, accs.pop(key)))
            else:  # no item of the job ran here: nothing to hand over
                conn.send(frame(VALUE, b"\x01null"))
            continue
        if kind == DROP:
            (key,) = struct.unpack("<Q", payload)
            accs.pop(key, None)
            continue
        if kind == REDUCE:
            try:
                partials = json.loads(payload)
            except Exception as e:  # noqa: BLE001
                raise ValueError("a bad REDUCE frame: %s" % e) from e
            conn.send(encode_value(mod.reduce, shared, partials))
            continue
        key = None
        if kind == ACC_BATCH and acc_run is not None:
            (key,) = struct.unpack_from("<Q", payload)
            payload = payload[8:]
        elif kind != BATCH:
            raise ValueError("unexpected frame %r" % kind)
        try:
            items = parse_batch(payload, decoder)
        except Exception as e:  # noqa: BLE001
            raise ValueError("a bad BATCH frame: %s" % e) from e
        n = len(items)
        if key is not None:
            for i, item in enumerate(items):
                try:
                    out = encode_result(i, acc_step(acc_run, state, accs, key, item))
                except Exception as e:  # noqa: BLE001 - the item's error result
                    out = encode_error(i, e)
                conn.send(out)
            conn.send(frame(DONE, struct.pack("<I", n)))
        elif run_batch is not None:
            try:
                outs = run_batch(state, items)
                outs = list(outs)
                if len(outs) != n:
                    raise ValueError("run_batch returned %d outputs for %d items"
                                     % (len(outs), n))
                parts = encode_outputs(outs)
            except Exception as e:  # noqa: BLE001 - the batch's error is each item's
                parts = [encode_error(i, e) for i in range(n)]
            parts.append(frame(DONE, struct.pack("<I", n)))
            conn.send(b"".join(parts))
        else:
            for i, item in enumerate(items):
                try:
                    out = encode_result(i, run(state, item))
                except Exception as e:  # noqa: BLE001 - the item's error result
                    out = encode_error(i, e)
                conn.send(out)
            conn.send(frame(DONE, struct.pack("<I", n)))


def child_main(sock_fd, mod, shared, objects, zygote_pid):
    """A forked child: serves one batchd worker, then exits."""
    die_with_parent()
    if os.getppid() != zygote_pid:
        os._exit(0)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    conn = Conn(socket.socket(fileno=sock_fd))
    code = 0
    try:
        try:
            init = getattr(mod, "init", None)
            state = init(shared) if init is not None else shared
        except Exception as e:  # noqa: BLE001
            conn.send(frame(ERROR, ("init() failed: %s (%s)" %
                                    (error_text(e), where(e))).encode()))
            os._exit(EXIT_INIT)
        # "batch": run_batch answers a BATCH in one call, so a death in it
        # names no item and batchd splits the batch (docs/coprocess.md)
        batch = callable(getattr(mod, "run_batch", None))
        conn.send(frame(READY, json.dumps({"pid": os.getpid(), "batch": batch}).encode()))
        serve(conn, mod, shared, state, objects)
        fini = getattr(mod, "fini", None)
        if fini is not None:
            fini(state)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the worker is gone: so is this child
    except BaseException:  # noqa: BLE001
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


def reap(signum, frame_):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if os.WIFSIGNALED(status):
            log("child %d killed by signal %d" % (pid, os.WTERMSIG(status)))
        elif os.WEXITSTATUS(status) != 0:
            log("child %d exited with code %d" % (pid, os.WEXITSTATUS(status)))


def main():
    cfg = json.loads(sys.argv[1])
    # Ctrl-C reaches batchd's whole process group; batchd decides the order
    # of shutdown.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = Conn(socket.socket(fileno=cfg["control_fd"]))
    path, name = cfg["module"], cfg["name"]

    def fatal(msg):
        try:
            ctl.send(frame(ERROR, msg.encode("utf-8", "replace")))
        finally:
            os._exit(EXIT_FATAL)

    try:
        mod = load_module(path, name)
    except SyntaxError as e:
        fatal("%s:%s: %s: %s" % (e.filename or path, e.lineno,
                                 type(e).__name__, e.msg))
    except BaseException as e:  # noqa: BLE001 - any import failure is fatal
        fatal("importing %s failed: %s (%s)" % (path, error_text(e), where(e)))
    stateful = callable(getattr(mod, "acc_run", None))
    if stateful:
        missing = [h for h in ("acc_export", "reduce")
                   if not callable(getattr(mod, h, None))]
        if missing:
            fatal("%s defines acc_run but not %s: a stateful model needs "
                  "acc_run, acc_export and reduce" % (path, " nor ".join(missing)))
    elif not callable(getattr(mod, "run", None)) and \
            not callable(getattr(mod, "run_batch", None)):
        fatal("%s defines neither run(state, item) nor run_batch(state, items)"
              % path)
    try:
        load = getattr(mod, "load", None)
        shared = load(dict(cfg["params"])) if load is not None else None
    except BaseException as e:  # noqa: BLE001
        fatal("load() failed: %s (%s)" % (error_text(e), where(e)))
    objects = Objects(cfg.get("objects_fd", -1), cfg.get("objects_size", 0))
    gc.collect()
    gc.freeze()  # the loaded heap is never written by the collector: shared
    n_threads = thread_count()
    if n_threads > 1 or threading.active_count() > 1:
        fatal("load() left %d threads running (threading sees %d); batchd "
              "forks the host and forks only with a single thread: start "
              "threads in init(), not load()"
              % (n_threads, threading.active_count()))
    doc = (mod.__doc__ or "").strip().splitlines()
    ctl.send(frame(LOADED, json.dumps({
        "pid": os.getpid(), "threads": n_threads, "stateful": stateful,
        "python": sys.version.split()[0], "numpy": np is not None,
        "description": doc[0] if doc else "Python model %s" % path,
    }).encode()))
    signal.signal(signal.SIGCHLD, reap)
    me = os.getpid()
    while True:
        hdr = b""
        fds = []
        # FORK carries an fd: the header is read with recvmsg.
        try:
            while len(hdr) < 5:
                msg, anc, _flags, _addr = ctl.sock.recvmsg(
                    5 - len(hdr), socket.CMSG_SPACE(4 * 4))
                if not msg:
                    break
                hdr += msg
                for level, typ, data in anc:
                    if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                        fds += list(struct.unpack("%di" % (len(data) // 4),
                                                  data[:len(data) - len(data) % 4]))
        except ConnectionResetError:
            hdr = b""
        if len(hdr) < 5:
            break  # the supervisor closed the socket: stop
        (n,) = struct.unpack_from("<I", hdr)
        body = b""
        while len(body) < n - 1:
            chunk = ctl.sock.recv(n - 1 - len(body))
            if not chunk:
                break
            body += chunk
        kind = hdr[4:5]
        if kind != FORK or len(body) != 4 or len(fds) != 1:
            log("unexpected control frame %r; exiting" % kind)
            os._exit(EXIT_FATAL)
        (worker,) = struct.unpack("<I", body)
        pid = os.fork()
        if pid == 0:
            ctl.rfile.close()
            ctl.sock.close()
            child_main(fds[0], mod, shared, objects, me)
        os.close(fds[0])
        ctl.send(frame(FORKED, struct.pack("<II", worker, pid)))
    # Orderly stop: the children stop when their workers close their sockets.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    os._exit(0)


if __name__ == "__main__":
    main()
