"""InceptionV3 (Szegedy et al., 2015) as keras.applications builds it.

Every convolution is Keras' ``conv2d_bn``: Conv2D without bias, BatchNormalization with
``scale=False`` (no gamma, epsilon 1e-3) and ReLU, all auto-named (``conv2d_N``,
``batch_normalization_N``, ``activation_N``); only the concatenations are named (``mixed0`` ..
``mixed10``, ``mixed9_0``, ``mixed9_1``). The branch average pools are 3x3/1 'same' and divide by
the number of real cells, not the 9 of the window. Keras lists the layers of an Inception module
interleaved by depth, not branch by branch; ``keras_order`` reproduces that.
"""

from __future__ import annotations

from nets.graph.builder import GraphBuilder
from nets.graph.ir import Graph
from nets.zoo import Namer, check_options, classifier_act, feature_pooling, keras_order


class _Net:
    def __init__(self, b: GraphBuilder, auto: Namer):
        self.b, self.auto = b, auto

    def conv_bn(self, x, filters, rows, cols, padding="same", strides=1) -> str:
        b, auto = self.b, self.auto
        x = b.conv2d(x, filters, (rows, cols), strides=strides, padding=padding, use_bias=False,
                     name=auto("conv2d"))
        x = b.batch_norm(x, epsilon=1e-3, scale=False, name=auto("batch_normalization"))
        return b.activation(x, "relu", name=auto("activation"))

    def avg_pool(self, x) -> str:
        return self.b.avg_pool2d(x, 3, strides=1, padding="same", count_include_pad=False,
                                 name=self.auto("average_pooling2d"))

    def max_pool(self, x) -> str:
        return self.b.max_pool2d(x, 3, strides=2, name=self.auto("max_pooling2d"))

    def concat(self, xs, name=None) -> str:
        return self.b.concat(xs, name=name or self.auto("concatenate"))


def _module_35(n: _Net, x: str, pool_filters: int, name: str) -> str:
    """mixed0..mixed2: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 at 35x35."""
    branch1x1 = n.conv_bn(x, 64, 1, 1)
    branch5x5 = n.conv_bn(x, 48, 1, 1)
    branch5x5 = n.conv_bn(branch5x5, 64, 5, 5)
    branch3x3dbl = n.conv_bn(x, 64, 1, 1)
    branch3x3dbl = n.conv_bn(branch3x3dbl, 96, 3, 3)
    branch3x3dbl = n.conv_bn(branch3x3dbl, 96, 3, 3)
    branch_pool = n.conv_bn(n.avg_pool(x), pool_filters, 1, 1)
    return n.concat([branch1x1, branch5x5, branch3x3dbl, branch_pool], name=name)


def _module_17(n: _Net, x: str, mid: int, name: str) -> str:
    """mixed4..mixed7: factorised 7x7 branches at 17x17 with ``mid`` inner filters."""
    branch1x1 = n.conv_bn(x, 192, 1, 1)
    branch7x7 = n.conv_bn(x, mid, 1, 1)
    branch7x7 = n.conv_bn(branch7x7, mid, 1, 7)
    branch7x7 = n.conv_bn(branch7x7, 192, 7, 1)
    branch7x7dbl = n.conv_bn(x, mid, 1, 1)
    branch7x7dbl = n.conv_bn(branch7x7dbl, mid, 7, 1)
    branch7x7dbl = n.conv_bn(branch7x7dbl, mid, 1, 7)
    branch7x7dbl = n.conv_bn(branch7x7dbl, mid, 7, 1)
    branch7x7dbl = n.conv_bn(branch7x7dbl, 192, 1, 7)
    branch_pool = n.conv_bn(n.avg_pool(x), 192, 1, 1)
    return n.concat([branch1x1, branch7x7, branch7x7dbl, branch_pool], name=name)


def _module_8(n: _Net, x: str, i: int) -> str:
    """mixed9, mixed10: expanded 1x3 / 3x1 branches at 8x8."""
    branch1x1 = n.conv_bn(x, 320, 1, 1)
    branch3x3 = n.conv_bn(x, 384, 1, 1)
    branch3x3_1 = n.conv_bn(branch3x3, 384, 1, 3)
    branch3x3_2 = n.conv_bn(branch3x3, 384, 3, 1)
    branch3x3 = n.concat([branch3x3_1, branch3x3_2], name=f"mixed9_{i}")
    branch3x3dbl = n.conv_bn(x, 448, 1, 1)
    branch3x3dbl = n.conv_bn(branch3x3dbl, 384, 3, 3)
    branch3x3dbl_1 = n.conv_bn(branch3x3dbl, 384, 1, 3)
    branch3x3dbl_2 = n.conv_bn(branch3x3dbl, 384, 3, 1)
    branch3x3dbl = n.concat([branch3x3dbl_1, branch3x3dbl_2])
    branch_pool = n.conv_bn(n.avg_pool(x), 192, 1, 1)
    return n.concat([branch1x1, branch3x3, branch3x3dbl, branch_pool], name=f"mixed{9 + i}")


def build(include_top=True, pooling=None, classes=1000, input_shape=None, classifier_activation="softmax",
          weights=None) -> Graph:
    """keras.applications.InceptionV3 as a graph (23,851,784 parameters with the top)."""
    shape = check_options("inception_v3", include_top=include_top, pooling=pooling, classes=classes,
                          input_shape=input_shape, classifier_activation=classifier_activation,
                          weights=weights, default_size=299, min_size=75)
    auto = Namer()
    b = GraphBuilder("inception_v3")
    n = _Net(b, auto)
    x = b.input(shape, name=auto("input_layer"))
    x = n.conv_bn(x, 32, 3, 3, strides=2, padding="valid")
    x = n.conv_bn(x, 32, 3, 3, padding="valid")
    x = n.conv_bn(x, 64, 3, 3)
    x = n.max_pool(x)
    x = n.conv_bn(x, 80, 1, 1, padding="valid")
    x = n.conv_bn(x, 192, 3, 3, padding="valid")
    x = n.max_pool(x)

    x = _module_35(n, x, 32, "mixed0")
    x = _module_35(n, x, 64, "mixed1")
    x = _module_35(n, x, 64, "mixed2")

    # mixed3: grid reduction 35 -> 17
    branch3x3 = n.conv_bn(x, 384, 3, 3, strides=2, padding="valid")
    branch3x3dbl = n.conv_bn(x, 64, 1, 1)
    branch3x3dbl = n.conv_bn(branch3x3dbl, 96, 3, 3)
    branch3x3dbl = n.conv_bn(branch3x3dbl, 96, 3, 3, strides=2, padding="valid")
    x = n.concat([branch3x3, branch3x3dbl, n.max_pool(x)], name="mixed3")

    x = _module_17(n, x, 128, "mixed4")
    x = _module_17(n, x, 160, "mixed5")
    x = _module_17(n, x, 160, "mixed6")
    x = _module_17(n, x, 192, "mixed7")

    # mixed8: grid reduction 17 -> 8
    branch3x3 = n.conv_bn(x, 192, 1, 1)
    branch3x3 = n.conv_bn(branch3x3, 320, 3, 3, strides=2, padding="valid")
    branch7x7x3 = n.conv_bn(x, 192, 1, 1)
    branch7x7x3 = n.conv_bn(branch7x7x3, 192, 1, 7)
    branch7x7x3 = n.conv_bn(branch7x7x3, 192, 7, 1)
    branch7x7x3 = n.conv_bn(branch7x7x3, 192, 3, 3, strides=2, padding="valid")
    x = n.concat([branch3x3, branch7x7x3, n.max_pool(x)], name="mixed8")

    x = _module_8(n, x, 0)
    x = _module_8(n, x, 1)
    if include_top:
        x = b.global_avg_pool(x, name="avg_pool")
        x = b.dense(x, classes, activation=classifier_act(classifier_activation), name="predictions")
    else:
        x = feature_pooling(b, x, pooling, auto("global_average_pooling2d"), auto("global_max_pooling2d"))
    return keras_order(b.build(x))
