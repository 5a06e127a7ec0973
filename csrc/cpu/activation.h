// The infomorphic hidden neuron's trivariate activation, fused (forward and analytic backward) on
// the CPU, float32 (infomorph_kernels.api.trivariate_activation; torch ops serve other dtypes and
// devices). Per element, with s(x) = 1 / (1 + exp(-x)):
//   s1 = s(b1 f c),  s2 = s(b2 f l),  g = (1 - a1 - a2) + a1 s1 + a2 s2,  theta = s(f g)
// and for an upstream gradient d of theta, with t = d theta (1 - theta), q1 = a1 b1 s1 (1 - s1),
// q2 = a2 b2 s2 (1 - s2):
//   df = t g + (t f)(q1 c + q2 l),  dc = (t f)(f q1),  dl = (t f)(f q2)
// (in that order: t f is bounded, since t > 0 only where |f g| is moderate; no product overflows).
// The backward recomputes s1, s2 from f, c, l and reads theta. exp is a degree-6 polynomial on
// [-ln2/2, ln2/2] times 2^n (arguments clamped to [-87.3, 88.3]: no Inf, no NaN, theta in [0, 1]);
// within 2 ulp of std::exp. Elements are cut into fixed chunks and a tail is computed padded, so
// every element takes the same path whatever the thread count: results do not depend on it.
#pragma once

#include <cstdint>

namespace infomorph {
namespace cpu {

struct TrivariateParams {
    float a1, a2, b1, b2;
};

// f, c, l, theta: float32 [numel], contiguous; avx2: use the AVX2 + FMA flavour.
void trivariate_forward(const float* f, const float* c, const float* l, float* theta, int64_t numel,
                        TrivariateParams p, int num_threads, bool avx2);

// grad: upstream gradient of theta; writes df, dc, dl (each [numel]).
void trivariate_backward(const float* f, const float* c, const float* l, const float* theta, const float* grad,
                         float* df, float* dc, float* dl, int64_t numel, TrivariateParams p, int num_threads,
                         bool avx2);

}  // namespace cpu
}  // namespace infomorph
