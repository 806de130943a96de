"""The TF32 backend: ``kernels.gpu`` with conv2d and dense on the tensor cores (opt-in, ``precision="tf32"``).

Same op contract (``kernels.Backend``) as ``kernels.gpu``; every op other than conv2d and dense is
``kernels.gpu``'s own. conv2d runs ``conv.cu``'s ``conv2d_tf32`` tiles (mma.sync m16n8k8: inputs
rounded to TF32, a 10-bit mantissa, products summed in fp32) with the fp32 planner's split K; dense
at batch > ``gemm.MAX_ROWS`` runs the same tiles. GEMV-shaped work (dense at small batch, pointwise
convs over a few pixels) is bandwidth-bound and stays on the fp32 skinny GEMM.

Weights are rounded to TF32 once, at pack time (round to nearest, ties away from zero, exactly as the
device's ``cvt.rna.tf32.f32``); activations are rounded as the kernel reads them.

Tolerance against the fp32 reference, per output element (``ERROR_BOUND``):

    |tf32 - fp32| <= (2**-10 + 2**-22) * sum_k |x_k| |w_k|  +  1e-5 * max |fp32|

each rounded input is within 2**-11 of its value (relative), so each product within
2**-10 + 2**-22 of its value; the second term is the fp32 tolerance of the accumulation. On whole
networks expect a max relative error of the logits around 1e-3 (predicted; not yet measured on a
device).
"""

from __future__ import annotations

import numpy as np

from kernels import conv_output_size
from kernels.gpu import (
    activation,
    add,
    avg_pool2d,
    channel_affine,
    channel_gather,
    concat,
    conv,
    crop,
    depthwise_conv2d,
    global_avg_pool,
    global_max_pool,
    layer_norm,
    lrn,
    max_pool2d,
    mul,
    pack_depthwise,
    softmax,
    unavailable_reason,
    zero_pad,
)
from kernels.gpu.dense import dense_with
from kernels.gpu.dense import pack_dense as _pack_fp32_dense

__all__ = [  # the op contract (conv2d/dense here, the rest kernels.gpu's own); xp via __getattr__
    "pack_conv2d", "conv2d", "pack_depthwise", "depthwise_conv2d", "pack_dense", "dense",
    "max_pool2d", "avg_pool2d", "global_avg_pool", "global_max_pool",
    "add", "activation", "channel_affine", "softmax", "concat", "zero_pad", "mul", "layer_norm", "lrn",
    "channel_gather", "crop", "unavailable_reason",
]
PRECISION = "tf32"
ERROR_BOUND = 2.0**-10 + 2.0**-22     # per product, relative to |x| |w| (see the docstring)


def round_to_tf32(a) -> np.ndarray:
    """float32 values rounded to TF32 (10-bit mantissa; nearest, ties away from zero), as float32."""
    a = np.ascontiguousarray(a, np.float32)
    bits = a.view(np.uint32)
    finite = np.isfinite(a)
    rounded = ((bits + np.uint32(0x1000)) & np.uint32(0xFFFFE000)).astype(np.uint32)
    return np.where(finite, rounded, bits).view(np.float32)


def pack_conv2d(kernel, bias):
    p = conv.pack_conv2d(round_to_tf32(kernel), bias)
    p.variant = "tf32-" + p.variant
    return p


def conv2d(x, packed, out, stride, pad, act=None, residual=None, out_c0=0):
    p = packed
    n, h, w, c = x.shape
    sh, sw = stride
    pt, pb, pl, pr = pad
    oh = conv_output_size(h, p.kh, sh, pt, pb)
    ow = conv_output_size(w, p.kw, sw, pl, pr)
    conv.launch_igemm(x, p, out, n, h, w, oh, ow, sh, sw, pt, pl, act, residual, out_c0, kind="tf32")


def pack_dense(kernel, bias):
    p = _pack_fp32_dense(round_to_tf32(kernel), bias)
    p.variant = "tf32-" + p.variant
    return p


def dense(x, packed, out, act=None):
    dense_with(x, packed, out, act, "tf32")


def __getattr__(name):
    if name == "xp":
        import kernels.gpu

        return kernels.gpu.xp
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
