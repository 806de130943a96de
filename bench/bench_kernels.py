"""Time the non-convolution Numba kernels on real network shapes; print GB/s and GFLOP/s.

    python bench/bench_kernels.py [--threads 2] [--repeats 50] [--only depthwise,dense]
    python bench/bench_kernels.py --only new      # issue 12's ops, smooth activations, squeeze-excite
    python -m pytest bench/bench_kernels.py [-k depthwise] [--benchmark-columns=median]

As a script it prints one line per case with the share of the machine's peak; ``--peak-gflops``
and ``--peak-gbs`` default to the per-core figures measured by ``nets peaks --table`` (FMA
peak 255 GFLOP/s per core; read bandwidth, see docs/performance.md) times the thread count.
Under pytest (pytest-benchmark) each case is one benchmark, checked against the reference first,
with GB/s, GFLOP/s and % of peak in its extra_info.

Each kernel is validated against kernels.reference before it is timed (max rel err printed), then
run ``--warmup`` times and timed ``--repeats`` times; the median is reported. Bytes are the
compulsory traffic: every input, weight and output byte once (4 bytes per float32). FLOPs: 1 MAC =
2 FLOPs. A NumPy expression of the same op (BLAS for dense) runs alongside as a baseline.
"""

import argparse
import importlib
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

dw = importlib.import_module("kernels.cpu.depthwise")
pl = importlib.import_module("kernels.cpu.pool")
dn = importlib.import_module("kernels.cpu.dense")
ew = importlib.import_module("kernels.cpu.elementwise")

F = 4  # bytes per float32
# Per-core peaks of the project machine (Zen 5, AVX-512): FMA from docs/performance.md / `nets peaks --table`;
# bandwidth is that table's single-thread streaming read (the bound of a batch-1 dense layer).
PEAK_GFLOPS_PER_CORE = 255.0
PEAK_GBS_PER_CORE = 40.0


def median_time(fn, warmup, repeats):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def rel_err(ours, want):
    return float(np.abs(ours.astype(np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


def empty(shape):
    """float32, 64-byte aligned like the runtime's arena (NumPy's own buffers are 16-byte aligned,
    which splits every zmm load across two cache lines and slows the load-bound kernels)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    raw = np.empty(int(np.prod(shape)) * 4 + 64, np.uint8)
    start = (-raw.ctypes.data) % 64
    return raw[start:start + int(np.prod(shape)) * 4].view(np.float32).reshape(shape)


def rand(rng, *shape, lo=-1.0, hi=1.0):
    a = empty(shape)
    a[...] = rng.uniform(lo, hi, shape)
    return a


# Each case returns (name, run, baseline | None, bytes, flops, check) where check() -> rel err.


def depthwise_cases(rng):
    layers = [  # MobileNet (224, alpha 1) conv_dw_1..13 and an Xception middle-flow layer
        ("mobilenet conv_dw_1", 112, 32, 1), ("mobilenet conv_dw_2", 112, 64, 2),
        ("mobilenet conv_dw_3", 56, 128, 1), ("mobilenet conv_dw_4", 56, 128, 2),
        ("mobilenet conv_dw_5", 28, 256, 1), ("mobilenet conv_dw_6", 28, 256, 2),
        ("mobilenet conv_dw_7", 14, 512, 1), ("mobilenet conv_dw_12", 14, 512, 2),
        ("mobilenet conv_dw_13", 7, 1024, 1), ("xception block5 sepconv", 19, 728, 1),
    ]
    for name, h, c, s in layers:
        pad = (1, 1, 1, 1) if s == 1 else (0, 1, 0, 1)
        x, k, b = rand(rng, 1, h, h, c), rand(rng, 3, 3, c, 1), rand(rng, c)
        packed = dw.pack_depthwise(k, b)
        oh = conv_output_size(h, 3, s, pad[0], pad[1])
        out = empty((1, oh, oh, c))
        run = lambda x=x, p=packed, o=out, s=s, pad=pad: dw.depthwise_conv2d(x, p, o, (s, s), pad, "relu6")
        want = ref.depthwise_conv2d(x, k, b, (s, s), pad, "relu6")
        check = lambda run=run, o=out, want=want: (run(), rel_err(o, want))[1]
        yield (f"{name} {h}x{h}x{c} s{s} [{packed.variant}]", run, None,
               F * (x.size + out.size + k.size + c), 2 * 9 * out.size, check)


def pool_cases(rng):
    x = rand(rng, 1, 112, 112, 64)
    out = empty((1, 56, 56, 64))
    pad = (1, 1, 1, 1)
    run = lambda: pl.max_pool2d(x, out, (3, 3), (2, 2), pad)
    want = ref.max_pool2d(x, (3, 3), (2, 2), pad)
    yield ("resnet50 pool1 max 3x3/2 112x112x64", run, None, F * (x.size + out.size), 0,
           lambda: (run(), rel_err(out, want))[1])
    for h, c in [(35, 192), (35, 288), (17, 768), (8, 1280)]:
        y = rand(rng, 1, h, h, c)
        o = empty(y.shape)
        r = lambda y=y, o=o: pl.avg_pool2d(y, o, (3, 3), (1, 1), pad, False)
        want = ref.avg_pool2d(y, (3, 3), (1, 1), pad, False)
        yield (f"inception branch avg 3x3/1 {h}x{h}x{c}", r, None, F * 2 * y.size, 0,
               lambda r=r, o=o, want=want: (r(), rel_err(o, want))[1])
    g = rand(rng, 1, 7, 7, 2048)
    go = empty((1, 2048))
    run_g = lambda: pl.global_avg_pool(g, go)
    want_g = ref.global_avg_pool(g)
    yield ("resnet50 global avg 7x7x2048", run_g, lambda: g.mean(axis=(1, 2)), F * (g.size + go.size), 0,
           lambda: (run_g(), rel_err(go, want_g))[1])


def dense_cases(rng, batch):
    for name, k_in, n_out in [("vgg16 fc1", 25088, 4096), ("vgg16 fc2", 4096, 4096),
                              ("resnet50 predictions", 2048, 1000), ("mobilenet-like 1024->1000", 1024, 1000)]:
        x, k, b = rand(rng, batch, k_in), rand(rng, k_in, n_out, lo=-0.02, hi=0.02), rand(rng, n_out)
        packed = dn.pack_dense(k, b)
        out = empty((batch, n_out))
        run = lambda x=x, p=packed, o=out: dn.dense(x, p, o, "relu")
        base = lambda x=x, k=k: x @ k
        xs = x[:, :2048]  # the float64 reference of fc1 is slow; check a 2048-row slice of it
        ks = k[:2048]
        pk = dn.pack_dense(ks, b)
        os_ = empty(out.shape)
        check = lambda xs=xs, ks=ks, pk=pk, os_=os_, b=b: (
            dn.dense(xs, pk, os_, "relu"), rel_err(os_, ref.dense(xs, ks, b, "relu")))[1]
        yield (f"{name} {k_in}x{n_out} N={batch} [{packed.variant}]", run, base,
               F * (k.size + x.size + out.size), 2 * batch * k_in * n_out, check)


def elementwise_cases(rng):
    a, b = rand(rng, 1, 56, 56, 256), rand(rng, 1, 56, 56, 256)
    o = empty(a.shape)
    yield ("resnet50 residual add+relu 56x56x256", lambda: ew.add(a, b, o, "relu"),
           lambda: np.maximum(a + b, 0, out=o), F * 3 * a.size, 0,
           lambda: (ew.add(a, b, o, "relu"), rel_err(o, ref.add(a, b, "relu")))[1])
    sc, sh = rand(rng, 256), rand(rng, 256)
    yield ("channel_affine+relu 56x56x256", lambda: ew.channel_affine(a, sc, sh, o, "relu"),
           lambda: np.maximum(a * sc + sh, 0), F * 2 * a.size, 0,
           lambda: (ew.channel_affine(a, sc, sh, o, "relu"), rel_err(o, ref.channel_affine(a, sc, sh, "relu")))[1])
    yield ("relu6 56x56x256", lambda: ew.activation(a, o, "relu6"), lambda: np.clip(a, 0, 6, out=o),
           F * 2 * a.size, 0, lambda: (ew.activation(a, o, "relu6"), rel_err(o, ref.activation(a, "relu6")))[1])
    lg = rand(rng, 1, 1000, lo=-20, hi=20)
    lo = empty(lg.shape)
    yield ("softmax 1x1000", lambda: ew.softmax(lg, lo), None, F * 2 * lg.size, 0,
           lambda: (ew.softmax(lg, lo), rel_err(lo, ref.softmax(lg)))[1])
    xs = [rand(rng, 1, 35, 35, c) for c in (64, 64, 96, 32)]
    co = empty((1, 35, 35, 256))
    yield ("inception mixed0 concat 35x35x(64,64,96,32)", lambda: ew.concat(xs, co),
           lambda: np.concatenate(xs, axis=-1), F * 2 * co.size, 0,
           lambda: (ew.concat(xs, co), rel_err(co, ref.concat(xs)))[1])
    img = rand(rng, 1, 224, 224, 3)
    po = empty((1, 230, 230, 3))
    yield ("resnet50 conv1_pad 224x224x3 pad 3", lambda: ew.zero_pad(img, po, (3, 3, 3, 3)), None,
           F * (img.size + po.size), 0,
           lambda: (ew.zero_pad(img, po, (3, 3, 3, 3)), rel_err(po, ref.zero_pad(img, (3, 3, 3, 3))))[1])


def new_cases(rng):
    """Issue 12's kernels on the shapes of the networks that need them (EfficientNet-B0, MobileNetV3,
    ConvNeXt-T, AlexNet-style LRN, ShuffleNet-style shuffles). FLOPs only where they mean something
    (the convolutions); the rest are memory-bound and read in GB/s. Names carry the op's bytes rule."""
    nk = importlib.import_module("kernels.cpu")
    conv = importlib.import_module("kernels.cpu.conv")
    a = rand(rng, 1, 112, 112, 32, lo=-4, hi=4)
    s = rand(rng, 1, 32, lo=0, hi=1)
    o = empty(a.shape)
    yield ("se mul (N,C) 112x112x32 effnet-b0", lambda: nk.mul(a, s, o),
           lambda: np.multiply(a, s[:, None, None], out=o), F * 2 * a.size, 0,
           lambda: (nk.mul(a, s, o), rel_err(o, ref.mul(a, s)))[1])
    b = rand(rng, 1, 112, 112, 32)
    yield ("mul same shape 112x112x32", lambda: nk.mul(a, b, o), lambda: np.multiply(a, b, out=o), F * 3 * a.size, 0,
           lambda: (nk.mul(a, b, o), rel_err(o, ref.mul(a, b)))[1])
    yield ("add (N,C)+silu 112x112x32", lambda: nk.add(a, s, o, "silu"), None, F * 2 * a.size, 0,
           lambda: (nk.add(a, s, o, "silu"), rel_err(o, ref.add(a, s, "silu")))[1])
    baselines = {"sigmoid": lambda: np.divide(1, 1 + np.exp(-a), out=o),
                 "silu": lambda: np.divide(a, 1 + np.exp(-a), out=o),
                 "hard_silu": lambda: np.multiply(a, np.clip(a / 6 + 0.5, 0, 1), out=o),
                 "tanh": lambda: np.tanh(a, out=o), "gelu": None, "gelu_tanh": None, "hard_sigmoid": None,
                 "relu": lambda: np.maximum(a, 0, out=o)}
    for act, base in baselines.items():
        yield (f"activation {act} 112x112x32", lambda act=act: nk.activation(a, o, act), base, F * 2 * a.size, 0,
               lambda act=act: (nk.activation(a, o, act), rel_err(o, ref.activation(a, act)))[1])
    x = rand(rng, 1, 56, 56, 96, lo=-2, hi=3)
    g, t = rand(rng, 96), rand(rng, 96)
    xo = empty(x.shape)
    yield ("layer_norm 56x56x96 convnext-t", lambda: nk.layer_norm(x, g, t, xo, 1e-6), None, F * 2 * x.size,
           0, lambda: (nk.layer_norm(x, g, t, xo, 1e-6), rel_err(xo, ref.layer_norm(x, g, t, 1e-6)))[1])
    for h, c, beta in [(55, 96, 0.75), (27, 256, 0.75), (27, 256, 0.6)]:
        y = rand(rng, 1, h, h, c, lo=0, hi=4)
        yo = empty(y.shape)
        yield (f"lrn size 5 beta {beta} {h}x{h}x{c}", lambda y=y, yo=yo, beta=beta: nk.lrn(y, yo, 5, 1e-4, beta, 1.0),
               None, F * 2 * y.size, 0, lambda y=y, yo=yo, beta=beta: (
                   nk.lrn(y, yo, 5, 1e-4, beta, 1.0), rel_err(yo, ref.lrn(y, 5, 1e-4, beta, 1.0)))[1])
    z = rand(rng, 1, 56, 56, 128)
    for name, idx in [("group slice 64 of 128", np.arange(64, 128)),
                      ("shuffle 2 groups x 64", np.arange(128).reshape(2, 64).T.reshape(-1))]:
        zo = empty((1, 56, 56, idx.size))
        yield (f"channel_gather {name} 56x56", lambda idx=idx, zo=zo: nk.channel_gather(z, idx, zo),
               lambda idx=idx: z[..., idx], F * 2 * zo.size, 0,
               lambda idx=idx, zo=zo: (nk.channel_gather(z, idx, zo), rel_err(zo, ref.channel_gather(z, idx)))[1])
    cz = rand(rng, 1, 57, 57, 64)
    co = empty((1, 56, 56, 64))
    yield ("crop 57x57x64 -> 56x56", lambda: nk.crop(cz, co, (1, 0, 1, 0)), lambda: cz[:, 1:, 1:].copy(),
           F * 2 * co.size, 0, lambda: (nk.crop(cz, co, (1, 0, 1, 0)), rel_err(co, ref.crop(cz, (1, 0, 1, 0))))[1])
    # the 1x1 projection of a squeeze-excite block: scaled weights (56x56x144 -> 24, EfficientNet-B0
    # block2b), a scaled map (7x7x1152 -> 192, block6) and, unfused, mul then conv2d
    for h, cin, cout in [(56, 144, 24), (14, 672, 112), (7, 1152, 192)]:
        m = rand(rng, 1, h, h, cin)
        gate = rand(rng, 1, cin, lo=0, hi=1)
        k = rand(rng, 1, 1, cin, cout, lo=-0.1, hi=0.1)
        p = conv.pack_conv2d(k, None)
        mo, tmp = empty((1, h, h, cout)), empty(m.shape)
        flops = 2 * h * h * cin * cout
        want = ref.conv2d(ref.mul(m, gate), k)
        run = lambda m=m, gate=gate, p=p, mo=mo: nk.scaled_conv2d(m, gate, p, mo)
        unfused = lambda m=m, gate=gate, p=p, mo=mo, tmp=tmp: (nk.mul(m, gate, tmp), conv.conv2d(tmp, p, mo, (1, 1),
                                                                                                (0, 0, 0, 0)))
        for label, fn in (("scaled_conv2d", run), ("mul+conv2d", unfused)):
            yield (f"{label} {h}x{h}x{cin}->{cout}", fn, None, F * (m.size + k.size + mo.size), flops,
                   lambda fn=fn, mo=mo, want=want: (fn(), rel_err(mo, want))[1])
    # conv epilogues, relu against the smooth activations: a 1x1 expansion (EfficientNet-B0 block2b's
    # 56x56x24 -> 144) and a 3x3 stride-1 layer on Winograd
    for kh, cin, cout in [(1, 24, 144), (3, 64, 64)]:
        m = rand(rng, 1, 56, 56, cin)
        k = rand(rng, kh, kh, cin, cout, lo=-0.1, hi=0.1)
        p = conv.pack_conv2d(k, None)
        mo = empty((1, 56, 56, cout))
        pad = (kh // 2,) * 4
        for act in ("relu", "silu", "hard_silu", "gelu"):
            run = lambda m=m, p=p, mo=mo, pad=pad, act=act: conv.conv2d(m, p, mo, (1, 1), pad, act)
            want = ref.conv2d(m, k, None, (1, 1), pad, act)
            yield (f"conv {kh}x{kh} 56x56x{cin}->{cout} + {act}", run, None,
                   F * (m.size + k.size + mo.size), 2 * 56 * 56 * kh * kh * cin * cout,
                   lambda run=run, mo=mo, want=want: (run(), rel_err(mo, want))[1])


GROUPS = {"depthwise": depthwise_cases, "pool": pool_cases, "dense": dense_cases, "elementwise": elementwise_cases,
          "new": new_cases}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=numba.config.NUMBA_NUM_THREADS)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1, help="batch size of the dense cases")
    ap.add_argument("--only", default=",".join(g for g in GROUPS if g != "new"),
                    help="comma list of " + ",".join(GROUPS))
    ap.add_argument("--peak-gflops", type=float, default=None, help="default: 255 per core x threads")
    ap.add_argument("--peak-gbs", type=float, default=None, help="default: 40 per core x threads")
    args = ap.parse_args()
    peak_gf = args.peak_gflops or PEAK_GFLOPS_PER_CORE * args.threads
    peak_gb = args.peak_gbs or PEAK_GBS_PER_CORE * args.threads
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, numba {numba.__version__}, "
          f"threads {args.threads}, repeats {args.repeats} (median), warmup {args.warmup}, "
          f"load average {os.getloadavg()[0]:.2f}; peaks {peak_gf:.0f} GFLOP/s, {peak_gb:.0f} GB/s")
    print(f"{'kernel / shape':62s} {'rel err':>8s} {'ms':>8s} {'GB/s':>7s} {'%bw':>5s} {'GFLOP/s':>8s} {'%fma':>5s} "
          f"{'numpy ms':>9s}")
    for group in args.only.split(","):
        cases = GROUPS[group](rng, args.batch) if group == "dense" else GROUPS[group](rng)
        for name, run, base, nbytes, flops, check in cases:
            err = check()
            t = median_time(run, args.warmup, args.repeats)
            tb = median_time(base, 2, max(5, args.repeats // 5)) if base is not None else float("nan")
            gb = nbytes / t / 1e9
            gf = f"{flops / t / 1e9:8.1f} {100 * flops / t / 1e9 / peak_gf:5.1f}" if flops else f"{'':14s}"
            print(f"{name:62s} {err:8.1e} {t * 1e3:8.3f} {gb:7.1f} {100 * gb / peak_gb:5.0f} {gf} {tb * 1e3:9.3f}",
                  flush=True)


# ---------------------------------------------------------------- pytest-benchmark suite

# Cases per group (fixed by the generators above); built lazily, once per group, when first used.
CASE_COUNTS = {"depthwise": 10, "pool": 6, "dense": 4, "elementwise": 6}
_BUILT = {}


def _case(group, i):
    if group not in _BUILT:
        rng = np.random.default_rng(0)
        gen = GROUPS[group](rng, 1) if group == "dense" else GROUPS[group](rng)
        _BUILT[group] = list(gen)
        assert len(_BUILT[group]) == CASE_COUNTS[group]
    return _BUILT[group][i]


def pytest_generate_tests(metafunc):
    if "kernel_case" in metafunc.fixturenames:
        ids = [(g, i) for g, n in CASE_COUNTS.items() for i in range(n)]
        metafunc.parametrize("kernel_case", ids, ids=[f"{g}-{i}" for g, i in ids])


def test_kernel(benchmark, kernel_case):
    name, run, _, nbytes, flops, check = _case(*kernel_case)
    assert check() <= 1e-5, name  # the timed kernel must agree with kernels.reference first
    benchmark.name = name
    benchmark.pedantic(run, warmup_rounds=3, rounds=30, iterations=1)
    t = benchmark.stats.stats.median
    k = numba.get_num_threads()
    benchmark.extra_info.update({
        "threads": k, "GB/s": nbytes / t / 1e9, "% of read bw": 100 * nbytes / t / 1e9 / (PEAK_GBS_PER_CORE * k),
        "GFLOP/s": flops / t / 1e9, "% of FMA peak": 100 * flops / t / 1e9 / (PEAK_GFLOPS_PER_CORE * k),
    })


if __name__ == "__main__":
    main()
