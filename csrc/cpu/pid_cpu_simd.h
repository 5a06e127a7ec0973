// Small SIMD layer of the CPU engine: GCC/Clang vector extensions, 4 doubles per vector.
//
// Why vector extensions instead of auto-vectorised scalar loops: GCC does not if-convert the
// selects of this kernel under the default -ftrapping-math, so the hot loops stayed scalar. Vector
// types make the vectorisation explicit and portable: compiled for AVX2 they are single ymm
// instructions, compiled for baseline x86-64 (SSE2) or other targets GCC splits them into two
// 128-bit operations. No intrinsics, so nothing here can fault on a CPU without AVX2.
#pragma once

#include <cstdint>
#include <cstring>

#include "pid_common.h"

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"  // 32-byte vectors passed between inlined helpers only
#endif

namespace infomorph {
namespace cpu {

// aligned(8): buffers come from std::vector in baseline-compiled code, which may not honour a
// 32-byte alignment; unaligned vector moves cost nothing extra on aligned data.
typedef double vd __attribute__((vector_size(32), aligned(8)));
typedef long long vl __attribute__((vector_size(32), aligned(8)));
typedef unsigned long long vu __attribute__((vector_size(32), aligned(8)));
constexpr int kVec = 4;  // doubles per vd
typedef int32_t vi8 __attribute__((vector_size(32), aligned(4)));  // 8 counts, one per lane of a lane group

INFOMORPH_INLINE vd vsplat(double v) { return vd{v, v, v, v}; }

// mask lanes are all ones (true) or zero, as vector comparisons return them
INFOMORPH_INLINE vd vselect(const vl& mask, const vd& a, const vd& b) {
    return (vd)(((vl)a & mask) | ((vl)b & ~mask));
}

INFOMORPH_INLINE vd vmax(const vd& a, const vd& b) { return vselect(a > b, a, b); }

// a * b + c. In the AVX2 flavour GCC fuses it into one FMA (pid_neuron_avx2 is compiled with
// fp-contract=fast); in the baseline flavour it is a multiply and an add (-std=c++17 keeps GCC's
// automatic contraction off there). kFma only documents which flavour a call belongs to.
template <bool kFma>
INFOMORPH_INLINE vd vfma(const vd& a, const vd& b, const vd& c) {
    return a * b + c;
}

// log2 of each lane, for x in [0, 2^900] (the engine passes sums of at most B <= 2^30 terms).
// x is scaled by 2^54 first (exact), which makes subnormals normal without a branch. Then
// x = 2^k z with z in [sqrt(1/2), sqrt(2)): adding (1.0 - sqrt(1/2)) to the bits carries into the
// exponent exactly when the mantissa is >= sqrt(2)'s. ln z = 2 atanh(s) = 2 (s + s^3 p(s^2)),
// s = (z - 1) / (z + 1), |s| <= 0.1716, p of degree 6: fdlibm's minimax coefficients for this
// interval (e_log.c's Lg1..Lg7, halved; its error bound 2^-58.45 relative to the s^2 term):
// 1 ulp of the result typically, 3 at most next to x = 1 (as accurate as the s^19 series it
// replaced; tests/test_backend_cpu.py checks the binding log2_lanes against numpy's log2, in both
// flavours). x = 0 gives a finite wrong value (about -1077): callers multiply it by a zero
// weight or mask it, never emit it.
template <bool kFma>
INFOMORPH_INLINE vd log2v(const vd& x_in) {
    const vd x = x_in * 18014398509481984.0;  // 2^54
    const vu ix = (vu)x;
    const vu e = (ix + 0x00095F619980C433ULL) >> 52;
    const vd z = (vd)(ix - (e << 52) + (0x3FFULL << 52));
    const vd kd = (vd)(e | 0x4330000000000000ULL) - 4503599627371573.0;  // e - 1023 - 54
    const vd f = z - 1.0;
    const vd s = f / (f + 2.0);
    const vd s2 = s * s;
    // Horner in s2 (fdlibm's Lg7 .. Lg1, each halved: p(s^2) ~ 1/3 + s^2 / 5 + ...)
    vd p = vsplat(0.5 * 1.479819860511658591e-01);
    p = vfma<kFma>(p, s2, vsplat(0.5 * 1.531383769920937332e-01));
    p = vfma<kFma>(p, s2, vsplat(0.5 * 1.818357216161805012e-01));
    p = vfma<kFma>(p, s2, vsplat(0.5 * 2.222219843214978396e-01));
    p = vfma<kFma>(p, s2, vsplat(0.5 * 2.857142874366239149e-01));
    p = vfma<kFma>(p, s2, vsplat(0.5 * 3.999999999940941908e-01));
    p = vfma<kFma>(p, s2, vsplat(0.5 * 6.666666666666735130e-01));
    // ln z = 2 (s + s^3 p): the leading s is added last so its rounding is not amplified
    return vfma<kFma>(vsplat(2.8853900817779268), vfma<kFma>(s * s2, p, s), kd);  // 2 / ln 2
}

}  // namespace cpu
}  // namespace infomorph
