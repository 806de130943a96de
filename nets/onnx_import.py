"""Import an ONNX model file as a runtime graph (NHWC inside) and a Model that keeps the file's interface.

ONNX graphs are NCHW; the runtime is NHWC. Every runtime tensor of the ONNX graph is tracked as an IR
value plus ``perm``, the axis order that turns the batched IR tensor into the ONNX tensor: NCHW maps
carry ``(0, 3, 1, 2)``, NHWC maps and vectors the identity. A Transpose between the two orders changes
only ``perm`` (no node), so a model with an NHWC input followed by Transpose -> NCHW (what our exporter
and Keras' converters write) imports without a single copy. Flattening an NCHW map of more than one
pixel yields the C, H, W element order while ours is H, W, C: the vector keeps ``order`` (ONNX element i
is IR element ``order[i]``) and the Gemm/MatMul after it gets its weight rows permuted instead, which
is exact and free. Inputs and outputs keep the file's layout: an NCHW model takes and returns NCHW.

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

from kernels import same_padding
from nets.errors import InputError, KernelnetsError, ModelError, UnsupportedError, WeightsError
from nets.ir import Graph, GraphBuilder
from nets.model import Model, set_threads

NCHW, IDENT4, IDENT2 = (0, 3, 1, 2), (0, 1, 2, 3), (0, 1)
MAX_ELEMENTS = 1 << 28          # per sample per activation: 1 GiB of float32
MAX_WEIGHT_ELEMENTS = 1 << 31
SUPPORTED = frozenset({
    "Conv", "BatchNormalization", "Relu", "Clip", "LeakyRelu", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "Add", "Sub", "Mul", "Div", "Concat", "Gemm", "MatMul", "Flatten", "Reshape",
    "Transpose", "Softmax", "Pad", "Dropout", "Identity", "Constant",
})
# evaluated at load time when every input is a constant (shape arithmetic the exporters leave behind)
FOLDABLE = frozenset({"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "ConstantOfShape", "Slice",
                      "Reshape", "Transpose", "Add", "Sub", "Mul", "Div", "Identity", "Dropout"})
MAX_FOLDED_ELEMENTS = 1 << 24
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


@dataclass
class _Val:
    ir: str                         # IR value name
    perm: tuple                     # ONNX tensor = batched IR tensor .transpose(perm)
    order: np.ndarray | None = None  # vectors only: ONNX element i is IR element order[i]


def _flat_order(shape, perm):
    """``order`` of the vector that flattens an (H, W, C) IR map viewed with ``perm``."""
    if perm == IDENT4 or shape[0] * shape[1] == 1 or shape[2] == 1:
        return None
    return np.arange(shape[0] * shape[1] * shape[2]).reshape(shape).transpose(2, 0, 1).ravel()


class _Importer:
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
        if name in self.consts:
            raise self.unsupported(f"computes on the constant {name!r} only; fold constants before export")
        raise self.err(f"reads tensor {name!r}, which no earlier node computes and no initializer holds")

    def const(self, node, i, required=True):
        name = node.input[i] if i < len(node.input) else ""
        if not name:
            if required:
                raise self.err(f"input {i} is missing")
            return None
        if name not in self.consts:
            if name in self.vals:
                raise self.unsupported(f"input {i} ({name!r}) must be a constant (an initializer), it is computed")
            raise self.err(f"reads tensor {name!r}, which no earlier node computes and no initializer holds")
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
        users = [n for n in self.m.graph.node if vi.name in n.input]
        if len(dims) == 2:
            shape, perm = (dims[1],), IDENT2
        elif users and all(n.op_type == "Transpose" and list(self.attrs(n).get("perm", [])) == list(NCHW)
                           for n in users):
            shape, perm = tuple(dims[1:]), IDENT4
        else:
            shape, perm = (dims[2], dims[3], dims[1]), NCHW
        self.names.add(vi.name)
        self.input_name = vi.name
        self.vals[vi.name] = _Val(self.b.input(shape, name=vi.name), perm)

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
        self.vals[out] = getattr(self, "op_" + op)(node, a)

    def fold(self, node, op, a) -> np.ndarray:
        """numpy evaluation of a node whose inputs are all constants."""
        if op == "Shape":
            v = self.val(node.input[0])
            if not self.batch:
                raise self.unsupported("Shape of a tensor with a dynamic batch size; export with a fixed batch "
                                       "or with the shape arithmetic folded")
            full = np.array((self.batch,) + self.shape(v), np.int64)
            return full[a.get("start", 0):a.get("end", len(full))]
        xs = [self.consts[n] if n else None for n in node.input]
        x = xs[0]
        if op in ("Identity", "Dropout"):
            return x
        if op in ("Add", "Sub", "Mul", "Div"):
            fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op]
            if op == "Div" and x.dtype.kind in "iu":
                fn = np.floor_divide
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

    def same_layout(self, v: _Val, ir: str) -> _Val:
        return _Val(ir, v.perm, v.order)

    def op_Identity(self, node, a):
        return self.val(node.input[0])

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
        if group == 1:
            if i != c:
                raise self.err(f"weight {w.shape} expects {i} input channels, the input has {c}")
            ws["kernel"] = w.transpose(2, 3, 1, 0)
            return self.same_layout(x, self.emit("conv2d", x.ir, o, (kh, kw), s, pad, bias is not None,
                                                 weights=ws))
        if group == c and i == 1 and o % c == 0:
            m = o // c
            ws["depthwise_kernel"] = w.reshape(c, m, kh, kw).transpose(2, 3, 0, 1)
            return self.same_layout(x, self.emit("depthwise_conv2d", x.ir, (kh, kw), s, pad, m, bias is not None,
                                                 weights=ws))
        raise self.unsupported(f"grouped convolution with group={group} on {c} channels (only 1 or depthwise)")

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

    def channels(self, v: _Val, vec):
        """A per-channel vector in ONNX order -> IR order."""
        vec = np.asarray(vec, np.float64)
        if v.order is None:
            return vec
        out = np.empty_like(vec)
        out[v.order] = vec
        return out

    def affine(self, v: _Val, scale, shift, sub=None) -> _Val:
        """x * scale + shift per channel, as a batch norm (eps 0, var 1): folded into a conv/dense before it,
        a channel_affine otherwise."""
        c = self.b.shape(v.ir)[-1]
        ws = dict(gamma=np.broadcast_to(scale, (c,)), beta=np.broadcast_to(shift, (c,)),
                  moving_mean=np.zeros(c), moving_variance=np.ones(c))
        return self.same_layout(v, self.emit("batch_norm", v.ir, 0.0, weights=ws, sub=sub))

    def per_channel(self, v: _Val, const):
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

    def op_Add(self, node, a, sign=1.0, op="Add"):
        names = list(node.input[:2])
        if len(names) != 2:
            raise self.err(f"{op} needs two inputs")
        consts = [n in self.consts for n in names]
        if consts == [False, False]:
            x, y = self.val(names[0]), self.val(names[1])
            if x.perm != y.perm or self.b.shape(x.ir) != self.b.shape(y.ir) or not _same(x.order, y.order):
                raise self.unsupported(f"{op} of ONNX shapes {self.shape(x)} and {self.shape(y)} (broadcasting "
                                       "between computed tensors is not supported)")
            if sign < 0:
                y = self.affine(y, -1.0, 0.0, sub="negate")
            return self.same_layout(x, self.emit("add", [x.ir, y.ir]))
        if consts == [True, True]:
            return self.val(names[0])      # raises: constant-only arithmetic
        k = consts.index(True)
        v = self.val(names[1 - k])
        vec = self.per_channel(v, self.consts[names[k]])
        if vec is None:
            raise self.unsupported(f"{op} by a constant of shape {self.consts[names[k]].shape} on ONNX shape "
                                   f"{self.shape(v)}: only scalars and per-channel constants are supported")
        with np.errstate(divide="ignore"):
            if op == "Mul":
                return self.affine(v, vec, 0.0)
            if op == "Div":
                if k == 0:
                    raise self.unsupported("Div of a constant by a tensor")
                return self.affine(v, 1.0 / vec, 0.0)
        if op == "Sub" and k == 0:
            return self.affine(v, -1.0, vec)
        return self.affine(v, 1.0, sign * vec)

    def op_Sub(self, node, a):
        return self.op_Add(node, a, -1.0, "Sub")

    def op_Mul(self, node, a):
        if all(n not in self.consts for n in node.input[:2]):
            raise self.unsupported("Mul of two computed tensors")
        return self.op_Add(node, a, 1.0, "Mul")

    def op_Div(self, node, a):
        if all(n not in self.consts for n in node.input[:2]):
            raise self.unsupported("Div of two computed tensors")
        return self.op_Add(node, a, 1.0, "Div")

    def op_Relu(self, node, a):
        x = self.val(node.input[0])
        return self.same_layout(x, self.emit("activation", x.ir, "relu"))

    def op_Clip(self, node, a):
        x = self.val(node.input[0])
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

    def pool(self, node, a, kind):
        x = self.map(node.input[0])
        h, w, _ = self.b.shape(x.ir)
        k = self.ints(a, "kernel_shape", 2, None, lo=1) if "kernel_shape" in a else None
        if k is None:
            raise self.err("kernel_shape is missing")
        if self.ints(a, "dilations", 2, 1, lo=1) != (1, 1):
            raise self.unsupported(f"dilated pooling (dilations={a['dilations']})")
        s = self.ints(a, "strides", 2, 1, lo=1)
        include = bool(a.get("count_include_pad", 0))
        pad = self.window(a, (h, w), k, s, ceil=bool(a.get("ceil_mode", 0)), include_pad=include)
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
        return _Val(self.emit("concat", [v.ir for v in xs]), xs[0].perm, order)

    def vector(self, name) -> _Val:
        v = self.val(name)
        if len(v.perm) != 2:
            raise self.unsupported(f"needs a (N, features) matrix, got ONNX shape (N, "
                                   f"{', '.join(map(str, self.shape(v)))}); add a Flatten first")
        return v

    def dense(self, x: _Val, kernel, bias):
        f = self.b.shape(x.ir)[0]
        if kernel.ndim != 2 or kernel.shape[0] != f:
            raise self.err(f"weight of shape {kernel.shape} does not fit {f} input features")
        if x.order is not None:
            rows = np.empty_like(kernel)
            rows[x.order] = kernel
            kernel = rows
        ws = {"kernel": kernel} if bias is None else {"kernel": kernel, "bias": bias}
        return _Val(self.emit("dense", x.ir, kernel.shape[1], bias is not None, weights=ws), IDENT2)

    def op_Gemm(self, node, a):
        x = self.vector(node.input[0])
        w = np.asarray(self.const(node, 1), np.float64)
        c = self.const(node, 2, required=False)
        if a.get("transA", 0):
            raise self.unsupported("Gemm with transA=1")
        if w.ndim != 2:
            raise self.err(f"Gemm weight must be 2-D, got {w.shape}")
        w = (w.T if a.get("transB", 0) else w) * a.get("alpha", 1.0)
        bias = None
        if c is not None:
            c = np.asarray(c, np.float64)
            if c.size not in (1, w.shape[1]) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
                raise self.err(f"Gemm bias of shape {c.shape} does not fit {w.shape[1]} outputs")
            bias = np.broadcast_to(c.reshape(-1), (w.shape[1],)) * a.get("beta", 1.0)
        return self.dense(x, w, bias)

    def op_MatMul(self, node, a):
        x = self.vector(node.input[0])
        return self.dense(x, np.asarray(self.const(node, 1), np.float64), None)

    def flatten(self, x: _Val) -> _Val:
        if len(x.perm) == 2:
            return x
        order = _flat_order(self.b.shape(x.ir), x.perm)
        return _Val(self.emit("flatten", x.ir), IDENT2, order)

    def op_Flatten(self, node, a):
        x = self.val(node.input[0])
        axis = a.get("axis", 1)
        if axis not in (1, 1 - len(x.perm)):
            raise self.unsupported(f"Flatten with axis={axis} (only 1: keep the batch axis)")
        return self.flatten(x)

    def op_Reshape(self, node, a):
        x = self.val(node.input[0])
        target = [int(d) for d in np.asarray(self.const(node, 1)).reshape(-1)]
        src = self.shape(x)
        size = int(np.prod(src))
        if not target or target[0] not in (0, -1) + ((self.batch,) if self.batch else ()):
            raise self.unsupported(f"Reshape to {target} changes the batch axis")
        rest = [src[i] if d == 0 and not a.get("allowzero", 0) and i < len(src) else d
                for i, d in enumerate(target[1:])]
        if target[0] == -1 or rest.count(-1) > 1 or any(d < -1 for d in rest):
            raise self.unsupported(f"Reshape to {target}: the batch axis must stay first (0 or its size)")
        if -1 in rest:
            known = int(np.prod([d for d in rest if d != -1]))
            rest[rest.index(-1)] = size // known if known else 0
        if int(np.prod(rest)) != size:
            raise self.err(f"cannot reshape ONNX shape (N, {', '.join(map(str, src))}) to {target}")
        if tuple(rest) == src:
            return x
        if len(rest) == 1:
            return self.flatten(x)
        if len(rest) == 3 and len(x.perm) == 2 and x.order is None:
            if rest[1] * rest[2] == 1:          # (N, C, 1, 1): the same element order as NHWC (1, 1, C)
                return _Val(self.emit("reshape", x.ir, (1, 1, rest[0])), NCHW)
            return _Val(self.emit("reshape", x.ir, tuple(rest)), IDENT4)
        raise self.unsupported(f"Reshape from ONNX shape (N, {', '.join(map(str, src))}) to {target}")

    def op_Transpose(self, node, a):
        x = self.val(node.input[0])
        r = len(x.perm)
        perm = a.get("perm", list(range(r))[::-1])
        if sorted(perm) != list(range(r)) or perm[0] != 0:
            raise self.unsupported(f"Transpose with perm={perm} on a rank-{r} tensor")
        new = tuple(x.perm[p] for p in perm)
        if new not in (NCHW, IDENT4, IDENT2):
            raise self.unsupported(f"Transpose with perm={perm}: only NHWC <-> NCHW is supported")
        return _Val(x.ir, new, x.order)

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

    def op_Pad(self, node, a):
        x = self.val(node.input[0])
        r = len(x.perm)
        if a.get("mode", "constant") != "constant":
            raise self.unsupported(f"Pad mode {a.get('mode')!r} (only constant zeros)")
        if self.opset < 11:
            pads, fill, axes = a.get("pads", []), a.get("value", 0.0), None
        else:
            pads = [int(p) for p in np.asarray(self.const(node, 1)).reshape(-1)]
            fill = self.const(node, 2, required=False)
            fill = 0.0 if fill is None or np.asarray(fill).size == 0 else float(np.asarray(fill).reshape(-1)[0])
            axes = self.const(node, 3, required=False)
        axes = list(range(r)) if axes is None else [int(i) + r if int(i) < 0 else int(i)
                                                    for i in np.asarray(axes).reshape(-1)]
        if fill != 0.0:
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
        return self.same_layout(x, self.emit("zero_pad", x.ir, pad))


def _same(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return np.array_equal(a, b)


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
            res.append(np.ascontiguousarray(y))
        return res

    def __call__(self, x):
        x = self.check_input(x)
        if self.device == "cpu":
            set_threads(self.threads)
        outs = self.to_interface(self.executor(x.shape[0]).run(x))
        return outs[0] if len(outs) == 1 else outs


def load_onnx(path, device: str = "cpu", threads: int | None = None, fuse: bool = True) -> OnnxModel:
    """An ONNX model file as a runnable model (see ``OnnxModel`` for the input/output layout)."""
    graph, interface = onnx_to_graph(path)
    return OnnxModel(graph, interface, device=device, threads=threads, weights_source=os.fspath(path),
                     fuse=fuse)
