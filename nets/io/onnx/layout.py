"""ONNX ops that move data without arithmetic: Flatten, Reshape, Squeeze, Unsqueeze, Transpose (as views),
Slice, Split, Gather (channel slices -> ``channel_gather``, height/width -> ``crop``).

Any tensor is, for these ops, its IR value's elements taken in some order (``flat``). A reshape or transpose
computes the new order with numpy and only then decides what the runtime must do: nothing (a layout change
such as NCHW <-> NHWC, or a flatten: a view), a ``channel_gather`` (the order is a permutation of the
channels of an NCHW map: a channel shuffle's ``Reshape -> Transpose -> Reshape`` over groups), or, for an
arbitrary order, a gather over the flattened elements. Tensors of other ranks than 2 and 4 in between stay
lazy views (``Val.view``).

``LayoutConverters`` is a mixin of ``nets.io.onnx.reader.Importer``.
"""

from __future__ import annotations

import math

import numpy as np

from nets.io.onnx.values import IDENT2, IDENT4, NCHW, Val, flat_order


class LayoutConverters:
    # ------------------------------------------------------------------ views
    def flat(self, x: Val):
        """(IR value, order): ONNX element i of the flattened per-sample tensor is IR element order[i]."""
        if x.view is not None or len(x.perm) == 2:
            return x.ir, x.order
        return x.ir, flat_order(self.b.shape(x.ir), x.perm)

    def flatten(self, x: Val) -> Val:
        if len(x.perm) == 2 and x.view is None:
            return x
        return self.as_shape(*self.flat(x), (math.prod(self.shape(x)),))

    def reshape_to(self, x: Val, rest) -> Val:
        rest = tuple(int(d) for d in rest)
        if rest == self.shape(x):
            return x
        if math.prod(rest) != math.prod(self.shape(x)):
            raise self.err(f"cannot reshape ONNX shape (N, {', '.join(map(str, self.shape(x)))}) to (N, "
                           f"{', '.join(map(str, rest))})")
        return self.as_shape(*self.flat(x), rest)

    def as_shape(self, ir: str, order, rest) -> Val:
        """The ONNX tensor (N, *rest) whose flat elements are IR value ``ir``'s in ``order``."""
        src = self.b.shape(ir)
        if order is not None and np.array_equal(order, np.arange(len(order))):
            order = None
        if len(rest) == 1:
            return Val(ir if len(src) == 1 else self.emit("flatten", ir, sub="flatten"), IDENT2, order)
        if len(rest) != 3:
            return Val(ir, IDENT2, order, view=tuple(rest))
        c, h, w = rest
        if len(src) == 1:               # a vector laid out as an NCHW flatten is that map again
            nchw = order is not None and np.array_equal(order, flat_order((h, w, c), NCHW))
            if nchw or (order is None and h * w == 1):
                return Val(self.view_as(ir, (h, w, c)), NCHW)
        elif src[:2] == (h, w):
            index = _channel_index(order, rest, src[2])
            if index is not None:       # NCHW: a channel permutation or slice of the map, or the map itself
                same = len(index) == src[2] and np.array_equal(index, np.arange(src[2]))
                return Val(ir if same else self.emit("channel_gather", ir, tuple(int(i) for i in index),
                                                     sub="channels"), NCHW)
        if order is not None:           # any other order: gather the flattened elements
            vec = ir if len(src) == 1 else self.emit("flatten", ir, sub="flatten")
            ir, order = self.emit("channel_gather", vec, tuple(int(i) for i in order), sub="gather"), None
        if h * w == 1:
            return Val(self.view_as(ir, (1, 1, c)), NCHW)
        return Val(self.view_as(ir, (c, h, w)), IDENT4)

    def view_as(self, ir: str, shape) -> str:
        return ir if self.b.shape(ir) == tuple(shape) else self.emit("reshape", ir, tuple(shape), sub="view")

    # ------------------------------------------------------------------ ops
    def op_Flatten(self, node, a):
        x = self.val(node.input[0], view_ok=True)
        r = len(self.shape(x)) + 1
        axis = a.get("axis", 1)
        if axis not in (1, 1 - r):
            raise self.unsupported(f"Flatten with axis={axis} (only 1: keep the batch axis)")
        return self.flatten(x)

    def op_Reshape(self, node, a):
        x = self.val(node.input[0], view_ok=True)
        target = [int(d) for d in np.asarray(self.const(node, 1, batch_ok=True)).reshape(-1)]
        mask = self.batch_dims.get(node.input[1])
        batch = False
        if mask is not None:            # the target holds the dynamic batch size (Keras: Shape(x)[0])
            if mask.reshape(-1)[1:].any() or not mask.reshape(-1)[:1].all():
                raise self.unsupported(f"Reshape to a shape that moves the dynamic batch size (entries {mask})")
            batch = True
        src = self.shape(x)
        size = math.prod(src)
        allowzero = a.get("allowzero", 0)
        if not target:
            raise self.unsupported("Reshape to a scalar")
        rest = [src[i] if d == 0 and not allowzero and i < len(src) else d for i, d in enumerate(target[1:])]
        first = target[0]
        if any(d < -1 or d == 0 for d in rest) or rest.count(-1) > 1:
            raise self.unsupported(f"Reshape to {target}")
        if batch or (first == 0 and not allowzero) or (self.batch and first == self.batch):
            if -1 in rest:
                known = math.prod(d for d in rest if d != -1)
                rest[rest.index(-1)] = size // known if known else 0
        elif first == -1 and -1 not in rest and math.prod(rest) == size:
            pass                        # torch.onnx (dynamo) and Keras: [-1, *per-sample shape]
        else:
            raise self.unsupported(f"Reshape from ONNX shape (N, {', '.join(map(str, src))}) to {target} moves "
                                   "the batch axis (the first entry must be the batch size, 0, or -1 with the "
                                   "per-sample shape known)")
        if math.prod(rest) != size:
            raise self.err(f"cannot reshape ONNX shape (N, {', '.join(map(str, src))}) to {target}")
        return self.reshape_to(x, rest)

    def axes_of(self, node, a, r, what):
        """The ``axes`` of Squeeze/Unsqueeze (an attribute before opset 13, an input after), normalised."""
        axes = a.get("axes") if self.opset < 13 else self.const(node, 1, required=False)
        if axes is None:
            return None
        axes = [int(i) + r if int(i) < 0 else int(i) for i in np.reshape(axes, -1)]
        if any(not 0 <= i < r for i in axes) or len(set(axes)) != len(axes):
            raise self.err(f"{what} axes {axes} do not fit a rank-{r} tensor")
        if 0 in axes:
            raise self.unsupported(f"{what} of the batch axis")
        return axes

    def op_Squeeze(self, node, a):
        x = self.val(node.input[0], view_ok=True)
        full = (None,) + self.shape(x)
        axes = self.axes_of(node, a, len(full), "Squeeze")
        if axes is None:
            axes = [i for i in range(1, len(full)) if full[i] == 1]
        if any(full[i] != 1 for i in axes):
            raise self.err(f"Squeeze of axes {axes} that are not 1 in ONNX shape (N, {', '.join(map(str, full[1:]))})")
        return self.reshape_to(x, [d for i, d in enumerate(full) if i and i not in axes])

    def op_Unsqueeze(self, node, a):
        x = self.val(node.input[0], view_ok=True)
        shape = list(self.shape(x))
        r = len(shape) + 1 + len(np.reshape(self.const(node, 1) if self.opset >= 13 else a.get("axes", []), -1))
        axes = self.axes_of(node, a, r, "Unsqueeze") or []
        full = [None] + shape
        for i in sorted(axes):
            full.insert(i, 1)
        return self.reshape_to(x, full[1:])

    def op_Transpose(self, node, a):
        x = self.val(node.input[0], view_ok=True)
        shape = self.shape(x)
        r = len(shape) + 1
        perm = [int(p) for p in a.get("perm", list(range(r))[::-1])]
        if sorted(perm) != list(range(r)) or perm[0] != 0:
            raise self.unsupported(f"Transpose with perm={perm} on a rank-{r} tensor (the batch axis must stay first)")
        if x.view is None and len(x.perm) == r:
            new = tuple(x.perm[p] for p in perm)
            if new in (NCHW, IDENT4, IDENT2):       # a layout change only
                return Val(x.ir, new, x.order)
        ir, order = self.flat(x)
        index = np.arange(math.prod(shape)) if order is None else order
        index = index.reshape(shape).transpose([p - 1 for p in perm[1:]]).ravel()
        return self.as_shape(ir, index, tuple(shape[p - 1] for p in perm[1:]))

    # ------------------------------------------------------------------ slices
    def select(self, x: Val, picks: dict) -> Val:
        """``picks``: ONNX axis -> the indices kept along it. Height/width ranges become a crop, channels
        (or features) a channel_gather."""
        full = (self.batch,) + self.shape(x)
        r = len(full)
        box, index = [0, 0, 0, 0], None
        for ax, idx in picks.items():
            idx = list(idx)
            if not idx:
                raise self.unsupported(f"a slice that leaves axis {ax} of ONNX shape {full} empty")
            if idx == list(range(full[ax] or len(idx))):
                continue
            ir_axis = x.perm[ax]
            if ir_axis == r - 1:                    # channels / features
                index = idx if x.order is None else [int(x.order[i]) for i in idx]
            elif r == 4 and ir_axis in (1, 2) and idx == list(range(idx[0], idx[-1] + 1)):
                box[2 * (ir_axis - 1)], box[2 * (ir_axis - 1) + 1] = idx[0], full[ax] - 1 - idx[-1]
            else:
                raise self.unsupported(f"a slice of axis {ax} of ONNX shape (N, {', '.join(map(str, full[1:]))}) "
                                       "(only channel selections and height/width ranges)")
        v = x.ir
        if any(box):
            v = self.emit("crop", v, ((box[0], box[1]), (box[2], box[3])), sub="crop" if index else None)
        if index is not None:
            v = self.emit("channel_gather", v, tuple(index))
            return Val(v, x.perm, None)
        return Val(v, x.perm, x.order)

    def picks(self, x: Val, axes, starts, ends, steps, what) -> dict:
        full = (self.batch,) + self.shape(x)
        r = len(full)
        out = {}
        for ax, b, e, st in zip(axes, starts, ends, steps):
            ax = int(ax) + r if int(ax) < 0 else int(ax)
            if not 0 <= ax < r or int(st) == 0:
                raise self.err(f"{what} axis {ax} / step {st} does not fit a rank-{r} tensor")
            if ax == 0:
                if int(b) != 0 or int(e) < (self.batch or 1 << 62) or int(st) != 1:
                    raise self.unsupported(f"{what} of the batch axis")
                continue
            out[ax] = range(full[ax])[slice(int(b), int(e), int(st))]
        return out

    def op_Slice(self, node, a):
        x = self.val(node.input[0])
        if self.opset < 10:
            starts, ends, axes, steps = a.get("starts"), a.get("ends"), a.get("axes"), None
            if starts is None or ends is None:
                raise self.err("Slice needs starts and ends")
        else:
            starts, ends = self.const(node, 1), self.const(node, 2)
            axes, steps = self.const(node, 3, required=False), self.const(node, 4, required=False)
        starts, ends = np.reshape(starts, -1), np.reshape(ends, -1)
        axes = range(len(starts)) if axes is None else np.reshape(axes, -1)
        steps = [1] * len(starts) if steps is None else np.reshape(steps, -1)
        if not len(starts) == len(ends) == len(axes) == len(steps):
            raise self.err(f"Slice with {len(starts)} starts, {len(ends)} ends, {len(axes)} axes, {len(steps)} steps")
        return self.select(x, self.picks(x, axes, starts, ends, steps, "Slice"))

    def op_Split(self, node, a):
        x = self.val(node.input[0])
        full = (self.batch,) + self.shape(x)
        r = len(full)
        axis = a.get("axis", 0)
        axis = axis + r if axis < 0 else axis
        if not 0 < axis < r:
            raise self.unsupported(f"Split along axis {a.get('axis', 0)} of a rank-{r} tensor")
        n = len(node.output)
        sizes = a.get("split") if self.opset < 13 else self.const(node, 1, required=False)
        dim = full[axis]
        if sizes is not None and np.size(sizes):
            sizes = [int(s) for s in np.reshape(sizes, -1)]
        elif "num_outputs" in a:
            step = -(-dim // int(a["num_outputs"]))
            sizes = [min(step, dim - i) for i in range(0, dim, step)]
        else:
            sizes = [dim // n] * n if dim % n == 0 else None
        if sizes is None or len(sizes) != n or sum(sizes) != dim or min(sizes) < 1:
            raise self.err(f"Split of {dim} entries into {sizes} for {n} outputs")
        outs, start = [], 0
        for s in sizes:
            outs.append(self.select(x, {axis: range(start, start + s)}))
            start += s
        return outs

    def op_Gather(self, node, a):
        """Gather on a computed tensor: channels picked by a constant index list."""
        x = self.val(node.input[0])
        idx = np.asarray(self.const(node, 1))
        full = (self.batch,) + self.shape(x)
        r = len(full)
        axis = a.get("axis", 0)
        axis = axis + r if axis < 0 else axis
        if idx.ndim != 1 or not 0 < axis < r:
            raise self.unsupported(f"Gather of a computed tensor along axis {a.get('axis', 0)} with indices of "
                                   f"shape {idx.shape} (only a list of channels)")
        dim = full[axis]
        if idx.dtype.kind not in "iu" or np.any(idx >= dim) or np.any(idx < -dim):
            raise self.err(f"Gather indices out of range for {dim} entries")
        return self.select(x, {axis: [int(i) % dim for i in idx]})


def _channel_index(order, rest, channels):
    """The source channel of each output channel, when the ONNX tensor (N, *rest) with flat elements in
    ``order`` is a channel selection of an NCHW view of an (H, W, ``channels``) map; else None."""
    c, h, w = rest
    idx = (np.arange(c * h * w) if order is None else np.asarray(order)).reshape(c, h, w)
    base = idx[:, 0, 0]
    step = (np.arange(h)[:, None] * w + np.arange(w)[None, :]) * channels
    if np.array_equal(idx - base[:, None, None], np.broadcast_to(step, idx.shape)) and base.min() >= 0 \
            and base.max() < channels:
        return base
    return None
