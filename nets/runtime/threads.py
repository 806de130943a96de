"""CPU thread control: Numba's thread count is per calling thread, so a runner applies its model's
count on the thread that runs the kernels, before every run."""

from __future__ import annotations

import numpy as np

from nets.errors import ModelError


def thread_limit() -> int:
    """The most threads Numba can use in this process (NUMBA_NUM_THREADS, fixed at start-up)."""
    import numba

    return numba.config.NUMBA_NUM_THREADS


def set_threads(threads: int | None) -> int:
    """Apply a CPU thread count (None: all cores Numba sees) on the calling thread; returns the count."""
    import numba

    limit = thread_limit()
    if threads is None:
        threads = limit
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise ModelError(f"threads must be a whole number of threads (or None for all cores), got {threads!r}")
    if not 1 <= int(threads) <= limit:
        raise ModelError(f"threads={threads} is outside 1..{limit} (the cores Numba can use here; "
                         "set NUMBA_NUM_THREADS before starting Python to change the upper bound)")
    numba.set_num_threads(int(threads))
    return int(threads)
