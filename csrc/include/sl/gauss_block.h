// The Gaussian entries of sl/philox.h's rand_entry, kGaussLanes pairs at a time, in code the
// compiler vectorizes (one lane per pair): Philox4x32-10 in 32-bit lanes with 64-bit
// products, then Box-Muller in float64 with polynomial log, sin and cos instead of libm
// calls (which do not vectorize). The values agree with rand_entry's (libm) to a few ulps
// of float64: the same u1, u2 and angle 2 pi u2; log by the atanh series of the mantissa,
// sin / cos by a three-part Cody-Waite reduction by pi/2 and Taylor polynomials on
// [-pi/4, pi/4]. Host code only (the CUDA kernel keeps rand_entry).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "sl/isa.h"
#include "sl/philox.h"

namespace sl {

constexpr int kGaussLanes = 16;  // pairs per block (16 independent lanes: 2x the throughput of 8, measured)

// u01_open0(lo, hi) bit for bit, without a 64-bit integer -> double conversion (AVX2 has
// none: GCC made it scalar; with gauss_log below the fill took 9.8-10.3 ns an entry on an AVX2
// EPYC): the low 52 bits of the 53-bit b by the exponent trick (2^52 + x as a double's
// bits, minus 2^52: exact), plus its top bit times 2^52 (a sum below 2^53: exact)
SL_ALWAYS_INLINE inline double gauss_u01(std::uint32_t lo, std::uint32_t hi) {
  const std::uint64_t b = ((static_cast<std::uint64_t>(hi) << 32) | lo) >> 11;
  const std::uint64_t bits = 0x4330000000000000ull | (b & 0x000FFFFFFFFFFFFFull);
  double low;
  std::memcpy(&low, &bits, sizeof low);
  const double top = (b >> 52) ? 4503599627370496.0 : 0.0;
  return ((low - 4503599627370496.0) + top + 1.0) * (1.0 / 9007199254740992.0);
}

// log(u) for u in [2^-53, 1]
SL_ALWAYS_INLINE inline double gauss_log(double u) {
  std::uint64_t b;
  std::memcpy(&b, &u, sizeof b);
  // Integer ops only, no select: GCC's AVX2 target does not if-convert a select on a double
  // compare here (control flow: the loop stayed scalar, 23 ns an entry on one core). m > sqrt(2) is
  // compared on the fraction bits (same exponent: monotone), and halving m takes one off its
  // exponent field; the same m and e as the compare-and-select form.
  const std::uint64_t fr = b & 0x000FFFFFFFFFFFFFull;
  const std::int64_t big = static_cast<std::int64_t>(fr) > 0x6A09E667F3BCDll;  // m in [sqrt(1/2), sqrt(2)): |s| <= 0.1716
  const std::uint64_t mb = (fr | 0x3FF0000000000000ull) - (static_cast<std::uint64_t>(big) << 52);
  double m;
  std::memcpy(&m, &mb, sizeof m);
  const std::int32_t e = static_cast<std::int32_t>(b >> 52) - 1023 + static_cast<std::int32_t>(big);
  const double f = m - 1.0;  // exact
  const double s = f / (2.0 + f);
  const double z = s * s;  // <= 0.02944: the series to z^11 leaves < 1e-18
  double p = 1.0 / 23.0;
  p = p * z + 1.0 / 21.0;
  p = p * z + 1.0 / 19.0;
  p = p * z + 1.0 / 17.0;
  p = p * z + 1.0 / 15.0;
  p = p * z + 1.0 / 13.0;
  p = p * z + 1.0 / 11.0;
  p = p * z + 1.0 / 9.0;
  p = p * z + 1.0 / 7.0;
  p = p * z + 1.0 / 5.0;
  p = p * z + 1.0 / 3.0;
  const double lm = 2.0 * s + 2.0 * s * z * p;  // log(m) = 2 atanh(s)
  const double de = static_cast<double>(e);
  // ln 2 in two parts (the first with trailing zero bits: e * hi is exact for |e| <= 2^11)
  return de * 6.93147180369123816490e-01 + (de * 1.90821492927058770002e-10 + lm);
}

// (sin x, cos x) for x in [0, 2 pi + 1]
SL_ALWAYS_INLINE inline void gauss_sincos(double x, double* sn, double* cs) {
  const double q = std::nearbyint(x * 0.63661977236758134308);  // quadrant, 0..4
  // pi / 2 in three parts of 33 bits (q * part exact for q <= 4)
  const double r = ((x - q * 1.57079632673412561417e+00) - q * 6.07710050630396597660e-11) -
                   q * 2.02226624879595063154e-21;
  const double z = r * r;  // |r| <= pi/4 (plus rounding)
  double ps = -1.0 / 1307674368000.0;  // -1/15!
  ps = ps * z + 1.0 / 6227020800.0;
  ps = ps * z - 1.0 / 39916800.0;
  ps = ps * z + 1.0 / 362880.0;
  ps = ps * z - 1.0 / 5040.0;
  ps = ps * z + 1.0 / 120.0;
  ps = ps * z - 1.0 / 6.0;
  const double s = r + r * z * ps;
  double pc = 1.0 / 20922789888000.0;  // 1/16!
  pc = pc * z - 1.0 / 87178291200.0;
  pc = pc * z + 1.0 / 479001600.0;
  pc = pc * z - 1.0 / 3628800.0;
  pc = pc * z + 1.0 / 40320.0;
  pc = pc * z - 1.0 / 720.0;
  pc = pc * z + 1.0 / 24.0;
  const double c = (1.0 - 0.5 * z) + z * z * pc;
  const int k = static_cast<int>(q) & 3;  // x = k pi/2 + r
  const double s1 = (k & 1) ? c : s, c1 = (k & 1) ? s : c;
  *sn = (k & 2) ? -s1 : s1;
  *cs = ((k + 1) & 2) ? -c1 : c1;
}

// entries (i, 2p) and (i, 2p + 1) for p = p0 .. p0 + kGaussLanes - 1 of the Gaussian matrix
// under (seed, tag): even[t] = rad cos, odd[t] = rad sin (rand_entry's counter (i, p, tag, 0))
SL_ALWAYS_INLINE inline void gauss_block(std::uint64_t seed, std::uint32_t tag, std::uint32_t ci, std::uint32_t p0,
                                         double* even, double* odd) {
#pragma omp simd
  for (int t = 0; t < kGaussLanes; ++t) {
    const U32x4 r = philox(seed, ci, p0 + static_cast<std::uint32_t>(t), tag, 0u);
    const double u1 = gauss_u01(r.v[0], r.v[1]);
    const double u2 = gauss_u01(r.v[2], r.v[3]);
    const double rad = std::sqrt(-2.0 * gauss_log(u1));
    double sn, cs;
    gauss_sincos(6.283185307179586 * u2, &sn, &cs);
    even[t] = rad * cs;
    odd[t] = rad * sn;
  }
}

}  // namespace sl
