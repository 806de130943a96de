"""Accuracy (and code) of the vectorisable float32 functions of kernels/cpu/fastmath.py.

    python tools/fastmath_accuracy.py          # max error of each against float64, in ulp and relative
    python tools/fastmath_accuracy.py --asm    # zmm instructions and calls in a loop over each
    python tools/fastmath_accuracy.py --fit    # the polynomial coefficients, refitted

Errors: every float32 in the range when there are at most 2^24 of them, else 4M evenly spaced points
plus a geometric sweep towards 0; ulp = |got - exact| / spacing(float32(|exact|)). The fits are
least-squares on 4000 Chebyshev nodes in float64 (near-minimax), then rounded to float32.
"""

import argparse
import math
import os
import re
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def _vec(f):
    return np.vectorize(f, otypes=[np.float64])


def references():
    def expit(x):
        return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))

    erfc = _vec(math.erfc)
    c = math.sqrt(2 / math.pi)
    return {
        "exp": (np.exp, (-87.0, 88.0)),
        "sigmoid": (expit, (-30.0, 30.0)),
        "silu": (lambda x: x * expit(x), (-30.0, 30.0)),
        "tanh": (np.tanh, (-30.0, 30.0)),
        "erf": (_vec(math.erf), (-30.0, 30.0)),
        "gelu": (lambda x: 0.5 * x * erfc(-x / math.sqrt(2)), (-3.0, 30.0)),
        "gelu_tanh": (lambda x: x * expit(2 * c * (x + 0.044715 * x ** 3)), (-3.0, 30.0)),
        "gelu tail": (lambda x: 0.5 * x * erfc(-x / math.sqrt(2)), (-13.0, -3.0)),
        "gelu_tanh tail": (lambda x: x * expit(2 * c * (x + 0.044715 * x ** 3)), (-13.0, -3.0)),
        "log": (np.log, (1e-30, 1e30)),
    }


def points(lo, hi):
    if lo > 0:
        return np.geomspace(lo, hi, 4_000_001).astype(np.float32)
    x = np.linspace(lo, hi, 4_000_001)
    if lo < 0 < hi:
        x = np.concatenate([x, np.linspace(-2, 2, 1_000_001), np.geomspace(1e-30, 1, 100_001),
                            -np.geomspace(1e-30, min(1, -lo), 100_001)])
    return np.unique(x.astype(np.float32))


def loops():
    """An uncached jitted loop over each function, compiled as ``common.act_span`` is."""
    os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp())
    from numba import njit

    from kernels.cpu import fastmath as fm

    def make(fn):
        @njit(**{**fm.FAST, "cache": False})      # the flags of common.act_span, which calls them
        def run(x, out):
            for i in range(x.size):
                out[i] = fn(x[i])
        return run

    names = {"exp": fm.exp_f32, "sigmoid": fm.sigmoid_f32, "silu": fm.silu_f32, "tanh": fm.tanh_f32,
             "erf": fm.erf_f32, "gelu": fm.gelu_f32, "gelu_tanh": fm.gelu_tanh_f32, "log": fm.log_f32}
    return {k: make(f) for k, f in names.items()}


def accuracy():
    refs = references()
    runs = loops()
    for name, (ref, (lo, hi)) in refs.items():
        run = runs[name.split()[0]]
        x = points(lo, hi)
        got = np.empty_like(x)
        run(x, got)
        want = ref(x.astype(np.float64))
        err = np.abs(got.astype(np.float64) - want)
        live = np.abs(want) > 1e-37
        ulp = err[live] / np.spacing(np.abs(want[live]).astype(np.float32)).astype(np.float64)
        rel = err[live] / np.abs(want[live])
        at = x[live][ulp.argmax()]
        print(f"{name:14s} [{lo:g}, {hi:g}]  max {ulp.max():6.2f} ulp (at x = {at:.6g})  max rel {rel.max():.2e}  "
              f"max abs {err.max():.2e}")


def asm():
    for name, run in loops().items():
        x = np.ones(64, np.float32)
        run(x, np.empty_like(x))
        code = run.inspect_asm(run.signatures[0])
        zmm = sum(1 for line in code.splitlines() if "zmm" in line)
        calls = [line.strip() for line in code.splitlines() if re.search(r"\bcall", line)
                 and re.search(r"exp|erf|tanh|log|f32", line)]
        print(f"{name:10s} {zmm:4d} lines with zmm, math calls: {calls or 'none'}")


def cheb(a, b, n=4000):
    k = np.arange(n)
    return (a + b) / 2 + (b - a) / 2 * np.cos(np.pi * (k + 0.5) / n)


def lsq(x, y, powers, w=None):
    a = np.stack([x ** k for k in powers], 1)
    w = np.ones_like(x) if w is None else w
    return np.linalg.lstsq(a * w[:, None], y * w, rcond=None)[0].astype(np.float32)


def fit():
    erf, erfc = _vec(math.erf), _vec(math.erfc)
    h = math.log(2) / 2
    r = cheb(-h, h)
    print("exp  E0..E4:", lsq(r, (np.expm1(r) - r) / (r * r), range(5), r * r / np.exp(r)).tolist())
    s = cheb(1e-4, 0.625)
    print("tanh T0..T5:", lsq(s, (np.tanh(s) - s) / s ** 3, [2 * k for k in range(6)], s ** 3 / np.tanh(s)).tolist())
    z = cheb(1e-4, 0.9)
    print("erf  R0..R6:", lsq(z, erf(z) / z, [2 * k for k in range(7)]).tolist())
    u = cheb(1 / 9.5, 1 / 0.9)
    zz = 1 / u
    g = np.log(zz * erfc(zz)) + zz * zz            # log(z erfcx(z))
    print("erfc G0..G9 (t = u - 0.6081871345029239):", lsq(u - (1 / 9.5 + 1 / 0.9) / 2, g, range(10)).tolist())
    m = cheb(math.sqrt(0.5), math.sqrt(2))
    f = (m - 1) / (m + 1)
    keep = np.abs(f) > 1e-6
    print("log  L1..L9:", lsq(f[keep], np.log(m[keep]) / f[keep], [0, 2, 4, 6, 8]).tolist())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--asm", action="store_true")
    ap.add_argument("--fit", action="store_true")
    args = ap.parse_args(argv)
    if args.fit:
        fit()
    elif args.asm:
        asm()
    else:
        accuracy()


if __name__ == "__main__":
    main()
