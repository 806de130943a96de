"""``Model``: a graph with weights, optimised once and run on one backend at any batch size."""

from __future__ import annotations

import time

import numpy as np

from kernels import get_backend
from nets.errors import InputError, ModelError
from nets.executor import Executor, pack_weights
from nets.ir import Graph
from nets.passes import optimize


def set_threads(threads: int | None) -> int:
    """Apply a CPU thread count (None: all cores Numba sees); returns the count in force."""
    import numba

    limit = numba.config.NUMBA_NUM_THREADS
    if threads is None:
        threads = limit
    if not 1 <= int(threads) <= limit:
        raise ModelError(f"threads={threads} is outside 1..{limit} (the cores Numba can use here; "
                         "set NUMBA_NUM_THREADS before starting Python to change the upper bound)")
    numba.set_num_threads(int(threads))
    return int(threads)


class Model:
    """Callable inference model. ``model(x)`` takes NHWC float32 (N,) + input_shape and returns the
    output as a new array (a list when the graph has several outputs)."""

    def __init__(self, graph: Graph, device: str = "cpu", threads: int | None = None,
                 weights_source: str = "", preprocess: str | None = None, fuse: bool = True):
        self.source_graph = graph
        self.name = graph.name
        self.device = device
        self.weights_source = weights_source
        self.preprocess_mode = preprocess
        self.threads = set_threads(threads) if device == "cpu" else threads
        self.graph = optimize(graph, fuse=fuse)
        try:
            self.backend = get_backend(device)
        except ValueError as e:
            raise ModelError(str(e)) from None
        self._packed = pack_weights(self.graph, self.backend)
        self._executors: dict[int, Executor] = {}

    @property
    def input_shape(self) -> tuple:
        return tuple(self.graph.shapes[self.graph.inputs[0]])

    @property
    def output_shape(self) -> tuple:
        return tuple(self.graph.shapes[self.graph.outputs[0]])

    def executor(self, batch: int) -> Executor:
        if batch not in self._executors:
            self._executors[batch] = Executor(self.graph, self.backend, self._packed, batch)
        return self._executors[batch]

    def check_input(self, x) -> np.ndarray:
        where = f"model {self.name!r}"
        if not isinstance(x, np.ndarray):
            raise InputError(f"{where} expects a numpy array, got {type(x).__name__}")
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
        if not np.isfinite(x).all():
            raise InputError(f"{where}: the input contains NaN or infinite values")
        return x

    def __call__(self, x):
        x = self.check_input(x)
        if self.device == "cpu":
            set_threads(self.threads)
        outs = self.executor(x.shape[0]).run(x)
        return outs[0] if len(outs) == 1 else outs

    def timed(self, x, repeat: int = 10, warmup: int = 2) -> dict:
        """First-run and steady-state latency in seconds (median of ``repeat``)."""
        x = self.check_input(x)
        if self.device == "cpu":
            set_threads(self.threads)
        ex_new = x.shape[0] not in self._executors
        t0 = time.perf_counter()
        ex = self.executor(x.shape[0])
        ex.run(x)
        first = time.perf_counter() - t0
        for _ in range(warmup):
            ex.run(x)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            ex.run(x)
            times.append(time.perf_counter() - t0)
        return {"first_s": first, "first_includes_setup": ex_new, "median_s": float(np.median(times)),
                "min_s": float(np.min(times)), "repeat": repeat, "warmup": warmup}

    def profile(self, x, repeat: int = 20, warmup: int = 3, **kw):
        """Per-layer kernel times (see ``nets.profile.profile_model``)."""
        from nets.profile import profile_model
        return profile_model(self, x, repeat=repeat, warmup=warmup, **kw)

    def summary(self) -> str:
        from nets.summary import summary_text
        return summary_text(self.source_graph, self.graph)
