"""nets.load and `nets run` pick the importer by file content, not extension."""

import numpy as np
import pytest
from helpers import fill_weights, toy_graph

import nets
from nets.cli import main
from nets.graph.interpret import interpret


@pytest.fixture(scope="module")
def toy():
    return fill_weights(toy_graph())


@pytest.fixture
def onnx_file(toy, tmp_path):
    from nets.io.onnx.export import export_onnx

    path = tmp_path / "toy.bin"                 # no telling extension: detected by content
    export_onnx(toy, path)
    return path


def test_load_onnx_file(toy, onnx_file):
    x = np.random.default_rng(0).normal(size=(2,) + toy.shapes[toy.inputs[0]]).astype(np.float32)
    want = interpret(toy, x)[toy.outputs[0]]
    got = nets.load(str(onnx_file), threads=1)(x)
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= 1e-5


def test_load_keras_archive(tmp_path):
    keras = pytest.importorskip("keras")
    from keras_utils import keras_forward, randomize_keras_model

    inp = keras.Input((20, 18, 3))
    y = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="c1")(inp)
    y = keras.layers.BatchNormalization(name="bn")(y)
    y = keras.layers.ReLU(6.0, name="r")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    y = keras.layers.Dense(5, name="fc")(y)
    km = randomize_keras_model(keras.Model(inp, y), seed=1)
    path = tmp_path / "small.model"             # a .keras archive under another name
    km.save(str(path) + ".keras")
    (tmp_path / "small.model.keras").rename(path)
    x = np.random.default_rng(1).normal(size=(3, 20, 18, 3)).astype(np.float32)
    want = keras_forward(km, x)
    got = nets.load(str(path))(x)
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) <= 1e-5


def test_wrong_kind_of_file_is_named(toy, onnx_file, tmp_path):
    from nets.io.keras import save_h5_weights

    with pytest.raises(nets.ModelError, match="whole model"):
        nets.load("mobilenet", weights=str(onnx_file))
    with pytest.raises(nets.ModelError, match="whole model that carries its own weights"):
        nets.load(str(onnx_file), weights="x.h5")
    wpath = tmp_path / "toy_weights.h5"
    save_h5_weights(toy, wpath)
    with pytest.raises(nets.ModelError, match="only weights"):
        nets.load(str(wpath))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01garbage" * 10)
    with pytest.raises(nets.KernelnetsError, match="junk.onnx"):
        nets.load(str(junk))


def test_cli_runs_a_model_file(onnx_file, capsys):
    code = main(["run", str(onnx_file), "--repeat", "1", "--warmup", "0", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "steady state median" in out and str(onnx_file) in out
