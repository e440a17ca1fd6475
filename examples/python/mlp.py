"""The mlp of batchd's built-in model, in numpy (reads the same .safetensors file)."""
# Served by batchd as a Python model (docs/coprocess.md):
#
#   build/batchd --model pymlp:python=examples/python/mlp.py,weights=mlp.safetensors
#
# load() maps the file read-only once, in the host, before it forks the
# workers' children: F32 weights are numpy views of the mapping (the page
# cache's pages, shared by every process), F16/BF16 ones are converted once
# (shared copy-on-write: gc.freeze keeps them untouched). run_batch() takes
# a whole chunk: every image of every item goes through each layer as one
# matrix product, as the C model does per item.
#
# An item is one image (an array of `in` numbers), an array of images, or
# {"$object": ID} naming an uploaded [n, 784] or [n, 28, 28] array, float32
# or uint8 (scaled by 1/255), which arrives as a read-only numpy view. The
# outputs are the C model's: {"class", "probabilities"} per image.
import json
import mmap
import struct

import numpy as np


def read_safetensors(path):
    """{name: array} of a .safetensors file, F32 tensors as views of its mapping."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    (n,) = struct.unpack_from("<Q", mm, 0)
    header = json.loads(mm[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        start, end = t["data_offsets"]
        count = (end - start) // (4 if t["dtype"] == "F32" else 2)
        if t["dtype"] == "F32":
            a = np.frombuffer(mm, np.dtype("<f4"), count, base + start)
        elif t["dtype"] == "F16":
            a = np.frombuffer(mm, np.dtype("<f2"), count, base + start).astype(np.float32)
        elif t["dtype"] == "BF16":
            u = np.frombuffer(mm, np.dtype("<u2"), count, base + start).astype(np.uint32)
            a = (u << 16).view(np.float32)
        else:
            raise ValueError("%s: tensor %s has dtype %s (F32, F16 or BF16)"
                             % (path, name, t["dtype"]))
        out[name] = a.reshape(t["shape"])
    return out


def load(params):
    t = read_safetensors(params["weights"])
    layers = []
    while "layers.%d.weight" % len(layers) in t:
        i = len(layers)
        w, b = t["layers.%d.weight" % i], t["layers.%d.bias" % i]
        if layers and w.shape[1] != layers[-1][0].shape[0]:
            raise ValueError("layers.%d.weight: shape %s does not follow %s"
                             % (i, w.shape, layers[-1][0].shape))
        layers.append((w, b))
    if not layers:
        raise ValueError("%s has no layers.0.weight" % params["weights"])
    return layers


def forward(layers, x):
    """Probabilities [n, out] of images x [n, in] (float32)."""
    for i, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if i + 1 < len(layers):
            np.maximum(x, 0, out=x)
    x = np.exp(x - x.max(axis=1, keepdims=True))
    return (x / x.sum(axis=1, keepdims=True, dtype=np.float64)).astype(np.float32)


def images(item, n_in):
    """(images [k, n_in] float32, one) of an item; raises ValueError."""
    if isinstance(item, np.ndarray):
        a = item.reshape(item.shape[0], -1) if item.ndim >= 2 else item.reshape(1, -1)
        if a.shape[1] != n_in:
            raise ValueError("object of shape %s: expected [n, %d] or [n, h, w] with "
                             "h*w = %d" % (item.shape, n_in, n_in))
        return (a * np.float32(1 / 255) if a.dtype == np.uint8 else a.astype(np.float32)), False
    if isinstance(item, list) and item and isinstance(item[0], list):
        a = np.asarray(item, dtype=np.float32)
        one = False
    elif isinstance(item, list) and item:
        a = np.asarray([item], dtype=np.float32)
        one = True
    else:
        raise ValueError("expected an array of %d numbers, an array of such arrays, or "
                         "{\"$object\": \"ID\"}" % n_in)
    if a.ndim != 2 or a.shape[1] != n_in:
        raise ValueError("expected images of %d numbers (the network's input size)" % n_in)
    return a, one


def output(p):
    return {"class": int(p.argmax()), "probabilities": p.tolist()}


def run_batch(layers, items):
    n_in = layers[0][0].shape[1]
    parts, outs = [], [None] * len(items)
    for i, item in enumerate(items):
        try:
            parts.append((i,) + images(item, n_in))
        except (ValueError, TypeError) as e:
            outs[i] = e  # that item's error; the others go on
    if parts:
        probs = forward(layers, np.concatenate([a for _, a, _ in parts]))
        row = 0
        for i, a, one in parts:
            p = probs[row:row + len(a)]
            row += len(a)
            outs[i] = output(p[0]) if one else [output(r) for r in p]
    return outs
