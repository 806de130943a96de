"""keras.applications beyond the six, as Keras 3 exports them (``model.export(path, format="onnx")``): the
smallest member of each family, built with ``weights=None``, randomised BatchNorm statistics and a reduced
input size, loaded with ``nets.load`` and compared with Keras and with ONNX Runtime on the same file.

What these files hold: squeeze-excite with sigmoid (EfficientNet) and hard sigmoid written as
``Clip(x + 3, 0, 6) / 6`` (MobileNetV3), SiLU as ``x * Sigmoid(x)``, HardSwish, per-channel Mul between
computed tensors, Keras' Normalization and Rescaling as constant arithmetic, LayerNormalization, Gelu and
Dense on NHWC maps (MatMul, ConvNeXt), scaled residuals (InceptionResNetV2's CustomScaleLayer), and the
float32 Casts and Shape arithmetic of the TorchScript path.

The export has a dynamic batch axis, except ConvNeXt: Keras' dynamic-batch export of its LayerNormalization
fails inside torch.onnx's TorchScript exporter (a SymbolicValueError on the Gather of the input shape), so it
is exported with a fixed batch, which Keras routes through torch.export, as a user must.
"""

import numpy as np
import pytest

from tests.keras_utils import keras_forward, randomize_keras_model
from tests.test_onnx_keras import check, keras_export, ort_run, rel_err

DEVICE = "cpu"
FAMILIES = {       # smallest member: input size (the smallest each architecture allows)
    "MobileNetV2": 32, "MobileNetV3Small": 32, "EfficientNetB0": 32, "EfficientNetV2B0": 32, "DenseNet121": 32,
    "ConvNeXtTiny": 32, "ResNet50V2": 32, "InceptionResNetV2": 75,
}
FIXED_BATCH = {"ConvNeXtTiny"}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FAMILIES))
def test_keras_application_family(tmp_path, name):
    import keras

    size = FAMILIES[name]
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10,
                                              classifier_activation=None)
    x = np.random.default_rng(0).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    randomize_keras_model(model, seed=0, calib_input=x)
    want = keras_forward(model, x)
    path = keras_export(model, x, tmp_path / f"{name}.onnx", fixed=name in FIXED_BATCH)
    ours = check(path, x, want, device=DEVICE, threads=2)
    if name not in FIXED_BATCH:                 # another batch size than the export's
        got = ours(x[:1])
        assert rel_err(got, want[:1]) <= 1e-4 and rel_err(got, ort_run(path, x[:1])) <= 1e-4
