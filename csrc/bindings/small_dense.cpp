// Bindings of the small dense batched kernels: contiguous (batch, rows, cols) buffers
// given as raw pointers (Python allocates and makes them contiguous).
#include "common.h"
#include "sl/device.h"
#include "sl/small_dense.h"

namespace sl {
namespace bind {
namespace {

using i64 = std::int64_t;

inline std::string bshape(i64 batch, i64 m, i64 n) {
  return "(" + std::to_string(batch) + ", " + std::to_string(m) + ", " + std::to_string(n) + ")";
}

template <typename T>
inline T* ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

void cholesky_small(int dtype, std::uintptr_t a, std::uintptr_t l, std::uintptr_t info, i64 batch, i64 n,
                    const ExecSpec& es) {
  const Exec exec = exec_from(es);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "cholesky_small",
                     cholesky_small_cpu(dtype, ptr<const void>(a), ptr<void>(l), ptr<std::int32_t>(info), batch, n),
                     cholesky_small_cuda(dtype, ptr<const void>(a), ptr<void>(l), ptr<std::int32_t>(info), batch,
                                         n, exec));
  }
  raise_if_error(s, "cholesky_small on " + bshape(batch, n, n));
}

void tril_inverse_small(int dtype, std::uintptr_t l, std::uintptr_t x, std::uintptr_t info, i64 batch, i64 n,
                        const ExecSpec& es) {
  const Exec exec = exec_from(es);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "tril_inverse_small",
                     tril_inverse_small_cpu(dtype, ptr<const void>(l), ptr<void>(x), ptr<std::int32_t>(info), batch,
                                            n),
                     tril_inverse_small_cuda(dtype, ptr<const void>(l), ptr<void>(x), ptr<std::int32_t>(info),
                                             batch, n, exec));
  }
  raise_if_error(s, "tril_inverse_small on " + bshape(batch, n, n));
}

void eigh_jacobi(int dtype, std::uintptr_t a, std::uintptr_t w, std::uintptr_t vt, std::uintptr_t info, i64 batch,
                 i64 n, int max_sweeps, const ExecSpec& es) {
  const Exec exec = exec_from(es);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "eigh_jacobi",
                     eigh_jacobi_cpu(dtype, ptr<void>(a), ptr<void>(w), ptr<void>(vt), ptr<std::int32_t>(info),
                                     batch, n, max_sweeps),
                     eigh_jacobi_cuda(dtype, ptr<void>(a), ptr<void>(w), ptr<void>(vt), ptr<std::int32_t>(info),
                                      batch, n, max_sweeps, exec));
  }
  raise_if_error(s, "eigh_jacobi on " + bshape(batch, n, n));
}

void svd_jacobi(int dtype, std::uintptr_t at, std::uintptr_t vt, std::uintptr_t info, i64 batch, i64 m, i64 n,
                int max_sweeps, const ExecSpec& es) {
  const Exec exec = exec_from(es);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "svd_jacobi",
                     svd_jacobi_cpu(dtype, ptr<void>(at), ptr<void>(vt), ptr<std::int32_t>(info), batch, m, n,
                                    max_sweeps),
                     svd_jacobi_cuda(dtype, ptr<void>(at), ptr<void>(vt), ptr<std::int32_t>(info), batch, m, n,
                                     max_sweeps, exec));
  }
  raise_if_error(s, "svd_jacobi on " + bshape(batch, m, n));
}

void cholqr_panel(int dtype, int mode, std::uintptr_t y, i64 y_bstride, i64 y_rs, i64 y_cs, std::uintptr_t q, std::uintptr_t l,
                  std::uintptr_t x, std::uintptr_t info, std::uintptr_t work, i64 batch, i64 m, i64 k, double cond_max,
                  double gate, const ExecSpec& es) {
  const Exec exec = exec_from(es);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "cholqr_panel",
                     cholqr_panel_cpu(dtype, mode, ptr<const void>(y), y_bstride, y_rs, y_cs, ptr<void>(q), ptr<void>(l),
                                      ptr<void>(x), ptr<std::int32_t>(info), ptr<void>(work), batch, m, k, cond_max,
                                      gate),
                     cholqr_panel_cuda(dtype, mode, ptr<const void>(y), y_bstride, y_rs, y_cs, ptr<void>(q), ptr<void>(l),
                                       ptr<void>(x), ptr<std::int32_t>(info), ptr<void>(work), batch, m, k, cond_max,
                                       gate, exec));
  }
  raise_if_error(s, "cholqr_panel on " + bshape(batch, m, k));
}

void bind_small_dense(py::module_& m) {
  m.def("cholesky_small", &cholesky_small, "batched Cholesky with info (dtype, a, l, info, batch, n, exec)");
  m.def("tril_inverse_small", &tril_inverse_small,
        "batched lower-triangular inverse with info (dtype, l, x, info, batch, n, exec)");
  m.def("eigh_jacobi", &eigh_jacobi,
        "batched two-sided Jacobi (dtype, a_work, w, vt, info, batch, n, max_sweeps, exec)");
  m.def("svd_jacobi", &svd_jacobi,
        "batched one-sided Jacobi SVD (dtype, at_work, vt, info, batch, m, n, max_sweeps, exec)");
  m.def("cholqr_panel", &cholqr_panel,
        "fused CholeskyQR passes on column-major (or, on the CPU, row-major) panels (dtype, mode, y, y_bstride, "
        "y_rs, y_cs, q, l, x, info, work, batch, m, k, cond_max, gate, exec)");
  m.def("cholqr_panel_cpu_row_major", &cholqr_panel_cpu_row_major,
        "whether the CPU cholqr_panel takes row-major panels here (its AVX2 / AVX-512 kernels)");
  m.def("cholqr_panel_work_elems", &cholqr_panel_work_elems, "scratch elements of cholqr_panel (mode, batch, m, k)");
  m.def("small_dense_cpu_isa", [] { return std::string(small_dense_cpu_isa()); },
        "the instruction set of the CPU small-dense kernels here: avx512, avx2 or generic");
  m.attr("SMALL_DENSE_MAX_N") = kSmallDenseMaxN;
}

const Registrar reg("small_dense", &bind_small_dense);

}  // namespace
}  // namespace bind
}  // namespace sl
