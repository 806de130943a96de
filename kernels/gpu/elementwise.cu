// elementwise.cu - float32 elementwise kernels: add, activation, channel affine, channel-slice copy,
// zero padding and row softmax.
//
// VEC 4 variants move float4s (sizes and offsets multiples of 4, 16-byte aligned buffers); VEC 1
// variants take any size. All are grid-stride loops and memory-bound: bytes moved = inputs read once
// plus the output written once (add: 12 bytes per element).
// softmax_rows: one block of 256 threads per row; max and sum reduced in shared memory; expf is the
// accurate (not fast-math) exponential. 32-bit indices.

#include "common.cuh"

// out = act(a + b); has_b 0: out = act(a) (standalone activation). count in units of VEC floats.
template <int VEC>
__global__ void add_act(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ out,
                        int count, int has_b, int act)
{
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < count; t += gridDim.x * blockDim.x) {
        if (VEC == 4) {
            float4 v = __ldg(reinterpret_cast<const float4*>(a) + t);
            if (has_b) {
                const float4 u = __ldg(reinterpret_cast<const float4*>(b) + t);
                v.x += u.x; v.y += u.y; v.z += u.z; v.w += u.w;
            }
            reinterpret_cast<float4*>(out)[t] = kn_act4(v, act);
        } else {
            float v = __ldg(a + t);
            if (has_b) v += __ldg(b + t);
            out[t] = kn_act(v, act);
        }
    }
}

// out = act(a OP b), OP 0 add, 1 mul. per_channel 0: b has a's shape; 1: b is (N, C), one value per sample
// and channel broadcast over the pixels of a (sample_size = floats per sample of a). count in units of
// VEC floats (VEC 4: C a multiple of 4 when per_channel).
template <int VEC, int OP>
__global__ void binary_act(const float* __restrict__ a, const float* __restrict__ b, float* __restrict__ out,
                           int count, int per_channel, int C, int sample_size, int act)
{
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < count; t += gridDim.x * blockDim.x) {
        const int e = t * VEC;
        const int j = per_channel ? (e / sample_size) * C + e % C : e;
        if (VEC == 4) {
            float4 v = __ldg(reinterpret_cast<const float4*>(a) + t);
            const float4 u = __ldg(reinterpret_cast<const float4*>(b + j));
            if (OP == 1) { v.x *= u.x; v.y *= u.y; v.z *= u.z; v.w *= u.w; }
            else { v.x += u.x; v.y += u.y; v.z += u.z; v.w += u.w; }
            reinterpret_cast<float4*>(out)[t] = kn_act4(v, act);
        } else {
            const float v = __ldg(a + t), u = __ldg(b + j);
            out[t] = kn_act(OP == 1 ? v * u : v + u, act);
        }
    }
}

// out[r, c] = act(x[r, c] * scale[c] + shift[c]) over rows x C
template <int VEC>
__global__ void channel_affine(const float* __restrict__ x, const float* __restrict__ scale,
                               const float* __restrict__ shift, float* __restrict__ out, int rows, int C, int act)
{
    const int CV = C / VEC, total = rows * CV;
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < total; t += gridDim.x * blockDim.x) {
        const int c = (t % CV) * VEC;
        if (VEC == 4) {
            const float4 v = __ldg(reinterpret_cast<const float4*>(x) + t);
            const float4 s = __ldg(reinterpret_cast<const float4*>(scale + c));
            const float4 h = __ldg(reinterpret_cast<const float4*>(shift + c));
            reinterpret_cast<float4*>(out)[t] = kn_act4(
                make_float4(fmaf(v.x, s.x, h.x), fmaf(v.y, s.y, h.y), fmaf(v.z, s.z, h.z), fmaf(v.w, s.w, h.w)), act);
        } else {
            out[t] = kn_act(fmaf(__ldg(x + t), __ldg(scale + c), __ldg(shift + c)), act);
        }
    }
}

// dst[r, c0 + c] = src[r, c] for rows x C, dst rows dst_stride wide (concat into a channel slice)
template <int VEC>
__global__ void copy_channels(const float* __restrict__ src, float* __restrict__ dst,
                              int rows, int C, int dst_stride, int c0)
{
    const int CV = C / VEC, total = rows * CV;
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < total; t += gridDim.x * blockDim.x) {
        const int r = t / CV, c = (t - r * CV) * VEC;
        if (VEC == 4)
            *reinterpret_cast<float4*>(dst + r * dst_stride + c0 + c) = __ldg(reinterpret_cast<const float4*>(src) + t);
        else
            dst[r * dst_stride + c0 + c] = __ldg(src + t);
    }
}

// out (batch, OH, OW, C) = x (batch, H, W, C) placed at (pt, pl), zeros around it
template <int VEC>
__global__ void zero_pad_nhwc(const float* __restrict__ x, float* __restrict__ out,
                              int batch, int H, int W, int C, int OH, int OW, int pt, int pl)
{
    const int CV = C / VEC, total = batch * OH * OW * CV;
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < total; t += gridDim.x * blockDim.x) {
        const int c = (t % CV) * VEC, p = t / CV;
        const int ow = p % OW, q = p / OW, oh = q % OH, n = q / OH;
        const int ih = oh - pt, iw = ow - pl;
        const bool inside = ih >= 0 && ih < H && iw >= 0 && iw < W;
        const int src = ((n * H + ih) * W + iw) * C + c;
        if (VEC == 4) {
            const float4 v = inside ? __ldg(reinterpret_cast<const float4*>(x + src)) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            *reinterpret_cast<float4*>(out + p * C + c) = v;
        } else {
            out[p * C + c] = inside ? __ldg(x + src) : 0.0f;
        }
    }
}

#define KN_SOFTMAX_THREADS 256

__device__ __forceinline__ float kn_block_reduce(float v, bool is_max, float* scratch) {
    for (int o = 16; o > 0; o >>= 1) {
        const float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, u) : v + u;
    }
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads();                               // scratch may still be read from a previous reduce
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = scratch[0];
    for (int i = 1; i < KN_SOFTMAX_THREADS / 32; ++i) v = is_max ? fmaxf(v, scratch[i]) : v + scratch[i];
    return v;
}

// one block per row of length n: out = exp(x - max) / sum(exp(x - max))
__global__ void __launch_bounds__(KN_SOFTMAX_THREADS)
softmax_rows(const float* __restrict__ x, float* __restrict__ out, int n)
{
    __shared__ float scratch[KN_SOFTMAX_THREADS / 32];
    const float* xr = x + blockIdx.x * n;
    float* orow = out + blockIdx.x * n;
    float m = __int_as_float(0xff800000);
    for (int i = threadIdx.x; i < n; i += KN_SOFTMAX_THREADS) m = fmaxf(m, xr[i]);
    m = kn_block_reduce(m, true, scratch);
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += KN_SOFTMAX_THREADS) s += expf(xr[i] - m);
    s = kn_block_reduce(s, false, scratch);
    const float inv = 1.0f / s;
    for (int i = threadIdx.x; i < n; i += KN_SOFTMAX_THREADS) orow[i] = expf(xr[i] - m) * inv;
}
