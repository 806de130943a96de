"""Measure this machine's fp32 FMA peak and memory bandwidth with Numba, per core and for all cores.

    python tools/peak.py [--threads N] [--seconds 0.3] [--mib 256]

FMA peak: a register-only loop over 24 independent accumulator vectors (a 6 x 64 float32 stack tile,
the same one kernels/cpu/conv/tile.py uses, so 24 zmm with AVX-512); each step does acc = acc * m + a
on all of them, i.e. 6 * 64 FMAs = 768 FLOPs with no memory traffic. 24 chains cover the FMA latency
(4 cycles) x pipes (2) many times over, so the loop is throughput-bound. "All cores" runs one such
loop per thread in a prange and divides the total FLOPs by the wall time of the slowest.

Bandwidth: STREAM-style kernels on arrays far larger than the last-level cache (--mib per array):
  read   s += a[i]                    4 bytes / element   (what a batch-1 dense layer does with W)
  copy   c[i] = a[i]                  8 bytes / element
  triad  a[i] = b[i] + s * c[i]      12 bytes / element  (STREAM's convention: write-allocate
                                                          traffic is not counted)
Each is timed as the best of several passes (STREAM reports the best), 1 thread and all threads.

Prints a small table; the numbers are what bench/ quotes as "% of peak". On a shared machine run
it when the other core is idle: a busy neighbour halves the all-core figures.
"""

import argparse
import os
import platform
import sys
import time

import numba
import numpy as np
from numba import njit, prange

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from kernels.cpu.conv.tile import MR, NR, register_tile  # noqa: E402

FLOPS_PER_STEP = 2 * MR * NR


@njit(fastmath=True, cache=True, inline="always")
def _fma_body(steps, m, a):
    acc = register_tile()
    for p in range(MR):
        for c in range(NR):
            acc[p, c] = np.float32(p + c) * np.float32(1e-3)
    for _ in range(steps):
        for c in range(NR):
            acc[0, c] = acc[0, c] * m + a
            acc[1, c] = acc[1, c] * m + a
            acc[2, c] = acc[2, c] * m + a
            acc[3, c] = acc[3, c] * m + a
            acc[4, c] = acc[4, c] * m + a
            acc[5, c] = acc[5, c] * m + a
    s = np.float32(0.0)
    for p in range(MR):
        for c in range(NR):
            s += acc[p, c]
    return s


@njit(fastmath=True, cache=True)
def fma_serial(steps, m, a):
    return _fma_body(steps, m, a)


@njit(fastmath=True, cache=True, parallel=True)
def fma_parallel(steps, m, a, sink):
    for t in prange(sink.size):
        sink[t] = _fma_body(steps, m, a)


@njit(fastmath=True, cache=True)
def _read_span(a):
    s = np.float32(0.0)
    for i in range(a.size):
        s += a[i]
    return s


@njit(fastmath=True, cache=True)
def _copy_span(a, c):
    for i in range(a.size):
        c[i] = a[i]


@njit(fastmath=True, cache=True)
def _triad_span(a, b, c, s):
    for i in range(a.size):
        a[i] = b[i] + s * c[i]


@njit(fastmath=True, cache=True, parallel=True)
def read_par(a, nchunk, sink):
    step = -(-a.size // nchunk)
    for k in prange(nchunk):
        sink[k] = _read_span(a[k * step:(k + 1) * step])


@njit(fastmath=True, cache=True, parallel=True)
def copy_par(a, c, nchunk):
    step = -(-a.size // nchunk)
    for k in prange(nchunk):
        _copy_span(a[k * step:(k + 1) * step], c[k * step:(k + 1) * step])


@njit(fastmath=True, cache=True, parallel=True)
def triad_par(a, b, c, s, nchunk):
    step = -(-a.size // nchunk)
    for k in prange(nchunk):
        lo, hi = k * step, (k + 1) * step
        _triad_span(a[lo:hi], b[lo:hi], c[lo:hi], s)


def best_time(fn, passes):
    fn()
    best = float("inf")
    for _ in range(passes):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure_fma(threads, seconds):
    m, a = np.float32(0.999999), np.float32(1e-7)
    sink = np.zeros(threads, np.float32)
    if threads == 1:
        fma_serial(10, m, a)
        run = lambda steps: fma_serial(steps, m, a)  # noqa: E731
    else:
        fma_parallel(10, m, a, sink)
        run = lambda steps: fma_parallel(steps, m, a, sink)  # noqa: E731
    steps = 1 << 16
    while True:  # grow until one run lasts long enough to dwarf the call overhead
        t = best_time(lambda s=steps: run(s), 1)
        if t >= seconds / 4:
            break
        steps *= 2
    t = best_time(lambda: run(steps), 4)
    return threads * steps * FLOPS_PER_STEP / t / 1e9


def measure_bandwidth(threads, mib, passes):
    n = mib * (1 << 20) // 4
    a, b, c = (np.full(n, 1.0, np.float32) for _ in range(3))
    sink = np.zeros(threads, np.float32)
    s = np.float32(0.5)
    if threads == 1:
        kernels = {
            "read": (lambda: _read_span(a), 4),
            "copy": (lambda: _copy_span(a, c), 8),
            "triad": (lambda: _triad_span(a, b, c, s), 12),
        }
    else:
        kernels = {
            "read": (lambda: read_par(a, threads, sink), 4),
            "copy": (lambda: copy_par(a, c, threads), 8),
            "triad": (lambda: triad_par(a, b, c, s, threads), 12),
        }
    return {name: nbytes * n / best_time(fn, passes) / 1e9 for name, (fn, nbytes) in kernels.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS, help="all-core thread count")
    ap.add_argument("--seconds", type=float, default=0.3, help="approximate length of one FMA timing")
    ap.add_argument("--mib", type=int, default=256, help="size of each bandwidth array in MiB")
    ap.add_argument("--passes", type=int, default=5, help="bandwidth passes (best is kept)")
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, numba {numba.__version__}, "
          f"load average {load:.2f}")
    print(f"{'threads':>7s} {'FMA GFLOP/s':>12s} {'read GB/s':>10s} {'copy GB/s':>10s} {'triad GB/s':>11s}")
    for k in sorted({1, args.threads}):
        numba.set_num_threads(k)
        flops = measure_fma(k, args.seconds)
        bw = measure_bandwidth(k, args.mib, args.passes)
        print(f"{k:7d} {flops:12.1f} {bw['read']:10.1f} {bw['copy']:10.1f} {bw['triad']:11.1f}", flush=True)


if __name__ == "__main__":
    main()
