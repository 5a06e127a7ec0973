// I_sx redundancies of many groups of discrete neurons about a K-valued label, on the CPU
// (infomorph_kernels.analysis.pid_labels, backend "cpu"; OpenMP over groups).
//
// Per group g = (j_1, ..., j_n) of neurons with integer symbols x[j][i] in 0..L-1 and labels t_i:
//   M(u, t) = #{i : joint cell of sample i = u, t_i = t}   (u over the occupied joint cells)
//   m_s(c, t), q_s(c): the same counts marginalized to source subset s (q without the label)
//   N_a(u, t) = sum_s C[a, s] m_s(cell_s(u), t),   D_a(u) = sum_s C[a, s] q_s(cell_s(u))
//   I(a) = (1/B) sum_u sum_t M(u, t) (log2 N_a(u, t) - log2 D_a(u)) + H(T)
// (docs/math.md section 2 with the one-hot label as the target's "theta"). Every N and D is
// an exact integer count (inclusion-exclusion of integer marginals is exact in double below 2^53),
// so every log2 is a table lookup of log2 of an integer: no transcendental per cell, and
// N_a(u, t) >= M(u, t) >= 1 exactly wherever a term has weight.
// Antichains with a single part {U} (C row = one entry 1) reduce to marginal sums over the subset
// table: sum_{c,t} m_U(c, t) log2 m_U(c, t) - sum_c q_U(c) log2 q_U(c).
// Each group runs entirely on one thread with that thread's workspace, in sample order: results
// do not depend on the thread count or the schedule.
#pragma once

#include <cstdint>

namespace infomorph {
namespace cpu {

// sym: int32 [N, B] (neuron-major), labels: int32 [B] in 0..K-1, groups: int64 [G, n] neuron
// indices, coef: int32 [A, 2^n - 1]; writes red [G, A] (float64, bits; H(T) = h_t added).
void pid_groups_run(const int32_t* sym, int64_t N, int64_t B, int64_t L, const int32_t* labels, int64_t K,
                    const int64_t* groups, int64_t G, int n, const int32_t* coef, int A, double h_t, double* red,
                    int num_threads);

}  // namespace cpu
}  // namespace infomorph
