// The handful of CUDA primitives the fused kernel uses, behind one small interface.
//
// pid_cuda_kernel.cuh is written against these functions only (never against threadIdx,
// __syncthreads, __shfl_xor_sync or atomicAdd directly), so the same kernel source also compiles
// as plain C++ for the CPU emulator in emu/ (PID_CUDA_EMULATE: one std::thread per CUDA thread,
// std::barrier for __syncthreads). The emulator lets the tests check the kernel's math, indexing
// and barrier placement on machines without a GPU (ThreadSanitizer finds missing barriers).
#pragma once

#include <cstdint>
#include <type_traits>

#ifdef PID_CUDA_EMULATE
#include "emu/pid_emu_runtime.h"
#else
#include <cuda_runtime.h>
#endif

namespace infomorph {
namespace cudak {

#ifndef PID_CUDA_EMULATE

#define PID_DEVICE __device__ __forceinline__

PID_DEVICE int thread_id() { return int(threadIdx.x); }
PID_DEVICE int block_threads() { return int(blockDim.x); }
PID_DEVICE int64_t block_id() { return int64_t(blockIdx.x); }
PID_DEVICE int64_t grid_blocks() { return int64_t(gridDim.x); }
PID_DEVICE void block_sync() { __syncthreads(); }

template <typename T>
PID_DEVICE T shfl_xor(T v, int lane_mask) {
    return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}

// read-only inputs (x, theta, edges, clamps): the non-coherent read-only path
template <typename T>
PID_DEVICE T load_ro(const T* p) {
    return __ldg(p);
}

PID_DEVICE float log2_(float v) { return log2f(v); }  // full accuracy (no fast-math): <= 1 ulp
PID_DEVICE double log2_(double v) { return log2(v); }

template <typename T>
struct Vec2;
template <>
struct Vec2<float> {
    using type = float2;
};
template <>
struct Vec2<double> {
    using type = double2;
};

// Tables: in shared memory (kShared) or in a global workspace. Global tables are read with .cg
// (L2 only): they are written by atomics of other threads of the block, which land in L2, and a
// stale L1 line must never be read.
template <bool kShared, typename T>
PID_DEVICE T tab_load(const T* p) {
    if constexpr (kShared)
        return *p;
    else
        return __ldcg(p);
}

// the (fire, silent) pair of a cell: one 8-byte (float) / 16-byte (double) load
template <bool kShared, typename T>
PID_DEVICE void tab_load_pair(const T* p, T& fire, T& silent) {
    using V = typename Vec2<T>::type;
    V v;
    if constexpr (kShared)
        v = *reinterpret_cast<const V*>(p);
    else
        v = __ldcg(reinterpret_cast<const V*>(p));
    fire = v.x;
    silent = v.y;
}

template <bool kShared, typename T>
PID_DEVICE void tab_zero_pair(T* p) {
    using V = typename Vec2<T>::type;
    V z;
    z.x = T(0);
    z.y = T(0);
    *reinterpret_cast<V*>(p) = z;
}

template <bool kShared, typename T>
PID_DEVICE void tab_zero(T* p) {
    *p = T(0);
}

// shared- or global-memory float/double atomic add (native on sm_60+; result unused -> RED)
template <typename T>
PID_DEVICE void atomic_add(T* p, T v) {
    atomicAdd(p, v);
}

// 64-bit compare-and-swap and bit casts for atomic_add_pair (below, shared with the emulator)
PID_DEVICE unsigned long long cas_u64(unsigned long long* q, unsigned long long expected, unsigned long long desired) {
    return atomicCAS(q, expected, desired);
}
PID_DEVICE unsigned long long peek_u64(const unsigned long long* q) { return *q; }  // any value: the CAS checks it
PID_DEVICE float float_of_bits(unsigned u) { return __uint_as_float(u); }
PID_DEVICE unsigned bits_of_float(float f) { return __float_as_uint(f); }
template <typename T>
PID_DEVICE void atomic_add_split(T* pair, T a, T b) {
    atomic_add(pair, a);
    atomic_add(pair + 1, b);
}

// row of kW coefficients from shared memory (16-byte aligned, kW a multiple of 16 / sizeof(T)):
// every thread reads the same row, so these are broadcasts
template <int kW>
PID_DEVICE void load_row(const float* row, float (&c)[kW]) {
    static_assert(kW % 4 == 0, "row width must be a multiple of 4 floats");
#pragma unroll
    for (int q = 0; q < kW / 4; ++q) {
        const float4 v = reinterpret_cast<const float4*>(row)[q];
        c[4 * q + 0] = v.x;
        c[4 * q + 1] = v.y;
        c[4 * q + 2] = v.z;
        c[4 * q + 3] = v.w;
    }
}
template <int kW>
PID_DEVICE void load_row(const double* row, double (&c)[kW]) {
    static_assert(kW % 2 == 0, "row width must be a multiple of 2 doubles");
#pragma unroll
    for (int q = 0; q < kW / 2; ++q) {
        const double2 v = reinterpret_cast<const double2*>(row)[q];
        c[2 * q + 0] = v.x;
        c[2 * q + 1] = v.y;
    }
}

// zero `count` values (a multiple of 16 / sizeof(T)) at a 16-byte aligned shared address
template <typename T>
PID_DEVICE void zero_shared(T* p, int64_t count, int tid, int nthreads) {
    float4* q = reinterpret_cast<float4*>(p);
    const int64_t n16 = count * int64_t(sizeof(T)) / 16;
    const float4 z = make_float4(0.f, 0.f, 0.f, 0.f);
    for (int64_t k = tid; k < n16; k += nthreads) q[k] = z;
}

#else  // PID_CUDA_EMULATE: see emu/pid_emu_runtime.h

#define PID_DEVICE inline

using emu::atomic_add;
using emu::block_id;
using emu::block_sync;
using emu::block_threads;
using emu::grid_blocks;
using emu::shfl_xor;
using emu::thread_id;

template <typename T>
inline T load_ro(const T* p) {
    return *p;
}
inline float log2_(float v) { return std::log2(v); }
inline double log2_(double v) { return std::log2(v); }

template <bool kShared, typename T>
inline T tab_load(const T* p) {
    return *p;
}
inline unsigned long long cas_u64(unsigned long long* q, unsigned long long expected, unsigned long long desired) {
    emu::check_aligned(q, 8, "64-bit compare-and-swap");
    std::atomic_ref<unsigned long long>(*q).compare_exchange_strong(expected, desired, std::memory_order_relaxed);
    return expected;  // the value found: equal to the argument exactly when the swap happened
}
inline unsigned long long peek_u64(const unsigned long long* q) {
    return std::atomic_ref<unsigned long long>(*const_cast<unsigned long long*>(q)).load(std::memory_order_relaxed);
}
inline float float_of_bits(unsigned u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}
inline unsigned bits_of_float(float f) {
    unsigned u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}
template <typename T>
inline void atomic_add_split(T* pair, T a, T b) {
    emu::check_aligned(pair, 2 * sizeof(T), "table pair atomic");
    emu::atomic_add(pair, a);
    emu::atomic_add(pair + 1, b);
}
template <bool kShared, typename T>
inline void tab_load_pair(const T* p, T& fire, T& silent) {
    emu::check_aligned(p, 2 * sizeof(T), "table pair load");
    fire = p[0];
    silent = p[1];
}
// Global tables are zeroed cell by cell by every sample that touches the cell, so several threads
// may store the same 0 to one address in the same phase: harmless on the GPU (every store writes
// the same value), modelled here as relaxed atomic stores so that ThreadSanitizer accepts it.
template <bool kShared, typename T>
inline void tab_zero_pair(T* p) {
    emu::check_aligned(p, 2 * sizeof(T), "table pair store");
    std::atomic_ref<T>(p[0]).store(T(0), std::memory_order_relaxed);
    std::atomic_ref<T>(p[1]).store(T(0), std::memory_order_relaxed);
}
template <bool kShared, typename T>
inline void tab_zero(T* p) {
    std::atomic_ref<T>(*p).store(T(0), std::memory_order_relaxed);
}
template <int kW, typename T>
inline void load_row(const T* row, T (&c)[kW]) {
    emu::check_aligned(row, 16, "coefficient row load");
    for (int q = 0; q < kW; ++q) c[q] = row[q];
}
template <typename T>
inline void zero_shared(T* p, int64_t count, int tid, int nthreads) {
    emu::check_aligned(p, 16, "shared zero fill");
    if ((count * int64_t(sizeof(T))) % 16 != 0) emu::fail("zero_shared: count is not a multiple of 16 bytes");
    for (int64_t k = tid; k < count; k += nthreads) p[k] = T(0);
}

#endif

// pair[0] += a, pair[1] += b: the (fire, silent) values of one table cell, 8/16-byte aligned.
// Shared-memory float atomicAdd compiles to a compare-and-swap loop on sm_80/sm_90 (no native
// shared FP32 add), so one 64-bit CAS loop updates both halves of a float pair at once: half the
// loops of two atomicAdds, the same two IEEE additions. Global tables use two native REDs.
// Written once for the GPU and the emulator (which runs the CAS loop with std::atomic_ref).
template <bool kShared, typename T>
PID_DEVICE void atomic_add_pair(T* pair, T a, T b) {
    if constexpr (kShared && std::is_same<T, float>::value) {
        unsigned long long* q = reinterpret_cast<unsigned long long*>(pair);
        unsigned long long old = peek_u64(q), seen;
        do {
            seen = old;
            const float fire = float_of_bits(unsigned(seen & 0xffffffffull)) + a;  // pair[0]: low half
            const float silent = float_of_bits(unsigned(seen >> 32)) + b;
            const unsigned long long upd =
                (unsigned long long)bits_of_float(fire) | ((unsigned long long)bits_of_float(silent) << 32);
            old = cas_u64(q, seen, upd);
        } while (old != seen);
    } else {
        atomic_add_split(pair, a, b);
    }
}

}  // namespace cudak
}  // namespace infomorph
