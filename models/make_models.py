#!/usr/bin/env python3
"""Regenerate every heqc model fixture under models/.

    python3 models/make_models.py            # everything (about 1-2 minutes on 2 cores)
    python3 models/make_models.py --only-node-cases

Deterministic: fixed seeds, numpy-only training on one BLAS thread, ONNX Runtime
MinMax calibration (min/max are order independent), ORT sessions on one thread.
Python is only used here; the Rust tests read the committed .onnx/.npy/.json files.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnxruntime.quantization import (  # noqa: E402
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import nn  # noqa: E402
from nn import F32, V  # noqa: E402

DATA_SEED = 0  # train/test split
CALIB_SEED = 1  # choice of the 200 calibration images
INIT_SEEDS = {"cnn_avg": 11, "resnet": 12, "mpdw": 13, "tiny": 14}
SHUFFLE_SEED_OFFSET = 100
N_CALIB = 200
N_TEST_FIXTURE = 64

INPUTS = HERE / "inputs"
CASES = HERE / "onnx_node_cases"

log = logging.getLogger("make_models")


# ============================================================================ data


def load_data():
    d = load_digits()
    x = d.images.astype(F32) / F32(16.0)  # [0,1], values k/16
    x = np.kron(x, np.ones((1, 2, 2), F32))  # nearest-neighbour 8x8 -> 16x16
    x = x[:, None, :, :].astype(F32)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=DATA_SEED, stratify=y)
    rng = np.random.default_rng(CALIB_SEED)
    calib = xtr[np.sort(rng.choice(len(xtr), N_CALIB, replace=False))]
    return xtr, ytr, xte, yte, calib


# ============================================================================ models (numpy)


def he(rng, shape, fan_in):
    return V((rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(F32))


def zeros(n):
    return V(np.zeros(n, F32))


def ident(kind, name, v):
    return v


def init_cnn_avg(rng):
    return {
        "conv1.weight": he(rng, (8, 1, 3, 3), 9),
        "conv1.bias": zeros(8),
        "conv2.weight": he(rng, (16, 8, 3, 3), 72),
        "conv2.bias": zeros(16),
        "fc.weight": he(rng, (10, 256), 256),
        "fc.bias": zeros(10),
    }, {}


def fwd_cnn_avg(P, S, x, train, hook=ident):
    h = hook("a", "input_q", x)
    h = nn.relu(nn.conv(h, hook("w", "conv1.weight", P["conv1.weight"]), P["conv1.bias"], pad=1))
    h = hook("a", "relu1", h)
    h = hook("a", "pool1", nn.avgpool2(h))
    h = nn.relu(nn.conv(h, hook("w", "conv2.weight", P["conv2.weight"]), P["conv2.bias"], pad=1))
    h = hook("a", "relu2", h)
    h = hook("a", "pool2", nn.avgpool2(h))
    out = nn.linear(nn.flatten(h), hook("w", "fc.weight", P["fc.weight"]), P["fc.bias"])
    return hook("a", "logits", out)


def _bn_params(P, S, name, c):
    P[name + ".scale"] = V(np.ones(c, F32))
    P[name + ".bias"] = zeros(c)
    S[name] = {"mean": np.zeros(c, F32), "var": np.ones(c, F32)}


def init_resnet(rng):
    P, S = {}, {}
    P["stem.conv.weight"] = he(rng, (8, 1, 3, 3), 9)
    _bn_params(P, S, "stem.bn", 8)
    P["block1.conv1.weight"] = he(rng, (8, 8, 3, 3), 72)
    _bn_params(P, S, "block1.bn1", 8)
    P["block1.conv2.weight"] = he(rng, (8, 8, 3, 3), 72)
    _bn_params(P, S, "block1.bn2", 8)
    P["block2.conv1.weight"] = he(rng, (16, 8, 3, 3), 72)
    _bn_params(P, S, "block2.bn1", 16)
    P["block2.conv2.weight"] = he(rng, (16, 16, 3, 3), 144)
    _bn_params(P, S, "block2.bn2", 16)
    P["block2.proj.weight"] = he(rng, (16, 8, 1, 1), 8)
    _bn_params(P, S, "block2.proj_bn", 16)
    P["fc.weight"] = he(rng, (10, 16), 16)
    P["fc.bias"] = zeros(10)
    return P, S


def fwd_resnet(P, S, x, train, hook=ident):
    def bn(h, name):
        return nn.batchnorm(h, P[name + ".scale"], P[name + ".bias"], S[name], train)

    h = nn.relu(bn(nn.conv(x, P["stem.conv.weight"], pad=1), "stem.bn"))
    r = nn.relu(bn(nn.conv(h, P["block1.conv1.weight"], pad=1), "block1.bn1"))
    r = bn(nn.conv(r, P["block1.conv2.weight"], pad=1), "block1.bn2")
    h = nn.relu(nn.add(r, h))
    r = nn.relu(bn(nn.conv(h, P["block2.conv1.weight"], stride=2, pad=1), "block2.bn1"))
    r = bn(nn.conv(r, P["block2.conv2.weight"], pad=1), "block2.bn2")
    sc = bn(nn.conv(h, P["block2.proj.weight"], stride=2), "block2.proj_bn")
    h = nn.relu(nn.add(r, sc))
    return nn.linear(nn.flatten(nn.gap(h)), P["fc.weight"], P["fc.bias"])


def init_mpdw(rng):
    return {
        "conv1.weight": he(rng, (8, 1, 3, 3), 9),
        "conv1.bias": zeros(8),
        "dw.weight": he(rng, (8, 1, 3, 3), 9),
        "dw.bias": zeros(8),
        "pw.weight": he(rng, (16, 8, 1, 1), 8),
        "pw.bias": zeros(16),
        "fc.weight": he(rng, (10, 256), 256),
        "fc.bias": zeros(10),
    }, {}


def fwd_mpdw(P, S, x, train, hook=ident):
    h = nn.relu(nn.conv(x, P["conv1.weight"], P["conv1.bias"], pad=1))
    h = nn.maxpool2(h)
    h = nn.relu(nn.conv(h, P["dw.weight"], P["dw.bias"], pad=1, groups=8))
    h = nn.relu(nn.conv(h, P["pw.weight"], P["pw.bias"]))
    h = nn.maxpool2(h)
    return nn.linear(nn.flatten(h), P["fc.weight"], P["fc.bias"])


def init_tiny(rng):
    return {
        "conv1.weight": he(rng, (8, 1, 3, 3), 9),
        "conv1.bias": zeros(8),
        "conv2.weight": he(rng, (16, 8, 3, 3), 72),
        "conv2.bias": zeros(16),
        "fc.weight": he(rng, (10, 256), 256),
        "fc.bias": zeros(10),
    }, {}


def fwd_tiny(P, S, x, train, hook=ident):
    """conv s2 (8-bit w) -> relu -> conv s2 (2-bit ternary w) -> relu -> fc (8-bit w)."""
    h = hook("a", "input_q", x)
    h = nn.relu(nn.conv(h, hook("w", "conv1.weight", P["conv1.weight"]), P["conv1.bias"], stride=2, pad=1))
    h = hook("a", "relu1", h)
    h = nn.relu(nn.conv(h, hook("w", "conv2.weight", P["conv2.weight"]), P["conv2.bias"], stride=2, pad=1))
    h = hook("a", "relu2", h)
    out = nn.linear(nn.flatten(h), hook("w", "fc.weight", P["fc.weight"]), P["fc.bias"])
    return hook("a", "logits", out)


ARCH = {
    "cnn_avg": (init_cnn_avg, fwd_cnn_avg),
    "resnet": (init_resnet, fwd_resnet),
    "mpdw": (init_mpdw, fwd_mpdw),
    "tiny": (init_tiny, fwd_tiny),
}


def predict(fwd, P, S, x, hook=ident, bs=256):
    outs = [fwd(P, S, V(x[i : i + bs]), False, hook).v for i in range(0, len(x), bs)]
    return np.concatenate(outs)


def train(name, xtr, ytr, xte, yte, epochs, lr, bs=32, P=None, S=None, hook=ident, log_prefix=""):
    init, fwd = ARCH[name]
    if P is None:
        P, S = init(np.random.default_rng(INIT_SEEDS[name]))
    rng = np.random.default_rng(INIT_SEEDS[name] + SHUFFLE_SEED_OFFSET)
    opt = nn.Adam(P, lr=lr, wd=1e-4)
    steps_per_epoch = (len(xtr) + bs - 1) // bs
    total = epochs * steps_per_epoch
    t0 = time.time()
    for ep in range(epochs):
        perm = rng.permutation(len(xtr))
        tot = 0.0
        for it in range(steps_per_epoch):
            step = ep * steps_per_epoch + it
            opt.lr = lr * 0.5 * (1 + np.cos(np.pi * step / total))  # cosine decay
            idx = perm[it * bs : (it + 1) * bs]
            out = fwd(P, S, V(xtr[idx]), True, hook)
            loss, g = nn.softmax_xent(out, ytr[idx])
            nn.backward(out, g)
            opt.step()
            tot += loss * len(idx)
        if S:
            recompute_bn_stats(fwd, P, S, xtr)
        acc = (predict(fwd, P, S, xte, hook).argmax(1) == yte).mean()
        log.info("%s%s epoch %d loss %.4f test acc %.4f (%.1fs)", log_prefix, name, ep + 1, tot / len(xtr), acc, time.time() - t0)
    return P, S


def recompute_bn_stats(fwd, P, S, xtr):
    """Population statistics: one full-batch pass in training mode with momentum 1."""
    for st in S.values():
        st["momentum"] = 1.0
    try:
        fwd(P, S, V(xtr), True)
    finally:
        for st in S.values():
            del st["momentum"]
