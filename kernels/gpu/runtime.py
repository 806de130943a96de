"""Compile cache and launch helpers shared by the CUDA kernel families.

Each family keeps its CUDA C in ``<family>.cu`` next to its loader. A specialisation is a template
instance named by a C++ expression (``"conv2d_igemm<128, 128, 8, 8, 1, true>"``); it is compiled by
NVRTC through ``cupy.RawModule`` the first time it is asked for and kept for the life of the process
(CuPy also keeps the compiled cubin in its on-disk kernel cache, so a second process skips NVRTC).

Loaders declare every expression they can ask for in a ``SPECIALISATIONS`` tuple; the nvcc check in
``tests/test_cuda_compile.py`` compiles exactly those, so nothing reaches a GPU uncompiled here.
"""

from __future__ import annotations

import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OPTIONS = ("-std=c++17",)
_modules: dict[tuple[str, str], object] = {}
_sources: dict[str, str] = {}


def unavailable_reason() -> str | None:
    """Why no CUDA device can be used here, or None when one can. Import failure and an absent or
    unusable device give different reasons, so a skipped test says which one it was."""
    try:
        import cupy
    except Exception as e:                      # noqa: BLE001 - any import failure means no GPU backend
        return f"cupy is not importable ({type(e).__name__}: {e}); install kernelnets[gpu]"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:                      # noqa: BLE001 - no driver, driver too old, ...
        return f"cupy.cuda.runtime.getDeviceCount() failed: {e}"
    if count == 0:
        return "cupy.cuda.runtime.getDeviceCount() is 0: no CUDA device"
    return None


def source(family: str) -> str:
    if family not in _sources:
        with open(os.path.join(HERE, f"{family}.cu")) as f:
            _sources[family] = f.read()
    return _sources[family]


def function(family: str, expr: str):
    """The compiled kernel ``expr`` of ``<family>.cu`` (compiled on first use, then cached)."""
    key = (family, expr)
    fn = _modules.get(key)
    if fn is None:
        import cupy

        module = cupy.RawModule(code=source(family), options=OPTIONS, name_expressions=[expr])
        fn = _modules[key] = module.get_function(expr)
    return fn


def compiled_count() -> int:
    return len(_modules)


def launch(family: str, expr: str, grid, block, args, shared_mem: int = 0):
    """Launch on CuPy's current stream (the executor's stream inside ``nets.gpu``)."""
    function(family, expr)(tuple(grid), tuple(block), tuple(args), shared_mem=shared_mem)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def i32(v) -> np.int32:
    return np.int32(v)


def f32(v) -> np.float32:
    return np.float32(v)


ACT_CODES = {None: 0, "relu": 1, "relu6": 2}


def act_code(act) -> np.int32:
    try:
        return np.int32(ACT_CODES[act])
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; choose one of None, 'relu', 'relu6'") from None


def aligned16(*arrays) -> bool:
    """True when every array's first element sits on a 16-byte boundary (float4 loads are legal)."""
    return all(a.data.ptr % 16 == 0 for a in arrays)


def require_contiguous(name: str, *arrays):
    for a in arrays:
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: GPU kernels need C-contiguous buffers, got strides {a.strides}")
