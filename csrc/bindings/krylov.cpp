#include "common.h"
#include "sl/device.h"
#include "sl/krylov.h"

namespace sl {
namespace bind {
namespace {

template <typename P>
P* ptr(std::uintptr_t v) {
  return reinterpret_cast<P*>(v);
}

std::string sn(std::int64_t S, std::int64_t n) {
  return "(" + std::to_string(S) + ", " + std::to_string(n) + ")";
}

void cg_update(int dtype, std::int64_t S, std::int64_t n, std::uintptr_t x, std::uintptr_t r, std::uintptr_t rr,
               std::uintptr_t p, std::uintptr_t Ap, std::uintptr_t alpha, std::uintptr_t active, std::uintptr_t ws,
               std::size_t ws_bytes, const ExecSpec& exec_spec) {
  const Exec exec = exec_from(exec_spec);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "cg_update",
                     cg_update_cpu(dtype, S, n, ptr<void>(x), ptr<void>(r), ptr<void>(rr), ptr<const void>(p),
                                   ptr<const void>(Ap), ptr<const void>(alpha), ptr<const std::uint8_t>(active)),
                     cg_update_cuda(dtype, S, n, ptr<void>(x), ptr<void>(r), ptr<void>(rr), ptr<const void>(p),
                                    ptr<const void>(Ap), ptr<const void>(alpha), ptr<const std::uint8_t>(active),
                                    ptr<void>(ws), ws_bytes, exec));
  }
  raise_if_error(s, "cg_update on systems " + sn(S, n));
}

// the systems and outputs of a whole-loop CG call (cg_dense, cg_csr)
CgDenseArgs systems_args(std::int64_t S, std::int64_t n, std::uintptr_t b, std::uintptr_t x, std::uintptr_t minv,
                         std::uintptr_t tol, std::int64_t maxiter, std::uintptr_t iters, std::uintptr_t res,
                         std::uintptr_t status) {
  CgDenseArgs a;
  a.S = S;
  a.n = n;
  a.b = ptr<const void>(b);
  a.x = ptr<void>(x);
  a.minv = ptr<const void>(minv);
  a.tol = ptr<const void>(tol);
  a.maxiter = maxiter;
  a.iters = ptr<std::int32_t>(iters);
  a.res = ptr<void>(res);
  a.status = ptr<std::int32_t>(status);
  return a;
}

void cg_dense(int dtype, std::int64_t S, std::int64_t n, std::uintptr_t A, std::int64_t a_stride, std::int64_t a_group,
              std::uintptr_t b,
              std::uintptr_t x, std::uintptr_t minv, std::uintptr_t tol, std::int64_t maxiter, std::uintptr_t iters,
              std::uintptr_t res, std::uintptr_t status, const ExecSpec& exec_spec) {
  CgDenseArgs a = systems_args(S, n, b, x, minv, tol, maxiter, iters, res, status);
  a.A = ptr<const void>(A);
  a.a_stride = a_stride;
  a.a_group = a_group;
  const Exec exec = exec_from(exec_spec);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "cg_dense", cg_dense_cpu(dtype, a), cg_dense_cuda(dtype, a, exec));
  }
  raise_if_error(s, "cg_dense on systems " + sn(S, n));
}

void cg_csr(int dtype, std::int64_t S, std::int64_t n, std::uintptr_t crow, std::uintptr_t col, std::uintptr_t val,
            std::int64_t nnz, std::uintptr_t b, std::uintptr_t x, std::uintptr_t minv, std::uintptr_t tol,
            std::int64_t maxiter, std::uintptr_t iters, std::uintptr_t res, std::uintptr_t status) {
  CgDenseArgs a = systems_args(S, n, b, x, minv, tol, maxiter, iters, res, status);
  a.crow = ptr<const std::int64_t>(crow);
  a.col = ptr<const std::int64_t>(col);
  a.val = ptr<const void>(val);
  a.nnz = nnz;
  Status s;
  {
    py::gil_scoped_release nogil;
    s = cg_csr_cpu(dtype, a);
  }
  raise_if_error(s, "cg_csr on systems " + sn(S, n) + " with " + std::to_string(nnz) + " nonzeros");
}

void cg_step(int dtype, std::int64_t S, std::int64_t n, std::uintptr_t x, std::uintptr_t r, std::uintptr_t rr,
             std::uintptr_t status, std::uintptr_t iters, std::uintptr_t p, std::uintptr_t Ap, std::uintptr_t rz,
             std::uintptr_t tol2, std::uintptr_t ws, std::size_t ws_bytes, const ExecSpec& exec_spec) {
  CgStepArgs a;
  a.S = S;
  a.n = n;
  a.x = ptr<void>(x);
  a.r = ptr<void>(r);
  a.rr = ptr<void>(rr);
  a.status = ptr<std::int32_t>(status);
  a.iters = ptr<std::int32_t>(iters);
  a.p = ptr<const void>(p);
  a.Ap = ptr<const void>(Ap);
  a.rz = ptr<const void>(rz);
  a.tol2 = ptr<const void>(tol2);
  const Exec exec = exec_from(exec_spec);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "cg_step", cg_step_cpu(dtype, a), cg_step_cuda(dtype, a, ptr<void>(ws), ws_bytes, exec));
  }
  raise_if_error(s, "cg_step on systems " + sn(S, n));
}

void cg_direction(int dtype, std::int64_t S, std::int64_t n, std::uintptr_t p, std::uintptr_t z,
                  std::uintptr_t rz_new, std::uintptr_t rz, std::uintptr_t status, std::uintptr_t ws,
                  std::size_t ws_bytes, const ExecSpec& exec_spec) {
  CgDirectionArgs a;
  a.S = S;
  a.n = n;
  a.p = ptr<void>(p);
  a.z = ptr<const void>(z);
  a.rz_new = ptr<const void>(rz_new);
  a.rz = ptr<void>(rz);
  a.status = ptr<std::int32_t>(status);
  const Exec exec = exec_from(exec_spec);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "cg_direction", cg_direction_cpu(dtype, a),
                     cg_direction_cuda(dtype, a, ptr<void>(ws), ws_bytes, exec));
  }
  raise_if_error(s, "cg_direction on systems " + sn(S, n));
}

void bind_krylov(py::module_& m) {
  m.def("cg_step", &cg_step,
        "per-system CG step (dtype, S, n, x, r, rr, status, iters, p, Ap, rz, tol2, ws, ws_bytes, exec)");
  m.def("cg_step_workspace_bytes", [](int dtype, std::int64_t S, std::int64_t n, int device_type) {
    return cg_step_workspace_bytes(dtype, S, n, device_type == 1);
  });
  m.def("cg_direction", &cg_direction,
        "per-system CG direction update (dtype, S, n, p, z, rz_new, rz, status, ws, ws_bytes, exec)");
  m.def("cg_direction_workspace_bytes", [](int dtype, std::int64_t S, int device_type) {
    return cg_direction_workspace_bytes(dtype, S, device_type == 1);
  });
  m.def("cg_update", &cg_update,
        "fused CG step (dtype, S, n, x, r, rr, p, Ap, alpha, active, ws, ws_bytes, exec)");
  m.def("cg_update_workspace_bytes",
        [](int dtype, std::int64_t S, std::int64_t n, int device_type) {
          return cg_update_workspace_bytes(dtype, S, n, device_type == 1);
        });
  m.def("cg_dense", &cg_dense,
        "batched dense CG, whole loop (dtype, S, n, A, a_stride, a_group, b, x, minv, tol, maxiter, iters, res, status, exec)");
  m.def("cg_dense_max_n", [](int device_type) { return cg_dense_max_n(device_type == 1); });
  m.def("cg_csr", &cg_csr,
        "CG on systems sharing one CSR matrix, whole loop, CPU (dtype, S, n, crow, col, val, nnz, b, x, minv, tol, "
        "maxiter, iters, res, status)");
}

const Registrar reg("krylov", &bind_krylov);

}  // namespace
}  // namespace bind
}  // namespace sl
