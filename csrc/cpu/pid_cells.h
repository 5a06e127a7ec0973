// I_sx of pre-binned samples with any target alphabet, forward + analytic backward, on the CPU
// (infomorph_kernels.api.pid_binned, backend "cpu"; OpenMP over neurons).
//
// Per neuron: B samples with bin indices b_i (n sources) and a target distribution theta_i(y),
// y = 0..T-1, every column as given. In units of probability (sums / B):
//   m_s(y, c) = (1/B) sum_i theta_i(y) [cell_s(b_i) = c],   q_s(c) = sum_y m_s(y, c)
//   N_a(y, u) = sum_s C[a, s] m_s(y, cell_s(u)),   D_a(u) = sum_s C[a, s] q_s(cell_s(u)),  p(y) = sum_u m(y, u)
// over the occupied joint cells u, with m(y, u) = m_full(y, u):
//   published numerics (the published infomorphic code): r = N / (D p(y) + 1e-10), L = log2 r, or
//     L = 0 where r < 1e-7 (a constant there: no gradient); H(Y) = -sum_y p(y) log2(p(y) + 1e-10);
//   exact: L = log2 N - log2 D - log2 p(y) where N > 0 (else 0); H(Y) = -sum_y p(y) log2 p(y).
//   I(a) = sum_u sum_y m(y, u) L_a(y, u),   G = sum_a w_a I(a) + gamma_h H(Y)
// (w = M^T gamma_atoms with w[full] -= gamma_h, as the fused engine's). The backward, from the
// chain rule through every m_s (each sample i adds theta_i(y) / B to one cell of every table):
//   dG/dtheta_i(y) = (1/B) [ sum_a w_a L_a(y, u_i) + sum_s T_s(y, cell_s(b_i)) - R(y) + gamma_h H'(y) ]
//   T_s(y, c) = sum_{u in c} sum_a [L_a live] w_a C[a, s] m(y, u) / (N_a(y, u) ln 2)
//   R(y) = sum_u sum_a [L_a live] w_a m(y, u) D_a(u) / ((D_a(u) p(y) + eps) ln 2)   (eps = 0: exact)
//   H'(y) = -log2(p(y) + eps) - p(y) / ((p(y) + eps) ln 2)
//   exact numerics also differentiate D (published: D detached, as that code does), a term the same for
//   every y (q sums over y; it cancels when sum_y theta_i(y) is fixed):
//   + sum_s Q_s(cell_s(b_i)),  Q_s(c) = -sum_{u in c} sum_a w_a C[a, s] (sum_{y live} m(y, u)) / (D_a(u) ln 2)
// Tables are dense per proper subset (reset through their touched cells); the joint cells are
// deduplicated in first-appearance order. Everything in float64; each neuron runs on one thread in
// sample order, so results do not depend on the thread count.
#pragma once

#include <cstdint>

namespace infomorph {
namespace cpu {

// bins: int32 [N, B, n] (neuron-major), thetas: float64 [N, B, T], nbins [n], coef: int32 [A, 2^n - 1]
// (columns: subset mask - 1), w: float64 [A] (may be null when !need_grad and goal is null).
// Writes red [N, A], h_y [N], goal [N] (if non-null) and, with need_grad, dthetas [N, B, T]; all float64.
void pid_cells_run(const int32_t* bins, const double* thetas, int64_t N, int64_t B, int n, int T,
                   const int64_t* nbins, const int32_t* coef, int A, const double* w, double gamma_h,
                   bool published, bool need_grad, double* red, double* h_y, double* goal, double* dthetas,
                   int num_threads);

// The largest joint cell count (product of nbins) served: the joint map is dense.
constexpr int64_t kCellsMaxJoint = int64_t(1) << 24;

}  // namespace cpu
}  // namespace infomorph
