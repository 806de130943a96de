"""dense on the GPU: batch <= ``gemm.MAX_ROWS`` is a skinny GEMM over the weights, split over K
(batch 1 is a GEMV; ``gemm.py``); larger batches run the tiled implicit-GEMM kernel of ``conv.cu``
as a 1x1 convolution over a 1x1 image, with the same planner (tile choice, split K)."""

from __future__ import annotations

import numpy as np

from kernels.gpu import conv, gemm
from kernels.gpu import runtime as rt


def pack_dense(kernel, bias):
    kernel = np.asarray(kernel, np.float32)
    p = conv.pack_conv2d(kernel[None, None], bias)          # [in, outp] + bias, as a 1x1 conv
    p.variant = "gemm|igemm"
    return p


def dense(x, packed, out, act=None):
    dense_with(x, packed, out, act, "fp32")


def dense_with(x, p, out, act, kind: str):
    """``dense`` with the large-batch tiles of ``kind`` ("fp32" or "tf32")."""
    batch, k = x.shape
    rt.check_index_range("dense", x=x.size, out=out.size, weights=k * p.coutp)
    rt.require_contiguous("dense", x, out)
    if batch <= gemm.MAX_ROWS:
        gemm.launch_rows(x, p, batch, out, p.cout, 0, None, act)
    else:
        conv.launch_igemm(x.reshape(batch, 1, 1, k), p, out.reshape(batch, 1, 1, p.cout), batch, 1, 1, 1, 1,
                          1, 1, 0, 0, act, None, 0, kind)
