"""``GraphBuilder``: Keras-like calls that add nodes to a graph, inferring each output's shape through
the op registry as it goes (so a shape error names the layer the moment it is added)."""

from __future__ import annotations

from kernels import ACTIVATIONS
from nets.errors import ModelError
from nets.graph.ir import Graph, Node, pair, resolve_padding
from nets.graph.ops import infer_shape


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
        """None for no activation; any of kernels.ACTIVATIONS, or softmax."""
        if activation in (None, "linear"):
            return None
        if activation == "softmax" or activation in ACTIVATIONS:
            return activation
        raise ModelError(f"layer {name!r}: unsupported activation {activation!r} (supported: "
                         f"{', '.join(a for a in ACTIVATIONS if a)}, softmax, linear)")

    def input(self, shape, name="input_1") -> str:
        v = self._add("input", name, [], {"shape": tuple(int(d) for d in shape)})
        self.inputs.append(v)
        return v

    def conv2d(self, x, filters, kernel_size, strides=1, padding="valid", use_bias=True,
               activation=None, groups=1, name=None) -> str:
        k, s = pair(kernel_size), pair(strides)
        cin = self.shapes[x][-1]
        act = self._act(activation, name)
        if act == "softmax":
            raise ModelError(f"layer {name!r}: softmax activation on a convolution is not supported")
        groups = int(groups)
        if groups < 1 or cin % groups or int(filters) % groups:
            raise ModelError(f"layer {name!r}: groups={groups} must divide the {cin} input and {filters} output "
                             "channels")
        ws = {"kernel": (k[0], k[1], cin // groups, int(filters))}
        if use_bias:
            ws["bias"] = (int(filters),)
        attrs = dict(filters=int(filters), kernel_size=k, strides=s, use_bias=bool(use_bias), act=act,
                     pad=resolve_padding(padding, self.shapes[x], k, s))
        if groups > 1:
            attrs["groups"] = groups
        return self._add("conv2d", name, [x], attrs, ws)

    def depthwise_conv2d(self, x, kernel_size, strides=1, padding="valid", depth_multiplier=1,
                         use_bias=True, activation=None, name=None) -> str:
        k, s = pair(kernel_size), pair(strides)
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
        k, s = pair(kernel_size), pair(strides)
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
        k = pair(pool_size)
        s = pair(strides) if strides is not None else k
        return self._add("max_pool2d", name, [x],
                         dict(pool_size=k, strides=s, pad=resolve_padding(padding, self.shapes[x], k, s)))

    def avg_pool2d(self, x, pool_size, strides=None, padding="valid", count_include_pad=False,
                   name=None) -> str:
        """Keras' average pool divides by the number of real (unpadded) cells."""
        k = pair(pool_size)
        s = pair(strides) if strides is not None else k
        return self._add("avg_pool2d", name, [x],
                         dict(pool_size=k, strides=s, pad=resolve_padding(padding, self.shapes[x], k, s),
                              count_include_pad=bool(count_include_pad)))

    def global_avg_pool(self, x, keepdims=False, name=None) -> str:
        return self._add("global_avg_pool", name, [x], {"keepdims": bool(keepdims)})

    def global_max_pool(self, x, keepdims=False, name=None) -> str:
        return self._add("global_max_pool", name, [x], {"keepdims": bool(keepdims)})

    def zero_pad(self, x, padding, name=None) -> str:
        """Keras ZeroPadding2D: an int, a symmetric (h, w) pair, or ((top, bottom), (left, right))."""
        return self._add("zero_pad", name, [x], {"pad": _four(padding)})

    def add(self, xs, name=None) -> str:
        if len(xs) != 2:
            raise ModelError(f"layer {name!r}: add of {len(xs)} inputs is not supported (only 2)")
        return self._add("add", name, list(xs))

    def mul(self, xs, activation=None, name=None) -> str:
        """Element-wise product; the second input may be one value per channel ((1, 1, C) or (C,)),
        as in squeeze-excite blocks."""
        if len(xs) != 2:
            raise ModelError(f"layer {name!r}: mul of {len(xs)} inputs is not supported (only 2)")
        return self._add("mul", name, list(xs), {"act": self._act(activation, name)})

    def layer_norm(self, x, epsilon=1e-3, center=True, scale=True, name=None) -> str:
        """Keras' LayerNormalization over the channel axis; weights gamma and beta, as Keras orders them
        (absent ones are filled with ones / zeros when the weights are set)."""
        c = self.shapes[x][-1]
        ws = {}
        if scale:
            ws["gamma"] = (c,)
        if center:
            ws["beta"] = (c,)
        return self._add("layer_norm", name, [x], dict(epsilon=float(epsilon), center=bool(center),
                                                        scale=bool(scale)), ws)

    def lrn(self, x, size, alpha=1e-4, beta=0.75, bias=1.0, name=None) -> str:
        return self._add("lrn", name, [x], dict(size=int(size), alpha=float(alpha), beta=float(beta), bias=float(bias)))

    def crop(self, x, cropping, name=None) -> str:
        """Keras Cropping2D: an int, a symmetric (h, w) pair, or ((top, bottom), (left, right))."""
        return self._add("crop", name, [x], {"box": _four(cropping)})

    def channel_gather(self, x, index, name=None) -> str:
        return self._add("channel_gather", name, [x], {"index": tuple(int(i) for i in index)})

    def concat(self, xs, axis=-1, name=None) -> str:
        rank = len(self.shapes[xs[0]])
        if axis not in (-1, rank):
            raise ModelError(f"layer {name!r}: concatenation along axis {axis} is not supported "
                             "(only the channel axis)")
        return self._add("concat", name, list(xs))

    def dense(self, x, units, use_bias=True, activation=None, name=None) -> str:
        fin = self.shapes[x]
        ws = {"kernel": (fin[-1], int(units))}
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


def _four(v) -> tuple[int, int, int, int]:
    """Keras' padding / cropping forms -> (top, bottom, left, right)."""
    if isinstance(v, int):
        return (int(v),) * 4
    p0, p1 = v
    if isinstance(p0, int):
        return (int(p0), int(p0), int(p1), int(p1))
    return (int(p0[0]), int(p0[1]), int(p1[0]), int(p1[1]))
