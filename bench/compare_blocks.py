"""Depthwise + 1x1 blocks against ONNX Runtime: a chain of N identical blocks, in one process.

Whole-network profiles of ONNX Runtime add ~15-30 us a node, too much to compare layers of
0.1-1 ms; a chain of N identical blocks (different weights each, as in a network) timed end to end
and divided by N is not distorted that way. Each block is 3x3 depthwise (stride 1, pad 1) + ReLU
then 1x1 conv C > C + ReLU; ``--part`` times only one half. Ours runs the same kernels as a network
(``kernels.cpu.depthwise_pointwise``, or ``depthwise_conv2d`` / ``conv2d`` alone) on
64-byte aligned buffers; ORT gets the NCHW ONNX graph (its NCHWc transform keeps the blocked
layout across the chain). Rounds alternate ours and ORT with a pause between blocks of repeats.

    python bench/compare_blocks.py                       # MobileNet's maps, batch 1, 2 threads
    python bench/compare_blocks.py 19x728 37x256 74x128  # Xception's
    python bench/compare_blocks.py --part dw --threads 1 --batch 8 56x128
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np

# KN_ROOT: the kernels of another source tree (tools/ab.py)
sys.path.insert(0, os.environ.get("KN_ROOT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numba  # noqa: E402

from kernels import aligned_empty  # noqa: E402
from kernels.cpu import (  # noqa: E402  (the backend's public names: the same in older trees)
    conv2d,
    depthwise_conv2d,
    depthwise_pointwise,
    pack_conv2d,
    pack_depthwise,
    pack_depthwise_pointwise,
)


def ort_chain(weights, c, h, batch, part, threads):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, cur = [], [], "x"
    for i, (dk, db, pk, pb) in enumerate(weights):
        if part in ("both", "dw"):
            inits += [numpy_helper.from_array(np.ascontiguousarray(dk.transpose(2, 3, 0, 1)), f"dw{i}"),
                      numpy_helper.from_array(db, f"db{i}")]
            nodes += [helper.make_node("Conv", [cur, f"dw{i}", f"db{i}"], [f"d{i}"], group=c, kernel_shape=[3, 3],
                                       pads=[1, 1, 1, 1]),
                      helper.make_node("Relu", [f"d{i}"], [f"dr{i}"])]
            cur = f"dr{i}"
        if part in ("both", "pw"):
            inits += [numpy_helper.from_array(np.ascontiguousarray(pk.transpose(3, 2, 0, 1)), f"pw{i}"),
                      numpy_helper.from_array(pb, f"pb{i}")]
            nodes += [helper.make_node("Conv", [cur, f"pw{i}", f"pb{i}"], [f"p{i}"], kernel_shape=[1, 1]),
                      helper.make_node("Relu", [f"p{i}"], [f"pr{i}"])]
            cur = f"pr{i}"
    shape = [batch, c, h, h]
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info(cur, TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def ours_chain(weights, x, part):
    bufs = [aligned_empty(x.shape) for _ in range(2)]
    if part == "both":
        packs = [pack_depthwise_pointwise(*w) for w in weights]
        calls = [lambda s, d, p=p: depthwise_pointwise(s, p, d, (1, 1), (1, 1, 1, 1), "relu", "relu") for p in packs]
    elif part == "dw":
        packs = [pack_depthwise(dk, db) for dk, db, _, _ in weights]
        calls = [lambda s, d, p=p: depthwise_conv2d(s, p, d, (1, 1), (1, 1, 1, 1), "relu") for p in packs]
    else:
        packs = [pack_conv2d(pk, pb) for _, _, pk, pb in weights]
        calls = [lambda s, d, p=p: conv2d(s, p, d, (1, 1), (0, 0, 0, 0), "relu") for p in packs]

    def run():
        src = x
        for i, call in enumerate(calls):
            dst = bufs[i % 2]
            call(src, dst)
            src = dst
        return src
    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("maps", nargs="*", default=["112x32", "56x128", "28x256", "14x512", "7x1024"],
                    help="HxC of each block (square maps; default: MobileNet's stride-1 sizes)")
    ap.add_argument("--part", choices=["both", "dw", "pw"], default="both")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--blocks", type=int, default=8, help="blocks in the chain (default 8)")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    print(f"# {args.blocks} blocks a chain, part {args.part}, batch {args.batch}, {args.threads} threads, "
          f"load {os.getloadavg()[0]:.1f}; ms per block, median of {3 * args.rounds}")
    for spec in args.maps:
        h, c = (int(v) for v in spec.lower().split("x"))
        rng = np.random.default_rng(0)
        weights = [(rng.standard_normal((3, 3, c, 1), dtype=np.float32) / np.float32(3),
                    rng.standard_normal(c, dtype=np.float32) * np.float32(0.1),
                    rng.standard_normal((1, 1, c, c), dtype=np.float32) / np.float32(np.sqrt(c)),
                    rng.standard_normal(c, dtype=np.float32) * np.float32(0.1)) for _ in range(args.blocks)]
        x = aligned_empty((args.batch, h, h, c))
        x[...] = rng.standard_normal(x.shape, dtype=np.float32)
        sess = ort_chain(weights, c, h, args.batch, args.part, args.threads)
        xn = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        fns = {"ours": ours_chain(weights, x, args.part), "ort": lambda s=sess, xn=xn: s.run(None, {"x": xn})[0]}
        want = fns["ort"]().transpose(0, 2, 3, 1)
        err = float(np.abs(fns["ours"]() - want).max() / max(float(np.abs(want).max()), 1e-30))
        times = {k: [] for k in fns}
        for _ in range(3):
            for fn in fns.values():
                fn()
        for _ in range(args.rounds):
            for k, fn in fns.items():
                time.sleep(0.05)    # both runtimes' worker threads spin a while after a run
                fn()
                for _ in range(3):
                    t0 = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t0)
        ours, theirs = (1e3 * statistics.median(times[k]) / args.blocks for k in ("ours", "ort"))
        print(f"{h}x{h}x{c:<5d} ours {ours:8.4f}  ORT {theirs:8.4f}  ours/ORT {ours / theirs:5.2f}  "
              f"max rel err {err:.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
