// pool.cu - NHWC float32 pooling: windowed max/avg and global max/avg.
//
// pool2d<IS_MAX, VEC>        one thread = one output pixel x VEC channels (VEC 4: float4 loads/stores,
//                            needs C, out stride and out_c0 multiples of 4 and aligned buffers).
//                            Max: padded cells never win. Avg: divides by the real cells in the window
//                            unless count_include_pad (then by ph * pw), as Keras 'same' vs ONNX.
//                            Writes channels [out_c0, out_c0 + C) of an out buffer out_stride wide.
// global_pool<IS_MAX, VEC>   one block = one image x 8 VEC-channel groups; its 32 thread rows stride
//                            over H * W (a warp reads 4 rows of 8 consecutive vectors, coalesced) and
//                            meet in shared memory. out is (batch, C). A 7x7x2048 map at batch 1 runs
//                            on 64 blocks, 2 loads per thread.
// Bounds: memory-bound; each input is read ph*pw / (sh*sw) times, mostly from L1/L2. 32-bit indices
// (the host refuses tensors over kernels.gpu.runtime.INDEX_LIMIT).

#include "common.cuh"

template <int VEC> struct KnVec;
template <> struct KnVec<1> {
    float v;
    __device__ __forceinline__ void load(const float* p) { v = __ldg(p); }
    __device__ __forceinline__ void store(float* p) const { *p = v; }
    __device__ __forceinline__ void fill(float s) { v = s; }
    __device__ __forceinline__ void max_with(const KnVec& o) { v = fmaxf(v, o.v); }
    __device__ __forceinline__ void add(const KnVec& o) { v += o.v; }
    __device__ __forceinline__ void scale(float s) { v *= s; }
};
template <> struct KnVec<4> {
    float4 v;
    __device__ __forceinline__ void load(const float* p) { v = __ldg(reinterpret_cast<const float4*>(p)); }
    __device__ __forceinline__ void store(float* p) const { *reinterpret_cast<float4*>(p) = v; }
    __device__ __forceinline__ void fill(float s) { v = make_float4(s, s, s, s); }
    __device__ __forceinline__ void max_with(const KnVec& o) {
        v.x = fmaxf(v.x, o.v.x); v.y = fmaxf(v.y, o.v.y); v.z = fmaxf(v.z, o.v.z); v.w = fmaxf(v.w, o.v.w);
    }
    __device__ __forceinline__ void add(const KnVec& o) { v.x += o.v.x; v.y += o.v.y; v.z += o.v.z; v.w += o.v.w; }
    __device__ __forceinline__ void scale(float s) { v.x *= s; v.y *= s; v.z *= s; v.w *= s; }
};

template <bool IS_MAX, int VEC>
__global__ void pool2d(const float* __restrict__ x, float* __restrict__ out,
                       int batch, int H, int W, int C, int OH, int OW, int ph, int pw,
                       int sh, int sw, int pt, int pl, int count_include_pad, int out_stride, int out_c0)
{
    const int CV = C / VEC;
    const int total = batch * OH * OW * CV;
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < total; t += gridDim.x * blockDim.x) {
        const int c = (t % CV) * VEC, p = t / CV;
        const int ow = p % OW, q = p / OW, oh = q % OH, n = q / OH;
        const int ih0 = oh * sh - pt, iw0 = ow * sw - pl;
        const float* xn = x + n * H * W * C + c;
        KnVec<VEC> acc, v;
        acc.fill(IS_MAX ? __int_as_float(0xff800000) : 0.0f);   // -inf
        int count = 0;
        for (int i = 0; i < ph; ++i) {
            const int ih = ih0 + i;
            if (ih < 0 || ih >= H) continue;
            for (int j = 0; j < pw; ++j) {
                const int iw = iw0 + j;
                if (iw < 0 || iw >= W) continue;
                v.load(xn + (ih * W + iw) * C);
                if (IS_MAX) acc.max_with(v); else acc.add(v);
                ++count;
            }
        }
        if (!IS_MAX) acc.scale(1.0f / (float)(count_include_pad ? ph * pw : count));
        acc.store(out + p * out_stride + out_c0 + c);
    }
}

#define KN_GP_CX 8                                  // channel vectors per block (threadIdx.x)
#define KN_GP_HY 32                                 // H*W strides per block (threadIdx.y)

template <bool IS_MAX, int VEC>
__global__ void __launch_bounds__(KN_GP_CX * KN_GP_HY)
global_pool(const float* __restrict__ x, float* __restrict__ out, int batch, int HW, int C)
{
    __shared__ KnVec<VEC> part[KN_GP_HY][KN_GP_CX];
    const int CV = C / VEC, groups = (CV + KN_GP_CX - 1) / KN_GP_CX;
    const int n = blockIdx.x / groups, cv = (blockIdx.x - n * groups) * KN_GP_CX + threadIdx.x;
    KnVec<VEC> acc, v;
    acc.fill(IS_MAX ? __int_as_float(0xff800000) : 0.0f);   // -inf
    if (cv < CV) {
        const float* xn = x + n * HW * C + cv * VEC;
        for (int i = threadIdx.y; i < HW; i += KN_GP_HY) {
            v.load(xn + i * C);
            if (IS_MAX) acc.max_with(v); else acc.add(v);
        }
    }
    part[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && cv < CV) {
        for (int i = 1; i < KN_GP_HY; ++i) {
            if (IS_MAX) acc.max_with(part[i][threadIdx.x]); else acc.add(part[i][threadIdx.x]);
        }
        if (!IS_MAX) acc.scale(1.0f / (float)HW);
        acc.store(out + n * C + cv * VEC);
    }
}
