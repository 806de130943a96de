"""Where Numba keeps the compiled CPU kernels, and whether that cache is still empty.

Every kernel is ``cache=True``: the first use of a specialisation compiles it (seconds) and writes
it to Numba's cache; later processes load it (milliseconds). The cache is a folder named after a hash
of this package's sources (``kernels/cpu/__init__.py``), inside ``$NUMBA_CACHE_DIR`` when that is set,
else inside ``kernels/cpu/__pycache__``. Entries are keyed by signature and CPU (name and features),
so one ``NUMBA_CACHE_DIR`` can be shared by machines of the same CPU model running the same Numba and
kernelnets versions (a container image, Dask workers on one shared disk): warm it once with
``nets warmup``.
"""

from __future__ import annotations

import os

import numba

__all__ = ["cache_dir", "cache_files", "is_cold", "prune", "stale_dirs"]


def cache_dir() -> str:
    """This kernels version's cache folder."""
    import kernels.cpu  # noqa: F401  (sets numba.config.CACHE_DIR)

    return str(numba.config.CACHE_DIR)


def _folder_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def stale_dirs(parent: str | None = None) -> list[tuple[str, int]]:
    """The cache folders of other kernels versions next to this one (``numba-<hash>`` in the same
    parent: an upgrade or an edit of the kernels leaves the old one behind), with their bytes."""
    current = cache_dir()
    parent = os.path.dirname(current) if parent is None else parent
    try:
        names = sorted(os.listdir(parent))
    except OSError:
        return []
    out = []
    for name in names:
        path = os.path.join(parent, name)
        if name.startswith("numba-") and os.path.isdir(path) and os.path.abspath(path) != os.path.abspath(current):
            out.append((path, _folder_bytes(path)))
    return out


def prune(parent: str | None = None) -> tuple[int, int]:
    """Delete ``stale_dirs``: (folders removed, bytes freed). Another installed kernels version that
    shares the parent folder (one NUMBA_CACHE_DIR for two versions) compiles again on its next use."""
    import shutil

    n = freed = 0
    for path, size in stale_dirs(parent):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            n, freed = n + 1, freed + size
    return n, freed


def cache_files() -> tuple[int, int]:
    """(number of cached specialisations, their bytes) in ``cache_dir()``."""
    n = size = 0
    for dirpath, _, files in os.walk(cache_dir()):
        for f in files:
            if f.endswith(".nbc"):
                n += 1
                size += os.path.getsize(os.path.join(dirpath, f))
    return n, size


def is_cold() -> bool:
    """Whether the cache holds no compiled work item of conv2d (which every network uses) yet: a first
    start on this machine or after an upgrade, when a network's first call compiles its kernels."""
    from kernels.cpu.conv.drivers import work_item

    index = getattr(getattr(getattr(work_item, "_cache", None), "_cache_file", None), "_index_path", None)
    return index is not None and not os.path.exists(index)      # (no index path known: cannot tell, say warm)
