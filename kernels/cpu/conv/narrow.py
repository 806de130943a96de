"""Register tiles for a convolution's last, narrow block of output channels (32 or 48 wide).

The main tile (``tile.py``) is 6 pixels x 64 channels. A layer whose channel count
is not a multiple of 64 used to run its last block on that tile with the missing channels as
zero weights: InceptionV3's 32-channel stem convolutions did half their FMAs on padding and its
80/96/160-channel layers a quarter to a half of a block. Here a last block of 1-48 channels is
packed at its own width ``rw`` (32 for up to 32 channels, else 48) and runs a tile of the same 24
accumulators in another shape: 12 pixels x 32 channels (2 zmm per pixel) or 8 x 48 (3 zmm). Per k
it loads ``rw / 16`` weight vectors and broadcasts one input per pixel (0.58 / 0.46 loads per FMA
against the main tile's 0.42). A 16-wide tile would need 24 broadcasts per 24 FMAs, so 1-16
channels left over also take the 32-wide one.

Pixel offsets are computed into a small stack array and read once per kernel row. Bias, residual,
activation and ``out_c0`` are fused as in the main tile. A work item covers a pixel range that the
caller gives; its last tile repeats the range's last pixel rather than run past it (tiles of two
work items never overlap).
"""

import numpy as np
from numba import njit, types

from kernels.cpu.common import JIT, act_bounds, act_rows, is_smooth
from kernels.cpu.conv.tile import next_pixel
from kernels.cpu.stack import raw_view, stack_tile

NARROW_MR = {32: 12, 48: 8}       # pixels per tile for each block width

_acc32 = stack_tile(12, 32)
_acc48 = stack_tile(8, 48)
_offsets = stack_tile(1, 12, types.int64)


@njit(inline="always", **JIT)
def _pixel_offsets(m0, last, count, g):
    """Input offsets of pixels m0 .. m0 + count - 1 (clamped to ``last``) in a stack array."""
    ohw, ow_n, sh, sw, cin = g.out_hw, g.out_w, g.stride_h, g.stride_w, g.cin
    img, rowstride = g.image_len, g.row_len
    offs = _offsets()
    m = min(m0, last)
    n = m // ohw
    r = m - n * ohw
    oy = r // ow_n
    ox = r - oy * ow_n
    o = n * img + oy * sh * rowstride + ox * sw * cin
    offs[0, 0] = o
    for p in range(1, count):
        n, oy, ox, o = next_pixel(m0 + p, last, n, oy, ox, o, ohw, ow_n, sh, sw, img, rowstride, cin)
        offs[0, p] = o
    return offs


@njit(inline="always", **JIT)
def _narrow_epilogue(acc, rows, bias, out, res, ostride, m0, last, g, act, has_res):
    """out = act(acc + bias (+ residual)) for the tile's valid pixels and the block's real channels.
    (``tile._epilogue`` does the same for 6x64 tiles; sharing it made the 12x32 tile 7% slower
    on InceptionV3's 32>32 stem layer.)"""
    cout, c0 = g.cout, g.out_c0
    n0 = cout // 64 * 64
    nc = cout - n0
    lo, hi = act_bounds(act)
    bias_b = raw_view(bias, n0)
    for p in range(rows):
        m = m0 + p
        if m <= last:
            orow = raw_view(out, m * ostride + c0 + n0)
            if has_res:
                rrow = raw_view(res, m * cout + n0)
                for c in range(nc):
                    orow[c] = min(max(acc[p, c] + bias_b[c] + rrow[c], lo), hi)
            else:
                for c in range(nc):
                    orow[c] = min(max(acc[p, c] + bias_b[c], lo), hi)
    if is_smooth(act):          # (after the clamp, which clamps nothing then: see common.py)
        act_rows(out, m0 * ostride + c0 + n0, ostride, min(rows, last - m0 + 1), nc, act)


# The 12x32 tile is written out pixel by pixel, like the 6x64 one: with the loop over pixels outside
# the channel loop, LLVM fully unrolled the 32-trip channel loop first, then vectorised the pixel
# loop with gathers (20-30x slower). Its k step is two halves of 6 pixels, each reading its 6 inputs
# just before use: read all 12 first, the 12 broadcasts + 24 accumulators + 2 weight vectors did not
# fit the 32 zmm registers and every k step spilled and reloaded accumulators (the K = 27 stems ran
# 1.1-1.2x slower, ``tools/ab.py``; bench/RESULTS.md).
@njit(inline="always", **JIT)
def _tile_12x32(xf, wf, wbase, bias, out, res, ostride, m0, last, g, act, has_res):
    """Pixels [m0, m0 + 12) (clamped to ``last``) x 32 channels of the narrow block."""
    rowstride, kh, kk = g.row_len, g.kh, g.k_len
    offs = _pixel_offsets(m0, last, 12, g)
    acc = _acc32()
    for p in range(12):
        for c in range(32):
            acc[p, c] = np.float32(0.0)
    for i in range(kh):
        d = i * rowstride
        x0 = raw_view(xf, offs[0, 0] + d)
        x1 = raw_view(xf, offs[0, 1] + d)
        x2 = raw_view(xf, offs[0, 2] + d)
        x3 = raw_view(xf, offs[0, 3] + d)
        x4 = raw_view(xf, offs[0, 4] + d)
        x5 = raw_view(xf, offs[0, 5] + d)
        x6 = raw_view(xf, offs[0, 6] + d)
        x7 = raw_view(xf, offs[0, 7] + d)
        x8 = raw_view(xf, offs[0, 8] + d)
        x9 = raw_view(xf, offs[0, 9] + d)
        x10 = raw_view(xf, offs[0, 10] + d)
        x11 = raw_view(xf, offs[0, 11] + d)
        wi = raw_view(wf, wbase + i * kk * 32)
        for k in range(kk):
            wk = k * 32
            a0, a1, a2 = x0[k], x1[k], x2[k]
            a3, a4, a5 = x3[k], x4[k], x5[k]
            for c in range(32):
                w = wi[wk + c]
                acc[0, c] += a0 * w
                acc[1, c] += a1 * w
                acc[2, c] += a2 * w
                acc[3, c] += a3 * w
                acc[4, c] += a4 * w
                acc[5, c] += a5 * w
            a6, a7, a8 = x6[k], x7[k], x8[k]
            a9, a10, a11 = x9[k], x10[k], x11[k]
            for c in range(32):
                w = wi[wk + c]
                acc[6, c] += a6 * w
                acc[7, c] += a7 * w
                acc[8, c] += a8 * w
                acc[9, c] += a9 * w
                acc[10, c] += a10 * w
                acc[11, c] += a11 * w
    _narrow_epilogue(acc, 12, bias, out, res, ostride, m0, last, g, act, has_res)


@njit(inline="always", **JIT)
def _tile_8x48(xf, wf, wbase, bias, out, res, ostride, m0, last, g, act, has_res):
    """Pixels [m0, m0 + 8) (clamped to ``last``) x 48 channels of the narrow block. Here the loop over
    pixels may sit outside the channel loop (a 48-trip loop is vectorised, not unrolled first), and
    that form ran 1.5x faster than the one written out pixel by pixel."""
    rowstride, kh, kk = g.row_len, g.kh, g.k_len
    offs = _pixel_offsets(m0, last, 8, g)
    acc = _acc48()
    for p in range(8):
        for c in range(48):
            acc[p, c] = np.float32(0.0)
    for i in range(kh):
        d = i * rowstride
        wi = raw_view(wf, wbase + i * kk * 48)
        for k in range(kk):
            wk = k * 48
            for p in range(8):
                a = xf[np.uint64(offs[0, p] + d + k)]
                for c in range(48):
                    acc[p, c] += a * wi[np.uint64(wk + c)]
    _narrow_epilogue(acc, 8, bias, out, res, ostride, m0, last, g, act, has_res)


@njit(**JIT)
def narrow_item(xf, wf, bias, out, res, ostride, g, act, has_res, wbase, rw, p_lo, p_hi):
    """Output pixels [p_lo, p_hi) of the narrow block (``rw`` wide, packed [kh, kw * cin, rw] at
    ``wbase`` of ``wf``)."""
    last = p_hi - 1
    if rw == 32:
        for m0 in range(p_lo, p_hi, 12):
            _tile_12x32(xf, wf, wbase, bias, out, res, ostride, m0, last, g, act, has_res)
    else:
        for m0 in range(p_lo, p_hi, 8):
            _tile_8x48(xf, wf, wbase, bias, out, res, ostride, m0, last, g, act, has_res)
