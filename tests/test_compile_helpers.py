"""A first run on a cold cache compiles with helper processes (nets/runtime/compile.py) under claims
(kernels/cpu/cache.py); Numba's cache saves are locked against concurrent writers."""

import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from helpers import fill_weights, toy_graph

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def held(path):
    """An exclusive flock on ``path`` through a file descriptor of its own (as another process would hold it)."""
    import fcntl

    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def fresh_kernel(monkeypatch, folder):
    """A cached Numba function no other test has compiled, with its cache (and claims) in ``folder``."""
    import numba

    monkeypatch.setattr(numba.config, "CACHE_DIR", str(folder))

    @numba.njit(cache=True)
    def scaled_sum(a, k):
        s = 0.0
        for v in a:
            s += v * k
        return s

    return scaled_sum


def test_a_claimed_kernel_is_skipped_from_python_and_waited_for_otherwise(monkeypatch, tmp_path):
    from numba.core import types

    from kernels.cpu.cache import Claimed, claim_path, claiming

    fn = fresh_kernel(monkeypatch, tmp_path)
    a = np.arange(5, dtype=np.float64)
    args = (types.Array(types.float64, 1, "C"), types.int64)
    fd = held(claim_path(fn, args))          # "another process" compiles fn for these types
    try:
        with claiming(skip=True), pytest.raises(Claimed):
            fn(a, 2)
        assert len(fn.overloads) == 0        # nothing compiled
        threading.Timer(0.5, os.close, (fd,)).start()     # the other process is done in 0.5 s
        t0 = time.perf_counter()
        with claiming(skip=False):
            assert fn(a, 2) == 20.0
        assert time.perf_counter() - t0 >= 0.4
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    with claiming(skip=True):
        assert fn(a, 3) == 30.0              # another signature: not claimed, compiled here


def test_a_claimed_work_item_address_defers_its_step(monkeypatch, tmp_path):
    # a driver's work item looked up by address (kernels.cpu.native) is compiled as a call from Python:
    # claimed elsewhere, the lookup raises Claimed (the step is deferred) rather than waiting
    from numba.core import types

    from kernels.cpu.cache import Claimed, claim_path, claiming
    from kernels.cpu.native import native_address

    fn = fresh_kernel(monkeypatch, tmp_path)
    args = (types.Array(types.float64, 1, "C"), types.int64)
    fd = held(claim_path(fn, args))
    try:
        with claiming(skip=True), pytest.raises(Claimed):
            native_address(fn, args)
        assert len(fn.overloads) == 0
    finally:
        os.close(fd)
    with claiming(skip=True):
        assert native_address(fn, args) != 0


def test_cache_saves_wait_for_the_index_lock(monkeypatch, tmp_path):
    # two processes saving entries of one function must not interleave their index updates
    from numba.core.caching import IndexDataCacheFile

    fn = fresh_kernel(monkeypatch, tmp_path)
    index = fn._cache._cache_file._index_path
    os.makedirs(os.path.dirname(index), exist_ok=True)
    assert getattr(IndexDataCacheFile.save, "_kernelnets_locked", False)
    fd = held(index + ".lock")
    done = []
    t = threading.Thread(target=lambda: done.append(fn(np.ones(3), 1)))
    t.start()
    time.sleep(1.0)
    saved_while_locked = os.path.exists(index)
    os.close(fd)
    t.join(60)
    assert done == [3.0] and not saved_while_locked and os.path.exists(index)


# the end of both child scripts: a toy network's first call, checked against the interpreter
RUN_TOY = """
g = fill_weights(toy_graph(), seed={seed})
m = Model(g, threads={threads})
x = np.random.default_rng({seed}).normal(size=({batch},) + m.input_shape).astype(np.float32)
want = interpret(g, x)[g.outputs[0]]
rel = lambda got: float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
err = rel(m(x))
"""


DEFER_RUN = r"""
import json, sys
sys.path.insert(0, {tests!r})
import numpy as np
import kernels.cpu.cache as cache
from helpers import fill_weights, toy_graph
from nets.graph.interpret import interpret
from nets.runtime import compile as comp
from nets.runtime.model import Model

comp.helpers_wanted = lambda: 1
comp._Helpers.start = lambda self: None            # no process: this one stands in for it
real_lock = cache._lock
def lock(fd, may_skip, what):                      # "a helper" holds every pooling kernel's claim
    if may_skip and "kernels.cpu.pool." in what:
        raise cache.Claimed(what)
    return real_lock(fd, may_skip, what)
cache._lock = lock
""" + RUN_TOY.format(seed=3, threads=1, batch=3) + r"""
print(json.dumps(dict(err=err, again=rel(m(x)), run=comp.last_run)))
"""


def test_a_step_claimed_elsewhere_is_deferred_and_the_result_is_still_exact(tmp_path):
    # the first run defers the steps whose kernels "a helper" compiles, runs the rest, then the
    # deferred ones, then the whole network again for the result (a fresh process: kernels already
    # compiled in a process are not claimed again; loading from the cache is)
    code = DEFER_RUN.format(tests=os.path.join(ROOT, "tests"))
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=ROOT), cwd=str(tmp_path),
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["err"] < 1e-4 and r["again"] < 1e-4
    assert {"pool", "avg", "gap"} <= set(r["run"]["deferred"]), r["run"]


HELPER_RUN = r"""
import json, sys, time
sys.path.insert(0, {tests!r})
import numpy as np
from helpers import fill_weights, toy_graph
from nets.graph.interpret import interpret
from nets.runtime import compile as comp
from nets.runtime.model import Model
from numba.core import event

here = []
class Count(event.Listener):
    def on_start(self, ev): pass
    def on_end(self, ev): here.append(ev.data["dispatcher"].py_func.__qualname__)
event.register("numba:compile", Count())
""" + RUN_TOY.format(seed=5, threads=2, batch=2) + r"""
print(json.dumps(dict(err=err, run=comp.last_run, compiled_here=len(here))))
"""


@pytest.mark.slow
def test_a_cold_first_run_compiles_with_a_helper_process(tmp_path):
    # an empty cache: the helper compiles part of the kernels (so this process compiles fewer than a
    # process alone does) and the result is exact
    code = HELPER_RUN.format(tests=os.path.join(ROOT, "tests"))
    env = dict(os.environ, PYTHONPATH=ROOT, NUMBA_CACHE_DIR=str(tmp_path / "cold"), NETS_COMPILE_HELPERS="1")
    run = dict(cwd=str(tmp_path), capture_output=True, text=True, timeout=900)
    out = subprocess.run([sys.executable, "-c", code], env=env, **run)
    assert out.returncode == 0, out.stderr[-3000:]
    coop = json.loads(out.stdout.strip().splitlines()[-1])
    assert coop["err"] < 1e-4
    assert coop["run"]["helpers"] == 1 and coop["run"]["helper_error"] is None
    alone = subprocess.run([sys.executable, "-c", code], **run,
                           env=dict(env, NUMBA_CACHE_DIR=str(tmp_path / "alone"), NETS_COMPILE_HELPERS="0"))
    assert alone.returncode == 0, alone.stderr[-3000:]
    solo = json.loads(alone.stdout.strip().splitlines()[-1])
    assert solo["err"] < 1e-4 and solo["run"] == {}
    assert coop["compiled_here"] < solo["compiled_here"]
    warm = subprocess.run([sys.executable, "-c", code], env=env, **run)      # the cache both left
    again = json.loads(warm.stdout.strip().splitlines()[-1])
    assert again["compiled_here"] == 0 and again["run"]["helpers"] == 0 and again["err"] == coop["err"]


def test_helpers_wanted_reads_the_environment(monkeypatch):
    from nets.errors import ModelError
    from nets.runtime.compile import helpers_wanted

    monkeypatch.setenv("NETS_COMPILE_HELPERS", "0")
    assert helpers_wanted() == 0
    monkeypatch.setenv("NETS_COMPILE_HELPERS", "2")
    assert helpers_wanted() == 2
    monkeypatch.setenv("NETS_COMPILE_HELPERS", "many")
    with pytest.raises(ModelError, match="NETS_COMPILE_HELPERS"):
        helpers_wanted()


def test_the_graph_reaches_a_helper_as_json_with_its_shapes():
    from nets.graph.passes import optimize
    from nets.runtime.compile import graph_from_spec, graph_spec

    g = optimize(fill_weights(toy_graph()))
    spec = json.loads(json.dumps(graph_spec(g, 4, 2)))
    h = graph_from_spec(spec)
    assert [(n.name, n.op, n.inputs, n.output, n.attrs, n.fused) for n in h.nodes] == \
        [(n.name, n.op, n.inputs, n.output, n.attrs, n.fused) for n in g.nodes]
    assert h.shapes == g.shapes and spec["batch"] == 4 and spec["threads"] == 2
    kinds = lambda n: {k: (w.shape, w.dtype) for k, w in n.weights.items()}     # noqa: E731
    for a, b in zip(g.nodes, h.nodes):
        assert kinds(a) == kinds(b)
        assert all(not w.any() for w in b.weights.values())


def test_without_a_folder_for_claims_kernels_compile_as_before(monkeypatch, tmp_path):
    # claims are an optimisation: where their folder cannot be made (a read-only place), compile anyway
    import kernels.cpu.cache as cache
    from kernels.cpu.cache import claiming

    fn = fresh_kernel(monkeypatch, tmp_path)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setattr(cache, "cache_dir", lambda: str(blocked))
    with claiming(skip=True):
        assert fn(np.ones(4), 2) == 8.0


def test_only_a_python_interpreter_starts_helpers(monkeypatch):
    from helpers import toy_graph as graph

    from nets.runtime import compile as comp
    from nets.runtime.model import Model

    ex = Model(fill_weights(graph())).new_executor(1)
    monkeypatch.setattr(comp, "helpers_wanted", lambda: 1)
    monkeypatch.setattr(comp, "MIN_STEPS", 1)
    assert comp.cooperative(ex)
    monkeypatch.setattr(comp.sys, "executable", "/usr/sbin/uwsgi")
    assert not comp.cooperative(ex)
    monkeypatch.setattr(comp.sys, "executable", "")
    assert not comp.cooperative(ex)
