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
       register tile of ``conv_tile.py`` (weights ``U`` packed ``[cout/64, 36, cin, 64]``)
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

Measured (``python bench/bench_conv.py`` shapes, batch 1, 1 thread, load average ~1, direct ms ->
Winograd ms; effective GFLOP/s counts direct-convolution FLOPs, peak 255/core):
    224x224  64->64    17.1 -> 14.8   (0.87x; 249 effective: transforms of 64 channels dominate)
    112x112 128->128   15.8 ->  9.1   (0.58x; 408)
     56x56  256->256   15.2 ->  6.9   (0.45x; 540, i.e. the GEMM part at ~135 real GFLOP/s, 53%)
     28x28  512->512   16.4 ->  7.1   (0.43x; 525)
     14x14  512->512    4.1 ->  2.5   (0.60x; 376: 16 tiles reuse each 37 MB weight panel 16x)
     56/28/14 px ResNet50 c2-c4 3x3:  0.97/0.94/0.92 -> 0.77/0.51/0.52
     35x35 64->96, 96->96 (InceptionV3): 0.77/1.13 -> 0.51/0.67;  17x17 192->192: 0.78 -> 0.51
     7x7 512->512 (4 tiles, 64 pixels computed for 49): 1.06 -> 1.32, so it stays direct at batch 1;
     at batch 8 (32 tiles): 15.2 -> 7.1.  cin 32 (147x147 32->64): 4.0 -> 3.8, not worth the error.
"""

import numba
import numpy as np
from numba import njit, prange

from kernels.cpu.conv_tile import ACT_NONE, ACT_RELU6, MR, NR, _stack_tile

TILE = 4                # output pixels per tile side
ALPHA = TILE + 2        # input patch side (6)
POINTS = ALPHA * ALPHA  # 36 transform points
TB_MAX = 48             # tiles per work item: 48 x 36 x 64 floats of M fit L2

_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64)


def transform_weights(kernel):
    """HWIO (3, 3, cin, cout) -> U = G g G^T packed [ceil(cout/NR), 36, cin, NR] (zero-padded
    channels). All 36 points at once as one float64 product kron(G, G) @ g over the 9 taps: point
    a * 6 + b takes sum_ij G[a, i] G[b, j] g[i, j]."""
    kernel = np.asarray(kernel)
    _, _, cin, cout = kernel.shape
    nb = -(-cout // NR)
    u = np.kron(_G, _G) @ kernel.reshape(9, cin * cout).astype(np.float64)     # (36, cin * cout)
    padded = np.zeros((POINTS, cin, nb * NR), np.float32)
    padded[..., :cout] = u.reshape(POINTS, cin, cout)
    return np.ascontiguousarray(padded.reshape(POINTS, cin, nb, NR).transpose(2, 0, 1, 3))


@njit(fastmath=True, cache=True, inline="always")
def _input_transform(xp, v, tmp, t0, r0, r1, th, tw):
    """V[p, r, :] = (B^T d B)[p] for the 6x6 patch of tile t0 + r, r in r0 .. r1-1."""
    cin = xp.shape[3]
    tiles_img = th * tw
    for r in range(r0, r1):
        t = t0 + r
        n = t // tiles_img
        q = t - n * tiles_img
        ty = q // tw
        y0 = (ty * TILE)
        x0 = (q - ty * tw) * TILE
        for i in range(ALPHA):                  # rows: tmp[i, j] = sum_k B^T[j, k] d[i, k]
            d0 = xp[n, y0 + i, x0]
            d1 = xp[n, y0 + i, x0 + 1]
            d2 = xp[n, y0 + i, x0 + 2]
            d3 = xp[n, y0 + i, x0 + 3]
            d4 = xp[n, y0 + i, x0 + 4]
            d5 = xp[n, y0 + i, x0 + 5]
            for c in range(cin):
                tmp[i, 0, c] = np.float32(4.0) * d0[c] - np.float32(5.0) * d2[c] + d4[c]
                tmp[i, 1, c] = d3[c] + d4[c] - np.float32(4.0) * (d1[c] + d2[c])
                tmp[i, 2, c] = d4[c] - d3[c] + np.float32(4.0) * (d1[c] - d2[c])
                tmp[i, 3, c] = d4[c] - d2[c] + np.float32(2.0) * (d3[c] - d1[c])
                tmp[i, 4, c] = d4[c] - d2[c] + np.float32(2.0) * (d1[c] - d3[c])
                tmp[i, 5, c] = np.float32(4.0) * d1[c] - np.float32(5.0) * d3[c] + d5[c]
        for j in range(ALPHA):                  # columns: V[6 a + j] = sum_i B^T[a, i] tmp[i, j]
            e0 = tmp[0, j]
            e1 = tmp[1, j]
            e2 = tmp[2, j]
            e3 = tmp[3, j]
            e4 = tmp[4, j]
            e5 = tmp[5, j]
            for c in range(cin):
                v[j, r, c] = np.float32(4.0) * e0[c] - np.float32(5.0) * e2[c] + e4[c]
                v[6 + j, r, c] = e3[c] + e4[c] - np.float32(4.0) * (e1[c] + e2[c])
                v[12 + j, r, c] = e4[c] - e3[c] + np.float32(4.0) * (e1[c] - e2[c])
                v[18 + j, r, c] = e4[c] - e2[c] + np.float32(2.0) * (e3[c] - e1[c])
                v[24 + j, r, c] = e4[c] - e2[c] + np.float32(2.0) * (e1[c] - e3[c])
                v[30 + j, r, c] = np.float32(4.0) * e1[c] - np.float32(5.0) * e3[c] + e5[c]


@njit(fastmath=True, cache=True, inline="always")
def _gemm_tile(a, w, mo, ra, r0):
    """mo[r0:r0+6, :] = a[ra:ra+6, :] @ w  (a: [rows, cin], w: [cin, NR]) in a 6x64 register tile."""
    acc = _stack_tile()
    for p in range(MR):
        for c in range(NR):
            acc[p, c] = np.float32(0.0)
    a0 = a[ra]
    a1 = a[ra + 1]
    a2 = a[ra + 2]
    a3 = a[ra + 3]
    a4 = a[ra + 4]
    a5 = a[ra + 5]
    for k in range(w.shape[0]):
        b0 = a0[k]
        b1 = a1[k]
        b2 = a2[k]
        b3 = a3[k]
        b4 = a4[k]
        b5 = a5[k]
        for c in range(NR):
            wk = w[k, c]
            acc[0, c] += b0 * wk
            acc[1, c] += b1 * wk
            acc[2, c] += b2 * wk
            acc[3, c] += b3 * wk
            acc[4, c] += b4 * wk
            acc[5, c] += b5 * wk
    for p in range(MR):
        row = mo[r0 + p]
        for c in range(NR):
            row[c] = acc[p, c]


@njit(fastmath=True, cache=True, inline="always")
def _output_transform(m, s, out, res, bias, t0, nt, cb, geom, act, has_res):
    """Y = A^T M A for each tile of the block, + bias (+ residual), activation, valid pixels only."""
    th, tw, oh, ow, cout, c0 = geom[0], geom[1], geom[2], geom[3], geom[4], geom[5]
    tiles_img = th * tw
    n0 = cb * NR
    nc = min(NR, cout - n0)
    lo = np.float32(0.0) if act != ACT_NONE else np.float32(-3.0e38)
    hi = np.float32(6.0) if act == ACT_RELU6 else np.float32(3.0e38)
    bias_b = bias[n0:n0 + NR]
    for r in range(nt):
        t = t0 + r
        n = t // tiles_img
        q = t - n * tiles_img
        ty = q // tw
        y0 = ty * TILE
        x0 = (q - ty * tw) * TILE
        for i in range(ALPHA):                  # rows: s[i, j] = sum_k A^T[j, k] M[6 i + k]
            m0 = m[6 * i, r]
            m1 = m[6 * i + 1, r]
            m2 = m[6 * i + 2, r]
            m3 = m[6 * i + 3, r]
            m4 = m[6 * i + 4, r]
            m5 = m[6 * i + 5, r]
            for c in range(NR):
                p12 = m1[c] + m2[c]
                d12 = m1[c] - m2[c]
                p34 = m3[c] + m4[c]
                d34 = m3[c] - m4[c]
                s[i, 0, c] = m0[c] + p12 + p34
                s[i, 1, c] = d12 + np.float32(2.0) * d34
                s[i, 2, c] = p12 + np.float32(4.0) * p34
                s[i, 3, c] = d12 + np.float32(8.0) * d34 + m5[c]
        na = min(TILE, oh - y0)
        for j in range(min(TILE, ow - x0)):     # columns into y[a], then the epilogue per output pixel
            e0 = s[0, j]
            e1 = s[1, j]
            e2 = s[2, j]
            e3 = s[3, j]
            e4 = s[4, j]
            e5 = s[5, j]
            y0r = s[ALPHA, 0]
            y1r = s[ALPHA, 1]
            y2r = s[ALPHA, 2]
            y3r = s[ALPHA, 3]
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
                yr = s[ALPHA, a]
                orow = out[n, y0 + a, x0 + j, c0 + n0:c0 + n0 + nc]
                if has_res:
                    rrow = res[n, y0 + a, x0 + j, n0:n0 + nc]
                    for c in range(nc):
                        orow[c] = min(max(yr[c] + rrow[c], lo), hi)
                else:
                    for c in range(nc):
                        orow[c] = min(max(yr[c], lo), hi)


@njit(fastmath=True, cache=True, inline="always")
def _work_item(xp, u, bias, out, res, geom, act, has_res, item, v, m, tmp, s, vall):
    th, tw, ng, n_tiles, n_mb = geom[0], geom[1], geom[7], geom[8], geom[9]
    nb = u.shape[0]
    mb = item // ng
    g = item - mb * ng
    t0, nt = block_range(mb, n_tiles, n_mb)
    shared = ng > 1
    if not shared:
        _input_transform(xp, v, tmp, t0, 0, nt, th, tw)
    per = (nb + ng - 1) // ng
    for cb in range(g * per, min(nb, g * per + per)):
        for p in range(POINTS):
            w = u[cb, p]
            mo = m[p]
            if shared:
                a = vall[p]         # every tile transformed once, by all threads, before the GEMMs
                for r0 in range(0, nt, MR):
                    _gemm_tile(a, w, mo, t0 + r0, r0)
            else:
                a = v[p]
                for r0 in range(0, nt, MR):
                    _gemm_tile(a, w, mo, r0, r0)
        _output_transform(m, s, out, res, bias, t0, nt, cb, geom, act, has_res)


@njit(parallel=True, fastmath=True, cache=True)
def winograd_conv(xp, u, bias, out, res, geom, act, has_res, vs, ms, tmps, ss, vall):
    """One compiled driver for any thread count (a serial twin compiled apart contracts the
    transforms into FMAs differently, and 1- and 2-thread results should agree bit for bit).
    With output channels split into ng > 1 groups (few tiles), the input transform runs first as
    its own parallel loop into the shared ``vall`` [36, tiles + TB, cin]: each group's work item
    would otherwise transform the same tiles again (ResNet50's 14x14 layers: 16 tiles, 2 groups)."""
    n_items = geom[9] * geom[7]
    if geom[7] > 1:
        th, tw, n_tiles = geom[0], geom[1], geom[8]
        for t in prange(n_tiles):
            tid = numba.get_thread_id()
            _input_transform(xp, vall, tmps[tid], 0, t, t + 1, th, tw)
    for item in prange(n_items):
        tid = numba.get_thread_id()
        _work_item(xp, u, bias, out, res, geom, act, has_res, item, vs[tid], ms[tid], tmps[tid], ss[tid],
                   vall)


@njit(cache=True, inline="always")
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
    thread; now 96 vs 100."""
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
        self.v = np.zeros((slots, POINTS, tb, cin), np.float32)
        self.m = np.zeros((slots, POINTS, tb, NR), np.float32)
        self.tmp = np.zeros((slots, ALPHA, ALPHA, cin), np.float32)
        self.s = np.zeros((slots, ALPHA + 1, TILE, NR), np.float32)     # row ALPHA: the 4 output rows
