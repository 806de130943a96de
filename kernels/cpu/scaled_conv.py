"""scaled_conv2d: a 1x1 convolution of a map scaled per sample and input channel, conv1x1(x * s).

Squeeze-excite (EfficientNet, MobileNetV3) ends with ``mul(x, s)``, s one gate per sample and channel,
and the map it makes is read by one 1x1 projection. Unfused, the mul reads the map and writes it
again (2 x 4 bytes an element: 3.2 MB at EfficientNet-B0's 112x112x32) before the projection reads
it. But conv1x1(x * s) = x @ (diag(s) W): the gate can scale the weights' input rows instead, cin x
cout multiplies per sample, and the projection reads x itself. So per sample: the packed weights
(``conv.dispatch.PackedConv2d``: blocks [cin, 64] and a narrow [cin, rw]) are copied with row k
times s[k] into a twin in the caller's workspace, and the ordinary conv2d runs with the twin.

That pays while the weights are smaller than the map: ``cout`` (padded to whole blocks) at most the
sample's pixel count (``WEIGHTS_PER_PIXEL``). On maps with fewer pixels than output channels (7x7
with 192-320 channels) the map is scaled into a workspace buffer instead and the conv reads that
(the unfused traffic, one kernel).

Bound: the conv's (``conv/__init__.py``); scaling the weights is memory-bound (2 x 4 bytes per
weight, from L2). Batch 1 reuses the conv's saved plan; larger batches run one conv call per sample.
"""

import copy

import numpy as np
from numba import njit

from kernels import aligned_empty, current_workspace
from kernels.cpu.common import JIT
from kernels.cpu.conv import conv2d
from kernels.cpu.conv.tile import NR
from kernels.cpu.elementwise import mul
from kernels.cpu.stack import raw_view

WEIGHTS_PER_PIXEL = 1       # scale the weights while padded cout <= this * pixels per sample


@njit(**JIT)
def _scale_weights(src, dst, s, nfull, rw, cin):
    """dst = src with input row k of every block times s[k] (1x1 layout: full blocks [cin, NR], then
    the narrow one [cin, rw])."""
    for b in range(nfull):
        for k in range(cin):
            sk = s[k]
            w, d = raw_view(src, (b * cin + k) * NR), raw_view(dst, (b * cin + k) * NR)
            for c in range(NR):
                d[c] = w[c] * sk
    base = nfull * cin * NR
    for k in range(cin):
        sk = s[k]
        w, d = raw_view(src, base + k * rw), raw_view(dst, base + k * rw)
        for c in range(rw):
            d[c] = w[c] * sk


def _twin(packed):
    """A shallow copy of the PackedConv2d (its methods and plans-to-be included) with weights of its
    own (the scaled ones), made once per workspace and layer."""
    twin = copy.copy(packed)
    twin.weights = aligned_empty(packed.weights.shape)
    twin.source = packed
    return twin


def scaled_weights_pay(packed, pixels) -> bool:
    """Whether scaling the weights (not the map) is the cheaper path for a sample of ``pixels`` pixels."""
    return packed.nfull * NR + packed.rw <= WEIGHTS_PER_PIXEL * pixels


def scaled_conv2d(x, scale, packed, out, act=None, residual=None, out_c0=0):
    """Write act(conv1x1(x * scale) + bias [+ residual]) into channels [out_c0, out_c0 + cout) of out;
    scale (N, cin), packed by ``pack_conv2d`` from a (1, 1, cin, cout) kernel."""
    kh, kw, cin, _ = packed.kernel_shape
    if (kh, kw) != (1, 1):
        raise ValueError(f"scaled_conv2d: a 1x1 kernel is needed, got {kh}x{kw}")
    n, h, w, _ = x.shape
    s = np.ascontiguousarray(scale, np.float32).reshape(n, cin)
    ws = current_workspace()
    if not scaled_weights_pay(packed, h * w):
        xs = ws.get(("scaled_conv.map", x.shape), lambda: aligned_empty(x.shape))
        mul(x, s, xs)
        conv2d(xs, packed, out, (1, 1), (0, 0, 0, 0), act, residual, out_c0)
        packed.variant = "scaled-map+" + packed.variant
        return
    key = ("scaled_conv.twin", id(packed))
    twin = ws.get(key, lambda: _twin(packed))
    if twin.source is not packed:           # (an id reused after the packed object it keyed was dropped)
        twin = ws.buffers[key] = _twin(packed)
    for i in range(n):
        _scale_weights(packed.weights, twin.weights, s[i], packed.nfull, packed.rw, cin)
        if n == 1:      # whole buffers: the conv's saved plan is reused from call to call
            conv2d(x, twin, out, (1, 1), (0, 0, 0, 0), act, residual, out_c0)
        else:
            conv2d(x[i:i + 1], twin, out[i:i + 1], (1, 1), (0, 0, 0, 0), act,
                   None if residual is None else residual[i:i + 1], out_c0)
    packed.variant = "scaled-weights+" + twin.variant
