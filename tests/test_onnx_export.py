"""ONNX export: the exported model, run in ONNX Runtime, agrees with the layer-by-layer interpreter."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import fill_weights, toy_graph

from nets.errors import UnsupportedError
from nets.graph.builder import GraphBuilder
from nets.graph.interpret import interpret
from nets.io.onnx.export import export_onnx, export_onnx_bytes, to_onnx_model


def run_ort(data: bytes, name: str, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {name: x})[0]


def rel_err(got, want) -> float:
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def check_export(g, batch=2, seed=3, tol=1e-5):
    onnx.checker.check_model(to_onnx_model(g))
    shape = g.shapes[g.inputs[0]]
    x = np.random.default_rng(seed).normal(size=(batch, *shape)).astype(np.float32)
    want = interpret(g, x)[g.outputs[0]]
    got = run_ort(export_onnx_bytes(g), g.inputs[0], x)
    assert got.shape == want.shape
    assert rel_err(got, want) <= tol
    return got


@pytest.mark.parametrize("top", [True, False])
@pytest.mark.parametrize("batch", [1, 3])
def test_toy_graph_matches_interpreter(top, batch):
    check_export(fill_weights(toy_graph(top)), batch=batch)


def test_model_interface_stays_nhwc(tmp_path):
    g = fill_weights(toy_graph(top=False))
    path = export_onnx(g, tmp_path / "toy.onnx")
    m = onnx.load(path)
    onnx.checker.check_model(m)
    (inp,), (out,) = m.graph.input, m.graph.output
    dims = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
    assert inp.name == "input_1" and dims(inp) == ["N", 19, 17, 3]
    assert out.name == g.outputs[0] and dims(out) == ["N", *g.shapes[g.outputs[0]]]
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("Transpose") == 2 and "BatchNormalization" in ops
    names = {n.name for n in m.graph.node}
    assert {"conv0", "bn0", "sep", "dw", "mixed", "post_bn"} <= names
    assert "drop" not in names


def _single(build, shape=(9, 11, 5)):
    b = GraphBuilder("single")
    x = b.input(shape, name="x")
    return fill_weights(b.build(build(b, x)), seed=7)


SINGLE_OPS = {
    "conv_stride2_same": lambda b, x: b.conv2d(x, 7, 3, strides=2, padding="same", activation="relu6"),
    "conv_asym_pad": lambda b, x: b.conv2d(b.zero_pad(x, ((0, 1), (2, 0))), 4, (2, 3), strides=(2, 1)),
    "depthwise_mult3": lambda b, x: b.depthwise_conv2d(x, 3, strides=2, padding="same", depth_multiplier=3),
    "separable_relu": lambda b, x: b.separable_conv2d(x, 6, 3, padding="same", depth_multiplier=2,
                                                      activation="relu"),
    "maxpool_same": lambda b, x: b.max_pool2d(x, 3, 2, padding="same"),
    "avgpool_exclude_pad": lambda b, x: b.avg_pool2d(x, 3, 1, padding="same"),
    "avgpool_include_pad": lambda b, x: b.avg_pool2d(x, 3, 2, padding="same", count_include_pad=True),
    "global_max": lambda b, x: b.global_max_pool(x),
    "global_avg_keepdims": lambda b, x: b.global_avg_pool(x, keepdims=True),
    "bn_no_center": lambda b, x: b.batch_norm(x, epsilon=1.001e-5, center=False),
    "channel_softmax": lambda b, x: b.softmax(x),
    # Keras flattens NHWC: a wrong element order only shows through the dense weights
    "flatten_dense": lambda b, x: b.dense(b.flatten(x), 13, activation="relu"),
    "reshape_map": lambda b, x: b.reshape(x, (11, 9, 5)),
    "reshape_mobilenet_head": lambda b, x: b.reshape(
        b.conv2d(b.reshape(b.global_avg_pool(x), (1, 1, 5)), 8, 1), (8,)),
    "dense_logits_then_softmax": lambda b, x: b.activation(b.dense(b.global_avg_pool(x), 4), "softmax"),
    "linear_output_map": lambda b, x: b.activation(b.dropout(x), "linear"),
    # the ops of issue 12's networks
    "grouped_conv": lambda b, x: b.conv2d(b.conv2d(x, 6, 1), 9, 3, strides=2, padding="same", groups=3,
                                          activation="relu"),
    "squeeze_excite_mul": lambda b, x: b.mul([x, b.dense(b.global_avg_pool(x), 5)]),
    "per_channel_add_keepdims": lambda b, x: b.add([x, b.global_max_pool(x, keepdims=True)]),
    "mul_same_shape_relu": lambda b, x: b.mul([x, b.conv2d(x, 5, 3, padding="same")], activation="relu"),
    "layer_norm_map": lambda b, x: b.layer_norm(x, epsilon=1e-6),
    "layer_norm_vector_no_center": lambda b, x: b.layer_norm(b.global_avg_pool(x), center=False),
    "lrn": lambda b, x: b.lrn(x, 3, alpha=0.01, beta=0.75, bias=2.0),
    "crop": lambda b, x: b.crop(x, ((1, 2), (0, 3))),
    "channel_gather": lambda b, x: b.channel_gather(x, [4, 0, 2, 2, 1, 3]),
    "dense_on_map": lambda b, x: b.dense(x, 7, activation="relu6"),
}


@pytest.mark.parametrize("case", sorted(SINGLE_OPS))
def test_single_op_graphs(case):
    check_export(_single(SINGLE_OPS[case]))


def test_missing_weights_and_unsupported_ops_are_reported():
    g = toy_graph()
    with pytest.raises(Exception, match="not loaded"):
        to_onnx_model(g)
    g = fill_weights(toy_graph())
    g.node("pool").op = "roi_align"
    g.node("mixed").op = "upsample"
    with pytest.raises(UnsupportedError, match=r"pool \(roi_align\).*mixed \(upsample\)"):
        to_onnx_model(g)


def _zoo_available():
    try:
        from nets import zoo  # noqa: F401
        from nets.zoo.seeded import seeded_weights  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "mobilenet"])
def test_zoo_network_matches_our_model(name):
    if not _zoo_available():
        pytest.fail("nets.zoo / nets.zoo.seeded are not importable")
    import nets

    model = nets.load(name, classifier_activation=None, threads=2)
    x = np.random.default_rng(5).normal(size=(2, *model.input_shape)).astype(np.float32)
    want = model(x)
    data = export_onnx_bytes(model.source_graph)
    got = run_ort(data, model.source_graph.inputs[0], x)
    assert got.shape == want.shape
    assert rel_err(got, want) <= 1e-4


def test_compare_ort_bench_runs_on_a_small_model():
    from helpers import load_script

    from nets.runtime.model import Model

    bench = load_script("bench/compare_ort.py")
    g = fill_weights(toy_graph())
    model = Model(g, device="reference")
    x = np.random.default_rng(4).normal(size=(2, 19, 17, 3)).astype(np.float32)
    macs = bench.graph_macs(g)
    row = bench.bench_config(model, export_onnx_bytes(g), x, 1, 2.0 * macs * 2, repeat=3, warmup=1, budget_s=5)
    assert "error" not in row and row["rounds"] == 3
    assert row["max_rel_err"] <= 1e-5
    assert row["ratio"] == pytest.approx(row["ours_ms"] / row["ort_ms"])
    table = bench.format_table([dict(row, model="toy", batch=2, threads=1),
                                {"model": "broken", "batch": 1, "threads": 1, "error": "ModelError: x"}], True)
    assert table.count("\n") == 3 and "| broken |" in table and "ModelError: x" in table


@pytest.mark.parametrize("opset", [17, 20])
@pytest.mark.parametrize("act", ["sigmoid", "tanh", "silu", "hard_sigmoid", "hard_silu", "gelu", "gelu_tanh"])
def test_activations_export_and_import_back(act, opset):
    """Each activation in ONNX Runtime (as an op, or as the arithmetic torch writes where the opset has no op),
    and read back by our importer as the one activation it is."""
    from nets.io.onnx import onnx_to_graph

    g = _single(lambda b, x: b.conv2d(x, 6, 3, activation=act))
    shape = g.shapes[g.inputs[0]]
    x = np.random.default_rng(2).normal(size=(2, *shape)).astype(np.float32) * 3
    want = interpret(g, x)[g.outputs[0]]
    data = export_onnx_bytes(g, opset=opset)
    onnx.checker.check_model(onnx.load_from_string(data))
    assert rel_err(run_ort(data, g.inputs[0], x), want) <= 1e-5
    back, _ = onnx_to_graph(data)
    assert [n.attrs["act"] for n in back.nodes if n.op == "activation"] == [act]
