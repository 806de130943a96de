"""Plain NumPy oracle for every op. Simple and obviously right, not fast.

Everything is computed in float64 and returned as float32, so a fast float32 kernel is compared
against something more accurate than itself. Layouts and argument meanings are the ones in
``kernels/__init__.py``; these functions return new arrays instead of writing into ``out``.
"""

import numpy as np

from kernels import conv_output_size


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _erfc(x):
    import math

    return np.vectorize(math.erfc, otypes=[np.float64])(x)


def _act(y, act):
    if act is None:
        return y
    if act == "relu":
        return np.maximum(y, 0.0)
    if act == "relu6":
        return np.clip(y, 0.0, 6.0)
    if act == "sigmoid":
        # = 1 / (1 + exp(-y)): without overflow, and with relative accuracy on the negative tail (where
        # 0.5 * (1 + tanh(y / 2)) cancels: 5% off at y = -35)
        return np.exp(-np.logaddexp(0.0, -y))
    if act == "silu":
        return y * _act(y, "sigmoid")
    if act == "hard_sigmoid":
        return np.clip(y / 6.0 + 0.5, 0.0, 1.0)
    if act == "hard_silu":
        return y * np.clip(y / 6.0 + 0.5, 0.0, 1.0)
    if act == "gelu":
        return 0.5 * y * _erfc(-y / np.sqrt(2.0))       # 1 + erf(z) = erfc(-z), exact also for y << 0
    if act == "gelu_tanh":
        # 0.5 * y * (1 + tanh(u)) = y * sigmoid(2u): the same, without the cancellation for y << 0
        return y * _act(2.0 * np.sqrt(2.0 / np.pi) * (y + 0.044715 * y ** 3), "sigmoid")
    if act == "tanh":
        return np.tanh(y)
    raise ValueError(f"unknown activation {act!r}")


def zero_pad(x, pad):
    t, b, l, r = pad
    return np.pad(_f64(x), ((0, 0), (t, b), (l, r), (0, 0))).astype(np.float32)


def _windows(x, kh, kw, stride, pad, fill=0.0):
    """All kh x kw windows of padded x: (N, OH, OW, kh, kw, C), with padded cells set to fill."""
    t, b, l, r = pad
    xp = np.pad(_f64(x), ((0, 0), (t, b), (l, r), (0, 0)), constant_values=fill)
    n, h, w, c = x.shape
    sh, sw = stride
    oh = conv_output_size(h, kh, sh, t, b)
    ow = conv_output_size(w, kw, sw, l, r)
    win = np.empty((n, oh, ow, kh, kw, c))
    for i in range(kh):
        for j in range(kw):
            win[:, :, :, i, j, :] = xp[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :]
    return win


def conv2d(x, w, b=None, stride=(1, 1), pad=(0, 0, 0, 0), act=None, residual=None):
    """x (N,H,W,Cin), w (kh,kw,Cin,Cout) -> (N,OH,OW,Cout)."""
    kh, kw, _, cout = w.shape
    y = np.tensordot(_windows(x, kh, kw, stride, pad), _f64(w), axes=([3, 4, 5], [0, 1, 2]))
    if b is not None:
        y = y + _f64(b)
    if residual is not None:
        y = y + _f64(residual)
    return _act(y, act).astype(np.float32)


def pointwise_conv2d(x, w, b=None, stride=(1, 1), act=None, residual=None):
    """A 1x1 convolution; w is (Cin, Cout) or (1, 1, Cin, Cout)."""
    w = np.asarray(w).reshape(-1, np.asarray(w).shape[-1])
    return conv2d(x, w[None, None], b, stride, (0, 0, 0, 0), act, residual)


def depthwise_conv2d(x, w, b=None, stride=(1, 1), pad=(0, 0, 0, 0), act=None):
    """x (N,H,W,C), w (kh,kw,C,M) -> (N,OH,OW,C*M), output channel c*M + m."""
    kh, kw, c, m = w.shape
    win = _windows(x, kh, kw, stride, pad)                      # (N,OH,OW,kh,kw,C)
    y = np.einsum("nhwijc,ijcm->nhwcm", win, _f64(w))
    y = y.reshape(y.shape[:3] + (c * m,))
    if b is not None:
        y = y + _f64(b)
    return _act(y, act).astype(np.float32)


def separable_conv2d(x, dw, pw, b=None, stride=(1, 1), pad=(0, 0, 0, 0), act=None):
    """Depthwise (no bias) then pointwise with bias, as Keras' SeparableConv2D."""
    y = depthwise_conv2d(x, dw, None, stride, pad)
    return pointwise_conv2d(y, pw, b, act=act)


def max_pool2d(x, pool, stride, pad=(0, 0, 0, 0)):
    """Padded cells never win (they are -inf), as TF 'same' max pooling."""
    win = _windows(x, pool[0], pool[1], stride, pad, fill=-np.inf)
    return win.max(axis=(3, 4)).astype(np.float32)


def avg_pool2d(x, pool, stride, pad=(0, 0, 0, 0), count_include_pad=False):
    """count_include_pad=False divides by the number of real cells (Keras 'same' average pool)."""
    win = _windows(x, pool[0], pool[1], stride, pad)
    total = win.sum(axis=(3, 4))
    if count_include_pad:
        return (total / (pool[0] * pool[1])).astype(np.float32)
    ones = np.ones(x.shape[:3] + (1,))
    count = _windows(ones, pool[0], pool[1], stride, pad).sum(axis=(3, 4))
    return (total / count).astype(np.float32)


def global_avg_pool(x):
    return _f64(x).mean(axis=(1, 2)).astype(np.float32)


def global_max_pool(x):
    return np.asarray(x).max(axis=(1, 2)).astype(np.float32)


def add(a, b, act=None):
    return add_broadcast(a, b, act)


def dense(x, w, b=None, act=None):
    y = _f64(x) @ _f64(w)
    if b is not None:
        y = y + _f64(b)
    return _act(y, act).astype(np.float32)


def softmax(x):
    x = _f64(x)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def relu(x):
    return _act(_f64(x), "relu").astype(np.float32)


def relu6(x):
    return _act(_f64(x), "relu6").astype(np.float32)


def activation(x, act):
    return _act(_f64(x), act).astype(np.float32)


def batch_norm(x, gamma, beta, mean, var, eps):
    """Inference batch norm over the last axis; gamma/beta may be None (scale/center off)."""
    c = np.asarray(x).shape[-1]
    gamma = np.ones(c) if gamma is None else _f64(gamma)
    beta = np.zeros(c) if beta is None else _f64(beta)
    y = (_f64(x) - _f64(mean)) / np.sqrt(_f64(var) + eps) * gamma + beta
    return y.astype(np.float32)


def channel_affine(x, scale, shift, act=None):
    return _act(_f64(x) * _f64(scale) + _f64(shift), act).astype(np.float32)


def concat(xs):
    return np.concatenate([np.asarray(x, dtype=np.float32) for x in xs], axis=-1)


def _per_channel(a, b):
    """``b`` as ``a``'s shape, or a per-sample channel vector (N, C) broadcast over a's spatial axes."""
    b = _f64(b)
    if b.shape != np.shape(a):
        b = b.reshape((b.shape[0],) + (1,) * (np.ndim(a) - 2) + (b.shape[-1],))
    return b


def add_broadcast(a, b, act=None):
    """a + b where b is a's shape or (N, C): the per-channel Add of squeeze-excite style graphs."""
    return _act(_f64(a) + _per_channel(a, b), act).astype(np.float32)


def mul(a, b, act=None):
    """a * b where b is a's shape or (N, C) (squeeze-excite: a feature map scaled per channel)."""
    return _act(_f64(a) * _per_channel(a, b), act).astype(np.float32)


def layer_norm(x, gamma, beta, eps):
    """Normalise over the last axis (channels): (x - mean) / sqrt(var + eps) * gamma + beta."""
    x = _f64(x)
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return ((x - mu) / np.sqrt(var + eps) * _f64(gamma) + _f64(beta)).astype(np.float32)


def lrn(x, size, alpha, beta, bias):
    """ONNX LRN across channels: x / (bias + alpha / size * sum of x^2 over the window)^beta, the
    window being channels [c - floor((size - 1) / 2), c + ceil((size - 1) / 2)]."""
    x = _f64(x)
    c = x.shape[-1]
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = np.pad(x * x, [(0, 0)] * (x.ndim - 1) + [(lo, hi)])
    s = sum(sq[..., i:i + c] for i in range(size))
    return (x / (bias + alpha / size * s) ** beta).astype(np.float32)


def channel_gather(x, index):
    """out[..., j] = x[..., index[j]] (channel slices, splits and shuffles)."""
    return np.asarray(x, np.float32)[..., np.asarray(index, np.int64)].copy()


def crop(x, box):
    """x without ``box`` = (top, bottom, left, right) rows and columns at the borders."""
    t, b, l, r = box
    n, h, w, c = np.shape(x)
    return np.array(np.asarray(x, np.float32)[:, t:h - b, l:w - r, :])
