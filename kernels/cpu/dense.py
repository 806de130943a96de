"""Dense (fully connected) layer as a Numba GEMV / skinny GEMM.

out[n, o] = act(b[o] + sum_k x[n, k] * W[k, o])

At inference batch sizes this is bound by streaming the weights: VGG16's fc1 is 25088 x 4096
floats = 411 MB read once per call, for 2 * N * 25088 * 4096 FLOPs (N = batch). Bytes counted by the
bench: 4 * (in*out + N*in + N*out).

Packing (variant ``gemv_b{B}``): W (in, out) is cut into column blocks of B outputs and stored as
``[out/B, in, B]`` (zero-padded to a multiple of B), so one block is a single contiguous stream of
in*B floats. A worker owns whole blocks (threads split the outputs); for each block it keeps an
R x B accumulator in registers (R <= 4 batch rows at a time) and walks k, doing R broadcast-FMAs
per B-wide weight row: each weight byte is read from memory once per R batch rows. The
accumulator is a stack tile (a heap ``np.zeros`` one was stored back to L1 every k: 10-13 GB/s on
the 4096x4096 / 25088x4096 layers, 3 GB/s at batch 8); at batch 1 k is split four ways over the
tile's rows so 16 FMA chains are in flight.

Bench: ``python bench/bench_kernels.py`` (VGG fc1, ResNet/Inception/MobileNet classifiers).
"""

from types import SimpleNamespace

import numpy as np
from numba import njit, prange, types

from kernels import ACT_NONE, aligned_copy, aligned_empty, aligned_zeros
from kernels.cpu.common import JIT, PJIT, act_code, act_span, apply_act, is_smooth, thread_chunks, use_parallel
from kernels.cpu.native import item_address
from kernels.cpu.stack import call_native, raw_view, stack_tile

BLOCK = 64
ROWS = 4


_acc_tile = stack_tile(ROWS, BLOCK)


@njit(**JIT)
def _dense_blocks(x, wp, b, out, act, j0, j1):
    """Output column blocks j0..j1 for every batch row, ROWS batch rows per pass over the weights.

    The ROWS x BLOCK accumulator is a stack tile (16 zmm registers). One batch row alone would
    give only 4 dependent FMA chains, so k is then split four ways over the tile's rows and the
    partial sums are added at the end: 16 independent chains, 4 weight rows per step.
    """
    nb, k_in, bw = wp.shape
    n, nout = out.shape
    k4 = k_in // 4 * 4
    smooth = is_smooth(act)
    lin = ACT_NONE if smooth else act        # a smooth activation goes over each finished row (act_span)
    for jb in range(j0, j1):
        o0 = jb * bw
        width = min(bw, nout - o0)
        w = wp[jb]
        bb = b[o0:o0 + width]
        for r0 in range(0, n, ROWS):
            nr = min(ROWS, n - r0)
            acc = _acc_tile()
            for r in range(ROWS):
                for q in range(BLOCK):
                    acc[r, q] = np.float32(0.0)
            if nr == 1:
                xr = x[r0]
                for k in range(0, k4, 4):
                    v0, v1, v2, v3 = xr[k], xr[k + 1], xr[k + 2], xr[k + 3]
                    w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
                    for q in range(BLOCK):
                        acc[0, q] += v0 * w0[q]
                        acc[1, q] += v1 * w1[q]
                        acc[2, q] += v2 * w2[q]
                        acc[3, q] += v3 * w3[q]
                for k in range(k4, k_in):
                    v0 = xr[k]
                    wk = w[k]
                    for q in range(BLOCK):
                        acc[0, q] += v0 * wk[q]
                for q in range(width):
                    out[r0, o0 + q] = apply_act(acc[0, q] + acc[1, q] + acc[2, q] + acc[3, q] + bb[q], lin)
                if smooth:
                    seg = raw_view(out, r0 * nout + o0)
                    act_span(seg, seg, width, act)
                continue
            if nr == 2:
                for k in range(k_in):
                    v0, v1 = x[r0, k], x[r0 + 1, k]
                    wk = w[k]
                    for q in range(BLOCK):
                        acc[0, q] += v0 * wk[q]
                        acc[1, q] += v1 * wk[q]
            elif nr == 3:
                for k in range(k_in):
                    v0, v1, v2 = x[r0, k], x[r0 + 1, k], x[r0 + 2, k]
                    wk = w[k]
                    for q in range(BLOCK):
                        acc[0, q] += v0 * wk[q]
                        acc[1, q] += v1 * wk[q]
                        acc[2, q] += v2 * wk[q]
            else:
                for k in range(k_in):
                    v0, v1, v2, v3 = x[r0, k], x[r0 + 1, k], x[r0 + 2, k], x[r0 + 3, k]
                    wk = w[k]
                    for q in range(BLOCK):
                        acc[0, q] += v0 * wk[q]
                        acc[1, q] += v1 * wk[q]
                        acc[2, q] += v2 * wk[q]
                        acc[3, q] += v3 * wk[q]
            for rr in range(nr):
                for q in range(width):
                    out[r0 + rr, o0 + q] = apply_act(acc[rr, q] + bb[q], lin)
                if smooth:
                    seg = raw_view(out, (r0 + rr) * nout + o0)
                    act_span(seg, seg, width, act)


@njit(**PJIT)
def _dense_par(x, wp, b, out, act, step, nchunk, blocks):
    """Chunks of column blocks over the threads, each a call of ``_dense_blocks`` through its address
    ``blocks`` (``stack.call_native``: its code is not compiled into this driver again)."""
    nb = wp.shape[0]
    for kk in prange(nchunk):
        k = np.int64(kk)
        call_native(blocks, _dense_blocks, x, wp, b, out, act, k * step, min(nb, (k + 1) * step))


def _blocks_types(x, wp, b, out):
    return (x, wp, b, out) + (types.int64,) * 3


def pack_dense(kernel, bias):
    """kernel (in, out), bias (out,) | None -> column-blocked weights [ceil(out/B), in, B] + bias."""
    kernel = np.asarray(kernel, dtype=np.float32)
    k_in, nout = kernel.shape
    nb = -(-nout // BLOCK)
    wp = aligned_empty((nb, k_in, BLOCK))
    for j in range(nb):     # a block at a time: one transposing copy took 0.8 s for VGG16's fc1, this 0.14
        width = min(BLOCK, nout - j * BLOCK)
        wp[j, :, :width] = kernel[:, j * BLOCK:j * BLOCK + width]
        wp[j, :, width:] = 0.0
    b = aligned_zeros(nout) if bias is None else aligned_copy(bias, np.float32)
    return SimpleNamespace(wp=wp, b=b, n_in=k_in, n_out=nout, variant=f"gemv_b{BLOCK}")


def dense(x, packed, out, act=None):
    """x (N, in) -> out (N, out) = act(x @ W + b)."""
    code = act_code(act)
    nb = packed.wp.shape[0]
    if use_parallel(packed.wp.nbytes) and nb > 1:
        _dense_par(x, packed.wp, packed.b, out, code, *thread_chunks(nb, per_thread=4),
                   item_address(_dense_blocks, _blocks_types, x, packed.wp, packed.b, out))
    else:
        _dense_blocks(x, packed.wp, packed.b, out, code, 0, nb)
