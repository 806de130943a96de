"""The zoo builders against keras.applications (weights=None): layer for layer, the same names (up to
Keras' session-wide auto-numbering), order, connectivity, op attributes, weight shapes and output
shapes, and the same parameter count. Build-only: no forward passes."""

from __future__ import annotations

import os
import re

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import pytest  # noqa: E402

from kernels import same_padding  # noqa: E402
from nets import zoo  # noqa: E402
from nets.errors import ModelError  # noqa: E402

KERAS = {
    "vgg16": keras.applications.VGG16,
    "vgg19": keras.applications.VGG19,
    "resnet50": keras.applications.ResNet50,
    "resnet101": keras.applications.ResNet101,
    "resnet152": keras.applications.ResNet152,
    "inception_v3": keras.applications.InceptionV3,
    "xception": keras.applications.Xception,
    "mobilenet": keras.applications.MobileNet,
}

OPS = {
    "InputLayer": "input", "Conv2D": "conv2d", "DepthwiseConv2D": "depthwise_conv2d",
    "SeparableConv2D": "separable_conv2d", "BatchNormalization": "batch_norm", "Activation": "activation",
    "ReLU": "activation", "MaxPooling2D": "max_pool2d", "AveragePooling2D": "avg_pool2d",
    "GlobalAveragePooling2D": "global_avg_pool", "GlobalMaxPooling2D": "global_max_pool",
    "ZeroPadding2D": "zero_pad", "Add": "add", "Concatenate": "concat", "Dense": "dense",
    "Flatten": "flatten", "Reshape": "reshape", "Dropout": "dropout",
}

# Layers Keras names itself; a test session has built other models before, so only the prefix and the
# numbering relative to the model's first such layer can be compared.
AUTO = re.compile(r"^(input_layer|conv2d|batch_normalization|activation|max_pooling2d|average_pooling2d|"
                  r"concatenate|add|global_average_pooling2d|global_max_pooling2d)(?:_(\d+))?$")


def _act(name):
    return None if name == "linear" else name


def _check_padding(node, cfg, in_shape, kernel, strides):
    if cfg["padding"] == "valid":
        assert node.attrs["pad"] == (0, 0, 0, 0), node.name
    else:
        assert cfg["padding"] == "same", node.name
        want = same_padding(in_shape[0], kernel[0], strides[0]) + same_padding(in_shape[1], kernel[1], strides[1])
        assert node.attrs["pad"] == want, node.name


def _check_attrs(node, layer, graph):
    """The op attributes that shapes alone would not reveal, against the Keras layer's config."""
    cfg, kind, a = layer.get_config(), type(layer).__name__, node.attrs
    assert node.op == OPS[kind], (node.name, kind)
    in_shape = graph.shapes[node.inputs[0]] if node.inputs else None
    if kind in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
        assert a["kernel_size"] == tuple(cfg["kernel_size"]) and a["strides"] == tuple(cfg["strides"])
        assert a["use_bias"] == cfg["use_bias"] and a["act"] == _act(cfg["activation"]), node.name
        assert tuple(cfg["dilation_rate"]) == (1, 1)
        if kind != "Conv2D":
            assert a["depth_multiplier"] == cfg["depth_multiplier"]
        if kind != "DepthwiseConv2D":
            assert a["filters"] == cfg["filters"]
        _check_padding(node, cfg, in_shape, a["kernel_size"], a["strides"])
    elif kind == "BatchNormalization":
        assert (a["epsilon"], a["center"], a["scale"]) == (cfg["epsilon"], cfg["center"], cfg["scale"])
        assert cfg["axis"] in (-1, 3)
    elif kind == "Activation":
        assert a["act"] == cfg["activation"], node.name
    elif kind == "ReLU":
        assert cfg["negative_slope"] == 0 and cfg["threshold"] == 0
        assert a["act"] == {None: "relu", 6.0: "relu6"}[cfg["max_value"]]
    elif kind in ("MaxPooling2D", "AveragePooling2D"):
        assert a["pool_size"] == tuple(cfg["pool_size"]) and a["strides"] == tuple(cfg["strides"])
        _check_padding(node, cfg, in_shape, a["pool_size"], a["strides"])
        if kind == "AveragePooling2D":
            assert a["count_include_pad"] is False   # Keras divides by the real cells only
    elif kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        assert a["keepdims"] == cfg["keepdims"]
    elif kind == "ZeroPadding2D":
        (t, b), (left, r) = cfg["padding"]
        assert a["pad"] == (t, b, left, r)
    elif kind == "Dense":
        assert (a["units"], a["use_bias"], a["act"]) == (cfg["units"], cfg["use_bias"], _act(cfg["activation"]))
    elif kind == "Dropout":
        assert a["rate"] == cfg["rate"]
    elif kind == "Reshape":
        assert a["target_shape"] == tuple(cfg["target_shape"])
    elif kind == "Concatenate":
        assert cfg["axis"] in (-1, 3)


def _keras_inputs(layer):
    node = layer._inbound_nodes[0]
    return [t._keras_history.operation.name for t in node.input_tensors]


def assert_same_model(graph, model):
    layers = model.layers
    nodes = graph.nodes
    assert len(nodes) == len(layers), f"{len(nodes)} nodes vs {len(layers)} Keras layers"
    ours_of = {}           # Keras layer name -> our node name, by position
    offsets = {}           # auto-name prefix -> Keras number minus ours
    for node, layer in zip(nodes, layers, strict=True):
        auto = AUTO.match(node.name)
        if auto:
            theirs = AUTO.match(layer.name)
            assert theirs and theirs.group(1) == auto.group(1), (node.name, layer.name)
            delta = int(theirs.group(2) or 0) - int(auto.group(2) or 0)
            assert offsets.setdefault(auto.group(1), delta) == delta, (node.name, layer.name)
        else:
            assert node.name == layer.name
        ours_of[layer.name] = node.name
        assert tuple(node.weight_shapes.values()) == tuple(tuple(w.shape) for w in layer.weights), node.name
        assert graph.shapes[node.output] == tuple(layer.output.shape[1:]), node.name
        assert node.inputs == [ours_of[k] for k in _keras_inputs(layer)], node.name
        _check_attrs(node, layer, graph)
    weighted = [n.name for n in graph.weighted_nodes()]
    assert weighted == [ours_of[la.name] for la in layers if la.weights]
    assert [graph.shapes[v] for v in graph.outputs] == [tuple(model.output.shape[1:])]
    assert graph.outputs == [nodes[-1].output]
    assert graph.num_params() == model.count_params()


def check(name, **kw):
    graph = zoo.build(name, **kw)
    if "input_shape" not in kw:   # headless Keras models default to (None, None, 3); ours are static
        kw = dict(kw, input_shape=graph.shapes[graph.inputs[0]])
    model = KERAS[name](weights=None, **kw)
    assert_same_model(graph, model)
    return graph


# ------------------------------------------------------------------ default architectures

@pytest.mark.parametrize("name", ["vgg16", "vgg19", "resnet50", "inception_v3", "xception", "mobilenet"])
def test_default_matches_keras(name):
    g = check(name)
    assert g.nodes[0].op == "input"
    assert g.shapes[g.inputs[0]] == (zoo.INPUT_SIZE[name],) * 2 + (3,)
    assert g.shapes[g.outputs[0]] == (1000,)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet101", "resnet152"])
def test_deep_resnets_match_keras(name):
    check(name)


# ------------------------------------------------------------------ options, one quick per family

@pytest.mark.parametrize("name,kw", [
    ("vgg16", dict(include_top=False, pooling="max")),
    ("resnet50", dict(include_top=False, pooling="avg", input_shape=(197, 161, 3))),
    ("inception_v3", dict(include_top=False, input_shape=(75, 75, 3))),
    ("xception", dict(classes=10, classifier_activation=None)),
    ("mobilenet", dict(alpha=0.5, depth_multiplier=2)),
])
def test_option_variant_matches_keras(name, kw):
    check(name, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("name,kw", [
    ("vgg16", dict(include_top=False)),
    ("vgg16", dict(include_top=False, pooling="avg", input_shape=(64, 80, 3))),
    ("vgg16", dict(classes=10, input_shape=(96, 96, 3), classifier_activation=None)),
    ("vgg19", dict(include_top=False, pooling="max", input_shape=(32, 32, 3))),
    ("resnet50", dict(include_top=False)),
    ("resnet50", dict(include_top=False, pooling="max")),
    ("resnet50", dict(classes=10, classifier_activation=None)),
    ("resnet101", dict(include_top=False, pooling="avg")),
    ("inception_v3", dict(include_top=False, pooling="avg")),
    ("inception_v3", dict(include_top=False, pooling="max", input_shape=(150, 200, 3))),
    ("inception_v3", dict(classes=10, classifier_activation=None)),
    ("xception", dict(include_top=False)),
    ("xception", dict(include_top=False, pooling="max", input_shape=(71, 71, 3))),
    ("xception", dict(include_top=False, pooling="avg", input_shape=(200, 150, 3))),
    ("mobilenet", dict(alpha=0.25, input_shape=(128, 128, 3))),
    ("mobilenet", dict(alpha=0.75, include_top=False, pooling="max", input_shape=(160, 192, 3))),
    ("mobilenet", dict(include_top=False, pooling="avg", depth_multiplier=2)),
    ("mobilenet", dict(classes=10, classifier_activation=None, dropout=0.2)),
])
def test_option_variants_match_keras(name, kw):
    check(name, **kw)


# ------------------------------------------------------------------ registry and validation

def test_registry_and_metadata():
    assert set(zoo.MODELS) == set(KERAS) == set(zoo.PREPROCESS) == set(zoo.INPUT_SIZE)
    assert {m for m, mode in zoo.PREPROCESS.items() if mode == "tf"} == {"inception_v3", "xception", "mobilenet"}
    assert all(mode == "caffe" for m, mode in zoo.PREPROCESS.items() if m.startswith(("vgg", "resnet")))
    assert zoo.INPUT_SIZE["xception"] == zoo.INPUT_SIZE["inception_v3"] == 299
    assert zoo.build("ResNet50", include_top=False).shapes["conv5_block3_out"] == (7, 7, 2048)


def test_unknown_model_lists_known_names():
    with pytest.raises(ModelError, match="resnet50.*vgg16|vgg16.*resnet50") as err:
        zoo.build("resnet51")
    assert all(name in str(err.value) for name in zoo.MODELS)


@pytest.mark.parametrize("name,least", [("vgg16", 32), ("resnet50", 32), ("inception_v3", 75),
                                        ("xception", 71), ("mobilenet", 32)])
def test_too_small_input_is_refused(name, least):
    with pytest.raises(ModelError, match=rf"at least {least}x{least}"):
        zoo.build(name, include_top=False, input_shape=(least, least - 1, 3))
    with pytest.raises(ValueError):   # Keras refuses the same shape
        KERAS[name](weights=None, include_top=False, input_shape=(least, least - 1, 3))


@pytest.mark.parametrize("kw,match", [
    (dict(pooling="mean"), "pooling"),
    (dict(input_shape=(224, 224)), "three integers"),
    (dict(input_shape=(None, None, 3), include_top=False), "static"),
    (dict(classes=0), "classes"),
    (dict(classifier_activation="tanh"), "classifier_activation"),
    (dict(weights="imagenet", classes=10), "1000"),
    (dict(weights="imagenet", input_shape=(192, 192, 3)), r"\(224, 224, 3\)"),
    (dict(weights="imagenet", include_top=False, input_shape=(192, 192, 1)), "3 channels"),
])
def test_bad_options_raise_model_error(kw, match):
    with pytest.raises(ModelError, match=match):
        zoo.build("resnet50", **kw)


def test_imagenet_constraints_match_keras():
    # what Keras accepts with weights="imagenet" we accept; what it refuses we refuse
    zoo.build("vgg16", weights="imagenet", include_top=False, input_shape=(100, 120, 3))
    zoo.build("mobilenet", weights="imagenet", alpha=0.5, input_shape=(160, 160, 3))
    for kw in (dict(depth_multiplier=2), dict(alpha=0.3)):
        with pytest.raises(ModelError, match="imagenet"):
            zoo.build("mobilenet", weights="imagenet", **kw)
    with pytest.raises(ModelError, match="alpha"):
        zoo.build("mobilenet", alpha=0.01)   # int(32 * 0.01) == 0 filters


def test_mobilenet_graph_name_and_head():
    g = zoo.build("mobilenet", alpha=0.75, input_shape=(192, 192, 3))
    assert g.name == "mobilenet_0.75_192"
    ops = [n.op for n in g.nodes[-5:]]
    assert ops == ["global_avg_pool", "dropout", "conv2d", "reshape", "activation"]
    assert g.node("conv_pad_2").attrs["pad"] == (0, 1, 0, 1)
    assert g.node("conv_dw_2").attrs["pad"] == (0, 0, 0, 0)
