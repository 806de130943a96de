"""Running an Executor on the GPU: one non-default stream, optional CUDA-graph capture and replay.

``GpuRunner(executor, graph=True)`` warms the executor up once on its stream (every kernel is
compiled and every lazily made workspace exists after that), then captures ``executor.steps`` into
a CUDA graph; each later ``run`` copies the input into the arena, replays the graph and copies the
outputs out. Replay removes the per-kernel Python and launch cost (tens of microseconds per layer),
which dominates small batches; ``graph=False`` launches the steps one by one on the same stream.
"""

from __future__ import annotations

import numpy as np

GRAPH_MAX_BATCH = 8        # Model's default: replay a CUDA graph up to this batch size


class GpuRunner:
    def __init__(self, executor, graph: bool = True):
        import cupy

        self.cupy = cupy
        self.executor = executor
        self.use_graph = graph
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.graph = None
        g = executor.graph
        self._input = executor.buffer(g.inputs[0])
        self._outputs = [executor.buffer(v) for v in g.outputs]

    def sync(self):
        """Wait until everything queued on this runner's stream is done."""
        self.stream.synchronize()

    def _launch_steps(self):
        with self.executor.workspace_scope():
            for s in self.executor.steps:
                s.run()

    def capture(self):
        """Warm up (compiles kernels, makes workspaces), then record every step into a CUDA graph."""
        with self.stream:
            self._launch_steps()
            self.stream.synchronize()
            self.stream.begin_capture()
            try:
                self._launch_steps()
            except BaseException:
                try:
                    self.stream.end_capture()        # a partial graph: discarded, never replayed
                except Exception:                    # noqa: BLE001 - the capture's own error is the one to report
                    pass
                self.graph = None
                raise
            self.graph = self.stream.end_capture()
        self.stream.synchronize()

    def _copy_in(self, x):
        if isinstance(x, self.cupy.ndarray):
            self._input[...] = x
        else:
            self._input.set(np.ascontiguousarray(x, np.float32), stream=self.stream)

    def run(self, x, as_numpy: bool | None = None) -> list:
        """Outputs of the network on ``x`` (numpy or cupy). Returns numpy arrays when ``x`` is numpy
        (or ``as_numpy``), else new cupy arrays, ready on this runner's stream."""
        cupy = self.cupy
        caller = cupy.cuda.get_current_stream()
        is_device = isinstance(x, cupy.ndarray)
        if as_numpy is None:
            as_numpy = not is_device
        if self.use_graph and self.graph is None:
            self.capture()
        if is_device:                       # whatever the caller queued that writes x comes first
            self.stream.wait_event(caller.record())
        with self.stream:
            self._copy_in(x)
            if self.graph is not None:
                self.graph.launch(self.stream)
            else:
                self._launch_steps()
            outs = [o.copy() for o in self._outputs]
        if as_numpy:
            return [o.get(stream=self.stream) for o in outs]   # get() on a stream waits for it
        caller.wait_event(self.stream.record())   # the caller's later work on outs waits for them
        return outs

    def timed_replays(self, repeat: int = 50) -> list[float]:
        """Seconds per whole-network run (graph replay or step launches) between device events."""
        cupy = self.cupy
        if self.use_graph and self.graph is None:
            self.capture()
        times = []
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        with self.stream:
            for _ in range(repeat):
                start.record(self.stream)
                if self.graph is not None:
                    self.graph.launch(self.stream)
                else:
                    self._launch_steps()
                stop.record(self.stream)
                stop.synchronize()
                times.append(cupy.cuda.get_elapsed_time(start, stop) * 1e-3)
        return times
