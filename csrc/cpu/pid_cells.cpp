// I_sx of pre-binned samples, any target alphabet, forward + backward (formulas in pid_cells.h).
#include "pid_cells.h"

#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "pid_common.h"

namespace infomorph {
namespace cpu {
namespace {

constexpr double kEps = 1.0e-10;        // the published code's offset
constexpr double kFloor = 1.0e-7;       // its ratios below this become 1

struct CellsWorkspace {
    std::vector<int32_t> slot;                 // [joint cells] -> slot u, -1 = free
    std::vector<int64_t> key;                  // [S][B] cell of every sample in every subset table
    std::vector<int32_t> uid;                  // [B] slot of every sample
    std::vector<int32_t> first;                // [U] a sample of slot u
    std::vector<int64_t> ukey;                 // [U] joint cell of slot u
    std::vector<double> M, TM, Ldir, TQ;       // [U][T] joint mass, its T table, the direct term; [U] its Q table
    std::vector<std::vector<double>> m, tm, tq;  // proper subsets: [cells][T] mass and T table, [cells] Q table
    std::vector<std::vector<int64_t>> touched; // proper subsets: cells to reset
    std::vector<double> val, q, num;           // per joint cell scratch

    CellsWorkspace(int64_t joint, int64_t B, int S, int T, const std::vector<int64_t>& cells)
        : slot(size_t(joint), -1), key(size_t(S) * B), uid(size_t(B)), first(size_t(B)), ukey(size_t(B)),
          M(size_t(B) * T), TM(size_t(B) * T), Ldir(size_t(B) * T), TQ(size_t(B)), m(S), tm(S), tq(S), touched(S),
          val(size_t(S) * T), q(size_t(S)), num(size_t(T)) {
        for (int s = 0; s < S - 1; ++s) {
            m[s].assign(size_t(cells[s]) * T, 0.0);
            tm[s].assign(size_t(cells[s]) * T, 0.0);
            tq[s].assign(size_t(cells[s]), 0.0);
        }
    }
};

}  // namespace

void pid_cells_run(const int32_t* bins, const double* thetas, int64_t N, int64_t B, int n, int T,
                   const int64_t* nbins, const int32_t* coef, int A, const double* w, double gamma_h,
                   bool published, bool need_grad, double* red, double* h_y, double* goal, double* dthetas,
                   int num_threads) {
    const int S = (1 << n) - 1;
    // strides of every subset's dense table: mask s + 1, sources in index order (last fastest)
    std::vector<int64_t> cells(static_cast<size_t>(S)), stride(static_cast<size_t>(S) * n, 0);
    for (int s = 0; s < S; ++s) {
        int64_t c = 1;
        for (int j = n - 1; j >= 0; --j) {
            if ((s + 1) >> j & 1) {
                stride[size_t(s) * n + j] = c;
                c *= nbins[j];
            }
        }
        cells[size_t(s)] = c;
    }
    const int64_t joint = cells[size_t(S - 1)];
    // the nonzero coefficients of every antichain row
    std::vector<int> rp(size_t(A) + 1, 0), rc;
    std::vector<double> rv;
    for (int a = 0; a < A; ++a) {
        for (int s = 0; s < S; ++s)
            if (coef[size_t(a) * S + s] != 0) {
                rc.push_back(s);
                rv.push_back(double(coef[size_t(a) * S + s]));
            }
        rp[size_t(a) + 1] = int(rc.size());
    }
    const double eps = published ? kEps : 0.0;
    const double invB = 1.0 / double(B);

#pragma omp parallel num_threads(num_threads)
    {
        CellsWorkspace ws(joint, B, S, T, cells);
        std::vector<double> py(static_cast<size_t>(T)), R(static_cast<size_t>(T)), acc(static_cast<size_t>(A));
        // one neuron per work item, handed out as threads come free: a descheduled thread (a busy
        // machine) delays only its own neuron; each neuron's result is its own (same bits for any count)
#pragma omp for schedule(dynamic)
        for (int64_t nn = 0; nn < N; ++nn) {
            const int32_t* bn = bins + nn * B * n;
            const double* tn = thetas + nn * B * T;
            // keys and joint slots
            int32_t U = 0;
            for (int64_t i = 0; i < B; ++i) {
                const int32_t* bi = bn + i * n;
                for (int s = 0; s < S; ++s) {
                    int64_t k = 0;
                    for (int j = 0; j < n; ++j) k += int64_t(bi[j]) * stride[size_t(s) * n + j];
                    ws.key[size_t(s) * B + i] = k;
                }
                const int64_t k = ws.key[size_t(S - 1) * B + i];
                int32_t u = ws.slot[size_t(k)];
                if (u < 0) {
                    u = ws.slot[size_t(k)] = U;
                    ws.first[size_t(U)] = int32_t(i);
                    ws.ukey[size_t(U)] = k;
                    for (int y = 0; y < T; ++y) ws.M[size_t(U) * T + y] = 0.0, ws.TM[size_t(U) * T + y] = 0.0,
                                                ws.Ldir[size_t(U) * T + y] = 0.0;
                    ws.TQ[size_t(U)] = 0.0;
                    ++U;
                }
                ws.uid[size_t(i)] = u;
            }
            // masses (raw sums)
            for (int y = 0; y < T; ++y) py[size_t(y)] = 0.0, R[size_t(y)] = 0.0;
            for (int64_t i = 0; i < B; ++i) {
                const double* ti = tn + i * T;
                const int32_t u = ws.uid[size_t(i)];
                for (int y = 0; y < T; ++y) {
                    ws.M[size_t(u) * T + y] += ti[y];
                    py[size_t(y)] += ti[y];
                }
                for (int s = 0; s < S - 1; ++s) {
                    double* ms = ws.m[size_t(s)].data() + ws.key[size_t(s) * B + i] * T;
                    for (int y = 0; y < T; ++y) ms[y] += ti[y];
                }
            }
            for (int s = 0; s < S - 1; ++s) {  // touched cells: from the joint cells' first samples
                auto& t = ws.touched[size_t(s)];
                t.clear();
                for (int32_t u = 0; u < U; ++u) t.push_back(ws.key[size_t(s) * B + ws.first[size_t(u)]]);
            }
            for (int y = 0; y < T; ++y) py[size_t(y)] *= invB;
            for (int a = 0; a < A; ++a) acc[size_t(a)] = 0.0;
            // every occupied joint cell, every antichain
            for (int32_t u = 0; u < U; ++u) {
                const int32_t i0 = ws.first[size_t(u)];
                for (int s = 0; s < S; ++s) {
                    const double* src = s == S - 1 ? ws.M.data() + size_t(u) * T
                                                   : ws.m[size_t(s)].data() + ws.key[size_t(s) * B + i0] * T;
                    double qs = 0.0;
                    for (int y = 0; y < T; ++y) {
                        ws.val[size_t(s) * T + y] = src[y] * invB;
                        qs += src[y];
                    }
                    ws.q[size_t(s)] = qs * invB;
                }
                const double* mu = ws.val.data() + size_t(S - 1) * T;  // m(y, u)
                for (int a = 0; a < A; ++a) {
                    double D = 0.0;
                    for (int y = 0; y < T; ++y) ws.num[size_t(y)] = 0.0;
                    for (int k = rp[size_t(a)]; k < rp[size_t(a) + 1]; ++k) {
                        const int s = rc[size_t(k)];
                        const double c = rv[size_t(k)];
                        D += c * ws.q[size_t(s)];
                        for (int y = 0; y < T; ++y) ws.num[size_t(y)] += c * ws.val[size_t(s) * T + y];
                    }
                    const double wa = w ? w[a] : 0.0;
                    double live_mass = 0.0;  // exact numerics: sum_y m(y, u) over the live terms, for dG/dD
                    for (int y = 0; y < T; ++y) {
                        const double Nv = ws.num[size_t(y)];
                        double L = 0.0;
                        bool live;
                        if (published) {
                            const double r = Nv / (D * py[size_t(y)] + eps);
                            live = !(r < kFloor);
                            if (live) L = std::log2(r);
                        } else {
                            live = Nv > 0.0 && D > 0.0 && py[size_t(y)] > 0.0;
                            if (live) L = std::log2(Nv) - std::log2(D) - std::log2(py[size_t(y)]);
                        }
                        acc[size_t(a)] += mu[y] * L;
                        if (need_grad && live && wa != 0.0) {
                            ws.Ldir[size_t(u) * T + y] += wa * L;
                            const double g = wa * mu[y] * kInvLn2 / Nv;  // dG/dN_a(y, u)
                            for (int k = rp[size_t(a)]; k < rp[size_t(a) + 1]; ++k) {
                                const int s = rc[size_t(k)];
                                double* t = s == S - 1 ? ws.TM.data() + size_t(u) * T
                                                       : ws.tm[size_t(s)].data() + ws.key[size_t(s) * B + i0] * T;
                                t[y] += g * rv[size_t(k)];
                            }
                            R[size_t(y)] += wa * mu[y] * D * kInvLn2 / (D * py[size_t(y)] + eps);
                            live_mass += mu[y];
                        }
                    }
                    if (!published && live_mass != 0.0) {  // D's own derivative (published: D detached)
                        const double gd = -wa * live_mass * kInvLn2 / D;
                        for (int k = rp[size_t(a)]; k < rp[size_t(a) + 1]; ++k) {
                            const int s = rc[size_t(k)];
                            double* t = s == S - 1 ? ws.TQ.data() + u : ws.tq[size_t(s)].data() + ws.key[size_t(s) * B + i0];
                            *t += gd * rv[size_t(k)];
                        }
                    }
                }
            }
            double H = 0.0;
            for (int y = 0; y < T; ++y) {
                const double p = py[size_t(y)];
                if (published)
                    H -= p * std::log2(p + eps);
                else if (p > 0.0)
                    H -= p * std::log2(p);
            }
            for (int a = 0; a < A; ++a) red[nn * A + a] = acc[size_t(a)];
            h_y[nn] = H;
            if (goal) {
                double G = gamma_h * H;
                for (int a = 0; a < A; ++a) G += w[a] * acc[size_t(a)];
                goal[nn] = G;
            }
            if (need_grad) {
                for (int y = 0; y < T; ++y) {
                    const double p = py[size_t(y)];
                    double dH = 0.0;
                    if (published)
                        dH = -std::log2(p + eps) - p * kInvLn2 / (p + eps);
                    else if (p > 0.0)
                        dH = -std::log2(p) - kInvLn2;
                    R[size_t(y)] = gamma_h * dH - R[size_t(y)];  // the per-y constant of the gradient
                }
                double* dn = dthetas + nn * B * T;
                for (int64_t i = 0; i < B; ++i) {
                    const int32_t u = ws.uid[size_t(i)];
                    double gq = ws.TQ[size_t(u)];  // the same for every y: q sums over y
                    for (int s = 0; s < S - 1; ++s) gq += ws.tq[size_t(s)][size_t(ws.key[size_t(s) * B + i])];
                    for (int y = 0; y < T; ++y) {
                        double g = ws.Ldir[size_t(u) * T + y] + ws.TM[size_t(u) * T + y] + R[size_t(y)] + gq;
                        for (int s = 0; s < S - 1; ++s) g += ws.tm[size_t(s)][size_t(ws.key[size_t(s) * B + i] * T + y)];
                        dn[i * T + y] = g * invB;
                    }
                }
            }
            // reset the touched cells of every table and the joint map
            for (int s = 0; s < S - 1; ++s)
                for (int64_t c : ws.touched[size_t(s)]) {
                    ws.tq[size_t(s)][size_t(c)] = 0.0;
                    for (int y = 0; y < T; ++y) ws.m[size_t(s)][size_t(c * T + y)] = 0.0, ws.tm[size_t(s)][size_t(c * T + y)] = 0.0;
                }
            for (int32_t u = 0; u < U; ++u) ws.slot[size_t(ws.ukey[size_t(u)])] = -1;
        }
    }
}

}  // namespace cpu
}  // namespace infomorph
