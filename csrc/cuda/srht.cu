// CUDA SRHT rows (contract in sl/sketch.h): one block per row of X; the signed, zero
// padded row is transformed in shared memory (radix-2 stages, one barrier each) and the
// sampled coordinates are written. N <= srht_cuda_max_len (48 KB of shared memory at most).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common.cuh"
#include "sl/cuda_check.h"
#include "sl/dtype.h"
#include "sl/sketch.h"

namespace sl {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void srht_kernel(Mat3View x, const typename dacc<T>::type* signs, const std::int64_t* rows,
                            std::int64_t s, int N, Mat3View y) {
  using A = typename dacc<T>::type;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  A* buf = reinterpret_cast<A*>(smem_raw);
  const std::int64_t row = blockIdx.x;
  const std::int64_t b = row / x.R, r = row % x.R;
  const T* xs = static_cast<const T*>(x.data) + b * x.sb + r * x.sr;
  for (int i = threadIdx.x; i < N; i += blockDim.x) buf[i] = i < x.C ? signs[i] * to_acc(xs[i * x.sc]) : A(0);
  __syncthreads();
  for (int h = 1; h < N; h <<= 1) {
    for (int q = threadIdx.x; q < N / 2; q += blockDim.x) {
      const int i = (q / h) * 2 * h + (q % h);
      const A a = buf[i], c = buf[i + h];
      buf[i] = a + c;
      buf[i + h] = a - c;
    }
    __syncthreads();
  }
  T* ys = static_cast<T*>(y.data) + b * y.sb + r * y.sr;
  for (std::int64_t t = threadIdx.x; t < s; t += blockDim.x) {
    const std::int64_t k = rows[t];
    ys[t * y.sc] = from_acc<T>(k >= 0 && k < N ? buf[k] : A(0));
  }
}

}  // namespace

Status srht_cuda(int dtype, const Mat3View& x, const void* signs, const std::int64_t* rows, std::int64_t s,
                 std::int64_t N, const Mat3View& y, const Exec& exec) {
  SL_RETURN_IF_ERROR(check_srht(x, s, N, y));
  SL_REQUIRE(N <= srht_cuda_max_len(dtype),
             "srht: the CUDA kernel takes N <= " + std::to_string(srht_cuda_max_len(dtype)) + ", got " +
                 std::to_string(N));
  if (y.B == 0 || y.R == 0 || s == 0) return Status::ok();
  SL_REQUIRE(x.data != nullptr && y.data != nullptr && signs != nullptr && rows != nullptr, "srht: null data pointer");
  const std::int64_t blocks = x.B * x.R;
  SL_REQUIRE(blocks <= 0x7fffffffLL, "srht: too many rows for one CUDA launch");
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_float<DeviceTypes>(dtype, "srht", [&](auto tag) -> Status {
    using T = decltype(tag);
    using A = typename dacc<T>::type;
    const std::size_t smem = static_cast<std::size_t>(N) * sizeof(A);
    srht_kernel<T><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(
        x, static_cast<const A*>(signs), rows, s, static_cast<int>(N), y);
    SL_CUDA_CHECK_LAUNCH("srht_kernel");
    return Status::ok();
  });
}

}  // namespace sl
