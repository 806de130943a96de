"""``nets classify`` on a Dask cluster: chunks of paths go to workers, top-k rows come back.

What crosses the network is a ``ModelRecipe`` (a few strings), a chunk's paths and its rows: never a
model, logits or pixels. Each worker process builds its model once per recipe (a per-process cache)
and decodes with a pipeline of its own per Dask thread; the paths must be readable by every worker
(a shared filesystem or identical copies).

Threads: Dask sets OMP/MKL threads to 1 in its workers but not NUMBA_NUM_THREADS (dask#9075), so a
worker would run Numba on every core of its machine, once per worker process. Unless ``threads`` is
given, each worker process runs its kernels on ``cores // (worker processes on its host)`` Numba
threads (at least 1), set on the task's own thread before any kernel runs, and runs one model call
at a time: more Dask threads in a worker overlap decoding with the model, not model calls with each
other (Numba's workqueue layer must not be entered by two threads at once, and one call on all of
the worker's cores beats two calls on half of them each for these networks).

Warm-up: the first chunk runs alone, so the kernels are compiled once into the Numba cache rather
than by every worker at the same time (concurrent first compiles into one cache can race); then one
chunk on one worker of every other host (their caches, if not shared); then everything.

Exactly once, in order: a task is a pure function of (recipe, chunk), so Dask may rerun it on
another worker when one dies; the client keeps the first result of each chunk index, drops any
other, resubmits a chunk whose workers kept dying (``KilledWorker``), and yields chunks in order.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import OrderedDict, deque

from nets.errors import KernelnetsError
from nets.tools.classify.pipeline import BatchPipeline

CHUNK_BATCHES = 4          # batches per task: ~30 images at batch 8 keeps the scheduler's share small
RESUBMITS = 3              # new tries of a chunk after Dask gave up on it (KilledWorker)
WORKER_WAIT_S = 60.0
CONNECT_TIMEOUT_S = 20.0

_models: OrderedDict = OrderedDict()          # per worker process: (recipe, threads) -> Classifier
_models_lock = threading.Lock()
_local = threading.local()                    # per Dask thread: its BatchPipeline
# One model call at a time per worker process: a worker's Numba threads are already its share of the
# host's cores (worker_threads), so a second concurrent call (Dask threads_per_worker > 1) would
# oversubscribe them. (Model calls are thread-safe; this is about cores, not correctness.)
_serial = threading.Lock()


class ClusterError(KernelnetsError, RuntimeError):
    """The Dask cluster could not be used: not installed, unreachable, no workers, workers dying."""


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError("Dask is not installed: pip install 'kernelnets[dask]' (dask[distributed])") from None
    return distributed


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ----------------------------------------------------------------------------------- worker side
def worker_threads(threads: int | None, plan: dict | None) -> int:
    """The Numba threads of a task on this worker: ``threads``, else this worker process's share of its
    host's cores."""
    from nets.runtime.threads import thread_limit

    if threads:
        return int(threads)
    plan = plan or {}
    try:
        from distributed import get_worker

        address = get_worker().address
    except (ImportError, ValueError):
        address = None
    # a worker that joined after the plan was made (a restarted one) gets the smallest planned share
    share = plan.get(address) or (min(plan.values()) if plan else usable_cores())
    return max(1, min(int(share), thread_limit()))


def worker_classifier(recipe, threads: int):
    """This process's Classifier for ``recipe`` at ``threads``: built on first use, then reused (the two
    most recent recipes are kept, so a long-lived cluster serving runs one after the other stays small)."""
    key = (recipe, threads)
    with _models_lock:
        c = _models.get(key)
        if c is None:
            c = _models[key] = recipe.build(threads)
            c.model = _SerialModel(c.model)
            while len(_models) > 2:
                _models.popitem(last=False)
        _models.move_to_end(key)
        return c


class _SerialModel:
    """Wraps a model so that its calls in this process hold ``_serial``."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, x):
        with _serial:
            return self.model(x)


def classify_chunk(recipe, index: int, paths: list, batch: int, topk: int, decode_threads: int, draft: bool,
                   threads: int | None, plan: dict | None) -> dict:
    """The Dask task: rows for ``paths`` (chunk ``index``) and where they were made."""
    from nets.runtime.threads import set_threads

    n = worker_threads(threads, plan)
    set_threads(n)                      # on this task's thread, before the model is built or run
    classifier = worker_classifier(recipe, n)
    key = (recipe, n, batch, decode_threads, draft)
    pipe = getattr(_local, "pipeline", None)
    if pipe is None or _local.key != key:
        if pipe is not None:
            pipe.close()
        pipe = _local.pipeline = BatchPipeline(classifier, batch, decode_threads, draft)
        _local.key = key
    wait0, model0 = pipe.wait_s, pipe.model_s
    rows = [r for part in pipe.run(list(paths), topk) for r in part]
    try:
        from distributed import get_worker

        where = get_worker().address
    except (ImportError, ValueError):
        where = f"pid {os.getpid()}"
    return dict(index=index, rows=rows, worker=where, threads=n, wait_s=pipe.wait_s - wait0,
                model_s=pipe.model_s - model0)


# ----------------------------------------------------------------------------------- client side
def connect(scheduler: str | None = None, workers: int | None = None):
    """(client, close): a client of the scheduler at ``scheduler``, or of a new LocalCluster of
    ``workers`` processes with one Dask thread each."""
    distributed = _distributed()
    import logging

    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as e:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler!r}: {e}") from None
        return client, client.close
    cluster = distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=logging.ERROR)
    client = distributed.Client(cluster)

    def close():
        client.close()
        cluster.close()
    return client, close


def thread_plan(client) -> dict:
    """Worker address -> Numba threads: the worker host's cores over the worker processes on that host."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    cores = client.run(usable_cores)
    per_host: dict = {}
    for w in workers.values():
        per_host[w["host"]] = per_host.get(w["host"], 0) + 1
    return {addr: max(1, cores.get(addr, 1) // max(1, per_host[w["host"]])) for addr, w in workers.items()}


def cluster_chunks(client, recipe, paths: list, *, batch: int, topk: int, threads: int | None = None,
                   decode_threads: int = 1, draft: bool = False, chunk_batches: int = CHUNK_BATCHES,
                   on_result=None):
    """Yields each chunk's rows (a list), in input order, each chunk once. ``on_result(info)`` sees
    every result dict as it arrives (worker, threads, times) for statistics."""
    distributed = _distributed()
    if not paths:
        return
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise ClusterError(f"no Dask worker joined the scheduler within {WORKER_WAIT_S:.0f} s") from None
    size = batch * max(1, int(chunk_batches))
    chunks = [paths[i:i + size] for i in range(0, len(paths), size)]
    plan = None if threads else thread_plan(client)
    token = uuid.uuid4().hex[:12]
    tries: dict = {}
    inflight: dict = {}
    done = distributed.as_completed()

    def launch(i, where=None):
        tries[i] = tries.get(i, -1) + 1
        f = client.submit(classify_chunk, recipe, i, chunks[i], batch, topk, decode_threads, draft, threads, plan,
                          key=f"nets-classify-{token}-{i}-{tries[i]}", pure=False,
                          **(dict(workers=where, allow_other_workers=True) if where else {}))
        inflight[f] = i
        done.add(f)

    todo = deque(range(len(chunks)))
    finished: dict = {}
    next_i = 0
    window = None                       # chunks in flight once warm: two per Dask thread, and one
    stage = "warm"                      # warm (chunk 0 alone) -> hosts (one chunk per other host) -> all
    launch(todo.popleft())
    try:
        for f in done:
            i = inflight.pop(f)
            try:
                res = f.result()
            except distributed.KilledWorker:
                if tries[i] >= RESUBMITS:
                    raise ClusterError(f"Dask workers died {RESUBMITS + 1} times running chunk {i} "
                                       f"({chunks[i][0]!r} ...); see the workers' logs") from None
                launch(i)
                continue
            finally:
                f.release()
            if i >= next_i and i not in finished:
                finished[i] = res["rows"]
                if on_result:
                    on_result(res)
            if stage == "warm" and not inflight:
                stage = "hosts"
                info = client.scheduler_info(n_workers=-1)["workers"]
                warm_host = info.get(res["worker"], {}).get("host")
                hosts: dict = {}
                for addr, w in info.items():
                    if w["host"] != warm_host:
                        hosts.setdefault(w["host"], addr)
                for addr in hosts.values():
                    if todo:
                        launch(todo.popleft(), [addr])
            if stage == "hosts" and not inflight:
                stage = "all"
            if stage == "all":
                if window is None:
                    window = 2 * sum(w["nthreads"] for w in client.scheduler_info(n_workers=-1)["workers"].values()) + 1
                while todo and len(inflight) < window:
                    launch(todo.popleft())
            while next_i in finished:         # after the top-up: workers stay busy while rows are written
                yield finished.pop(next_i)
                next_i += 1
    finally:
        if inflight:
            client.cancel(list(inflight))
