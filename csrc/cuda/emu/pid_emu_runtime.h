// CPU emulation of the few CUDA primitives pid_cuda_kernel.cuh uses (see pid_cuda_prims.cuh).
//
// One std::thread per CUDA thread of a block; __syncthreads is a std::barrier over the block, warp
// shuffles exchange through a per-warp buffer between two warp-wide barriers, atomicAdd is
// std::atomic_ref. Blocks run one after another. The kernel's data races (a missing barrier between
// a scatter and a gather, two threads writing the same per-sample slot) are then ordinary C++ data
// races, which ThreadSanitizer reports; wrong indexing is caught by comparing with the reference.
// Not part of the Python extension: the tests compile it with the host C++ compiler (C++20).
#pragma once

#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace infomorph {
namespace cudak {
namespace emu {

struct BlockContext {
    int nthreads = 0;
    int64_t block = 0, grid = 0;
    std::unique_ptr<std::barrier<>> block_barrier;
    std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
    std::vector<uint64_t> exchange;  // one slot per thread for shuffles
};

inline thread_local BlockContext* t_ctx = nullptr;
inline thread_local int t_tid = 0;

[[noreturn]] inline void fail(const char* what) {
    std::fprintf(stderr, "pid emulator: %s\n", what);
    std::abort();
}

inline void check_aligned(const void* p, size_t align, const char* what) {
    if (reinterpret_cast<uintptr_t>(p) % align != 0) fail(what);
}

inline int thread_id() { return t_tid; }
inline int block_threads() { return t_ctx->nthreads; }
inline int64_t block_id() { return t_ctx->block; }
inline int64_t grid_blocks() { return t_ctx->grid; }
inline void block_sync() { t_ctx->block_barrier->arrive_and_wait(); }

template <typename T>
inline T shfl_xor(T v, int lane_mask) {
    static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of at most 8 bytes");
    BlockContext& c = *t_ctx;
    const int warp = t_tid >> 5, lane = t_tid & 31;
    uint64_t slot = 0;
    std::memcpy(&slot, &v, sizeof(T));
    c.exchange[size_t(t_tid)] = slot;
    c.warp_barriers[size_t(warp)]->arrive_and_wait();
    slot = c.exchange[size_t(warp * 32 + (lane ^ lane_mask))];
    c.warp_barriers[size_t(warp)]->arrive_and_wait();  // the slot is free again
    T out;
    std::memcpy(&out, &slot, sizeof(T));
    return out;
}

template <typename T>
inline void atomic_add(T* p, T v) {
    std::atomic_ref<T>(*p).fetch_add(v, std::memory_order_relaxed);
}

}  // namespace emu
}  // namespace cudak
}  // namespace infomorph
