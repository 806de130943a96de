"""ResNet50/101/152 v1 (He et al., 2015) as keras.applications builds them.

Stem: ZeroPadding2D(3) + 7x7/2 'valid' conv + BN + ReLU, then ZeroPadding2D(1) + 3x3/2 'valid' max
pool. Four stages of bottleneck blocks (1x1 -> 3x3 'same' -> 1x1 with 4x the filters, every conv with
bias and followed by BatchNorm with epsilon 1.001e-5); the first block of a stage has a projection
shortcut (``_0_conv``) and carries the stage's stride on its 1x1 convs.
"""

from __future__ import annotations

from nets.graph.builder import GraphBuilder
from nets.graph.ir import Graph
from nets.zoo import check_options, classifier_act, feature_pooling, keras_order

BN_EPSILON = 1.001e-5

# blocks per stage conv2..conv5 (filters 64, 128, 256, 512)
_STAGES = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
}


def _block(b: GraphBuilder, x: str, filters: int, stride: int, conv_shortcut: bool, name: str) -> str:
    if conv_shortcut:
        shortcut = b.conv2d(x, 4 * filters, 1, strides=stride, name=f"{name}_0_conv")
        shortcut = b.batch_norm(shortcut, epsilon=BN_EPSILON, name=f"{name}_0_bn")
    else:
        shortcut = x
    x = b.conv2d(x, filters, 1, strides=stride, name=f"{name}_1_conv")
    x = b.batch_norm(x, epsilon=BN_EPSILON, name=f"{name}_1_bn")
    x = b.activation(x, "relu", name=f"{name}_1_relu")
    x = b.conv2d(x, filters, 3, padding="same", name=f"{name}_2_conv")
    x = b.batch_norm(x, epsilon=BN_EPSILON, name=f"{name}_2_bn")
    x = b.activation(x, "relu", name=f"{name}_2_relu")
    x = b.conv2d(x, 4 * filters, 1, name=f"{name}_3_conv")
    x = b.batch_norm(x, epsilon=BN_EPSILON, name=f"{name}_3_bn")
    x = b.add([shortcut, x], name=f"{name}_add")   # Keras' input order: shortcut first
    return b.activation(x, "relu", name=f"{name}_out")


def _stage(b: GraphBuilder, x: str, filters: int, blocks: int, stride1: int, name: str) -> str:
    x = _block(b, x, filters, stride1, True, f"{name}_block1")
    for i in range(2, blocks + 1):
        x = _block(b, x, filters, 1, False, f"{name}_block{i}")
    return x


def _resnet(model, include_top, pooling, classes, input_shape, classifier_activation, weights) -> Graph:
    shape = check_options(model, include_top=include_top, pooling=pooling, classes=classes,
                          input_shape=input_shape, classifier_activation=classifier_activation,
                          weights=weights, default_size=224, min_size=32)
    b = GraphBuilder(model)
    x = b.input(shape, name="input_layer")
    x = b.zero_pad(x, 3, name="conv1_pad")
    x = b.conv2d(x, 64, 7, strides=2, name="conv1_conv")
    x = b.batch_norm(x, epsilon=BN_EPSILON, name="conv1_bn")
    x = b.activation(x, "relu", name="conv1_relu")
    x = b.zero_pad(x, 1, name="pool1_pad")
    x = b.max_pool2d(x, 3, strides=2, name="pool1_pool")
    for i, blocks in enumerate(_STAGES[model]):
        x = _stage(b, x, 64 << i, blocks, 1 if i == 0 else 2, f"conv{i + 2}")
    if include_top:
        x = b.global_avg_pool(x, name="avg_pool")
        x = b.dense(x, classes, activation=classifier_act(classifier_activation), name="predictions")
    else:
        x = feature_pooling(b, x, pooling, "avg_pool", "max_pool")
    return keras_order(b.build(x))


def resnet50(include_top=True, pooling=None, classes=1000, input_shape=None,
             classifier_activation="softmax", weights=None) -> Graph:
    """keras.applications.ResNet50 as a graph (25,636,712 parameters with the top)."""
    return _resnet("resnet50", include_top, pooling, classes, input_shape, classifier_activation, weights)


def resnet101(include_top=True, pooling=None, classes=1000, input_shape=None,
              classifier_activation="softmax", weights=None) -> Graph:
    """keras.applications.ResNet101 as a graph."""
    return _resnet("resnet101", include_top, pooling, classes, input_shape, classifier_activation, weights)


def resnet152(include_top=True, pooling=None, classes=1000, input_shape=None,
              classifier_activation="softmax", weights=None) -> Graph:
    """keras.applications.ResNet152 as a graph."""
    return _resnet("resnet152", include_top, pooling, classes, input_shape, classifier_activation, weights)
