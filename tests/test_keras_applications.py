"""The CNNs of keras.applications beyond the six of the zoo, against Keras itself: the smallest member of
each family, built with ``weights=None`` at a reduced input size, every kernel, BatchNorm statistic,
Normalization statistic and LayerScale gamma randomised (fresh BatchNorms are identities that would
hide folding bugs), saved with ``model.save("m.keras")``, loaded with ``nets.load`` and run on the CPU
kernels at batch 2 and 1: logits must match Keras' forward pass to max|ours - keras| / max|keras| <=
1e-4. ``tools/keras_coverage.py`` runs every member at its default size (docs/keras_applications.md).
"""

import numpy as np
import pytest
from keras_utils import keras, keras_forward, randomize_keras_model

import nets

# the smallest member of each family, the input size it runs at here (the family's minimum or near it),
# and whether the model preprocesses raw [0, 255] pixels itself (Rescaling / Normalization inside)
FAMILIES = {
    "DenseNet121": (64, False),
    "EfficientNetB0": (64, True),
    "EfficientNetV2B0": (64, True),
    "MobileNetV2": (96, False),
    "MobileNetV3Small": (64, True),
    "ConvNeXtTiny": (64, True),
    "InceptionResNetV2": (75, False),
    "ResNet50V2": (64, False),
}


def rel_err(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def keras_layer_names(model):
    """Every layer of ``model``, those inside sub-models included (what the import makes nodes of)."""
    out = []
    for layer in model.layers:
        out += keras_layer_names(layer) if isinstance(layer, keras.Model) else [layer.name]
    return out


def application(name, size, raw_pixels, seed=0):
    """The keras.applications model (logits, randomised) and a batch of 2 inputs it expects."""
    kmodel = getattr(keras.applications, name)(weights=None, classifier_activation=None,
                                               input_shape=(size, size, 3))
    lo, hi = (0.0, 255.0) if raw_pixels else (-1.0, 1.0)
    x = np.random.default_rng(seed).uniform(lo, hi, (2, size, size, 3)).astype(np.float32)
    randomize_keras_model(kmodel, seed=seed + 7, calib_input=x)
    return kmodel, x


def check_application(name, size, raw_pixels, tmp_path, device="cpu"):
    kmodel, x = application(name, size, raw_pixels)
    want = keras_forward(kmodel, x)
    assert 0.1 < float(want.std()) < 1e3, "randomised weights should give logits with a spread of order 1"
    path = tmp_path / f"{name}.keras"
    kmodel.save(path)
    ours = nets.load(str(path), device=device, **({"threads": 2} if device == "cpu" else {}))
    assert ours.source_graph.num_params() == kmodel.count_params()
    assert set(keras_layer_names(kmodel)) <= {n.name for n in ours.source_graph.nodes}
    got = ours(x)
    assert got.shape == want.shape == (2, 1000)
    assert rel_err(got, want) <= 1e-4
    assert rel_err(ours(x[:1]), want[:1]) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_application_matches_keras(name, tmp_path):
    size, raw_pixels = FAMILIES[name]
    check_application(name, size, raw_pixels, tmp_path)


def test_an_unknown_input_size_is_asked_for(tmp_path):
    """keras.applications' MobileNetV3 without input_shape has a (None, None, 3) input: the file loads once
    the size is given, and says what to pass when it is not."""
    kmodel = keras.applications.MobileNetV3Small(weights=None, minimalistic=True, alpha=0.75)
    assert kmodel.input_shape == (None, None, None, 3)
    kmodel.save(tmp_path / "m.keras")
    with pytest.raises(nets.errors.ModelError, match=r"unknown dimensions; pass input_shape=\(H, W, C\)"):
        nets.load(str(tmp_path / "m.keras"))
    with pytest.raises(ValueError, match="pass calib_input"):
        randomize_keras_model(kmodel)
    model = nets.load(str(tmp_path / "m.keras"), input_shape=(64, 64, 3), device="reference")
    assert model.input_shape == (64, 64, 3)
    x = np.random.default_rng(0).uniform(0, 255, (1, 64, 64, 3)).astype(np.float32)
    randomize_keras_model(kmodel, calib_input=x)
    kmodel.save(tmp_path / "m.keras")
    model = nets.load(str(tmp_path / "m.keras"), input_shape=(64, 64, 3), device="reference")
    assert rel_err(model(x), keras_forward(kmodel, x)) <= 1e-4
