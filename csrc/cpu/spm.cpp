// CPU kernels of the Subspace Power Method (see sl/spm.h for the layout and contract).
// spm_contract / spm_power: one point per OpenMP iteration; each point's loop is two passes over V (D x R):
// alpha = V^T y with y_p = c_p x_i x_j (c = 1 on the diagonal, 2 off it), then u = V alpha,
// and grad_i = sum_j U[i, j] x_j with U the symmetric matrix whose packed entries are u.
// spm_extract: spm_extract_kernels.inc (unpacked working basis); spm_cp3: the whole order-3
// SPM in one call, spm_cp3_kernels.inc (at d ~ 10..50 each step is microseconds and a chain
// of torch calls for them cost several times the search; the CUDA path and the reference
// compose the same steps, subspace_linalg/reference/spm.py: cp3). Both compiled for
// baseline x86-64 and AVX2 + FMA, chosen at run time.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "sl/dtype.h"
#include "sl/isa.h"
#include "sl/parallel.h"
#include "sl/philox.h"
#include "sl/spm.h"

namespace sl {
namespace {

// scratch per point: y (D), u (D), alpha (R), g (d), x (d)
template <typename T>
struct Work {
  T* y;
  T* u;
  T* alpha;
  T* g;
  T* x;
};

// y = x (x) x in the packed symmetric layout (c_p x_i x_j, c = 1 on the diagonal, 2 off it)
template <typename T>
inline void pack_outer(std::int64_t d, const T* __restrict x, T* __restrict y) {
  std::int64_t p = 0;
  for (std::int64_t i = 0; i < d; ++i) {
    const T xi = x[i];
    y[p++] = xi * xi;
    const T two_xi = T(2) * xi;
    for (std::int64_t j = i + 1; j < d; ++j) y[p++] = two_xi * x[j];
  }
}

// g = U x with U the symmetric d x d matrix whose packed entries are u; returns g . x
template <typename T>
inline T packed_symv_dot(std::int64_t d, const T* __restrict u, const T* __restrict x, T* __restrict g) {
  std::int64_t p = 0;
  for (std::int64_t i = 0; i < d; ++i) g[i] = T(0);
  for (std::int64_t i = 0; i < d; ++i) {
    const T xi = x[i];
    T gi = u[p++] * xi;
    for (std::int64_t j = i + 1; j < d; ++j, ++p) {
      gi += u[p] * x[j];
      g[j] += u[p] * xi;
    }
    g[i] += gi;
  }
  T f = T(0);
  for (std::int64_t i = 0; i < d; ++i) f += g[i] * x[i];
  return f;
}

// alpha = V^T (x (x) x), grad = sum_r alpha_r V_r x; returns f = grad . x
// V (D, R) with row stride ld >= R (the first R columns are the basis)
template <typename T>
T contract_ld(std::int64_t d, std::int64_t R, std::int64_t ld, const T* __restrict V, const T* __restrict x,
              T* __restrict y, T* __restrict u, T* __restrict alpha, T* __restrict g) {
  const std::int64_t D = d * (d + 1) / 2;
  pack_outer(d, x, y);
  for (std::int64_t r = 0; r < R; ++r) alpha[r] = T(0);
  for (std::int64_t q = 0; q < D; ++q) {
    const T* __restrict row = V + q * ld;
    const T yq = y[q];
#pragma omp simd
    for (std::int64_t r = 0; r < R; ++r) alpha[r] += row[r] * yq;
  }
  for (std::int64_t q = 0; q < D; ++q) {
    const T* __restrict row = V + q * ld;
    T acc = T(0);
#pragma omp simd reduction(+ : acc)
    for (std::int64_t r = 0; r < R; ++r) acc += row[r] * alpha[r];
    u[q] = acc;
  }
  return packed_symv_dot(d, u, x, g);
}

template <typename T>
T contract_one(const SpmShape& s, const T* V, const T* x, T* y, T* u, T* alpha, T* g) {
  return contract_ld(s.d, s.R, s.R, V, x, y, u, alpha, g);
}

template <typename T>
T shift_of(T f, T cn) {
  // adaptive shift: f may exceed 1 by rounding
  const T c = f > T(2) / T(3) ? std::sqrt(T(2) * f * (f < T(1) ? T(1) - f : T(0))) : T(1) - f / T(2);
  return cn * c;
}

bool alloc(std::vector<char>& buf, std::size_t bytes) {
  try {
    buf.resize(bytes);
  } catch (const std::bad_alloc&) {
    return false;
  }
  return true;
}

template <typename T>
Status contract_run(const SpmShape& s, const T* V, const T* X, T* alpha, T* grad) {
  const std::int64_t D = s.D(), d = s.d, R = s.R;
  const int nt = max_threads();
  const std::size_t per = static_cast<std::size_t>(2 * D + R + 2 * d);
  std::vector<char> buf;
  if (!alloc(buf, per * sizeof(T) * static_cast<std::size_t>(nt)))
    return invalid_argument("spm_contract: cannot allocate host scratch of " + std::to_string(per * nt) + " values");
  T* base = reinterpret_cast<T*>(buf.data());
#pragma omp parallel for schedule(static) num_threads(nt) if (s.B > 1)
  for (std::int64_t b = 0; b < s.B; ++b) {
    T* w = base + per * static_cast<std::size_t>(thread_id());
    T* y = w;
    T* u = y + D;
    contract_one(s, V, X + b * d, y, u, alpha + b * R, grad + b * d);
  }
  return Status::ok();
}

// the shifted power iteration from x (unit, updated in place); returns F at the final x
template <typename T>
T power_one(std::int64_t d, std::int64_t R, std::int64_t ld, const T* V, T* x, std::int64_t maxiter, T tol, T cn,
            T* y, T* u, T* alpha, T* g, std::int64_t* iters_out) {
  std::int64_t it = 0;
  while (it < maxiter) {
    const T f = contract_ld(d, R, ld, V, x, y, u, alpha, g);
    const T sh = shift_of(f, cn);
    T nrm = T(0);
    for (std::int64_t i = 0; i < d; ++i) {
      g[i] += sh * x[i];
      nrm += g[i] * g[i];
    }
    ++it;
    nrm = std::sqrt(nrm);
    if (!(nrm > T(0))) break;
    T diff = T(0);
    for (std::int64_t i = 0; i < d; ++i) {
      const T xn = g[i] / nrm;
      diff += (xn - x[i]) * (xn - x[i]);
      x[i] = xn;
    }
    if (std::sqrt(diff) < tol) break;
  }
  if (iters_out) *iters_out = it;
  return contract_ld(d, R, ld, V, x, y, u, alpha, g);
}

template <typename T>
Status power_run(const SpmShape& s, const T* V, T* X, T* F, std::int64_t* iters, std::int64_t maxiter, T tol,
                 T cn) {
  const std::int64_t D = s.D(), d = s.d, R = s.R;
  const int nt = max_threads();
  const std::size_t per = static_cast<std::size_t>(2 * D + R + 2 * d);
  std::vector<char> buf;
  if (!alloc(buf, per * sizeof(T) * static_cast<std::size_t>(nt)))
    return invalid_argument("spm_power: cannot allocate host scratch of " + std::to_string(per * nt) + " values");
  T* base = reinterpret_cast<T*>(buf.data());
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt) if (s.B > 1)
  for (std::int64_t b = 0; b < s.B; ++b) {
    T* y = base + per * static_cast<std::size_t>(thread_id());
    T* u = y + D;
    T* alpha = u + D;
    T* g = alpha + R;
    T* x = g + d;
    T* xb = X + b * d;
    for (std::int64_t i = 0; i < d; ++i) x[i] = xb[i];
    std::int64_t it = 0;
    const T f = power_one(d, R, R, V, x, maxiter, tol, cn, y, u, alpha, g, &it);
    for (std::int64_t i = 0; i < d; ++i) xb[i] = x[i];
    F[b] = f;
    iters[b] = it;
  }
  return Status::ok();
}

using i64 = std::int64_t;
constexpr int kVecBytes = 32;  // the register width the extraction's inner loops are written for (AVX2)

enum Cp3Status { kOk = 0, kRejected = 1, kRankAboveNumerical = 2, kRankZero = 3, kJacobiUnconverged = 4 };

// The extraction and the whole order-3 SPM, compiled for baseline x86-64 and for AVX2 + FMA,
// chosen at run time (AVX-512 measured slower at these lengths: d = 12..20 values per row)
#define SL_SPM_TARGET
namespace generic {
#include "spm_extract_kernels.inc"
#include "spm_cp3_kernels.inc"
}  // namespace generic
#undef SL_SPM_TARGET
#ifdef SL_X86_DISPATCH
#define SL_SPM_TARGET SL_TARGET_AVX2
namespace avx2 {
#include "spm_extract_kernels.inc"
#include "spm_cp3_kernels.inc"
}  // namespace avx2
#undef SL_SPM_TARGET
#endif

// the kernel variant for this CPU
template <typename T>
Status extract_isa(const SpmExtractArgs& a) {
#ifdef SL_X86_DISPATCH
  if (isa_level() >= 1) return avx2::extract_run<T>(a);
#endif
  return generic::extract_run<T>(a);
}
template <typename T>
Status cp3_isa(const SpmCp3Args& a) {
#ifdef SL_X86_DISPATCH
  if (isa_level() >= 1) return avx2::cp3_run<T>(a);
#endif
  return generic::cp3_run<T>(a);
}

Status check_shape(const SpmShape& s, const char* op) {
  SL_REQUIRE(s.d >= 1 && s.R >= 1 && s.B >= 0,
             std::string(op) + ": need d >= 1, R >= 1, B >= 0, got d=" + std::to_string(s.d) +
                 " R=" + std::to_string(s.R) + " B=" + std::to_string(s.B));
  return Status::ok();
}

}  // namespace

std::int64_t spm_workspace_bytes(int dtype, const SpmShape& s) {
  const std::int64_t esize = dtype == static_cast<int>(DType::F64) ? 8 : 4;
  return s.B * (2 * s.D() + s.R + 2 * s.d) * esize;
}

Status spm_contract_cpu(int dtype, const SpmShape& s, const void* V, const void* X, void* alpha, void* grad) {
  SL_RETURN_IF_ERROR(check_shape(s, "spm_contract"));
  if (s.B == 0) return Status::ok();
  SL_REQUIRE(V && X && alpha && grad, "spm_contract: null data pointer");
  return dispatch_real(dtype, "spm_contract", [&](auto tag) {
    using T = decltype(tag);
    return contract_run<T>(s, static_cast<const T*>(V), static_cast<const T*>(X), static_cast<T*>(alpha),
                           static_cast<T*>(grad));
  });
}

std::int64_t spm_extract_workspace_bytes(int dtype, std::int64_t d, std::int64_t R) {
  const std::int64_t esize = dtype == static_cast<int>(DType::F64) ? 8 : 4;
  const std::int64_t D = d * (d + 1) / 2;
  // the CUDA layout of spm_extract_kernel, the Newton scratch (d R + d^2 + 3 d) included
  return (D * R + R * R + d * R + 3 * D + 6 * R + 4 * d + 8 + (D > R ? D : R) + d * R + d * d + 3 * d) * esize;
}

Status spm_extract_cpu(int dtype, const SpmExtractArgs& a) {
  SL_REQUIRE(a.d >= 1 && a.R >= 1 && a.ntries >= 1 && a.maxiter >= 0,
             "spm_extract: need d >= 1, R >= 1, ntries >= 1, maxiter >= 0, got d=" + std::to_string(a.d) +
                 " R=" + std::to_string(a.R) + " ntries=" + std::to_string(a.ntries));
  SL_REQUIRE(a.V && a.D1 && (a.G != nullptr) == (a.C != nullptr) && a.weights && a.factors && a.fbest &&
                 (!a.odd || a.U),
             "spm_extract: null data pointer");
  return dispatch_real(dtype, "spm_extract", [&](auto tag) {
    using T = decltype(tag);
    return extract_isa<T>(a);
  });
}

Status spm_power_cpu(int dtype, const SpmShape& s, const void* V, void* X, void* f, std::int64_t* iters,
                     std::int64_t maxiter, double tol, double cn) {
  SL_RETURN_IF_ERROR(check_shape(s, "spm_power"));
  SL_REQUIRE(maxiter >= 0, "spm_power: maxiter must be >= 0, got " + std::to_string(maxiter));
  if (s.B == 0) return Status::ok();
  SL_REQUIRE(V && X && f && iters, "spm_power: null data pointer");
  return dispatch_real(dtype, "spm_power", [&](auto tag) {
    using T = decltype(tag);
    return power_run<T>(s, static_cast<const T*>(V), static_cast<T*>(X), static_cast<T*>(f), iters, maxiter,
                        static_cast<T>(tol), static_cast<T>(cn));
  });
}

Status spm_cp3_cpu(int dtype, const SpmCp3Args& a) {
  SL_REQUIRE(a.d >= 1 && a.ntries >= 1 && a.maxiter >= 1 && a.rank >= 0 && a.rank <= a.d,
             "spm_cp3: need d >= 1, ntries >= 1, maxiter >= 1, 0 <= rank <= d, got d=" + std::to_string(a.d) +
                 " ntries=" + std::to_string(a.ntries) + " maxiter=" + std::to_string(a.maxiter) +
                 " rank=" + std::to_string(a.rank));
  SL_REQUIRE(a.T && a.weights && a.factors && a.sig && a.info, "spm_cp3: null data pointer");
  return dispatch_real(dtype, "spm_cp3", [&](auto tag) {
    using T = decltype(tag);
    return cp3_isa<T>(a);
  });
}

}  // namespace sl
