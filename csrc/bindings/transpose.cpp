// Binding of the transposed copy: contiguous (batch, rows, cols) in, (batch, cols, rows)
// out, as raw pointers (Python allocates).
#include "common.h"
#include "sl/device.h"
#include "sl/transpose.h"

namespace sl {
namespace bind {
namespace {

using i64 = std::int64_t;

void transpose_copy(std::uintptr_t in, std::uintptr_t out, i64 batch, i64 rows, i64 cols, int elem_size,
                    const ExecSpec& es) {
  const Exec exec = exec_from(es);
  Status s;
  {
    py::gil_scoped_release nogil;
    const void* src = reinterpret_cast<const void*>(in);
    void* dst = reinterpret_cast<void*>(out);
    s = SL_ON_DEVICE(exec, "transpose_copy", transpose_copy_cpu(src, dst, batch, rows, cols, elem_size),
                     transpose_copy_cuda(src, dst, batch, rows, cols, elem_size, exec));
  }
  raise_if_error(s, "transpose_copy on (" + std::to_string(batch) + ", " + std::to_string(rows) + ", " +
                        std::to_string(cols) + ")");
}

void bind_transpose(py::module_& m) {
  m.def("transpose_copy", &transpose_copy,
        "transposed copy of contiguous matrices (in, out, batch, rows, cols, elem_size, exec)");
}

const Registrar reg("transpose", &bind_transpose);

}  // namespace
}  // namespace bind
}  // namespace sl
