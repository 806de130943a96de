// normalize.cu - normalisations across channels (the last axis of a row-major rows x C tensor):
// layer_norm (mean and variance per row) and lrn (ONNX LRN: a window of channels).
//
// layer_norm_rows: one warp per row, 8 rows per 256-thread block, grid-stride over rows. Each lane
// sums every 32nd channel; the sums meet through __shfl_xor_sync. Three sweeps over the row (sum; the
// deviations from the rounded mean, their sum correcting it and their squares giving the variance, not
// E[x^2] - E[x]^2, which cancels; output); the second and third find the row in L1. Memory-bound: 8 bytes
// per element.
// lrn_rows: one thread per element, the window's squares read again by each (L1 hits; windows are 3-11
// channels). powf is the accurate power. 32-bit indices.

#include "common.cuh"

#define KN_LN_WARPS 8

__device__ __forceinline__ float kn_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__global__ void __launch_bounds__(KN_LN_WARPS * 32)
layer_norm_rows(const float* __restrict__ x, const float* __restrict__ gamma, const float* __restrict__ beta,
                float* __restrict__ out, int rows, int C, float eps)
{
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const float inv_c = 1.0f / (float)C;
    for (int r = blockIdx.x * KN_LN_WARPS + warp; r < rows; r += gridDim.x * KN_LN_WARPS) {
        const float* xr = x + r * C;
        float s = 0.0f;
        for (int c = lane; c < C; c += 32) s += __ldg(xr + c);
        const float mu = kn_warp_sum(s) * inv_c;
        float sd = 0.0f, q = 0.0f;                  // deviations from the rounded mean: their mean corrects it
        for (int c = lane; c < C; c += 32) {
            const float d = __ldg(xr + c) - mu;
            sd += d;
            q += d * d;
        }
        const float delta = kn_warp_sum(sd) * inv_c;
        const float rstd = 1.0f / sqrtf(fmaxf(kn_warp_sum(q) * inv_c - delta * delta, 0.0f) + eps);
        float* orow = out + r * C;
        for (int c = lane; c < C; c += 32)
            orow[c] = (__ldg(xr + c) - mu - delta) * rstd * __ldg(gamma + c) + __ldg(beta + c);
    }
}

// out = x / (bias + k * sum of x^2 over channels [c - lo, c + hi])^beta, k = alpha / size
__global__ void lrn_rows(const float* __restrict__ x, float* __restrict__ out, int total, int C, int lo, int hi,
                         float bias, float k, float beta)
{
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < total; t += gridDim.x * blockDim.x) {
        const int c = t % C, row = t - c;
        const int j0 = c - lo < 0 ? 0 : c - lo, j1 = c + hi > C - 1 ? C - 1 : c + hi;
        float s = 0.0f;
        for (int j = j0; j <= j1; ++j) {
            const float v = __ldg(x + row + j);
            s += v * v;
        }
        out[t] = __ldg(x + t) * powf(bias + k * s, -beta);
    }
}
