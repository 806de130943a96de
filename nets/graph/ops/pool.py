"""Pooling: max_pool2d / avg_pool2d (pool_size, strides, pad; avg also count_include_pad) and
global_avg_pool / global_max_pool (keepdims).

Padded cells never win a max and, with ``count_include_pad`` false (Keras' 'same' average pool), are
not counted in an average; a window must hold at least one real cell.
"""

from __future__ import annotations

from kernels import reference as ref
from nets.errors import ModelError
from nets.graph.ir import window_out
from nets.graph.ops import Kernel, OpDef, need_rank, register


def _window_shape(node, in_shapes):
    a, x = node.attrs, in_shapes[0]
    need_rank(node, x, 3)
    k = a["pool_size"]
    t, b, l, r = a["pad"]
    if max(t, b) >= k[0] or max(l, r) >= k[1]:
        raise ModelError(f"layer {node.name!r} ({node.op}): padding {a['pad']} is as large as the "
                         f"{k[0]}x{k[1]} window, so some windows would hold only padding")
    oh, ow = window_out(node.name, x, k, a["strides"], a["pad"])
    return (oh, ow, x[2])


def _pool_export(kind):
    def export(ex, n, ins, out):
        a = n.attrs
        kw = dict(kernel_shape=list(a["pool_size"]), strides=list(a["strides"]), pads=ex.onnx_pads(a["pad"]))
        if kind == "AveragePool":
            kw["count_include_pad"] = int(bool(a["count_include_pad"]))
        return ex.emit(kind, [ins[0]], out, n.name, **kw)
    return export


def _max_kernel(c):
    a, b, x, out, c0 = c.node.attrs, c.backend, c.ins[0], c.out, c.c0
    return Kernel(lambda: b.max_pool2d(x, out, a["pool_size"], a["strides"], a["pad"], c0), "max_pool2d")


def _avg_kernel(c):
    a, b, x, out, c0 = c.node.attrs, c.backend, c.ins[0], c.out, c.c0
    return Kernel(lambda: b.avg_pool2d(x, out, a["pool_size"], a["strides"], a["pad"], a["count_include_pad"], c0),
                  "avg_pool2d")


register(OpDef(
    "max_pool2d", _window_shape,
    lambda n, xs, out: ref.max_pool2d(xs[0], n.attrs["pool_size"], n.attrs["strides"], n.attrs["pad"]),
    kernel=_max_kernel, export=_pool_export("MaxPool"), slice_writer=True, keeps_sign=True, color="#d62728"))
register(OpDef(
    "avg_pool2d", _window_shape,
    lambda n, xs, out: ref.avg_pool2d(xs[0], n.attrs["pool_size"], n.attrs["strides"], n.attrs["pad"],
                                      n.attrs["count_include_pad"]),
    kernel=_avg_kernel, export=_pool_export("AveragePool"), slice_writer=True, color="#9467bd"))


# ----------------------------------------------------------------------------- global pooling

def _global_shape(node, in_shapes):
    x = in_shapes[0]
    need_rank(node, x, 3)
    return (1, 1, x[2]) if node.attrs.get("keepdims") else (x[2],)


def _global(kind, onnx_op, color):
    def reference(node, xs, out_shape):
        y = getattr(ref, kind)(xs[0])
        return y[:, None, None, :] if node.attrs.get("keepdims") else y

    def kernel(c):
        fn, x, o2 = getattr(c.backend, kind), c.ins[0], c.out.reshape(c.batch, -1)
        return Kernel(lambda: fn(x, o2), kind)

    def export(ex, n, ins, out):
        if n.attrs.get("keepdims"):
            return ex.emit(onnx_op, [ins[0]], out, n.name)
        y = ex.emit(onnx_op, [ins[0]], f"{n.output}__pooled", n.name)
        return ex.emit("Flatten", [y], out, f"{n.name}/flatten", axis=1)

    register(OpDef(kind, _global_shape, reference, kernel=kernel, export=export, color=color))


_global("global_avg_pool", "GlobalAveragePool", "#8c564b")
_global("global_max_pool", "GlobalMaxPool", "#e377c2")
