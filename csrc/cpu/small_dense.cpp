// CPU small dense batched kernels (see sl/small_dense.h for the contract). OpenMP over
// the batch; the inner loops run over contiguous rows (SIMD). The CUDA twin in
// csrc/cuda/small_dense.cu performs the same operations in the same order per matrix.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "sl/dtype.h"
#include "sl/parallel.h"
#include "sl/small_dense.h"

namespace sl {
namespace {

using i64 = std::int64_t;

// dot products accumulate in double for both dtypes (float32 columns summed in double:
// the stopping test of the one-sided Jacobi method then sees the exact inner products)
template <typename T>
inline double dot(const T* __restrict a, const T* __restrict b, i64 len) {
  double s = 0.0;
#pragma omp simd reduction(+ : s)
  for (i64 i = 0; i < len; ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return s;
}

// dot product accumulated in T (Cholesky and the triangular inverse, as LAPACK does)
template <typename T>
inline T dot_t(const T* __restrict a, const T* __restrict b, i64 len) {
  T s = T(0);
#pragma omp simd reduction(+ : s)
  for (i64 i = 0; i < len; ++i) s += a[i] * b[i];
  return s;
}

// parallelise over the batch only when there is enough work to pay for a team
inline bool worth_threads(i64 batch, i64 n, i64 m) { return batch > 1 && batch * n * n * m >= (i64{1} << 18); }

template <typename T>
inline void rotate(T* __restrict x, T* __restrict y, i64 len, T c, T s) {
#pragma omp simd
  for (i64 i = 0; i < len; ++i) {
    const T a = x[i], b = y[i];
    x[i] = c * a - s * b;
    y[i] = s * a + c * b;
  }
}

// tangent of the Jacobi angle that zeroes the (p, q) entry of [[app, apq], [apq, aqq]]
template <typename T>
inline T jacobi_tangent(T app, T aqq, T apq) {
  const T zeta = (aqq - app) / (T(2) * apq);
  const T sgn = zeta >= T(0) ? T(1) : T(-1);
  return sgn / (std::fabs(zeta) + std::hypot(T(1), zeta));
}

template <typename T>
Status cholesky_run(const T* a_all, T* l_all, std::int32_t* info, i64 batch, i64 n) {
#pragma omp parallel for schedule(dynamic, 1) if (worth_threads(batch, n, n))
  for (i64 b = 0; b < batch; ++b) {
    const T* a = a_all + b * n * n;
    T* l = l_all + b * n * n;
    std::int32_t fail = 0;
    for (i64 i = 0; i < n && !fail; ++i) {
      T* li = l + i * n;
      for (i64 j = 0; j < i; ++j) {
        const T s = a[i * n + j] - dot_t(li, l + j * n, j);
        li[j] = s / l[j * n + j];
      }
      const T d = a[i * n + i] - dot_t(li, li, i);
      if (!(d > T(0)) || !std::isfinite(d)) {
        fail = static_cast<std::int32_t>(i + 1);
        break;
      }
      li[i] = std::sqrt(d);
      for (i64 j = i + 1; j < n; ++j) li[j] = T(0);
    }
    if (fail) {
      for (i64 i = fail - 1; i < n; ++i)
        for (i64 j = 0; j < n; ++j) l[i * n + j] = T(0);
    }
    info[b] = fail;
  }
  return Status::ok();
}

template <typename T>
Status tril_inverse_run(const T* l_all, T* x_all, std::int32_t* info, i64 batch, i64 n) {
#pragma omp parallel for schedule(dynamic, 1) if (worth_threads(batch, n, n))
  for (i64 b = 0; b < batch; ++b) {
    const T* l = l_all + b * n * n;
    T* x = x_all + b * n * n;
    std::int32_t fail = 0;
    for (i64 i = 0; i < n; ++i) {
      const T d = l[i * n + i];
      if (d == T(0) || !std::isfinite(d)) {
        fail = static_cast<std::int32_t>(i + 1);
        break;
      }
    }
    for (i64 i = 0; i < n * n; ++i) x[i] = T(0);
    info[b] = fail;
    if (fail) continue;
    // row i of X: acc = L[i, 0:i] X[0:i, :] (ascending l, as the CUDA kernel sums),
    // X[i, j] = -acc[j] / L[i, i] for j < i, X[i, i] = 1 / L[i, i]
    for (i64 i = 0; i < n; ++i) {
      T* xi = x + i * n;
      const T* li = l + i * n;
      for (i64 t = 0; t < i; ++t) {
        const T c = li[t];
        const T* xt = x + t * n;
#pragma omp simd
        for (i64 j = 0; j <= t; ++j) xi[j] += c * xt[j];
      }
      const T d = li[i];
      for (i64 j = 0; j < i; ++j) xi[j] = -xi[j] / d;
      xi[i] = T(1) / d;
    }
  }
  return Status::ok();
}

// max |x| and the Frobenius norm without overflow
template <typename T>
inline T fro_norm(const T* x, i64 len) {
  T amax = 0;
  for (i64 i = 0; i < len; ++i) amax = std::fmax(amax, std::fabs(x[i]));
  if (amax == T(0) || !std::isfinite(amax)) return amax;
  double s = 0.0;
  for (i64 i = 0; i < len; ++i) {
    const double v = static_cast<double>(x[i]) / static_cast<double>(amax);
    s += v * v;
  }
  return static_cast<T>(static_cast<double>(amax) * std::sqrt(s));
}

template <typename T>
Status eigh_run(T* a_all, T* w_all, T* vt_all, std::int32_t* info, i64 batch, i64 n, int max_sweeps) {
  const i64 ne = n + (n & 1);
  const i64 half = ne / 2;
  const T eps = std::numeric_limits<T>::epsilon();
#pragma omp parallel if (worth_threads(batch, n, 8 * n))
  {
    T cs[kSmallDenseMaxN / 2], sn[kSmallDenseMaxN / 2];
    i64 pp[kSmallDenseMaxN / 2], qq[kSmallDenseMaxN / 2];
#pragma omp for schedule(dynamic, 1)
    for (i64 b = 0; b < batch; ++b) {
      T* a = a_all + b * n * n;
      T* vt = vt_all + b * n * n;
      for (i64 i = 0; i < n * n; ++i) vt[i] = T(0);
      for (i64 i = 0; i < n; ++i) vt[i * n + i] = T(1);
      const T tau = eps * fro_norm(a, n * n) / static_cast<T>(n > 0 ? n : 1);
      std::int32_t not_conv = 1;
      for (int sweep = 0; sweep < max_sweeps && n > 1; ++sweep) {
        i64 rotations = 0;
        for (i64 step = 0; step < ne - 1; ++step) {
          i64 act = 0;
          for (i64 i = 0; i < half; ++i) {
            i64 p, q;
            jacobi_pair(ne, step, i, &p, &q);
            if (q >= n) continue;
            const T apq = a[p * n + q];
            if (!(std::fabs(apq) > tau)) continue;
            const T t = jacobi_tangent(a[p * n + p], a[q * n + q], apq);
            const T c = T(1) / std::sqrt(T(1) + t * t);
            pp[act] = p;
            qq[act] = q;
            cs[act] = c;
            sn[act] = t * c;
            ++act;
          }
          if (act == 0) continue;
          rotations += act;
          // remember the 2x2 blocks, then A <- A J (columns), A <- J^T A (rows), V^T <- J^T V^T
          for (i64 r = 0; r < n; ++r) {
            T* ar = a + r * n;
            for (i64 k = 0; k < act; ++k) {
              const T x = ar[pp[k]], y = ar[qq[k]];
              ar[pp[k]] = cs[k] * x - sn[k] * y;
              ar[qq[k]] = sn[k] * x + cs[k] * y;
            }
          }
          for (i64 k = 0; k < act; ++k) {
            rotate(a + pp[k] * n, a + qq[k] * n, n, cs[k], sn[k]);
            rotate(vt + pp[k] * n, vt + qq[k] * n, n, cs[k], sn[k]);
          }
          // the rotated (p, q) entries are zero up to rounding: make them exactly zero
          for (i64 k = 0; k < act; ++k) {
            a[pp[k] * n + qq[k]] = T(0);
            a[qq[k] * n + pp[k]] = T(0);
          }
        }
        if (rotations == 0) {
          not_conv = 0;
          break;
        }
      }
      if (n <= 1) not_conv = 0;
      info[b] = not_conv;
      for (i64 i = 0; i < n; ++i) w_all[b * n + i] = a[i * n + i];
    }
  }
  return Status::ok();
}

template <typename T>
Status svd_run(T* at_all, T* vt_all, std::int32_t* info, i64 batch, i64 m, i64 n, int max_sweeps) {
  const i64 ne = n + (n & 1);
  const i64 half = ne / 2;
  const double tol = static_cast<double>(std::numeric_limits<T>::epsilon()) * std::sqrt(static_cast<double>(m));
#pragma omp parallel for schedule(dynamic, 1) if (worth_threads(batch, n, 8 * m))
  for (i64 b = 0; b < batch; ++b) {
    T* at = at_all + b * n * m;
    T* vt = vt_all + b * n * n;
    for (i64 i = 0; i < n * n; ++i) vt[i] = T(0);
    for (i64 i = 0; i < n; ++i) vt[i * n + i] = T(1);
    std::int32_t not_conv = 1;
    for (int sweep = 0; sweep < max_sweeps && n > 1; ++sweep) {
      i64 rotations = 0;
      for (i64 step = 0; step < ne - 1; ++step) {
        for (i64 i = 0; i < half; ++i) {
          i64 p, q;
          jacobi_pair(ne, step, i, &p, &q);
          if (q >= n) continue;
          T* ap = at + p * m;
          T* aq = at + q * m;
          const double alpha = dot(ap, ap, m), beta = dot(aq, aq, m), gamma = dot(ap, aq, m);
          if (!(std::fabs(gamma) > tol * std::sqrt(alpha) * std::sqrt(beta))) continue;
          const double t = jacobi_tangent(alpha, beta, gamma);
          const double c = 1.0 / std::sqrt(1.0 + t * t);
          rotate(ap, aq, m, static_cast<T>(c), static_cast<T>(c * t));
          rotate(vt + p * n, vt + q * n, n, static_cast<T>(c), static_cast<T>(c * t));
          ++rotations;
        }
      }
      if (rotations == 0) {
        not_conv = 0;
        break;
      }
    }
    if (n <= 1) not_conv = 0;
    info[b] = not_conv;
  }
  return Status::ok();
}

// f32/f64 only: the 16-bit formats are converted by the Python layer
template <typename Fn>
Status dispatch_real(int dtype, const char* op, Fn&& fn) {
  return dispatch_float(dtype, op, [&](auto tag) -> Status {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      return fn(T{});
    } else {
      return invalid_argument(std::string(op) + ": float32 or float64 only, got " +
                              dtype_name(static_cast<DType>(dtype)));
    }
  });
}

Status check_dims(const char* op, i64 batch, i64 n) {
  SL_REQUIRE(batch >= 0 && n >= 0, std::string(op) + ": negative size");
  SL_REQUIRE(n <= kSmallDenseMaxN, std::string(op) + ": n must be <= " + std::to_string(kSmallDenseMaxN) +
                                       ", got " + std::to_string(n));
  return Status::ok();
}

}  // namespace

Status cholesky_small_cpu(int dtype, const void* a, void* l, std::int32_t* info, i64 batch, i64 n) {
  SL_RETURN_IF_ERROR(check_dims("cholesky_small", batch, n));
  if (batch == 0 || n == 0) return Status::ok();
  SL_REQUIRE(a && l && info, "cholesky_small: null pointer");
  return dispatch_real(dtype, "cholesky_small", [&](auto tag) {
    using T = decltype(tag);
    return cholesky_run<T>(static_cast<const T*>(a), static_cast<T*>(l), info, batch, n);
  });
}

Status tril_inverse_small_cpu(int dtype, const void* l, void* x, std::int32_t* info, i64 batch, i64 n) {
  SL_RETURN_IF_ERROR(check_dims("tril_inverse_small", batch, n));
  if (batch == 0 || n == 0) return Status::ok();
  SL_REQUIRE(l && x && info, "tril_inverse_small: null pointer");
  SL_REQUIRE(l != x, "tril_inverse_small: x must not alias l");
  return dispatch_real(dtype, "tril_inverse_small", [&](auto tag) {
    using T = decltype(tag);
    return tril_inverse_run<T>(static_cast<const T*>(l), static_cast<T*>(x), info, batch, n);
  });
}

Status eigh_jacobi_cpu(int dtype, void* a, void* w, void* vt, std::int32_t* info, i64 batch, i64 n,
                       int max_sweeps) {
  SL_RETURN_IF_ERROR(check_dims("eigh_jacobi", batch, n));
  SL_REQUIRE(max_sweeps >= 1, "eigh_jacobi: max_sweeps must be >= 1, got " + std::to_string(max_sweeps));
  if (batch == 0 || n == 0) return Status::ok();
  SL_REQUIRE(a && w && vt && info, "eigh_jacobi: null pointer");
  return dispatch_real(dtype, "eigh_jacobi", [&](auto tag) {
    using T = decltype(tag);
    return eigh_run<T>(static_cast<T*>(a), static_cast<T*>(w), static_cast<T*>(vt), info, batch, n, max_sweeps);
  });
}

Status svd_jacobi_cpu(int dtype, void* at, void* vt, std::int32_t* info, i64 batch, i64 m, i64 n,
                      int max_sweeps) {
  SL_RETURN_IF_ERROR(check_dims("svd_jacobi", batch, n));
  SL_REQUIRE(m >= n, "svd_jacobi: needs m >= n, got m=" + std::to_string(m) + ", n=" + std::to_string(n));
  SL_REQUIRE(max_sweeps >= 1, "svd_jacobi: max_sweeps must be >= 1, got " + std::to_string(max_sweeps));
  if (batch == 0 || n == 0) return Status::ok();
  SL_REQUIRE(at && vt && info, "svd_jacobi: null pointer");
  return dispatch_real(dtype, "svd_jacobi", [&](auto tag) {
    using T = decltype(tag);
    return svd_run<T>(static_cast<T*>(at), static_cast<T*>(vt), info, batch, m, n, max_sweeps);
  });
}

}  // namespace sl
