"""Numba conv2d: NHWC float32, HWIO weights, asymmetric zero padding, fused bias/residual/act.

Files, in the order a call goes through them:
    dispatch.py   ``conv2d`` / ``pack_conv2d``: packs the weights, picks the variant, pads the input,
                  saves the kernel arguments for the next call with the same buffers
    geometry.py   ``ConvGeom`` / ``WinogradGeom``: the layer geometry the compiled kernels read
    drivers.py    the loops that hand (tile block, channel block) work items to threads
    tile.py       the 6x64 register tile (``MR`` x ``NR``) and its epilogue
    narrow.py     the 12x32 / 8x48 tiles of a last block of 1-48 channels
    winograd.py   F(4x4, 3x3) for 3x3 stride-1 layers

What runs (``packed.variant``, set to what the latest call ran):
    winograd4x4-6x64    3x3 stride 1 with cin, cout >= 32 and >= 8 output tiles of 4x4
                        (``dispatch.use_winograd``): F(4x4, 3x3), 4x fewer MACs
    pointwise-<tiles>   1x1 kernels (any stride): a GEMM [pixels, cin] x [cin, cout]
    direct{kh}x{kw}-<tiles>  every other kernel size (3x3, 5x5, 7x7 stem, 1x7/7x1, ...)
``<tiles>`` names the register tiles: ``6x64`` for every full block of 64 output channels, and
``12x32`` / ``8x48`` for a last block of 1-32 / 33-48 channels, e.g. ``pointwise-6x64+12x32`` for 96
channels, ``direct3x3-12x32`` for InceptionV3's 32-channel stem.

The 6x64 tile holds 6 output pixels x 64 output channels in 24 zmm registers, summed over kernel
rows of contiguous ``kw * cin`` input runs. Padding is done by copying the input once per call into
a zero-bordered scratch buffer cached on the packed object (borders are zeroed once, only the
interior is rewritten), so the hot loop is branch-free. Layers under ``SERIAL_FLOPS`` run on the
calling thread unless their packed weights reach ``SERIAL_WEIGHT_BYTES`` (then streaming the weights
is the cost, and two cores stream them faster). Outputs of fewer than 6 pixels use a one-pixel tile
(6x fewer FMAs for the same weights). A channel block whose weights pass ``ROW_PASS_BYTES`` runs one
kernel row per pass over the work item's tiles, partial sums kept in ``out``, so each row's panel
stays in L2. Tile blocks are equal to within one tile so both threads get the same work. While a
work item's tiles compute on one weight panel they prefetch the next one (in a network the weights
come from DRAM). Unpadded 1x1 stride-1 layers find each pixel's inputs at ``m * cin`` instead of
dividing ``m`` by the map size.

Bound: compute (FMA throughput): per k, 4 weight-vector loads + 6 broadcasts feed 24 FMAs.
FLOPs = 2 * N * OH * OW * kh * kw * cin * cout; bytes ~ input + weights + output once each
(plus re-reads of the input per 64-channel block, mostly from L2/L3). Per-tile overhead outside the
k loop is ~170-200 cycles, which is what keeps K = 27 stems (3x3 on RGB) near 50% of peak.

``tile.tile_item.inspect_asm()`` (with NUMBA_CACHE_DIR pointing at an empty folder: cached code
cannot be inspected) shows the k loop as 24 ``vfmadd231ps`` on zmm registers, 4 weight loads, 6
broadcasts and one ``prefetcht0``, with no accumulator stores.

Bench: ``python bench/bench_conv.py`` (the conv shapes of the zoo); GFLOP/s per shape and the
history of each change are in bench/RESULTS.md.
"""

from kernels.cpu.conv.dispatch import conv2d, pack_conv2d

__all__ = ["conv2d", "pack_conv2d"]
