#include "common.h"
#include "sl/lanczos.h"

namespace sl {
namespace bind {
namespace {

void lanczos_expand(int dtype, std::int64_t n, std::int64_t p, std::int64_t rows, std::int64_t ldh, std::int64_t j0,
                    std::int64_t jstop, double thresh, std::uint64_t seed, std::int64_t draws, std::uintptr_t dense, std::int64_t lda, std::uintptr_t crow, std::uintptr_t col,
                    std::uintptr_t val, std::int64_t nnz, std::uintptr_t V, std::uintptr_t H, std::uintptr_t out,
                    std::uintptr_t ws, std::size_t ws_bytes, const ExecSpec& exec_spec) {
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
  const Exec exec = exec_from(exec_spec);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "lanczos_expand", lanczos_expand_cpu(dtype, a),
                     lanczos_expand_cuda(dtype, a, reinterpret_cast<void*>(ws), ws_bytes, exec));
  }
  raise_if_error(s, "lanczos_expand of an order-" + std::to_string(n) + " operator, block " + std::to_string(p) +
                        ", rows " + std::to_string(j0) + ".." + std::to_string(jstop));
}

void bind_lanczos(py::module_& m) {
  m.def("lanczos_expand", &lanczos_expand,
        "block Lanczos basis expansion, CPU or CUDA (dtype, n, p, rows, ldh, j0, jstop, thresh, seed, draws, dense, lda, "
        "crow, col, val, nnz, V, H, out, ws, ws_bytes, exec); on CUDA out and ws are device memory");
  m.def("lanczos_expand_cuda_workspace_bytes", [](int dtype, std::int64_t n, std::int64_t p, std::int64_t rows) {
#ifdef SL_WITH_CUDA
    return lanczos_expand_cuda_workspace_bytes(dtype, n, p, rows);
#else
    (void)dtype; (void)n; (void)p; (void)rows;
    return std::size_t{0};
#endif
  });
}

const Registrar reg("lanczos", &bind_lanczos);

}  // namespace
}  // namespace bind
}  // namespace sl
