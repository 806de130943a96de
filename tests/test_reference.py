"""The oracle itself, checked against an independent implementation (torch.nn.functional, float64)."""

import numpy as np
import pytest

from kernels import reference as ref

torch = pytest.importorskip("torch")
F = torch.nn.functional


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x, np.float64).transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.numpy().transpose(0, 2, 3, 1)


def torch_pad(x, pad, value=0.0):
    t, b, l, r = pad
    return F.pad(nchw(x), (l, r, t, b), value=value)


@pytest.mark.parametrize("k,stride,pad", [((3, 3), (1, 1), (1, 1, 1, 1)), ((1, 7), (1, 1), (0, 0, 3, 3)),
                                          ((7, 7), (2, 2), (3, 3, 3, 3)), ((3, 3), (2, 2), (0, 1, 0, 1))])
def test_conv2d_against_torch(k, stride, pad):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 11, 9, 5)).astype(np.float32)
    w = rng.normal(size=k + (5, 6)).astype(np.float32)
    b = rng.normal(size=6).astype(np.float32)
    want = F.conv2d(torch_pad(x, pad), torch.from_numpy(w.astype(np.float64).transpose(3, 2, 0, 1)),
                    torch.from_numpy(b.astype(np.float64)), stride=stride)
    np.testing.assert_allclose(ref.conv2d(x, w, b, stride, pad), nhwc(want), rtol=1e-5, atol=1e-5)


def test_depthwise_against_torch_groups():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 8, 7, 4)).astype(np.float32)
    w = rng.normal(size=(3, 3, 4, 2)).astype(np.float32)      # output channel c*2 + m
    wt = torch.from_numpy(w.astype(np.float64).transpose(2, 3, 0, 1).reshape(8, 1, 3, 3))
    want = F.conv2d(torch_pad(x, (0, 1, 0, 1)), wt, stride=2, groups=4)
    np.testing.assert_allclose(ref.depthwise_conv2d(x, w, None, (2, 2), (0, 1, 0, 1)), nhwc(want),
                               rtol=1e-5, atol=1e-5)


def test_pools_against_torch():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 9, 8, 3)).astype(np.float32)
    want = F.max_pool2d(torch_pad(x, (1, 1, 1, 1), value=-np.inf), 3, 2)
    np.testing.assert_allclose(ref.max_pool2d(x, (3, 3), (2, 2), (1, 1, 1, 1)), nhwc(want), rtol=1e-6)
    inc = F.avg_pool2d(nchw(x), 3, 1, padding=1, count_include_pad=True)
    exc = F.avg_pool2d(nchw(x), 3, 1, padding=1, count_include_pad=False)
    np.testing.assert_allclose(ref.avg_pool2d(x, (3, 3), (1, 1), (1, 1, 1, 1), True), nhwc(inc), rtol=1e-5)
    np.testing.assert_allclose(ref.avg_pool2d(x, (3, 3), (1, 1), (1, 1, 1, 1), False), nhwc(exc), rtol=1e-5)
    np.testing.assert_allclose(ref.global_avg_pool(x), nchw(x).mean(dim=(2, 3)).numpy(), rtol=1e-5)


def test_dense_softmax_batchnorm_and_acts():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 10)).astype(np.float32) * 4
    w, b = rng.normal(size=(10, 7)).astype(np.float32), rng.normal(size=7).astype(np.float32)
    np.testing.assert_allclose(ref.dense(x, w, b), x.astype(np.float64) @ w + b, rtol=1e-5)
    np.testing.assert_allclose(ref.softmax(x), F.softmax(torch.from_numpy(x.astype(np.float64)), -1).numpy(),
                               rtol=1e-6)
    np.testing.assert_array_equal(ref.relu6(x), np.clip(x, 0, 6))
    g, be, m, v = (rng.uniform(0.5, 1.5, 10), rng.normal(size=10), rng.normal(size=10), rng.uniform(0.5, 1.5, 10))
    want = F.batch_norm(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(m), torch.from_numpy(v),
                        torch.from_numpy(g), torch.from_numpy(be), training=False, eps=1e-3)
    np.testing.assert_allclose(ref.batch_norm(x, g, be, m, v, 1e-3), want.numpy(), rtol=1e-5, atol=1e-6)


TORCH_ACTIVATIONS = {
    "relu": F.relu, "relu6": F.relu6, "sigmoid": torch.sigmoid, "silu": F.silu, "hard_sigmoid": F.hardsigmoid,
    "hard_silu": F.hardswish, "gelu": F.gelu, "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "tanh": torch.tanh,
}


def test_every_activation_against_torch():
    import kernels

    x = np.linspace(-12, 12, 2001).reshape(1, 1, 1, -1)
    assert set(TORCH_ACTIVATIONS) == {a for a in kernels.ACTIVATIONS if a}
    for act, fn in TORCH_ACTIVATIONS.items():
        want = fn(torch.tensor(x, dtype=torch.float64)).numpy()
        np.testing.assert_allclose(ref.activation(x, act), want, rtol=1e-6, atol=1e-7, err_msg=act)
