// CPU gather / scatter of rows with an optional per-row scale. OpenMP over (batch, row)
// for gathers; scatters over (batch, run of equal indices, column block): each output
// row is owned by one thread and summed in increasing j whatever the thread count.
#include <cstdint>
#include <string>

#include "sl/dtype.h"
#include "sl/select.h"

namespace sl {
namespace {

constexpr std::int64_t kColBlock = 512;
// below this many elements an OpenMP team costs more than it saves
constexpr std::int64_t kParallelMin = 1 << 15;

bool bad_index(const RowIndex& ix, std::int64_t B, std::int64_t rows, std::int64_t* which) {
  const std::int64_t nb = ix.idx_sb == 0 ? 1 : B;
  for (std::int64_t b = 0; b < nb; ++b)
    for (std::int64_t j = 0; j < ix.K; ++j) {
      const std::int64_t r = ix.idx[b * ix.idx_sb + j];
      if (r < 0 || r >= rows) {
        *which = r;
        return true;
      }
    }
  return false;
}

// x * s rounded to T (then widened again for the half formats)
template <typename T>
inline typename acc_type<T>::type scaled(const T* x, const T* s) {
  using A = typename acc_type<T>::type;
  if (s == nullptr) return load_acc(x);
  T r;
  store_acc(&r, static_cast<A>(load_acc(x) * load_acc(s)));
  return load_acc(&r);
}

template <typename T>
Status gather(const Mat3View& src, const RowIndex& ix, const Mat3View& out) {
  const T* S = static_cast<const T*>(src.data);
  T* O = static_cast<T*>(out.data);
  const T* sc = static_cast<const T*>(ix.scale);
  const std::int64_t B = src.B, K = ix.K, C = src.C;
#pragma omp parallel for schedule(static) collapse(2) if (B * K * C > kParallelMin)
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t j = 0; j < K; ++j) {
      const std::int64_t r = ix.idx[b * ix.idx_sb + j];
      const T* x = S + b * src.sb + r * src.sr;
      T* y = O + b * out.sb + j * out.sr;
      const T* s = sc ? sc + b * ix.scale_sb + j : nullptr;
      if (s == nullptr && src.sc == 1 && out.sc == 1) {
        for (std::int64_t c = 0; c < C; ++c) y[c] = x[c];
      } else {
        for (std::int64_t c = 0; c < C; ++c) {
          using A = typename acc_type<T>::type;
          store_acc(y + c * out.sc, static_cast<A>(scaled(x + c * src.sc, s)));
        }
      }
    }
  }
  return Status::ok();
}

template <typename T>
Status scatter(const Mat3View& x, const RowIndex& ix, const std::int64_t* order, const Mat3View& out) {
  using A = typename acc_type<T>::type;
  const T* X = static_cast<const T*>(x.data);
  T* O = static_cast<T*>(out.data);
  const T* sc = static_cast<const T*>(ix.scale);
  const std::int64_t B = x.B, K = ix.K, C = x.C;
  const std::int64_t nblk = (C + kColBlock - 1) / kColBlock;
  const std::int64_t cblk = order == nullptr ? C : kColBlock;  // runs stay in one block of columns
  const std::int64_t ncb = order == nullptr ? 1 : nblk;
#pragma omp parallel for schedule(static) collapse(3) if (B * K * C > kParallelMin)
  for (std::int64_t b = 0; b < B; ++b) {
    for (std::int64_t jj = 0; jj < K; ++jj) {
      for (std::int64_t cb = 0; cb < ncb; ++cb) {
        std::int64_t j0;
        if (!scatter_run_start(ix, order, b, jj, &j0)) continue;
        const std::int64_t r = ix.idx[b * ix.idx_sb + j0];
        T* y = O + b * out.sb + r * out.sr;
        const std::int64_t c0 = cb * cblk, c1 = c0 + cblk < C ? c0 + cblk : C;
        A acc[kColBlock];
        for (std::int64_t c0b = c0; c0b < c1; c0b += kColBlock) {
          const std::int64_t c1b = c0b + kColBlock < c1 ? c0b + kColBlock : c1;
          for (std::int64_t c = c0b; c < c1b; ++c) acc[c - c0b] = load_acc(y + c * out.sc);
          std::int64_t j = j0, pos = jj;
          while (j >= 0) {
            const T* xs = X + b * x.sb + j * x.sr;
            const T* s = sc ? sc + b * ix.scale_sb + j : nullptr;
            for (std::int64_t c = c0b; c < c1b; ++c) acc[c - c0b] += scaled(xs + c * x.sc, s);
            j = scatter_run_next(ix, order, b, pos);
            ++pos;
          }
          for (std::int64_t c = c0b; c < c1b; ++c) store_acc(y + c * out.sc, acc[c - c0b]);
        }
      }
    }
  }
  return Status::ok();
}

}  // namespace

Status gather_rows_cpu(int dtype, const Mat3View& src, const RowIndex& ix, const Mat3View& out) {
  SL_RETURN_IF_ERROR(check_gather_args("gather_rows", src, ix, out));
  SL_REQUIRE(out.R == ix.K, "gather_rows: output rows must equal the index count");
  if (src.B == 0 || ix.K == 0 || src.C == 0) return Status::ok();
  SL_REQUIRE(src.data != nullptr && out.data != nullptr, "gather_rows: null data pointer");
  std::int64_t bad = 0;
  SL_REQUIRE(!bad_index(ix, src.B, src.R, &bad),
             "gather_rows: index " + std::to_string(bad) + " out of range [0, " + std::to_string(src.R) + ")");
  return dispatch_float(dtype, "gather_rows", [&](auto tag) { return gather<decltype(tag)>(src, ix, out); });
}

Status scatter_rows_cpu(int dtype, const Mat3View& x, const RowIndex& ix, const std::int64_t* order,
                        const Mat3View& out) {
  SL_RETURN_IF_ERROR(check_gather_args("scatter_rows", x, ix, out));
  SL_REQUIRE(x.R == ix.K, "scatter_rows: input rows must equal the index count");
  if (x.B == 0 || ix.K == 0 || x.C == 0) return Status::ok();
  SL_REQUIRE(x.data != nullptr && out.data != nullptr, "scatter_rows: null data pointer");
  std::int64_t bad = 0;
  SL_REQUIRE(!bad_index(ix, x.B, out.R, &bad),
             "scatter_rows: index " + std::to_string(bad) + " out of range [0, " + std::to_string(out.R) + ")");
  return dispatch_float(dtype, "scatter_rows", [&](auto tag) { return scatter<decltype(tag)>(x, ix, order, out); });
}

}  // namespace sl
