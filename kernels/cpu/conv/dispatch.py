"""conv2d and pack_conv2d: which kernel runs a layer, with what arguments (see ``__init__.py``).

A network runs the same steps on the same buffers run after run, so a call saves its kernel and
arguments (``ConvPlan``) and the next call with the very same buffers and options reruns them
(~2.4 us of Python a call otherwise, on MobileNet's layers).
"""

from typing import NamedTuple

import numba
import numpy as np

from kernels import aligned_empty, aligned_zeros, conv_output_size, current_workspace
from kernels.cpu.common import CLAMP_ACTIVATIONS, NO_RESIDUAL, epilogue_code
from kernels.cpu.conv import winograd as wino
from kernels.cpu.conv.drivers import conv_tiles_parallel, conv_tiles_serial, work_items
from kernels.cpu.conv.geometry import ConvGeom, WinogradGeom
from kernels.cpu.conv.narrow import NARROW_MR
from kernels.cpu.conv.tile import MR, NR
from kernels.cpu.elementwise import zero_pad

SERIAL_FLOPS = 4_000_000      # below this the fork/join of the thread pool costs more than it saves
ROW_PASS_BYTES = 768 << 10     # a channel block's weights above this run kernel row by row (L2 is 1 MB)
STREAM_BYTES = 8 << 20        # outputs from this size on are stored non-temporally (``streams_output``)
SERIAL_WEIGHT_BYTES = 1 << 20  # ... unless the packed weights are at least this big (streamed from L3/DRAM)
WINO_MIN_TILES = 8            # 7x7 maps (4 tiles, 8x8 computed for 7x7) with 512 channels ran slower
WINO_MIN_CHANNELS = 32        # cin and cout below this: the transforms cost more than the GEMM saves
_NO_RESIDUAL4 = np.zeros((1, 1, 1, 1), np.float32)
_NO_VALL = np.zeros((1, 1, 1), np.float32)


class ConvPlan(NamedTuple):
    """What a call saves for the next one (``conv2d`` and ``depthwise_pointwise``): the buffers it
    ran on and its options, and the compiled kernel with the arguments made from them."""
    x: object
    out: object
    residual: object
    key: tuple            # shapes, strides, padding, activations, out_c0, threads, STREAM_BYTES
    padding: object       # conv2d: the padding x is first copied with (None: x is the kernel's input)
    variant: str          # what ``packed.variant`` says when the plan runs
    run: object           # the compiled driver ...
    args: tuple           # ... and its arguments

    def matches(self, x, out, residual, key):
        """Whether a call with these buffers and options can rerun the plan."""
        return self.x is x and self.out is out and self.residual is residual and self.key == key


def plannable(x, out, residual):
    """Whether kernel arguments made from these arrays can be reused: only if they are views of
    them, not copies (a reshape of a non-contiguous array copies; reused, it holds stale data)."""
    return x.flags.c_contiguous and out.flags.c_contiguous and (residual is None or residual.flags.c_contiguous)


class PackedConv2d:
    """Weights re-laid out flat as ``nfull`` blocks [kh, kw*cin, NR] of 64 output channels, then, when
    the channel count leaves 1-48 over, one narrow block [kh, kw*cin, rw] (rw 32 or 48,
    ``narrow.py``); zero-padded. Bias padded to whole 64-channel blocks."""

    def __init__(self, kernel, bias):
        kernel = np.asarray(kernel, np.float32)
        kh, kw, cin, cout = kernel.shape
        nfull, rest = divmod(cout, NR)
        rw = 0 if rest == 0 else 32 if rest <= 32 else 48
        if rest > 48:                # 49-63 channels left: a full block does as well
            nfull, rw = nfull + 1, 0
        kk = kw * cin
        k2 = kernel.reshape(kh, kk, cout)
        wflat = aligned_empty(nfull * kh * kk * NR + kh * kk * rw)
        blocks = [wflat[:nfull * kh * kk * NR].reshape(nfull, kh, kk, NR)[j] for j in range(nfull)]
        if rw:
            blocks.append(wflat[nfull * kh * kk * NR:].reshape(kh, kk, rw))
        for j, block in enumerate(blocks):      # a block at a time (one transposing copy was ~6x slower)
            c0 = j * NR
            width = min(block.shape[-1], cout - c0)
            block[:, :, :width] = k2[:, :, c0:c0 + width]
            block[:, :, width:] = 0.0
        self.weights, self.nfull, self.rw = wflat, nfull, rw
        self.panel_bytes = kh * kk * NR * 4          # one full block's weights
        self.bias = aligned_zeros((nfull + 1) * NR)
        if bias is not None:
            self.bias[:cout] = np.asarray(bias, np.float32)
        self.kernel_shape = (kh, kw, cin, cout)
        tiles = "+".join((["6x64"] if nfull else []) + ([f"{NARROW_MR[rw]}x{rw}"] if rw else []))
        self.direct_variant = f"pointwise-{tiles}" if kh == kw == 1 else f"direct{kh}x{kw}-{tiles}"
        self.variant = self.direct_variant
        # Winograd weights are made on the first call that picks Winograd (stride and map size are
        # only known then): a 7x7-map or stride-2 3x3 layer never pays their 4x memory
        self.wino_ok = kh == kw == 3 and min(cin, cout) >= WINO_MIN_CHANNELS
        self.wino_weights = None
        self._kernel = kernel if self.wino_ok else None

    def padded_input(self, x, pad):
        """x copied into a zero-bordered buffer (N, H+t+b, W+l+r, C) of the caller's workspace (borders
        zeroed once, shared by the layers of that shape and padding); x itself if no padding."""
        t, b, l, r = pad
        if t == b == l == r == 0:
            return x
        n, h, w, c = x.shape
        xp = current_workspace().get(("conv.pad", x.shape, pad), lambda: aligned_zeros((n, h + t + b, w + l + r, c)))
        if x.flags.c_contiguous:     # on the thread pool (a NumPy slice assignment runs on one thread)
            zero_pad(x, xp, pad)
        else:
            xp[:, t:t + x.shape[1], l:l + x.shape[2], :] = x
        return xp


def pack_conv2d(kernel, bias):
    return PackedConv2d(kernel, bias)


def conv2d(x, packed, out, stride, pad, act=None, residual=None, out_c0=0):
    threads = numba.get_num_threads()
    plans = current_workspace().plans
    held = plans.get(id(packed))          # (packed, plan): the packed object is held, so its id stays its own
    plan = held[1] if held is not None else None
    key = (x.shape, out.shape, tuple(stride), tuple(pad), act, out_c0, threads, STREAM_BYTES)
    if plan is not None and plan.matches(x, out, residual, key):
        if plan.padding is not None:
            packed.padded_input(x, plan.padding)
        packed.variant = plan.variant
        plan.run(*plan.args)
        return
    kh, kw, cin, cout = packed.kernel_shape
    sh, sw = int(stride[0]), int(stride[1])
    pad = tuple(int(p) for p in pad)
    n, h, w, _ = x.shape
    oh = conv_output_size(h, kh, sh, pad[0], pad[1])
    ow = conv_output_size(w, kw, sw, pad[2], pad[3])
    if use_winograd(packed, (sh, sw), oh, ow, n * oh * ow):
        packed.variant = "winograd4x4-6x64"
        conv2d_winograd(x, packed, out, pad, act, residual, out_c0, threads)
        return
    packed.variant = packed.direct_variant
    xp = packed.padded_input(x, pad)
    hp, wp = xp.shape[1], xp.shape[2]
    pixels = n * oh * ow
    # kernel rows per pass: one at a time when a channel block's weights overflow L2, so each row's
    # panel is reused by all tiles of a work item from L2 (partial sums go through ``out``)
    rows_per_pass = 1 if kh > 1 and packed.panel_bytes > ROW_PASS_BYTES else kh
    out2 = out.reshape(pixels, out.shape[-1])
    stream = int(rows_per_pass == kh and streams_output(out2, pixels * cout, out_c0, act))
    # passed as a plain tuple: Numba types a named-tuple argument on a slower path (~1.3 us a call);
    # the compiled driver reads it as a ConvGeom again
    geom = tuple(ConvGeom(out_hw=oh * ow, out_w=ow, stride_h=sh, stride_w=sw, image_len=hp * wp * cin,
                          row_len=wp * cin, cin=cin, kh=kh, k_len=kw * cin, pixels=pixels, cout=cout,
                          out_c0=int(out_c0), rows_per_pass=rows_per_pass, stream=stream))
    has_res = residual is not None
    res2 = residual.reshape(pixels, cout) if has_res else NO_RESIDUAL
    args = (xp.reshape(-1), packed.weights, packed.nfull, packed.rw, packed.bias, out2, res2, geom,
            epilogue_code(act), has_res)
    # a layer with few pixels but a large weight matrix (the 1x1 classifier on a 1x1 map) is bound by
    # streaming its weights: two cores stream them ~2x faster although the FLOPs are few
    small = 2 * pixels * kh * kw * cin * cout < SERIAL_FLOPS and packed.weights.nbytes < SERIAL_WEIGHT_BYTES
    full = packed.nfull > 0
    item = work_items(tile=full and pixels >= MR, narrow=packed.rw > 0, row=full and pixels < MR)
    fn, args = (conv_tiles_serial, args + (item,)) if threads == 1 or small else (conv_tiles_parallel,
                                                                                 args + (threads, item))
    if plannable(xp, out, residual):     # kept for the next call (it holds the buffers: one set a layer)
        plans[id(packed)] = (packed, ConvPlan(x, out, residual, key, None if xp is x else pad, packed.variant, fn,
                                              args))
    fn(*args)


def streams_output(out2, floats, out_c0, act=None):
    """Whether the 6x64 tiles store this output non-temporally: when it is large enough to leave
    the caches anyway, every full block's row start is 64-byte aligned (``stream16`` faults on
    anything else), and the activation is a clamp (a smooth one is applied to the stored rows)."""
    return (4 * floats >= STREAM_BYTES and out2.ctypes.data % 64 == 0 and out2.shape[1] % 16 == 0
            and int(out_c0) % 16 == 0 and act in CLAMP_ACTIVATIONS)


def use_winograd(packed, stride, oh, ow, pixels):
    """Winograd for 3x3 stride-1 layers with >= 32 channels on maps big enough that the 4x larger
    transformed weights are reused by enough tiles (``WINO_MIN_TILES``)."""
    if not packed.wino_ok or tuple(stride) != (1, 1):
        return False
    n_tiles = (pixels // (oh * ow)) * -(-oh // wino.TILE) * -(-ow // wino.TILE)
    return n_tiles >= WINO_MIN_TILES


def conv2d_winograd(x, packed, out, pad, act, residual, out_c0, threads):
    n, h, w, cin = x.shape
    cout = packed.kernel_shape[3]
    t, b, l, r = pad
    oh = h + t + b - 2
    ow = w + l + r - 2
    th = -(-oh // wino.TILE)
    tw = -(-ow // wino.TILE)
    # pad the bottom/right further so the last tile row/column reads zeros, not past the buffer
    xp = packed.padded_input(x, (t, th * wino.TILE + 2 - h - t, l, tw * wino.TILE + 2 - w - l))
    n_tiles = n * th * tw
    if packed.wino_weights is None:
        packed.wino_weights = wino.transform_weights(packed._kernel)
    tb, ng, n_mb = wino.plan_blocks(n_tiles, packed.wino_weights.shape[0], threads)
    ws = current_workspace()          # per-thread buffers shared by the layers of one executor (one at a time)
    scratch = ws.get(("winograd", tb, cin), lambda: wino.WinogradScratch(numba.config.NUMBA_NUM_THREADS, tb, cin))
    # passed as a plain tuple: Numba types a named-tuple argument on a slower path (~1.3 us a call);
    # the compiled driver reads it as a WinogradGeom again
    geom = tuple(WinogradGeom(tiles_h=th, tiles_w=tw, oh=oh, ow=ow, cout=cout, out_c0=int(out_c0), tile_block=tb,
                              groups=ng, n_tiles=n_tiles, n_blocks=n_mb))
    vall = _NO_VALL
    if ng > 1:
        vall = ws.get(("winograd.all", n_tiles + tb, cin), lambda: aligned_zeros((wino.POINTS, n_tiles + tb, cin)))
    has_res = residual is not None
    args = (xp, packed.wino_weights, packed.bias, out, residual if has_res else _NO_RESIDUAL4, geom,
            epilogue_code(act), has_res, scratch.v, scratch.m, scratch.tmp, scratch.s, vall)
    items = wino.driver_items(*args[:5], *args[8:])
    wino.winograd_conv(*args, items)
