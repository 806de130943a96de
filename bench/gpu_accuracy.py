"""Accuracy of the CUDA conv2d kernels, fp32 (kernels.gpu) and TF32 (kernels.gpu.tf32), against the
float64 oracle: max|ours - ref| / max|ref| per case, the path the planner takes (tile / K splits, or
the skinny GEMM), and TF32's stated bound for the case. On the device when one is usable, else on the
host emulator (kernels/gpu/emulate.h), which rounds and accumulates as mma.sync TF32 does.

    python bench/gpu_accuracy.py                 # device if usable, else emulator
    python bench/gpu_accuracy.py --emulator      # force the emulator
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kernels import conv_output_size  # noqa: E402
from kernels import reference as ref  # noqa: E402
from kernels.gpu import conv, gemm, tf32  # noqa: E402
from kernels.gpu import runtime as rt  # noqa: E402

# n, h, w, cin, cout, kh, kw, stride, pad: odd sizes, cout not a multiple of any tile, small-M splits
CASES = [
    (1, 19, 17, 3, 13, 7, 7, (2, 2), (3, 3, 3, 3)),
    (2, 15, 13, 8, 20, 3, 3, (1, 1), (1, 1, 1, 1)),
    (2, 9, 11, 12, 36, 1, 1, (1, 1), (0, 0, 0, 0)),
    (3, 10, 9, 16, 7, 3, 3, (2, 2), (0, 1, 0, 1)),
    (1, 6, 5, 36, 130, 3, 3, (1, 2), (2, 0, 1, 2)),
    (1, 5, 5, 96, 40, 3, 3, (1, 1), (1, 1, 1, 1)),
    (1, 3, 3, 20, 33, 1, 1, (1, 1), (0, 0, 0, 0)),
]


def path(kind, m, cout, k, pointwise):
    if pointwise and m <= gemm.MAX_ROWS:
        return "skinny GEMM"
    p = conv.plan(m, cout, k, kind, rt.sm_count())
    return f"{p.tile.bm}x{p.tile.bn}/s{p.splits}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emulator", action="store_true", help="run on the host emulator even with a device")
    args = ap.parse_args(argv)
    problem = rt.unavailable_reason()
    if args.emulator or problem:
        from kernels.gpu import emulate
        where, ctx = "host emulator", emulate.emulated()
    else:
        import cupy

        import kernels.gpu as g
        where, ctx = "device", contextlib.nullcontext((g, cupy))
    with ctx as (g, cp):
        print(f"conv2d accuracy on the {where}; err = max|ours - ref| / max|ref| (no activation)")
        print("| conv | fp32 path | fp32 err | TF32 path | TF32 err | TF32 bound |")
        print("|---|---|---|---|---|---|")
        for i, (n, h, w, cin, cout, kh, kw, stride, pad) in enumerate(CASES):
            rng = np.random.default_rng(i)
            x = rng.uniform(-3, 3, (n, h, w, cin)).astype(np.float32)
            k = (rng.uniform(-3, 3, (kh, kw, cin, cout)) / np.sqrt(kh * kw * cin)).astype(np.float32)
            b = rng.uniform(-3, 3, cout).astype(np.float32)
            oh = conv_output_size(h, kh, stride[0], pad[0], pad[1])
            ow = conv_output_size(w, kw, stride[1], pad[2], pad[3])
            want = ref.conv2d(x, k, b, stride, pad)
            scale = np.abs(want).max()
            errs = []
            for backend in (g, tf32):
                out = cp.empty((n, oh, ow, cout), cp.float32)
                backend.conv2d(cp.asarray(x), backend.pack_conv2d(k, b), out, stride, pad)
                errs.append(float(np.abs(out.get() - want).max() / scale))
            bound = tf32.ERROR_BOUND * ref.conv2d(np.abs(x), np.abs(k), None, stride, pad).max() / scale
            m, kk, pw = n * oh * ow, kh * kw * cin, kh == kw == 1 and stride == (1, 1) and not any(pad)
            print(f"| {n}x{h}x{w}x{cin} -> {cout}, {kh}x{kw}/{stride[0]}x{stride[1]} | {path('fp32', m, cout, kk, pw)} "
                  f"| {errs[0]:.1e} | {path('tf32', m, cout, kk, pw)} | {errs[1]:.1e} | {bound:.1e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
