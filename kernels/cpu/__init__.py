"""Numba CPU backend: the op set of ``kernels/__init__.py``, one module (or folder) per kernel family.

    conv/                    conv2d (any kh x kw, stride, asymmetric padding) incl. the 1x1 pointwise
                             path and Winograd; conv/__init__.py maps its files
    depthwise.py             depthwise_conv2d
    depthwise_pointwise.py   depthwise_pointwise: a depthwise conv fused with the 1x1 conv that reads it
    scaled_conv.py           scaled_conv2d: a 1x1 conv of a map scaled per sample and channel (squeeze-excite)
    pool.py                  max/avg/global pooling
    dense.py                 dense
    elementwise.py           add, mul, activation, channel_affine, softmax, concat, zero_pad
    normalize.py             layer_norm, lrn (across channels)
    layout.py                channel_gather, crop
    common.py                what they share: compile options, activations, the parallel threshold and
                             the per-thread split
    fastmath.py              vectorisable float32 exp / sigmoid / silu / tanh / erf / gelu / log
    stack.py                 intrinsics: stack tiles, reference-free views, prefetch, streaming stores
"""

import hashlib as _hashlib
import os as _os

import numba as _numba


def _sources(top: str) -> list:
    """Every .py file below ``top``, in a fixed order (sorted relative paths; __pycache__ skipped)."""
    found = []
    for root, dirs, files in _os.walk(top):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found += [_os.path.join(root, f) for f in files if f.endswith(".py")]
    return sorted(found, key=lambda p: _os.path.relpath(p, top).split(_os.sep))


def _versioned_cache_dir() -> str:
    """Numba's on-disk cache, in a folder named after a hash of this package's sources.

    Numba checks only the defining file's timestamp before loading a cached function, but a cached
    driver has its callees from other files compiled into it: after an edit to the narrow conv tiles
    the unchanged file of the drivers kept loading the old narrow tile. Any change to a .py file here or in
    a folder below now selects a new folder, so nothing stale is ever loaded (a NUMBA_CACHE_DIR set
    by the user stays the parent). The LLVM optimisation level and unroll threshold are part of the
    name too: Numba's own index does not record them, so code compiled at NUMBA_OPT=3 would otherwise
    load at -O2 and back.
    """
    here = _os.path.dirname(_os.path.abspath(__file__))
    digest = _hashlib.sha1()
    for path in _sources(here):
        digest.update(_os.path.relpath(path, here).replace(_os.sep, "/").encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    digest.update(f"opt={_numba.config.OPT} unroll={UNROLL_THRESHOLD}".encode())
    base = _numba.config.CACHE_DIR or _os.path.join(here, "__pycache__")
    return _os.path.join(base, "numba-" + digest.hexdigest()[:12])


# LLVM -O2 rather than Numba's default -O3 (unless NUMBA_OPT is set), with -O3's full-unroll threshold
# (LLVM's LoopUnroll allows 300 at -O3, 150 below). -O3 took about 1.5x as long to compile (ResNet50
# from an empty cache: 72.7 s, against 48.2 s); plain -O2 left loops of the register tiles rolled and
# ran ResNet50 8% slower than -O3 (20 alternating processes, bench/RESULTS.md "-O2 and unrolling");
# -O2 with the higher threshold runs as fast as -O3. The option is LLVM's, so it holds for every
# Numba function compiled in this process: it only lets LLVM unroll larger constant-trip loops.
UNROLL_THRESHOLD = None
if "NUMBA_OPT" not in _os.environ:
    try:
        from numba.core.config import _OptLevel
    except ImportError:         # a Numba without this (private) type: keep its default
        pass
    else:
        import llvmlite.binding as _ll

        _numba.config.OPT = _OptLevel(2)
        UNROLL_THRESHOLD = 300
        _ll.set_option("", f"-unroll-threshold={UNROLL_THRESHOLD}")

_numba.config.CACHE_DIR = _versioned_cache_dir()

# processes sharing the cache (a network compiled by several, Dask workers on one folder) must not
# interleave their saves of one function's index (``cache.install_save_lock``); loading a cached kernel
# skips the compiler's registries (``cache.install_lazy_load``: ~0.4 s of a warm start)
from kernels.cpu.cache import install_lazy_load as _install_lazy_load  # noqa: E402
from kernels.cpu.cache import install_save_lock as _install_save_lock  # noqa: E402

_install_save_lock()
_install_lazy_load()


def _threadsafe_layer() -> bool:
    """Ask Numba for a threading layer that lets several Python threads run parallel kernels at once
    (tbb or omp; the built-in workqueue does not) unless the user chose one; whether one is in use."""
    import importlib

    if _os.environ.get("NUMBA_THREADING_LAYER"):
        return _numba.config.THREADING_LAYER in ("tbb", "omp", "threadsafe", "safe")
    for layer in ("tbb", "omp"):
        try:
            importlib.import_module(f"numba.np.ufunc.{layer}pool")
        except ImportError:
            continue
        _numba.config.THREADING_LAYER = "threadsafe"
        return True
    return False


# Without a thread-safe layer, runtimes must not enter parallel kernels from two threads at once
# (nets' CpuRunner then serialises its calls).
THREADSAFE = _threadsafe_layer()

from kernels.cpu.conv import conv2d, pack_conv2d  # noqa: E402
from kernels.cpu.dense import dense, pack_dense  # noqa: E402
from kernels.cpu.depthwise import depthwise_conv2d, pack_depthwise  # noqa: E402
from kernels.cpu.depthwise_pointwise import depthwise_pointwise, pack_depthwise_pointwise  # noqa: E402
from kernels.cpu.elementwise import activation, add, channel_affine, concat, mul, softmax, zero_pad  # noqa: E402
from kernels.cpu.layout import channel_gather, crop  # noqa: E402
from kernels.cpu.normalize import layer_norm, lrn  # noqa: E402
from kernels.cpu.pool import avg_pool2d, global_avg_pool, global_max_pool, max_pool2d  # noqa: E402
from kernels.cpu.scaled_conv import scaled_conv2d  # noqa: E402

__all__ = [
    "pack_conv2d", "conv2d", "pack_depthwise", "depthwise_conv2d", "pack_dense", "dense",
    "max_pool2d", "avg_pool2d", "global_avg_pool", "global_max_pool",
    "add", "activation", "channel_affine", "softmax", "concat", "zero_pad",
    "mul", "layer_norm", "lrn", "channel_gather", "crop",
    "pack_depthwise_pointwise", "depthwise_pointwise", "scaled_conv2d", "THREADSAFE",
]
