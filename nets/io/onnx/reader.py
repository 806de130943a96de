"""Read an ONNX model into a runtime graph (NHWC inside).

ONNX graphs are NCHW; the runtime is NHWC. Every runtime tensor of the ONNX graph is tracked as an IR
value plus ``perm``, the axis order that turns the batched IR tensor into the ONNX tensor: NCHW maps
carry ``(0, 3, 1, 2)``, NHWC maps and vectors the identity. A Transpose between the two orders changes
only ``perm`` (no node), so a model with an NHWC input followed by Transpose -> NCHW (what our exporter
and Keras' converters write) imports without a single copy. Flattening an NCHW map of more than one
pixel yields the C, H, W element order while ours is H, W, C: the vector keeps ``order`` (ONNX element i
is IR element ``order[i]``) and the Gemm/MatMul after it gets its weight rows permuted instead, which
is exact and free. Inputs and outputs keep the file's layout: an NCHW model takes and returns NCHW.

Keras' own exports (``model.export(path, format="onnx")``) take NHWC input and wrap every layer in
float32 Casts (no-ops here); their 'same' padding and Flatten are shape arithmetic on ``Shape(x)``, folded
at load time, with the dynamic batch entry tracked so a Reshape target built from it keeps the batch
axis. Tensors of other ranks (a channel shuffle's 5-D view, torch's (N, C, 1) between two Unsqueezes) are
lazy views until a Reshape or Transpose brings them back (``layout.py``). Before the walk, ``patterns.py``
replaces exporter idioms (activations written as arithmetic, torch's decomposed LRN) by one node each.
The per-op converters live in ``converters.py``, ``elementwise.py`` and ``layout.py``, constant folding in
``fold.py``, tensor decoding (external data, size guards) in ``tensors.py``; this file walks the graph;
``model.py`` wraps the result as a Model that keeps the file's layout.

    from nets.io.onnx import load_onnx
    model = load_onnx("resnet50.onnx", device="cpu", threads=2)
    y = model(x_nchw)

``onnx`` is optional (imported on use). Everything that goes wrong ends in a nets.errors type naming
the file and the layer; unsupported ops are collected and reported together.
"""

from __future__ import annotations

import math
import os

import numpy as np

from kernels import ACTIVATIONS
from nets.errors import KernelnetsError, ModelError, UnsupportedError
from nets.graph.builder import GraphBuilder
from nets.io.onnx import patterns
from nets.io.onnx.converters import IDENT2, IDENT4, NCHW, OpConverters, Val
from nets.io.onnx.fold import ConstantFolding
from nets.io.onnx.proto import onnx_module
from nets.io.onnx.tensors import check_memory, decode

# ONNX element-wise ops that are one of the runtime's activations: Relu -> "relu", Tanh -> "tanh" (ops with
# attributes or other names, such as Gelu, HardSigmoid and HardSwish, have converters of their own); the
# runtime's relu6 or silu are no ONNX ops
ONNX_UNARY = frozenset({"Relu", "Sigmoid", "Tanh", "Elu", "Selu", "Celu", "Softplus", "Softsign", "Mish",
                        "ThresholdedRelu", "Erf", "Exp", "Log", "Abs", "Sqrt", "Sin", "Cos"})
ACTIVATION_OPS = {"Sigmoid": "sigmoid", "Tanh": "tanh"} | {
    op: a for a in ACTIVATIONS if a and (op := "".join(w.capitalize() for w in a.split("_"))) in ONNX_UNARY}
SUPPORTED = frozenset(ACTIVATION_OPS) | frozenset({
    "Conv", "BatchNormalization", "Clip", "LeakyRelu", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "Add", "Sub", "Mul", "Div", "Sum", "Neg", "Concat", "Gemm", "MatMul", "Flatten", "Reshape",
    "Squeeze", "Unsqueeze", "Transpose", "Slice", "Split", "Gather", "Softmax", "Pad", "Dropout", "Identity",
    "Constant", "Cast", "ReduceMean", "ReduceMax", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Gelu",
    "LayerNormalization", "LRN",
})
# evaluated at load time when every input is a constant (shape arithmetic the exporters leave behind)
FOLDABLE = frozenset({"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "ConstantOfShape", "Slice",
                      "Reshape", "Transpose", "Add", "Sub", "Mul", "Div", "Sum", "Neg", "Identity", "Dropout"})
# ops that do not care whether the input is NCHW or NHWC: the input layout is read past them
LAYOUT_FREE = frozenset(ACTIVATION_OPS) | frozenset({"Cast", "Identity", "Dropout", "Pad", "Clip", "LeakyRelu", "Add",
                                                    "Sub", "Mul", "Div", "Sum", "Sigmoid", "Tanh", "HardSigmoid",
                                                    "HardSwish", "Gelu", "Erf", "Activation"})


class Importer(OpConverters, ConstantFolding):
    def __init__(self, m, source: str, base_dir: str | None = None):
        self.m, self.src, self.base_dir = m, source, base_dir
        opsets = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")]
        if not opsets:
            raise UnsupportedError(f"{source}: the model imports no standard ONNX opset")
        self.opset = int(opsets[0])
        self.consts: dict[str, np.ndarray] = {}
        self.vals: dict[str, Val] = {}
        self.missing: dict[str, str] = {}
        self.poisoned: set[str] = set()
        self.batch_dims: dict[str, np.ndarray] = {}    # constants holding the dynamic batch size: where
        self.edge_pads: dict[str, tuple] = {}           # edge-mode Pad outputs: (input Val, pad), for MaxPool
        self.problems: list[str] = []
        self.names: set[str] = set()
        self.b = GraphBuilder(m.graph.name or os.path.splitext(os.path.basename(source))[0] or "onnx")
        self.layer = "?"

    # ------------------------------------------------------------------ reading
    def array(self, t) -> np.ndarray:
        """An initializer / attribute tensor as a numpy array, its size checked against the file first."""
        return decode(t, f"{self.src}: tensor {t.name!r}", self.base_dir)

    def attrs(self, node) -> dict:
        """Attribute name -> value (strings decoded, tensors as arrays, lists as lists)."""
        A = onnx_module().AttributeProto
        out = {}
        for a in node.attribute:
            if a.type == A.TENSOR:
                out[a.name] = self.array(a.t)
            elif a.type == A.STRING:
                out[a.name] = a.s.decode("utf-8", "replace")
            elif a.type in (A.FLOAT, A.INT):
                out[a.name] = float(a.f) if a.type == A.FLOAT else int(a.i)
            elif a.type in (A.FLOATS, A.INTS):
                out[a.name] = [float(v) for v in a.floats] if a.type == A.FLOATS else [int(v) for v in a.ints]
        return out

    def err(self, msg, kind=ModelError):
        return kind(f"{self.src}: layer {self.layer!r}: {msg}")

    def unsupported(self, msg):
        return self.err(msg, UnsupportedError)

    def ints(self, a, key, n, default, lo=0):
        v = a.get(key, default)
        v = [v] * n if isinstance(v, int) else list(v)
        if len(v) != n or any(not isinstance(i, int) or i < lo or i > 1 << 20 for i in v):
            raise self.err(f"attribute {key}={v} must be {n} integers in [{lo}, {1 << 20}]")
        return tuple(v)

    def val(self, name: str, view_ok: bool = False) -> Val:
        if name in self.vals:
            v = self.vals[name]
            if v.view is not None and not view_ok:
                raise self.unsupported(f"reads {name!r} of ONNX shape (N, {', '.join(map(str, v.view))}): only "
                                       "(N, features) and (N, C, H, W) tensors are supported here")
            return v
        if name in self.missing:
            raise self.unsupported(f"reads {self.missing[name]}, which the runtime does not compute")
        if name in self.edge_pads:
            raise self.unsupported(f"reads {name!r}, an edge-mode Pad (supported only right before MaxPool)")
        if name in self.consts:
            raise self.unsupported(f"computes on the constant {name!r} only; fold constants before export")
        raise self.err(f"reads tensor {name!r}, which no earlier node computes and no initializer holds")

    def const(self, node, i, required=True, batch_ok=False):
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            if required:
                raise self.err(f"input {i} is missing")
            return None
        if name not in self.consts:
            if name in self.vals:
                raise self.unsupported(f"input {i} ({name!r}) must be a constant (an initializer), it is computed")
            raise self.err(f"reads tensor {name!r}, which no earlier node computes and no initializer holds")
        if name in self.batch_dims and not batch_ok:
            raise self.unsupported(f"input {i} ({name!r}) depends on the dynamic batch size; export with a fixed "
                                   "batch size")
        return self.consts[name]

    def shape(self, v: Val) -> tuple:
        """Per-sample ONNX shape of a value."""
        if v.view is not None:
            return tuple(v.view)
        batched = (None,) + self.b.shape(v.ir)
        return tuple(batched[p] for p in v.perm)[1:]

    def map(self, name: str) -> Val:
        v = self.val(name)
        if v.perm != NCHW:
            raise self.unsupported(f"needs an NCHW feature map, got {name!r} of ONNX shape (N, "
                                   f"{', '.join(map(str, self.shape(v)))}) in another layout")
        return v

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def emit(self, method, *args, weights=None, sub=None, **kw) -> str:
        name = self.fresh(f"{self.layer}/{sub}" if sub else self.layer)
        v = getattr(self.b, method)(*args, name=name, **kw)
        node = self.b.nodes[-1]
        for k, want in node.weight_shapes.items():
            arr = np.ascontiguousarray(weights[k], np.float32)
            if arr.shape != tuple(want):
                raise self.err(f"weight {k!r} has shape {arr.shape}, the layer needs {tuple(want)}")
            node.weights[k] = arr
        check_memory(4 * math.prod(self.b.shape(v)), f"output shape {self.b.shape(v)} (per sample)")
        return v

    # ------------------------------------------------------------------ whole graph
    def run(self):
        g = self.m.graph
        for t in g.initializer:
            self.consts[t.name] = self.array(t)
        inputs = [v for v in g.input if v.name not in self.consts]
        if len(inputs) != 1:
            raise ModelError(f"{self.src}: the model has {len(inputs)} runtime inputs; only one is supported")
        self.nodes = self.rewrite(g)
        self.input(inputs[0])
        for i, node in enumerate(self.nodes):
            self.layer = node.name or (node.output[0] if node.output else "") or f"{node.op_type}_{i}"
            ours = node.domain == patterns.DOMAIN and node.op_type == "Activation"
            if not ours and (node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED | FOLDABLE):
                self.problems.append(f"{self.layer} ({node.domain + '.' if node.domain else ''}{node.op_type})")
                self.poison(node)
                continue
            lacking = self.lacking_activation(node)
            if lacking:             # reported even after an unsupported node: it is unsupported on its own
                what = "arithmetic that computes" if ours else node.op_type
                self.problems.append(f"{self.layer!r}: {what} needs the {lacking!r} activation, which the "
                                     "runtime does not have yet")
                self.poison(node)
                continue
            if any(name in self.poisoned for name in node.input):
                self.poison(node)
                continue
            try:
                self.node(node, node.op_type, self.attrs(node))
            except UnsupportedError as e:
                self.problems.append(str(e).replace(f"{self.src}: layer ", "", 1))
                self.poison(node)
            except KernelnetsError as e:
                raise type(e)(str(e) if str(e).startswith(self.src) else f"{self.src}: layer {self.layer!r}: {e}") \
                    from None
            except (ValueError, TypeError, IndexError, KeyError, ZeroDivisionError, OverflowError) as e:
                raise self.err(f"{node.op_type} cannot be converted: {e}") from None
        if self.problems:
            raise UnsupportedError(f"{self.src}: {len(self.problems)} layer(s) the runtime does not support: "
                                   + "; ".join(self.problems))
        outs = []
        for o in g.output:
            self.layer = o.name
            v = self.val(o.name)
            if v.ir == self.b.inputs[0]:
                raise ModelError(f"{self.src}: output {o.name!r} is the input itself")
            outs.append(v)
        self.prune([v.ir for v in outs])
        return self.b.build([v.ir for v in outs]), self.vals[self.input_name], outs, [o.name for o in g.output]

    def rewrite(self, g) -> list:
        """The node list with exporter idioms (activations written as arithmetic, torch's LRN) replaced by
        one node each (``patterns.py``). The recognition only reads the file; where a damaged file trips it,
        the nodes are converted one by one as they are."""
        nodes = list(g.node)
        try:
            small = {t.name: self.consts[t.name] for t in g.initializer if self.consts[t.name].size <= 64}
            return patterns.rewrite(nodes, small, self.attrs, [o.name for o in g.output], self.opset)
        except (ValueError, TypeError, IndexError, KeyError, AttributeError, KernelnetsError):
            return nodes

    def prune(self, outputs):
        """Drop nodes no output depends on (a file's dead branches)."""
        need, keep = set(outputs), []
        for n in reversed(self.b.nodes):
            if n.output in need or n.op == "input":
                keep.append(n)
                need.update(n.inputs)
        self.b.nodes[:] = keep[::-1]

    def lacking_activation(self, node) -> str | None:
        """The activation an activation node needs when the runtime lacks it."""
        op = node.op_type
        if op == "Gelu":
            act = "gelu_tanh" if self.attrs(node).get("approximate") == "tanh" else "gelu"
        elif op == "Activation" and node.domain == patterns.DOMAIN:
            act = self.attrs(node).get("act")
        else:
            act = {"HardSwish": "hard_silu", "HardSigmoid": "hard_sigmoid"}.get(op, ACTIVATION_OPS.get(op))
        return act if act is not None and act not in ACTIVATIONS else None

    def poison(self, node):
        """A node that could not be converted: its consumers are skipped (not reported again)."""
        for name in node.output:
            self.vals.pop(name, None)
            self.poisoned.add(name)

    def input(self, vi):
        self.layer = vi.name
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or tt.elem_type != onnx_module().TensorProto.FLOAT:
            raise ModelError(f"{self.src}: input {vi.name!r} must be a float32 tensor")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if len(dims) not in (2, 4) or any(d is None or d < 1 for d in dims[1:]):
            raise ModelError(f"{self.src}: input {vi.name!r} has shape {dims}; need (N, C, H, W), (N, H, W, C) "
                             "or (N, F) with fixed sizes after the batch axis")
        check_memory(4 * math.prod(dims[1:]), f"{self.src}: input {vi.name!r} of shape {dims}")
        self.batch = dims[0]
        if len(dims) == 2:
            shape, perm = (dims[1],), IDENT2
        elif self.channels_last(vi.name):
            shape, perm = tuple(dims[1:]), IDENT4
        else:
            shape, perm = (dims[2], dims[3], dims[1]), NCHW
        self.names.add(vi.name)
        self.input_name = vi.name
        self.vals[vi.name] = Val(self.b.input(shape, name=vi.name), perm)

    def channels_last(self, name) -> bool:
        """Is the 4-D input NHWC? Follow it through layout-free ops (casts, padding, elementwise) to the first
        op that reads a layout: a Transpose to NCHW means NHWC (Keras and our exporter write that, Keras
        after a few float32 Casts or a ZeroPadding2D Pad); a Conv or pool reading it directly means NCHW."""
        users: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                users.setdefault(i, []).append(n)
        todo, seen = [name], {name}
        while todo:
            for n in users.get(todo.pop(0), []):
                if n.op_type == "Transpose":
                    return list(self.attrs(n).get("perm", [])) == list(NCHW)
                if n.op_type in LAYOUT_FREE:
                    todo += [o for o in n.output[:1] if o not in seen]
                    seen.update(n.output[:1])
                elif n.op_type != "Shape":
                    return False
        return False

    # ------------------------------------------------------------------ nodes
    def node(self, node, op, a):
        out = node.output[0] if node.output else ""
        if not out:
            raise self.err("the node has no output")
        for extra in node.output[1:]:
            if extra:
                self.missing[extra] = f"output {extra!r} of {op} {self.layer!r} (training/indices outputs)"
        if op == "Constant":
            self.consts[out] = self.constant(a)
            return
        ins = [n for n in node.input if n]
        if op == "Shape" or (op in FOLDABLE and ins and all(n in self.consts for n in ins)):
            self.consts[out] = self.fold(node, op, a)
            return
        if op not in SUPPORTED and op != "Activation":
            raise self.unsupported(f"{op} on computed tensors (only on constants)")
        if hasattr(self, "op_" + op):
            v = getattr(self, "op_" + op)(node, a)
        else:
            x = self.val(node.input[0], view_ok=True)
            v = self.activation(x, ACTIVATION_OPS[op], op)
        if isinstance(v, list):         # one Val per output (Split)
            for name, part in zip(node.output, v):
                if name:
                    self.missing.pop(name, None)
                    self.vals[name] = part
        elif v is not None:             # None: an edge-mode Pad, kept aside for the MaxPool after it
            self.vals[out] = v
