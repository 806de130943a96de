"""The model zoo: keras.applications architectures as ``nets.graph.ir.Graph`` objects.

Every builder has Keras' signature and semantics::

    build(include_top=True, pooling=None, classes=1000, input_shape=None,
          classifier_activation="softmax", weights=None, **arch_options) -> Graph

and reproduces the Keras model layer for layer: the same layer names (auto-numbered ones as a fresh
Keras session numbers them: ``conv2d``, ``conv2d_1``, ...), the same ``ZeroPadding2D`` nodes, the same
weight arrays per layer, and the same layer order as ``model.layers`` — legacy ``.h5`` files with
auto-generated names can only be matched by that order. ``weights`` loads nothing; it only applies the
extra constraints Keras imposes when ``weights="imagenet"`` (1000 classes and the default input shape
with the top, 3 channels).

    >>> from nets import zoo
    >>> g = zoo.build("resnet50", include_top=False, pooling="avg")
    >>> g.shapes[g.outputs[0]]
    (2048,)
"""

from __future__ import annotations

import inspect
import os
import warnings

from nets.errors import ModelError
from nets.graph.builder import GraphBuilder
from nets.graph.ir import Graph

CLASSIFIER_ACTIVATIONS = (None, "linear", "softmax")


class Namer:
    """Keras' automatic layer names as a fresh session hands them out: ``conv2d``, ``conv2d_1``, ..."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def __call__(self, prefix: str) -> str:
        n = self.counts.get(prefix, 0)
        self.counts[prefix] = n + 1
        return prefix if n == 0 else f"{prefix}_{n}"


def check_options(model: str, *, include_top, pooling, classes, input_shape, classifier_activation,
                  weights, default_size: int, min_size: int) -> tuple[int, int, int]:
    """Validate the common keras.applications options; return the static input shape (H, W, C)."""
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ModelError(f"{model}: weights must be None, 'imagenet' or a path to a weights file, "
                         f"got {weights!r}")
    if pooling not in (None, "avg", "max"):
        raise ModelError(f"{model}: pooling must be None, 'avg' or 'max', got {pooling!r}")
    if include_top:
        if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
            raise ModelError(f"{model}: classes must be a positive int, got {classes!r}")
        if weights == "imagenet" and classes != 1000:
            raise ModelError(f"{model}: with weights='imagenet' and include_top=True, classes must be "
                             f"1000, got classes={classes}")
        if classifier_activation not in CLASSIFIER_ACTIVATIONS:
            raise ModelError(f"{model}: classifier_activation must be 'softmax' or None (logits), "
                             f"got {classifier_activation!r}")
    default = (default_size, default_size, 3)
    if input_shape is None:
        return default
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise ModelError(f"{model}: input_shape must be a tuple (H, W, C), got {input_shape!r}") from None
    if len(shape) != 3:
        raise ModelError(f"{model}: input_shape must be a tuple of three integers (H, W, C), got {shape}")
    if any(d is None for d in shape):
        raise ModelError(f"{model}: input_shape {shape} has unknown dimensions; the graph needs a static "
                         "shape (H, W, C)")
    if any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in shape):
        raise ModelError(f"{model}: input_shape must hold positive integers, got {shape}")
    if weights == "imagenet":
        if include_top and shape != default:
            raise ModelError(f"{model}: with weights='imagenet' and include_top=True, input_shape must be "
                             f"{default}, got {shape}")
        if shape[2] != 3:
            raise ModelError(f"{model}: with weights='imagenet' the input must have 3 channels, got {shape}")
    elif shape[2] not in (1, 3):
        warnings.warn(f"{model}: this model usually expects 1 or 3 input channels, got input_shape "
                      f"{shape}", stacklevel=3)
    if shape[0] < min_size or shape[1] < min_size:
        raise ModelError(f"{model}: input size must be at least {min_size}x{min_size}, got input_shape "
                         f"{shape}")
    return shape


def classifier_act(classifier_activation):
    return None if classifier_activation in (None, "linear") else classifier_activation


def feature_pooling(b: GraphBuilder, x: str, pooling, avg_name: str, max_name: str) -> str:
    """The optional global pooling Keras puts on a headless model."""
    if pooling == "avg":
        return b.global_avg_pool(x, name=avg_name)
    if pooling == "max":
        return b.global_max_pool(x, name=max_name)
    return x


def keras_order(graph: Graph) -> Graph:
    """Reorder ``graph.nodes`` the way Keras' ``Functional`` lists ``model.layers``.

    Keras sorts layers by depth (longest path to the output, deepest first) and breaks ties by the
    order a depth-first walk from the output reaches them, visiting each layer's inputs in call order.
    In a residual block that puts the shortcut conv after the main branch's 3x3 conv, in an Inception
    module it interleaves the branches. Nodes not on a path to an output are dropped, as in Keras.
    """
    producer = {n.output: n for n in graph.nodes}
    index: dict[str, int] = {}
    stack = [producer[v] for v in reversed(graph.outputs)]
    while stack:   # iterative pre-order DFS; ResNet152 is deeper than Python's recursion limit allows
        n = stack.pop()
        if n.name in index:
            continue
        index[n.name] = len(index)
        stack.extend(producer[v] for v in reversed(n.inputs))
    depth = {n.name: 0 for n in graph.nodes if n.name in index}
    for n in reversed(graph.nodes):   # nodes are topologically sorted: consumers come later
        if n.name not in index:
            continue
        for v in n.inputs:
            p = producer[v].name
            depth[p] = max(depth[p], depth[n.name] + 1)
    graph.nodes = sorted((n for n in graph.nodes if n.name in index),
                         key=lambda n: (-depth[n.name], index[n.name]))
    graph.shapes = {v: s for v, s in graph.shapes.items() if v in depth}
    graph.validate()
    return graph


from nets.zoo import inception_v3, mobilenet, resnet, vgg, xception  # noqa: E402

MODELS = {
    "vgg16": vgg.vgg16,
    "vgg19": vgg.vgg19,
    "resnet50": resnet.resnet50,
    "resnet101": resnet.resnet101,
    "resnet152": resnet.resnet152,
    "inception_v3": inception_v3.build,
    "xception": xception.build,
    "mobilenet": mobilenet.build,
}

# keras.applications preprocess_input mode: "caffe" = RGB->BGR and subtract the ImageNet mean
# [103.939, 116.779, 123.68] (BGR order); "tf" = x / 127.5 - 1.
PREPROCESS = {
    "vgg16": "caffe", "vgg19": "caffe", "resnet50": "caffe", "resnet101": "caffe", "resnet152": "caffe",
    "inception_v3": "tf", "xception": "tf", "mobilenet": "tf",
}

# Default (and ImageNet-weights) input side; the input shape is (size, size, 3).
INPUT_SIZE = {
    "vgg16": 224, "vgg19": 224, "resnet50": 224, "resnet101": 224, "resnet152": 224,
    "inception_v3": 299, "xception": 299, "mobilenet": 224,
}


def build(name: str, **kwargs) -> Graph:
    """Build the zoo model ``name`` with keras.applications options (see the module docstring)."""
    key = name.lower()
    if key not in MODELS:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    known = [p for p in inspect.signature(MODELS[key]).parameters if p != "self"]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ModelError(f"{key}: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"its options are {', '.join(known)}")
    return MODELS[key](**kwargs)


__all__ = ["MODELS", "PREPROCESS", "INPUT_SIZE", "build", "keras_order"]
