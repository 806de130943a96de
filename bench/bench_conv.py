"""Time kernels.cpu.conv2d on the conv shapes of ResNet50, VGG16, InceptionV3 and MobileNet (batch 1).

    python bench/bench_conv.py                 # threads 1 and 2, torch (oneDNN) baseline alongside
    python bench/bench_conv.py --threads 2 --no-torch --net resnet50
    python bench/bench_conv.py --direct            # no Winograd: the direct kernel on every 3x3 layer
    python bench/bench_conv.py --cold --threads 2  # weights from DRAM, as in a network

Each row: shape, variant, median ms, GFLOP/s, % of peak, and torch.nn.functional.conv2d
(channels_last) at the same thread count as a yardstick. FLOPs = 2 x MACs. Peak is
64 FLOP/cycle/core (Zen 5: two 512-bit FMA pipes x 16 lanes x 2) at the clock estimated from a
dependent chain of three 1-cycle integer ops. FLOPs are those of a direct convolution, so a
Winograd row (4x fewer multiplies) shows an effective rate that can exceed the peak. Every shape is
checked against kernels.reference once.
The machine is shared: read the load average printed in the header before trusting a 2-thread
number (a busy neighbour stalls the static split and times snap to the 4-12 ms scheduler quantum).
"""

import argparse
import os
import platform
import sys
import time

import numba
import numpy as np

# KN_ROOT: measure the kernels of another source tree with this script (tools/ab.py)
sys.path.insert(0, os.environ.get("KN_ROOT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

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
    "mobilenet": [
        ("conv1 3x3/2 3>32", 224, 224, 3, 32, 3, 3, 2, (0, 1, 0, 1)),
        ("pw1 1x1 32>64", 112, 112, 32, 64, 1, 1, 1, (0, 0, 0, 0)),
        ("pw2 1x1 64>128", 56, 56, 64, 128, 1, 1, 1, (0, 0, 0, 0)),
        ("pw3 1x1 128>128", 56, 56, 128, 128, 1, 1, 1, (0, 0, 0, 0)),
        ("pw4 1x1 128>256", 28, 28, 128, 256, 1, 1, 1, (0, 0, 0, 0)),
        ("pw5 1x1 256>256", 28, 28, 256, 256, 1, 1, 1, (0, 0, 0, 0)),
        ("pw6 1x1 256>512", 14, 14, 256, 512, 1, 1, 1, (0, 0, 0, 0)),
        ("pw7-11 1x1 512>512", 14, 14, 512, 512, 1, 1, 1, (0, 0, 0, 0)),
        ("pw12 1x1 512>1024", 7, 7, 512, 1024, 1, 1, 1, (0, 0, 0, 0)),
        ("pw13 1x1 1024>1024", 7, 7, 1024, 1024, 1, 1, 1, (0, 0, 0, 0)),
        ("preds 1x1 1024>1000", 1, 1, 1024, 1000, 1, 1, 1, (0, 0, 0, 0)),
    ],
}


@numba.njit(cache=True)
def _alu_chain(n, seed):
    x = seed
    for i in range(n):
        x = (x ^ (x >> 3)) + i    # loop-carried shift -> xor -> add: 3 one-cycle ops, nothing to fold
    return x


def estimate_clock_ghz(n=200_000_000):
    _alu_chain(1000, 1)
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        _alu_chain(n, 7)
        best = min(best, time.perf_counter() - t)
    return n * 3 / best / 1e9


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


def aligned(shape):
    """float32, 64-byte aligned like the runtime's arena (NumPy's own buffers are 16-byte aligned)."""
    raw = np.empty(int(np.prod(shape)) * 4 + 64, np.uint8)
    start = (-raw.ctypes.data) % 64
    return raw[start:start + int(np.prod(shape)) * 4].view(np.float32).reshape(shape)


COLD_BYTES = 64 << 20     # --cold: copies of the packed weights cycled through, at least this much


def make_case(row, rng, direct=False, cold=False):
    name, h, w, cin, cout, kh, kw, s, pad = row
    x = aligned((1, h, w, cin))
    x[...] = rng.standard_normal((1, h, w, cin), dtype=np.float32)
    k = rng.standard_normal((kh, kw, cin, cout), dtype=np.float32) / np.float32(np.sqrt(kh * kw * cin))
    b = rng.standard_normal(cout, dtype=np.float32)
    oh = conv_output_size(h, kh, s, pad[0], pad[1])
    ow = conv_output_size(w, kw, s, pad[2], pad[3])
    out = aligned((1, oh, ow, cout))
    p = pack_conv2d(k, b)
    if direct:
        p.wino_ok = False
    conv2d(x, p, out, (s, s), pad, "relu")
    err = float(np.abs(out - ref.conv2d(x, k, b, (s, s), pad, "relu")).max() / np.abs(out).max())
    assert err <= (3e-5 if p.variant.startswith("winograd") else 1e-5), (name, err)
    flops = 2.0 * oh * ow * kh * kw * cin * cout
    if not cold:
        ours = lambda: conv2d(x, p, out, (s, s), pad, "relu")
        return p.variant, flops, ours, (x, k, (s, s), pad)
    # cold weights, as in a network whose weights outgrow L3: each call takes the next copy
    packs = [p] + [pack_conv2d(k, b) for _ in range(min(64, COLD_BYTES // (4 * k.size)))]
    for q in packs:
        q.wino_ok = p.wino_ok
    turn = [0]

    def ours():
        turn[0] = (turn[0] + 1) % len(packs)
        conv2d(x, packs[turn[0]], out, (s, s), pad, "relu")
    for _ in range(len(packs)):     # Winograd weights are made on a pack's first call
        ours()
    return p.variant, flops, ours, (x, k, (s, s), pad)


def threading_layer():
    try:
        return numba.threading_layer()
    except ValueError:      # no parallel region has run yet
        return "pool not started"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--net", choices=list(SHAPES), nargs="+", default=list(SHAPES))
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--direct", action="store_true", help="never Winograd (compare with a default run)")
    ap.add_argument("--cold", action="store_true", help="cycle through copies of each layer's weights (>= 64 MB "
                    "in all) so that they come from DRAM, as in a network")
    ap.add_argument("--ghz", type=float, help="core clock to compute peak from (default: measure; a busy "
                    "machine halves the estimate, ~4.0 measured quiet)")
    args = ap.parse_args(argv)
    ghz = args.ghz or estimate_clock_ghz()
    peak = FLOP_PER_CYCLE * ghz
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, numba "
          f"{numba.__version__} ({threading_layer()}), batch 1, load avg {os.getloadavg()[0]:.1f}")
    print(f"clock ~{ghz:.2f} GHz (ALU chain) -> peak {peak:.0f} GFLOP/s/core at {FLOP_PER_CYCLE} FLOP/cycle"
          + (", cold weights" if args.cold else ""))
    rng = np.random.default_rng(0)
    rows = [(net, row) + make_case(row, rng, args.direct, args.cold) for net in args.net for row in SHAPES[net]]
    # ours first, torch after: two OpenMP pools spin-waiting against each other on 2 cores stall both
    ours_t = {}
    for thr in args.threads:
        numba.set_num_threads(thr)
        for i, (_, _, _, _, ours, _) in enumerate(rows):
            ours_t[(i, thr)] = median_seconds(ours)
    torch_t = {}
    if not args.no_torch:
        import torch
        for thr in args.threads:
            torch.set_num_threads(thr)
            for i, (_, _, _, _, _, targs) in enumerate(rows):
                torch_t[(i, thr)] = median_seconds(torch_runner(*targs))
    hdr = f"{'net':9} {'layer':22} {'variant':19} {'thr':>3} {'ms':>8} {'GFLOP/s':>8} {'%peak':>6}"
    print(hdr + ("" if args.no_torch else f" {'torch ms':>9} {'ours/torch':>10}"))
    total = {}
    for thr in args.threads:
        for i, (net, row, variant, flops, _, _) in enumerate(rows):
            t = ours_t[(i, thr)]
            tt = torch_t.get((i, thr))
            gf = flops / t / 1e9
            acc = total.setdefault((net, thr), [0.0, 0.0, 0.0])
            acc[0] += flops
            acc[1] += t
            acc[2] += tt or 0.0
            line = (f"{net:9} {row[0]:22} {variant:19} {thr:3d} {t * 1e3:8.3f} {gf:8.1f} "
                    f"{100 * gf / (peak * thr):5.1f}%")
            if tt is not None:
                line += f" {tt * 1e3:9.3f} {t / tt:10.2f}"
            print(line)
    for (net, thr), (flops, t, tt) in total.items():
        extra = "" if args.no_torch else f", torch {tt * 1e3:.2f} ms"
        print(f"sum {net} threads={thr}: {t * 1e3:.2f} ms, {flops / t / 1e9:.1f} GFLOP/s{extra}")


if __name__ == "__main__":
    main()
