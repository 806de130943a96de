"""Xception (Chollet, 2017) as keras.applications builds it.

Entry flow: two plain 3x3 convs, then three blocks of separable convs closed by a 3x3/2 'same' max
pool and added to a strided 1x1 projection of the block input. Middle flow: eight residual blocks of
three ReLU-separable conv-BN. Exit flow: one more projection block and two separable convs. No conv
has a bias; BatchNorm epsilon is Keras' default 1e-3. The projection convs, their BatchNorms and the
adds carry Keras' automatic names (``conv2d``, ``batch_normalization``, ``add``, with ``_N``). Block 2
starts straight with its separable conv: it has no ``block2_sepconv1_act``.
"""

from __future__ import annotations

from nets.graph.builder import GraphBuilder
from nets.graph.ir import Graph
from nets.zoo import Namer, check_options, classifier_act, feature_pooling, keras_order


def _sep_bn(b: GraphBuilder, x: str, filters: int, name: str) -> str:
    x = b.separable_conv2d(x, filters, 3, padding="same", use_bias=False, name=name)
    return b.batch_norm(x, epsilon=1e-3, name=f"{name}_bn")


def _projection(b: GraphBuilder, auto: Namer, x: str, filters: int) -> str:
    r = b.conv2d(x, filters, 1, strides=2, padding="same", use_bias=False, name=auto("conv2d"))
    return b.batch_norm(r, epsilon=1e-3, name=auto("batch_normalization"))


def _down_block(b: GraphBuilder, auto: Namer, x: str, block: int, filters1: int, filters2: int,
                act_first: bool) -> str:
    """Two separable convs + 3x3/2 max pool, added to a strided 1x1 projection of the input."""
    prefix = f"block{block}"
    residual = _projection(b, auto, x, filters2)
    if act_first:
        x = b.activation(x, "relu", name=f"{prefix}_sepconv1_act")
    x = _sep_bn(b, x, filters1, f"{prefix}_sepconv1")
    x = b.activation(x, "relu", name=f"{prefix}_sepconv2_act")
    x = _sep_bn(b, x, filters2, f"{prefix}_sepconv2")
    x = b.max_pool2d(x, 3, strides=2, padding="same", name=f"{prefix}_pool")
    return b.add([x, residual], name=auto("add"))


def build(include_top=True, pooling=None, classes=1000, input_shape=None, classifier_activation="softmax",
          weights=None) -> Graph:
    """keras.applications.Xception as a graph (22,910,480 parameters with the top)."""
    shape = check_options("xception", include_top=include_top, pooling=pooling, classes=classes,
                          input_shape=input_shape, classifier_activation=classifier_activation,
                          weights=weights, default_size=299, min_size=71)
    auto = Namer()
    b = GraphBuilder("xception")
    x = b.input(shape, name=auto("input_layer"))
    x = b.conv2d(x, 32, 3, strides=2, use_bias=False, name="block1_conv1")
    x = b.batch_norm(x, epsilon=1e-3, name="block1_conv1_bn")
    x = b.activation(x, "relu", name="block1_conv1_act")
    x = b.conv2d(x, 64, 3, use_bias=False, name="block1_conv2")
    x = b.batch_norm(x, epsilon=1e-3, name="block1_conv2_bn")
    x = b.activation(x, "relu", name="block1_conv2_act")

    x = _down_block(b, auto, x, 2, 128, 128, act_first=False)
    x = _down_block(b, auto, x, 3, 256, 256, act_first=True)
    x = _down_block(b, auto, x, 4, 728, 728, act_first=True)

    for i in range(5, 13):
        residual = x
        for j in (1, 2, 3):
            x = b.activation(x, "relu", name=f"block{i}_sepconv{j}_act")
            x = _sep_bn(b, x, 728, f"block{i}_sepconv{j}")
        x = b.add([x, residual], name=auto("add"))

    x = _down_block(b, auto, x, 13, 728, 1024, act_first=True)

    for j, filters in ((1, 1536), (2, 2048)):
        x = _sep_bn(b, x, filters, f"block14_sepconv{j}")
        x = b.activation(x, "relu", name=f"block14_sepconv{j}_act")

    if include_top:
        x = b.global_avg_pool(x, name="avg_pool")
        x = b.dense(x, classes, activation=classifier_act(classifier_activation), name="predictions")
    else:
        x = feature_pooling(b, x, pooling, auto("global_average_pooling2d"), auto("global_max_pooling2d"))
    return keras_order(b.build(x))
