// CSR matrix times a batch of S vectors: y[s, i] = sum_k val[k] x[s, col[k]] for k in
// [crow[i], crow[i+1]). Contract (CPU and CUDA alike): float32/float64 values, int64
// indices; element (s, j) of x at x + s * xs + j * xj, element (s, i) of y at
// y + s * ys + i * yi (strides in elements: rows (xs = n, xj = 1) or interleaved columns
// (xs = 1, xj = S), the layout of several vectors that the CPU kernel reads best);
// accumulation in the value type.
// Indices are trusted (torch checks CSR invariants when asked; Python validates shapes).
#pragma once
#include <cstdint>

#include "sl/exec.h"
#include "sl/status.h"

namespace sl {

struct CsrMatvecArgs {
  std::int64_t m = 0, n = 0, S = 0, nnz = 0;
  std::int64_t xs = 0, xj = 1, ys = 0, yi = 1;
  const std::int64_t* crow = nullptr;
  const std::int64_t* col = nullptr;
  const void* val = nullptr;
  const void* x = nullptr;
  void* y = nullptr;
};

Status csr_matvec_check(int dtype, const CsrMatvecArgs& a);
Status csr_matvec_cpu(int dtype, const CsrMatvecArgs& a);
Status csr_matvec_cuda(int dtype, const CsrMatvecArgs& a, const Exec& exec);

}  // namespace sl
