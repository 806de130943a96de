"""Keras layers that combine tensors: Add, Multiply, Subtract, Concatenate, InceptionResNetV2's
CustomScaleLayer, and the arithmetic op-layers of Keras 3 (``x + 3.0``, ``x * (1 / 6)``, ``x / 2``),
whose operands may be constants (``Const``).

A second operand may be a full tensor of the first's shape or one value per channel ((1, 1, C), as
squeeze-excite blocks multiply by); a constant operand becomes a constant per-channel affine map
(``normalization.constant_affine``), which the passes fold into the convolution before it.
"""

from __future__ import annotations

import math

from nets.errors import UnsupportedError
from nets.io.keras.normalization import channel_axis, constant_affine
from nets.io.keras.validate import Const, as_num, fail, per_channel


def broadcast_problem(shapes) -> str | None:
    """Why two or more operand shapes (per sample) cannot be combined, or None. Each must equal the
    largest, or be (1, 1, C) against a (H, W, C) map."""
    full = max(shapes, key=lambda s: (len(s), math.prod(s)))
    for s in shapes:
        s = tuple(s)
        if s != tuple(full) and not (len(full) == 3 and s == (1, 1, full[-1])):
            return f"operand shapes {[tuple(t) for t in shapes]} (only equal shapes, or (1, 1, C) against (H, W, C))"
    return None


def _split(xs, where):
    tensors = [x for x in xs if not isinstance(x, Const)]
    if not tensors:
        fail(where, "no tensor operand")
    return tensors, [x for x in xs if isinstance(x, Const)]


def _combine(b, op, tensors, name, where):
    """Fold ``op`` ("add" or "mul") over tensors, the full-shape one first; the last node is ``name``."""
    why = broadcast_problem([b.shape(t) for t in tensors])
    if why:
        raise UnsupportedError(f"{where}: {why}")
    full = max((b.shape(t) for t in tensors), key=lambda s: (len(s), math.prod(s)))
    tensors = sorted(tensors, key=lambda t: b.shape(t) != full)     # the graph ops broadcast the second
    acc = tensors[0]
    for k, x in enumerate(tensors[1:], 1):
        step = name if k == len(tensors) - 1 else f"{name}/partial{k}"
        acc = getattr(b, op)([acc, x], name=step)
    return acc


def _with_constants(b, acc, consts, name, where, fn):
    """Apply each constant operand with ``fn(values) -> (scale, shift)``; the last step is ``name``."""
    ch = b.shape(acc)[-1]
    for k, c in enumerate(consts):
        scale, shift = fn(per_channel(c.value, ch, "constant operand", where))
        acc = constant_affine(b, acc, scale, shift, name if k == len(consts) - 1 else f"{name}/const{k}", "operand")
    return acc


def add(b, xs, c, name, where):
    tensors, consts = _split(xs, where)
    if len(tensors) == 1 and not consts:
        fail(where, "Add needs at least 2 operands, got 1")
    acc = _combine(b, "add", tensors, name if not consts else f"{name}/sum", where) if len(tensors) > 1 else tensors[0]
    return _with_constants(b, acc, consts, name, where, lambda v: (1.0, v))


def multiply(b, xs, c, name, where):
    tensors, consts = _split(xs, where)
    if len(tensors) == 1 and not consts:
        fail(where, "Multiply needs at least 2 operands, got 1")
    acc = _combine(b, "mul", tensors, name if not consts else f"{name}/product", where) if len(tensors) > 1 \
        else tensors[0]
    return _with_constants(b, acc, consts, name, where, lambda v: (v, 0.0))


def subtract(b, xs, c, name, where):
    if len(xs) != 2:
        fail(where, f"Subtract needs 2 operands, got {len(xs)}")
    a, s = xs
    if isinstance(a, Const) and isinstance(s, Const):
        fail(where, "no tensor operand")
    if isinstance(s, Const):
        return _with_constants(b, a, [s], name, where, lambda v: (1.0, -v))
    if isinstance(a, Const):
        return _with_constants(b, s, [a], name, where, lambda v: (-1.0, v))
    neg = constant_affine(b, s, -1.0, 0.0, f"{name}/negated", "operand")
    return _combine(b, "add", [a, neg], name, where)


def divide(b, xs, c, name, where):
    if len(xs) != 2 or not isinstance(xs[1], Const) or isinstance(xs[0], Const):
        raise UnsupportedError(f"{where}: only a tensor divided by a constant is supported")

    def inverse(v):
        if (v == 0).any():
            fail(where, "division by zero")
        return 1.0 / v, 0.0
    return _with_constants(b, xs[0], [xs[1]], name, where, inverse)


def concatenate(b, xs, c, name, where):
    channel_axis(b, xs[0], c.get("axis", -1), where)
    return b.concat(xs, -1, name=name)


def custom_scale(b, xs, c, name, where):
    """InceptionResNetV2's CustomScaleLayer: inputs[0] + inputs[1] * scale."""
    if len(xs) != 2:
        fail(where, f"CustomScaleLayer needs 2 inputs, got {len(xs)}")
    scaled = constant_affine(b, xs[1], as_num(c.get("scale"), "scale", where), 0.0, f"{name}/scaled", "operand")
    return _combine(b, "add", [xs[0], scaled], name, where)
