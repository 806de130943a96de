"""Depthwise 2-D convolution (MobileNet, Xception) as Numba kernels.

out[n, oy, ox, c*M + m] = act(b[c*M + m] + sum_ij x[n, oy*sh - pt + i, ox*sw - pl + j, c] * w[i, j, c, m])

What bounds it: 2*kh*kw FLOPs per output against 4 bytes in and 4 bytes out per element, i.e.
~2.3 FLOP/byte for 3x3 stride 1. The layers fit in L2, so the limit is the core's vector loads
(about 1.5 zmm loads per cycle measured here, fewer than the 2 FMAs per cycle): a 3x3 output
vector done pixel by pixel needs 9 weight + 9 input loads for 9 FMAs, and its 9 FMAs form one
dependent chain. Bytes counted by the bench: 4 * (input + output + weights).

Variants (``packed.variant``):
  ``dw{kh}x{kw}_m1``  multiplier 1 and a window in SPECIALISED_WINDOWS (3x3, 5x5): the MobileNet /
                      Xception case. The kernel is generated for its window size (and for 3x3,
                      its horizontal stride 1 or 2), so the taps are constants. 3x3: interior
                      runs of TP = 4 output pixels go through ``_dw3x3_tile``: per 16 channels,
                      9 weight vectors serve 4 pixels, at stride 1 the 18 input vectors serve 36
                      FMAs, and the 4 sums are independent chains (measured 1 thread, load 10-15:
                      55-62 GFLOP/s on MobileNet's stride-1 layers, 2x the per-pixel loop; 40-45
                      at stride 2, 1.5x). Other windows and the leftover interior pixels: a
                      contiguous loop over channels keeps the sum of one pixel in a register.
                      Border pixels (a tap in the padding) take the generic path below, so the
                      interior is branch-free and no padded copy of the input is made.
  ``dw_generic``      any window and multiplier: the output channel vector of a pixel is kept in
                      L1 and each valid tap is folded into it (also the border path above).
Work is split over output rows (N*OH); small layers call the serial worker directly.

Numba leaves LLVM's SLP vectoriser off, so only loops are vectorised: the tile keeps the channel
loop innermost (64 channels per chunk, too long to be fully unrolled before vectorisation), writes
to a stack tile (no runtime alias checks) and indexes with hoisted multiples of c (no wraparound).

Bench: ``python bench/bench_kernels.py`` (MobileNet's depthwise layers).
"""

from types import SimpleNamespace

import numba
import numpy as np
from numba import njit, prange

from kernels import conv_output_size
from kernels.cpu.elementwise import act_code, apply_act, use_parallel
from kernels.cpu.stack import stack_tile

_JIT = dict(fastmath=True, cache=True, nogil=True)
_PJIT = dict(parallel=True, fastmath=True, cache=True, nogil=True)


@njit(**_JIT)
def _dw_pixel_generic(x, w, b, o, n, y0, x0, mult, act):
    """One output pixel, any window / multiplier; taps in the padding are skipped."""
    h, wd, c = x.shape[1], x.shape[2], x.shape[3]
    kh, kw = w.shape[0], w.shape[1]
    cm = c * mult
    for q in range(cm):
        o[q] = b[q]
    for i in range(max(0, -y0), min(kh, h - y0)):
        for j in range(max(0, -x0), min(kw, wd - x0)):
            src = x[n, y0 + i, x0 + j]
            wt = w[i, j]
            if mult == 1:
                for q in range(c):
                    o[q] += src[q] * wt[q]
            else:
                for ci in range(c):
                    v = src[ci]
                    for m in range(mult):
                        o[ci * mult + m] += v * wt[ci * mult + m]
    if act != 0:
        for q in range(cm):
            o[q] = apply_act(o[q], act)


@njit(**_JIT)
def _dw_generic_rows(x, w, b, out, sh, sw, pt, pl, mult, act, c0, r0, r1):
    oh, ow = out.shape[1], out.shape[2]
    cm = x.shape[3] * mult
    for r in range(r0, r1):
        n = r // oh
        oy = r - n * oh
        for ox in range(ow):
            _dw_pixel_generic(x, w, b, out[n, oy, ox, c0:c0 + cm], n, oy * sh - pt, ox * sw - pl, mult, act)


@njit(**_PJIT)
def _dw_generic_par(x, w, b, out, sh, sw, pt, pl, mult, act, c0, step, nchunk):
    rows = out.shape[0] * out.shape[1]
    for k in prange(nchunk):
        _dw_generic_rows(x, w, b, out, sh, sw, pt, pl, mult, act, c0, k * step, min(rows, (k + 1) * step))


TP = 4     # output pixels per 3x3 tile (one row, adjacent columns)
TQ = 64    # channels per tile chunk: 4 zmm per pixel; a 64-trip loop is vectorised, not fully unrolled


# The tile's vector loop stores into this stack buffer rather than into ``out``: with 4 output rows
# x 12 input streams LLVM's runtime overlap checks exceed its limit and it would run scalar.
_stack_tile = stack_tile(TP, TQ)


@njit(inline="always")
def _dw3x3_tile(xf, wf, b, orow, base, rowlen, c, ox, c0, lo, hi, SW):
    """TP adjacent output pixels of one row, 3x3 window, all channels, TQ channels at a time.

    Each weight vector is loaded once for TP pixels and (stride 1) each input vector feeds up to 3
    of them; the TP sums are independent FMA chains. Indices are written as ``k + q`` with k a
    hoisted multiple of c, so they are provably non-negative (no wraparound selects, no gathers)
    and LLVM needs one pointer per input row plus a few offsets instead of one per stream.
    """
    tmp = _stack_tile()
    k1, k2, k3, k4, k5, k6, k7, k8 = c, 2 * c, 3 * c, 4 * c, 5 * c, 6 * c, 7 * c, 8 * c
    s1, s2, s3 = SW * c, 2 * SW * c, 3 * SW * c
    for q0 in range(0, c, TQ):
        nq = min(TQ, c - q0)
        x0 = xf[base + q0:]
        x1 = xf[base + rowlen + q0:]
        x2 = xf[base + 2 * rowlen + q0:]
        wq = wf[q0:]
        bq = b[q0:]
        for q in range(nq):
            a0 = bq[q]
            a1 = a0
            a2 = a0
            a3 = a0
            w0, w1, w2 = wq[q], wq[k1 + q], wq[k2 + q]
            a0 += x0[q] * w0 + x0[k1 + q] * w1 + x0[k2 + q] * w2
            a1 += x0[s1 + q] * w0 + x0[s1 + k1 + q] * w1 + x0[s1 + k2 + q] * w2
            a2 += x0[s2 + q] * w0 + x0[s2 + k1 + q] * w1 + x0[s2 + k2 + q] * w2
            a3 += x0[s3 + q] * w0 + x0[s3 + k1 + q] * w1 + x0[s3 + k2 + q] * w2
            w0, w1, w2 = wq[k3 + q], wq[k4 + q], wq[k5 + q]
            a0 += x1[q] * w0 + x1[k1 + q] * w1 + x1[k2 + q] * w2
            a1 += x1[s1 + q] * w0 + x1[s1 + k1 + q] * w1 + x1[s1 + k2 + q] * w2
            a2 += x1[s2 + q] * w0 + x1[s2 + k1 + q] * w1 + x1[s2 + k2 + q] * w2
            a3 += x1[s3 + q] * w0 + x1[s3 + k1 + q] * w1 + x1[s3 + k2 + q] * w2
            w0, w1, w2 = wq[k6 + q], wq[k7 + q], wq[k8 + q]
            a0 += x2[q] * w0 + x2[k1 + q] * w1 + x2[k2 + q] * w2
            a1 += x2[s1 + q] * w0 + x2[s1 + k1 + q] * w1 + x2[s1 + k2 + q] * w2
            a2 += x2[s2 + q] * w0 + x2[s2 + k1 + q] * w1 + x2[s2 + k2 + q] * w2
            a3 += x2[s3 + q] * w0 + x2[s3 + k1 + q] * w1 + x2[s3 + k2 + q] * w2
            tmp[0, q] = min(max(a0, lo), hi)
            tmp[1, q] = min(max(a1, lo), hi)
            tmp[2, q] = min(max(a2, lo), hi)
            tmp[3, q] = min(max(a3, lo), hi)
        for p in range(TP):
            o = orow[ox + p, c0 + q0:]
            for q in range(nq):
                o[q] = tmp[p, q]


@njit(inline="always")
def _dw_rows_window(x, w, b, out, KH, KW, SW, sh, sw, pt, pl, act, c0, r0, r1):
    """Rows r0..r1, multiplier 1. Inlined (Numba IR) into the closures below, where KH, KW and SW
    are constants, so the tap loops unroll and the channel loop vectorises with the sum in a
    register. SW > 0 (3x3 only, SW == sw): runs of TP interior pixels go through _dw3x3_tile."""
    h, wd, c = x.shape[1], x.shape[2], x.shape[3]
    oh, ow = out.shape[1], out.shape[2]
    # Interior columns: every tap inside the input.
    ox_lo = min(ow, (pl + sw - 1) // sw)
    ox_hi = max(ox_lo, min(ow, (wd - KW + pl) // sw + 1))
    ox_t = ox_lo + (ox_hi - ox_lo) // TP * TP if SW > 0 else ox_lo
    wf = w.reshape(KH * KW * c)
    lo = np.float32(0.0) if act != 0 else np.float32(-3.0e38)
    hi = np.float32(6.0) if act == 2 else np.float32(3.0e38)
    for r in range(r0, r1):
        n = r // oh
        oy = r - n * oh
        y0 = oy * sh - pt
        if y0 < 0 or y0 + KH > h:
            for ox in range(ow):
                _dw_pixel_generic(x, w, b, out[n, oy, ox, c0:c0 + c], n, y0, ox * sw - pl, 1, act)
            continue
        for ox in range(ox_lo):
            _dw_pixel_generic(x, w, b, out[n, oy, ox, c0:c0 + c], n, y0, ox * sw - pl, 1, act)
        if SW > 0:
            xf = x[n].reshape(h * wd * c)
            orow = out[n, oy]
            for ox in range(ox_lo, ox_t, TP):
                _dw3x3_tile(xf, wf, b, orow, (y0 * wd + ox * SW - pl) * c, wd * c, c, ox, c0, lo, hi, SW)
        for ox in range(ox_t, ox_hi):
            x0 = ox * sw - pl
            o = out[n, oy, ox, c0:c0 + c]
            for q in range(c):
                acc = b[q]
                for i in range(KH):
                    for j in range(KW):
                        acc += x[n, y0 + i, x0 + j, q] * w[i, j, q]
                o[q] = apply_act(acc, act)
        for ox in range(ox_hi, ow):
            _dw_pixel_generic(x, w, b, out[n, oy, ox, c0:c0 + c], n, y0, ox * sw - pl, 1, act)


# Windows that get a compiled interior (3x3: MobileNet, Xception; 5x5: MobileNetV2-style nets);
# other sizes run dw_generic rather than compiling a kernel per window at first use.
SPECIALISED_WINDOWS = {(3, 3), (5, 5)}
TILED_STRIDES = (1, 2)  # 3x3 strides with a TP-pixel tile
DW_BYTES_WEIGHT = 4
_SPECIALISED = {}


def _specialised(kh, kw, sw):
    """Serial worker + parallel launcher with the window size (and, for 3x3 tiles, the stride)
    baked in as constants.

    The closures capture only ints: Numba's on-disk cache keys a closure by its cell contents, and
    a captured dispatcher pickles with a per-process uuid (a fresh key, a recompile and a growing
    index every run), so both closures call the inlined module-level body instead of each other.
    """
    SW = sw if (kh, kw) == (3, 3) and sw in TILED_STRIDES else 0
    key = (kh, kw, SW)
    if key in _SPECIALISED:
        return _SPECIALISED[key]
    KH, KW = kh, kw

    @njit(**_JIT)
    def rows_fn(x, w, b, out, sh, sw, pt, pl, act, c0, r0, r1):
        _dw_rows_window(x, w, b, out, KH, KW, SW, sh, sw, pt, pl, act, c0, r0, r1)

    @njit(**_PJIT)
    def par_fn(x, w, b, out, sh, sw, pt, pl, act, c0, step, nchunk):
        rows = out.shape[0] * out.shape[1]
        for k in prange(nchunk):
            _dw_rows_window(x, w, b, out, KH, KW, SW, sh, sw, pt, pl, act, c0, k * step,
                            min(rows, (k + 1) * step))

    _SPECIALISED[key] = (rows_fn, par_fn)
    return rows_fn, par_fn


def pack_depthwise(kernel, bias):
    """kernel (kh, kw, c, mult), bias (c*mult,) | None -> packed weights (kh, kw, c*mult) + bias."""
    kernel = np.asarray(kernel, dtype=np.float32)
    kh, kw, c, mult = kernel.shape
    w = np.ascontiguousarray(kernel.reshape(kh, kw, c * mult))
    b = np.zeros(c * mult, np.float32) if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    variant = f"dw{kh}x{kw}_m1" if mult == 1 and (kh, kw) in SPECIALISED_WINDOWS else "dw_generic"
    return SimpleNamespace(w=w, b=b, kh=kh, kw=kw, c=c, mult=mult, variant=variant)


def depthwise_conv2d(x, packed, out, stride, pad, act=None, out_c0=0):
    """Write act(depthwise(x) + bias) into channels [out_c0, out_c0 + c*mult) of out."""
    sh, sw = (int(v) for v in stride)
    pt, pb, pl, pr = (int(v) for v in pad)
    n, h, w, _ = x.shape
    oh = conv_output_size(h, packed.kh, sh, pt, pb)
    ow = conv_output_size(w, packed.kw, sw, pl, pr)
    assert out.shape[1] == oh and out.shape[2] == ow
    code, c0 = act_code(act), int(out_c0)
    rows = n * oh
    # A 3x3 depthwise does ~2.25 FLOP per byte, several times an element-wise op's work per byte, so
    # its bytes count 4x against the shared threshold (parallel from ~128 KB). Measured in MobileNet
    # at 2 threads: the 7x7x1024 and 14x14 stride-2 layers ran 25-30% faster split than serial,
    # partly because the previous (parallel) layer left half of their input in the other core's L2.
    parallel = use_parallel(DW_BYTES_WEIGHT * 4 * (x.size + n * oh * ow * packed.c * packed.mult)) and rows > 1
    if parallel:
        k = numba.get_num_threads()
        step = -(-rows // (4 * k)) if rows >= 8 * k else -(-rows // k)
        nchunk = -(-rows // step)
    if packed.variant != "dw_generic":
        rows_fn, par_fn = _specialised(packed.kh, packed.kw, sw)
        if parallel:
            par_fn(x, packed.w, packed.b, out, sh, sw, pt, pl, code, c0, step, nchunk)
        else:
            rows_fn(x, packed.w, packed.b, out, sh, sw, pt, pl, code, c0, 0, rows)
    elif parallel:
        _dw_generic_par(x, packed.w, packed.b, out, sh, sw, pt, pl, packed.mult, code, c0, step, nchunk)
    else:
        _dw_generic_rows(x, packed.w, packed.b, out, sh, sw, pt, pl, packed.mult, code, c0, 0, rows)
