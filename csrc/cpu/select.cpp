// CPU gather / scatter of rows with an optional per-row scale. Gathers copy whole rows
// (memcpy when unscaled and contiguous), OpenMP over rows split statically (each thread
// one contiguous block of output rows: measured 2-4% faster than dynamic chunks of rows on
// an AMD EPYC, 2 threads). Scatters, whose runs differ in cost, hand out chunks
// dynamically (a thread descheduled on a shared machine does not hold the others up);
// into existing data they run over (batch, run of equal indices, column block); a scatter into
// fresh data (zero_fill) runs over (batch, block of output rows), writing every row once:
// zero, or the sum of its run. Each output row is owned by one thread and summed in
// increasing j whatever the thread count.
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "sl/dtype.h"
#include "sl/select.h"

namespace sl {
namespace {

constexpr std::int64_t kColBlock = 512;
// below this many elements an OpenMP team costs more than it saves
constexpr std::int64_t kParallelMin = 1 << 15;
// about this many elements per scheduled chunk of rows
constexpr std::int64_t kChunkElems = 1 << 14;

inline std::int64_t chunk_rows(std::int64_t C) { return C >= kChunkElems ? 1 : kChunkElems / (C > 0 ? C : 1); }

// One pass over the index rows: the first index outside [0, rows) and whether every
// index row is strictly increasing.
bool bad_index(const RowIndex& ix, std::int64_t B, std::int64_t rows, std::int64_t* which, bool* increasing) {
  const std::int64_t nb = ix.idx_sb == 0 ? 1 : B;
  bool inc = true;
  for (std::int64_t b = 0; b < nb; ++b) {
    const std::int64_t* ib = ix.idx + b * ix.idx_sb;
    std::int64_t prev = -1;
    for (std::int64_t j = 0; j < ix.K; ++j) {
      const std::int64_t r = ib[j];
      if (r < 0 || r >= rows) {
        *which = r;
        return true;
      }
      inc = inc && r > prev;
      prev = r;
    }
  }
  if (increasing != nullptr) *increasing = inc;
  return false;
}

std::string bad_index_message(const char* op, std::int64_t bad, std::int64_t rows) {
  return std::string(op) + ": idx holds " + std::to_string(bad) + ", outside [0, " + std::to_string(rows) + ") for " +
         std::to_string(rows) + " rows";
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

// y[c] = x[c] * s (rounded once to T; s == nullptr: a copy)
template <typename T>
inline void scale_row(const T* __restrict x, std::int64_t xsc, const T* s, T* __restrict y, std::int64_t ysc,
                      std::int64_t C) {
  using A = typename acc_type<T>::type;
  if (xsc == 1 && ysc == 1) {
    if (s == nullptr) {
      std::memcpy(y, x, static_cast<std::size_t>(C) * sizeof(T));
    } else {
      const A sv = load_acc(s);
      for (std::int64_t c = 0; c < C; ++c) store_acc(y + c, static_cast<A>(load_acc(x + c) * sv));
    }
    return;
  }
  if (s == nullptr) {
    for (std::int64_t c = 0; c < C; ++c) y[c * ysc] = x[c * xsc];
  } else {
    const A sv = load_acc(s);
    for (std::int64_t c = 0; c < C; ++c) store_acc(y + c * ysc, static_cast<A>(load_acc(x + c * xsc) * sv));
  }
}

// y[c] = 0 + x[c] * s: one index into a zero row (0 + v, not v: -0 becomes +0 as in
// zeros + index_add_)
template <typename T>
inline void add_row_to_zero(const T* __restrict x, std::int64_t xsc, const T* s, T* __restrict y, std::int64_t ysc,
                            std::int64_t C) {
  using A = typename acc_type<T>::type;
  if (xsc == 1 && ysc == 1) {  // the common case, in a form the compiler vectorizes
    if (s == nullptr) {
      for (std::int64_t c = 0; c < C; ++c) store_acc(y + c, static_cast<A>(A(0) + load_acc(x + c)));
    } else {
      for (std::int64_t c = 0; c < C; ++c) store_acc(y + c, static_cast<A>(A(0) + scaled(x + c, s)));
    }
  } else if (s == nullptr) {
    for (std::int64_t c = 0; c < C; ++c) store_acc(y + c * ysc, static_cast<A>(A(0) + load_acc(x + c * xsc)));
  } else {
    for (std::int64_t c = 0; c < C; ++c) store_acc(y + c * ysc, static_cast<A>(A(0) + scaled(x + c * xsc, s)));
  }
}

template <typename T>
inline void zero_rows(T* O, const Mat3View& out, std::int64_t b, std::int64_t r0, std::int64_t r1) {
  if (r1 <= r0) return;
  T* y = O + b * out.sb + r0 * out.sr;
  if (out.sc == 1 && out.sr == out.C) {
    std::memset(static_cast<void*>(y), 0, static_cast<std::size_t>((r1 - r0) * out.C) * sizeof(T));
    return;
  }
  for (std::int64_t r = r0; r < r1; ++r, y += out.sr) {
    if (out.sc == 1) {
      std::memset(static_cast<void*>(y), 0, static_cast<std::size_t>(out.C) * sizeof(T));
    } else {
      for (std::int64_t c = 0; c < out.C; ++c) y[c * out.sc] = T{};
    }
  }
}

// An output about to be written whole (a gather's, a zero_fill scatter's): ask for
// transparent huge pages on its 2 MiB-aligned interior, so first touch takes one fault
// per 2 MiB instead of one per 4 KiB (on fresh memory the faults, not the stores, are most
// of the cost). Only for outputs this large, which glibc's malloc maps on their own (the
// hint stays with the address range, so it should not land on a shared heap). A no-op
// where THP is off; failures are ignored (contents are unaffected either way).
constexpr std::size_t kHugePage = std::size_t(2) << 20;
constexpr std::size_t kHugeAdviseMin = std::size_t(32) << 20;

void advise_huge_pages(void* data, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes < kHugeAdviseMin) return;
  const std::uintptr_t p = reinterpret_cast<std::uintptr_t>(data);
  const std::uintptr_t a = (p + kHugePage - 1) & ~(kHugePage - 1), e = (p + bytes) & ~(kHugePage - 1);
  if (e > a) (void)madvise(reinterpret_cast<void*>(a), e - a, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

template <typename T>
Status gather(const Mat3View& src, const RowIndex& ix, const Mat3View& out) {
  const T* S = static_cast<const T*>(src.data);
  T* O = static_cast<T*>(out.data);
  const T* sc = static_cast<const T*>(ix.scale);
  const std::int64_t B = src.B, K = ix.K, C = src.C, N = B * K;
  if (out.sc == 1 && out.sr == C && out.sb == K * C)  // every element of out is written
    advise_huge_pages(out.data, static_cast<std::size_t>(N * C) * sizeof(T));
#pragma omp parallel for schedule(static) if (N * C > kParallelMin)
  for (std::int64_t t = 0; t < N; ++t) {
    const std::int64_t b = t / K, j = t - b * K;
    const std::int64_t r = ix.idx[b * ix.idx_sb + j];
    const T* s = sc ? sc + b * ix.scale_sb + j : nullptr;
    scale_row(S + b * src.sb + r * src.sr, src.sc, s, O + b * out.sb + j * out.sr, out.sc, C);
  }
  return Status::ok();
}

// accumulate into existing out
template <typename T>
Status scatter_add(const Mat3View& x, const RowIndex& ix, const std::int64_t* order, const Mat3View& out) {
  using A = typename acc_type<T>::type;
  const T* X = static_cast<const T*>(x.data);
  T* O = static_cast<T*>(out.data);
  const T* sc = static_cast<const T*>(ix.scale);
  const std::int64_t B = x.B, K = ix.K, C = x.C;
  const std::int64_t nblk = (C + kColBlock - 1) / kColBlock;
  const std::int64_t cblk = order == nullptr ? C : kColBlock;  // runs stay in one block of columns
  const std::int64_t ncb = order == nullptr ? 1 : nblk;
#pragma omp parallel for schedule(dynamic, chunk_rows(cblk)) collapse(3) if (B * K * C > kParallelMin)
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

// out = 0, then the scatter: every element of out written once. The indices are visited
// in sorted order (idx itself when strictly increasing, order == nullptr; else through
// order), so each block of output rows finds its runs by a binary search.
template <typename T>
Status scatter_fresh(const Mat3View& x, const RowIndex& ix, const std::int64_t* order, const Mat3View& out) {
  using A = typename acc_type<T>::type;
  const T* X = static_cast<const T*>(x.data);
  T* O = static_cast<T*>(out.data);
  const T* sc = static_cast<const T*>(ix.scale);
  const std::int64_t B = out.B, K = ix.K, C = out.C, R = out.R;
  const std::int64_t rows_per = chunk_rows(C);
  const std::int64_t nch = (R + rows_per - 1) / rows_per;
#pragma omp parallel for schedule(dynamic, 1) if (B * R * C > kParallelMin)
  for (std::int64_t t = 0; t < B * nch; ++t) {
    const std::int64_t b = t / nch, r0 = (t - b * nch) * rows_per, r1 = r0 + rows_per < R ? r0 + rows_per : R;
    const std::int64_t* ib = ix.idx + b * ix.idx_sb;
    const std::int64_t* ob = order == nullptr ? nullptr : order + (ix.idx_sb == 0 ? 0 : b * K);
    auto j_at = [&](std::int64_t p) { return ob == nullptr ? p : ob[p]; };  // j at sorted position p
    auto row_at = [&](std::int64_t p) { return ib[j_at(p)]; };
    std::int64_t lo = 0, hi = K;  // first sorted position with row >= r0
    while (lo < hi) {
      const std::int64_t mid = lo + (hi - lo) / 2;
      if (row_at(mid) < r0) lo = mid + 1; else hi = mid;
    }
    std::int64_t p = lo, r = r0;
    while (r < r1) {
      const std::int64_t nxt = p < K && row_at(p) < r1 ? row_at(p) : r1;
      zero_rows(O, out, b, r, nxt);
      if (nxt == r1) break;
      std::int64_t q = p + 1;  // the run [p, q) of index nxt
      while (q < K && row_at(q) == nxt) ++q;
      T* y = O + b * out.sb + nxt * out.sr;
      if (q == p + 1) {
        const std::int64_t j = j_at(p);
        add_row_to_zero(X + b * x.sb + j * x.sr, x.sc, sc ? sc + b * ix.scale_sb + j : nullptr, y, out.sc, C);
      } else {
        A acc[kColBlock];
        for (std::int64_t c0 = 0; c0 < C; c0 += kColBlock) {
          const std::int64_t c1 = c0 + kColBlock < C ? c0 + kColBlock : C;
          for (std::int64_t c = c0; c < c1; ++c) acc[c - c0] = A(0);
          for (std::int64_t pp = p; pp < q; ++pp) {
            const std::int64_t j = j_at(pp);
            const T* xs = X + b * x.sb + j * x.sr;
            const T* s = sc ? sc + b * ix.scale_sb + j : nullptr;
            for (std::int64_t c = c0; c < c1; ++c) acc[c - c0] += scaled(xs + c * x.sc, s);
          }
          for (std::int64_t c = c0; c < c1; ++c) store_acc(y + c * out.sc, acc[c - c0]);
        }
      }
      p = q;
      r = nxt + 1;
    }
  }
  return Status::ok();
}

template <typename T>
Status zero_all(const Mat3View& out) {
  T* O = static_cast<T*>(out.data);
#pragma omp parallel for schedule(dynamic, 1) if (out.B * out.R * out.C > kParallelMin)
  for (std::int64_t b = 0; b < out.B; ++b) zero_rows(O, out, b, 0, out.R);
  return Status::ok();
}

}  // namespace

Status check_row_index_cpu(const char* op, const RowIndex& ix, std::int64_t B, std::int64_t rows, bool* increasing) {
  *increasing = true;
  if (B == 0 || ix.K == 0) return Status::ok();
  SL_REQUIRE(ix.idx != nullptr, std::string(op) + ": null index pointer");
  std::int64_t bad = 0;
  SL_REQUIRE(!bad_index(ix, B, rows, &bad, increasing), bad_index_message(op, bad, rows));
  return Status::ok();
}

Status gather_rows_cpu(int dtype, const Mat3View& src, const RowIndex& ix, const Mat3View& out) {
  SL_RETURN_IF_ERROR(check_gather_args("gather_rows", src, ix, out));
  SL_REQUIRE(out.R == ix.K, "gather_rows: output rows must equal the index count");
  if (src.B == 0 || ix.K == 0 || src.C == 0) return Status::ok();
  SL_REQUIRE(src.data != nullptr && out.data != nullptr, "gather_rows: null data pointer");
  std::int64_t bad = 0;
  SL_REQUIRE(!bad_index(ix, src.B, src.R, &bad, nullptr), bad_index_message("gather_rows", bad, src.R));
  return dispatch_float(dtype, "gather_rows", [&](auto tag) { return gather<decltype(tag)>(src, ix, out); });
}

Status scatter_rows_cpu(int dtype, const Mat3View& x, const RowIndex& ix, const std::int64_t* order,
                        const Mat3View& out, bool zero_fill) {
  SL_RETURN_IF_ERROR(check_gather_args("scatter_rows", x, ix, out));
  SL_REQUIRE(x.R == ix.K, "scatter_rows: input rows must equal the index count");
  if (out.B == 0 || out.R == 0 || out.C == 0) return Status::ok();
  SL_REQUIRE(out.data != nullptr, "scatter_rows: null data pointer");
  if (ix.K == 0) {
    if (!zero_fill) return Status::ok();
    return dispatch_float(dtype, "scatter_rows", [&](auto tag) { return zero_all<decltype(tag)>(out); });
  }
  SL_REQUIRE(x.data != nullptr, "scatter_rows: null data pointer");
  std::int64_t bad = 0;
  bool increasing = true;
  SL_REQUIRE(!bad_index(ix, x.B, out.R, &bad, &increasing), bad_index_message("scatter_rows", bad, out.R));
  return dispatch_float(dtype, "scatter_rows", [&](auto tag) {
    using T = decltype(tag);
    if (!zero_fill) return scatter_add<T>(x, ix, order, out);
    if (out.sc == 1 && out.sr == out.C && out.sb == out.R * out.C)
      advise_huge_pages(out.data, static_cast<std::size_t>(out.B * out.R * out.C) * sizeof(T));
    if (order != nullptr || increasing) return scatter_fresh<T>(x, ix, order, out);
    // unique but unsorted indices without an order: zero, then accumulate
    SL_RETURN_IF_ERROR(zero_all<T>(out));
    return scatter_add<T>(x, ix, nullptr, out);
  });
}

}  // namespace sl
