// CUDA twins of csrc/cpu/sketch.cpp (contract in sl/sketch.h): the same Philox counters,
// so the random operators equal the CPU ones up to the rounding of log/sin/cos; the CSR
// apply gives one thread per output element, summing its entries in the CPU's order.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common.cuh"
#include "sl/cuda_check.h"
#include "sl/dtype.h"
#include "sl/philox.h"
#include "sl/sketch.h"

namespace sl {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void fill_kernel(int kind, std::uint64_t seed, std::uint32_t tag, double scale, Mat3View o) {
  const std::int64_t total = o.R * o.C;
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t i = e / o.C, j = e % o.C;
    static_cast<T*>(o.data)[i * o.sr + j * o.sc] =
        from_acc<T>(static_cast<typename dacc<T>::type>(scale * rand_entry(kind, seed, tag, i, j)));
  }
}

__global__ void sparse_sign_kernel(std::uint64_t seed, std::uint32_t tag, std::int64_t n, std::int64_t s, int zeta,
                                   std::int32_t* codes) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) sparse_sign_column(seed, tag, i, s, zeta, codes + i * zeta);
}

// one thread per output element; `col_mode` makes consecutive threads walk r (coalesced
// when X and Y are contiguous along r) instead of j
template <typename T>
__global__ void apply_kernel(Mat3View x, CsrView a, Mat3View y, bool col_mode) {
  using A = typename dacc<T>::type;
  const std::int64_t total = y.B * y.R * y.C;
  const A* vals = static_cast<const A*>(a.vals);
  for (std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t b, r, j;
    if (col_mode) {
      r = e % y.R;
      j = (e / y.R) % y.C;
      b = e / (y.R * y.C);
    } else {
      j = e % y.C;
      r = (e / y.C) % y.R;
      b = e / (y.R * y.C);
    }
    const T* xs = static_cast<const T*>(x.data) + b * x.sb + r * x.sr;
    A acc = A(0);
    for (std::int64_t p = a.ptr[j]; p < a.ptr[j + 1]; ++p) {
      const std::int64_t c = a.cols[p];
      if (c >= 0 && c < x.C) acc += vals[p] * to_acc(xs[c * x.sc]);
    }
    static_cast<T*>(y.data)[b * y.sb + r * y.sr + j * y.sc] = from_acc<T>(acc);
  }
}

unsigned grid_for(std::int64_t total) {
  std::int64_t g = (total + kThreads - 1) / kThreads;
  if (g > 65535LL * 16) g = 65535LL * 16;
  return static_cast<unsigned>(g < 1 ? 1 : g);
}

}  // namespace

Status random_fill_cuda(int dtype, int kind, std::uint64_t seed, std::uint32_t tag, double scale, const Mat3View& out,
                        const Exec& exec) {
  SL_RETURN_IF_ERROR(check_random_fill(kind, out));
  if (out.R == 0 || out.C == 0) return Status::ok();
  SL_REQUIRE(out.data != nullptr, "random_fill: null data pointer");
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_float<DeviceTypes>(dtype, "random_fill", [&](auto tag_) -> Status {
    using T = decltype(tag_);
    fill_kernel<T><<<grid_for(out.R * out.C), kThreads, 0, stream>>>(kind, seed, tag, scale, out);
    SL_CUDA_CHECK_LAUNCH("fill_kernel");
    return Status::ok();
  });
}

Status sparse_sign_table_cuda(std::uint64_t seed, std::uint32_t tag, std::int64_t n, std::int64_t s, int zeta,
                              std::int32_t* codes, const Exec& exec) {
  SL_RETURN_IF_ERROR(check_sparse_sign(n, s, zeta));
  if (n == 0) return Status::ok();
  SL_REQUIRE(codes != nullptr, "sparse_sign_table: null data pointer");
  SL_CUDA_DEVICE_GUARD(exec);
  const std::int64_t blocks = (n + kThreads - 1) / kThreads;
  SL_REQUIRE(blocks <= 0x7fffffffLL, "sparse_sign_table: n too large for one CUDA launch");
  sparse_sign_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, as_stream(exec.stream)>>>(seed, tag, n, s, zeta,
                                                                                            codes);
  SL_CUDA_CHECK_LAUNCH("sparse_sign_kernel");
  return Status::ok();
}

Status sparse_apply_cuda(int dtype, const Mat3View& x, const CsrView& a, const Mat3View& y, const Exec& exec) {
  SL_RETURN_IF_ERROR(check_sparse_apply(x, a, y));
  if (y.B == 0 || y.R == 0 || y.C == 0) return Status::ok();
  SL_REQUIRE(x.data != nullptr && y.data != nullptr && a.ptr != nullptr, "sparse_apply: null data pointer");
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  const bool col_mode = x.sr == 1 && y.R > 1;
  return dispatch_float<DeviceTypes>(dtype, "sparse_apply", [&](auto tag) -> Status {
    using T = decltype(tag);
    apply_kernel<T><<<grid_for(y.B * y.R * y.C), kThreads, 0, stream>>>(x, a, y, col_mode);
    SL_CUDA_CHECK_LAUNCH("apply_kernel");
    return Status::ok();
  });
}

}  // namespace sl
