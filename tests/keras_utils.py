"""Keras helpers for tests that check kernelnets against Keras: seeded non-trivial weights, a writer of
the legacy keras.applications ``.h5`` layout, and a numpy forward pass.

Keras runs on its torch backend here (KERAS_BACKEND is set before keras is imported).

Why our own writer: Keras 3's ``legacy_h5_format.save_weights_to_hdf5_group`` writes the legacy
layout (root ``layer_names``, per-layer ``weight_names``) but names arrays by the Keras 3 variable
path: ``conv1_conv/kernel`` without ``:0``, a DepthwiseConv2D kernel as ``kernel`` rather than
``depthwise_kernel``, plus an extra ``top_level_model_weights`` group. The official files
(e.g. resnet50_weights_tf_dim_ordering_tf_kernels.h5) use ``conv1_conv/kernel:0`` and
``depthwise_kernel:0``; ``write_legacy_h5`` writes exactly that, and Keras 3's ``load_weights``
still reads it.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from nets.io.keras.legacy_h5 import write_string_list
from nets.zoo.seeded import seeded_array  # noqa: E402


def _legacy_name(layer, variable) -> str:
    """The Keras 2 name of a variable: its short name, with DepthwiseConv2D's kernel renamed."""
    name = variable.name.split("/")[-1].split(":")[0]
    if isinstance(layer, keras.layers.DepthwiseConv2D) and name == "kernel":
        return "depthwise_kernel"
    if type(layer).__name__ == "LayerScale":        # ConvNeXt's: an unnamed weight, its gamma
        return "gamma"
    return name


def legacy_weights(layer):
    """(legacy name, variable) in the order Keras' legacy h5 format stores them: trainable first."""
    return [(_legacy_name(layer, v), v) for v in layer.trainable_weights + layer.non_trainable_weights]


_KERNELS = ("kernel", "depthwise_kernel")


def _seeded(layer, name, shape, seed):
    """seeded_array's values, plus rules for the statistics of an adapted Normalization layer."""
    if isinstance(layer, keras.layers.Normalization) and name in ("mean", "variance", "count"):
        rng = np.random.default_rng([seed, sum(map(ord, layer.name)), sum(map(ord, name))])
        value = {"mean": rng.normal(0.0, 0.5, shape), "variance": rng.uniform(0.5, 2.0, shape),
                 "count": np.full(shape, 1000.0)}[name]
        return value.astype(np.float32)
    return seeded_array(layer.name, name, shape, seed)


def randomize_normalization_constants(model, seed: int = 0):
    """Normalization layers built with ``mean=`` / ``variance=`` (EfficientNetV2, ConvNeXt) hold them as
    constants, not weights: give them seeded values too (kept in the config that ``model.save`` writes),
    scaled around the originals so the layer still maps its usual input range near N(0, 1)."""
    rng = np.random.default_rng(seed + 101)
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.Normalization) and layer.input_mean is not None:
            mean = np.asarray(layer.input_mean, np.float64)
            var = np.asarray(layer.input_variance, np.float64)
            mean = mean + rng.normal(0.0, 0.2, mean.shape) * np.sqrt(var)
            var = var * rng.uniform(0.5, 2.0, var.shape)
            layer.input_mean, layer.input_variance = mean.tolist(), var.tolist()
            layer.build(layer._build_shapes_dict["input_shape"])
    return model


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def randomize_keras_model(model, seed: int = 0, calib_input=None):
    """Give every kernel, bias, BatchNorm statistic, Normalization statistic and LayerScale gamma of
    ``model`` (sub-models included) seeded non-trivial values.

    Arrays come from ``nets.zoo.seeded.seeded_array`` (He-scaled kernels, BN statistics far from the
    identity a fresh Keras BN is, so folding bugs show). He scaling alone lets residual nets blow up
    (measured logits std with it: ResNet50 ~7e3, Xception ~1e7), so each kernel is also divided by the
    RMS of its actual input, measured in one forward pass over ``calib_input`` (default: two seeded
    N(0, 1) images; a model whose input size is unknown, such as keras.applications' MobileNetV3 built
    without ``input_shape``, needs one) while the layers are filled in order (LSUV-style).
    Returns the model.
    """
    import torch

    randomize_normalization_constants(model, seed)
    if calib_input is None:
        dims = tuple(model.inputs[0].shape[1:])
        if any(d is None for d in dims):
            raise ValueError(f"the model's input shape {(None,) + dims} has unknown dimensions: pass calib_input "
                             "(images of the size it will run at)")
        calib_input = np.random.default_rng(seed).standard_normal((2,) + dims).astype(np.float32)

    def fill(layer, x=None):
        scale = 1.0
        if x is not None:
            scale = 1.0 / max(float(torch.sqrt(torch.mean(torch.square(x.float())))), 1e-6)
        for name, var in legacy_weights(layer):
            value = _seeded(layer, name, tuple(var.shape), seed)
            var.assign(value * np.float32(scale) if name in _KERNELS else value)

    done = set()

    def calibrating(op):
        def call(*args, **kwargs):
            if isinstance(op, keras.Sequential):          # a sub-model: fill its layers one by one
                x = args[0]
                for layer in op.layers:
                    x = calibrating(layer)(x)
                return x
            if isinstance(op, keras.Model) and hasattr(op, "_run_through_graph"):
                return op._run_through_graph(list(args[:1]), operation_fn=calibrating)
            if isinstance(op, keras.layers.Layer) and op.weights and id(op) not in done:
                done.add(id(op))
                fill(op, args[0] if torch.is_tensor(args[0]) else None)
            return op(*args, **kwargs)
        return call

    if not hasattr(model, "_run_through_graph"):
        raise TypeError("randomize_keras_model needs a functional Keras model")
    with torch.no_grad():
        model._run_through_graph([keras.ops.convert_to_tensor(calib_input)], operation_fn=calibrating)
    for layer in _all_layers(model):       # layers the graph walk did not reach
        if layer.weights and id(layer) not in done and not isinstance(layer, keras.Model):
            fill(layer)
    return model


def write_legacy_h5(model, path, with_colon: bool = True, layer_names=None, chunk_limit=None):
    """Write ``model``'s weights in the keras.applications layout: root ``layer_names`` (every layer,
    in model order), per-layer ``weight_names`` such as ``conv1_conv/kernel:0``, datasets at
    ``<layer>/<layer>/<weight>:0``.

    ``with_colon=False`` drops the ``:0`` like Keras 3 does; ``layer_names`` maps a layer to the name
    written in the file (to make files with other naming schemes); ``chunk_limit`` forces the
    ``layer_names0, layer_names1, ...`` split at a smaller size than HDF5's 64 KB.
    """
    import h5py

    rename = layer_names or {}
    limit = {} if chunk_limit is None else {"limit": chunk_limit}
    with h5py.File(os.fspath(path), "w") as f:
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = keras.__version__.encode()
        write_string_list(f, "layer_names", [rename.get(lay.name, lay.name) for lay in model.layers],
                          **limit)
        for layer in model.layers:
            lname = rename.get(layer.name, layer.name)
            group = f.create_group(lname)
            entries = [(f"{lname}/{name}" + (":0" if with_colon else ""), var)
                       for name, var in legacy_weights(layer)]
            write_string_list(group, "weight_names", [w for w, _ in entries])
            for wname, var in entries:
                group.create_dataset(wname, data=keras.ops.convert_to_numpy(var).astype(np.float32))


def keras_onnx_export(model, x, path, fixed: bool = False):
    """Export ``model`` the way a Keras user does (``model.export(path, format="onnx")``, a dynamic batch
    axis); ``fixed`` pins the batch to ``x``'s (Keras then goes through torch.export). Returns ``path``."""
    import warnings

    model(x[:1])                        # Keras refuses to export a model that was never called
    kw = {"input_signature": [keras.InputSpec(shape=x.shape, dtype="float32")]} if fixed else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.export(os.fspath(path), format="onnx", verbose=False, **kw)
    return path


def keras_forward(model, x) -> np.ndarray:
    """Inference forward pass: numpy float32 in, numpy float32 out."""
    import torch

    with torch.no_grad():
        y = model(np.ascontiguousarray(x, dtype=np.float32), training=False)
    return np.asarray(keras.ops.convert_to_numpy(y), dtype=np.float32)
