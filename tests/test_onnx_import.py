"""ONNX import: imported models, run on our kernels, agree with ONNX Runtime on the same file."""

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import fill_weights, toy_graph
from onnx import TensorProto, helper, numpy_helper

from nets.cli import main
from nets.errors import InputError, ModelError, UnsupportedError, WeightsError
from nets.io.onnx import OnnxModel, load_onnx, onnx_to_graph
from nets.io.onnx.export import export_onnx_bytes


def ort_run(data: bytes, x: np.ndarray) -> list:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def rel_err(got, want) -> float:
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def check(data: bytes, x: np.ndarray, tol=1e-4, device="cpu"):
    graph, interface = onnx_to_graph(data, name="test.onnx")
    model = OnnxModel(graph, interface, device=device)
    got, want = model(x), ort_run(data, x)
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        assert rel_err(g, w) <= tol, rel_err(g, w)
    return model


def torch_onnx(module: torch.nn.Module, shape, opset=17, dynamic_batch=True) -> bytes:
    torch.manual_seed(0)
    module.eval()
    with torch.no_grad():        # non-trivial BN statistics and biases
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.3)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        axes = {"x": {0: "N"}, "y": {0: "N"}} if dynamic_batch else None
        torch.onnx.export(module, torch.zeros(shape), f, dynamo=False, opset_version=opset, input_names=["x"],
                          output_names=["y"], dynamic_axes=axes)
    return f.getvalue()


def rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ----------------------------------------------------------------------------- our exports (NHWC interface)

@pytest.mark.parametrize("top", [True, False])
def test_toy_graph_roundtrip(top):
    g = fill_weights(toy_graph(top))
    model = check(export_onnx_bytes(g), rand(2, 19, 17, 3))
    assert model.layout == "NHWC" and model.input_shape == (19, 17, 3)
    # the NHWC -> NCHW Transposes become layout changes, not nodes
    assert "transpose" not in {n.op for n in model.source_graph.nodes}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vgg16", "vgg19", "resnet50", "inception_v3", "xception", "mobilenet"])
def test_zoo_exports_import(name):
    import nets

    source = nets.load(name, device="reference").source_graph
    data = export_onnx_bytes(source)
    shape = source.shapes[source.inputs[0]]
    x = np.random.default_rng(1).uniform(-1, 1, (1, *shape)).astype(np.float32)
    check(data, x)


# ----------------------------------------------------------------------------- PyTorch modules (NCHW)

class Blocks(torch.nn.Module):
    """Conv with stride/padding, BN after a pool (stays a node), ReLU, residual Add, Concat, Linear."""

    def __init__(self, pool):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.c3 = torch.nn.Conv2d(8, 5, (1, 3), padding=(0, 1))
        self.bn = torch.nn.BatchNorm2d(13)
        self.pool = pool
        self.fc = torch.nn.Linear(13 * 4 * 3, 6)

    def forward(self, x):
        y = torch.relu(self.c1(x))
        y = torch.relu(self.c2(y) + y)
        y = torch.cat([y, self.c3(y)], 1)
        y = self.bn(self.pool(y))
        return torch.softmax(self.fc(torch.flatten(y, 1)), 1)


@pytest.mark.parametrize("pool", ["max", "avg_incl", "avg_excl", "max_ceil"])
def test_torch_blocks(pool):
    p = {"max": torch.nn.MaxPool2d(3, 2, 1), "avg_incl": torch.nn.AvgPool2d(3, 2, 1, count_include_pad=True),
         "avg_excl": torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False),
         "max_ceil": torch.nn.MaxPool2d(2, 2, ceil_mode=True)}[pool]
    data = torch_onnx(Blocks(p), (1, 3, 15, 11))
    model = check(data, rand(3, 3, 15, 11))
    assert model.layout == "NCHW" and model.interface_shape == (3, 15, 11)
    ops = {n.op for n in model.source_graph.nodes}
    assert {"conv2d", "batch_norm", "add", "concat", "dense", "softmax"} <= ops


class Mobile(torch.nn.Module):
    """Depthwise (multiplier 1 and 2), ReLU6 (Clip), LeakyReLU, ZeroPad2d (Pad), adaptive pool, affine."""

    def __init__(self):
        super().__init__()
        self.pad = torch.nn.ZeroPad2d((0, 1, 2, 1))
        self.dw = torch.nn.Conv2d(3, 6, 3, stride=2, groups=3)
        self.bn = torch.nn.BatchNorm2d(6)
        self.dw2 = torch.nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.pw = torch.nn.Conv2d(6, 10, 1)
        self.head = torch.nn.Linear(10, 4)

    def forward(self, x):
        x = (x - torch.tensor([0.5, -0.2, 0.1]).view(1, 3, 1, 1)) * 2.0
        y = torch.nn.functional.relu6(self.bn(self.dw(self.pad(x))))
        y = torch.nn.functional.leaky_relu(self.dw2(y), 0.1)
        y = torch.nn.functional.adaptive_avg_pool2d(self.pw(y), 1)
        return self.head(y.view(y.size(0), -1))


def test_torch_mobile_ops():
    """Fixed batch 1: ``view(size(0), -1)`` exports as a Reshape to the constant [1, -1]."""
    model = check(torch_onnx(Mobile(), (1, 3, 17, 14), dynamic_batch=False), 3 * rand(1, 3, 17, 14))
    ops = [n.op for n in model.source_graph.nodes]
    assert "depthwise_conv2d" in ops and "zero_pad" in ops and "global_avg_pool" in ops


def test_torch_map_output_stays_nchw():
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 6, 3, stride=2, padding=2), torch.nn.ReLU(),
                              torch.nn.Conv2d(6, 5, 2))
    x = rand(2, 4, 9, 10)
    model = check(torch_onnx(net, (1, 4, 9, 10)), x)
    with torch.no_grad():
        assert model(x).shape == tuple(net(torch.from_numpy(x)).shape)


def test_unsupported_nodes_listed_together():
    """Every node the runtime cannot run is named in one error, also after an unsupported one (its readers
    are not reported again)."""
    class Bad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dil = torch.nn.Conv2d(4, 8, 3, dilation=2)

        def forward(self, x):
            y = torch.sin(x) + torch.erf(x)                   # Erf alone is no GELU
            y = torch.nn.functional.interpolate(y, scale_factor=2.0)
            return self.dil(y).mean() + x.mean() + torch.relu(y).sum()

    with pytest.raises(UnsupportedError) as e:
        onnx_to_graph(torch_onnx(Bad(), (1, 4, 8, 8)), name="bad.onnx")
    msg = str(e.value)
    for what in ("bad.onnx", "Sin", "Erf", "Resize", "ReduceMean over axes [0, 1, 2, 3]", "ReduceSum"):
        assert what in msg, what


# ----------------------------------------------------------------------------- graphs written with onnx.helper

def make(nodes, inits, x_shape, y_name="y", opset=17, x_name="x"):
    x = helper.make_tensor_value_info(x_name, TensorProto.FLOAT, x_shape)
    y = helper.make_tensor_value_info(y_name, TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]
    g = helper.make_graph(nodes, "g", [x], [y], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    return m.SerializeToString()


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET"])
@pytest.mark.parametrize("op", ["Conv", "MaxPool", "AveragePool"])
def test_auto_pad_modes(op, auto_pad):
    attrs = dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad=auto_pad)
    if auto_pad == "NOTSET":
        attrs["pads"] = [1, 0, 2, 1]
    inputs = ["x", "w", "b"] if op == "Conv" else ["x"]
    node = helper.make_node(op, inputs, ["y"], name="layer", **attrs)
    inits = {"w": rand(5, 4, 3, 2, seed=1), "b": rand(5, seed=2)} if op == "Conv" else {}
    check(make([node], inits, [None, 4, 9, 8]), rand(2, 4, 9, 8))


@pytest.mark.parametrize("variant", ["transB", "plain", "alpha_beta_row_bias", "scalar_bias", "matmul_add"])
def test_gemm_matmul_after_nchw_flatten(variant):
    """Flatten of a 3x2 map: the dense weight rows must follow ONNX's C, H, W element order."""
    w = rand(24, 7, seed=3)
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Flatten", ["r"], ["f"], name="flat")]
    inits = {"w": w}
    if variant == "transB":
        inits = {"w": np.ascontiguousarray(w.T), "c": rand(7, seed=4)}
        nodes.append(helper.make_node("Gemm", ["f", "w", "c"], ["y"], transB=1))
    elif variant == "plain":
        nodes.append(helper.make_node("Gemm", ["f", "w"], ["y"]))
    elif variant == "alpha_beta_row_bias":
        inits["c"] = rand(1, 7, seed=5)
        nodes.append(helper.make_node("Gemm", ["f", "w", "c"], ["y"], alpha=0.5, beta=2.0))
    elif variant == "scalar_bias":
        inits["c"] = np.array(0.25, np.float32)
        nodes.append(helper.make_node("Gemm", ["f", "w", "c"], ["y"]))
    else:
        inits["c"] = rand(7, seed=6)
        nodes += [helper.make_node("MatMul", ["f", "w"], ["m"]), helper.make_node("Add", ["m", "c"], ["y"])]
    check(make(nodes, inits, [None, 4, 3, 2]), rand(3, 4, 3, 2))


def test_pad_opset11_and_clip_softmax_old_opsets():
    pads = np.array([0, 0, 1, 0, 0, 0, 2, 3], np.int64)
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
             helper.make_node("Conv", ["p", "w"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Clip", ["c", "lo", "hi"], ["y"])]
    inits = {"pads": pads, "w": rand(6, 2, 3, 3, seed=7), "lo": np.float32(0), "hi": np.float32(6)}
    check(make(nodes, inits, [None, 2, 5, 4]), 3 * rand(2, 2, 5, 4))
    old = [helper.make_node("Clip", ["x"], ["c"], min=0.0, max=6.0), helper.make_node("Flatten", ["c"], ["f"]),
           helper.make_node("Softmax", ["f"], ["y"], axis=1)]
    check(make(old, {}, [None, 3, 2, 2], opset=10), 4 * rand(2, 3, 2, 2))


def test_vector_ops_follow_the_nchw_flatten_order():
    """BN, constants and LeakyReLU on a flattened NCHW map act per ONNX element, whatever our order."""
    c = 2 * 3 * 2
    nodes = [helper.make_node("GlobalMaxPool", ["x"], ["g"]), helper.make_node("Flatten", ["g"], ["gf"]),
             helper.make_node("Identity", ["x"], ["i"]), helper.make_node("Dropout", ["i"], ["d"]),
             helper.make_node("Flatten", ["d"], ["f"]),
             helper.make_node("BatchNormalization", ["f", "s", "b", "m", "v"], ["bn"], epsilon=1e-3),
             helper.make_node("Sub", ["k", "bn"], ["sub"]), helper.make_node("Div", ["sub", "k2"], ["div"]),
             helper.make_node("LeakyRelu", ["div"], ["lr"], alpha=0.3),
             helper.make_node("Concat", ["lr", "gf"], ["cat"], axis=1),
             helper.make_node("Gemm", ["cat", "w"], ["y"])]
    inits = {"s": rand(c, seed=1), "b": rand(c, seed=2), "m": rand(c, seed=3), "v": 1 + rand(c, seed=4) ** 2,
             "k": rand(c, seed=5), "k2": np.float32(1.5), "w": rand(c + 2, 5, seed=6)}
    model = check(make(nodes, inits, [None, 2, 3, 2]), rand(3, 2, 3, 2))
    assert {"dropout", "identity"}.isdisjoint(n.op for n in model.source_graph.nodes)


def test_nhwc_input_transpose_and_reshape_back():
    """The layout our exporter writes: NHWC in, Transpose, a spread Reshape, Transpose back."""
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("MaxPool", ["t"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Transpose", ["p"], ["n"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["n", "s1"], ["f"]),
             helper.make_node("Reshape", ["f", "s2"], ["h"]),
             helper.make_node("Transpose", ["h"], ["y"], perm=[0, 3, 1, 2])]
    inits = {"s1": np.array([0, -1], np.int64), "s2": np.array([0, 2, 3, 5], np.int64)}
    model = check(make(nodes, inits, [None, 4, 6, 5]), rand(2, 4, 6, 5))
    assert model.layout == "NHWC"


def test_load_onnx_file_and_input_errors(tmp_path):
    path = tmp_path / "m.onnx"
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[1, 1], name="conv")
    path.write_bytes(make([node], {"w": rand(2, 3, 1, 1)}, [None, 3, 4, 5]))
    model = load_onnx(path, device="reference")
    assert model.weights_source == str(path) and model(rand(1, 3, 4, 5)).shape == (1, 2, 4, 5)
    with pytest.raises(InputError, match=r"\(N, 3, 4, 5\) \(NCHW"):
        model(rand(1, 4, 5, 3))
    with pytest.raises(InputError, match="float32"):
        model(rand(1, 3, 4, 5).astype(np.float64))


# ----------------------------------------------------------------------------- bad files

def small_model_bytes():
    return export_onnx_bytes(fill_weights(toy_graph(True)))


def test_truncated_and_not_onnx_files(tmp_path):
    data = small_model_bytes()
    for i, blob in enumerate([data[: len(data) // 2], data[:100], b"hello, not a model\n" * 3, b""]):
        p = tmp_path / f"bad{i}.onnx"
        p.write_bytes(blob)
        with pytest.raises((WeightsError, ModelError), match=f"bad{i}.onnx"):
            load_onnx(p)
    h5 = tmp_path / "weights.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(WeightsError, match="HDF5"):
        load_onnx(h5)
    with pytest.raises(WeightsError, match="cannot read"):
        load_onnx(tmp_path / "missing.onnx")


def test_absurd_dims_refused_before_allocating():
    node = helper.make_node("Relu", ["x"], ["y"])
    with pytest.raises(ModelError, match="absurd"):
        onnx_to_graph(make([node], {}, [1, 3, 1 << 20, 1 << 20]), name="huge.onnx")
    pad = [helper.make_node("Pad", ["x", "p"], ["y"])]
    with pytest.raises(ModelError, match="absurd"):
        onnx_to_graph(make(pad, {"p": np.array([0, 0, 1 << 19, 1 << 19] * 2, np.int64)}, [1, 3, 8, 8]))
    # weights are judged against the bytes the file holds for them, whatever their element count
    for dims, raw, msg in (([1 << 20, 1 << 20, 4, 4], b"", "needs 70368744177664 bytes, the file holds 0"),
                           ([8, 3, 3, 3], bytes(40), "needs 864 bytes")):
        m = onnx.load_from_string(make([helper.make_node("Conv", ["x", "w"], ["y"])], {}, [1, 3, 8, 8]))
        t = m.graph.initializer.add()
        t.name, t.data_type, t.raw_data = "w", TensorProto.FLOAT, raw
        t.dims.extend(dims)
        with pytest.raises(WeightsError, match=f"w.onnx: tensor 'w'.*{msg}"):
            onnx_to_graph(m, name="w.onnx")


def test_shape_mismatch_names_the_layer():
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv_a")
    with pytest.raises(ModelError, match="conv_a.*input channels"):
        onnx_to_graph(make([node], {"w": rand(4, 5, 3, 3)}, [1, 3, 8, 8]), name="m.onnx")


# ----------------------------------------------------------------------------- nets export

def test_cli_export_runs_in_onnxruntime(tmp_path, capsys):
    import nets

    out = tmp_path / "mobilenet.onnx"
    argv = ["export", "mobilenet", str(out), "--input-shape", "64,64,3", "--alpha", "0.25", "--classes", "9"]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    ours = nets.load("mobilenet", input_shape=(64, 64, 3), alpha=0.25, classes=9, device="cpu")(x)
    got = ort_run(out.read_bytes(), x)[0]
    assert got.shape == (2, 9) and rel_err(got, ours) <= 1e-4
    assert main(["export", "mobilenet", str(tmp_path / "no" / "x.onnx"), "--alpha", "0.25"]) == 1
    assert "cannot write" in capsys.readouterr().err


# ----------------------------------------------------------------------------- patterns of Keras' own exports

def test_float_casts_pass_through_and_other_casts_are_refused():
    """Keras wraps layers in float32 -> float32 Casts (the input layout is read past them)."""
    nodes = [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["c"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w"], ["y"], kernel_shape=[3, 3])]
    model = check(make(nodes, {"w": rand(4, 3, 3, 3)}, [None, 7, 6, 3]), rand(2, 7, 6, 3))
    assert model.layout == "NHWC"
    nodes[0] = helper.make_node("Cast", ["x"], ["c"], name="to_int", to=TensorProto.INT64)
    with pytest.raises(UnsupportedError, match="to_int.*Cast of a computed float32 tensor to ONNX type 7"):
        onnx_to_graph(make(nodes, {"w": rand(4, 3, 3, 3)}, [None, 7, 6, 3]))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("op,opset", [("ReduceMean", 13), ("ReduceMean", 18), ("ReduceMax", 18)])
def test_reduce_over_spatial_axes_is_a_global_pool(layout, keepdims, op, opset):
    axes = [2, 3] if layout == "NCHW" else [1, -2]
    attrs, inits, ins = {"keepdims": keepdims}, {}, ["t"]
    if opset < 18:
        attrs["axes"] = axes
    else:
        inits["axes"], ins = np.array(axes, np.int64), ["t", "axes"]
    first = (helper.make_node("Relu", ["x"], ["t"]) if layout == "NCHW" else
             helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]))
    nodes = [first, helper.make_node(op, ins, ["y"], **attrs)]
    model = check(make(nodes, inits, [None, 5, 4, 3], opset=opset), rand(2, 5, 4, 3))
    assert f"global_{'avg' if op == 'ReduceMean' else 'max'}_pool" in {n.op for n in model.source_graph.nodes}
    bad = [first, helper.make_node(op, ["t"], ["y"], name="over_c", axes=[1, 2, 3])]
    with pytest.raises(UnsupportedError, match="over_c.*only the two spatial axes"):
        onnx_to_graph(make(bad, {}, [None, 5, 4, 3], opset=13))


def shape_reshape(extra=()):
    """Keras' Flatten with a dynamic batch: Reshape(x, Concat(Unsqueeze(Shape(x)[0]), [-1]))."""
    return [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Shape", ["r"], ["s"]),
            helper.make_node("Gather", ["s", "zero"], ["n"], axis=0), *extra,
            helper.make_node("Unsqueeze", ["n", "zeros"], ["n1"]),
            helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
            helper.make_node("Reshape", ["r", "target"], ["f"], name="flat"),
            helper.make_node("Gemm", ["f", "w"], ["y"])]


def test_reshape_keeps_a_dynamic_batch_read_from_shape():
    inits = {"zero": np.array(0, np.int64), "zeros": np.array([0], np.int64), "minus1": np.array([-1], np.int64),
             "w": rand(30, 4)}
    data = make(shape_reshape(), inits, [None, 2, 5, 3])
    for n in (1, 4):
        check(data, rand(n, 2, 5, 3, seed=n))
    # arithmetic on the batch size cannot be folded: refused, naming the layer
    inits["two"] = np.array(2, np.int64)
    bad = make(shape_reshape([helper.make_node("Mul", ["n", "two"], ["n2"], name="double")]), inits, [None, 2, 5, 3])
    m = onnx.load_from_string(bad)
    next(n for n in m.graph.node if n.op_type == "Unsqueeze").input[0] = "n2"
    with pytest.raises(UnsupportedError, match="double.*Mul computes with the dynamic batch size"):
        onnx_to_graph(m)


def test_integer_division_in_shape_arithmetic_truncates():
    """Keras' 'same' padding arithmetic divides int64 shapes; ONNX integer Div rounds toward zero."""
    nodes = [helper.make_node("Div", ["minus3", "two"], ["q"]), helper.make_node("Sub", ["one", "q"], ["top"]),
             helper.make_node("Concat", ["z2", "top", "z5"], ["pads"], axis=0),
             helper.make_node("Pad", ["x", "pads"], ["y"], mode="constant")]
    inits = {"minus3": np.array([-3], np.int64), "two": np.array([2], np.int64), "one": np.array([1], np.int64),
             "z2": np.zeros(2, np.int64), "z5": np.zeros(5, np.int64)}
    model = check(make(nodes, inits, [None, 2, 3, 4]), rand(1, 2, 3, 4))
    assert model.interface_shape == (2, 3, 4) and model(rand(1, 2, 3, 4)).shape == (1, 2, 5, 4)


@pytest.mark.parametrize("pads,ok", [([0, 0, 0, 1], True), ([1, 0, 2, 1], True), ([0, 0, 0, 2], True),
                                     ([0, 0, 0, 3], False), ([2, 0, 0, 0], True), ([0, 3, 0, 0], False)])
def test_edge_pad_before_max_pool(pads, ok):
    """torch Keras' uneven 'same' max pooling: an edge Pad changes no window's maximum while every window
    still holds a real cell."""
    t, l, b, r = pads
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], name="edge", mode="edge"),
             helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[3, 3], strides=[2, 2])]
    data = make(nodes, {"pads": np.array([0, 0, t, l, 0, 0, b, r], np.int64)}, [None, 2, 6, 7])
    if ok:
        check(data, rand(2, 2, 6, 7))
    else:
        with pytest.raises(UnsupportedError, match="window holds padding only"):
            onnx_to_graph(data)
    nodes[1] = helper.make_node("Relu", ["p"], ["y"])
    with pytest.raises(UnsupportedError, match="edge.*only constant zeros, and edge right before MaxPool"):
        onnx_to_graph(make(nodes, {"pads": np.array([0, 0, t, l, 0, 0, b, r], np.int64)}, [None, 2, 6, 7]))


def test_pool_padding_as_large_as_the_window_is_refused():
    node = helper.make_node("MaxPool", ["x"], ["y"], name="wide", kernel_shape=[2, 2], pads=[0, 2, 0, 0])
    with pytest.raises(UnsupportedError, match="wide.*padding .* as large as the"):
        onnx_to_graph(make([node], {}, [None, 2, 6, 7]))
