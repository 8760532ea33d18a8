"""Tiny numpy-only reverse-mode autograd for small CNNs (used by make_models.py).

Only the handful of ops the heqc fixtures need: Conv2d (im2col, stride, padding,
groups), BatchNorm (train/eval), ReLU, 2x2 Average/Max pooling, global average
pooling, residual add, fully connected, fake quantization (straight-through
estimator) and softmax cross-entropy.  Everything is float32.
"""

from __future__ import annotations

import numpy as np

F32 = np.float32


class V:
    """A value in the tape: data `v`, gradient `g`, parents and a backward closure."""

    __slots__ = ("v", "g", "parents", "back")

    def __init__(self, v, parents=(), back=None):
        self.v = v
        self.g = None
        self.parents = parents
        self.back = back


def backward(out: V, gout):
    order, seen = [], set()

    def visit(n):
        if id(n) in seen:
            return
        seen.add(id(n))
        for p in n.parents:
            visit(p)
        order.append(n)

    visit(out)
    out.g = gout
    for n in reversed(order):
        if n.back is None or n.g is None:
            continue
        grads = n.back(n.g)
        for p, g in zip(n.parents, grads):
            if g is None:
                continue
            p.g = g if p.g is None else p.g + g


# ----------------------------------------------------------------------------- conv


def _im2col(x, kh, kw, s, p):
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
    ho = (h + 2 * p - kh) // s + 1
    wo = (w + 2 * p - kw) // s + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    win = win[:, :, ::s, ::s][:, :, :ho, :wo]  # n,c,ho,wo,kh,kw
    cols = np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * ho * wo, c * kh * kw)
    return cols, ho, wo


def _col2im(dcols, xshape, kh, kw, s, p, ho, wo):
    n, c, h, w = xshape
    d = dcols.reshape(n, ho, wo, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)
    dxp = np.zeros((n, c, h + 2 * p, w + 2 * p), F32)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i : i + s * ho : s, j : j + s * wo : s] += d[:, :, i, j]
    return dxp[:, :, p : p + h, p : p + w]


def _conv_fwd(x, w, stride, pad):
    m, cg, kh, kw = w.shape
    cols, ho, wo = _im2col(x, kh, kw, stride, pad)
    w2 = w.reshape(m, -1)
    out = cols @ w2.T
    y = out.reshape(x.shape[0], ho, wo, m).transpose(0, 3, 1, 2)

    def back(g):
        g2 = g.transpose(0, 2, 3, 1).reshape(-1, m)
        dw = (g2.T @ cols).reshape(w.shape)
        dx = _col2im(g2 @ w2, x.shape, kh, kw, stride, pad, ho, wo)
        return dx, dw

    return y, back


def conv(x: V, w: V, b: V | None = None, stride=1, pad=0, groups=1) -> V:
    m = w.v.shape[0]
    if groups == 1:
        y, bk = _conv_fwd(x.v, w.v, stride, pad)
        bks = [bk]
    else:
        cg = x.v.shape[1] // groups
        mg = m // groups
        ys, bks = [], []
        for gi in range(groups):
            yg, bk = _conv_fwd(x.v[:, gi * cg : (gi + 1) * cg], w.v[gi * mg : (gi + 1) * mg], stride, pad)
            ys.append(yg)
            bks.append(bk)
        y = np.concatenate(ys, axis=1)
    if b is not None:
        y = y + b.v.reshape(1, -1, 1, 1)
    y = np.ascontiguousarray(y, dtype=F32)

    def back(g):
        if groups == 1:
            dx, dw = bks[0](g)
        else:
            mg = m // groups
            parts = [bks[gi](g[:, gi * mg : (gi + 1) * mg]) for gi in range(groups)]
            dx = np.concatenate([p[0] for p in parts], axis=1)
            dw = np.concatenate([p[1] for p in parts], axis=0)
        db = g.sum(axis=(0, 2, 3)) if b is not None else None
        return (dx, dw, db) if b is not None else (dx, dw)

    parents = (x, w, b) if b is not None else (x, w)
    return V(y, parents, back)


# ----------------------------------------------------------------------------- misc ops


def relu(x: V) -> V:
    m = x.v > 0
    return V(x.v * m, (x,), lambda g: (g * m,))


def add(a: V, b: V) -> V:
    return V(a.v + b.v, (a, b), lambda g: (g, g))


def avgpool2(x: V) -> V:
    n, c, h, w = x.v.shape
    y = x.v.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))

    def back(g):
        return (np.repeat(np.repeat(g, 2, axis=2), 2, axis=3) * F32(0.25),)

    return V(y.astype(F32), (x,), back)


def maxpool2(x: V) -> V:
    n, c, h, w = x.v.shape
    r = x.v.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    idx = r.argmax(axis=-1)
    y = np.take_along_axis(r, idx[..., None], axis=-1)[..., 0]

    def back(g):
        d = np.zeros_like(r)
        np.put_along_axis(d, idx[..., None], g[..., None], axis=-1)
        d = d.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)
        return (d,)

    return V(y, (x,), back)


def gap(x: V) -> V:
    n, c, h, w = x.v.shape
    y = x.v.mean(axis=(2, 3))

    def back(g):
        return (np.broadcast_to(g[:, :, None, None] / F32(h * w), x.v.shape).astype(F32),)

    return V(y.astype(F32), (x,), back)


def flatten(x: V) -> V:
    shp = x.v.shape
    return V(x.v.reshape(shp[0], -1), (x,), lambda g: (g.reshape(shp),))


def linear(x: V, w: V, b: V) -> V:
    """ONNX Gemm with transB=1: y = x @ w.T + b, w is [out, in]."""
    y = x.v @ w.v.T + b.v

    def back(g):
        return g @ w.v, g.T @ x.v, g.sum(axis=0)

    return V(y.astype(F32), (x, w, b), back)


def batchnorm(x: V, gamma: V, beta: V, state: dict, train: bool, eps=1e-5, momentum=0.1) -> V:
    n, c, h, w = x.v.shape
    momentum = state.get("momentum", momentum)
    if train:
        mu = x.v.mean(axis=(0, 2, 3))
        var = x.v.var(axis=(0, 2, 3))
        cnt = n * h * w
        state["mean"] = ((1 - momentum) * state["mean"] + momentum * mu).astype(F32)
        state["var"] = ((1 - momentum) * state["var"] + momentum * var * cnt / max(cnt - 1, 1)).astype(F32)
    else:
        mu, var = state["mean"], state["var"]
    inv = (1.0 / np.sqrt(var + eps)).astype(F32)
    xhat = (x.v - mu.reshape(1, -1, 1, 1)) * inv.reshape(1, -1, 1, 1)
    y = gamma.v.reshape(1, -1, 1, 1) * xhat + beta.v.reshape(1, -1, 1, 1)

    def back(g):
        dgamma = (g * xhat).sum(axis=(0, 2, 3))
        dbeta = g.sum(axis=(0, 2, 3))
        dxhat = g * gamma.v.reshape(1, -1, 1, 1)
        if train:
            m = n * h * w
            dx = (
                inv.reshape(1, -1, 1, 1)
                / m
                * (m * dxhat - dxhat.sum(axis=(0, 2, 3), keepdims=True) - xhat * (dxhat * xhat).sum(axis=(0, 2, 3), keepdims=True))
            )
        else:
            dx = dxhat * inv.reshape(1, -1, 1, 1)
        return dx.astype(F32), dgamma, dbeta

    return V(y.astype(F32), (x, gamma, beta), back)


def fake_quant(x: V, scale, qmin, qmax, axis=None) -> V:
    """q = clip(round(x/scale), qmin, qmax) * scale, straight-through gradient inside the range.

    `scale` is a float or a per-channel vector along `axis`.  Rounding is half-to-even like ONNX
    QuantizeLinear.
    """
    s = np.asarray(scale, F32)
    if axis is not None:
        shp = [1] * x.v.ndim
        shp[axis] = -1
        s = s.reshape(shp)
    q = np.round(x.v / s)
    inside = (q >= qmin) & (q <= qmax)
    y = (np.clip(q, qmin, qmax) * s).astype(F32)
    return V(y, (x,), lambda g: (g * inside,))


def softmax_xent(logits: V, y: np.ndarray):
    z = logits.v - logits.v.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.log(p[np.arange(n), y] + 1e-12).mean())
    g = p.copy()
    g[np.arange(n), y] -= 1
    return loss, (g / n).astype(F32)


# ----------------------------------------------------------------------------- optimiser


class Adam:
    def __init__(self, params: dict, lr=3e-3, b1=0.9, b2=0.999, eps=1e-8, wd=0.0):
        self.p, self.lr, self.b1, self.b2, self.eps, self.wd = params, lr, b1, b2, eps, wd
        self.m = {k: np.zeros_like(v.v) for k, v in params.items()}
        self.s = {k: np.zeros_like(v.v) for k, v in params.items()}
        self.t = 0

    def step(self):
        self.t += 1
        for k, v in self.p.items():
            if v.g is None:
                continue
            g = v.g
            if self.wd and v.v.ndim > 1:
                g = g + self.wd * v.v
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.s[k] = self.b2 * self.s[k] + (1 - self.b2) * g * g
            mh = self.m[k] / (1 - self.b1**self.t)
            sh = self.s[k] / (1 - self.b2**self.t)
            v.v = (v.v - self.lr * mh / (np.sqrt(sh) + self.eps)).astype(F32)
            v.g = None
