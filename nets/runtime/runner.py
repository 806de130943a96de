"""Runners: an executor plus what its device needs around a run. ``CpuRunner`` applies the model's
thread count on the calling thread; ``nets.runtime.cuda_graph.GpuRunner`` adds a stream and CUDA-graph
replay. Both have ``run(x) -> list of outputs`` and ``executor``, so ``Model`` needs no device branches."""

from __future__ import annotations

import contextlib
import threading

from nets.runtime.compile import first_run
from nets.runtime.threads import set_threads

# Held around every CPU run when Numba's threading layer is not thread-safe (workqueue only): then two
# Python threads must never be inside parallel kernels at the same time.
_SERIAL = threading.Lock()


class CpuRunner:
    def __init__(self, executor, threads: int):
        self.executor = executor
        self.threads = threads
        threadsafe = getattr(executor.backend, "THREADSAFE", True)
        self._guard = contextlib.nullcontext() if threadsafe else _SERIAL
        self._first = True

    def run(self, x) -> list:
        with self._guard:
            set_threads(self.threads)
            if self._first:         # may compile kernels: with helper processes on a cold cache
                out = first_run(self.executor, x, self.threads)
                self._first = False
                return out
            return self.executor.run(x)

    def sync(self):
        """Nothing to wait for: CPU kernels return when they are done."""
