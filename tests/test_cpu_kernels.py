"""Numba CPU kernels other than convolution, checked against kernels.reference.

Every op is compared with the NumPy oracle by max relative error max|ours - ref| / max|ref| <= 1e-5
over hypothesis-drawn shapes (odd channel counts, asymmetric padding, strides, batch 1..3), with
1 thread (serial workers) and 2 threads (parallel launchers forced on even for tiny shapes).
Outputs written at ``out_c0`` into a wider buffer must leave the other channels untouched.
"""

import contextlib
import importlib

import numba
import numpy as np
import pytest
from helpers import numba_threads, rand, rel_err
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import kernels.cpu.elementwise as ew
from kernels import ACT_CODES, ACTIVATIONS, conv_output_size
from kernels import reference as ref
from kernels.cpu import common
from kernels.cpu import depthwise as dw
from kernels.cpu import layout as lay
from kernels.cpu import normalize as norm
from kernels.cpu import pool as pl

# kernels.cpu re-exports the function `dense`, which shadows the submodule attribute.
dn = importlib.import_module("kernels.cpu.dense")

TOL = 1e-5
SENTINEL = np.float32(-7.25)
THREADS = [1, min(2, numba.config.NUMBA_NUM_THREADS)]
HYP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
acts = st.sampled_from([None, "relu", "relu6"])
all_acts = st.sampled_from(ACTIVATIONS)


@contextlib.contextmanager
def threads(k):
    """Run with k numba threads; with k > 1 the parallel launchers are used even for tiny inputs."""
    old_bytes = common.PARALLEL_BYTES
    common.PARALLEL_BYTES = 0 if k > 1 else old_bytes
    try:
        with numba_threads(k):
            yield
    finally:
        common.PARALLEL_BYTES = old_bytes


def wide_out(n, oh, ow, c, extra_before, extra_after):
    return np.full((n, oh, ow, extra_before + c + extra_after), SENTINEL, np.float32)


def check_wide(out, want, c0, scale_of=None):
    c = want.shape[-1]
    assert rel_err(out[..., c0:c0 + c], want, scale_of) <= TOL
    assert np.all(out[..., :c0] == SENTINEL) and np.all(out[..., c0 + c:] == SENTINEL)


# ---------------------------------------------------------------- depthwise


@st.composite
def window_cases(draw, max_k=5):
    # Half the draws are the windows with compiled interiors (2x2, 3x3, 5x5), half any size.
    kh, kw = draw(st.one_of(st.sampled_from([(2, 2), (3, 3), (5, 5)]),
                            st.tuples(st.integers(1, max_k), st.integers(1, max_k))))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    pad = tuple(draw(st.integers(0, k - 1)) for k in (kh, kh, kw, kw))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    assume(h + pad[0] + pad[1] >= kh and w + pad[2] + pad[3] >= kw)
    return (kh, kw), (sh, sw), pad, (h, w)


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(case=window_cases(), n=st.integers(1, 3), c=st.integers(1, 37), mult=st.sampled_from([1, 1, 2, 3]),
       act=all_acts, with_bias=st.booleans(), extra=st.tuples(st.integers(0, 5), st.integers(0, 5)),
       seed=st.integers(0, 2**31 - 1))
def test_depthwise_matches_reference(nthreads, case, n, c, mult, act, with_bias, extra, seed):
    (kh, kw), stride, pad, (h, w) = case
    rng = np.random.default_rng(seed)
    x, k = rand(rng, n, h, w, c), rand(rng, kh, kw, c, mult)
    b = rand(rng, c * mult) if with_bias else None
    want = ref.depthwise_conv2d(x, k, b, stride, pad, act)
    out = wide_out(n, want.shape[1], want.shape[2], c * mult, *extra)
    packed = dw.pack_depthwise(k, b)
    with threads(nthreads):
        dw.depthwise_conv2d(x, packed, out, stride, pad, act, out_c0=extra[0])
    check_wide(out, want, extra[0], ref.depthwise_conv2d(x, k, b, stride, pad))


def test_depthwise_variant_choice():
    """Which depthwise kernel runs (checked here only; the tests around check the numbers): the
    window kernel compiled for 3x3 and 5x5 at multiplier 1 on maps at least as large as the window,
    the generic one otherwise."""
    rng = np.random.default_rng(2)
    got = {}
    for kh, kw, mult, h in [(3, 3, 1, 5), (5, 5, 1, 5), (3, 3, 1, 2), (3, 3, 2, 5), (2, 2, 1, 5), (1, 7, 1, 9)]:
        x, k = rand(rng, 1, h, h, 4), rand(rng, kh, kw, 4, mult)
        want = ref.depthwise_conv2d(x, k, None, (1, 1), (0, kh - 1, 0, kw - 1))
        packed = dw.pack_depthwise(k, None)
        dw.depthwise_conv2d(x, packed, np.empty_like(want), (1, 1), (0, kh - 1, 0, kw - 1))
        got[kh, kw, mult, h] = packed.variant
    assert got == {(3, 3, 1, 5): "dw3x3_m1", (5, 5, 1, 5): "dw5x5_m1", (3, 3, 1, 2): "dw_generic",
                   (3, 3, 2, 5): "dw_generic", (2, 2, 1, 5): "dw_generic", (1, 7, 1, 9): "dw_generic"}


@pytest.mark.parametrize("nthreads", THREADS)
@pytest.mark.parametrize("h,c,stride,pad", [
    (14, 64, (1, 1), (1, 1, 1, 1)),        # MobileNet 3x3 s1 'same'
    (15, 96, (2, 2), (0, 1, 0, 1)),        # MobileNet stride 2: extra row/col bottom/right only
    (19, 728, (1, 1), (1, 1, 1, 1)),       # Xception middle flow
    (7, 1024, (1, 1), (1, 1, 1, 1)),
])
def test_depthwise_network_shapes(nthreads, h, c, stride, pad):
    rng = np.random.default_rng(h * c)
    x, k, b = rand(rng, 1, h, h, c), rand(rng, 3, 3, c, 1), rand(rng, c)
    want = ref.depthwise_conv2d(x, k, b, stride, pad, "relu6")
    out = np.empty_like(want)
    with threads(nthreads):
        dw.depthwise_conv2d(x, dw.pack_depthwise(k, b), out, stride, pad, "relu6")
    assert rel_err(out, want) <= TOL


@pytest.mark.parametrize("nthreads", THREADS)
@pytest.mark.parametrize("act", ["silu", "hard_silu", "gelu", "sigmoid"])
def test_depthwise_smooth_activations_on_network_shapes(nthreads, act):
    """EfficientNet / MobileNetV3 depthwise layers with their activations: tiles, border pixels and both
    threads' row items (the activation runs over each item's output row)."""
    rng = np.random.default_rng(17)
    for h, c, k, stride, pad in [(15, 96, 3, (2, 2), (0, 1, 0, 1)), (14, 72, 5, (1, 1), (2, 2, 2, 2)),
                                 (9, 300, 3, (1, 1), (1, 1, 1, 1))]:
        x, w, b = rand(rng, 1, h, h, c), rand(rng, k, k, c, 1), rand(rng, c)
        want = ref.depthwise_conv2d(x, w, b, stride, pad, act)
        out = wide_out(1, want.shape[1], want.shape[2], c, 2, 3)
        with threads(nthreads):
            dw.depthwise_conv2d(x, dw.pack_depthwise(w, b), out, stride, pad, act, out_c0=2)
        check_wide(out, want, 2, ref.depthwise_conv2d(x, w, b, stride, pad))


@pytest.mark.parametrize("nthreads", THREADS)
@pytest.mark.parametrize("stride,pad,w", [
    ((1, 1), (1, 1, 1, 1), 13),            # 13 interior columns: three 4-pixel tiles + 1 left over
    ((2, 2), (0, 1, 0, 1), 17),            # stride-2 tile, extra column bottom/right
    ((2, 1), (1, 0, 0, 2), 10),            # sh != sw: the tile is keyed on the horizontal stride
    ((1, 2), (0, 0, 1, 1), 20),
])
def test_depthwise_3x3_tiles(nthreads, stride, pad, w):
    # 80 channels = one 64-channel chunk + 16, written at out_c0 = 3 of a wider buffer, batch 2.
    rng = np.random.default_rng(w)
    x, k, b = rand(rng, 2, 9, w, 80), rand(rng, 3, 3, 80, 1), rand(rng, 80)
    want = ref.depthwise_conv2d(x, k, b, stride, pad, "relu6")
    out = wide_out(2, want.shape[1], want.shape[2], 80, 3, 5)
    with threads(nthreads):
        dw.depthwise_conv2d(x, dw.pack_depthwise(k, b), out, stride, pad, "relu6", out_c0=3)
    check_wide(out, want, 3, ref.depthwise_conv2d(x, k, b, stride, pad))


# ---------------------------------------------------------------- pooling


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(case=window_cases(max_k=4), n=st.integers(1, 3), c=st.integers(1, 37), kind=st.sampled_from(
       ["max", "avg_in", "avg_ex"]), extra=st.tuples(st.integers(0, 5), st.integers(0, 5)),
       negative=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_pool_matches_reference(nthreads, case, n, c, kind, extra, negative, seed):
    pool, stride, pad, (h, w) = case
    rng = np.random.default_rng(seed)
    # All-negative inputs catch a kernel that lets a zero-padded cell win the max.
    x = rand(rng, n, h, w, c, lo=-5.0, hi=-1.0) if negative else rand(rng, n, h, w, c)
    if kind == "max":
        want = ref.max_pool2d(x, pool, stride, pad)
    else:
        want = ref.avg_pool2d(x, pool, stride, pad, count_include_pad=(kind == "avg_in"))
    out = wide_out(n, want.shape[1], want.shape[2], c, *extra)
    with threads(nthreads):
        if kind == "max":
            pl.max_pool2d(x, out, pool, stride, pad, out_c0=extra[0])
        else:
            pl.avg_pool2d(x, out, pool, stride, pad, kind == "avg_in", out_c0=extra[0])
    check_wide(out, want, extra[0])


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("strided", ["input", "output"])
def test_pool_of_strided_views(kind, strided):
    """3x3 pools of a channel slice and into a channel slice (neither C-contiguous): the
    constant-window kernels write ``out`` through flat views, so a strided output takes the general
    path; both must match."""
    rng = np.random.default_rng(5)
    x = rand(rng, 1, 20, 19, 40)
    if strided == "input":
        x = x[..., 8:32]
    pad = (1, 1, 1, 1)
    want = ref.max_pool2d(x, (3, 3), (1, 1), pad) if kind == "max" else ref.avg_pool2d(x, (3, 3), (1, 1), pad)
    fill = np.float32(-123.25)
    full = np.full(want.shape[:3] + (want.shape[3] + 10,), fill, np.float32)
    out = full[..., 4:4 + want.shape[3]] if strided == "output" else np.empty_like(want)
    if kind == "max":
        pl.max_pool2d(x, out, (3, 3), (1, 1), pad)
    else:
        pl.avg_pool2d(x, out, (3, 3), (1, 1), pad, False)
    assert rel_err(out, want) <= TOL
    if strided == "output":
        assert np.all(full[..., :4] == fill) and np.all(full[..., 4 + want.shape[3]:] == fill)


@pytest.mark.parametrize("nthreads", THREADS)
def test_pool_network_shapes(nthreads):
    rng = np.random.default_rng(0)
    x = rand(rng, 1, 112, 112, 64)            # ResNet50: pad 1 + 3x3/2 max pool
    want = ref.max_pool2d(x, (3, 3), (2, 2), (1, 1, 1, 1))
    out = np.empty_like(want)
    y = rand(rng, 2, 35, 35, 192)             # InceptionV3 branch pool: 3x3/1 same, pads excluded
    want_avg = ref.avg_pool2d(y, (3, 3), (1, 1), (1, 1, 1, 1), count_include_pad=False)
    out_avg = np.empty_like(want_avg)
    with threads(nthreads):
        pl.max_pool2d(x, out, (3, 3), (2, 2), (1, 1, 1, 1))
        pl.avg_pool2d(y, out_avg, (3, 3), (1, 1), (1, 1, 1, 1), False)
    assert rel_err(out, want) <= TOL and rel_err(out_avg, want_avg) <= TOL


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(n=st.integers(1, 3), h=st.integers(1, 10), w=st.integers(1, 10), c=st.integers(1, 70),
       seed=st.integers(0, 2**31 - 1))
def test_global_pools_match_reference(nthreads, n, h, w, c, seed):
    x = rand(np.random.default_rng(seed), n, h, w, c)
    avg, mx = np.empty((n, c), np.float32), np.empty((n, c), np.float32)
    with threads(nthreads):
        pl.global_avg_pool(x, avg)
        pl.global_max_pool(x, mx)
    assert rel_err(avg, ref.global_avg_pool(x)) <= TOL
    assert rel_err(mx, ref.global_max_pool(x)) <= TOL


def test_global_average_of_a_whole_large_map_keeps_float64_accuracy():
    """Squeeze-excite averages whole maps (EfficientNetB6: 264 x 264 pixels). A float32 running sum over
    70k values loses ~1e-5 of the mean on an offset map, which deep networks amplify past 1e-4 of the
    logits; rows summed in float32 and added in float64 keep it near float32 rounding."""
    rng = np.random.default_rng(3)
    x = (np.float32(1.0) + np.float32(0.1) * rng.standard_normal((2, 264, 264, 24))).astype(np.float32)
    want = x.astype(np.float64).mean(axis=(1, 2))
    naive = np.cumsum(x.reshape(2, -1, 24), axis=1, dtype=np.float32)[:, -1] / np.float32(264 * 264)
    assert float(np.max(np.abs(naive - want) / np.abs(want))) > 3e-6        # what a running sum gives
    got = np.empty((2, 24), np.float32)
    for nthreads in THREADS:
        with threads(nthreads):
            pl.global_avg_pool(x, got)
        assert float(np.max(np.abs(got - want) / np.abs(want))) < 3e-7


# ---------------------------------------------------------------- dense


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(n=st.integers(1, 9), k_in=st.integers(1, 300), n_out=st.integers(1, 200), act=all_acts,
       with_bias=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_dense_matches_reference(nthreads, n, k_in, n_out, act, with_bias, seed):
    rng = np.random.default_rng(seed)
    x, k = rand(rng, n, k_in), rand(rng, k_in, n_out, lo=-0.5, hi=0.5)
    b = rand(rng, n_out) if with_bias else None
    out = np.empty((n, n_out), np.float32)
    packed = dn.pack_dense(k, b)
    with threads(nthreads):
        dn.dense(x, packed, out, act)
    assert rel_err(out, ref.dense(x, k, b, act), ref.dense(x, k, b)) <= TOL


@pytest.mark.parametrize("nthreads", THREADS)
def test_dense_classifier_shape(nthreads):
    rng = np.random.default_rng(1)
    x, k, b = rand(rng, 2, 2048, lo=0.0), rand(rng, 2048, 1000, lo=-0.05, hi=0.05), rand(rng, 1000)
    out = np.empty((2, 1000), np.float32)
    with threads(nthreads):
        dn.dense(x, dn.pack_dense(k, b), out)
    assert rel_err(out, ref.dense(x, k, b)) <= TOL


# ---------------------------------------------------------------- element-wise


shapes = st.lists(st.integers(1, 9), min_size=1, max_size=4).map(tuple)


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(shape=shapes, act=all_acts, seed=st.integers(0, 2**31 - 1))
def test_add_and_activation(nthreads, shape, act, seed):
    rng = np.random.default_rng(seed)
    a, b = rand(rng, *shape, lo=-8, hi=8), rand(rng, *shape, lo=-8, hi=8)
    out, out2 = np.empty_like(a), np.empty_like(a)
    with threads(nthreads):
        ew.add(a, b, out, act)
        ew.activation(a, out2, act)
    assert rel_err(out, ref.add(a, b, act)) <= TOL
    assert rel_err(out2, ref.activation(a, act)) <= TOL


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(shape=shapes, act=all_acts, seed=st.integers(0, 2**31 - 1))
def test_channel_affine(nthreads, shape, act, seed):
    rng = np.random.default_rng(seed)
    x, scale, shift = rand(rng, *shape), rand(rng, shape[-1]), rand(rng, shape[-1])
    out = np.empty_like(x)
    with threads(nthreads):
        ew.channel_affine(x, scale, shift, out, act)
    assert rel_err(out, ref.channel_affine(x, scale, shift, act)) <= TOL


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(rows=st.integers(1, 5), k=st.integers(1, 1100), big=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_softmax(nthreads, rows, k, big, seed):
    # Large logits (+-80) overflow a softmax that does not subtract the row max first.
    x = rand(np.random.default_rng(seed), rows, k, lo=-80 if big else -4, hi=80 if big else 4)
    out = np.empty_like(x)
    with threads(nthreads):
        ew.softmax(x, out)
    assert rel_err(out, ref.softmax(x)) <= TOL
    assert np.allclose(out.sum(axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(n=st.integers(1, 3), hw=st.integers(1, 6), cs=st.lists(st.integers(1, 33), min_size=1, max_size=4),
       seed=st.integers(0, 2**31 - 1))
def test_concat(nthreads, n, hw, cs, seed):
    rng = np.random.default_rng(seed)
    xs = [rand(rng, n, hw, hw + 1, c) for c in cs]
    out = np.empty((n, hw, hw + 1, sum(cs)), np.float32)
    with threads(nthreads):
        ew.concat(xs, out)
    assert np.array_equal(out, ref.concat(xs))


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(n=st.integers(1, 3), h=st.integers(1, 8), w=st.integers(1, 8), c=st.integers(1, 19),
       pad=st.tuples(*[st.integers(0, 3)] * 4), seed=st.integers(0, 2**31 - 1))
def test_zero_pad(nthreads, n, h, w, c, pad, seed):
    x = rand(np.random.default_rng(seed), n, h, w, c)
    t, b, l, r = pad
    out = np.full((n, h + t + b, w + l + r, c), SENTINEL, np.float32)
    with threads(nthreads):
        ew.zero_pad(x, out, pad)
    assert np.array_equal(out, ref.zero_pad(x, pad))


def test_unknown_activation_is_rejected():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="gelu6"):
        ew.activation(x, np.empty_like(x), "gelu6")


# ---------------------------------------------------------------- the new ops: mul, per-channel add / mul,
# layer_norm, lrn, channel_gather, crop (and every activation through the vectorised act_span)


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(shape=shapes, act=all_acts, per_channel=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_mul_and_per_channel_add(nthreads, shape, act, per_channel, seed):
    rng = np.random.default_rng(seed)
    a = rand(rng, *shape, lo=-4, hi=4)
    b_shape = (shape[0], shape[-1]) if per_channel and len(shape) > 1 else shape
    b = rand(rng, *b_shape, lo=-2, hi=2)
    out, out2 = np.full_like(a, SENTINEL), np.full_like(a, SENTINEL)
    with threads(nthreads):
        ew.mul(a, b, out, act)
        ew.add(a, b, out2, act)
    assert rel_err(out, ref.mul(a, b, act)) <= TOL
    assert rel_err(out2, ref.add(a, b, act)) <= TOL


@pytest.mark.parametrize("nthreads", THREADS)
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_elementwise_network_shapes_every_activation(nthreads, act):
    """Squeeze-excite's scale on an EfficientNet-sized map (several BLOCKs per row group, both threads)
    and a standalone activation over a range that covers every branch of the fast functions."""
    rng = np.random.default_rng(7)
    a, s = rand(rng, 2, 28, 28, 144), rand(rng, 2, 144, lo=0.0, hi=1.0)
    x = np.linspace(-40, 40, 300_001, dtype=np.float32)
    out, y = np.empty_like(a), np.empty_like(x)
    with threads(nthreads):
        ew.mul(a, s, out, act)
        ew.activation(x, y, act)
    assert rel_err(out, ref.mul(a, s, act)) <= TOL
    assert rel_err(y, ref.activation(x, act)) <= TOL
    assert np.all(np.isfinite(y))


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(shape=st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple), c=st.integers(1, 300),
       eps=st.sampled_from([1e-6, 1e-3]), offset=st.sampled_from([0.0, 50.0]), seed=st.integers(0, 2**31 - 1))
def test_layer_norm(nthreads, shape, c, eps, offset, seed):
    # a large common offset catches a variance computed as E[x^2] - E[x]^2
    rng = np.random.default_rng(seed)
    x = rand(rng, *shape, c) + np.float32(offset)
    gamma, beta = rand(rng, c), rand(rng, c)
    out = np.full_like(x, SENTINEL)
    with threads(nthreads):
        norm.layer_norm(x, gamma, beta, out, eps)
    assert rel_err(out, ref.layer_norm(x, gamma, beta, eps)) <= TOL


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(shape=st.lists(st.integers(1, 7), min_size=1, max_size=3).map(tuple), c=st.integers(1, 70),
       size=st.integers(1, 9), beta=st.sampled_from([0.75, 0.5, 1.0, 0.6]), alpha=st.sampled_from([1e-4, 0.1, 2.0]),
       bias=st.sampled_from([1.0, 2.0, 0.5]), seed=st.integers(0, 2**31 - 1))
def test_lrn(nthreads, shape, c, size, beta, alpha, bias, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, *shape, c)
    out = np.full_like(x, SENTINEL)
    with threads(nthreads):
        norm.lrn(x, out, size, alpha, beta, bias)
    assert rel_err(out, ref.lrn(x, size, alpha, beta, bias)) <= TOL


index_cases = st.one_of(
    st.tuples(st.integers(1, 40), st.integers(0, 39), st.integers(1, 40)).map(          # a slice
        lambda t: (t[0] + t[1] + t[2], list(range(t[1], t[1] + t[2])))),
    st.tuples(st.integers(1, 6), st.integers(1, 8)).map(                                # a channel shuffle
        lambda t: (t[0] * t[1], [g * t[1] + i for i in range(t[1]) for g in range(t[0])])),
    st.integers(1, 40).flatmap(lambda c: st.tuples(st.just(c), st.lists(st.integers(0, c - 1), min_size=1,
                                                                        max_size=50))))   # anything, repeats


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(n=st.integers(1, 3), hw=st.tuples(st.integers(1, 6), st.integers(1, 6)), case=index_cases,
       seed=st.integers(0, 2**31 - 1))
def test_channel_gather(nthreads, n, hw, case, seed):
    cin, index = case
    x = rand(np.random.default_rng(seed), n, *hw, cin)
    idx = np.asarray(index, np.int64)
    out = np.full((n, *hw, len(index)), SENTINEL, np.float32)
    with threads(nthreads):
        lay.channel_gather(x, idx, out)
    assert np.array_equal(out, ref.channel_gather(x, idx))


@pytest.mark.parametrize("nthreads", THREADS)
@HYP
@given(n=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 19),
       box=st.tuples(*[st.integers(0, 3)] * 4), seed=st.integers(0, 2**31 - 1))
def test_crop(nthreads, n, h, w, c, box, seed):
    t, b, l, r = box
    assume(t + b < h and l + r < w)
    x = rand(np.random.default_rng(seed), n, h, w, c)
    out = np.full((n, h - t - b, w - l - r, c), SENTINEL, np.float32)
    with threads(nthreads):
        lay.crop(x, out, box)
    assert np.array_equal(out, ref.crop(x, box))


# ---------------------------------------------------------------- shared helpers (kernels/cpu/common.py)


@pytest.mark.parametrize("k", THREADS)
@pytest.mark.parametrize("per_thread,align", [(1, 1), (4, 1), (1, 64)])
def test_thread_chunks_cover_every_row_once(k, per_thread, align):
    with numba_threads(k):
        for n in [1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 1001]:
            step, count = common.thread_chunks(n, per_thread, align)
            rows = np.concatenate([np.arange(i * step, min(n, (i + 1) * step)) for i in range(count)])
            assert np.array_equal(rows, np.arange(n)) and step % align == 0
            assert count <= per_thread * numba.get_num_threads()


def test_act_bounds_clamp_as_apply_act():
    """The clamp activations are their bounds; every other one gets no clamp and is applied after it
    (``is_smooth``), per value by apply_act and over runs by act_span, both close to the reference."""
    v = np.array([-1e30, -7.5, -0.0, 0.25, 5.99, 6.0, 6.5, 1e30], np.float32)
    w = np.linspace(-12, 12, 97, dtype=np.float32)
    for name, code in ACT_CODES.items():
        lo, hi = common.act_bounds(code)
        if name in (None, "relu", "relu6"):
            assert not common.is_smooth(code)
            assert np.array_equal(np.minimum(np.maximum(v, lo), hi), [common.apply_act(x, code) for x in v])
            assert np.array_equal(np.minimum(np.maximum(v, lo), hi), ref.activation(v, name))
        else:
            assert common.is_smooth(code) and lo <= -3e38 and hi >= 3e38
        spans = np.empty_like(w)
        common.act_span(w, spans, w.size, code)
        assert rel_err([common.apply_act(x, code) for x in w], ref.activation(w, name)) <= 1e-6
        assert rel_err(spans, ref.activation(w, name)) <= 1e-6


def test_output_sizes_agree_with_reference_helper():
    # The kernels size their loops with kernels.conv_output_size; the reference does the same.
    assert conv_output_size(112, 3, 2, 0, 1) == 56 and conv_output_size(35, 3, 1, 1, 1) == 35
