// Small dense batched kernels for the k x k stage of randomized low-rank methods:
// Cholesky with a breakdown flag, lower-triangular inverse, cyclic (parallel-order)
// two-sided Jacobi for symmetric eigenproblems, one-sided (Hestenes) Jacobi SVD.
//
// Contract (CPU and CUDA alike, same algorithm and same rotation order):
//  * every matrix argument is a contiguous batch (batch, rows, cols), row-major;
//  * float32 (code 0) and float64 (code 1) only; the 16-bit formats are converted to
//    float32 by the Python layer (InvalidArgument here);
//  * n <= kSmallDenseMaxN;
//  * info is an int32 per matrix; nothing is ever left NaN silently: a failed matrix is
//    reported in info and its outputs stay finite when its input was finite.
#pragma once
#include <cstdint>

#include "sl/exec.h"
#include "sl/status.h"

namespace sl {

constexpr std::int64_t kSmallDenseMaxN = 512;

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
