"""The layer geometry that the compiled conv kernels read, as named tuples of ints.

Numba compiles a named tuple of ints as the same struct as a plain tuple (a field read by name is a
constant offset), so naming the fields costs nothing in the kernels: the 6x64 tile's k loop is still
24 ``vfmadd231ps`` on zmm registers (``kernels/cpu/conv/__init__.py``). Every field is a Python int,
so one compiled signature serves every layer.
"""

from typing import NamedTuple


class ConvGeom(NamedTuple):
    """A convolution as a sum over kernel rows of GEMMs on the zero-padded input (``tile.py``):
    output pixel m (flattened over n, oy, ox) reads ``k_len`` contiguous floats per kernel row,
    starting at its offset in the padded input."""
    out_hw: int          # output pixels per image (OH * OW)
    out_w: int           # OW
    stride_h: int
    stride_w: int
    image_len: int       # floats per padded input image (Hp * Wp * cin)
    row_len: int         # floats per padded input row (Wp * cin): one kernel row further down
    cin: int
    kh: int
    k_len: int           # kw * cin: the inputs of one kernel row, the GEMM's K per row
    pixels: int          # N * OH * OW: the GEMM's M
    cout: int
    out_c0: int          # first channel written in ``out`` (a concat slice)
    rows_per_pass: int   # kernel rows summed per pass over a work item's tiles (kh, or 1 for big panels)
    stream: int          # 1: full 64-channel rows stored non-temporally (``dispatch.streams_output``)


class WinogradGeom(NamedTuple):
    """A 3x3 stride-1 layer cut into 4x4 output tiles (``winograd.py``), tiles in blocks of at most
    ``tile_block``, each block's output channels in ``groups`` groups (one work item each)."""
    tiles_h: int         # tiles per output column: ceil(OH / 4)
    tiles_w: int         # tiles per output row
    oh: int
    ow: int
    cout: int
    out_c0: int
    tile_block: int      # tiles per block (rows of the per-thread scratch), a multiple of MR
    groups: int          # output-channel groups (> 1 only when blocks are fewer than threads)
    n_tiles: int         # N * tiles_h * tiles_w
    n_blocks: int
