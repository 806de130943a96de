"""Runs an optimised graph on one backend for one batch size.

Everything is decided once, when the executor is built: the memory plan, the arena, every buffer
view and every kernel call's arguments. ``run`` only copies the input in, calls the steps and copies
the outputs out, so nothing is allocated per call in steady state (kernels keep their scratch in the
executor's ``kernels.Workspace``).

An ``Arena`` is one memory plan's buffer. A plan for batch M also holds any batch N <= M: every value
lives in the first N samples of its planned buffer, so two values alive at the same time still never
overlap. Executors for several batch sizes can therefore share one arena (one at a time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from kernels import Workspace, aligned_empty, using_workspace
from nets.errors import InputError, KernelnetsError, ModelError
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


def available_memory() -> int | None:
    """Bytes of memory the system can still give (Linux ``MemAvailable``), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class Arena:
    """The memory of one plan (``plan_memory(g, batch)``), 64-byte aligned on the CPU."""

    def __init__(self, g: Graph, xp, batch: int):
        self.plan = plan = plan_memory(g, batch)
        need, free = 4 * plan.arena_floats, available_memory()
        if xp is np and free is not None and need > free:
            raise InputError(f"graph {g.name!r}: batch {batch} needs {need / 2**30:.1f} GiB of activation memory, "
                             f"more than the {free / 2**30:.1f} GiB available; use a smaller batch")
        self.xp = xp
        # (the planner aligns offsets; NumPy's own base is only 16-byte aligned)
        self.memory = aligned_empty(plan.arena_floats) if xp is np else xp.empty(plan.arena_floats, xp.float32)

    @property
    def capacity(self) -> int:
        """The largest batch this arena holds."""
        return self.plan.batch

    @property
    def nbytes(self) -> int:
        return int(self.memory.nbytes)


class Executor:
    def __init__(self, g: Graph, backend, packed: dict, batch: int, arena: Arena | None = None,
                 workspace: Workspace | None = None):
        self.graph, self.backend, self.batch = g, backend, batch
        self.xp = xp = getattr(backend, "xp", np)      # the backend's array module (cupy on a GPU)
        self.arena = arena = Arena(g, xp, batch) if arena is None else arena
        if arena.capacity < batch:
            raise ModelError(f"graph {g.name!r}: an arena planned for batch {arena.capacity} cannot hold batch {batch}")
        self.plan = plan = arena.plan
        self.workspace = Workspace() if workspace is None else workspace
        self._bufs = {}
        for r, off in plan.offsets.items():
            shape = (batch,) + tuple(g.shapes[r])
            self._bufs[r] = arena.memory[off:off + batch * (plan.sizes[r] // plan.batch)].reshape(shape)
        for v, r in plan.views.items():
            self._bufs[v] = self._bufs[r].reshape((batch,) + tuple(g.shapes[v]))
        self.steps = [self._step(n, packed) for n in g.nodes if n.op != "input"]

    def workspace_scope(self):
        """Run steps inside this block to have their kernels use this executor's workspace
        (``run`` does it itself)."""
        return using_workspace(self.workspace)

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
        self.load_input(x)
        with using_workspace(self.workspace):
            self._run_steps(timings, sync)
        return self.outputs()

    def load_input(self, x):
        """Copy ``x`` into the input buffer (for running steps one by one)."""
        self._bufs[self.graph.inputs[0]][...] = self.xp.asarray(x)

    def outputs(self) -> list:
        """The outputs of the last run, as new arrays."""
        return [self.buffer(v).copy() for v in self.graph.outputs]

    def _run_steps(self, timings, sync):
        step = None
        try:
            if timings is None:
                for step in self.steps:
                    step.run()
                return
            clock = time.perf_counter
            for step in self.steps:
                if sync is not None:
                    sync()
                t0 = clock()
                step.run()
                if sync is not None:
                    sync()
                timings.append(clock() - t0)
        except (KernelnetsError, KeyboardInterrupt):
            raise
        except Exception as e:
            raise self.layer_error(step, e) from e

    def layer_error(self, step: Step, e: Exception) -> ModelError:
        """A kernel that failed, as one error naming the layer, its kernel and its input shapes."""
        n = step.node
        shapes = ", ".join(str((self.batch,) + tuple(self.graph.shapes[v])) for v in n.inputs)
        return ModelError(f"graph {self.graph.name!r}: layer {n.name!r} ({n.op}, kernel {step.kernel}) failed "
                          f"on input {shapes}: {type(e).__name__}: {e}")
