"""The loops that hand a convolution's (tile block, channel block) work items to threads.

Channel blocks [0, nfull) are 64 wide and run the 6x64 tile (``tile.py``); a last block of
16/32/48 channels (``rw`` > 0) runs the narrow tiles of ``narrow.py``. Weights arrive flat:
the full blocks packed [nfull, kh, kw * cin, 64], then the narrow one [kh, kw * cin, rw].
"""

import numpy as np
from numba import njit, prange, types

from kernels.cpu.common import JIT, PJIT
from kernels.cpu.conv.geometry import ConvGeom
from kernels.cpu.conv.narrow import narrow_item
from kernels.cpu.conv.tile import MC, MR, NR, row_items, tile_item
from kernels.cpu.native import array1d, geom_type, native_address
from kernels.cpu.stack import call_native, raw_view


@njit(**JIT)
def _tile_blocks(nmt, nb, threads):
    """Number of tile blocks (of <= MC tiles): a count that gives every thread an equal number of
    (block, channel block) work items (static scheduling hands each a contiguous run)."""
    nmb = (nmt + MC - 1) // MC
    if nb % threads != 0:
        nmb = min(nmt, (nmb + threads - 1) // threads * threads)
    return nmb


@njit(**JIT)
def work_item(xr, wr, br, outr, resr, ostride, g, act, has_res, nfull, rw, cb, lo, hi, items):
    """Channel block cb over 6-pixel tiles [lo, hi) of geometry ``g`` (a ``ConvGeom`` of int64s),
    whichever tile its width and pixel count take. Also the 1x1 half of ``depthwise_pointwise``.
    ``items``: the addresses of this function, ``tile_item``, ``narrow_item`` and ``row_items`` (``work_items()``),
    which it calls through them (``stack.call_native``: their code is not compiled in again).

    A call, not inlined: the serial and parallel drivers and the fused layer share one compiled
    copy of the tiles (inlined into each prange body, the parfor passes over it and its second
    compile as the outlined loop body had cost most of a cold start's compile time). A call per
    work item (a block of up to MC tiles) costs nothing measurable."""
    pixels = g.pixels
    if cb == nfull:
        call_native(items[2], narrow_item, xr, wr, br, outr, resr, ostride, g, act, has_res,
                    nfull * g.kh * g.k_len * NR, rw, lo * MR, min(hi * MR, pixels))
    elif pixels < MR:
        call_native(items[3], row_items, xr, wr, br, outr, resr, ostride, g, act, has_res, cb)
    else:
        call_native(items[1], tile_item, xr, wr, br, outr, resr, ostride, g, act, has_res, cb, lo, hi)


# the argument types work_item, tile_item, narrow_item and row_items are called with (their addresses are for
# these)
_HEAD = (array1d,) * 5 + (types.int64, geom_type(ConvGeom), types.int64, types.boolean)
WORK_ITEM_TYPES = _HEAD + (types.int64,) * 5 + (types.UniTuple(types.int64, 4),)
TILE_ITEM_TYPES = _HEAD + (types.int64,) * 3
NARROW_ITEM_TYPES = _HEAD + (types.int64,) * 4
ROW_ITEMS_TYPES = _HEAD + (types.int64,)


def work_items(tile=True, narrow=True, row=True) -> tuple:
    """The addresses of the compiled ``work_item``, ``tile_item``, ``narrow_item`` and ``row_items``:
    the drivers' last argument (they call the first and pass all four on). One not wanted is 0 and
    is not compiled: ``work_item`` reaches ``narrow_item`` only when the layer has a narrow last
    block, ``row_items`` only for outputs of fewer than MR pixels and ``tile_item`` otherwise
    (ResNet50 and VGG never need the narrow tiles, only MobileNet's classifier the row tiles)."""
    zero = np.int64(0)
    return (native_address(work_item, WORK_ITEM_TYPES),
            native_address(tile_item, TILE_ITEM_TYPES) if tile else zero,
            native_address(narrow_item, NARROW_ITEM_TYPES) if narrow else zero,
            native_address(row_items, ROW_ITEMS_TYPES) if row else zero)


@njit(**PJIT)
def conv_tiles_parallel(xf, wf, nfull, rw, bias, out2, res2, geom, act, has_res, threads, items):
    """Work item = (block of <= MC tiles, channel block): the weight panel of a channel block is
    reused across the block's tiles while it is hot in L1/L2. Block mb covers tiles
    [mb * nmt // nmb, (mb + 1) * nmt // nmb), so block sizes differ by at most one tile and both
    threads get the same work (fixed-size blocks left the last thread up to 13% short: 131 tiles
    as 10 x 14 gave 70 vs 61). ``geom``: a ``ConvGeom`` as a plain tuple."""
    g = ConvGeom(*geom)
    nmt = (g.pixels + MR - 1) // MR
    nb = nfull + (1 if rw > 0 else 0)
    nmb = _tile_blocks(nmt, nb, threads)
    ostride = out2.shape[1]
    xr, wr, br, outr, resr = raw_view(xf, 0), raw_view(wf, 0), raw_view(bias, 0), raw_view(out2, 0), raw_view(res2, 0)
    for t in prange(nmb * nb):
        mb = np.int64(t) // nb      # int64 as in the serial driver: one work_item specialisation
        cb = t - mb * nb
        call_native(items[0], work_item, xr, wr, br, outr, resr, ostride, g, act, has_res, nfull, rw, cb,
                    mb * nmt // nmb, (mb + 1) * nmt // nmb, items)


@njit(**JIT)
def conv_tiles_serial(xf, wf, nfull, rw, bias, out2, res2, geom, act, has_res, items):
    """The same loop on the calling thread, for layers too small to pay the fork/join."""
    g = ConvGeom(*geom)
    nmt = (g.pixels + MR - 1) // MR
    nmb = (nmt + MC - 1) // MC
    nb = nfull + (1 if rw > 0 else 0)
    ostride = out2.shape[1]
    xr, wr, br, outr, resr = raw_view(xf, 0), raw_view(wf, 0), raw_view(bias, 0), raw_view(out2, 0), raw_view(res2, 0)
    for mb in range(nmb):
        for cb in range(nb):
            call_native(items[0], work_item, xr, wr, br, outr, resr, ostride, g, act, has_res, nfull, rw, cb,
                        mb * MC, min(nmt, mb * MC + MC), items)
