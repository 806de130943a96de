"""dense: units, use_bias, act (any activation, or "softmax"; the passes split off what the kernel's
epilogue does not apply). On a feature map (H, W, C) it acts on the channels of every pixel, as
Keras' Dense does on 4-D inputs (ConvNeXt): the passes lower it to a 1x1 convolution.

Weights ``kernel`` (in, units) (Keras' layout; ``in`` is -1 until the input width is known) and
``bias`` (units,).
"""

from __future__ import annotations

import math

from kernels import reference as ref
from nets.errors import ModelError
from nets.graph.ops import Kernel, OpDef, register
from nets.graph.ops.conv import weighted_moments


def _shape(node, in_shapes):
    x = in_shapes[0]
    if len(x) not in (1, 3):
        raise ModelError(f"layer {node.name!r} (dense) expects a flat input or a feature map per sample, got "
                         f"shape {x}; add a Flatten or global pooling layer before it")
    return tuple(x[:-1]) + (node.attrs["units"],)


def _lower(g, node):
    """On a feature map: the 1x1 convolution it is."""
    if len(g.shapes[node.inputs[0]]) != 3:
        return
    a = node.attrs
    node.op = "conv2d"
    node.attrs = dict(filters=a["units"], kernel_size=(1, 1), strides=(1, 1), pad=(0, 0, 0, 0),
                      use_bias=a["use_bias"], act=a.get("act"))
    k = node.weights["kernel"]
    node.weights = dict(node.weights, kernel=k.reshape((1, 1) + k.shape))
    node.weight_shapes = dict(node.weight_shapes, kernel=(1, 1) + tuple(node.weight_shapes["kernel"]))


def _ref(node, xs, out_shape):
    act = node.attrs.get("act")
    y = ref.dense(xs[0], node.weights["kernel"], node.weights.get("bias"), None if act == "softmax" else act)
    return ref.softmax(y) if act == "softmax" else y


def _kernel(c):
    a, b, p = c.node.attrs, c.backend, c.packed
    x2, out = c.ins[0].reshape(c.batch, -1), c.out
    return Kernel(lambda: b.dense(x2, p, out, a.get("act")), p.variant, p)


def _export(ex, n, ins, out):
    bias = ex.bias(n)
    if ex.is_map(n.inputs[0]):          # per pixel: a 1x1 Conv on the NCHW body
        k = ex.weight(n, "kernel")
        y = ex.conv(n, ins[0], ex.conv_weight(k.reshape((1, 1) + k.shape)), bias, n.name,
                    out if n.attrs.get("act") is None else f"{n.output}__conv", unit_window=True)
        return ex.finish(n, y, n.attrs.get("act"))
    args = [ins[0], ex.init(f"{n.name}/W", ex.weight(n, "kernel"))]
    if bias is not None:
        args.append(ex.init(f"{n.name}/B", bias))
    y = ex.emit("Gemm", args, out if n.attrs.get("act") is None else f"{n.output}__gemm", n.name)
    return ex.finish(n, y, n.attrs.get("act"))


register(OpDef(
    "dense", _shape, _ref, lambda n, ins, out: math.prod(out) * ins[0][-1],
    pack=lambda b, n: b.pack_dense(n.weights["kernel"], n.weights.get("bias")),
    kernel=_kernel, lower=_lower, export=_export, moments=weighted_moments, epilogue=True, color="#2ca02c"))
