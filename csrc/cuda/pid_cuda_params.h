// Kernel parameters and the host-side plan of the CUDA engine (plain C++17: no CUDA, no torch).
//
// Shared by the launcher (pid_cuda.cu), the pybind11 module (pid_cuda_bindings.cpp) and the CPU
// emulator (emu/pid_emu.cc), so that all three lay out shared memory and the tables identically.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "pid_common.h"    // kMaxCells, checked_full_cells: the limits every backend shares
#include "pid_cuda_api.h"  // PlanRequest, Plan, LaunchArgs, kMaxN, kMaxS, kBlockThreads

// the lattice-size helpers are used in constant expressions of device code too
#if defined(__CUDACC__)
#define PID_HOST_DEVICE __host__ __device__
#else
#define PID_HOST_DEVICE
#endif

namespace infomorph {
namespace cudak {

// lattice sizes per n: subsets S = 2^n - 1, antichains A; coefficient rows are padded to kSPad
// entries so that a row is a whole number of 16-byte vectors in float and in double
PID_HOST_DEVICE constexpr int num_subsets(int n) { return (1 << n) - 1; }
PID_HOST_DEVICE constexpr int num_antichains(int n) { return n == 1 ? 1 : n == 2 ? 4 : n == 3 ? 18 : n == 4 ? 166 : -1; }
PID_HOST_DEVICE constexpr int padded_subsets(int n) { return ((num_subsets(n) + 3) / 4) * 4; }
// per-thread register accumulators for the redundancy sums up to n = 3 (A <= 18); n = 4 sums
// each antichain across the warp and accumulates it in shared memory
PID_HOST_DEVICE constexpr bool register_accumulators(int n) { return num_antichains(n) <= 18; }

// Everything the kernel reads besides the tensors. Passed by value (__grid_constant__), so it
// lives in the constant bank: the per-subset offsets and strides become immediate operands.
template <typename T>
struct PidParams {
    // inputs (docs/kernel_contract.md)
    const T* x;             // [B, N, n]
    const T* theta;         // [B, N]
    const T* edges;         // [n, edge_stride]
    const T* clamp_lo;      // [n]
    const T* clamp_hi;      // [n]
    const int32_t* coef;    // [A, S]
    const double* w;        // [A] (nullptr unless need_grad)
    // outputs
    T* red;                 // [N, A]
    T* h_y;                 // [N]
    T* dtheta;              // [B, N] (nullptr unless need_grad)
    // workspace (allocated by the Python wrapper with torch.empty; the kernel never needs it zeroed)
    T* tables;              // [grid, table_stride] when the tables live in global memory
    uint32_t* bins_cache;   // [grid, B]: packed bins of each sample of the current neuron
    T* theta_cache;         // [grid, B]: theta of each sample (coalesced re-reads; theta is [B, N])
    T* partial_cache;       // [grid, B]: dtheta before the second gather (need_grad)
    int64_t batch;          // B
    int64_t neurons;        // N
    int64_t table_stride;   // values per block in `tables`
    int32_t num_antichains; // A (== num_antichains(n), checked on the host)
    int32_t edge_stride;    // Kmax + 1
    int32_t cells;          // C = sum over subsets s of prod_{j in s} K_j
    int32_t table_values;   // values of the tables of one neuron: 2C (+ C with need_grad), rounded up to 4
    int32_t nbins[kMaxN];
    int32_t shift[kMaxN];   // bin j of a sample is (packed >> shift[j]) & mask[j]
    uint32_t mask[kMaxN];
    int32_t sub_offset[kMaxS + 1];          // first cell of subset s's table (index by mask s)
    int32_t sub_stride[kMaxS + 1][kMaxN];   // cell_s(b) = sum_j b_j * sub_stride[s][j]
    // shared-memory carve-up, byte offsets from the dynamic shared memory base (16-byte aligned)
    int32_t smem_coef;      // [A, kSPad] T: coefficients as T
    int32_t smem_w;         // [A] T
    int32_t smem_red;       // register path: [warps, A] T; n = 4: [A] T accumulators
    int32_t smem_reduce;    // [warps, 4] T: block reductions (max |x|, p(y))
    int32_t smem_tables;    // shared-table variant: [table_values] T
    double gamma_h;
    int32_t adaptive;
    int32_t need_grad;
};

// Layout of the tables of one neuron and of the dynamic shared memory of one block.
struct PidLayout {
    int n = 0, S = 0, A = 0, threads = 0;
    bool need_grad = false;
    size_t elem = 0;            // sizeof(T)
    int64_t cells = 0;          // C
    int64_t table_values = 0;   // 2C (+ C), rounded up to a multiple of 4
    size_t smem_coef = 0, smem_w = 0, smem_red = 0, smem_reduce = 0, smem_tables = 0;
    size_t smem_small = 0;      // bytes without the tables (global-table variant)
    size_t smem_with_tables = 0;
    int32_t sub_offset[kMaxS + 1] = {};
    int32_t sub_stride[kMaxS + 1][kMaxN] = {};
    int32_t shift[kMaxN] = {};
    uint32_t mask[kMaxN] = {};
};

inline size_t align16(size_t v) { return (v + 15) / 16 * 16; }

// Cell layout, bin packing and shared-memory carve-up. Throws std::invalid_argument (Python
// ValueError) naming the limit when the tables cannot be indexed.
inline PidLayout make_layout(const std::vector<int64_t>& nbins, int A, bool need_grad, size_t elem,
                             int threads) {
    PidLayout L;
    L.n = int(nbins.size());
    if (L.n < 1 || L.n > kMaxN)
        throw std::invalid_argument("backend 'cuda' supports 1..4 sources, got " + std::to_string(L.n));
    L.S = num_subsets(L.n);
    if (A != num_antichains(L.n))
        throw std::invalid_argument("coef must have " + std::to_string(num_antichains(L.n)) +
                                    " rows (one per antichain of the " + std::to_string(L.n) +
                                    "-source lattice), got " + std::to_string(A));
    L.A = A;
    L.threads = threads;
    L.need_grad = need_grad;
    L.elem = elem;
    checked_full_cells(nbins);  // prod K <= 2^28, the limit shared by every backend

    // bins packed in one 32-bit word: ceil(log2 K_j) bits each. With prod K <= 2^28 the widths
    // sum to < 28 + n <= 32, so this always fits.
    int bit = 0;
    for (int j = 0; j < L.n; ++j) {
        int bits = 0;
        while ((int64_t(1) << bits) < nbins[j]) ++bits;
        L.shift[j] = bit;
        L.mask[j] = bits == 0 ? 0u : uint32_t((uint64_t(1) << bits) - 1);
        bit += bits;
    }
    if (bit > 32) throw std::invalid_argument("nbins: packed bin indices exceed 32 bits");

    int64_t cells = 0;
    for (int s = 1; s <= L.S; ++s) {
        L.sub_offset[s] = int32_t(cells);
        int64_t st = 1;
        for (int j = 0; j < L.n; ++j) {
            if (s >> j & 1) {
                L.sub_stride[s][j] = int32_t(st);
                st *= nbins[j];
            }
        }
        cells += st;
    }
    L.cells = cells;
    L.table_values = ((need_grad ? 3 : 2) * cells + 3) / 4 * 4;
    // every table offset (2 * cell + 1, 2C + cell) must be an int32
    if (3 * cells + 4 > int64_t(INT32_MAX))
        throw std::invalid_argument("nbins: the marginal tables of backend 'cuda' would have " +
                                    std::to_string(cells) + " cells; the limit is " +
                                    std::to_string((int64_t(INT32_MAX) - 4) / 3) + " (use fewer bins)");

    const int warps = threads / 32;
    const int spad = padded_subsets(L.n);
    size_t off = 0;
    L.smem_coef = off;
    off = align16(off + size_t(A) * spad * elem);
    L.smem_w = off;
    off = align16(off + size_t(A) * elem);
    L.smem_red = off;
    off = align16(off + size_t(register_accumulators(L.n) ? warps * A : A) * elem);
    L.smem_reduce = off;
    off = align16(off + size_t(warps) * 4 * elem);
    L.smem_small = off;
    L.smem_tables = off;
    L.smem_with_tables = off + size_t(L.table_values) * elem;
    return L;
}

template <typename T>
inline void fill_layout_params(PidParams<T>& p, const PidLayout& L, bool smem_tables) {
    p.num_antichains = L.A;
    p.cells = int32_t(L.cells);
    p.table_values = int32_t(L.table_values);
    for (int j = 0; j < kMaxN; ++j) {
        p.shift[j] = L.shift[j];
        p.mask[j] = L.mask[j];
    }
    for (int s = 0; s <= kMaxS; ++s) {
        p.sub_offset[s] = L.sub_offset[s];
        for (int j = 0; j < kMaxN; ++j) p.sub_stride[s][j] = L.sub_stride[s][j];
    }
    p.smem_coef = int32_t(L.smem_coef);
    p.smem_w = int32_t(L.smem_w);
    p.smem_red = int32_t(L.smem_red);
    p.smem_reduce = int32_t(L.smem_reduce);
    p.smem_tables = smem_tables ? int32_t(L.smem_tables) : -1;
    p.table_stride = smem_tables ? 0 : L.table_values;
}

// The launch plan from the device's limits; `occupancy(shared_tables, smem_bytes)` returns the
// resident blocks per SM of the kernel that would run (cudaOccupancyMaxActiveBlocksPerMultiprocessor
// on the GPU, a constant in the emulator).
template <typename Occupancy>
inline Plan make_plan(const PlanRequest& r, int threads, int64_t smem_optin, int sm_count, int64_t total_mem,
                      Occupancy occupancy) {
    const size_t elem = r.is_double ? sizeof(double) : sizeof(float);
    const PidLayout L = make_layout(r.nbins, r.num_antichains, r.need_grad, elem, threads);
    Plan P;
    P.threads = threads;
    P.cells = L.cells;
    P.table_values = L.table_values;
    P.sm_count = sm_count;
    P.smem_optin = smem_optin;
    const bool fits = int64_t(L.smem_with_tables) <= smem_optin;
    if (r.force_tables == 1 && !fits)
        throw std::invalid_argument("backend 'cuda': the tables of one neuron need " +
                                    std::to_string(L.smem_with_tables) + " bytes of shared memory, the device allows " +
                                    std::to_string(smem_optin) + " per block");
    P.shared_tables = r.force_tables == 0 ? false : fits;
    P.smem_bytes = int64_t(P.shared_tables ? L.smem_with_tables : L.smem_small);
    if (P.smem_bytes > smem_optin)
        throw std::invalid_argument("backend 'cuda': " + std::to_string(P.smem_bytes) +
                                    " bytes of shared memory per block needed, the device allows " +
                                    std::to_string(smem_optin));
    P.blocks_per_sm = occupancy(P.shared_tables, P.smem_bytes);
    if (P.blocks_per_sm < 1)
        throw std::runtime_error("backend 'cuda': the kernel cannot be resident on this device (" +
                                 std::to_string(threads) + " threads, " + std::to_string(P.smem_bytes) +
                                 " bytes of shared memory per block)");
    int64_t grid = std::min<int64_t>(r.neurons, int64_t(P.blocks_per_sm) * sm_count);
    if (!P.shared_tables) {
        const int64_t per_block = L.table_values * int64_t(elem);
        if (per_block > total_mem / 2)
            throw std::invalid_argument(
                "nbins: the marginal tables of one neuron need " + std::to_string(per_block) +
                " bytes of GPU memory; backend 'cuda' allows at most half of the device's memory (" +
                std::to_string(total_mem / 2) + " bytes) - use fewer bins");
        grid = std::min<int64_t>(grid, std::max<int64_t>(1, r.workspace_budget / per_block));
        P.ws_tables = grid * L.table_values;
    }
    P.grid = std::max<int64_t>(grid, r.neurons > 0 ? 1 : 0);
    P.ws_bins = P.grid * r.batch;
    P.ws_theta = P.grid * r.batch;
    P.ws_partial = r.need_grad ? P.grid * r.batch : 0;
    return P;
}

// Kernel parameters of one launch (the launcher and the emulator build them the same way).
template <typename T>
inline PidParams<T> make_params(const LaunchArgs& a) {
    const int n = int(a.nbins.size());
    const Plan& P = a.plan;
    const PidLayout L = make_layout(a.nbins, a.num_antichains, a.need_grad, sizeof(T), P.threads);
    if (L.table_values != P.table_values || P.threads % 32 != 0 || P.threads < 32 || P.threads > 1024)
        throw std::invalid_argument("backend 'cuda': the plan does not belong to these arguments");
    if ((!P.shared_tables && P.ws_tables < P.grid * L.table_values) || P.ws_bins < P.grid * a.batch ||
        P.ws_theta < P.grid * a.batch || (a.need_grad && P.ws_partial < P.grid * a.batch) || P.grid < 1)
        throw std::invalid_argument("backend 'cuda': the workspace is smaller than the plan needs");
    PidParams<T> p{};
    p.x = reinterpret_cast<const T*>(a.x);
    p.theta = reinterpret_cast<const T*>(a.theta);
    p.edges = reinterpret_cast<const T*>(a.edges);
    p.clamp_lo = reinterpret_cast<const T*>(a.clamp_lo);
    p.clamp_hi = reinterpret_cast<const T*>(a.clamp_hi);
    p.coef = reinterpret_cast<const int32_t*>(a.coef);
    p.w = a.need_grad ? reinterpret_cast<const double*>(a.w) : nullptr;
    p.red = reinterpret_cast<T*>(a.red);
    p.h_y = reinterpret_cast<T*>(a.h_y);
    p.dtheta = a.need_grad ? reinterpret_cast<T*>(a.dtheta) : nullptr;
    p.tables = P.shared_tables ? nullptr : reinterpret_cast<T*>(a.ws_tables);
    p.bins_cache = reinterpret_cast<uint32_t*>(a.ws_bins);
    p.theta_cache = reinterpret_cast<T*>(a.ws_theta);
    p.partial_cache = a.need_grad ? reinterpret_cast<T*>(a.ws_partial) : nullptr;
    p.batch = a.batch;
    p.neurons = a.neurons;
    p.edge_stride = a.edge_stride;
    for (int j = 0; j < kMaxN; ++j) p.nbins[j] = j < n ? int32_t(a.nbins[j]) : 1;
    fill_layout_params(p, L, P.shared_tables);
    p.gamma_h = a.gamma_h;
    p.adaptive = a.adaptive ? 1 : 0;
    p.need_grad = a.need_grad ? 1 : 0;
    return p;
}

}  // namespace cudak
}  // namespace infomorph
