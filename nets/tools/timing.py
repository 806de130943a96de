"""The one timing protocol of ``nets run``, ``nets profile`` and ``nets compare``: a first run step by step
(kernel compilation and setup, with a progress bar), warm-up runs, then medians of repeated runs; and
the synthetic input they use when no image is given."""

from __future__ import annotations

import time

import numpy as np

from nets.tools.progress import Progress


def synthetic_input(model, batch: int, seed: int = 0) -> np.ndarray:
    """Random RGB images, preprocessed for ``model``: NHWC float32 (batch,) + input_shape."""
    from nets.io.images import preprocess

    h, w, c = model.input_shape
    images = np.random.default_rng(seed).integers(0, 256, (batch, h, w, c)).astype(np.uint8)
    return preprocess(model.preprocess_mode or "none", images)


def device_sync(xp):
    """A function that waits for the device (None for NumPy: CPU kernels return when done)."""
    if xp is np:
        return None
    return xp.cuda.get_current_stream().synchronize


def first_run(ex, x, sync=None, progress: bool = True, label: str = "first run (compiling kernels)") -> list:
    """Run executor ``ex`` once with a progress bar: on the CPU through ``nets.runtime.compile.first_run``
    (helper processes compile alongside on a cold cache). Seconds per step, in step order: from the
    previous step's completion to its own (a step deferred while a helper compiled its kernel counts
    from the moment it was taken up again; a final run for the result counts to the last step)."""
    bar = Progress(len(ex.steps), label, enabled=progress)
    spent = {}
    clock = [time.perf_counter()]

    def done(step):
        if sync is not None:
            sync()
        now = time.perf_counter()
        spent[id(step)] = spent.get(id(step), 0.0) + now - clock[0]
        clock[0] = now
        bar.update(step.node.name)

    if ex.xp is np:
        import numba

        from nets.runtime.compile import first_run as compile_first_run

        compile_first_run(ex, x, numba.get_num_threads(), on_step=done)
    else:
        ex.load_input(x)
        with ex.workspace_scope():
            for step in ex.steps:
                step.run()
                done(step)
    times = [spent.get(id(s), 0.0) for s in ex.steps]
    if times:
        times[-1] += time.perf_counter() - clock[0]
    bar.close()
    return times


def time_runs(ex, x, repeat: int, warmup: int, sync=None, tick=None):
    """Uninstrumented end-to-end seconds per run, each step's median seconds from instrumented runs,
    and each instrumented run's total; the two kinds alternate so both see the same machine state."""
    for _ in range(warmup):
        ex.run(x)
        if tick is not None:
            tick("warm-up")
    e2e, per_step = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ex.run(x)
        if sync is not None:
            sync()
        e2e.append(time.perf_counter() - t0)
        times: list = []
        ex.run(x, timings=times, sync=sync)
        per_step.append(times)
        if tick is not None:
            tick("timing")
    return e2e, np.median(np.array(per_step), axis=0), [sum(t) for t in per_step]


def time_calls(fn, repeat: int, warmup: int = 0) -> list[float]:
    """Seconds of each of ``repeat`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times
