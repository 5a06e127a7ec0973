// Group PID about a K-valued label (formulas in pid_groups.h). Plain C++17 + OpenMP.
#include "pid_groups.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "pid_common.h"

namespace infomorph {
namespace cpu {
namespace {

struct GroupWorkspace {
    // joint cells: direct map code -> slot (-1 = free), reset through the list of used codes
    std::vector<int32_t> slot;
    std::vector<int64_t> codes;      // [U] code of slot u
    std::vector<int32_t> cnt;        // [Umax * K] M(u, t)
    std::vector<int32_t> tot;        // [Umax] sum_t M(u, t)
    std::vector<int32_t> tlist;      // [Umax * K] the labels with M(u, t) > 0, first-seen order
    std::vector<int32_t> tnum;       // [Umax]
    // proper-subset tables (dense, reset through their touched cells)
    std::vector<std::vector<int32_t>> m, q;
    std::vector<std::vector<int32_t>> touched;
    std::vector<int64_t> cellidx;    // [Umax * S] cell of slot u in subset table s (s = S-1: u itself)
    std::vector<double> acc;         // [A]

    GroupWorkspace(int64_t full_cells, int64_t umax, int64_t K, int S, const CellLayout& layout, int A)
        : slot(size_t(full_cells), -1), cnt(size_t(umax * K), 0), tot(size_t(umax), 0), tlist(size_t(umax * K)),
          tnum(size_t(umax), 0), m(S), q(S), touched(S), cellidx(size_t(umax) * S), acc(A) {
        codes.reserve(size_t(umax));
        for (int s = 0; s < S - 1; ++s) {
            m[s].assign(size_t(layout.cells[s + 1] * K), 0);
            q[s].assign(size_t(layout.cells[s + 1]), 0);
        }
    }
};

}  // namespace

void pid_groups_run(const int32_t* sym, int64_t N, int64_t B, int64_t L, const int32_t* labels, int64_t K,
                    const int64_t* groups, int64_t G, int n, const int32_t* coef, int A, double h_t, double* red,
                    int num_threads) {
    const int S = (1 << n) - 1;  // subsets by mask 1..S; index s = mask - 1, full set last
    const CellLayout layout(std::vector<int64_t>(size_t(n), L));  // subset mask s + 1 <-> index s
    const int64_t full = layout.cells[S];
    const SparseCoef C(coef, A, S, nullptr);                        // columns: subset index s = mask - 1
    std::vector<int> single(A, -1);  // the subset of a one-part antichain, else -1
    for (int a = 0; a < A; ++a)
        if (C.row_ptr[a + 1] - C.row_ptr[a] == 1 && C.row_val[C.row_ptr[a]] == 1.0) single[a] = C.row_col[C.row_ptr[a]];
    const auto stride = [&](int s, int j) { return int64_t(layout.stride[size_t(s + 1) * n + j]); };
    // log2 of every count a table can hold (N_a, D_a <= B)
    std::vector<double> lg(size_t(B) + 1, 0.0);
    for (int64_t v = 1; v <= B; ++v) lg[size_t(v)] = std::log2(double(v));
    const int64_t umax = std::min(B, full);
    const double invB = 1.0 / double(B);

#pragma omp parallel num_threads(num_threads)
    {
        GroupWorkspace ws(full, umax, K, S, layout, A);
#pragma omp for schedule(dynamic, 16)
        for (int64_t g = 0; g < G; ++g) {
            const int64_t* gr = groups + g * n;
            const int32_t* col[4];
            int64_t fstride[4];
            for (int j = 0; j < n; ++j) {
                col[j] = sym + gr[j] * B;
                fstride[j] = stride(S - 1, j);
            }
            // 1. joint cells (first-appearance order) and their label counts
            int64_t U = 0;
            for (int64_t i = 0; i < B; ++i) {
                int64_t code = 0;
                for (int j = 0; j < n; ++j) code += int64_t(col[j][i]) * fstride[j];
                int32_t u = ws.slot[size_t(code)];
                if (u < 0) {
                    u = int32_t(U++);
                    ws.slot[size_t(code)] = u;
                    ws.codes.push_back(code);
                }
                const int32_t t = labels[i];
                int32_t& c = ws.cnt[size_t(u) * K + t];
                if (c == 0) ws.tlist[size_t(u) * K + ws.tnum[u]++] = t;
                ++c;
                ++ws.tot[u];
            }
            // 2. fold into the proper-subset tables
            for (int64_t u = 0; u < U; ++u) {
                const int64_t code = ws.codes[size_t(u)];
                int64_t digit[4];
                int64_t rest = code;
                for (int j = 0; j < n; ++j) {
                    digit[j] = rest % L;
                    rest /= L;
                }
                int64_t* ci = &ws.cellidx[size_t(u) * S];
                ci[S - 1] = u;
                const int32_t* mu = &ws.cnt[size_t(u) * K];
                const int32_t* tl = &ws.tlist[size_t(u) * K];
                const int32_t nt = ws.tnum[u];
                for (int s = 0; s < S - 1; ++s) {
                    int64_t c = 0;
                    for (int j = 0; j < n; ++j) c += digit[j] * stride(s, j);
                    ci[s] = c;
                    if (ws.q[s][size_t(c)] == 0) ws.touched[s].push_back(int32_t(c));
                    ws.q[s][size_t(c)] += ws.tot[u];
                    int32_t* ms = &ws.m[s][size_t(c) * K];
                    for (int32_t k = 0; k < nt; ++k) ms[tl[k]] += mu[tl[k]];
                }
            }
            // 3. antichain sums
            std::fill(ws.acc.begin(), ws.acc.end(), 0.0);
            for (int a = 0; a < A; ++a) {
                const int s = single[a];
                if (s < 0) continue;
                double acc = 0.0;
                if (s == S - 1) {
                    for (int64_t u = 0; u < U; ++u) {
                        const int32_t* mu = &ws.cnt[size_t(u) * K];
                        const int32_t* tl = &ws.tlist[size_t(u) * K];
                        double part = 0.0;
                        for (int32_t k = 0; k < ws.tnum[u]; ++k) part += double(mu[tl[k]]) * lg[size_t(mu[tl[k]])];
                        acc += part - double(ws.tot[u]) * lg[size_t(ws.tot[u])];
                    }
                } else {
                    for (int32_t c : ws.touched[s]) {
                        const int32_t* ms = &ws.m[s][size_t(c) * K];
                        double part = 0.0;
                        for (int64_t t = 0; t < K; ++t)
                            if (ms[t] != 0) part += double(ms[t]) * lg[size_t(ms[t])];
                        const int32_t qc = ws.q[s][size_t(c)];
                        acc += part - double(qc) * lg[size_t(qc)];
                    }
                }
                ws.acc[a] = acc;
            }
            for (int64_t u = 0; u < U; ++u) {
                const int64_t* ci = &ws.cellidx[size_t(u) * S];
                const int32_t* mu = &ws.cnt[size_t(u) * K];
                const int32_t* tl = &ws.tlist[size_t(u) * K];
                const int32_t nt = ws.tnum[u];
                const double tu = double(ws.tot[u]);
                for (int a = 0; a < A; ++a) {
                    if (single[a] >= 0) continue;
                    const int e0 = C.row_ptr[a], e1 = C.row_ptr[a + 1];
                    double D = 0.0;
                    for (int e = e0; e < e1; ++e) {
                        const int s = C.row_col[e];
                        D += C.row_val[e] * (s == S - 1 ? tu : double(ws.q[s][size_t(ci[s])]));
                    }
                    double part = -tu * lg[size_t(D)];
                    for (int32_t k = 0; k < nt; ++k) {
                        const int32_t t = tl[k];
                        double Nv = 0.0;
                        for (int e = e0; e < e1; ++e) {
                            const int s = C.row_col[e];
                            Nv += C.row_val[e] * double(s == S - 1 ? mu[t] : ws.m[s][size_t(ci[s]) * K + t]);
                        }
                        part += double(mu[t]) * lg[size_t(Nv)];
                    }
                    ws.acc[a] += part;
                }
            }
            double* out = red + g * A;
            for (int a = 0; a < A; ++a) out[a] = ws.acc[a] * invB + h_t;
            // 4. sparse reset
            for (int64_t u = 0; u < U; ++u) {
                int32_t* mu = &ws.cnt[size_t(u) * K];
                const int32_t* tl = &ws.tlist[size_t(u) * K];
                for (int32_t k = 0; k < ws.tnum[u]; ++k) mu[tl[k]] = 0;
                ws.tnum[u] = 0;
                ws.tot[u] = 0;
                ws.slot[size_t(ws.codes[size_t(u)])] = -1;
            }
            ws.codes.clear();
            for (int s = 0; s < S - 1; ++s) {
                for (int32_t c : ws.touched[s]) {
                    ws.q[s][size_t(c)] = 0;
                    std::memset(&ws.m[s][size_t(c) * K], 0, sizeof(int32_t) * size_t(K));
                }
                ws.touched[s].clear();
            }
        }
    }
}

}  // namespace cpu
}  // namespace infomorph
