"""conv2d on the GPU: the implicit-GEMM kernel of ``conv.cu`` (see its header for the variants).

The tile is picked per layer from the GEMM shape: the largest tile that still gives at least two
blocks per SM, else the smallest tile (small layers at batch 1 are latency-bound either way; split-K
is the next step for them). ``packed.variant`` names the A mode; the tile is chosen per call shape.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from kernels.gpu import runtime as rt

FAMILY = "conv"
# (BM, BN, TM, TN), largest first
TILES = ((128, 128, 8, 8), (128, 64, 8, 8), (64, 64, 8, 8), (32, 32, 4, 4))
AMODES = {0: "scalar", 1: "vec4", 2: "pointwise"}


def expression(tile, amode: int, vout: bool) -> str:
    bm, bn, tm, tn = tile
    return f"conv2d_igemm<{bm}, {bn}, {tm}, {tn}, {amode}, {'true' if vout else 'false'}>"


SPECIALISATIONS = tuple(expression(t, a, v) for t in TILES for a in AMODES for v in (False, True))

_sm_count: list[int] = []


def sm_count() -> int:
    if not _sm_count:
        import cupy

        _sm_count.append(cupy.cuda.Device().attributes["MultiProcessorCount"])
    return _sm_count[0]


def pick_tile(m: int, n: int, sms: int):
    for t in TILES:
        if rt.cdiv(m, t[0]) * rt.cdiv(n, t[1]) >= 2 * sms:
            return t
    return TILES[-1]


def pack_conv2d(kernel, bias):
    """HWIO kernel -> device matrix [kh*kw*cin, coutp] (cout padded to a multiple of 4 with zeros)."""
    import cupy

    kernel = np.asarray(kernel, np.float32)
    kh, kw, cin, cout = kernel.shape
    coutp = rt.cdiv(cout, 4) * 4
    w = np.zeros((kh * kw * cin, coutp), np.float32)
    w[:, :cout] = kernel.reshape(-1, cout)
    b = np.zeros(coutp, np.float32)
    if bias is not None:
        b[:cout] = np.asarray(bias, np.float32)
    return SimpleNamespace(w=cupy.asarray(w), bias=cupy.asarray(b), kh=kh, kw=kw, cin=cin, cout=cout,
                           coutp=coutp, variant=f"igemm-{'vec4' if cin % 4 == 0 else 'scalar'}")


def conv2d(x, packed, out, stride, pad, act=None, residual=None, out_c0=0):
    p = packed
    n, h, w, c = x.shape
    sh, sw = stride
    pt, pb, pl, pr = pad
    oh = (h + pt + pb - p.kh) // sh + 1
    ow = (w + pl + pr - p.kw) // sw + 1
    launch_igemm(x, p, out, n, h, w, oh, ow, sh, sw, pt, pl, act, residual, out_c0)


def launch_igemm(x, p, out, n, h, w, oh, ow, sh, sw, pt, pl, act, residual, out_c0):
    """Shared by conv2d and the batched dense path (a 1x1 convolution over a 1x1 image)."""
    rt.require_contiguous("conv2d", x, out, *(() if residual is None else (residual,)))
    c = p.cin
    pointwise = p.kh == 1 and p.kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 and oh == h and ow == w
    vec_in = c % 4 == 0 and rt.aligned16(x)
    amode = (2 if pointwise else 1) if vec_in else 0
    stride_out = out.shape[-1]
    res = out if residual is None else residual
    vout = (p.cout % 4 == 0 and stride_out % 4 == 0 and out_c0 % 4 == 0 and rt.aligned16(out, res))
    m = n * oh * ow
    tile = pick_tile(m, p.cout, sm_count())
    threads = (tile[0] // tile[2]) * (tile[1] // tile[3])
    grid = (rt.cdiv(m, tile[0]), rt.cdiv(p.cout, tile[1]), 1)
    i = rt.i32
    rt.launch(FAMILY, expression(tile, amode, vout), grid, (threads, 1, 1),
              (x, p.w, p.bias, res, out, i(n), i(h), i(w), i(c), i(oh), i(ow), i(p.cout), i(p.coutp),
               i(p.kh), i(p.kw), i(sh), i(sw), i(pt), i(pl), i(stride_out), i(out_c0),
               i(residual is not None), rt.act_code(act)))
