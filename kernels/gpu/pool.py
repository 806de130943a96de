"""Pooling on the GPU (``pool.cu``): windowed max/avg with channel offsets, global max/avg."""

from __future__ import annotations

from kernels import conv_output_size
from kernels.gpu import runtime as rt

FAMILY = "pool"
BLOCK = 256
GLOBAL_BLOCK = (8, 32)          # global_pool: channel vectors x H*W strides (pool.cu KN_GP_CX, KN_GP_HY)


def pool_expression(is_max: bool, vec: int) -> str:
    return f"pool2d<{'true' if is_max else 'false'}, {vec}>"


def global_expression(is_max: bool, vec: int) -> str:
    return f"global_pool<{'true' if is_max else 'false'}, {vec}>"


SPECIALISATIONS = tuple(f(m, v) for f in (pool_expression, global_expression) for m in (False, True) for v in (1, 4))


def _pool(x, out, pool, stride, pad, is_max, count_include_pad, out_c0):
    rt.check_index_range("pool2d", x=x.size, out=out.size)
    rt.require_contiguous("pool2d", x, out)
    n, h, w, c = x.shape
    ph, pw = pool
    sh, sw = stride
    pt, pb, pl, pr = pad
    oh = conv_output_size(h, ph, sh, pt, pb)
    ow = conv_output_size(w, pw, sw, pl, pr)
    stride_out = out.shape[-1]
    vec = 4 if (c % 4 == 0 and stride_out % 4 == 0 and out_c0 % 4 == 0 and rt.aligned16(x, out)) else 1
    total = n * oh * ow * (c // vec)
    i = rt.i32
    rt.launch(FAMILY, pool_expression(is_max, vec), *rt.grid1d(total, BLOCK),
              (x, out, i(n), i(h), i(w), i(c), i(oh), i(ow), i(ph), i(pw), i(sh), i(sw), i(pt), i(pl),
               i(bool(count_include_pad)), i(stride_out), i(out_c0)))


def max_pool2d(x, out, pool, stride, pad, out_c0=0):
    _pool(x, out, pool, stride, pad, True, False, out_c0)


def avg_pool2d(x, out, pool, stride, pad, count_include_pad, out_c0=0):
    _pool(x, out, pool, stride, pad, False, count_include_pad, out_c0)


def _global(x, out, is_max):
    rt.check_index_range("global_pool", x=x.size)
    rt.require_contiguous("global_pool", x, out)
    n, h, w, c = x.shape
    vec = 4 if c % 4 == 0 and rt.aligned16(x, out) else 1
    blocks = n * rt.cdiv(c // vec, GLOBAL_BLOCK[0])
    rt.launch(FAMILY, global_expression(is_max, vec), (blocks, 1, 1), GLOBAL_BLOCK + (1,),
              (x, out, rt.i32(n), rt.i32(h * w), rt.i32(c)))


def global_avg_pool(x, out):
    _global(x, out, False)


def global_max_pool(x, out):
    _global(x, out, True)
