// CUDA small dense batched kernels (contract: sl/small_dense.h), one thread block per
// matrix, working in global memory (the output buffers), with the CPU twin's algorithms:
//  * Cholesky-Crout: column j's pivot by a block reduction, then rows i > j of column j in
//    parallel (each a dot product of length j, accumulated in the element type);
//  * triangular inverse: rows of X in sequence, the entries of a row in parallel;
//  * two-sided Jacobi: the n/2 disjoint rotations of a round-robin step in parallel
//    (column update, then row update of A and V^T);
//  * one-sided Jacobi: one warp per column pair of a step (dot products with shuffles);
//  * cholqr_panel: the CPU twin's phases as a sequence of kernels (see there).
#include <cuda_runtime.h>
#include <math_constants.h>

#include <cfloat>
#include <climits>
#include <cstdint>
#include <string>
#include <type_traits>

#include "common.cuh"
#include "sl/cuda_check.h"
#include "sl/dtype.h"
#include "sl/small_dense.h"

namespace sl {
namespace {

using i64 = std::int64_t;
constexpr int kThreads = 256;
constexpr int kMaxHalf = static_cast<int>(kSmallDenseMaxN / 2);

template <typename T> __device__ __forceinline__ T eps_of();
template <> __device__ __forceinline__ float eps_of<float>() { return FLT_EPSILON; }
template <> __device__ __forceinline__ double eps_of<double>() { return DBL_EPSILON; }

__device__ __forceinline__ bool finite_(double x) { return isfinite(x); }

// sum over the block (every thread gets the total); red has blockDim.x doubles
__device__ double block_sum(double v, double* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  const double out = red[0];
  __syncthreads();
  return out;
}

__device__ double block_max(double v, double* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] = fmax(red[threadIdx.x], red[threadIdx.x + s]);
    __syncthreads();
  }
  const double out = red[0];
  __syncthreads();
  return out;
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
__device__ __forceinline__ T jacobi_tangent(T app, T aqq, T apq) {
  const T zeta = (aqq - app) / (T(2) * apq);
  const T sgn = zeta >= T(0) ? T(1) : T(-1);
  return sgn / (fabs(zeta) + hypot(T(1), zeta));
}

template <typename T>
__global__ void cholesky_kernel(const T* __restrict__ a_all, T* __restrict__ l_all, std::int32_t* info, i64 n) {
  __shared__ double red[kThreads];
  __shared__ T lj[kSmallDenseMaxN];
  __shared__ int fail;
  const i64 b = blockIdx.x;
  const T* a = a_all + b * n * n;
  T* l = l_all + b * n * n;
  if (threadIdx.x == 0) fail = 0;
  for (i64 idx = threadIdx.x; idx < n * n; idx += blockDim.x) l[idx] = T(0);
  __syncthreads();
  for (i64 j = 0; j < n; ++j) {
    for (i64 t = threadIdx.x; t < j; t += blockDim.x) lj[t] = l[j * n + t];
    __syncthreads();
    T part = T(0);
    for (i64 t = threadIdx.x; t < j; t += blockDim.x) part += lj[t] * lj[t];
    const T d = a[j * n + j] - static_cast<T>(block_sum(static_cast<double>(part), red));
    if (!(d > T(0)) || !finite_(static_cast<double>(d))) {
      if (threadIdx.x == 0) fail = static_cast<int>(j + 1);
      __syncthreads();
      break;
    }
    const T ljj = sqrt(d);
    if (threadIdx.x == 0) l[j * n + j] = ljj;
    for (i64 i = j + 1 + threadIdx.x; i < n; i += blockDim.x) {
      const T* li = l + i * n;
      T s = T(0);
      for (i64 t = 0; t < j; ++t) s += li[t] * lj[t];
      l[i * n + j] = (a[i * n + j] - s) / ljj;
    }
    __syncthreads();
  }
  const int f = fail;
  if (f) {
    for (i64 idx = (f - 1) * n + threadIdx.x; idx < n * n; idx += blockDim.x) l[idx] = T(0);
  }
  if (threadIdx.x == 0) info[b] = f;
}

template <typename T>
__global__ void tril_inverse_kernel(const T* __restrict__ l_all, T* __restrict__ x_all, std::int32_t* info, i64 n) {
  __shared__ T li[kSmallDenseMaxN];
  __shared__ int fail;
  const i64 b = blockIdx.x;
  const T* l = l_all + b * n * n;
  T* x = x_all + b * n * n;
  if (threadIdx.x == 0) fail = INT_MAX;
  for (i64 idx = threadIdx.x; idx < n * n; idx += blockDim.x) x[idx] = T(0);
  __syncthreads();
  for (i64 i = threadIdx.x; i < n; i += blockDim.x) {
    const T d = l[i * n + i];
    if (d == T(0) || !finite_(static_cast<double>(d))) atomicMin(&fail, static_cast<int>(i + 1));
  }
  __syncthreads();
  if (fail != INT_MAX) {
    if (threadIdx.x == 0) info[b] = fail;
    return;
  }
  for (i64 i = 0; i < n; ++i) {
    for (i64 t = threadIdx.x; t <= i; t += blockDim.x) li[t] = l[i * n + t];
    __syncthreads();
    for (i64 j = threadIdx.x; j <= i; j += blockDim.x) {
      if (j == i) {
        x[i * n + i] = T(1) / li[i];
      } else {
        T s = T(0);
        for (i64 t = j; t < i; ++t) s += li[t] * x[t * n + j];
        x[i * n + j] = -s / li[i];
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) info[b] = 0;
}

template <typename T>
__global__ void eigh_jacobi_kernel(T* a_all, T* w_all, T* vt_all, std::int32_t* info, i64 n, int max_sweeps) {
  __shared__ double red[kThreads];
  __shared__ T cs[kMaxHalf], sn[kMaxHalf];
  __shared__ int pp[kMaxHalf], qq[kMaxHalf], act[kMaxHalf];
  __shared__ int rotations;
  const i64 b = blockIdx.x;
  T* a = a_all + b * n * n;
  T* vt = vt_all + b * n * n;
  const i64 ne = n + (n & 1);
  const i64 half = ne / 2;
  for (i64 idx = threadIdx.x; idx < n * n; idx += blockDim.x) vt[idx] = (idx / n == idx % n) ? T(1) : T(0);
  // tau = eps ||A||_F / n, the norm scaled by max |a_ij| against overflow
  double amax = 0.0;
  for (i64 idx = threadIdx.x; idx < n * n; idx += blockDim.x) amax = fmax(amax, fabs(static_cast<double>(a[idx])));
  amax = block_max(amax, red);
  double fro = amax;
  if (amax > 0.0 && finite_(amax)) {
    double part = 0.0;
    for (i64 idx = threadIdx.x; idx < n * n; idx += blockDim.x) {
      const double v = static_cast<double>(a[idx]) / amax;
      part += v * v;
    }
    fro = amax * sqrt(block_sum(part, red));
  }
  const T tau = eps_of<T>() * static_cast<T>(fro) / static_cast<T>(n > 0 ? n : 1);
  int not_conv = n > 1 ? 1 : 0;
  for (int sweep = 0; sweep < max_sweeps && n > 1; ++sweep) {
    if (threadIdx.x == 0) rotations = 0;
    __syncthreads();
    for (i64 step = 0; step < ne - 1; ++step) {
      for (i64 k = threadIdx.x; k < half; k += blockDim.x) {
        i64 p, q;
        jacobi_pair(ne, step, k, &p, &q);
        int on = 0;
        if (q < n) {
          const T apq = a[p * n + q];
          if (fabs(apq) > tau) {
            const T t = jacobi_tangent(a[p * n + p], a[q * n + q], apq);
            const T c = T(1) / sqrt(T(1) + t * t);
            cs[k] = c;
            sn[k] = t * c;
            on = 1;
            atomicAdd(&rotations, 1);
          }
        }
        pp[k] = static_cast<int>(p);
        qq[k] = static_cast<int>(q);
        act[k] = on;
      }
      __syncthreads();
      // A <- A J: entry (r, p), (r, q) for every row r and pair k
      for (i64 idx = threadIdx.x; idx < half * n; idx += blockDim.x) {
        const i64 k = idx % half, r = idx / half;
        if (!act[k]) continue;
        T* ar = a + r * n;
        const T x = ar[pp[k]], y = ar[qq[k]];
        ar[pp[k]] = cs[k] * x - sn[k] * y;
        ar[qq[k]] = sn[k] * x + cs[k] * y;
      }
      __syncthreads();
      // A <- J^T A and V^T <- J^T V^T: rows p, q
      for (i64 idx = threadIdx.x; idx < half * n; idx += blockDim.x) {
        const i64 k = idx / n, j = idx % n;
        if (!act[k]) continue;
        const i64 p = pp[k], q = qq[k];
        const T x = a[p * n + j], y = a[q * n + j];
        a[p * n + j] = cs[k] * x - sn[k] * y;
        a[q * n + j] = sn[k] * x + cs[k] * y;
        const T vx = vt[p * n + j], vy = vt[q * n + j];
        vt[p * n + j] = cs[k] * vx - sn[k] * vy;
        vt[q * n + j] = sn[k] * vx + cs[k] * vy;
      }
      __syncthreads();
      for (i64 k = threadIdx.x; k < half; k += blockDim.x) {
        if (!act[k]) continue;
        a[static_cast<i64>(pp[k]) * n + qq[k]] = T(0);
        a[static_cast<i64>(qq[k]) * n + pp[k]] = T(0);
      }
      __syncthreads();
    }
    const int rot = rotations;
    __syncthreads();
    if (rot == 0) {
      not_conv = 0;
      break;
    }
  }
  for (i64 i = threadIdx.x; i < n; i += blockDim.x) w_all[b * n + i] = a[i * n + i];
  if (threadIdx.x == 0) info[b] = not_conv;
}

template <typename T>
__global__ void svd_jacobi_kernel(T* at_all, T* vt_all, std::int32_t* info, i64 m, i64 n, int max_sweeps) {
  __shared__ int rotations;
  const i64 b = blockIdx.x;
  T* at = at_all + b * n * m;
  T* vt = vt_all + b * n * n;
  const i64 ne = n + (n & 1);
  const i64 half = ne / 2;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  const double tol = static_cast<double>(eps_of<T>()) * sqrt(static_cast<double>(m));
  for (i64 idx = threadIdx.x; idx < n * n; idx += blockDim.x) vt[idx] = (idx / n == idx % n) ? T(1) : T(0);
  __syncthreads();
  int not_conv = n > 1 ? 1 : 0;
  for (int sweep = 0; sweep < max_sweeps && n > 1; ++sweep) {
    if (threadIdx.x == 0) rotations = 0;
    __syncthreads();
    for (i64 step = 0; step < ne - 1; ++step) {
      for (i64 k = warp; k < half; k += nwarps) {  // warp-uniform loop
        i64 p, q;
        jacobi_pair(ne, step, k, &p, &q);
        if (q >= n) continue;
        T* ap = at + p * m;
        T* aq = at + q * m;
        double al = 0.0, be = 0.0, ga = 0.0;
        for (i64 i = lane; i < m; i += 32) {
          const double x = static_cast<double>(ap[i]), y = static_cast<double>(aq[i]);
          al += x * x;
          be += y * y;
          ga += x * y;
        }
        al = warp_sum(al);
        be = warp_sum(be);
        ga = warp_sum(ga);
        if (!(fabs(ga) > tol * sqrt(al) * sqrt(be))) continue;
        const double t = jacobi_tangent(al, be, ga);
        const double cd = 1.0 / sqrt(1.0 + t * t);
        const T c = static_cast<T>(cd), s = static_cast<T>(cd * t);
        for (i64 i = lane; i < m; i += 32) {
          const T x = ap[i], y = aq[i];
          ap[i] = c * x - s * y;
          aq[i] = s * x + c * y;
        }
        T* vp = vt + p * n;
        T* vq = vt + q * n;
        for (i64 i = lane; i < n; i += 32) {
          const T x = vp[i], y = vq[i];
          vp[i] = c * x - s * y;
          vq[i] = s * x + c * y;
        }
        if (lane == 0) atomicAdd(&rotations, 1);
      }
      __syncthreads();
    }
    const int rot = rotations;
    __syncthreads();
    if (rot == 0) {
      not_conv = 0;
      break;
    }
  }
  if (threadIdx.x == 0) info[b] = not_conv;
}

// ---------------------------------------------------------------- cholqr_panel
// The CPU twin's phases as kernels on the stream (no host synchronization): Gram (one
// block per panel, one warp per entry of the lower triangle), the Cholesky and inverse
// kernels above, Q = Y X^T (one thread per row), flags, L1 L2, zeroing of failed panels.
template <typename T>
__global__ void panel_gram_kernel(const T* __restrict__ y, i64 ybs, i64 yld, i64 m, i64 k, T* __restrict__ g_all) {
  const i64 b = blockIdx.x;
  const T* yb = y + b * ybs;
  T* g = g_all + b * k * k;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  for (i64 idx = warp; idx < k * k; idx += nwarps) {
    const i64 i = idx / k, j = idx % k;
    if (j > i) continue;
    const T* yi = yb + i * yld;
    const T* yj = yb + j * yld;
    // each lane's chain of m / 32 products summed in double (float32 chains of a tall
    // panel would lose digits the CPU's row-blocked sums keep: review, not run on a GPU)
    double part = 0.0;
    for (i64 r = lane; r < m; r += 32) part += static_cast<double>(yi[r]) * static_cast<double>(yj[r]);
    const T s = static_cast<T>(warp_sum(part));
    if (lane == 0) {
      g[i * k + j] = s;
      g[j * k + i] = s;
    }
  }
}

// q (column-major, m rows) = Y X^T for lower triangular row-major X: one thread per row,
// the batch on grid x (up to 2^31 - 1 panels), row tiles on grid y (at most 65535 of
// them, striding over the rest: any m)
template <typename T>
__global__ void panel_tts_kernel(const T* __restrict__ y, i64 ybs, i64 yld, i64 m, i64 k, const T* __restrict__ x_all,
                                 T* __restrict__ q_all) {
  const i64 b = blockIdx.x;
  const T* x = x_all + b * k * k;
  const i64 step = static_cast<i64>(gridDim.y) * blockDim.x;
  for (i64 r = static_cast<i64>(blockIdx.y) * blockDim.x + threadIdx.x; r < m; r += step) {
    const T* yb = y + b * ybs + r;
    T* q = q_all + b * m * k + r;
    for (i64 j = 0; j < k; ++j) {
      T s = T(0);
      for (i64 i = 0; i <= j; ++i) s += yb[i * yld] * x[j * k + i];
      q[j * m] = s;
    }
  }
}

// f1[b] = 1 where the first pass failed (Cholesky, inverse, or the diagonal ratio)
template <typename T>
__global__ void panel_pass1_flags_kernel(const std::int32_t* info, std::int32_t* f1, const T* l1_all, i64 batch, i64 k,
                                         double cond_max) {
  const i64 b = static_cast<i64>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const T* l1 = l1_all + b * k * k;
  double dmax = 0.0, dmin = CUDART_INF;
  for (i64 i = 0; i < k; ++i) {
    const double d = static_cast<double>(l1[i * k + i]);
    dmax = fmax(dmax, d);
    dmin = fmin(dmin, d);
  }
  f1[b] = (info[b] != 0 || f1[b] != 0 || !(dmax <= cond_max * dmin)) ? 1 : 0;
}

// second pass: f2 (||G2 - I||_F, Cholesky, inverse) and l = L1 L2; one block per panel
template <typename T>
__global__ void panel_pass2_kernel(const std::int32_t* info, std::int32_t* f2, const T* g2_all, const T* l1_all,
                                   const T* l2_all, T* l_all, i64 k, double gate) {
  __shared__ double red[kThreads];
  const i64 b = blockIdx.x;
  const T* g2 = g2_all + b * k * k;
  const T* l1 = l1_all + b * k * k;
  const T* l2 = l2_all + b * k * k;
  T* l = l_all + b * k * k;
  double part = 0.0;
  for (i64 idx = threadIdx.x; idx < k * k; idx += blockDim.x) {
    const i64 i = idx / k, j = idx % k;
    const double e = static_cast<double>(g2[idx]) - (i == j ? 1.0 : 0.0);
    part += e * e;
    T s = T(0);
    for (i64 t = j; t <= i; ++t) s += l1[i * k + t] * l2[t * k + j];
    l[idx] = j <= i ? s : T(0);
  }
  const double dev = sqrt(block_sum(part, red));
  if (threadIdx.x == 0) f2[b] = (info[b] != 0 || f2[b] != 0 || !(dev <= gate)) ? 1 : 0;
}

// info = 0 / 1 / 2 and zero outputs for failed panels; one block per panel
template <typename T>
__global__ void panel_finish_kernel(std::int32_t* info, const std::int32_t* f1, const std::int32_t* f2, int mode,
                                    T* q_all, T* l_all, T* x_all, i64 m, i64 k) {
  const i64 b = blockIdx.x;
  const std::int32_t code = f1[b] ? 1 : (mode != 0 && f2[b]) ? 2 : 0;
  __syncthreads();
  if (threadIdx.x == 0) info[b] = code;
  if (!code) return;
  for (i64 idx = threadIdx.x; idx < m * k; idx += blockDim.x) q_all[b * m * k + idx] = T(0);
  for (i64 idx = threadIdx.x; idx < k * k; idx += blockDim.x) l_all[b * k * k + idx] = x_all[b * k * k + idx] = T(0);
}

Status check_dims(const char* op, i64 batch, i64 n) {
  SL_REQUIRE(batch >= 0 && n >= 0, std::string(op) + ": negative size");
  SL_REQUIRE(n <= kSmallDenseMaxN, std::string(op) + ": n must be <= " + std::to_string(kSmallDenseMaxN) +
                                       ", got " + std::to_string(n));
  SL_REQUIRE(batch <= INT_MAX, std::string(op) + ": batch must be <= INT_MAX on CUDA, got " + std::to_string(batch));
  return Status::ok();
}

}  // namespace

Status cholesky_small_cuda(int dtype, const void* a, void* l, std::int32_t* info, i64 batch, i64 n,
                           const Exec& exec) {
  SL_RETURN_IF_ERROR(check_dims("cholesky_small", batch, n));
  if (batch == 0 || n == 0) return Status::ok();
  SL_REQUIRE(a && l && info, "cholesky_small: null pointer");
  SL_CUDA_DEVICE_GUARD(exec);
  return dispatch_real<DeviceTypes>(dtype, "cholesky_small", [&](auto tag) -> Status {
    using T = decltype(tag);
    cholesky_kernel<T><<<static_cast<unsigned>(batch), kThreads, 0, as_stream(exec.stream)>>>(
        static_cast<const T*>(a), static_cast<T*>(l), info, n);
    SL_CUDA_CHECK_LAUNCH("cholesky_small");
    return Status::ok();
  });
}

Status tril_inverse_small_cuda(int dtype, const void* l, void* x, std::int32_t* info, i64 batch, i64 n,
                               const Exec& exec) {
  SL_RETURN_IF_ERROR(check_dims("tril_inverse_small", batch, n));
  if (batch == 0 || n == 0) return Status::ok();
  SL_REQUIRE(l && x && info, "tril_inverse_small: null pointer");
  SL_REQUIRE(l != x, "tril_inverse_small: x must not alias l");
  SL_CUDA_DEVICE_GUARD(exec);
  return dispatch_real<DeviceTypes>(dtype, "tril_inverse_small", [&](auto tag) -> Status {
    using T = decltype(tag);
    tril_inverse_kernel<T><<<static_cast<unsigned>(batch), kThreads, 0, as_stream(exec.stream)>>>(
        static_cast<const T*>(l), static_cast<T*>(x), info, n);
    SL_CUDA_CHECK_LAUNCH("tril_inverse_small");
    return Status::ok();
  });
}

Status eigh_jacobi_cuda(int dtype, void* a, void* w, void* vt, std::int32_t* info, i64 batch, i64 n,
                        int max_sweeps, const Exec& exec) {
  SL_RETURN_IF_ERROR(check_dims("eigh_jacobi", batch, n));
  SL_REQUIRE(max_sweeps >= 1, "eigh_jacobi: max_sweeps must be >= 1, got " + std::to_string(max_sweeps));
  if (batch == 0 || n == 0) return Status::ok();
  SL_REQUIRE(a && w && vt && info, "eigh_jacobi: null pointer");
  SL_CUDA_DEVICE_GUARD(exec);
  return dispatch_real<DeviceTypes>(dtype, "eigh_jacobi", [&](auto tag) -> Status {
    using T = decltype(tag);
    eigh_jacobi_kernel<T><<<static_cast<unsigned>(batch), kThreads, 0, as_stream(exec.stream)>>>(
        static_cast<T*>(a), static_cast<T*>(w), static_cast<T*>(vt), info, n, max_sweeps);
    SL_CUDA_CHECK_LAUNCH("eigh_jacobi");
    return Status::ok();
  });
}

Status svd_jacobi_cuda(int dtype, void* at, void* vt, std::int32_t* info, i64 batch, i64 m, i64 n,
                       int max_sweeps, const Exec& exec) {
  SL_RETURN_IF_ERROR(check_dims("svd_jacobi", batch, n));
  SL_REQUIRE(m >= n, "svd_jacobi: needs m >= n, got m=" + std::to_string(m) + ", n=" + std::to_string(n));
  SL_REQUIRE(max_sweeps >= 1, "svd_jacobi: max_sweeps must be >= 1, got " + std::to_string(max_sweeps));
  if (batch == 0 || n == 0) return Status::ok();
  SL_REQUIRE(at && vt && info, "svd_jacobi: null pointer");
  SL_CUDA_DEVICE_GUARD(exec);
  return dispatch_real<DeviceTypes>(dtype, "svd_jacobi", [&](auto tag) -> Status {
    using T = decltype(tag);
    svd_jacobi_kernel<T><<<static_cast<unsigned>(batch), kThreads, 0, as_stream(exec.stream)>>>(
        static_cast<T*>(at), static_cast<T*>(vt), info, m, n, max_sweeps);
    SL_CUDA_CHECK_LAUNCH("svd_jacobi");
    return Status::ok();
  });
}

Status cholqr_panel_cuda(int dtype, int mode, const void* y, i64 y_bstride, i64 y_rs, i64 y_cs, void* q, void* l,
                         void* x, std::int32_t* info, void* work, i64 batch, i64 m, i64 k, double cond_max,
                         double gate, const Exec& exec) {
  SL_RETURN_IF_ERROR(check_dims("cholqr_panel", batch, k));
  bool empty = false, rm = false;
  SL_RETURN_IF_ERROR(cholqr_panel_check(mode, y, y_rs, y_cs, q, l, x, info, work, batch, m, k, &empty, &rm));
  if (empty) return Status::ok();
  SL_REQUIRE(!rm, "cholqr_panel: CUDA takes column-major panels only (the caller transposes)");
  const i64 y_ld = y_cs;
  SL_CUDA_DEVICE_GUARD(exec);
  return dispatch_real<DeviceTypes>(dtype, "cholqr_panel", [&](auto tag) -> Status {
    using T = decltype(tag);
    cudaStream_t st = as_stream(exec.stream);
    const i64 kk = k * k;
    T* w = static_cast<T*>(work);
    T* g1 = w;
    T* l1 = mode == 0 ? static_cast<T*>(l) : w + batch * kk;
    T* x1 = mode == 0 ? static_cast<T*>(x) : w + 2 * batch * kk;
    T* g2 = w + 3 * batch * kk;
    T* l2 = w + 4 * batch * kk;
    std::int32_t* f1 = reinterpret_cast<std::int32_t*>(w + 5 * batch * kk);
    std::int32_t* f2 = f1 + batch;
    T* q1 = mode == 2 ? w + 5 * batch * kk + 2 * batch : static_cast<T*>(q);
    const unsigned nb = static_cast<unsigned>(batch);
    const i64 row_tiles = (m + kThreads - 1) / kThreads;
    const dim3 rows(nb, static_cast<unsigned>(row_tiles < 65535 ? row_tiles : 65535));
    const unsigned flag_blocks = static_cast<unsigned>((batch + kThreads - 1) / kThreads);
    const T* yy = static_cast<const T*>(y);
    // (every launch checked: a failed one returns before the next reads its output)
    panel_gram_kernel<T><<<nb, kThreads, 0, st>>>(yy, y_bstride, y_ld, m, k, g1);
    SL_CUDA_CHECK_LAUNCH("cholqr_panel: panel_gram (pass 1)");
    cholesky_kernel<T><<<nb, kThreads, 0, st>>>(g1, l1, info, k);
    SL_CUDA_CHECK_LAUNCH("cholqr_panel: cholesky (pass 1)");
    tril_inverse_kernel<T><<<nb, kThreads, 0, st>>>(l1, x1, f1, k);
    SL_CUDA_CHECK_LAUNCH("cholqr_panel: tril_inverse (pass 1)");
    panel_pass1_flags_kernel<T><<<flag_blocks, kThreads, 0, st>>>(info, f1, l1, batch, k, cond_max);
    SL_CUDA_CHECK_LAUNCH("cholqr_panel: pass1_flags");
    panel_tts_kernel<T><<<rows, kThreads, 0, st>>>(yy, y_bstride, y_ld, m, k, x1, q1);
    SL_CUDA_CHECK_LAUNCH("cholqr_panel: panel_tts (pass 1)");
    if (mode != 0) {
      panel_gram_kernel<T><<<nb, kThreads, 0, st>>>(q1, m * k, m, m, k, g2);
      SL_CUDA_CHECK_LAUNCH("cholqr_panel: panel_gram (pass 2)");
      cholesky_kernel<T><<<nb, kThreads, 0, st>>>(g2, l2, info, k);
      SL_CUDA_CHECK_LAUNCH("cholqr_panel: cholesky (pass 2)");
      tril_inverse_kernel<T><<<nb, kThreads, 0, st>>>(l2, static_cast<T*>(x), f2, k);
      SL_CUDA_CHECK_LAUNCH("cholqr_panel: tril_inverse (pass 2)");
      panel_pass2_kernel<T><<<nb, kThreads, 0, st>>>(info, f2, g2, l1, l2, static_cast<T*>(l), k, gate);
      SL_CUDA_CHECK_LAUNCH("cholqr_panel: pass2");
      if (mode == 2) {
        panel_tts_kernel<T><<<rows, kThreads, 0, st>>>(q1, m * k, m, m, k, static_cast<T*>(x), static_cast<T*>(q));
        SL_CUDA_CHECK_LAUNCH("cholqr_panel: panel_tts (pass 2)");
      }
    }
    panel_finish_kernel<T><<<nb, kThreads, 0, st>>>(info, f1, f2, mode, static_cast<T*>(q), static_cast<T*>(l),
                                                    static_cast<T*>(x), m, k);
    SL_CUDA_CHECK_LAUNCH("cholqr_panel: finish");
    return Status::ok();
  });
}

}  // namespace sl
