// Krylov family native ops: the fused CG update and the whole CG loop for a batch of
// small dense SPD systems. Contract (CPU and CUDA alike), float32/float64 only:
//
// cg_update: S systems stored as contiguous rows of length n. For every s with
//   active[s] != 0: x_s += alpha[s] p_s, r_s -= alpha[s] Ap_s, rr[s] = r_s . r_s (one pass);
//   rows with active[s] == 0 are not touched (nor is rr[s]). CUDA may need a workspace of
//   cg_update_workspace_bytes(...) bytes (per-chunk partial sums, deterministic order).
//
// cg_step (the per-system CG step, everything between two operator applications): for
//   every s with status[s] == 0 (running): pq = p_s . Ap_s; pq <= 0 or non-finite: status 2
//   (breakdown); else alpha = rz[s] / pq, x_s += alpha p_s, r_s -= alpha Ap_s,
//   rr[s] = r_s . r_s, iters[s] += 1, and status 1 when rr[s] <= tol2[s], 2 when rr[s] is not
//   finite. Systems with status != 0 are not touched. CUDA workspace: cg_step_workspace_bytes.
//
// cg_direction: for every s with status[s] == 0: rz_new[s] <= 0 or non-finite: status 2;
//   else p_s = z_s + (rz_new[s] / rz[s]) p_s and rz[s] = rz_new[s]. (z may alias r.)
//   CUDA workspace: cg_direction_workspace_bytes.
//
// cg_dense: A_s = A + (s / a_group) * a_stride (a_stride 0: one shared matrix; a_group > 1:
//   consecutive systems share a matrix, e.g. the r columns of one right-hand side block),
//   row-major n x n;
//   b, x (in: x0, out: solution), minv (optional inverse Jacobi diagonal, null for none):
//   contiguous S x n. tol[s]: absolute tolerance on ||r_s||. Each system runs plain
//   (Jacobi-preconditioned) CG on its own until ||r_s|| <= tol[s] (status 1), a breakdown
//   p^T A p <= 0, r^T z <= 0 or a non-finite value (status 2), or maxiter iterations
//   (status 0). iters[s]: updates done; res[s]: the recursive residual norm.
#pragma once
#include <cstddef>
#include <cstdint>

#include "sl/exec.h"
#include "sl/status.h"

namespace sl {

constexpr int kCgRunning = 0, kCgConverged = 1, kCgBreakdown = 2;
// CUDA cg_update: one warp per system up to this n, else chunks of kCgUpdateChunk
// elements per block with per-chunk partial sums in the workspace
constexpr std::int64_t kCgUpdateWarpMaxN = 4096;
constexpr std::int64_t kCgUpdateChunk = 4096;
// CUDA cg_dense: one block per system with its five work vectors in shared memory
constexpr std::int64_t kCgDenseCudaMaxN = 1024;
// CPU cg_csr: fewer systems than threads with at least this many unknowns run each system's
// loop on all threads (rows split evenly, barriers between the steps; its sums then depend on
// the thread count, to rounding: the same numbers run to run at one thread count)
constexpr std::int64_t kCgCsrParallelMinN = 8192;

std::size_t cg_update_workspace_bytes(int dtype, std::int64_t S, std::int64_t n, bool cuda);

Status cg_update_cpu(int dtype, std::int64_t S, std::int64_t n, void* x, void* r, void* rr, const void* p,
                     const void* Ap, const void* alpha, const std::uint8_t* active);
Status cg_update_cuda(int dtype, std::int64_t S, std::int64_t n, void* x, void* r, void* rr, const void* p,
                      const void* Ap, const void* alpha, const std::uint8_t* active, void* ws,
                      std::size_t ws_bytes, const Exec& exec);

std::size_t cg_step_workspace_bytes(int dtype, std::int64_t S, std::int64_t n, bool cuda);
std::size_t cg_direction_workspace_bytes(int dtype, std::int64_t S, bool cuda);

struct CgStepArgs {
  std::int64_t S = 0, n = 0;
  void* x = nullptr;
  void* r = nullptr;
  void* rr = nullptr;
  std::int32_t* status = nullptr;
  std::int32_t* iters = nullptr;
  const void* p = nullptr;
  const void* Ap = nullptr;
  const void* rz = nullptr;
  const void* tol2 = nullptr;
};

struct CgDirectionArgs {
  std::int64_t S = 0, n = 0;
  void* p = nullptr;
  const void* z = nullptr;
  const void* rz_new = nullptr;
  void* rz = nullptr;
  std::int32_t* status = nullptr;
};

Status cg_step_cpu(int dtype, const CgStepArgs& a);
Status cg_step_cuda(int dtype, const CgStepArgs& a, void* ws, std::size_t ws_bytes, const Exec& exec);
Status cg_direction_cpu(int dtype, const CgDirectionArgs& a);
Status cg_direction_cuda(int dtype, const CgDirectionArgs& a, void* ws, std::size_t ws_bytes, const Exec& exec);
Status cg_step_check(int dtype, const CgStepArgs& a);
Status cg_direction_check(int dtype, const CgDirectionArgs& a);

// largest n of cg_dense on the device (CUDA: shared-memory budget of one block per system)
std::int64_t cg_dense_max_n(bool cuda);

// cg_csr: the same loop with one CSR matrix (crow, col, val; nnz entries) shared by all
//   systems (A, a_stride and a_group unused).
struct CgDenseArgs {
  std::int64_t S = 0, n = 0;
  const void* A = nullptr;
  const std::int64_t* crow = nullptr;
  const std::int64_t* col = nullptr;
  const void* val = nullptr;
  std::int64_t nnz = 0;
  std::int64_t a_stride = 0;
  std::int64_t a_group = 1;
  const void* b = nullptr;
  void* x = nullptr;
  const void* minv = nullptr;
  const void* tol = nullptr;
  std::int64_t maxiter = 0;
  std::int32_t* iters = nullptr;
  void* res = nullptr;
  std::int32_t* status = nullptr;
};

Status cg_dense_cpu(int dtype, const CgDenseArgs& a);
Status cg_dense_cuda(int dtype, const CgDenseArgs& a, const Exec& exec);
Status cg_csr_cpu(int dtype, const CgDenseArgs& a);

// shared argument checks (defined in csrc/cpu/krylov.cpp)
Status cg_update_check(int dtype, std::int64_t S, std::int64_t n, const void* x, const void* r, const void* rr,
                       const void* p, const void* Ap, const void* alpha, const void* active);
Status cg_dense_check(int dtype, const CgDenseArgs& a, std::int64_t max_n);
Status cg_csr_check(int dtype, const CgDenseArgs& a);

}  // namespace sl
