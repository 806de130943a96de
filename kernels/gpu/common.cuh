// common.cuh - helpers every kernel family shares: the fused activation, cp.async copies and the
// TF32 tensor-core instruction. Each .cu includes it; the guard lets the host emulator (emulate.py)
// build all families into one translation unit. Under KN_EMULATE (set by emulate.h) the
// asynchronous copies and the warp-wide MMA come from emulate.h instead of inline PTX.
#ifndef KN_COMMON_CUH
#define KN_COMMON_CUH

// The activation codes are kernels.ACT_CODES, passed as -D options (kernels/gpu/runtime.py OPTIONS)
#if !defined(KN_ACT_NONE) || !defined(KN_ACT_RELU) || !defined(KN_ACT_RELU6)
#error "compile with kernels.gpu.runtime.OPTIONS: the KN_ACT_* codes come from kernels.ACT_CODES"
#endif

__device__ __forceinline__ float kn_act(float v, int act) {
    if (act == KN_ACT_RELU) return fmaxf(v, 0.0f);
    if (act == KN_ACT_RELU6) return fminf(fmaxf(v, 0.0f), 6.0f);
    if (act == KN_ACT_SIGMOID) return 1.0f / (1.0f + expf(-v));
    if (act == KN_ACT_SILU) return v / (1.0f + expf(-v));
    if (act == KN_ACT_HARD_SIGMOID) return fminf(fmaxf(v * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f);
    if (act == KN_ACT_HARD_SILU) return v * fminf(fmaxf(v * (1.0f / 6.0f) + 0.5f, 0.0f), 1.0f);
    if (act == KN_ACT_GELU) return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    if (act == KN_ACT_GELU_TANH) return 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v)));
    if (act == KN_ACT_TANH) return tanhf(v);
    return v;
}

__device__ __forceinline__ float4 kn_act4(float4 v, int act) {
    return make_float4(kn_act(v.x, act), kn_act(v.y, act), kn_act(v.z, act), kn_act(v.w, act));
}

// The fused GEMM epilogue of conv and dense (conv.cu's tiles, gemm.cu's split-K reduce): for the V
// accumulators v of row m, columns n .. n + V - 1,
//     out[m, out_c0 + n + e] = act(v[e] + bias[n + e] + res[m, n + e])      (n + e < cout only)
// out rows are out_stride wide, res rows cout wide, bias padded to a multiple of 4.
// VEC: one float4 (V 4) / float2 (V 2) load and store per operand; the host guarantees cout,
// out_stride and out_c0 multiples of 4, 16-byte aligned buffers, and n a multiple of V.
template <int V, bool VEC>
__device__ __forceinline__ void kn_epilogue(float* __restrict__ out, const float* __restrict__ res,
                                            const float* __restrict__ bias, const float* v, int m, int n,
                                            int cout, int out_stride, int out_c0, int has_res, int act) {
    static_assert(V == 2 || V == 4, "V is 2 or 4");
    float* o = out + m * out_stride + out_c0 + n;
    const float* r = res + m * cout + n;
    if (VEC) {
        if (n >= cout) return;
        if (V == 4) {
            const float4 b = __ldg(reinterpret_cast<const float4*>(bias + n));
            float4 s = make_float4(v[0] + b.x, v[1] + b.y, v[2] + b.z, v[3] + b.w);
            if (has_res) {
                const float4 q = __ldg(reinterpret_cast<const float4*>(r));
                s.x += q.x; s.y += q.y; s.z += q.z; s.w += q.w;
            }
            *reinterpret_cast<float4*>(o) = kn_act4(s, act);
        } else {
            const float2 b = __ldg(reinterpret_cast<const float2*>(bias + n));
            float2 s = make_float2(v[0] + b.x, v[1] + b.y);
            if (has_res) {
                const float2 q = __ldg(reinterpret_cast<const float2*>(r));
                s.x += q.x; s.y += q.y;
            }
            *reinterpret_cast<float2*>(o) = make_float2(kn_act(s.x, act), kn_act(s.y, act));
        }
    } else {
#pragma unroll
        for (int e = 0; e < V; ++e) {
            if (n + e < cout) {
                float s = v[e] + __ldg(bias + n + e);
                if (has_res) s += __ldg(r + e);
                o[e] = kn_act(s, act);
            }
        }
    }
}

#ifndef KN_EMULATE
// cp.async (sm_80+): global -> shared memory without a trip through registers, so several K slices
// can be in flight per thread. valid = false copies nothing and zero-fills the destination (the
// source pointer must still be a valid address; callers pass the tensor's base).
__device__ __forceinline__ void kn_cp_async4(float* smem, const float* gmem, bool valid) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" :: "r"(s), "l"(gmem), "r"(valid ? 4 : 0) : "memory");
}

__device__ __forceinline__ void kn_cp_async16(float* smem, const float* gmem, bool valid) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" :: "r"(s), "l"(gmem), "r"(valid ? 16 : 0) : "memory");
}

__device__ __forceinline__ void kn_cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
__device__ __forceinline__ void kn_cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" :: "n"(N) : "memory"); }

// fp32 -> TF32 (10-bit mantissa), round to nearest with ties away from zero; low 13 bits zero.
__device__ __forceinline__ unsigned kn_tf32(float v) {
    unsigned r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(v));
    return r;
}

// d += A (16x8, row) * B (8x8, col) on the tensor cores, TF32 inputs and fp32 accumulation. With
// g = lane / 4 and t = lane % 4 a lane holds A (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4),
// B (k = t, n = g), (k = t + 4, n = g) and D (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
__device__ __forceinline__ void kn_mma_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
#endif  // KN_EMULATE

#endif  // KN_COMMON_CUH
