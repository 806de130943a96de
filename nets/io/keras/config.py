"""Keras model configs (``config.json`` of a ``.keras`` archive, ``model_config`` of a full-model ``.h5``)
as graphs, without knowing the architecture in advance.

The config is a Functional or Sequential model. Functional layers name their inputs in
``inbound_nodes``, in two dialects: Keras 2 lists ``[layer, node_index, tensor_index, kwargs]``,
Keras 3 lists ``{"args": [...], "kwargs": {...}}`` whose args hold ``__keras_tensor__`` records (a
``keras_history`` of ``[layer, node_index, tensor_index]`` and the tensor's shape) and, for op-layers
such as ``x + 3.0``, plain numbers (``Const``). Sequential and Functional models nested inside a model
(ConvNeXt's stem and downsampling blocks) are flattened into it: their layers become graph nodes of
their own names (prefixed with the sub-model's name only where a name is taken), their input layers
read what the sub-model was called on, and readers of the sub-model read its output.
Layers map one to one onto graph nodes of the same name (``nets.io.keras.layers``). Before anything
is built, every layer is checked, and all unsupported layers and options are reported together in
one UnsupportedError.

``graph.keras_layers`` keeps the model's layer list for the weight readers: rows ``(node name, Keras
name, class, parents)`` in ``model.layers`` order inside each (sub-)model, ``parents`` the names of the
sub-models around a layer; a sub-model has a row of its own with node name None.
"""

from __future__ import annotations

import graphlib

import numpy as np

from nets.errors import KernelnetsError, ModelError, UnsupportedError
from nets.graph.builder import GraphBuilder
from nets.graph.ir import Graph
from nets.io.keras.layers import check_supported, converter
from nets.io.keras.validate import MAX_ELEMENTS, MAX_PARAMS, Const, fail

CONTAINERS = ("Sequential", "Functional", "Model")
_MAX_DEPTH = 32


class _Layer:
    def __init__(self, name, cls, cfg, args, calls=1, module=None, in_shapes=None, parents=()):
        self.name = self.key = name          # node name; Keras' name (differs only when renamed)
        self.cls, self.cfg, self.args, self.calls = cls, cfg, args, calls
        self.module, self.in_shapes, self.parents = module, in_shapes, parents

    @property
    def inputs(self) -> list[str]:
        return [a for a in self.args if isinstance(a, str)]


# ----------------------------------------------------------------------------- inbound nodes

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


def _sample_shape(shape):
    if isinstance(shape, (list, tuple)) and len(shape) >= 2 and all(type(d) is int for d in shape[1:]):
        return tuple(shape[1:])
    return None


def _keras3_args(obj, where, args, shapes, depth=0):
    """Tensor references (names) and constants of a Keras 3 inbound node, in the order Keras wrote them."""
    if depth > _MAX_DEPTH:
        fail(where, "inbound tensors nested too deeply")
    if isinstance(obj, dict):
        kind, cfg = obj.get("class_name"), obj.get("config")
        if kind == "__keras_tensor__" and isinstance(cfg, dict):
            args.append(_ref_name(cfg.get("keras_history"), where))
            shapes.append(_sample_shape(cfg.get("shape")))
        elif kind in ("__numpy__", "__tensor__") and isinstance(cfg, dict):
            args.append(Const(cfg.get("value")))
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _keras3_args(item, where, args, shapes, depth + 1)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        args.append(Const(obj))


def _inbound(entry, where):
    """(args, input shapes or None, number of calls) of a layer entry."""
    nodes = entry.get("inbound_nodes", [])
    if not isinstance(nodes, list):
        fail(where, f"'inbound_nodes' must be a list, got {type(nodes).__name__}")
    if not nodes:
        return [], None, 0
    node, args, shapes = nodes[0], [], []
    if isinstance(node, dict):
        _keras3_args(node.get("args", []), where, args, shapes)
        return args, shapes, len(nodes)
    if not isinstance(node, list):
        fail(where, f"malformed inbound node {node!r}")
    return [_ref_name(r, where) for r in node], None, len(nodes)


def _io_refs(v, what, where) -> list[str]:
    if isinstance(v, list) and v and isinstance(v[0], str):
        v = [v]            # Keras 3 writes a single input or output as one [name, 0, 0] triple
    if not isinstance(v, list) or not v:
        fail(where, f"'{what}' must list the model's {what.split('_')[0]}s, got {v!r}")
    return [_ref_name(r, where) for r in v]


# ----------------------------------------------------------------------------- (nested) models -> layers

class _Parse:
    """Walks a model config and the sub-models in it into one flat list of layers."""

    def __init__(self, source):
        self.source, self.layers, self.rows, self.alias, self.taken = source, [], [], {}, set()

    def resolve(self, name):
        for _ in range(_MAX_DEPTH):
            if name not in self.alias:
                return name
            name = self.alias[name]
        fail(self.source, f"sub-models nested too deeply around {name!r}")

    def model(self, kind, body, parents=(), outer_args=None):
        """Add the layers of one (sub-)model; returns its output layer names."""
        if kind == "Sequential" and isinstance(body, list):
            body = {"layers": body}
        if not isinstance(body, dict) or not isinstance(body.get("layers"), list):
            fail(self.source, f"not a Keras model config (class_name {kind!r} without a 'layers' list)")
        entries = body["layers"]
        if len(entries) > 100_000 or len(parents) > _MAX_DEPTH:
            fail(self.source, f"{len(entries)} layers, {len(parents)} levels deep: more than any real model has")
        for e in entries:
            if not isinstance(e, dict) or not isinstance(e.get("config"), dict):
                fail(self.source, f"malformed layer entry {str(e)[:80]}")
        names = [e.get("name", e["config"].get("name")) for e in entries]
        for n, e in zip(names, entries):
            if not isinstance(n, str):
                fail(self.source, f"a layer has no name: {str(e)[:80]}")
        rename = {n: f"{'/'.join(parents)}/{n}" for n in names if parents and n in self.taken}
        self.taken.update(rename.get(n, n) for n in names)
        if kind == "Sequential":
            return self._sequential(entries, names, body, parents, rename, outer_args)
        ins = _io_refs(body.get("input_layers"), "input_layers", self.source)
        outs = _io_refs(body.get("output_layers"), "output_layers", self.source)
        if not parents and len(ins) != 1:
            raise UnsupportedError(f"{self.source}: models with {len(ins)} inputs are not supported (only 1)")
        if parents:
            self._bind_inputs([rename.get(n, n) for n in ins], outer_args, parents)
        for name, e in zip(names, entries):
            args, shapes, calls = _inbound(e, f"{self.source}: layer {name!r}")
            args = [rename.get(a, a) if isinstance(a, str) else a for a in args]
            if parents and name in ins:
                continue                     # a sub-model's input: its reader reads the outer tensor
            self.add(rename.get(name, name), name, e, args, shapes, calls, parents)
        return [rename.get(n, n) for n in outs]

    def _sequential(self, entries, names, body, parents, rename, outer_args):
        first = entries[0]["config"] if entries else {}
        if not entries:
            fail(self.source, "a Sequential model without layers")
        prev = None
        if entries[0].get("class_name") == "InputLayer":
            if parents:
                self._bind_inputs([rename.get(names[0], names[0])], outer_args, parents)
                prev, entries, names = rename.get(names[0], names[0]), entries[1:], names[1:]
        elif parents:
            prev = f"{'/'.join(parents)}/input"
            self._bind_inputs([prev], outer_args, parents)
        else:
            shape = (first.get("batch_shape") or first.get("batch_input_shape") or body.get("build_input_shape")
                     or (body.get("build_config") or {}).get("input_shape"))
            if shape is None:
                fail(self.source, "a Sequential model without an input shape (build it or give an InputLayer)")
            self.add("input_layer", "input_layer", {"class_name": "InputLayer", "config": {"batch_shape": shape}},
                     [], None, 1, parents)
            prev = "input_layer"
        for name, e in zip(names, entries):
            self.add(rename.get(name, name), name, e, [prev] if prev else [], None, 1 if prev else 0, parents)
            prev = rename.get(name, name)
        return [prev]

    def _bind_inputs(self, inner, outer_args, parents):
        outer = [a for a in (outer_args or []) if isinstance(a, str)]
        if len(inner) != len(outer) or len(outer) != len(outer_args or []):
            raise UnsupportedError(f"{self.source}: sub-model {parents[-1]!r} takes {len(inner)} inputs and is "
                                   f"called on {len(outer_args or [])} arguments")
        for i, o in zip(inner, outer):
            self.alias[i] = o

    def add(self, name, key, entry, args, shapes, calls, parents):
        cls, cfg = str(entry.get("class_name")), entry["config"]
        if cls in CONTAINERS and isinstance(cfg.get("layers"), list) and calls <= 1:
            self.rows.append((None, key, cls, parents))
            outs = self.model(cls, cfg, parents + (key,), args)
            if len(outs) != 1:
                raise UnsupportedError(f"{self.source}: sub-model {key!r} has {len(outs)} outputs (only 1)")
            self.alias[name] = outs[0]
            return
        lay = _Layer(name, cls, cfg, args, calls, entry.get("module"), shapes, parents)
        lay.key = key
        self.layers.append(lay)
        self.rows.append((name, key, cls, parents))


def _parse(config, source, input_shape):
    if not isinstance(config, dict):
        fail(source, f"the model config must be a JSON object, got {type(config).__name__}")
    kind, body = config.get("class_name"), config.get("config")
    if kind not in CONTAINERS:
        raise UnsupportedError(f"{source}: model class {kind!r} is not supported (only Functional and "
                               "Sequential models built from standard layers)")
    p = _Parse(source)
    if kind == "Sequential" and isinstance(body, dict) and "build_input_shape" not in body:
        body = dict(body, build_config=config.get("build_config"))
    outputs = p.model(kind, body)
    for lay in p.layers:
        lay.args = [p.resolve(a) if isinstance(a, str) else a for a in lay.args]
        if input_shape is not None and lay.cls == "InputLayer":
            lay.cfg = dict(lay.cfg, batch_shape=[None] + list(input_shape))
    name = str(body.get("name", "keras_model")) if isinstance(body, dict) else "keras_model"
    return name, p.layers, [p.resolve(v) for v in outputs], p.rows


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
        name, layers, outputs, rows = _parse(config, source, input_shape)
        check_supported(layers, source)
        b = GraphBuilder(name)
        values = {}
        for lay in _topological(layers, source):
            where = f"{source}: layer {lay.name!r} ({lay.cls})"
            if lay.cls == "InputLayer" and b.inputs:
                raise UnsupportedError(f"{where}: models with more than one input are not supported")
            if lay.cls != "InputLayer" and not lay.inputs:
                fail(where, "has no inputs")
            n0 = len(b.nodes)
            args = [values[a] if isinstance(a, str) else a for a in lay.args]
            values[lay.name] = converter(lay)(b, args, lay.cfg, lay.name, where)
            _check_sizes(b, values[lay.name], n0, where)
        missing = [v for v in outputs if v not in values]
        if missing:
            fail(source, f"output layers {missing} are not layers of the model")
        graph = b.build([values[v] for v in outputs])
        graph.keras_layers = rows
    except KernelnetsError as e:
        if source in str(e):
            raise
        raise type(e)(f"{source}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError) as e:
        raise ModelError(f"{source}: malformed Keras model config ({type(e).__name__}: {e})") from None
    if graph.num_params() > MAX_PARAMS:
        raise ModelError(f"{source}: {graph.num_params()} parameters, more than {MAX_PARAMS}")
    return graph
