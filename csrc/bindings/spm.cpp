#include "common.h"
#include "sl/device.h"
#include "sl/spm.h"

namespace sl {
namespace bind {
namespace {

std::string shape_str(const SpmShape& s) {
  return "V (" + std::to_string(s.D()) + ", " + std::to_string(s.R) + "), X (" + std::to_string(s.B) + ", " +
         std::to_string(s.d) + ")";
}

SpmShape make_shape(std::int64_t d, std::int64_t R, std::int64_t B) {
  SpmShape s;
  s.d = d;
  s.R = R;
  s.B = B;
  return s;
}

void spm_contract(int dtype, std::int64_t d, std::int64_t R, std::int64_t B, std::uintptr_t V, std::uintptr_t X,
                  std::uintptr_t alpha, std::uintptr_t grad, std::uintptr_t ws, std::int64_t ws_bytes,
                  const ExecSpec& exec_spec) {
  const SpmShape s = make_shape(d, R, B);
  const Exec exec = exec_from(exec_spec);
  Status st;
  {
    py::gil_scoped_release nogil;
    const void* v = reinterpret_cast<const void*>(V);
    const void* x = reinterpret_cast<const void*>(X);
    void* a = reinterpret_cast<void*>(alpha);
    void* g = reinterpret_cast<void*>(grad);
    st = SL_ON_DEVICE(exec, "spm_contract", spm_contract_cpu(dtype, s, v, x, a, g),
                      spm_contract_cuda(dtype, s, v, x, a, g, reinterpret_cast<void*>(ws), ws_bytes, exec));
  }
  raise_if_error(st, "spm_contract on " + shape_str(s));
}

void spm_power(int dtype, std::int64_t d, std::int64_t R, std::int64_t B, std::uintptr_t V, std::uintptr_t X,
               std::uintptr_t f, std::uintptr_t iters, std::int64_t maxiter, double tol, double cn, std::uintptr_t ws,
               std::int64_t ws_bytes, const ExecSpec& exec_spec) {
  const SpmShape s = make_shape(d, R, B);
  const Exec exec = exec_from(exec_spec);
  Status st;
  {
    py::gil_scoped_release nogil;
    const void* v = reinterpret_cast<const void*>(V);
    void* x = reinterpret_cast<void*>(X);
    void* fp = reinterpret_cast<void*>(f);
    auto* it = reinterpret_cast<std::int64_t*>(iters);
    st = SL_ON_DEVICE(exec, "spm_power", spm_power_cpu(dtype, s, v, x, fp, it, maxiter, tol, cn),
                      spm_power_cuda(dtype, s, v, x, fp, it, maxiter, tol, cn, reinterpret_cast<void*>(ws), ws_bytes,
                                     exec));
  }
  raise_if_error(st, "spm_power on " + shape_str(s));
}

void spm_extract(int dtype, std::int64_t d, std::int64_t R, std::int64_t ntries, bool odd, std::uintptr_t V,
                 std::uintptr_t D1, std::uintptr_t U, std::uintptr_t G, std::uintptr_t C, std::uintptr_t weights,
                 std::uintptr_t factors, std::uintptr_t fbest, std::int64_t maxiter, double tol, double cn,
                 double frestol, std::uintptr_t ws, std::int64_t ws_bytes, const ExecSpec& exec_spec) {
  SpmExtractArgs a;
  a.d = d;
  a.R = R;
  a.ntries = ntries;
  a.odd = odd;
  a.maxiter = maxiter;
  a.tol = tol;
  a.cn = cn;
  a.frestol = frestol;
  a.V = reinterpret_cast<const void*>(V);
  a.D1 = reinterpret_cast<const void*>(D1);
  a.U = reinterpret_cast<const void*>(U);
  a.G = reinterpret_cast<const void*>(G);
  a.C = reinterpret_cast<const void*>(C);
  a.weights = reinterpret_cast<void*>(weights);
  a.factors = reinterpret_cast<void*>(factors);
  a.fbest = reinterpret_cast<void*>(fbest);
  const Exec exec = exec_from(exec_spec);
  Status st;
  {
    py::gil_scoped_release nogil;
    st = SL_ON_DEVICE(exec, "spm_extract", spm_extract_cpu(dtype, a),
                      spm_extract_cuda(dtype, a, reinterpret_cast<void*>(ws), ws_bytes, exec));
  }
  raise_if_error(st, "spm_extract with d=" + std::to_string(d) + ", R=" + std::to_string(R) +
                         ", ntries=" + std::to_string(ntries));
}

// CPU only: the CUDA path of the op composes torch.linalg and spm_extract (reference/spm.py)
void spm_cp3(int dtype, std::int64_t d, std::int64_t rank, std::int64_t ntries, std::int64_t maxiter, double tol,
             double cn, double frestol, std::uint64_t seed, std::uintptr_t T, std::uintptr_t weights,
             std::uintptr_t factors, std::uintptr_t sig, std::uintptr_t info) {
  SpmCp3Args a;
  a.d = d;
  a.rank = rank;
  a.ntries = ntries;
  a.maxiter = maxiter;
  a.tol = tol;
  a.cn = cn;
  a.frestol = frestol;
  a.seed = seed;
  a.T = reinterpret_cast<const void*>(T);
  a.weights = reinterpret_cast<void*>(weights);
  a.factors = reinterpret_cast<void*>(factors);
  a.sig = reinterpret_cast<void*>(sig);
  a.info = reinterpret_cast<double*>(info);
  Status st;
  {
    py::gil_scoped_release nogil;
    st = spm_cp3_cpu(dtype, a);
  }
  raise_if_error(st, "spm_cp3 with d=" + std::to_string(d) + ", rank=" + std::to_string(rank));
}

void bind_spm(py::module_& m) {
  m.def("spm_cp3", &spm_cp3,
        "SPM of an order-3 symmetric tensor end to end on the CPU (dtype, d, rank, ntries, maxiter, tol, cn, "
        "frestol, seed, T, weights, factors, sig, info)");
  m.def("spm_extract", &spm_extract,
        "SPM extraction of all R components with deflation (dtype, d, R, ntries, odd, V, D1, U, G, C, weights, "
        "factors, fbest, maxiter, tol, cn, frestol, workspace, ws_bytes, exec)");
  m.def("spm_extract_workspace_bytes", &spm_extract_workspace_bytes);
  m.def("spm_contract", &spm_contract,
        "SPM contraction alpha = V^T (x (x) x), grad = sum_r alpha_r V_r x for B points "
        "(dtype, d, R, B, V, X, alpha, grad, workspace, ws_bytes, exec)");
  m.def("spm_power", &spm_power,
        "SPM shifted power iteration for B starting points, X updated in place "
        "(dtype, d, R, B, V, X, f, iters, maxiter, tol, cn, workspace, ws_bytes, exec)");
  m.def("spm_workspace_bytes", [](int dtype, std::int64_t d, std::int64_t R, std::int64_t B) {
    return spm_workspace_bytes(dtype, make_shape(d, R, B));
  });
}

const Registrar reg("spm", &bind_spm);

}  // namespace
}  // namespace bind
}  // namespace sl
