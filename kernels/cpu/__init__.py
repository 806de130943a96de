"""Numba CPU backend: the op set of ``kernels/__init__.py``, one module per kernel family.

    conv.py        conv2d (any kh x kw, stride, asymmetric padding) incl. the 1x1 pointwise path
    depthwise.py   depthwise_conv2d
    pool.py        max/avg/global pooling
    dense.py       dense
    elementwise.py add, activation, channel_affine, softmax, concat, zero_pad
    sepconv.py     depthwise_pointwise: a depthwise conv fused with the 1x1 conv that reads it
"""

import hashlib as _hashlib
import os as _os

import numba as _numba


def _versioned_cache_dir() -> str:
    """Numba's on-disk cache, in a folder named after a hash of this package's sources.

    Numba checks only the defining file's timestamp before loading a cached function, but a cached
    driver has its callees from other files compiled into it: after an edit to conv_narrow.py the
    unchanged conv_drivers.py kept loading the old narrow tile. Any change here now selects a new
    folder, so nothing stale is ever loaded (a NUMBA_CACHE_DIR set by the user stays the parent).
    """
    here = _os.path.dirname(_os.path.abspath(__file__))
    digest = _hashlib.sha1()
    for name in sorted(_os.listdir(here)):
        if name.endswith(".py"):
            digest.update(name.encode())
            with open(_os.path.join(here, name), "rb") as f:
                digest.update(f.read())
    base = _numba.config.CACHE_DIR or _os.path.join(here, "__pycache__")
    return _os.path.join(base, "numba-" + digest.hexdigest()[:12])


_numba.config.CACHE_DIR = _versioned_cache_dir()

from kernels.cpu.conv import conv2d, pack_conv2d  # noqa: E402
from kernels.cpu.dense import dense, pack_dense  # noqa: E402
from kernels.cpu.depthwise import depthwise_conv2d, pack_depthwise  # noqa: E402
from kernels.cpu.elementwise import activation, add, channel_affine, concat, softmax, zero_pad  # noqa: E402
from kernels.cpu.pool import avg_pool2d, global_avg_pool, global_max_pool, max_pool2d  # noqa: E402
from kernels.cpu.sepconv import depthwise_pointwise, pack_depthwise_pointwise  # noqa: E402

__all__ = [
    "pack_conv2d", "conv2d", "pack_depthwise", "depthwise_conv2d", "pack_dense", "dense",
    "max_pool2d", "avg_pool2d", "global_avg_pool", "global_max_pool",
    "add", "activation", "channel_affine", "softmax", "concat", "zero_pad",
    "pack_depthwise_pointwise", "depthwise_pointwise",
]
