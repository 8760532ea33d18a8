#!/usr/bin/env python3
"""Generate compiler/tests/data/synthetic{,_qop,_qcdq}.onnx and their onnxruntime outputs.

A hand-built QDQ graph exercising what the digit fixtures do not: a grouped, strided conv with
auto_pad SAME_UPPER followed directly by a float BatchNormalization and a Relu (BN folded into
the requantization), MaxPool on the dequantized tensor, a Concat of two differently quantized
branches (rescaled), Flatten, MatMul + Add of a float bias, an int8 output with a zero point.
Deterministic (seed 7); onnxruntime with ORT_DISABLE_ALL on one thread.

    python3 compiler/tests/data/make_synthetic.py
"""
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = Path(__file__).resolve().parent
rng = np.random.default_rng(7)
F32 = np.float32
inits, nodes = [], []


def init(name, arr):
    inits.append(numpy_helper.from_array(np.asarray(arr), name))
    return name


def node(op, ins, outs, name, **attrs):
    nodes.append(helper.make_node(op, ins, outs, name=name, **attrs))
    return outs[0]


def qdq(x, tag, scale, zp, dtype=np.uint8):
    init(f"{tag}.s", F32(scale))
    init(f"{tag}.z", dtype(zp))
    q = node("QuantizeLinear", [x, f"{tag}.s", f"{tag}.z"], [f"{tag}.q"], f"{tag}.Q")
    return node("DequantizeLinear", [q, f"{tag}.s", f"{tag}.z"], [f"{tag}.dq"], f"{tag}.DQ")


def qweight(name, w, axis):
    s = (np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis)) / 127).astype(F32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / s.reshape(shape)), -127, 127).astype(np.int8)
    init(name + ".q", q)
    init(name + ".s", s)
    init(name + ".z", np.zeros_like(s, dtype=np.int8))
    return node("DequantizeLinear", [name + ".q", name + ".s", name + ".z"], [name + ".dq"], name + ".DQ", axis=axis)


x = qdq("input", "in", 1 / 255, 0)
w1 = qweight("conv1.w", rng.normal(0, 0.4, (8, 2, 3, 3)).astype(F32), 0)
h = node("Conv", [x, w1], ["conv1_out"], "conv1", group=2, strides=[2, 2], auto_pad="SAME_UPPER")
init("bn.gamma", rng.uniform(0.5, 1.5, 8).astype(F32))
init("bn.beta", rng.normal(0, 0.2, 8).astype(F32))
init("bn.mean", rng.normal(0, 0.2, 8).astype(F32))
init("bn.var", rng.uniform(0.5, 2.0, 8).astype(F32))
h = node("BatchNormalization", [h, "bn.gamma", "bn.beta", "bn.mean", "bn.var"], ["bn_out"], "bn", epsilon=1e-5)
h = node("Relu", [h], ["relu_out"], "relu")
a = qdq(h, "a", 0.0213, 0)
p = node("MaxPool", [a], ["pool_out"], "pool", kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1])
p = qdq(p, "p", 0.0213, 0)
w2 = qweight("conv2.w", rng.normal(0, 0.3, (4, 8, 1, 1)).astype(F32), 0)
b = node("Conv", [p, w2], ["conv2_out"], "conv2")
b = qdq(b, "b", 0.0377, 131)
c = node("Concat", [p, b], ["cat_out"], "cat", axis=1)
c = qdq(c, "c", 0.0311, 120)
f = node("Flatten", [c], ["flat_out"], "flatten", axis=1)
w3 = qweight("fc.w", rng.normal(0, 0.05, (12 * 5 * 5, 10)).astype(F32), 1)
m = node("MatMul", [f, w3], ["mm_out"], "fc")
init("fc.bias", rng.normal(0, 0.3, 10).astype(F32))
o = node("Add", [m, "fc.bias"], ["add_out"], "fc_bias")
init("out.s", F32(0.0517))
init("out.z", np.int8(3))
q = node("QuantizeLinear", [o, "out.s", "out.z"], ["out.q"], "out.Q")
node("DequantizeLinear", [q, "out.s", "out.z"], ["y"], "out.DQ")

g = helper.make_graph(
    nodes, "synthetic",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 4, 9, 9])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
    initializer=inits,
)
model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 3)])
model.ir_version = 8
onnx.checker.check_model(model, full_check=True)
onnx.save(model, HERE / "synthetic.onnx")
xs = rng.uniform(0, 1, (16, 4, 9, 9)).astype(F32)
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
so.intra_op_num_threads = 1
y = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"input": xs})[0]
np.save(HERE / "synthetic_x.npy", xs)
np.save(HERE / "synthetic.expected.npy", y.astype(F32))


# ---- QOperator graph: QLinearConv branches joined by com.microsoft QLinearConcat, MaxPool on
# uint8, Flatten, QLinearMatMul, DequantizeLinear.
inits, nodes = [], []


def qconv(x, xs, xz, name, cin, cout, ys, yz):
    w = rng.normal(0, 0.3, (cout, cin, 3, 3)).astype(F32)
    s = (np.abs(w).reshape(cout, -1).max(1) / 127).astype(F32)
    init(name + ".w", np.clip(np.round(w / s[:, None, None, None]), -127, 127).astype(np.int8))
    init(name + ".ws", s)
    init(name + ".wz", np.zeros(cout, np.int8))
    init(name + ".b", rng.integers(-3000, 3000, cout).astype(np.int32))
    init(name + ".ys", F32(ys))
    init(name + ".yz", np.uint8(yz))
    return node("QLinearConv", [x, xs, xz, name + ".w", name + ".ws", name + ".wz", name + ".ys", name + ".yz", name + ".b"],
                [name + ".out"], name, pads=[1, 1, 1, 1])


init("in.s", F32(1 / 255))
init("in.z", np.uint8(0))
x = node("QuantizeLinear", ["input", "in.s", "in.z"], ["in.q"], "in.Q")
a = qconv(x, "in.s", "in.z", "qa", 2, 3, 0.0291, 17)
b = qconv(x, "in.s", "in.z", "qb", 2, 5, 0.0437, 140)
init("cat.s", F32(0.0371))
init("cat.z", np.uint8(90))
nodes.append(helper.make_node("QLinearConcat", ["cat.s", "cat.z", a, "qa.ys", "qa.yz", b, "qb.ys", "qb.yz"], ["cat.out"],
                              name="qcat", domain="com.microsoft", axis=1))
p = node("MaxPool", ["cat.out"], ["pool.out"], "qpool", kernel_shape=[2, 2], strides=[2, 2])
f = node("Flatten", [p], ["flat.out"], "qflat", axis=1)
wm = rng.normal(0, 0.05, (8 * 3 * 3, 10)).astype(F32)
sm = (np.abs(wm).max(0) / 127).astype(F32)
init("mm.w", np.clip(np.round(wm / sm), -127, 127).astype(np.int8))
init("mm.ws", sm)
init("mm.wz", np.zeros(10, np.int8))
init("mm.ys", F32(0.0611))
init("mm.yz", np.uint8(128))
m = node("QLinearMatMul", [f, "cat.s", "cat.z", "mm.w", "mm.ws", "mm.wz", "mm.ys", "mm.yz"], ["mm.out"], "qmm")
node("DequantizeLinear", [m, "mm.ys", "mm.yz"], ["y"], "out.DQ")
g = helper.make_graph(
    nodes, "synthetic_qop",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 2, 6, 6])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
    initializer=inits,
)
model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
model.ir_version = 8
onnx.checker.check_model(model)
onnx.save(model, HERE / "synthetic_qop.onnx")
xs = rng.uniform(0, 1, (16, 2, 6, 6)).astype(F32)
y = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"input": xs})[0]
np.save(HERE / "synthetic_qop_x.npy", xs)
np.save(HERE / "synthetic_qop.expected.npy", y.astype(F32))


# ---- QCDQ graph: a Clip right after the input QuantizeLinear (a clamping rescale), 4-bit
# activations from Q -> Clip(0, 15) -> DQ after a Relu, a residual Add of two branches with
# different scales, AveragePool 3x3 with padding counted (count_include_pad = 1), then
# GlobalAveragePool, Flatten, Gemm (transB) and an int8 output.
inits, nodes = [], []


def qcdq(x, tag, scale, zp, lo, hi, dtype=np.uint8):
    init(f"{tag}.s", F32(scale))
    init(f"{tag}.z", dtype(zp))
    init(f"{tag}.lo", dtype(lo))
    init(f"{tag}.hi", dtype(hi))
    q = node("QuantizeLinear", [x, f"{tag}.s", f"{tag}.z"], [f"{tag}.q"], f"{tag}.Q")
    c = node("Clip", [q, f"{tag}.lo", f"{tag}.hi"], [f"{tag}.c"], f"{tag}.Clip")
    return node("DequantizeLinear", [c, f"{tag}.s", f"{tag}.z"], [f"{tag}.dq"], f"{tag}.DQ")


def qcdq_weight(name, w, lo, hi):
    s = (np.abs(w).reshape(w.shape[0], -1).max(1) / hi).astype(F32)
    init(name, w)
    init(name + ".s", s)
    init(name + ".z", np.zeros_like(s, dtype=np.int8))
    init(name + ".lo", np.int8(lo))
    init(name + ".hi", np.int8(hi))
    q = node("QuantizeLinear", [name, name + ".s", name + ".z"], [name + ".q"], name + ".Q", axis=0)
    c = node("Clip", [q, name + ".lo", name + ".hi"], [name + ".c"], name + ".Clip")
    return node("DequantizeLinear", [c, name + ".s", name + ".z"], [name + ".dq"], name + ".DQ", axis=0)


x = qcdq("input", "cin", 1 / 255, 0, 10, 240)
w1 = qcdq_weight("c1.w", rng.normal(0, 0.4, (6, 3, 3, 3)).astype(F32), -7, 7)
h = node("Conv", [x, w1], ["c1.out"], "c1", pads=[1, 1, 1, 1])
h = node("Relu", [h], ["r1.out"], "r1")
a = qcdq(h, "a1", 0.0733, 0, 0, 15)
w2 = qcdq_weight("c2.w", rng.normal(0, 0.3, (6, 6, 3, 3)).astype(F32), -7, 7)
b = node("Conv", [a, w2], ["c2.out"], "c2", pads=[1, 1, 1, 1])
b = qcdq(b, "b2", 0.0517, 9, 0, 255)
s = node("Add", [a, b], ["add.out"], "add")
s = qcdq(s, "s", 0.0891, 4, 0, 31)
p = node("AveragePool", [s], ["ap.out"], "ap", kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1], count_include_pad=1)
p = qcdq(p, "p", 0.0413, 0, 0, 255)
gp = node("GlobalAveragePool", [p], ["gap.out"], "gap")
gp = qcdq(gp, "g", 0.0297, 0, 0, 255)
f = node("Flatten", [gp], ["flat.out"], "flat", axis=1)
w3 = qcdq_weight("fc.w", rng.normal(0, 0.5, (10, 6)).astype(F32), -127, 127)
o = node("Gemm", [f, w3], ["fc.out"], "fc", transB=1)
qcdq(o, "out", 0.0371, 0, -128, 127, np.int8)
nodes[-1].output[0] = "y"
g = helper.make_graph(
    nodes, "synthetic_qcdq",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 7, 7])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
    initializer=inits,
)
model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model, full_check=True)
onnx.save(model, HERE / "synthetic_qcdq.onnx")
xs = rng.uniform(0, 1, (16, 3, 7, 7)).astype(F32)
y = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"input": xs})[0]
np.save(HERE / "synthetic_qcdq_x.npy", xs)
np.save(HERE / "synthetic_qcdq.expected.npy", y.astype(F32))
