"""CUDA backend: the op set of ``kernels/__init__.py`` as CUDA C kernels compiled through CuPy.

    conv.cu / conv.py               conv2d: implicit GEMM (any kh x kw, stride, asymmetric padding),
                                    pointwise path, fused bias + residual + ReLU/ReLU6, out_c0 slices
    depthwise.cu / depthwise.py     depthwise_conv2d: float4 channel vectors, kernel size templated
    pool.cu / pool.py               max/avg/global pooling
    dense.cu / dense.py             dense: split-K GEMV at batch 1, the conv GEMM kernel above that
    elementwise.cu / elementwise.py add, activation, channel_affine, softmax, concat, zero_pad
    runtime.py                      compile cache (one NVRTC compile per specialisation), launches,
                                    ``unavailable_reason()``

Arrays are ``cupy.ndarray`` (``xp = cupy``); kernels launch on CuPy's current stream, so the caller
chooses the stream (``nets.gpu`` runs a whole network on one non-default stream and can capture it
in a CUDA graph). Scalars go to kernels as ``np.int32``; everything is float32 (FFMA, no TF32).
This package imports without cupy (so ``unavailable_reason()`` can say why there is no GPU);
``xp`` and every launch need cupy, and the first launch needs a device.
"""

from kernels.gpu.conv import conv2d, pack_conv2d
from kernels.gpu.dense import dense, pack_dense
from kernels.gpu.depthwise import depthwise_conv2d, pack_depthwise
from kernels.gpu.elementwise import activation, add, channel_affine, concat, softmax, zero_pad
from kernels.gpu.pool import avg_pool2d, global_avg_pool, global_max_pool, max_pool2d
from kernels.gpu.runtime import unavailable_reason


def __getattr__(name):
    if name == "xp":
        try:
            import cupy
        except ImportError as e:
            raise ImportError(f"the GPU backend needs cupy ({e}); install kernelnets[gpu]") from e
        return cupy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "pack_conv2d", "conv2d", "pack_depthwise", "depthwise_conv2d", "pack_dense", "dense",
    "max_pool2d", "avg_pool2d", "global_avg_pool", "global_max_pool",
    "add", "activation", "channel_affine", "softmax", "concat", "zero_pad", "xp", "unavailable_reason",
]
