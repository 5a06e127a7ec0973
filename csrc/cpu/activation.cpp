// The trivariate activation, fused forward and backward (formulas in activation.h).
#include "activation.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <immintrin.h>
#define INFOMORPH_ACT_AVX2 1
#endif

namespace infomorph {
namespace cpu {
namespace {

constexpr int64_t kChunk = 8192;  // elements per OpenMP work item (a multiple of 8)
constexpr float kLo = -87.3f, kHi = 88.3f;  // 2^n stays a normal float
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f, kP3 = 4.1665795894e-2f,
                kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;

inline float exp_s(float x) {
    x = std::min(std::max(x, kLo), kHi);
    const float n = std::nearbyint(x * kLog2e);
    const float r = (x - n * kLn2Hi) - n * kLn2Lo;
    float y = kP0;
    y = y * r + kP1;
    y = y * r + kP2;
    y = y * r + kP3;
    y = y * r + kP4;
    y = y * r + kP5;
    y = y * (r * r) + r + 1.0f;
    const int32_t e = (int32_t(n) + 127) << 23;
    float scale;
    std::memcpy(&scale, &e, sizeof scale);
    return y * scale;
}

inline float sig_s(float x) { return 1.0f / (1.0f + exp_s(-x)); }

inline void fwd_s(const float* f, const float* c, const float* l, float* th, int64_t lo, int64_t hi,
                  const TrivariateParams& p) {
    const float k = 1.0f - p.a1 - p.a2;
    for (int64_t i = lo; i < hi; ++i) {
        const float s1 = sig_s(p.b1 * f[i] * c[i]), s2 = sig_s(p.b2 * f[i] * l[i]);
        th[i] = sig_s(f[i] * (k + p.a1 * s1 + p.a2 * s2));
    }
}

inline void bwd_s(const float* f, const float* c, const float* l, const float* th, const float* d, float* df,
                  float* dc, float* dl, int64_t lo, int64_t hi, const TrivariateParams& p) {
    const float k = 1.0f - p.a1 - p.a2, w1 = p.a1 * p.b1, w2 = p.a2 * p.b2;
    for (int64_t i = lo; i < hi; ++i) {
        const float fi = f[i], s1 = sig_s(p.b1 * fi * c[i]), s2 = sig_s(p.b2 * fi * l[i]);
        const float g = k + p.a1 * s1 + p.a2 * s2;
        const float t = d[i] * th[i] * (1.0f - th[i]);
        const float q1 = w1 * s1 * (1.0f - s1), q2 = w2 * s2 * (1.0f - s2);
        const float tf = t * fi;  // bounded: t > 0 only where |f g| is moderate
        df[i] = t * g + tf * (q1 * c[i] + q2 * l[i]);
        dc[i] = tf * (fi * q1);
        dl[i] = tf * (fi * q2);
    }
}

#ifdef INFOMORPH_ACT_AVX2
#define ACT_AVX2 __attribute__((target("avx2,fma")))

ACT_AVX2 inline __m256 exp_v(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(kLo)), _mm256_set1_ps(kHi));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
    __m256 y = _mm256_set1_ps(kP0);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP5));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

ACT_AVX2 inline __m256 sig_v(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp_v(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// one vector of 8 elements at offset i of each array
ACT_AVX2 inline void fwd_v8(const float* f, const float* c, const float* l, float* th, const TrivariateParams& p) {
    const __m256 vf = _mm256_loadu_ps(f);
    const __m256 s1 = sig_v(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(p.b1), vf), _mm256_loadu_ps(c)));
    const __m256 s2 = sig_v(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(p.b2), vf), _mm256_loadu_ps(l)));
    __m256 g = _mm256_fmadd_ps(_mm256_set1_ps(p.a1), s1, _mm256_set1_ps(1.0f - p.a1 - p.a2));
    g = _mm256_fmadd_ps(_mm256_set1_ps(p.a2), s2, g);
    _mm256_storeu_ps(th, sig_v(_mm256_mul_ps(vf, g)));
}

ACT_AVX2 inline void bwd_v8(const float* f, const float* c, const float* l, const float* th, const float* d,
                            float* df, float* dc, float* dl, const TrivariateParams& p) {
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 vf = _mm256_loadu_ps(f), vc = _mm256_loadu_ps(c), vl = _mm256_loadu_ps(l), vt = _mm256_loadu_ps(th);
    const __m256 s1 = sig_v(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(p.b1), vf), vc));
    const __m256 s2 = sig_v(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(p.b2), vf), vl));
    __m256 g = _mm256_fmadd_ps(_mm256_set1_ps(p.a1), s1, _mm256_set1_ps(1.0f - p.a1 - p.a2));
    g = _mm256_fmadd_ps(_mm256_set1_ps(p.a2), s2, g);
    const __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(d), vt), _mm256_sub_ps(one, vt));
    const __m256 q1 = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(p.a1 * p.b1), s1), _mm256_sub_ps(one, s1));
    const __m256 q2 = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(p.a2 * p.b2), s2), _mm256_sub_ps(one, s2));
    // ordered so that no product overflows: t f is bounded (t > 0 only where |f g| is moderate)
    const __m256 tf = _mm256_mul_ps(t, vf);
    const __m256 inner = _mm256_fmadd_ps(q1, vc, _mm256_mul_ps(q2, vl));
    _mm256_storeu_ps(df, _mm256_fmadd_ps(tf, inner, _mm256_mul_ps(t, g)));
    _mm256_storeu_ps(dc, _mm256_mul_ps(tf, _mm256_mul_ps(vf, q1)));
    _mm256_storeu_ps(dl, _mm256_mul_ps(tf, _mm256_mul_ps(vf, q2)));
}

// [lo, hi): whole vectors, then the tail padded to one vector (the same arithmetic for every element)
ACT_AVX2 void fwd_avx2(const float* f, const float* c, const float* l, float* th, int64_t lo, int64_t hi,
                       const TrivariateParams& p) {
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8) fwd_v8(f + i, c + i, l + i, th + i, p);
    if (i < hi) {
        float bf[8] = {0}, bc[8] = {0}, bl[8] = {0}, bt[8];
        const size_t k = size_t(hi - i) * sizeof(float);
        std::memcpy(bf, f + i, k), std::memcpy(bc, c + i, k), std::memcpy(bl, l + i, k);
        fwd_v8(bf, bc, bl, bt, p);
        std::memcpy(th + i, bt, k);
    }
}

ACT_AVX2 void bwd_avx2(const float* f, const float* c, const float* l, const float* th, const float* d, float* df,
                       float* dc, float* dl, int64_t lo, int64_t hi, const TrivariateParams& p) {
    int64_t i = lo;
    for (; i + 8 <= hi; i += 8) bwd_v8(f + i, c + i, l + i, th + i, d + i, df + i, dc + i, dl + i, p);
    if (i < hi) {
        float bf[8] = {0}, bc[8] = {0}, bl[8] = {0}, bt[8] = {0}, bd[8] = {0}, o1[8], o2[8], o3[8];
        const size_t k = size_t(hi - i) * sizeof(float);
        std::memcpy(bf, f + i, k), std::memcpy(bc, c + i, k), std::memcpy(bl, l + i, k);
        std::memcpy(bt, th + i, k), std::memcpy(bd, d + i, k);
        bwd_v8(bf, bc, bl, bt, bd, o1, o2, o3, p);
        std::memcpy(df + i, o1, k), std::memcpy(dc + i, o2, k), std::memcpy(dl + i, o3, k);
    }
}
#endif

template <typename Fn>
void chunked(int64_t numel, int threads, Fn fn) {
    const int64_t nchunks = (numel + kChunk - 1) / kChunk;
    const int t = int(std::max<int64_t>(1, std::min<int64_t>(threads, nchunks)));
// chunks handed out as threads come free (a descheduled thread delays only its chunk); elementwise:
// the same bits for any thread count
#pragma omp parallel for num_threads(t) schedule(dynamic) if (t > 1)
    for (int64_t ch = 0; ch < nchunks; ++ch) fn(ch * kChunk, std::min(numel, (ch + 1) * kChunk));
}

}  // namespace

void trivariate_forward(const float* f, const float* c, const float* l, float* theta, int64_t numel,
                        TrivariateParams p, int num_threads, bool avx2) {
#ifdef INFOMORPH_ACT_AVX2
    if (avx2) {
        chunked(numel, num_threads, [&](int64_t lo, int64_t hi) { fwd_avx2(f, c, l, theta, lo, hi, p); });
        return;
    }
#endif
    (void)avx2;
    chunked(numel, num_threads, [&](int64_t lo, int64_t hi) { fwd_s(f, c, l, theta, lo, hi, p); });
}

void trivariate_backward(const float* f, const float* c, const float* l, const float* theta, const float* grad,
                         float* df, float* dc, float* dl, int64_t numel, TrivariateParams p, int num_threads,
                         bool avx2) {
#ifdef INFOMORPH_ACT_AVX2
    if (avx2) {
        chunked(numel, num_threads,
                [&](int64_t lo, int64_t hi) { bwd_avx2(f, c, l, theta, grad, df, dc, dl, lo, hi, p); });
        return;
    }
#endif
    (void)avx2;
    chunked(numel, num_threads, [&](int64_t lo, int64_t hi) { bwd_s(f, c, l, theta, grad, df, dc, dl, lo, hi, p); });
}

}  // namespace cpu
}  // namespace infomorph
