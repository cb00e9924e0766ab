// CUDA twins of csrc/cpu/select.cpp: same contract (see sl/select.h). One block per
// gathered row (threads over columns); scatters one block per run of equal indices,
// summed in increasing j in the accumulation type (no atomics: deterministic, equal to
// the CPU result). Out-of-range indices are skipped (Python checks them first).
// Products and sums are rounded separately (__fmul_rn/__fadd_rn: no FMA contraction), as
// on the CPU and in torch.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common.cuh"
#include "sl/cuda_check.h"
#include "sl/dtype.h"
#include "sl/select.h"

namespace sl {
namespace {

__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }

// x * s rounded to T, widened to the accumulation type
template <typename T>
__device__ __forceinline__ typename dacc<T>::type scaled(const T* x, const T* s) {
  if (s == nullptr) return to_acc(*x);
  return to_acc(from_acc<T>(mul_rn(to_acc(*x), to_acc(*s))));
}

template <typename T>
__global__ void gather_kernel(Mat3View src, RowIndex ix, Mat3View out) {
  const std::int64_t row = blockIdx.x;  // b * K + j
  const std::int64_t b = row / ix.K, j = row % ix.K;
  const std::int64_t r = ix.idx[b * ix.idx_sb + j];
  const T* x = static_cast<const T*>(src.data) + b * src.sb + r * src.sr;
  T* y = static_cast<T*>(out.data) + b * out.sb + j * out.sr;
  const T* s = ix.scale ? static_cast<const T*>(ix.scale) + b * ix.scale_sb + j : nullptr;
  const bool ok = r >= 0 && r < src.R;
  for (std::int64_t c = threadIdx.x; c < src.C; c += blockDim.x) {
    if (ok && !s) {
      y[c * out.sc] = x[c * src.sc];  // unscaled: the bits themselves (no round trip through float: NaN payloads kept)
    } else {
      y[c * out.sc] = ok ? from_acc<T>(scaled(x + c * src.sc, s)) : from_acc<T>(typename dacc<T>::type(0));
    }
  }
}

// one block per (batch, position jj of the processing order); blocks that do not start a
// run of equal indices exit; the others sum their run per column in increasing j
template <typename T>
__global__ void scatter_kernel(Mat3View x, RowIndex ix, const std::int64_t* order, Mat3View out) {
  using A = typename dacc<T>::type;
  const std::int64_t b = blockIdx.x / ix.K, jj = blockIdx.x % ix.K;
  std::int64_t j0;
  if (!scatter_run_start(ix, order, b, jj, &j0)) return;
  const std::int64_t r = ix.idx[b * ix.idx_sb + j0];
  if (r < 0 || r >= out.R) return;
  T* y = static_cast<T*>(out.data) + b * out.sb + r * out.sr;
  const T* sc = static_cast<const T*>(ix.scale);
  for (std::int64_t c = threadIdx.x; c < x.C; c += blockDim.x) {
    A acc = to_acc(y[c * out.sc]);
    std::int64_t j = j0, pos = jj;
    while (j >= 0) {
      const T* s = sc ? sc + b * ix.scale_sb + j : nullptr;
      acc = add_rn(acc, scaled(static_cast<const T*>(x.data) + b * x.sb + j * x.sr + c * x.sc, s));
      j = scatter_run_next(ix, order, b, pos);
      ++pos;
    }
    y[c * out.sc] = from_acc<T>(acc);
  }
}

// plain row copy through 16-byte words: rows contiguous, 16-byte aligned (checked by the
// launcher), no scale; out-of-range rows are zero-filled
__global__ void gather_vec_kernel(Mat3View src, RowIndex ix, Mat3View out, std::int64_t esize) {
  const std::int64_t row = blockIdx.x;
  const std::int64_t b = row / ix.K, j = row % ix.K;
  const std::int64_t r = ix.idx[b * ix.idx_sb + j];
  const std::int64_t words = src.C * esize / 16;
  uint4* y = reinterpret_cast<uint4*>(static_cast<char*>(out.data) + (b * out.sb + j * out.sr) * esize);
  if (r < 0 || r >= src.R) {
    for (std::int64_t w = threadIdx.x; w < words; w += blockDim.x) y[w] = make_uint4(0u, 0u, 0u, 0u);
    return;
  }
  const uint4* x = reinterpret_cast<const uint4*>(static_cast<const char*>(src.data) + (b * src.sb + r * src.sr) * esize);
  for (std::int64_t w = threadIdx.x; w < words; w += blockDim.x) y[w] = x[w];
}

// zero_fill of a strided (B, R, C) view that is not one dense block
template <typename T>
__global__ void zero_kernel(Mat3View out) {
  const std::int64_t n = out.B * out.R * out.C;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t c = e % out.C, br = e / out.C, r = br % out.R, b = br / out.R;
    static_cast<T*>(out.data)[b * out.sb + r * out.sr + c * out.sc] = from_acc<T>(typename dacc<T>::type(0));
  }
}

constexpr int kThreads = 256;

bool vec_ok(const Mat3View& v, std::int64_t esize) {
  return v.sc == 1 && aligned16(v.data) && (v.C * esize) % 16 == 0 && (v.sr * esize) % 16 == 0 &&
         (v.sb * esize) % 16 == 0;
}

}  // namespace

Status gather_rows_cuda(int dtype, const Mat3View& src, const RowIndex& ix, const Mat3View& out, const Exec& exec) {
  SL_RETURN_IF_ERROR(check_gather_args("gather_rows", src, ix, out));
  SL_REQUIRE(out.R == ix.K, "gather_rows: output rows must equal the index count");
  if (src.B == 0 || ix.K == 0 || src.C == 0) return Status::ok();
  SL_REQUIRE(src.data != nullptr && out.data != nullptr, "gather_rows: null data pointer");
  const std::int64_t blocks = src.B * ix.K;
  SL_REQUIRE(blocks <= 0x7fffffffLL, "gather_rows: too many rows for one CUDA launch");
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_float<DeviceTypes>(dtype, "gather_rows", [&](auto tag) -> Status {
    using T = decltype(tag);
    const std::int64_t es = static_cast<std::int64_t>(sizeof(T));
    if (ix.scale == nullptr && vec_ok(src, es) && vec_ok(out, es)) {
      gather_vec_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(src, ix, out, es);
      SL_CUDA_CHECK_LAUNCH("gather_vec_kernel");
      return Status::ok();
    }
    gather_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(src, ix, out);
    SL_CUDA_CHECK_LAUNCH("gather_kernel");
    return Status::ok();
  });
}

Status scatter_rows_cuda(int dtype, const Mat3View& x, const RowIndex& ix, const std::int64_t* order,
                         const Mat3View& out, bool zero_fill, const Exec& exec) {
  SL_RETURN_IF_ERROR(check_gather_args("scatter_rows", x, ix, out));
  SL_REQUIRE(x.R == ix.K, "scatter_rows: input rows must equal the index count");
  if (out.B == 0 || out.R == 0 || out.C == 0) return Status::ok();
  if (!zero_fill && ix.K == 0) return Status::ok();
  SL_REQUIRE(out.data != nullptr && (x.data != nullptr || ix.K == 0), "scatter_rows: null data pointer");
  SL_REQUIRE(x.B * ix.K <= 0x7fffffffLL, "scatter_rows: too many rows for one CUDA launch");
  SL_CUDA_DEVICE_GUARD(exec);
  const cudaStream_t stream = as_stream(exec.stream);
  return dispatch_float<DeviceTypes>(dtype, "scatter_rows", [&](auto tag) -> Status {
    using T = decltype(tag);
    if (zero_fill) {
      if (out.sc == 1 && out.sr == out.C && out.sb == out.R * out.C) {
        SL_CUDA_TRY(cudaMemsetAsync(out.data, 0, static_cast<std::size_t>(out.B * out.R * out.C) * sizeof(T), stream));
      } else {
        const std::int64_t n = out.B * out.R * out.C;
        const std::int64_t want = (n + kThreads - 1) / kThreads;
        const unsigned blocks = static_cast<unsigned>(want < 65535 ? want : 65535);
        zero_kernel<T><<<blocks, kThreads, 0, stream>>>(out);
        SL_CUDA_CHECK_LAUNCH("zero_kernel");
      }
      if (ix.K == 0) return Status::ok();
    }
    scatter_kernel<T><<<static_cast<unsigned>(x.B * ix.K), kThreads, 0, stream>>>(x, ix, order, out);
    SL_CUDA_CHECK_LAUNCH("scatter_kernel");
    return Status::ok();
  });
}

}  // namespace sl
