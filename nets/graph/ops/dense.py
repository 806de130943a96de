"""dense: units, use_bias, act (any activation, or "softmax"; the passes split off what the kernel's
epilogue does not apply).

Weights ``kernel`` (in, units) (Keras' layout; ``in`` is -1 until the input width is known) and
``bias`` (units,).
"""

from __future__ import annotations

from kernels import reference as ref
from nets.errors import ModelError
from nets.graph.ops import Kernel, OpDef, register
from nets.graph.ops.conv import weighted_moments


def _shape(node, in_shapes):
    x = in_shapes[0]
    if len(x) != 1:
        raise ModelError(f"layer {node.name!r} (dense) expects a flat input per sample, got shape {x}; "
                         "add a Flatten or global pooling layer before it")
    return (node.attrs["units"],)


def _ref(node, xs, out_shape):
    act = node.attrs.get("act")
    y = ref.dense(xs[0], node.weights["kernel"], node.weights.get("bias"), None if act == "softmax" else act)
    return ref.softmax(y) if act == "softmax" else y


def _kernel(c):
    a, b, p = c.node.attrs, c.backend, c.packed
    x2, out = c.ins[0].reshape(c.batch, -1), c.out
    return Kernel(lambda: b.dense(x2, p, out, a.get("act")), p.variant, p)


def _export(ex, n, ins, out):
    bias = ex.bias(n)
    args = [ins[0], ex.init(f"{n.name}/W", ex.weight(n, "kernel"))]
    if bias is not None:
        args.append(ex.init(f"{n.name}/B", bias))
    y = ex.emit("Gemm", args, out if n.attrs.get("act") is None else f"{n.output}__gemm", n.name)
    return ex.finish(n, y, n.attrs.get("act"))


register(OpDef(
    "dense", _shape, _ref, lambda n, ins, out: ins[0][0] * out[0],
    pack=lambda b, n: b.pack_dense(n.weights["kernel"], n.weights.get("bias")),
    kernel=_kernel, export=_export, moments=weighted_moments, epilogue=True, color="#2ca02c"))
