"""Seeded (untrained) weights for any graph: deterministic, with non-trivial BatchNorm statistics (so a
wrong fold cannot hide behind an identity BN) and kernels scaled so activations stay O(1) through
deep residual networks. ``nets.load(name)`` without a weights file uses them; tests and benchmarks
too."""

from __future__ import annotations

import math
import zlib

import numpy as np

from nets.errors import WeightsError
from nets.graph import ops
from nets.graph.ir import Graph


def seeded_array(layer_name: str, weight_name: str, shape, seed: int = 0, fan_in: int | None = None):
    """One deterministic array, drawn from a generator keyed by (seed, layer, weight name), so a layer's
    values depend neither on the other layers nor on the order they are made in.

    Kernels: He uniform, U(-a, a) with a = sqrt(6 / fan_in), so std sqrt(2 / fan_in) (pointwise
    halves of separables: a = sqrt(3 / fan_in)), which keeps the second moment of ReLU activations
    steady with depth. Biases: N(0, 0.05).
    BatchNorm: gamma ~ U(0.5, 1.5), beta ~ N(0, 0.1), moving_mean ~ N(0, 0.1),
    moving_variance ~ U(0.5, 1.5), so a wrong fold cannot hide behind an identity BN.
    """
    shape = tuple(int(d) for d in shape)
    key = [int(seed) & 0xFFFFFFFF, zlib.crc32(layer_name.encode()), zlib.crc32(weight_name.encode())]
    rng = np.random.default_rng(key)
    # drawn in float32 directly: VGG16's 138 M weights took 5.3 s as float64 normal draws cast to
    # float32 (most of a warm `nets run vgg16`), 1.5 s as float32 normal draws (11 ns a value), ~0.4 s
    # as float32 uniform ones (2.6 ns): kernels are uniform for that
    if weight_name in ("gamma", "moving_variance"):
        a = rng.random(shape, dtype=np.float32)
        a += np.float32(0.5)
        return a
    if weight_name in ("beta", "moving_mean"):
        std = 0.1
    elif weight_name == "bias":
        std = 0.05
    elif weight_name.endswith("kernel"):
        if fan_in is None:
            fan_in = kernel_fan_in(weight_name, shape)
        # A pointwise kernel follows its depthwise half with no activation between: gain 1, not 2.
        gain = 1.0 if weight_name == "pointwise_kernel" else 2.0
        limit = np.sqrt(3.0 * gain / max(fan_in, 1))          # U(-limit, limit): variance gain / fan_in
        a = rng.random(shape, dtype=np.float32)
        a -= np.float32(0.5)
        a *= np.float32(2.0 * limit)
        return a
    else:
        raise WeightsError(f"layer {layer_name!r}: no seeding rule for weight {weight_name!r}")
    a = rng.standard_normal(shape, dtype=np.float32)
    a *= np.float32(std)
    return a


def kernel_fan_in(weight_name: str, shape) -> int:
    """Inputs feeding one output: kh*kw*cin (conv HWIO), kh*kw (depthwise), cin (dense (in, out))."""
    if weight_name == "depthwise_kernel":
        return int(shape[0]) * int(shape[1])
    return int(np.prod(shape[:-1]))


def _relu_moments(mu: float, m: float) -> tuple[float, float]:
    """Mean and second moment of relu(z) for z ~ N(mu, m - mu^2)."""
    sd = math.sqrt(max(m - mu * mu, 1e-12))
    t = mu / sd
    cdf, pdf = 0.5 * (1 + math.erf(t / math.sqrt(2))), math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    return mu * cdf + sd * pdf, (mu * mu + sd * sd) * cdf + mu * sd * pdf


def _kernel_scales(graph: Graph, weights: dict, input_rms: float = 1.0) -> dict:
    """Per-node factor for the He kernels so every conv/dense sees inputs of unit second moment.

    He scaling alone keeps a plain ReLU chain steady, but each residual Add sums two branches and a
    BN with random statistics multiplies the second moment by E[gamma^2 / var] ~ 1.2, so through
    ResNet50 or Xception activations would grow by 1e3..1e7. Propagating estimates of each value's
    mean and second moment (channel-averaged, Gaussian approximation) through the graph with each op's
    ``moments`` rule (nets.graph.ops; ops without one pass their input's on) and dividing each kernel
    by its input's RMS (an analytic LSUV) keeps them O(1).
    """
    mom = {v: (0.0, float(input_rms) ** 2) for v in graph.inputs}
    scales = {}
    for node in graph.nodes:
        if node.op == "input":
            continue
        ins = [mom.get(v, (0.0, 1.0)) for v in node.inputs]
        mu, m = ins[0]
        rule = ops.get(node.op, node.name).moments
        if rule is not None:
            r = rule(node, ins, weights.get(node.name, node.weights), [graph.shapes[v] for v in node.inputs])
            mu, m = r.mean, r.second
            if r.scale is not None:
                scales[node.name] = r.scale
        if node.attrs.get("act") in ("relu", "relu6"):
            mu, m = _relu_moments(mu, m)
        mom[node.output] = (mu, max(m, mu * mu))
    return scales


def seeded_weights(graph: Graph, seed: int = 0, input_rms: float = 1.0) -> Graph:
    """Deterministic untrained weights for every weighted node; marks ``graph.weights_source``.

    Arrays come from ``seeded_array``; kernels are then divided by the estimated RMS of their input
    (see ``_kernel_scales``) so activations stay O(1) through deep residual networks. ``input_rms``
    is the expected RMS of the network input (1 for 'tf' preprocessing; ~60 for 'caffe', which a
    BN-free net such as VGG would otherwise pass on to its logits).
    """
    weights = {}
    for node in graph.weighted_nodes():
        if any(d < 0 for shape in node.weight_shapes.values() for d in shape):
            raise WeightsError(f"layer {node.name!r}: weight shapes {node.weight_shapes} are not fully known")
        weights[node.name] = {key: seeded_array(node.name, key, shape, seed)
                              for key, shape in node.weight_shapes.items()}
    scales = _kernel_scales(graph, weights, input_rms)
    for node in graph.weighted_nodes():
        w = weights[node.name]
        for key in w:
            if key in ("kernel", "depthwise_kernel"):
                w[key] *= np.float32(scales.get(node.name, 1.0))       # in place: float32 already
        node.weights = w
    graph.weights_source = f"seeded (untrained), seed={seed}"
    return graph
