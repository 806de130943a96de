"""Every CUDA specialisation the GPU loaders can launch compiles with nvcc for sm_90 and sm_80 with
the options NVRTC gets at run time, without register spills; the 256-thread conv tiles fit the 128
registers that give them 2 blocks per SM; the planners' blocks-per-SM tables match what ptxas reports.
Runs without a GPU (only nvcc is needed); the kernels' logic is tested on the host emulator by
tests/test_gpu_kernels.py.
"""

import os
import re

import pytest

import kernels
from kernels.gpu import conv, gemm, ptxas
from kernels.gpu import runtime as rt

pytestmark = pytest.mark.skipif(ptxas.nvcc() is None,
                                reason="nvcc is not on PATH: CUDA sources cannot be compile-checked")
ARCHS = [ptxas.ARCHS[0], pytest.param(ptxas.ARCHS[1], marks=pytest.mark.slow)]   # sm_80: as long again


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """(family, arch) -> ptxas.Compiled, each compiled once per session."""
    cache = {}

    def get(family, arch):
        if (family, arch) not in cache:
            cache[family, arch] = ptxas.compile_family(family, arch, tmp_path_factory.mktemp(f"{family}_{arch}"))
        return cache[family, arch]
    return get


def test_every_cu_file_has_a_loader_and_includes_common():
    assert set(rt.families()) == {"conv", "depthwise", "elementwise", "gemm", "layout", "normalize", "pool"}
    for family in rt.families():
        exprs = ptxas.specialisations(family)
        assert len(exprs) == len(set(exprs)) > 0
        assert '#include "common.cuh"' in rt.source(family)


def test_activation_codes_reach_cuda_from_kernels():
    """common.cuh takes the codes as -D options built from kernels.ACT_CODES, and refuses to
    compile without them."""
    assert rt.DEFINES == tuple(f"-DKN_ACT_{(a or 'none').upper()}={kernels.act_code(a)}" for a in kernels.ACTIVATIONS)
    header = open(os.path.join(rt.HERE, "common.cuh")).read()
    assert "#error" in header and not re.search(r"#define\s+KN_ACT_", header)
    for act in kernels.ACTIVATIONS[1:]:             # kn_act has a branch for every activation
        assert f"act == KN_ACT_{act.upper()})" in header, act


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("family", rt.families())
def test_compiles_without_spills(compiled, family, arch):
    c = compiled(family, arch)
    assert c.returncode == 0, f"nvcc failed for {family}.cu ({arch}):\n{c.log}"
    assert "warning" not in c.log.lower(), f"nvcc warnings for {family}.cu ({arch}):\n{c.log}"
    assert sorted(k.expression for k in c.kernels) == sorted(ptxas.specialisations(family)), c.log
    bad = [k for k in c.kernels if (k.stack, k.spill_stores, k.spill_loads) != (0, 0, 0)]
    assert not bad, f"{family}.cu ({arch}): stack frame / register spills in {bad}"


@pytest.mark.parametrize("arch", ARCHS)
def test_256_thread_conv_tiles_fit_two_blocks_per_sm(compiled, arch):
    """__launch_bounds__(256, 2) on the 128x128 tiles: at most 128 registers, and no spills (above)."""
    regs = {k.expression: k.registers for k in compiled("conv", arch).kernels}
    for t in conv.FP32_TILES + conv.TF32_TILES:
        if t.threads >= 256:
            for amode in conv.AMODES:
                assert 0 < regs[conv.expression(t, amode)] <= 128, conv.expression(t, amode)


def test_planner_tables_match_ptxas(compiled):
    """conv.Tile.resident and gemm.RESIDENT are the blocks per SM that sm_90 allows these kernels
    (the A mode that allows the fewest, for conv)."""
    res = {k.expression: k for k in compiled("conv", "sm_90").kernels + compiled("gemm", "sm_90").kernels}
    for t in conv.FP32_TILES + conv.TF32_TILES:
        got = min(ptxas.blocks_per_sm(res[e].registers, t.threads, res[e].smem)
                  for e in (conv.expression(t, a) for a in conv.AMODES))
        assert t.resident == got, t
    for r, resident in gemm.RESIDENT.items():
        k = res[gemm.rows_expression(r)]
        assert resident == ptxas.blocks_per_sm(k.registers, 256, k.smem), r


def test_blocks_per_sm_arithmetic():
    # the review's 128x128 kernel at 145 registers: 152 allocated, 3 warps per sub-partition, 1 block
    assert ptxas.blocks_per_sm(145, 256, 16 * 1024) == 1
    assert ptxas.blocks_per_sm(128, 256, 33 * 1024) == 2
    assert ptxas.blocks_per_sm(32, 256, 4 * 1024) == 8                 # thread limit: 64 warps
    assert ptxas.blocks_per_sm(32, 64, 100 * 1024) == 2                # shared-memory limit


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("family", rt.families())
def test_compiles_through_nvrtc(family, arch):
    """The run-time path: NVRTC with the options cupy.RawModule gets (include path, -D codes)."""
    problem = ptxas.nvrtc_problem()
    if problem:
        pytest.skip(problem)
    log = ptxas.compile_nvrtc(family, arch)
    assert log is None, log
