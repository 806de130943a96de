"""CUDA backend: the op set of ``kernels/__init__.py`` as CUDA C kernels compiled through CuPy.

    common.cuh                      activation, fused epilogue, cp.async and mma.sync helpers
    conv.cu / conv.py               conv2d: implicit GEMM (any kh x kw, stride, asymmetric padding),
                                    cp.async pipeline, split K for small M, fused bias + residual +
                                    ReLU/ReLU6, out_c0 slices; FFMA tiles and TF32 tensor-core tiles
    depthwise.cu / depthwise.py     depthwise_conv2d: float4 channel vectors, kernel size templated
    pool.cu / pool.py               max/avg/global pooling
    gemm.cu / gemm.py               skinny GEMM (<= 64 rows, split K; batch-1 dense is its GEMV) and the
                                    split-K reduce that applies the conv/dense epilogue
    dense.py                        dense: the skinny GEMM up to batch 64, the conv kernel above that
    elementwise.cu / elementwise.py add, mul (same shape or per sample and channel), activation,
                                    channel_affine, softmax, concat, zero_pad
    normalize.cu / normalize.py     layer_norm (a warp per row), lrn
    layout.cu / layout.py           channel_gather, crop
    runtime.py                      compile cache (one NVRTC compile per specialisation), launches,
                                    uploads, workspaces, ``unavailable_reason()``
    tf32.py                         ``kernels.gpu.tf32``: this backend with conv2d/dense on tensor cores
    emulate.py / emulate.h          the same CUDA C run on the host (tests, no GPU needed)
    ptxas.py                        nvcc -Xptxas -v (registers, spills, blocks per SM) and NVRTC
                                    compile checks of every specialisation

Arrays are ``cupy.ndarray`` (``xp = cupy``); kernels launch on CuPy's current stream, so the caller
chooses the stream (the runtime's CUDA-graph runner runs a whole network on one non-default stream
and can capture it in a CUDA graph). Weights are uploaded at pack time and synchronised, so any
stream may use them. Scalars go to kernels as ``np.int32``; everything is float32 on the FFMA pipes
(TF32 only through ``kernels.gpu.tf32``).
This package imports without cupy (so ``unavailable_reason()`` can say why there is no GPU);
``xp`` and every launch need cupy, and the first launch needs a device.
"""

from kernels.gpu.conv import conv2d, pack_conv2d
from kernels.gpu.dense import dense, pack_dense
from kernels.gpu.depthwise import depthwise_conv2d, pack_depthwise
from kernels.gpu.elementwise import activation, add, channel_affine, concat, mul, softmax, zero_pad
from kernels.gpu.layout import channel_gather, crop
from kernels.gpu.normalize import layer_norm, lrn
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
    "add", "activation", "channel_affine", "softmax", "concat", "zero_pad", "mul", "layer_norm", "lrn",
    "channel_gather", "crop", "xp", "unavailable_reason",
]
