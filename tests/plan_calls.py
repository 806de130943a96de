"""The call sequence that tests a kernel's saved plan (its kernel arguments, reused when the next
call has the very same buffers and options): shared by test_cpu_conv.py and test_sepconv.py."""

from helpers import numba_threads

# (output buffer index, act, threads) per call; REUSED: whether that call may reuse the plan
SEQUENCE = [(0, "relu", 2), (0, "relu", 2), (1, "relu", 2), (0, None, 2), (0, None, 1), (0, None, 1)]
REUSED = [False, True, False, False, False, True]


def plan_calls():
    """Yield (output index, act) per call of SEQUENCE; the caller's call runs with Numba's thread
    count set for it, and the count is restored after each."""
    for o, act, t in SEQUENCE:
        with numba_threads(t):
            yield o, act
