"""The loops that hand a convolution's (tile block, channel block) work items to threads.

Channel blocks [0, nfull) are 64 wide and run the 6x64 tile (``conv_tile.py``); a last block of
16/32/48 channels (``rw`` > 0) runs the narrow tiles of ``conv_narrow.py``. Weights arrive flat:
the full blocks packed [nfull, kh, kw * cin, 64], then the narrow one [kh, kw * cin, rw].
"""

from numba import njit, prange

from kernels.cpu.conv_narrow import narrow_item
from kernels.cpu.conv_tile import MC, MR, NR, _tile_row, _work_item
from kernels.cpu.stack import raw_view


@njit(fastmath=True, cache=True)
def _tile_blocks(nmt, nb, threads):
    """Number of tile blocks (of <= MC tiles): a count that gives every thread an equal number of
    (block, channel block) work items (static scheduling hands each a contiguous run)."""
    nmb = (nmt + MC - 1) // MC
    if nb % threads != 0:
        nmb = min(nmt, (nmb + threads - 1) // threads * threads)
    return nmb


@njit(fastmath=True, cache=True, inline="always")
def _item(xr, wr, br, outr, resr, ostride, geom, act, has_res, nfull, rw, cb, lo, hi):
    """Channel block cb over 6-pixel tiles [lo, hi)."""
    m_total = geom[9]
    if cb == nfull:
        narrow_item(xr, wr, br, outr, resr, ostride, geom, act, has_res, nfull * geom[7] * geom[8] * NR, rw,
                    lo * MR, min(hi * MR, m_total))
    elif m_total < MR:
        for m in range(m_total):
            _tile_row(xr, wr, br, outr, resr, ostride, m, cb, geom, act, has_res)
    else:
        _work_item(xr, wr, br, outr, resr, ostride, geom, act, has_res, cb, lo, hi)


@njit(parallel=True, fastmath=True, cache=True)
def conv_tiles_parallel(xf, wf, nfull, rw, bias, out2, res2, geom, act, has_res, threads):
    """Work item = (block of <= MC tiles, channel block): the weight panel of a channel block is
    reused across the block's tiles while it is hot in L1/L2. Block mb covers tiles
    [mb * nmt // nmb, (mb + 1) * nmt // nmb), so block sizes differ by at most one tile and both
    threads get the same work (fixed-size blocks left the last thread up to 13% short: 131 tiles
    as 10 x 14 gave 70 vs 61)."""
    m_total = geom[9]
    nmt = (m_total + MR - 1) // MR
    nb = nfull + (1 if rw > 0 else 0)
    nmb = _tile_blocks(nmt, nb, threads)
    ostride = out2.shape[1]
    xr, wr, br, outr, resr = raw_view(xf, 0), raw_view(wf, 0), raw_view(bias, 0), raw_view(out2, 0), raw_view(res2, 0)
    for t in prange(nmb * nb):
        mb = t // nb
        cb = t - mb * nb
        _item(xr, wr, br, outr, resr, ostride, geom, act, has_res, nfull, rw, cb, mb * nmt // nmb,
              (mb + 1) * nmt // nmb)


@njit(fastmath=True, cache=True)
def conv_tiles_serial(xf, wf, nfull, rw, bias, out2, res2, geom, act, has_res):
    """The same loop on the calling thread, for layers too small to pay the fork/join."""
    m_total = geom[9]
    nmt = (m_total + MR - 1) // MR
    nmb = (nmt + MC - 1) // MC
    nb = nfull + (1 if rw > 0 else 0)
    ostride = out2.shape[1]
    xr, wr, br, outr, resr = raw_view(xf, 0), raw_view(wf, 0), raw_view(bias, 0), raw_view(out2, 0), raw_view(res2, 0)
    for mb in range(nmb):
        for cb in range(nb):
            _item(xr, wr, br, outr, resr, ostride, geom, act, has_res, nfull, rw, cb, mb * MC,
                  min(nmt, mb * MC + MC))
