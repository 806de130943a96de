"""``nets.load``: a zoo architecture with weights (a Keras .h5 file, or seeded), ready to run."""

from __future__ import annotations

import os

from nets.errors import ModelError
from nets.model import Model

SEEDED = "seeded (untrained: predictions are meaningless)"


def load(name_or_path: str, weights: str | None = None, *, classifier_activation="softmax",
         include_top: bool = True, pooling=None, classes: int = 1000, input_shape=None,
         device: str = "cpu", threads: int | None = None, seed: int = 0, fuse: bool = True,
         **arch_options) -> Model:
    """Build a model-zoo network and load its weights.

    name_or_path: a zoo name ("resnet50", "vgg16", "inception_v3", ...).
    weights: a Keras .h5 weights file as keras.applications downloads it; None gives deterministic
        seeded weights (untrained; every output says so).
    classifier_activation: "softmax" (probabilities) or None (logits).
    Other keywords are keras.applications' options (include_top, pooling, classes, input_shape, and
    alpha / depth_multiplier for mobilenet). device: "cpu" or "reference" (NumPy oracle).
    """
    from nets import zoo
    from nets.weights import load_h5_weights, seeded_weights

    key = str(name_or_path).lower().replace("-", "_")
    if key not in zoo.MODELS:
        if os.path.exists(str(name_or_path)):
            raise ModelError(f"{name_or_path!r}: loading a whole model from a file is not supported yet; "
                             f"give an architecture name ({', '.join(sorted(zoo.MODELS))}) and pass the "
                             "file as weights=")
        raise ModelError(f"unknown model {name_or_path!r}; known: {', '.join(sorted(zoo.MODELS))}")
    graph = zoo.build(key, include_top=include_top, pooling=pooling, classes=classes,
                      input_shape=input_shape, classifier_activation=classifier_activation, **arch_options)
    if weights is None:
        seeded_weights(graph, seed=seed)
        source = SEEDED
    else:
        load_h5_weights(graph, weights)
        source = os.fspath(weights)
    return Model(graph, device=device, threads=threads, weights_source=source,
                 preprocess=zoo.PREPROCESS.get(key), fuse=fuse)
