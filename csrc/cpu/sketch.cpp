// CPU sketching kernels (see sl/sketch.h): counter-based random fills, the sparse sign
// table, and a CSR operator applied to the rows of a batch of matrices (the sparse sign
// sketch from either side, and its adjoint). OpenMP loops whose results do not depend on
// the thread count: every output element is produced by one thread in a fixed order.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "sl/csr_gather.h"
#include "sl/dtype.h"
#include "sl/gauss_block.h"
#include "sl/isa.h"
#include "sl/parallel.h"
#include "sl/philox.h"
#include "sl/sketch.h"

namespace sl {
namespace {

// below this much work an OpenMP team costs more than it saves
constexpr std::int64_t kParallelMin = 1 << 15;

// Gaussian entries (i, 2p0 .. 2p0 + 2 kGaussLanes - 1) of row i (sl/gauss_block.h), stored
// (scaled, converted) up to column C
template <typename T>
SL_ALWAYS_INLINE inline void gauss_store(std::uint64_t seed, std::uint32_t tag, double scale, const Mat3View& o,
                                         std::int64_t i, std::int64_t p0) {
  using A = typename acc_type<T>::type;
  alignas(64) double ev[kGaussLanes], od[kGaussLanes];
  gauss_block(seed, tag, static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(p0), ev, od);
  T* row = static_cast<T*>(o.data) + i * o.sr;
  const std::int64_t j0 = 2 * p0, nj = std::min<std::int64_t>(2 * kGaussLanes, o.C - j0);
  if (o.sc == 1 && nj == 2 * kGaussLanes) {  // a whole block of a contiguous row: interleaved vector stores
    T* dst = row + j0;
#pragma omp simd
    for (int t = 0; t < kGaussLanes; ++t) {
      store_acc(dst + 2 * t, static_cast<A>(scale * ev[t]));
      store_acc(dst + 2 * t + 1, static_cast<A>(scale * od[t]));
    }
    return;
  }
  for (std::int64_t t = 0; t < nj; ++t) {
    const double v = (t & 1) ? od[t >> 1] : ev[t >> 1];
    store_acc(row + (j0 + t) * o.sc, static_cast<A>(scale * v));
  }
}

// blocks q0 .. q1 - 1 in (row, block) order, nblk blocks a row
template <typename T>
SL_ALWAYS_INLINE inline void gauss_range(std::uint64_t seed, std::uint32_t tag, double scale, const Mat3View& o,
                                         std::int64_t q0, std::int64_t q1, std::int64_t nblk) {
  for (std::int64_t q = q0; q < q1; ++q) gauss_store<T>(seed, tag, scale, o, q / nblk, (q % nblk) * kGaussLanes);
}

template <typename T>
void gauss_rows(std::uint64_t seed, std::uint32_t tag, double scale, const Mat3View& o, std::int64_t q0,
                std::int64_t q1, std::int64_t nblk) {
  gauss_range<T>(seed, tag, scale, o, q0, q1, nblk);
}
#ifdef SL_X86_DISPATCH
template <typename T>
SL_TARGET_AVX2 void gauss_rows_avx2(std::uint64_t seed, std::uint32_t tag, double scale, const Mat3View& o,
                                    std::int64_t q0, std::int64_t q1, std::int64_t nblk) {
  gauss_range<T>(seed, tag, scale, o, q0, q1, nblk);
}
template <typename T>
SL_TARGET_AVX512 void gauss_rows_avx512(std::uint64_t seed, std::uint32_t tag, double scale, const Mat3View& o,
                                        std::int64_t q0, std::int64_t q1, std::int64_t nblk) {
  gauss_range<T>(seed, tag, scale, o, q0, q1, nblk);
}
#endif

// The Gaussian kind in blocks of kGaussLanes pairs of a row, (row, block) pairs split
// statically over the threads (the values do not depend on the split). Measured on an AMD
// EPYC (2 threads), float32, ns an entry: 5461 x 266 1.9, 4096 x 256 1.4 (torch.randn, one
// thread of mt19937: 2.6); the scalar libm Box-Muller of rand_entry took 12.7. A whole block
// of a contiguous row is stored as interleaved vectors: on the AMX Xeon (2 threads) 1.93-1.98
// against 2.57-2.89 ns an entry with one scalar store each (672 x 512, 74 x 2048, 266 x
// 5461; torch.randn 2.7-2.9). On an AMD EPYC with AVX2 only (2 threads) the loop of
// gauss_block was scalar (a 64-bit integer -> double conversion and a select GCC does not
// if-convert there): 9.8-10.3 ns an entry; vectorized, 3.8-4.2 (torch.randn 3.9; the same
// values bit for bit, 3000 x 1001 float64 compared).
template <typename T>
Status fill_gauss(std::uint64_t seed, std::uint32_t tag, double scale, const Mat3View& o) {
  void (*fn)(std::uint64_t, std::uint32_t, double, const Mat3View&, std::int64_t, std::int64_t, std::int64_t) =
      &gauss_rows<T>;
#ifdef SL_X86_DISPATCH
  if (isa_level() == 2) fn = &gauss_rows_avx512<T>;
  else if (isa_level() == 1) fn = &gauss_rows_avx2<T>;
#endif
  const std::int64_t nblk = (o.C + 2 * kGaussLanes - 1) / (2 * kGaussLanes);
  const std::int64_t total = o.R * nblk;
  const std::int64_t chunk = 64;  // blocks per task
  const std::int64_t ntask = (total + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (o.R * o.C > kParallelMin)
  for (std::int64_t t = 0; t < ntask; ++t) fn(seed, tag, scale, o, t * chunk, std::min(total, (t + 1) * chunk), nblk);
  return Status::ok();
}

template <typename T>
Status fill(int kind, std::uint64_t seed, std::uint32_t tag, double scale, const Mat3View& o) {
  if (kind == static_cast<int>(RandKind::Gaussian)) return fill_gauss<T>(seed, tag, scale, o);
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

#if defined(__GNUC__) && !defined(__clang__)
#define SL_SKETCH_SHUFFLE 1
typedef float v16f __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));

// dst (16 x 16, rows contiguous) = the transpose of the 16 x 16 float block at src (row
// stride ld), in registers: four stages of pairwise shuffles (blocks of 8, 4, 2, 1), each
// swapping the off-diagonal blocks of every 2b x 2b block (GCC's __builtin_shuffle)
SL_ALWAYS_INLINE inline void transpose16(const float* __restrict src, std::int64_t ld, float* __restrict dst) {
  static const v16i lo8 = {0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23};
  static const v16i hi8 = {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31};
  static const v16i lo4 = {0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27};
  static const v16i hi4 = {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31};
  static const v16i lo2 = {0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29};
  static const v16i hi2 = {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31};
  static const v16i lo1 = {0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30};
  static const v16i hi1 = {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31};
  v16f r[16];
  for (int i = 0; i < 16; ++i) std::memcpy(&r[i], src + i * ld, sizeof(v16f));
  const v16i* lo[4] = {&lo8, &lo4, &lo2, &lo1};
  const v16i* hi[4] = {&hi8, &hi4, &hi2, &hi1};
  for (int st = 0; st < 4; ++st) {
    const int b = 8 >> st;
    for (int i = 0; i < 16; ++i) {
      if ((i / b) % 2) continue;
      const v16f a = r[i], c = r[i + b];
      r[i] = __builtin_shuffle(a, c, *lo[st]);
      r[i + b] = __builtin_shuffle(a, c, *hi[st]);
    }
  }
  for (int i = 0; i < 16; ++i) std::memcpy(dst + i * 16, &r[i], sizeof(v16f));
}

// The same 16 x 16 transpose as four 8 x 8 ones in 32-byte vectors, for the AVX2 target:
// there GCC lowers the 64-byte shuffles of transpose16 element by element (1.5-1.9 us a
// tile against 67-70 ns this way, one core of an AMD EPYC without AVX-512; the same output)
typedef float v8f __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

SL_ALWAYS_INLINE inline void transpose8(const float* __restrict src, std::int64_t ld, float* __restrict dst,
                                        std::int64_t ldd) {
  const v8i a0 = {0, 8, 1, 9, 4, 12, 5, 13}, a1 = {2, 10, 3, 11, 6, 14, 7, 15};
  const v8i b0 = {0, 1, 8, 9, 4, 5, 12, 13}, b1 = {2, 3, 10, 11, 6, 7, 14, 15};
  const v8i c0 = {0, 1, 2, 3, 8, 9, 10, 11}, c1 = {4, 5, 6, 7, 12, 13, 14, 15};
  v8f r[8], t[8];
  for (int i = 0; i < 8; ++i) std::memcpy(&r[i], src + i * ld, sizeof(v8f));
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shuffle(r[i], r[i + 1], a0);
    t[i + 1] = __builtin_shuffle(r[i], r[i + 1], a1);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = __builtin_shuffle(t[i], t[i + 2], b0);
    r[i + 1] = __builtin_shuffle(t[i], t[i + 2], b1);
    r[i + 2] = __builtin_shuffle(t[i + 1], t[i + 3], b0);
    r[i + 3] = __builtin_shuffle(t[i + 1], t[i + 3], b1);
  }
  for (int j = 0; j < 4; ++j) {
    const v8f lo = __builtin_shuffle(r[j], r[j + 4], c0), hi = __builtin_shuffle(r[j], r[j + 4], c1);
    std::memcpy(dst + j * ldd, &lo, sizeof(v8f));
    std::memcpy(dst + (j + 4) * ldd, &hi, sizeof(v8f));
  }
}

SL_ALWAYS_INLINE inline void transpose16_by8(const float* __restrict src, std::int64_t ld, float* __restrict dst) {
  for (int bi = 0; bi < 2; ++bi)
    for (int bj = 0; bj < 2; ++bj) transpose8(src + bi * 8 * ld + bj * 8, ld, dst + bj * 8 * 16 + bi * 8, 16);
}
#endif

// rows [r0, r0 + nr) of batch b (nr <= kLanes): the tile copied (and converted to the
// accumulation type) into buf (C x kLanes, zero lanes beyond nr), then every output column
// from it. The sum over a column's nonzeros runs in a fixed order (two interleaved chains),
// whatever the thread count.
template <typename T, bool Wide>  // Wide: the AVX-512 target (64-byte vectors and shuffles)
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
    std::int64_t c0 = 0;
#ifdef SL_SKETCH_SHUFFLE
    if constexpr (std::is_same_v<T, float>) {  // full tiles of contiguous rows: 16 x 16 blocks in registers
      if (nr == kLanes && x.sc == 1)
        for (; c0 + 16 <= C; c0 += 16) {
          if constexpr (Wide) {
            transpose16(X + c0, x.sr, buf + c0 * kLanes);
          } else {
            transpose16_by8(X + c0, x.sr, buf + c0 * kLanes);
          }
        }
    }
#endif
    for (std::int64_t q = 0; q < kLanes; ++q) {
      A* bq = buf + q;
      if (q < nr) {
        const T* xq = X + q * x.sr;
        for (std::int64_t c = c0; c < C; ++c) bq[c * kLanes] = load_acc(xq + c * x.sc);
      } else {
        for (std::int64_t c = c0; c < C; ++c) bq[c * kLanes] = A(0);
      }
    }
  }
  alignas(64) A out[kLanes];
  for (std::int64_t j = 0; j < a.J; ++j) {
    csr_gather<kLanes, Wide ? 64 : 32>(a.ptr[j], a.ptr[j + 1], a.cols, vals, buf, kLanes, out);  // sl/csr_gather.h
    T* yj = Y + j * y.sc;
    for (std::int64_t q = 0; q < nr; ++q) store_acc(yj + q * y.sr, out[q]);
  }
}

template <typename T>
void tile_base(const Mat3View& x, const CsrView& a, const Mat3View& y, std::int64_t b, std::int64_t r0,
               std::int64_t nr, typename acc_type<T>::type* buf) {
  tile_body<T, false>(x, a, y, b, r0, nr, buf);
}
#ifdef SL_X86_DISPATCH
template <typename T>
SL_TARGET_AVX2 void tile_avx2(const Mat3View& x, const CsrView& a, const Mat3View& y, std::int64_t b, std::int64_t r0,
                              std::int64_t nr, typename acc_type<T>::type* buf) {
  tile_body<T, false>(x, a, y, b, r0, nr, buf);
}
template <typename T>
SL_TARGET_AVX512 void tile_avx512(const Mat3View& x, const CsrView& a, const Mat3View& y, std::int64_t b,
                                  std::int64_t r0, std::int64_t nr, typename acc_type<T>::type* buf) {
  tile_body<T, true>(x, a, y, b, r0, nr, buf);
}
#endif

// Y = X Omega for every row of every batch element, in tiles of kLanes rows (the OpenMP
// region stays outside the per-ISA tile functions, so that its outlined body is not
// compiled for the baseline ISA only). Measured on an AMD EPYC (AVX-512, 2 threads, one
// process round-robin): the sparse sign sketch of a 1024 x 4096 float32 matrix to 256
// columns (zeta = 8) takes 3.0 ms against 11.1 ms for the dense Gaussian GEMM (before: 8-row
// tiles of scalar accumulators in the baseline ISA, 16.6 ms against 15.5 ms; 4.1 ms with
// the scalar transposition into the tile buffer); 2048 x 16384 to 512: 20.7 against 195 ms.
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
