// emulate.h - runs this package's CUDA C kernels on the CPU, for checking their logic where no GPU
// is present (kernels/gpu/emulate.py, tests/test_gpu_kernels.py). Not a CUDA implementation:
//   * every CUDA thread of a launch is a std::thread; the threads run the blocks one after another,
//     meeting at a std::barrier for __syncthreads (a thread that has returned counts as arrived, as on
//     the GPU) and at a per-warp barrier for warp-wide operations;
//   * __shared__ arrays are function statics, shared by the block's threads (one block at a time);
//   * cp.async copies are deferred until the cp.async.wait_group that covers them, and their
//     destination reads NaN until then, so a missing wait or barrier corrupts results instead of
//     passing silently;
//   * __shfl_xor_sync and mma.sync (m16n8k8 TF32) exchange values through per-warp scratch: the TF32
//     inputs keep their top 19 bits (the hardware ignores the low 13), products are summed in fp32.
// Races, coalescing and timing are not exercised: a logic check only.
#pragma once
#define KN_EMULATE 1
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
inline float2 make_float2(float a, float b) { return float2{a, b}; }
inline float __int_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
inline unsigned __float_as_uint(float f) { unsigned v; std::memcpy(&v, &f, 4); return v; }
inline int min(int a, int b) { return a < b ? a : b; }
template <class T> inline T __ldg(const T* p) { return *p; }

thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

// ---------------------------------------------------------------- the block being run
struct KnEmuWarp {
    std::unique_ptr<std::barrier<>> bar;
    float a[16][8], b[8][8], xch[32];
};
std::unique_ptr<std::barrier<>> kn_emu_block_bar;
std::vector<KnEmuWarp> kn_emu_warps;

inline unsigned kn_emu_linear() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
inline void __syncthreads() { kn_emu_block_bar->arrive_and_wait(); }
inline KnEmuWarp& kn_emu_warp() { return kn_emu_warps[kn_emu_linear() / 32]; }
inline void kn_emu_warp_sync() { kn_emu_warp().bar->arrive_and_wait(); }

inline float __shfl_xor_sync(unsigned, float v, int mask) {
    KnEmuWarp& w = kn_emu_warp();
    const unsigned lane = kn_emu_linear() % 32;
    w.xch[lane] = v;
    kn_emu_warp_sync();
    const float r = w.xch[lane ^ static_cast<unsigned>(mask)];
    kn_emu_warp_sync();                             // nobody overwrites xch before all have read
    return r;
}

// ---------------------------------------------------------------- cp.async
struct KnEmuCopy { void* dst; const void* src; int bytes; bool valid; };
thread_local std::vector<KnEmuCopy> kn_emu_open;                 // issued, not yet committed
thread_local std::deque<std::vector<KnEmuCopy>> kn_emu_groups;   // committed, not yet waited for

inline void kn_emu_issue(float* dst, const float* src, int bytes, bool valid) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    for (int i = 0; i < bytes / 4; ++i) dst[i] = nan;
    kn_emu_open.push_back(KnEmuCopy{dst, src, bytes, valid});
}
inline void kn_cp_async4(float* smem, const float* gmem, bool valid) { kn_emu_issue(smem, gmem, 4, valid); }
inline void kn_cp_async16(float* smem, const float* gmem, bool valid) { kn_emu_issue(smem, gmem, 16, valid); }
inline void kn_cp_async_commit() {
    kn_emu_groups.push_back(std::move(kn_emu_open));
    kn_emu_open.clear();
}
template <int N>
inline void kn_cp_async_wait() {
    while (kn_emu_groups.size() > static_cast<std::size_t>(N)) {
        for (const KnEmuCopy& c : kn_emu_groups.front()) {
            if (c.valid) std::memcpy(c.dst, c.src, c.bytes);
            else std::memset(c.dst, 0, c.bytes);
        }
        kn_emu_groups.pop_front();
    }
}

// ---------------------------------------------------------------- TF32 tensor cores
inline unsigned kn_tf32(float v) {                  // cvt.rna.tf32.f32
    unsigned u = __float_as_uint(v);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
    return u;
}
inline float kn_emu_tf32_operand(unsigned u) { return __int_as_float(u & 0xffffe000u); }

inline void kn_mma_tf32(float (&d)[4], const unsigned (&a)[4], const unsigned (&b)[2]) {
    KnEmuWarp& w = kn_emu_warp();
    const int lane = static_cast<int>(kn_emu_linear() % 32), g = lane / 4, t = lane % 4;
    w.a[g][t] = kn_emu_tf32_operand(a[0]);
    w.a[g + 8][t] = kn_emu_tf32_operand(a[1]);
    w.a[g][t + 4] = kn_emu_tf32_operand(a[2]);
    w.a[g + 8][t + 4] = kn_emu_tf32_operand(a[3]);
    w.b[t][g] = kn_emu_tf32_operand(b[0]);
    w.b[t + 4][g] = kn_emu_tf32_operand(b[1]);
    kn_emu_warp_sync();
    const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    float r[4];
    for (int e = 0; e < 4; ++e) {
        float acc = d[e];
        for (int k = 0; k < 8; ++k) acc = std::fma(w.a[rows[e]][k], w.b[k][cols[e]], acc);
        r[e] = acc;
    }
    kn_emu_warp_sync();
    for (int e = 0; e < 4; ++e) d[e] = r[e];
}

// ---------------------------------------------------------------- launch
template <class... A, std::size_t... I>
void kn_emu_invoke(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}

inline void kn_emu_new_block(unsigned nthreads) {
    kn_emu_block_bar = std::make_unique<std::barrier<>>(nthreads);
    kn_emu_warps = std::vector<KnEmuWarp>((nthreads + 31) / 32);
    for (unsigned w = 0; w < kn_emu_warps.size(); ++w)
        kn_emu_warps[w].bar = std::make_unique<std::barrier<>>(std::min(32u, nthreads - 32 * w));
}

template <class... A>
void kn_emu_run(void (*k)(A...), const unsigned* g, const unsigned* b, void** args) {
    gridDim = dim3{g[0], g[1], g[2]};
    blockDim = dim3{b[0], b[1], b[2]};
    const unsigned nthreads = b[0] * b[1] * b[2], nblocks = g[0] * g[1] * g[2];
    kn_emu_new_block(nthreads);
    auto next_block = [nthreads]() noexcept { kn_emu_new_block(nthreads); };
    std::barrier<decltype(next_block)> between(nthreads, next_block);
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < nthreads; ++t)
        pool.emplace_back([&, t] {
            threadIdx = dim3{t % b[0], (t / b[0]) % b[1], t / (b[0] * b[1])};
            for (unsigned i = 0; i < nblocks; ++i) {
                blockIdx = dim3{i % g[0], (i / g[0]) % g[1], i / (g[0] * g[1])};
                kn_emu_invoke(k, args, std::index_sequence_for<A...>{});
                kn_emu_open.clear();                // copies still in flight die with the block
                kn_emu_groups.clear();
                kn_emu_block_bar->arrive_and_drop();
                kn_emu_warp().bar->arrive_and_drop();
                between.arrive_and_wait();          // the last to arrive sets up the next block
            }
        });
    for (auto& th : pool) th.join();
}
