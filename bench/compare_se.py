"""Issue 12's fusions on and off, in one process: smooth activations (sigmoid, silu, hard_silu, gelu, ...)
in the convolution epilogues, and squeeze-excite's gate folded into the 1x1 projection
(``nets.graph.passes.fuse_channel_scale``).

Builds the network four times: everything fused; smooth activations as steps of their own (the
passes with ``EPILOGUE_ACTIVATIONS`` = the clamps, as before issue 12); no squeeze-excite fusion; neither.
Then times the whole networks in alternating rounds (median per variant) and, per op type, the sum of
the steps' medians.

    python bench/compare_se.py /tmp/models/EfficientNetB0.keras [--threads 2] [--rounds 20]
    python bench/compare_se.py mobilenet --rounds 20        # a zoo name: nothing to fuse, a control

A Keras file comes from keras.applications with weights=None, saved as .keras (tools/keras_coverage.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

VARIANTS = {"fused": (True, True), "no_smooth_epilogue": (False, True), "no_se_fusion": (True, False),
            "neither": (False, False)}


def build(name: str, threads: int, smooth_epilogues: bool, se: bool):
    import nets
    import nets.graph.passes as passes

    keep = passes.EPILOGUE_ACTIVATIONS, passes.fuse_channel_scale
    if not smooth_epilogues:
        passes.EPILOGUE_ACTIVATIONS = (None, "relu", "relu6")
    if not se:
        passes.fuse_channel_scale = lambda g: g
    try:
        kw = {} if os.path.exists(name) else {"classifier_activation": None}
        return nets.load(name, device="cpu", threads=threads, **kw)
    finally:
        passes.EPILOGUE_ACTIVATIONS, passes.fuse_channel_scale = keep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batch", type=int, default=1)
    args = ap.parse_args(argv)

    models = {k: build(args.model, args.threads, *v) for k, v in VARIANTS.items()}
    first = next(iter(models.values()))
    x = np.random.default_rng(0).standard_normal((args.batch,) + first.input_shape).astype(np.float32)
    exes = {k: m.new_executor(args.batch) for k, m in models.items()}
    ref = None
    for k, e in exes.items():
        for _ in range(3):
            y = e.run(x)[0]
        ref = y if ref is None else ref
        err = float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-30))
        print(f"# {k}: {len(e.steps)} steps, max rel diff from 'fused' {err:.1e}")
    steps = {k: defaultdict(list) for k in exes}
    whole = {k: [] for k in exes}
    for _ in range(args.rounds):
        for k, e in exes.items():
            t0 = time.perf_counter()
            e.run(x)
            whole[k].append(time.perf_counter() - t0)
            e.buffer(e.graph.inputs[0])[...] = x
            for s in e.steps:
                t0 = time.perf_counter()
                s.run()
                steps[k][s.node.name].append(time.perf_counter() - t0)
            time.sleep(0.02)

    def ms(v):
        return statistics.median(v) * 1e3

    print(f"{os.path.basename(args.model)}, {args.threads} threads, batch {args.batch}, median of {args.rounds} "
          f"alternating rounds (ms), load average {os.getloadavg()[0]:.2f}")
    base = ms(whole["fused"])
    for k in exes:
        print(f"{k:20s} whole {ms(whole[k]):8.3f}  ratio to fused {ms(whole[k]) / base:5.3f}")
    print("per op type (sum of step medians, ms):")
    by_op = {k: defaultdict(float) for k in exes}
    for k, e in exes.items():
        for s in e.steps:
            by_op[k][s.node.op] += ms(steps[k][s.node.name])
    ops = sorted({op for d in by_op.values() for op in d}, key=lambda op: -by_op["neither"].get(op, 0.0))
    print(f"{'op':22s}" + "".join(f"{k:>20s}" for k in exes))
    for op in ops:
        print(f"{op:22s}" + "".join(f"{by_op[k].get(op, 0.0):20.3f}" for k in exes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
