// dense.cu - batch-1 dense layer (GEMV) out[n] = act(sum_k x[k] * w[k, n] + bias[n]), in two steps.
//
// gemv_partial: block (32, 8) covers 128 output columns (one float4 per lane: a warp reads 512
//   contiguous bytes of a weight row); the 8 warps interleave over the block's K range and the
//   grid's y dimension splits K into S ranges, so even a 1000-column layer fills the GPU. Each block
//   reduces its 8 warps in shared memory and writes ws[y, n] (S partial rows).
// gemv_finish: one thread per output column sums the S partials, adds the bias, applies act.
// w is [K, Np] with Np a multiple of 4 (zero padding), bias [Np]; ws holds S * Np floats.
// Bounds: DRAM-bound, 4 * K * Np bytes of weights read once (VGG16 fc1: 411 MB, ~0.13 ms at
// ~3 TB/s); x (4K bytes) stays in L1/L2. Batches > 1 use the tiled conv2d_igemm kernel instead.

#define KN_GEMV_WARPS 8

__global__ void __launch_bounds__(32 * KN_GEMV_WARPS, 1)   // 1: no 32-register cap (sm_80 spilled)
gemv_partial(const float* __restrict__ x, const float* __restrict__ w, float* __restrict__ ws,
             int K, int Np, int kchunk)
{
    __shared__ __align__(16) float4 part[KN_GEMV_WARPS][32];
    const int n = (blockIdx.x * 32 + threadIdx.x) * 4;
    const int k_begin = blockIdx.y * kchunk;
    const int k_end = min(K, k_begin + kchunk);
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (n < Np) {
        // two independent accumulators keep two loads in flight per thread
        float4 acc2 = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        int k = k_begin + threadIdx.y;
        for (; k + KN_GEMV_WARPS < k_end; k += 2 * KN_GEMV_WARPS) {
            const float xa = __ldg(x + k), xb = __ldg(x + k + KN_GEMV_WARPS);
            const float4 wa = __ldg(reinterpret_cast<const float4*>(w + k * Np + n));
            const float4 wb = __ldg(reinterpret_cast<const float4*>(w + (k + KN_GEMV_WARPS) * Np + n));
            acc.x = fmaf(xa, wa.x, acc.x); acc.y = fmaf(xa, wa.y, acc.y);
            acc.z = fmaf(xa, wa.z, acc.z); acc.w = fmaf(xa, wa.w, acc.w);
            acc2.x = fmaf(xb, wb.x, acc2.x); acc2.y = fmaf(xb, wb.y, acc2.y);
            acc2.z = fmaf(xb, wb.z, acc2.z); acc2.w = fmaf(xb, wb.w, acc2.w);
        }
        if (k < k_end) {
            const float xa = __ldg(x + k);
            const float4 wa = __ldg(reinterpret_cast<const float4*>(w + k * Np + n));
            acc.x = fmaf(xa, wa.x, acc.x); acc.y = fmaf(xa, wa.y, acc.y);
            acc.z = fmaf(xa, wa.z, acc.z); acc.w = fmaf(xa, wa.w, acc.w);
        }
        acc.x += acc2.x; acc.y += acc2.y; acc.z += acc2.z; acc.w += acc2.w;
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && n < Np) {
        for (int i = 1; i < KN_GEMV_WARPS; ++i) {
            const float4 p = part[i][threadIdx.x];
            acc.x += p.x; acc.y += p.y; acc.z += p.z; acc.w += p.w;
        }
        *reinterpret_cast<float4*>(ws + blockIdx.y * Np + n) = acc;
    }
}

__global__ void gemv_finish(const float* __restrict__ ws, const float* __restrict__ bias, float* __restrict__ out,
                            int S, int N, int Np, int act)
{
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    float v = __ldg(bias + n);
    for (int s = 0; s < S; ++s) v += ws[s * Np + n];
    if (act == 1) v = fmaxf(v, 0.0f);
    else if (act == 2) v = fminf(fmaxf(v, 0.0f), 6.0f);
    out[n] = v;
}
