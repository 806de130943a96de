"""How the importer sees an ONNX tensor: an IR value plus the bookkeeping that maps it to the ONNX tensor
(see ``reader.py``). Shared by the converter mixins (``converters``, ``elementwise``, ``layout``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NCHW, IDENT4, IDENT2 = (0, 3, 1, 2), (0, 1, 2, 3), (0, 1)


@dataclass
class Val:
    ir: str                         # IR value name
    perm: tuple                     # ONNX tensor = batched IR tensor .transpose(perm)
    order: np.ndarray | None = None  # vectors and views: ONNX element i is IR element order[i]
    # a tensor of another rank than (N, F) and (N, C, H, W) (a channel shuffle's (N, g, C/g, H, W), torch's
    # (N, C, 1) between two Unsqueezes): its per-sample ONNX shape; the ONNX tensor is the IR value's elements,
    # taken in ``order``, reshaped to it. Only the layout ops (Reshape, Transpose, ...) read such values.
    view: tuple | None = None


def flat_order(shape, perm):
    """``order`` of the vector that flattens an (H, W, C) IR map viewed with ``perm``."""
    if perm == IDENT4 or shape[0] * shape[1] == 1 or shape[2] == 1:
        return None
    return np.arange(shape[0] * shape[1] * shape[2]).reshape(shape).transpose(2, 0, 1).ravel()


def same_order(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(a, b)
