"""Data movement without arithmetic as Numba kernels: channel_gather (channel slices of grouped
convolutions, splits, channel shuffles) and crop (Keras Cropping2D, ONNX Slice on H / W).

Pure copies, bound by memory: bytes = 4 * (output read from the input + output written).
channel_gather cuts its index into runs of consecutive channels once per call (a grouped
convolution's slice is one run, a concatenation of slices a few): each run is a contiguous copy per
row, vectorised. An index that is mostly runs of one channel (a shuffle) is gathered element by
element instead. crop copies each output row, one contiguous run of OW * C floats. Rows are split
over threads above ``common.PARALLEL_BYTES``.

Bench: ``python bench/bench_kernels.py --only new``.
"""

import numpy as np
from numba import njit, prange

from kernels.cpu.common import JIT, PJIT, thread_chunks, use_parallel
from kernels.cpu.stack import raw_view


@njit(**JIT)
def _runs(index):
    """(runs, count): runs[i] = (first output channel, first input channel, length) of the i-th run of
    consecutive input channels in ``index``."""
    cout = index.size
    runs = np.empty((cout, 3), np.int64)
    n = 0
    j = 0
    while j < cout:
        k = j + 1
        while k < cout and index[k] == index[k - 1] + 1:
            k += 1
        runs[n, 0] = j
        runs[n, 1] = index[j]
        runs[n, 2] = k - j
        n += 1
        j = k
    return runs, n


@njit(**JIT)
def _gather_rows(x, index, out, cin, runs, nruns, r0, r1):
    cout = index.size
    if nruns * 4 > cout:                        # mostly single channels: a gather per element
        for r in range(r0, r1):
            xv, ov = raw_view(x, r * cin), raw_view(out, r * cout)
            for j in range(cout):
                ov[j] = xv[index[j]]
        return
    for r in range(r0, r1):
        for q in range(nruns):
            src = raw_view(x, r * cin + runs[q, 1])
            dst = raw_view(out, r * cout + runs[q, 0])
            for j in range(runs[q, 2]):
                dst[j] = src[j]


@njit(**JIT)
def _gather_serial(x, index, out, cin):
    runs, n = _runs(index)
    _gather_rows(x, index, out, cin, runs, n, 0, x.size // cin)


@njit(**PJIT)
def _gather_par(x, index, out, cin, step, nchunk):
    runs, n = _runs(index)
    rows = x.size // cin
    for k in prange(nchunk):
        _gather_rows(x, index, out, cin, runs, n, k * step, min(rows, (k + 1) * step))


def channel_gather(x, index, out):
    """out[..., j] = x[..., index[j]] (int64 index; any order, repeats allowed)."""
    cin = x.shape[-1]
    fx, fo = np.ascontiguousarray(x).reshape(-1), out.reshape(-1)
    idx = np.ascontiguousarray(index, np.int64)
    rows = fx.size // cin
    if use_parallel(8 * fo.size) and rows > 1:
        _gather_par(fx, idx, fo, cin, *thread_chunks(rows))
    else:
        _gather_serial(fx, idx, fo, cin)


@njit(**JIT)
def _crop_rows(x, out, top, left, r0, r1):
    """Output rows [r0, r1) (flattened over N * OH): each a contiguous run of OW * C floats."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    oh, ow = out.shape[1], out.shape[2]
    xf, of = raw_view(x, 0), raw_view(out, 0)
    run = ow * c
    for r in range(r0, r1):
        n = r // oh
        y = r - n * oh
        src = raw_view(xf, ((n * h + y + top) * w + left) * c)
        dst = raw_view(of, r * run)
        for j in range(run):
            dst[j] = src[j]


@njit(**PJIT)
def _crop_par(x, out, top, left, step, nchunk):
    rows = out.shape[0] * out.shape[1]
    for k in prange(nchunk):
        _crop_rows(x, out, top, left, k * step, min(rows, (k + 1) * step))


def crop(x, out, box):
    """out = x without ``box`` = (top, bottom, left, right) rows and columns at its borders."""
    top, left = int(box[0]), int(box[2])
    x = np.ascontiguousarray(x)
    rows = out.shape[0] * out.shape[1]
    if use_parallel(8 * out.size) and rows > 1:
        _crop_par(x, out, top, left, *thread_chunks(rows))
    else:
        _crop_rows(x, out, top, left, 0, rows)
