"""The graph IR: named nodes in topological order, one output value each, with shapes inferred at
build time.

Shapes are per sample (no batch axis): ``(H, W, C)`` for feature maps, ``(F,)`` for vectors. Node
names are the source model's layer names, so profiles and errors speak the user's language. What an
op means (its attributes, shape rule, MACs, reference evaluation, kernel) is defined once, in
``nets.graph.ops``; ``Node.weight_shapes`` lists the layer's arrays in Keras' order (the order of
``weight_names`` in a weights file) and ``Node.weights`` holds them once loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kernels import conv_output_size, same_padding
from nets.errors import ModelError


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

    @property
    def params(self) -> int:
        return sum(math.prod(s) for s in self.weight_shapes.values())


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
        return sum(n.params for n in self.nodes)

    # ------------------------------------------------------------------ edits (used by the passes)
    def replace_uses(self, old: str, new: str):
        """Every reader of value ``old`` (inputs, residuals, graph outputs) reads ``new`` instead."""
        for n in self.nodes:
            n.inputs = [new if v == old else v for v in n.inputs]
            if n.attrs.get("residual") == old:
                n.attrs["residual"] = new
        self.outputs = [new if v == old else v for v in self.outputs]

    def absorb(self, keeper: Node, gone: Node):
        """``keeper`` takes over ``gone``'s output value; ``gone`` disappears, recorded as fused."""
        keeper.output = gone.output
        keeper.fused.append(gone.name)
        keeper.fused.extend(gone.fused)
        self.nodes.remove(gone)

    def drop(self, node: Node):
        """Remove a node whose output equals its input (dropout, a linear activation)."""
        self.replace_uses(node.output, node.inputs[0])
        prod = self.producer(node.inputs[0])
        if prod is not None:
            prod.fused.append(node.name)
        self.nodes.remove(node)

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


# ----------------------------------------------------------------------------- window geometry

def pair(v) -> tuple[int, int]:
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


def window_out(name, shape, kernel, strides, pad) -> tuple[int, int]:
    """Output height and width of a sliding window; ModelError when it does not fit the input."""
    h, w = shape[0], shape[1]
    oh = conv_output_size(h, kernel[0], strides[0], pad[0], pad[1])
    ow = conv_output_size(w, kernel[1], strides[1], pad[2], pad[3])
    if oh < 1 or ow < 1:
        raise ModelError(f"layer {name!r}: a {kernel[0]}x{kernel[1]} window with stride {strides} and "
                         f"padding {pad} does not fit the {h}x{w} input")
    return oh, ow
