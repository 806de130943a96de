"""The ``nets`` command line."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from nets.errors import KernelnetsError
from nets.progress import Progress

EPILOG = """\
examples:
  nets run resnet50                                   seeded weights, synthetic input
  nets run resnet50 --weights resnet50_weights_tf_dim_ordering_tf_kernels.h5 --image cat.jpg
  nets run mobilenet --batch 8 --threads 2 --repeat 50
  nets summary inception_v3

Weights are the .h5 files keras.applications downloads (~/.keras/models/). Without --weights the
network gets deterministic seeded weights: it runs at full speed but its predictions mean nothing.
"""


PLUGINS = ("nets.cli_profile", "nets.cli_export")


def _model_args(p):
    p.add_argument("model", help="architecture (vgg16, vgg19, resnet50, resnet101, resnet152, inception_v3, "
                                 "xception, mobilenet) or a model file (Keras .h5 / .keras, ONNX), "
                                 "recognised by content")
    p.add_argument("--weights", metavar="FILE", help="Keras .h5 weights file (default: seeded, untrained)")
    p.add_argument("--no-top", action="store_true", help="drop the classifier (include_top=False)")
    p.add_argument("--pooling", choices=["avg", "max"], help="global pooling when --no-top")
    p.add_argument("--classes", type=int, default=1000, help="classifier size (default 1000)")
    p.add_argument("--input-shape", metavar="H,W,C", help="input size, e.g. 160,160,3")
    p.add_argument("--alpha", type=float, help="mobilenet width multiplier")
    p.add_argument("--depth-multiplier", type=int, help="mobilenet depth multiplier")


def _load(args, **kw):
    import nets

    arch = {}
    if getattr(args, "alpha", None) is not None:
        arch["alpha"] = args.alpha
    if getattr(args, "depth_multiplier", None) is not None:
        arch["depth_multiplier"] = args.depth_multiplier
    shape = tuple(int(s) for s in args.input_shape.split(",")) if args.input_shape else None
    return nets.load(args.model, weights=args.weights, include_top=not args.no_top, pooling=args.pooling,
                     classes=args.classes, input_shape=shape, **arch, **kw)


def cmd_summary(args) -> int:
    model = _load(args, device="reference")
    print(model.summary())
    plan = model.executor(1).plan
    print(f"Peak activation memory at batch 1: {plan.peak_bytes / 2**20:.2f} MiB "
          f"(without buffer reuse: {plan.naive_bytes / 2**20:.2f} MiB)")
    print(f"Weights: {model.weights_source}")
    return 0


def cmd_run(args) -> int:
    import nets
    from nets.model import set_threads

    device = getattr(args, "device", "cpu") or "cpu"
    t_load = time.perf_counter()
    model = _load(args, device=device, threads=args.threads if device == "cpu" else None)
    t_load = time.perf_counter() - t_load
    h, w, _ = model.input_shape
    if args.image:
        images = np.stack([nets.load_image(p, (h, w)) for p in args.image])
        if args.batch and args.batch != len(images):
            images = np.resize(images, (args.batch,) + images.shape[1:])
        source = ", ".join(args.image)
    else:
        images = np.random.default_rng(0).integers(0, 256, (args.batch or 1, h, w, 3)).astype(np.uint8)
        source = "synthetic random image (no --image given)"
    x = nets.preprocess(model.preprocess_mode or "none", images)
    n = len(x)
    # an NCHW ONNX model takes NCHW arrays; the executor inside is NHWC either way
    x_user = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if getattr(model, "layout", "") == "NCHW" else x
    where = f"threads {model.threads}  device cpu" if device == "cpu" else "device gpu"
    print(f"model    {model.name}  input {n}x{h}x{w}x3  {where}")
    print(f"weights  {model.weights_source}")
    print(f"input    {source}")
    if model.weights_source.startswith("seeded"):
        print("note     weights are untrained (seeded): the classes below are meaningless; "
              "pass --weights FILE for real predictions")

    t0 = time.perf_counter()
    if device == "gpu":
        runner = model.gpu_runner(n)
        print(f"gpu      {'CUDA-graph replay' if runner.use_graph else 'eager launches'} on one stream; "
              "first run compiles kernels (NVRTC, cached on disk by CuPy)")
        model(x_user)
    else:
        set_threads(model.threads)
        ex = model.executor(n)
        bar = Progress(len(ex.steps), "first run (compiling kernels)")
        np.copyto(ex.buffer(model.graph.inputs[0]), x)
        for step in ex.steps:
            step.run()
            bar.update(step.node.name)
        bar.close()
    first = time.perf_counter() - t0
    times = []
    for i in range(args.warmup + args.repeat):
        t0 = time.perf_counter()
        out = model(x_user)         # numpy in, numpy out: includes the copies to and from the GPU
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    print(f"latency  load {t_load:.2f} s | first run {first:.2f} s (includes kernel compilation) | "
          f"steady state median {med * 1e3:.2f} ms, min {min(times) * 1e3:.2f} ms over {args.repeat} runs "
          f"| {n / med:.1f} images/s")
    out = np.asarray(out).reshape(n, -1)
    if model.output_shape[-1] > 1 and model.graph.nodes[-1].op in ("softmax", "dense", "conv2d", "reshape"):
        label = "prob" if model.graph.nodes[-1].op == "softmax" else "logit"
        for i, best in enumerate(nets.top_k(out, 5)[: min(n, 8)]):
            tag = args.image[i % len(args.image)] if args.image else f"sample {i}"
            print(f"top-5    {tag}")
            for rank, (idx, name, score) in enumerate(best, 1):
                print(f"  {rank}. {name:<28} {label} {score:.4f}  (class {idx})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nets",
        description="kernelnets: run Keras-architecture CNNs (VGG, ResNet, Inception, Xception, MobileNet) on "
                    "hand-written kernels, without a deep-learning framework.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="classify images (top-5) and report first-run and steady-state latency",
                       description="Load a network, run it on images and print the top-5 classes and the latency.")
    _model_args(r)
    r.add_argument("--image", nargs="+", metavar="FILE", help="image files (any format Pillow reads)")
    r.add_argument("--batch", type=int, help="batch size (default: number of images, or 1)")
    r.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    r.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                   help="cpu (Numba kernels, default) or gpu (CUDA kernels through CuPy)")
    r.add_argument("--repeat", type=int, default=20, help="timed runs (default 20)")
    r.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("summary", help="layers, output shapes, params and MACs (like Keras' summary)",
                       description="Print every layer with its output shape, parameters and MACs, and what "
                                   "the fusion passes made of it.")
    _model_args(s)
    s.set_defaults(fn=cmd_summary)

    # further commands live in their own modules, each with ``register(subparsers)``
    import importlib

    for modname in PLUGINS:
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            continue
        mod.register(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    try:
        return args.fn(args)
    except KernelnetsError as e:
        print(f"nets: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
