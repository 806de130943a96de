"""Depthwise + 1x1 fusion (``nets.graph.passes.fuse_depthwise_pointwise``) on and off, in one process.

Builds the network twice (seeded weights, logits), once without the fusion pass, and times every
step of both executors in alternating rounds: each fused depthwise_pointwise layer against the sum
of its two unfused kernels, then the whole networks end to end.

    python bench/compare_fusion.py mobilenet [--threads 2] [--rounds 30]
    python bench/compare_fusion.py xception --rounds 10
    python bench/compare_fusion.py mobilenet --batch 8 --rounds 6
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(name: str, threads: int, fuse_pair: bool):
    import nets
    import nets.graph.passes as passes

    keep = passes.fuse_depthwise_pointwise
    if not fuse_pair:
        passes.fuse_depthwise_pointwise = lambda g: g
    try:
        return nets.load(name, device="cpu", threads=threads, classifier_activation=None)
    finally:
        passes.fuse_depthwise_pointwise = keep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30, help="alternating timed rounds (default 30)")
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args(argv)

    fused, unfused = build(args.model, args.threads, True), build(args.model, args.threads, False)
    x = np.random.default_rng(0).standard_normal((args.batch,) + fused.input_shape).astype(np.float32)
    exes = {"fused": fused.new_executor(args.batch), "unfused": unfused.new_executor(args.batch)}
    steps = {k: {s.node.name: [] for s in e.steps} for k, e in exes.items()}
    whole = {k: [] for k in exes}
    for e in exes.values():
        for _ in range(3):
            e.run(x)
    for _ in range(args.rounds):
        for k, e in exes.items():
            e.buffer(e.graph.inputs[0])[...] = x
            for s in e.steps:
                t0 = time.perf_counter()
                s.run()
                steps[k][s.node.name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            e.run(x)
            whole[k].append(time.perf_counter() - t0)
            time.sleep(0.02)

    def ms(v):
        return statistics.median(v) * 1e3

    print(f"{args.model}, {args.threads} threads, batch {args.batch}, median of {args.rounds} alternating rounds (ms)")
    print(f"{'layer':24s} {'kernel':32s} {'fused':>8s} {'dw + 1x1':>9s} {'ratio':>6s}")
    for s in exes["fused"].steps:
        n = s.node
        if n.op != "depthwise_pointwise":
            continue
        a = ms(steps["fused"][n.name])
        b = ms(steps["unfused"][n.fused[0]]) + ms(steps["unfused"][n.name])
        print(f"{n.name:24s} {s.kernel[:32]:32s} {a:8.3f} {b:9.3f} {a / b:6.2f}")
    a, b = ms(whole["fused"]), ms(whole["unfused"])
    print(f"{'whole network':57s} {a:8.3f} {b:9.3f} {a / b:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
