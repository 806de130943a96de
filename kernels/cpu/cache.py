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

import contextlib
import hashlib
import os
import threading
import time

import numba

__all__ = ["Claimed", "cache_dir", "cache_files", "claiming", "compile_top_level", "install_lazy_load",
           "install_save_lock", "is_cold", "prune", "stale_dirs"]


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


# ---------------------------------------------------------------------------------------------------
# Several processes filling one cache. Numba's index file of a function maps each signature to a data
# file; a process saving an entry reads the index, picks the first free data-file number and writes
# the index back. Two processes saving two signatures of one function at the same moment can pick the
# same number: the index then names one signature and the data file may hold the other's machine
# code, which a later process loads and runs for the wrong types. ``install_save_lock`` makes that
# read-pick-write one step under an exclusive lock on a file next to the index (an ``flock``: the
# system drops it if the process dies). kernels.cpu installs it on import.

_LOCKED_SAVE = "_kernelnets_locked"
CLAIM_WAIT_S = 600.0        # the longest a process waits for another's compile before compiling itself


def install_save_lock() -> bool:
    """Wrap Numba's cache-entry save in an inter-process lock (once); whether it is installed."""
    try:
        import fcntl  # noqa: F401  (POSIX only)

        from numba.core.caching import IndexDataCacheFile
    except ImportError:
        return False
    save = IndexDataCacheFile.save
    if getattr(save, _LOCKED_SAVE, False):
        return True

    def locked_save(self, key, data):
        import fcntl

        try:
            fd = os.open(self._index_path + ".lock", os.O_CREAT | os.O_RDWR, 0o666)
        except OSError:             # no lock file here (read-only folder): Numba's save, as it is
            return save(self, key, data)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return save(self, key, data)
        finally:
            os.close(fd)             # (closing the file drops the lock)

    setattr(locked_save, _LOCKED_SAVE, True)
    locked_save.__wrapped__ = save
    IndexDataCacheFile.save = locked_save
    return True


# ---------------------------------------------------------------------------------------------------
# Loading without the compiler's set-up. Before loading a cached entry Numba "refreshes" its target
# context: it imports and installs every lowering and typing registry (numpy's array maths, which
# imports scipy.linalg to look for BLAS, random generators, typed containers, ...), 0.4-0.5 s of
# every warm start here, although rebuilding an entry from its machine code only needs the NRT's
# symbols. ``install_lazy_load`` makes the cache load do just that; a compilation still refreshes
# the context itself first (Numba's compiler pipeline does so on creation), so a process that loads
# some kernels and then compiles others gets the registries at its first compilation.

_LAZY_LOAD = "_kernelnets_lazy"


def install_lazy_load() -> bool:
    """Make Numba's cache load initialise only the NRT instead of the whole target context (once);
    whether it is installed (False on a Numba without these internals: its own load stays)."""
    try:
        from numba.core.caching import Cache
        from numba.core.runtime import rtsys
    except ImportError:
        return False
    load = Cache.load_overload
    if getattr(load, _LAZY_LOAD, False):
        return True
    if not hasattr(Cache, "_load_overload") or not hasattr(Cache, "_guard_against_spurious_io_errors"):
        return False

    def lazy_load_overload(self, sig, target_context):
        rtsys.initialize(target_context)         # the NRT functions and symbols cached code links to
        with self._guard_against_spurious_io_errors():
            return self._load_overload(sig, target_context)
        return None                              # (the guard swallowed an I/O error: not cached)

    setattr(lazy_load_overload, _LAZY_LOAD, True)
    lazy_load_overload.__wrapped__ = load
    Cache.load_overload = lazy_load_overload
    return True


# ---------------------------------------------------------------------------------------------------
# Claims: processes that compile one network's kernels together (``nets.runtime.compile``) share out
# the specialisations. Before compiling a cached function for a signature, a process in ``claiming``
# mode takes an exclusive lock on a claim file named after (function, signature) and holds it until
# that compilation (and its cache save) is done. Another process wanting the same specialisation then
# either waits for the lock and loads the result from the cache, or, for a call made from Python (the
# start of a kernel, not a callee met while compiling one) in ``skip`` mode, gets ``Claimed`` at once
# and can do something else first. Only top-level calls skip: a process waits for a callee while
# holding its caller's claim, and since no kernel calls itself the waits cannot form a cycle.

class Claimed(Exception):
    """Another process is compiling this kernel specialisation right now."""


_tls = threading.local()


def claim_path(dispatcher, args) -> str | None:
    """The claim file of a cached dispatcher's specialisation for ``args`` (None: not cached, or no
    folder for claims can be made)."""
    index = getattr(getattr(getattr(dispatcher, "_cache", None), "_cache_file", None), "_index_path", None)
    if index is None:
        return None
    key = hashlib.sha1(f"{index}\n{tuple(args)!r}".encode()).hexdigest()[:24]
    folder = os.path.join(cache_dir(), "claims")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError:
        return None
    return os.path.join(folder, key)


def _lock(fd: int, may_skip: bool, what: str) -> None:
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        if may_skip:
            raise Claimed(what) from None
    deadline = time.monotonic() + CLAIM_WAIT_S
    while time.monotonic() < deadline:          # the other process compiles it: wait, then load it
        time.sleep(0.02)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
    # past the deadline the other process is taken to be stuck: compile without the claim


def _install_claims() -> None:
    from numba.core import sigutils
    from numba.core.dispatcher import Dispatcher

    if getattr(Dispatcher.compile, "_kernelnets_claims", False):
        return
    compile_ = Dispatcher.compile
    compile_for_args = Dispatcher._compile_for_args

    def claimed_compile(self, sig):
        mode = getattr(_tls, "mode", None)
        if mode is None:
            return compile_(self, sig)
        top, _tls.top = getattr(_tls, "top", False), False
        args, _ = sigutils.normalize_signature(sig)
        if tuple(args) in self.overloads:
            return compile_(self, sig)
        path = claim_path(self, args)
        try:
            fd = -1 if path is None else os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
        except OSError:
            fd = -1
        if fd < 0:                  # nothing to claim with: compile as without claims
            return compile_(self, sig)
        try:
            _lock(fd, top and mode == "skip", f"{self.py_func.__module__}.{self.py_func.__qualname__}{tuple(args)}")
            return compile_(self, sig)
        finally:
            os.close(fd)

    def compile_for_args_top(self, *args, **kws):
        if getattr(_tls, "mode", None) is not None:
            _tls.top = True
        try:
            return compile_for_args(self, *args, **kws)
        finally:
            _tls.top = False

    claimed_compile._kernelnets_claims = True
    Dispatcher.compile = claimed_compile
    Dispatcher._compile_for_args = compile_for_args_top


def compile_top_level(dispatcher, sig):
    """``dispatcher.compile(sig)`` as a kernel call from Python would compile it: in ``claiming(skip=True)``
    mode a specialisation another process is compiling raises ``Claimed`` (the caller's step is
    deferred) instead of being waited for. For work items whose address a driver is given
    (``kernels.cpu.native``), compiled before the driver is called."""
    if getattr(_tls, "mode", None) is not None:
        _install_claims()
        _tls.top = True
    try:
        return dispatcher.compile(sig)
    finally:
        _tls.top = False


@contextlib.contextmanager
def claiming(skip: bool):
    """Compile under claims on this thread inside the block: ``skip=True`` raises ``Claimed`` from a
    kernel called from Python whose specialisation another process is compiling; ``skip=False`` waits
    for it (then loads it from the cache)."""
    _install_claims()
    before = getattr(_tls, "mode", None)
    _tls.mode = "skip" if skip else "wait"
    try:
        yield
    finally:
        _tls.mode = before
