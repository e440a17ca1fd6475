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
#
# {"images": ITEM, "output": "class"} (ITEM any of the above) answers the
# class alone, an int per image: a tenth of the bytes to encode, store and
# read back when the probabilities are not wanted. ,output=class in --model
# makes that every item's default ("output": "full" asks for both).
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


OUTPUTS = ("full", "class")


def load(params):
    form = params.get("output", "full")
    if form not in OUTPUTS:
        raise ValueError("output=%s: expected one of %s" % (form, ", ".join(OUTPUTS)))
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
    return Layers(layers, form)


class Layers(list):
    """The (weight, bias) pairs, and the default output form."""

    def __init__(self, layers, form="full"):
        super().__init__(layers)
        self.form = form


def logits(layers, x):
    """The last layer's outputs [n, out] of images x [n, in] (float32)."""
    for i, (w, b) in enumerate(layers):
        x = x @ w.T
        x += b
        if i + 1 < len(layers):
            np.maximum(x, 0, out=x)
    return x


def forward(layers, x):
    """Probabilities [n, out] of images x [n, in] (float32)."""
    x = logits(layers, x)
    x = np.exp(x - x.max(axis=1, keepdims=True))
    return (x / x.sum(axis=1, keepdims=True, dtype=np.float64)).astype(np.float32)


def images(item, n_in):
    """(images [k, n_in] float32, one) of an item; raises ValueError."""
    if isinstance(item, dict) and "images" in item:
        raise ValueError("\"images\" inside \"images\"")
    if isinstance(item, np.ndarray):
        a = item.reshape(item.shape[0], -1) if item.ndim >= 2 else item.reshape(1, -1)
        if a.shape[1] != n_in:
            raise ValueError("object of shape %s: expected [n, %d] or [n, h, w] with "
                             "h*w = %d" % (item.shape, n_in, n_in))
        if a.dtype == np.uint8:
            return a * np.float32(1 / 255), False
        # float32 stays the object's read-only view: no copy
        return (a if a.dtype == np.float32 else a.astype(np.float32)), False
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


def unwrap(item, default):
    """(the images part, the output form) of an item."""
    if isinstance(item, dict) and "images" in item:
        form = item.get("output", default)
        if form not in OUTPUTS or set(item) - {"images", "output"}:
            raise ValueError("expected {\"images\": ..., \"output\": \"full\" or \"class\"}")
        return item["images"], form
    return item, default


def run_batch(layers, items):
    """Every image of the chunk through each layer as one matrix product."""
    n_in = layers[0][0].shape[1]
    default = getattr(layers, "form", "full")
    parts, outs = [], [None] * len(items)
    for i, item in enumerate(items):
        try:
            x, form = unwrap(item, default)
            parts.append((i, form) + images(x, n_in))
        except (ValueError, TypeError) as e:
            outs[i] = e  # that item's error; the others go on
    if parts:
        x = parts[0][2] if len(parts) == 1 else np.concatenate([p[2] for p in parts])
        if all(form == "class" for _, form, _, _ in parts):
            # classes alone: the argmax of the logits is the argmax of the
            # probabilities (softmax is monotonic), so skip it
            classes = logits(layers, x).argmax(axis=1).tolist()
            probs = None
        else:
            probs = forward(layers, x)
            classes = probs.argmax(axis=1).tolist()
        row = 0
        for i, form, a, one in parts:
            k = len(a)
            if form == "class":
                outs[i] = classes[row] if one else classes[row:row + k]
            else:
                p = probs[row:row + k]
                outs[i] = output(p[0]) if one else [output(r) for r in p]
            row += k
    return outs
