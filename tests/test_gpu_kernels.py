"""CUDA kernels (kernels.gpu, and kernels.gpu.tf32 for conv2d/dense) against the NumPy oracle on odd
shapes, run twice by the same test bodies: on the device (marked ``gpu``; skipped with the reason where
none is usable) and on the host emulator (kernels/gpu/emulate.h; needs g++ only).

fp32: max relative error max|ours - ref| / max|ref| <= 1e-5; ops with an activation are scaled by
the pre-activation reference. TF32: every element within kernels.gpu.tf32's stated bound,
(2**-10 + 2**-22) * sum|x||w| + 1e-5 * max|ref|. Outputs written at ``out_c0`` into a wider buffer
must leave the other channels untouched (sentinel-filled), and every variant (each conv tile with
and without split K, A mode, vector or scalar epilogue, misaligned buffers, skinny GEMM row blocks)
runs at least once.
Inputs come from generators seeded by the test's name and parameters (``helpers.seeded_rng``): the
device and the emulator see the same data, and a failure reproduces.
"""

import shutil
from typing import NamedTuple

import numpy as np
import pytest
from helpers import rand, rel_err, seeded_rng

import kernels
from kernels import conv_output_size
from kernels import reference as ref
from kernels.gpu import conv, gemm, tf32, unavailable_reason
from kernels.gpu import runtime as rt

REASON = unavailable_reason()
CXX = shutil.which("g++")
TOL = 1e-5
SENTINEL = np.float32(-7.25)


class Gpu(NamedTuple):
    g: object           # kernels.gpu
    cp: object          # cupy, or the emulator's numpy stand-in
    emulated: bool


@pytest.fixture(scope="module", params=[pytest.param("device", marks=pytest.mark.gpu), "emulator"])
def gpu(request):
    """The GPU backend on the device, or the same kernels on the host emulator; each with a workspace
    of its own (split-K buffers are device arrays on one, host arrays on the other)."""
    if request.param == "device":
        if REASON is not None:
            pytest.skip(f"no usable CUDA device: {REASON}")
        import cupy

        import kernels.gpu as g

        with kernels.using_workspace(kernels.Workspace()):
            yield Gpu(g, cupy, False)
    else:
        if CXX is None:
            pytest.skip("g++ is not on PATH: the host emulation of the CUDA kernels cannot be built")
        from kernels.gpu import emulate

        with emulate.emulated() as (g, cp), kernels.using_workspace(kernels.Workspace()):
            yield Gpu(g, cp, True)


@pytest.fixture
def rng(request):
    """Seeded by the test and its parameters, the backend excepted (same data on both)."""
    callspec = getattr(request.node, "callspec", None)
    params = {} if callspec is None else {k: v for k, v in callspec.params.items() if k != "gpu"}
    return seeded_rng(request.node.originalname, sorted(params.items(), key=str))


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


def check_wide(out, want, c0, scale_of=None, bound=None):
    """Channels [c0, c0 + C) hold want (within TOL, or elementwise within ``bound``); the rest is untouched."""
    out = out.get()
    c = want.shape[-1]
    got = out[..., c0:c0 + c]
    if bound is None:
        assert rel_err(got, want, scale_of) <= TOL
    else:
        excess = np.abs(got.astype(np.float64) - want) - bound
        assert excess.max() <= 0, f"over the TF32 bound by {excess.max():.3g}"
    assert np.all(out[..., :c0] == SENTINEL) and np.all(out[..., c0 + c:] == SENTINEL)


def tf32_bound(terms_abs, want):
    """kernels.gpu.tf32's tolerance per element: ERROR_BOUND * sum|x||w| + 1e-5 * max|ref|."""
    return tf32.ERROR_BOUND * terms_abs + TOL * np.abs(want).max()


CONV_CASES = [
    # n, h, w, cin, cout, kh, kw, stride, pad, act, residual, (before, after)
    (1, 19, 17, 3, 13, 7, 7, (2, 2), (3, 3, 3, 3), "relu", False, (0, 0)),      # 7x7/2 on odd input, cin 3
    (2, 15, 13, 8, 20, 3, 3, (1, 1), (1, 1, 1, 1), None, True, (4, 8)),         # vec4 A, vector out, slice
    (2, 9, 11, 12, 36, 1, 1, (1, 1), (0, 0, 0, 0), "relu6", True, (0, 0)),      # pointwise tiles (M 198)
    (3, 10, 9, 16, 7, 3, 3, (2, 2), (0, 1, 0, 1), "relu", False, (3, 2)),       # odd cout: scalar out
    (1, 8, 8, 20, 33, 1, 1, (2, 2), (0, 0, 0, 0), None, False, (0, 0)),         # 1x1 stride 2 (generic)
    (1, 12, 7, 4, 9, 1, 7, (1, 1), (0, 0, 3, 3), "relu", False, (1, 0)),        # 1x7 'same'
    (2, 7, 12, 8, 64, 7, 1, (1, 1), (3, 3, 0, 0), "relu", True, (0, 0)),        # 7x1 'same'
    (1, 6, 5, 36, 130, 3, 3, (1, 2), (2, 0, 1, 2), None, True, (0, 4)),         # asymmetric everything
    (1, 5, 5, 96, 40, 3, 3, (1, 1), (1, 1, 1, 1), "relu", True, (0, 0)),        # small M, deep K: split K
    (1, 3, 3, 20, 33, 1, 1, (1, 1), (0, 0, 0, 0), "relu6", True, (4, 3)),       # 9-pixel 1x1: skinny GEMM
]


def _conv(gpu, rng, case, misalign=False, backend=None):
    """One conv2d call against the oracle; ``backend`` kernels.gpu.tf32 checks the TF32 bound."""
    n, h, w, cin, cout, kh, kw, stride, pad, act, use_res, (before, after) = case
    g, cp = gpu.g, gpu.cp
    x = rand(rng, n, h, w, cin)
    k = rand(rng, kh, kw, cin, cout) / np.sqrt(kh * kw * cin)
    b = rand(rng, cout)
    oh = conv_output_size(h, kh, stride[0], pad[0], pad[1])
    ow = conv_output_size(w, kw, stride[1], pad[2], pad[3])
    res = rand(rng, n, oh, ow, cout) if use_res else None
    out = wide(cp, (n, oh, ow, cout), cout, before, after)
    be = backend or g
    be.conv2d(device(cp, x, misalign), be.pack_conv2d(k, b), out, stride, pad, act,
              None if res is None else device(cp, res, misalign), before)
    want = ref.conv2d(x, k, b, stride, pad, act, res)
    if backend is tf32:
        check_wide(out, want, before, bound=tf32_bound(ref.conv2d(np.abs(x), np.abs(k), None, stride, pad), want))
    else:
        check_wide(out, want, before, ref.conv2d(x, k, b, stride, pad, None, res))


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d(gpu, rng, case):
    _conv(gpu, rng, case)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_tf32(gpu, rng, case):
    _conv(gpu, rng, case, backend=tf32)


@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("tile", conv.FP32_TILES + conv.TF32_TILES, ids=lambda t: f"{t.kind}-{t.bm}x{t.bn}")
def test_conv2d_every_tile(gpu, rng, tile, splits, monkeypatch):
    """Each tile forced, with and without split K, on the four cases that cover every A mode."""
    def forced(m, n, k, kind="fp32", sms=132):
        k_split = rt.cdiv(rt.cdiv(k, splits), tile.bk) * tile.bk
        return conv.ConvPlan(tile, rt.cdiv(k, k_split), k_split)

    monkeypatch.setattr(conv, "plan", forced)
    for case in CONV_CASES[:4]:
        _conv(gpu, rng, case, backend=tf32 if tile.kind == "tf32" else None)


def test_conv2d_misaligned_buffers_take_the_scalar_path(gpu, rng):
    _conv(gpu, rng, CONV_CASES[1], misalign=True)
    _conv(gpu, rng, CONV_CASES[2], misalign=True)


def test_tf32_rounds_both_operands_to_nearest(gpu, rng):
    """TF32 is the fp32 result of TF32-rounded inputs (round to nearest, ties away): within fp32
    rounding of that, and measurably away from the fp32 result."""
    x = rand(rng, 2, 9, 9, 16)
    k = rand(rng, 3, 3, 16, 24) / 12
    out = gpu.cp.empty((2, 9, 9, 24), gpu.cp.float32)
    tf32.conv2d(gpu.cp.asarray(x), tf32.pack_conv2d(k, None), out, (1, 1), (1, 1, 1, 1))
    got = out.get()
    rounded = ref.conv2d(tf32.round_to_tf32(x), tf32.round_to_tf32(k), None, (1, 1), (1, 1, 1, 1))
    assert rel_err(got, rounded) <= TOL
    assert rel_err(got, ref.conv2d(x, k, None, (1, 1), (1, 1, 1, 1))) > 2e-5
    assert tf32.round_to_tf32(np.float32([1 + 2**-11, 1 + 2**-12, -(1 + 2**-11)])).tolist() == \
        [1 + 2**-10, 1.0, -(1 + 2**-10)]


@pytest.mark.parametrize("kh,kw,mult,c,stride,pad,before", [
    (3, 3, 1, 32, (1, 1), (1, 1, 1, 1), 0),       # vec4, 3x3 instance
    (3, 3, 1, 16, (2, 2), (0, 1, 0, 1), 4),       # MobileNet's stride-2 padding, slice
    (5, 5, 1, 12, (1, 1), (2, 2, 2, 2), 0),       # 5x5 instance
    (7, 7, 1, 8, (2, 1), (3, 3, 2, 4), 0),        # run-time kernel size
    (3, 3, 2, 5, (1, 1), (1, 1, 1, 1), 3),        # multiplier 2, odd channels: scalar kernel
    (3, 3, 1, 7, (1, 1), (1, 1, 1, 1), 0),        # odd channels: scalar kernel
])
@pytest.mark.parametrize("act", [None, "relu6"])
def test_depthwise(gpu, rng, kh, kw, mult, c, stride, pad, before, act):
    g, cp = gpu.g, gpu.cp
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
def test_pooling(gpu, rng, c, before, pool, stride, pad):
    g, cp = gpu.g, gpu.cp
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


@pytest.mark.parametrize("shape", [(1, 7, 7, 2048), (1, 7, 7, 64), (3, 5, 3, 13), (2, 1, 1, 8), (2, 9, 8, 36)])
def test_global_pooling(gpu, rng, shape):
    g, cp = gpu.g, gpu.cp
    x = rand(rng, *shape)
    out = cp.empty((shape[0], shape[-1]), cp.float32)
    g.global_avg_pool(cp.asarray(x), out)
    assert rel_err(out.get(), ref.global_avg_pool(x)) <= TOL
    g.global_max_pool(cp.asarray(x), out)
    assert np.array_equal(out.get(), ref.global_max_pool(x))


DENSE_CASES = [(1, 1001, 37), (1, 2048, 1000), (1, 7, 3), (2, 300, 129), (3, 513, 64), (5, 300, 129),
               (33, 64, 10), (64, 200, 20), (70, 96, 36)]


@pytest.mark.parametrize("batch,k,n", DENSE_CASES)
@pytest.mark.parametrize("act", [None, "relu"])
def test_dense(gpu, rng, batch, k, n, act):
    g, cp = gpu.g, gpu.cp
    x, w, b = rand(rng, batch, k), rand(rng, k, n) / np.sqrt(k), rand(rng, n)
    out = cp.full((batch, n), SENTINEL, cp.float32)
    g.dense(cp.asarray(x), g.pack_dense(w, b), out, act)
    assert rel_err(out.get(), ref.dense(x, w, b, act), ref.dense(x, w, b)) <= TOL


@pytest.mark.parametrize("batch,k,n", [(1, 1001, 37), (5, 300, 129), (70, 96, 36)])
def test_dense_tf32(gpu, rng, batch, k, n):
    cp = gpu.cp
    x, w, b = rand(rng, batch, k), rand(rng, k, n) / np.sqrt(k), rand(rng, n)
    out = cp.full((batch, n), SENTINEL, cp.float32)
    tf32.dense(cp.asarray(x), tf32.pack_dense(w, b), out, "relu")
    want = ref.dense(x, w, b, "relu")
    excess = np.abs(out.get() - want) - tf32_bound(np.abs(x).astype(np.float64) @ np.abs(w), want)
    assert excess.max() <= 0


@pytest.mark.parametrize("shape", [(2, 5, 7, 12), (1, 3, 3, 5), (4, 1001)])
@pytest.mark.parametrize("act", kernels.ACTIVATIONS)
def test_add_activation_affine(gpu, rng, shape, act):
    g, cp = gpu.g, gpu.cp
    a, b = rand(rng, *shape), rand(rng, *shape)
    out = cp.full(shape, SENTINEL, cp.float32)
    g.add(cp.asarray(a), cp.asarray(b), out, act)
    assert rel_err(out.get(), ref.add(a, b, act), ref.add(a, b)) <= TOL
    g.activation(cp.asarray(a), out, act)
    assert rel_err(out.get(), ref.activation(a, act), a) <= TOL
    s, t = rand(rng, shape[-1]), rand(rng, shape[-1])
    g.channel_affine(cp.asarray(a), s, t, out, act)
    assert rel_err(out.get(), ref.channel_affine(a, s, t, act), ref.channel_affine(a, s, t)) <= TOL


@pytest.mark.parametrize("shape", [(2, 5, 7, 12), (1, 3, 3, 5), (3, 1, 4, 9), (4, 1001)])
@pytest.mark.parametrize("act", kernels.ACTIVATIONS)
def test_mul_and_per_channel_add(gpu, rng, shape, act):
    """mul with a second input of the first's shape, and add / mul with one value per sample and channel
    (N, C): the float4 path where C is a multiple of 4, the scalar one elsewhere."""
    g, cp = gpu.g, gpu.cp
    a = rand(rng, *shape)
    for b in (rand(rng, *shape), rand(rng, shape[0], shape[-1])):
        out = cp.full(shape, SENTINEL, cp.float32)
        g.mul(cp.asarray(a), cp.asarray(b), out, act)
        assert rel_err(out.get(), ref.mul(a, b, act), ref.mul(a, b)) <= TOL
        if b.shape != a.shape:
            g.add(cp.asarray(a), cp.asarray(b), out, act)
            assert rel_err(out.get(), ref.add(a, b, act), ref.add(a, b)) <= TOL


@pytest.mark.parametrize("shape", [(2, 5, 3, 12), (1, 4, 4, 96), (3, 7), (1, 2, 2, 1), (2, 3, 3, 300)])
def test_layer_norm(gpu, rng, shape):
    g, cp = gpu.g, gpu.cp
    x = rand(rng, *shape) + np.float32(50.0)       # an offset: the variance must come from the deviations
    gamma, beta = rand(rng, shape[-1]), rand(rng, shape[-1])
    out = cp.full(shape, SENTINEL, cp.float32)
    g.layer_norm(cp.asarray(x), cp.asarray(gamma), cp.asarray(beta), out, 1e-6)
    assert rel_err(out.get(), ref.layer_norm(x, gamma, beta, 1e-6)) <= TOL


@pytest.mark.parametrize("c,size,alpha,beta,bias", [(16, 5, 1e-4, 0.75, 1.0), (7, 3, 0.5, 0.6, 2.0),
                                                    (9, 4, 2.0, 1.0, 1.0), (3, 9, 0.1, 0.5, 0.5)])
def test_lrn(gpu, rng, c, size, alpha, beta, bias):
    g, cp = gpu.g, gpu.cp
    x = rand(rng, 2, 5, 3, c)
    out = cp.full(x.shape, SENTINEL, cp.float32)
    g.lrn(cp.asarray(x), out, size, alpha, beta, bias)
    assert rel_err(out.get(), ref.lrn(x, size, alpha, beta, bias)) <= TOL


@pytest.mark.parametrize("cin,index", [(12, range(4, 10)), (8, [0, 4, 1, 5, 2, 6, 3, 7]), (5, [4, 4, 0, 2]),
                                       (3, [2])])
def test_channel_gather(gpu, rng, cin, index):
    g, cp = gpu.g, gpu.cp
    x = rand(rng, 2, 3, 5, cin)
    idx = np.asarray(list(index), np.int64)
    out = cp.full((2, 3, 5, len(idx)), SENTINEL, cp.float32)
    g.channel_gather(cp.asarray(x), cp.asarray(idx), out)
    assert np.array_equal(out.get(), ref.channel_gather(x, idx))


@pytest.mark.parametrize("c,box", [(8, (1, 2, 0, 3)), (5, (0, 0, 2, 1)), (4, (3, 1, 1, 1))])
def test_crop(gpu, rng, c, box):
    g, cp = gpu.g, gpu.cp
    x = rand(rng, 2, 7, 6, c)
    t, b, l, r = box
    out = cp.full((2, 7 - t - b, 6 - l - r, c), SENTINEL, cp.float32)
    g.crop(cp.asarray(x), out, box)
    assert np.array_equal(out.get(), ref.crop(x, box))


def test_concat_zero_pad_softmax(gpu, rng):
    g, cp = gpu.g, gpu.cp
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


@pytest.mark.parametrize("op", ["conv2d", "depthwise_conv2d", "max_pool2d", "global_avg_pool", "add", "dense"])
def test_tensors_past_32_bit_indexing_are_refused(gpu, op):
    """2^31-element tensors (broadcast views: no memory) get a ValueError naming the sizes, before any
    launch, instead of wrapped 32-bit indices."""
    g = gpu.g
    big = np.broadcast_to(np.float32(0), (1, 2**16, 2**15 + 8, 1))
    small = np.zeros((1, 4, 4, 4), np.float32)
    calls = {
        "conv2d": lambda: g.conv2d(big, g.pack_conv2d(np.ones((1, 1, 1, 1), np.float32), None), big, (1, 1),
                                   (0, 0, 0, 0)),
        "depthwise_conv2d": lambda: g.depthwise_conv2d(big, g.pack_depthwise(np.ones((3, 3, 1, 1), np.float32), None),
                                                       small, (1, 1), (1, 1, 1, 1)),
        "max_pool2d": lambda: g.max_pool2d(big, small, (2, 2), (2, 2), (0, 0, 0, 0)),
        "global_avg_pool": lambda: g.global_avg_pool(big, small[0, 0]),
        "add": lambda: g.add(big, big, big),
        "dense": lambda: g.dense(np.broadcast_to(np.float32(0), (2**16, 2**15 + 8)),
                                 g.pack_dense(np.ones((2**15 + 8, 1), np.float32), None),
                                 np.zeros((2**16, 1), np.float32)),
    }
    with pytest.raises(ValueError, match=r"2,14\d,\d{3},\d{3} elements.*32-bit"):
        calls[op]()


def test_specialisations_compile_once(gpu, rng):
    if gpu.emulated:
        pytest.skip("the emulator builds every specialisation up front; NVRTC compiles are device-only")
    g, cp = gpu.g, gpu.cp
    x = cp.asarray(rand(rng, 1, 4, 4, 4))
    out = cp.empty_like(x)
    g.add(x, x, out)
    before = rt.compiled_count()
    g.add(x, x, out)
    g.add(x, x, out, "relu")
    assert rt.compiled_count() == before


def test_weights_are_on_the_device_when_pack_returns(gpu, rng):
    """pack_* synchronises its uploads: a non-blocking stream can use the weights at once."""
    if gpu.emulated:
        pytest.skip("host memory: nothing is asynchronous")
    cp = gpu.cp
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        p = gpu.g.pack_dense(rand(rng, 4096, 4096), None)            # 64 MB: the copy takes a while
        assert cp.cuda.get_current_stream().done
    assert np.array_equal(p.w[:3, :3].get(), p.w.get()[:3, :3])


def test_toy_graph_through_the_executor(gpu):
    """The GPU backend under the real Executor (memory plan, concat slices, fused epilogues)."""
    from helpers import fill_weights, toy_graph

    from nets.runtime.executor import Executor, pack_weights
    from nets.runtime.model import Model

    graph = fill_weights(toy_graph(top=False), seed=3)
    reference = Model(graph, device="reference")
    x = np.random.default_rng(2).normal(0, 1, (2,) + reference.input_shape).astype(np.float32)
    got = Executor(reference.graph, gpu.g, pack_weights(reference.graph, gpu.g), 2).run(x)[0]
    got = got.get() if hasattr(got, "get") else got
    assert rel_err(got, reference(x)) <= 1e-5


# ----------------------------------------------------------------------------- the dispatchers' choices
# (numerics above do not depend on them; these pin what the review asked the planners to do)

@pytest.mark.parametrize("cout", [32, 64, 96, 192])
@pytest.mark.parametrize("kind", ["fp32", "tf32"])
def test_large_layers_get_tiles_without_wasted_columns(cout, kind):
    p = conv.plan(32 * 147 * 147, cout, 288, kind, 132)
    padded = rt.cdiv(cout, p.tile.bn) * p.tile.bn
    assert p.splits == 1
    assert padded == cout or (kind == "tf32" and padded <= 2 * cout), p


@pytest.mark.parametrize("m,n,k", [(49, 512, 4608), (196, 256, 2304), (64, 384, 1152), (3136, 64, 576)])
@pytest.mark.parametrize("kind", ["fp32", "tf32"])
def test_small_m_layers_split_k_into_one_full_wave(m, n, k, kind):
    p = conv.plan(m, n, k, kind, 132)
    blocks = rt.cdiv(m, p.tile.bm) * rt.cdiv(n, p.tile.bn) * p.splits
    assert p.splits > 1 and p.k_split % p.tile.bk == 0 and rt.cdiv(k, p.k_split) == p.splits
    assert 132 <= blocks <= p.tile.resident * 132, p


def test_gemv_split_count_is_floored_into_one_wave():
    s = gemm.splits(1, 25088, 4096, 132)                  # VGG fc1 at batch 1: 32 column groups
    assert s == gemm.RESIDENT[1] * 132 // 32
    assert 32 * s <= gemm.RESIDENT[1] * 132 < 32 * (s + 1)


@pytest.mark.parametrize("batch,path", [(1, "rows"), (2, "rows"), (64, "rows"), (65, "tiles")])
def test_dense_routes_small_batches_to_the_skinny_gemm(gpu, batch, path, monkeypatch):
    calls = []
    monkeypatch.setattr(gemm, "launch_rows", lambda *a: calls.append("rows"))
    monkeypatch.setattr(rt, "launch", lambda family, expr, *a, **k: calls.append(f"tiles:{expr}"))
    p = gpu.g.pack_dense(np.ones((96, 20), np.float32), None)
    gpu.g.dense(gpu.cp.empty((batch, 96), gpu.cp.float32), p, gpu.cp.empty((batch, 20), gpu.cp.float32))
    assert calls[0].split(":")[0] == path and (path == "rows" or "conv2d_igemm" in calls[0])


@pytest.mark.parametrize("hw,stride,path", [(8, 1, "rows"), (9, 1, "tiles"), (8, 2, "tiles")])
def test_pointwise_convs_over_few_pixels_run_as_skinny_gemm(gpu, hw, stride, path, monkeypatch):
    calls = []
    monkeypatch.setattr(gemm, "launch_rows", lambda *a: calls.append("rows"))
    monkeypatch.setattr(rt, "launch", lambda family, expr, *a, **k: calls.append("tiles"))
    p = gpu.g.pack_conv2d(np.ones((1, 1, 16, 24), np.float32), None)
    o = rt.cdiv(hw, stride)
    gpu.g.conv2d(gpu.cp.empty((1, hw, hw, 16), gpu.cp.float32), p, gpu.cp.empty((1, o, o, 24), gpu.cp.float32),
                 (stride, stride), (0, 0, 0, 0))
    assert calls[0] == path


def test_global_pooling_at_batch_1_spreads_over_blocks(gpu, monkeypatch):
    grids = []
    monkeypatch.setattr(rt, "launch", lambda family, expr, grid, block, args, **k: grids.append(grid))
    gpu.g.global_avg_pool(gpu.cp.empty((1, 7, 7, 2048), gpu.cp.float32), gpu.cp.empty((1, 2048), gpu.cp.float32))
    assert grids[0][0] >= 64                               # ResNet50's last map: 64 blocks, 2 loads a thread
