// CUDA CSR times rows of vectors (contract in sl/spmv.h; CPU twin csrc/cpu/spmv.cpp):
// short rows (mean nnz per row <= 8): one thread per (vector, row); longer rows: one warp
// per (vector, row), lanes over the row's nonzeros, shuffle reduction.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "common.cuh"
#include "sl/cuda_check.h"
#include "sl/dtype.h"
#include "sl/spmv.h"

namespace sl {
namespace {

template <typename T>
__global__ void csr_thread_kernel(CsrMatvecArgs a) {
  const std::int64_t total = a.S * a.m;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const T* val = static_cast<const T*>(a.val);
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; t < total; t += stride) {
    const std::int64_t s = t / a.m, i = t % a.m;
    const T* xv = x + s * a.xs;
    T acc = T(0);
    for (std::int64_t k = a.crow[i]; k < a.crow[i + 1]; ++k) acc += val[k] * xv[a.col[k] * a.xj];
    y[s * a.ys + i * a.yi] = acc;
  }
}

template <typename T>
__global__ void csr_warp_kernel(CsrMatvecArgs a) {
  const int lane = threadIdx.x & 31;
  const std::int64_t total = a.S * a.m;
  const std::int64_t wstride = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  const T* val = static_cast<const T*>(a.val);
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  for (std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; t < total;
       t += wstride) {
    const std::int64_t s = t / a.m, i = t % a.m;
    const T* xv = x + s * a.xs;
    T acc = T(0);
    for (std::int64_t k = a.crow[i] + lane; k < a.crow[i + 1]; k += 32) acc += val[k] * xv[a.col[k] * a.xj];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (lane == 0) y[s * a.ys + i * a.yi] = acc;
  }
}

constexpr int kThreads = 256;
constexpr std::int64_t kMaxBlocks = 65535LL * 16;

}  // namespace

Status csr_matvec_cuda(int dtype, const CsrMatvecArgs& a, const Exec& exec) {
  SL_RETURN_IF_ERROR(csr_matvec_check(dtype, a));
  if (a.m == 0 || a.S == 0) return Status::ok();
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_float<DeviceTypes>(dtype, "csr_matvec", [&](auto tag) -> Status {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      const std::int64_t total = a.S * a.m;
      if (a.nnz <= 8 * a.m) {
        std::int64_t blocks = (total + kThreads - 1) / kThreads;
        if (blocks > kMaxBlocks) blocks = kMaxBlocks;
        csr_thread_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(a);
        SL_CUDA_CHECK_LAUNCH("csr_thread_kernel");
      } else {
        std::int64_t blocks = (total + kThreads / 32 - 1) / (kThreads / 32);
        if (blocks > kMaxBlocks) blocks = kMaxBlocks;
        csr_warp_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(a);
        SL_CUDA_CHECK_LAUNCH("csr_warp_kernel");
      }
      return Status::ok();
    } else {
      return not_supported("csr_matvec: float16/bfloat16 are not supported");
    }
  });
}

}  // namespace sl
