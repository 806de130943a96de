"""``Model``: a graph with weights, optimised once and run on one backend at any batch size.

The model owns the optimised graph and the weights packed for its backend (shared by every batch
size and every caller). Each call leases a runner from a ``nets.runtime.pool.RunnerPool``: an
executor bound to an arena and a kernel workspace that no concurrent call shares, plus what the
device needs (``nets.runtime.runner.CpuRunner``, ``nets.runtime.cuda_graph.GpuRunner``). So any
number of threads may call one model, and the arenas it keeps stay under ``memory_budget``.
"""

from __future__ import annotations

import numpy as np

from kernels import Workspace, get_backend, missing_ops, nbytes
from nets.errors import InputError, ModelError
from nets.graph.ir import Graph
from nets.graph.passes import optimize
from nets.runtime.executor import Arena, Executor, pack_weights
from nets.runtime.pool import RunnerPool
from nets.runtime.runner import CpuRunner
from nets.runtime.threads import set_threads, thread_limit

MEMORY_BUDGET = 512 << 20      # default bytes of arenas + kernel scratch a model keeps between calls
GPU_CONCURRENCY = 4            # default concurrent calls of a GPU model (one stream each)


def backend_for(device: str, precision: str = "fp32"):
    """The kernels module for ``device``, or a ModelError saying why it cannot be used here."""
    try:
        backend = get_backend(device, precision)
    except ValueError as e:
        raise ModelError(str(e)) from None
    if device == "gpu":
        reason = backend.unavailable_reason()
        if reason is not None:
            raise ModelError(f"device='gpu' is not usable here: {reason}")
    missing = missing_ops(backend)
    if missing:
        raise ModelError(f"device={device!r}: the backend lacks the ops {missing}")
    return backend


class Model:
    """Callable inference model. ``model(x)`` takes NHWC float32 (N,) + input_shape and returns the
    output as a new array (a list when the graph has several outputs)."""

    def __init__(self, graph: Graph, device: str = "cpu", threads: int | None = None,
                 weights_source: str = "", preprocess: str | None = None, fuse: bool = True,
                 cuda_graph: bool | None = None, memory_budget: int | None = None,
                 max_concurrency: int | None = None, precision: str = "fp32"):
        """``memory_budget``: bytes of arenas and kernel scratch kept between calls (least recently used
        ones past it are dropped; default 512 MiB). ``max_concurrency``: calls that run at once, each
        in its own arena (default: the cores Numba may use divided by ``threads``; 4 on a GPU); more
        callers wait for a free one. ``precision="tf32"`` (GPU only): convolutions on tensor cores, an
        explicit opt-in whose error bound is ``kernels.gpu.tf32.ERROR_BOUND`` per product (about 1e-3 on
        logits instead of fp32's 1e-4)."""
        if len(graph.inputs) != 1:
            raise ModelError(f"graph {graph.name!r} has {len(graph.inputs)} inputs; models with exactly one "
                             "input are supported")
        self.source_graph = graph
        self.name = graph.name
        self.device = device
        self.weights_source = weights_source
        self.preprocess_mode = preprocess
        self.threads = set_threads(threads) if device == "cpu" else threads
        self.graph = optimize(graph, fuse=fuse)
        self.precision = precision
        self.backend = backend_for(device, precision)
        # GPU: replay the whole network as a CUDA graph (None: at batch <= GRAPH_MAX_BATCH, where
        # launch overhead dominates)
        self.cuda_graph = cuda_graph
        self.packed = pack_weights(self.graph, self.backend)
        if max_concurrency is None:
            max_concurrency = GPU_CONCURRENCY if device == "gpu" else max(1, thread_limit() // (self.threads or 1))
        xp = getattr(self.backend, "xp", np)
        self.pool = RunnerPool(lambda batch: Arena(self.graph, xp, batch), Workspace, self._make_runner,
                               MEMORY_BUDGET if memory_budget is None else memory_budget, max_concurrency)

    @property
    def input_shape(self) -> tuple:
        return tuple(self.graph.shapes[self.graph.inputs[0]])

    @property
    def output_shape(self) -> tuple:
        return tuple(self.graph.shapes[self.graph.outputs[0]])

    @property
    def memory_budget(self) -> int:
        return self.pool.budget_bytes

    @memory_budget.setter
    def memory_budget(self, nbytes_: int):
        self.pool.budget_bytes = int(nbytes_)

    def new_executor(self, batch: int) -> Executor:
        """A fresh executor (own arena and workspace) for ``batch``, outside the pool: for tools that
        run steps one by one."""
        return Executor(self.graph, self.backend, self.packed, batch)

    def _make_runner(self, batch: int, arena: Arena, workspace: Workspace):
        ex = Executor(self.graph, self.backend, self.packed, batch, arena, workspace)
        if self.device == "gpu":
            from nets.runtime.cuda_graph import GRAPH_MAX_BATCH, GpuRunner

            return GpuRunner(ex, graph=batch <= GRAPH_MAX_BATCH if self.cuda_graph is None else bool(self.cuda_graph))
        return CpuRunner(ex, self.threads)

    def lease(self, batch: int):
        """``with model.lease(batch) as runner:`` a runner (``runner.executor``, ``runner.run(x)``) no
        other call uses until the block ends."""
        return self.pool.lease(batch)

    def memory(self) -> dict:
        """Bytes held: the weights (source and optimised graphs), the packed weights (kernel layouts,
        Winograd transforms, shifted depthwise copies), the arenas and the kernel scratch kept by the
        runner pool, and their total; ``budget`` is the limit on arenas + scratch."""
        seen: set = set()
        weights = sum(nbytes(n.weights, seen) for g in (self.source_graph, self.graph) for n in g.nodes)
        packed = nbytes(self.packed, seen)
        pool = self.pool.stats()
        out = dict(weights=weights, packed=packed, arenas=pool["arena_bytes"], scratch=pool["scratch_bytes"])
        out["total"] = sum(out.values())
        out.update(budget=self.memory_budget, slots=pool["slots"])
        return out

    def _is_device_array(self, x) -> bool:
        if self.device != "gpu":
            return False
        import cupy

        return isinstance(x, cupy.ndarray)

    def check_input(self, x) -> np.ndarray:
        where = f"model {self.name!r}"
        on_device = self._is_device_array(x)
        if not isinstance(x, np.ndarray) and not on_device:
            kinds = "a numpy or cupy array" if self.device == "gpu" else "a numpy array"
            raise InputError(f"{where} expects {kinds}, got {type(x).__name__}")
        if x.dtype != np.float32:
            hint = (f"; images must be preprocessed first: nets.preprocess({self.name!r}, images)"
                    if x.dtype.kind in "ui" else "; convert with x.astype(np.float32)")
            raise InputError(f"{where} expects float32 input, got {x.dtype}{hint}")
        want = self.input_shape
        if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
            hint = "; add a batch axis with x[None]" if tuple(x.shape) == want else ""
            raise InputError(f"{where} expects input of shape (N, {', '.join(map(str, want))}) "
                             f"(NHWC, any batch N >= 1), got {tuple(x.shape)}{hint}")
        if x.shape[0] < 1:
            raise InputError(f"{where}: the input batch is empty")
        xp = self.backend.xp if on_device else np
        finite = bool(xp.isfinite(x.min()) and xp.isfinite(x.max()))   # NaN and inf reach min or max; no temporary
        if not finite:
            raise InputError(f"{where}: the input contains NaN or infinite values")
        return x

    def __call__(self, x):
        x = self.check_input(x)
        with self.pool.lease(x.shape[0]) as runner:
            outs = runner.run(x)
        outs = self.to_interface(outs)
        return outs[0] if len(outs) == 1 else outs

    def to_interface(self, outs: list) -> list:
        """Outputs as the caller expects them (importers with another layout override this)."""
        return outs

    def profile(self, x, repeat: int = 20, warmup: int = 3, **kw):
        """Per-layer kernel times (``nets.tools.profile.profile_model``; the tooling layer is imported
        only when asked for)."""
        from nets.tools.profile import profile_model
        return profile_model(self, x, repeat=repeat, warmup=warmup, **kw)

    def summary(self) -> str:
        from nets.graph.summary import summary_text
        return summary_text(self.source_graph, self.graph)
