// Fused row gather / scatter with an optional per-row scale (Grass-style structured
// sparse projection). Contract (CPU and CUDA alike), element (b, j, c):
//   gather:  out[b, j, c]        = src[b, idx[b, j], c] * scale[b, j]   (or a plain copy)
//   scatter: out[b, idx[b, j], c] += x[b, j, c] * scale[b, j]           (accumulates into out)
// The product is rounded to the storage type T before the sum (what torch's
// G[idx] * s and index_add_ do); f16/bf16 go through float. Indices are int64; an index
// outside [0, rows) is InvalidArgument on the CPU (checked before anything is written) and
// is skipped by the CUDA kernels (the Python layer checks bounds before every call).
// Scatter with repeated indices: the caller passes `order` (B or 1, K), per batch row a
// stable sort permutation of idx (idx[order[.]] non-decreasing, ties in increasing j);
// each run of equal indices is then summed in increasing j in the accumulation type and
// rounded once (bitwise torch's CPU index_add_). order == nullptr promises unique indices.
// Scatter with zero_fill: out's old contents are ignored, out = 0 then the scatter (every
// element of out is written; the fused form of zeros + index_add_ for a fresh output).
#pragma once
#include <cstdint>
#include <string>

#include "sl/exec.h"
#include "sl/status.h"

namespace sl {

// A batch of matrices (B, R, C) with element strides.
struct Mat3View {
  void* data = nullptr;
  std::int64_t B = 1, R = 0, C = 0;
  std::int64_t sb = 0, sr = 0, sc = 1;
};

// Per-batch index rows idx[b * idx_sb + j], j < K (contiguous in j; idx_sb may be 0 to
// share one index row across the batch); the optional scale has the same layout and
// the storage type of the data.
struct RowIndex {
  const std::int64_t* idx = nullptr;
  std::int64_t K = 0, idx_sb = 0;
  const void* scale = nullptr;  // nullptr: no scale
  std::int64_t scale_sb = 0;
};

// Position jj of the scatter's processing order and whether it starts a run of equal
// indices (always, without an order). Shared by the CPU and CUDA kernels.
#if defined(__CUDACC__)
__host__ __device__
#endif
inline bool scatter_run_start(const RowIndex& ix, const std::int64_t* order, std::int64_t b, std::int64_t jj,
                              std::int64_t* j) {
  if (order == nullptr) {
    *j = jj;
    return true;
  }
  const std::int64_t* ob = order + (ix.idx_sb == 0 ? 0 : b * ix.K);
  const std::int64_t* ib = ix.idx + b * ix.idx_sb;
  *j = ob[jj];
  return jj == 0 || ib[ob[jj]] != ib[ob[jj - 1]];
}

// the next j of the run started at jj, or -1
#if defined(__CUDACC__)
__host__ __device__
#endif
inline std::int64_t scatter_run_next(const RowIndex& ix, const std::int64_t* order, std::int64_t b, std::int64_t jj) {
  if (order == nullptr || jj + 1 >= ix.K) return -1;
  const std::int64_t* ob = order + (ix.idx_sb == 0 ? 0 : b * ix.K);
  const std::int64_t* ib = ix.idx + b * ix.idx_sb;
  return ib[ob[jj + 1]] == ib[ob[jj]] ? ob[jj + 1] : -1;
}

Status gather_rows_cpu(int dtype, const Mat3View& src, const RowIndex& ix, const Mat3View& out);
Status gather_rows_cuda(int dtype, const Mat3View& src, const RowIndex& ix, const Mat3View& out, const Exec& exec);
Status scatter_rows_cpu(int dtype, const Mat3View& x, const RowIndex& ix, const std::int64_t* order,
                        const Mat3View& out, bool zero_fill);
Status scatter_rows_cuda(int dtype, const Mat3View& x, const RowIndex& ix, const std::int64_t* order,
                         const Mat3View& out, bool zero_fill, const Exec& exec);

// Host-side index check (idx in host memory, B batch rows unless idx_sb == 0):
// InvalidArgument naming an index outside [0, rows); *increasing says whether every index
// row is strictly increasing (then unique, and a scatter needs no order).
Status check_row_index_cpu(const char* op, const RowIndex& ix, std::int64_t B, std::int64_t rows, bool* increasing);

// Shared argument checks (same messages on both devices).
inline Status check_gather_args(const char* op, const Mat3View& a, const RowIndex& ix, const Mat3View& b) {
  SL_REQUIRE(a.B >= 0 && a.R >= 0 && a.C >= 0 && b.B >= 0 && b.R >= 0 && b.C >= 0 && ix.K >= 0,
             std::string(op) + ": negative extent");
  SL_REQUIRE(a.B == b.B && a.C == b.C, std::string(op) + ": batch or column count mismatch");
  SL_REQUIRE(ix.idx != nullptr || ix.K == 0 || a.B == 0, std::string(op) + ": null index pointer");
  return Status::ok();
}

}  // namespace sl
