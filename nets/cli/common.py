"""What every ``nets`` subcommand shares: the model arguments and loading a model from them."""

from __future__ import annotations

import argparse


def positive(text):
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def model_args(p):
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


def arch_options(args) -> dict:
    """keras.applications options from the model arguments."""
    arch = {k: getattr(args, k) for k in ("alpha", "depth_multiplier") if getattr(args, k, None) is not None}
    shape = tuple(int(s) for s in args.input_shape.split(",")) if args.input_shape else None
    return dict(weights=args.weights, include_top=not args.no_top, pooling=args.pooling, classes=args.classes,
                input_shape=shape, **arch)


def load_from_args(args, **kw):
    import nets

    return nets.load(args.model, **arch_options(args), **kw)


def timing_args(p, repeat):
    p.add_argument("--batch", type=positive, default=1, help="batch size (default 1)")
    p.add_argument("--threads", type=positive, help="CPU threads (default: all cores)")
    p.add_argument("--repeat", type=positive, default=repeat, help=f"timed runs (default {repeat})")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs after the first (default 3)")
