"""Request bodies produced from the caller's data as they are sent.

An items body (NDJSON, or a JSON job object whose "inputs" array is
written item by item) is encoded from the iterable while http.client sends
it: a million items never exist as one string in the client. A retry must
send the same bytes again, so a body source's chunks() starts over on each
call:

- a container (list, tuple, range, a NumPy array, dict keys: anything
  whose iter() makes a fresh iterator) is encoded again from its start;
- an iterator (a generator, a file, a map object: iter() returns itself)
  can be read only once, so what was encoded is also written to a spool file
  (tempfile.SpooledTemporaryFile: memory up to SPOOL_MEMORY bytes, then
  disk); a retry replays the spool, then goes on with the iterator where the
  failed attempt left it.

An item that JSON cannot represent raises ValueError naming its index
before anything is sent after it. Objects with a tolist() method (NumPy
arrays and scalars) are sent as what tolist() returns.
"""

import json
import tempfile

BLOCK = 64 * 1024
SPOOL_MEMORY = 1024 * 1024


def _default(o):
    tolist = getattr(o, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError("%s is not JSON serializable" % type(o).__name__)


def encode_item(index, item):
    """One item as compact JSON text; ValueError naming the index if it cannot be."""
    try:
        return json.dumps(item, separators=(",", ":"), allow_nan=False, default=_default,
                          ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise ValueError("item %d cannot be sent as JSON: %s" % (index, e)) from None


def is_replayable(items):
    """Whether iterating items again starts over (a container, not an iterator)."""
    if isinstance(items, (str, bytes, bytearray)):
        raise TypeError("items must be an iterable of items, not a %s" % type(items).__name__)
    return iter(items) is not items


class ItemsBody:
    """The items as NDJSON (one per line), or inside a JSON job object.

    head/tail: for a JSON body, the text before the first item and after the
    last ('{"model":...,"inputs":[' and ']}'); None for NDJSON. count: the
    items encoded so far (all of them once a send completed)."""

    def __init__(self, items, head=None, tail=None):
        self.head = head.encode() if head is not None else None
        self.tail = tail.encode() if tail is not None else None
        self.count = 0
        if is_replayable(items):
            self._seq = items
            self._it = None
            self._spool = None
        else:
            self._seq = None
            self._it = iter(items)
            self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
        self._done = False

    def _encoded(self, items, start):
        """Blocks of about BLOCK bytes of encoded items, from index start."""
        sep = "," if self.head is not None else ""
        parts = []
        size = 0
        i = start
        for item in items:
            text = encode_item(i, item)
            if self.head is not None:
                parts.append(text if i == 0 else sep + text)
            else:
                parts.append(text + "\n")
            size += len(text) + 1
            i += 1
            self.count = max(self.count, i)
            if size >= BLOCK:
                yield "".join(parts).encode("utf-8")
                parts, size = [], 0
        if parts:
            yield "".join(parts).encode("utf-8")

    def chunks(self):
        if self.head is not None:
            yield self.head
        if self._seq is not None:
            yield from self._encoded(self._seq, 0)
        else:
            self._spool.seek(0)
            while True:
                block = self._spool.read(BLOCK)
                if not block:
                    break
                yield block
            if not self._done:
                self._spool.seek(0, 2)
                for block in self._encoded(self._it, self.count):
                    # spooled before it is handed over: a block that was
                    # being sent when the connection broke is replayed
                    self._spool.write(block)
                    yield block
                self._done = True
        if self.tail is not None:
            yield self.tail

    def close(self):
        if self._spool is not None:
            self._spool.close()


class BufferBody:
    """Bytes sent in blocks from a buffer (bytes, or a memoryview of an array),
    optionally after a header; length is known, so Content-Length is sent."""

    def __init__(self, data, header=b""):
        self._header = header
        self._view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self.length = len(header) + len(self._view)

    def chunks(self):
        if self._header:
            yield self._header
        step = 1024 * 1024
        for off in range(0, len(self._view), step):
            yield self._view[off:off + step]


def npy_body(array):
    """A NumPy array as a .npy body (format 1.0 or 2.0), data sent from the
    array's memory (a C-contiguous copy only if it is not already)."""
    import io
    import numpy as np
    from numpy.lib import format as npformat

    a = np.ascontiguousarray(array)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    buf = io.BytesIO()
    hdr = npformat.header_data_from_array_1_0(a)
    try:
        npformat.write_array_header_1_0(buf, hdr)
    except ValueError:  # a header past 64 KiB (a very long shape) needs 2.0
        buf = io.BytesIO()
        npformat.write_array_header_2_0(buf, hdr)
    return BufferBody(a.reshape(-1).view(np.uint8) if a.size else b"", buf.getvalue())
