"""Keras layers -> graph nodes: one converter per layer class (``CONVERTERS``), what each supports
(``unsupported_reason``), and the validators that bound every configured size before anything is
allocated."""

from __future__ import annotations

import numpy as np

from kernels import ACTIVATIONS
from nets.errors import ModelError, UnsupportedError

MAX_DIM = 1 << 16              # any configured size: H, W, C, filters, units, kernel side
MAX_ELEMENTS = 1 << 28         # one activation per sample, or one weight array (1 GiB of float32)
MAX_PARAMS = 1 << 31

_CONV_ACTS = tuple(a for a in ACTIVATIONS if a) + ("linear",)
_LAYER_ACTS = _CONV_ACTS + ("softmax",)
_WINDOWED = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D")

# ----------------------------------------------------------------------------- small validators

def fail(where, msg):
    raise ModelError(f"{where}: {msg}")


def as_int(v, what, where, lo=1, hi=MAX_DIM) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        fail(where, f"{what} must be an integer, got {v!r}")
    if not lo <= v <= hi:
        fail(where, f"{what} = {v} is outside {lo}..{hi}")
    return v


def as_pair(v, what, where, lo=1):
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            fail(where, f"{what} must be an int or a pair, got {v!r}")
        return tuple(as_int(a, what, where, lo) for a in v)
    a = as_int(v, what, where, lo)
    return (a, a)


def as_num(v, what, where) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        fail(where, f"{what} must be a finite number, got {v!r}")
    return float(v)


def act_name(v):
    if v is None:
        return "linear"
    if isinstance(v, dict):       # {"module": "keras.activations", "class_name": "function", "config": "relu"}
        inner = v.get("config")
        return inner if isinstance(inner, str) else str(v.get("class_name", "")).lower()
    return v if isinstance(v, str) else repr(v)


def input_dims(v, where) -> list:
    if not isinstance(v, (list, tuple)) or not 2 <= len(v) <= 4:
        fail(where, f"input shape must be a list (batch, ...) of rank 2 to 4, got {v!r}")
    return list(v[1:])


# ----------------------------------------------------------------------------- what is supported

def unsupported_reason(lay) -> str | None:
    """Why ``lay`` cannot be imported, or None. Only options that change the result are checked."""
    c, cls = lay.cfg, lay.cls
    if cls not in CONVERTERS:
        return "layer type not supported"
    if lay.calls > 1:
        return f"a shared layer (called {lay.calls} times)"
    if c.get("data_format") not in (None, "channels_last"):
        return f"data_format={c.get('data_format')!r} (only channels_last)"
    if cls in _WINDOWED and c.get("padding", "valid") not in ("valid", "same"):
        return f"padding={c.get('padding')!r}"
    if cls in _WINDOWED[:3]:
        if c.get("dilation_rate", 1) not in (1, [1, 1], (1, 1)):
            return f"dilation_rate={c.get('dilation_rate')!r}"
        if c.get("groups", 1) != 1:
            return f"groups={c.get('groups')!r}"
    if cls in _WINDOWED[:3] and act_name(c.get("activation")) not in _CONV_ACTS:
        return f"activation={act_name(c.get('activation'))!r}"
    if cls in ("Dense", "Activation") and act_name(c.get("activation")) not in _LAYER_ACTS:
        return f"activation={act_name(c.get('activation'))!r}"
    if cls == "ReLU":
        if c.get("max_value") not in (None, 6, 6.0):
            return f"max_value={c.get('max_value')!r} (only None or 6)"
        if c.get("negative_slope", 0) not in (0, 0.0) or c.get("threshold", 0) not in (0, 0.0):
            return "negative_slope/threshold (leaky or thresholded ReLU)"
    if cls == "Softmax" and c.get("axis", -1) not in (-1, [-1]):
        return f"axis={c.get('axis')!r} (only -1)"
    return None


def check_supported(layers, source):
    bad = [(lay.name, lay.cls, why) for lay in layers if (why := unsupported_reason(lay))]
    if bad:
        lines = "; ".join(f"{n!r} ({c}): {w}" for n, c, w in bad)
        raise UnsupportedError(f"{source}: {len(bad)} unsupported layer(s): {lines}")


# ----------------------------------------------------------------------------- layers -> graph

def _input(b, xs, c, name, where):
    shape = input_dims(c.get("batch_shape") or c.get("batch_input_shape"), where)
    if any(d is None for d in shape):
        fail(where, f"input shape {tuple(shape)} has unknown dimensions; pass input_shape=(H, W, C)")
    return b.input(tuple(as_int(d, "input dimension", where) for d in shape), name=name)


def _windowed(c, where, size_key="kernel_size"):
    k = as_pair(c.get(size_key), size_key, where)
    s = c.get("strides")
    return k, (k if s is None else as_pair(s, "strides", where)), c.get("padding", "valid")


def _conv(b, xs, c, name, where):
    k, s, p = _windowed(c, where)
    return b.conv2d(xs[0], as_int(c.get("filters"), "filters", where), k, s, p, bool(c.get("use_bias", True)),
                    act_name(c.get("activation")), name=name)


def _depthwise(b, xs, c, name, where):
    k, s, p = _windowed(c, where)
    return b.depthwise_conv2d(xs[0], k, s, p, as_int(c.get("depth_multiplier", 1), "depth_multiplier", where),
                              bool(c.get("use_bias", True)), act_name(c.get("activation")), name=name)


def _separable(b, xs, c, name, where):
    k, s, p = _windowed(c, where)
    return b.separable_conv2d(xs[0], as_int(c.get("filters"), "filters", where), k, s, p,
                              as_int(c.get("depth_multiplier", 1), "depth_multiplier", where),
                              bool(c.get("use_bias", True)), act_name(c.get("activation")), name=name)


def _channel_axis(b, x, axis, where):
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if axis not in (-1, len(b.shape(x))):
        raise UnsupportedError(f"{where}: axis={axis!r} for an input of shape {b.shape(x)} (only the last axis)")


def _batch_norm(b, xs, c, name, where):
    _channel_axis(b, xs[0], c.get("axis", -1), where)
    eps = as_num(c.get("epsilon", 1e-3), "epsilon", where)
    return b.batch_norm(xs[0], eps, bool(c.get("center", True)), bool(c.get("scale", True)), name=name)


def _rescaling(b, xs, c, name, where):
    ch = b.shape(xs[0])[-1]
    consts = {}
    for key, default in (("scale", 1.0), ("offset", 0.0)):
        v = c.get(key, default)
        vals = v if isinstance(v, list) else [v]
        arr = np.array([as_num(a, key, where) for a in vals], np.float64)
        if arr.size not in (1, ch):
            fail(where, f"{key} has {arr.size} values for {ch} channels")
        consts[key] = np.broadcast_to(arr, (ch,)).astype(np.float32)
    v = b.batch_norm(xs[0], 0.0, True, True, name=name)
    node = b.nodes[-1]   # constants, not weights: no file holds them
    node.weight_shapes = {}
    node.weights = {"gamma": consts["scale"], "beta": consts["offset"],
                    "moving_mean": np.zeros(ch, np.float32), "moving_variance": np.ones(ch, np.float32)}
    node.attrs["rescaling"] = True
    return v


def _relu(b, xs, c, name, where):
    return b.relu(xs[0], c.get("max_value"), name=name)


def _pool(op):
    def convert(b, xs, c, name, where):
        k, s, p = _windowed(c, where, "pool_size")
        return getattr(b, op)(xs[0], k, s, p, name=name)
    return convert


def _global(op):
    return lambda b, xs, c, name, where: getattr(b, op)(xs[0], bool(c.get("keepdims", False)), name=name)


def _zero_pad(b, xs, c, name, where):
    p = c.get("padding", 1)
    if isinstance(p, list) and all(isinstance(a, list) for a in p):
        p = [[as_int(a, "padding", where, 0) for a in q] for q in p]
        if len(p) != 2 or any(len(q) != 2 for q in p):
            fail(where, f"padding must be ((top, bottom), (left, right)), got {c.get('padding')!r}")
        return b.zero_pad(xs[0], tuple(tuple(q) for q in p), name=name)
    return b.zero_pad(xs[0], as_pair(p, "padding", where, 0), name=name)


def _add(b, xs, c, name, where):
    if len(xs) < 2:
        fail(where, f"Add needs at least 2 inputs, got {len(xs)}")
    acc = xs[0]
    for k, x in enumerate(xs[1:], 1):
        acc = b.add([acc, x], name=name if k == len(xs) - 1 else f"{name}/partial{k}")
    return acc


def _concat(b, xs, c, name, where):
    _channel_axis(b, xs[0], c.get("axis", -1), where)
    return b.concat(xs, -1, name=name)


def _dense(b, xs, c, name, where):
    return b.dense(xs[0], as_int(c.get("units"), "units", where, hi=MAX_ELEMENTS), bool(c.get("use_bias", True)),
                   act_name(c.get("activation")), name=name)


def _reshape(b, xs, c, name, where):
    t = c.get("target_shape")
    if not isinstance(t, list) or not 1 <= len(t) <= 3:
        fail(where, f"target_shape must be a list of 1 to 3 sizes, got {t!r}")
    return b.reshape(xs[0], [-1 if d in (-1, None) else as_int(d, "target_shape", where, hi=MAX_ELEMENTS)
                             for d in t], name=name)


CONVERTERS = {
    "InputLayer": _input,
    "Conv2D": _conv, "DepthwiseConv2D": _depthwise, "SeparableConv2D": _separable,
    "BatchNormalization": _batch_norm,
    "Activation": lambda b, xs, c, name, where: b.activation(xs[0], act_name(c.get("activation")), name=name),
    "ReLU": _relu,
    "MaxPooling2D": _pool("max_pool2d"), "AveragePooling2D": _pool("avg_pool2d"),
    "GlobalAveragePooling2D": _global("global_avg_pool"), "GlobalMaxPooling2D": _global("global_max_pool"),
    "ZeroPadding2D": _zero_pad,
    "Add": _add, "Concatenate": _concat,
    "Dense": _dense,
    "Flatten": lambda b, xs, c, name, where: b.flatten(xs[0], name=name),
    "Reshape": _reshape,
    "Dropout": lambda b, xs, c, name, where: b.dropout(xs[0], 0.0, name=name),
    "SpatialDropout2D": lambda b, xs, c, name, where: b.dropout(xs[0], 0.0, name=name),
    "Softmax": lambda b, xs, c, name, where: b.softmax(xs[0], name=name),
    "Rescaling": _rescaling,
}
