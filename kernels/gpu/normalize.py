"""Normalisations across channels on the GPU (``normalize.cu``): layer_norm and lrn."""

from __future__ import annotations

from kernels.gpu import runtime as rt
from kernels.gpu.elementwise import _on_device

FAMILY = "normalize"
LN_ROWS_PER_BLOCK = 8          # normalize.cu KN_LN_WARPS: one warp per row
SPECIALISATIONS = ("layer_norm_rows", "lrn_rows")


def layer_norm(x, gamma, beta, out, eps):
    rt.check_index_range("layer_norm", x=x.size)
    rt.require_contiguous("layer_norm", x, out)
    c = x.shape[-1]
    rows = x.size // c
    blocks = max(1, min(rt.cdiv(rows, LN_ROWS_PER_BLOCK), rt.MAX_GRID_X))
    rt.launch(FAMILY, "layer_norm_rows", (blocks, 1, 1), (32 * LN_ROWS_PER_BLOCK, 1, 1),
              (x, _on_device(gamma), _on_device(beta), out, rt.i32(rows), rt.i32(c), rt.f32(eps)))


def lrn(x, out, size, alpha, beta, bias):
    rt.check_index_range("lrn", x=x.size)
    rt.require_contiguous("lrn", x, out)
    size = int(size)
    lo = (size - 1) // 2
    grid, block = rt.grid1d(x.size)
    i = rt.i32
    rt.launch(FAMILY, "lrn_rows", grid, block, (x, out, i(x.size), i(x.shape[-1]), i(lo), i(size - 1 - lo),
                                                rt.f32(bias), rt.f32(alpha / size), rt.f32(beta)))
