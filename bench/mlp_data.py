"""mlp_data: the weights, forward pass and images of the mlp workload (make
bench, workload 4) for the Python baselines (py_mlp.py). batchd's client
(e2e_objects.c) makes the same images in C (numpy_rng.h).

The weights are read from the same .safetensors file batchd maps (a header
length, a JSON header, then the tensors layers.{i}.weight [out, in] and
layers.{i}.bias [out], float32), with numpy only; the forward pass is the
model's: y = W x + b per layer, ReLU between layers, softmax after the
last. The images are float32 in [0, 1), seeded per batch, so every system
classifies the same pixels.
"""
import json
import struct

import numpy as np

IN = 784


def load_weights(path):
    """The layers [(W, b), ...] of the file, as float32 arrays."""
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    base = 8 + hlen
    layers = []
    i = 0
    while "layers.%d.weight" % i in header:
        t = []
        for name in ("weight", "bias"):
            h = header["layers.%d.%s" % (i, name)]
            if h["dtype"] != "F32":
                raise SystemExit("mlp_data: %s is %s, only F32 is read" % (name, h["dtype"]))
            b, e = h["data_offsets"]
            t.append(np.frombuffer(raw, dtype="<f4", count=(e - b) // 4,
                                   offset=base + b).reshape(h["shape"]))
        layers.append((t[0], t[1]))
        i += 1
    return layers


def forward(layers, x):
    """Probabilities [n, classes] of the images x [n, 784] (float32)."""
    for k, (w, b) in enumerate(layers):
        x = x @ w.T + b
        if k + 1 < len(layers):
            np.maximum(x, 0, out=x)
    x = x - x.max(axis=1, keepdims=True)
    np.exp(x, out=x)
    return x / x.sum(axis=1, keepdims=True)


def batch(k, n):
    """Batch k: n images [n, 784] float32 in [0, 1)."""
    return np.random.default_rng(1000 + k).random((n, IN), dtype=np.float32)


def classes_agree(got, probs):
    """True when every class in got is the argmax of probs, or ties with it
    to float32 rounding (batchd's BLAS and numpy's may sum in other orders)."""
    got = np.asarray(got)
    want = probs.argmax(axis=1)
    bad = np.nonzero(got != want)[0]
    for i in bad:
        if probs[i, want[i]] - probs[i, got[i]] > 1e-5:
            return False
    return True
