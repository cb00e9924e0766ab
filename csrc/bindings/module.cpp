// The native module: calls every family's registered binder.
#include <vector>

#include "common.h"

namespace sl {
namespace bind {

namespace {
std::vector<std::pair<const char*, BindFn>>& registry() {
  static std::vector<std::pair<const char*, BindFn>> r;
  return r;
}
}  // namespace

Registrar::Registrar(const char* family, BindFn fn) { registry().emplace_back(family, fn); }

}  // namespace bind
}  // namespace sl

PYBIND11_MODULE(_C, m) {
  m.doc() = "subspace_linalg native kernels (CPU C++/OpenMP and CUDA); no libtorch inside";
  py::list families;
  for (auto& entry : sl::bind::registry()) {
    entry.second(m);
    families.append(entry.first);
  }
  m.attr("FAMILIES") = families;
}
