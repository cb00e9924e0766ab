// Build facts and the dtype / device codes the Python bridge reads.
#include "common.h"
#include "sl/dtype.h"
#include "sl/parallel.h"
#ifdef SL_WITH_CUDA
#include "sl/cuda_runtime_info.h"
#endif

namespace sl {
namespace bind {
namespace {

void bind_core(py::module_& m) {
  m.attr("DTYPE_F32") = static_cast<int>(DType::F32);
  m.attr("DTYPE_F64") = static_cast<int>(DType::F64);
  m.attr("DTYPE_F16") = static_cast<int>(DType::F16);
  m.attr("DTYPE_BF16") = static_cast<int>(DType::BF16);
  m.attr("DEVICE_CPU") = static_cast<int>(DeviceType::CPU);
  m.attr("DEVICE_CUDA") = static_cast<int>(DeviceType::CUDA);
#ifdef SL_VERSION
  m.attr("VERSION") = SL_VERSION;
#else
  m.attr("VERSION") = "unknown";
#endif
#ifdef SL_WITH_CUDA
  m.attr("WITH_CUDA") = true;
  m.attr("CUDA_ARCHITECTURES") = SL_CUDA_ARCHS;
#else
  m.attr("WITH_CUDA") = false;
  m.attr("CUDA_ARCHITECTURES") = "";
#endif
#ifdef SL_WITH_OPENMP
  m.attr("WITH_OPENMP") = true;
  m.attr("OPENMP_VERSION") = static_cast<int>(_OPENMP);
#else
  m.attr("WITH_OPENMP") = false;
  m.attr("OPENMP_VERSION") = 0;
#endif
  m.def("openmp_max_threads", &max_threads, "threads an OpenMP region of this module would use");
  // CUDA runtime facts (0 on a CPU-only build; -1/0 when the driver is missing)
#ifdef SL_WITH_CUDA
  m.def("cuda_runtime_version", &cuda_runtime_version, "CUDA runtime version the kernels were built with");
  m.def("cuda_driver_version", &cuda_driver_version, "CUDA driver version (0 without a driver)");
  m.def("cuda_device_count", &cuda_device_count, "CUDA devices visible to this module's runtime");
#else
  for (const char* name : {"cuda_runtime_version", "cuda_driver_version", "cuda_device_count"})
    m.def(name, []() { return 0; }, "0: this build has no CUDA kernels");
#endif
}

const Registrar reg("core", &bind_core);

}  // namespace
}  // namespace bind
}  // namespace sl
