"""ONNX op -> runtime IR converters: convolutions, pooling, Concat, Gemm/MatMul, Pad, Cast, ReduceMean/Max.
The element-wise ops live in ``elementwise.py``, the layout ops in ``layout.py``; ``values.py`` holds ``Val``.

Each ``op_<OpType>(node, attrs)`` method reads its inputs as ``Val`` (an IR value plus ``perm``, the
axis order that turns the batched IR tensor into the ONNX tensor) and returns the ``Val`` of its output
(a list of them for ops with several outputs). The mixins need the importer's reading helpers (``val``,
``const``, ``map``, ``shape``, ``emit``, ``ints``, ``err``, ``unsupported``) and ``self.b`` (the GraphBuilder).
"""

from __future__ import annotations

import numpy as np

from kernels import same_padding
from nets.io.onnx.elementwise import ElementwiseConverters
from nets.io.onnx.layout import LayoutConverters
from nets.io.onnx.values import IDENT2, IDENT4, NCHW, Val, same_order

__all__ = ["IDENT2", "IDENT4", "NCHW", "OpConverters", "Val", "same_order"]


class OpConverters(ElementwiseConverters, LayoutConverters):
    def op_Identity(self, node, a):
        return self.val(node.input[0], view_ok=True)

    op_Dropout = op_Identity

    def window(self, a, hw, k, s, ceil=False, include_pad=False):
        auto = a.get("auto_pad", "NOTSET")
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            ph, pw = same_padding(hw[0], k[0], s[0]), same_padding(hw[1], k[1], s[1])
            if auto == "SAME_LOWER":
                ph, pw = ph[::-1], pw[::-1]
            return (ph[0], ph[1], pw[0], pw[1])
        if auto == "VALID":
            pads = [0, 0, 0, 0]
        elif auto == "NOTSET":
            pads = list(self.ints(a, "pads", 4, [0, 0, 0, 0]))
        else:
            raise self.err(f"unknown auto_pad {auto!r}")
        t, l, b, r = pads
        if ceil:
            ends = []
            for size, k_, s_, p0, p1 in ((hw[0], k[0], s[0], t, b), (hw[1], k[1], s[1], l, r)):
                span = size + p0 + p1 - k_
                n = -(-span // s_) + 1 if span >= 0 else 0
                if n > 1 and (n - 1) * s_ >= size + p0:     # a last window starting in the padding is dropped
                    n -= 1
                ends.append(max((n - 1) * s_ + k_ - (size + p0 + p1), 0))
            if any(ends) and include_pad:
                raise self.unsupported("ceil_mode=1 with count_include_pad=1 where the ceiling adds a window")
            b, r = b + ends[0], r + ends[1]
        return (t, b, l, r)

    def op_Conv(self, node, a):
        x = self.map(node.input[0])
        w = np.asarray(self.const(node, 1), np.float32)
        bias = self.const(node, 2, required=False)
        h, wd, c = self.b.shape(x.ir)
        if w.ndim != 4:
            raise self.unsupported(f"only 2-D convolutions are supported (weight shape {w.shape})")
        o, i, kh, kw = w.shape
        if self.ints(a, "dilations", 2, 1, lo=1) != (1, 1):
            raise self.unsupported(f"dilated convolution (dilations={a['dilations']})")
        if "kernel_shape" in a and tuple(a["kernel_shape"]) != (kh, kw):
            raise self.err(f"kernel_shape {a['kernel_shape']} disagrees with the weight shape {w.shape}")
        if min(o, kh, kw) < 1:
            raise self.err(f"empty weight shape {w.shape}")
        s = self.ints(a, "strides", 2, 1, lo=1)
        pad = self.window(a, (h, wd), (kh, kw), s)
        group = a.get("group", 1)
        if bias is not None and tuple(bias.shape) != (o,):
            raise self.err(f"bias shape {bias.shape} does not match {o} output channels")
        ws = {} if bias is None else {"bias": bias}
        if not isinstance(group, int) or group < 1 or c % group or o % group or i * group != c:
            raise self.err(f"weight {w.shape} with group={group} does not fit {c} input channels")
        if group == c and i == 1:
            m = o // c
            ws["depthwise_kernel"] = w.reshape(c, m, kh, kw).transpose(2, 3, 0, 1)
            return self.same_layout(x, self.emit("depthwise_conv2d", x.ir, (kh, kw), s, pad, m, bias is not None,
                                                 weights=ws))
        ws["kernel"] = w.transpose(2, 3, 1, 0)          # OIHW -> HWIO; per group: (kh, kw, c / group, o)
        return self.same_layout(x, self.emit("conv2d", x.ir, o, (kh, kw), s, pad, bias is not None, groups=group,
                                             weights=ws))

    def pool(self, node, a, kind):
        edge = self.edge_pads.get(node.input[0]) if kind == "max" else None
        x = edge[0] if edge else self.map(node.input[0])
        h, w, _ = self.b.shape(x.ir)
        k = self.ints(a, "kernel_shape", 2, None, lo=1) if "kernel_shape" in a else None
        if k is None:
            raise self.err("kernel_shape is missing")
        if self.ints(a, "dilations", 2, 1, lo=1) != (1, 1):
            raise self.unsupported(f"dilated pooling (dilations={a['dilations']})")
        s = self.ints(a, "strides", 2, 1, lo=1)
        include = bool(a.get("count_include_pad", 0))
        if edge:
            t, b, l, r = edge[1]
            pad = self.window(a, (h + t + b, w + l + r), k, s, ceil=bool(a.get("ceil_mode", 0)))
            pad = (pad[0] + t, pad[1] + b, pad[2] + l, pad[3] + r)
            if not all(_windows_see_data(n, k_, s_, p0, p1)
                       for n, k_, s_, p0, p1 in ((h, k[0], s[0], *pad[:2]), (w, k[1], s[1], *pad[2:]))):
                raise self.unsupported(f"MaxPool after an edge-mode Pad {edge[1]} where a window holds padding only "
                                       f"(pads {pad} with a {k} window)")
            return self.same_layout(x, self.emit("max_pool2d", x.ir, k, s, pad))
        pad = self.window(a, (h, w), k, s, ceil=bool(a.get("ceil_mode", 0)), include_pad=include)
        if max(pad[:2]) >= k[0] or max(pad[2:]) >= k[1]:
            raise self.unsupported(f"pooling with padding {pad} as large as the {k} window")
        if kind == "max":
            return self.same_layout(x, self.emit("max_pool2d", x.ir, k, s, pad))
        return self.same_layout(x, self.emit("avg_pool2d", x.ir, k, s, pad, include))

    def op_MaxPool(self, node, a):
        return self.pool(node, a, "max")

    def op_AveragePool(self, node, a):
        return self.pool(node, a, "avg")

    def op_GlobalAveragePool(self, node, a):
        x = self.map(node.input[0])
        return self.same_layout(x, self.emit("global_avg_pool", x.ir, True))

    def op_GlobalMaxPool(self, node, a):
        x = self.map(node.input[0])
        return self.same_layout(x, self.emit("global_max_pool", x.ir, True))

    def op_Concat(self, node, a):
        xs = [self.val(n) for n in node.input]
        r = len(xs[0].perm)
        axis = a.get("axis", 1)
        axis = axis + r if axis < 0 else axis
        if not 0 <= axis < r or any(v.perm != xs[0].perm for v in xs) or xs[0].perm[axis] != r - 1:
            raise self.unsupported(f"Concat along axis {a.get('axis')} of ONNX shapes "
                                   f"{[self.shape(v) for v in xs]} (only the channel axis)")
        order, start = None, 0
        if any(v.order is not None for v in xs):      # vectors: the pieces keep their own element orders
            parts = []
            for v in xs:
                n = self.b.shape(v.ir)[0]
                parts.append(start + (np.arange(n) if v.order is None else v.order))
                start += n
            order = np.concatenate(parts)
        return Val(self.emit("concat", [v.ir for v in xs]), xs[0].perm, order)

    def vector(self, name) -> Val:
        v = self.val(name)
        if len(v.perm) != 2:
            raise self.unsupported(f"needs a (N, features) matrix, got ONNX shape (N, "
                                   f"{', '.join(map(str, self.shape(v)))}); add a Flatten first")
        return v

    def dense(self, x: Val, kernel, bias):
        """A dense layer on the vector ``x``; the weight rows follow the vector's element order. Float32 and
        one pass over the weight where possible: VGG's fc1 is 4096 x 25088."""
        f = self.b.shape(x.ir)[0]
        if kernel.ndim != 2 or kernel.shape[0] != f:
            raise self.err(f"weight of shape {kernel.shape} does not fit {f} input features")
        kernel = np.asarray(kernel, np.float32)
        if x.order is not None:
            rows = np.empty_like(kernel, order="C")
            rows[x.order] = kernel
            kernel = rows
        ws = {"kernel": np.ascontiguousarray(kernel)}
        if bias is not None:
            ws["bias"] = bias
        return Val(self.emit("dense", x.ir, kernel.shape[1], bias is not None, weights=ws), IDENT2)

    def op_Gemm(self, node, a):
        x = self.vector(node.input[0])
        w = np.asarray(self.const(node, 1), np.float32)
        c = self.const(node, 2, required=False)
        if a.get("transA", 0):
            raise self.unsupported("Gemm with transA=1")
        if w.ndim != 2:
            raise self.err(f"Gemm weight must be 2-D, got {w.shape}")
        w = w.T if a.get("transB", 0) else w
        alpha = float(a.get("alpha", 1.0))
        if alpha != 1.0:
            w = w * np.float32(alpha)
        bias = None
        if c is not None:
            c = np.asarray(c, np.float64)
            if c.size not in (1, w.shape[1]) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
                raise self.err(f"Gemm bias of shape {c.shape} does not fit {w.shape[1]} outputs")
            bias = np.broadcast_to(c.reshape(-1), (w.shape[1],)) * a.get("beta", 1.0)
        return self.dense(x, w, bias)

    def op_MatMul(self, node, a):
        """A (N, features) matrix, or a map whose last ONNX axis is the channel axis (Keras' Dense on NHWC maps:
        ConvNeXt), times a constant matrix."""
        x = self.val(node.input[0])
        w = np.asarray(self.const(node, 1), np.float32)
        if len(x.perm) == 4 and x.perm[3] == 3:
            c = self.b.shape(x.ir)[-1]
            if w.ndim != 2 or w.shape[0] != c:
                raise self.err(f"weight of shape {w.shape} does not fit {c} channels")
            return self.same_layout(x, self.emit("dense", x.ir, w.shape[1], False, weights={"kernel": w}))
        return self.dense(self.vector(node.input[0]), w, None)

    def op_Pad(self, node, a):
        """Zeros on height and width; or edge values right before MaxPool (Keras' 'same' max pooling with
        uneven padding on torch), where they change no window's maximum as long as every window still holds
        a real cell: those pads join the pool's own (-inf) padding."""
        x = self.val(node.input[0])
        r = len(x.perm)
        mode = a.get("mode", "constant")
        users = [n.op_type for n in self.m.graph.node if node.output[0] in n.input]
        if mode not in ("constant", "edge") or (mode == "edge" and (not users or set(users) != {"MaxPool"})):
            raise self.unsupported(f"Pad mode {mode!r} (only constant zeros, and edge right before MaxPool)")
        if self.opset < 11:
            pads, fill, axes = a.get("pads", []), a.get("value", 0.0), None
        else:
            pads = [int(p) for p in np.asarray(self.const(node, 1)).reshape(-1)]
            fill = self.const(node, 2, required=False)
            fill = 0.0 if fill is None or np.asarray(fill).size == 0 else float(np.asarray(fill).reshape(-1)[0])
            axes = self.const(node, 3, required=False)
        axes = list(range(r)) if axes is None else [int(i) + r if int(i) < 0 else int(i)
                                                    for i in np.asarray(axes).reshape(-1)]
        if fill != 0.0 and mode == "constant":
            raise self.unsupported(f"Pad with the value {fill} (only zeros)")
        if len(pads) != 2 * len(axes) or any(not 0 <= i < r for i in axes):
            raise self.err(f"pads {pads} do not fit axes {axes} of a rank-{r} tensor")
        before, after = [0] * r, [0] * r
        for j, ax in enumerate(axes):
            before[x.perm[ax]], after[x.perm[ax]] = pads[j], pads[j + len(axes)]
        if min(before + after) < 0:
            raise self.unsupported(f"Pad with negative pads {pads} (cropping)")
        if not any(before + after):
            return x
        if r != 4 or before[0] or after[0] or before[3] or after[3]:
            raise self.unsupported(f"Pad of ONNX shape {self.shape(x)} with pads {pads} (only height and width)")
        pad = ((before[1], after[1]), (before[2], after[2]))
        if mode == "edge":
            if x.perm != NCHW:
                raise self.unsupported("edge-mode Pad of a map that is not NCHW before MaxPool")
            self.edge_pads[node.output[0]] = (x, (before[1], after[1], before[2], after[2]))
            return None
        return self.same_layout(x, self.emit("zero_pad", x.ir, pad))

    def op_Cast(self, node, a):
        """Keras wraps every layer in float32 -> float32 Casts; computed tensors here are all float32."""
        if a.get("to", 1) != 1:
            raise self.unsupported(f"Cast of a computed float32 tensor to ONNX type {a.get('to')} (only to float32)")
        return self.val(node.input[0], view_ok=True)

    def reduce(self, node, a, kind):
        """ReduceMean/ReduceMax over the spatial axes (Keras' GlobalAveragePooling2D on NHWC) is a global pool."""
        x = self.val(node.input[0])
        r = len(x.perm)
        axes = a.get("axes") if self.opset < 18 else self.const(node, 1, required=False)
        if axes is None or np.size(axes) == 0:
            if a.get("noop_with_empty_axes", 0):
                return x
            axes = range(r)
        axes = sorted({int(i) + r if int(i) < 0 else int(i) for i in np.reshape(axes, -1)})
        if r != 4 or any(not 0 <= i < r for i in axes) or {x.perm[i] for i in axes} != {1, 2}:
            raise self.unsupported(f"{node.op_type} over axes {axes} of ONNX shape (N, "
                                   f"{', '.join(map(str, self.shape(x)))}) (only the two spatial axes)")
        keep = bool(a.get("keepdims", 1))
        y = self.emit(f"global_{kind}_pool", x.ir, keep)
        return Val(y, x.perm) if keep else Val(y, IDENT2)

    def op_ReduceMean(self, node, a):
        return self.reduce(node, a, "avg")

    def op_ReduceMax(self, node, a):
        return self.reduce(node, a, "max")


def _windows_see_data(size, k, s, p0, p1) -> bool:
    """Does every pooling window along one axis overlap the data (not only padding), with padding smaller
    than the window as the pooling kernels need?"""
    n = (size + p0 + p1 - k) // s + 1
    return n >= 1 and max(p0, p1) < k and (n - 1) * s - p0 <= size - 1
