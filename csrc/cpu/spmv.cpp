// CPU CSR times rows of vectors (contract in sl/spmv.h): OpenMP over matrix rows, every
// vector of the batch done while the row is in cache.
#include <cstdint>
#include <string>
#include <type_traits>

#include "sl/dtype.h"
#include "sl/isa.h"
#include "sl/parallel.h"
#include "sl/spmv.h"

namespace sl {

Status csr_matvec_check(int dtype, const CsrMatvecArgs& a) {
  SL_REQUIRE(dtype == static_cast<int>(DType::F32) || dtype == static_cast<int>(DType::F64),
             "csr_matvec: dtype must be f32 or f64, got code " + std::to_string(dtype));
  SL_REQUIRE(a.m >= 0 && a.n >= 0 && a.S >= 0 && a.nnz >= 0, "csr_matvec: negative size");
  if (a.m == 0 || a.S == 0) return Status::ok();
  SL_REQUIRE(a.crow && a.y && (a.nnz == 0 || (a.col && a.val && a.x)), "csr_matvec: null data pointer");
  return Status::ok();
}

namespace {

constexpr int kChunk = 16;           // vectors per pass when the vectors are interleaved
constexpr std::int64_t kRowBlock = 256;  // rows per task

// rows [i0, i1) of y (forced inline into the per-ISA wrappers below; the OpenMP region
// stays outside them so that its outlined body is not compiled for the baseline ISA)
template <typename T>
SL_ALWAYS_INLINE inline void rows_body(const CsrMatvecArgs& a, std::int64_t i0, std::int64_t i1) {
  const T* val = static_cast<const T*>(a.val);
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const std::int64_t S = a.S;
  if (a.xs == 1 && S > 1) {  // interleaved vectors: the S values of one column are contiguous
    for (std::int64_t i = i0; i < i1; ++i) {
      const std::int64_t lo = a.crow[i], hi = a.crow[i + 1];
      for (std::int64_t s0 = 0; s0 < S; s0 += kChunk) {
        const int w = static_cast<int>(S - s0 < kChunk ? S - s0 : kChunk);
        T acc[kChunk] = {};
        if (w == kChunk) {  // constant trip count: the accumulators live in vector registers
          for (std::int64_t k = lo; k < hi; ++k) {
            const T v = val[k];
            const T* xc = x + a.col[k] * a.xj + s0;
#pragma omp simd
            for (int t = 0; t < kChunk; ++t) acc[t] += v * xc[t];
          }
        } else {
          for (std::int64_t k = lo; k < hi; ++k) {
            const T v = val[k];
            const T* xc = x + a.col[k] * a.xj + s0;
#pragma omp simd
            for (int t = 0; t < w; ++t) acc[t] += v * xc[t];
          }
        }
        for (int t = 0; t < w; ++t) y[(s0 + t) * a.ys + i * a.yi] = acc[t];
      }
    }
    return;
  }
  const std::int64_t* __restrict crow = a.crow;
  const std::int64_t* __restrict col = a.col;
  if (a.xj == 1 && a.yi == 1) {  // vectors stored as rows (the common case: one vector)
    for (std::int64_t s = 0; s < S; ++s) {
      const T* __restrict xv = x + s * a.xs;
      T* __restrict yv = y + s * a.ys;
      for (std::int64_t i = i0; i < i1; ++i) {
        T acc = T(0);
        const std::int64_t hi = crow[i + 1];
        for (std::int64_t k = crow[i]; k < hi; ++k) acc += val[k] * xv[col[k]];
        yv[i] = acc;
      }
    }
    return;
  }
  for (std::int64_t i = i0; i < i1; ++i) {
    const std::int64_t lo = crow[i], hi = crow[i + 1];
    for (std::int64_t s = 0; s < S; ++s) {
      const T* xv = x + s * a.xs;
      T acc = T(0);
      for (std::int64_t k = lo; k < hi; ++k) acc += val[k] * xv[col[k] * a.xj];
      y[s * a.ys + i * a.yi] = acc;
    }
  }
}

template <typename T>
void rows_base(const CsrMatvecArgs& a, std::int64_t i0, std::int64_t i1) { rows_body<T>(a, i0, i1); }
#ifdef SL_X86_DISPATCH
template <typename T>
SL_TARGET_AVX2 void rows_avx2(const CsrMatvecArgs& a, std::int64_t i0, std::int64_t i1) { rows_body<T>(a, i0, i1); }
template <typename T>
SL_TARGET_AVX512 void rows_avx512(const CsrMatvecArgs& a, std::int64_t i0, std::int64_t i1) {
  rows_body<T>(a, i0, i1);
}
#endif

template <typename T>
Status run(const CsrMatvecArgs& a) {
  void (*fn)(const CsrMatvecArgs&, std::int64_t, std::int64_t) = &rows_base<T>;
#ifdef SL_X86_DISPATCH
  if (isa_level() == 2) fn = &rows_avx512<T>;
  else if (isa_level() == 1) fn = &rows_avx2<T>;
#endif
  const std::int64_t blocks = (a.m + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(static) if (a.S * (a.nnz + a.m) >= 65536)
  for (std::int64_t bi = 0; bi < blocks; ++bi) {
    const std::int64_t i0 = bi * kRowBlock;
    fn(a, i0, i0 + kRowBlock < a.m ? i0 + kRowBlock : a.m);
  }
  return Status::ok();
}

}  // namespace

Status csr_matvec_cpu(int dtype, const CsrMatvecArgs& a) {
  SL_RETURN_IF_ERROR(csr_matvec_check(dtype, a));
  if (a.m == 0 || a.S == 0) return Status::ok();
  return dispatch_float(dtype, "csr_matvec", [&](auto tag) -> Status {
    using T = decltype(tag);
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      return run<T>(a);
    } else {
      return not_supported("csr_matvec: float16/bfloat16 are not supported");
    }
  });
}

}  // namespace sl
