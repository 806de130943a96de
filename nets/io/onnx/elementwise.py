"""ONNX element-wise and per-channel ops: BatchNormalization, Add / Sub / Mul / Div / Sum (by constants, between
equal tensors, and per channel between computed tensors: squeeze-excite), Clip, LeakyRelu, the activations
(Sigmoid, Tanh, HardSigmoid with any alpha/beta, HardSwish, Gelu with its ``approximate`` attribute, and the
``Activation`` nodes ``patterns.py`` makes of GELU / SiLU / hard-swish arithmetic), Softmax,
LayerNormalization (over the channel axis as the layout tracking sees it) and LRN.

``ElementwiseConverters`` is a mixin of ``nets.io.onnx.reader.Importer``.
"""

from __future__ import annotations

import math

import numpy as np

from kernels import ACTIVATIONS
from nets.errors import WeightsError
from nets.io.onnx.values import NCHW, Val, same_order


class ElementwiseConverters:
    def same_layout(self, v: Val, ir: str) -> Val:
        return Val(ir, v.perm, v.order, v.view)

    def op_BatchNormalization(self, node, a):
        x = self.val(node.input[0])
        if a.get("training_mode", 0):
            raise self.unsupported("BatchNormalization in training mode")
        c = self.b.shape(x.ir)[-1]
        arrs = [self.const(node, i) for i in range(1, 5)]
        if len(self.shape(x)) not in (1, 3) or (len(self.shape(x)) == 3 and x.perm != NCHW):
            raise self.unsupported(f"BatchNormalization over ONNX shape {self.shape(x)} in this layout")
        for arr in arrs:
            if arr.shape != (c,):
                raise self.err(f"parameter of shape {arr.shape} does not match {c} channels")
        g, b, mean, var = (self.channels(x, arr) for arr in arrs)
        eps = float(a.get("epsilon", 1e-5))
        if not np.all(var + eps > 0):
            raise self.err(f"variance + epsilon ({eps}) is not positive for every channel", WeightsError)
        return self.same_layout(x, self.emit("batch_norm", x.ir, eps,
                                             weights=dict(gamma=g, beta=b, moving_mean=mean, moving_variance=var)))

    def channels(self, v: Val, vec):
        """A per-channel vector in ONNX order -> IR order."""
        vec = np.asarray(vec, np.float64)
        if v.order is None:
            return vec
        out = np.empty_like(vec)
        out[v.order] = vec
        return out

    def affine(self, v: Val, scale, shift, sub=None) -> Val:
        """x * scale + shift per channel, as a batch norm (eps 0, var 1): folded into a conv/dense before it,
        a channel_affine otherwise."""
        c = self.b.shape(v.ir)[-1]
        ws = dict(gamma=np.broadcast_to(scale, (c,)), beta=np.broadcast_to(shift, (c,)),
                  moving_mean=np.zeros(c), moving_variance=np.ones(c))
        return self.same_layout(v, self.emit("batch_norm", v.ir, 0.0, weights=ws, sub=sub))

    def per_channel(self, v: Val, const):
        shape = self.shape(v)
        r = len(shape) + 1
        ch = v.perm.index(r - 1)
        c = np.asarray(const, np.float64)
        if c.ndim > r:
            return None
        c = c.reshape((1,) * (r - c.ndim) + c.shape)
        full = (1,) + shape
        if any(c.shape[ax] != 1 for ax in range(r) if ax != ch) or c.shape[ch] not in (1, full[ch]):
            return None
        return self.channels(v, np.broadcast_to(c.reshape(-1), (full[ch],)))

    # ------------------------------------------------------------------ arithmetic
    def operand(self, name):
        return self.consts[name] if name in self.consts and name not in self.vals else self.val(name)

    def arith(self, x, y, op) -> Val:
        """x op y for op in Add, Sub, Mul, Div; each a Val or a constant array."""
        cx, cy = not isinstance(x, Val), not isinstance(y, Val)
        if cx and cy:
            raise self.unsupported(f"{op} of constants only; fold constants before export")
        if not cx and not cy:
            return self.computed(x, y, op)
        v, k = (y, x) if cx else (x, y)
        vec = self.per_channel(v, k)
        if vec is None:
            raise self.unsupported(f"{op} by a constant of shape {np.shape(k)} on ONNX shape {self.shape(v)}: only "
                                   "scalars and per-channel constants are supported")
        with np.errstate(divide="ignore"):
            if op == "Mul":
                return self.affine(v, vec, 0.0)
            if op == "Div":
                if cx:
                    raise self.unsupported("Div of a constant by a tensor")
                return self.affine(v, 1.0 / vec, 0.0)
        if op == "Sub":
            return self.affine(v, -1.0, vec) if cx else self.affine(v, 1.0, -vec)
        return self.affine(v, 1.0, vec)

    def computed(self, x: Val, y: Val, op) -> Val:
        """Two computed tensors: the same shape, or one of them one value per channel of the other (N, C, 1, 1)
        (squeeze-excite's scale)."""
        if op == "Div":
            raise self.unsupported(f"Div of two computed tensors (ONNX shapes {self.shape(x)} and {self.shape(y)})")
        if x.perm == y.perm and self.b.shape(x.ir) == self.b.shape(y.ir) and same_order(x.order, y.order):
            if op == "Sub":
                y = self.affine(y, -1.0, 0.0, sub="negate")
            return self.same_layout(x, self.emit("mul" if op == "Mul" else "add", [x.ir, y.ir]))
        for big, small, first in ((x, y, True), (y, x, False)):
            vec = self.channel_values(big, small)
            if vec is None:
                continue
            if op == "Sub":                 # x - y = x + (-y); with the map second: (-x) + y
                if first:
                    vec = self.affine(Val(vec, small.perm), -1.0, 0.0, sub="negate").ir
                else:
                    big = self.affine(big, -1.0, 0.0, sub="negate")
            return self.same_layout(big, self.emit("mul" if op == "Mul" else "add", [big.ir, vec]))
        raise self.unsupported(f"{op} of ONNX shapes {self.shape(x)} and {self.shape(y)} (broadcasting between "
                               "computed tensors: only one value per channel)")

    def channel_values(self, big: Val, small: Val) -> str | None:
        """An IR value of shape (1, 1, C) or (C,) holding ``small``'s values in ``big``'s channel order, when
        ``small`` is one value per channel of the map ``big`` in ONNX's broadcasting; else None."""
        full_big, full_small = (None,) + self.shape(big), (None,) + self.shape(small)
        if len(full_big) != 4 or len(full_small) != 4 or big.view is not None or small.view is not None:
            return None
        ch = big.perm.index(3)
        c = full_big[ch]
        if any(full_small[ax] != (c if ax == ch else 1) for ax in range(1, 4)) or small.order is not None:
            return None
        return small.ir if self.b.shape(small.ir) == (1, 1, c) else self.emit("reshape", small.ir, (1, 1, c),
                                                                                sub="per_channel")

    def op_Add(self, node, a, op="Add"):
        if len(node.input) != 2:
            raise self.err(f"{op} needs two inputs")
        return self.arith(self.operand(node.input[0]), self.operand(node.input[1]), op)

    def op_Sub(self, node, a):
        return self.op_Add(node, a, "Sub")

    def op_Mul(self, node, a):
        return self.op_Add(node, a, "Mul")

    def op_Div(self, node, a):
        return self.op_Add(node, a, "Div")

    def op_Neg(self, node, a):
        return self.affine(self.val(node.input[0]), -1.0, 0.0)

    def op_Sum(self, node, a):
        """n-ary Add (old model-zoo files): a chain of two-input adds."""
        names = [n for n in node.input if n]
        if not names:
            raise self.err("Sum without inputs")
        v = self.operand(names[0])
        for name in names[1:]:
            v = self.arith(v, self.operand(name), "Add")
        return v if isinstance(v, Val) else self.arith(v, v, "Add")    # (constants only: refused)

    # ------------------------------------------------------------------ activations
    def activation(self, x: Val, act: str, what: str) -> Val:
        if act not in ACTIVATIONS:
            raise self.unsupported(f"{what} needs the {act!r} activation, which the runtime does not have yet")
        return self.same_layout(x, self.emit("activation", x.ir, act))

    def op_Activation(self, node, a):
        """An activation ``patterns.py`` recognised in element-wise arithmetic."""
        return self.activation(self.val(node.input[0], view_ok=True), a["act"], f"{a['act']} (as arithmetic)")

    def op_Gelu(self, node, a):
        approx = a.get("approximate", "none")
        if approx not in ("none", "tanh"):
            raise self.err(f"Gelu with approximate={approx!r}")
        return self.activation(self.val(node.input[0], view_ok=True), "gelu_tanh" if approx == "tanh" else "gelu",
                               "Gelu")

    def op_HardSwish(self, node, a):
        return self.activation(self.val(node.input[0], view_ok=True), "hard_silu", "HardSwish")

    def op_HardSigmoid(self, node, a):
        """max(0, min(1, alpha x + beta)) = hard_sigmoid(6 alpha x + 6 beta - 3); Keras and torch use 1/6, 0.5."""
        x = self.val(node.input[0], view_ok=True)
        alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
        if not (math.isfinite(alpha) and math.isfinite(beta)):
            raise self.err(f"HardSigmoid with alpha={alpha}, beta={beta}")
        if abs(alpha - 1 / 6) > 1e-7 or abs(beta - 0.5) > 1e-7:
            if x.view is not None:
                raise self.unsupported(f"HardSigmoid (alpha={alpha}) of ONNX shape (N, {self.shape(x)})")
            x = self.affine(x, 6.0 * alpha, 6.0 * beta - 3.0, sub="scale")
        return self.activation(x, "hard_sigmoid", "HardSigmoid")

    def op_Clip(self, node, a):
        x = self.val(node.input[0], view_ok=True)
        if self.opset < 11:
            lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
        else:
            lo, hi = (self.const(node, i, required=False) for i in (1, 2))
            lo = -np.inf if lo is None else float(np.asarray(lo).reshape(-1)[0])
            hi = np.inf if hi is None else float(np.asarray(hi).reshape(-1)[0])
        if lo == 0.0 and hi == 6.0:
            act = "relu6"
        elif lo == 0.0 and hi >= 3.4e38:
            act = "relu"
        else:
            raise self.unsupported(f"Clip to [{lo}, {hi}] (only [0, 6] and [0, inf])")
        return self.same_layout(x, self.emit("activation", x.ir, act))

    def op_LeakyRelu(self, node, a):
        """No leaky act in the IR: for 0 <= alpha <= 1, leaky(x) = relu((1 - alpha) x) + alpha x, which is
        exact for x <= 0 and within an ulp for x > 0."""
        x = self.val(node.input[0])
        alpha = float(a.get("alpha", 0.01))
        if not 0.0 <= alpha <= 1.0:
            raise self.unsupported(f"LeakyRelu with alpha={alpha} (only 0 <= alpha <= 1)")
        pos = self.affine(x, 1.0 - alpha, 0.0, sub="positive")
        pos = self.emit("activation", pos.ir, "relu", sub="positive_relu")
        neg = self.affine(x, alpha, 0.0, sub="negative")
        return self.same_layout(x, self.emit("add", [pos, neg.ir]))

    def op_Softmax(self, node, a):
        x = self.val(node.input[0])
        r = len(x.perm)
        axis = a.get("axis", 1 if self.opset < 13 else -1)
        axis = axis + r if axis < 0 else axis
        full = (1,) + self.shape(x)
        ch = x.perm.index(r - 1)
        if self.opset < 13:     # softmax over the flattened trailing axes
            ok = 0 < axis <= ch and all(full[i] == 1 for i in range(axis, r) if i != ch)
        else:
            ok = axis == ch
        if not ok:
            raise self.unsupported(f"Softmax over axis {a.get('axis')} of ONNX shape {self.shape(x)} "
                                   "(only the channel/feature axis)")
        return self.same_layout(x, self.emit("softmax", x.ir))

    # ------------------------------------------------------------------ normalisation
    def op_LayerNormalization(self, node, a):
        """Over the trailing ONNX axes from ``axis``: supported where those are the channel axis (and axes of
        size 1), as torch's LayerNorm2d (Transpose -> LN -> Transpose) and ConvNeXt's head have it."""
        x = self.val(node.input[0])
        full = (None,) + self.shape(x)
        r = len(full)
        axis = a.get("axis", -1)
        axis = axis + r if axis < 0 else axis
        ch = x.perm.index(r - 1)
        c = full[ch]
        if not 0 < axis <= ch or any(full[i] != 1 for i in range(axis, r) if i != ch):
            raise self.unsupported(f"LayerNormalization over axes {axis}.. of ONNX shape (N, "
                                   f"{', '.join(map(str, full[1:]))}) (only the channel axis)")
        ws = {}
        for k, i in (("gamma", 1), ("beta", 2)):
            arr = self.const(node, i, required=k == "gamma")
            if arr is None:
                continue
            if np.size(arr) not in (1, c) or np.ndim(arr) > r - axis:
                raise self.err(f"LayerNormalization {k} of shape {np.shape(arr)} does not fit {c} channels")
            ws[k] = self.channels(x, np.broadcast_to(np.reshape(arr, -1), (c,)))
        if a.get("stash_type", 1) != 1:
            raise self.unsupported(f"LayerNormalization with stash_type={a['stash_type']}")
        eps = float(a.get("epsilon", 1e-5))
        if not eps > 0 or not math.isfinite(eps):
            raise self.err(f"LayerNormalization epsilon {eps} must be positive")
        return self.same_layout(x, self.emit("layer_norm", x.ir, eps, center="beta" in ws, weights=ws))

    def op_LRN(self, node, a):
        x = self.val(node.input[0])
        if len(x.perm) != 4 or x.perm[1] != 3:
            raise self.unsupported(f"LRN over axis 1 of ONNX shape (N, {', '.join(map(str, self.shape(x)))}), "
                                   "which is not the channel axis here")
        if "size" not in a or not isinstance(a["size"], int) or a["size"] < 1:
            raise self.err(f"LRN needs a positive size, got {a.get('size')}")
        alpha, beta, bias = (float(a.get(k, d)) for k, d in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)))
        if not all(math.isfinite(v) for v in (alpha, beta, bias)) or bias <= 0 or alpha < 0:
            raise self.unsupported(f"LRN with alpha={alpha}, beta={beta}, bias={bias} (bias > 0, alpha >= 0)")
        return self.same_layout(x, self.emit("lrn", x.ir, a["size"], alpha, beta, bias))
