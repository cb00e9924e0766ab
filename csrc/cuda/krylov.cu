// CUDA kernels of the Krylov family (contract in sl/krylov.h; CPU twin csrc/cpu/krylov.cpp).
//  cg_update: n <= kCgUpdateWarpMaxN: one warp per system (8 systems per 256-thread block),
//    the warp's lanes stride over the row and reduce r.r with shuffles; larger n: one
//    block per chunk of kCgUpdateChunk elements writes a partial sum to the workspace and a
//    second kernel (one warp per system) adds the partials in a fixed order.
//  cg_dense: a persistent kernel, one block per system, the whole CG loop inside the block:
//    x, r, p, Ap, z in shared memory, Ap = A p with one warp per row (coalesced reads of
//    A), dot products by block reductions whose result every thread reads, so control flow
//    stays uniform. Convergence is decided on the device; the host never synchronizes.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "common.cuh"
#include "sl/cuda_check.h"
#include "sl/dtype.h"
#include "sl/krylov.h"

namespace sl {
namespace {

using dev::block_sum;
using dev::warp_sum;

template <typename T>
__global__ void cg_update_warp_kernel(std::int64_t S, std::int64_t n, T* __restrict__ x, T* __restrict__ r,
                                      T* __restrict__ rr, const T* __restrict__ p, const T* __restrict__ Ap,
                                      const T* __restrict__ alpha, const std::uint8_t* __restrict__ active) {
  const int lane = threadIdx.x & 31;
  const std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (s >= S || !active[s]) return;  // whole warps leave together
  const T a = alpha[s];
  const std::int64_t off = s * n;
  T acc = T(0);
  for (std::int64_t j = lane; j < n; j += 32) {
    x[off + j] += a * p[off + j];
    const T rj = r[off + j] - a * Ap[off + j];
    r[off + j] = rj;
    acc += rj * rj;
  }
  acc = warp_sum(acc);
  if (lane == 0) rr[s] = acc;
}

template <typename T>
__global__ void cg_update_chunk_kernel(std::int64_t S, std::int64_t n, std::int64_t chunks, T* __restrict__ x,
                                       T* __restrict__ r, const T* __restrict__ p, const T* __restrict__ Ap,
                                       const T* __restrict__ alpha, const std::uint8_t* __restrict__ active,
                                       T* __restrict__ partial) {
  __shared__ T red[32];
  const std::int64_t s = blockIdx.x / chunks;
  const std::int64_t c = blockIdx.x % chunks;
  if (s >= S || !active[s]) return;  // uniform over the block
  const T a = alpha[s];
  const std::int64_t off = s * n;
  const std::int64_t lo = c * kCgUpdateChunk;
  const std::int64_t hi = lo + kCgUpdateChunk < n ? lo + kCgUpdateChunk : n;
  T acc = T(0);
  for (std::int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
    x[off + j] += a * p[off + j];
    const T rj = r[off + j] - a * Ap[off + j];
    r[off + j] = rj;
    acc += rj * rj;
  }
  acc = warp_sum(acc);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    T t = T(0);
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) t += red[w];
    partial[s * chunks + c] = t;
  }
}

template <typename T>
__global__ void cg_update_finish_kernel(std::int64_t S, std::int64_t chunks, const T* __restrict__ partial,
                                        T* __restrict__ rr, const std::uint8_t* __restrict__ active) {
  const int lane = threadIdx.x & 31;
  const std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (s >= S || !active[s]) return;
  T acc = T(0);
  for (std::int64_t c = lane; c < chunks; c += 32) acc += partial[s * chunks + c];
  acc = warp_sum(acc);
  if (lane == 0) rr[s] = acc;
}


template <typename T>
__device__ __forceinline__ void block_matvec(const T* __restrict__ A, const T* v, T* out, int n) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int i = warp; i < n; i += nw) {
    const T* row = A + static_cast<std::int64_t>(i) * n;
    T acc = T(0);
    for (int j = lane; j < n; j += 32) acc += row[j] * v[j];
    acc = warp_sum(acc);
    if (lane == 0) out[i] = acc;
  }
}

// 16-byte vector of T: rows of A and the vector p read with one 16-byte load per lane
template <typename T> struct vec16;
template <> struct vec16<float> { using type = float4; static constexpr int N = 4; };
template <> struct vec16<double> { using type = double2; static constexpr int N = 2; };

// out = A v with 16-byte loads; needs n % N == 0, A and v 16-byte aligned (the launcher checks)
template <typename T>
__device__ __forceinline__ void block_matvec_vec(const T* __restrict__ A, const T* v, T* out, int n) {
  using V = typename vec16<T>::type;
  constexpr int N = vec16<T>::N;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  const int nv = n / N;
  const V* vv = reinterpret_cast<const V*>(v);
  for (int i = warp; i < n; i += nw) {
    const V* row = reinterpret_cast<const V*>(A + static_cast<std::int64_t>(i) * n);
    T acc = T(0);
    for (int j = lane; j < nv; j += 32) {
      const V a = row[j];
      const V b = vv[j];
      const T* ae = reinterpret_cast<const T*>(&a);
      const T* be = reinterpret_cast<const T*>(&b);
#pragma unroll
      for (int k = 0; k < N; ++k) acc += ae[k] * be[k];
    }
    acc = warp_sum(acc);
    if (lane == 0) out[i] = acc;
  }
}

template <typename T>
__device__ __forceinline__ void dense_matvec(const T* __restrict__ A, const T* v, T* out, int n, bool vec) {
  if (vec) {
    block_matvec_vec(A, v, out, n);
  } else {
    block_matvec(A, v, out, n);
  }
}

template <typename T>
__device__ __forceinline__ bool finite_pos(T v) {
  return v > T(0) && isfinite(v);
}

template <typename T>
__global__ void cg_dense_kernel(CgDenseArgs a, bool vec) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sh = reinterpret_cast<T*>(smem_raw);
  const int n = static_cast<int>(a.n);
  T* x = sh;
  T* r = x + n;
  T* p = r + n;
  T* q = p + n;
  T* zb = q + n;
  T* red = zb + n;  // 32 slots
  const std::int64_t s = blockIdx.x;
  const T* A = static_cast<const T*>(a.A) + (s / a.a_group) * a.a_stride;
  const T* b = static_cast<const T*>(a.b) + s * a.n;
  T* xg = static_cast<T*>(a.x) + s * a.n;
  const T* ms = a.minv ? static_cast<const T*>(a.minv) + s * a.n : nullptr;
  T* z = ms ? zb : r;
  const T tol = static_cast<const T*>(a.tol)[s];
  const T tol2 = tol * tol;

  for (int i = threadIdx.x; i < n; i += blockDim.x) x[i] = xg[i];
  __syncthreads();
  dense_matvec(A, x, q, n, vec);
  __syncthreads();
  T prr = T(0), prz = T(0);
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const T ri = b[i] - q[i];
    r[i] = ri;
    const T zi = ms ? ri * ms[i] : ri;
    if (ms) zb[i] = zi;
    p[i] = zi;
    prr += ri * ri;
    prz += ri * zi;
  }
  T rr = block_sum(prr, red);
  T rz = ms ? block_sum(prz, red) : rr;
  int st = kCgRunning;
  std::int64_t it = 0;
  if (rr <= tol2) {
    st = kCgConverged;
  } else if (!finite_pos(rz)) {
    st = kCgBreakdown;
  }
  while (st == kCgRunning && it < a.maxiter) {
    __syncthreads();  // p complete
    dense_matvec(A, p, q, n, vec);
    __syncthreads();
    T ppq = T(0);
    for (int i = threadIdx.x; i < n; i += blockDim.x) ppq += p[i] * q[i];
    const T pq = block_sum(ppq, red);
    if (!finite_pos(pq)) {
      st = kCgBreakdown;
      break;
    }
    const T alpha = rz / pq;
    T pr = T(0);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      x[i] += alpha * p[i];
      const T ri = r[i] - alpha * q[i];
      r[i] = ri;
      pr += ri * ri;
    }
    rr = block_sum(pr, red);
    ++it;
    if (rr <= tol2) {
      st = kCgConverged;
      break;
    }
    if (!isfinite(rr)) {
      st = kCgBreakdown;
      break;
    }
    T rz_new = rr;
    if (ms) {
      T pz = T(0);
      for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const T zi = r[i] * ms[i];
        zb[i] = zi;
        pz += r[i] * zi;
      }
      rz_new = block_sum(pz, red);
    }
    if (!(rz_new > T(0))) {
      st = kCgBreakdown;
      break;
    }
    const T beta = rz_new / rz;
    rz = rz_new;
    for (int i = threadIdx.x; i < n; i += blockDim.x) p[i] = z[i] + beta * p[i];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) xg[i] = x[i];
  if (threadIdx.x == 0) {
    a.iters[s] = static_cast<std::int32_t>(it);
    static_cast<T*>(a.res)[s] = sqrt(rr > T(0) ? rr : T(0));
    a.status[s] = st;
  }
}


// ---- cg_step ---------------------------------------------------------------------------
template <typename T>
__device__ __forceinline__ bool finite_pos_(T v) {
  return v > T(0) && isfinite(v);
}

template <typename T>
__global__ void cg_step_warp_kernel(CgStepArgs a) {
  const int lane = threadIdx.x & 31;
  const std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (s >= a.S || a.status[s] != kCgRunning) return;  // whole warps leave together
  const std::int64_t n = a.n, off = s * n;
  T* x = static_cast<T*>(a.x) + off;
  T* r = static_cast<T*>(a.r) + off;
  const T* p = static_cast<const T*>(a.p) + off;
  const T* q = static_cast<const T*>(a.Ap) + off;
  T pq = T(0);
  for (std::int64_t j = lane; j < n; j += 32) pq += p[j] * q[j];
  pq = warp_sum(pq);  // every lane holds the sum
  if (!finite_pos_(pq)) {
    if (lane == 0) a.status[s] = kCgBreakdown;
    return;
  }
  const T alpha = static_cast<const T*>(a.rz)[s] / pq;
  T acc = T(0);
  for (std::int64_t j = lane; j < n; j += 32) {
    x[j] += alpha * p[j];
    const T rj = r[j] - alpha * q[j];
    r[j] = rj;
    acc += rj * rj;
  }
  acc = warp_sum(acc);
  if (lane == 0) {
    static_cast<T*>(a.rr)[s] = acc;
    a.iters[s] += 1;
    if (acc <= static_cast<const T*>(a.tol2)[s]) {
      a.status[s] = kCgConverged;
    } else if (!isfinite(acc)) {
      a.status[s] = kCgBreakdown;
    }
  }
}

// long rows, pass 1: partial p.Ap per chunk
template <typename T>
__global__ void cg_step_dot_kernel(CgStepArgs a, std::int64_t chunks, T* __restrict__ partial) {
  __shared__ T red[32];
  const std::int64_t s = blockIdx.x / chunks, c = blockIdx.x % chunks;
  if (s >= a.S || a.status[s] != kCgRunning) return;
  const std::int64_t off = s * a.n, lo = c * kCgUpdateChunk;
  const std::int64_t hi = lo + kCgUpdateChunk < a.n ? lo + kCgUpdateChunk : a.n;
  const T* p = static_cast<const T*>(a.p) + off;
  const T* q = static_cast<const T*>(a.Ap) + off;
  T acc = T(0);
  for (std::int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) acc += p[j] * q[j];
  acc = warp_sum(acc);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    T t = T(0);
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) t += red[w];
    partial[s * chunks + c] = t;
  }
}

// long rows, pass 2: alpha per system (or breakdown), one warp per system
template <typename T>
__global__ void cg_step_alpha_kernel(CgStepArgs a, std::int64_t chunks, const T* __restrict__ partial,
                                     T* __restrict__ alpha) {
  const int lane = threadIdx.x & 31;
  const std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (s >= a.S || a.status[s] != kCgRunning) return;
  T acc = T(0);
  for (std::int64_t c = lane; c < chunks; c += 32) acc += partial[s * chunks + c];
  acc = warp_sum(acc);
  if (lane == 0) {
    if (!finite_pos_(acc)) {
      a.status[s] = kCgBreakdown;
    } else {
      alpha[s] = static_cast<const T*>(a.rz)[s] / acc;
    }
  }
}

// long rows, pass 3: the update and partial r.r per chunk
template <typename T>
__global__ void cg_step_update_kernel(CgStepArgs a, std::int64_t chunks, const T* __restrict__ alpha,
                                      T* __restrict__ partial) {
  __shared__ T red[32];
  const std::int64_t s = blockIdx.x / chunks, c = blockIdx.x % chunks;
  if (s >= a.S || a.status[s] != kCgRunning) return;
  const std::int64_t off = s * a.n, lo = c * kCgUpdateChunk;
  const std::int64_t hi = lo + kCgUpdateChunk < a.n ? lo + kCgUpdateChunk : a.n;
  T* x = static_cast<T*>(a.x) + off;
  T* r = static_cast<T*>(a.r) + off;
  const T* p = static_cast<const T*>(a.p) + off;
  const T* q = static_cast<const T*>(a.Ap) + off;
  const T al = alpha[s];
  T acc = T(0);
  for (std::int64_t j = lo + threadIdx.x; j < hi; j += blockDim.x) {
    x[j] += al * p[j];
    const T rj = r[j] - al * q[j];
    r[j] = rj;
    acc += rj * rj;
  }
  acc = warp_sum(acc);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    T t = T(0);
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) t += red[w];
    partial[s * chunks + c] = t;
  }
}

// long rows, pass 4: r.r, iteration count and status, one warp per system
template <typename T>
__global__ void cg_step_finish_kernel(CgStepArgs a, std::int64_t chunks, const T* __restrict__ partial) {
  const int lane = threadIdx.x & 31;
  const std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
  if (s >= a.S || a.status[s] != kCgRunning) return;
  T acc = T(0);
  for (std::int64_t c = lane; c < chunks; c += 32) acc += partial[s * chunks + c];
  acc = warp_sum(acc);
  if (lane == 0) {
    static_cast<T*>(a.rr)[s] = acc;
    a.iters[s] += 1;
    if (acc <= static_cast<const T*>(a.tol2)[s]) {
      a.status[s] = kCgConverged;
    } else if (!isfinite(acc)) {
      a.status[s] = kCgBreakdown;
    }
  }
}

// ---- cg_direction ----------------------------------------------------------------------
// per system: beta (or breakdown), rz <- rz_new
template <typename T>
__global__ void cg_direction_beta_kernel(CgDirectionArgs a, T* __restrict__ beta) {
  const std::int64_t s = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (s >= a.S || a.status[s] != kCgRunning) return;
  const T rzn = static_cast<const T*>(a.rz_new)[s];
  T* rz = static_cast<T*>(a.rz);
  if (!finite_pos_(rzn)) {
    a.status[s] = kCgBreakdown;
    return;
  }
  beta[s] = rzn / rz[s];
  rz[s] = rzn;
}

// p = z + beta p over all elements of running systems
template <typename T>
__global__ void cg_direction_update_kernel(CgDirectionArgs a, const T* __restrict__ beta) {
  const std::int64_t total = a.S * a.n;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  T* p = static_cast<T*>(a.p);
  const T* z = static_cast<const T*>(a.z);
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const std::int64_t s = i / a.n;
    if (a.status[s] != kCgRunning) continue;
    p[i] = z[i] + beta[s] * p[i];
  }
}

constexpr int kThreads = 256;

}  // namespace

Status cg_update_cuda(int dtype, std::int64_t S, std::int64_t n, void* x, void* r, void* rr, const void* p,
                      const void* Ap, const void* alpha, const std::uint8_t* active, void* ws, std::size_t ws_bytes,
                      const Exec& exec) {
  SL_RETURN_IF_ERROR(cg_update_check(dtype, S, n, x, r, rr, p, Ap, alpha, active));
  if (S == 0) return Status::ok();  // (n == 0 still launches: the warp kernel writes rr = 0)
  const std::size_t need = cg_update_workspace_bytes(dtype, S, n, true);
  SL_REQUIRE(ws_bytes >= need && (need == 0 || ws != nullptr),
             "cg_update: workspace of " + std::to_string(need) + " bytes needed, got " + std::to_string(ws_bytes));
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_real<DeviceTypes>(dtype, "cg_update", [&](auto tag) -> Status {
    using T = decltype(tag);
    const std::int64_t per_block = kThreads / 32;
    const std::int64_t warp_blocks = (S + per_block - 1) / per_block;
    SL_REQUIRE(warp_blocks <= 0x7fffffffLL, "cg_update: too many systems for one CUDA launch");
    if (n <= kCgUpdateWarpMaxN) {
      cg_update_warp_kernel<T><<<static_cast<unsigned>(warp_blocks), kThreads, 0, stream>>>(
          S, n, static_cast<T*>(x), static_cast<T*>(r), static_cast<T*>(rr), static_cast<const T*>(p),
          static_cast<const T*>(Ap), static_cast<const T*>(alpha), active);
      SL_CUDA_CHECK_LAUNCH("cg_update_warp_kernel");
      return Status::ok();
    }
    const std::int64_t chunks = (n + kCgUpdateChunk - 1) / kCgUpdateChunk;
    SL_REQUIRE(S * chunks <= 0x7fffffffLL, "cg_update: too many chunks for one CUDA launch");
    T* partial = static_cast<T*>(ws);
    cg_update_chunk_kernel<T><<<static_cast<unsigned>(S * chunks), kThreads, 0, stream>>>(
        S, n, chunks, static_cast<T*>(x), static_cast<T*>(r), static_cast<const T*>(p), static_cast<const T*>(Ap),
        static_cast<const T*>(alpha), active, partial);
    SL_CUDA_CHECK_LAUNCH("cg_update_chunk_kernel");
    cg_update_finish_kernel<T><<<static_cast<unsigned>(warp_blocks), kThreads, 0, stream>>>(
        S, chunks, partial, static_cast<T*>(rr), active);
    SL_CUDA_CHECK_LAUNCH("cg_update_finish_kernel");
    return Status::ok();
  });
}

Status cg_step_cuda(int dtype, const CgStepArgs& a, void* ws, std::size_t ws_bytes, const Exec& exec) {
  SL_RETURN_IF_ERROR(cg_step_check(dtype, a));
  if (a.S == 0) return Status::ok();
  const std::size_t need = cg_step_workspace_bytes(dtype, a.S, a.n, true);
  SL_REQUIRE(ws_bytes >= need && (need == 0 || ws != nullptr),
             "cg_step: workspace of " + std::to_string(need) + " bytes needed, got " + std::to_string(ws_bytes));
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_real<DeviceTypes>(dtype, "cg_step", [&](auto tag) -> Status {
    using T = decltype(tag);
    const std::int64_t per_block = kThreads / 32;
    const std::int64_t warp_blocks = (a.S + per_block - 1) / per_block;
    SL_REQUIRE(warp_blocks <= 0x7fffffffLL, "cg_step: too many systems for one CUDA launch");
    if (a.n <= kCgUpdateWarpMaxN) {
      cg_step_warp_kernel<T><<<static_cast<unsigned>(warp_blocks), kThreads, 0, stream>>>(a);
      SL_CUDA_CHECK_LAUNCH("cg_step_warp_kernel");
      return Status::ok();
    }
    const std::int64_t chunks = (a.n + kCgUpdateChunk - 1) / kCgUpdateChunk;
    SL_REQUIRE(a.S * chunks <= 0x7fffffffLL, "cg_step: too many chunks for one CUDA launch");
    T* partial = static_cast<T*>(ws);
    T* alpha = partial + a.S * chunks;
    const unsigned cblocks = static_cast<unsigned>(a.S * chunks);
    cg_step_dot_kernel<T><<<cblocks, kThreads, 0, stream>>>(a, chunks, partial);
    SL_CUDA_CHECK_LAUNCH("cg_step_dot_kernel");
    cg_step_alpha_kernel<T><<<static_cast<unsigned>(warp_blocks), kThreads, 0, stream>>>(a, chunks, partial, alpha);
    SL_CUDA_CHECK_LAUNCH("cg_step_alpha_kernel");
    cg_step_update_kernel<T><<<cblocks, kThreads, 0, stream>>>(a, chunks, alpha, partial);
    SL_CUDA_CHECK_LAUNCH("cg_step_update_kernel");
    cg_step_finish_kernel<T><<<static_cast<unsigned>(warp_blocks), kThreads, 0, stream>>>(a, chunks, partial);
    SL_CUDA_CHECK_LAUNCH("cg_step_finish_kernel");
    return Status::ok();
  });
}

Status cg_direction_cuda(int dtype, const CgDirectionArgs& a, void* ws, std::size_t ws_bytes, const Exec& exec) {
  SL_RETURN_IF_ERROR(cg_direction_check(dtype, a));
  if (a.S == 0) return Status::ok();
  const std::size_t need = cg_direction_workspace_bytes(dtype, a.S, true);
  SL_REQUIRE(ws_bytes >= need && ws != nullptr,
             "cg_direction: workspace of " + std::to_string(need) + " bytes needed, got " + std::to_string(ws_bytes));
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_real<DeviceTypes>(dtype, "cg_direction", [&](auto tag) -> Status {
    using T = decltype(tag);
    T* beta = static_cast<T*>(ws);
    const std::int64_t bblocks = (a.S + kThreads - 1) / kThreads;
    SL_REQUIRE(bblocks <= 0x7fffffffLL, "cg_direction: too many systems for one CUDA launch");
    cg_direction_beta_kernel<T><<<static_cast<unsigned>(bblocks), kThreads, 0, stream>>>(a, beta);
    SL_CUDA_CHECK_LAUNCH("cg_direction_beta_kernel");
    const std::int64_t total = a.S * a.n;
    if (total == 0) return Status::ok();
    std::int64_t blocks = (total + kThreads - 1) / kThreads;
    if (blocks > 65535LL * 16) blocks = 65535LL * 16;  // grid-stride beyond this
    cg_direction_update_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(a, beta);
    SL_CUDA_CHECK_LAUNCH("cg_direction_update_kernel");
    return Status::ok();
  });
}

Status cg_dense_cuda(int dtype, const CgDenseArgs& a, const Exec& exec) {
  SL_RETURN_IF_ERROR(cg_dense_check(dtype, a, kCgDenseCudaMaxN));
  if (a.S == 0) return Status::ok();
  SL_REQUIRE(a.S <= 0x7fffffffLL, "cg_dense: too many systems for one CUDA launch");
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_real<DeviceTypes>(dtype, "cg_dense", [&](auto tag) -> Status {
    using T = decltype(tag);
    int threads = static_cast<int>((a.n + 31) / 32) * 32;
    if (threads < 32) threads = 32;
    if (threads > kThreads) threads = kThreads;
    const std::size_t smem = static_cast<std::size_t>(5 * a.n + 32) * sizeof(T);
    if (smem > 48 * 1024) {
      SL_CUDA_TRY(cudaFuncSetAttribute(cg_dense_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       static_cast<int>(smem)));
    }
    // 16-byte loads when every row and the shared vectors (offsets k n) stay 16-byte aligned
    constexpr int N = vec16<T>::N;
    const bool vec = a.n % N == 0 && aligned16(a.A) && (a.a_stride % N) == 0;
    cg_dense_kernel<T><<<static_cast<unsigned>(a.S), threads, smem, stream>>>(a, vec);
    SL_CUDA_CHECK_LAUNCH("cg_dense_kernel");
    return Status::ok();
  });
}

}  // namespace sl
