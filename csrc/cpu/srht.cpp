// CPU SRHT rows (contract in sl/sketch.h): tiles of kTile rows (a cache line per coordinate) are loaded (times the
// signs, zero padded) into an interleaved N x kTile buffer, transformed there by radix-2
// butterflies vectorised across the tile, and only the sampled coordinates are stored.
// One read of X, one write of the s outputs; OpenMP over (batch, tile).
#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "sl/dtype.h"
#include "sl/parallel.h"
#include "sl/sketch.h"

namespace sl {
namespace {

// rows per tile: 64 bytes of each coordinate (a cache line) in the accumulation type
template <typename A>
constexpr std::int64_t tile_of() { return 64 / static_cast<std::int64_t>(sizeof(A)); }

// radix-4 butterflies (stages h and 2h at once), a last radix-2 stage when log2 N is odd
template <typename A, std::int64_t W>
void butterflies(A* __restrict buf, std::int64_t N) {
  std::int64_t h = 1;
  for (; 4 * h <= N; h *= 4) {
    for (std::int64_t i0 = 0; i0 < N; i0 += 4 * h) {
      for (std::int64_t j = i0; j < i0 + h; ++j) {
        A* __restrict p0 = buf + j * W;
        A* __restrict p1 = p0 + h * W;
        A* __restrict p2 = p1 + h * W;
        A* __restrict p3 = p2 + h * W;
#pragma omp simd
        for (std::int64_t w = 0; w < W; ++w) {
          const A a = p0[w] + p1[w], b = p0[w] - p1[w];
          const A c = p2[w] + p3[w], d = p2[w] - p3[w];
          p0[w] = a + c;
          p2[w] = a - c;
          p1[w] = b + d;
          p3[w] = b - d;
        }
      }
    }
  }
  if (h < N) {
    for (std::int64_t j = 0; j < h; ++j) {
      A* __restrict p = buf + j * W;
      A* __restrict q = p + h * W;
#pragma omp simd
      for (std::int64_t w = 0; w < W; ++w) {
        const A a = p[w], b = q[w];
        p[w] = a + b;
        q[w] = a - b;
      }
    }
  }
}

template <typename T, std::int64_t kTile>
Status run(const Mat3View& x, const void* signs_v, const std::int64_t* rows, std::int64_t s, std::int64_t N,
           const Mat3View& y) {
  using A = typename acc_type<T>::type;
  const A* signs = static_cast<const A*>(signs_v);
  const T* X = static_cast<const T*>(x.data);
  T* Y = static_cast<T*>(y.data);
  const std::int64_t B = x.B, R = x.R, n = x.C;
  const std::int64_t ntile = (R + kTile - 1) / kTile;
  const int nthreads = max_threads();
  std::vector<A> scratch;
  try {
    scratch.resize(static_cast<std::size_t>(N * kTile) * static_cast<std::size_t>(nthreads));
  } catch (const std::bad_alloc&) {
    return invalid_argument("srht: cannot allocate a host buffer of " + std::to_string(N * kTile) + " x " +
                            std::to_string(nthreads) + " elements");
  }
  const bool col_major = x.sr == 1 && x.sc != 1;
#pragma omp parallel num_threads(nthreads) if (B * R * N > (1 << 15))
  {
    A* buf = scratch.data() + static_cast<std::size_t>(thread_id()) * static_cast<std::size_t>(N * kTile);
#pragma omp for schedule(static) collapse(2)
    for (std::int64_t b = 0; b < B; ++b) {
      for (std::int64_t rt = 0; rt < ntile; ++rt) {
        const std::int64_t r0 = rt * kTile, nr = (R - r0 < kTile) ? R - r0 : kTile;
        const T* xs = X + b * x.sb + r0 * x.sr;
        if (col_major) {
          for (std::int64_t i = 0; i < n; ++i) {
            const T* xi = xs + i * x.sc;
            for (std::int64_t w = 0; w < nr; ++w) buf[i * kTile + w] = signs[i] * load_acc(xi + w);
            for (std::int64_t w = nr; w < kTile; ++w) buf[i * kTile + w] = A(0);
          }
        } else {
          for (std::int64_t w = 0; w < nr; ++w) {
            const T* xw = xs + w * x.sr;
            for (std::int64_t i = 0; i < n; ++i) buf[i * kTile + w] = signs[i] * load_acc(xw + i * x.sc);
          }
          for (std::int64_t w = nr; w < kTile; ++w)
            for (std::int64_t i = 0; i < n; ++i) buf[i * kTile + w] = A(0);
        }
        for (std::int64_t i = n * kTile; i < N * kTile; ++i) buf[i] = A(0);
        butterflies<A, kTile>(buf, N);
        T* ys = Y + b * y.sb + r0 * y.sr;
        for (std::int64_t w = 0; w < nr; ++w)
          for (std::int64_t t = 0; t < s; ++t) store_acc(ys + w * y.sr + t * y.sc, buf[rows[t] * kTile + w]);
      }
    }
  }
  return Status::ok();
}

}  // namespace

Status srht_cpu(int dtype, const Mat3View& x, const void* signs, const std::int64_t* rows, std::int64_t s,
                std::int64_t N, const Mat3View& y) {
  SL_RETURN_IF_ERROR(check_srht(x, s, N, y));
  if (y.B == 0 || y.R == 0 || s == 0) return Status::ok();
  SL_REQUIRE(x.data != nullptr && y.data != nullptr && signs != nullptr && rows != nullptr, "srht: null data pointer");
  for (std::int64_t t = 0; t < s; ++t)
    SL_REQUIRE(rows[t] >= 0 && rows[t] < N,
               "srht: sampled row " + std::to_string(rows[t]) + " out of range [0, " + std::to_string(N) + ")");
  // column-major X (a left sketch): wider tiles, so each coordinate read is 256 bytes of a row
  const bool col_major = x.sr == 1 && x.sc != 1;
  return dispatch_float(dtype, "srht", [&](auto tag) {
    using T = decltype(tag);
    constexpr std::int64_t W = tile_of<typename acc_type<T>::type>();
    return col_major ? run<T, 4 * W>(x, signs, rows, s, N, y) : run<T, W>(x, signs, rows, s, N, y);
  });
}

}  // namespace sl
