"""Graph passes: turn a model graph (one node per source layer, weights loaded) into the graph the
executor runs. Each pass is small and keeps a record: a node that absorbs another lists it in
``Node.fused``, so profiles still show every source layer ("fused into X").

Pipeline (``optimize``):
    lower            each op's ``lower`` hook (nets.graph.ops): drop Dropout / linear Activation,
                     Flatten -> reshape view, split SeparableConv2D into depthwise + 1x1 conv; then an
                     activation no kernel epilogue applies (softmax after dense, ...) becomes its own node
    fold_batchnorm   BN after conv / depthwise / dense folded into its weights and bias;
                     any other BN becomes a channel_affine node
    fold_zero_pad    ZeroPadding2D folded into the padding of the conv / depthwise / max pool after it
    fold_affine_into_next  a channel_affine (input Rescaling / Normalization) merged into the affine
                     after it, or folded into the unpadded conv that alone reads it
    fuse_residual    add(conv(x), y) -> conv with residual=y (the conv moves to the add's place)
    fuse_activation  ReLU / ReLU6 (EPILOGUE_ACTIVATIONS) folded into the epilogue of the conv / depthwise /
                     dense / add before it
    subsample_early  a value read only by 1x1 stride-s convs is computed at stride s by the conv that
                     makes it (and so on up the chain): ResNet's last block of each stage does a
                     quarter of its work
    split_grouped_convs  a conv with 1 < groups < channels becomes one conv per group on a channel
                     slice (channel_gather), concatenated in place
    fuse_depthwise_pointwise  a depthwise conv and the 1x1 stride-1 conv that alone reads it become one
                     depthwise_pointwise node (its output never goes through memory)
    fuse_input_activation  a ReLU / ReLU6 whose only reader is a depthwise_pointwise node is applied by
                     that node to its inputs as it loads them (Xception: the ReLU's input is also the
                     residual, so it cannot go into the epilogue before it)
    fuse_channel_scale  a per-channel mul (squeeze-excite's gate) whose only reader is a 1x1 stride-1
                     conv becomes one scaled_conv2d node (the CPU kernel scales the weights, not the map)
Concatenation without copies is planned by ``nets.runtime.planner`` (producers write into channel slices).
"""

from __future__ import annotations

import numpy as np

from kernels import EPILOGUE_ACTIVATIONS
from nets.errors import ModelError, WeightsError
from nets.graph import ops
from nets.graph.ir import Graph, Node
from nets.graph.ops.conv import split_groups


def _sole_consumer(g: Graph, value: str) -> Node | None:
    if value in g.outputs:
        return None
    cons = g.consumers(value)
    if len(cons) != 1 or cons[0].inputs.count(value) != 1:
        return None
    return cons[0]


def _epilogue(node: Node | None) -> bool:
    """Can ``node`` absorb an activation or residual into its kernel's epilogue?"""
    return node is not None and ops.get(node.op, node.name).epilogue


def split_activation(g: Graph, node: Node):
    """``node``'s activation becomes a node of its own after it (an ``activation``, or ``softmax``)."""
    act = node.attrs["act"]
    pre = node.output + ("/logits" if act == "softmax" else f"/pre_{act}")
    op, attrs = ("softmax", {}) if act == "softmax" else ("activation", {"act": act})
    g.shapes[pre] = g.shapes[node.output]
    g.nodes.insert(g.nodes.index(node) + 1, Node(f"{node.name}/{act}", op, [pre], node.output, attrs))
    node.attrs["act"] = None
    node.output = pre


def lower(g: Graph) -> Graph:
    """Each op's ``lower`` hook (ops the executor has no kernel for become ones it has), then every
    activation a kernel's epilogue does not apply (kernels.EPILOGUE_ACTIVATIONS) is split off."""
    for node in list(g.nodes):
        hook = ops.get(node.op, node.name).lower
        if hook is not None:
            hook(g, node)
    for node in list(g.nodes):
        if node.op != "activation" and node.attrs.get("act") not in EPILOGUE_ACTIVATIONS:
            split_activation(g, node)
    return g


def _bn_scale_shift(bn: Node, channels: int):
    w = bn.weights
    eps = bn.attrs["epsilon"]
    for k, arr in w.items():
        if not np.isfinite(arr).all():
            raise WeightsError(f"layer {bn.name!r}: BatchNormalization {k} holds NaN or infinite values")
    if not (w["moving_variance"].astype(np.float64) + eps > 0).all():
        raise WeightsError(f"layer {bn.name!r}: BatchNormalization moving_variance + epsilon must be > 0 "
                           f"(min variance {float(np.min(w['moving_variance'])):g}, epsilon {eps:g})")
    gamma = w["gamma"].astype(np.float64) if "gamma" in w else np.ones(channels)
    beta = w["beta"].astype(np.float64) if "beta" in w else np.zeros(channels)
    scale = gamma / np.sqrt(w["moving_variance"].astype(np.float64) + eps)
    shift = beta - w["moving_mean"].astype(np.float64) * scale
    return scale, shift


def fold_batchnorm(g: Graph) -> Graph:
    for bn in [n for n in g.nodes if n.op == "batch_norm"]:
        c = g.shapes[bn.output][-1]
        scale, shift = _bn_scale_shift(bn, c)
        prod = g.producer(bn.inputs[0])
        foldable = (prod is not None and prod.op in ("conv2d", "depthwise_conv2d", "dense")
                    and prod.attrs.get("act") is None and prod.attrs.get("residual") is None
                    and _sole_consumer(g, prod.output) is bn)
        if not foldable:
            bn.op = "channel_affine"
            bn.attrs = {"act": None}
            bn.weights = {"scale": scale.astype(np.float32), "shift": shift.astype(np.float32)}
            bn.weight_shapes = {"scale": (c,), "shift": (c,)}
            continue
        kname = "depthwise_kernel" if prod.op == "depthwise_conv2d" else "kernel"
        k = prod.weights[kname]
        bias = prod.weights.get("bias")
        bias = np.zeros(c) if bias is None else bias.astype(np.float64)
        if prod.op == "depthwise_conv2d":
            s = scale.reshape(k.shape[2], k.shape[3])         # output channel = c * mult + m
        else:
            s = scale                                         # last axis is the output channel
        # products in float64, rounded once to float32, in the ufunc's buffered chunks (a float64 copy
        # of the kernel, its product and the cast back took 0.26 s of ResNet50's load)
        prod.weights[kname] = np.multiply(k, s, out=np.empty(k.shape, np.float32), casting="same_kind")
        prod.weights["bias"] = (bias * scale + shift).astype(np.float32)
        prod.weight_shapes["bias"] = (c,)
        prod.attrs["use_bias"] = True
        g.absorb(prod, bn)
    return g


def _non_negative(g: Graph, value: str) -> bool:
    prod = g.producer(value)
    if prod is None:
        return False
    if _epilogue(prod) or prod.op == "activation":
        return prod.attrs.get("act") in ("relu", "relu6")
    return ops.get(prod.op, prod.name).keeps_sign and _non_negative(g, prod.inputs[0])


def fold_zero_pad(g: Graph) -> Graph:
    for zp in [n for n in g.nodes if n.op == "zero_pad"]:
        nxt = _sole_consumer(g, zp.output)
        if nxt is None:
            continue
        # Zeros padded before a max pool only equal the pool's own "never wins" padding when
        # every real value is >= 0 and the pool adds no padding of its own.
        pad = tuple(int(a + b) for a, b in zip(nxt.attrs["pad"], zp.attrs["pad"]))
        ok = nxt.op in ("conv2d", "depthwise_conv2d") or (
            nxt.op == "max_pool2d" and nxt.attrs["pad"] == (0, 0, 0, 0) and _non_negative(g, zp.inputs[0])
            and max(pad[:2]) < nxt.attrs["pool_size"][0] and max(pad[2:]) < nxt.attrs["pool_size"][1])
        if not ok:      # (a window of nothing but padding must see the zeros, so the pad stays a node)
            continue
        nxt.attrs["pad"] = pad
        nxt.inputs = [zp.inputs[0] if v == zp.output else v for v in nxt.inputs]
        nxt.fused.insert(0, zp.name)
        g.nodes.remove(zp)
    return g


def fold_affine_into_next(g: Graph) -> Graph:
    """A constant per-channel affine (an unfolded BatchNorm, Rescaling, Normalization) merged into the
    affine after it, then folded into the weights of the unpadded, ungrouped convolution that alone
    reads it: conv(x * s + t) = conv'(x) + b' with kernel rows scaled by s and b' = b + sum k * t.
    With padding it would not be exact (the padded zeros would become -t / s), so it stays a node."""
    for aff in [n for n in g.nodes if n.op == "channel_affine"]:
        nxt = _sole_consumer(g, aff.output)
        if aff.attrs.get("act") is not None or nxt is None:
            continue
        s, t = aff.weights["scale"].astype(np.float64), aff.weights["shift"].astype(np.float64)
        if nxt.op == "channel_affine":
            s2 = nxt.weights["scale"].astype(np.float64)
            nxt.weights = {"scale": (s * s2).astype(np.float32),
                           "shift": (t * s2 + nxt.weights["shift"].astype(np.float64)).astype(np.float32)}
        elif (nxt.op == "conv2d" and nxt.attrs.get("groups", 1) == 1 and tuple(nxt.attrs["pad"]) == (0, 0, 0, 0)
              and nxt.attrs.get("residual") is None):
            k = nxt.weights["kernel"].astype(np.float64)               # (kh, kw, cin, cout)
            bias = nxt.weights.get("bias")
            bias = np.zeros(k.shape[-1]) if bias is None else bias.astype(np.float64)
            nxt.weights["kernel"] = (k * s[:, None]).astype(np.float32)
            nxt.weights["bias"] = (bias + np.einsum("hwio,i->o", k, t)).astype(np.float32)
            nxt.weight_shapes["bias"] = (k.shape[-1],)
            nxt.attrs["use_bias"] = True
        else:
            continue
        nxt.inputs = [aff.inputs[0] if v == aff.output else v for v in nxt.inputs]
        nxt.fused[:0] = [aff.name] + aff.fused
        g.nodes.remove(aff)
    return g


def fuse_residual(g: Graph) -> Graph:
    for add in [n for n in g.nodes if n.op == "add"]:
        if add.attrs.get("act") is not None:
            continue
        best = None
        if g.shapes[add.inputs[0]] != g.shapes[add.inputs[1]]:
            continue                  # a per-channel add: no residual of the output's shape
        for i, v in enumerate(add.inputs):
            prod = g.producer(v)
            if (prod is not None and prod.op == "conv2d" and prod.attrs.get("act") is None
                    and prod.attrs.get("groups", 1) == 1
                    and prod.attrs.get("residual") is None and _sole_consumer(g, v) is add):
                if best is None or g.nodes.index(prod) > g.nodes.index(best[0]):
                    best = (prod, add.inputs[1 - i])
        if best is None:
            continue
        conv, other = best
        g.nodes.remove(conv)
        g.nodes.insert(g.nodes.index(add), conv)   # after both of the add's inputs exist
        conv.attrs["residual"] = other
        conv.inputs = [conv.inputs[0], other]
        g.absorb(conv, add)
    return g


def fuse_activation(g: Graph) -> Graph:
    """An activation the kernels' epilogues apply (EPILOGUE_ACTIVATIONS: the clamps) moves into the
    epilogue of the op before it; any other (silu, gelu, ...) stays a step of its own, as lower() made it."""
    for act in [n for n in g.nodes if n.op == "activation" and n.attrs["act"] in EPILOGUE_ACTIVATIONS]:
        prod = g.producer(act.inputs[0])
        if (_epilogue(prod) and prod.attrs.get("act") is None
                and _sole_consumer(g, prod.output) is act):
            prod.attrs["act"] = act.attrs["act"]
            g.absorb(prod, act)
    return g


def split_grouped_convs(g: Graph) -> Graph:
    """Grouped convolutions (after BatchNorm, padding and activations are folded into them) become one
    convolution per group on a channel slice, writing into its slice of the output."""
    for node in [n for n in g.nodes if n.op == "conv2d" and n.attrs.get("groups", 1) > 1]:
        split_groups(g, node)
    return g


def fuse_depthwise_pointwise(g: Graph) -> Graph:
    """depthwise_conv2d (+ bias, act) -> conv2d 1x1 / stride 1 / no padding that is its only reader
    -> one depthwise_pointwise node in the conv's place, under the conv's name, with the depthwise
    layer (and whatever it had absorbed) listed as fused into it."""
    for pw in [n for n in g.nodes if n.op == "conv2d"]:
        a = pw.attrs
        if tuple(a["kernel_size"]) != (1, 1) or tuple(a["strides"]) != (1, 1) or tuple(a["pad"]) != (0, 0, 0, 0):
            continue
        dw = g.producer(pw.inputs[0])
        if dw is None or dw.op != "depthwise_conv2d" or _sole_consumer(g, dw.output) is not pw:
            continue
        d = dw.attrs
        pw.op = "depthwise_pointwise"
        pw.attrs = dict(a, dw_kernel_size=d["kernel_size"], dw_strides=d["strides"], dw_pad=d["pad"],
                        dw_act=d.get("act"), depth_multiplier=d["depth_multiplier"])
        c = g.shapes[dw.output][-1]
        dwb = dw.weights.get("bias")
        pw.weights = dict(pw.weights, depthwise_kernel=dw.weights["depthwise_kernel"],
                          depthwise_bias=np.zeros(c, np.float32) if dwb is None else dwb)
        pw.weight_shapes = dict(pw.weight_shapes, depthwise_kernel=dw.weight_shapes["depthwise_kernel"],
                                depthwise_bias=(c,))
        pw.inputs = [dw.inputs[0]] + pw.inputs[1:]
        pw.fused = [dw.name] + dw.fused + pw.fused
        g.nodes.remove(dw)
    return g


def fuse_input_activation(g: Graph) -> Graph:
    for act in [n for n in g.nodes if n.op == "activation" and n.attrs["act"] in ("relu", "relu6")]:
        nxt = _sole_consumer(g, act.output)
        if nxt is None or nxt.op != "depthwise_pointwise" or nxt.inputs[0] != act.output or nxt.attrs.get("in_act"):
            continue
        nxt.attrs["in_act"] = act.attrs["act"]
        nxt.inputs[0] = act.inputs[0]
        nxt.fused.insert(0, act.name)
        g.nodes.remove(act)
    return g


def fuse_channel_scale(g: Graph) -> Graph:
    """mul(x, s) with s one value per sample and channel (squeeze-excite's gate), no activation, read
    only by a 1x1 / stride-1 / unpadded / ungrouped conv2d as its input -> that conv becomes a
    scaled_conv2d node on [x, s (, residual)], the mul listed as fused into it."""
    for conv in [n for n in g.nodes if n.op == "conv2d"]:
        a = conv.attrs
        if (tuple(a["kernel_size"]) != (1, 1) or tuple(a["strides"]) != (1, 1) or tuple(a["pad"]) != (0, 0, 0, 0)
                or a.get("groups", 1) != 1):
            continue
        mul = g.producer(conv.inputs[0])
        if (mul is None or mul.op != "mul" or mul.attrs.get("act") is not None
                or g.shapes[mul.inputs[1]] == g.shapes[mul.inputs[0]] or _sole_consumer(g, mul.output) is not conv):
            continue
        conv.op = "scaled_conv2d"
        conv.inputs = list(mul.inputs) + conv.inputs[1:]
        conv.fused[:0] = [mul.name] + mul.fused
        g.nodes.remove(mul)
    return g


def _strided_readers(g: Graph, value: str) -> int:
    """s > 1 if every reader of ``value`` is an unpadded, ungrouped 1x1 conv of stride (s, s) that reads
    it as its input (not its residual), so only every s-th row and column of it is ever read; else 0."""
    if value in g.outputs:
        return 0
    stride = 0
    for c in g.consumers(value):
        a = c.attrs
        if (c.op != "conv2d" or c.inputs[0] != value or a.get("residual") == value or a.get("groups", 1) != 1
                or tuple(a["kernel_size"]) != (1, 1) or tuple(a["pad"]) != (0, 0, 0, 0)
                or a["strides"][0] != a["strides"][1] or a["strides"][0] < 2 or stride not in (0, a["strides"][0])):
            return 0
        stride = a["strides"][0]
    return stride


def subsample_early(g: Graph) -> Graph:
    """A value read only by 1x1 stride-s convs (ResNet's last block of a stage, before the next
    stage's strided 1x1 shortcut and first conv) is computed only where it is read: its producer, a
    stride-1 conv, takes stride s (output pixel i of the strided conv is pixel s * i of the stride-1
    one, with the same top and left padding; the bottom and right padding give ceil(H / s)), its
    residual is subsampled first (a 1x1 max pool of stride s), and its readers become stride 1.
    Repeated up the chain: a 1x1 producer made strided passes the stride on to its own producer (the
    3x3 conv before it), which then computes a quarter of its map too."""
    changed = True
    while changed:
        changed = False
        for node in list(g.nodes):
            s = _strided_readers(g, node.output)
            a = node.attrs
            if (not s or node.op != "conv2d" or tuple(a["strides"]) != (1, 1) or a.get("groups", 1) != 1):
                continue
            h, w, c = g.shapes[node.output]
            res = a.get("residual")
            if res is not None:
                sub = f"{node.name}/residual_subsample"
                g.nodes.insert(g.nodes.index(node), Node(sub, "max_pool2d", [res], sub, dict(
                    pool_size=(1, 1), strides=(s, s), pad=(0, 0, 0, 0))))
                g.shapes[sub] = (-(-h // s), -(-w // s), g.shapes[res][2])
                a["residual"] = sub
                node.inputs = [node.inputs[0], sub]
            a["strides"] = (s, s)
            g.shapes[node.output] = (-(-h // s), -(-w // s), c)
            for reader in g.consumers(node.output):
                reader.attrs["strides"] = (1, 1)
            changed = True
    return g


def check_weights(g: Graph):
    missing = [n.name for n in g.nodes for k in n.weight_shapes if n.weights.get(k) is None]
    if missing:
        raise ModelError(f"graph {g.name!r}: {len(missing)} layer weights not loaded, e.g. {missing[:5]}")


def optimize(graph: Graph, fuse: bool = True) -> Graph:
    """A new graph ready to execute; ``graph`` itself is left as it was."""
    g = graph.copy()
    check_weights(g)
    lower(g)
    fold_batchnorm(g)
    if fuse:
        fold_zero_pad(g)
        fold_affine_into_next(g)
        fuse_residual(g)
        fuse_activation(g)
        subsample_early(g)
    split_grouped_convs(g)
    if fuse:
        fuse_depthwise_pointwise(g)
        fuse_input_activation(g)
        fuse_channel_scale(g)
    g.validate()
    return g
