"""Export a model graph (one node per source layer, weights loaded) as an ONNX model.

The point is a fair baseline: ONNX Runtime should see the graph a framework exporter would hand it,
so BatchNorm stays a ``BatchNormalization`` node and ORT does its own fusion. Our graphs are NHWC;
ONNX convolutions are NCHW. The exported model keeps our interface — an NHWC input named like ours
with a dynamic batch axis ``N``, NHWC outputs named like ours — and runs its body in NCHW: one
Transpose after the input, one before each 4-D output, and one before a Flatten/Reshape of a map with
more than one pixel (Keras flattens in H, W, C order). Where H*W == 1 the NHWC and NCHW element orders
coincide, so no Transpose is needed.

    from nets.io.onnx.export import export_onnx
    export_onnx(model.source_graph, "resnet50.onnx")

Each op writes its own ONNX nodes (``OpDef.export`` in nets.graph.ops) through the helpers here.

``onnx`` is a test/bench dependency and is imported only when exporting.
"""

from __future__ import annotations

import os

import numpy as np

from nets.errors import ModelError, UnsupportedError
from nets.graph import ops
from nets.graph.ir import Graph, Node

TO_NCHW = [0, 3, 1, 2]
TO_NHWC = [0, 2, 3, 1]
def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the environment
        raise ModelError("exporting to ONNX needs the 'onnx' package: pip install onnx") from None
    return onnx


class Exporter:
    def __init__(self, g: Graph):
        self.onnx = _onnx()
        self.h = self.onnx.helper
        self.g = g
        self.nodes = []
        self.inits = []
        self.tensor: dict[str, str] = {}     # our value -> ONNX tensor holding it (NCHW for maps)
        self.outputs = set(g.outputs)
        self.opset = 17

    # -------------------------------------------------------------------- helpers
    def is_map(self, value: str) -> bool:
        return len(self.g.shapes[value]) == 3

    def pixels(self, value: str) -> int:
        s = self.g.shapes[value]
        return s[0] * s[1] if len(s) == 3 else 1

    def init(self, name: str, array) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def emit(self, op: str, inputs: list[str], output: str, name: str, **attrs) -> str:
        self.nodes.append(self.h.make_node(op, inputs, [output], name=name, **attrs))
        return output

    @staticmethod
    def conv_weight(w: np.ndarray) -> np.ndarray:
        """HWIO (kh, kw, cin, cout) -> OIHW."""
        return np.ascontiguousarray(np.asarray(w, np.float32).transpose(3, 2, 0, 1))

    @staticmethod
    def depthwise_weight(w: np.ndarray) -> np.ndarray:
        """(kh, kw, c, m) -> (c*m, 1, kh, kw); ONNX group c owns output channels [c*m, (c+1)*m), which is
        exactly Keras' channel c*m + j order."""
        kh, kw, c, m = w.shape
        w = np.asarray(w, np.float32).reshape(kh, kw, c * m).transpose(2, 0, 1)
        return np.ascontiguousarray(w[:, None])

    @staticmethod
    def onnx_pads(pad) -> list[int]:
        """Ours (top, bottom, left, right) -> ONNX [top, left, bottom, right]."""
        t, b, l, r = (int(p) for p in pad)
        return [t, l, b, r]

    def bias(self, n: Node):
        """The layer's bias, or None when it has none."""
        return self.weight(n, "bias") if n.attrs.get("use_bias") else None

    def result_name(self, value: str) -> str:
        """The tensor a layer writes: its value name, except for a 4-D graph output, whose name is
        taken by the NHWC tensor of the final Transpose."""
        return f"{value}__nchw" if value in self.outputs and self.is_map(value) else value

    def act(self, x: str, act, out: str, layer: str, node_name: str | None = None) -> str:
        """An activation node; named ``layer/act`` when it is the epilogue of another layer. SiLU, and GELU
        before opset 20, are written as the arithmetic torch's exporters write for them."""
        name = node_name or f"{layer}/{act}"
        simple = {"relu": ("Relu", {}), "sigmoid": ("Sigmoid", {}), "tanh": ("Tanh", {}),
                  "hard_sigmoid": ("HardSigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5}), "hard_silu": ("HardSwish", {}),
                  "softmax": ("Softmax", {"axis": 1})}
        if act in simple:
            op, attrs = simple[act]
            return self.emit(op, [x], out, name, **attrs)
        if act == "relu6":
            lo = self.init(f"{layer}/clip_min", np.array(0.0, np.float32))
            hi = self.init(f"{layer}/clip_max", np.array(6.0, np.float32))
            return self.emit("Clip", [x, lo, hi], out, name)
        if act == "silu":
            s = self.emit("Sigmoid", [x], f"{out}__sigmoid", f"{name}/sigmoid")
            return self.emit("Mul", [x, s], out, name)
        if act in ("gelu", "gelu_tanh") and self.opset >= 20:
            return self.emit("Gelu", [x], out, name, approximate="tanh" if act == "gelu_tanh" else "none")
        if act in ("gelu", "gelu_tanh"):
            c = lambda key, v: self.init(f"{name}/{key}", np.array(v, np.float32))
            if act == "gelu":           # 0.5 x (1 + erf(x / sqrt 2))
                t = self.emit("Div", [x, c("sqrt2", np.sqrt(2.0))], f"{out}__scaled", f"{name}/scale")
                t = self.emit("Erf", [t], f"{out}__erf", f"{name}/erf")
            else:                       # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
                t = self.emit("Pow", [x, c("three", 3.0)], f"{out}__cube", f"{name}/cube")
                t = self.emit("Mul", [t, c("k", 0.044715)], f"{out}__cubic", f"{name}/cubic")
                t = self.emit("Add", [x, t], f"{out}__inner", f"{name}/inner")
                t = self.emit("Mul", [t, c("s", np.sqrt(2.0 / np.pi))], f"{out}__scaled", f"{name}/scale")
                t = self.emit("Tanh", [t], f"{out}__tanh", f"{name}/tanh")
            t = self.emit("Add", [t, c("one", 1.0)], f"{out}__plus1", f"{name}/plus1")
            t = self.emit("Mul", [x, t], f"{out}__times_x", f"{name}/times_x")
            return self.emit("Mul", [t, c("half", 0.5)], out, name)
        raise ModelError(f"layer {layer!r}: cannot export activation {act!r}")

    def finish(self, n: Node, x: str, act=None, residual: str | None = None) -> str:
        """Apply the epilogue ``act(x + residual)`` in separate ONNX nodes; the tensor of the result."""
        out = self.result_name(n.output)
        if residual is not None:
            summed = out if act is None else f"{n.output}__sum"
            x = self.emit("Add", [x, residual], summed, f"{n.name}/residual")
        if act is not None:
            x = self.act(x, act, out, n.name)
        return x

    def weight(self, n: Node, key: str) -> np.ndarray:
        if key not in n.weights:
            raise ModelError(f"layer {n.name!r}: weight {key!r} is not loaded; load weights before exporting")
        return np.asarray(n.weights[key], np.float32)

    def to_nhwc_order(self, n: Node, value: str) -> str:
        """A tensor whose flat per-sample order is Keras' NHWC order."""
        t = self.tensor[value]
        if self.is_map(value) and self.pixels(value) > 1:
            return self.emit("Transpose", [t], f"{n.name}__in_nhwc", f"{n.name}/to_nhwc", perm=TO_NHWC)
        return t

    # -------------------------------------------------------------------- layers
    def conv(self, n: Node, x: str, w: np.ndarray, bias, name: str, out: str, group: int = 1,
             unit_window: bool = False) -> str:
        """A Conv node with the layer's strides and padding (``unit_window``: 1x1, stride 1, no padding)."""
        a = {"strides": (1, 1), "pad": (0, 0, 0, 0)} if unit_window else n.attrs
        ins = [x, self.init(f"{name}/W", w)]
        if bias is not None:
            ins.append(self.init(f"{name}/B", bias))
        return self.emit("Conv", ins, out, name, kernel_shape=list(w.shape[2:]), strides=list(a["strides"]),
                         pads=self.onnx_pads(a["pad"]), group=group, dilations=[1, 1])

    def layer(self, n: Node) -> None:
        """Bind the layer's value to the ONNX tensor its op's ``export`` writes."""
        ins = [self.tensor[v] for v in n.inputs]
        self.tensor[n.output] = ops.get(n.op, n.name).export(self, n, ins, self.result_name(n.output))

    def reshape(self, n: Node, out: str) -> str:
        """Keras reshapes in NHWC element order; go through NHWC unless a side has a single pixel."""
        src = self.to_nhwc_order(n, n.inputs[0])
        target = tuple(self.g.shapes[n.output])
        spread = len(target) == 3 and target[0] * target[1] > 1
        if len(target) == 3 and not spread:
            shape = [0, target[2], target[0], target[1]]          # (N, C, 1, 1): same order as NHWC
        else:
            shape = [0, *target]
        shp = self.init(f"{n.name}/shape", np.array(shape, np.int64))
        if spread:
            y = self.emit("Reshape", [src, shp], f"{n.output}__nhwc", n.name)
            return self.emit("Transpose", [y], out, f"{n.name}/to_nchw", perm=TO_NCHW)
        return self.emit("Reshape", [src, shp], out, n.name)

    # -------------------------------------------------------------------- whole graph
    def build(self, opset: int):
        onnx, h, g = self.onnx, self.h, self.g
        self.opset = int(opset)
        bad = [f"{n.name} ({n.op})" for n in g.nodes
               if n.op != "input" and getattr(ops.REGISTRY.get(n.op), "export", None) is None]
        if bad:
            raise UnsupportedError(f"graph {g.name!r}: {len(bad)} layer(s) cannot be exported to ONNX: "
                                   + ", ".join(bad))
        if len(g.inputs) != 1 or len(g.shapes[g.inputs[0]]) != 3:
            raise UnsupportedError(f"graph {g.name!r}: only one NHWC image input can be exported")
        inp = g.inputs[0]
        self.tensor[inp] = self.emit("Transpose", [inp], f"{inp}__nchw", f"{inp}/to_nchw", perm=TO_NCHW)
        for n in g.nodes:
            if n.op != "input":
                self.layer(n)
        outputs = []
        for v in g.outputs:
            t = self.tensor[v]
            if self.is_map(v):
                self.emit("Transpose", [t], v, f"{v}/output_to_nhwc", perm=TO_NHWC)
            elif t != v:
                self.emit("Identity", [t], v, f"{v}/output")
            outputs.append(h.make_tensor_value_info(v, onnx.TensorProto.FLOAT, ["N", *g.shapes[v]]))
        x_info = h.make_tensor_value_info(inp, onnx.TensorProto.FLOAT, ["N", *g.shapes[inp]])
        body = h.make_graph(self.nodes, g.name, [x_info], outputs, initializer=self.inits)
        opsets = [h.make_opsetid("", int(opset))]
        model = h.make_model(body, opset_imports=opsets, producer_name="kernelnets",
                             ir_version=h.find_min_ir_version_for(opsets))
        return model


def to_onnx_model(graph: Graph, opset: int = 17):
    """The ONNX ``ModelProto`` of ``graph`` (a source graph with weights loaded)."""
    if opset < 13:
        raise ModelError(f"opset {opset} is too old: the export needs opset >= 13 (single-axis Softmax, "
                         "Clip and Pad with tensor inputs)")
    return Exporter(graph).build(opset)


def export_onnx_bytes(graph: Graph, opset: int = 17) -> bytes:
    """The serialised ONNX model, e.g. for ``onnxruntime.InferenceSession(data)``."""
    return to_onnx_model(graph, opset).SerializeToString()


def export_onnx(graph: Graph, path, opset: int = 17) -> str:
    """Write ``graph`` as an ONNX model file; returns the path written."""
    path = os.fspath(path)
    with open(path, "wb") as f:
        f.write(export_onnx_bytes(graph, opset))
    return path
