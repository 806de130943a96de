"""Every generation of keras.applications weight files loads into the zoo graphs with the right numbers.

Same-shaped layers can be swapped without any shape error, so each naming scheme is checked numerically:
a Keras model carrying that generation's names (and, for the Keras 2.2 ResNet50, its architecture's layer
order and BatchNorm epsilon) is randomised, written in the legacy layout, loaded with ``nets.load`` and
its logits compared with Keras' at 1e-4 relative. Small inputs and class counts keep each test short.
"""

import numpy as np
import pytest
from keras_utils import keras, keras_forward, randomize_keras_model, write_legacy_h5

import nets
from nets import zoo
from nets.errors import WeightsError
from nets.io.keras.legacy_h5 import file_generation, load_h5_weights

L = keras.layers


def rel_err(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def inputs_for(model, seed=4):
    shape = (2,) + tuple(model.inputs[0].shape[1:])
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


def compare(kmodel, name, path, **options):
    x = inputs_for(kmodel)
    want = keras_forward(kmodel, x)
    ours = nets.load(name, weights=str(path), classifier_activation=None, threads=2, **options)
    got = ours(x)
    assert got.shape == want.shape
    return rel_err(got, want), ours


# ----------------------------------------------------------------------------- Keras 2.2 ResNet50

def old_resnet50(input_shape, classes, include_top=True):
    """keras_applications 1.0.x ResNet50: Caffe names, BN epsilon 1e-3, add([main, shortcut])."""
    bn = lambda name: L.BatchNormalization(epsilon=1e-3, name=name)

    def block(x, filters, stage, letter, strides=1, project=False):
        conv, norm = f"res{stage}{letter}_branch", f"bn{stage}{letter}_branch"
        y = L.Conv2D(filters, 1, strides=strides, name=conv + "2a")(x)
        y = L.Activation("relu")(bn(norm + "2a")(y))
        y = L.Conv2D(filters, 3, padding="same", name=conv + "2b")(y)
        y = L.Activation("relu")(bn(norm + "2b")(y))
        y = bn(norm + "2c")(L.Conv2D(4 * filters, 1, name=conv + "2c")(y))
        if project:
            x = bn(norm + "1")(L.Conv2D(4 * filters, 1, strides=strides, name=conv + "1")(x))
        return L.Activation("relu")(L.Add()([y, x]))

    i = keras.Input(input_shape)
    x = L.ZeroPadding2D(3, name="conv1_pad")(i)
    x = L.Activation("relu")(bn("bn_conv1")(L.Conv2D(64, 7, strides=2, name="conv1")(x)))
    x = L.MaxPooling2D(3, strides=2)(L.ZeroPadding2D(1, name="pool1_pad")(x))
    for stage, blocks in zip((2, 3, 4, 5), (3, 4, 6, 3)):
        filters = 64 << (stage - 2)
        for k in range(blocks):
            x = block(x, filters, stage, "abcdef"[k], 2 if k == 0 and stage > 2 else 1, project=k == 0)
    x = L.GlobalAveragePooling2D(name="avg_pool")(x)
    if include_top:
        x = L.Dense(classes, name="fc1000")(x)
    return keras.Model(i, x)


@pytest.mark.slow
@pytest.mark.parametrize("top", [True, False], ids=["top", "notop"])
def test_keras22_resnet50_names_order_and_epsilon(tmp_path, top):
    kmodel = old_resnet50((64, 64, 3), 10, include_top=top)
    randomize_keras_model(kmodel, seed=2, calib_input=inputs_for(kmodel))
    path = tmp_path / "resnet50_old.h5"
    write_legacy_h5(kmodel, path)
    options = dict(input_shape=(64, 64, 3), classes=10) if top else dict(input_shape=(64, 64, 3),
                                                                           include_top=False, pooling="avg")
    err, ours = compare(kmodel, "resnet50", path, **options)
    assert err <= 1e-4
    g = ours.source_graph
    assert g.weights_generation == "keras2.2-resnet"
    assert {n.attrs["epsilon"] for n in g.nodes if n.op == "batch_norm"} == {1e-3}

    # The old file lists the main branch's last 1x1 conv before the same-shaped shortcut conv, so
    # loading it by order would swap layers without any shape error: only names get it right.
    file_order = [lay.name for lay in kmodel.layers if lay.weights]
    assert file_order.index("res2a_branch2c") < file_order.index("res2a_branch1")
    ours_order = [n.name for n in g.weighted_nodes()]
    assert ours_order.index("conv2_block1_0_conv") < ours_order.index("conv2_block1_3_conv")

    # With the current epsilon the numbers drift past the tolerance: the epsilon really matters.
    for n in g.nodes:
        if n.op == "batch_norm":
            n.attrs["epsilon"] = 1.001e-5
    x = inputs_for(kmodel)
    drift = rel_err(nets.Model(g, threads=2)(x), keras_forward(kmodel, x))
    assert drift > 1e-4


def test_keras22_resnet_names_need_a_resnet_graph(tmp_path):
    kmodel = old_resnet50((32, 32, 3), 3)
    path = tmp_path / "old.h5"
    write_legacy_h5(kmodel, path)
    with pytest.raises(WeightsError, match="Keras 2.2 ResNet50.*conv4_block7_1_conv"):
        load_h5_weights(zoo.build("resnet101", input_shape=(32, 32, 3), classes=3), path)


# ----------------------------------------------------------------------------- auto-generated names

def renamed(model, scheme):
    """Layer name -> auto-generated name, numbered per class from 0 or 1 as Keras numbered them: in
    creation order, which for auto-named layers is the order of their current numeric suffixes (the
    explicitly named layers of Xception fall back to model.layers order)."""
    prefixes = {
        "keras1": {"Conv2D": "convolution2d", "SeparableConv2D": "separableconvolution2d",
                   "BatchNormalization": "batchnormalization", "Dense": "dense"},
        "keras2": {"Conv2D": "conv2d", "BatchNormalization": "batch_normalization", "Dense": "dense"},
    }[scheme.split("_")[0]]
    start = 1 if scheme.endswith("_1") else 0

    def created(item):
        index, layer = item
        tail = layer.name.rsplit("_", 1)[-1]
        return (int(tail) if tail.isdigit() else 0, index)

    counts, out = {}, {}
    for _, layer in sorted(enumerate(model.layers), key=created):
        prefix = prefixes.get(type(layer).__name__)
        if prefix is None:
            continue
        k = counts[prefix] = counts.get(prefix, start - 1) + 1
        out[layer.name] = prefix if k == 0 else f"{prefix}_{k}"
    return out


@pytest.mark.parametrize("top, colon", [(True, True), (False, False)], ids=["top", "notop-nocolon"])
def test_xception_keras1_names(tmp_path, top, colon):
    size = (71, 71, 3)
    kmodel = keras.applications.Xception(weights=None, input_shape=size, classes=7, include_top=top,
                                         pooling=None if top else "max", classifier_activation=None)
    randomize_keras_model(kmodel, seed=3, calib_input=inputs_for(kmodel))
    names = renamed(kmodel, "keras1_1")
    assert "separableconvolution2d_1" in names.values() and "convolution2d_4" in names.values()
    write_legacy_h5(kmodel, tmp_path / "x.h5", with_colon=colon, layer_names=names)
    options = dict(classes=7) if top else dict(include_top=False, pooling="max")
    err, ours = compare(kmodel, "xception", tmp_path / "x.h5", input_shape=size, **options)
    assert err <= 1e-4
    assert ours.source_graph.weights_generation == "keras1-auto"
    assert "matched by order" in ours.source_graph.weights_source


@pytest.mark.parametrize("scheme, top", [("keras2_1", True), ("keras2_0", False)],
                         ids=["from1-top", "from0-notop"])
def test_inception_v3_auto_names(tmp_path, scheme, top):
    size = (75, 75, 3)
    kmodel = keras.applications.InceptionV3(weights=None, input_shape=size, classes=5, include_top=top,
                                            pooling=None if top else "avg", classifier_activation=None)
    randomize_keras_model(kmodel, seed=5, calib_input=inputs_for(kmodel))
    names = renamed(kmodel, scheme)
    assert ("conv2d_94" in names.values()) == scheme.endswith("_1")
    write_legacy_h5(kmodel, tmp_path / "i.h5", layer_names=names)
    options = dict(classes=5) if top else dict(include_top=False, pooling="avg")
    err, ours = compare(kmodel, "inception_v3", tmp_path / "i.h5", input_shape=size, **options)
    assert err <= 1e-4
    g = ours.source_graph
    assert g.weights_generation == "auto"
    # Numbered from 0 the names are the zoo's own (a fresh Keras session's); from 1 they are all
    # shifted by one (conv2d_1 is our conv2d), so only order can match them.
    assert ("matched by order" in g.weights_source) == scheme.endswith("_1")


@pytest.mark.slow
def test_current_resnet50_names_chunked_without_colon(tmp_path):
    kmodel = keras.applications.ResNet50(weights=None, input_shape=(48, 48, 3), classes=6,
                                         classifier_activation=None)
    randomize_keras_model(kmodel, seed=6, calib_input=inputs_for(kmodel))
    write_legacy_h5(kmodel, tmp_path / "r.h5", with_colon=False, chunk_limit=1500)
    import h5py
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert "layer_names" not in f.attrs and "layer_names2" in f.attrs
    err, ours = compare(kmodel, "resnet50", tmp_path / "r.h5", input_shape=(48, 48, 3), classes=6)
    assert err <= 1e-4
    g = ours.source_graph
    assert g.weights_generation == "named" and "matched by name" in g.weights_source
    assert {n.attrs["epsilon"] for n in g.nodes if n.op == "batch_norm"} == {1.001e-5}


def test_file_generation_names():
    assert file_generation(["conv1", "bn_conv1", "res2a_branch2a"]) == "keras2.2-resnet"
    assert file_generation(["input_1", "convolution2d_1", "batchnormalization_1"]) == "keras1-auto"
    assert file_generation(["conv2d", "batch_normalization_3"]) == "auto"
    assert file_generation(["conv1_conv", "conv2_block1_1_conv"]) == "named"
