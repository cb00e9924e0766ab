// CPU kernels of the Subspace Power Method (see sl/spm.h for the layout and contract).
// One point per OpenMP iteration; each point's loop is two passes over V (D x R):
// alpha = V^T y with y_p = c_p x_i x_j (c = 1 on the diagonal, 2 off it), then u = V alpha,
// and grad_i = sum_j U[i, j] x_j with U the symmetric matrix whose packed entries are u.
#include <cmath>
#include <cstdint>
#include <limits>
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
// V (D, R) with row stride ld >= R (the first R columns are the basis)
template <typename T>
T contract_ld(std::int64_t d, std::int64_t R, std::int64_t ld, const T* __restrict V, const T* __restrict x,
              T* __restrict y, T* __restrict u, T* __restrict alpha, T* __restrict g) {
  const std::int64_t D = d * (d + 1) / 2;
  std::int64_t p = 0;
  for (std::int64_t i = 0; i < d; ++i) {
    const T xi = x[i];
    y[p++] = xi * xi;
    const T two_xi = T(2) * xi;
    for (std::int64_t j = i + 1; j < d; ++j) y[p++] = two_xi * x[j];
  }
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

// h = v sqrt(2) / |v|, v = z + sign(z_last) |z| e_last (k entries)
template <typename T>
void householder(const T* z, std::int64_t k, T* h) {
  T nz = T(0);
  for (std::int64_t i = 0; i < k; ++i) nz += z[i] * z[i];
  nz = std::sqrt(nz);
  for (std::int64_t i = 0; i < k; ++i) h[i] = z[i];
  h[k - 1] += (z[k - 1] >= T(0) ? nz : -nz);
  T nv = T(0);
  for (std::int64_t i = 0; i < k; ++i) nv += h[i] * h[i];
  nv = std::sqrt(nv);
  if (!(nv > T(0))) {  // z = 0: any reflection will do
    for (std::int64_t i = 0; i < k; ++i) h[i] = T(0);
    h[k - 1] = std::sqrt(T(2));
    return;
  }
  const T sc = std::sqrt(T(2)) / nv;
  for (std::int64_t i = 0; i < k; ++i) h[i] *= sc;
}

// A (rows x k, row stride ld) <- A (I - h h^T)
template <typename T>
void reflect_cols(T* A, std::int64_t rows, std::int64_t k, std::int64_t ld, const T* h) {
  for (std::int64_t i = 0; i < rows; ++i) {
    T* a = A + i * ld;
    T sdot = T(0);
    for (std::int64_t c = 0; c < k; ++c) sdot += a[c] * h[c];
    for (std::int64_t c = 0; c < k; ++c) a[c] -= sdot * h[c];
  }
}

// A (k x cols, row stride ld) <- (I - h h^T) A
template <typename T>
void reflect_rows(T* A, std::int64_t k, std::int64_t cols, std::int64_t ld, const T* h, T* tmp) {
  for (std::int64_t c = 0; c < cols; ++c) tmp[c] = T(0);
  for (std::int64_t i = 0; i < k; ++i)
    for (std::int64_t c = 0; c < cols; ++c) tmp[c] += h[i] * A[i * ld + c];
  for (std::int64_t i = 0; i < k; ++i)
    for (std::int64_t c = 0; c < cols; ++c) A[i * ld + c] -= h[i] * tmp[c];
}

template <typename T>
Status extract_run(const SpmExtractArgs& a) {
  const std::int64_t d = a.d, R = a.R, D = d * (d + 1) / 2, nt = a.ntries;
  const std::size_t n = static_cast<std::size_t>(D * R + R * R + (a.odd ? d * R : 0) + 3 * D + 6 * R + 4 * d + 8);
  std::vector<char> buf;
  if (!alloc(buf, n * sizeof(T)))
    return invalid_argument("spm_extract: cannot allocate host scratch of " + std::to_string(n) + " values");
  T* V = reinterpret_cast<T*>(buf.data());
  T* D1 = V + D * R;
  T* U = D1 + R * R;
  T* y = U + (a.odd ? d * R : 0);
  T* u = y + D;
  T* tmp = u + D;  // max(D, R) values
  T* alpha = tmp + (D > R ? D : R) + 1;
  T* z = alpha + R;
  T* z2 = z + R;
  T* h = z2 + R;
  T* g = h + R;
  T* x = g + d;
  T* xb = x + d;
  const T* V0 = static_cast<const T*>(a.V);
  for (std::int64_t i = 0; i < D * R; ++i) V[i] = V0[i];
  const T* D10 = static_cast<const T*>(a.D1);
  for (std::int64_t i = 0; i < R * R; ++i) D1[i] = D10[i];
  if (a.odd) {
    const T* U0 = static_cast<const T*>(a.U);
    for (std::int64_t i = 0; i < d * R; ++i) U[i] = U0[i];
  }
  const T* G = static_cast<const T*>(a.G);
  const T* Cc = static_cast<const T*>(a.C);
  T* W = static_cast<T*>(a.weights);
  T* Fa = static_cast<T*>(a.factors);
  T* Fb = static_cast<T*>(a.fbest);
  const T tol = static_cast<T>(a.tol), cn = static_cast<T>(a.cn), frestol = static_cast<T>(a.frestol);
  for (std::int64_t k = R; k >= 1; --k) {
    const std::int64_t j = R - k;
    T best = -std::numeric_limits<T>::infinity();
    for (std::int64_t t = 0; t < nt; ++t) {
      // start: x = (sum_r c_r V_r) g, normalized
      const T* c = Cc + (j * nt + t) * R;
      const T* gg = G + (j * nt + t) * d;
      for (std::int64_t q = 0; q < D; ++q) {
        T acc = T(0);
        for (std::int64_t r = 0; r < k; ++r) acc += V[q * R + r] * c[r];
        u[q] = acc;
      }
      for (std::int64_t i = 0; i < d; ++i) x[i] = T(0);
      std::int64_t p = 0;
      for (std::int64_t i = 0; i < d; ++i) {
        x[i] += u[p++] * gg[i];
        for (std::int64_t jj = i + 1; jj < d; ++jj, ++p) {
          x[i] += u[p] * gg[jj];
          x[jj] += u[p] * gg[i];
        }
      }
      T nrm = T(0);
      for (std::int64_t i = 0; i < d; ++i) nrm += x[i] * x[i];
      if (!(nrm > T(0))) {
        for (std::int64_t i = 0; i < d; ++i) x[i] = gg[i];
        nrm = T(0);
        for (std::int64_t i = 0; i < d; ++i) nrm += x[i] * x[i];
      }
      nrm = std::sqrt(nrm);
      for (std::int64_t i = 0; i < d; ++i) x[i] = nrm > T(0) ? x[i] / nrm : (i == 0 ? T(1) : T(0));
      const T f = power_one(d, k, R, V, x, a.maxiter, tol, cn, y, u, alpha, g, nullptr);
      if (f > best || t == 0) {
        best = f;
        for (std::int64_t i = 0; i < d; ++i) xb[i] = x[i];
      }
      if (T(1) - f < frestol) break;
    }
    // projection of the winner
    contract_ld(d, k, R, V, xb, y, u, alpha, g);
    T w;
    if (!a.odd) {
      for (std::int64_t r = 0; r < k; ++r) {
        T acc = T(0);
        for (std::int64_t c = 0; c < k; ++c) acc += D1[r * R + c] * alpha[c];
        z[r] = acc;
      }
      T aa = T(0), az = T(0);
      for (std::int64_t r = 0; r < k; ++r) {
        aa += alpha[r] * alpha[r];
        az += alpha[r] * z[r];
      }
      w = aa / az;
      if (k > 1) {
        householder(z, k, h);
        reflect_rows(D1, k, k, R, h, tmp);
        reflect_cols(D1, k, k, R, h);
        reflect_cols(V, D, k, R, h);
      }
    } else {
      T* au = z2;
      for (std::int64_t r = 0; r < k; ++r) {
        T acc = T(0);
        for (std::int64_t i = 0; i < d; ++i) acc += U[i * R + r] * xb[i];
        au[r] = acc;
      }
      T* zu = z;
      T* zv = tmp;
      for (std::int64_t r = 0; r < k; ++r) {
        T acc = T(0), acc2 = T(0);
        for (std::int64_t c = 0; c < k; ++c) {
          acc += D1[r * R + c] * au[c];
          acc2 += D1[c * R + r] * alpha[c];
        }
        zu[r] = acc;
        zv[r] = acc2;
      }
      T na = T(0), nu = T(0), az = T(0);
      for (std::int64_t r = 0; r < k; ++r) {
        na += alpha[r] * alpha[r];
        nu += au[r] * au[r];
        az += alpha[r] * zu[r];
      }
      w = std::sqrt(na) * std::sqrt(nu) / az;
      if (k > 1) {
        householder(zu, k, h);
        T* h2 = au;  // au is no longer needed
        householder(zv, k, h2);
        reflect_rows(D1, k, k, R, h, u);  // u: free scratch, D >= d >= R values for odd orders
        reflect_cols(V, D, k, R, h);
        reflect_cols(D1, k, k, R, h2);
        reflect_cols(U, d, k, R, h2);
      }
    }
    W[k - 1] = w;
    Fb[k - 1] = best;
    for (std::int64_t i = 0; i < d; ++i) Fa[(k - 1) * d + i] = xb[i];
  }
  return Status::ok();
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
  return (D * R + R * R + d * R + 3 * D + 6 * R + 4 * d + 8 + (D > R ? D : R)) * esize;
}

Status spm_extract_cpu(int dtype, const SpmExtractArgs& a) {
  SL_REQUIRE(a.d >= 1 && a.R >= 1 && a.ntries >= 1 && a.maxiter >= 0,
             "spm_extract: need d >= 1, R >= 1, ntries >= 1, maxiter >= 0, got d=" + std::to_string(a.d) +
                 " R=" + std::to_string(a.R) + " ntries=" + std::to_string(a.ntries));
  SL_REQUIRE(a.V && a.D1 && a.G && a.C && a.weights && a.factors && a.fbest && (!a.odd || a.U),
             "spm_extract: null data pointer");
  return dispatch_real(dtype, "spm_extract", [&](auto tag) {
    using T = decltype(tag);
    return extract_run<T>(a);
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
