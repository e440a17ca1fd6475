"""Counts word prefixes across a job (stateful): the built-in prefix_count in Python.

A stateful model keeps an accumulator per job in each worker process and
merges the workers' partials into one result at the end of the job
(README, "Writing a model in Python"; docs/coprocess.md, "Stateful
models"). This one gives the built-in C model's results exactly: each item
is a document, an array of words (strings, or raw bytes as
{"base64": "..."}, at most 1024 bytes); its own output is
{"words": n, "prefixes": p}; the job's result (GET /v1/jobs/{id}/result) is
{"threshold": t, "count": k, "prefixes": [{"prefix": "th", "count": 9}, ...]},
the prefixes (1 to len-1 bytes of each word) counted more than t times, by
count then bytes; a prefix that is not UTF-8 is given as "prefix_base64".

Start it with --model NAME:python=examples/python/prefix_count.py[,threshold=N].
Partials are JSON (prefix bytes as Latin-1 strings, so that any byte
survives): together they must fit --max-item-bytes.
"""

import base64
import binascii
from collections import Counter

MAX_WORD = 1024


def load(params):
    unknown = set(params) - {"threshold"}
    if unknown:
        raise ValueError("no parameter %s (the only one is threshold=N)"
                         % ", ".join(sorted(unknown)))
    t = int(params.get("threshold", "3"))
    if t < 0:
        raise ValueError("threshold must be >= 0, got %d" % t)
    return {"threshold": t}


def word_bytes(w, i):
    if isinstance(w, str):
        b = w.encode("utf-8", "surrogatepass")
    elif isinstance(w, dict) and len(w) == 1 and isinstance(w.get("base64"), str):
        try:
            b = base64.b64decode(w["base64"], validate=True)
        except (binascii.Error, ValueError) as e:
            raise ValueError("word %d: bad \"base64\" (%s)" % (i, e)) from None
    else:
        raise TypeError("word %d is %s, expected a string or {\"base64\": \"...\"}"
                        % (i, type(w).__name__))
    if len(b) > MAX_WORD:
        raise ValueError("word %d is longer than %d bytes (%d)" % (i, MAX_WORD, len(b)))
    return b


def acc_run(state, acc, doc):
    """One document into this job's accumulator: all or nothing (every
    word is checked before any is counted), so a bad item counts for
    nothing and is only its own error."""
    if not isinstance(doc, list):
        raise TypeError("expected an array of words, got %s" % type(doc).__name__)
    words = [word_bytes(w, i) for i, w in enumerate(doc)]
    if acc is None:
        acc = Counter()
    n = 0
    for b in words:
        for p in range(1, len(b)):
            acc[b[:p]] += 1
        n += max(len(b) - 1, 0)
    return acc, {"words": len(words), "prefixes": n}


def acc_export(state, acc):
    # Latin-1 maps each byte to one code point: any prefix survives JSON.
    return {p.decode("latin-1"): c for p, c in acc.items()}


def reduce(shared, partials):
    total = Counter()
    for part in partials:
        for p, c in part.items():
            total[p.encode("latin-1")] += c
    t = shared["threshold"]
    picks = sorted(((p, c) for p, c in total.items() if c > t), key=lambda pc: (-pc[1], pc[0]))
    out = []
    for p, c in picks:
        try:
            out.append({"prefix": p.decode("utf-8"), "count": c})
        except UnicodeDecodeError:
            out.append({"prefix_base64": base64.b64encode(p).decode(), "count": c})
    return {"threshold": t, "count": len(out), "prefixes": out}
