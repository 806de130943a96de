"""Fuzzing the Keras parsers with mutated real files: whatever the bytes or the config say, only the
project's own error types (KernelnetsError subclasses) may come out, never a stray KeyError,
TypeError, h5py or zipfile exception."""

import json
import os
import zipfile

import numpy as np
import pytest
from helpers import assert_clear_error
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from keras_utils import keras, write_legacy_h5

from nets.errors import KernelnetsError
from nets.graph.builder import GraphBuilder
from nets.io.detect import detect_format
from nets.io.keras import graph_from_keras_config, load_h5_weights, load_keras_model

L = keras.layers
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    i = keras.Input((6, 6, 2), name="img")
    x = L.Conv2D(3, 3, padding="same", activation="relu", name="conv")(i)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(x)
    x = L.Add(name="add")([x, y])
    x = L.BatchNormalization(name="bn")(x)
    x = L.Dense(2, name="fc")(L.GlobalAveragePooling2D(name="gap")(x))
    model = keras.Model(i, x)
    model.save(d / "m.keras")
    model.save(d / "m.h5")
    write_legacy_h5(model, d / "w.h5")
    with zipfile.ZipFile(d / "m.keras") as z:
        members = {n: z.read(n) for n in z.namelist()}
    return {"dir": d, "keras": (d / "m.keras").read_bytes(), "h5": (d / "m.h5").read_bytes(),
            "weights": (d / "w.h5").read_bytes(), "members": members,
            "config": json.loads(members["config.json"])}


@pytest.fixture(scope="module")
def new_layer_files(tmp_path_factory):
    """A seed with the layers of EfficientNet / ConvNeXt / MobileNetV3 / InceptionResNetV2: Normalization
    (constants and adapted), squeeze-excite Multiply, op-layers with constant operands, grouped conv,
    LayerNormalization, Dense on a map, LayerScale, CustomScaleLayer, Cropping2D and a nested
    Sequential."""
    from keras.src.applications.convnext import LayerScale
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    d = tmp_path_factory.mktemp("fuzz_new")
    i = keras.Input((8, 8, 4), name="img")
    x = L.Normalization(mean=[0.1, 0.2, 0.3, 0.4], variance=[1.0, 2.0, 3.0, 4.0], name="norm")(i)
    x = L.Normalization(name="adapted")(x)
    x = L.Conv2D(4, 3, padding="same", groups=2, name="grouped")(x)
    s = L.Reshape((1, 1, 4), name="se_reshape")(L.GlobalAveragePooling2D(name="squeeze")(x))
    s = L.ReLU(6.0, name="relu6")(L.Conv2D(4, 1, name="se_conv")(s) + 3.0) * (1.0 / 6.0)
    x = L.Multiply(name="excite")([x, s])
    x = L.LayerNormalization(epsilon=1e-6, name="ln")(x)
    x = LayerScale(1e-6, 4, name="layer_scale")(L.Dense(4, name="pw")(x))
    x = CustomScaleLayer(0.2, name="scaled")([i, x])
    x = keras.Sequential([L.Cropping2D(1, name="crop"), L.Conv2D(3, 2, strides=2, name="down")], name="block")(x)
    x = L.Dense(2, name="fc")(L.GlobalAveragePooling2D(name="gap")(x))
    model = keras.Model(i, x)
    model.save(d / "m.keras")
    model.save(d / "m.h5")
    with zipfile.ZipFile(d / "m.keras") as z:
        members = {n: z.read(n) for n in z.namelist()}
    return {"dir": d, "keras": (d / "m.keras").read_bytes(), "h5": (d / "m.h5").read_bytes(), "members": members,
            "config": json.loads(members["config.json"])}


@FUZZ
@given(data=st.data(), which=st.sampled_from(["keras", "h5"]))
def test_mutated_new_layer_files_raise_only_our_errors(new_layer_files, data, which):
    path = new_layer_files["dir"] / f"mutant.{which}"
    path.write_bytes(mutate_bytes(new_layer_files[which], data.draw))
    only_our_errors(load_keras_model, path)


@FUZZ
@given(data=st.data())
def test_mutated_new_layer_configs_raise_only_our_errors(new_layer_files, data):
    cfg = new_layer_files["config"]
    candidates = [p for p in paths(cfg) if "dtype" not in p and "build_config" not in p]
    cfg = replaced(cfg, data.draw(st.sampled_from(candidates)), data.draw(JSON))
    only_our_errors(graph_from_keras_config, cfg, "fuzz.keras")
    path = new_layer_files["dir"] / "mutant_cfg.keras"
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in new_layer_files["members"].items():
            z.writestr(name, json.dumps(cfg, allow_nan=True) if name == "config.json" else blob)
    only_our_errors(load_keras_model, path)


def test_the_new_layer_seeds_load_unmutated(new_layer_files):
    for which in ("keras", "h5"):
        g = load_keras_model(new_layer_files["dir"] / f"m.{which}")
        assert {"norm", "adapted", "excite", "ln", "layer_scale", "scaled", "crop", "down"} <= {n.name for n in g.nodes}


def twin_graph():
    b = GraphBuilder("twin")
    x = b.input((6, 6, 2), name="img")
    x = b.conv2d(x, 3, 3, padding="same", activation="relu", name="conv")
    y = b.depthwise_conv2d(x, 3, padding="same", name="dw")
    x = b.batch_norm(b.add([x, y], name="add"), name="bn")
    return b.build(b.dense(b.global_avg_pool(x, name="gap"), 2, name="fc"))


def mutate_bytes(data: bytes, draw) -> bytes:
    kind = draw(st.sampled_from(["flip", "truncate", "splice"]))
    buf = bytearray(data)
    if kind == "truncate":
        return bytes(buf[:draw(st.integers(0, len(buf) - 1))])
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(buf) - 1))
        if kind == "flip":
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        else:
            buf[pos:pos + 4] = draw(st.binary(min_size=4, max_size=4))
    return bytes(buf)


def only_our_errors(fn, *args):
    """Only KernelnetsError may escape, naming the file and what was wrong with it."""
    try:
        fn(*args)
    except KernelnetsError as e:
        path = next((str(a) for a in args if isinstance(a, (str, os.PathLike))), None)
        assert_clear_error(e, path or "")


@FUZZ
@given(data=st.data(), which=st.sampled_from(["keras", "h5", "weights"]))
def test_mutated_files_raise_only_our_errors(files, data, which):
    path = files["dir"] / f"mutant.{which}"
    path.write_bytes(mutate_bytes(files[which], data.draw))
    only_our_errors(detect_format, path)
    if which == "weights":
        only_our_errors(load_h5_weights, twin_graph(), path)
    else:
        only_our_errors(load_keras_model, path)


JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True)
                    | st.text(max_size=6),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                 max_size=4),
                    max_leaves=8)


def paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for k, v in enumerate(obj):
            yield from paths(v, prefix + (k,))


def replaced(obj, path, value):
    if not path:
        return value
    obj = json.loads(json.dumps(obj))
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return obj


@FUZZ
@given(data=st.data())
def test_mutated_configs_raise_only_our_errors(files, data):
    cfg = files["config"]
    candidates = [p for p in paths(cfg) if "dtype" not in p and "build_config" not in p]
    cfg = replaced(cfg, data.draw(st.sampled_from(candidates)), data.draw(JSON))
    only_our_errors(graph_from_keras_config, cfg, "fuzz.keras")
    path = files["dir"] / "mutant_cfg.keras"
    with zipfile.ZipFile(path, "w") as z:
        for name, blob in files["members"].items():
            z.writestr(name, json.dumps(cfg, allow_nan=True) if name == "config.json" else blob)
    only_our_errors(load_keras_model, path)


def test_the_fuzzed_files_load_unmutated(files):
    """The seeds are valid: every failure above comes from a mutation."""
    for which in ("keras", "h5"):
        g = load_keras_model(files["dir"] / f"m.{which}")
        assert [n.name for n in g.weighted_nodes()] == ["conv", "dw", "bn", "fc"]
    g = load_h5_weights(twin_graph(), files["dir"] / "w.h5")
    assert all(np.isfinite(a).all() for n in g.weighted_nodes() for a in n.weights.values())
