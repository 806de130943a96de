"""Legacy Keras HDF5 files: the weights loader (the files keras.applications downloads), a writer of the
same layout, and the config reader of full-model ``.h5`` files (``model.save("m.h5")``).

The legacy layout (Keras 1/2, and Keras 3's ``legacy_h5_format``):
    root (or root["model_weights"] in a full-model file)
        attrs["layer_names"]            every layer, in model order; chunked as ``layer_names0``,
                                        ``layer_names1``, ... once it passes HDF5's 64 KB header limit
        <layer>/attrs["weight_names"]   the layer's arrays in Keras' order (empty for weightless layers)
        <layer>/<weight_name>           a dataset; names look like ``conv1_conv/kernel:0`` (the
                                        ``:0`` is missing in files written by Keras 3)
Both name lists are read in their stored order, never in h5py's key order, which is alphabetical
(``conv2d_10`` before ``conv2d_2``).

Matching follows Keras: when every weighted layer of the graph has a namesake in the file, layers are
matched by name (extra layers in the file are ignored); otherwise the file's weighted layers are
matched with the graph's in order, as Keras' ``load_weights`` does, which is how the official files
with auto-generated names (``conv2d_N``, ``convolution2d_N``) load. Either way every array's count and
shape is checked before anything is assigned, so a failed load leaves the graph untouched.

h5py is optional: it is imported only when a file is read or written. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from nets.errors import ModelError, WeightsError
from nets.graph.ir import Graph, Node

# HDF5 cannot store an attribute larger than its object header (64 KB); Keras splits long name
# lists over several attributes below this size.
HDF5_ATTR_LIMIT = 64512
_LIST_MAX = 10


def h5py_module():
    try:
        import h5py
    except ImportError as e:
        raise WeightsError("reading or writing Keras .h5 weights needs the optional dependency h5py "
                           "(pip install h5py)") from e
    return h5py


def _as_str(v) -> str:
    return v.decode("utf8") if isinstance(v, (bytes, np.bytes_)) else str(v)


def read_string_list(group, name: str) -> list[str]:
    """A list attribute, joined back from ``name0``, ``name1``, ... when Keras chunked it."""
    if name in group.attrs:
        return [_as_str(v) for v in np.atleast_1d(group.attrs[name])]
    out, k = [], 0
    while f"{name}{k}" in group.attrs:
        out.extend(_as_str(v) for v in np.atleast_1d(group.attrs[f"{name}{k}"]))
        k += 1
    return out


def write_string_list(group, name: str, strings, limit: int = HDF5_ATTR_LIMIT):
    """Store a list of strings as one attribute, or as ``name0..nameK`` chunks if it exceeds ``limit``."""
    data = np.array([s.encode("utf8") for s in strings], dtype="S") if len(strings) else np.array([], "S1")
    chunks = 1
    while any(part.nbytes > limit for part in np.array_split(data, chunks)):
        if chunks >= len(data):
            raise WeightsError(f"attribute {name!r}: one name is longer than {limit} bytes")
        chunks += 1
    if chunks == 1:
        group.attrs[name] = data
    else:
        for k, part in enumerate(np.array_split(data, chunks)):
            group.attrs[f"{name}{k}"] = part


def _more(names, limit=_LIST_MAX) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _weights_group(f, path):
    if "layer_names" in f.attrs or "layer_names0" in f.attrs:
        return f
    if "model_weights" in f:
        g = f["model_weights"]
        if "layer_names" in g.attrs or "layer_names0" in g.attrs:
            return g
    if "layers" in f and "vars" in f:
        raise WeightsError(f"{path}: this is a Keras 3 '.weights.h5' file (groups 'layers'/'vars'), not "
                           "the legacy layout with 'layer_names'; re-save it with Keras' legacy h5 "
                           "writer or load the .keras model instead")
    raise WeightsError(f"{path}: not a Keras weights file: no 'layer_names' attribute at the root or in "
                       "a 'model_weights' group")


def h5_member(group, key, where):
    """``group[key]`` refusing what would read other files: external links, and datasets whose data
    lives in external files or is virtual (a crafted weights file could point them anywhere)."""
    h5py = h5py_module()
    if isinstance(group.get(key, getlink=True), h5py.ExternalLink):
        raise WeightsError(f"{where}: {key!r} is a link to another file; refusing to follow it")
    obj = group[key]
    if isinstance(obj, h5py.Dataset) and (obj.external or obj.is_virtual):
        raise WeightsError(f"{where}: dataset {key!r} keeps its data outside this file; refusing to read it")
    return obj


def _dataset(layer_group, wname, where):
    """The dataset named ``wname``, tolerating a name listed with ':0' but stored without, or back."""
    for key in (wname, wname[:-2] if wname.endswith(":0") else wname + ":0"):
        if key in layer_group:
            return h5_member(layer_group, key, where)
    return None


def _read_layer(root, lname, path) -> list[tuple[str, object]]:
    """(weight name, dataset) pairs; the data is read only after its shape has been checked."""
    group = h5_member(root, lname, path)
    out = []
    for wname in read_string_list(group, "weight_names"):
        ds = _dataset(group, wname, f"{path}: layer {lname!r}")
        if ds is None or not hasattr(ds, "shape"):
            raise WeightsError(f"{path}: layer {lname!r} lists weight {wname!r} but has no such dataset")
        if ds.dtype.kind not in "fiu":    # (integers: a Normalization's count)
            raise WeightsError(f"{path}: layer {lname!r}: weight {wname!r} has dtype {ds.dtype}, "
                               "expected floating point")
        out.append((wname, ds))
    return out


def _shape_fits(expected, found) -> bool:
    # -1 in an expected shape is a wildcard (a dense layer whose input width is not yet known).
    return len(expected) == len(found) and all(e in (-1, f) for e, f in zip(expected, found))


def _check_layer(node: Node, lname, arrays, path, how, mode="order") -> dict:
    expected = node.weight_shapes
    where = f"{path}: layer {node.name!r}" + (f" (matched by {mode} with {lname!r} in the file)"
                                               if lname != node.name else "")
    found = [tuple(a.shape) for _, a in arrays]
    if len(arrays) != len(expected):
        raise WeightsError(f"{where}: the file has {len(arrays)} arrays {found} "
                           f"({[w for w, _ in arrays]}), the graph expects {len(expected)} "
                           f"{dict(expected)}{how}")
    for (key, shape), (wname, arr) in zip(expected.items(), arrays):
        if not _shape_fits(tuple(shape), tuple(arr.shape)):
            raise WeightsError(f"{where}: weight {key!r} expects shape {tuple(shape)}, the file's "
                               f"{wname!r} has shape {tuple(arr.shape)}{how}")
    # Shapes are checked before any data is read, so a corrupt header cannot make us allocate.
    return {key: np.ascontiguousarray(ds[()], dtype=np.float32) for key, (_, ds) in zip(expected, arrays)}


def load_h5_weights(graph: Graph, path) -> Graph:
    """Fill ``node.weights`` of every weighted node of ``graph`` from a legacy Keras .h5 file.

    Raises WeightsError (naming the file, layer and shapes) on an unreadable file, missing layers,
    or arrays of the wrong count or shape; the graph is only changed when everything fits.
    Sets ``graph.weights_source`` and ``graph.weights_generation`` (see ``file_generation``) and
    returns the graph. A Keras 2.2 ResNet50 file also sets its BatchNorm epsilon (1e-3) on the graph.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"{path}: no such weights file")
    h5py = h5py_module()
    try:
        with h5py.File(path, "r") as f:
            loaded, mode, generation, eps = _load_from_file(graph, f, path)
    except WeightsError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError, AttributeError) as e:
        raise WeightsError(f"{path}: not a readable HDF5 weights file (truncated or corrupt?): {e}") from e
    for node in graph.weighted_nodes():
        node.weights = loaded[node.name]
        if node.name in eps:
            node.attrs["epsilon"] = eps[node.name]
    graph.weights_source = f"{path} (layers matched by {mode})"
    graph.weights_generation = generation
    return graph


# ----------------------------------------------------------------------------- file generations
# keras.applications has shipped ResNet50 weights under two naming schemes. The Keras 2.2 file names
# layers after the Caffe model (res2a_branch2a, bn2a_branch2a, bn_conv1, fc1000) and its BatchNorm
# layers used Keras' default epsilon 1e-3; the current file uses conv2_block1_1_conv and 1.001e-5.
# The old file cannot be matched by order: its blocks list the main branch's last conv before the
# shortcut conv, ours (Keras 3's model.layers) the shortcut first, and both are 1x1 convs of the same
# shape. So the old names are translated.
_OLD_RESNET = re.compile(r"^(res|bn)(\d)([a-z])(\d*)_branch(2a|2b|2c|1)$")
_OLD_BRANCH = {"2a": "1", "2b": "2", "2c": "3", "1": "0"}
_OLD_FIXED = {"conv1": "conv1_conv", "bn_conv1": "conv1_bn", "fc1000": "predictions"}
OLD_RESNET_EPSILON = 1e-3


def _old_resnet_name(name: str) -> str | None:
    if name in _OLD_FIXED:
        return _OLD_FIXED[name]
    m = _OLD_RESNET.match(name)
    if m is None:
        return None
    kind, stage, letter, num, branch = m.groups()
    # 'a', 'b', 'c', ... number blocks 1, 2, 3; Caffe's deep ResNets write res4b1 .. res4b22 for 2..23.
    block = (int(num) + 1) if num else ord(letter) - ord("a") + 1
    return f"conv{stage}_block{block}_{_OLD_BRANCH[branch]}_{'conv' if kind == 'res' else 'bn'}"


def file_generation(layer_names) -> str:
    """Which naming scheme a weights file uses: "keras2.2-resnet" (res2a_branch2a, bn_conv1, fc1000),
    "keras1-auto" (convolution2d_N, batchnormalization_N), "auto" (conv2d_N, batch_normalization_N)
    or "named" (anything else, e.g. conv2_block1_1_conv)."""
    names = list(layer_names)
    if "bn_conv1" in names or any(_OLD_RESNET.match(n) for n in names):
        return "keras2.2-resnet"
    if any(re.match(r"^(convolution2d|separableconvolution2d|batchnormalization)_\d+$", n) for n in names):
        return "keras1-auto"
    if any(re.match(r"^(conv2d|batch_normalization|dense|depthwise_conv2d)(_\d+)?$", n) for n in names):
        return "auto"
    return "named"


def _nested_nodes(graph) -> dict:
    """Weighted nodes that were layers of a sub-model: node name -> (the top-level sub-model, Keras name)."""
    weighted = {n.name for n in graph.weighted_nodes()}
    return {name: (parents[0], key) for name, key, _, parents in (graph.keras_layers or [])
            if parents and name in weighted}


def _sub_layer(root, container, key, path):
    """The arrays of layer ``key`` inside sub-model ``container``: Keras lists all of a sub-model's arrays
    under the sub-model (trainable ones first), named ``<sub-model>/<layer>/<weight>`` or ``<layer>/<weight>``."""
    if container not in root:
        raise WeightsError(f"{path}: the file has no weights for sub-model {container!r}")
    return [(w, ds) for w, ds in _read_layer(root, container, path)
            if len(w.split("/")) >= 2 and w.split("/")[-2] == key]


def _load_from_file(graph, f, path):
    root = _weights_group(f, path)
    nested = _nested_nodes(graph)
    containers = {c for c, _ in nested.values()}
    nodes = [n for n in graph.weighted_nodes() if n.name not in nested]
    file_layers = []
    for lname in read_string_list(root, "layer_names"):
        if lname not in root:
            raise WeightsError(f"{path}: 'layer_names' lists {lname!r} but the file has no such group")
        if read_string_list(h5_member(root, lname, path), "weight_names") and lname not in containers:
            file_layers.append(lname)
    generation = file_generation(file_layers)
    by_name = {n: n for n in file_layers}
    eps = {}
    if generation == "keras2.2-resnet":
        by_name = {(_old_resnet_name(n) or n): n for n in file_layers}
        eps = {n.name: OLD_RESNET_EPSILON for n in nodes if n.op == "batch_norm" and n.name in by_name}
    missing = [n.name for n in nodes if n.name not in by_name]
    if not missing:
        mode = "name" if generation != "keras2.2-resnet" else "Keras 2.2 ResNet name"
        pairs, how = [(n, by_name[n.name]) for n in nodes], ""
    elif generation == "keras2.2-resnet":
        raise WeightsError(f"{path}: a Keras 2.2 ResNet50 weights file (res2a_branch2a names), but "
                           f"{len(missing)} of the graph's {len(nodes)} weighted layers have no counterpart "
                           f"in it: {_more(missing)}; it loads into nets.load('resnet50') only")
    else:
        if len(file_layers) != len(nodes):
            hint = (" (a '_notop' file needs a graph built without the top layers)"
                    if len(file_layers) < len(nodes) else "")
            raise WeightsError(f"{path}: {len(missing)} of the graph's {len(nodes)} weighted layers are "
                               f"missing from the file: {_more(missing)}; matching by order is impossible "
                               f"too: the file has {len(file_layers)} weighted layers{hint}")
        pairs, mode = list(zip(nodes, file_layers)), "order"
        how = (f"; layers were matched by order because {len(missing)} graph layers have no namesake "
               f"in the file, e.g. {_more(missing, 3)}")
    loaded = {}
    for node, lname in pairs:
        loaded[node.name] = _check_layer(node, lname, _read_layer(root, lname, path), path, how,
                                         "order" if how else "name")
    for name, (container, key) in nested.items():
        node = graph.node(name)
        loaded[name] = _check_layer(node, f"{container}/{key}", _sub_layer(root, container, key, path), path,
                                    f" (layer {key!r} of sub-model {container!r})", "name")
    return loaded, mode, generation, eps


def save_h5_weights(graph: Graph, path) -> None:
    """Write the weights of ``graph`` in the legacy keras.applications layout (names with ':0').

    Every layer except inputs is listed in ``layer_names``; weightless ones get empty ``weight_names``,
    as in Keras' own files.
    """
    h5py = h5py_module()
    missing = [n.name for n in graph.weighted_nodes() if set(n.weights) != set(n.weight_shapes)]
    if missing:
        raise WeightsError(f"{path}: cannot save, {len(missing)} layers have no (or incomplete) weights: "
                           f"{_more(missing)}")
    layers = [n for n in graph.nodes if n.op != "input"]
    with h5py.File(os.fspath(path), "w") as f:
        write_string_list(f, "layer_names", [n.name for n in layers])
        for n in layers:
            group = f.create_group(n.name)
            names = [f"{n.name}/{key}:0" for key in n.weight_shapes]
            write_string_list(group, "weight_names", names)
            for key, wname in zip(n.weight_shapes, names):
                group.create_dataset(wname, data=np.asarray(n.weights[key], dtype=np.float32))


# ----------------------------------------------------------------------------- full-model files

MAX_CONFIG_BYTES = 64 << 20
MAX_WEIGHTS_BYTES = 16 << 30


def parse_config_json(text, where):
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ModelError(f"{where}: the model config is not valid JSON: {e}") from None


def read_h5_model_config(path) -> dict:
    """The ``model_config`` JSON of a legacy full-model ``.h5``, parsed."""
    h5py = h5py_module()

    with h5py.File(path, "r") as f:
        raw = f.attrs["model_config"]
    if isinstance(raw, np.ndarray) and raw.shape == ():
        raw = raw[()]
    if isinstance(raw, (bytes, np.bytes_)):
        raw = raw.decode("utf8")
    if not isinstance(raw, str) or len(raw) > MAX_CONFIG_BYTES:
        raise ModelError(f"{path}: the 'model_config' attribute is not a JSON string")
    return parse_config_json(raw, path)
