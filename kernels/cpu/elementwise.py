"""Element-wise Numba kernels: add, mul, activation, channel_affine, softmax, concat, zero_pad.

All of these are memory-bound: each reads its inputs once and writes its output once, so the
figure of merit is GB/s (bytes = inputs + output). Buffers are treated as flat float32 vectors
(or rows x channels for the per-channel ops); the inner loop is contiguous so LLVM emits zmm code.
Large problems split the flat range into one chunk per thread (``prange``); small ones call the
serial worker directly, because waking the thread pool costs more than a batch-1 layer.

add and mul take a second input of the first's shape, or one value per sample and channel (N, C)
broadcast over the pixels (squeeze-excite's scale, a per-channel Add). The clamp activations are
applied in the same loop; a smooth one (sigmoid, silu, gelu, ...: ``common.act_span``) over each
block of ``BLOCK`` floats just written, while it is in L1, so the data still crosses memory once.
Smooth activations count ``SMOOTH_WEIGHT`` times their bytes towards the parallel threshold (tens
of FLOPs an element).

Bench: ``python bench/bench_kernels.py``.
"""

import numpy as np
from numba import njit, prange

from kernels.cpu.common import (
    JIT,
    PJIT,
    act_bounds,
    act_code,
    act_span,
    is_smooth,
    thread_chunks,
    use_parallel,
)
from kernels.cpu.stack import raw_view

BLOCK = 4096            # floats per block (16 KB: L1) between a loop and its smooth activation
SMOOTH_WEIGHT = 4


def _parallel(nbytes, act):
    return use_parallel(nbytes * (SMOOTH_WEIGHT if act_code(act) > 2 else 1))


# ---------------------------------------------------------------- add / mul / activation


@njit(**JIT)
def _binary_span(a, b, out, lo, hi, is_mul, act):
    """out[i] = act(a[i] + b[i]) (or a[i] * b[i]) over flat [lo, hi), in blocks of BLOCK floats."""
    clo, chi = act_bounds(act)
    for s in range(lo, hi, BLOCK):
        n = min(hi, s + BLOCK) - s
        # views from the block start and a loop from 0: a provably non-negative index lets LLVM
        # drop Python's negative-index wraparound and vectorise
        av, bv, ov = raw_view(a, s), raw_view(b, s), raw_view(out, s)
        if is_mul:
            for i in range(n):
                ov[i] = min(max(av[i] * bv[i], clo), chi)
        else:
            for i in range(n):
                ov[i] = min(max(av[i] + bv[i], clo), chi)
        if is_smooth(act):
            act_span(ov, ov, n, act)


@njit(**PJIT)
def _binary_par(a, b, out, is_mul, act, step, nchunk):
    n = a.size
    for k in prange(nchunk):
        _binary_span(a, b, out, k * step, min(n, (k + 1) * step), is_mul, act)


@njit(**JIT)
def _channel_rows(a, b, out, c, pixels, r0, r1, is_mul, act):
    """Rows [r0, r1) of a (rows, c) map: out[r] = act(a[r] op b[r // pixels]) with b (N, c) flat,
    ``pixels`` rows per sample; a smooth activation over every ~BLOCK floats of finished rows."""
    clo, chi = act_bounds(act)
    per = max(1, BLOCK // c)
    for g in range(r0, r1, per):
        g1 = min(r1, g + per)
        for r in range(g, g1):
            av, ov, bv = raw_view(a, r * c), raw_view(out, r * c), raw_view(b, (r // pixels) * c)
            if is_mul:
                for j in range(c):
                    ov[j] = min(max(av[j] * bv[j], clo), chi)
            else:
                for j in range(c):
                    ov[j] = min(max(av[j] + bv[j], clo), chi)
        if is_smooth(act):
            ov = raw_view(out, g * c)
            act_span(ov, ov, (g1 - g) * c, act)


@njit(**PJIT)
def _channel_par(a, b, out, c, pixels, is_mul, act, step, nchunk):
    rows = a.size // c
    for k in prange(nchunk):
        _channel_rows(a, b, out, c, pixels, k * step, min(rows, (k + 1) * step), is_mul, act)


def _binary(a, b, out, act, is_mul):
    code = act_code(act)
    fa, fo = a.reshape(-1), out.reshape(-1)
    if b.shape == a.shape:
        fb = b.reshape(-1)
        if _parallel(12 * fa.size, act):
            _binary_par(fa, fb, fo, is_mul, code, *thread_chunks(fa.size, align=64))
        else:
            _binary_span(fa, fb, fo, 0, fa.size, is_mul, code)
        return
    n, c = a.shape[0], a.shape[-1]
    fb = np.ascontiguousarray(b, np.float32).reshape(-1)
    if fb.size != n * c:
        raise ValueError(f"{'mul' if is_mul else 'add'}: second input {b.shape} is neither {a.shape} nor ({n}, {c})")
    rows = fa.size // c
    if _parallel(8 * fa.size, act) and rows > 1:
        _channel_par(fa, fb, fo, c, rows // n, is_mul, code, *thread_chunks(rows))
    else:
        _channel_rows(fa, fb, fo, c, rows // n, 0, rows, is_mul, code)


def add(a, b, out, act=None):
    """out = act(a + b); b has a's shape, or is (N, C) (one value per sample and channel, broadcast
    over the pixels). Bytes: 3 * 4 * size (same shapes), 2 * 4 * size (per channel)."""
    _binary(a, b, out, act, False)


def mul(a, b, out, act=None):
    """out = act(a * b), b as in ``add`` (squeeze-excite: a map scaled per sample and channel)."""
    _binary(a, b, out, act, True)


@njit(**JIT)
def _act_span(x, out, lo, hi, act):
    clo, chi = act_bounds(act)
    xv, ov = raw_view(x, lo), raw_view(out, lo)
    if is_smooth(act):
        act_span(xv, ov, hi - lo, act)
    else:
        for i in range(hi - lo):
            ov[i] = min(max(xv[i], clo), chi)


@njit(**PJIT)
def _act_par(x, out, act, step, nchunk):
    n = x.size
    for k in prange(nchunk):
        _act_span(x, out, k * step, min(n, (k + 1) * step), act)


def activation(x, out, act):
    """Standalone activation (a copy for act=None); may run in place (out is x)."""
    fx, fo = x.reshape(-1), out.reshape(-1)
    code = act_code(act)
    if _parallel(8 * fx.size, act):
        _act_par(fx, fo, code, *thread_chunks(fx.size, align=64))
    else:
        _act_span(fx, fo, 0, fx.size, code)


# ---------------------------------------------------------------- channel_affine


@njit(**JIT)
def _affine_rows(x, scale, shift, out, act, r0, r1):
    c = x.shape[1]
    clo, chi = act_bounds(act)
    per = max(1, BLOCK // c)
    xf, of = raw_view(x, 0), raw_view(out, 0)
    for g in range(r0, r1, per):
        g1 = min(r1, g + per)
        for r in range(g, g1):
            xv, ov = raw_view(xf, r * c), raw_view(of, r * c)
            for j in range(c):
                ov[j] = min(max(xv[j] * scale[j] + shift[j], clo), chi)
        if is_smooth(act):
            ov = raw_view(of, g * c)
            act_span(ov, ov, (g1 - g) * c, act)


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
    if _parallel(8 * fx.size, act) and rows > 1:
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
