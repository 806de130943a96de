"""The graph IR: named nodes in topological order, one output value each, with shapes inferred at
build time.

Shapes are per sample (no batch axis): ``(H, W, C)`` for feature maps, ``(F,)`` for vectors. Node
names are the source model's layer names, so profiles and errors speak the user's language.

Ops and their attributes (set by ``GraphBuilder``; passes add the fused forms):
    input              shape
    conv2d             filters, kernel_size, strides, pad (t,b,l,r), use_bias, act, [residual]
    depthwise_conv2d   kernel_size, strides, pad, depth_multiplier, use_bias, act
    separable_conv2d   filters, kernel_size, strides, pad, depth_multiplier, use_bias, act
    depthwise_pointwise  (made by a pass: a depthwise conv and the 1x1 conv that reads it) dw_kernel_size,
                       dw_strides, dw_pad, dw_act, depth_multiplier, filters, act, [residual], [in_act]
                       (an activation on the input, before the depthwise); weights
                       depthwise_kernel, depthwise_bias, kernel, bias
    batch_norm         epsilon, center, scale
    activation         act in {"relu", "relu6", "linear", "softmax"}
    max_pool2d         pool_size, strides, pad
    avg_pool2d         pool_size, strides, pad, count_include_pad
    global_avg_pool    keepdims          global_max_pool   keepdims
    zero_pad           pad
    add, concat        (concat along channels)
    dense              units, use_bias, act
    softmax, flatten, reshape (target_shape), dropout (rate)
``act`` on conv/dense is None, "relu", "relu6" or (dense only, before lowering) "softmax".
Weights: ``Node.weight_shapes`` lists the layer's arrays in Keras' order (the order of
``weight_names`` in a weights file); ``Node.weights`` holds them once loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kernels import conv_output_size, same_padding
from nets.errors import ModelError

ACTS = (None, "relu", "relu6")


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    output: str
    attrs: dict = field(default_factory=dict)
    weight_shapes: dict[str, tuple] = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    fused: list[str] = field(default_factory=list)   # layers merged into this node by passes

    def __repr__(self):
        return f"Node({self.name!r}, {self.op}, in={self.inputs}, out={self.output!r})"


@dataclass
class Graph:
    name: str
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    shapes: dict[str, tuple]
    # provenance, set by loaders: where the weights came from, the file format, the weight-file
    # generation (naming scheme), and the source layer configs of an imported Keras model
    weights_source: str | None = None
    source_format: str | None = None
    weights_generation: str | None = None
    keras_layers: list | None = None

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def producer(self, value: str) -> Node | None:
        for n in self.nodes:
            if n.output == value:
                return n
        return None

    def consumers(self, value: str) -> list[Node]:
        return [n for n in self.nodes if value in n.inputs]

    def weighted_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.weight_shapes]

    def copy(self) -> Graph:
        nodes = [Node(n.name, n.op, list(n.inputs), n.output, dict(n.attrs), dict(n.weight_shapes),
                      dict(n.weights), list(n.fused)) for n in self.nodes]
        return Graph(self.name, nodes, list(self.inputs), list(self.outputs), dict(self.shapes),
                     self.weights_source, self.source_format, self.weights_generation, self.keras_layers)

    def num_params(self) -> int:
        total = 0
        for n in self.nodes:
            for shape in n.weight_shapes.values():
                size = 1
                for d in shape:
                    size *= d
                total += size
        return total

    def validate(self):
        """Topological order, unique names and outputs, every input defined before use."""
        seen = set(self.inputs)
        names = set()
        for n in self.nodes:
            if n.name in names:
                raise ModelError(f"graph {self.name!r}: duplicate layer name {n.name!r}")
            names.add(n.name)
            for v in n.inputs:
                if v not in seen:
                    raise ModelError(f"graph {self.name!r}: layer {n.name!r} reads {v!r} before it is computed")
            if n.op != "input":
                if n.output in seen:
                    raise ModelError(f"graph {self.name!r}: value {n.output!r} is written twice")
                seen.add(n.output)
        for v in self.outputs:
            if v not in seen:
                raise ModelError(f"graph {self.name!r}: output {v!r} is never computed")


# ----------------------------------------------------------------------------- shape inference

def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ModelError(f"expected an int or a pair, got {v}")
    return v


def resolve_padding(padding, hw, kernel, strides) -> tuple[int, int, int, int]:
    """Keras 'valid'/'same' or explicit (t, b, l, r) -> explicit (t, b, l, r)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            return same_padding(hw[0], kernel[0], strides[0]) + same_padding(hw[1], kernel[1], strides[1])
        raise ModelError(f"unknown padding {padding!r}")
    pad = tuple(int(p) for p in padding)
    if len(pad) != 4 or min(pad) < 0:
        raise ModelError(f"padding must be (top, bottom, left, right) >= 0, got {padding}")
    return pad


def _window_out(name, shape, kernel, strides, pad):
    h, w = shape[0], shape[1]
    oh = conv_output_size(h, kernel[0], strides[0], pad[0], pad[1])
    ow = conv_output_size(w, kernel[1], strides[1], pad[2], pad[3])
    if oh < 1 or ow < 1:
        raise ModelError(f"layer {name!r}: a {kernel[0]}x{kernel[1]} window with stride {strides} and "
                         f"padding {pad} does not fit the {h}x{w} input")
    return oh, ow


def infer_shape(node: Node, in_shapes: list[tuple]) -> tuple:
    """Per-sample output shape of ``node`` given its inputs' shapes; raises ModelError on mismatch."""
    op, a, name = node.op, node.attrs, node.name

    def need_rank(shape, rank):
        if len(shape) != rank:
            raise ModelError(f"layer {name!r} ({op}) expects a rank-{rank} input per sample, got shape {shape}")

    if op == "input":
        return tuple(a["shape"])
    x = in_shapes[0] if in_shapes else None
    if op == "depthwise_pointwise":
        need_rank(x, 3)
        oh, ow = _window_out(name, x, a["dw_kernel_size"], a["dw_strides"], a["dw_pad"])
        out = (oh, ow, a["filters"])
        if a.get("residual") is not None and in_shapes[1] != out:
            raise ModelError(f"layer {name!r}: residual of shape {in_shapes[1]} does not match output {out}")
        return out
    if op in ("conv2d", "depthwise_conv2d", "separable_conv2d", "max_pool2d", "avg_pool2d"):
        need_rank(x, 3)
        k = a["kernel_size"] if "kernel_size" in a else a["pool_size"]
        if op in ("max_pool2d", "avg_pool2d"):
            t, b, l, r = a["pad"]
            if max(t, b) >= k[0] or max(l, r) >= k[1]:
                raise ModelError(f"layer {name!r} ({op}): padding {a['pad']} is as large as the "
                                 f"{k[0]}x{k[1]} window, so some windows would hold only padding")
        oh, ow = _window_out(name, x, k, a["strides"], a["pad"])
        if op == "conv2d" or op == "separable_conv2d":
            c = a["filters"]
        elif op == "depthwise_conv2d":
            c = x[2] * a["depth_multiplier"]
        else:
            c = x[2]
        out = (oh, ow, c)
        if op == "conv2d" and a.get("residual") is not None:
            if in_shapes[1] != out:
                raise ModelError(f"layer {name!r}: residual of shape {in_shapes[1]} does not match output {out}")
        return out
    if op == "zero_pad":
        need_rank(x, 3)
        t, b, l, r = a["pad"]
        return (x[0] + t + b, x[1] + l + r, x[2])
    if op in ("batch_norm", "activation", "softmax", "dropout"):
        return x
    if op in ("global_avg_pool", "global_max_pool"):
        need_rank(x, 3)
        return (1, 1, x[2]) if a.get("keepdims") else (x[2],)
    if op == "add":
        if any(s != x for s in in_shapes):
            raise ModelError(f"layer {name!r} (add): input shapes differ: {in_shapes}")
        return x
    if op == "concat":
        if any(len(s) != len(x) or s[:-1] != x[:-1] for s in in_shapes):
            raise ModelError(f"layer {name!r} (concat): inputs disagree outside the channel axis: {in_shapes}")
        return x[:-1] + (sum(s[-1] for s in in_shapes),)
    if op == "dense":
        if len(x) != 1:
            raise ModelError(f"layer {name!r} (dense) expects a flat input per sample, got shape {x}; "
                             "add a Flatten or global pooling layer before it")
        return (a["units"],)
    if op == "flatten":
        size = 1
        for d in x:
            size *= d
        return (size,)
    if op == "reshape":
        target = list(a["target_shape"])
        if target.count(-1) > 1 or any(d == 0 or d < -1 for d in target):
            raise ModelError(f"layer {name!r} (reshape): target shape {tuple(target)} needs positive sizes "
                             "and at most one -1")
        size = 1
        for d in x:
            size *= d
        if target.count(-1) == 1:
            known = 1
            for d in target:
                if d != -1:
                    known *= d
            target[target.index(-1)] = size // known if known else 0
        tsize = 1
        for d in target:
            tsize *= d
        if tsize != size:
            raise ModelError(f"layer {name!r} (reshape): cannot reshape {x} to {tuple(a['target_shape'])}")
        return tuple(target)
    raise ModelError(f"layer {name!r}: unknown op {op!r}")


def node_macs(node: Node, in_shapes: list[tuple], out_shape: tuple) -> int:
    """Multiply-accumulates of one sample (1 MAC = 2 FLOPs)."""
    op, a = node.op, node.attrs
    if op == "conv2d":
        kh, kw = a["kernel_size"]
        return out_shape[0] * out_shape[1] * out_shape[2] * kh * kw * in_shapes[0][2]
    if op == "depthwise_conv2d":
        kh, kw = a["kernel_size"]
        return out_shape[0] * out_shape[1] * out_shape[2] * kh * kw
    if op == "depthwise_pointwise":
        kh, kw = a["dw_kernel_size"]
        mid = in_shapes[0][2] * a["depth_multiplier"]
        return out_shape[0] * out_shape[1] * (mid * kh * kw + mid * out_shape[2])
    if op == "separable_conv2d":
        kh, kw = a["kernel_size"]
        mid = in_shapes[0][2] * a["depth_multiplier"]
        return out_shape[0] * out_shape[1] * (mid * kh * kw + mid * out_shape[2])
    if op == "dense":
        return in_shapes[0][0] * out_shape[0]
    return 0


# ----------------------------------------------------------------------------- builder

class GraphBuilder:
    """Builds a Graph with Keras-like calls; each call returns the name of the value it makes.

    >>> b = GraphBuilder("tiny")
    >>> x = b.input((32, 32, 3), name="input_1")
    >>> x = b.conv2d(x, 8, 3, padding="same", activation="relu", name="conv1")
    >>> g = b.build(b.dense(b.global_avg_pool(x, name="gap"), 10, name="logits"))
    """

    def __init__(self, name: str):
        self.name = name
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple] = {}
        self.inputs: list[str] = []

    def shape(self, value: str) -> tuple:
        return self.shapes[value]

    def _add(self, op, name, inputs, attrs=None, weight_shapes=None) -> str:
        if name is None:
            name = f"{op}_{len(self.nodes)}"
        if name in self.shapes:
            raise ModelError(f"graph {self.name!r}: duplicate layer name {name!r}")
        for v in inputs:
            if v not in self.shapes:
                raise ModelError(f"graph {self.name!r}: layer {name!r} reads unknown value {v!r}")
        node = Node(name, op, list(inputs), name, attrs or {}, weight_shapes or {})
        self.shapes[name] = infer_shape(node, [self.shapes[v] for v in inputs])
        self.nodes.append(node)
        return name

    @staticmethod
    def _act(activation, name):
        if activation in (None, "linear"):
            return None
        if activation in ("relu", "relu6", "softmax"):
            return activation
        raise ModelError(f"layer {name!r}: unsupported activation {activation!r}")

    def input(self, shape, name="input_1") -> str:
        v = self._add("input", name, [], {"shape": tuple(int(d) for d in shape)})
        self.inputs.append(v)
        return v

    def conv2d(self, x, filters, kernel_size, strides=1, padding="valid", use_bias=True,
               activation=None, name=None) -> str:
        k, s = _pair(kernel_size), _pair(strides)
        cin = self.shapes[x][-1]
        act = self._act(activation, name)
        if act == "softmax":
            raise ModelError(f"layer {name!r}: softmax activation on a convolution is not supported")
        ws = {"kernel": (k[0], k[1], cin, int(filters))}
        if use_bias:
            ws["bias"] = (int(filters),)
        attrs = dict(filters=int(filters), kernel_size=k, strides=s, use_bias=bool(use_bias), act=act,
                     pad=resolve_padding(padding, self.shapes[x], k, s))
        return self._add("conv2d", name, [x], attrs, ws)

    def depthwise_conv2d(self, x, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                         use_bias=True, activation=None, name=None) -> str:
        k, s = _pair(kernel_size), _pair(strides)
        c = self.shapes[x][-1]
        m = int(depth_multiplier)
        ws = {"depthwise_kernel": (k[0], k[1], c, m)}
        if use_bias:
            ws["bias"] = (c * m,)
        attrs = dict(kernel_size=k, strides=s, depth_multiplier=m, use_bias=bool(use_bias),
                     act=self._act(activation, name), pad=resolve_padding(padding, self.shapes[x], k, s))
        return self._add("depthwise_conv2d", name, [x], attrs, ws)

    def separable_conv2d(self, x, filters, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                         use_bias=True, activation=None, name=None) -> str:
        k, s = _pair(kernel_size), _pair(strides)
        c = self.shapes[x][-1]
        m = int(depth_multiplier)
        ws = {"depthwise_kernel": (k[0], k[1], c, m), "pointwise_kernel": (1, 1, c * m, int(filters))}
        if use_bias:
            ws["bias"] = (int(filters),)
        attrs = dict(filters=int(filters), kernel_size=k, strides=s, depth_multiplier=m,
                     use_bias=bool(use_bias), act=self._act(activation, name),
                     pad=resolve_padding(padding, self.shapes[x], k, s))
        return self._add("separable_conv2d", name, [x], attrs, ws)

    def batch_norm(self, x, epsilon=1e-3, center=True, scale=True, name=None) -> str:
        c = self.shapes[x][-1]
        ws = {}
        if scale:
            ws["gamma"] = (c,)
        if center:
            ws["beta"] = (c,)
        ws["moving_mean"] = (c,)
        ws["moving_variance"] = (c,)
        return self._add("batch_norm", name, [x],
                         dict(epsilon=float(epsilon), center=bool(center), scale=bool(scale)), ws)

    def activation(self, x, activation, name=None) -> str:
        act = self._act(activation, name) or "linear"
        return self._add("activation", name, [x], {"act": act})

    def relu(self, x, max_value=None, name=None) -> str:
        if max_value is None:
            act = "relu"
        elif float(max_value) == 6.0:
            act = "relu6"
        else:
            raise ModelError(f"layer {name!r}: ReLU with max_value={max_value} is not supported (only None or 6)")
        return self._add("activation", name, [x], {"act": act})

    def max_pool2d(self, x, pool_size, strides=None, padding="valid", name=None) -> str:
        k = _pair(pool_size)
        s = _pair(strides) if strides is not None else k
        return self._add("max_pool2d", name, [x],
                         dict(pool_size=k, strides=s, pad=resolve_padding(padding, self.shapes[x], k, s)))

    def avg_pool2d(self, x, pool_size, strides=None, padding="valid", count_include_pad=False,
                   name=None) -> str:
        """Keras' average pool divides by the number of real (unpadded) cells."""
        k = _pair(pool_size)
        s = _pair(strides) if strides is not None else k
        return self._add("avg_pool2d", name, [x],
                         dict(pool_size=k, strides=s, pad=resolve_padding(padding, self.shapes[x], k, s),
                              count_include_pad=bool(count_include_pad)))

    def global_avg_pool(self, x, keepdims=False, name=None) -> str:
        return self._add("global_avg_pool", name, [x], {"keepdims": bool(keepdims)})

    def global_max_pool(self, x, keepdims=False, name=None) -> str:
        return self._add("global_max_pool", name, [x], {"keepdims": bool(keepdims)})

    def zero_pad(self, x, padding, name=None) -> str:
        """Keras ZeroPadding2D: an int, a symmetric (h, w) pair, or ((top, bottom), (left, right))."""
        if isinstance(padding, int):
            pad = (padding,) * 4
        else:
            p0, p1 = padding
            if isinstance(p0, int):
                pad = (p0, p0, p1, p1)
            else:
                pad = (p0[0], p0[1], p1[0], p1[1])
        return self._add("zero_pad", name, [x], {"pad": tuple(int(p) for p in pad)})

    def add(self, xs, name=None) -> str:
        if len(xs) != 2:
            raise ModelError(f"layer {name!r}: add of {len(xs)} inputs is not supported (only 2)")
        return self._add("add", name, list(xs))

    def concat(self, xs, axis=-1, name=None) -> str:
        rank = len(self.shapes[xs[0]])
        if axis not in (-1, rank):
            raise ModelError(f"layer {name!r}: concatenation along axis {axis} is not supported "
                             "(only the channel axis)")
        return self._add("concat", name, list(xs))

    def dense(self, x, units, use_bias=True, activation=None, name=None) -> str:
        fin = self.shapes[x]
        ws = {"kernel": (fin[-1] if len(fin) == 1 else -1, int(units))}
        if use_bias:
            ws["bias"] = (int(units),)
        return self._add("dense", name, [x],
                         dict(units=int(units), use_bias=bool(use_bias), act=self._act(activation, name)), ws)

    def softmax(self, x, name=None) -> str:
        return self._add("softmax", name, [x])

    def flatten(self, x, name=None) -> str:
        return self._add("flatten", name, [x])

    def reshape(self, x, target_shape, name=None) -> str:
        return self._add("reshape", name, [x], {"target_shape": tuple(int(d) for d in target_shape)})

    def dropout(self, x, rate=0.5, name=None) -> str:
        return self._add("dropout", name, [x], {"rate": float(rate)})

    def build(self, outputs) -> Graph:
        if isinstance(outputs, str):
            outputs = [outputs]
        g = Graph(self.name, self.nodes, self.inputs, list(outputs), self.shapes)
        g.validate()
        return g
