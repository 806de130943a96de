"""Keras model configs (``config.json`` of a ``.keras`` archive, ``model_config`` of a full-model ``.h5``)
as graphs, without knowing the architecture in advance.

The config is a Functional or Sequential model. Functional layers name their inputs in
``inbound_nodes``, in two dialects: Keras 2 lists ``[layer, node_index, tensor_index, kwargs]``,
Keras 3 lists ``{"args": [...], "kwargs": {...}}`` whose args hold ``__keras_tensor__`` records with a
``keras_history`` of ``[layer, node_index, tensor_index]``. Layers map one to one onto graph nodes of
the same name (``nets.io.keras.layers``). Before anything is built, every layer is checked, and all
unsupported layers and options are reported together in one UnsupportedError.
"""

from __future__ import annotations

import graphlib

import numpy as np

from nets.errors import KernelnetsError, ModelError, UnsupportedError
from nets.graph.builder import GraphBuilder
from nets.graph.ir import Graph
from nets.io.keras.layers import CONVERTERS, MAX_ELEMENTS, MAX_PARAMS, check_supported, fail


class _Layer:
    def __init__(self, name, cls, cfg, inputs, calls=1):
        self.name, self.cls, self.cfg, self.inputs, self.calls = name, cls, cfg, inputs, calls


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
        fail(where, f"malformed tensor reference {ref!r}")
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
        fail(where, f"'inbound_nodes' must be a list, got {type(nodes).__name__}")
    if not nodes:
        return [], 0
    node = nodes[0]
    refs = _keras3_refs(node.get("args", []), []) if isinstance(node, dict) else node
    if not isinstance(refs, list):
        fail(where, f"malformed inbound node {node!r}")
    return [_ref_name(r, where) for r in refs], len(nodes)


def _io_refs(v, what, where) -> list[str]:
    if isinstance(v, list) and v and isinstance(v[0], str):
        v = [v]            # Keras 3 writes a single input or output as one [name, 0, 0] triple
    if not isinstance(v, list) or not v:
        fail(where, f"'{what}' must list the model's {what.split('_')[0]}s, got {v!r}")
    return [_ref_name(r, where) for r in v]


def _parse(config, source, input_shape):
    if not isinstance(config, dict):
        fail(source, f"the model config must be a JSON object, got {type(config).__name__}")
    kind, body = config.get("class_name"), config.get("config")
    if kind == "Sequential" and isinstance(body, list):
        body = {"layers": body}
    if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
        fail(source, f"not a Keras model config (class_name {kind!r} without a 'layers' list)")
    entries = body["layers"]
    if len(entries) > 100_000:
        fail(source, f"{len(entries)} layers is more than any real model has")
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("config"), dict):
            fail(source, f"malformed layer entry {str(e)[:80]}")
    name = str(body.get("name", "keras_model"))
    if kind == "Sequential":
        layers, outputs = _sequential(entries, body, config, source)
    elif kind in ("Functional", "Model"):
        layers = []
        for e in entries:
            lname = e.get("name", e["config"].get("name"))
            where = f"{source}: layer {lname!r}"
            if not isinstance(lname, str):
                fail(source, f"a layer has no name: {str(e)[:80]}")
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
            fail(source, "a Sequential model without an input shape (build it or give an InputLayer)")
        layers.append(_Layer("input_layer", "InputLayer", {"batch_shape": shape}, []))
        prev = "input_layer"
    for e in entries:
        lname = e["config"].get("name")
        if not isinstance(lname, str):
            fail(source, f"a layer has no name: {str(e)[:80]}")
        layers.append(_Layer(lname, str(e.get("class_name")), e["config"], [prev] if prev else []))
        prev = lname
    return layers, [prev]


def _topological(layers, source):
    """Config order when it is already topological (Keras writes it so), else an order that is."""
    by_name = {}
    for lay in layers:
        if lay.name in by_name:
            fail(source, f"two layers are named {lay.name!r}")
        by_name[lay.name] = lay
    for lay in layers:
        for v in lay.inputs:
            if v not in by_name:
                fail(f"{source}: layer {lay.name!r}", f"reads layer {v!r}, which the model does not have")
    try:
        order = list(graphlib.TopologicalSorter({lay.name: lay.inputs for lay in layers}).static_order())
    except graphlib.CycleError as e:
        fail(source, f"the layers form a cycle: {e.args[1][:10]}")
    position = {name: i for i, name in enumerate(by_name)}
    if all(position[v] < position[lay.name] for lay in layers for v in lay.inputs):
        return list(layers)
    return [by_name[name] for name in order]


def _check_sizes(b, value, node_from, where):
    size = 1
    for d in b.shape(value):
        size *= d
    if size > MAX_ELEMENTS:
        fail(where, f"output shape {b.shape(value)} has {size} elements per sample, more than {MAX_ELEMENTS}")
    for node in b.nodes[node_from:]:
        for key, shape in node.weight_shapes.items():
            n = int(np.prod(shape, dtype=np.int64))
            if n > MAX_ELEMENTS:
                fail(where, f"weight {key!r} of shape {shape} has more than {MAX_ELEMENTS} elements")


def graph_from_keras_config(config, source: str = "config", input_shape=None) -> Graph:
    """A graph (without weights) from a Keras model config, as a dict parsed from JSON."""
    try:
        name, layers, outputs = _parse(config, source, input_shape)
        check_supported(layers, source)
        b = GraphBuilder(name)
        for lay in _topological(layers, source):
            where = f"{source}: layer {lay.name!r} ({lay.cls})"
            if lay.cls == "InputLayer" and b.inputs:
                raise UnsupportedError(f"{where}: models with more than one input are not supported")
            if lay.cls != "InputLayer" and not lay.inputs:
                fail(where, "has no inputs")
            n0 = len(b.nodes)
            value = CONVERTERS[lay.cls](b, list(lay.inputs), lay.cfg, lay.name, where)
            _check_sizes(b, value, n0, where)
        missing = [v for v in outputs if v not in b.shapes]
        if missing:
            fail(source, f"output layers {missing} are not layers of the model")
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
