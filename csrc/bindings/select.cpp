// Bindings of the structured projection family: row gather/scatter and the sketching
// kernels (random fills, sparse sign tables, CSR apply).
#include "common.h"
#include "sl/device.h"
#include "sl/select.h"
#include "sl/sketch.h"

namespace sl {
namespace bind {
namespace {

// (B, R, C, sb, sr, sc)
using Mat3Spec = std::array<std::int64_t, 6>;

Mat3View mat3(std::uintptr_t ptr, const Mat3Spec& s) {
  Mat3View v;
  v.data = reinterpret_cast<void*>(ptr);
  v.B = s[0];
  v.R = s[1];
  v.C = s[2];
  v.sb = s[3];
  v.sr = s[4];
  v.sc = s[5];
  return v;
}

std::string shape3(const Mat3View& v) {
  return "(" + std::to_string(v.B) + ", " + std::to_string(v.R) + ", " + std::to_string(v.C) + ")";
}

RowIndex row_index(std::uintptr_t idx, std::int64_t K, std::int64_t idx_sb, std::uintptr_t scale,
                   std::int64_t scale_sb) {
  RowIndex ix;
  ix.idx = reinterpret_cast<const std::int64_t*>(idx);
  ix.K = K;
  ix.idx_sb = idx_sb;
  ix.scale = reinterpret_cast<const void*>(scale);
  ix.scale_sb = scale_sb;
  return ix;
}

void gather_rows(int dtype, std::uintptr_t src, const Mat3Spec& src_spec, std::uintptr_t idx, std::int64_t K,
                 std::int64_t idx_sb, std::uintptr_t scale, std::int64_t scale_sb, std::uintptr_t out,
                 const Mat3Spec& out_spec, const ExecSpec& exec_spec) {
  const Mat3View a = mat3(src, src_spec), o = mat3(out, out_spec);
  const RowIndex ix = row_index(idx, K, idx_sb, scale, scale_sb);
  const Exec exec = exec_from(exec_spec);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "gather_rows", gather_rows_cpu(dtype, a, ix, o), gather_rows_cuda(dtype, a, ix, o, exec));
  }
  raise_if_error(s, "gather_rows of " + std::to_string(K) + " rows from " + shape3(a));
}

void scatter_rows(int dtype, std::uintptr_t x, const Mat3Spec& x_spec, std::uintptr_t idx, std::int64_t K,
                  std::int64_t idx_sb, std::uintptr_t scale, std::int64_t scale_sb, std::uintptr_t out,
                  const Mat3Spec& out_spec, std::uintptr_t order, bool zero_fill, const ExecSpec& exec_spec) {
  const auto* ord = reinterpret_cast<const std::int64_t*>(order);
  const Mat3View a = mat3(x, x_spec), o = mat3(out, out_spec);
  const RowIndex ix = row_index(idx, K, idx_sb, scale, scale_sb);
  const Exec exec = exec_from(exec_spec);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "scatter_rows", scatter_rows_cpu(dtype, a, ix, ord, o, zero_fill),
                     scatter_rows_cuda(dtype, a, ix, ord, o, zero_fill, exec));
  }
  raise_if_error(s, "scatter_rows of " + shape3(a) + " into " + shape3(o));
}

// host memory only: the CPU ops check their indices with one native pass
bool check_row_index(const std::string& op, std::uintptr_t idx, std::int64_t K, std::int64_t idx_sb, std::int64_t B,
                     std::int64_t rows) {
  const RowIndex ix = row_index(idx, K, idx_sb, 0, 0);
  bool increasing = true;
  const Status s = check_row_index_cpu(op.c_str(), ix, B, rows, &increasing);
  if (!s.is_ok()) throw py::value_error(s.message);
  return increasing;
}

void random_fill(int dtype, int kind, std::uint64_t seed, std::uint32_t tag, double scale, std::uintptr_t out,
                 const Mat3Spec& out_spec, const ExecSpec& exec_spec) {
  const Mat3View o = mat3(out, out_spec);
  const Exec exec = exec_from(exec_spec);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "random_fill", random_fill_cpu(dtype, kind, seed, tag, scale, o),
                     random_fill_cuda(dtype, kind, seed, tag, scale, o, exec));
  }
  raise_if_error(s, "random_fill of " + shape3(o));
}

void sparse_sign_table(std::uint64_t seed, std::uint32_t tag, std::int64_t n, std::int64_t size, int zeta,
                       std::uintptr_t codes, const ExecSpec& exec_spec) {
  auto* c = reinterpret_cast<std::int32_t*>(codes);
  const Exec exec = exec_from(exec_spec);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "sparse_sign_table", sparse_sign_table_cpu(seed, tag, n, size, zeta, c),
                     sparse_sign_table_cuda(seed, tag, n, size, zeta, c, exec));
  }
  raise_if_error(s, "sparse_sign_table n=" + std::to_string(n) + " s=" + std::to_string(size));
}

void sparse_apply(int dtype, std::uintptr_t x, const Mat3Spec& x_spec, std::uintptr_t ptr, std::uintptr_t cols,
                  std::uintptr_t vals, std::int64_t J, std::int64_t nnz, std::uintptr_t y, const Mat3Spec& y_spec,
                  const ExecSpec& exec_spec) {
  const Mat3View a = mat3(x, x_spec), o = mat3(y, y_spec);
  CsrView op;
  op.ptr = reinterpret_cast<const std::int64_t*>(ptr);
  op.cols = reinterpret_cast<const std::int64_t*>(cols);
  op.vals = reinterpret_cast<const void*>(vals);
  op.J = J;
  op.nnz = nnz;
  const Exec exec = exec_from(exec_spec);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "sparse_apply", sparse_apply_cpu(dtype, a, op, o), sparse_apply_cuda(dtype, a, op, o, exec));
  }
  raise_if_error(s, "sparse_apply of " + shape3(a) + " -> " + shape3(o));
}

void srht(int dtype, std::uintptr_t x, const Mat3Spec& x_spec, std::uintptr_t signs, std::uintptr_t rows,
          std::int64_t size, std::int64_t N, std::uintptr_t y, const Mat3Spec& y_spec, const ExecSpec& exec_spec) {
  const Mat3View a = mat3(x, x_spec), o = mat3(y, y_spec);
  const auto* sg = reinterpret_cast<const void*>(signs);
  const auto* rw = reinterpret_cast<const std::int64_t*>(rows);
  const Exec exec = exec_from(exec_spec);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "srht", srht_cpu(dtype, a, sg, rw, size, N, o), srht_cuda(dtype, a, sg, rw, size, N, o, exec));
  }
  raise_if_error(s, "srht of " + shape3(a) + " -> " + shape3(o) + " (N = " + std::to_string(N) + ")");
}

void bind_select(py::module_& m) {
  m.def("srht", &srht, "SRHT rows Y = R H D X (dtype, x, x3, signs, rows, s, N, y, y3, exec)");
  m.def("srht_cuda_max_len", &srht_cuda_max_len);
  m.def("gather_rows", &gather_rows,
        "out[b,j,:] = src[b,idx[b,j],:] * scale[b,j] (dtype, src, src3, idx, K, idx_sb, scale, scale_sb, out, out3, exec)");
  m.def("scatter_rows", &scatter_rows,
        "out[b,idx[b,j],:] += x[b,j,:] * scale[b,j] (dtype, x, x3, idx, K, idx_sb, scale, scale_sb, out, out3, order (0: unique), "
        "zero_fill (out = 0 first), exec)");
  m.def("check_row_index", &check_row_index,
        "host index rows: ValueError for an index outside [0, rows), else whether every row is strictly increasing "
        "(op, idx, K, idx_sb, B, rows)");
  m.def("random_fill", &random_fill, "counter-based random matrix (dtype, kind, seed, tag, scale, out, out3, exec)");
  m.def("sparse_sign_table", &sparse_sign_table, "sparse sign codes (seed, tag, n, s, zeta, codes, exec)");
  m.def("sparse_apply", &sparse_apply, "Y = X A for CSR A (dtype, x, x3, ptr, cols, vals, J, nnz, y, y3, exec)");
  m.attr("RAND_GAUSSIAN") = static_cast<int>(RandKind::Gaussian);
  m.attr("RAND_RADEMACHER") = static_cast<int>(RandKind::Rademacher);
  m.attr("RAND_UNIFORM") = static_cast<int>(RandKind::Uniform);
}

const Registrar reg("select", &bind_select);

}  // namespace
}  // namespace bind
}  // namespace sl
