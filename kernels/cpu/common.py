"""What every Numba kernel file shares: compile options, the activation, the parallel threshold and
the per-thread split of a range of rows.

Activation codes are ``kernels.ACT_NONE / ACT_RELU / ACT_RELU6`` (defined once, for every backend);
``act_code`` turns an ``act`` argument into one. A kernel applies the activation either per value
(``apply_act``) or, in epilogues that already clamp, as ``min(max(v, lo), hi)`` with the bounds of
``act_bounds``: one branch-free form for all three activations.
"""

import math

import numba
import numpy as np
from numba import njit

from kernels import ACT_CODES, ACT_NONE, ACT_RELU, ACT_RELU6, EPILOGUE_ACTIVATIONS, act_code

ACT_SIGMOID, ACT_SILU, ACT_HARD_SIGMOID, ACT_HARD_SILU = (ACT_CODES[a] for a in ("sigmoid", "silu", "hard_sigmoid",
                                                                               "hard_silu"))
ACT_GELU, ACT_GELU_TANH, ACT_TANH = (ACT_CODES[a] for a in ("gelu", "gelu_tanh", "tanh"))

__all__ = [
    "ACT_NONE", "ACT_RELU", "ACT_RELU6", "JIT", "NO_RESIDUAL", "PARALLEL_BYTES", "PJIT", "act_bounds", "act_code",
    "apply_act", "epilogue_code", "thread_chunks", "use_parallel",
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


def epilogue_code(act):
    """``act_code`` for kernels whose epilogue clamps (``act_bounds``): conv2d, depthwise_conv2d and
    depthwise_pointwise take only kernels.EPILOGUE_ACTIVATIONS (the runtime runs the others as a step
    of their own); anything else is refused rather than silently clamped."""
    if act not in EPILOGUE_ACTIVATIONS:
        raise ValueError(f"activation {act!r} is not applied by the CPU convolution epilogues (they apply "
                         f"{list(EPILOGUE_ACTIVATIONS)}); run it as an activation after the convolution")
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


@njit(inline="always", **JIT)
def apply_act(v, act):
    """The activation ``act`` (a code of kernels.ACT_CODES) on a float32 scalar; ``act`` is
    loop-invariant (or a compile-time constant) so LLVM unswitches it."""
    if act == ACT_RELU:
        return max(v, np.float32(0.0))
    if act == ACT_RELU6:
        return min(max(v, np.float32(0.0)), np.float32(6.0))
    if act == ACT_SIGMOID:
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-v))
    if act == ACT_SILU:
        return v / (np.float32(1.0) + np.exp(-v))
    if act == ACT_HARD_SIGMOID:
        return min(max(v * np.float32(1.0 / 6.0) + np.float32(0.5), np.float32(0.0)), np.float32(1.0))
    if act == ACT_HARD_SILU:
        return v * min(max(v * np.float32(1.0 / 6.0) + np.float32(0.5), np.float32(0.0)), np.float32(1.0))
    if act == ACT_GELU:
        return np.float32(0.5) * v * (np.float32(1.0) + np.float32(math.erf(v * np.float32(0.7071067811865476))))
    if act == ACT_GELU_TANH:
        u = np.float32(0.7978845608028654) * (v + np.float32(0.044715) * v * v * v)
        return np.float32(0.5) * v * (np.float32(1.0) + np.tanh(u))
    if act == ACT_TANH:
        return np.tanh(v)
    return v


@njit(inline="always", **JIT)
def act_bounds(act):
    """(lo, hi) with ``min(max(v, lo), hi) == apply_act(v, act)`` for the clamp activations (None,
    relu, relu6: kernels.EPILOGUE_ACTIVATIONS): an epilogue clamps every output the same way, with no
    branch on the activation inside its vector loop. The runtime runs any other activation as a
    step of its own."""
    lo = np.float32(0.0) if act != ACT_NONE else np.float32(-3.0e38)
    hi = np.float32(6.0) if act == ACT_RELU6 else np.float32(3.0e38)
    return lo, hi
