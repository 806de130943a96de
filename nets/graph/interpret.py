"""Evaluate a graph layer by layer with the NumPy oracle (each op's ``reference`` in nets.graph.ops).

This is the runtime's own reference: on a source graph there is no folding, no fusion, no memory
planning, one ``kernels.reference`` call per source layer. Tests compare the optimised executor
against it, and it gives every layer's output by name.
"""

from __future__ import annotations

import numpy as np

from nets.errors import ModelError
from nets.graph import ops
from nets.graph.ir import Graph


def interpret(g: Graph, x: np.ndarray, keep_all: bool = False) -> dict[str, np.ndarray]:
    """Values by name: the graph outputs, or every value with ``keep_all``."""
    vals = {g.inputs[0]: np.asarray(x, np.float32)}
    for n in g.nodes:
        if n.op == "input":
            continue
        rule = ops.get(n.op, n.name).reference
        if rule is None:
            raise ModelError(f"layer {n.name!r}: the interpreter has no rule for op {n.op!r}")
        vals[n.output] = rule(n, [vals[v] for v in n.inputs], g.shapes[n.output])
    if keep_all:
        return vals
    return {v: vals[v] for v in g.outputs}
