"""Numba conv2d: NHWC float32, HWIO weights, asymmetric zero padding, fused bias/residual/act.

What runs (``packed.variant``, set to what the latest call ran):
    winograd4x4-6x64    3x3 stride 1 with cin, cout >= 64 and >= 8 output tiles of 4x4 (``use_winograd``):
                        F(4x4, 3x3), 4x fewer MACs, see ``kernels/cpu/winograd.py``
    pointwise-6x64      1x1 kernels (any stride): a GEMM [pixels, cin] x [cin, cout]
    direct{kh}x{kw}-6x64 every other kernel size (3x3, 5x5, 7x7 stem, 1x7/7x1, ...)
The last two are the same micro-kernel (``kernels/cpu/conv_tile.py``): a tile of 6 output pixels x 64
output channels held in 24 zmm registers, summed over kernel rows of contiguous ``kw * cin``
input runs. Padding is done by copying the input once per call into a zero-bordered scratch
buffer cached on the packed object (borders are zeroed once, only the interior is rewritten), so
the hot loop is branch-free. Layers under ``SERIAL_FLOPS`` run on the calling thread unless their
packed weights reach ``SERIAL_WEIGHT_BYTES`` (then streaming the weights is the cost, and two cores
stream them faster: MobileNet's 1x1 1024>1000 classifier 54 -> 31 us in isolation, 148 -> 78 us
in the network). Outputs of fewer than 6 pixels use a one-pixel tile (6x fewer FMAs for the same
weights). A channel block whose weights pass ``ROW_PASS_BYTES`` (ResNet's 7x7 3x3 512>512: 1.2 MB)
runs one kernel row per pass over the work item's tiles, partial sums kept in ``out``, so each row's
panel stays in L2. Tile blocks are equal to within one tile so both threads get the same work.
Unpadded 1x1 stride-1 layers find each pixel's inputs at ``m * cin`` instead of
dividing ``m`` by the map size: a tile's 12 integer divisions cost as much as its k loop when
cin is 32-64 (MobileNet pw1 32>64 at 2 threads 0.174 -> 0.147 ms, the other pointwise shapes 5-8%).
Per-tile overhead outside the k loop is still ~560 cycles (a fit of cycles per tile against K on
1x1 layers at 1 thread: 560 + 11.2 K), which is what keeps K = 27 stems (MobileNet conv1: 1100 cycles per
tile, 40 GFLOP/s) far from peak.

``conv_tiles_*.inspect_asm()`` (with NUMBA_CACHE_DIR pointing at an empty folder: cached code
cannot be inspected) shows the k loop as 24 ``vfmadd231ps`` on zmm registers, 4 weight loads and 6
broadcasts, with no accumulator stores. Cold compile of both drivers ~5.5 s, 0.25 s from the cache.

Bound: compute (FMA throughput): per k, 4 weight-vector loads + 6 broadcasts feed 24 FMAs.
FLOPs = 2 * N * OH * OW * kh * kw * cin * cout; bytes ~ input + weights + output once each
(plus re-reads of the input per 64-channel block, mostly from L2/L3).

Measured with ``python bench/bench_conv.py`` (AMD EPYC Zen 5 KVM guest, 2 cores, Numba 0.68, batch 1,
1 thread, ReLU epilogue; clock ~4.0 GHz from an ALU chain, peak 64 FLOP/cycle = ~255 GFLOP/s/core;
the machine was shared, load average 3-5, so these are lower bounds):
    3x3 s1, cin >= 64 (ResNet50 c2-c5, VGG 14-112 px)   212-245 GFLOP/s   84-96% of peak
    1x1 s1/s2, cin >= 128                               205-243           81-96%
    1x1 with cin = 64 (K = 64: epilogue-heavy)          190               75%
    7x7/2 stem cin=3 (ResNet conv1)                      182-196           72-77%
    5x5, 1x7, 7x1, 3x3/2 (InceptionV3 mixed blocks)     225-234           88-92%
    3x3 with cin=3 (VGG block1 conv1, K = 27)            100-120           40-47%
    cout = 32 (InceptionV3 stem): half of each 64-lane tile is padding    50-115 effective
    1x1 on a 1x1 map (logits, M = 1): a GEMV, weight-bandwidth bound      37
The numbers above are the direct kernel's; the 3x3 stride-1 layers with >= 64 channels now run
Winograd at 0.43-0.87x of these times (table in ``kernels/cpu/winograd.py``).
Sum over the 15 distinct ResNet50 conv shapes (each once): 9.9 ms at 1 thread (torch/oneDNN 18.8 ms).
With 2 threads in a quiet moment the large shapes reach 385-480 GFLOP/s (e.g. 1x1 2048>512 at 7x7:
388; 3x3 512>512 at 7x7: 400); under load the static 2-way split stalls on the scheduler quantum.
"""

import numba
import numpy as np

from kernels import aligned_zeros, conv_output_size
from kernels.cpu import winograd as wino
from kernels.cpu.conv_drivers import conv_tiles_parallel, conv_tiles_serial
from kernels.cpu.conv_narrow import NARROW_MR
from kernels.cpu.conv_tile import ACT_NONE, ACT_RELU, ACT_RELU6, NR

SERIAL_FLOPS = 4_000_000      # below this the fork/join of the thread pool costs more than it saves
ROW_PASS_BYTES = 768 << 10     # a channel block's weights above this run kernel row by row (L2 is 1 MB)
SERIAL_WEIGHT_BYTES = 1 << 20  # ... unless the packed weights are at least this big (streamed from L3/DRAM)
_ACT_CODES = {None: ACT_NONE, "relu": ACT_RELU, "relu6": ACT_RELU6}
_NO_RESIDUAL = np.zeros((1, 1), np.float32)
_NO_RESIDUAL4 = np.zeros((1, 1, 1, 1), np.float32)
_NO_VALL = np.zeros((1, 1, 1), np.float32)
_WINO_SCRATCH = {}            # (tiles per block, cin) -> per-thread buffers shared by all layers (run one by one)
WINO_MIN_TILES = 8            # 7x7 maps (4 tiles, 8x8 computed for 7x7) with 512 channels: 1.25x slower
WINO_MIN_CHANNELS = 64        # cin and cout below this: the transforms cost more than the GEMM saves


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
        xp[:, t:t + x.shape[1], l:l + x.shape[2], :] = x
        return xp


def pack_conv2d(kernel, bias):
    return PackedConv2d(kernel, bias)


def conv2d(x, packed, out, stride, pad, act=None, residual=None, out_c0=0):
    kh, kw, cin, cout = packed.kernel_shape
    sh, sw = int(stride[0]), int(stride[1])
    pad = tuple(int(p) for p in pad)
    n, h, w, _ = x.shape
    oh = conv_output_size(h, kh, sh, pad[0], pad[1])
    ow = conv_output_size(w, kw, sw, pad[2], pad[3])
    threads = numba.get_num_threads()
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
    geom = (oh * ow, ow, sh, sw, hp * wp * cin, wp * cin, cin, kh, kw * cin, m_total, cout, int(out_c0), rb)
    out2 = out.reshape(m_total, out.shape[-1])
    has_res = residual is not None
    res2 = residual.reshape(m_total, cout) if has_res else _NO_RESIDUAL
    args = (xp.reshape(-1), packed.weights, packed.nfull, packed.rw, packed.bias, out2, res2, geom,
            _ACT_CODES[act], has_res)
    # a layer with few pixels but a large weight matrix (the 1x1 classifier on a 1x1 map) is bound by
    # streaming its weights: two cores stream them ~2x faster although the FLOPs are few
    small = 2 * m_total * kh * kw * cin * cout < SERIAL_FLOPS and packed.weights.nbytes < SERIAL_WEIGHT_BYTES
    if threads == 1 or small:
        conv_tiles_serial(*args)
    else:
        conv_tiles_parallel(*args, threads)


def use_winograd(packed, stride, oh, ow, m_total):
    """Winograd for 3x3 stride-1 layers with >= 64 channels on maps big enough that the 4x larger
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
