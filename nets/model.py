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
        try:
            self.backend = get_backend(device)
        except ValueError as e:
            raise ModelError(str(e)) from None
        if device == "gpu":
            reason = self.backend.unavailable_reason()
            if reason is not None:
                raise ModelError(f"device='gpu' is not usable here: {reason}")
        # GPU: replay the whole network as a CUDA graph (None: at batch <= GRAPH_MAX_BATCH, where
        # launch overhead dominates)
        self.cuda_graph = cuda_graph
        self._packed = pack_weights(self.graph, self.backend)
        self._executors: dict[int, Executor] = {}
        self._runners: dict[int, object] = {}

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

    def gpu_runner(self, batch: int):
        """The ``nets.gpu.GpuRunner`` (stream, CUDA graph) of this GPU model at ``batch``."""
        if batch not in self._runners:
            from nets.gpu import GRAPH_MAX_BATCH, GpuRunner

            use_graph = batch <= GRAPH_MAX_BATCH if self.cuda_graph is None else bool(self.cuda_graph)
            self._runners[batch] = GpuRunner(self.executor(batch), graph=use_graph)
        return self._runners[batch]

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
        outs = self.to_interface(self._run(self.check_input(x)))
        return outs[0] if len(outs) == 1 else outs

    def _run(self, x) -> list:
        """The graph outputs for a checked NHWC input."""
        if self.device == "gpu":           # numpy in, numpy out; cupy in, cupy out
            return self.gpu_runner(x.shape[0]).run(x)
        if self.device == "cpu":
            set_threads(self.threads)
        return self.executor(x.shape[0]).run(x)

    def to_interface(self, outs: list) -> list:
        """Outputs as the caller expects them (importers with another layout override this)."""
        return outs

    def timed(self, x, repeat: int = 10, warmup: int = 2) -> dict:
        """First-run and steady-state latency in seconds (median of ``repeat``)."""
        x = self.check_input(x)
        if self.device == "cpu":
            set_threads(self.threads)
        ex_new = x.shape[0] not in self._executors
        t0 = time.perf_counter()
        if self.device == "gpu":
            runner = self.gpu_runner(x.shape[0])
            run = lambda: (runner.run(x), runner.stream.synchronize())     # device work included
        else:
            ex = self.executor(x.shape[0])
            run = lambda: ex.run(x)
        run()
        first = time.perf_counter() - t0
        for _ in range(warmup):
            run()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            run()
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
