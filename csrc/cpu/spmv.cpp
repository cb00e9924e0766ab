// CPU CSR times rows of vectors (contract in sl/spmv.h): OpenMP over matrix rows, every
// vector of the batch done while the row is in cache.
#include <cstdint>
#include <string>
#include <type_traits>

#include "sl/csr_gather.h"
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

constexpr std::int64_t kRowBlock = 256;  // rows per task

// interleaved vectors: the S values of one column of x (and of one row of y when ys == 1)
// are contiguous; W of them at a time through sl::csr_gather (sl/csr_gather.h: 495 -> 130 us
// single-threaded at 16 vectors of a 128^2 Poisson matrix against the array accumulators)
template <int W, int VB, typename T>
SL_ALWAYS_INLINE inline void row_chunk(std::int64_t lo, std::int64_t hi, const std::int64_t* __restrict col,
                                       const T* __restrict val, const T* __restrict xs0, T* __restrict y0,
                                       std::int64_t xj, std::int64_t ys) {
  if (ys == 1) {
    csr_gather<W, VB>(lo, hi, col, val, xs0, xj, y0);
    return;
  }
  alignas(64) T out[W];
  csr_gather<W, VB>(lo, hi, col, val, xs0, xj, out);
  for (int t = 0; t < W; ++t) y0[t * ys] = out[t];
}

template <typename T, int VB>
SL_ALWAYS_INLINE inline void rows_interleaved(const std::int64_t* __restrict crow, const std::int64_t* __restrict col,
                                              const T* __restrict val, const T* __restrict x, T* __restrict y,
                                              std::int64_t S, std::int64_t xj, std::int64_t ys, std::int64_t yi,
                                              std::int64_t i0, std::int64_t i1) {
  for (std::int64_t i = i0; i < i1; ++i) {
    const std::int64_t lo = crow[i], hi = crow[i + 1];
    std::int64_t s0 = 0;
    for (; s0 + 16 <= S; s0 += 16) row_chunk<16, VB>(lo, hi, col, val, x + s0, y + s0 * ys + i * yi, xj, ys);
    if (s0 + 8 <= S) {
      row_chunk<8, VB>(lo, hi, col, val, x + s0, y + s0 * ys + i * yi, xj, ys);
      s0 += 8;
    }
    if (s0 + 4 <= S) {
      row_chunk<4, VB>(lo, hi, col, val, x + s0, y + s0 * ys + i * yi, xj, ys);
      s0 += 4;
    }
    for (; s0 < S; ++s0) {  // the last S % 4 vectors
      T acc = T(0);
      for (std::int64_t k = lo; k < hi; ++k) acc += val[k] * x[col[k] * xj + s0];
      y[s0 * ys + i * yi] = acc;
    }
  }
}

// rows [i0, i1) of y (forced inline into the per-ISA wrappers below; the OpenMP region
// stays outside them so that its outlined body is not compiled for the baseline ISA); VB:
// the target's widest vector in bytes (sl/csr_gather.h)
template <typename T, int VB>
SL_ALWAYS_INLINE inline void rows_body(const CsrMatvecArgs& a, std::int64_t i0, std::int64_t i1) {
  const T* val = static_cast<const T*>(a.val);
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const std::int64_t S = a.S;
  if (a.xs == 1 && S > 1) {
    rows_interleaved<T, VB>(a.crow, a.col, val, x, y, S, a.xj, a.ys, a.yi, i0, i1);
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
void rows_base(const CsrMatvecArgs& a, std::int64_t i0, std::int64_t i1) { rows_body<T, 64>(a, i0, i1); }
#ifdef SL_X86_DISPATCH
template <typename T>
SL_TARGET_AVX2 void rows_avx2(const CsrMatvecArgs& a, std::int64_t i0, std::int64_t i1) { rows_body<T, 32>(a, i0, i1); }
template <typename T>
SL_TARGET_AVX512 void rows_avx512(const CsrMatvecArgs& a, std::int64_t i0, std::int64_t i1) {
  rows_body<T, 64>(a, i0, i1);
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
