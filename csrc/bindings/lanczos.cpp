#include "common.h"
#include "sl/lanczos.h"

namespace sl {
namespace bind {
namespace {

void lanczos_expand(int dtype, std::int64_t n, std::int64_t p, std::int64_t rows, std::int64_t ldh, std::int64_t j0,
                    std::int64_t jstop, double thresh, std::uint64_t seed, std::int64_t draws, std::uintptr_t dense, std::int64_t lda, std::uintptr_t crow, std::uintptr_t col,
                    std::uintptr_t val, std::int64_t nnz, std::uintptr_t V, std::uintptr_t H, std::uintptr_t out) {
  LanczosExpandArgs a;
  a.n = n;
  a.p = p;
  a.rows = rows;
  a.ldh = ldh;
  a.j0 = j0;
  a.jstop = jstop;
  a.thresh = thresh;
  a.seed = seed;
  a.draws = draws;
  a.dense = reinterpret_cast<const void*>(dense);
  a.lda = lda;
  a.crow = reinterpret_cast<const std::int64_t*>(crow);
  a.col = reinterpret_cast<const std::int64_t*>(col);
  a.val = reinterpret_cast<const void*>(val);
  a.nnz = nnz;
  a.V = reinterpret_cast<void*>(V);
  a.H = reinterpret_cast<void*>(H);
  a.out = reinterpret_cast<std::int64_t*>(out);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = lanczos_expand_cpu(dtype, a);
  }
  raise_if_error(s, "lanczos_expand of an order-" + std::to_string(n) + " operator, block " + std::to_string(p) +
                        ", rows " + std::to_string(j0) + ".." + std::to_string(jstop));
}

void bind_lanczos(py::module_& m) {
  m.def("lanczos_expand", &lanczos_expand,
        "block Lanczos basis expansion, CPU (dtype, n, p, rows, ldh, j0, jstop, thresh, seed, draws, dense, lda, crow, col, val, nnz, V, H, out)");
}

const Registrar reg("lanczos", &bind_lanczos);

}  // namespace
}  // namespace bind
}  // namespace sl
