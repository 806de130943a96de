"""Runs an optimised graph on one backend for one batch size.

Everything is decided once, when the executor is built: the memory plan, the arena, every buffer
view and every kernel call's arguments. ``run`` only copies the input in, calls the steps and copies
the outputs out, so nothing is allocated per call in steady state.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from kernels import aligned_empty
from nets.errors import ModelError
from nets.ir import Graph, Node
from nets.planner import plan_memory


@dataclass
class Step:
    node: Node
    run: Callable[[], None]
    fixed_kernel: str
    packed: object = None    # packed weights: their ``variant`` may be settled on the first call

    @property
    def kernel(self) -> str:
        """The kernel variant that runs (for profiles): read after a run, it is the one that ran."""
        return getattr(self.packed, "variant", None) or self.fixed_kernel


def pack_weights(g: Graph, backend) -> dict:
    """Per node, the backend's packed weights. Done once per model, shared by all batch sizes."""
    packed = {}
    for n in g.nodes:
        w = n.weights
        if n.op == "conv2d":
            packed[n.name] = backend.pack_conv2d(w["kernel"], w.get("bias"))
        elif n.op == "depthwise_conv2d":
            packed[n.name] = backend.pack_depthwise(w["depthwise_kernel"], w.get("bias"))
        elif n.op == "dense":
            packed[n.name] = backend.pack_dense(w["kernel"], w.get("bias"))
        elif n.op == "depthwise_pointwise":
            args = (w["depthwise_kernel"], w["depthwise_bias"], w["kernel"], w.get("bias"))
            if hasattr(backend, "pack_depthwise_pointwise"):
                packed[n.name] = backend.pack_depthwise_pointwise(*args)
            else:
                packed[n.name] = SeparatePair(backend, *args)
    return packed


class SeparatePair:
    """A depthwise_pointwise node on a backend without the fused kernel: the two kernels, with the
    intermediate in a buffer of its own (made when the executor is built)."""

    def __init__(self, backend, dw_kernel, dw_bias, kernel, bias):
        self.dw = backend.pack_depthwise(dw_kernel, dw_bias)
        self.pw = backend.pack_conv2d(kernel, bias)

    @property
    def variant(self):
        return f"{getattr(self.dw, 'variant', 'depthwise')}+{getattr(self.pw, 'variant', 'conv2d')}"


class Executor:
    def __init__(self, g: Graph, backend, packed: dict, batch: int):
        self.graph, self.backend, self.batch = g, backend, batch
        self.plan = plan = plan_memory(g, batch)
        self.xp = xp = getattr(backend, "xp", np)      # the backend's array module (cupy on a GPU)
        # 64-byte aligned on the CPU (the planner aligns offsets; NumPy's own base is 16-byte)
        self.arena = aligned_empty(plan.arena_floats) if xp is np else xp.empty(plan.arena_floats, xp.float32)
        self._bufs = {}
        for r, off in plan.offsets.items():
            shape = (batch,) + tuple(g.shapes[r])
            self._bufs[r] = self.arena[off:off + plan.sizes[r]].reshape(shape)
        for v, r in plan.views.items():
            self._bufs[v] = self._bufs[r].reshape((batch,) + tuple(g.shapes[v]))
        self.steps = [self._step(n, packed) for n in g.nodes if n.op != "input"]

    def buffer(self, value: str) -> np.ndarray:
        """The memory holding ``value`` (for a concat slice: the channels it occupies)."""
        if value in self.plan.slices:
            root, c0 = self.plan.slices[value]
            return self._bufs[root][..., c0:c0 + self.graph.shapes[value][-1]]
        return self._bufs[value]

    def _out(self, value):
        root, c0 = self.plan.root(value)
        return self._bufs[root], c0

    def _step(self, n: Node, packed) -> Step:
        b, a = self.backend, n.attrs
        ins = [self.buffer(v) for v in n.inputs]
        op = n.op
        if op in ("conv2d", "depthwise_conv2d", "depthwise_pointwise", "max_pool2d", "avg_pool2d"):
            out, c0 = self._out(n.output)
            x = ins[0]
            if op == "conv2d":
                p = packed[n.name]
                res = ins[1] if a.get("residual") is not None else None
                fn = lambda: b.conv2d(x, p, out, a["strides"], a["pad"], a["act"], res, c0)
                return Step(n, fn, p.variant, p)
            if op == "depthwise_pointwise":
                return self._depthwise_pointwise(n, x, ins, out, c0, packed[n.name])
            if op == "depthwise_conv2d":
                p = packed[n.name]
                fn = lambda: b.depthwise_conv2d(x, p, out, a["strides"], a["pad"], a["act"], c0)
                return Step(n, fn, p.variant, p)
            if op == "max_pool2d":
                return Step(n, lambda: b.max_pool2d(x, out, a["pool_size"], a["strides"], a["pad"], c0),
                            "max_pool2d")
            return Step(n, lambda: b.avg_pool2d(x, out, a["pool_size"], a["strides"], a["pad"],
                                                a["count_include_pad"], c0), "avg_pool2d")
        if op == "concat":
            out, c0 = self._out(n.output)
            copies = []
            c = c0
            for v, buf in zip(n.inputs, ins):
                width = self.graph.shapes[v][-1]
                if self.plan.slices.get(v, (None,))[0] != self.plan.root(n.output)[0]:
                    copies.append((buf, out[..., c:c + width]))
                c += width
            def fn():
                for src, dst in copies:
                    dst[...] = src
            return Step(n, fn, "concat-inplace" if not copies else f"concat-copy{len(copies)}")
        out = self._bufs[n.output]
        if op == "reshape":
            return Step(n, lambda: None, "view")
        x = ins[0]
        if op in ("global_avg_pool", "global_max_pool"):
            kern = getattr(b, op)
            o2 = out.reshape(self.batch, -1)
            return Step(n, lambda: kern(x, o2), op)
        if op == "add":
            y = ins[1]
            return Step(n, lambda: b.add(x, y, out, a.get("act")), "add")
        if op == "dense":
            p = packed[n.name]
            x2 = x.reshape(self.batch, -1)
            return Step(n, lambda: b.dense(x2, p, out, a.get("act")), p.variant, p)
        if op == "softmax":
            x2, o2 = x.reshape(-1, x.shape[-1]), out.reshape(-1, x.shape[-1])
            return Step(n, lambda: b.softmax(x2, o2), "softmax")
        if op == "activation":
            return Step(n, lambda: b.activation(x, out, a["act"]), a["act"])
        if op == "channel_affine":
            s, t = n.weights["scale"], n.weights["shift"]
            return Step(n, lambda: b.channel_affine(x, s, t, out, a.get("act")), "channel_affine")
        if op == "zero_pad":
            return Step(n, lambda: b.zero_pad(x, out, a["pad"]), "zero_pad")
        if op == "batch_norm":
            raise ModelError(f"layer {n.name!r}: batch_norm must be folded by nets.passes.optimize first")
        raise ModelError(f"layer {n.name!r}: no kernel for op {op!r}")

    def _depthwise_pointwise(self, n: Node, x, ins, out, c0, p) -> Step:
        b, a = self.backend, n.attrs
        res = ins[1] if a.get("residual") is not None else None
        if not isinstance(p, SeparatePair):
            fn = lambda: b.depthwise_pointwise(x, p, out, a["dw_strides"], a["dw_pad"], a["dw_act"], a["act"], res, c0,
                                               a.get("in_act"))
            return Step(n, fn, p.variant, p)
        mid_shape = (self.batch,) + self._mid_shape(n)
        mid = self.xp.empty(mid_shape, self.xp.float32)
        xin = x if a.get("in_act") is None else self.xp.empty(x.shape, self.xp.float32)

        def fn():
            if xin is not x:
                b.activation(x, xin, a["in_act"])
            b.depthwise_conv2d(xin, p.dw, mid, a["dw_strides"], a["dw_pad"], a["dw_act"], 0)
            b.conv2d(mid, p.pw, out, (1, 1), (0, 0, 0, 0), a["act"], res, c0)
        return Step(n, fn, p.variant, p)

    def _mid_shape(self, n: Node) -> tuple:
        oh, ow, _ = self.graph.shapes[n.output]
        return (oh, ow, self.graph.shapes[n.inputs[0]][-1] * n.attrs["depth_multiplier"])

    def run(self, x, timings: list | None = None, sync=None) -> list:
        """Run on ``x`` (already validated: (batch,) + input shape, float32), returning new arrays of
        the backend's array module. With ``timings``, appends each step's seconds (instrumented run);
        ``sync`` is called before each clock reading (a device synchronise on a GPU)."""
        self._bufs[self.graph.inputs[0]][...] = self.xp.asarray(x)
        if timings is None:
            for s in self.steps:
                s.run()
        else:
            clock = time.perf_counter
            for s in self.steps:
                if sync is not None:
                    sync()
                t0 = clock()
                s.run()
                if sync is not None:
                    sync()
                timings.append(clock() - t0)
        return [self.buffer(v).copy() for v in self.graph.outputs]
