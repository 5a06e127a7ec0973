// The fused I_sx PID kernel of the CUDA engine: one thread block per neuron at a time.
//
// For every neuron (notation of docs/kernel_contract.md; math in docs/math.md, sections 2,
// 4, 5, 6), with y in {fire = 0: theta, silent = 1: 1 - theta} and b_i the bins of sample i:
//
//   m_s(y, cell)  = sum_i theta_i(y) [cell_s(b_i) = cell]            tables, *not* divided by B
//   P_y           = sum_i theta_i(y)                                 (p(y) = P_y / B)
//   N_a(y)        = sum_s C[a][s] m_s(y, cell_s(b_i))                 (= B N_alpha of the contract)
//   D_a           = N_a(0) + N_a(1)                                   (= B D_alpha, see below)
//   l_a(y)        = log2 N_a(y) - log2 D_a + log2 B - log2 P_y        if N_a(y) > 0, else 0
//   red[a]        = (1/B) sum_i sum_y theta_i(y) l_a(y)
//   h_y           = -sum_{y: P_y > 0} p(y) log2 p(y)
// and, with need_grad (u of the contract with the 1/B's cancelled: u = theta(y) sum_a w_a C / N_a(y)):
//   Tdiff_s(cell) = sum_i [cell_s(b_i) = cell] sum_a C[a][s] w_a (theta_i(0)/N_a(0) - theta_i(1)/N_a(1))
//   dtheta_i      = (1/B) [ sum_a w_a (l_a(0) - l_a(1)) + (1/ln2) sum_s Tdiff_s(cell_s(b_i))
//                           - K_0 + K_1 ],   K_y = [P_y > 0] ((1/ln2) sum_a w_a + gamma_h (log2 p(y) + 1/ln2))
// (theta_i(y)/N_a(y) := 0 where N_a(y) = 0; then theta_i(y) = 0 too, since sample i lies in its own
// union event: N_a(y) >= theta_i(y)). dtheta = g(fire) - g(silent), so only the difference of the
// two backward tables is ever needed: one table Tdiff instead of T(fire) and T(silent).
//
// D from the tables: D_a = sum_s C[a][s] q_s = sum_s C[a][s] (m_s(0) + m_s(1)) = N_a(0) + N_a(1),
// so no count table is stored. In float64 this differs from integer counts by ~1e-16 relative; in
// float32 by the same ~1e-7 relative as the m tables' own accumulation error. It is the same
// quantity, and it keeps the tables at 3 values per cell (2 without need_grad), which is what
// lets the n = 3, K = 20 float32 tables (111 KB) sit in shared memory twice per H100 SM.
//
// Per neuron, B samples strided over the block's threads, phases separated by block barriers:
//   0. (adaptive) max |x| per source: block max-reduction
//   1. bin each sample (binary search over the passed edges), keep its packed bins and theta in
//      the per-block caches (later phases read them coalesced, not with theta's stride N), zero
//      the table cells it touches (global tables; shared tables are zeroed whole), sum P_y (block
//      reduction; its barriers order the zeroing before phase 2)
//   2. scatter theta_i(y) into m_s(y, .) (atomicAdd)
//   3. gather m_s per sample, N, D, logs; red sums; with need_grad the partial dtheta (kept in
//      partial_cache) and the scatter of the backward table Tdiff
//   4. (need_grad) gather Tdiff per sample, write dtheta
// Every sample is handled by the same thread in every phase (i = tid + k * threads), so the
// per-sample caches need no barrier; the tables do (the barriers are marked BARRIER below).
#pragma once

#include <cstdint>

#include "pid_cuda_params.h"
#include "pid_cuda_prims.cuh"

namespace infomorph {
namespace cudak {

template <typename T>
struct SumOp {
    PID_DEVICE T operator()(T a, T b) const { return a + b; }
};
template <typename T>
struct MaxOp {
    PID_DEVICE T operator()(T a, T b) const { return a > b ? a : b; }
};

// All threads of the block call this; each gets the block-wide op-reduction of its v[k], bitwise
// identical in every thread. scratch: [warps, 4] T in shared memory.
template <int K, typename T, typename Op>
PID_DEVICE void block_allreduce(T (&v)[K], T* scratch, Op op) {
    static_assert(K >= 1 && K <= 4, "scratch holds 4 values per warp");
    const int tid = thread_id();
    const int lane = tid & 31, warp = tid >> 5, warps = block_threads() >> 5;
#pragma unroll
    for (int k = 0; k < K; ++k) {
#pragma unroll
        for (int m = 16; m > 0; m >>= 1) v[k] = op(v[k], shfl_xor(v[k], m));
    }
    block_sync();  // BARRIER: the scratch may still be read by a previous reduction
    if (lane == 0) {
#pragma unroll
        for (int k = 0; k < K; ++k) scratch[warp * 4 + k] = v[k];
    }
    block_sync();  // BARRIER: all warp partials written
#pragma unroll
    for (int k = 0; k < K; ++k) {
        T r = scratch[k];
        for (int w = 1; w < warps; ++w) r = op(r, scratch[w * 4 + k]);
        v[k] = r;
    }
}

template <typename T>
PID_DEVICE T warp_sum(T v) {
#pragma unroll
    for (int m = 16; m > 0; m >>= 1) v += shfl_xor(v, m);
    return v;
}

// The contract's binning of one value, in T: v = min(max(x, lo), hi); b = (number of edges
// e_0..e_K below v) - 1, clamped to [0, K - 1] (= torch.bucketize(v, edges[:K+1]) - 1). Branchless
// lower_bound over the K + 1 passed edges (read-only path: a few hundred bytes, L1 resident).
template <typename T>
PID_DEVICE int bin_index(T x, const T* edges, int K, T lo, T hi) {
    T v = x < lo ? lo : x;
    v = hi < v ? hi : v;
    const T* base = edges;
    int len = K + 1;
    while (len > 1) {
        const int half = len >> 1;
        base = (load_ro(base + half - 1) < v) ? base + half : base;
        len -= half;
    }
    const int b = int(base - edges) + (load_ro(base) < v ? 1 : 0) - 1;
    return b < 0 ? 0 : (b > K - 1 ? K - 1 : b);
}

template <int kN>
PID_DEVICE void unpack_bins(uint32_t packed, const int32_t (&shift)[kMaxN], const uint32_t (&mask)[kMaxN],
                            int (&b)[kN]) {
#pragma unroll
    for (int j = 0; j < kN; ++j) b[j] = int((packed >> shift[j]) & mask[j]);
}

// index of the cell of subset mask s (1..S) in the concatenated tables
template <int kN, typename P>
PID_DEVICE int cell_index(const P& p, int s, const int (&b)[kN]) {
    int idx = p.sub_offset[s];
#pragma unroll
    for (int j = 0; j < kN; ++j)
        if (s >> j & 1) idx += b[j] * p.sub_stride[s][j];
    return idx;
}

// The block body, called by every thread of every block. smem: the dynamic shared memory,
// carved as described in pid_cuda_params.h (PidParams::smem_*).
template <typename T, int kN, bool kSharedTables>
PID_DEVICE void pid_block(const PidParams<T>& p, unsigned char* smem) {
    constexpr int kS = num_subsets(kN);
    constexpr int kA = num_antichains(kN);
    constexpr int kSPad = padded_subsets(kN);
    constexpr bool kRegAcc = register_accumulators(kN);
    constexpr double kInvLn2 = 1.4426950408889634;  // 1 / ln 2

    const int tid = thread_id();
    const int nthreads = block_threads();
    const int lane = tid & 31, warp = tid >> 5, warps = nthreads >> 5;
    const int64_t B = p.batch, N = p.neurons;
    const bool need_grad = p.need_grad != 0;
    const bool adaptive = p.adaptive != 0;

    T* const coef_s = reinterpret_cast<T*>(smem + p.smem_coef);  // [kA][kSPad]
    T* const w_s = reinterpret_cast<T*>(smem + p.smem_w);        // [kA]
    T* const red_s = reinterpret_cast<T*>(smem + p.smem_red);
    T* const reduce_s = reinterpret_cast<T*>(smem + p.smem_reduce);
    T* tables;
    if constexpr (kSharedTables)
        tables = reinterpret_cast<T*>(smem + p.smem_tables);
    else
        tables = p.tables + block_id() * p.table_stride;
    T* const pair = tables;                   // [C][2]: m_s(fire, cell), m_s(silent, cell)
    T* const tdiff = tables + 2 * p.cells;    // [C]: Tdiff_s(cell) (need_grad)
    uint32_t* const bins_cache = p.bins_cache + block_id() * B;
    T* const theta_cache = p.theta_cache + block_id() * B;
    T* const partial_cache = need_grad ? p.partial_cache + block_id() * B : nullptr;

    // --- once per block: C and w as T in shared memory (published by the first BARRIER below)
    for (int k = tid; k < kA * kSPad; k += nthreads) {
        const int a = k / kSPad, s = k % kSPad;
        coef_s[k] = s < kS ? T(p.coef[a * kS + s]) : T(0);
    }
    double w_sum = 0.0;
    if (need_grad) {
        for (int a = tid; a < kA; a += nthreads) w_s[a] = T(p.w[a]);
        for (int a = 0; a < kA; ++a) w_sum += load_ro(p.w + a);
    }
    T clo[kN], chi[kN];
#pragma unroll
    for (int j = 0; j < kN; ++j) {
        clo[j] = load_ro(p.clamp_lo + j);
        chi[j] = load_ro(p.clamp_hi + j);
    }

    for (int64_t neuron = block_id(); neuron < N; neuron += grid_blocks()) {
        block_sync();  // BARRIER: the previous neuron's table and scratch readers are done
        if constexpr (kSharedTables) zero_shared(tables, p.table_values, tid, nthreads);
        if constexpr (!kRegAcc)
            for (int a = tid; a < kA; a += nthreads) red_s[a] = T(0);

        // --- phase 0: adaptive range, scale_j = max_i |x_ij|
        T scale[kN];
#pragma unroll
        for (int j = 0; j < kN; ++j) scale[j] = T(0);
        if (adaptive) {
            for (int64_t i = tid; i < B; i += nthreads) {
                const T* xi = p.x + (i * N + neuron) * kN;
#pragma unroll
                for (int j = 0; j < kN; ++j) {
                    T v = load_ro(xi + j);
                    v = v < T(0) ? -v : v;
                    scale[j] = v > scale[j] ? v : scale[j];
                }
            }
            block_allreduce(scale, reduce_s, MaxOp<T>());
        }

        // --- phase 1: bin, cache packed bins and theta, zero the touched cells (global tables), P_y
        T psum[2] = {T(0), T(0)};
        for (int64_t i = tid; i < B; i += nthreads) {
            const int64_t row = i * N + neuron;
            const T t0 = load_ro(p.theta + row);
            const T t1 = T(1) - t0;
            int b[kN];
            uint32_t packed = 0;
#pragma unroll
            for (int j = 0; j < kN; ++j) {
                T v = load_ro(p.x + row * kN + j);
                if (adaptive && scale[j] > T(0)) v = v / scale[j];  // one IEEE division, as the contract says
                b[j] = bin_index(v, p.edges + j * p.edge_stride, p.nbins[j], clo[j], chi[j]);
                packed |= uint32_t(b[j]) << p.shift[j];
            }
            bins_cache[i] = packed;
            theta_cache[i] = t0;
            if constexpr (!kSharedTables) {
                // samples sharing a cell store the same 0 to it (benign: every store writes 0);
                // the barrier in the reduction below orders all of them before the scatter
#pragma unroll
                for (int s = 1; s <= kS; ++s) {
                    const int idx = cell_index<kN>(p, s, b);
                    tab_zero_pair<false>(pair + 2 * idx);
                    if (need_grad) tab_zero<false>(tdiff + idx);
                }
            }
            psum[0] += t0;
            psum[1] += t1;
        }
        block_allreduce(psum, reduce_s, SumOp<T>());  // contains the BARRIER: zeroing done
        const T P0 = psum[0], P1 = psum[1];

        // --- phase 2: scatter m_s(y, cell) += theta_i(y)
        for (int64_t i = tid; i < B; i += nthreads) {
            const T t0 = theta_cache[i];
            const T t1 = T(1) - t0;
            int b[kN];
            unpack_bins<kN>(bins_cache[i], p.shift, p.mask, b);
#pragma unroll
            for (int s = 1; s <= kS; ++s) atomic_add_pair<kSharedTables>(pair + 2 * cell_index<kN>(p, s, b), t0, t1);
        }

        // per-neuron constants (double, then T): l_a(y) = log2 N - log2 D + cy[y]; the backward's
        // constant part of g(fire) - g(silent) is -(K_0 - K_1)
        const double dB = double(B);
        const double p0 = double(P0) / dB, p1 = double(P1) / dB;
        const double lp0 = p0 > 0.0 ? log2_(p0) : 0.0, lp1 = p1 > 0.0 ? log2_(p1) : 0.0;
        const T cy0 = P0 > T(0) ? T(-lp0) : T(0);  // log2 B - log2 P_y = -log2 p(y)
        const T cy1 = P1 > T(0) ? T(-lp1) : T(0);
        const double k0 = P0 > T(0) ? kInvLn2 * w_sum + p.gamma_h * (lp0 + kInvLn2) : 0.0;
        const double k1 = P1 > T(0) ? kInvLn2 * w_sum + p.gamma_h * (lp1 + kInvLn2) : 0.0;
        const T kdiff = T(k0 - k1);
        const double h = -(p0 > 0.0 ? p0 * lp0 : 0.0) - (p1 > 0.0 ? p1 * lp1 : 0.0);

        block_sync();  // BARRIER: the scatter is complete before any gather

        // --- phase 3: gather, redundancies, partial gradient, backward scatter
        T racc[kRegAcc ? kA : 1];
#pragma unroll
        for (int a = 0; a < (kRegAcc ? kA : 1); ++a) racc[a] = T(0);
        // warp-uniform trip count: with n = 4 all 32 lanes take part in the warp sums, lanes past
        // B computing with zeros (all their terms vanish: theta = 0, N = 0)
        for (int64_t i0 = 0; i0 < B; i0 += nthreads) {
            const int64_t i = i0 + tid;
            const bool valid = i < B;
            if constexpr (kRegAcc) {
                if (!valid) break;
            }
            T t0 = T(0), t1 = T(0);
            T g0[kS], g1[kS];
            int b[kN];
#pragma unroll
            for (int j = 0; j < kN; ++j) b[j] = 0;
            if (valid) {
                t0 = theta_cache[i];
                t1 = T(1) - t0;
                unpack_bins<kN>(bins_cache[i], p.shift, p.mask, b);
#pragma unroll
                for (int s = 1; s <= kS; ++s)
                    tab_load_pair<kSharedTables>(pair + 2 * cell_index<kN>(p, s, b), g0[s - 1], g1[s - 1]);
            } else {
#pragma unroll
                for (int s = 0; s < kS; ++s) g0[s] = g1[s] = T(0);
            }
            T wl = T(0);     // sum_a w_a (l_a(0) - l_a(1))
            T v[kS];         // sum_a C[a][s] z_a: this sample's contribution to Tdiff_s
#pragma unroll
            for (int s = 0; s < kS; ++s) v[s] = T(0);
#pragma unroll(kRegAcc ? kA : 1)
            for (int a = 0; a < kA; ++a) {
                T c[kSPad];
                load_row<kSPad>(coef_s + a * kSPad, c);
                T n0 = T(0), n1 = T(0);
#pragma unroll
                for (int s = 0; s < kS; ++s) {
                    n0 += c[s] * g0[s];
                    n1 += c[s] * g1[s];
                }
                const T d = n0 + n1;
                const bool ok0 = n0 > T(0), ok1 = n1 > T(0);
                const T lgd = log2_(d > T(0) ? d : T(1));
                const T l0 = ok0 ? log2_(n0) - lgd + cy0 : T(0);
                const T l1 = ok1 ? log2_(n1) - lgd + cy1 : T(0);
                const T contrib = t0 * l0 + t1 * l1;
                if constexpr (kRegAcc) {
                    racc[kRegAcc ? a : 0] += contrib;
                } else {
                    const T r = warp_sum(contrib);
                    if (lane == 0) atomic_add(red_s + a, r);
                }
                if (need_grad) {
                    const T wa = w_s[a];
                    wl += wa * (l0 - l1);
                    const T z = wa * ((ok0 ? t0 / n0 : T(0)) - (ok1 ? t1 / n1 : T(0)));
#pragma unroll
                    for (int s = 0; s < kS; ++s) v[s] += c[s] * z;
                }
            }
            if (need_grad && valid) {
                partial_cache[i] = wl - kdiff;
#pragma unroll
                for (int s = 1; s <= kS; ++s) atomic_add(tdiff + cell_index<kN>(p, s, b), v[s - 1]);
            }
        }

        // redundancies: block sums of the accumulators
        if constexpr (kRegAcc) {
#pragma unroll
            for (int a = 0; a < kA; ++a) {
                const T r = warp_sum(racc[kRegAcc ? a : 0]);
                if (lane == 0) red_s[warp * kA + a] = r;
            }
            block_sync();  // BARRIER: warp partials written; also: the Tdiff scatter is complete
            for (int a = tid; a < kA; a += nthreads) {
                T r = red_s[a];
                for (int w = 1; w < warps; ++w) r += red_s[w * kA + a];
                p.red[neuron * kA + a] = r / T(B);
            }
        } else {
            block_sync();  // BARRIER: all warp sums added; also: the Tdiff scatter is complete
            for (int a = tid; a < kA; a += nthreads) p.red[neuron * kA + a] = red_s[a] / T(B);
        }
        if (tid == 0) p.h_y[neuron] = T(h);

        // --- phase 4: second gather, dtheta
        if (need_grad) {
            const T inv_ln2 = T(kInvLn2);
            for (int64_t i = tid; i < B; i += nthreads) {
                int b[kN];
                unpack_bins<kN>(bins_cache[i], p.shift, p.mask, b);
                T tsum = T(0);
#pragma unroll
                for (int s = 1; s <= kS; ++s) tsum += tab_load<kSharedTables>(tdiff + cell_index<kN>(p, s, b));
                p.dtheta[i * N + neuron] = (partial_cache[i] + tsum * inv_ln2) / T(B);
            }
        }
    }
}

}  // namespace cudak
}  // namespace infomorph
