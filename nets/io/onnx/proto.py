"""Reading ONNX protobufs: the optional ``onnx`` package (imported on use, with a clear error when it is
missing), whole-file parsing with errors that name the file, and the tensor types the importer reads."""

from __future__ import annotations

import os

from nets.errors import ModelError, WeightsError

DTYPE_NAMES = ("FLOAT", "UINT8", "INT8", "INT16", "INT32", "INT64", "BOOL", "FLOAT16", "DOUBLE")   # read


def tensor_dtypes(onnx) -> set[int]:
    """The TensorProto data types this reader decodes."""
    return {getattr(onnx.TensorProto, k) for k in DTYPE_NAMES}


def onnx_module():
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the environment
        raise ModelError("loading ONNX models needs the 'onnx' package: pip install onnx") from None
    return onnx


def parse_onnx(data: bytes, source: str = "<bytes>"):
    """Bytes -> ``onnx.ModelProto``; WeightsError for anything that is not a readable ONNX model."""
    if data[:8] == b"\x89HDF\r\n\x1a\n":
        raise WeightsError(f"{source}: this is an HDF5 (Keras .h5) file, not ONNX; pass it as weights= "
                           "together with an architecture name")
    if data[:4] == b"PK\x03\x04":
        raise WeightsError(f"{source}: this is a zip archive (a Keras .keras file?), not ONNX")
    if not data:
        raise WeightsError(f"{source}: the file is empty")
    m = onnx_module().ModelProto()
    try:
        m.ParseFromString(data)
    except Exception as e:   # protobuf's DecodeError and friends, whatever the implementation
        raise WeightsError(f"{source}: not a valid ONNX file (truncated or corrupt?): {e}") from None
    if not m.HasField("graph") or not m.graph.node or not m.opset_import:
        raise WeightsError(f"{source}: does not look like an ONNX model (no graph nodes or no opset)")
    return m


def read_onnx(path):
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read the file: {e.strerror or e}") from None
    return parse_onnx(data, path)
