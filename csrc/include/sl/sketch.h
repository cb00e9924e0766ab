// Random sketching operators generated in the kernel from the counter-based RNG of
// sl/philox.h, so the same (seed, tag) gives the same operator on the CPU and on CUDA,
// for any thread count or launch shape. Contracts (CPU and CUDA alike):
//
// random_fill: out[i, j] = scale * rand_entry(kind, seed, tag, i, j) for (R, C) rows
//   (any strides), stored in the data type (computed in double). The CPU kernel makes
//   the Gaussian kind with sl/gauss_block.h (polynomial log / sin / cos, vectorized),
//   the CUDA kernel with libm: the two agree to a few float64 ulps.
// sparse_sign_table: codes[i, t], i < n, t < zeta (contiguous int32): the zeta distinct
//   positions in [0, s) and signs of input coordinate i, code = 2 * pos + (sign < 0).
// sparse_apply: Y[b, r, j] = sum_{p in [ptr[j], ptr[j+1])} vals[p] * X[b, r, cols[p]]
//   (a CSR matrix applied from the right to every row of X, written, not accumulated),
//   accumulated in the compute type (float for f16/bf16; vals has that type). The CPU
//   kernel checks the CSR structure first (ptr[0] = 0, ptr[J] = nnz, ptr non-decreasing,
//   cols in [0, C): an error otherwise); the CUDA one cannot without a host read and
//   trusts ptr, skipping a column outside [0, C). The ops pass structures they built
//   (csr_transpose, sparse_sign), never a caller's.
#pragma once
#include <cstdint>
#include <string>

#include "sl/exec.h"
#include "sl/philox.h"
#include "sl/select.h"
#include "sl/status.h"

namespace sl {

struct CsrView {
  const std::int64_t* ptr = nullptr;  // J + 1 offsets
  const std::int64_t* cols = nullptr;
  const void* vals = nullptr;  // compute type
  std::int64_t J = 0, nnz = 0;
};

Status random_fill_cpu(int dtype, int kind, std::uint64_t seed, std::uint32_t tag, double scale, const Mat3View& out);
Status random_fill_cuda(int dtype, int kind, std::uint64_t seed, std::uint32_t tag, double scale, const Mat3View& out,
                        const Exec& exec);
Status sparse_sign_table_cpu(std::uint64_t seed, std::uint32_t tag, std::int64_t n, std::int64_t s, int zeta,
                             std::int32_t* codes);
Status sparse_sign_table_cuda(std::uint64_t seed, std::uint32_t tag, std::int64_t n, std::int64_t s, int zeta,
                              std::int32_t* codes, const Exec& exec);
Status sparse_apply_cpu(int dtype, const Mat3View& x, const CsrView& a, const Mat3View& y);
Status sparse_apply_cuda(int dtype, const Mat3View& x, const CsrView& a, const Mat3View& y, const Exec& exec);

inline Status check_random_fill(int kind, const Mat3View& out) {
  SL_REQUIRE(kind >= 0 && kind <= 2, "random_fill: unknown kind " + std::to_string(kind));
  SL_REQUIRE(out.B >= 0 && out.R >= 0 && out.C >= 0, "random_fill: negative extent");
  SL_REQUIRE(out.R <= 0xffffffffLL && out.C <= 0xffffffffLL,
             "random_fill: at most 2^32 rows and columns, got " + std::to_string(out.R) + " x " + std::to_string(out.C));
  return Status::ok();
}

inline Status check_sparse_sign(std::int64_t n, std::int64_t s, int zeta) {
  SL_REQUIRE(n >= 0 && n <= 0xffffffffLL, "sparse_sign_table: n must be in [0, 2^32), got " + std::to_string(n));
  SL_REQUIRE(s >= 1 && s <= 0x3fffffffLL, "sparse_sign_table: s must be in [1, 2^30), got " + std::to_string(s));
  SL_REQUIRE(zeta >= 1 && zeta <= s && zeta <= 64,
             "sparse_sign_table: zeta must be in [1, min(s, 64)], got " + std::to_string(zeta));
  return Status::ok();
}

inline Status check_sparse_apply(const Mat3View& x, const CsrView& a, const Mat3View& y) {
  SL_REQUIRE(x.B == y.B && x.R == y.R && a.J == y.C, "sparse_apply: shapes of X, the operator and Y do not match");
  SL_REQUIRE(x.B >= 0 && x.R >= 0 && x.C >= 0 && a.J >= 0 && a.nnz >= 0, "sparse_apply: negative extent");
  return Status::ok();
}

}  // namespace sl

namespace sl {

// SRHT rows: Y[b, r, t] = sum_i H_N[rows[t], i] * signs[i] * X[b, r, i] (i < n, zero padded
// to N = 2^k >= n; H_N the unnormalized Sylvester Hadamard matrix; signs carry the
// scale, in the compute type). The length-N transform of each row runs in a cache-resident
// buffer and only the `s` sampled coordinates are written. Y any strides. rows in
// [0, N): the CPU checks them first (an error otherwise); CUDA writes 0 for one outside
// (no host read). The op draws them itself.
Status srht_cpu(int dtype, const Mat3View& x, const void* signs, const std::int64_t* rows, std::int64_t s,
                std::int64_t N, const Mat3View& y);
Status srht_cuda(int dtype, const Mat3View& x, const void* signs, const std::int64_t* rows, std::int64_t s,
                 std::int64_t N, const Mat3View& y, const Exec& exec);
// Longest N the CUDA kernel transforms in shared memory (longer: the caller composes
// sl::fwht with a gather instead).
inline std::int64_t srht_cuda_max_len(int dtype) { return dtype == 1 ? 4096 : 8192; }

inline Status check_srht(const Mat3View& x, std::int64_t s, std::int64_t N, const Mat3View& y) {
  SL_REQUIRE(N >= 1 && (N & (N - 1)) == 0 && N >= x.C, "srht: N must be a power of two >= n");
  SL_REQUIRE(x.B == y.B && x.R == y.R && y.C == s && s >= 0 && s <= N, "srht: shapes of X and Y do not match");
  return Status::ok();
}

}  // namespace sl
