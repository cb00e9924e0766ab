// CUDA transposed copy (contract: sl/transpose.h): 32 x 32 tiles through shared memory
// (one column of padding against bank conflicts), 32 x 8 threads, the batch on grid z (in chunks of 65535).
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <string>

#include "common.cuh"
#include "sl/cuda_check.h"
#include "sl/transpose.h"

namespace sl {
namespace {

using i64 = std::int64_t;
constexpr int kTile = 32;
constexpr int kRows = 8;

template <typename U>
__global__ void transpose_kernel(const U* __restrict__ in, U* __restrict__ out, i64 rows, i64 cols, i64 col_tiles) {
  __shared__ U tile[kTile][kTile + 1];
  const i64 b = blockIdx.z;
  const i64 ti = static_cast<i64>(blockIdx.y), tj = static_cast<i64>(blockIdx.x) % col_tiles;
  const i64 extra = static_cast<i64>(blockIdx.x) / col_tiles;  // row tiles beyond gridDim.y
  const i64 i0 = (ti + extra * gridDim.y) * kTile, j0 = tj * kTile;
  const U* src = in + b * rows * cols;
  U* dst = out + b * rows * cols;
  for (int r = threadIdx.y; r < kTile; r += kRows) {
    const i64 i = i0 + r, j = j0 + threadIdx.x;
    if (i < rows && j < cols) tile[r][threadIdx.x] = src[i * cols + j];
  }
  __syncthreads();
  for (int r = threadIdx.y; r < kTile; r += kRows) {
    const i64 j = j0 + r, i = i0 + threadIdx.x;
    if (i < rows && j < cols) dst[j * rows + i] = tile[threadIdx.x][r];
  }
}

template <typename U>
Status launch(const void* in, void* out, i64 batch, i64 rows, i64 cols, const Exec& exec) {
  const i64 row_tiles = (rows + kTile - 1) / kTile, col_tiles = (cols + kTile - 1) / kTile;
  // grid.y holds at most 65535 row tiles; further ones fold into grid.x
  const i64 gy = row_tiles < 65535 ? row_tiles : 65535;
  const i64 fold = (row_tiles + gy - 1) / gy;
  SL_REQUIRE(col_tiles * fold <= INT_MAX, "transpose_copy: matrix too large for the CUDA grid");
  // grid.z holds at most 65535 matrices: larger batches in chunks of that many
  for (i64 b0 = 0; b0 < batch; b0 += 65535) {
    const i64 nb = batch - b0 < 65535 ? batch - b0 : 65535;
    const dim3 grid(static_cast<unsigned>(col_tiles * fold), static_cast<unsigned>(gy), static_cast<unsigned>(nb));
    transpose_kernel<U><<<grid, dim3(kTile, kRows), 0, as_stream(exec.stream)>>>(
        static_cast<const U*>(in) + b0 * rows * cols, static_cast<U*>(out) + b0 * rows * cols, rows, cols, col_tiles);
    SL_CUDA_CHECK_LAUNCH("transpose_copy");
  }
  return Status::ok();
}

}  // namespace

Status transpose_copy_cuda(const void* in, void* out, i64 batch, i64 rows, i64 cols, int elem_size,
                           const Exec& exec) {
  bool empty = false;
  SL_RETURN_IF_ERROR(transpose_copy_check(in, out, batch, rows, cols, elem_size, &empty));
  if (empty) return Status::ok();
  SL_CUDA_DEVICE_GUARD(exec);
  switch (elem_size) {
    case 2: return launch<std::uint16_t>(in, out, batch, rows, cols, exec);
    case 4: return launch<std::uint32_t>(in, out, batch, rows, cols, exec);
    default: return launch<std::uint64_t>(in, out, batch, rows, cols, exec);
  }
}

}  // namespace sl
