// CUDA twin of csrc/cpu/lanczos.cpp: the block Lanczos basis expansion (contract in
// sl/lanczos.h). One persistent block of kThreads threads runs the whole expansion on the
// device, so the host never synchronizes inside it (the reference path on CUDA reads every
// column's norm back): W = A X^T with one warp per row (dense) or one thread per row (CSR);
// the coefficients of classical Gram-Schmidt with one warp per basis row (lanes strided over
// the entries, a shuffle reduction in double); norms by a block reduction every thread
// reads, so control flow (breakdown, non-finite stop) stays uniform across the block. The
// sums are in double like the CPU kernel's, in a fixed order for a fixed block size: the
// same numbers on every run, though not bit-equal to the CPU's chunked order.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "common.cuh"
#include "sl/cuda_check.h"
#include "sl/dtype.h"
#include "sl/lanczos.h"
#include "sl/philox.h"

namespace sl {
namespace {

constexpr int kThreads = 256;


template <typename T>
__device__ double lz_norm(const T* w, std::int64_t n, double* red) {
  double s = 0.0;
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) {
    const double x = static_cast<double>(w[t]);
    s += x * x;
  }
  return sqrt(dev::block_sum(s, red));
}

// c[i] = <B_i, w> for rows i < r of B (one warp per row)
template <typename T>
__device__ void lz_dots(const T* B, std::int64_t r, std::int64_t n, const T* w, double* c) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (std::int64_t i = warp; i < r; i += nw) {
    const T* b = B + i * n;
    double acc = 0.0;
    for (std::int64_t t = lane; t < n; t += 32) acc += static_cast<double>(b[t]) * static_cast<double>(w[t]);
    acc = dev::warp_sum(acc);
    if (lane == 0) c[i] = acc;
  }
  __syncthreads();
}

// w -= sum_i c[i] B_i
template <typename T>
__device__ void lz_update(const T* B, std::int64_t r, std::int64_t n, const double* c, T* w) {
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) {
    double acc = static_cast<double>(w[t]);
    for (std::int64_t i = 0; i < r; ++i) acc -= c[i] * static_cast<double>(B[i * n + t]);
    w[t] = static_cast<T>(acc);
  }
  __syncthreads();
}

// w minus its components along rows [0, r) of B, twice; the summed coefficients in c
template <typename T>
__device__ void lz_orth_against(const T* B, std::int64_t r, std::int64_t n, T* w, double* c, double* c2) {
  if (r == 0) return;
  lz_dots(B, r, n, w, c);
  lz_update(B, r, n, c, w);
  lz_dots(B, r, n, w, c2);
  lz_update(B, r, n, c2, w);
  for (std::int64_t i = threadIdx.x; i < r; i += blockDim.x) c[i] += c2[i];
  __syncthreads();
}

// Y = A X^T for the p rows of X (rows of Y)
template <typename T>
__device__ void lz_apply(const LanczosExpandArgs& a, const T* X, std::int64_t p, T* Y) {
  const std::int64_t n = a.n;
  if (a.dense) {
    const T* A = static_cast<const T*>(a.dense);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (std::int64_t i = warp; i < n; i += nw) {
      const T* row = A + i * a.lda;
      for (std::int64_t s = 0; s < p; ++s) {
        const T* x = X + s * n;
        double acc = 0.0;
        for (std::int64_t t = lane; t < n; t += 32) acc += static_cast<double>(row[t]) * static_cast<double>(x[t]);
        acc = dev::warp_sum(acc);
        if (lane == 0) Y[s * n + i] = static_cast<T>(acc);
      }
    }
  } else {
    const T* val = static_cast<const T*>(a.val);
    for (std::int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const std::int64_t k0 = a.crow[i], k1 = a.crow[i + 1];
      for (std::int64_t s = 0; s < p; ++s) {
        const T* x = X + s * n;
        double acc = 0.0;
        for (std::int64_t k = k0; k < k1; ++k) acc += static_cast<double>(val[k]) * static_cast<double>(x[a.col[k]]);
        Y[s * n + i] = static_cast<T>(acc);
      }
    }
  }
  __syncthreads();
}

// scratch: W (p x n, T); ws doubles: c (rows), c2 (rows), before (p)
template <typename T>
__global__ void lanczos_expand_kernel(LanczosExpandArgs a, T* W, double* ws) {
  __shared__ double red[32];
  const std::int64_t n = a.n, p = a.p, ldh = a.ldh;
  T* V = static_cast<T*>(a.V);
  T* H = static_cast<T*>(a.H);
  double* c = ws;
  double* c2 = c + a.rows;
  double* before = c2 + a.rows;
  std::int64_t draws = a.draws;
  std::int64_t j = a.j0;
  for (; j + p <= a.jstop && j + 2 * p <= a.rows; j += p) {
    lz_apply<T>(a, V + j * n, p, W);
    for (std::int64_t s = 0; s < p; ++s) {
      const double b = lz_norm(W + s * n, n, red);
      if (threadIdx.x == 0) before[s] = b;
    }
    __syncthreads();
    const std::int64_t r = j + p;  // rows of the basis so far; the new block goes to rows r .. r + p - 1
    for (std::int64_t s = 0; s < p; ++s) {
      T* w = W + s * n;
      lz_orth_against(V, r, n, w, c, c2);  // against the basis: H[0:r, j+s]
      for (std::int64_t i = threadIdx.x; i < r; i += blockDim.x) H[i * ldh + j + s] = static_cast<T>(c[i]);
      __syncthreads();
    }
    for (std::int64_t s = 0; s < p; ++s) {
      T* w = W + s * n;
      lz_orth_against(V + r * n, s, n, w, c, c2);  // against the new rows accepted so far
      for (std::int64_t t = threadIdx.x; t < s; t += blockDim.x) H[(r + t) * ldh + j + s] = static_cast<T>(c[t]);
      const double beta = lz_norm(w, n, red);
      if (!isfinite(beta) || !isfinite(before[s])) {
        if (threadIdx.x == 0) {
          a.out[0] = j;
          a.out[1] = kLanczosNonFinite;
          a.out[2] = draws;
        }
        return;
      }
      T* v = V + (r + s) * n;
      if (beta > a.thresh * before[s] && beta > 0.0) {
        if (threadIdx.x == 0) H[(r + s) * ldh + j + s] = static_cast<T>(beta);
        const T inv = static_cast<T>(1.0 / beta);
        for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) v[t] = w[t] * inv;
        __syncthreads();
        continue;
      }
      // breakdown: a fresh direction in this slot, orthogonal to every row so far
      if (threadIdx.x == 0) H[(r + s) * ldh + j + s] = T(0);
      for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x)
        v[t] = static_cast<T>(rand_entry(static_cast<int>(RandKind::Gaussian), a.seed, kLanczosTag, draws, t));
      ++draws;
      __syncthreads();
      lz_orth_against(V, r + s, n, v, c, c2);
      const double z = lz_norm(v, n, red);
      const T inv = static_cast<T>(z > 0.0 ? 1.0 / z : 0.0);
      for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) v[t] *= inv;
      __syncthreads();
    }
  }
  if (threadIdx.x == 0) {
    a.out[0] = j;
    a.out[1] = kLanczosOk;
    a.out[2] = draws;
  }
}

}  // namespace

std::size_t lanczos_expand_cuda_workspace_bytes(int dtype, std::int64_t n, std::int64_t p, std::int64_t rows) {
  const std::size_t es = dtype == static_cast<int>(DType::F64) ? 8 : 4;
  const std::size_t w = static_cast<std::size_t>(p * n) * es;
  return (w + 7) / 8 * 8 + static_cast<std::size_t>(2 * rows + p) * sizeof(double);
}

Status lanczos_expand_cuda(int dtype, const LanczosExpandArgs& a, void* ws, std::size_t ws_bytes, const Exec& exec) {
  SL_RETURN_IF_ERROR(lanczos_expand_check(a));
  SL_REQUIRE(ws && ws_bytes >= lanczos_expand_cuda_workspace_bytes(dtype, a.n, a.p, a.rows),
             "lanczos_expand: the CUDA workspace is too small");
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_real<DeviceTypes>(dtype, "lanczos_expand", [&](auto tag) -> Status {
    using T = decltype(tag);
    T* W = static_cast<T*>(ws);
    const std::size_t wbytes = (static_cast<std::size_t>(a.p * a.n) * sizeof(T) + 7) / 8 * 8;
    double* dws = reinterpret_cast<double*>(static_cast<unsigned char*>(ws) + wbytes);
    lanczos_expand_kernel<T><<<1, kThreads, 0, stream>>>(a, W, dws);
    SL_CUDA_CHECK_LAUNCH("lanczos_expand_kernel");
    return Status::ok();
  });
}

}  // namespace sl
