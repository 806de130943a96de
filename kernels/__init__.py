"""kernelnets kernels: the op set every backend implements.

Layouts: activations NHWC float32 C-contiguous; conv weights HWIO ``(kh, kw, cin, cout)``;
depthwise ``(kh, kw, c, multiplier)`` with output channel ``c * multiplier + m`` (Keras/TF order);
dense ``(in, out)``. Padding is explicit ``(top, bottom, left, right)``. ``act`` is ``None``,
``"relu"`` or ``"relu6"``. The fused epilogue is ``out = act(op(x) + bias + residual)``.

Backend contract (``kernels.cpu``, ``kernels.gpu``, and ``nets``' reference adapter): weights are
packed once with ``pack_*`` into an opaque object; every op writes into a preallocated ``out``.
``out_c0`` lets an op write channels ``[out_c0, out_c0 + cout)`` of a wider ``out`` buffer, which is
how concatenation happens without copies. Inputs and ``residual`` are whole contiguous buffers.

    pack_conv2d(kernel, bias)            -> packed      kernel (kh, kw, cin, cout), bias (cout,) | None
    conv2d(x, packed, out, stride, pad, act=None, residual=None, out_c0=0)
    pack_depthwise(kernel, bias)         -> packed      kernel (kh, kw, c, mult)
    depthwise_conv2d(x, packed, out, stride, pad, act=None, out_c0=0)
    max_pool2d(x, out, pool, stride, pad, out_c0=0)                  padded cells never win
    avg_pool2d(x, out, pool, stride, pad, count_include_pad, out_c0=0)
    global_avg_pool(x, out)              x (N, H, W, C) -> out (N, C)
    global_max_pool(x, out)
    add(a, b, out, act=None)             same shapes
    pack_dense(kernel, bias)             -> packed      kernel (in, out)
    dense(x, packed, out, act=None)      x (N, in) -> out (N, out)
    softmax(x, out)                      over the last axis
    activation(x, out, act)              standalone relu / relu6
    channel_affine(x, scale, shift, out, act=None)   an unfolded batch norm: x * scale + shift
    concat(xs, out)                      copying fallback along the last axis
    zero_pad(x, out, pad)                copying fallback

Optional (the runtime runs the two kernels above with a buffer between them where a backend lacks it):

    pack_depthwise_pointwise(dw_kernel, dw_bias, kernel, bias) -> packed     kernel (1, 1, c * mult, cout)
    depthwise_pointwise(x, packed, out, dw_stride, dw_pad, dw_act=None, act=None, residual=None, out_c0=0,
                        in_act=None)   act(conv1x1(dw_act(depthwise(in_act(x)) + dw_bias)) + bias + residual)

``pack_*`` objects expose ``variant`` (a short name of the kernel that will run) so profiles can say
which code ran. Shapes and dtypes are validated by the runtime before a kernel is called; kernels
trust their arguments.
"""

ACTIVATIONS = (None, "relu", "relu6")

OPS = (
    "conv2d", "depthwise_conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool", "global_max_pool",
    "add", "dense", "softmax", "activation", "channel_affine", "concat", "zero_pad",
)
PACKERS = ("pack_conv2d", "pack_depthwise", "pack_dense")
OPTIONAL_OPS = ("depthwise_pointwise",)


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


BACKENDS = ("cpu", "gpu", "reference")


def get_backend(device: str):
    """The module implementing the op contract for ``device``: "cpu" (Numba), "gpu" (CUDA through
    CuPy) or "reference" (the NumPy oracle, slow)."""
    import importlib

    if device not in BACKENDS:
        raise ValueError(f"unknown device {device!r}; choose one of {', '.join(BACKENDS)}")
    module = {"cpu": "kernels.cpu", "gpu": "kernels.gpu", "reference": "kernels.reference_backend"}[device]
    return importlib.import_module(module)
