#include "common.h"
#include "sl/device.h"
#include "sl/spmv.h"

namespace sl {
namespace bind {
namespace {

void csr_matvec(int dtype, std::int64_t m, std::int64_t n, std::int64_t S, std::int64_t nnz, std::uintptr_t crow,
                std::uintptr_t col, std::uintptr_t val, std::uintptr_t x, std::int64_t xs, std::int64_t xj,
                std::uintptr_t y, std::int64_t ys, std::int64_t yi, const ExecSpec& exec_spec) {
  CsrMatvecArgs a;
  a.m = m;
  a.n = n;
  a.S = S;
  a.nnz = nnz;
  a.crow = reinterpret_cast<const std::int64_t*>(crow);
  a.col = reinterpret_cast<const std::int64_t*>(col);
  a.val = reinterpret_cast<const void*>(val);
  a.x = reinterpret_cast<const void*>(x);
  a.y = reinterpret_cast<void*>(y);
  a.xs = xs;
  a.xj = xj;
  a.ys = ys;
  a.yi = yi;
  const Exec exec = exec_from(exec_spec);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "csr_matvec", csr_matvec_cpu(dtype, a), csr_matvec_cuda(dtype, a, exec));
  }
  raise_if_error(s, "csr_matvec of a (" + std::to_string(m) + ", " + std::to_string(n) + ") CSR matrix with " +
                        std::to_string(nnz) + " nonzeros on " + std::to_string(S) + " vectors");
}

void bind_spmv(py::module_& m) {
  m.def("csr_matvec", &csr_matvec, "CSR times a batch of vectors (dtype, m, n, S, nnz, crow, col, val, x, xs, xj, y, ys, yi, exec)");
}

const Registrar reg("spmv", &bind_spmv);

}  // namespace
}  // namespace bind
}  // namespace sl
