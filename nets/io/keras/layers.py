"""Keras layers -> graph nodes: one converter per layer class (``CONVERTERS``; the op-layers Keras 3 writes
for ``keras.ops`` calls in ``OP_CONVERTERS``), what each supports (``unsupported_reason``), and
``check_supported``, which lists every unsupported layer of a model in one error.

A converter is ``fn(builder, inputs, config, name, where) -> value``; ``inputs`` are the values of the
layer's tensor arguments in order, with ``Const`` in the places Keras passed numbers.
"""

from __future__ import annotations

from nets.errors import UnsupportedError
from nets.io.keras import merge, normalization
from nets.io.keras.activations import OP_ACTIVATIONS, act_name, canonical, supported
from nets.io.keras.normalization import normalization_axis_ok
from nets.io.keras.validate import MAX_ELEMENTS, Const, as_int, as_pair, fail, input_dims

_WINDOWED = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D")
# Identity at inference (Keras runs them only in training)
IDENTITY = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout", "GaussianNoise",
            "AlphaDropout", "ActivityRegularization", "Identity", "StochasticDepth")
# Layers defined inside keras.applications rather than keras.layers: accepted from Keras' own modules only
APPLICATION_LAYERS = ("CustomScaleLayer", "LayerScale", "StochasticDepth")
# Classes that accept constant operands
ARITHMETIC = ("Add", "Multiply", "Subtract", "TrueDivide", "Divide")


# ----------------------------------------------------------------------------- converters

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
    groups = as_int(c.get("groups", 1), "groups", where)
    filters = as_int(c.get("filters"), "filters", where)
    cin = b.shape(xs[0])[-1]
    if cin % groups or filters % groups:
        fail(where, f"groups={groups} does not divide the {cin} input channels and {filters} filters")
    return b.conv2d(xs[0], filters, k, s, p, bool(c.get("use_bias", True)), act_name(c.get("activation")),
                    groups=groups, name=name)


def _depthwise(b, xs, c, name, where):
    k, s, p = _windowed(c, where)
    return b.depthwise_conv2d(xs[0], k, s, p, as_int(c.get("depth_multiplier", 1), "depth_multiplier", where),
                              bool(c.get("use_bias", True)), act_name(c.get("activation")), name=name)


def _separable(b, xs, c, name, where):
    k, s, p = _windowed(c, where)
    return b.separable_conv2d(xs[0], as_int(c.get("filters"), "filters", where), k, s, p,
                              as_int(c.get("depth_multiplier", 1), "depth_multiplier", where),
                              bool(c.get("use_bias", True)), act_name(c.get("activation")), name=name)


def _relu(b, xs, c, name, where):
    return b.relu(xs[0], c.get("max_value"), name=name)


def _pool(op):
    def convert(b, xs, c, name, where):
        k, s, p = _windowed(c, where, "pool_size")
        return getattr(b, op)(xs[0], k, s, p, name=name)
    return convert


def _global(op):
    return lambda b, xs, c, name, where: getattr(b, op)(xs[0], bool(c.get("keepdims", False)), name=name)


def _four(c, key, default, where):
    """Keras' ZeroPadding2D / Cropping2D forms: an int, (h, w), or ((top, bottom), (left, right))."""
    p = c.get(key, default)
    if isinstance(p, list) and all(isinstance(a, list) for a in p):
        p = [[as_int(a, key, where, 0) for a in q] for q in p]
        if len(p) != 2 or any(len(q) != 2 for q in p):
            fail(where, f"{key} must be ((top, bottom), (left, right)), got {c.get(key)!r}")
        return tuple(tuple(q) for q in p)
    return as_pair(p, key, where, 0)


def _zero_pad(b, xs, c, name, where):
    return b.zero_pad(xs[0], _four(c, "padding", 1, where), name=name)


def _crop(b, xs, c, name, where):
    return b.crop(xs[0], _four(c, "cropping", 0, where), name=name)


def _dense(b, xs, c, name, where):
    return b.dense(xs[0], as_int(c.get("units"), "units", where, hi=MAX_ELEMENTS), bool(c.get("use_bias", True)),
                   act_name(c.get("activation")), name=name)


def _reshape(b, xs, c, name, where):
    t = c.get("target_shape")
    if not isinstance(t, list) or not 1 <= len(t) <= 3:
        fail(where, f"target_shape must be a list of 1 to 3 sizes, got {t!r}")
    return b.reshape(xs[0], [-1 if d in (-1, None) else as_int(d, "target_shape", where, hi=MAX_ELEMENTS)
                             for d in t], name=name)


def _identity(b, xs, c, name, where):
    return b.dropout(xs[0], 0.0, name=name)


def _op_activation(act):
    def convert(b, xs, c, name, where):
        return b.activation(xs[0], canonical(act, c.get("approximate") is True), name=name)
    return convert


CONVERTERS = {
    "InputLayer": _input,
    "Conv2D": _conv, "DepthwiseConv2D": _depthwise, "SeparableConv2D": _separable,
    "BatchNormalization": normalization.batch_norm, "LayerNormalization": normalization.layer_norm,
    "Normalization": normalization.normalization, "Rescaling": normalization.rescaling,
    "LayerScale": normalization.layer_scale,
    "Activation": lambda b, xs, c, name, where: b.activation(xs[0], act_name(c.get("activation")), name=name),
    "ReLU": _relu,
    "MaxPooling2D": _pool("max_pool2d"), "AveragePooling2D": _pool("avg_pool2d"),
    "GlobalAveragePooling2D": _global("global_avg_pool"), "GlobalMaxPooling2D": _global("global_max_pool"),
    "ZeroPadding2D": _zero_pad, "Cropping2D": _crop,
    "Add": merge.add, "Multiply": merge.multiply, "Subtract": merge.subtract, "Concatenate": merge.concatenate,
    "CustomScaleLayer": merge.custom_scale,
    "Dense": _dense,
    "Flatten": lambda b, xs, c, name, where: b.flatten(xs[0], name=name),
    "Reshape": _reshape,
    "Softmax": lambda b, xs, c, name, where: b.softmax(xs[0], name=name),
    **{cls: _identity for cls in IDENTITY},
}

# op-layers: what Keras 3 writes for a keras.ops call in a functional model (module keras.src.ops.*)
OP_CONVERTERS = {
    "Add": merge.add, "Multiply": merge.multiply, "Subtract": merge.subtract,
    "TrueDivide": merge.divide, "Divide": merge.divide,
    **{cls: _op_activation(act) for cls, act in OP_ACTIVATIONS.items()},
}


# what the supported-layers table (tools/supported_table.py -> README) says beside a layer
NOTES = {
    "Conv2D": "any groups (groups == channels: depthwise); no dilation",
    "DepthwiseConv2D": "any depth_multiplier", "SeparableConv2D": "any depth_multiplier",
    "ReLU": "max_value None or 6", "Softmax": "last axis",
    "BatchNormalization": "last axis; folded into the conv / dense before it",
    "LayerNormalization": "last axis", "Normalization": "last axis or none; mean / variance in the config or "
                                                        "the weights file; invert",
    "Rescaling": "scale / offset per channel or scalar", "Dense": "on vectors and on feature maps (per pixel)",
    "Add": "equal shapes, (1, 1, C) against (H, W, C), constants",
    "Multiply": "equal shapes, (1, 1, C) against (H, W, C) (squeeze-excite), constants",
    "Subtract": "two tensors or a tensor and a constant", "Concatenate": "channel axis",
    "CustomScaleLayer": "InceptionResNetV2's", "LayerScale": "ConvNeXt's", "StochasticDepth": "identity",
    "TrueDivide": "by a constant", "Divide": "by a constant", "Gelu": "approximate or not",
}


def supported_op_layers() -> list[str]:
    """The op-layer classes importable today (activation ops once the kernels have the activation)."""
    return [c for c in OP_CONVERTERS if c not in OP_ACTIVATIONS or supported(OP_ACTIVATIONS[c])]


def is_op_layer(lay) -> bool:
    """An op-layer: its module says so (``.keras``); a full-model ``.h5`` has no module, so there a class
    that only keras.ops has (``TrueDivide``, ``Gelu``, ...) is taken for one."""
    if lay.module is None:
        return lay.cls in OP_CONVERTERS and lay.cls not in CONVERTERS
    return isinstance(lay.module, str) and lay.module.startswith("keras.src.ops")


def converter(lay):
    return (OP_CONVERTERS if is_op_layer(lay) else CONVERTERS).get(lay.cls)


# ----------------------------------------------------------------------------- what is supported

def _activation_reason(c, cls, softmax) -> str | None:
    act = act_name(c.get("activation"))
    if not supported(act, softmax):
        return f"activation={act!r}"
    return None


def _shape_reason(lay) -> str | None:
    """Checks that need the input shapes Keras 3 writes into a config (skipped when absent)."""
    shapes, c, cls = lay.in_shapes, lay.cfg, lay.cls
    if not shapes or any(s is None for s in shapes):
        return None
    if cls in ("Add", "Multiply", "Subtract") and len(shapes) > 1:
        return merge.broadcast_problem(shapes)
    if cls in ("LayerNormalization", "Normalization", "BatchNormalization"):
        axis = c.get("axis", -1)
        if cls == "LayerNormalization" and (axis is None or axis == []):
            return "axis=None (only the last axis)"
        if not normalization_axis_ok(axis, len(shapes[0]) + 1):
            return f"axis={axis!r} for inputs of rank {len(shapes[0]) + 1} (only the last axis)"
    return None


def unsupported_reason(lay) -> str | None:
    """Why ``lay`` cannot be imported, or None. Only options that change the result are checked."""
    c, cls = lay.cfg, lay.cls
    if lay.calls > 1:
        return f"a shared layer (called {lay.calls} times)"
    if converter(lay) is None:
        return f"keras.ops op-layer {cls!r} not supported" if is_op_layer(lay) else "layer type not supported"
    if cls in APPLICATION_LAYERS and isinstance(lay.module, str) and not lay.module.startswith("keras"):
        return f"a custom layer from module {lay.module!r} (only the one keras.applications defines)"
    if any(isinstance(a, Const) for a in lay.args) and cls not in ARITHMETIC:
        return "constant operands"
    if cls in ("TrueDivide", "Divide") and not (len(lay.args) == 2 and isinstance(lay.args[1], Const)
                                                 and not isinstance(lay.args[0], Const)):
        what = "a constant divided by a tensor" if lay.args and isinstance(lay.args[0], Const) else "tensor / tensor"
        return f"{what} (only a tensor divided by a constant)"
    if c.get("data_format") not in (None, "channels_last"):
        return f"data_format={c.get('data_format')!r} (only channels_last)"
    if cls in _WINDOWED and c.get("padding", "valid") not in ("valid", "same"):
        return f"padding={c.get('padding')!r}"
    if cls in _WINDOWED[:3]:
        if c.get("dilation_rate", 1) not in (1, [1, 1], (1, 1)):
            return f"dilation_rate={c.get('dilation_rate')!r}"
        if cls != "Conv2D" and c.get("groups", 1) != 1:
            return f"groups={c.get('groups')!r}"
        return _activation_reason(c, cls, False)
    if cls in ("Dense", "Activation"):
        return _activation_reason(c, cls, True)
    if is_op_layer(lay) and cls in OP_ACTIVATIONS:
        act = canonical(OP_ACTIVATIONS[cls], c.get("approximate") is True)
        return None if supported(act) else f"activation {act!r}"
    if cls == "ReLU":
        if c.get("max_value") not in (None, 6, 6.0):
            return f"max_value={c.get('max_value')!r} (only None or 6)"
        if c.get("negative_slope", 0) not in (0, 0.0) or c.get("threshold", 0) not in (0, 0.0):
            return "negative_slope/threshold (leaky or thresholded ReLU)"
    if cls == "Softmax" and c.get("axis", -1) not in (-1, [-1]):
        return f"axis={c.get('axis')!r} (only -1)"
    if cls == "LayerNormalization" and c.get("rms_scaling"):
        return "rms_scaling=True"
    return _shape_reason(lay)


def check_supported(layers, source):
    bad = [(lay.name, lay.cls, why) for lay in layers if (why := unsupported_reason(lay))]
    if bad:
        lines = "; ".join(f"{n!r} ({c}): {w}" for n, c, w in bad)
        raise UnsupportedError(f"{source}: {len(bad)} unsupported layer(s): {lines}")
