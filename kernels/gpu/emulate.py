"""Run the CUDA kernels on the CPU (``emulate.h``) behind the normal loaders, to check their logic
on machines without a GPU. ``emulated()`` compiles every loader specialisation with g++ into one
shared library and returns a patch context in which ``runtime.launch`` calls it, ``cupy``-looking
arrays are numpy arrays (``asarray``/``empty``/``full`` plus ``.get()``) and 132 SMs are assumed (an
H100/H200, so the planners make the same choices as on the device).

The library is built with the same options as NVRTC and nvcc get (``runtime.OPTIONS``: include path,
activation codes) and cached in the temp folder under a hash of every source.
Slow (one OS thread per CUDA thread) and blind to races, coalescing and timing: a logic check only.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import hashlib
import importlib
import os
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import numpy as np

from kernels.gpu import runtime as rt

SMS = 132


class HostArray(np.ndarray):
    """A numpy array with cupy's ``get()``."""

    def get(self, stream=None):
        return np.array(self)


def _host(a):
    """float32, except integer arrays (index arrays), which keep their type as cupy.asarray does."""
    a = np.asarray(a)
    return np.ascontiguousarray(a, a.dtype if a.dtype.kind in "iu" else np.float32).view(HostArray)


_null_stream = SimpleNamespace(synchronize=lambda: None)
fake_cupy = SimpleNamespace(
    asarray=lambda a, dtype=None: _host(np.asarray(a, dtype)),
    empty=lambda shape, dtype=np.float32: np.empty(shape, dtype).view(HostArray),
    full=lambda shape, v, dtype=np.float32: np.full(shape, v, dtype).view(HostArray),
    empty_like=lambda a: np.empty_like(np.asarray(a)).view(HostArray),
    float32=np.float32, ndarray=HostArray,
    cuda=SimpleNamespace(get_current_stream=lambda: _null_stream),
)


def specs():
    return [(f, e) for f in rt.families() for e in importlib.import_module(f"kernels.gpu.{f}").SPECIALISATIONS]


def build(cxx: str = "g++") -> tuple[ctypes.CDLL, dict]:
    table = specs()
    lines = ['#include "emulate.h"']
    lines += [f'#include "{f}.cu"' for f in rt.families()]
    lines.append("typedef void (*kn_launcher)(const unsigned*, const unsigned*, void**);")
    lines.append("static kn_launcher kn_table[] = {")
    lines += [f"    [](const unsigned* g, const unsigned* b, void** a) {{ kn_emu_run(&{e}, g, b, a); }},"
              for _, e in table]
    lines.append("};")
    lines.append('extern "C" void kn_emu_launch(int i, const unsigned* g, const unsigned* b, void** a) '
                 "{ kn_table[i](g, b, a); }")
    code = "\n".join(lines) + "\n"
    sources = sorted(glob.glob(os.path.join(rt.HERE, "*.cu")) + glob.glob(os.path.join(rt.HERE, "*.cuh"))
                     + [os.path.join(rt.HERE, "emulate.h")])
    key = hashlib.sha1((code + " ".join(rt.OPTIONS) + "".join(open(p).read() for p in sources)).encode())
    lib = os.path.join(tempfile.gettempdir(), f"kernelnets_emulate_{key.hexdigest()[:16]}.so")
    if not os.path.exists(lib):
        src = lib[:-3] + ".cpp"
        with open(src, "w") as f:
            f.write(code)
        tmp = lib + f".{os.getpid()}"
        options = [o for o in rt.OPTIONS if o.startswith(("-I", "-D"))]
        proc = subprocess.run([cxx, "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-w", *options,
                               "-o", tmp, src], capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"building the kernel emulator failed:\n{proc.stderr[-6000:]}")
        os.replace(tmp, lib)
    dll = ctypes.CDLL(lib)
    dll.kn_emu_launch.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    return dll, {e: i for i, (_, e) in enumerate(table)}


def _launcher(dll, index):
    def launch(family, expr, grid, block, args, shared_mem=0):
        keep = []
        for a in args:
            if isinstance(a, np.ndarray) and not isinstance(a, np.generic):
                keep.append(ctypes.c_void_p(a.ctypes.data))
            elif isinstance(a, np.int32):
                keep.append(ctypes.c_int(int(a)))
            elif isinstance(a, np.float32):
                keep.append(ctypes.c_float(float(a)))
            else:
                raise TypeError(f"{expr}: unexpected kernel argument {type(a).__name__}")
        ptrs = (ctypes.c_void_p * len(keep))(*[ctypes.addressof(k) for k in keep])
        g = (ctypes.c_uint * 3)(*grid)
        b = (ctypes.c_uint * 3)(*block)
        dll.kn_emu_launch(index[expr], g, b, ptrs)
    return launch


@contextlib.contextmanager
def emulated():
    """Within: kernels.gpu ops run on the CPU through emulate.h; yields (kernels.gpu, fake cupy)."""
    import kernels.gpu as g

    dll, index = build()
    saved = (rt.launch, rt.aligned16, rt._sm_count[:], sys.modules.get("cupy"))
    rt.launch = _launcher(dll, index)
    rt.aligned16 = lambda *arrays: all(a.ctypes.data % 16 == 0 for a in arrays)
    rt._sm_count[:] = [SMS]
    sys.modules["cupy"] = fake_cupy
    try:
        yield g, fake_cupy
    finally:
        rt.launch, rt.aligned16 = saved[0], saved[1]
        rt._sm_count[:] = saved[2]
        if saved[3] is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = saved[3]
