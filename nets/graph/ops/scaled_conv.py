"""scaled_conv2d (made by ``passes.fuse_channel_scale``): a 1x1 stride-1 convolution of a map scaled per
sample and channel, conv1x1(x * s): squeeze-excite's ``mul`` folded into the projection that reads it.

Inputs ``[x, scale]`` (+ the residual, named by ``residual``); ``scale`` is one value per channel per
sample ((1, 1, C) or (C,)). Attributes and weights are the conv2d's (filters, kernel_size (1, 1),
strides (1, 1), pad 0, use_bias, act, [residual]). Backends with ``scaled_conv2d`` (kernels.cpu: it
scales the weights, not the map) run it as one kernel; others run mul into a buffer, then conv2d.
"""

from __future__ import annotations

from kernels import reference as ref
from nets.errors import ModelError
from nets.graph.ops import Kernel, OpDef, register
from nets.graph.ops.conv import weighted_moments


def _shape(node, in_shapes):
    x, s = tuple(in_shapes[0]), tuple(in_shapes[1])
    if s not in ((1, 1, x[-1]), (x[-1],)):
        raise ModelError(f"layer {node.name!r} (scaled_conv2d): scale of shape {s} is not one value per channel "
                         f"of the {x} input")
    out = (x[0], x[1], node.attrs["filters"])
    if node.attrs.get("residual") is not None and tuple(in_shapes[2]) != out:
        raise ModelError(f"layer {node.name!r}: residual of shape {in_shapes[2]} does not match output {out}")
    return out


def _reference(node, xs, out_shape):
    a, w = node.attrs, node.weights
    x = ref.mul(xs[0], xs[1].reshape(len(xs[1]), -1))
    res = xs[2] if a.get("residual") is not None else None
    return ref.conv2d(x, w["kernel"], w.get("bias"), (1, 1), (0, 0, 0, 0), a.get("act"), res)


def _kernel(c):
    a, b, p, x, out, c0 = c.node.attrs, c.backend, c.packed, c.ins[0], c.out, c.c0
    s = c.ins[1].reshape(c.batch, -1)
    res = c.ins[2] if a.get("residual") is not None else None
    act = a.get("act")
    if hasattr(b, "scaled_conv2d"):
        return Kernel(lambda: b.scaled_conv2d(x, s, p, out, act, res, c0), p.variant, p)
    scaled = c.xp.empty(x.shape, c.xp.float32)

    def run():
        b.mul(x, s, scaled)
        b.conv2d(scaled, p, out, (1, 1), (0, 0, 0, 0), act, res, c0)
    return Kernel(run, f"mul+{getattr(p, 'variant', 'conv2d')}", p)


register(OpDef(
    "scaled_conv2d", _shape, _reference, lambda n, ins, out: out[0] * out[1] * out[2] * ins[0][2],
    pack=lambda b, n: b.pack_conv2d(n.weights["kernel"], n.weights.get("bias")),
    kernel=_kernel, moments=weighted_moments, slice_writer=True, color="#1f77b4"))
