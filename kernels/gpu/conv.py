"""conv2d on the GPU: the implicit-GEMM kernels of ``conv.cu`` (see its header), planned per shape.

``plan()`` picks the tile and the K split of a GEMM shape (M pixels, N channels, K = kh*kw*cin) by a
small cost model of the device: per SM, the FMAs of the blocks it runs (padded tiles included, at the
tile's efficiency and the threads it can keep busy), or the serial chain of K slices when there are
too few blocks to hide latency, plus the split-K reduce pass. So cout = 32/64/96/192 layers get tiles
that fit their columns, and small-M layers (batch 1) split K until the blocks fill the SMs (never into
a tail wave: the split count is the best whole number, not a rounding up). The model's constants are
predictions for an H100/H200, to be calibrated by the first device run (bench/RESULTS.md, GPU).

Pointwise convs over at most ``gemm.MAX_ROWS`` pixels (a 1x1 conv on a 7x7 map at batch 1,
MobileNet's conv_preds) are GEMVs, not tiles: they run through ``gemm.py``'s skinny GEMM.
"""

from __future__ import annotations

import functools
from collections import namedtuple
from types import SimpleNamespace

import numpy as np

from kernels import conv_output_size
from kernels.gpu import gemm
from kernels.gpu import runtime as rt

FAMILY = "conv"

# kind "fp32": conv2d_igemm<bm, bn, bk, sub_m, sub_n, stages, ...>, sub = the thread's register tile;
# kind "tf32": conv2d_tf32<...>, sub = the warp's tile. eff: the FMA (MMA) rate a tile sustains relative
# to the kind's best, when the SM is full: smaller thread/warp tiles spend more issue slots on shared
# loads per FMA and hide less latency (SGEMM folklore: 8x8 reaches ~75% of peak, 4x4 ~50%), smaller
# blocks reuse each copied slice less. resident: blocks per SM on sm_90 (registers, shared memory,
# threads) for the A mode that allows the fewest, from ptxas (tests/test_cuda_compile.py checks it).
Tile = namedtuple("Tile", "kind bm bn bk sub_m sub_n stages threads eff resident")
FP32_TILES = (
    Tile("fp32", 128, 128, 8, 8, 8, 4, 256, 1.0, 2),
    Tile("fp32", 128, 64, 16, 8, 8, 3, 128, 0.97, 3),
    Tile("fp32", 64, 64, 16, 8, 8, 4, 64, 0.94, 6),
    Tile("fp32", 128, 32, 16, 8, 4, 3, 128, 0.8, 4),
    Tile("fp32", 32, 32, 16, 4, 4, 4, 64, 0.65, 12),
)
TF32_TILES = (
    Tile("tf32", 128, 128, 8, 64, 32, 4, 256, 1.0, 2),
    Tile("tf32", 64, 64, 16, 32, 32, 4, 128, 0.8, 5),
    Tile("tf32", 32, 32, 16, 16, 16, 4, 128, 0.5, 9),
)
AMODES = {0: "scalar", 1: "vec4", 2: "pointwise"}

# Cost-model constants, in SM clocks (H100/H200 at ~1.8 GHz): sustained FMAs per clock per SM on the
# FFMA pipes and through mma.sync TF32; one K slice's memory latency, hidden over stages - 1 slices in
# flight; L2/HBM bytes per clock for the whole GPU (the reduce pass); one extra kernel launch.
FMA_PER_CLK = {"fp32": 100.0, "tf32": 500.0}
SLICE_LATENCY_CLK = 800.0
BYTES_PER_CLK = 2000.0
LAUNCH_CLK = 4000.0
MAX_SPLITS = 16
MIN_SPLIT_K = 64            # K values per split at least (a few slices to pipeline)

ConvPlan = namedtuple("ConvPlan", "tile splits k_split")


def expression(tile: Tile, amode: int) -> str:
    name = "conv2d_igemm" if tile.kind == "fp32" else "conv2d_tf32"
    dims = ", ".join(str(v) for v in (tile.bm, tile.bn, tile.bk, tile.sub_m, tile.sub_n, tile.stages))
    return f"{name}<{dims}, {amode}>"


SPECIALISATIONS = tuple(expression(t, a) for t in FP32_TILES + TF32_TILES for a in AMODES)


def _cost(t: Tile, m: int, n: int, k: int, s: int, sms: int) -> tuple[float, int]:
    k_split = rt.cdiv(rt.cdiv(k, s), t.bk) * t.bk
    s = rt.cdiv(k, k_split)
    blocks = rt.cdiv(m, t.bm) * rt.cdiv(n, t.bn) * s
    per_sm = rt.cdiv(blocks, sms)
    busy_threads = min(per_sm, t.resident) * t.threads
    rate = min(FMA_PER_CLK[t.kind], FMA_PER_CLK[t.kind] * busy_threads / 256) * t.eff
    compute = per_sm * t.bm * t.bn * k_split / rate
    latency = rt.cdiv(blocks, t.resident * sms) * rt.cdiv(k_split, t.bk) * SLICE_LATENCY_CLK / (t.stages - 1)
    reduce = 0.0 if s == 1 else (s + 2) * m * n * 4 / BYTES_PER_CLK + LAUNCH_CLK
    return max(compute, latency) + reduce, s


@functools.lru_cache(maxsize=4096)
def plan(m: int, n: int, k: int, kind: str = "fp32", sms: int = 132) -> ConvPlan:
    """Tile and K split for an M x N x K implicit GEMM: the cheapest by the cost model; ties go to
    fewer splits, then the larger tile."""
    best = None
    for t in FP32_TILES if kind == "fp32" else TF32_TILES:
        for s in range(1, MAX_SPLITS + 1):
            if s > 1 and k < s * MIN_SPLIT_K:
                break
            cost, splits = _cost(t, m, n, k, s, sms)
            key = (cost, splits, -t.bm * t.bn)
            if best is None or key < best[0]:
                best = (key, t, splits)
    _, t, s = best
    return ConvPlan(t, s, rt.cdiv(rt.cdiv(k, s), t.bk) * t.bk if s > 1 else k)


def pack_conv2d(kernel, bias):
    """HWIO kernel -> device matrix [kh*kw*cin, coutp] (cout padded to a multiple of 4 with zeros)."""
    kernel = np.asarray(kernel, np.float32)
    kh, kw, cin, cout = kernel.shape
    coutp = rt.cdiv(cout, 4) * 4
    w = np.zeros((kh * kw * cin, coutp), np.float32)
    w[:, :cout] = kernel.reshape(-1, cout)
    b = np.zeros(coutp, np.float32)
    if bias is not None:
        b[:cout] = np.asarray(bias, np.float32)
    return SimpleNamespace(w=rt.upload(w), bias=rt.upload(b), kh=kh, kw=kw, cin=cin, cout=cout, coutp=coutp,
                           variant=f"igemm-{'vec4' if cin % 4 == 0 else 'scalar'}")


def conv2d(x, packed, out, stride, pad, act=None, residual=None, out_c0=0):
    p = packed
    n, h, w, c = x.shape
    sh, sw = stride
    pt, pb, pl, pr = pad
    oh = conv_output_size(h, p.kh, sh, pt, pb)
    ow = conv_output_size(w, p.kw, sw, pl, pr)
    launch_igemm(x, p, out, n, h, w, oh, ow, sh, sw, pt, pl, act, residual, out_c0)


def launch_igemm(x, p, out, n, h, w, oh, ow, sh, sw, pt, pl, act, residual, out_c0, kind="fp32"):
    """Shared by conv2d, the batched dense path (a 1x1 convolution over a 1x1 image) and the TF32
    backend (``kind="tf32"``)."""
    m = n * oh * ow
    k = p.kh * p.kw * p.cin
    rt.check_index_range("conv2d", x=x.size, out=out.size, weights=k * p.coutp)
    rt.require_contiguous("conv2d", x, out, *(() if residual is None else (residual,)))
    pointwise = p.kh == 1 and p.kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 and oh == h and ow == w
    res = out if residual is None else residual
    stride_out = out.shape[-1]
    if pointwise and m <= gemm.MAX_ROWS:
        gemm.launch_rows(x, p, m, out, stride_out, out_c0, residual, act)
        return
    c = p.cin
    vec_in = c % 4 == 0 and rt.aligned16(x)
    amode = (2 if pointwise else 1) if vec_in else 0
    vout = (p.cout % 4 == 0 and stride_out % 4 == 0 and out_c0 % 4 == 0 and rt.aligned16(out, res))
    gemm_plan = plan(m, p.cout, k, kind, rt.sm_count())
    t, splits = gemm_plan.tile, gemm_plan.splits
    ws = out                                      # not read unless K is split
    if splits > 1:
        rt.check_index_range("conv2d", split_k_workspace=splits * m * p.coutp)
        ws = rt.partial_sums(splits * m * p.coutp)
    grid = (rt.cdiv(m, t.bm), rt.cdiv(p.cout, t.bn), splits)
    i = rt.i32
    rt.launch(FAMILY, expression(t, amode), grid, (t.threads, 1, 1),
              (x, p.w, p.bias, res, out, ws, i(n), i(h), i(w), i(c), i(oh), i(ow), i(p.cout), i(p.coutp),
               i(p.kh), i(p.kw), i(sh), i(sw), i(pt), i(pl), i(stride_out), i(out_c0),
               i(residual is not None), rt.act_code(act), i(vout), i(gemm_plan.k_split)))
    if splits > 1:
        gemm.launch_reduce(ws, splits, m, p, out, stride_out, out_c0, residual, act)
