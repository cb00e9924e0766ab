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

template <int W, int VB = 64, typename T>
SL_ALWAYS_INLINE inline void csr_gather(std::int64_t lo, std::int64_t hi, const std::int64_t* __restrict cols,
                                        const T* __restrict vals, const T* __restrict base, std::int64_t stride,
                                        T* __restrict out) {
  // VB: the widest vector of the caller's target (64 for AVX-512, 32 for AVX2). The W values
  // are NV vectors of that width: one 64-byte vector on AVX2 became stack traffic and
  // 64-bit inserts on every nonzero (GCC 12), 2-3x slower than two 32-byte ones.
  constexpr int kBytes = W * static_cast<int>(sizeof(T));
  constexpr int kVB = kBytes < VB ? kBytes : VB;
  constexpr int NV = kBytes / kVB, E = kVB / static_cast<int>(sizeof(T));
  typedef T vec __attribute__((vector_size(kVB)));
  vec acc0[NV] = {}, acc1[NV] = {};
  std::int64_t p = lo;
  for (; p + 1 < hi; p += 2) {
    const T* b0 = base + cols[p] * stride;
    const T* b1 = base + cols[p + 1] * stride;
    for (int v = 0; v < NV; ++v) {
      vec x0, x1;
      std::memcpy(&x0, b0 + v * E, sizeof(vec));
      std::memcpy(&x1, b1 + v * E, sizeof(vec));
      acc0[v] += vals[p] * x0;
      acc1[v] += vals[p + 1] * x1;
    }
  }
  if (p < hi) {
    const T* b0 = base + cols[p] * stride;
    for (int v = 0; v < NV; ++v) {
      vec x0;
      std::memcpy(&x0, b0 + v * E, sizeof(vec));
      acc0[v] += vals[p] * x0;
    }
  }
  for (int v = 0; v < NV; ++v) {
    acc0[v] += acc1[v];
    std::memcpy(out + v * E, &acc0[v], sizeof(vec));
  }
}

}  // namespace sl
