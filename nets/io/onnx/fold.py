"""Constant folding for the ONNX importer: nodes whose inputs are all constants (the shape arithmetic
exporters leave behind: Shape -> Gather -> Concat -> Reshape, ConstantOfShape, Slice, Cast, ...) are
evaluated with numpy at load time. With a dynamic batch size, ``Shape`` of a computed tensor puts a
placeholder in the batch entry and ``batch_dims`` marks it; ops that only move entries around move the
mark along, so a Reshape target built from ``Shape(x)[0]`` is known to keep the batch axis.

``ConstantFolding`` is a mixin of ``nets.io.onnx.reader.Importer`` and uses its ``consts``, ``batch_dims``,
``batch``, ``opset``, ``val``, ``shape``, ``err`` and ``unsupported``.
"""

from __future__ import annotations

import numpy as np

from nets.errors import WeightsError
from nets.io.onnx.proto import onnx_module, tensor_dtypes
from nets.io.onnx.tensors import check_memory

# folded ops that only move shape entries around (they may carry the dynamic batch size along)
BATCH_MOVES = frozenset({"Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Reshape", "Transpose", "Identity",
                         "Dropout", "Cast"})


class ConstantFolding:
    def fold(self, node, op, a) -> np.ndarray:
        """numpy evaluation of a node whose inputs are all constants (or shapes of computed tensors).

        With a dynamic batch size, ``Shape`` of a computed tensor puts a placeholder in the batch entry and
        ``self.batch_dims`` marks it; ops that only move entries around move the mark along, so a Reshape
        target built from ``Shape(x)[0]`` is known to keep the batch axis. Arithmetic on the mark is refused.
        """
        if op == "Shape":
            if node.input[0] in self.consts:
                full, mask = np.array(self.consts[node.input[0]].shape, np.int64), None
            else:
                v = self.val(node.input[0], view_ok=True)
                full = np.array((self.batch or 1,) + self.shape(v), np.int64)
                mask = None if self.batch else np.arange(len(full)) == 0
            lo, hi = a.get("start", 0), a.get("end", len(full))
            if mask is not None and mask[lo:hi].any():
                self.batch_dims[node.output[0]] = mask[lo:hi]
            return full[lo:hi]
        xs = [self.consts[n] if n else None for n in node.input]
        masks = [self.batch_dims.get(n) if n else None for n in node.input]
        if any(m is not None for m in masks):
            moved = range(len(xs)) if op == "Concat" else (0,)
            if op not in BATCH_MOVES or any(m is not None for i, m in enumerate(masks) if i not in moved):
                raise self.unsupported(f"{op} computes with the dynamic batch size; export with a fixed batch size")
            ms = [np.zeros(np.shape(xs[i]), bool) if masks[i] is None else masks[i] for i in moved]
            mask = masks[0] if op == "Cast" else self.evaluate(op, ms + xs[len(ms):], a)
            if mask.any():
                self.batch_dims[node.output[0]] = mask
        return self.evaluate(op, xs, a)

    def evaluate(self, op, xs, a) -> np.ndarray:
        x = xs[0]
        if op in ("Identity", "Dropout"):
            return x
        if op == "Neg":
            return np.negative(x)
        if op == "Sum":
            out = xs[0]
            for y in xs[1:]:
                out = np.add(out, y).astype(np.result_type(out, y))
            return out
        if op in ("Add", "Sub", "Mul", "Div"):
            fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
            if op == "Div" and x.dtype.kind in "iu":
                fn = _int_divide
            with np.errstate(all="ignore"):
                return fn(x, xs[1]).astype(np.result_type(x, xs[1]))
        if op == "Gather":
            return np.take(x, xs[1].astype(np.int64), axis=a.get("axis", 0))
        if op in ("Unsqueeze", "Squeeze"):
            axes = a.get("axes") if self.opset < 13 else (None if len(xs) < 2 or xs[1] is None else xs[1])
            if op == "Squeeze":
                return np.squeeze(x, None if axes is None else tuple(int(i) for i in np.reshape(axes, -1)))
            rank = x.ndim + len(np.reshape(axes, -1))
            for ax in sorted(int(i) + rank if int(i) < 0 else int(i) for i in np.reshape(axes, -1)):
                x = np.expand_dims(x, ax)
            return x
        if op == "Concat":
            return np.concatenate(xs, axis=a["axis"])
        if op == "Cast":
            onnx = onnx_module()
            to = a.get("to", onnx.TensorProto.FLOAT)
            if to not in tensor_dtypes(onnx):
                raise self.unsupported(f"Cast to ONNX data type {to}")
            return x.astype(onnx.helper.tensor_dtype_to_np_dtype(to))
        if op == "ConstantOfShape":
            shape = [int(d) for d in np.reshape(x, -1)]
            value = np.asarray(a.get("value", np.zeros(1, np.float32)))
            if any(d < 0 for d in shape) or value.size != 1:
                raise self.err(f"ConstantOfShape of shape {shape} with a value of shape {value.shape}")
            check_memory(int(np.prod([float(d) for d in shape])) * value.itemsize,
                         f"the ConstantOfShape constant of shape {shape}", WeightsError)
            return np.full(shape, np.reshape(value, -1)[0], value.dtype)
        if op == "Slice":
            if self.opset < 10:
                starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
            else:
                starts, ends = xs[1], xs[2]
                axes, steps = (xs[i] if len(xs) > i else None for i in (3, 4))
            starts, ends = np.reshape(starts, -1), np.reshape(ends, -1)
            axes = range(len(starts)) if axes is None else np.reshape(axes, -1)
            steps = [1] * len(starts) if steps is None else np.reshape(steps, -1)
            index = [slice(None)] * x.ndim
            for ax, b, e, st in zip(axes, starts, ends, steps):
                if int(st) == 0:
                    raise self.err("Slice with step 0")
                index[int(ax)] = slice(int(b), int(e), int(st))
            return x[tuple(index)]
        if op == "Reshape":
            shape = [x.shape[i] if d == 0 and not a.get("allowzero", 0) else int(d)
                     for i, d in enumerate(np.reshape(xs[1], -1))]
            return x.reshape(shape)
        if op == "Transpose":
            return np.transpose(x, a.get("perm"))
        raise self.unsupported(f"{op} cannot be evaluated on constants")  # pragma: no cover

    def constant(self, a):
        for key in ("value_float", "value_int"):
            if key in a:
                return np.array(a[key], np.float32 if key == "value_float" else np.int64)
        for key in ("value_floats", "value_ints"):
            if key in a:
                return np.array(a[key], np.float32 if key == "value_floats" else np.int64)
        if isinstance(a.get("value"), np.ndarray):
            return a["value"]
        raise self.unsupported("Constant without a dense tensor value")


def _int_divide(x, y):
    """ONNX integer Div truncates toward zero (numpy's // floors)."""
    q = np.abs(x) // np.abs(y)
    return np.where((x < 0) != (y < 0), -q, q)
