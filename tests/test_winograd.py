"""kernels.cpu.conv.winograd (reached through kernels.cpu.conv2d) against the NumPy oracle: the
transform matrices, ragged last tiles, asymmetric and zero padding, batch, every epilogue, out_c0,
the channel-group split. The dispatcher's thresholds are lowered so that every 3x3 stride-1 layer
here runs Winograd whatever they are tuned to (which layers get it in a network:
test_cpu_conv.py::test_dispatcher_choice)."""

import numba
import numpy as np
import pytest
from helpers import numba_threads, rel_err, scratch_keys

from kernels import reference as ref
from kernels.cpu.conv import conv2d, dispatch, pack_conv2d
from kernels.cpu.conv import winograd as wino

WINO_TOL = 3e-5
FILL = np.float32(-55.5)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


@pytest.fixture(autouse=True)
def always_winograd(monkeypatch):
    monkeypatch.setattr(dispatch, "WINO_MIN_TILES", 1)
    monkeypatch.setattr(dispatch, "WINO_MIN_CHANNELS", 1)


def run(rng, n, h, w, cin, cout, pad, act="relu", residual=False, bias=True, c0=0, extra=0):
    x = rng.standard_normal((n, h, w, cin), dtype=np.float32)
    kernel = rng.standard_normal((3, 3, cin, cout), dtype=np.float32) / np.float32(np.sqrt(9 * cin))
    b = rng.standard_normal(cout, dtype=np.float32) if bias else None
    oh, ow = h + pad[0] + pad[1] - 2, w + pad[2] + pad[3] - 2
    res = rng.standard_normal((n, oh, ow, cout), dtype=np.float32) if residual else None
    out = np.full((n, oh, ow, c0 + cout + extra), FILL, np.float32)
    packed = pack_conv2d(kernel, b)
    conv2d(x, packed, out, (1, 1), pad, act, res, c0)
    assert packed.wino_weights is not None      # the transformed weights: Winograd ran
    want = ref.conv2d(x, kernel, b, (1, 1), pad, act, res)
    err = rel_err(out[..., c0:c0 + cout], want, ref.conv2d(x, kernel, b, (1, 1), pad, None, res))
    untouched = np.all(out[..., :c0] == FILL) and np.all(out[..., c0 + cout:] == FILL)
    return packed, err, untouched


def test_transform_matrices_give_exact_small_convolution():
    """A^T [(G g G^T) * (B^T d B)] A equals the direct 3x3 correlation of a 6x6 patch (float64)."""
    bt = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                   [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64)
    at = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                   [0, 1, -1, 8, -8, 1]], np.float64)
    r = np.random.default_rng(0)
    d, g = r.standard_normal((6, 6)), r.standard_normal((3, 3))
    y = at @ ((wino._G @ g @ wino._G.T) * (bt @ d @ bt.T)) @ at.T
    want = np.array([[(d[i:i + 3, j:j + 3] * g).sum() for j in range(4)] for i in range(4)])
    np.testing.assert_allclose(y, want, atol=1e-12)


def test_weight_transform_layout(rng):
    kernel = rng.standard_normal((3, 3, 5, 70), dtype=np.float32)
    u = wino.transform_weights(kernel)
    assert u.shape == (2, 36, 5, 64)
    full = np.einsum("ai,ijco,bj->abco", wino._G, kernel.astype(np.float64), wino._G).reshape(36, 5, 70)
    np.testing.assert_allclose(u[0], full[..., :64], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(u[1, ..., :6], full[..., 64:], rtol=1e-6, atol=1e-6)
    assert np.all(u[1, ..., 6:] == 0)


# (n, h, w, cin, cout, pad): maps that are and are not multiples of 4, valid and asymmetric padding
CASES = {
    "same_ragged": (1, 13, 11, 64, 70, (1, 1, 1, 1)),
    "valid": (1, 18, 17, 72, 64, (0, 0, 0, 0)),
    "asymmetric": (1, 15, 14, 64, 96, (0, 1, 2, 0)),
    "batch3_multiple_of_4": (3, 8, 8, 96, 130, (1, 1, 1, 1)),
    "many_tiles": (1, 40, 37, 64, 64, (1, 1, 1, 1)),
    "wide_cin": (1, 14, 14, 320, 64, (1, 1, 1, 1)),
}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_matches_reference(case, threads, rng):
    with numba_threads(threads):
        _, err, untouched = run(rng, *CASES[case])
    assert err <= WINO_TOL
    assert untouched


def test_cases_cover_the_shared_input_transform():
    """With 2 threads, few tiles and >= 2 channel blocks the input transform runs as its own parallel
    loop into one shared V (output channels split in groups); test_matches_reference covers both."""
    plans = [wino.plan_blocks(n * -(-(h + p[0] + p[1] - 2) // 4) * -(-(w + p[2] + p[3] - 2) // 4), -(-co // 64), 2)
             for n, h, w, _, co, p in CASES.values()]
    assert any(ng > 1 for _, ng, _ in plans) and any(ng == 1 for _, ng, _ in plans)


@pytest.mark.parametrize("act", [None, "relu", "relu6", "silu", "gelu", "hard_silu"])
@pytest.mark.parametrize("residual", [False, True])
def test_epilogue_and_channel_slice(act, residual, rng):
    _, err, untouched = run(rng, 2, 10, 9, 64, 100, (1, 1, 1, 1), act=act, residual=residual,
                            bias=not residual, c0=13, extra=7)
    assert err <= WINO_TOL
    assert untouched


# shapes the dispatcher normally gives the direct kernel: 4 tiles, 16 or 32 channels, a 1x1 map
@pytest.mark.parametrize("n,h,w,cin,cout,pad", [(1, 7, 7, 128, 128, (1, 1, 1, 1)), (1, 16, 16, 16, 64, (1, 1, 1, 1)),
                                               (1, 16, 16, 32, 32, (0, 0, 0, 0)), (2, 3, 3, 40, 24, (0, 0, 0, 0))])
def test_few_tiles_and_few_channels(n, h, w, cin, cout, pad, rng):
    _, err, untouched = run(rng, n, h, w, cin, cout, pad, act="relu6", residual=True, c0=3, extra=1)
    assert err <= WINO_TOL
    assert untouched


def test_not_used_for_stride_2(rng):
    x = rng.standard_normal((1, 16, 16, 64), dtype=np.float32)
    kernel = rng.standard_normal((3, 3, 64, 64), dtype=np.float32)
    packed = pack_conv2d(kernel, None)
    out = np.empty((1, 8, 8, 64), np.float32)
    conv2d(x, packed, out, (2, 2), (1, 1, 1, 1))
    assert packed.wino_weights is None
    assert rel_err(out, ref.conv2d(x, kernel, None, (2, 2), (1, 1, 1, 1))) <= 1e-5


@pytest.mark.parametrize("n_tiles,nb,threads", [(3136, 1, 2), (196, 1, 2), (49, 2, 2), (16, 8, 2), (16, 1, 2),
                                                (5, 3, 1), (49, 8, 1), (2, 1, 2)])
def test_plan_blocks_covers_every_tile_once(n_tiles, nb, threads):
    tb, ng, n_mb = wino.plan_blocks(n_tiles, nb, threads)
    assert tb % 6 == 0 and 6 <= tb <= max(wino.TB_MAX, 6)
    assert 1 <= ng <= max(nb, 1) and 1 <= n_mb <= n_tiles
    ranges = [wino.block_range(mb, n_tiles, n_mb) for mb in range(n_mb)]
    starts = [t0 for t0, _ in ranges]
    sizes = np.array([nt for _, nt in ranges])
    assert starts == sorted(starts) and all(t0 % 6 == 0 for t0 in starts)
    assert starts[0] == 0 and starts[-1] + sizes[-1] == n_tiles and sizes.sum() == n_tiles
    assert sizes.min() >= 1 and sizes.max() <= tb
    groups = -(-sizes // 6)                 # GEMM row tiles per block: equal to within one
    assert groups.max() - groups.min() <= 1
    if threads > 1 and -(-n_tiles // 6) >= threads:
        # static scheduling: contiguous equal runs of work items give each thread the same tile count
        items = np.repeat(sizes, ng)
        assert len(items) % threads == 0
        per_thread = items.reshape(threads, -1).sum(axis=1)
        assert per_thread.max() - per_thread.min() <= 6 * len(items) // threads


def test_scratch_reused_across_calls(rng):
    kernel = rng.standard_normal((3, 3, 64, 64), dtype=np.float32)
    packed = pack_conv2d(kernel, None)
    out = np.empty((1, 12, 12, 64), np.float32)
    for _ in range(3):
        x = rng.standard_normal((1, 12, 12, 64), dtype=np.float32)
        conv2d(x, packed, out, (1, 1), (1, 1, 1, 1))
        assert rel_err(out, ref.conv2d(x, kernel, None, (1, 1), (1, 1, 1, 1))) <= WINO_TOL
    assert len(scratch_keys("conv.pad")) == 1       # the padded input, and one set of Winograd buffers
    assert scratch_keys("winograd") == [("winograd", wino.plan_blocks(9, 1, numba.get_num_threads())[0], 64)]
