"""The call sequence that tests a kernel's saved plan (its kernel arguments, reused when the next
call has the very same buffers and options): shared by test_cpu_conv.py and test_sepconv.py."""

import numba

# (output buffer index, act, threads) per call; REUSED: whether that call may reuse the plan
SEQUENCE = [(0, "relu", 2), (0, "relu", 2), (1, "relu", 2), (0, None, 2), (0, None, 1), (0, None, 1)]
REUSED = [False, True, False, False, False, True]


def plan_calls():
    """Yield (output index, act) per call of SEQUENCE with Numba's thread count set for it; the
    thread count is restored afterwards."""
    before = numba.get_num_threads()
    try:
        for o, act, t in SEQUENCE:
            numba.set_num_threads(min(t, numba.config.NUMBA_NUM_THREADS))
            yield o, act
    finally:
        numba.set_num_threads(before)
