"""The validators every Keras converter uses: each configured size is bounded and typed before anything
is allocated, and a bad value becomes a ModelError naming the layer. ``Const`` is a number (or a list of
numbers) that a Keras 3 config passes where a tensor could go (``x + 3.0`` is an ``Add`` op-layer with
the argument ``3.0``)."""

from __future__ import annotations

import numpy as np

from nets.errors import ModelError

MAX_DIM = 1 << 16              # any configured size: H, W, C, filters, units, kernel side
MAX_ELEMENTS = 1 << 28         # one activation per sample, or one weight array (1 GiB of float32)
MAX_PARAMS = 1 << 31


class Const:
    """A constant operand of an op-layer, in the position Keras wrote it."""

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Const({self.value!r})"


def fail(where, msg):
    raise ModelError(f"{where}: {msg}")


def as_int(v, what, where, lo=1, hi=MAX_DIM) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool):
        fail(where, f"{what} must be an integer, got {v!r}")
    if not lo <= v <= hi:
        fail(where, f"{what} = {v} is outside {lo}..{hi}")
    return v


def as_pair(v, what, where, lo=1):
    if isinstance(v, (list, tuple)):
        if len(v) != 2:
            fail(where, f"{what} must be an int or a pair, got {v!r}")
        return tuple(as_int(a, what, where, lo) for a in v)
    a = as_int(v, what, where, lo)
    return (a, a)


def as_num(v, what, where) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        fail(where, f"{what} must be a finite number, got {v!r}")
    return float(v)


def per_channel(v, channels, what, where) -> np.ndarray:
    """A number or a list of ``channels`` numbers (nested lists of one row allowed, as Keras writes a
    (1, 1, C) constant) as float64 of shape (channels,)."""
    flat = np.asarray(v, dtype=object).ravel() if isinstance(v, (list, tuple)) else [v]
    if len(flat) > MAX_DIM:
        fail(where, f"{what} has {len(flat)} values, more than {MAX_DIM}")
    arr = np.array([as_num(a, what, where) for a in flat], np.float64)
    if arr.size not in (1, channels):
        fail(where, f"{what} has {arr.size} values for {channels} channels")
    return np.broadcast_to(arr, (channels,)).copy()


def input_dims(v, where) -> list:
    if not isinstance(v, (list, tuple)) or not 2 <= len(v) <= 4:
        fail(where, f"input shape must be a list (batch, ...) of rank 2 to 4, got {v!r}")
    return list(v[1:])
