// CUDA kernels of the Subspace Power Method (see sl/spm.h). Same algorithm as
// csrc/cpu/spm.cpp: one thread block per point (restart); the whole power iteration runs
// inside the kernel (one launch per call, not a handful of launches per iteration).
// Scratch vectors live in the caller's workspace (global memory): B * (2D + R + 2d).
#include <cuda_runtime.h>

#include <cstdint>
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
    ++it;
    if (!(nrm > T(0))) break;  // uniform across the block
    part = T(0);
    for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const T xn = g[i] / nrm;
      part += (xn - x[i]) * (xn - x[i]);
      x[i] = xn;
    }
    const T diff = sqrt(block_sum(part, red));  // synchronizes: x is visible afterwards
    if (diff < tol) break;                      // uniform across the block
  }
  *it_out = it;
  return contract_block<T>(d, R, ld, V, x, y, u, alpha, g, red);
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

// the whole extraction (see sl/spm.h), one block; ws laid out as in csrc/cpu/spm.cpp
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
      std::int64_t it = 0;
      const T f = power_block<T>(d, k, R, V, x, a.maxiter, tol, cn, y, u, alpha, g, red, &it);
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
