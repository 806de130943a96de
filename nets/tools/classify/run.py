"""One classification of a collection: inputs -> (local pipeline | Dask cluster) -> rows -> file.

``ClassifyRun`` does the checks up front (inputs, output format, an existing output file, the model),
then yields rows batch by batch, in input order, writing each batch to the output as it finishes.
``classify`` is the Python API over it (``nets.classify``).
"""

from __future__ import annotations

import os
import time

from nets.errors import InputError, ModelError
from nets.tools.classify.classifier import ModelRecipe
from nets.tools.classify.inputs import expand_inputs
from nets.tools.classify.pipeline import BatchPipeline
from nets.tools.classify.writers import Writer, format_of


def _is_model(obj) -> bool:
    return callable(obj) and hasattr(obj, "input_shape") and hasattr(obj, "graph")


class ClassifyRun:
    """Iterate over it for rows (``batches()`` for one list per batch). After the iteration:
    ``images`` / ``failed`` (this run), ``skipped`` / ``skipped_failed`` (rows an earlier run left in
    ``out``, with ``resume``), ``seconds``, ``first_batch_s`` (includes compiling the kernels on a cold
    cache) and ``rate`` / ``steady_rate`` (images/s, without the first batch)."""

    def __init__(self, model, inputs, *, batch: int = 8, topk: int = 5, out=None, cluster=None,
                 workers: int | None = None, weights=None, threads: int | None = None, device: str = "cpu",
                 recursive: bool = False, resume: bool = False, overwrite: bool = False, draft: bool = False,
                 preprocess: str | None = None, labels=None, decode_threads: int | None = None,
                 model_options: dict | None = None, chunk_batches: int | None = None):
        for name, v in (("batch", batch), ("topk", topk)):
            if int(v) < 1:
                raise InputError(f"{name} must be >= 1, got {v}")
        if workers is not None and int(workers) < 1:
            raise InputError(f"workers must be >= 1, got {workers}")
        if resume and out is None:
            raise InputError("resume needs an output file (out=/--out) to read the finished images from")
        if cluster is not None and workers is not None:
            raise InputError("give either a cluster (a scheduler address or a distributed.Client) or workers, "
                             "not both")
        self.batch, self.topk, self.draft = int(batch), int(topk), bool(draft)
        self.threads, self.decode_threads, self.chunk_batches = threads, decode_threads, chunk_batches
        self.out = None if out is None else os.fspath(out)
        if self.out:
            format_of(self.out)
        self.paths = expand_inputs(inputs, recursive)
        if not self.paths:
            raise InputError("no input images given")
        self.distributed = cluster is not None or workers is not None
        self.cluster, self.workers = cluster, workers
        self.recipe = self.classifier = None
        if _is_model(model):
            if self.distributed:
                raise ModelError("a Model object cannot be sent to Dask workers (models are never pickled): "
                                 "pass the model's name or file, weights= and model_options= instead")
            from nets.tools.classify.classifier import Classifier

            self.classifier = Classifier(model, preprocess=preprocess, labels=labels)
        else:
            self.recipe = ModelRecipe.make(model, weights, model_options, device, preprocess, labels)
            if not self.distributed:
                self.classifier = self.recipe.build(threads)
        self.writer = Writer(self.out, self.topk, resume, overwrite) if self.out else None
        done = self.writer.done if self.writer else {}
        self.todo = [p for p in self.paths if p not in done]
        self.skipped = len(self.paths) - len(self.todo)
        self.skipped_failed = sum(1 for p in self.paths if done.get(p, None) is not None)
        self.images = self.failed = 0
        self.seconds = self.first_batch_s = 0.0
        self.wait_s = self.model_s = 0.0
        self.worker_stats: list[dict] = []
        self._first_n = None

    @property
    def total(self) -> int:
        return len(self.paths)

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    @property
    def steady_rate(self) -> float:
        """Images/s after the first batch (kernel compilation, thread and cluster start-up excluded)."""
        n = self.images - (self._first_n or 0)
        dt = self.seconds - self.first_batch_s
        return n / dt if n > 0 and dt > 0 else self.rate

    def _local(self):
        with BatchPipeline(self.classifier, self.batch, self.decode_threads, self.draft) as pipe:
            try:
                yield from pipe.run(self.todo, self.topk)
            finally:
                self.wait_s, self.model_s = pipe.wait_s, pipe.model_s

    def _on_result(self, info: dict):
        self.worker_stats.append({k: v for k, v in info.items() if k != "rows"})

    def _cluster(self):
        from nets.tools.classify.cluster import CHUNK_BATCHES, cluster_chunks, connect

        if isinstance(self.cluster, str) or self.cluster is None:
            client, close = connect(self.cluster, self.workers)
        else:
            client, close = self.cluster, None
        try:
            yield from cluster_chunks(client, self.recipe, self.todo, batch=self.batch, topk=self.topk,
                                      threads=self.threads, decode_threads=self.decode_threads or 2,
                                      draft=self.draft, chunk_batches=self.chunk_batches or CHUNK_BATCHES,
                                      on_result=self._on_result)
        finally:
            if close:
                close()

    def batches(self):
        """Yields one list of rows per finished batch (a chunk of batches on Dask), in input order."""
        t0 = time.perf_counter()
        complete = False
        try:
            if self.todo:
                for rows in (self._cluster() if self.distributed else self._local()):
                    if self.writer:
                        self.writer.write(rows)
                    self.images += len(rows)
                    self.failed += sum(1 for r in rows if r["error"] is not None)
                    self.seconds = time.perf_counter() - t0
                    if self._first_n is None:
                        self._first_n, self.first_batch_s = self.images, self.seconds
                    yield rows
            complete = True
        finally:
            self.seconds = time.perf_counter() - t0
            if self.writer:
                self.writer.close(complete=complete)
                self.writer = None

    def __iter__(self):
        for rows in self.batches():
            yield from rows


def classify(model, inputs, *, batch: int = 8, topk: int = 5, out=None, cluster=None, stream: bool = False,
             **options):
    """Classify images: top-``topk`` rows ``{"path", "top": [{"label", "index", "prob"}...], "error"}``,
    one per input image, in input order.

    model: a zoo name ("resnet50", with ``weights=`` a Keras .h5 file; seeded weights without), a model
        file (Keras .h5 / .keras, ONNX), or a loaded ``nets.Model`` (local runs only).
    inputs: image files, folders (``recursive=True`` for subfolders) and glob patterns.
    batch: images per model call; the last batch is padded to it. topk: classes per row.
    out: a ``.csv`` / ``.jsonl`` / ``.parquet`` file the rows are appended to as batches finish
        (``resume=True`` skips the images already in it, ``overwrite=True`` replaces it).
    cluster: a ``distributed.Client`` or a scheduler address ("tcp://host:8786"): chunks of paths go
        to the Dask workers, which need to read the same paths; ``workers=N`` starts a LocalCluster.
    stream: return the ``ClassifyRun`` (iterate it for rows as they come; its counts after) instead of
        a list.
    Other options: weights, threads, device ("cpu" / "gpu"), recursive, resume, overwrite, draft (JPEG
    draft decoding: faster, pixels differ from Keras'), preprocess (a mode instead of the model's),
    labels (a file, one class name per line), decode_threads, model_options (nets.load keywords such
    as input_shape, alpha, classifier_activation), chunk_batches (batches per Dask task).

    ``prob`` is a probability: the model's output when it ends in a softmax, else the softmax of its
    logits. A file that cannot be read gets a row with ``error`` set and no classes.
    """
    run = ClassifyRun(model, inputs, batch=batch, topk=topk, out=out, cluster=cluster, **options)
    return run if stream else list(run)
