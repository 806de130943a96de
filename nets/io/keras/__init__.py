"""Keras files: whole models (a Keras 3 ``.keras`` archive, a legacy full-model ``.h5``) and legacy
weights files for the zoo's architectures.

    load_keras_model(path, input_shape=None) -> Graph (weights loaded)
    graph_from_keras_config(config, source="config", input_shape=None) -> Graph (no weights)
    load_h5_weights(graph, path)            legacy .h5 weights (every keras.applications generation)

``config`` parses model configs (sub-models flattened), ``layers`` converts each layer (with
``merge``: Add, Multiply, ...; ``normalization``: BatchNormalization, Normalization, LayerNormalization,
...; ``activations``: Keras' activation names), ``legacy_h5`` and ``keras3`` read the two weight
layouts. h5py is optional (imported on use). Dimensions are bounded before any array is allocated;
nothing is ever unpickled.
"""

from __future__ import annotations

import io
import os
import zipfile

from nets.errors import KernelnetsError, ModelError
from nets.graph.ir import Graph
from nets.io.detect import detect_format
from nets.io.keras.config import graph_from_keras_config
from nets.io.keras.keras3 import load_keras3_weights, read_keras_archive
from nets.io.keras.legacy_h5 import h5py_module, load_h5_weights, read_h5_model_config, save_h5_weights
from nets.io.keras.normalization import finish_weights


def load_keras_model(path, input_shape=None) -> Graph:
    """A whole Keras model (``.keras`` archive or full-model ``.h5``) as a graph with its weights.

    ``input_shape`` (H, W, C) replaces the input layer's shape (needed when it has unknown sizes).
    Sets ``graph.weights_source`` and ``graph.source_format``.
    """
    h5py = h5py_module()

    path = os.fspath(path)
    fmt = detect_format(path)
    try:
        if fmt == "keras_h5_model":
            graph = graph_from_keras_config(read_h5_model_config(path), path, input_shape)
            load_h5_weights(graph, path)
        elif fmt == "keras_archive":
            config, blob = read_keras_archive(path)
            graph = graph_from_keras_config(config, path, input_shape)
            with h5py.File(io.BytesIO(blob), "r") as f:
                load_keras3_weights(graph, f, f"{path}:model.weights.h5")
            graph.weights_source = f"{path} (Keras 3 archive)"
        else:
            raise ModelError(f"{path}: a {fmt} file, not a whole Keras model; whole models come as a "
                             "'.keras' archive or a full-model '.h5' (model.save)")
    except KernelnetsError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError, AttributeError, UnicodeDecodeError,
            zipfile.BadZipFile, EOFError) as e:
        raise ModelError(f"{path}: cannot read the Keras model (truncated or corrupt?): "
                         f"{type(e).__name__}: {e}") from None
    finish_weights(graph, path)
    graph.source_format = fmt
    return graph


__all__ = ["load_keras_model", "graph_from_keras_config", "load_h5_weights", "save_h5_weights"]
