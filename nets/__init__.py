"""kernelnets runtime: the graph (IR, ops, passes), the runtime (planner, executors, Model), I/O (Keras,
ONNX, images), the model zoo, tools (profile, compare, peaks) and the ``nets`` command line.

    import nets
    model = nets.load("resnet50", weights="resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                      classifier_activation=None, device="cpu", threads=2)
    logits = model(nets.preprocess("resnet50", images))
"""

from nets.api import load
from nets.errors import InputError, KernelnetsError, ModelError, UnsupportedError, WeightsError
from nets.io.images import load_image, preprocess, top_k
from nets.runtime.model import Model


def classify(model, inputs, *, batch: int = 8, topk: int = 5, out=None, cluster=None, **options):
    """Classify a collection of images (files, folders, globs): one row per image,
    ``{"path", "top": [{"label", "index", "prob"}, ...], "error"}``, in input order; ``out=`` a .csv /
    .jsonl / .parquet file written as batches finish; ``cluster=`` a ``distributed.Client`` or a
    scheduler address to run on Dask workers. All options: ``nets.tools.classify.classify`` (imported
    on the first call, so ``import nets`` stays free of the tools layer)."""
    from nets.tools.classify import classify as run

    return run(model, inputs, batch=batch, topk=topk, out=out, cluster=cluster, **options)


__all__ = ["load", "Model", "preprocess", "load_image", "top_k", "classify", "KernelnetsError", "ModelError",
           "WeightsError", "InputError", "UnsupportedError"]
__version__ = "0.1.0"
