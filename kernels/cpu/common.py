"""What every Numba kernel file shares: compile options, the activation, the parallel threshold and
the per-thread split of a range of rows.

Activation codes are ``kernels.ACT_CODES`` (defined once, for every backend); ``act_code`` turns an
``act`` argument into one. A kernel applies the activation in one of three ways:
  - the clamps (None, relu, relu6) as ``min(max(v, lo), hi)`` with the bounds of ``act_bounds``: one
    branch-free form inside any vector loop (epilogues, element-wise loops);
  - every other ("smooth": sigmoid, silu, hard_sigmoid, hard_silu, gelu, gelu_tanh, tanh) after that
    clamp (which then clamps nothing), over the run of values just written, with ``act_span`` (or
    ``act_rows`` for a tile's rows): a call with one vectorised loop per activation, built on the
    polynomial exp / tanh / erf of ``fastmath.py``;
  - per value with ``apply_act`` where values come one at a time (the dense epilogue, generic paths).
"""

import numba
import numpy as np
from numba import njit

from kernels import ACT_CODES, ACT_NONE, ACT_RELU, ACT_RELU6, act_code
from kernels.cpu import fastmath as fm
from kernels.cpu.fastmath import FAST
from kernels.cpu.stack import raw_view

ACT_SIGMOID, ACT_SILU, ACT_HARD_SIGMOID, ACT_HARD_SILU = (ACT_CODES[a] for a in ("sigmoid", "silu", "hard_sigmoid",
                                                                               "hard_silu"))
ACT_GELU, ACT_GELU_TANH, ACT_TANH = (ACT_CODES[a] for a in ("gelu", "gelu_tanh", "tanh"))

__all__ = [
    "ACT_NONE", "ACT_RELU", "ACT_RELU6", "CLAMP_ACTIVATIONS", "FAST", "JIT", "NO_RESIDUAL", "PARALLEL_BYTES", "PJIT",
    "act_bounds", "act_code", "act_rows", "act_scalar", "act_span", "apply_act", "epilogue_code", "is_smooth",
    "thread_chunks", "use_parallel",
]

# Serial and parallel kernels. cache=True: a network compiles in tens of seconds, and the cache is
# what makes the second start fast (kernels/cpu/__init__.py keys its folder by the sources).
JIT = dict(fastmath=True, cache=True, nogil=True)
PJIT = dict(parallel=True, fastmath=True, cache=True, nogil=True)

# Work (in bytes moved) above which a launcher is worth waking the thread pool (docs/performance.md:
# a fork/join costs ~1.3 us while the workers spin, milliseconds when they sleep on a busy machine).
PARALLEL_BYTES = 1 << 19

# The residual argument of a kernel called without one (has_res = False): never read.
NO_RESIDUAL = np.zeros((1, 1), np.float32)


# The activations an epilogue applies as a clamp (``act_bounds``); the others after it (``act_rows``).
CLAMP_ACTIVATIONS = (None, "relu", "relu6")


def epilogue_code(act):
    """``act_code`` for the epilogues of conv2d, depthwise_conv2d and depthwise_pointwise, which apply
    every activation: the clamps in their store loops, the others with ``act_rows`` after them.
    (Which ones the graph passes fuse into them is kernels.EPILOGUE_ACTIVATIONS.)"""
    return act_code(act)


def use_parallel(nbytes):
    """Whether a kernel moving ``nbytes`` should run on the thread pool."""
    return nbytes >= PARALLEL_BYTES and numba.get_num_threads() > 1


def thread_chunks(n, per_thread=1, align=1):
    """(step, count): ``n`` rows cut into ``count`` chunks of ``step`` rows (the last one shorter) for
    a ``prange`` over the chunks: one chunk per thread, or ``per_thread`` per thread where each chunk
    still gets two rows or more; ``step`` rounded up to a multiple of ``align``."""
    k = numba.get_num_threads()
    parts = per_thread * k if n >= 2 * per_thread * k else k
    step = -(-n // parts)
    step = -(-step // align) * align
    return step, -(-n // step)


@njit(**FAST)
def act_span(x, out, n, act):
    """out[i] = act(x[i]) for i < n, any activation (``out`` may be ``x``): one loop per activation, each
    vectorised (zmm) with the functions of ``fastmath.py``. Compiled with ``FAST`` (no reassociation:
    see fastmath.py), and called, not inlined, by the kernels: a loop that branched on ``act`` per
    element stayed scalar."""
    if act == ACT_NONE:
        for i in range(n):
            out[i] = x[i]
    elif act == ACT_RELU:
        for i in range(n):
            out[i] = max(x[i], np.float32(0.0))
    elif act == ACT_RELU6:
        for i in range(n):
            out[i] = min(max(x[i], np.float32(0.0)), np.float32(6.0))
    elif act == ACT_SIGMOID:
        for i in range(n):
            out[i] = fm.sigmoid_f32(x[i])
    elif act == ACT_SILU:
        for i in range(n):
            out[i] = fm.silu_f32(x[i])
    elif act == ACT_HARD_SIGMOID:
        for i in range(n):
            out[i] = min(max(x[i] * np.float32(1.0 / 6.0) + np.float32(0.5), np.float32(0.0)), np.float32(1.0))
    elif act == ACT_HARD_SILU:
        for i in range(n):
            v = x[i]
            out[i] = v * min(max(v * np.float32(1.0 / 6.0) + np.float32(0.5), np.float32(0.0)), np.float32(1.0))
    elif act == ACT_GELU:
        for i in range(n):
            out[i] = fm.gelu_f32(x[i])
    elif act == ACT_GELU_TANH:
        for i in range(n):
            out[i] = fm.gelu_tanh_f32(x[i])
    elif act == ACT_TANH:
        for i in range(n):
            out[i] = fm.tanh_f32(x[i])


@njit(**JIT)
def act_rows(buf, start, stride, rows, n, act):
    """``act_span`` in place over ``rows`` runs of ``n`` floats of the flat array ``buf``, the first at
    ``start``, ``stride`` apart: the epilogue of a register tile (a few output rows of a channel
    block) with a smooth activation."""
    for r in range(rows):
        v = raw_view(buf, start + r * stride)
        act_span(v, v, n, act)


@njit(**FAST)
def act_scalar(v, act):
    """The activation ``act`` on one float32 (for the smooth ones: a call, so that the functions of
    ``fastmath.py`` keep their flags)."""
    if act == ACT_SIGMOID:
        return fm.sigmoid_f32(v)
    if act == ACT_SILU:
        return fm.silu_f32(v)
    if act == ACT_GELU:
        return fm.gelu_f32(v)
    if act == ACT_GELU_TANH:
        return fm.gelu_tanh_f32(v)
    if act == ACT_TANH:
        return fm.tanh_f32(v)
    return v


@njit(inline="always", **JIT)
def apply_act(v, act):
    """The activation ``act`` (a code of kernels.ACT_CODES) on a float32 scalar; ``act`` is
    loop-invariant (or a compile-time constant) so LLVM unswitches it. Loops over many values
    with a smooth activation go through ``act_span`` instead (vectorised)."""
    if act == ACT_RELU:
        return max(v, np.float32(0.0))
    if act == ACT_RELU6:
        return min(max(v, np.float32(0.0)), np.float32(6.0))
    if act == ACT_HARD_SIGMOID:
        return min(max(v * np.float32(1.0 / 6.0) + np.float32(0.5), np.float32(0.0)), np.float32(1.0))
    if act == ACT_HARD_SILU:
        return v * min(max(v * np.float32(1.0 / 6.0) + np.float32(0.5), np.float32(0.0)), np.float32(1.0))
    if act == ACT_NONE:
        return v
    return act_scalar(v, act)


@njit(inline="always", **JIT)
def is_smooth(act):
    """Whether ``act`` is applied after the clamp of ``act_bounds`` (by ``act_span`` / ``act_rows``):
    every activation but None, relu and relu6."""
    return act > ACT_RELU6


@njit(inline="always", **JIT)
def act_bounds(act):
    """(lo, hi) with ``min(max(v, lo), hi) == apply_act(v, act)`` for the clamp activations (None,
    relu, relu6): an epilogue clamps every output the same way, with no branch on the activation
    inside its vector loop. Any other activation gets no clamp (-3e38, 3e38) and is applied after
    it (``is_smooth``, ``act_rows``)."""
    lo = np.float32(0.0) if act == ACT_RELU or act == ACT_RELU6 else np.float32(-3.0e38)
    hi = np.float32(6.0) if act == ACT_RELU6 else np.float32(3.0e38)
    return lo, hi
