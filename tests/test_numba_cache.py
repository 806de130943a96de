"""Numba's disk cache lives in a folder named after the kernel sources (kernels/cpu/__init__.py)."""

import hashlib
import os
import subprocess
import sys

import kernels.cpu

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def source_digest():
    here = os.path.dirname(os.path.abspath(kernels.cpu.__file__))
    digest = hashlib.sha1()
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            digest.update(name.encode())
            with open(os.path.join(here, name), "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()[:12]


def test_cache_folder_is_keyed_by_the_sources_under_the_users_cache_dir(tmp_path):
    code = "import kernels.cpu, numba; print(numba.config.CACHE_DIR)"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=str(tmp_path), capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == os.path.join(str(tmp_path), "numba-" + source_digest())


def test_an_edited_source_selects_another_folder(tmp_path):
    # a copy of the package with one kernel file changed must not share the original's folder
    import shutil

    pkg = tmp_path / "kernels"
    shutil.copytree(os.path.join(ROOT, "kernels"), pkg, ignore=shutil.ignore_patterns("__pycache__"))
    code = "import kernels.cpu, numba, os; print(os.path.basename(numba.config.CACHE_DIR))"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)
    run = dict(env=env, cwd=str(tmp_path), capture_output=True, text=True, check=True)
    before = subprocess.run([sys.executable, "-c", code], **run)
    with open(pkg / "cpu" / "conv_narrow.py", "a") as f:
        f.write("\n# edited\n")
    after = subprocess.run([sys.executable, "-c", code], **run)
    assert before.stdout.strip() == "numba-" + source_digest()
    assert after.stdout.strip() != before.stdout.strip()
