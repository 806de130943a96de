"""``nets classify``: a model over a collection of images, on this machine or a Dask cluster.

    inputs.py      files, folders, globs -> ordered, unique paths
    classifier.py  ModelRecipe (what a worker builds a model from), Classifier (batch -> top-k rows)
    pipeline.py    decode + resize + preprocess on a thread pool while the model runs
    writers.py     .csv / .jsonl / .parquet results, appended per batch; resume
    cluster.py     the same on Dask workers
    run.py         ClassifyRun and ``classify`` (``nets.classify``)
"""

from nets.tools.classify.classifier import Classifier, ModelRecipe
from nets.tools.classify.inputs import expand_inputs
from nets.tools.classify.run import ClassifyRun, classify
from nets.tools.classify.writers import columns, read_rows

__all__ = ["classify", "ClassifyRun", "Classifier", "ModelRecipe", "expand_inputs", "read_rows", "columns"]
