"""The decode pipeline: a small thread pool reads, decodes, resizes and preprocesses the next batches
while the model runs the current one.

Why threads are enough: Pillow's decoders, NumPy's arithmetic and our Numba kernels (``nogil=True``)
all release the GIL, so decoding overlaps the model on the cores the model leaves idle (its
serial steps, memory-bound layers) and costs little more than its own CPU time. Each batch is
decoded straight into one of ``depth + 1`` preallocated input buffers (no stacking copy); batch
``k + depth`` reuses the buffer of batch ``k - 1``, which the model has finished with. Every batch,
the last included, is padded to ``batch`` images so the model keeps the one arena planned for it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from nets.errors import InputError
from nets.io.images import read_image
from nets.tools.classify.classifier import error_row
from nets.tools.classify.inputs import GLOB_CHARS

DEPTH = 2               # batches decoded ahead of the one the model runs


def decode_threads_default() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _yield_to_the_model():
    """Run this decode thread at a lower priority (Linux: per-thread nice +10). The model's kernels use
    every core; a decode thread that takes a core from one of their workers stalls the whole parallel
    region (a static split waits for its slowest thread), while at low priority it runs in the gaps
    between them (serial layers, the end of each region)."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + 10))
    except (AttributeError, OSError):
        pass


def unreadable(path: str, recursive_hint: bool = True) -> str | None:
    """A clearer message than "does not exist" for what expand_inputs keeps as a path of its own."""
    if os.path.isdir(path):
        return (f"folder {path!r} holds no image files" +
                (" (--recursive also reads its subfolders)" if recursive_hint else ""))
    if GLOB_CHARS & set(path) and not os.path.exists(path):
        return f"pattern {path!r} matches no image file"
    return None


class BatchPipeline:
    """Runs a ``Classifier`` over paths, ``batch`` at a time, with ``decode_threads`` decoding ahead.

    ``wait_s`` (time the model waited for decoding) and ``model_s`` (time in the model) accumulate
    over runs: a large ``wait_s`` means decoding, not the model, bounds the rate."""

    def __init__(self, classifier, batch: int = 8, decode_threads: int | None = None, draft: bool = False,
                 depth: int = DEPTH):
        if batch < 1:
            raise InputError(f"batch must be >= 1, got {batch}")
        self.classifier, self.batch, self.draft, self.depth = classifier, int(batch), bool(draft), max(1, int(depth))
        self.decode_threads = decode_threads or decode_threads_default()
        self.pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="nets-decode",
                                       initializer=_yield_to_the_model)
        self.buffers = [np.zeros((self.batch,) + classifier.input_shape, np.float32) for _ in range(self.depth + 1)]
        self.wait_s = self.model_s = 0.0

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _decode(self, buffer: np.ndarray, j: int, path: str) -> str | None:
        """Decode ``path`` into ``buffer[j]``; the error message, or None."""
        message = unreadable(path)
        if message:
            return message
        try:
            buffer[j] = self.classifier.preprocess_one(read_image(path, self.classifier.size, draft=self.draft))
        except InputError as e:
            return str(e)
        return None

    def run(self, paths: list[str], topk: int):
        """Yields one list of rows per batch of ``paths``, in order, as each batch finishes."""
        chunks = [paths[i:i + self.batch] for i in range(0, len(paths), self.batch)]
        inflight: deque = deque()
        submitted = 0
        try:
            for k, chunk in enumerate(chunks):
                while submitted < len(chunks) and submitted <= k + self.depth:
                    buf = self.buffers[submitted % len(self.buffers)]
                    inflight.append([self.pool.submit(self._decode, buf, j, p)
                                     for j, p in enumerate(chunks[submitted])])
                    submitted += 1
                t0 = time.perf_counter()
                errors = [f.result() for f in inflight.popleft()]
                t1 = time.perf_counter()
                rows = self._rows(self.buffers[k % len(self.buffers)], chunk, errors, topk)
                self.wait_s += t1 - t0
                self.model_s += time.perf_counter() - t1
                yield rows
        finally:
            for futures in inflight:
                for f in futures:
                    f.cancel()
            for futures in inflight:        # let running decodes finish before the buffers go
                for f in futures:
                    if not f.cancelled():
                        f.exception()

    def _rows(self, buf: np.ndarray, chunk: list[str], errors: list, topk: int) -> list[dict]:
        n = len(chunk)
        if n < self.batch:
            buf[n:] = 0.0        # padding: any finite input, its rows are dropped
        if all(e is not None for e in errors):
            return [error_row(p, e) for p, e in zip(chunk, errors)]
        good = self.classifier.top_rows(self.classifier.probabilities(buf), chunk, topk)
        return [error_row(p, e) if e is not None else row for p, e, row in zip(chunk, errors, good)]
