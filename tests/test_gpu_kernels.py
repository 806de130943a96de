"""CUDA kernels (kernels.gpu) against the NumPy oracle on random odd shapes.

Max relative error max|ours - ref| / max|ref| <= 1e-5 (fp32 path); ops with an activation are scaled
by the pre-activation reference. Outputs written at ``out_c0`` into a wider buffer must leave the
other channels untouched (sentinel-filled), and every variant (each conv tile, A mode, float4 or
scalar epilogue, misaligned buffers) is forced at least once. Skips with the reason when no CUDA
device is usable (cupy missing, no driver, or zero devices).
"""

import numpy as np
import pytest

from kernels import conv_output_size
from kernels import reference as ref
from kernels.gpu import unavailable_reason

REASON = unavailable_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=f"no usable CUDA device: {REASON}")]

TOL = 1e-5
SENTINEL = np.float32(-7.25)


@pytest.fixture(scope="module")
def g():
    import kernels.gpu as g
    return g


@pytest.fixture(scope="module")
def cp():
    import cupy
    return cupy


def rel_err(ours, want, scale_of=None):
    want = np.asarray(want, np.float64)
    scale = max(np.abs(np.asarray(want if scale_of is None else scale_of, np.float64)).max(), 1e-30)
    return float(np.abs(np.asarray(ours, np.float64) - want).max() / scale)


def rand(rng, *shape):
    return rng.uniform(-3, 3, shape).astype(np.float32)


def device(cp, a, misalign=False):
    """A device copy of a; with misalign, one that starts 4 bytes past a 16-byte boundary."""
    if not misalign:
        return cp.asarray(a)
    flat = cp.empty(a.size + 1, cp.float32)
    view = flat[1:].reshape(a.shape)
    view[...] = cp.asarray(a)
    return view


def wide(cp, shape, c, before, after):
    return cp.full(tuple(shape[:-1]) + (before + c + after,), SENTINEL, cp.float32)


def check_wide(out, want, c0, scale_of=None):
    out = out.get()
    c = want.shape[-1]
    assert rel_err(out[..., c0:c0 + c], want, scale_of) <= TOL
    assert np.all(out[..., :c0] == SENTINEL) and np.all(out[..., c0 + c:] == SENTINEL)


CONV_CASES = [
    # n, h, w, cin, cout, kh, kw, stride, pad, act, residual, (before, after)
    (1, 19, 17, 3, 13, 7, 7, (2, 2), (3, 3, 3, 3), "relu", False, (0, 0)),      # scalar A (cin 3)
    (2, 15, 13, 8, 20, 3, 3, (1, 1), (1, 1, 1, 1), None, True, (4, 8)),         # vec4 A, float4 out, slice
    (2, 9, 11, 12, 36, 1, 1, (1, 1), (0, 0, 0, 0), "relu6", True, (0, 0)),      # pointwise
    (3, 10, 9, 16, 7, 3, 3, (2, 2), (0, 1, 0, 1), "relu", False, (3, 2)),       # odd cout: scalar out
    (1, 8, 8, 20, 33, 1, 1, (2, 2), (0, 0, 0, 0), None, False, (0, 0)),         # 1x1 stride 2 (generic)
    (1, 12, 7, 4, 9, 1, 7, (1, 1), (0, 0, 3, 3), "relu", False, (1, 0)),        # 1x7 'same'
    (2, 7, 12, 8, 64, 7, 1, (1, 1), (3, 3, 0, 0), "relu", True, (0, 0)),        # 7x1 'same'
    (1, 6, 5, 36, 130, 3, 3, (1, 2), (2, 0, 1, 2), None, True, (0, 4)),         # asymmetric everything
]


def _conv(g, cp, rng, case, misalign=False):
    n, h, w, cin, cout, kh, kw, stride, pad, act, use_res, (before, after) = case
    x = rand(rng, n, h, w, cin)
    k = rand(rng, kh, kw, cin, cout) / np.sqrt(kh * kw * cin)
    b = rand(rng, cout)
    oh = conv_output_size(h, kh, stride[0], pad[0], pad[1])
    ow = conv_output_size(w, kw, stride[1], pad[2], pad[3])
    res = rand(rng, n, oh, ow, cout) if use_res else None
    out = wide(cp, (n, oh, ow, cout), cout, before, after)
    packed = g.pack_conv2d(k, b)
    g.conv2d(device(cp, x, misalign), packed, out, stride, pad, act,
             None if res is None else device(cp, res, misalign), before)
    want = ref.conv2d(x, k, b, stride, pad, act, res)
    check_wide(out, want, before, ref.conv2d(x, k, b, stride, pad, None, res))


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d(g, cp, case):
    _conv(g, cp, np.random.default_rng(), case)


@pytest.mark.parametrize("tile", [0, 1, 2, 3])
def test_conv2d_every_tile(g, cp, tile, monkeypatch):
    from kernels.gpu import conv

    monkeypatch.setattr(conv, "pick_tile", lambda m, n, sms: conv.TILES[tile])
    rng = np.random.default_rng()
    for case in CONV_CASES[:4]:
        _conv(g, cp, rng, case)


def test_conv2d_misaligned_buffers_take_the_scalar_path(g, cp):
    _conv(g, cp, np.random.default_rng(), CONV_CASES[1], misalign=True)
    _conv(g, cp, np.random.default_rng(), CONV_CASES[2], misalign=True)


@pytest.mark.parametrize("kh,kw,mult,c,stride,pad,before", [
    (3, 3, 1, 32, (1, 1), (1, 1, 1, 1), 0),       # vec4, 3x3 instance
    (3, 3, 1, 16, (2, 2), (0, 1, 0, 1), 4),       # MobileNet's stride-2 padding, slice
    (5, 5, 1, 12, (1, 1), (2, 2, 2, 2), 0),       # 5x5 instance
    (7, 7, 1, 8, (2, 1), (3, 3, 2, 4), 0),        # run-time kernel size
    (3, 3, 2, 5, (1, 1), (1, 1, 1, 1), 3),        # multiplier 2, odd channels: scalar kernel
    (3, 3, 1, 7, (1, 1), (1, 1, 1, 1), 0),        # odd channels: scalar kernel
])
@pytest.mark.parametrize("act", [None, "relu6"])
def test_depthwise(g, cp, kh, kw, mult, c, stride, pad, before, act):
    rng = np.random.default_rng()
    x = rand(rng, 2, 13, 11, c)
    k = rand(rng, kh, kw, c, mult)
    b = rand(rng, c * mult)
    oh = conv_output_size(13, kh, stride[0], pad[0], pad[1])
    ow = conv_output_size(11, kw, stride[1], pad[2], pad[3])
    out = wide(cp, (2, oh, ow, c * mult), c * mult, before, 1)
    g.depthwise_conv2d(cp.asarray(x), g.pack_depthwise(k, b), out, stride, pad, act, before)
    check_wide(out, ref.depthwise_conv2d(x, k, b, stride, pad, act), before,
               ref.depthwise_conv2d(x, k, b, stride, pad, None))


@pytest.mark.parametrize("c,before", [(16, 0), (16, 8), (7, 3), (12, 1)])
@pytest.mark.parametrize("pool,stride,pad", [((3, 3), (2, 2), (0, 0, 0, 0)), ((3, 3), (1, 1), (1, 1, 1, 1)),
                                             ((2, 3), (2, 1), (0, 1, 1, 1))])
def test_pooling(g, cp, c, before, pool, stride, pad):
    rng = np.random.default_rng()
    x = rand(rng, 2, 11, 9, c)
    oh = conv_output_size(11, pool[0], stride[0], pad[0], pad[1])
    ow = conv_output_size(9, pool[1], stride[1], pad[2], pad[3])
    xd = cp.asarray(x)
    out = wide(cp, (2, oh, ow, c), c, before, 2)
    g.max_pool2d(xd, out, pool, stride, pad, before)
    check_wide(out, ref.max_pool2d(x, pool, stride, pad), before)
    for include in (False, True):
        out = wide(cp, (2, oh, ow, c), c, before, 2)
        g.avg_pool2d(xd, out, pool, stride, pad, include, before)
        check_wide(out, ref.avg_pool2d(x, pool, stride, pad, include), before)


@pytest.mark.parametrize("shape", [(1, 7, 7, 64), (3, 5, 3, 13), (2, 1, 1, 8)])
def test_global_pooling(g, cp, shape):
    x = rand(np.random.default_rng(), *shape)
    out = cp.empty((shape[0], shape[-1]), cp.float32)
    g.global_avg_pool(cp.asarray(x), out)
    assert rel_err(out.get(), ref.global_avg_pool(x)) <= TOL
    g.global_max_pool(cp.asarray(x), out)
    assert np.array_equal(out.get(), ref.global_max_pool(x))


@pytest.mark.parametrize("batch,k,n", [(1, 1001, 37), (1, 2048, 1000), (1, 7, 3), (5, 300, 129), (33, 64, 10)])
@pytest.mark.parametrize("act", [None, "relu"])
def test_dense(g, cp, batch, k, n, act):
    rng = np.random.default_rng()
    x, w, b = rand(rng, batch, k), rand(rng, k, n) / np.sqrt(k), rand(rng, n)
    out = cp.full((batch, n), SENTINEL, cp.float32)
    g.dense(cp.asarray(x), g.pack_dense(w, b), out, act)
    assert rel_err(out.get(), ref.dense(x, w, b, act), ref.dense(x, w, b)) <= TOL


@pytest.mark.parametrize("shape", [(2, 5, 7, 12), (1, 3, 3, 5), (4, 1001)])
@pytest.mark.parametrize("act", [None, "relu", "relu6"])
def test_add_activation_affine(g, cp, shape, act):
    rng = np.random.default_rng()
    a, b = rand(rng, *shape), rand(rng, *shape)
    out = cp.full(shape, SENTINEL, cp.float32)
    g.add(cp.asarray(a), cp.asarray(b), out, act)
    assert rel_err(out.get(), ref.add(a, b, act), ref.add(a, b)) <= TOL
    g.activation(cp.asarray(a), out, act)
    assert rel_err(out.get(), ref.activation(a, act), a) <= TOL
    s, t = rand(rng, shape[-1]), rand(rng, shape[-1])
    g.channel_affine(cp.asarray(a), s, t, out, act)
    assert rel_err(out.get(), ref.channel_affine(a, s, t, act), ref.channel_affine(a, s, t)) <= TOL


def test_concat_zero_pad_softmax(g, cp):
    rng = np.random.default_rng()
    xs = [rand(rng, 2, 5, 3, c) for c in (4, 3, 8, 1)]
    out = cp.full((2, 5, 3, 16), SENTINEL, cp.float32)
    g.concat([cp.asarray(x) for x in xs], out)
    assert np.array_equal(out.get(), ref.concat(xs))
    for c in (3, 8):
        x = rand(rng, 2, 5, 4, c)
        out = cp.full((2, 6, 8, c), SENTINEL, cp.float32)
        g.zero_pad(cp.asarray(x), out, (0, 1, 3, 1))
        assert np.array_equal(out.get(), ref.zero_pad(x, (0, 1, 3, 1)))
    for n in (1000, 11, 1):
        x = rand(rng, 3, n) * 5
        out = cp.full((3, n), SENTINEL, cp.float32)
        g.softmax(cp.asarray(x), out)
        assert rel_err(out.get(), ref.softmax(x)) <= TOL


def test_specialisations_compile_once(g, cp):
    from kernels.gpu import runtime

    x = cp.asarray(rand(np.random.default_rng(), 1, 4, 4, 4))
    out = cp.empty_like(x)
    g.add(x, x, out)
    before = runtime.compiled_count()
    g.add(x, x, out)
    g.add(x, x, out, "relu")
    assert runtime.compiled_count() == before
