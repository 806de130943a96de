"""Import an ONNX model file as a runtime graph (NHWC inside) and a Model that keeps the file's interface.

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
axis. The per-op converters live in nets/onnx_ops.py; this file reads the file, walks the graph,
evaluates constants and wraps the result as a Model.

    from nets.onnx_import import load_onnx
    model = load_onnx("resnet50.onnx", device="cpu", threads=2)
    y = model(x_nchw)

``onnx`` is optional (imported on use). Everything that goes wrong ends in a nets.errors type naming
the file and the layer; unsupported ops are collected and reported together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from nets.errors import InputError, KernelnetsError, ModelError, UnsupportedError, WeightsError
from nets.ir import Graph, GraphBuilder
from nets.model import Model
from nets.onnx_ops import IDENT2, IDENT4, NCHW, OpConverters, _Val

MAX_ELEMENTS = 1 << 28          # per sample per activation: 1 GiB of float32
MAX_WEIGHT_ELEMENTS = 1 << 31
SUPPORTED = frozenset({
    "Conv", "BatchNormalization", "Relu", "Clip", "LeakyRelu", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "Add", "Sub", "Mul", "Div", "Concat", "Gemm", "MatMul", "Flatten", "Reshape",
    "Transpose", "Softmax", "Pad", "Dropout", "Identity", "Constant", "Cast", "ReduceMean", "ReduceMax",
})
# evaluated at load time when every input is a constant (shape arithmetic the exporters leave behind)
FOLDABLE = frozenset({"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "ConstantOfShape", "Slice",
                      "Reshape", "Transpose", "Add", "Sub", "Mul", "Div", "Identity", "Dropout"})
MAX_FOLDED_ELEMENTS = 1 << 24
# folded ops that only move shape entries around (they may carry the dynamic batch size along)
BATCH_MOVES = frozenset({"Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Reshape", "Transpose", "Identity",
                         "Dropout", "Cast"})
# ops that do not care whether the input is NCHW or NHWC: the input layout is read past them
LAYOUT_FREE = frozenset({"Cast", "Identity", "Dropout", "Pad", "Relu", "Clip", "LeakyRelu", "Add", "Sub", "Mul",
                         "Div"})
_DTYPES = {1: (np.float32, "float_data"), 2: (np.uint8, "int32_data"), 3: (np.int8, "int32_data"),
           5: (np.int16, "int32_data"), 6: (np.int32, "int32_data"), 7: (np.int64, "int64_data"),
           9: (np.bool_, "int32_data"), 10: (np.float16, None), 11: (np.float64, "double_data")}


def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the environment
        raise ModelError("loading ONNX models needs the 'onnx' package: pip install onnx") from None
    return onnx


def parse_onnx(data: bytes, source: str = "<bytes>"):
    """Bytes -> ``onnx.ModelProto``; WeightsError for anything that is not a readable ONNX model."""
    if data[:8] == b"\x89HDF\r\n\x1a\n":
        raise WeightsError(f"{source}: this is an HDF5 (Keras .h5) file, not ONNX; pass it as weights= "
                           "together with an architecture name")
    if data[:4] == b"PK\x03\x04":
        raise WeightsError(f"{source}: this is a zip archive (a Keras .keras file?), not ONNX")
    if not data:
        raise WeightsError(f"{source}: the file is empty")
    m = _onnx().ModelProto()
    try:
        m.ParseFromString(data)
    except Exception as e:   # protobuf's DecodeError and friends, whatever the implementation
        raise WeightsError(f"{source}: not a valid ONNX file (truncated or corrupt?): {e}") from None
    if not m.HasField("graph") or not m.graph.node or not m.opset_import:
        raise WeightsError(f"{source}: does not look like an ONNX model (no graph nodes or no opset)")
    return m


def read_onnx(path):
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise WeightsError(f"{path}: cannot read the file: {e.strerror or e}") from None
    return parse_onnx(data, path)


class _Importer(OpConverters):
    def __init__(self, m, source: str):
        self.m, self.src = m, source
        opsets = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")]
        if not opsets:
            raise UnsupportedError(f"{source}: the model imports no standard ONNX opset")
        self.opset = int(opsets[0])
        self.consts: dict[str, np.ndarray] = {}
        self.vals: dict[str, _Val] = {}
        self.missing: dict[str, str] = {}
        self.poisoned: set[str] = set()
        self.batch_dims: dict[str, np.ndarray] = {}    # constants holding the dynamic batch size: where
        self.edge_pads: dict[str, tuple] = {}           # edge-mode Pad outputs: (input _Val, pad), for MaxPool
        self.problems: list[str] = []
        self.names: set[str] = set()
        self.b = GraphBuilder(m.graph.name or os.path.splitext(os.path.basename(source))[0] or "onnx")
        self.layer = "?"

    # ------------------------------------------------------------------ reading
    def array(self, t) -> np.ndarray:
        where = f"{self.src}: tensor {t.name!r}"
        dims = [int(d) for d in t.dims]
        size = 1
        for d in dims:
            if d < 0:
                raise WeightsError(f"{where} has a negative dimension: {dims}")
            size *= d
        if size > MAX_WEIGHT_ELEMENTS:
            raise WeightsError(f"{where} declares an absurd shape {dims} ({size} elements)")
        if t.data_location == 1 or len(t.external_data):
            raise WeightsError(f"{where} keeps its data in an external file, which is not supported; "
                               "save the model with its weights inside")
        if t.data_type not in _DTYPES:
            raise WeightsError(f"{where} has ONNX data type {t.data_type}, which is not supported")
        dtype, field = _DTYPES[t.data_type]
        dtype = np.dtype(dtype).newbyteorder("<")
        if t.raw_data:
            if len(t.raw_data) != size * dtype.itemsize:
                raise WeightsError(f"{where}: shape {dims} needs {size * dtype.itemsize} bytes, the file holds "
                                   f"{len(t.raw_data)}")
            return np.frombuffer(t.raw_data, dtype).reshape(dims).copy()
        vals = getattr(t, field) if field else t.int32_data
        if len(vals) != size:
            raise WeightsError(f"{where}: shape {dims} needs {size} values, the file holds {len(vals)}")
        if t.data_type == 10:
            return np.array(vals, np.uint16).view(np.float16).reshape(dims)
        return np.array(vals, dtype).reshape(dims)

    def attrs(self, node) -> dict:
        out = {}
        for a in node.attribute:
            kind = a.type
            if kind == 1:
                out[a.name] = float(a.f)
            elif kind == 2:
                out[a.name] = int(a.i)
            elif kind == 3:
                out[a.name] = a.s.decode("utf-8", "replace")
            elif kind == 4:
                out[a.name] = self.array(a.t)
            elif kind == 6:
                out[a.name] = [float(v) for v in a.floats]
            elif kind == 7:
                out[a.name] = [int(v) for v in a.ints]
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

    def val(self, name: str) -> _Val:
        if name in self.vals:
            return self.vals[name]
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

    def shape(self, v: _Val) -> tuple:
        """Per-sample ONNX shape of a value."""
        batched = (None,) + self.b.shape(v.ir)
        return tuple(batched[p] for p in v.perm)[1:]

    def map(self, name: str) -> _Val:
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
        size = 1
        for d in self.b.shape(v):
            size *= d
        if size > MAX_ELEMENTS:
            raise self.err(f"output shape {self.b.shape(v)} is absurdly large ({size} elements per sample)")
        return v

    # ------------------------------------------------------------------ whole graph
    def run(self):
        g = self.m.graph
        for t in g.initializer:
            self.consts[t.name] = self.array(t)
        inputs = [v for v in g.input if v.name not in self.consts]
        if len(inputs) != 1:
            raise ModelError(f"{self.src}: the model has {len(inputs)} runtime inputs; only one is supported")
        self.input(inputs[0])
        for i, node in enumerate(g.node):
            self.layer = node.name or (node.output[0] if node.output else "") or f"{node.op_type}_{i}"
            if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED | FOLDABLE:
                self.problems.append(f"{self.layer} ({node.domain + '.' if node.domain else ''}{node.op_type})")
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
        return self.b.build([v.ir for v in outs]), self.vals[self.input_name], outs, [o.name for o in g.output]

    def poison(self, node):
        """A node that could not be converted: its consumers are skipped (not reported again)."""
        for name in node.output:
            self.vals.pop(name, None)
            self.poisoned.add(name)

    def input(self, vi):
        self.layer = vi.name
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or tt.elem_type != 1:
            raise ModelError(f"{self.src}: input {vi.name!r} must be a float32 tensor")
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if len(dims) not in (2, 4) or any(d is None or d < 1 for d in dims[1:]):
            raise ModelError(f"{self.src}: input {vi.name!r} has shape {dims}; need (N, C, H, W), (N, H, W, C) "
                             "or (N, F) with fixed sizes after the batch axis")
        size = 1
        for d in dims[1:]:
            size *= d
        if size > MAX_ELEMENTS:
            raise ModelError(f"{self.src}: input {vi.name!r} has an absurd shape {dims}")
        self.batch = dims[0]
        if len(dims) == 2:
            shape, perm = (dims[1],), IDENT2
        elif self.channels_last(vi.name):
            shape, perm = tuple(dims[1:]), IDENT4
        else:
            shape, perm = (dims[2], dims[3], dims[1]), NCHW
        self.names.add(vi.name)
        self.input_name = vi.name
        self.vals[vi.name] = _Val(self.b.input(shape, name=vi.name), perm)

    def channels_last(self, name) -> bool:
        """Is the 4-D input NHWC? Follow it through layout-free ops (casts, padding, elementwise) to the first
        op that reads a layout: a Transpose to NCHW means NHWC (Keras and our exporter write that, Keras
        after a few float32 Casts or a ZeroPadding2D Pad); a Conv or pool reading it directly means NCHW."""
        users: dict[str, list] = {}
        for n in self.m.graph.node:
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
            arr = self.fold(node, op, a)
            if arr.size > MAX_FOLDED_ELEMENTS:
                raise self.err(f"the constant {op} makes has an absurd shape {arr.shape}")
            self.consts[out] = arr
            return
        if op not in SUPPORTED:
            raise self.unsupported(f"{op} on computed tensors (only on constants)")
        v = getattr(self, "op_" + op)(node, a)
        if v is not None:               # None: an edge-mode Pad, kept aside for the MaxPool after it
            self.vals[out] = v

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
                v = self.val(node.input[0])
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
            to = a.get("to", 1)
            if to not in _DTYPES:
                raise self.unsupported(f"Cast to ONNX data type {to}")
            return x.astype(_DTYPES[to][0])
        if op == "ConstantOfShape":
            shape = [int(d) for d in np.reshape(x, -1)]
            if any(d < 0 for d in shape) or int(np.prod(shape)) > MAX_FOLDED_ELEMENTS:
                raise self.err(f"ConstantOfShape with an absurd shape {shape}")
            value = a.get("value", np.zeros(1, np.float32))
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


# ---------------------------------------------------------------------- public API

@dataclass
class OnnxInterface:
    """How the file's input and outputs relate to the graph's NHWC values."""
    input_name: str
    input_perm: tuple               # ONNX input = IR input .transpose(input_perm)
    input_shape: tuple              # per sample, as the file declares it
    output_names: list
    outputs: list                   # _Val per output

    @property
    def layout(self) -> str:
        return {NCHW: "NCHW", IDENT4: "NHWC", IDENT2: "NF"}[self.input_perm]


def onnx_to_graph(source, name: str | None = None) -> tuple[Graph, OnnxInterface]:
    """An ONNX file path, bytes or ModelProto -> (source graph with weights, interface)."""
    if isinstance(source, (bytes, bytearray)):
        m, src = parse_onnx(bytes(source), name or "<bytes>"), name or "<bytes>"
    elif isinstance(source, (str, os.PathLike)):
        m, src = read_onnx(source), os.fspath(source)
    else:
        m, src = source, name or "<model>"
    imp = _Importer(m, src)
    graph, inp, outs, names = imp.run()
    return graph, OnnxInterface(imp.input_name, inp.perm, imp.shape(inp), names, outs)


class OnnxModel(Model):
    """A Model that speaks the ONNX file's layout: an NCHW model takes (N, C, H, W) and returns NCHW
    maps (outputs in the file's element order); ``input_shape`` stays the runtime's NHWC shape and
    ``interface_shape`` is what callers pass."""

    def __init__(self, graph: Graph, interface: OnnxInterface, **kw):
        super().__init__(graph, **kw)
        self.interface = interface
        self.layout = interface.layout
        self.output_names = list(interface.output_names)

    @property
    def interface_shape(self) -> tuple:
        return tuple(self.interface.input_shape)

    def check_input(self, x) -> np.ndarray:
        if self.interface.input_perm != NCHW:
            return super().check_input(x)
        if not isinstance(x, np.ndarray):
            raise InputError(f"model {self.name!r} expects a numpy array, got {type(x).__name__}")
        c, h, w = self.interface_shape
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
            raise InputError(f"model {self.name!r} expects input of shape (N, {c}, {h}, {w}) (NCHW, as the ONNX "
                             f"file declares), got {tuple(x.shape)}")
        return super().check_input(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))

    def to_interface(self, outs: list) -> list:
        res = []
        for y, v in zip(outs, self.interface.outputs):
            if v.perm not in (IDENT4, IDENT2):
                y = y.transpose(v.perm)
            if v.order is not None:
                y = y.reshape(len(y), -1)[:, v.order]
            res.append(y.copy() if not y.flags.c_contiguous else y)
        return res


def load_onnx(path, device: str = "cpu", threads: int | None = None, fuse: bool = True, **model_kw) -> OnnxModel:
    """An ONNX model file as a runnable model (see ``OnnxModel`` for the input/output layout)."""
    graph, interface = onnx_to_graph(path)
    return OnnxModel(graph, interface, device=device, threads=threads, weights_source=os.fspath(path),
                     fuse=fuse, **model_kw)
