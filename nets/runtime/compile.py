"""A network's first run on a cold kernel cache, compiled by more than one process.

Numba compiles in one thread per process, so a first run on an empty cache used one core for tens of
seconds. ``first_run`` runs the steps in order as usual; at the first compilation it starts helper
processes (one per further core, ``NETS_COMPILE_HELPERS`` to choose, 0 for none) that build the same
graph with zero weights and run its steps too. Every process compiles under claims
(``kernels.cpu.cache.claiming``): a kernel specialisation that another process is compiling is not
compiled twice. A helper skips such a step and goes on to the next; the first run defers it, runs the
later steps (their inputs are not ready: this pass only compiles), then runs the deferred steps once
their kernels are in the cache, and finally the whole network again for the result. On a warm cache
nothing compiles, no helper starts and the first pass is the result.

A helper only ever adds entries to Numba's cache, each keyed by the exact signature it was compiled
for, so what it does cannot change a result; when it fails or is killed the first run compiles what
is left itself. The graph reaches it as JSON (structure, attributes, weight shapes): nothing is
unpickled.

    python -m nets.runtime.compile SPEC.json     # a helper (started by ``first_run``)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading

import numpy as np

from nets.errors import KernelnetsError, ModelError

MIN_STEPS = 16       # smaller graphs compile in a few seconds: not worth a helper's start-up (~1-2 s)
_ONE_AT_A_TIME = threading.Lock()   # one cooperative first run per process (others run plainly)
last_run: dict = {}                 # what the latest cooperative first run did (for tests and reports)


def helpers_wanted() -> int:
    """Helper processes for a first run: ``NETS_COMPILE_HELPERS`` if set, else one per core this
    process may use beyond the first (at most 3)."""
    env = os.environ.get("NETS_COMPILE_HELPERS", "").strip()
    if env:
        try:
            return max(0, int(env))
        except ValueError:
            raise ModelError(f"NETS_COMPILE_HELPERS must be a whole number, got {env!r}") from None
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(0, min(cores - 1, 3))


# ------------------------------------------------------------------ the graph as JSON (no weights)

def _encode(v):
    if isinstance(v, tuple):
        return {"tuple": [_encode(x) for x in v]}
    if isinstance(v, list):
        return [_encode(x) for x in v]
    if isinstance(v, dict):
        return {"dict": [[_encode(k), _encode(x)] for k, x in v.items()]}
    if isinstance(v, np.ndarray):
        return {"array": v.tolist(), "dtype": str(v.dtype), "shape": list(v.shape)}
    if isinstance(v, np.generic):
        return v.item()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"cannot describe {type(v).__name__} as JSON")


def _decode(v):
    if isinstance(v, list):
        return [_decode(x) for x in v]
    if isinstance(v, dict):
        if "tuple" in v:
            return tuple(_decode(x) for x in v["tuple"])
        if "dict" in v:
            return {_decode(k): _decode(x) for k, x in v["dict"]}
        if "array" in v:
            return np.array(v["array"], dtype=v["dtype"]).reshape(v["shape"])
    return v


def graph_spec(g, batch: int, threads: int) -> dict:
    """What a helper needs to compile ``g``'s kernels: every node with its attributes and the shapes
    and dtypes of its weights (not their values)."""
    nodes = [dict(name=n.name, op=n.op, inputs=list(n.inputs), output=n.output, attrs=_encode(dict(n.attrs)),
                  weight_shapes=_encode(dict(n.weight_shapes)), fused=list(n.fused),
                  weights={k: [list(np.shape(w)), str(np.asarray(w).dtype)] for k, w in n.weights.items()})
             for n in g.nodes]
    return dict(name=g.name, inputs=list(g.inputs), outputs=list(g.outputs), nodes=nodes,
                shapes=[[k, list(v)] for k, v in g.shapes.items()], batch=int(batch), threads=int(threads))


def graph_from_spec(spec: dict):
    """The graph of ``graph_spec`` with zero weights."""
    from nets.graph.ir import Graph, Node

    nodes = [Node(d["name"], d["op"], list(d["inputs"]), d["output"], _decode(d["attrs"]), _decode(d["weight_shapes"]),
                  {k: np.zeros(shape, dtype) for k, (shape, dtype) in d["weights"].items()}, list(d["fused"]))
             for d in spec["nodes"]]
    return Graph(spec["name"], nodes, list(spec["inputs"]), list(spec["outputs"]),
                 {k: tuple(v) for k, v in spec["shapes"]})


# ------------------------------------------------------------------ the first run

class _Helpers:
    """Starts the helper processes at the first compilation (a ``numba:compile`` listener)."""

    def __init__(self, ex, threads: int, count: int):
        self.ex, self.threads, self.count = ex, threads, count
        self.procs: list = []
        self.spec_path = None
        self.failed = None

    def listener(self):
        """A ``numba:compile`` listener that starts the helpers when the first compilation starts."""
        from numba.core import event

        helpers = self

        class StartHelpers(event.Listener):
            def on_start(self, ev):
                if not helpers.procs and helpers.failed is None:
                    try:
                        helpers.start()
                    except (OSError, TypeError, ValueError) as e:   # no helper then: compile alone
                        helpers.failed = f"{type(e).__name__}: {e}"

            def on_end(self, ev):
                pass

        return StartHelpers()

    def start(self):
        import numba

        spec = graph_spec(self.ex.graph, self.ex.batch, self.threads)
        fd, self.spec_path = tempfile.mkstemp(prefix="nets-compile-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(spec, f)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
                   NUMBA_CACHE_DIR=os.path.dirname(str(numba.config.CACHE_DIR)))
        for _ in range(self.count):
            self.procs.append(subprocess.Popen([sys.executable, "-m", "nets.runtime.compile", self.spec_path], env=env,
                                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()          # whatever it is compiling, this process has by now
            p.wait()
        if self.spec_path is not None:
            try:
                os.unlink(self.spec_path)
            except OSError:
                pass


def _run_step(ex, step, skip: bool):
    """Run one step; True if it ran, False if ``skip`` and another process is compiling its kernel."""
    from kernels.cpu.cache import Claimed

    try:
        step.run()
        return True
    except Claimed:
        if skip:
            return False
        raise
    except (KernelnetsError, KeyboardInterrupt):
        raise
    except Exception as e:
        raise ex.layer_error(step, e) from e


def cooperative(ex) -> bool:
    """Whether a first run of ``ex`` compiles with helpers: the Numba backend, a graph of at least
    ``MIN_STEPS`` steps, helpers wanted, and a Python interpreter to start them with (not, say, an
    application server embedding Python, whose ``sys.executable`` is the server)."""
    import kernels.cpu

    exe = os.path.basename(sys.executable or "").lower()
    return (ex.backend is kernels.cpu and len(ex.steps) >= MIN_STEPS and exe.startswith("python")
            and helpers_wanted() > 0)


def first_run(ex, x, threads: int, on_step=None) -> list:
    """``ex.run(x)`` for an executor's first call, compiling its kernels with helper processes when
    ``cooperative(ex)`` (module docstring). ``on_step(step)`` is called as each step is first done."""
    if not cooperative(ex) or not _ONE_AT_A_TIME.acquire(blocking=False):
        if on_step is None:
            return ex.run(x)
        ex.load_input(x)
        with ex.workspace_scope():
            for step in ex.steps:
                _run_step(ex, step, skip=False)
                on_step(step)
        return ex.outputs()
    try:
        return _cooperative_run(ex, x, threads, on_step)
    finally:
        _ONE_AT_A_TIME.release()


def _cooperative_run(ex, x, threads, on_step):
    from numba.core import event

    from kernels.cpu.cache import claiming

    helpers = _Helpers(ex, threads, helpers_wanted())
    deferred = []
    ex.load_input(x)
    try:
        with ex.workspace_scope():
            with event.install_listener("numba:compile", helpers.listener()), claiming(skip=True):
                for step in ex.steps:
                    if _run_step(ex, step, skip=True):
                        if on_step is not None:
                            on_step(step)
                    else:
                        deferred.append(step)
            with claiming(skip=False):
                for step in deferred:
                    _run_step(ex, step, skip=False)
                    if on_step is not None:
                        on_step(step)
    finally:
        helpers.stop()
        last_run.clear()
        last_run.update(helpers=len(helpers.procs), deferred=[s.node.name for s in deferred],
                        helper_error=helpers.failed)
    if deferred:            # later steps ran on unfinished inputs: now the real run
        return ex.run(x)
    return ex.outputs()


# ------------------------------------------------------------------ a helper process

def helper_main(spec_path: str) -> int:
    """Build the graph of ``spec_path`` with zero weights and run each step once under claims,
    skipping those another process is compiling (each process in step order takes the next kernel
    no other has taken: greedy scheduling)."""
    import numba

    import kernels.cpu
    from kernels.cpu.cache import claiming
    from nets.graph import ops
    from nets.runtime.executor import Executor, pack_weights
    from nets.runtime.threads import set_threads

    with open(spec_path) as f:
        spec = json.load(f)
    g = graph_from_spec(spec)
    for n in g.nodes:
        ops.get(n.op, n.name)           # an unknown op fails here, before any work
    set_threads(min(spec["threads"], numba.config.NUMBA_NUM_THREADS))
    ex = Executor(g, kernels.cpu, pack_weights(g, kernels.cpu), spec["batch"])
    ex.buffer(g.inputs[0])[...] = 0.0
    with ex.workspace_scope(), claiming(skip=True):
        for step in ex.steps:
            try:
                _run_step(ex, step, skip=True)
            except ModelError:
                pass            # the first run meets the same error itself and reports it
    return 0


if __name__ == "__main__":
    sys.exit(helper_main(sys.argv[1]))
