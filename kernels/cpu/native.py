"""Addresses of compiled kernels, for drivers that call them through ``stack.call_native``.

A driver that calls a work item directly gets the work item's code, and the register tiles under
it, linked in and compiled again (see ``call_native``). A driver that takes the work item's address
as an argument compiles to a loop of indirect calls instead, and the work item is compiled once,
as its own cached function. The address belongs to this process: it is looked up (from the
dispatcher's compiled or cached code) when a kernel is first planned and passed on every call, so
nothing process-specific reaches Numba's cache.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba._dispatcher import compute_fingerprint

from kernels.cpu.cache import compile_top_level

__all__ = ["array1d", "geom_type", "item_address", "native_address", "untyped_calls"]

_ADDRS: dict = {}          # (fn, argtypes) -> address
_BY_ARRAYS: dict = {}      # (fn, types function, the arrays' fingerprints) -> address
TYPED: set = set()         # (fn, argtypes) of every call_native typed (compiled) in this process

array1d = types.Array(types.float32, 1, "C")


def geom_type(cls) -> types.Type:
    """The Numba type of a geometry named tuple of ints (``ConvGeom`` and the like)."""
    return numba.typeof(cls(*([0] * len(cls._fields))))


def native_address(fn, argtypes: tuple) -> int:
    """The address of ``fn``'s native code for ``argtypes`` (compiled, or loaded from the cache, on
    first use), for ``stack.call_native(address, fn, *args)`` with ``args`` of exactly these types."""
    key = (fn, argtypes)
    addr = _ADDRS.get(key)
    if addr is None:
        compile_top_level(fn, argtypes)      # (another process compiling it: ``Claimed``, the step is deferred)
        cres = fn.overloads[argtypes]
        name = cres.fndesc.mangled_name
        addr = cres.library.get_pointer_to_function(name)
        if not addr:
            raise RuntimeError(f"no native code for {fn.py_func.__qualname__}{argtypes}")
        _ADDRS[key] = addr = np.int64(addr)
    return addr


def item_address(fn, make_types, *arrays) -> np.int64:
    """``native_address(fn, make_types(*types of arrays))``, memoised by the arrays' type fingerprints
    (0.2 us each; ``numba.typeof`` takes ~10 us): for drivers whose callee's types follow from the
    layouts of the arrays they are given (an output that is a channel slice, say)."""
    key = (fn, make_types, *map(compute_fingerprint, arrays))
    addr = _BY_ARRAYS.get(key)
    if addr is None:
        addr = _BY_ARRAYS[key] = native_address(fn, make_types(*(numba.typeof(a) for a in arrays)))
    return addr


def untyped_calls() -> list:
    """The ``call_native`` call sites compiled in this process whose argument types no address was
    looked up for: each would call code compiled for other types (tests check that this is empty)."""
    return sorted(f"{fn.py_func.__qualname__}{argtypes}" for fn, argtypes in TYPED - set(_ADDRS))
