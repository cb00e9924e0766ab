// Block Lanczos basis expansion with full reorthogonalization: the inner loop of the
// thick-restart block Lanczos driver (subspace_linalg/spectral.py), on a dense or CSR
// symmetric operator. Contract (float32/float64):
//
// V (rows, n) row-major, rows 0..j0+p-1 orthonormal, the block to multiply next ("pending")
// rows [j0, j0 + p); H (rows, ldh) row-major. While j + p <= jstop (and j + 2p <= rows):
//   W = A V[j:j+p]^T (A dense row-major n x n with leading dimension lda, or CSR);
//   every column w_s: classical Gram-Schmidt twice against rows 0..j+p-1, the summed
//   coefficients into H[0:j+p, j+s]; then against the new rows accepted so far
//   (j+p .. j+p+c-1), coefficients into H[j+p:j+p+c, j+s]; its norm beta > thresh times
//   its norm as a product: new row j+p+c = w_s / beta, H[j+p+c, j+s] = beta; else (an
//   invariant subspace: breakdown) the slot gets a fresh Gaussian direction (Philox under
//   (seed, tag kLanczosTag, draw counter)) orthogonalized twice against every row so far,
//   coupled to nothing (H[j+p+c, j+s] = 0); then j += p.
// out[0] = the final j, out[1] = the status (kLanczosOk, or kLanczosNonFinite when a
// product or norm was not finite: the expansion stops there), out[2] = the draw counter
// after the expansion (in: draws, the counter to start from).
// Inner products are summed in fixed chunks of lanczos_chunk(n) entries, in chunk order:
// the same numbers for any thread count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "sl/device.h"
#include "sl/status.h"

namespace sl {

constexpr int kLanczosOk = 0, kLanczosNonFinite = 2;
// chunks of at least 256 entries, at most 64 of them (n alone decides: 9 chunks at n = 2304
// keep two threads balanced, where 1024-entry chunks had split 2048 / 256)
inline std::int64_t lanczos_chunk(std::int64_t n) {
  const std::int64_t c = (n + 63) / 64;
  return c < 256 ? 256 : (c + 63) / 64 * 64;
}
constexpr std::uint32_t kLanczosTag = 0x4c414e43u;  // "LANC"

struct LanczosExpandArgs {
  std::int64_t n = 0, p = 1;
  std::int64_t rows = 0;             // rows of V and of H (>= jstop + p)
  std::int64_t ldh = 0;              // leading dimension of H (>= jstop + p)
  std::int64_t j0 = 0, jstop = 0;
  double thresh = 0.0;
  std::uint64_t seed = 0;
  std::int64_t draws = 0;
  const void* dense = nullptr;       // dense operator (or null), row-major, leading dimension lda
  std::int64_t lda = 0;
  const std::int64_t* crow = nullptr;  // CSR operator (when dense is null)
  const std::int64_t* col = nullptr;
  const void* val = nullptr;
  std::int64_t nnz = 0;
  void* V = nullptr;
  void* H = nullptr;
  std::int64_t* out = nullptr;       // [3]
};

// the argument checks both backends make
inline Status lanczos_expand_check(const LanczosExpandArgs& a) {
  SL_REQUIRE(a.n >= 1 && a.p >= 1, "lanczos_expand: n and p must be >= 1, got n = " + std::to_string(a.n) +
                                       ", p = " + std::to_string(a.p));
  SL_REQUIRE(0 <= a.j0 && a.j0 + a.p <= a.rows, "lanczos_expand: the pending block [j0, j0 + p) must lie in V's " +
                                                    std::to_string(a.rows) + " rows, got j0 = " + std::to_string(a.j0));
  SL_REQUIRE(a.rows <= a.n, "lanczos_expand: V cannot have more rows (" + std::to_string(a.rows) +
                                ") than the operator's order " + std::to_string(a.n));
  SL_REQUIRE(a.ldh >= a.rows, "lanczos_expand: H's leading dimension must be >= rows = " + std::to_string(a.rows) +
                                  ", got " + std::to_string(a.ldh));
  SL_REQUIRE(a.V && a.H && a.out, "lanczos_expand: null pointer");
  SL_REQUIRE(a.dense ? a.lda >= a.n : (a.crow && (a.nnz == 0 || (a.col && a.val))),
             "lanczos_expand: the operator needs a dense matrix (lda >= n) or CSR arrays");
  SL_REQUIRE(a.draws >= 0, "lanczos_expand: draws must be >= 0");
  return Status::ok();
}

Status lanczos_expand_cpu(int dtype, const LanczosExpandArgs& a);

// CUDA (csrc/cuda/lanczos.cu): one persistent block, every pointer device memory (out
// included); ws of lanczos_expand_cuda_workspace_bytes on the same device
std::size_t lanczos_expand_cuda_workspace_bytes(int dtype, std::int64_t n, std::int64_t p, std::int64_t rows);
Status lanczos_expand_cuda(int dtype, const LanczosExpandArgs& a, void* ws, std::size_t ws_bytes, const Exec& exec);

}  // namespace sl
