// CPU sketching kernels (see sl/sketch.h): counter-based random fills, the sparse sign
// table, and a CSR operator applied to the rows of a batch of matrices (the sparse sign
// sketch from either side, and its adjoint). OpenMP loops whose results do not depend on
// the thread count: every output element is produced by one thread in a fixed order.
#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "sl/dtype.h"
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

constexpr std::int64_t kRowBlock = 64;
constexpr int kRowTile = 8;

template <typename T>
Status apply(const Mat3View& x, const CsrView& a, const Mat3View& y) {
  using A = typename acc_type<T>::type;
  const T* X = static_cast<const T*>(x.data);
  T* Y = static_cast<T*>(y.data);
  const A* vals = static_cast<const A*>(a.vals);
  const std::int64_t B = x.B, R = x.R, J = a.J;
  if (x.sr == 1 && R > 1) {
    // column mode: X[b, :, col] contiguous; vectorise over r in blocks
    const std::int64_t nrb = (R + kRowBlock - 1) / kRowBlock;
#pragma omp parallel for schedule(static) collapse(2) if (B * R * a.nnz > kParallelMin)
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t j = 0; j < J; ++j) {
        A acc[kRowBlock];
        for (std::int64_t rb = 0; rb < nrb; ++rb) {
          const std::int64_t r0 = rb * kRowBlock, nr = (R - r0 < kRowBlock) ? R - r0 : kRowBlock;
          for (std::int64_t q = 0; q < nr; ++q) acc[q] = A(0);
          for (std::int64_t p = a.ptr[j]; p < a.ptr[j + 1]; ++p) {
            const A v = vals[p];
            const T* xs = X + b * x.sb + a.cols[p] * x.sc + r0;
            for (std::int64_t q = 0; q < nr; ++q) acc[q] += v * load_acc(xs + q);
          }
          T* ys = Y + b * y.sb + j * y.sc + r0 * y.sr;
          for (std::int64_t q = 0; q < nr; ++q) store_acc(ys + q * y.sr, acc[q]);
        }
      }
    }
    return Status::ok();
  }
  // row mode: tiles of kRowTile rows of X share each (col, val) read; the rows of a tile
  // stay cache resident while the columns of Y are produced
  const std::int64_t ntile = (R + kRowTile - 1) / kRowTile;
#pragma omp parallel for schedule(static) collapse(2) if (B * R * a.nnz > kParallelMin)
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t rt = 0; rt < ntile; ++rt) {
      const std::int64_t r0 = rt * kRowTile, nr = (R - r0 < kRowTile) ? R - r0 : kRowTile;
      const T* xs = X + b * x.sb + r0 * x.sr;
      T* ys = Y + b * y.sb + r0 * y.sr;
      if (nr == kRowTile) {
        for (std::int64_t j = 0; j < J; ++j) {
          A acc[kRowTile] = {};
          for (std::int64_t p = a.ptr[j]; p < a.ptr[j + 1]; ++p) {
            const A v = vals[p];
            const T* xc = xs + a.cols[p] * x.sc;
            for (int q = 0; q < kRowTile; ++q) acc[q] += v * load_acc(xc + q * x.sr);
          }
          for (int q = 0; q < kRowTile; ++q) store_acc(ys + q * y.sr + j * y.sc, acc[q]);
        }
      } else {
        for (std::int64_t q = 0; q < nr; ++q) {
          for (std::int64_t j = 0; j < J; ++j) {
            A acc = A(0);
            for (std::int64_t p = a.ptr[j]; p < a.ptr[j + 1]; ++p)
              acc += vals[p] * load_acc(xs + q * x.sr + a.cols[p] * x.sc);
            store_acc(ys + q * y.sr + j * y.sc, acc);
          }
        }
      }
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
