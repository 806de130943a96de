"""Evaluate a model graph layer by layer with the NumPy oracle, before any pass.

This is the runtime's own reference: no folding, no fusion, no memory planning, one
``kernels.reference`` call per source layer. Tests compare the optimised executor against it, and it
gives every layer's output by name.
"""

from __future__ import annotations

import numpy as np

from kernels import reference as ref
from nets.errors import ModelError
from nets.ir import Graph


def interpret(g: Graph, x: np.ndarray, keep_all: bool = False) -> dict[str, np.ndarray]:
    """Values by name: the graph outputs, or every value with ``keep_all``."""
    vals = {g.inputs[0]: np.asarray(x, np.float32)}
    for n in g.nodes:
        if n.op == "input":
            continue
        a, w = n.attrs, n.weights
        xs = [vals[v] for v in n.inputs]
        x0 = xs[0]
        op = n.op
        if op == "conv2d":
            res = xs[1] if a.get("residual") is not None else None
            y = ref.conv2d(x0, w["kernel"], w.get("bias"), a["strides"], a["pad"], a.get("act"), res)
        elif op == "depthwise_conv2d":
            y = ref.depthwise_conv2d(x0, w["depthwise_kernel"], w.get("bias"), a["strides"], a["pad"],
                                     a.get("act"))
        elif op == "separable_conv2d":
            y = ref.separable_conv2d(x0, w["depthwise_kernel"], w["pointwise_kernel"], w.get("bias"),
                                     a["strides"], a["pad"], a.get("act"))
        elif op == "batch_norm":
            y = ref.batch_norm(x0, w.get("gamma"), w.get("beta"), w["moving_mean"], w["moving_variance"],
                               a["epsilon"])
        elif op == "activation":
            act = a["act"]
            y = x0 if act == "linear" else ref.softmax(x0) if act == "softmax" else ref.activation(x0, act)
        elif op == "max_pool2d":
            y = ref.max_pool2d(x0, a["pool_size"], a["strides"], a["pad"])
        elif op == "avg_pool2d":
            y = ref.avg_pool2d(x0, a["pool_size"], a["strides"], a["pad"], a["count_include_pad"])
        elif op in ("global_avg_pool", "global_max_pool"):
            y = getattr(ref, op)(x0)
            if a.get("keepdims"):
                y = y[:, None, None, :]
        elif op == "zero_pad":
            y = ref.zero_pad(x0, a["pad"])
        elif op == "add":
            y = ref.add(xs[0], xs[1], a.get("act"))
        elif op == "concat":
            y = ref.concat(xs)
        elif op == "dense":
            act = a.get("act")
            y = ref.dense(x0, w["kernel"], w.get("bias"), None if act == "softmax" else act)
            if act == "softmax":
                y = ref.softmax(y)
        elif op == "softmax":
            y = ref.softmax(x0)
        elif op in ("flatten", "reshape"):
            y = x0.reshape((x0.shape[0],) + tuple(g.shapes[n.output]))
        elif op == "dropout":
            y = x0
        elif op == "channel_affine":
            y = ref.channel_affine(x0, w["scale"], w["shift"], a.get("act"))
        else:
            raise ModelError(f"layer {n.name!r}: the interpreter has no rule for op {op!r}")
        vals[n.output] = y
    if keep_all:
        return vals
    return {v: vals[v] for v in g.outputs}
