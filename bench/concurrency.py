"""Images/s of one Model called from several Python threads, against one caller.

Each configuration (callers x Numba threads per call x max_concurrency) runs for ``--seconds`` after
a warm-up, every caller looping over single-image (or ``--batch``) calls on the same model; the
configurations alternate for ``--rounds`` rounds and the median images/s of each is reported.

    python bench/concurrency.py                       # MobileNet, batch 1
    python bench/concurrency.py --model resnet50 --batch 2 --seconds 5 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGS = [  # (callers, threads per call, max_concurrency)
    (1, 1, 1), (2, 1, 2), (1, 2, 1), (2, 2, 1), (2, 2, 2),
]


def images_per_s(model, x, callers: int, seconds: float) -> float:
    stop = time.perf_counter() + seconds
    done = [0] * callers

    def work(i):
        while time.perf_counter() < stop:
            model(x)
            done[i] += len(x)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=work, args=(i,)) for i in range(callers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def main(argv=None):
    import nets

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mobilenet")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    models = {c: nets.load(args.model, classifier_activation=None, threads=c[1], max_concurrency=c[2])
              for c in CONFIGS}
    x = np.random.default_rng(0).standard_normal((args.batch,) + models[CONFIGS[0]].input_shape).astype(np.float32)
    for c, m in models.items():                    # compile, plan and warm every arena the config uses
        images_per_s(m, x, c[0], 1.0)
    rates = {c: [] for c in CONFIGS}
    for _ in range(args.rounds):
        for c, m in models.items():
            rates[c].append(images_per_s(m, x, c[0], args.seconds))
    base = statistics.median(rates[CONFIGS[0]])
    print(f"{args.model}, batch {args.batch}, {args.rounds} rounds of {args.seconds:g} s, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'callers':>7} {'threads/call':>12} {'concurrency':>11} {'images/s':>9} {'vs 1x1':>7}")
    for c in CONFIGS:
        r = statistics.median(rates[c])
        print(f"{c[0]:>7} {c[1]:>12} {c[2]:>11} {r:>9.1f} {r / base:>6.2f}x")


if __name__ == "__main__":
    main()
