// CPU CSR times rows of vectors (contract in sl/spmv.h): OpenMP over matrix rows, every
// vector of the batch done while the row is in cache.
#include <cstdint>
#include <string>
#include <type_traits>

#include "sl/dtype.h"
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

template <typename T>
Status run(const CsrMatvecArgs& a) {
  const T* val = static_cast<const T*>(a.val);
  const T* x = static_cast<const T*>(a.x);
  T* y = static_cast<T*>(a.y);
  const std::int64_t m = a.m, n = a.n, S = a.S;
#pragma omp parallel for schedule(static) if (S * (a.nnz + m) >= 65536)
  for (std::int64_t i = 0; i < m; ++i) {
    const std::int64_t lo = a.crow[i], hi = a.crow[i + 1];
    for (std::int64_t s = 0; s < S; ++s) {
      const T* xs = x + s * n;
      T acc = T(0);
      for (std::int64_t k = lo; k < hi; ++k) acc += val[k] * xs[a.col[k]];
      y[s * m + i] = acc;
    }
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
