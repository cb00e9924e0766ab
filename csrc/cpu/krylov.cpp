// CPU kernels of the Krylov family (contract in sl/krylov.h).
//  cg_update: one pass over x, r, p, Ap per active system; OpenMP over systems, or over
//    the elements of each system when there are fewer systems than threads.
//  cg_dense / cg_csr: OpenMP over systems (dynamic schedule: systems converge at different
//    iterations); each system's whole loop runs on one thread with its matrix (cg_dense)
//    or the shared CSR matrix (cg_csr) and four work vectors cache resident.
#include <cmath>
#include <cstdint>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "sl/dtype.h"
#include "sl/isa.h"
#include "sl/krylov.h"
#include "sl/parallel.h"

namespace sl {

Status cg_update_check(int dtype, std::int64_t S, std::int64_t n, const void* x, const void* r, const void* rr,
                       const void* p, const void* Ap, const void* alpha, const void* active) {
  SL_REQUIRE(dtype == static_cast<int>(DType::F32) || dtype == static_cast<int>(DType::F64),
             "cg_update: dtype must be f32 or f64, got code " + std::to_string(dtype));
  SL_REQUIRE(S >= 0 && n >= 0, "cg_update: negative size S=" + std::to_string(S) + " n=" + std::to_string(n));
  if (S == 0 || n == 0) return Status::ok();
  SL_REQUIRE(x && r && rr && p && Ap && alpha && active, "cg_update: null data pointer");
  return Status::ok();
}

Status cg_dense_check(int dtype, const CgDenseArgs& a, std::int64_t max_n) {
  SL_REQUIRE(dtype == static_cast<int>(DType::F32) || dtype == static_cast<int>(DType::F64),
             "cg_dense: dtype must be f32 or f64, got code " + std::to_string(dtype));
  SL_REQUIRE(a.S >= 0 && a.n >= 0 && a.maxiter >= 0 && a.a_stride >= 0 && a.a_group >= 1,
             "cg_dense: negative size, stride or maxiter, or a_group < 1");
  SL_REQUIRE(a.n <= max_n, "cg_dense: n must be <= " + std::to_string(max_n) + " on this device, got " +
                               std::to_string(a.n));
  if (a.S == 0) return Status::ok();
  SL_REQUIRE(a.A && a.b && a.x && a.tol && a.iters && a.res && a.status, "cg_dense: null data pointer");
  return Status::ok();
}

std::size_t cg_update_workspace_bytes(int dtype, std::int64_t S, std::int64_t n, bool cuda) {
  if (!cuda || n <= kCgUpdateWarpMaxN || S <= 0) return 0;
  const std::int64_t chunks = (n + kCgUpdateChunk - 1) / kCgUpdateChunk;
  return static_cast<std::size_t>(S * chunks) * static_cast<std::size_t>(dtype == 1 ? 8 : 4);
}

std::size_t cg_step_workspace_bytes(int dtype, std::int64_t S, std::int64_t n, bool cuda) {
  if (!cuda || n <= kCgUpdateWarpMaxN || S <= 0) return 0;
  const std::int64_t chunks = (n + kCgUpdateChunk - 1) / kCgUpdateChunk;
  return static_cast<std::size_t>(S * chunks + S) * static_cast<std::size_t>(dtype == 1 ? 8 : 4);
}

std::size_t cg_direction_workspace_bytes(int dtype, std::int64_t S, bool cuda) {
  if (!cuda || S <= 0) return 0;
  return static_cast<std::size_t>(S) * static_cast<std::size_t>(dtype == 1 ? 8 : 4);
}

Status cg_step_check(int dtype, const CgStepArgs& a) {
  SL_REQUIRE(dtype == static_cast<int>(DType::F32) || dtype == static_cast<int>(DType::F64),
             "cg_step: dtype must be f32 or f64, got code " + std::to_string(dtype));
  SL_REQUIRE(a.S >= 0 && a.n >= 0, "cg_step: negative size");
  if (a.S == 0) return Status::ok();
  SL_REQUIRE(a.x && a.r && a.rr && a.status && a.iters && a.p && a.Ap && a.rz && a.tol2,
             "cg_step: null data pointer");
  return Status::ok();
}

Status cg_direction_check(int dtype, const CgDirectionArgs& a) {
  SL_REQUIRE(dtype == static_cast<int>(DType::F32) || dtype == static_cast<int>(DType::F64),
             "cg_direction: dtype must be f32 or f64, got code " + std::to_string(dtype));
  SL_REQUIRE(a.S >= 0 && a.n >= 0, "cg_direction: negative size");
  if (a.S == 0) return Status::ok();
  SL_REQUIRE(a.p && a.z && a.rz_new && a.rz && a.status, "cg_direction: null data pointer");
  return Status::ok();
}

Status cg_csr_check(int dtype, const CgDenseArgs& a) {
  SL_REQUIRE(dtype == static_cast<int>(DType::F32) || dtype == static_cast<int>(DType::F64),
             "cg_csr: dtype must be f32 or f64, got code " + std::to_string(dtype));
  SL_REQUIRE(a.S >= 0 && a.n >= 0 && a.nnz >= 0 && a.maxiter >= 0, "cg_csr: negative size or maxiter");
  if (a.S == 0 || a.n == 0) return Status::ok();
  SL_REQUIRE(a.crow && (a.nnz == 0 || (a.col && a.val)) && a.b && a.x && a.tol && a.iters && a.res && a.status,
             "cg_csr: null data pointer");
  return Status::ok();
}

std::int64_t cg_dense_max_n(bool cuda) { return cuda ? kCgDenseCudaMaxN : (std::int64_t{1} << 24); }

namespace {

template <typename T>
Status update_run(std::int64_t S, std::int64_t n, T* x, T* r, T* rr, const T* p, const T* Ap, const T* alpha,
                  const std::uint8_t* active) {
  const int nt = max_threads();
  if (S >= nt || n < 65536) {
#pragma omp parallel for schedule(static) if (S * n >= 16384)
    for (std::int64_t s = 0; s < S; ++s) {
      if (!active[s]) continue;
      const T a = alpha[s];
      T* __restrict xs = x + s * n;
      T* __restrict rs = r + s * n;
      const T* __restrict ps = p + s * n;
      const T* __restrict qs = Ap + s * n;
      T acc = T(0);
#pragma omp simd reduction(+ : acc)
      for (std::int64_t j = 0; j < n; ++j) {
        xs[j] += a * ps[j];
        const T rj = rs[j] - a * qs[j];
        rs[j] = rj;
        acc += rj * rj;
      }
      rr[s] = acc;
    }
    return Status::ok();
  }
  for (std::int64_t s = 0; s < S; ++s) {  // few long systems: parallel inside each
    if (!active[s]) continue;
    const T a = alpha[s];
    T* __restrict xs = x + s * n;
    T* __restrict rs = r + s * n;
    const T* __restrict ps = p + s * n;
    const T* __restrict qs = Ap + s * n;
    T acc = T(0);
#pragma omp parallel for simd schedule(static) reduction(+ : acc)
    for (std::int64_t j = 0; j < n; ++j) {
      xs[j] += a * ps[j];
      const T rj = rs[j] - a * qs[j];
      rs[j] = rj;
      acc += rj * rj;
    }
    rr[s] = acc;
  }
  return Status::ok();
}

template <typename T>
SL_ALWAYS_INLINE inline T dot(const T* __restrict a, const T* __restrict b, std::int64_t n) {
  T acc = T(0);
#pragma omp simd reduction(+ : acc)
  for (std::int64_t j = 0; j < n; ++j) acc += a[j] * b[j];
  return acc;
}

// out = A v, A row-major n x n. Eight rows at a time: eight independent vector reductions
// keep the FMA units busy (one row at a time is bound by the latency of its reduction).
template <typename T>
SL_ALWAYS_INLINE inline void matvec(const T* __restrict A, const T* __restrict v, T* __restrict out, std::int64_t n) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const T* a0 = A + i * n;
    T s0 = T(0), s1 = T(0), s2 = T(0), s3 = T(0), s4 = T(0), s5 = T(0), s6 = T(0), s7 = T(0);
#pragma omp simd reduction(+ : s0, s1, s2, s3, s4, s5, s6, s7)
    for (std::int64_t j = 0; j < n; ++j) {
      const T vj = v[j];
      s0 += a0[j] * vj;
      s1 += a0[n + j] * vj;
      s2 += a0[2 * n + j] * vj;
      s3 += a0[3 * n + j] * vj;
      s4 += a0[4 * n + j] * vj;
      s5 += a0[5 * n + j] * vj;
      s6 += a0[6 * n + j] * vj;
      s7 += a0[7 * n + j] * vj;
    }
    out[i] = s0;
    out[i + 1] = s1;
    out[i + 2] = s2;
    out[i + 3] = s3;
    out[i + 4] = s4;
    out[i + 5] = s5;
    out[i + 6] = s6;
    out[i + 7] = s7;
  }
  for (; i < n; ++i) out[i] = dot(A + i * n, v, n);
}

// one system's step; par: parallelise the two passes over the row (few long systems)
template <typename T>
inline void step_one(const CgStepArgs& a, std::int64_t s, bool par) {
  if (a.status[s] != kCgRunning) return;
  const std::int64_t n = a.n;
  T* __restrict xs = static_cast<T*>(a.x) + s * n;
  T* __restrict rs = static_cast<T*>(a.r) + s * n;
  const T* __restrict ps = static_cast<const T*>(a.p) + s * n;
  const T* __restrict qs = static_cast<const T*>(a.Ap) + s * n;
  T pq = T(0);
  if (par) {
#pragma omp parallel for simd schedule(static) reduction(+ : pq)
    for (std::int64_t j = 0; j < n; ++j) pq += ps[j] * qs[j];
  } else {
    pq = dot(ps, qs, n);
  }
  if (!(pq > T(0)) || !std::isfinite(pq)) {
    a.status[s] = kCgBreakdown;
    return;
  }
  const T alpha = static_cast<const T*>(a.rz)[s] / pq;
  T acc = T(0);
  if (par) {
#pragma omp parallel for simd schedule(static) reduction(+ : acc)
    for (std::int64_t j = 0; j < n; ++j) {
      xs[j] += alpha * ps[j];
      const T rj = rs[j] - alpha * qs[j];
      rs[j] = rj;
      acc += rj * rj;
    }
  } else {
#pragma omp simd reduction(+ : acc)
    for (std::int64_t j = 0; j < n; ++j) {
      xs[j] += alpha * ps[j];
      const T rj = rs[j] - alpha * qs[j];
      rs[j] = rj;
      acc += rj * rj;
    }
  }
  static_cast<T*>(a.rr)[s] = acc;
  a.iters[s] += 1;
  if (acc <= static_cast<const T*>(a.tol2)[s]) {
    a.status[s] = kCgConverged;
  } else if (!std::isfinite(acc)) {
    a.status[s] = kCgBreakdown;
  }
}

template <typename T>
Status step_run(const CgStepArgs& a) {
  const int nt = max_threads();
  if (a.S >= nt || a.n < 65536) {
#pragma omp parallel for schedule(static) if (a.S * a.n >= 16384)
    for (std::int64_t s = 0; s < a.S; ++s) step_one<T>(a, s, false);
  } else {
    for (std::int64_t s = 0; s < a.S; ++s) step_one<T>(a, s, true);
  }
  return Status::ok();
}

template <typename T>
inline void direction_one(const CgDirectionArgs& a, std::int64_t s, bool par) {
  if (a.status[s] != kCgRunning) return;
  const T rzn = static_cast<const T*>(a.rz_new)[s];
  T* rz = static_cast<T*>(a.rz) + s;
  if (!(rzn > T(0)) || !std::isfinite(rzn)) {
    a.status[s] = kCgBreakdown;
    return;
  }
  const T beta = rzn / *rz;
  *rz = rzn;
  const std::int64_t n = a.n;
  T* ps = static_cast<T*>(a.p) + s * n;
  const T* zs = static_cast<const T*>(a.z) + s * n;
  if (par) {
#pragma omp parallel for simd schedule(static)
    for (std::int64_t j = 0; j < n; ++j) ps[j] = zs[j] + beta * ps[j];
  } else {
#pragma omp simd
    for (std::int64_t j = 0; j < n; ++j) ps[j] = zs[j] + beta * ps[j];
  }
}

template <typename T>
Status direction_run(const CgDirectionArgs& a) {
  const int nt = max_threads();
  if (a.S >= nt || a.n < 65536) {
#pragma omp parallel for schedule(static) if (a.S * a.n >= 16384)
    for (std::int64_t s = 0; s < a.S; ++s) direction_one<T>(a, s, false);
  } else {
    for (std::int64_t s = 0; s < a.S; ++s) direction_one<T>(a, s, true);
  }
  return Status::ok();
}

// The operators of the whole-loop CG: system s's dense matrix, or the CSR matrix every
// system shares (one row's nonzeros per output entry, in the value type).
template <typename T>
struct DenseOp {
  const T* A;
  std::int64_t n;
  SL_ALWAYS_INLINE void operator()(const T* __restrict v, T* __restrict out) const { matvec(A, v, out, n); }
};

template <typename T>
struct CsrOp {
  const std::int64_t* __restrict crow;
  const std::int64_t* __restrict col;
  const T* __restrict val;
  std::int64_t n;
  SL_ALWAYS_INLINE void rows(const T* __restrict v, T* __restrict out, std::int64_t i0, std::int64_t i1) const {
    for (std::int64_t i = i0; i < i1; ++i) {
      T acc = T(0);
      const std::int64_t hi = crow[i + 1];
      for (std::int64_t k = crow[i]; k < hi; ++k) acc += val[k] * v[col[k]];
      out[i] = acc;
    }
  }
  SL_ALWAYS_INLINE void operator()(const T* __restrict v, T* __restrict out) const { rows(v, out, 0, n); }
};

// The vector steps of one system's CG loop on the entries [lo, hi) (the whole system in
// cg_system, one thread's share in csr_system_parallel), each returning its partial sums.
template <typename T>
struct CgVectors {
  const T* b;
  T* x;
  const T* m;  // inverse Jacobi diagonal, or null (then z aliases r)
  T* r;
  T* p;
  T* q;  // A p (A x at the start)
  T* z;
};

template <typename T>
SL_ALWAYS_INLINE inline T cg_dot(const T* __restrict a, const T* __restrict b, std::int64_t lo, std::int64_t hi) {
  T acc = T(0);
#pragma omp simd reduction(+ : acc)
  for (std::int64_t j = lo; j < hi; ++j) acc += a[j] * b[j];
  return acc;
}

// r = b - q, z = M r, p = z; adds r.r to *rr and r.z to *rz
template <typename T>
SL_ALWAYS_INLINE inline void cg_start(const CgVectors<T>& v, std::int64_t lo, std::int64_t hi, T* rr, T* rz) {
  for (std::int64_t j = lo; j < hi; ++j) v.r[j] = v.b[j] - v.q[j];
  if (v.m)
    for (std::int64_t j = lo; j < hi; ++j) v.z[j] = v.r[j] * v.m[j];
  for (std::int64_t j = lo; j < hi; ++j) v.p[j] = v.z[j];
  const T prr = cg_dot(v.r, v.r, lo, hi);
  *rr += prr;
  *rz += v.m ? cg_dot(v.r, v.z, lo, hi) : prr;
}

// x += alpha p, r -= alpha q; returns r.r
template <typename T>
SL_ALWAYS_INLINE inline T cg_advance(const CgVectors<T>& v, T alpha, std::int64_t lo, std::int64_t hi) {
  T* __restrict x = v.x;
  T* __restrict r = v.r;
  const T* __restrict p = v.p;
  const T* __restrict q = v.q;
  T acc = T(0);
#pragma omp simd reduction(+ : acc)
  for (std::int64_t j = lo; j < hi; ++j) {
    x[j] += alpha * p[j];
    const T rj = r[j] - alpha * q[j];
    r[j] = rj;
    acc += rj * rj;
  }
  return acc;
}

// z = M r; returns r.z
template <typename T>
SL_ALWAYS_INLINE inline T cg_precondition(const CgVectors<T>& v, std::int64_t lo, std::int64_t hi) {
  for (std::int64_t j = lo; j < hi; ++j) v.z[j] = v.r[j] * v.m[j];
  return cg_dot(v.r, v.z, lo, hi);
}

// p = z + beta p
template <typename T>
SL_ALWAYS_INLINE inline void cg_turn(const CgVectors<T>& v, T beta, std::int64_t lo, std::int64_t hi) {
  T* __restrict p = v.p;
  const T* __restrict z = v.z;
#pragma omp simd
  for (std::int64_t j = lo; j < hi; ++j) p[j] = z[j] + beta * p[j];
}

// system s's vectors in the 4n scratch w
template <typename T>
SL_ALWAYS_INLINE inline CgVectors<T> cg_vectors(const CgDenseArgs& a, std::int64_t s, T* w) {
  const std::int64_t n = a.n;
  const T* m = a.minv ? static_cast<const T*>(a.minv) + s * n : nullptr;
  return {static_cast<const T*>(a.b) + s * n, static_cast<T*>(a.x) + s * n, m, w, w + n, w + 2 * n,
          m ? w + 3 * n : w};
}

// the statuses after each scalar of an iteration: the start (rr, rz), p.Ap, r.r, r.z
template <typename T>
SL_ALWAYS_INLINE inline int cg_start_status(T rr, T rz, T tol2) {
  if (rr <= tol2) return kCgConverged;
  return (!(rz > T(0)) || !std::isfinite(rz)) ? kCgBreakdown : kCgRunning;
}
template <typename T>
SL_ALWAYS_INLINE inline bool cg_bad_curvature(T pq) { return !(pq > T(0)) || !std::isfinite(pq); }
template <typename T>
SL_ALWAYS_INLINE inline int cg_residual_status(T rr, T tol2) {
  if (rr <= tol2) return kCgConverged;
  return std::isfinite(rr) ? kCgRunning : kCgBreakdown;
}

template <typename T>
SL_ALWAYS_INLINE inline void cg_finish(const CgDenseArgs& a, std::int64_t s, std::int64_t it, T rr, int st) {
  a.iters[s] = static_cast<std::int32_t>(it);
  static_cast<T*>(a.res)[s] = std::sqrt(rr > T(0) ? rr : T(0));
  a.status[s] = st;
}

// One system's whole CG loop with the operator `op` (forced inline into the per-ISA clones
// below). w: 4n scratch.
template <typename T, typename Op>
SL_ALWAYS_INLINE inline void cg_system(const CgDenseArgs& a, std::int64_t s, T* w, const Op& op) {
  const std::int64_t n = a.n, maxiter = a.maxiter;
  const CgVectors<T> v = cg_vectors(a, s, w);
  const T tol2 = static_cast<const T*>(a.tol)[s] * static_cast<const T*>(a.tol)[s];
  op(v.x, v.q);
  T rr = T(0), rz = T(0);
  cg_start(v, 0, n, &rr, &rz);
  int st = cg_start_status(rr, rz, tol2);
  std::int64_t it = 0;
  while (st == kCgRunning && it < maxiter) {
    op(v.p, v.q);
    const T pq = cg_dot(v.p, v.q, 0, n);
    if (cg_bad_curvature(pq)) {
      st = kCgBreakdown;
      break;
    }
    rr = cg_advance(v, rz / pq, 0, n);
    ++it;
    st = cg_residual_status(rr, tol2);
    if (st != kCgRunning) break;
    const T rz_new = v.m ? cg_precondition(v, 0, n) : rr;
    if (!(rz_new > T(0))) {
      st = kCgBreakdown;
      break;
    }
    cg_turn(v, rz_new / rz, 0, n);
    rz = rz_new;
  }
  cg_finish(a, s, it, rr, st);
}

// One CSR system's whole CG loop on nt threads (cg_csr with fewer systems than threads and
// n >= kCgCsrParallelMinN): the rows split evenly; every reduction as per-thread partial
// sums (part, 3 nt entries) that every thread adds in thread order, so all threads hold the
// same scalars and take the same branches (three or four barriers an iteration). The steps
// of cg_system on each thread's rows.
template <typename T>
void csr_system_parallel(const CgDenseArgs& a, std::int64_t s, T* w, T* part, int nt) {
  const std::int64_t n = a.n, maxiter = a.maxiter;
  const CsrOp<T> op{a.crow, a.col, static_cast<const T*>(a.val), n};
  const CgVectors<T> v = cg_vectors(a, s, w);
  const T tol2 = static_cast<const T*>(a.tol)[s] * static_cast<const T*>(a.tol)[s];
#pragma omp parallel num_threads(nt)
  {
    const int t = thread_id();
    const int nth = team_size();  // <= nt: the rows and the partial sums by the team it got
    const std::int64_t lo = n * t / nth, hi = n * (t + 1) / nth;
    auto total = [&](int slot) {
      T acc = T(0);
      for (int u = 0; u < nth; ++u) acc += part[slot * nt + u];
      return acc;
    };
    op.rows(v.x, v.q, lo, hi);
    part[t] = T(0);
    part[nt + t] = T(0);
    cg_start(v, lo, hi, &part[t], &part[nt + t]);
#pragma omp barrier
    T rr = total(0);
    T rz = v.m ? total(1) : rr;
    int st = cg_start_status(rr, rz, tol2);
    std::int64_t it = 0;
    while (st == kCgRunning && it < maxiter) {
#pragma omp barrier
      op.rows(v.p, v.q, lo, hi);
      part[2 * nt + t] = cg_dot(v.p, v.q, lo, hi);
#pragma omp barrier
      const T pq = total(2);
      if (cg_bad_curvature(pq)) {
        st = kCgBreakdown;
        break;
      }
      part[t] = cg_advance(v, rz / pq, lo, hi);
#pragma omp barrier
      rr = total(0);
      ++it;
      st = cg_residual_status(rr, tol2);
      if (st != kCgRunning) break;
      T rz_new = rr;
      if (v.m) {
        part[nt + t] = cg_precondition(v, lo, hi);
#pragma omp barrier
        rz_new = total(1);
      }
      if (!(rz_new > T(0))) {
        st = kCgBreakdown;
        break;
      }
      cg_turn(v, rz_new / rz, lo, hi);
      rz = rz_new;
    }
    if (t == 0) cg_finish(a, s, it, rr, st);
  }
}

// system s of a cg_dense (its own matrix) or a cg_csr (the shared CSR matrix) call
template <typename T, bool Csr>
SL_ALWAYS_INLINE inline void system(const CgDenseArgs& a, std::int64_t s, T* w) {
  if constexpr (Csr) {
    cg_system(a, s, w, CsrOp<T>{a.crow, a.col, static_cast<const T*>(a.val), a.n});
  } else {
    const T* A = static_cast<const T*>(a.A) + (s / a.a_group) * a.a_stride;
    cg_system(a, s, w, DenseOp<T>{A, a.n});
  }
}

template <typename T, bool Csr>
void system_base(const CgDenseArgs& a, std::int64_t s, T* w) { system<T, Csr>(a, s, w); }
#ifdef SL_X86_DISPATCH
template <typename T, bool Csr>
SL_TARGET_AVX2 void system_avx2(const CgDenseArgs& a, std::int64_t s, T* w) { system<T, Csr>(a, s, w); }
template <typename T, bool Csr>
SL_TARGET_AVX512 void system_avx512(const CgDenseArgs& a, std::int64_t s, T* w) { system<T, Csr>(a, s, w); }
#endif

template <typename T>
using SystemFn = void (*)(const CgDenseArgs&, std::int64_t, T*);

template <typename T, bool Csr>
SystemFn<T> pick_system() {
#ifdef SL_X86_DISPATCH
  switch (isa_level()) {
    case 2: return &system_avx512<T, Csr>;
    case 1: return &system_avx2<T, Csr>;
    default: break;
  }
#endif
  return &system_base<T, Csr>;
}

template <typename T, bool Csr>
Status systems_run(const CgDenseArgs& a) {
  const std::int64_t S = a.S, n = a.n;
  const int nt = max_threads();
  std::vector<T> scratch;
  try {
    scratch.resize(static_cast<std::size_t>(4 * n + 8) * static_cast<std::size_t>(nt));
  } catch (const std::bad_alloc&) {
    return invalid_argument(std::string(Csr ? "cg_csr" : "cg_dense") + ": cannot allocate host scratch of 4 x " +
                            std::to_string(n) + " x " + std::to_string(nt) + " elements");
  }
  const SystemFn<T> one = pick_system<T, Csr>();
  if (Csr && S < nt && n >= kCgCsrParallelMinN) {  // few large systems: each on all threads
    std::vector<T> part(static_cast<std::size_t>(3 * nt));
    for (std::int64_t s = 0; s < S; ++s) csr_system_parallel<T>(a, s, scratch.data(), part.data(), nt);
    return Status::ok();
  }
#pragma omp parallel num_threads(nt) if (S > 1)
  {
    T* w = scratch.data() + static_cast<std::size_t>(thread_id()) * static_cast<std::size_t>(4 * n + 8);
#pragma omp for schedule(dynamic, 4)
    for (std::int64_t s = 0; s < S; ++s) one(a, s, w);
  }
  return Status::ok();
}

}  // namespace

Status cg_update_cpu(int dtype, std::int64_t S, std::int64_t n, void* x, void* r, void* rr, const void* p,
                     const void* Ap, const void* alpha, const std::uint8_t* active) {
  SL_RETURN_IF_ERROR(cg_update_check(dtype, S, n, x, r, rr, p, Ap, alpha, active));
  if (S == 0) return Status::ok();  // (n == 0 still runs: rr = 0 for the active systems, the contract's r . r)
  return dispatch_real(dtype, "cg_update", [&](auto tag) {
    using T = decltype(tag);
    return update_run<T>(S, n, static_cast<T*>(x), static_cast<T*>(r), static_cast<T*>(rr),
                         static_cast<const T*>(p), static_cast<const T*>(Ap), static_cast<const T*>(alpha), active);
  });
}

Status cg_step_cpu(int dtype, const CgStepArgs& a) {
  SL_RETURN_IF_ERROR(cg_step_check(dtype, a));
  if (a.S == 0) return Status::ok();
  return dispatch_real(dtype, "cg_step", [&](auto tag) {
    using T = decltype(tag);
    return step_run<T>(a);
  });
}

Status cg_direction_cpu(int dtype, const CgDirectionArgs& a) {
  SL_RETURN_IF_ERROR(cg_direction_check(dtype, a));
  if (a.S == 0) return Status::ok();
  return dispatch_real(dtype, "cg_direction", [&](auto tag) {
    using T = decltype(tag);
    return direction_run<T>(a);
  });
}

Status cg_dense_cpu(int dtype, const CgDenseArgs& a) {
  SL_RETURN_IF_ERROR(cg_dense_check(dtype, a, cg_dense_max_n(false)));
  if (a.S == 0) return Status::ok();
  return dispatch_real(dtype, "cg_dense", [&](auto tag) {
    using T = decltype(tag);
    return systems_run<T, false>(a);
  });
}

Status cg_csr_cpu(int dtype, const CgDenseArgs& a) {
  SL_RETURN_IF_ERROR(cg_csr_check(dtype, a));
  if (a.S == 0) return Status::ok();
  return dispatch_real(dtype, "cg_csr", [&](auto tag) {
    using T = decltype(tag);
    return systems_run<T, true>(a);
  });
}

}  // namespace sl
