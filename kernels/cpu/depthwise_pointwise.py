"""Depthwise convolution fused with the 1x1 convolution that reads it (MobileNet, Xception).

    out = act(conv1x1(dw_act(depthwise(in_act(x)) + dw_bias)) + bias [+ residual])

Unfused, the depthwise output makes a round trip through memory: written by one kernel, read
back by the next, and at Xception's 147x147x128 (11 MB) that trip goes through L3 and DRAM. Here a
work item is a block of whole output rows (about ``BLOCK_PIXELS`` pixels): its depthwise output is
computed into a per-thread scratch panel [pixels, cin] (37 KB at 64 channels, 280 KB at 728: L1/L2)
and the 1x1 convolution runs over that panel with the usual register tiles
(``conv.drivers.work_item``: 6x64 and the narrow 12x32 / 8x48 last block), writing the final output
once. So the depthwise output never reaches the arena. The depthwise part is
``depthwise.dw_rows_window`` (clamped border windows, shifted weights), specialised on window size,
horizontal stride and ``in_act``: the activation of Xception's ReLU layers, applied to the inputs as
they are loaded (that ReLU's input is also the block's residual, so it cannot go into the
producer's epilogue).

Work split: blocks of ~BLOCK_PIXELS output pixels, a multiple of the thread count, whose sizes
differ by at most one row, or on maps of few rows (< ROWS_PER_THREAD a thread) by at most one
pixel, the depthwise part then recomputing the row two blocks share: blocks of a fixed row count
had left one thread 21 of Xception's 37 rows. (Splitting a block's output channels into groups
that each redo the depthwise part, for maps too small for row blocks, ran slower than the two
kernels on MobileNet's 7x7 layers.)

Falls back to the two kernels with an intermediate buffer when the depthwise part has no compiled
window kernel (multiplier > 1, windows other than 3x3 / 5x5, maps smaller than the window) and
when the map has too few pixels to give every thread a row block (MobileNet's 7x7 layers).

Bound: the 1x1 part's FMAs, as in ``conv``; the depthwise part is bound by vector loads (see
``depthwise.py``). Bench: ``python bench/compare_fusion.py mobilenet`` (whole networks with and
without the fusion) and ``python bench/compare_blocks.py`` (chains of blocks against ONNX Runtime);
results in bench/RESULTS.md.
"""

from types import SimpleNamespace
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange, types

from kernels import aligned_empty, aligned_zeros, conv_output_size, current_workspace
from kernels.cpu import depthwise as dwk
from kernels.cpu.common import CLAMP_ACTIVATIONS, JIT, NO_RESIDUAL, PJIT, epilogue_code
from kernels.cpu.conv import dispatch
from kernels.cpu.conv.dispatch import SERIAL_FLOPS, ConvPlan, conv2d, pack_conv2d, plannable, streams_output
from kernels.cpu.conv.drivers import work_item, work_items
from kernels.cpu.conv.geometry import ConvGeom
from kernels.cpu.conv.tile import MR
from kernels.cpu.depthwise import TQ, depthwise_conv2d, dw_rows_window, pack_depthwise
from kernels.cpu.elementwise import activation
from kernels.cpu.native import array1d, geom_type, item_address
from kernels.cpu.stack import call_native, raw_view

BLOCK_PIXELS = 256      # output pixels per row block (at least one row): 128 and 64 ran 5-10% slower on 147-wide maps
ROWS_PER_THREAD = 24     # below this many rows per thread, blocks split at pixels, not rows
_FUSED = {}


class FusedGeom(NamedTuple):
    """The fused layer's geometry, as its compiled drivers read it (ints only: one Numba type)."""
    stride_h: int
    stride_w: int
    pad_top: int
    pad_left: int
    oh: int
    ow: int
    rows: int            # N * OH output rows
    n_blocks: int        # work items
    cout: int
    out_c0: int
    unit: int            # pixels per block unit: a whole row (ow), or 1 on maps of few rows
    stream: int          # 1: the 1x1 part stores its output rows non-temporally


@njit(**JIT)
def _fused_item(blk, xf, h, wd, c, wall, vslot, dbf, wr, nfull, rw, br, outr, resr, ostride, s, fg, dact, act,
                has_res, KH, KW, SW, IA, window, items):
    """Row block ``blk``: its depthwise part into the panel ``s``, then the 1x1 convolution of the
    block's pixels for every output-channel block. KH, KW, SW, IA arrive as constants (literal
    specialisations, as for ``dw_rows_window``, which gets them as such); both drivers call it, so it
    compiles once, and it calls the compiled ``dw_rows_window`` and ``work_item`` that the plain
    depthwise and 1x1 layers use, through their addresses ``window`` and ``items[0]``
    (``stack.call_native``: their code is not compiled into this function again)."""
    ow, unit, nblk = fg.ow, fg.unit, fg.n_blocks
    # blocks of whole units (``unit`` pixels: a row, or one pixel on maps of few rows) whose sizes
    # differ by at most one unit; the depthwise part computes the whole rows a block touches (a row
    # shared by two pixel blocks is computed by both)
    nunits = fg.rows * ow // unit
    p0 = blk * nunits // nblk * unit
    p1 = (blk + 1) * nunits // nblk * unit
    r0 = p0 // ow
    r1 = (p1 + ow - 1) // ow
    npix = p1 - p0
    call_native(window, dw_rows_window, xf, h, wd, c, wall, vslot, dbf, s, fg.oh, ow, c, KH, KW, SW, IA, fg.stride_h,
                fg.stride_w, fg.pad_top, fg.pad_left, dact, np.int64(0), r0, r1, r0, np.int64(0),
                (r1 - r0) * ((c + TQ - 1) // TQ))
    # the 1x1 convolution over the block's pixels of the panel: an unpadded "image" of npix pixels
    cout = fg.cout
    one = np.int64(1)       # int64, not a literal: the ConvGeom type of conv2d's drivers, one work_item
    g = ConvGeom(out_hw=npix, out_w=npix, stride_h=one, stride_w=one, image_len=npix * c, row_len=npix * c, cin=c,
                 kh=one, k_len=c, pixels=npix, cout=cout, out_c0=fg.out_c0, rows_per_pass=one, stream=fg.stream)
    sp = raw_view(s, (p0 - r0 * ow) * c)
    o = raw_view(outr, p0 * ostride)
    rs = raw_view(resr, p0 * cout) if has_res else resr
    for cb in range(nfull + (1 if rw > 0 else 0)):
        call_native(items[0], work_item, sp, wr, br, o, rs, ostride, g, act, has_res, nfull, rw, cb, np.int64(0),
                    (npix + MR - 1) // MR, items)


def _fused_kernels(kh, kw, sw, ia):
    """Parallel and serial drivers with window size, horizontal stride and input activation baked
    in (closures over ints only, as in ``depthwise._specialised``, so Numba's disk cache keys them
    stably): each a loop of calls of ``_fused_item`` with the same argument types."""
    SW = sw if (kh, kw) == (3, 3) and sw in dwk.TILED_STRIDES else 0
    IA = ia
    key = (kh, kw, SW, IA)
    if key in _FUSED:
        return _FUSED[key]
    KH, KW = kh, kw

    @njit(**PJIT)
    def fused_par(x, wvar, vslot, db, wf, nfull, rw, bias, out2, res2, scratch, geo, dact, act, has_res, item, window,
                  work):
        fg = FusedGeom(*geo)
        h, wd, c = x.shape[1], x.shape[2], x.shape[3]
        xf, wall, dbf = raw_view(x, 0), raw_view(wvar, 0), raw_view(db, 0)
        wr, br, outr, resr = raw_view(wf, 0), raw_view(bias, 0), raw_view(out2, 0), raw_view(res2, 0)
        for blk in prange(fg.n_blocks):
            s = raw_view(scratch[numba.get_thread_id()], 0)
            call_native(item, _fused_item, np.int64(blk), xf, h, wd, c, wall, vslot, dbf, wr, nfull, rw, br, outr,
                        resr, out2.shape[1], s, fg, dact, act, has_res, KH, KW, SW, IA, window, work)

    @njit(**JIT)
    def fused_serial(x, wvar, vslot, db, wf, nfull, rw, bias, out2, res2, scratch, geo, dact, act, has_res, item,
                     window, work):
        fg = FusedGeom(*geo)
        h, wd, c = x.shape[1], x.shape[2], x.shape[3]
        xf, wall, dbf = raw_view(x, 0), raw_view(wvar, 0), raw_view(db, 0)
        wr, br, outr, resr = raw_view(wf, 0), raw_view(bias, 0), raw_view(out2, 0), raw_view(res2, 0)
        for blk in range(fg.n_blocks):
            s = raw_view(scratch[0], 0)
            call_native(item, _fused_item, np.int64(blk), xf, h, wd, c, wall, vslot, dbf, wr, nfull, rw, br, outr,
                        resr, out2.shape[1], s, fg, dact, act, has_res, KH, KW, SW, IA, window, work)

    lits = tuple(types.literal(v) for v in (KH, KW, SW, IA))

    def item_types(vslot):
        """``_fused_item``'s argument types as both drivers pass them (for ``item_address``)."""
        return ((types.int64, array1d) + (types.int64,) * 3 + (array1d, vslot, array1d, array1d) + (types.int64,) * 2
                + (array1d,) * 3 + (types.int64, array1d, geom_type(FusedGeom), types.int64, types.int64, types.boolean)
                + lits + (types.int64, types.UniTuple(types.int64, 4)))

    _FUSED[key] = (fused_par, fused_serial, item_types, dwk.window_types(KH, KW, SW, IA))
    return _FUSED[key]


def pack_depthwise_pointwise(dw_kernel, dw_bias, kernel, bias):
    """Depthwise weights (kh, kw, c, mult) + bias and 1x1 weights (1, 1, c * mult, cout) + bias."""
    dw = pack_depthwise(dw_kernel, dw_bias)
    pw = pack_conv2d(kernel, bias)
    return SimpleNamespace(dw=dw, pw=pw, variant=f"{dw.variant}+{pw.direct_variant}")


def _fallback(x, packed, out, dw_stride, dw_pad, dw_act, act, residual, out_c0, oh, ow, in_act):
    ws = current_workspace()
    if in_act is not None:
        xa = ws.get(("dwpw.in", x.shape), lambda: aligned_empty(x.shape))
        activation(x, xa, in_act)
        x = xa
    shape = (x.shape[0], oh, ow, packed.dw.c * packed.dw.mult)
    mid = ws.get(("dwpw.mid", shape), lambda: aligned_empty(shape))
    depthwise_conv2d(x, packed.dw, mid, dw_stride, dw_pad, dw_act)
    conv2d(mid, packed.pw, out, (1, 1), (0, 0, 0, 0), act, residual, out_c0)
    packed.variant = f"{packed.dw.variant}+{packed.pw.variant}"


def depthwise_pointwise(x, packed, out, dw_stride, dw_pad, dw_act=None, act=None, residual=None, out_c0=0,
                        in_act=None):
    """Write act(conv1x1(dw_act(depthwise(in_act(x)))) + bias [+ residual]) into channels
    [out_c0, out_c0 + cout) of ``out``."""
    threads = numba.get_num_threads()
    ws = current_workspace()
    held = ws.plans.get(id(packed))       # (packed, plan): see conv2d
    plan = held[1] if held is not None else None
    key = (x.shape, out.shape, tuple(dw_stride), tuple(dw_pad), dw_act, act, out_c0, in_act, threads,
           dispatch.STREAM_BYTES)
    if plan is not None and plan.matches(x, out, residual, key):
        # the same buffers and options as the previous (fused) call: its kernel arguments
        packed.variant = plan.variant
        plan.run(*plan.args)
        return
    dw, pw = packed.dw, packed.pw
    sh, sw = (int(v) for v in dw_stride)
    pt, pb, pl, pr = (int(v) for v in dw_pad)
    n, h, w, c = x.shape
    oh = conv_output_size(h, dw.kh, sh, pt, pb)
    ow = conv_output_size(w, dw.kw, sw, pl, pr)
    cout = pw.kernel_shape[3]
    if dw.fast == "dw_generic" or h < dw.kh or w < dw.kw or in_act not in CLAMP_ACTIVATIONS:
        # (an input activation other than a clamp would be applied per loaded value, unvectorised)
        _fallback(x, packed, out, (sh, sw), (pt, pb, pl, pr), dw_act, act, residual, out_c0, oh, ow, in_act)
        return
    rows = n * oh
    flops = 2 * rows * ow * c * (dw.kh * dw.kw + cout)
    if threads == 1 or flops < SERIAL_FLOPS:
        threads = 1
    if threads > 1 and rows * ow < threads * BLOCK_PIXELS // 2:
        # too few pixels to give each thread row blocks (7x7, 10x10)
        _fallback(x, packed, out, (sh, sw), (pt, pb, pl, pr), dw_act, act, residual, out_c0, oh, ow, in_act)
        return
    nblocks = -(-rows * ow // BLOCK_PIXELS)
    nblocks = -(-nblocks // threads) * threads
    # whole rows per block unless that leaves a thread a row more than another on few rows (19x19:
    # 10 against 9); a pixel split recomputes one depthwise row per block boundary instead
    unit = ow if rows >= ROWS_PER_THREAD * threads or threads == 1 else 1
    if unit == ow:
        nblocks = min(rows, nblocks)
    ekey = (h, w, sh, sw, pt, pl)
    edges = dw.edges.get(ekey)
    if edges is None:
        edges = dw.edges[ekey] = dwk.edge_weights(dw.w, h, w, (sh, sw), pt, pl, oh, ow)
    size = (-(-rows * ow // nblocks) // ow + 2) * ow * c     # the rows a block can touch
    # per-thread panels, shared by the layers of that panel size in one executor (one layer at a time)
    scratch = ws.get(("dwpw.panel", size), lambda: aligned_zeros((numba.config.NUMBA_NUM_THREADS, size)))
    m_total = rows * ow
    out2 = out.reshape(m_total, out.shape[-1])
    has_res = residual is not None
    res2 = residual.reshape(m_total, cout) if has_res else NO_RESIDUAL
    stream = int(streams_output(out2, m_total * cout, out_c0, act))
    # passed as a plain tuple: Numba types a named-tuple argument on a slower path (~1.3 us a call);
    # the compiled driver reads it as a FusedGeom again
    geo = tuple(FusedGeom(stride_h=sh, stride_w=sw, pad_top=pt, pad_left=pl, oh=oh, ow=ow, rows=rows,
                          n_blocks=nblocks, cout=cout, out_c0=int(out_c0), unit=unit, stream=stream))
    fused_par, fused_serial, item_types, window_types = _fused_kernels(dw.kh, dw.kw, sw, epilogue_code(in_act))
    packed.variant = f"{dw.fast}+{pw.direct_variant}"
    args = (x, edges[0], edges[1], dw.b, pw.weights, pw.nfull, pw.rw, pw.bias, out2, res2, scratch, geo,
            epilogue_code(dw_act), epilogue_code(act), has_res, item_address(_fused_item, item_types, edges[1]),
            item_address(dw_rows_window, window_types, edges[1]), work_items())
    fn = fused_serial if threads == 1 else fused_par
    if plannable(x, out, residual):     # the plan holds the buffers: one set a layer
        ws.plans[id(packed)] = (packed, ConvPlan(x, out, residual, key, None, packed.variant, fn, args))
    fn(*args)
