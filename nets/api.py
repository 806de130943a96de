"""``nets.load``: one entry point for zoo architectures, Keras model files and ONNX files.

Files are recognised by their content (``nets.io.detect.detect_format``), not their extension.
"""

from __future__ import annotations

import os

from nets.errors import KernelnetsError, ModelError
from nets.runtime.model import Model

SEEDED = "seeded (untrained: predictions are meaningless)"
WHOLE_MODELS = ("keras_h5_model", "keras_archive", "onnx")


def load(name_or_path, *args, **kwargs) -> Model:
    """Build a network and load its weights (see ``load_model`` for the arguments). Whatever goes wrong
    ends in one ``KernelnetsError`` that names the file or architecture."""
    try:
        return load_model(name_or_path, *args, **kwargs)
    except KernelnetsError:
        raise
    except TypeError as e:          # a wrong keyword or argument type
        raise ModelError(f"nets.load({name_or_path!r}): {e}") from None
    except (OSError, ValueError, KeyError, IndexError, AttributeError, RuntimeError, MemoryError) as e:
        raise ModelError(f"{name_or_path}: could not be loaded: {type(e).__name__}: {e}") from e


def load_model(name_or_path: str, weights: str | None = None, *, classifier_activation="softmax",
         include_top: bool = True, pooling=None, classes: int = 1000, input_shape=None,
         device: str = "cpu", threads: int | None = None, seed: int = 0, fuse: bool = True,
         cuda_graph: bool | None = None, memory_budget: int | None = None, max_concurrency: int | None = None,
         precision: str = "fp32", **arch_options) -> Model:
    """Build a network and load its weights.

    name_or_path: a zoo name ("resnet50", "vgg16", "inception_v3", ...), or a model file: a Keras
        full-model ``.h5``, a Keras 3 ``.keras`` archive, or an ONNX file (an NCHW ONNX model takes and
        returns NCHW arrays).
    weights: for a zoo name, a Keras .h5 weights file as keras.applications downloads it; None gives
        deterministic seeded weights (untrained; every output says so).
    classifier_activation: "softmax" (probabilities) or None (logits).
    Other keywords are keras.applications' options (include_top, pooling, classes, input_shape, and
    alpha / depth_multiplier for mobilenet); input_shape also fixes the input size of a Keras file
    whose input has unknown height/width. device: "cpu", "gpu" or "reference" (NumPy oracle);
    cuda_graph: replay the network as one CUDA graph on the GPU (default: at small batch).
    precision: "fp32", or "tf32" on the GPU (tensor cores, an explicit opt-in with its own tolerance).
    memory_budget, max_concurrency: see ``Model`` (bytes of arenas and scratch kept between calls;
    calls that run at once — a model may be called from any number of threads).
    """
    from nets import zoo

    run = dict(device=device, threads=threads, fuse=fuse, memory_budget=memory_budget, max_concurrency=max_concurrency,
               precision=precision)
    if cuda_graph is not None:
        run["cuda_graph"] = cuda_graph
    key = str(name_or_path).lower().replace("-", "_")
    if key in zoo.MODELS:
        graph = zoo.build(key, include_top=include_top, pooling=pooling, classes=classes,
                          input_shape=input_shape, classifier_activation=classifier_activation, **arch_options)
        if weights is None:
            from nets.zoo.seeded import seeded_weights

            seeded_weights(graph, seed=seed)
            source = SEEDED
        else:
            source = _load_weights_file(graph, weights)
        return Model(graph, weights_source=source, preprocess=zoo.PREPROCESS.get(key), **run)
    path = os.fspath(name_or_path)
    if not os.path.exists(path):
        raise ModelError(f"unknown model {name_or_path!r}: not a file, and not one of "
                         f"{', '.join(sorted(zoo.MODELS))}")
    return _load_model_file(path, weights, input_shape, run)


def _load_weights_file(graph, weights) -> str:
    from nets.io.detect import detect_format
    from nets.io.keras import load_h5_weights

    path = os.fspath(weights)
    if os.path.exists(path) and detect_format(path) in ("keras_archive", "onnx"):
        raise ModelError(f"{path!r} holds a whole model, not a weights file for {graph.name!r}: "
                         f"load it with nets.load({path!r})")
    load_h5_weights(graph, path)
    return path


def _load_model_file(path, weights, input_shape, run) -> Model:
    from nets.io.detect import detect_format

    kind = detect_format(path)
    if kind not in WHOLE_MODELS:
        raise ModelError(f"{path!r} holds only weights ({kind}), no architecture: give the architecture's "
                         f"name and this file as weights, e.g. nets.load('resnet50', weights={path!r})")
    if weights is not None:
        raise ModelError(f"{path!r} is a whole model that carries its own weights: drop weights=")
    if kind == "onnx":
        from nets.io.onnx import load_onnx

        return load_onnx(path, **run)
    from nets.io.keras import load_keras_model

    graph = load_keras_model(path, input_shape=input_shape)
    return Model(graph, weights_source=graph.weights_source or path, **run)
