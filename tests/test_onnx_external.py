"""Weights outside the protobuf (ONNX external data, as files over 2 GB keep them) and big constants: read
only from files inside the model's folder, sizes judged against the file and the machine."""

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import nets
from nets.errors import ModelError, WeightsError
from nets.io.onnx import onnx_to_graph


def rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def conv_model(opset=17):
    """Conv -> Relu -> Flatten -> Gemm, every weight an initializer."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "fc", "fb"], ["y"], transB=1, name="fc")]
    inits = {"w": rand(6, 3, 3, 3, seed=1), "b": rand(6, seed=2), "fc": rand(5, 6 * 4 * 5, seed=3) * 0.1,
             "fb": rand(5, seed=4)}
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 5])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def save_external(m, folder, location="weights.bin"):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=True, location=location,
                    size_threshold=0)
    return path


def ort_run(path, x):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_external_data_next_to_the_model(tmp_path):
    path = save_external(conv_model(), tmp_path / "m")
    assert os.path.getsize(tmp_path / "m" / "weights.bin") > 4 * 6 * 27
    m = onnx.load(path, load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in m.graph.initializer)
    model = nets.load(path)
    for n in (1, 3):
        x = rand(n, 3, 4, 5, seed=n)
        want = ort_run(path, x)
        assert np.max(np.abs(model(x) - want)) <= 1e-5 * np.max(np.abs(want))


def _entries(m, **change):
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key in change:
                e.value = change[e.key](t, e.value) if callable(change[e.key]) else change[e.key]


@pytest.mark.parametrize("case", ["absolute", "dotdot", "symlink_out", "missing", "past_the_end", "length",
                                  "from_bytes"])
def test_external_data_is_read_only_from_inside_the_folder(tmp_path, case):
    outside = tmp_path / "outside"
    outside.mkdir()
    path = save_external(conv_model(), tmp_path / "m")
    m = onnx.load(path, load_external_data=False)
    secret = outside / "secret.bin"
    secret.write_bytes((tmp_path / "m" / "weights.bin").read_bytes())
    msg = {"absolute": "must be a relative path", "dotdot": "must be a relative path",
           "symlink_out": "leads outside the model's folder", "missing": "is missing next to the model",
           "past_the_end": "the file has", "length": "the external data entry says", "from_bytes": "from its path"}
    if case == "absolute":
        _entries(m, location=str(secret))
    elif case == "dotdot":
        _entries(m, location="../outside/secret.bin")
    elif case == "symlink_out":
        os.symlink(secret, tmp_path / "m" / "link.bin")
        _entries(m, location="link.bin")
    elif case == "missing":
        _entries(m, location="nothing_here.bin")
    elif case == "past_the_end":
        _entries(m, offset=lambda t, v: str(int(v) + 10_000))
    elif case == "length":
        _entries(m, length=lambda t, v: str(int(v) + 4))
    if case == "from_bytes":
        with pytest.raises(WeightsError, match=msg[case]):
            onnx_to_graph(m.SerializeToString(), name="m.onnx")
        return
    onnx.save_model(m, path)
    with pytest.raises(WeightsError, match=f"model.onnx: tensor .*{msg[case]}"):
        nets.load(path)


def test_a_symlink_inside_the_folder_is_fine(tmp_path):
    (tmp_path / "m" / "data").mkdir(parents=True)
    path = save_external(conv_model(), tmp_path / "m", location="data/weights.bin")
    os.rename(tmp_path / "m" / "data" / "weights.bin", tmp_path / "m" / "real.bin")
    os.symlink(tmp_path / "m" / "real.bin", tmp_path / "m" / "data" / "weights.bin")
    x = rand(2, 3, 4, 5)
    assert np.allclose(nets.load(path)(x), ort_run(path, x), rtol=1e-5, atol=1e-5)


def test_typed_values_are_counted_before_decoding():
    m = conv_model()
    t = next(t for t in m.graph.initializer if t.name == "fb")
    t.ClearField("raw_data")
    t.float_data.extend([1.0, 2.0])              # 2 values for 5 entries
    with pytest.raises(WeightsError, match="tensor 'fb': shape \\[5\\] declares 5 values .*the file holds 2"):
        onnx_to_graph(m, name="m.onnx")


def big_constant_model(shape):
    """A Gemm whose weight is ConstantOfShape(shape), as older model-zoo files store big FC layers."""
    value = numpy_helper.from_array(np.array([0.001], np.float32), "v")
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["wt"], value=value, name="make_fc1"),
             helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("Gemm", ["f", "wt"], ["y"], transB=1, name="fc1")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 512, 7, 7])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(np.array(shape, np.int64), "shape")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.slow
def test_vgg_sized_constant_of_shape_loads(tmp_path):
    """4096 x 25088 floats (411 MB) is VGG's own fc1: it loads and runs."""
    path = tmp_path / "fc1.onnx"
    onnx.save_model(big_constant_model([4096, 25088]), path)
    x = rand(1, 512, 7, 7)
    y = nets.load(path)(x)
    want = ort_run(str(path), x)
    assert y.shape == (1, 4096) and np.max(np.abs(y - want)) <= 1e-4 * np.max(np.abs(want))


def test_constants_larger_than_memory_are_refused():
    with pytest.raises(WeightsError, match="make_fc1.*ConstantOfShape constant of shape .* absurdly large for this "
                                           "machine: it needs .* GiB"):
        onnx_to_graph(big_constant_model([1 << 24, 1 << 24]), name="huge.onnx")
    with pytest.raises(ModelError, match=r"neg.onnx: layer 'make_fc1': ConstantOfShape of shape \[-1, 25088\]"):
        onnx_to_graph(big_constant_model([-1, 25088]), name="neg.onnx")
