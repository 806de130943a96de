// layout.cu - copies without arithmetic: channel_gather (out[r, j] = x[r, index[j]]: grouped-conv slices,
// splits, channel shuffles) and crop_nhwc (an H x W window of an NHWC map). Memory-bound, one thread per
// output element (crop: per float4 when C is a multiple of 4 and the buffers 16-byte aligned);
// grid-stride, 32-bit indices; the gather's index is int32 on the device.

#include "common.cuh"

__global__ void channel_gather(const float* __restrict__ x, const int* __restrict__ index, float* __restrict__ out,
                               int rows, int cin, int cout)
{
    const int total = rows * cout;
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < total; t += gridDim.x * blockDim.x) {
        const int r = t / cout, j = t - r * cout;
        out[t] = __ldg(x + r * cin + __ldg(index + j));
    }
}

// out (batch, OH, OW, C) = x (batch, H, W, C) from row top and column left
template <int VEC>
__global__ void crop_nhwc(const float* __restrict__ x, float* __restrict__ out, int batch, int H, int W, int C,
                          int OH, int OW, int top, int left)
{
    const int CV = C / VEC, total = batch * OH * OW * CV;
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < total; t += gridDim.x * blockDim.x) {
        const int c = (t % CV) * VEC, p = t / CV;
        const int ow = p % OW, q = p / OW, oh = q % OH, n = q / OH;
        const int src = ((n * H + oh + top) * W + ow + left) * C + c;
        if (VEC == 4)
            reinterpret_cast<float4*>(out)[t] = __ldg(reinterpret_cast<const float4*>(x + src));
        else
            out[t] = __ldg(x + src);
    }
}
