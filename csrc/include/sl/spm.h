// Subspace Power Method (Kileel & Pereira) inner kernels for symmetric tensors of order
// 3 and 4, where ceil(order/2) = 2: the subspace basis V spans {a (x) a} in R^{d x d},
// stored in the symmetric-reduced ("packed") layout.
//
// Layout (CPU and CUDA alike):
//   V   (D, R) row-major, D = d (d + 1) / 2; row p <-> the pair (i, j), i <= j, in
//       row-major upper-triangle order: p(i, j) = i d - i (i - 1) / 2 + (j - i)
//       (torch.triu_indices order). V[p, r] holds the entry (i, j) = (j, i) of the
//       r-th orthonormal basis vector of the full d^2 layout.
//   X   (B, d) row-major: B points (restarts), processed independently.
// For a point x, alpha = V^T (x (x) x) (R values, alpha_r = sum_{ij} V_r[i,j] x_i x_j),
// F(x) = |alpha|^2 and grad = sum_r alpha_r V_r x (= grad F / 4).
#pragma once
#include <cstdint>

#include "sl/exec.h"
#include "sl/status.h"

namespace sl {

struct SpmShape {
  std::int64_t d = 0;  // vector length
  std::int64_t R = 0;  // subspace dimension
  std::int64_t B = 0;  // number of points
  std::int64_t D() const { return d * (d + 1) / 2; }
};

// alpha (B, R) and grad (B, d), both row-major.
Status spm_contract_cpu(int dtype, const SpmShape& s, const void* V, const void* X, void* alpha, void* grad);
Status spm_contract_cuda(int dtype, const SpmShape& s, const void* V, const void* X, void* alpha, void* grad,
                         void* workspace, std::int64_t ws_bytes, const Exec& exec);

// The whole shifted power iteration (SS-HOPM with the adaptive shift of Kileel & Pereira)
// for each of the B starting points (unit norm rows of X, updated in place):
//   g = grad(x); f = g.x; c = sqrt(2 f max(1 - f, 0)) if f > 2/3 else 1 - f / 2;
//   x_new = (g + cn c x) / |g + cn c x|; stop when |x_new - x| < tol or after maxiter.
// Outputs f (B) = F at the final x, iters (B) int64 = iterations run.
// Workspace of both ops (CUDA only; the CPU kernels use host scratch):
// spm_workspace_bytes = B * (2 D + R + 2 d) values.
std::int64_t spm_workspace_bytes(int dtype, const SpmShape& s);
Status spm_power_cpu(int dtype, const SpmShape& s, const void* V, void* X, void* f, std::int64_t* iters,
                     std::int64_t maxiter, double tol, double cn);
Status spm_power_cuda(int dtype, const SpmShape& s, const void* V, void* X, void* f, std::int64_t* iters,
                      std::int64_t maxiter, double tol, double cn, void* workspace, std::int64_t ws_bytes,
                      const Exec& exec);

}  // namespace sl
