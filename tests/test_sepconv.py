"""kernels.cpu.depthwise_pointwise (depthwise fused with the 1x1 conv after it) against the NumPy
oracle; and, in one test of its own, when it fuses and when it runs the two kernels."""

import importlib

import numpy as np
import pytest
from helpers import numba_threads, rel_err, saved_plan
from plan_calls import REUSED, plan_calls

from kernels import aligned_copy, conv_output_size
from kernels import reference as ref
from kernels.cpu.conv import dispatch

# kernels.cpu re-exports the function `depthwise_pointwise`, which shadows the submodule attribute.
dp = importlib.import_module("kernels.cpu.depthwise_pointwise")

FILL = np.float32(-77.5)


@pytest.fixture(params=[1, 2], ids=["threads1", "threads2"])
def threads(request):
    with numba_threads(request.param):
        yield request.param


def run(rng, n, h, w, c, cout, k, stride, pad, dw_act, act, residual, extra=(0, 0), mult=1, in_act=None,
        align=False):
    x = rng.standard_normal((n, h, w, c), dtype=np.float32) * (4 if in_act else 1)
    dk = rng.standard_normal((k, k, c, mult), dtype=np.float32)
    db = rng.standard_normal(c * mult, dtype=np.float32)
    pk = rng.standard_normal((1, 1, c * mult, cout), dtype=np.float32) / np.sqrt(c)
    pb = rng.standard_normal(cout, dtype=np.float32)
    oh = conv_output_size(h, k, stride[0], pad[0], pad[1])
    ow = conv_output_size(w, k, stride[1], pad[2], pad[3])
    res = rng.standard_normal((n, oh, ow, cout), dtype=np.float32) if residual else None
    xin = x if in_act is None else ref.activation(x, in_act)
    mid = ref.depthwise_conv2d(xin, dk, db, stride, pad, dw_act)
    want = ref.conv2d(mid, pk, pb, (1, 1), (0, 0, 0, 0), act, res)
    pre = ref.conv2d(mid, pk, pb, (1, 1), (0, 0, 0, 0), None, res)
    out = np.full((n, oh, ow, extra[0] + cout + extra[1]), FILL, np.float32)
    if align:
        out = aligned_copy(out)
    packed = dp.pack_depthwise_pointwise(dk, db, pk, pb)
    dp.depthwise_pointwise(x, packed, out, stride, pad, dw_act, act, res, extra[0], in_act)
    err = rel_err(out[..., extra[0]:extra[0] + cout], want, pre)
    others_untouched = bool(np.all(out[..., :extra[0]] == FILL) and np.all(out[..., extra[0] + cout:] == FILL))
    return err, others_untouched, packed


# (n, h, w, c, cout, k, stride, pad): the networks' separable blocks at small sizes, plus odd ones
CASES = {
    "mobilenet_s1": (1, 14, 14, 32, 64, 3, (1, 1), (1, 1, 1, 1)),
    "mobilenet_s2_bottom_right": (1, 15, 15, 48, 96, 3, (2, 2), (0, 1, 0, 1)),
    "xception_wide_rows": (1, 9, 150, 16, 40, 3, (1, 1), (1, 1, 1, 1)),
    "xception_19x19_728_like": (1, 19, 19, 96, 100, 3, (1, 1), (1, 1, 1, 1)),
    "few_pixels_7x7": (1, 7, 7, 256, 200, 3, (1, 1), (1, 1, 1, 1)),     # 2 threads: the two kernels
    "batch3_ragged": (3, 10, 11, 70, 33, 3, (1, 1), (1, 1, 1, 1)),
    "window_5x5": (2, 12, 9, 24, 64, 5, (1, 1), (2, 2, 2, 2)),
    "wide_channels_chunk_major": (1, 9, 9, 300, 64, 3, (1, 1), (1, 1, 1, 1)),
    # 2 threads: blocks of whole rows (>= 24 rows a thread), then pixel blocks across images
    "row_blocks_50_rows": (1, 50, 20, 32, 64, 3, (1, 1), (1, 1, 1, 1)),
    "pixel_blocks_batch3": (3, 7, 13, 80, 96, 3, (1, 1), (1, 1, 1, 1)),    # blocks split mid-row, across images
}


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_fused_matches_reference(case, residual, threads):
    rng = np.random.default_rng(len(case))
    err, untouched, _ = run(rng, *CASES[case], "relu6", "relu", residual, extra=(5, 3))
    assert err <= 1e-5
    assert untouched


@pytest.mark.parametrize("dw_act,act", [(None, None), ("relu", None), (None, "relu6"), ("silu", None),
                                        ("hard_silu", "sigmoid"), (None, "gelu"), ("relu6", "hard_sigmoid")])
def test_activations(dw_act, act, threads):
    err, _, _ = run(np.random.default_rng(3), 1, 11, 12, 40, 70, 3, (1, 1), (1, 1, 1, 1), dw_act, act, False)
    assert err <= 1e-5


@pytest.mark.parametrize("in_act", ["relu", "relu6"])
@pytest.mark.parametrize("shape", [(1, 19, 19, 72, 72, 3, (1, 1), (1, 1, 1, 1)),      # fused, 3x3 tiles
                                   (1, 13, 12, 20, 24, 5, (2, 2), (2, 2, 2, 2)),      # fused, 5x5 / stride 2
                                   (1, 6, 6, 256, 256, 3, (1, 1), (1, 1, 1, 1)),      # 2 threads: two kernels
                                   (1, 6, 6, 8, 24, 3, (1, 1), (1, 1, 1, 1))])        # multiplier 2: fallback
def test_input_activation(in_act, shape, threads):
    # inputs spread over [-10, 10] so both relu6 clamps matter
    mult = 2 if shape[3] == 8 else 1
    err, untouched, _ = run(np.random.default_rng(7), *shape, None, "relu", True, extra=(1, 2), mult=mult,
                            in_act=in_act)
    assert err <= 1e-5 and untouched


@pytest.mark.parametrize("shape", [(1, 2, 2, 16, 20, 3, (1, 1), (1, 1, 1, 1)),       # map smaller than the window
                                   (1, 8, 8, 8, 24, 3, (1, 1), (1, 1, 1, 1))])       # multiplier 2
def test_fallback_paths(shape, threads):
    mult = 2 if shape[1] == 8 else 1
    err, untouched, _ = run(np.random.default_rng(5), *shape, "relu", None, True, extra=(2, 1), mult=mult)
    assert err <= 1e-5 and untouched


def test_fused_or_two_kernels_choice():
    """When the fused kernel runs and when the two kernels do (a tuning choice, checked here only:
    the tests above check the numbers either way)."""
    rng = np.random.default_rng(4)
    fused = {}
    for t in (1, 2):
        with numba_threads(t):
            shapes = {**CASES, "map_2x2": (1, 2, 2, 16, 20, 3, (1, 1), (1, 1, 1, 1)),
                      "input_act_6x6": (1, 6, 6, 256, 256, 3, (1, 1), (1, 1, 1, 1))}
            for name, shape in shapes.items():
                _, _, packed = run(rng, *shape, None, None, False)
                fused[name, t] = saved_plan(packed) is not None      # only the fused kernel saves a plan here
            _, _, packed = run(rng, 1, 8, 8, 8, 24, 3, (1, 1), (1, 1, 1, 1), None, None, False, mult=2)
            fused["multiplier_2", t] = saved_plan(packed) is not None
    two_kernels = {("few_pixels_7x7", 2), ("input_act_6x6", 2), ("map_2x2", 1), ("map_2x2", 2), ("multiplier_2", 1),
                   ("multiplier_2", 2)}
    assert {k for k, v in fused.items() if not v} == two_kernels


def test_one_and_two_threads_agree():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 19, 19, 64), dtype=np.float32)
    packed = dp.pack_depthwise_pointwise(rng.standard_normal((3, 3, 64, 1), dtype=np.float32), None,
                                         rng.standard_normal((1, 1, 64, 96), dtype=np.float32), None)
    outs = []
    for t in (1, 2):
        out = np.empty((1, 19, 19, 96), np.float32)
        with numba_threads(t):
            dp.depthwise_pointwise(x, packed, out, (1, 1), (1, 1, 1, 1), None, "relu")
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("residual", [False, True], ids=["plain", "residual"])
@pytest.mark.parametrize("extra", [(0, 0), (16, 16)], ids=["own", "slice16"])
def test_streamed_output(residual, extra, threads, monkeypatch):
    """Non-temporal stores of the 1x1 part (any output size here): row blocks, pixel blocks."""
    monkeypatch.setattr(dispatch, "STREAM_BYTES", 0)
    # row blocks; pixel blocks split mid-row across images (stride 2, 1 full + 1 narrow block)
    for shape in [(1, 50, 20, 32, 144, 3, (1, 1), (1, 1, 1, 1)), (3, 14, 26, 80, 96, 3, (2, 2), (0, 1, 0, 1))]:
        err, untouched, _ = run(np.random.default_rng(11), *shape, "relu", "relu", residual, extra=extra,
                                align=True)
        assert err <= 1e-5 and untouched


def test_repeated_calls_with_new_contents_and_buffers():
    """The fused call reuses its previous kernel arguments only for the same buffers and options."""
    rng = np.random.default_rng(21)
    dk = rng.standard_normal((3, 3, 64, 1), dtype=np.float32)
    pk = rng.standard_normal((1, 1, 64, 96), dtype=np.float32)
    packed = dp.pack_depthwise_pointwise(dk, None, pk, None)
    x = np.empty((1, 30, 30, 64), np.float32)
    outs = [np.empty((1, 30, 30, 96), np.float32) for _ in range(2)]
    reused = []
    for o, act in plan_calls():
        out = outs[o]
        x[...] = rng.standard_normal(x.shape, dtype=np.float32)
        before_plan = saved_plan(packed)
        dp.depthwise_pointwise(x, packed, out, (1, 1), (1, 1, 1, 1), None, act)
        reused.append(saved_plan(packed) is before_plan)
        mid = ref.depthwise_conv2d(x, dk, None, (1, 1), (1, 1, 1, 1), None)
        assert rel_err(out, ref.conv2d(mid, pk, None, (1, 1), (0, 0, 0, 0), act)) <= 1e-5
    # the repeated calls (same buffers, options, threads) took the saved plan, the others made one
    assert reused == REUSED
