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

__all__ = ["load", "Model", "preprocess", "load_image", "top_k", "KernelnetsError", "ModelError",
           "WeightsError", "InputError", "UnsupportedError"]
__version__ = "0.1.0"
