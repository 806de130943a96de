// emulate.h - runs this package's CUDA C kernels on the CPU, for checking their logic where no GPU
// is present (tests/test_cuda_compile.py). Not a CUDA implementation: blocks run one after another,
// the threads of a block are real std::threads meeting at a std::barrier for __syncthreads, and
// __shared__ arrays are function statics (shared by the block's threads; safe because only one block
// runs at a time). Warp shuffles are not emulated (softmax_rows is checked on a GPU only).
#pragma once
#include <barrier>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
struct alignas(16) float4 { float x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
inline float __int_as_float(unsigned v) { float f; std::memcpy(&f, &v, 4); return f; }
inline int min(int a, int b) { return a < b ? a : b; }
template <class T> inline T __ldg(const T* p) { return *p; }
inline float __shfl_xor_sync(unsigned, float, int) { std::abort(); }

thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
std::barrier<>* kn_emu_barrier = nullptr;
inline void __syncthreads() { kn_emu_barrier->arrive_and_wait(); }

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

template <class... A, std::size_t... I>
void kn_emu_invoke(void (*k)(A...), void** args, std::index_sequence<I...>) {
    k(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}

template <class... A>
void kn_emu_run(void (*k)(A...), const unsigned* g, const unsigned* b, void** args) {
    gridDim = dim3{g[0], g[1], g[2]};
    blockDim = dim3{b[0], b[1], b[2]};
    const unsigned nthreads = b[0] * b[1] * b[2];
    for (unsigned bz = 0; bz < g[2]; ++bz)
        for (unsigned by = 0; by < g[1]; ++by)
            for (unsigned bx = 0; bx < g[0]; ++bx) {
                std::barrier<> bar(nthreads);
                kn_emu_barrier = &bar;
                std::vector<std::thread> pool;
                for (unsigned t = 0; t < nthreads; ++t)
                    pool.emplace_back([&, t] {
                        blockIdx = dim3{bx, by, bz};
                        threadIdx = dim3{t % b[0], (t / b[0]) % b[1], t / (b[0] * b[1])};
                        kn_emu_invoke(k, args, std::index_sequence_for<A...>{});
                        bar.arrive_and_drop();
                    });
                for (auto& th : pool) th.join();
            }
}
