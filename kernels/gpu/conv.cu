// conv.cu - NHWC float32 convolution as an implicit GEMM with a fused epilogue.
//
// GEMM view:  C[M, N] = A[M, K] * B[K, N]
//   M = batch * OH * OW   output pixels          (rows of A and C)
//   N = cout              output channels
//   K = kh * kw * cin     k = (i * kw + j) * cin + c, the order of the flattened HWIO kernel
// A is never materialised: A[m, k] = x[n, oh*sh - pt + i, ow*sw - pl + j, c], 0 outside the image.
// B is the HWIO kernel flattened to [K, coutp], coutp = cout rounded up to 4 (zero columns), so
// every B row is float4-loadable. bias is padded to coutp as well.
// Epilogue: out[m, out_c0 + n] = act(C[m, n] + bias[n] + residual[m, n]); act 0 none, 1 relu, 2 relu6.
//
// One kernel, conv2d_igemm<BM, BN, TM, TN, AMODE, VOUT>:
//   BM x BN    output tile of one block, BK = 8 deep slices of K staged in shared memory, two
//              buffers: the next slice is loaded into registers while the current one is used, so
//              one __syncthreads per slice suffices.
//   TM x TN    register tile per thread (4 or 8 each), split in float4 quads spread BM/MQ apart so
//              a warp's shared-memory float4 reads are contiguous (no bank conflicts).
//   AMODE 0    any cin: four scalar loads per slot, each k decomposed with divisions (first layer, cin 3)
//   AMODE 1    cin % 4 == 0: one float4 per slot; (c, i, j) advanced incrementally, no divisions
//   AMODE 2    1x1, stride 1, no padding, cin % 4 == 0: A is x viewed as [M, cin]; no index math
//   VOUT       float4 epilogue (cout, out stride, out_c0 multiples of 4, 16-byte aligned buffers)
// Bounds: per slice a block reads (BM + BN) * BK floats and does BM * BN * BK FMAs, i.e. TM*TN/(TM+TN)
// FMAs per shared load per thread = 4 for 8x8: FFMA-bound on large layers (~50 TFLOP/s fp32 on an
// H100 SXM at best), latency/occupancy-bound when M * N / (BM * BN) is below ~2 blocks per SM.
// Index arithmetic is 32-bit: every tensor must have fewer than 2^31 elements.

#define KN_BK 8

__device__ __forceinline__ float kn_act(float v, int act) {
    if (act == 1) return fmaxf(v, 0.0f);
    if (act == 2) return fminf(fmaxf(v, 0.0f), 6.0f);
    return v;
}

template <int BM, int BN, int TM, int TN, int AMODE, bool VOUT>
__global__ void __launch_bounds__((BM / TM) * (BN / TN), 1)   // 1: no register cap below 255
conv2d_igemm(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
             const float* __restrict__ res, float* __restrict__ out,
             int batch, int H, int W, int C, int OH, int OW, int cout, int coutp,
             int kh, int kw, int sh, int sw, int pt, int pl,
             int out_stride, int out_c0, int has_res, int act)
{
    constexpr int BK = KN_BK;
    constexpr int THREADS = (BM / TM) * (BN / TN);
    constexpr int MQ = TM / 4, NQ = TN / 4;
    constexpr int KQ = BK / 4;                      // float4 slots along K per A row
    constexpr int A_SLOTS = BM * KQ;
    constexpr int A_LOADS = (A_SLOTS + THREADS - 1) / THREADS;
    constexpr int B_SLOTS = BK * (BN / 4);
    constexpr int B_LOADS = (B_SLOTS + THREADS - 1) / THREADS;
    constexpr int APAD = 4;                         // keeps the transposed A stores conflict-free
    static_assert(TM % 4 == 0 && TN % 4 == 0 && THREADS % KQ == 0, "tile shape");

    __shared__ __align__(16) float As[2][BK][BM + APAD];
    __shared__ __align__(16) float Bs[2][BK][BN];

    const int tid = threadIdx.x;
    const int tx = tid % (BN / TN), ty = tid / (BN / TN);
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;
    const int M = batch * OH * OW, K = kh * kw * C;

    // This thread's A rows stay the same for the whole K loop: decode them once.
    const int a_kq = tid % KQ;
    int a_row[A_LOADS], a_base[A_LOADS], a_ih[A_LOADS], a_iw[A_LOADS];
    bool a_ok[A_LOADS];
#pragma unroll
    for (int l = 0; l < A_LOADS; ++l) {
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
    // (c, i, j) of k = k0 + a_kq * 4, advanced by BK per slice (AMODE 1)
    int kc = a_kq * 4, ki = 0, kj = 0;
    if (AMODE == 1) {
        const int tap = kc / C;
        kc -= tap * C;
        ki = tap / kw;
        kj = tap - ki * kw;
    }

    float4 ra[A_LOADS], rb[B_LOADS];
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

    auto load_tile = [&](int k0) {
        const int k = k0 + a_kq * 4;
#pragma unroll
        for (int l = 0; l < A_LOADS; ++l) {
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (AMODE == 2) {
                if (a_ok[l] && k < K) v = __ldg(reinterpret_cast<const float4*>(x + a_base[l] + k));
            } else if (AMODE == 1) {
                const int ih = a_ih[l] + ki, iw = a_iw[l] + kj;
                if (a_ok[l] && k < K && ih >= 0 && ih < H && iw >= 0 && iw < W)
                    v = __ldg(reinterpret_cast<const float4*>(x + a_base[l] + (ih * W + iw) * C + kc));
            } else {
                float e[4];
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    e[q] = 0.0f;
                    const int kk = k + q;
                    if (a_ok[l] && kk < K) {
                        const int tap = kk / C, c = kk - tap * C;
                        const int i = tap / kw, j = tap - i * kw;
                        const int ih = a_ih[l] + i, iw = a_iw[l] + j;
                        if (ih >= 0 && ih < H && iw >= 0 && iw < W) e[q] = __ldg(x + a_base[l] + (ih * W + iw) * C + c);
                    }
                }
                v = make_float4(e[0], e[1], e[2], e[3]);
            }
            ra[l] = v;
        }
#pragma unroll
        for (int l = 0; l < B_LOADS; ++l) {
            const int slot = tid + l * THREADS;
            const int kr = slot / (BN / 4), n = n0 + (slot % (BN / 4)) * 4, kk = k0 + kr;
            float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (slot < B_SLOTS && kk < K && n < coutp) v = __ldg(reinterpret_cast<const float4*>(w + kk * coutp + n));
            rb[l] = v;
        }
        if (AMODE == 1) {                           // advance (c, i, j) to the next slice
            kc += BK;
            while (kc >= C) {
                kc -= C;
                if (++kj == kw) { kj = 0; ++ki; }
            }
        }
    };
    auto store_tile = [&](int buf) {
#pragma unroll
        for (int l = 0; l < A_LOADS; ++l) {
            if (tid + l * THREADS < A_SLOTS) {
                As[buf][a_kq * 4 + 0][a_row[l]] = ra[l].x;
                As[buf][a_kq * 4 + 1][a_row[l]] = ra[l].y;
                As[buf][a_kq * 4 + 2][a_row[l]] = ra[l].z;
                As[buf][a_kq * 4 + 3][a_row[l]] = ra[l].w;
            }
        }
#pragma unroll
        for (int l = 0; l < B_LOADS; ++l) {
            const int slot = tid + l * THREADS;
            if (slot < B_SLOTS)
                *reinterpret_cast<float4*>(&Bs[buf][slot / (BN / 4)][(slot % (BN / 4)) * 4]) = rb[l];
        }
    };

    load_tile(0);
    store_tile(0);
    __syncthreads();
    int cur = 0;
    for (int k0 = 0; k0 < K; k0 += BK) {
        const bool more = k0 + BK < K;
        if (more) load_tile(k0 + BK);               // global loads in flight during the FMAs below
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
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        if (more) store_tile(cur ^ 1);
        __syncthreads();
        cur ^= 1;
    }

    // Fused epilogue: bias, residual, activation, written at channel offset out_c0.
#pragma unroll
    for (int qm = 0; qm < MQ; ++qm) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int m = m0 + ty * 4 + qm * (BM / MQ) + r;
            if (m >= M) continue;
            float* orow = out + m * out_stride + out_c0;
            const float* rrow = res + m * cout;
#pragma unroll
            for (int qn = 0; qn < NQ; ++qn) {
                const int n = n0 + tx * 4 + qn * (BN / NQ);
                const float* a4 = &acc[qm * 4 + r][qn * 4];
                if (VOUT) {
                    if (n < cout) {
                        const float4 b4 = __ldg(reinterpret_cast<const float4*>(bias + n));
                        float4 v = make_float4(a4[0] + b4.x, a4[1] + b4.y, a4[2] + b4.z, a4[3] + b4.w);
                        if (has_res) {
                            const float4 r4 = __ldg(reinterpret_cast<const float4*>(rrow + n));
                            v.x += r4.x; v.y += r4.y; v.z += r4.z; v.w += r4.w;
                        }
                        v.x = kn_act(v.x, act); v.y = kn_act(v.y, act); v.z = kn_act(v.z, act); v.w = kn_act(v.w, act);
                        *reinterpret_cast<float4*>(orow + n) = v;
                    }
                } else {
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        if (n + e < cout) {
                            float v = a4[e] + __ldg(bias + n + e);
                            if (has_res) v += __ldg(rrow + n + e);
                            orow[n + e] = kn_act(v, act);
                        }
                    }
                }
            }
        }
    }
}
