"""Whole graphs on the GPU backend: the toy graph (every op and fusion) against the reference
backend, eager and CUDA-graph replay, numpy and cupy in/out; the six networks against the CPU backend
and Keras' logits (max|ours - want| / max|want| <= 1e-4). Skips with the reason when no CUDA device
is usable."""

import numpy as np
import pytest
from helpers import fill_weights, toy_graph

import nets
from kernels.gpu import unavailable_reason
from nets.runtime.model import Model
from nets.tools.timing import time_calls

REASON = unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"no usable CUDA device: {REASON}")]

NETWORKS = {"vgg16": "VGG16", "vgg19": "VGG19", "resnet50": "ResNet50", "inception_v3": "InceptionV3",
            "xception": "Xception", "mobilenet": "MobileNet"}


def rel_err(got, want):
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want)))


@pytest.mark.parametrize("cuda_graph", [False, True])
@pytest.mark.parametrize("top", [True, False])
def test_toy_graph_matches_reference(cuda_graph, top):
    g = fill_weights(toy_graph(top=top), seed=4)
    want_model = Model(g, device="reference")
    gpu = Model(g, device="gpu", cuda_graph=cuda_graph)
    x = np.random.default_rng(1).normal(0, 1, (3,) + gpu.input_shape).astype(np.float32)
    want = want_model(x)
    for batch in (3, 1):
        got = gpu(x[:batch])
        assert isinstance(got, np.ndarray) and got.shape == want[:batch].shape
        assert rel_err(got, want[:batch]) <= 1e-5
        with gpu.lease(batch) as runner:
            assert runner.use_graph == cuda_graph
    again = gpu(x)                       # a replay on new data gives the new answer
    assert rel_err(again, want) <= 1e-5
    x2 = x[::-1].copy()
    assert rel_err(gpu(x2), want_model(x2)) <= 1e-5


def test_cupy_in_cupy_out_and_errors():
    import cupy

    from nets.errors import InputError

    g = fill_weights(toy_graph(), seed=2)
    gpu = Model(g, device="gpu")
    x = np.random.default_rng(5).normal(0, 1, (2,) + gpu.input_shape).astype(np.float32)
    got = gpu(cupy.asarray(x))
    assert isinstance(got, cupy.ndarray)
    assert rel_err(got.get(), Model(g, device="reference")(x)) <= 1e-5
    with pytest.raises(InputError, match="float32"):
        gpu(cupy.asarray(x, cupy.float64))
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        gpu(cupy.asarray(bad))
    with gpu.lease(2) as runner:
        times = time_calls(lambda: (runner.run(x), runner.sync()), repeat=3, warmup=1)
    assert min(times) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_matches_cpu_and_keras(name, tmp_path):
    keras = pytest.importorskip("keras")
    from keras_utils import keras_forward, randomize_keras_model, write_legacy_h5

    kmodel = getattr(keras.applications, NETWORKS[name])(weights=None, classifier_activation=None)
    h, w, _ = kmodel.input_shape[1:]
    images = np.random.default_rng(3).integers(0, 256, (3, h, w, 3)).astype(np.uint8)
    x = nets.preprocess(name, images)
    randomize_keras_model(kmodel, seed=7, calib_input=x)
    path = tmp_path / f"{name}.h5"
    write_legacy_h5(kmodel, path)
    want = keras_forward(kmodel, x)

    gpu = nets.load(name, weights=str(path), classifier_activation=None, device="gpu")
    cpu = nets.load(name, weights=str(path), classifier_activation=None, device="cpu")
    got3, got1 = gpu(x), gpu(x[:1])
    assert rel_err(got3, want) <= 1e-4
    assert rel_err(got1, want[:1]) <= 1e-4
    assert rel_err(got3, cpu(x)) <= 1e-4
    assert np.array_equal(np.argmax(got3, axis=1), np.argmax(want, axis=1))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_matches_the_cpu_backend(name):
    """Needs no framework (the device image has no keras): the GPU against the CPU backend, which
    test_networks_keras.py checks against Keras; seeded weights, batch 3 and batch 1."""
    gpu = nets.load(name, classifier_activation=None, device="gpu")
    cpu = nets.load(name, classifier_activation=None, device="cpu")
    h, w, c = gpu.input_shape
    x = nets.preprocess(name, np.random.default_rng(3).integers(0, 256, (3, h, w, c)).astype(np.uint8))
    want = cpu(x)
    assert rel_err(gpu(x), want) <= 1e-4
    assert rel_err(gpu(x[:1]), want[:1]) <= 1e-4
