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

// ---- the extraction loop (spm_extract) ------------------------------------------------
// The working copy of the basis is kept transposed, Vt (R, D) with row r = basis vector r
// in the packed layout: both passes of a contraction and the deflation then run over
// contiguous rows of length D (one SIMD loop each) however few columns k remain.

template <typename T>
struct Ext {
  std::int64_t d, D, k;
  const T* Vt;   // (>= k, D), row stride D
  T* y;          // D
  T* u;          // D
  T* alpha;      // R
  T* g;          // d
  T* W;          // R x d: W[r * d + i] = (M_r x)_i
  T* H;          // d x d
  T* a;          // d
  T* xp;         // d
};

// out[r] = Vt[r, :] . y for r < k; four rows at a time (independent accumulators)
template <typename T>
void rows_dot(const T* __restrict Vt, std::int64_t k, std::int64_t D, const T* __restrict y, T* __restrict out) {
  std::int64_t r = 0;
  for (; r + 4 <= k; r += 4) {
    const T* __restrict v0 = Vt + r * D;
    const T* __restrict v1 = v0 + D;
    const T* __restrict v2 = v1 + D;
    const T* __restrict v3 = v2 + D;
    T a0 = T(0), a1 = T(0), a2 = T(0), a3 = T(0);
#pragma omp simd reduction(+ : a0, a1, a2, a3)
    for (std::int64_t q = 0; q < D; ++q) {
      const T yq = y[q];
      a0 += v0[q] * yq;
      a1 += v1[q] * yq;
      a2 += v2[q] * yq;
      a3 += v3[q] * yq;
    }
    out[r] = a0;
    out[r + 1] = a1;
    out[r + 2] = a2;
    out[r + 3] = a3;
  }
  for (; r < k; ++r) {
    const T* __restrict v0 = Vt + r * D;
    T a0 = T(0);
#pragma omp simd reduction(+ : a0)
    for (std::int64_t q = 0; q < D; ++q) a0 += v0[q] * y[q];
    out[r] = a0;
  }
}

// u = sum_{r < k} c[r] Vt[r, :]; four rows at a time
template <typename T>
void rows_combine(const T* __restrict Vt, std::int64_t k, std::int64_t D, const T* __restrict c, T* __restrict u) {
  for (std::int64_t q = 0; q < D; ++q) u[q] = T(0);
  std::int64_t r = 0;
  for (; r + 4 <= k; r += 4) {
    const T* __restrict v0 = Vt + r * D;
    const T* __restrict v1 = v0 + D;
    const T* __restrict v2 = v1 + D;
    const T* __restrict v3 = v2 + D;
    const T c0 = c[r], c1 = c[r + 1], c2 = c[r + 2], c3 = c[r + 3];
#pragma omp simd
    for (std::int64_t q = 0; q < D; ++q) u[q] += c0 * v0[q] + c1 * v1[q] + c2 * v2[q] + c3 * v3[q];
  }
  for (; r < k; ++r) {
    const T* __restrict v0 = Vt + r * D;
    const T c0 = c[r];
#pragma omp simd
    for (std::int64_t q = 0; q < D; ++q) u[q] += c0 * v0[q];
  }
}

// alpha = Vt_k (x (x) x), g = sum_r alpha_r M_r x; returns f = g . x (= |alpha|^2)
template <typename T>
T ext_contract(const Ext<T>& e, const T* __restrict x) {
  const std::int64_t d = e.d, D = e.D, k = e.k;
  T* __restrict y = e.y;
  T* __restrict u = e.u;
  pack_outer(d, x, y);
  rows_dot(e.Vt, k, D, y, e.alpha);
  rows_combine(e.Vt, k, D, e.alpha, u);
  T* __restrict g = e.g;
  return packed_symv_dot(d, u, x, g);
}

// The Riemannian Newton system at x (unit) for max F on the sphere: with
// W[r, :] = M_r x, alpha = W x, g = W^T alpha, f = |alpha|^2, U = sum_r alpha_r M_r and
// A = f I - (2 W^T W + U): B = P A P + x x^T (P = I - x x^T), in H (d x d, lower part
// factored in place: L L^T = B). Returns false when B is not positive definite (x is not
// near a local maximum) or not finite; f and g are set either way.
template <typename T>
bool ext_newton_system(const Ext<T>& e, const T* __restrict x, T& f_out) {
  const std::int64_t d = e.d, D = e.D, k = e.k;
  T* __restrict W = e.W;  // (k, d): row r = M_r x
  T* __restrict alpha = e.alpha;
  T f = T(0);
  for (std::int64_t r = 0; r < k; ++r) {
    const T* __restrict row = e.Vt + r * D;
    T* __restrict w = W + r * d;
    for (std::int64_t i = 0; i < d; ++i) w[i] = T(0);
    std::int64_t p = 0;
    for (std::int64_t i = 0; i < d; ++i) {
      const T xi = x[i];
      const T* __restrict seg = row + p + 1;  // entries (i, i+1 .. d-1)
      T wi = row[p] * xi;
#pragma omp simd reduction(+ : wi)
      for (std::int64_t j = i + 1; j < d; ++j) {
        wi += seg[j - i - 1] * x[j];
        w[j] += seg[j - i - 1] * xi;
      }
      w[i] += wi;
      p += d - i;
    }
    T ar = T(0);
#pragma omp simd reduction(+ : ar)
    for (std::int64_t i = 0; i < d; ++i) ar += w[i] * x[i];
    alpha[r] = ar;
    f += ar * ar;
  }
  f_out = f;
  T* __restrict g = e.g;
  T* __restrict H = e.H;
  for (std::int64_t i = 0; i < d * d; ++i) H[i] = T(0);
  rows_combine(W, k, d, alpha, g);
  std::int64_t r = 0;
  for (; r + 4 <= k; r += 4) {  // lower triangle of W^T W, four rows of W at a time
    const T* __restrict w0 = W + r * d;
    const T* __restrict w1 = w0 + d;
    const T* __restrict w2 = w1 + d;
    const T* __restrict w3 = w2 + d;
    for (std::int64_t i = 0; i < d; ++i) {
      const T c0 = w0[i], c1 = w1[i], c2 = w2[i], c3 = w3[i];
      T* __restrict hi = H + i * d;
#pragma omp simd
      for (std::int64_t j = 0; j <= i; ++j) hi[j] += c0 * w0[j] + c1 * w1[j] + c2 * w2[j] + c3 * w3[j];
    }
  }
  for (; r < k; ++r) {
    const T* __restrict w0 = W + r * d;
    for (std::int64_t i = 0; i < d; ++i) {
      const T c0 = w0[i];
      T* __restrict hi = H + i * d;
#pragma omp simd
      for (std::int64_t j = 0; j <= i; ++j) hi[j] += c0 * w0[j];
    }
  }
  T* __restrict u = e.u;
  rows_combine(e.Vt, k, D, alpha, u);
  std::int64_t p = 0;
  for (std::int64_t i = 0; i < d; ++i) {
    for (std::int64_t j = i; j < d; ++j, ++p) {  // H[j, i] holds (W^T W)[i, j], j >= i
      const T v = (i == j ? f : T(0)) - (T(2) * H[j * d + i] + u[p]);
      H[i * d + j] = v;
      H[j * d + i] = v;
    }
  }
  // B = A - x a^T - a x^T + (x^T a + 1) x x^T with a = A x
  T* __restrict a = e.a;
  T s = T(0);
  for (std::int64_t i = 0; i < d; ++i) {
    const T* __restrict hi = H + i * d;
    T acc = T(0);
    for (std::int64_t j = 0; j < d; ++j) acc += hi[j] * x[j];
    a[i] = acc;
    s += acc * x[i];
  }
  s += T(1);
  for (std::int64_t i = 0; i < d; ++i)
    for (std::int64_t j = 0; j <= i; ++j) H[i * d + j] += s * x[i] * x[j] - x[i] * a[j] - a[i] * x[j];
  // Cholesky (lower, row-major, in place)
  for (std::int64_t j = 0; j < d; ++j) {
    T* __restrict hj = H + j * d;
    T piv = hj[j];
    for (std::int64_t c = 0; c < j; ++c) piv -= hj[c] * hj[c];
    if (!(piv > T(0)) || !std::isfinite(piv)) return false;
    const T ljj = std::sqrt(piv);
    hj[j] = ljj;
    const T inv = T(1) / ljj;
    for (std::int64_t i = j + 1; i < d; ++i) {
      T* __restrict hi = H + i * d;
      T acc = hi[j];
      for (std::int64_t c = 0; c < j; ++c) acc -= hi[c] * hj[c];
      hi[j] = acc * inv;
    }
  }
  return true;
}

// Newton step: xn = normalize(x + B^{-1} (g - f x)) with B factored in H; returns |xn - x|
template <typename T>
T ext_newton_step(const Ext<T>& e, const T* __restrict x, T f, T* __restrict xn) {
  const std::int64_t d = e.d;
  const T* __restrict L = e.H;
  T* __restrict z = e.a;
  for (std::int64_t i = 0; i < d; ++i) {  // L z = g - f x
    T acc = e.g[i] - f * x[i];
    for (std::int64_t c = 0; c < i; ++c) acc -= L[i * d + c] * z[c];
    z[i] = acc / L[i * d + i];
  }
  for (std::int64_t i = d - 1; i >= 0; --i) {  // L^T xi = z
    T acc = z[i];
    for (std::int64_t c = i + 1; c < d; ++c) acc -= L[c * d + i] * z[c];
    z[i] = acc / L[i * d + i];
  }
  T nrm = T(0);
  for (std::int64_t i = 0; i < d; ++i) {
    xn[i] = x[i] + z[i];
    nrm += xn[i] * xn[i];
  }
  nrm = std::sqrt(nrm);
  T diff = T(0);
  for (std::int64_t i = 0; i < d; ++i) {
    xn[i] /= nrm;
    diff += (xn[i] - x[i]) * (xn[i] - x[i]);
  }
  return std::sqrt(diff);
}

// The search for one component from the unit start x (updated in place), see sl/spm.h:
// the shifted power iteration, and Riemannian Newton steps once its step is below the
// switch threshold (safeguarded: a system that is not positive definite, or a step that
// lowers F, is undone and the power iteration goes on with a 10x smaller threshold).
// Returns F at the final x.
template <typename T>
T ext_search(const Ext<T>& e, T* x, std::int64_t maxiter, T tol, T cn) {
  const std::int64_t d = e.d;
  const T fslack = T(kSpmNewtonSlack) * std::numeric_limits<T>::epsilon();
  T sw = T(kSpmNewtonSwitch);
  std::int64_t it = 0;
  bool done = false;
  while (!done && it < maxiter) {
    while (it < maxiter) {  // power iteration
      const T f = ext_contract(e, x);
      const T sh = shift_of(f, cn);
      T nrm = T(0);
      for (std::int64_t i = 0; i < d; ++i) {
        e.g[i] += sh * x[i];
        nrm += e.g[i] * e.g[i];
      }
      ++it;
      nrm = std::sqrt(nrm);
      if (!(nrm > T(0))) {
        done = true;
        break;
      }
      T diff = T(0);
      for (std::int64_t i = 0; i < d; ++i) {
        const T xn = e.g[i] / nrm;
        diff += (xn - x[i]) * (xn - x[i]);
        x[i] = xn;
      }
      diff = std::sqrt(diff);
      if (diff < tol) {
        done = true;
        break;
      }
      if (diff < sw) break;
    }
    if (done || it >= maxiter) break;
    T fprev = T(0);
    for (int s = 0; s < kSpmNewtonSteps && it < maxiter; ++s) {
      T f;
      const bool pd = ext_newton_system(e, x, f);
      if (s > 0 && f < fprev - fslack * (fprev > T(1) ? fprev : T(1))) {  // the last step lowered F: undo it
        for (std::int64_t i = 0; i < d; ++i) x[i] = e.xp[i];
        break;
      }
      if (!pd) break;
      ++it;
      for (std::int64_t i = 0; i < d; ++i) e.xp[i] = x[i];
      fprev = f;
      T* xn = e.y;  // y is free until the next contraction
      const T step = ext_newton_step(e, e.xp, f, xn);
      for (std::int64_t i = 0; i < d; ++i) x[i] = xn[i];
      if (!(step < T(2))) {  // not finite: undo
        for (std::int64_t i = 0; i < d; ++i) x[i] = e.xp[i];
        break;
      }
      if (step < tol) {
        done = true;
        break;
      }
    }
    sw *= T(kSpmNewtonShrink);
  }
  return ext_contract(e, x);
}

template <typename T>
Status extract_run(const SpmExtractArgs& a) {
  const std::int64_t d = a.d, R = a.R, D = d * (d + 1) / 2, nt = a.ntries;
  const std::size_t n = static_cast<std::size_t>(D * R + R * R + (a.odd ? d * R : 0) + 3 * D + 6 * R + 4 * d + 8 +
                                                 d * R + d * d + 2 * d);
  std::vector<char> buf;
  if (!alloc(buf, n * sizeof(T)))
    return invalid_argument("spm_extract: cannot allocate host scratch of " + std::to_string(n) + " values");
  T* Vt = reinterpret_cast<T*>(buf.data());  // (R, D)
  T* D1 = Vt + D * R;
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
  T* Wm = xb + d;
  T* Hm = Wm + d * R;
  T* av = Hm + d * d;
  T* xp = av + d;
  const T* V0 = static_cast<const T*>(a.V);
  for (std::int64_t q = 0; q < D; ++q)
    for (std::int64_t r = 0; r < R; ++r) Vt[r * D + q] = V0[q * R + r];
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
  Ext<T> e{d, D, R, Vt, y, u, alpha, g, Wm, Hm, av, xp};
  for (std::int64_t k = R; k >= 1; --k) {
    const std::int64_t j = R - k;
    e.k = k;
    T best = -std::numeric_limits<T>::infinity();
    for (std::int64_t t = 0; t < nt; ++t) {
      // start: x = (sum_r c_r V_r) g, normalized
      const T* c = Cc + (j * nt + t) * R;
      const T* gg = G + (j * nt + t) * d;
      rows_combine(Vt, k, D, c, u);
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
      const T f = ext_search(e, x, a.maxiter, tol, cn);
      if (f > best || t == 0) {
        best = f;
        for (std::int64_t i = 0; i < d; ++i) xb[i] = x[i];
      }
      if (T(1) - f < frestol) break;
    }
    // projection of the winner
    ext_contract(e, xb);
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
        reflect_rows(Vt, k, D, D, h, tmp);  // V <- V H, i.e. Vt <- H Vt
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
        reflect_rows(D1, k, k, R, h, u);     // u: free scratch, D >= d >= R values for odd orders
        reflect_rows(Vt, k, D, D, h, tmp);  // zv (in tmp) is no longer needed
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
  // the CUDA layout of spm_extract_kernel, the Newton scratch (d R + d^2 + 3 d) included
  return (D * R + R * R + d * R + 3 * D + 6 * R + 4 * d + 8 + (D > R ? D : R) + d * R + d * d + 3 * d) * esize;
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
