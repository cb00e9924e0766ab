// The whole Subspace Power Method of an order-3 symmetric tensor in one CPU call
// (contract: spm_cp3_cpu in sl/spm.h; the CUDA path and the reference compose the same
// steps from torch ops and spm_extract, subspace_linalg/reference/spm.py: cp3). At the
// sizes SPM is used for (d ~ 10..50) the steps are microseconds each, and a chain of torch
// calls for them cost several times the search itself. The steps are in
// spm_cp3_kernels.inc, compiled for baseline x86-64 and AVX2 + FMA, chosen at run time.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <new>
#include <numeric>
#include <string>
#include <vector>

#include "sl/dtype.h"
#include "sl/isa.h"
#include "sl/philox.h"
#include "sl/spm.h"

namespace sl {
namespace {

using i64 = std::int64_t;

enum Cp3Status { kOk = 0, kRejected = 1, kRankAboveNumerical = 2, kRankZero = 3, kJacobiUnconverged = 4 };

#define SL_SPM_TARGET
namespace generic {
#include "spm_cp3_kernels.inc"
}  // namespace generic
#undef SL_SPM_TARGET
#ifdef SL_X86_DISPATCH
#define SL_SPM_TARGET SL_TARGET_AVX2
namespace avx2 {
#include "spm_cp3_kernels.inc"
}  // namespace avx2
#undef SL_SPM_TARGET
#endif

}  // namespace

Status spm_cp3_cpu(int dtype, const SpmCp3Args& a) {
  SL_REQUIRE(a.d >= 1 && a.ntries >= 1 && a.maxiter >= 1 && a.rank >= 0 && a.rank <= a.d,
             "spm_cp3: need d >= 1, ntries >= 1, maxiter >= 1, 0 <= rank <= d, got d=" + std::to_string(a.d) +
                 " ntries=" + std::to_string(a.ntries) + " maxiter=" + std::to_string(a.maxiter) +
                 " rank=" + std::to_string(a.rank));
  SL_REQUIRE(a.T && a.weights && a.factors && a.sig && a.info, "spm_cp3: null data pointer");
  return dispatch_real(dtype, "spm_cp3", [&](auto tag) {
    using T = decltype(tag);
#ifdef SL_X86_DISPATCH
    if (isa_level() >= 1) return avx2::cp3_run<T>(dtype, a);
#endif
    return generic::cp3_run<T>(dtype, a);
  });
}

}  // namespace sl
