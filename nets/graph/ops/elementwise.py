"""Element-wise and per-channel ops: activation (act), add ([act]), batch_norm (epsilon, center, scale;
folded by the passes), channel_affine ([act]; an unfolded batch norm: weights scale, shift), softmax.

``activation.act`` is "relu", "relu6", "linear" (dropped by the passes) or "softmax" (lowered to the
softmax op); kernels' fused epilogues take None, "relu" or "relu6".
"""

from __future__ import annotations

import numpy as np

from kernels import reference as ref
from nets.errors import ModelError
from nets.graph.ops import Kernel, Moments, OpDef, register


def same_shape(node, in_shapes):
    return tuple(in_shapes[0])


# ----------------------------------------------------------------------------- activation

def _act_ref(node, xs, out_shape):
    act = node.attrs["act"]
    if act == "linear":
        return xs[0]
    return ref.softmax(xs[0]) if act == "softmax" else ref.activation(xs[0], act)


def _act_lower(g, node):
    if node.attrs["act"] == "linear":
        g.drop(node)
    elif node.attrs["act"] == "softmax":
        node.op, node.attrs = "softmax", {}


def _act_kernel(c):
    b, x, out, act = c.backend, c.ins[0], c.out, c.node.attrs["act"]
    return Kernel(lambda: b.activation(x, out, act), act)


def _act_export(ex, n, ins, out):
    act = n.attrs["act"]
    return ins[0] if act == "linear" else ex.act(ins[0], act, out, n.name, node_name=n.name)


register(OpDef("activation", same_shape, _act_ref, kernel=_act_kernel, lower=_act_lower, export=_act_export,
               color="#aec7e8"))


# ----------------------------------------------------------------------------- add

def _add_shape(node, in_shapes):
    if any(tuple(s) != tuple(in_shapes[0]) for s in in_shapes):
        raise ModelError(f"layer {node.name!r} (add): input shapes differ: {in_shapes}")
    return tuple(in_shapes[0])


def _add_kernel(c):
    b, x, y, out, act = c.backend, c.ins[0], c.ins[1], c.out, c.node.attrs.get("act")
    return Kernel(lambda: b.add(x, y, out, act), "add")


def _add_export(ex, n, ins, out):
    plain = n.attrs.get("act") is None
    y = ex.emit("Add", ins, out if plain else f"{n.output}__sum", n.name)
    return ex.finish(n, y, n.attrs.get("act"))


def _add_moments(node, ins, w, in_shapes):
    (m0, s0), (m1, s1) = ins[0], ins[1]
    return Moments(m0 + m1, s0 + s1 + 2 * m0 * m1)


register(OpDef("add", _add_shape, lambda n, xs, out: ref.add(xs[0], xs[1], n.attrs.get("act")),
               kernel=_add_kernel, export=_add_export, moments=_add_moments, epilogue=True, color="#7f7f7f"))


# ----------------------------------------------------------------------------- batch_norm

def _bn_ref(node, xs, out_shape):
    w = node.weights
    return ref.batch_norm(xs[0], w.get("gamma"), w.get("beta"), w["moving_mean"], w["moving_variance"],
                          node.attrs["epsilon"])


def _bn_export(ex, n, ins, out):
    a = n.attrs
    c = ex.g.shapes[n.inputs[0]][-1]
    gamma = ex.weight(n, "gamma") if a.get("scale", True) else np.ones(c, np.float32)
    beta = ex.weight(n, "beta") if a.get("center", True) else np.zeros(c, np.float32)
    params = [ex.init(f"{n.name}/{k}", v) for k, v in (
        ("scale", gamma), ("B", beta), ("mean", ex.weight(n, "moving_mean")), ("var", ex.weight(n, "moving_variance")))]
    return ex.emit("BatchNormalization", [ins[0]] + params, out, n.name, epsilon=float(a["epsilon"]))


def _bn_moments(node, ins, w, in_shapes):
    """BatchNorm with (random) statistics: x * s + (b - mean * s) per channel, averaged over channels."""
    mu, m = ins[0]
    c = len(w["moving_mean"])
    g = w.get("gamma", np.ones(c, np.float32)).astype(np.float64)
    b = w.get("beta", np.zeros(c, np.float32)).astype(np.float64)
    s = g / np.sqrt(w["moving_variance"] + node.attrs["epsilon"])
    d, var = mu - w["moving_mean"], m - mu * mu
    return Moments(float(np.mean(s * d + b)), float(np.mean(s * s * (var + d * d) + 2 * b * s * d + b * b)))


register(OpDef("batch_norm", same_shape, _bn_ref, export=_bn_export, moments=_bn_moments, color="#bcbd22"))


# ----------------------------------------------------------------------------- channel_affine

def _affine_kernel(c):
    b, x, out, n = c.backend, c.ins[0], c.out, c.node
    s, t, act = n.weights["scale"], n.weights["shift"], n.attrs.get("act")
    return Kernel(lambda: b.channel_affine(x, s, t, out, act), "channel_affine")


def _affine_export(ex, n, ins, out):
    shape = (-1, 1, 1) if ex.is_map(n.inputs[0]) else (-1,)
    scale = ex.init(f"{n.name}/scale", ex.weight(n, "scale").reshape(shape))
    shift = ex.init(f"{n.name}/shift", ex.weight(n, "shift").reshape(shape))
    y = ex.emit("Mul", [ins[0], scale], f"{n.output}__scaled", f"{n.name}/mul")
    y = ex.emit("Add", [y, shift], out if n.attrs.get("act") is None else f"{n.output}__shifted", n.name)
    return ex.finish(n, y, n.attrs.get("act"))


register(OpDef("channel_affine", same_shape,
               lambda n, xs, out: ref.channel_affine(xs[0], n.weights["scale"], n.weights["shift"], n.attrs.get("act")),
               kernel=_affine_kernel, export=_affine_export, epilogue=True, color="#17becf"))


# ----------------------------------------------------------------------------- softmax

def _softmax_kernel(c):
    b, x = c.backend, c.ins[0]
    x2, o2 = x.reshape(-1, x.shape[-1]), c.out.reshape(-1, x.shape[-1])
    return Kernel(lambda: b.softmax(x2, o2), "softmax")


register(OpDef("softmax", same_shape, lambda n, xs, out: ref.softmax(xs[0]), kernel=_softmax_kernel,
               export=lambda ex, n, ins, out: ex.emit("Softmax", [ins[0]], out, n.name, axis=1), color="#ffbb78"))
