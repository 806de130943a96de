"""The Keras layers the CNNs of keras.applications beyond the six need (EfficientNet, ConvNeXt,
MobileNetV3, InceptionResNetV2): each in a small model with seeded non-trivial weights, saved as
``.keras`` and as a full-model ``.h5``, imported, and run through the runtime's oracle (the
layer-by-layer interpreter) and through the optimising passes on the reference backend; both must match
Keras' own forward pass. The whole networks run on the CPU kernels in test_keras_applications.py."""

import numpy as np
import pytest
from keras.src.applications.convnext import LayerScale, StochasticDepth
from keras.src.applications.inception_resnet_v2 import CustomScaleLayer
from keras_utils import keras, keras_forward, randomize_keras_model

from nets.errors import UnsupportedError
from nets.graph.interpret import interpret
from nets.io.keras import graph_from_keras_config, load_keras_model
from nets.runtime.model import Model

L, ops = keras.layers, keras.ops


def rel_err(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


def squeeze_excite_model():
    """Normalization with constants, SE's Multiply by (1, 1, C), op-layer arithmetic with constants."""
    i = keras.Input((9, 9, 3), name="img")
    x = L.Rescaling(1 / 255, name="rescale")(i)
    x = L.Normalization(mean=[0.4, 0.5, 0.6], variance=[0.05, 0.06, 0.07], name="norm")(x)
    x = L.ZeroPadding2D(((0, 1), (0, 1)), name="pad")(x)
    x = L.Conv2D(8, 3, strides=2, name="stem")(x)
    x = L.BatchNormalization(name="stem_bn")(x)
    x = L.ReLU(name="stem_relu")(x)
    s = L.GlobalAveragePooling2D(name="squeeze")(x)
    s = L.Reshape((1, 1, 8), name="se_reshape")(s)
    s = L.Conv2D(3, 1, activation="relu", name="se_reduce")(s)
    s = L.Conv2D(8, 1, name="se_expand")(s)
    s = L.ReLU(6.0)(s + 3.0) * (1.0 / 6.0)                 # MobileNetV3's hard sigmoid, as op-layers
    x = L.Multiply(name="excite")([x, s])
    y = L.Conv2D(8, 1, name="branch")(x)
    x = L.Subtract(name="sub")([x, y])
    x = (2.0 - x) / 4.0
    x = ops.subtract(x, 0.25)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.3, name="top_dropout")(x)
    return keras.Model(i, L.Dense(5, name="logits")(x), name="se")


def adapted_normalization_model(axis=-1):
    """A Normalization adapted to data keeps mean / variance / count as weights; here the 1x1 valid conv
    after it can absorb it."""
    i = keras.Input((6, 7, 3), name="img")
    x = L.Normalization(axis=axis, name="norm")(i)
    x = L.Conv2D(4, 1, activation="relu", name="conv")(x)
    x = L.Normalization(invert=True, name="denorm")(x)
    x = L.Conv2D(4, 3, padding="same", name="conv_same")(x)
    return keras.Model(i, L.Flatten(name="flat")(x), name="adapted")


def convnext_like_model():
    """Depthwise as groups == C, grouped conv, LayerNormalization, Dense on maps, LayerScale,
    StochasticDepth, Cropping2D, and a nested Sequential block (its weights under the sub-model)."""
    i = keras.Input((12, 12, 6), name="img")
    x = L.Conv2D(6, 7, padding="same", groups=6, name="dw")(i)
    x = L.LayerNormalization(epsilon=1e-6, name="ln")(x)
    x = L.Dense(12, name="pw1")(x)
    x = L.ReLU(name="act")(x)
    x = L.Dense(6, name="pw2")(x)
    x = LayerScale(1e-6, 6, name="layer_scale")(x)
    x = StochasticDepth(0.1, name="drop_path")(x)
    x = i + x
    x = L.Conv2D(8, 3, groups=2, name="grouped")(x)
    x = L.Cropping2D(((1, 0), (0, 2)), name="crop")(x)
    down = keras.Sequential([L.LayerNormalization(epsilon=1e-6, name="down_ln"),
                             L.Conv2D(10, 2, strides=2, name="down_conv")], name="downsample")
    x = down(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.LayerNormalization(epsilon=1e-6, center=False, name="head_ln")(x)
    return keras.Model(i, L.Dense(4, name="head")(x), name="convnext_like")


def scaled_residual_model():
    """InceptionResNetV2's CustomScaleLayer, and a nested functional block with a BatchNormalization
    (a sub-model's legacy .h5 lists its trainable arrays first, the BN statistics last)."""
    i = keras.Input((8, 8, 4), name="img")
    a = L.Conv2D(4, 1, activation="relu", name="branch_a")(i)
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="branch_b")(i)
    up = L.Conv2D(4, 1, name="up")(L.Concatenate(name="mixed")([a, b]))
    x = CustomScaleLayer(0.17, name="scaled")([i, up])
    x = L.Activation("relu", name="block_ac")(x)
    inner_in = keras.Input((8, 8, 4), name="inner_in")
    y = L.BatchNormalization(name="inner_bn")(L.Conv2D(4, 3, padding="same", name="inner_conv")(inner_in))
    block = keras.Model(inner_in, L.Add(name="inner_add")([y, inner_in]), name="block")
    x = block(x)
    return keras.Model(i, L.Flatten(name="flat")(L.AveragePooling2D(2, name="pool")(x)), name="scaled")


MODELS = {"squeeze_excite": squeeze_excite_model, "adapted_normalization": adapted_normalization_model,
          "convnext_like": convnext_like_model, "scaled_residual": scaled_residual_model}


def check(path, model, x):
    """Keras vs the imported graph: interpreted layer by layer, and optimised on the reference backend."""
    want = keras_forward(model, x)
    g = load_keras_model(path)
    assert rel_err(interpret(g, x)[g.outputs[0]], want) <= 1e-5
    assert rel_err(Model(g, device="reference")(x), want) <= 1e-5
    return g


@pytest.mark.parametrize("ext", [".keras", ".h5"])
@pytest.mark.parametrize("name", list(MODELS))
def test_layers_match_keras(tmp_path, name, ext):
    model = MODELS[name]()
    x = np.random.default_rng(2).uniform(0, 1, (2,) + tuple(model.inputs[0].shape[1:])).astype(np.float32)
    x = x * 255 if name == "squeeze_excite" else x
    randomize_keras_model(model, seed=4, calib_input=x)
    model.save(tmp_path / f"m{ext}")
    g = check(tmp_path / f"m{ext}", model, x)
    assert g.num_params() == model.count_params()
    layer_names = {n.name for n in g.nodes}
    assert {lay.name for lay in model.layers if not isinstance(lay, keras.Model)} <= layer_names


def test_normalization_statistics_come_from_the_file(tmp_path):
    model = adapted_normalization_model()
    x = np.random.default_rng(0).normal(0, 1, (2, 6, 7, 3)).astype(np.float32)
    randomize_keras_model(model, seed=1, calib_input=x)
    norm = model.get_layer("norm")
    assert not np.allclose(keras.ops.convert_to_numpy(norm.adapt_variance), 1.0)
    model.save(tmp_path / "m.keras")
    g = check(tmp_path / "m.keras", model, x)
    assert set(g.node("norm").weight_shapes) == {"mean", "variance", "count"}
    opt = Model(g, device="reference").graph
    assert "norm" in opt.node("conv").fused          # unpadded 1x1: folded into the conv's weights
    assert opt.node("denorm").op == "channel_affine"  # before a padded conv: stays a node


def test_scalar_normalization(tmp_path):
    model = adapted_normalization_model(axis=None)
    x = np.random.default_rng(0).normal(0, 1, (2, 6, 7, 3)).astype(np.float32)
    randomize_keras_model(model, seed=1, calib_input=x)
    model.save(tmp_path / "m.keras")
    assert load_keras_model(tmp_path / "m.keras").node("norm").weight_shapes["mean"] == ()
    check(tmp_path / "m.keras", model, x)


def test_nested_submodels_are_flattened(tmp_path):
    model = convnext_like_model()
    model.save(tmp_path / "m.keras")
    g = load_keras_model(tmp_path / "m.keras")
    assert g.producer(g.node("down_conv").inputs[0]).name == "down_ln"
    assert g.node("down_ln").inputs == ["crop"]
    assert g.node("gap").inputs == ["down_conv"]
    assert (None, "downsample", "Sequential", ()) in g.keras_layers
    assert ("down_conv", "down_conv", "Conv2D", ("downsample",)) in g.keras_layers


def test_clashing_names_in_a_submodel_are_prefixed():
    i = keras.Input((6, 6, 2), name="img")
    x = L.Conv2D(3, 1, name="conv")(i)
    inner = keras.Sequential([L.Conv2D(3, 1, name="conv")], name="block")
    g = graph_from_keras_config(config_of(keras.Model(i, inner(x))))
    assert {"conv", "block/conv"} <= {n.name for n in g.nodes}
    assert g.node("block/conv").inputs == ["conv"]


def config_of(model):
    return keras.saving.serialize_keras_object(model)


def test_every_unsupported_new_layer_listed_at_once():
    i = keras.Input((8, 8, 4), name="img")
    x = L.LayerNormalization(axis=1, name="ln_rows")(i)
    x = L.LayerNormalization(rms_scaling=True, name="ln_rms")(x)
    m = L.Conv2D(1, 1, name="mask")(x)
    x = L.Multiply(name="spatial")([x, m])                # (H, W, 1) against (H, W, C)
    x = L.Normalization(axis=1, mean=0.0, variance=1.0, name="norm_rows")(x)
    x = ops.exp(x)
    x = 1.0 / x
    x = L.Conv2D(4, 3, dilation_rate=2, groups=2, name="dilated_grouped")(x)
    x = L.Activation("elu", name="elu")(x)
    with pytest.raises(UnsupportedError) as e:
        graph_from_keras_config(config_of(keras.Model(i, x)), "m.json")
    msg = str(e.value)
    assert "8 unsupported" in msg and "m.json" in msg, msg
    for part in ["'ln_rows' (LayerNormalization): axis=", "'ln_rms' (LayerNormalization): rms_scaling",
                 "'spatial' (Multiply): operand shapes", "'norm_rows' (Normalization): axis=",
                 "(Exp): keras.ops op-layer 'Exp'", "(TrueDivide): a constant divided",
                 "'dilated_grouped' (Conv2D): dilation_rate", "'elu' (Activation): activation='elu'"]:
        assert part in msg, part


def test_a_foreign_layer_of_a_keras_application_name_is_refused():
    i = keras.Input((4, 4, 2), name="img")
    cfg = config_of(keras.Model(i, LayerScale(1e-6, 2, name="ls")(i)))
    cfg["config"]["layers"][1]["module"] = "my_project.layers"
    with pytest.raises(UnsupportedError, match="'ls' \\(LayerScale\\): a custom layer from module 'my_project"):
        graph_from_keras_config(cfg)


def test_summary_lists_every_imported_layer(tmp_path, capsys):
    """``nets summary FILE`` on a .keras file of the new layers: every Keras layer (those of the nested
    sub-model too) has its row."""
    from nets.cli.main import main

    model = convnext_like_model()
    model.save(tmp_path / "m.keras")
    assert main(["summary", str(tmp_path / "m.keras"), "--device", "reference"]) == 0
    out = capsys.readouterr().out
    names = [lay.name for lay in model.layers if not isinstance(lay, keras.Model)]
    names += [lay.name for lay in model.get_layer("downsample").layers]
    for name in names:
        assert f"\n{name} (" in out, name
    assert "fused into" in out


def test_a_shared_submodel_is_named():
    i = keras.Input((6, 6, 2), name="img")
    block = keras.Sequential([L.Conv2D(2, 1, name="conv")], name="block")
    with pytest.raises(UnsupportedError, match="'block'.*shared layer"):
        graph_from_keras_config(config_of(keras.Model(i, block(block(i)))))


# ----------------------------------------------------------------------------- activations

def test_keras_activation_names_map_onto_the_runtimes(monkeypatch):
    import kernels
    from nets.io.keras.activations import act_name, keras_names, supported

    assert [act_name(a) for a in ("swish", "silu", "hard_swish", "hard_silu", "gelu", None, "linear")] == [
        "silu", "silu", "hard_silu", "hard_silu", "gelu", "linear", "linear"]
    assert act_name({"module": "keras.activations", "class_name": "function", "config": "swish"}) == "silu"
    assert act_name({"class_name": "gelu", "config": {"approximate": True}}) == "gelu_tanh"
    assert act_name("elu") == "elu" and not supported("elu")
    monkeypatch.setattr(kernels, "ACTIVATIONS", kernels.ACTIVATIONS + ("silu", "gelu_tanh"))
    assert supported("silu") and {"silu", "swish"} <= set(keras_names()) and "gelu_tanh" not in keras_names()


def _keras_spellings():
    """Every Keras spelling of every activation the runtime has, as Activation / conv / dense / op-layer."""
    from nets.io.keras.activations import OP_ACTIVATIONS, keras_names, supported

    names = [a for a in keras_names() if a not in ("linear", "softmax")]
    ops_ = [c for c, a in OP_ACTIVATIONS.items() if supported(a)]
    gelu_tanh = supported("gelu_tanh")
    return names, ops_, gelu_tanh


def test_every_supported_activation_matches_keras(tmp_path):
    names, op_classes, gelu_tanh = _keras_spellings()
    i = keras.Input((6, 6, 3), name="img")
    outs = []
    for a in names:
        x = L.Conv2D(4, 3, padding="same", activation=a, name=f"conv_{a}")(i)
        x = L.Activation(a, name=f"act_{a}")(L.BatchNormalization(name=f"bn_{a}")(x))
        outs.append(L.Dense(3, activation=a, name=f"dense_{a}")(x))
    fns = {"Relu": ops.relu, "Relu6": ops.relu6, "Sigmoid": ops.sigmoid, "Silu": ops.silu,
           "HardSigmoid": ops.hard_sigmoid, "HardSilu": ops.hard_silu, "Gelu": ops.gelu, "Tanh": ops.tanh}
    for c in op_classes:
        if c in fns:
            outs.append(fns[c](L.Conv2D(3, 1, name=f"pre_{c}")(i)))
    if gelu_tanh:
        outs.append(ops.gelu(L.Conv2D(3, 1, name="pre_gelu_tanh")(i), approximate=True))
    x = L.Concatenate(name="cat")(outs) if len(outs) > 1 else outs[0]
    model = keras.Model(i, x)
    x = np.random.default_rng(5).normal(0, 1, (2, 6, 6, 3)).astype(np.float32)
    randomize_keras_model(model, seed=2, calib_input=x)
    model.save(tmp_path / "m.keras")
    g = check(tmp_path / "m.keras", model, x)
    assert rel_err(Model(g, threads=1)(x), keras_forward(model, x)) <= 1e-4
