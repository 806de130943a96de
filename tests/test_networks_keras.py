"""Whole networks against Keras: the keras.applications model with seeded non-trivial weights (BN
statistics included) is written in the legacy .h5 layout, loaded into ours, and both run on the same
preprocessed input at batch 1 and 3. Logits must agree to max|ours - keras| / max|keras| <= 1e-4."""

import numpy as np
import pytest
from keras_utils import keras_forward, randomize_keras_model, write_legacy_h5

import nets

NETWORKS = {
    "vgg16": "VGG16",
    "vgg19": "VGG19",
    "resnet50": "ResNet50",
    "inception_v3": "InceptionV3",
    "xception": "Xception",
    "mobilenet": "MobileNet",
}


def rel_err(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@pytest.fixture(scope="module")
def keras_module():
    keras = pytest.importorskip("keras")
    return keras


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_matches_keras(name, keras_module, tmp_path):
    keras = keras_module
    kmodel = getattr(keras.applications, NETWORKS[name])(weights=None, classifier_activation=None)
    h, w, _ = kmodel.input_shape[1:]
    images = np.random.default_rng(3).integers(0, 256, (3, h, w, 3)).astype(np.uint8)
    x = nets.preprocess(name, images)
    randomize_keras_model(kmodel, seed=7, calib_input=x)
    path = tmp_path / f"{name}.h5"
    write_legacy_h5(kmodel, path)

    ours = nets.load(name, weights=str(path), classifier_activation=None, threads=2)

    want = keras_forward(kmodel, x)
    assert 0.1 < float(want.std()) < 1e3, "randomised weights should give logits with a spread of order 1"
    got3 = ours(x)
    got1 = ours(x[:1])
    assert got3.shape == want.shape == (3, 1000)
    assert rel_err(got3, want) <= 1e-4
    assert rel_err(got1, want[:1]) <= 1e-4
    assert np.array_equal(np.argmax(got3, axis=1), np.argmax(want, axis=1))
