// pybind11 module infomorph_kernels._cpu: the fused I_sx PID engine of a whole layer, one call.
//
// The caller (infomorph_kernels/cpu_backend.py) allocates every tensor with torch and passes raw
// data pointers as Python ints, so this module never includes torch headers (fast build, no torch
// C++ ABI coupling). Host code here checks arguments and chooses the template; the math is in
// pid_cpu_kernel.h (formulas at its top; docs/math.md, docs/kernel_contract.md).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "pid_common.h"
#include "pid_cpu_kernel.h"
#include "activation.h"
#include "pid_cells.h"
#include "pid_groups.h"

namespace py = pybind11;

namespace infomorph {
namespace cpu {
namespace {

struct LayerPointers {
    uintptr_t x, theta, edges, clamp_lo, clamp_hi, red, h_y, dtheta;
    uintptr_t local_inf, local_mis, local_atoms, local_h_res;
    uintptr_t goal;
    // the sources as n separate C-contiguous [B, N] arrays (x is then 0): no stacked copy
    std::vector<uintptr_t> srcs;
};

// AVX2 + FMA kernels when the CPU has them; INFOMORPH_CPU_BASELINE=1 forces the portable ones
// (to compare the two paths, or to rule one out).
bool use_avx2() {
#ifdef INFOMORPH_HAVE_AVX2_PATH
    static const bool ok = [] {
        const char* env = std::getenv("INFOMORPH_CPU_BASELINE");
        if (env != nullptr && env[0] == '1') return false;
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }();
    return ok;
#else
    return false;
#endif
}

// The calling thread's workspace for `plan`: kept across calls (OpenMP's pool threads live on), and
// rebuilt only when the layer's shape changes. Allocating and zeroing it per call was a large part
// of a small layer's time.
Workspace& thread_workspace(const LayerPlan& plan) {
    thread_local std::unique_ptr<Workspace> ws;
    if (!ws || ws->key != Workspace::key_of(plan)) {
        ws.reset();  // free the old one first
        ws.reset(new Workspace(plan));
    }
    return *ws;
}

// OpenMP over neurons; each neuron runs entirely on one thread with that thread's workspace, so the
// result of a neuron does not depend on the thread count or the schedule (bit-identical).
// Returns the OR of the value-problem flags (kBadSources, kBadTheta) when plan.check_values.
template <typename T, int NSRC>
int run_layer(const LayerPlan& plan, const LayerPointers& ptr, int num_threads) {
    const T* x = reinterpret_cast<const T*>(ptr.x);
    const int64_t nsrc = int64_t(ptr.srcs.size());  // 0: x holds the stacked [B, N, n]
    const T* src[NSRC] = {};
    for (int64_t j = 0; j < nsrc && j < NSRC; ++j) src[j] = reinterpret_cast<const T*>(ptr.srcs[j]);
    const T* theta = reinterpret_cast<const T*>(ptr.theta);
    const T* edges = reinterpret_cast<const T*>(ptr.edges);
    const T* lo = reinterpret_cast<const T*>(ptr.clamp_lo);
    const T* hi = reinterpret_cast<const T*>(ptr.clamp_hi);
    T* red = reinterpret_cast<T*>(ptr.red);
    T* h_y = reinterpret_cast<T*>(ptr.h_y);
    T* dtheta = reinterpret_cast<T*>(ptr.dtheta);
    T* goal = reinterpret_cast<T*>(ptr.goal);
    LocalOut<T> lout;
    lout.inf = reinterpret_cast<T*>(ptr.local_inf);
    lout.mis = reinterpret_cast<T*>(ptr.local_mis);
    lout.atoms = reinterpret_cast<T*>(ptr.local_atoms);
    lout.h_res = reinterpret_cast<T*>(ptr.local_h_res);
    const int64_t N = plan.N;
    auto neuron_fn = &pid_neuron_base<T, NSRC>;
    void (*transpose)(const T*, int64_t, int64_t, int64_t, T*, int64_t) = &transpose_rows<T>;
#ifdef INFOMORPH_HAVE_AVX2_PATH
    if (use_avx2()) {
        neuron_fn = &pid_neuron_avx2<T, NSRC>;
        transpose = &transpose_rows_avx2<T>;
    }
#endif
    // an exception must not leave an OpenMP region: record it and rethrow after the join
    std::atomic<int> failed{0};
    std::atomic<int> status{0};
    const int threads = int(std::max<int64_t>(1, std::min<int64_t>(num_threads, N)));
    const bool blocked = Workspace::blocked(plan);
    const int64_t n = plan.n, B = plan.B;
    // blocks of consecutive neurons, at most Workspace::kBlock each, their count a multiple of the
    // thread count and their sizes within one of each other, so that the threads get equal shares
    // (10 neurons on 2 threads: 2 blocks of 5; 100 neurons: 8 blocks of 12 or 13, not 7 of 13 and
    // one of 9, which gave one thread 52 neurons and the other 48)
    const int64_t per_round = int64_t(threads) * Workspace::kBlock;
    const int64_t target_blocks = int64_t(threads) * ((N + per_round - 1) / per_round);
    const int64_t nblocks = blocked ? std::min(N, target_blocks) : N;
    // separate sources and no blocks (one neuron, or batches too large to block): stack them here,
    // as the caller would have (the neuron reads x at strides N n and 1)
    std::vector<T> stacked;
    if (nsrc && !blocked) {
        stacked.resize(size_t(B * N * n));
        for (int64_t i = 0; i < B; ++i)
            for (int64_t j = 0; j < N; ++j)
                for (int64_t k = 0; k < n; ++k) stacked[size_t((i * N + j) * n + k)] = src[k][i * N + j];
        x = stacked.data();
    }
    auto body = [&]() {
        Workspace* ws = nullptr;
        try {
            ws = &thread_workspace(plan);
        } catch (...) {
            failed.store(1);
        }
        int st = 0;
#pragma omp for schedule(dynamic)
        for (int64_t blk = 0; blk < nblocks; ++blk) {
            if (!ws) continue;
            const int64_t j0 = blk * N / nblocks, j1 = (blk + 1) * N / nblocks, m = j1 - j0;
            if (!blocked) {
                for (int64_t j = j0; j < j1; ++j) {
                    const NeuronIO<T> io{x + j * n, N * n, 1, theta + j, N, dtheta ? dtheta + j : nullptr, N};
                    neuron_fn(plan, *ws, j, io, edges, lo, hi, red, h_y, goal, st, lout);
                }
                continue;
            }
            T* xb = reinterpret_cast<T*>(ws->xbuf.data());
            T* tb = reinterpret_cast<T*>(ws->tbuf.data());
            T* db = dtheta ? reinterpret_cast<T*>(ws->dbuf.data()) : nullptr;
            const int64_t bs = Workspace::row_stride(plan);  // B + a cache line: no L1 set conflicts
            // the block's rows: x [B][m n] (rows N n apart) -> xb [m n][bs], theta likewise
            if (nsrc) {  // source k's [B][m] block -> rows q n + k of xb (the same values, bit for bit)
                for (int64_t k = 0; k < n; ++k) transpose(src[k] + j0, N, B, m, xb + k * bs, n * bs);
            } else {
                transpose(x + j0 * n, N * n, B, m * n, xb, bs);
            }
            transpose(theta + j0, N, B, m, tb, bs);
            for (int64_t q = 0; q < m; ++q) {
                const NeuronIO<T> io{xb + q * n * bs, 1, bs, tb + q * bs, 1, db ? db + q * bs : nullptr, 1};
                neuron_fn(plan, *ws, j0 + q, io, edges, lo, hi, red, h_y, goal, st, lout);
            }
            if (db) transpose(db, bs, m, B, dtheta + j0, N);
        }
        status.fetch_or(st);
    };
    if (threads == 1) {
        body();  // an orphaned omp for runs serially: no parallel region to start
    } else {
#pragma omp parallel num_threads(threads)
        body();
    }
    if (failed.load())
        throw std::bad_alloc();
    return status.load();
}

template <typename T>
int run_layer_n(const LayerPlan& plan, const LayerPointers& ptr, int num_threads) {
    switch (plan.n) {
        case 1: return run_layer<T, 1>(plan, ptr, num_threads);
        case 2: return run_layer<T, 2>(plan, ptr, num_threads);
        case 3: return run_layer<T, 3>(plan, ptr, num_threads);
        case 4: return run_layer<T, 4>(plan, ptr, num_threads);
        default: throw std::invalid_argument("number of sources must be 1..4");
    }
}

void require(bool ok, const std::string& msg) {
    if (!ok) throw std::invalid_argument(msg);
}

// See docs/kernel_contract.md for the meaning of every argument. Shapes (all C-contiguous):
// x [batch, neurons, n], theta [batch, neurons], edges [n, edge_stride], clamp_lo/hi [n],
// coef [num_antichains, 2^n - 1] int32, w [num_antichains] float64 (need_grad only),
// outputs red [neurons, num_antichains], h_y [neurons], dtheta [batch, neurons] (need_grad only).
// Returns 0, or (check_values) the OR of kBadSources = 1 (a non-finite x) and kBadTheta = 2 (theta
// NaN or outside [0, 1]): the caller raises the error; the outputs are then meaningless.
int pid_layer(uintptr_t x, uintptr_t theta, uintptr_t edges, int64_t edge_stride,
              std::vector<int64_t> nbins, uintptr_t clamp_lo, uintptr_t clamp_hi, bool adaptive,
              uintptr_t coef, int64_t num_antichains, uintptr_t w, double gamma_h, bool need_grad,
              int64_t batch, int64_t neurons, bool is_double, uintptr_t red, uintptr_t h_y,
              uintptr_t dtheta, int64_t num_threads, bool check_values, std::vector<uintptr_t> local_out,
              int64_t local_full, uintptr_t moebius, uintptr_t goal, std::vector<uintptr_t> sources) {
    const int64_t n = int64_t(nbins.size());
    require(n >= 1 && n <= kMaxSources,
            "nbins: the engine serves 1 to 4 sources, got " + std::to_string(n));
    require(batch >= 1, "x: the batch must hold at least one sample, got batch = " +
                            std::to_string(batch));
    // per-thread buffers are indexed with int32 products (sample * subsets <= 2^27 * 15 < 2^31)
    require(batch <= (int64_t(1) << 27), "x: batch must be <= 2^27 samples, got " +
                                             std::to_string(batch));
    require(neurons >= 0, "x: neurons must be >= 0, got " + std::to_string(neurons));
    require(num_antichains >= 1 && num_antichains <= (int64_t(1) << 20),
            "coef: needs 1 to 2^20 rows (antichains), got " + std::to_string(num_antichains));
    require(num_threads >= 1, "num_threads must be >= 1, got " + std::to_string(num_threads));
    checked_full_cells(nbins);  // ValueError naming the 2^28 limit
    int64_t kmax = 0;
    for (int64_t k : nbins) kmax = std::max(kmax, k);
    require(edge_stride >= kmax + 1, "edges: rows must hold max(nbins) + 1 = " +
                                         std::to_string(kmax + 1) + " entries, got " +
                                         std::to_string(edge_stride));
    require(edges && clamp_lo && clamp_hi && coef, "pid_layer: a data pointer is null");
    require(!need_grad || w, "pid_layer: need_grad requires the w pointer");
    require(!goal || w, "pid_layer: the goal output requires the w pointer");
    if (neurons == 0) return 0;  // empty layer: nothing to compute (its pointers may be null)
    require(sources.empty() || (int64_t(sources.size()) == n && x == 0),
            "sources: one [batch, neurons] array per source (" + std::to_string(n) + ") with x = 0, or none");
    for (uintptr_t sp : sources) require(sp != 0, "pid_layer: a source pointer is null");
    require((x || !sources.empty()) && theta && red && h_y && (!need_grad || dtheta),
            "pid_layer: a data pointer is null");

    LayerPlan plan(nbins, reinterpret_cast<const int32_t*>(coef), int(num_antichains),
                   (need_grad || goal) ? reinterpret_cast<const double*>(w) : nullptr, batch);
    plan.B = batch;
    plan.N = neurons;
    plan.n = int(n);
    plan.A = int(num_antichains);
    plan.S = (1 << n) - 1;
    plan.K.assign(nbins.begin(), nbins.end());
    plan.edge_stride = edge_stride;
    plan.adaptive = adaptive;
    plan.need_grad = need_grad;
    plan.gamma_h = gamma_h;
    plan.check_values = check_values;
    require(local_out.empty() || local_out.size() == 4,
            "local_out: 4 pointers (informative, misinformative, atoms, h_res) or none");
    plan.local = !local_out.empty();
    if (plan.local) {
        require(local_full >= 0 && local_full < num_antichains,
                "local_full must be a row of coef, got " + std::to_string(local_full));
        require(moebius != 0 && local_out[0] && local_out[1] && local_out[2] && local_out[3],
                "local: a data pointer is null");
        plan.set_moebius(reinterpret_cast<const double*>(moebius));
    }
    plan.local_full = int(local_full);
    plan.split_rows(reinterpret_cast<const int32_t*>(coef), !plan.local);
    LayerPointers ptr{x, theta, edges, clamp_lo, clamp_hi, red, h_y, dtheta, 0, 0, 0, 0, goal, std::move(sources)};
    if (plan.local) {
        ptr.local_inf = local_out[0];
        ptr.local_mis = local_out[1];
        ptr.local_atoms = local_out[2];
        ptr.local_h_res = local_out[3];
    }

    py::gil_scoped_release release;  // pure C++ from here on: let other Python threads run
    if (is_double)
        return run_layer_n<double>(plan, ptr, int(num_threads));
    return run_layer_n<float>(plan, ptr, int(num_threads));
}

void pid_groups(uintptr_t sym, int64_t N, int64_t B, int64_t L, uintptr_t labels, int64_t K, uintptr_t groups,
                int64_t G, int64_t n, uintptr_t coef, int64_t A, double h_t, uintptr_t red, int64_t num_threads) {
    require(n >= 1 && n <= kMaxSources, "groups: 1 to 4 neurons per group, got " + std::to_string(n));
    require(B >= 1 && N >= 1 && G >= 0, "pid_groups: needs batch >= 1 and neurons >= 1");
    require(L >= 1 && K >= 1, "pid_groups: levels and labels must be >= 1");
    require(A >= 1, "coef: needs at least one row (antichain)");
    require(num_threads >= 1, "num_threads must be >= 1, got " + std::to_string(num_threads));
    int64_t full = 1;
    for (int64_t j = 0; j < n; ++j) {
        require(L <= (int64_t(1) << 26) / full,
                "pid_groups: levels^n joint cells must be at most 2^26 (fewer bins, or the dense backend)");
        full *= L;
    }
    const int64_t umax = std::min(B, full);
    require(umax <= (int64_t(1) << 28) / K, "pid_groups: occupied cells x labels over 2^28 (fewer labels or samples)");
    require(B < (int64_t(1) << 31), "pid_groups: batch must be below 2^31");
    require(sym && labels && coef && (G == 0 || (groups && red)), "pid_groups: a data pointer is null");
    if (G == 0) return;
    py::gil_scoped_release release;
    pid_groups_run(reinterpret_cast<const int32_t*>(sym), N, B, L, reinterpret_cast<const int32_t*>(labels), K,
                   reinterpret_cast<const int64_t*>(groups), G, int(n), reinterpret_cast<const int32_t*>(coef), int(A),
                   h_t, reinterpret_cast<double*>(red), int(num_threads));
}

void pid_cells(uintptr_t bins, uintptr_t thetas, int64_t N, int64_t B, int64_t n, int64_t T,
               const std::vector<int64_t>& nbins, uintptr_t coef, int64_t A, uintptr_t w, double gamma_h,
               bool published, bool need_grad, uintptr_t red, uintptr_t h_y, uintptr_t goal, uintptr_t dthetas,
               int64_t num_threads) {
    require(n >= 1 && n <= kMaxSources, "pid_cells: 1 to 4 sources, got " + std::to_string(n));
    require(int64_t(nbins.size()) == n, "pid_cells: nbins must have one entry per source");
    require(B >= 1 && N >= 1 && T >= 1 && T <= 64, "pid_cells: needs batch, neurons >= 1 and 1 to 64 target values");
    require(B < (int64_t(1) << 31), "pid_cells: batch must be below 2^31");
    require(A >= 1 && num_threads >= 1, "pid_cells: needs antichains and threads >= 1");
    int64_t joint = 1;
    for (int64_t k : nbins) {
        require(k >= 1 && k <= kCellsMaxJoint / joint, "pid_cells: the joint cells (product of nbins) must be at most 2^24");
        joint *= k;
    }
    require(bins && thetas && coef && red && h_y, "pid_cells: a data pointer is null");
    require(!(need_grad || goal) || w, "pid_cells: the goal and its gradient need w");
    require(!need_grad || dthetas, "pid_cells: need_grad needs dthetas");
    py::gil_scoped_release release;
    pid_cells_run(reinterpret_cast<const int32_t*>(bins), reinterpret_cast<const double*>(thetas), N, B, int(n), int(T),
                  nbins.data(), reinterpret_cast<const int32_t*>(coef), int(A), reinterpret_cast<const double*>(w),
                  gamma_h, published, need_grad, reinterpret_cast<double*>(red), reinterpret_cast<double*>(h_y),
                  reinterpret_cast<double*>(goal), reinterpret_cast<double*>(dthetas), int(num_threads));
}

// +1 with probability theta, -1 otherwise, for `numel` values. The uniforms come from a keyed
// hash of the index (two rounds of the 32-bit "lowbias32" mixer, each keyed by half of the 64-bit
// seed: a keyed permutation of the index, so the streams of two seeds are unrelated, not shifted
// copies): 24 random bits per float value, 53 per double, compared with theta in its own dtype.
// The result depends on (seed, index) only, never on the thread count; the loops vectorize
// (32-bit multiplies), which is why this is not a 64-bit generator.
INFOMORPH_INLINE uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7FEB352Du;
    x ^= x >> 15;
    x *= 0x846CA68Bu;
    x ^= x >> 16;
    return x;
}

template <typename T>
INFOMORPH_INLINE void sample_pm1_span(const T* __restrict theta, T* __restrict out, int64_t lo, int64_t hi, uint64_t seed) {
    const uint32_t k1 = uint32_t(seed), k2 = uint32_t(seed >> 32);
    if constexpr (sizeof(T) == 4) {
        for (int64_t i = lo; i < hi; ++i) {
            const uint32_t h = mix32(mix32(uint32_t(i) ^ k1) ^ k2);
            const float u = float(h >> 8) * (1.0f / 16777216.0f);  // [0, 1), exact
            out[i] = u < theta[i] ? T(1) : T(-1);
        }
    } else {
        for (int64_t i = lo; i < hi; ++i) {
            const uint32_t a = mix32(mix32(uint32_t(2 * i) ^ k1) ^ k2);
            const uint32_t b = mix32(mix32(uint32_t(2 * i + 1) ^ k1) ^ k2);
            const double u = (double(a >> 5) * 67108864.0 + double(b >> 6)) * (1.0 / 9007199254740992.0);
            out[i] = u < theta[i] ? T(1) : T(-1);
        }
    }
}

#ifdef INFOMORPH_HAVE_AVX2_PATH
template <typename T>
__attribute__((target("avx2,fma"))) void sample_pm1_span_avx2(const T* theta, T* out, int64_t lo, int64_t hi, uint64_t seed) {
    sample_pm1_span<T>(theta, out, lo, hi, seed);
}
#endif

template <typename T>
void sample_pm1_run(const T* theta, T* out, int64_t numel, uint64_t seed, int threads) {
    const int64_t chunk = 8192;
    const int64_t nchunks = (numel + chunk - 1) / chunk;
#pragma omp parallel for num_threads(threads) schedule(dynamic) if (threads > 1 && nchunks > 1)
    for (int64_t c = 0; c < nchunks; ++c) {
        const int64_t lo = c * chunk, hi = std::min(numel, lo + chunk);
#ifdef INFOMORPH_HAVE_AVX2_PATH
        if (use_avx2()) {
            sample_pm1_span_avx2<T>(theta, out, lo, hi, seed);
            continue;
        }
#endif
        sample_pm1_span<T>(theta, out, lo, hi, seed);
    }
}

void sample_pm1(uintptr_t theta, uintptr_t out, int64_t numel, bool is_double, uint64_t seed, int64_t num_threads) {
    require(numel >= 0, "sample_pm1: numel must be >= 0");
    require(num_threads >= 1, "num_threads must be >= 1, got " + std::to_string(num_threads));
    if (numel == 0) return;
    require(theta && out, "sample_pm1: a data pointer is null");
    py::gil_scoped_release release;
    if (is_double)
        sample_pm1_run(reinterpret_cast<const double*>(theta), reinterpret_cast<double*>(out), numel, seed, int(num_threads));
    else
        sample_pm1_run(reinterpret_cast<const float*>(theta), reinterpret_cast<float*>(out), numel, seed, int(num_threads));
}

TrivariateParams trivariate_params(const std::vector<double>& a) {
    require(a.size() == 4, "trivariate_activation: params must be (a1, a2, b1, b2)");
    return TrivariateParams{float(a[0]), float(a[1]), float(a[2]), float(a[3])};
}

void trivariate_fwd(uintptr_t f, uintptr_t c, uintptr_t l, uintptr_t theta, int64_t numel,
                    const std::vector<double>& params, int64_t num_threads) {
    require(numel >= 0 && num_threads >= 1, "trivariate_fwd: needs numel >= 0 and threads >= 1");
    const TrivariateParams p = trivariate_params(params);
    if (numel == 0) return;
    require(f && c && l && theta, "trivariate_fwd: a data pointer is null");
    py::gil_scoped_release release;
    trivariate_forward(reinterpret_cast<const float*>(f), reinterpret_cast<const float*>(c),
                       reinterpret_cast<const float*>(l), reinterpret_cast<float*>(theta), numel, p,
                       int(num_threads), use_avx2());
}

void trivariate_bwd(uintptr_t f, uintptr_t c, uintptr_t l, uintptr_t theta, uintptr_t grad, uintptr_t df,
                    uintptr_t dc, uintptr_t dl, int64_t numel, const std::vector<double>& params, int64_t num_threads) {
    require(numel >= 0 && num_threads >= 1, "trivariate_bwd: needs numel >= 0 and threads >= 1");
    const TrivariateParams p = trivariate_params(params);
    if (numel == 0) return;
    require(f && c && l && theta && grad && df && dc && dl, "trivariate_bwd: a data pointer is null");
    py::gil_scoped_release release;
    trivariate_backward(reinterpret_cast<const float*>(f), reinterpret_cast<const float*>(c),
                        reinterpret_cast<const float*>(l), reinterpret_cast<const float*>(theta),
                        reinterpret_cast<const float*>(grad), reinterpret_cast<float*>(df),
                        reinterpret_cast<float*>(dc), reinterpret_cast<float*>(dl), numel, p, int(num_threads),
                        use_avx2());
}

}  // namespace
}  // namespace cpu
}  // namespace infomorph

namespace infomorph {
namespace cpu {
namespace {
// The engine's vector log2 (pid_cpu_simd.h) over n doubles, in the flavour this CPU runs: for the
// accuracy test against numpy (tests/test_backend_cpu.py), no kernel goes through here.
template <bool kFma>
INFOMORPH_INLINE void log2_span(const double* x, double* out, int64_t n) {
    for (int64_t i = 0; i < n; i += kVec) {
        vd v = vsplat(1.0);
        for (int e = 0; e < kVec && i + e < n; ++e) v[e] = x[i + e];
        const vd r = log2v<kFma>(v);
        for (int e = 0; e < kVec && i + e < n; ++e) out[i + e] = r[e];
    }
}
#ifdef INFOMORPH_HAVE_AVX2_PATH
INFOMORPH_AVX2_FLAVOUR void log2_span_avx2(const double* x, double* out, int64_t n) { log2_span<true>(x, out, n); }
#endif
void log2_lanes(uintptr_t x, uintptr_t out, int64_t n) {
    const double* xp = reinterpret_cast<const double*>(x);
    double* op = reinterpret_cast<double*>(out);
#ifdef INFOMORPH_HAVE_AVX2_PATH
    if (use_avx2()) return log2_span_avx2(xp, op, n);
#endif
    log2_span<false>(xp, op, n);
}
}  // namespace
}  // namespace cpu
}  // namespace infomorph

PYBIND11_MODULE(_cpu, m) {
    m.doc() = "Fused I_sx PID engine on the CPU (OpenMP over neurons). Called through "
              "infomorph_kernels.cpu_backend.pid_kernel_cpu, which passes torch data pointers.";
    m.def("pid_layer", &infomorph::cpu::pid_layer, py::arg("x"), py::arg("theta"), py::arg("edges"),
          py::arg("edge_stride"), py::arg("nbins"), py::arg("clamp_lo"), py::arg("clamp_hi"),
          py::arg("adaptive"), py::arg("coef"), py::arg("num_antichains"), py::arg("w"),
          py::arg("gamma_h"), py::arg("need_grad"), py::arg("batch"), py::arg("neurons"),
          py::arg("is_double"), py::arg("red"), py::arg("h_y"), py::arg("dtheta"),
          py::arg("num_threads"), py::arg("check_values") = false,
          py::arg("local_out") = std::vector<uintptr_t>{}, py::arg("local_full") = 0, py::arg("moebius") = 0,
          py::arg("goal") = 0, py::arg("sources") = std::vector<uintptr_t>{},
          "Fill red [neurons, A], h_y [neurons] and (need_grad) dtheta [batch, neurons] for a whole "
          "layer. Pointers are data addresses of C-contiguous CPU tensors; see "
          "docs/kernel_contract.md. Returns 0, or with check_values the OR of 1 (non-finite x) "
          "and 2 (theta NaN or outside [0, 1]). local_out: optional pointers to the local "
          "informative, misinformative and atoms [neurons, batch, 2, A] and local H_res "
          "[neurons, batch, 2] (neuron-major; y = silent, fire); local_full: the row of the full-set "
          "antichain; moebius: the float64 Moebius matrix [A, A]; goal: optional [neurons] output of "
          "G = w . red + gamma_h h_y computed from the float64 redundancies (needs w); sources: instead "
          "of x (then 0), one pointer per source to a C-contiguous [batch, neurons] array (no stacked copy).");
    m.def("pid_groups", &infomorph::cpu::pid_groups, py::arg("sym"), py::arg("neurons"), py::arg("batch"),
          py::arg("levels"), py::arg("labels"), py::arg("n_labels"), py::arg("groups"), py::arg("n_groups"),
          py::arg("n"), py::arg("coef"), py::arg("num_antichains"), py::arg("h_t"), py::arg("red"),
          py::arg("num_threads"),
          "I_sx redundancies [n_groups, A] (float64 bits) of groups of discrete neurons about a K-valued "
          "label: sym int32 [neurons, batch] symbols 0..levels-1 (validated by the caller), labels int32 "
          "[batch] 0..n_labels-1, groups int64 [n_groups, n], coef int32 [A, 2^n - 1]; h_t = H(label) in "
          "bits. OpenMP over groups; results independent of the thread count.");
    m.def("pid_cells", &infomorph::cpu::pid_cells, py::arg("bins"), py::arg("thetas"), py::arg("neurons"),
          py::arg("batch"), py::arg("n"), py::arg("n_targets"), py::arg("nbins"), py::arg("coef"),
          py::arg("num_antichains"), py::arg("w"), py::arg("gamma_h"), py::arg("published"), py::arg("need_grad"),
          py::arg("red"), py::arg("h_y"), py::arg("goal"), py::arg("dthetas"), py::arg("num_threads"),
          "I_sx of pre-binned samples, any target alphabet (csrc/cpu/pid_cells.h): bins int32 [neurons, batch, n], "
          "thetas float64 [neurons, batch, n_targets], coef int32 [A, 2^n - 1], w float64 [A]; writes red [neurons, A], "
          "h_y [neurons], goal [neurons] (0: none) and with need_grad dthetas [neurons, batch, n_targets], float64. "
          "published: the published infomorphic code's numerics, else exact.");
    m.def("sample_pm1", &infomorph::cpu::sample_pm1, py::arg("theta"), py::arg("out"), py::arg("numel"),
          py::arg("is_double"), py::arg("seed"), py::arg("num_threads"),
          "out[i] = +1 with probability theta[i], else -1 (contiguous CPU float tensors as data pointers); "
          "uniforms from a keyed hash of (seed, i): independent of the thread count.");
    m.def("trivariate_fwd", &infomorph::cpu::trivariate_fwd, py::arg("f"), py::arg("c"), py::arg("l"),
          py::arg("theta"), py::arg("numel"), py::arg("params"), py::arg("num_threads"),
          "theta = s(f ((1 - a1 - a2) + a1 s(b1 f c) + a2 s(b2 f l))) for contiguous float32 CPU tensors "
          "(data pointers), params (a1, a2, b1, b2); csrc/cpu/activation.h.");
    m.def("trivariate_bwd", &infomorph::cpu::trivariate_bwd, py::arg("f"), py::arg("c"), py::arg("l"),
          py::arg("theta"), py::arg("grad"), py::arg("df"), py::arg("dc"), py::arg("dl"), py::arg("numel"),
          py::arg("params"), py::arg("num_threads"),
          "The analytic backward of trivariate_fwd: df, dc, dl from the upstream gradient of theta.");
    m.def("max_threads", []() { return omp_get_max_threads(); },
          "OpenMP's default thread count in this process.");
    m.def("simd_path", []() { return std::string(infomorph::cpu::use_avx2() ? "avx2" : "baseline"); },
          "Which compiled kernel flavour runs on this CPU: 'avx2' (AVX2 + FMA) or 'baseline'.");
    m.def("log2_lanes", &infomorph::cpu::log2_lanes, py::arg("x"), py::arg("out"), py::arg("n"),
          "The engine's vector log2 of n float64 values at x into out (data pointers), in the flavour "
          "simd_path() names: for tests.");
    m.attr("MAX_CELLS") = infomorph::kMaxCells;
    m.attr("MAX_SOURCES") = infomorph::kMaxSources;
}
