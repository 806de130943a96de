"""An ONNX file as a runnable model that keeps the file's interface (layout, names, element order).

    from nets.io.onnx import load_onnx
    model = load_onnx("resnet50.onnx", device="cpu", threads=2)
    y = model(x_nchw)          # an NCHW model takes and returns NCHW arrays
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from nets.errors import InputError
from nets.graph.ir import Graph
from nets.io.onnx.converters import IDENT2, IDENT4, NCHW
from nets.io.onnx.proto import parse_onnx, read_onnx
from nets.io.onnx.reader import Importer
from nets.runtime.model import Model


@dataclass
class OnnxInterface:
    """How the file's input and outputs relate to the graph's NHWC values."""
    input_name: str
    input_perm: tuple               # ONNX input = IR input .transpose(input_perm)
    input_shape: tuple              # per sample, as the file declares it
    output_names: list
    outputs: list                   # _Val per output

    @property
    def layout(self) -> str:
        return {NCHW: "NCHW", IDENT4: "NHWC", IDENT2: "NF"}[self.input_perm]


def onnx_to_graph(source, name: str | None = None) -> tuple[Graph, OnnxInterface]:
    """An ONNX file path, bytes or ModelProto -> (source graph with weights, interface)."""
    base_dir = None             # external data is read only next to a model loaded from its path
    if isinstance(source, (bytes, bytearray)):
        m, src = parse_onnx(bytes(source), name or "<bytes>"), name or "<bytes>"
    elif isinstance(source, (str, os.PathLike)):
        m, src = read_onnx(source), os.fspath(source)
        base_dir = os.path.dirname(os.path.abspath(src))
    else:
        m, src = source, name or "<model>"
    imp = Importer(m, src, base_dir)
    graph, inp, outs, names = imp.run()
    return graph, OnnxInterface(imp.input_name, inp.perm, imp.shape(inp), names, outs)


class OnnxModel(Model):
    """A Model that speaks the ONNX file's layout: an NCHW model takes (N, C, H, W) and returns NCHW
    maps (outputs in the file's element order); ``input_shape`` stays the runtime's NHWC shape and
    ``interface_shape`` is what callers pass."""

    def __init__(self, graph: Graph, interface: OnnxInterface, **kw):
        super().__init__(graph, **kw)
        self.interface = interface
        self.layout = interface.layout
        self.output_names = list(interface.output_names)

    @property
    def interface_shape(self) -> tuple:
        return tuple(self.interface.input_shape)

    def check_input(self, x) -> np.ndarray:
        if self.interface.input_perm != NCHW:
            return super().check_input(x)
        if not isinstance(x, np.ndarray):
            raise InputError(f"model {self.name!r} expects a numpy array, got {type(x).__name__}")
        c, h, w = self.interface_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
            raise InputError(f"model {self.name!r} expects input of shape (N, {c}, {h}, {w}) (NCHW, as the ONNX "
                             f"file declares), got {tuple(x.shape)}")
        return super().check_input(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))

    def to_interface(self, outs: list) -> list:
        res = []
        for y, v in zip(outs, self.interface.outputs):
            if v.perm not in (IDENT4, IDENT2):
                y = y.transpose(v.perm)
            if v.order is not None:
                y = y.reshape(len(y), -1)[:, v.order]
            if v.view is not None:
                y = y.reshape((len(y),) + tuple(v.view))
            res.append(y.copy() if not y.flags.c_contiguous else y)
        return res


def load_onnx(path, device: str = "cpu", threads: int | None = None, fuse: bool = True, **model_kw) -> OnnxModel:
    """An ONNX model file as a runnable model (see ``OnnxModel`` for the input/output layout)."""
    graph, interface = onnx_to_graph(path)
    return OnnxModel(graph, interface, device=device, threads=threads, weights_source=os.fspath(path),
                     fuse=fuse, **model_kw)
