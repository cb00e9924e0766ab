// CPU small dense batched kernels and the fused CholeskyQR panel passes
// (cholqr_panel_kernels.inc; see sl/small_dense.h for the contracts). OpenMP over
// the batch. Batches of >= 4 small matrices run batch-interleaved (one matrix per SIMD
// lane: Cholesky n <= 128, inverse and Jacobi eigh n <= 64), the others matrix by matrix
// with SIMD along contiguous rows. The kernels (small_dense_kernels.inc) are compiled for
// baseline x86-64, AVX2+FMA and AVX-512 and chosen at run time. The CUDA twin in
// csrc/cuda/small_dense.cu performs the same operations in the same order per matrix.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "sl/dtype.h"
#include "sl/parallel.h"
#include "sl/small_dense.h"

namespace sl {
namespace {

using i64 = std::int64_t;

#define SL_SD_TARGET
namespace generic {
#include "small_dense_kernels.inc"
#include "cholqr_panel_kernels.inc"
}  // namespace generic
#undef SL_SD_TARGET

// the same kernels compiled for wider vectors, chosen at run time (the wheel stays
// baseline x86-64): function-level targets, not global -march flags
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SL_SMALL_DENSE_MULTI_ISA 1
// AVX2: 32-byte vectors and tiles for its 16 registers (the 64-byte vectors of the other
// targets spilled there: CholeskyQR of 5461 x 256 46 ms against 11 for torch's composite),
// the packed Gram with 2 x 6 tiles from 16 columns (from 80 with AVX-512) and the packed
// product with 2 x 6 tiles. cholqr_panel, ms, with the Gram as 4 x 4 dot-product tiles / packed
// (mode 0, one pass / mode 1, factored; 2 threads, two runs): 16 x 512 x 42 0.83-1.08 /
// 0.49-0.57, 1.51-1.89 / 0.84-1.04; 2048 x 74 0.57-0.62 / 0.31-0.42; 2048 x 32 0.144 /
// 0.095-0.132; 3 x 3 tiles were slower than 4 x 4 (16 x 512 x 42: 1.00-1.21)
#define SL_SD_TARGET __attribute__((target("avx2,fma")))
#define SL_SD_VEC_BYTES 32
#define SL_SD_GRAM_PACKED 1
#define SL_SD_GRAM_NR 6
#define SL_SD_PROD_MV 2
#define SL_SD_PROD_NR 6
#define SL_SD_GRAM_PACK_MIN_K 16
namespace avx2 {
#include "small_dense_kernels.inc"
#include "cholqr_panel_kernels.inc"
}  // namespace avx2
#undef SL_SD_GRAM_PACK_MIN_K
#undef SL_SD_GRAM_PACKED
#undef SL_SD_GRAM_NR
#undef SL_SD_VEC_BYTES
#undef SL_SD_PROD_MV
#undef SL_SD_PROD_NR
#undef SL_SD_TARGET
#define SL_SD_TARGET __attribute__((target("avx512f,avx512vl,avx512dq,avx2,fma")))
#define SL_SD_GRAM_PACKED 1  // the packed Gram kernel (panel_gram_kernels.inc)
#define SL_SD_GRAM_NR 12
namespace avx512 {
#include "small_dense_kernels.inc"
#include "cholqr_panel_kernels.inc"
}  // namespace avx512
#undef SL_SD_GRAM_PACKED
#undef SL_SD_GRAM_NR
#undef SL_SD_TARGET

enum class Isa { Generic, Avx2, Avx512 };
inline Isa cpu_isa() {
  static const Isa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
      return Isa::Avx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::Avx2;
    return Isa::Generic;
  }();
  return isa;
}
#define SL_SMALL_DENSE_ISA_CALL(call)                                           \
  (cpu_isa() == Isa::Avx512 ? avx512::call : cpu_isa() == Isa::Avx2 ? avx2::call \
                                                                     : generic::call)
#else
#define SL_SMALL_DENSE_ISA_CALL(call) (generic::call)
#endif

// f32/f64 only: the 16-bit formats are converted by the Python layer
Status check_dims(const char* op, i64 batch, i64 n) {
  SL_REQUIRE(batch >= 0 && n >= 0, std::string(op) + ": negative size");
  SL_REQUIRE(n <= kSmallDenseMaxN, std::string(op) + ": n must be <= " + std::to_string(kSmallDenseMaxN) +
                                       ", got " + std::to_string(n));
  return Status::ok();
}

}  // namespace

Status cholesky_small_cpu(int dtype, const void* a, void* l, std::int32_t* info, i64 batch, i64 n) {
  SL_RETURN_IF_ERROR(check_dims("cholesky_small", batch, n));
  if (batch == 0 || n == 0) return Status::ok();
  SL_REQUIRE(a && l && info, "cholesky_small: null pointer");
  return dispatch_real(dtype, "cholesky_small", [&](auto tag) {
    using T = decltype(tag);
    return SL_SMALL_DENSE_ISA_CALL(cholesky_run<T>(static_cast<const T*>(a), static_cast<T*>(l), info, batch, n));
  });
}

Status tril_inverse_small_cpu(int dtype, const void* l, void* x, std::int32_t* info, i64 batch, i64 n) {
  SL_RETURN_IF_ERROR(check_dims("tril_inverse_small", batch, n));
  if (batch == 0 || n == 0) return Status::ok();
  SL_REQUIRE(l && x && info, "tril_inverse_small: null pointer");
  SL_REQUIRE(l != x, "tril_inverse_small: x must not alias l");
  return dispatch_real(dtype, "tril_inverse_small", [&](auto tag) {
    using T = decltype(tag);
    return SL_SMALL_DENSE_ISA_CALL(tril_inverse_run<T>(static_cast<const T*>(l), static_cast<T*>(x), info, batch, n));
  });
}

Status eigh_jacobi_cpu(int dtype, void* a, void* w, void* vt, std::int32_t* info, i64 batch, i64 n,
                       int max_sweeps) {
  SL_RETURN_IF_ERROR(check_dims("eigh_jacobi", batch, n));
  SL_REQUIRE(max_sweeps >= 1, "eigh_jacobi: max_sweeps must be >= 1, got " + std::to_string(max_sweeps));
  if (batch == 0 || n == 0) return Status::ok();
  SL_REQUIRE(a && w && vt && info, "eigh_jacobi: null pointer");
  return dispatch_real(dtype, "eigh_jacobi", [&](auto tag) {
    using T = decltype(tag);
    return SL_SMALL_DENSE_ISA_CALL(
        eigh_run<T>(static_cast<T*>(a), static_cast<T*>(w), static_cast<T*>(vt), info, batch, n, max_sweeps));
  });
}

Status svd_jacobi_cpu(int dtype, void* at, void* vt, std::int32_t* info, i64 batch, i64 m, i64 n,
                      int max_sweeps) {
  SL_RETURN_IF_ERROR(check_dims("svd_jacobi", batch, n));
  SL_REQUIRE(m >= n, "svd_jacobi: needs m >= n, got m=" + std::to_string(m) + ", n=" + std::to_string(n));
  SL_REQUIRE(max_sweeps >= 1, "svd_jacobi: max_sweeps must be >= 1, got " + std::to_string(max_sweeps));
  if (batch == 0 || n == 0) return Status::ok();
  SL_REQUIRE(at && vt && info, "svd_jacobi: null pointer");
  return dispatch_real(dtype, "svd_jacobi", [&](auto tag) {
    using T = decltype(tag);
    return SL_SMALL_DENSE_ISA_CALL(svd_run<T>(static_cast<T*>(at), static_cast<T*>(vt), info, batch, m, n, max_sweeps));
  });
}

const char* small_dense_cpu_isa() {
#ifdef SL_SMALL_DENSE_MULTI_ISA
  return cpu_isa() == Isa::Avx512 ? "avx512" : cpu_isa() == Isa::Avx2 ? "avx2" : "generic";
#else
  return "generic";
#endif
}

bool cholqr_panel_cpu_row_major() {
#ifdef SL_SMALL_DENSE_MULTI_ISA
  return cpu_isa() != Isa::Generic;
#else
  return false;
#endif
}

Status cholqr_panel_cpu(int dtype, int mode, const void* y, i64 y_bstride, i64 y_rs, i64 y_cs, void* q, void* l,
                        void* x, std::int32_t* info, void* work, i64 batch, i64 m, i64 k, double cond_max,
                        double gate) {
  SL_RETURN_IF_ERROR(check_dims("cholqr_panel", batch, k));
  bool empty = false, rm = false;
  SL_RETURN_IF_ERROR(cholqr_panel_check(mode, y, y_rs, y_cs, q, l, x, info, work, batch, m, k, &empty, &rm));
  if (empty) return Status::ok();
  // (row-major panels on a target without the packed kernels: cholqr_panel_run refuses them)
  // fewer panels than threads: every panel's rows split into parts (of >= 256 rows)
  const int nt = max_threads();
  int parts = 1;
  if (batch < nt) {
    const i64 want = (nt + batch - 1) / batch;
    parts = static_cast<int>(m / 256 < want ? (m / 256 > 1 ? m / 256 : 1) : want);
  }
  return dispatch_real(dtype, "cholqr_panel", [&](auto tag) -> Status {
    using T = decltype(tag);
    std::vector<T> part, col;
    try {
      part.resize(static_cast<std::size_t>(batch * (parts - 1) * k * k));
      col.resize(static_cast<std::size_t>(kPanelCholNB * kSmallDenseMaxN));
    } catch (const std::bad_alloc&) {
      return invalid_argument("cholqr_panel: cannot allocate a host scratch buffer of " +
                              std::to_string(batch * (parts - 1) * k * k + kPanelCholNB * kSmallDenseMaxN) + " elements");
    }
    return SL_SMALL_DENSE_ISA_CALL(cholqr_panel_run<T>(mode, static_cast<const T*>(y), y_bstride, rm ? y_rs : y_cs, rm,
                                                       static_cast<T*>(q), static_cast<T*>(l), static_cast<T*>(x),
                                                       info, static_cast<T*>(work), part.data(), col.data(), parts, batch, m, k,
                                                       cond_max, gate));
  });
}

}  // namespace sl
