// Walsh-Hadamard transform (Sylvester order) along rows of a RowsView.
// Contract (CPU and CUDA alike):
//   in: rows of length n = 2^k (any strides), out: same number of rows, contiguous
//   (row r at out + r*n); out may not alias in unless in is itself contiguous and equal.
//   scale multiplies the result (1/sqrt(n) for the orthonormal transform).
//   f16/bf16 are computed in float; f32 in float; f64 in double.
#pragma once
#include <cstdint>

#include "sl/exec.h"
#include "sl/status.h"
#include "sl/views.h"

namespace sl {

// Length of the chunk each thread block (CUDA) or cache block (CPU) transforms locally;
// the stages above it run as separate passes. Depends on the accumulation type only.
inline std::int64_t fwht_local_len(int dtype_code) { return dtype_code == 1 ? 4096 : 8192; }
// Longest n a single native call transforms on CUDA (the Python layer factors longer
// transforms as H_a (x) H_b over two dims). The CPU kernel has no limit.
inline std::int64_t fwht_cuda_max_len(int dtype_code) { return fwht_local_len(dtype_code) * 256; }

Status fwht_cpu(int dtype, const RowsView& in, const RowsView& out, double scale);
Status fwht_cuda(int dtype, const RowsView& in, const RowsView& out, double scale, const Exec& exec);

}  // namespace sl
