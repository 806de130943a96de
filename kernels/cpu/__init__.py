"""Numba CPU backend: the op set of ``kernels/__init__.py``, one module per kernel family.

    conv.py        conv2d (any kh x kw, stride, asymmetric padding) incl. the 1x1 pointwise path
    depthwise.py   depthwise_conv2d
    pool.py        max/avg/global pooling
    dense.py       dense
    elementwise.py add, activation, channel_affine, softmax, concat, zero_pad
"""

from kernels.cpu.conv import conv2d, pack_conv2d
from kernels.cpu.dense import dense, pack_dense
from kernels.cpu.depthwise import depthwise_conv2d, pack_depthwise
from kernels.cpu.elementwise import activation, add, channel_affine, concat, softmax, zero_pad
from kernels.cpu.pool import avg_pool2d, global_avg_pool, global_max_pool, max_pool2d

__all__ = [
    "pack_conv2d", "conv2d", "pack_depthwise", "depthwise_conv2d", "pack_dense", "dense",
    "max_pool2d", "avg_pool2d", "global_avg_pool", "global_max_pool",
    "add", "activation", "channel_affine", "softmax", "concat", "zero_pad",
]
