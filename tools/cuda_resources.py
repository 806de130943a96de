"""Registers, spills, shared memory and blocks per SM of every CUDA specialisation, as a Markdown
table (bench/RESULTS.md, GPU). Needs nvcc only, no GPU.

    python tools/cuda_resources.py                 # sm_90 and sm_80, every family
    python tools/cuda_resources.py --family conv --arch sm_90
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from kernels.gpu import conv, ptxas  # noqa: E402
from kernels.gpu import runtime as rt  # noqa: E402


def threads_of(expr: str) -> int | None:
    """Threads per block a loader launches ``expr`` with (None where it varies or is not a tile)."""
    for t in conv.FP32_TILES + conv.TF32_TILES:
        if expr.startswith(conv.expression(t, 0)[:-2]):
            return t.threads
    if expr.startswith("gemm_rows"):
        return 256
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", nargs="+", default=rt.families())
    p.add_argument("--arch", nargs="+", default=list(ptxas.ARCHS))
    args = p.parse_args(argv)
    if ptxas.nvcc() is None:
        print("nvcc is not on PATH")
        return 1
    print("| kernel | arch | registers | spill stores/loads | stack | static smem | blocks/SM |")
    print("|---|---|---|---|---|---|---|")
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.family:
            for arch in args.arch:
                c = ptxas.compile_family(family, arch, tmp)
                if c.returncode:
                    print(c.log, file=sys.stderr)
                    return 1
                for k in sorted(c.kernels, key=lambda k: k.expression):
                    threads = threads_of(k.expression)
                    blocks = "" if threads is None else ptxas.blocks_per_sm(k.registers, threads, k.smem, arch)
                    bad += (k.spill_stores, k.spill_loads, k.stack) != (0, 0, 0)
                    print(f"| `{k.expression}` | {arch} | {k.registers} | {k.spill_stores}/{k.spill_loads} | "
                          f"{k.stack} | {k.smem} | {blocks} |")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
