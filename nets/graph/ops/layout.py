"""Ops that move data without arithmetic: input (shape), zero_pad (pad), crop (box: the inverse),
concat (along channels), channel_gather (index: out[..., j] = x[..., index[j]]; channel slices and
shuffles), flatten and reshape (target_shape; views of their input, no copy), dropout (identity).
"""

from __future__ import annotations

import math

import numpy as np

from kernels import reference as ref
from nets.errors import ModelError
from nets.graph.ops import Kernel, Moments, OpDef, need_rank, register
from nets.graph.ops.elementwise import same_shape

register(OpDef("input", lambda n, ins: tuple(n.attrs["shape"]), color="#ffffff"))


# ----------------------------------------------------------------------------- zero_pad

def _pad_shape(node, in_shapes):
    x = in_shapes[0]
    need_rank(node, x, 3)
    t, b, l, r = node.attrs["pad"]
    return (x[0] + t + b, x[1] + l + r, x[2])


def _pad_kernel(c):
    b, x, out, pad = c.backend, c.ins[0], c.out, c.node.attrs["pad"]
    return Kernel(lambda: b.zero_pad(x, out, pad), "zero_pad")


def _pad_export(ex, n, ins, out):
    t, b, l, r = (int(p) for p in n.attrs["pad"])
    pads = ex.init(f"{n.name}/pads", np.array([0, 0, t, l, 0, 0, b, r], np.int64))
    return ex.emit("Pad", [ins[0], pads], out, n.name, mode="constant")


register(OpDef("zero_pad", _pad_shape, lambda n, xs, out: ref.zero_pad(xs[0], n.attrs["pad"]), kernel=_pad_kernel,
               export=_pad_export, keeps_sign=True, color="#98df8a"))


# ----------------------------------------------------------------------------- concat

def _concat_shape(node, in_shapes):
    x = in_shapes[0]
    if any(len(s) != len(x) or tuple(s[:-1]) != tuple(x[:-1]) for s in in_shapes):
        raise ModelError(f"layer {node.name!r} (concat): inputs disagree outside the channel axis: {in_shapes}")
    return tuple(x[:-1]) + (sum(s[-1] for s in in_shapes),)


def _concat_kernel(c):
    """Inputs the planner placed in their slice of the output are written there by their producers;
    the others are copied."""
    copies, ch = [], c.c0
    for buf, in_place in zip(c.ins, c.in_place):
        width = buf.shape[-1]
        if not in_place:
            copies.append((buf, c.out[..., ch:ch + width]))
        ch += width

    def run():
        for src, dst in copies:
            dst[...] = src
    return Kernel(run, f"concat-copy{len(copies)}" if copies else "concat-inplace")


def _concat_moments(node, ins, w, in_shapes):
    cs = [s[-1] for s in in_shapes]
    return Moments(float(np.dot([i[0] for i in ins], cs) / sum(cs)), float(np.dot([i[1] for i in ins], cs) / sum(cs)))


register(OpDef("concat", _concat_shape, lambda n, xs, out: ref.concat(xs), kernel=_concat_kernel,
               export=lambda ex, n, ins, out: ex.emit("Concat", ins, out, n.name, axis=1),
               moments=_concat_moments, slice_writer=True, color="#c5b0d5"))


# ----------------------------------------------------------------------------- flatten / reshape

def _flatten_lower(g, node):
    node.op = "reshape"
    node.attrs = {"target_shape": g.shapes[node.output]}


def _flatten_export(ex, n, ins, out):
    if not ex.is_map(n.inputs[0]):
        return ins[0]
    return ex.emit("Flatten", [ex.to_nhwc_order(n, n.inputs[0])], out, n.name, axis=1)


def _reshape_shape(node, in_shapes):
    x, target = in_shapes[0], list(node.attrs["target_shape"])
    if target.count(-1) > 1 or any(d == 0 or d < -1 for d in target):
        raise ModelError(f"layer {node.name!r} (reshape): target shape {tuple(target)} needs positive sizes "
                         "and at most one -1")
    size = math.prod(x)
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        target[target.index(-1)] = size // known if known else 0
    if math.prod(target) != size:
        raise ModelError(f"layer {node.name!r} (reshape): cannot reshape {x} to {tuple(node.attrs['target_shape'])}")
    return tuple(target)


def _view_ref(node, xs, out_shape):
    return xs[0].reshape((xs[0].shape[0],) + tuple(out_shape))


register(OpDef("flatten", lambda n, ins: (math.prod(ins[0]),), _view_ref, lower=_flatten_lower,
               export=_flatten_export, keeps_sign=True, color="#dbdb8d"))
register(OpDef("reshape", _reshape_shape, _view_ref, kernel=lambda c: Kernel(lambda: None, "view"),
               export=lambda ex, n, ins, out: ex.reshape(n, out), view=True, keeps_sign=True, color="#dbdb8d"))


# ----------------------------------------------------------------------------- dropout

register(OpDef("dropout", same_shape, lambda n, xs, out: xs[0], lower=lambda g, n: g.drop(n),
               export=lambda ex, n, ins, out: ins[0], color="#c7c7c7"))


# ----------------------------------------------------------------------------- crop

def _crop_shape(node, in_shapes):
    x = in_shapes[0]
    need_rank(node, x, 3)
    t, b, l, r = node.attrs["box"]
    if min(t, b, l, r) < 0 or t + b >= x[0] or l + r >= x[1]:
        raise ModelError(f"layer {node.name!r} (crop): cropping {node.attrs['box']} leaves nothing of the "
                         f"{x[0]}x{x[1]} input")
    return (x[0] - t - b, x[1] - l - r, x[2])


def _crop_kernel(c):
    b, x, out, box = c.backend, c.ins[0], c.out, c.node.attrs["box"]
    return Kernel(lambda: b.crop(x, out, box), "crop")


def _crop_export(ex, n, ins, out):
    t, b, l, r = (int(p) for p in n.attrs["box"])
    h, w, _ = ex.g.shapes[n.inputs[0]]
    starts = ex.init(f"{n.name}/starts", np.array([t, l], np.int64))
    ends = ex.init(f"{n.name}/ends", np.array([h - b, w - r], np.int64))
    axes = ex.init(f"{n.name}/axes", np.array([2, 3], np.int64))
    return ex.emit("Slice", [ins[0], starts, ends, axes], out, n.name)


register(OpDef("crop", _crop_shape, lambda n, xs, out: ref.crop(xs[0], n.attrs["box"]), kernel=_crop_kernel,
               export=_crop_export, keeps_sign=True, color="#98df8a"))


# ----------------------------------------------------------------------------- channel_gather

def _gather_shape(node, in_shapes):
    x, index = in_shapes[0], node.attrs["index"]
    if not index or min(index) < 0 or max(index) >= x[-1]:
        raise ModelError(f"layer {node.name!r} (channel_gather): channel indices must lie in 0..{x[-1] - 1}, "
                         f"got {len(index)} from {min(index, default=None)} to {max(index, default=None)}")
    return tuple(x[:-1]) + (len(index),)


def _gather_kernel(c):
    b, x, out = c.backend, c.ins[0], c.out
    index = c.xp.asarray(np.asarray(c.node.attrs["index"], np.int64))
    return Kernel(lambda: b.channel_gather(x, index, out), "channel_gather")


def _gather_export(ex, n, ins, out):
    index = ex.init(f"{n.name}/index", np.asarray(n.attrs["index"], np.int64))
    return ex.emit("Gather", [ins[0], index], out, n.name, axis=1)


register(OpDef("channel_gather", _gather_shape, lambda n, xs, out: ref.channel_gather(xs[0], n.attrs["index"]),
               kernel=_gather_kernel, export=_gather_export, keeps_sign=True,
               color="#c5b0d5"))
