#!/usr/bin/env python3
"""Regenerate every heqc model fixture under models/.

    python3 models/make_models.py            # everything (about 1-2 minutes on 2 cores)
    python3 models/make_models.py --only-node-cases
    python3 models/make_models.py --retrain  # train the float models again instead of reusing them

Deterministic: fixed seeds, numpy-only training on one BLAS thread, ONNX Runtime
MinMax calibration (min/max are order independent), ORT sessions on one thread.
Training is only reproducible on the same kind of CPU (OpenBLAS and numpy pick their
SIMD kernels at run time), so by default the trained weights are read back from the
committed float models (and from `tiny_qcdq_w2.onnx`); `--retrain` trains from scratch.
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
sys.dont_write_bytecode = True
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


def train(name, xtr, ytr, xte, yte, epochs, lr, bs=32, P=None, S=None, hook=ident, log_prefix="", epoch_cb=None):
    init, fwd = ARCH[name]
    if P is None:
        P, S = init(np.random.default_rng(INIT_SEEDS[name]))
    rng = np.random.default_rng(INIT_SEEDS[name] + SHUFFLE_SEED_OFFSET)
    opt = nn.Adam(P, lr=lr, wd=1e-4)
    steps_per_epoch = (len(xtr) + bs - 1) // bs
    total = epochs * steps_per_epoch
    t0 = time.time()
    for ep in range(epochs):
        if epoch_cb is not None:
            epoch_cb(P, S)
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
            if S:
                clamp_bn_scales(P)
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

CEIL_FEATURES = 16 * 5 * 5
# float model (holds the fitted fc) -> its QDQ file, for count_include_pad 0 and 1
CEIL_FLOAT = {"ceil_float.onnx": "ceil_qdq_u8s8.onnx", "ceil_cip_float.onnx": "ceil_cip_qdq_u8s8.onnx"}
CEIL_RIDGE = 1.0


def export_ceil(P, fc_weight, fc_bias, count_include_pad, opset=13, features_only=False):
    """`ceil`: cnn_avg's trained convs with pools as torchvision exports them (ceil_mode=1, partial last windows):
    Conv(1->8, 3x3, pad 1) + ReLU -> MaxPool 3x3 stride 2 ceil (16 -> 8) -> Conv(8->16, 3x3, pad 1) + ReLU ->
    AveragePool 3x3 stride 2 pad 1 ceil (8 -> 5; count_include_pad as given) -> Flatten -> Gemm(400->10)."""
    b = GraphBuilder()
    for k in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
        b.init(k, pv(P, k))
    b.node("Conv", ["input", "conv1.weight", "conv1.bias"], ["conv1_out"], "conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.node("Relu", ["conv1_out"], ["relu1_out"], "relu1")
    b.node("MaxPool", ["relu1_out"], ["pool1_out"], "pool1", kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    b.node("Conv", ["pool1_out", "conv2.weight", "conv2.bias"], ["conv2_out"], "conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    b.node("Relu", ["conv2_out"], ["relu2_out"], "relu2")
    b.node(
        "AveragePool", ["relu2_out"], ["pool2_out"], "pool2",
        kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=count_include_pad,
    )
    b.node("Flatten", ["pool2_out"], ["flat_out"], "flatten", axis=1)
    if features_only:
        b.node("Identity", ["flat_out"], ["logits"], "features")
        return b.model("ceil_features", opset, out_shape=("N", CEIL_FEATURES))
    b.init("fc.weight", fc_weight.astype(F32))
    b.init("fc.bias", fc_bias.astype(F32))
    b.node("Gemm", ["flat_out", "fc.weight", "fc.bias"], ["logits"], "fc", transB=1)
    return b.model("ceil", opset, doc=f"ceil: ceil_mode MaxPool / AveragePool (count_include_pad={count_include_pad})")


def fit_ceil_head(P, count_include_pad, xtr, ytr):
    """Ridge regression of one-hot labels on the ceil model's pooled features (its convs are cnn_avg's)."""
    feats = export_ceil(P, None, None, count_include_pad, features_only=True)
    feats = run(feats.SerializeToString(), xtr).astype(np.float64)
    a = np.concatenate([feats, np.ones((len(feats), 1))], axis=1)
    t = np.eye(10)[ytr]
    w = np.linalg.solve(a.T @ a + CEIL_RIDGE * np.eye(a.shape[1]), a.T @ t)
    return w[:-1].T.astype(F32), w[-1].astype(F32)


def with_epilogue(m: onnx.ModelProto, kind: str) -> onnx.ModelProto:
    """A quantized model with plaintext ops after its final DequantizeLinear (what a client-side epilogue runs):
    "softmax" -> Softmax(axis 1) `probs` [N,10]; "argmax" -> ArgMax(axis 1, keepdims 0) `label` int64 [N];
    "topk" -> Identity -> Flatten -> TopK(k 3, axis 1), output `top3_indices` int64 [N,3] (values unused)."""
    m = onnx.ModelProto.FromString(m.SerializeToString())
    g = m.graph
    for n in g.node:
        if n.output[0] == "logits":
            n.output[0] = "logits_dq"
    if kind == "softmax":
        g.node.append(helper.make_node("Softmax", ["logits_dq"], ["probs"], name="head_softmax", axis=1))
        out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 10])
    elif kind == "argmax":
        g.node.append(helper.make_node("ArgMax", ["logits_dq"], ["label"], name="head_argmax", axis=1, keepdims=0))
        out = helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])
    else:
        g.initializer.append(numpy_helper.from_array(np.asarray([3], np.int64), "top_k"))
        g.node.append(helper.make_node("Identity", ["logits_dq"], ["logits_id"], name="head_identity"))
        g.node.append(helper.make_node("Flatten", ["logits_id"], ["logits_flat"], name="head_flatten", axis=1))
        g.node.append(
            helper.make_node("TopK", ["logits_flat", "top_k"], ["top3_values", "top3_indices"], name="head_topk", axis=1)
        )
        out = helper.make_tensor_value_info("top3_indices", TensorProto.INT64, ["N", 3])
    del g.output[:]
    g.output.append(out)
    g.name = f"{g.name}_{kind}"
    onnx.checker.check_model(m, full_check=True)
    return m


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


# ============================================================================ trained weights


# Held-out accuracies of the committed `tiny` training run whose pre-QAT float model is not committed
# (441/450 float, 431/450 ternary PTQ before QAT); used unless --retrain.
TINY_TRAINING_RECORD = {"float_acc": 441 / 450, "ptq_acc": 431 / 450}


def initializers(path: Path):
    return {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def load_trained(name):
    """Parameters P and BatchNorm statistics S of `<name>_float.onnx` (exactly what the export wrote)."""
    inits = initializers(HERE / f"{name}_float.onnx")
    P, S = ARCH[name][0](np.random.default_rng(INIT_SEEDS[name]))
    for k in P:
        P[k].v = inits[k].astype(F32)
    for k, st in S.items():
        st["mean"], st["var"] = inits[k + ".mean"].astype(F32), inits[k + ".var"].astype(F32)
    return P, S


def committed_act_scales(fname):
    """Calibrated activation scales (`<tag>.scale`, per-tensor) of a committed QCDQ model."""
    return {k[: -len(".scale")]: F32(v) for k, v in initializers(HERE / fname).items() if k.endswith(".scale") and v.ndim == 0}


def load_tiny_qat():
    """The QAT-trained `tiny` parameters of `tiny_qcdq_w2.onnx`: float weights, biases = int32 * scale."""
    inits = initializers(HERE / "tiny_qcdq_w2.onnx")
    P, S = init_tiny(np.random.default_rng(INIT_SEEDS["tiny"]))
    for k in P:
        if k.endswith(".weight"):
            P[k].v = inits[k].astype(F32)
        else:
            P[k].v = (inits[k + ".int32"].astype(F32) * inits[k + ".scale"]).astype(F32)
    return P, S


# ============================================================================ ORT helpers


def session(path_or_bytes):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 4
    src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def run(path_or_bytes, x):
    y = session(path_or_bytes).run(None, {"input": x})[0]
    return y.astype(F32) if y.dtype.kind == "f" else y


def without_u8s8_saturation(m: onnx.ModelProto) -> onnx.ModelProto:
    """An equivalent copy of a QOperator model whose QLinearConv/QGemm weights are uint8 (w + 128, zero point + 128).

    On x86 CPUs without VNNI, ORT's u8s8 kernels (vpmaddubsw) saturate pairs of products to int16, so the committed
    int8-weight model gives CPU-dependent outputs; the u8u8 kernels do not saturate. The integer accumulators and the
    requantization are the same, so this copy's outputs are the exact QLinear results on every CPU (and equal the
    int8 model's outputs on VNNI CPUs)."""
    m = onnx.ModelProto.FromString(m.SerializeToString())
    inits = {t.name: t for t in m.graph.initializer}
    for n in m.graph.node:
        if n.op_type not in ("QLinearConv", "QGemm"):
            continue
        for name in (n.input[3], n.input[5]):  # weight, weight zero point (each shifted once: then it is uint8)
            a = numpy_helper.to_array(inits[name])
            if a.dtype == np.int8:
                inits[name].CopyFrom(numpy_helper.from_array((a.astype(np.int16) + 128).astype(np.uint8), name))
    return m


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


def exact_pools(m: onnx.ModelProto):
    """Copy of a QDQ/QCDQ model whose average pools are computed exactly, or None if it has none to change.

    Every AveragePool that is re-quantized at its input's scale and zero point,
    `DequantizeLinear(q, s, z) -> AveragePool -> QuantizeLinear(s, z)`, runs on the integers instead:
    `Cast(q) -> Sub(z) -> AveragePool -> QuantizeLinear(scale 1, z)`. Window sums and means of these small integers are
    exact in float32 (a mean that is exactly x.5 is representable), so QuantizeLinear rounds exact ties to even, as an
    integer kernel does; ORT's float path instead decides them by float32 noise in `s * (q - z)`. Every other node is
    unchanged and still evaluated by ORT."""
    m = onnx.ModelProto.FromString(m.SerializeToString())
    g = m.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    changed = 0
    for pool in [n for n in g.node if n.op_type == "AveragePool"]:
        dq, users = producer.get(pool.input[0]), consumers.get(pool.output[0], [])
        if dq is None or dq.op_type != "DequantizeLinear" or len(users) != 1 or users[0].op_type != "QuantizeLinear":
            continue
        q = users[0]
        s_in, z_in = inits[dq.input[1]], inits[dq.input[2]]
        s_out, z_out = inits[q.input[1]], inits[q.input[2]]
        if s_in.size != 1 or not (np.array_equal(s_in, s_out) and np.array_equal(z_in, z_out)):
            continue
        p = pool.name or pool.output[0]
        g.initializer.extend(
            [
                numpy_helper.from_array(np.asarray(z_in, F32), f"{p}.exact.zero_point"),
                numpy_helper.from_array(np.asarray(1.0, F32), f"{p}.exact.unit_scale"),
            ]
        )
        at = list(g.node).index(pool)
        g.node.insert(at, helper.make_node("Cast", [dq.input[0]], [f"{p}.exact.q"], name=f"{p}.exact.Cast", to=TensorProto.FLOAT))
        g.node.insert(at + 1, helper.make_node("Sub", [f"{p}.exact.q", f"{p}.exact.zero_point"], [f"{p}.exact.int"], name=f"{p}.exact.Sub"))
        pool.input[0] = f"{p}.exact.int"
        q.input[1] = f"{p}.exact.unit_scale"
        changed += 1
    if not changed:
        return None
    onnx.checker.check_model(m, full_check=True)
    return m


def check_exact_pool_rewrite(samples=200, channels=16, size=8):
    """The rewritten pool of `exact_pools` (AveragePool on integers, QuantizeLinear scale 1) equals an integer
    implementation with ties to even, on 3x3 stride-2 pad-1 ceil_mode windows (counts 9, 6, 4, 3, 2, 1) with both
    count_include_pad values. Returns the number of outputs compared per value."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (samples, channels, size, size))
    k, st, pad = 3, 2, 1
    out = -(-(size + 2 * pad - k) // st) + 1  # ceil mode
    padded = np.zeros((samples, channels, size + 2 * pad + st, size + 2 * pad + st), np.int64)
    padded[:, :, pad : pad + size, pad : pad + size] = x
    inside = np.zeros(padded.shape[2:], np.int64)
    inside[pad : pad + size, pad : pad + size] = 1
    in_padding = np.zeros(padded.shape[2:], np.int64)
    in_padding[: size + 2 * pad, : size + 2 * pad] = 1  # the window is clipped to the padded input
    for cip in (0, 1):
        b = GraphBuilder()
        b.init("one", np.asarray(1.0, F32))
        b.init("zero", np.asarray(0, np.uint8))
        b.node("AveragePool", ["input"], ["pooled"], "pool", kernel_shape=[k, k], strides=[st, st], pads=[pad] * 4,
               ceil_mode=1, count_include_pad=cip)
        b.node("QuantizeLinear", ["pooled", "one", "zero"], ["logits"], "q")
        g = helper.make_graph(b.nodes, "pool", [helper.make_tensor_value_info("input", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("logits", TensorProto.UINT8, None)], initializer=b.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        got = run(m.SerializeToString(), x.astype(F32)).astype(np.int64)
        want = np.zeros_like(got)
        for i in range(out):
            for j in range(out):
                win = np.s_[st * i : st * i + k, st * j : st * j + k]
                total = padded[(slice(None), slice(None)) + win].sum(axis=(2, 3))
                n = (in_padding if cip else inside)[win].sum()
                f, r = total // n, total % n
                want[:, :, i, j] = f + (2 * r > n) + ((2 * r == n) & (f % 2 == 1))
        assert np.array_equal(got, want), cip
    return got.size


def labels(y):
    """Predicted labels of a model output: scores [N,10] -> argmax, ArgMax [N] as is, TopK indices [N,k] -> first."""
    if y.ndim == 1:
        return y
    return y[:, 0] if y.dtype.kind == "i" else y.argmax(1)


def op_set(m: onnx.ModelProto):
    return sorted({(n.domain or "ai.onnx") + ":" + n.op_type for n in m.graph.node})


def q_elem_types(m: onnx.ModelProto):
    """Integer element types: "weights" = integer initializers read by DequantizeLinear plus the zero-point type of
    every QuantizeLinear applied to an initializer (QCDQ weights); "activations" = zero-point types of the
    QuantizeLinear nodes applied to computed tensors, plus integer activations of QOperator graphs."""
    inits = {t.name: t for t in m.graph.initializer}
    types = {"weights": set(), "activations": set()}
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits:
            types["weights"].add(TensorProto.DataType.Name(inits[n.input[0]].data_type))
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in inits:
            kind = "weights" if n.input[0] in inits else "activations"
            types[kind].add(TensorProto.DataType.Name(inits[n.input[2]].data_type))
        if n.op_type.startswith("QLinear") or n.op_type == "QGemm":
            for i in n.input:
                if i in inits and inits[i].data_type not in (TensorProto.FLOAT,) and i.endswith("_quantized"):
                    types["weights"].add(TensorProto.DataType.Name(inits[i].data_type))
    return {k: sorted(v) for k, v in types.items()}


# ============================================================================ QCDQ (brevitas-style) models


WEIGHT_P2_MODE = "round"  # weights beyond the range are clipped by the Clip node
ACT_P2_MODE = "round"


class QcdqSpec:
    """Bit widths of a hand-built QCDQ model.

    weights: name -> (qmin, qmax, scale_rule) with per-output-channel symmetric scales, zero point 0;
             scale_rule "max" = max|w_c| / qmax, "ternary" = 1.2 * mean|w_c| (2-bit narrow, values -1/0/+1).
    acts:    tensor tag -> (qmin, qmax, signed); per-tensor scale from calibration, zero point 0:
             unsigned: max / qmax; signed: max|x| / qmax.  "pool*" tags reuse the scale of the tensor
             feeding the pool (like ORT's QDQ AveragePool handling).
    """

    def __init__(self, weights, acts, pow2=False, input_scale=None):
        self.weights, self.acts, self.pow2 = weights, acts, pow2
        # pow2: inputs k/16 are exact on the 2^-7 grid (q in 0..128); otherwise the ORT-like 1/255.
        self.input_scale = input_scale if input_scale is not None else (2.0**-7 if pow2 else 1.0 / 255.0)
        self.act_scale = {}

    def p2(self, s, mode):
        """Round a scale up ("ceil": no saturation) or to the nearest power of two ("round")."""
        if not self.pow2:
            return s
        e = np.log2(np.maximum(s, 1e-30))
        return np.exp2(np.ceil(e) if mode == "ceil" else np.round(e))

    def weight_scale(self, name, w):
        qmin, qmax, rule = self.weights[name]
        flat = np.abs(w.reshape(w.shape[0], -1))
        if rule == "ternary":
            s = self.p2(1.2 * flat.mean(axis=1), "round")
        else:
            s = self.p2(flat.max(axis=1) / qmax, WEIGHT_P2_MODE)
        return np.maximum(s, 1e-8).astype(F32)


class QcdqHook:
    def __init__(self, spec: QcdqSpec, mode: str):
        self.spec, self.mode = spec, mode  # mode: "observe" (float, record max) or "quant"
        self.maxes = {}

    def __call__(self, kind, name, v):
        if kind == "w":
            if self.mode == "observe":
                return v
            qmin, qmax, _ = self.spec.weights[name]
            return nn.fake_quant(v, self.spec.weight_scale(name, v.v), qmin, qmax, axis=0)
        if name == "input_q":
            if self.mode == "observe":
                return v
            return nn.fake_quant(v, self.spec.input_scale, 0, 255)
        qmin, qmax, signed = self.spec.acts[name]
        if self.mode == "observe":
            m = float(np.abs(v.v).max() if signed else v.v.max())
            self.maxes[name] = max(self.maxes.get(name, 0.0), m)
            return v
        return nn.fake_quant(v, self.spec.act_scale[name], qmin, qmax)


def calibrate_qcdq(spec, fwd, P, S, calib):
    h = QcdqHook(spec, "observe")
    predict(fwd, P, S, calib, h)
    for tag, (qmin, qmax, signed) in spec.acts.items():
        src = tag.replace("pool", "relu")
        spec.act_scale[tag] = F32(spec.p2(max(h.maxes[src], 1e-6) / qmax, ACT_P2_MODE))


def quantize_biases(spec, P, in_scales):
    """Round biases to int32 grid s_in * s_w (what the exported DequantizeLinear(int32) encodes)."""
    out = {}
    for wname, in_tag in in_scales.items():
        bname = wname.replace(".weight", ".bias")
        s_in = spec.input_scale if in_tag == "input_q" else spec.act_scale[in_tag]
        sb = (F32(s_in) * spec.weight_scale(wname, P[wname].v)).astype(F32)
        q = np.round(P[bname].v / sb).astype(np.int32)
        P[bname].v = (q.astype(F32) * sb).astype(F32)
        out[bname] = (q, sb)
    return out


class QcdqBuilder(GraphBuilder):
    """Emits QuantizeLinear -> Clip -> DequantizeLinear chains (Clip omitted when the range is the full type)."""

    def qcdq(self, x, tag, scale, qmin, qmax, signed, axis=None, node_prefix=None, out=None):
        elem = np.int8 if signed else np.uint8
        full = (qmin, qmax) == ((-128, 127) if signed else (0, 255))
        p = node_prefix or tag
        s = self.init(f"{p}.scale", np.asarray(scale, F32))
        shape = np.asarray(scale).shape
        z = self.init(f"{p}.zero_point", np.zeros(shape, elem))
        ax = {} if axis is None else {"axis": axis}
        q = self.node("QuantizeLinear", [x, s, z], [f"{p}.q"], f"{p}.QuantizeLinear", **ax)
        if not full:
            lo = self.init(f"{p}.clip_min", np.asarray(qmin, elem))
            hi = self.init(f"{p}.clip_max", np.asarray(qmax, elem))
            q = self.node("Clip", [q, lo, hi], [f"{p}.clip"], f"{p}.Clip")
        return self.node("DequantizeLinear", [q, s, z], [out or f"{p}.dq"], f"{p}.DequantizeLinear", **ax)

    def qweight(self, spec, name, w):
        qmin, qmax, _ = spec.weights[name]
        self.init(name, w.astype(F32))
        return self.qcdq(name, name, spec.weight_scale(name, w), qmin, qmax, True, axis=0, node_prefix=name)

    def qbias(self, bname, q, sb):
        self.init(bname + ".int32", q)
        s = self.init(bname + ".scale", sb)
        z = self.init(bname + ".zero_point", np.zeros(sb.shape, np.int32))
        return self.node("DequantizeLinear", [bname + ".int32", s, z], [bname + ".dq"], bname + ".DequantizeLinear", axis=0)

    def qweight_int(self, spec, name, w):
        """Integer weight initializer `<name>.int8` (clipped to the spec's range) -> DequantizeLinear(axis 0)."""
        qmin, qmax, _ = spec.weights[name]
        scale = spec.weight_scale(name, w)
        q = np.clip(np.round(w / scale[:, None]), qmin, qmax).astype(np.int8)
        self.init(name + ".int8", q)
        s = self.init(name + ".scale", scale)
        z = self.init(name + ".zero_point", np.zeros(scale.shape, np.int8))
        return self.node("DequantizeLinear", [name + ".int8", s, z], [name + ".dq"], name + ".DequantizeLinear", axis=0)

    def qact(self, spec, x, tag, out=None):
        qmin, qmax, signed = spec.acts[tag]
        return self.qcdq(x, tag, spec.act_scale[tag], qmin, qmax, signed, out=out)


def export_qcdq_cnn_avg(spec, P, qb, opset=13, head="quantized"):
    """head: "quantized" (logits Q/DQ), "float" (int8 fc weights via DQ, int32 bias, float output) or
    "float_ops" (int8 fc weights, no bias in the Gemm; float bias Add and Mul by 0.5 after it)."""
    b = QcdqBuilder()
    x = b.qcdq("input", "input_q", spec.input_scale, 0, 255, False)
    w = b.qweight(spec, "conv1.weight", P["conv1.weight"].v)
    bb = b.qbias("conv1.bias", *qb["conv1.bias"])
    h = b.node("Conv", [x, w, bb], ["conv1_out"], "conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = b.node("Relu", [h], ["relu1_out"], "relu1")
    h = b.qact(spec, h, "relu1")
    h = b.node("AveragePool", [h], ["pool1_out"], "pool1", kernel_shape=[2, 2], strides=[2, 2])
    h = b.qact(spec, h, "pool1")
    w = b.qweight(spec, "conv2.weight", P["conv2.weight"].v)
    bb = b.qbias("conv2.bias", *qb["conv2.bias"])
    h = b.node("Conv", [h, w, bb], ["conv2_out"], "conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    h = b.node("Relu", [h], ["relu2_out"], "relu2")
    h = b.qact(spec, h, "relu2")
    h = b.node("AveragePool", [h], ["pool2_out"], "pool2", kernel_shape=[2, 2], strides=[2, 2])
    h = b.qact(spec, h, "pool2")
    h = b.node("Flatten", [h], ["flat_out"], "flatten", axis=1)
    if head == "quantized":
        w = b.qweight(spec, "fc.weight", P["fc.weight"].v)
        bb = b.qbias("fc.bias", *qb["fc.bias"])
        h = b.node("Gemm", [h, w, bb], ["fc_out"], "fc", transB=1)
        b.qact(spec, h, "logits", out="logits")
        return b.model("cnn_avg_qcdq_w4a4", opset, doc="brevitas-style QCDQ export of cnn_avg: 4-bit narrow weights, 4-bit activations")
    w = b.qweight_int(spec, "fc.weight", P["fc.weight"].v)
    if head == "float":
        bb = b.qbias("fc.bias", *qb["fc.bias"])
        b.node("Gemm", [h, w, bb], ["logits"], "fc", transB=1)
        doc = "brevitas-style QCDQ cnn_avg with a float head: the fc output (int8 weights, int32 bias) is not quantized"
    else:
        h = b.node("Gemm", [h, w], ["fc_out"], "fc", transB=1)
        h = b.node("Add", [h, b.init("fc.bias", P["fc.bias"].v.astype(F32))], ["fc_biased"], "fc_bias_add")
        b.node("Mul", [h, b.init("temperature", np.asarray(0.5, F32))], ["logits"], "temperature_mul")
        doc = "brevitas-style QCDQ cnn_avg whose last quantized tensor (fc accumulator) is followed by float Add/Mul"
    return b.model(f"cnn_avg_qcdq_{head}", opset, doc=doc)


def export_qcdq_tiny(spec, P, qb, opset=13):
    b = QcdqBuilder()
    x = b.qcdq("input", "input_q", spec.input_scale, 0, 255, False)
    w = b.qweight(spec, "conv1.weight", P["conv1.weight"].v)
    bb = b.qbias("conv1.bias", *qb["conv1.bias"])
    h = b.node("Conv", [x, w, bb], ["conv1_out"], "conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
    h = b.node("Relu", [h], ["relu1_out"], "relu1")
    h = b.qact(spec, h, "relu1")
    w = b.qweight(spec, "conv2.weight", P["conv2.weight"].v)
    bb = b.qbias("conv2.bias", *qb["conv2.bias"])
    h = b.node("Conv", [h, w, bb], ["conv2_out"], "conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2])
    h = b.node("Relu", [h], ["relu2_out"], "relu2")
    h = b.qact(spec, h, "relu2")
    h = b.node("Flatten", [h], ["flat_out"], "flatten", axis=1)
    w = b.qweight(spec, "fc.weight", P["fc.weight"].v)
    bb = b.qbias("fc.bias", *qb["fc.bias"])
    h = b.node("Gemm", [h, w, bb], ["fc_out"], "fc", transB=1)
    b.qact(spec, h, "logits", out="logits")
    return b.model("tiny_qcdq_w2", opset, doc="QCDQ tiny CNN: conv 8-bit w, conv ternary (2-bit narrow) w, fc 8-bit w, 4-bit activations")


# ============================================================================ ONNX backend node cases

NODE_CASE_OPS = ["QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"]

# ONNX element types that numpy cannot hold natively: how they are stored in the .npy files.
_NARROW_INT = {
    TensorProto.INT4: np.int8,
    TensorProto.INT2: np.int8,
    TensorProto.UINT4: np.uint8,
    TensorProto.UINT2: np.uint8,
}
_FLOAT_EXOTIC = {
    TensorProto.FLOAT8E4M3FN,
    TensorProto.FLOAT8E4M3FNUZ,
    TensorProto.FLOAT8E5M2,
    TensorProto.FLOAT8E5M2FNUZ,
    TensorProto.FLOAT4E2M1,
}


def _case_array(value, elem_type):
    """Return (numpy array to store, storage note)."""
    if isinstance(value, TensorProto):
        arr = numpy_helper.to_array(value)
    else:
        arr = np.asarray(value)
    if elem_type in _NARROW_INT:
        dt = _NARROW_INT[elem_type]
        return arr.astype(dt), f"stored as {np.dtype(dt).name} (values of the {TensorProto.DataType.Name(elem_type)} tensor)"
    if elem_type in _FLOAT_EXOTIC:
        return arr.astype(np.float32), f"stored as float32 (decoded values of the {TensorProto.DataType.Name(elem_type)} tensor)"
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"unexpected dtype {arr.dtype}")
    return np.ascontiguousarray(arr), None


def export_node_cases():
    from onnx.backend.test.case.node import collect_testcases

    if CASES.exists():
        shutil.rmtree(CASES)
    CASES.mkdir(parents=True)
    import warnings

    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    for c in sorted(cases, key=lambda c: c.name):
        ops = {n.op_type for n in c.model.graph.node}
        if c.kind != "node" or not ops or not ops <= set(NODE_CASE_OPS):
            continue
        d = CASES / c.name
        d.mkdir()
        onnx.save(c.model, d / "model.onnx")
        assert len(c.data_sets) == 1, c.name
        ins, outs = c.data_sets[0]
        meta = {
            "name": c.name,
            "op_types": sorted(ops),
            "opset": {(o.domain or "ai.onnx"): o.version for o in c.model.opset_import},
            "ir_version": c.model.ir_version,
            "attributes": {
                a.name: _attr_json(helper.get_attribute_value(a)) for n in c.model.graph.node for a in n.attribute
            },
            "inputs": [],
            "outputs": [],
        }
        for kind, vals, vis in (("input", ins, c.model.graph.input), ("output", outs, c.model.graph.output)):
            for i, (val, vi) in enumerate(zip(vals, vis)):
                et = vi.type.tensor_type.elem_type
                arr, note = _case_array(val, et)
                np.save(d / f"{kind}_{i}.npy", arr, allow_pickle=False)
                e = {"index": i, "name": vi.name, "elem_type": TensorProto.DataType.Name(et), "shape": list(arr.shape), "npy_dtype": arr.dtype.name}
                if note:
                    e["note"] = note
                meta[kind + "s"].append(e)
        meta["onnxruntime"] = _ort_check(c.model, ins, outs)
        opset = meta["opset"].get("ai.onnx", 0)
        if opset > 21 and "refused" in meta["onnxruntime"]:
            # Same operator semantics for these types at opset 21: check ORT there (model file stays unchanged).
            m21 = onnx.ModelProto.FromString(c.model.SerializeToString())
            for o in m21.opset_import:
                if o.domain in ("", "ai.onnx"):
                    o.version = 21
            m21.ir_version = 10
            meta["onnxruntime_opset21"] = _ort_check(m21, ins, outs) + " (opset_import rewritten to 21 in memory only)"
        (d / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        rows.append(meta)
    return rows


def _ort_checkable(model, ins):
    """Copy of a node-case model that the ORT Python API can feed and fetch: inputs of types numpy cannot
    hold (int4, float8, ...) become initializers, outputs of such types get a Cast to their .npy storage type."""
    m = onnx.ModelProto.FromString(model.SerializeToString())
    g = m.graph
    feeds = {}
    keep = []
    for v, vi in zip(ins, list(g.input)):
        if isinstance(v, TensorProto):
            t = onnx.TensorProto()
            t.CopyFrom(v)
            t.name = vi.name
            g.initializer.append(t)
        else:
            feeds[vi.name] = np.asarray(v)
            keep.append(vi)
    del g.input[:]
    g.input.extend(keep)
    for vo in g.output:
        et = vo.type.tensor_type.elem_type
        if et in _NARROW_INT or et in _FLOAT_EXOTIC:
            to = {np.int8: TensorProto.INT8, np.uint8: TensorProto.UINT8}.get(_NARROW_INT.get(et), TensorProto.FLOAT)
            raw = vo.name + "_raw"
            for n in g.node:
                for i, o in enumerate(n.output):
                    if o == vo.name:
                        n.output[i] = raw
            g.node.append(helper.make_node("Cast", [raw], [vo.name], to=to))
            vo.type.tensor_type.elem_type = to
    return m, feeds


def _ort_check(model, ins, outs):
    types = [vi.type.tensor_type.elem_type for vi in model.graph.output]
    try:
        m, feeds = _ort_checkable(model, ins)
        got = session(m.SerializeToString()).run(None, feeds)
        ok = all(
            np.array_equal(np.asarray(g).astype(np.float64), _case_array(o, et)[0].astype(np.float64), equal_nan=True)
            for g, o, et in zip(got, outs, types)
        )
        return f"onnxruntime {ort.__version__}: " + ("runs, output matches" if ok else "runs, output DIFFERS from the reference")
    except Exception as e:  # noqa: BLE001
        msg = str(e).replace("\n", " ")
        msg = msg.split("Status Message:")[-1].strip()
        if len(msg) > 160:  # keep the human-readable end (ORT prefixes source paths and signatures)
            msg = "..." + msg[-160:]
        return f"onnxruntime {ort.__version__}: refused ({msg})"


def _ort_feed(v):
    if isinstance(v, TensorProto):
        return numpy_helper.to_array(v)
    return np.asarray(v)


def _attr_json(v):
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, (list, tuple)):
        return [_attr_json(x) for x in v]
    if isinstance(v, (np.integer, np.floating)):
        return v.item()
    return v


# ============================================================================ fixtures

TRAIN_CFG = {"cnn_avg": (20, 5e-3), "resnet": (12, 1e-2), "mpdw": (20, 5e-3), "tiny": (15, 5e-3)}
TINY_QAT = (6, 2e-3)

Q8 = dict(act=QuantType.QUInt8, wt=QuantType.QInt8)
Q4 = dict(act=QuantType.QUInt8, wt=QuantType.QInt4)


def resnet_mixed_overrides(pre_model: onnx.ModelProto):
    """TensorQuantOverrides for the pre-processed (BN-folded) resnet: stem/fc weights int8 (default),
    inner conv weights int4 per channel, two inner activations uint4, first residual output uint16."""
    ov = {}
    convs = [n for n in pre_model.graph.node if n.op_type == "Conv"]
    for n in convs:
        if n.name != "stem.conv":
            ov[n.input[1]] = [{"quant_type": QuantType.QInt4, "axis": 0}]
    for t in ("block1_relu1_out", "block2_relu1_out"):
        ov[t] = [{"quant_type": QuantType.QUInt4}]
    ov["block1_out"] = [{"quant_type": QuantType.QUInt16}]
    return ov


def preprocessed(float_model):
    with tempfile.TemporaryDirectory(prefix="heqc-pre-") as td:
        src, dst = Path(td) / "f.onnx", Path(td) / "p.onnx"
        onnx.save(float_model, src)
        quant_pre_process(str(src), str(dst), skip_optimization=False)
        return onnx.load(dst)


def strip_unused_opsets(m: onnx.ModelProto) -> onnx.ModelProto:
    """ORT's optimizer (quant_pre_process) adds opset imports for every domain it knows; keep only used ones."""
    used = {n.domain for n in m.graph.node} | {""}
    keep = [o for o in m.opset_import if o.domain in used or (o.domain == "ai.onnx" and "" in used)]
    del m.opset_import[:]
    m.opset_import.extend(keep)
    return m


def output_qparams(m: onnx.ModelProto):
    """scale / zero point / integer type of the DequantizeLinear that produces the graph output."""
    inits = {t.name: t for t in m.graph.initializer}
    out = m.graph.output[0].name
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.output[0] == out:
            s = numpy_helper.to_array(inits[n.input[1]])
            z = inits[n.input[2]]
            return {
                "scale": float(s),
                "zero_point": int(numpy_helper.to_array(z)),
                "elem_type": TensorProto.DataType.Name(z.data_type),
            }
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only-node-cases", action="store_true")
    ap.add_argument("--retrain", action="store_true", help="train the float models instead of reading the committed ones")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger().setLevel(logging.ERROR)  # ORT quantization warnings (pre-processing hints, opset bumps)
    logging.getLogger("make_models").setLevel(logging.INFO)
    ort.set_default_logger_severity(4)
    t0 = time.time()

    cases = export_node_cases()
    log.info("wrote %d ONNX node cases", len(cases))
    write_cases_readme(cases)
    if args.only_node_cases:
        return

    if not args.retrain:
        committed = {name: load_trained(name) for name in ("cnn_avg", "resnet", "mpdw")}
        tiny_qat = load_tiny_qat()
        qcdq_scales = {f: committed_act_scales(f) for f in ("cnn_avg_qcdq_w4a4.onnx", "cnn_avg_qcdq_w4a4_p2.onnx", "tiny_qcdq_w2.onnx")}
    committed_ceil = {}  # float file -> fitted (fc weight, fc bias); fitted again with --retrain or when missing
    for f in CEIL_FLOAT:
        if not args.retrain and (HERE / f).exists():
            committed_ceil[f] = tuple(initializers(HERE / f)[k] for k in ("fc.weight", "fc.bias"))

    def calibrate(spec, fwd, P, S, fname):
        """QCDQ activation scales: calibrated again with --retrain, else those of the committed model (the
        calibration forward pass uses BLAS, whose last bits depend on the CPU)."""
        if args.retrain:
            calibrate_qcdq(spec, fwd, P, S, calib)
        else:
            spec.act_scale = {tag: qcdq_scales[fname][tag] for tag in spec.acts}
    for f in list(HERE.glob("*.onnx")) + list(HERE.glob("*.npy")):
        f.unlink()
    INPUTS.mkdir(exist_ok=True)
    xtr, ytr, xte, yte, calib = load_data()
    xfix, yfix = xte[:N_TEST_FIXTURE], yte[:N_TEST_FIXTURE]
    np.save(INPUTS / "digits_test_x.npy", xfix, allow_pickle=False)
    np.save(INPUTS / "digits_test_y.npy", yfix, allow_pickle=False)
    np.save(INPUTS / "one.npy", xte[:1], allow_pickle=False)

    log.info("exact pool rewrite equals integer pooling with ties to even on %d outputs", check_exact_pool_rewrite())
    rows = []

    def record(fname, m, fmt, wbits, abits, per_channel, float_acc, notes=""):
        path = HERE / fname
        m = strip_unused_opsets(m)
        onnx.checker.check_model(m, full_check=True)
        onnx.save(m, path)
        reference = without_u8s8_saturation(m).SerializeToString() if fmt == "QOperator" else path
        y_all = run(reference, xte)
        y64 = y_all[:N_TEST_FIXTURE]
        y_again = run(reference, xfix)
        assert np.array_equal(y64, y_again), fname  # batch-size independent
        np.save(HERE / (fname[:-5] + ".expected.npy"), y64, allow_pickle=False)
        exact = exact_pools(m) if fmt in ("QDQ", "QCDQ") else None
        if exact is not None:
            y_exact = run(exact.SerializeToString(), xfix)
            if not np.array_equal(y_exact, y64):
                np.save(HERE / (fname[:-5] + ".expected_exact_pools.npy"), y_exact, allow_pickle=False)
            qp = output_qparams(m)
            diff = np.abs(y_exact - y64) / (qp["scale"] if qp else 1.0)
        row = {
            "file": fname,
            "format": fmt,
            "opset": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
            "ir_version": m.ir_version,
            "weight_bits": wbits,
            "act_bits": abits,
            "per_channel": per_channel,
            "acc64": float((labels(y64) == yfix).mean()),
            "acc_all": float((labels(y_all) == yte).mean()),
            "float_acc": float_acc,
            "size_kb": round(path.stat().st_size / 1024, 1),
            "ops": op_set(m),
            "int_types": q_elem_types(m),
            "output_qparams": output_qparams(m),
            "notes": notes,
        }
        if exact is not None:
            row["exact_pools_vs_ort"] = {
                "elements_differing": int((diff != 0).sum()),
                "max_lsb" if qp else "max_abs": int(np.round(diff.max())) if qp else float(diff.max()),
                "top1_differing": int((y_exact.argmax(1) != y64.argmax(1)).sum()),
            }
        rows.append(row)
        log.info("%-28s acc64 %.3f acc_all %.3f %s", fname, row["acc64"], row["acc_all"], row["ops"])
        return row

    float_acc = {}
    trained = {}
    for name in ("cnn_avg", "resnet", "mpdw"):
        ep, lr = TRAIN_CFG[name]
        P, S = train(name, xtr, ytr, xte, yte, ep, lr) if args.retrain else committed[name]
        trained[name] = (P, S)
        f13 = EXPORT[name](P, S, 13)
        ynp = predict(ARCH[name][1], P, S, xte)
        yort = run(f13.SerializeToString(), xte)
        assert np.abs(ynp - yort).max() < 1e-3, name
        float_acc[name] = float((yort.argmax(1) == yte).mean())
        record(f"{name}_float.onnx", f13, "float", "fp32", "fp32", "-", float_acc[name], "float reference")

    for name in ("cnn_avg", "resnet", "mpdw"):
        P, S = trained[name]
        f13, f21 = EXPORT[name](P, S, 13), EXPORT[name](P, S, 21)
        fa = float_acc[name]
        with tempfile.TemporaryDirectory(prefix="heqc-") as td:
            tmp = Path(td) / "q.onnx"
            m = quantize(f13, tmp, calib, QuantFormat.QDQ, **Q8)
            record(f"{name}_qdq_u8s8.onnx", m, "QDQ", "8 (int8, symmetric)", "8 (uint8, asymmetric)", "yes", fa)
            m = quantize(f21, tmp, calib, QuantFormat.QDQ, **Q4)
            record(f"{name}_qdq_w4.onnx", m, "QDQ", "4 (int4 [-8,7], symmetric)", "8 (uint8, asymmetric)", "yes", fa)
            m = quantize(f13, tmp, calib, QuantFormat.QOperator, **Q8)
            record(f"{name}_qop.onnx", m, "QOperator", "8 (int8, symmetric)", "8 (uint8, asymmetric)", "yes", fa)
            if name == "resnet":
                ov = resnet_mixed_overrides(preprocessed(f21))
                m = quantize(f21, tmp, calib, QuantFormat.QDQ, **Q8, extra={"TensorQuantOverrides": ov})
                record(
                    "resnet_qdq_mixed.onnx", m, "QDQ",
                    "8 (stem conv, fc) / 4 (other convs)",
                    "8; uint4: block1_relu1_out, block2_relu1_out; uint16: block1_out", "yes", fa,
                    "`extra_options={'TensorQuantOverrides': ...}`: int4 per-channel on the five non-stem conv weights, "
                    "QUInt4 on block1_relu1_out and block2_relu1_out, QUInt16 on block1_out (first residual output)",
                )
                m = quantize(f13, tmp, calib, QuantFormat.QDQ, **Q8, preprocess=False)
                record(
                    "resnet_bn_qdq_u8s8.onnx", m, "QDQ", "8 (int8; BN scale int8 per-tensor)", "8 (uint8, asymmetric)",
                    "yes (conv/fc)", fa,
                    "no quant_pre_process: BatchNormalization kept (scale int8 per-tensor, bias int32, mean/var float)",
                )
            if name == "cnn_avg":
                head = with_head(f13)
                m = quantize(head, tmp, calib, QuantFormat.QDQ, **Q8)
                record("unsupported.onnx", m, "QDQ", "8 (int8)", "8 (uint8)", "yes", fa, "Sigmoid 'head_sigmoid' + Softmax 'head_softmax'")

    # ---- QCDQ, brevitas style
    def sim_vs_ort(fwd, P, S, spec, fname):
        """Compare the numpy fake-quant simulation with ORT on the held-out split (in output LSBs)."""
        ys = predict(fwd, P, S, xte, QcdqHook(spec, "quant"))
        yo = run(HERE / fname, xte)
        lsb = np.abs(ys - yo) / spec.act_scale["logits"]
        return float((lsb == 0).mean()), float(lsb.max()), float((ys.argmax(1) == yo.argmax(1)).mean())

    for pow2 in (False, True):
        P, S = trained["cnn_avg"]
        P = {k: V(v.v.copy()) for k, v in P.items()}
        spec = QcdqSpec(
            {"conv1.weight": (-7, 7, "max"), "conv2.weight": (-7, 7, "max"), "fc.weight": (-7, 7, "max")},
            {"relu1": (0, 15, False), "pool1": (0, 15, False), "relu2": (0, 15, False), "pool2": (0, 15, False), "logits": (-128, 127, True)},
            pow2=pow2,
        )
        fname = "cnn_avg_qcdq_w4a4_p2.onnx" if pow2 else "cnn_avg_qcdq_w4a4.onnx"
        calibrate(spec, fwd_cnn_avg, P, S, fname)
        qb = quantize_biases(spec, P, {"conv1.weight": "input_q", "conv2.weight": "pool1", "fc.weight": "pool2"})
        row = record(
            fname, export_qcdq_cnn_avg(spec, P, qb), "QCDQ", "4 (int8 container, Clip [-7,7])",
            "4 (uint8 container, Clip [0,15]); input uint8; logits int8", "yes", float_acc["cnn_avg"],
            "post-training quantization of `cnn_avg_float`, hand-built graph; "
            + ("all scales powers of two (input 2^-7)" if pow2 else "scales max/7, max/15, max/127, input 1/255"),
        )
        eq, mx, am = sim_vs_ort(fwd_cnn_avg, P, S, spec, fname)
        if pow2:
            assert eq == 1.0, (fname, eq, mx)
            assert row["exact_pools_vs_ort"]["elements_differing"] == 0, fname  # float32 is exact with 2^k scales
        row["sim_vs_ort"] = {"equal_fraction": eq, "max_lsb": mx, "argmax_agree": am}
        row["notes"] += (
            f"; numpy fake-quant simulation vs ORT on the held-out split: {eq * 100:.1f} % of outputs identical, "
            f"max {mx:.0f} LSB, argmax agrees on {am * 100:.1f} %"
        )

    spec = QcdqSpec(
        {"conv1.weight": (-127, 127, "max"), "conv2.weight": (-1, 1, "ternary"), "fc.weight": (-127, 127, "max")},
        {"relu1": (0, 15, False), "relu2": (0, 15, False), "logits": (-128, 127, True)},
        pow2=True,
    )
    if args.retrain:
        ep, lr = TRAIN_CFG["tiny"]
        P, S = train("tiny", xtr, ytr, xte, yte, ep, lr)
        tiny_float = float((predict(fwd_tiny, P, S, xte).argmax(1) == yte).mean())
        calibrate_qcdq(spec, fwd_tiny, P, S, calib)
        ptq = float((predict(fwd_tiny, P, S, xte, QcdqHook(spec, "quant")).argmax(1) == yte).mean())
        ep, lr = TINY_QAT
        train("tiny", xtr, ytr, xte, yte, ep, lr, P=P, S=S, hook=QcdqHook(spec, "quant"), log_prefix="QAT ",
              epoch_cb=lambda P_, S_: calibrate_qcdq(spec, fwd_tiny, P_, S_, calib))
    else:
        P, S = tiny_qat
        tiny_float, ptq = TINY_TRAINING_RECORD["float_acc"], TINY_TRAINING_RECORD["ptq_acc"]
    calibrate(spec, fwd_tiny, P, S, "tiny_qcdq_w2.onnx")
    qb = quantize_biases(spec, P, {"conv1.weight": "input_q", "conv2.weight": "relu1", "fc.weight": "relu2"})
    row = record(
        "tiny_qcdq_w2.onnx", export_qcdq_tiny(spec, P, qb), "QCDQ",
        "8 narrow (conv1, fc; Clip [-127,127]) / 2 narrow ternary (conv2; int8 container, Clip [-1,1])",
        "4 (uint8 container, Clip [0,15]); input uint8; logits int8", "yes", tiny_float,
        f"{TINY_QAT[0]} epochs QAT (STE) after float training of the `tiny` model (float column = that float model, "
        f"not committed); ternary PTQ alone gave {ptq * 100:.1f} % on the held-out split; all scales powers of two",
    )
    eq, mx, am = sim_vs_ort(fwd_tiny, P, S, spec, "tiny_qcdq_w2.onnx")
    assert eq == 1.0, ("tiny", eq, mx)
    row["sim_vs_ort"] = {"equal_fraction": eq, "max_lsb": mx, "argmax_agree": am}
    row["notes"] += f"; numpy fake-quant simulation vs ORT: {eq * 100:.1f} % of outputs identical (bit-exact)"

    # ---- issue 15 shapes: float heads, com.microsoft Q/DQ below opset 21, client-side epilogues, ceil_mode pools
    P = {k: V(v.v.copy()) for k, v in trained["cnn_avg"][0].items()}
    spec = QcdqSpec(
        {"conv1.weight": (-7, 7, "max"), "conv2.weight": (-7, 7, "max"), "fc.weight": (-127, 127, "max")},
        {"relu1": (0, 15, False), "pool1": (0, 15, False), "relu2": (0, 15, False), "pool2": (0, 15, False)},
        pow2=True,
    )
    calibrate(spec, fwd_cnn_avg, P, {}, "cnn_avg_qcdq_w4a4_p2.onnx")
    float_bias = P["fc.bias"].v.copy()
    qb = quantize_biases(spec, P, {"conv1.weight": "input_q", "conv2.weight": "pool1", "fc.weight": "pool2"})
    common = "`cnn_avg_qcdq_w4a4_p2.onnx` up to the Flatten (same scales); fc weights int8 narrow [-127,127] initializer -> DequantizeLinear (per channel, power-of-two scales)"
    record(
        "cnn_avg_qcdq_floathead.onnx", export_qcdq_cnn_avg(spec, P, qb, head="float"), "QCDQ",
        "4 (int8 container, Clip [-7,7]); fc 8 narrow (int8 initializer)", "4 (uint8 container, Clip [0,15]); input uint8; logits float",
        "yes", float_acc["cnn_avg"],
        f"float head (brevitas style): {common}, int32 bias DequantizeLinear; the Gemm output `logits` is float "
        "(no Q/DQ); every value is exact in float32, so the output is exactly acc * s_x * s_w + bias",
    )
    P["fc.bias"].v = float_bias
    record(
        "cnn_avg_qcdq_floathead_ops.onnx", export_qcdq_cnn_avg(spec, P, qb, head="float_ops"), "QCDQ",
        "4 (int8 container, Clip [-7,7]); fc 8 narrow (int8 initializer)", "4 (uint8 container, Clip [0,15]); input uint8; logits float",
        "yes", float_acc["cnn_avg"],
        f"float head followed by float-only ops: {common}; Gemm without bias, then Add of the float (unquantized) trained "
        "bias `fc.bias` ('fc_bias_add') and Mul by 0.5 ('temperature_mul')",
    )

    P, S = trained["mpdw"]
    f13 = EXPORT["mpdw"](P, S, 13)
    fa = float_acc["mpdw"]
    ms = [
        ("mpdw_qdq_w4_ms.onnx", dict(act=QuantType.QUInt8, wt=QuantType.QInt4), {}, "4 (int4 [-8,7], symmetric)", "8 (uint8, asymmetric)",
         "opset 13 with QInt4 weights: ORT's quantizer writes every QuantizeLinear/DequantizeLinear in the com.microsoft domain"),
        ("mpdw_qdq_a16_ms.onnx", dict(act=QuantType.QUInt16, wt=QuantType.QUInt4), {"UseQDQContribOps": True}, "4 (uint4, symmetric, zero point 8)",
         "16 (uint16, asymmetric)", "`extra_options={'UseQDQContribOps': True}`: every Q/DQ in com.microsoft; ORT raises the "
         "ai.onnx opset import to 21 for 16-bit types even so, and the script sets it back to 13 (no ai.onnx Q/DQ left)"),
        ("mpdw_qdq_a16s_ms.onnx", dict(act=QuantType.QInt16, wt=QuantType.QInt8), {"UseQDQContribOps": True}, "8 (int8, symmetric)",
         "16 (int16, asymmetric)", "as `mpdw_qdq_a16_ms.onnx` (com.microsoft Q/DQ, ai.onnx opset import set back to 13)"),
    ]
    with tempfile.TemporaryDirectory(prefix="heqc-") as td:
        tmp = Path(td) / "q.onnx"
        for fname, types, extra, wbits, abits, note in ms:
            m = quantize(f13, tmp, calib, QuantFormat.QDQ, **types, extra=extra)
            assert {n.domain for n in m.graph.node if "Quantize" in n.op_type} == {"com.microsoft"}, fname
            for o in m.opset_import:
                if o.domain in ("", "ai.onnx"):
                    o.version = 13
            record(fname, m, "QDQ", wbits, abits, "yes", fa, note)
        m = quantize(f13, tmp, calib, QuantFormat.QDQ, **Q8)
    for kind, note in (
        ("softmax", "`mpdw_qdq_u8s8.onnx` + Softmax ('head_softmax', axis 1) after the final DequantizeLinear; output `probs`"),
        ("argmax", "`mpdw_qdq_u8s8.onnx` + ArgMax ('head_argmax', axis 1, keepdims 0) after the final DequantizeLinear; "
         "output `label` int64 [N]"),
        ("topk", "`mpdw_qdq_u8s8.onnx` + Identity -> Flatten -> TopK(k 3) after the final DequantizeLinear; output "
         "`top3_indices` int64 [N,3] (TopK values unused)"),
    ):
        record(f"mpdw_qdq_u8s8_{kind}.onnx", with_epilogue(m, kind), "QDQ", "8 (int8, symmetric)", "8 (uint8, asymmetric)", "yes", fa, note)

    P = trained["cnn_avg"][0]
    with tempfile.TemporaryDirectory(prefix="heqc-") as td:
        tmp = Path(td) / "q.onnx"
        for cip, (float_name, fname) in enumerate(CEIL_FLOAT.items()):
            fc_w, fc_b = committed_ceil[float_name] if float_name in committed_ceil else fit_ceil_head(P, cip, xtr, ytr)
            f = export_ceil(P, fc_w, fc_b, cip)
            fa = float((run(f.SerializeToString(), xte).argmax(1) == yte).mean())
            record(float_name, f, "float", "fp32", "fp32", "-", fa, "float reference")
            m = quantize(f, tmp, calib, QuantFormat.QDQ, **Q8)
            record(
                fname, m, "QDQ", "8 (int8, symmetric)", "8 (uint8, asymmetric)", "yes", fa,
                f"ceil_mode=1 pools: MaxPool 3x3 s2 (16 -> 8) and AveragePool 3x3 s2 pad 1 (8 -> 5, "
                f"count_include_pad={cip}), partial last windows",
            )

    (HERE / "manifest.json").write_text(json.dumps({"models": rows}, indent=1) + "\n")
    write_readme(rows, cases, len(xtr), len(xte))
    log.info("done in %.1fs", time.time() - t0)


# ============================================================================ READMEs


def write_cases_readme(cases):
    lines = [
        "# ONNX backend node cases (generated)",
        "",
        "Regenerated by `python3 models/make_models.py` (or `--only-node-cases`) from",
        f"`onnx.backend.test.case.node.collect_testcases()` of onnx {onnx.__version__}; only cases whose graph",
        "consists solely of " + ", ".join(f"`{o}`" for o in NODE_CASE_OPS) + ".",
        "",
        "Each directory holds `model.onnx` (unchanged from the onnx package), `input_<i>.npy` / `output_<i>.npy`",
        "in graph input/output order, and `meta.json` (ONNX element type of every tensor, shapes, attributes, opset).",
        "",
        "Storage of types numpy cannot hold: INT4/INT2 -> int8 `.npy`, UINT4/UINT2 -> uint8 `.npy` (the plain values),",
        "FLOAT8*/FLOAT4E2M1 -> float32 `.npy` (decoded values). Everything else keeps its dtype (float16 included).",
        "",
        "The Q/DQ models are generated at the newest opset onnx knows (28); onnxruntime "
        f"{ort.__version__} has no kernels for that opset, so `meta.json` also records a check with the opset import",
        "rewritten to 21 in memory (the committed model is not changed). INT2/UINT2/FLOAT4E2M1 do not exist at opset 21.",
        "",
        "| case | op | opset | input types | output types | onnxruntime |",
        "|---|---|---|---|---|---|",
    ]
    for c in cases:
        ort_s = c["onnxruntime"].split(": ", 1)[1]
        if "onnxruntime_opset21" in c:
            o21 = c["onnxruntime_opset21"].split(": ", 1)[1].split(" (opset_import")[0]
            if "INVALID_GRAPH" in o21 and "Type Error" in o21:
                o21 = "refused, element type not valid at opset 21"
            ort_s = f"opset {c['opset']['ai.onnx']}: not implemented; at opset 21: {o21}"
        if "refused" in ort_s and "per-tensor" in ort_s:
            ort_s = "refused: ORT ConvInteger supports only a per-tensor weight zero point (this case has one per channel)"
        ort_s = ort_s.replace("|", "/")
        if len(ort_s) > 110:
            ort_s = ort_s[:107] + "..."
        lines.append(
            f"| `{c['name']}` | {'/'.join(c['op_types'])} | {c['opset'].get('ai.onnx')} | "
            f"{', '.join(i['elem_type'] for i in c['inputs'])} | {', '.join(o['elem_type'] for o in c['outputs'])} | {ort_s} |"
        )
    (CASES / "README.md").write_text("\n".join(lines) + "\n")


def _fmt_ops(ops):
    return ", ".join(ops)


def exact_pools_table(rows):
    lines = ["| file | elements differing (of 640) | max | top-1 differing (of 64) | reference file |", "|---|---|---|---|---|"]
    for r in rows:
        e = r.get("exact_pools_vs_ort")
        if e is None:
            continue
        mx = f"{e['max_lsb']} LSB" if "max_lsb" in e else f"{e['max_abs']:g} (float output)"
        ref = "`.expected_exact_pools.npy`" if e["elements_differing"] else "`.expected.npy` (identical)"
        lines.append(f"| `{r['file']}` | {e['elements_differing']} | {mx} | {e['top1_differing']} | {ref} |")
    return "\n".join(lines)


def write_readme(rows, cases, ntrain, ntest):
    tbl = [
        "| file | format | opset | weight bits | activation bits | per-channel | top-1 (64 fixture inputs) "
        f"| top-1 (held-out, {ntest}) | float top-1 (held-out) | KB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        op = ", ".join(f"{k} {v}" for k, v in r["opset"].items())
        tbl.append(
            f"| `{r['file']}` | {r['format']} | {op} | {r['weight_bits']} | {r['act_bits']} | {r['per_channel']} | "
            f"{r['acc64'] * 100:.1f} % | {r['acc_all'] * 100:.1f} % | {r['float_acc'] * 100:.1f} % | {r['size_kb']} |"
        )
    ops = ["| file | op types (domain:op) | integer types (weights/bias; activation zero points) | output Q params |", "|---|---|---|---|"]
    for r in rows:
        it = r["int_types"]
        oq = r["output_qparams"]
        oqs = f"{oq['elem_type']} scale {oq['scale']:.6g} zp {oq['zero_point']}" if oq else "-"
        ops.append(
            f"| `{r['file']}` | {_fmt_ops(r['ops'])} | {'/'.join(it['weights']) or '-'}; {'/'.join(it['activations']) or '-'} | {oqs} |"
        )
    notes = [f"* `{r['file']}`: {r['notes']}" for r in rows if r["notes"] and r["format"] != "float"]
    ri = {t.name: numpy_helper.to_array(t) for t in onnx.load(HERE / "resnet_float.onnx").graph.initializer}
    bns = [k[: -len(".scale")] for k in ri if k.endswith(".scale")]
    gam = np.concatenate([np.abs(ri[b + ".scale"]) for b in bns])
    eff = np.concatenate([np.abs(ri[b + ".scale"]) / np.sqrt(ri[b + ".var"] + 1e-5) for b in bns])
    mus = np.concatenate([ri[b + ".mean"] for b in bns])
    notes.append(
        f"* `resnet_float.onnx` BatchNormalization parameters ({len(bns)} nodes, epsilon 1e-5): |gamma| in "
        f"[{gam.min():.2f}, {gam.max():.2f}], |gamma|/sqrt(var+eps) in [{eff.min():.2f}, {eff.max():.2f}], "
        f"running means in [{mus.min():.2f}, {mus.max():.2f}], beta non-zero."
    )
    text = README_TEMPLATE.format(
        table="\n".join(tbl),
        ops="\n".join(ops),
        notes="\n".join(notes),
        ntrain=ntrain,
        ntest=ntest,
        ncases=len(cases),
        versions=f"numpy {np.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}, scikit-learn {__import__('sklearn').__version__}",
        seeds=f"split random_state={DATA_SEED} (stratified, test_size=0.25); calibration subset seed {CALIB_SEED}; "
        f"init seeds {INIT_SEEDS}; shuffle seed = init seed + {SHUFFLE_SEED_OFFSET}",
        train_cfg=", ".join(f"{k}: {v[0]} epochs, lr {v[1]}" for k, v in TRAIN_CFG.items()),
        ridge=CEIL_RIDGE,
        exact_pools=exact_pools_table(rows),
    )
    (HERE / "README.md").write_text(text)


README_TEMPLATE = """# heqc model fixtures

Small quantized CNNs (ONNX) for the heqc front end and end-to-end tests, plus ONNX backend node cases.
Everything in this folder is generated; Python is used only here. Rust tests read the committed
`.onnx` / `.npy` / `.json` files.

## Regenerate

```
python3 models/make_models.py          # everything, ~30 s on 2 cores
python3 models/make_models.py --only-node-cases
python3 models/make_models.py --retrain  # also train the float models again (~2 minutes)
```

Generated with {versions} (and sympy, which `quant_pre_process` needs). The script is deterministic: fixed seeds,
numpy training on one BLAS thread, ORT MinMax calibration (order independent), ORT sessions with one thread. Re-running
it rewrites byte-identical files (with the same package versions) on any x86-64 CPU:

* Training is only reproducible on the same kind of CPU (OpenBLAS and numpy choose SIMD kernels at run time; the
  committed weights were trained on an AVX-512 machine). So by default the trained parameters are read back from the
  committed float models (`*_float.onnx`, BatchNorm statistics included), the QAT `tiny` parameters and every QCDQ
  activation scale from the committed QCDQ files (their calibration is a numpy forward pass), and the `ceil` heads
  from `ceil_float.onnx` / `ceil_cip_float.onnx`. `--retrain` trains and calibrates everything from scratch instead.
* QOperator references: on x86 CPUs without VNNI, onnxruntime's u8s8 `QLinearConv`/`QGemm` kernels (`vpmaddubsw`)
  saturate pairs of products to int16, so their output depends on the CPU. `<model>.expected.npy` of a QOperator model
  is computed on an equivalent copy whose int8 weights and weight zero points are shifted by +128 to uint8 (same
  integer accumulators, same requantization; the u8u8 kernels never saturate): the exact QLinear result, equal to the
  int8 model's output on VNNI CPUs.

## Files

* `make_models.py`, `nn.py`: generator and a tiny numpy autograd (im2col conv, BN, pools, Adam, fake-quant/STE).
* `inputs/digits_test_x.npy`: float32 `[64,1,16,16]`, the first 64 images of the held-out split; `inputs/digits_test_y.npy`:
  int64 `[64]` labels; `inputs/one.npy`: float32 `[1,1,16,16]` (= first image of `digits_test_x`, label `digits_test_y[0]`).
* `<model>.onnx` and `<model>.expected.npy`: onnxruntime output (float32 `[64,10]`) on `digits_test_x.npy`, computed with
  `graph_optimization_level = ORT_DISABLE_ALL`, CPU EP, 1 thread. The script asserts that running the 64 images alone
  and inside the full held-out batch gives bit-identical outputs. Exceptions: `mpdw_qdq_u8s8_argmax` (int64 `[64]`) and
  `mpdw_qdq_u8s8_topk` (int64 `[64,3]`).
* `<model>.expected_exact_pools.npy`: the fidelity reference of the models with an average pool re-quantized at its
  input's scale and zero point (see "Bit-exactness and tolerances"), written where it differs from `<model>.expected.npy`.
* `manifest.json`: the table below in machine-readable form (op sets, integer types, output scale / zero point).
* `onnx_node_cases/`: {ncases} ONNX backend node cases (see its README).

All models: input `input` float32 `[N,1,16,16]` (dynamic batch `N`, values in [0,1]), output `logits` float32 `[N,10]`.
In every quantized model except the export shapes below the output is the `DequantizeLinear` of an integer tensor,
so one output LSB is the scale in the "output Q params" column (QDQ/QOperator: uint8 asymmetric, 16-bit for the
`_a16` files; QCDQ: int8 symmetric). Export shapes as other tools write them (float heads and client-side epilogues
run on the client after the reveal, `docs/semantics.md`):

* float heads: `cnn_avg_qcdq_floathead` (the last Gemm's output is float), `cnn_avg_qcdq_floathead_ops` (then float
  Add and Mul);
* com.microsoft `QuantizeLinear`/`DequantizeLinear` at ai.onnx opset 13: `mpdw_qdq_w4_ms` (int4 weights),
  `mpdw_qdq_a16_ms` (uint16 activations, uint4 weights), `mpdw_qdq_a16s_ms` (int16 activations, int8 weights), all
  per-channel (`axis` 0) weights;
* client-side epilogues after the final `DequantizeLinear`: `mpdw_qdq_u8s8_softmax` (`probs` float32 `[N,10]`),
  `mpdw_qdq_u8s8_argmax` (`label` int64 `[N]`), `mpdw_qdq_u8s8_topk` (Identity, Flatten, TopK: `top3_indices` int64
  `[N,3]`);
* `ceil_mode=1` pools: `ceil_qdq_u8s8` (AveragePool `count_include_pad=0`), `ceil_cip_qdq_u8s8` (`count_include_pad=1`).

## Models

* `cnn_avg`: Conv(1->8, 3x3, pad 1) + ReLU -> AveragePool 2x2 -> Conv(8->16, 3x3, pad 1) + ReLU -> AveragePool 2x2 -> Flatten -> Gemm(256->10).
* `resnet`: stem Conv(1->8, 3x3) + BN + ReLU; basic block (Conv-BN-ReLU-Conv-BN, Add identity, ReLU); downsampling block
  (Conv 3x3 stride 2 -BN-ReLU-Conv 3x3-BN, projection Conv 1x1 stride 2 + BN, Add, ReLU) to 16 channels at 8x8;
  GlobalAveragePool -> Flatten -> Gemm(16->10). Convs have no bias; BN gammas are kept at |gamma| >= 0.25 during training.
* `mpdw`: Conv(1->8, 3x3, pad 1) + ReLU -> MaxPool 2x2 -> depthwise Conv(8->8, 3x3, pad 1, group 8) + ReLU -> pointwise
  Conv(8->16, 1x1) + ReLU -> MaxPool 2x2 -> Flatten -> Gemm(256->10).
* `tiny` (only as `tiny_qcdq_w2.onnx`): Conv(1->8, 3x3, stride 2, pad 1) + ReLU -> Conv(8->16, 3x3, stride 2, pad 1) + ReLU -> Flatten -> Gemm(256->10).
* `ceil`: pools as torchvision exports them (SqueezeNet, GoogLeNet): `cnn_avg`'s trained convs, Conv(1->8, 3x3, pad 1) +
  ReLU -> MaxPool 3x3 stride 2 `ceil_mode=1` (16 -> 8; the last window covers 2 of its 3 rows/columns) -> Conv(8->16,
  3x3, pad 1) + ReLU -> AveragePool 3x3 stride 2 pad 1 `ceil_mode=1` (8 -> 5 where floor mode gives 4; the last window
  covers 1 input row, 1 pad row and 1 row past the padding, which no mode counts) -> Flatten -> Gemm(400->10). The Gemm
  is fitted by ridge regression (lambda {ridge}) on the training images' pooled features, separately for
  `count_include_pad` 0 (`ceil_float.onnx`) and 1 (`ceil_cip_float.onnx`). onnxruntime's partial windows divide by
  the in-bounds count (`count_include_pad=0`) or by the window clipped to the padded input (`=1`), like PyTorch.

{table}

Op types and integer types per file:

{ops}

Notes:

{notes}

## How the files were quantized (what the front end will see)

* ORT files: `onnxruntime.quantization.quantize_static`, `CalibrationMethod.MinMax` over 200 training images (seed above),
  `per_channel=True`, activations QUInt8 (asymmetric), weights QInt8/QInt4 (symmetric, zero point 0, axis 0 for Conv
  and for the Gemm weight `[10,K]` with `transB=1`). Biases are int32 `DequantizeLinear` with per-channel scale
  `s_x * s_w[c]` and zero point 0. Int4 weights use the full range [-8, 7].
* All ORT files except `resnet_bn_qdq_u8s8.onnx` went through `quant_pre_process` first (shape inference + ORT basic
  optimisations), which folds BatchNormalization into the preceding Conv (initializers renamed `ConvBnFusion_W_*` /
  `ConvBnFusion_BN_B_*`). Opset imports the ORT optimizer adds for unused domains were removed afterwards; nothing else
  was edited.
* QDQ: ORT removes every ReLU that follows a quantized op: the ReLU is implicit in the uint8 `QuantizeLinear` with zero
  point 0 on the producer's output (the quantized tensor keeps the ReLU output's name, e.g. `relu1_out`). AveragePool,
  MaxPool and Flatten outputs get their own Q/DQ pair that reuses the input's scale and zero point. Add and
  GlobalAveragePool outputs get fresh Q/DQ parameters. The logits always get a Q/DQ pair.
* QOperator: `QLinearConv` (ai.onnx) with per-channel int8 weights and int32 bias; ReLU is folded into the output range
  of the producing `QLinearConv` / `com.microsoft:QLinearAdd` (zero point 0). Gemm becomes `com.microsoft:QGemm`
  (per-channel), AveragePool `com.microsoft:QLinearAveragePool` (own output scale), GlobalAveragePool
  `com.microsoft:QLinearGlobalAveragePool`, Add `com.microsoft:QLinearAdd`; MaxPool and Flatten run directly on uint8.
  The graph starts with `QuantizeLinear` and ends with `DequantizeLinear(uint8)`. No QLinearConcat/QLinearMatMul appears
  (no Concat/MatMul in these models).
* QCDQ (hand-built, brevitas style, opset 13): every weight is a float initializer followed by
  `QuantizeLinear(int8, per-channel scale, axis 0, zp 0) -> Clip(int8 min, int8 max) -> DequantizeLinear(axis 0)`;
  4-bit narrow = Clip [-7, 7], scale max|w_c|/7; ternary (2-bit narrow) = Clip [-1, 1], scale 1.2 * mean|w_c|; 8-bit
  narrow = Clip [-127, 127], scale max|w_c|/127 (tiny's conv1 and fc). Activations after every ReLU (and after every
  AveragePool, same scale as the pool input): `QuantizeLinear(uint8, zp 0) -> Clip(0, 15) -> DequantizeLinear` with
  scale max/15 measured on the float model over the calibration images. Input: uint8 Q/DQ, no Clip. Logits: int8 Q/DQ,
  scale max|logit|/127, no Clip. Biases: int32 `DequantizeLinear` with scale s_x * s_w[c], zp 0. ReLU nodes stay
  explicit; Flatten sits between the last activation DQ and the Gemm. Node names: `<tensor>.QuantizeLinear`,
  `<tensor>.Clip`, `<tensor>.DequantizeLinear`; initializers `<tensor>.scale`, `.zero_point`, `.clip_min`, `.clip_max`,
  biases `<layer>.bias.int32`.
  * `cnn_avg_qcdq_w4a4.onnx`: scales exactly as above, input scale 1/255.
  * `cnn_avg_qcdq_w4a4_p2.onnx` and `tiny_qcdq_w2.onnx`: every scale rounded to the nearest power of two
    (2^round(log2(.))), input scale 2^-7 (the k/16 digit pixels are exact). Then every DequantizeLinear value, product
    and partial sum is exact in float32, so ORT's float evaluation equals exact integer arithmetic (requantization =
    shift with round-half-to-even, saturation by the Clip/Q range); the script asserts bit equality of ORT with a
    numpy fake-quant simulation. Use these two for bit-exact end-to-end tests.

## Bit-exactness and tolerances

ORT evaluates QDQ graphs in float (DequantizeLinear -> float op -> QuantizeLinear with round-half-to-even), and its
QOperator kernels requantize with a float multiplier. With arbitrary float scales an exact integer implementation can
land on the other side of a rounding boundary; this is frequent after an AveragePool re-quantized with the input
scale (the mean of four grid values is often exactly x.5 LSB, and float error decides the direction): for
`cnn_avg_qcdq_w4a4.onnx` the numpy simulation agrees with ORT on only part of the outputs (see notes, up to a few
output LSBs after propagation; argmax agreement is in the notes). Only the power-of-two QCDQ files are bit-exact
references as they are.

Exact pools (the fidelity reference of heqc, docs/semantics.md section 10): for every QDQ/QCDQ model the script rewrites
each `DequantizeLinear(q, s, z) -> AveragePool -> QuantizeLinear(s, z)` (same per-tensor scale and zero point on both
sides) into `Cast(q) -> Sub(z) -> AveragePool -> QuantizeLinear(scale 1, z)` and runs the rewritten graph in
onnxruntime. The pool then averages small integers, whose sums and means are exact in float32 (an exact x.5 mean is
representable), so QuantizeLinear rounds every tie to even, as an integer kernel does; every other node is evaluated
by onnxruntime as before. (Each run asserts that the rewritten pool equals a numpy integer implementation with ties to
even on 80,000 random 3x3 stride-2 pad-1 `ceil_mode` windows, for both `count_include_pad` values; see
`check_exact_pool_rewrite`.) The result is written as
`<model>.expected_exact_pools.npy` where it differs from `<model>.expected.npy`; for the power-of-two files the two
are identical (asserted). Differences from the plain ORT output on the 64 fixture inputs (output LSBs):

{exact_pools}

* `unsupported.onnx`: `cnn_avg` float graph + `Sigmoid` (node name `head_sigmoid`) + `Softmax` (`head_softmax`, axis 1)
  on the logits, QDQ-quantized by ORT (both ops get Q/DQ around them).

## Provenance

* Data: scikit-learn's bundled `load_digits` (1797 8x8 images, 0..16), divided by 16 and upsampled to 16x16 by
  nearest-neighbour `np.kron`; {ntrain} train / {ntest} held-out images.
* Training: numpy only (`nn.py`), Adam with cosine decay, batch 32, weight decay 1e-4, softmax cross-entropy
  ({train_cfg}). BN statistics are recomputed on the full training set after each epoch.
* Seeds: {seeds}.
"""


if __name__ == "__main__":
    main()
