// CPU sketching kernels (see sl/sketch.h): counter-based random fills, the sparse sign
// table, and a CSR operator applied to the rows of a batch of matrices (the sparse sign
// sketch from either side, and its adjoint). OpenMP loops whose results do not depend on
// the thread count: every output element is produced by one thread in a fixed order.
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "sl/dtype.h"
#include "sl/isa.h"
#include "sl/parallel.h"
#include "sl/philox.h"
#include "sl/sketch.h"

namespace sl {
namespace {

// below this much work an OpenMP team costs more than it saves
constexpr std::int64_t kParallelMin = 1 << 15;

template <typename T>
Status fill(int kind, std::uint64_t seed, std::uint32_t tag, double scale, const Mat3View& o) {
  T* out = static_cast<T*>(o.data);
  const std::int64_t R = o.R, C = o.C;
  using A = typename acc_type<T>::type;
#pragma omp parallel for schedule(static) if (R * C > kParallelMin)
  for (std::int64_t i = 0; i < R; ++i) {
    for (std::int64_t j = 0; j < C; ++j) {
      store_acc(out + i * o.sr + j * o.sc, static_cast<A>(scale * rand_entry(kind, seed, tag, i, j)));
    }
  }
  return Status::ok();
}

constexpr int kLanes = 16;  // rows of X per tile: one vector of accumulators per output column

// out[0..kLanes) = sum_{p in [lo, hi)} vals[p] * buf[cols[p]][0..kLanes): the tile's rows
// interleaved in buf (kLanes values per column of X). The accumulators are one GCC/Clang
// vector value (a zmm register for floats under AVX-512): with an array of accumulators GCC
// kept them in memory, a load and a store per nonzero (the same pattern as csr_matvec).
template <typename A>
SL_ALWAYS_INLINE inline void gather_chunk(std::int64_t lo, std::int64_t hi, const std::int64_t* __restrict cols,
                                          const A* __restrict vals, const A* __restrict buf, A* __restrict out) {
  typedef A vec __attribute__((vector_size(kLanes * sizeof(A))));
  vec acc0 = {}, acc1 = {};  // two chains: the loads overlap instead of waiting on one FMA chain
  std::int64_t p = lo;
  for (; p + 1 < hi; p += 2) {
    vec x0, x1;
    std::memcpy(&x0, buf + cols[p] * kLanes, sizeof(vec));
    std::memcpy(&x1, buf + cols[p + 1] * kLanes, sizeof(vec));
    acc0 += vals[p] * x0;
    acc1 += vals[p + 1] * x1;
  }
  if (p < hi) {
    vec x0;
    std::memcpy(&x0, buf + cols[p] * kLanes, sizeof(vec));
    acc0 += vals[p] * x0;
  }
  acc0 += acc1;
  std::memcpy(out, &acc0, sizeof(vec));
}

// rows [r0, r0 + nr) of batch b (nr <= kLanes): the tile copied (and converted to the
// accumulation type) into buf (C x kLanes, zero lanes beyond nr), then every output column
// from it. The sum over a column's nonzeros runs in a fixed order (two interleaved chains),
// whatever the thread count.
template <typename T>
SL_ALWAYS_INLINE inline void tile_body(const Mat3View& x, const CsrView& a, const Mat3View& y, std::int64_t b,
                                       std::int64_t r0, std::int64_t nr, typename acc_type<T>::type* buf) {
  using A = typename acc_type<T>::type;
  const T* X = static_cast<const T*>(x.data) + b * x.sb + r0 * x.sr;
  T* Y = static_cast<T*>(y.data) + b * y.sb + r0 * y.sr;
  const A* vals = static_cast<const A*>(a.vals);
  const std::int64_t C = x.C;
  if (x.sr == 1) {  // column mode: the tile's rows of one column are contiguous
    for (std::int64_t c = 0; c < C; ++c) {
      const T* xc = X + c * x.sc;
      A* bc = buf + c * kLanes;
      for (std::int64_t q = 0; q < nr; ++q) bc[q] = load_acc(xc + q);
      for (std::int64_t q = nr; q < kLanes; ++q) bc[q] = A(0);
    }
  } else {  // row mode: each row read in order (a stream), interleaved into buf
    for (std::int64_t q = 0; q < kLanes; ++q) {
      A* bq = buf + q;
      if (q < nr) {
        const T* xq = X + q * x.sr;
        for (std::int64_t c = 0; c < C; ++c) bq[c * kLanes] = load_acc(xq + c * x.sc);
      } else {
        for (std::int64_t c = 0; c < C; ++c) bq[c * kLanes] = A(0);
      }
    }
  }
  alignas(64) A out[kLanes];
  for (std::int64_t j = 0; j < a.J; ++j) {
    gather_chunk(a.ptr[j], a.ptr[j + 1], a.cols, vals, buf, out);
    T* yj = Y + j * y.sc;
    for (std::int64_t q = 0; q < nr; ++q) store_acc(yj + q * y.sr, out[q]);
  }
}

template <typename T>
void tile_base(const Mat3View& x, const CsrView& a, const Mat3View& y, std::int64_t b, std::int64_t r0,
               std::int64_t nr, typename acc_type<T>::type* buf) {
  tile_body<T>(x, a, y, b, r0, nr, buf);
}
#ifdef SL_X86_DISPATCH
template <typename T>
SL_TARGET_AVX2 void tile_avx2(const Mat3View& x, const CsrView& a, const Mat3View& y, std::int64_t b, std::int64_t r0,
                              std::int64_t nr, typename acc_type<T>::type* buf) {
  tile_body<T>(x, a, y, b, r0, nr, buf);
}
template <typename T>
SL_TARGET_AVX512 void tile_avx512(const Mat3View& x, const CsrView& a, const Mat3View& y, std::int64_t b,
                                  std::int64_t r0, std::int64_t nr, typename acc_type<T>::type* buf) {
  tile_body<T>(x, a, y, b, r0, nr, buf);
}
#endif

// Y = X Omega for every row of every batch element, in tiles of kLanes rows (the OpenMP
// region stays outside the per-ISA tile functions, so that its outlined body is not
// compiled for the baseline ISA only). Measured on an AMD EPYC (AVX-512, 2 threads, one
// process round-robin): the sparse sign sketch of a 1024 x 4096 float32 matrix to 256
// columns (zeta = 8) takes 4.1 ms against 12.7 ms for the dense Gaussian GEMM (before: 8-row
// tiles of scalar accumulators in the baseline ISA, 16.6 ms against 15.5 ms); 2048 x 16384
// to 512: 26.7 against 207 ms.
template <typename T>
Status apply(const Mat3View& x, const CsrView& a, const Mat3View& y) {
  using A = typename acc_type<T>::type;
  void (*fn)(const Mat3View&, const CsrView&, const Mat3View&, std::int64_t, std::int64_t, std::int64_t, A*) =
      &tile_base<T>;
#ifdef SL_X86_DISPATCH
  if (isa_level() == 2) fn = &tile_avx512<T>;
  else if (isa_level() == 1) fn = &tile_avx2<T>;
#endif
  const std::int64_t B = x.B, R = x.R;
  const std::int64_t ntile = (R + kLanes - 1) / kLanes;
  const std::size_t per = static_cast<std::size_t>(x.C) * kLanes;
  const int nt = max_threads();
  std::vector<A> scratch;
  try {
    scratch.resize(per * static_cast<std::size_t>(nt));
  } catch (const std::bad_alloc&) {
    return invalid_argument("sparse_apply: cannot allocate host scratch of " + std::to_string(per * nt) + " values");
  }
#pragma omp parallel for schedule(static) collapse(2) num_threads(nt) if (B * R * a.nnz > kParallelMin)
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t t = 0; t < ntile; ++t) {
      const std::int64_t r0 = t * kLanes, nr = (R - r0 < kLanes) ? R - r0 : kLanes;
      fn(x, a, y, b, r0, nr, scratch.data() + static_cast<std::size_t>(thread_id()) * per);
    }
  }
  return Status::ok();
}

}  // namespace

Status random_fill_cpu(int dtype, int kind, std::uint64_t seed, std::uint32_t tag, double scale, const Mat3View& out) {
  SL_RETURN_IF_ERROR(check_random_fill(kind, out));
  if (out.R == 0 || out.C == 0) return Status::ok();
  SL_REQUIRE(out.data != nullptr, "random_fill: null data pointer");
  return dispatch_float(dtype, "random_fill",
                        [&](auto tag_) { return fill<decltype(tag_)>(kind, seed, tag, scale, out); });
}

Status sparse_sign_table_cpu(std::uint64_t seed, std::uint32_t tag, std::int64_t n, std::int64_t s, int zeta,
                             std::int32_t* codes) {
  SL_RETURN_IF_ERROR(check_sparse_sign(n, s, zeta));
  if (n == 0) return Status::ok();
  SL_REQUIRE(codes != nullptr, "sparse_sign_table: null data pointer");
#pragma omp parallel for schedule(static) if (n * zeta > kParallelMin / 16)
  for (std::int64_t i = 0; i < n; ++i) sparse_sign_column(seed, tag, i, s, zeta, codes + i * zeta);
  return Status::ok();
}

Status sparse_apply_cpu(int dtype, const Mat3View& x, const CsrView& a, const Mat3View& y) {
  SL_RETURN_IF_ERROR(check_sparse_apply(x, a, y));
  if (y.B == 0 || y.R == 0 || y.C == 0) return Status::ok();
  SL_REQUIRE(x.data != nullptr && y.data != nullptr && a.ptr != nullptr, "sparse_apply: null data pointer");
  SL_REQUIRE(a.ptr[0] == 0 && a.ptr[a.J] == a.nnz, "sparse_apply: ptr must run from 0 to nnz");
  for (std::int64_t j = 0; j < a.J; ++j)
    SL_REQUIRE(a.ptr[j] <= a.ptr[j + 1], "sparse_apply: ptr must be non-decreasing");
  for (std::int64_t p = 0; p < a.nnz; ++p)
    SL_REQUIRE(a.cols[p] >= 0 && a.cols[p] < x.C,
               "sparse_apply: column index " + std::to_string(a.cols[p]) + " out of range [0, " +
                   std::to_string(x.C) + ")");
  return dispatch_float(dtype, "sparse_apply", [&](auto tag) { return apply<decltype(tag)>(x, a, y); });
}

}  // namespace sl
