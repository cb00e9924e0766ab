// CPU Walsh-Hadamard transform. Same decomposition as the CUDA kernel: each row is
// copied into an accumulation buffer, every chunk of fwht_local_len() elements is
// transformed locally (cache resident), then the stages above the chunk run as radix-4
// passes over the row. OpenMP over rows.
#include <cmath>
#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "sl/dtype.h"
#include "sl/fwht.h"
#include "sl/parallel.h"

namespace sl {
namespace {

// stages h and 2h at once over x[0, m): m a multiple of 4h
template <typename A>
inline void radix4_stage(A* __restrict x, std::int64_t m, std::int64_t h) {
  for (std::int64_t i = 0; i < m; i += 4 * h) {
    A* __restrict p0 = x + i;
    A* __restrict p1 = p0 + h;
    A* __restrict p2 = p1 + h;
    A* __restrict p3 = p2 + h;
#pragma omp simd
    for (std::int64_t j = 0; j < h; ++j) {
      const A a = p0[j] + p1[j], b = p0[j] - p1[j];
      const A c = p2[j] + p3[j], d = p2[j] - p3[j];
      p0[j] = a + c;
      p2[j] = a - c;
      p1[j] = b + d;
      p3[j] = b - d;
    }
  }
}

template <typename A>
inline void radix2_stage(A* __restrict x, std::int64_t m, std::int64_t h) {
  for (std::int64_t i = 0; i < m; i += 2 * h) {
    A* __restrict p0 = x + i;
    A* __restrict p1 = p0 + h;
#pragma omp simd
    for (std::int64_t j = 0; j < h; ++j) {
      const A a = p0[j], b = p1[j];
      p0[j] = a + b;
      p1[j] = a - b;
    }
  }
}

// the first three stages (h = 1, 2, 4) on groups of 8, unrolled
template <typename A>
inline void first_stages8(A* __restrict x, std::int64_t m) {
  for (std::int64_t i = 0; i < m; i += 8) {
    A* v = x + i;
    const A a0 = v[0] + v[1], a1 = v[0] - v[1], a2 = v[2] + v[3], a3 = v[2] - v[3];
    const A a4 = v[4] + v[5], a5 = v[4] - v[5], a6 = v[6] + v[7], a7 = v[6] - v[7];
    const A b0 = a0 + a2, b2 = a0 - a2, b1 = a1 + a3, b3 = a1 - a3;
    const A b4 = a4 + a6, b6 = a4 - a6, b5 = a5 + a7, b7 = a5 - a7;
    v[0] = b0 + b4; v[4] = b0 - b4; v[1] = b1 + b5; v[5] = b1 - b5;
    v[2] = b2 + b6; v[6] = b2 - b6; v[3] = b3 + b7; v[7] = b3 - b7;
  }
}

// stages h in [h0, m) over x[0, m)
template <typename A>
inline void stages_from(A* x, std::int64_t m, std::int64_t h) {
  for (; 4 * h <= m; h *= 4) radix4_stage(x, m, h);
  if (h < m) radix2_stage(x, m, h);
}

// the full transform of one chunk of length m (m a power of two)
template <typename A>
inline void local_transform(A* x, std::int64_t m) {
  if (m >= 8) {
    first_stages8(x, m);
    stages_from(x, m, std::int64_t{8});
  } else {
    stages_from(x, m, std::int64_t{1});
  }
}

// One row in the accumulation buffer: every chunk locally, then the stages above the
// chunk. Compiled twice on x86-64 (AVX2 and baseline) and picked at load time, so the
// wheel stays portable while the butterflies use 8-wide vectors where the CPU has them.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SL_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SL_CPU_CLONES
#endif

template <typename A>
inline void transform_row_impl(A* buf, std::int64_t n, std::int64_t L) {
  for (std::int64_t c = 0; c < n; c += L) local_transform(buf + c, L);
  if (L < n) stages_from(buf, n, L);
}

SL_CPU_CLONES void transform_row(float* buf, std::int64_t n, std::int64_t L) { transform_row_impl(buf, n, L); }
SL_CPU_CLONES void transform_row(double* buf, std::int64_t n, std::int64_t L) { transform_row_impl(buf, n, L); }

template <typename T>
Status run(const RowsView& in, const RowsView& out, double scale, std::int64_t local_len) {
  using A = typename acc_type<T>::type;
  const std::int64_t n = in.len;
  const std::int64_t rows = in.rows();
  const std::int64_t L = n < local_len ? n : local_len;
  const int nthreads = max_threads();
  std::vector<A> scratch;
  try {
    scratch.resize(static_cast<std::size_t>(n) * static_cast<std::size_t>(nthreads));
  } catch (const std::bad_alloc&) {
    return invalid_argument("fwht: cannot allocate a host scratch buffer of " +
                            std::to_string(n) + " x " + std::to_string(nthreads) + " elements");
  }
  const T* src = static_cast<const T*>(in.data);
  T* dst = static_cast<T*>(out.data);
  const A s = static_cast<A>(scale);
#pragma omp parallel num_threads(nthreads)
  {
    A* buf = scratch.data() + static_cast<std::size_t>(thread_id()) * static_cast<std::size_t>(n);
#pragma omp for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* x = src + in.row_offset(r);
      if (in.s_elem == 1) {
        for (std::int64_t i = 0; i < n; ++i) buf[i] = load_acc(x + i);
      } else {
        for (std::int64_t i = 0; i < n; ++i) buf[i] = load_acc(x + i * in.s_elem);
      }
      transform_row(buf, n, L);
      T* y = dst + out.row_offset(r);
      for (std::int64_t i = 0; i < n; ++i) store_acc(y + i * out.s_elem, buf[i] * s);
    }
  }
  return Status::ok();
}

}  // namespace

Status fwht_cpu(int dtype, const RowsView& in, const RowsView& out, double scale) {
  SL_REQUIRE(in.len >= 1 && (in.len & (in.len - 1)) == 0,
             "fwht: length must be a power of two, got " + std::to_string(in.len));
  SL_REQUIRE(out.len == in.len && out.rows() == in.rows(), "fwht: output view does not match input");
  if (in.rows() == 0) return Status::ok();
  SL_REQUIRE(in.data != nullptr && out.data != nullptr, "fwht: null data pointer");
  const std::int64_t local = fwht_local_len(dtype);
  return dispatch_float(dtype, "fwht", [&](auto tag) {
    using T = decltype(tag);
    return run<T>(in, out, scale, local);
  });
}

}  // namespace sl
