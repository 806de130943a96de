"""ONNX tensors as numpy arrays, with sizes judged against what holds them: the file and the machine.

A tensor's bytes come from three places, each checked before anything is allocated:
- ``raw_data`` inside the model: its length must be exactly dims x item size;
- typed fields (``float_data``, ``int64_data``, ...): one entry per element;
- external data (models over 2 GB): ``location`` names a file *inside the model's folder* (no absolute
  path, no ``..``, no symlink that leads out), ``offset`` + dims x item size must lie inside that file,
  and only that slice is read.
A constant the importer computes (``ConstantOfShape``, a folded op) or an activation it plans is refused
when it needs more memory than the machine has available — never by a fixed element count: VGG's own fc1
weight is 4096 x 25088 floats.
"""

from __future__ import annotations

import math
import os

import numpy as np

from nets.errors import ModelError, WeightsError
from nets.io.onnx.proto import onnx_module, tensor_dtypes


def available_memory() -> int | None:
    """Bytes of memory the machine can still hand out (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return None


def gib(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):.3g} GiB" if nbytes >= 1 << 27 else f"{nbytes / (1 << 20):.3g} MiB"


def check_memory(nbytes: int, what: str, kind=ModelError):
    """Refuse ``what`` when its ``nbytes`` exceed the memory available now (sizes under 64 MiB pass unread)."""
    if nbytes < 1 << 26:
        return
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise kind(f"{what} is absurdly large for this machine: it needs {gib(nbytes)}, {gib(avail)} of memory "
                   "is available")


def decode(t, where: str, base_dir: str | None) -> np.ndarray:
    """An initializer / attribute tensor as a numpy array; WeightsError (naming ``where``) for anything the
    file cannot back."""
    onnx = onnx_module()
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise WeightsError(f"{where} has a negative dimension: {dims}")
    if t.data_type not in tensor_dtypes(onnx):
        raise WeightsError(f"{where} has ONNX data type {t.data_type}, which is not supported")
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).newbyteorder("<")
    size = math.prod(dims)
    nbytes = size * dtype.itemsize
    if t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data):
        return read_external(t, where, base_dir, dims, dtype)
    if t.HasField("raw_data"):
        if len(t.raw_data) != nbytes:
            raise WeightsError(f"{where}: shape {dims} needs {nbytes} bytes, the file holds {len(t.raw_data)}")
        return np.frombuffer(t.raw_data, dtype).reshape(dims).astype(dtype.newbyteorder("="))
    field = onnx.helper.tensor_dtype_to_field(t.data_type)
    held = len(getattr(t, field))
    if held != size:
        raise WeightsError(f"{where}: shape {dims} declares {size} values ({gib(nbytes)}), the file holds {held}")
    try:
        return np.array(onnx.numpy_helper.to_array(t))
    except (ValueError, TypeError) as e:      # pragma: no cover - counts were checked
        raise WeightsError(f"{where}: its values do not fill shape {dims}: {e}") from None


def external_path(location: str, where: str, base_dir: str | None) -> str:
    """The file ``location`` names, which must lie inside ``base_dir`` (after following symlinks)."""
    if base_dir is None:
        raise WeightsError(f"{where} keeps its data in an external file ({location!r}); load the model from its "
                           "path so the file can be found next to it")
    parts = location.replace("\\", "/").split("/")
    if not location or os.path.isabs(location) or location.startswith(("/", "\\")) or ".." in parts \
            or (len(location) > 1 and location[1] == ":"):
        raise WeightsError(f"{where}: external data location {location!r} must be a relative path inside the "
                           "model's folder")
    root = os.path.realpath(base_dir)
    path = os.path.realpath(os.path.join(root, location))
    if os.path.commonpath([root, path]) != root:
        raise WeightsError(f"{where}: external data {location!r} leads outside the model's folder (a symlink?)")
    if not os.path.isfile(path):
        raise WeightsError(f"{where}: external data file {location!r} is missing next to the model")
    return path


def read_external(t, where: str, base_dir: str | None, dims, dtype) -> np.ndarray:
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    path = external_path(location, where, base_dir)
    size = math.prod(dims)
    nbytes = size * dtype.itemsize
    try:
        offset = int(info.get("offset", 0))
        length = int(info["length"]) if "length" in info else nbytes
    except ValueError:
        raise WeightsError(f"{where}: external data offset/length {info.get('offset')!r}/{info.get('length')!r} "
                           "are not integers") from None
    if offset < 0 or length != nbytes:
        raise WeightsError(f"{where}: shape {dims} needs {nbytes} bytes, the external data entry says offset "
                           f"{offset}, length {length}")
    file_size = os.path.getsize(path)
    if offset + nbytes > file_size:
        raise WeightsError(f"{where}: bytes {offset}..{offset + nbytes} of {location!r} are needed, the file has "
                           f"{file_size}")
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            arr = np.fromfile(f, dtype, count=size)
    except OSError as e:
        raise WeightsError(f"{where}: cannot read external data {location!r}: {e.strerror or e}") from None
    if arr.size != size:                       # pragma: no cover - the file shrank while reading
        raise WeightsError(f"{where}: {location!r} ended early")
    return arr.reshape(dims).astype(dtype.newbyteorder("="), copy=False)
