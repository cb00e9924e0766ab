// CPU block Lanczos basis expansion (contract in sl/lanczos.h): per step one product of
// the pending block with the operator (the CSR kernel of spmv.cpp, or a GEMV that reads
// A once for the whole block), classical Gram-Schmidt twice against the basis rows and
// the new rows, the norms and the new rows. Every reduction over the n entries
// is split into fixed chunks of lanczos_chunk(n) entries (OpenMP over chunks when there are
// several), partial sums added in chunk order in double: results do not depend on the
// thread count. The chunk kernels are compiled for AVX2+FMA too and picked at run time.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "sl/dtype.h"
#include "sl/isa.h"
#include "sl/lanczos.h"
#include "sl/parallel.h"
#include "sl/philox.h"
#include "sl/spmv.h"

// the 32-byte vector values below live in always-inline helpers only: no call passes them
// across an ABI boundary (GCC notes the AVX-less ABI of such returns on the baseline build)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace sl {
namespace {

using i64 = std::int64_t;

// Four dot products at once (four accumulator chains: a single chain is latency-bound).
template <typename T>
SL_ALWAYS_INLINE inline void dot4(const T* __restrict a0, const T* __restrict a1, const T* __restrict a2,
                                  const T* __restrict a3, const T* __restrict b0, const T* __restrict b1,
                                  const T* __restrict b2, const T* __restrict b3, i64 lo, i64 hi, double* out) {
  T s0 = T(0), s1 = T(0), s2 = T(0), s3 = T(0);
#pragma omp simd reduction(+ : s0, s1, s2, s3)
  for (i64 t = lo; t < hi; ++t) {
    s0 += a0[t] * b0[t];
    s1 += a1[t] * b1[t];
    s2 += a2[t] * b2[t];
    s3 += a3[t] * b3[t];
  }
  out[0] = static_cast<double>(s0);
  out[1] = static_cast<double>(s1);
  out[2] = static_cast<double>(s2);
  out[3] = static_cast<double>(s3);
}

template <typename T>
SL_ALWAYS_INLINE inline double dot1(const T* __restrict a, const T* __restrict b, i64 lo, i64 hi) {
  T s = T(0);
#pragma omp simd reduction(+ : s)
  for (i64 t = lo; t < hi; ++t) s += a[t] * b[t];
  return static_cast<double>(s);
}

// c[i] = rows_i[lo:hi] . w[lo:hi] for i < r (rows_i at V + i * n)
template <typename T>
SL_ALWAYS_INLINE inline void dots_body(const T* __restrict V, i64 n, i64 r, const T* __restrict w, i64 lo, i64 hi,
                                       double* __restrict c) {
  i64 i = 0;
  for (; i + 4 <= r; i += 4) {
    const T* v = V + i * n;
    dot4(v, v + n, v + 2 * n, v + 3 * n, w, w, w, w, lo, hi, c + i);
  }
  for (; i < r; ++i) c[i] = dot1(V + i * n, w, lo, hi);
}

// w[lo:hi] -= sum_i c[i] rows_i[lo:hi]
template <typename T>
SL_ALWAYS_INLINE inline void update_body(const T* __restrict V, i64 n, i64 r, const double* __restrict c,
                                         T* __restrict w, i64 lo, i64 hi) {
  for (i64 i = 0; i < r; ++i) {
    const T* __restrict v = V + i * n;
    const T ci = static_cast<T>(c[i]);
#pragma omp simd
    for (i64 t = lo; t < hi; ++t) w[t] -= ci * v[t];
  }
}

// 32-byte GCC vector values (two 128-bit halves on the baseline ISA, one register with AVX2)
template <typename T>
struct V32 {
  typedef T type __attribute__((vector_size(32)));
  static constexpr i64 n = 32 / sizeof(T);
};
template <typename T>
using v32 = typename V32<T>::type;
template <typename T>
SL_ALWAYS_INLINE inline v32<T> vload(const T* p) {
  v32<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <typename T>
SL_ALWAYS_INLINE inline void vstore(T* p, v32<T> v) {
  std::memcpy(p, &v, sizeof(v));
}
template <typename T>
SL_ALWAYS_INLINE inline double hsum(v32<T> v) {
  double s = 0.0;
  for (i64 u = 0; u < V32<T>::n; ++u) s += static_cast<double>(v[u]);
  return s;
}

// c[i p + s] = rows_i[lo:hi] . w_s[lo:hi] for i < r, s < p (w_s at W + s n): tiles of two
// rows by four columns in eight vector accumulators (a GEMM-like micro-kernel: six loads
// per eight multiply-adds), the edges through dot4/dot1
template <typename T>
SL_ALWAYS_INLINE inline void block_dots_body(const T* __restrict V, i64 n, i64 r, const T* __restrict W, i64 p,
                                             i64 lo, i64 hi, double* __restrict c) {
  constexpr i64 L = V32<T>::n;
  const i64 p4 = p - p % 4, r2 = r - r % 2;
  const i64 tv = lo + (hi - lo) / L * L;
  for (i64 i = 0; i < r2; i += 2) {
    const T* v0 = V + i * n;
    const T* v1 = v0 + n;
    for (i64 s = 0; s < p4; s += 4) {
      const T* w0 = W + s * n;
      const T* w1 = w0 + n;
      const T* w2 = w1 + n;
      const T* w3 = w2 + n;
      v32<T> a00 = {}, a01 = {}, a02 = {}, a03 = {}, a10 = {}, a11 = {}, a12 = {}, a13 = {};
      for (i64 t = lo; t < tv; t += L) {
        const v32<T> x0 = vload(v0 + t), x1 = vload(v1 + t);
        const v32<T> y0 = vload(w0 + t), y1 = vload(w1 + t), y2 = vload(w2 + t), y3 = vload(w3 + t);
        a00 += x0 * y0;
        a01 += x0 * y1;
        a02 += x0 * y2;
        a03 += x0 * y3;
        a10 += x1 * y0;
        a11 += x1 * y1;
        a12 += x1 * y2;
        a13 += x1 * y3;
      }
      double* c0 = c + i * p + s;
      double* c1 = c0 + p;
      c0[0] = hsum<T>(a00);
      c0[1] = hsum<T>(a01);
      c0[2] = hsum<T>(a02);
      c0[3] = hsum<T>(a03);
      c1[0] = hsum<T>(a10);
      c1[1] = hsum<T>(a11);
      c1[2] = hsum<T>(a12);
      c1[3] = hsum<T>(a13);
      for (i64 t = tv; t < hi; ++t) {
        for (int q = 0; q < 4; ++q) {
          c0[q] += static_cast<double>(v0[t] * W[(s + q) * n + t]);
          c1[q] += static_cast<double>(v1[t] * W[(s + q) * n + t]);
        }
      }
    }
    for (i64 s = p4; s < p; ++s) {
      c[i * p + s] = dot1(v0, W + s * n, lo, hi);
      c[(i + 1) * p + s] = dot1(v1, W + s * n, lo, hi);
    }
  }
  for (i64 i = r2; i < r; ++i) {
    const T* v = V + i * n;
    i64 s = 0;
    for (; s < p4; s += 4) {
      const T* w = W + s * n;
      dot4(v, v, v, v, w, w + n, w + 2 * n, w + 3 * n, lo, hi, c + i * p + s);
    }
    for (; s < p; ++s) c[i * p + s] = dot1(v, W + s * n, lo, hi);
  }
}

// w_s[lo:hi] -= sum_i c[i p + s] rows_i[lo:hi]: four columns by two vectors of entries in
// eight vector accumulators, every row of the basis streamed through them
template <typename T>
SL_ALWAYS_INLINE inline void block_update_body(const T* __restrict V, i64 n, i64 r, const double* __restrict c,
                                               T* __restrict W, i64 p, i64 lo, i64 hi) {
  constexpr i64 L = V32<T>::n;
  const i64 p4 = p - p % 4;
  const i64 tv = lo + (hi - lo) / (2 * L) * (2 * L);
  for (i64 s = 0; s < p4; s += 4) {
    T* w0 = W + s * n;
    T* w1 = w0 + n;
    T* w2 = w1 + n;
    T* w3 = w2 + n;
    for (i64 t = lo; t < tv; t += 2 * L) {
      v32<T> y00 = vload(w0 + t), y01 = vload(w0 + t + L), y10 = vload(w1 + t), y11 = vload(w1 + t + L);
      v32<T> y20 = vload(w2 + t), y21 = vload(w2 + t + L), y30 = vload(w3 + t), y31 = vload(w3 + t + L);
      for (i64 i = 0; i < r; ++i) {
        const T* v = V + i * n + t;
        const v32<T> x0 = vload(v), x1 = vload(v + L);
        const double* ci = c + i * p + s;
        const T c0 = static_cast<T>(ci[0]), c1 = static_cast<T>(ci[1]), c2 = static_cast<T>(ci[2]),
                c3 = static_cast<T>(ci[3]);
        y00 -= c0 * x0;
        y01 -= c0 * x1;
        y10 -= c1 * x0;
        y11 -= c1 * x1;
        y20 -= c2 * x0;
        y21 -= c2 * x1;
        y30 -= c3 * x0;
        y31 -= c3 * x1;
      }
      vstore(w0 + t, y00);
      vstore(w0 + t + L, y01);
      vstore(w1 + t, y10);
      vstore(w1 + t + L, y11);
      vstore(w2 + t, y20);
      vstore(w2 + t + L, y21);
      vstore(w3 + t, y30);
      vstore(w3 + t + L, y31);
    }
    for (i64 i = 0; i < r; ++i) {
      const T* v = V + i * n;
      for (int q = 0; q < 4; ++q) {
        const T cq = static_cast<T>(c[i * p + s + q]);
        T* w = W + (s + q) * n;
        for (i64 t = tv; t < hi; ++t) w[t] -= cq * v[t];
      }
    }
  }
  for (i64 s = p4; s < p; ++s) {
    T* w = W + s * n;
    for (i64 i = 0; i < r; ++i) {
      const T* __restrict v = V + i * n;
      const T ci = static_cast<T>(c[i * p + s]);
#pragma omp simd
      for (i64 t = lo; t < hi; ++t) w[t] -= ci * v[t];
    }
  }
}

// y_s[i] = A_i . x_s for rows i in [lo, hi) of a row-major A and the p rows x_s of X
// (row s at X + s n, of Y at Y + s n): each row of A read once for the whole block
template <typename T>
SL_ALWAYS_INLINE inline void gemv_body(const T* __restrict A, i64 lda, i64 n, const T* __restrict X, i64 p,
                                       T* __restrict Y, i64 lo, i64 hi) {
  double out[4];
  for (i64 i = lo; i < hi; ++i) {
    const T* a = A + i * lda;
    i64 s = 0;
    for (; s + 4 <= p; s += 4) {
      const T* x = X + s * n;
      dot4(a, a, a, a, x, x + n, x + 2 * n, x + 3 * n, 0, n, out);
      for (int q = 0; q < 4; ++q) Y[(s + q) * n + i] = static_cast<T>(out[q]);
    }
    for (; s < p; ++s) Y[s * n + i] = static_cast<T>(dot1(a, X + s * n, 0, n));
  }
}

template <typename T>
struct Kernels {
  void (*dots)(const T*, i64, i64, const T*, i64, i64, double*);
  void (*update)(const T*, i64, i64, const double*, T*, i64, i64);
  void (*block_dots)(const T*, i64, i64, const T*, i64, i64, i64, double*);
  void (*block_update)(const T*, i64, i64, const double*, T*, i64, i64, i64);
  void (*gemv)(const T*, i64, i64, const T*, i64, T*, i64, i64);
};

template <typename T>
void dots_base(const T* V, i64 n, i64 r, const T* w, i64 lo, i64 hi, double* c) { dots_body(V, n, r, w, lo, hi, c); }
template <typename T>
void update_base(const T* V, i64 n, i64 r, const double* c, T* w, i64 lo, i64 hi) {
  update_body(V, n, r, c, w, lo, hi);
}
template <typename T>
void block_dots_base(const T* V, i64 n, i64 r, const T* W, i64 p, i64 lo, i64 hi, double* c) {
  block_dots_body(V, n, r, W, p, lo, hi, c);
}
template <typename T>
void block_update_base(const T* V, i64 n, i64 r, const double* c, T* W, i64 p, i64 lo, i64 hi) {
  block_update_body(V, n, r, c, W, p, lo, hi);
}
template <typename T>
void gemv_base(const T* A, i64 lda, i64 n, const T* X, i64 p, T* Y, i64 lo, i64 hi) {
  gemv_body(A, lda, n, X, p, Y, lo, hi);
}
#ifdef SL_X86_DISPATCH
template <typename T>
SL_TARGET_AVX2 void dots_avx2(const T* V, i64 n, i64 r, const T* w, i64 lo, i64 hi, double* c) {
  dots_body(V, n, r, w, lo, hi, c);
}
template <typename T>
SL_TARGET_AVX2 void update_avx2(const T* V, i64 n, i64 r, const double* c, T* w, i64 lo, i64 hi) {
  update_body(V, n, r, c, w, lo, hi);
}
template <typename T>
SL_TARGET_AVX2 void block_dots_avx2(const T* V, i64 n, i64 r, const T* W, i64 p, i64 lo, i64 hi, double* c) {
  block_dots_body(V, n, r, W, p, lo, hi, c);
}
template <typename T>
SL_TARGET_AVX2 void block_update_avx2(const T* V, i64 n, i64 r, const double* c, T* W, i64 p, i64 lo, i64 hi) {
  block_update_body(V, n, r, c, W, p, lo, hi);
}
template <typename T>
SL_TARGET_AVX2 void gemv_avx2(const T* A, i64 lda, i64 n, const T* X, i64 p, T* Y, i64 lo, i64 hi) {
  gemv_body(A, lda, n, X, p, Y, lo, hi);
}
#endif

template <typename T>
Kernels<T> kernels() {
#ifdef SL_X86_DISPATCH
  if (isa_level() >= 1)
    return {&dots_avx2<T>, &update_avx2<T>, &block_dots_avx2<T>, &block_update_avx2<T>, &gemv_avx2<T>};
#endif
  return {&dots_base<T>, &update_base<T>, &block_dots_base<T>, &block_update_base<T>, &gemv_base<T>};
}

// the chunked reductions and updates of one expansion
template <typename T>
class Steps {
 public:
  Steps(const LanczosExpandArgs& a, std::vector<double>& part) : a_(a), k_(kernels<T>()), part_(part) {
    chunk_ = lanczos_chunk(a.n);
    chunks_ = (a.n + chunk_ - 1) / chunk_;
  }

  // c[0:r] = V[0:r] w, summed over the chunks in order
  void dots(const T* V, i64 r, const T* w, double* c) const {
    const i64 n = a_.n;
    double* part = part_.data();
#pragma omp parallel for schedule(static) if (chunks_ > 1)
    for (i64 ch = 0; ch < chunks_; ++ch) {
      const i64 lo = ch * chunk_, hi = lo + chunk_ < n ? lo + chunk_ : n;
      k_.dots(V, n, r, w, lo, hi, part + ch * r);
    }
    for (i64 i = 0; i < r; ++i) {
      double s = 0.0;
      for (i64 ch = 0; ch < chunks_; ++ch) s += part[ch * r + i];
      c[i] = s;
    }
  }

  void update(const T* V, i64 r, const double* c, T* w) const {
    const i64 n = a_.n;
#pragma omp parallel for schedule(static) if (chunks_ > 1)
    for (i64 ch = 0; ch < chunks_; ++ch) {
      const i64 lo = ch * chunk_, hi = lo + chunk_ < n ? lo + chunk_ : n;
      k_.update(V, n, r, c, w, lo, hi);
    }
  }

  double norm(const T* w) const {
    double c = 0.0;
    dots(w, 1, w, &c);
    return std::sqrt(c);
  }

  // Y = A X^T for the p rows of X (rows of Y)
  Status apply(int dtype, const T* X, i64 p, T* Y) const {
    const i64 n = a_.n;
    if (a_.dense) {
      const T* A = static_cast<const T*>(a_.dense);
      const i64 blocks = (n + 63) / 64;
#pragma omp parallel for schedule(static) if (p * n * n >= (1 << 16))
      for (i64 b = 0; b < blocks; ++b) k_.gemv(A, a_.lda, n, X, p, Y, b * 64, b * 64 + 64 < n ? b * 64 + 64 : n);
      return Status::ok();
    }
    CsrMatvecArgs c;
    c.m = n;
    c.n = n;
    c.S = p;
    c.nnz = a_.nnz;
    c.xs = n;
    c.ys = n;
    c.crow = a_.crow;
    c.col = a_.col;
    c.val = a_.val;
    c.x = X;
    c.y = Y;
    return csr_matvec_cpu(dtype, c);
  }

  // the p rows of W minus their components along rows [0, r) of B, twice; the summed
  // coefficients in c (r x p, row-major), c2 scratch of the same size
  void block_orth_against(const T* B, i64 r, T* W, i64 p, double* c, double* c2) const {
    if (r == 0) return;
    const i64 n = a_.n;
    double* part = part_.data();
    for (double* cc : {c, c2}) {
#pragma omp parallel for schedule(static) if (chunks_ > 1)
      for (i64 ch = 0; ch < chunks_; ++ch) {
        const i64 lo = ch * chunk_, hi = lo + chunk_ < n ? lo + chunk_ : n;
        k_.block_dots(B, n, r, W, p, lo, hi, part + ch * r * p);
      }
      for (i64 e = 0; e < r * p; ++e) {
        double sum = 0.0;
        for (i64 ch = 0; ch < chunks_; ++ch) sum += part[ch * r * p + e];
        cc[e] = sum;
      }
#pragma omp parallel for schedule(static) if (chunks_ > 1)
      for (i64 ch = 0; ch < chunks_; ++ch) {
        const i64 lo = ch * chunk_, hi = lo + chunk_ < n ? lo + chunk_ : n;
        k_.block_update(B, n, r, cc, W, p, lo, hi);
      }
    }
    for (i64 e = 0; e < r * p; ++e) c[e] += c2[e];
  }

  // w minus its components along rows [0, r) of B, twice; the summed coefficients in c
  void orth_against(const T* B, i64 r, T* w, double* c, double* c2) const {
    if (r == 0) return;
    dots(B, r, w, c);
    update(B, r, c, w);
    dots(B, r, w, c2);
    update(B, r, c2, w);
    for (i64 i = 0; i < r; ++i) c[i] += c2[i];
  }

 private:
  const LanczosExpandArgs& a_;
  Kernels<T> k_;
  std::vector<double>& part_;
  i64 chunk_ = 256, chunks_ = 1;
};

template <typename T>
Status expand(int dtype, const LanczosExpandArgs& a) {
  const i64 n = a.n, p = a.p, ldh = a.ldh;
  T* V = static_cast<T*>(a.V);
  T* H = static_cast<T*>(a.H);
  const i64 chunks = (n + lanczos_chunk(n) - 1) / lanczos_chunk(n);
  std::vector<double> part, c, c2, cb, cb2, before;
  std::vector<T> W;
  try {
    part.resize(static_cast<std::size_t>(chunks * a.rows * p));
    cb.resize(static_cast<std::size_t>(a.rows * p));
    cb2.resize(static_cast<std::size_t>(a.rows * p));
    c.resize(static_cast<std::size_t>(a.rows));
    c2.resize(static_cast<std::size_t>(a.rows));
    before.resize(static_cast<std::size_t>(p));
    W.resize(static_cast<std::size_t>(p * n));
  } catch (const std::bad_alloc&) {
    return invalid_argument("lanczos_expand: cannot allocate host scratch");
  }
  const Steps<T> st(a, part);
  std::int64_t draws = a.draws;
  i64 j = a.j0;
  a.out[1] = kLanczosOk;
  for (; j + p <= a.jstop && j + 2 * p <= a.rows; j += p) {
    SL_RETURN_IF_ERROR(st.apply(dtype, V + j * n, p, W.data()));
    for (i64 s = 0; s < p; ++s) before[s] = st.norm(W.data() + s * n);
    const i64 r = j + p;  // rows of the basis so far; the new block goes to rows r .. r + p - 1
    st.block_orth_against(V, r, W.data(), p, cb.data(), cb2.data());
    for (i64 i = 0; i < r; ++i)
      for (i64 s = 0; s < p; ++s) H[i * ldh + j + s] = static_cast<T>(cb[i * p + s]);
    for (i64 s = 0; s < p; ++s) {
      T* w = W.data() + s * n;
      st.orth_against(V + r * n, s, w, c.data(), c2.data());
      for (i64 t = 0; t < s; ++t) H[(r + t) * ldh + j + s] = static_cast<T>(c[t]);
      const double beta = st.norm(w);
      if (!std::isfinite(beta) || !std::isfinite(before[s])) {
        a.out[0] = j;
        a.out[1] = kLanczosNonFinite;
        a.out[2] = draws;
        return Status::ok();
      }
      T* v = V + (r + s) * n;
      if (beta > a.thresh * before[s] && beta > 0.0) {
        H[(r + s) * ldh + j + s] = static_cast<T>(beta);
        const T inv = static_cast<T>(1.0 / beta);
        for (i64 t = 0; t < n; ++t) v[t] = w[t] * inv;
        continue;
      }
      // breakdown: a fresh direction in this slot, orthogonal to every row so far
      H[(r + s) * ldh + j + s] = T(0);
      for (i64 t = 0; t < n; ++t)
        v[t] = static_cast<T>(rand_entry(static_cast<int>(RandKind::Gaussian), a.seed, kLanczosTag, draws, t));
      ++draws;
      st.orth_against(V, r + s, v, c.data(), c2.data());
      const double z = st.norm(v);
      const T inv = static_cast<T>(z > 0.0 ? 1.0 / z : 0.0);
      for (i64 t = 0; t < n; ++t) v[t] *= inv;
    }
  }
  a.out[0] = j;
  a.out[2] = draws;
  return Status::ok();
}

}  // namespace

Status lanczos_expand_cpu(int dtype, const LanczosExpandArgs& a) {
  SL_RETURN_IF_ERROR(lanczos_expand_check(a));
  return dispatch_real(dtype, "lanczos_expand", [&](auto tag) -> Status {
    using T = decltype(tag);
    return expand<T>(dtype, a);
  });
}

}  // namespace sl
