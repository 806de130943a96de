"""Fuzzing the ONNX importer: mutated real files raise only the project's own errors (or import and run)."""

import functools
import io
import warnings

import numpy as np
import onnx
import pytest
import torch
from helpers import assert_clear_error, fill_weights, toy_graph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nets.errors import KernelnetsError
from nets.io.onnx import OnnxModel, onnx_to_graph
from nets.io.onnx.export import export_onnx_bytes

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
OPS = ["Conv", "Relu", "Clip", "MaxPool", "AveragePool", "Add", "Mul", "Concat", "Gemm", "Flatten", "Reshape",
       "Transpose", "Softmax", "Pad", "Identity", "Shape", "Gather", "Slice", "Sigmoid", "BatchNormalization", "Cast",
       "ReduceMean", "ReduceMax", "Div", "Unsqueeze", "Sum", "Split", "Squeeze", "LayerNormalization", "LRN", "Gelu",
       "HardSigmoid", "HardSwish", "Erf", "Tanh", "Pow", "Sub"]


class Dynamo(torch.nn.Module):
    """What torch.onnx.export(dynamo=True) writes for ShuffleNet / ConvNeXt idioms: Reshape to [-1, ...], a
    rank-5 channel shuffle, Split, LayerNorm between Transposes, GELU, the decomposed LocalResponseNorm, a
    sigmoid gate, hard sigmoid, a per-channel Mul between computed tensors, Squeeze / Unsqueeze, grouped
    convolutions."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1, groups=1)
        self.grouped = torch.nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.ln = torch.nn.LayerNorm(4)
        self.lrn = torch.nn.LocalResponseNorm(3)
        self.fc = torch.nn.Linear(8 * 5 * 4, 3)

    def forward(self, x):
        y = self.grouped(torch.relu(self.conv(x)))
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, -1, h, w)
        a, b = y.chunk(2, dim=1)
        a = torch.nn.functional.gelu(self.ln(a.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        y = torch.cat([a, self.lrn(b) * torch.sigmoid(b)], 1)
        g = torch.nn.functional.hardsigmoid(y.mean((2, 3))).unsqueeze(-1).unsqueeze(-1)
        return self.fc(torch.flatten(y * g + y[:, :, :, :], 1))


def dynamo_file() -> bytes:
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = os.path.join(d, "m.onnx")
        torch.onnx.export(Dynamo().eval(), (torch.zeros(2, 3, 5, 4),), path, dynamo=True, verbose=False,
                          external_data=False,
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
        with open(path, "rb") as f:
            return f.read()


@functools.lru_cache(maxsize=None)
def real_files() -> tuple:
    """Our export of the toy graph (every runtime op), a PyTorch (TorchScript) export with shape arithmetic, and
    a dynamo export of today's idioms."""
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.pad = torch.nn.ZeroPad2d((0, 1, 1, 0))
            self.conv = torch.nn.Conv2d(3, 4, 3, stride=2, groups=1)
            self.dw = torch.nn.Conv2d(4, 4, 3, padding=1, groups=4)
            self.fc = torch.nn.Linear(4 * 2 * 2, 5)

        def forward(self, x):
            y = torch.nn.functional.leaky_relu(self.dw(torch.relu(self.conv(self.pad(x)))), 0.2)
            y = torch.nn.functional.avg_pool2d(y, 2, 1, ceil_mode=True)
            return torch.softmax(self.fc(y.reshape(y.size(0), -1)), 1)

    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), torch.zeros(1, 3, 7, 6), f, dynamo=False, opset_version=17)
    return export_onnx_bytes(fill_weights(toy_graph(True))), f.getvalue(), dynamo_file()


def import_and_run(data) -> None:
    """Only KernelnetsError may escape, naming the file (import) or the model (run) and what was wrong;
    a model that imports must also run (if it is small)."""
    try:
        graph, interface = onnx_to_graph(data, name="fuzz.onnx")
    except KernelnetsError as e:
        assert_clear_error(e, "fuzz.onnx")
        return
    if max(int(np.prod(s)) for s in graph.shapes.values()) > 200_000:
        return
    try:
        model = OnnxModel(graph, interface, device="reference")
        x = np.random.default_rng(0).normal(size=(1, *model.interface_shape)).astype(np.float32)
        model(x)
    except KernelnetsError as e:
        assert_clear_error(e, repr(graph.name), *(repr(n.name) for n in graph.nodes))


def test_unmutated_files_import_and_run():
    for data in real_files():
        graph, interface = onnx_to_graph(data, name="fuzz.onnx")
        assert len(graph.nodes) > 5
        import_and_run(data)


@FUZZ
@given(which=st.sampled_from([0, 1, 2]), cut=st.floats(0, 1), flips=st.lists(
    st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6))
def test_byte_mutations(which, cut, flips):
    data = bytearray(real_files()[which])
    for where, value in flips:
        data[int(where * len(data))] = value
    if cut < 0.3:
        data = data[: int(cut / 0.3 * len(data))]
    import_and_run(bytes(data))


def _ints():
    return st.one_of(st.integers(-3, 8), st.sampled_from([0, 1 << 20, 1 << 40, -(1 << 40)]))


@FUZZ
@given(which=st.sampled_from([0, 1, 2]), data=st.data())
def test_proto_mutations(which, data):
    mutate_and_run(onnx.load_from_string(real_files()[which]), data)


@pytest.fixture(scope="module")
def keras_file() -> bytes:
    """Keras' own export (dynamic batch): Casts everywhere, shape arithmetic on Shape(x), edge Pads."""
    from tests.test_onnx_keras import small_keras_onnx

    return small_keras_onnx(False)[0]


def test_unmutated_keras_file_imports_and_runs(keras_file):
    assert len(onnx_to_graph(keras_file, name="fuzz.onnx")[0].nodes) > 10
    import_and_run(keras_file)


@FUZZ
@given(data=st.data())
def test_keras_file_mutations(keras_file, data):
    if data.draw(st.booleans()):
        blob = bytearray(keras_file)
        for _ in range(data.draw(st.integers(1, 6))):
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
        import_and_run(bytes(blob))
    else:
        mutate_and_run(onnx.load_from_string(keras_file), data)


def mutate_and_run(m, data):
    """1-3 random edits of attributes, op types, dims, wiring; then import (and run) the model."""
    nodes = m.graph.node
    for _ in range(data.draw(st.integers(1, 3))):
        kind = data.draw(st.sampled_from(["attr", "op", "dims", "input_dims", "drop", "rewire"]))
        node = nodes[data.draw(st.integers(0, len(nodes) - 1))]
        if kind == "attr" and len(node.attribute):
            a = node.attribute[data.draw(st.integers(0, len(node.attribute) - 1))]
            if a.type == onnx.AttributeProto.INTS:
                n = data.draw(st.integers(0, 5))
                del a.ints[:]
                a.ints.extend(data.draw(st.lists(_ints(), min_size=n, max_size=n)))
            elif a.type == onnx.AttributeProto.INT:
                a.i = data.draw(_ints())
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = data.draw(st.floats(allow_nan=True, allow_infinity=True, width=32))
            elif a.type == onnx.AttributeProto.STRING:
                a.s = data.draw(st.sampled_from([b"SAME_UPPER", b"SAME_LOWER", b"VALID", b"NOTSET", b"bogus"]))
        elif kind == "op":
            node.op_type = data.draw(st.sampled_from(OPS))
        elif kind == "dims" and len(m.graph.initializer):
            t = m.graph.initializer[data.draw(st.integers(0, len(m.graph.initializer) - 1))]
            if len(t.dims):
                t.dims[data.draw(st.integers(0, len(t.dims) - 1))] = data.draw(_ints())
        elif kind == "input_dims":
            dims = m.graph.input[0].type.tensor_type.shape.dim
            dims[data.draw(st.integers(0, len(dims) - 1))].dim_value = data.draw(_ints()) % (1 << 62)
        elif kind == "drop":
            nodes.remove(node)
        elif kind == "rewire" and len(node.input):
            node.input[data.draw(st.integers(0, len(node.input) - 1))] = data.draw(st.sampled_from(
                [o for n in nodes for o in n.output] + [t.name for t in m.graph.initializer] + ["nowhere"]))
    import_and_run(m)


@pytest.mark.parametrize("blob", [b"\x00" * 50, b"\x0a\xff\xff\xff\xff\x0f", bytes(range(256)) * 4])
def test_garbage_blobs(blob):
    with pytest.raises(KernelnetsError, match="fuzz.onnx"):
        onnx_to_graph(blob, name="fuzz.onnx")
