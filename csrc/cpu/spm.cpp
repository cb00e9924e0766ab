// CPU kernels of the Subspace Power Method (see sl/spm.h for the layout and contract).
// One point per OpenMP iteration; each point's loop is two passes over V (D x R):
// alpha = V^T y with y_p = c_p x_i x_j (c = 1 on the diagonal, 2 off it), then u = V alpha,
// and grad_i = sum_j U[i, j] x_j with U the symmetric matrix whose packed entries are u.
#include <cmath>
#include <cstdint>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "sl/dtype.h"
#include "sl/parallel.h"
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

// alpha = V^T (x (x) x), grad = sum_r alpha_r V_r x; returns f = grad . x
template <typename T>
T contract_one(const SpmShape& s, const T* __restrict V, const T* __restrict x, T* __restrict y,
               T* __restrict u, T* __restrict alpha, T* __restrict g) {
  const std::int64_t d = s.d, R = s.R, D = s.D();
  std::int64_t p = 0;
  for (std::int64_t i = 0; i < d; ++i) {
    const T xi = x[i];
    y[p++] = xi * xi;
    const T two_xi = T(2) * xi;
    for (std::int64_t j = i + 1; j < d; ++j) y[p++] = two_xi * x[j];
  }
  for (std::int64_t r = 0; r < R; ++r) alpha[r] = T(0);
  for (std::int64_t q = 0; q < D; ++q) {
    const T* __restrict row = V + q * R;
    const T yq = y[q];
#pragma omp simd
    for (std::int64_t r = 0; r < R; ++r) alpha[r] += row[r] * yq;
  }
  for (std::int64_t q = 0; q < D; ++q) {
    const T* __restrict row = V + q * R;
    T acc = T(0);
#pragma omp simd reduction(+ : acc)
    for (std::int64_t r = 0; r < R; ++r) acc += row[r] * alpha[r];
    u[q] = acc;
  }
  for (std::int64_t i = 0; i < d; ++i) g[i] = T(0);
  p = 0;
  for (std::int64_t i = 0; i < d; ++i) {
    T gi = u[p++] * x[i];
    const T xi = x[i];
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
    T f = T(0);
    std::int64_t it = 0;
    while (it < maxiter) {
      f = contract_one(s, V, x, y, u, alpha, g);
      const T sh = shift_of(f, cn);
      T nrm = T(0);
      for (std::int64_t i = 0; i < d; ++i) {
        g[i] += sh * x[i];
        nrm += g[i] * g[i];
      }
      ++it;
      nrm = std::sqrt(nrm);
      if (!(nrm > T(0))) break;  // x orthogonal to everything (or NaN): stop, f tells
      T diff = T(0);
      for (std::int64_t i = 0; i < d; ++i) {
        const T xn = g[i] / nrm;
        diff += (xn - x[i]) * (xn - x[i]);
        x[i] = xn;
      }
      if (std::sqrt(diff) < tol) break;
    }
    // f at the final point
    f = contract_one(s, V, x, y, u, alpha, g);
    for (std::int64_t i = 0; i < d; ++i) xb[i] = x[i];
    F[b] = f;
    iters[b] = it;
  }
  return Status::ok();
}

Status check_shape(const SpmShape& s, const char* op) {
  SL_REQUIRE(s.d >= 1 && s.R >= 1 && s.B >= 0,
             std::string(op) + ": need d >= 1, R >= 1, B >= 0, got d=" + std::to_string(s.d) +
                 " R=" + std::to_string(s.R) + " B=" + std::to_string(s.B));
  return Status::ok();
}

template <typename Fn>
Status dispatch_real(int dtype, const char* op, Fn&& fn) {
  return dispatch_float(dtype, op, [&](auto tag) -> Status {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      return fn(tag);
    } else {
      return invalid_argument(std::string(op) + ": float32 or float64 only");
    }
  });
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

}  // namespace sl
