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


def clamp_bn_scales(P, lo=0.25):
    """Keep BatchNorm gammas away from zero (|gamma| >= lo); heqc folds/encodes BN scales."""
    for k, v in P.items():
        if k.endswith(".scale"):
            v.v = (np.sign(v.v) + (v.v == 0)) * np.maximum(np.abs(v.v), F32(lo))
            v.v = v.v.astype(F32)


# ============================================================================ ONNX export


class GraphBuilder:
    def __init__(self):
        self.nodes, self.inits = [], []

    def init(self, name, arr):
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op, inputs, outputs, name, domain=None, **attrs):
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))
        return outputs[0]

    def model(self, graph_name, opset, out_elem=TensorProto.FLOAT, out_shape=("N", 10), doc=""):
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 16, 16])
        out = helper.make_tensor_value_info("logits", out_elem, list(out_shape))
        g = helper.make_graph(self.nodes, graph_name, [inp], [out], initializer=self.inits)
        m = helper.make_model(
            g,
            opset_imports=[helper.make_opsetid("", opset)],
            producer_name="heqc-models",
            producer_version="1",
            doc_string=doc,
        )
        m.ir_version = 10 if opset >= 21 else 8
        onnx.checker.check_model(m, full_check=True)
        return m


def pv(P, k):
    return P[k].v.astype(F32)


def export_cnn_avg(P, S, opset):
    b = GraphBuilder()
    for k in P:
        b.init(k, pv(P, k))
    b.node("Conv", ["input", "conv1.weight", "conv1.bias"], ["conv1_out"], "conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.node("Relu", ["conv1_out"], ["relu1_out"], "relu1")
    b.node("AveragePool", ["relu1_out"], ["pool1_out"], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    b.node("Conv", ["pool1_out", "conv2.weight", "conv2.bias"], ["conv2_out"], "conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.node("Relu", ["conv2_out"], ["relu2_out"], "relu2")
    b.node("AveragePool", ["relu2_out"], ["pool2_out"], "pool2", kernel_shape=[2, 2], strides=[2, 2])
    b.node("Flatten", ["pool2_out"], ["flat_out"], "flatten", axis=1)
    b.node("Gemm", ["flat_out", "fc.weight", "fc.bias"], ["logits"], "fc", transB=1)
    return b.model("cnn_avg", opset, doc="cnn_avg: conv-relu-avgpool x2, fc; digits 16x16")


def export_resnet(P, S, opset):
    b = GraphBuilder()
    for k in P:
        b.init(k, pv(P, k))
    for k, st in S.items():
        b.init(k + ".mean", st["mean"].astype(F32))
        b.init(k + ".var", st["var"].astype(F32))

    def conv(x, w, out, name, stride=1, k=3):
        p = k // 2
        return b.node("Conv", [x, w], [out], name, kernel_shape=[k, k], pads=[p] * 4, strides=[stride, stride])

    def bn(x, name, out):
        return b.node(
            "BatchNormalization",
            [x, name + ".scale", name + ".bias", name + ".mean", name + ".var"],
            [out],
            name,
            epsilon=1e-5,
        )

    h = conv("input", "stem.conv.weight", "stem_conv_out", "stem.conv")
    h = bn(h, "stem.bn", "stem_bn_out")
    h = b.node("Relu", [h], ["stem_relu_out"], "stem.relu")
    r = conv(h, "block1.conv1.weight", "block1_conv1_out", "block1.conv1")
    r = bn(r, "block1.bn1", "block1_bn1_out")
    r = b.node("Relu", [r], ["block1_relu1_out"], "block1.relu1")
    r = conv(r, "block1.conv2.weight", "block1_conv2_out", "block1.conv2")
    r = bn(r, "block1.bn2", "block1_bn2_out")
    h = b.node("Add", [r, h], ["block1_add_out"], "block1.add")
    h = b.node("Relu", [h], ["block1_out"], "block1.relu2")
    r = conv(h, "block2.conv1.weight", "block2_conv1_out", "block2.conv1", stride=2)
    r = bn(r, "block2.bn1", "block2_bn1_out")
    r = b.node("Relu", [r], ["block2_relu1_out"], "block2.relu1")
    r = conv(r, "block2.conv2.weight", "block2_conv2_out", "block2.conv2")
    r = bn(r, "block2.bn2", "block2_bn2_out")
    s = conv(h, "block2.proj.weight", "block2_proj_out", "block2.proj", stride=2, k=1)
    s = bn(s, "block2.proj_bn", "block2_proj_bn_out")
    h = b.node("Add", [r, s], ["block2_add_out"], "block2.add")
    h = b.node("Relu", [h], ["block2_out"], "block2.relu2")
    h = b.node("GlobalAveragePool", [h], ["gap_out"], "gap")
    h = b.node("Flatten", [h], ["flat_out"], "flatten", axis=1)
    b.node("Gemm", [h, "fc.weight", "fc.bias"], ["logits"], "fc", transB=1)
    return b.model("resnet", opset, doc="resnet: stem conv-bn-relu, basic block, downsampling block, GAP, fc")


def export_mpdw(P, S, opset):
    b = GraphBuilder()
    for k in P:
        b.init(k, pv(P, k))
    b.node("Conv", ["input", "conv1.weight", "conv1.bias"], ["conv1_out"], "conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.node("Relu", ["conv1_out"], ["relu1_out"], "relu1")
    b.node("MaxPool", ["relu1_out"], ["pool1_out"], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    b.node("Conv", ["pool1_out", "dw.weight", "dw.bias"], ["dw_out"], "dw", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=8)
    b.node("Relu", ["dw_out"], ["dw_relu_out"], "dw_relu")
    b.node("Conv", ["dw_relu_out", "pw.weight", "pw.bias"], ["pw_out"], "pw", kernel_shape=[1, 1])
    b.node("Relu", ["pw_out"], ["pw_relu_out"], "pw_relu")
    b.node("MaxPool", ["pw_relu_out"], ["pool2_out"], "pool2", kernel_shape=[2, 2], strides=[2, 2])
    b.node("Flatten", ["pool2_out"], ["flat_out"], "flatten", axis=1)
    b.node("Gemm", ["flat_out", "fc.weight", "fc.bias"], ["logits"], "fc", transB=1)
    return b.model("mpdw", opset, doc="mpdw: conv-relu-maxpool, depthwise conv, pointwise conv, maxpool, fc")


EXPORT = {"cnn_avg": export_cnn_avg, "resnet": export_resnet, "mpdw": export_mpdw}


def with_head(m: onnx.ModelProto) -> onnx.ModelProto:
    """cnn_avg float model + Sigmoid("head_sigmoid") + Softmax("head_softmax") on the logits."""
    m = onnx.ModelProto.FromString(m.SerializeToString())
    g = m.graph
    for n in g.node:
        if n.output[0] == "logits":
            n.output[0] = "fc_out"
    g.node.append(helper.make_node("Sigmoid", ["fc_out"], ["sigmoid_out"], name="head_sigmoid"))
    g.node.append(helper.make_node("Softmax", ["sigmoid_out"], ["logits"], name="head_softmax", axis=1))
    g.name = "unsupported"
    m.doc_string = "cnn_avg + Sigmoid/Softmax head: contains ops heqc does not support"
    onnx.checker.check_model(m, full_check=True)
    return m


# ============================================================================ ORT helpers


def session(path_or_bytes):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def run(path_or_bytes, x):
    s = session(path_or_bytes)
    return s.run(None, {"input": x})[0].astype(F32)


class Reader(CalibrationDataReader):
    def __init__(self, calib, bs=50):
        self.batches = [calib[i : i + bs] for i in range(0, len(calib), bs)]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {"input": self.batches[self.i - 1]}

    def rewind(self):
        self.i = 0

    def __len__(self):
        return len(self.batches)


def quantize(float_model: onnx.ModelProto, out: Path, calib, fmt, act, wt, preprocess=True, extra=None):
    with tempfile.TemporaryDirectory(prefix="heqc-q-") as td:
        src = Path(td) / "float.onnx"
        onnx.save(float_model, src)
        if preprocess:
            pre = Path(td) / "pre.onnx"
            quant_pre_process(str(src), str(pre), skip_optimization=False)
            src = pre
        quantize_static(
            str(src),
            str(out),
            Reader(calib),
            quant_format=fmt,
            per_channel=True,
            activation_type=act,
            weight_type=wt,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options=extra or {},
        )
    m = onnx.load(out)
    onnx.checker.check_model(m, full_check=True)
    return m


def op_set(m: onnx.ModelProto):
    return sorted({(n.domain or "ai.onnx") + ":" + n.op_type for n in m.graph.node})


def q_elem_types(m: onnx.ModelProto):
    """Element types of every QuantizeLinear output / DequantizeLinear input / integer initializer."""
    inits = {t.name: t for t in m.graph.initializer}
    types = {"weights": set(), "activations": set()}
    vi = {v.name: v for v in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input)}
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear":
            src = n.input[0]
            if src in inits:
                types["weights"].add(TensorProto.DataType.Name(inits[src].data_type))
        if n.op_type == "QuantizeLinear":
            zp = n.input[2] if len(n.input) > 2 else ""
            if zp in inits:
                types["activations"].add(TensorProto.DataType.Name(inits[zp].data_type))
    return {k: sorted(v) for k, v in types.items()}
