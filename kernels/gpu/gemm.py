"""Skinny GEMMs (``gemm.cu``): up to ``MAX_ROWS`` rows against packed weights, split over K, and the
split-K reduce that applies the conv/dense epilogue (also the second half of conv.cu's split-K).

Used by dense at batch <= MAX_ROWS (batch 1 is a GEMV) and by pointwise convs over at most MAX_ROWS
pixels. The split count is floored so the grid is one wave of resident blocks (a rounded-up count
leaves a latency-bound tail wave of a few blocks).
"""

from __future__ import annotations

from kernels.gpu import runtime as rt

FAMILY = "gemm"
MAX_ROWS = 64                       # beyond this, the tiled conv kernel re-reads the weights less
ROW_BLOCKS = (1, 2, 4, 8)           # rows of A per block: a B float4 feeds this many row FMAs
COLUMNS = 128                       # columns per block (32 lanes x float4)
K_TILE = 64                         # K values per staged A tile (gemm.cu KN_GEMM_KT)
MIN_SPLIT_K = 2 * K_TILE
# blocks per SM of gemm_rows<R> on sm_90 (256 threads; registers from ptxas, tests/test_cuda_compile.py)
RESIDENT = {1: 8, 2: 8, 4: 5, 8: 4}


def rows_expression(r: int) -> str:
    return f"gemm_rows<{r}>"


def reduce_expression(vout: bool) -> str:
    return f"splitk_reduce<{'true' if vout else 'false'}>"


SPECIALISATIONS = tuple(rows_expression(r) for r in ROW_BLOCKS) + tuple(reduce_expression(v) for v in (False, True))


def row_block(m: int) -> int:
    return next((r for r in ROW_BLOCKS if r >= m), ROW_BLOCKS[-1])


def splits(m: int, k: int, np_: int, sms: int) -> int:
    """K ranges: as many as fill one wave of resident blocks (floored), each at least MIN_SPLIT_K deep."""
    r = row_block(m)
    blocks = rt.cdiv(m, r) * rt.cdiv(np_, COLUMNS)
    return max(1, min(RESIDENT[r] * sms // blocks, rt.cdiv(k, MIN_SPLIT_K)))


def launch_rows(a, p, m: int, out, out_stride: int, out_c0: int, residual, act):
    """out[r, out_c0 + n] = act(a[r] @ w[:, n] + bias[n] + residual[r, n]) for the m rows of ``a``
    (contiguous, k = p.kh * p.kw * p.cin values each) against packed weights ``p`` (w [k, coutp])."""
    k = p.kh * p.kw * p.cin
    r = row_block(m)
    s = splits(m, k, p.coutp, rt.sm_count())
    kchunk = rt.cdiv(rt.cdiv(k, s), K_TILE) * K_TILE
    s = rt.cdiv(k, kchunk)
    rt.check_index_range("gemm", workspace=s * m * p.coutp, a=m * k)
    ws = rt.partial_sums(s * m * p.coutp)
    i = rt.i32
    rt.launch(FAMILY, rows_expression(r), (rt.cdiv(m, r), rt.cdiv(p.coutp, COLUMNS), s), (32, 8, 1),
              (a, p.w, ws, i(m), i(k), i(p.coutp), i(kchunk)))
    launch_reduce(ws, s, m, p, out, out_stride, out_c0, residual, act)


def launch_reduce(ws, s: int, m: int, p, out, out_stride: int, out_c0: int, residual, act):
    """out = act(sum of the s partial [m, coutp] planes of ws + bias + residual) at channel out_c0."""
    res = out if residual is None else residual
    vout = p.cout % 4 == 0 and out_stride % 4 == 0 and out_c0 % 4 == 0 and rt.aligned16(out, res)
    grid, block = rt.grid1d(m * p.coutp // 4)
    i = rt.i32
    rt.launch(FAMILY, reduce_expression(vout), grid, block,
              (ws, p.bias, res, out, i(s), i(m), i(p.cout), i(p.coutp), i(out_stride), i(out_c0),
               i(residual is not None), rt.act_code(act)))
