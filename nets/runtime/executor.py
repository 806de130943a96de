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
from nets.graph import ops
from nets.graph.ir import Graph, Node
from nets.runtime.planner import plan_memory


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
    """Per node, the backend's packed weights (each op's ``pack``). Done once per model, shared by
    all batch sizes."""
    packed = {}
    for n in g.nodes:
        pack = ops.get(n.op, n.name).pack
        if pack is not None:
            packed[n.name] = pack(backend, n)
    return packed


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

    def _step(self, n: Node, packed) -> Step:
        """The node's kernel (``OpDef.kernel``) bound to its buffers: a slice writer gets the whole
        buffer its output lives in and the first channel of its slice."""
        opdef = ops.get(n.op, n.name)
        if opdef.kernel is None:
            raise ModelError(f"layer {n.name!r}: op {n.op!r} has no kernel; the graph must go through "
                             "nets.graph.passes.optimize first (it folds or lowers such ops)")
        root, c0 = self.plan.root(n.output)
        if not opdef.slice_writer:
            root, c0 = n.output, 0
        in_place = tuple(self.plan.slices.get(v, (None,))[0] == root for v in n.inputs)
        call = ops.Call(self.backend, n, [self.buffer(v) for v in n.inputs], self._bufs[root], c0,
                        packed.get(n.name), self.batch, self.xp, in_place)
        k = opdef.kernel(call)
        return Step(n, k.run, k.variant, k.packed)

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
