"""Convolutions: conv2d, depthwise_conv2d, separable_conv2d (lowered), depthwise_pointwise (fused).

Attributes (set by ``GraphBuilder``; passes add the fused forms):
    conv2d              filters, kernel_size, strides, pad (t, b, l, r), use_bias, act, [residual],
                        [groups] (kernel (kh, kw, cin / groups, filters): groups == cin is lowered to a
                        depthwise conv, other counts are split into one conv per group by the passes)
    depthwise_conv2d    kernel_size, strides, pad, depth_multiplier, use_bias, act
    separable_conv2d    filters, kernel_size, strides, pad, depth_multiplier, use_bias, act
    depthwise_pointwise (made by a pass: a depthwise conv and the 1x1 conv that alone reads it)
                        dw_kernel_size, dw_strides, dw_pad, dw_act, depth_multiplier, filters, act,
                        [residual], [in_act] (an activation on the input, before the depthwise);
                        weights depthwise_kernel, depthwise_bias, kernel, bias
``act`` is None, "relu" or "relu6"; ``residual`` names the value added before the activation.
"""

from __future__ import annotations

import numpy as np

from kernels import reference as ref
from nets.errors import ModelError
from nets.graph.ir import Node, window_out
from nets.graph.ops import Kernel, Moments, OpDef, need_rank, register


def _check_residual(node, in_shapes, out):
    if node.attrs.get("residual") is not None and tuple(in_shapes[1]) != tuple(out):
        raise ModelError(f"layer {node.name!r}: residual of shape {in_shapes[1]} does not match output {out}")


def weighted_moments(node, ins, w, in_shapes) -> Moments:
    """A conv/dense layer: its kernel is scaled so the input has unit RMS, then He-initialised
    weights give outputs of second moment ~2 (plus the bias's), and a residual adds its own."""
    mu_in, m_in = ins[0]
    bias = w.get("bias")
    mu = float(np.mean(bias)) if bias is not None else 0.0
    m = 2.0 + (float(np.mean(bias ** 2)) if bias is not None else 0.0)
    if node.attrs.get("residual") is not None:
        mu, m = mu + ins[1][0], m + ins[1][1] + 2 * mu * ins[1][0]
    return Moments(mu, m, 1.0 / np.sqrt(max(m_in, 1e-12)))


def _residual(call):
    return call.ins[1] if call.node.attrs.get("residual") is not None else None


# ----------------------------------------------------------------------------- conv2d

def _conv2d_shape(node, in_shapes):
    a = node.attrs
    need_rank(node, in_shapes[0], 3)
    groups = a.get("groups", 1)
    if groups < 1 or in_shapes[0][2] % groups or a["filters"] % groups:
        raise ModelError(f"layer {node.name!r}: {groups} groups do not divide {in_shapes[0][2]} input and "
                         f"{a['filters']} output channels")
    oh, ow = window_out(node.name, in_shapes[0], a["kernel_size"], a["strides"], a["pad"])
    out = (oh, ow, a["filters"])
    _check_residual(node, in_shapes, out)
    return out


def _conv2d_macs(node, in_shapes, out):
    kh, kw = node.attrs["kernel_size"]
    return out[0] * out[1] * out[2] * kh * kw * in_shapes[0][2] // node.attrs.get("groups", 1)


def _conv2d_ref(node, xs, out_shape):
    a, w = node.attrs, node.weights
    res = xs[1] if a.get("residual") is not None else None
    groups = a.get("groups", 1)
    if groups == 1:
        return ref.conv2d(xs[0], w["kernel"], w.get("bias"), a["strides"], a["pad"], a.get("act"), res)
    cin, cout = xs[0].shape[-1] // groups, a["filters"] // groups
    bias = w.get("bias")
    parts = [ref.conv2d(xs[0][..., g * cin:(g + 1) * cin], w["kernel"][..., g * cout:(g + 1) * cout],
                        None if bias is None else bias[g * cout:(g + 1) * cout], a["strides"], a["pad"])
             for g in range(groups)]
    y = np.concatenate(parts, axis=-1)
    return ref.add(y, res, a.get("act")) if res is not None else ref.activation(y, a.get("act"))


def _conv2d_lower(g, node):
    """A convolution with as many groups as input channels is a depthwise one (ConvNeXt's 7x7):
    output channel o belongs to input channel o // m, i.e. depthwise channel c * m + j."""
    a = node.attrs
    cin = g.shapes[node.inputs[0]][-1]
    if a.get("groups", 1) == 1 or a["groups"] != cin:
        return
    kh, kw = a["kernel_size"]
    m = a["filters"] // cin
    node.op = "depthwise_conv2d"
    node.attrs = dict(kernel_size=a["kernel_size"], strides=a["strides"], pad=a["pad"], depth_multiplier=m,
                      use_bias=a["use_bias"], act=a["act"])
    node.weight_shapes = dict(node.weight_shapes, depthwise_kernel=(kh, kw, cin, m))
    del node.weight_shapes["kernel"]
    node.weights = dict(node.weights, depthwise_kernel=node.weights["kernel"].reshape(kh, kw, cin, m))
    del node.weights["kernel"]


def split_groups(g, node):
    """A grouped convolution (1 < groups < channels) as one convolution per group on a channel slice of
    the input, written into its slice of the concatenated output (the planner makes that in place)."""
    a = node.attrs
    groups = a["groups"]
    cin = g.shapes[node.inputs[0]][-1] // groups
    cout = a["filters"] // groups
    oh, ow, _ = g.shapes[node.output]
    h, w, _ = g.shapes[node.inputs[0]]
    at = g.nodes.index(node)
    parts = []
    for k in range(groups):
        sl, conv = f"{node.name}/in{k}", f"{node.name}/group{k}"
        g.shapes[sl], g.shapes[conv] = (h, w, cin), (oh, ow, cout)
        weights = {"kernel": node.weights["kernel"][..., k * cout:(k + 1) * cout]}
        shapes = {"kernel": weights["kernel"].shape}
        if "bias" in node.weights:
            weights["bias"], shapes["bias"] = node.weights["bias"][k * cout:(k + 1) * cout], (cout,)
        g.nodes.insert(at, Node(sl, "channel_gather", [node.inputs[0]], sl,
                                {"index": tuple(range(k * cin, (k + 1) * cin))}))
        g.nodes.insert(at + 1, Node(conv, "conv2d", [sl], conv, dict(a, filters=cout, groups=1), shapes, weights))
        at += 2
        parts.append(conv)
    node.op, node.inputs, node.attrs = "concat", parts, {}
    node.weight_shapes, node.weights = {}, {}


def _conv2d_kernel(c):
    a, b, p, x, out, c0, res = c.node.attrs, c.backend, c.packed, c.ins[0], c.out, c.c0, _residual(c)
    return Kernel(lambda: b.conv2d(x, p, out, a["strides"], a["pad"], a["act"], res, c0), p.variant, p)


def _conv2d_export(ex, n, ins, out):
    a = n.attrs
    res = ins[1] if a.get("residual") is not None else None
    plain = a.get("act") is None and res is None
    y = ex.conv(n, ins[0], ex.conv_weight(ex.weight(n, "kernel")), ex.bias(n), n.name,
                out if plain else f"{n.output}__conv", group=a.get("groups", 1))
    return ex.finish(n, y, a.get("act"), res)


register(OpDef(
    "conv2d", _conv2d_shape, _conv2d_ref, _conv2d_macs,
    pack=lambda b, n: b.pack_conv2d(n.weights["kernel"], n.weights.get("bias")),
    kernel=_conv2d_kernel, lower=_conv2d_lower, export=_conv2d_export, moments=weighted_moments,
    epilogue=True, slice_writer=True, color="#1f77b4"))


# ----------------------------------------------------------------------------- depthwise_conv2d

def _depthwise_shape(node, in_shapes):
    a, x = node.attrs, in_shapes[0]
    need_rank(node, x, 3)
    oh, ow = window_out(node.name, x, a["kernel_size"], a["strides"], a["pad"])
    return (oh, ow, x[2] * a["depth_multiplier"])


def _depthwise_macs(node, in_shapes, out):
    kh, kw = node.attrs["kernel_size"]
    return out[0] * out[1] * out[2] * kh * kw


def _depthwise_ref(node, xs, out_shape):
    a, w = node.attrs, node.weights
    return ref.depthwise_conv2d(xs[0], w["depthwise_kernel"], w.get("bias"), a["strides"], a["pad"], a.get("act"))


def _depthwise_kernel(c):
    a, b, p, x, out, c0 = c.node.attrs, c.backend, c.packed, c.ins[0], c.out, c.c0
    return Kernel(lambda: b.depthwise_conv2d(x, p, out, a["strides"], a["pad"], a["act"], c0), p.variant, p)


def _depthwise_export(ex, n, ins, out):
    c = ex.g.shapes[n.inputs[0]][2]
    y = ex.conv(n, ins[0], ex.depthwise_weight(ex.weight(n, "depthwise_kernel")), ex.bias(n), n.name,
                out if n.attrs.get("act") is None else f"{n.output}__conv", group=c)
    return ex.finish(n, y, n.attrs.get("act"))


register(OpDef(
    "depthwise_conv2d", _depthwise_shape, _depthwise_ref, _depthwise_macs,
    pack=lambda b, n: b.pack_depthwise(n.weights["depthwise_kernel"], n.weights.get("bias")),
    kernel=_depthwise_kernel, export=_depthwise_export, moments=weighted_moments,
    epilogue=True, slice_writer=True, color="#ff7f0e"))


# ----------------------------------------------------------------------------- separable_conv2d

def _separable_macs(node, in_shapes, out):
    kh, kw = node.attrs["kernel_size"]
    mid = in_shapes[0][2] * node.attrs["depth_multiplier"]
    return out[0] * out[1] * (mid * kh * kw + mid * out[2])


def _separable_ref(node, xs, out_shape):
    a, w = node.attrs, node.weights
    return ref.separable_conv2d(xs[0], w["depthwise_kernel"], w["pointwise_kernel"], w.get("bias"),
                                a["strides"], a["pad"], a.get("act"))


def _separable_lower(g, node):
    """Keras' SeparableConv2D = a depthwise conv without bias, then a 1x1 conv with the bias."""
    a = node.attrs
    mid = node.name + "/depthwise"
    cin = g.shapes[node.inputs[0]][-1]
    m = a["depth_multiplier"]
    dw = Node(mid, "depthwise_conv2d", list(node.inputs), mid,
              dict(kernel_size=a["kernel_size"], strides=a["strides"], pad=a["pad"], depth_multiplier=m,
                   use_bias=False, act=None),
              {"depthwise_kernel": node.weight_shapes["depthwise_kernel"]},
              {"depthwise_kernel": node.weights.get("depthwise_kernel")})
    oh, ow, _ = g.shapes[node.output]
    g.shapes[mid] = (oh, ow, cin * m)
    pw_ws = {"kernel": node.weight_shapes["pointwise_kernel"]}
    pw_w = {"kernel": node.weights.get("pointwise_kernel")}
    if a["use_bias"]:
        pw_ws["bias"] = node.weight_shapes["bias"]
        pw_w["bias"] = node.weights.get("bias")
    g.nodes.insert(g.nodes.index(node), dw)
    node.op = "conv2d"
    node.inputs = [mid]
    node.attrs = dict(filters=a["filters"], kernel_size=(1, 1), strides=(1, 1), pad=(0, 0, 0, 0),
                      use_bias=a["use_bias"], act=a["act"])
    node.weight_shapes, node.weights = pw_ws, pw_w


def _separable_export(ex, n, ins, out):
    c = ex.g.shapes[n.inputs[0]][2]
    dw = ex.conv(n, ins[0], ex.depthwise_weight(ex.weight(n, "depthwise_kernel")), None,
                 f"{n.name}/depthwise", f"{n.output}__depthwise", group=c)
    pw = ex.conv_weight(ex.weight(n, "pointwise_kernel"))
    bias = ex.bias(n)
    args = [dw, ex.init(f"{n.name}/W", pw)] + ([ex.init(f"{n.name}/B", bias)] if bias is not None else [])
    y = ex.emit("Conv", args, out if n.attrs.get("act") is None else f"{n.output}__conv", n.name,
                kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0])
    return ex.finish(n, y, n.attrs.get("act"))


register(OpDef(
    "separable_conv2d", _conv2d_shape, _separable_ref, _separable_macs, lower=_separable_lower,
    export=_separable_export, moments=weighted_moments, color="#ff7f0e"))


# ----------------------------------------------------------------------------- depthwise_pointwise

def _dwpw_shape(node, in_shapes):
    a = node.attrs
    need_rank(node, in_shapes[0], 3)
    oh, ow = window_out(node.name, in_shapes[0], a["dw_kernel_size"], a["dw_strides"], a["dw_pad"])
    out = (oh, ow, a["filters"])
    _check_residual(node, in_shapes, out)
    return out


def _dwpw_macs(node, in_shapes, out):
    kh, kw = node.attrs["dw_kernel_size"]
    mid = in_shapes[0][2] * node.attrs["depth_multiplier"]
    return out[0] * out[1] * (mid * kh * kw + mid * out[2])


def _dwpw_ref(node, xs, out_shape):
    a, w = node.attrs, node.weights
    x = xs[0] if a.get("in_act") is None else ref.activation(xs[0], a["in_act"])
    mid = ref.depthwise_conv2d(x, w["depthwise_kernel"], w["depthwise_bias"], a["dw_strides"], a["dw_pad"],
                               a.get("dw_act"))
    res = xs[1] if a.get("residual") is not None else None
    return ref.conv2d(mid, w["kernel"], w.get("bias"), (1, 1), (0, 0, 0, 0), a.get("act"), res)


class SeparatePair:
    """A depthwise_pointwise node on a backend without the fused kernel: the two kernels, with the
    intermediate in a buffer of its own (made when the step is bound)."""

    def __init__(self, backend, dw_kernel, dw_bias, kernel, bias):
        self.dw = backend.pack_depthwise(dw_kernel, dw_bias)
        self.pw = backend.pack_conv2d(kernel, bias)

    @property
    def variant(self):
        return f"{getattr(self.dw, 'variant', 'depthwise')}+{getattr(self.pw, 'variant', 'conv2d')}"


def _dwpw_pack(b, n):
    w = n.weights
    args = (w["depthwise_kernel"], w["depthwise_bias"], w["kernel"], w.get("bias"))
    if hasattr(b, "pack_depthwise_pointwise"):
        return b.pack_depthwise_pointwise(*args)
    return SeparatePair(b, *args)


def _dwpw_kernel(c):
    a, b, p, x, out, c0, res = c.node.attrs, c.backend, c.packed, c.ins[0], c.out, c.c0, _residual(c)
    if not isinstance(p, SeparatePair):
        return Kernel(lambda: b.depthwise_pointwise(x, p, out, a["dw_strides"], a["dw_pad"], a["dw_act"], a["act"],
                                                    res, c0, a.get("in_act")), p.variant, p)
    oh, ow = out.shape[1], out.shape[2]
    mid = c.xp.empty((c.batch, oh, ow, x.shape[-1] * a["depth_multiplier"]), c.xp.float32)
    xin = x if a.get("in_act") is None else c.xp.empty(x.shape, c.xp.float32)

    def run():
        if xin is not x:
            b.activation(x, xin, a["in_act"])
        b.depthwise_conv2d(xin, p.dw, mid, a["dw_strides"], a["dw_pad"], a["dw_act"], 0)
        b.conv2d(mid, p.pw, out, (1, 1), (0, 0, 0, 0), a["act"], res, c0)
    return Kernel(run, p.variant, p)


register(OpDef(
    "depthwise_pointwise", _dwpw_shape, _dwpw_ref, _dwpw_macs, pack=_dwpw_pack, kernel=_dwpw_kernel,
    slice_writer=True, color="#e6550d"))
