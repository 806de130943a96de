// depthwise.cu - NHWC float32 depthwise convolution, bias and activation fused.
//
// Weights are packed as [kh * kw, C * mult]: output channel o = c * mult + m reads input channel c
// (Keras/TF order), so a tap's weights for consecutive output channels are contiguous.
// out[p, out_c0 + o] = act(bias[o] + sum_ij x[n, oh*sh - pt + i, ow*sw - pl + j, o / mult] * w[i*kw + j, o])
//
// depthwise_vec<KH, KW, VOUT>    mult == 1, C % 4 == 0: one thread = one output pixel x 4 channels,
//                                float4 loads of x and w, taps unrolled when KH, KW > 0 (0 = run-time size).
// depthwise_scalar<KH, KW>       any C and multiplier: one thread = one output element.
// Bounds: kh*kw FMAs per 2 loads (x from L1/L2, reused by neighbouring pixels); memory-bound on
// an H100 (roughly 2 * 4 bytes * kh*kw per output from cache, 8 bytes from DRAM). 32-bit indices
// (the host refuses tensors over kernels.gpu.runtime.INDEX_LIMIT).

#include "common.cuh"

template <int KH, int KW, bool VOUT>
__global__ void depthwise_vec(const float* __restrict__ x, const float* __restrict__ w,
                              const float* __restrict__ bias, float* __restrict__ out,
                              int batch, int H, int W, int C, int OH, int OW, int kh_rt, int kw_rt,
                              int sh, int sw, int pt, int pl, int out_stride, int out_c0, int act)
{
    const int kh = KH > 0 ? KH : kh_rt, kw = KW > 0 ? KW : kw_rt;
    const int CQ = C / 4;
    const int total = batch * OH * OW * CQ;
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < total; t += gridDim.x * blockDim.x) {
        const int cq = t % CQ, p = t / CQ;
        const int ow = p % OW, q = p / OW, oh = q % OH, n = q / OH;
        const int c = cq * 4;
        float4 acc = __ldg(reinterpret_cast<const float4*>(bias + c));
        const int ih0 = oh * sh - pt, iw0 = ow * sw - pl;
        const float* xn = x + n * H * W * C + c;
        // kh, kw are compile-time constants when KH, KW > 0, so these loops unroll fully
#pragma unroll
        for (int i = 0; i < kh; ++i) {
            const int ih = ih0 + i;
            if (ih < 0 || ih >= H) continue;
#pragma unroll
            for (int j = 0; j < kw; ++j) {
                const int iw = iw0 + j;
                if (iw < 0 || iw >= W) continue;
                const float4 xv = __ldg(reinterpret_cast<const float4*>(xn + (ih * W + iw) * C));
                const float4 wv = __ldg(reinterpret_cast<const float4*>(w + (i * kw + j) * C + c));
                acc.x = fmaf(xv.x, wv.x, acc.x);
                acc.y = fmaf(xv.y, wv.y, acc.y);
                acc.z = fmaf(xv.z, wv.z, acc.z);
                acc.w = fmaf(xv.w, wv.w, acc.w);
            }
        }
        acc = kn_act4(acc, act);
        float* o = out + p * out_stride + out_c0 + c;
        if (VOUT) {
            *reinterpret_cast<float4*>(o) = acc;
        } else {
            o[0] = acc.x; o[1] = acc.y; o[2] = acc.z; o[3] = acc.w;
        }
    }
}

template <int KH, int KW>
__global__ void depthwise_scalar(const float* __restrict__ x, const float* __restrict__ w,
                                 const float* __restrict__ bias, float* __restrict__ out,
                                 int batch, int H, int W, int C, int mult, int OH, int OW, int kh_rt, int kw_rt,
                                 int sh, int sw, int pt, int pl, int out_stride, int out_c0, int act)
{
    const int kh = KH > 0 ? KH : kh_rt, kw = KW > 0 ? KW : kw_rt;
    const int CO = C * mult;
    const int total = batch * OH * OW * CO;
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < total; t += gridDim.x * blockDim.x) {
        const int o = t % CO, p = t / CO;
        const int ow = p % OW, q = p / OW, oh = q % OH, n = q / OH;
        const int c = o / mult;
        float acc = __ldg(bias + o);
        const int ih0 = oh * sh - pt, iw0 = ow * sw - pl;
        for (int i = 0; i < kh; ++i) {
            const int ih = ih0 + i;
            if (ih < 0 || ih >= H) continue;
            for (int j = 0; j < kw; ++j) {
                const int iw = iw0 + j;
                if (iw < 0 || iw >= W) continue;
                acc = fmaf(__ldg(x + ((n * H + ih) * W + iw) * C + c), __ldg(w + (i * kw + j) * CO + o), acc);
            }
        }
        out[p * out_stride + out_c0 + o] = kn_act(acc, act);
    }
}
