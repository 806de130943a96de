"""ONNX in and out: ``load_onnx`` / ``onnx_to_graph`` import a file (``proto`` parses it, ``reader`` walks
the graph with the per-op ``converters`` and constant ``fold``ing, ``model`` keeps the file's layout);
``export`` writes a graph as ONNX. ``onnx`` is an optional dependency, imported on use."""

from nets.io.onnx.model import OnnxInterface, OnnxModel, load_onnx, onnx_to_graph

__all__ = ["OnnxInterface", "OnnxModel", "load_onnx", "onnx_to_graph"]
