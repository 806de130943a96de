"""Every CUDA specialisation the GPU loaders can launch compiles with nvcc for sm_90 and sm_80,
without register spills. Runs without a GPU (only nvcc is needed)."""

import importlib
import os
import re
import shutil
import subprocess

import pytest

from kernels.gpu import runtime

FAMILIES = ("conv", "depthwise", "pool", "dense", "elementwise")
ARCHS = ("sm_90", "sm_80")
NVCC = shutil.which("nvcc")
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH: CUDA sources cannot be compile-checked")


def specialisations(family):
    return importlib.import_module(f"kernels.gpu.{family}").SPECIALISATIONS


def compile_family(family, arch, tmp_path):
    """nvcc on a file that includes ``<family>.cu`` and takes the address of every specialisation,
    which instantiates each template exactly as NVRTC's name expressions do at run time."""
    exprs = specialisations(family)
    src = os.path.join(runtime.HERE, f"{family}.cu")
    wrapper = tmp_path / f"{family}_{arch}.cu"
    refs = ",\n".join(f"    (void*)&{e}" for e in exprs)
    wrapper.write_text(f'#include "{src}"\nvoid* kn_instances[] = {{\n{refs}\n}};\n')
    cmd = [NVCC, "-cubin", f"-arch={arch}", *runtime.OPTIONS, "-Xptxas", "-v", "-o", str(tmp_path / f"{family}.cubin"),
           str(wrapper)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return exprs, proc


def test_every_cu_file_has_a_loader():
    on_disk = sorted(f[:-3] for f in os.listdir(runtime.HERE) if f.endswith(".cu"))
    assert on_disk == sorted(FAMILIES)
    for family in FAMILIES:
        assert len(specialisations(family)) == len(set(specialisations(family))) > 0


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("family", FAMILIES)
def test_compiles_without_spills(family, arch, tmp_path):
    exprs, proc = compile_family(family, arch, tmp_path)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"nvcc failed for {family}.cu ({arch}):\n{log}"
    assert "warning" not in log.lower(), f"nvcc warnings for {family}.cu ({arch}):\n{log}"
    entries = re.findall(r"Compiling entry function '([^']+)' for '" + arch + "'", log)
    spills = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log)
    assert len(entries) == len(exprs), f"expected {len(exprs)} kernels, ptxas compiled {len(entries)}:\n{log}"
    assert len(spills) == len(entries)
    bad = [(e, s) for e, s in zip(entries, spills) if s != ("0", "0", "0")]
    assert not bad, f"{family}.cu ({arch}): stack frame / register spills in {bad}"
