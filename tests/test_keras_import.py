"""nets.io.keras and nets.io.detect: whole Keras models (``.keras`` archives and full-model ``.h5``) become
graphs without knowing the architecture, and their outputs match Keras'."""

import json
import pickle
import zipfile

import h5py
import numpy as np
import pytest
from keras_utils import keras, keras_forward, randomize_keras_model, write_legacy_h5

from nets.errors import KernelnetsError, ModelError, UnsupportedError, WeightsError
from nets.graph.interpret import interpret
from nets.io.detect import detect_format
from nets.io.keras import graph_from_keras_config, load_keras_model
from nets.io.keras.keras3 import _snake
from nets.runtime.model import Model

L = keras.layers


def rel_err(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


# ----------------------------------------------------------------------------- small models, every layer type

def convs_model():
    i = keras.Input((9, 9, 3), name="img")
    x = L.Rescaling(1 / 127.5, offset=-1, name="rescale")(i)
    x = L.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="conv")(x)
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=1, name="dw")(x)
    z = L.SeparableConv2D(6, 3, padding="same", depth_multiplier=2, name="sep")(x)
    x = L.Add(name="add3")([x, y, z])
    x = L.BatchNormalization(epsilon=1.001e-5, name="bn")(x)
    x = L.ReLU(6.0, name="relu6")(x)
    x = L.Conv2D(5, 1, use_bias=False, activation="relu6", name="pw_nobias")(x)
    x = L.BatchNormalization(center=False, name="bn_nocenter")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(4, activation="softmax", name="probs")(x)
    return keras.Model(i, x, name="convs")


def pools_model():
    i = keras.Input((11, 10, 4), name="img")
    x = L.Rescaling([0.5, 1.0, 2.0, -1.0], offset=[0.0, 0.1, 0.2, 0.3], name="per_channel")(i)
    x = L.ZeroPadding2D(((0, 1), (0, 1)), name="pad_br")(x)
    x = L.DepthwiseConv2D(3, strides=2, use_bias=False, name="dw_s2")(x)
    x = L.BatchNormalization(scale=False, name="bn_noscale")(x)
    x = L.Activation("relu", name="act")(x)
    a = L.MaxPooling2D(3, strides=2, padding="same", name="maxp")(x)
    b = L.AveragePooling2D(3, strides=2, padding="same", name="avgp")(x)   # padded cells not counted
    c = L.Conv2D(3, 3, strides=2, padding="same", name="conv_branch")(x)
    x = L.Concatenate(axis=3, name="cat")([a, b, c])
    x = L.ZeroPadding2D(1, name="pad1")(x)
    x = L.AveragePooling2D(2, name="avg_valid")(x)
    g = L.GlobalMaxPooling2D(keepdims=True, name="gmp")(x)
    g = L.Flatten(name="flat_g")(g)
    x = L.Flatten(name="flat")(x)
    x = L.Concatenate(name="cat_flat")([x, g])
    x = L.Dropout(0.5, name="drop")(x)
    x = L.Dense(12, activation="relu", name="fc1")(x)
    x = L.Reshape((3, 4), name="reshape")(x)
    x = L.Softmax(name="softmax")(x)
    return keras.Model(i, x, name="pools")


def sequential_model():
    return keras.Sequential([keras.Input((8, 8, 2)), L.Conv2D(4, 3, activation="relu", name="c1"),
                             L.MaxPooling2D(name="mp"), L.Flatten(name="fl"), L.Dense(3, name="out")],
                            name="seq")


def sequential_built_model():
    m = keras.Sequential([L.Conv2D(4, 3, name="c1"), L.GlobalAveragePooling2D(name="gap"), L.Dense(2, name="o")])
    m.build((None, 7, 7, 3))
    return m


MODELS = {"convs": convs_model, "pools": pools_model, "sequential": sequential_model,
          "sequential_built": sequential_built_model}


def randomized(make, seed=1):
    model = make()
    shape = (3,) + tuple(model.inputs[0].shape[1:])
    x = np.random.default_rng(seed).uniform(-2, 2, shape).astype(np.float32)
    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            for v in layer.weights:
                v.assign(np.random.default_rng(seed).normal(0, 0.3, tuple(v.shape)).astype(np.float32))
    else:
        randomize_keras_model(model, seed=seed, calib_input=x)
    return model, x


def check_against_keras(graph, model, x):
    want = keras_forward(model, x)
    got = Model(graph, threads=1)(x)
    assert got.shape == want.shape
    assert rel_err(got, want) <= 1e-4
    ref = interpret(graph, x)[graph.outputs[0]]
    assert rel_err(ref, want) <= 1e-5


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_small_models_match_keras(tmp_path, name, ext):
    model, x = randomized(MODELS[name])
    path = tmp_path / f"{name}{ext}"
    model.save(path)
    assert detect_format(path) == {".keras": "keras_archive", ".h5": "keras_h5_model"}[ext]
    g = load_keras_model(path)
    assert {n.name for n in g.nodes if n.op != "input"} >= {lay.name for lay in model.layers[1:]}
    check_against_keras(g, model, x)


def test_rescaling_is_a_constant_affine_not_a_weight(tmp_path):
    model, x = randomized(convs_model)
    model.save(tmp_path / "m.keras")
    g = load_keras_model(tmp_path / "m.keras")
    node = g.node("rescale")
    assert node.op == "batch_norm" and node.weight_shapes == {} and node.attrs["rescaling"]
    assert np.allclose(interpret(g, x, keep_all=True)["rescale"], x / 127.5 - 1, atol=1e-6)
    assert "rescale" not in [n.name for n in g.weighted_nodes()]


def test_format_detected_by_content_not_extension(tmp_path):
    model, x = randomized(convs_model)
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    (tmp_path / "m.keras").rename(tmp_path / "archive.bin")
    (tmp_path / "m.h5").rename(tmp_path / "model.keras")
    assert detect_format(tmp_path / "archive.bin") == "keras_archive"
    assert detect_format(tmp_path / "model.keras") == "keras_h5_model"
    for p in ("archive.bin", "model.keras"):
        check_against_keras(load_keras_model(tmp_path / p), model, x)
    write_legacy_h5(model, tmp_path / "w.dat")
    assert detect_format(tmp_path / "w.dat") == "keras_h5_weights"
    model.save_weights(tmp_path / "k3.weights.h5")
    assert detect_format(tmp_path / "k3.weights.h5") == "keras3_weights"


def test_onnx_detected(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    path = tmp_path / "m.bin"
    onnx.save(helper.make_model(graph), path)
    assert detect_format(path) == "onnx"
    data = path.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[:len(data) - 7])
    with pytest.raises(ModelError, match="ONNX.*(truncated|corrupt)"):
        detect_format(tmp_path / "cut.onnx")
    with pytest.raises(ModelError, match="not a whole Keras model"):
        load_keras_model(path)


def test_keras2_dialect_full_model_h5(tmp_path):
    """A Keras 2 config: inbound_nodes as [[name, 0, 0, {}]], batch_input_shape, class 'Model'."""
    model, x = randomized(pools_model)
    model.save(tmp_path / "k3.h5")
    with h5py.File(tmp_path / "k3.h5", "r") as f:
        cfg = json.loads(f.attrs["model_config"])
    cfg["class_name"] = "Model"
    body = cfg["config"]
    for lay in body["layers"]:
        refs = []
        for node in lay["inbound_nodes"]:
            stack = [node["args"]]
            while stack:
                item = stack.pop(0)
                if isinstance(item, dict) and item.get("class_name") == "__keras_tensor__":
                    refs.append(item["config"]["keras_history"] + [{}])
                elif isinstance(item, list):
                    stack[:0] = item
        lay["inbound_nodes"] = [refs] if lay["inbound_nodes"] else []
        if lay["class_name"] == "InputLayer":
            lay["config"]["batch_input_shape"] = lay["config"].pop("batch_shape")
    body["input_layers"] = [body["input_layers"]]
    body["output_layers"] = [body["output_layers"]]
    with h5py.File(tmp_path / "k3.h5", "a") as f:
        f.attrs["model_config"] = json.dumps(cfg).encode()
    check_against_keras(load_keras_model(tmp_path / "k3.h5"), model, x)


def test_snake_case_names_match_keras_files():
    assert [_snake(c) for c in ("Conv2D", "DepthwiseConv2D", "ReLU", "BatchNormalization",
                                "GlobalAveragePooling2D", "InputLayer")] == [
        "conv2d", "depthwise_conv2d", "re_lu", "batch_normalization", "global_average_pooling2d", "input_layer"]


def test_archive_without_layer_name_tags(tmp_path):
    """Older Keras 3 files have no 'name' attribute on vars groups: paths follow model.layers order."""
    model, x = randomized(convs_model)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        members = {n: z.read(n) for n in z.namelist()}
    (tmp_path / "w.h5").write_bytes(members["model.weights.h5"])
    with h5py.File(tmp_path / "w.h5", "a") as f:
        f.visit(lambda k: f[k].attrs.pop("name", None) if k.endswith("/vars") else None)
        f.move("layers", "_layer_checkpoint_dependencies")    # the tf.keras 2.13 spelling
    members["model.weights.h5"] = (tmp_path / "w.h5").read_bytes()
    with zipfile.ZipFile(tmp_path / "old.keras", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    check_against_keras(load_keras_model(tmp_path / "old.keras"), model, x)


# ----------------------------------------------------------------------------- bad input

def config_of(model):
    return json.loads(model.to_json())


def test_every_unsupported_layer_listed_at_once():
    i = keras.Input((8, 8, 3), name="img")
    x = L.Conv2D(4, 3, dilation_rate=2, name="dilated")(i)
    x = L.LeakyReLU(name="leaky")(x)
    x = L.ReLU(max_value=3.0, name="relu3")(x)
    x = L.Conv2D(4, 1, activation="elu", name="elu_conv")(x)
    x = L.UpSampling2D(name="up")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(2, activation="softplus", name="softplus_fc")(x)
    with pytest.raises(UnsupportedError) as e:
        graph_from_keras_config(config_of(keras.Model(i, x)), "m.json")
    msg = str(e.value)
    assert "6 unsupported" in msg and "m.json" in msg
    for name, cls in [("dilated", "Conv2D"), ("leaky", "LeakyReLU"), ("relu3", "ReLU"),
                      ("elu_conv", "Conv2D"), ("up", "UpSampling2D"), ("softplus_fc", "Dense")]:
        assert f"'{name}' ({cls})" in msg


def test_unsupported_structures():
    a, b = keras.Input((4, 4, 2), name="a"), keras.Input((4, 4, 2), name="b")
    with pytest.raises(UnsupportedError, match="2 inputs"):
        graph_from_keras_config(config_of(keras.Model([a, b], L.Add()([a, b]))))
    shared = L.Conv2D(2, 1, name="shared")
    with pytest.raises(UnsupportedError, match="'shared'.*shared layer"):
        graph_from_keras_config(config_of(keras.Model(a, shared(shared(a)))))


@pytest.mark.parametrize("edit, match", [
    (lambda c: c["config"]["layers"][0]["config"].update(batch_shape=[None, 100000, 100000, 3]), "input dim"),
    (lambda c: c["config"]["layers"][1]["config"].update(filters=10 ** 9), "filters"),
    (lambda c: c["config"]["layers"][0]["config"].update(batch_shape=[None, 60000, 60000, 3]), "elements"),
    (lambda c: c["config"]["layers"][1]["config"].update(kernel_size=[3, "x"]), "kernel_size"),
    (lambda c: c["config"]["layers"][1]["config"].update(padding="causal"), "padding"),
    (lambda c: c["config"]["layers"][0]["config"].update(batch_shape=[None, None, None, 3]), "input_shape="),
    (lambda c: c["config"]["layers"][1].update(inbound_nodes=[[["nowhere", 0, 0, {}]]]), "nowhere"),
    (lambda c: c.update(class_name="Bogus"), "Bogus"),
    (lambda c: c["config"].update(layers=7), "layers"),
])
def test_bad_configs_named(edit, match):
    i = keras.Input((8, 8, 3), name="img")
    cfg = config_of(keras.Model(i, L.Conv2D(4, 3, name="conv")(i)))
    edit(cfg)
    with pytest.raises(ModelError, match=match) as e:
        graph_from_keras_config(cfg, "bad.keras")
    assert "bad.keras" in str(e.value)


def test_input_shape_override():
    i = keras.Input((None, None, 3), name="img")
    cfg = config_of(keras.Model(i, L.GlobalAveragePooling2D()(L.Conv2D(4, 3, name="conv")(i))))
    g = graph_from_keras_config(cfg, input_shape=(16, 12, 3))
    assert g.shapes["conv"] == (14, 10, 4)


def test_weights_that_do_not_fit_the_config(tmp_path):
    model, _ = randomized(convs_model)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as z:
        members = {n: z.read(n) for n in z.namelist()}
    cfg = json.loads(members["config.json"])
    conv = next(lay for lay in cfg["config"]["layers"] if lay["name"] == "pw_nobias")
    conv["config"]["filters"] = 7
    members["config.json"] = json.dumps(cfg).encode()
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    with pytest.raises(WeightsError, match=r"bad.keras.*'pw_nobias'.*\(1, 1, 6, 7\)"):
        load_keras_model(tmp_path / "bad.keras")


def test_bad_files(tmp_path):
    model, _ = randomized(sequential_model)
    model.save(tmp_path / "m.keras")
    model.save(tmp_path / "m.h5")
    cases = {"empty.keras": b"", "noise.h5": bytes(range(256)) * 3,
             "cut.keras": (tmp_path / "m.keras").read_bytes()[:300],
             "cut.h5": (tmp_path / "m.h5").read_bytes()[:3000],
             "model.pkl": pickle.dumps({"a": 1}), "arch.json": model.to_json().encode()}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(KernelnetsError) as e:
            load_keras_model(tmp_path / name)
        assert name in str(e.value), str(e.value)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("data.pkl", b"x")
    with pytest.raises(ModelError, match="never unpickles"):
        detect_format(tmp_path / "other.zip")
    with pytest.raises(ModelError, match="no such file"):
        load_keras_model(tmp_path / "missing.keras")
    write_legacy_h5(model, tmp_path / "weights_only.h5")
    with pytest.raises(ModelError, match="keras_h5_weights file, not a whole Keras model"):
        load_keras_model(tmp_path / "weights_only.h5")


# ----------------------------------------------------------------------------- real networks

NETWORKS = ["VGG16", "VGG19", "ResNet50", "InceptionV3", "Xception", "MobileNet", "MobileNetV2", "ResNet50V2"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
def test_keras_applications_load_without_architecture(tmp_path, name):
    kmodel = getattr(keras.applications, name)(weights=None, classifier_activation=None)
    h, w, _ = kmodel.input_shape[1:]
    x = np.random.default_rng(5).uniform(-1, 1, (2, h, w, 3)).astype(np.float32)
    randomize_keras_model(kmodel, seed=11, calib_input=x)
    want = keras_forward(kmodel, x)
    assert 0.1 < float(want.std()) < 1e3
    for ext in (".keras", ".h5"):
        kmodel.save(tmp_path / f"m{ext}")
        g = load_keras_model(tmp_path / f"m{ext}")
        got = Model(g, threads=2)(x)
        assert got.shape == want.shape == (2, 1000)
        assert rel_err(got, want) <= 1e-4, ext
        assert np.array_equal(got.argmax(1), want.argmax(1))
