"""Compile cache and launch helpers shared by the CUDA kernel families.

Each family keeps its CUDA C in ``<family>.cu`` next to its loader; every ``.cu`` includes
``common.cuh`` (activation, cp.async and tensor-core helpers). A specialisation is a template
instance named by a C++ expression (``"conv2d_igemm<128, 128, 8, 8, 8, 4, 1>"``); it is
compiled by NVRTC through ``cupy.RawModule`` the first time it is asked for and kept for the life of
the process (CuPy also keeps the compiled cubin in its on-disk kernel cache, so a second process
skips NVRTC).

``OPTIONS`` are the compile options of all three compilers that see these sources (NVRTC here, nvcc
in tests/test_cuda_compile.py, g++ in emulate.py): the include path of ``common.cuh``, the
activation codes of ``kernels.ACT_CODES`` as ``-D`` defines (so Python and CUDA cannot disagree),
and a digest of the headers. CuPy's disk cache keys on the source text and the options but not on
included files, so the digest is what makes an edited header recompile.

Loaders declare every expression they can ask for in a ``SPECIALISATIONS`` tuple; the nvcc check
compiles exactly those, so nothing reaches a GPU uncompiled here.
"""

from __future__ import annotations

import glob
import hashlib
import os

import numpy as np

import kernels

HERE = os.path.dirname(os.path.abspath(__file__))


def _headers_digest() -> str:
    h = hashlib.sha1()
    for path in sorted(glob.glob(os.path.join(HERE, "*.cuh"))):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:16]


DEFINES = tuple(f"-DKN_ACT_{(name or 'none').upper()}={code}" for name, code in kernels.ACT_CODES.items())
OPTIONS = ("-std=c++17", f"-I{HERE}", *DEFINES, f"-DKN_HEADERS_DIGEST=0x{_headers_digest()}")

# Elements a kernel may index with 32-bit ints: 2^31 less the largest grid-stride step (65535 blocks
# of 256 threads), so ``t += stride`` cannot overflow either.
INDEX_LIMIT = 2**31 - 65535 * 256
MAX_GRID_X = 65535                 # grid-stride kernels never launch more blocks than this

_modules: dict[tuple[str, str], object] = {}
_sources: dict[str, str] = {}
_sm_count: list[int] = []


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


def families() -> list[str]:
    """Every kernel family: one ``<family>.cu`` with a ``kernels.gpu.<family>`` loader."""
    return sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, "*.cu")))


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
    """Launch on CuPy's current stream (the executor's stream inside the CUDA-graph runner)."""
    function(family, expr)(tuple(grid), tuple(block), tuple(args), shared_mem=shared_mem)


def sm_count() -> int:
    """Streaming multiprocessors of the current device (the emulator pretends 132, an H100/H200)."""
    if not _sm_count:
        import cupy

        _sm_count.append(cupy.cuda.Device().attributes["MultiProcessorCount"])
    return _sm_count[0]


def upload(a: np.ndarray):
    """A device copy of a host array, complete before this returns.

    ``cupy.asarray`` copies asynchronously on the current stream; the runtime's streams are
    non-blocking, so nothing would order their first kernels after such a copy. Weights are
    uploaded once, at pack time, so waiting here costs nothing in steady state."""
    import cupy

    d = cupy.asarray(np.ascontiguousarray(a, np.float32))
    cupy.cuda.get_current_stream().synchronize()
    return d


def partial_sums(size: int):
    """A float32 device buffer of ``size`` elements for split-K partial sums, kept in the caller's
    ``kernels.current_workspace()`` (the executor's) and shared by every layer that needs that size.

    Sharing is safe: an executor runs its layers one after another on one stream, and a layer's
    reduce has consumed the buffer before the next layer writes it. The buffer is made on the first
    call (the warm-up run) and is the same object on every later call, so CUDA-graph capture never
    allocates and a captured graph never sees its buffer freed; executors (one per batch size and
    stream) have their own."""
    import cupy

    return kernels.current_workspace().get(("kernels.gpu.partial_sums", size),
                                           lambda: cupy.empty(size, cupy.float32))


def check_index_range(op: str, **sizes: int):
    """Refuse tensors whose element count does not fit the kernels' 32-bit index math."""
    big = {k: int(v) for k, v in sizes.items() if int(v) > INDEX_LIMIT}
    if big:
        listed = ", ".join(f"{k} has {v:,} elements" for k, v in big.items())
        raise ValueError(f"{op}: {listed}; the CUDA kernels index with 32-bit ints and take at most "
                         f"{INDEX_LIMIT:,} elements per tensor (split the batch)")


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def grid1d(count: int, block: int = 256):
    """Grid and block of a grid-stride kernel over ``count`` items."""
    return (max(1, min(cdiv(count, block), MAX_GRID_X)), 1, 1), (block, 1, 1)


def i32(v) -> np.int32:
    return np.int32(v)


def f32(v) -> np.float32:
    return np.float32(v)


def act_code(act) -> np.int32:
    """``kernels.act_code`` as the np.int32 a kernel argument must be."""
    return np.int32(kernels.act_code(act))


def aligned16(*arrays) -> bool:
    """True when every array's first element sits on a 16-byte boundary (float4 loads are legal)."""
    return all(a.data.ptr % 16 == 0 for a in arrays)


def require_contiguous(name: str, *arrays):
    for a in arrays:
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: GPU kernels need C-contiguous buffers, got strides {a.strides}")
