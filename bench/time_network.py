"""Median time of ``model(x)`` for networks with seeded weights: one number per line, for A/B runs.

    python bench/time_network.py mobilenet resnet50 [--batch 1] [--threads 2] [--repeat 100]
    python tools/ab.py /tmp/base . --field 1 -- python {root}/bench/time_network.py mobilenet
    python bench/time_network.py resnet50 --batch 8 --stream-mb 1e9 8   # non-temporal-store threshold

KN_ROOT (set by tools/ab.py) selects the source tree whose ``nets`` and ``kernels`` are imported.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.environ.get("KN_ROOT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None):
    import nets

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=0, help="timed runs (default: ~2 s worth, 20 to 200)")
    ap.add_argument("--stream-mb", type=float, nargs="+",
                    help="values of kernels.cpu.conv.dispatch.STREAM_BYTES (MB) to alternate in one process")
    args = ap.parse_args(argv)
    for name in args.models:
        m = nets.load(name, classifier_activation=None, threads=args.threads, seed=0)
        x = np.random.default_rng(0).normal(size=(args.batch, *m.input_shape)).astype(np.float32)
        t0 = time.perf_counter()
        for _ in range(5):
            m(x)
        per = (time.perf_counter() - t0) / 5
        n = args.repeat or int(min(200, max(20, 2.0 / per)))
        if not args.stream_mb:
            ts = []
            for _ in range(n):
                t0 = time.perf_counter()
                m(x)
                ts.append(time.perf_counter() - t0)
            print(f"{name} b{args.batch}t{args.threads} {1e3 * statistics.median(ts):.3f} ms")
            continue
        import kernels.cpu.conv as conv
        conv = getattr(conv, "dispatch", conv)     # STREAM_BYTES: conv/dispatch.py (conv.py in older trees)
        ts = {mb: [] for mb in args.stream_mb}
        for _ in range(max(3, n // 3)):
            for mb in args.stream_mb:
                conv.STREAM_BYTES = int(mb * (1 << 20))
                time.sleep(0.05)
                m(x)
                for _ in range(3):
                    t0 = time.perf_counter()
                    m(x)
                    ts[mb].append(time.perf_counter() - t0)
        for mb, v in ts.items():
            print(f"{name} b{args.batch}t{args.threads} stream>={mb:g}MB {1e3 * statistics.median(v):.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
