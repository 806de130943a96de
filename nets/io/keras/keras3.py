"""Keras 3 containers: the ``.keras`` zip (``config.json`` + ``model.weights.h5``, sizes checked before
members are read) and the Keras 3 weights layout ``layers/<snake_case class>[_N]/vars/<i>``
(``_layer_checkpoint_dependencies`` instead of ``layers`` in files from tf.keras 2.13+; recent Keras
tags each ``vars`` group with its layer's name, which is preferred when present). A sub-model keeps its
layers in a ``layers`` group of its own: ``layers/sequential/layers/conv2d/vars``."""

from __future__ import annotations

import re
import zipfile

import numpy as np

from nets.errors import ModelError, WeightsError
from nets.io.keras.legacy_h5 import MAX_CONFIG_BYTES, MAX_WEIGHTS_BYTES, h5_member, parse_config_json


def read_keras_archive(path) -> tuple[dict, bytes]:
    """(parsed config.json, the bytes of model.weights.h5) of a Keras 3 ``.keras`` zip."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        if "model.weights.h5" not in names:
            raise WeightsError(f"{path}: the archive has no 'model.weights.h5' (members: {names[:8]}); "
                               "sharded or npz weights are not supported")
        for member, limit in (("config.json", MAX_CONFIG_BYTES), ("model.weights.h5", MAX_WEIGHTS_BYTES)):
            if z.getinfo(member).file_size > limit:
                raise ModelError(f"{path}: {member} claims {z.getinfo(member).file_size} bytes, more than "
                                 f"the {limit} this reader accepts")
        config = parse_config_json(z.read("config.json").decode("utf8"), f"{path}:config.json")
        return config, z.read("model.weights.h5")


def _snake(cls: str) -> str:
    """Keras' file name for a class: DepthwiseConv2D -> depthwise_conv2d, ReLU -> re_lu."""
    s = re.sub(r"\W+", "", cls)
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", s)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def _scope(group, rows, parents, out, depth=0):
    """Map each layer directly inside the (sub-)model ``parents`` (rows of ``graph.keras_layers``) to its
    group in ``group``, the h5 group of that (sub-)model, recursing into sub-models."""
    if depth > 32:
        raise WeightsError("sub-models nested too deeply")
    top = "layers" if "layers" in group else "_layer_checkpoint_dependencies"
    if top not in group:
        raise WeightsError("no 'layers' group: not a Keras 3 weights file" if not parents else
                           f"no 'layers' group for sub-model {parents[-1]!r}")
    tagged = {}
    for key in group[top]:
        g = group[top][key]
        if hasattr(g, "keys") and "vars" in g and "name" in g["vars"].attrs:
            tagged[str(np.asarray(g["vars"].attrs["name"]).astype(str))] = g
    used = {}
    for node_name, key, cls, where in rows:
        if where != parents:
            continue
        prefix = _snake(cls)
        k = used[prefix] = used.get(prefix, -1) + 1
        path = f"{top}/{prefix}" + (f"_{k}" if k else "")
        g = tagged[key] if key in tagged else (group[path] if path in group else None)
        if node_name is not None:
            out[node_name] = g["vars"] if g is not None and "vars" in g else None
        elif g is not None:
            _scope(g, rows, parents + (key,), out, depth + 1)
    return out


def _vars_groups(f, graph) -> dict:
    """Node name -> its ``vars`` group in a Keras 3 weights file (None where the file has none)."""
    rows = graph.keras_layers or [(n.name, n.name, "", ()) for n in graph.nodes]
    return _scope(f, rows, (), {})


def load_keras3_weights(graph, f, path):
    """Fill ``graph`` (from ``graph_from_keras_config``) from an open Keras 3 weights h5 file."""
    groups = _vars_groups(f, graph)
    loaded = {}
    for node in graph.weighted_nodes():
        g = groups.get(node.name)
        where = f"{path}: layer {node.name!r}"
        if g is None:
            raise WeightsError(f"{where}: the weights file has no variables for it")
        keys = sorted(g.keys(), key=lambda k: int(k) if k.isdigit() else -1)
        if len(keys) != len(node.weight_shapes) or not all(k.isdigit() for k in keys):
            raise WeightsError(f"{where}: the file has variables {keys}, the graph expects "
                               f"{len(node.weight_shapes)} arrays {dict(node.weight_shapes)}")
        arrays = {}
        for (wkey, shape), k in zip(node.weight_shapes.items(), keys):
            ds = h5_member(g, k, where)
            if not hasattr(ds, "dtype") or ds.dtype.kind not in "fiu" or tuple(ds.shape) != tuple(shape):
                raise WeightsError(f"{where}: weight {wkey!r} expects a float array of shape {tuple(shape)}, "
                                   f"the file's vars/{k} is {getattr(ds, 'dtype', 'a group')} of shape "
                                   f"{getattr(ds, 'shape', None)}")
            arrays[wkey] = ds
        loaded[node.name] = arrays
    for node in graph.weighted_nodes():      # only now is any data read: every shape has been checked
        node.weights = {k: np.ascontiguousarray(ds[()], dtype=np.float32) for k, ds in loaded[node.name].items()}
    return graph
