"""A model as ``nets classify`` uses it: image size, preprocessing, probabilities, labels, top-k rows.

``ModelRecipe`` is the small picklable description a Dask worker builds its model from (models are
never pickled); ``Classifier`` wraps a built model. A row is the JSONL record:
``{"path": str, "top": [{"label": str, "index": int, "prob": float}, ...], "error": str | None}``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from nets.errors import InputError, ModelError

# keywords of nets.load a recipe may carry (the rest of nets.load's options are the recipe's fields)
LOAD_OPTIONS = frozenset(("classifier_activation", "include_top", "pooling", "classes", "input_shape", "alpha",
                          "depth_multiplier", "seed", "fuse", "cuda_graph"))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (logits of float32 models can exceed float32's exp range)."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def read_labels(path) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            labels = [line.strip() for line in f if line.strip()]
    except OSError as e:
        raise InputError(f"cannot read labels file {os.fspath(path)!r}: {e.strerror or e}") from None
    if not labels:
        raise InputError(f"labels file {os.fspath(path)!r} is empty")
    return labels


@dataclass(frozen=True)
class ModelRecipe:
    """What it takes to build the model in another process: a zoo name or a model file, a weights
    file, ``nets.load`` options (as sorted (key, value) pairs), the device and the preprocessing."""
    model: str
    weights: str | None = None
    options: tuple = ()
    device: str = "cpu"
    preprocess: str | None = None
    labels: str | None = None

    @classmethod
    def make(cls, model, weights=None, options=None, device="cpu", preprocess=None, labels=None) -> ModelRecipe:
        options = dict(options or {})
        unknown = sorted(set(options) - LOAD_OPTIONS)
        if unknown:
            raise ModelError(f"unknown model options {unknown}; known: {', '.join(sorted(LOAD_OPTIONS))}")
        if options.get("input_shape") is not None:
            options["input_shape"] = tuple(int(s) for s in options["input_shape"])
        return cls(os.fspath(model), None if weights is None else os.fspath(weights),
                   tuple(sorted((k, v) for k, v in options.items() if v is not None)), device, preprocess,
                   None if labels is None else os.fspath(labels))

    def build(self, threads: int | None = None) -> Classifier:
        import nets

        model = nets.load(self.model, self.weights, device=self.device,
                          threads=threads if self.device == "cpu" else None, **dict(self.options))
        return Classifier(model, preprocess=self.preprocess, labels=self.labels)


class Classifier:
    """A model that turns a preprocessed batch into top-k rows.

    ``prob`` is a probability: the model's own output when its last layer is a softmax, otherwise
    (``classifier_activation=None``, an imported model without one) the softmax of its logits."""

    def __init__(self, model, preprocess: str | None = None, labels=None):
        from nets.io.images import MODES

        self.model = model
        shape = tuple(model.input_shape)
        if len(shape) != 3 or shape[-1] != 3:
            raise ModelError(f"model {model.name!r} takes inputs shaped {shape}; classifying images needs an "
                             "(H, W, 3) input")
        self.size = shape[:2]
        self.input_shape = shape
        out = tuple(model.output_shape)
        if not out or int(np.prod(out[:-1], dtype=np.int64)) != 1 or out[-1] < 2:
            raise ModelError(f"model {model.name!r} outputs {out} per image, not a vector of class scores "
                             "(a model without its classifier, include_top=False, cannot classify)")
        self.classes = int(out[-1])
        self.mode = preprocess or getattr(model, "preprocess_mode", None) or "none"
        if self.mode not in MODES:
            raise InputError(f"unknown preprocessing {self.mode!r}; one of {', '.join(MODES)}")
        self.nchw = getattr(model, "layout", "") == "NCHW"
        self.outputs_probs = model.graph.nodes[-1].op == "softmax"
        if isinstance(labels, (str, os.PathLike)):
            labels = read_labels(labels)
        if labels is not None and len(labels) != self.classes:
            raise InputError(f"{len(labels)} labels for a model with {self.classes} classes")
        self.labels = labels

    @property
    def seeded(self) -> bool:
        return str(getattr(self.model, "weights_source", "")).startswith("seeded")

    def preprocess_one(self, image: np.ndarray) -> np.ndarray:
        from nets.io.images import preprocess

        return preprocess(self.mode, image)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, classes) probabilities of a preprocessed NHWC float32 batch."""
        if self.nchw:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        y = np.asarray(self.model(x)).reshape(len(x), -1)
        return y.astype(np.float64) if self.outputs_probs else softmax(y)

    def top_rows(self, probs: np.ndarray, paths, topk: int) -> list[dict]:
        """One row per path from the first len(paths) rows of ``probs``."""
        from nets.io.images import top_k

        rows = []
        for path, best in zip(paths, top_k(probs[: len(paths)], min(topk, self.classes))):
            top = [dict(label=self.labels[i] if self.labels else name, index=i, prob=p) for i, name, p in best]
            rows.append(dict(path=path, top=top, error=None))
        return rows


def error_row(path: str, message: str) -> dict:
    return dict(path=path, top=[], error=message)
