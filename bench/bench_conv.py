"""Time kernels.cpu.conv2d on the conv shapes of ResNet50, VGG16 and InceptionV3 (batch 1).

    python bench/bench_conv.py                 # threads 1 and 2, torch (oneDNN) baseline alongside
    python bench/bench_conv.py --threads 2 --no-torch --net resnet50

Each row: shape, variant, median ms, GFLOP/s, % of peak, and torch.nn.functional.conv2d
(channels_last) at the same thread count as a yardstick. FLOPs = 2 x MACs. Peak is
64 FLOP/cycle/core (Zen 5: two 512-bit FMA pipes x 16 lanes x 2) at the clock estimated below from a
dependent integer-multiply chain (3 cycles per imul); the L1-resident micro-kernel rate is printed
too, as the practically reachable ceiling. Every shape is checked against kernels.reference once.
"""

import argparse
import os
import platform
import sys
import time

import numba
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kernels import conv_output_size  # noqa: E402
from kernels import reference as ref  # noqa: E402
from kernels.cpu.conv import conv2d, pack_conv2d  # noqa: E402

FLOP_PER_CYCLE = 64

# name: (H, W, cin, cout, kh, kw, stride, pad)
SHAPES = {
    "resnet50": [
        ("conv1 7x7/2 3>64", 224, 224, 3, 64, 7, 7, 2, (3, 3, 3, 3)),
        ("c2 1x1 64>64", 56, 56, 64, 64, 1, 1, 1, (0, 0, 0, 0)),
        ("c2 3x3 64>64", 56, 56, 64, 64, 3, 3, 1, (1, 1, 1, 1)),
        ("c2 1x1 64>256", 56, 56, 64, 256, 1, 1, 1, (0, 0, 0, 0)),
        ("c2 1x1 256>64", 56, 56, 256, 64, 1, 1, 1, (0, 0, 0, 0)),
        ("c3 1x1/2 256>512", 56, 56, 256, 512, 1, 1, 2, (0, 0, 0, 0)),
        ("c3 3x3 128>128", 28, 28, 128, 128, 3, 3, 1, (1, 1, 1, 1)),
        ("c3 1x1 128>512", 28, 28, 128, 512, 1, 1, 1, (0, 0, 0, 0)),
        ("c3 1x1 512>128", 28, 28, 512, 128, 1, 1, 1, (0, 0, 0, 0)),
        ("c4 3x3 256>256", 14, 14, 256, 256, 3, 3, 1, (1, 1, 1, 1)),
        ("c4 1x1 256>1024", 14, 14, 256, 1024, 1, 1, 1, (0, 0, 0, 0)),
        ("c4 1x1 1024>256", 14, 14, 1024, 256, 1, 1, 1, (0, 0, 0, 0)),
        ("c5 3x3 512>512", 7, 7, 512, 512, 3, 3, 1, (1, 1, 1, 1)),
        ("c5 1x1 512>2048", 7, 7, 512, 2048, 1, 1, 1, (0, 0, 0, 0)),
        ("c5 1x1 2048>512", 7, 7, 2048, 512, 1, 1, 1, (0, 0, 0, 0)),
    ],
    "vgg16": [
        ("b1 3x3 3>64", 224, 224, 3, 64, 3, 3, 1, (1, 1, 1, 1)),
        ("b1 3x3 64>64", 224, 224, 64, 64, 3, 3, 1, (1, 1, 1, 1)),
        ("b2 3x3 128>128", 112, 112, 128, 128, 3, 3, 1, (1, 1, 1, 1)),
        ("b3 3x3 256>256", 56, 56, 256, 256, 3, 3, 1, (1, 1, 1, 1)),
        ("b4 3x3 512>512", 28, 28, 512, 512, 3, 3, 1, (1, 1, 1, 1)),
        ("b5 3x3 512>512", 14, 14, 512, 512, 3, 3, 1, (1, 1, 1, 1)),
    ],
    "inception": [
        ("stem 3x3/2 3>32", 299, 299, 3, 32, 3, 3, 2, (0, 0, 0, 0)),
        ("stem 3x3 32>32", 149, 149, 32, 32, 3, 3, 1, (0, 0, 0, 0)),
        ("m5 5x5 48>64", 35, 35, 48, 64, 5, 5, 1, (2, 2, 2, 2)),
        ("m5 1x1 288>64", 35, 35, 288, 64, 1, 1, 1, (0, 0, 0, 0)),
        ("m6 1x7 128>128", 17, 17, 128, 128, 1, 7, 1, (0, 0, 3, 3)),
        ("m6 7x1 128>192", 17, 17, 128, 192, 7, 1, 1, (3, 3, 0, 0)),
        ("m7 3x3/2 192>320", 17, 17, 192, 320, 3, 3, 2, (0, 0, 0, 0)),
        ("m9 1x1 2048>320", 8, 8, 2048, 320, 1, 1, 1, (0, 0, 0, 0)),
        ("head 1x1 1024>1000", 1, 1, 1024, 1000, 1, 1, 1, (0, 0, 0, 0)),
    ],
}


@numba.njit(cache=True)
def _imul_chain(n, seed):
    x = seed
    for i in range(n):
        x = (x * 3) ^ i       # loop-carried: one imul (3 cycles) + xor, can't be closed-form folded
    return x


def estimate_clock_ghz(n=200_000_000):
    _imul_chain(1000, 1)
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        _imul_chain(n, 7)
        best = min(best, time.perf_counter() - t)
    return n * 4 / best / 1e9     # 4 cycles per iteration (imul 3 + xor 1)


def median_seconds(fn, min_repeats=5, budget_s=0.4):
    fn()
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < min_repeats or time.perf_counter() < t_end:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 1000:
            break
    return float(np.median(times))


def micro_kernel_ceiling():
    """Micro-kernel rate with everything in L1: 6 pixels x 64 channels x K=256, repeated."""
    x = np.random.default_rng(0).standard_normal((1, 1, 12, 256), dtype=np.float32)
    p = pack_conv2d(np.ones((1, 1, 256, 64), np.float32), None)
    out = np.empty((1, 1, 12, 64), np.float32)
    reps = 2000

    def many():
        for _ in range(reps):
            conv2d(x, p, out, (1, 1), (0, 0, 0, 0))

    numba.set_num_threads(1)
    t = median_seconds(many, 3, 0.5)
    return 2 * 12 * 256 * 64 * reps / t / 1e9


def torch_runner(x, kernel, stride, pad):
    import torch
    import torch.nn.functional as F
    t, b, l, r = pad
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).contiguous(
        memory_format=torch.channels_last)
    wt = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    if t == b and l == r:
        return lambda: F.conv2d(xt, wt, None, stride, (t, l))
    return lambda: F.conv2d(F.pad(xt, (l, r, t, b)), wt, None, stride)


def bench_shape(row, threads, use_torch, rng):
    name, h, w, cin, cout, kh, kw, s, pad = row
    x = rng.standard_normal((1, h, w, cin), dtype=np.float32)
    k = (rng.standard_normal((kh, kw, cin, cout), dtype=np.float32) / np.sqrt(kh * kw * cin)).astype(np.float32)
    b = rng.standard_normal(cout, dtype=np.float32)
    oh = conv_output_size(h, kh, s, pad[0], pad[1])
    ow = conv_output_size(w, kw, s, pad[2], pad[3])
    out = np.empty((1, oh, ow, cout), np.float32)
    p = pack_conv2d(k, b)
    conv2d(x, p, out, (s, s), pad, "relu")
    y = ref.conv2d(x, k, b, (s, s), pad, "relu")
    err = float(np.abs(out - y).max() / np.abs(y).max())
    assert err <= 1e-5, (name, err)
    flops = 2.0 * oh * ow * kh * kw * cin * cout
    numba.set_num_threads(threads)
    t = median_seconds(lambda: conv2d(x, p, out, (s, s), pad, "relu"))
    tt = None
    if use_torch:
        import torch
        torch.set_num_threads(threads)
        tt = median_seconds(torch_runner(x, k, (s, s), pad))
    return p.variant, flops, t, tt


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--net", choices=list(SHAPES), nargs="+", default=list(SHAPES))
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args(argv)
    ghz = estimate_clock_ghz()
    peak = FLOP_PER_CYCLE * ghz
    ceiling = micro_kernel_ceiling()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, numba "
          f"{numba.__version__} ({numba.threading_layer()}), batch 1")
    print(f"clock ~{ghz:.2f} GHz (imul chain) -> peak {peak:.0f} GFLOP/s/core at {FLOP_PER_CYCLE} FLOP/cycle; "
          f"L1-resident micro-kernel {ceiling:.0f} GFLOP/s (1 thread)")
    rng = np.random.default_rng(0)
    total = {}
    hdr = f"{'net':9} {'layer':22} {'variant':18} {'thr':>3} {'ms':>8} {'GFLOP/s':>8} {'%peak':>6}"
    print(hdr + ("" if args.no_torch else f" {'torch ms':>9} {'ours/torch':>10}"))
    for net in args.net:
        for row in SHAPES[net]:
            for thr in args.threads:
                variant, flops, t, tt = bench_shape(row, thr, not args.no_torch, rng)
                gf = flops / t / 1e9
                total.setdefault((net, thr), [0.0, 0.0, 0.0])
                acc = total[(net, thr)]
                acc[0] += flops
                acc[1] += t
                acc[2] += tt or 0.0
                line = (f"{net:9} {row[0]:22} {variant:18} {thr:3d} {t * 1e3:8.3f} {gf:8.1f} "
                        f"{100 * gf / (peak * thr):5.1f}%")
                if tt is not None:
                    line += f" {tt * 1e3:9.3f} {t / tt:10.2f}"
                print(line, flush=True)
    for (net, thr), (flops, t, tt) in total.items():
        extra = "" if args.no_torch else f", torch {tt * 1e3:.2f} ms"
        print(f"sum {net} threads={thr}: {t * 1e3:.2f} ms, {flops / t / 1e9:.1f} GFLOP/s{extra}")


if __name__ == "__main__":
    main()
