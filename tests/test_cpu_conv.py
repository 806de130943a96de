"""kernels.cpu.conv2d against the NumPy oracle: every kind of layer, odd shapes, the fused
epilogue, writing into a channel slice of a wider buffer, and 1 vs 2 threads; and, in one test of
its own, which variant the dispatcher picks for which layer."""

import numpy as np
import pytest
from helpers import numba_threads, rel_err, saved_plan, scratch_keys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_calls import REUSED, plan_calls

from kernels import aligned_empty, conv_output_size
from kernels import reference as ref
from kernels.cpu.conv import conv2d, dispatch, pack_conv2d
from kernels.cpu.conv.dispatch import SERIAL_FLOPS, SERIAL_WEIGHT_BYTES
from kernels.cpu.conv.tile import MR

TOL = 1e-5
WINO_TOL = 3e-5     # F(4x4, 3x3) transforms amplify rounding ~3-10x (see kernels/cpu/conv/winograd.py)
FILL = np.float32(-123.25)


def tol(packed):
    return WINO_TOL if packed.variant.startswith("winograd") else TOL


def run_case(rng, n, h, w, cin, cout, kh, kw, stride, pad, act=None, residual=False, bias=True,
             extra_before=0, extra_after=0):
    """Run ours and the oracle; return (ours, want, out buffer, channel slice)."""
    x = rng.standard_normal((n, h, w, cin), dtype=np.float32)
    kernel = rng.standard_normal((kh, kw, cin, cout), dtype=np.float32)
    b = rng.standard_normal(cout, dtype=np.float32) if bias else None
    oh = conv_output_size(h, kh, stride[0], pad[0], pad[1])
    ow = conv_output_size(w, kw, stride[1], pad[2], pad[3])
    res = rng.standard_normal((n, oh, ow, cout), dtype=np.float32) if residual else None
    out = np.full((n, oh, ow, extra_before + cout + extra_after), FILL, np.float32)
    packed = pack_conv2d(kernel, b)
    conv2d(x, packed, out, stride, pad, act=act, residual=res, out_c0=extra_before)
    want = ref.conv2d(x, kernel, b, stride, pad, act, res)
    packed.pre_act_max = float(np.abs(ref.conv2d(x, kernel, b, stride, pad, None, res)).max())
    # the largest sum of |terms| of an output: float32 rounding scales with it, not with the output
    # (a 20-term sum that cancels to 0.04 is off by ~4e-7, 1e-5 of itself)
    packed.abs_sum_max = float(ref.conv2d(np.abs(x), np.abs(kernel), None if b is None else np.abs(b), stride,
                                          pad, None, None if res is None else np.abs(res)).max())
    sl = slice(extra_before, extra_before + cout)
    return out[..., sl], want, out, sl, packed


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=[1, 2], ids=["threads1", "threads2"])
def threads(request):
    with numba_threads(request.param):
        yield request.param


# (n, h, w, cin, cout, kh, kw, stride, pad, variant the dispatcher picks): one per kind of layer in
# the zoo; sizes are large enough that the parallel path runs (checked below) unless marked tiny.
VARIANT_CASES = {
    "pointwise_s1": (1, 14, 14, 96, 130, 1, 1, (1, 1), (0, 0, 0, 0), "pointwise-6x64+12x32"),
    "pointwise_s2": (2, 15, 13, 64, 72, 1, 1, (2, 2), (0, 0, 0, 0), "pointwise-6x64+12x32"),
    "pointwise_logits_1000": (1, 1, 1, 256, 1000, 1, 1, (1, 1), (0, 0, 0, 0), "pointwise-6x64+8x48"),
    "3x3_s1_same": (1, 20, 17, 24, 64, 3, 3, (1, 1), (1, 1, 1, 1), "direct3x3-6x64"),
    "3x3_s2_tf_same": (1, 21, 20, 24, 48, 3, 3, (2, 2), (0, 1, 0, 1), "direct3x3-8x48"),
    "3x3_s2_stem_cin3": (1, 47, 45, 3, 32, 3, 3, (2, 2), (0, 0, 0, 0), "direct3x3-12x32"),
    "7x7_s2_stem_cin3": (1, 38, 38, 3, 64, 7, 7, (2, 2), (3, 3, 3, 3), "direct7x7-6x64"),
    "1x7": (1, 17, 17, 32, 48, 1, 7, (1, 1), (0, 0, 3, 3), "direct1x7-8x48"),
    "7x1": (1, 17, 17, 32, 40, 7, 1, (1, 1), (3, 3, 0, 0), "direct7x1-8x48"),
    "5x5": (1, 19, 18, 24, 70, 5, 5, (1, 1), (2, 2, 2, 2), "direct5x5-6x64+12x32"),
    "odd_cout_7_tiny": (1, 5, 6, 5, 7, 3, 3, (1, 1), (1, 1, 1, 1), "direct3x3-12x32"),
    "cout_10_valid": (3, 9, 8, 13, 10, 2, 3, (1, 2), (0, 0, 0, 0), "direct2x3-12x32"),
    "cout_60_full_block": (1, 11, 12, 20, 60, 3, 3, (1, 1), (1, 1, 1, 1), "direct3x3-6x64"),
}


@pytest.mark.parametrize("case", list(VARIANT_CASES), ids=list(VARIANT_CASES))
def test_layer_kinds_match_reference(case, rng, threads):
    ours, want, _, _, packed = run_case(rng, *VARIANT_CASES[case][:-1], act="relu")
    assert rel_err(ours, want) <= tol(packed)


def test_variant_cases_cover_the_parallel_path():
    flops = [2 * n * conv_output_size(h, kh, s[0], p[0], p[1]) * conv_output_size(w, kw, s[1], p[2], p[3])
             * kh * kw * ci * co for n, h, w, ci, co, kh, kw, s, p, _ in VARIANT_CASES.values()]
    assert sum(f >= SERIAL_FLOPS for f in flops) >= 6
    assert sum(f < SERIAL_FLOPS for f in flops) >= 2


@pytest.mark.parametrize("act", [None, "relu", "relu6"])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
def test_epilogue(act, residual, rng, threads):
    ours, want, _, _, packed = run_case(rng, 1, 12, 11, 70, 100, 3, 3, (1, 1), (1, 1, 1, 1), act=act,
                                        residual=residual)
    assert rel_err(ours, want, packed.pre_act_max) <= tol(packed)
    if act == "relu6":
        assert ours.max() <= 6.0 and ours.min() >= 0.0


SMOOTH = ("sigmoid", "silu", "hard_sigmoid", "hard_silu", "gelu", "gelu_tanh", "tanh")
# every tile's epilogue: 6x64 + 12x32 (pointwise, batch 2, slice), 8x48 alone, Winograd, the one-pixel
# tile, kernel rows in passes (partial sums through out), and a serial layer
SMOOTH_CASES = {
    "pointwise_6x64_12x32": (2, 9, 11, 40, 96, 1, 1, (1, 1), (0, 0, 0, 0)),
    "narrow_8x48_1x7": (1, 10, 9, 16, 48, 1, 7, (1, 1), (0, 0, 3, 3)),
    "winograd": (1, 12, 11, 70, 100, 3, 3, (1, 1), (1, 1, 1, 1)),
    "one_pixel_tile": (1, 1, 1, 256, 70, 1, 1, (1, 1), (0, 0, 0, 0)),
    "row_passes": (1, 7, 7, 384, 96, 3, 3, (1, 1), (1, 1, 1, 1)),
    "serial_tiny": (1, 5, 6, 5, 7, 3, 3, (1, 1), (1, 1, 1, 1)),
}


@pytest.mark.parametrize("act", SMOOTH)
@pytest.mark.parametrize("case", list(SMOOTH_CASES), ids=list(SMOOTH_CASES))
def test_smooth_activation_epilogues(case, act, rng, threads):
    """Activations other than the clamps, applied by the epilogues (``common.act_rows`` over the stored
    rows), with a residual and an output slice; the other channels stay untouched."""
    ours, want, out, sl, packed = run_case(rng, *SMOOTH_CASES[case], act=act, residual=True, extra_before=3,
                                           extra_after=2)
    assert rel_err(ours, want, packed.pre_act_max) <= tol(packed)
    assert np.all(out[..., :3] == FILL) and np.all(out[..., sl.stop:] == FILL)


def test_smooth_activations_are_not_streamed(rng, monkeypatch):
    """A layer that would store non-temporally with relu does not with silu (the activation goes over
    the stored rows), and both are right."""
    monkeypatch.setattr(dispatch, "STREAM_BYTES", 0)
    x = rng.standard_normal((1, 12, 12, 32), dtype=np.float32)
    k = rng.standard_normal((1, 1, 32, 128), dtype=np.float32)
    out = aligned_empty((1, 12, 12, 128))
    assert dispatch.streams_output(out.reshape(144, 128), 144 * 128, 0, "relu")
    assert not dispatch.streams_output(out.reshape(144, 128), 144 * 128, 0, "silu")
    for act in ("relu", "silu"):
        conv2d(x, pack_conv2d(k, None), out, (1, 1), (0, 0, 0, 0), act)
        assert rel_err(out, ref.conv2d(x, k, None, (1, 1), (0, 0, 0, 0), act), ref.conv2d(x, k)) <= TOL


# Outputs of fewer than MR pixels take the one-pixel tile; weights of >= SERIAL_WEIGHT_BYTES take the
# parallel path even though the FLOPs are few (the classifier on a 1x1 map).
FEW_PIXEL_CASES = {
    "logits_1x1_1024_1000": (1, 1, 1, 1024, 1000, 1, 1, (1, 1), (0, 0, 0, 0)),
    "batch3_1x1_small_weights": (3, 1, 1, 40, 70, 1, 1, (1, 1), (0, 0, 0, 0)),
    "3x3_on_2x2_map_padded": (1, 2, 2, 300, 260, 3, 3, (1, 1), (1, 1, 1, 1)),
    "3x3_s2_batch2_one_pixel": (2, 3, 2, 33, 130, 3, 3, (2, 2), (1, 0, 1, 0)),
}


@pytest.mark.parametrize("case", list(FEW_PIXEL_CASES), ids=list(FEW_PIXEL_CASES))
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
def test_fewer_pixels_than_a_tile(case, residual, rng, threads):
    n, h, w, cin, cout, kh, kw, stride, pad = FEW_PIXEL_CASES[case]
    ours, want, out, sl, packed = run_case(rng, n, h, w, cin, cout, kh, kw, stride, pad, act="relu6",
                                           residual=residual, extra_before=3, extra_after=5)
    assert out.shape[0] * out.shape[1] * out.shape[2] < MR
    assert rel_err(ours, want, packed.pre_act_max) <= TOL
    assert np.all(np.delete(out, np.arange(out.shape[-1])[sl], axis=-1) == FILL)


def test_few_pixel_cases_cover_the_weight_bound_parallel_path():
    big = [4 * kh * kw * ci * -(-co // 64) * 64 >= SERIAL_WEIGHT_BYTES
           for _, _, _, ci, co, kh, kw, _, _ in FEW_PIXEL_CASES.values()]
    assert 1 <= sum(big) < len(big)


def test_no_bias(rng):
    ours, want, _, _, _ = run_case(rng, 1, 9, 9, 16, 20, 3, 3, (1, 1), (1, 1, 1, 1), bias=False)
    assert rel_err(ours, want) <= TOL


@pytest.mark.parametrize("kh,kw,stride,pad", [(1, 1, (1, 1), (0, 0, 0, 0)), (3, 3, (2, 2), (1, 1, 1, 1)),
                                              (1, 7, (1, 1), (0, 0, 3, 3))])
def test_out_c0_writes_only_its_channel_slice(kh, kw, stride, pad, rng, threads):
    ours, want, out, sl, packed = run_case(rng, 2, 13, 12, 33, 70, kh, kw, stride, pad, act="relu",
                                           residual=True, extra_before=19, extra_after=23)
    assert rel_err(ours, want) <= tol(packed)
    others = np.delete(out, np.arange(out.shape[-1])[sl], axis=-1)
    assert np.all(others == FILL)


def test_repeated_calls_reuse_padding_scratch(rng):
    """The zero-bordered scratch is cached: a second call on new data must not see stale values."""
    kernel = rng.standard_normal((3, 3, 8, 16), dtype=np.float32)
    packed = pack_conv2d(kernel, None)
    out = np.empty((1, 10, 10, 16), np.float32)
    for _ in range(3):
        x = rng.standard_normal((1, 10, 10, 8), dtype=np.float32)
        conv2d(x, packed, out, (1, 1), (1, 1, 1, 1))
        assert rel_err(out, ref.conv2d(x, kernel, None, (1, 1), (1, 1, 1, 1))) <= TOL
    assert len(scratch_keys("conv.pad")) == 1


def test_one_and_two_threads_agree(rng):
    x = rng.standard_normal((1, 28, 28, 64), dtype=np.float32)
    packed = pack_conv2d(rng.standard_normal((3, 3, 64, 96), dtype=np.float32), None)
    outs = []
    for t in (1, 2):
        out = np.empty((1, 28, 28, 96), np.float32)
        with numba_threads(t):
            conv2d(x, packed, out, (1, 1), (1, 1, 1, 1))
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])


@st.composite
def conv_cases(draw):
    kh = draw(st.integers(1, 5))
    kw = draw(st.integers(1, 5))
    sh = draw(st.integers(1, 3))
    sw = draw(st.integers(1, 3))
    pad = tuple(draw(st.integers(0, 3)) for _ in range(4))
    h = draw(st.integers(max(1, kh - pad[0] - pad[1]), 16))
    w = draw(st.integers(max(1, kw - pad[2] - pad[3]), 16))
    return dict(n=draw(st.integers(1, 3)), h=h, w=w, cin=draw(st.integers(1, 70)),
                cout=draw(st.integers(1, 140)), kh=kh, kw=kw, stride=(sh, sw), pad=pad,
                act=draw(st.sampled_from([None, "relu", "relu6", "silu", "gelu"])), residual=draw(st.booleans()),
                bias=draw(st.booleans()), extra_before=draw(st.integers(0, 5)),
                extra_after=draw(st.integers(0, 5)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=conv_cases())
def test_random_shapes_match_reference(case, rng):
    ours, want, out, sl, packed = run_case(rng, **case)
    assert rel_err(ours, want, packed.abs_sum_max) <= tol(packed)
    others = np.delete(out, np.arange(out.shape[-1])[sl], axis=-1)
    assert np.all(others == FILL)


# a channel block's 3x3 weights over ROW_PASS_BYTES (cin >= 342): kernel rows run as separate passes
# with partial sums kept in the output (ResNet50's 7x7 512 > 512); ragged cout, output slice, residual
ROW_PASS_CASES = {
    "resnet_c5_like": (1, 7, 7, 384, 96, (1, 1), (1, 1, 1, 1)),
    "strided_ragged": (2, 9, 8, 400, 70, (2, 2), (1, 0, 0, 1)),
}


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("case", list(ROW_PASS_CASES), ids=list(ROW_PASS_CASES))
def test_kernel_row_passes_match_reference(case, residual, rng, threads):
    n, h, w, cin, cout, stride, pad = ROW_PASS_CASES[case]
    assert 3 * 3 * cin * 64 * 4 > dispatch.ROW_PASS_BYTES
    ours, want, out, sl, packed = run_case(rng, n, h, w, cin, cout, 3, 3, stride, pad, act="relu",
                                           residual=residual, extra_before=5, extra_after=3)
    assert rel_err(ours, want, packed.pre_act_max) <= tol(packed)
    assert np.all(out[..., :5] == FILL) and np.all(out[..., sl.stop:] == FILL)


# The narrow last block of every width (conv_narrow.py), next to full blocks or alone, with the
# residual, an output slice, a batch, stride 2 and pixel counts that leave a partial last tile.
NARROW_CASES = {
    "stem_32_alone": (1, 23, 21, 3, 32, 3, 3, (2, 2), (0, 1, 0, 1), "direct3x3-12x32"),
    "inception_96": (2, 9, 9, 40, 96, 1, 1, (1, 1), (0, 0, 0, 0), "pointwise-6x64+12x32"),
    "inception_160_1x7": (1, 11, 13, 24, 160, 1, 7, (1, 1), (0, 0, 3, 3), "direct1x7-6x64+12x32"),
    "80_is_64_plus_16": (1, 13, 9, 64, 80, 1, 1, (1, 1), (0, 0, 0, 0), "pointwise-6x64+12x32"),
    "48_alone_7x1": (1, 10, 7, 16, 48, 7, 1, (1, 1), (3, 3, 0, 0), "direct7x1-8x48"),
    "112_is_64_plus_48": (1, 7, 9, 31, 112, 3, 3, (2, 1), (1, 1, 1, 1), "direct3x3-6x64+8x48"),
}


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("case", list(NARROW_CASES), ids=list(NARROW_CASES))
def test_narrow_channel_blocks(case, residual, rng, threads):
    ours, want, out, sl, packed = run_case(rng, *NARROW_CASES[case][:-1], act="relu6", residual=residual,
                                           extra_before=7, extra_after=2)
    assert rel_err(ours, want, packed.pre_act_max) <= TOL
    assert np.all(out[..., :7] == FILL) and np.all(out[..., sl.stop:] == FILL)


# The Winograd rule at its edges (3x3 stride 1, >= 32 channels, >= 8 output tiles of 4x4).
WINOGRAD_RULE_CASES = {
    "epilogue_70_100": (1, 12, 11, 70, 100, 3, 3, (1, 1), (1, 1, 1, 1), "winograd4x4-6x64"),
    "4_tiles_7x7": (1, 7, 7, 128, 128, 3, 3, (1, 1), (1, 1, 1, 1), "direct3x3-6x64"),
    "batch4_7x7_16_tiles": (4, 7, 7, 128, 128, 3, 3, (1, 1), (1, 1, 1, 1), "winograd4x4-6x64"),
    "cin_16": (1, 16, 16, 16, 64, 3, 3, (1, 1), (1, 1, 1, 1), "direct3x3-6x64"),
    "32_channels_stem": (1, 16, 16, 32, 32, 3, 3, (1, 1), (0, 0, 0, 0), "winograd4x4-6x64"),
    "stride2": (1, 16, 16, 64, 64, 3, 3, (2, 2), (1, 1, 1, 1), "direct3x3-6x64"),
}


def test_dispatcher_choice(rng):
    """Which kernel runs which layer. That is a tuning choice, so it is checked here only: the
    tests above check the numbers whichever kernel runs; a retuned threshold changes this table."""
    row_pass = {name: (n, h, w, cin, cout, 3, 3, stride, pad, "direct3x3-6x64+12x32")
                for name, (n, h, w, cin, cout, stride, pad) in ROW_PASS_CASES.items()}
    cases = {**VARIANT_CASES, **NARROW_CASES, **row_pass, **WINOGRAD_RULE_CASES}
    got = {}
    for name, (n, h, w, cin, cout, kh, kw, stride, pad, _) in cases.items():
        packed = pack_conv2d(rng.standard_normal((kh, kw, cin, cout), dtype=np.float32), None)
        oh = conv_output_size(h, kh, stride[0], pad[0], pad[1])
        ow = conv_output_size(w, kw, stride[1], pad[2], pad[3])
        conv2d(rng.standard_normal((n, h, w, cin), dtype=np.float32), packed, np.empty((n, oh, ow, cout), np.float32),
               stride, pad)
        got[name] = packed.variant
        if not packed.variant.startswith("winograd"):
            assert packed.wino_weights is None      # 4x the direct weights: made only when Winograd runs
    assert got == {name: case[-1] for name, case in cases.items()}


@pytest.mark.parametrize("kh", [1, 3])
@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("extra", [(0, 0), (16, 32), (8, 8)], ids=["own", "slice16", "slice8_unaligned"])
def test_streamed_output(kh, residual, extra, rng, threads, monkeypatch):
    """Non-temporal stores (any output size here): the same values as the oracle, channels outside
    the slice untouched, and plain stores where a row start is not 64-byte aligned."""
    monkeypatch.setattr(dispatch, "STREAM_BYTES", 0)
    n, h, w, cin, cout = 1, 30, 29, 24, 144     # two 64-channel blocks and a narrow one of 16
    pad = (kh // 2,) * 4
    x = rng.standard_normal((n, h, w, cin), dtype=np.float32)
    kernel = rng.standard_normal((kh, kh, cin, cout), dtype=np.float32)
    b = rng.standard_normal(cout, dtype=np.float32)
    res = rng.standard_normal((n, h, w, cout), dtype=np.float32) if residual else None
    out = aligned_empty((n, h, w, extra[0] + cout + extra[1]))
    out.fill(FILL)
    assert dispatch.streams_output(out.reshape(n * h * w, -1), n * h * w * cout, extra[0]) == (extra[0] % 16 == 0)
    packed = pack_conv2d(kernel, b)
    conv2d(x, packed, out, (1, 1), pad, act="relu", residual=res, out_c0=extra[0])
    want = ref.conv2d(x, kernel, b, (1, 1), pad, "relu", res)
    assert rel_err(out[..., extra[0]:extra[0] + cout], want) <= TOL
    assert np.all(out[..., :extra[0]] == FILL) and np.all(out[..., extra[0] + cout:] == FILL)


@pytest.mark.parametrize("pad", [(0, 0, 0, 0), (1, 1, 1, 1)], ids=["unpadded", "padded"])
def test_repeated_calls_with_new_contents_and_buffers(pad, rng):
    """A call with the same buffers and options reuses the previous call's kernel arguments: new
    input values, another output buffer, another thread count and other options must all still
    give the oracle's result."""
    kernel = rng.standard_normal((3, 3, 24, 80), dtype=np.float32)
    b = rng.standard_normal(80, dtype=np.float32)
    packed = pack_conv2d(kernel, b)
    x = rng.standard_normal((1, 20, 19, 24), dtype=np.float32)
    oh, ow = 20 - 2 + pad[0] + pad[1], 19 - 2 + pad[2] + pad[3]
    outs = [np.empty((1, oh, ow, 80), np.float32) for _ in range(2)]
    reused = []
    for o, act in plan_calls():
        out = outs[o]
        x[...] = rng.standard_normal(x.shape, dtype=np.float32)
        out.fill(FILL)
        before_plan = saved_plan(packed)
        conv2d(x, packed, out, (1, 1), pad, act=act)
        reused.append(saved_plan(packed) is before_plan)
        assert rel_err(out, ref.conv2d(x, kernel, b, (1, 1), pad, act)) <= TOL
    # the repeated calls (same buffers, options, threads) took the saved plan, the others made one
    assert reused == REUSED


def test_no_plan_kept_for_copied_arguments(rng):
    """A non-contiguous unpadded input is copied by the reshape: that copy must not be reused."""
    kernel = rng.standard_normal((1, 1, 16, 64), dtype=np.float32)
    packed = pack_conv2d(kernel, None)
    base = rng.standard_normal((1, 9, 9, 32), dtype=np.float32)
    x = base[..., :16]                              # a channel slice: not C-contiguous
    out = np.empty((1, 9, 9, 64), np.float32)
    for _ in range(2):
        base[...] = rng.standard_normal(base.shape, dtype=np.float32)
        conv2d(x, packed, out, (1, 1), (0, 0, 0, 0))
        assert rel_err(out, ref.conv2d(x, kernel, None, (1, 1), (0, 0, 0, 0))) <= TOL
    assert saved_plan(packed) is None
