// conv.cu - NHWC float32 convolution as an implicit GEMM with a fused epilogue, on FFMA (fp32, the
// default) or on the tensor cores (TF32, the opt-in kernels.gpu.tf32 backend).
//
// GEMM view:  C[M, N] = A[M, K] * B[K, N]
//   M = batch * OH * OW   output pixels          (rows of A and C)
//   N = cout              output channels
//   K = kh * kw * cin     k = (i * kw + j) * cin + c, the order of the flattened HWIO kernel
// A is never materialised: A[m, k] = x[n, oh*sh - pt + i, ow*sw - pl + j, c], 0 outside the image.
// B is the HWIO kernel flattened to [K, coutp], coutp = cout rounded up to 4 (zero columns), so
// every B row is 16-byte copyable. bias is padded to coutp as well.
// Epilogue (common.cuh kn_epilogue): out[m, out_c0 + n] = act(C[m, n] + bias[n] + residual[m, n]).
//
// Pipeline, both kernels: a block's K range is cut into BK-deep slices; STAGES shared-memory buffers
// hold the slices in flight, filled by cp.async (no staging registers) STAGES - 1 slices ahead of the
// one being multiplied; one __syncthreads per slice orders both the arrival of slice i and the end of
// the reads of the buffer that slice i + STAGES - 1 overwrites.
//   A is stored transposed, As[k][m] (4-byte copies put a pixel's channels down a column), so a thread
//   reads its TM rows as float4s; B is stored as it lies, Bs[k][n] (16-byte copies).
//   AMODE 0   any cin: each element decoded with divisions (first layer, cin 3)
//   AMODE 1   cin % 4 == 0, 16-byte aligned x: a 4-channel quad per slot, (c, i, j) advanced incrementally
//   AMODE 2   1x1, stride 1, no padding, cin % 4 == 0: A is x viewed as [M, cin]; no index math
// Split K: gridDim.z blocks share an output tile, each summing k_split values of K. With gridDim.z > 1
// they write raw partial sums to ws[z][m][coutp] and gemm.cu's splitk_reduce adds them up and applies
// the epilogue; small-M layers get enough blocks to fill the GPU that way.
//
// conv2d_igemm<BM, BN, BK, TM, TN, STAGES, AMODE>   FFMA; a TM x TN register tile per thread, in
//   float4 quads spread BM/MQ apart (conflict-free shared reads). 256-thread tiles are bounded to 128
//   registers (2 blocks per SM; no spills, tests/test_cuda_compile.py); smaller tiles are not capped
//   (a cap spills there).
// conv2d_tf32<BM, BN, BK, WM, WN, STAGES, AMODE>    mma.sync m16n8k8 TF32 with fp32 accumulation;
//   each warp owns a WM x WN sub-tile, WM/16 x WN/8 MMAs per 8-deep step. A is rounded to TF32 (cvt.rna)
//   as its fragments are read; B was rounded at pack time (kernels/gpu/tf32.py). Shared rows are 8 mod
//   32 words long, so every fragment read is conflict-free (the transposed A copies then meet 2- to
//   4-way bank conflicts, one store per 4 loads; unmeasured).
// vec_out: vector epilogue stores (float4 / float2; cout, out stride and out_c0 multiples of 4, aligned
// buffers); a run-time flag, as it only steers the epilogue.
// Bounds: per slice a fp32 block reads (BM + BN) * BK floats and does BM * BN * BK FMAs: FFMA-bound on
// large layers (TM*TN/(TM+TN) FMAs per shared load per thread); latency-bound below one wave of
// resident blocks, which the host's plan (conv.py) fills by splitting K.
// Index arithmetic is 32-bit: the host refuses tensors over kernels.gpu.runtime.INDEX_LIMIT.

#include "common.cuh"

// Fills one BK-deep slice of the A and B tiles (row strides AS, BS floats) with cp.async; each call
// moves on to the next slice. A thread's k quad (a_kq) is the same for all its A slots, so the (c, i, j)
// decomposition of AMODE 1 is advanced once per slice for all of them.
template <int BM, int BN, int BK, int THREADS, int AMODE, int AS, int BS>
struct KnTileLoader {
    static constexpr int KQ = BK / 4;               // float quads along K per A row
    static constexpr int A_SLOTS = BM * KQ, A_LOADS = (A_SLOTS + THREADS - 1) / THREADS;
    static constexpr int B_SLOTS = BK * (BN / 4), B_LOADS = (B_SLOTS + THREADS - 1) / THREADS;
    static_assert(BK % 4 == 0 && THREADS % KQ == 0, "tile shape");

    const float* x;
    const float* w;
    int H, W, C, kw, k_end, coutp, n0, tid, a_kq;
    int k;                                          // first k of the next slice
    int kc, ki, kj;                                 // AMODE 1: (c, i, j) of k + a_kq * 4
    int a_row[A_LOADS], a_base[A_LOADS], a_ih[A_LOADS], a_iw[A_LOADS];
    bool a_ok[A_LOADS];

    __device__ __forceinline__ KnTileLoader(const float* x_, const float* w_, int H_, int W_, int C_, int OH, int OW,
                                            int kw_, int sh, int sw, int pt, int pl, int M, int coutp_,
                                            int m0, int n0_, int k_begin, int k_end_)
        : x(x_), w(w_), H(H_), W(W_), C(C_), kw(kw_), k_end(k_end_), coutp(coutp_), n0(n0_),
          tid(threadIdx.x), a_kq(threadIdx.x % KQ), k(k_begin), kc(0), ki(0), kj(0) {
#pragma unroll
        for (int l = 0; l < A_LOADS; ++l) {         // this thread's A rows, decoded once
            const int slot = tid + l * THREADS;
            a_row[l] = slot / KQ;
            const int m = m0 + a_row[l];
            a_ok[l] = slot < A_SLOTS && m < M;
            const int mm = a_ok[l] ? m : 0;
            const int n = mm / (OH * OW), r = mm - n * (OH * OW);
            const int oh = r / OW, ow = r - oh * OW;
            a_base[l] = AMODE == 2 ? mm * C : n * H * W * C;
            a_ih[l] = oh * sh - pt;
            a_iw[l] = ow * sw - pl;
        }
        if (AMODE == 1) {
            kc = k_begin + a_kq * 4;
            const int tap = kc / C;
            kc -= tap * C;
            ki = tap / kw;
            kj = tap - ki * kw;
        }
    }

    __device__ __forceinline__ void load(float (*As)[AS], float (*Bs)[BS]) {
        const int ka = k + a_kq * 4;
#pragma unroll
        for (int l = 0; l < A_LOADS; ++l) {
            if (tid + l * THREADS >= A_SLOTS) continue;
            float* dst = &As[a_kq * 4][a_row[l]];
            if (AMODE == 0) {
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    const int kk = ka + q;
                    bool ok = a_ok[l] && kk < k_end;
                    int off = 0;
                    if (ok) {
                        const int tap = kk / C, c = kk - tap * C;
                        const int i = tap / kw, j = tap - i * kw;
                        const int ih = a_ih[l] + i, iw = a_iw[l] + j;
                        ok = ih >= 0 && ih < H && iw >= 0 && iw < W;
                        off = a_base[l] + (ih * W + iw) * C + c;
                    }
                    kn_cp_async4(dst + q * AS, ok ? x + off : x, ok);
                }
            } else {
                bool ok = a_ok[l] && ka < k_end;
                int off = a_base[l] + ka;
                if (AMODE == 1) {
                    const int ih = a_ih[l] + ki, iw = a_iw[l] + kj;
                    ok = ok && ih >= 0 && ih < H && iw >= 0 && iw < W;
                    off = a_base[l] + (ih * W + iw) * C + kc;
                }
                const float* src = ok ? x + off : x;
#pragma unroll
                for (int q = 0; q < 4; ++q) kn_cp_async4(dst + q * AS, src + (ok ? q : 0), ok);
            }
        }
#pragma unroll
        for (int l = 0; l < B_LOADS; ++l) {
            const int slot = tid + l * THREADS;
            if (slot >= B_SLOTS) continue;
            const int kr = slot / (BN / 4), nq = (slot % (BN / 4)) * 4, kk = k + kr, n = n0 + nq;
            const bool ok = kk < k_end && n < coutp;
            kn_cp_async16(&Bs[kr][nq], ok ? w + kk * coutp + n : w, ok);
        }
        k += BK;
        if (AMODE == 1) {                           // advance (c, i, j) to the next slice
            kc += BK;
            while (kc >= C) {
                kc -= C;
                if (++kj == kw) { kj = 0; ++ki; }
            }
        }
    }
};

// The arguments both kernels take (a macro keeps the two signatures and the launch tuple identical).
#define KN_CONV_PARAMS                                                                                          \
    const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,                  \
    const float* __restrict__ res, float* __restrict__ out, float* __restrict__ ws,                             \
    int batch, int H, int W, int C, int OH, int OW, int cout, int coutp, int kh, int kw, int sh, int sw,        \
    int pt, int pl, int out_stride, int out_c0, int has_res, int act, int vec_out, int k_split

template <int BM, int BN, int BK, int TM, int TN, int STAGES, int AMODE>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), (BM / TM) * (BN / TN) >= 256 ? 2 : 1)
conv2d_igemm(KN_CONV_PARAMS)
{
    constexpr int THREADS = (BM / TM) * (BN / TN);
    constexpr int MQ = TM / 4, NQ = TN / 4;
    constexpr int AS = BM + 4;                      // keeps the transposed A copies conflict-free at BK 8
    static_assert(TM % 4 == 0 && TN % 4 == 0 && STAGES >= 2, "tile shape");

    __shared__ __align__(16) float As[STAGES][BK][AS];
    __shared__ __align__(16) float Bs[STAGES][BK][BN];

    const int tid = threadIdx.x;
    const int tx = tid % (BN / TN), ty = tid / (BN / TN);
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    const int M = batch * OH * OW, K = kh * kw * C;
    const int k_begin = blockIdx.z * k_split, k_end = min(K, k_begin + k_split);
    const int slices = (k_end - k_begin + BK - 1) / BK;
    KnTileLoader<BM, BN, BK, THREADS, AMODE, AS, BN> ld(x, w, H, W, C, OH, OW, kw, sh, sw, pt, pl, M, coutp,
                                                        m0, n0, k_begin, k_end);

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < slices) ld.load(As[s], Bs[s]);
        kn_cp_async_commit();                       // empty groups keep the count uniform
    }
    for (int i = 0; i < slices; ++i) {
        kn_cp_async_wait<STAGES - 2>();             // this thread's copies of slice i have landed
        __syncthreads();                            // everyone's have, and slice i - 1 is consumed
        const int next = i + STAGES - 1;
        if (next < slices) ld.load(As[next % STAGES], Bs[next % STAGES]);
        kn_cp_async_commit();
        const int cur = i % STAGES;
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float a[TM], b[TN];
#pragma unroll
            for (int q = 0; q < MQ; ++q) {
                const float4 v = *reinterpret_cast<const float4*>(&As[cur][kk][ty * 4 + q * (BM / MQ)]);
                a[q * 4 + 0] = v.x; a[q * 4 + 1] = v.y; a[q * 4 + 2] = v.z; a[q * 4 + 3] = v.w;
            }
#pragma unroll
            for (int q = 0; q < NQ; ++q) {
                const float4 v = *reinterpret_cast<const float4*>(&Bs[cur][kk][tx * 4 + q * (BN / NQ)]);
                b[q * 4 + 0] = v.x; b[q * 4 + 1] = v.y; b[q * 4 + 2] = v.z; b[q * 4 + 3] = v.w;
            }
#pragma unroll
            for (int i2 = 0; i2 < TM; ++i2)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i2][j] = fmaf(a[i2], b[j], acc[i2][j]);
        }
    }

    const bool split = gridDim.z > 1;
    float* part = ws + blockIdx.z * M * coutp;
#pragma unroll
    for (int qm = 0; qm < MQ; ++qm) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int m = m0 + ty * 4 + qm * (BM / MQ) + r;
            if (m >= M) continue;
#pragma unroll
            for (int qn = 0; qn < NQ; ++qn) {
                const int n = n0 + tx * 4 + qn * (BN / NQ);
                const float* a4 = &acc[qm * 4 + r][qn * 4];
                if (split) {
                    if (n < coutp)
                        *reinterpret_cast<float4*>(part + m * coutp + n) = make_float4(a4[0], a4[1], a4[2], a4[3]);
                } else if (vec_out) {
                    kn_epilogue<4, true>(out, res, bias, a4, m, n, cout, out_stride, out_c0, has_res, act);
                } else {
                    kn_epilogue<4, false>(out, res, bias, a4, m, n, cout, out_stride, out_c0, has_res, act);
                }
            }
        }
    }
}

template <int BM, int BN, int BK, int WM, int WN, int STAGES, int AMODE>
__global__ void __launch_bounds__((BM / WM) * (BN / WN) * 32, (BM / WM) * (BN / WN) * 32 >= 256 ? 2 : 1)
conv2d_tf32(KN_CONV_PARAMS)
{
    constexpr int WARPS_N = BN / WN, THREADS = (BM / WM) * WARPS_N * 32;
    constexpr int MI = WM / 16, NI = WN / 8;
    constexpr int AS = BM + 8, BS = BN + 8;         // 8 mod 32 words: conflict-free fragment reads
    static_assert(WM % 16 == 0 && WN % 8 == 0 && BK % 8 == 0 && STAGES >= 2, "tile shape");

    __shared__ __align__(16) float As[STAGES][BK][AS];
    __shared__ __align__(16) float Bs[STAGES][BK][BS];

    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int g = lane / 4, t = lane % 4;
    const int wm0 = (warp / WARPS_N) * WM, wn0 = (warp % WARPS_N) * WN;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    const int M = batch * OH * OW, K = kh * kw * C;
    const int k_begin = blockIdx.z * k_split, k_end = min(K, k_begin + k_split);
    const int slices = (k_end - k_begin + BK - 1) / BK;
    KnTileLoader<BM, BN, BK, THREADS, AMODE, AS, BS> ld(x, w, H, W, C, OH, OW, kw, sh, sw, pt, pl, M, coutp,
                                                        m0, n0, k_begin, k_end);

    float acc[MI][NI][4];
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NI; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[i][j][e] = 0.0f;

#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (s < slices) ld.load(As[s], Bs[s]);
        kn_cp_async_commit();
    }
    for (int i = 0; i < slices; ++i) {
        kn_cp_async_wait<STAGES - 2>();
        __syncthreads();
        const int next = i + STAGES - 1;
        if (next < slices) ld.load(As[next % STAGES], Bs[next % STAGES]);
        kn_cp_async_commit();
        const int cur = i % STAGES;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 8) {
            unsigned a[MI][4], b[NI][2];
#pragma unroll
            for (int mi = 0; mi < MI; ++mi) {
                const int r = wm0 + mi * 16 + g;
                a[mi][0] = kn_tf32(As[cur][kk + t][r]);
                a[mi][1] = kn_tf32(As[cur][kk + t][r + 8]);
                a[mi][2] = kn_tf32(As[cur][kk + t + 4][r]);
                a[mi][3] = kn_tf32(As[cur][kk + t + 4][r + 8]);
            }
#pragma unroll
            for (int ni = 0; ni < NI; ++ni) {
                const int c = wn0 + ni * 8 + g;
                b[ni][0] = __float_as_uint(Bs[cur][kk + t][c]);
                b[ni][1] = __float_as_uint(Bs[cur][kk + t + 4][c]);
            }
#pragma unroll
            for (int mi = 0; mi < MI; ++mi)
#pragma unroll
                for (int ni = 0; ni < NI; ++ni) kn_mma_tf32(acc[mi][ni], a[mi], b[ni]);
        }
    }

    const bool split = gridDim.z > 1;
    float* part = ws + blockIdx.z * M * coutp;
#pragma unroll
    for (int mi = 0; mi < MI; ++mi) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {               // rows g and g + 8 of the 16x8 accumulator
            const int m = m0 + wm0 + mi * 16 + g + h * 8;
            if (m >= M) continue;
#pragma unroll
            for (int ni = 0; ni < NI; ++ni) {
                const int n = n0 + wn0 + ni * 8 + t * 2;
                const float* v = &acc[mi][ni][h * 2];
                if (split) {
                    if (n < coutp) *reinterpret_cast<float2*>(part + m * coutp + n) = make_float2(v[0], v[1]);
                } else if (vec_out) {
                    kn_epilogue<2, true>(out, res, bias, v, m, n, cout, out_stride, out_c0, has_res, act);
                } else {
                    kn_epilogue<2, false>(out, res, bias, v, m, n, cout, out_stride, out_c0, has_res, act);
                }
            }
        }
    }
}
