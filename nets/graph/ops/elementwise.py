"""Element-wise and per-channel ops: activation (act), add and mul ([act]; the second input has the
first's shape, or is one value per channel: (1, 1, C) or (C,), broadcast over H and W), batch_norm
(epsilon, center, scale; folded by the passes), channel_affine ([act]; an unfolded batch norm:
weights scale, shift), layer_norm (epsilon; weights gamma, beta; over channels), lrn (size, alpha,
beta, bias; ONNX's local response normalisation across channels), softmax.

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


# ----------------------------------------------------------------------------- add / mul

def _binary_shape(node, in_shapes):
    a, b = (tuple(s) for s in in_shapes)
    if b != a and b not in ((1, 1, a[-1]), (a[-1],)):
        raise ModelError(f"layer {node.name!r} ({node.op}): input shapes {a} and {b} do not match (the second may "
                         f"also be one value per channel: (1, 1, {a[-1]}) or ({a[-1]},))")
    return a


def _second(c):
    """The second input as the kernels take it: the first's shape, or (N, C)."""
    a, b = c.ins
    return b if b.shape == a.shape else b.reshape(c.batch, -1)


def _binary(op, onnx_op, color, moments):
    def reference(node, xs, out_shape):
        b = xs[1] if xs[1].shape == xs[0].shape else xs[1].reshape(len(xs[1]), -1)
        fn = ref.add if op == "add" else ref.mul
        return fn(xs[0], b, node.attrs.get("act"))

    def kernel(c):
        fn, x, y, out, act = getattr(c.backend, op), c.ins[0], _second(c), c.out, c.node.attrs.get("act")
        return Kernel(lambda: fn(x, y, out, act), op)

    def export(ex, n, ins, out):
        a, b = ins
        if ex.g.shapes[n.inputs[1]] != ex.g.shapes[n.inputs[0]] and ex.is_map(n.inputs[0]) \
                and not ex.is_map(n.inputs[1]):          # (N, C) against (N, C, H, W)
            shp = ex.init(f"{n.name}/per_channel", np.array([0, -1, 1, 1], np.int64))
            b = ex.emit("Reshape", [b, shp], f"{n.output}__per_channel", f"{n.name}/per_channel")
        plain = n.attrs.get("act") is None
        y = ex.emit(onnx_op, [a, b], out if plain else f"{n.output}__{op}", n.name)
        return ex.finish(n, y, n.attrs.get("act"))

    register(OpDef(op, _binary_shape, reference, kernel=kernel, export=export, moments=moments, epilogue=True,
                   color=color))


def _add_moments(node, ins, w, in_shapes):
    (m0, s0), (m1, s1) = ins[0], ins[1]
    return Moments(m0 + m1, s0 + s1 + 2 * m0 * m1)


def _mul_moments(node, ins, w, in_shapes):
    """Independent factors: E[ab] = E[a] E[b], E[(ab)^2] = E[a^2] E[b^2]."""
    (m0, s0), (m1, s1) = ins[0], ins[1]
    return Moments(m0 * m1, s0 * s1)


_binary("add", "Add", "#7f7f7f", _add_moments)
_binary("mul", "Mul", "#c49c94", _mul_moments)


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


# ----------------------------------------------------------------------------- layer_norm

def _ln_params(n, channels):
    """gamma and beta, ones / zeros for the ones Keras leaves out (scale / center off)."""
    g = n.weights.get("gamma", np.ones(channels, np.float32))
    return np.asarray(g, np.float32), np.asarray(n.weights.get("beta", np.zeros(channels, np.float32)), np.float32)


def _ln_kernel(c):
    b, x, out, n = c.backend, c.ins[0], c.out, c.node
    g, t = (c.xp.asarray(a) for a in _ln_params(n, x.shape[-1]))
    eps = n.attrs["epsilon"]
    return Kernel(lambda: b.layer_norm(x, g, t, out, eps), "layer_norm")


def _ln_export(ex, n, ins, out):
    """ONNX LayerNormalization normalises the trailing axes: over channels of an NCHW map that needs the
    channels last, so the node runs between two Transposes."""
    args = [ex.init(f"{n.name}/{k}", v) for k, v in zip(("gamma", "beta"), _ln_params(n, ex.g.shapes[n.output][-1]))]
    x = ins[0]
    if ex.is_map(n.inputs[0]):
        x = ex.emit("Transpose", [x], f"{n.output}__nhwc", f"{n.name}/to_nhwc", perm=[0, 2, 3, 1])
        y = ex.emit("LayerNormalization", [x] + args, f"{n.output}__normed", n.name, axis=-1,
                    epsilon=float(n.attrs["epsilon"]))
        return ex.emit("Transpose", [y], out, f"{n.name}/to_nchw", perm=[0, 3, 1, 2])
    return ex.emit("LayerNormalization", [x] + args, out, n.name, axis=-1, epsilon=float(n.attrs["epsilon"]))


register(OpDef("layer_norm", same_shape,
               lambda n, xs, out: ref.layer_norm(xs[0], *_ln_params(n, xs[0].shape[-1]), n.attrs["epsilon"]),
               kernel=_ln_kernel, export=_ln_export, moments=lambda n, ins, w, sh: Moments(0.0, 1.0),
               color="#f7b6d2"))


# ----------------------------------------------------------------------------- lrn

def _lrn_kernel(c):
    b, x, out, a = c.backend, c.ins[0], c.out, c.node.attrs
    return Kernel(lambda: b.lrn(x, out, a["size"], a["alpha"], a["beta"], a["bias"]), "lrn")


register(OpDef("lrn", same_shape,
               lambda n, xs, out: ref.lrn(xs[0], n.attrs["size"], n.attrs["alpha"], n.attrs["beta"], n.attrs["bias"]),
               kernel=_lrn_kernel,
               export=lambda ex, n, ins, out: ex.emit("LRN", [ins[0]], out, n.name, size=int(n.attrs["size"]),
                                                      alpha=float(n.attrs["alpha"]), beta=float(n.attrs["beta"]),
                                                      bias=float(n.attrs["bias"])),
               color="#9edae5"))
