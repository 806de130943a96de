"""MobileNet v1 (Howard et al., 2017) as keras.applications builds it.

A 3x3/2 'same' conv, then 13 depthwise-separable blocks (3x3 depthwise, 1x1 pointwise), every conv
without bias, followed by BatchNorm (epsilon 1e-3) and ReLU6. Stride-2 depthwise convs get an explicit
``conv_pad_N`` ZeroPadding2D of one row/column at the bottom/right only and run 'valid'. ``alpha``
scales every conv's filters (``int(filters * alpha)``), ``depth_multiplier`` the depthwise outputs.
The top is a 1x1 conv classifier: GlobalAveragePooling2D(keepdims) + Dropout + ``conv_preds`` +
Reshape + Activation.
"""

from __future__ import annotations

import warnings

from nets.errors import ModelError
from nets.graph.builder import GraphBuilder
from nets.graph.ir import Graph
from nets.zoo import Namer, check_options, feature_pooling, keras_order

# (pointwise filters, stride) of blocks 1..13
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
           (512, 1), (512, 1), (1024, 2), (1024, 1))
IMAGENET_ALPHAS = (0.25, 0.5, 0.75, 1.0)
IMAGENET_SIZES = (128, 160, 192, 224)


def _filters(filters: int, alpha: float, layer: str) -> int:
    n = int(filters * alpha)
    if n < 1:
        raise ModelError(f"mobilenet: alpha={alpha} leaves layer {layer!r} with {n} filters")
    return n


def _depthwise_block(b: GraphBuilder, x: str, filters: int, alpha: float, depth_multiplier: int,
                     stride: int, i: int) -> str:
    if stride == 1:
        x = b.depthwise_conv2d(x, 3, padding="same", depth_multiplier=depth_multiplier, use_bias=False,
                               name=f"conv_dw_{i}")
    else:
        x = b.zero_pad(x, ((0, 1), (0, 1)), name=f"conv_pad_{i}")
        x = b.depthwise_conv2d(x, 3, strides=stride, padding="valid", depth_multiplier=depth_multiplier,
                               use_bias=False, name=f"conv_dw_{i}")
    x = b.batch_norm(x, epsilon=1e-3, name=f"conv_dw_{i}_bn")
    x = b.relu(x, max_value=6.0, name=f"conv_dw_{i}_relu")
    x = b.conv2d(x, _filters(filters, alpha, f"conv_pw_{i}"), 1, padding="same", use_bias=False,
                 name=f"conv_pw_{i}")
    x = b.batch_norm(x, epsilon=1e-3, name=f"conv_pw_{i}_bn")
    return b.relu(x, max_value=6.0, name=f"conv_pw_{i}_relu")


def build(include_top=True, pooling=None, classes=1000, input_shape=None, classifier_activation="softmax",
          weights=None, alpha=1.0, depth_multiplier=1, dropout=1e-3) -> Graph:
    """keras.applications.MobileNet as a graph (4,253,864 parameters with the top at alpha 1)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ModelError(f"mobilenet: alpha must be a positive number, got {alpha!r}")
    if isinstance(depth_multiplier, bool) or not isinstance(depth_multiplier, int) or depth_multiplier < 1:
        raise ModelError(f"mobilenet: depth_multiplier must be a positive int, got {depth_multiplier!r}")
    if not 0 <= dropout < 1:
        raise ModelError(f"mobilenet: dropout must be in [0, 1), got {dropout!r}")
    default_size = 224
    if input_shape is not None and len(input_shape) == 3 and input_shape[0] == input_shape[1] \
            and input_shape[0] in IMAGENET_SIZES:
        default_size = input_shape[0]
    shape = check_options("mobilenet", include_top=include_top, pooling=pooling, classes=classes,
                          input_shape=input_shape, classifier_activation=classifier_activation,
                          weights=weights, default_size=default_size, min_size=32)
    rows = shape[0]
    if weights == "imagenet":
        if depth_multiplier != 1:
            raise ModelError(f"mobilenet: with weights='imagenet' depth_multiplier must be 1, "
                             f"got {depth_multiplier}")
        if alpha not in IMAGENET_ALPHAS:
            raise ModelError(f"mobilenet: with weights='imagenet' alpha must be one of {IMAGENET_ALPHAS}, "
                             f"got {alpha}")
        if shape[0] != shape[1] or shape[0] not in IMAGENET_SIZES:
            rows = 224
            warnings.warn(f"mobilenet: input_shape {shape} is not square or not one of {IMAGENET_SIZES}; "
                          "ImageNet weights for 224x224 apply", stacklevel=2)

    auto = Namer()
    b = GraphBuilder(f"mobilenet_{alpha:0.2f}_{rows}")
    x = b.input(shape, name=auto("input_layer"))
    x = b.conv2d(x, _filters(32, alpha, "conv1"), 3, strides=2, padding="same", use_bias=False,
                 name="conv1")
    x = b.batch_norm(x, epsilon=1e-3, name="conv1_bn")
    x = b.relu(x, max_value=6.0, name="conv1_relu")
    for i, (filters, stride) in enumerate(_BLOCKS, start=1):
        x = _depthwise_block(b, x, filters, alpha, depth_multiplier, stride, i)

    if include_top:
        x = b.global_avg_pool(x, keepdims=True, name=auto("global_average_pooling2d"))
        x = b.dropout(x, dropout, name="dropout")
        x = b.conv2d(x, classes, 1, padding="same", name="conv_preds")
        x = b.reshape(x, (classes,), name="reshape_2")
        x = b.activation(x, classifier_activation, name="predictions")
    else:
        x = feature_pooling(b, x, pooling, auto("global_average_pooling2d"), auto("global_max_pooling2d"))
    return keras_order(b.build(x))
