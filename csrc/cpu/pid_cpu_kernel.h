// Fused I_sx PID forward + backward of a whole layer on the CPU: OpenMP over neurons.
//
// Per neuron (docs/math.md sections 2, 4, 5; docs/kernel_contract.md is the exact contract):
//   m_s(y, c) = (1/B) sum_i theta_i(y) [cell_s(b_i) = c],   q_s(c) = count_s(c) / B
//   N_a(y) = sum_s C[a, s] m_s(y, cell_s(b)),   D_a = sum_s C[a, s] q_s(cell_s(b))
//   I(a)   = (1/B) sum_i sum_y theta_i(y) (log2 N_a(y, b_i) - log2 D_a(b_i) - log2 p(y))
//   u_i(y, s) = (1/B) theta_i(y) sum_a w_a C[a, s] / N_a(y, b_i),   T_s(y, c) = sum_{i in c} u_i(y, s)
//   g_j(y) = (1/B) [sum_a w_a l_a(y, b_j) + (1/ln2) sum_s T_s(y, cell_s(b_j))
//                   - [p(y) > 0] ((1/ln2) sum_a w_a + gamma_h (log2 p(y) + 1/ln2))]
//   dtheta_j = g_j(fire) - g_j(silent)
//
// Why it is organised around occupied joint cells rather than samples: every per-sample quantity
// above (N, D, l, u, g) depends on sample i only through its joint cell b_i, and on theta_i(y) as a
// plain factor. So the engine
//   1. bins the B samples and deduplicates their joint cells (first-appearance order, so results are
//      deterministic and independent of the thread that runs the neuron), accumulating per joint
//      cell M(y) = sum_{i in cell} theta_i(y) and the count;
//   2. folds the U occupied joint cells into the 2^n - 2 proper-subset tables;
//   3a. evaluates the single-subset antichains a = {s} (s a proper subset) once per slot of table s:
//      there N_a = m_s and D_a = count_s, the slot's own sums (LayerPlan::split_rows);
//   3. evaluates N, D, logs, redundancies and the T scatter of the other antichains once per
//      occupied joint cell, kLanes cells at a time in structure-of-arrays form so that every step
//      (C m, log2, 1/N, C^T w/N) is a vector loop over cells (D in integers: exact counts);
//   4. gathers T per joint cell and writes dtheta to every sample of the cell.
// The layer driver (pid_cpu.cpp run_layer) hands each thread blocks of consecutive neurons,
// transposed into per-thread buffers, so a neuron reads its samples at unit stride (NeuronIO).
// Work is O(B + U * (nnz(C) + A)) with U <= min(B, prod K): U ~ B for random inputs, far less for
// trained networks (activity concentrated in few cells). No table is swept densely: tables hold
// only occupied cells in compact slots (direct index map when the subset's cell count is small,
// open addressing otherwise) and are reset sparsely through their lists of used keys.
//
// Units: tables hold raw sums (not divided by B). log2 N - log2 D is unit-free, and
// (1/B) sum theta_i(y) (-log2 p(y)) = -p(y) log2 p(y), so I(a) = (1/B) sum_cells sum_y M(y)
// (log2 N_a - log2 D_a) + H(Y). Likewise u_i's 1/B cancels the 1/B of the normalised N.
// D_a is an exact integer count (<= B), so log2 D_a is read from a table of log2 of integers.
//
// Exactness: every term of C m for antichain a is a marginal of an event contained in the union
// event, so |terms| <= N_a and the inclusion-exclusion loses only a few ulp relative to N_a.
// Still, N_a(y) := max(N_a(y), M(y)) (a true lower bound: p(y, s) <= N_a(y, s)) guarantees
// N_a > 0 wherever theta weight sits, so no log of 0 and no NaN can appear; where M(y) = 0 the
// terms are multiplied by 0 (forward) or masked by N_a(y) > 0 (backward), as the contract says.
//
// Two compiled flavours of the same source: baseline x86-64 (or any target) and AVX2 + FMA, picked
// at run time (pid_cpu.cpp, use_avx2). Vector code uses GCC/Clang vector types (pid_cpu_simd.h).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <vector>

#include "pid_common.h"
#include "pid_cpu_simd.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
// GCC 12 warns that the gather intrinsics' own placeholder source may be uninitialized (its header's
// false positive, GCC bug 105593): silenced for the header's lines only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#endif

// Phase timers for bench/cpu_phases.cpp (a single-threaded profiling build only; compiled out otherwise).
#ifdef INFOMORPH_PHASE_TIMERS
#include <x86intrin.h>
namespace infomorph { namespace cpu { inline uint64_t g_phase_cycles[16]; } }
#define INFOMORPH_PHASE_START uint64_t ik_phase_t = __rdtsc();
#define INFOMORPH_PHASE(k)                                   \
    {                                                        \
        const uint64_t t_ = __rdtsc();                       \
        ::infomorph::cpu::g_phase_cycles[k] += t_ - ik_phase_t; \
        ik_phase_t = t_;                                     \
    }
#else
#define INFOMORPH_PHASE_START
#define INFOMORPH_PHASE(k)
#endif

namespace infomorph {
namespace cpu {

constexpr int kHalves = 2;                       // vectors per lane group
constexpr int kLanes = kHalves * kVec;           // joint cells evaluated together (8)
constexpr int64_t kMaxLogTable = int64_t(1) << 16;  // batch sizes served by the log2-of-int table

// Everything a neuron needs that does not change across neurons (read-only, shared by threads).
struct LayerPlan {
    int64_t B = 0, N = 0;
    int n = 0, A = 0, S = 0;
    std::vector<int> K;            // [n]
    int64_t edge_stride = 0;       // row stride of edges (Kmax + 1)
    bool adaptive = false, need_grad = false;
    double gamma_h = 0.0;
    CellLayout layout;
    SparseCoef coef;
    std::vector<double> w;         // [A] goal weights (dense: sum_a w_a l_a(y) of the backward)
    // log2(c) for integer counts 0..B (null when B is huge); shared by every call (log2_table())
    std::shared_ptr<const std::vector<double>> log2_int;
    bool check_values = false;     // report non-finite x and theta outside [0, 1] (status flags)
    bool local = false;            // write the local redundancy parts (local_out)
    int local_full = 0;            // row of coef of the full-set antichain {1..n}
    std::vector<int> moebius_ptr, moebius_col;  // sparse rows of the Moebius matrix M [A, A] (local)
    std::vector<double> moebius_val;
    // The rows evaluated per occupied joint cell (cell_rows, Ac of them, with their own sparse C
    // and weights) and the single-subset rows a = {s}, s a proper subset, evaluated per slot of
    // table s instead (N_a = m_s and D_a = count_s are that slot's own sums, so sum_y m log2(m /
    // count) and the slot's gradient terms need no per-cell work): split_rows().
    int Ac = 0;
    std::vector<int> cell_rows, slot_row, slot_sub;
    SparseCoef ccoef;
    std::vector<double> cw;

    // split: move the single-subset rows to the slots (not with local atoms, which need every
    // row per cell). Call after A, S, local and w are set.
    void split_rows(const int32_t* c, bool split) {
        cell_rows.clear();
        slot_row.clear();
        slot_sub.clear();
        std::vector<int32_t> sub;
        for (int a = 0; a < A; ++a) {
            int nnz = 0, col = -1;
            for (int q = 0; q < S; ++q)
                if (c[size_t(a) * S + q] != 0) {
                    ++nnz;
                    col = q;
                }
            if (split && nnz == 1 && col != S - 1 && c[size_t(a) * S + col] == 1) {
                slot_row.push_back(a);
                slot_sub.push_back(col);
            } else {
                cell_rows.push_back(a);
                sub.insert(sub.end(), c + size_t(a) * S, c + size_t(a + 1) * S);
            }
        }
        Ac = int(cell_rows.size());
        cw.clear();
        for (int a : cell_rows) cw.push_back(w.empty() ? 0.0 : w[size_t(a)]);
        ccoef = SparseCoef(sub.data(), Ac, S, w.empty() ? nullptr : cw.data());
    }

    void set_moebius(const double* m) {
        moebius_ptr.assign(size_t(A) + 1, 0);
        for (int k = 0; k < A; ++k) {
            for (int j = 0; j < A; ++j) {
                const double v = m[size_t(k) * A + j];
                if (v != 0.0) {
                    moebius_col.push_back(j);
                    moebius_val.push_back(v);
                }
            }
            moebius_ptr[size_t(k) + 1] = int(moebius_col.size());
        }
    }

    LayerPlan(const std::vector<int64_t>& nbins, const int32_t* c, int A_, const double* w_,
              int64_t batch)
        : layout(nbins), coef(c, A_, (1 << int(nbins.size())) - 1, w_) {
        if (w_ != nullptr) w.assign(w_, w_ + A_);
        if (batch <= kMaxLogTable) log2_int = log2_table(batch);
    }

    // A table of log2 of 0..at least `batch`, built once per process (and grown when a larger
    // batch comes): building it per call cost ~1000 log2 evaluations, much of a small layer's time.
    static std::shared_ptr<const std::vector<double>> log2_table(int64_t batch) {
        static std::mutex mu;
        static std::shared_ptr<const std::vector<double>> table;
        std::lock_guard<std::mutex> lock(mu);
        if (!table || int64_t(table->size()) <= batch) {
            const int64_t size = std::max<int64_t>(batch, 1024) + 1;
            auto t = std::make_shared<std::vector<double>>(size_t(size));
            (*t)[0] = 0.0;  // never read for a real cell (D >= 1); padding lanes use D = 1
            for (int64_t c = 1; c < size; ++c) (*t)[size_t(c)] = std::log2(double(c));
            table = t;
        }
        return table;
    }
};

// Outputs of the local atoms, [B, N, 2, A] each (h_res [B, N, 2]); all null when not asked for.
template <typename T>
struct LocalOut {
    T* inf = nullptr;
    T* mis = nullptr;
    T* atoms = nullptr;
    T* h_res = nullptr;
};

// Where one neuron's per-sample data lives: x of source j, sample i at x[i * xi + j * xj], theta at
// theta[i * ti], dtheta at dtheta[i * di]. Either the layer's tensors themselves (strided) or a
// thread's transposed copy of a block of neurons (unit sample stride; run_layer).
template <typename T>
struct NeuronIO {
    const T* x;
    int64_t xi, xj;
    const T* theta;
    int64_t ti;
    T* dtheta;
    int64_t di;
};

// Value problems found while binning (only with LayerPlan::check_values), OR-ed per neuron.
constexpr int kBadSources = 1;  // a non-finite source value
constexpr int kBadTheta = 2;    // theta NaN or outside [0, 1]

// Accumulators of one occupied cell of one subset table: raw marginal sums for y = fire/silent and
// the count side by side (one cache line serves N for both y and D), plus the backward scatter T.
struct CellAcc {
    double m0, m1, cnt, t0, t1;
};

// Occupied cells of one subset table, in compact slots 0..used-1 (first-appearance order).
// Invariant between neurons: every map entry is empty and every accumulator is zero, so creating a
// slot is just taking the next index (branch-free in the direct map, where for random inputs about
// half of all lookups create a cell and a branch would be mispredicted).
class CellTable {
public:
    void init(int64_t cells, int64_t batch) {
        const int64_t cap = std::min<int64_t>(cells, batch);
        acc_.assign(size_t(cap), CellAcc{0.0, 0.0, 0.0, 0.0, 0.0});
        slot_key_.resize(size_t(cap) + 1);  // +1: the branch-free insert writes one past used_
        // A direct map costs 4 bytes per cell of the subset; past 2^15 cells (128 KB) an open
        // addressing table sized to the batch stays in L1/L2 where the direct one would not.
        direct_ = cells <= (int64_t(1) << 15) || cells <= 4 * cap;
        if (direct_) {
            dmap_.assign(size_t(cells), -1);
        } else {
            int lg = 1;
            while ((int64_t(1) << lg) < 2 * cap) ++lg;
            hmask_ = (uint32_t(1) << lg) - 1;
            hshift_ = uint32_t(32 - lg);
            hkey_.assign(size_t(hmask_) + 1, kEmpty);
            hval_.assign(size_t(hmask_) + 1, 0);
            slot_pos_.resize(size_t(cap));
        }
        used_ = 0;
    }

    // Slot of `key`, created on first touch (its accumulator is already zero).
    INFOMORPH_INLINE int32_t slot(uint32_t key) {
        if (direct_) {
            const int32_t old = dmap_[key];
            const int32_t fresh = old >> 31;                 // all ones if the cell is new
            const int32_t v = (old & ~fresh) | (used_ & fresh);
            dmap_[key] = v;
            slot_key_[used_] = key;                          // kept only if the cell is new
            used_ -= fresh;
            return v;
        }
        uint32_t h = (key * 0x9E3779B1u) >> hshift_;  // Fibonacci hashing
        while (true) {
            const uint32_t k = hkey_[h];
            if (k == key) return hval_[h];
            if (k == kEmpty) break;
            h = (h + 1) & hmask_;
        }
        const int32_t v = used_++;
        hkey_[h] = key;
        hval_[h] = v;
        slot_pos_[v] = h;
        return v;
    }

    // slot() of keys[0..n) into out[0..n): the same lookups with the table's state in locals, so
    // the stores through the map cannot alias it (slot() reloads used_ after every store).
    // first (optional, [n + 1]): first[v] = the index i of the key that created slot v.
    // few: the caller expects few distinct keys (a trained layer's neuron: 25-35 joint cells of
    // 1024 samples). The map is then written only when a key is new, a rare and well-predicted
    // branch, so a key repeated in consecutive samples does not wait on the store of the one
    // before; with many distinct keys the branch-free loop is faster. Same slots either way.
    void slots_of(const uint32_t* __restrict keys, int64_t n, int32_t* __restrict out,
                  int32_t* __restrict first = nullptr, bool few = false) {
        if (direct_ && few && first) {
            int32_t* __restrict dmap = dmap_.data();
            uint32_t* __restrict sk = slot_key_.data();
            int32_t used = used_;
            for (int64_t i = 0; i < n; ++i) {
                const uint32_t key = keys[i];
                int32_t v = dmap[key];
                if (__builtin_expect(v < 0, 0)) {
                    v = used++;
                    dmap[key] = v;
                    sk[v] = key;
                    first[v] = int32_t(i);
                }
                out[i] = v;
            }
            used_ = used;
            return;
        }
        if (!direct_) {
            for (int64_t i = 0; i < n; ++i) {
                const int32_t before = used_;
                out[i] = slot(keys[i]);
                if (first && used_ != before) first[out[i]] = int32_t(i);
            }
            return;
        }
        int32_t* __restrict dmap = dmap_.data();
        uint32_t* __restrict sk = slot_key_.data();
        int32_t used = used_;
        if (first) {
            for (int64_t i = 0; i < n; ++i) {
                const uint32_t key = keys[i];
                const int32_t old = dmap[key];
                const int32_t fresh = old >> 31;
                const int32_t v = (old & ~fresh) | (used & fresh);
                dmap[key] = v;
                sk[used] = key;
                first[used] = int32_t(i);  // kept only if the slot is new, like sk
                used -= fresh;
                out[i] = v;
            }
        } else {
            for (int64_t i = 0; i < n; ++i) {
                const uint32_t key = keys[i];
                const int32_t old = dmap[key];
                const int32_t fresh = old >> 31;
                const int32_t v = (old & ~fresh) | (used & fresh);
                dmap[key] = v;
                sk[used] = key;
                used -= fresh;
                out[i] = v;
            }
        }
        used_ = used;
    }

    // Sparse reset: only the entries this neuron touched (never a sweep of all cells).
    void reset() {
        if (direct_) {
            for (int32_t v = 0; v < used_; ++v) dmap_[slot_key_[v]] = -1;
        } else {
            for (int32_t v = 0; v < used_; ++v) hkey_[slot_pos_[v]] = kEmpty;
        }
        std::fill(acc_.begin(), acc_.begin() + used_, CellAcc{0.0, 0.0, 0.0, 0.0, 0.0});
        used_ = 0;
    }

    int32_t used() const { return used_; }
    CellAcc* acc() { return acc_.data(); }

private:
    static constexpr uint32_t kEmpty = 0xFFFFFFFFu;  // cell indices are < 2^28
    bool direct_ = true;
    int32_t used_ = 0;
    std::vector<CellAcc> acc_;
    std::vector<uint32_t> slot_key_;
    std::vector<int32_t> dmap_;
    std::vector<uint32_t> hkey_;
    std::vector<int32_t> hval_;
    std::vector<uint32_t> slot_pos_;
    uint32_t hmask_ = 0, hshift_ = 0;
};

// Per-thread buffers, allocated once per thread per layer call, reused for every neuron.
struct Workspace {
    std::vector<CellTable> tab;        // [S + 1], tab[s] for subset mask s (tab[S] = joint cells)
    std::vector<int32_t> sample_uid;   // [B] joint-cell slot of each sample
    std::vector<int32_t> ubins;        // [B * n] bins of each occupied joint cell
    std::vector<int32_t> slots;        // [S][row_stride] slot of each occupied joint cell in each table
    std::vector<uint32_t> cells;       // [B] joint cell of each sample, then a subset table's keys
    std::vector<int32_t> first;        // [B + 1] first sample of each occupied joint cell
    std::vector<int32_t> tfirst;       // [S][row_stride] a joint cell of each slot of each subset table
    std::vector<int32_t> pmap;         // [2][row_stride] parent-slot -> slot map, and the creating parent slots
    std::vector<int32_t> sbins;        // [n][row_stride] bin of each sample per source
    bool few_cells = false;            // the last neuron had few joint cells (CellTable::slots_of)
    // a block of up to kBlock neurons transposed: x [neuron][source][row_stride], theta and dtheta [neuron][row_stride]
    std::vector<double> xbuf, tbuf, dbuf;
    static constexpr int kBlock = 16;
    // Transposed blocks when there is more than one neuron and the buffers stay small (<= 2 MB):
    // one pass over the layer's rows serves kBlock neurons (x rows are N n values apart, so a
    // neuron's own samples lie on B different pages), and the neuron reads its data at unit stride.
    static bool blocked(const LayerPlan& p) { return p.N > 1 && p.B * p.n <= 16384; }
    // Row stride, in elements, of the buffers holding one row of B per neuron, source or subset
    // (the transposed blocks; slots, tfirst, pmap, sbins): B + 16 elements (a cache line of float or int32).
    // With the plain B (1024 samples: 4 KB of float or int32) every row starts at the same L1 set,
    // and the transposing loop, which stores one element into each of a block's m (n + 1) rows per
    // sample, missed L1 on nearly every store: it took longer than the neurons' own work for a
    // small layer (bench/RESULTS.md, issue 14 third round).
    static int64_t row_stride(const LayerPlan& p) { return p.B + 16; }
    std::vector<double> wl;            // [2 * B] sum_a w_a l_a(y) per occupied joint cell
    std::vector<double> lcell;         // [B][2][3A + 1] local atoms per occupied joint cell (local)
    std::vector<double> lpart;         // [2A] i+ and i- of one cell and output
    // lane buffers, kHalves vectors of kVec cells per row
    // (plain double storage viewed as vd: vd is declared with 8-byte alignment for exactly this)
    std::vector<double> gath;          // [2][S][kHalves] vd: gathered m(fire), m(silent)
    std::vector<double> nd, lnd;       // [3][A][kHalves] vd: N(fire), N(silent), D and their log2
    std::vector<double> ratio;         // [2][A][kHalves] vd: M(y) / N_a(y)
    std::vector<double> red_slot;      // [A] redundancy sums of the single-subset rows
    std::vector<int32_t> dcount;       // [A][kLanes] D_a per lane (integer counts)
    std::vector<double> dl;            // [2][A][kHalves] vd: log2 N_a(y) - log2 D_a
    std::vector<double> red_lane;      // [A][kHalves] vd

    // What the buffers were sized for: a later call with the same key reuses them as they are
    // (the tables are empty again after every neuron, see CellTable::reset).
    std::vector<int64_t> key;

    static std::vector<int64_t> key_of(const LayerPlan& p) {
        // blocked(p) depends on N: a workspace sized for one neuron has no block buffers
        std::vector<int64_t> k{p.B, p.n, p.A, p.need_grad ? 1 : 0, p.local ? 1 : 0, blocked(p) ? 1 : 0};
        k.insert(k.end(), p.layout.cells.begin(), p.layout.cells.end());
        return k;
    }

    explicit Workspace(const LayerPlan& p) : key(key_of(p)) {
        tab.resize(size_t(p.S) + 1);
        for (int s = 1; s <= p.S; ++s) tab[s].init(p.layout.cells[s], p.B);
        sample_uid.resize(size_t(p.B));
        ubins.resize(size_t(p.B) * p.n);
        const int64_t rb = row_stride(p);
        slots.resize(size_t(rb) * p.S);
        cells.resize(size_t(p.B));
        first.resize(size_t(p.B) + 1);
        tfirst.resize(size_t(rb) * p.S + 1);
        pmap.resize(size_t(2) * rb + 1);
        if (blocked(p)) {  // double storage, also used for float data
            xbuf.resize(size_t(kBlock) * rb * p.n);
            tbuf.resize(size_t(kBlock) * rb);
            if (p.need_grad) dbuf.resize(size_t(kBlock) * rb);
        }
        sbins.resize(size_t(rb) * p.n);
        if (p.need_grad) wl.resize(size_t(2 * p.B));
        if (p.local) {
            lcell.resize(size_t(p.B) * 2 * (3 * p.A + 1));
            lpart.resize(size_t(2) * p.A);
        }
        gath.resize(size_t(2) * p.S * kLanes);
        nd.resize(size_t(3) * p.A * kLanes);
        lnd.resize(size_t(3) * p.A * kLanes);
        ratio.resize(size_t(2) * p.A * kLanes);
        red_slot.resize(size_t(p.A));
        dcount.resize(size_t(p.A) * kLanes);
        dl.resize(size_t(2) * p.A * kLanes);
        red_lane.resize(size_t(p.A) * kLanes);
    }
};

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define INFOMORPH_X86_VECTOR_BINNING 1
// Vector binning for the AVX2 + FMA flavour (intrinsics inside target("avx2,fma") functions: only
// that flavour calls them). One source of one neuron: x values at xs[i * row], i < B.

// The index guess of bin_index for a vector of values, and its verification against the edges:
// the result is the lower bound exactly when pad[idx] < v and !(pad[idx + 1] < v), with
// pad = {-inf, edges[0..K], +inf}. Lanes that fail (a wrong guess, NaN, -inf) are redone by
// bin_index itself, so the vector path returns bin_index's answer for every value.
constexpr int kVecBinMaxK = 62;  // the padded edge table lives on the stack
constexpr int kRegBinMaxK = 30;  // float32: the padded edge table fits in 4 + 4 registers

__attribute__((target("avx2,fma"))) inline float absmax_avx2(const float* xs, int64_t row, int64_t B) {
    const __m256i off = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(int(row)));
    const __m256 mag = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 m = _mm256_setzero_ps();
    const int64_t n8 = B & ~int64_t(7);
    for (int64_t i = 0; i < n8; i += 8)  // max_ps(a, m) returns m where a is NaN: NaN is ignored
        m = _mm256_max_ps(_mm256_and_ps(row == 1 ? _mm256_loadu_ps(xs + i) : _mm256_i32gather_ps(xs + i * row, off, 4), mag), m);
    alignas(32) float r[8];
    _mm256_store_ps(r, m);
    float s = 0.0f;
    for (int l = 0; l < 8; ++l) s = r[l] > s ? r[l] : s;
    for (int64_t i = n8; i < B; ++i) {
        const float a = std::abs(xs[i * row]);
        s = a > s ? a : s;
    }
    return s;
}

__attribute__((target("avx2,fma"))) inline double absmax_avx2(const double* xs, int64_t row, int64_t B) {
    const __m128i off = _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(int(row)));
    const __m256d mag = _mm256_castsi256_pd(_mm256_set1_epi64x(0x7FFFFFFFFFFFFFFFLL));
    __m256d m = _mm256_setzero_pd();
    const int64_t n4 = B & ~int64_t(3);
    for (int64_t i = 0; i < n4; i += 4)
        m = _mm256_max_pd(_mm256_and_pd(row == 1 ? _mm256_loadu_pd(xs + i) : _mm256_i32gather_pd(xs + i * row, off, 8), mag), m);
    alignas(32) double r[4];
    _mm256_store_pd(r, m);
    double s = 0.0;
    for (int l = 0; l < 4; ++l) s = r[l] > s ? r[l] : s;
    for (int64_t i = n4; i < B; ++i) {
        const double a = std::abs(xs[i * row]);
        s = a > s ? a : s;
    }
    return s;
}

// t[idx] for 8 indices in [0, 32) from a 32-entry table held in four registers: vpermps picks by
// bits 0-2 in each register, blends by bits 3 and 4 (shifted into the sign bit) pick the register.
__attribute__((target("avx2,fma"))) inline __m256 lookup32_avx2(const __m256* t, __m256i idx) {
    const __m256 s3 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));
    const __m256 s4 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 27));
    return _mm256_blendv_ps(
        _mm256_blendv_ps(_mm256_permutevar8x32_ps(t[0], idx), _mm256_permutevar8x32_ps(t[1], idx), s3),
        _mm256_blendv_ps(_mm256_permutevar8x32_ps(t[2], idx), _mm256_permutevar8x32_ps(t[3], idx), s3), s4);
}

// The scalar parts shared by both dtypes of bin_source_avx2: the padded edge table, the redo of
// lanes whose guess failed, the samples past the last full vector.
template <typename T>
inline void pad_edges(T* pad, const T* edges, int K) {
    pad[0] = -INFINITY;
    for (int k = 0; k <= K; ++k) pad[k + 1] = edges[k];
    pad[K + 2] = INFINITY;
}

// The guess ceil(t) (t = (v - e0) inv_width, in dtype T) is the lower bound for certain, with no
// look at the edges, where t lies farther than this margin from every integer: the margin is the
// edges' largest distance from the affine model e0 + k / inv_width (in bins) plus the rounding of t
// (three roundings in T of |t| <= tmax, counted as 8 unit roundoffs) plus a safety term. Then for
// every edge k, v > e_k exactly when t > k, so the count of edges below v is the guess. Negative:
// no value is certain (edges far from uniform, no guess scale, infinite clamps).
template <typename T>
inline double guess_margin(const T* edges, int K, T lo, T hi, double e0, double inv_width) {
    if (!(inv_width > 0.0) || !std::isfinite(double(lo)) || !std::isfinite(double(hi))) return -1.0;
    double dev = 0.0;
    for (int k = 0; k <= K; ++k) dev = std::max(dev, std::abs((double(edges[k]) - e0) * inv_width - double(k)));
    const double tmax = std::max(std::abs(double(lo) - e0), std::abs(double(hi) - e0)) * inv_width;
    const double m = dev + tmax * 4.0 * double(std::numeric_limits<T>::epsilon()) + 1e-9 * (1.0 + tmax);
    return std::isfinite(m) && m < 0.25 ? m : -1.0;
}

template <typename T>
inline void redo_failed_lanes(int fail, const T* raw, int32_t* bins, const T* edges, int K, T lo, T hi, double e0,
                              double inv_width) {
    while (fail) {
        const int l = __builtin_ctz(unsigned(fail));
        fail &= fail - 1;
        bins[l] = bin_index<T>(raw[l], edges, K, lo, hi, e0, inv_width);
    }
}

template <typename T>
inline void bin_source_tail(const T* xs, int64_t row, int64_t from, int64_t B, const T* edges, int K, T lo, T hi,
                            T scale, double e0, double inv_width, uint32_t jstride, bool first, int32_t* bins,
                            uint32_t* cells, bool& bad) {
    for (int64_t i = from; i < B; ++i) {
        T v = xs[i * row];
        bad |= !std::isfinite(v);
        if (scale > T(0)) v = v / scale;
        const int b = bin_index<T>(v, edges, K, lo, hi, e0, inv_width);
        bins[i] = b;
        cells[i] = (first ? 0u : cells[i]) + uint32_t(b) * jstride;
    }
}

// Bins of one source for all B samples into bins[i]; cells[i] = (first ? 0 : cells[i]) + b * jstride.
// scale > 0: the value is divided by it first (adaptive ranges). bad |= any x not finite.
__attribute__((target("avx2,fma"))) inline void bin_source_avx2(const float* xs, int64_t row, int64_t B,
                                                                 const float* edges, int K, float lo, float hi,
                                                                 float scale, double e0, double inv_width,
                                                                 uint32_t jstride, bool first, int32_t* bins,
                                                                 uint32_t* cells, bool& bad) {
    const int64_t n8 = K <= kVecBinMaxK ? (B & ~int64_t(7)) : 0;
    float pad[kVecBinMaxK + 3];
    if (n8 > 0) pad_edges<float>(pad, edges, K);
    // up to 30 bins (K + 3 <= 33 padded edges, indices idx <= K + 1 < 32) the table fits in four
    // registers for the lower edges pad[idx] and four for the upper ones pad[idx + 1]
    const bool in_regs = n8 > 0 && K <= kRegBinMaxK;
    __m256 lo_t[4], hi_t[4];
    if (in_regs) {
        for (int k = K + 3; k < 33; ++k) pad[k] = INFINITY;  // never an index; fills the registers
        for (int r = 0; r < 4; ++r) {
            lo_t[r] = _mm256_loadu_ps(pad + 8 * r);
            hi_t[r] = _mm256_loadu_ps(pad + 8 * r + 1);
        }
    }
    const __m256i off = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(int(row)));
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi), vsc = _mm256_set1_ps(scale);
    const __m256 ve0 = _mm256_set1_ps(float(e0)), viw = _mm256_set1_ps(float(inv_width));
    const __m256 vK = _mm256_set1_ps(float(K)), vzero = _mm256_setzero_ps();
    const __m256i one = _mm256_set1_epi32(1), izero = _mm256_setzero_si256();
    const __m256i km1 = _mm256_set1_epi32(K - 1), kp1 = _mm256_set1_epi32(K + 1);
    const __m256i vstride = _mm256_set1_epi32(int(jstride));
    const bool div = scale > 0.0f;
    // certain lanes (guess_margin): t off every integer by more than the margin, or v at a clamp
    // (clamped values sit exactly on lo or hi, whose bins are known)
    const double margin = n8 > 0 ? guess_margin<float>(edges, K, lo, hi, e0, inv_width) : -1.0;
    const bool quick = margin >= 0.0;
    const __m256 vmargin = _mm256_set1_ps(float(margin) * 1.001f);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256i blo = _mm256_set1_epi32(quick ? bin_index<float>(lo, edges, K, lo, hi, e0, inv_width) : 0);
    const __m256i bhi = _mm256_set1_epi32(quick ? bin_index<float>(hi, edges, K, lo, hi, e0, inv_width) : 0);
    __m256 nonfinite = vzero;
    for (int64_t i = 0; i < n8; i += 8) {
        __m256 v = row == 1 ? _mm256_loadu_ps(xs + i) : _mm256_i32gather_ps(xs + i * row, off, 4);
        nonfinite = _mm256_or_ps(nonfinite, _mm256_cmp_ps(_mm256_sub_ps(v, v), vzero, _CMP_NEQ_UQ));
        if (div) v = _mm256_div_ps(v, vsc);
        const __m256 raw = v;
        v = _mm256_blendv_ps(v, vlo, _mm256_cmp_ps(v, vlo, _CMP_LT_OQ));  // torch.clamp order
        v = _mm256_blendv_ps(v, vhi, _mm256_cmp_ps(vhi, v, _CMP_LT_OQ));
        const __m256 t = _mm256_mul_ps(_mm256_sub_ps(v, ve0), viw);
        // bin_index's guess: ceil(t) for 0 < t <= K, K + 1 above, 0 below (and NaN)
        __m256i idx = _mm256_cvttps_epi32(_mm256_ceil_ps(_mm256_min_ps(t, vK)));
        idx = _mm256_blendv_epi8(kp1, idx, _mm256_castps_si256(_mm256_cmp_ps(t, vK, _CMP_LE_OQ)));
        idx = _mm256_and_si256(idx, _mm256_castps_si256(_mm256_cmp_ps(t, vzero, _CMP_GT_OQ)));
        if (quick) {
            const __m256 off_int = _mm256_andnot_ps(sign, _mm256_sub_ps(t, _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
            const __m256 at_lo = _mm256_cmp_ps(v, vlo, _CMP_EQ_OQ), at_hi = _mm256_cmp_ps(v, vhi, _CMP_EQ_OQ);
            const __m256 sure = _mm256_or_ps(_mm256_cmp_ps(off_int, vmargin, _CMP_GT_OQ), _mm256_or_ps(at_lo, at_hi));
            if (_mm256_movemask_ps(sure) == 0xFF) {  // every lane certain: no edge lookups
                __m256i b = _mm256_min_epi32(_mm256_max_epi32(_mm256_sub_epi32(idx, one), izero), km1);
                b = _mm256_blendv_epi8(b, blo, _mm256_castps_si256(at_lo));
                b = _mm256_blendv_epi8(b, bhi, _mm256_castps_si256(at_hi));
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(bins + i), b);
                __m256i c = _mm256_mullo_epi32(b, vstride);
                if (!first) c = _mm256_add_epi32(c, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cells + i)));
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(cells + i), c);
                continue;
            }
        }
        __m256 elo, ehi;
        if (in_regs) {  // the table in registers: permutes and blends instead of two gathers
            elo = lookup32_avx2(lo_t, idx);
            ehi = lookup32_avx2(hi_t, idx);
        } else {
            elo = _mm256_i32gather_ps(pad, idx, 4);
            ehi = _mm256_i32gather_ps(pad + 1, idx, 4);
        }
        const __m256 ok = _mm256_andnot_ps(_mm256_cmp_ps(ehi, v, _CMP_LT_OQ), _mm256_cmp_ps(elo, v, _CMP_LT_OQ));
        __m256i b = _mm256_min_epi32(_mm256_max_epi32(_mm256_sub_epi32(idx, one), izero), km1);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(bins + i), b);
        int fail = ~_mm256_movemask_ps(ok) & 0xFF;
        if (fail) {
            alignas(32) float r[8];
            _mm256_store_ps(r, raw);
            redo_failed_lanes<float>(fail, r, bins + i, edges, K, lo, hi, e0, inv_width);
            b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bins + i));
        }
        __m256i c = _mm256_mullo_epi32(b, vstride);
        if (!first) c = _mm256_add_epi32(c, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cells + i)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(cells + i), c);
    }
    bad |= _mm256_movemask_ps(nonfinite) != 0;
    bin_source_tail<float>(xs, row, n8, B, edges, K, lo, hi, scale, e0, inv_width, jstride, first, bins, cells, bad);
}

// The same steps on 4 double lanes (integer lanes narrowed from the 64-bit compares). The intrinsic
// families differ throughout, so the two dtypes are written out instead of wrapped in a traits layer
// as long as the wrapper would be the longer code.
__attribute__((target("avx2,fma"))) inline void bin_source_avx2(const double* xs, int64_t row, int64_t B,
                                                                 const double* edges, int K, double lo, double hi,
                                                                 double scale, double e0, double inv_width,
                                                                 uint32_t jstride, bool first, int32_t* bins,
                                                                 uint32_t* cells, bool& bad) {
    const int64_t n4 = K <= kVecBinMaxK ? (B & ~int64_t(3)) : 0;
    double pad[kVecBinMaxK + 3];
    if (n4 > 0) pad_edges<double>(pad, edges, K);
    const __m128i off = _mm_mullo_epi32(_mm_setr_epi32(0, 1, 2, 3), _mm_set1_epi32(int(row)));
    const __m256d vlo = _mm256_set1_pd(lo), vhi = _mm256_set1_pd(hi), vsc = _mm256_set1_pd(scale);
    const __m256d ve0 = _mm256_set1_pd(e0), viw = _mm256_set1_pd(inv_width);
    const __m256d vK = _mm256_set1_pd(double(K)), vzero = _mm256_setzero_pd();
    const __m128i one = _mm_set1_epi32(1), izero = _mm_setzero_si128();
    const __m128i km1 = _mm_set1_epi32(K - 1), kp1 = _mm_set1_epi32(K + 1);
    const __m128i vstride = _mm_set1_epi32(int(jstride));
    const bool div = scale > 0.0;
    // certain lanes as in the float flavour (guess_margin)
    const double margin = n4 > 0 ? guess_margin<double>(edges, K, lo, hi, e0, inv_width) : -1.0;
    const bool quick = margin >= 0.0;
    const __m256d vmargin = _mm256_set1_pd(margin * 1.001), sign = _mm256_set1_pd(-0.0), mone = _mm256_set1_pd(-1.0);
    const __m128i blo = _mm_set1_epi32(quick ? bin_index<double>(lo, edges, K, lo, hi, e0, inv_width) : 0);
    const __m128i bhi = _mm_set1_epi32(quick ? bin_index<double>(hi, edges, K, lo, hi, e0, inv_width) : 0);
    __m256d nonfinite = vzero;
    for (int64_t i = 0; i < n4; i += 4) {
        __m256d v = row == 1 ? _mm256_loadu_pd(xs + i) : _mm256_i32gather_pd(xs + i * row, off, 8);
        nonfinite = _mm256_or_pd(nonfinite, _mm256_cmp_pd(_mm256_sub_pd(v, v), vzero, _CMP_NEQ_UQ));
        if (div) v = _mm256_div_pd(v, vsc);
        const __m256d raw = v;
        v = _mm256_blendv_pd(v, vlo, _mm256_cmp_pd(v, vlo, _CMP_LT_OQ));
        v = _mm256_blendv_pd(v, vhi, _mm256_cmp_pd(vhi, v, _CMP_LT_OQ));
        const __m256d t = _mm256_mul_pd(_mm256_sub_pd(v, ve0), viw);
        // bin_index's guess: ceil(t) for 0 < t <= K, K + 1 above, 0 below (and NaN); t <= K and
        // t > 0 as int32 masks (the low half of each 64-bit compare lane)
        const __m128i le = _mm256_cvtpd_epi32(_mm256_and_pd(_mm256_cmp_pd(t, vK, _CMP_LE_OQ), _mm256_set1_pd(-1.0)));
        const __m128i gt = _mm256_cvtpd_epi32(_mm256_and_pd(_mm256_cmp_pd(t, vzero, _CMP_GT_OQ), _mm256_set1_pd(-1.0)));
        __m128i idx = _mm256_cvttpd_epi32(_mm256_ceil_pd(_mm256_min_pd(t, vK)));
        idx = _mm_blendv_epi8(kp1, idx, le);
        idx = _mm_and_si128(idx, gt);
        if (quick) {
            const __m256d off_int = _mm256_andnot_pd(sign, _mm256_sub_pd(t, _mm256_round_pd(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
            const __m256d at_lo = _mm256_cmp_pd(v, vlo, _CMP_EQ_OQ), at_hi = _mm256_cmp_pd(v, vhi, _CMP_EQ_OQ);
            const __m256d sure = _mm256_or_pd(_mm256_cmp_pd(off_int, vmargin, _CMP_GT_OQ), _mm256_or_pd(at_lo, at_hi));
            if (_mm256_movemask_pd(sure) == 0xF) {  // every lane certain: no edge lookups
                __m128i b = _mm_min_epi32(_mm_max_epi32(_mm_sub_epi32(idx, one), izero), km1);
                b = _mm_blendv_epi8(b, blo, _mm256_cvtpd_epi32(_mm256_and_pd(at_lo, mone)));
                b = _mm_blendv_epi8(b, bhi, _mm256_cvtpd_epi32(_mm256_and_pd(at_hi, mone)));
                _mm_storeu_si128(reinterpret_cast<__m128i*>(bins + i), b);
                __m128i c = _mm_mullo_epi32(b, vstride);
                if (!first) c = _mm_add_epi32(c, _mm_loadu_si128(reinterpret_cast<const __m128i*>(cells + i)));
                _mm_storeu_si128(reinterpret_cast<__m128i*>(cells + i), c);
                continue;
            }
        }
        const __m256d elo = _mm256_i32gather_pd(pad, idx, 8);
        const __m256d ehi = _mm256_i32gather_pd(pad + 1, idx, 8);
        const __m256d ok = _mm256_andnot_pd(_mm256_cmp_pd(ehi, v, _CMP_LT_OQ), _mm256_cmp_pd(elo, v, _CMP_LT_OQ));
        __m128i b = _mm_min_epi32(_mm_max_epi32(_mm_sub_epi32(idx, one), izero), km1);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(bins + i), b);
        int fail = ~_mm256_movemask_pd(ok) & 0xF;
        if (fail) {
            alignas(32) double r[4];
            _mm256_store_pd(r, raw);
            redo_failed_lanes<double>(fail, r, bins + i, edges, K, lo, hi, e0, inv_width);
            b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(bins + i));
        }
        __m128i c = _mm_mullo_epi32(b, vstride);
        if (!first) c = _mm_add_epi32(c, _mm_loadu_si128(reinterpret_cast<const __m128i*>(cells + i)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(cells + i), c);
    }
    bad |= _mm256_movemask_pd(nonfinite) != 0;
    bin_source_tail<double>(xs, row, n4, B, edges, K, lo, hi, scale, e0, inv_width, jstride, first, bins, cells, bad);
}
#endif

// log2 of 8 integer counts (the lanes of d, each in [1, table size)) into out[0..kHalves).
template <bool kFma>
INFOMORPH_INLINE void log2_of_counts(const double* __restrict table, const vi8& d, vd* out) {
    for (int h = 0; h < kHalves; ++h)
        for (int e = 0; e < kVec; ++e) out[h][e] = table[d[h * kVec + e]];
}
#ifdef INFOMORPH_X86_VECTOR_BINNING
template <>
__attribute__((target("avx2,fma"))) inline void log2_of_counts<true>(const double* __restrict table,
                                                                                const vi8& d, vd* out) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(&d));  // d is only 4-byte aligned
    const __m256d lo = _mm256_i32gather_pd(table, _mm256_castsi256_si128(v), 8);
    const __m256d hi = _mm256_i32gather_pd(table, _mm256_extracti128_si256(v, 1), 8);
    out[0] = reinterpret_cast<const vd&>(lo);
    out[1] = reinterpret_cast<const vd&>(hi);
}
#endif

// dst[c * dst_stride + r] = src[r * src_stride + c] for r < rows, c < cols: the layer's blocks of
// rows (run_layer) turned into per-neuron rows and back. Scalar here; the AVX2 flavour below moves
// 8 x 8 floats (4 x 4 doubles) through registers, one vector store per destination row.
template <typename T>
inline void transpose_rows(const T* __restrict src, int64_t src_stride, int64_t rows, int64_t cols,
                           T* __restrict dst, int64_t dst_stride) {
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) dst[c * dst_stride + r] = src[r * src_stride + c];
}
#ifdef INFOMORPH_X86_VECTOR_BINNING
// One register tile: W x W values, rows ss apart from s0, into W rows ds apart from d0.
__attribute__((target("avx2"))) inline void transpose_tile_avx2(const float* __restrict s0, int64_t ss,
                                                                float* __restrict d0, int64_t ds) {
    const __m256 a0 = _mm256_loadu_ps(s0), a1 = _mm256_loadu_ps(s0 + ss);
    const __m256 a2 = _mm256_loadu_ps(s0 + 2 * ss), a3 = _mm256_loadu_ps(s0 + 3 * ss);
    const __m256 a4 = _mm256_loadu_ps(s0 + 4 * ss), a5 = _mm256_loadu_ps(s0 + 5 * ss);
    const __m256 a6 = _mm256_loadu_ps(s0 + 6 * ss), a7 = _mm256_loadu_ps(s0 + 7 * ss);
    const __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
    const __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
    const __m256 t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5);
    const __m256 t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(d0, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(d0 + ds, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(d0 + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(d0 + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(d0 + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(d0 + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(d0 + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(d0 + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}
__attribute__((target("avx2"))) inline void transpose_tile_avx2(const double* __restrict s0, int64_t ss,
                                                                double* __restrict d0, int64_t ds) {
    const __m256d a0 = _mm256_loadu_pd(s0), a1 = _mm256_loadu_pd(s0 + ss);
    const __m256d a2 = _mm256_loadu_pd(s0 + 2 * ss), a3 = _mm256_loadu_pd(s0 + 3 * ss);
    const __m256d t0 = _mm256_unpacklo_pd(a0, a1), t1 = _mm256_unpackhi_pd(a0, a1);
    const __m256d t2 = _mm256_unpacklo_pd(a2, a3), t3 = _mm256_unpackhi_pd(a2, a3);
    _mm256_storeu_pd(d0, _mm256_permute2f128_pd(t0, t2, 0x20));
    _mm256_storeu_pd(d0 + ds, _mm256_permute2f128_pd(t1, t3, 0x20));
    _mm256_storeu_pd(d0 + 2 * ds, _mm256_permute2f128_pd(t0, t2, 0x31));
    _mm256_storeu_pd(d0 + 3 * ds, _mm256_permute2f128_pd(t1, t3, 0x31));
}
// transpose_rows in W x W register tiles (W = 32 bytes / sizeof(T)); the edges (the last cols % W
// columns of each band of W rows, the last rows % W rows) go through the scalar transpose_rows
template <typename T>
__attribute__((target("avx2"))) inline void transpose_rows_avx2(const T* __restrict src, int64_t ss, int64_t rows,
                                                                int64_t cols, T* __restrict dst, int64_t ds) {
    constexpr int64_t W = 32 / sizeof(T);
    int64_t r = 0;
    for (; r + W <= rows; r += W) {
        int64_t c = 0;
        for (; c + W <= cols; c += W) transpose_tile_avx2(src + r * ss + c, ss, dst + c * ds + r, ds);
        transpose_rows(src + r * ss + c, ss, W, cols - c, dst + c * ds + r, ds);
    }
    transpose_rows(src + r * ss, ss, rows - r, cols, dst + r, ds);
}
#endif

// One neuron. T: input/output dtype (float or double); NSRC: number of sources (compile time, so the
// loops over sources and subsets unroll); kFma: the AVX2 + FMA flavour (see pid_neuron_avx2).
template <typename T, int NSRC, bool kFma>
INFOMORPH_INLINE void pid_neuron_body(const LayerPlan& p, Workspace& ws, int64_t neuron,
                                      const NeuronIO<T>& io,
                                      const T* __restrict edges, const T* __restrict clamp_lo,
                                      const T* __restrict clamp_hi, T* __restrict red,
                                      T* __restrict h_y, T* __restrict goal, int& status,
                                      const LocalOut<T>& lout) {
    constexpr int S = (1 << NSRC) - 1;
    constexpr int L = kLanes;
    const int64_t B = p.B;
    const int64_t RB = Workspace::row_stride(p);  // row stride of the [rows][B] buffers (no L1 set conflicts)
    const int A = p.A;
    const uint32_t* __restrict stride = p.layout.stride.data();

    // ---- 1. binning (contract rule, in dtype T) and dedup of joint cells ----
    INFOMORPH_PHASE_START
    T lo[NSRC], hi[NSRC], scale[NSRC];
    double e0[NSRC], inv_width[NSRC];
    int K[NSRC];
    uint32_t jstride[NSRC];
    for (int j = 0; j < NSRC; ++j) {
        lo[j] = clamp_lo[j];
        hi[j] = clamp_hi[j];
        K[j] = p.K[j];
        e0[j] = double(edges[j * p.edge_stride]);
        inv_width[j] = bin_guess_scale(edges + j * p.edge_stride, K[j]);
        jstride[j] = stride[S * NSRC + j];
        scale[j] = T(0);
    }
    const int64_t row = io.xi, xj = io.xj;  // x's strides between samples and between sources
    const T* __restrict xn = io.x;
#ifdef INFOMORPH_X86_VECTOR_BINNING
    // the vector flavour gathers 8 (float) or 4 (double) samples at a time with int32 offsets
    const bool vec_bin = kFma && int64_t(8) * row < (int64_t(1) << 31);
#else
    const bool vec_bin = false;
#endif
    if (p.adaptive) {
        if (vec_bin) {
#ifdef INFOMORPH_X86_VECTOR_BINNING
            if constexpr (kFma)
                for (int j = 0; j < NSRC; ++j) scale[j] = absmax_avx2(xn + j * xj, row, B);
#endif
        } else {
            for (int64_t i = 0; i < B; ++i) {
                const T* xi = xn + i * row;
                for (int j = 0; j < NSRC; ++j) {
                    const T a = std::abs(xi[j * xj]);
                    scale[j] = a > scale[j] ? a : scale[j];
                }
            }
        }
    }
    // 1a. bins of every sample per source (sbins) and its joint cell (cells)
    uint32_t* __restrict cells = ws.cells.data();
    int32_t* __restrict sbins = ws.sbins.data();
    bool bad_x = false, bad_t = false;
    bool done = false;
#ifdef INFOMORPH_X86_VECTOR_BINNING
    if constexpr (kFma) {
        if (vec_bin) {
            for (int j = 0; j < NSRC; ++j) {
                const T sc = p.adaptive && scale[j] > T(0) ? scale[j] : T(0);
                bin_source_avx2(xn + j * xj, row, B, edges + j * p.edge_stride, K[j], lo[j], hi[j], sc, e0[j],
                                inv_width[j], jstride[j], j == 0, sbins + j * RB, cells, bad_x);
            }
            done = true;
        }
    }
#endif
    if (!done) {
        for (int64_t i = 0; i < B; ++i) {
            const T* xi = xn + i * row;
            uint32_t cell = 0;
            for (int j = 0; j < NSRC; ++j) {
                T v = xi[j * xj];
                bad_x |= !std::isfinite(v);
                if (p.adaptive && scale[j] > T(0)) v = v / scale[j];  // one IEEE division in dtype T
                const int b = bin_index<T>(v, edges + j * p.edge_stride, K[j], lo[j], hi[j], e0[j], inv_width[j]);
                sbins[j * RB + i] = b;
                cell += uint32_t(b) * jstride[j];
            }
            cells[i] = cell;
        }
    }
    INFOMORPH_PHASE(13)
    // 1b. joint-cell slot of every sample (first-appearance order)
    CellTable& joint = ws.tab[S];
    int32_t* __restrict sample_uid = ws.sample_uid.data();
    int32_t* __restrict ubins = ws.ubins.data();
    int32_t* __restrict first = ws.first.data();
    joint.slots_of(cells, B, sample_uid, first, ws.few_cells);
    INFOMORPH_PHASE(14)
    const int32_t U = joint.used();
    ws.few_cells = int64_t(U) * 16 <= B;  // a hint for the next neuron of this workspace (speed only)
    // 1c. theta mass and count per joint cell, the bins of each occupied cell (from its first sample)
    double P0 = 0.0, P1 = 0.0;  // raw sums of theta(fire), theta(silent): p(y) = P_y / B
    {
        CellAcc* __restrict jacc = joint.acc();
        for (int64_t i = 0; i < B; ++i) {
            const int32_t u = sample_uid[i];
            // theta(silent) = 1 - theta(fire) per sample in double, never count - sum (cancellation)
            const double t0 = double(io.theta[i * io.ti]);
            bad_t |= !(t0 >= 0.0 && t0 <= 1.0);  // NaN too
            CellAcc& c = jacc[u];
            c.m0 += t0;
            c.m1 += 1.0 - t0;
            c.cnt += 1.0;
        }
        for (int32_t u = 0; u < U; ++u) {
            for (int j = 0; j < NSRC; ++j) ubins[u * NSRC + j] = sbins[j * RB + first[u]];
            P0 += jacc[u].m0;  // summed over the cells: the same sums, another rounding order
            P1 += jacc[u].m1;
        }
    }
    INFOMORPH_PHASE(0)
    if (p.check_values) status |= (bad_x ? kBadSources : 0) | (bad_t ? kBadTheta : 0);

    // ---- 2. fold the occupied joint cells into the proper-subset tables ----
    // slots[s * RB + u]: slot of joint cell u in the table of subset mask s + 1 (s = S - 1: u itself)
    int32_t* __restrict slots = ws.slots.data();
    CellAcc* accp[S];
    for (int s = 0; s < S; ++s) accp[s] = ws.tab[s + 1].acc();
    // Tables by decreasing size: those of n - 1 sources from the joint cells, every smaller one from
    // a table of one more source (its parent), whose slots are fewer than the joint cells. tfirst[s]
    // holds, per slot of table s, one joint cell in it (whose bins give the slot's key).
    int32_t* __restrict tfirst = ws.tfirst.data();  // [S][B]
    int32_t* __restrict pmap = ws.pmap.data();      // [B] parent slot -> slot
    for (int size = NSRC - 1; size >= 1; --size) {
        for (int s = 1; s < S; ++s) {
            if (__builtin_popcount(unsigned(s)) != size) continue;
            uint32_t* __restrict keys = cells;  // the samples' joint cells are no longer needed
            int32_t* __restrict sl = slots + (s - 1) * RB;
            int32_t* __restrict first_s = tfirst + (s - 1) * RB;
            CellAcc* __restrict acc = accp[s - 1];
            if (size == NSRC - 1) {
                for (int32_t u = 0; u < U; ++u) {
                    const int32_t* bu = ubins + u * NSRC;
                    uint32_t cell = 0;
                    for (int j = 0; j < NSRC; ++j) cell += uint32_t(bu[j]) * stride[s * NSRC + j];
                    keys[u] = cell;
                }
                ws.tab[s].slots_of(keys, U, sl, first_s);
                const CellAcc* __restrict jacc = accp[S - 1];
                for (int32_t u = 0; u < U; ++u) {
                    CellAcc& c = acc[sl[u]];
                    c.m0 += jacc[u].m0;
                    c.m1 += jacc[u].m1;
                    c.cnt += jacc[u].cnt;
                }
            } else {
                int low = 0;  // parent: s plus its lowest missing source
                while (s & (1 << low)) ++low;
                const int par = s | (1 << low);
                const int32_t np = ws.tab[par].used();
                const int32_t* __restrict first_p = tfirst + (par - 1) * RB;
                for (int32_t v = 0; v < np; ++v) {
                    const int32_t* bu = ubins + first_p[v] * NSRC;
                    uint32_t cell = 0;
                    for (int j = 0; j < NSRC; ++j) cell += uint32_t(bu[j]) * stride[s * NSRC + j];
                    keys[v] = cell;
                }
                int32_t* __restrict made = pmap + RB;  // parent slot that created each slot of s
                ws.tab[s].slots_of(keys, np, pmap, made);
                const int32_t ns = ws.tab[s].used();
                for (int32_t w = 0; w < ns; ++w) first_s[w] = first_p[made[w]];
                const CellAcc* __restrict pacc = accp[par - 1];
                for (int32_t v = 0; v < np; ++v) {
                    CellAcc& c = acc[pmap[v]];
                    c.m0 += pacc[v].m0;
                    c.m1 += pacc[v].m1;
                    c.cnt += pacc[v].cnt;
                }
                const int32_t* __restrict slp = slots + (par - 1) * RB;
                for (int32_t u = 0; u < U; ++u) sl[u] = pmap[slp[u]];
            }
        }
    }
    for (int32_t u = 0; u < U; ++u) slots[(S - 1) * RB + u] = u;
    INFOMORPH_PHASE(1)

    // ---- 3. kLanes occupied joint cells at a time: N, D, logs, redundancies, T scatter ----
    const double invB = 1.0 / double(B);
    const double p0 = P0 * invB, p1 = P1 * invB;
    const double lp[2] = {P0 > 0.0 ? std::log2(p0) : 0.0, P1 > 0.0 ? std::log2(p1) : 0.0};
    const double H = (P0 > 0.0 ? -p0 * lp[0] : 0.0) + (P1 > 0.0 ? -p1 * lp[1] : 0.0);

    const int* __restrict row_ptr = p.ccoef.row_ptr.data();
    const int* __restrict row_col = p.ccoef.row_col.data();
    const double* __restrict row_val = p.ccoef.row_val.data();
    const int* __restrict col_ptr = p.ccoef.col_ptr.data();
    const int* __restrict col_row = p.ccoef.col_row.data();
    const double* __restrict col_val = p.ccoef.col_val.data();
    const double* __restrict wd = p.cw.data();  // weights of the cell rows
    const int Ac = p.Ac;
    const double sum_cw = p.ccoef.sum_w;
    const double* __restrict log2_int = p.log2_int ? p.log2_int->data() : nullptr;
    const bool int_table = log2_int != nullptr;
    constexpr int V = kHalves;
    vd* __restrict gm0 = reinterpret_cast<vd*>(ws.gath.data());           // [S][V]
    vd* __restrict gm1 = gm0 + S * V;              // [S][V]
    vd* __restrict nd = reinterpret_cast<vd*>(ws.nd.data());              // [3][A][V]: N(fire), N(silent), D
    vd* __restrict lnd = reinterpret_cast<vd*>(ws.lnd.data());            // log2 of nd
    vd* __restrict ratio = reinterpret_cast<vd*>(ws.ratio.data());        // [A][V]
    vd* __restrict red_lane = reinterpret_cast<vd*>(ws.red_lane.data());  // [A][V]
    double* __restrict wl = p.need_grad ? ws.wl.data() : nullptr;
    double* __restrict lcell = lout.inf != nullptr ? ws.lcell.data() : nullptr;  // [U][2][3A + 1]
    const double log2B = std::log2(double(B));
    for (int i = 0; i < Ac * V; ++i) red_lane[i] = vsplat(0.0);
    INFOMORPH_PHASE(15)

    // 3a. single-subset rows a = {s} per slot of table s: N_a(y) = m_s(y), D_a = count_s there, so
    // the cells of a slot share log2 N_a - log2 D_a. Forward: sum over slots of sum_y m (log2 m -
    // log2 count). Backward (summed over the cells of the slot): sum_a w_a l_a(y) and the scatter
    // M / N_a summed over the slot's cells, which is [m > 0]; both go into T_s(y, slot), which
    // step 4 gathers as (1/ln2) T: T += w_a ([m > 0] + ln2 l_a(y)) with l_a = 0 where m = 0.
    double* __restrict red_slot = ws.red_slot.data();
    for (size_t q = 0; q < p.slot_row.size(); ++q) {
        const int a = p.slot_row[q], sub = p.slot_sub[q];
        CellAcc* __restrict acc = accp[sub];
        const int32_t used = ws.tab[sub + 1].used();
        const double wa = p.need_grad ? p.w[size_t(a)] : 0.0;
        const double ln2 = 1.0 / kInvLn2;
        vd rsum = vsplat(0.0);
        for (int32_t v0 = 0; v0 < used; v0 += kVec) {
            const int nv = std::min<int32_t>(kVec, used - v0);
            vd m0 = vsplat(0.0), m1 = vsplat(0.0), cn = vsplat(1.0);  // padding: m = 0 adds nothing
            for (int e = 0; e < nv; ++e) {
                m0[e] = acc[v0 + e].m0;
                m1[e] = acc[v0 + e].m1;
                cn[e] = acc[v0 + e].cnt;
            }
            vd lc;
            if (int_table) {
                for (int e = 0; e < kVec; ++e) lc[e] = log2_int[int64_t(cn[e])];
            } else {
                lc = log2v<kFma>(cn);
            }
            const vd d0 = log2v<kFma>(m0) - lc, d1 = log2v<kFma>(m1) - lc;
            rsum += m0 * d0 + m1 * d1;
            if (p.need_grad) {
                const vd g0 = vselect(m0 > 0.0, wa * (1.0 + ln2 * (d0 - lp[0])), vsplat(0.0));
                const vd g1 = vselect(m1 > 0.0, wa * (1.0 + ln2 * (d1 - lp[1])), vsplat(0.0));
                for (int e = 0; e < nv; ++e) {
                    acc[v0 + e].t0 += g0[e];
                    acc[v0 + e].t1 += g1[e];
                }
            }
        }
        red_slot[q] = rsum[0] + rsum[1] + rsum[2] + rsum[3];
    }
    INFOMORPH_PHASE(15)

    for (int32_t u0 = 0; u0 < U; u0 += L) {
        const int nl = std::min<int32_t>(L, U - u0);
        // gather the 2^n - 1 marginals of each cell; padding lanes get m = 0, count = 1, which
        // makes N = 0, D = 1 and weight M = 0: they contribute exactly nothing
        for (int s = 0; s < S; ++s)
            for (int h = 0; h < V; ++h) {
                gm0[s * V + h] = vsplat(0.0);
                gm1[s * V + h] = vsplat(0.0);
            }
        vi8 gci[S];  // the counts as integers (exact: at most B <= 2^27)
        for (int s = 0; s < S; ++s) gci[s] = vi8{1, 1, 1, 1, 1, 1, 1, 1};
        for (int l = 0; l < nl; ++l) {
            const int32_t uu = u0 + l;
            const int h = l / kVec, e = l % kVec;
            for (int s = 0; s < S; ++s) {
                const CellAcc& c = accp[s][slots[s * RB + uu]];
                gm0[s * V + h][e] = c.m0;
                gm1[s * V + h][e] = c.m1;
                gci[s][l] = int32_t(c.cnt);
            }
        }
        INFOMORPH_PHASE(2)
        const vd* M0 = gm0 + (S - 1) * V;  // the joint cell's own theta mass M(y) and count
        const vd* M1 = gm1 + (S - 1) * V;
        const vi8 Cn = gci[S - 1];
        // N_a(y) = C m(y), D_a = C count (in integers: exact), with the lower bounds of the header
        // comment; dcount[a] holds D_a of the 8 lanes
        vi8* __restrict dcount = reinterpret_cast<vi8*>(ws.dcount.data());
        for (int a = 0; a < Ac; ++a) {
            vd n0[V], n1[V];
            vi8 d = vi8{0, 0, 0, 0, 0, 0, 0, 0};
            for (int h = 0; h < V; ++h) n0[h] = n1[h] = vsplat(0.0);
            for (int k = row_ptr[a]; k < row_ptr[a + 1]; ++k) {
                const int s = row_col[k];
                const double c = row_val[k];
                const vd vc = vsplat(c);
                for (int h = 0; h < V; ++h) {
                    n0[h] = vfma<kFma>(vc, gm0[s * V + h], n0[h]);
                    n1[h] = vfma<kFma>(vc, gm1[s * V + h], n1[h]);
                }
                if (c == 1.0)
                    d += gci[s];
                else if (c == -1.0)
                    d -= gci[s];
                else
                    d += gci[s] * int32_t(c);
            }
            for (int h = 0; h < V; ++h) {
                nd[a * V + h] = vmax(n0[h], M0[h]);
                nd[(Ac + a) * V + h] = vmax(n1[h], M1[h]);
            }
            dcount[a] = d > Cn ? d : Cn;  // D >= the cell's own count (exact in integers anyway)
        }
        INFOMORPH_PHASE(3)
        for (int i = 0; i < 2 * Ac * V; ++i) lnd[i] = log2v<kFma>(nd[i]);
        if (int_table) {  // D is an exact integer in [1, B]: read log2 D from the table
            for (int a = 0; a < Ac; ++a) log2_of_counts<kFma>(log2_int, dcount[a], lnd + (2 * Ac + a) * V);
        } else {
            for (int a = 0; a < Ac; ++a)
                for (int h = 0; h < V; ++h) {
                    vd dv;
                    for (int e = 0; e < kVec; ++e) dv[e] = double(dcount[a][h * kVec + e]);
                    lnd[(2 * Ac + a) * V + h] = log2v<kFma>(dv);
                }
        }
        INFOMORPH_PHASE(4)
        const vd* l0 = lnd;
        const vd* l1 = lnd + Ac * V;
        const vd* ld = lnd + 2 * Ac * V;
        // redundancies: M(y) = 0 multiplies the (finite) log of N = 0 by 0. dl = log2 N - log2 D
        // (both outputs) serves the backward too.
        vd* __restrict dl = reinterpret_cast<vd*>(ws.dl.data());  // [2][Ac][V]
        for (int a = 0; a < Ac; ++a)
            for (int h = 0; h < V; ++h) {
                const int i = a * V + h;
                dl[i] = l0[i] - ld[i];
                dl[Ac * V + i] = l1[i] - ld[i];
                red_lane[i] += M0[h] * dl[i] + M1[h] * dl[Ac * V + i];
            }
        INFOMORPH_PHASE(5)
        if (lcell != nullptr) {
            // local atoms of each occupied realization (y, cell), SxPID's definitions:
            // i+ = -log2 D_a = log2 B - log2 D_raw, i- = log2 p(y) - log2 N_a(y) = lp + log2 B - log2 N_raw,
            // each inverted over the lattice (sparse Moebius rows); local H_res = -log2 p(y | cell)
            // = log2 count - log2 M(y) (the full set: N = M, D = count)
            const int F = p.local_full;
            const int W = 3 * A + 1;
            const int* __restrict mptr = p.moebius_ptr.data();
            const int* __restrict mcol = p.moebius_col.data();
            const double* __restrict mval = p.moebius_val.data();
            double* __restrict plus = ws.lpart.data();       // [A]
            double* __restrict minus = plus + A;             // [A]
            for (int l = 0; l < nl; ++l) {
                const int h = l / kVec, e = l % kVec;
                double* cell = lcell + int64_t(u0 + l) * 2 * W;
                for (int a = 0; a < A; ++a) plus[a] = log2B - ld[a * V + h][e];
                bool inf_done = false;
                for (int y = 0; y < 2; ++y) {
                    double* out = cell + (1 - y) * W;  // outputs: 0 = silent, 1 = fire
                    const double My = (y == 0 ? M0 : M1)[h][e];
                    const vd* ly = y == 0 ? l0 : l1;
                    if (!(My > 0.0)) {
                        std::fill(out, out + W, 0.0);
                        continue;
                    }
                    for (int a = 0; a < A; ++a) minus[a] = lp[y] + log2B - ly[a * V + h][e];
                    double* inf = out;
                    double* mis = out + A;
                    double* atoms = out + 2 * A;
                    if (!inf_done) {
                        for (int k = 0; k < A; ++k) {
                            double v = 0.0;
                            for (int q = mptr[k]; q < mptr[k + 1]; ++q) v += mval[q] * plus[mcol[q]];
                            inf[k] = v;
                        }
                        inf_done = true;
                    } else {
                        const double* other = cell + W;  // the fire block was written first (y = 0)
                        std::copy(other, other + A, inf);
                    }
                    for (int k = 0; k < A; ++k) {
                        double v = 0.0;
                        for (int q = mptr[k]; q < mptr[k + 1]; ++q) v += mval[q] * minus[mcol[q]];
                        mis[k] = v;
                        atoms[k] = inf[k] - v;
                    }
                    out[3 * A] = ld[F * V + h][e] - ly[F * V + h][e];
                }
            }
        }
        INFOMORPH_PHASE(6)
        if (!p.need_grad) continue;

        for (int y = 0; y < 2; ++y) {
            const vd* ny = nd + y * Ac * V;
            const vd* My = y == 0 ? M0 : M1;
            const double lpy = lp[y];
            // sum_a w_a l_a(y) with l := 0 where N_a(y) = 0: a sample with theta_j(y) = 0 still
            // receives this term of its gradient
            vd acc[V];
            for (int h = 0; h < V; ++h) acc[h] = vsplat(0.0);
            const vd* dly = dl + y * Ac * V;
            bool all_mass = true;  // M(y) > 0 in every lane: then N_a(y) >= M(y) > 0 for every a
            for (int h = 0; h < V; ++h)
                for (int e = 0; e < kVec; ++e) all_mass &= My[h][e] > 0.0;
            if (all_mass) {
                for (int a = 0; a < Ac; ++a) {
                    const vd wa = vsplat(wd[a]);
                    for (int h = 0; h < V; ++h) acc[h] = vfma<kFma>(wa, dly[a * V + h], acc[h]);
                }
                for (int h = 0; h < V; ++h) acc[h] -= lpy * sum_cw;
            } else {
                for (int a = 0; a < Ac; ++a) {
                    const double wa = wd[a];
                    for (int h = 0; h < V; ++h) {
                        const int i = a * V + h;
                        acc[h] += vselect(ny[i] > 0.0, wa * (dly[i] - lpy), vsplat(0.0));
                    }
                }
            }
            for (int l = 0; l < nl; ++l) wl[2 * (u0 + l) + y] = acc[l / kVec][l % kVec];
            INFOMORPH_PHASE(7)
            // u summed over the cell: M(y) sum_a w_a C[a, s] / N_a(y); M / N <= 1 since N >= M,
            // and M = N = 0 gives 0 / 1
            vd* ry = ratio + y * Ac * V;
            for (int i = 0; i < Ac * V; ++i)
                ry[i] = My[i % V] / vselect(ny[i] > 0.0, ny[i], vsplat(1.0));
            INFOMORPH_PHASE(8)
        }
        // second scatter, both outputs at once: T_s(y, cell_s) += u
        for (int s = 0; s < S; ++s) {
            vd v0[V], v1[V];
            for (int h = 0; h < V; ++h) v0[h] = v1[h] = vsplat(0.0);
            for (int k = col_ptr[s]; k < col_ptr[s + 1]; ++k) {
                const vd vc = vsplat(col_val[k]);
                const vd* r0 = ratio + col_row[k] * V;
                const vd* r1 = r0 + Ac * V;
                for (int h = 0; h < V; ++h) {
                    v0[h] = vfma<kFma>(vc, r0[h], v0[h]);
                    v1[h] = vfma<kFma>(vc, r1[h], v1[h]);
                }
            }
            if (col_ptr[s] == col_ptr[s + 1]) continue;
            const int32_t* __restrict sl = slots + s * RB + u0;
            CellAcc* __restrict as = accp[s];
            for (int l = 0; l < nl; ++l) {
                CellAcc& c = as[sl[l]];
                c.t0 += v0[l / kVec][l % kVec];
                c.t1 += v1[l / kVec][l % kVec];
            }
        }
        INFOMORPH_PHASE(9)
    }

    // the goal G = sum_a w_a I(a) + gamma_h H(Y) from the float64 redundancies (goal: optional)
    double gsum = p.gamma_h * H;
    for (int k = 0; k < Ac; ++k) {
        double r = 0.0;
        for (int l = 0; l < L; ++l) r += red_lane[k * V + l / kVec][l % kVec];
        const int a = p.cell_rows[size_t(k)];
        const double ra = r * invB + H;
        red[neuron * A + a] = T(ra);
        if (goal) gsum += p.w[size_t(a)] * ra;
    }
    for (size_t q = 0; q < p.slot_row.size(); ++q) {
        const int a = p.slot_row[q];
        const double ra = red_slot[q] * invB + H;
        red[neuron * A + a] = T(ra);
        if (goal) gsum += p.w[size_t(a)] * ra;
    }
    h_y[neuron] = T(H);
    if (goal) goal[neuron] = T(gsum);
    INFOMORPH_PHASE(10)

    // ---- 4. backward, part 2: gather T per occupied joint cell, dtheta per sample ----
    if (p.need_grad) {
        const double c0 = P0 > 0.0 ? p.coef.sum_w * kInvLn2 + p.gamma_h * (lp[0] + kInvLn2) : 0.0;
        const double c1 = P1 > 0.0 ? p.coef.sum_w * kInvLn2 + p.gamma_h * (lp[1] + kInvLn2) : 0.0;
        for (int32_t u = 0; u < U; ++u) {
            double G0 = 0.0, G1 = 0.0;
            for (int s = 0; s < S; ++s) {
                const CellAcc& c = accp[s][slots[s * RB + u]];
                G0 += c.t0;
                G1 += c.t1;
            }
            const double gf = (wl[2 * u] + G0 * kInvLn2 - c0) * invB;
            const double gs = (wl[2 * u + 1] + G1 * kInvLn2 - c1) * invB;
            wl[2 * u] = gf - gs;  // the cell's dtheta, in place of its (consumed) fire entry
        }
        for (int64_t i = 0; i < B; ++i) io.dtheta[i * io.di] = T(wl[2 * sample_uid[i]]);
    }
    INFOMORPH_PHASE(11)

    if (lcell != nullptr) {  // every sample gets the values of its joint cell
        const int W = 3 * A + 1;
        for (int64_t i = 0; i < B; ++i) {
            const double* src = lcell + int64_t(sample_uid[i]) * 2 * W;
            const int64_t row = (neuron * B + i) * 2;  // neuron-major [N, B, 2, ...]: contiguous per neuron
            for (int y = 0; y < 2; ++y) {
                const double* c = src + y * W;
                T* li = lout.inf + (row + y) * A;
                T* lm = lout.mis + (row + y) * A;
                T* la = lout.atoms + (row + y) * A;
                for (int k = 0; k < A; ++k) {
                    li[k] = T(c[k]);
                    lm[k] = T(c[A + k]);
                    la[k] = T(c[2 * A + k]);
                }
                lout.h_res[row + y] = T(c[3 * A]);
            }
        }
    }

    for (int s = 1; s <= S; ++s) ws.tab[s].reset();
    INFOMORPH_PHASE(12)
}

// The two compiled flavours of the neuron kernel; run_layer picks one per call with
// __builtin_cpu_supports (no -march flag needed at build time, no illegal instruction at run time).
template <typename T, int NSRC>
void pid_neuron_base(const LayerPlan& p, Workspace& ws, int64_t neuron, const NeuronIO<T>& io,
                     const T* edges, const T* lo, const T* hi, T* red, T* h_y, T* goal, int& status,
                     const LocalOut<T>& lout) {
    pid_neuron_body<T, NSRC, false>(p, ws, neuron, io, edges, lo, hi, red, h_y, goal, status, lout);
}

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define INFOMORPH_HAVE_AVX2_PATH 1
// fp-contract=fast lets GCC fuse the a * b + c of vfma (and the log polynomial) into FMAs here only;
// the body is always_inline, so it is compiled with these options inside this function.
#if defined(__clang__)
#define INFOMORPH_AVX2_FLAVOUR __attribute__((target("avx2,fma")))
#else
#define INFOMORPH_AVX2_FLAVOUR __attribute__((target("avx2,fma"), optimize("fp-contract=fast")))
#endif
template <typename T, int NSRC>
INFOMORPH_AVX2_FLAVOUR void pid_neuron_avx2(const LayerPlan& p, Workspace& ws, int64_t neuron,
                                            const NeuronIO<T>& io, const T* edges, const T* lo,
                                            const T* hi, T* red, T* h_y, T* goal, int& status,
                                            const LocalOut<T>& lout) {
    pid_neuron_body<T, NSRC, true>(p, ws, neuron, io, edges, lo, hi, red, h_y, goal, status, lout);
}
#endif

}  // namespace cpu
}  // namespace infomorph
