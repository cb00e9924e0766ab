// One CSR row of a sparse matrix times W interleaved columns: out[0..W) = sum over
// p in [lo, hi) of vals[p] * base[cols[p] * stride + 0..W). Shared by the CPU kernels that
// apply a CSR matrix to interleaved vectors (csr_matvec, sparse_apply). The accumulators
// are GCC/Clang vector values (a zmm register for 16 floats under AVX-512, split by the
// compiler elsewhere): with a plain array GCC kept them in memory, a load and a store per
// nonzero (4x slower at 16 vectors, measured on an AMD EPYC). Two chains, so that the
// loads overlap instead of waiting on one FMA chain; a fixed order of the sum.
#pragma once
#include <cstdint>
#include <cstring>

#include "sl/isa.h"

namespace sl {

template <int W, typename T>
SL_ALWAYS_INLINE inline void csr_gather(std::int64_t lo, std::int64_t hi, const std::int64_t* __restrict cols,
                                        const T* __restrict vals, const T* __restrict base, std::int64_t stride,
                                        T* __restrict out) {
  typedef T vec __attribute__((vector_size(W * sizeof(T))));
  vec acc0 = {}, acc1 = {};
  std::int64_t p = lo;
  for (; p + 1 < hi; p += 2) {
    vec x0, x1;
    std::memcpy(&x0, base + cols[p] * stride, sizeof(vec));
    std::memcpy(&x1, base + cols[p + 1] * stride, sizeof(vec));
    acc0 += vals[p] * x0;
    acc1 += vals[p + 1] * x1;
  }
  if (p < hi) {
    vec x0;
    std::memcpy(&x0, base + cols[p] * stride, sizeof(vec));
    acc0 += vals[p] * x0;
  }
  acc0 += acc1;
  std::memcpy(out, &acc0, sizeof(vec));
}

}  // namespace sl
