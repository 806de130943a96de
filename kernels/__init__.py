"""kernelnets kernels: the op set every backend implements.

Layouts: activations NHWC float32 C-contiguous; conv weights HWIO ``(kh, kw, cin, cout)``;
depthwise ``(kh, kw, c, multiplier)`` with output channel ``c * multiplier + m`` (Keras/TF order);
dense ``(in, out)``. Padding is explicit ``(top, bottom, left, right)``. ``act`` is one of
``ACTIVATIONS`` (``None``, ``"relu"``, ``"relu6"``, ``"sigmoid"``, ``"silu"``, ...); compiled kernels take its
``act_code``. The fused epilogue is ``out = act(op(x) + bias + residual)``.

The contract is ``Backend`` below: ``kernels.cpu`` (Numba), ``kernels.gpu`` (CUDA through CuPy) and
``kernels.reference_backend`` (the NumPy oracle) each export every required op with exactly these
signatures (``tests/test_backend_contract.py`` checks it). Weights are packed once with ``pack_*`` into
an opaque object that exposes ``variant`` (a short name of the kernel that will run, for profiles);
every op writes into a preallocated ``out``. ``out_c0`` lets an op write channels
``[out_c0, out_c0 + cout)`` of a wider ``out`` buffer, which is how concatenation happens without
copies. Inputs and ``residual`` are whole contiguous buffers. Shapes and dtypes are validated by the
runtime before a kernel is called; kernels trust their arguments.

Optional ops (``OPTIONAL_OPS``): a backend may lack them and the runtime then composes the required
ops (``depthwise_pointwise`` runs the depthwise and 1x1 kernels with a buffer between them,
``scaled_conv2d`` mul then conv2d).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Protocol

# Activation codes, defined once: every compiled kernel (Numba and CUDA C) takes these integers.
#   sigmoid 1 / (1 + exp(-x));  silu x * sigmoid(x) (Keras' swish);  hard_sigmoid relu6(x + 3) / 6
#   (Keras 3's; ONNX HardSigmoid with alpha 1/6, beta 0.5);  hard_silu x * hard_sigmoid(x) (hard_swish,
#   ONNX HardSwish);  gelu x * (1 + erf(x / sqrt 2)) / 2;  gelu_tanh its tanh approximation;  tanh
ACT_NONE, ACT_RELU, ACT_RELU6 = 0, 1, 2
ACT_CODES = {None: ACT_NONE, "relu": ACT_RELU, "relu6": ACT_RELU6, "sigmoid": 3, "silu": 4, "hard_sigmoid": 5,
             "hard_silu": 6, "gelu": 7, "gelu_tanh": 8, "tanh": 9}
ACTIVATIONS = tuple(ACT_CODES)
# What the fused epilogues of conv2d / depthwise_conv2d / dense / depthwise_pointwise apply (a clamp);
# the runtime runs any other activation as its own ``activation`` step after the op.
EPILOGUE_ACTIVATIONS = (None, "relu", "relu6")


def act_code(act) -> int:
    """The integer a compiled kernel takes for activation ``act`` (ValueError for an unknown one)."""
    try:
        return ACT_CODES[act]
    except (KeyError, TypeError):
        raise ValueError(f"unknown activation {act!r}; expected one of {list(ACT_CODES)}") from None


class Packed(Protocol):
    """What ``pack_*`` returns: opaque to the runtime except for the name of the kernel that runs."""
    variant: str


class Backend(Protocol):
    """The op contract. Every method writes into ``out`` (nothing is returned) unless it packs."""

    def pack_conv2d(self, kernel, bias) -> Packed:
        """kernel (kh, kw, cin, cout), bias (cout,) | None."""

    def conv2d(self, x, packed, out, stride, pad, act=None, residual=None, out_c0=0) -> None:
        """Any kh x kw, stride and explicit padding; residual has out's shape (channels [out_c0, ...))."""

    def pack_depthwise(self, kernel, bias) -> Packed:
        """kernel (kh, kw, c, mult), bias (c * mult,) | None."""

    def depthwise_conv2d(self, x, packed, out, stride, pad, act=None, out_c0=0) -> None:
        """Output channel c * mult + m."""

    def max_pool2d(self, x, out, pool, stride, pad, out_c0=0) -> None:
        """Padded cells never win."""

    def avg_pool2d(self, x, out, pool, stride, pad, count_include_pad, out_c0=0) -> None:
        """count_include_pad=False divides by the number of real cells (Keras' 'same' pooling)."""

    def global_avg_pool(self, x, out) -> None:
        """x (N, H, W, C) -> out (N, C)."""

    def global_max_pool(self, x, out) -> None:
        """x (N, H, W, C) -> out (N, C)."""

    def add(self, a, b, out, act=None) -> None:
        """b has a's shape, or is (N, C): one value per sample and channel, broadcast over the pixels."""

    def mul(self, a, b, out, act=None) -> None:
        """act(a * b), b as in ``add`` (squeeze-excite: a map scaled per sample and channel)."""

    def pack_dense(self, kernel, bias) -> Packed:
        """kernel (in, out), bias (out,) | None."""

    def dense(self, x, packed, out, act=None) -> None:
        """x (N, in) -> out (N, out)."""

    def softmax(self, x, out) -> None:
        """Over the last axis."""

    def activation(self, x, out, act) -> None:
        """A standalone activation (a copy for act=None); may run in place."""

    def channel_affine(self, x, scale, shift, out, act=None) -> None:
        """An unfolded batch norm: act(x * scale + shift) per channel (last axis)."""

    def concat(self, xs, out) -> None:
        """Copying fallback along the last axis."""

    def zero_pad(self, x, out, pad) -> None:
        """Copying fallback: x surrounded by zeros on H and W."""

    def layer_norm(self, x, gamma, beta, out, eps) -> None:
        """(x - mean) / sqrt(var + eps) * gamma + beta over the last axis (channels)."""

    def lrn(self, x, out, size, alpha, beta, bias) -> None:
        """ONNX LRN across channels: x / (bias + alpha / size * sum of x^2 over the window)^beta, the window
        of channel c being [c - floor((size - 1) / 2), c + ceil((size - 1) / 2)]."""

    def channel_gather(self, x, index, out) -> None:
        """out[..., j] = x[..., index[j]] with an int64 index (channel slices, splits, shuffles)."""

    def crop(self, x, out, box) -> None:
        """x without box = (top, bottom, left, right) rows and columns at the borders of H and W."""


class FusedBackend(Backend, Protocol):
    """The optional ops, with the same rules."""

    def pack_depthwise_pointwise(self, dw_kernel, dw_bias, kernel, bias) -> Packed:
        """Depthwise (kh, kw, c, mult) + bias and 1x1 (1, 1, c * mult, cout) + bias."""

    def depthwise_pointwise(self, x, packed, out, dw_stride, dw_pad, dw_act=None, act=None, residual=None,
                            out_c0=0, in_act=None) -> None:
        """act(conv1x1(dw_act(depthwise(in_act(x)) + dw_bias)) + bias + residual)."""

    def scaled_conv2d(self, x, scale, packed, out, act=None, residual=None, out_c0=0) -> None:
        """act(conv1x1(x * scale) + bias + residual): packed by pack_conv2d from a 1x1 kernel, scale (N, cin)
        one value per sample and input channel (squeeze-excite's gate, folded into the projection)."""


def _methods(proto) -> tuple[str, ...]:
    return tuple(k for k, v in vars(proto).items() if callable(v) and not k.startswith("_"))


OPS: tuple[str, ...] = _methods(Backend)                  # required, packers included
OPTIONAL_OPS: tuple[str, ...] = _methods(FusedBackend)


def missing_ops(backend: Any) -> list[str]:
    """Required ops a backend module does not export (the runtime refuses such a backend)."""
    return [op for op in OPS if not callable(getattr(backend, op, None))]


def conv_output_size(size: int, k: int, stride: int, pad_before: int, pad_after: int) -> int:
    """Output length of a valid sliding window over a padded axis."""
    return (size + pad_before + pad_after - k) // stride + 1


def same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """Keras/TF 'same' padding for one axis: the odd extra cell goes after (bottom/right)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def aligned_empty(shape, dtype=None, align: int = 64):
    """An uninitialised C-contiguous array whose data starts on an ``align``-byte boundary.

    NumPy's allocations are only 16-byte aligned (a large one sits 16 bytes into its mmap'ed
    pages), so every 64-byte vector load from one straddles two cache lines; on this machine that
    made a 3x3 depthwise tile 1.5x slower. Arenas, packed weights and kernel scratch use this.
    """
    import numpy as np

    dtype = np.dtype(np.float32 if dtype is None else dtype)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def aligned_zeros(shape, dtype=None, align: int = 64):
    """``aligned_empty`` filled with zeros."""
    a = aligned_empty(shape, dtype, align)
    a.fill(0)
    return a


def aligned_copy(a, dtype=None, align: int = 64):
    """A C-contiguous, ``align``-byte aligned copy of ``a`` (cast to ``dtype``)."""
    import numpy as np

    a = np.asarray(a)
    out = aligned_empty(a.shape, a.dtype if dtype is None else dtype, align)
    out[...] = a
    return out


class Workspace:
    """Scratch memory kernels keep between calls (padded inputs, transform buffers, per-thread panels,
    the arguments of a layer's previous call), owned by whoever runs the kernels.

    An executor owns one and runs one call at a time in it, so concurrent callers with their own
    executors never share scratch, and dropping the executor frees it. Kernels reach it through
    ``current_workspace()``; a caller that sets none (a test or benchmark calling kernels directly,
    one thread at a time) gets the process-wide default."""

    def __init__(self):
        self.buffers: dict = {}
        self.plans: dict = {}      # a layer's previous kernel arguments (references only: not counted)

    def get(self, key, make):
        """The buffer (or any object) stored under ``key``, made by ``make()`` on first use."""
        b = self.buffers.get(key)
        if b is None:
            b = self.buffers[key] = make()
        return b

    @property
    def nbytes(self) -> int:
        return nbytes(self.buffers)

    def clear(self):
        self.buffers.clear()
        self.plans.clear()


_local = threading.local()
_DEFAULT_WORKSPACE = Workspace()


def current_workspace() -> Workspace:
    """The workspace of the executor running on this thread (the process-wide default otherwise)."""
    return getattr(_local, "workspace", None) or _DEFAULT_WORKSPACE


@contextlib.contextmanager
def using_workspace(ws: Workspace):
    """Kernels called on this thread inside the block keep their scratch in ``ws``."""
    prev = getattr(_local, "workspace", None)
    _local.workspace = ws
    try:
        yield ws
    finally:
        _local.workspace = prev


def nbytes(obj, _seen=None) -> int:
    """Bytes of the distinct arrays (numpy or cupy) reachable from ``obj`` through containers and
    object attributes: how much memory packed weights or a workspace hold."""
    seen = set() if _seen is None else _seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if hasattr(obj, "nbytes") and hasattr(obj, "dtype") and hasattr(obj, "shape"):
        base = getattr(obj, "base", None)
        while getattr(base, "base", None) is not None:
            base = base.base
        if base is not None and hasattr(base, "nbytes"):       # a view: count the memory it views once
            if id(base) in seen:
                return 0
            seen.add(id(base))
            return int(base.nbytes)
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(nbytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return sum(nbytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and not callable(obj):
        return sum(nbytes(v, seen) for v in vars(obj).values())
    return 0


BACKENDS = ("cpu", "gpu", "reference")
PRECISIONS = ("fp32", "tf32")
_MODULES = {("cpu", "fp32"): "kernels.cpu", ("gpu", "fp32"): "kernels.gpu", ("gpu", "tf32"): "kernels.gpu.tf32",
            ("reference", "fp32"): "kernels.reference_backend"}


def get_backend(device: str, precision: str = "fp32"):
    """The module implementing the op contract for ``device``: "cpu" (Numba), "gpu" (CUDA through
    CuPy) or "reference" (the NumPy oracle, slow). ``precision="tf32"`` (GPU only, an explicit
    opt-in with its own tolerance: ``kernels.gpu.tf32``) runs convolutions on tensor cores."""
    import importlib

    if device not in BACKENDS:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if (device, precision) not in _MODULES:
        raise ValueError(f"precision={precision!r} is available on the GPU only, not on device={device!r}")
    return importlib.import_module(_MODULES[device, precision])
