"""Dense (fully connected) layer as a Numba GEMV / skinny GEMM.

out[n, o] = act(b[o] + sum_k x[n, k] * W[k, o])

At inference batch sizes this is bound by streaming the weights: VGG16's fc1 is 25088 x 4096
floats = 411 MB read once per call, for 2 * N * 25088 * 4096 FLOPs (N = batch). Bytes counted by the
bench: 4 * (in*out + N*in + N*out).

Packing (variant ``gemv_b{B}``): W (in, out) is cut into column blocks of B outputs and stored as
``[out/B, in, B]`` (zero-padded to a multiple of B), so one block is a single contiguous stream of
in*B floats. A worker owns whole blocks (threads split the outputs); for each block it keeps an
R x B accumulator in registers (R <= 4 batch rows at a time) and walks k, doing R broadcast-FMAs
per B-wide weight row: each weight byte is read from memory once per R batch rows.

Bench: ``python bench/bench_kernels.py`` (VGG fc1, ResNet/Inception/MobileNet classifiers).
"""

from types import SimpleNamespace

import numba
import numpy as np
from numba import njit, prange

from kernels.cpu.elementwise import act_code, apply_act, use_parallel

_JIT = dict(fastmath=True, cache=True, nogil=True)
_PJIT = dict(parallel=True, fastmath=True, cache=True, nogil=True)

BLOCK = 64
ROWS = 4


@njit(**_JIT)
def _dense_blocks(x, wp, b, out, act, j0, j1):
    """Output column blocks j0..j1 for every batch row, ROWS batch rows per pass over the weights."""
    nb, k_in, bw = wp.shape
    n, nout = out.shape
    for jb in range(j0, j1):
        o0 = jb * bw
        width = min(bw, nout - o0)
        for r0 in range(0, n, ROWS):
            nr = min(ROWS, n - r0)
            acc = np.zeros((ROWS, BLOCK), np.float32)
            if nr == 1:
                for k in range(k_in):
                    v0 = x[r0, k]
                    for q in range(BLOCK):
                        acc[0, q] += v0 * wp[jb, k, q]
            elif nr == 2:
                for k in range(k_in):
                    v0 = x[r0, k]
                    v1 = x[r0 + 1, k]
                    for q in range(BLOCK):
                        wv = wp[jb, k, q]
                        acc[0, q] += v0 * wv
                        acc[1, q] += v1 * wv
            elif nr == 3:
                for k in range(k_in):
                    v0 = x[r0, k]
                    v1 = x[r0 + 1, k]
                    v2 = x[r0 + 2, k]
                    for q in range(BLOCK):
                        wv = wp[jb, k, q]
                        acc[0, q] += v0 * wv
                        acc[1, q] += v1 * wv
                        acc[2, q] += v2 * wv
            else:
                for k in range(k_in):
                    v0 = x[r0, k]
                    v1 = x[r0 + 1, k]
                    v2 = x[r0 + 2, k]
                    v3 = x[r0 + 3, k]
                    for q in range(BLOCK):
                        wv = wp[jb, k, q]
                        acc[0, q] += v0 * wv
                        acc[1, q] += v1 * wv
                        acc[2, q] += v2 * wv
                        acc[3, q] += v3 * wv
            for rr in range(nr):
                for q in range(width):
                    out[r0 + rr, o0 + q] = apply_act(acc[rr, q] + b[o0 + q], act)


@njit(**_PJIT)
def _dense_par(x, wp, b, out, act, step, nchunk):
    nb = wp.shape[0]
    for k in prange(nchunk):
        _dense_blocks(x, wp, b, out, act, k * step, min(nb, (k + 1) * step))


def pack_dense(kernel, bias):
    """kernel (in, out), bias (out,) | None -> column-blocked weights [ceil(out/B), in, B] + bias."""
    kernel = np.asarray(kernel, dtype=np.float32)
    k_in, nout = kernel.shape
    nb = -(-nout // BLOCK)
    wp = np.zeros((nb, k_in, BLOCK), np.float32)
    padded = np.zeros((k_in, nb * BLOCK), np.float32)
    padded[:, :nout] = kernel
    wp[...] = padded.reshape(k_in, nb, BLOCK).transpose(1, 0, 2)
    b = np.zeros(nout, np.float32) if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
    return SimpleNamespace(wp=wp, b=b, n_in=k_in, n_out=nout, variant=f"gemv_b{BLOCK}")


def dense(x, packed, out, act=None):
    """x (N, in) -> out (N, out) = act(x @ W + b)."""
    code = act_code(act)
    nb = packed.wp.shape[0]
    if use_parallel(packed.wp.nbytes) and nb > 1:
        k = numba.get_num_threads()
        # Several blocks per thread keep the split even when nb is not a multiple of k.
        step = max(1, -(-nb // (4 * k))) if nb >= 8 * k else -(-nb // k)
        _dense_par(x, packed.wp, packed.b, out, code, step, -(-nb // step))
    else:
        _dense_blocks(x, packed.wp, packed.b, out, code, 0, nb)
