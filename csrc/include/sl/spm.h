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

// The whole extraction loop of SPM (components k = R, R-1, ..., 1), one call:
//   per component: up to `ntries` starts x0 = normalize(sum_r C[j,t,r] V_r G[j,t]) (j = R - k,
//   the first k entries of C[j,t]), each run through the search below; the start with the
//   largest F wins (the loop stops at the first with 1 - F < frestol).
//   The search (at most maxiter steps of either kind) is the power iteration above, and,
//   each time its step |x_new - x| falls below the switch threshold s (first
//   kSpmNewtonSwitch), up to kSpmNewtonSteps Riemannian Newton steps for max F on the sphere:
//     W = [M_1 x, ..., M_k x]^T (k, d), alpha = W x, g = W^T alpha, f = |alpha|^2,
//     A = f I - (2 W^T W + sum_r alpha_r M_r), B = P A P + x x^T (P = I - x x^T),
//     x_new = normalize(x + B^{-1} (g - f x)).
//   It stops when a step of either kind is below tol, or a Newton step s has
//   kSpmNewtonQuadratic s^2 < tol (quadratic convergence: the next step would be below tol,
//   so the system that would only confirm it is not formed). A Newton attempt ends early when B is
//   not positive definite (Cholesky fails: no local maximum near x; x is kept) or when
//   F(x_new) < F(x) - kSpmNewtonSlack eps max(F(x), 1) (the step is undone); then the
//   power iteration resumes with s <- kSpmNewtonShrink s. Both kinds count as iterations.
//   Then the weight from the projection alpha = V_k^T (x (x) x):
//     even (order 4): z = D1 alpha, w = |alpha|^2 / (alpha . z)
//     odd (order 3):  au = U_k^T x, zu = D1 au, zv = D1^T alpha, w = |au| |alpha| / (alpha . zu)
//   and, for k > 1, the Householder deflation of V (and U) and D1 to k - 1 columns:
//     even: H from z: D1 <- (H D1 H)[:k-1, :k-1], V <- (V H)[:, :k-1]
//     odd:  H1 from zu: D1 <- (H1 D1)[:k-1, :], V <- (V H1)[:, :k-1];
//           H2 from zv: D1 <- (D1 H2)[:, :k-1], U <- (U H2)[:, :k-1]
//   with H = I - h h^T, h = v sqrt(2) / |v|, v = z + sign(z_k) |z| e_k.
// Inputs (row-major, contiguous): V (D, R), D1 (R, R), U (d, R) (odd only), G (R, ntries, d),
// C (R, ntries, R). Outputs: weights (R), factors (R, d) (row k-1 = component k), fbest (R).
// Workspace bytes from spm_extract_workspace_bytes (CUDA; the CPU kernel uses host scratch).
constexpr double kSpmNewtonSwitch = 1e-3;  // first power step size below which Newton is tried
constexpr int kSpmNewtonSteps = 8;         // Newton steps per attempt
constexpr double kSpmNewtonShrink = 0.1;   // the switch threshold after a failed attempt
constexpr double kSpmNewtonSlack = 64;     // F may drop by this many eps (relative) in a Newton step
constexpr double kSpmNewtonQuadratic = 100;  // a Newton step s with this s^2 < tol ends the search
// CPU, float64: the search runs on a float32 copy of the basis until a step is below
// kSpmCoarseTol (the same rules, Newton tried from steps below kSpmCoarseSwitch: its float32
// systems are cheap), then on in float64 (implementation detail: the same maximisers)
constexpr double kSpmCoarseTol = 1e-4;
constexpr double kSpmCoarseSwitch = 3e-2;

// Whether the Newton step `step` ends the search (shared by the CPU and CUDA kernels).
template <typename T>
#if defined(__CUDACC__)
__host__ __device__
#endif
inline bool spm_newton_done(T step, T tol) {
  return step < tol || T(kSpmNewtonQuadratic) * step * step < tol;
}
std::int64_t spm_extract_workspace_bytes(int dtype, std::int64_t d, std::int64_t R);
struct SpmExtractArgs {
  std::int64_t d = 0, R = 0, ntries = 1, maxiter = 0;
  bool odd = false;
  double tol = 0, cn = 0, frestol = 0;
  const void *V = nullptr, *D1 = nullptr, *U = nullptr, *G = nullptr, *C = nullptr;
  void *weights = nullptr, *factors = nullptr, *fbest = nullptr;
  // CPU only: G = C = nullptr draws the start of (j, t) when it is needed, as row j ntries + t
  // = [G[j, t] | C[j, t]] of the Gaussian matrix (R ntries, d + R) of sl/philox.h under
  // (seed, tag) (counter-based: the same values as that matrix given in full)
  std::uint64_t seed = 0;
  std::uint32_t tag = 0;
};
Status spm_extract_cpu(int dtype, const SpmExtractArgs& a);

// The whole SPM of a symmetric order-3 tensor T (d, d, d), row-major, in one call (CPU;
// the CUDA path composes torch.linalg with spm_extract, reference/spm.py: cp3):
//   1. checks: lo, hi = min, max of T; dev01, dev12 = max |T - T^(swap)| over the swaps of
//      indices (0, 1) and (1, 2); T is rejected (status 1, nothing else computed) when not
//      finite or when max(dev01, dev12) > 300 eps max(|lo|, |hi|);
//   2. M (D, d) = the flattening over packed pairs scaled by s (1 on the diagonal, sqrt 2 off
//      it): Householder QR with column pivoting M P = Q Rm (Q not formed), the rows of Rm
//      past the first nk with |Rm[nk:, nk:]|_F <= d eps |Rm[0, 0]| dropped (their singular
//      values are below the numerical-rank cutoff), the one-sided Jacobi SVD of Rm[:nk]^T
//      (the test of sl/small_dense.h, rotations not accumulated, at most kSpmJacobiSweeps
//      sweeps: status 4 when that was not enough, the results computed anyway): singular
//      values sig (descending; zeros past nk) and the right singular vectors of M;
//   3. the rank: `rank` if > 0, else #{sig_i > sqrt(eps) typical}, typical = mean(sig^2) /
//      mean(sig); numerical rank #{sig_i > d eps sig_0}; status 2 when the rank exceeds it,
//      3 when it is 0;
//   4. the search in span(Ub) (Ub = the first R right singular vectors, each signed so that
//      its entry of largest magnitude is positive; x = Ub y): the core
//      C = T x1 Ub^T x2 Ub^T x3 Ub^T, the basis V~ = packed (C[:, :, r] / sig_r), D1 =
//      diag(1 / sig), U = I; starts G (R, ntries, R), C (R, ntries, R) from the rows of the
//      Gaussian matrix (R ntries, 2 R) of sl/philox.h under (seed, kSpmStartsTag) (row
//      j ntries + t = [G[j, t] | C[j, t]]); spm_extract on these with d = R;
//   5. factors f_r = Ub y_r; weights re-solved by least squares, G w = b with
//      G = (Y^T Y)^(.3), b_r = <C, y_r^(x)3> (= <T, f_r^(x)3>), Cholesky, kept from the
//      projection when G is not positive definite; odd order: f -> -f where w < 0;
//      sorted by decreasing |w|.
// Outputs: weights (d) and factors (d, d) row-major (the first R entries / columns),
// sig (d), info (8) float64 = [lo, hi, dev01, dev12, R, numerical rank, 1 - min fbest,
// status (0 ok, 1-4 as above)].
constexpr std::uint32_t kSpmStartsTag = 16;  // sl/philox.h tag of the random starts
constexpr int kSpmJacobiSweeps = 40;         // sweeps of the Jacobi SVD of Rm
struct SpmCp3Args {
  std::int64_t d = 0, rank = 0, ntries = 1, maxiter = 0;
  double tol = 0, cn = 0, frestol = 0;
  std::uint64_t seed = 0;
  const void* T = nullptr;
  void *weights = nullptr, *factors = nullptr, *sig = nullptr;
  double* info = nullptr;
};
Status spm_cp3_cpu(int dtype, const SpmCp3Args& a);
Status spm_extract_cuda(int dtype, const SpmExtractArgs& a, void* workspace, std::int64_t ws_bytes,
                        const Exec& exec);

}  // namespace sl
