"""nvcc over every specialisation a loader can launch: registers, spills and shared memory from
``-Xptxas -v``, and the blocks per SM they allow. No GPU needed (tests/test_cuda_compile.py,
tools/cuda_resources.py).

Each family is compiled from a wrapper that includes ``<family>.cu`` and takes the address of every
expression in its loader's ``SPECIALISATIONS``, which instantiates each template exactly as NVRTC's
name expressions do at run time; ptxas' mangled entry names are demangled back to those expressions.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
from collections import namedtuple

from kernels.gpu import runtime as rt

ARCHS = ("sm_90", "sm_80")
Resources = namedtuple("Resources", "expression arch registers stack spill_stores spill_loads smem")
Compiled = namedtuple("Compiled", "family arch returncode log kernels")

# per SM: registers (4 sub-partitions of 16K), shared memory usable by blocks, 1 KB reserved per block
SM_SMEM = {"sm_90": 228 * 1024, "sm_80": 164 * 1024}
SM_MAX_BLOCKS = 32
SM_MAX_WARPS = {"sm_90": 64, "sm_80": 64}


def nvcc() -> str | None:
    return shutil.which("nvcc")


def specialisations(family: str) -> tuple[str, ...]:
    return importlib.import_module(f"kernels.gpu.{family}").SPECIALISATIONS


def _demangle(names: list[str]) -> list[str]:
    tool = shutil.which("cu++filt") or shutil.which("c++filt")
    if tool is None or not names:
        return names
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return [re.sub(r"^void ", "", line).split("(")[0] for line in out.splitlines()]


def compile_family(family: str, arch: str, workdir, jobs: int | None = None) -> Compiled:
    """Compile every specialisation of ``family`` for ``arch`` into cubins under ``workdir``, in
    ``jobs`` concurrent nvcc processes (default: one per CPU)."""
    exprs = specialisations(family)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(exprs)))
    src = os.path.join(rt.HERE, f"{family}.cu")
    procs = []
    for j in range(jobs):
        wrapper = os.path.join(str(workdir), f"{family}_{arch}_{j}.cu")
        refs = ",\n".join(f"    (void*)&{e}" for e in exprs[j::jobs])
        with open(wrapper, "w") as f:
            f.write(f'#include "{src}"\nvoid* kn_instances[] = {{\n{refs}\n}};\n')
        cubin = wrapper[:-3] + ".cubin"
        procs.append(subprocess.Popen([nvcc(), "-cubin", f"-arch={arch}", *rt.OPTIONS, "-Xptxas", "-v", "-o", cubin,
                                       wrapper], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    log = "".join(p.communicate(timeout=600)[0] for p in procs)
    unique = {k.expression: k for k in parse(log, arch)}      # non-template kernels come with every job
    return Compiled(family, arch, max(p.returncode for p in procs), log, list(unique.values()))


def parse(log: str, arch: str) -> list[Resources]:
    """One entry per kernel ptxas compiled for ``arch``, in log order."""
    blocks = re.split(r"ptxas info\s*: Compiling entry function '([^']+)' for '" + arch + "'", log)
    names, bodies = blocks[1::2], blocks[2::2]
    out = []
    for name, body in zip(_demangle(names), bodies):
        frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", body)
        regs = re.search(r"Used (\d+) registers", body)
        smem = re.search(r"(\d+) bytes smem", body)
        out.append(Resources(name, arch, int(regs.group(1)) if regs else -1,
                             *(int(v) for v in (frame.groups() if frame else (-1, -1, -1))),
                             int(smem.group(1)) if smem else 0))
    return out


def blocks_per_sm(registers: int, threads: int, smem: int, arch: str = "sm_90") -> int:
    """Resident blocks per SM allowed by registers (allocated per warp in 256s, 16K per sub-partition),
    shared memory, threads and the block limit."""
    warps = -(-threads // 32)
    per_warp = -(-registers * 32 // 256) * 256
    warps_by_regs = 4 * (16384 // per_warp)
    by_smem = SM_SMEM[arch] // (smem + 1024)
    return min(SM_MAX_BLOCKS, SM_MAX_WARPS[arch] // warps, warps_by_regs // warps, by_smem)


def nvrtc_problem() -> str | None:
    """Why NVRTC (the run-time compiler CuPy uses) cannot be loaded here, or None."""
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as e:                      # noqa: BLE001 - missing wheel, missing library, ...
        return f"NVRTC is not loadable ({type(e).__name__}: {e})"
    return None


def compile_nvrtc(family: str, arch: str) -> str | None:
    """Every specialisation of ``family`` through NVRTC to PTX for ``arch`` (one program, all the
    name expressions), with ``runtime.OPTIONS`` and the ``-ftz=true`` CuPy adds. None when it compiled
    cleanly, else the log. No device needed (CuPy's own compile path asks the device for its
    architecture, so NVRTC is called directly)."""
    from cupy_backends.cuda.libs import nvrtc

    prog = nvrtc.createProgram(rt.source(family), f"{family}.cu", [], [])
    try:
        for expr in specialisations(family):
            nvrtc.addNameExpression(prog, expr)
        try:
            nvrtc.compileProgram(prog, rt.OPTIONS + ("-ftz=true", f"--gpu-architecture=compute_{arch[3:]}"))
        except Exception as e:                  # noqa: BLE001 - NVRTCError: the log says why
            return f"{e}\n{nvrtc.getProgramLog(prog)}"
        missing = [e for e in specialisations(family) if not nvrtc.getLoweredName(prog, e)]
        log = nvrtc.getProgramLog(prog)
        return log if missing or "warning" in log.lower() else None
    finally:
        nvrtc.destroyProgram(prog)
