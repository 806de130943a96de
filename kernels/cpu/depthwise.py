"""Depthwise 2-D convolution (MobileNet, Xception) as Numba kernels.

out[n, oy, ox, c*M + m] = act(b[c*M + m] + sum_ij x[n, oy*sh - pt + i, ox*sw - pl + j, c] * w[i, j, c, m])

What bounds it: 2*kh*kw FLOPs per output against 4 bytes in and 4 bytes out per element, i.e.
~2.3 FLOP/byte for 3x3 stride 1. The layers fit in L2, so the limit should be the core's vector
loads: a 3x3 output vector done pixel by pixel needs 9 weight + 9 input loads for 9 FMAs (9
cycles/vector at 2 loads per cycle, measured so in L1), the 4-pixel tile 27 loads for 36 FMAs.
The tile still runs at 2-3x its load bound (10-15 cycles per output vector); what else limits it
is not known (no hardware counters in this VM). Bytes counted by the bench: 4 * (input + output +
weights).

Variants (``packed.variant``, set to what the latest call ran):
  ``dw{kh}x{kw}_m1``  multiplier 1, a window in SPECIALISED_WINDOWS (3x3, 5x5) and a map at least as
                      large as the window: the MobileNet / Xception case. The kernel is generated
                      for its window size and horizontal stride, so the taps are constants. 3x3:
                      interior runs of TP = 4 output pixels go through ``_dw3x3_tiles``: per 16
                      channels, 9 weight vectors serve 4 pixels, at stride 1 the 18 input vectors
                      serve 36 FMAs, and the 4 sums are independent chains. Other pixels: one pixel
                      at a time, its sum in a register. Border pixels need no branch or padded
                      copy: their window is clamped inside the input and the weights shifted to
                      match (``edge_weights``), so they run the same code as the interior.
                      Work items are (output row, 64-channel chunk) pairs, split evenly over the
                      threads; chunk-major above 256 channels so that a chunk's (shifted) weights
                      stay in L1 for all its rows.
  ``dw_generic``      any window and multiplier: the output channel vector of a pixel is kept in
                      L1 and each valid tap is folded into it.
The same window kernel is the first half of ``depthwise_pointwise.py`` (depthwise fused with the
1x1 convolution after it), which can also apply an activation to the inputs as it loads them.

Numba leaves LLVM's SLP vectoriser off, so only loops are vectorised: the tile keeps the channel
loop innermost (64 channels per chunk, too long to be fully unrolled before vectorisation), writes
to a stack tile (no runtime alias checks; the activation is applied on the way out, as a plain copy
loop became a memcpy call per pixel), and indexes with unsigned offsets (a signed index gets
Python's negative-index wraparound select, which LLVM turned into gathers). All arrays are flat
``raw_view``s: slices would be reference-counted per tile.

Bench: ``python bench/bench_kernels.py`` (MobileNet's depthwise layers).
"""

from types import SimpleNamespace

import numba
import numpy as np
from numba import njit, prange, types

from kernels import ACT_NONE, ACT_RELU, ACT_RELU6, aligned_copy, aligned_zeros, conv_output_size
from kernels.cpu.common import (
    JIT,
    PJIT,
    act_bounds,
    act_rows,
    act_span,
    epilogue_code,
    is_smooth,
    thread_chunks,
    use_parallel,
)
from kernels.cpu.native import array1d, item_address
from kernels.cpu.stack import call_native, raw_view, stack_tile


@njit(**JIT)
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
    if is_smooth(act):
        act_span(o, o, cm, act)
    elif act != ACT_NONE:
        lo, hi = act_bounds(act)
        for q in range(cm):
            o[q] = min(max(o[q], lo), hi)


@njit(**JIT)
def _dw_generic_rows(x, w, b, out, sh, sw, pt, pl, mult, act, c0, r0, r1):
    oh, ow = out.shape[1], out.shape[2]
    cm = x.shape[3] * mult
    for r in range(r0, r1):
        n = r // oh
        oy = r - n * oh
        for ox in range(ow):
            _dw_pixel_generic(x, w, b, out[n, oy, ox, c0:c0 + cm], n, oy * sh - pt, ox * sw - pl, mult, act)


@njit(**PJIT)
def _dw_generic_par(x, w, b, out, sh, sw, pt, pl, mult, act, c0, step, nchunk):
    rows = out.shape[0] * out.shape[1]
    for k in prange(nchunk):
        _dw_generic_rows(x, w, b, out, sh, sw, pt, pl, mult, act, c0, k * step, min(rows, (k + 1) * step))


_u = np.uint64   # an index that is not wraparound-checked: see _dw3x3_tiles


@njit(inline="always")
def _ia(v, IA):
    """The activation applied to an input as it is loaded (IA, a constant: None, relu or relu6):
    Xception's ReLU before each separable conv, whose input is also the un-activated residual,
    costs no pass of its own. Padding stays zero (relu(0) = 0). Three branches, not apply_act's
    ten: it is inlined at every load of the tiles, and Numba's inlining copies the callee's IR
    each time (compile time grows with callee size x call sites). As an ordinary call that LLVM
    inlines (the tile still had its 36 zmm FMAs) MobileNet ran 2% slower (B/A 0.978 for this
    version, 100 paired turns), for ~0.3 s less compilation: kept inlined."""
    if IA == ACT_RELU:
        return max(v, np.float32(0.0))
    if IA == ACT_RELU6:
        return min(max(v, np.float32(0.0)), np.float32(6.0))
    return v

TP = 4     # output pixels per 3x3 tile (one row, adjacent columns)
TQ = 64    # channels per tile chunk: 4 zmm per pixel; a 64-trip loop is vectorised, not fully unrolled


# The tile's vector loop stores into this stack buffer rather than into ``out``: with 4 output rows
# x 12 input streams LLVM's runtime overlap checks exceed its limit and it would run scalar.
_tile_sums = stack_tile(TP, TQ)


@njit(**JIT)
def _dw3x3_tiles(xf, wf, b, of, base0, rowlen, c, nq, obase0, ostride, lo, hi, ntiles, SW, IA):
    """``ntiles`` runs of TP adjacent output pixels of one row, 3x3 window, channels [0, nq) of the
    views passed in. A call per row, not per tile: the tile is not inlined (compile time), and a
    call takes ~40 scalar arguments (an array is seven); with a call per 4 pixels MobileNet's fused
    layers had profiled 1.1-1.4x slower than with the inlined tile (bench/RESULTS.md).

    Each weight vector is loaded once for TP pixels and (stride 1) each input vector feeds up to 3
    of them; the TP sums are independent FMA chains. Indices are ``k + q`` with k a hoisted
    multiple of c, made unsigned (``_u``): a signed index gets Python's negative-index wraparound
    select, which LLVM turned into gathers. All arrays are flat ``raw_view``s (a slice per tile
    would be reference-counted: atomic NRT calls that both threads contend on).
    """
    tmp = _tile_sums()
    k1, k2, k3, k4, k5, k6, k7, k8 = c, 2 * c, 3 * c, 4 * c, 5 * c, 6 * c, 7 * c, 8 * c
    s1, s2, s3 = SW * c, 2 * SW * c, 3 * SW * c
    for t in range(ntiles):
        base = base0 + t * (TP * SW * c)
        obase = obase0 + t * (TP * ostride)
        x0 = raw_view(xf, base)
        x1 = raw_view(xf, base + rowlen)
        x2 = raw_view(xf, base + 2 * rowlen)
        for q in range(nq):
            a0 = b[_u(q)]
            a1 = a0
            a2 = a0
            a3 = a0
            w0, w1, w2 = wf[_u(q)], wf[_u(k1 + q)], wf[_u(k2 + q)]
            a0 += _ia(x0[_u(q)], IA) * w0 + _ia(x0[_u(k1 + q)], IA) * w1 + _ia(x0[_u(k2 + q)], IA) * w2
            a1 += _ia(x0[_u(s1 + q)], IA) * w0 + _ia(x0[_u(s1 + k1 + q)], IA) * w1 + _ia(x0[_u(s1 + k2 + q)], IA) * w2
            a2 += _ia(x0[_u(s2 + q)], IA) * w0 + _ia(x0[_u(s2 + k1 + q)], IA) * w1 + _ia(x0[_u(s2 + k2 + q)], IA) * w2
            a3 += _ia(x0[_u(s3 + q)], IA) * w0 + _ia(x0[_u(s3 + k1 + q)], IA) * w1 + _ia(x0[_u(s3 + k2 + q)], IA) * w2
            w0, w1, w2 = wf[_u(k3 + q)], wf[_u(k4 + q)], wf[_u(k5 + q)]
            a0 += _ia(x1[_u(q)], IA) * w0 + _ia(x1[_u(k1 + q)], IA) * w1 + _ia(x1[_u(k2 + q)], IA) * w2
            a1 += _ia(x1[_u(s1 + q)], IA) * w0 + _ia(x1[_u(s1 + k1 + q)], IA) * w1 + _ia(x1[_u(s1 + k2 + q)], IA) * w2
            a2 += _ia(x1[_u(s2 + q)], IA) * w0 + _ia(x1[_u(s2 + k1 + q)], IA) * w1 + _ia(x1[_u(s2 + k2 + q)], IA) * w2
            a3 += _ia(x1[_u(s3 + q)], IA) * w0 + _ia(x1[_u(s3 + k1 + q)], IA) * w1 + _ia(x1[_u(s3 + k2 + q)], IA) * w2
            w0, w1, w2 = wf[_u(k6 + q)], wf[_u(k7 + q)], wf[_u(k8 + q)]
            a0 += _ia(x2[_u(q)], IA) * w0 + _ia(x2[_u(k1 + q)], IA) * w1 + _ia(x2[_u(k2 + q)], IA) * w2
            a1 += _ia(x2[_u(s1 + q)], IA) * w0 + _ia(x2[_u(s1 + k1 + q)], IA) * w1 + _ia(x2[_u(s1 + k2 + q)], IA) * w2
            a2 += _ia(x2[_u(s2 + q)], IA) * w0 + _ia(x2[_u(s2 + k1 + q)], IA) * w1 + _ia(x2[_u(s2 + k2 + q)], IA) * w2
            a3 += _ia(x2[_u(s3 + q)], IA) * w0 + _ia(x2[_u(s3 + k1 + q)], IA) * w1 + _ia(x2[_u(s3 + k2 + q)], IA) * w2
            tmp[0, q] = a0
            tmp[1, q] = a1
            tmp[2, q] = a2
            tmp[3, q] = a3
        # the activation is applied on the way out: a plain copy loop becomes a memcpy call
        for p in range(TP):
            o = raw_view(of, obase + p * ostride)
            for q in range(nq):
                o[q] = min(max(tmp[p, q], lo), hi)


_pixel_sums = stack_tile(1, TQ)


@njit(**JIT)
def _dw_pixels(xf, wf, b, of, base0, rowlen, c, nq, obase0, lo, hi, npx, xstep, ostep, KH, KW, IA):
    """``npx`` output pixels (the input window of pixel p starts ``p * xstep`` after ``base0``, its
    output ``p * ostep`` after ``obase0``), channels [0, nq) of the views passed in, the KH x KW sum
    in a register: full windows and the (possibly shifted) weights ``wf``. A call per run of
    pixels, not per pixel (see _dw3x3_tiles). The sums go to a stack tile first: stored straight
    into ``out`` next to 2 * KH * KW input streams, LLVM's runtime overlap checks exceed its limit
    and the loop stays scalar."""
    tmp = _pixel_sums()
    for p in range(npx):
        base = base0 + p * xstep
        for q in range(nq):
            acc = b[_u(q)]
            for i in range(KH):
                for j in range(KW):
                    acc += _ia(xf[_u(base) + _u(i * rowlen + j * c + q)], IA) * wf[_u((i * KW + j) * c + q)]
            tmp[0, q] = acc
        o = raw_view(of, obase0 + p * ostep)
        for q in range(nq):
            o[q] = min(max(tmp[0, q], lo), hi)


@njit(**JIT)
def dw_rows_window(xf, h, wd, c, wall, vslot, b, of, oh, ow, ostride, KH, KW, SW, IA, sh, sw, pt, pl, act,
                   c0, r_lo, r_hi, rbase, i0, i1):
    """Work items i0..i1 over output rows [r_lo, r_hi) (flattened over n, oy; see below), multiplier 1.
    Called with KH, KW, SW and IA as constants (the closures of ``_specialised`` and
    ``depthwise_pointwise``): Numba then compiles one specialisation per combination, those four typed
    as literals, which LLVM sees as constants, so the tap loops unroll and the channel loop
    vectorises with the sum in a register. Every other int argument must reach it as a run-time
    int64 (``np.int64(0)``, not ``0``) or it becomes a literal of its own specialisation. Being a call,
    not inlined, it is compiled once for the serial and the parallel drivers (whose prange bodies
    stay one call: parfor passes over an inlined body took most of a cold start's compile time).
    SW > 0 (3x3 only, SW == sw): runs of TP interior pixels go through _dw3x3_tiles; IA: an activation
    on the inputs (``_ia``). Arrays are flat: ``xf`` the (n, h, wd, c) input, ``of`` the output, whose
    row r is written at row r - rbase (rows ow * ostride apart).

    Border pixels read a full window too: it is clamped inside the input and the weights are
    shifted to match (window tap (i, j) takes weight (i - e, j - d), zero where that falls off the
    kernel: ``wall[vslot[e, d]]``), so no pixel takes a per-tap branch and no padded copy is made."""
    nw = KH * KW * c
    rowlen = wd * c
    # Interior columns: every tap inside the input.
    ox_lo = min(ow, (pl + sw - 1) // sw)
    ox_hi = max(ox_lo, min(ow, (wd - KW + pl) // sw + 1))
    ox_t = ox_lo + (ox_hi - ox_lo) // TP * TP if SW > 0 else ox_lo
    lo, hi = act_bounds(act)
    # work items (channel chunk, output row) in chunk-major order: a chunk's weights in all their
    # shifted versions (9 x 9 x TQ floats for 3x3) stay in L1 while every row and pixel uses them;
    # with pixels outermost the shifted copies of all channels (330 KB at 1024 channels) streamed
    # from L2 per pixel. Threads take equal runs of items (rows x chunks, so 19 rows or 7 rows
    # still split evenly).
    rows = r_hi - r_lo
    nqc = (c + TQ - 1) // TQ
    # up to 256 channels the shifted weights of all channels fit L1 and rows go outermost (each
    # input row streams in once, not once per chunk: 56x56x128 ran 1.12x slower chunk-major)
    cmajor = c > 256
    one = np.int64(1)       # one border pixel per call, as a run-time int (a literal 1 would specialise)
    for it in range(i0, i1):
        if cmajor:
            qc = it // rows
            r = r_lo + it - qc * rows
        else:
            r = r_lo + it // nqc
            qc = it - (r - r_lo) * nqc
        q0 = qc * TQ
        nq = min(TQ, c - q0)
        xq = raw_view(xf, q0)
        oq = raw_view(of, q0)
        bq = raw_view(b, q0)
        n = r // oh
        oy = r - n * oh
        y0 = oy * sh - pt
        y0c = min(max(y0, 0), h - KH)
        e = y0 - y0c + KH - 1
        xrow = (n * h + y0c) * rowlen
        orow = (r - rbase) * ow * ostride + c0
        wmid = raw_view(wall, vslot[e, KW - 1] * nw + q0)
        for ox in range(ox_lo):
            x0 = ox * sw - pl
            x0c = min(max(x0, 0), wd - KW)
            _dw_pixels(xq, raw_view(wall, vslot[e, x0 - x0c + KW - 1] * nw + q0), bq, oq, xrow + x0c * c, rowlen,
                       c, nq, orow + ox * ostride, lo, hi, one, c, ostride, KH, KW, IA)
        if SW > 0 and ox_t > ox_lo:
            _dw3x3_tiles(xq, wmid, bq, oq, xrow + (ox_lo * SW - pl) * c, rowlen, c, nq, orow + ox_lo * ostride,
                         ostride, lo, hi, (ox_t - ox_lo) // TP, SW, IA)
        if ox_hi > ox_t:
            _dw_pixels(xq, wmid, bq, oq, xrow + (ox_t * sw - pl) * c, rowlen, c, nq, orow + ox_t * ostride, lo, hi,
                       ox_hi - ox_t, sw * c, ostride, KH, KW, IA)
        for ox in range(ox_hi, ow):
            x0 = ox * sw - pl
            x0c = min(max(x0, 0), wd - KW)
            _dw_pixels(xq, raw_view(wall, vslot[e, x0 - x0c + KW - 1] * nw + q0), bq, oq, xrow + x0c * c, rowlen,
                       c, nq, orow + ox * ostride, lo, hi, one, c, ostride, KH, KW, IA)
        if is_smooth(act):          # a smooth activation over the item's output row (in L1), after the clamp
            act_rows(oq, orow, ostride, ow, nq, act)


# Windows that get a compiled interior (3x3: MobileNet, Xception; 5x5: MobileNetV2-style nets);
# other sizes run dw_generic rather than compiling a kernel per window at first use.
SPECIALISED_WINDOWS = {(3, 3), (5, 5)}
TILED_STRIDES = (1, 2)  # 3x3 strides with a TP-pixel tile
DW_BYTES_WEIGHT = 4
_SPECIALISED = {}


def _specialised(kh, kw, sw):
    """Serial and parallel drivers with the window size (and, for 3x3 tiles, the stride) baked in as
    constants: each is one call of ``dw_rows_window`` per thread's run of work items, with the same
    argument types, so both use the same compiled specialisation of it, and both call it through its
    address (their last argument; ``stack.call_native``) rather than compiling it in again.

    The closures capture only ints: Numba's on-disk cache keys a closure by its cell contents, and
    a captured dispatcher pickles with a per-process uuid (a fresh key, a recompile and a growing
    index every run); the module-level ``dw_rows_window`` is a global, not a cell.
    """
    SW = sw if (kh, kw) == (3, 3) and sw in TILED_STRIDES else 0
    key = (kh, kw, SW)
    if key in _SPECIALISED:
        return _SPECIALISED[key]
    KH, KW = kh, kw

    @njit(**JIT)
    def rows_fn(x, wvar, vslot, b, out, sh, sw, pt, pl, act, c0, threads, window):
        n, h, wd, c = x.shape
        oh, ow, ostride = out.shape[1], out.shape[2], out.shape[3]
        items = n * oh * ((c + TQ - 1) // TQ)
        xf, wf, bf, of = raw_view(x, 0), raw_view(wvar, 0), raw_view(b, 0), raw_view(out, 0)
        for k in range(threads):
            call_native(window, dw_rows_window, xf, h, wd, c, wf, vslot, bf, of, oh, ow, ostride, KH, KW, SW, 0, sh,
                        sw, pt, pl, act, c0, np.int64(0), n * oh, np.int64(0), k * items // threads,
                        (k + 1) * items // threads)

    @njit(**PJIT)
    def par_fn(x, wvar, vslot, b, out, sh, sw, pt, pl, act, c0, threads, window):
        n, h, wd, c = x.shape
        oh, ow, ostride = out.shape[1], out.shape[2], out.shape[3]
        items = n * oh * ((c + TQ - 1) // TQ)
        xf, wf, bf, of = raw_view(x, 0), raw_view(wvar, 0), raw_view(b, 0), raw_view(out, 0)
        for kk in prange(threads):
            k = np.int64(kk)        # int64 as in rows_fn: one specialisation of dw_rows_window
            call_native(window, dw_rows_window, xf, h, wd, c, wf, vslot, bf, of, oh, ow, ostride, KH, KW, SW, 0, sh,
                        sw, pt, pl, act, c0, np.int64(0), n * oh, np.int64(0), k * items // threads,
                        (k + 1) * items // threads)

    _SPECIALISED[key] = (rows_fn, par_fn, window_types(KH, KW, SW, 0))
    return _SPECIALISED[key]


_WINDOW_TYPES = {}


def window_types(kh, kw, sw, ia):
    """The argument types of ``dw_rows_window`` as the drivers call it (window, stride and input
    activation as literals), given the type of ``vslot``: for ``item_address``. One function per
    combination (``item_address`` memoises by it)."""
    key = (kh, kw, sw, ia)
    if key not in _WINDOW_TYPES:
        lits = tuple(types.literal(v) for v in key)

        def make(vslot):
            return ((array1d,) + (types.int64,) * 3 + (array1d, vslot, array1d, array1d) + (types.int64,) * 3 + lits
                    + (types.int64,) * 11)
        _WINDOW_TYPES[key] = make
    return _WINDOW_TYPES[key]


def edge_weights(w, h, wd, stride, pt, pl, oh, ow):
    """(wvar, vslot) for a layer geometry: ``wvar[vslot[e + KH - 1, d + KW - 1]]`` holds the window
    weights shifted by (e, d) rows / columns with zeros shifted in; e and d are what clamping a
    border window inside the input moves it by. Only the shifts that occur are built."""
    kh, kw, c = w.shape
    sh, sw = stride
    es = sorted({oy * sh - pt - min(max(oy * sh - pt, 0), h - kh) for oy in range(oh)})
    ds = sorted({ox * sw - pl - min(max(ox * sw - pl, 0), wd - kw) for ox in range(ow)} | {0})
    vslot = np.zeros((2 * kh - 1, 2 * kw - 1), np.int64)
    wvar = aligned_zeros((len(es) * len(ds), kh, kw, c))
    for a, e in enumerate(es):
        for bi, d in enumerate(ds):
            slot = a * len(ds) + bi
            vslot[e + kh - 1, d + kw - 1] = slot
            for i in range(kh):
                for j in range(kw):
                    if 0 <= i - e < kh and 0 <= j - d < kw:
                        wvar[slot, i, j] = w[i - e, j - d]
    return wvar, vslot


def pack_depthwise(kernel, bias):
    """kernel (kh, kw, c, mult), bias (c*mult,) | None -> packed weights (kh, kw, c*mult) + bias."""
    kernel = np.asarray(kernel, dtype=np.float32)
    kh, kw, c, mult = kernel.shape
    w = aligned_copy(kernel.reshape(kh, kw, c * mult))
    b = aligned_zeros(c * mult) if bias is None else aligned_copy(bias, np.float32)
    variant = f"dw{kh}x{kw}_m1" if mult == 1 and (kh, kw) in SPECIALISED_WINDOWS else "dw_generic"
    return SimpleNamespace(w=w, b=b, kh=kh, kw=kw, c=c, mult=mult, variant=variant, fast=variant,
                           edges={})


def depthwise_conv2d(x, packed, out, stride, pad, act=None, out_c0=0):
    """Write act(depthwise(x) + bias) into channels [out_c0, out_c0 + c*mult) of out."""
    sh, sw = (int(v) for v in stride)
    pt, pb, pl, pr = (int(v) for v in pad)
    n, h, w, _ = x.shape
    oh = conv_output_size(h, packed.kh, sh, pt, pb)
    ow = conv_output_size(w, packed.kw, sw, pl, pr)
    assert out.shape[1] == oh and out.shape[2] == ow
    code, c0 = epilogue_code(act), int(out_c0)
    rows = n * oh
    # A 3x3 depthwise does ~2.25 FLOP per byte, several times an element-wise op's work per byte, so
    # its bytes count 4x against the shared threshold (parallel from ~128 KB). Measured in MobileNet
    # at 2 threads: the 7x7x1024 and 14x14 stride-2 layers ran 25-30% faster split than serial,
    # partly because the previous (parallel) layer left half of their input in the other core's L2.
    parallel = use_parallel(DW_BYTES_WEIGHT * 4 * (x.size + n * oh * ow * packed.c * packed.mult)) and rows > 1
    # the compiled window kernel clamps border windows inside the input: it needs one to fit
    packed.variant = packed.fast if h >= packed.kh and w >= packed.kw else "dw_generic"
    if packed.variant != "dw_generic":
        key = (h, w, sh, sw, pt, pl)
        edges = packed.edges.get(key)
        if edges is None:
            edges = packed.edges[key] = edge_weights(packed.w, h, w, (sh, sw), pt, pl, oh, ow)
        wvar, vslot = edges
        rows_fn, par_fn, make_types = _specialised(packed.kh, packed.kw, sw)
        window = item_address(dw_rows_window, make_types, vslot)
        if parallel:
            par_fn(x, wvar, vslot, packed.b, out, sh, sw, pt, pl, code, c0, numba.get_num_threads(), window)
        else:
            rows_fn(x, wvar, vslot, packed.b, out, sh, sw, pt, pl, code, c0, 1, window)
    elif parallel:
        _dw_generic_par(x, packed.w, packed.b, out, sh, sw, pt, pl, packed.mult, code, c0,
                        *thread_chunks(rows, per_thread=4))
    else:
        _dw_generic_rows(x, packed.w, packed.b, out, sh, sw, pt, pl, packed.mult, code, c0, 0, rows)
