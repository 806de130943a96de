// gemm.cu - skinny GEMM (a few rows of A against a packed weight matrix) and the split-K reduce that
// applies the conv/dense epilogue.
//
// gemm_rows<R>: C[m, n] = sum_k A[m, k] * B[k, n] for M <= 64 rows, A [M, K] row-major (a dense
//   layer's input, or a pointwise conv's pixels), B [K, Np] with Np a multiple of 4 (zero padded).
//   Block (32, 8) covers 128 columns (a float4 per lane: a warp reads 512 contiguous bytes of a B
//   row) and R rows of A; the 8 warps interleave over the block's K range; gridDim.z splits K into
//   ranges, gridDim.x walks the row blocks fastest so the blocks that share a B range run together
//   and read it from L2 once. Each K tile of A (R x 64) is staged in shared memory, so a B float4
//   feeds R float4 FMAs. Partial sums go to ws[z][m][Np].
// splitk_reduce<VOUT>: out = act(sum_z ws[z] + bias + residual), written at out_c0 of rows out_stride
//   wide, one thread per 4 columns (the epilogue of conv.cu's split-K tiles and of gemm_rows).
// Bounds: gemm_rows is DRAM-bound on B: 4 * K * Np bytes read once per pass (VGG16 fc1 411 MB, about
//   0.13 ms at 3 TB/s); A (4 * R * K bytes) stays in L1/L2. splitk_reduce moves (splits + 2) * M * N
//   floats. 32-bit indices.

#include "common.cuh"

#define KN_GEMM_WARPS 8
#define KN_GEMM_KT (KN_GEMM_WARPS * 8)             // K values per staged A tile: 8 per warp

template <int R>
__global__ void __launch_bounds__(32 * KN_GEMM_WARPS)
gemm_rows(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ ws,
          int M, int K, int Np, int kchunk)
{
    __shared__ __align__(16) float as[KN_GEMM_KT][R];
    __shared__ __align__(16) float4 part[KN_GEMM_WARPS][32];
    const int tid = threadIdx.y * 32 + threadIdx.x;
    const int r0 = blockIdx.x * R;
    const int n = (blockIdx.y * 32 + threadIdx.x) * 4;
    const int k_begin = blockIdx.z * kchunk, k_end = min(K, k_begin + kchunk);
    float4 acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);

    for (int kt = k_begin; kt < k_end; kt += KN_GEMM_KT) {
        __syncthreads();                           // the previous tile is consumed
        for (int i = tid; i < KN_GEMM_KT * R; i += 32 * KN_GEMM_WARPS) {
            const int r = i / KN_GEMM_KT, kk = i - r * KN_GEMM_KT, k = kt + kk;   // coalesced along k
            as[kk][r] = (r0 + r < M && k < k_end) ? __ldg(a + (r0 + r) * K + k) : 0.0f;
        }
        __syncthreads();
        if (n < Np) {
#pragma unroll
            for (int j = 0; j < 8; ++j) {          // 8 independent B loads in flight per thread
                const int kk = threadIdx.y + j * KN_GEMM_WARPS, k = kt + kk;
                if (k < k_end) {
                    const float4 bv = __ldg(reinterpret_cast<const float4*>(b + k * Np + n));
#pragma unroll
                    for (int r = 0; r < R; ++r) {
                        const float av = as[kk][r];
                        acc[r].x = fmaf(av, bv.x, acc[r].x); acc[r].y = fmaf(av, bv.y, acc[r].y);
                        acc[r].z = fmaf(av, bv.z, acc[r].z); acc[r].w = fmaf(av, bv.w, acc[r].w);
                    }
                }
            }
        }
    }
    // sum the 8 warps' partials, one row at a time through a 4 KB buffer
    float* out = ws + blockIdx.z * M * Np;
#pragma unroll
    for (int r = 0; r < R; ++r) {
        __syncthreads();
        part[threadIdx.y][threadIdx.x] = acc[r];
        __syncthreads();
        if (threadIdx.y == 0 && n < Np && r0 + r < M) {
            float4 s = part[0][threadIdx.x];
#pragma unroll
            for (int i = 1; i < KN_GEMM_WARPS; ++i) {
                const float4 p = part[i][threadIdx.x];
                s.x += p.x; s.y += p.y; s.z += p.z; s.w += p.w;
            }
            *reinterpret_cast<float4*>(out + (r0 + r) * Np + n) = s;
        }
    }
}

template <bool VOUT>
__global__ void splitk_reduce(const float* __restrict__ ws, const float* __restrict__ bias,
                              const float* __restrict__ res, float* __restrict__ out,
                              int splits, int M, int cout, int coutp, int out_stride, int out_c0, int has_res, int act)
{
    const int NQ = coutp / 4, total = M * NQ, plane = M * coutp;
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < total; t += gridDim.x * blockDim.x) {
        const int m = t / NQ, n = (t - m * NQ) * 4;
        const float* p = ws + m * coutp + n;
        float4 s = __ldg(reinterpret_cast<const float4*>(p));
        for (int z = 1; z < splits; ++z) {
            const float4 q = __ldg(reinterpret_cast<const float4*>(p + z * plane));
            s.x += q.x; s.y += q.y; s.z += q.z; s.w += q.w;
        }
        const float v[4] = {s.x, s.y, s.z, s.w};
        kn_epilogue<4, VOUT>(out, res, bias, v, m, n, cout, out_stride, out_c0, has_res, act);
    }
}
