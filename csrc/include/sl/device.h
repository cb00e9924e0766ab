// The one device switch of the native layer: CPU launcher, or the CUDA launcher when
// this build has CUDA kernels, else a NotSupported status that says how to rebuild.
#pragma once
#include <string>

#include "sl/exec.h"
#include "sl/status.h"

namespace sl {

inline Status no_cuda_status(const char* op) {
  return not_supported(std::string(op) +
                       ": this build of subspace_linalg has no CUDA kernels; rebuild with nvcc on "
                       "PATH: pip install . -Ccmake.define.SUBSPACE_LINALG_CUDA=ON");
}

}  // namespace sl

#ifdef SL_WITH_CUDA
#define SL_ON_DEVICE(exec, op, cpu_call, cuda_call) ((exec).is_cuda() ? (cuda_call) : (cpu_call))
#else
#define SL_ON_DEVICE(exec, op, cpu_call, cuda_call) \
  ((exec).is_cuda() ? ::sl::no_cuda_status(op) : (cpu_call))
#endif
