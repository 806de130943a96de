"""The ``nets`` command line: ``run``, ``summary``, ``profile``, ``compare``, ``peaks``, ``export``, ``classify``,
``warmup``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from nets.cli import classify, export, profile, run, warmup
from nets.errors import KernelnetsError

EPILOG = """\
examples:
  nets run resnet50                                   seeded weights, synthetic input
  nets run resnet50 --weights resnet50_weights_tf_dim_ordering_tf_kernels.h5 --image cat.jpg
  nets run mobilenet --batch 8 --threads 2 --repeat 50
  nets summary inception_v3
  nets warmup                                         compile the kernels of the six networks ahead

Weights are the .h5 files keras.applications downloads (~/.keras/models/). Without --weights the
network gets deterministic seeded weights: it runs at full speed but its predictions mean nothing.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nets",
        description="kernelnets: run Keras-architecture CNNs (VGG, ResNet, Inception, Xception, MobileNet) on "
                    "hand-written kernels, without a deep-learning framework.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module in (run, profile, export, classify, warmup):
        module.register(sub)
    return p


INTERRUPTED = "\nnets: interrupted"


def _on_interrupt(signum, frame):
    """Ctrl-C: a KeyboardInterrupt, except while Numba compiles. There the interrupt can land inside
    LLVM's callbacks (a ctypes callback, where Python drops it) and leave the half-built kernel behind:
    a RuntimeError from Numba later, or a process that does not end. Nothing of ours is half-written
    then (Numba writes its cache files whole), so the process ends at once with the same line and
    status."""
    from numba.core.compiler_lock import global_compiler_lock

    if global_compiler_lock.is_locked():
        print(INTERRUPTED, file=sys.stderr, flush=True)
        os._exit(130)
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    installed = threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    previous = signal.signal(signal.SIGINT, _on_interrupt) if installed else None
    try:
        return args.fn(args)
    except KernelnetsError as e:
        print(f"nets: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    finally:
        if installed:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    sys.exit(main())
