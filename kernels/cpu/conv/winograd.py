"""Winograd F(4x4, 3x3) convolution for 3x3 stride-1 layers (NHWC float32, fused epilogue).

Each 4x4 block of output pixels ("tile") comes from a 6x6 input patch ``d``:
``Y = A^T [ (G g G^T) * (B^T d B) ] A``, so the 9 * 16 = 144 MACs per tile and channel pair of a
direct convolution become 36 (4x fewer), at the price of an input transform (per tile and input
channel) and an output transform (per tile and output channel), both O(cin + cout) not O(cin * cout).

Work item = a block of <= ``TB`` tiles (starting at a multiple of 6) x a group of 64-wide output-channel
blocks (groups > 1 only when there are fewer blocks than threads):
    1. input transform of the block's tiles into ``V[36, TB, cin]`` (per-thread scratch); with
       channel groups, instead one parallel loop transforms every tile once into a shared V first
    2. for each channel block, for each of the 36 points: ``M[p] = V[p] @ U[p]`` with the 6x64
       register tile of ``tile.py`` (weights ``U`` packed ``[cout/64, 36, cin, 64]``)
    3. output transform of ``M[36, TB, 64]`` fused with bias, residual, activation and ``out_c0``.
Every weight panel ``U[cb, p]`` is used by all TB tiles of the block (2*TB FLOPs per float read
from L3/DRAM), which is why small maps (few tiles) with many channels stay on the direct kernel:
there the Winograd weights (4x the direct ones) no longer fit the cache and the layer turns
memory-bound. Padding: the input is copied into a zero-bordered scratch that also covers the
ragged last tile row/column, so the transforms are branch-free; only the store checks bounds.

Numerics: the transforms use the points 0, +-1, +-2 (entries up to 8 in A, 5 in B); the error per
layer, relative to the largest output, is 4-8e-6 for cin 64-128 and 1.1-1.7e-5 for cin 256-512
(the direct kernel: ~1e-6), so tests hold it to 3e-5; whole networks still match Keras to <= 1e-4
(tests/test_networks_keras.py; VGG16/19 logits differ from ONNX Runtime by 4.0e-6 / 2.9e-6 in
bench/compare_ort.py).

Code: ``winograd_conv.inspect_asm()`` (uncached compile) has 134 ``vfmadd*ps`` on zmm and none on
ymm/xmm; the 6x64 GEMM tile is the same 24-FMA k loop as the direct kernel.

Timings against the direct kernel per layer shape: bench/RESULTS.md.
"""

import numba
import numpy as np
from numba import njit, prange, types

from kernels import aligned_empty, aligned_zeros
from kernels.cpu.common import JIT, PJIT, act_bounds, act_rows, is_smooth
from kernels.cpu.conv.geometry import WinogradGeom
from kernels.cpu.conv.tile import MR, NR, register_tile
from kernels.cpu.native import geom_type, item_address
from kernels.cpu.stack import call_native, raw_view

TILE = 4                # output pixels per tile side
ALPHA = TILE + 2        # input patch side (6)
POINTS = ALPHA * ALPHA  # 36 transform points
TB_MAX = 48             # tiles per work item: 48 x 36 x 64 floats of M fit L2

_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)


def transform_weights(kernel):
    """HWIO (3, 3, cin, cout) -> U = G g G^T packed [ceil(cout/NR), 36, cin, NR] (zero-padded
    channels). All 36 points at once as one float64 product kron(G, G) @ g over the 9 taps: point
    a * 6 + b takes sum_ij G[a, i] G[b, j] g[i, j]; one block of NR output channels at a time, written
    straight into its place (the whole layer's float64 product, then a padded copy and a transposed
    one, took 2-4x as long: ~1 s of VGG16's first call)."""
    kernel = np.asarray(kernel)
    _, _, cin, cout = kernel.shape
    nb = -(-cout // NR)
    kron = np.kron(_G, _G)
    taps = kernel.reshape(9, cin, cout)
    u = aligned_empty((nb, POINTS, cin, NR))
    for b in range(nb):
        c0, c1 = b * NR, min(cout, b * NR + NR)
        block = kron @ taps[:, :, c0:c1].reshape(9, -1).astype(np.float64)
        u[b, :, :, :c1 - c0] = block.reshape(POINTS, cin, c1 - c0)
        u[b, :, :, c1 - c0:] = 0.0      # only the last block has padded channels: no zero-fill of the rest
    return u


@njit(**JIT)
def _input_transform(xp, v, tmp, t0, r0, r1, th, tw):
    """V[p, r, :] = (B^T d B)[p] for the 6x6 patch of tile t0 + r, r in r0 .. r1-1. Rows are flat
    ``raw_view``s (72 reference-counted slices per tile otherwise)."""
    hp, wp, cin = xp.shape[1], xp.shape[2], xp.shape[3]
    tb = v.shape[1]
    xf = raw_view(xp, 0)
    vf = raw_view(v, 0)
    tf = raw_view(tmp, 0)
    tiles_img = th * tw
    for r in range(r0, r1):
        t = t0 + r
        n = t // tiles_img
        q = t - n * tiles_img
        ty = q // tw
        y0 = (ty * TILE)
        x0 = (q - ty * tw) * TILE
        for i in range(ALPHA):                  # rows: tmp[i, j] = sum_k B^T[j, k] d[i, k]
            base = ((n * hp + y0 + i) * wp + x0) * cin
            d0 = raw_view(xf, base)
            d1 = raw_view(xf, base + cin)
            d2 = raw_view(xf, base + 2 * cin)
            d3 = raw_view(xf, base + 3 * cin)
            d4 = raw_view(xf, base + 4 * cin)
            d5 = raw_view(xf, base + 5 * cin)
            tb0 = i * ALPHA * cin
            t0r = raw_view(tf, tb0)
            t1r = raw_view(tf, tb0 + cin)
            t2r = raw_view(tf, tb0 + 2 * cin)
            t3r = raw_view(tf, tb0 + 3 * cin)
            t4r = raw_view(tf, tb0 + 4 * cin)
            t5r = raw_view(tf, tb0 + 5 * cin)
            for c in range(cin):
                t0r[c] = np.float32(4.0) * d0[c] - np.float32(5.0) * d2[c] + d4[c]
                t1r[c] = d3[c] + d4[c] - np.float32(4.0) * (d1[c] + d2[c])
                t2r[c] = d4[c] - d3[c] + np.float32(4.0) * (d1[c] - d2[c])
                t3r[c] = d4[c] - d2[c] + np.float32(2.0) * (d3[c] - d1[c])
                t4r[c] = d4[c] - d2[c] + np.float32(2.0) * (d1[c] - d3[c])
                t5r[c] = np.float32(4.0) * d1[c] - np.float32(5.0) * d3[c] + d5[c]
        pstride = tb * cin
        for j in range(ALPHA):                  # columns: V[6 a + j] = sum_i B^T[a, i] tmp[i, j]
            e0 = raw_view(tf, j * cin)
            e1 = raw_view(tf, (ALPHA + j) * cin)
            e2 = raw_view(tf, (2 * ALPHA + j) * cin)
            e3 = raw_view(tf, (3 * ALPHA + j) * cin)
            e4 = raw_view(tf, (4 * ALPHA + j) * cin)
            e5 = raw_view(tf, (5 * ALPHA + j) * cin)
            vb = (j * tb + r) * cin
            v0 = raw_view(vf, vb)
            v1 = raw_view(vf, vb + 6 * pstride)
            v2 = raw_view(vf, vb + 12 * pstride)
            v3 = raw_view(vf, vb + 18 * pstride)
            v4 = raw_view(vf, vb + 24 * pstride)
            v5 = raw_view(vf, vb + 30 * pstride)
            for c in range(cin):
                v0[c] = np.float32(4.0) * e0[c] - np.float32(5.0) * e2[c] + e4[c]
                v1[c] = e3[c] + e4[c] - np.float32(4.0) * (e1[c] + e2[c])
                v2[c] = e4[c] - e3[c] + np.float32(4.0) * (e1[c] - e2[c])
                v3[c] = e4[c] - e2[c] + np.float32(2.0) * (e3[c] - e1[c])
                v4[c] = e4[c] - e2[c] + np.float32(2.0) * (e1[c] - e3[c])
                v5[c] = np.float32(4.0) * e1[c] - np.float32(5.0) * e3[c] + e5[c]


@njit(**JIT)
def _gemm_tile(a, ao, lda, w, wo, kdim, mo, moff):
    """mo[moff : moff + 6 * NR] (6 rows of NR) = a[6 rows at ao, lda apart] @ w[kdim x NR at wo], in a
    6x64 register tile. Flat ``raw_view``s: row slices would be reference-counted per tile (atomic
    NRT calls both threads contend on). The accumulator is set by the first k."""
    acc = register_tile()
    a0 = raw_view(a, ao)
    a1 = raw_view(a, ao + lda)
    a2 = raw_view(a, ao + 2 * lda)
    a3 = raw_view(a, ao + 3 * lda)
    a4 = raw_view(a, ao + 4 * lda)
    a5 = raw_view(a, ao + 5 * lda)
    wk = raw_view(w, wo)
    b0 = a0[0]
    b1 = a1[0]
    b2 = a2[0]
    b3 = a3[0]
    b4 = a4[0]
    b5 = a5[0]
    for c in range(NR):
        w0 = wk[c]
        acc[0, c] = b0 * w0
        acc[1, c] = b1 * w0
        acc[2, c] = b2 * w0
        acc[3, c] = b3 * w0
        acc[4, c] = b4 * w0
        acc[5, c] = b5 * w0
    # k from 0 over views starting at k = 1 (a loop from 1 left the weight index's sign unknown to
    # LLVM, which then gathered)
    a0 = raw_view(a, ao + 1)
    a1 = raw_view(a, ao + lda + 1)
    a2 = raw_view(a, ao + 2 * lda + 1)
    a3 = raw_view(a, ao + 3 * lda + 1)
    a4 = raw_view(a, ao + 4 * lda + 1)
    a5 = raw_view(a, ao + 5 * lda + 1)
    wk = raw_view(w, wo + NR)
    for k in range(kdim - 1):
        b0 = a0[k]
        b1 = a1[k]
        b2 = a2[k]
        b3 = a3[k]
        b4 = a4[k]
        b5 = a5[k]
        kb = k * NR
        for c in range(NR):
            w0 = wk[kb + c]
            acc[0, c] += b0 * w0
            acc[1, c] += b1 * w0
            acc[2, c] += b2 * w0
            acc[3, c] += b3 * w0
            acc[4, c] += b4 * w0
            acc[5, c] += b5 * w0
    row = raw_view(mo, moff)
    for p in range(MR):
        pb = p * NR
        for c in range(NR):
            row[pb + c] = acc[p, c]


@njit(inline="always", **JIT)
def _output_transform(m, s, out, res, bias, t0, count, cb, g, act, has_res):
    """Y = A^T M A for tiles t0 .. t0 + count - 1, + bias (+ residual), activation (a clamp in the store
    loop, any other by ``act_rows`` after it), valid pixels only. Rows are flat ``raw_view``s (no
    reference counting per row)."""
    tw, oh, ow, cout, c0 = g.tiles_w, g.oh, g.ow, g.cout, g.out_c0
    tiles_img = g.tiles_h * tw
    n0 = cb * NR
    nc = min(NR, cout - n0)
    lo, hi = act_bounds(act)
    tb = m.shape[1]
    mf = raw_view(m, 0)
    sf = raw_view(s, 0)
    of = raw_view(out, 0)
    rf = raw_view(res, 0)
    bias_b = raw_view(bias, n0)
    ostride = out.shape[3]
    for r in range(count):
        t = t0 + r
        n = t // tiles_img
        q = t - n * tiles_img
        ty = q // tw
        y0 = ty * TILE
        x0 = (q - ty * tw) * TILE
        for i in range(ALPHA):                  # rows: s[i, j] = sum_k A^T[j, k] M[6 i + k]
            mb = (6 * i * tb + r) * NR
            pst = tb * NR
            m0 = raw_view(mf, mb)
            m1 = raw_view(mf, mb + pst)
            m2 = raw_view(mf, mb + 2 * pst)
            m3 = raw_view(mf, mb + 3 * pst)
            m4 = raw_view(mf, mb + 4 * pst)
            m5 = raw_view(mf, mb + 5 * pst)
            sb = i * TILE * NR
            s0 = raw_view(sf, sb)
            s1 = raw_view(sf, sb + NR)
            s2 = raw_view(sf, sb + 2 * NR)
            s3 = raw_view(sf, sb + 3 * NR)
            for c in range(NR):
                p12 = m1[c] + m2[c]
                d12 = m1[c] - m2[c]
                p34 = m3[c] + m4[c]
                d34 = m3[c] - m4[c]
                s0[c] = m0[c] + p12 + p34
                s1[c] = d12 + np.float32(2.0) * d34
                s2[c] = p12 + np.float32(4.0) * p34
                s3[c] = d12 + np.float32(8.0) * d34 + m5[c]
        na = min(TILE, oh - y0)
        y0r = raw_view(sf, ALPHA * TILE * NR)
        y1r = raw_view(sf, (ALPHA * TILE + 1) * NR)
        y2r = raw_view(sf, (ALPHA * TILE + 2) * NR)
        y3r = raw_view(sf, (ALPHA * TILE + 3) * NR)
        for j in range(min(TILE, ow - x0)):     # columns into y[a], then the epilogue per output pixel
            e0 = raw_view(sf, j * NR)
            e1 = raw_view(sf, (TILE + j) * NR)
            e2 = raw_view(sf, (2 * TILE + j) * NR)
            e3 = raw_view(sf, (3 * TILE + j) * NR)
            e4 = raw_view(sf, (4 * TILE + j) * NR)
            e5 = raw_view(sf, (5 * TILE + j) * NR)
            for c in range(NR):
                p12 = e1[c] + e2[c]
                d12 = e1[c] - e2[c]
                p34 = e3[c] + e4[c]
                d34 = e3[c] - e4[c]
                b = bias_b[c]
                y0r[c] = e0[c] + p12 + p34 + b
                y1r[c] = d12 + np.float32(2.0) * d34 + b
                y2r[c] = p12 + np.float32(4.0) * p34 + b
                y3r[c] = d12 + np.float32(8.0) * d34 + e5[c] + b
            for a in range(na):
                yr = raw_view(sf, (ALPHA * TILE + a) * NR)
                pix = (n * oh + y0 + a) * ow + x0 + j
                orow = raw_view(of, pix * ostride + c0 + n0)
                if has_res:
                    rrow = raw_view(rf, pix * cout + n0)
                    for c in range(nc):
                        orow[c] = min(max(yr[c] + rrow[c], lo), hi)
                else:
                    for c in range(nc):
                        orow[c] = min(max(yr[c], lo), hi)
        if is_smooth(act):          # a smooth activation over each output row of the tile, in L1
            for a in range(na):
                act_rows(of, ((n * oh + y0 + a) * ow + x0) * ostride + c0 + n0, ostride, min(TILE, ow - x0), nc, act)


@njit(**JIT)
def _block_item(xp, u, bias, out, res, g, act, has_res, item, v, m, tmp, s, vall, transform):
    """Work item ``item``: one tile block x one group of output-channel blocks. A call (as is
    ``_input_transform``, at the address ``transform``), not inlined into the prange bodies: parfor
    passes over inlined bodies took most of a cold start's compile time."""
    ng = g.groups
    nb = u.shape[0]
    mb = item // ng
    grp = item - mb * ng
    t0, count = block_range(mb, g.n_tiles, g.n_blocks)
    shared = ng > 1
    if not shared:
        call_native(transform, _input_transform, xp, v, tmp, t0, np.int64(0), count, g.tiles_h, g.tiles_w)
    per = (nb + ng - 1) // ng
    cin = v.shape[2]
    tb = v.shape[1]
    rows_all = vall.shape[1]
    uf = raw_view(u, 0)
    mf = raw_view(m, 0)
    # every tile transformed once, by all threads, before the GEMMs (shared) or by this item (not)
    af = raw_view(vall, 0) if shared else raw_view(v, 0)
    for cb in range(grp * per, min(nb, grp * per + per)):
        for p in range(POINTS):
            wo = (cb * POINTS + p) * cin * NR
            if shared:
                ao = (p * rows_all + t0) * cin
            else:
                ao = p * tb * cin
            for r0 in range(0, count, MR):
                _gemm_tile(af, ao + r0 * cin, cin, uf, wo, cin, mf, (p * tb + r0) * NR)
        _output_transform(m, s, out, res, bias, t0, count, cb, g, act, has_res)


@njit(**PJIT)
def winograd_conv(xp, u, bias, out, res, geom, act, has_res, vs, ms, tmps, ss, vall, items):
    """One compiled driver for any thread count (a serial twin compiled apart contracts the
    transforms into FMAs differently, and 1- and 2-thread results should agree bit for bit).
    With output channels split into ng > 1 groups (few tiles), the input transform runs first as
    its own parallel loop into the shared ``vall`` [36, tiles + TB, cin]: each group's work item
    would otherwise transform the same tiles again (ResNet50's 14x14 layers: 16 tiles, 2 groups).
    ``geom``: a ``WinogradGeom`` as a plain tuple. ``items``: the addresses of the compiled
    ``_input_transform`` and ``_block_item``, and of the ``_input_transform`` that ``_block_item``
    calls (``driver_items``), called through them so that no function compiles another's code
    again (``stack.call_native``)."""
    g = WinogradGeom(*geom)
    n_items = g.n_blocks * g.groups
    if g.groups > 1:
        th, tw = g.tiles_h, g.tiles_w
        for t in prange(g.n_tiles):
            tid = numba.get_thread_id()
            call_native(items[0], _input_transform, xp, vall, tmps[tid], np.int64(0), np.int64(t), np.int64(t + 1),
                        th, tw)
    for item in prange(n_items):
        tid = numba.get_thread_id()
        call_native(items[1], _block_item, xp, u, bias, out, res, g, act, has_res, np.int64(item), vs[tid], ms[tid],
                    tmps[tid], ss[tid], vall, items[2])


def _transform_types(xp, vall, tmp):
    return (xp, vall, tmp) + (types.int64,) * 5


def _block_types(xp, u, bias, out, res, v, m, tmp, s, vall):
    return (xp, u, bias, out, res, geom_type(WinogradGeom), types.int64, types.boolean, types.int64, v, m, tmp, s,
            vall, types.int64)


def driver_items(xp, u, bias, out, res, vs, ms, tmps, ss, vall) -> tuple:
    """``winograd_conv``'s last argument for these arrays: its callees' addresses."""
    return (item_address(_input_transform, _transform_types, xp, vall, tmps[0]),
            item_address(_block_item, _block_types, xp, u, bias, out, res, vs[0], ms[0], tmps[0], ss[0], vall),
            item_address(_input_transform, _transform_types, xp, vs[0], tmps[0]))


@njit(inline="always", **JIT)
def block_range(mb, n_tiles, n_mb):
    """(first tile, tile count) of block mb: the ceil(n_tiles / MR) row groups of the GEMM split into
    n_mb runs whose lengths differ by at most one group."""
    units = (n_tiles + MR - 1) // MR
    t0 = min(n_tiles, mb * units // n_mb * MR)
    return t0, min(n_tiles, (mb + 1) * units // n_mb * MR) - t0


def plan_blocks(n_tiles, nb, threads):
    """(scratch tiles per block, channel groups, blocks): blocks of <= TB_MAX tiles, enough work items
    that every thread gets an equal share, output channels split when tiles are few. Block mb covers
    tiles [mb * n_tiles // n_mb, (mb + 1) * n_tiles // n_mb), sizes within one tile of each other;
    tile boundaries at multiples of MR (the GEMM's row tile, see ``block_range``). Fixed blocks left
    threads unequal: ResNet50's 56x56 layers (196 tiles) ran as 5 x 36 + 16, 108 vs 88 tiles per
    thread."""
    n_mb = -(-n_tiles // TB_MAX)
    ng = 1
    if threads > 1:
        if n_mb < threads and nb >= threads:
            ng = threads
        else:
            n_mb = -(-n_mb // threads) * threads
    units = -(-n_tiles // MR)
    n_mb = min(n_mb, units)
    return -(-units // n_mb) * MR, ng, n_mb


class WinogradScratch:
    """Per-thread buffers for one layer shape: V [36, TB, cin], M [36, TB, 64] and the transforms'
    intermediates."""

    def __init__(self, slots, tb, cin):
        self.v = aligned_zeros((slots, POINTS, tb, cin))
        self.m = aligned_zeros((slots, POINTS, tb, NR))
        self.tmp = aligned_zeros((slots, ALPHA, ALPHA, cin))
        self.s = aligned_zeros((slots, ALPHA + 1, TILE, NR))     # row ALPHA: the 4 output rows
