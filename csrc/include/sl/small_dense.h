// Small dense batched kernels for the k x k stage of randomized low-rank methods:
// Cholesky with a breakdown flag, lower-triangular inverse, cyclic (parallel-order)
// two-sided Jacobi for symmetric eigenproblems, one-sided (Hestenes) Jacobi SVD; and the
// fused CholeskyQR passes on tall m x k panels built on the first two.
//
// Contract (CPU and CUDA alike, same algorithm and same rotation order):
//  * every matrix argument is a contiguous batch (batch, rows, cols), row-major (the panels
//    of cholqr_panel: column-major, see there);
//  * float32 (code 0) and float64 (code 1) only; the 16-bit formats are converted to
//    float32 by the Python layer (InvalidArgument here);
//  * n <= kSmallDenseMaxN;
//  * info is an int32 per matrix; nothing is ever left NaN silently: a failed matrix is
//    reported in info and its outputs stay finite when its input was finite.
#pragma once
#include <cstdint>
#include <string>

#include "sl/exec.h"
#include "sl/status.h"

namespace sl {

constexpr std::int64_t kSmallDenseMaxN = 512;
// columns per block of the CPU panel Cholesky (cholqr_panel's scratch: kPanelCholNB kSmallDenseMaxN elements)
constexpr int kPanelCholNB = 16;

// Cholesky A = L L^T of symmetric A (only the lower triangle is read).
//   a: (batch, n, n) in, l: (batch, n, n) out (strict upper triangle zero),
//   info[b] = 0 on success, else j + 1 for the first pivot j that is not positive and
//   finite (torch.linalg.cholesky_ex's convention); rows >= j of L are then zero.
Status cholesky_small_cpu(int dtype, const void* a, void* l, std::int32_t* info, std::int64_t batch,
                          std::int64_t n);
Status cholesky_small_cuda(int dtype, const void* a, void* l, std::int32_t* info, std::int64_t batch,
                           std::int64_t n, const Exec& exec);

// Inverse X = L^{-1} of lower-triangular L (strict upper triangle ignored) by column
// forward substitution. info[b] = j + 1 for the first zero or non-finite diagonal entry
// (X is then zero), else 0. x must not alias l.
Status tril_inverse_small_cpu(int dtype, const void* l, void* x, std::int32_t* info, std::int64_t batch,
                              std::int64_t n);
Status tril_inverse_small_cuda(int dtype, const void* l, void* x, std::int32_t* info, std::int64_t batch,
                               std::int64_t n, const Exec& exec);

// Two-sided cyclic Jacobi, round-robin (parallel) order, on symmetric A.
//   a: (batch, n, n) in/out work (overwritten: diagonal = eigenvalues, unsorted),
//   w: (batch, n) eigenvalues (unsorted), vt: (batch, n, n) out, row i = eigenvector i.
//   A rotation is applied when |a_pq| > eps * ||A||_F / n; stops after a sweep with no
//   rotation. info[b] = 0 converged, 1 when max_sweeps were reached first.
Status eigh_jacobi_cpu(int dtype, void* a, void* w, void* vt, std::int32_t* info, std::int64_t batch,
                       std::int64_t n, int max_sweeps);
Status eigh_jacobi_cuda(int dtype, void* a, void* w, void* vt, std::int32_t* info, std::int64_t batch,
                        std::int64_t n, int max_sweeps, const Exec& exec);

// One-sided (Hestenes) Jacobi SVD of A (m x n, m >= n), round-robin order, given as
//   at: (batch, n, m) = A^T row-major (row p = column p of A), in/out: on exit row p is
//       sigma_p u_p (unnormalised, unsorted);
//   vt: (batch, n, n) out, row p = right singular vector v_p.
// Columns p, q are rotated when |a_p . a_q| > tol * ||a_p|| ||a_q|| with
// tol = eps * sqrt(m); stops after a sweep with no rotation. info as for eigh_jacobi.
Status svd_jacobi_cpu(int dtype, void* at, void* vt, std::int32_t* info, std::int64_t batch, std::int64_t m,
                      std::int64_t n, int max_sweeps);
Status svd_jacobi_cuda(int dtype, void* at, void* vt, std::int32_t* info, std::int64_t batch, std::int64_t m,
                       std::int64_t n, int max_sweeps, const Exec& exec);

// CholeskyQR passes on a batch of tall panels Y (m x k, m >= k, k <= kSmallDenseMaxN), fused:
// Gram G = Y^T Y, Cholesky G = L L^T, X = L^{-1}, Q = Y X^T, all in one call (the CPU
// kernel blocks the Gram and the product over rows, SIMD along the contiguous columns).
//   y: element (b, r, c) at y[b * y_bstride + r * y_rs + c * y_cs]: column-major panels
//      (y_rs = 1, y_cs >= m) everywhere; row-major ones (y_cs = 1, y_rs >= k) on the
//      CPU where its kernels have the packed Gram and product (cholqr_panel_cpu_row_major():
//      the AVX2 and AVX-512 targets; they pack any layout anyway), else InvalidArgument;
//   q: (batch, k, m) contiguous out = column-major (b, m, k) panels;
//   mode 0 (one pass):  q = Q = Y L^{-T};  l = L;  x = L^{-1};
//   mode 1 (CholeskyQR2, factored): q = Q1 = Y L1^{-T}, then G2 = Q1^T Q1 = L2 L2^T;
//          l = L1 L2 (Y = (Q1 L2^{-T}) l^T);  x = L2^{-1} (the orthonormal basis is Q1 x^T);
//   mode 2 (CholeskyQR2): as mode 1 with q = Q1 L2^{-T} formed (the orthonormal basis).
//   l, x: (batch, k, k) row-major out (lower triangular; strict upper triangle zero);
//   info[b] = 0 accepted; 1 when the first pass fails: a Cholesky breakdown (a pivot not
//     positive and finite) or max(diag L1) > cond_max * min(diag L1); 2 when the second
//     pass fails (modes 1, 2): ||G2 - I||_F > gate (or not finite) or its Cholesky breaks
//     down. A failed element has q, l and x zero (finite whatever Y held);
//   work: cholqr_panel_work_elems(mode, batch, m, k) elements of the dtype (scratch).
inline std::int64_t cholqr_panel_work_elems(int mode, std::int64_t batch, std::int64_t m, std::int64_t k) {
  return 5 * batch * k * k + 2 * batch + (mode == 2 ? batch * m * k : 0);
}
// The argument checks both backends share (after their check of batch and k); *empty is set
// when there is nothing to compute.
// *row_major says which of the two layouts y has (column-major when both fit: k = 1).
inline Status cholqr_panel_check(int mode, const void* y, std::int64_t y_rs, std::int64_t y_cs, const void* q,
                                 const void* l, const void* x, const void* info, const void* work,
                                 std::int64_t batch, std::int64_t m, std::int64_t k, bool* empty, bool* row_major) {
  SL_REQUIRE(mode >= 0 && mode <= 2, "cholqr_panel: mode must be 0, 1 or 2, got " + std::to_string(mode));
  SL_REQUIRE(m >= k, "cholqr_panel: needs m >= k, got m=" + std::to_string(m) + ", k=" + std::to_string(k));
  *empty = batch == 0 || k == 0;
  *row_major = false;
  if (*empty) return Status::ok();
  const bool col = y_rs == 1 && y_cs >= m;
  *row_major = !col && y_cs == 1 && y_rs >= k;
  SL_REQUIRE(col || *row_major, "cholqr_panel: Y must be column-major (row stride 1, column stride >= m) or "
                                "row-major (column stride 1, row stride >= k), got strides (" +
                                    std::to_string(y_rs) + ", " + std::to_string(y_cs) + ") for m=" +
                                    std::to_string(m) + ", k=" + std::to_string(k));
  SL_REQUIRE(y && q && l && x && info && work, "cholqr_panel: null pointer");
  return Status::ok();
}
// The instruction set the CPU small-dense kernels run with here ("avx512", "avx2" or
// "generic"; chosen at run time): the wide-panel Gram kernel of cholqr_panel is AVX-512's.
const char* small_dense_cpu_isa();
// Whether cholqr_panel_cpu takes row-major panels here (the packed kernels' targets).
bool cholqr_panel_cpu_row_major();
Status cholqr_panel_cpu(int dtype, int mode, const void* y, std::int64_t y_bstride, std::int64_t y_rs,
                        std::int64_t y_cs, void* q, void* l, void* x, std::int32_t* info, void* work,
                        std::int64_t batch, std::int64_t m, std::int64_t k, double cond_max, double gate);
// (CUDA: column-major panels only)
Status cholqr_panel_cuda(int dtype, int mode, const void* y, std::int64_t y_bstride, std::int64_t y_rs,
                         std::int64_t y_cs, void* q, void* l, void* x, std::int32_t* info, void* work,
                         std::int64_t batch, std::int64_t m, std::int64_t k, double cond_max, double gate,
                         const Exec& exec);

// Round-robin ordering shared by both backends: for n' = n rounded up to even, step r in
// [0, n' - 1) pairs slot i with slot n' - 1 - i (i < n'/2); slot 0 holds index 0 and slot
// s > 0 holds 1 + (s - 1 + r) mod (n' - 1). A pair containing index n (padding) is skipped.
#if defined(__CUDACC__)
__host__ __device__
#endif
inline void jacobi_pair(std::int64_t n_even, std::int64_t step, std::int64_t i, std::int64_t* p,
                        std::int64_t* q) {
  const std::int64_t j = n_even - 1 - i;
  std::int64_t a = i == 0 ? 0 : 1 + (i - 1 + step) % (n_even - 1);
  std::int64_t b = j == 0 ? 0 : 1 + (j - 1 + step) % (n_even - 1);
  if (a > b) {
    std::int64_t t = a;
    a = b;
    b = t;
  }
  *p = a;
  *q = b;
}

}  // namespace sl
