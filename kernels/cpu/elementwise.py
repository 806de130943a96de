"""Element-wise Numba kernels: add, activation, channel_affine, softmax, concat, zero_pad.

All of these are memory-bound: each reads its inputs once and writes its output once, so the
figure of merit is GB/s (bytes = inputs + output). Buffers are treated as flat float32 vectors
(or rows x channels for the per-channel ops); the inner loop is contiguous so LLVM emits zmm code.
Large problems split the flat range into one chunk per thread (``prange``); small ones call the
serial worker directly, because waking the thread pool costs more than a batch-1 layer.

Bench: ``python bench/bench_kernels.py``.
"""

import numpy as np
from numba import njit, prange

from kernels.cpu.common import JIT, PJIT, act_code, apply_act, thread_chunks, use_parallel

# ---------------------------------------------------------------- add / activation


@njit(**JIT)
def _add_span(a, b, out, act):
    # Whole (sliced) arrays and a loop from 0: a provably non-negative index lets LLVM drop
    # Python's negative-index wraparound and vectorise.
    for i in range(a.size):
        out[i] = apply_act(a[i] + b[i], act)


@njit(**PJIT)
def _add_par(a, b, out, act, step, nchunk):
    n = a.size
    for k in prange(nchunk):
        lo, hi = k * step, min(n, (k + 1) * step)
        _add_span(a[lo:hi], b[lo:hi], out[lo:hi], act)


def add(a, b, out, act=None):
    """out = act(a + b); all three the same shape. Bytes: 3 * 4 * size."""
    fa, fb, fo = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    code = act_code(act)
    if use_parallel(12 * fa.size):
        _add_par(fa, fb, fo, code, *thread_chunks(fa.size, align=64))
    else:
        _add_span(fa, fb, fo, code)


@njit(**JIT)
def _act_span(x, out, act):
    for i in range(x.size):
        out[i] = apply_act(x[i], act)


@njit(**PJIT)
def _act_par(x, out, act, step, nchunk):
    n = x.size
    for k in prange(nchunk):
        lo, hi = k * step, min(n, (k + 1) * step)
        _act_span(x[lo:hi], out[lo:hi], act)


def activation(x, out, act):
    """Standalone relu / relu6 (or a copy for act=None); may run in place (out is x)."""
    fx, fo = x.reshape(-1), out.reshape(-1)
    code = act_code(act)
    if use_parallel(8 * fx.size):
        _act_par(fx, fo, code, *thread_chunks(fx.size, align=64))
    else:
        _act_span(fx, fo, code)


# ---------------------------------------------------------------- channel_affine


@njit(**JIT)
def _affine_rows(x, scale, shift, out, act, r0, r1):
    c = x.shape[1]
    for r in range(r0, r1):
        for j in range(c):
            out[r, j] = apply_act(x[r, j] * scale[j] + shift[j], act)


@njit(**PJIT)
def _affine_par(x, scale, shift, out, act, step, nchunk):
    rows = x.shape[0]
    for k in prange(nchunk):
        _affine_rows(x, scale, shift, out, act, k * step, min(rows, (k + 1) * step))


def channel_affine(x, scale, shift, out, act=None):
    """out = act(x * scale + shift) with per-channel (last axis) scale and shift: an unfolded BN."""
    c = x.shape[-1]
    fx, fo = x.reshape(-1, c), out.reshape(-1, c)
    scale = np.ascontiguousarray(scale, dtype=np.float32)
    shift = np.ascontiguousarray(shift, dtype=np.float32)
    code = act_code(act)
    rows = fx.shape[0]
    if use_parallel(8 * fx.size) and rows > 1:
        _affine_par(fx, scale, shift, fo, code, *thread_chunks(rows))
    else:
        _affine_rows(fx, scale, shift, fo, code, 0, rows)


# ---------------------------------------------------------------- softmax


@njit(**JIT)
def _softmax_rows(x, out, r0, r1):
    k = x.shape[1]
    for r in range(r0, r1):
        m = x[r, 0]
        for j in range(1, k):
            m = max(m, x[r, j])
        s = np.float32(0.0)
        for j in range(k):
            e = np.exp(x[r, j] - m)
            out[r, j] = e
            s += e
        inv = np.float32(1.0) / s
        for j in range(k):
            out[r, j] *= inv


@njit(**PJIT)
def _softmax_par(x, out):
    for r in prange(x.shape[0]):
        _softmax_rows(x, out, r, r + 1)


def softmax(x, out):
    """Numerically stable softmax over the last axis (max subtracted before exp)."""
    k = x.shape[-1]
    fx, fo = x.reshape(-1, k), out.reshape(-1, k)
    if use_parallel(8 * fx.size) and fx.shape[0] > 1:
        _softmax_par(fx, fo)
    else:
        _softmax_rows(fx, fo, 0, fx.shape[0])


# ---------------------------------------------------------------- concat / zero_pad


@njit(**JIT)
def _copy_cols(x, out, c0, r0, r1):
    """out[r, c0:c0+C] = x[r, :] for rows r0..r1 of 2-D row views."""
    c = x.shape[1]
    for r in range(r0, r1):
        dst = out[r, c0:c0 + c]
        src = x[r]
        for j in range(c):
            dst[j] = src[j]


@njit(**PJIT)
def _copy_cols_par(x, out, c0, step, nchunk):
    rows = x.shape[0]
    for k in prange(nchunk):
        _copy_cols(x, out, c0, k * step, min(rows, (k + 1) * step))


def _copy_into_channels(x2, out2, c0):
    rows = x2.shape[0]
    if use_parallel(8 * x2.size) and rows > 1:
        _copy_cols_par(x2, out2, c0, *thread_chunks(rows))
    else:
        _copy_cols(x2, out2, c0, 0, rows)


def concat(xs, out):
    """Copying concatenation along the last axis (the runtime normally avoids it with out_c0)."""
    ctot = out.shape[-1]
    o2 = out.reshape(-1, ctot)
    c0 = 0
    for x in xs:
        c = x.shape[-1]
        _copy_into_channels(x.reshape(-1, c), o2, c0)
        c0 += c


@njit(**JIT)
def _pad_rows(x, out, t, l, r0, r1):
    """Rows r0..r1 of out (flattened over N*OH): zeros outside the copied window of x.

    An output row is one contiguous run of OW*C floats: zeros, the input row, zeros.
    """
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    oh, ow = out.shape[1], out.shape[2]
    zero = np.float32(0.0)
    for r in range(r0, r1):
        n = r // oh
        oy = r - n * oh
        iy = oy - t
        dst = out[n, oy].reshape(ow * c)
        if iy < 0 or iy >= h:
            dst[:] = zero
            continue
        src = x[n, iy].reshape(w * c)
        head = dst[:l * c]
        head[:] = zero
        body = dst[l * c:(l + w) * c]
        for j in range(w * c):
            body[j] = src[j]
        tail = dst[(l + w) * c:]
        tail[:] = zero


@njit(**PJIT)
def _pad_par(x, out, t, l, step, nchunk):
    rows = out.shape[0] * out.shape[1]
    for k in prange(nchunk):
        _pad_rows(x, out, t, l, k * step, min(rows, (k + 1) * step))


def zero_pad(x, out, pad):
    """out = x surrounded by zeros: pad = (top, bottom, left, right) on the H and W axes."""
    t, _, l, _ = (int(p) for p in pad)
    rows = out.shape[0] * out.shape[1]
    if use_parallel(4 * (x.size + out.size)) and rows > 1:
        _pad_par(x, out, t, l, *thread_chunks(rows))
    else:
        _pad_rows(x, out, t, l, 0, rows)
