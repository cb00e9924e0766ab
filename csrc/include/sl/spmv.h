// CSR matrix times a batch of vectors stored as rows: y[s, i] = sum_k val[k] x[s, col[k]]
// for k in [crow[i], crow[i+1]). Contract (CPU and CUDA alike): float32/float64 values,
// int64 indices, x contiguous (S, n), y contiguous (S, m); accumulation in the value type.
// Indices are trusted (torch checks CSR invariants when asked; Python validates shapes).
#pragma once
#include <cstdint>

#include "sl/exec.h"
#include "sl/status.h"

namespace sl {

struct CsrMatvecArgs {
  std::int64_t m = 0, n = 0, S = 0, nnz = 0;
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
