"""VGG16 and VGG19 (Simonyan & Zisserman, 2015) as keras.applications builds them.

Five blocks of 3x3 'same' convolutions with bias and ReLU, each closed by a 2x2/2 max pool; the top
is Flatten + fc1 + fc2 (4096, ReLU) + predictions. No BatchNorm, no padding layers.
"""

from __future__ import annotations

from nets.graph.builder import GraphBuilder
from nets.graph.ir import Graph
from nets.zoo import Namer, check_options, classifier_act, feature_pooling, keras_order

# filters and number of convs per block
_BLOCKS = {
    "vgg16": ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)),
    "vgg19": ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4)),
}


def _vgg(model, include_top, pooling, classes, input_shape, classifier_activation, weights) -> Graph:
    shape = check_options(model, include_top=include_top, pooling=pooling, classes=classes,
                          input_shape=input_shape, classifier_activation=classifier_activation,
                          weights=weights, default_size=224, min_size=32)
    auto = Namer()
    b = GraphBuilder(model)
    x = b.input(shape, name=auto("input_layer"))
    for i, (filters, convs) in enumerate(_BLOCKS[model], start=1):
        for j in range(1, convs + 1):
            x = b.conv2d(x, filters, 3, padding="same", activation="relu", name=f"block{i}_conv{j}")
        x = b.max_pool2d(x, 2, strides=2, name=f"block{i}_pool")
    if include_top:
        x = b.flatten(x, name="flatten")
        x = b.dense(x, 4096, activation="relu", name="fc1")
        x = b.dense(x, 4096, activation="relu", name="fc2")
        x = b.dense(x, classes, activation=classifier_act(classifier_activation), name="predictions")
    else:
        x = feature_pooling(b, x, pooling, auto("global_average_pooling2d"), auto("global_max_pooling2d"))
    return keras_order(b.build(x))


def vgg16(include_top=True, pooling=None, classes=1000, input_shape=None, classifier_activation="softmax",
          weights=None) -> Graph:
    """keras.applications.VGG16 as a graph (138,357,544 parameters with the top)."""
    return _vgg("vgg16", include_top, pooling, classes, input_shape, classifier_activation, weights)


def vgg19(include_top=True, pooling=None, classes=1000, input_shape=None, classifier_activation="softmax",
          weights=None) -> Graph:
    """keras.applications.VGG19 as a graph (143,667,240 parameters with the top)."""
    return _vgg("vgg19", include_top, pooling, classes, input_shape, classifier_activation, weights)
