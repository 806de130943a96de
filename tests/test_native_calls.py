"""Drivers that call their work items through an address (``kernels.cpu.stack.call_native``): the
call behaves as a plain one, the driver's code no longer holds the callee's, and every driver's
call site gets the address of code compiled for exactly its argument types."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit, types

from kernels.cpu.native import native_address, untyped_calls
from kernels.cpu.stack import call_native

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@njit
def _axpy(a, x, y, lo, hi):
    for i in range(lo, hi):
        y[i] += a * x[i]


@njit
def _divide(a, b, out):
    out[0] = a // b          # an integer division by zero raises ZeroDivisionError


ARR = types.Array(types.float64, 1, "C")
AXPY_TYPES = (types.float64, ARR, ARR, types.int64, types.int64)
DIVIDE_TYPES = (types.int64, types.int64, types.Array(types.int64, 1, "C"))


@njit
def _axpy_halves(a, x, y, item):
    n = x.shape[0]
    call_native(item, _axpy, a, x, y, np.int64(0), n // 2)
    call_native(item, _axpy, a, x, y, n // 2, n)


@njit
def _divide_via(a, b, out, item):
    call_native(item, _divide, a, b, out)


def test_a_call_through_the_address_computes_what_a_plain_call_does():
    x = np.arange(11, dtype=np.float64)
    y = np.ones(11)
    _axpy_halves(2.5, x, y, native_address(_axpy, AXPY_TYPES))
    np.testing.assert_array_equal(y, 1 + 2.5 * x)


def test_an_exception_in_the_callee_reaches_the_caller():
    out = np.zeros(1, np.int64)
    item = native_address(_divide, DIVIDE_TYPES)
    _divide_via(7, 2, out, item)
    assert out[0] == 3
    with pytest.raises(ZeroDivisionError):
        _divide_via(7, 0, out, item)


def test_the_driver_holds_a_call_not_the_callees_code():
    # the point of the indirection: the callee's code (its multiply) is not compiled into the caller
    # again, while a plain call of the same function compiles it in
    _axpy_halves(1.0, np.zeros(4), np.zeros(4), native_address(_axpy, AXPY_TYPES))
    ir = _axpy_halves.inspect_llvm(next(iter(_axpy_halves.overloads)))
    assert "inttoptr" in ir and "fmul" not in ir
    plain = njit(lambda a, x, y: _axpy(a, x, y, 0, x.shape[0]))
    plain(1.0, np.zeros(4), np.zeros(4))
    assert "fmul" in plain.inspect_llvm(next(iter(plain.overloads)))


def test_every_call_site_typed_here_has_its_address():
    # what the drivers below compile in this process (when the cache is cold) must all match the
    # types their Python side looked the addresses up for
    _axpy_halves(1.0, np.zeros(4), np.zeros(4), native_address(_axpy, AXPY_TYPES))
    assert untyped_calls() == []


KERNELS_COLD = r"""
import json, sys
import numpy as np
import numba
import kernels.cpu as K
from kernels import reference as R
from kernels.cpu.native import untyped_calls

rng = np.random.default_rng(0)
errs = {}

def rel(got, want):
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))

for threads in (2, 1):
    numba.set_num_threads(threads)
    # direct conv (1x1 and 3x3 stride 2), Winograd (into a channel slice, with a residual)
    x = rng.standard_normal((2, 20, 20, 40), dtype=np.float32)
    for k, s, pad in ((1, 1, (0, 0, 0, 0)), (3, 2, (1, 1, 1, 1)), (3, 1, (1, 1, 1, 1))):
        w = rng.standard_normal((k, k, 40, 72), dtype=np.float32)
        b = rng.standard_normal(72).astype(np.float32)
        oh = (20 + pad[0] + pad[1] - k) // s + 1
        res = rng.standard_normal((2, oh, oh, 72), dtype=np.float32)
        want = R.conv2d(x, w, b, (s, s), pad, "relu", res)
        p = K.pack_conv2d(w, b)
        out = np.zeros((2, oh, oh, 72 + 8), np.float32)
        K.conv2d(x, p, out, (s, s), pad, "relu", res, 8)
        errs[f"conv{k}s{s}/{threads} {p.variant}"] = rel(out[..., 8:], want)
    # a 1x1 conv on a 1x1 map (fewer pixels than the 6-pixel tile: one row tile per pixel)
    v = rng.standard_normal((1, 1, 1, 256), dtype=np.float32)
    w = rng.standard_normal((1, 1, 256, 100), dtype=np.float32)
    b = rng.standard_normal(100).astype(np.float32)
    out = np.zeros((1, 1, 1, 100), np.float32)
    K.conv2d(v, K.pack_conv2d(w, b), out, (1, 1), (0, 0, 0, 0), None)
    errs[f"conv1x1map/{threads}"] = rel(out, R.conv2d(v, w, b))
    # depthwise alone, fused with the 1x1 after it (with and without an input activation)
    for s, pad in ((1, (1, 1, 1, 1)), (2, (0, 1, 0, 1))):
        dk = rng.standard_normal((3, 3, 40, 1), dtype=np.float32)
        db = rng.standard_normal(40).astype(np.float32)
        pk = rng.standard_normal((1, 1, 40, 24), dtype=np.float32)
        pb = rng.standard_normal(24).astype(np.float32)
        big = rng.standard_normal((2, 48, 48, 40), dtype=np.float32)
        oh = (48 + pad[0] + pad[1] - 3) // s + 1
        mid = R.depthwise_conv2d(big, dk, db, (s, s), pad, "relu6")
        out = np.zeros((2, oh, oh, 40), np.float32)
        K.depthwise_conv2d(big, K.pack_depthwise(dk, db), out, (s, s), pad, "relu6")
        errs[f"dw s{s}/{threads}"] = rel(out, mid)
        for in_act in (None, "relu"):
            src = np.maximum(big, 0) if in_act else big
            want = R.conv2d(R.depthwise_conv2d(src, dk, db, (s, s), pad, "relu6"), pk, pb, act="relu6")
            p = K.pack_depthwise_pointwise(dk, db, pk, pb)
            out = np.zeros((2, oh, oh, 24), np.float32)
            K.depthwise_pointwise(big, p, out, (s, s), pad, "relu6", "relu6", in_act=in_act)
            errs[f"dwpw s{s} {in_act}/{threads} {p.variant}"] = rel(out, want)
    # pooling with a constant window
    big = rng.standard_normal((2, 48, 48, 40), dtype=np.float32)
    out = np.zeros((2, 23, 23, 40), np.float32)
    K.max_pool2d(big, out, (3, 3), (2, 2), (0, 0, 0, 0))
    errs[f"maxpool/{threads}"] = rel(out, R.max_pool2d(big, (3, 3), (2, 2)))
    out = np.zeros((2, 48, 48, 40), np.float32)
    K.avg_pool2d(big, out, (3, 3), (1, 1), (1, 1, 1, 1), False)
    errs[f"avgpool/{threads}"] = rel(out, R.avg_pool2d(big, (3, 3), (1, 1), (1, 1, 1, 1)))
    # dense (a classifier: weights large enough to split over the threads)
    v = rng.standard_normal((3, 2048), dtype=np.float32)
    w = rng.standard_normal((2048, 200), dtype=np.float32)
    b = rng.standard_normal(200).astype(np.float32)
    out = np.zeros((3, 200), np.float32)
    K.dense(v, K.pack_dense(w, b), out, "relu")
    errs[f"dense/{threads}"] = rel(out, R.dense(v, w, b, "relu"))
print(json.dumps(dict(errs=errs, untyped=untyped_calls())))
"""


@pytest.mark.slow
def test_cold_compiled_drivers_call_code_for_their_own_types(tmp_path):
    # an empty cache, so every driver is compiled (typed) here: each call_native site's argument
    # types must be those its Python side computed for the address, or it would call code compiled
    # for other types; and every kernel still matches the reference
    env = dict(os.environ, PYTHONPATH=ROOT, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    out = subprocess.run([sys.executable, "-c", KERNELS_COLD], env=env, cwd=str(tmp_path), capture_output=True,
                         text=True, timeout=1200)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["untyped"] == []
    assert any("winograd" in k for k in got["errs"]) and any("dw3x3" in k for k in got["errs"])
    bad = {k: e for k, e in got["errs"].items() if e > (3e-5 if "winograd" in k else 1e-5)}
    assert not bad, bad
