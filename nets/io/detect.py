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

The readers of each format live with its importer (``nets.io.keras``, ``nets.io.onnx``).
"""

from __future__ import annotations

import os
import zipfile

from nets.errors import ModelError

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


__all__ = ["FORMATS", "detect_format"]
