"""Numba conv2d: NHWC float32, HWIO weights, asymmetric zero padding, fused bias/residual/act.

What runs (``packed.variant``, set to what the latest call ran):
    winograd4x4-6x64    3x3 stride 1 with cin, cout >= 32 and >= 8 output tiles of 4x4 (``use_winograd``):
                        F(4x4, 3x3), 4x fewer MACs, see ``kernels/cpu/winograd.py``
    pointwise-<tiles>   1x1 kernels (any stride): a GEMM [pixels, cin] x [cin, cout]
    direct{kh}x{kw}-<tiles>  every other kernel size (3x3, 5x5, 7x7 stem, 1x7/7x1, ...)
``<tiles>`` names the register tiles: ``6x64`` for every full block of 64 output channels, and
``12x32`` / ``8x48`` for a last block of 1-32 / 33-48 channels (``kernels/cpu/conv_narrow.py``),
e.g. ``pointwise-6x64+12x32`` for 96 channels, ``direct3x3-12x32`` for InceptionV3's 32-channel stem.
The 6x64 tile (``kernels/cpu/conv_tile.py``) holds 6 output pixels x 64 output channels in 24 zmm
registers, summed over kernel rows of contiguous ``kw * cin`` input runs; the drivers that hand
(tile block, channel block) work items to threads are in ``kernels/cpu/conv_drivers.py``. Padding is
done by copying the input once per call into a zero-bordered scratch buffer cached on the packed
object (borders are zeroed once, only the interior is rewritten), so the hot loop is branch-free.
Layers under ``SERIAL_FLOPS`` run on the calling thread unless their packed weights reach
``SERIAL_WEIGHT_BYTES`` (then streaming the weights is the cost, and two cores stream them faster:
MobileNet's 1x1 1024>1000 classifier 54 -> 31 us in isolation, 148 -> 78 us in the network). Outputs
of fewer than 6 pixels use a one-pixel tile (6x fewer FMAs for the same weights). A channel block
whose weights pass ``ROW_PASS_BYTES`` (ResNet's 7x7 3x3 512>512: 1.2 MB) runs one kernel row per pass
over the work item's tiles, partial sums kept in ``out``, so each row's panel stays in L2. Tile
blocks are equal to within one tile so both threads get the same work. While a work item's tiles
compute on one weight panel they prefetch the next one (in a network the weights come from DRAM:
ResNet50's stage-5 layers ran at 80% of their warm-cache speed without it). Unpadded 1x1 stride-1
layers find each pixel's inputs at ``m * cin`` instead of dividing ``m`` by the map size.
Per-tile overhead outside the k loop is ~170-200 cycles (a fit of cycles per tile against K on 1x1
layers at 1 thread; it was ~630 while the tile sliced its rows out of reference-counted arrays, see
``conv_tile.py``), which is what keeps K = 27 stems (3x3 on RGB) near 50% of peak.

``_work_item.inspect_asm()`` (with NUMBA_CACHE_DIR pointing at an empty folder: cached code cannot be
inspected) shows the k loop as 24 ``vfmadd231ps`` on zmm registers, 4 weight loads, 6 broadcasts and
one ``prefetcht0``, with no accumulator stores.

Bound: compute (FMA throughput): per k, 4 weight-vector loads + 6 broadcasts feed 24 FMAs.
FLOPs = 2 * N * OH * OW * kh * kw * cin * cout; bytes ~ input + weights + output once each
(plus re-reads of the input per 64-channel block, mostly from L2/L3).

Measured with ``python bench/bench_conv.py --threads 1 --no-torch`` (AMD EPYC Zen 5 KVM guest, Numba
0.68, batch 1, 1 thread, ReLU epilogue, quiet machine; clock ~4.3 GHz from an ALU chain, peak 64
FLOP/cycle = ~275 GFLOP/s/core):
    3x3 s1, cin >= 64, direct (ResNet50 c5)            245 GFLOP/s   89% of peak
    1x1 s1/s2, cin >= 128                               234-268       85-97%
    1x1 with cin = 64 (K = 64)                          225-229       82-83%
    1x1 with cin = 32 (MobileNet pw1)                   194           71%
    7x7/2 stem cin=3 (ResNet conv1)                      224           82%
    5x5, 1x7, 7x1, 3x3/2 (InceptionV3 mixed blocks)     254-275       92-100%
    3x3 with cin=3 (K = 27): VGG block1 3>64 / stems 3>32 on the 12x32 tile   154 / 126-130   56% / 46%
    3x3 32>32 (InceptionV3 stem, 12x32 tile)            195           71%
    1x1 on a 1x1 map (logits, M = 1): a GEMV, weight-bandwidth bound      45
The 3x3 stride-1 layers with >= 32 channels run Winograd instead (effective 400-790 GFLOP/s;
table in ``kernels/cpu/winograd.py``). Sum over the 15 distinct ResNet50 conv shapes (each once):
7.48 ms at 1 thread (9.9 before the raw views, prefetch and alignment; torch/oneDNN 18.8 ms).
"""

import numba
import numpy as np

from kernels import aligned_zeros, conv_output_size
from kernels.cpu import winograd as wino
from kernels.cpu.conv_drivers import conv_tiles_parallel, conv_tiles_serial
from kernels.cpu.conv_narrow import NARROW_MR
from kernels.cpu.conv_tile import ACT_NONE, ACT_RELU, ACT_RELU6, NR
from kernels.cpu.elementwise import zero_pad

SERIAL_FLOPS = 4_000_000      # below this the fork/join of the thread pool costs more than it saves
ROW_PASS_BYTES = 768 << 10     # a channel block's weights above this run kernel row by row (L2 is 1 MB)
STREAM_BYTES = 8 << 20        # outputs from this size on are stored non-temporally (``streams_output``)
SERIAL_WEIGHT_BYTES = 1 << 20  # ... unless the packed weights are at least this big (streamed from L3/DRAM)
_ACT_CODES = {None: ACT_NONE, "relu": ACT_RELU, "relu6": ACT_RELU6}
_NO_RESIDUAL = np.zeros((1, 1), np.float32)
_NO_RESIDUAL4 = np.zeros((1, 1, 1, 1), np.float32)
_NO_VALL = np.zeros((1, 1, 1), np.float32)
_WINO_SCRATCH = {}            # (tiles per block, cin) -> per-thread buffers shared by all layers (run one by one)
WINO_MIN_TILES = 8            # 7x7 maps (4 tiles, 8x8 computed for 7x7) with 512 channels: 1.25x slower
WINO_MIN_CHANNELS = 32        # cin and cout below this: the transforms cost more than the GEMM saves
                              # (32 > 64 at 147x147, InceptionV3/Xception: 3.27 -> 2.04 ms at 1 thread)


class PackedConv2d:
    """Weights re-laid out flat as ``nfull`` blocks [kh, kw*cin, NR] of 64 output channels, then, when
    the channel count leaves 1-48 over, one narrow block [kh, kw*cin, rw] (rw 32 or 48,
    ``conv_narrow.py``); zero-padded. Bias padded to whole 64-channel blocks."""

    def __init__(self, kernel, bias):
        kernel = np.asarray(kernel, np.float32)
        kh, kw, cin, cout = kernel.shape
        nfull, rest = divmod(cout, NR)
        rw = 0 if rest == 0 else 32 if rest <= 32 else 48
        if rest > 48:                # 49-63 channels left: a full block does as well
            nfull, rw = nfull + 1, 0
        kk = kw * cin
        k2 = kernel.reshape(kh, kk, cout)
        full = np.zeros((kh, kk, nfull * NR), np.float32)
        full[:, :, :min(cout, nfull * NR)] = k2[:, :, :nfull * NR]
        narrow = np.zeros((kh, kk, rw), np.float32)
        narrow[:, :, :cout - nfull * NR] = k2[:, :, nfull * NR:]
        wflat = aligned_zeros(nfull * kh * kk * NR + kh * kk * rw)
        wflat[:nfull * kh * kk * NR] = full.reshape(kh, kk, nfull, NR).transpose(2, 0, 1, 3).reshape(-1)
        wflat[nfull * kh * kk * NR:] = narrow.reshape(-1)
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
        self._scratch = {}
        self._plan = None      # the previous direct call's buffers, options and kernel arguments

    def padded_input(self, x, pad):
        """x copied into a cached zero-bordered buffer (N, H+t+b, W+l+r, C); x itself if no padding."""
        t, b, l, r = pad
        if t == b == l == r == 0:
            return x
        key = ("pad", x.shape, pad)
        xp = self._scratch.get(key)
        if xp is None:
            n, h, w, c = x.shape
            xp = aligned_zeros((n, h + t + b, w + l + r, c))
            self._scratch[key] = xp
        if x.flags.c_contiguous:     # on the thread pool (a NumPy slice assignment runs on one thread)
            zero_pad(x, xp, pad)
        else:
            xp[:, t:t + x.shape[1], l:l + x.shape[2], :] = x
        return xp


def pack_conv2d(kernel, bias):
    return PackedConv2d(kernel, bias)


def conv2d(x, packed, out, stride, pad, act=None, residual=None, out_c0=0):
    threads = numba.get_num_threads()
    plan = packed._plan
    key = (x.shape, out.shape, tuple(stride), tuple(pad), act, out_c0, threads, STREAM_BYTES)
    if plan_hit(plan, x, out, residual, key):
        # the same buffers and options as the previous call (a network's step, run after run): the
        # kernel arguments worked out then (~2.4 us of Python per call on MobileNet's layers)
        if plan[4] is not None:
            packed.padded_input(x, plan[4])
        packed.variant = packed.direct_variant
        plan[5](*plan[6])
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
    m_total = n * oh * ow
    # kernel rows per pass: one at a time when a channel block's weights overflow L2, so each row's
    # panel is reused by all tiles of a work item from L2 (partial sums go through ``out``)
    rb = 1 if kh > 1 and packed.panel_bytes > ROW_PASS_BYTES else kh
    out2 = out.reshape(m_total, out.shape[-1])
    nt = int(rb == kh and streams_output(out2, m_total * cout, out_c0))
    geom = (oh * ow, ow, sh, sw, hp * wp * cin, wp * cin, cin, kh, kw * cin, m_total, cout, int(out_c0), rb, nt)
    has_res = residual is not None
    res2 = residual.reshape(m_total, cout) if has_res else _NO_RESIDUAL
    args = (xp.reshape(-1), packed.weights, packed.nfull, packed.rw, packed.bias, out2, res2, geom,
            _ACT_CODES[act], has_res)
    # a layer with few pixels but a large weight matrix (the 1x1 classifier on a 1x1 map) is bound by
    # streaming its weights: two cores stream them ~2x faster although the FLOPs are few
    small = 2 * m_total * kh * kw * cin * cout < SERIAL_FLOPS and packed.weights.nbytes < SERIAL_WEIGHT_BYTES
    fn, args = (conv_tiles_serial, args) if threads == 1 or small else (conv_tiles_parallel, args + (threads,))
    if plannable(xp, out, residual):     # kept for the next call (it holds the buffers: one set a layer)
        packed._plan = (x, out, residual, key, None if xp is x else pad, fn, args)
    fn(*args)


def plan_hit(plan, x, out, residual, key):
    """Whether ``plan``, saved by a kernel's previous call, was made for these very buffers and
    options (``key``), so that its kernel arguments can be reused."""
    return plan is not None and plan[0] is x and plan[1] is out and plan[2] is residual and plan[3] == key


def plannable(x, out, residual):
    """Whether kernel arguments made from these arrays can be reused: only if they are views of
    them, not copies (a reshape of a non-contiguous array copies; reused, it holds stale data)."""
    return x.flags.c_contiguous and out.flags.c_contiguous and (residual is None or residual.flags.c_contiguous)


def streams_output(out2, floats, out_c0):
    """Whether the 6x64 tiles store this output non-temporally: when it is large enough to leave
    the caches anyway, and every full block's row start is 64-byte aligned (``stream16`` faults on
    anything else)."""
    return (4 * floats >= STREAM_BYTES and out2.ctypes.data % 64 == 0 and out2.shape[1] % 16 == 0
            and int(out_c0) % 16 == 0)


def use_winograd(packed, stride, oh, ow, m_total):
    """Winograd for 3x3 stride-1 layers with >= 32 channels on maps big enough that the 4x larger
    transformed weights are reused by enough tiles (measured: see the module docstring)."""
    if not packed.wino_ok or tuple(stride) != (1, 1):
        return False
    n_tiles = (m_total // (oh * ow)) * -(-oh // wino.TILE) * -(-ow // wino.TILE)
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
    key = (tb, cin)
    scratch = _WINO_SCRATCH.get(key)
    if scratch is None:
        scratch = _WINO_SCRATCH[key] = wino.WinogradScratch(numba.config.NUMBA_NUM_THREADS, tb, cin)
    geom = (th, tw, oh, ow, cout, int(out_c0), tb, ng, n_tiles, n_mb)
    vall = _NO_VALL
    if ng > 1:
        vall = _WINO_SCRATCH.get(("all", n_tiles + tb, cin))
        if vall is None:
            vall = _WINO_SCRATCH[("all", n_tiles + tb, cin)] = aligned_zeros((wino.POINTS, n_tiles + tb, cin))
    has_res = residual is not None
    args = (xp, packed.wino_weights, packed.bias, out, residual if has_res else _NO_RESIDUAL4, geom,
            _ACT_CODES[act], has_res, scratch.v, scratch.m, scratch.tmp, scratch.s, vall)
    wino.winograd_conv(*args)
