"""Normalisations across channels as Numba kernels: layer_norm (ConvNeXt, transformers' LayerNorm over
the last axis) and lrn (ONNX LRN: AlexNet / GoogLeNet-era model-zoo files).

Both work on rows of C contiguous channels (a pixel's channel vector, or a vector of a 2-D input):
a row is read from memory once, and its later passes (layer_norm: mean, then the squared deviations,
then the output; lrn: the windowed sum of squares, then the output) find it in L1. So each is one
pass over memory: bytes = 2 * 4 * size (+ the per-channel parameters), GB/s the figure of merit.
Rows are split over threads in equal chunks above ``common.PARALLEL_BYTES`` (weighted: tens of FLOPs
an element).

layer_norm: mean and variance in float32 with LLVM's 16-lane partial sums (fastmath re-associates the
reductions); the variance from the deviations from the rounded mean (not E[x^2] - E[x]^2, which
cancels), whose own mean corrects the rounded one in the same sweep. lrn: the window
sum is one shifted multiply-add loop per window offset, and the power ``(bias + alpha / size *
sum)^-beta`` is ``t sqrt(t)`` with ``t = 1 / sqrt(base)`` for the common beta = 0.75, else
``exp(-beta log(base))`` from ``fastmath.py`` (both vectorised; base must be > 0, as it is for bias > 0).

Bench: ``python bench/bench_kernels.py --only new``.
"""

import numpy as np
from numba import njit, prange

from kernels.cpu import fastmath as fm
from kernels.cpu.common import FAST, JIT, PJIT, thread_chunks, use_parallel
from kernels.cpu.stack import raw_view

WORK_WEIGHT = 4           # FLOPs per byte well above an add's: parallel from a quarter of the bytes


# ---------------------------------------------------------------- layer_norm


@njit(**JIT)
def _ln_rows(x, gamma, beta, out, eps, r0, r1):
    c = gamma.size
    inv_c = np.float32(1.0) / np.float32(c)
    for r in range(r0, r1):
        xv, ov = raw_view(x, r * c), raw_view(out, r * c)
        s = np.float32(0.0)
        for j in range(c):
            s += xv[j]
        mu = s * inv_c
        # the rounded mean, corrected by the mean of the deviations from it (exact differences for
        # values near it): without it, rows with a large common offset (50 +- 1) lost 1e-5
        sd = np.float32(0.0)
        q = np.float32(0.0)
        # the deviations go through ``out``: computed in one expression, fastmath re-associated
        # (x - mu) - delta into x - (mu + delta), rounded at the offset's scale (2e-5 at 50 +- 1)
        for j in range(c):
            d = xv[j] - mu
            ov[j] = d
            sd += d
            q += d * d
        delta = sd * inv_c
        rstd = np.float32(1.0) / np.sqrt(max(q * inv_c - delta * delta, np.float32(0.0)) + eps)
        for j in range(c):
            ov[j] = (ov[j] - delta) * rstd * gamma[j] + beta[j]


@njit(**PJIT)
def _ln_par(x, gamma, beta, out, eps, step, nchunk):
    rows = x.size // gamma.size
    for k in prange(nchunk):
        _ln_rows(x, gamma, beta, out, eps, k * step, min(rows, (k + 1) * step))


def layer_norm(x, gamma, beta, out, eps):
    """out = (x - mean) / sqrt(var + eps) * gamma + beta over the last axis."""
    c = x.shape[-1]
    fx, fo = np.ascontiguousarray(x).reshape(-1), out.reshape(-1)
    g = np.ascontiguousarray(gamma, np.float32)
    b = np.ascontiguousarray(beta, np.float32)
    rows = fx.size // c
    e = np.float32(eps)
    if use_parallel(WORK_WEIGHT * 8 * fx.size) and rows > 1:
        _ln_par(fx, g, b, fo, e, *thread_chunks(rows))
    else:
        _ln_rows(fx, g, b, fo, e, 0, rows)


# ---------------------------------------------------------------- lrn


@njit(**FAST)
def _lrn_scale(xv, ov, n, bias, k, beta):
    """ov[j] = xv[j] * (bias + k * ov[j]) ** -beta, ov holding the window sums of squares. FAST (not
    JIT) flags: the power's exp / log keep their accuracy (fastmath.py)."""
    if beta == np.float32(0.75):
        for j in range(n):
            t = np.float32(1.0) / np.sqrt(bias + k * ov[j])
            ov[j] = xv[j] * t * np.sqrt(t)
    else:
        nb = -beta
        for j in range(n):
            ov[j] = xv[j] * fm.exp_f32(nb * fm.log_f32(bias + k * ov[j]))


@njit(**JIT)
def _lrn_rows(x, out, c, lo, hi, bias, k, beta, r0, r1):
    """Rows [r0, r1): the window of channel j is [j - lo, j + hi] (clipped to the row)."""
    for r in range(r0, r1):
        xv, ov = raw_view(x, r * c), raw_view(out, r * c)
        for j in range(c):
            ov[j] = xv[j] * xv[j]
        for d in range(1, lo + 1):              # channels below: ov[j] += x[j - d]^2 for j >= d
            if d < c:
                src, dst = raw_view(x, r * c), raw_view(out, r * c + d)
                for j in range(c - d):
                    dst[j] += src[j] * src[j]
        for d in range(1, hi + 1):              # channels above: ov[j] += x[j + d]^2 for j < c - d
            if d < c:
                src = raw_view(x, r * c + d)
                for j in range(c - d):
                    ov[j] += src[j] * src[j]
        _lrn_scale(xv, ov, c, bias, k, beta)


@njit(**PJIT)
def _lrn_par(x, out, c, lo, hi, bias, k, beta, step, nchunk):
    rows = x.size // c
    for t in prange(nchunk):
        _lrn_rows(x, out, c, lo, hi, bias, k, beta, t * step, min(rows, (t + 1) * step))


def lrn(x, out, size, alpha, beta, bias):
    """ONNX LRN across channels: out = x / (bias + alpha / size * sum of x^2 over the window)^beta,
    the window of channel c being [c - floor((size - 1) / 2), c + ceil((size - 1) / 2)]."""
    c = x.shape[-1]
    size = int(size)
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    fx, fo = np.ascontiguousarray(x).reshape(-1), out.reshape(-1)
    rows = fx.size // c
    args = (c, lo, hi, np.float32(bias), np.float32(alpha / size), np.float32(beta))
    if use_parallel(WORK_WEIGHT * 8 * fx.size) and rows > 1:
        _lrn_par(fx, fo, *args, *thread_chunks(rows))
    else:
        _lrn_rows(fx, fo, *args, 0, rows)
