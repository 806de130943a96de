"""Runners: an executor plus what its device needs around a run. ``CpuRunner`` applies the model's
thread count on the calling thread; ``nets.runtime.cuda_graph.GpuRunner`` adds a stream and CUDA-graph
replay. Both have ``run(x) -> list of outputs`` and ``executor``, so ``Model`` needs no device branches."""

from __future__ import annotations

from nets.runtime.threads import set_threads


class CpuRunner:
    def __init__(self, executor, threads: int):
        self.executor = executor
        self.threads = threads

    def run(self, x) -> list:
        set_threads(self.threads)
        return self.executor.run(x)

    def sync(self):
        """Nothing to wait for: CPU kernels return when they are done."""
