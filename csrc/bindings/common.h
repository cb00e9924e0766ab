// Shared by the per-family binding files (the only pybind11 code): registration, raw
// pointer and view conversion, execution context, Status -> Python exception.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "sl/exec.h"
#include "sl/status.h"
#include "sl/views.h"

namespace py = pybind11;

namespace sl {
namespace bind {

using BindFn = void (*)(py::module_&);

// Each binding file registers its m.def's with a static Registrar; module.cpp calls them
// all, so a new family never edits a shared file.
struct Registrar {
  Registrar(const char* family, BindFn fn);
};

// (n1, n2, len, s1, s2, s_elem)
using RowsSpec = std::array<std::int64_t, 6>;

inline RowsView rows_view(std::uintptr_t ptr, const RowsSpec& s) {
  RowsView v;
  v.data = reinterpret_cast<void*>(ptr);
  v.n1 = s[0];
  v.n2 = s[1];
  v.len = s[2];
  v.s1 = s[3];
  v.s2 = s[4];
  v.s_elem = s[5];
  return v;
}

inline std::string rows_shape(const RowsView& v) {
  return "(" + std::to_string(v.n1) + ", " + std::to_string(v.n2) + ", " + std::to_string(v.len) + ")";
}

// (device_type, device_index, stream) as produced by subspace_linalg._native.exec_args
using ExecSpec = std::array<std::int64_t, 3>;

inline Exec exec_from(const ExecSpec& e) {
  Exec x;
  x.device = e[0] == 1 ? DeviceType::CUDA : DeviceType::CPU;
  x.device_index = static_cast<int>(e[1]);
  x.stream = static_cast<std::uintptr_t>(e[2]);
  return x;
}

// Raises the Python exception for a failed Status: ValueError for bad arguments,
// RuntimeError for CUDA errors and missing kernels. `what` names the op and the shapes.
inline void raise_if_error(const Status& s, const std::string& what) {
  if (s.is_ok()) return;
  const std::string msg = s.message + " [" + what + "]";
  if (s.code == Code::InvalidArgument) throw py::value_error(msg);
  throw std::runtime_error(msg);
}

}  // namespace bind
}  // namespace sl
