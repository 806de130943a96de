"""``Model``: a graph with weights, optimised once and run on one backend at any batch size.

The model owns the optimised graph and the weights packed for its backend (shared by every batch
size); per batch size it keeps a runner (an executor with its arena, plus what the device needs:
``nets.runtime.runner.CpuRunner`` or ``nets.runtime.cuda_graph.GpuRunner``).
"""

from __future__ import annotations

import numpy as np

from kernels import get_backend, missing_ops
from nets.errors import InputError, ModelError
from nets.graph.ir import Graph
from nets.graph.passes import optimize
from nets.runtime.executor import Executor, pack_weights
from nets.runtime.runner import CpuRunner
from nets.runtime.threads import set_threads


def backend_for(device: str):
    """The kernels module for ``device``, or a ModelError saying why it cannot be used here."""
    try:
        backend = get_backend(device)
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
                 cuda_graph: bool | None = None):
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
        self.backend = backend_for(device)
        # GPU: replay the whole network as a CUDA graph (None: at batch <= GRAPH_MAX_BATCH, where
        # launch overhead dominates)
        self.cuda_graph = cuda_graph
        self.packed = pack_weights(self.graph, self.backend)
        self._runners: dict[int, object] = {}

    @property
    def input_shape(self) -> tuple:
        return tuple(self.graph.shapes[self.graph.inputs[0]])

    @property
    def output_shape(self) -> tuple:
        return tuple(self.graph.shapes[self.graph.outputs[0]])

    def new_executor(self, batch: int) -> Executor:
        """A fresh executor (own arena) for ``batch`` over this model's packed weights."""
        return Executor(self.graph, self.backend, self.packed, batch)

    def runner(self, batch: int):
        """The runner (executor + device specifics) this model uses at ``batch``."""
        r = self._runners.get(batch)
        if r is None:
            ex = self.new_executor(batch)
            if self.device == "gpu":
                from nets.runtime.cuda_graph import GRAPH_MAX_BATCH, GpuRunner

                use_graph = batch <= GRAPH_MAX_BATCH if self.cuda_graph is None else bool(self.cuda_graph)
                r = GpuRunner(ex, graph=use_graph)
            else:
                r = CpuRunner(ex, self.threads)
            self._runners[batch] = r
        return r

    def executor(self, batch: int) -> Executor:
        return self.runner(batch).executor

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
        finite = bool(self.backend.xp.isfinite(x).all()) if on_device else np.isfinite(x).all()
        if not finite:
            raise InputError(f"{where}: the input contains NaN or infinite values")
        return x

    def __call__(self, x):
        x = self.check_input(x)
        outs = self.to_interface(self.runner(x.shape[0]).run(x))
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
