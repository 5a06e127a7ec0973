// Lattice-independent helpers shared by the fused I_sx PID engines (plain C++17, no torch, no CUDA).
//
// What lives here: the binning rule of docs/kernel_contract.md, the cell layout of the marginal
// tables, the size limit with overflow checks and the sparse form of the inclusion-exclusion
// matrix C. The math is in docs/math.md (sections 1, 2, 4, 5, 6).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace infomorph {

// Largest full-set table (prod_j K_j cells) any engine accepts. The CPU engine itself stores only
// occupied cells, but every backend must refuse the same inputs, and 2^28 cells x 2 values is
// already past what a GPU block can hold.
constexpr int64_t kMaxCells = int64_t(1) << 28;
constexpr int kMaxSources = 4;
constexpr double kInvLn2 = 1.4426950408889634;  // 1 / ln 2

// prod_j nbins[j] with overflow checks; throws std::invalid_argument (-> Python ValueError) naming
// the argument and the limit.
inline int64_t checked_full_cells(const std::vector<int64_t>& nbins) {
    int64_t cells = 1;
    for (size_t j = 0; j < nbins.size(); ++j) {
        if (nbins[j] < 1)
            throw std::invalid_argument("nbins[" + std::to_string(j) + "] must be >= 1, got " +
                                        std::to_string(nbins[j]));
        // cells * K > kMaxCells, written without overflowing
        if (nbins[j] > kMaxCells / cells)
            throw std::invalid_argument(
                "nbins: the joint table of all sources would have more than 2^28 = " +
                std::to_string(kMaxCells) + " cells (prod(nbins) too large); use fewer bins");
        cells *= nbins[j];
    }
    return cells;
}

#if defined(__GNUC__)
#define INFOMORPH_INLINE inline __attribute__((always_inline))
#else
#define INFOMORPH_INLINE inline
#endif

// Binning of one value, exactly the contract's rule in the input dtype T:
//   v = min(max(x, lo), hi);  b = (first k in 0..K with edges[k] >= v) - 1, clamped to [0, K-1].
// The result is the lower_bound over the K + 1 passed edges (never recomputed edges, so every
// backend and torch.bucketize(right=False) agree bit for bit). For speed the index is first guessed
// from the edge spacing (edges are linspace in practice: e0 = edges[0], inv_width = K / (e_K - e0),
// or 0 to disable the guess) and then verified against the edges themselves; a wrong guess (rounding
// next to an edge, uneven edges) falls back to a binary search, so the guess never changes the answer.
// NaN compares false everywhere and lands in bin 0.
template <typename T>
INFOMORPH_INLINE int bin_index(T x, const T* edges, int K, T lo, T hi, double e0, double inv_width) {
    T v = x < lo ? lo : x;  // torch.clamp order: max with lo first, then min with hi
    v = hi < v ? hi : v;
    const double t = (double(v) - e0) * inv_width;
    // the lower bound itself is ceil(t): right on an edge too, so also for every value clamped to
    // the top edge (a guess of floor(t) + 1 sent each of those to the binary search)
    int idx = t > 0.0 ? (t <= double(K) ? int(std::ceil(t)) : K + 1) : 0;
    const bool ok = (idx == 0 || edges[idx - 1] < v) && (idx > K || !(edges[idx] < v));
    if (!ok) {
        const T* base = edges;
        int len = K + 1;
        while (len > 1) {
            const int half = len >> 1;
            base += (base[half - 1] < v) ? half : 0;
            len -= half;
        }
        idx = int(base - edges) + (*base < v ? 1 : 0);
    }
    int b = idx - 1;
    b = b < 0 ? 0 : b;
    return b > K - 1 ? K - 1 : b;
}

// inv_width for bin_index's guess: K / (e_K - e_0) when that is finite and positive, else 0
// (no guess: binary search only).
template <typename T>
inline double bin_guess_scale(const T* edges, int K) {
    const double span = double(edges[K]) - double(edges[0]);
    const double r = double(K) / span;
    return (span > 0.0 && std::isfinite(r)) ? r : 0.0;
}

// Cell layout of the marginal table of subset mask s (bit j = source j): cell_s(b) =
// sum_{j in s, ascending} b_j * stride_j, stride = product of the K of the lower sources in s.
// stride[s][j] = 0 for j not in s, so cell_s(b) = sum_j b_j * stride[s][j] for every s.
struct CellLayout {
    int n = 0;
    int num_subsets = 0;                // S = 2^n - 1, masks 1..S
    std::vector<int64_t> cells;         // [S + 1], cells[s] = prod_{j in s} K_j (cells[0] unused)
    std::vector<uint32_t> stride;       // [(S + 1) * n]

    CellLayout() = default;
    explicit CellLayout(const std::vector<int64_t>& nbins) : n(int(nbins.size())) {
        checked_full_cells(nbins);  // every subset table is at most the full one
        num_subsets = (1 << n) - 1;
        cells.assign(num_subsets + 1, 0);
        stride.assign(size_t(num_subsets + 1) * n, 0);
        for (int s = 1; s <= num_subsets; ++s) {
            int64_t st = 1;
            for (int j = 0; j < n; ++j) {
                if (s & (1 << j)) {
                    stride[size_t(s) * n + j] = uint32_t(st);
                    st *= nbins[j];
                }
            }
            cells[s] = st;
        }
    }
};

// The inclusion-exclusion matrix C [A, S] (int32, column s - 1 = subset mask s) in sparse form, and
// the goal-weighted transpose used by the backward: Wc[s] = {(alpha, w_alpha * c(alpha, s))}.
// Only about a third of C is nonzero (45 of 126 entries for n = 3), and per occupied cell the engine
// evaluates C m three times (N for both y, and D), so the sparse loops are what is cheap.
struct SparseCoef {
    int A = 0, S = 0;
    std::vector<int> row_ptr;    // [A + 1]
    std::vector<int> row_col;    // column = subset mask - 1
    std::vector<double> row_val;
    std::vector<int> col_ptr;    // [S + 1], the transpose with w folded in
    std::vector<int> col_row;
    std::vector<double> col_val;
    double sum_w = 0.0;          // sum_alpha w_alpha (the -(1/ln2) sum_a w_a term of the backward)

    SparseCoef() = default;
    SparseCoef(const int32_t* coef, int A_, int S_, const double* w) : A(A_), S(S_) {
        row_ptr.assign(A + 1, 0);
        for (int a = 0; a < A; ++a) {
            for (int s = 0; s < S; ++s) {
                const int32_t c = coef[size_t(a) * S + s];
                if (c != 0) {
                    row_col.push_back(s);
                    row_val.push_back(double(c));
                }
            }
            row_ptr[a + 1] = int(row_col.size());
        }
        col_ptr.assign(S + 1, 0);
        if (w != nullptr) {
            for (int a = 0; a < A; ++a) sum_w += w[a];
            for (int s = 0; s < S; ++s) {
                for (int a = 0; a < A; ++a) {
                    const int32_t c = coef[size_t(a) * S + s];
                    const double v = w[a] * double(c);
                    if (c != 0 && v != 0.0) {
                        col_row.push_back(a);
                        col_val.push_back(v);
                    }
                }
                col_ptr[s + 1] = int(col_row.size());
            }
        }
    }
};

}  // namespace infomorph
