"""Numba's disk cache lives in a folder named after the kernel sources (kernels/cpu/__init__.py)."""

import hashlib
import os
import subprocess
import sys

import pytest

import kernels.cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_digest(opt=None):
    """sha1 over every .py file below kernels/cpu, by relative path ('conv/tile.py'): name, then contents;
    then the LLVM optimisation level (this process's, set by kernels.cpu, unless ``opt``)."""
    import numba
    here = os.path.dirname(os.path.abspath(kernels.cpu.__file__))
    files = sorted(os.path.relpath(os.path.join(root, f), here).split(os.sep)
                   for root, _, names in os.walk(here) if "__pycache__" not in root for f in names if f.endswith(".py"))
    assert ["conv", "tile.py"] in files
    digest = hashlib.sha1()
    for parts in files:
        digest.update("/".join(parts).encode())
        with open(os.path.join(here, *parts), "rb") as f:
            digest.update(f.read())
    level = numba.config.OPT if opt is None else numba.core.config._OptLevel(opt)
    unroll = kernels.cpu.UNROLL_THRESHOLD if opt is None else (300 if opt == 2 else None)
    digest.update(f"opt={level} unroll={unroll}".encode())
    return digest.hexdigest()[:12]


def test_cache_folder_is_keyed_by_the_sources_under_the_users_cache_dir(tmp_path):
    code = "import kernels.cpu, numba; print(numba.config.CACHE_DIR)"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path), capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == os.path.join(str(tmp_path), "numba-" + source_digest())


def test_the_llvm_optimisation_level_selects_another_folder(tmp_path):
    # Numba's index does not record NUMBA_OPT: -O3 code must not load in a -O2 process, nor the reverse
    code = "import kernels.cpu, numba, os; print(os.path.basename(numba.config.CACHE_DIR), int(numba.config.OPT))"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT)
    env.pop("NUMBA_OPT", None)
    run = dict(cwd=str(tmp_path), capture_output=True, text=True, check=True)
    default = subprocess.run([sys.executable, "-c", code], env=env, **run).stdout.split()
    o3 = subprocess.run([sys.executable, "-c", code], env=dict(env, NUMBA_OPT="3"), **run).stdout.split()
    assert default == ["numba-" + source_digest(2), "2"]
    assert o3 == ["numba-" + source_digest(3), "3"]


@pytest.mark.parametrize("edited", ["conv/narrow.py", "common.py"])
def test_an_edited_source_selects_another_folder(tmp_path, edited):
    # a copy of the package with one kernel file changed (in kernels/cpu or a folder below) must not
    # share the original's folder
    import shutil

    pkg = tmp_path / "kernels"
    shutil.copytree(os.path.join(ROOT, "kernels"), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    code = "import kernels.cpu, numba, os; print(os.path.basename(numba.config.CACHE_DIR))"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)
    run = dict(env=env, cwd=str(tmp_path), capture_output=True, text=True, check=True)
    before = subprocess.run([sys.executable, "-c", code], **run)
    with open(pkg / "cpu" / edited, "a") as f:
        f.write("\n# edited\n")
    after = subprocess.run([sys.executable, "-c", code], **run)
    assert before.stdout.strip() == "numba-" + source_digest()
    assert after.stdout.strip() != before.stdout.strip()


LAZY_MODULE = '''
import numpy as np
from numba import njit, prange


@njit(cache=True, parallel=True)
def scaled(x, s):
    out = np.empty_like(x)
    for i in prange(x.shape[0]):
        out[i] = x[i] * s + 1.0
    return out
'''

LAZY_RUN = '''
import sys
import numpy as np
import kernels.cpu  # noqa: F401  (installs the lazy cache load)
import lazy_mod
from numba import njit

x = np.arange(12, dtype=np.float32)
y = lazy_mod.scaled(x, np.float32(2.0))
assert np.array_equal(y, x * 2 + 1), y
print("registries", "numba.np.arraymath" in sys.modules, "scipy.linalg" in sys.modules)
print("hits", sum(lazy_mod.scaled.stats.cache_hits.values()))


@njit
def later(a):                       # compiled after the load: the compiler sets itself up
    return np.sqrt(a).sum()

print("later", later(np.full(4, 4.0)))
'''


def test_a_cached_kernel_loads_without_the_compilers_registries(tmp_path):
    # Numba's own cache load imports every lowering registry (numpy maths, scipy.linalg: ~0.4 s of a
    # warm start); the lazy load rebuilds the entry with the NRT alone, and a compilation later in the
    # same process still finds its registries
    (tmp_path / "lazy_mod.py").write_text(LAZY_MODULE)
    (tmp_path / "run.py").write_text(LAZY_RUN)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=os.pathsep.join([ROOT, str(tmp_path)]))
    run = dict(env=env, cwd=str(tmp_path), capture_output=True, text=True)
    cold = subprocess.run([sys.executable, "run.py"], **run)
    assert cold.returncode == 0, cold.stderr
    assert "hits 0" in cold.stdout and "later 8.0" in cold.stdout
    warm = subprocess.run([sys.executable, "run.py"], **run)
    assert warm.returncode == 0, warm.stderr
    assert "registries False False" in warm.stdout, warm.stdout
    assert "hits 1" in warm.stdout and "later 8.0" in warm.stdout
