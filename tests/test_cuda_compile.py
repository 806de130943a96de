"""Every CUDA specialisation the GPU loaders can launch compiles with nvcc for sm_90 and sm_80,
without register spills. Runs without a GPU (only nvcc is needed)."""

import importlib
import os
import re
import shutil
import subprocess

import numpy as np
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


@pytest.mark.parametrize("arch", [ARCHS[0], pytest.param(ARCHS[1], marks=pytest.mark.slow)])   # sm_80: ~15 s more
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


# ------------------------------------------------- the same kernels run on the CPU (kernels/gpu/emulate.h)
# Logic only (indexing, tiling, padding, epilogues, slices, every variant): blocks run one at a time
# with real threads, so races and timing are not exercised. softmax_rows (warp shuffles) is GPU-only.

CXX = shutil.which("g++")


@pytest.fixture(scope="module")
def emulated():
    if CXX is None:
        pytest.skip("g++ is not on PATH: the host emulation of the CUDA kernels cannot be built")
    from kernels.gpu import emulate

    with emulate.emulated() as pair:
        yield pair


class _Patch:
    def __init__(self):
        self.undo = []

    def setattr(self, obj, name, value):
        self.undo.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)


def test_emulated_conv2d_every_case_tile_and_alignment(emulated):
    import test_gpu_kernels as T

    g, cp = emulated
    rng = np.random.default_rng()
    for case in T.CONV_CASES:
        T._conv(g, cp, rng, case)
    T.test_conv2d_misaligned_buffers_take_the_scalar_path(g, cp)
    from kernels.gpu import conv

    for tile in range(len(conv.TILES)):
        patch = _Patch()
        try:
            T.test_conv2d_every_tile(g, cp, tile, patch)
        finally:
            for obj, name, value in patch.undo:
                setattr(obj, name, value)


def test_emulated_depthwise_pooling(emulated):
    import test_gpu_kernels as T

    g, cp = emulated
    cases = [(3, 3, 1, 16, (2, 2), (0, 1, 0, 1), 4), (5, 5, 1, 12, (1, 1), (2, 2, 2, 2), 0),
             (7, 7, 1, 8, (2, 1), (3, 3, 2, 4), 0), (3, 3, 2, 5, (1, 1), (1, 1, 1, 1), 3)]
    for kh, kw, mult, c, stride, pad, before in cases:
        T.test_depthwise(g, cp, kh, kw, mult, c, stride, pad, before, "relu6")
    for c, before in [(16, 8), (7, 3)]:
        T.test_pooling(g, cp, c, before, (3, 3), (2, 2), (0, 1, 1, 1))
    for shape in [(1, 7, 7, 64), (3, 5, 3, 13)]:
        T.test_global_pooling(g, cp, shape)


def test_emulated_dense_elementwise(emulated):
    import test_gpu_kernels as T

    from kernels import reference as ref

    g, cp = emulated
    for batch, k, n in [(1, 1001, 37), (1, 7, 3), (5, 300, 129)]:
        T.test_dense(g, cp, batch, k, n, "relu")
    for shape in [(2, 5, 7, 12), (4, 1001)]:
        T.test_add_activation_affine(g, cp, shape, "relu6")
    rng = np.random.default_rng()
    xs = [T.rand(rng, 2, 5, 3, c) for c in (4, 3, 8, 1)]
    out = cp.full((2, 5, 3, 16), T.SENTINEL)
    g.concat([cp.asarray(x) for x in xs], out)
    assert np.array_equal(out.get(), ref.concat(xs))
    for c in (3, 8):
        x = T.rand(rng, 2, 5, 4, c)
        out = cp.full((2, 6, 8, c), T.SENTINEL)
        g.zero_pad(cp.asarray(x), out, (0, 1, 3, 1))
        assert np.array_equal(out.get(), ref.zero_pad(x, (0, 1, 3, 1)))


def test_emulated_toy_graph_through_the_executor(emulated):
    """The GPU backend under the real Executor (memory plan, concat slices, fused epilogues)."""
    from test_runtime import fill_weights, toy_graph

    import kernels.gpu as backend
    from nets.executor import Executor, pack_weights
    from nets.model import Model

    g = fill_weights(toy_graph(top=False), seed=3)
    reference = Model(g, device="reference")
    x = np.random.default_rng(2).normal(0, 1, (2,) + reference.input_shape).astype(np.float32)
    got = Executor(reference.graph, backend, pack_weights(reference.graph, backend), 2).run(x)[0]
    want = reference(x)
    assert float(np.abs(got - want).max() / np.abs(want).max()) <= 1e-5
