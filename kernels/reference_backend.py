"""The reference oracle behind the backend contract of ``kernels/__init__.py``.

Lets the runtime run a whole network on ``kernels.reference`` (slow, exact), so graph passes and
the memory planner are tested independently of the fast kernels.
"""

from types import SimpleNamespace

import numpy as np

from kernels import reference as ref


def _packed(kernel, bias, variant):
    kernel = np.asarray(kernel, np.float32)
    bias = None if bias is None else np.asarray(bias, np.float32)
    return SimpleNamespace(kernel=kernel, bias=bias, variant=variant)


def _write(out, y, out_c0):
    out[..., out_c0:out_c0 + y.shape[-1]] = y


def pack_conv2d(kernel, bias):
    return _packed(kernel, bias, "reference")


def conv2d(x, packed, out, stride, pad, act=None, residual=None, out_c0=0):
    _write(out, ref.conv2d(x, packed.kernel, packed.bias, stride, pad, act, residual), out_c0)


def pack_depthwise(kernel, bias):
    return _packed(kernel, bias, "reference")


def depthwise_conv2d(x, packed, out, stride, pad, act=None, out_c0=0):
    _write(out, ref.depthwise_conv2d(x, packed.kernel, packed.bias, stride, pad, act), out_c0)


def max_pool2d(x, out, pool, stride, pad, out_c0=0):
    _write(out, ref.max_pool2d(x, pool, stride, pad), out_c0)


def avg_pool2d(x, out, pool, stride, pad, count_include_pad, out_c0=0):
    _write(out, ref.avg_pool2d(x, pool, stride, pad, count_include_pad), out_c0)


def global_avg_pool(x, out):
    out[...] = ref.global_avg_pool(x)


def global_max_pool(x, out):
    out[...] = ref.global_max_pool(x)


def add(a, b, out, act=None):
    out[...] = ref.add(a, b, act)


def pack_dense(kernel, bias):
    return _packed(kernel, bias, "reference")


def dense(x, packed, out, act=None):
    out[...] = ref.dense(x, packed.kernel, packed.bias, act)


def softmax(x, out):
    out[...] = ref.softmax(x)


def activation(x, out, act):
    out[...] = ref.activation(x, act)


def channel_affine(x, scale, shift, out, act=None):
    out[...] = ref.channel_affine(x, scale, shift, act)


def concat(xs, out):
    out[...] = ref.concat(xs)


def zero_pad(x, out, pad):
    out[...] = ref.zero_pad(x, pad)


def mul(a, b, out, act=None):
    out[...] = ref.mul(a, b, act)


def layer_norm(x, gamma, beta, out, eps):
    out[...] = ref.layer_norm(x, gamma, beta, eps)


def lrn(x, out, size, alpha, beta, bias):
    out[...] = ref.lrn(x, size, alpha, beta, bias)


def channel_gather(x, index, out):
    out[...] = ref.channel_gather(x, index)


def crop(x, out, box):
    out[...] = ref.crop(x, box)
