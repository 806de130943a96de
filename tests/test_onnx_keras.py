"""ONNX files exported by Keras itself (``model.export(path, format="onnx")``, torch backend): imported with
``nets.load``, they agree with ONNX Runtime on the same file and with Keras.

Keras' default export has a dynamic batch axis and goes through TorchScript: float32 -> float32 Casts around
every layer, 'same' padding computed from Shape(x) at run time, Flatten as Reshape(x, [Shape(x)[0], -1]).
With a fixed input signature it goes through torch.export (dynamo) instead: no Casts, and 'same' max
pooling with uneven padding as an edge-mode Pad before the MaxPool. Both take NHWC input.
"""

import functools
import os

import numpy as np
import onnxruntime as ort
import pytest

import nets
from tests.keras_utils import keras_forward, keras_onnx_export, randomize_keras_model

INPUT = (23, 21, 3)


def keras_export(model, x, path, fixed=False):
    """Export like a Keras user would; ``fixed`` pins the batch size (Keras then uses torch.export)."""
    pytest.importorskip("onnxscript", reason="Keras' ONNX export needs the onnxscript package")
    return keras_onnx_export(model, x, path, fixed)


def small_model():
    """Every layer type the six keras.applications networks use, on odd sizes."""
    import keras
    from keras import layers as L

    inp = keras.Input(INPUT)
    x = L.ZeroPadding2D(((1, 2), (0, 1)))(inp)
    x = L.Conv2D(8, 3, strides=2, use_bias=False)(x)
    x = L.ReLU(6.0)(L.BatchNormalization()(x))
    y = L.Activation("relu")(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(x)))
    x = L.Add()([x, L.Conv2D(8, 1, padding="same")(y)])
    a = L.SeparableConv2D(6, 3, padding="same", use_bias=False)(x)
    b = L.AveragePooling2D(3, strides=1, padding="same")(x)
    c = L.MaxPooling2D(3, strides=2, padding="same")(L.Conv2D(4, 1)(x))    # 12x10: uneven 'same' padding
    x = L.MaxPooling2D(3, strides=2)(L.Concatenate()([a, b]))
    g = L.GlobalAveragePooling2D()(x)
    k = L.GlobalAveragePooling2D(keepdims=True)(x)
    k = L.Reshape((7,))(L.Conv2D(7, 1)(L.Dropout(0.3)(k)))
    d = L.Dense(5, activation="relu")(L.Flatten()(c))
    return keras.Model(inp, L.Dense(9)(L.Concatenate()([g, k, d])))


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@functools.lru_cache(maxsize=None)
def small_keras_onnx(fixed: bool) -> tuple:
    """(ONNX bytes, input, Keras output) of the randomised small model."""
    import tempfile

    x = rand(3, *INPUT)
    model = randomize_keras_model(small_model(), seed=1, calib_input=x)
    with tempfile.TemporaryDirectory() as d:
        path = keras_export(model, x, os.path.join(d, "small.onnx"), fixed)
        with open(path, "rb") as f:
            data = f.read()
    return data, x, keras_forward(model, x)


def ort_run(path, x):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def rel_err(got, want) -> float:
    return float(np.max(np.abs(got - want)) / max(np.max(np.abs(want)), 1e-30))


def check(path, x, want_keras, tol=1e-4, **load):
    model = nets.load(path, **load)
    got, want = model(x), ort_run(path, x)
    assert model.layout == "NHWC" and model.input_shape == x.shape[1:]
    assert got.shape == want.shape == want_keras.shape
    assert rel_err(got, want) <= tol, rel_err(got, want)
    assert rel_err(got, want_keras) <= tol, rel_err(got, want_keras)
    return model


@pytest.mark.parametrize("fixed", [False, True], ids=["dynamic_batch", "fixed_batch"])
def test_small_keras_export(tmp_path, fixed):
    data, x, want = small_keras_onnx(fixed)
    path = tmp_path / "small.onnx"
    path.write_bytes(data)
    model = check(path, x, want, device="cpu", threads=1)
    ops = {n.op for n in model.source_graph.nodes}
    assert {"zero_pad", "conv2d", "depthwise_conv2d", "avg_pool2d", "max_pool2d", "global_avg_pool", "concat",
            "add", "dense", "flatten"} <= ops
    assert "transpose" not in ops
    # the BN affines (Sub, Mul, Add by constants) all fold into the convolutions before them
    assert "batch_norm" not in {n.op for n in model.graph.nodes}
    # another batch size than the export's (the dynamic export's Reshape keeps the batch axis)
    if not fixed:
        x5 = rand(5, *INPUT, seed=3)
        assert rel_err(model(x5), ort_run(path, x5)) <= 1e-4


NETWORKS = {"vgg16": "VGG16", "vgg19": "VGG19", "resnet50": "ResNet50", "inception_v3": "InceptionV3",
            "xception": "Xception", "mobilenet": "MobileNet"}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NETWORKS))
def test_keras_application_exports(tmp_path, name):
    """keras.applications networks with non-trivial weights. Xception's default (dynamic batch) export fails
    inside torch.onnx's TorchScript exporter, so it is exported with a fixed batch, as a user must."""
    import keras

    model = getattr(keras.applications, NETWORKS[name])(weights=None, classifier_activation=None)
    x = np.random.default_rng(0).uniform(-1, 1, (2, *model.inputs[0].shape[1:])).astype(np.float32)
    randomize_keras_model(model, seed=0, calib_input=x)
    path = keras_export(model, x, tmp_path / f"{name}.onnx", fixed=name == "xception")
    check(path, x, keras_forward(model, x), device="cpu", threads=2)
