"""The Python API contract: nets.load, model(x) at any batch size, nets.preprocess, options."""

import numpy as np
import pytest

import nets
from kernels import reference as ref
from nets.graph.interpret import interpret


def test_load_seeded_says_untrained_and_runs_any_batch():
    model = nets.load("mobilenet", alpha=0.25, input_shape=(96, 96, 3), classifier_activation=None, threads=1)
    assert "untrained" in model.weights_source
    x = nets.preprocess("mobilenet", np.random.default_rng(0).integers(0, 256, (5, 96, 96, 3)).astype(np.uint8))
    logits = model(x)
    assert logits.shape == (5, 1000) and logits.dtype == np.float32
    for n in (1, 2):                              # any batch size, each sample independent of the others
        np.testing.assert_allclose(model(x[:n]), logits[:n], rtol=1e-5, atol=1e-5 * np.abs(logits).max())
    want = interpret(model.source_graph, x)[model.source_graph.outputs[0]]
    assert np.max(np.abs(logits - want)) / np.max(np.abs(want)) <= 1e-5


def test_softmax_head_is_softmax_of_logits(tmp_path):
    from nets.io.keras import save_h5_weights

    kw = dict(alpha=0.25, input_shape=(64, 64, 3), threads=2)
    logits_model = nets.load("mobilenet", classifier_activation=None, **kw)
    path = tmp_path / "w.h5"
    save_h5_weights(logits_model.source_graph, path)
    probs_model = nets.load("mobilenet", weights=str(path), **kw)
    x = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype(np.float32)
    probs = probs_model(x)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, ref.softmax(logits_model(x)), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name,pooling,shape", [("resnet50", "avg", (2048,)), ("vgg16", "max", (512,)),
                                                ("inception_v3", None, (1, 1, 2048))])
def test_headless_options(name, pooling, shape):
    size = (75, 75, 3) if name == "inception_v3" else (32, 32, 3)
    model = nets.load(name, include_top=False, pooling=pooling, input_shape=size, threads=2)
    assert model.output_shape == shape


def test_preprocess_modes():
    img = np.array([[[[0, 128, 255]]]], np.uint8)
    np.testing.assert_allclose(nets.preprocess("resnet50", img)[0, 0, 0], [255 - 103.939, 128 - 116.779, -123.68],
                               rtol=1e-6)
    np.testing.assert_allclose(nets.preprocess("xception", img)[0, 0, 0], [-1, 128 / 127.5 - 1, 1], atol=1e-6)
    with pytest.raises(nets.InputError, match="RGB"):
        nets.preprocess("resnet50", np.zeros((4, 4, 4)))


def test_unknown_model_lists_known():
    with pytest.raises(nets.ModelError, match="resnet50"):
        nets.load("resnet5")
