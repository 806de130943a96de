"""Whole Keras models as graphs, without knowing the architecture in advance.

    load_keras_model(path, input_shape=None) -> Graph (weights loaded)
    graph_from_keras_config(config, source="config", input_shape=None) -> Graph (no weights)

Inputs: a Keras 3 ``.keras`` archive (zip: ``config.json`` + ``model.weights.h5``) or a legacy
full-model ``.h5`` (root attribute ``model_config`` + a ``model_weights`` group), written by Keras 2
or 3. The format is found from the file's bytes (``nets.formats``).

The config is a Functional or Sequential model. Functional layers name their inputs in
``inbound_nodes``, in two dialects: Keras 2 lists ``[layer, node_index, tensor_index, kwargs]``,
Keras 3 lists ``{"args": [...], "kwargs": {...}}`` whose args hold ``__keras_tensor__`` records with a
``keras_history`` of ``[layer, node_index, tensor_index]``. Layers map one to one onto graph nodes of
the same name (see ``_CONVERT``); an Add of n > 2 inputs becomes a chain of two-input adds, and a
Rescaling layer becomes a batch_norm node with constant statistics (mean 0, variance 1, epsilon 0,
gamma = scale, beta = offset), which the passes turn into a channel_affine like any other lone BN.
Before anything is built, every layer is checked, and all unsupported layers and options are reported
together in one UnsupportedError. Dimensions are bounded before any array is allocated.

Weights: a full-model ``.h5`` goes through ``nets.weights.load_h5_weights``. Keras 3 stores a layer's
arrays at ``layers/<snake_case class name>[_N]/vars/0, 1, ...``, the suffix counting the layers of that
class in ``model.layers`` order (``_layer_checkpoint_dependencies`` instead of ``layers`` in files from
tf.keras 2.13+); recent Keras also tags each ``vars`` group with the layer's name, which is preferred
when present. The arrays come in the order of our ``weight_shapes``. Shapes are checked before reading.
"""

from __future__ import annotations

import io
import os
import zipfile

import numpy as np

from nets.errors import KernelnetsError, ModelError, UnsupportedError
from nets.formats import detect_format, load_keras3_weights, read_h5_model_config, read_keras_archive
from nets.ir import Graph, GraphBuilder
from nets.weights import h5py_module

MAX_DIM = 1 << 16              # any configured size: H, W, C, filters, units, kernel side
MAX_ELEMENTS = 1 << 28         # one activation per sample, or one weight array (1 GiB of float32)
MAX_PARAMS = 1 << 31

_CONV_ACTS = ("relu", "relu6", "linear")
_LAYER_ACTS = ("relu", "relu6", "linear", "softmax")
_WINDOWED = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D", "AveragePooling2D")


class _Layer:
    def __init__(self, name, cls, cfg, inputs, calls=1):
        self.name, self.cls, self.cfg, self.inputs, self.calls = name, cls, cfg, inputs, calls


# ----------------------------------------------------------------------------- small validators

def _fail(where, msg):
    raise ModelError(f"{where}: {msg}")


def _int(v, what, where, lo=1, hi=MAX_DIM) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        _fail(where, f"{what} must be an integer, got {v!r}")
    if not lo <= v <= hi:
        _fail(where, f"{what} = {v} is outside {lo}..{hi}")
    return v


def _pair(v, what, where, lo=1):
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            _fail(where, f"{what} must be an int or a pair, got {v!r}")
        return tuple(_int(a, what, where, lo) for a in v)
    a = _int(v, what, where, lo)
    return (a, a)


def _num(v, what, where) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        _fail(where, f"{what} must be a finite number, got {v!r}")
    return float(v)


def _act_name(v):
    if v is None:
        return "linear"
    if isinstance(v, dict):       # {"module": "keras.activations", "class_name": "function", "config": "relu"}
        inner = v.get("config")
        return inner if isinstance(inner, str) else str(v.get("class_name", "")).lower()
    return v if isinstance(v, str) else repr(v)


def _shape(v, where) -> list:
    if not isinstance(v, (list, tuple)) or not 2 <= len(v) <= 4:
        _fail(where, f"input shape must be a list (batch, ...) of rank 2 to 4, got {v!r}")
    return list(v[1:])


# ----------------------------------------------------------------------------- config -> layers

def _keras3_refs(obj, out, depth=0):
    if depth > 32:
        raise ModelError("inbound tensors nested too deeply")
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            out.append(obj["config"]["keras_history"])
        return out
    if isinstance(obj, (list, tuple)):
        for item in obj:
            _keras3_refs(item, out, depth + 1)
    return out


def _ref_name(ref, where) -> str:
    if not isinstance(ref, (list, tuple)) or len(ref) < 3 or not isinstance(ref[0], str):
        _fail(where, f"malformed tensor reference {ref!r}")
    if ref[1] != 0:
        raise UnsupportedError(f"{where}: layer {ref[0]!r} is a shared layer (its call {ref[1]} is used); "
                               "only layers called once are supported")
    if ref[2] != 0:
        raise UnsupportedError(f"{where}: reads output {ref[2]} of layer {ref[0]!r}; only single-output "
                               "layers are supported")
    return ref[0]


def _inbound(entry, where) -> tuple[list[str], int]:
    nodes = entry.get("inbound_nodes", [])
    if not isinstance(nodes, list):
        _fail(where, f"'inbound_nodes' must be a list, got {type(nodes).__name__}")
    if not nodes:
        return [], 0
    node = nodes[0]
    refs = _keras3_refs(node.get("args", []), []) if isinstance(node, dict) else node
    if not isinstance(refs, list):
        _fail(where, f"malformed inbound node {node!r}")
    return [_ref_name(r, where) for r in refs], len(nodes)


def _io_refs(v, what, where) -> list[str]:
    if isinstance(v, list) and v and isinstance(v[0], str):
        v = [v]            # Keras 3 writes a single input or output as one [name, 0, 0] triple
    if not isinstance(v, list) or not v:
        _fail(where, f"'{what}' must list the model's {what.split('_')[0]}s, got {v!r}")
    return [_ref_name(r, where) for r in v]


def _parse(config, source, input_shape):
    if not isinstance(config, dict):
        _fail(source, f"the model config must be a JSON object, got {type(config).__name__}")
    kind, body = config.get("class_name"), config.get("config")
    if kind == "Sequential" and isinstance(body, list):
        body = {"layers": body}
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        _fail(source, f"not a Keras model config (class_name {kind!r} without a 'layers' list)")
    entries = body["layers"]
    if len(entries) > 100_000:
        _fail(source, f"{len(entries)} layers is more than any real model has")
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("config"), dict):
            _fail(source, f"malformed layer entry {str(e)[:80]}")
    name = str(body.get("name", "keras_model"))
    if kind == "Sequential":
        layers, outputs = _sequential(entries, body, config, source)
    elif kind in ("Functional", "Model"):
        layers = []
        for e in entries:
            lname = e.get("name", e["config"].get("name"))
            where = f"{source}: layer {lname!r}"
            if not isinstance(lname, str):
                _fail(source, f"a layer has no name: {str(e)[:80]}")
            inputs, calls = _inbound(e, where)
            layers.append(_Layer(lname, str(e.get("class_name")), e["config"], inputs, calls))
        ins = _io_refs(body.get("input_layers"), "input_layers", source)
        outputs = _io_refs(body.get("output_layers"), "output_layers", source)
        if len(ins) != 1:
            raise UnsupportedError(f"{source}: models with {len(ins)} inputs are not supported (only 1)")
    else:
        raise UnsupportedError(f"{source}: model class {kind!r} is not supported (only Functional and "
                               "Sequential models built from standard layers)")
    if input_shape is not None:
        for lay in layers:
            if lay.cls == "InputLayer":
                lay.cfg = dict(lay.cfg, batch_shape=[None] + list(input_shape))
    return name, layers, outputs


def _sequential(entries, body, config, source):
    layers, prev = [], None
    first = entries[0]["config"] if entries else {}
    if not entries or entries[0].get("class_name") != "InputLayer":
        shape = (first.get("batch_shape") or first.get("batch_input_shape") or body.get("build_input_shape")
                 or (config.get("build_config") or {}).get("input_shape"))
        if shape is None:
            _fail(source, "a Sequential model without an input shape (build it or give an InputLayer)")
        layers.append(_Layer("input_layer", "InputLayer", {"batch_shape": shape}, []))
        prev = "input_layer"
    for e in entries:
        lname = e["config"].get("name")
        if not isinstance(lname, str):
            _fail(source, f"a layer has no name: {str(e)[:80]}")
        layers.append(_Layer(lname, str(e.get("class_name")), e["config"], [prev] if prev else []))
        prev = lname
    return layers, [prev]


# ----------------------------------------------------------------------------- what is supported

def _unsupported(lay: _Layer) -> str | None:
    """Why ``lay`` cannot be imported, or None. Only options that change the result are checked."""
    c, cls = lay.cfg, lay.cls
    if cls not in _CONVERT:
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
    if cls in _WINDOWED[:3] and _act_name(c.get("activation")) not in _CONV_ACTS:
        return f"activation={_act_name(c.get('activation'))!r}"
    if cls in ("Dense", "Activation") and _act_name(c.get("activation")) not in _LAYER_ACTS:
        return f"activation={_act_name(c.get('activation'))!r}"
    if cls == "ReLU":
        if c.get("max_value") not in (None, 6, 6.0):
            return f"max_value={c.get('max_value')!r} (only None or 6)"
        if c.get("negative_slope", 0) not in (0, 0.0) or c.get("threshold", 0) not in (0, 0.0):
            return "negative_slope/threshold (leaky or thresholded ReLU)"
    if cls == "Softmax" and c.get("axis", -1) not in (-1, [-1]):
        return f"axis={c.get('axis')!r} (only -1)"
    return None


def _check_supported(layers, source):
    bad = [(lay.name, lay.cls, why) for lay in layers if (why := _unsupported(lay))]
    if bad:
        lines = "; ".join(f"{n!r} ({c}): {w}" for n, c, w in bad)
        raise UnsupportedError(f"{source}: {len(bad)} unsupported layer(s): {lines}")


# ----------------------------------------------------------------------------- layers -> graph

def _input(b, xs, c, name, where):
    shape = _shape(c.get("batch_shape") or c.get("batch_input_shape"), where)
    if any(d is None for d in shape):
        _fail(where, f"input shape {tuple(shape)} has unknown dimensions; pass input_shape=(H, W, C)")
    return b.input(tuple(_int(d, "input dimension", where) for d in shape), name=name)


def _windowed(c, where, size_key="kernel_size"):
    k = _pair(c.get(size_key), size_key, where)
    s = c.get("strides")
    return k, (k if s is None else _pair(s, "strides", where)), c.get("padding", "valid")


def _conv(b, xs, c, name, where):
    k, s, p = _windowed(c, where)
    return b.conv2d(xs[0], _int(c.get("filters"), "filters", where), k, s, p, bool(c.get("use_bias", True)),
                    _act_name(c.get("activation")), name=name)


def _depthwise(b, xs, c, name, where):
    k, s, p = _windowed(c, where)
    return b.depthwise_conv2d(xs[0], k, s, p, _int(c.get("depth_multiplier", 1), "depth_multiplier", where),
                              bool(c.get("use_bias", True)), _act_name(c.get("activation")), name=name)


def _separable(b, xs, c, name, where):
    k, s, p = _windowed(c, where)
    return b.separable_conv2d(xs[0], _int(c.get("filters"), "filters", where), k, s, p,
                              _int(c.get("depth_multiplier", 1), "depth_multiplier", where),
                              bool(c.get("use_bias", True)), _act_name(c.get("activation")), name=name)


def _channel_axis(b, x, axis, where):
    axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
    if axis not in (-1, len(b.shape(x))):
        raise UnsupportedError(f"{where}: axis={axis!r} for an input of shape {b.shape(x)} (only the last axis)")


def _batch_norm(b, xs, c, name, where):
    _channel_axis(b, xs[0], c.get("axis", -1), where)
    eps = _num(c.get("epsilon", 1e-3), "epsilon", where)
    return b.batch_norm(xs[0], eps, bool(c.get("center", True)), bool(c.get("scale", True)), name=name)


def _rescaling(b, xs, c, name, where):
    ch = b.shape(xs[0])[-1]
    consts = {}
    for key, default in (("scale", 1.0), ("offset", 0.0)):
        v = c.get(key, default)
        vals = v if isinstance(v, list) else [v]
        arr = np.array([_num(a, key, where) for a in vals], np.float64)
        if arr.size not in (1, ch):
            _fail(where, f"{key} has {arr.size} values for {ch} channels")
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
        p = [[_int(a, "padding", where, 0) for a in q] for q in p]
        if len(p) != 2 or any(len(q) != 2 for q in p):
            _fail(where, f"padding must be ((top, bottom), (left, right)), got {c.get('padding')!r}")
        return b.zero_pad(xs[0], tuple(tuple(q) for q in p), name=name)
    return b.zero_pad(xs[0], _pair(p, "padding", where, 0), name=name)


def _add(b, xs, c, name, where):
    if len(xs) < 2:
        _fail(where, f"Add needs at least 2 inputs, got {len(xs)}")
    acc = xs[0]
    for k, x in enumerate(xs[1:], 1):
        acc = b.add([acc, x], name=name if k == len(xs) - 1 else f"{name}/partial{k}")
    return acc


def _concat(b, xs, c, name, where):
    _channel_axis(b, xs[0], c.get("axis", -1), where)
    return b.concat(xs, -1, name=name)


def _dense(b, xs, c, name, where):
    return b.dense(xs[0], _int(c.get("units"), "units", where, hi=MAX_ELEMENTS), bool(c.get("use_bias", True)),
                   _act_name(c.get("activation")), name=name)


def _reshape(b, xs, c, name, where):
    t = c.get("target_shape")
    if not isinstance(t, list) or not 1 <= len(t) <= 3:
        _fail(where, f"target_shape must be a list of 1 to 3 sizes, got {t!r}")
    return b.reshape(xs[0], [-1 if d in (-1, None) else _int(d, "target_shape", where, hi=MAX_ELEMENTS)
                             for d in t], name=name)


_CONVERT = {
    "InputLayer": _input,
    "Conv2D": _conv, "DepthwiseConv2D": _depthwise, "SeparableConv2D": _separable,
    "BatchNormalization": _batch_norm,
    "Activation": lambda b, xs, c, name, where: b.activation(xs[0], _act_name(c.get("activation")), name=name),
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


def _topological(layers, source):
    """Config order when it is already topological (Keras writes it so), else the nearest such order."""
    by_name = {}
    for lay in layers:
        if lay.name in by_name:
            _fail(source, f"two layers are named {lay.name!r}")
        by_name[lay.name] = lay
    for lay in layers:
        for v in lay.inputs:
            if v not in by_name:
                _fail(f"{source}: layer {lay.name!r}", f"reads layer {v!r}, which the model does not have")
    done, order, pending = set(), [], list(layers)
    while pending:
        ready = [lay for lay in pending if all(v in done for v in lay.inputs)]
        if not ready:
            _fail(source, f"the layers form a cycle: {[lay.name for lay in pending][:10]}")
        for lay in ready:
            done.add(lay.name)
            order.append(lay)
        pending = [lay for lay in pending if lay.name not in done]
    return order


def _check_sizes(b, value, node_from, where):
    size = 1
    for d in b.shape(value):
        size *= d
    if size > MAX_ELEMENTS:
        _fail(where, f"output shape {b.shape(value)} has {size} elements per sample, more than {MAX_ELEMENTS}")
    for node in b.nodes[node_from:]:
        for key, shape in node.weight_shapes.items():
            n = int(np.prod(shape, dtype=np.int64))
            if n > MAX_ELEMENTS:
                _fail(where, f"weight {key!r} of shape {shape} has more than {MAX_ELEMENTS} elements")


def graph_from_keras_config(config, source: str = "config", input_shape=None) -> Graph:
    """A graph (without weights) from a Keras model config, as a dict parsed from JSON."""
    try:
        name, layers, outputs = _parse(config, source, input_shape)
        _check_supported(layers, source)
        b = GraphBuilder(name)
        for lay in _topological(layers, source):
            where = f"{source}: layer {lay.name!r} ({lay.cls})"
            if lay.cls == "InputLayer" and b.inputs:
                raise UnsupportedError(f"{where}: models with more than one input are not supported")
            if lay.cls != "InputLayer" and not lay.inputs:
                _fail(where, "has no inputs")
            n0 = len(b.nodes)
            value = _CONVERT[lay.cls](b, list(lay.inputs), lay.cfg, lay.name, where)
            _check_sizes(b, value, n0, where)
        missing = [v for v in outputs if v not in b.shapes]
        if missing:
            _fail(source, f"output layers {missing} are not layers of the model")
        graph = b.build(outputs)
        graph.keras_layers = [(lay.name, lay.cls) for lay in layers]   # model.layers order, for weights
    except KernelnetsError as e:
        if source in str(e):
            raise
        raise type(e)(f"{source}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError) as e:
        raise ModelError(f"{source}: malformed Keras model config ({type(e).__name__}: {e})") from None
    if graph.num_params() > MAX_PARAMS:
        raise ModelError(f"{source}: {graph.num_params()} parameters, more than {MAX_PARAMS}")
    return graph


# ----------------------------------------------------------------------------- files

def load_keras_model(path, input_shape=None) -> Graph:
    """A whole Keras model (``.keras`` archive or full-model ``.h5``) as a graph with its weights.

    ``input_shape`` (H, W, C) replaces the input layer's shape (needed when it has unknown sizes).
    Sets ``graph.weights_source`` and ``graph.source_format``.
    """
    h5py = h5py_module()

    path = os.fspath(path)
    fmt = detect_format(path)
    try:
        if fmt == "keras_h5_model":
            graph = graph_from_keras_config(read_h5_model_config(path), path, input_shape)
            from nets.weights import load_h5_weights
            load_h5_weights(graph, path)
        elif fmt == "keras_archive":
            config, blob = read_keras_archive(path)
            graph = graph_from_keras_config(config, path, input_shape)
            with h5py.File(io.BytesIO(blob), "r") as f:
                load_keras3_weights(graph, f, f"{path}:model.weights.h5")
            graph.weights_source = f"{path} (Keras 3 archive)"
        else:
            raise ModelError(f"{path}: a {fmt} file, not a whole Keras model; whole models come as a "
                             "'.keras' archive or a full-model '.h5' (model.save)")
    except KernelnetsError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, UnicodeDecodeError,
            zipfile.BadZipFile, EOFError) as e:
        raise ModelError(f"{path}: cannot read the Keras model (truncated or corrupt?): "
                         f"{type(e).__name__}: {e}") from None
    graph.source_format = fmt
    return graph


__all__ = ["load_keras_model", "graph_from_keras_config", "MAX_ELEMENTS"]
