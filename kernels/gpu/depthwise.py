"""depthwise_conv2d on the GPU (``depthwise.cu``): float4 channel vectors, kernel size as a template."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from kernels import conv_output_size
from kernels.gpu import runtime as rt

FAMILY = "depthwise"
KSIZES = ((3, 3), (5, 5), (0, 0))         # (0, 0): any size, read at run time
BLOCK = 256


def _ks(kh, kw):
    return (kh, kw) if (kh, kw) in KSIZES else (0, 0)


def vec_expression(kh, kw, vout):
    return f"depthwise_vec<{kh}, {kw}, {'true' if vout else 'false'}>"


def scalar_expression(kh, kw):
    return f"depthwise_scalar<{kh}, {kw}>"


SPECIALISATIONS = tuple([vec_expression(a, b, v) for a, b in KSIZES for v in (False, True)]
                        + [scalar_expression(a, b) for a, b in KSIZES])


def pack_depthwise(kernel, bias):
    """(kh, kw, C, mult) -> device [kh*kw, C*mult] (output channel c*mult + m), bias [C*mult]."""
    kernel = np.asarray(kernel, np.float32)
    kh, kw, c, mult = kernel.shape
    b = np.zeros(c * mult, np.float32) if bias is None else np.asarray(bias, np.float32).reshape(-1)
    kind = "vec4" if mult == 1 and c % 4 == 0 else "scalar"
    return SimpleNamespace(w=rt.upload(kernel.reshape(kh * kw, c * mult)), bias=rt.upload(b),
                           kh=kh, kw=kw, c=c, mult=mult, variant=f"depthwise{kh}x{kw}-{kind}")


def depthwise_conv2d(x, packed, out, stride, pad, act=None, out_c0=0):
    p = packed
    rt.check_index_range("depthwise_conv2d", x=x.size, out=out.size)
    rt.require_contiguous("depthwise_conv2d", x, out)
    n, h, w, c = x.shape
    sh, sw = stride
    pt, pb, pl, pr = pad
    oh = conv_output_size(h, p.kh, sh, pt, pb)
    ow = conv_output_size(w, p.kw, sw, pl, pr)
    stride_out = out.shape[-1]
    ks = _ks(p.kh, p.kw)
    i = rt.i32
    tail = (i(sh), i(sw), i(pt), i(pl), i(stride_out), i(out_c0), rt.act_code(act))
    if p.mult == 1 and c % 4 == 0 and rt.aligned16(x):
        vout = stride_out % 4 == 0 and out_c0 % 4 == 0 and rt.aligned16(out)
        total = n * oh * ow * (c // 4)
        rt.launch(FAMILY, vec_expression(*ks, vout), *rt.grid1d(total, BLOCK),
                  (x, p.w, p.bias, out, i(n), i(h), i(w), i(c), i(oh), i(ow), i(p.kh), i(p.kw)) + tail)
    else:
        total = n * oh * ow * c * p.mult
        rt.launch(FAMILY, scalar_expression(*ks), *rt.grid1d(total, BLOCK),
                  (x, p.w, p.bias, out, i(n), i(h), i(w), i(c), i(p.mult), i(oh), i(ow), i(p.kh), i(p.kw)) + tail)
