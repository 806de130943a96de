"""nets.io.keras.legacy_h5 and nets.zoo.seeded: the legacy Keras .h5 loader and writer, and seeded
weights, checked against Keras' own arrays and against kernels.reference forward passes."""

import h5py
import numpy as np
import pytest
from keras_utils import keras, keras_forward, randomize_keras_model, write_legacy_h5

from kernels import reference as ref
from nets.errors import WeightsError
from nets.graph.builder import GraphBuilder
from nets.io.keras import load_h5_weights, save_h5_weights
from nets.zoo.seeded import seeded_array, seeded_weights

L = keras.layers


# ----------------------------------------------------------------------------- twins: graph + Keras

def conv_bn_dense(prefix="", classes=5, top=True, filters=6, bn_scale=True):
    """The same small net as a kernelnets graph and as a Keras model, with the same layer names."""
    n = lambda s: prefix + s
    b = GraphBuilder("cbd")
    x = b.input((9, 9, 3), name="in")
    x = b.conv2d(x, filters, 3, strides=2, padding="same", name=n("conv1"))
    x = b.batch_norm(x, epsilon=1.001e-5, scale=bn_scale, name=n("bn1"))
    x = b.relu(x, name=n("relu1"))
    y = b.conv2d(x, filters, 1, name=n("conv2"))
    x = b.add([x, y], name=n("add"))
    x = b.global_avg_pool(x, name=n("gap"))
    if top:
        x = b.dense(x, classes, name=n("fc"))
    g = b.build(x)

    i = keras.Input((9, 9, 3), name="in")
    k = L.Conv2D(filters, 3, strides=2, padding="same", name=n("conv1"))(i)
    k = L.BatchNormalization(epsilon=1.001e-5, scale=bn_scale, name=n("bn1"))(k)
    k = L.ReLU(name=n("relu1"))(k)
    k2 = L.Conv2D(filters, 1, name=n("conv2"))(k)
    k = L.Add(name=n("add"))([k, k2])
    k = L.GlobalAveragePooling2D(name=n("gap"))(k)
    if top:
        k = L.Dense(classes, name=n("fc"))(k)
    return g, keras.Model(i, k)


def separable_net():
    """Depthwise (with multiplier 2), separable, and a BN without gamma (InceptionV3's scale=False)."""
    b = GraphBuilder("sep")
    x = b.input((8, 8, 4), name="in")
    x = b.depthwise_conv2d(x, 3, strides=2, padding="same", depth_multiplier=2, name="dw")
    x = b.batch_norm(x, scale=False, name="dw_bn")
    x = b.relu(x, max_value=6, name="dw_relu")
    x = b.separable_conv2d(x, 5, 3, padding="same", use_bias=False, name="sep")
    x = b.batch_norm(x, name="sep_bn")
    g = b.build(b.dense(b.global_avg_pool(x, name="gap"), 3, name="fc"))

    i = keras.Input((8, 8, 4), name="in")
    k = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, name="dw")(i)
    k = L.BatchNormalization(scale=False, name="dw_bn")(k)
    k = L.ReLU(6.0, name="dw_relu")(k)
    k = L.SeparableConv2D(5, 3, padding="same", use_bias=False, name="sep")(k)
    k = L.BatchNormalization(name="sep_bn")(k)
    k = L.Dense(3, name="fc")(L.GlobalAveragePooling2D(name="gap")(k))
    return g, keras.Model(i, k)


def ref_forward(graph, x):
    """A plain interpreter over kernels.reference for the ops these tests use."""
    vals = {graph.inputs[0]: x}
    for n in graph.nodes:
        a, w = n.attrs, n.weights
        xs = [vals[v] for v in n.inputs]
        if n.op == "input":
            continue
        if n.op == "conv2d":
            y = ref.conv2d(xs[0], w["kernel"], w.get("bias"), a["strides"], a["pad"], a["act"])
        elif n.op == "depthwise_conv2d":
            y = ref.depthwise_conv2d(xs[0], w["depthwise_kernel"], w.get("bias"), a["strides"], a["pad"],
                                     a["act"])
        elif n.op == "separable_conv2d":
            y = ref.separable_conv2d(xs[0], w["depthwise_kernel"], w["pointwise_kernel"], w.get("bias"),
                                     a["strides"], a["pad"], a["act"])
        elif n.op == "batch_norm":
            y = ref.batch_norm(xs[0], w.get("gamma"), w.get("beta"), w["moving_mean"], w["moving_variance"],
                               a["epsilon"])
        elif n.op == "activation":
            y = ref.activation(xs[0], a["act"])
        elif n.op == "add":
            y = ref.add(xs[0], xs[1])
        elif n.op == "global_avg_pool":
            y = ref.global_avg_pool(xs[0])
        elif n.op == "dense":
            y = ref.dense(xs[0], w["kernel"], w.get("bias"), a["act"])
        else:
            raise NotImplementedError(n.op)
        vals[n.output] = y
    return vals[graph.outputs[0]]


def assert_matches_keras(graph, model, rename=None):
    """Every node holds exactly its Keras layer's get_weights(), in order."""
    rename = rename or {}
    for node in graph.weighted_nodes():
        expected = model.get_layer(rename.get(node.name, node.name)).get_weights()
        got = list(node.weights.values())
        assert len(got) == len(expected), node.name
        for g, e in zip(got, expected):
            assert g.dtype == np.float32 and g.flags.c_contiguous
            np.testing.assert_array_equal(g, e, err_msg=node.name)


def x_for(model, seed=3):
    shape = (2,) + tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- loading

@pytest.mark.parametrize("make", [conv_bn_dense, separable_net])
def test_load_by_name_matches_keras(tmp_path, make):
    g, m = make()
    randomize_keras_model(m, seed=1)
    write_legacy_h5(m, tmp_path / "w.h5")
    load_h5_weights(g, tmp_path / "w.h5")
    assert "matched by name" in g.weights_source
    assert_matches_keras(g, m)
    x = x_for(m)
    np.testing.assert_allclose(ref_forward(g, x), keras_forward(m, x), rtol=1e-4, atol=1e-5)


def test_written_file_has_official_layout(tmp_path):
    g, m = separable_net()
    write_legacy_h5(m, tmp_path / "w.h5")
    with h5py.File(tmp_path / "w.h5", "r") as f:
        assert [s.decode() for s in f.attrs["layer_names"]] == [lay.name for lay in m.layers]
        assert [s.decode() for s in f["dw"].attrs["weight_names"]] == ["dw/depthwise_kernel:0", "dw/bias:0"]
        assert [s.decode() for s in f["dw_bn"].attrs["weight_names"]] == [
            "dw_bn/beta:0", "dw_bn/moving_mean:0", "dw_bn/moving_variance:0"]
        assert f["sep/sep/pointwise_kernel:0"].shape == (1, 1, 8, 5)
        assert len(f["dw_relu"].attrs["weight_names"]) == 0
    m2 = separable_net()[1]
    m2.load_weights(tmp_path / "w.h5")           # Keras itself reads what we write
    for a, b in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_load_by_order_with_auto_numbered_names(tmp_path):
    g, m = conv_bn_dense()
    randomize_keras_model(m, seed=2)
    # Keras-1/2 auto names; alphabetical key order would put conv2d_10 before conv2d_2.
    rename = {"conv1": "conv2d_2", "bn1": "batch_normalization_1", "conv2": "conv2d_10", "fc": "dense_1"}
    write_legacy_h5(m, tmp_path / "old.h5", layer_names=rename)
    load_h5_weights(g, tmp_path / "old.h5")
    assert "matched by order" in g.weights_source
    assert_matches_keras(g, m)


def test_chunked_layer_names(tmp_path):
    g, m = conv_bn_dense()
    randomize_keras_model(m, seed=4)
    write_legacy_h5(m, tmp_path / "c.h5", chunk_limit=16)
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert "layer_names" not in f.attrs and "layer_names0" in f.attrs and "layer_names1" in f.attrs
    load_h5_weights(g, tmp_path / "c.h5")
    assert_matches_keras(g, m)


def test_names_without_colon_and_keras3_writer(tmp_path):
    from keras.src.legacy.saving import legacy_h5_format

    g, m = separable_net()
    randomize_keras_model(m, seed=5)
    write_legacy_h5(m, tmp_path / "nocolon.h5", with_colon=False)
    load_h5_weights(g, tmp_path / "nocolon.h5")
    assert_matches_keras(g, m)
    # Keras 3's own legacy writer: 'dw/kernel' names, no ':0', a top_level_model_weights group.
    g2 = separable_net()[0]
    with h5py.File(tmp_path / "k3.h5", "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, m)
    load_h5_weights(g2, tmp_path / "k3.h5")
    assert_matches_keras(g2, m)


def test_full_model_file(tmp_path):
    g, m = conv_bn_dense()
    randomize_keras_model(m, seed=6)
    m.save(tmp_path / "model.h5")                  # legacy full-model save: weights in 'model_weights'
    with h5py.File(tmp_path / "model.h5", "r") as f:
        assert "model_weights" in f and "layer_names" not in f.attrs
    load_h5_weights(g, tmp_path / "model.h5")
    assert_matches_keras(g, m)


def test_notop_file_and_extra_layers(tmp_path):
    full_g, full_m = conv_bn_dense()
    notop_g, notop_m = conv_bn_dense(top=False)
    randomize_keras_model(full_m, seed=7)
    write_legacy_h5(full_m, tmp_path / "full.h5")
    load_h5_weights(notop_g, tmp_path / "full.h5")      # by name: the file's extra 'fc' is ignored
    assert_matches_keras(notop_g, full_m)
    # by order an extra layer is an error
    renamed = {"conv1": "conv2d_1", "bn1": "batch_normalization_1", "conv2": "conv2d_2", "fc": "dense_1"}
    write_legacy_h5(full_m, tmp_path / "old.h5", layer_names=renamed)
    with pytest.raises(WeightsError, match="weighted layers"):
        load_h5_weights(conv_bn_dense(top=False)[0], tmp_path / "old.h5")
    # a _notop file lacks the top: fine without it, an error naming 'fc' with it
    write_legacy_h5(notop_m, tmp_path / "notop.h5")
    load_h5_weights(conv_bn_dense(top=False)[0], tmp_path / "notop.h5")
    with pytest.raises(WeightsError) as e:
        load_h5_weights(full_g, tmp_path / "notop.h5")
    msg = str(e.value)
    assert "notop.h5" in msg and "'fc'" in msg and "1 of the graph's 4" in msg and "_notop" in msg


# ----------------------------------------------------------------------------- errors

def test_missing_layers_lists_at_most_ten(tmp_path):
    _, m = conv_bn_dense()
    write_legacy_h5(m, tmp_path / "small.h5")
    b = GraphBuilder("big")
    x = b.input((4, 4, 3), name="in")
    for k in range(14):
        x = b.conv2d(x, 3, 1, name=f"extra_{k}")
    with pytest.raises(WeightsError) as e:
        load_h5_weights(b.build(x), tmp_path / "small.h5")
    msg = str(e.value)
    assert "14 of the graph's 14" in msg and "'extra_9'" in msg and "'extra_10'" not in msg
    assert "4 more" in msg and "small.h5" in msg


def test_wrong_shape_names_file_layer_and_shapes(tmp_path):
    g, _ = conv_bn_dense(filters=6)
    _, m = conv_bn_dense(filters=4)
    write_legacy_h5(m, tmp_path / "w.h5")
    with pytest.raises(WeightsError) as e:
        load_h5_weights(g, tmp_path / "w.h5")
    msg = str(e.value)
    assert "w.h5" in msg and "'conv1'" in msg and "(3, 3, 3, 6)" in msg and "(3, 3, 3, 4)" in msg
    assert all(not n.weights for n in g.nodes)          # nothing assigned on failure


def test_shape_error_by_order_names_both_layers(tmp_path):
    g, _ = conv_bn_dense(filters=6)
    _, m = conv_bn_dense(prefix="old_", filters=4)
    write_legacy_h5(m, tmp_path / "w.h5")
    with pytest.raises(WeightsError) as e:
        load_h5_weights(g, tmp_path / "w.h5")
    msg = str(e.value)
    assert "'conv1'" in msg and "'old_conv1'" in msg and "matched by order" in msg and "(3, 3, 3, 4)" in msg


def test_weight_count_mismatch(tmp_path):
    g, _ = conv_bn_dense(bn_scale=True)
    _, m = conv_bn_dense(bn_scale=False)
    write_legacy_h5(m, tmp_path / "w.h5")
    with pytest.raises(WeightsError) as e:
        load_h5_weights(g, tmp_path / "w.h5")
    msg = str(e.value)
    assert "'bn1'" in msg and "3 arrays" in msg and "expects 4" in msg and "w.h5" in msg


def test_unreadable_files(tmp_path):
    g, m = conv_bn_dense()
    with pytest.raises(WeightsError, match="nope.h5.*no such"):
        load_h5_weights(g, tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("not an hdf5 file\n" * 100)
    with pytest.raises(WeightsError, match="text.h5.*HDF5"):
        load_h5_weights(g, tmp_path / "text.h5")
    write_legacy_h5(m, tmp_path / "whole.h5")
    data = (tmp_path / "whole.h5").read_bytes()
    (tmp_path / "half.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="half.h5"):
        load_h5_weights(g, tmp_path / "half.h5")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(WeightsError, match="plain.h5.*layer_names"):
        load_h5_weights(g, tmp_path / "plain.h5")
    m.save_weights(tmp_path / "new.weights.h5")
    with pytest.raises(WeightsError, match="Keras 3"):
        load_h5_weights(g, tmp_path / "new.weights.h5")
    assert all(not n.weights for n in g.nodes)


# ----------------------------------------------------------------------------- seeded weights, saving

def test_seeded_weights_deterministic_and_bn_nontrivial():
    g1, g2, g3 = (conv_bn_dense()[0] for _ in range(3))
    seeded_weights(g1, seed=0)
    seeded_weights(g2, seed=0)
    seeded_weights(g3, seed=1)
    assert g1.weights_source.startswith("seeded (untrained)")
    for a, b, c in zip(g1.weighted_nodes(), g2.weighted_nodes(), g3.weighted_nodes()):
        assert set(a.weights) == set(a.weight_shapes)
        for key, shape in a.weight_shapes.items():
            assert a.weights[key].shape == shape and a.weights[key].dtype == np.float32
            np.testing.assert_array_equal(a.weights[key], b.weights[key])
            assert not np.array_equal(a.weights[key], c.weights[key])
    bn = g1.node("bn1").weights
    assert 0.5 <= bn["gamma"].min() and bn["gamma"].max() <= 1.5 and bn["gamma"].std() > 0.1
    assert 0.5 <= bn["moving_variance"].min() and bn["moving_variance"].max() <= 1.5
    assert np.abs(bn["moving_mean"]).max() > 0.01 and np.abs(bn["beta"]).max() > 0.01


def test_seeded_kernels_are_he_uniform():
    """Kernels: U(-a, a), a = sqrt(3 gain / fan_in): the variance of He normal (gain 2; 1 for the
    pointwise half of a separable conv), drawn ~4x faster."""
    for name, shape, fan_in, gain in [("kernel", (3, 3, 64, 128), 576, 2.0), ("kernel", (512, 300), 512, 2.0),
                                      ("pointwise_kernel", (1, 1, 96, 256), 96, 1.0),
                                      ("depthwise_kernel", (3, 3, 512, 1), 9, 2.0)]:
        a = seeded_array("layer", name, shape, seed=3)
        assert a.shape == shape and a.dtype == np.float32
        limit = np.sqrt(3 * gain / fan_in)
        assert np.abs(a).max() <= limit * (1 + 1e-6)
        assert abs(a.std() / np.sqrt(gain / fan_in) - 1) < 0.03, (name, a.std())
        assert abs(a.mean()) < 0.05 * limit
        assert np.abs(a).max() > 0.99 * limit and (a < 0).mean() > 0.45          # fills the range, both signs


def residual_tower(blocks, width=16):
    b = GraphBuilder("tower")
    x = b.input((8, 8, width), name="in")
    for k in range(blocks):
        y = b.conv2d(x, width, 3, padding="same", name=f"b{k}_conv1")
        y = b.relu(b.batch_norm(y, name=f"b{k}_bn1"), name=f"b{k}_relu1")
        y = b.separable_conv2d(y, width, 3, padding="same", name=f"b{k}_sep")
        y = b.batch_norm(y, name=f"b{k}_bn2")
        x = b.relu(b.add([x, y], name=f"b{k}_add"), name=f"b{k}_out")
    return b.build(b.dense(b.global_avg_pool(x, name="gap"), 10, name="fc"))


def test_seeded_activations_stay_order_one_through_depth():
    g = seeded_weights(residual_tower(40))                  # 160 weighted layers
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 16)).astype(np.float32)
    logits = ref_forward(g, x)
    assert 0.1 < logits.std() < 10, logits.std()


def test_save_load_round_trip_and_keras_reads_it(tmp_path):
    g, m = separable_net()
    seeded_weights(g, seed=9)
    save_h5_weights(g, tmp_path / "rt.h5")
    g2 = separable_net()[0]
    load_h5_weights(g2, tmp_path / "rt.h5")
    for a, b in zip(g.weighted_nodes(), g2.weighted_nodes()):
        for key in a.weight_shapes:
            np.testing.assert_array_equal(a.weights[key], b.weights[key])
    m.load_weights(tmp_path / "rt.h5")
    assert_matches_keras(g, m)
    x = x_for(m)
    np.testing.assert_allclose(ref_forward(g, x), keras_forward(m, x), rtol=1e-4, atol=1e-5)


def test_save_chunks_long_layer_lists(tmp_path):
    b = GraphBuilder("long")
    x = b.input((1, 1, 2), name="in")
    for k in range(700):
        x = b.batch_norm(x, name=f"bn_{k:04d}_" + "x" * 90)      # 700 x ~100 bytes > 64 KB
    g = seeded_weights(b.build(x))
    save_h5_weights(g, tmp_path / "long.h5")
    with h5py.File(tmp_path / "long.h5", "r") as f:
        assert "layer_names" not in f.attrs and "layer_names1" in f.attrs
    g2 = seeded_weights(b.build(x), seed=5)
    load_h5_weights(g2, tmp_path / "long.h5")
    np.testing.assert_array_equal(g2.nodes[-1].weights["gamma"], g.nodes[-1].weights["gamma"])


def test_save_refuses_missing_weights(tmp_path):
    g, _ = conv_bn_dense()
    with pytest.raises(WeightsError, match="no \\(or incomplete\\) weights"):
        save_h5_weights(g, tmp_path / "x.h5")


# ----------------------------------------------------------------------------- the Keras harness

def test_randomize_keras_model_is_seeded_and_nontrivial():
    _, m1 = separable_net()
    _, m2 = separable_net()
    randomize_keras_model(m1, seed=3)
    randomize_keras_model(m2, seed=3)
    for a, b in zip(m1.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)
    gamma, beta, mean, var = m1.get_layer("sep_bn").get_weights()
    assert gamma.std() > 0.1 and np.abs(mean).max() > 0.01 and var.min() >= 0.5 and np.abs(beta).max() > 0.01
    y = keras_forward(m1, x_for(m1))
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape == (2, 3)


@pytest.mark.slow
def test_randomized_resnet50_logits_are_order_one():
    m = keras.applications.ResNet50(weights=None, classifier_activation=None)
    randomize_keras_model(m, seed=0)
    bn = m.get_layer("conv2_block1_1_bn").get_weights()
    assert bn[0].std() > 0.1 and bn[3].min() >= 0.5
    logits = keras_forward(m, np.random.default_rng(1).uniform(-1, 1, (2, 224, 224, 3)))
    assert 0.1 < logits.std() < 10, logits.std()
