"""Keras layers that scale and shift channels: BatchNormalization, Rescaling, Normalization,
LayerNormalization, ConvNeXt's LayerScale, and the constant affine maps of op-layers (``x * 0.5``).

Every per-channel affine becomes a ``batch_norm`` node, which the passes fold into the convolution
before it or turn into a ``channel_affine``. Constants that no weights file holds (Rescaling, a
Normalization whose mean and variance are in the config, ``x + 3.0``) are set on the node at import
with ``weight_shapes`` empty; layers whose values are in the weights file (a Normalization adapted to
data: mean, variance, count; LayerScale: gamma) keep their Keras arrays as weights and get the rest of
their batch_norm parameters from ``finish_weights`` once the file has been read.
"""

from __future__ import annotations

import numpy as np

from nets.errors import UnsupportedError
from nets.io.keras.validate import as_num, fail, per_channel

KERAS_EPSILON = 1e-7           # keras.backend.epsilon(): Normalization divides by max(sqrt(var), this)


def channel_axis(b, x, axis, where):
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if axis not in (-1, len(b.shape(x))):
        raise UnsupportedError(f"{where}: axis={axis!r} for an input of shape {b.shape(x)} (only the last axis)")


def constant_affine(b, x, scale, shift, name, kind):
    """A batch_norm node computing ``x * scale + shift`` per channel with constants (no weights)."""
    ch = b.shape(x)[-1]
    v = b.batch_norm(x, 0.0, True, True, name=name)
    node = b.nodes[-1]
    node.weight_shapes = {}
    node.weights = {"gamma": np.broadcast_to(np.asarray(scale, np.float64), (ch,)).astype(np.float32),
                    "beta": np.broadcast_to(np.asarray(shift, np.float64), (ch,)).astype(np.float32),
                    "moving_mean": np.zeros(ch, np.float32), "moving_variance": np.ones(ch, np.float32)}
    node.attrs["constant"] = kind
    return v


def batch_norm(b, xs, c, name, where):
    channel_axis(b, xs[0], c.get("axis", -1), where)
    eps = as_num(c.get("epsilon", 1e-3), "epsilon", where)
    return b.batch_norm(xs[0], eps, bool(c.get("center", True)), bool(c.get("scale", True)), name=name)


def rescaling(b, xs, c, name, where):
    ch = b.shape(xs[0])[-1]
    scale = per_channel(c.get("scale", 1.0), ch, "scale", where)
    offset = per_channel(c.get("offset", 0.0), ch, "offset", where)
    v = constant_affine(b, xs[0], scale, offset, name, "rescaling")
    b.nodes[-1].attrs["rescaling"] = True
    return v


def _normalization_affine(mean, variance, invert):
    """Keras: (x - mean) / max(sqrt(var), eps), or with invert mean + x * max(sqrt(var), eps)."""
    std = np.maximum(np.sqrt(np.maximum(variance, 0.0)), KERAS_EPSILON)
    return (std, mean) if invert else (1.0 / std, -mean / std)


def normalization_axis_ok(axis, rank) -> bool:
    """Normalization keeps statistics per index of ``axis``: only the channel axis (or none) is supported."""
    if axis is None or axis == []:
        return True
    axis = axis if isinstance(axis, list) else [axis]
    return len(axis) == 1 and axis[0] in (-1,) + ((rank - 1,) if rank else ())


def normalization(b, xs, c, name, where):
    x = xs[0]
    ch = b.shape(x)[-1]
    axis = c.get("axis", -1)
    if not normalization_axis_ok(axis, len(b.shape(x)) + 1):
        raise UnsupportedError(f"{where}: axis={axis!r} for an input of shape {b.shape(x)} (only the last axis)")
    invert = bool(c.get("invert", False))
    mean, var = c.get("mean"), c.get("variance")
    if (mean is None) != (var is None):
        fail(where, "a Normalization needs both mean and variance, or neither")
    if mean is not None:
        scale, shift = _normalization_affine(per_channel(mean, ch, "mean", where),
                                             per_channel(var, ch, "variance", where), invert)
        return constant_affine(b, x, scale, shift, name, "normalization")
    v = b.batch_norm(x, 0.0, True, True, name=name)      # statistics adapted to data: in the weights file
    node = b.nodes[-1]
    stats = () if axis is None or axis == [] else (ch,)
    node.weight_shapes = {"mean": stats, "variance": stats, "count": ()}
    node.attrs.update(constant="normalization", invert=invert)
    return v


def layer_norm(b, xs, c, name, where):
    x = xs[0]
    axis = c.get("axis", -1)
    if not normalization_axis_ok(axis, len(b.shape(x)) + 1) or axis is None or axis == []:
        raise UnsupportedError(f"{where}: axis={axis!r} for an input of shape {b.shape(x)} (only the last axis)")
    eps = as_num(c.get("epsilon", 1e-3), "epsilon", where)
    return b.layer_norm(x, eps, bool(c.get("center", True)), bool(c.get("scale", True)), name=name)


def layer_scale(b, xs, c, name, where):
    """ConvNeXt's LayerScale: x * gamma, gamma one value per channel (its only weight)."""
    v = b.batch_norm(xs[0], 0.0, False, True, name=name)
    node = b.nodes[-1]
    node.weight_shapes = {"gamma": (b.shape(xs[0])[-1],)}
    node.attrs["constant"] = "layer_scale"
    return v


def finish_weights(graph, source="weights"):
    """Complete the batch_norm parameters of Normalization and LayerScale nodes from the arrays the
    weights file gave them (call once after loading)."""
    for node in graph.nodes:
        kind, w = node.attrs.get("constant"), node.weights
        if node.op != "batch_norm" or kind not in ("normalization", "layer_scale") or not node.weight_shapes:
            continue
        ch = graph.shapes[node.output][-1]
        if kind == "normalization":
            mean = np.broadcast_to(np.asarray(w["mean"], np.float64), (ch,))
            var = np.broadcast_to(np.asarray(w["variance"], np.float64), (ch,))
            if not (np.isfinite(mean).all() and np.isfinite(var).all()):
                fail(f"{source}: layer {node.name!r}", "Normalization mean or variance holds NaN or infinite values")
            scale, shift = _normalization_affine(mean, var, node.attrs.get("invert", False))
            w["gamma"], w["beta"] = scale.astype(np.float32), shift.astype(np.float32)
        w["moving_mean"] = np.zeros(ch, np.float32)
        w["moving_variance"] = np.ones(ch, np.float32)
    return graph
