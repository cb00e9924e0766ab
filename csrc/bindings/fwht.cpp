#include "common.h"
#include "sl/device.h"
#include "sl/fwht.h"

namespace sl {
namespace bind {
namespace {

void fwht(int dtype, std::uintptr_t in_ptr, const RowsSpec& in_spec, std::uintptr_t out_ptr,
          const RowsSpec& out_spec, double scale, const ExecSpec& exec_spec) {
  const RowsView in = rows_view(in_ptr, in_spec), out = rows_view(out_ptr, out_spec);
  const Exec exec = exec_from(exec_spec);
  Status s;
  {
    py::gil_scoped_release nogil;
    s = SL_ON_DEVICE(exec, "fwht", fwht_cpu(dtype, in, out, scale), fwht_cuda(dtype, in, out, scale, exec));
  }
  raise_if_error(s, "fwht on rows " + rows_shape(in));
}

void bind_fwht(py::module_& m) {
  m.def("fwht", &fwht, "Walsh-Hadamard transform of rows (dtype, in, in_rows, out, out_rows, scale, exec)");
  m.def("fwht_local_len", &fwht_local_len);
  m.def("fwht_cuda_max_len", &fwht_cuda_max_len);
}

const Registrar reg("fwht", &bind_fwht);

}  // namespace
}  // namespace bind
}  // namespace sl
