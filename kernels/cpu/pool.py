"""Pooling Numba kernels: max / average pooling windows and global average / max pooling.

Memory-bound: a k x k pool with stride s reads the input about once (overlapping windows hit in
cache) and writes the output once, so bytes = 4 * (N*H*W*C + N*OH*OW*C) and GB/s is the figure
of merit. Each worker owns a range of output rows (N*OH); for every output pixel the channel
vector of ``out`` stays in L1 while the valid window taps are folded into it with a contiguous
loop over channels (zmm max / add). Only taps that fall inside the input are visited, which is
how "padded cells never win" (max) and "padded cells are not counted" (average,
count_include_pad=False) are implemented without a padded copy of the input.

Bench: ``python bench/bench_kernels.py`` (ResNet's 3x3/2 max pool, Inception's 3x3/1 avg pool).
"""

import numpy as np
from numba import njit, prange, types

from kernels import conv_output_size
from kernels.cpu.common import JIT, PJIT, thread_chunks, use_parallel
from kernels.cpu.native import item_address
from kernels.cpu.stack import call_native, raw_view

# Windows with a compiled interior (the ones real networks use); others run the generic rows.
SPECIALISED_WINDOWS = {(2, 2), (3, 3)}


@njit(**JIT)
def _pool_pixel(x, o, n, y0, x0, kh, kw, mode):
    """One output pixel, any window; only taps inside the input are visited."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    i0, i1 = max(0, -y0), min(kh, h - y0)
    j0, j1 = max(0, -x0), min(kw, w - x0)
    # The first valid tap initialises the accumulator: no -inf / zero pass needed.
    first = x[n, y0 + i0, x0 + j0]
    for q in range(c):
        o[q] = first[q]
    for i in range(i0, i1):
        for j in range(j0, j1):
            if i == i0 and j == j0:
                continue
            src = x[n, y0 + i, x0 + j]
            if mode == 0:
                for q in range(c):
                    o[q] = max(o[q], src[q])
            else:
                for q in range(c):
                    o[q] += src[q]
    if mode != 0:
        cnt = kh * kw if mode == 2 else (i1 - i0) * (j1 - j0)
        scale = np.float32(1.0) / np.float32(cnt)
        for q in range(c):
            o[q] *= scale


@njit(**JIT)
def _pool_rows(x, out, kh, kw, sh, sw, pt, pl, mode, c0, r0, r1):
    """Output rows r0..r1 of N*OH. mode 0: max, 1: avg over real cells, 2: avg over kh*kw."""
    c = x.shape[3]
    oh, ow = out.shape[1], out.shape[2]
    for r in range(r0, r1):
        n = r // oh
        oy = r - n * oh
        for ox in range(ow):
            _pool_pixel(x, out[n, oy, ox, c0:c0 + c], n, oy * sh - pt, ox * sw - pl, kh, kw, mode)


@njit(**PJIT)
def _pool_par(x, out, kh, kw, sh, sw, pt, pl, mode, c0, step, nchunk):
    rows = out.shape[0] * out.shape[1]
    for k in prange(nchunk):
        _pool_rows(x, out, kh, kw, sh, sw, pt, pl, mode, c0, k * step, min(rows, (k + 1) * step))


@njit(**JIT)
def _pool_rows_window(x, out, KH, KW, sh, sw, pt, pl, mode, c0, r0, r1):
    """Rows r0..r1 with a constant window (KH, KW literal specialisations: the closures below pass
    constants, see ``depthwise.dw_rows_window``; one compiled copy for both): interior
    pixels keep the running max / sum of a channel in a register over the unrolled taps (1 load
    per tap, 1 store per output) instead of folding each tap into the output vector in L1."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    oh, ow, ctot = out.shape[1], out.shape[2], out.shape[3]
    ox_lo = min(ow, (pl + sw - 1) // sw)
    ox_hi = max(ox_lo, min(ow, (w - KW + pl) // sw + 1))
    inv = np.float32(1.0) / np.float32(KH * KW)
    for r in range(r0, r1):
        n = r // oh
        oy = r - n * oh
        y0 = oy * sh - pt
        if y0 < 0 or y0 + KH > h:
            for ox in range(ow):
                _pool_pixel(x, out[n, oy, ox, c0:c0 + c], n, y0, ox * sw - pl, KH, KW, mode)
            continue
        for ox in range(ox_lo):
            _pool_pixel(x, out[n, oy, ox, c0:c0 + c], n, y0, ox * sw - pl, KH, KW, mode)
        for ox in range(ox_lo, ox_hi):
            # the output as a raw view, not a slice: a slice per pixel is an atomic NRT incref /
            # decref on the array's one counter, which both threads share
            x0 = ox * sw - pl
            o = raw_view(out, ((n * oh + oy) * ow + ox) * ctot + c0)
            if mode == 0:
                for q in range(c):
                    m = x[n, y0, x0, q]
                    for i in range(KH):
                        for j in range(KW):
                            m = max(m, x[n, y0 + i, x0 + j, q])
                    o[q] = m
            else:
                for q in range(c):
                    acc = np.float32(0.0)
                    for i in range(KH):
                        for j in range(KW):
                            acc += x[n, y0 + i, x0 + j, q]
                    o[q] = acc * inv
        for ox in range(ox_hi, ow):
            _pool_pixel(x, out[n, oy, ox, c0:c0 + c], n, y0, ox * sw - pl, KH, KW, mode)


_SPECIALISED = {}


def _specialised(kh, kw):
    """Serial worker + parallel launcher for a constant window: calls of ``_pool_rows_window`` with the
    window as constants. The closures capture only ints so Numba's disk cache keys them stably (see
    kernels/cpu/depthwise.py)."""
    if (kh, kw) in _SPECIALISED:
        return _SPECIALISED[(kh, kw)]
    KH, KW = kh, kw

    @njit(**JIT)
    def rows_fn(x, out, kh, kw, sh, sw, pt, pl, mode, c0, r0, r1, window):
        call_native(window, _pool_rows_window, x, out, KH, KW, sh, sw, pt, pl, mode, c0, r0, r1)

    @njit(**PJIT)
    def par_fn(x, out, kh, kw, sh, sw, pt, pl, mode, c0, step, nchunk, window):
        rows = out.shape[0] * out.shape[1]
        for kk in prange(nchunk):
            k = np.int64(kk)        # int64 as rows_fn's r0, r1: one specialisation of _pool_rows_window
            call_native(window, _pool_rows_window, x, out, KH, KW, sh, sw, pt, pl, mode, c0, k * step,
                        min(rows, (k + 1) * step))

    lits = (types.literal(KH), types.literal(KW))

    def window_types(x, out):
        """``_pool_rows_window``'s argument types as both drivers pass them (for ``item_address``)."""
        return (x, out) + lits + (types.int64,) * 8

    _SPECIALISED[(kh, kw)] = (rows_fn, par_fn, window_types)
    return _SPECIALISED[(kh, kw)]


def _pool(x, out, pool, stride, pad, mode, out_c0):
    kh, kw = (int(v) for v in pool)
    sh, sw = (int(v) for v in stride)
    pt, pb, pl, pr = (int(v) for v in pad)
    n, h, w, c = x.shape
    oh = conv_output_size(h, kh, sh, pt, pb)
    ow = conv_output_size(w, kw, sw, pl, pr)
    # Every window must hold at least one real cell (true for any padding < kernel size).
    assert pt < kh and pl < kw and pb < kh and pr < kw, "padding must be smaller than the pool"
    assert out.shape[1] == oh and out.shape[2] == ow
    rows = n * oh
    # the constant-window kernels write ``out`` through flat views: a C-contiguous ``out`` only
    fast = (kh, kw) in SPECIALISED_WINDOWS and out.flags.c_contiguous
    parallel = use_parallel(4 * (x.size + n * oh * ow * c)) and rows > 1
    if not fast:
        if parallel:
            _pool_par(x, out, kh, kw, sh, sw, pt, pl, mode, int(out_c0), *thread_chunks(rows, per_thread=4))
        else:
            _pool_rows(x, out, kh, kw, sh, sw, pt, pl, mode, int(out_c0), 0, rows)
        return
    rows_fn, par_fn, window_types = _specialised(kh, kw)
    window = item_address(_pool_rows_window, window_types, x, out)
    if parallel:
        par_fn(x, out, kh, kw, sh, sw, pt, pl, mode, int(out_c0), *thread_chunks(rows, per_thread=4), window)
    else:
        rows_fn(x, out, kh, kw, sh, sw, pt, pl, mode, int(out_c0), 0, rows, window)


def max_pool2d(x, out, pool, stride, pad, out_c0=0):
    """Max over each window; cells in the padding never win (they are skipped, i.e. -inf)."""
    _pool(x, out, pool, stride, pad, 0, out_c0)


def avg_pool2d(x, out, pool, stride, pad, count_include_pad, out_c0=0):
    """Window mean; the divisor counts padded cells only when count_include_pad is true."""
    _pool(x, out, pool, stride, pad, 2 if count_include_pad else 1, out_c0)


# ---------------------------------------------------------------- global pooling


@njit(**JIT)
def _global_rows(x, out, is_max, n0, n1):
    """Mean (or max) over H and W of samples [n0, n1). A mean sums each row of W pixels in float32 and
    the H row sums in float64: squeeze-excite takes this mean over whole maps (EfficientNetB6: 264 x
    264 pixels), where one float32 running sum lost ~1e-4 of the logits against Keras (which sums
    pairwise); its error now grows with W, not H * W."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    inv = 1.0 / (h * w)
    row = np.empty(c, np.float32)
    acc = np.empty(c, np.float64)
    for n in range(n0, n1):
        o = out[n]
        if is_max:
            first = x[n, 0, 0]
            for q in range(c):
                o[q] = first[q]
            for i in range(h):
                for j in range(w):
                    src = x[n, i, j]
                    for q in range(c):
                        o[q] = max(o[q], src[q])
            continue
        for q in range(c):
            acc[q] = 0.0
        for i in range(h):
            first = x[n, i, 0]
            for q in range(c):
                row[q] = first[q]
            for j in range(1, w):
                src = x[n, i, j]
                for q in range(c):
                    row[q] += src[q]
            for q in range(c):
                acc[q] += row[q]
        for q in range(c):
            o[q] = np.float32(acc[q] * inv)


@njit(**PJIT)
def _global_par(x, out, is_max):
    for n in prange(x.shape[0]):
        _global_rows(x, out, is_max, n, n + 1)


def _global(x, out, is_max):
    n = x.shape[0]
    if use_parallel(4 * x.size) and n > 1:
        _global_par(x, out, is_max)
    else:
        _global_rows(x, out, is_max, 0, n)


def global_avg_pool(x, out):
    """(N, H, W, C) -> (N, C) mean over H and W (rows summed in float32, rows added in float64)."""
    _global(x, out, False)


def global_max_pool(x, out):
    """(N, H, W, C) -> (N, C) max over H and W."""
    _global(x, out, True)
