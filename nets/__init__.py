"""kernelnets runtime: IR, passes, memory planner, executors, model zoo, importers, CLI.

    import nets
    model = nets.load("resnet50", weights="resnet50_weights_tf_dim_ordering_tf_kernels.h5",
                      classifier_activation=None, device="cpu", threads=2)
    logits = model(nets.preprocess("resnet50", images))
"""

from nets.errors import InputError, KernelnetsError, ModelError, UnsupportedError, WeightsError
from nets.loading import load
from nets.model import Model
from nets.preprocess import load_image, preprocess, top_k

__all__ = ["load", "Model", "preprocess", "load_image", "top_k", "KernelnetsError", "ModelError",
           "WeightsError", "InputError", "UnsupportedError"]
__version__ = "0.1.0"
