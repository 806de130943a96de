"""Which kind of model or weights file a path holds, decided by its content, not its extension.

    detect_format(path) -> one of FORMATS, or ModelError naming the file and what is wrong with it

    "keras_h5_weights"   legacy Keras HDF5 weights (root attribute ``layer_names``), as
                         keras.applications downloads them
    "keras_h5_model"     legacy Keras full-model HDF5 (root attribute ``model_config`` + a
                         ``model_weights`` group), as ``model.save("x.h5")`` writes it
    "keras3_weights"     Keras 3 ``.weights.h5`` (groups ``layers/<name>/vars``): weights without an
                         architecture
    "keras_archive"      Keras 3 ``.keras`` zip (``config.json`` + ``model.weights.h5``)
    "onnx"               an ONNX ModelProto (protobuf), recognised by walking its top-level fields

HDF5 files start with the signature ``\\x89HDF\\r\\n\\x1a\\n`` at offset 0, or at 512, 1024, 2048, ... when
the file has a user block. Zip archives start with ``PK\\x03\\x04``. ONNX has no magic number: a
ModelProto is a sequence of (tag, value) fields, and a file is taken for ONNX when its top-level fields
decode as ModelProto's field numbers and wire types, end exactly at the end of the file and include the
graph. Pickles are recognised only to be refused: nothing here is ever unpickled.

Readers of the Keras containers live here too: ``read_h5_model_config``, ``read_keras_archive`` (sizes
checked before members are read) and ``load_keras3_weights`` for the Keras 3 weights layout
(``layers/<snake_case class>[_N]/vars/<i>``; see ``nets.keras_import``).
"""

from __future__ import annotations

import json
import os
import re
import zipfile

import numpy as np

from nets.errors import ModelError, WeightsError
from nets.weights import h5_member, h5py_module

FORMATS = ("keras_h5_weights", "keras_h5_model", "keras3_weights", "keras_archive", "onnx")

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")

# ModelProto field number -> protobuf wire type (0 varint, 2 length-delimited).
_ONNX_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_ONNX_GRAPH_FIELD = 7


def _hdf5_offset(f, size: int) -> int | None:
    offset = 0
    while offset + 8 <= size:
        f.seek(offset)
        if f.read(8) == HDF5_SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def _hdf5_kind(path: str) -> str:
    try:
        import h5py
    except ImportError:
        raise ModelError(f"{path}: an HDF5 file; reading it needs the optional dependency h5py "
                         "(pip install h5py)") from None
    try:
        with h5py.File(path, "r") as f:
            attrs = set(f.attrs.keys())
            if "model_config" in attrs:
                return "keras_h5_model"
            if "layer_names" in attrs or "layer_names0" in attrs:
                return "keras_h5_weights"
            if "model_weights" in f:
                return "keras_h5_weights"
            if "layers" in f or "_layer_checkpoint_dependencies" in f:
                return "keras3_weights"
            keys = sorted(f.keys())[:5]
    except Exception as e:   # h5py raises OSError, KeyError, RuntimeError ... on damaged files
        raise ModelError(f"{path}: an HDF5 file that cannot be read (truncated or corrupt?): {e}") from None
    raise ModelError(f"{path}: an HDF5 file, but not a Keras one: no 'model_config' or 'layer_names' "
                     f"attribute and no 'layers' group (top-level groups: {keys})")


def _zip_kind(path: str) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise ModelError(f"{path}: a zip archive that cannot be read (truncated or corrupt?): {e}") from None
    if "config.json" in names:
        return "keras_archive"
    if any(n.endswith(".pkl") for n in names):
        raise ModelError(f"{path}: a zip archive holding pickles (a PyTorch checkpoint?); kernelnets "
                         "never unpickles files: export the model to ONNX or Keras instead")
    raise ModelError(f"{path}: a zip archive without 'config.json', so not a Keras '.keras' model "
                     f"(members: {names[:5]})")


def _varint(f) -> int | None:
    value, shift = 0, 0
    while shift < 64:
        b = f.read(1)
        if not b:
            return None
        value |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return value
        shift += 7
    return None


def _looks_like_onnx(f, size: int) -> tuple[bool, str]:
    """(ok, why not): walk ModelProto's top-level fields without reading their payloads."""
    f.seek(0)
    seen_graph = False
    fields = 0
    while f.tell() < size:
        tag = _varint(f)
        if tag is None:
            return False, "a field tag runs past the end of the file"
        number, wire = tag >> 3, tag & 7
        if _ONNX_FIELDS.get(number) != wire:
            return False, f"field {number} with wire type {wire} is not part of an ONNX ModelProto"
        value = _varint(f)
        if value is None:
            return False, f"field {number} runs past the end of the file"
        if wire == 2:
            if f.tell() + value > size:
                return False, f"field {number} claims {value} bytes, past the end of the file"
            f.seek(f.tell() + value)
        seen_graph |= number == _ONNX_GRAPH_FIELD
        fields += 1
    if not seen_graph:
        return False, "no graph field"
    return True, ""


def detect_format(path) -> str:
    """The format of the file at ``path`` (one of FORMATS), from its bytes."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise ModelError(f"{path}: not a regular file")
    size = os.path.getsize(path)
    if size == 0:
        raise ModelError(f"{path}: the file is empty")
    with open(path, "rb") as f:
        head = f.read(16)
        if _hdf5_offset(f, size) is not None:
            return _hdf5_kind(path)
        if head.startswith(ZIP_SIGNATURES):
            return _zip_kind(path)
        if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
            raise ModelError(f"{path}: a Python pickle; kernelnets never unpickles files")
        ok, why = _looks_like_onnx(f, size)
        if ok:
            return "onnx"
    if head[:1] == b"\x08":   # ir_version, the field every ONNX writer puts first
        raise ModelError(f"{path}: looks like an ONNX model but does not parse ({why}): truncated or corrupt?")
    if head.lstrip()[:1] == b"{":
        raise ModelError(f"{path}: a JSON file; a Keras architecture alone has no weights: give the '.keras' "
                         "archive or a full-model '.h5'")
    raise ModelError(f"{path}: unknown file format (first bytes {head[:8].hex(' ')}); expected a Keras "
                     "'.keras' archive, a Keras '.h5' model or weights file, or an ONNX model")



# ----------------------------------------------------------------------------- Keras containers

MAX_CONFIG_BYTES = 64 << 20
MAX_WEIGHTS_BYTES = 16 << 30


def _json(text, where):
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
    return _json(raw, path)


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
        config = _json(z.read("config.json").decode("utf8"), f"{path}:config.json")
        return config, z.read("model.weights.h5")


def _snake(cls: str) -> str:
    """Keras' file name for a class: DepthwiseConv2D -> depthwise_conv2d, ReLU -> re_lu."""
    s = re.sub(r"\W+", "", cls)
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", s)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", s).lower()


def _vars_groups(f, graph) -> dict:
    """Layer name -> its ``vars`` group in a Keras 3 weights file."""
    top = "layers" if "layers" in f else "_layer_checkpoint_dependencies"
    if top not in f:
        raise WeightsError("no 'layers' group: not a Keras 3 weights file")
    tagged = {}
    for key in f[top]:
        g = f[top][key]
        if hasattr(g, "keys") and "vars" in g and "name" in g["vars"].attrs:
            tagged[str(np.asarray(g["vars"].attrs["name"]).astype(str))] = g["vars"]
    groups, used = {}, {}
    for name, cls in graph.keras_layers:
        prefix = _snake(cls)
        k = used[prefix] = used.get(prefix, -1) + 1
        path = f"{top}/{prefix}" + (f"_{k}" if k else "") + "/vars"
        groups[name] = tagged[name] if name in tagged else (f[path] if path in f else None)
    return groups


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
            if not hasattr(ds, "dtype") or ds.dtype.kind != "f" or tuple(ds.shape) != tuple(shape):
                raise WeightsError(f"{where}: weight {wkey!r} expects a float array of shape {tuple(shape)}, "
                                   f"the file's vars/{k} is {getattr(ds, 'dtype', 'a group')} of shape "
                                   f"{getattr(ds, 'shape', None)}")
            arrays[wkey] = ds
        loaded[node.name] = arrays
    for node in graph.weighted_nodes():      # only now is any data read: every shape has been checked
        node.weights = {k: np.ascontiguousarray(ds[()], dtype=np.float32) for k, ds in loaded[node.name].items()}
    return graph





__all__ = ["FORMATS", "detect_format", "read_h5_model_config", "read_keras_archive", "load_keras3_weights"]
