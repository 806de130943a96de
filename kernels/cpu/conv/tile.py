"""The register-tile micro-kernel behind every Numba convolution (see ``__init__.py``).

One tile = ``MR`` output pixels x ``NR`` output channels, accumulated in a stack buffer that LLVM
promotes to 24 zmm registers. The stack buffer is the whole trick: a heap ``np.zeros`` accumulator
cannot be proven free of aliasing with the input/weight loads, so LLVM keeps storing it back every
iteration (measured 70-95 GFLOP/s/core on the 1x1 shapes of ResNet50); the stack tile runs 160-260.

A convolution over a zero-padded NHWC input is a sum over kernel rows ``i`` of a GEMM whose ``A``
rows are *overlapping* windows of the flattened input: for output pixel ``(n, oh, ow)`` and kernel
row ``i``, the ``kw * cin`` inputs it needs are contiguous, starting at
``((n * Hp + oh * sh + i) * Wp + ow * sw) * cin``. So one micro-kernel serves 1x1, 3x3, 7x7, 1x7,
7x1, any stride, and ``M`` (output pixels) is flattened over (n, oh, ow) so tiles never straddle a
row remainder; only the last tile of the whole output is partial (it recomputes the last pixel).
Weights are packed ``[cout_blocks, kh, kw * cin, NR]`` so the inner loop reads one contiguous
64-float row per ``k``.

Three things cost more than the FMAs until they were found (timings in bench/RESULTS.md):
  - a slice such as ``xf[o0 + d:]`` made inside a kernel carries its parent's reference count, so
    making and dropping the tile's ~20 row views called NRT_incref / NRT_decref each time: atomic
    updates of one counter that both threads share, ~450 of the ~630 cycles a tile spent outside
    its k loop. Input and weight rows are ``raw_view``s (``kernels/cpu/stack.py``) now, which own
    nothing, and the output rows slices of raw views (no atomics either; see ``_epilogue``);
  - a zeroing loop over the accumulator became a ``memset`` call followed by reloads: the first k
    now sets the accumulator (``acc = a * w``) and the loop runs from the second over views that
    start there (a loop from 1 left LLVM unsure the weight index was non-negative: gathers);
  - weights come from DRAM in a network (ResNet50 holds 100 MB of them): the first tile of each
    panel waited for it. Each tile now prefetches a slice of the next panel (``tile_item``).
"""

import numpy as np
from numba import njit

from kernels.cpu.common import JIT, act_bounds, act_rows, is_smooth
from kernels.cpu.stack import prefetch, raw_view, stack_tile, store_fence, stream16

MR = 6      # output pixels per tile (24 accumulators + 4 weight vectors + broadcasts fit 32 zmm)
NR = 64     # output channels per tile (4 zmm of 16 floats)
MC = 16     # tiles per work item: 96 output pixels share one hot weight panel

register_tile = stack_tile(MR, NR)     # the (MR, NR) accumulator, kept in zmm registers


@njit(inline="always", **JIT)
def _pixel_offset(m, last, ohw, ow_n, sh, sw, img, rowstride, cin):
    """Flat offset of the first input of output pixel m (clamped to the last pixel)."""
    if m > last:
        m = last
    n = m // ohw
    r = m - n * ohw
    oh = r // ow_n
    ow = r - oh * ow_n
    return n * img + oh * sh * rowstride + ow * sw * cin


@njit(inline="always", **JIT)
def next_pixel(m, last, n, oy, ox, o, ohw, ow_n, sh, sw, img, rowstride, cin):
    """(n, oy, ox, offset) of output pixel m given those of pixel m - 1; past the last pixel the
    last one is repeated (the partial last tile)."""
    if m > last:
        return n, oy, ox, o
    ox += 1
    if ox == ow_n:
        ox = 0
        oy += 1
        if oy * ow_n == ohw:
            oy = 0
            n += 1
    return n, oy, ox, n * img + oy * sh * rowstride + ox * sw * cin


@njit(**JIT)
def _tiles(xf, wf, bias, out, res, ostride, lo, hi, cb, g, act, has_res, i0, i1, nxt, seg, adv):
    """Tiles [lo, hi): output pixels [m0, m0+MR) for m0 = lo*MR, ... x channels [cb*NR, cb*NR+NR),
    summed over kernel rows [i0, i1): a pass that does not start at row 0 resumes from the partial
    sums in ``out``, one that does not end at the last row stores partial sums there; only the last
    pass applies the epilogue. Tile j of the range prefetches the ``seg`` floats of the next panel
    from ``nxt + j * seg``, ``adv`` floats per k (``tile_item``).

    One call per range, not per tile: a call passes each array as 7 scalars (~60 arguments here),
    which on the K = 32-64 1x1 layers cost about a tenth of a tile's FMAs.
    All arrays are flat ``raw_view``s (``out`` rows ``ostride`` apart): a slice of an array that owns
    a reference is reference-counted (an atomic NRT_incref / NRT_decref on a counter both threads
    share), and ~20 of them per tile cost ~400 cycles. The accumulator is set by the first k
    (a zeroing loop became a memset call followed by reloads)."""
    ohw, ow_n, sh, sw, cin = g.out_hw, g.out_w, g.stride_h, g.stride_w, g.cin
    img, rowstride, kh, kk, c0 = g.image_len, g.row_len, g.kh, g.k_len, g.out_c0
    last = g.pixels - 1
    n0 = cb * NR
    nc = min(NR, g.cout - n0)
    for mt in range(lo, hi):
        # one tile, written out here: as a call per tile it cost ~60 arguments; as an IR-inlined
        # function ResNet50's cold compile took 52.0-53.5 s against 48.6-49.6 before (written out: 50.7)
        m0 = mt * MR
        pf = nxt + (mt - lo) * seg
        if img == ohw * cin:
            # unpadded 1x1 stride 1: pixel m's inputs start at m * cin (no divisions: they cost as
            # much as the k loop when cin is 32-64)
            o0 = min(m0, last) * cin
            o1 = min(m0 + 1, last) * cin
            o2 = min(m0 + 2, last) * cin
            o3 = min(m0 + 3, last) * cin
            o4 = min(m0 + 4, last) * cin
            o5 = min(m0 + 5, last) * cin
        else:
            # divide once for the first pixel, then step along the row (the next five would cost 10
            # more integer divisions per tile)
            m = min(m0, last)
            n = m // ohw
            r = m - n * ohw
            oy = r // ow_n
            ox = r - oy * ow_n
            o0 = n * img + oy * sh * rowstride + ox * sw * cin
            n, oy, ox, o1 = next_pixel(m0 + 1, last, n, oy, ox, o0, ohw, ow_n, sh, sw, img, rowstride, cin)
            n, oy, ox, o2 = next_pixel(m0 + 2, last, n, oy, ox, o1, ohw, ow_n, sh, sw, img, rowstride, cin)
            n, oy, ox, o3 = next_pixel(m0 + 3, last, n, oy, ox, o2, ohw, ow_n, sh, sw, img, rowstride, cin)
            n, oy, ox, o4 = next_pixel(m0 + 4, last, n, oy, ox, o3, ohw, ow_n, sh, sw, img, rowstride, cin)
            n, oy, ox, o5 = next_pixel(m0 + 5, last, n, oy, ox, o4, ohw, ow_n, sh, sw, img, rowstride, cin)
        acc = register_tile()
        ks = 0
        if i0 > 0:
            for p in range(MR):
                prow = raw_view(out, min(m0 + p, last) * ostride + c0 + n0)
                for c in range(nc):
                    acc[p, c] = prow[c]
        else:
            ks = 1
            w0 = raw_view(wf, cb * kh * kk * NR)
            a0 = xf[o0]
            a1 = xf[o1]
            a2 = xf[o2]
            a3 = xf[o3]
            a4 = xf[o4]
            a5 = xf[o5]
            for c in range(NR):
                w = w0[c]
                acc[0, c] = a0 * w
                acc[1, c] = a1 * w
                acc[2, c] = a2 * w
                acc[3, c] = a3 * w
                acc[4, c] = a4 * w
                acc[5, c] = a5 * w
        for i in range(i0, i1):
            # (k counts from 0 over views that start at ks: with a loop from ks LLVM could not prove the
            # weight index non-negative and gathered every weight vector)
            d = i * rowstride + ks
            x0 = raw_view(xf, o0 + d)
            x1 = raw_view(xf, o1 + d)
            x2 = raw_view(xf, o2 + d)
            x3 = raw_view(xf, o3 + d)
            x4 = raw_view(xf, o4 + d)
            x5 = raw_view(xf, o5 + d)
            wi = raw_view(wf, ((cb * kh + i) * kk + ks) * NR)
            for k in range(kk - ks):
                prefetch(wf, pf + k * adv)
                a0 = x0[k]
                a1 = x1[k]
                a2 = x2[k]
                a3 = x3[k]
                a4 = x4[k]
                a5 = x5[k]
                wk = k * NR
                for c in range(NR):
                    w = wi[wk + c]
                    acc[0, c] += a0 * w
                    acc[1, c] += a1 * w
                    acc[2, c] += a2 * w
                    acc[3, c] += a3 * w
                    acc[4, c] += a4 * w
                    acc[5, c] += a5 * w
            pf += kk * adv
            ks = 0
        if i1 < kh:
            for p in range(MR):
                if m0 + p <= last:
                    prow = raw_view(out, (m0 + p) * ostride + c0 + n0)
                    for c in range(nc):
                        prow[c] = acc[p, c]
        else:
            _epilogue(acc, MR, bias, out, res, ostride, m0, last, n0, nc, c0, g.cout, act, has_res, g.stream)


@njit(inline="always", **JIT)
def _epilogue(acc, rows, bias, out, res, ostride, m0, last, n0, nc, c0, cout, act, has_res, stream):
    """out[m, c0 + n0 + c] = act(acc + bias (+ residual)) for the tile's valid pixels and channels.
A clamp activation (None, relu, relu6) is the clamp of the store loop; any other is applied by
``act_rows`` over the rows just stored (in L1), which costs the relu path one compare per tile.

    The output and residual rows are slices of the (raw) flat arrays, not ``raw_view``s: with raw
    views here, 1x1 layers whose outputs and residuals miss the cache (ResNet50 at batch 8) ran
    1.2-1.7x slower though the vector code looked the same; the slices' NRT_incref calls on a null
    meminfo (no atomics) are what differs.

    ``stream`` (``ConvGeom.stream``, set by ``dispatch.streams_output`` for outputs of >= 8 MB with
    aligned rows and a clamp activation): full 64-channel rows are finished in the tile and written
    with non-temporal stores. A normal store first reads the line it writes (read-for-ownership); outputs that fit
    L3 are read back from it by the next layer, so they keep plain stores."""
    lo, hi = act_bounds(act)
    bias_b = raw_view(bias, n0)
    if stream and nc == NR:
        # non-temporal: the finished row is built in the tile and streamed out (see ``stream16``;
        # the caller checked that every row start is 64-byte aligned)
        for p in range(rows):
            m = m0 + p
            if m <= last:
                ob = m * ostride + c0 + n0
                if has_res:
                    res_at = m * cout + n0
                    rrow = res[res_at:res_at + NR]
                    for c in range(NR):
                        acc[p, c] = min(max(acc[p, c] + bias_b[c] + rrow[c], lo), hi)
                else:
                    for c in range(NR):
                        acc[p, c] = min(max(acc[p, c] + bias_b[c], lo), hi)
                for j in range(0, NR, 16):
                    stream16(out, ob + j, acc, p * NR + j)
        return
    for p in range(rows):
        m = m0 + p
        if m <= last:
            ob = m * ostride + c0 + n0
            orow = out[ob:ob + nc]
            if has_res:
                res_at = m * cout + n0
                rrow = res[res_at:res_at + nc]
                for c in range(nc):
                    orow[c] = min(max(acc[p, c] + bias_b[c] + rrow[c], lo), hi)
            else:
                for c in range(nc):
                    orow[c] = min(max(acc[p, c] + bias_b[c], lo), hi)
    if is_smooth(act):
        act_rows(out, m0 * ostride + c0 + n0, ostride, min(rows, last - m0 + 1), nc, act)


_row_tile = stack_tile(1, NR)


@njit(inline="always", **JIT)
def row_tile(xf, wf, bias, out, res, ostride, m, cb, g, act, has_res):
    """One output pixel x NR channels: the tile for outputs of fewer than MR pixels (the classifier
    on a 1x1 map), where the 6-pixel tile would do 6x the FMAs for one row of weights."""
    rowstride, kh, kk, cout = g.row_len, g.kh, g.k_len, g.cout
    o = _pixel_offset(m, m, g.out_hw, g.out_w, g.stride_h, g.stride_w, g.image_len, rowstride, g.cin)
    acc = _row_tile()
    for c in range(NR):
        acc[0, c] = np.float32(0.0)
    for i in range(kh):
        xi = raw_view(xf, o + i * rowstride)
        wi = raw_view(wf, (cb * kh + i) * kk * NR)
        for k in range(kk):
            a = xi[k]
            wk = k * NR
            for c in range(NR):
                acc[0, c] += a * wi[wk + c]
    n0 = cb * NR
    _epilogue(acc, 1, bias, out, res, ostride, m, m, n0, min(NR, cout - n0), g.out_c0, cout, act, has_res, 0)


@njit(**JIT)
def row_items(xf, wf, bias, out, res, ostride, g, act, has_res, cb):
    """Every output pixel of an output of fewer than MR pixels x channel block cb, a ``row_tile``
    each (a function of its own: ``work_item`` calls it through its address)."""
    for m in range(g.pixels):
        row_tile(xf, wf, bias, out, res, ostride, m, cb, g, act, has_res)


@njit(**JIT)
def tile_item(xf, wf, bias, out, res, ostride, g, act, has_res, cb, lo, hi):
    """Tiles [lo, hi) x channel block cb, kernel rows in passes of ``g.rows_per_pass``. While its
    tiles compute on one weight panel they prefetch the panel that comes next in memory (the next
    kernel rows of the block, or the next block's, which is the next work item of the same thread
    under static scheduling): tile j of n takes the j-th slice of it, ``adv`` floats per k. Without
    this the first tile of every panel waits on DRAM (a network's weights do not fit L3).
    A function of its own, not inlined into the drivers: inlined into the serial driver, LLVM kept
    storing the accumulators to the stack on every k once the loop held a prefetch."""
    kh, kk, per_pass = g.kh, g.k_len, g.rows_per_pass
    n = hi - lo
    adv = max(1, NR // n)
    for i0 in range(0, kh, per_pass):
        i1 = min(kh, i0 + per_pass)
        nxt = (cb * kh + i1) * kk * NR
        if nxt >= wf.size:
            nxt = 0
        seg = ((i1 - i0) * kk * NR + n - 1) // n
        _tiles(xf, wf, bias, out, res, ostride, lo, hi, cb, g, act, has_res, i0, i1, nxt, seg, adv)
    if g.stream:
        store_fence()
