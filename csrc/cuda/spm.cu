// CUDA kernels of the Subspace Power Method (see sl/spm.h). Same algorithm as
// csrc/cpu/spm.cpp: one thread block per point (restart); the whole power iteration runs
// inside the kernel (one launch per call, not a handful of launches per iteration).
// spm_extract is one block for the whole extraction, its search with Newton steps included.
// Scratch vectors live in the caller's workspace (global memory): B * (2D + R + 2d).
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include "common.cuh"
#include "sl/cuda_check.h"
#include "sl/dtype.h"
#include "sl/spm.h"

namespace sl {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ std::int64_t packed_index(std::int64_t i, std::int64_t j, std::int64_t d) {
  // i <= j
  return i * d - i * (i - 1) / 2 + (j - i);
}

template <typename T>
__device__ T block_sum(T v, T* red) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // red may still be read from a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  T total = T(0);
  if (threadIdx.x == 0) {
    for (int w = 0; w < (blockDim.x + 31) / 32; ++w) total += red[w];
    red[0] = total;
  }
  __syncthreads();
  return red[0];
}

// alpha = V^T (x (x) x), g = sum_r alpha_r V_r x; all threads of the block; returns f = g . x
// V (D, R) with row stride ld >= R
template <typename T>
__device__ T contract_block(std::int64_t d, std::int64_t R, std::int64_t ld, const T* __restrict__ V,
                            const T* __restrict__ x, T* __restrict__ y, T* __restrict__ u, T* __restrict__ alpha,
                            T* __restrict__ g, T* red) {
  const std::int64_t D = d * (d + 1) / 2;
  for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    for (std::int64_t j = i; j < d; ++j) y[packed_index(i, j, d)] = (i == j ? T(1) : T(2)) * x[i] * x[j];
  }
  __syncthreads();
  for (std::int64_t r = threadIdx.x; r < R; r += blockDim.x) {
    T acc = T(0);
    for (std::int64_t q = 0; q < D; ++q) acc += V[q * ld + r] * y[q];
    alpha[r] = acc;
  }
  __syncthreads();
  for (std::int64_t q = threadIdx.x; q < D; q += blockDim.x) {
    T acc = T(0);
    for (std::int64_t r = 0; r < R; ++r) acc += V[q * ld + r] * alpha[r];
    u[q] = acc;
  }
  __syncthreads();
  T part = T(0);
  for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    T gi = T(0);
    for (std::int64_t j = 0; j < d; ++j) gi += u[i <= j ? packed_index(i, j, d) : packed_index(j, i, d)] * x[j];
    g[i] = gi;
    part += gi * x[i];
  }
  return block_sum(part, red);  // synchronizes: g is visible afterwards
}

template <typename T>
__global__ void spm_contract_kernel(SpmShape s, const T* __restrict__ V, const T* __restrict__ X,
                                    T* __restrict__ alpha, T* __restrict__ grad, T* __restrict__ ws) {
  __shared__ T red[kThreads / 32];
  const std::int64_t b = blockIdx.x;
  const std::int64_t D = s.d * (s.d + 1) / 2;
  T* y = ws + b * (2 * D + s.R + 2 * s.d);
  T* u = y + D;
  contract_block<T>(s.d, s.R, s.R, V, X + b * s.d, y, u, alpha + b * s.R, grad + b * s.d, red);
}

// One step of the shifted power iteration (SS-HOPM with the adaptive shift) at the unit x,
// in place; returns false (uniform across the block) when the shifted gradient is zero,
// else sets *diff = |x_new - x|.
template <typename T>
__device__ bool shifted_power_step(std::int64_t d, std::int64_t R, std::int64_t ld, const T* __restrict__ V,
                                   T* __restrict__ x, T cn, T* y, T* u, T* alpha, T* g, T* red, T* diff) {
  const T f = contract_block<T>(d, R, ld, V, x, y, u, alpha, g, red);
  const T c = f > T(2) / T(3) ? sqrt(T(2) * f * (f < T(1) ? T(1) - f : T(0))) : T(1) - f / T(2);
  const T sh = cn * c;
  T part = T(0);
  for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const T v = g[i] + sh * x[i];
    g[i] = v;
    part += v * v;
  }
  const T nrm = sqrt(block_sum(part, red));
  if (!(nrm > T(0))) return false;  // uniform across the block
  part = T(0);
  for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const T xn = g[i] / nrm;
    part += (xn - x[i]) * (xn - x[i]);
    x[i] = xn;
  }
  *diff = sqrt(block_sum(part, red));  // synchronizes: x is visible afterwards
  return true;
}

template <typename T>
__device__ T power_block(std::int64_t d, std::int64_t R, std::int64_t ld, const T* __restrict__ V, T* __restrict__ x,
                         std::int64_t maxiter, T tol, T cn, T* y, T* u, T* alpha, T* g, T* red, std::int64_t* it_out);

template <typename T>
__global__ void spm_power_kernel(SpmShape s, const T* __restrict__ V, T* __restrict__ X, T* __restrict__ F,
                                 std::int64_t* __restrict__ iters, std::int64_t maxiter, T tol, T cn,
                                 T* __restrict__ ws) {
  __shared__ T red[kThreads / 32];
  const std::int64_t b = blockIdx.x;
  const std::int64_t d = s.d, R = s.R, D = d * (d + 1) / 2;
  T* y = ws + b * (2 * D + R + 2 * d);
  T* u = y + D;
  T* alpha = u + D;
  T* g = alpha + R;
  T* x = g + d;
  T* xb = X + b * d;
  for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) x[i] = xb[i];
  __syncthreads();
  std::int64_t it = 0;
  const T f = power_block<T>(d, R, R, V, x, maxiter, tol, cn, y, u, alpha, g, red, &it);
  for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) xb[i] = x[i];
  if (threadIdx.x == 0) {
    F[b] = f;
    iters[b] = it;
  }
}

template <typename T>
__device__ T power_block(std::int64_t d, std::int64_t R, std::int64_t ld, const T* __restrict__ V, T* __restrict__ x,
                         std::int64_t maxiter, T tol, T cn, T* y, T* u, T* alpha, T* g, T* red, std::int64_t* it_out) {
  std::int64_t it = 0;
  while (it < maxiter) {
    T diff;
    const bool moved = shifted_power_step<T>(d, R, ld, V, x, cn, y, u, alpha, g, red, &diff);
    ++it;
    if (!moved || diff < tol) break;  // uniform across the block
  }
  *it_out = it;
  return contract_block<T>(d, R, ld, V, x, y, u, alpha, g, red);
}

// The Riemannian Newton system at the unit x (see sl/spm.h): W[r * d + i] = (M_r x)_i,
// alpha = W x, f = |alpha|^2, g = W^T alpha, then H <- L, the Cholesky factor (lower, in
// place, row-major d x d) of B = P (f I - 2 W^T W - sum_r alpha_r M_r) P + x x^T. Returns
// false (uniform across the block) when B is not positive definite; f and g are set.
template <typename T>
__device__ bool newton_system_block(std::int64_t d, std::int64_t k, std::int64_t ld, const T* __restrict__ V,
                                    const T* __restrict__ x, T* __restrict__ W, T* __restrict__ H, T* __restrict__ u,
                                    T* __restrict__ alpha, T* __restrict__ g, T* __restrict__ a, T* red, T& f_out) {
  const std::int64_t D = d * (d + 1) / 2;
  for (std::int64_t idx = threadIdx.x; idx < k * d; idx += blockDim.x) {
    const std::int64_t r = idx % k, i = idx / k;  // r fastest: coalesced reads of V rows
    T acc = T(0);
    for (std::int64_t j = 0; j < d; ++j) acc += V[(i <= j ? packed_index(i, j, d) : packed_index(j, i, d)) * ld + r] * x[j];
    W[r * d + i] = acc;
  }
  __syncthreads();
  T part = T(0);
  for (std::int64_t r = threadIdx.x; r < k; r += blockDim.x) {
    T acc = T(0);
    for (std::int64_t i = 0; i < d; ++i) acc += W[r * d + i] * x[i];
    alpha[r] = acc;
    part += acc * acc;
  }
  const T f = block_sum(part, red);  // synchronizes: alpha is visible afterwards
  f_out = f;
  for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    T acc = T(0);
    for (std::int64_t r = 0; r < k; ++r) acc += W[r * d + i] * alpha[r];
    g[i] = acc;
  }
  for (std::int64_t q = threadIdx.x; q < D; q += blockDim.x) {
    T acc = T(0);
    for (std::int64_t r = 0; r < k; ++r) acc += V[q * ld + r] * alpha[r];
    u[q] = acc;
  }
  __syncthreads();
  for (std::int64_t idx = threadIdx.x; idx < d * d; idx += blockDim.x) {
    const std::int64_t i = idx / d, j = idx % d;
    T acc = T(0);
    for (std::int64_t r = 0; r < k; ++r) acc += W[r * d + i] * W[r * d + j];
    H[idx] = (i == j ? f : T(0)) - (T(2) * acc + u[i <= j ? packed_index(i, j, d) : packed_index(j, i, d)]);
  }
  __syncthreads();
  part = T(0);
  for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    T acc = T(0);
    for (std::int64_t j = 0; j < d; ++j) acc += H[i * d + j] * x[j];
    a[i] = acc;
    part += acc * x[i];
  }
  const T s = block_sum(part, red) + T(1);  // synchronizes: a is visible afterwards
  for (std::int64_t idx = threadIdx.x; idx < d * d; idx += blockDim.x) {
    const std::int64_t i = idx / d, j = idx % d;
    H[idx] += s * x[i] * x[j] - x[i] * a[j] - a[i] * x[j];
  }
  __syncthreads();
  for (std::int64_t j = 0; j < d; ++j) {  // right-looking Cholesky
    const T piv = H[j * d + j];
    if (!(piv > T(0)) || !isfinite(piv)) return false;  // the same value in every thread
    const T ljj = sqrt(piv);
    __syncthreads();  // every thread has read the pivot
    for (std::int64_t i = j + 1 + threadIdx.x; i < d; i += blockDim.x) H[i * d + j] /= ljj;
    if (threadIdx.x == 0) H[j * d + j] = ljj;
    __syncthreads();
    const std::int64_t m = d - j - 1;
    for (std::int64_t idx = threadIdx.x; idx < m * m; idx += blockDim.x) {
      const std::int64_t i = j + 1 + idx / m, l = j + 1 + idx % m;
      if (l <= i) H[i * d + l] -= H[i * d + j] * H[l * d + j];
    }
    __syncthreads();
  }
  return true;
}

// xn = normalize(x + B^{-1} (g - f x)) with L (in H) from newton_system_block; z: scratch (d).
// Returns |xn - x| (uniform); xn is visible to the block afterwards.
template <typename T>
__device__ T newton_step_block(std::int64_t d, const T* __restrict__ L, const T* __restrict__ x, T f,
                               const T* __restrict__ g, T* __restrict__ z, T* __restrict__ xn, T* red) {
  if (threadIdx.x == 0) {  // two triangular solves: d^2 work, one thread
    for (std::int64_t i = 0; i < d; ++i) {
      T acc = g[i] - f * x[i];
      for (std::int64_t c = 0; c < i; ++c) acc -= L[i * d + c] * z[c];
      z[i] = acc / L[i * d + i];
    }
    for (std::int64_t i = d - 1; i >= 0; --i) {
      T acc = z[i];
      for (std::int64_t c = i + 1; c < d; ++c) acc -= L[c * d + i] * z[c];
      z[i] = acc / L[i * d + i];
    }
  }
  __syncthreads();
  T part = T(0);
  for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const T v = x[i] + z[i];
    xn[i] = v;
    part += v * v;
  }
  const T nrm = sqrt(block_sum(part, red));
  part = T(0);
  for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const T v = xn[i] / nrm;
    xn[i] = v;
    part += (v - x[i]) * (v - x[i]);
  }
  return sqrt(block_sum(part, red));
}

template <typename T>
__device__ void copy_block(std::int64_t n, const T* __restrict__ src, T* __restrict__ dst) {
  for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
  __syncthreads();
}

// Scratch of search_block beside the power iteration's: W (R d), H (d d), a, xp, xn (d each)
template <typename T>
struct NewtonScratch {
  T* W;
  T* H;
  T* a;
  T* xp;
  T* xn;
};

// The search of one component from the unit x (updated in place): the power iteration and
// safeguarded Newton steps, as ext_search in csrc/cpu/spm.cpp (contract: sl/spm.h).
// Returns F at the final x.
template <typename T>
__device__ T search_block(std::int64_t d, std::int64_t k, std::int64_t ld, const T* __restrict__ V, T* __restrict__ x,
                          std::int64_t maxiter, T tol, T cn, T* y, T* u, T* alpha, T* g, const NewtonScratch<T>& ns,
                          T* red) {
  const T fslack = T(kSpmNewtonSlack) * std::numeric_limits<T>::epsilon();
  T sw = T(kSpmNewtonSwitch);
  std::int64_t it = 0;
  bool done = false;
  while (!done && it < maxiter) {
    while (it < maxiter) {  // power iteration
      T diff;
      const bool moved = shifted_power_step<T>(d, k, ld, V, x, cn, y, u, alpha, g, red, &diff);
      ++it;
      if (!moved || diff < tol) {  // uniform across the block
        done = true;
        break;
      }
      if (diff < sw) break;
    }
    if (done || it >= maxiter) break;
    T fprev = T(0);
    for (int s = 0; s < kSpmNewtonSteps && it < maxiter; ++s) {
      T f;
      const bool pd = newton_system_block<T>(d, k, ld, V, x, ns.W, ns.H, u, alpha, g, ns.a, red, f);
      if (s > 0 && f < fprev - fslack * (fprev > T(1) ? fprev : T(1))) {  // the last step lowered F: undo it
        copy_block(d, ns.xp, x);
        break;
      }
      if (!pd) break;
      ++it;
      copy_block(d, x, ns.xp);
      fprev = f;
      const T step = newton_step_block<T>(d, ns.H, ns.xp, f, g, ns.a, ns.xn, red);
      copy_block(d, ns.xn, x);
      if (!(step < T(2))) {  // not finite: undo
        copy_block(d, ns.xp, x);
        break;
      }
      if (spm_newton_done(step, tol)) {
        done = true;
        break;
      }
    }
    sw *= T(kSpmNewtonShrink);
  }
  return contract_block<T>(d, k, ld, V, x, y, u, alpha, g, red);
}

// h = v sqrt(2) / |v|, v = z + sign(z_last) |z| e_last: one thread (k is small)
template <typename T>
__device__ void householder_serial(const T* z, std::int64_t k, T* h) {
  T nz = T(0);
  for (std::int64_t i = 0; i < k; ++i) nz += z[i] * z[i];
  nz = sqrt(nz);
  for (std::int64_t i = 0; i < k; ++i) h[i] = z[i];
  h[k - 1] += (z[k - 1] >= T(0) ? nz : -nz);
  T nv = T(0);
  for (std::int64_t i = 0; i < k; ++i) nv += h[i] * h[i];
  nv = sqrt(nv);
  if (!(nv > T(0))) {
    for (std::int64_t i = 0; i < k; ++i) h[i] = T(0);
    h[k - 1] = sqrt(T(2));
    return;
  }
  const T sc = sqrt(T(2)) / nv;
  for (std::int64_t i = 0; i < k; ++i) h[i] *= sc;
}

// A (rows x k, stride ld) <- A (I - h h^T): one thread per row; caller synchronizes
template <typename T>
__device__ void reflect_cols_block(T* A, std::int64_t rows, std::int64_t k, std::int64_t ld, const T* h) {
  for (std::int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    T* a = A + i * ld;
    T sdot = T(0);
    for (std::int64_t c = 0; c < k; ++c) sdot += a[c] * h[c];
    for (std::int64_t c = 0; c < k; ++c) a[c] -= sdot * h[c];
  }
}

// A (k x cols, stride ld) <- (I - h h^T) A: one thread per column; caller synchronizes
template <typename T>
__device__ void reflect_rows_block(T* A, std::int64_t k, std::int64_t cols, std::int64_t ld, const T* h) {
  for (std::int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    T sdot = T(0);
    for (std::int64_t i = 0; i < k; ++i) sdot += h[i] * A[i * ld + c];
    for (std::int64_t i = 0; i < k; ++i) A[i * ld + c] -= h[i] * sdot;
  }
}

// the whole extraction (see sl/spm.h), one block; ws laid out as below (size: spm_extract_workspace_bytes)
template <typename T>
__global__ void spm_extract_kernel(SpmExtractArgs a, T* __restrict__ ws) {
  __shared__ T red[kThreads / 32];
  const std::int64_t d = a.d, R = a.R, D = d * (d + 1) / 2, nt = a.ntries;
  T* V = ws;
  T* D1 = V + D * R;
  T* U = D1 + R * R;
  T* y = U + (a.odd ? d * R : 0);
  T* u = y + D;
  T* tmp = u + D;
  T* alpha = tmp + (D > R ? D : R) + 1;
  T* z = alpha + R;
  T* z2 = z + R;
  T* h = z2 + R;
  T* g = h + R;
  T* x = g + d;
  T* xb = x + d;
  T* Wm = xb + d;
  const NewtonScratch<T> ns{Wm, Wm + d * R, Wm + d * R + d * d, Wm + d * R + d * d + d, Wm + d * R + d * d + 2 * d};
  const T* V0 = static_cast<const T*>(a.V);
  const T* D10 = static_cast<const T*>(a.D1);
  const T* U0 = static_cast<const T*>(a.U);
  for (std::int64_t i = threadIdx.x; i < D * R; i += blockDim.x) V[i] = V0[i];
  for (std::int64_t i = threadIdx.x; i < R * R; i += blockDim.x) D1[i] = D10[i];
  if (a.odd)
    for (std::int64_t i = threadIdx.x; i < d * R; i += blockDim.x) U[i] = U0[i];
  __syncthreads();
  const T* G = static_cast<const T*>(a.G);
  const T* Cc = static_cast<const T*>(a.C);
  T* W = static_cast<T*>(a.weights);
  T* Fa = static_cast<T*>(a.factors);
  T* Fb = static_cast<T*>(a.fbest);
  const T tol = static_cast<T>(a.tol), cn = static_cast<T>(a.cn), frestol = static_cast<T>(a.frestol);
  for (std::int64_t k = R; k >= 1; --k) {
    const std::int64_t j = R - k;
    T best = T(0);
    for (std::int64_t t = 0; t < nt; ++t) {
      const T* c = Cc + (j * nt + t) * R;
      const T* gg = G + (j * nt + t) * d;
      for (std::int64_t q = threadIdx.x; q < D; q += blockDim.x) {
        T acc = T(0);
        for (std::int64_t r = 0; r < k; ++r) acc += V[q * R + r] * c[r];
        u[q] = acc;
      }
      __syncthreads();
      T part = T(0);
      for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        T xi = T(0);
        for (std::int64_t jj = 0; jj < d; ++jj)
          xi += u[i <= jj ? packed_index(i, jj, d) : packed_index(jj, i, d)] * gg[jj];
        x[i] = xi;
        part += xi * xi;
      }
      T nrm = block_sum(part, red);
      if (!(nrm > T(0))) {  // uniform
        part = T(0);
        for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) {
          x[i] = gg[i];
          part += gg[i] * gg[i];
        }
        nrm = block_sum(part, red);
      }
      nrm = sqrt(nrm);
      for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x)
        x[i] = nrm > T(0) ? x[i] / nrm : (i == 0 ? T(1) : T(0));
      __syncthreads();
      const T f = search_block<T>(d, k, R, V, x, a.maxiter, tol, cn, y, u, alpha, g, ns, red);
      if (f > best || t == 0) {  // uniform
        best = f;
        for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) xb[i] = x[i];
      }
      __syncthreads();
      if (T(1) - f < frestol) break;  // uniform
    }
    contract_block<T>(d, k, R, V, xb, y, u, alpha, g, red);  // alpha of the winner
    T w;
    if (!a.odd) {
      T paa = T(0), paz = T(0);
      for (std::int64_t r = threadIdx.x; r < k; r += blockDim.x) {
        T acc = T(0);
        for (std::int64_t cc = 0; cc < k; ++cc) acc += D1[r * R + cc] * alpha[cc];
        z[r] = acc;
        paa += alpha[r] * alpha[r];
        paz += alpha[r] * acc;
      }
      const T aa = block_sum(paa, red);
      const T az = block_sum(paz, red);
      w = aa / az;
      if (k > 1) {
        if (threadIdx.x == 0) householder_serial(z, k, h);
        __syncthreads();
        reflect_rows_block(D1, k, k, R, h);
        __syncthreads();
        reflect_cols_block(D1, k, k, R, h);
        reflect_cols_block(V, D, k, R, h);
        __syncthreads();
      }
    } else {
      T* au = z2;
      for (std::int64_t r = threadIdx.x; r < k; r += blockDim.x) {
        T acc = T(0);
        for (std::int64_t i = 0; i < d; ++i) acc += U[i * R + r] * xb[i];
        au[r] = acc;
      }
      __syncthreads();
      T* zu = z;
      T* zv = tmp;
      T pna = T(0), pnu = T(0), paz = T(0);
      for (std::int64_t r = threadIdx.x; r < k; r += blockDim.x) {
        T acc = T(0), acc2 = T(0);
        for (std::int64_t cc = 0; cc < k; ++cc) {
          acc += D1[r * R + cc] * au[cc];
          acc2 += D1[cc * R + r] * alpha[cc];
        }
        zu[r] = acc;
        zv[r] = acc2;
        pna += alpha[r] * alpha[r];
        pnu += au[r] * au[r];
        paz += alpha[r] * acc;
      }
      const T na = block_sum(pna, red);
      const T nu = block_sum(pnu, red);
      const T az = block_sum(paz, red);
      w = sqrt(na) * sqrt(nu) / az;
      if (k > 1) {
        if (threadIdx.x == 0) {
          householder_serial(zu, k, h);
          householder_serial(zv, k, au);  // h2 in au's storage
        }
        __syncthreads();
        reflect_rows_block(D1, k, k, R, h);
        reflect_cols_block(V, D, k, R, h);
        __syncthreads();
        reflect_cols_block(D1, k, k, R, au);
        reflect_cols_block(U, d, k, R, au);
        __syncthreads();
      }
    }
    if (threadIdx.x == 0) {
      W[k - 1] = w;
      Fb[k - 1] = best;
    }
    for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) Fa[(k - 1) * d + i] = xb[i];
    __syncthreads();
  }
}

Status check_shape(const SpmShape& s, const char* op) {
  SL_REQUIRE(s.d >= 1 && s.R >= 1 && s.B >= 0,
             std::string(op) + ": need d >= 1, R >= 1, B >= 0, got d=" + std::to_string(s.d) +
                 " R=" + std::to_string(s.R) + " B=" + std::to_string(s.B));
  SL_REQUIRE(s.B <= 0x7fffffffLL, std::string(op) + ": too many points for one CUDA launch");
  return Status::ok();
}

}  // namespace

Status spm_contract_cuda(int dtype, const SpmShape& s, const void* V, const void* X, void* alpha, void* grad,
                         void* workspace, std::int64_t ws_bytes, const Exec& exec) {
  SL_RETURN_IF_ERROR(check_shape(s, "spm_contract"));
  if (s.B == 0) return Status::ok();
  SL_REQUIRE(V && X && alpha && grad && workspace, "spm_contract: null data pointer");
  SL_REQUIRE(ws_bytes >= spm_workspace_bytes(dtype, s),
             "spm_contract: workspace of " + std::to_string(ws_bytes) + " bytes, need " +
                 std::to_string(spm_workspace_bytes(dtype, s)));
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_real<DeviceTypes>(dtype, "spm_contract", [&](auto tag) -> Status {
    using T = decltype(tag);
    spm_contract_kernel<T><<<static_cast<unsigned>(s.B), kThreads, 0, stream>>>(
        s, static_cast<const T*>(V), static_cast<const T*>(X), static_cast<T*>(alpha), static_cast<T*>(grad),
        static_cast<T*>(workspace));
    SL_CUDA_CHECK_LAUNCH("spm_contract_kernel");
    return Status::ok();
  });
}

Status spm_extract_cuda(int dtype, const SpmExtractArgs& a, void* workspace, std::int64_t ws_bytes,
                        const Exec& exec) {
  SL_REQUIRE(a.d >= 1 && a.R >= 1 && a.ntries >= 1 && a.maxiter >= 0,
             "spm_extract: need d >= 1, R >= 1, ntries >= 1, maxiter >= 0, got d=" + std::to_string(a.d) +
                 " R=" + std::to_string(a.R) + " ntries=" + std::to_string(a.ntries));
  SL_REQUIRE(a.V && a.D1 && a.G && a.C && a.weights && a.factors && a.fbest && (!a.odd || a.U) && workspace,
             "spm_extract: null data pointer");
  SL_REQUIRE(ws_bytes >= spm_extract_workspace_bytes(dtype, a.d, a.R),
             "spm_extract: workspace of " + std::to_string(ws_bytes) + " bytes, need " +
                 std::to_string(spm_extract_workspace_bytes(dtype, a.d, a.R)));
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_real<DeviceTypes>(dtype, "spm_extract", [&](auto tag) -> Status {
    using T = decltype(tag);
    spm_extract_kernel<T><<<1, kThreads, 0, stream>>>(a, static_cast<T*>(workspace));
    SL_CUDA_CHECK_LAUNCH("spm_extract_kernel");
    return Status::ok();
  });
}

Status spm_power_cuda(int dtype, const SpmShape& s, const void* V, void* X, void* f, std::int64_t* iters,
                      std::int64_t maxiter, double tol, double cn, void* workspace, std::int64_t ws_bytes,
                      const Exec& exec) {
  SL_RETURN_IF_ERROR(check_shape(s, "spm_power"));
  SL_REQUIRE(maxiter >= 0, "spm_power: maxiter must be >= 0, got " + std::to_string(maxiter));
  if (s.B == 0) return Status::ok();
  SL_REQUIRE(V && X && f && iters && workspace, "spm_power: null data pointer");
  SL_REQUIRE(ws_bytes >= spm_workspace_bytes(dtype, s),
             "spm_power: workspace of " + std::to_string(ws_bytes) + " bytes, need " +
                 std::to_string(spm_workspace_bytes(dtype, s)));
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_real<DeviceTypes>(dtype, "spm_power", [&](auto tag) -> Status {
    using T = decltype(tag);
    spm_power_kernel<T><<<static_cast<unsigned>(s.B), kThreads, 0, stream>>>(
        s, static_cast<const T*>(V), static_cast<T*>(X), static_cast<T*>(f), iters, maxiter, static_cast<T>(tol),
        static_cast<T>(cn), static_cast<T*>(workspace));
    SL_CUDA_CHECK_LAUNCH("spm_power_kernel");
    return Status::ok();
  });
}

}  // namespace sl
